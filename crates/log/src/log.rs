//! [`EventLog`]: the async handle over the store, the writer and the flusher.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};

use crate::store::{META_INDEXED, Store, decode_from, decode_into};
use crate::validator::validate_parts;
use crate::writer::{AppendJob, Command, Reply, Writer};

mod recovery;
mod scan;
mod verify;

use crate::{
    AppendOutcome, Direction, EventFilter, EventValidator, ExpectedVersion, Limits, LogError, ProposedEvent,
    RecordFields, RecordedEvent, Result, Scanned, StreamAppend, StreamInfo, Subscription, VerifyReport,
};
use recovery::{load_identities, recover};
use scan::{ChunkIter, EventIter, TypeFilter};

/// Source given to events proposed without one.
pub const DEFAULT_SOURCE: &str = "opsflow:unspecified";
/// The JSON media type, the default content type of events with data.
pub const JSON: &str = "application/json";

/// Whether `content_type` declares JSON data: subtype `json` or a `+json` suffix,
/// any case, parameters ignored (`application/json`, `text/json`,
/// `application/vnd.x+json; v=1`). The one test every crate uses.
pub fn is_json_content_type(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let subtype = media.split_once('/').map_or("", |(_, subtype)| subtype.trim());
    subtype.eq_ignore_ascii_case("json")
        || subtype
            .len()
            .checked_sub(5)
            .and_then(|start| subtype.get(start..))
            .is_some_and(|end| end.eq_ignore_ascii_case("+json"))
}

/// Appends with more events than this are content-checked on a blocking thread,
/// so that a large batch does not hold up the async runtime.
const VALIDATE_INLINE_MAX_EVENTS: usize = 256;

/// Options for [`EventLog::open`].
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub limits: Limits,
    /// sled page cache size in bytes.
    pub cache_bytes: u64,
    /// Appends that may wait for the writer before `append` itself waits (back-pressure).
    pub queue_depth: usize,
    /// Content checks run on every proposed event after the limits (see
    /// [`EventValidator`]); `None` checks nothing beyond the limits.
    pub validator: Option<Arc<dyn EventValidator>>,
    /// Stream index entries collect in memory and go to sled, off the append path,
    /// once this many events were appended since the last write (or 50,000 streams,
    /// or 5 s, whichever comes first; checked as groups commit). After a crash,
    /// opening the log re-derives the entries since the last write from the events
    /// themselves: about this many events' worth, twice that if a write was under way.
    pub index_every_events: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            limits: Limits::default(),
            cache_bytes: 256 << 20,
            queue_depth: 4096,
            validator: None,
            index_every_events: 250_000,
        }
    }
}

/// The durable, hash-chained event log. Cheap to clone; every clone is the same log.
///
/// ```no_run
/// # async fn demo() -> opsflow_log::Result<()> {
/// use opsflow_log::{EventLog, ExpectedVersion, LogOptions, ProposedEvent};
/// let log = EventLog::open("/tmp/opsflow-doc", LogOptions::default())?;
/// let event = ProposedEvent::json("order.placed", r#"{"order_id":"PO-1"}"#).with_identity("shop", "e-1");
/// let outcome = log.append("order/PO-1", ExpectedVersion::NoStream, vec![event]).await?;
/// assert_eq!(outcome.stream_version, 0);
/// log.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    path: PathBuf,
    tx: mpsc::Sender<Command>,
    committed: watch::Receiver<u64>,
    limits: Limits,
    validator: Option<Arc<dyn EventValidator>>,
    poison: Arc<OnceLock<String>>,
    /// The writer's last position given out (see [`EventLog::head_recorded_through`]).
    assigned: crate::writer::Assigned,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    closed: AtomicBool,
    /// Committed groups for live subscribers (see [`Subscription`]).
    live: tokio::sync::broadcast::Sender<crate::writer::LiveGroup>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("path", &self.inner.path)
            .field("head", &self.head())
            .finish()
    }
}

