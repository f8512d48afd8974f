//! Loading whole configurations from an in-memory file system.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::*;

/// Files held in memory, so that tests and the fuzz target never touch the disk.
#[derive(Default)]
pub(super) struct MemFs {
    files: BTreeMap<PathBuf, String>,
}

impl MemFs {
    pub(super) fn with(files: &[(&str, &str)]) -> MemFs {
        MemFs {
            files: files
                .iter()
                .map(|(p, s)| (PathBuf::from(p), s.to_string()))
                .collect(),
        }
    }
}

impl FileSource for MemFs {
    fn read(&self, path: &Path, max_bytes: u64) -> io::Result<String> {
        let src = self
            .files
            .get(&self.identity(path))
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        if src.len() as u64 > max_bytes {
            return Err(loader::too_long(max_bytes));
        }
        Ok(src.clone())
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let pattern = glob::Pattern::new(pattern).map_err(|e| e.to_string())?;
        let options = glob::MatchOptions {
            require_literal_leading_dot: true,
            ..Default::default()
        };
        Ok(self
            .files
            .keys()
            .filter(|p| pattern.matches_path_with(p, options))
            .cloned()
            .collect())
    }

    fn is_file(&self, path: &Path) -> bool {
        self.files.contains_key(&self.identity(path))
    }

    fn identity(&self, path: &Path) -> PathBuf {
        path.components()
            .filter(|c| *c != std::path::Component::CurDir)
            .collect()
    }
}

fn load_mem(files: &[(&str, &str)]) -> Result<Loaded, ConfigErrors> {
    load_with(
        Path::new(files[0].0),
        &LoadOptions::default(),
        &MemFs::with(files),
    )
}

