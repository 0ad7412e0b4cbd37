//! The stored encoding of events and chunks.
//!
//! A *record* is the canonical encoding of one event followed by its 32-byte hash:
//! `hash = SHA-256(prev_hash || record_without_hash)`. A *chunk* holds the records
//! of consecutive positions: `[format u8][prev_hash 32][count varint]` then
//! `count × [len varint][record]`. Decoding never panics: malformed bytes give
//! [`LogError::Corrupt`].

use std::collections::BTreeMap;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::{LogError, RecordFields, RecordedEvent, Result};

/// Chunk format 1: the records as they are.
const CHUNK_PLAIN: u8 = 1;
/// Chunk format 2 (written by this build): the records LZ4-compressed, prefixed
/// by their uncompressed length. Hashes cover the uncompressed records.
pub(crate) const CHUNK_FORMAT: u8 = 2;
/// Largest uncompressed chunk body accepted when reading (a chunk is ~64 KiB, or
/// one event of up to the event size limit).
const MAX_CHUNK_BODY: usize = 256 << 20;
pub(crate) const HASH_LEN: usize = 32;
pub(crate) const ZERO_HASH: [u8; 32] = [0; 32];

/// Appends a LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// The fields of an event that the canonical encoding covers.
pub(crate) struct EventFields<'a> {
    pub position: u64,
    pub stream: &'a str,
    pub version: u64,
    pub id: &'a str,
    pub source: &'a str,
    pub event_type: &'a str,
    pub time: i64,
    pub recorded_at: i64,
    pub content_type: &'a str,
    pub correlation_id: &'a str,
    pub causation_id: &'a str,
    pub metadata: &'a BTreeMap<String, String>,
    pub data: &'a [u8],
}

/// Encodes a record (canonical bytes + hash) into `out`; returns the hash.
pub(crate) fn encode_record(out: &mut Vec<u8>, f: &EventFields<'_>, prev_hash: &[u8; 32]) -> [u8; 32] {
    let start = out.len();
    put_varint(out, f.position);
    put_bytes(out, f.stream.as_bytes());
    put_varint(out, f.version);
    put_bytes(out, f.id.as_bytes());
    put_bytes(out, f.source.as_bytes());
    put_bytes(out, f.event_type.as_bytes());
    out.extend_from_slice(&f.time.to_be_bytes());
    out.extend_from_slice(&f.recorded_at.to_be_bytes());
    put_bytes(out, f.content_type.as_bytes());
    put_bytes(out, f.correlation_id.as_bytes());
    put_bytes(out, f.causation_id.as_bytes());
    put_varint(out, f.metadata.len() as u64);
    for (k, v) in f.metadata {
        put_bytes(out, k.as_bytes());
        put_bytes(out, v.as_bytes());
    }
    put_bytes(out, f.data);
    let hash = chain_hash(prev_hash, &out[start..]);
    out.extend_from_slice(&hash);
    hash
}

/// `SHA-256(prev_hash || canonical)`.
pub(crate) fn chain_hash(prev_hash: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(canonical);
    h.finalize().into()
}

/// A cursor over stored bytes; every read is bounds-checked.
pub(crate) struct Reader<'a, 'b> {
    buf: &'a [u8],
    pos: usize,
    at: &'b str,
}

impl<'a, 'b> Reader<'a, 'b> {
    pub(crate) fn new(buf: &'a [u8], at: &'b str) -> Self {
        Reader { buf, pos: 0, at }
    }

    #[cold]
    #[inline(never)]
    fn err(&self, what: &str) -> LogError {
        LogError::corrupt(self.at, format!("{what} at byte {} of {}", self.pos, self.buf.len()))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.err("truncated byte"))?;
        self.pos += 1;
        Ok(b)
    }

    /// A LEB128 number. Inlined for the one-byte case (lengths and small numbers, a
    /// dozen per record); longer ones take the loop.
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.varint_long(),
        }
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.err("truncated field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn len_prefixed(&mut self) -> Result<&'a [u8]> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| self.err("length overflows"))?;
        self.take(n)
    }

    /// A string when `keep`, else skipped and left empty: a scan that leaves a field
    /// out never turns its bytes into text, so it need not check them.
    fn string_if(&mut self, keep: bool) -> Result<String> {
        let b = self.len_prefixed()?;
        if !keep {
            return Ok(String::new());
        }
        match std::str::from_utf8(b) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(self.err("invalid UTF-8")),
        }
    }

    fn i64(&mut self) -> Result<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub(crate) fn hash(&mut self) -> Result<[u8; 32]> {
        let b = self.take(HASH_LEN)?;
        let mut a = [0u8; 32];
        a.copy_from_slice(b);
        Ok(a)
    }
}

