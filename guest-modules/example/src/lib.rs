//! Example module: one metric of every value type, shaped by its params.
//!
//! Params (all optional):
//! - `prefix`: prepended to every metric name (default `example_`).
//! - `step`: how much the counter behind the numeric metrics grows per call (default 1).
//! - `message`: the value of the string metric (default `hello from wasm`).
//! - `group`: the metric group (default `example`).
//!
//! Each numeric metric reports the module's call counter times `step`, wrapped into
//! its type, so successive calls show values moving.

use wasmond_guest::{Metric, MetricValue, Module, Params, Slope, ValueType};

struct Example {
    prefix: String,
    step: i64,
    message: String,
    calls: i64,
}

impl Module for Example {
    fn init(params: &Params) -> Result<(Self, Vec<Metric>), String> {
        let prefix = params.get("prefix").unwrap_or("example_").to_string();
        let step = params.parse_or("step", 1i64)?;
        let message = params.get("message").unwrap_or("hello from wasm").to_string();
        let group = params.get("group").unwrap_or("example");
        let metrics = [
            ("string", ValueType::String, "", "%s"),
            ("int8", ValueType::Int8, "count", "%d"),
            ("uint8", ValueType::Uint8, "count", "%u"),
            ("int16", ValueType::Int16, "count", "%d"),
            ("uint16", ValueType::Uint16, "count", "%u"),
            ("int32", ValueType::Int32, "count", "%d"),
            ("uint32", ValueType::Uint32, "count", "%u"),
            ("float", ValueType::Float, "ratio", "%.2f"),
            ("double", ValueType::Double, "ratio", "%.4f"),
        ]
        .into_iter()
        .map(|(suffix, value_type, units, format)| {
            let slope = if value_type == ValueType::String { Slope::Zero } else { Slope::Both };
            Metric::new(format!("{prefix}{suffix}"), value_type)
                .units(units)
                .format(format)
                .slope(slope)
                .description(format!("Example {suffix} metric"))
                .group(group)
        })
        .collect();
        Ok((Example { prefix, step, message, calls: 0 }, metrics))
    }

    fn handle(&mut self, metric: &str) -> Result<MetricValue, String> {
        self.calls += 1;
        let n = self.calls.wrapping_mul(self.step);
        let suffix = metric
            .strip_prefix(self.prefix.as_str())
            .ok_or_else(|| format!("unknown metric {metric}"))?;
        let value = match suffix {
            "string" => MetricValue::String(self.message.clone()),
            "int8" => MetricValue::Int8(n as i8),
            "uint8" => MetricValue::Uint8(n as u8),
            "int16" => MetricValue::Int16(n as i16),
            "uint16" => MetricValue::Uint16(n as u16),
            "int32" => MetricValue::Int32(n as i32),
            "uint32" => MetricValue::Uint32(n as u32),
            "float" => MetricValue::Float(n as f32 / 4.0),
            "double" => MetricValue::Double(n as f64 / 8.0),
            _ => return Err(format!("unknown metric {metric}")),
        };
        Ok(value)
    }
}

wasmond_guest::export_module!(Example);
