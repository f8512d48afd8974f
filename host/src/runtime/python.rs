//! gmond python modules (`NAME.py`), run by the bundled Python interpreter component.
//!
//! Every Python module loads the same interpreter `.wasm` (compiled once, then shared
//! through the compile cache); what makes it *this* module is the source the host
//! reads here and hands over through the `python` import of `wit/metric.wit`
//! (`module-source`), along with the host's page size, clock ticks and CPU count
//! (`facts`), which CPython in WASI would otherwise get wrong. The source travels
//! through the contract rather than as a file or a reserved param so that `wit/`
//! stays the one description of what crosses the sandbox, the module needs no
//! directory granted for its own code, and no param name is taken from gmond's.
//!
//! Python 2 source is translated inside the sandbox by the interpreter, in an
//! instance of its own that is dropped afterwards (see `ModuleInstance`); the host
//! only keeps the result (`keep-translation`: the translation, or a Python 3 source
//! as it is), by the SHA-256 of the source, in memory and in the compile cache's
//! directory, so the instance that runs the module, and the next load of the same
//! text, skip the translation.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::bindings::wasmond::metric::python::{Host, HostFacts, Source};
use super::error::LoadError;
use super::state::HostState;

/// The largest `.py` file read (gmond modules are tens of KB).
pub const MAX_SOURCE_BYTES: u64 = 4 << 20;

/// One Python module's source, shared by all its instances.
#[derive(Debug)]
pub(crate) struct PythonModule {
    name: String,
    path: PathBuf,
    text: String,
    /// Of the interpreter's `.wasm` and the text: the key of its translation.
    hash: [u8; 32],
    translations: Translations,
}

impl PythonModule {
    /// Reads `path` (UTF-8, at most [`MAX_SOURCE_BYTES`]) for the interpreter whose
    /// `.wasm` has `interpreter_hash` (a translation is kept for that interpreter
    /// only: another may translate differently).
    pub(crate) fn read(
        name: &str,
        path: &Path,
        interpreter_hash: &[u8; 32],
        translations: Translations,
    ) -> Result<PythonModule, LoadError> {
        let read_error = |source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        };
        let len = fs::metadata(path).map_err(read_error)?.len();
        if len > MAX_SOURCE_BYTES {
            return Err(LoadError::TooLarge {
                path: path.to_path_buf(),
                len,
                max: MAX_SOURCE_BYTES,
            });
        }
        let bytes = fs::read(path).map_err(read_error)?;
        let text = String::from_utf8(bytes).map_err(|error| {
            read_error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not UTF-8 text: {error}"),
            ))
        })?;
        Ok(PythonModule {
            name: name.to_string(),
            path: path.to_path_buf(),
            hash: Sha256::new()
                .chain_update(interpreter_hash)
                .chain_update(text.as_bytes())
                .finalize()
                .into(),
            text,
            translations,
        })
    }

    /// Whether the Python 3 text of this source is kept (made by an earlier load,
    /// in this process or, through the cache directory, an earlier one).
    pub(crate) fn translated(&self) -> bool {
        self.translations.get(&self.hash).is_some()
    }
}

/// Python 3 translations of Python 2 sources, by the SHA-256 of the interpreter and
/// the source: in
/// memory, and as `<dir>/<hash>.py` when the runtime has a cache directory.
#[derive(Debug, Clone, Default)]
pub(crate) struct Translations {
    inner: Arc<TranslationsInner>,
}

#[derive(Debug, Default)]
struct TranslationsInner {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<[u8; 32], Arc<str>>>,
}

/// The largest translation kept (a translation only grows a source a little).
const MAX_TRANSLATION_BYTES: usize = 2 * MAX_SOURCE_BYTES as usize;

impl Translations {
    pub(crate) fn new(dir: Option<PathBuf>) -> Translations {
        Translations {
            inner: Arc::new(TranslationsInner {
                dir,
                memory: Mutex::default(),
            }),
        }
    }

