//! [`EventLog`]: the async handle over the store, the writer and the flusher.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};

use crate::codec::chain_hash;
use crate::identity::{IdentityIndex, SegmentBuilder, fingerprint, segment_key};
use crate::store::{ChunkScan, GENESIS, Head, META_HEAD, META_INDEXED, Store, decode_from, decode_into, tail_hash};
use crate::validator::validate_parts;
use crate::writer::{AppendJob, Command, Reply, Writer};
use crate::{
    AppendOutcome, BrokenLink, Direction, EventFilter, EventValidator, ExpectedVersion, Limits, LogError,
    ProposedEvent, RecordFields, RecordedEvent, Result, Scanned, StreamAppend, StreamInfo, Subscription, VerifyReport,
};

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
        let head = self.head();
        let store = &self.inner.store;
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(LogError::invalid(
                "from",
                format!("the range is empty: from {from} is after to {to}"),
            ));
        }
        let to = to.unwrap_or(head).min(head);
        let from = from.unwrap_or(1).max(1);
        let mut report = VerifyReport {
            events_checked: 0,
            head_position: head,
            head_hash: GENESIS,
            broken: None,
        };
        let mut expected = from;
        let mut running: Option<[u8; 32]> = (from == 1).then_some(GENESIS);
        let broken = |position: u64, reason: String| Some(BrokenLink { position, reason });
        if from <= to {
            'chunks: for chunk in store.stored_chunks_from(from)? {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        report.broken = broken(expected, e.to_string());
                        break;
                    }
                };
                if chunk.first_position > expected {
                    report.broken = broken(
                        expected,
                        format!("missing: the next stored event is at {}", chunk.first_position),
                    );
                    break;
                }
                let mut prev = chunk.prev_hash;
                if chunk.first_position == expected && running.is_some_and(|r| r != prev) {
                    report.broken = broken(
                        expected,
                        "the previous-hash link does not match the preceding event".into(),
                    );
                    break;
                }
                for record in chunk.records() {
                    let (position, raw) = match record {
                        Ok(r) => r,
                        Err(e) => {
                            report.broken = broken(expected, e.to_string());
                            break 'chunks;
                        }
                    };
                    let stored = tail_hash(raw, position)?;
                    if position < expected {
                        prev = stored;
                        continue;
                    }
                    if position > to {
                        break 'chunks;
                    }
                    let body = &raw[..raw.len() - 32];
                    let mut r = crate::codec::Reader::new(body, "verify");
                    if r.varint().ok() != Some(position) {
                        report.broken = broken(position, "the record does not carry its own position".into());
                        break 'chunks;
                    }
                    if chain_hash(&prev, body) != stored {
                        report.broken = broken(
                            position,
                            "the hash does not match the content (altered or damaged)".into(),
                        );
                        break 'chunks;
                    }
                    prev = stored;
                    running = Some(stored);
                    report.events_checked += 1;
                    expected = position + 1;
                }
            }
            if report.broken.is_none() && expected <= to {
                report.broken = broken(
                    expected,
                    format!("the log ends at {} but its head is {to}", expected - 1),
                );
            }
        }
        report.head_hash = running.unwrap_or(GENESIS);
        // The position the hash is of: the last one verified.
        report.head_position = if report.events_checked > 0 { expected - 1 } else { 0 };
        // The recorded head hash is checked only when the chain was followed up to
        // the head (a range past the head checks nothing, and is not broken).
        if report.broken.is_none()
            && report.head_position == head
            && head > 0
            && let Some(meta) = store.db.get(META_HEAD)?
            && crate::store::be_u64(&meta, "meta head")? == head
            && meta.get(8..40) != Some(&report.head_hash[..])
        {
            report.broken = broken(head, "the recorded head hash does not match the chain".into());
        }
        Ok(report)
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

