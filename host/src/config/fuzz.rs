//! Property tests that no input makes the parser or the loader panic, and that
//! every error points inside the file it names. Run briefly with the other tests;
//! for a long run: `PROPTEST_CASES=2000000 cargo test --release -p wasmond config::fuzz`.

use std::path::Path;

use proptest::prelude::*;

use super::tests::MemFs;
use super::{LoadOptions, load_with, parse_str};

/// Pieces of gmond.conf syntax, so that random inputs get deep into the grammar.
const FRAGMENTS: &[&str] = &[
    "globals",
    "cluster",
    "host",
    "udp_send_channel",
    "udp_recv_channel",
    "tcp_accept_channel",
    "modules",
    "module",
    "collection_group",
    "metric",
    "param",
    "sandbox",
    "acl",
    "access",
    "sflow",
    "include",
    "name",
    "name_match",
    "value",
    "value_threshold",
    "title",
    "language",
    "path",
    "enabled",
    "port",
    "ttl",
    "bind",
    "mcast_join",
    "family",
    "ip",
    "mask",
    "action",
    "default",
    "allow_read",
    "allow_env",
    "memory_mb",
    "fuel_init",
    "collect_every",
    "collect_once",
    "time_threshold",
    "daemonize",
    "module_dir",
    "wasm",
    "python",
    "C",
    "yes",
    "no",
    "on",
    "true",
    "inet6",
    "allow",
    "deny",
    "{",
    "}",
    "(",
    ")",
    "=",
    "+=",
    ",",
    ";",
    "\"",
    "'",
    "\\",
    "#",
    "//",
    "/*",
    "*/",
    "\n",
    " ",
    "\t",
    "\"x\"",
    "'*.conf'",
    "(\"a.conf\")",
    "\"/proc\"",
    "1",
    "0",
    "-1",
    "0x1F",
    "08",
    "1.5",
    "1e309",
    "nan",
    "65536",
    "4294967296",
    "\"(\"",
    "\"a(b\"",
    "é",
    "\u{0}",
    "\r\n",
    "\\x4",
    "\\777",
    "modpython.so",
    "m.wasm",
];

fn fragments() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..120).prop_map(|parts| parts.join(" "))
}

fn fragments_tight() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..120).prop_map(|parts| parts.concat())
}

/// A config that loads; the mutation strategy starts from it.
const BASE: &str = "globals { daemonize = no module_dir = \"mods\" }\nmodules {\n  module {\n    name = \"m\"\n    language = \"wasm\"\n    param P { value = \"v\" }\n    sandbox { allow_read = (\"/proc\") memory_mb = 8 }\n  }\n}\ninclude ('conf.d/*.pyconf')\ntcp_accept_channel { port = 8649 acl { default = deny access { ip = 127.0.0.1 mask = 32 action = allow } } }\ncollection_group {\n  collect_every = 20\n  metric { name_match = \"m_([0-9]+)\" value_threshold = 1.0 title = \"M \\\\1\" }\n}\n";

/// A valid config with a random edit (delete a span, insert fragments) applied.
fn mutated_valid() -> impl Strategy<Value = String> {
    (0..BASE.len(), 0..40usize, fragments()).prop_map(|(at, len, insert)| {
        let start = floor_char_boundary(BASE, at);
        let end = floor_char_boundary(BASE, (start + len).min(BASE.len()));
        format!("{}{}{}", &BASE[..start], insert, &BASE[end..])
    })
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Loads `root` as /g/gmond.conf beside an included pyconf (which is `other`),
/// and checks every reported location.
fn load_checked(root: &str, other: &str) {
    let files = [
        ("/g/gmond.conf", root),
        ("/g/conf.d/x.pyconf", other),
        ("/g/m.wasm", ""),
        ("/g/conf.d/m.wasm", ""),
    ];
    let fs = MemFs::with(&files);
    let result = load_with(Path::new("/g/gmond.conf"), &LoadOptions::default(), &fs);
    let lines_of = |file: &str| {
        files
            .iter()
            .find(|(p, _)| *p == file)
            .map(|(_, s)| s.split('\n').count() as u32)
    };
    let locations: Vec<_> = match &result {
        Ok(loaded) => loaded.warnings.iter().map(|w| w.at.clone()).collect(),
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an Err carries at least one error");
            errors.0.iter().map(|e| e.at.clone()).collect()
        }
    };
    for at in locations {
        let lines =
            lines_of(&at.file).unwrap_or_else(|| panic!("location in an unknown file: {at}"));
        assert!(
            at.line <= lines,
            "{at} is past the end of a {lines}-line file"
        );
        assert!(at.line == 0 || at.col >= 1, "{at} has no column");
    }
}

fn parse_checked(src: &str) {
    if let Err(errors) = parse_str(src, "f.conf") {
        let lines = src.split('\n').count() as u32;
        assert!(!errors.is_empty());
        for e in errors {
            assert!(
                e.at.line >= 1 && e.at.line <= lines && e.at.col >= 1,
                "{e} outside a {lines}-line file"
            );
            assert!(!e.to_string().is_empty());
        }
    }
}

proptest! {
    #[test]
    fn any_text_parses_or_fails_cleanly(src in any::<String>()) {
        parse_checked(&src);
        load_checked(&src, "");
    }

    #[test]
    fn syntax_soup_parses_or_fails_cleanly(src in fragments(), other in fragments_tight()) {
        parse_checked(&src);
        parse_checked(&other);
        load_checked(&src, &other);
        load_checked(&format!("include ('conf.d/*.pyconf')\n{src}"), &other);
    }

    #[test]
    fn edited_valid_configs_load_or_fail_cleanly(src in mutated_valid(), other in mutated_valid()) {
        parse_checked(&src);
        load_checked(&src, &other);
    }
}

#[test]
fn the_unedited_fuzz_base_loads() {
    let files = [
        ("/g/gmond.conf", BASE),
        ("/g/conf.d/x.pyconf", ""),
        ("/g/m.wasm", ""),
    ];
    let loaded = load_with(
        Path::new("/g/gmond.conf"),
        &LoadOptions::default(),
        &MemFs::with(&files),
    );
    assert!(loaded.is_ok(), "{loaded:?}");
}
