use std::time::Duration;

use super::*;
use crate::metric::{MetricMeta, MetricValue, Slope, ValueType};
use crate::store::{HostRef, StoreConfig};

const T0: u64 = 1_700_000_000;

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + seconds)
}

fn store(host_dmax: u32) -> Arc<Store> {
    Arc::new(Store::new(StoreConfig {
        host_dmax,
        ..StoreConfig::for_tests("Prom \"Cluster\"")
    }))
}

struct Put<'a> {
    host: &'a str,
    name: &'a str,
    slope: Slope,
    units: &'a str,
    desc: &'a str,
    dmax: u32,
    value: MetricValue,
    when: u64,
}

fn put(store: &Store, put: Put<'_>) {
    let host = HostRef {
        name: put.host,
        ip: "10.0.0.1",
    };
    let meta = MetricMeta {
        name: put.name.into(),
        value_type: put.value.value_type(),
        units: put.units.into(),
        slope: put.slope,
        tmax: 60,
        dmax: put.dmax,
        extras: vec![
            ("TITLE".into(), format!("Title of {}", put.name)),
            ("DESC".into(), put.desc.into()),
            ("GROUP".into(), "net".into()),
            ("GROUP".into(), "extra".into()),
        ],
    };
    let format = match put.value.value_type() {
        ValueType::String => "%s",
        ValueType::Float | ValueType::Double => "%.2f",
        _ => "%u",
    };
    store.update_metadata(host, meta, at(put.when)).unwrap();
    store
        .update_value(host, put.name, put.value, format, at(put.when))
        .unwrap();
}

fn m<'a>(host: &'a str, name: &'a str, slope: Slope, value: MetricValue) -> Put<'a> {
    Put {
        host,
        name,
        slope,
        units: "",
        desc: "",
        dmax: 0,
        value,
        when: 0,
    }
}

#[test]
fn names_are_sanitized_to_prometheus_rules() {
    let mut out = String::new();
    for (ganglia, prometheus) in [
        ("cpu_user", "cpu_user"),
        ("disk.free-/var", "disk_free__var"),
        ("9lives", "_9lives"),
        ("", "_"),
        ("a:b", "a_b"),
        ("température", "temp_rature"),
    ] {
        sanitize_name(ganglia, &mut out);
        assert_eq!(out, prometheus, "{ganglia}");
    }
}

#[test]
fn types_follow_the_slope_and_strings_are_info() {
    assert_eq!(Kind::of(ValueType::UInt32, Slope::Positive), Kind::Counter);
    assert_eq!(
        Kind::of(ValueType::Double, Slope::Derivative),
        Kind::Counter
    );
    for slope in [
        Slope::Zero,
        Slope::Both,
        Slope::Negative,
        Slope::Unspecified,
    ] {
        assert_eq!(Kind::of(ValueType::Float, slope), Kind::Gauge);
    }
    assert_eq!(Kind::of(ValueType::String, Slope::Positive), Kind::Info);
}

#[test]
fn only_base_units_become_units() {
    assert_eq!(base_unit("bytes"), Some("bytes"));
    assert_eq!(base_unit(" sec "), Some("seconds"));
    assert_eq!(base_unit("s"), Some("seconds"));
    for scaled in ["KB", "%", "bytes/sec", "packets/sec", "ms", ""] {
        assert_eq!(base_unit(scaled), None, "{scaled}");
    }
}

#[test]
fn prometheus_2_42_asks_for_openmetrics() {
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
    assert_eq!(Format::negotiate(None), Format::Text);
    assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
    assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
    assert_eq!(
        Format::negotiate(Some("application/openmetrics-text")),
        Format::OpenMetrics
    );
    // Weights decide, not order; an unknown version of OpenMetrics is not ours.
    assert_eq!(
        Format::negotiate(Some(
            "text/plain;q=0.5, application/openmetrics-text; version=1.0.0; q=0.9"
        )),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::negotiate(Some("application/openmetrics-text; version=2.0.0")),
        Format::Text
    );
    assert_eq!(
        Format::negotiate(Some("application/openmetrics-text;q=0, text/plain")),
        Format::Text
    );
    assert_eq!(Format::negotiate(Some("application/json")), Format::Text);
}

