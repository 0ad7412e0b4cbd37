//! The sled layout. Everything lives in one tree so that one `Batch` commits a
//! whole group atomically (sled batches do not span trees):
//!
//! | key | value |
//! |---|---|
//! | `e` position(BE) | chunk of records starting at that position |
//! | `s` stream `\0` first_version(BE) | pieces of first_position(BE), count(BE): the stream's versions from first_version on, in order |
//! | `i` position(BE) | identity segment of the commit group starting there (see `identity.rs`) |
//! | `m` name | meta: `format`, `head` (position, hash), `indexed` (position up to which the `s` entries are in sled) |
//!
//! Consumers' checkpoints (name → position, BE) live in the tree `checkpoints`:
//! they change on their own schedule, and in the main tree a checkpoint key shares
//! a leaf with the first chunks, which sled copies whole on every insert. Data
//! directories of earlier versions kept them under `c` name in the main tree; they
//! are moved on open.
//!
//! All functions here are synchronous: callers keep them off the async runtime.

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{Chunk, Header, ZERO_HASH, decode_peeked, peek_record};
use crate::tail::IndexTail;
use crate::{LogError, RecordFields, RecordedEvent, Result, Scanned};

/// Version of the stored layout; written once, checked on every open.
pub const STORE_FORMAT: u32 = 1;

/// sled segment size, fixed when a data directory is created (tools that open the
/// sled files directly must use it too).
pub const SLED_SEGMENT_SIZE: usize = 8 << 20;

/// The tree of consumers' checkpoints.
const CHECKPOINTS: &str = "checkpoints";

/// The key prefix of checkpoints in the main tree before they had a tree of their own.
const OLD_CHECKPOINT: &[u8] = b"c";

pub(crate) const META_FORMAT: &[u8] = b"mformat";
pub(crate) const META_HEAD: &[u8] = b"mhead";
pub(crate) const META_INDEXED: &[u8] = b"mindexed";

pub(crate) fn chunk_key(position: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'e';
    k[1..].copy_from_slice(&position.to_be_bytes());
    k
}

pub(crate) fn stream_prefix(stream: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 10);
    k.push(b's');
    k.extend_from_slice(stream.as_bytes());
    k.push(0);
    k
}

pub(crate) fn stream_key(stream: &str, first_version: u64) -> Vec<u8> {
    let mut k = stream_prefix(stream);
    k.extend_from_slice(&first_version.to_be_bytes());
    k
}

pub(crate) fn run_value(first_position: u64, count: u64) -> [u8; 16] {
    let mut v = [0u8; RUN_PIECE];
    v[..8].copy_from_slice(&first_position.to_be_bytes());
    v[8..].copy_from_slice(&count.to_be_bytes());
    v
}

/// Bytes of one piece of a stream index value: first position and count.
pub(crate) const RUN_PIECE: usize = 16;

/// The stream index entries one commit group writes for one stream: every version
/// it appends to that stream, under one key. Appends of a stream interleaved with
/// other streams' are not contiguous in position, so the value lists them piece by
/// piece; a group appending to many streams thus writes a key per stream, not per
/// append.
#[derive(Debug)]
pub(crate) struct RunBuilder {
    pub first_version: u64,
    next_version: u64,
    value: Vec<u8>,
}

impl RunBuilder {
    pub(crate) fn new(first_version: u64, first_position: u64, count: u64) -> RunBuilder {
        RunBuilder {
            first_version,
            next_version: first_version + count,
            value: run_value(first_position, count).to_vec(),
        }
    }

    /// Adds the next versions; false (and nothing added) when they do not follow.
    pub(crate) fn extend(&mut self, first_version: u64, first_position: u64, count: u64) -> bool {
        if first_version != self.next_version {
            return false;
        }
        self.next_version += count;
        let last = self.value.len() - RUN_PIECE;
        let (position, n) = piece(&self.value[last..]);
        if position + n == first_position {
            self.value[last + 8..].copy_from_slice(&(n + count).to_be_bytes());
        } else {
            self.value.extend_from_slice(&run_value(first_position, count));
        }
        true
    }

    pub(crate) fn value(&self) -> &[u8] {
        &self.value
    }

