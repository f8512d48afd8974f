//! Starting every channel of a configuration as tasks, the way gmond does. The daemon
//! calls [`Network::start`] once, hands [`Network::take_sink`] to the scheduler, and
//! forwards [`Network::take_metadata_requests`] to `EngineHandle::resend_metadata`.
//!
//! - `mute`: no send channel is opened, so nothing is sent, not even metadata requests;
//!   the sink is `None`.
//! - `deaf`: neither receive nor XML channels are opened (gmond listens on neither when
//!   deaf).
//! - The store is swept for expired hosts and metrics every `cleanup_threshold` seconds
//!   (gmond's own sweep), whatever else runs.
//!
//! Shutdown: cancelling the token stops the listeners and receivers at once (the XML
//! clients in flight finish within their write timeout). The sender stops when the
//! scheduler drops the sink, after the last values: so the last values still go out.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::interactive;
use super::prometheus::{self, ExpositionOptions};
use super::recv::{self, MetadataRequestHandler, RecvContext};
use super::remote_write::{self, RemoteWriteOptions};
use super::send::{self, Identity, SendChannel, SendOptions};
use super::socket;
use super::stats::NetStats;
use super::tcp::{self, XmlServerOptions};
use crate::config::{Acl, Config};
use crate::metric::SendRequest;
use crate::store::Store;

/// Send requests queued for the sender at most; the scheduler drops (and logs) what
/// does not fit rather than wait.
pub(crate) const SEND_QUEUE: usize = 1024;

/// Peers' metadata requests queued for the scheduler at most; past it they are dropped
/// (a peer repeats its request with its next value).
pub(crate) const METADATA_REQUEST_QUEUE: usize = 1024;

/// The network tasks of a running daemon.
pub struct Network {
    /// Where the scheduler hands the values due (see [`Network::take_sink`]).
    sink: Option<mpsc::Sender<SendRequest>>,
    pub stats: Arc<NetStats>,
    /// The addresses the XML channels listen on (port 0 in the config is resolved here).
    pub xml_addrs: Vec<SocketAddr>,
    /// The addresses the receive channels listen on.
    pub udp_addrs: Vec<SocketAddr>,
    /// The addresses the `prometheus_listener`s listen on.
    pub prometheus_addrs: Vec<SocketAddr>,
    /// The addresses the `interactive_channel`s listen on.
    pub interactive_addrs: Vec<SocketAddr>,
    metadata_requests: Option<mpsc::Receiver<String>>,
    tasks: TaskTracker,
}

/// What the network needs besides the configuration.
pub struct NetworkSetup {
    /// This host's name, for the `host` field of what is sent (unless overridden).
    pub hostname: String,
    pub store: Arc<Store>,
    pub shutdown: CancellationToken,
}

impl Network {
    /// Opens every channel of `config` and starts its task. Fails, naming the channel,
    /// when a socket cannot be opened (a port in use, an unknown host).
    pub async fn start(config: &Config, setup: NetworkSetup) -> anyhow::Result<Network> {
        let globals = &config.globals;
        let stats = Arc::new(NetStats {
            remote_write: !config.prometheus_remote_writes.is_empty(),
            ..NetStats::default()
        });
        let tasks = TaskTracker::new();

        // Receive sockets are bound first: a send channel aimed at one of them is this
        // daemon talking to itself (the usual unicast-to-self layout), and the receiver
        // would skip those datagrams anyway, since the scheduler already stored the
        // values. Not sending them saves a send and a receive system call per metric.
        let receivers = if globals.deaf {
            Vec::new()
        } else {
            bind_receivers(config)?
        };
        let own_addrs: Vec<SocketAddr> = receivers.iter().map(|(_, addr)| *addr).collect();
        let channels: Vec<SendChannel> = open_send_channels(config)
            .await?
            .into_iter()
            .filter(|channel| {
                let to_self = own_addrs
                    .iter()
                    .any(|own| aims_at(channel.destination, *own));
                if to_self {
                    tracing::info!(
                        destination = %channel.destination,
                        "udp_send_channel aims at our own udp_recv_channel: its values go to the store directly, unsent"
                    );
                }
                !to_self
            })
            .collect();
        let own_sources = channels
            .iter()
            .filter_map(|channel| channel.source_address().ok())
            .collect::<HashSet<_>>();
        let channels: Arc<[SendChannel]> = channels.into();
        let sink = (!channels.is_empty()).then(|| {
            let (sink, requests) = mpsc::channel(SEND_QUEUE);
            let identity = Identity::new(
                &setup.hostname,
                globals.override_hostname.as_deref(),
                globals.override_ip.as_deref(),
            );
            let options = SendOptions::new(identity, globals.max_udp_msg_len);
            tasks.spawn(send::run(
                Arc::clone(&channels),
                options,
                requests,
                Arc::clone(&stats),
            ));
            sink
        });

        let (requests, metadata_requests) = mpsc::channel(METADATA_REQUEST_QUEUE);
        let on_metadata_request: MetadataRequestHandler = Arc::new(move |name: &str| {
            let _ = requests.try_send(name.to_owned());
        });
        let mut network = Network {
            sink,
            stats,
            xml_addrs: Vec::new(),
            udp_addrs: Vec::new(),
            prometheus_addrs: Vec::new(),
            interactive_addrs: Vec::new(),
            metadata_requests: Some(metadata_requests),
            tasks,
        };
        if globals.deaf {
            tracing::info!(
                "deaf: no udp_recv_channel, tcp_accept_channel or interactive_channel is opened"
            );
        } else {
            network.start_receivers(
                receivers,
                &setup,
                channels,
                own_sources,
                on_metadata_request,
            );
            network.start_xml_servers(config, &setup)?;
            network.start_interactive_channels(config, &setup)?;
        }
        // Not affected by `deaf`: the exposition shows whatever the store holds, which
        // for a deaf daemon is its own metrics.
        network.start_prometheus_listeners(config, &setup)?;
        network.start_remote_writes(config, &setup)?;
        network.start_expiry(&setup, globals.cleanup_threshold);
        network.tasks.close();
        Ok(network)
    }

