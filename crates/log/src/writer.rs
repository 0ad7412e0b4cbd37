//! Group commit: one writer thread and one flusher thread.
//!
//! The writer takes every queued append, checks identities and expected versions,
//! assigns positions, encodes and hashes, and applies the whole group to sled as one
//! atomic `Batch`. The flusher then calls `flush()` (fsync) once for every group
//! that queued up meanwhile, and only then publishes the new durable head and
//! answers the appenders. While the flusher waits on the disk, the writer already
//! prepares the next group. A failed flush poisons the log: no later write is
//! acknowledged, because sled's in-memory state may be ahead of the disk.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use smallvec::SmallVec;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::codec::{Chunk, ChunkBuilder, EventFields, encode_record};
use crate::identity::{ByFingerprint, Fingerprint, IdentityIndex, SegmentBuilder, fingerprint, segment_key};
use crate::store::{Head, META_HEAD, Run, Store};
use crate::tail::{Appended, Runs};
use crate::{AppendOutcome, LogError, RecordedEvent, Result, StreamAppend};

mod answering;
mod flusher;
mod indexer;
mod retry;

use answering::Answering;
use flusher::flusher_loop;
use indexer::{indexer_loop, write_index};
use retry::{differs_proposed, differs_recorded};

/// Close a chunk once it holds this many bytes.
const CHUNK_TARGET_BYTES: usize = 64 * 1024;
/// Stop gathering a group at this many events.
const MAX_GROUP_EVENTS: usize = 20_000;
/// The largest group handed to live subscribers as it is written, in memory
/// (record bytes and [`LIVE_EVENT_BYTES`] per event); a larger one they read from
/// the log. With [`LIVE_GROUPS`] it bounds what a subscriber that stopped reading
/// keeps in memory.
const LIVE_GROUP_BYTES: u64 = 2 << 20;
/// A recorded event's own size in memory besides its record bytes: the struct and
/// its allocations.
const LIVE_EVENT_BYTES: u64 = 400;
/// Committed groups a live subscriber may fall behind by before it reads from the
/// log instead.
pub(crate) const LIVE_GROUPS: usize = 8;

/// A committed group's events, in position order, as subscribers receive them
/// (see [`crate::Subscription`]): what the writer appended, moved rather than
/// read back and decoded.
pub(crate) type LiveGroup = Arc<Vec<RecordedEvent>>;

/// Forget cached stream versions beyond this many streams (checked between groups).
const STREAM_CACHE_LIMIT: usize = 200_000;
/// The stream index tail goes to sled once it holds this many streams, or
/// `LogOptions::index_every_events` events, or is this old.
const INDEX_STREAMS: usize = 50_000;
const INDEX_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Where an append's outcome goes.
pub(crate) enum Reply {
    /// To the append alone.
    One(oneshot::Sender<Result<Vec<AppendOutcome>>>),
    /// To the first of `count` one-part appends sent together
    /// ([`Command::Many`], which commits in one group): the outcomes of all of them,
    /// in order, answered at once.
    Many {
        tx: oneshot::Sender<Vec<Result<AppendOutcome>>>,
        count: usize,
    },
    /// To a later one of those.
    InMany,
}

pub(crate) struct AppendJob {
    pub parts: Vec<StreamAppend>,
    pub reply: Reply,
    /// Why the checks before the writer refused the append: it is refused so unless
    /// it is an exact retry of recorded events, which is answered as one (what was
    /// recorded passed the checks in force then; limits and the catalog may have
    /// tightened since).
    pub refused: std::cell::Cell<Option<LogError>>,
}

impl AppendJob {
    pub(crate) fn new(parts: Vec<StreamAppend>, reply: Reply, refused: Option<LogError>) -> Self {
        AppendJob {
            parts,
            reply,
            refused: std::cell::Cell::new(refused),
        }
    }
}

pub(crate) enum Command {
    Append(AppendJob),
    /// Independent appends, in order, sent together (see `EventLog::append_each`).
    Many(Vec<AppendJob>),
    Close(oneshot::Sender<()>),
}

enum FlushItem {
    Group {
        head: Head,
        events: u64,
        bytes: u64,
        replies: Vec<(Reply, Result<Vec<AppendOutcome>>)>,
        /// The group's events for live subscribers, when any listens.
        live: Option<LiveGroup>,
    },
    Close(oneshot::Sender<()>),
}

