//! All views of a definitions set, at one log position.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use opsflow_definitions::{Definitions, EventData, EventReads, FieldSet, Fields};
use opsflow_log::{EventLog, RecordFields, Scanned};
use serde::{Deserialize, Serialize};

use crate::codec::{Continuation, EventTable, StoredEvents};
use crate::keyed::{Ctx, KeyCache};
use crate::report::{ControlReport, KpiReport};
use crate::view::{Stored, View};
use crate::{Result, ViewError};

/// What a view set wants of the log (see [`ViewSet::wanted_types`]): the event types
/// some view applies, and the text fields some view reads of them.
#[derive(Debug, Clone)]
pub struct WantedTypes {
    types: Arc<std::collections::HashSet<String, foldhash::fast::RandomState>>,
    fields: RecordFields,
}

impl Default for WantedTypes {
    fn default() -> Self {
        WantedTypes {
            types: Arc::default(),
            fields: RecordFields::ALL,
        }
    }
}

impl WantedTypes {
    pub fn contains(&self, event_type: &str) -> bool {
        self.types.contains(event_type)
    }

    /// Whether everything `set` wants is here (a filter taken before a reload may
    /// lack types or fields the set wants now).
    pub fn covers(&self, set: &ViewSet) -> bool {
        self.fields.includes(&set.wanted.fields)
            && (Arc::ptr_eq(&self.types, &set.wanted.types) || set.wanted.types.iter().all(|t| self.contains(t)))
    }

    /// The events of `log` from position `from`, decoded as far as the set reads
    /// them (the others as [`Scanned::Skipped`]). Blocking.
    pub fn scan(&self, log: &EventLog, from: u64) -> impl Iterator<Item = opsflow_log::Result<Scanned>> + use<> {
        let types = self.types.clone();
        log.scan_projected(from, move |t| types.contains(t), self.fields)
    }
}

/// The leading byte of [`ViewSet::encode`]; bumped whenever stored state changes shape
/// or meaning (8: a ratio sample whose `good` fails to evaluate is no longer counted).
pub const FORMAT: u8 = 8;

/// Every view of a [`Definitions`], fed the log in position order.
///
/// The **view clock** is the latest event time applied: windows end there and
/// obligations fall due against it, so the same events always give the same views.
#[derive(Debug, Clone)]
pub struct ViewSet {
    version: String,
    position: u64,
    clock: i64,
    views: Vec<View>,
    /// Event type -> `(view, route)` pairs, in view order.
    dispatch: HashMap<String, Vec<(usize, usize)>, BuildHasherDefault<Fnv>>,
    /// Keys of the event being applied, shared by views with the same key expression.
    keys: KeyCache,
    /// Views with deadlines (`within` controls).
    timed: Vec<usize>,
    stale: Vec<String>,
    /// What views keep of the events they keep: the union of what every view of
    /// the definitions reads of kept events, so an event is kept once however many
    /// views keep it, and a view keeps the same whichever set it is rebuilt in.
    /// A view carried over a reload keeps the events it kept before as they were
    /// projected then (wider or narrower than now): it still reads all it reads of
    /// them, so its reports are those of a rebuild, though its stored bytes may not be.
    kept: EventReads,
    /// `kept.data` as a lookup.
    kept_data: FieldSet,
    /// The top-level `data` fields any view reads, of an event or of one it keeps:
    /// all the runtime needs to decode.
    data_fields: Fields,
    /// `data_fields` as a lookup.
    data_names: FieldSet,
    /// The keys of `dispatch`, shareable with a log scan.
    wanted: WantedTypes,
}

/// The stored state, written in place from the live set; read back field by field
/// by [`StoredSet::open`]. Its events are a table of their own, or a stored set's
/// followed by new ones ([`ViewSet::splice_into`]).
#[derive(Serialize)]
struct Encoded<'a> {
    definitions_version: &'a str,
    position: u64,
    clock: i64,
    /// Every event some view keeps, once (views refer to them by index).
    events: Continuation<'a>,
    views: Vec<EncodedView>,
}

