use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::metric::{MetricMeta, MetricValue, Slope};
use crate::store::{HostRef, StoreConfig};

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
}

fn request(elements: &[&str], summary: bool, http: bool) -> Request {
    Request {
        elements: elements.iter().map(|e| e.to_string()).collect(),
        summary,
        http,
    }
}

#[test]
fn requests_parse_as_gmetad_reads_them() {
    assert_eq!(parse_request("/"), Ok(request(&[], false, false)));
    assert_eq!(
        parse_request("/C/h1/load_one"),
        Ok(request(&["C", "h1", "load_one"], false, false))
    );
    assert_eq!(parse_request("/C/"), Ok(request(&["C"], false, false)));
    assert_eq!(
        parse_request("/C?filter=summary"),
        Ok(request(&["C"], true, false))
    );
    assert_eq!(
        parse_request("/?filter=other"),
        Ok(request(&[], false, false)),
        "an unknown filter is ignored"
    );
    assert_eq!(
        parse_request("GET /C/h1 HTTP/1.0"),
        Ok(request(&["C", "h1"], false, true))
    );
    assert_eq!(
        parse_request("GET /C/*/x HTTP/1.1"),
        Ok(request(&["C", "*", "x"], false, true))
    );
    // gmetad finds no element "" and shows the root: the same as "/".
    assert_eq!(parse_request("//"), Ok(request(&[], false, false)));
    for (line, why) in [
        ("", BadRequest::Empty),
        ("C/h1", BadRequest::NotAPath),
        ("GET /C/h1 HTTP/2.0", BadRequest::BadHttp),
        ("/C/h<1", BadRequest::IllegalCharacter),
        ("/C;ls", BadRequest::IllegalCharacter),
        ("/C?summary", BadRequest::BadFilter),
        ("/STATUS", BadRequest::Status),
    ] {
        assert_eq!(parse_request(line), Err(why), "{line:?}");
    }
}

/// Cluster `C`: h1 (up, load_one 1.50 and 2 more), h2 (up, load_one 0.25), h3 (down).
fn store() -> Store {
    let store = Store::new(StoreConfig::for_tests("C"));
    let put = |host: &str, name: &str, value: MetricValue, format: &str, when: u64| {
        let host = HostRef {
            name: host,
            ip: "10.0.0.1",
        };
        let meta = MetricMeta {
            name: name.into(),
            value_type: value.value_type(),
            units: "u".into(),
            slope: Slope::Both,
            tmax: 60,
            dmax: 0,
            extras: vec![
                ("TITLE".into(), format!("T {name}")),
                ("GROUP".into(), "g".into()),
            ],
        };
        store.update_metadata(host, meta, at(when)).unwrap();
        store
            .update_value(host, name, value, format, at(when))
            .unwrap();
    };
    put("h1", "load_one", MetricValue::Float(1.5), "%.2f", 100);
    put("h1", "procs", MetricValue::UInt32(7), "%u", 100);
    put("h1", "os", MetricValue::String("Linux".into()), "%s", 100);
    put("h2", "load_one", MetricValue::Float(0.25), "%.2f", 100);
    put("h2", "procs", MetricValue::UInt32(5), "%u", 100);
    put("h3", "load_one", MetricValue::Float(9.0), "%.2f", 0);
    store
}

fn ask(path: &str) -> String {
    let answer = answer(&store(), &parse_request(path).unwrap(), at(101));
    String::from_utf8(answer).unwrap()
}

fn hosts(xml: &str) -> Vec<&str> {
    xml.match_indices("<HOST NAME=\"")
        .map(|(i, m)| {
            let rest = &xml[i + m.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

fn metrics(xml: &str) -> usize {
    xml.matches("<METRIC NAME=").count()
}

#[test]
fn paths_cut_the_document_down() {
    let all = ask("/");
    assert!(all.starts_with("<?xml"));
    assert!(all.ends_with("</CLUSTER>\n</GANGLIA_XML>\n"), "{all}");
    assert_eq!(hosts(&all), ["h1", "h2", "h3"]);
    assert_eq!(metrics(&all), 6);
    assert_eq!(ask("/C"), all);
    let host = ask("/C/h2");
    assert_eq!(hosts(&host), ["h2"]);
    assert_eq!(metrics(&host), 2);
    let metric = ask("/C/h1/procs");
    assert_eq!(hosts(&metric), ["h1"]);
    assert_eq!(metrics(&metric), 1);
    assert!(metric.contains("<METRIC NAME=\"procs\" VAL=\"7\" TYPE=\"uint32\""));
    assert!(metric.contains("<EXTRA_ELEMENT NAME=\"TITLE\" VAL=\"T procs\"/>"));
}

/// What is not found shows the node it was looked for in, as gmetad does; in HTTP form
/// it shows nothing, and `*` takes every child.
#[test]
fn missing_elements_and_http_form() {
    assert_eq!(hosts(&ask("/Other")), ["h1", "h2", "h3"]);
    assert_eq!(hosts(&ask("/C/nobody")), ["h1", "h2", "h3"]);
    let host = ask("/C/h1/nothing");
    assert_eq!((hosts(&host), metrics(&host)), (vec!["h1"], 3));
    let http = ask("GET /C/nobody HTTP/1.0");
    assert_eq!((hosts(&http).len(), metrics(&http)), (0, 0));
    assert!(http.contains("<CLUSTER NAME=\"C\""));
    let http = ask("GET /C/h1/nothing HTTP/1.0");
    assert_eq!((hosts(&http), metrics(&http)), (vec!["h1"], 0));
    let wild = ask("GET /C/*/load_one HTTP/1.0");
    assert_eq!((hosts(&wild), metrics(&wild)), (vec!["h1", "h2", "h3"], 3));
    assert_eq!(metrics(&ask("/C/*/load_one")), 6, "`*` is only HTTP's");
}

#[test]
fn summary_sums_numeric_metrics_of_hosts_up() {
    let summary = ask("/C?filter=summary");
    assert_eq!(ask("/?filter=summary"), summary);
    assert_eq!(hosts(&summary).len(), 0);
    assert_eq!(metrics(&summary), 0);
    assert!(
        summary.contains("<HOSTS UP=\"2\" DOWN=\"1\" SOURCE=\"gmetad\"/>\n"),
        "{summary}"
    );
    // Floats keep the first value's digits; integers none; strings are not summed.
    assert!(summary.contains(
        "<METRICS NAME=\"load_one\" SUM=\"1.75\" NUM=\"2\" TYPE=\"double\" UNITS=\"u\" SLOPE=\"both\" SOURCE=\"gmond\">\n<EXTRA_DATA>\n<EXTRA_ELEMENT NAME=\"GROUP\" VAL=\"g\"/>\n<EXTRA_ELEMENT NAME=\"TITLE\" VAL=\"T load_one\"/>\n</EXTRA_DATA>\n</METRICS>\n"
    ), "{summary}");
    assert!(summary.contains("<METRICS NAME=\"procs\" SUM=\"12\" NUM=\"2\""));
    assert!(!summary.contains("NAME=\"os\""));
    assert!(summary.ends_with("</METRICS>\n</CLUSTER>\n</GANGLIA_XML>\n"));
    // Under a host, a summary lists nothing.
    let host = ask("/C/h1?filter=summary");
    assert_eq!((hosts(&host), metrics(&host)), (vec!["h1"], 0));
    assert!(!host.contains("<HOSTS"));
}
