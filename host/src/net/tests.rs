//! The net layer end to end on loopback: the sender's datagrams through a receive channel
//! into a store, and a whole configuration started as a [`Network`].

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::recv::{self, RecvContext};
use super::send::{self, Identity, SendChannel, SendOptions};
use super::*;
use crate::metric::{MetricMeta, MetricValue, OutgoingMetric, SendRequest, Slope, ValueType};
use crate::store::{Store, StoreConfig};

fn store_config() -> StoreConfig {
    StoreConfig::for_tests("Loop")
}

fn store() -> Arc<Store> {
    Arc::new(Store::new(store_config()))
}

/// `count` metrics with their metadata, as the scheduler hands them over at start.
pub(crate) fn first_send(count: usize) -> Vec<OutgoingMetric> {
    (0..count)
        .map(|i| {
            let name = format!("loop_metric_{i:05}");
            let meta = MetricMeta {
                name: name.clone(),
                value_type: ValueType::Double,
                units: "widgets".into(),
                slope: Slope::Both,
                tmax: 60,
                dmax: 0,
                extras: vec![
                    ("TITLE".into(), format!("Loop {i}")),
                    ("DESC".into(), "a loopback metric".into()),
                    ("GROUP".into(), "loop".into()),
                ],
            };
            OutgoingMetric {
                metadata: Some(Arc::new(meta)),
                name: name.into(),
                value: MetricValue::Double(i as f64),
                format: "%.1f".into(),
            }
        })
        .collect()
}

/// 10 000 metrics (20 000 datagrams) sent in one go to a receive channel opened as the
/// daemon opens it (a large receive buffer): every one arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_metrics_to_ourselves_lose_none() {
    const METRICS: usize = 10_000;
    let store = store();
    let stats = Arc::new(NetStats::default());
    let receive_socket = socket::bind_udp_recv(&recv_channel_on_loopback()).unwrap();
    let destination = receive_socket.local_addr().unwrap();
    let stop = CancellationToken::new();
    let context = RecvContext {
        store: Arc::clone(&store),
        acl: None,
        send_channels: Arc::new([]),
        own_sources: Arc::new(HashSet::new()),
        on_metadata_request: Arc::new(|_: &str| {}),
        stats: Arc::clone(&stats),
    };
    let receiver = tokio::spawn(recv::run(
        receive_socket,
        context,
        stop.clone().cancelled_owned(),
    ));

    let send_socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let channels: Arc<[SendChannel]> = vec![SendChannel {
        socket: Arc::new(send_socket),
        destination,
    }]
    .into();
    let options = SendOptions::new(Identity::new("vm", None, None), 1464);
    let (sink, requests) = mpsc::channel(4);
    let sender = tokio::spawn(send::run(channels, options, requests, Arc::clone(&stats)));
    sink.send(SendRequest {
        metrics: first_send(METRICS),
    })
    .await
    .unwrap();
    drop(sink);
    sender.await.unwrap();
    assert_eq!(stats.packets_sent.get(), 2 * METRICS as u64);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.packets_received.get() < 2 * METRICS as u64
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    receiver.await.unwrap();
    assert_eq!(
        stats.packets_received.get(),
        2 * METRICS as u64,
        "datagrams lost"
    );
    let host = store.host("localhost").unwrap();
    assert_eq!(host.metrics.len(), METRICS);
    assert!(
        host.metrics
            .iter()
            .all(|metric| metric.meta.is_some() && metric.sample.is_some())
    );
}

fn recv_channel_on_loopback() -> crate::config::UdpRecvChannel {
    crate::config::UdpRecvChannel {
        port: 0,
        bind: Some("127.0.0.1".into()),
        mcast_join: None,
        mcast_if: None,
        family: crate::config::Family::Inet4,
        retry_bind: false,
        buffer: None,
        acl: None,
        declared_at: crate::config::Location::whole_file("test.conf"),
    }
}

