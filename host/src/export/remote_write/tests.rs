use std::collections::BTreeSet;
use std::time::Duration;

use super::*;
use crate::export::prometheus::{Format, render as render_exposition};
use crate::metric::{MetricMeta, MetricValue, Slope};
use crate::store::{HostRef, StoreConfig};

const T0: u64 = 1_700_000_000;

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + seconds)
}

/// A metric to put in the store: (host, name, slope, units, dmax, groups, value).
type Put<'a> = (
    &'a str,
    &'a str,
    Slope,
    &'a str,
    u32,
    &'a [&'a str],
    MetricValue,
);

fn store(puts: &[Put<'_>]) -> Arc<Store> {
    let store = Store::new(StoreConfig::for_tests("Remote \"Cluster\""));
    for (host, name, slope, units, dmax, groups, value) in puts {
        let host = HostRef {
            name: host,
            ip: "10.0.0.1",
        };
        let mut extras = vec![("DESC".to_owned(), format!("about {name}"))];
        extras.extend(groups.iter().map(|g| ("GROUP".to_owned(), (*g).to_owned())));
        let meta = MetricMeta {
            name: (*name).into(),
            value_type: value.value_type(),
            units: (*units).into(),
            slope: *slope,
            tmax: 60,
            dmax: *dmax,
            extras,
        };
        store.update_metadata(host, meta, at(0)).unwrap();
        store
            .update_value(host, name, value.clone(), "%.2f", at(0))
            .unwrap();
    }
    Arc::new(store)
}

fn mixed_store() -> Arc<Store> {
    use MetricValue::*;
    store(&[
        (
            "h1",
            "bytes_out",
            Slope::Positive,
            "bytes",
            0,
            &["net"],
            UInt32(42),
        ),
        (
            "h1",
            "load.one",
            Slope::Both,
            "",
            0,
            &["load", "cpu"],
            Float(0.5),
        ),
        (
            "h1",
            "os_name",
            Slope::Zero,
            "",
            0,
            &[],
            String("Linux \"x\"\\".into()),
        ),
        ("h1", "gone", Slope::Both, "", 5, &["x"], Double(1.0)),
        (
            "h2",
            "bytes_out",
            Slope::Positive,
            "bytes",
            0,
            &["net"],
            UInt32(7),
        ),
        (
            "h2",
            "ticks",
            Slope::Derivative,
            "s",
            0,
            &["x"],
            Double(12.5),
        ),
        // A gauge where h1 has a counter: left out, as in the exposition.
        ("h2", "load.one", Slope::Positive, "", 0, &[], Float(3.0)),
        (
            "h3",
            "temp",
            Slope::Both,
            "celsius",
            0,
            &["env"],
            Float(21.5),
        ),
    ])
}

/// One series as (name and labels sorted, value as Rust prints the f64), comparable
/// across the two forms.
type Series = (Vec<(String, String)>, String);

/// Every sample line of a text-format (0.0.4) exposition, as [`Series`], with the
/// name as `__name__` and empty labels left out, as Prometheus reads a scrape.
fn scraped(text: &str) -> BTreeSet<Series> {
    let mut all = BTreeSet::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (name, rest) = line.split_once('{').expect("labels");
        let mut labels = vec![("__name__".to_owned(), name.to_owned())];
        let mut chars = rest.chars();
        loop {
            let key: std::string::String = chars.by_ref().take_while(|&c| c != '=').collect();
            assert_eq!(chars.next(), Some('"'), "{line}");
            let mut value = std::string::String::new();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some(other) => value.push(other),
                        None => panic!("{line}"),
                    },
                    c => value.push(c),
                }
            }
            if !value.is_empty() {
                labels.push((key, value));
            }
            match chars.next() {
                Some(',') => continue,
                Some('}') => break,
                other => panic!("{other:?} in {line}"),
            }
        }
        labels.sort();
        let value: std::string::String = chars.collect();
        let value: f64 = value.trim().parse().expect("a number");
        all.insert((labels, value.to_string()));
    }
    all
}

fn pushed(request: &WriteRequest) -> BTreeSet<Series> {
    request
        .timeseries
        .iter()
        .map(|series| {
            let labels = series
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            let [sample] = series.samples.as_slice() else {
                panic!("one sample per series: {series:?}");
            };
            (labels, sample.value.to_string())
        })
        .collect()
}

#[test]
fn the_series_are_the_scrapes_samples() {
    let store = mixed_store();
    let now = at(10);
    let exposition = render_exposition(&store, now, Format::Text);
    let (request, dropped) = snapshot(&store, now);
    assert_eq!(dropped, exposition.dropped);
    assert_eq!(dropped, 1, "the conflicting load_one of h2");
    let scraped = scraped(&exposition.text);
    assert_eq!(pushed(&request), scraped, "{}", exposition.text);
    // The fixture covers each kind, a unit, a dropped empty group and the staleness.
    let names: BTreeSet<String> = scraped
        .iter()
        .map(|(labels, _)| labels[0].1.clone())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(
            [
                "bytes_out_bytes_total",
                "load_one",
                "os_name_info",
                "temp_celsius",
                "ticks_seconds_total"
            ]
            .map(str::to_owned)
        )
    );
}

#[test]
fn labels_are_sorted_without_empty_values_and_stamped_in_milliseconds() {
    let (request, _) = snapshot(&mixed_store(), at(10));
    for series in &request.timeseries {
        let names: Vec<&str> = series.labels.iter().map(|l| l.name.as_str()).collect();
        assert!(names.is_sorted(), "{names:?}");
        assert_eq!(names[0], "__name__");
        assert!(series.labels.iter().all(|l| !l.value.is_empty()));
        assert_eq!(series.samples[0].timestamp, (T0 as i64 + 10) * 1000);
    }
    let info = request
        .timeseries
        .iter()
        .find(|s| s.labels[0].value == "os_name_info")
        .unwrap();
    let labels: Vec<(&str, &str)> = info
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("__name__", "os_name_info"),
            ("cluster", "Remote \"Cluster\""),
            ("ganglia_name", "os_name"),
            ("host", "h1"),
            ("value", "Linux \"x\"\\"),
        ]
    );
    assert_eq!(info.samples[0].value, 1.0);
}

#[test]
fn a_batch_is_snappy_compressed_protobuf() {
    let store = mixed_store();
    let batch = render(&store, at(10)).unwrap();
    let (request, _) = snapshot(&store, at(10));
    assert_eq!(batch.samples, request.timeseries.len());
    assert_eq!(decode(&batch.body).unwrap(), request);
    // The block format, not the framed one (whose stream starts with 0xff "sNaPpY").
    assert_ne!(batch.body[0], 0xff);
    assert!(decode(b"not snappy at all").is_err());
    assert_eq!(batch.samples, 6);
    // At 0 the metric whose DMAX is 5 s is still live.
    assert_eq!(render(&store, at(0)).unwrap().samples, 7);
}
