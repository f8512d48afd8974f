//! The `prometheus_listener`: serves the store's Prometheus exposition over HTTP/1.1
//! (hyper), read-only like the XML server.
//!
//! `GET` (or `HEAD`) of the configured path answers the exposition in the format the
//! `Accept` header prefers (OpenMetrics 1.0.0 or text 0.0.4, see
//! [`Format::negotiate`]); other paths get 404, other methods 405. The acl is applied at
//! accept, as on `tcp_accept_channel`: a denied peer's connection is closed unanswered.
//!
//! Like the XML server, the exposition is rendered on a blocking thread and every
//! connection is bounded: one request per connection (no keep-alive, so an idle
//! scraper holds nothing between scrapes), the whole exchange within
//! [`CONNECTION_TIMEOUT`], at most [`MAX_CONNECTIONS`] at once.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use super::listener::{self, Admission};
use crate::config::{Acl, PrometheusListener};
use crate::export::prometheus::{self, Format};
use crate::store::Store;

/// How long one connection may take, from accept to the last byte of the answer: the
/// request's headers, the rendering and the writing. A scraper on a slow link reads
/// megabytes well within it; a stalled one is cut off.
pub(crate) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; past it, new ones wait in the kernel's backlog.
pub(crate) const MAX_CONNECTIONS: usize = 16;

/// What one listener serves, and to whom.
#[derive(Debug, Clone)]
pub struct ExpositionOptions {
    pub path: String,
    pub acl: Option<Acl>,
}

impl ExpositionOptions {
    pub(crate) fn from_listener(listener: &PrometheusListener) -> Self {
        ExpositionOptions {
            path: listener.path.clone(),
            acl: listener.acl.clone(),
        }
    }
}

/// Serves `store` on `listener` until `shutdown` completes, then waits for the
/// connections in flight (each bounded by [`CONNECTION_TIMEOUT`]).
pub async fn run(
    listener: TcpListener,
    store: Arc<Store>,
    options: ExpositionOptions,
    shutdown: impl Future<Output = ()>,
) {
    let options = Arc::new(options);
    let admission = Admission {
        channel: "prometheus_listener",
        max_clients: MAX_CONNECTIONS,
        acl: options.acl.as_ref(),
        on_denied: &|| {},
    };
    listener::serve_until(listener, admission, shutdown, |stream, peer| {
        let served = serve_connection(stream, Arc::clone(&store), Arc::clone(&options));
        async move {
            if tokio::time::timeout(CONNECTION_TIMEOUT, served)
                .await
                .is_err()
            {
                tracing::info!(%peer, "prometheus_listener: client too slow, dropped");
            }
        }
    })
    .await;
}

