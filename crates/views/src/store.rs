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
                Ok(Some((position, state.to_vec())))
            }
        }
    }

    pub(crate) fn save_live(&self, position: u64, state: &[u8]) -> Result<()> {
        let mut value = Vec::with_capacity(8 + state.len());
        value.extend_from_slice(&position.to_be_bytes());
        value.extend_from_slice(state);
        self.db.insert(LIVE, value)?;
        Ok(())
    }

    pub(crate) fn save_snapshot(&self, position: u64, state: &[u8]) -> Result<()> {
        self.db.insert(snapshot_key(position), state)?;
        Ok(())
    }

    pub(crate) fn snapshot(&self, position: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(snapshot_key(position))?.map(|v| v.to_vec()))
    }

    /// Snapshots at or below `position`, newest first.
    pub(crate) fn snapshots_below(&self, position: u64) -> impl Iterator<Item = Result<(u64, Vec<u8>)>> + use<> {
        self.db
            .range(snapshot_key(0)..=snapshot_key(position))
            .rev()
            .map(|item| {
                let (k, v) = item?;
                let (position, _) = split_position(k.get(1..).unwrap_or_default())?;
                Ok((position, v.to_vec()))
            })
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}