impl EventLog {
    /// Opens (or creates) the log in `path`, recovering indexes if needed. Blocking:
    /// call it before the runtime starts or through [`EventLog::open_async`].
    pub fn open(path: impl AsRef<Path>, options: LogOptions) -> Result<EventLog> {
        let path = path.as_ref().to_path_buf();
        let store = Store::open(&path, options.cache_bytes)?;
        let head = recover(&store)?;
        let last_recorded_at = match head.position {
            0 => 0,
            p => store.event_at(p)?.map_or(0, |e| e.recorded_at),
        };
        let (tx, rx) = mpsc::channel(options.queue_depth.max(1));
        let (committed_tx, committed) = watch::channel(head.position);
        let poison = Arc::new(OnceLock::new());
        let started = Instant::now();
        let identities = load_identities(&store)?;
        tracing::debug!(identities = identities.len(), elapsed = ?started.elapsed(), "identity index loaded");
        let assigned: crate::writer::Assigned = Arc::new(Mutex::new(crate::writer::AssignedState {
            position: head.position,
            floor: last_recorded_at,
        }));
        let (live, _) = tokio::sync::broadcast::channel(crate::writer::LIVE_GROUPS);
        let threads = Writer::new(
            store.clone(),
            identities,
            head,
            assigned.clone(),
            poison.clone(),
            live.clone(),
        )
        .index_every(options.index_every_events.max(1))
        .spawn(rx, committed_tx)
        .map_err(|e| LogError::Storage(sled::Error::Io(e)))?;
        tracing::info!(path = %path.display(), head = head.position, "event log opened");
        Ok(EventLog {
            inner: Arc::new(Inner {
                store,
                path,
                tx,
                committed,
                limits: options.limits,
                validator: options.validator,
                poison,
                assigned,
                threads: Mutex::new(threads),
                closed: AtomicBool::new(false),
                live,
            }),
        })
    }

    /// [`EventLog::open`] off the async runtime.
    pub async fn open_async(path: impl AsRef<Path>, options: LogOptions) -> Result<EventLog> {
        let path = path.as_ref().to_path_buf();
        blocking(move || EventLog::open(path, options)).await
    }

    /// The limits this log enforces.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Position of the last durable event (0 when empty).
    pub fn head(&self) -> u64 {
        *self.inner.committed.borrow()
    }

