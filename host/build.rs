//! Builds the modules bundled into the binary and embeds them (`OUT_DIR/bundled.rs`,
//! included by `wasmond::bundled`), so that a copied, `cargo install`ed or packaged
//! `wasmond` carries its host metrics with it.
//!
//! Only the bundled modules are built here (a no-op once they are fresh); the test
//! modules are built by `test-guests`, a dev-dependency, for tests and benchmarks only.
//! `cargo check`, `clippy` and `doc` still build the bundled ones: `include_bytes!` needs
//! the file even when nothing is linked.

//!
//! The bundled Python interpreter component, `gmond_python.wasm`
//! (`guest-modules/gmond-python`), is built and embedded too when componentize-py
//! (pinned, from PyPI) and fissix in `target/python-deps` are there (both installed by
//! `.ci/install-guest-toolchains.sh`). Without them the build says so and goes on:
//! python modules then fail to load with a message naming the missing file; with
//! `WASMOND_REQUIRE_TOOLCHAINS=1` (CI) it is an error.

mod guest_build;

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The bundled modules: (guest package in `guest-modules/`, file it builds to). The
/// file name is what configurations find it by (`<name>.wasm`). To bundle another
/// module, add it here.
const BUNDLED: &[(&str, &str)] = &[("core-metrics", "core_metrics.wasm")];

fn main() {
    let packages: Vec<&str> = BUNDLED.iter().map(|(package, _)| *package).collect();
    let wasm_dir = guest_build::build(&packages);
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let interpreter = build_python_interpreter(manifest_dir.parent().unwrap(), &wasm_dir);
    let entries: String = BUNDLED
        .iter()
        .map(|(_, file)| *file)
        .chain(interpreter)
        .map(|file| {
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
        format!(
            "pub static MODULES: &[BundledModule] = &[\n{entries}];\n\
             const MODULE_COUNT: usize = {};\n",
            BUNDLED.len() + usize::from(interpreter.is_some())
        ),
    )
    .unwrap();
}

/// componentize-py's version, as `.ci/install-guest-toolchains.sh` pins it.
const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The interpreter's file name (`wasmond::runtime::PYTHON_INTERPRETER`).
const PYTHON_INTERPRETER: &str = "gmond_python.wasm";

/// Builds `gmond_python.wasm` into `wasm_dir` when its inputs changed (componentize-py
/// takes ~20 s): the interpreter's and the gmond helper's Python files, `wit/`, the
/// bundled packages and the tool's version, hashed into a stamp beside the output.
/// Returns its file name, or `None` when the toolchain is missing.
fn build_python_interpreter(root: &Path, wasm_dir: &Path) -> Option<&'static str> {
    let sources = [
        root.join("guest-modules/gmond-python"),
        root.join("guest-modules/python-sdk"),
    ];
    let deps = root.join("target").join("python-deps");
    for dir in sources.iter().chain([&deps, &root.join("wit")]) {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    println!("cargo:rerun-if-env-changed=WASMOND_REQUIRE_TOOLCHAINS");
    let output = wasm_dir.join(PYTHON_INTERPRETER);
    let version = Command::new("componentize-py").arg("--version").output();
    let version = version
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
    let wanted = format!("componentize-py {COMPONENTIZE_PY_VERSION}");
    let missing = match &version {
        None => Some("componentize-py is not installed".to_string()),
        Some(v) if *v != wanted => Some(format!("{v} is installed, not {COMPONENTIZE_PY_VERSION}")),
        Some(_) if !deps.join("fissix").is_dir() => {
            Some(format!("{} has no fissix", deps.display()))
        }
        Some(_) => None,
    };
    if let Some(missing) = missing {
        let message = format!(
            "not building the bundled Python interpreter: {missing} (run .ci/install-guest-toolchains.sh)"
        );
        if env::var_os("WASMOND_REQUIRE_TOOLCHAINS").is_some_and(|v| v == "1") {
            panic!("{message}");
        }
        println!("cargo:warning={message}");
        return None;
    }
    let mut inputs: Vec<PathBuf> = sources
        .iter()
        .chain([&deps, &root.join("wit")])
        .flat_map(|dir| files_under(dir))
        .filter(|p| !p.components().any(|c| c.as_os_str() == "__pycache__"))
        .collect();
    inputs.sort();
    let mut stamp = wanted;
    for input in &inputs {
        let bytes = fs::read(input).unwrap_or_default();
        stamp.push_str(&format!(
            "\n{} {} {:x}",
            input.display(),
            bytes.len(),
            fnv1a(&bytes)
        ));
    }
    let stamp_file = wasm_dir.join("gmond_python.stamp");
    if output.is_file() && fs::read_to_string(&stamp_file).is_ok_and(|old| old == stamp) {
        return Some(PYTHON_INTERPRETER);
    }
    let status = Command::new("componentize-py")
        .current_dir(root)
        .args(["-d", "wit", "-w", "gmond-python", "componentize", "app"])
        .args([
            "-p",
            "guest-modules/gmond-python",
            "-p",
            "guest-modules/python-sdk",
            "-p",
        ])
        .arg(&deps)
        .arg("-o")
        .arg(&output)
        .status()
        .expect("run componentize-py");
    assert!(
        status.success(),
        "componentize-py failed to build the Python interpreter"
    );
    fs::write(stamp_file, stamp).unwrap();
    Some(PYTHON_INTERPRETER)
}

/// Every file under `dir`, recursively (none if it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                files_under(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// A content fingerprint for the stamp (not a security boundary: a changed input only
/// has to change the stamp).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
