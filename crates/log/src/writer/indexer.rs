//! The indexer thread: frozen stream index tails written to sled.

use std::sync::OnceLock;
use std::sync::mpsc as std_mpsc;
use std::time::Instant;

use super::IndexJob;
use crate::store::{META_INDEXED, Store, stream_key};
use crate::tail::Runs;

/// Writes frozen stream index tails to sled, each with the position it indexes up to.
pub(super) fn indexer_loop(store: &Store, rx: std_mpsc::Receiver<IndexJob>, poison: &OnceLock<String>) {
    /// A panic here would leave the index tail growing unseen: stop the log instead.
    struct PoisonOnPanic<'a>(&'a OnceLock<String>);
    impl Drop for PoisonOnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                tracing::error!("the log indexer panicked; refusing further writes");
                let _ = self.0.set("the log indexer panicked".into());
            }
        }
    }
    let _guard = PoisonOnPanic(poison);
    while let Ok(job) = rx.recv() {
        let started = Instant::now();
        if let Err(e) = write_index(store, &job.runs, job.indexed) {
            // The frozen runs stay readable in memory; the log stops taking writes.
            tracing::error!(error = %e, "writing the stream index failed; refusing further writes");
            let _ = poison.set(format!("writing the stream index failed: {e}"));
            return;
        }
        metrics::histogram!("opsflow_stream_index_write_seconds").record(started.elapsed().as_secs_f64());
        tracing::debug!(streams = job.runs.by_stream.len(), events = job.runs.events, indexed = job.indexed, elapsed = ?started.elapsed(), "stream index written");
    }
}

/// Writes the frozen generation `runs` (one stream index entry per stream) and
/// `indexed` in one atomic batch, then releases it from memory. On failure it stays
/// frozen: readable in memory, and never frozen over.
pub(super) fn write_index(store: &Store, runs: &Runs, indexed: u64) -> sled::Result<()> {
    let mut batch = sled::Batch::default();
    for (stream, run) in &runs.by_stream {
        batch.insert(stream_key(stream, run.first_version), run.value());
    }
    batch.insert(META_INDEXED, &indexed.to_be_bytes());
    store.db.apply_batch(batch)?;
    store.tail.release_frozen();
    Ok(())
}
