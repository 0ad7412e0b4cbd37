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

/// A valid `order.placed` payload (see docs/catalog.md) for `order_id` with `total`.
pub fn order_json(order_id: &str, total: u64) -> String {
    format!(
        r#"{{"order_id":"{order_id}","customer":"acme","total":{total},"currency":"EUR","promised_by":"2026-11-23T10:00:00Z"}}"#
    )
}