fn errors_of(files: &[(&str, &str)]) -> Vec<String> {
    match load_mem(files) {
        Ok(loaded) => panic!("expected errors, got {loaded:#?}"),
        Err(errors) => errors.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn warnings_of(loaded: &Loaded) -> Vec<String> {
    loaded.warnings.iter().map(|w| w.to_string()).collect()
}

#[test]
fn gmond_defaults_apply_to_an_empty_file() {
    let loaded = load_mem(&[("/e/gmond.conf", "")]).unwrap();
    let c = &loaded.config;
    assert_eq!(c.globals, Globals::default());
    assert_eq!(c.globals.max_udp_msg_len, 1472);
    assert_eq!(c.globals.host_dmax, 86400);
    assert_eq!(c.cluster.name, "unspecified");
    assert!(c.modules.is_empty() && c.collection_groups.is_empty());
    assert!(loaded.warnings.is_empty());
}

#[test]
fn typed_sections_read_values_of_every_kind() {
    let conf = r#"
globals {
  daemonize = no
  SETUID = off            # gmond matches names without case
  debug_level = 0
  max_udp_msg_len = 1400
  host_dmax = 0x10
  send_metadata_interval = "30"
  module_dir = "mods"
  override_hostname = web1.example
  tags = "a,b"
}
cluster { name = "C"; owner = O }
udp_send_channel { host = 127.0.0.1 port = 8649 ttl = 2 }
udp_send_channel { mcast_join = 239.2.11.71 port = 8649 bind_hostname = yes }
udp_recv_channel { port = 0 bind = 127.0.0.1 buffer = 0 family = inet6 retry_bind = false }
tcp_accept_channel {
  port = 8649
  timeout = 1000000
  gzip_output = yes
  acl {
    default = "deny"
    access { ip = 127.0.0.1 mask = 32 action = allow }
    access { ip = "::1" mask = 128 action = "ALLOW" }
  }
}
collection_group {
  collect_every = 20
  time_threshold = 90
  metric { name = "cpu_user" value_threshold = "1.0" title = "CPU User" }
  metric { name_match = "multicpu_([a-z]+)([0-9]+)" value_threshold = -1 }
}
collection_group { collect_once = yes collect_every = 0 }
"#;
    let c = load_mem(&[("/etc/ganglia/gmond.conf", conf)])
        .unwrap()
        .config;
    assert!(!c.globals.daemonize && !c.globals.setuid);
    assert_eq!(c.globals.max_udp_msg_len, 1400);
    assert_eq!(c.globals.host_dmax, 16);
    assert_eq!(c.globals.send_metadata_interval, 30);
    assert_eq!(
        c.globals.module_dir,
        Some(PathBuf::from("/etc/ganglia/mods"))
    );
    assert_eq!(c.globals.override_hostname.as_deref(), Some("web1.example"));
    assert_eq!(
        (
            c.cluster.name.as_str(),
            c.cluster.owner.as_str(),
            c.cluster.url.as_str()
        ),
        ("C", "O", "unspecified")
    );
    assert_eq!(c.udp_send_channels.len(), 2);
    assert_eq!(c.udp_send_channels[0].host.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        (c.udp_send_channels[0].port, c.udp_send_channels[0].ttl),
        (8649, 2)
    );
    assert_eq!(
        c.udp_send_channels[0].declared_at.to_string(),
        "/etc/ganglia/gmond.conf:14:1"
    );
    assert!(c.udp_send_channels[1].bind_hostname);
    let recv = &c.udp_recv_channels[0];
    assert_eq!(
        (recv.port, recv.buffer, recv.family, recv.retry_bind),
        (0, None, Family::Inet6, false)
    );
    let tcp = &c.tcp_accept_channels[0];
    assert_eq!((tcp.timeout_us, tcp.gzip_output), (Some(1_000_000), true));
    let acl = tcp.acl.as_ref().unwrap();
    assert_eq!(acl.default, AclAction::Deny);
    assert_eq!(acl.access.len(), 2);
    assert_eq!(
        (
            acl.access[1].ip.to_string(),
            acl.access[1].mask,
            acl.access[1].action
        ),
        ("::1".into(), 128, AclAction::Allow)
    );
    let group = &c.collection_groups[0];
    assert_eq!(
        (
            group.collect_every,
            group.time_threshold,
            group.collect_once
        ),
        (20, 90, false)
    );
    assert_eq!(
        group.metrics[0].selector,
        MetricSelector::Name("cpu_user".into())
    );
    assert_eq!(group.metrics[0].value_threshold, Some(1.0));
    assert_eq!(group.metrics[0].title.as_deref(), Some("CPU User"));
    assert_eq!(
        group.metrics[1].selector,
        MetricSelector::NameMatch("multicpu_([a-z]+)([0-9]+)".into())
    );
    assert_eq!(group.metrics[1].value_threshold, None);
    assert!(c.collection_groups[1].collect_once);
}

#[test]
fn syntax_errors_on_several_lines_are_all_reported() {
    let conf = "globals {\n  daemonize no\n  mute = \n}\ncluster {\n  name = (\"a\" \"b\")\n}\nhost { location = \"x\" }}\n";
    assert_eq!(
        errors_of(&[("/c/g.conf", conf)]),
        vec![
            "/c/g.conf:2:13: error: expected `=` between `daemonize` and its value, found `no`",
            "/c/g.conf:4:1: error: expected a value after `mute =`, found `}`",
            "/c/g.conf:6:15: error: expected `,` or `)` closing the list opened at 6:10, found string `b`",
            "/c/g.conf:8:24: error: expected an option or section name (this `}` closes no section), found `}`",
        ]
    );
}

#[test]
fn a_missing_value_at_the_end_of_a_line_does_not_swallow_the_next_line() {
    let conf = "globals {\n  mute =\n  deaf = yes\n  gexec = maybe\n}\n";
    assert_eq!(
        errors_of(&[("/c/g.conf", conf)]),
        vec!["/c/g.conf:2:8: error: expected a value after `mute =`, found end of line"]
    );
}

#[test]
fn an_unclosed_section_names_where_it_was_opened() {
    assert_eq!(
        errors_of(&[("/c/g.conf", "cluster {\n  name = x\n")]),
        vec![
            "/c/g.conf:3:1: error: expected `}` closing `cluster` opened at 1:1, found end of file"
        ]
    );
}

#[test]
fn typing_errors_on_several_lines_are_all_reported_with_suggestions() {
    let conf = r#"globals {
  demonize = yes
  mute = perhaps
}
udp_send_channel { host = h prot = 8649 }
udp_recv_channel { port = 70000 }
colection_group { }
daemonize = no
collection_group {
  collect_every = 0
  metric { title = "t" }
  metric { name_match = "(" }
}
tcp_accept_channel { port = 1 family = inet5 acl { access { ip = 10.0.0.300 mask = 8 action = allow } } }
"#;
    assert_eq!(
        errors_of(&[("/c/g.conf", conf)]),
        vec![
            "/c/g.conf:2:3: error: unknown key `demonize` in `globals`; did you mean `daemonize`?",
            "/c/g.conf:3:10: error: `mute`: expected a boolean (yes/no, true/false, on/off), found `perhaps`",
            "/c/g.conf:5:1: error: `udp_send_channel` needs a `port`",
            "/c/g.conf:5:29: error: unknown key `prot` in `udp_send_channel`; did you mean `port`?",
            "/c/g.conf:6:27: error: `port`: expected a port from 0 to 65535, found `70000`",
            "/c/g.conf:7:1: error: unknown section `colection_group` at the top level; did you mean `collection_group`?",
            "/c/g.conf:8:1: error: unknown key `daemonize` in the top level; `daemonize` belongs in `globals { }`",
            "/c/g.conf:10:19: error: `collect_every`: expected at least 1 second (or `collect_once = yes`), found `0`",
            "/c/g.conf:11:3: error: `metric` needs `name` (one metric) or `name_match` (a regex)",
            "/c/g.conf:12:25: error: `name_match`: expected a regular expression, found `(` (unclosed group)",
            "/c/g.conf:14:40: error: `family`: expected `inet4` or `inet6`, found `inet5`",
            "/c/g.conf:14:66: error: `ip`: expected an IP address, found `10.0.0.300`",
        ]
    );
}

#[test]
fn unimplemented_gmond_settings_warn_only_when_turned_on() {
    let conf = "globals { daemonize = yes setuid = yes user = ganglia gexec = no }\nsflow { udp_port = 6343 }\n";
    let loaded = load_mem(&[("/c/g.conf", conf)]).unwrap();
    let warnings = warnings_of(&loaded);
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(warnings[0].starts_with("/c/g.conf:1:11: warning: `daemonize` is not implemented"));
    assert!(warnings[1].starts_with("/c/g.conf:2:1: warning: wasmond does not receive sFlow"));
    assert!(loaded.config.globals.setuid && loaded.config.globals.user == "ganglia");
}

#[test]
fn a_key_set_twice_warns_and_the_last_value_wins() {
    let loaded = load_mem(&[("/c/g.conf", "cluster {\n name = a\n name = b\n}\n")]).unwrap();
    assert_eq!(loaded.config.cluster.name, "b");
    assert_eq!(
        warnings_of(&loaded),
        vec![
            "/c/g.conf:3:2: warning: `name` is set again (first at /c/g.conf:2:2); the last value wins"
        ]
    );
}

const PYCONF: &str = r#"
modules {
  module {
    name = "refmod"
    language = "python"
    param Greeting { value = "from-pyconf" }
    param Count { value = 3 }
  }
}
collection_group {
  collect_every = 5
  time_threshold = 10
  metric { name_match = "ref_(u?int)" value_threshold = 1.0 title = "Ref \\1" }
}
"#;

#[test]
fn pyconf_includes_merge_modules_and_resolve_the_wasm_beside_them() {
    let root = r#"
modules {
  module { name = "core_metrics" }
  module { name = "cpu_module" path = "/usr/lib/ganglia/modcpu.so" }
  module { name = "python_module" path = "modpython.so" params = "/py" }
}
include ('conf.d/*.pyconf')
collection_group { collect_once = yes time_threshold = 20 metric { name = "heartbeat" } }
"#;
    let files = [
        ("/g/gmond.conf", root),
        ("/g/conf.d/refmod.pyconf", PYCONF),
        ("/g/conf.d/refmod.wasm", ""),
        ("/g/conf.d/.hidden.pyconf", "this is not parsed"),
    ];
    let loaded = load_mem(&files).unwrap();
    let c = &loaded.config;
    let names: Vec<&str> = c.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["core_metrics", "cpu_module", "python_module", "refmod"]
    );
    let refmod = &c.modules[3];
    assert_eq!(
        refmod.source,
        ModuleSource::Wasm {
            path: PathBuf::from("/g/conf.d/refmod.wasm")
        }
    );
    assert_eq!(refmod.wasm_path(), Some(Path::new("/g/conf.d/refmod.wasm")));
    assert_eq!(
        refmod.params,
        vec![
            ("Greeting".into(), "from-pyconf".into()),
            ("Count".into(), "3".into())
        ]
    );
    assert_eq!(
        refmod.declared_at.to_string(),
        "/g/conf.d/refmod.pyconf:3:3"
    );
    assert!(refmod.enabled);
    assert_eq!(c.modules[2].params_string.as_deref(), Some("/py"));
    assert!(matches!(
        c.modules[0].source,
        ModuleSource::Native { path: None, .. }
    ));
    // Groups keep include order: the pyconf's group comes before the root's last one.
    assert_eq!(c.collection_groups[0].collect_every, 5);
    assert!(c.collection_groups[1].collect_once);
    let warnings = warnings_of(&loaded);
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(
        warnings[0]
            .contains("module `core_metrics` (built into gmond) is a gmond C module, skipped")
    );
    assert!(warnings[1].contains("module `cpu_module` (`modcpu.so`) is a gmond C module, skipped"));
    assert!(warnings[2].contains("module `python_module` (`modpython.so`) is gmond's python host, skipped: wasmond does not need it"));
    assert_eq!(loaded.files.len(), 2);
}

