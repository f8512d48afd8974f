//! The sender against a scripted HTTP receiver on loopback: what it sends, what it
//! retries, what it drops. Real time with short intervals (the sockets are real).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::export::remote_write::decode;
use crate::metric::{MetricMeta, MetricValue, Slope, ValueType};
use crate::store::{HostRef, StoreConfig};

fn store() -> Arc<Store> {
    let store = Store::new(StoreConfig::for_tests("C"));
    let host = HostRef {
        name: "h1",
        ip: "10.0.0.1",
    };
    let meta = MetricMeta {
        name: "load_one".into(),
        value_type: ValueType::Float,
        units: String::new(),
        slope: Slope::Both,
        tmax: 60,
        dmax: 0,
        extras: vec![("GROUP".into(), "load".into())],
    };
    let now = SystemTime::now();
    store.update_metadata(host, meta, now).unwrap();
    store
        .update_value(host, "load_one", MetricValue::Float(0.25), "%.2f", now)
        .unwrap();
    Arc::new(store)
}

/// One request as the receiver read it.
#[derive(Debug, Clone)]
struct Received {
    head: String,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    fn timestamp(&self) -> i64 {
        decode(&self.body).unwrap().timeseries[0].samples[0].timestamp
    }
}

/// A keep-alive HTTP/1.1 receiver answering each request with the next of `statuses`
/// (200 once they run out), recording what it read.
async fn receiver(listener: TcpListener, statuses: Vec<u16>) -> Arc<Mutex<Vec<Received>>> {
    let received = Arc::new(Mutex::new(Vec::new()));
    let statuses = Arc::new(Mutex::new(VecDeque::from(statuses)));
    let log = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let (log, statuses) = (Arc::clone(&log), Arc::clone(&statuses));
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                loop {
                    let Some(end) = find(&buffer, b"\r\n\r\n") else {
                        let mut chunk = [0; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                    let request = Received {
                        head,
                        body: Vec::new(),
                    };
                    let length: usize = request
                        .header("content-length")
                        .map_or(0, |v| v.parse().unwrap());
                    while buffer.len() < end + 4 + length {
                        let mut chunk = [0; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = buffer[end + 4..end + 4 + length].to_vec();
                    buffer.drain(..end + 4 + length);
                    log.lock().unwrap().push(Received { body, ..request });
                    let status = statuses.lock().unwrap().pop_front().unwrap_or(200);
                    let text = format!("status {status}\n");
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    received
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn options(addr: SocketAddr, interval_ms: u64, queue: usize) -> RemoteWriteOptions {
    RemoteWriteOptions {
        target: Target::parse(&format!("http://{addr}/api/v1/write")).unwrap(),
        interval: Duration::from_millis(interval_ms),
        queue,
    }
}

struct Sender {
    stats: Arc<NetStats>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(options: RemoteWriteOptions) -> Sender {
    let stats = Arc::new(NetStats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(options, store(), Arc::clone(&stats), stop.clone()));
    Sender { stats, stop, task }
}

impl Sender {
    async fn stop(self) -> Arc<NetStats> {
        self.stop.cancel();
        self.task.await.unwrap();
        self.stats
    }
}

/// Waits (up to 10 s) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "waited 10 s for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

#[tokio::test]
async fn snapshots_are_posted_as_remote_write_requests() {
    let (listener, addr) = listener().await;
    let received = receiver(listener, Vec::new()).await;
    let sender = start(options(addr, 50, 4));
    until("two requests", || received.lock().unwrap().len() >= 2).await;
    let stats = sender.stop().await;
    let requests = received.lock().unwrap().clone();
    let first = &requests[0];
    assert!(
        first.head.starts_with("POST /api/v1/write HTTP/1.1\r\n"),
        "{first:?}"
    );
    assert_eq!(first.header("host"), Some(addr.to_string().as_str()));
    assert_eq!(first.header("content-encoding"), Some("snappy"));
    assert_eq!(first.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(
        first.header("x-prometheus-remote-write-version"),
        Some("0.1.0")
    );
    let request = decode(&first.body).unwrap();
    let labels: Vec<(&str, &str)> = request.timeseries[0]
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("__name__", "load_one"),
            ("cluster", "C"),
            ("ganglia_name", "load_one"),
            ("group", "load"),
            ("host", "h1"),
        ]
    );
    assert_eq!(request.timeseries[0].samples[0].value, 0.25);
    assert!(requests[1].timestamp() > first.timestamp());
    assert!(stats.remote_write_samples.get() >= 2);
    assert_eq!(stats.remote_write_retries.get(), 0);
    assert_eq!(stats.remote_write_queue.get(), 0, "emptied at shutdown");
}

#[tokio::test]
async fn server_errors_are_retried_and_refusals_dropped() {
    let (listener, addr) = listener().await;
    let received = receiver(listener, vec![503, 429, 500, 400]).await;
    let sender = start(options(addr, 100, 16));
    until("five requests", || received.lock().unwrap().len() >= 5).await;
    let stats = sender.stop().await;
    let requests = received.lock().unwrap().clone();
    // The first request, tried four times: refused the fourth, it is not tried again.
    for retry in &requests[1..4] {
        assert_eq!(retry.body, requests[0].body);
    }
    assert!(requests[4].timestamp() > requests[0].timestamp());
    assert_eq!(stats.remote_write_retries.get(), 3);
    assert_eq!(stats.remote_write_refused.get(), 1);
    assert_eq!(stats.remote_write_dropped.get(), 0);
    assert!(stats.remote_write_samples.get() >= 1);
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_and_the_rest_arrive_in_order() {
    let (listener, addr) = listener().await;
    drop(listener); // Nobody listens there for now: connections are refused.
    let started = SystemTime::now();
    let sender = start(options(addr, 20, 3));
    let stats = Arc::clone(&sender.stats);
    until("requests dropped", || stats.remote_write_dropped.get() >= 3).await;
    assert_eq!(stats.remote_write_queue.get(), 3, "bounded");
    assert!(stats.remote_write_retries.get() >= 1);
    assert_eq!(stats.remote_write_samples.get(), 0);

    let listener = TcpListener::bind(addr).await.unwrap();
    let received = receiver(listener, Vec::new()).await;
    until("the queue delivered", || {
        received.lock().unwrap().len() >= 5
    })
    .await;
    let stats = sender.stop().await;
    let stamps: Vec<i64> = received
        .lock()
        .unwrap()
        .iter()
        .map(Received::timestamp)
        .collect();
    assert!(stamps.is_sorted_by(|a, b| a < b), "{stamps:?}");
    let first_snapshot = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        stamps[0] >= first_snapshot + 20,
        "the first snapshot was dropped: {stamps:?} after {first_snapshot}"
    );
    assert!(stats.remote_write_samples.get() >= 5);
}

#[test]
fn targets_keep_their_path_and_default_to_port_80() {
    let target = Target::parse("http://[::1]:9201/receive?tenant=a").unwrap();
    assert_eq!((target.host.as_str(), target.port), ("::1", 9201));
    assert_eq!(target.authority, "[::1]:9201");
    assert_eq!(target.path, "/receive?tenant=a");
    let target = Target::parse("http://mimir").unwrap();
    assert_eq!((target.host.as_str(), target.port), ("mimir", 80));
    assert_eq!(target.path, "/");
    assert!(Target::parse("https://mimir/api/v1/push").is_err());
}
