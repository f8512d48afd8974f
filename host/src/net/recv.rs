//! The `udp_recv_channel`s: gmetric XDR datagrams from real gmetric, gmond and other
//! wasmonds, into the store.
//!
//! Each datagram is checked against the channel's acl, decoded, and applied: metadata
//! (id 128) and values (129..135) update the sending host, named as gmond names it
//! ([`super::names`]). A value whose metadata is unknown makes us ask the sender for it
//! with a metadata request (id 136) on every send channel, as gmond does (at most once
//! per [`REQUEST_INTERVAL`] per host and metric). A request from a peer (136) is handed
//! to the scheduler, which re-sends that metric's metadata at once.
//!
//! What is taken in is first made safe as [`safe`] says (names, units, extras, formats,
//! string values), so that nothing a peer sends can make wasmond serve or send what would
//! break gmond or gmetad. A value that does not read as its metric's declared type is
//! refused by the store ([`safe::fits_type`]).
//!
//! A datagram that does not decode is counted as malformed and dropped, never a crash;
//! one that decodes but is refused (a bad name, a mistyped value, a full store) is
//! counted as refused. Our own
//! datagrams, looped back from our send channels, are skipped: the scheduler already
//! wrote those values into the store under this host's own name.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::acl;
use super::names::{HostId, HostNames};
use super::send::SendChannel;
use super::stats::NetStats;
use crate::config::Acl;
use crate::metric::MetricMeta;
use crate::store::{HostRef, Store, StoreError};
use crate::wire::{safe, xdr};

/// Largest datagram read: the UDP maximum, so an oversized one is read whole and then
/// rejected by the decoder instead of being silently cut.
const RECV_BUFFER: usize = 65_536;

/// How often one host's metric may trigger a metadata request.
pub(crate) const REQUEST_INTERVAL: Duration = Duration::from_secs(10);

/// Most (host, metric) pairs remembered for [`REQUEST_INTERVAL`]; the memory starts
/// afresh past it, so a flood of unknown metrics cannot grow it without bound.
const MAX_PENDING_REQUESTS: usize = 16_384;

/// Called with a metric's name when a peer asks for its metadata.
pub(crate) type MetadataRequestHandler = Arc<dyn Fn(&str) + Send + Sync>;

/// What a receive channel needs besides its socket.
#[derive(Clone)]
pub struct RecvContext {
    pub store: Arc<Store>,
    pub acl: Option<Acl>,
    /// Where metadata requests (id 136) go: every send channel (none when muted).
    pub send_channels: Arc<[SendChannel]>,
    /// Source addresses of our own send channels, whose datagrams are skipped.
    pub own_sources: Arc<HashSet<SocketAddr>>,
    pub on_metadata_request: MetadataRequestHandler,
    pub stats: Arc<NetStats>,
}

/// How often the kernel's drop count of a receive socket is read into the stats. The
/// count is cumulative and goes out with the host's own metrics every 20 s; read every
/// second, it was most of what an idle daemon woke up for (tokio's timer wakes a little
/// early, sleeps again, then the read wakes the I/O driver: ~0.1 ms of CPU a second).
const KERNEL_DROPS_INTERVAL: Duration = Duration::from_secs(10);

/// Receives on `socket` until `shutdown` completes.
pub async fn run(socket: UdpSocket, context: RecvContext, shutdown: impl Future<Output = ()>) {
    let stats = Arc::clone(&context.stats);
    let mut receiver = Receiver::new(context);
    let mut buffer = vec![0u8; RECV_BUFFER];
    let mut drops_seen = 0u32;
    let mut drops_tick = tokio::time::interval(KERNEL_DROPS_INTERVAL);
    drops_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok((len, source)) => receiver.handle(&buffer[..len], source, SystemTime::now()).await,
                Err(error) => {
                    // ICMP errors from earlier sends and the like: nothing to undo.
                    tracing::debug!(%error, "udp_recv_channel: receive failed");
                }
            },
            _ = drops_tick.tick() => {
                // The kernel's count only grows (a u32 that may wrap); channels share
                // the stats, so each adds what it saw since its last look.
                if let Ok(drops) = super::socket::kernel_drops(&socket) {
                    stats.kernel_drops.add(u64::from(drops.wrapping_sub(drops_seen)));
                    drops_seen = drops;
                }
            }
            () = &mut shutdown => return,
        }
    }
}

/// Applies datagrams to the store; one per receive channel.
pub struct Receiver {
    context: RecvContext,
    names: HostNames,
    requested: HashMap<(Arc<str>, String), Instant>,
    request_buffer: Vec<u8>,
}

impl Receiver {
    pub fn new(context: RecvContext) -> Receiver {
        Receiver {
            context,
            names: HostNames::default(),
            requested: HashMap::new(),
            request_buffer: Vec::new(),
        }
    }

