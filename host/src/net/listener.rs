//! What every TCP listener of the daemon does alike (`tcp_accept_channel`,
//! `interactive_channel`, `prometheus_listener`), shaped like mini-redis's server: the
//! accept loop races a shutdown future; at most `max_clients` connections are served at
//! once, the others wait in the kernel's backlog rather than in a task each; a failed
//! `accept` (out of descriptors) pauses the loop instead of spinning; the acl is applied
//! at accept, a denied peer's connection closed unanswered; each connection runs on its
//! own task, and the shutdown waits for those in flight (each bounded by its listener).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::acl;
use crate::config::Acl;

/// Pause after a failed `accept` before the next one, so the loop does not spin while
/// the condition (e.g. no file descriptor left) lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How one listener admits its clients.
pub(crate) struct Admission<'a> {
    /// The config section's name, for logs.
    pub channel: &'static str,
    pub max_clients: usize,
    pub acl: Option<&'a Acl>,
    /// Called for each peer the acl denies (a counter, for one).
    pub on_denied: &'a (dyn Fn() + Sync),
}

/// Serves `listener` until `shutdown` completes, each admitted connection on a task of
/// its own running `serve(stream, peer)`; then closes the listener and waits for the
/// connections in flight.
pub(crate) async fn serve_until<S, F>(
    listener: TcpListener,
    admission: Admission<'_>,
    shutdown: impl Future<Output = ()>,
    serve: S,
) where
    S: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let clients = TaskTracker::new();
    tokio::select! {
        () = accept_loop(&listener, &admission, &clients, serve) => {}
        () = shutdown => {}
    }
    drop(listener);
    clients.close();
    clients.wait().await;
}

async fn accept_loop<S, F>(
    listener: &TcpListener,
    admission: &Admission<'_>,
    clients: &TaskTracker,
    serve: S,
) where
    S: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let channel = admission.channel;
    let limit = Arc::new(Semaphore::new(admission.max_clients.max(1)));
    loop {
        // A free slot first, then the accept: excess clients queue in the backlog.
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            return; // The semaphore is never closed.
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "{channel}: accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        if !acl::allows(admission.acl, peer.ip()) {
            (admission.on_denied)();
            tracing::debug!(%peer, "{channel}: client denied by acl");
            continue;
        }
        let served = serve(stream, peer);
        clients.spawn(async move {
            served.await;
            drop(permit);
        });
    }
}
