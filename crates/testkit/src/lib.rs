//! Test support for opsflow: temp data directories, in-process servers, the
//! real `opsflow` binary as a child process that can be stopped, killed and
//! restarted, and a real `nats-server` with JetStream ([`NatsServer`]).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let mut server = opsflow_testkit::OpsflowProcess::start(dir.path())?;
//! println!("gRPC and HTTP on {}", server.url());
//! server.kill(); // SIGKILL, like a crash
//! # Ok(()) }
//! ```

mod nats;
mod process;
mod server;

pub use nats::{NatsServer, nats_server_binary};
pub use process::{OpsflowProcess, opsflow_binary};
pub use server::TestServer;

/// A 300-byte-ish JSON payload for order events.
pub fn order_json(order_id: &str, amount: u64) -> String {
    format!(r#"{{"order_id":"{order_id}","amount":{amount},"currency":"EUR","customer":"acme"}}"#)
}
