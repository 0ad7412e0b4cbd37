//! The events views keep, stored once per view set: a table written beside the
//! views, each kept event encoded as its index there, and read back lazily.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use opsflow_definitions::{Data, EventData, EventReads, EventSource, FieldSet, LazyEvent, SharedEvent};
use serde::de::Deserializer;
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::{DataRef, StoredJson};

/// The kept-event table of a stored view set, read back lazily: parsing it only
/// finds where each event is (each is stored length-prefixed); an event is decoded
/// when a view refers to it (see [`EventTable::reading`]). Views not decoded cost
/// none of their events, and views of one set can be decoded on several threads.
pub(crate) struct StoredEvents {
    /// The stored bytes the events are in (with whatever surrounds them).
    bytes: Vec<u8>,
    /// Where each event's bytes start and end.
    spans: Vec<(usize, usize)>,
    /// An event decoded on first use ([`EventSource::load`]) did not decode.
    failed: AtomicBool,
}

impl StoredEvents {
    /// The table [`KeptEvents`] wrote at `bytes[start..]`; also returns where it
    /// ends.
    pub(crate) fn parse(bytes: Vec<u8>, start: usize) -> Result<(StoredEvents, usize), postcard::Error> {
        let base = bytes.as_ptr() as usize;
        let mut rest = bytes.get(start..).ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
        let (count, after) = postcard::take_from_bytes::<u64>(rest)?;
        rest = after;
        // Each event takes at least a byte: a corrupt count cannot allocate much.
        let mut spans = Vec::with_capacity(usize::try_from(count).unwrap_or(usize::MAX).min(rest.len()));
        for _ in 0..count {
            let (event, after) = postcard::take_from_bytes::<&[u8]>(rest)?;
            let at = event.as_ptr() as usize - base;
            spans.push((at, at + event.len()));
            rest = after;
        }
        let end = bytes.len() - rest.len();
        let failed = AtomicBool::new(false);
        Ok((StoredEvents { bytes, spans, failed }, end))
    }

    /// The bytes the table was parsed from.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Event `index`: its type, position and time only, the rest decoded when first
    /// used ([`EventSource::load`]).
    fn lazy(self: &Arc<Self>, index: u32) -> Result<SharedEvent, String> {
        /// The fields of a [`StoredEvent`] up to its time, borrowed.
        #[derive(Deserialize)]
        struct Header<'a> {
            position: u64,
            _version: u64,
            _stream: &'a str,
            _source: &'a str,
            _id: &'a str,
            event_type: &'a str,
            time: i64,
        }
        let (header, _) = postcard::take_from_bytes::<Header>(self.stored(index as usize)?)
            .map_err(|e| format!("kept event {index} does not decode: {e}"))?;
        let source: Arc<dyn EventSource> = self.clone();
        let lazy = LazyEvent::new(
            header.event_type.to_owned(),
            header.position,
            header.time,
            source,
            index,
        );
        Ok(SharedEvent::Stored(Arc::new(lazy)))
    }

    fn stored(&self, index: usize) -> Result<&[u8], String> {
        self.spans
            .get(index)
            .and_then(|&(start, end)| self.bytes.get(start..end))
            .ok_or_else(|| format!("kept event {index} is not in the event table"))
    }

    /// Event `index`, decoded.
    fn decode(&self, index: usize) -> Result<EventData, String> {
        postcard::from_bytes::<StoredEvent>(self.stored(index)?)
            .map(EventData::from)
            .map_err(|e| format!("kept event {index} does not decode: {e}"))
    }
}

impl EventSource for StoredEvents {
    fn load(&self, index: u32) -> Option<EventData> {
        self.decode(index as usize)
            .map_err(|error| {
                self.failed.store(true, Ordering::Relaxed);
                tracing::error!(%error, "a kept event of stored view state does not decode");
            })
            .ok()
    }
}

/// A kept event as stored, read back.
#[derive(Deserialize)]
pub(crate) struct StoredEvent {
    position: u64,
    version: u64,
    stream: String,
    source: String,
    id: String,
    event_type: String,
    time: i64,
    data: StoredJson,
    metadata: BTreeMap<String, String>,
}

/// A kept event written as [`StoredEvent`] reads it, borrowed from the event.
#[derive(Serialize)]
struct StoredEventRef<'a> {
    position: u64,
    version: u64,
    stream: &'a str,
    source: &'a str,
    id: &'a str,
    event_type: &'a str,
    time: i64,
    data: DataRef<'a>,
    metadata: &'a BTreeMap<String, String>,
}