/// Where an identity appended earlier in the current group came from.
#[derive(Clone, Copy)]
struct Pending {
    position: u64,
    version: u64,
    job: usize,
    part: usize,
    event: usize,
    time: i64,
}

/// The last position the writer has given out, and the least `recorded_at` a
/// group may take from now on (the last group's, or more when a reader raised it). Held by the writer from the moment it takes a
/// group's `recorded_at` until the group's positions are given: whoever reads it
/// under the lock sees every event recorded so far, or none of a group; and whoever
/// raises the floor past a moment under it knows no later group is recorded by
/// that moment, whatever the clock does.
pub(crate) type Assigned = Arc<Mutex<AssignedState>>;

#[derive(Debug, Clone, Copy)]
pub(crate) struct AssignedState {
    pub position: u64,
    pub floor: i64,
}

/// The largest record buffer the writer keeps between appends.
const RECORD_BUFFER_KEPT: usize = 64 << 10;

pub(crate) struct Writer {
    store: Store,
    identities: IdentityIndex,
    head: Head,
    assigned: Assigned,
    streams: HashMap<String, Option<u64>, foldhash::fast::RandomState>,
    poison: Arc<OnceLock<String>>,
    /// Hands frozen stream index tails to the indexer thread.
    indexer: Option<(std_mpsc::Sender<IndexJob>, std::thread::JoinHandle<()>)>,
    /// When the stream index tail was last frozen.
    indexed_at: Instant,
    /// Events after which the stream index tail is due.
    index_every: u64,
    /// Where each record is encoded before it joins its chunk (kept: one
    /// allocation for the writer, not one per append).
    record: Vec<u8>,
    /// Where committed groups go to live subscribers (sent by the flusher).
    live: broadcast::Sender<LiveGroup>,
}

/// A frozen stream index tail, and the head it brings the index up to.
struct IndexJob {
    runs: Arc<Runs>,
    indexed: u64,
}

struct Group {
    batch: sled::Batch,
    /// This group's appends, for the stream index: (job, part, first version,
    /// first position, count).
    appended: Vec<(usize, usize, u64, u64, u64)>,
    chunk: Option<ChunkBuilder>,
    /// The chunks this group writes, for the store's recent-chunk cache.
    written: Vec<Chunk>,
    pending: HashMap<Fingerprint, Pending, ByFingerprint>,
    segment: Option<SegmentBuilder>,
    events: u64,
    bytes: u64,
    recorded_at: i64,
    /// Each appended event's hash, in position order: kept only when anyone
    /// subscribed as the group began, for the live group.
    hashes: Option<Vec<[u8; 32]>>,
}

pub(crate) fn now_nanos() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

impl Writer {
    pub(crate) fn new(
        store: Store,
        identities: IdentityIndex,
        head: Head,
        assigned: Assigned,
        poison: Arc<OnceLock<String>>,
        live: broadcast::Sender<LiveGroup>,
    ) -> Self {
        Writer {
            live,
            store,
            identities,
            head,
            assigned,
            streams: HashMap::default(),
            poison,
            indexer: None,
            indexed_at: Instant::now(),
            index_every: 250_000,
            record: Vec::with_capacity(512),
        }
    }

    /// Sets after how many events the stream index tail goes to sled.
    pub(crate) fn index_every(mut self, events: u64) -> Self {
        self.index_every = events;
        self
    }

