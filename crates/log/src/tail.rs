//! The stream index's in-memory tail, like an LSM memtable.
//!
//! A commit group writes its events (chunks), identity segment and head, but not
//! its stream index entries: those collect here, one run per stream, and go to
//! sled in one batch (with the `indexed` position) every so many events or
//! streams, on the indexer thread. A stream appended to many times between two
//! index writes thus costs one sled key instead of one per commit group, off the
//! acknowledgement path. The events stay the source of truth: after a crash,
//! recovery re-derives the entries past `indexed` from them (see `log::recover`).
//!
//! Readers see the runs of a stream in sled, in the `frozen` generation (being
//! written by the indexer) and in the `active` one. They copy the tail before they
//! read sled, so a generation the indexer moves meanwhile is found in the copy, in
//! sled, or in both; runs found in both are the same runs and are counted once.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::store::{Run, RunBuilder};

/// Stream index entries not in sled yet: one run builder per stream.
#[derive(Debug, Default)]
pub(crate) struct Runs {
    pub by_stream: HashMap<String, RunBuilder, foldhash::fast::RandomState>,
    /// Events the entries cover.
    pub events: u64,
}

#[derive(Debug, Default)]
struct Generations {
    /// Handed to the indexer, not yet applied to sled.
    frozen: Option<Arc<Runs>>,
    /// Appended since.
    active: Runs,
}

/// Shared by the writer (which extends and freezes it), the indexer (which
/// releases what it applied) and readers.
#[derive(Debug, Default)]
pub(crate) struct IndexTail {
    generations: RwLock<Generations>,
}

/// One append's entry: `count` versions of `stream` from `first_version`, at
/// positions from `first_position`.
pub(crate) struct Appended<'a> {
    pub stream: &'a str,
    pub first_version: u64,
    pub first_position: u64,
    pub count: u64,
}

impl IndexTail {
    /// Adds a group's appends; returns the active generation's (streams, events).
    /// Fails (and the log must stop) if a stream's versions do not follow the ones
    /// already held, which the writer never produces.
    pub(crate) fn extend<'a>(&self, appended: impl IntoIterator<Item = Appended<'a>>) -> Result<(usize, u64), String> {
        let mut generations = self.generations.write().unwrap_or_else(PoisonError::into_inner);
        let active = &mut generations.active;
        for a in appended {
            match active.by_stream.get_mut(a.stream) {
                Some(run) => {
                    if !run.extend(a.first_version, a.first_position, a.count) {
                        return Err(format!(
                            "stream {:?}: version {} does not follow the versions indexed before it",
                            a.stream, a.first_version
                        ));
                    }
                }
                None => {
                    active.by_stream.insert(
                        a.stream.to_owned(),
                        RunBuilder::new(a.first_version, a.first_position, a.count),
                    );
                }
            }
            active.events += a.count;
        }
        Ok((active.by_stream.len(), active.events))
    }

    /// Freezes the active generation for the indexer; `None` when a frozen one is
    /// still being written or there is nothing to write.
    pub(crate) fn freeze(&self) -> Option<Arc<Runs>> {
        let mut generations = self.generations.write().unwrap_or_else(PoisonError::into_inner);
        if generations.frozen.is_some() || generations.active.by_stream.is_empty() {
            return None;
        }
        let runs = Arc::new(std::mem::take(&mut generations.active));
        generations.frozen = Some(runs.clone());
        Some(runs)
    }

    /// The indexer applied the frozen generation to sled.
    pub(crate) fn release_frozen(&self) {
        self.generations.write().unwrap_or_else(PoisonError::into_inner).frozen = None;
    }

    /// The stream's runs held here, in version order.
    pub(crate) fn runs_of(&self, stream: &str) -> Vec<Run> {
        let generations = self.generations.read().unwrap_or_else(PoisonError::into_inner);
        let frozen = generations.frozen.as_ref().and_then(|f| f.by_stream.get(stream));
        let active = generations.active.by_stream.get(stream);
        frozen.into_iter().chain(active).flat_map(RunBuilder::runs).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn appended(stream: &str, first_version: u64, first_position: u64, count: u64) -> Appended<'_> {
        Appended {
            stream,
            first_version,
            first_position,
            count,
        }
    }

    #[test]
    fn runs_span_both_generations_in_version_order() {
        let tail = IndexTail::default();
        tail.extend([appended("a", 0, 1, 2), appended("b", 0, 3, 1), appended("a", 2, 4, 1)])
            .expect("in order");
        let frozen = tail.freeze().expect("something to freeze");
        assert_eq!(frozen.events, 4);
        assert!(tail.freeze().is_none(), "one frozen generation at a time");
        assert_eq!(tail.extend([appended("a", 3, 9, 1)]), Ok((1, 1)));
        let runs = tail.runs_of("a");
        let spans: Vec<(u64, u64, u64)> = runs
            .iter()
            .map(|r| (r.first_version, r.first_position, r.count))
            .collect();
        assert_eq!(spans, vec![(0, 1, 2), (2, 4, 1), (3, 9, 1)]);
        tail.release_frozen();
        assert_eq!(tail.runs_of("a").len(), 1);
    }

    #[test]
    fn a_version_gap_is_refused() {
        let tail = IndexTail::default();
        tail.extend([appended("a", 0, 1, 2)]).expect("in order");
        let err = tail.extend([appended("a", 5, 3, 1)]).expect_err("gap");
        assert!(err.contains("version 5"), "{err}");
    }
}
