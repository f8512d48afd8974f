//! Builds the Rust guest modules in `guest-modules/` for `wasm32-wasip2` and hands the
//! crate their paths as constants (`OUT_DIR/guests.rs`, included by `wasmond::guests`).
//!
//! The guests are a workspace of their own, built by a nested cargo into
//! `target/guests` so that it never waits on the outer build's lock.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap();
    let guests = root.join("guest-modules");
    let target_dir = root.join("target").join("guests");

    watch(&root.join("wit"));
    watch_guest_sources(&guests);

    ensure_wasm_target();
    build_guests(&guests, &target_dir);

    let wasm_dir = target_dir.join(GUEST_TARGET).join("release");
    let constants = guest_constants(&wasm_dir);
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("guests.rs");
    fs::write(out, constants).unwrap();
}

fn watch(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}

/// Watches each guest crate's manifest and sources, not build outputs.
fn watch_guest_sources(guests: &Path) {
    watch(&guests.join("Cargo.toml"));
    for entry in fs::read_dir(guests).unwrap().flatten() {
        let dir = entry.path();
        if dir.join("Cargo.toml").exists() {
            watch(&dir.join("Cargo.toml"));
            watch(&dir.join("src"));
        }
    }
}

/// A fresh machine may lack the target even though rust-toolchain.toml names it.
fn ensure_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", GUEST_TARGET])
        .output()
        .expect("run rustc");
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() && Path::new(&libdir).exists() {
        return;
    }
    println!("cargo:warning=installing the {GUEST_TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", GUEST_TARGET])
        .status()
        .expect("run rustup: the guest modules need the wasm32-wasip2 target");
    assert!(status.success(), "rustup target add {GUEST_TARGET} failed");
}

fn build_guests(guests: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(guests)
        .args(["build", "--release", "--target", GUEST_TARGET, "--target-dir"])
        .arg(target_dir);
    // The outer build's settings are for the host, not for the guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        command.env_remove(var);
    }
    let status = command.status().expect("run cargo for the guest modules");
    assert!(status.success(), "building the guest modules failed");
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
            format!("pub const {constant}: &str = {:?};\n", path.display().to_string())
        })
        .collect()
}
