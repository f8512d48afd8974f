//! The SHA-256 of module files, computed once per version of a file: every Python
//! module names the same interpreter `.wasm` (28 MB), and both the reload fingerprint
//! and the load need its digest, so reading and hashing it for each of 100 modules held
//! gigabytes of heap and most of their start time. A file is hashed again when its
//! device, inode, size, modification or change time differ from when it was hashed: a
//! write always moves the change time, which no unprivileged process can set back. (On
//! a filesystem whose times count whole seconds, a same-size rewrite within the second
//! it was hashed in keeps the old digest until the file changes again, as with git's
//! index: the module then goes on running its old code, and a load that does read the
//! new bytes refuses them as changed.)
//! Bundled modules are hashed once per process by [`crate::bundled::digest`].

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use sha2::{Digest, Sha256};

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: metadata.dev(),
            ino: metadata.ino(),
            len: metadata.len(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

/// The files hashed, for the tests.
#[cfg(test)]
static HASHED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Each file's digest, with the version of the file it is of.
type Known = HashMap<PathBuf, (Stamp, [u8; 32])>;

static DIGESTS: Mutex<Option<Known>> = Mutex::new(None);

/// The SHA-256 of the module file at `path` (a bundled module's from memory), hashed
/// as it streams, so no copy of the file is held.
pub(crate) fn file_digest(path: &Path) -> io::Result<[u8; 32]> {
    if let Some(bytes) = crate::bundled::bytes(path) {
        return Ok(crate::bundled::digest(bytes));
    }
    let mut file = File::open(path)?;
    let stamp = Stamp::of(&file.metadata()?);
    if let Some((known, digest)) = cached().as_ref().and_then(|digests| digests.get(path))
        && *known == stamp
    {
        return Ok(*digest);
    }
    #[cfg(test)]
    HASHED.lock().unwrap().push(path.to_path_buf());
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    let digest: [u8; 32] = hasher.finalize().into();
    // Stored only if the file did not change while it was read.
    if Stamp::of(&file.metadata()?) == stamp {
        cached()
            .get_or_insert_with(HashMap::new)
            .insert(path.to_path_buf(), (stamp, digest));
    }
    Ok(digest)
}

fn cached() -> MutexGuard<'static, Option<Known>> {
    DIGESTS.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_file_gets_its_new_digest_and_an_unchanged_one_its_known_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.wasm");
        std::fs::write(&path, b"first").unwrap();
        let first = file_digest(&path).unwrap();
        assert_eq!(first, <[u8; 32]>::from(Sha256::digest(b"first")));
        assert_eq!(file_digest(&path).unwrap(), first);
        // Same length, written within the same timestamp granularity or not: the change
        // time (and usually the modification time) moves.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, b"again").unwrap();
        assert_eq!(
            file_digest(&path).unwrap(),
            <[u8; 32]>::from(Sha256::digest(b"again"))
        );
    }

    #[test]
    fn an_unchanged_file_is_hashed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.wasm");
        std::fs::write(&path, b"content").unwrap();
        for _ in 0..3 {
            file_digest(&path).unwrap();
        }
        let times = HASHED
            .lock()
            .unwrap()
            .iter()
            .filter(|p| **p == path)
            .count();
        assert_eq!(times, 1);
    }
}