/// A record without its trailing hash.
fn record_body<'a>(record: &'a [u8], at: &str) -> Result<&'a [u8]> {
    record
        .len()
        .checked_sub(HASH_LEN)
        .map(|end| &record[..end])
        .ok_or_else(|| LogError::corrupt(at, "record shorter than its hash"))
}

/// The header of a record (up to its recording time), borrowed from its bytes: what
/// a scan reads to decide whether to decode the rest ([`decode_peeked`]). Stream,
/// id and source stay bytes until [`decode_peeked`] keeps them.
pub(crate) struct Header<'a> {
    pub position: u64,
    stream: &'a [u8],
    version: u64,
    id: &'a [u8],
    source: &'a [u8],
    pub event_type: &'a str,
    pub time: i64,
    pub recorded_at: i64,
    /// Where the rest of the record starts, in its body.
    rest: usize,
}

/// Reads a record's header without decoding the rest.
pub(crate) fn peek_record<'a>(record: &'a [u8], at: &str) -> Result<Header<'a>> {
    let mut r = Reader::new(record_body(record, at)?, at);
    let text = |r: &mut Reader<'a, '_>| -> Result<&'a str> {
        let bytes = r.len_prefixed()?;
        std::str::from_utf8(bytes).map_err(|_| r.err("invalid UTF-8"))
    };
    let position = r.varint()?;
    let stream = r.len_prefixed()?;
    let version = r.varint()?;
    let id = r.len_prefixed()?;
    let source = r.len_prefixed()?;
    let event_type = text(&mut r)?;
    let time = r.i64()?;
    let recorded_at = r.i64()?;
    Ok(Header {
        position,
        stream,
        version,
        id,
        source,
        event_type,
        time,
        recorded_at,
        rest: r.offset(),
    })
}

/// Decodes one whole record.
#[cfg(test)]
pub(crate) fn decode_record(owner: &Bytes, record: &[u8], prev_hash: [u8; 32], at: &str) -> Result<RecordedEvent> {
    let header = peek_record(record, at)?;
    decode_peeked(owner, record, &header, prev_hash, at, RecordFields::ALL)
}

/// Decodes the rest of a record whose `header` [`peek_record`] read, leaving the
/// text fields not in `fields` empty (unread). `data` is sliced out of `owner` (the
/// chunk) without copying.
pub(crate) fn decode_peeked(
    owner: &Bytes,
    record: &[u8],
    header: &Header<'_>,
    prev_hash: [u8; 32],
    at: &str,
    fields: RecordFields,
) -> Result<RecordedEvent> {
    let mut r = Reader::new(record_body(record, at)?, at);
    r.pos = header.rest;
    // A field left out is neither copied nor checked (as [`Reader::string_if`]).
    let text = |keep: bool, b: &[u8]| -> Result<String> {
        if !keep {
            return Ok(String::new());
        }
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(LogError::corrupt(at, "invalid UTF-8")),
        }
    };
    let stream = text(fields.stream, header.stream)?;
    let id = text(fields.id, header.id)?;
    let source = text(fields.source, header.source)?;
    let content_type = r.string_if(fields.content_type)?;
    let correlation_id = r.string_if(fields.correlation)?;
    let causation_id = r.string_if(fields.correlation)?;
    let n = r.varint()?;
    let mut metadata = BTreeMap::new();
    for _ in 0..n {
        let k = r.string_if(fields.metadata)?;
        let v = r.string_if(fields.metadata)?;
        if fields.metadata {
            metadata.insert(k, v);
        }
    }
    let data = r.len_prefixed()?;
    if !r.is_empty() {
        return Err(LogError::corrupt(at, "trailing bytes after the record"));
    }
    let data = owner.slice_ref(data);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&record[record.len() - HASH_LEN..]);
    Ok(RecordedEvent {
        position: header.position,
        stream,
        version: header.version,
        id,
        source,
        event_type: header.event_type.to_owned(),
        time: header.time,
        recorded_at: header.recorded_at,
        content_type,
        data,
        correlation_id,
        causation_id,
        metadata,
        prev_hash,
        hash,
    })
}

