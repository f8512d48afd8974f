//! From the expanded raw tree to the typed `Config`: gmond's defaults, value
//! ranges, required keys, and warnings for what wasmond accepts but does not do.
//!
//! Sections gmond declares once (`globals`, `cluster`, `host`, `modules`, `sflow`)
//! may appear several times, as in gmond: their contents are merged (each
//! `.pyconf` brings its own `modules { }`). The others are one entry each.

use std::net::IpAddr;
use std::path::Path;

use super::LoadOptions;
use super::error::{ErrorKind, Location};
use super::fields::{Diagnostics, Fields, Sub};
use super::loader::FileSource;
use super::model::*;
use super::modules;
use super::raw::Item;
use super::schema;

/// A gmond setting wasmond accepts but does not act on, and what to do instead.
struct Unsupported {
    key: &'static str,
    /// For booleans: warn only when turned on (`gexec = no` is what wasmond does anyway).
    only_when_on: bool,
    instead: &'static str,
}

const UNSUPPORTED_GLOBALS: &[Unsupported] = &[
    Unsupported {
        key: "daemonize",
        only_when_on: true,
        instead: "wasmond always runs in the foreground; let the service manager (e.g. systemd) run it in the background",
    },
    Unsupported {
        key: "gexec",
        only_when_on: true,
        instead: "wasmond has no gexec support; the host is reported with gexec OFF",
    },
];

pub fn build(
    items: &[Item],
    options: &LoadOptions,
    fs: &dyn FileSource,
    diag: &mut Diagnostics,
) -> Config {
    let top = Fields::read("top level", schema::TOP, [items], diag);
    let bodies = |name: &'static str| {
        top.subs
            .iter()
            .filter(move |s| s.name == name)
            .map(|s| s.body)
    };
    let globals = globals(
        &Fields::read("globals", schema::GLOBALS, bodies("globals"), diag),
        diag,
    );
    let cluster = cluster(&Fields::read(
        "cluster",
        schema::CLUSTER,
        bodies("cluster"),
        diag,
    ));
    let host = HostInfo {
        location: Fields::read("host", schema::HOST, bodies("host"), diag)
            .string("location")
            .unwrap_or_else(|| HostInfo::default().location),
    };
    for sflow in top.subs.iter().filter(|s| s.name == "sflow") {
        Fields::read("sflow", schema::SFLOW, [sflow.body], diag);
        diag.warn(
            sflow.at,
            "wasmond does not receive sFlow; the `sflow` section is ignored",
        );
    }
    let each = |name: &'static str| top.subs.iter().filter(move |s| s.name == name);
    let udp_send_channels = each("udp_send_channel")
        .filter_map(|s| udp_send(s, diag))
        .collect();
    let udp_recv_channels = each("udp_recv_channel")
        .filter_map(|s| udp_recv(s, diag))
        .collect();
    let tcp_accept_channels = each("tcp_accept_channel")
        .filter_map(|s| tcp_accept(s, diag))
        .collect();
    let module_list = Fields::read("modules", schema::MODULES, bodies("modules"), diag);
    let module_dirs = module_dirs(&globals, options);
    let modules = modules::read_all(&module_list.subs, &module_dirs, fs, diag);
    let collection_groups = each("collection_group")
        .map(|s| collection_group(s, diag))
        .collect();
    let prometheus_listeners = each("prometheus_listener")
        .filter_map(|s| prometheus_listener(s, diag))
        .collect();
    let prometheus_remote_writes = each("prometheus_remote_write")
        .filter_map(|s| prometheus_remote_write(s, diag))
        .collect();
    let interactive_channels = each("interactive_channel")
        .filter_map(|s| interactive_channel(s, diag))
        .collect();
    Config {
        globals,
        cluster,
        host,
        udp_send_channels,
        udp_recv_channels,
        tcp_accept_channels,
        modules,
        collection_groups,
        prometheus_listeners,
        prometheus_remote_writes,
        interactive_channels,
        tenants: Vec::new(),
    }
}

