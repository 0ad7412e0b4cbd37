//! Helpers shared by the log's integration tests. Each test binary uses a
//! different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use opsflow_log::{Direction, EventLog, LogError, LogOptions, ProposedEvent, RecordedEvent};

/// How long to wait for the file lock of a database that was just dropped.
const LOCK_PATIENCE: Duration = Duration::from_secs(5);
const LOCK_RETRY: Duration = Duration::from_millis(10);

/// What a test returns: any error fails it with its message.
pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Options for a test log: a small page cache, and stream index entries written
/// every few events (so that reads meet them in memory, being written and in sled).
pub fn options() -> LogOptions {
    LogOptions {
        cache_bytes: 16 << 20,
        index_every_events: 3,
        ..LogOptions::default()
    }
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

/// Closes `log` and drops this handle (every other handle must be dropped too
/// before its directory can be opened again).
pub async fn close(log: EventLog) -> opsflow_log::Result<()> {
    log.close().await?;
    drop(log);
    Ok(())
}

/// Whether sled refused to open because another handle still holds the file lock.
/// After the last handle of a database is dropped, sled's background threads can
/// hold the file for a moment, so reopening a directory in the same process right
/// away can fail transiently.
fn is_locked(err: &sled::Error) -> bool {
    matches!(err, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

fn is_log_locked(err: &LogError) -> bool {
    matches!(err, LogError::Storage(e) if is_locked(e))
}

/// Opens the log in `dir` (see [`is_locked`] for why it may have to wait).
pub async fn open(dir: &Path, options: LogOptions) -> opsflow_log::Result<EventLog> {
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        match EventLog::open_async(dir, options.clone()).await {
            Err(e) if is_log_locked(&e) && Instant::now() < deadline => tokio::time::sleep(LOCK_RETRY).await,
            result => return result,
        }
    }
}

/// [`EventLog::reindex`] (see [`is_locked`] for why it may have to wait).
pub fn reindex(dir: &Path) -> opsflow_log::Result<u64> {
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        match EventLog::reindex(dir) {
            Err(e) if is_log_locked(&e) && Instant::now() < deadline => std::thread::sleep(LOCK_RETRY),
            result => return result,
        }
    }
}

/// Opens the sled database under a closed log directly, to damage it on purpose.
/// The caller must drop the returned handle before opening the log again.
pub fn open_raw(dir: &Path) -> sled::Result<sled::Db> {
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        match sled::Config::new()
            .path(dir)
            .segment_size(opsflow_log::SLED_SEGMENT_SIZE)
            .flush_every_ms(None)
            .open()
        {
            Err(e) if is_locked(&e) && Instant::now() < deadline => std::thread::sleep(LOCK_RETRY),
            result => return result,
        }
    }
}

/// Removes every key of `db` that starts with `prefix`.
pub fn remove_prefix(db: &sled::Db, prefix: &[u8]) -> sled::Result<usize> {
    let keys: Vec<sled::IVec> = db.scan_prefix(prefix).keys().collect::<sled::Result<_>>()?;
    for key in &keys {
        db.remove(key)?;
    }
    Ok(keys.len())
}
