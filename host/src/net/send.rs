//! The `udp_send_channel`s: this host's metrics as gmetric XDR datagrams.
//!
//! The scheduler decides what is due (values per the thresholds, metadata when new, every
//! `send_metadata_interval`, or on a peer's request) and hands it over as
//! [`SendRequest`]s; [`run`] encodes each metric as a metadata datagram (when asked) then
//! a value datagram, exactly as gmond orders them, and sends the lot to every channel in
//! batches (`sendmmsg`), paced by a [`Pacer`] so a receiver with a default buffer keeps
//! up. With `override_hostname` every datagram is spoofed as `IP:name`, as gmond does.
//!
//! A metric that does not fit `max_udp_msg_len` is logged and skipped, never truncated;
//! so is a value gmond would misread ([`safe::misread_by_gmond`]). Descriptors and values
//! were made wire-safe where they entered (the engine).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::batch::{self, Pacer};
use super::stats::NetStats;
use crate::config::UdpSendChannel;
use crate::metric::{OutgoingMetric, SendRequest};
use crate::wire::{safe, xdr};

/// Datagrams per second sent to one channel, at most: 10 000 metrics go out in a second,
/// or in two with their metadata. At twice this rate a real gmond on a loaded 2-core
/// machine (CI, with other daemons) lost ~1 % of 20 000 datagrams: it spends 10-30 us on
/// each, and did not get the CPU to keep up.
pub(crate) const DEFAULT_RATE: u32 = 10_000;

/// Datagrams sent back to back before pacing. A gmond with the OS default receive buffer
/// holds ~256 datagrams: after a burst of 32 it may stall ~22 ms (224 datagrams at the
/// rate above) before it loses any.
pub(crate) const DEFAULT_BURST: usize = 32;

/// How long between two logs of the same send failure.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One opened `udp_send_channel`.
#[derive(Debug, Clone)]
pub struct SendChannel {
    pub socket: Arc<UdpSocket>,
    pub destination: SocketAddr,
}

impl SendChannel {
    /// Opens the socket a `udp_send_channel` block describes.
    pub async fn open(channel: &UdpSendChannel) -> std::io::Result<SendChannel> {
        let destination = super::socket::send_destination(channel).await?;
        let socket = super::socket::open_udp_send(channel, destination)?;
        Ok(SendChannel {
            socket: Arc::new(socket),
            destination,
        })
    }

    /// The address this channel's datagrams come from, as a receiver on the same host
    /// sees it (the routed source address and our port), so our own receive channel can
    /// recognise them.
    pub(crate) fn source_address(&self) -> std::io::Result<SocketAddr> {
        let local = self.socket.local_addr()?;
        if !local.ip().is_unspecified() {
            return Ok(local);
        }
        // Ask the routing table which source address reaches the destination.
        let probe = std::net::UdpSocket::bind(SocketAddr::new(local.ip(), 0))?;
        probe.connect(self.destination)?;
        Ok(SocketAddr::new(probe.local_addr()?.ip(), local.port()))
    }
}

/// Who the datagrams say they are from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The packets' `host` field: the host name, or `IP:name` when spoofed.
    pub host: String,
    pub spoof: bool,
}

impl Identity {
    /// gmond's choice: `override_hostname` spoofs as `override_ip:override_hostname`
    /// (the name twice without `override_ip`); otherwise the host name, unspoofed. Names
    /// go out as [`safe::host_name`] makes them: gmond puts a spoofed one in its XML raw.
    pub fn new(
        hostname: &str,
        override_hostname: Option<&str>,
        override_ip: Option<&str>,
    ) -> Identity {
        match override_hostname {
            Some(name) => Identity {
                host: format!(
                    "{}:{}",
                    safe::host_name(override_ip.unwrap_or(name)),
                    safe::host_name(name)
                ),
                spoof: true,
            },
            None => Identity {
                host: safe::host_name(hostname).into_owned(),
                spoof: false,
            },
        }
    }
}