/// Where modules are looked for after the declaring file's directory.
pub(super) fn module_dirs(globals: &Globals, options: &LoadOptions) -> Vec<std::path::PathBuf> {
    globals
        .module_dir
        .iter()
        .chain(options.module_dirs.iter())
        .cloned()
        .collect()
}

const SECONDS: &str = "a number of seconds (0 or more)";

fn seconds(fields: &Fields, key: &str, default: u32, diag: &mut Diagnostics) -> u32 {
    fields
        .int_in(key, 0, u32::MAX.into(), SECONDS, diag)
        .map_or(default, |v| v as u32)
}

fn globals(f: &Fields, diag: &mut Diagnostics) -> Globals {
    let d = Globals::default();
    for unsupported in UNSUPPORTED_GLOBALS {
        let Some(at) = f.at(unsupported.key) else {
            continue;
        };
        if !unsupported.only_when_on || f.bool(unsupported.key, false, &mut Diagnostics::default())
        {
            diag.warn(
                at,
                format!(
                    "`{}` is not implemented: {}",
                    unsupported.key, unsupported.instead
                ),
            );
        }
    }
    Globals {
        daemonize: f.bool("daemonize", d.daemonize, diag),
        setuid: f.bool("setuid", d.setuid, diag),
        user: f.string("user").unwrap_or(d.user),
        debug_level: f
            .int_in(
                "debug_level",
                0,
                i32::MAX.into(),
                "an integer of 0 or more",
                diag,
            )
            .map_or(0, |v| v as u32),
        max_udp_msg_len: f
            .int_in(
                "max_udp_msg_len",
                1,
                65507,
                "a UDP payload size from 1 to 65507",
                diag,
            )
            .map_or(d.max_udp_msg_len, |v| v as u32),
        mute: f.bool("mute", d.mute, diag),
        deaf: f.bool("deaf", d.deaf, diag),
        allow_extra_data: f.bool("allow_extra_data", d.allow_extra_data, diag),
        host_dmax: seconds(f, "host_dmax", d.host_dmax, diag),
        host_tmax: seconds(f, "host_tmax", d.host_tmax, diag),
        cleanup_threshold: seconds(f, "cleanup_threshold", d.cleanup_threshold, diag),
        gexec: f.bool("gexec", d.gexec, diag),
        send_metadata_interval: seconds(
            f,
            "send_metadata_interval",
            d.send_metadata_interval,
            diag,
        ),
        module_dir: f
            .string("module_dir")
            .map(|dir| relative_to_declaring_file(f.at("module_dir"), &dir)),
        override_hostname: f.string("override_hostname"),
        override_ip: f.string("override_ip"),
        tags: f.string("tags"),
    }
}

/// A relative path in a file means relative to that file's directory.
pub(crate) fn relative_to_declaring_file(at: Option<&Location>, path: &str) -> std::path::PathBuf {
    let dir = at
        .and_then(|at| Path::new(&*at.file).parent())
        .unwrap_or(Path::new(""));
    dir.join(path)
}

fn cluster(f: &Fields) -> Cluster {
    let d = Cluster::default();
    Cluster {
        name: f.string("name").unwrap_or(d.name),
        owner: f.string("owner").unwrap_or(d.owner),
        latlong: f.string("latlong").unwrap_or(d.latlong),
        url: f.string("url").unwrap_or(d.url),
    }
}

/// A port: required (gmond's -1 default fails at bind time), `min` is 1 for
/// destinations and 0 for listeners (0 = any free port, handy in tests).
fn port(f: &Fields, sub: &Sub, min: i64, diag: &mut Diagnostics) -> Option<u16> {
    if !f.is_set("port") {
        diag.invalid(sub.at, format!("`{}` needs a `port`", sub.name));
        return None;
    }
    let what = if min == 0 {
        "a port from 0 to 65535"
    } else {
        "a port from 1 to 65535"
    };
    f.int_in("port", min, 65535, what, diag).map(|p| p as u16)
}

fn family(f: &Fields, diag: &mut Diagnostics) -> Family {
    match f
        .string("family")
        .map(|s| s.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("inet4") => Family::Inet4,
        Some("inet6") => Family::Inet6,
        Some(other) => {
            let kind = ErrorKind::InvalidValue {
                key: "family".into(),
                expected: "`inet4` or `inet6`".into(),
                found: format!("`{other}`"),
            };
            diag.error(f.value_at("family").expect("family is set"), kind);
            Family::Inet4
        }
    }
}

