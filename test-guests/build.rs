//! Builds every Rust guest module in `guest-modules/` for `wasm32-wasip2` and hands the
//! crate their paths as constants (`OUT_DIR/guests.rs`).

#[path = "../host/guest_build.rs"]
mod guest_build;

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let wasm_dir = guest_build::build(&[]);
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("guests.rs");
    fs::write(out, guest_constants(&wasm_dir)).unwrap();
}

/// One `pub const NAME: &str = "/path/name.wasm";` per guest crate of `guest-modules/`
/// that builds a `.wasm`. Only the crates' own: `host/build.rs` writes the bundled Python
/// interpreter into the same directory, and whether it is there yet depends on which build
/// script ran first (tests use `wasmond::bundled` for it).
fn guest_constants(wasm_dir: &Path) -> String {
    let guests = guest_build::root().join("guest-modules");
    let mut names: Vec<String> = fs::read_dir(guests)
        .unwrap()
        .flatten()
        .filter(|entry| entry.path().join("Cargo.toml").exists())
        .map(|entry| entry.file_name().to_string_lossy().replace('-', "_"))
        .filter(|name| wasm_dir.join(format!("{name}.wasm")).exists())
        .collect();
    names.sort();
    names
        .iter()
        .map(|name| {
            let constant = name.to_uppercase().replace('-', "_");
            let path = wasm_dir.join(format!("{name}.wasm"));
            format!(
                "pub const {constant}: &str = {:?};\n",
                path.display().to_string()
            )
        })
        .collect()
}
