use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::metric::{Slope, ValueType};
use std::net::IpAddr;

const T0: u64 = 1_795_447_229;

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn config(host_dmax: u32) -> StoreConfig {
    StoreConfig {
        cluster: ClusterInfo {
            name: "RefCluster".into(),
            owner: "RefOwner".into(),
            latlong: "N32.87 W117.22".into(),
            url: "http://example.invalid/".into(),
        },
        host_tmax: 20,
        host_dmax,
    }
}

const LOCAL: HostRef<'static> = HostRef {
    name: "localhost",
    ip: "127.0.0.1",
};
const SPOOFED: HostRef<'static> = HostRef {
    name: "spoofhost",
    ip: "10.1.2.3",
};

fn meta(name: &str, value_type: ValueType, dmax: u32, extras: &[(&str, &str)]) -> MetricMeta {
    MetricMeta {
        name: name.into(),
        value_type,
        units: "count".into(),
        slope: Slope::Both,
        tmax: 60,
        dmax,
        extras: extras
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A host's heartbeat, as its daemon's `heartbeat` metric brings it.
fn heartbeat(
    store: &Store,
    host: HostRef<'_>,
    started: u32,
    now: SystemTime,
) -> Result<bool, StoreError> {
    store.update_value(
        host,
        HEARTBEAT_METRIC,
        MetricValue::UInt32(started),
        "%u",
        now,
    )
}

fn xml(store: &Store, now: SystemTime) -> String {
    String::from_utf8(crate::export::xml::document(store, now, 0)).unwrap()
}

/// The part of a document after its prolog.
fn body(document: &str) -> &str {
    let start = document.find("<GANGLIA_XML").unwrap();
    &document[start..]
}

#[test]
fn a_metric_shows_once_metadata_and_value_are_known() {
    let store = Store::new(config(86400));
    let known = store
        .update_value(LOCAL, "ref_int", MetricValue::Int32(-42), "%d", at(T0))
        .unwrap();
    assert!(!known, "no metadata yet: the receiver must ask for it");
    assert!(!xml(&store, at(T0)).contains("<METRIC"));

    store
        .update_metadata(LOCAL, meta("ref_int", ValueType::Int32, 0, &[]), at(T0 + 1))
        .unwrap();
    let known = store
        .update_value(LOCAL, "ref_int", MetricValue::Int32(-41), "%d", at(T0 + 2))
        .unwrap();
    assert!(known);
    assert!(xml(&store, at(T0 + 5)).contains(
        "<METRIC NAME=\"ref_int\" VAL=\"-41\" TYPE=\"int32\" UNITS=\"count\" TN=\"3\" TMAX=\"60\" DMAX=\"0\" SLOPE=\"both\">"
    ));
}

#[test]
fn metadata_alone_does_not_show_a_metric() {
    let store = Store::new(config(86400));
    store
        .update_metadata(LOCAL, meta("m", ValueType::UInt32, 0, &[]), at(T0))
        .unwrap();
    assert!(!xml(&store, at(T0)).contains("<METRIC"));
    assert_eq!(store.metadata("localhost", "m").unwrap().name, "m");
}

#[test]
fn whole_document_for_two_hosts() {
    let store = Store::new(config(86400));
    let module_extras = [
        ("TITLE", "Ref uint"),
        ("DESC", "Reference uint counter"),
        ("GROUP", "reftest"),
        ("GROUP", "second_group"),
    ];
    heartbeat(&store, LOCAL, T0 as u32, at(T0)).unwrap();
    store
        .update_value(
            LOCAL,
            "location",
            MetricValue::String("rack1,slot2".into()),
            "%s",
            at(T0),
        )
        .unwrap();
    store
        .update_metadata(
            LOCAL,
            meta("ref_uint", ValueType::UInt32, 0, &module_extras),
            at(T0),
        )
        .unwrap();
    store
        .update_value(LOCAL, "ref_uint", MetricValue::UInt32(7), "%u", at(T0 + 20))
        .unwrap();
    let spoof_extras = [
        ("SPOOF_HOST", "10.1.2.3:spoofhost"),
        ("GROUP", "gmgroup"),
        ("DESC", "spoofed metric"),
    ];
    store
        .update_metadata(
            SPOOFED,
            meta("gm_spoofed", ValueType::UInt32, 0, &spoof_extras),
            at(T0 + 8),
        )
        .unwrap();
    store
        .update_value(
            SPOOFED,
            "gm_spoofed",
            MetricValue::String("7".into()),
            "%s",
            at(T0 + 8),
        )
        .unwrap();

    let expected = "<GANGLIA_XML VERSION=\"3.7.2\" SOURCE=\"gmond\">
<CLUSTER NAME=\"RefCluster\" LOCALTIME=\"1795447254\" OWNER=\"RefOwner\" LATLONG=\"N32.87 W117.22\" URL=\"http://example.invalid/\">
<HOST NAME=\"localhost\" IP=\"127.0.0.1\" TAGS=\"\" REPORTED=\"1795447249\" TN=\"5\" TMAX=\"20\" DMAX=\"86400\" LOCATION=\"rack1,slot2\" GMOND_STARTED=\"1795447229\">
<METRIC NAME=\"ref_uint\" VAL=\"7\" TYPE=\"uint32\" UNITS=\"count\" TN=\"5\" TMAX=\"60\" DMAX=\"0\" SLOPE=\"both\">
<EXTRA_DATA>
<EXTRA_ELEMENT NAME=\"GROUP\" VAL=\"second_group\"/>
<EXTRA_ELEMENT NAME=\"GROUP\" VAL=\"reftest\"/>
<EXTRA_ELEMENT NAME=\"DESC\" VAL=\"Reference uint counter\"/>
<EXTRA_ELEMENT NAME=\"TITLE\" VAL=\"Ref uint\"/>
</EXTRA_DATA>
</METRIC>
</HOST>
<HOST NAME=\"spoofhost\" IP=\"10.1.2.3\" TAGS=\"\" REPORTED=\"1795447237\" TN=\"17\" TMAX=\"20\" DMAX=\"86400\" LOCATION=\"unspecified\" GMOND_STARTED=\"0\">
<METRIC NAME=\"gm_spoofed\" VAL=\"7\" TYPE=\"uint32\" UNITS=\"count\" TN=\"17\" TMAX=\"60\" DMAX=\"0\" SLOPE=\"both\">
<EXTRA_DATA>
<EXTRA_ELEMENT NAME=\"DESC\" VAL=\"spoofed metric\"/>
<EXTRA_ELEMENT NAME=\"GROUP\" VAL=\"gmgroup\"/>
<EXTRA_ELEMENT NAME=\"SPOOF_HOST\" VAL=\"10.1.2.3:spoofhost\"/>
</EXTRA_DATA>
</METRIC>
</HOST>
</CLUSTER>
</GANGLIA_XML>
";
    let document = xml(&store, at(T0 + 25));
    assert!(document.starts_with(crate::wire::xml::GMOND_PROLOG));
    assert_eq!(body(&document), expected);
}

#[test]
fn heartbeat_and_location_set_host_attributes_not_metrics() {
    let store = Store::new(config(0));
    let heartbeat = meta("heartbeat", ValueType::UInt32, 0, &[]);
    store.update_metadata(LOCAL, heartbeat, at(T0)).unwrap();
    assert!(
        store
            .update_value(LOCAL, "heartbeat", MetricValue::UInt32(1234), "%u", at(T0))
            .unwrap()
    );
    store
        .update_value(
            LOCAL,
            "location",
            MetricValue::String("rack 9".into()),
            "%s",
            at(T0),
        )
        .unwrap();
    let host = store.host("localhost").unwrap();
    assert_eq!(
        (host.gmond_started, host.location.as_str()),
        (1234, "rack 9")
    );
    assert!(host.metrics.is_empty());

    // A spoofed heartbeat from gmetric arrives as the string "0" (LAYOUT.md §1.5).
    store
        .update_value(
            SPOOFED,
            "heartbeat",
            MetricValue::String("0".into()),
            "%s",
            at(T0),
        )
        .unwrap();
    assert_eq!(store.host("spoofhost").unwrap().gmond_started, 0);
    store
        .update_value(
            SPOOFED,
            "heartbeat",
            MetricValue::String("garbage".into()),
            "%s",
            at(T0),
        )
        .unwrap();
    assert_eq!(store.host("spoofhost").unwrap().gmond_started, 0);
}

#[test]
fn reported_follows_the_last_packet_of_any_kind() {
    let store = Store::new(config(0));
    heartbeat(&store, LOCAL, 1, at(T0)).unwrap();
    store
        .update_metadata(LOCAL, meta("m", ValueType::UInt32, 0, &[]), at(T0 + 3))
        .unwrap();
    assert_eq!(store.host("localhost").unwrap().reported, at(T0 + 3));
    store
        .update_value(LOCAL, "m", MetricValue::UInt32(1), "%u", at(T0 + 7))
        .unwrap();
    let document = xml(&store, at(T0 + 10));
    assert!(
        document.contains("REPORTED=\"1795447236\" TN=\"3\""),
        "{document}"
    );
}

#[test]
fn a_new_address_for_a_known_host_replaces_the_old() {
    let store = Store::new(config(0));
    heartbeat(&store, LOCAL, 1, at(T0)).unwrap();
    heartbeat(
        &store,
        HostRef {
            name: "localhost",
            ip: "127.0.0.2",
        },
        1,
        at(T0),
    )
    .unwrap();
    assert_eq!(store.host("localhost").unwrap().ip, "127.0.0.2");
}

#[test]
fn metrics_expire_after_their_dmax_and_never_with_dmax_zero() {
    let store = Store::new(config(0));
    store
        .update_metadata(LOCAL, meta("short", ValueType::UInt32, 30, &[]), at(T0))
        .unwrap();
    store
        .update_metadata(LOCAL, meta("forever", ValueType::UInt32, 0, &[]), at(T0))
        .unwrap();
    for name in ["short", "forever"] {
        store
            .update_value(LOCAL, name, MetricValue::UInt32(1), "%u", at(T0))
            .unwrap();
    }
    assert_eq!(
        store.expire(at(T0 + 30)),
        Expired::default(),
        "DMAX is inclusive"
    );
    assert_eq!(
        store.expire(at(T0 + 31)),
        Expired {
            hosts: 0,
            metrics: 1
        }
    );
    assert_eq!(store.expire(at(T0 + 1_000_000)), Expired::default());
    let names: Vec<String> = store
        .host("localhost")
        .unwrap()
        .metrics
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["forever"]);
}

#[test]
fn a_value_update_restarts_the_dmax_clock() {
    let store = Store::new(config(0));
    store
        .update_metadata(LOCAL, meta("m", ValueType::UInt32, 30, &[]), at(T0))
        .unwrap();
    store
        .update_value(LOCAL, "m", MetricValue::UInt32(1), "%u", at(T0 + 20))
        .unwrap();
    assert_eq!(store.expire(at(T0 + 45)).metrics, 0);
    assert_eq!(store.expire(at(T0 + 51)).metrics, 1);
}

#[test]
fn hosts_expire_after_host_dmax_with_their_metrics() {
    let store = Store::new(config(100));
    store
        .update_metadata(SPOOFED, meta("m", ValueType::UInt32, 0, &[]), at(T0))
        .unwrap();
    store
        .update_value(SPOOFED, "m", MetricValue::UInt32(1), "%u", at(T0))
        .unwrap();
    heartbeat(&store, LOCAL, 1, at(T0 + 50)).unwrap();
    assert_eq!(store.expire(at(T0 + 100)), Expired::default());
    assert_eq!(
        store.expire(at(T0 + 101)),
        Expired {
            hosts: 1,
            metrics: 1
        }
    );
    let hosts: Vec<String> = store.snapshot().into_iter().map(|h| h.name).collect();
    assert_eq!(hosts, ["localhost"]);

    let forever = Store::new(config(0));
    heartbeat(&forever, LOCAL, 1, at(T0)).unwrap();
    assert_eq!(forever.expire(at(T0 + 10_000_000)), Expired::default());
}

const SENDER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));