    /// Applies one datagram from `source`, received at `now`.
    pub async fn handle(&mut self, datagram: &[u8], source: SocketAddr, now: SystemTime) {
        let stats = Arc::clone(&self.context.stats);
        if !acl::allows(self.context.acl.as_ref(), source.ip()) {
            stats.packets_denied.incr();
            return;
        }
        if self.context.own_sources.contains(&source) {
            return;
        }
        let message = match xdr::decode(datagram) {
            Ok(message) => message,
            Err(error) => {
                stats.packets_malformed.incr();
                tracing::debug!(%source, %error, "udp_recv_channel: malformed datagram dropped");
                return;
            }
        };
        match self.apply(message, source, now).await {
            Ok(()) => stats.packets_received.incr(),
            Err(error) => {
                if error.is_over_quota() {
                    stats.packets_over_quota.incr();
                } else {
                    stats.packets_refused.incr();
                }
                tracing::debug!(%source, %error, "udp_recv_channel: datagram refused");
            }
        }
    }

    async fn apply(
        &mut self,
        message: xdr::Message,
        source: SocketAddr,
        now: SystemTime,
    ) -> Result<(), Refused> {
        match message {
            xdr::Message::Metadata(mut metadata) => {
                let header = &mut metadata.header;
                header.name = safe_name(&header.name)?;
                let host = self
                    .names
                    .identify(source.ip(), &header.host, header.spoof)
                    .await;
                let host = HostRef {
                    name: &host.name,
                    ip: &host.ip,
                };
                safe::metadata(&mut metadata.units, &mut metadata.extras);
                let meta = into_meta(metadata);
                let store = &self.context.store;
                Ok(store.update_metadata_from(source.ip(), host, meta, now)?)
            }
            xdr::Message::Value(mut value) => {
                let header = &mut value.header;
                header.name = safe_name(&header.name)?;
                let host = self
                    .names
                    .identify(source.ip(), &header.host, header.spoof)
                    .await;
                let host_ref = HostRef {
                    name: &host.name,
                    ip: &host.ip,
                };
                safe::value(&mut value.value);
                let format = safe::format(&value.format, value.value.value_type());
                let store = &self.context.store;
                let (name, value) = (&header.name, value.value);
                let known =
                    store.update_value_from(source.ip(), host_ref, name, value, &format, now)?;
                if !known {
                    self.request_metadata(&host, &header.name).await;
                }
                Ok(())
            }
            xdr::Message::MetadataRequest(header) => {
                self.context.stats.metadata_requests_received.incr();
                (self.context.on_metadata_request)(&header.name);
                Ok(())
            }
        }
    }

    /// Asks every send channel's peers for the metadata of `host`'s metric `name`.
    async fn request_metadata(&mut self, host: &HostId, name: &str) {
        if self.context.send_channels.is_empty() || !self.request_due(host, name) {
            return;
        }
        self.request_buffer.clear();
        let request = xdr::Message::MetadataRequest(xdr::Header {
            host: host.name.to_string(),
            name: name.to_owned(),
            spoof: false,
        });
        if xdr::encode(&request, &mut self.request_buffer).is_err() {
            return;
        }
        for channel in self.context.send_channels.iter() {
            match channel
                .socket
                .send_to(&self.request_buffer, channel.destination)
                .await
            {
                Ok(_) => self.context.stats.metadata_requests_sent.incr(),
                Err(error) => {
                    self.context.stats.send_errors.incr();
                    tracing::debug!(%error, destination = %channel.destination, "metadata request not sent");
                }
            }
        }
    }

    /// Whether a request for this host's metric may go now; books it if so.
    fn request_due(&mut self, host: &HostId, name: &str) -> bool {
        let now = Instant::now();
        let key = (Arc::clone(&host.name), name.to_owned());
        if let Some(&last) = self.requested.get(&key)
            && now - last < REQUEST_INTERVAL
        {
            return false;
        }
        if self.requested.len() >= MAX_PENDING_REQUESTS {
            self.requested.clear();
        }
        self.requested.insert(key, now);
        true
    }
}

