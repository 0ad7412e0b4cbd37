//! Catch-up then live subscriptions.
//!
//! A subscription is a cursor over the durable log: it reads pages from its next
//! position up to the durable head, and when there is nothing left it waits for
//! the head to move. The switch from catch-up to live is therefore just "read from
//! the cursor again": no gap, no duplicate. A slow consumer simply calls `next`
//! less often (back-pressure); nothing is buffered beyond one page.
//!
//! Live, the events usually come without a read: the log hands each committed
//! group to its subscribers as the writer appended it (a few groups at most wait
//! for a subscriber). A group that did not come, or came too late, is read from the
//! log like any page, so the order and the "no gap, no duplicate" stay the log's.

use std::collections::VecDeque;

use tokio::sync::{broadcast, watch};

use crate::writer::LiveGroup;

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

/// What [`Subscription::next_ref`] yields: an event lent, not copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionRef<'a> {
    Event(&'a RecordedEvent),
    /// As [`SubscriptionItem::CaughtUp`].
    CaughtUp(u64),
    /// As [`SubscriptionItem::Checkpoint`].
    Checkpoint(u64),
}

/// What a subscription gives other than an event.
#[derive(Debug, Clone, Copy)]
enum Control {
    CaughtUp(u64),
    Checkpoint(u64),
}

impl From<Control> for SubscriptionItem {
    fn from(control: Control) -> Self {
        match control {
            Control::CaughtUp(head) => SubscriptionItem::CaughtUp(head),
            Control::Checkpoint(at) => SubscriptionItem::Checkpoint(at),
        }
    }
}