    /// Blocking. The head once every event recorded at or before `time` (Unix
    /// nanoseconds, not ahead of the clock) is readable: a group of appends takes its
    /// `recorded_at` a moment before it becomes readable, so the head alone may not
    /// include an event recorded before `time` yet. Waits at most `within` (then, or
    /// when the log refuses writes, the head as it is: what it lacks never became
    /// durable, or comes later than promised).
    pub fn head_recorded_through(&self, time: i64, within: std::time::Duration) -> u64 {
        // Already past `time` at the head: everything recorded by then is readable.
        let head = self.head();
        if self
            .read_all_blocking(Some(head), crate::Direction::Forward, 1)
            .ok()
            .and_then(|events| events.first().map(|e| e.recorded_at))
            .is_some_and(|recorded_at| recorded_at > time)
        {
            return head;
        }
        // No group is recorded by `time` after this (the floor, whatever the clock
        // does); those given positions before it are waited for.
        let target = {
            let mut assigned = self.inner.assigned.lock().unwrap_or_else(|e| e.into_inner());
            // Never past the clock: a time ahead of it (which callers refuse) must
            // not push later events' recorded_at into the future.
            let floor = time.min(crate::writer::now_nanos()).saturating_add(1);
            assigned.floor = assigned.floor.max(floor);
            assigned.position
        };
        let deadline = Instant::now() + within;
        loop {
            let head = self.head();
            if head >= target || self.inner.poison.get().is_some() || Instant::now() >= deadline {
                return head;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    /// Watches the durable head.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.committed.clone()
    }

    /// Why the log refuses writes, if it does.
    pub fn failure(&self) -> Option<String> {
        self.inner.poison.get().cloned()
    }

    /// Whether [`EventLog::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Appends `events` to `stream` atomically; returns once they are durable.
    pub async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<ProposedEvent>,
    ) -> Result<AppendOutcome> {
        let parts = vec![StreamAppend {
            stream: stream.to_owned(),
            expected,
            events,
        }];
        self.append_many(parts).await?.pop().ok_or(LogError::Closed)
    }

    /// Appends to several streams atomically (all parts or none); one outcome per part.
    pub async fn append_many(&self, mut parts: Vec<StreamAppend>) -> Result<Vec<AppendOutcome>> {
        let started = Instant::now();
        for part in &mut parts {
            for event in &mut part.events {
                normalize(event);
            }
        }
        let (parts, refused) = self.check(parts).await?;
        if let Some(reason) = self.failure() {
            return Err(LogError::Poisoned(reason));
        }
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Append(AppendJob::new(parts, Reply::One(reply), refused)))
            .await
            .map_err(|_| LogError::Closed)?;
        let outcome = rx.await.map_err(|_| LogError::Closed)?;
        metrics::histogram!("opsflow_append_latency_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("opsflow_appends_total", "result" => if outcome.is_ok() { "ok" } else { "error" })
            .increment(1);
        outcome
    }

    /// Appends each part independently (each atomic on its own), in order, in one
    /// group commit: one result per part. For transports that ingest many unrelated
    /// messages at once, where one bad message must not fail its neighbours.
    pub async fn append_each(&self, parts: Vec<StreamAppend>) -> Vec<Result<AppendOutcome>> {
        self.submit_each(parts).await.wait().await
    }

    /// The first half of [`EventLog::append_each`]: validates and enqueues the parts
    /// (in call order, waiting for queue space), without waiting for durability.
    /// Lets a transport pipeline: enqueue the next batch while earlier ones commit.
    pub async fn submit_each(&self, mut parts: Vec<StreamAppend>) -> PendingAppends {
        let started = Instant::now();
        for part in &mut parts {
            for event in &mut part.events {
                normalize(event);
            }
        }
        if let Some(reason) = self.failure() {
            return PendingAppends {
                parts: parts.len(),
                poisoned: Some(reason),
                waiting: None,
                started,
            };
        }
        // One answer for them all: they commit in one group.
        let (tx, rx) = oneshot::channel();
        let mut reply = Some(Reply::Many { tx, count: parts.len() });
        let count = parts.len();
        let mut jobs = Vec::with_capacity(count);
        for part in parts {
            let parts = vec![part];
            let refused = self.check_inline(&parts).err();
            jobs.push(AppendJob::new(parts, reply.take().unwrap_or(Reply::InMany), refused));
        }
        let waiting = if jobs.is_empty() || self.inner.tx.send(Command::Many(jobs)).await.is_err() {
            None // every unanswered part reports Closed
        } else {
            Some(rx)
        };
        PendingAppends {
            parts: count,
            poisoned: None,
            waiting,
            started,
        }
    }

    /// Checks the limits, then the content (see [`EventValidator`]) of one append;
    /// large appends are content-checked on a blocking thread. A refusal goes to the
    /// writer with the append: it stands unless the append is an exact retry of
    /// recorded events (see `AppendJob::refused`).
    async fn check(&self, parts: Vec<StreamAppend>) -> Result<(Vec<StreamAppend>, Option<LogError>)> {
        if let Err(e) = self.inner.limits.validate(&parts) {
            return Ok((parts, Some(e)));
        }
        let Some(validator) = self.inner.validator.clone() else {
            return Ok((parts, None));
        };
        let events: usize = parts.iter().map(|p| p.events.len()).sum();
        if events <= VALIDATE_INLINE_MAX_EVENTS {
            let refused = validate_parts(validator.as_ref(), &parts).err();
            return Ok((parts, refused));
        }
        blocking(move || {
            let refused = validate_parts(validator.as_ref(), &parts).err();
            Ok((parts, refused))
        })
        .await
    }

    /// [`EventLog::check`] on the caller's thread (for parts of independent appends,
    /// each small).
    fn check_inline(&self, parts: &[StreamAppend]) -> Result<()> {
        self.inner.limits.validate(parts)?;
        match &self.inner.validator {
            Some(validator) => validate_parts(validator.as_ref(), parts),
            None => Ok(()),
        }
    }

    /// The position a named consumer (a projection, a publisher) has processed up
    /// to, as last saved with [`EventLog::save_checkpoint`].
    pub fn checkpoint(&self, name: &str) -> Result<Option<u64>> {
        self.inner.store.checkpoint(name)
    }

    /// Saves a named consumer's checkpoint. It becomes durable with the next group
    /// commit or [`EventLog::close`]: after a crash a consumer may resume from an
    /// older checkpoint, so what it does must be idempotent. Blocking (microseconds:
    /// checkpoints have a small tree of their own).
    pub fn save_checkpoint(&self, name: &str, position: u64) -> Result<()> {
        self.inner.store.save_checkpoint(name, position)
    }

    /// Makes the checkpoints saved so far durable now (an fsync) instead of with the
    /// next group commit, which may never come when appends stop: for a consumer
    /// that has caught up and would otherwise, after a crash, redo everything since
    /// its last durable checkpoint however long ago.
    pub async fn flush_checkpoints(&self) -> Result<()> {
        // sled 0.34's flush_async can hang when flushes overlap: a blocking flush
        // on the blocking pool, as everywhere else in this crate.
        let db = self.inner.store.db.clone();
        blocking(move || db.flush().map(|_| ()).map_err(LogError::from)).await
    }

    /// Reads the whole log from a position (see [`EventLog::read_all_blocking`]).
    pub async fn read_all(&self, from: Option<u64>, direction: Direction, limit: usize) -> Result<Vec<RecordedEvent>> {
        let log = self.clone();
        blocking(move || log.read_all_blocking(from, direction, limit)).await
    }

    /// Up to `limit` durable events from position `from` (inclusive; default: the start
    /// forwards, the head backwards).
    pub fn read_all_blocking(
        &self,
        from: Option<u64>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let head = self.head();
        let store = &self.inner.store;
        let mut out = Vec::new();
        match direction {
            Direction::Forward => {
                self.read_forward_into(from.unwrap_or(1), limit, &mut out)?;
            }
            Direction::Backward => {
                let mut at = from.unwrap_or(head).min(head);
                while at >= 1 && out.len() < limit {
                    let Some(chunk) = store.chunk_at(at)? else {
                        return Err(LogError::corrupt(format!("position {at}"), "missing below the head"));
                    };
                    let events = decode_from(&chunk, chunk.first_position, usize::MAX)?;
                    out.extend(
                        events
                            .into_iter()
                            .filter(|e| e.position <= at)
                            .rev()
                            .take(limit - out.len()),
                    );
                    at = chunk.first_position - 1;
                }
            }
        }
        Ok(out)
    }

    /// Appends to `out` up to `limit` durable events from position `from` on.
    fn read_forward_into(&self, from: u64, limit: usize, out: &mut Vec<RecordedEvent>) -> Result<()> {
        let head = self.head();
        let from = from.max(1);
        if from > head || limit == 0 {
            return Ok(());
        }
        let wanted = out.len() + usize::try_from(head - from + 1).map_or(limit, |left| left.min(limit));
        // Every position up to the head is an event: the page's size is known.
        out.reserve_exact(wanted - out.len());
        for chunk in self.inner.store.chunks_from(from)? {
            let chunk = chunk?;
            if chunk.first_position > head {
                break;
            }
            decode_into(&chunk, from, wanted - out.len(), head, out)?;
            if out.len() >= wanted || out.last().is_some_and(|e| e.position >= head) {
                break;
            }
        }
        Ok(())
    }

    /// Committed groups from now on, for a live subscriber.
    pub(crate) fn live_groups(&self) -> tokio::sync::broadcast::Receiver<crate::writer::LiveGroup> {
        self.inner.live.subscribe()
    }

    /// [`EventLog::read_all`] forwards into `page`, emptied first: a reader that
    /// hands back its last page reads into the same memory (a page of events is
    /// about 100 KB, which the allocator would otherwise map and unmap per page).
    pub(crate) async fn read_page(
        &self,
        from: u64,
        limit: usize,
        mut page: Vec<RecordedEvent>,
    ) -> Result<Vec<RecordedEvent>> {
        let log = self.clone();
        blocking(move || {
            page.clear();
            log.read_forward_into(from, limit, &mut page)?;
            Ok(page)
        })
        .await
    }

    /// Iterates durable events from `from` up to the head as it is now (blocking).
    pub fn iter_all(&self, from: u64) -> impl Iterator<Item = Result<RecordedEvent>> + use<> {
        self.events_from(from, Box::new(|_| true))
            .filter_map(|item| match item {
                Ok(Scanned::Event(event)) => Some(Ok(event)),
                Ok(Scanned::Skipped { .. }) => None,
                Err(e) => Some(Err(e)),
            })
    }

    /// [`EventLog::iter_all`] decoding only the events whose type `wanted` accepts;
    /// the others come as [`Scanned::Skipped`] (position and time), read without
    /// decoding the rest of them (blocking).
    pub fn scan<F: Fn(&str) -> bool + Send + 'static>(
        &self,
        from: u64,
        wanted: F,
    ) -> impl Iterator<Item = Result<Scanned>> + use<F> {
        self.scan_projected(from, wanted, RecordFields::ALL)
    }

