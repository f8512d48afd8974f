//! Compiling a component in a child process, under a bound on its time and memory.
//!
//! The caps of [`super::inspect`] bound how big a compile can be, but a component within
//! them can still make Cranelift run for minutes and grow by a gigabyte, and nothing
//! stops a compile once it has started in the daemon's own process. So the daemon
//! re-executes its own binary (`/proc/self/exe`, which stays the running program even if
//! the file is replaced) with the hidden `compile-child` command. The parent hands the
//! `.wasm` bytes on the child's stdin; the child compiles them with the engine settings
//! of the daemon ([`super::engine_config`]) and writes the serialized artifact on its
//! stdout, which the parent deserializes as it would a cached artifact.
//!
//! The child runs:
//! - under `RLIMIT_DATA` of the module's `compile_memory_mb` (soft and hard, set before
//!   `exec`): a compile that needs more fails its allocation and dies;
//! - under the module's `deadline_compile_ms` of wall-clock time, after which the parent
//!   kills it (by its PID, which is not reaped until then);
//! - at a lower CPU priority (nice 10), so that a long compile does not delay the
//!   modules that already run, and with at most [`MAX_COMPILE_THREADS`] Cranelift
//!   threads, so that its memory does not grow with the host's core count;
//! - with `PR_SET_PDEATHSIG`, so that it dies with the daemon, an empty environment,
//!   and, once started, a Landlock ruleset that grants it no file access at all: it
//!   needs only its stdin and stdout.
//!
//! Either bound crossed refuses the module with [`LoadError::CompileBound`], naming the
//! file and the bound; a child that crashes or is killed otherwise is a refusal too
//! ([`LoadError::Compile`]), never a daemon failure. At most [`MAX_CONCURRENT_COMPILES`]
//! children run at a time (a load waits for a slot before its deadline starts), so
//! compiles hold at most that many times one module's memory bound.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::MAX_WASM_FILE_BYTES;
use super::error::{self, CompileBoundHit, LoadError};
use super::limits::Limits;

/// The hidden command of the `wasmond` binary that compiles one component.
pub const CHILD_COMMAND: &str = "compile-child";

/// Compile children running at once. Each can use its module's memory bound and, through
/// Cranelift's threads, every core; more at once would only share the same cores.
pub(crate) const MAX_CONCURRENT_COMPILES: usize = 2;

/// Threads one compile child uses (Cranelift compiles functions in parallel, each
/// holding its own working memory).
pub(crate) const MAX_COMPILE_THREADS: usize = 4;

/// Bytes of serialized artifact the parent accepts from a child. The Python interpreter's
/// is about 40 MB; a component within the compile caps stays well below.
const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// Bytes of a child's stderr kept to explain its failure.
const MAX_STDERR_BYTES: u64 = 4096;

/// The child's exit status when the component does not compile (the message is on stdout).
const EXIT_DOES_NOT_COMPILE: i32 = 3;

/// The nice value of a compile child: below the daemon's modules, not starved.
const CHILD_NICE: libc::c_int = 10;

/// How often the parent looks whether the child has finished: compiles take hundreds of
/// milliseconds to minutes.
const POLL: Duration = Duration::from_millis(10);

/// Where components are compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Compiler {
    /// In this process, with no bound on time or memory (tests, tools, embedding).
    #[default]
    InProcess,
    /// In a child process, `exe compile-child`, under each module's compile bounds
    /// (`Limits::deadline_compile` and `Limits::compile_memory_bytes`).
    Child { exe: PathBuf },
}

impl Compiler {
    /// Children of this very program (the `wasmond` binary), as the daemon, `check` and
    /// `module run` compile.
    pub fn this_program() -> Compiler {
        Compiler::Child {
            exe: PathBuf::from("/proc/self/exe"),
        }
    }
}

/// A counting semaphore for the compile children.
struct Slots {
    running: Mutex<usize>,
    freed: Condvar,
}

static SLOTS: Slots = Slots {
    running: Mutex::new(0),
    freed: Condvar::new(),
};

struct Slot;

