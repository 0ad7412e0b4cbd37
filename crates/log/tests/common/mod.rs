//! Helpers shared by the log's integration tests. Each test binary uses a
//! different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::Path;

use opsflow_log::{Direction, EventLog, LogOptions, ProposedEvent, RecordedEvent};

/// What a test returns: any error fails it with its message.
pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Options for a test log: a small page cache, everything else default.
pub fn options() -> LogOptions {
    LogOptions { cache_bytes: 16 << 20, ..LogOptions::default() }
}

/// A JSON event with an explicit identity, so that what we propose is exactly what
/// the log records (nothing is filled in by normalisation).
pub fn event(event_type: &str, source: &str, id: &str, data: &str) -> ProposedEvent {
    ProposedEvent::json(event_type, data.to_owned()).with_identity(source, id)
}

/// Every durable event, in position order.
pub async fn read_everything(log: &EventLog) -> opsflow_log::Result<Vec<RecordedEvent>> {
    log.read_all(None, Direction::Forward, usize::MAX).await
}

/// Every durable event of one stream, in version order.
pub async fn read_stream_all(log: &EventLog, stream: &str) -> opsflow_log::Result<Vec<RecordedEvent>> {
    log.read_stream(stream, None, Direction::Forward, usize::MAX).await
}

/// Closes `log` and waits until its directory can be opened again (every handle,
/// including the one passed in, must be dropped by then).
pub async fn close(log: EventLog) -> opsflow_log::Result<()> {
    log.close().await?;
    drop(log);
    Ok(())
}

/// Opens the sled database under a closed log directly, to damage it on purpose.
/// The caller must drop the returned handle before opening the log again.
pub fn open_raw(dir: &Path) -> sled::Result<sled::Db> {
    sled::Config::new().path(dir).flush_every_ms(None).open()
}

/// Removes every key of `db` that starts with `prefix`.
pub fn remove_prefix(db: &sled::Db, prefix: &[u8]) -> sled::Result<usize> {
    let keys: Vec<sled::IVec> = db.scan_prefix(prefix).keys().collect::<sled::Result<_>>()?;
    for key in &keys {
        db.remove(key)?;
    }
    Ok(keys.len())
}