#[test]
fn a_python_module_without_its_code_is_an_error_at_its_declaration() {
    let files = [
        ("/g/gmond.conf", "include (\"conf.d/*.pyconf\")\n"),
        ("/g/conf.d/refmod.pyconf", PYCONF),
    ];
    let errors = errors_of(&files);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    // Where gmond looks for refmod.py: beside the .pyconf, then its default directories.
    assert!(
        errors[0].starts_with("/g/conf.d/refmod.pyconf:3:3: error: module `refmod`: expected"),
        "{errors:#?}"
    );
    for place in [
        "/g/conf.d/refmod.py",
        "/usr/lib/ganglia/python_modules/refmod.py",
        "/usr/lib64/ganglia/python_modules/refmod.py",
    ] {
        assert!(errors[0].contains(&format!("`{place}`")), "{errors:#?}");
    }
}

#[test]
fn wasm_modules_resolve_path_then_module_dirs() {
    let conf = r#"
globals { module_dir = "/opt/wasmond/modules" }
modules {
  module { name = "a" language = "wasm" path = "lib/a.wasm" }
  module { name = "b" language = "wasm" }
  module { name = "c" }
  module { name = "d" language = "wasm" enabled = no }
  module { name = "e" path = "/abs/e.wasm" }
}
"#;
    let files = [
        ("/g/gmond.conf", conf),
        ("/g/lib/a.wasm", ""),
        ("/opt/wasmond/modules/b.wasm", ""),
        ("/g/c.wasm", ""),
        ("/abs/e.wasm", ""),
    ];
    let c = load_mem(&files).unwrap().config;
    let paths: Vec<Option<&Path>> = c.modules.iter().map(|m| m.wasm_path()).collect();
    assert_eq!(
        paths,
        vec![
            Some(Path::new("/g/lib/a.wasm")),
            Some(Path::new("/opt/wasmond/modules/b.wasm")),
            Some(Path::new("/g/c.wasm")),
            None,
            Some(Path::new("/abs/e.wasm"))
        ]
    );
    assert!(
        matches!(&c.modules[3].source, ModuleSource::DisabledMissing { looked_in } if looked_in.len() == 2)
    );
}

