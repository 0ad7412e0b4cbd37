//! Opening a log: the indexes brought up to the stored events, and the identity
//! index loaded.

use crate::Result;
use crate::identity::{IdentityIndex, SegmentBuilder, fingerprint, segment_key};
use crate::store::{Head, META_HEAD, META_INDEXED, Store, decode_from};

/// Makes the indexes cover every stored event; returns the head.
pub(super) fn recover(store: &Store) -> Result<Head> {
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
pub(super) fn load_identities(store: &Store) -> Result<IdentityIndex> {
    let mut index = IdentityIndex::default();
    for item in store.db.range(segment_key(0)..=segment_key(u64::MAX)) {
        let (k, v) = item?;
        index.load_segment(crate::store::be_u64(&k[1..], "identity segment key")?, &v)?;
    }
    Ok(index)
}