fn udp_send(sub: &Sub, diag: &mut Diagnostics) -> Option<UdpSendChannel> {
    let f = Fields::read("udp_send_channel", schema::UDP_SEND, [sub.body], diag);
    let channel = UdpSendChannel {
        host: f.string("host"),
        mcast_join: f.string("mcast_join"),
        mcast_if: f.string("mcast_if"),
        port: port(&f, sub, 1, diag).unwrap_or(0),
        ttl: f
            .int_in("ttl", 0, 255, "a TTL from 0 to 255", diag)
            .map_or(1, |v| v as u8),
        bind: f.string("bind"),
        bind_hostname: f.bool("bind_hostname", false, diag),
        declared_at: sub.at.clone(),
    };
    if channel.host.is_none() && channel.mcast_join.is_none() {
        diag.invalid(
            sub.at,
            "`udp_send_channel` needs a destination: `host` (unicast) or `mcast_join` (multicast)",
        );
    }
    if channel.bind.is_some() && channel.bind_hostname {
        let at = f.at("bind_hostname").unwrap_or(sub.at);
        diag.invalid(
            at,
            "`bind` and `bind_hostname = yes` exclude each other (gmond refuses both)",
        );
    }
    Some(channel)
}

fn udp_recv(sub: &Sub, diag: &mut Diagnostics) -> Option<UdpRecvChannel> {
    let f = Fields::read("udp_recv_channel", schema::UDP_RECV, [sub.body], diag);
    Some(UdpRecvChannel {
        port: port(&f, sub, 0, diag)?,
        bind: f.string("bind"),
        mcast_join: f.string("mcast_join"),
        mcast_if: f.string("mcast_if"),
        family: family(&f, diag),
        retry_bind: f.bool("retry_bind", true, diag),
        buffer: f
            .int_in(
                "buffer",
                0,
                i32::MAX.into(),
                "a buffer size in bytes (0 = the OS default)",
                diag,
            )
            .filter(|&b| b > 0)
            .map(|b| b as u32),
        acl: acl(&f, diag),
        declared_at: sub.at.clone(),
    })
}

fn tcp_accept(sub: &Sub, diag: &mut Diagnostics) -> Option<TcpAcceptChannel> {
    let f = Fields::read("tcp_accept_channel", schema::TCP_ACCEPT, [sub.body], diag);
    Some(TcpAcceptChannel {
        port: port(&f, sub, 0, diag)?,
        bind: f.string("bind"),
        interface: f.string("interface"),
        family: family(&f, diag),
        timeout_us: f.int("timeout", diag).filter(|&t| t >= 0).map(|t| t as u64),
        gzip_output: f.bool("gzip_output", false, diag),
        acl: acl(&f, diag),
        declared_at: sub.at.clone(),
    })
}

fn prometheus_listener(sub: &Sub, diag: &mut Diagnostics) -> Option<PrometheusListener> {
    let f = Fields::read(
        "prometheus_listener",
        schema::PROMETHEUS_LISTENER,
        [sub.body],
        diag,
    );
    let path = f
        .string("path")
        .unwrap_or_else(|| DEFAULT_METRICS_PATH.to_owned());
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c == '?') {
        let kind = ErrorKind::InvalidValue {
            key: "path".into(),
            expected: "a URL path starting with `/`, without spaces or `?`".into(),
            found: format!("`{path}`"),
        };
        diag.error(f.value_at("path").expect("path is set"), kind);
    }
    Some(PrometheusListener {
        port: port(&f, sub, 0, diag)?,
        bind: f.string("bind"),
        family: family(&f, diag),
        path,
        acl: acl(&f, diag),
        declared_at: sub.at.clone(),
    })
}