#[test]
fn module_errors_are_collected_across_modules() {
    let conf = r#"modules {
  module { language = "wasm" }
  module { name = "x" language = "perl" }
  module { name = "y" language = "wasm" path = "nope.wasm" }
  module { name = "z" language = "wasm" param p { } }
  module { name = "z" language = "wasm" }
}
"#;
    let files = [("/g/gmond.conf", conf), ("/g/z.wasm", "")];
    assert_eq!(
        errors_of(&files),
        vec![
            "/g/gmond.conf:2:3: error: `module` needs a `name`",
            "/g/gmond.conf:3:34: error: `language`: expected `wasm`, `python` or `C`, found `perl`",
            "/g/gmond.conf:4:48: error: module `y`: expected its WebAssembly file at `/g/nope.wasm`, found none",
            "/g/gmond.conf:5:41: error: `param p` needs a `value`",
            "/g/gmond.conf:6:3: error: module `z`: declared twice (first at /g/gmond.conf:5:3)",
        ]
    );
}

#[test]
fn sandbox_settings_are_read_and_checked() {
    let conf = r#"modules {
  module {
    name = "m"
    language = "wasm"
    sandbox {
      fuel_handler = 5000000
      deadline_handler_ms = 200
      memory_mb = 16
      deadline_compile_ms = 90000
      compile_memory_mb = 1024
      allow_read = ("/proc", "/sys/block")
      allow_env = ("HOME", "MODE=fast")
      allow_env += "LANG"
      allow_filesystem_usage = yes
    }
  }
}
"#;
    let files = [("/g/gmond.conf", conf), ("/g/m.wasm", "")];
    let sandbox = load_mem(&files).unwrap().config.modules[0].sandbox.clone();
    assert_eq!(
        sandbox,
        SandboxConfig {
            fuel_handler: Some(5_000_000),
            deadline_handler_ms: Some(200),
            memory_mb: Some(16),
            deadline_compile_ms: Some(90_000),
            compile_memory_mb: Some(1024),
            allow_read: vec![PathBuf::from("/proc"), PathBuf::from("/sys/block")],
            allow_env: vec![
                EnvGrant::Inherit("HOME".into()),
                EnvGrant::Set {
                    name: "MODE".into(),
                    value: "fast".into()
                },
                EnvGrant::Inherit("LANG".into())
            ],
            allow_filesystem_usage: true,
            ..SandboxConfig::default()
        }
    );
}

