//! Issue 12, an operator's bad day, against the real binary: includes that never end
//! (a FIFO, `/dev/zero`) or are many, reloads that fail half-way or take long, and
//! SIGTERM while a module is stuck in a call.

#[path = "support/daemon.rs"]
mod daemon;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use daemon::{config_with, free_port, mkfifo, temp_dir};

/// Runs `wasmond <args>`, killing it (by pid) if it is not done within `within`.
fn wasmond_within(args: &[&str], within: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmond"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while started.elapsed() < within {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    panic!(
        "wasmond {args:?} did not finish within {within:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `check` and `run` on a config including a FIFO and `/dev/zero`: both refuse it at
/// once, naming each include's place, instead of waiting for a writer or reading zeros
/// until the OOM killer comes.
#[test]
fn fifo_and_dev_zero_includes_are_refused_by_check_and_run_without_hanging() {
    let dir = temp_dir();
    let fifo = mkfifo(&dir.path().join("never.conf"));
    let config = dir.path().join("gmond.conf");
    let text = config_with(
        free_port(),
        "include ('never.conf')\ninclude ('/dev/zero')\n",
    );
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();
    for command in ["check", "run"] {
        let (output, took) = wasmond_within(&[command, "-c", config], Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{config}:10:10: error: cannot read `{}`: a FIFO, not a regular file",
                fifo.display()
            )),
            "{command}: {stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "{config}:11:10: error: cannot read `/dev/zero`: a device, not a regular file"
            )),
            "{command}: {stderr}"
        );
        println!("{command}: refused in {took:?}");
    }
}

/// gmond reads 10 000 included files; a thousand (here through one glob) used to be a
/// fatal error.
#[test]
fn a_thousand_included_files_pass_check() {
    let dir = temp_dir();
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    for i in 0..1000 {
        std::fs::write(conf_d.join(format!("{i:04}.conf")), format!("# file {i}\n")).unwrap();
    }
    let config = dir.path().join("gmond.conf");
    std::fs::write(
        &config,
        config_with(free_port(), "include ('conf.d/*.conf')\n"),
    )
    .unwrap();
    let (output, _) = wasmond_within(
        &["check", "-c", config.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
