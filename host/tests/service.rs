//! wasmond as a service manager runs it (issue 13): the log lines it writes when stderr
//! is a file or the journal (no colour codes), a terminal (colour) or a log collector
//! (`--log-format json`).
//!
//! Each test starts `wasmond run` on a config of its own (XML on a free loopback port,
//! no modules), waits for its start-up line and stops it with SIGTERM.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const STARTED: &str = "wasmond running";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A directory of its own under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("wasmond-service-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().unwrap().port()
}

/// A config that serves XML on a free loopback port and runs no module.
fn write_config(dir: &Path) -> PathBuf {
    let port = free_port();
    let path = dir.join("wasmond.conf");
    let text = format!(
        "globals {{\n  daemonize = no\n  debug_level = 0\n}}\n\
         tcp_accept_channel {{\n  bind = 127.0.0.1\n  port = {port}\n}}\n"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Stops the daemon with SIGTERM (by its pid) and waits for it.
fn terminate(child: &mut Child) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = child.wait().expect("wait for wasmond");
    assert!(status.success(), "wasmond exited with {status}");
}

/// Runs `wasmond run -c CONF EXTRA` with stderr into a file until it has started, stops
/// it, and returns what it wrote on stderr.
fn logs_into_file(label: &str, extra: &[&str]) -> String {
    let dir = TempDir::new(label);
    let config = write_config(&dir.0);
    let log = dir.0.join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmond"))
        .args(["run", "-c"])
        .arg(&config)
        .args(extra)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("create log"))
        .spawn()
        .expect("start wasmond");
    let deadline = Instant::now() + START_TIMEOUT;
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(STARTED)
    {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "wasmond exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "wasmond did not start in {START_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    terminate(&mut child);
    std::fs::read_to_string(&log).expect("read log")
}

#[test]
fn logs_into_a_file_carry_no_colour_codes() {
    let text = logs_into_file("text", &[]);
    assert!(text.contains(STARTED), "{text}");
    assert!(text.contains(" INFO "), "{text}");
    assert!(!text.contains('\x1b'), "escape codes in a file:\n{text:?}");
}

#[test]
fn json_logs_are_one_object_per_line_with_level_message_and_fields() {
    let text = logs_into_file("json", &["--log-format", "json"]);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
    }
    let started = lines
        .iter()
        .find(|line| line["message"] == STARTED)
        .unwrap_or_else(|| panic!("no start-up line in {text}"));
    assert_eq!(started["level"], "INFO");
    assert!(
        started["config"]
            .as_str()
            .is_some_and(|c| c.ends_with("wasmond.conf")),
        "{started}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line["message"] == "wasmond stopped"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "{text:?}");
}

#[test]
fn logs_on_a_terminal_are_coloured() {
    let dir = TempDir::new("tty");
    let config = write_config(&dir.0);
    let (mut master, slave) = open_pty();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmond"))
        .args(["run", "-c"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave))
        .spawn()
        .expect("start wasmond");
    // The terminal's output, read on a thread: the read blocks until there is some.
    let (sender, received) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        // Ends with EIO once the daemon has closed the terminal.
        while let Ok(n @ 1..) = master.read(&mut buffer) {
            if sender.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + START_TIMEOUT;
    while !String::from_utf8_lossy(&seen).contains(STARTED) {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(bytes) => seen.extend(bytes),
            Err(_) => panic!(
                "no start-up line on the terminal: {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    terminate(&mut child);
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("\x1b["), "no colour on a terminal: {text:?}");
}

/// A pseudo-terminal: the master end to read, the slave end for the child's stderr.
fn open_pty() -> (std::fs::File, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two new descriptors into the two ints; the null name,
    // termios and winsize pointers are allowed.
    let result = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(result, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned by nothing else.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            OwnedFd::from_raw_fd(slave),
        )
    }
}
