//! The typed configuration: one struct per gmond section, with gmond 3.7.2's
//! defaults. Everything the daemon needs after loading, and nothing about syntax.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

use super::error::Location;
use super::sandbox::SandboxConfig;
use super::tenant::Tenant;

/// A loaded and validated configuration (gmond.conf plus everything it includes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub globals: Globals,
    pub cluster: Cluster,
    pub host: HostInfo,
    pub udp_send_channels: Vec<UdpSendChannel>,
    pub udp_recv_channels: Vec<UdpRecvChannel>,
    pub tcp_accept_channels: Vec<TcpAcceptChannel>,
    /// Every `module { }` of every `modules { }` block, in file order.
    pub modules: Vec<ModuleConfig>,
    pub collection_groups: Vec<CollectionGroup>,
    /// wasmond's `prometheus_listener { }` blocks; none unless declared.
    pub prometheus_listeners: Vec<PrometheusListener>,
    /// wasmond's `prometheus_remote_write { }` blocks; none unless declared.
    pub prometheus_remote_writes: Vec<PrometheusRemoteWrite>,
    /// wasmond's `interactive_channel { }` blocks; none unless declared.
    pub interactive_channels: Vec<InteractiveChannel>,
    /// The operator's `tenant { }`s: whose files hold which modules, and their ceilings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<Tenant>,
}

/// `globals { }`. Durations are in seconds, as in gmond.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Globals {
    pub daemonize: bool,
    pub setuid: bool,
    pub user: String,
    pub debug_level: u32,
    /// Largest UDP payload sent, in bytes.
    pub max_udp_msg_len: u32,
    /// Send nothing.
    pub mute: bool,
    /// Receive nothing.
    pub deaf: bool,
    /// Emit `<EXTRA_DATA>` in the XML.
    pub allow_extra_data: bool,
    /// Seconds after which a silent host is deleted; 0 = never.
    pub host_dmax: u32,
    /// Seconds between a host's heartbeats at most (the host's TMAX).
    pub host_tmax: u32,
    /// Seconds between sweeps of expired hosts and metrics.
    pub cleanup_threshold: u32,
    pub gexec: bool,
    /// Seconds between re-sends of all metadata; 0 = only when a metric is new.
    pub send_metadata_interval: u32,
    /// Where modules are looked for when not beside their `.conf`/`.pyconf`.
    pub module_dir: Option<PathBuf>,
    pub override_hostname: Option<String>,
    pub override_ip: Option<String>,
    /// Host tags, as written (gmond sends them as the `TAGS` metadata).
    pub tags: Option<String>,
}

impl Default for Globals {
    fn default() -> Self {
        Globals {
            daemonize: true,
            setuid: true,
            user: "nobody".into(),
            debug_level: 0,
            max_udp_msg_len: 1472,
            mute: false,
            deaf: false,
            allow_extra_data: true,
            host_dmax: 86400,
            host_tmax: 20,
            cleanup_threshold: 300,
            gexec: false,
            send_metadata_interval: 0,
            module_dir: None,
            override_hostname: None,
            override_ip: None,
            tags: None,
        }
    }
}

/// `cluster { }`: the attributes of the `<CLUSTER>` element.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    pub name: String,
    pub owner: String,
    pub latlong: String,
    pub url: String,
}

impl Default for Cluster {
    fn default() -> Self {
        let unspecified = || "unspecified".to_string();
        Cluster {
            name: unspecified(),
            owner: unspecified(),
            latlong: unspecified(),
            url: unspecified(),
        }
    }
}

/// `host { }`: the attributes of this host's `<HOST>` element.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostInfo {
    pub location: String,
}

impl Default for HostInfo {
    fn default() -> Self {
        HostInfo {
            location: "unspecified".into(),
        }
    }
}

/// `udp_send_channel { }`: where this host's metrics are sent. Either `host`
/// (unicast) or `mcast_join` (multicast) is set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UdpSendChannel {
    pub host: Option<String>,
    pub mcast_join: Option<String>,
    pub mcast_if: Option<String>,
    pub port: u16,
    pub ttl: u8,
    pub bind: Option<String>,
    pub bind_hostname: bool,
    pub declared_at: Location,
}

/// `inet4` or `inet6`, for channels that bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Inet4,
    Inet6,
}

/// `udp_recv_channel { }`: where metrics from peers (and ourselves) arrive.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UdpRecvChannel {
    pub port: u16,
    pub bind: Option<String>,
    pub mcast_join: Option<String>,
    pub mcast_if: Option<String>,
    pub family: Family,
    pub retry_bind: bool,
    /// Receive buffer size in bytes; None = the OS default (gmond's 0).
    pub buffer: Option<u32>,
    pub acl: Option<Acl>,
    pub declared_at: Location,
}

/// `tcp_accept_channel { }`: where the cluster's XML is served.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TcpAcceptChannel {
    pub port: u16,
    pub bind: Option<String>,
    pub interface: Option<String>,
    pub family: Family,
    /// Socket timeout in microseconds (an APR interval in gmond); None = gmond's -1, none.
    pub timeout_us: Option<u64>,
    pub gzip_output: bool,
    pub acl: Option<Acl>,
    pub declared_at: Location,
}

/// `prometheus_listener { }` (wasmond's own section): serves every metric of the store as
/// Prometheus text (0.0.4) or OpenMetrics over HTTP at `path`, to the peers its `acl`
/// allows (the same semantics as `tcp_accept_channel`'s).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrometheusListener {
    pub port: u16,
    pub bind: Option<String>,
    pub family: Family,
    /// The URL path served; anything else gets 404. Default `/metrics`.
    pub path: String,
    pub acl: Option<Acl>,
    pub declared_at: Location,
}