/// How the sender sends.
#[derive(Debug, Clone)]
pub struct SendOptions {
    pub identity: Identity,
    /// gmond's `max_udp_msg_len`: no datagram is larger.
    pub max_udp_msg_len: usize,
    /// Datagrams per second per channel (0 = unpaced).
    pub rate: u32,
    pub burst: usize,
}

impl SendOptions {
    pub fn new(identity: Identity, max_udp_msg_len: u32) -> SendOptions {
        SendOptions {
            identity,
            max_udp_msg_len: max_udp_msg_len as usize,
            rate: DEFAULT_RATE,
            burst: DEFAULT_BURST,
        }
    }
}

/// Sends every request that arrives to every channel, until the scheduler drops its end
/// of `requests` (after its last values), then returns.
pub async fn run(
    channels: Arc<[SendChannel]>,
    options: SendOptions,
    mut requests: mpsc::Receiver<SendRequest>,
    stats: Arc<NetStats>,
) {
    let mut sender = Sender::new(channels, options, stats);
    while let Some(request) = requests.recv().await {
        sender.send(&request.metrics).await;
    }
}

/// Encodes metrics into datagrams and sends them, keeping one buffer between sends.
pub struct Sender {
    channels: Arc<[SendChannel]>,
    options: SendOptions,
    pacers: Vec<Pacer>,
    datagrams: Datagrams,
    stats: Arc<NetStats>,
    last_error_log: Option<Instant>,
}

impl Sender {
    pub fn new(channels: Arc<[SendChannel]>, options: SendOptions, stats: Arc<NetStats>) -> Sender {
        let pacers = channels.iter().map(|_| Pacer::new(options.rate)).collect();
        Sender {
            channels,
            options,
            pacers,
            datagrams: Datagrams::default(),
            stats,
            last_error_log: None,
        }
    }

    /// Encodes `metrics` (metadata first where set, then the value) and sends them to
    /// every channel.
    pub async fn send(&mut self, metrics: &[OutgoingMetric]) {
        self.datagrams.clear();
        for metric in metrics {
            if safe::misread_by_gmond(&metric.name, &metric.value) {
                self.stats.send_errors.incr();
                log_limited(
                    &mut self.last_error_log,
                    format_args!(
                        "metric {}: not sent: gmond reads any 'location' value as a string",
                        metric.name
                    ),
                );
                continue;
            }
            if let Err(error) = self.datagrams.push_metric(metric, &self.options) {
                self.stats.send_errors.incr();
                log_limited(
                    &mut self.last_error_log,
                    format_args!("metric {}: not sent: {error}", metric.name),
                );
            }
        }
        self.send_to_channels().await;
    }

    /// Sends the encoded datagrams burst by burst, each burst to every channel in turn,
    /// so that every channel's pace bounds the whole send (not their sum).
    async fn send_to_channels(&mut self) {
        let all = self.datagrams.slices();
        for burst in all.chunks(self.options.burst.max(1)) {
            for (channel, pacer) in self.channels.iter().zip(&mut self.pacers) {
                pacer.wait(burst.len()).await;
                let (report, error) =
                    batch::send_all(&channel.socket, channel.destination, burst).await;
                self.stats.packets_sent.add(report.sent as u64);
                self.stats.send_errors.add(report.failed as u64);
                if let Some(error) = error {
                    let destination = channel.destination;
                    log_limited(
                        &mut self.last_error_log,
                        format_args!("udp_send_channel {destination}: {error}"),
                    );
                }
            }
        }
    }
}

/// Logs `message` unless a send failure was logged less than [`ERROR_LOG_INTERVAL`] ago.
fn log_limited(last_log: &mut Option<Instant>, message: std::fmt::Arguments<'_>) {
    let now = Instant::now();
    if last_log.is_none_or(|last| now - last >= ERROR_LOG_INTERVAL) {
        *last_log = Some(now);
        tracing::warn!("{message}");
    }
}

