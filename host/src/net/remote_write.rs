//! `prometheus_remote_write`: pushes the store to a Prometheus remote-write receiver.
//!
//! Two loops per configured section, on the daemon's runtime:
//! - the snapshot loop renders, every `interval`, every live metric of the store as one
//!   request ([`crate::export::remote_write`], on a blocking thread, reading the store
//!   as a scrape does) and queues it. The queue holds at most `queue` requests: when it
//!   is full, the oldest is dropped and counted. Nothing waits on the receiver here, so
//!   a slow or absent receiver never delays collection, nor anything else.
//! - the delivery loop POSTs the oldest queued request over HTTP/1.1 (hyper's client,
//!   one kept-alive connection) with the headers remote write 1.0 asks for, and:
//!   - on 2xx, removes it and counts its samples;
//!   - on a 4xx status but 429, drops it and counts it as refused: the receiver would
//!     refuse it again (an out-of-order sample, a bad label);
//!   - on no connection, a timeout ([`REQUEST_TIMEOUT`]), 5xx or 429, keeps it and tries
//!     again after a pause that doubles from [`MIN_BACKOFF`] to [`MAX_BACKOFF`] (as
//!     Prometheus' own sender does), counting each retry.
//!
//! Requests go out oldest first, one at a time, so a receiver gets each series' samples
//! in time order, which Prometheus requires. On shutdown, what is queued is dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HOST, HeaderValue, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::stats::NetStats;
use crate::config::PrometheusRemoteWrite;
use crate::export::remote_write;
use crate::store::Store;

/// How long one attempt may take, from connecting to the end of the answer (Prometheus'
/// own `remote_timeout` default).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The first pause after a failed attempt.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// The longest pause between attempts (Prometheus' `max_backoff` default).
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Bytes of a receiver's answer read at most (it explains a refusal, for the log).
const ANSWER_LIMIT: usize = 4096;

/// What `X-Prometheus-Remote-Write-Version` says: remote write 1.0.
const PROTOCOL_VERSION: &str = "0.1.0";

/// Where and how often one `prometheus_remote_write` pushes.
#[derive(Debug, Clone)]
pub struct RemoteWriteOptions {
    pub target: Target,
    pub interval: Duration,
    /// Requests kept at most while the receiver is unreachable.
    pub queue: usize,
}

impl RemoteWriteOptions {
    pub(crate) fn from_config(config: &PrometheusRemoteWrite) -> anyhow::Result<Self> {
        Ok(RemoteWriteOptions {
            target: Target::parse(&config.url)?,
            interval: Duration::from_secs(config.interval.into()),
            queue: config.queue.max(1) as usize,
        })
    }
}

/// The receiver's address and path, from its `http://` URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as configured, for the log.
    url: String,
    /// For `TcpStream::connect`: a name, or an address without brackets.
    host: String,
    port: u16,
    /// The `Host` header: the URL's authority.
    authority: HeaderValue,
    path: Uri,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: Uri = url.parse().with_context(|| format!("`{url}`"))?;
        anyhow::ensure!(uri.scheme_str() == Some("http"), "`{url}`: not http://");
        let authority = uri
            .authority()
            .with_context(|| format!("`{url}`: no host"))?;
        let path = uri
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .parse()?;
        Ok(Target {
            url: url.to_owned(),
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: uri.port_u16().unwrap_or(80),
            authority: HeaderValue::from_str(authority.as_str())?,
            path,
        })
    }
}

/// Pushes `store` as `options` say until `shutdown` is cancelled.
pub async fn run(
    options: RemoteWriteOptions,
    store: Arc<Store>,
    stats: Arc<NetStats>,
    shutdown: CancellationToken,
) {
    let queue = Queue::new(options.queue, Arc::clone(&stats));
    tokio::join!(
        snapshots(&options, &store, &queue, &shutdown),
        deliver(&options.target, &queue, &stats, &shutdown),
    );
    queue.clear();
}

/// One rendered snapshot, waiting in the queue.
#[derive(Debug, Clone)]
struct Pending {
    /// Tells a request apart from the one that replaced it at the front.
    seq: u64,
    body: Bytes,
    samples: usize,
}

/// The bounded queue between the two loops; its length is mirrored in the stats.
struct Queue {
    items: Mutex<VecDeque<Pending>>,
    capacity: usize,
    added: Notify,
    stats: Arc<NetStats>,
}

impl Queue {
    fn new(capacity: usize, stats: Arc<NetStats>) -> Queue {
        Queue {
            items: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
            added: Notify::new(),
            stats,
        }
    }