    /// The runs this entry lists, in version order.
    pub(crate) fn runs(&self) -> impl Iterator<Item = Run> + '_ {
        runs_in(self.first_version, &self.value)
    }
}

/// The runs an index value of whole pieces lists, from `first_version` on.
fn runs_in(first_version: u64, value: &[u8]) -> impl Iterator<Item = Run> + '_ {
    let mut version = first_version;
    value.chunks_exact(RUN_PIECE).map(move |bytes| {
        let (first_position, count) = piece(bytes);
        let run = Run {
            first_version: version,
            first_position,
            count,
        };
        version = version.wrapping_add(count);
        run
    })
}

fn piece(bytes: &[u8]) -> (u64, u64) {
    let mut p = [0u8; 8];
    let mut n = [0u8; 8];
    p.copy_from_slice(&bytes[..8]);
    n.copy_from_slice(&bytes[8..RUN_PIECE]);
    (u64::from_be_bytes(p), u64::from_be_bytes(n))
}

/// The runs of one stream index entry, in version order.
fn pieces(first_version: u64, value: &[u8]) -> Result<Vec<Run>> {
    if value.is_empty() || !value.len().is_multiple_of(RUN_PIECE) {
        return Err(LogError::corrupt(
            "stream index",
            format!("a value of {} bytes is not whole 16-byte pieces", value.len()),
        ));
    }
    let runs: Vec<Run> = runs_in(first_version, value).collect();
    for run in &runs {
        if run.count == 0 {
            return Err(LogError::corrupt("stream index", "a piece of 0 events"));
        }
        if run.first_version.checked_add(run.count).is_none() {
            return Err(LogError::corrupt("stream index", "versions overflow"));
        }
    }
    Ok(runs)
}

/// The big-endian position stored under `key` in `tree`.
fn position_at(tree: &sled::Tree, key: &[u8], at: &str) -> Result<Option<u64>> {
    tree.get(key)?.map(|v| be_u64(&v, at)).transpose()
}

pub(crate) fn be_u64(bytes: &[u8], at: &str) -> Result<u64> {
    let a: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| LogError::corrupt(at, "expected an 8-byte big-endian number"))?;
    Ok(u64::from_be_bytes(a))
}

/// One append run of a stream: versions `first_version..first_version+count`
/// at positions `first_position..first_position+count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub first_version: u64,
    pub first_position: u64,
    pub count: u64,
}

impl Run {
    pub(crate) fn last_version(&self) -> u64 {
        self.first_version + self.count - 1
    }
}

/// The durable head: last position and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Head {
    pub position: u64,
    pub hash: [u8; 32],
}

impl Head {
    pub(crate) fn encode(&self) -> [u8; 40] {
        let mut v = [0u8; 40];
        v[..8].copy_from_slice(&self.position.to_be_bytes());
        v[8..].copy_from_slice(&self.hash);
        v
    }
}

/// The sled database behind the log, and the stream index entries not in it yet.
#[derive(Clone)]
pub(crate) struct Store {
    pub db: sled::Db,
    checkpoints: sled::Tree,
    pub tail: Arc<IndexTail>,
    recent: Arc<RecentChunks>,
}

/// Chunks kept in memory as written (records uncompressed), newest last: live
/// readers (subscriptions, outbound, the views) read what was just committed
/// without a sled lookup and a decompression per page.
const RECENT_CHUNKS: usize = 64;

/// The newest [`RECENT_CHUNKS`] chunks written, contiguous in position order.
#[derive(Default)]
struct RecentChunks(std::sync::Mutex<std::collections::VecDeque<Chunk>>);

impl RecentChunks {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Chunk>> {
        // A panic while holding it cannot leave the deque half-changed.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends chunks just applied to sled, after every earlier one.
    fn remember(&self, chunks: Vec<Chunk>) {
        let mut recent = self.lock();
        for chunk in chunks {
            // Contiguous only: a chunk that does not follow the newest restarts it.
            if recent
                .back()
                .is_some_and(|last| last.first_position + last.count != chunk.first_position)
            {
                recent.clear();
            }
            recent.push_back(chunk);
            if recent.len() > RECENT_CHUNKS {
                recent.pop_front();
            }
        }
    }