/// Encoded datagrams, back to back in one buffer.
///
/// The messages are built in two scratch messages whose strings are reused from metric
/// to metric, so encoding allocates nothing once warm.
#[derive(Debug, Default)]
struct Datagrams {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    metadata: Option<xdr::Metadata>,
    value: Option<xdr::Value>,
}

impl Datagrams {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// Appends the metric's datagrams (its metadata when set, then its value), or none
    /// of them if either does not encode.
    fn push_metric(
        &mut self,
        metric: &OutgoingMetric,
        options: &SendOptions,
    ) -> Result<(), xdr::EncodeError> {
        let mark = (self.bytes.len(), self.ends.len());
        let pushed = self.push_encoded(metric, options);
        if pushed.is_err() {
            self.bytes.truncate(mark.0);
            self.ends.truncate(mark.1);
        }
        pushed
    }

    fn push_encoded(
        &mut self,
        metric: &OutgoingMetric,
        options: &SendOptions,
    ) -> Result<(), xdr::EncodeError> {
        if let Some(meta) = &metric.metadata {
            let mut metadata = self.metadata.take().unwrap_or_else(empty_metadata);
            set_header(&mut metadata.header, &options.identity, &metric.name);
            metadata.value_type = meta.value_type;
            metadata.units.clone_from(&meta.units);
            metadata.slope = meta.slope;
            metadata.tmax = meta.tmax;
            metadata.dmax = meta.dmax;
            metadata.extras.clone_from(&meta.extras);
            let message = xdr::Message::Metadata(metadata);
            let pushed = self.push(&message, options.max_udp_msg_len);
            if let xdr::Message::Metadata(metadata) = message {
                self.metadata = Some(metadata);
            }
            pushed?;
        }
        let mut value = self.value.take().unwrap_or_else(empty_value);
        set_header(&mut value.header, &options.identity, &metric.name);
        value.format.clear();
        value.format.push_str(&metric.format);
        value.value.clone_from(&metric.value);
        let message = xdr::Message::Value(value);
        let pushed = self.push(&message, options.max_udp_msg_len);
        if let xdr::Message::Value(value) = message {
            self.value = Some(value);
        }
        pushed
    }

    fn push(&mut self, message: &xdr::Message, max_len: usize) -> Result<(), xdr::EncodeError> {
        xdr::encode_with_limit(message, max_len, &mut self.bytes)?;
        self.ends.push(self.bytes.len());
        Ok(())
    }

    fn slices(&self) -> Vec<&[u8]> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let datagram = &self.bytes[start..end];
                start = end;
                datagram
            })
            .collect()
    }
}

fn set_header(header: &mut xdr::Header, identity: &Identity, name: &str) {
    header.host.clone_from(&identity.host);
    header.name.clear();
    header.name.push_str(name);
    header.spoof = identity.spoof;
}

fn empty_header() -> xdr::Header {
    xdr::Header {
        host: String::new(),
        name: String::new(),
        spoof: false,
    }
}

fn empty_metadata() -> xdr::Metadata {
    xdr::Metadata {
        header: empty_header(),
        value_type: crate::metric::ValueType::String,
        units: String::new(),
        slope: crate::metric::Slope::Unspecified,
        tmax: 0,
        dmax: 0,
        extras: Vec::new(),
    }
}

