//! The key set of every section gmond 3.7.2 knows (from its libconfuse option
//! tables, checked against `gmond -t` and Debian's gmond.conf), plus wasmond's
//! `sandbox { }` extension, and "did you mean" suggestions for unknown names.

/// The libconfuse type of an option, which decides how its string is converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int,
    Float,
    Str,
    StrList,
    /// A subsection; `titled` ones are written `name TITLE { }`.
    Section {
        titled: bool,
    },
}

/// One key of a section: its name and type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    pub name: &'static str,
    pub kind: Kind,
}

const fn key(name: &'static str, kind: Kind) -> Key {
    Key { name, kind }
}

const SEC: Kind = Kind::Section { titled: false };

pub(crate) const TOP: &[Key] = &[
    key("globals", SEC),
    key("cluster", SEC),
    key("host", SEC),
    key("udp_send_channel", SEC),
    key("udp_recv_channel", SEC),
    key("tcp_accept_channel", SEC),
    key("modules", SEC),
    key("collection_group", SEC),
    key("sflow", SEC),
    // wasmond's extensions: exports for users beyond Ganglia.
    key("prometheus_listener", SEC),
    key("prometheus_remote_write", SEC),
    key("interactive_channel", SEC),
    // wasmond's extension: the operator's tenants and their ceilings.
    key("tenant", SEC),
];

pub(crate) const GLOBALS: &[Key] = &[
    key("daemonize", Kind::Bool),
    key("setuid", Kind::Bool),
    key("user", Kind::Str),
    key("debug_level", Kind::Int),
    key("max_udp_msg_len", Kind::Int),
    key("mute", Kind::Bool),
    key("deaf", Kind::Bool),
    key("allow_extra_data", Kind::Bool),
    key("host_dmax", Kind::Int),
    key("host_tmax", Kind::Int),
    key("cleanup_threshold", Kind::Int),
    key("gexec", Kind::Bool),
    key("send_metadata_interval", Kind::Int),
    key("module_dir", Kind::Str),
    key("override_hostname", Kind::Str),
    key("override_ip", Kind::Str),
    key("tags", Kind::Str),
];

pub const CLUSTER: &[Key] = &[
    key("name", Kind::Str),
    key("owner", Kind::Str),
    key("latlong", Kind::Str),
    key("url", Kind::Str),
];

pub const HOST: &[Key] = &[key("location", Kind::Str)];

pub(crate) const UDP_SEND: &[Key] = &[
    key("mcast_join", Kind::Str),
    key("mcast_if", Kind::Str),
    key("host", Kind::Str),
    key("port", Kind::Int),
    key("ttl", Kind::Int),
    key("bind", Kind::Str),
    key("bind_hostname", Kind::Bool),
];

pub(crate) const UDP_RECV: &[Key] = &[
    key("mcast_join", Kind::Str),
    key("bind", Kind::Str),
    key("port", Kind::Int),
    key("mcast_if", Kind::Str),
    key("acl", SEC),
    key("family", Kind::Str),
    key("retry_bind", Kind::Bool),
    key("buffer", Kind::Int),
];

pub(crate) const TCP_ACCEPT: &[Key] = &[
    key("bind", Kind::Str),
    key("port", Kind::Int),
    key("interface", Kind::Str),
    key("acl", SEC),
    key("timeout", Kind::Int),
    key("family", Kind::Str),
    key("gzip_output", Kind::Bool),
];

/// wasmond's `prometheus_listener { }`: the store as Prometheus/OpenMetrics text over HTTP.
pub(crate) const PROMETHEUS_LISTENER: &[Key] = &[
    key("bind", Kind::Str),
    key("port", Kind::Int),
    key("family", Kind::Str),
    key("path", Kind::Str),
    key("acl", SEC),
];

/// wasmond's `prometheus_remote_write { }`: the store pushed to a remote-write receiver.
pub(crate) const PROMETHEUS_REMOTE_WRITE: &[Key] = &[
    key("url", Kind::Str),
    key("interval", Kind::Int),
    key("queue", Kind::Int),
];

/// wasmond's `interactive_channel { }`: gmetad's interactive port on the store.
pub(crate) const INTERACTIVE_CHANNEL: &[Key] = &[
    key("bind", Kind::Str),
    key("port", Kind::Int),
    key("family", Kind::Str),
    key("acl", SEC),
];

pub(crate) const ACL: &[Key] = &[key("default", Kind::Str), key("access", SEC)];

pub(crate) const ACCESS: &[Key] = &[
    key("action", Kind::Str),
    key("ip", Kind::Str),
    key("mask", Kind::Str),
];

pub const MODULES: &[Key] = &[key("module", SEC)];

pub(crate) const MODULE: &[Key] = &[
    key("name", Kind::Str),
    key("language", Kind::Str),
    key("enabled", Kind::Bool),
    key("path", Kind::Str),
    key("params", Kind::Str),
    key("param", Kind::Section { titled: true }),
    // wasmond's extension: per-module sandbox limits and grants.
    key("sandbox", SEC),
];

pub(crate) const PARAM: &[Key] = &[key("value", Kind::Str)];