#[derive(Clone, Serialize, Deserialize)]
struct EncodedView {
    name: String,
    fingerprint: String,
    /// postcard of the view's state, decoded only when the fingerprint still matches.
    #[serde(with = "crate::codec::byte_string")]
    state: Vec<u8>,
}

impl ViewSet {
    /// Every KPI and control of `defs`, empty, at position 0.
    pub fn new(defs: &Definitions) -> ViewSet {
        ViewSet::from_views(defs, all_views(defs))
    }

    /// Only the named views (for rebuilding them); unknown names are ignored.
    pub fn only(defs: &Definitions, names: &[&str]) -> ViewSet {
        let views = all_views(defs)
            .into_iter()
            .filter(|v| names.contains(&v.name()))
            .collect();
        ViewSet::from_views(defs, views)
    }

    fn from_views(defs: &Definitions, views: Vec<View>) -> ViewSet {
        let mut set = ViewSet {
            version: defs.version.clone(),
            position: 0,
            clock: 0,
            views,
            dispatch: HashMap::default(),
            keys: Vec::new(),
            timed: Vec::new(),
            stale: Vec::new(),
            kept: kept_reads(defs),
            kept_data: FieldSet::default(),
            data_fields: Fields::default(),
            data_names: FieldSet::default(),
            wanted: WantedTypes::default(),
        };
        set.index();
        set
    }

    fn index(&mut self) {
        self.dispatch.clear();
        self.timed.clear();
        let mut slots: HashMap<String, usize> = HashMap::new();
        for view in &mut self.views {
            for role in view.routes.iter_mut().flat_map(|r| r.roles.iter_mut()) {
                if let Some(key) = &role.key {
                    let next = slots.len();
                    role.key_slot = *slots.entry(key.source().to_string()).or_insert(next);
                }
            }
        }
        self.keys = vec![(0, None); slots.len()];
        for (v, view) in self.views.iter().enumerate() {
            for (r, route) in view.routes.iter().enumerate() {
                self.dispatch.entry(route.event_type.clone()).or_default().push((v, r));
            }
            if view.kind() == "within" {
                self.timed.push(v);
            }
        }
        // What is read of an applied event: what views read of it, and what they
        // keep of it.
        let mut read = self.kept.clone();
        for view in &self.views {
            read.union(&view.reads.event);
        }
        self.data_names = read.data.lookup();
        self.data_fields = read.data;
        self.kept_data = self.kept.data.lookup();
        self.wanted = WantedTypes {
            types: Arc::new(self.dispatch.keys().cloned().collect()),
            fields: RecordFields {
                stream: read.stream,
                id: read.id,
                source: read.source,
                // The data decodes by its content type.
                content_type: true,
                // Expressions cannot read them.
                correlation: false,
                metadata: read.metadata,
            },
        };
    }

    pub fn definitions_version(&self) -> &str {
        &self.version
    }

    /// The last applied position (0: none).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The view clock: the latest event time applied, Unix nanoseconds (0: none).
    pub fn clock(&self) -> i64 {
        self.clock
    }

    /// Whether any view cares about events of this type. The runtime may skip decoding
    /// the data of other events, but must still pass their time with
    /// [`ViewSet::skip_event`] (or [`ViewSet::apply`]) so the clock advances alike in
    /// a live set and a rebuilt one.
    pub fn interested(&self, event_type: &str) -> bool {
        self.dispatch.contains_key(event_type)
    }

    /// The types some view of this set wants, as a filter a log scan can own (see
    /// `EventLog::scan`): the others need only their position and time.
    pub fn wanted_types(&self) -> WantedTypes {
        self.wanted.clone()
    }

    /// The top-level `data` fields some view reads (of an event, or later of one it
    /// keeps). The runtime may decode only these: views cannot tell the difference.
    pub fn data_fields(&self) -> &Fields {
        &self.data_fields
    }

