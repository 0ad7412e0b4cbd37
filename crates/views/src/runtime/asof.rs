//! As-of queries: the views as they stood at a past position, from the nearest
//! snapshot below it, the log read and decoded on one thread while parts of the
//! views are replayed on others.

use super::*;

const PREPARED_BATCH: usize = 1024;

/// Batches a reader may run ahead by: the events between two snapshots, up to
/// 64 batches (memory stays bounded whatever `snapshot_every` is).
fn prepared_batches(snapshot_every: u64) -> usize {
    usize::try_from(snapshot_every)
        .unwrap_or(usize::MAX)
        .div_ceil(PREPARED_BATCH)
        .clamp(1, 64)
}

/// Threads one as-of query may use at most (with its reader, one more).
const MAX_QUERY_THREADS: usize = 4;

/// `names` split into at most `parts` groups of about equal total `weight`
/// (heaviest first, each to the lightest group so far); no group is empty.
fn balanced_groups<'a>(names: &[&'a str], parts: usize, weight: impl Fn(&str) -> usize) -> Vec<Vec<&'a str>> {
    let mut by_weight: Vec<(usize, &str)> = names.iter().map(|&n| (weight(n), n)).collect();
    by_weight.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let mut groups: Vec<(usize, Vec<&str>)> = vec![(0, Vec::new()); parts.max(1)];
    for (w, name) in by_weight {
        if let Some(lightest) = groups.iter_mut().min_by_key(|g| g.0) {
            lightest.0 += w.max(1);
            lightest.1.push(name);
        }
    }
    groups.into_iter().map(|g| g.1).filter(|g| !g.is_empty()).collect()
}

/// The views `names` of `stored`, none of them stale, with every prepared event of
/// `events` applied; `None` when they do not decode (now, or a kept event when the
/// replay first read it).
fn replay_part(
    defs: &Definitions,
    stored: &StoredSet,
    names: &[&str],
    events: &Receiver<Arc<Vec<Prepared>>>,
) -> Option<ViewSet> {
    let mut set = stored
        .decode_lazily(ViewSet::only(defs, names))
        .ok()
        .filter(|set| set.stale_views().is_empty())?;
    for batch in events {
        batch.iter().for_each(|prepared| prepared.apply_to(&mut set));
    }
    (!stored.lazy_failed()).then_some(set)
}

/// Reads the events `from..=to` of `log` and decodes what views of `shape` read of
/// them, in batches to every one of `to_parts`; stops early when a receiver is gone.
fn prepare(
    log: &EventLog,
    shape: &ViewSet,
    from: u64,
    to: u64,
    to_parts: Vec<SyncSender<Arc<Vec<Prepared>>>>,
) -> Result<()> {
    let send = |batch: Vec<Prepared>| {
        let batch = Arc::new(batch);
        to_parts.iter().all(|tx| tx.send(batch.clone()).is_ok())
    };
    let mut batch = Vec::with_capacity(PREPARED_BATCH);
    for event in shape.wanted_types().scan(log, from) {
        let event = event?;
        if event.position() > to {
            break;
        }
        batch.push(Prepared::scanned(shape, event));
        if batch.len() == PREPARED_BATCH && !send(std::mem::replace(&mut batch, Vec::with_capacity(PREPARED_BATCH))) {
            return Ok(());
        }
    }
    if !batch.is_empty() {
        send(batch);
    }
    Ok(())
}

/// Runs `work` on a thread of the runtime's blocking pool when there is a runtime
/// (its threads live on, their allocator caches warm), else on a thread of its
/// own; the receiver gets the result, or hangs up if `work` panicked.
fn run_apart<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let job = move || {
        let _ = tx.send(work());
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(job)),
        Err(_) => drop(std::thread::spawn(job)),
    }
    rx
}

/// The views `names` of a stored snapshot taken at `position`, if they decode for
/// `defs` (none of them stale).
fn usable_snapshot(defs: &Definitions, names: &[&str], position: u64, bytes: Vec<u8>) -> Option<ViewSet> {
    ViewSet::decode_only(defs, bytes, names)
        .ok()
        .filter(|set| set.position() == position && set.stale_views().is_empty())
}

/// How long an as-of-time query waits for the appends recorded by its time to become
/// readable (a group commit takes milliseconds; a log that refuses writes answers at
/// once).
const RECORDED_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