fn prometheus_remote_write(sub: &Sub, diag: &mut Diagnostics) -> Option<PrometheusRemoteWrite> {
    let f = Fields::read(
        "prometheus_remote_write",
        schema::PROMETHEUS_REMOTE_WRITE,
        [sub.body],
        diag,
    );
    let interval = f
        .int_in(
            "interval",
            1,
            MAX_REMOTE_WRITE_INTERVAL.into(),
            &format!(
                "a number of seconds from 1 to {MAX_REMOTE_WRITE_INTERVAL} (Prometheus takes a series silent for 5 minutes as gone)"
            ),
            diag,
        )
        .map_or(DEFAULT_REMOTE_WRITE_INTERVAL, |v| v as u32);
    let queue = f
        .int_in(
            "queue",
            1,
            MAX_REMOTE_WRITE_QUEUE.into(),
            &format!("a number of requests from 1 to {MAX_REMOTE_WRITE_QUEUE}"),
            diag,
        )
        .map_or(DEFAULT_REMOTE_WRITE_QUEUE, |v| v as u32);
    let Some(url) = f.string("url") else {
        diag.invalid(
            sub.at,
            "`prometheus_remote_write` needs a `url` (e.g. \"http://prometheus:9090/api/v1/write\")",
        );
        return None;
    };
    if let Err(problem) = check_remote_write_url(&url) {
        let kind = ErrorKind::InvalidValue {
            key: "url".into(),
            expected: format!("an `http://host[:port]/path` URL ({problem})"),
            found: format!("`{url}`"),
        };
        diag.error(f.value_at("url").expect("url is set"), kind);
        return None;
    }
    Some(PrometheusRemoteWrite {
        url,
        interval,
        queue,
        declared_at: sub.at.clone(),
    })
}

/// What is wrong with a remote-write URL, if anything: wasmond speaks plain HTTP/1.1
/// and sends no credentials, so the URL is `http://`, with a host, without a user.
fn check_remote_write_url(url: &str) -> Result<(), &'static str> {
    let uri: hyper::Uri = url.parse().map_err(|_| "not a URL")?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err("https is not supported: use a TLS-terminating proxy"),
        _ => return Err("the scheme must be http"),
    }
    let authority = uri.authority().ok_or("no host")?;
    if authority.as_str().contains('@') {
        return Err("credentials in the URL are not supported");
    }
    if authority.host().is_empty() {
        return Err("no host");
    }
    if uri.port_u16() == Some(0) || (authority.as_str().ends_with(':')) {
        return Err("the port must be from 1 to 65535");
    }
    Ok(())
}

fn interactive_channel(sub: &Sub, diag: &mut Diagnostics) -> Option<InteractiveChannel> {
    let f = Fields::read(
        "interactive_channel",
        schema::INTERACTIVE_CHANNEL,
        [sub.body],
        diag,
    );
    Some(InteractiveChannel {
        port: port(&f, sub, 0, diag)?,
        bind: f.string("bind"),
        family: family(&f, diag),
        acl: acl(&f, diag),
        declared_at: sub.at.clone(),
    })
}

fn acl_action(f: &Fields, key: &str, diag: &mut Diagnostics) -> Option<AclAction> {
    match f.string(key)?.to_ascii_lowercase().as_str() {
        "allow" => Some(AclAction::Allow),
        "deny" => Some(AclAction::Deny),
        other => {
            let kind = ErrorKind::InvalidValue {
                key: key.into(),
                expected: "`allow` or `deny`".into(),
                found: format!("`{other}`"),
            };
            diag.error(f.value_at(key).expect("key is set"), kind);
            None
        }
    }
}

fn acl(channel: &Fields, diag: &mut Diagnostics) -> Option<Acl> {
    let subs: Vec<&Sub> = channel.subs.iter().filter(|s| s.name == "acl").collect();
    if subs.is_empty() {
        return None;
    }
    let f = Fields::read("acl", schema::ACL, subs.iter().map(|s| s.body), diag);
    let access = f.subs.iter().filter_map(|s| acl_access(s, diag)).collect();
    Some(Acl {
        default: acl_action(&f, "default", diag).unwrap_or(AclAction::Allow),
        access,
    })
}

