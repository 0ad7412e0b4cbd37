//! The real `opsflow` binary as a child process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Path of the `opsflow` binary next to the running test executable
/// (`target/<profile>/opsflow`), or `$OPSFLOW_BIN`.
pub fn opsflow_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("OPSFLOW_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("cannot find the test executable")?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("opsflow{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        bail!(
            "the opsflow binary is not built at {}: run `cargo build -p opsflow` first (scripts/test does), or set OPSFLOW_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

/// A running `opsflow dev` process. Killed on drop.
#[derive(Debug)]
pub struct OpsflowProcess {
    child: Child,
    addr: SocketAddr,
    data: PathBuf,
    stdout_rest: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl OpsflowProcess {
    /// Starts `opsflow dev --data DATA --listen 127.0.0.1:0` and waits until it serves.
    pub fn start(data: &Path) -> anyhow::Result<Self> {
        Self::start_with(data, &[])
    }

    /// Like [`OpsflowProcess::start`] with extra `opsflow dev` arguments.
    pub fn start_with(data: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(data, extra, &[])
    }

    /// Like [`OpsflowProcess::start_with`] with extra environment variables (such as
    /// `OPSFLOW_*` config overrides).
    pub fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let bin = opsflow_binary()?;
        let mut child = Command::new(&bin)
            .arg("dev")
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("OPSFLOW_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut addr = None;
        while addr.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("opsflow did not report its address within 30 s");
            }
            let Some(line) = lines.next() else {
                let status = child.wait()?;
                bail!("opsflow exited before serving: {status}");
            };
            let line = line?;
            if let Some(rest) = line.trim().strip_prefix("gRPC") {
                let url = rest.split_whitespace().next().unwrap_or_default();
                addr = Some(
                    url.trim_start_matches("http://")
                        .parse::<SocketAddr>()
                        .with_context(|| format!("bad address line {line:?}"))?,
                );
            }
        }
        let rest = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = rest.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(mut v) = sink.lock() {
                    v.push(line);
                }
            }
        });
        let addr = addr.context("no address")?;
        Ok(OpsflowProcess {
            child,
            addr,
            data: data.to_path_buf(),
            stdout_rest: rest,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, for gRPC clients and HTTP requests.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit; returns whether it exited with success.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        signal(self.child.id(), "TERM")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                self.kill();
                bail!("opsflow did not stop within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the process printed on stdout after its start-up banner.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_rest.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Sends a signal with the `kill` command (keeps this crate free of unsafe code).
fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        bail!("kill -{sig} {pid} failed: {status}");
    }
    Ok(())
}

impl Drop for OpsflowProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