/// A store with one metric of each kind on two hosts.
fn sample_store() -> Arc<Store> {
    let store = store(0);
    for host in ["b-host", "a-host"] {
        put(
            &store,
            Put {
                units: "bytes",
                desc: "Bytes \"in\"\nsince boot \\ ever",
                ..m(host, "bytes.in", Slope::Positive, MetricValue::UInt32(1200))
            },
        );
        put(
            &store,
            Put {
                units: "%",
                desc: "Idle CPU",
                ..m(host, "cpu_idle", Slope::Both, MetricValue::Float(97.5))
            },
        );
        put(
            &store,
            Put {
                units: "s",
                ..m(host, "uptime", Slope::Zero, MetricValue::UInt32(3600))
            },
        );
        put(
            &store,
            m(
                host,
                "os_name",
                Slope::Zero,
                MetricValue::String("Linux \"x\"".into()),
            ),
        );
    }
    store
}

#[test]
fn openmetrics_exposition_of_every_kind() {
    let exposition = render(&sample_store(), at(5), Format::OpenMetrics);
    let expected = r#"# HELP bytes_in_bytes Bytes \"in\"\nsince boot \\ ever
# TYPE bytes_in_bytes counter
# UNIT bytes_in_bytes bytes
bytes_in_bytes_total{cluster="Prom \"Cluster\"",host="a-host",group="net,extra",ganglia_name="bytes.in"} 1200.0
bytes_in_bytes_total{cluster="Prom \"Cluster\"",host="b-host",group="net,extra",ganglia_name="bytes.in"} 1200.0
# HELP cpu_idle Idle CPU (units: %)
# TYPE cpu_idle gauge
cpu_idle{cluster="Prom \"Cluster\"",host="a-host",group="net,extra",ganglia_name="cpu_idle"} 97.5
cpu_idle{cluster="Prom \"Cluster\"",host="b-host",group="net,extra",ganglia_name="cpu_idle"} 97.5
# HELP os_name Title of os_name
# TYPE os_name info
os_name_info{value="Linux \"x\"",cluster="Prom \"Cluster\"",host="a-host",group="net,extra",ganglia_name="os_name"} 1
os_name_info{value="Linux \"x\"",cluster="Prom \"Cluster\"",host="b-host",group="net,extra",ganglia_name="os_name"} 1
# HELP uptime_seconds Title of uptime
# TYPE uptime_seconds gauge
# UNIT uptime_seconds seconds
uptime_seconds{cluster="Prom \"Cluster\"",host="a-host",group="net,extra",ganglia_name="uptime"} 3600.0
uptime_seconds{cluster="Prom \"Cluster\"",host="b-host",group="net,extra",ganglia_name="uptime"} 3600.0
# EOF
"#;
    assert_eq!(exposition.text, expected, "\n{}", exposition.text);
    assert_eq!(exposition.dropped, 0);
}

#[test]
fn text_exposition_of_every_kind() {
    let exposition = render(&sample_store(), at(5), Format::Text);
    let expected = r#"# HELP bytes_in_bytes_total Bytes "in"\nsince boot \\ ever
# TYPE bytes_in_bytes_total counter
bytes_in_bytes_total{cluster="Prom \"Cluster\"",host="a-host",group="net,extra",ganglia_name="bytes.in"} 1200.0
bytes_in_bytes_total{cluster="Prom \"Cluster\"",host="b-host",group="net,extra",ganglia_name="bytes.in"} 1200.0
# HELP cpu_idle Idle CPU (units: %)
# TYPE cpu_idle gauge
cpu_idle{cluster="Prom \"Cluster\"",host="a-host",group="net,extra",ganglia_name="cpu_idle"} 97.5
cpu_idle{cluster="Prom \"Cluster\"",host="b-host",group="net,extra",ganglia_name="cpu_idle"} 97.5
# HELP os_name_info Title of os_name
# TYPE os_name_info gauge
os_name_info{cluster="Prom \"Cluster\"",host="a-host",group="net,extra",ganglia_name="os_name",value="Linux \"x\""} 1
os_name_info{cluster="Prom \"Cluster\"",host="b-host",group="net,extra",ganglia_name="os_name",value="Linux \"x\""} 1
# HELP uptime_seconds Title of uptime
# TYPE uptime_seconds gauge
uptime_seconds{cluster="Prom \"Cluster\"",host="a-host",group="net,extra",ganglia_name="uptime"} 3600.0
uptime_seconds{cluster="Prom \"Cluster\"",host="b-host",group="net,extra",ganglia_name="uptime"} 3600.0
"#;
    assert_eq!(exposition.text, expected, "\n{}", exposition.text);
}

