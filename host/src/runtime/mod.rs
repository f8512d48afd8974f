//! The sandboxed module runtime: loads metric modules (WebAssembly components of
//! the `wasmond:metric/metric-module` world) and runs their callbacks under limits.
//!
//! It owns the wasmtime `Engine`, the one `bindgen!`, the linker (WASI p2 plus our
//! `log` import), the compile cache (on disk, and in memory: one compiled artifact per
//! distinct `.wasm` content, shared by every module loaded from it), the epoch ticker
//! (which ticks only while a callback runs), instance lifecycle, typed errors and
//! per-module stats. Every module is treated as hostile: each instance
//! has its own `Store` with a fuel budget and a wall-clock deadline per callback, a
//! memory cap and caps on tables and instances; every host allocation whose size a
//! guest controls is capped (see [`limits`]); WASI grants nothing unless
//! [`Grants`] says so. It knows nothing of config syntax, scheduling or wire formats.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use wasmond::runtime::{Runtime, RuntimeConfig, Sandbox};
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let module = runtime.load("example", "example.wasm".as_ref(), Sandbox::default())?;
//! let mut instance = module.start(vec![("step".into(), "2".into())])?;
//! for descriptor in instance.descriptors().to_vec() {
//!     println!("{} = {:?}", descriptor.name, instance.handle(&descriptor.name)?);
//! }
//! instance.cleanup()?;
//! # Ok(())
//! # }
//! ```

mod artifacts;
mod bindings;
mod blocking;
mod cache;
pub mod compiler;
mod digests;
mod each;
mod epoch;
mod error;
mod filesystem;
pub mod inspect;
mod instance;
pub mod limits;
mod python;
mod state;
mod stats;
mod stderr;
mod validate;

use std::borrow::Cow;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use artifacts::Artifacts;
use bindings::MetricModulePre;
use cache::CompileCache;
use epoch::EpochTicker;
use python::{PythonModule, Translations};
use state::HostState;

pub use cache::default_cache_dir;
pub use compiler::Compiler;
pub(crate) use digests::file_digest;
pub use epoch::DEFAULT_EPOCH_TICK;
pub use error::{
    Callback, CompileBoundHit, ErrorKind, InvalidOutput, LimitHit, LoadError, ModuleError,
};
pub use instance::ModuleInstance;
pub use limits::Limits;
pub use python::MAX_SOURCE_BYTES as MAX_PYTHON_SOURCE_BYTES;
pub use stats::{CallStats, ErrorCounts, ModuleStats};
pub use stderr::MAX_STDERR_TAIL_BYTES;

/// The largest `.wasm` file the runtime reads (a Python guest is about 20 MB).
pub(crate) const MAX_WASM_FILE_BYTES: u64 = 256 << 20;

/// How the runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` compiles every load afresh.
    /// Defaults to [`default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// How often the epoch ticker increments again while a callback runs past its
    /// deadline without trapping yet (it waits in a host call, which gives up at the
    /// deadline itself).
    pub epoch_tick: Duration,
    /// Where components are compiled: in this process (the default, unbounded), or in
    /// a child process under each module's compile bounds.
    pub compiler: Compiler,
}

impl Default for RuntimeConfig {
    fn default() -> RuntimeConfig {
        RuntimeConfig {
            cache_dir: default_cache_dir(),
            epoch_tick: DEFAULT_EPOCH_TICK,
            compiler: Compiler::default(),
        }
    }
}

/// What a module runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// A component of the `metric-module` world.
    Wasm(PathBuf),
    /// A gmond python module (`NAME.py`), run by `interpreter`, the bundled Python
    /// interpreter component ([`PYTHON_INTERPRETER`]), to which the host hands the
    /// source through the `python` import.
    Python {
        source: PathBuf,
        interpreter: PathBuf,
    },
}

impl Code {
    /// The component file that is compiled and instantiated.
    pub fn component(&self) -> &Path {
        match self {
            Code::Wasm(path) => path,
            Code::Python { interpreter, .. } => interpreter,
        }
    }
}

/// The file name of the bundled Python interpreter component in a module directory.
pub const PYTHON_INTERPRETER: &str = "gmond_python.wasm";

/// What a module may do and consume. `Default` is safe for an untrusted tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sandbox {
    pub limits: Limits,
    pub grants: Grants,
}

