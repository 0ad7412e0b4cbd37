//! The projection runtime: keeps the live view set up to date with the log, saves
//! it with its checkpoint, takes snapshots, rebuilds views beside the live ones and
//! answers as-of queries.
//!
//! Every view is a pure function of the log prefix it has applied; the runtime only
//! decides which prefix. One blocking worker applies events in batches (the live
//! view set behind a mutex held per batch), so queries see a consistent position.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use opsflow_catalog::DataMembers;
use opsflow_definitions::{Data, Definitions, EventData, FieldSet, Fields};
use opsflow_log::{Direction, EventLog, LogError, RecordedEvent, Scanned, rfc3339};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::set::StoredSet;
use crate::store::ViewStore;
use crate::{ControlReport, KpiReport, View, ViewSet};

mod asof;
mod rebuild;

pub type Result<T, E = ViewsError> = std::result::Result<T, E>;

/// What can go wrong in the views runtime.
#[derive(Debug, thiserror::Error)]
pub enum ViewsError {
    /// No view of that name (of the kind asked for: `view`, `KPI` or `control`);
    /// `others`: more names asked for that are not views either.
    #[error(
        "no {kind}{} named {}; the {kind}s are: {}",
        if others.is_empty() { "" } else { "s" },
        std::iter::once(name).chain(others).map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
        known.join(", ")
    )]
    UnknownView {
        name: String,
        others: Vec<String>,
        kind: &'static str,
        known: Vec<String>,
    },
    /// An as-of position the log has not reached.
    #[error("as_of position {position} is past the head of the log ({head})")]
    PastHead { position: u64, head: u64 },
    /// An as-of time after the server's clock: how the views will stand then is
    /// not known yet.
    #[error(
        "as_of time {} is in the future (the server's clock reads {}): leave as_of out for the live views",
        rfc3339(*time),
        rfc3339(*now)
    )]
    FutureTime { time: i64, now: i64 },
    /// A control asked for as a KPI, or a KPI as a control.
    #[error("`{name}` is a {is}, not a {asked}")]
    OtherKind {
        name: String,
        is: &'static str,
        asked: &'static str,
    },
    #[error("event log: {0}")]
    Log(#[from] LogError),
    #[error("view storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("view storage is corrupt: {0}")]
    Corrupt(String),
    #[error("view snapshot files: {0}")]
    Files(String),
    #[error("the views runtime stopped: {0}")]
    Stopped(String),
}

/// Tuning for [`Views`].
#[derive(Debug, Clone)]
pub struct ViewsOptions {
    /// A snapshot of every view is stored each time the live position reaches a
    /// multiple of this (as-of queries start from the nearest one).
    pub snapshot_every: u64,
    /// How often the live state is saved with its checkpoint.
    pub checkpoint_interval: Duration,
    /// Events applied per lock of the live view set.
    pub batch: usize,
}

impl Default for ViewsOptions {
    fn default() -> Self {
        ViewsOptions {
            snapshot_every: 25_000,
            checkpoint_interval: Duration::from_secs(1),
            batch: 2048,
        }
    }
}

/// A moment in the log's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// The live views.
    Live,
    /// After applying every event up to and including this position.
    Position(u64),
    /// Every event recorded at or before this time (Unix nanoseconds).
    Time(i64),
}

/// The answer to a query, with the point it describes.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub position: u64,
    pub clock: i64,
    pub definitions_version: String,
    /// Views being rebuilt (their values are partial).
    pub rebuilding: BTreeSet<String>,
    pub items: Vec<T>,
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    pub names: Vec<String>,
    pub events: u64,
    pub position: u64,
    pub seconds: f64,
}

/// The KPI and compliance views over one log. Cheap to clone.
#[derive(Clone)]
pub struct Views {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Views").field("position", &self.position()).finish()
    }
}

struct Inner {
    log: EventLog,
    store: ViewStore,
    options: ViewsOptions,
    definitions: RwLock<Arc<Definitions>>,
    live: Mutex<ViewSet>,
    /// Views being rebuilt or waiting to be, with how many rebuilds of each.
    rebuilding: Mutex<std::collections::BTreeMap<String, usize>>,
    /// Background rebuilds (after a reload or a restart with stale views): awaited
    /// by [`Views::run`] before it returns, so nothing holds the store after it.
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The last background rebuild failure, for `/readyz`.
    background_error: Mutex<Option<String>>,
    position: watch::Sender<u64>,
    /// When the live views were last checkpointed, and at which position.
    checkpointed: Mutex<(Instant, u64)>,
    /// Held for a whole rebuild: rebuilds run one after another (each swaps views
    /// into the live set and merges them into the snapshots it passes).
    rebuilds: Mutex<()>,
    /// Rebuilds running or waiting, which a request for views they cover joins.
    flights: Mutex<Vec<Flight>>,
    /// Held while a snapshot file is written, or read, changed and written again.
    snapshots: Mutex<()>,
}