async fn serve_connection(stream: TcpStream, store: Arc<Store>, options: Arc<ExpositionOptions>) {
    let service = hyper::service::service_fn(move |request| {
        let store = Arc::clone(&store);
        let options = Arc::clone(&options);
        async move { Ok::<_, Infallible>(answer(request, store, &options).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(CONNECTION_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "prometheus_listener: connection failed");
    }
}

async fn answer(
    request: Request<Incoming>,
    store: Arc<Store>,
    options: &ExpositionOptions,
) -> Response<Full<Bytes>> {
    if request.uri().path() != options.path {
        let text = format!("not found: the metrics are at {}\n", options.path);
        return plain(StatusCode::NOT_FOUND, text);
    }
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n".into());
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
    };
    let accept = request
        .headers()
        .get(ACCEPT)
        .and_then(|value| value.to_str().ok());
    let format = Format::negotiate(accept);
    let rendered =
        tokio::task::spawn_blocking(move || prometheus::render(&store, SystemTime::now(), format))
            .await;
    let exposition = match rendered {
        Ok(exposition) => exposition,
        Err(error) => {
            tracing::error!(%error, "prometheus_listener: rendering failed");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering failed\n".into(),
            );
        }
    };
    if exposition.dropped > 0 {
        tracing::debug!(
            dropped = exposition.dropped,
            "prometheus_listener: metrics left out (conflicting names or types)"
        );
    }
    let length = exposition.text.len();
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(exposition.text)
    };
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if head {
        headers.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config::{AclAccess, AclAction, Location};
    use crate::metric::{MetricMeta, MetricValue, Slope, ValueType};
    use crate::store::{HostRef, StoreConfig};

    fn store() -> Arc<Store> {
        let store = Store::new(StoreConfig::for_tests("HttpCluster"));
        let host = HostRef {
            name: "h1",
            ip: "10.0.0.1",
        };
        let now = SystemTime::now();
        let meta = MetricMeta {
            name: "pkts_in".into(),
            value_type: ValueType::Float,
            units: "packets/sec".into(),
            slope: Slope::Both,
            tmax: 60,
            dmax: 0,
            extras: vec![("DESC".into(), "Packets in per second".into())],
        };
        store.update_metadata(host, meta, now).unwrap();
        store
            .update_value(host, "pkts_in", MetricValue::Float(2.5), "%.2f", now)
            .unwrap();
        Arc::new(store)
    }

    struct Server {
        addr: SocketAddr,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(acl: Option<Acl>) -> Server {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let options = ExpositionOptions {
            path: "/metrics".into(),
            acl,
        };
        let task = tokio::spawn(run(
            listener,
            store(),
            options,
            stop.clone().cancelled_owned(),
        ));
        Server { addr, stop, task }
    }

    /// Sends `request` as written and reads the whole answer (the server closes).
    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8(answer).unwrap()
    }

    #[tokio::test]
    async fn answers_each_format_by_accept_header() {
        let server = start(None).await;
        let text = exchange(server.addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(text.contains("\r\n\r\n# HELP pkts_in Packets in per second (units: packets/sec)\n# TYPE pkts_in gauge\npkts_in{cluster=\"HttpCluster\",host=\"h1\",group=\"\",ganglia_name=\"pkts_in\"} 2.5\n"), "{text}");
        assert!(!text.contains("# EOF"));
        let om = exchange(
            server.addr,
            "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n",
        )
        .await;
        assert!(
            om.contains(
                "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"
            ),
            "{om}"
        );
        assert!(om.ends_with("# EOF\n"), "{om}");
        let head = exchange(server.addr, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        server.stop.cancel();
        server.task.await.unwrap();
    }

    #[tokio::test]
    async fn other_paths_and_methods_are_refused() {
        let server = start(None).await;
        let missing = exchange(server.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{missing}"
        );
        assert!(missing.ends_with("the metrics are at /metrics\n"));
        let post = exchange(
            server.addr,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{post}"
        );
        assert!(post.contains("allow: GET, HEAD\r\n"));
        let garbage = exchange(server.addr, "\x16\x03\x01 not http\r\n\r\n").await;
        assert!(garbage.starts_with("HTTP/1.1 400 Bad Request"), "{garbage}");
        server.stop.cancel();
        server.task.await.unwrap();
    }

    #[tokio::test]
    async fn a_denied_peer_gets_nothing() {
        let acl = Acl {
            default: AclAction::Allow,
            access: vec![AclAccess {
                ip: "127.0.0.0".parse().unwrap(),
                mask: 8,
                action: AclAction::Deny,
                declared_at: Location::whole_file("test.conf"),
            }],
        };
        let server = start(Some(acl)).await;
        // The connection is closed at once: the request may even be reset unread.
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let _ = stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        assert!(answer.is_empty(), "{answer:?}");
        server.stop.cancel();
        server.task.await.unwrap();
    }

    /// A client that connects and sends nothing is cut off; shutdown does not wait
    /// longer than the connection timeout for it.
    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_cut_off() {
        let server = start(None).await;
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            CONNECTION_TIMEOUT + Duration::from_secs(1),
            silent.read_to_end(&mut answer),
        )
        .await;
        assert!(read.is_ok(), "the server closed the silent connection");
        server.stop.cancel();
        server.task.await.unwrap();
    }
}