impl From<Control> for SubscriptionRef<'_> {
    fn from(control: Control) -> Self {
        match control {
            Control::CaughtUp(head) => SubscriptionRef::CaughtUp(head),
            Control::Checkpoint(at) => SubscriptionRef::Checkpoint(at),
        }
    }
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
    /// Committed groups as the log hands them over.
    live: broadcast::Receiver<LiveGroup>,
    /// The group received that holds or follows the next position.
    group: Option<LiveGroup>,
    /// Events of a handed-over group still to deliver: the group, the next index,
    /// the end (filtered as they are delivered).
    taking: Option<(LiveGroup, usize, usize)>,
    /// The page event [`Subscription::next_ref`] last lent.
    lent: Option<RecordedEvent>,
    /// Events taken from handed-over groups rather than read (for tests).
    #[cfg(test)]
    taken_live: u64,
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
            live: log.live_groups(),
            group: None,
            taking: None,
            lent: None,
            #[cfg(test)]
            taken_live: 0,
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

    /// Takes the events from the next position through `head` from the groups the
    /// log handed over, to deliver next; `false` when they do not hold the next
    /// position (none came, or the next one starts later: that gap is read).
    fn take_live(&mut self, head: u64) -> bool {
        // The group holding the next position, or the first after it.
        while self
            .group
            .as_ref()
            .is_none_or(|g| g.last().is_none_or(|e| e.position < self.next))
        {
            self.group = match self.live.try_recv() {
                Ok(group) => Some(group),
                // Groups were dropped for this subscriber: the next ones come.
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => None,
            };
            if self.group.is_none() {
                return false;
            }
        }
        let Some(group) = self.group.clone() else {
            return false;
        };
        let from = group.partition_point(|e| e.position < self.next);
        if group.get(from).is_none_or(|e| e.position != self.next) {
            return false;
        }
        // Not past the head read: the switch to live (`CaughtUp`) comes at it.
        let to = group.partition_point(|e| e.position <= head);
        self.next = group[to - 1].position + 1;
        #[cfg(test)]
        {
            self.taken_live += (to - from) as u64;
        }
        if to == group.len() {
            self.group = None;
        }
        self.taking = Some((group, from, to));
        true
    }

    /// Whether an event is ready to deliver (filtered ones passed over).
    fn ready(&mut self) -> bool {
        if !self.buffer.is_empty() {
            return true;
        }
        if let Some((group, at, end)) = &mut self.taking {
            while *at < *end {
                if self.filter.matches(&group[*at]) {
                    return true;
                }
                *at += 1;
            }
            self.taking = None;
        }
        false
    }

    /// Waits until an event is [`ready`](Self::ready), or for the item to give
    /// instead (`Some`: the switch to live, a checkpoint).
    async fn fill(&mut self) -> Result<Option<Control>> {
        loop {
            if self.ready() {
                return Ok(None);
            }
            let head = *self.head.borrow_and_update();
            if self.next <= head {
                if !self.take_live(head) {
                    // Up to the group received next, if one is.
                    let limit = match &self.group {
                        Some(group) => group
                            .first()
                            .map_or(PAGE as u64, |e| e.position.saturating_sub(self.next))
                            .clamp(1, PAGE as u64) as usize,
                        None => PAGE,
                    };
                    // The drained buffer's memory holds the next page.
                    let spare = Vec::from(std::mem::take(&mut self.buffer));
                    let mut page = self.log.read_page(self.next, limit, spare).await?;
                    let Some(last) = page.last().map(|e| e.position) else {
                        return Err(LogError::corrupt(
                            format!("position {}", self.next),
                            "missing below the head",
                        ));
                    };
                    self.next = last + 1;
                    page.retain(|e| self.filter.matches(e));
                    self.buffer = VecDeque::from(page);
                }
                if !self.ready() && self.next - 1 - self.last_checkpoint >= CHECKPOINT_EVERY {
                    self.last_checkpoint = self.next - 1;
                    return Ok(Some(Control::Checkpoint(self.next - 1)));
                }
                continue;
            }
            if !self.caught_up {
                self.caught_up = true;
                return Ok(Some(Control::CaughtUp(head)));
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

    /// The next item, its event lent rather than copied: for a subscriber that
    /// only reads each event (a live one shares it with the other subscribers).
    /// `Err(Closed)` as for [`Subscription::next`].
    pub async fn next_ref(&mut self) -> Result<SubscriptionRef<'_>> {
        if let Some(control) = self.fill().await? {
            return Ok(control.into());
        }
        self.lend().map(SubscriptionRef::Event)
    }

    /// The next event if one is at hand (read with the last page, or in a group the
    /// log handed over), without reading or waiting: `None` when there is none, and
    /// where [`Subscription::next_ref`] would give something other than an event.
    pub fn try_next_ref(&mut self) -> Option<&RecordedEvent> {
        if !self.ready() {
            let head = *self.head.borrow();
            if !(self.next <= head && self.take_live(head) && self.ready()) {
                return None;
            }
        }
        self.lend().ok()
    }

    /// The next item; `Err(Closed)` once the log is closed and everything durable was delivered.
    pub async fn next(&mut self) -> Result<SubscriptionItem> {
        if let Some(control) = self.fill().await? {
            return Ok(control.into());
        }
        if let Some(event) = self.buffer.pop_front() {
            return Ok(SubscriptionItem::Event(event));
        }
        Ok(SubscriptionItem::Event(self.take_group_event()?.clone()))
    }

    /// The event [`ready`](Self::ready) found, lent: from the page read (kept until
    /// the next one is lent) or from the handed-over group.
    fn lend(&mut self) -> Result<&RecordedEvent> {
        if let Some(event) = self.buffer.pop_front() {
            return Ok(self.lent.insert(event));
        }
        self.take_group_event()
    }

    /// The handed-over event [`ready`](Self::ready) found, taken.
    fn take_group_event(&mut self) -> Result<&RecordedEvent> {
        match &mut self.taking {
            Some((group, at, end)) if *at < *end => {
                *at += 1;
                Ok(&group[*at - 1])
            }
            // `ready` said one is.
            _ => Err(LogError::corrupt("subscription", "no event where one was ready")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{Direction, ExpectedVersion, LogOptions, ProposedEvent, StreamAppend};

    fn event(n: usize) -> ProposedEvent {
        let mut event = ProposedEvent::json(
            if n.is_multiple_of(3) {
                "order.placed"
            } else {
                "order.shipped"
            },
            format!(r#"{{"n":{n}}}"#),
        )
        .with_identity("/test", format!("e-{n}"));
        if n.is_multiple_of(2) {
            event.time = Some(1_700_000_000_000_000_000 + n as i64);
        }
        if n.is_multiple_of(4) {
            event.metadata = BTreeMap::from([("k".to_owned(), format!("v{n}"))]);
            event.correlation_id = format!("c-{n}");
            event.content_type = "application/json; charset=utf-8".into();
        }
        event
    }

    /// Appends of every shape: several parts, several events in a part, one event.
    async fn append_shapes(log: &EventLog, from: usize, appends: usize) -> Result<usize> {
        let mut n = from;
        for _ in 0..appends {
            // The shape follows the events so far, so single appends vary too.
            let a = n;
            let mut parts = Vec::new();
            for p in 0..(a % 3 + 1) {
                let events: Vec<ProposedEvent> = (0..(p % 2 * 3 + 1)).map(|i| event(n + i)).collect();
                n += events.len();
                parts.push(StreamAppend {
                    stream: format!("order/{}", (a + p) % 5),
                    expected: ExpectedVersion::Any,
                    events,
                });
            }
            log.append_many(parts).await?;
        }
        Ok(n)
    }

    /// As [`collect`], through [`Subscription::next_ref`].
    async fn collect_lent(subscription: &mut Subscription, events: usize) -> Result<Vec<RecordedEvent>> {
        let mut out = Vec::new();
        while out.len() < events {
            if let SubscriptionRef::Event(e) = subscription.next_ref().await? {
                out.push(e.clone());
            }
        }
        Ok(out)
    }

    async fn collect(subscription: &mut Subscription, events: usize) -> Result<Vec<RecordedEvent>> {
        let mut out = Vec::new();
        while out.len() < events {
            if let SubscriptionItem::Event(e) = subscription.next().await? {
                out.push(e);
            }
        }
        Ok(out)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn live_events_are_the_recorded_events_and_need_no_read() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        let before = append_shapes(&log, 0, 5).await?;
        let mut all = log.subscribe(1, EventFilter::default());
        let mut lent = log.subscribe(1, EventFilter::default());
        let mut orders = log.subscribe(
            1,
            EventFilter {
                types: vec!["order.placed".into()],
                ..EventFilter::default()
            },
        );
        // Caught up with what came before; live from here.
        let _ = collect(&mut all, before).await?;
        assert_eq!(all.next().await?, SubscriptionItem::CaughtUp(before as u64));
        // Each append read as it commits, the way a subscriber keeping up does.
        let (mut total, mut live) = (before, Vec::new());
        let mut lent_events = collect_lent(&mut lent, before).await?;
        assert_eq!(lent.next_ref().await?, SubscriptionRef::CaughtUp(before as u64));
        for _ in 0..40 {
            let next = append_shapes(&log, total, 1).await?;
            live.extend(collect(&mut all, next - total).await?);
            lent_events.extend(collect_lent(&mut lent, next - total).await?);
            total = next;
        }
        assert_eq!(lent.taken_live, (total - before) as u64);
        assert_eq!(
            lent_events,
            log.read_all(Some(1), Direction::Forward, total).await?,
            "lent, read and live events alike"
        );
        let recorded = log.read_all(Some(before as u64 + 1), Direction::Forward, total).await?;
        assert_eq!(
            live, recorded,
            "as a read gives them: positions, versions, times, hashes"
        );
        assert_eq!(all.taken_live, (total - before) as u64, "every live event handed over");
        let placed = recorded.iter().filter(|e| e.event_type == "order.placed").count()
            + (0..before).filter(|n| n.is_multiple_of(3)).count();
        let filtered = collect(&mut orders, placed).await?;
        assert!(filtered.iter().all(|e| e.event_type == "order.placed"));
        assert_eq!(
            filtered.iter().map(|e| e.position).collect::<Vec<_>>(),
            log.read_all(Some(1), Direction::Forward, total)
                .await?
                .iter()
                .filter(|e| e.event_type == "order.placed")
                .map(|e| e.position)
                .collect::<Vec<_>>()
        );
        log.close().await
    }

    /// [`Subscription::try_next_ref`] gives the rest of a page read, and of a group
    /// handed over, in order; it never reads, and leaves the switch to live (and
    /// what it has not got) to `next_ref`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_at_hand_are_taken_without_reading_or_waiting() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        let before = append_shapes(&log, 0, 6).await?;
        let mut subscription = log.subscribe(1, EventFilter::default());
        assert!(subscription.try_next_ref().is_none(), "nothing read yet");
        assert_eq!(subscription.position(), 1, "and nothing read by asking");
        let mut taken = collect_lent(&mut subscription, 1).await?;
        while let Some(event) = subscription.try_next_ref() {
            taken.push(event.clone());
        }
        assert_eq!(taken.len(), before, "the rest of the page");
        assert_eq!(subscription.next_ref().await?, SubscriptionRef::CaughtUp(before as u64));
        // Two groups: the second is taken when the first is done.
        let total = before + 8;
        for from in [before, before + 4] {
            log.append_many(vec![StreamAppend {
                stream: "order/live".into(),
                expected: ExpectedVersion::Any,
                events: (from..from + 4).map(event).collect(),
            }])
            .await?;
        }
        taken.extend(collect_lent(&mut subscription, 1).await?);
        while let Some(event) = subscription.try_next_ref() {
            taken.push(event.clone());
        }
        assert_eq!(subscription.taken_live, 8, "both groups handed over");
        assert_eq!(taken, log.read_all(Some(1), Direction::Forward, total).await?);
        assert!(subscription.try_next_ref().is_none());
        log.close().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscriber_behind_the_handed_over_groups_reads_the_gap() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        let mut subscription = log.subscribe(1, EventFilter::default());
        assert_eq!(subscription.next().await?, SubscriptionItem::CaughtUp(0));
        // Far more groups than are kept for it while it does not read.
        let total = append_shapes(&log, 0, crate::writer::LIVE_GROUPS * 6).await?;
        let events = collect(&mut subscription, total).await?;
        assert_eq!(events, log.read_all(Some(1), Direction::Forward, total).await?);
        assert!(
            subscription.taken_live < total as u64,
            "the groups it fell behind on were read ({} of {total} handed over)",
            subscription.taken_live
        );
        // Then live again.
        let more = append_shapes(&log, total, 3).await?;
        let _ = collect(&mut subscription, more - total).await?;
        log.close().await
    }
}
