//! What a module's `Store` carries: its WASI context (built from the grants, deny
//! by default), its resource limiter, and its log with size cap and rate limit.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::Grants;
use super::each::Answers;
use super::epoch::Watch;
use super::error::{LoadError, truncate_to};
use super::limits::{
    LOG_BURST_LINES, LOG_LINES_PER_SECOND, Limiter, Limits, MAX_LOG_LINE_BYTES, MAX_RANDOM_BYTES,
};
use super::python::PythonModule;
use super::stderr::StderrTail;

/// The data of one module instance's store.
pub(crate) struct HostState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
    /// When the running callback's deadline passes; host waits give up then.
    pub(crate) deadline: Instant,
    pub(crate) stderr: StderrTail,
    pub(crate) log: ModuleLog,
    /// Whether the `filesystem` import answers (see `Grants::filesystem_usage`).
    pub(crate) filesystem_usage: bool,
    /// The source the `python` import hands the bundled interpreter, for a module
    /// loaded from a `.py` file.
    pub(crate) python: Option<Arc<PythonModule>>,
    /// The granted read-only directories, as the guest sees them.
    pub(crate) readable_dirs: Vec<String>,
    /// The answers of the `handle-each` call running, if one is.
    pub(crate) answers: Option<Answers>,
    /// Where a callback in flight shows the epoch ticker its deadline; a store that
    /// runs no callback (the load's check of the grants) has none.
    pub(crate) watch: Option<Watch>,
}

impl HostState {
    pub(crate) fn new(
        module: Arc<str>,
        limits: &Limits,
        grants: &Grants,
    ) -> Result<HostState, LoadError> {
        let stderr = StderrTail::default();
        Ok(HostState {
            wasi: wasi_context(grants, &stderr)?,
            table: ResourceTable::new(),
            limiter: Limiter::new(limits),
            deadline: Instant::now(),
            stderr,
            log: ModuleLog::new(module),
            filesystem_usage: grants.filesystem_usage,
            python: None,
            readable_dirs: grants
                .read_only_dirs
                .iter()
                .map(|dir| dir.to_string_lossy().into_owned())
                .collect(),
            answers: None,
            watch: None,
        })
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A WASI context that grants nothing but what `grants` lists: no preopens, no
/// environment, no arguments, no network, stdin closed, stdout discarded and
/// stderr kept in `stderr` to explain traps.
fn wasi_context(grants: &Grants, stderr: &StderrTail) -> Result<WasiCtx, LoadError> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        // File reads run on the calling thread (a module worker), not on a tokio
        // blocking thread: a /proc read then costs a few µs instead of ~50.
        .allow_blocking_current_thread(true)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .max_random_size(MAX_RANDOM_BYTES);
    for dir in &grants.read_only_dirs {
        let guest_path = dir.to_string_lossy();
        builder
            .preopened_dir(dir, guest_path.as_ref(), FsPerms::ReadOnly)
            .map_err(|error| LoadError::Grant {
                what: format!("read-only directory {}", dir.display()),
                message: format!("{error:#}"),
            })?;
    }
    builder.envs(&grants.env);
    if grants.inherit_stdio {
        builder.inherit_stdout().inherit_stderr();
    } else {
        builder.stderr(stderr.clone());
    }
    Ok(builder.build())
}

/// Counts of a module's log lines since they were last taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LogCounts {
    pub(crate) written: u64,
    pub(crate) dropped: u64,
    pub(crate) truncated: u64,
}

/// A module's log: each line cut to `MAX_LOG_LINE_BYTES`, control characters
/// escaped, and a token bucket (`LOG_BURST_LINES`, refilled at
/// `LOG_LINES_PER_SECOND`) that drops what a flood writes beyond it.
pub(crate) struct ModuleLog {
    module: Arc<str>,
    tokens: f64,
    refilled_at: Instant,
    dropped_since_last_line: u64,
    counts: LogCounts,
    /// What the sandbox refused the module (the `python` import's `refused`), each
    /// once, at most [`MAX_REFUSED`]; kept across re-instantiations like the log.
    refused: Vec<String>,
}

/// The most refusals a module's log remembers (and logs).
pub(crate) const MAX_REFUSED: usize = 64;

impl ModuleLog {
    fn new(module: Arc<str>) -> ModuleLog {
        ModuleLog {
            module,
            tokens: f64::from(LOG_BURST_LINES),
            refilled_at: Instant::now(),
            dropped_since_last_line: 0,
            counts: LogCounts::default(),
            refused: Vec::new(),
        }
    }

