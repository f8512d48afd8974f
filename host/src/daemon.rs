//! The daemon: wires the configuration to the runtime, the engine, the store and the
//! network; handles SIGHUP (reload) and SIGTERM/SIGINT (shutdown).
//!
//! Shutdown order: the engine first (it finishes the collections in flight, hands their
//! values to the sender and runs every module's cleanup, each under its bound), then the
//! listeners; the sender ends after the last values. The whole is bounded by
//! [`SHUTDOWN_BUDGET`], whatever a module does in its cleanup.
//!
//! Modules are looked for, after the places the configuration names, in the installed
//! module directory ([`INSTALLED_MODULE_DIR`], or `$WASMOND_MODULE_DIR`), then among the
//! modules built into the binary ([`crate::bundled`]); never in the build tree.
//!
//! Under systemd (`Type=notify`, `$NOTIFY_SOCKET`) the daemon says READY=1 once its
//! sockets serve, RELOADING=1 then READY=1 around a reload, and STOPPING=1.
//!
//! Privileges: the sockets are opened first, then the daemon becomes the `user` of
//! `setuid = yes` ([`lockdown`]); the caller has already Landlocked the process.
//!
//! Reload re-reads the same configuration source, on a blocking thread and never on the
//! signal loop, so SIGTERM always wins over a reload in progress (which is then
//! abandoned). A configuration with errors is refused with every error logged, and the
//! running one carries on. Every new or changed `.wasm` is read, compiled and
//! type-checked there too, before anything running is touched; a module whose new file
//! fails stays on its running instance. Only then are modules reconciled by the engine
//! (added, removed, restarted when their `.wasm` or settings changed); collection groups
//! and the store's settings are replaced; changed network channels need a restart, which
//! the log says. A SIGHUP during a reload asks for one more reload after it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::collect::conversion::{EntryError, group_specs, module_specs, policy, reload_specs};
use crate::collect::host_module::{HOST_MODULE, HostFacts};
use crate::collect::{
    EngineConfig, EngineHandle, HostIdentity, ModuleSpec, Outputs, SHUTDOWN_WAIT,
};
use crate::config::{self, Config, ConfigErrors, FileSource, LoadOptions, Loaded, RealFs};
use crate::lockdown::{self, Plan};
use crate::net::{self, Network, NetworkSetup};
use crate::runtime::{Compiler, Runtime, RuntimeConfig};
use crate::store::{ClusterInfo, Store, StoreConfig};

/// The longest a shutdown takes, even with modules looping in their cleanup: the engine's
/// own bound on waiting for cleanups, and a margin.
pub const SHUTDOWN_BUDGET: Duration = SHUTDOWN_WAIT.saturating_add(Duration::from_secs(2));
/// The network tasks get this long to end after the engine stopped.
const NETWORK_BUDGET: Duration = Duration::from_secs(3);

/// The bundled default configuration (`conf.d/wasmond.conf`).
pub(crate) const BUNDLED_CONFIG: &str = include_str!("../../conf.d/wasmond.conf");
/// The name the bundled configuration goes by in messages.
pub(crate) const BUNDLED_CONFIG_NAME: &str = "<bundled>/wasmond.conf";
/// Where a package installs modules (Debian's `wasmond` puts `core_metrics.wasm` here).
pub(crate) const INSTALLED_MODULE_DIR: &str = "/usr/lib/wasmond/modules";

/// Where the configuration comes from; a reload reads the same place again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    /// The bundled default; its `core_metrics.wasm` is the bundled one.
    Bundled,
}

impl ConfigSource {
    pub fn new(path: Option<PathBuf>) -> ConfigSource {
        path.map_or(ConfigSource::Bundled, ConfigSource::File)
    }

    pub fn load(&self) -> Result<Loaded, ConfigErrors> {
        let options = LoadOptions {
            module_dirs: default_module_dirs(),
        };
        let path = match self {
            ConfigSource::File(path) => path.as_path(),
            ConfigSource::Bundled => Path::new(BUNDLED_CONFIG_NAME),
        };
        config::load_with(path, &options, &WithBundled)
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            ConfigSource::File(path) => path.display().to_string(),
            ConfigSource::Bundled => BUNDLED_CONFIG_NAME.to_string(),
        }
    }
}

