//! Which metrics a `collection_group` collects: its `metric { name | name_match }`
//! entries resolved against the metrics the modules declared, with their titles.
//!
//! gmond's rules (gmond.conf(5), gmond.c `setup_collection_groups`): `name` selects one
//! metric; `name_match` is an unanchored PCRE search over every metric name, and its
//! `title` may quote the match's groups as `\1` .. `\9`; when an entry has no title the
//! metric's name is its title. A title naming a group the match did not set gets an empty
//! string there, as in gmond. `\` followed by anything but `1`..`9` is refused (gmond
//! exits on it); a lone trailing `\` is dropped, as gmond does.
//!
//! wasmond's additions (Ceilometer's pollster-list habits): a `name` with `*`, `?` or
//! `[...]` is a glob over the whole name (`cpu_*`, `disk_?`); a `name` starting with `!`
//! (`!cpu_steal`, `!cpu_*`) excludes what it matches from every other entry of the
//! group, whatever their order; a group whose entries are all exclusions collects every
//! metric but those.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use thiserror::Error;

/// How often a group collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collect {
    /// `collect_every = N`: every N seconds, starting at once.
    Every(Duration),
    /// `collect_once = yes`: at start (and when a module is (re)started), then only re-sent.
    Once,
}

/// One `collection_group`, in the terms the scheduler needs.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub collect: Collect,
    /// `time_threshold`: the longest the group's values go unsent.
    pub time_threshold: Duration,
    pub entries: Vec<EntrySpec>,
}

/// One `metric { }` entry of a group.
#[derive(Debug, Clone)]
pub struct EntrySpec {
    pub selector: Selector,
    /// `value_threshold`; `None` when unset (gmond's default of -1 means the same).
    pub value_threshold: Option<f64>,
}

#[derive(Debug, Clone)]
pub enum Selector {
    /// `name = "..."`, with its optional literal `title`.
    Name { name: String, title: Option<String> },
    /// `name_match = "..."`, with its optional `title` template.
    Match {
        pattern: Regex,
        title: Option<TitleTemplate>,
    },
    /// `name = "cpu_*"`: every metric whose whole name the glob matches.
    Glob {
        pattern: glob::Pattern,
        title: Option<String>,
    },
    /// `name = "!cpu_*"` (or `"!cpu_steal"`): what the group's other entries must not
    /// select.
    Exclude { pattern: glob::Pattern },
}

/// Why a group entry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectorError {
    #[error("name_match {pattern:?} is not a valid regular expression: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("title {template:?}: '\\{found}' is not a reference to a group; use \\1 to \\9")]
    BadReference { template: String, found: char },
    #[error("name {name:?} is not a valid glob: {reason}")]
    BadGlob { name: String, reason: String },
}

/// How globs match metric names: every character alike (a `/` or a leading `.` is
/// nothing special in a metric name), case-sensitive as names are.
const GLOB_OPTIONS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: false,
    require_literal_leading_dot: false,
};

/// Whether a `name` is a glob rather than one metric's name.
pub(crate) fn is_glob(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

impl Selector {
    pub fn name(name: impl Into<String>, title: Option<String>) -> Selector {
        Selector::Name {
            name: name.into(),
            title,
        }
    }

    /// A `name` entry: one metric, a glob, or (with a leading `!`) an exclusion.
    pub(crate) fn from_name(name: &str, title: Option<String>) -> Result<Selector, SelectorError> {
        let glob = |text: &str| {
            glob::Pattern::new(text).map_err(|err| SelectorError::BadGlob {
                name: name.to_string(),
                reason: err.msg.to_string(),
            })
        };
        if let Some(excluded) = name.strip_prefix('!') {
            return Ok(Selector::Exclude {
                pattern: glob(excluded)?,
            });
        }
        if is_glob(name) {
            return Ok(Selector::Glob {
                pattern: glob(name)?,
                title,
            });
        }
        Ok(Selector::name(name, title))
    }

    /// Whether this entry excludes rather than selects.
    pub(crate) fn is_exclusion(&self) -> bool {
        matches!(self, Selector::Exclude { .. })
    }

    /// Whether this entry is an exclusion that matches `metric`.
    pub fn excludes(&self, metric: &str) -> bool {
        match self {
            Selector::Exclude { pattern } => pattern.matches_with(metric, GLOB_OPTIONS),
            _ => false,
        }
    }

    /// A `name_match` entry; the pattern and the title template are checked here.
    pub fn name_match(pattern: &str, title: Option<&str>) -> Result<Selector, SelectorError> {
        let regex = Regex::new(pattern).map_err(|err| SelectorError::BadPattern {
            pattern: pattern.to_string(),
            reason: err.to_string(),
        })?;
        let title = title.map(TitleTemplate::parse).transpose()?;
        Ok(Selector::Match {
            pattern: regex,
            title,
        })
    }

    /// The entry as written, for messages: `name "x"` or `name_match "x"`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Selector::Name { name, .. } => format!("name {name:?}"),
            Selector::Match { pattern, .. } => format!("name_match {:?}", pattern.as_str()),
            Selector::Glob { pattern, .. } => format!("name {:?}", pattern.as_str()),
            Selector::Exclude { pattern } => format!("name {:?}", format!("!{}", pattern.as_str())),
        }
    }

    /// The title of `metric` if this entry selects it.
    pub fn select(&self, metric: &str) -> Option<String> {
        match self {
            Selector::Name { name, title } => {
                (name == metric).then(|| title.clone().unwrap_or_else(|| metric.to_string()))
            }
            // Most metrics do not match: a plain search allocates nothing, so captures
            // are taken only for a match whose title quotes them.
            Selector::Match {
                pattern,
                title: Some(template),
            } if pattern.is_match(metric) => Some(template.expand(&pattern.captures(metric)?)),
            Selector::Match { title: Some(_), .. } => None,
            Selector::Match {
                pattern,
                title: None,
            } => pattern.is_match(metric).then(|| metric.to_string()),
            Selector::Glob { pattern, title } => pattern
                .matches_with(metric, GLOB_OPTIONS)
                .then(|| title.clone().unwrap_or_else(|| metric.to_string())),
            Selector::Exclude { .. } => None,
        }
    }
}

