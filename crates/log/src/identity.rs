//! The idempotency index: which position holds each CloudEvents `(source, id)`.
//!
//! Writing a sled key per event would cap appends at sled's per-key insert rate, so
//! the index lives in memory (a 16-byte fingerprint to a position) and is persisted
//! as one packed *segment* per commit group, written in the same atomic batch as the
//! group's events: `i` first_position(BE) -> `[format u8][count varint]` then
//! `count × [fingerprint 16][position - first_position varint]`. Opening the log
//! loads the segments (about 20 bytes per event, no event decoding); recovery can
//! re-derive them from the events. Memory: about 32 bytes per recorded event.
//!
//! A fingerprint match is confirmed against the stored event's source and id before
//! it counts as a duplicate, so even a fingerprint collision could not merge two
//! different identities.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use sha2::{Digest, Sha256};

use crate::codec::{Reader, put_varint};
use crate::{LogError, Result};

const SEGMENT_FORMAT: u8 = 1;

/// SHA-256 over the length-prefixed source and the id, truncated to 16 bytes.
pub(crate) type Fingerprint = [u8; 16];

pub(crate) fn fingerprint(source: &str, id: &str) -> Fingerprint {
    let mut h = Sha256::new();
    h.update((source.len() as u64).to_be_bytes());
    h.update(source.as_bytes());
    h.update(id.as_bytes());
    let d = h.finalize();
    let mut f = [0u8; 16];
    f.copy_from_slice(&d[..16]);
    f
}

pub(crate) fn segment_key(first_position: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'i';
    k[1..].copy_from_slice(&first_position.to_be_bytes());
    k
}

/// Fingerprints are already uniformly distributed: hash with their first 8 bytes.
#[derive(Default)]
pub(crate) struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut a = [0u8; 8];
            a[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(a);
        }
    }
}

/// Hashing for maps and sets keyed by fingerprint (see [`FingerprintHasher`]).
pub(crate) type ByFingerprint = BuildHasherDefault<FingerprintHasher>;

/// The in-memory index.
#[derive(Default)]
pub(crate) struct IdentityIndex {
    map: HashMap<Fingerprint, u64, ByFingerprint>,
}

impl IdentityIndex {
    pub(crate) fn get(&self, f: &Fingerprint) -> Option<u64> {
        self.map.get(f).copied()
    }

    pub(crate) fn insert(&mut self, f: Fingerprint, position: u64) {
        self.map.insert(f, position);
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Adds every entry of a stored segment.
    pub(crate) fn load_segment(&mut self, first_position: u64, bytes: &[u8]) -> Result<()> {
        let at = format!("identity segment {first_position}");
        let mut r = Reader::new(bytes, &at);
        let format = r.u8()?;
        if format != SEGMENT_FORMAT {
            return Err(LogError::corrupt(&at, format!("unknown segment format {format}")));
        }
        let count = r.varint()?;
        for _ in 0..count {
            let mut f = [0u8; 16];
            f.copy_from_slice(r.take(16)?);
            let position = first_position
                .checked_add(r.varint()?)
                .ok_or_else(|| LogError::corrupt(&at, "position overflows"))?;
            self.map.insert(f, position);
        }
        Ok(())
    }
}

/// Builds the segment of one commit group.
pub(crate) struct SegmentBuilder {
    pub first_position: u64,
    count: u64,
    body: Vec<u8>,
}

impl SegmentBuilder {
    pub(crate) fn new(first_position: u64) -> Self {
        SegmentBuilder {
            first_position,
            count: 0,
            body: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, f: &Fingerprint, position: u64) {
        debug_assert!(position >= self.first_position);
        self.body.extend_from_slice(f);
        put_varint(&mut self.body, position - self.first_position);
        self.count += 1;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 12);
        out.push(SEGMENT_FORMAT);
        put_varint(&mut out, self.count);
        out.extend_from_slice(&self.body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip() {
        let mut b = SegmentBuilder::new(100);
        b.push(&fingerprint("s", "a"), 100);
        b.push(&fingerprint("s", "b"), 350);
        let bytes = b.finish();
        let mut index = IdentityIndex::default();
        index.load_segment(100, &bytes).unwrap();
        assert_eq!(index.get(&fingerprint("s", "a")), Some(100));
        assert_eq!(index.get(&fingerprint("s", "b")), Some(350));
        assert_eq!(index.get(&fingerprint("s", "c")), None);
        for cut in 0..bytes.len() {
            let _ = IdentityIndex::default().load_segment(100, &bytes[..cut]);
        }
    }

    #[test]
    fn identity_is_length_prefixed() {
        assert_ne!(fingerprint("ab", "c"), fingerprint("a", "bc"));
    }
}