impl Slots {
    fn acquire(&'static self) -> Slot {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        while *running >= MAX_CONCURRENT_COMPILES {
            running = self
                .freed
                .wait(running)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *running += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *SLOTS.running.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        SLOTS.freed.notify_one();
    }
}

/// The contents whose compile crossed a bound, and the bound: loading one again (a
/// module is retried with backoff) under no larger a bound is refused at once instead
/// of burning that bound again. A changed file is a new content and compiles.
#[derive(Default)]
pub(crate) struct Refusals {
    hits: Mutex<HashMap<[u8; 32], CompileBoundHit>>,
}

/// Contents remembered at most; past it the memory starts over (each entry only saves
/// one compile).
const MAX_REFUSALS: usize = 1024;

impl Refusals {
    /// The bound `content_hash` crossed before, if `limits` are no larger.
    pub(crate) fn check(
        &self,
        content_hash: &[u8; 32],
        limits: &Limits,
    ) -> Option<CompileBoundHit> {
        let hits = self.hits.lock().unwrap_or_else(PoisonError::into_inner);
        let hit = *hits.get(content_hash)?;
        let again = match hit {
            CompileBoundHit::Deadline(deadline) => limits.deadline_compile <= deadline,
            CompileBoundHit::Memory { mb } => limits.compile_memory_bytes >> 20 <= mb,
        };
        again.then_some(hit)
    }

    pub(crate) fn remember(&self, content_hash: &[u8; 32], hit: CompileBoundHit) {
        let mut hits = self.hits.lock().unwrap_or_else(PoisonError::into_inner);
        if hits.len() >= MAX_REFUSALS {
            hits.clear();
        }
        hits.insert(*content_hash, hit);
    }
}

/// What a child left when it ended.
struct Outcome {
    /// `None`: killed at the deadline.
    status: Option<ExitStatus>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Compiles the component in `bytes` (read from `wasm`) in a child process of `exe`
/// under the compile bounds of `limits`; returns the serialized artifact.
pub(crate) fn compile_in_child(
    exe: &Path,
    wasm: &Path,
    bytes: &[u8],
    limits: &Limits,
) -> Result<Vec<u8>, LoadError> {
    let failed = |message: String| LoadError::Compile {
        path: wasm.to_path_buf(),
        message,
    };
    let _slot = SLOTS.acquire();
    let mut child = spawn(exe, limits.compile_memory_bytes).map_err(|error| {
        failed(format!(
            "cannot start the compiler process {}: {error}",
            exe.display()
        ))
    })?;
    let outcome = run(&mut child, bytes, limits.deadline_compile)
        .map_err(|error| failed(format!("waiting for the compiler process: {error}")))?;
    let bound = |hit| LoadError::CompileBound {
        path: wasm.to_path_buf(),
        hit,
    };
    let Some(status) = outcome.status else {
        return Err(bound(CompileBoundHit::Deadline(limits.deadline_compile)));
    };
    let stderr = String::from_utf8_lossy(&outcome.stderr);
    let stdout = || {
        error::log_safe(
            &String::from_utf8_lossy(&outcome.stdout),
            error::MAX_TRAP_LINE_BYTES,
            error::MAX_TRAP_MESSAGE_BYTES,
        )
    };
    let out_of_memory = |text: &str| {
        // Rust's allocation failure message, and an mmap refused by the limit.
        text.contains("memory allocation of") || text.contains("Cannot allocate memory")
    };
    let memory = || {
        bound(CompileBoundHit::Memory {
            mb: limits.compile_memory_bytes >> 20,
        })
    };
    match status.code() {
        Some(0) => Ok(outcome.stdout),
        Some(EXIT_DOES_NOT_COMPILE) if out_of_memory(&stdout()) => Err(memory()),
        // Validation errors may quote the module's own names: one safe line.
        Some(EXIT_DOES_NOT_COMPILE) => Err(failed(stdout())),
        _ if out_of_memory(&stderr) => Err(memory()),
        _ => {
            let how = match status.signal() {
                Some(signal) => format!("was killed by signal {signal}"),
                None => format!("failed ({status})"),
            };
            let said = error::log_safe(
                &stderr,
                error::MAX_TRAP_LINE_BYTES,
                error::MAX_TRAP_MESSAGE_BYTES,
            );
            Err(failed(format!("the compiler process {how}: {said}")))
        }
    }
}

/// Starts `exe compile-child` with its data segment limited to `memory_bytes`.
fn spawn(exe: &Path, memory_bytes: u64) -> std::io::Result<Child> {
    let mut command = Command::new(exe);
    command
        .arg(CHILD_COMMAND)
        .env_clear()
        .env("RAYON_NUM_THREADS", compile_threads().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let limit = libc::rlimit {
        rlim_cur: memory_bytes as libc::rlim_t,
        rlim_max: memory_bytes as libc::rlim_t,
    };
    // SAFETY: between fork and exec the closure only makes system calls that are
    // async-signal-safe (setrlimit, prctl, setpriority) on values owned by the closure.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_DATA, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The thread that forks waits for the child, so it outlives it unless the
            // daemon dies: then the child must not compile on alone.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            libc::setpriority(libc::PRIO_PROCESS, 0, CHILD_NICE);
            Ok(())
        });
    }
    command.spawn()
}