/// A `title` with `\N` references to a `name_match`'s groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TitleTemplate {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
}

impl TitleTemplate {
    pub fn parse(template: &str) -> Result<TitleTemplate, SelectorError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = template.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                text.push(c);
                continue;
            }
            match chars.next() {
                None => {}
                Some(digit @ '1'..='9') => {
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Group(digit as usize - '0' as usize));
                }
                Some(found) => {
                    return Err(SelectorError::BadReference {
                        template: template.to_string(),
                        found,
                    });
                }
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(TitleTemplate { pieces })
    }

    pub(crate) fn expand(&self, captures: &regex::Captures<'_>) -> String {
        let mut title = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => title.push_str(text),
                Piece::Group(index) => {
                    title.push_str(captures.get(*index).map_or("", |group| group.as_str()))
                }
            }
        }
        title
    }
}

/// A metric a module declared: the catalog entries that groups select from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricKey {
    pub module: Arc<str>,
    pub metric: Arc<str>,
}

impl MetricKey {
    pub fn new(module: &str, metric: &str) -> MetricKey {
        MetricKey {
            module: Arc::from(module),
            metric: Arc::from(metric),
        }
    }
}

/// The metrics groups select from, in catalog order (the modules' configuration order,
/// each module's declaration order), with whose they are (a tenant's index, or `None`
/// for the operator's and the host's). Names are indexed, so an entry that names one
/// metric (as gmond's `.pyconf` files mostly do) costs a lookup, not a pass over every
/// metric: planning a thousand modules with a group each stays near-linear.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    keys: Vec<MetricKey>,
    tenants: Vec<Option<usize>>,
    /// Each name's positions in `keys`, ascending.
    by_name: HashMap<Arc<str>, Vec<usize>>,
    /// Each tenant's positions in `keys`, ascending.
    by_tenant: HashMap<usize, Vec<usize>>,
}

impl Catalog {
    pub fn new(entries: impl IntoIterator<Item = (MetricKey, Option<usize>)>) -> Catalog {
        let mut catalog = Catalog::default();
        for (position, (key, tenant)) in entries.into_iter().enumerate() {
            catalog
                .by_name
                .entry(key.metric.clone())
                .or_default()
                .push(position);
            if let Some(tenant) = tenant {
                catalog.by_tenant.entry(tenant).or_default().push(position);
            }
            catalog.keys.push(key);
            catalog.tenants.push(tenant);
        }
        catalog
    }

    /// The operator's view: every metric.
    #[cfg(test)]
    pub fn everything(&self) -> Scope<'_> {
        Scope {
            catalog: self,
            tenant: None,
        }
    }

    /// What a group may select: a tenant's group only its tenant's metrics.
    pub(crate) fn scope(&self, tenant: Option<usize>) -> Scope<'_> {
        Scope {
            catalog: self,
            tenant,
        }
    }
}

/// The part of the catalog one group selects from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    catalog: &'a Catalog,
    tenant: Option<usize>,
}

