//! Catch-up then live subscriptions.
//!
//! A subscription is a cursor over the durable log: it reads pages from its next
//! position up to the durable head, and when there is nothing left it waits for
//! the head to move. The switch from catch-up to live is therefore just "read from
//! the cursor again": no gap, no duplicate. A slow consumer simply calls `next`
//! less often (back-pressure); nothing is buffered beyond one page.

use std::collections::VecDeque;

use tokio::sync::watch;

use crate::{EventFilter, EventLog, LogError, RecordedEvent, Result};

const PAGE: usize = 512;
/// With a filter, report progress at least this often (in positions scanned).
const CHECKPOINT_EVERY: u64 = 4096;

/// What a subscription yields.
#[allow(clippy::large_enum_variant)] // events are the common case; boxing each costs an allocation
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionItem {
    Event(RecordedEvent),
    /// Catch-up ended at this head; live delivery follows. Sent once.
    CaughtUp(u64),
    /// Every position up to this one was considered (sent while filtering skips events).
    Checkpoint(u64),
}

/// A catch-up + live subscription; see [`EventLog::subscribe`].
pub struct Subscription {
    log: EventLog,
    next: u64,
    filter: EventFilter,
    buffer: VecDeque<RecordedEvent>,
    head: watch::Receiver<u64>,
    caught_up: bool,
    last_checkpoint: u64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("next", &self.next)
            .field("filter", &self.filter)
            .finish()
    }
}

impl Subscription {
    pub(crate) fn new(log: EventLog, from: u64, filter: EventFilter) -> Self {
        let head = log.watch_head();
        Subscription {
            log,
            next: from,
            filter,
            buffer: VecDeque::new(),
            head,
            caught_up: false,
            last_checkpoint: from - 1,
        }
    }

    /// The next position this subscription will consider.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next item; `Err(Closed)` once the log is closed and everything durable was delivered.
    pub async fn next(&mut self) -> Result<SubscriptionItem> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Ok(SubscriptionItem::Event(event));
            }
            let head = *self.head.borrow_and_update();
            if self.next <= head {
                // The drained buffer's memory holds the next page.
                let spare = Vec::from(std::mem::take(&mut self.buffer));
                let mut page = self.log.read_page(self.next, PAGE, spare).await?;
                let Some(last) = page.last().map(|e| e.position) else {
                    return Err(LogError::corrupt(
                        format!("position {}", self.next),
                        "missing below the head",
                    ));
                };
                self.next = last + 1;
                page.retain(|e| self.filter.matches(e));
                self.buffer = VecDeque::from(page);
                if self.buffer.is_empty() && self.next - 1 - self.last_checkpoint >= CHECKPOINT_EVERY {
                    self.last_checkpoint = self.next - 1;
                    return Ok(SubscriptionItem::Checkpoint(self.next - 1));
                }
                continue;
            }
            if !self.caught_up {
                self.caught_up = true;
                return Ok(SubscriptionItem::CaughtUp(head));
            }
            if self.head.changed().await.is_err() {
                // The flusher is gone: deliver what became durable before it stopped.
                if *self.head.borrow() >= self.next {
                    continue;
                }
                return Err(LogError::Closed);
            }
        }
    }
}
