//! The metric vocabulary shared by every part of the host.
//!
//! What a module declares (`MetricDescriptor`) and returns (`MetricValue`), a metric's
//! metadata as gmond keeps and sends it ([`MetricMeta`]), and what the scheduler hands
//! the sender ([`SendRequest`]): the shapes that `collect`, `store`, `export`, `net` and
//! `wire` share, below all of them, so their imports run one way. The runtime converts
//! the WIT-generated types into these, so nothing outside `runtime` depends on the
//! bindings.

use std::fmt;
use std::sync::Arc;

mod meta;

pub use meta::{EXTRA_DESC, EXTRA_GROUP, EXTRA_TITLE, MetricMeta};

/// The type of a metric's value, with gmond's names (`TYPE` in the XML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    String,
    Int8,
    UInt8,
    Int16,
    UInt16,
    Int32,
    UInt32,
    Float,
    Double,
}

impl ValueType {
    pub const ALL: [ValueType; 9] = [
        ValueType::String,
        ValueType::Int8,
        ValueType::UInt8,
        ValueType::Int16,
        ValueType::UInt16,
        ValueType::Int32,
        ValueType::UInt32,
        ValueType::Float,
        ValueType::Double,
    ];

    /// The name gmond uses in its XML `TYPE` attribute and in metadata packets.
    pub fn gmond_name(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Int8 => "int8",
            ValueType::UInt8 => "uint8",
            ValueType::Int16 => "int16",
            ValueType::UInt16 => "uint16",
            ValueType::Int32 => "int32",
            ValueType::UInt32 => "uint32",
            ValueType::Float => "float",
            ValueType::Double => "double",
        }
    }

    /// Parses a gmond type name; also accepts the python host's aliases `uint` and `int`.
    pub(crate) fn from_gmond_name(name: &str) -> Option<ValueType> {
        let ty = match name {
            "string" => ValueType::String,
            "int8" => ValueType::Int8,
            "uint8" => ValueType::UInt8,
            "int16" => ValueType::Int16,
            "uint16" => ValueType::UInt16,
            "int32" | "int" => ValueType::Int32,
            "uint32" | "uint" => ValueType::UInt32,
            "float" => ValueType::Float,
            "double" => ValueType::Double,
            _ => return None,
        };
        Some(ty)
    }

    /// Whether values of this type are numbers (gmetad keeps RRDs only for these).
    pub fn is_numeric(self) -> bool {
        self != ValueType::String
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.gmond_name())
    }
}

/// How a metric's value moves over time (gmond's `slope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slope {
    Zero,
    Positive,
    Negative,
    Both,
    Derivative,
    Unspecified,
}

impl Slope {
    /// The name gmond uses in its XML `SLOPE` attribute.
    pub fn gmond_name(self) -> &'static str {
        match self {
            Slope::Zero => "zero",
            Slope::Positive => "positive",
            Slope::Negative => "negative",
            Slope::Both => "both",
            Slope::Derivative => "derivative",
            Slope::Unspecified => "unspecified",
        }
    }

    #[cfg(test)]
    pub(crate) fn from_gmond_name(name: &str) -> Option<Slope> {
        let slope = match name {
            "zero" => Slope::Zero,
            "positive" => Slope::Positive,
            "negative" => Slope::Negative,
            "both" => Slope::Both,
            "derivative" => Slope::Derivative,
            "unspecified" => Slope::Unspecified,
            _ => return None,
        };
        Some(slope)
    }
}

impl fmt::Display for Slope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.gmond_name())
    }
}

/// A metric as a module declares it: every field of a gmond python descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDescriptor {
    pub name: String,
    pub value_type: ValueType,
    pub units: String,
    pub slope: Slope,
    /// printf-style format for `VAL` in the XML.
    pub format: String,
    /// gmond's `time_max` (TMAX): the longest the value may go unreported.
    pub time_max: u32,
    pub description: String,
    pub groups: Vec<String>,
    /// Other descriptor keys, copied into the metadata packet as extras.
    pub extra: Vec<(String, String)>,
}

/// One value of a metric.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    String(String),
    Int8(i8),
    UInt8(u8),
    Int16(i16),
    UInt16(u16),
    Int32(i32),
    UInt32(u32),
    Float(f32),
    Double(f64),
}

impl MetricValue {
    pub fn value_type(&self) -> ValueType {
        match self {
            MetricValue::String(_) => ValueType::String,
            MetricValue::Int8(_) => ValueType::Int8,
            MetricValue::UInt8(_) => ValueType::UInt8,
            MetricValue::Int16(_) => ValueType::Int16,
            MetricValue::UInt16(_) => ValueType::UInt16,
            MetricValue::Int32(_) => ValueType::Int32,
            MetricValue::UInt32(_) => ValueType::UInt32,
            MetricValue::Float(_) => ValueType::Float,
            MetricValue::Double(_) => ValueType::Double,
        }
    }

    /// The value as a number, for thresholds; `None` for strings.
    pub fn as_f64(&self) -> Option<f64> {
        let number = match *self {
            MetricValue::String(_) => return None,
            MetricValue::Int8(v) => v.into(),
            MetricValue::UInt8(v) => v.into(),
            MetricValue::Int16(v) => v.into(),
            MetricValue::UInt16(v) => v.into(),
            MetricValue::Int32(v) => v.into(),
            MetricValue::UInt32(v) => v.into(),
            MetricValue::Float(v) => v.into(),
            MetricValue::Double(v) => v,
        };
        Some(number)
    }
}

/// Values due to be sent together (one collection group's), in send order.
#[derive(Debug, Clone, PartialEq)]
pub struct SendRequest {
    pub metrics: Vec<OutgoingMetric>,
}

/// One metric to send: its metadata packet first when `metadata` is set (the metric is
/// new to the channel, `send_metadata_interval` passed, or a peer asked), then its value.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMetric {
    pub metadata: Option<Arc<MetricMeta>>,
    pub name: Arc<str>,
    pub value: MetricValue,
    /// The printf format of the value packet (the descriptor's `format`).
    pub format: Arc<str>,
}