#[test]
fn the_metric_cap_counts_expired_metrics_back() {
    let store = Store::new(config(0));
    store
        .update_metadata_from(SENDER, LOCAL, meta("m", ValueType::UInt32, 1, &[]), at(T0))
        .unwrap();
    assert_eq!(store.read().peers.metrics, 1);
    store.expire(at(T0 + 2));
    assert_eq!(store.read().peers.metrics, 0);
    store.write().peers.metrics = MAX_METRICS;
    let refused = store.update_value_from(SENDER, LOCAL, "n", MetricValue::UInt32(1), "%u", at(T0));
    assert_eq!(refused, Err(StoreError::TooManyMetrics));
}

/// Issue 16 item 6: one source address cannot fill the store, and the host's own
/// metrics (its modules') always have room, whatever other senders did.
#[test]
fn one_sender_is_capped_and_the_host_keeps_its_room() {
    let store = Store::new(config(0));
    for i in 0..MAX_HOSTS_PER_SENDER {
        let name = format!("spoof{i}");
        let host = HostRef {
            name: &name,
            ip: "10.9.9.9",
        };
        store
            .update_metadata_from(SENDER, host, meta("m", ValueType::UInt32, 0, &[]), at(T0))
            .unwrap();
    }
    let one_more = HostRef {
        name: "spoof-over",
        ip: "10.9.9.9",
    };
    let refused = store.update_metadata_from(
        SENDER,
        one_more,
        meta("m", ValueType::UInt32, 0, &[]),
        at(T0),
    );
    assert_eq!(refused, Err(StoreError::SenderHostsFull));
    // Another sender still has its own share; known hosts still take updates.
    let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 8));
    store
        .update_metadata_from(
            other,
            one_more,
            meta("m", ValueType::UInt32, 0, &[]),
            at(T0),
        )
        .unwrap();
    let known = HostRef {
        name: "spoof0",
        ip: "10.9.9.9",
    };
    store
        .update_value_from(SENDER, known, "m", MetricValue::UInt32(1), "%u", at(T0))
        .unwrap();
    store
        .write()
        .peers
        .by_sender
        .get_mut(&SENDER)
        .unwrap()
        .metrics = MAX_METRICS_PER_SENDER;
    let refused =
        store.update_value_from(SENDER, known, "m2", MetricValue::UInt32(1), "%u", at(T0));
    assert_eq!(refused, Err(StoreError::SenderMetricsFull));
    // Even with every sender's share and the whole store taken, the host's own writes go in.
    {
        let mut state = store.write();
        state.peers.hosts = MAX_HOSTS;
        state.peers.metrics = MAX_METRICS;
    }
    store
        .update_metadata(LOCAL, meta("own", ValueType::UInt32, 0, &[]), at(T0))
        .unwrap();
    store
        .update_value(LOCAL, "own", MetricValue::UInt32(3), "%u", at(T0))
        .unwrap();
    assert!(xml(&store, at(T0)).contains("NAME=\"own\" VAL=\"3\""));
}