/// How a rebuild ended, for everyone waiting on it.
type Landing = watch::Receiver<Option<Arc<Result<RebuildReport>>>>;

/// A rebuild running or waiting to run.
struct Flight {
    /// The definitions version it rebuilds under.
    version: String,
    names: BTreeSet<String>,
    landing: Landing,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves a view set that is still consistent at
    // some position (apply is per event), so keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The event as views see it, moving its strings out of the recorded event. Data
/// is `Null` when it is neither JSON nor a catalog protobuf message.
pub fn into_event_data(event: RecordedEvent) -> EventData {
    into_event_data_with(event, &Fields::All.lookup())
}

/// [`into_event_data`] decoding only the top-level `data` fields in `fields`.
fn into_event_data_with(event: RecordedEvent, fields: &FieldSet) -> EventData {
    let data = if fields.is_all() {
        opsflow_catalog::data_as_json(&event.event_type, &event.content_type, &event.data).map(Data::from)
    } else {
        // Only the fields views read, named by the definitions' own copies of the names.
        opsflow_catalog::data_members(&event.event_type, &event.content_type, &event.data, &|k| {
            fields.name(k).cloned()
        })
        .map(|members| match members {
            DataMembers::Object(fields) => Data::from_fields(fields),
            DataMembers::Other(value) => Data::from(value),
        })
    }
    .unwrap_or_default();
    EventData {
        position: event.position,
        version: event.version,
        stream: event.stream,
        source: event.source,
        id: event.id,
        event_type: event.event_type,
        time: event.time,
        data,
        metadata: event.metadata,
    }
}

/// An event as a view set takes it: decoded as far as its views read it, or only
/// its position and time when no view cares.
enum Prepared {
    Apply(Arc<EventData>),
    Skip(u64, i64),
}

impl Prepared {
    fn scanned(set: &ViewSet, scanned: Scanned) -> Prepared {
        match scanned {
            // The scan decoded only types the set wants (a filter taken before a
            // reload may want more, which the set then passes over): no second
            // lookup of the type here.
            Scanned::Event(event) => Prepared::Apply(Arc::new(into_event_data_with(event, set.data_names()))),
            Scanned::Skipped { position, time, .. } => Prepared::Skip(position, time),
        }
    }

    fn of(set: &ViewSet, event: RecordedEvent) -> Prepared {
        if set.interested(&event.event_type) {
            Prepared::Apply(Arc::new(into_event_data_with(event, set.data_names())))
        } else {
            Prepared::Skip(event.position, event.time)
        }
    }

