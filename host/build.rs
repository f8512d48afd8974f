//! Builds the modules bundled into the binary and embeds them (`OUT_DIR/bundled.rs`,
//! included by `wasmond::bundled`), so that a copied, `cargo install`ed or packaged
//! `wasmond` carries its host metrics with it.
//!
//! Only the bundled modules are built here (a no-op once they are fresh); the test
//! modules are built by `test-guests`, a dev-dependency, for tests and benchmarks only.
//! `cargo check`, `clippy` and `doc` still build the bundled ones: `include_bytes!` needs
//! the file even when nothing is linked.

mod guest_build;

use std::env;
use std::fs;
use std::path::PathBuf;

/// The bundled modules: (guest package in `guest-modules/`, file it builds to). The
/// file name is what configurations find it by (`<name>.wasm`). To bundle another
/// module, add it here.
const BUNDLED: &[(&str, &str)] = &[("core-metrics", "core_metrics.wasm")];

fn main() {
    let packages: Vec<&str> = BUNDLED.iter().map(|(package, _)| *package).collect();
    let wasm_dir = guest_build::build(&packages);
    let entries: String = BUNDLED
        .iter()
        .map(|(_, file)| {
            let path = wasm_dir.join(file);
            assert!(path.is_file(), "{} was not built", path.display());
            format!(
                "    BundledModule {{ file: {file:?}, bytes: include_bytes!({:?}) }},\n",
                path.display().to_string()
            )
        })
        .collect();
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("bundled.rs");
    fs::write(
        out,
        format!("pub const MODULES: &[BundledModule] = &[\n{entries}];\n"),
    )
    .unwrap();
}