#[test]
fn bad_sandbox_settings_are_errors() {
    let conf = r#"modules {
  module {
    name = "m"
    language = "wasm"
    memory_mb = 4
    sandbox {
      fuel_init = 0
      memory_mb = 5000
      allow_read = ("proc", "/a/../etc")
      allow_env = ("=x", "A B")
      fuel = 1
      compile_memory_mb = 16
      deadline_compile_ms = 0
    }
  }
}
"#;
    let files = [("/g/gmond.conf", conf), ("/g/m.wasm", "")];
    assert_eq!(
        errors_of(&files),
        vec![
            "/g/gmond.conf:5:5: error: unknown key `memory_mb` in `module`; sandbox settings go in a `sandbox { }` block inside `module`",
            "/g/gmond.conf:7:19: error: `fuel_init`: expected an integer of at least 1, found `0`",
            "/g/gmond.conf:8:19: error: `memory_mb`: expected a size in MiB from 1 to 4096, found `5000`",
            "/g/gmond.conf:9:21: error: `allow_read`: expected an absolute directory, found `proc`",
            "/g/gmond.conf:9:29: error: `allow_read`: expected a path without `..`, found `/a/../etc`",
            "/g/gmond.conf:10:20: error: `allow_env`: expected `NAME` or `NAME=value` with NAME of letters, digits and `_`, found `=x`",
            "/g/gmond.conf:10:26: error: `allow_env`: expected `NAME` or `NAME=value` with NAME of letters, digits and `_`, found `A B`",
            "/g/gmond.conf:11:7: error: unknown key `fuel` in `sandbox`",
            "/g/gmond.conf:12:27: error: `compile_memory_mb`: expected a size in MiB from 64 to 65536, found `16`",
            "/g/gmond.conf:13:29: error: `deadline_compile_ms`: expected an integer of at least 1, found `0`",
        ]
    );
}

#[test]
fn include_problems_are_reported_at_the_include() {
    let files = [
        (
            "/g/gmond.conf",
            "include (\"a.conf\")\ninclude (\"missing.conf\")\ninclude (\"none/*.conf\")\ninclude (\"x\", \"y\")\n",
        ),
        ("/g/a.conf", "include ('gmond.conf')\n"),
    ];
    assert_eq!(
        errors_of(&files),
        vec![
            "/g/gmond.conf:2:10: error: cannot read `/g/missing.conf`: entity not found",
            "/g/gmond.conf:4:1: error: expected one path in `include (\"...\")`, found 2 arguments",
            "/g/a.conf:1:10: error: include cycle: /g/gmond.conf -> /g/a.conf -> /g/gmond.conf",
        ]
    );
}

