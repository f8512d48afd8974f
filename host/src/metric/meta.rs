//! A metric's metadata as gmond keeps it: what a metadata packet (id 128) carries.

use super::{MetricDescriptor, Slope, ValueType};

/// Extra names with a meaning of their own in gmond's metadata.
pub const EXTRA_GROUP: &str = "GROUP";
pub const EXTRA_DESC: &str = "DESC";
pub const EXTRA_TITLE: &str = "TITLE";

/// Metadata of one metric: its type, units, slope, TMAX, DMAX and extras.
///
/// Extras (`TITLE`, `DESC`, one `GROUP` per group, `SPOOF_HOST`, custom keys...) are kept
/// as one list in wire order, because their order shows: the metadata packet carries them
/// in this order and gmond's XML lists them reversed.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricMeta {
    pub name: String,
    pub value_type: ValueType,
    pub units: String,
    pub slope: Slope,
    /// Seconds the value may go unreported (TMAX).
    pub tmax: u32,
    /// Seconds after its last update when the metric is deleted (DMAX); 0 = never.
    pub dmax: u32,
    pub extras: Vec<(String, String)>,
}

impl MetricMeta {
    /// Metadata for a module's metric, with extras in the order gmond sends them for its
    /// own metrics: `TITLE` (the collection group's title, else the metric name), `DESC`,
    /// a `GROUP` per group, then the descriptor's other keys. Units and extras are made
    /// safe for the wire ([`crate::wire::safe::metadata`]).
    pub(crate) fn from_descriptor(
        descriptor: &MetricDescriptor,
        title: Option<&str>,
        dmax: u32,
    ) -> Self {
        let mut extras = Vec::with_capacity(2 + descriptor.groups.len() + descriptor.extra.len());
        let title = title.unwrap_or(&descriptor.name);
        extras.push((EXTRA_TITLE.to_owned(), title.to_owned()));
        extras.push((EXTRA_DESC.to_owned(), descriptor.description.clone()));
        for group in &descriptor.groups {
            extras.push((EXTRA_GROUP.to_owned(), group.clone()));
        }
        extras.extend(descriptor.extra.iter().cloned());
        let mut units = descriptor.units.clone();
        crate::wire::safe::metadata(&mut units, &mut extras);
        MetricMeta {
            name: descriptor.name.clone(),
            value_type: descriptor.value_type,
            units,
            slope: descriptor.slope,
            tmax: descriptor.time_max,
            dmax,
            extras,
        }
    }

    /// The metric's groups, in wire order.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.extra_values(EXTRA_GROUP)
    }

    pub fn description(&self) -> Option<&str> {
        self.extra_values(EXTRA_DESC).next()
    }

    pub fn title(&self) -> Option<&str> {
        self.extra_values(EXTRA_TITLE).next()
    }

    fn extra_values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> {
        self.extras
            .iter()
            .filter(move |(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ref_uint() -> MetricDescriptor {
        MetricDescriptor {
            name: "ref_uint".into(),
            value_type: ValueType::UInt32,
            units: "count".into(),
            slope: Slope::Positive,
            format: "%u".into(),
            time_max: 60,
            description: "Reference uint counter".into(),
            groups: vec!["reftest".into(), "second_group".into()],
            extra: vec![("custom_key".into(), "custom value".into())],
        }
    }

    /// The order of `ref_uint`'s metadata packet in captures/main/gmond_packets.hex.
    #[test]
    fn descriptor_extras_follow_gmonds_wire_order() {
        let meta = MetricMeta::from_descriptor(&ref_uint(), Some("Ref uint"), 0);
        let keys: Vec<&str> = meta.extras.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["TITLE", "DESC", "GROUP", "GROUP", "custom_key"]);
        assert_eq!(meta.title(), Some("Ref uint"));
        assert_eq!(meta.description(), Some("Reference uint counter"));
        assert_eq!(
            meta.groups().collect::<Vec<_>>(),
            ["reftest", "second_group"]
        );
        assert_eq!((meta.tmax, meta.dmax, meta.slope), (60, 0, Slope::Positive));
    }

    /// A module's units and extras reach the wire only as gmond can take them.
    #[test]
    fn descriptor_text_is_made_wire_safe() {
        let mut hostile = ref_uint();
        hostile.units = "u<&>".into();
        hostile.description = "desc <&> 'q'\u{1}".into();
        hostile.groups = vec!["g\"r".into()];
        hostile.extra = vec![("k<".into(), "caf\u{e9}".into())];
        let meta = MetricMeta::from_descriptor(&hostile, Some("T<itle>"), 0);
        assert_eq!(meta.units, "u???");
        assert_eq!(meta.title(), Some("T?itle?"));
        assert_eq!(meta.description(), Some("desc ??? ?q??"));
        assert_eq!(meta.groups().collect::<Vec<_>>(), ["g?r"]);
        assert_eq!(meta.extras[3], ("k?".to_string(), "caf?".to_string()));
    }

    /// gmond's `heartbeat` metadata has TITLE "heartbeat": without a title, the name.
    #[test]
    fn title_defaults_to_the_metric_name() {
        let meta = MetricMeta::from_descriptor(&ref_uint(), None, 300);
        assert_eq!(meta.title(), Some("ref_uint"));
        assert_eq!(meta.dmax, 300);
    }
}
