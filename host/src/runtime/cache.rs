//! The on-disk cache of compiled components, so that a second load of a module
//! takes milliseconds instead of a compile (seconds for a Python guest).
//!
//! Layout: `<root>/<engine hash>/<content hash>.cwasm`, where the engine hash is a
//! SHA-256 of `Engine::precompile_compatibility_hash` (wasmtime version, target,
//! and every setting that changes code) and the content hash is the SHA-256 of the
//! `.wasm`. Deserializing runs native code from the file, so only artifacts this
//! host wrote are loaded: directories are created owner-only and refused when
//! others may write them, files are written to a temporary name and renamed into
//! place, and each file starts with a header (magic, content hash, SHA-256 of the
//! payload) that is checked before wasmtime sees the payload.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 16] = b"wasmond-cwasm-v1";
const HEADER_LEN: usize = MAGIC.len() + 32 + 32;

/// A directory of compiled components for one engine configuration.
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// Opens (creating if needed) the cache under `root` for `engine`.
    pub(crate) fn open(root: &Path, engine: &Engine) -> io::Result<CompileCache> {
        let dir = root.join(engine_hash(engine));
        create_private_dir(root)?;
        create_private_dir(&dir)?;
        Ok(CompileCache { dir })
    }

    /// The cached compilation of the `.wasm` with `content_hash`, if there is a
    /// valid one. A damaged or foreign file is removed so it gets rewritten.
    pub(crate) fn load(&self, engine: &Engine, content_hash: &[u8; 32]) -> Option<Component> {
        let path = self.artifact_path(content_hash);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!("compile cache: cannot read {}: {error}", path.display());
                return None;
            }
        };
        let result = check_file_is_private(&path).and_then(|()| {
            let payload = verified_payload(&bytes, content_hash)?;
            // SAFETY: the payload was written by `store` below (owner-only directory,
            // our magic and both hashes verified), from `Component::serialize` of an
            // engine with the same compatibility hash; wasmtime checks the rest.
            unsafe { Component::deserialize(engine, payload) }
                .map_err(|error| io::Error::other(format!("{error:#}")))
        });
        match result {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!("compile cache: discarding {}: {error}", path.display());
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes `payload` (a serialized component) as the compilation of the `.wasm`
    /// with `content_hash`.
    pub(crate) fn store(&self, content_hash: &[u8; 32], payload: &[u8]) -> io::Result<()> {
        let mut file_bytes = Vec::with_capacity(HEADER_LEN + payload.len());
        file_bytes.extend_from_slice(MAGIC);
        file_bytes.extend_from_slice(content_hash);
        file_bytes.extend_from_slice(&Sha256::digest(payload));
        file_bytes.extend_from_slice(payload);
        write_atomically(&self.artifact_path(content_hash), &file_bytes)
    }

    fn artifact_path(&self, content_hash: &[u8; 32]) -> PathBuf {
        self.dir
            .join(format!("{}.cwasm", hex::encode(content_hash)))
    }
}

/// The default cache root: `$XDG_CACHE_HOME/wasmond`, else `$HOME/.cache/wasmond`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .map(|cache| cache.join("wasmond"))
}

/// The payload after a header that matches `content_hash` and the payload's digest.
fn verified_payload<'a>(bytes: &'a [u8], content_hash: &[u8; 32]) -> io::Result<&'a [u8]> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(invalid("not a wasmond cache file"));
    }
    let (stored_content_hash, rest) = bytes[MAGIC.len()..].split_at(32);
    let (stored_digest, payload) = rest.split_at(32);
    if stored_content_hash != content_hash {
        return Err(invalid("written for another .wasm"));
    }
    if Sha256::digest(payload).as_slice() != stored_digest {
        return Err(invalid("payload does not match its digest"));
    }
    Ok(payload)
}

/// Hex SHA-256 of the engine's compatibility hash: stable across processes, unlike
/// `DefaultHasher`, and covering everything that makes an artifact unusable.
fn engine_hash(engine: &Engine) -> String {
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            unreachable!("only the digest is read")
        }
    }
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..16])
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    check_file_is_private(dir)
}

/// Refuses a path that someone other than its owner may write.
fn check_file_is_private(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::symlink_metadata(path)?.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is writable by group or others (mode {:o})",
                    path.display(),
                    mode & 0o777
                ),
            ));
        }
    }
    Ok(())
}

/// Writes `bytes` to a new owner-only temporary file beside `path`, then renames it
/// over `path`, so readers see either nothing or the whole file.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("artifact");
    let temp = path.with_file_name(format!(".{file_name}.{}.{unique}.tmp", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&temp)
        .and_then(|mut file| file.write_all(bytes));
    let renamed = written.and_then(|()| fs::rename(&temp, path));
    if renamed.is_err() {
        let _ = fs::remove_file(&temp);
    }
    renamed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(content_hash: &[u8; 32], payload: &[u8]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(content_hash);
        bytes.extend_from_slice(&Sha256::digest(payload));
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn a_good_header_yields_the_payload() {
        let file = file_with(&[7; 32], b"payload");
        assert_eq!(verified_payload(&file, &[7; 32]).unwrap(), b"payload");
    }

    #[test]
    fn foreign_or_damaged_files_are_refused() {
        let file = file_with(&[7; 32], b"payload");
        assert!(
            verified_payload(&file, &[8; 32]).is_err(),
            "other content hash"
        );
        let mut damaged = file.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(
            verified_payload(&damaged, &[7; 32]).is_err(),
            "flipped payload bit"
        );
        assert!(
            verified_payload(&file[..HEADER_LEN - 1], &[7; 32]).is_err(),
            "short"
        );
        let mut no_magic = file;
        no_magic[0] = b'W';
        assert!(verified_payload(&no_magic, &[7; 32]).is_err(), "no magic");
    }
}