#[test]
fn a_glob_matching_nothing_is_a_warning_as_gmond_accepts_it() {
    let loaded =
        load_mem(&[("/g/gmond.conf", "include ('/etc/ganglia/conf.d/*.conf')\n")]).unwrap();
    assert_eq!(
        warnings_of(&loaded),
        vec![
            "/g/gmond.conf:1:10: warning: `include` pattern `/etc/ganglia/conf.d/*.conf` matches no files"
        ]
    );
}

#[test]
fn syntax_errors_in_an_included_file_are_reported_with_the_root_s() {
    let files = [
        (
            "/g/gmond.conf",
            "include ('b.conf')\nglobals { mute yes }\n",
        ),
        ("/g/b.conf", "cluster { name = }\n"),
    ];
    assert_eq!(
        errors_of(&files),
        vec![
            "/g/gmond.conf:2:16: error: expected `=` between `mute` and its value, found `yes`",
            "/g/b.conf:1:18: error: expected a value after `name =`, found `}`",
        ]
    );
}

#[test]
fn an_unreadable_root_file_is_one_error_naming_it() {
    let errors = load_with(
        Path::new("/nope/gmond.conf"),
        &LoadOptions::default(),
        &MemFs::default(),
    )
    .unwrap_err();
    assert_eq!(
        errors.to_string(),
        "/nope/gmond.conf: error: cannot read `/nope/gmond.conf`: entity not found"
    );
}

#[test]
fn sections_with_wrong_titles_and_misplaced_includes_are_errors() {
    let conf = "cluster main { }\nmodules { module { name = m language = wasm param { value = 1 } } }\nhost { include ('x') }\nhost { location = { } }\n";
    let files = [("/g/gmond.conf", conf), ("/g/m.wasm", "")];
    assert_eq!(
        errors_of(&files),
        vec![
            "/g/gmond.conf:1:9: error: `cluster` takes no name, found `main`",
            "/g/gmond.conf:2:45: error: `param` needs a name: `param NAME { ... }`",
            "/g/gmond.conf:3:8: error: `include` is allowed only at the top level, not inside `host`",
            "/g/gmond.conf:4:19: error: `location`: expected a single value, found a list",
        ]
    );
}

#[test]
fn repeated_includes_are_capped_instead_of_growing_exponentially() {
    let twice = |next: &str| format!("include ('{next}')\ninclude ('{next}')\n");
    let names: Vec<String> = (0..15).map(|i| format!("/g/f{i}.conf")).collect();
    let mut files: Vec<(String, String)> = names
        .windows(2)
        .map(|w| (w[0].clone(), twice(&w[1])))
        .collect();
    files.push((names[14].clone(), String::new()));
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, s)| (p.as_str(), s.as_str()))
        .collect();
    let loaded = load_mem(&borrowed).unwrap();
    assert_eq!(loaded.files.len(), loader::MAX_FILES);
    let warnings = warnings_of(&loaded);
    assert_eq!(warnings.len(), 1, "said once: {warnings:?}");
    assert!(
        warnings[0].contains("nor any later include: the configuration reached 10000 files"),
        "{warnings:?}"
    );
}

/// A root including `n` pyconf files through one glob, each declaring a module.
fn many_pyconfs(n: usize) -> Vec<(String, String)> {
    let mut files = vec![(
        "/g/gmond.conf".to_string(),
        "include ('conf.d/*.pyconf')\nglobals { mute = yes }\n".to_string(),
    )];
    for i in 0..n {
        let pyconf = format!("modules {{ module {{ name = \"m{i:05}\" language = \"wasm\" }} }}\n");
        files.push((format!("/g/conf.d/m{i:05}.pyconf"), pyconf));
        files.push((format!("/g/conf.d/m{i:05}.wasm"), String::new()));
    }
    files
}

fn load_owned(files: &[(String, String)]) -> Result<Loaded, ConfigErrors> {
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, s)| (p.as_str(), s.as_str()))
        .collect();
    load_mem(&borrowed)
}

#[test]
fn a_thousand_included_files_are_read() {
    let loaded = load_owned(&many_pyconfs(1000)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.files.len(), 1001);
    assert_eq!(loaded.config.modules.len(), 1000);
    assert!(loaded.config.globals.mute);
}