    fn apply_to(&self, set: &mut ViewSet) {
        match self {
            Prepared::Apply(event) => set.apply_shared(event),
            Prepared::Skip(position, time) => set.skip_event(*position, *time),
        }
    }
}

/// Applies `event` to `set`, decoding only what some view reads of it.
pub fn apply_event(set: &mut ViewSet, event: RecordedEvent) {
    Prepared::of(set, event).apply_to(set);
}

/// Applies an event of a log scan filtered by [`ViewSet::wanted_types`] (as the
/// runtime reads the log).
pub fn apply_scanned(set: &mut ViewSet, event: Scanned) {
    Prepared::scanned(set, event).apply_to(set);
}

impl Views {
    /// Opens the views state in `dir` (a sled database of its own) and restores the
    /// live view set from its checkpoint. Views whose definition changed since are
    /// rebuilt in the background once [`Views::run`] starts. Blocking.
    pub fn open(log: EventLog, definitions: Definitions, dir: &Path, options: ViewsOptions) -> Result<Views> {
        let store = ViewStore::open(dir)?;
        let head = log.head();
        store.remove_snapshots_after(head)?;
        let live = match store.live()? {
            Some((position, bytes)) if position <= head => match ViewSet::decode(&definitions, bytes) {
                Ok(set) if set.position() == position => set,
                Ok(set) => {
                    tracing::warn!(
                        position,
                        decoded = set.position(),
                        "view checkpoint is of another position; views are rebuilt from position 1"
                    );
                    ViewSet::new(&definitions)
                }
                Err(e) => {
                    // A format of another opsflow version says so here.
                    tracing::warn!(position, error = %e, "view checkpoint unreadable; views are rebuilt from position 1");
                    ViewSet::new(&definitions)
                }
            },
            Some((position, _)) => {
                // The log lost events the views had seen (it was replaced or cut):
                // the views must not claim them.
                tracing::warn!(position, head, "view checkpoint is ahead of the log; views are rebuilt");
                ViewSet::new(&definitions)
            }
            None => ViewSet::new(&definitions),
        };
        // A snapshot newer than the checkpoint (a crash came before the next
        // checkpoint, or the checkpoint is damaged) is the views as they stood at its
        // position: start at the newest that reads.
        let newer = store
            .snapshots_below(head)
            .take_while(|(p, _)| *p > live.position())
            .find_map(|(p, bytes)| decoded_at(&definitions, p, bytes));
        let live = match newer {
            Some(set) => {
                tracing::info!(
                    position = set.position(),
                    checkpoint = live.position(),
                    "views start from a snapshot newer than their checkpoint"
                );
                set
            }
            None => live,
        };
        let (position, _) = watch::channel(live.position());
        tracing::info!(position = live.position(), version = %definitions.version, "views opened");
        let checkpointed = Mutex::new((Instant::now(), live.position()));
        Ok(Views {
            inner: Arc::new(Inner {
                log,
                store,
                options,
                definitions: RwLock::new(Arc::new(definitions)),
                live: Mutex::new(live),
                rebuilding: Mutex::new(std::collections::BTreeMap::new()),
                background: Mutex::new(Vec::new()),
                background_error: Mutex::new(None),
                position,
                checkpointed,
                rebuilds: Mutex::new(()),
                flights: Mutex::new(Vec::new()),
                snapshots: Mutex::new(()),
            }),
        })
    }

    /// [`Views::open`] off the async runtime.
    pub async fn open_async(
        log: EventLog,
        definitions: Definitions,
        dir: &Path,
        options: ViewsOptions,
    ) -> Result<Views> {
        let dir = dir.to_path_buf();
        blocking(move || Views::open(log, definitions, &dir, options)).await
    }

    /// The last position the live views include.
    pub fn position(&self) -> u64 {
        *self.inner.position.borrow()
    }

    /// The position of the last checkpoint of the live views: where they would start
    /// again after a crash (or from a newer snapshot).
    pub fn checkpoint_position(&self) -> u64 {
        lock(&self.inner.checkpointed).1
    }

    /// Watches the live position (for waiting until the views include an append).
    pub fn watch_position(&self) -> watch::Receiver<u64> {
        self.inner.position.subscribe()
    }

    /// The definitions in force.
    pub fn definitions(&self) -> Arc<Definitions> {
        self.inner.definitions()
    }

    /// Size of the live views' encoded state (what each checkpoint writes).
    pub fn state_bytes(&self) -> usize {
        lock(&self.inner.live).encode().len()
    }

    /// Views being rebuilt.
    pub fn rebuilding(&self) -> BTreeSet<String> {
        lock(&self.inner.rebuilding).keys().cloned().collect()
    }

    /// Keeps the live views up to date until `shutdown`, then saves them. Also
    /// rebuilds views restored stale from the checkpoint.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let stale = lock(&self.inner.live).stale_views().to_vec();
        if !stale.is_empty() {
            self.spawn_rebuild(stale, shutdown.clone());
        }
        let mut head = self.inner.log.watch_head();
        let result = loop {
            let target = *head.borrow_and_update();
            if target > self.position() {
                let inner = self.inner.clone();
                let stop = shutdown.clone();
                if let Err(e) = blocking(move || inner.catch_up(target, &stop)).await {
                    break Err(e);
                }
                // A catch-up returns early on shutdown; stop rather than start another.
                if shutdown.is_cancelled() {
                    break Ok(());
                }
                continue;
            }
            // Caught up: what was applied since the last checkpoint is saved once
            // the interval has passed, even if no other event comes.
            let (at, checkpointed) = *lock(&self.inner.checkpointed);
            let unsaved = checkpointed < self.position();
            let due = tokio::time::Instant::from_std(at + self.inner.options.checkpoint_interval);
            tokio::select! {
                changed = head.changed() => if changed.is_err() { break Ok(()) },
                () = shutdown.cancelled() => break Ok(()),
                () = tokio::time::sleep_until(due), if unsaved => {
                    let inner = self.inner.clone();
                    if let Err(e) = blocking(move || inner.checkpoint()).await {
                        break Err(e);
                    }
                }
            }
        };
        let background = std::mem::take(&mut *lock(&self.inner.background));
        for handle in background {
            let _ = handle.await;
        }
        let inner = self.inner.clone();
        let saved = blocking(move || {
            inner.checkpoint()?;
            inner.store.flush()
        })
        .await;
        result.and(saved)
    }