    /// The cached chunks from the one holding `position`, when it is cached.
    fn from(&self, position: u64) -> Vec<Chunk> {
        let recent = self.lock();
        match recent.front() {
            Some(oldest) if oldest.first_position <= position => {
                let holding = recent.partition_point(|c| c.first_position <= position) - 1;
                recent.range(holding..).cloned().collect()
            }
            _ => Vec::new(),
        }
    }
}

/// Opens a sled database. sled's background threads may hold the directory lock for
/// a moment after the previous handle in this process was dropped: a lock held
/// elsewhere is retried for up to 5 s before it is an error.
pub fn open_sled(config: &sled::Config) -> sled::Result<sled::Db> {
    let mut attempts = 0;
    loop {
        match config.open() {
            Err(sled::Error::Io(e)) if is_locked(&e) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            opened => return opened,
        }
    }
}

/// Whether sled could not open a database because another process holds its lock.
fn is_locked(e: &std::io::Error) -> bool {
    e.to_string().contains("could not acquire lock")
}

impl Store {
    pub(crate) fn open(path: &Path, cache_bytes: u64) -> Result<Store> {
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .flush_every_ms(None)
            // sled writes a page larger than segment_size / 4 to its own blob file
            // (a file creation and fsync per group commit with 64 KiB chunks): 8 MiB
            // segments keep chunk-holding pages inline in sled's log.
            .segment_size(SLED_SEGMENT_SIZE)
            .mode(sled::Mode::LowSpace);
        let db = open_sled(&config).map_err(|e| match e {
            sled::Error::Io(io) if is_locked(&io) => LogError::Locked {
                path: path.display().to_string(),
            },
            other => LogError::Storage(other),
        })?;
        let checkpoints = db.open_tree(CHECKPOINTS)?;
        let store = Store {
            db,
            checkpoints,
            tail: Arc::new(IndexTail::default()),
            recent: Arc::default(),
        };
        match store.db.get(META_FORMAT)? {
            Some(v) => {
                let found = u32::from_be_bytes(
                    v.as_ref()
                        .try_into()
                        .map_err(|_| LogError::corrupt("meta format", "not 4 bytes"))?,
                );
                if found != STORE_FORMAT {
                    return Err(LogError::UnsupportedFormat {
                        found,
                        supported: STORE_FORMAT,
                    });
                }
            }
            None => {
                if store.db.iter().next().is_some() {
                    return Err(LogError::corrupt(
                        "meta format",
                        "the data directory has data but no format marker",
                    ));
                }
                store.db.insert(META_FORMAT, &STORE_FORMAT.to_be_bytes())?;
                store.db.flush()?;
            }
        }
        store.move_old_checkpoints()?;
        Ok(store)
    }

    /// Moves checkpoints kept under `c` name in the main tree (earlier versions)
    /// to the `checkpoints` tree, keeping one saved there since.
    fn move_old_checkpoints(&self) -> Result<()> {
        let old: Vec<(sled::IVec, sled::IVec)> = self
            .db
            .scan_prefix(OLD_CHECKPOINT)
            .collect::<std::result::Result<_, _>>()?;
        if old.is_empty() {
            return Ok(());
        }
        for (key, position) in old {
            let name = &key[OLD_CHECKPOINT.len()..];
            // Err: one was saved in the tree since, which is newer.
            let _kept = self
                .checkpoints
                .compare_and_swap(name, None as Option<&[u8]>, Some(position))?;
            self.db.remove(key)?;
        }
        self.db.flush()?;
        Ok(())
    }

    pub(crate) fn meta_position(&self, key: &[u8]) -> Result<Option<u64>> {
        position_at(&self.db, key, "meta")
    }

    /// A named consumer's checkpoint.
    pub(crate) fn checkpoint(&self, name: &str) -> Result<Option<u64>> {
        position_at(&self.checkpoints, name.as_bytes(), "checkpoint")
    }

    pub(crate) fn save_checkpoint(&self, name: &str, position: u64) -> Result<()> {
        self.checkpoints.insert(name, &position.to_be_bytes())?;
        Ok(())
    }

