//! Events kept in view state (a key's tracked events, a duration's start), shared by
//! the views that keep them: decoded already, or still in stored view state and
//! decoded when first used.
//!
//! A query as of a past moment opens a snapshot holding many kept events, and of
//! those only the keys the replay touches are read again; so a stored kept event
//! comes with its type, position and time (what lookups and evidence need) and the
//! rest of it is decoded on first use.

use std::fmt;
use std::sync::{Arc, OnceLock};

use super::EventData;

/// Where stored kept events are decoded from.
pub trait EventSource: Send + Sync {
    /// Event `index` of this source, decoded; `None` when it does not decode (the
    /// source records and logs why; the event is then its type, position and time
    /// only).
    fn load(&self, index: u32) -> Option<EventData>;
}

/// A stored kept event: what is at hand, and where the rest is.
pub struct LazyEvent {
    event_type: String,
    position: u64,
    time: i64,
    source: Arc<dyn EventSource>,
    index: u32,
    event: OnceLock<Arc<EventData>>,
}

impl LazyEvent {
    pub fn new(event_type: String, position: u64, time: i64, source: Arc<dyn EventSource>, index: u32) -> LazyEvent {
        LazyEvent {
            event_type,
            position,
            time,
            source,
            index,
            event: OnceLock::new(),
        }
    }

    fn event(&self) -> &Arc<EventData> {
        self.event.get_or_init(|| {
            Arc::new(self.source.load(self.index).unwrap_or_else(|| EventData {
                position: self.position,
                time: self.time,
                event_type: self.event_type.clone(),
                ..EventData::default()
            }))
        })
    }
}

/// An event kept in view state.
#[derive(Clone)]
pub enum SharedEvent {
    Decoded(Arc<EventData>),
    Stored(Arc<LazyEvent>),
}

impl SharedEvent {
    pub fn event_type(&self) -> &str {
        match self {
            SharedEvent::Decoded(e) => &e.event_type,
            SharedEvent::Stored(e) => &e.event_type,
        }
    }

    pub fn position(&self) -> u64 {
        match self {
            SharedEvent::Decoded(e) => e.position,
            SharedEvent::Stored(e) => e.position,
        }
    }

    pub fn time(&self) -> i64 {
        match self {
            SharedEvent::Decoded(e) => e.time,
            SharedEvent::Stored(e) => e.time,
        }
    }

    /// The whole event (a stored one is decoded on first use, once).
    pub fn event(&self) -> &Arc<EventData> {
        match self {
            SharedEvent::Decoded(e) => e,
            SharedEvent::Stored(e) => e.event(),
        }
    }

    /// Decoded already (never decodes).
    pub fn is_decoded(&self) -> bool {
        match self {
            SharedEvent::Decoded(_) => true,
            SharedEvent::Stored(e) => e.event.get().is_some(),
        }
    }
}

impl From<Arc<EventData>> for SharedEvent {
    fn from(event: Arc<EventData>) -> Self {
        SharedEvent::Decoded(event)
    }
}

/// Equal when the events are (a stored one is decoded to compare).
impl PartialEq for SharedEvent {
    fn eq(&self, other: &Self) -> bool {
        self.event() == other.event()
    }
}

impl fmt::Debug for SharedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.event().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counting {
        loads: AtomicUsize,
        broken: bool,
    }

    impl EventSource for Counting {
        fn load(&self, index: u32) -> Option<EventData> {
            self.loads.fetch_add(1, Ordering::Relaxed);
            (!self.broken).then(|| EventData {
                position: u64::from(index),
                event_type: "order.placed".into(),
                time: 7,
                id: "o-1".into(),
                data: serde_json::json!({"total": 12}).into(),
                ..EventData::default()
            })
        }
    }

    fn stored(broken: bool) -> (Arc<Counting>, SharedEvent) {
        let source = Arc::new(Counting {
            loads: AtomicUsize::new(0),
            broken,
        });
        let lazy = LazyEvent::new("order.placed".into(), 3, 7, source.clone(), 3);
        (source, SharedEvent::Stored(Arc::new(lazy)))
    }

    #[test]
    fn a_stored_event_decodes_once_and_only_when_its_body_is_used() {
        let (source, event) = stored(false);
        assert_eq!(
            (event.event_type(), event.position(), event.time()),
            ("order.placed", 3, 7)
        );
        assert!(!event.is_decoded());
        assert_eq!(source.loads.load(Ordering::Relaxed), 0);
        assert_eq!(event.event().data["total"], 12);
        assert_eq!(event.event().id, "o-1");
        assert!(event.is_decoded());
        assert_eq!(source.loads.load(Ordering::Relaxed), 1);
        // Equal to the same event decoded.
        assert_eq!(event, SharedEvent::from(event.event().clone()));
    }

    #[test]
    fn a_stored_event_that_does_not_decode_is_its_type_position_and_time() {
        let (_, event) = stored(true);
        let e = event.event();
        assert_eq!((e.event_type.as_str(), e.position, e.time), ("order.placed", 3, 7));
        assert_eq!(e.data, serde_json::Value::Null);
    }
}
