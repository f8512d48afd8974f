//! The `tcp_accept_channel`: serves the cluster's XML document to every client that
//! connects, as gmond does (no request is read; the document is written, then the
//! connection is closed).
//!
//! Shaped like mini-redis's server: [`run`] races the accept loop against a shutdown
//! future, caps concurrent clients with a semaphore, and gives each client its own task.
//! A client's document is rendered from the store into a buffer first (on a blocking
//! thread: 10 000 metrics take milliseconds), and only then written, under a write
//! timeout. So a slow or stalled reader holds nothing but its own task and buffer: never
//! the store's lock, the collection, or the other clients. gmond has no such timeout
//! (its `timeout` option defaults to none) and one stalled reader stops it entirely.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::acl;
use super::stats::NetStats;
use crate::config::{Acl, TcpAcceptChannel};
use crate::store::Store;

/// How long one client may take to read its document, when the config sets no
/// `timeout`: generous for gmetad over a WAN, short enough that stalled clients do not
/// pile up.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Clients served at once; past it, new connections wait in the kernel's backlog.
/// Each holds one rendered document (about 300 bytes per metric).
pub const DEFAULT_MAX_CLIENTS: usize = 64;

/// Pause after a failed `accept` (e.g. out of file descriptors) before the next one, so
/// the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How the XML server treats its clients.
#[derive(Debug, Clone)]
pub struct XmlServerOptions {
    pub acl: Option<Acl>,
    pub write_timeout: Duration,
    pub max_clients: usize,
}

impl XmlServerOptions {
    /// The options a `tcp_accept_channel` block asks for (its `timeout` is in µs).
    pub fn from_channel(channel: &TcpAcceptChannel) -> Self {
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
    let clients = TaskTracker::new();
    tokio::select! {
        () = accept_loop(&listener, &store, &options, &stats, &clients) => {}
        () = shutdown => {}
    }
    drop(listener);
    clients.close();
    clients.wait().await;
}

async fn accept_loop(
    listener: &TcpListener,
    store: &Arc<Store>,
    options: &XmlServerOptions,
    stats: &Arc<NetStats>,
    clients: &TaskTracker,
) {
    let limit = Arc::new(Semaphore::new(options.max_clients.max(1)));
    loop {
        // Wait for a free slot before accepting, so excess clients queue in the backlog
        // instead of holding a task and a document each.
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            return; // The semaphore is never closed; nothing to serve if it were.
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "tcp_accept_channel: accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        if !acl::allows(options.acl.as_ref(), peer.ip()) {
            stats.xml_denied.incr();
            tracing::debug!(%peer, "tcp_accept_channel: client denied by acl");
            continue;
        }
        let store = Arc::clone(store);
        let stats = Arc::clone(stats);
        let timeout = options.write_timeout;
        clients.spawn(async move {
            serve_client(stream, peer, store, timeout, &stats).await;
            drop(permit);
        });
    }
}

/// Renders the document and writes it to one client, then closes the connection.
async fn serve_client(
    mut stream: TcpStream,
    peer: SocketAddr,
    store: Arc<Store>,
    timeout: Duration,
    stats: &NetStats,
) {
    let document =
        match tokio::task::spawn_blocking(move || store.render_xml(SystemTime::now())).await {
            Ok(document) => document,
            Err(error) => {
                stats.xml_failed.incr();
                tracing::error!(%peer, %error, "tcp_accept_channel: rendering the XML failed");
                return;
            }
        };
    let written = tokio::time::timeout(timeout, async {
        stream.write_all(&document).await?;
        stream.shutdown().await
    })
    .await;
    match written {
        Ok(Ok(())) => stats.xml_served.incr(),
        Ok(Err(error)) => {
            stats.xml_failed.incr();
            tracing::debug!(%peer, %error, "tcp_accept_channel: client went away");
        }
        Err(_) => {
            stats.xml_failed.incr();
            tracing::info!(%peer, ?timeout, "tcp_accept_channel: client too slow, dropped");
        }
    }
    discard_unread(&stream);
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
    use crate::metric::{MetricValue, Slope, ValueType};
    use crate::store::{ClusterInfo, HostRef, MetricMeta, StoreConfig};

    fn store_with(metrics: usize) -> Arc<Store> {
        let store = Store::new(StoreConfig {
            cluster: ClusterInfo {
                name: "NetCluster".into(),
                owner: "o".into(),
                latlong: "l".into(),
                url: "u".into(),
            },
            host_tmax: 20,
            host_dmax: 0,
        });
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
