//! What a parsed CloudEvent becomes: an event for one stream of the log.

use opsflow_log::{ExpectedVersion, ProposedEvent, StreamAppend};

/// One incoming CloudEvent mapped to the log: the target stream, an optional
/// expected version, the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// From `subject`, or derived from the data (see the crate docs' stream rule).
    pub stream: String,
    /// From the `expectedversion` extension; `None` when it is absent.
    pub expected: Option<ExpectedVersion>,
    pub event: ProposedEvent,
}

impl From<Incoming> for StreamAppend {
    /// A single-event append; no `expectedversion` means [`ExpectedVersion::Any`].
    fn from(incoming: Incoming) -> Self {
        StreamAppend {
            stream: incoming.stream,
            expected: incoming.expected.unwrap_or_default(),
            events: vec![incoming.event],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_to_a_single_event_append() {
        let event = ProposedEvent::json("order.placed", "{}").with_identity("shop", "1");
        let append = StreamAppend::from(Incoming {
            stream: "order/1".into(),
            expected: None,
            event: event.clone(),
        });
        assert_eq!(append.expected, ExpectedVersion::Any);
        assert_eq!(append.events, vec![event]);
        assert_eq!(append.stream, "order/1");
    }
}