    /// [`ViewSet::data_fields`] as a lookup.
    pub fn data_names(&self) -> &FieldSet {
        &self.data_names
    }

    /// Applies the next event. Events must come in position order; one at or before
    /// [`ViewSet::position`] is ignored (a bug in the caller, asserted in debug builds).
    pub fn apply(&mut self, event: &EventData) {
        self.apply_with(event, None);
    }

    /// [`ViewSet::apply`] of an event decoded for this set (see
    /// [`ViewSet::data_names`]): views that keep it share it instead of copying
    /// what they read of it.
    pub fn apply_shared(&mut self, event: &Arc<EventData>) {
        self.apply_with(event, Some(event));
    }

    fn apply_with(&mut self, event: &EventData, shared: Option<&Arc<EventData>>) {
        if !self.advance(event.position, event.time) {
            return;
        }
        if let Some(routes) = self.dispatch.get(event.event_type.as_str()) {
            let kept = (&self.kept, &self.kept_data);
            let mut ctx = match shared {
                Some(shared) => Ctx::shared(shared, self.clock, kept, &mut self.keys),
                None => Ctx::new(event, self.clock, kept, &mut self.keys),
            };
            for &(v, r) in routes {
                self.views[v].apply(r, &mut ctx);
            }
        }
        self.expire();
    }

    /// An event no view cares about: advances the position and the clock.
    pub fn skip_event(&mut self, position: u64, time: i64) {
        if self.advance(position, time) {
            self.expire();
        }
    }

    /// Advances the position without an event (the clock does not move).
    pub fn skip_to(&mut self, position: u64) {
        self.position = self.position.max(position);
    }

    fn advance(&mut self, position: u64, time: i64) -> bool {
        debug_assert!(
            position > self.position,
            "event {position} applied at position {}",
            self.position
        );
        if position <= self.position {
            return false;
        }
        self.position = position;
        self.clock = self.clock.max(time);
        true
    }

    fn expire(&mut self) {
        for &v in &self.timed {
            let view = &mut self.views[v];
            if view.next_due().is_some_and(|due| due < self.clock) {
                view.expire(self.clock, self.position);
            }
        }
    }

    /// Every KPI, in definitions order.
    pub fn kpis(&self) -> Vec<KpiReport> {
        self.views
            .iter()
            .filter_map(|v| v.kpi_report(&self.version, self.position, self.clock))
            .collect()
    }

    /// Every control, in definitions order.
    pub fn controls(&self) -> Vec<ControlReport> {
        self.views
            .iter()
            .filter_map(|v| v.control_report(&self.version, self.position, self.clock))
            .collect()
    }

    pub fn view_names(&self) -> Vec<String> {
        self.views.iter().map(|v| v.name().to_string()).collect()
    }

    pub fn fingerprint(&self, name: &str) -> Option<&str> {
        self.view(name).map(View::fingerprint)
    }

    pub fn view(&self, name: &str) -> Option<&View> {
        self.views.iter().find(|v| v.name() == name)
    }

    /// Evaluation errors per view (`opsflow_view_eval_errors_total{view}`).
    pub fn eval_errors(&self) -> BTreeMap<String, u64> {
        self.views
            .iter()
            .map(|v| (v.name().to_string(), v.eval_errors()))
            .collect()
    }

    /// Takes a view out, leaving an empty one of the same definition in its place.
    pub fn take_view(&mut self, name: &str) -> Option<View> {
        let view = self.views.iter_mut().find(|v| v.name() == name)?;
        let empty = view.emptied();
        Some(std::mem::replace(view, empty))
    }

    /// Puts a view in, replacing the one of the same name (or adding it), and clears
    /// it from [`ViewSet::stale_views`].
    pub fn put_view(&mut self, view: View) {
        self.stale.retain(|n| n != view.name());
        match self.views.iter_mut().find(|v| v.name() == view.name()) {
            Some(slot) => *slot = view,
            None => self.views.push(view),
        }
        self.index();
    }