pub(crate) const SANDBOX: &[Key] = &[
    key("fuel_init", Kind::Int),
    key("fuel_handler", Kind::Int),
    key("fuel_cleanup", Kind::Int),
    key("deadline_init_ms", Kind::Int),
    key("deadline_handler_ms", Kind::Int),
    key("deadline_cleanup_ms", Kind::Int),
    key("memory_mb", Kind::Int),
    key("deadline_compile_ms", Kind::Int),
    key("compile_memory_mb", Kind::Int),
    key("allow_read", Kind::StrList),
    key("allow_env", Kind::StrList),
    key("allow_filesystem_usage", Kind::Bool),
];

/// `tenant { }`: the sandbox keys are ceilings here, not requests.
pub(crate) const TENANT: &[Key] = &[
    key("name", Kind::Str),
    key("files", Kind::StrList),
    key("name_prefix", Kind::Str),
    key("fuel_init", Kind::Int),
    key("fuel_handler", Kind::Int),
    key("fuel_cleanup", Kind::Int),
    key("deadline_init_ms", Kind::Int),
    key("deadline_handler_ms", Kind::Int),
    key("deadline_cleanup_ms", Kind::Int),
    key("memory_mb", Kind::Int),
    key("deadline_compile_ms", Kind::Int),
    key("compile_memory_mb", Kind::Int),
    key("allow_read", Kind::StrList),
    key("allow_env", Kind::StrList),
    key("allow_filesystem_usage", Kind::Bool),
    key("max_modules", Kind::Int),
    key("max_metrics", Kind::Int),
    key("cpu_ms_per_minute", Kind::Int),
];

/// What a tenant's file may hold at its top level.
pub(crate) const TENANT_FILE: &[Key] = &[key("modules", SEC), key("collection_group", SEC)];

pub(crate) const COLLECTION_GROUP: &[Key] = &[
    key("metric", SEC),
    key("collect_once", Kind::Bool),
    key("collect_every", Kind::Int),
    key("time_threshold", Kind::Int),
];

pub const METRIC: &[Key] = &[
    key("name", Kind::Str),
    key("name_match", Kind::Str),
    key("value_threshold", Kind::Float),
    key("title", Kind::Str),
];

pub(crate) const SFLOW: &[Key] = &[
    key("udp_port", Kind::Int),
    key("accept_vm_metrics", Kind::Bool),
    key("accept_http_metrics", Kind::Bool),
    key("multiple_http_instances", Kind::Bool),
    key("accept_memcache_metrics", Kind::Bool),
    key("multiple_memcache_instances", Kind::Bool),
    key("accept_jvm_metrics", Kind::Bool),
    key("multiple_jvm_instances", Kind::Bool),
];

/// Every section and its keys, to tell a user where a misplaced key belongs.
const HOMES: &[(&str, &[Key])] = &[
    ("globals", GLOBALS),
    ("cluster", CLUSTER),
    ("host", HOST),
    ("udp_send_channel", UDP_SEND),
    ("udp_recv_channel", UDP_RECV),
    ("tcp_accept_channel", TCP_ACCEPT),
    ("prometheus_listener", PROMETHEUS_LISTENER),
    ("prometheus_remote_write", PROMETHEUS_REMOTE_WRITE),
    ("interactive_channel", INTERACTIVE_CHANNEL),
    ("module", MODULE),
    ("sandbox", SANDBOX),
    ("collection_group", COLLECTION_GROUP),
    ("metric", METRIC),
];

/// The one section where an option named `key` lives, if exactly one has it.
pub(crate) fn home_of(key: &str) -> Option<&'static str> {
    let mut homes = HOMES.iter().filter(|(_, keys)| {
        keys.iter()
            .any(|k| k.name == key && !matches!(k.kind, Kind::Section { .. }))
    });
    match (homes.next(), homes.next()) {
        (Some((home, _)), None) => Some(home),
        _ => None,
    }
}

/// The key named `name` in `keys`.
pub fn lookup<'a>(keys: &'a [Key], name: &str) -> Option<&'a Key> {
    keys.iter().find(|k| k.name == name)
}

/// The closest of `candidates` to `wanted`, if it is close enough to be a typo.
pub(crate) fn suggest<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let wanted = wanted.to_ascii_lowercase();
    // A third of the name, at least 1 and at most 3 edits: "prot" -> "port",
    // "colect_every" -> "collect_every", but not "url" -> "ttl".
    let budget = (wanted.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&wanted, c), c))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// Levenshtein distance, counting an adjacent transposition as one edit.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_but_not_unrelated_names() {
        let names = UDP_SEND.iter().map(|k| k.name);
        assert_eq!(suggest("prot", names.clone()), Some("port".into()));
        assert_eq!(
            suggest("mcast_joni", names.clone()),
            Some("mcast_join".into())
        );
        assert_eq!(suggest("colour", names), None);
        assert_eq!(
            suggest("colect_every", COLLECTION_GROUP.iter().map(|k| k.name)),
            Some("collect_every".into())
        );
    }

    #[test]
    fn edit_distance_counts_transpositions_once() {
        assert_eq!(edit_distance("port", "prot"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
