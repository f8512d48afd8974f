//! Real Ganglia 3.7.2 peers for the interop tests: start `gmond` and `gmetad` on free
//! loopback ports with configs written to a temporary directory, run `gmetric` and
//! `xmllint`, fetch XML over TCP. Every daemon is killed (by its own pid) when its
//! handle drops, so a failing test leaves nothing running.
//!
//! [`require_ganglia`] decides skip or fail when the tools are missing: the tests print
//! that they skipped, unless `WASMOND_REQUIRE_INTEROP=1`, under which that is a failure.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub const GMOND: &str = "/usr/sbin/gmond";
pub const GMETAD: &str = "/usr/sbin/gmetad";
pub const GMETRIC: &str = "/usr/bin/gmetric";
pub const XMLLINT: &str = "/usr/bin/xmllint";
pub const GSTAT: &str = "/usr/bin/gstat";

/// Whether the real Ganglia tools are here. When they are not, prints that `test`
/// skipped and returns false, or panics under `WASMOND_REQUIRE_INTEROP=1`.
pub fn require_ganglia(test: &str) -> bool {
    let missing: Vec<&str> = [GMOND, GMETAD, GMETRIC, GSTAT, XMLLINT]
        .into_iter()
        .filter(|tool| !Path::new(tool).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test}: skipped, real Ganglia 3.7.2 tools missing: {missing:?}");
    if std::env::var("WASMOND_REQUIRE_INTEROP").is_ok_and(|value| value == "1") {
        panic!("{message} (WASMOND_REQUIRE_INTEROP=1)");
    }
    eprintln!("{message}");
    false
}

/// A directory removed with everything in it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("wasmond-{label}-{}-{unique}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("WASMOND_KEEP_TEMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A port free on 127.0.0.1 for both TCP and UDP (gmond serves both on one number).
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind tcp");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// A TCP port free on every address: gmetad 3.7.2 cannot bind to loopback only.
pub fn free_port_any() -> u16 {
    let tcp = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind tcp");
    tcp.local_addr().unwrap().port()
}

/// A running daemon, killed on drop; its output goes to `log`.
pub struct Daemon {
    pub name: &'static str,
    // In a cell so that a test can check on the daemon from the closures that poll it.
    child: std::cell::RefCell<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> Daemon {
        let out = std::fs::File::create(&log).expect("create log");
        let err = out.try_clone().expect("clone log");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|error| panic!("start {name}: {error}"));
        Daemon {
            name,
            child: child.into(),
            log,
        }
    }

    /// The `wasmond run` binary of this build on `conf`, written to `dir/wasmond.conf`;
    /// it logs to `dir/wasmond.log`.
    pub fn spawn_wasmond(dir: &TempDir, conf: &str) -> Daemon {
        let conf_path = dir.write("wasmond.conf", conf);
        Daemon::spawn(
            "wasmond",
            Command::new(env!("CARGO_BIN_EXE_wasmond"))
                .arg("run")
                .arg("-c")
                .arg(&conf_path),
            dir.path().join("wasmond.log"),
        )
    }

    /// Everything the daemon printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; returns its status.
    pub fn terminate(&self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let pid = libc::pid_t::try_from(self.child.borrow().id()).ok()?;
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.borrow_mut().try_wait() {
                return Some(status);
            }
            sleep(Duration::from_millis(50));
        }
        None
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the daemon.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.borrow().id()).expect("a pid");
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe { libc::kill(pid, signal) };
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.borrow().id()
    }

    /// Panics (with the log) if the daemon has exited.
    pub fn assert_running(&self) {
        if let Ok(Some(status)) = self.child.borrow_mut().try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, self.log_text());
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let child = self.child.get_mut();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A real gmond on 127.0.0.1: its udp_recv_channel and tcp_accept_channel share `port`.
pub struct Gmond {
    pub daemon: Daemon,
    pub port: u16,
    _dir: TempDir,
}

impl Gmond {
    /// Starts gmond with `extra` appended to a receive-and-serve config (cluster
    /// `cluster`, no modules of its own, mute so it only shows what it receives, and
    /// the OS default receive buffer, as gmond has by default).
    pub fn start(cluster: &str, extra: &str) -> Gmond {
        Gmond::launch(
            cluster,
            free_port(),
            true,
            "send_metadata_interval = 0",
            extra,
        )
    }

    /// Starts a gmond on `port` that is not mute and sends to `peer` only what it has to
    /// say without modules: its metadata requests (id 136).
    pub fn start_asking(cluster: &str, port: u16, peer: SocketAddr) -> Gmond {
        let channel = format!(
            "udp_send_channel {{\n  host = {}\n  port = {}\n}}\n",
            peer.ip(),
            peer.port()
        );
        Gmond::launch(cluster, port, false, "send_metadata_interval = 0", &channel)
    }

    /// Starts a gmond that sends to `peer`, as host `hostname` (`override_hostname`),
    /// the metrics of the modules and collection groups in `extra`, repeating their
    /// metadata every 2 s so that the peer learns them whenever it starts listening.
    pub fn start_sending(cluster: &str, peer: SocketAddr, hostname: &str, extra: &str) -> Gmond {
        let globals = format!("send_metadata_interval = 2\n  override_hostname = \"{hostname}\"");
        let extra = format!(
            "udp_send_channel {{\n  host = {}\n  port = {}\n}}\n{extra}",
            peer.ip(),
            peer.port()
        );
        Gmond::launch(cluster, free_port(), false, &globals, &extra)
    }