/// What a scrape keeps of a metric's metadata (see `memo`) is made again when the
/// metadata change, even when the extras (what the XML keeps) stay the same.
#[test]
fn changed_metadata_show_in_the_next_scrape() {
    let store = store(0);
    let cpu = |units, slope| Put {
        units,
        desc: "Busy",
        ..m("a-host", "cpu_busy", slope, MetricValue::Float(2.5))
    };
    put(&store, cpu("%", Slope::Both));
    let before = render(&store, at(1), Format::Text).text;
    assert!(before.contains("# HELP cpu_busy Busy (units: %)\n# TYPE cpu_busy gauge\n"));
    put(&store, cpu("s", Slope::Positive));
    let after = render(&store, at(2), Format::Text).text;
    let expected = r#"# HELP cpu_busy_seconds_total Busy
# TYPE cpu_busy_seconds_total counter
cpu_busy_seconds_total{cluster="Prom \"Cluster\"",host="a-host",group="net,extra",ganglia_name="cpu_busy"} 2.5
"#;
    assert_eq!(after, expected);
}

/// Names, labels and HELP of every length come out whole (`memo` keeps their lengths).
#[test]
fn long_names_and_help_come_out_whole() {
    let store = store(0);
    let name = "n".repeat(70);
    let desc = format!("{}\"{}", "d".repeat(4100), "e".repeat(300));
    put(
        &store,
        Put {
            desc: &desc,
            ..m("a-host", &name, Slope::Both, MetricValue::UInt32(7))
        },
    );
    let help = format!("{}\\\"{}", "d".repeat(4100), "e".repeat(300));
    let sample = format!(
        "{name}{{cluster=\"Prom \\\"Cluster\\\"\",host=\"a-host\",group=\"net,extra\",ganglia_name=\"{name}\"}} 7.0\n"
    );
    let open_metrics = render(&store, at(1), Format::OpenMetrics).text;
    assert_eq!(
        open_metrics,
        format!("# HELP {name} {help}\n# TYPE {name} gauge\n{sample}# EOF\n")
    );
    let text = render(&store, at(1), Format::Text).text;
    assert_eq!(
        text,
        format!("# HELP {name} {desc}\n# TYPE {name} gauge\n{sample}")
    );
}