impl<'a> From<&'a EventData> for StoredEventRef<'a> {
    fn from(e: &'a EventData) -> Self {
        StoredEventRef {
            position: e.position,
            version: e.version,
            stream: &e.stream,
            source: &e.source,
            id: &e.id,
            event_type: &e.event_type,
            time: e.time,
            data: DataRef(&e.data),
            metadata: &e.metadata,
        }
    }
}

/// The events of an [`EventTable`] being written: a sequence of byte strings, each
/// a [`StoredEvent`] in postcard, so a reader finds each without decoding any
/// ([`StoredEvents`]).
pub(crate) struct KeptEvents(Vec<Arc<EventData>>);

impl KeptEvents {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl Serialize for KeptEvents {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Continuation {
            stored: None,
            new: self,
        }
        .serialize(s)
    }
}

/// The events of a stored table (as they are stored) followed by new ones: the
/// table of a [`KeptEvents`] written by [`EventTable::continuing`].
pub(crate) struct Continuation<'a> {
    pub(crate) stored: Option<&'a StoredEvents>,
    pub(crate) new: &'a KeptEvents,
}

impl Serialize for Continuation<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        struct Bytes<'a>(&'a [u8]);
        impl Serialize for Bytes<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        let stored = self.stored.map_or(0, StoredEvents::len);
        let mut seq = s.serialize_seq(Some(stored + self.new.0.len()))?;
        if let Some(table) = self.stored {
            for index in 0..stored {
                seq.serialize_element(&Bytes(table.stored(index).map_err(S::Error::custom)?))?;
            }
        }
        let mut event = Vec::new();
        for e in &self.new.0 {
            event.clear();
            event = postcard::to_extend(&StoredEventRef::from(&**e), event).map_err(S::Error::custom)?;
            seq.serialize_element(&Bytes(&event))?;
        }
        seq.end()
    }
}

impl From<StoredEvent> for EventData {
    fn from(e: StoredEvent) -> Self {
        EventData {
            position: e.position,
            version: e.version,
            stream: e.stream,
            source: e.source,
            id: e.id,
            event_type: e.event_type,
            time: e.time,
            // Whole, as decoded: read back only when a view reads it.
            data: Data::from(e.data.0),
            metadata: e.metadata,
        }
    }
}

/// An event kept in view state (a start event, a tracked event), shared between the
/// views that keep it.
///
/// Several views keep the same events (an order's placement is the start of its
/// cycle time, tracked by its on-time and perfect-order rates, and by the approval
/// control), so a view set stores each kept event once, in a table beside the views
/// ([`EventTable`]), and a `Kept` encodes as its index there.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept(pub SharedEvent);

enum Table {
    Writing {
        /// What views read of kept events, and its data fields as a lookup: events
        /// are stored projected to it, so the bytes do not depend on how much of
        /// an event the live set happened to hold.
        kept: EventReads,
        data: FieldSet,
        /// The index of each event already referred to (all are alive while the
        /// set encodes, so addresses are unique).
        by_pointer: HashMap<*const EventData, u32, foldhash::fast::RandomState>,
        /// Indexes of the events collected so far at each position: views that keep
        /// different parts of an event keep different events.
        by_position: HashMap<u64, Vec<u32>, foldhash::fast::RandomState>,
        events: Vec<Arc<EventData>>,
        /// When continuing a stored table ([`EventTable::continuing`]): its events,
        /// which new ones follow (indexes from its length on) and which an event
        /// stored alike is found in instead of being added.
        stored: Option<Box<Continued>>,
    },
    Reading {
        events: Arc<StoredEvents>,
        /// Each event comes decoded only as far as its type, position and time, the
        /// rest on first use (see [`SharedEvent`]).
        lazy: bool,
        /// Each event once decoded, shared by every view of this decode that keeps
        /// it. Per decode, not per table: views decoding on other threads take
        /// copies of their own rather than contend for the same reference counts.
        decoded: Vec<Option<SharedEvent>>,
    },
}

/// A stored event table that a [`Table::Writing`] continues.
struct Continued {
    events: Arc<StoredEvents>,
    /// Indexes of its events by position, read when first needed.
    by_position: Option<HashMap<u64, Vec<u32>, foldhash::fast::RandomState>>,
    /// An event being compared with stored ones, encoded.
    scratch: Vec<u8>,
}