    /// Views that [`ViewSet::decode`] started empty (new, or changed definitions): the
    /// runtime rebuilds them from position 1.
    pub fn stale_views(&self) -> &[String] {
        &self.stale
    }

    /// The whole state: a format byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        let table = EventTable::writing(&self.kept);
        let views = self.encoded_views();
        let new = table.finish();
        let encoded = Encoded {
            definitions_version: &self.version,
            position: self.position,
            clock: self.clock,
            events: Continuation {
                stored: None,
                new: &new,
            },
            views,
        };
        // Serializing plain data into a Vec cannot fail.
        postcard::to_extend(&encoded, vec![FORMAT]).unwrap_or_default()
    }

    /// Each view's state, encoded while an [`EventTable`] collects the events it
    /// keeps. A stale view holds only what it saw since it went stale: stored
    /// without a fingerprint, it decodes stale again (rebuilt), never as a view that
    /// saw everything.
    fn encoded_views(&self) -> Vec<EncodedView> {
        self.views
            .iter()
            .map(|v| {
                let (fingerprint, state) = if self.stale.iter().any(|n| n == v.name()) {
                    (String::new(), Vec::new())
                } else {
                    (
                        v.fingerprint().to_string(),
                        postcard::to_stdvec(&v.stored).unwrap_or_default(),
                    )
                };
                EncodedView {
                    name: v.name().to_string(),
                    fingerprint,
                    state,
                }
            })
            .collect()
    }

    /// The stored set `stored` ([`ViewSet::encode`]) with this set's views in place
    /// of its own, for `defs`: what decoding it, putting these views in and encoding
    /// it again gives (read back, the same views), without decoding the stored views.
    /// Their states and kept events are copied as stored; this set's kept events
    /// follow, each one stored alike (an event both keep) referred to instead. Views
    /// whose definition changed since are stored stale, as [`ViewSet::encode`] does;
    /// so are views of `defs` in neither. Also returns how many kept events it
    /// added to the stored ones: events the replaced views alone kept stay in the
    /// table, unused, so a caller that must keep it from growing writes the set whole
    /// instead when some were added. `None` when `stored` is of another position.
    pub fn splice_into(&self, defs: &Definitions, stored: Vec<u8>) -> Result<Option<(Vec<u8>, usize)>> {
        let stored = StoredSet::open(stored)?;
        Ok((stored.position == self.position).then(|| self.splice(defs, &stored)))
    }

    /// [`ViewSet::splice_into`] an opened stored set of this set's position.
    fn splice(&self, defs: &Definitions, stored: &StoredSet) -> (Vec<u8>, usize) {
        let table = EventTable::continuing(&self.kept, stored.events.clone());
        let mut fresh: HashMap<String, EncodedView> = self
            .encoded_views()
            .into_iter()
            .filter(|e| !e.fingerprint.is_empty())
            .map(|e| (e.name.clone(), e))
            .collect();
        let new = table.finish();
        let views = ViewSet::new(defs)
            .views
            .iter()
            .map(|v| {
                let kept = |e: &EncodedView| e.fingerprint == v.fingerprint();
                match fresh.remove(v.name()) {
                    Some(e) if kept(&e) => e,
                    _ => match stored.views.iter().find(|e| e.name == v.name()) {
                        Some(e) if kept(e) => e.clone(),
                        _ => EncodedView {
                            name: v.name().to_string(),
                            fingerprint: String::new(),
                            state: Vec::new(),
                        },
                    },
                }
            })
            .collect();
        let spliced = Encoded {
            definitions_version: &defs.version,
            position: stored.position,
            clock: stored.clock,
            events: Continuation {
                stored: Some(&stored.events),
                new: &new,
            },
            views,
        };
        // Serializing plain data into a Vec cannot fail.
        (
            postcard::to_extend(&spliced, vec![FORMAT]).unwrap_or_default(),
            new.len(),
        )
    }

    /// The stored set `stored` with this set's views put in, for `defs`: spliced
    /// ([`ViewSet::splice_into`]) when that adds no kept events, else decoded, the
    /// views put in, and encoded whole, so the stored table never grows with events
    /// nothing uses. `None` when `stored` is of another position.
    pub fn merge_into(&self, defs: &Definitions, stored: Vec<u8>) -> Result<Option<Vec<u8>>> {
        let stored = StoredSet::open(stored)?;
        if stored.position != self.position {
            return Ok(None);
        }
        match self.splice(defs, &stored) {
            (spliced, 0) => Ok(Some(spliced)),
            _ => {
                let mut set = stored.decode(ViewSet::new(defs))?;
                let mut copy = ViewSet::decode(defs, self.encode())?;
                for name in self.view_names() {
                    if let Some(view) = copy.take_view(&name) {
                        set.put_view(view);
                    }
                }
                Ok(Some(set.encode()))
            }
        }
    }

    /// State encoded by [`ViewSet::encode`], for `defs`. Views whose definition changed
    /// or is new start empty and are listed in [`ViewSet::stale_views`]; views no longer
    /// defined are dropped. The kept events are read in place: a `Vec` is taken as
    /// it is, a slice copied once.
    pub fn decode(defs: &Definitions, bytes: impl Into<Vec<u8>>) -> Result<ViewSet> {
        StoredSet::open(bytes.into())?.decode(ViewSet::new(defs))
    }

    /// [`ViewSet::decode`] of the views named `names` only (as [`ViewSet::only`]):
    /// the other views' states are not decoded at all.
    pub fn decode_only(defs: &Definitions, bytes: impl Into<Vec<u8>>, names: &[&str]) -> Result<ViewSet> {
        StoredSet::open(bytes.into())?.decode(ViewSet::only(defs, names))
    }

    /// Adds the views of `other`, a set of other views of the same definitions at the
    /// same position (decoded and brought there apart, on another thread), keeping
    /// definitions order.
    pub fn join(&mut self, defs: &Definitions, other: ViewSet) -> Result<()> {
        if other.position != self.position || other.version != self.version {
            return Err(ViewError::Corrupt(format!(
                "cannot join views at position {} ({}) to views at {} ({})",
                other.position, other.version, self.position, self.version
            )));
        }
        self.clock = self.clock.max(other.clock);
        self.stale.extend(other.stale);
        self.views.extend(other.views);
        let order: HashMap<&str, usize> = defs
            .kpis
            .iter()
            .map(|k| k.name.as_str())
            .chain(defs.controls.iter().map(|c| c.name.as_str()))
            .enumerate()
            .map(|(i, name)| (name, i))
            .collect();
        self.views
            .sort_by_key(|v| order.get(v.name()).copied().unwrap_or(usize::MAX));
        self.index();
        Ok(())
    }
}