/// Builds a chunk value.
pub(crate) struct ChunkBuilder {
    pub first_position: u64,
    pub count: u64,
    body: Vec<u8>,
    prev_hash: [u8; 32],
}

impl ChunkBuilder {
    pub(crate) fn new(first_position: u64, prev_hash: [u8; 32]) -> Self {
        ChunkBuilder {
            first_position,
            count: 0,
            body: Vec::with_capacity(64 * 1024),
            prev_hash,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.body.len()
    }

    /// Appends one encoded record (length-prefixed).
    pub(crate) fn push(&mut self, record: &[u8]) {
        put_varint(&mut self.body, record.len() as u64);
        self.body.extend_from_slice(record);
        self.count += 1;
    }

    /// The stored value, and the chunk as a read decodes it from that value (its
    /// records uncompressed), for the cache of recent chunks.
    pub(crate) fn finish_keeping(self) -> (Vec<u8>, Chunk) {
        let bound = lz4_flex::block::get_maximum_output_size(self.body.len());
        let mut out = Vec::with_capacity(48 + 4 + bound);
        out.push(CHUNK_FORMAT);
        out.extend_from_slice(&self.prev_hash);
        put_varint(&mut out, self.count);
        // lz4_flex's size-prepended block (`compress_prepend_size`), compressed in
        // place rather than into a vector of its own and copied.
        let size = u32::try_from(self.body.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&size.to_le_bytes());
        let at = out.len();
        out.resize(at + bound, 0);
        match lz4_flex::block::compress_into(&self.body, &mut out[at..]) {
            Ok(written) => out.truncate(at + written),
            // Not with room for the worst case; but never a wrong value.
            Err(_) => {
                out.truncate(at - 4);
                out.extend_from_slice(&lz4_flex::block::compress_prepend_size(&self.body));
            }
        }
        let chunk = Chunk {
            bytes: Bytes::from(self.body),
            first_position: self.first_position,
            prev_hash: self.prev_hash,
            count: self.count,
            body_start: 0,
        };
        (out, chunk)
    }
}

/// A decoded chunk header with an iterator over its raw records.
#[derive(Clone)]
pub(crate) struct Chunk {
    pub bytes: Bytes,
    pub first_position: u64,
    pub prev_hash: [u8; 32],
    pub count: u64,
    body_start: usize,
}

impl Chunk {
    pub(crate) fn parse(first_position: u64, bytes: Bytes) -> Result<Chunk> {
        let at = format!("chunk {first_position}");
        let mut r = Reader::new(&bytes, &at);
        let format = r.u8()?;
        let prev_hash = r.hash()?;
        let count = r.varint()?;
        let body_start = r.offset();
        match format {
            CHUNK_PLAIN => Ok(Chunk {
                first_position,
                prev_hash,
                count,
                body_start,
                bytes,
            }),
            CHUNK_FORMAT => {
                let compressed = &bytes[body_start..];
                let claimed = compressed
                    .get(..4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(|b| u32::from_le_bytes(b) as usize)
                    .ok_or_else(|| LogError::corrupt(&at, "compressed body shorter than its length"))?;
                if claimed > MAX_CHUNK_BODY {
                    return Err(LogError::corrupt(&at, format!("claims {claimed} uncompressed bytes")));
                }
                let body = lz4_flex::block::decompress_size_prepended(compressed)
                    .map_err(|e| LogError::corrupt(&at, format!("cannot decompress: {e}")))?;
                Ok(Chunk {
                    first_position,
                    prev_hash,
                    count,
                    body_start: 0,
                    bytes: Bytes::from(body),
                })
            }
            other => Err(LogError::corrupt(&at, format!("unknown chunk format {other}"))),
        }
    }

    /// The raw records in order: `(position, record bytes)`.
    pub(crate) fn records(&self) -> RawRecords<'_> {
        self.records_at((self.body_start, 0))
    }

    /// The raw records from where [`RawRecords::state`] left them.
    pub(crate) fn records_at(&self, (offset, index): (usize, u64)) -> RawRecords<'_> {
        RawRecords {
            chunk: self,
            offset,
            index,
        }
    }

    pub(crate) fn last_position(&self) -> u64 {
        self.first_position + self.count.saturating_sub(1)
    }

    /// Decodes every record in order, linking prev hashes.
    #[cfg(test)]
    pub(crate) fn decode_all(&self) -> Result<Vec<RecordedEvent>> {
        let mut out = Vec::with_capacity(self.count as usize);
        let mut prev = self.prev_hash;
        for item in self.records() {
            let (position, raw) = item?;
            let event = decode_record(&self.bytes, raw, prev, &format!("position {position}"))?;
            prev = event.hash;
            out.push(event);
        }
        Ok(out)
    }
}

