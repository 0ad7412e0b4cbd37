//! An in-process server on a free loopback port with its own temp data dir.

use opsflow_server::{Config, Server};

/// An in-process opsflow server; its data dir lives as long as it does.
#[derive(Debug)]
pub struct TestServer {
    pub server: Server,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with default config on `127.0.0.1:0`.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `tweak` adjusts the config.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse()?,
            ..Config::default()
        };
        tweak(&mut config);
        let server = Server::start(&config).await?;
        Ok(TestServer { server, dir })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.server.shutdown().await
    }
}