    /// [`EventLog::scan`] decoding only `fields` of the text fields of the events it
    /// decodes (the others come empty): a reader that needs less allocates less. A
    /// reader that decodes `data` needs `content_type` to know how.
    pub fn scan_projected<F: Fn(&str) -> bool + Send + 'static>(
        &self,
        from: u64,
        wanted: F,
        fields: RecordFields,
    ) -> impl Iterator<Item = Result<Scanned>> + use<F> {
        let mut iter = self.events_from(from, Box::new(wanted));
        iter.fields = fields;
        iter
    }

    fn events_from(&self, from: u64, wanted: TypeFilter) -> EventIter {
        let head = self.head();
        let (chunks, pending_err) = match self.inner.store.chunks_from(from.max(1)) {
            Ok(c) => (Some(Box::new(c) as ChunkIter), None),
            Err(e) => (None, Some(e)),
        };
        EventIter {
            chunks,
            current: None,
            pending_err,
            head,
            from,
            wanted,
            fields: RecordFields::ALL,
        }
    }

    /// Reads one stream from version `from` (inclusive; default: first forwards, last backwards).
    pub async fn read_stream(
        &self,
        stream: &str,
        from: Option<u64>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        crate::limits::validate_stream_name(stream)?;
        let log = self.clone();
        let stream = stream.to_owned();
        blocking(move || log.read_stream_blocking(&stream, from, direction, limit)).await
    }

    fn read_stream_blocking(
        &self,
        stream: &str,
        from: Option<u64>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let head = self.head();
        let store = &self.inner.store;
        let mut out = Vec::new();
        let backward = direction == Direction::Backward;
        let from_version = from.unwrap_or(if backward { u64::MAX } else { 0 });
        let mut chunk: Option<crate::codec::Chunk> = None;
        for run in store.runs(stream, from_version, backward)? {
            let run = run?;
            let versions: Box<dyn Iterator<Item = u64>> = if backward {
                Box::new((run.first_version..=run.last_version().min(from_version)).rev())
            } else {
                Box::new(run.first_version.max(from_version)..=run.last_version())
            };
            for version in versions {
                if out.len() >= limit {
                    return Ok(out);
                }
                let position = run.first_position + (version - run.first_version);
                if position > head {
                    if backward {
                        continue;
                    }
                    return Ok(out);
                }
                let cached = chunk
                    .as_ref()
                    .is_some_and(|c| c.first_position <= position && position <= c.last_position());
                if !cached {
                    chunk = store.chunk_at(position)?;
                }
                let Some(c) = chunk.as_ref() else {
                    return Err(LogError::corrupt(format!("position {position}"), "indexed but missing"));
                };
                out.extend(decode_from(c, position, 1)?);
            }
        }
        Ok(out)
    }

    /// What the log knows of one stream.
    pub async fn stream_info(&self, stream: &str) -> Result<StreamInfo> {
        crate::limits::validate_stream_name(stream)?;
        let log = self.clone();
        let stream = stream.to_owned();
        blocking(move || {
            let head = log.head();
            let store = &log.inner.store;
            let mut info = StreamInfo {
                stream: stream.clone(),
                ..Default::default()
            };
            // Last durable run (a run past the head is not acknowledged yet).
            let mut last = None;
            for run in store.runs(&stream, u64::MAX, true)? {
                let run = run?;
                if run.first_position <= head {
                    let durable = (head - run.first_position + 1).min(run.count);
                    last = Some((run.first_version + durable - 1, run.first_position + durable - 1));
                    break;
                }
            }
            let Some((last_version, last_position)) = last else {
                return Ok(info);
            };
            let first = store.runs(&stream, 0, false)?.next().transpose()?;
            info.last_version = Some(last_version);
            info.event_count = last_version + 1;
            info.last_position = last_position;
            info.first_position = first.map_or(last_position, |r| r.first_position);
            info.created_at = store.event_at(info.first_position)?.map(|e| e.recorded_at);
            info.updated_at = store.event_at(last_position)?.map(|e| e.recorded_at);
            Ok(info)
        })
        .await
    }

    /// Catch-up from `from` (first position to deliver), then live.
    pub fn subscribe(&self, from: u64, filter: EventFilter) -> Subscription {
        Subscription::new(self.clone(), from.max(1), filter)
    }

    /// Recomputes the hash chain over positions `[from, to]` (default: all; `to`
    /// past the head means the head). The report's head is the last position
    /// verified and its hash (0 and zeros when none was); `from` after `to` is
    /// invalid.
    pub async fn verify(&self, from: Option<u64>, to: Option<u64>) -> Result<VerifyReport> {
        let log = self.clone();
        blocking(move || log.verify_blocking(from, to)).await
    }

    /// See [`EventLog::verify`].
    pub fn verify_blocking(&self, from: Option<u64>, to: Option<u64>) -> Result<VerifyReport> {
        verify::chain(&self.inner.store, self.head(), from, to)
    }

    /// Stops accepting appends, commits and flushes what was queued, and waits for
    /// the writer threads. Idempotent.
    pub async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (done, rx) = oneshot::channel();
        if self.inner.tx.send(Command::Close(done)).await.is_ok() {
            let _ = rx.await;
        }
        let threads = std::mem::take(&mut *self.inner.threads.lock().map_err(|_| LogError::Closed)?);
        let db = self.inner.store.db.clone();
        blocking(move || {
            for t in threads {
                let _ = t.join();
            }
            db.flush()?;
            Ok(())
        })
        .await?;
        tracing::info!(path = %self.inner.path.display(), "event log closed");
        Ok(())
    }

    /// Rebuilds the stream and identity indexes from the stored events. Used by
    /// recovery; exposed for operators and tests.
    pub fn reindex(path: impl AsRef<Path>) -> Result<u64> {
        let store = Store::open(path.as_ref(), 64 << 20)?;
        store.db.insert(META_INDEXED, &0u64.to_be_bytes())?;
        let head = recover(&store)?;
        store.db.flush()?;
        Ok(head.position)
    }
}