/// `prometheus_remote_write { }` (wasmond's own section): every `interval` seconds, every
/// metric of the store is pushed to `url` as a Prometheus remote-write 1.0 request;
/// up to `queue` requests wait while the receiver is unreachable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrometheusRemoteWrite {
    /// A plain `http://host[:port]/path` URL (checked when the config is read).
    pub url: String,
    /// Seconds between snapshots of the store.
    pub interval: u32,
    /// Requests kept while the receiver is unreachable; past it the oldest is dropped.
    pub queue: u32,
    pub declared_at: Location,
}

/// `interval` when a `prometheus_remote_write` names none: Prometheus' default scrape
/// interval.
pub const DEFAULT_REMOTE_WRITE_INTERVAL: u32 = 15;

/// The longest `interval`: Prometheus takes a series without a sample for 5 minutes as
/// gone, so a longer interval would make every series flicker.
pub const MAX_REMOTE_WRITE_INTERVAL: u32 = 300;

/// `queue` when a `prometheus_remote_write` names none: 4 minutes of requests at the
/// default interval.
pub const DEFAULT_REMOTE_WRITE_QUEUE: u32 = 16;

/// The largest `queue`: each request holds a whole snapshot of the store.
pub const MAX_REMOTE_WRITE_QUEUE: u32 = 1000;

/// `interactive_channel { }` (wasmond's own section): gmetad's interactive port, answering
/// one request line (a path such as `/CLUSTER/HOST`) with that part of the XML, to the
/// peers its `acl` allows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InteractiveChannel {
    pub port: u16,
    pub bind: Option<String>,
    pub family: Family,
    pub acl: Option<Acl>,
    pub declared_at: Location,
}

/// `path` when a `prometheus_listener` names none, as Prometheus' scrape configs assume.
pub const DEFAULT_METRICS_PATH: &str = "/metrics";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AclAction {
    Allow,
    Deny,
}

/// `acl { default = ...; access { ip, mask, action } ... }`: the first matching
/// `access` decides, else `default`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Acl {
    pub default: AclAction,
    pub access: Vec<AclAccess>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AclAccess {
    pub ip: IpAddr,
    /// Prefix length in bits (`mask = 24`).
    pub mask: u8,
    pub action: AclAction,
    pub declared_at: Location,
}

/// One `module { }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleConfig {
    pub name: String,
    /// `language` as written, if any (`wasm`, `python`, `C`).
    pub language: Option<String>,
    /// The wasm file to load, or why this module is not a wasm module.
    pub source: ModuleSource,
    /// The `param NAME { value = ... }` blocks, in file order. Values are strings,
    /// as gmond passes them to python modules.
    pub params: Vec<(String, String)>,
    /// gmond's one-string `params = "..."` (an argument for C modules), kept for display.
    pub params_string: Option<String>,
    pub enabled: bool,
    pub sandbox: SandboxConfig,
    /// The tenant whose file declares the module; `None`: the operator's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The `module {` line.
    pub declared_at: Location,
}

impl ModuleConfig {
    /// The component file to load, if this is an enabled wasm or python module
    /// (for a python module: the bundled interpreter).
    pub fn wasm_path(&self) -> Option<&std::path::Path> {
        match &self.source {
            ModuleSource::Wasm { path } if self.enabled => Some(path),
            ModuleSource::Python { interpreter, .. } if self.enabled => Some(interpreter),
            _ => None,
        }
    }
}

/// Where a module's code comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModuleSource {
    /// A WebAssembly component, found at `path`.
    Wasm { path: PathBuf },
    /// A gmond python module's `NAME.py`, found at `source`, to be run by the bundled
    /// Python interpreter component found at `interpreter`.
    Python {
        source: PathBuf,
        interpreter: PathBuf,
    },
    /// A gmond native module (a `.so`, or one built into gmond): wasmond skips it
    /// and has said so in a warning.
    Native {
        path: Option<String>,
        reason: String,
    },
    /// A disabled wasm or python module whose file was not found; it is not loaded,
    /// so that is not an error.
    DisabledMissing { looked_in: Vec<PathBuf> },
}

/// One `collection_group { }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectionGroup {
    /// Collect once at start-up only (then re-send every `time_threshold`).
    pub collect_once: bool,
    /// Seconds between collections.
    pub collect_every: u32,
    /// Seconds after which values are sent even if unchanged.
    pub time_threshold: u32,
    pub metrics: Vec<CollectedMetric>,
    /// The tenant whose file declares the group (it selects only that tenant's
    /// metrics); `None`: the operator's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub declared_at: Location,
}

/// One `metric { }` of a collection group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectedMetric {
    pub selector: MetricSelector,
    /// Send when the value moved by at least this much; None = gmond's -1, only
    /// on `time_threshold`.
    pub value_threshold: Option<f64>,
    /// Shown instead of the name; for `name_match`, `\1`.. stand for the groups.
    pub title: Option<String>,
    pub declared_at: Location,
}

/// Which metrics a `metric { }` entry selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricSelector {
    /// `name = "cpu_user"`: exactly this metric; wasmond also takes a glob
    /// (`"cpu_*"`, `"disk_?"`) and an exclusion (`"!cpu_steal"`, `"!cpu_*"`), see
    /// `collect::select`.
    Name(String),
    /// `name_match = "ref_(u?int)"`: every metric whose name the regex matches,
    /// unanchored like gmond's `pcre_exec` (validated at load time; Rust `regex`
    /// syntax, which covers what gmond configs use but has no back-references).
    NameMatch(String),
}