    /// Every KPI (or those named), live or as of a past moment.
    pub async fn kpis(&self, as_of: AsOf, names: &[String]) -> Result<Answer<KpiReport>> {
        self.query(as_of, names, false, |set| {
            set.kpis()
                .into_iter()
                .filter(|k| names.is_empty() || names.contains(&k.name))
                .collect()
        })
        .await
    }

    /// Every control (or those named), live or as of a past moment.
    pub async fn controls(&self, as_of: AsOf, names: &[String]) -> Result<Answer<ControlReport>> {
        self.query(as_of, names, true, |set| {
            set.controls()
                .into_iter()
                .filter(|c| names.is_empty() || names.contains(&c.name))
                .collect()
        })
        .await
    }

    /// The views `names` (or, when none are named, all of the kind asked for:
    /// `controls` or KPIs) as of `as_of`; a past moment rebuilds only those views.
    async fn query<T>(
        &self,
        as_of: AsOf,
        names: &[String],
        controls: bool,
        pick: impl Fn(&ViewSet) -> Vec<T>,
    ) -> Result<Answer<T>> {
        let rebuilding = self.rebuilding();
        if as_of == AsOf::Live {
            let live = lock(&self.inner.live);
            check_names(
                names,
                controls,
                |n| live.view(n).map(View::is_control),
                || live.view_names(),
            )?;
            return Ok(answer(&live, rebuilding, pick(&live)));
        }
        // One reading of the definitions for the names and the views built from them.
        let defs = self.definitions();
        check_names(
            names,
            controls,
            |n| match (defs.kpi(n), defs.control(n)) {
                (Some(_), _) => Some(false),
                (None, Some(_)) => Some(true),
                (None, None) => None,
            },
            || view_names(&defs),
        )?;
        let wanted = match (names.is_empty(), controls) {
            (false, _) => names.to_vec(),
            (true, false) => defs.kpis.iter().map(|k| k.name.clone()).collect(),
            (true, true) => defs.controls.iter().map(|c| c.name.clone()).collect(),
        };
        let inner = self.inner.clone();
        let set = blocking(move || inner.view_at(&defs, as_of, &wanted)).await?;
        let result = answer(&set, rebuilding, pick(&set));
        // Freeing a large set takes a good part of a query: not on the caller's time.
        tokio::task::spawn_blocking(move || drop(set));
        Ok(result)
    }

    /// Live KPIs without cloning the view set (for metrics).
    pub fn live_kpis(&self) -> Vec<KpiReport> {
        lock(&self.inner.live).kpis()
    }

    /// Live views that restarted empty after their definition changed and hold only
    /// what they saw since, until their rebuild swaps in (for metrics).
    pub fn live_stale(&self) -> Vec<String> {
        lock(&self.inner.live).stale_views().to_vec()
    }

    /// Every live control (for metrics): computing them is cheap, but they hold up to
    /// the newest violations each.
    pub fn live_controls(&self) -> Vec<ControlReport> {
        lock(&self.inner.live).controls()
    }

    /// Expression evaluation failures of each live view (for metrics).
    pub fn live_eval_errors(&self) -> std::collections::BTreeMap<String, u64> {
        lock(&self.inner.live).eval_errors()
    }

    /// The last background rebuild failure (cleared by the next success).
    pub fn background_error(&self) -> Option<String> {
        lock(&self.inner.background_error).clone()
    }
}

/// The stored view set `bytes` for `defs` (views whose definition changed come back
/// stale), if it decodes and stands at `position`.
fn decoded_at(defs: &Definitions, position: u64, bytes: Vec<u8>) -> Option<ViewSet> {
    ViewSet::decode(defs, bytes)
        .ok()
        .filter(|set| set.position() == position)
}

/// The names of every view of `defs`, KPIs then controls.
fn view_names(defs: &Definitions) -> Vec<String> {
    let kpis = defs.kpis.iter().map(|k| k.name.clone());
    kpis.chain(defs.controls.iter().map(|c| c.name.clone())).collect()
}