    fn get(&self, hash: &[u8; 32]) -> Option<Arc<str>> {
        let mut memory = self.inner.memory.lock().expect("translations lock");
        if let Some(text) = memory.get(hash) {
            return Some(text.clone());
        }
        let path = self
            .inner
            .dir
            .as_ref()?
            .join(format!("{}.py", hex::encode(hash)));
        let text: Arc<str> = fs::read_to_string(path).ok()?.into();
        memory.insert(*hash, text.clone());
        Some(text)
    }

    fn put(&self, hash: &[u8; 32], text: &str) {
        let text: Arc<str> = text.into();
        self.inner
            .memory
            .lock()
            .expect("translations lock")
            .insert(*hash, text.clone());
        if let Some(dir) = &self.inner.dir
            && let Err(error) = write_atomically(dir, &format!("{}.py", hex::encode(hash)), &text)
        {
            tracing::warn!(
                "python translation cache: cannot write in {}: {error}",
                dir.display()
            );
        }
    }
}

fn write_atomically(dir: &Path, file: &str, text: &str) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let temporary = dir.join(format!(".{file}.{}", std::process::id()));
    fs::write(&temporary, text)?;
    fs::rename(&temporary, dir.join(file))
}

impl Host for HostState {
    fn module_source(&mut self) -> Result<Source, String> {
        let module = self
            .python
            .as_ref()
            .ok_or("this module was not loaded as a python module (language = \"python\")")?;
        Ok(Source {
            name: module.name.clone(),
            path: module.path.display().to_string(),
            text: module.text.clone(),
            translated: module.translations.get(&module.hash).map(|t| t.to_string()),
        })
    }

    fn keep_translation(&mut self, text: String) {
        // Only for the source this instance was handed, and of a sane size: a module
        // can cache nothing but its own translation.
        if let Some(module) = &self.python
            && text.len() <= MAX_TRANSLATION_BYTES
        {
            module.translations.put(&module.hash, &text);
        }
    }

    fn facts(&mut self) -> HostFacts {
        host_facts()
    }

    fn readable_dirs(&mut self) -> Vec<String> {
        self.readable_dirs.clone()
    }

    fn refused(&mut self, what: String) {
        self.log.refuse(&what);
    }
}

/// The host's page size, clock ticks per second and online CPUs, as `sysconf`
/// answers them natively (what CPython's `os.sysconf` and `os.cpu_count` read).
fn host_facts() -> HostFacts {
    let sysconf = |name| {
        // SAFETY: sysconf reads a system setting; it has no memory effects.
        let value = unsafe { libc::sysconf(name) };
        u64::try_from(value).ok().filter(|&v| v > 0)
    };
    HostFacts {
        page_size: sysconf(libc::_SC_PAGESIZE).unwrap_or(4096),
        clock_ticks: sysconf(libc::_SC_CLK_TCK).unwrap_or(100),
        cpu_count: sysconf(libc::_SC_NPROCESSORS_ONLN)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_the_hosts() {
        let facts = host_facts();
        // What the interpreter would answer by itself: the wasm page, one CPU.
        let native = |name: &str| {
            let out = std::process::Command::new("getconf")
                .arg(name)
                .output()
                .unwrap();
            String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap()
        };
        assert_eq!(facts.page_size, native("PAGESIZE"));
        assert_eq!(facts.clock_ticks, native("CLK_TCK"));
        assert_eq!(u64::from(facts.cpu_count), native("_NPROCESSORS_ONLN"));
    }

    #[test]
    fn translations_persist_by_source_hash() {
        let dir = tempfile::tempdir().unwrap();
        let hash = [7u8; 32];
        Translations::new(Some(dir.path().into())).put(&hash, "print(1)\n");
        let fresh = Translations::new(Some(dir.path().into()));
        assert_eq!(fresh.get(&hash).as_deref(), Some("print(1)\n"));
        assert_eq!(fresh.get(&[8u8; 32]), None);
    }
}
