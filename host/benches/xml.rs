//! Wire-format and store costs at gmond scale: rendering the XML of 10 000 metrics (goal
//! ≤ 5 ms per document) and, beside it, their Prometheus exposition in both formats (goal:
//! under the XML's) and the first scrape of a store, encoding/decoding 10 000 gmetric
//! value packets, and storing 10 000 values (what the scheduler and the receiver do per
//! cycle).
//!
//! Run: `cargo bench -p wasmond --bench xml`. The `*_cpu` groups measure the thread's CPU
//! time instead of wall time (Linux): on a busy shared machine wall time also counts the
//! waiting for a core.

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use wasmond::export::prometheus::{self, Format};
use wasmond::export::xml;
use wasmond::metric::{MetricMeta, MetricValue, Slope, ValueType};
use wasmond::store::{ClusterInfo, HostRef, Store, StoreConfig};
use wasmond::wire::xdr::{self, Header, Message, Value};

const METRICS: usize = 10_000;
const HOSTS: usize = 10;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_447_254)
}

/// The i-th metric's value and format: the mix of types gmond's own metrics have.
fn sample(i: usize) -> (ValueType, MetricValue, &'static str) {
    match i % 5 {
        0 => (
            ValueType::Float,
            MetricValue::Float(i as f32 * 1.25),
            "%.1f",
        ),
        1 => (
            ValueType::UInt32,
            MetricValue::UInt32(i as u32 * 1000),
            "%u",
        ),
        2 => (
            ValueType::Double,
            MetricValue::Double(i as f64 / 7.0),
            "%.6f",
        ),
        3 => (ValueType::Int32, MetricValue::Int32(-(i as i32)), "%d"),
        _ => (
            ValueType::String,
            MetricValue::String(format!("value {i} <ok>")),
            "%s",
        ),
    }
}

/// A store of `HOSTS` hosts sharing `METRICS` metrics, each with TITLE, DESC and GROUP
/// extras like gmond's core metrics.
fn full_store() -> Store {
    let store = Store::new(StoreConfig {
        cluster: ClusterInfo {
            name: "Bench".into(),
            owner: "wasmond".into(),
            latlong: "unspecified".into(),
            url: "unspecified".into(),
        },
        host_tmax: 20,
        host_dmax: 86400,
    });
    for i in 0..METRICS {
        let host_name = format!("host{:02}.example", i % HOSTS);
        let host = HostRef {
            name: &host_name,
            ip: "10.0.0.1",
        };
        let name = format!("metric_{i:05}");
        let (value_type, value, format) = sample(i);
        let meta = MetricMeta {
            name: name.clone(),
            value_type,
            units: "bytes/sec".into(),
            slope: Slope::Both,
            tmax: 60,
            dmax: 0,
            extras: vec![
                ("TITLE".into(), format!("Metric {i}")),
                (
                    "DESC".into(),
                    "A benchmark metric with a longer description".into(),
                ),
                ("GROUP".into(), format!("group{}", i % 20)),
            ],
        };
        store.update_metadata(host, meta, now()).unwrap();
        store
            .update_value(host, &name, value, format, now())
            .unwrap();
    }
    store
}

fn value_packets() -> Vec<Message> {
    (0..METRICS)
        .map(|i| {
            let (_, value, format) = sample(i);
            Message::Value(Value {
                header: Header {
                    host: "host01.example".into(),
                    name: format!("metric_{i:05}"),
                    spoof: false,
                },
                format: format.into(),
                value,
            })
        })
        .collect()
}

fn xml<M: Measurement>(c: &mut Criterion<M>, group_name: &str) {
    let store = full_store();
    let size = xml::document(&store, now(), 0).len();
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(METRICS as u64));
    group.bench_function(format!("render_{METRICS}_metrics_{size}_bytes"), |b| {
        b.iter(|| black_box(xml::document(&store, black_box(now()), size)))
    });
    let store = std::sync::Arc::new(store);
    for format in [Format::Text, Format::OpenMetrics] {
        let size = prometheus::render(&store, now(), format).text.len();
        let name = format!("prometheus_{format:?}_{METRICS}_metrics_{size}_bytes");
        group.bench_function(name.to_lowercase(), |b| {
            b.iter(|| black_box(prometheus::render(&store, black_box(now()), format)))
        });
    }
    // The first scrape of a store also makes what later ones reuse from the store (each
    // metric's names, labels and HELP); the store is dropped outside the measurement.
    group.bench_function("prometheus_text_first_scrape", |b| {
        b.iter_batched(
            || std::sync::Arc::new(full_store()),
            |store| {
                let exposition = prometheus::render(&store, now(), Format::Text);
                (store, exposition)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn xml_wall(c: &mut Criterion) {
    xml(c, "xml");
}

fn xml_cpu(c: &mut Criterion<ThreadCpuTime>) {
    xml(c, "xml_cpu");
}

fn xdr(c: &mut Criterion) {
    let messages = value_packets();
    let mut group = c.benchmark_group("xdr");
    group.throughput(Throughput::Elements(METRICS as u64));
    let mut datagram = Vec::with_capacity(xdr::MAX_UDP_MSG_LEN);
    group.bench_function(format!("encode_{METRICS}_value_packets"), |b| {
        b.iter(|| {
            for message in &messages {
                datagram.clear();
                xdr::encode(black_box(message), &mut datagram).unwrap();
                black_box(&datagram);
            }
        })
    });
    let datagrams: Vec<Vec<u8>> = messages
        .iter()
        .map(|message| {
            let mut datagram = Vec::new();
            xdr::encode(message, &mut datagram).unwrap();
            datagram
        })
        .collect();
    group.bench_function(format!("decode_{METRICS}_value_packets"), |b| {
        b.iter(|| {
            for datagram in &datagrams {
                black_box(xdr::decode(black_box(datagram)).unwrap());
            }
        })
    });
    group.finish();
}

fn store(c: &mut Criterion) {
    let store = full_store();
    let host_names: Vec<String> = (0..HOSTS).map(|h| format!("host{h:02}.example")).collect();
    let names: Vec<String> = (0..METRICS).map(|i| format!("metric_{i:05}")).collect();
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(METRICS as u64));
    group.bench_function(format!("update_{METRICS}_values"), |b| {
        b.iter(|| {
            for (i, name) in names.iter().enumerate() {
                let host = HostRef {
                    name: &host_names[i % HOSTS],
                    ip: "10.0.0.1",
                };
                let value = MetricValue::UInt32(i as u32);
                black_box(store.update_value(host, name, value, "%u", now()).unwrap());
            }
        })
    });
    group.finish();
}

/// CPU time of the benchmarking thread, from `/proc/thread-self/schedstat` (ns).
struct ThreadCpuTime;

fn thread_cpu_nanos() -> u64 {
    let schedstat =
        std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux schedstat");
    schedstat
        .split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .expect("schedstat: CPU ns first")
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_nanos()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_nanos().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, nanos: &u64) -> f64 {
        *nanos as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, like wall time.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

criterion_group!(benches, xml_wall, xdr, store);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = xml_cpu
}
criterion_main!(benches, cpu_benches);
