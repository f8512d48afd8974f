//! `wasmond run` as a child process: its config written to a temporary directory, its
//! log collected, signals sent to it by its own pid, its XML fetched over TCP. The child
//! is killed (by pid) when the handle drops, so a failing test leaves nothing running.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A loopback port the OS just handed out (and that is free again).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// One `modules { module { } }` block for a wasm module.
pub fn module_block(name: &str, wasm: &Path, params: &[(&str, &str)], sandbox: &str) -> String {
    let params: String = params
        .iter()
        .map(|(k, v)| format!("    param {k} {{ value = \"{v}\" }}\n"))
        .collect();
    format!(
        "modules {{\n  module {{\n    name = \"{name}\"\n    language = \"wasm\"\n    path = \"{}\"\n{params}    sandbox {{ {sandbox} }}\n  }}\n}}\n",
        wasm.display()
    )
}

/// A config serving XML on `xml_port`, with `rest` (modules, groups, includes) after it.
pub fn config_with(xml_port: u16, rest: &str) -> String {
    format!(
        "globals {{\n  daemonize = no\n  setuid = no\n  debug_level = 0\n}}\n\
         tcp_accept_channel {{\n  bind = 127.0.0.1\n  port = {xml_port}\n}}\n{rest}"
    )
}

/// A group collecting every second what `name_match` matches.
pub fn group_matching(pattern: &str) -> String {
    format!(
        "collection_group {{\n  collect_every = 1\n  time_threshold = 1\n  metric {{ name_match = \"{pattern}\" }}\n}}\n"
    )
}

pub struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    pub fn start(config: &Path) -> Daemon {
        Daemon::start_with(config, &[])
    }

    pub fn start_with(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmond"))
            .args(["run", "-c"])
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Daemon { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to `within` until the log contains `text`.
    pub fn wait_log_for(&self, text: &str, within: Duration) {
        let started = Instant::now();
        while started.elapsed() < within {
            if self.log().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no {text:?} in the log after {within:?}:\n{}", self.log());
    }

    pub fn wait_log(&self, text: &str) {
        self.wait_log_for(text, Duration::from_secs(15));
    }

    /// The XML served on `port`, or an empty string when nothing answers.
    pub fn xml(&self, port: u16) -> String {
        let mut xml = String::new();
        if let Ok(mut stream) = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = stream.read_to_string(&mut xml);
        }
        xml
    }

    /// Waits up to `within` until the XML served on `port` satisfies `ok`.
    pub fn wait_xml_until(&self, port: u16, within: Duration, ok: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        let mut xml = String::new();
        while started.elapsed() < within {
            xml = self.xml(port);
            if ok(&xml) {
                return xml;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the XML never satisfied the test within {within:?}:\n{xml}\nlog:\n{}",
            self.log()
        );
    }

    /// Waits until the XML served on `port` contains `text`.
    pub fn wait_xml(&self, port: u16, text: &str) -> String {
        self.wait_xml_until(port, Duration::from_secs(15), |xml| xml.contains(text))
    }

    /// Waits for the process to exit; returns its status and how long it took.
    pub fn wait_exit(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!(
            "the daemon did not exit within {within:?}; log:\n{}",
            self.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory for one test's files, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("wasmond-faults-")
        .tempdir()
        .unwrap()
}

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path) -> PathBuf {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
    path.to_path_buf()
}