impl Inner {
    /// The views `names` as they stood at `as_of` (the whole live set when it stands
    /// there already: cloning it is cheaper than decoding).
    pub(super) fn view_at(&self, defs: &Arc<Definitions>, as_of: AsOf, names: &[String]) -> Result<ViewSet> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let head = self.log.head();
        let target = match as_of {
            AsOf::Position(p) if p > head => return Err(ViewsError::PastHead { position: p, head }),
            AsOf::Position(p) => p,
            AsOf::Live => lock(&self.live).position(),
            AsOf::Time(t) => match now_nanos() {
                now if t > now => return Err(ViewsError::FutureTime { time: t, now }),
                // Every event recorded by `t`, also one whose group is still being
                // made durable: the same answer now as later.
                _ => {
                    let head = self.log.head_recorded_through(t, RECORDED_WITHIN);
                    self.position_at_time(t, head)?
                }
            },
        };
        {
            let live = lock(&self.live);
            if live.position() == target && live.stale_views().is_empty() {
                // A clone shares the tracked events: far cheaper than a decode.
                return Ok(live.clone());
            }
        }
        let mut snapshots = self.store.snapshots_below(target);
        if let Some((position, bytes)) = snapshots.next()
            && let Some(set) = self.replay_from_snapshot(defs, &names, position, bytes, target)?
        {
            return Ok(set);
        }
        // No snapshot, or the nearest did not decode: an older one, or position 1.
        let mut start = None;
        for (position, bytes) in snapshots {
            start = usable_snapshot(defs, &names, position, bytes);
            if start.is_some() {
                break;
            }
        }
        let mut set = start.unwrap_or_else(|| ViewSet::only(defs, &names));
        if set.position() < target {
            self.replay(&mut set, target, |_| Ok(()))?;
        }
        Ok(set)
    }

    /// The views `names` of the snapshot at `position` brought to `target`, or `None`
    /// when they do not decode.
    ///
    /// A query is mostly decoding the snapshot and applying the events after it, so
    /// both are spread over the machine's cores: one thread reads and decodes the
    /// events while the snapshot opens, then the views, split into groups of about
    /// equal stored size, each decode and apply those events on a thread of their
    /// own, and are joined at the end.
    fn replay_from_snapshot(
        &self,
        defs: &Arc<Definitions>,
        names: &[&str],
        position: u64,
        bytes: Vec<u8>,
        target: u64,
    ) -> Result<Option<ViewSet>> {
        let parts = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_QUERY_THREADS)
            .min(names.len())
            .max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..parts)
            .map(|_| std::sync::mpsc::sync_channel(prepared_batches(self.options.snapshot_every)))
            .unzip();
        let shape = ViewSet::only(defs, names);
        let log = self.log.clone();
        let reader = run_apart(move || prepare(&log, &shape, position + 1, target, senders));
        let stored = StoredSet::open(bytes)
            .ok()
            .filter(|s| s.position() == position)
            .map(Arc::new);
        // Without a usable snapshot the receivers go, which stops the reader.
        let replayed = stored.and_then(|stored| {
            let groups = balanced_groups(names, parts, |name| stored.state_len(name));
            let mut work = groups.into_iter().zip(receivers);
            let here = work.next();
            let elsewhere: Vec<_> = work
                .map(|(group, rx)| {
                    let (defs, stored) = (defs.clone(), stored.clone());
                    let group: Vec<String> = group.iter().map(|n| n.to_string()).collect();
                    run_apart(move || {
                        let group: Vec<&str> = group.iter().map(String::as_str).collect();
                        replay_part(&defs, &stored, &group, &rx)
                    })
                })
                .collect();
            let mut set = here.and_then(|(group, rx)| replay_part(defs, &stored, &group, &rx));
            for part in elsewhere {
                let part = part.recv().unwrap_or_else(|_| {
                    tracing::error!("an as-of query's thread panicked; the query starts further back");
                    None
                });
                set = match (set, part) {
                    (Some(mut set), Some(part)) => set.join(defs, part).ok().map(|()| set),
                    _ => None,
                };
            }
            set
        });
        let read = reader
            .recv()
            .map_err(|_| ViewsError::Stopped("the as-of reader panicked".into()))?;
        read.map(|()| replayed.filter(|set| set.position() == target))
    }

    /// The last position recorded at or before `time` (0 when none): recorded_at
    /// never decreases along the log, so a binary search finds it.
    fn position_at_time(&self, time: i64, head: u64) -> Result<u64> {
        let (mut lo, mut hi) = (0u64, head); // invariant: recorded_at(lo) <= time (lo=0: none), answer in [lo, hi]
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let at = self
                .log
                .read_all_blocking(Some(mid), Direction::Forward, 1)?
                .first()
                .map_or(i64::MAX, |e| e.recorded_at);
            if at <= time {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(lo)
    }
}

#[cfg(test)]
mod tests {
    use super::balanced_groups;

    #[test]
    fn groups_balance_by_weight_and_are_never_empty() {
        let weights = [("a", 10), ("b", 7), ("c", 5), ("d", 3), ("e", 0)];
        let weight = |n: &str| weights.iter().find(|w| w.0 == n).map_or(0, |w| w.1);
        let names: Vec<&str> = weights.iter().map(|w| w.0).collect();
        let groups = balanced_groups(&names, 2, weight);
        assert_eq!(groups, vec![vec!["a", "d"], vec!["b", "c", "e"]]);
        let sums: Vec<usize> = groups.iter().map(|g| g.iter().map(|n| weight(n)).sum()).collect();
        assert_eq!(sums, vec![13, 12]);
        assert_eq!(balanced_groups(&names, 1, weight), vec![vec!["a", "b", "c", "d", "e"]]);
        assert_eq!(balanced_groups(&["a"], 4, weight), vec![vec!["a"]]);
        assert!(balanced_groups(&[], 2, weight).is_empty());
    }
}