/// Families come out sorted whatever order the last scrape (of any store) had: that
/// order is only tried first (see `families`).
#[test]
fn families_are_sorted_after_a_scrape_in_another_order() {
    let two = |first: &str, second: &str| {
        let store = store(0);
        put(&store, m("h1", first, Slope::Both, MetricValue::UInt32(1)));
        put(&store, m("h2", second, Slope::Both, MetricValue::UInt32(2)));
        store
    };
    let names = |store: &Arc<Store>| {
        render(store, at(1), Format::Text)
            .text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let (found_sorted, found_reversed) = (two("a", "z"), two("z", "a"));
    for store in [
        &found_reversed,
        &found_sorted,
        &found_reversed,
        &found_sorted,
    ] {
        assert_eq!(names(store), ["a gauge", "z gauge"]);
    }
}

/// Hosts past host_dmax and metrics past their DMAX are left out before the sweep.
#[test]
fn stale_hosts_and_metrics_are_left_out() {
    let store = store(60);
    put(
        &store,
        Put {
            when: 0,
            ..m("gone", "load_one", Slope::Both, MetricValue::Float(1.0))
        },
    );
    put(
        &store,
        Put {
            when: 50,
            ..m("alive", "load_one", Slope::Both, MetricValue::Float(2.0))
        },
    );
    put(
        &store,
        Put {
            when: 50,
            dmax: 5,
            ..m("alive", "short_lived", Slope::Both, MetricValue::Float(3.0))
        },
    );
    let text = render(&store, at(55), Format::Text).text;
    assert!(text.contains("host=\"gone\""), "{text}");
    assert!(text.contains("short_lived{"), "{text}");
    let text = render(&store, at(61 + 5), Format::Text).text;
    assert!(!text.contains("host=\"gone\""), "{text}");
    assert!(text.contains("host=\"alive\""), "{text}");
    assert!(!text.contains("short_lived"), "{text}");
}

/// What would make the exposition invalid is dropped and counted; the rest stays.
#[test]
fn conflicting_metrics_are_dropped_not_the_scrape() {
    let store = store(0);
    // Counter `req` claims `req_total`; a gauge of that name on another host conflicts.
    put(
        &store,
        m("h1", "req", Slope::Positive, MetricValue::UInt32(5)),
    );
    put(
        &store,
        m("h2", "req_total", Slope::Both, MetricValue::UInt32(7)),
    );
    // The same name as a gauge on one host and a counter on another.
    put(&store, m("h1", "temp", Slope::Both, MetricValue::Int32(-3)));
    put(
        &store,
        m("h2", "temp", Slope::Positive, MetricValue::Int32(4)),
    );
    // A counter cannot be negative.
    put(
        &store,
        m("h1", "neg", Slope::Positive, MetricValue::Int32(-1)),
    );
    // Two Ganglia names that sanitize alike stay apart by their ganglia_name.
    put(&store, m("h1", "a.b", Slope::Both, MetricValue::UInt8(1)));
    put(&store, m("h1", "a-b", Slope::Both, MetricValue::UInt8(2)));
    let exposition = render(&store, at(1), Format::OpenMetrics);
    let text = &exposition.text;
    assert_eq!(exposition.dropped, 3, "{text}");
    assert!(text.contains("req_total{cluster=\"Prom \\\"Cluster\\\"\",host=\"h1\""));
    assert!(!text.contains("host=\"h2\",group=\"net,extra\",ganglia_name=\"req_total\""));
    assert!(text.contains("temp{cluster=\"Prom \\\"Cluster\\\"\",host=\"h1\",group=\"net,extra\",ganglia_name=\"temp\"} -3"));
    assert!(!text.contains("neg"), "{text}");
    assert!(text.contains("ganglia_name=\"a.b\"} 1"), "{text}");
    assert!(text.contains("ganglia_name=\"a-b\"} 2"), "{text}");
    assert_eq!(text.matches("# TYPE a_b gauge").count(), 1);
}

/// gmetric sends every value as a string packet; its metadata says the type.
#[test]
fn numbers_sent_as_strings_are_numbers() {
    let store = store(0);
    let host = HostRef {
        name: "remote",
        ip: "10.0.0.2",
    };
    for (name, slope) in [("sent", Slope::Positive), ("temp", Slope::Both)] {
        let meta = MetricMeta {
            name: name.into(),
            value_type: ValueType::UInt32,
            units: "".into(),
            slope,
            tmax: 60,
            dmax: 0,
            extras: Vec::new(),
        };
        store.update_metadata(host, meta, at(0)).unwrap();
        store
            .update_value(
                host,
                name,
                MetricValue::String("123456".into()),
                "%s",
                at(0),
            )
            .unwrap();
    }
    let exposition = render(&store, at(1), Format::Text);
    assert_eq!(exposition.dropped, 0);
    assert!(
        exposition
            .text
            .contains("sent_total{cluster=\"Prom \\\"Cluster\\\"\",host=\"remote\",group=\"\",ganglia_name=\"sent\"} 123456.0\n"),
        "{}",
        exposition.text
    );
    assert!(
        exposition
            .text
            .contains("ganglia_name=\"temp\"} 123456.0\n")
    );
}

/// Label values escape `\`, `"` and newline, and nothing else (both formats); HELP
/// escapes `\` and newline, and `"` in OpenMetrics only. Multi-byte characters next to
/// an escape stay whole.
#[test]
fn escapes_are_the_formats_own() {
    let cases = [
        ("plain", "plain", "plain"),
        ("", "", ""),
        (r"C:\temp\", r"C:\\temp\\", r"C:\\temp\\"),
        (r#"say "hi""#, r#"say \"hi\""#, r#"say "hi""#),
        ("two\nlines\n", r"two\nlines\n", r"two\nlines\n"),
        // A backslash before an `n` is not a newline.
        (r"\n", r"\\n", r"\\n"),
        ("tab\tcr\r", "tab\tcr\r", "tab\tcr\r"),
        ("é\\ü\"€\n✓", "é\\\\ü\\\"€\\n✓", "é\\\\ü\"€\\n✓"),
    ];
    for (raw, label, text_help) in cases {
        let mut out = String::from("=");
        text::push_escaped(&mut out, raw, true);
        assert_eq!(out, format!("={label}"), "label value {raw:?}");
        out.clear();
        text::push_escaped(&mut out, raw, false);
        assert_eq!(out, text_help, "0.0.4 HELP {raw:?}");
    }
}

/// A store whose strings hold every character the formats escape, where each can be:
/// the cluster, host, group and Ganglia names, a string value, DESC and units.
fn hostile_store() -> Arc<Store> {
    let store = Arc::new(Store::new(StoreConfig::for_tests("a\\b \"c\"\nd")));
    let host = HostRef {
        name: "h\"1\\",
        ip: "10.0.0.1",
    };
    for (name, slope, value, units, desc) in [
        (
            "say\"hi\"",
            Slope::Zero,
            MetricValue::String("C:\\x \"q\"\nnext".into()),
            "",
            "Path \\ \"quoted\"\nsecond line",
        ),
        (
            "back\\slash",
            Slope::Positive,
            MetricValue::UInt32(7),
            "KB\\s",
            "",
        ),
    ] {
        let meta = MetricMeta {
            name: name.into(),
            value_type: value.value_type(),
            units: units.into(),
            slope,
            tmax: 60,
            dmax: 0,
            extras: vec![
                ("DESC".into(), desc.into()),
                ("GROUP".into(), "g\"1".into()),
                ("GROUP".into(), "g\\2".into()),
            ],
        };
        store.update_metadata(host, meta, at(0)).unwrap();
        store.update_value(host, name, value, "%s", at(0)).unwrap();
    }
    store
}

#[test]
fn hostile_strings_in_openmetrics() {
    let exposition = render(&hostile_store(), at(1), Format::OpenMetrics);
    let expected = r#"# HELP back_slash back\\slash (units: KB\\s)
# TYPE back_slash counter
back_slash_total{cluster="a\\b \"c\"\nd",host="h\"1\\",group="g\"1,g\\2",ganglia_name="back\\slash"} 7.0
# HELP say_hi_ Path \\ \"quoted\"\nsecond line
# TYPE say_hi_ info
say_hi__info{value="C:\\x \"q\"\nnext",cluster="a\\b \"c\"\nd",host="h\"1\\",group="g\"1,g\\2",ganglia_name="say\"hi\""} 1
# EOF
"#;
    assert_eq!(exposition.text, expected, "\n{}", exposition.text);
}

#[test]
fn hostile_strings_in_text_0_0_4() {
    let exposition = render(&hostile_store(), at(1), Format::Text);
    let expected = r#"# HELP back_slash_total back\\slash (units: KB\\s)
# TYPE back_slash_total counter
back_slash_total{cluster="a\\b \"c\"\nd",host="h\"1\\",group="g\"1,g\\2",ganglia_name="back\\slash"} 7.0
# HELP say_hi__info Path \\ "quoted"\nsecond line
# TYPE say_hi__info gauge
say_hi__info{cluster="a\\b \"c\"\nd",host="h\"1\\",group="g\"1,g\\2",ganglia_name="say\"hi\"",value="C:\\x \"q\"\nnext"} 1
"#;
    assert_eq!(exposition.text, expected, "\n{}", exposition.text);
}

/// Gauges that are no number, or an infinite one, and the shortest forms of others, as
/// each format writes them.
#[test]
fn special_values_as_each_format_spells_them() {
    let store = store(0);
    for (name, value) in [
        ("nan", MetricValue::Double(f64::NAN)),
        ("pos", MetricValue::Double(f64::INFINITY)),
        ("neg", MetricValue::Double(f64::NEG_INFINITY)),
        ("tiny", MetricValue::Double(1e-7)),
        ("big", MetricValue::Double(1e21)),
        ("zero", MetricValue::Float(-0.0)),
    ] {
        let host = HostRef {
            name: "h",
            ip: "10.0.0.1",
        };
        let meta = MetricMeta {
            name: name.into(),
            value_type: ValueType::Double,
            units: "".into(),
            slope: Slope::Both,
            tmax: 60,
            dmax: 0,
            extras: Vec::new(),
        };
        store.update_metadata(host, meta, at(0)).unwrap();
        store.update_value(host, name, value, "%f", at(0)).unwrap();
    }
    let values = |format| -> Vec<String> {
        render(&store, at(1), format)
            .text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| line.rsplit_once(' ').unwrap().1.to_owned())
            .collect()
    };
    // Families in name order: big, nan, neg, pos, tiny, zero.
    assert_eq!(
        values(Format::Text),
        ["1e21", "NaN", "-Inf", "+Inf", "1e-7", "-0.0"]
    );
    assert_eq!(
        values(Format::OpenMetrics),
        ["1e21", "NaN", "-inf", "inf", "1e-7", "-0.0"]
    );
}
