//! Scanning the log in position order, decoding only the wanted types.

use crate::store::ChunkScan;
use crate::{LogError, RecordFields, Result, Scanned};

pub(super) type ChunkIter = Box<dyn Iterator<Item = Result<crate::codec::Chunk>>>;

/// Which event types a scan decodes.
pub(super) type TypeFilter = Box<dyn Fn(&str) -> bool + Send>;

pub(super) struct EventIter {
    pub(super) chunks: Option<ChunkIter>,
    /// The chunk being read.
    pub(super) current: Option<ChunkScan>,
    pub(super) pending_err: Option<LogError>,
    pub(super) head: u64,
    pub(super) from: u64,
    /// Types to decode.
    pub(super) wanted: TypeFilter,
    /// Text fields to decode of the wanted types.
    pub(super) fields: RecordFields,
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
    use crate::{EventLog, ExpectedVersion, LogError, LogOptions, ProposedEvent, RecordedEvent};

    use super::*;

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
}