/// Where modules are looked for after the places the configuration names: the
/// installed module directory (`$WASMOND_MODULE_DIR` instead, when set), then the
/// modules built into the binary.
pub(crate) fn default_module_dirs() -> Vec<PathBuf> {
    let installed = std::env::var_os("WASMOND_MODULE_DIR")
        .map_or_else(|| PathBuf::from(INSTALLED_MODULE_DIR), PathBuf::from);
    vec![installed, PathBuf::from(crate::bundled::DIR)]
}

/// The real file system, plus the bundled configuration and modules at their made-up
/// paths.
struct WithBundled;

impl FileSource for WithBundled {
    fn read(&self, path: &Path, max_bytes: u64) -> std::io::Result<String> {
        if path == Path::new(BUNDLED_CONFIG_NAME) {
            Ok(BUNDLED_CONFIG.to_string())
        } else {
            RealFs.read(path, max_bytes)
        }
    }
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        RealFs.glob(pattern)
    }
    fn is_file(&self, path: &Path) -> bool {
        path == Path::new(BUNDLED_CONFIG_NAME)
            || crate::bundled::bytes(path).is_some()
            || RealFs.is_file(path)
    }
    fn identity(&self, path: &Path) -> PathBuf {
        if path == Path::new(BUNDLED_CONFIG_NAME) {
            path.to_path_buf()
        } else {
            RealFs.identity(path)
        }
    }
}

/// What a running daemon tells whoever started it (tests): where it listens, and how to
/// reach its engine.
#[derive(Clone)]
pub struct Started {
    pub engine: EngineHandle,
    pub store: Arc<Store>,
    pub xml_addrs: Vec<std::net::SocketAddr>,
    pub udp_addrs: Vec<std::net::SocketAddr>,
}

/// Runs the daemon until SIGTERM or SIGINT (or until `stop` is cancelled); SIGHUP
/// reloads. `started` receives the running daemon's handles once it is up.
pub async fn run(
    source: ConfigSource,
    loaded: Loaded,
    lockdown: Plan,
    stop: CancellationToken,
    started: Option<oneshot::Sender<Started>>,
) -> anyhow::Result<()> {
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    log_warnings(&loaded);
    let mut config = loaded.config;
    let facts = HostFacts {
        started: SystemTime::now(),
        location: config.host.location.clone(),
    };
    let hostname = local_hostname();
    let identity = host_identity(&config, &hostname);
    let store = Arc::new(Store::new(store_config(&config)));
    let network_stop = CancellationToken::new();
    let setup = NetworkSetup {
        hostname,
        store: store.clone(),
        shutdown: network_stop.clone(),
    };
    let mut network = Network::start(&config, setup).await?;
    // Sockets are open: the rest runs as gmond.conf's `user` (with `setuid = yes`).
    if let Some(user) = &lockdown.switch_to {
        NOTIFY_SOCKET.get_or_init(connect_notify_socket);
        lockdown::switch_user(user)?;
    }
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: lockdown.cache_dir.clone(),
        compiler: Compiler::this_program(),
        ..RuntimeConfig::default()
    })?;
    let engine_config = engine_config(&config, &runtime, &facts, &identity)?;
    let mut running = fingerprints(&engine_config);
    let engine_stop = CancellationToken::new();
    let outputs = Outputs {
        store: store.clone(),
        sink: network.take_sink(),
        network: Some(network.stats.clone()),
    };
    let (engine, engine_task) = crate::collect::spawn(engine_config, outputs, engine_stop.clone());
    if let Some(mut requests) = network.take_metadata_requests() {
        let engine = engine.clone();
        tokio::spawn(async move {
            while let Some(metric) = requests.recv().await {
                engine.resend_metadata(Some(metric));
            }
        });
    }
    info!(config = %source.describe(), "wasmond running");
    notify("READY=1");
    if let Some(started) = started {
        let handles = Started {
            engine: engine.clone(),
            store: store.clone(),
            xml_addrs: network.xml_addrs.clone(),
            udp_addrs: network.udp_addrs.clone(),
        };
        let _ = started.send(handles);
    }
    let mut reloading: Option<tokio::task::JoinHandle<Option<Reloaded>>> = None;
    let mut reload_again = false;
    loop {
        tokio::select! {
            biased;
            _ = terminate.recv() => { info!("SIGTERM: shutting down"); break }
            _ = interrupt.recv() => { info!("SIGINT: shutting down"); break }
            () = stop.cancelled() => { info!("stop requested: shutting down"); break }
            _ = hangup.recv() => {
                if reloading.is_some() {
                    info!("SIGHUP: a reload is in progress; reloading again after it");
                    reload_again = true;
                } else {
                    info!("SIGHUP: reloading {}", source.describe());
                    notify("RELOADING=1");
                    reloading = Some(spawn_reload(&source, &runtime, &facts, &identity, &running));
                }
            }
            finished = async { reloading.as_mut().expect("guarded").await }, if reloading.is_some() => {
                reloading = None;
                match finished {
                    Ok(Some(reloaded)) => {
                        config = apply_reload(reloaded, &config, &mut running, &engine, &store);
                    }
                    Ok(None) => {}
                    Err(err) => error!("the reload failed: {err}; the running configuration is kept"),
                }
                if std::mem::take(&mut reload_again) {
                    info!("reloading {} again", source.describe());
                    reloading = Some(spawn_reload(&source, &runtime, &facts, &identity, &running));
                } else {
                    notify("READY=1");
                }
            }
        }
    }
    notify("STOPPING=1");
    shut_down(engine_stop, engine_task, network_stop, network).await;
    Ok(())
}