    /// Logs and remembers a refusal, once per text (cut like a log line).
    pub(crate) fn refuse(&mut self, what: &str) {
        let (what, _) = sanitize_line(what, MAX_LOG_LINE_BYTES);
        if self.refused.len() < MAX_REFUSED && !self.refused.contains(&what) {
            self.write(tracing::Level::WARN, &format!("refused: {what}"));
            self.refused.push(what);
        }
    }

    pub(crate) fn refused(&self) -> &[String] {
        &self.refused
    }

    pub(crate) fn write(&mut self, level: tracing::Level, message: &str) {
        if !self.take_token(Instant::now()) {
            self.counts.dropped += 1;
            self.dropped_since_last_line += 1;
            return;
        }
        if self.dropped_since_last_line > 0 {
            let dropped = std::mem::take(&mut self.dropped_since_last_line);
            tracing::warn!(target: "wasmond::module", module = %self.module, "rate limit dropped {dropped} log lines");
        }
        let (line, truncated) = sanitize_line(message, MAX_LOG_LINE_BYTES);
        self.counts.written += 1;
        self.counts.truncated += u64::from(truncated);
        emit(level, &self.module, &line);
    }

    /// Returns the counts since the last call and starts counting afresh.
    pub(crate) fn take_counts(&mut self) -> LogCounts {
        std::mem::take(&mut self.counts)
    }

    fn take_token(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.refilled_at = now;
        let refill = elapsed * f64::from(LOG_LINES_PER_SECOND);
        self.tokens = (self.tokens + refill).min(f64::from(LOG_BURST_LINES));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn emit(level: tracing::Level, module: &str, line: &str) {
    match level {
        tracing::Level::ERROR => tracing::error!(target: "wasmond::module", module, "{line}"),
        tracing::Level::WARN => tracing::warn!(target: "wasmond::module", module, "{line}"),
        tracing::Level::INFO => tracing::info!(target: "wasmond::module", module, "{line}"),
        tracing::Level::DEBUG => tracing::debug!(target: "wasmond::module", module, "{line}"),
        tracing::Level::TRACE => tracing::trace!(target: "wasmond::module", module, "{line}"),
    }
}

/// Cuts `message` to `max` bytes and escapes control characters, so that one guest
/// line stays one host log line. Returns whether it was cut.
fn sanitize_line(message: &str, max: usize) -> (String, bool) {
    let kept = truncate_to(message, max);
    let mut line = String::with_capacity(kept.len());
    for c in kept.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    let truncated = kept.len() < message.len();
    if truncated {
        line.push_str(&format!(" [cut {} bytes]", message.len() - kept.len()));
    }
    (line, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines_are_cut_and_escaped() {
        assert_eq!(sanitize_line("plain", 10), ("plain".to_string(), false));
        assert_eq!(
            sanitize_line("a\nb\x1b[31m", 20),
            ("a\\nb\\u{1b}[31m".to_string(), false)
        );
        assert_eq!(
            sanitize_line("abcdef", 4),
            ("abcd [cut 2 bytes]".to_string(), true)
        );
    }

    #[test]
    fn a_flood_is_cut_to_the_burst_then_refills_over_time() {
        let mut log = ModuleLog::new("m".into());
        let start = log.refilled_at;
        let granted = (0..1000).filter(|_| log.take_token(start)).count();
        assert_eq!(granted, LOG_BURST_LINES as usize);
        let one_second_later = start + Duration::from_secs(1);
        let refilled = (0..1000)
            .filter(|_| log.take_token(one_second_later))
            .count();
        assert_eq!(refilled, LOG_LINES_PER_SECOND as usize);
    }

    #[test]
    fn dropped_lines_are_counted() {
        let mut log = ModuleLog::new("m".into());
        for _ in 0..(LOG_BURST_LINES + 5) {
            log.write(tracing::Level::INFO, "line");
        }
        let counts = log.take_counts();
        // A few tokens may refill while the loop runs.
        assert!(counts.written >= u64::from(LOG_BURST_LINES));
        assert_eq!(
            counts.written + counts.dropped,
            u64::from(LOG_BURST_LINES + 5)
        );
        assert_eq!(log.take_counts(), LogCounts::default());
    }
}
