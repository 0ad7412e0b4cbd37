//! Where views keep their state, in a directory of their own beside the log (views
//! are derived data; losing it costs a rebuild, never an event):
//!
//! - a sled database with `live`: the live view set and the position it includes,
//!   in one value, so the state and its checkpoint can never disagree (a crash never
//!   double-counts);
//! - `snapshots/<position>.snap`: periodic snapshots, the starting points of as-of
//!   queries. Each is a file of its own, written once (to a temporary name, synced,
//!   renamed): kept in sled, every new snapshot rewrote the node holding the older
//!   ones, so the views took twice their size on disk and more each time to save.

use std::path::{Path, PathBuf};

use crate::runtime::{Result, ViewsError};

const LIVE: &[u8] = b"live";
/// Snapshots were once sled keys: `s` + position, big endian.
const OLD_SNAPSHOT: u8 = b's';
const SNAPSHOTS: &str = "snapshots";
const SNAPSHOT_EXTENSION: &str = "snap";
/// Marks a state stored LZ4-compressed (a view set's own encoding starts with its
/// format version, a small number, so the markers never collide with it).
const COMPRESSED: u8 = b'z';
/// Marks a state stored LZ4-compressed after the CRC-32 of the compressed bytes
/// (little endian): how states are written now. An as-of query decodes the events
/// views keep only when it reads them, so damage must be found when the state is
/// read, not halfway through a query.
const CHECKED: u8 = b'c';
/// A compressed state claiming more than this is corrupt, not allocated.
const MAX_STATE: usize = 1 << 30;

fn compress(state: &[u8]) -> Vec<u8> {
    let compressed = lz4_flex::compress_prepend_size(state);
    let mut out = Vec::with_capacity(5 + compressed.len());
    out.push(CHECKED);
    out.extend(crc32fast::hash(&compressed).to_le_bytes());
    out.extend(compressed);
    out
}

fn decompress(stored: &[u8]) -> Result<Vec<u8>> {
    match stored.split_first() {
        Some((&CHECKED, rest)) => {
            let (crc, compressed) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| ViewsError::Corrupt("a stored view state is cut short".into()))?;
            let (expected, found) = (u32::from_le_bytes(*crc), crc32fast::hash(compressed));
            if expected != found {
                return Err(ViewsError::Corrupt(format!(
                    "a stored view state is damaged: CRC-32 {found:08x}, stored {expected:08x}"
                )));
            }
            decompress_lz4(compressed)
        }
        Some((&COMPRESSED, rest)) => decompress_lz4(rest),
        _ => Ok(stored.to_vec()),
    }
}

fn decompress_lz4(compressed: &[u8]) -> Result<Vec<u8>> {
    let claimed = compressed
        .first_chunk::<4>()
        .map_or(usize::MAX, |b| u32::from_le_bytes(*b) as usize);
    if claimed > MAX_STATE {
        return Err(ViewsError::Corrupt(format!(
            "a stored view state claims {claimed} bytes"
        )));
    }
    lz4_flex::decompress_size_prepended(compressed)
        .map_err(|e| ViewsError::Corrupt(format!("a stored view state does not decompress: {e}")))
}

#[derive(Clone)]
pub(crate) struct ViewStore {
    db: sled::Db,
    snapshots: PathBuf,
}

fn split_position(value: &[u8]) -> Result<(u64, &[u8])> {
    let (head, rest) = value
        .split_at_checked(8)
        .ok_or_else(|| ViewsError::Corrupt("a view checkpoint is shorter than 8 bytes".into()))?;
    let mut p = [0u8; 8];
    p.copy_from_slice(head);
    Ok((u64::from_be_bytes(p), rest))
}

fn storage(what: &str, path: &Path, e: std::io::Error) -> ViewsError {
    ViewsError::Files(format!("{what} {}: {e}", path.display()))
}

