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

/// One `pub const NAME: &str = "/path/name.wasm";` per built guest.
fn guest_constants(wasm_dir: &Path) -> String {
    let mut names: Vec<String> = fs::read_dir(wasm_dir)
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let is_wasm = path.extension().is_some_and(|ext| ext == "wasm");
            is_wasm.then(|| path.file_stem().unwrap().to_string_lossy().into_owned())
        })
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