/// Hosts and metrics that expire give their sender its room back.
#[test]
fn expiry_gives_a_sender_its_share_back() {
    let store = Store::new(config(60));
    for i in 0..10 {
        let name = format!("h{i}");
        let host = HostRef {
            name: &name,
            ip: "10.9.9.9",
        };
        store
            .update_metadata_from(SENDER, host, meta("m", ValueType::UInt32, 0, &[]), at(T0))
            .unwrap();
    }
    assert_eq!(store.read().peers.by_sender[&SENDER].hosts, 10);
    assert_eq!(store.read().peers.by_sender[&SENDER].metrics, 10);
    heartbeat(&store, LOCAL, 1, at(T0 + 100)).unwrap();
    assert_eq!(store.expire(at(T0 + 100)).hosts, 10);
    let state = store.read();
    assert!(state.peers.by_sender.is_empty());
    assert_eq!((state.peers.hosts, state.peers.metrics), (0, 0));
}

#[test]
fn values_keep_their_senders_format() {
    let store = Store::new(config(0));
    store
        .update_metadata(LOCAL, meta("f", ValueType::Float, 0, &[]), at(T0))
        .unwrap();
    store
        .update_value(
            LOCAL,
            "f",
            MetricValue::Float(f32::from_bits(0x4049_0fd0)),
            "%.3f",
            at(T0),
        )
        .unwrap();
    assert!(xml(&store, at(T0)).contains("VAL=\"3.142\""));
    store
        .update_value(
            LOCAL,
            "f",
            MetricValue::Float(f32::from_bits(0x4049_0fd0)),
            "%.1f",
            at(T0),
        )
        .unwrap();
    assert!(xml(&store, at(T0)).contains("VAL=\"3.1\""));
    let sample = store.host("localhost").unwrap().metrics[0]
        .sample
        .clone()
        .unwrap();
    assert_eq!(
        sample,
        Sample {
            value: MetricValue::Float(f32::from_bits(0x4049_0fd0)),
            format: "%.1f".into()
        }
    );
}

