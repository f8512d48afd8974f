//! The `interactive_channel`: gmetad's interactive port on wasmond's store. A client
//! sends one request line (a path, see `export::interactive`) and gets the XML of that
//! subtree, then the connection is closed; a bad request is closed unanswered, as gmetad
//! does.
//!
//! Bounded where gmetad is not: the line is read within [`REQUEST_TIMEOUT`] and up to
//! `MAX_REQUEST_LINE` bytes (gmetad blocks a server thread on a silent client), the
//! answer is rendered on a blocking thread and written within the write timeout, and at
//! most [`MAX_CLIENTS`] are served at once. The acl is applied at accept, as on
//! `tcp_accept_channel`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::listener::{self, Admission};
use crate::config::Acl;
use crate::export::interactive::{self, MAX_REQUEST_LINE};
use crate::store::Store;

/// How long a client may take to send its request line.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to read its answer.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Clients served at once; past it, new ones wait in the kernel's backlog.
pub(crate) const MAX_CLIENTS: usize = 16;

/// Serves `store` on `listener` until `shutdown` completes, then waits for the clients
/// in flight (each bounded by the timeouts).
pub async fn run(
    listener: TcpListener,
    store: Arc<Store>,
    acl: Option<Acl>,
    shutdown: impl Future<Output = ()>,
) {
    let admission = Admission {
        channel: "interactive_channel",
        max_clients: MAX_CLIENTS,
        acl: acl.as_ref(),
        on_denied: &|| {},
    };
    listener::serve_until(listener, admission, shutdown, |stream, peer| {
        serve_client(stream, peer, Arc::clone(&store))
    })
    .await;
}

async fn serve_client(mut stream: TcpStream, peer: SocketAddr, store: Arc<Store>) {
    let line = match tokio::time::timeout(REQUEST_TIMEOUT, read_line(&mut stream)).await {
        Ok(Some(line)) => line,
        Ok(None) => {
            tracing::debug!(%peer, "interactive_channel: request line too long or unreadable");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "interactive_channel: no request line in time");
            return;
        }
    };
    let request = match interactive::parse_request(&line) {
        Ok(request) => request,
        Err(reason) => {
            tracing::debug!(%peer, %reason, request = %line.escape_debug(), "interactive_channel: bad request");
            return;
        }
    };
    let rendered = tokio::task::spawn_blocking(move || {
        interactive::answer(&store, &request, SystemTime::now())
    })
    .await;
    let Ok(answer) = rendered else {
        tracing::error!(%peer, "interactive_channel: rendering failed");
        return;
    };
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::debug!(%peer, "interactive_channel: client went away or read too slowly");
    }
}

/// Reads up to the first `\n` or `\r` (or the end of input), as gmetad's `readline`:
/// `None` when the line outgrows [`MAX_REQUEST_LINE`] or the read fails. Bytes are taken
/// as ISO-8859-1, one character each.
async fn read_line(stream: &mut TcpStream) -> Option<String> {
    let mut line = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        let got = &chunk[..n];
        if let Some(end) = got.iter().position(|&b| b == b'\n' || b == b'\r') {
            line.extend_from_slice(&got[..end]);
            break;
        }
        line.extend_from_slice(got);
        if line.len() >= MAX_REQUEST_LINE {
            return None;
        }
    }
    if line.len() > MAX_REQUEST_LINE {
        return None;
    }
    Some(line.iter().map(|&b| char::from(b)).collect())
}