impl<'a> Scope<'a> {
    /// Every key in scope, in catalog order.
    fn keys(&self) -> Box<dyn Iterator<Item = &'a MetricKey> + 'a> {
        let catalog = self.catalog;
        match self.tenant {
            None => Box::new(catalog.keys.iter()),
            Some(tenant) => Box::new(
                catalog
                    .by_tenant
                    .get(&tenant)
                    .into_iter()
                    .flatten()
                    .map(|&position| &catalog.keys[position]),
            ),
        }
    }

    /// The keys in scope that `selector` could select, in catalog order: those of its
    /// name for a plain `name`, every key otherwise.
    fn candidates(&self, selector: &Selector) -> Box<dyn Iterator<Item = &'a MetricKey> + 'a> {
        let Selector::Name { name, .. } = selector else {
            return self.keys();
        };
        let (catalog, tenant) = (self.catalog, self.tenant);
        Box::new(
            catalog
                .by_name
                .get(name.as_str())
                .into_iter()
                .flatten()
                .filter(move |&&position| tenant.is_none() || catalog.tenants[position] == tenant)
                .map(|&position| &catalog.keys[position]),
        )
    }
}

/// A metric a group collects, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    pub key: MetricKey,
    pub title: String,
    pub value_threshold: Option<f64>,
    /// Index of the group entry that selected it.
    pub entry: usize,
}

/// What a group collects, and which of its entries selected nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSelection {
    pub metrics: Vec<Selected>,
    pub unmatched_entries: Vec<usize>,
    /// Metrics an exclusion (`!...`) kept out of the group, with that entry's index.
    pub excluded: Vec<(MetricKey, usize)>,
}