#[test]
fn past_the_file_cap_the_include_is_skipped_and_the_rest_is_used() {
    let mut files = many_pyconfs(10);
    files.extend(
        many_pyconfs(loader::MAX_FILES)
            .into_iter()
            .skip(1)
            .map(|(p, s)| {
                (
                    p.replace("/g/conf.d/m", "/g/big.d/b"),
                    s.replace("\"m", "\"b"),
                )
            }),
    );
    files[0].1 =
        "include ('conf.d/*.pyconf')\ninclude ('big.d/*.pyconf')\nglobals { mute = yes }\n".into();
    let loaded = load_owned(&files).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.files.len(), loader::MAX_FILES);
    assert_eq!(loaded.config.modules.len(), loader::MAX_FILES - 1);
    assert!(
        loaded.config.globals.mute,
        "the root's later statements are read"
    );
    let warnings = warnings_of(&loaded);
    assert_eq!(
        warnings,
        [
            "/g/gmond.conf:2:10: warning: not reading `/g/big.d/b09989.pyconf` nor any later include: the configuration reached 10000 files, the most wasmond reads"
        ]
    );
}

#[test]
fn a_file_longer_than_its_cap_is_an_error_at_its_include() {
    let long = "#".repeat(loader::MAX_FILE_BYTES as usize + 1);
    let errors = errors_of(&[
        ("/g/gmond.conf", "\n include ('big.conf')\n"),
        ("/g/big.conf", &long),
    ]);
    assert_eq!(
        errors,
        [
            "/g/gmond.conf:2:11: error: cannot read `/g/big.conf`: longer than 4194304 bytes, the most read of one configuration file"
        ]
    );
}

#[test]
fn past_the_total_byte_cap_the_include_is_skipped() {
    let chunk = "#".repeat(loader::MAX_FILE_BYTES as usize);
    let count = (loader::MAX_TOTAL_BYTES / loader::MAX_FILE_BYTES) as usize + 1;
    let mut files = vec![(
        "/g/gmond.conf".to_string(),
        "include ('d/*.conf')\n".to_string(),
    )];
    files.extend((0..count).map(|i| (format!("/g/d/{i:02}.conf"), chunk.clone())));
    let loaded = load_owned(&files).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        loaded.files.len(),
        count - 1,
        "the root and all but the two last chunks"
    );
    assert!(
        warnings_of(&loaded)[0].contains("reached 67108864 bytes"),
        "{:?}",
        loaded.warnings
    );
}

/// Loads `root` from the real file system on a thread, failing if it takes long: a
/// blocking open of a FIFO would hang for ever.
fn load_real_bounded(root: &Path) -> Result<Loaded, ConfigErrors> {
    let (tx, rx) = std::sync::mpsc::channel();
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(load(&root));
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("loading did not finish within 10 s")
}

#[test]
fn fifos_devices_and_directories_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.conf");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::create_dir(dir.path().join("sub.conf")).unwrap();
    let root = dir.path().join("gmond.conf");
    std::fs::write(
        &root,
        "include ('fifo.conf')\ninclude (\"/dev/zero\")\ninclude ('sub.conf')\n",
    )
    .unwrap();
    let errors = load_real_bounded(&root).unwrap_err().to_string();
    let root = root.display();
    let dir = dir.path().display();
    assert_eq!(
        errors,
        format!(
            "{root}:1:10: error: cannot read `{dir}/fifo.conf`: a FIFO, not a regular file\n\
             {root}:2:10: error: cannot read `/dev/zero`: a device, not a regular file\n\
             {root}:3:10: error: cannot read `{dir}/sub.conf`: a directory, not a regular file"
        )
    );
}