/// What a module is granted beyond computing. The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Host directories the module may read, each seen in the guest at the same path.
    pub read_only_dirs: Vec<PathBuf>,
    /// Environment variables the module sees.
    pub env: Vec<(String, String)>,
    /// Whether the module's stdout and stderr go to the host's. If not, stdout is
    /// discarded and the tail of stderr explains traps (a panic's message).
    pub inherit_stdio: bool,
    /// Whether the module may ask the size and free space of the host's local
    /// mounted file systems (the `filesystem` import).
    pub filesystem_usage: bool,
}

/// The engine, linker, compile cache and epoch ticker. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
}

/// What every loaded module needs from the runtime; held by each module so that
/// the epoch ticker lives while any module can still run.
struct Shared {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<CompileCache>,
    compiler: Compiler,
    refusals: compiler::Refusals,
    /// The compiled, type-checked component of each `.wasm` content in use.
    artifacts: Artifacts<MetricModulePre<HostState>>,
    ticker: EpochTicker,
    translations: Translations,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let engine = Engine::new(&engine_config())
            .map_err(|error| anyhow::Error::from(error).context("creating the wasmtime engine"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| blocking::add_deadline_aware_poll(&mut linker))
            .and_then(|()| bindings::add_to_linker(&mut linker))
            .and_then(|()| each::add_to_linker(&mut linker))
            .map_err(|error| {
                anyhow::Error::from(error).context("linking WASI and the log import")
            })?;
        let cache = config
            .cache_dir
            .as_deref()
            .and_then(|dir| open_cache(dir, &engine));
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)
            .context("starting the epoch ticker thread")?;
        // Beside the compiled code, only where the cache itself could be opened.
        let translations = Translations::new(
            config
                .cache_dir
                .filter(|_| cache.is_some())
                .map(|dir| dir.join("python")),
        );
        Ok(Runtime {
            shared: Arc::new(Shared {
                engine,
                linker,
                cache,
                compiler: config.compiler,
                refusals: compiler::Refusals::default(),
                artifacts: Artifacts::default(),
                ticker,
                translations,
            }),
        })
    }

    /// Reads, compiles (or fetches from the cache) and type-checks the component at
    /// `wasm`, ready to be started under `sandbox`. A `.wasm` whose content is
    /// already loaded (by this or another module) is not compiled again: both
    /// instantiate from the same artifact.
    pub fn load(
        &self,
        name: &str,
        wasm: &Path,
        sandbox: Sandbox,
    ) -> Result<LoadedModule, ModuleError> {
        self.load_module(name, wasm, None, sandbox)
    }

    /// Loads `code`: [`Runtime::load`] for a component, or the gmond python module's
    /// source run by the bundled Python interpreter component (see [`Code`]).
    pub fn load_code(
        &self,
        name: &str,
        code: &Code,
        sandbox: Sandbox,
    ) -> Result<LoadedModule, ModuleError> {
        match code {
            Code::Wasm(path) => self.load_module(name, path, None, sandbox),
            Code::Python {
                source,
                interpreter,
            } => self.load_module(name, interpreter, Some(source), sandbox),
        }
    }

    fn load_module(
        &self,
        name: &str,
        wasm: &Path,
        python_source: Option<&Path>,
        sandbox: Sandbox,
    ) -> Result<LoadedModule, ModuleError> {
        let load_error = |kind: LoadError| ModuleError {
            module: name.to_string(),
            callback: Callback::Load,
            metric: None,
            kind: ErrorKind::Load(kind),
        };
        let content_hash = digests::file_digest(wasm)
            .map_err(|source| LoadError::Read {
                path: wasm.to_path_buf(),
                source,
            })
            .map_err(load_error)?;
        let python = python_source
            .map(|path| {
                let translations = self.shared.translations.clone();
                PythonModule::read(name, path, &content_hash, translations)
            })
            .transpose()
            .map_err(load_error)?
            .map(Arc::new);
        let pre = self
            .shared
            .artifacts
            .get_or_make(&content_hash, || {
                // Read only when no loaded module shares this content.
                let bytes = read_component(wasm)?;
                if crate::bundled::digest(&bytes) != content_hash {
                    return Err(LoadError::Read {
                        path: wasm.to_path_buf(),
                        source: io::Error::other("the file changed while it was being loaded"),
                    });
                }
                inspect::check(wasm, &bytes)?;
                let component = self.compile(wasm, &bytes, &content_hash, &sandbox.limits)?;
                crate::bundled::release(&bytes);
                give_back_file_bytes(bytes);
                self.type_check(wasm, &component)
            })
            .map_err(load_error)?;
        let name: Arc<str> = name.into();
        // Opening the grants now reports a missing directory at load, not at first use.
        HostState::new(name.clone(), &sandbox.limits, &sandbox.grants).map_err(load_error)?;
        Ok(LoadedModule {
            inner: Arc::new(Loaded {
                name,
                content_hash,
                pre,
                sandbox,
                python,
                shared: self.shared.clone(),
            }),
        })
    }

    /// How many distinct compiled artifacts loaded modules hold.
    pub fn artifacts_in_use(&self) -> usize {
        self.shared.artifacts.live()
    }

    /// The cached compilation of `bytes`, or a new one (stored in the cache): in this
    /// process, or in a child process under the compile bounds of `limits`.
    fn compile(
        &self,
        wasm: &Path,
        bytes: &[u8],
        content_hash: &[u8; 32],
        limits: &Limits,
    ) -> Result<Component, LoadError> {
        let engine = &self.shared.engine;
        let cache = self.shared.cache.as_ref();
        if let Some(component) = cache.and_then(|cache| cache.load(engine, content_hash)) {
            return Ok(component);
        }
        let compile_error = |error: wasmtime::Error| LoadError::Compile {
            path: wasm.to_path_buf(),
            // Validation errors may quote the module's own names: one safe line.
            message: error::log_safe(
                &format!("{error:#}"),
                error::MAX_TRAP_LINE_BYTES,
                error::MAX_TRAP_MESSAGE_BYTES,
            ),
        };
        let (component, serialized) = match &self.shared.compiler {
            Compiler::InProcess => {
                let component = Component::new(engine, bytes).map_err(compile_error)?;
                let serialized = cache.map(|_| component.serialize()).transpose();
                (component, serialized.map_err(compile_error)?)
            }
            Compiler::Child { exe } => {
                let refusals = &self.shared.refusals;
                let refused = |hit| LoadError::CompileBound {
                    path: wasm.to_path_buf(),
                    hit,
                };
                if let Some(hit) = refusals.check(content_hash, limits) {
                    return Err(refused(hit));
                }
                let serialized =
                    compiler::compile_in_child(exe, wasm, bytes, limits).inspect_err(|error| {
                        if let LoadError::CompileBound { hit, .. } = error {
                            refusals.remember(content_hash, *hit);
                        }
                    })?;
                // SAFETY: the artifact was serialized by a child process of this very
                // program (`/proc/self/exe`), with the same engine settings, and came
                // through a pipe only it and we hold; wasmtime checks the rest. (A
                // compiler bug a component could exploit would have run in the daemon
                // itself before compiles moved to a child.)
                let component = unsafe { Component::deserialize(engine, &serialized) }
                    .map_err(compile_error)?;
                (component, Some(serialized))
            }
        };
        if let (Some(cache), Some(serialized)) = (cache, serialized)
            && let Err(error) = cache.store(content_hash, &serialized)
        {
            tracing::warn!("compile cache: cannot store {}: {error}", wasm.display());
        }
        release_freed_heap();
        Ok(component)
    }

    /// Checks the component's imports against the linker and its exports against the world.
    fn type_check(
        &self,
        wasm: &Path,
        component: &Component,
    ) -> Result<MetricModulePre<HostState>, LoadError> {
        let wrong_world = |error: wasmtime::Error| LoadError::WrongWorld {
            path: wasm.to_path_buf(),
            message: error::log_safe(
                &format!("{error:#}"),
                error::MAX_TRAP_LINE_BYTES,
                error::MAX_TRAP_MESSAGE_BYTES,
            ),
        };
        let pre = self
            .shared
            .linker
            .instantiate_pre(component)
            .map_err(wrong_world)?;
        MetricModulePre::new(pre).map_err(wrong_world)
    }
}