#[test]
fn time_going_backwards_gives_zero_not_a_wrap() {
    let store = Store::new(config(0));
    store
        .update_metadata(LOCAL, meta("m", ValueType::UInt32, 0, &[]), at(T0))
        .unwrap();
    store
        .update_value(LOCAL, "m", MetricValue::UInt32(1), "%u", at(T0 + 10))
        .unwrap();
    let document = xml(&store, at(T0));
    assert!(document.contains("TN=\"0\""));
    assert!(!document.contains("TN=\"18446744073709551"));
}

#[test]
fn set_config_changes_cluster_and_host_limits() {
    let store = Store::new(config(0));
    heartbeat(&store, LOCAL, 1, at(T0)).unwrap();
    let mut changed = config(5);
    changed.cluster.name = "Other".into();
    store.set_config(changed);
    assert!(xml(&store, at(T0)).contains("<CLUSTER NAME=\"Other\""));
    assert_eq!(store.expire(at(T0 + 6)).hosts, 1);
}

#[test]
fn many_tasks_write_and_read_concurrently() {
    let store = Arc::new(Store::new(config(0)));
    let writers: Vec<_> = (0..4)
        .map(|thread| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..500u32 {
                    let host = format!("host{thread}");
                    let host = HostRef {
                        name: &host,
                        ip: "10.0.0.1",
                    };
                    let name = format!("m{}", i % 50);
                    store
                        .update_metadata(host, meta(&name, ValueType::UInt32, 0, &[]), at(T0))
                        .unwrap();
                    store
                        .update_value(host, &name, MetricValue::UInt32(i), "%u", at(T0))
                        .unwrap();
                }
            })
        })
        .collect();
    for _ in 0..20 {
        let document = xml(&store, at(T0));
        assert!(document.ends_with("</GANGLIA_XML>\n"));
    }
    for writer in writers {
        writer.join().unwrap();
    }
    let snapshot = store.snapshot();
    assert_eq!(snapshot.len(), 4);
    assert!(snapshot.iter().all(|host| host.metrics.len() == 50));
    assert_eq!(
        store.read().peers.metrics,
        0,
        "the host's own writes are not a peer's"
    );
}