/// The service manager's notify socket, connected once and before the daemon gives up
/// root: systemd's socket (or a test's) may refuse the unprivileged `user` a new
/// connection, while a connected socket keeps working.
static NOTIFY_SOCKET: OnceLock<Option<UnixDatagram>> = OnceLock::new();

/// Connects to `$NOTIFY_SOCKET` (systemd's `Type=notify`: a datagram socket, its path or
/// `@` and an abstract name), when one was given.
fn connect_notify_socket() -> Option<UnixDatagram> {
    let socket = std::env::var_os("NOTIFY_SOCKET")?;
    let connected = UnixDatagram::unbound().and_then(|datagram| {
        use std::os::unix::ffi::OsStrExt;
        let address = match socket.as_bytes().strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)?
            }
            None => std::os::unix::net::SocketAddr::from_pathname(&socket)?,
        };
        datagram.connect_addr(&address)?;
        Ok(datagram)
    });
    connected
        .inspect_err(|error| warn!("cannot reach the service manager ({socket:?}): {error}"))
        .ok()
}

/// Tells the service manager what the daemon is doing, when one asked. Failing to tell
/// is logged, never fatal.
fn notify(state: &str) {
    let Some(socket) = NOTIFY_SOCKET.get_or_init(connect_notify_socket) else {
        return;
    };
    if let Err(error) = socket.send(state.as_bytes()) {
        warn!("cannot notify the service manager of {state}: {error}");
    }
}

async fn shut_down(
    engine_stop: CancellationToken,
    engine_task: tokio::task::JoinHandle<crate::collect::ShutdownReport>,
    network_stop: CancellationToken,
    network: Network,
) {
    engine_stop.cancel();
    let abort = engine_task.abort_handle();
    match tokio::time::timeout(SHUTDOWN_BUDGET, engine_task).await {
        Ok(Ok(report)) => {
            info!(cleaned_up = report.cleaned_up.len(), "modules cleaned up");
            for module in report.timed_out {
                warn!(module = %module, "module {module}: cleanup abandoned after its deadline");
            }
        }
        Ok(Err(err)) => error!("the engine task failed: {err}"),
        Err(_) => {
            error!("the engine did not stop within {SHUTDOWN_BUDGET:?}; abandoning it");
            // Dropping the task drops the sink, which lets the sender end.
            abort.abort();
        }
    }
    network_stop.cancel();
    if tokio::time::timeout(NETWORK_BUDGET, network.wait())
        .await
        .is_err()
    {
        warn!("the network tasks did not end within {NETWORK_BUDGET:?}");
    }
    info!("wasmond stopped");
}

