//! Runs the `core-metrics` guest's own unit tests (its `/proc` and `/sys` parsers,
//! its rate trackers, its descriptor table checked against gmond's, and the whole
//! module against this machine's kernel files), natively, as part of the host's
//! `cargo test`: the guest workspace is not a member of the host's, so nothing
//! else runs them in CI.

use std::path::Path;
use std::process::Command;

#[test]
fn core_metrics_unit_tests_pass_natively() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root.join("guest-modules"))
        .args(["test", "--quiet", "-p", "core-metrics", "--target-dir"])
        // Not target/guests: that one holds the wasm builds the build scripts make.
        .arg(root.join("target").join("guests-native"));
    // The outer cargo's settings are for the host's build, not this one.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_MAKEFLAGS",
    ] {
        command.env_remove(var);
    }
    let status = command.status().expect("run cargo test for core-metrics");
    assert!(
        status.success(),
        "core-metrics' unit tests failed (cd guest-modules && cargo test -p core-metrics)"
    );
}
