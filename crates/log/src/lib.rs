//! The opsflow event log: the single source of truth, on sled.
//!
//! - **Positions** are global, gapless and strictly increasing from 1; each event
//!   also has a **version** in its stream (0, 1, 2, ...).
//! - **Appends** check an [`ExpectedVersion`] per stream, are atomic (one stream or
//!   several with [`EventLog::append_many`]) and are acknowledged only after fsync.
//!   Concurrent appends are group-committed: one writer thread applies everything
//!   queued as one sled batch, one flusher thread fsyncs once per batch.
//! - **Idempotency**: appending the same `(source, id)` again returns the original
//!   positions with `duplicate = true`, also after a restart; the same identity with
//!   different content is [`LogError::DuplicateConflict`].
//! - **Tamper evidence**: every event carries `SHA-256(prev_hash || canonical bytes)`;
//!   [`EventLog::verify`] names the first position that does not verify.
//! - **Reads** of one stream or all, forwards or backwards, and **subscriptions**
//!   (catch-up, then live, with filters and back-pressure).
//! - **Content checks**: an optional [`EventValidator`] (e.g. the operational
//!   catalog) refuses events whose data does not fit, before anything is queued.
//! - **Recovery**: events are the source of truth; indexes are re-derived from them
//!   when they lag (see [`EventLog::reindex`]). The stored layout is versioned
//!   ([`STORE_FORMAT`]).
//!
//! ```no_run
//! # async fn demo() -> opsflow_log::Result<()> {
//! use opsflow_log::{Direction, EventLog, ExpectedVersion, LogOptions, ProposedEvent};
//! let log = EventLog::open_async("/tmp/opsflow-example", LogOptions::default()).await?;
//! let placed = ProposedEvent::json("order.placed", r#"{"order_id":"PO-1"}"#).with_identity("shop", "1");
//! log.append("order/PO-1", ExpectedVersion::Any, vec![placed]).await?;
//! let events = log.read_stream("order/PO-1", None, Direction::Forward, 100).await?;
//! assert_eq!(events[0].event_type, "order.placed");
//! assert!(log.verify(None, None).await?.ok());
//! log.close().await
//! # }
//! ```

mod codec;
mod error;
mod identity;
mod limits;
mod log;
mod store;
mod subscription;
mod tail;
mod types;
mod validator;
mod writer;

pub use error::{ErrorKind, LogError, Result};
pub use limits::{
    Limits, event_size, media_type_problem, recorded_event_size, uri_reference_problem, validate_event_type,
    validate_stream_name, validate_stream_prefix,
};
pub use log::{DEFAULT_SOURCE, EventLog, JSON, LogOptions, PendingAppends, is_json_content_type};
pub use store::{SLED_SEGMENT_SIZE, STORE_FORMAT, open_sled};
pub use subscription::{Subscription, SubscriptionItem, SubscriptionRef};
pub use types::{
    AppendOutcome, BrokenLink, Direction, EventFilter, ExpectedVersion, ProposedEvent, RecordFields, RecordedEvent,
    Scanned, StreamAppend, StreamInfo, UnixNanos, VerifyReport, civil_from_days, rfc3339,
};
pub use validator::{EventValidator, Rejection};
