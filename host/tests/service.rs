//! wasmond as a service manager runs it (issue 13): the log lines it writes when stderr
//! is a file or the journal (no colour codes), a terminal (colour) or a log collector
//! (`--log-format json`); systemd's readiness protocol (`Type=notify`); and a copy of
//! the binary outside the build tree, which serves the host metrics it carries.
//!
//! Each test starts `wasmond run` on a config of its own (XML on a free loopback port),
//! waits for it to start and stops it with SIGTERM.

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
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

/// A port free on 127.0.0.1 for both TCP and UDP (gmond serves both on one number).
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind tcp");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// The XML document served on `port`.
fn fetch_xml(port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    Ok(bytes.iter().map(|&byte| char::from(byte)).collect())
}

/// Sends `signal` to the child (by its pid).
fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid, signal) };
}

/// A config that serves XML on a free loopback port and runs no module.
fn write_config(dir: &Path) -> PathBuf {
    write_config_on(dir, free_port())
}

fn write_config_on(dir: &Path, port: u16) -> PathBuf {
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
    signal(child, libc::SIGTERM);
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

/// `Type=notify`: READY=1 once the XML is served, RELOADING=1 then READY=1 around a
/// SIGHUP, STOPPING=1 on SIGTERM.
#[test]
fn tells_systemd_when_it_is_ready_reloading_and_stopping() {
    let dir = TempDir::new("notify");
    let port = free_port();
    let config = write_config_on(&dir.0, port);
    let socket_path = dir.0.join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket.set_read_timeout(Some(START_TIMEOUT)).unwrap();
    let next = || {
        let mut buffer = [0u8; 256];
        let n = socket.recv(&mut buffer).expect("a notification");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmond"))
        .args(["run", "-c"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wasmond");
    assert_eq!(next(), "READY=1");
    let xml = fetch_xml(port).expect("the XML is served once ready");
    assert!(xml.contains("</GANGLIA_XML>"), "{xml}");
    signal(&child, libc::SIGHUP);
    assert_eq!(next(), "RELOADING=1");
    assert_eq!(next(), "READY=1");
    signal(&child, libc::SIGTERM);
    assert_eq!(next(), "STOPPING=1");
    assert!(child.wait().unwrap().success());
}

/// A copy of the binary outside the build tree, with no module directory holding a
/// `.wasm`, on Debian's stock gmond.conf (moved to loopback, in the foreground): the
/// stock config names only gmond's C modules, and the copy serves their host metrics
/// from the `core_metrics.wasm` it carries.
#[test]
fn a_copied_binary_serves_the_core_metrics_it_carries() {
    let dir = TempDir::new("copied");
    let binary = dir.0.join("wasmond");
    std::fs::copy(env!("CARGO_BIN_EXE_wasmond"), &binary).expect("copy the binary");
    let empty = dir.0.join("modules");
    std::fs::create_dir(&empty).unwrap();
    let port = free_port();
    let stock = include_str!("data/gmond-stock-loopback.conf")
        .replace("8749", &port.to_string())
        .replace("daemonize = yes", "daemonize = no")
        .replace("setuid = yes", "setuid = no")
        .replace("include ('/etc/ganglia/conf.d/*.conf')", "");
    let config = dir.0.join("gmond.conf");
    std::fs::write(&config, stock).unwrap();
    let log = dir.0.join("stderr");
    let mut child = Command::new(&binary)
        .args(["run", "-c"])
        .arg(&config)
        .current_dir(&dir.0)
        .env("WASMOND_MODULE_DIR", &empty)
        .env("XDG_CACHE_HOME", dir.0.join("cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the copied wasmond");
    let wanted = ["cpu_num", "mem_total", "load_one", "os_name", "boottime"];
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let xml = fetch_xml(port).unwrap_or_default();
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|name| !xml.contains(&format!("<METRIC NAME=\"{name}\"")))
            .collect();
        if missing.is_empty() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "wasmond exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{missing:?} not served in {START_TIMEOUT:?}:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    terminate(&mut child);
}

/// `wasmond --help` says what the man page does beyond the options: files, environment,
/// signals, how it runs in the background, where to read more.
#[test]
fn help_reads_like_a_man_page() {
    let output = Command::new(env!("CARGO_BIN_EXE_wasmond"))
        .arg("--help")
        .output()
        .expect("run wasmond --help");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for part in [
        "Files:",
        "/etc/ganglia/gmond.conf",
        "/usr/lib/wasmond/modules",
        "Environment:",
        "NOTIFY_SOCKET",
        "SIGHUP",
        "pid",
        "wasmond(8)",
    ] {
        assert!(text.contains(part), "{part:?} not in:\n{text}");
    }
}
