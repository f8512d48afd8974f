//! The one `bindgen!` of the host, pointed at `wit/`, and the conversions from the
//! generated types into the shared `crate::metric` types. Nothing outside `runtime`
//! sees the generated types.

use super::state::HostState;
use crate::metric;

// The widest world: `metric-module` plus the `python` import of the bundled
// interpreter. Its exports are the same, so its `Pre` type-checks every module, and
// the linker offers every import (a component that imports less links as well).
wasmtime::component::bindgen!({
    path: "../wit",
    world: "python-interpreter",
});

pub(crate) use self::PythonInterpreter as MetricModule;
pub(crate) use self::PythonInterpreterPre as MetricModulePre;

// `self::`: in doctests the crate itself is also an extern crate named `wasmond`.
use self::wasmond::metric::log::{self as wit_log};
use self::wasmond::metric::types as wit;

/// A value as the WIT types carry it (`collect.answer` lifts it).
pub(crate) use self::wasmond::metric::types::MetricValue as WitMetricValue;

/// Links our `log`, `filesystem` and `python` imports (`types` has no functions)
/// into `linker`.
pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<HostState>,
) -> wasmtime::Result<()> {
    PythonInterpreter::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
        linker,
        |state| state,
    )
}

impl wit::Host for HostState {}

impl wit_log::Host for HostState {
    fn log(&mut self, level: wit_log::Level, message: String) {
        self.log.write(log_level(level), &message);
    }
}

fn log_level(level: wit_log::Level) -> tracing::Level {
    match level {
        wit_log::Level::Error => tracing::Level::ERROR,
        wit_log::Level::Warn => tracing::Level::WARN,
        wit_log::Level::Info => tracing::Level::INFO,
        wit_log::Level::Debug => tracing::Level::DEBUG,
        wit_log::Level::Trace => tracing::Level::TRACE,
    }
}

impl From<wit::MetricDescriptor> for metric::MetricDescriptor {
    fn from(d: wit::MetricDescriptor) -> metric::MetricDescriptor {
        metric::MetricDescriptor {
            name: d.name,
            value_type: d.value_type.into(),
            units: d.units,
            slope: d.slope.into(),
            format: d.format,
            time_max: d.time_max,
            description: d.description,
            groups: d.groups,
            extra: d.extra,
        }
    }
}

impl From<wit::ValueType> for metric::ValueType {
    fn from(value_type: wit::ValueType) -> metric::ValueType {
        match value_type {
            wit::ValueType::String => metric::ValueType::String,
            wit::ValueType::Int8 => metric::ValueType::Int8,
            wit::ValueType::Uint8 => metric::ValueType::UInt8,
            wit::ValueType::Int16 => metric::ValueType::Int16,
            wit::ValueType::Uint16 => metric::ValueType::UInt16,
            wit::ValueType::Int32 => metric::ValueType::Int32,
            wit::ValueType::Uint32 => metric::ValueType::UInt32,
            wit::ValueType::Float => metric::ValueType::Float,
            wit::ValueType::Double => metric::ValueType::Double,
        }
    }
}

impl From<wit::Slope> for metric::Slope {
    fn from(slope: wit::Slope) -> metric::Slope {
        match slope {
            wit::Slope::Zero => metric::Slope::Zero,
            wit::Slope::Positive => metric::Slope::Positive,
            wit::Slope::Negative => metric::Slope::Negative,
            wit::Slope::Both => metric::Slope::Both,
            wit::Slope::Derivative => metric::Slope::Derivative,
            wit::Slope::Unspecified => metric::Slope::Unspecified,
        }
    }
}

impl From<wit::MetricValue> for metric::MetricValue {
    fn from(value: wit::MetricValue) -> metric::MetricValue {
        match value {
            wit::MetricValue::String(v) => metric::MetricValue::String(v),
            wit::MetricValue::Int8(v) => metric::MetricValue::Int8(v),
            wit::MetricValue::Uint8(v) => metric::MetricValue::UInt8(v),
            wit::MetricValue::Int16(v) => metric::MetricValue::Int16(v),
            wit::MetricValue::Uint16(v) => metric::MetricValue::UInt16(v),
            wit::MetricValue::Int32(v) => metric::MetricValue::Int32(v),
            wit::MetricValue::Uint32(v) => metric::MetricValue::UInt32(v),
            wit::MetricValue::Float(v) => metric::MetricValue::Float(v),
            wit::MetricValue::Double(v) => metric::MetricValue::Double(v),
        }
    }
}
