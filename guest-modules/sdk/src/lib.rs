//! The Rust SDK for wasmond metric modules.
//!
//! A module implements [`Module`] and exports itself with [`export_module!`]:
//!
//! ```ignore
//! use wasmond_guest::{Metric, MetricValue, Module, Params, ValueType};
//!
//! struct Uptime;
//!
//! impl Module for Uptime {
//!     fn init(_params: &Params) -> Result<(Self, Vec<Metric>), String> {
//!         Ok((Uptime, vec![Metric::new("uptime", ValueType::Double).units("s")]))
//!     }
//!     fn handle(&mut self, _metric: &str) -> Result<MetricValue, String> {
//!         Ok(MetricValue::Double(42.0))
//!     }
//! }
//!
//! wasmond_guest::export_module!(Uptime);
//! ```
//!
//! The SDK owns the glue between the WIT world `wasmond:metric/metric-module-each`
//! and that trait: it keeps the module's state between calls, builds descriptors
//! with gmond's defaults, and answers a collection group's metrics in one call
//! (`handle-each`), each through [`Module::handle`].

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "metric-module-each",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "wasmond_guest::bindings",
    });
}

pub use bindings::wasmond::metric::filesystem::Usage as FilesystemUsage;
pub use bindings::wasmond::metric::log::Level;
pub use bindings::wasmond::metric::types::{MetricDescriptor, MetricValue, Slope, ValueType};

/// Writes a line to the host's log, attributed to this module.
pub fn log(level: Level, message: &str) {
    bindings::wasmond::metric::log::log(level, message);
}

/// The size and free space of the local file system mounted at `mount_point`
/// (statvfs). The module needs `sandbox { allow_filesystem_usage = yes }`.
pub fn filesystem_usage(mount_point: &str) -> Result<FilesystemUsage, String> {
    bindings::wasmond::metric::filesystem::statvfs(mount_point)
}

/// A metric module: state created by `init`, asked for values by `handle`.
pub trait Module: Sized + 'static {
    /// Reads the module's params and declares its metrics.
    fn init(params: &Params) -> Result<(Self, Vec<Metric>), String>;

    /// Returns the current value of `metric`, one of the names declared by `init`.
    fn handle(&mut self, metric: &str) -> Result<MetricValue, String>;

    /// Runs once before the module is unloaded.
    fn cleanup(&mut self) {}
}

/// The `param NAME { value = ... }` blocks of the module's `.pyconf`, in file order.
#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn new(pairs: Vec<(String, String)>) -> Params {
        Params(pairs)
    }

    /// The value of param `name`, if set (the last one wins, as in gmond).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The value of param `name` parsed as `T`, or `default` when it is not set.
    pub fn parse_or<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|_| format!("param {name}: cannot parse {text:?}")),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(key, value)| (key.as_str(), value.as_str()))
    }
}

/// A metric descriptor under construction, starting from gmond's defaults:
/// slope `both`, `time_max` 60 s, the usual printf format of its type.
#[derive(Debug, Clone)]
pub struct Metric(MetricDescriptor);

impl Metric {
    pub fn new(name: impl Into<String>, value_type: ValueType) -> Metric {
        Metric(MetricDescriptor {
            name: name.into(),
            value_type,
            units: String::new(),
            slope: Slope::Both,
            format: default_format(value_type).to_string(),
            time_max: 60,
            description: String::new(),
            groups: Vec::new(),
            extra: Vec::new(),
        })
    }

    pub fn units(mut self, units: impl Into<String>) -> Metric {
        self.0.units = units.into();
        self
    }

    pub fn slope(mut self, slope: Slope) -> Metric {
        self.0.slope = slope;
        self
    }

    pub fn format(mut self, format: impl Into<String>) -> Metric {
        self.0.format = format.into();
        self
    }

