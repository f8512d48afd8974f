//! The tail of a module's stderr, kept so that a trap can say why it happened: a
//! Rust guest prints its panic message there just before it traps. Only the last
//! `MAX_STDERR_TAIL_BYTES` are kept; nothing is forwarded anywhere else.

use std::sync::{Arc, Mutex};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi_io::bytes::Bytes;
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{OutputStream, StreamResult};

use super::error::truncate_to;

/// Bytes of a module's stderr kept to explain a trap.
pub const MAX_STDERR_TAIL_BYTES: usize = 2048;
/// Bytes of that tail shown in an error message.
const MAX_SHOWN_BYTES: usize = 512;
/// Stderr accepts this much per write permit; more than that waits for nothing.
const WRITE_PERMIT_BYTES: usize = 64 * 1024;

/// A module's stderr: a bounded buffer shared by every stream the guest opens.
#[derive(Clone, Default)]
pub(crate) struct StderrTail(Arc<Mutex<Vec<u8>>>);

impl StderrTail {
    fn append(&self, bytes: &[u8]) {
        let mut tail = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bytes = &bytes[bytes.len().saturating_sub(MAX_STDERR_TAIL_BYTES)..];
        let overflow = (tail.len() + bytes.len()).saturating_sub(MAX_STDERR_TAIL_BYTES);
        tail.drain(..overflow);
        tail.extend_from_slice(bytes);
    }

    /// The last two lines written (a panic's location and message), on one line,
    /// and forgets everything written so far.
    pub(crate) fn take_summary(&self) -> Option<String> {
        let tail = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        summarize(&String::from_utf8_lossy(&tail))
    }
}

fn summarize(text: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    let last = &lines[lines.len().saturating_sub(2)..];
    if last.is_empty() {
        return None;
    }
    let joined = last.join(" ");
    let shown: String = truncate_to(&joined, MAX_SHOWN_BYTES)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    Some(shown)
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    /// Writes land in the buffer synchronously, so the tail is complete when a
    /// trap follows.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for StderrTail {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        bytes: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(bytes);
        std::task::Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_panic_is_summarized_on_one_line() {
        let tail = StderrTail::default();
        tail.append(b"\nthread '<unnamed>' panicked at src/lib.rs:81:24:\nboom\n");
        tail.append(
            b"note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
        );
        assert_eq!(
            tail.take_summary().as_deref(),
            Some("thread '<unnamed>' panicked at src/lib.rs:81:24: boom")
        );
        assert_eq!(
            tail.take_summary(),
            None,
            "taking the summary forgets the tail"
        );
    }

    #[test]
    fn only_the_tail_is_kept() {
        let tail = StderrTail::default();
        tail.append(&vec![b'a'; 3 * MAX_STDERR_TAIL_BYTES]);
        tail.append(b"\nlast line");
        assert_eq!(tail.0.lock().unwrap().len(), MAX_STDERR_TAIL_BYTES);
        assert_eq!(tail.take_summary().unwrap().len(), MAX_SHOWN_BYTES);
    }
}
