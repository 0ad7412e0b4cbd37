//! Audit verification: the hash chain recomputed over a range of positions.

use crate::codec::chain_hash;
use crate::store::{GENESIS, META_HEAD, Store, tail_hash};
use crate::{BrokenLink, LogError, Result, VerifyReport};

/// Recomputes the hash chain of `store`, whose head is `head`, over `[from, to]`
/// (see [`crate::EventLog::verify`]).
pub(super) fn chain(store: &Store, head: u64, from: Option<u64>, to: Option<u64>) -> Result<VerifyReport> {
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

#[cfg(test)]
mod tests {
    use crate::log::tests::event;
    use crate::{Direction, EventLog, ExpectedVersion, LogOptions};

    use super::*;

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
}
