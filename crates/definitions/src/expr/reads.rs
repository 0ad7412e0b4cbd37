//! What an expression reads of the events it is given: which top-level `data`
//! fields and which attributes, of the event being applied and of the kept ones
//! (`start`, `seen[type]`). Views decode and keep only that much of each event, and
//! an expression cannot tell: everything it reads is there.
//!
//! The analysis is conservative. A read it cannot narrow (the whole `data`, the
//! whole event, `seen` used as a value, an expression left to the CEL
//! interpreter) reads everything.

use std::collections::{BTreeSet, HashSet};

use super::{Data, EventData, Name};

/// Top-level fields of an event's `data`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fields {
    /// The whole of `data`.
    All,
    /// Only these top-level fields (each with everything under it).
    Only(BTreeSet<String>),
}

impl Default for Fields {
    fn default() -> Self {
        Fields::Only(BTreeSet::new())
    }
}

impl Fields {
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Fields::All => true,
            Fields::Only(names) => names.contains(name),
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Fields::All)
    }

    fn add(&mut self, name: &str) {
        if let Fields::Only(names) = self
            && !names.contains(name)
        {
            names.insert(name.to_owned());
        }
    }

    pub fn union(&mut self, other: &Fields) {
        match other {
            Fields::All => *self = Fields::All,
            Fields::Only(names) => names.iter().for_each(|n| self.add(n)),
        }
    }

    /// The same fields as a set that answers [`FieldSet::contains`] with one hash,
    /// for checking many names (every key of every event decoded).
    pub fn lookup(&self) -> FieldSet {
        match self {
            Fields::All => FieldSet(None),
            Fields::Only(names) => FieldSet(Some(names.iter().map(|n| Name::from(n.as_str())).collect())),
        }
    }
}

/// [`Fields`] for fast membership tests (see [`Fields::lookup`]). The names come
/// from definitions, so a fixed hasher is safe: event data only looks them up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSet(Option<HashSet<Name, foldhash::fast::FixedState>>);

impl Default for FieldSet {
    fn default() -> Self {
        Fields::default().lookup()
    }
}

impl FieldSet {
    pub fn is_all(&self) -> bool {
        self.0.is_none()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.as_ref().is_none_or(|names| names.contains(name))
    }

    /// The set's own copy of `name` (shared, not copied, by [`Data::from_fields`]);
    /// `None` when it is not in the set, or when the set is every field.
    pub fn name(&self, name: &str) -> Option<&Name> {
        self.0.as_ref()?.get(name)
    }

    /// `data` with only these fields (a `data` that is not an object is kept whole).
    pub fn project(&self, data: &Data) -> Data {
        match &self.0 {
            Some(names) => data.project(|k| names.contains(k)),
            None => data.clone(),
        }
    }
}

/// What is read of one event. Its type, position and time are always kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct EventReads {
    pub data: Fields,
    pub stream: bool,
    pub source: bool,
    pub id: bool,
    pub version: bool,
    pub metadata: bool,
}

impl EventReads {
    pub fn everything() -> EventReads {
        EventReads {
            data: Fields::All,
            stream: true,
            source: true,
            id: true,
            version: true,
            metadata: true,
        }
    }

    pub fn union(&mut self, other: &EventReads) {
        self.data.union(&other.data);
        self.stream |= other.stream;
        self.source |= other.source;
        self.id |= other.id;
        self.version |= other.version;
        self.metadata |= other.metadata;
    }

    /// The part of `event` this reads (type, position and time always). Builds a
    /// lookup of the data fields per call: for many events, use
    /// [`EventReads::project_with`].
    pub fn project(&self, event: &EventData) -> EventData {
        self.project_with(event, &self.data.lookup())
    }

    /// [`EventReads::project`] with `data`, this projection's [`Fields::lookup`],
    /// made once for many events.
    pub fn project_with(&self, event: &EventData, data: &FieldSet) -> EventData {
        let text = |read: bool, s: &String| if read { s.clone() } else { String::new() };
        EventData {
            position: event.position,
            version: if self.version { event.version } else { 0 },
            stream: text(self.stream, &event.stream),
            source: text(self.source, &event.source),
            id: text(self.id, &event.id),
            event_type: event.event_type.clone(),
            time: event.time,
            data: data.project(&event.data),
            metadata: if self.metadata {
                event.metadata.clone()
            } else {
                Default::default()
            },
        }
    }