    /// Where the scheduler hands the values due: `None` when muted or without send
    /// channels. The sender ends once every clone of it is dropped, after sending what
    /// was queued, so give it to the scheduler, which drops it after its last values.
    pub(crate) fn take_sink(&mut self) -> Option<mpsc::Sender<SendRequest>> {
        self.sink.take()
    }

    /// The names of the metrics peers asked metadata for (id 136), for the scheduler to
    /// re-send (`EngineHandle::resend_metadata`). Taken once; ends when the receivers do.
    pub(crate) fn take_metadata_requests(&mut self) -> Option<mpsc::Receiver<String>> {
        self.metadata_requests.take()
    }

    /// Waits for every network task to end: the listeners and receivers once the
    /// shutdown token is cancelled, the sender once the sink is dropped.
    pub async fn wait(mut self) {
        drop(self.sink.take());
        self.tasks.wait().await;
    }

    fn start_receivers(
        &mut self,
        receivers: Vec<(Receiving, SocketAddr)>,
        setup: &NetworkSetup,
        send_channels: Arc<[SendChannel]>,
        own_sources: HashSet<SocketAddr>,
        on_metadata_request: MetadataRequestHandler,
    ) {
        let own_sources = Arc::new(own_sources);
        for ((socket, acl), addr) in receivers {
            self.udp_addrs.push(addr);
            let context = RecvContext {
                store: Arc::clone(&setup.store),
                acl,
                send_channels: Arc::clone(&send_channels),
                own_sources: Arc::clone(&own_sources),
                on_metadata_request: Arc::clone(&on_metadata_request),
                stats: Arc::clone(&self.stats),
            };
            self.tasks.spawn(recv::run(
                socket,
                context,
                setup.shutdown.clone().cancelled_owned(),
            ));
        }
    }

    fn start_xml_servers(&mut self, config: &Config, setup: &NetworkSetup) -> anyhow::Result<()> {
        for channel in &config.tcp_accept_channels {
            let at = &channel.declared_at;
            if channel.gzip_output {
                tracing::warn!(
                    "tcp_accept_channel at {at}: gzip_output is not supported, XML is sent plain"
                );
            }
            let listener = socket::bind_tcp(channel)
                .with_context(|| format!("tcp_accept_channel (port {}) at {at}", channel.port))?;
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "tcp_accept_channel listening");
            self.xml_addrs.push(addr);
            self.tasks.spawn(tcp::run(
                listener,
                Arc::clone(&setup.store),
                XmlServerOptions::from_channel(channel),
                Arc::clone(&self.stats),
                setup.shutdown.clone().cancelled_owned(),
            ));
        }
        Ok(())
    }

    fn start_interactive_channels(
        &mut self,
        config: &Config,
        setup: &NetworkSetup,
    ) -> anyhow::Result<()> {
        for channel in &config.interactive_channels {
            let at = &channel.declared_at;
            let socket =
                socket::bind_tcp_listener(channel.bind.as_deref(), channel.family, channel.port)
                    .with_context(|| {
                        format!("interactive_channel (port {}) at {at}", channel.port)
                    })?;
            let addr = socket.local_addr()?;
            tracing::info!(%addr, "interactive_channel listening");
            self.interactive_addrs.push(addr);
            self.tasks.spawn(interactive::run(
                socket,
                Arc::clone(&setup.store),
                channel.acl.clone(),
                setup.shutdown.clone().cancelled_owned(),
            ));
        }
        Ok(())
    }

    fn start_prometheus_listeners(
        &mut self,
        config: &Config,
        setup: &NetworkSetup,
    ) -> anyhow::Result<()> {
        for listener in &config.prometheus_listeners {
            let at = &listener.declared_at;
            let socket =
                socket::bind_tcp_listener(listener.bind.as_deref(), listener.family, listener.port)
                    .with_context(|| {
                        format!("prometheus_listener (port {}) at {at}", listener.port)
                    })?;
            let addr = socket.local_addr()?;
            tracing::info!(%addr, path = %listener.path, "prometheus_listener listening");
            self.prometheus_addrs.push(addr);
            self.tasks.spawn(prometheus::run(
                socket,
                Arc::clone(&setup.store),
                ExpositionOptions::from_listener(listener),
                setup.shutdown.clone().cancelled_owned(),
            ));
        }
        Ok(())
    }

    /// Starts one pusher per `prometheus_remote_write`. Neither `mute` nor `deaf` stops
    /// them: they export the store, as the `prometheus_listener`s do, and send nothing
    /// to Ganglia peers.
    fn start_remote_writes(&mut self, config: &Config, setup: &NetworkSetup) -> anyhow::Result<()> {
        for push in &config.prometheus_remote_writes {
            let options = RemoteWriteOptions::from_config(push)
                .with_context(|| format!("prometheus_remote_write at {}", push.declared_at))?;
            tracing::info!(url = %push.url, interval = push.interval, queue = push.queue, "prometheus_remote_write pushing");
            self.tasks.spawn(remote_write::run(
                options,
                Arc::clone(&setup.store),
                Arc::clone(&self.stats),
                setup.shutdown.clone(),
            ));
        }
        Ok(())
    }

    /// Sweeps expired hosts and metrics every `cleanup_threshold` seconds (at least 1).
    fn start_expiry(&self, setup: &NetworkSetup, cleanup_threshold: u32) {
        let store = Arc::clone(&setup.store);
        let shutdown = setup.shutdown.clone();
        let period = Duration::from_secs(cleanup_threshold.max(1).into());
        self.tasks.spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {
                        let expired = store.expire(SystemTime::now());
                        if expired.hosts + expired.metrics > 0 {
                            tracing::info!(hosts = expired.hosts, metrics = expired.metrics, "expired");
                        }
                    }
                    () = shutdown.cancelled() => return,
                }
            }
        });
    }
}