    /// Spawns the writer and flusher threads.
    pub(crate) fn spawn(
        mut self,
        rx: mpsc::Receiver<Command>,
        committed: watch::Sender<u64>,
    ) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
        let (itx, irx) = std_mpsc::channel();
        let (store, poison) = (self.store.clone(), self.poison.clone());
        let indexer = std::thread::Builder::new()
            .name("opsflow-log-indexer".into())
            .spawn(move || indexer_loop(&store, irx, &poison))?;
        self.indexer = Some((itx, indexer));
        let (ftx, frx) = std_mpsc::channel();
        let db = self.store.db.clone();
        let (poison, live) = (self.poison.clone(), self.live.clone());
        let flusher = std::thread::Builder::new()
            .name("opsflow-log-flusher".into())
            .spawn(move || flusher_loop(db, frx, committed, live, poison))?;
        let writer = std::thread::Builder::new()
            .name("opsflow-log-writer".into())
            .spawn(move || self.run(rx, ftx))?;
        Ok(vec![writer, flusher])
    }

    fn run(mut self, mut rx: mpsc::Receiver<Command>, ftx: std_mpsc::Sender<FlushItem>) {
        let mut closing = None;
        while closing.is_none() {
            let Some(first) = rx.blocking_recv() else { break };
            let mut jobs = Vec::new();
            let mut count = 0usize;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Append(job) => {
                        count += job.parts.iter().map(|p| p.events.len()).sum::<usize>();
                        jobs.push(job);
                    }
                    Command::Many(many) => {
                        count += many
                            .iter()
                            .flat_map(|j| &j.parts)
                            .map(|p| p.events.len())
                            .sum::<usize>();
                        jobs.extend(many);
                    }
                    Command::Close(done) => {
                        closing = Some(done);
                        break;
                    }
                }
                if count < MAX_GROUP_EVENTS {
                    next = rx.try_recv().ok();
                }
            }
            if !jobs.is_empty() {
                let item = self.commit_group(jobs);
                if ftx.send(item).is_err() {
                    tracing::error!("log flusher stopped; the writer stops");
                    return;
                }
            }
        }
        self.finish_index();
        if let Some(done) = closing {
            // Refuse whatever is still queued, then let the flusher finish.
            rx.close();
            while let Ok(cmd) = rx.try_recv() {
                let jobs = match cmd {
                    Command::Append(job) => vec![job],
                    Command::Many(jobs) => jobs,
                    Command::Close(_) => Vec::new(),
                };
                let mut answering = Answering::default();
                for job in jobs {
                    answering.answer(job.reply, Err(LogError::Closed));
                }
            }
            let _ = ftx.send(FlushItem::Close(done));
        }
        tracing::debug!("log writer stopped");
    }

    fn commit_group(&mut self, mut jobs: Vec<AppendJob>) -> FlushItem {
        if self.streams.len() > STREAM_CACHE_LIMIT {
            self.streams.clear();
        }
        // The clock is read under the lock (and never below the floor readers
        // raise), and the lock kept until the group's positions are given (see
        // `EventLog::head_recorded_through`).
        let assigned = self.assigned.clone();
        let mut assigned = assigned.lock().unwrap_or_else(|e| e.into_inner());
        let recorded_at = now_nanos().max(assigned.floor);
        assigned.floor = recorded_at;
        let mut group = Group {
            batch: sled::Batch::default(),
            appended: Vec::new(),
            chunk: None,
            written: Vec::new(),
            pending: HashMap::with_capacity_and_hasher(
                jobs.iter().flat_map(|j| &j.parts).map(|p| p.events.len()).sum(),
                ByFingerprint::default(),
            ),
            segment: None,
            events: 0,
            bytes: 0,
            recorded_at,
            hashes: (self.live.receiver_count() > 0).then(Vec::new),
        };
        let start_head = self.head;
        let mut outcomes = Vec::with_capacity(jobs.len());
        if let Some(reason) = self.poison.get() {
            for _ in &jobs {
                outcomes.push(Err(LogError::Poisoned(reason.clone())));
            }
        } else {
            for index in 0..jobs.len() {
                let outcome = self.process(index, &jobs, &mut group);
                outcomes.push(outcome);
            }
        }
        if let Some(chunk) = group.chunk.take() {
            let first = chunk.first_position;
            let (value, chunk) = chunk.finish_keeping();
            group.batch.insert(&crate::store::chunk_key(first), value);
            group.written.push(chunk);
        }
        if let Some(segment) = group.segment.take().filter(|s| !s.is_empty()) {
            group
                .batch
                .insert(&segment_key(segment.first_position), segment.finish());
        }
        assigned.position = self.head.position;
        drop(assigned);
        let mut outcomes_result = outcomes;
        let mut live = None;
        if self.head != start_head {
            group.batch.insert(META_HEAD, &self.head.encode()[..]);
            metrics::histogram!("opsflow_group_commit_events").record(group.events as f64);
            match self.store.db.apply_batch(group.batch) {
                Err(e) => {
                    // Nothing of this group is durable; the log cannot vouch for its
                    // in-memory state any more.
                    let reason = format!("applying a group failed: {e}");
                    tracing::error!(error = %e, "log write failed; refusing further writes");
                    let _ = self.poison.set(reason.clone());
                    // Nothing of it is written: the head the flush publishes must not
                    // claim it.
                    self.head = start_head;
                    outcomes_result = outcomes_result
                        .into_iter()
                        .map(|_| Err(LogError::Poisoned(reason.clone())))
                        .collect();
                }
                Ok(()) => {
                    // Readable once the flush moves the head past them.
                    self.store.remember(std::mem::take(&mut group.written));
                    // The group is applied and its flush answers it; an index failure
                    // stops later writes (recovery re-derives the index on open).
                    if let Err(reason) = self.index(&jobs, &group.appended) {
                        tracing::error!(error = %reason, "stream index failed; refusing further writes");
                        let _ = self.poison.set(reason);
                    }
                    if let Some(hashes) = &group.hashes
                        && self.live.receiver_count() > 0
                        && group.bytes + group.events * LIVE_EVENT_BYTES <= LIVE_GROUP_BYTES
                    {
                        let events = recorded(&mut jobs, &group.appended, hashes, group.recorded_at, start_head.hash);
                        live = Some(Arc::new(events));
                    }
                }
            }
        }
        let replies = jobs.into_iter().map(|j| j.reply).zip(outcomes_result).collect();
        FlushItem::Group {
            head: self.head,
            events: group.events,
            bytes: group.bytes,
            replies,
            live,
        }
    }

    /// Adds an applied group's appends to the stream index tail, and hands the tail
    /// to the indexer when it is due.
    fn index(
        &mut self,
        jobs: &[AppendJob],
        appended: &[(usize, usize, u64, u64, u64)],
    ) -> std::result::Result<(), String> {
        let entries = appended
            .iter()
            .map(|&(job, part, first_version, first_position, count)| Appended {
                stream: &jobs[job].parts[part].stream,
                first_version,
                first_position,
                count,
            });
        let (streams, events) = self.store.tail.extend(entries)?;
        let due = streams >= INDEX_STREAMS || events >= self.index_every || self.indexed_at.elapsed() >= INDEX_INTERVAL;
        if due
            && let Some((indexer, _)) = &self.indexer
            && let Some(runs) = self.store.tail.freeze()
        {
            self.indexed_at = Instant::now();
            let job = IndexJob {
                runs,
                indexed: self.head.position,
            };
            if indexer.send(job).is_err() {
                return Err("the log indexer stopped".into());
            }
        }
        Ok(())
    }

    /// On close: waits for the indexer, then writes the rest of the tail itself.
    fn finish_index(&mut self) {
        if let Some((indexer, thread)) = self.indexer.take() {
            drop(indexer);
            let _ = thread.join();
        }
        if self.poison.get().is_some() {
            // Recovery re-derives the index from what is durable.
            return;
        }
        if let Some(runs) = self.store.tail.freeze()
            && let Err(e) = write_index(&self.store, &runs, self.head.position)
        {
            tracing::error!(error = %e, "writing the stream index on close failed; the next open re-derives it");
        }
    }

    fn stream_version(&mut self, stream: &str) -> Result<Option<u64>> {
        if let Some(v) = self.streams.get(stream) {
            return Ok(*v);
        }
        let v = self.store.last_run(stream)?.map(|r: Run| r.last_version());
        self.streams.insert(stream.to_owned(), v);
        Ok(v)
    }

    /// Checks and applies one append (all its parts or nothing).
    fn process(&mut self, index: usize, jobs: &[AppendJob], group: &mut Group) -> Result<Vec<AppendOutcome>> {
        let parts = &jobs[index].parts;
        // 1. Identities: an append is either all new or an exact retry.
        let count: usize = parts.iter().map(|p| p.events.len()).sum();
        // Inline for an append of one event (as NATS ingest makes), the usual size.
        let mut originals: SmallVec<[Option<Original>; 1]> = SmallVec::with_capacity(count);
        let mut keys: SmallVec<[Fingerprint; 1]> = SmallVec::with_capacity(count);
        // Repeats within the append (none possible in a one-event append).
        let mut seen: Option<HashSet<Fingerprint, ByFingerprint>> =
            (count > 1).then(|| HashSet::with_capacity_and_hasher(count, ByFingerprint::default()));
        for (i, event) in parts.iter().flat_map(|p| &p.events).enumerate() {
            {
                let key = fingerprint(&event.source, &event.id);
                if let Some(seen) = &mut seen
                    && !seen.insert(key)
                {
                    if let Some(refused) = jobs[index].refused.take() {
                        return Err(refused);
                    }
                    return Err(LogError::invalid(
                        format!("events[{i}].id"),
                        format!(
                            "(source {:?}, id {:?}) appears twice in the same append",
                            event.source, event.id
                        ),
                    ));
                }
                let original = match group.pending.get(&key) {
                    Some(p) => Some(Original::Pending(*p)),
                    None => match self.identities.get(&key) {
                        // Confirm against the stored event: a fingerprint is not the identity.
                        Some(position) => self
                            .store
                            .event_at(position)?
                            .filter(|e| e.source == event.source && e.id == event.id)
                            .map(|_| Original::Stored(position)),
                        None => None,
                    },
                };
                originals.push(original);
                keys.push(key);
            }
        }
        let dups = originals.iter().filter(|o| o.is_some()).count();
        if let Some(refused) = jobs[index].refused.take() {
            // Only an exact retry is answered; anything else hears why it is refused.
            if count == 0 || dups < count {
                return Err(refused);
            }
            return self.retry_outcome(parts, &originals, jobs, true).map_err(|_| refused);
        }
        if dups > 0 {
            return self.retry_outcome(parts, &originals, jobs, dups == originals.len());
        }
        // 2. Expected versions, against the stream as it stands (this group included).
        // Versions this append moves, for a stream it names twice (none in a
        // one-part append, which needs no map).
        let mut versions: Option<HashMap<&str, Option<u64>, foldhash::fast::RandomState>> = (parts.len() > 1)
            .then(|| HashMap::with_capacity_and_hasher(parts.len(), foldhash::fast::RandomState::default()));
        let mut firsts: SmallVec<[u64; 1]> = SmallVec::with_capacity(parts.len());
        for part in parts {
            let current = match versions.as_ref().and_then(|v| v.get(part.stream.as_str())) {
                Some(v) => *v,
                None => self.stream_version(&part.stream)?,
            };
            if !part.expected.accepts(current) {
                return Err(LogError::WrongExpectedVersion {
                    stream: part.stream.clone(),
                    expected: part.expected,
                    actual: current,
                });
            }
            let first = current.map_or(0, |v| v + 1);
            if let Some(versions) = &mut versions {
                versions.insert(part.stream.as_str(), Some(first + part.events.len() as u64 - 1));
            }
            firsts.push(first);
        }
        // 3. Apply: nothing below can fail.
        let mut keys = keys.into_iter();
        let mut outcomes = Vec::with_capacity(parts.len());
        let mut record = std::mem::take(&mut self.record);
        for (part_index, (part, first_version)) in parts.iter().zip(firsts).enumerate() {
            let first_position = self.head.position + 1;
            let mut positions = Vec::with_capacity(part.events.len());
            for (i, event) in part.events.iter().enumerate() {
                let position = self.head.position + 1;
                let version = first_version + i as u64;
                let time = event.time.unwrap_or(group.recorded_at);
                record.clear();
                let hash = encode_record(
                    &mut record,
                    &EventFields {
                        position,
                        stream: &part.stream,
                        version,
                        id: &event.id,
                        source: &event.source,
                        event_type: &event.event_type,
                        time,
                        recorded_at: group.recorded_at,
                        content_type: &event.content_type,
                        correlation_id: &event.correlation_id,
                        causation_id: &event.causation_id,
                        metadata: &event.metadata,
                        data: &event.data,
                    },
                    &self.head.hash,
                );
                let chunk = group
                    .chunk
                    .get_or_insert_with(|| ChunkBuilder::new(position, self.head.hash));
                chunk.push(&record);
                if chunk.len() >= CHUNK_TARGET_BYTES
                    && let Some(full) = group.chunk.take()
                {
                    let first = full.first_position;
                    let (value, full) = full.finish_keeping();
                    group.batch.insert(&crate::store::chunk_key(first), value);
                    group.written.push(full);
                }
                if let Some(key) = keys.next() {
                    group
                        .segment
                        .get_or_insert_with(|| SegmentBuilder::new(position))
                        .push(&key, position);
                    self.identities.insert(key, position);
                    group.pending.insert(
                        key,
                        Pending {
                            position,
                            version,
                            job: index,
                            part: part_index,
                            event: i,
                            time,
                        },
                    );
                }
                group.events += 1;
                group.bytes += record.len() as u64;
                if let Some(hashes) = &mut group.hashes {
                    hashes.push(hash);
                }
                self.head = Head { position, hash };
                positions.push(position);
            }
            let count = part.events.len() as u64;
            group
                .appended
                .push((index, part_index, first_version, first_position, count));
            let last_version = first_version + count - 1;
            // Known since `stream_version` above: updated in place, no key copied.
            match self.streams.get_mut(part.stream.as_str()) {
                Some(known) => *known = Some(last_version),
                None => {
                    self.streams.insert(part.stream.clone(), Some(last_version));
                }
            }
            outcomes.push(AppendOutcome {
                positions,
                stream_version: last_version,
                duplicate: false,
            });
        }
        // A large event's buffer is not kept.
        if record.capacity() <= RECORD_BUFFER_KEPT {
            self.record = record;
        }
        Ok(outcomes)
    }

    /// An append some of whose identities are already recorded: an exact retry
    /// answers with the original positions; anything else is refused.
    fn retry_outcome(
        &self,
        parts: &[StreamAppend],
        originals: &[Option<Original>],
        jobs: &[AppendJob],
        all: bool,
    ) -> Result<Vec<AppendOutcome>> {
        let mut outcomes = Vec::with_capacity(parts.len());
        let mut originals = originals.iter();
        for part in parts {
            let mut positions = Vec::with_capacity(part.events.len());
            let mut stream_version = 0;
            for event in &part.events {
                let original = originals.next().copied().flatten();
                let Some(original) = original else { continue };
                let (position, version, mismatch) = match original {
                    Original::Pending(p) => {
                        let orig = &jobs[p.job].parts[p.part];
                        let mismatch =
                            differs_proposed(&part.stream, event, &orig.stream, &orig.events[p.event], p.time);
                        (p.position, p.version, mismatch)
                    }
                    Original::Stored(position) => {
                        let recorded = self.store.event_at(position)?.ok_or_else(|| {
                            LogError::corrupt(
                                format!("position {position}"),
                                "identity index points at a missing event",
                            )
                        })?;
                        (
                            position,
                            recorded.version,
                            differs_recorded(&part.stream, event, &recorded),
                        )
                    }
                };
                if let Some(what) = mismatch {
                    return Err(LogError::DuplicateConflict {
                        event_source: event.source.clone(),
                        id: event.id.clone(),
                        position,
                        detail: format!("with different content ({what} differs)"),
                    });
                }
                if !all {
                    return Err(LogError::DuplicateConflict {
                        event_source: event.source.clone(),
                        id: event.id.clone(),
                        position,
                        detail: "while other events of this append are new: an append must be all new events \
                                 or an exact retry of recorded ones"
                            .into(),
                    });
                }
                positions.push(position);
                stream_version = version;
            }
            outcomes.push(AppendOutcome {
                positions,
                stream_version,
                duplicate: true,
            });
        }
        Ok(outcomes)
    }
}