/// A stored view set opened to decode its views, all or some, on one thread or
/// several: the events views keep are decoded once, when a view first refers to
/// them, and shared.
pub struct StoredSet {
    position: u64,
    clock: i64,
    events: Arc<StoredEvents>,
    views: Vec<EncodedView>,
}

impl StoredSet {
    /// Reads the state [`ViewSet::encode`] wrote (an `Encoded`, field by field), up
    /// to the views' own states.
    pub fn open(bytes: Vec<u8>) -> Result<StoredSet> {
        let corrupt = |e: postcard::Error| ViewError::Corrupt(e.to_string());
        let (&format, rest) = bytes.split_first().ok_or(ViewError::Corrupt("empty".into()))?;
        if format != FORMAT {
            return Err(ViewError::Format {
                found: format,
                expected: FORMAT,
            });
        }
        let (_definitions_version, rest) = postcard::take_from_bytes::<&[u8]>(rest).map_err(corrupt)?;
        let (position, rest) = postcard::take_from_bytes::<u64>(rest).map_err(corrupt)?;
        let (clock, rest) = postcard::take_from_bytes::<i64>(rest).map_err(corrupt)?;
        let start = bytes.len() - rest.len();
        let (events, end) = StoredEvents::parse(bytes, start).map_err(corrupt)?;
        let views = events
            .bytes()
            .get(end..)
            .ok_or(ViewError::Corrupt("no views after the kept events".into()))
            .and_then(|rest| postcard::from_bytes(rest).map_err(corrupt))?;
        Ok(StoredSet {
            position,
            clock,
            events: Arc::new(events),
            views,
        })
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    /// How many events the stored views keep (each once, however many keep it).
    #[cfg(test)]
    pub(crate) fn kept_events(&self) -> usize {
        self.events.len()
    }

    /// The size of a view's stored state (how much decoding it and applying events to
    /// it costs, roughly); 0 when it is not stored.
    pub fn state_len(&self, name: &str) -> usize {
        self.views.iter().find(|v| v.name == name).map_or(0, |v| v.state.len())
    }

    /// `set` (empty views) with the stored states of its views, at the stored
    /// position. Views whose definition changed or is new stay empty and are listed
    /// in [`ViewSet::stale_views`].
    pub fn decode(&self, set: ViewSet) -> Result<ViewSet> {
        self.decode_with(set, false)
    }

    /// [`StoredSet::decode`] for a set that lives briefly (an as-of query): the
    /// events its views keep come with their type, position and time, the rest
    /// decoded on first use, so that those the query never reads cost almost nothing.
    /// The set holds the stored bytes while it holds any such event. A kept event
    /// that fails to decode then is its type, position and time only: check
    /// [`StoredSet::lazy_failed`] before trusting the set.
    pub fn decode_lazily(&self, set: ViewSet) -> Result<ViewSet> {
        self.decode_with(set, true)
    }

    /// Some kept event of a [`StoredSet::decode_lazily`] failed to decode when first
    /// used (a state stored before checksums, damaged): sets decoded from this one
    /// are not the views as they stood.
    pub fn lazy_failed(&self) -> bool {
        self.events.failed()
    }

    fn decode_with(&self, mut set: ViewSet, lazy: bool) -> Result<ViewSet> {
        let _table = EventTable::reading(self.events.clone(), lazy);
        set.position = self.position;
        set.clock = self.clock;
        let stored: HashMap<&str, &EncodedView> = self.views.iter().map(|v| (v.name.as_str(), v)).collect();
        for view in &mut set.views {
            match stored.get(view.name()) {
                Some(e) if e.fingerprint == view.fingerprint() => {
                    let state: Stored = postcard::from_bytes(&e.state)
                        .map_err(|err| ViewError::Corrupt(format!("view {}: {err}", e.name)))?;
                    if std::mem::discriminant(&state.state) != std::mem::discriminant(&view.stored.state) {
                        return Err(ViewError::Corrupt(format!("view {}: state of another kind", e.name)));
                    }
                    view.stored = state;
                }
                _ => set.stale.push(view.name().to_string()),
            }
        }
        Ok(set)
    }
}

/// FNV-1a for the dispatch table: its keys are the definitions' event types, fixed
/// while the set lives, so a fast unkeyed hash is safe.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The union of what the views of `defs` read of the events they keep.
fn kept_reads(defs: &Definitions) -> EventReads {
    let mut kept = EventReads::default();
    for reads in defs
        .kpis
        .iter()
        .map(|d| d.reads())
        .chain(defs.controls.iter().map(|d| d.reads()))
    {
        kept.union(&reads.kept);
    }
    kept
}

fn all_views(defs: &Definitions) -> Vec<View> {
    let kpis = defs.kpis.iter().map(|d| View::for_kpi(Arc::new(d.clone())));
    let controls = defs.controls.iter().map(|d| View::for_control(Arc::new(d.clone())));
    kpis.chain(controls).collect()
}