#[test]
fn new_metadata_replaces_the_rendered_extras() {
    let store = Store::new(config(0));
    store
        .update_metadata(
            LOCAL,
            meta("m", ValueType::UInt32, 0, &[("GROUP", "old")]),
            at(T0),
        )
        .unwrap();
    store
        .update_value(LOCAL, "m", MetricValue::UInt32(1), "%u", at(T0))
        .unwrap();
    assert!(xml(&store, at(T0)).contains("<EXTRA_ELEMENT NAME=\"GROUP\" VAL=\"old\"/>"));

    let mut same_extras = meta("m", ValueType::UInt32, 0, &[("GROUP", "old")]);
    same_extras.units = "bytes".into();
    store.update_metadata(LOCAL, same_extras, at(T0)).unwrap();
    assert!(xml(&store, at(T0)).contains("UNITS=\"bytes\""));

    store
        .update_metadata(
            LOCAL,
            meta("m", ValueType::UInt32, 0, &[("GROUP", "new")]),
            at(T0),
        )
        .unwrap();
    let document = xml(&store, at(T0));
    assert!(
        document.contains("<EXTRA_ELEMENT NAME=\"GROUP\" VAL=\"new\"/>"),
        "{document}"
    );
    assert!(!document.contains("VAL=\"old\""));
}

