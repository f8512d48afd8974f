//! The modules built into the binary (today `core_metrics.wasm`), so that a copied,
//! `cargo install`ed or packaged `wasmond` serves the host metrics with nothing beside
//! it. The build script embeds them (its `BUNDLED` list says which).
//!
//! Configurations find them under the made-up directory [`DIR`] (`<bundled>`), which
//! the daemon searches after every real module directory, so that an installed file
//! (`/usr/lib/wasmond/modules/core_metrics.wasm`) wins over the embedded copy. Whatever
//! reads a module's file goes through [`read`], which serves `<bundled>/` paths from
//! memory; nothing is ever written out.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The made-up directory the bundled modules appear in.
pub(crate) const DIR: &str = "<bundled>";

/// One module embedded in the binary.
pub struct BundledModule {
    /// The file name configurations find it by, e.g. `core_metrics.wasm`.
    pub file: &'static str,
    pub bytes: &'static [u8],
}

// `pub static MODULES: &[BundledModule]` and `const MODULE_COUNT: usize`, written by
// build.rs. A static, not a const: a const's data is copied at each place that uses
// it, which put the 28 MB interpreter in the executable more than once, and made
// `digest` and `release` (which know a bundled module by its address) miss it.
include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The path a bundled module goes by: `<bundled>/FILE`.
pub fn path(file: &str) -> PathBuf {
    Path::new(DIR).join(file)
}

/// The embedded bytes behind `path`, if it names a bundled module.
pub fn bytes(path: &Path) -> Option<&'static [u8]> {
    let file = path.strip_prefix(DIR).ok()?;
    MODULES
        .iter()
        .find(|module| Path::new(module.file) == file)
        .map(|module| module.bytes)
}

/// The SHA-256 of `bytes`, computed once per bundled module when `bytes` is one
/// (every python module's `.py` runs in the bundled interpreter, 28 MB: hashing it
/// again for each of 100 modules, for the reload fingerprint and the compiled
/// artifact's key, took most of their start), else computed now.
pub(crate) fn digest(bytes: &[u8]) -> [u8; 32] {
    static DIGESTS: [OnceLock<[u8; 32]>; MODULE_COUNT] = [const { OnceLock::new() }; MODULE_COUNT];
    match MODULES
        .iter()
        .position(|module| std::ptr::eq(module.bytes, bytes))
    {
        Some(index) => *DIGESTS[index].get_or_init(|| Sha256::digest(bytes).into()),
        None => Sha256::digest(bytes).into(),
    }
}

/// Drops from the process's resident memory the pages of a bundled module's bytes
/// that reading them (hashing, validating, compiling) brought in; no-op for other
/// bytes. They are pages of the executable's read-only data: the kernel reads them
/// back from the file if they are read again. Without this, the 28 MB of the
/// bundled Python interpreter stayed resident once hashed, for nothing: what runs is
/// its compiled code.
pub(crate) fn release(bytes: &[u8]) {
    if !MODULES
        .iter()
        .any(|module| std::ptr::eq(module.bytes, bytes))
    {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf reads a system setting.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|&page| page > 0)
            .unwrap_or(4096);
        let start = (bytes.as_ptr() as usize).next_multiple_of(page);
        let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
        if end > start {
            // SAFETY: the range holds whole pages of `bytes`, a private read-only
            // mapping of the executable that nothing writes: MADV_DONTNEED only
            // unmaps them, and a later read maps the same file contents again.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_metrics_is_bundled_as_a_component() {
        let core = bytes(&path("core_metrics.wasm")).expect("bundled");
        // The component-model binary header: magic, then version 0x0d, layer 1.
        assert_eq!(&core[..8], b"\0asm\x0d\0\x01\0");
        assert!(bytes(&path("missing.wasm")).is_none());
        assert!(
            bytes(Path::new("core_metrics.wasm")).is_none(),
            "only under <bundled>/"
        );
    }

    /// Counted over the bytes' own pages, right after the release: other tests running
    /// meanwhile fault in pages of the same mapping (the executable's read-only data),
    /// which made a count over the whole mapping fail now and then.
    #[cfg(target_os = "linux")]
    #[test]
    fn release_drops_the_pages_read() {
        let bytes = MODULES
            .iter()
            .map(|module| module.bytes)
            .max_by_key(|bytes| bytes.len())
            .unwrap();
        let sum: u64 = bytes.iter().map(|&byte| u64::from(byte)).sum();
        std::hint::black_box(sum);
        let (before, pages) = mapped_pages(bytes);
        release(bytes);
        let (after, _) = mapped_pages(bytes);
        // All but the partial pages at both ends, and a few that another test may read
        // in between.
        assert!(
            before + 2 >= pages && after <= pages / 20,
            "{pages} pages read: {before} mapped before, {after} after"
        );
    }

    /// How many of the pages holding `bytes` are mapped in this process (the present
    /// bit of `/proc/self/pagemap`), and how many pages hold them.
    #[cfg(target_os = "linux")]
    fn mapped_pages(bytes: &[u8]) -> (usize, usize) {
        use std::io::{Read, Seek, SeekFrom};
        // SAFETY: sysconf reads a system setting.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let first = bytes.as_ptr() as usize / page;
        let end = (bytes.as_ptr() as usize + bytes.len()).div_ceil(page);
        let mut pagemap = std::fs::File::open("/proc/self/pagemap").unwrap();
        pagemap.seek(SeekFrom::Start(first as u64 * 8)).unwrap();
        let mut entries = vec![0u8; (end - first) * 8];
        pagemap.read_exact(&mut entries).unwrap();
        let present = entries
            .chunks_exact(8)
            .filter(|entry| u64::from_ne_bytes((*entry).try_into().unwrap()) >> 63 == 1)
            .count();
        (present, end - first)
    }

    #[test]
    fn a_bundled_module_digest_is_its_sha256() {
        let core = bytes(&path("core_metrics.wasm")).expect("bundled");
        let expected: [u8; 32] = Sha256::digest(core).into();
        assert_eq!(digest(core), expected);
        assert_eq!(digest(core), expected, "the kept digest");
        // The same content elsewhere is hashed, not taken for the bundled module's.
        let copy = core.to_vec();
        assert_eq!(digest(&copy), expected);
        assert_eq!(digest(b"other"), <[u8; 32]>::from(Sha256::digest(b"other")));
    }
}