fn compile_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_COMPILE_THREADS)
}

/// Feeds `bytes` to the child, collects what it writes, and waits for it to end until
/// `deadline` from now, then kills it.
fn run(child: &mut Child, bytes: &[u8], deadline: Duration) -> std::io::Result<Outcome> {
    let started = Instant::now();
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    std::thread::scope(|scope| {
        // A child that dies early closes the pipe: the write then fails, which its status
        // explains better.
        scope.spawn(move || {
            let _ = stdin.write_all(bytes);
        });
        let stdout = scope.spawn(move || read_up_to(stdout, MAX_ARTIFACT_BYTES));
        let stderr = scope.spawn(move || read_up_to(stderr, MAX_STDERR_BYTES));
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            let elapsed = started.elapsed();
            if elapsed >= deadline {
                // Not reaped yet, so the PID is still this child's.
                child.kill()?;
                child.wait()?;
                break None;
            }
            std::thread::sleep(POLL.min(deadline - elapsed));
        };
        Ok(Outcome {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    })
}

/// Reads `from` to its end, keeping at most `max` bytes (and draining the rest, so the
/// writer is never blocked on a full pipe).
fn read_up_to(mut from: impl Read, max: u64) -> Vec<u8> {
    let mut kept = Vec::new();
    let _ = from.by_ref().take(max).read_to_end(&mut kept);
    let _ = std::io::copy(&mut from, &mut std::io::sink());
    kept
}

/// The `compile-child` command: compiles the component on stdin, writes the serialized
/// artifact on stdout. Exits with [`EXIT_DOES_NOT_COMPILE`] and the message on stdout when
/// the component does not compile, 1 on any other failure.
pub fn child_main() -> ExitCode {
    deny_all_file_access();
    let mut bytes = Vec::new();
    if let Err(error) = std::io::stdin()
        .lock()
        .take(MAX_WASM_FILE_BYTES)
        .read_to_end(&mut bytes)
    {
        eprintln!("reading the component from stdin: {error}");
        return ExitCode::FAILURE;
    }
    let engine = match Engine::new(&super::engine_config()) {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("creating the wasmtime engine: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let (code, output) = match Component::new(&engine, &bytes).and_then(|c| c.serialize()) {
        Ok(artifact) => (ExitCode::SUCCESS, artifact),
        Err(error) => (
            ExitCode::from(EXIT_DOES_NOT_COMPILE as u8),
            format!("{error:#}").into_bytes(),
        ),
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_all(&output).and_then(|()| stdout.flush()) {
        eprintln!("writing the artifact: {error}");
        return ExitCode::FAILURE;
    }
    code
}

/// The child needs no file: whatever a compiler bug lets a component do, it cannot open
/// one. Best effort, like the daemon's own ruleset.
fn deny_all_file_access() {
    use landlock::{ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr};
    let _ = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(ABI::V5))
        .and_then(|ruleset| ruleset.create())
        .and_then(|ruleset| ruleset.restrict_self());
}