/// A configuration re-read and its new or changed modules loaded, ready to apply.
struct Reloaded {
    config: Config,
    engine_config: EngineConfig,
    /// Modules whose new file failed to load: they stay on their running instance.
    kept: HashSet<String>,
}

/// Starts reading and loading the configuration again on a blocking thread. `running`
/// holds each running module's fingerprint: only modules not in it are loaded.
fn spawn_reload(
    source: &ConfigSource,
    runtime: &Runtime,
    facts: &HostFacts,
    identity: &HostIdentity,
    running: &HashMap<String, String>,
) -> tokio::task::JoinHandle<Option<Reloaded>> {
    let (source, runtime, facts, identity, running) = (
        source.clone(),
        runtime.clone(),
        facts.clone(),
        identity.clone(),
        running.clone(),
    );
    tokio::task::spawn_blocking(move || {
        prepare_reload(&source, &runtime, &facts, &identity, &running)
    })
}

/// Reads the configuration and loads its new and changed modules; `None` (logged) when
/// the configuration is refused.
fn prepare_reload(
    source: &ConfigSource,
    runtime: &Runtime,
    facts: &HostFacts,
    identity: &HostIdentity,
    running: &HashMap<String, String>,
) -> Option<Reloaded> {
    let loaded = match source.load() {
        Ok(loaded) => loaded,
        Err(errors) => {
            for err in &errors.0 {
                error!("{err}");
            }
            error!(
                "the new configuration has {} errors; the running one is kept",
                errors.0.len()
            );
            return None;
        }
    };
    log_warnings(&loaded);
    let config = loaded.config;
    let facts = HostFacts {
        location: config.host.location.clone(),
        ..facts.clone()
    };
    let (modules, failed) = reload_specs(&config, runtime, running);
    let engine_config = match engine_config_with(&config, &facts, identity, modules) {
        Ok(engine_config) => engine_config,
        Err(err) => {
            error!("{err}; the running configuration is kept");
            return None;
        }
    };
    let mut kept = HashSet::new();
    for (module, error) in failed {
        let what = if running.contains_key(&module) {
            "its running instance is kept"
        } else {
            "it is retried with backoff"
        };
        error!(module = %module, "{error}; module {module}: {what}");
        kept.insert(module);
    }
    Some(Reloaded {
        config,
        engine_config,
        kept,
    })
}

/// Hands a prepared reload to the store and the engine; returns the configuration now
/// running, and updates `running` (the kept modules keep their old fingerprint).
fn apply_reload(
    reloaded: Reloaded,
    old: &Config,
    running: &mut HashMap<String, String>,
    engine: &EngineHandle,
    store: &Store,
) -> Config {
    let Reloaded {
        config,
        engine_config,
        kept,
    } = reloaded;
    if network_changed(old, &config) {
        warn!(
            "channel (udp_send, udp_recv, tcp_accept, prometheus_listener, prometheus_remote_write, interactive_channel) or mute/deaf changes take effect at the next restart"
        );
    }
    let mut next = fingerprints(&engine_config);
    for module in &kept {
        match running.get(module) {
            Some(fingerprint) => next.insert(module.clone(), fingerprint.clone()),
            None => next.remove(module),
        };
    }
    *running = next;
    store.set_config(store_config(&config));
    engine.reload_keeping(engine_config, kept);
    config
}

/// Each module's fingerprint, by name.
fn fingerprints(engine_config: &EngineConfig) -> HashMap<String, String> {
    engine_config
        .modules
        .iter()
        .map(|m| (m.name.clone(), m.fingerprint.clone()))
        .collect()
}

fn network_changed(old: &Config, new: &Config) -> bool {
    old.udp_send_channels != new.udp_send_channels
        || old.udp_recv_channels != new.udp_recv_channels
        || old.tcp_accept_channels != new.tcp_accept_channels
        || old.prometheus_listeners != new.prometheus_listeners
        || old.prometheus_remote_writes != new.prometheus_remote_writes
        || old.interactive_channels != new.interactive_channels
        || old.globals.mute != new.globals.mute
        || old.globals.deaf != new.globals.deaf
}