    /// The head as recorded by the last chunk (the source of truth).
    pub(crate) fn head_from_chunks(&self) -> Result<Head> {
        let last = self
            .db
            .range(chunk_key(0)..=chunk_key(u64::MAX))
            .next_back()
            .transpose()?;
        let Some((k, v)) = last else { return Ok(Head::default()) };
        let chunk = Chunk::parse(be_u64(&k[1..], "chunk key")?, Bytes::from_owner(v))?;
        let mut hash = chunk.prev_hash;
        let mut position = chunk.first_position.saturating_sub(1);
        for rec in chunk.records() {
            let (p, raw) = rec?;
            position = p;
            hash = tail_hash(raw, p)?;
        }
        Ok(Head { position, hash })
    }

    /// The chunk holding `position`, if any.
    pub(crate) fn chunk_at(&self, position: u64) -> Result<Option<Chunk>> {
        let found = self
            .db
            .range(chunk_key(0)..=chunk_key(position))
            .next_back()
            .transpose()?;
        let Some((k, v)) = found else { return Ok(None) };
        let chunk = Chunk::parse(be_u64(&k[1..], "chunk key")?, Bytes::from_owner(v))?;
        Ok((chunk.last_position() >= position && chunk.count > 0).then_some(chunk))
    }

    /// Remembers chunks just applied to sled (see [`RECENT_CHUNKS`]).
    pub(crate) fn remember(&self, chunks: Vec<Chunk>) {
        if !chunks.is_empty() {
            self.recent.remember(chunks);
        }
    }

    /// Chunks in position order starting with the one that holds `position`: the
    /// recent ones from memory when `position` is among them, then sled.
    pub(crate) fn chunks_from(&self, position: u64) -> Result<Box<dyn Iterator<Item = Result<Chunk>> + Send>> {
        let cached = self.recent.from(position);
        let Some(next) = cached.last().map(|c| c.first_position + c.count.max(1)) else {
            return Ok(Box::new(self.stored_chunks_from(position)?));
        };
        Ok(Box::new(cached.into_iter().map(Ok).chain(self.stored_chunks_at(next))))
    }

    /// [`Store::chunks_from`] read from sled only: what an audit checks.
    pub(crate) fn stored_chunks_from(
        &self,
        position: u64,
    ) -> Result<impl Iterator<Item = Result<Chunk>> + Send + use<>> {
        let start = match self
            .db
            .range(chunk_key(0)..=chunk_key(position))
            .next_back()
            .transpose()?
        {
            Some((k, _)) => be_u64(&k[1..], "chunk key")?,
            None => 0,
        };
        Ok(self.stored_chunks_at(start))
    }

    /// The stored chunks whose first position is `start` or later, in order.
    fn stored_chunks_at(&self, start: u64) -> impl Iterator<Item = Result<Chunk>> + Send + use<> {
        self.db.range(chunk_key(start)..=chunk_key(u64::MAX)).map(|item| {
            let (k, v) = item?;
            Chunk::parse(be_u64(&k[1..], "chunk key")?, Bytes::from_owner(v))
        })
    }

    /// One event by position.
    pub(crate) fn event_at(&self, position: u64) -> Result<Option<RecordedEvent>> {
        let Some(chunk) = self.chunk_at(position)? else {
            return Ok(None);
        };
        decode_from(&chunk, position, 1).map(|mut v| v.pop())
    }

    /// The last run of a stream.
    pub(crate) fn last_run(&self, stream: &str) -> Result<Option<Run>> {
        self.runs(stream, u64::MAX, true)?.next().transpose()
    }