/// Fuel and epochs on (they are the per-callback budget and deadline); the
/// component-model concurrency machinery off (the contract is synchronous, and
/// its per-call task bookkeeping was a third of a handler call's cost); the rest
/// is wasmtime's defaults, whose 512 KiB wasm stack turns runaway recursion into
/// a trap.
pub(crate) fn engine_config() -> Config {
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .wasm_component_model(true)
        .concurrency_support(false);
    config
}

/// Hands the heap memory a compile used and freed back to the system. Cranelift
/// compiles on many threads, and glibc keeps what each thread's arena freed: after
/// the bundled Python interpreter's first compile (28 MB of wasm), about 300 MB
/// stayed resident for the life of the daemon. `malloc_trim` releases the free
/// pages of every arena.
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's arenas to the
    // kernel; it touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Frees the bytes a load read from a file. A large one (the Python interpreter is 28 MB,
/// read again by every Python module when it comes from a module directory) is freed into
/// the arena of the thread that read it, and glibc keeps such blocks once its dynamic
/// mmap threshold has grown past them: 100 modules held 2.6-4.4 GB. Trimming after each
/// large read gives every arena's free pages back.
fn give_back_file_bytes(bytes: Cow<'static, [u8]>) {
    const LARGE: usize = 1 << 20;
    if let Cow::Owned(bytes) = bytes
        && bytes.len() >= LARGE
    {
        drop(bytes);
        release_freed_heap();
    }
}