/// A multicast send channel (ttl 1, through the loopback interface) reaches a receive
/// channel that joined the group on the same interface, as gmond's default
/// `mcast_join = 239.2.11.71` layout does between hosts.
#[tokio::test]
async fn multicast_reaches_a_joined_receive_channel() {
    let mut recv_channel = recv_channel_on_loopback();
    recv_channel.bind = None;
    recv_channel.mcast_join = Some("239.2.11.71".into());
    recv_channel.mcast_if = Some("lo".into());
    recv_channel.port = {
        let probe = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        probe.local_addr().unwrap().port()
    };
    let receiver = socket::bind_udp_recv(&recv_channel).unwrap();
    let send_channel = crate::config::UdpSendChannel {
        host: None,
        mcast_join: Some("239.2.11.71".into()),
        mcast_if: Some("127.0.0.1".into()),
        port: recv_channel.port,
        ttl: 1,
        bind: None,
        bind_hostname: false,
        declared_at: crate::config::Location::whole_file("test.conf"),
    };
    let channel = SendChannel::open(&send_channel).await.unwrap();
    assert!(channel.destination.ip().is_multicast());
    channel
        .socket
        .send_to(b"hello group", channel.destination)
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let (len, _) = tokio::time::timeout(Duration::from_secs(2), receiver.recv_from(&mut buf))
        .await
        .expect("the datagram arrives")
        .unwrap();
    assert_eq!(&buf[..len], b"hello group");
}

fn write_config(text: &str) -> (std::path::PathBuf, crate::config::Config) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wasmond-net-{}-{unique}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gmond.conf");
    std::fs::write(&path, text).unwrap();
    let loaded = crate::config::load(&path).unwrap_or_else(|errors| panic!("{errors}"));
    (dir, loaded.config)
}

/// A whole configuration: XML served on its port, a gmetric-style datagram received
/// into the store, values sent to a peer but not to our own receive channel (the
/// scheduler stores them directly), and shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_starts_serves_and_stops() {
    let port = {
        let probe = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        probe.local_addr().unwrap().port()
    };
    let listener = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let listener_port = listener.local_addr().unwrap().port();
    let (dir, config) = write_config(&format!(
        "globals {{\n  send_metadata_interval = 30\n}}\n\
         udp_send_channel {{\n  host = 127.0.0.1\n  port = {port}\n}}\n\
         udp_send_channel {{\n  host = 127.0.0.1\n  port = {listener_port}\n}}\n\
         udp_recv_channel {{\n  port = {port}\n  bind = 127.0.0.1\n}}\n\
         tcp_accept_channel {{\n  port = 0\n  bind = 127.0.0.1\n}}\n"
    ));
    let store = store();
    let shutdown = CancellationToken::new();
    let mut network = Network::start(
        &config,
        NetworkSetup {
            hostname: "vm".into(),
            store: Arc::clone(&store),
            shutdown: shutdown.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        network.udp_addrs,
        [SocketAddr::from((Ipv4Addr::LOCALHOST, port))]
    );

    // Our values go to the listener only: the channel aimed at ourselves is not used.
    let sink = network.take_sink().unwrap();
    sink.send(SendRequest {
        metrics: first_send(3),
    })
    .await
    .unwrap();
    let mut buf = [0u8; 2048];
    for _ in 0..6 {
        tokio::time::timeout(Duration::from_secs(2), listener.recv_from(&mut buf))
            .await
            .expect("the listener gets metadata and value of each metric")
            .unwrap();
    }
    // A peer's value without metadata: we ask our send channels for it (the listener's).
    let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let mut packet = Vec::new();
    crate::wire::xdr::encode(
        &crate::wire::xdr::Message::Value(crate::wire::xdr::Value {
            header: crate::wire::xdr::Header {
                host: "peer".into(),
                name: "peer_metric".into(),
                spoof: false,
            },
            format: "%s".into(),
            value: MetricValue::String("v".into()),
        }),
        &mut packet,
    )
    .unwrap();
    peer.send_to(&packet, network.udp_addrs[0]).await.unwrap();

    let (len, _) = tokio::time::timeout(Duration::from_secs(2), listener.recv_from(&mut buf))
        .await
        .expect("the metadata request reaches the listener")
        .unwrap();
    assert!(matches!(
        crate::wire::xdr::decode(&buf[..len]).unwrap(),
        crate::wire::xdr::Message::MetadataRequest(_)
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        network.stats.packets_sent.get(),
        6,
        "none to our own receive channel"
    );
    assert_eq!(network.stats.metadata_requests_sent.get(), 1);
    assert_eq!(
        network.stats.packets_received.get(),
        1,
        "only the peer's datagram arrives"
    );
    let mut requests = network.take_metadata_requests().unwrap();
    assert!(requests.try_recv().is_err(), "nobody asked us yet");
    // A peer's request reaches the scheduler's end.
    packet.clear();
    let header = crate::wire::xdr::Header {
        host: "localhost".into(),
        name: "loop_metric_00001".into(),
        spoof: false,
    };
    crate::wire::xdr::encode(
        &crate::wire::xdr::Message::MetadataRequest(header),
        &mut packet,
    )
    .unwrap();
    peer.send_to(&packet, network.udp_addrs[0]).await.unwrap();
    let asked = tokio::time::timeout(Duration::from_secs(2), requests.recv())
        .await
        .unwrap();
    assert_eq!(asked.as_deref(), Some("loop_metric_00001"));
    assert!(
        store
            .host("localhost")
            .unwrap()
            .metrics
            .iter()
            .all(|m| m.name == "peer_metric")
    );

    let xml = {
        use tokio::io::AsyncReadExt;
        let mut stream = tokio::net::TcpStream::connect(network.xml_addrs[0])
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        text
    };
    assert!(xml.contains("<CLUSTER NAME=\"Loop\""), "{xml}");

    shutdown.cancel();
    drop(sink);
    tokio::time::timeout(Duration::from_secs(5), network.wait())
        .await
        .expect("every network task ends after shutdown");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A host silent for more than `host_dmax` is swept out by the expiry task, every
/// `cleanup_threshold` seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_hosts_expire_after_host_dmax() {
    let (dir, config) = write_config(
        "globals {\n  host_dmax = 1\n  cleanup_threshold = 1\n}\n\
         udp_recv_channel {\n  port = 0\n  bind = 127.0.0.1\n}\n",
    );
    let store = Arc::new(Store::new(StoreConfig {
        host_dmax: 1,
        ..store_config()
    }));
    let shutdown = CancellationToken::new();
    let setup = NetworkSetup {
        hostname: "vm".into(),
        store: Arc::clone(&store),
        shutdown: shutdown.clone(),
    };
    let network = Network::start(&config, setup).await.unwrap();
    let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let mut packet = Vec::new();
    let header = crate::wire::xdr::Header {
        host: "peer".into(),
        name: "peer_metric".into(),
        spoof: false,
    };
    let value = crate::wire::xdr::Value {
        header,
        format: "%s".into(),
        value: MetricValue::String("v".into()),
    };
    crate::wire::xdr::encode(&crate::wire::xdr::Message::Value(value), &mut packet).unwrap();
    peer.send_to(&packet, network.udp_addrs[0]).await.unwrap();

    let started = tokio::time::Instant::now();
    while store.host("localhost").is_none() && started.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(store.host("localhost").is_some(), "the peer's host appears");
    while store.host("localhost").is_some() && started.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        store.host("localhost").is_none(),
        "the silent host is gone after host_dmax"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before host_dmax"
    );
    shutdown.cancel();
    network.wait().await;
    std::fs::remove_dir_all(dir).unwrap();
}