fn acl_access(sub: &Sub, diag: &mut Diagnostics) -> Option<AclAccess> {
    let f = Fields::read("access", schema::ACCESS, [sub.body], diag);
    for key in ["ip", "mask", "action"] {
        if !f.is_set(key) {
            diag.invalid(sub.at, format!("`access` needs `{key}`"));
        }
    }
    let ip: IpAddr = match f.string("ip")?.parse() {
        Ok(ip) => ip,
        Err(_) => {
            let found = format!("`{}`", f.string("ip").unwrap_or_default());
            let kind = ErrorKind::InvalidValue {
                key: "ip".into(),
                expected: "an IP address".into(),
                found,
            };
            diag.error(f.value_at("ip").expect("ip is set"), kind);
            return None;
        }
    };
    let max_bits = if ip.is_ipv4() { 32 } else { 128 };
    let mask = f.int_in(
        "mask",
        0,
        max_bits,
        &format!("a prefix length from 0 to {max_bits}"),
        diag,
    )?;
    let action = acl_action(&f, "action", diag)?;
    Some(AclAccess {
        ip,
        mask: mask as u8,
        action,
        declared_at: sub.at.clone(),
    })
}

pub(super) fn collection_group(sub: &Sub, diag: &mut Diagnostics) -> CollectionGroup {
    let f = Fields::read(
        "collection_group",
        schema::COLLECTION_GROUP,
        [sub.body],
        diag,
    );
    let collect_once = f.bool("collect_once", false, diag);
    let collect_every = seconds(&f, "collect_every", 60, diag);
    if collect_every == 0 && !collect_once {
        let at = f.value_at("collect_every").unwrap_or(sub.at);
        let kind = ErrorKind::InvalidValue {
            key: "collect_every".into(),
            expected: "at least 1 second (or `collect_once = yes`)".into(),
            found: "`0`".into(),
        };
        diag.error(at, kind);
    }
    CollectionGroup {
        collect_once,
        collect_every,
        time_threshold: seconds(&f, "time_threshold", 3600, diag),
        metrics: f
            .subs
            .iter()
            .filter_map(|s| collected_metric(s, diag))
            .collect(),
        tenant: None,
        declared_at: sub.at.clone(),
    }
}

fn collected_metric(sub: &Sub, diag: &mut Diagnostics) -> Option<CollectedMetric> {
    let f = Fields::read("metric", schema::METRIC, [sub.body], diag);
    let selector = match (f.string("name"), f.string("name_match")) {
        (Some(name), None) => {
            // wasmond's globs and `!` exclusions (collect/select.rs), checked here so a
            // bad one is reported where it is written.
            let glob = name.strip_prefix('!').unwrap_or(&name);
            if (name.starts_with('!') || glob.contains(['*', '?', '[']))
                && let Err(e) = glob::Pattern::new(glob)
            {
                let kind = ErrorKind::InvalidValue {
                    key: "name".into(),
                    expected: "a metric name, a glob (`cpu_*`) or an exclusion (`!cpu_*`)".into(),
                    found: format!("`{name}` ({})", e.msg),
                };
                diag.error(f.value_at("name").expect("name is set"), kind);
                return None;
            }
            MetricSelector::Name(name)
        }
        (None, Some(pattern)) => {
            if let Err(e) = regex::Regex::new(&pattern) {
                let reason = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .to_string();
                let kind = ErrorKind::InvalidValue {
                    key: "name_match".into(),
                    expected: "a regular expression".into(),
                    found: format!("`{pattern}` ({reason})"),
                };
                diag.error(f.value_at("name_match").expect("name_match is set"), kind);
                return None;
            }
            MetricSelector::NameMatch(pattern)
        }
        (Some(_), Some(_)) => {
            diag.invalid(sub.at, "`metric` takes `name` or `name_match`, not both");
            return None;
        }
        (None, None) => {
            diag.invalid(
                sub.at,
                "`metric` needs `name` (one metric) or `name_match` (a regex)",
            );
            return None;
        }
    };
    Some(CollectedMetric {
        selector,
        // gmond's default is -1: any negative threshold means "no value threshold".
        value_threshold: f.float("value_threshold", diag).filter(|t| *t >= 0.0),
        title: f.string("title"),
        declared_at: sub.at.clone(),
    })
}