fn open_cache(dir: &Path, engine: &Engine) -> Option<CompileCache> {
    match CompileCache::open(dir, engine) {
        Ok(cache) => Some(cache),
        Err(error) => {
            tracing::warn!("compile cache disabled: {}: {error}", dir.display());
            None
        }
    }
}

/// The bytes of a component file, refusing what is too big, not wasm, or a core module.
fn read_component(wasm: &Path) -> Result<Cow<'static, [u8]>, LoadError> {
    let read_error = |source| LoadError::Read {
        path: wasm.to_path_buf(),
        source,
    };
    let bytes = match crate::bundled::bytes(wasm) {
        Some(bundled) => Cow::Borrowed(bundled),
        None => {
            let len = std::fs::metadata(wasm).map_err(read_error)?.len();
            if len > MAX_WASM_FILE_BYTES {
                return Err(LoadError::TooLarge {
                    path: wasm.to_path_buf(),
                    len,
                    max: MAX_WASM_FILE_BYTES,
                });
            }
            Cow::Owned(std::fs::read(wasm).map_err(read_error)?)
        }
    };
    const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
    const COMPONENT_VERSION: [u8; 4] = [0x0d, 0, 1, 0];
    match (bytes.get(..4), bytes.get(4..8)) {
        (Some(b"\0asm"), Some(version)) if version == COMPONENT_VERSION => Ok(bytes),
        (Some(b"\0asm"), Some(version)) if version == CORE_VERSION => Err(LoadError::CoreModule {
            path: wasm.to_path_buf(),
        }),
        _ => Err(LoadError::NotWasm {
            path: wasm.to_path_buf(),
        }),
    }
}

/// A compiled, type-checked module ready to be started. Cheap to clone.
#[derive(Clone)]
pub struct LoadedModule {
    inner: Arc<Loaded>,
}

struct Loaded {
    name: Arc<str>,
    content_hash: [u8; 32],
    /// Shared with every module of the same content.
    pre: Arc<MetricModulePre<HostState>>,
    sandbox: Sandbox,
    /// The `.py` source, for a module run by the bundled Python interpreter.
    python: Option<Arc<PythonModule>>,
    shared: Arc<Shared>,
}

impl LoadedModule {
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// SHA-256 of the `.wasm` file.
    pub fn content_hash(&self) -> [u8; 32] {
        self.inner.content_hash
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.inner.sandbox
    }

    /// Instantiates the module and runs `init` with `params`.
    pub fn start(&self, params: Vec<(String, String)>) -> Result<ModuleInstance, ModuleError> {
        ModuleInstance::start(self.clone(), params)
    }
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("name", &self.name())
            .field("content_hash", &hex::encode(self.content_hash()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduler shares the runtime and loaded modules across tasks and moves
    /// instances onto blocking workers.
    #[test]
    fn handles_cross_threads() {
        fn send_and_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_and_sync::<Runtime>();
        send_and_sync::<LoadedModule>();
        send::<ModuleInstance>();
    }
}