async fn start_network(config: &crate::config::Config) -> (Network, CancellationToken) {
    let shutdown = CancellationToken::new();
    let setup = NetworkSetup {
        hostname: "vm".into(),
        store: store(),
        shutdown: shutdown.clone(),
    };
    (Network::start(config, setup).await.unwrap(), shutdown)
}

const ALL_CHANNELS: &str = "udp_send_channel {\n  host = 127.0.0.1\n  port = 9\n}\n\
    udp_recv_channel {\n  port = 0\n  bind = 127.0.0.1\n}\n\
    tcp_accept_channel {\n  port = 0\n  bind = 127.0.0.1\n}\n";

/// `mute`: nothing is sent (no sink), while receiving and serving go on, as in gmond.
#[tokio::test]
async fn mute_sends_nothing_but_still_listens() {
    let (dir, config) = write_config(&format!("globals {{\n  mute = yes\n}}\n{ALL_CHANNELS}"));
    let (mut network, shutdown) = start_network(&config).await;
    assert!(network.take_sink().is_none());
    assert_eq!((network.udp_addrs.len(), network.xml_addrs.len()), (1, 1));
    shutdown.cancel();
    network.wait().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// `deaf`: neither a receive nor an XML channel is opened (real gmond 3.7.2 listens on
/// neither when deaf), while sending goes on.
#[tokio::test]
async fn deaf_opens_no_listener_but_still_sends() {
    let (dir, config) = write_config(&format!("globals {{\n  deaf = yes\n}}\n{ALL_CHANNELS}"));
    let (mut network, shutdown) = start_network(&config).await;
    assert!(network.take_sink().is_some());
    assert!(network.udp_addrs.is_empty() && network.xml_addrs.is_empty());
    shutdown.cancel();
    network.wait().await;
    std::fs::remove_dir_all(dir).unwrap();
}