#[derive(Clone, Copy)]
enum Original {
    Pending(Pending),
    Stored(u64),
}

/// The events a group appended, as recorded: moved out of the appends (`jobs`,
/// which are answered after this, needing only their replies), with the positions,
/// versions, times and hashes the group gave them. What a read of them decodes.
fn recorded(
    jobs: &mut [AppendJob],
    appended: &[(usize, usize, u64, u64, u64)],
    hashes: &[[u8; 32]],
    recorded_at: i64,
    prev_hash: [u8; 32],
) -> Vec<RecordedEvent> {
    let mut events = Vec::with_capacity(hashes.len());
    let mut prev_hash = prev_hash;
    let mut hashes = hashes.iter();
    for &(job, part, first_version, first_position, _) in appended {
        let part = &mut jobs[job].parts[part];
        let count = part.events.len();
        for (i, event) in std::mem::take(&mut part.events).into_iter().enumerate() {
            let Some(&hash) = hashes.next() else {
                // Never: one hash per appended event.
                return Vec::new();
            };
            events.push(RecordedEvent {
                position: first_position + i as u64,
                stream: if i + 1 == count {
                    std::mem::take(&mut part.stream)
                } else {
                    part.stream.clone()
                },
                version: first_version + i as u64,
                time: event.time.unwrap_or(recorded_at),
                recorded_at,
                id: event.id,
                source: event.source,
                event_type: event.event_type,
                content_type: event.content_type,
                data: event.data,
                correlation_id: event.correlation_id,
                causation_id: event.causation_id,
                metadata: event.metadata,
                prev_hash,
                hash,
            });
            prev_hash = hash;
        }
    }
    events
}