/// Appends enqueued by [`EventLog::submit_each`], not yet known to be durable.
#[derive(Debug)]
pub struct PendingAppends {
    /// How many parts were submitted.
    parts: usize,
    /// Why none went to the writer: the log refuses writes.
    poisoned: Option<String>,
    /// The writer's answer for all of them, in order; `None` when never sent.
    waiting: Option<oneshot::Receiver<Vec<Result<AppendOutcome>>>>,
    started: Instant,
}

impl PendingAppends {
    /// Waits until every part is durable or refused; one result per part, in order.
    pub async fn wait(self) -> Vec<Result<AppendOutcome>> {
        let results = if let Some(reason) = self.poisoned {
            (0..self.parts)
                .map(|_| Err(LogError::Poisoned(reason.clone())))
                .collect()
        } else {
            let mut answers = match self.waiting {
                Some(rx) => rx.await.unwrap_or_default(),
                None => Vec::new(),
            };
            // An answer the writer did not give (it stopped) is Closed.
            answers.resize_with(self.parts, || Err(LogError::Closed));
            // Counted once per call: a metric looked up per event costs a registry lookup each.
            let ok = answers.iter().filter(|a| a.is_ok()).count() as u64;
            for (result, count) in [("ok", ok), ("error", self.parts as u64 - ok)] {
                if count > 0 {
                    metrics::counter!("opsflow_appends_total", "result" => result).increment(count);
                }
            }
            answers
        };
        metrics::histogram!("opsflow_append_latency_seconds").record(self.started.elapsed().as_secs_f64());
        results
    }
}

/// Fills defaults: a ULID id, the default source, the JSON content type.
fn normalize(event: &mut ProposedEvent) {
    if event.id.is_empty() {
        event.id = ulid::Ulid::new().to_string();
    }
    if event.source.is_empty() {
        event.source = DEFAULT_SOURCE.to_owned();
    }
    if event.content_type.is_empty() && !event.data.is_empty() {
        event.content_type = JSON.to_owned();
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogError::corrupt("blocking task", e.to_string()))?
}

#[cfg(test)]
mod tests;
