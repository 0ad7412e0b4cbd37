//! Where views keep their state: a sled database of their own beside the log
//! (views are derived data; losing it costs a rebuild, never an event).
//!
//! - `live`: the live view set and the position it includes, in one value, so the
//!   state and its checkpoint can never disagree (a crash never double-counts).
//! - `s` + position (big endian): periodic snapshots, the starting points of as-of
//!   queries.

use std::path::Path;

use crate::runtime::{Result, ViewsError};

const LIVE: &[u8] = b"live";
const SNAPSHOT: u8 = b's';
/// Marks a state stored LZ4-compressed (a view set's own encoding starts with its
/// format version, a small number, so the two never collide).
const COMPRESSED: u8 = b'z';
/// A compressed state claiming more than this is corrupt, not allocated.
const MAX_STATE: usize = 1 << 30;

fn compress(state: &[u8]) -> Vec<u8> {
    let mut out = vec![COMPRESSED];
    out.extend(lz4_flex::compress_prepend_size(state));
    out
}

fn decompress(stored: &[u8]) -> Result<Vec<u8>> {
    match stored.split_first() {
        Some((&COMPRESSED, rest)) => {
            let claimed = rest
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .unwrap_or(usize::MAX);
            if claimed > MAX_STATE {
                return Err(ViewsError::Corrupt(format!(
                    "a stored view state claims {claimed} bytes"
                )));
            }
            lz4_flex::decompress_size_prepended(rest)
                .map_err(|e| ViewsError::Corrupt(format!("a stored view state does not decompress: {e}")))
        }
        _ => Ok(stored.to_vec()),
    }
}

#[derive(Clone)]
pub(crate) struct ViewStore {
    db: sled::Db,
}

fn snapshot_key(position: u64) -> [u8; 9] {
    let mut key = [SNAPSHOT; 9];
    key[1..].copy_from_slice(&position.to_be_bytes());
    key
}

fn split_position(value: &[u8]) -> Result<(u64, &[u8])> {
    let (head, rest) = value
        .split_at_checked(8)
        .ok_or_else(|| ViewsError::Corrupt("a view checkpoint is shorter than 8 bytes".into()))?;
    let mut p = [0u8; 8];
    p.copy_from_slice(head);
    Ok((u64::from_be_bytes(p), rest))
}

impl ViewStore {
    pub(crate) fn open(path: &Path) -> Result<ViewStore> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(64 << 20)
            .mode(sled::Mode::LowSpace)
            .open()?;
        Ok(ViewStore { db })
    }

    /// The live checkpoint: (position, encoded view set).
    pub(crate) fn live(&self) -> Result<Option<(u64, Vec<u8>)>> {
        match self.db.get(LIVE)? {
            None => Ok(None),
            Some(v) => {
                let (position, state) = split_position(&v)?;
                Ok(Some((position, decompress(state)?)))
            }
        }
    }

    pub(crate) fn save_live(&self, position: u64, state: &[u8]) -> Result<()> {
        let state = compress(state);
        let mut value = Vec::with_capacity(8 + state.len());
        value.extend_from_slice(&position.to_be_bytes());
        value.extend_from_slice(&state);
        self.db.insert(LIVE, value)?;
        Ok(())
    }

    pub(crate) fn save_snapshot(&self, position: u64, state: &[u8]) -> Result<()> {
        self.db.insert(snapshot_key(position), compress(state))?;
        Ok(())
    }

    pub(crate) fn snapshot(&self, position: u64) -> Result<Option<Vec<u8>>> {
        self.db.get(snapshot_key(position))?.map(|v| decompress(&v)).transpose()
    }

    /// Snapshots at or below `position`, newest first.
    pub(crate) fn snapshots_below(&self, position: u64) -> impl Iterator<Item = Result<(u64, Vec<u8>)>> + use<> {
        self.db
            .range(snapshot_key(0)..=snapshot_key(position))
            .rev()
            .map(|item| {
                let (k, v) = item?;
                let (position, _) = split_position(k.get(1..).unwrap_or_default())?;
                Ok((position, decompress(&v)?))
            })
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_compressed_and_corruption_is_an_error() {
        let state: Vec<u8> = (0..10_000u32).flat_map(|i| (i % 97).to_le_bytes()).collect();
        let stored = compress(&state);
        assert!(stored.len() < state.len() / 4);
        assert_eq!(decompress(&stored).unwrap(), state);
        // Uncompressed states (an encoding starts with its format byte) read as they are.
        assert_eq!(decompress(&[2, 1, 2, 3]).unwrap(), [2, 1, 2, 3]);
        let mut huge = vec![COMPRESSED];
        huge.extend(u32::MAX.to_le_bytes());
        assert!(decompress(&huge).is_err());
        assert!(decompress(&stored[..stored.len() / 2]).is_err());
    }
}