impl Continued {
    /// The index of a stored event encoded exactly as `event` would be.
    fn find(&mut self, event: &EventData) -> Option<u32> {
        let events = &self.events;
        let by_position = self.by_position.get_or_insert_with(|| {
            let mut by_position =
                HashMap::with_capacity_and_hasher(events.len(), foldhash::fast::RandomState::default());
            for index in 0..events.len() {
                // A stored event starts with its position; one that does not read is
                // never matched.
                let position = events
                    .stored(index)
                    .ok()
                    .and_then(|b| postcard::take_from_bytes::<u64>(b).ok());
                if let (Some((position, _)), Ok(index)) = (position, u32::try_from(index)) {
                    by_position.entry(position).or_insert_with(Vec::new).push(index);
                }
            }
            by_position
        });
        let candidates = by_position.get(&event.position)?;
        self.scratch.clear();
        self.scratch = postcard::to_extend(&StoredEventRef::from(event), std::mem::take(&mut self.scratch)).ok()?;
        candidates
            .iter()
            .copied()
            .find(|&i| events.stored(i as usize).is_ok_and(|b| b == self.scratch.as_slice()))
    }
}

thread_local! {
    static TABLE: std::cell::RefCell<Option<Table>> = const { std::cell::RefCell::new(None) };
}

/// The kept-event table of one [`crate::ViewSet`] encode or decode, in force on this
/// thread while it lives.
pub(crate) struct EventTable(());

impl EventTable {
    /// Starts collecting the events `Kept` values refer to, each projected to `kept`.
    pub(crate) fn writing(kept: &EventReads) -> EventTable {
        TABLE.with(|t| {
            *t.borrow_mut() = Some(Table::Writing {
                kept: kept.clone(),
                data: kept.data.lookup(),
                by_pointer: HashMap::default(),
                by_position: HashMap::default(),
                events: Vec::new(),
                stored: None,
            })
        });
        EventTable(())
    }

    /// [`EventTable::writing`] of events that follow those of `stored` (a stored
    /// set's table, kept as it is): an event stored there alike (the same bytes)
    /// refers to it, another one gets an index after them.
    pub(crate) fn continuing(kept: &EventReads, stored: Arc<StoredEvents>) -> EventTable {
        let table = EventTable::writing(kept);
        TABLE.with(|t| {
            if let Some(Table::Writing { stored: slot, .. }) = &mut *t.borrow_mut() {
                *slot = Some(Box::new(Continued {
                    events: stored,
                    by_position: None,
                    scratch: Vec::new(),
                }));
            }
        });
        table
    }

    /// Resolves `Kept` indexes against `events`, decoding each when first referred
    /// to (several threads may decode views of one stored set, each with a table);
    /// `lazy`: only as far as its type, position and time, the rest on first use.
    pub(crate) fn reading(events: Arc<StoredEvents>, lazy: bool) -> EventTable {
        let decoded = vec![None; events.len()];
        TABLE.with(|t| *t.borrow_mut() = Some(Table::Reading { events, lazy, decoded }));
        EventTable(())
    }

    /// The events collected while writing, in first-use order.
    pub(crate) fn finish(self) -> KeptEvents {
        TABLE.with(|t| match t.borrow_mut().take() {
            Some(Table::Writing { events, .. }) => KeptEvents(events),
            _ => KeptEvents(Vec::new()),
        })
    }
}

impl Drop for EventTable {
    fn drop(&mut self) {
        TABLE.with(|t| *t.borrow_mut() = None);
    }
}