fn empty_value() -> xdr::Value {
    xdr::Value {
        header: empty_header(),
        format: String::new(),
        value: crate::metric::MetricValue::UInt32(0),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::metric::{MetricMeta, MetricValue, Slope, ValueType};

    fn meta(name: &str) -> Arc<MetricMeta> {
        Arc::new(MetricMeta {
            name: name.into(),
            value_type: ValueType::Float,
            units: "C".into(),
            slope: Slope::Both,
            tmax: 60,
            dmax: 0,
            extras: vec![("TITLE".into(), "T".into()), ("GROUP".into(), "g".into())],
        })
    }

    fn outgoing(name: &str, with_metadata: bool) -> OutgoingMetric {
        OutgoingMetric {
            metadata: with_metadata.then(|| meta(name)),
            name: name.into(),
            value: MetricValue::Float(1.5),
            format: "%.1f".into(),
        }
    }

    async fn channel_to(receiver: &UdpSocket) -> SendChannel {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        SendChannel {
            socket: Arc::new(socket),
            destination: receiver.local_addr().unwrap(),
        }
    }

    async fn receive(receiver: &UdpSocket, count: usize) -> Vec<xdr::Message> {
        let mut buf = [0u8; 2048];
        let mut messages = Vec::new();
        for _ in 0..count {
            let (len, _) = receiver.recv_from(&mut buf).await.unwrap();
            messages.push(xdr::decode(&buf[..len]).unwrap());
        }
        messages
    }

    #[tokio::test]
    async fn metadata_precedes_its_value_on_every_channel() {
        let first = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let second = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let channels: Arc<[SendChannel]> =
            vec![channel_to(&first).await, channel_to(&second).await].into();
        let options = SendOptions::new(Identity::new("vm", None, None), 1464);
        let stats = Arc::new(NetStats::default());
        let mut sender = Sender::new(channels, options, Arc::clone(&stats));
        sender
            .send(&[outgoing("temp", true), outgoing("fan", false)])
            .await;
        for receiver in [&first, &second] {
            let messages = receive(receiver, 3).await;
            let ids: Vec<u32> = messages.iter().map(xdr::Message::id).collect();
            assert_eq!(ids, [xdr::id::METADATA, xdr::id::FLOAT, xdr::id::FLOAT]);
            let xdr::Message::Metadata(metadata) = &messages[0] else {
                unreachable!()
            };
            assert_eq!(
                metadata.header,
                xdr::Header {
                    host: "vm".into(),
                    name: "temp".into(),
                    spoof: false
                }
            );
            assert_eq!((metadata.units.as_str(), metadata.tmax), ("C", 60));
            assert_eq!(metadata.extras, meta("temp").extras);
            let xdr::Message::Value(value) = &messages[2] else {
                unreachable!()
            };
            assert_eq!(
                (value.header.name.as_str(), value.format.as_str()),
                ("fan", "%.1f")
            );
            assert_eq!(value.value, MetricValue::Float(1.5));
        }
        assert_eq!(stats.packets_sent.get(), 6);
    }

    #[tokio::test]
    async fn override_hostname_spoofs_every_datagram() {
        let receiver = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let channels: Arc<[SendChannel]> = vec![channel_to(&receiver).await].into();
        let identity = Identity::new("vm", Some("web1"), Some("10.0.0.7"));
        let options = SendOptions::new(identity, 1464);
        let mut sender = Sender::new(channels, options, Arc::default());
        sender.send(&[outgoing("temp", true)]).await;
        for message in receive(&receiver, 2).await {
            assert_eq!(message.header().host, "10.0.0.7:web1");
            assert!(message.header().spoof);
        }
        assert_eq!(Identity::new("vm", Some("web1"), None).host, "web1:web1");
    }

    /// A metric too large for `max_udp_msg_len` is skipped whole (no metadata without
    /// its value, no truncated datagram); the others still go.
    #[tokio::test]
    async fn an_oversized_metric_is_skipped_not_truncated() {
        let receiver = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let channels: Arc<[SendChannel]> = vec![channel_to(&receiver).await].into();
        let options = SendOptions::new(Identity::new("vm", None, None), 200);
        let stats = Arc::new(NetStats::default());
        let mut sender = Sender::new(channels, options, Arc::clone(&stats));
        let mut huge = outgoing("huge", true);
        huge.value = MetricValue::String("x".repeat(300));
        sender.send(&[huge, outgoing("small", false)]).await;
        let messages = receive(&receiver, 1).await;
        assert_eq!(messages[0].header().name, "small");
        assert_eq!(stats.send_errors.get(), 1);
        assert_eq!(stats.packets_sent.get(), 1);
    }
}