    pub fn time_max(mut self, seconds: u32) -> Metric {
        self.0.time_max = seconds;
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Metric {
        self.0.description = description.into();
        self
    }

    /// Adds a metric group (gmond's `groups`); call once per group.
    pub fn group(mut self, group: impl Into<String>) -> Metric {
        self.0.groups.push(group.into());
        self
    }

    /// Adds an extra descriptor key, copied into the metadata packet.
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<String>) -> Metric {
        self.0.extra.push((key.into(), value.into()));
        self
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn value_type(&self) -> ValueType {
        self.0.value_type
    }
}

impl From<Metric> for MetricDescriptor {
    fn from(metric: Metric) -> MetricDescriptor {
        metric.0
    }
}

/// The printf format gmond's python modules use by default for each type.
pub fn default_format(value_type: ValueType) -> &'static str {
    match value_type {
        ValueType::String => "%s",
        ValueType::Int8 | ValueType::Int16 | ValueType::Int32 => "%d",
        ValueType::Uint8 | ValueType::Uint16 | ValueType::Uint32 => "%u",
        ValueType::Float => "%.3f",
        ValueType::Double => "%.3f",
    }
}

/// Exports a [`Module`] type as the component's `metric-module-each` world.
#[macro_export]
macro_rules! export_module {
    ($module:ty) => {
        const _: () = {
            struct Glue;

            ::std::thread_local! {
                static STATE: ::std::cell::RefCell<::std::option::Option<$module>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
                /// The names `init` declared, by position: `handle-each` asks by position.
                static NAMES: ::std::cell::RefCell<::std::vec::Vec<::std::string::String>> =
                    const { ::std::cell::RefCell::new(::std::vec::Vec::new()) };
            }

            impl $crate::bindings::Guest for Glue {
                fn init(
                    params: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::MetricDescriptor>, ::std::string::String> {
                    let params = $crate::Params::new(params);
                    let (module, metrics) = <$module as $crate::Module>::init(&params)?;
                    STATE.with_borrow_mut(|state| *state = ::std::option::Option::Some(module));
                    NAMES.with_borrow_mut(|names| {
                        *names = metrics.iter().map(|metric| metric.name().to_string()).collect()
                    });
                    ::std::result::Result::Ok(metrics.into_iter().map(::std::convert::Into::into).collect())
                }

                fn handler(
                    name: ::std::string::String,
                ) -> ::std::result::Result<$crate::MetricValue, ::std::string::String> {
                    STATE.with_borrow_mut(|state| match state {
                        ::std::option::Option::Some(module) => $crate::Module::handle(module, &name),
                        ::std::option::Option::None => {
                            ::std::result::Result::Err(::std::string::String::from("handler called before init"))
                        }
                    })
                }

                fn handle_each(metrics: ::std::vec::Vec<$crate::bindings::wasmond::metric::collect::Span>) {
                    let positions = metrics.iter().flat_map(|span| (span.first..).take(span.count as usize));
                    NAMES.with_borrow(|names| {
                        STATE.with_borrow_mut(|state| {
                            for metric in positions {
                                let value = match (state.as_mut(), names.get(metric as usize)) {
                                    (::std::option::Option::Some(module), ::std::option::Option::Some(name)) => {
                                        $crate::Module::handle(module, name)
                                    }
                                    (::std::option::Option::None, _) => {
                                        ::std::result::Result::Err(::std::string::String::from("handle-each called before init"))
                                    }
                                    (_, ::std::option::Option::None) => {
                                        ::std::result::Result::Err(::std::format!("no metric at position {metric}"))
                                    }
                                };
                                $crate::bindings::wasmond::metric::collect::answer(metric, value.as_ref().map_err(::std::string::String::as_str));
                            }
                        })
                    })
                }

                fn cleanup() {
                    if let ::std::option::Option::Some(mut module) = STATE.with_borrow_mut(|state| state.take()) {
                        $crate::Module::cleanup(&mut module);
                    }
                }
            }

            $crate::bindings::export_world!(Glue with_types_in $crate::bindings);
        };
    };
}