/// Issue 12: `VAL="not-a-number" TYPE="int32"` was served.
#[test]
fn a_value_that_does_not_read_as_its_type_is_refused() {
    let store = Store::new(config(0));
    store
        .update_metadata(LOCAL, meta("n", ValueType::Int32, 0, &[]), at(T0))
        .unwrap();
    let text = |s: &str| MetricValue::String(s.into());
    let refused = store.update_value(LOCAL, "n", text("not-a-number"), "%s", at(T0));
    assert_eq!(refused, Err(StoreError::Mistyped(ValueType::Int32)));
    assert!(!xml(&store, at(T0)).contains("<METRIC"));
    // gmetric sends every value as a string: one that reads as a number is taken.
    store
        .update_value(LOCAL, "n", text("42"), "%s", at(T0))
        .unwrap();
    assert!(xml(&store, at(T0)).contains("VAL=\"42\" TYPE=\"int32\""));
    // A later bad value is refused and the good one stays.
    assert!(
        store
            .update_value(LOCAL, "n", text("4x2"), "%s", at(T0))
            .is_err()
    );
    assert!(xml(&store, at(T0)).contains("VAL=\"42\""));
}

#[test]
fn a_value_taken_before_its_metadata_must_read_as_the_type_declared() {
    let store = Store::new(config(0));
    let text = |s: &str| MetricValue::String(s.into());
    store
        .update_value(LOCAL, "early", text("oops"), "%s", at(T0))
        .unwrap();
    store
        .update_metadata(LOCAL, meta("early", ValueType::Double, 0, &[]), at(T0))
        .unwrap();
    assert!(!xml(&store, at(T0)).contains("<METRIC"), "dropped");
    store
        .update_value(LOCAL, "early", text("1.5"), "%s", at(T0))
        .unwrap();
    assert!(xml(&store, at(T0)).contains("VAL=\"1.5\" TYPE=\"double\""));
}

/// What readers render from a metric's metadata outlives a repeat of the same metadata
/// (gmond repeats it every `send_metadata_interval`), not a change; what they render
/// from the extras alone outlives a change that keeps the extras.
#[test]
fn rendered_metadata_is_kept_until_it_changes() {
    let store = Store::new(config(0));
    let cpu = meta("cpu", ValueType::Float, 0, &[("GROUP", "cpu")]);
    store.update_metadata(LOCAL, cpu.clone(), at(T0)).unwrap();
    store
        .update_value(LOCAL, "cpu", MetricValue::Float(1.0), "%.1f", at(T0))
        .unwrap();
    let rendered = |store: &Store| {
        store.with_view(|view| {
            let metric = view.hosts().next().unwrap().metrics().next().unwrap();
            let _ = metric.meta_rendered.set("meta".into());
            let _ = metric.extras_rendered.set(Box::new(*b"extras"));
        })
    };
    let kept = |store: &Store| {
        store.with_view(|view| {
            let metric = view.hosts().next().unwrap().metrics().next().unwrap();
            (
                metric.meta_rendered.get().is_some(),
                metric.extras_rendered.get().is_some(),
            )
        })
    };
    rendered(&store);
    store
        .update_metadata(LOCAL, cpu.clone(), at(T0 + 1))
        .unwrap();
    assert_eq!(kept(&store), (true, true));
    let in_seconds = MetricMeta {
        units: "s".into(),
        ..cpu.clone()
    };
    store
        .update_metadata(LOCAL, in_seconds, at(T0 + 2))
        .unwrap();
    assert_eq!(kept(&store), (false, true));
    rendered(&store);
    let regrouped = meta("cpu", ValueType::Float, 0, &[("GROUP", "system")]);
    store.update_metadata(LOCAL, regrouped, at(T0 + 3)).unwrap();
    assert_eq!(kept(&store), (false, false));
}