    /// A path from this event: `keys` after `event.`, `start.` or `seen['t'].`.
    fn path<S: AsRef<str>>(&mut self, keys: &[S]) {
        match keys {
            [] => *self = EventReads::everything(),
            [data] if data.as_ref() == "data" => self.data = Fields::All,
            [data, field, ..] if data.as_ref() == "data" => self.data.add(field.as_ref()),
            [attribute, ..] => match attribute.as_ref() {
                "type" | "time" | "position" => {}
                "stream" | "subject" => self.stream = true,
                "source" => self.source = true,
                "id" => self.id = true,
                "version" => self.version = true,
                "metadata" => self.metadata = true,
                // Not an event field: it fails whatever is kept.
                _ => {}
            },
        }
    }
}

/// What an expression reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reads {
    /// Of `event`, the event being applied.
    pub event: EventReads,
    /// Of the kept events: `start` and every `seen[type]`.
    pub kept: EventReads,
    /// Whether `seen` is read at all (a tracked event, or only which types were
    /// seen): a view none of whose expressions does need not remember tracked events.
    pub seen: bool,
    /// The types named in `seen['t']…` and `'t' in seen`: `seen` holds only tracked
    /// types, so one no `track:` lists is a mistake `definitions check` points out.
    pub seen_types: BTreeSet<String>,
    /// The top-level `data` fields read of each named type in `seen`
    /// (`seen['order.placed'].data.promised_by`): checked against the catalog by
    /// `definitions check`, as the fields of `event.data` are.
    pub seen_data: std::collections::BTreeMap<String, BTreeSet<String>>,
}

impl Reads {
    pub fn everything() -> Reads {
        Reads {
            event: EventReads::everything(),
            kept: EventReads::everything(),
            seen: true,
            seen_types: BTreeSet::new(),
            seen_data: std::collections::BTreeMap::new(),
        }
    }

    pub fn union(&mut self, other: &Reads) {
        self.event.union(&other.event);
        self.kept.union(&other.kept);
        self.seen |= other.seen;
        self.seen_types.extend(other.seen_types.iter().cloned());
        for (event_type, fields) in &other.seen_data {
            self.seen_data
                .entry(event_type.clone())
                .or_default()
                .extend(fields.iter().cloned());
        }
    }

    pub(crate) fn event_path<S: AsRef<str>>(&mut self, keys: &[S]) {
        self.event.path(keys);
    }

    pub(crate) fn start_path<S: AsRef<str>>(&mut self, keys: &[S]) {
        self.kept.path(keys);
    }

    /// `'t' in seen` (`named`: `t` when it is written out): which types were seen,
    /// nothing of the events.
    pub(crate) fn seen_types(&mut self, named: Option<&str>) {
        self.seen = true;
        self.seen_types.extend(named.map(str::to_owned));
    }