    /// Runs of a stream from the one holding `from_version`, forwards or backwards
    /// (a run may start before `from_version`, or end after it going backwards):
    /// the entries in sled, then those still in memory (see `tail.rs`).
    pub(crate) fn runs(
        &self,
        stream: &str,
        from_version: u64,
        backward: bool,
    ) -> Result<Box<dyn Iterator<Item = Result<Run>>>> {
        // Copied before sled is read: runs the indexer moves to sled meanwhile are
        // then in the copy, in sled or in both (the same runs, skipped below).
        let tail = self.tail.runs_of(stream);
        let stored = self.stored_runs(stream, from_version, backward)?;
        if backward {
            let tail: Vec<Run> = tail
                .into_iter()
                .rev()
                .filter(|r| r.first_version <= from_version)
                .collect();
            let floor = tail.last().map(|r| r.first_version);
            let older = stored.filter(move |run| match (run, floor) {
                (Ok(run), Some(floor)) => run.first_version < floor,
                _ => true,
            });
            Ok(Box::new(tail.into_iter().map(Ok).chain(older)))
        } else {
            let stored_to = Rc::new(Cell::new(None::<u64>));
            let seen = stored_to.clone();
            let stored = stored.inspect(move |run| {
                if let Ok(run) = run {
                    seen.set(Some(run.last_version()));
                }
            });
            let newer = tail.into_iter().filter(move |run| {
                run.last_version() >= from_version && stored_to.get().is_none_or(|last| run.first_version > last)
            });
            Ok(Box::new(stored.chain(newer.map(Ok))))
        }
    }

    /// The runs of a stream in sled, as [`Store::runs`] orders them.
    fn stored_runs(
        &self,
        stream: &str,
        from_version: u64,
        backward: bool,
    ) -> Result<Box<dyn Iterator<Item = Result<Run>>>> {
        let prefix = stream_prefix(stream);
        let plen = prefix.len();
        let decode = move |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<Vec<Run>> {
            let (k, v) = item?;
            pieces(be_u64(&k[plen..], "stream index key")?, &v)
        };
        let lo = stream_key(stream, 0);
        let hi = stream_key(stream, u64::MAX);
        let flatten = |entries: Result<Vec<Run>>, backward: bool| -> Vec<Result<Run>> {
            match entries {
                Ok(mut runs) => {
                    if backward {
                        runs.reverse();
                    }
                    runs.into_iter().map(Ok).collect()
                }
                Err(e) => vec![Err(e)],
            }
        };
        if backward {
            let top = stream_key(stream, from_version);
            Ok(Box::new(
                self.db
                    .range(lo..=top)
                    .rev()
                    .flat_map(move |item| flatten(decode(item), true)),
            ))
        } else {
            let start = match self
                .db
                .range(lo..=stream_key(stream, from_version))
                .next_back()
                .transpose()?
            {
                Some((k, _)) => be_u64(&k[plen..], "stream index key")?,
                None => 0,
            };
            Ok(Box::new(
                self.db
                    .range(stream_key(stream, start)..=hi)
                    .flat_map(move |item| flatten(decode(item), false)),
            ))
        }
    }
}

/// The hash stored at the end of a raw record.
pub(crate) fn tail_hash(raw: &[u8], position: u64) -> Result<[u8; 32]> {
    raw.len()
        .checked_sub(32)
        .and_then(|s| raw[s..].try_into().ok())
        .ok_or_else(|| LogError::corrupt(format!("position {position}"), "record shorter than its hash"))
}

/// Decodes up to `limit` events of `chunk` starting at `position` (skipped records
/// cost only their hash).
pub(crate) fn decode_from(chunk: &Chunk, position: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
    let mut out = Vec::new();
    decode_into(chunk, position, limit, u64::MAX, &mut out)?;
    Ok(out)
}

/// Appends to `out` the events of `chunk` from `position` through `last`, at most
/// `limit` of them (skipped records cost only their hash): a page read fills one
/// vector sized once instead of collecting each chunk's events apart.
pub(crate) fn decode_into(
    chunk: &Chunk,
    position: u64,
    limit: usize,
    last: u64,
    out: &mut Vec<RecordedEvent>,
) -> Result<()> {
    let mut prev = chunk.prev_hash;
    let mut decoded = 0;
    for rec in chunk.records() {
        let (p, raw) = rec?;
        if decoded >= limit || p > last {
            break;
        }
        if p < position {
            prev = tail_hash(raw, p)?;
            continue;
        }
        let event = decode_at(chunk, raw, &header_at(raw, p)?, prev, RecordFields::ALL)?;
        prev = event.hash;
        out.push(event);
        decoded += 1;
    }
    Ok(())
}

/// The events of a chunk from a position on, read one at a time as they are asked
/// for: decoded when the scan wants their type, else only their position and times
/// (read without decoding the rest). Nothing is buffered, so an event is built once
/// where its reader takes it.
pub(crate) struct ChunkScan {
    chunk: Chunk,
    /// Where the next record starts, and its index in the chunk.
    next: (usize, u64),
    from: u64,
    /// The hash of the record before the next one.
    prev: [u8; 32],
}

impl ChunkScan {
    pub(crate) fn new(chunk: Chunk, from: u64) -> ChunkScan {
        ChunkScan {
            next: chunk.records().state(),
            prev: chunk.prev_hash,
            chunk,
            from,
        }
    }

