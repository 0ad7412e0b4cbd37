//! The opsflow server: gRPC (`opsflow.v1.EventLog`, `opsflow.v1.Audit`, health,
//! reflection) and HTTP (CloudEvents ingest, JSON reads, `/healthz`, `/readyz`,
//! `/metrics`) on one address, over one [`opsflow_log::EventLog`].
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let mut config = opsflow_server::Config::default();
//! config.listen = "127.0.0.1:0".parse()?;
//! let server = opsflow_server::Server::start(&config).await?;
//! println!("listening on {}", server.addr());
//! server.shutdown().await
//! # }
//! ```

mod config;
mod error;
mod grpc;
mod grpc_health;
mod health;
mod http;
pub mod metrics;
mod nats;
mod server;
pub mod views;

pub use config::{Config, ConfigError, DefinitionsConfig, DemoConfig, LogConfig, ViewsConfig};
pub use error::ApiError;
pub use health::{TaskState, Tasks, readiness};
pub use opsflow_cloudevents::EXPECTED_VERSION_HEADER;
pub use opsflow_nats::NatsConfig;
pub use server::{Server, wait_for_signal};