/// Why a configuration cannot run, once it parsed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EngineConfigError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Groups(Vec<EntryError>),
    #[error("{at}: module name {HOST_MODULE:?} is reserved for the daemon's own metrics")]
    ReservedModuleName { at: config::Location },
}

/// Everything the engine runs for `config`; fails on a collection-group entry it
/// cannot use or a module the engine could not tell apart from its own.
pub(crate) fn engine_config(
    config: &Config,
    runtime: &Runtime,
    facts: &HostFacts,
    identity: &HostIdentity,
) -> Result<EngineConfig, EngineConfigError> {
    engine_config_with(config, facts, identity, module_specs(config, runtime))
}

/// [`engine_config`] with the modules already made.
fn engine_config_with(
    config: &Config,
    facts: &HostFacts,
    identity: &HostIdentity,
    modules: Vec<ModuleSpec>,
) -> Result<EngineConfig, EngineConfigError> {
    let groups = group_specs(config).map_err(EngineConfigError::Groups)?;
    if let Some(module) = config
        .modules
        .iter()
        .find(|m| m.name == HOST_MODULE && m.wasm_path().is_some())
    {
        return Err(EngineConfigError::ReservedModuleName {
            at: module.declared_at.clone(),
        });
    }
    let send_metadata_interval = config.globals.send_metadata_interval;
    Ok(EngineConfig {
        host: identity.clone(),
        facts: facts.clone(),
        groups,
        modules,
        policy: policy(config),
        send_metadata_interval: (send_metadata_interval > 0)
            .then(|| Duration::from_secs(send_metadata_interval.into())),
    })
}

fn store_config(config: &Config) -> StoreConfig {
    let cluster = &config.cluster;
    StoreConfig {
        cluster: ClusterInfo {
            name: cluster.name.clone(),
            owner: cluster.owner.clone(),
            latlong: cluster.latlong.clone(),
            url: cluster.url.clone(),
        },
        host_tmax: config.globals.host_tmax,
        host_dmax: config.globals.host_dmax,
    }
}

/// Logs the warnings, and the errors that refused tenant files (and only those).
fn log_warnings(loaded: &Loaded) {
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    for error in &loaded.tenant_errors {
        error!("{error}; the file is refused, the rest of the configuration runs");
    }
}

/// This host as the store shows it: `override_hostname`/`override_ip`; else as its
/// peers name it, as gmond names itself from its own looped-back packets: the address
/// its packets leave from towards the first send channel, and that address's reverse
/// DNS (127.0.0.1 shows as `localhost`); with no send channel, the system's host name
/// and the first address it resolves to.
fn host_identity(config: &Config, hostname: &str) -> HostIdentity {
    let globals = &config.globals;
    let (seen_name, seen_ip) = match first_send_destination(config)
        .and_then(|destination| net::names::source_address_towards(destination).ok())
    {
        Some(source) => (net::names::name_of(source), source.to_string()),
        None => (hostname.to_string(), resolve(hostname)),
    };
    HostIdentity {
        name: globals.override_hostname.clone().unwrap_or(seen_name),
        ip: globals.override_ip.clone().unwrap_or(seen_ip),
    }
}

/// Where the first `udp_send_channel` sends: its host or multicast group, and port.
fn first_send_destination(config: &Config) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let channel = config.udp_send_channels.first()?;
    let host = channel.mcast_join.as_deref().or(channel.host.as_deref())?;
    (host, channel.port).to_socket_addrs().ok()?.next()
}

fn resolve(hostname: &str) -> String {
    use std::net::ToSocketAddrs;
    (hostname, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(|addr| addr.is_ipv4()))
        .map_or_else(|| "127.0.0.1".to_string(), |addr| addr.ip().to_string())
}

/// The system's host name (gmond's `apr_gethostname`).
pub(crate) fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_config_loads_the_bundled_core_metrics() {
        let loaded = ConfigSource::Bundled
            .load()
            .unwrap_or_else(|errors| panic!("{errors}"));
        let core = loaded
            .config
            .modules
            .iter()
            .find(|m| m.name == "core_metrics")
            .expect("core_metrics");
        assert_eq!(
            core.wasm_path(),
            Some(crate::bundled::path("core_metrics.wasm").as_path())
        );
        assert!(group_specs(&loaded.config).is_ok());
    }
}
