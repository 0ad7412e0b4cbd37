//! Serde helpers that make view state encode compactly and deterministically with
//! postcard: JSON values and events in a non-self-describing form, hash maps as
//! sequences sorted by key.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;

use opsflow_definitions::EventData;
use serde::de::Deserializer;
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// `serde_json::Value` needs a self-describing format to deserialize; this mirror does
/// not, and keeps numbers exactly (integers as integers, floats by their bits).
#[derive(Serialize, Deserialize)]
enum StoredValue {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    String(String),
    Array(Vec<StoredValue>),
    Object(Vec<(String, StoredValue)>),
}

impl From<&serde_json::Value> for StoredValue {
    fn from(value: &serde_json::Value) -> Self {
        use serde_json::Value;
        match value {
            Value::Null => StoredValue::Null,
            Value::Bool(b) => StoredValue::Bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    StoredValue::Uint(u)
                } else if let Some(i) = n.as_i64() {
                    StoredValue::Int(i)
                } else {
                    StoredValue::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => StoredValue::String(s.clone()),
            Value::Array(items) => StoredValue::Array(items.iter().map(StoredValue::from).collect()),
            Value::Object(map) => {
                StoredValue::Object(map.iter().map(|(k, v)| (k.clone(), StoredValue::from(v))).collect())
            }
        }
    }
}

impl From<StoredValue> for serde_json::Value {
    fn from(value: StoredValue) -> Self {
        use serde_json::Value;
        match value {
            StoredValue::Null => Value::Null,
            StoredValue::Bool(b) => Value::Bool(b),
            StoredValue::Int(i) => Value::from(i),
            StoredValue::Uint(u) => Value::from(u),
            StoredValue::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            StoredValue::String(s) => Value::String(s),
            StoredValue::Array(items) => Value::Array(items.into_iter().map(Value::from).collect()),
            StoredValue::Object(entries) => Value::Object(entries.into_iter().map(|(k, v)| (k, v.into())).collect()),
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct StoredEvent {
    position: u64,
    version: u64,
    stream: String,
    source: String,
    id: String,
    event_type: String,
    time: i64,
    data: StoredValue,
    metadata: BTreeMap<String, String>,
}

impl From<&EventData> for StoredEvent {
    fn from(e: &EventData) -> Self {
        StoredEvent {
            position: e.position,
            version: e.version,
            stream: e.stream.clone(),
            source: e.source.clone(),
            id: e.id.clone(),
            event_type: e.event_type.clone(),
            time: e.time,
            data: StoredValue::from(&e.data),
            metadata: e.metadata.clone(),
        }
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
            data: e.data.into(),
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
pub struct Kept(pub Arc<EventData>);

enum Table {
    Writing {
        /// Indexes of the events collected so far at each position: views that keep
        /// different parts of an event keep different events.
        by_position: HashMap<u64, Vec<u32>>,
        events: Vec<Arc<EventData>>,
    },
    Reading(Vec<Arc<EventData>>),
}

thread_local! {
    static TABLE: std::cell::RefCell<Option<Table>> = const { std::cell::RefCell::new(None) };
}

/// The kept-event table of one [`crate::ViewSet`] encode or decode, in force on this
/// thread while it lives.
pub(crate) struct EventTable(());

impl EventTable {
    /// Starts collecting the events `Kept` values refer to.
    pub(crate) fn writing() -> EventTable {
        TABLE.with(|t| {
            *t.borrow_mut() = Some(Table::Writing {
                by_position: HashMap::new(),
                events: Vec::new(),
            })
        });
        EventTable(())
    }

    /// Resolves `Kept` indexes against `events`.
    pub(crate) fn reading(events: Vec<StoredEvent>) -> EventTable {
        let events = events.into_iter().map(|e| Arc::new(EventData::from(e))).collect();
        TABLE.with(|t| *t.borrow_mut() = Some(Table::Reading(events)));
        EventTable(())
    }

    /// The events collected while writing, in first-use order.
    pub(crate) fn finish(self) -> Vec<StoredEvent> {
        TABLE.with(|t| match t.borrow_mut().take() {
            Some(Table::Writing { events, .. }) => events.iter().map(|e| StoredEvent::from(&**e)).collect(),
            _ => Vec::new(),
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
            Some(Table::Writing { by_position, events }) => {
                let same = by_position.entry(self.0.position).or_default();
                let found = same.iter().copied().find(|&i| {
                    events
                        .get(i as usize)
                        .is_some_and(|e| Arc::ptr_eq(e, &self.0) || **e == *self.0)
                });
                match found {
                    Some(index) => Some(index),
                    None => {
                        let next = u32::try_from(events.len()).ok()?;
                        same.push(next);
                        events.push(self.0.clone());
                        Some(next)
                    }
                }
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
            .with(|t| match &*t.borrow() {
                Some(Table::Reading(events)) => events.get(index as usize).cloned(),
                _ => None,
            })
            .map(Kept)
            .ok_or_else(|| serde::de::Error::custom(format!("kept event {index} is not in the event table")))
    }
}

/// `#[serde(with = "sorted_map")]` for a `HashMap`: encoded as pairs sorted by key, so
/// the bytes do not depend on the hasher.
pub mod sorted_map {
    use super::*;

    pub fn serialize<K, V, S>(map: &HashMap<K, V>, serializer: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize + Ord,
        V: Serialize,
        S: Serializer,
    {
        let mut entries: Vec<(&K, &V)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        serializer.collect_seq(entries)
    }

    pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<HashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let entries: Vec<(K, V)> = Vec::deserialize(deserializer)?;
        Ok(entries.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_events_round_trip_exactly() {
        let event = EventData {
            position: 7,
            version: 2,
            stream: "order/O-1".into(),
            source: "shop".into(),
            id: "e7".into(),
            event_type: "order.placed".into(),
            time: 1_763_719_200_000_000_000,
            data: serde_json::json!({"order_id": "O-1", "total": 12500.5, "lines": 3, "neg": -4,
                "nested": {"a": [1, 0.1, null, true]}}),
            metadata: BTreeMap::from([("k".into(), "v".into())]),
        };
        let kept = Kept(Arc::new(event));
        // Kept twice: stored once, both refer to it.
        let table = EventTable::writing();
        let bytes = postcard::to_stdvec(&(kept.clone(), kept.clone())).unwrap();
        let events = postcard::to_stdvec(&table.finish()).unwrap();
        assert!(postcard::to_stdvec(&kept).is_err(), "outside a table");
        let table = EventTable::reading(postcard::from_bytes(&events).unwrap());
        let (back, again): (Kept, Kept) = postcard::from_bytes(&bytes).unwrap();
        drop(table);
        assert_eq!(back, kept);
        assert!(Arc::ptr_eq(&back.0, &again.0), "decoded once, shared");
    }
}
