//! Building Rust guest modules from a build script: shared by `host/build.rs` (the
//! bundled modules it embeds) and `test-guests/build.rs` (the test modules).
//!
//! The guests are a workspace of their own (`guest-modules/`), built for
//! `wasm32-wasip2` by a nested cargo into `target/guests`, which never waits on the outer
//! build's lock; both build scripts share that directory, so a guest is compiled once.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const GUEST_TARGET: &str = "wasm32-wasip2";

/// The repository root, from the calling crate's manifest directory (one level down).
pub fn root() -> PathBuf {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    manifest_dir.parent().unwrap().to_path_buf()
}

/// Builds `packages` of the guest workspace (all of it when empty; a package's folder
/// bears its name) and returns the directory of the `.wasm` files. Reruns the build
/// script when the WIT, the SDK or those guests' sources change, and only then.
pub fn build(packages: &[&str]) -> PathBuf {
    let root = root();
    let guests = root.join("guest-modules");
    let target_dir = root.join("target").join("guests");
    watch(&root.join("wit"));
    watch(&guests.join("Cargo.toml"));
    watch(&guests.join("Cargo.lock"));
    if packages.is_empty() {
        watch_all_guest_sources(&guests);
    } else {
        for dir in std::iter::once(&"sdk").chain(packages) {
            watch_crate(&guests.join(dir));
        }
    }
    ensure_wasm_target();

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&guests)
        .args([
            "build",
            "--release",
            "--target",
            GUEST_TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    for package in packages {
        command.args(["--package", package]);
    }
    // The outer build's settings are for the host, not for the guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        command.env_remove(var);
    }
    let status = command.status().expect("run cargo for the guest modules");
    assert!(status.success(), "building the guest modules failed");
    target_dir.join(GUEST_TARGET).join("release")
}

fn watch(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}

/// Watches every guest crate's manifest and sources, not build outputs.
fn watch_all_guest_sources(guests: &Path) {
    for entry in fs::read_dir(guests).unwrap().flatten() {
        if entry.path().join("Cargo.toml").exists() {
            watch_crate(&entry.path());
        }
    }
}

fn watch_crate(dir: &Path) {
    assert!(
        dir.join("Cargo.toml").exists(),
        "no guest crate in {}",
        dir.display()
    );
    watch(&dir.join("Cargo.toml"));
    watch(&dir.join("src"));
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