/// Every name is a view of the kind asked for (`controls`); `is_control` tells
/// what a name is (`None`: no such view).
fn check_names(
    names: &[String],
    controls: bool,
    is_control: impl Fn(&str) -> Option<bool>,
    known: impl FnOnce() -> Vec<String>,
) -> Result<()> {
    let kind = |control: bool| if control { "control" } else { "KPI" };
    // Every unknown name at once, not one per request.
    let mut unknown = names.iter().filter(|n| is_control(n).is_none()).cloned();
    if let Some(name) = unknown.next() {
        return Err(ViewsError::UnknownView {
            name,
            others: unknown.collect(),
            kind: kind(controls),
            // The views of the kind asked for: a KPI name is no help to a
            // compliance query.
            known: known()
                .into_iter()
                .filter(|n| is_control(n) == Some(controls))
                .collect(),
        });
    }
    for name in names {
        if let Some(control) = is_control(name)
            && control != controls
        {
            return Err(ViewsError::OtherKind {
                name: name.clone(),
                is: kind(control),
                asked: kind(controls),
            });
        }
    }
    Ok(())
}

fn answer<T>(set: &ViewSet, rebuilding: BTreeSet<String>, items: Vec<T>) -> Answer<T> {
    Answer {
        position: set.position(),
        clock: set.clock(),
        definitions_version: set.definitions_version().to_owned(),
        rebuilding,
        items,
    }
}

impl Inner {
    fn definitions(&self) -> Arc<Definitions> {
        self.definitions
            .read()
            .map(|d| d.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Applies events to the live set up to `target`, snapshotting at every multiple
    /// of `snapshot_every` and checkpointing every `checkpoint_interval`.
    fn catch_up(&self, target: u64, stop: &CancellationToken) -> Result<()> {
        let (from, wanted) = {
            let live = lock(&self.live);
            (live.position() + 1, live.wanted_types())
        };
        let mut events = wanted
            .scan(&self.log, from)
            .take_while(|e| e.as_ref().map_or(true, |e| e.position() <= target));
        loop {
            let mut live = lock(&self.live);
            if !wanted.covers(&live) {
                // Definitions changed since the scan began: scan again with theirs.
                return Ok(());
            }
            let mut applied = 0;
            let mut lag_of = None;
            let mut snapshot = None;
            for event in events.by_ref() {
                let event = event?;
                if event.position() != live.position() + 1 {
                    // Another writer (a rebuild swap) moved the set: re-read from there.
                    if event.position() <= live.position() {
                        continue;
                    }
                    return Err(ViewsError::Corrupt(format!(
                        "the log skipped from position {} to {}",
                        live.position(),
                        event.position()
                    )));
                }
                lag_of = Some(event.recorded_at());
                apply_scanned(&mut live, event);
                applied += 1;
                if live.position().is_multiple_of(self.options.snapshot_every) {
                    // Encoded after the lock is released: a clone shares the kept events.
                    snapshot = Some(live.clone());
                    break;
                }
                if applied >= self.options.batch {
                    break;
                }
            }
            let position = live.position();
            drop(live);
            if let Some(set) = snapshot.take() {
                let bytes = set.encode();
                let _writing = lock(&self.snapshots);
                self.store.save_snapshot(set.position(), &bytes)?;
            }
            self.position.send_replace(position);
            if let Some(recorded_at) = lag_of {
                let lag = (now_nanos() - recorded_at).max(0) as f64 / 1e9;
                metrics::histogram!("opsflow_view_lag_seconds").record(lag);
            }
            if lock(&self.checkpointed).0.elapsed() >= self.options.checkpoint_interval {
                self.checkpoint()?;
            }
            if applied == 0 || position >= target || stop.is_cancelled() {
                return Ok(());
            }
        }
    }

    fn checkpoint(&self) -> Result<()> {
        // Cloned under the lock (the kept events are shared), encoded outside it, so
        // applying and queries wait for a copy rather than for an encoding.
        let live = lock(&self.live).clone();
        let bytes = live.encode();
        self.store.save_live(live.position(), &bytes)?;
        *lock(&self.checkpointed) = (Instant::now(), live.position());
        metrics::gauge!("opsflow_view_checkpoint_bytes").set(bytes.len() as f64);
        Ok(())
    }

    /// Applies the events after `set`'s position up to `to`, calling `after` after
    /// each one; returns how many were applied.
    fn replay(&self, set: &mut ViewSet, to: u64, mut after: impl FnMut(&ViewSet) -> Result<()>) -> Result<u64> {
        let mut applied = 0;
        for event in set.wanted_types().scan(&self.log, set.position() + 1) {
            let event = event?;
            if event.position() > to {
                break;
            }
            apply_scanned(set, event);
            applied += 1;
            after(set)?;
        }
        Ok(applied)
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ViewsError::Stopped(format!("a views worker panicked: {e}")))?
}
