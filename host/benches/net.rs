//! Packets encoded and sent per second by the UDP sender.
//!
//! - `encode`: 10 000 metrics (metadata and value each, 20 000 datagrams) encoded into
//!   the sender's buffer, by a sender without channels (no I/O).
//! - `send/sendmmsg`: the same through [`Sender`], batched with `sendmmsg` and unpaced, to
//!   a loopback socket that a thread drains; `send/send_to` sends the same datagrams
//!   one `send_to` call each, for comparison.
//!
//! - `receive`: the same 20 000 datagrams decoded and applied to a store by the receive
//!   channel's [`Receiver`] (no socket), as they arrive from a peer.
//!
//! Throughput is reported in datagrams per second.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::net::UdpSocket;
use wasmond::metric::{MetricMeta, MetricValue, OutgoingMetric, Slope, ValueType};
use wasmond::net::NetStats;
use wasmond::net::recv::{Receiver, RecvContext};
use wasmond::net::send::{Identity, SendChannel, SendOptions, Sender};
use wasmond::store::{ClusterInfo, Store, StoreConfig};
use wasmond::wire::xdr;

const METRICS: usize = 10_000;

fn metrics() -> Vec<OutgoingMetric> {
    (0..METRICS)
        .map(|i| {
            let name = format!("bench_metric_{i:05}");
            let meta = MetricMeta {
                name: name.clone(),
                value_type: ValueType::Float,
                units: "widgets".into(),
                slope: Slope::Both,
                tmax: 60,
                dmax: 0,
                extras: vec![
                    ("TITLE".into(), format!("Bench {i}")),
                    ("DESC".into(), "a benchmark metric".into()),
                    ("GROUP".into(), "bench".into()),
                ],
            };
            OutgoingMetric {
                metadata: Some(Arc::new(meta)),
                name: name.into(),
                value: MetricValue::Float(i as f32),
                format: "%.3f".into(),
            }
        })
        .collect()
}

/// A loopback socket drained by a thread until dropped, so sends never find it full.
struct Drain {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drain {
    fn start() -> Drain {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !running.load(Ordering::Relaxed) {
                let _ = socket.recv(&mut buf);
            }
        });
        Drain {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn unpaced(identity: Identity) -> SendOptions {
    SendOptions {
        rate: 0,
        ..SendOptions::new(identity, 1464)
    }
}

fn encoded(metrics: &[OutgoingMetric]) -> Vec<Vec<u8>> {
    let header = |name: &str| xdr::Header {
        host: "vm".into(),
        name: name.into(),
        spoof: false,
    };
    let mut datagrams = Vec::with_capacity(2 * metrics.len());
    for metric in metrics {
        let meta = metric.metadata.as_ref().unwrap();
        let metadata = xdr::Message::Metadata(xdr::Metadata {
            header: header(&metric.name),
            value_type: meta.value_type,
            units: meta.units.clone(),
            slope: meta.slope,
            tmax: meta.tmax,
            dmax: meta.dmax,
            extras: meta.extras.clone(),
        });
        let value = xdr::Message::Value(xdr::Value {
            header: header(&metric.name),
            format: metric.format.to_string(),
            value: metric.value.clone(),
        });
        for message in [metadata, value] {
            let mut out = Vec::new();
            xdr::encode(&message, &mut out).unwrap();
            datagrams.push(out);
        }
    }
    datagrams
}

fn bench_send(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics = metrics();
    let drain = Drain::start();

    let mut group = c.benchmark_group("udp");
    group.throughput(Throughput::Elements(2 * METRICS as u64));
    group.sample_size(20);

    let stats = Arc::new(NetStats::default());
    let mut encoder = Sender::new(
        Arc::new([]),
        unpaced(Identity::new("vm", None, None)),
        Arc::clone(&stats),
    );
    group.bench_function("encode", |b| {
        b.iter(|| runtime.block_on(encoder.send(&metrics)));
    });

    let socket = runtime
        .block_on(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    let channel = SendChannel {
        socket: Arc::new(socket),
        destination: drain.addr,
    };
    let mut sender = Sender::new(
        vec![channel].into(),
        unpaced(Identity::new("vm", None, None)),
        Arc::clone(&stats),
    );
    group.bench_function("encode+sendmmsg", |b| {
        b.iter(|| runtime.block_on(sender.send(&metrics)));
    });
    assert_eq!(stats.send_errors.get(), 0);

    let datagrams = encoded(&metrics);
    let plain = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    group.bench_function("send_to_each", |b| {
        b.iter(|| {
            for datagram in &datagrams {
                plain.send_to(datagram, drain.addr).unwrap();
            }
        });
    });

    let store = Arc::new(Store::new(StoreConfig {
        cluster: ClusterInfo {
            name: "bench".into(),
            owner: "o".into(),
            latlong: "l".into(),
            url: "u".into(),
        },
        host_tmax: 20,
        host_dmax: 0,
    }));
    let context = RecvContext {
        store,
        acl: None,
        send_channels: Arc::new([]),
        own_sources: Arc::default(),
        on_metadata_request: Arc::new(|_: &str| {}),
        stats: Arc::clone(&stats),
    };
    let mut receiver = Receiver::new(context);
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 40000));
    group.bench_function("receive", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let now = std::time::SystemTime::now();
                for datagram in &datagrams {
                    receiver.handle(datagram, peer, now).await;
                }
            })
        });
    });
    assert_eq!(stats.packets_malformed.get(), 0);
    group.finish();
}

criterion_group!(benches, bench_send);
criterion_main!(benches);