pub(crate) struct RawRecords<'a> {
    chunk: &'a Chunk,
    offset: usize,
    index: u64,
}

impl RawRecords<'_> {
    /// Where the next record starts, and its index: [`Chunk::records_at`] goes on
    /// from there.
    pub(crate) fn state(&self) -> (usize, u64) {
        (self.offset, self.index)
    }
}

impl<'a> Iterator for RawRecords<'a> {
    type Item = Result<(u64, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.chunk.count {
            return None;
        }
        let position = self.chunk.first_position + self.index;
        let buf: &'a [u8] = &self.chunk.bytes[self.offset.min(self.chunk.bytes.len())..];
        let mut r = Reader::new(buf, "record");
        let result = (|| {
            let n = usize::try_from(r.varint()?).map_err(|_| LogError::corrupt("record", "length overflows"))?;
            let rec = r.take(n)?;
            Ok((r.offset(), rec))
        })()
        .map_err(|e| match e {
            // Name the position only on failure: formatting it per record costs an allocation.
            LogError::Corrupt { reason, .. } => LogError::corrupt(format!("position {position}"), reason),
            other => other,
        });
        self.index += 1;
        match result {
            Ok((consumed, rec)) => {
                self.offset += consumed;
                Some(Ok((position, rec)))
            }
            Err(e) => {
                self.index = self.chunk.count; // stop after the first error
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(meta: &'a BTreeMap<String, String>, data: &'a [u8]) -> EventFields<'a> {
        EventFields {
            position: 7,
            stream: "order/1",
            version: 3,
            id: "id-1",
            source: "src",
            event_type: "order.placed",
            time: 1_700_000_000_000_000_000,
            recorded_at: 1_700_000_000_000_000_001,
            content_type: "application/json",
            correlation_id: "c",
            causation_id: "",
            metadata: meta,
            data,
        }
    }

    #[test]
    fn record_round_trips_and_hash_links() {
        let meta = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
        let mut buf = Vec::new();
        let prev = [9u8; 32];
        let hash = encode_record(&mut buf, &fields(&meta, b"{\"a\":1}"), &prev);
        let owner = Bytes::from(buf.clone());
        let e = decode_record(&owner, &owner, prev, "t").unwrap();
        assert_eq!(e.position, 7);
        assert_eq!(e.stream, "order/1");
        assert_eq!(e.metadata, meta);
        assert_eq!(&e.data[..], b"{\"a\":1}");
        assert_eq!(e.hash, hash);
        assert_eq!(chain_hash(&prev, &buf[..buf.len() - 32]), hash);
    }

    #[test]
    fn chunk_round_trips() {
        let meta = BTreeMap::new();
        let mut chunk = ChunkBuilder::new(7, ZERO_HASH);
        let mut rec = Vec::new();
        encode_record(&mut rec, &fields(&meta, b"x"), &ZERO_HASH);
        chunk.push(&rec);
        chunk.push(&rec);
        let (stored, kept) = chunk.finish_keeping();
        let parsed = Chunk::parse(7, Bytes::from(stored)).unwrap();
        assert_eq!(parsed.count, 2);
        assert_eq!(parsed.decode_all().unwrap()[0].data, Bytes::from_static(b"x"));
        // The chunk kept for the recent-chunk cache reads exactly as the stored one.
        assert_eq!(
            (kept.first_position, kept.prev_hash, kept.count),
            (parsed.first_position, parsed.prev_hash, parsed.count)
        );
        assert_eq!(kept.decode_all().unwrap(), parsed.decode_all().unwrap());
    }

    #[test]
    fn malformed_bytes_never_panic() {
        let meta = BTreeMap::new();
        let mut chunk = ChunkBuilder::new(1, ZERO_HASH);
        let mut rec = Vec::new();
        encode_record(&mut rec, &fields(&meta, b"hello"), &ZERO_HASH);
        chunk.push(&rec);
        let (good, _) = chunk.finish_keeping();
        for cut in 0..good.len() {
            let _ = Chunk::parse(1, Bytes::copy_from_slice(&good[..cut])).and_then(|c| c.decode_all());
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            let _ = Chunk::parse(1, Bytes::from(bad)).and_then(|c| c.decode_all());
        }
    }
}