#[test]
fn gmonds_built_in_modules_are_replaced_by_core_metrics_wasm_once() {
    let conf = r#"
globals { module_dir = "/opt/wasmond/modules" }
modules {
  module { name = "core_metrics" }
  module { name = "cpu_module" path = "modcpu.so" }
  module { name = "disk_module" path = "moddisk.so" }
  module { name = "io_module" path = "modio.so" }
}
"#;
    let with_wasm = [
        ("/g/gmond.conf", conf),
        ("/opt/wasmond/modules/core_metrics.wasm", ""),
    ];
    let c = load_mem(&with_wasm).unwrap().config;
    let loaded: Vec<(&str, Option<&Path>)> = c
        .modules
        .iter()
        .map(|m| (m.name.as_str(), m.wasm_path()))
        .collect();
    assert_eq!(
        loaded,
        [
            (
                "core_metrics",
                Some(Path::new("/opt/wasmond/modules/core_metrics.wasm"))
            ),
            ("cpu_module", None),
            ("disk_module", None),
            ("io_module", None),
        ]
    );
    let sandbox = &c.modules[0].sandbox;
    assert_eq!(
        sandbox.allow_read,
        [PathBuf::from("/proc"), PathBuf::from("/sys")]
    );
    assert!(sandbox.allow_filesystem_usage);

    let without_wasm = [("/g/gmond.conf", conf)];
    let c = load_mem(&without_wasm).unwrap().config;
    assert!(c.modules.iter().all(|m| m.wasm_path().is_none()));
}

#[test]
fn prometheus_remote_write_reads_url_interval_and_queue() {
    let conf = r#"
prometheus_remote_write { url = "http://127.0.0.1:9090/api/v1/write" interval = 5 queue = 3 }
prometheus_remote_write {
  url = "http://mimir/api/v1/push"
}
"#;
    let loaded = load_mem(&[("/r/gmond.conf", conf)]).unwrap();
    let pushes = &loaded.config.prometheus_remote_writes;
    assert_eq!(pushes.len(), 2);
    assert_eq!(pushes[0].url, "http://127.0.0.1:9090/api/v1/write");
    assert_eq!((pushes[0].interval, pushes[0].queue), (5, 3));
    assert_eq!(pushes[0].declared_at.to_string(), "/r/gmond.conf:2:1");
    assert_eq!(
        (pushes[1].interval, pushes[1].queue),
        (DEFAULT_REMOTE_WRITE_INTERVAL, DEFAULT_REMOTE_WRITE_QUEUE)
    );
    assert!(loaded.warnings.is_empty());
}

#[test]
fn bad_prometheus_remote_write_settings_are_errors_at_their_place() {
    let conf = r#"prometheus_remote_write { interval = 15 }
prometheus_remote_write { url = "https://p:9090/api/v1/write" }
prometheus_remote_write { url = "ftp://p/x" }
prometheus_remote_write { url = "http://user:secret@p/x" }
prometheus_remote_write { url = "http://p:0/x" }
prometheus_remote_write { url = "not a url" }
prometheus_remote_write { url = "http://p/" interval = 0 queue = 0 }
prometheus_remote_write { url = "http://p/" interval = 301 queue = 1001 }
prometheus_remote_write { url = "http://p/" intervall = 10 }
"#;
    assert_eq!(
        errors_of(&[("/r/g.conf", conf)]),
        vec![
            "/r/g.conf:1:1: error: `prometheus_remote_write` needs a `url` (e.g. \"http://prometheus:9090/api/v1/write\")",
            "/r/g.conf:2:33: error: `url`: expected an `http://host[:port]/path` URL (https is not supported: use a TLS-terminating proxy), found `https://p:9090/api/v1/write`",
            "/r/g.conf:3:33: error: `url`: expected an `http://host[:port]/path` URL (the scheme must be http), found `ftp://p/x`",
            "/r/g.conf:4:33: error: `url`: expected an `http://host[:port]/path` URL (credentials in the URL are not supported), found `http://user:secret@p/x`",
            "/r/g.conf:5:33: error: `url`: expected an `http://host[:port]/path` URL (the port must be from 1 to 65535), found `http://p:0/x`",
            "/r/g.conf:6:33: error: `url`: expected an `http://host[:port]/path` URL (not a URL), found `not a url`",
            "/r/g.conf:7:56: error: `interval`: expected a number of seconds from 1 to 300 (Prometheus takes a series silent for 5 minutes as gone), found `0`",
            "/r/g.conf:7:66: error: `queue`: expected a number of requests from 1 to 1000, found `0`",
            "/r/g.conf:8:56: error: `interval`: expected a number of seconds from 1 to 300 (Prometheus takes a series silent for 5 minutes as gone), found `301`",
            "/r/g.conf:8:68: error: `queue`: expected a number of requests from 1 to 1000, found `1001`",
            "/r/g.conf:9:45: error: unknown key `intervall` in `prometheus_remote_write`; did you mean `interval`?",
        ]
    );
}
