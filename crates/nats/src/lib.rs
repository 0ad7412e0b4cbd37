//! opsflow's NATS transport (DESIGN §3):
//!
//! - **Ingest** ([`run_ingest`]): a JetStream stream over `ops.events.>` (created, or
//!   adopted when compatible) and a durable pull consumer. CloudEvents in structured
//!   JSON, binary (`ce-*` headers) and protobuf modes are appended in batches; each
//!   message is acknowledged only once its event is durable. Redeliveries are
//!   absorbed by the log's idempotent `(source, id)`: effectively once.
//! - **Dead letters** ([`DeadLetters`]): undecodable, invalid or conflicting messages go
//!   to `opsflow.dlq.<reason>` (kept by a JetStream stream) and are terminated.
//! - **Request/reply** ([`run_request_reply`]) on `opsflow.api.append`.
//! - **Outbound** ([`run_outbound`]): committed events on `opsflow.log.<type>` with
//!   `Nats-Msg-Id` = position, resuming from a checkpoint.
//!
//! ```no_run
//! # async fn demo(log: opsflow_log::EventLog) -> anyhow::Result<()> {
//! let config = opsflow_nats::NatsConfig::url("nats://127.0.0.1:4222");
//! let ready = opsflow_nats::Readiness::default();
//! let client = opsflow_nats::connect(&config, &ready.connection).await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! tokio::spawn(opsflow_nats::run_ingest(client, config, log, shutdown, ready));
//! # Ok(()) }
//! ```

mod claim;
mod config;
mod connection;
mod decode;
mod dlq;
mod error;
mod ingest;
mod outbound;
mod pull;
mod ready;
mod reply;
mod subjects;

pub use config::{DeadLetterConfig, IngestConfig, NatsConfig, OutboundConfig, RequestReplyConfig, TlsConfig};
pub use connection::{client_stopped, connect, connects, is_connected};
pub use decode::{DeadReason, decode};
pub use dlq::DeadLetters;
pub use error::{NatsError, Result};
pub use ingest::{ensure_stream, run_ingest};
pub use outbound::run_outbound;
pub use ready::{Flag, Readiness};
pub use reply::run_request_reply;