/// Resolves a group's entries against the metrics in `scope`, in catalog order within
/// each entry. A metric selected by two entries of one group is collected once, by the
/// first; one that an exclusion matches is collected by none. When every entry is an
/// exclusion, the first of them selects every metric the exclusions leave (see the module
/// docs).
pub(crate) fn select_group(spec: &GroupSpec, scope: Scope<'_>) -> GroupSelection {
    let mut metrics: Vec<Selected> = Vec::new();
    let mut taken: HashSet<&MetricKey> = HashSet::new();
    let mut unmatched_entries = Vec::new();
    let mut excluded = Vec::new();
    let exclusions: Vec<(usize, &EntrySpec)> = spec
        .entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.selector.is_exclusion())
        .collect();
    let first_exclusion = |key: &MetricKey| {
        exclusions
            .iter()
            .find(|(_, entry)| entry.selector.excludes(&key.metric))
            .map(|(entry_index, _)| *entry_index)
    };
    if !exclusions.is_empty() {
        let mut used = HashSet::new();
        for key in scope.keys() {
            let mut matching = exclusions
                .iter()
                .filter(|(_, entry)| entry.selector.excludes(&key.metric))
                .map(|(entry_index, _)| *entry_index);
            if let Some(first) = matching.next() {
                excluded.push((key.clone(), first));
                used.insert(first);
                used.extend(matching);
            }
        }
        unmatched_entries.extend(
            exclusions
                .iter()
                .map(|(entry_index, _)| *entry_index)
                .filter(|entry_index| !used.contains(entry_index)),
        );
    }
    let is_excluded = |key: &MetricKey| first_exclusion(key).is_some();
    if !exclusions.is_empty() && exclusions.len() == spec.entries.len() {
        let (entry_index, entry) = exclusions[0];
        for key in scope.keys().filter(|key| !is_excluded(key)) {
            metrics.push(Selected {
                key: key.clone(),
                title: key.metric.to_string(),
                value_threshold: entry.value_threshold,
                entry: entry_index,
            });
        }
        return GroupSelection {
            metrics,
            unmatched_entries,
            excluded,
        };
    }
    for (entry_index, entry) in spec.entries.iter().enumerate() {
        if entry.selector.is_exclusion() {
            continue;
        }
        let mut matched = false;
        for key in scope.candidates(&entry.selector) {
            let Some(title) = entry.selector.select(&key.metric) else {
                continue;
            };
            matched = true;
            if is_excluded(key) || !taken.insert(key) {
                continue;
            }
            metrics.push(Selected {
                key: key.clone(),
                title,
                value_threshold: entry.value_threshold,
                entry: entry_index,
            });
        }
        if !matched {
            unmatched_entries.push(entry_index);
        }
    }
    unmatched_entries.sort_unstable();
    GroupSelection {
        metrics,
        unmatched_entries,
        excluded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(spec: &GroupSpec, keys: &[MetricKey]) -> GroupSelection {
        let catalog = Catalog::new(keys.iter().map(|key| (key.clone(), None)));
        select_group(spec, catalog.everything())
    }

    /// The catalog's metrics that no group collects (gmond ignores them silently).
    fn uncollected<'a>(catalog: &'a [MetricKey], groups: &[GroupSelection]) -> Vec<&'a MetricKey> {
        let collected: HashSet<&MetricKey> = groups
            .iter()
            .flat_map(|group| group.metrics.iter().map(|m| &m.key))
            .collect();
        catalog
            .iter()
            .filter(|key| !collected.contains(key))
            .collect()
    }

    fn catalog(names: &[&str]) -> Vec<MetricKey> {
        names.iter().map(|name| MetricKey::new("m", name)).collect()
    }

    fn group(entries: Vec<EntrySpec>) -> GroupSpec {
        GroupSpec {
            collect: Collect::Every(Duration::from_secs(20)),
            time_threshold: Duration::from_secs(90),
            entries,
        }
    }

    fn entry(selector: Selector, value_threshold: Option<f64>) -> EntrySpec {
        EntrySpec {
            selector,
            value_threshold,
        }
    }

    #[test]
    fn name_match_title_quotes_groups_like_gmond() {
        // The example of gmond.conf(5): title = "CPU-\\2 \\1" in the file, CPU-\2 \1 parsed.
        let selector =
            Selector::name_match("multicpu_([a-z]+)([0-9]+)", Some("CPU-\\2 \\1")).unwrap();
        assert_eq!(
            selector.select("multicpu_idle3").as_deref(),
            Some("CPU-3 idle")
        );
        assert_eq!(
            selector.select("multicpu_system12").as_deref(),
            Some("CPU-12 system")
        );
        assert_eq!(selector.select("cpu_idle"), None);
    }

    #[test]
    fn name_match_searches_anywhere_like_pcre_exec() {
        let selector = Selector::name_match("cpu", None).unwrap();
        assert_eq!(
            selector.select("multicpu_idle0").as_deref(),
            Some("multicpu_idle0")
        );
    }

    #[test]
    fn title_edge_cases() {
        let template = TitleTemplate::parse("a\\1b\\").unwrap();
        let regex = Regex::new("(x)?y").unwrap();
        assert_eq!(
            template.expand(&regex.captures("y").unwrap()),
            "ab",
            "unset group is empty"
        );
        assert_eq!(template.expand(&regex.captures("xy").unwrap()), "axb");
        let three = TitleTemplate::parse("\\3").unwrap();
        assert_eq!(
            three.expand(&regex.captures("xy").unwrap()),
            "",
            "group beyond the pattern"
        );
        assert_eq!(
            TitleTemplate::parse("cpu \\n").unwrap_err(),
            SelectorError::BadReference {
                template: "cpu \\n".into(),
                found: 'n'
            }
        );
        assert!(matches!(
            TitleTemplate::parse("\\0"),
            Err(SelectorError::BadReference { found: '0', .. })
        ));
    }

    #[test]
    fn bad_pattern_is_an_error_not_a_panic() {
        assert!(matches!(
            Selector::name_match("cpu_(", None),
            Err(SelectorError::BadPattern { .. })
        ));
    }

    #[test]
    fn name_entry_uses_literal_title_or_the_name() {
        let with = Selector::name("cpu_num", Some("Number of CPUs \\1".into()));
        assert_eq!(
            with.select("cpu_num").as_deref(),
            Some("Number of CPUs \\1")
        );
        assert_eq!(
            Selector::name("cpu_num", None).select("cpu_num").as_deref(),
            Some("cpu_num")
        );
        assert_eq!(Selector::name("cpu_num", None).select("cpu_num_x"), None);
    }

    #[test]
    fn a_tenants_scope_holds_only_its_metrics_by_name_glob_or_pattern() {
        let catalog = Catalog::new([
            (MetricKey::new("core", "load_one"), None),
            (MetricKey::new("t0", "t0_load"), Some(0)),
            (MetricKey::new("t1", "t1_load"), Some(1)),
        ]);
        let names = |selection: GroupSelection| -> Vec<String> {
            selection
                .metrics
                .iter()
                .map(|m| m.key.metric.to_string())
                .collect()
        };
        let by_name = group(vec![
            entry(Selector::name("load_one", None), None),
            entry(Selector::name("t0_load", None), None),
            entry(Selector::name("t1_load", None), None),
        ]);
        assert_eq!(
            names(select_group(&by_name, catalog.scope(Some(0)))),
            ["t0_load"]
        );
        assert_eq!(
            names(select_group(&by_name, catalog.everything())),
            ["load_one", "t0_load", "t1_load"]
        );
        let by_pattern = group(vec![
            entry(Selector::name_match("load", None).unwrap(), None),
            entry(Selector::from_name("*load*", None).unwrap(), None),
        ]);
        assert_eq!(
            names(select_group(&by_pattern, catalog.scope(Some(1)))),
            ["t1_load"]
        );
    }

    #[test]
    fn selects_in_catalog_order_once_and_reports_unmatched_entries() {
        let spec = group(vec![
            entry(Selector::name_match("^net_", None).unwrap(), Some(4096.0)),
            entry(Selector::name("net_in", Some("In".into())), Some(1.0)),
            entry(Selector::name("nope", None), None),
        ]);
        let catalog = catalog(&["cpu", "net_out", "net_in"]);
        let selection = select(&spec, &catalog);
        let names: Vec<_> = selection
            .metrics
            .iter()
            .map(|m| (&*m.key.metric, m.entry))
            .collect();
        assert_eq!(names, [("net_out", 0), ("net_in", 0)]);
        assert_eq!(selection.metrics[1].value_threshold, Some(4096.0));
        assert_eq!(selection.unmatched_entries, [2]);
        let left = uncollected(&catalog, &[selection]);
        assert_eq!(left, [&catalog[0]]);
    }

    fn names(selection: &GroupSelection) -> Vec<&str> {
        selection.metrics.iter().map(|m| &*m.key.metric).collect()
    }

    #[test]
    fn name_globs_match_whole_names() {
        let cpu = Selector::from_name("cpu_*", Some("CPU".into())).unwrap();
        assert_eq!(cpu.select("cpu_user").as_deref(), Some("CPU"));
        assert_eq!(cpu.select("cpu_").as_deref(), Some("CPU"));
        assert_eq!(
            cpu.select("multicpu_user"),
            None,
            "anchored, unlike name_match"
        );
        let disk = Selector::from_name("disk_?", None).unwrap();
        assert_eq!(disk.select("disk_a").as_deref(), Some("disk_a"));
        assert_eq!(disk.select("disk_ab"), None);
        let class = Selector::from_name("net_[io]*", None).unwrap();
        assert!(class.select("net_in").is_some() && class.select("net_out").is_some());
        assert_eq!(class.select("net_x"), None);
        // A plain name stays an exact match.
        assert!(matches!(
            Selector::from_name("cpu_user", None).unwrap(),
            Selector::Name { .. }
        ));
        assert!(matches!(
            Selector::from_name("cpu_[", None),
            Err(SelectorError::BadGlob { .. })
        ));
        assert_eq!(
            Selector::from_name("!cpu_*", None).unwrap().describe(),
            "name \"!cpu_*\""
        );
    }

    #[test]
    fn exclusions_win_whatever_their_order() {
        let spec = group(vec![
            entry(Selector::from_name("!cpu_steal", None).unwrap(), None),
            entry(Selector::from_name("cpu_*", None).unwrap(), Some(1.0)),
            entry(Selector::name("cpu_steal", None), None),
            entry(Selector::from_name("!disk_*", None).unwrap(), None),
        ]);
        let catalog = catalog(&["cpu_user", "cpu_steal", "cpu_idle", "load_one"]);
        let selection = select(&spec, &catalog);
        assert_eq!(names(&selection), ["cpu_user", "cpu_idle"]);
        assert!(selection.metrics.iter().all(|m| m.entry == 1));
        assert_eq!(selection.excluded, [(catalog[1].clone(), 0)]);
        // The `!disk_*` exclusion matches nothing: reported like an unmatched name. The
        // `cpu_steal` entry matched, so it is not reported, though it collects nothing.
        assert_eq!(selection.unmatched_entries, [3]);
    }

    #[test]
    fn a_group_of_exclusions_takes_everything_else() {
        let spec = group(vec![
            entry(Selector::from_name("!cpu_*", None).unwrap(), Some(2.0)),
            entry(Selector::from_name("!load_f*", None).unwrap(), None),
            entry(Selector::from_name("!swap_*", None).unwrap(), None),
        ]);
        let catalog = catalog(&["cpu_user", "load_one", "load_fifteen", "mem_free"]);
        let selection = select(&spec, &catalog);
        assert_eq!(names(&selection), ["load_one", "mem_free"]);
        assert!(
            selection
                .metrics
                .iter()
                .all(|m| m.entry == 0 && m.value_threshold == Some(2.0))
        );
        let excluded: Vec<_> = selection
            .excluded
            .iter()
            .map(|(k, e)| (&*k.metric, *e))
            .collect();
        assert_eq!(excluded, [("cpu_user", 0), ("load_fifteen", 1)]);
        assert_eq!(selection.unmatched_entries, [2]);
    }
}