/// Why a datagram that decoded was not applied.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("metric name of {0} bytes (empty, or over the limit)")]
    Name(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Refused {
    /// Whether the store refused it for want of room (the sender's share, or all
    /// senders'), not for what it said.
    fn is_over_quota(&self) -> bool {
        matches!(
            self,
            Refused::Store(
                StoreError::TooManyHosts
                    | StoreError::TooManyMetrics
                    | StoreError::SenderHostsFull
                    | StoreError::SenderMetricsFull
            )
        )
    }
}

/// A peer's metric name as wasmond keeps it ([`safe::metric_name`]).
fn safe_name(name: &str) -> Result<String, Refused> {
    safe::metric_name(name)
        .map(Cow::into_owned)
        .ok_or(Refused::Name(name.len()))
}

/// The store's view of a metadata message.
fn into_meta(metadata: xdr::Metadata) -> MetricMeta {
    MetricMeta {
        name: metadata.header.name,
        value_type: metadata.value_type,
        units: metadata.units,
        slope: metadata.slope,
        tmax: metadata.tmax,
        dmax: metadata.dmax,
        extras: metadata.extras,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Mutex;

    use super::*;
    use crate::config::{AclAction, Location};
    use crate::metric::{MetricValue, Slope, ValueType};
    use crate::store::StoreConfig;

    /// gmetric's packets as real gmetric 3.7.2 sent them (reference captures).
    const GMETRIC_PACKETS: &str = include_str!("../wire/testdata/gmetric_packets.hex");

    struct Harness {
        receiver: Receiver,
        store: Arc<Store>,
        stats: Arc<NetStats>,
        /// Listens where metadata requests are sent.
        peer: UdpSocket,
        asked: Arc<Mutex<Vec<String>>>,
    }

    async fn harness(acl: Option<Acl>, own_sources: HashSet<SocketAddr>) -> Harness {
        let store = Arc::new(Store::new(StoreConfig::for_tests("c")));
        let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let channel = SendChannel {
            socket: Arc::new(socket),
            destination: peer.local_addr().unwrap(),
        };
        let stats = Arc::new(NetStats::default());
        let asked = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::clone(&asked);
        let context = RecvContext {
            store: Arc::clone(&store),
            acl,
            send_channels: vec![channel].into(),
            own_sources: Arc::new(own_sources),
            on_metadata_request: Arc::new(move |name: &str| {
                recorder.lock().unwrap().push(name.to_owned())
            }),
            stats: Arc::clone(&stats),
        };
        Harness {
            receiver: Receiver::new(context),
            store,
            stats,
            peer,
            asked,
        }
    }

    fn loopback(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    fn encoded(message: &xdr::Message) -> Vec<u8> {
        let mut out = Vec::new();
        xdr::encode(message, &mut out).unwrap();
        out
    }

    fn header(host: &str, name: &str, spoof: bool) -> xdr::Header {
        xdr::Header {
            host: host.into(),
            name: name.into(),
            spoof,
        }
    }

    fn metadata(host: &str, name: &str, spoof: bool) -> Vec<u8> {
        encoded(&xdr::Message::Metadata(xdr::Metadata {
            header: header(host, name, spoof),
            value_type: ValueType::UInt32,
            units: "req".into(),
            slope: Slope::Positive,
            tmax: 60,
            dmax: 0,
            extras: vec![("GROUP".into(), "web".into())],
        }))
    }

    fn value(host: &str, name: &str, spoof: bool, number: u32) -> Vec<u8> {
        encoded(&xdr::Message::Value(xdr::Value {
            header: header(host, name, spoof),
            format: "%u".into(),
            value: MetricValue::UInt32(number),
        }))
    }

    #[tokio::test]
    async fn real_gmetric_packets_land_in_the_store() {
        let mut h = harness(None, HashSet::new()).await;
        let now = SystemTime::now();
        let packets: Vec<Vec<u8>> = GMETRIC_PACKETS
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| hex::decode(line.split_whitespace().next().unwrap()).unwrap())
            .collect();
        for packet in &packets {
            h.receiver.handle(packet, loopback(40000), now).await;
        }
        assert_eq!(h.stats.packets_received.get(), packets.len() as u64);
        assert_eq!(h.stats.packets_malformed.get(), 0);
        let host = h
            .store
            .host("localhost")
            .expect("named like gmond names 127.0.0.1");
        let gm_int8 = host
            .metrics
            .iter()
            .find(|metric| metric.name == "gm_int8")
            .unwrap();
        let meta = gm_int8.meta.as_ref().unwrap();
        assert_eq!(
            (meta.value_type, meta.units.as_str(), meta.slope),
            (ValueType::Int8, "deg", Slope::Both)
        );
        assert_eq!(
            gm_int8.sample.as_ref().unwrap().value,
            MetricValue::String("-5".into())
        );
        assert!(
            h.store.host("spoofhost").is_some(),
            "gmetric -S creates the spoofed host"
        );
    }

    #[tokio::test]
    async fn malformed_datagrams_are_counted_and_dropped() {
        let mut h = harness(None, HashSet::new()).await;
        let now = SystemTime::now();
        let good = metadata("vm", "hits", false);
        for bad in [
            &b""[..],
            &b"\x00\x00\x00\x80"[..],
            &good[..good.len() - 1],
            &[0xff; 64][..],
        ] {
            h.receiver.handle(bad, loopback(40000), now).await;
        }
        assert_eq!(h.stats.packets_malformed.get(), 4);
        assert!(h.store.snapshot().is_empty());
    }

    #[tokio::test]
    async fn a_value_without_metadata_asks_the_sender_for_it_once() {
        let mut h = harness(None, HashSet::new()).await;
        let now = SystemTime::now();
        for number in 0..3 {
            h.receiver
                .handle(&value("vm", "hits", false, number), loopback(40000), now)
                .await;
        }
        let mut buf = [0u8; 256];
        let (len, _) = h.peer.recv_from(&mut buf).await.unwrap();
        let request = xdr::decode(&buf[..len]).unwrap();
        assert_eq!(
            request,
            xdr::Message::MetadataRequest(header("localhost", "hits", false))
        );
        assert_eq!(
            h.stats.metadata_requests_sent.get(),
            1,
            "rate-limited per host and metric"
        );
        // Once the metadata arrives, the metric shows.
        h.receiver
            .handle(&metadata("vm", "hits", false), loopback(40000), now)
            .await;
        h.receiver
            .handle(&value("vm", "hits", false, 7), loopback(40000), now)
            .await;
        let host = h.store.host("localhost").unwrap();
        assert_eq!(
            host.metrics[0].sample.as_ref().unwrap().value,
            MetricValue::UInt32(7)
        );
    }

    #[tokio::test]
    async fn a_peers_metadata_request_reaches_the_scheduler() {
        let mut h = harness(None, HashSet::new()).await;
        let request = encoded(&xdr::Message::MetadataRequest(header(
            "localhost",
            "cpu_user",
            false,
        )));
        h.receiver
            .handle(&request, loopback(40000), SystemTime::now())
            .await;
        assert_eq!(*h.asked.lock().unwrap(), ["cpu_user"]);
        assert_eq!(h.stats.metadata_requests_received.get(), 1);
    }

    #[tokio::test]
    async fn spoofed_packets_name_their_own_host() {
        let mut h = harness(None, HashSet::new()).await;
        let now = SystemTime::now();
        h.receiver
            .handle(
                &metadata("10.1.2.3:web7", "hits", true),
                loopback(40000),
                now,
            )
            .await;
        h.receiver
            .handle(
                &value("10.1.2.3:web7", "hits", true, 5),
                loopback(40000),
                now,
            )
            .await;
        let host = h.store.host("web7").unwrap();
        assert_eq!(host.ip, "10.1.2.3");
        assert_eq!(host.metrics.len(), 1);
    }

    #[tokio::test]
    async fn our_own_datagrams_and_denied_senders_are_skipped() {
        let acl = Acl {
            default: AclAction::Allow,
            access: vec![crate::config::AclAccess {
                ip: "127.0.0.2".parse().unwrap(),
                mask: 32,
                action: AclAction::Deny,
                declared_at: Location::whole_file("test.conf"),
            }],
        };
        let own = HashSet::from([loopback(41000)]);
        let mut h = harness(Some(acl), own).await;
        let now = SystemTime::now();
        h.receiver
            .handle(&metadata("vm", "hits", false), loopback(41000), now)
            .await;
        let denied = SocketAddr::from(([127, 0, 0, 2], 40000));
        h.receiver
            .handle(&metadata("vm", "hits", false), denied, now)
            .await;
        assert!(h.store.snapshot().is_empty());
        assert_eq!(h.stats.packets_denied.get(), 1);
        assert_eq!(h.stats.packets_received.get(), 0);
    }

    proptest::proptest! {
        /// Whatever arrives, the receiver neither panics nor loses count: every datagram
        /// is either applied or counted as malformed or refused.
        #[test]
        fn any_datagram_is_applied_or_counted(datagram in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut h = harness(None, HashSet::new()).await;
                h.receiver.handle(&datagram, loopback(40000), SystemTime::now()).await;
                let counted = h.stats.packets_received.get()
                    + h.stats.packets_malformed.get()
                    + h.stats.packets_refused.get()
                    + h.stats.packets_over_quota.get();
                assert_eq!(counted, 1);
            });
        }

        /// Well-formed datagrams with any strings in them are taken in.
        #[test]
        fn any_valid_value_is_applied(host in ".{0,40}", name in ".{1,30}", text in ".{0,200}", spoof in proptest::prelude::any::<bool>()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut h = harness(None, HashSet::new()).await;
                let datagram = encoded(&xdr::Message::Value(xdr::Value {
                    header: header(&host, &name, spoof),
                    format: "%s".into(),
                    value: MetricValue::String(text.clone()),
                }));
                h.receiver.handle(&datagram, loopback(40000), SystemTime::now()).await;
                assert_eq!(h.stats.packets_received.get(), 1);
            });
        }
    }
}