/// Makes the indexes cover every stored event; returns the head.
fn recover(store: &Store) -> Result<Head> {
    let head = store.head_from_chunks()?;
    let indexed = store.meta_position(META_INDEXED)?.unwrap_or(0);
    if indexed >= head.position {
        return Ok(head);
    }
    tracing::warn!(indexed, head = head.position, "re-deriving indexes from the events");
    // Drop runs that start past the indexed point; they are rebuilt below.
    let mut batch = sled::Batch::default();
    for item in store.db.scan_prefix(b"s") {
        let (k, v) = item?;
        if crate::store::be_u64(&v, "stream index")? > indexed {
            batch.remove(k);
        }
    }
    for item in store.db.range(segment_key(indexed + 1)..=segment_key(u64::MAX)) {
        let (k, _) = item?;
        batch.remove(k);
    }
    store.db.apply_batch(batch)?;
    let mut batch = sled::Batch::default();
    let mut run: Option<(String, u64, u64, u64)> = None; // stream, first_version, first_position, count
    let flush_run = |batch: &mut sled::Batch, run: &Option<(String, u64, u64, u64)>| {
        if let Some((s, v, p, n)) = run {
            batch.insert(crate::store::stream_key(s, *v), &crate::store::run_value(*p, *n));
        }
    };
    for chunk in store.chunks_from(indexed + 1)? {
        let chunk = chunk?;
        let mut segment: Option<SegmentBuilder> = None;
        for event in decode_from(&chunk, indexed + 1, usize::MAX)? {
            segment
                .get_or_insert_with(|| SegmentBuilder::new(event.position))
                .push(&fingerprint(&event.source, &event.id), event.position);
            let extends = run
                .as_ref()
                .is_some_and(|(s, v, p, n)| *s == event.stream && v + n == event.version && p + n == event.position);
            if extends {
                if let Some(r) = run.as_mut() {
                    r.3 += 1;
                }
            } else {
                flush_run(&mut batch, &run);
                run = Some((event.stream.clone(), event.version, event.position, 1));
            }
        }
        if let Some(segment) = segment {
            batch.insert(&segment_key(segment.first_position), segment.finish());
        }
    }
    flush_run(&mut batch, &run);
    batch.insert(META_HEAD, &head.encode()[..]);
    batch.insert(META_INDEXED, &head.position.to_be_bytes());
    store.db.apply_batch(batch)?;
    store.db.flush()?;
    Ok(head)
}

/// Loads every identity segment into memory.
fn load_identities(store: &Store) -> Result<IdentityIndex> {
    let mut index = IdentityIndex::default();
    for item in store.db.range(segment_key(0)..=segment_key(u64::MAX)) {
        let (k, v) = item?;
        index.load_segment(crate::store::be_u64(&k[1..], "identity segment key")?, &v)?;
    }
    Ok(index)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogError::corrupt("blocking task", e.to_string()))?
}

type ChunkIter = Box<dyn Iterator<Item = Result<crate::codec::Chunk>>>;

/// Which event types a scan decodes.
type TypeFilter = Box<dyn Fn(&str) -> bool + Send>;

struct EventIter {
    chunks: Option<ChunkIter>,
    /// The chunk being read.
    current: Option<ChunkScan>,
    pending_err: Option<LogError>,
    head: u64,
    from: u64,
    /// Types to decode.
    wanted: TypeFilter,
    /// Text fields to decode of the wanted types.
    fields: RecordFields,
}

impl Iterator for EventIter {
    type Item = Result<Scanned>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending_err.take() {
            self.chunks = None;
            return Some(Err(e));
        }
        loop {
            if let Some(scan) = self.current.as_mut() {
                match scan.next(&self.wanted, self.fields) {
                    Some(Ok(event)) if event.position() > self.head => {
                        self.stop();
                        return None;
                    }
                    Some(Ok(event)) => return Some(Ok(event)),
                    Some(Err(e)) => {
                        self.stop();
                        return Some(Err(e));
                    }
                    None => self.current = None,
                }
            }
            let chunk = match self.chunks.as_mut()?.next()? {
                Ok(c) => c,
                Err(e) => {
                    self.chunks = None;
                    return Some(Err(e));
                }
            };
            if chunk.first_position > self.head {
                self.chunks = None;
                return None;
            }
            self.current = Some(ChunkScan::new(chunk, self.from));
        }
    }
}