    /// `globals`: the `send_metadata_interval` line and any other global settings.
    fn launch(cluster: &str, port: u16, mute: bool, globals: &str, extra: &str) -> Gmond {
        let dir = TempDir::new("gmond");
        let mute = if mute { "yes" } else { "no" };
        let conf = format!(
            r#"globals {{
  daemonize = no
  setuid = no
  debug_level = 0
  mute = {mute}
  deaf = no
  host_dmax = 0
  cleanup_threshold = 300
  {globals}
}}
cluster {{
  name = "{cluster}"
  owner = "wasmond tests"
}}
udp_recv_channel {{
  port = {port}
  bind = 127.0.0.1
}}
tcp_accept_channel {{
  port = {port}
  bind = 127.0.0.1
}}
{extra}
"#
        );
        let conf_path = dir.write("gmond.conf", &conf);
        let log = dir.path().join("gmond.log");
        let daemon = Daemon::spawn(
            "gmond",
            Command::new(GMOND).arg("-f").arg("-c").arg(&conf_path),
            log,
        );
        let gmond = Gmond {
            daemon,
            port,
            _dir: dir,
        };
        gmond.wait_serving();
        gmond
    }

    fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            self.daemon.assert_running();
            if fetch_xml(self.addr()).is_ok_and(|xml| xml.contains("</GANGLIA_XML>")) {
                return;
            }
            sleep(Duration::from_millis(50));
        }
        panic!(
            "gmond did not serve XML in 10 s:\n{}",
            self.daemon.log_text()
        );
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn xml(&self) -> String {
        fetch_xml(self.addr()).expect("fetch gmond XML")
    }
}

/// A real gmetad polling one data source every `poll_seconds`, with RRDs in a temp dir.
pub struct Gmetad {
    pub daemon: Daemon,
    pub xml_port: u16,
    pub interactive_port: u16,
    pub rrd_dir: PathBuf,
    _dir: TempDir,
}

impl Gmetad {
    pub fn start(cluster: &str, source: SocketAddr, poll_seconds: u32) -> Gmetad {
        let dir = TempDir::new("gmetad");
        let rrd_dir = dir.path().join("rrds");
        std::fs::create_dir_all(&rrd_dir).unwrap();
        let xml_port = free_port_any();
        let interactive_port = free_port_any();
        let conf = format!(
            r#"data_source "{cluster}" {poll_seconds} {source}
gridname "WasmondGrid"
authority "http://example.invalid/ganglia/"
trusted_hosts 127.0.0.1
setuid off
xml_port {xml_port}
interactive_port {interactive_port}
server_threads 2
rrd_rootdir "{}"
case_sensitive_hostnames 1
"#,
            rrd_dir.display()
        );
        let conf_path = dir.write("gmetad.conf", &conf);
        let log = dir.path().join("gmetad.log");
        // `-d 2` keeps gmetad in the foreground and logs each update and RRD it creates.
        let daemon = Daemon::spawn(
            "gmetad",
            Command::new(GMETAD)
                .arg("-d")
                .arg("2")
                .arg("-c")
                .arg(&conf_path),
            log,
        );
        Gmetad {
            daemon,
            xml_port,
            interactive_port,
            rrd_dir,
            _dir: dir,
        }
    }

    pub fn xml_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.xml_port))
    }

    /// Asks the interactive port for `path` (e.g. `/Cluster/host/metric`).
    pub fn query(&self, path: &str) -> std::io::Result<String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.interactive_port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(format!("{path}\n").as_bytes())?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    }
}

/// Reads the whole document a gmond-style XML server writes on connect.
pub fn fetch_xml(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    // The document declares ISO-8859-1; every byte is one character.
    Ok(bytes.iter().map(|&byte| char::from(byte)).collect())
}

/// Runs gmetric with a config whose one send channel is `target`, plus `args`.
pub fn gmetric(dir: &TempDir, target: SocketAddr, args: &[&str]) -> Output {
    let conf = format!(
        "globals {{\n  max_udp_msg_len = 1472\n}}\nudp_send_channel {{\n  host = {}\n  port = {}\n}}\n",
        target.ip(),
        target.port()
    );
    let conf_path = dir.write("gmetric.conf", &conf);
    let output = Command::new(GMETRIC)
        .arg("-c")
        .arg(&conf_path)
        .args(args)
        .output()
        .expect("run gmetric");
    assert!(
        output.status.success(),
        "gmetric {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// What `gstat --all` prints about the gmond-style XML server at `addr`.
pub fn gstat(addr: SocketAddr) -> String {
    let output = Command::new(GSTAT)
        .args(["--all", "--single_line", "-i"])
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .output()
        .expect("run gstat");
    assert!(
        output.status.success(),
        "gstat failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Validates `xml` against its internal DTD with `xmllint --valid`; returns its complaints.
pub fn xmllint_valid(dir: &TempDir, xml: &str) -> Result<(), String> {
    let path = dir.path().join("document.xml");
    let bytes: Vec<u8> = xml
        .chars()
        .map(|c| u8::try_from(c).unwrap_or(b'?'))
        .collect();
    std::fs::write(&path, bytes).unwrap();
    let output = Command::new(XMLLINT)
        .args(["--valid", "--noout"])
        .arg(&path)
        .output()
        .expect("run xmllint");
    if output.status.success() && output.stderr.is_empty() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` with
/// `what` and the output of `context`.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return found;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        sleep(Duration::from_millis(100));
    }
}