/// The position a snapshot file is named after (`None`: not a snapshot).
fn snapshot_position(path: &Path) -> Option<u64> {
    if path.extension()? != SNAPSHOT_EXTENSION {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

impl ViewStore {
    pub(crate) fn open(path: &Path) -> Result<ViewStore> {
        let db = opsflow_log::open_sled(
            &sled::Config::new()
                .path(path)
                .cache_capacity(64 << 20)
                .mode(sled::Mode::LowSpace),
        )?;
        // Snapshots of older versions (in sled, of an older state format): gone.
        for key in db.scan_prefix([OLD_SNAPSHOT]).keys() {
            db.remove(key?)?;
        }
        let snapshots = path.join(SNAPSHOTS);
        std::fs::create_dir_all(&snapshots).map_err(|e| storage("creating", &snapshots, e))?;
        // A snapshot being written when the process stopped is not one.
        for entry in std::fs::read_dir(&snapshots).map_err(|e| storage("listing", &snapshots, e))? {
            let entry = entry.map_err(|e| storage("listing", &snapshots, e))?.path();
            if entry.extension().is_some_and(|x| x == "tmp") {
                std::fs::remove_file(&entry).map_err(|e| storage("removing", &entry, e))?;
            }
        }
        Ok(ViewStore { db, snapshots })
    }

    fn snapshot_path(&self, position: u64) -> PathBuf {
        self.snapshots.join(format!("{position:020}.{SNAPSHOT_EXTENSION}"))
    }

    /// The live checkpoint: (position, encoded view set). A damaged one reads as
    /// none (with a warning): the views start from a snapshot or position 1.
    pub(crate) fn live(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let Some(v) = self.db.get(LIVE)? else {
            return Ok(None);
        };
        match split_position(&v).and_then(|(position, state)| Ok((position, decompress(state)?))) {
            Ok(live) => Ok(Some(live)),
            Err(e) => {
                tracing::warn!(error = %e, "the view checkpoint is damaged; the views are rebuilt");
                Ok(None)
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

    /// Stores (or replaces) the snapshot at `position`: written whole under a
    /// temporary name, synced, then renamed, so a reader sees the old one or the new.
    pub(crate) fn save_snapshot(&self, position: u64, state: &[u8]) -> Result<()> {
        use std::io::Write;
        let path = self.snapshot_path(position);
        let temporary = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&compress(state))?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)
        };
        write().map_err(|e| storage("writing", &path, e))
    }

    /// The snapshot at `position`. A damaged one reads as none (with a warning): an
    /// older one serves as-of queries, and a full rebuild writes it again.
    pub(crate) fn snapshot(&self, position: u64) -> Result<Option<Vec<u8>>> {
        let path = self.snapshot_path(position);
        match std::fs::read(&path) {
            Ok(stored) => Ok(decompress(&stored)
                .map_err(|e| tracing::warn!(position, error = %e, "a view snapshot is damaged; passed over"))
                .ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage("reading", &path, e)),
        }
    }

    /// Positions of the stored snapshots, oldest first.
    pub(crate) fn snapshot_positions(&self) -> Vec<u64> {
        let mut found: Vec<u64> = std::fs::read_dir(&self.snapshots)
            .into_iter()
            .flatten()
            .filter_map(|entry| snapshot_position(&entry.ok()?.path()))
            .collect();
        found.sort_unstable();
        found
    }

    /// Deletes the snapshots after `position`: views of events the log no longer
    /// has (it was cut or replaced), which must never serve as a starting point.
    pub(crate) fn remove_snapshots_after(&self, position: u64) -> Result<()> {
        for p in self.snapshot_positions().into_iter().filter(|p| *p > position) {
            let path = self.snapshot_path(p);
            std::fs::remove_file(&path).map_err(|e| storage("removing", &path, e))?;
            tracing::warn!(
                position = p,
                head = position,
                "removed a view snapshot beyond the head of the log"
            );
        }
        Ok(())
    }

    /// Snapshots at or below `position`, newest first, each read when reached. One
    /// that does not read or is damaged is passed over (with a warning): an older
    /// one, or position 1, serves instead.
    pub(crate) fn snapshots_below(&self, position: u64) -> impl Iterator<Item = (u64, Vec<u8>)> + use<> {
        let store = self.clone();
        let found: Vec<u64> = self
            .snapshot_positions()
            .into_iter()
            .rev()
            .filter(|p| *p <= position)
            .collect();
        found
            .into_iter()
            .filter_map(move |position| match store.snapshot(position) {
                Ok(state) => state.map(|state| (position, state)),
                Err(e) => {
                    tracing::warn!(position, error = %e, "a view snapshot is unreadable; using an older one");
                    None
                }
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
        assert!(decompress(&stored[..3]).is_err());
        // States written before checksums read as they are.
        let mut unchecked = vec![COMPRESSED];
        unchecked.extend(lz4_flex::compress_prepend_size(&state));
        assert_eq!(decompress(&unchecked).unwrap(), state);
        // Any damaged byte is found by the checksum, before decompressing.
        for at in [1, 5, 9, stored.len() / 2, stored.len() - 1] {
            let mut damaged = stored.clone();
            damaged[at] ^= 0x10;
            let e = decompress(&damaged).unwrap_err().to_string();
            assert!(e.contains("damaged"), "byte {at}: {e}");
        }
    }

    #[test]
    fn snapshots_are_files_read_newest_first_and_unreadable_ones_are_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("views");
        {
            // A snapshot of an older version, in sled.
            let db = sled::open(&path).unwrap();
            db.insert(b"s\0\0\0\0\0\0\0\x07", b"old".to_vec()).unwrap();
            db.flush().unwrap();
        }
        let store = ViewStore::open(&path).unwrap();
        assert_eq!(store.db.scan_prefix([OLD_SNAPSHOT]).count(), 0, "old snapshots removed");
        for position in [10, 20, 30] {
            store.save_snapshot(position, &[3, position as u8]).unwrap();
        }
        store.save_snapshot(20, &[3, 21]).unwrap();
        let below: Vec<_> = store.snapshots_below(25).collect();
        assert_eq!(below, vec![(20, vec![3, 21]), (10, vec![3, 10])]);
        assert_eq!(store.snapshot(30).unwrap(), Some(vec![3, 30]));
        assert_eq!(store.snapshot(40).unwrap(), None);
        // A damaged snapshot is skipped; a half-written one is removed on open.
        let damaged = store.snapshot_path(20);
        std::fs::write(&damaged, [COMPRESSED, 0xff, 0xff, 0xff, 0x7f]).unwrap();
        let below: Vec<u64> = store.snapshots_below(u64::MAX).map(|(p, _)| p).collect();
        assert_eq!(below, vec![30, 10]);
        let partial = store.snapshot_path(50).with_extension("tmp");
        std::fs::write(&partial, b"half").unwrap();
        drop(store);
        let store = ViewStore::open(&path).unwrap();
        assert!(!partial.exists());
        assert_eq!(store.snapshots_below(u64::MAX).count(), 2);
        // Beyond a (cut) log's head: gone.
        assert_eq!(store.snapshot_positions(), vec![10, 20, 30]);
        store.remove_snapshots_after(15).unwrap();
        assert_eq!(store.snapshot_positions(), vec![10]);
    }
}
