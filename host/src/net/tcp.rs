//! The `tcp_accept_channel`: serves the cluster's XML document to every client that
//! connects, as gmond does (no request is read; the document is written, then the
//! connection is closed).
//!
//! Accepting (a cap on clients at once, the acl, a task per client, the shutdown) is
//! [`listener`]'s, as for the daemon's other listeners.
//!
//! One rendered document is shared by every client of the same moment ([`Documents`]):
//! it is rendered from the store (on a blocking thread: 10 000 metrics take
//! milliseconds) at most once per store change and second, and handed out as `Bytes`,
//! so a burst of clients costs one document, not one each. A client is then written to
//! under two bounds: the write timeout for the whole document, and [`STALL_TIMEOUT`]
//! without any progress, so a client that never reads cannot hold its slot for long.
//! A client cut off is closed abortively (a reset, `SO_LINGER` 0), which frees what the
//! kernel still had queued for it at once. gmond has no such timeout (its `timeout`
//! option defaults to none) and one stalled reader stops it entirely.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::listener::{self, Admission};
use super::stats::NetStats;
use crate::config::{Acl, TcpAcceptChannel};
use crate::export::xml;
use crate::store::Store;

/// How long one client may take to read its document, when the config sets no
/// `timeout`: generous for gmetad over a WAN, short enough that stalled clients do not
/// pile up.
pub(crate) const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a client may go without taking a single byte (capped by the write
/// timeout). A reader over a slow link still makes progress with every ACK; one that
/// does not read at all is cut off after this, freeing its slot.
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Clients served at once; past it, new connections wait in the kernel's backlog.
/// They share one rendered document; each costs a task and its socket buffers.
pub(crate) const DEFAULT_MAX_CLIENTS: usize = 64;

/// The kernel send buffer of one client socket. Fixed rather than autotuned (which grows
/// to `tcp_wmem`'s maximum, 4 MB by default), so clients that do not read hold at most
/// this much kernel memory each; 1 MB still fills a 100 ms WAN path at 10 MB/s.
pub(crate) const CLIENT_SEND_BUFFER: usize = 1 << 20;

/// How the XML server treats its clients.
#[derive(Debug, Clone)]
pub struct XmlServerOptions {
    pub acl: Option<Acl>,
    pub write_timeout: Duration,
    pub max_clients: usize,
}

impl XmlServerOptions {
    /// The options a `tcp_accept_channel` block asks for (its `timeout` is in µs).
    pub(crate) fn from_channel(channel: &TcpAcceptChannel) -> Self {
        let write_timeout = channel
            .timeout_us
            .filter(|&us| us > 0)
            .map_or(DEFAULT_WRITE_TIMEOUT, Duration::from_micros);
        XmlServerOptions {
            acl: channel.acl.clone(),
            write_timeout,
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

impl Default for XmlServerOptions {
    fn default() -> Self {
        XmlServerOptions {
            acl: None,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

/// Serves `store`'s XML on `listener` until `shutdown` completes, then waits for the
/// clients in flight (each bounded by the write timeout).
pub async fn run(
    listener: TcpListener,
    store: Arc<Store>,
    options: XmlServerOptions,
    stats: Arc<NetStats>,
    shutdown: impl Future<Output = ()>,
) {
    let documents = Arc::new(Documents::new(store));
    let denied = || stats.xml_denied.incr();
    let admission = Admission {
        channel: "tcp_accept_channel",
        max_clients: options.max_clients,
        acl: options.acl.as_ref(),
        on_denied: &denied,
    };
    let timeout = options.write_timeout;
    listener::serve_until(listener, admission, shutdown, |stream, peer| {
        let documents = Arc::clone(&documents);
        let stats = Arc::clone(&stats);
        async move { serve_client(stream, peer, &documents, timeout, &stats).await }
    })
    .await;
}

/// The last rendered document, shared by the clients that come while it is current.
pub(crate) struct Documents {
    store: Arc<Store>,
    /// Held across a render, so clients arriving meanwhile wait for that one render
    /// instead of starting their own.
    last: tokio::sync::Mutex<Option<Rendered>>,
}

struct Rendered {
    generation: u64,
    /// The Unix second it was rendered in: LOCALTIME and every TN count in seconds.
    second: u64,
    document: Bytes,
}

impl Documents {
    pub fn new(store: Arc<Store>) -> Documents {
        Documents {
            store,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The document as of now: the last one if the store has not changed since within
    /// the same second, else a new rendering.
    pub async fn current(&self, stats: &NetStats) -> Result<Bytes, tokio::task::JoinError> {
        let mut last = self.last.lock().await;
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let generation = self.store.generation();
        if let Some(rendered) = &*last
            && rendered.generation == generation
            && rendered.second == second
        {
            return Ok(rendered.document.clone());
        }
        // The old document goes before the new one is built: a burst of clients keeps
        // at most the documents they are still writing, plus one. Its size is the new
        // one's first guess, so the buffer is allocated once.
        let capacity = last.take().map_or(0, |old| old.document.len()) + 4096;
        let store = Arc::clone(&self.store);
        let document =
            tokio::task::spawn_blocking(move || xml::document(&store, now, capacity)).await?;
        stats.xml_rendered.incr();
        let document = Bytes::from(document);
        *last = Some(Rendered {
            generation,
            second,
            document: document.clone(),
        });
        Ok(document)
    }
}

/// Writes the current document to one client, then closes the connection.
async fn serve_client(
    mut stream: TcpStream,
    peer: SocketAddr,
    documents: &Documents,
    timeout: Duration,
    stats: &NetStats,
) {
    if let Err(error) = socket2::SockRef::from(&stream).set_send_buffer_size(CLIENT_SEND_BUFFER) {
        tracing::debug!(%peer, %error, "tcp_accept_channel: cannot size the send buffer");
    }
    let document = match documents.current(stats).await {
        Ok(document) => document,
        Err(error) => {
            stats.xml_failed.incr();
            tracing::error!(%peer, %error, "tcp_accept_channel: rendering the XML failed");
            return;
        }
    };
    let deadline = Instant::now() + timeout;
    match write_document(&mut stream, &document, deadline, STALL_TIMEOUT.min(timeout)).await {
        Ok(()) => {
            stats.xml_served.incr();
            discard_unread(&stream);
        }
        Err(error) if error.kind() == io::ErrorKind::TimedOut => {
            stats.xml_failed.incr();
            tracing::info!(%peer, %error, "tcp_accept_channel: client too slow, reset");
            // A reset frees the document still queued in the kernel for this client at
            // once; a graceful close would keep it until the client reads or goes away.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
        Err(error) => {
            stats.xml_failed.incr();
            tracing::debug!(%peer, %error, "tcp_accept_channel: client went away");
        }
    }
}

/// Writes `document` and shuts the sending side down, by `deadline` and never going
/// `stall` without progress; either bound gives a `TimedOut` error.
async fn write_document(
    stream: &mut TcpStream,
    document: &[u8],
    deadline: Instant,
    stall: Duration,
) -> io::Result<()> {
    let limit = || {
        deadline
            .saturating_duration_since(Instant::now())
            .min(stall)
    };
    let mut rest = document;
    while !rest.is_empty() {
        let written = tokio::time::timeout(limit(), stream.write(rest))
            .await
            .map_err(|_| too_slow(deadline, stall))??;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        rest = &rest[written..];
    }
    tokio::time::timeout(limit(), stream.shutdown())
        .await
        .map_err(|_| too_slow(deadline, stall))?
}

fn too_slow(deadline: Instant, stall: Duration) -> io::Error {
    let message = if Instant::now() >= deadline {
        "the write timeout passed".to_string()
    } else {
        format!("no progress for {stall:?}")
    };
    io::Error::new(io::ErrorKind::TimedOut, message)
}

/// Reads and drops whatever the client sent (gmetad sends nothing, `nc` may send a
/// line): closing a socket with unread input makes the kernel answer with a reset,
/// which can destroy the end of the document before the client has read it.
fn discard_unread(stream: &TcpStream) {
    let mut sink = [0u8; 1024];
    while matches!(stream.try_read(&mut sink), Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::io::AsyncReadExt;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config::{AclAccess, AclAction, Location};
    use crate::metric::{MetricMeta, MetricValue, Slope, ValueType};
    use crate::store::{HostRef, StoreConfig};

    fn store_with(metrics: usize) -> Arc<Store> {
        let store = Store::new(StoreConfig::for_tests("NetCluster"));
        let host = HostRef {
            name: "h1",
            ip: "10.0.0.1",
        };
        let now = SystemTime::now();
        for i in 0..metrics {
            let name = format!("metric_{i:05}");
            let meta = MetricMeta {
                name: name.clone(),
                value_type: ValueType::UInt32,
                units: "u".into(),
                slope: Slope::Both,
                tmax: 60,
                dmax: 0,
                extras: vec![("GROUP".into(), "g".into())],
            };
            store.update_metadata(host, meta, now).unwrap();
            store
                .update_value(host, &name, MetricValue::UInt32(i as u32), "%u", now)
                .unwrap();
        }
        Arc::new(store)
    }

    struct Server {
        addr: SocketAddr,
        stats: Arc<NetStats>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(store: Arc<Store>, options: XmlServerOptions) -> Server {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(NetStats::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            listener,
            store,
            options,
            Arc::clone(&stats),
            stop.clone().cancelled_owned(),
        ));
        Server {
            addr,
            stats,
            stop,
            task,
        }
    }

    async fn fetch(addr: SocketAddr) -> Vec<u8> {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut document = Vec::new();
        stream.read_to_end(&mut document).await.unwrap();
        document
    }

    #[tokio::test]
    async fn a_client_gets_the_whole_document_then_eof() {
        let server = start(store_with(3), XmlServerOptions::default()).await;
        let document = String::from_utf8(fetch(server.addr).await).unwrap();
        assert!(document.starts_with("<?xml version=\"1.0\" encoding=\"ISO-8859-1\""));
        assert!(document.contains("<CLUSTER NAME=\"NetCluster\""));
        assert!(document.contains("<METRIC NAME=\"metric_00002\" VAL=\"2\""));
        assert!(document.trim_end().ends_with("</GANGLIA_XML>"));
        server.stop.cancel();
        server.task.await.unwrap();
        assert_eq!(server.stats.xml_served.get(), 1);
    }

    #[tokio::test]
    async fn a_denied_client_gets_nothing() {
        let acl = Acl {
            default: AclAction::Allow,
            access: vec![AclAccess {
                ip: "127.0.0.1".parse().unwrap(),
                mask: 32,
                action: AclAction::Deny,
                declared_at: Location::whole_file("test.conf"),
            }],
        };
        let options = XmlServerOptions {
            acl: Some(acl),
            ..XmlServerOptions::default()
        };
        let server = start(store_with(1), options).await;
        assert!(fetch(server.addr).await.is_empty());
        assert_eq!(server.stats.xml_denied.get(), 1);
        assert_eq!(server.stats.xml_served.get(), 0);
    }

    /// A client that never reads a document larger than the socket buffers is cut off
    /// at the write timeout, and meanwhile others are served at once.
    #[tokio::test]
    async fn a_stalled_client_never_delays_the_others() {
        let options = XmlServerOptions {
            write_timeout: Duration::from_millis(1500),
            max_clients: 4,
            ..XmlServerOptions::default()
        };
        // The document must outgrow the kernel's send buffer, which autotunes up to
        // tcp_wmem's maximum: about 180 bytes per metric, so one metric per 100 bytes.
        let wmem_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
            .ok()
            .and_then(|text| text.split_whitespace().last()?.parse::<usize>().ok())
            .unwrap_or(4 << 20);
        let server = start(store_with(wmem_max / 100), options).await;
        let stalled = tokio::net::TcpSocket::new_v4().unwrap();
        stalled.set_recv_buffer_size(4096).unwrap();
        let stalled = stalled.connect(server.addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let document = fetch(server.addr).await;
            assert!(document.len() > wmem_max, "{} bytes", document.len());
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{:?}",
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            server.stats.xml_failed.get(),
            1,
            "the stalled client was cut off"
        );
        drop(stalled);
        server.stop.cancel();
        server.task.await.unwrap();
    }

    /// Issue 12: as many never-reading clients as there are slots, against a document of
    /// several MB. They are reset once they stall, and a client that reads is served
    /// well within its own timeout (gmetad's is 10 s; here 5 s, half the write timeout
    /// that used to hold the slots). Every client of the burst shares one rendering.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_reading_clients_cannot_keep_a_reader_from_the_document() {
        let server = start(store_with(40_000), XmlServerOptions::default()).await;
        let mut stalled = Vec::new();
        for _ in 0..DEFAULT_MAX_CLIENTS {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            stalled.push(socket.connect(server.addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = std::time::Instant::now();
        let document = tokio::time::timeout(Duration::from_secs(5), fetch(server.addr))
            .await
            .expect("a reading client is served within 5 s");
        println!(
            "served {} bytes after {:?}",
            document.len(),
            started.elapsed()
        );
        assert!(document.len() > 5 << 20, "{} bytes", document.len());
        assert!(document.ends_with(b"</GANGLIA_XML>\n"));
        // Reading now would be progress: first let every stalled client reach its bound.
        tokio::time::sleep(STALL_TIMEOUT + Duration::from_secs(1)).await;
        for mut client in stalled {
            let mut unread = Vec::new();
            let end = client.read_to_end(&mut unread).await;
            assert!(
                matches!(&end, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
                "a stalled client is reset, not closed gracefully: {end:?} after {} bytes",
                unread.len()
            );
        }
        assert_eq!(server.stats.xml_failed.get(), DEFAULT_MAX_CLIENTS as u64);
        assert!(
            server.stats.xml_rendered.get() <= 3,
            "{} renderings for {} clients",
            server.stats.xml_rendered.get(),
            DEFAULT_MAX_CLIENTS + 1
        );
        server.stop.cancel();
        server.task.await.unwrap();
    }

    /// More clients at once than the cap: the extra ones wait in the backlog, and every
    /// one gets the whole document.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_clients_each_get_the_whole_document() {
        let options = XmlServerOptions {
            max_clients: 4,
            ..XmlServerOptions::default()
        };
        let server = start(store_with(500), options).await;
        let expected = fetch(server.addr).await;
        let clients: Vec<_> = (0..40).map(|_| tokio::spawn(fetch(server.addr))).collect();
        for client in clients {
            let document = client.await.unwrap();
            // LOCALTIME and TN may tick between documents; the length may not change.
            assert_eq!(document.len(), expected.len());
            assert!(document.ends_with(b"</GANGLIA_XML>\n"));
        }
        // The server counts a client after its last write, which may be just after the
        // client saw the end of the document.
        server.stop.cancel();
        server.task.await.unwrap();
        assert_eq!(server.stats.xml_served.get(), 41);
    }

    #[tokio::test]
    async fn shutdown_stops_accepting() {
        let server = start(store_with(1), XmlServerOptions::default()).await;
        server.stop.cancel();
        server.task.await.unwrap();
        assert!(TcpStream::connect(server.addr).await.is_err());
    }
}