    /// The next event at or after `from`; `None` at the chunk's end. An error ends
    /// the scan of the chunk.
    pub(crate) fn next(&mut self, wanted: &dyn Fn(&str) -> bool, fields: RecordFields) -> Option<Result<Scanned>> {
        let result = self.step(wanted, fields);
        if matches!(result, Some(Err(_))) {
            self.next.1 = self.chunk.count;
        }
        result
    }

    fn step(&mut self, wanted: &dyn Fn(&str) -> bool, fields: RecordFields) -> Option<Result<Scanned>> {
        let mut records = self.chunk.records_at(self.next);
        loop {
            let (p, raw) = match records.next()? {
                Ok(record) => record,
                Err(e) => return Some(Err(e)),
            };
            self.next = records.state();
            if p < self.from {
                match tail_hash(raw, p) {
                    Ok(hash) => self.prev = hash,
                    Err(e) => return Some(Err(e)),
                }
                continue;
            }
            let scanned = (|| {
                let header = header_at(raw, p)?;
                if wanted(header.event_type) {
                    let event = decode_at(&self.chunk, raw, &header, self.prev, fields)?;
                    self.prev = event.hash;
                    Ok(Scanned::Event(event))
                } else {
                    self.prev = tail_hash(raw, p)?;
                    Ok(Scanned::Skipped {
                        position: p,
                        time: header.time,
                        recorded_at: header.recorded_at,
                    })
                }
            })();
            return Some(scanned);
        }
    }
}

/// The header of `raw`, the record at position `p`, checked to say so.
// Errors name the position only on failure: formatting it per event costs an allocation.
fn header_at(raw: &[u8], p: u64) -> Result<Header<'_>> {
    let header = peek_record(raw, "record").map_err(|e| at_position(e, p))?;
    if header.position != p {
        return Err(LogError::corrupt(
            format!("position {p}"),
            format!("record says position {}", header.position),
        ));
    }
    Ok(header)
}

/// The rest of the record `raw` of `chunk` whose header is `header`, following the
/// hash `prev`.
fn decode_at(
    chunk: &Chunk,
    raw: &[u8],
    header: &Header<'_>,
    prev: [u8; 32],
    fields: RecordFields,
) -> Result<RecordedEvent> {
    decode_peeked(&chunk.bytes, raw, header, prev, "record", fields).map_err(|e| at_position(e, header.position))
}

fn at_position(error: LogError, p: u64) -> LogError {
    match error {
        LogError::Corrupt { reason, .. } => LogError::corrupt(format!("position {p}"), reason),
        other => other,
    }
}

pub(crate) const GENESIS: [u8; 32] = ZERO_HASH;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_of_earlier_versions_move_to_their_tree() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
        {
            let store = Store::open(dir.path(), 1 << 20)?;
            // As an earlier version left them: in the main tree under `c` name.
            store.db.insert(b"coutbound", &7u64.to_be_bytes())?;
            store.db.insert(b"cboth", &1u64.to_be_bytes())?;
            // Saved in the tree since: newer, kept.
            store.save_checkpoint("both", 9)?;
            store.db.flush()?;
        }
        let store = Store::open(dir.path(), 1 << 20)?;
        assert_eq!(store.checkpoint("outbound")?, Some(7));
        assert_eq!(store.checkpoint("both")?, Some(9));
        assert_eq!(store.db.scan_prefix(OLD_CHECKPOINT).count(), 0);
        Ok(())
    }
}
