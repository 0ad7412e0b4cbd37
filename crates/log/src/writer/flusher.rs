//! The flusher thread: one fsync for every group that queued up meanwhile, then
//! the new durable head published and the appenders answered.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::{broadcast, watch};

use super::answering::Answering;
use super::{FlushItem, LiveGroup};
use crate::LogError;

/// Flushes and answers what the writer hands over, until told to close.
pub(super) fn flusher_loop(
    db: sled::Db,
    rx: std_mpsc::Receiver<FlushItem>,
    committed: watch::Sender<u64>,
    live: broadcast::Sender<LiveGroup>,
    poison: Arc<OnceLock<String>>,
) {
    while let Ok(first) = rx.recv() {
        let mut items = vec![first];
        items.extend(rx.try_iter());
        let started = Instant::now();
        let flushed = db.flush();
        metrics::histogram!("opsflow_fsync_seconds").record(started.elapsed().as_secs_f64());
        if let Err(e) = &flushed {
            tracing::error!(error = %e, "fsync failed; refusing further writes");
            let _ = poison.set(format!("fsync failed: {e}"));
        }
        let mut close = None;
        for item in items {
            match item {
                FlushItem::Group {
                    head,
                    events,
                    bytes,
                    replies,
                    live: group,
                } => {
                    if flushed.is_ok() {
                        // Before the head moves: a subscriber woken by it finds the
                        // group waiting. None listening is no error.
                        if let Some(group) = group {
                            let _ = live.send(group);
                        }
                        committed.send_if_modified(|h| {
                            let changed = *h != head.position;
                            *h = head.position;
                            changed
                        });
                        metrics::counter!("opsflow_appended_events_total").increment(events);
                        metrics::counter!("opsflow_appended_bytes_total").increment(bytes);
                    }
                    let mut answering = Answering::default();
                    for (reply, outcome) in replies {
                        let outcome = match (&flushed, outcome) {
                            (Ok(_), o) => o,
                            (Err(e), Ok(_)) => Err(LogError::Poisoned(format!("fsync failed: {e}"))),
                            (Err(_), Err(e)) => Err(e),
                        };
                        answering.answer(reply, outcome);
                    }
                }
                FlushItem::Close(done) => close = Some(done),
            }
        }
        if let Some(done) = close {
            let _ = done.send(());
            break;
        }
    }
    tracing::debug!("log flusher stopped");
}