/// A bound receive socket and its channel's acl.
type Receiving = (tokio::net::UdpSocket, Option<Acl>);

/// Binds every `udp_recv_channel`, naming the one that fails.
fn bind_receivers(config: &Config) -> anyhow::Result<Vec<(Receiving, SocketAddr)>> {
    let mut receivers = Vec::with_capacity(config.udp_recv_channels.len());
    for channel in &config.udp_recv_channels {
        let at = &channel.declared_at;
        let socket = socket::bind_udp_recv(channel)
            .with_context(|| format!("udp_recv_channel (port {}) at {at}", channel.port))?;
        let addr = socket.local_addr()?;
        tracing::info!(%addr, buffer = socket::recv_buffer_size(&socket).ok(), "udp_recv_channel listening");
        receivers.push(((socket, channel.acl.clone()), addr));
    }
    Ok(receivers)
}

/// Whether datagrams sent to `destination` arrive at the socket bound to `own`: the
/// same unicast address, or a loopback address when `own` listens on every address.
/// A multicast destination also reaches peers, so it never counts.
fn aims_at(destination: SocketAddr, own: SocketAddr) -> bool {
    destination.port() == own.port()
        && !destination.ip().is_multicast()
        && (destination.ip() == own.ip()
            || (own.ip().is_unspecified() && destination.ip().is_loopback()))
}

/// Opens every `udp_send_channel`, unless muted.
async fn open_send_channels(config: &Config) -> anyhow::Result<Vec<SendChannel>> {
    if config.globals.mute {
        tracing::info!("mute: no udp_send_channel is opened");
        return Ok(Vec::new());
    }
    let mut channels = Vec::with_capacity(config.udp_send_channels.len());
    for channel in &config.udp_send_channels {
        let opened = SendChannel::open(channel).await.with_context(|| {
            let target = channel
                .mcast_join
                .as_deref()
                .or(channel.host.as_deref())
                .unwrap_or("?");
            format!(
                "udp_send_channel {target}:{} at {}",
                channel.port, channel.declared_at
            )
        })?;
        tracing::info!(destination = %opened.destination, "udp_send_channel open");
        channels.push(opened);
    }
    Ok(channels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_aims_at_our_receiver_only_on_its_address_and_port() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let own = addr("127.0.0.1:8649");
        assert!(aims_at(addr("127.0.0.1:8649"), own));
        assert!(!aims_at(addr("127.0.0.1:8650"), own), "another port");
        assert!(!aims_at(addr("10.0.0.2:8649"), own), "a peer");
        let any = addr("0.0.0.0:8649");
        assert!(
            aims_at(addr("127.0.0.1:8649"), any),
            "loopback reaches 0.0.0.0"
        );
        assert!(!aims_at(addr("10.0.0.2:8649"), any), "a peer, maybe");
        assert!(
            !aims_at(addr("239.2.11.71:8649"), addr("239.2.11.71:8649")),
            "multicast also reaches peers"
        );
    }
}