impl Serialize for Kept {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = TABLE.with(|t| match &mut *t.borrow_mut() {
            Some(Table::Writing {
                kept,
                data,
                by_pointer,
                by_position,
                events,
                stored,
            }) => {
                let event = self.0.event();
                let pointer = Arc::as_ptr(event);
                if let Some(&index) = by_pointer.get(&pointer) {
                    return Some(index);
                }
                let projected = kept.project_with(event, data);
                let base = stored.as_ref().map_or(0, |s| s.events.len());
                let same = by_position.entry(event.position).or_default();
                let found = same
                    .iter()
                    .copied()
                    .find(|&i| events.get(i as usize - base).is_some_and(|e| **e == projected));
                let index = match found.or_else(|| stored.as_mut()?.find(&projected)) {
                    Some(index) => index,
                    None => {
                        let next = u32::try_from(base + events.len()).ok()?;
                        same.push(next);
                        events.push(Arc::new(projected));
                        next
                    }
                };
                by_pointer.insert(pointer, index);
                Some(index)
            }
            _ => None,
        });
        match index {
            Some(index) => serializer.serialize_u32(index),
            None => Err(serde::ser::Error::custom(
                "a kept event outside a view set's event table",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Kept {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(deserializer)?;
        TABLE
            .with(|t| match &mut *t.borrow_mut() {
                Some(Table::Reading { events, lazy, decoded }) => {
                    let slot = decoded
                        .get_mut(index as usize)
                        .ok_or_else(|| format!("kept event {index} is not in the event table"))?;
                    if let Some(event) = slot {
                        return Ok(event.clone());
                    }
                    let event = if *lazy {
                        events.lazy(index)?
                    } else {
                        SharedEvent::from(Arc::new(events.decode(index as usize)?))
                    };
                    *slot = Some(event.clone());
                    Ok(event)
                }
                _ => Err(format!("kept event {index} outside a view set's event table")),
            })
            .map(Kept)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_events_round_trip_exactly() {
        let data = serde_json::json!({"order_id": "O-1", "total": 12500.5, "lines": 3, "neg": -4,
            "nested": {"a": [1, 0.1, null, true]}});
        let event = EventData {
            position: 7,
            version: 2,
            stream: "order/O-1".into(),
            source: "shop".into(),
            id: "e7".into(),
            event_type: "order.placed".into(),
            time: 1_763_719_200_000_000_000,
            // As views decode data: the fields they read.
            data: Data::fields_of(data.clone()),
            metadata: BTreeMap::from([("k".into(), "v".into())]),
        };
        // Stored as the same bytes as the data held whole.
        let whole = EventData {
            data: data.into(),
            ..event.clone()
        };
        let stored_bytes = |event: &EventData| {
            let table = EventTable::writing(&EventReads::everything());
            postcard::to_stdvec(&Kept(Arc::new(event.clone()).into())).unwrap();
            postcard::to_stdvec(&table.finish()).unwrap()
        };
        assert_eq!(stored_bytes(&event), stored_bytes(&whole));
        let kept = Kept(Arc::new(event).into());
        // Kept twice: stored once, both refer to it.
        let table = EventTable::writing(&EventReads::everything());
        let bytes = postcard::to_stdvec(&(kept.clone(), kept.clone())).unwrap();
        let events = postcard::to_stdvec(&table.finish()).unwrap();
        assert!(postcard::to_stdvec(&kept).is_err(), "outside a table");
        let (stored, end) = StoredEvents::parse(events.clone(), 0).unwrap();
        assert_eq!(end, events.len());
        let stored = Arc::new(stored);
        for lazy in [false, true] {
            let table = EventTable::reading(stored.clone(), lazy);
            let (back, again): (Kept, Kept) = postcard::from_bytes(&bytes).unwrap();
            drop(table);
            assert_eq!(back.0.is_decoded(), !lazy);
            assert_eq!(
                (back.0.event_type(), back.0.position(), back.0.time()),
                ("order.placed", 7, kept.0.time())
            );
            assert_eq!(back, kept);
            assert!(back.0.is_decoded());
            assert!(Arc::ptr_eq(back.0.event(), again.0.event()), "decoded once, shared");
        }
    }

    #[test]
    fn kept_events_are_stored_as_views_read_them() {
        let wide = EventData {
            position: 3,
            stream: "order/O-1".into(),
            event_type: "order.placed".into(),
            data: Data::fields_of(serde_json::json!({"order_id": "O-1", "total": 5, "channel": "web"})),
            ..EventData::default()
        };
        let kept = EventReads {
            data: opsflow_definitions::Fields::Only(["total".to_string()].into()),
            ..EventReads::default()
        };
        let narrow = kept.project(&wide);
        assert_ne!(narrow, wide);
        // The event held whole by one view and projected by another is stored once,
        // as the views read it.
        let table = EventTable::writing(&kept);
        let bytes = postcard::to_stdvec(&(Kept(Arc::new(wide).into()), Kept(Arc::new(narrow.clone()).into()))).unwrap();
        let events = postcard::to_stdvec(&table.finish()).unwrap();
        let (stored, _) = StoredEvents::parse(events, 0).unwrap();
        assert_eq!(stored.len(), 1);
        let table = EventTable::reading(Arc::new(stored), false);
        let (first, second): (Kept, Kept) = postcard::from_bytes(&bytes).unwrap();
        drop(table);
        assert_eq!(**first.0.event(), narrow);
        assert!(Arc::ptr_eq(first.0.event(), second.0.event()));
    }
}