    /// `seen` followed by `keys` (the first one names the type).
    pub(crate) fn seen_path<S: AsRef<str>>(&mut self, keys: &[S]) {
        self.seen = true;
        match keys.split_first() {
            Some((event_type, rest)) => {
                self.seen_types.insert(event_type.as_ref().to_owned());
                if let [data, field, ..] = rest
                    && data.as_ref() == "data"
                {
                    self.seen_data
                        .entry(event_type.as_ref().to_owned())
                        .or_default()
                        .insert(field.as_ref().to_owned());
                }
                self.kept.path(rest)
            }
            None => self.kept = EventReads::everything(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Expr;

    fn only(names: &[&str]) -> Fields {
        Fields::Only(names.iter().map(|n| (*n).to_owned()).collect())
    }

    fn reads(source: &str) -> Reads {
        Expr::compile(source).unwrap().reads()
    }

    #[test]
    fn paths_read_their_top_level_field() {
        let r = reads("event.data.order.total");
        assert_eq!(r.event.data, only(&["order"]));
        assert_eq!(r.kept, EventReads::default());
        let r = reads("seen['order.placed'].data.promised_by");
        assert_eq!(r.kept.data, only(&["promised_by"]));
        assert_eq!(
            r.seen_data
                .get("order.placed")
                .map(|f| f.iter().map(String::as_str).collect::<Vec<_>>()),
            Some(vec!["promised_by"])
        );
        assert_eq!(r.event, EventReads::default());
        assert!(reads("start.stream").kept.stream);
        assert!(reads("event.metadata.k").event.metadata);
    }

    #[test]
    fn seen_is_read_by_any_mention_of_it() {
        assert!(!reads("event.data.total > 1 && start.data.channel == 'web'").seen);
        assert!(reads("seen['order.placed'].time > 0").seen);
        assert!(reads("'order.returned' in seen").seen);
        assert!(reads("size(seen) > 0").seen);
        assert!(reads("seen['t'].data.x").seen);
        assert!(reads("has(seen.t)").seen);
        assert!(reads("event.data.x > 1 ? true : seen['t'].data.ok").seen);
        assert!(reads("event.data.x.startsWith(seen['t'].data.prefix)").seen);
        // Left to the interpreter: everything, seen included.
        assert!(reads("event.data.lines.exists(l, l.qty > 1)").seen);
        let mut both = reads("event.data.total > 1");
        both.union(&reads("'x' in seen"));
        assert!(both.seen);
    }

    #[test]
    fn native_expressions_union_their_paths() {
        let r = reads(
            "event.time <= timestamp(seen['order.placed'].data.promised_by) \
             && (!has(event.data.complete) || event.data.complete) && !('order.returned' in seen)",
        );
        assert_eq!(r.event.data, only(&["complete"]));
        assert_eq!(r.kept.data, only(&["promised_by"]));
        assert!(!r.kept.stream && !r.kept.metadata);
        assert!(r.seen);
        let named = |r: Reads| r.seen_types.into_iter().collect::<Vec<_>>();
        assert_eq!(named(r), ["order.placed", "order.returned"]);
        assert_eq!(named(reads("has(seen.t) && event.data.k in seen")), ["t"]);
        let r = reads("has(start.data.channel) ? start.data.channel : 'unknown'");
        assert_eq!(r.kept.data, only(&["channel"]));
    }

    #[test]
    fn reads_that_cannot_be_narrowed_read_everything() {
        assert_eq!(reads("size(event.data) > 2").event.data, Fields::All);
        assert_eq!(reads("'x' in event.data").event.data, Fields::All);
        assert_eq!(reads("size(seen) > 0").kept, EventReads::everything());
        assert_eq!(reads("seen[event.data.t].time > 0").kept, EventReads::everything());
        assert_eq!(reads("event.data.total > 1").event.data, only(&["total"]));
        // Left to the interpreter: everything.
        assert_eq!(reads("event.data.lines.exists(l, l.qty > 1)"), Reads::everything());
    }

    #[test]
    fn projection_keeps_what_is_read() {
        let event = EventData {
            position: 3,
            version: 2,
            stream: "order/O-1".into(),
            source: "shop".into(),
            id: "e3".into(),
            event_type: "order.placed".into(),
            time: 7,
            data: serde_json::json!({"a": 1, "b": {"c": 2}, "d": [3]}).into(),
            metadata: [("k".to_owned(), "v".to_owned())].into(),
        };
        let mut r = EventReads {
            data: only(&["b", "zz"]),
            ..EventReads::default()
        };
        let p = r.project(&event);
        assert_eq!(p.data, serde_json::json!({"b": {"c": 2}}));
        assert_eq!((p.position, p.time, p.event_type.as_str()), (3, 7, "order.placed"));
        assert!(p.stream.is_empty() && p.source.is_empty() && p.metadata.is_empty());
        r.union(&EventReads::everything());
        assert_eq!(r.project(&event), event);
    }

    #[test]
    fn a_field_set_answers_as_its_fields() {
        for fields in [only(&[]), only(&["a", "bb", "ccc"]), Fields::All] {
            let set = fields.lookup();
            assert_eq!(set.is_all(), fields.is_all());
            for name in ["", "a", "b", "bb", "ccc", "cc", "zz"] {
                assert_eq!(set.contains(name), fields.contains(name), "{name} in {fields:?}");
            }
        }
        assert_eq!(FieldSet::default(), only(&[]).lookup());
    }
}
