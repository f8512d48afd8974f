//! The modules built into the binary (today `core_metrics.wasm`), so that a copied,
//! `cargo install`ed or packaged `wasmond` serves the host metrics with nothing beside
//! it. The build script embeds them (its `BUNDLED` list says which).
//!
//! Configurations find them under the made-up directory [`DIR`] (`<bundled>`), which
//! the daemon searches after every real module directory, so that an installed file
//! (`/usr/lib/wasmond/modules/core_metrics.wasm`) wins over the embedded copy. Whatever
//! reads a module's file goes through [`read`], which serves `<bundled>/` paths from
//! memory; nothing is ever written out.

use std::borrow::Cow;
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

// `pub const MODULES: &[BundledModule]`, written by build.rs.
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

/// A module's bytes: from memory for a bundled path, else from the file.
pub fn read(path: &Path) -> std::io::Result<Cow<'static, [u8]>> {
    match bytes(path) {
        Some(bytes) => Ok(Cow::Borrowed(bytes)),
        None => std::fs::read(path).map(Cow::Owned),
    }
}

/// The SHA-256 of `bytes`, computed once per bundled module when `bytes` is one
/// (every python module's `.py` runs in the bundled interpreter, 28 MB: hashing it
/// again for each of 100 modules, for the reload fingerprint and the compiled
/// artifact's key, took most of their start), else computed now.
pub(crate) fn digest(bytes: &[u8]) -> [u8; 32] {
    static DIGESTS: [OnceLock<[u8; 32]>; MODULES.len()] =
        [const { OnceLock::new() }; MODULES.len()];
    match MODULES
        .iter()
        .position(|module| std::ptr::eq(module.bytes, bytes))
    {
        Some(index) => *DIGESTS[index].get_or_init(|| Sha256::digest(bytes).into()),
        None => Sha256::digest(bytes).into(),
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