    fn items(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `pending`, dropping the oldest request when full; returns how many were
    /// dropped.
    fn push(&self, pending: Pending) -> usize {
        let dropped = {
            let mut items = self.items();
            let mut dropped = 0;
            while items.len() >= self.capacity {
                items.pop_front();
                dropped += 1;
            }
            items.push_back(pending);
            dropped
        };
        self.stats.remote_write_dropped.add(dropped as u64);
        self.stats.remote_write_queue.add(1 - dropped as i64);
        self.added.notify_one();
        dropped
    }

    fn front(&self) -> Option<Pending> {
        self.items().front().cloned()
    }

    /// Removes the request `seq` if it is still queued (it may have been dropped for a
    /// newer one while it was being sent).
    fn remove(&self, seq: u64) {
        let mut items = self.items();
        if items.front().is_some_and(|front| front.seq == seq) {
            items.pop_front();
            self.stats.remote_write_queue.add(-1);
        }
    }

    fn clear(&self) {
        let mut items = self.items();
        self.stats.remote_write_queue.add(-(items.len() as i64));
        items.clear();
    }
}

async fn snapshots(
    options: &RemoteWriteOptions,
    store: &Arc<Store>,
    queue: &Queue,
    shutdown: &CancellationToken,
) {
    let mut ticks = tokio::time::interval(options.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let store = Arc::clone(store);
        let rendered =
            tokio::task::spawn_blocking(move || remote_write::render(&store, SystemTime::now()))
                .await;
        let batch = match rendered {
            Ok(Ok(batch)) => batch,
            Ok(Err(error)) => {
                tracing::error!(%error, "prometheus_remote_write: the snapshot does not compress");
                continue;
            }
            Err(error) => {
                tracing::error!(%error, "prometheus_remote_write: rendering failed");
                continue;
            }
        };
        if batch.dropped > 0 {
            tracing::debug!(
                dropped = batch.dropped,
                "prometheus_remote_write: metrics left out (conflicting names or types)"
            );
        }
        if batch.samples == 0 {
            continue;
        }
        seq += 1;
        let dropped = queue.push(Pending {
            seq,
            body: Bytes::from(batch.body),
            samples: batch.samples,
        });
        if dropped > 0 {
            tracing::warn!(
                url = %options.target.url,
                dropped_total = queue.stats.remote_write_dropped.get(),
                "prometheus_remote_write: queue full, the oldest request dropped"
            );
        }
    }
}

/// What became of one attempt.
enum Outcome {
    Delivered,
    Refused(StatusCode, String),
    Retry(String),
}

async fn deliver(target: &Target, queue: &Queue, stats: &NetStats, shutdown: &CancellationToken) {
    let mut connection: Option<Connection> = None;
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    loop {
        let Some(pending) = queue.front() else {
            tokio::select! {
                () = queue.added.notified() => continue,
                () = shutdown.cancelled() => return,
            }
        };
        let attempt = tokio::time::timeout(
            REQUEST_TIMEOUT,
            post(&mut connection, target, pending.body.clone()),
        );
        let outcome = tokio::select! {
            outcome = attempt => match outcome {
                Ok(Ok((status, _))) if status.is_success() => Outcome::Delivered,
                Ok(Ok((status, answer)))
                    if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS =>
                {
                    Outcome::Refused(status, answer)
                }
                Ok(Ok((status, answer))) => Outcome::Retry(format!("{status}: {answer}")),
                Ok(Err(error)) => Outcome::Retry(format!("{error:#}")),
                Err(_) => Outcome::Retry(format!("no answer within {REQUEST_TIMEOUT:?}")),
            },
            () = shutdown.cancelled() => return,
        };
        let url = &target.url;
        match outcome {
            Outcome::Delivered | Outcome::Refused(..) => {
                queue.remove(pending.seq);
                backoff = MIN_BACKOFF;
                if std::mem::take(&mut failing) {
                    tracing::info!(%url, "prometheus_remote_write: the receiver answers again");
                }
            }
            Outcome::Retry(_) => {}
        }
        match outcome {
            Outcome::Delivered => stats.remote_write_samples.add(pending.samples as u64),
            Outcome::Refused(status, answer) => {
                stats.remote_write_refused.incr();
                tracing::warn!(
                    %url,
                    %status,
                    answer = answer.trim(),
                    "prometheus_remote_write: the receiver refused a request, dropped"
                );
            }
            Outcome::Retry(reason) => {
                connection = None;
                stats.remote_write_retries.incr();
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(
                        %url,
                        %reason,
                        "prometheus_remote_write: sending failed; retrying with backoff"
                    );
                } else {
                    tracing::debug!(%url, %reason, "prometheus_remote_write: retry failed");
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// A kept-alive HTTP/1.1 connection to the receiver; its driver task ends with it.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Connection {
    async fn open(target: &Target) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .with_context(|| format!("connecting to {}:{}", target.host, target.port))?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "prometheus_remote_write: connection closed");
            }
        });
        Ok(Connection { sender, driver })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// POSTs `body` on the kept connection (opening one if there is none or it closed);
/// the answer's status and the start of its text.
async fn post(
    connection: &mut Option<Connection>,
    target: &Target,
    body: Bytes,
) -> anyhow::Result<(StatusCode, String)> {
    if connection
        .as_ref()
        .is_none_or(|open| open.sender.is_closed())
    {
        *connection = Some(Connection::open(target).await?);
    }
    let open = connection.as_mut().expect("opened above");
    open.sender.ready().await?;
    let request = Request::post(target.path.clone())
        .header(HOST, target.authority.clone())
        .header(CONTENT_ENCODING, "snappy")
        .header(CONTENT_TYPE, "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", PROTOCOL_VERSION)
        .header(USER_AGENT, concat!("wasmond/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(body))?;
    let response = open.sender.send_request(request).await?;
    let status = response.status();
    let answer = match Limited::new(response.into_body(), ANSWER_LIMIT)
        .collect()
        .await
    {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(_) => {
            // Too long or cut off: the connection cannot carry the next request.
            *connection = None;
            String::new()
        }
    };
    Ok((status, answer))
}

#[cfg(test)]
mod tests;