impl EventIter {
    /// Ends the scan: nothing more comes.
    fn stop(&mut self) {
        self.chunks = None;
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> ProposedEvent {
        ProposedEvent::json("order.placed", "{}").with_identity("test", id)
    }

    /// A log another handle (another process, in practice) has open is refused with
    /// an error that says so, after sled's brief lock retries.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_open_elsewhere_is_refused_saying_so() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        match EventLog::open_async(dir.path(), LogOptions::default()).await {
            Err(e @ LogError::Locked { .. }) => {
                assert_eq!(e.kind(), crate::ErrorKind::Unavailable);
                assert!(
                    e.to_string().contains("another opsflow on the same data directory"),
                    "{e}"
                );
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        log.close().await
    }

    /// An atomic append naming one stream in two parts: the second part's
    /// expected version is checked against the stream with the first part applied,
    /// and a conflict in either writes nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_append_naming_a_stream_twice_sees_its_own_first_part() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        let part = |stream: &str, expected, id: &str| StreamAppend {
            stream: stream.into(),
            expected,
            events: vec![event(id)],
        };
        let outcomes = log
            .append_many(vec![
                part("s/1", ExpectedVersion::NoStream, "a"),
                part("s/2", ExpectedVersion::Any, "b"),
                part("s/1", ExpectedVersion::Exact(0), "c"),
            ])
            .await?;
        let versions: Vec<u64> = outcomes.iter().map(|o| o.stream_version).collect();
        assert_eq!(versions, [0, 0, 1]);
        // The stream as the writer now knows it: version 1.
        log.append("s/1", ExpectedVersion::Exact(1), vec![event("d")]).await?;
        // The second part expects the stream as it stood before the first: refused whole.
        match log
            .append_many(vec![
                part("s/3", ExpectedVersion::NoStream, "e"),
                part("s/3", ExpectedVersion::NoStream, "f"),
            ])
            .await
        {
            Err(LogError::WrongExpectedVersion { stream, actual, .. }) => {
                assert_eq!((stream.as_str(), actual), ("s/3", Some(0)));
            }
            other => panic!("expected a version conflict, got {other:?}"),
        }
        assert_eq!(log.head(), 4);
        log.close().await
    }

    /// A retry may name the same media type differently (another content mode or
    /// SDK): it is the same event. A different media type, or charset on a non-JSON
    /// type, is not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retry_naming_the_same_media_type_differently_is_a_duplicate() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        let with = |content_type: &str, data: &str| {
            let mut e = event("ct-1");
            e.content_type = content_type.into();
            e.data = data.as_bytes().to_vec().into();
            e
        };
        let first = log
            .append("s", ExpectedVersion::Any, vec![with("application/json", r#"{"a":1}"#)])
            .await?;
        for same in [
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/json;charset=\"UTF-8\"",
        ] {
            let again = log
                .append("s", ExpectedVersion::Any, vec![with(same, r#"{"a": 1}"#)])
                .await?;
            assert!(again.duplicate, "{same}");
            assert_eq!(again.last_position(), first.last_position(), "{same}");
        }
        for other in [
            "application/json; charset=utf-16",
            "text/json+x",
            "application/xml",
            // Quoted or bare parameters compare as written.
            "application/json; a=\"1;b=2\"",
            "application/json; v1",
        ] {
            match log
                .append("s", ExpectedVersion::Any, vec![with(other, r#"{"a":1}"#)])
                .await
            {
                Err(LogError::DuplicateConflict { .. }) => {}
                unexpected => panic!("{other}: {unexpected:?}"),
            }
        }
        let mut text = event("ct-2");
        text.content_type = "text/plain".into();
        log.append("s", ExpectedVersion::Any, vec![text.clone()]).await?;
        text.content_type = "text/plain; charset=utf-8".into();
        assert!(matches!(
            log.append("s", ExpectedVersion::Any, vec![text]).await,
            Err(LogError::DuplicateConflict { .. })
        ));
        log.close().await
    }

    /// Whatever moment is asked for while appends go on, the head given includes
    /// every event recorded by then: the event after it was recorded later. (The
    /// plain head, read at the same moment, often does not: counted, for contrast.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn head_recorded_through_a_moment_includes_every_event_recorded_by_then() -> Result<()> {
        use std::sync::atomic::AtomicUsize;
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let ids = Arc::new(AtomicUsize::new(0));
        let appenders: Vec<_> = (0..16)
            .map(|_| {
                let (log, stop, ids) = (log.clone(), stop.clone(), ids.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let id = ids.fetch_add(1, Ordering::Relaxed);
                        log.append("s", ExpectedVersion::Any, vec![event(&format!("e{id}"))])
                            .await?;
                    }
                    Ok::<_, LogError>(())
                })
            })
            .collect();
        let mut asked = Vec::new();
        for _ in 0..300 {
            let time = crate::writer::now_nanos();
            let plain = log.head();
            let l = log.clone();
            let head =
                tokio::task::spawn_blocking(move || l.head_recorded_through(time, std::time::Duration::from_secs(10)))
                    .await
                    .map_err(|e| LogError::Storage(sled::Error::Unsupported(e.to_string())))?;
            asked.push((time, plain, head));
            tokio::time::sleep(std::time::Duration::from_micros(300)).await;
        }
        stop.store(true, Ordering::Relaxed);
        for a in appenders {
            a.await
                .map_err(|e| LogError::Storage(sled::Error::Unsupported(e.to_string())))??;
        }
        let recorded_after = |position: u64, time: i64| -> Result<bool> {
            Ok(log
                .read_all_blocking(Some(position + 1), Direction::Forward, 1)?
                .first()
                .is_none_or(|e| e.recorded_at > time))
        };
        let mut plain_short = 0;
        for (time, plain, head) in asked {
            assert!(
                recorded_after(head, time)?,
                "head {head} lacks an event recorded by {time}"
            );
            plain_short += usize::from(!recorded_after(plain, time)?);
        }
        eprintln!("the plain head lacked an event recorded by then {plain_short} times of 300");
        log.close().await
    }

    /// Regression: after a reopen, a stream written by several appends reported the
    /// version of its first run (the backward scan started at version 0).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stream_version_after_reopen_with_several_runs() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        log.append("order/1", ExpectedVersion::NoStream, vec![event("a")])
            .await?;
        log.append("order/1", ExpectedVersion::Exact(0), vec![event("b"), event("c")])
            .await?;
        log.close().await?;
        drop(log); // the directory is released with the last handle
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        let info = log.stream_info("order/1").await?;
        assert_eq!(info.last_version, Some(2));
        let outcome = log
            .append("order/1", ExpectedVersion::Exact(2), vec![event("d")])
            .await?;
        assert_eq!(outcome.stream_version, 3);
        log.close().await
    }

    /// A retry through another API or content mode may space or order its JSON
    /// differently: the same JSON value is the same event; other data, or the same
    /// text under a content type that is not JSON, is a conflict.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn json_retries_compare_as_json_values() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        let with = |content_type: &str, data: &str| ProposedEvent {
            content_type: content_type.into(),
            ..ProposedEvent::json("note.added", data.to_owned()).with_identity("test", "n-1")
        };
        let first = log
            .append(
                "note/1",
                ExpectedVersion::Any,
                vec![with("application/json", r#"{ "a": 1, "b": [1, 2] }"#)],
            )
            .await?;
        let retry = log
            .append(
                "note/1",
                ExpectedVersion::Any,
                vec![with("application/json", r#"{"b":[1,2],"a":1}"#)],
            )
            .await?;
        assert!(retry.duplicate);
        assert_eq!(retry.positions, first.positions);
        for (content_type, data) in [
            ("application/json", r#"{"b":[1,2],"a":1.0}"#),
            ("application/json", r#"{"b":[2,1],"a":1}"#),
            ("application/json", "{"),
        ] {
            let outcome = log
                .append("note/1", ExpectedVersion::Any, vec![with(content_type, data)])
                .await;
            assert!(
                matches!(outcome, Err(LogError::DuplicateConflict { .. })),
                "{data}: {outcome:?}"
            );
        }
        // Say which conflict it is: different content, or recorded and new mixed.
        let message = |outcome: Result<AppendOutcome>| outcome.err().map(|e| e.to_string()).unwrap_or_default();
        let changed = log
            .append(
                "note/1",
                ExpectedVersion::Any,
                vec![with("application/json", r#"{"a":2}"#)],
            )
            .await;
        assert!(message(changed).ends_with("with different content (data differs)"));
        let new = ProposedEvent::json("note.added", "{}").with_identity("test", "n-new");
        let mixed = log
            .append(
                "note/1",
                ExpectedVersion::Any,
                vec![with("application/json", r#"{"b":[1,2],"a":1}"#), new],
            )
            .await;
        let said = message(mixed);
        assert!(said.contains("while other events of this append are new"), "{said}");
        assert!(!said.contains("different content"), "{said}");
        let text = |data: &str| ProposedEvent {
            content_type: "text/plain".into(),
            data: data.to_owned().into(),
            ..ProposedEvent::json("note.added", "{}").with_identity("test", "t-1")
        };
        log.append("note/2", ExpectedVersion::Any, vec![text("{ }")]).await?;
        let outcome = log.append("note/2", ExpectedVersion::Any, vec![text("{}")]).await;
        assert!(
            matches!(outcome, Err(LogError::DuplicateConflict { .. })),
            "{outcome:?}"
        );
        assert!(is_json_content_type("application/vnd.x+JSON; v=1"));
        assert!(!is_json_content_type("application/jsonl"));
        log.close().await
    }

    /// A range's report pairs the last position verified with its hash; an
    /// inverted range is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verify_reports_the_last_position_verified_with_its_hash() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        for i in 0..10 {
            log.append("note/1", ExpectedVersion::Any, vec![event(&format!("v-{i}"))])
                .await?;
        }
        let events = log.read_all(Some(1), Direction::Forward, 100).await?;
        for (from, to, last) in [
            (Some(5), Some(10), 10),
            (Some(3), Some(5), 5),
            (None, Some(99), 10),
            (None, None, 10),
        ] {
            let report = log.verify(from, to).await?;
            assert!(report.ok(), "{report:?}");
            assert_eq!(report.head_position, last);
            assert_eq!(report.head_hash, events[last as usize - 1].hash, "{from:?}..{to:?}");
        }
        // Past the head there is nothing to check, and nothing is broken (the
        // recorded head hash used to be compared with the empty range's).
        for (from, to) in [
            (Some(11), None),
            (Some(20), None),
            (Some(11), Some(15)),
            (Some(60), Some(60)),
        ] {
            let report = log.verify(from, to).await?;
            assert!(report.ok(), "{from:?}..{to:?}: {report:?}");
            assert_eq!((report.events_checked, report.head_position), (0, 0));
        }
        let refused = log.verify(Some(10), Some(5)).await;
        assert!(matches!(refused, Err(LogError::InvalidArgument { .. })), "{refused:?}");
        log.close().await
    }

    /// A scan decodes the wanted types and gives the others' position and times,
    /// in the same order as iter_all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scan_decodes_only_wanted_types() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        let typed = |t: &str, id: &str| ProposedEvent {
            time: Some(1_000),
            ..ProposedEvent::json(t, "{}").with_identity("test", id)
        };
        log.append(
            "s/1",
            ExpectedVersion::Any,
            vec![typed("a.x", "1"), typed("b.y", "2"), typed("a.x", "3")],
        )
        .await?;
        let all: Vec<RecordedEvent> = log.iter_all(1).collect::<Result<_>>()?;
        let scanned: Vec<Scanned> = log.scan(2, |t| t == "a.x").collect::<Result<_>>()?;
        assert_eq!(
            scanned,
            vec![
                Scanned::Skipped {
                    position: 2,
                    time: 1_000,
                    recorded_at: all[1].recorded_at,
                },
                Scanned::Event(all[2].clone()),
            ]
        );
        log.close().await
    }

    /// A projected scan leaves exactly the text fields it was not asked for empty.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn projected_scan_leaves_unasked_fields_empty() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        let mut e = ProposedEvent::json("a.x", r#"{"n":1}"#).with_identity("src", "id-1");
        e.correlation_id = "corr".into();
        e.causation_id = "cause".into();
        e.metadata.insert("k".into(), "v".into());
        log.append("s/1", ExpectedVersion::Any, vec![e]).await?;
        let full: Vec<RecordedEvent> = log.iter_all(1).collect::<Result<_>>()?;
        let fields = RecordFields {
            stream: false,
            id: true,
            source: false,
            content_type: true,
            correlation: false,
            metadata: false,
        };
        let scanned: Vec<Scanned> = log.scan_projected(1, |_| true, fields).collect::<Result<_>>()?;
        let expected = RecordedEvent {
            stream: String::new(),
            source: String::new(),
            correlation_id: String::new(),
            causation_id: String::new(),
            metadata: std::collections::BTreeMap::new(),
            ..full[0].clone()
        };
        assert_eq!(scanned, vec![Scanned::Event(expected)]);
        let all: Vec<Scanned> = log
            .scan_projected(1, |_| true, RecordFields::ALL)
            .collect::<Result<_>>()?;
        assert_eq!(all, vec![Scanned::Event(full[0].clone())]);
        log.close().await
    }

    /// Appends to two streams in turn make one index entry per stream, listing its
    /// interleaved pieces; reads in both directions, from any
    /// version, and stream info see every version, before and after a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interleaved_appends_in_one_group_index_every_version() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        log.append("a/1", ExpectedVersion::Any, vec![event("a0")]).await?;
        let part = |stream: &str, ids: &[&str]| StreamAppend {
            stream: stream.into(),
            expected: ExpectedVersion::Any,
            events: ids.iter().map(|id| event(id)).collect(),
        };
        // Positions 2..=8: a a b a b b a (a: versions 1..=4, b: 0..=2).
        let results = log
            .append_each(vec![
                part("a/1", &["a1", "a2"]),
                part("b/1", &["b0"]),
                part("a/1", &["a3"]),
                part("b/1", &["b1", "b2"]),
                part("a/1", &["a4"]),
            ])
            .await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(
            log.inner.store.db.scan_prefix(b"s").count(),
            0,
            "the entries are still in memory"
        );
        check_interleaved(&log).await?;
        log.close().await?;
        drop(log);
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        assert_eq!(
            log.inner.store.db.scan_prefix(b"s").count(),
            2,
            "closing wrote one entry per stream, listing its interleaved pieces"
        );
        check_interleaved(&log).await?;
        let outcome = log.append("b/1", ExpectedVersion::Exact(2), vec![event("b3")]).await?;
        assert_eq!(outcome.stream_version, 3);
        let b = log.read_stream("b/1", None, Direction::Forward, 100).await?;
        assert_eq!(
            b.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["b0", "b1", "b2", "b3"]
        );
        log.close().await
    }

    async fn check_interleaved(log: &EventLog) -> Result<()> {
        let ids = |events: Vec<RecordedEvent>| events.into_iter().map(|e| e.id).collect::<Vec<_>>();
        let forward = log.read_stream("a/1", None, Direction::Forward, 100).await?;
        assert_eq!(ids(forward), ["a0", "a1", "a2", "a3", "a4"]);
        let from = log.read_stream("a/1", Some(2), Direction::Forward, 2).await?;
        assert_eq!(ids(from), ["a2", "a3"]);
        let backward = log.read_stream("a/1", Some(3), Direction::Backward, 3).await?;
        assert_eq!(ids(backward), ["a3", "a2", "a1"]);
        let b = log.read_stream("b/1", None, Direction::Backward, 100).await?;
        assert_eq!(b.iter().map(|e| e.position).collect::<Vec<_>>(), [7, 6, 4]);
        let info = log.stream_info("a/1").await?;
        assert_eq!(
            (info.last_version, info.last_position, info.first_position),
            (Some(4), 8, 1)
        );
        Ok(())
    }

    /// One bad message must not fail its neighbours; order is kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn append_each_isolates_failures_and_keeps_order() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        log.append("s/1", ExpectedVersion::Any, vec![event("dup")]).await?;
        let part = |stream: &str, expected, e| StreamAppend {
            stream: stream.into(),
            expected,
            events: vec![e],
        };
        let results = log
            .append_each(vec![
                part("s/2", ExpectedVersion::NoStream, event("a")),
                part("s/2", ExpectedVersion::NoStream, event("b")), // conflict: s/2 exists by now
                part("bad//stream", ExpectedVersion::Any, event("c")),
                part("s/1", ExpectedVersion::Any, event("dup")), // exact retry
                part("s/2", ExpectedVersion::Exact(0), event("d")),
            ])
            .await;
        assert_eq!(results[0].as_ref().map(|o| o.first_position()).ok(), Some(2));
        assert!(matches!(results[1], Err(LogError::WrongExpectedVersion { .. })));
        assert!(matches!(results[2], Err(LogError::InvalidArgument { .. })));
        assert!(
            results[3]
                .as_ref()
                .is_ok_and(|o| o.duplicate && o.first_position() == 1)
        );
        assert_eq!(
            results[4].as_ref().map(|o| (o.first_position(), o.stream_version)).ok(),
            Some((3, 1))
        );
        assert_eq!(log.head(), 3);
        log.close().await
    }

    /// Refuses `order.placed` events whose data lacks `"order_id"`.
    #[derive(Debug)]
    struct NeedsOrderId;

    impl EventValidator for NeedsOrderId {
        fn validate(&self, event: &ProposedEvent) -> std::result::Result<(), crate::Rejection> {
            let has_id = event.data.windows(10).any(|w| w == b"\"order_id\"");
            if event.event_type == "order.placed" && !has_id {
                return Err(crate::Rejection::new("data.order_id", "required field is missing"));
            }
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_validator_refusal_writes_nothing_and_names_the_event_and_field() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        let options = LogOptions {
            validator: Some(Arc::new(NeedsOrderId)),
            ..LogOptions::default()
        };
        let log = EventLog::open_async(dir.path(), options).await?;
        let good = |id: &str| ProposedEvent::json("order.placed", r#"{"order_id":"1"}"#).with_identity("t", id);
        let bad = |id: &str| ProposedEvent::json("order.placed", "{}").with_identity("t", id);
        let custom = ProposedEvent::json("custom.thing", "{}").with_identity("t", "c");

        // One bad event among good ones, in the second part: nothing is written.
        let parts = vec![
            StreamAppend {
                stream: "order/1".into(),
                expected: ExpectedVersion::Any,
                events: vec![good("a")],
            },
            StreamAppend {
                stream: "order/2".into(),
                expected: ExpectedVersion::Any,
                events: vec![good("b"), bad("c")],
            },
        ];
        match log.append_many(parts).await {
            Err(LogError::InvalidArgument { field, reason }) => {
                assert_eq!(field, "events[2].data.order_id");
                assert_eq!(reason, "required field is missing");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(log.head(), 0);

        // A large append is checked off the runtime, with the same outcome.
        let mut many: Vec<ProposedEvent> = (0..1000).map(|i| good(&format!("m{i}"))).collect();
        many.push(bad("last"));
        let err = log.append("order/3", ExpectedVersion::Any, many).await.unwrap_err();
        assert!(err.to_string().contains("events[1000].data.order_id"), "{err}");
        assert_eq!(log.head(), 0);

        // Independent appends: only the bad part is refused.
        let part = |e| StreamAppend {
            stream: "order/4".into(),
            expected: ExpectedVersion::Any,
            events: vec![e],
        };
        let results = log
            .append_each(vec![part(good("d")), part(bad("e")), part(custom)])
            .await;
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(
            matches!(&results[1], Err(LogError::InvalidArgument { field, .. }) if field == "events[0].data.order_id")
        );
        assert_eq!(log.head(), 2);
        log.close().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkpoints_survive_close() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        assert_eq!(log.checkpoint("outbound")?, None);
        log.save_checkpoint("outbound", 42)?;
        log.close().await?;
        drop(log);
        let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
        assert_eq!(log.checkpoint("outbound")?, Some(42));
        assert_eq!(log.checkpoint("other")?, None);
        log.close().await
    }
}
