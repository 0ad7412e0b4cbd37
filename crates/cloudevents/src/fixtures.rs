//! Test fixtures shared by the crate's unit tests.

use std::collections::BTreeMap;

use bytes::Bytes;
use opsflow_log::RecordedEvent;

/// A recorded `order.placed` event at position 42 of `order/PO-1` with JSON `data`.
pub(crate) fn recorded_order(data: &'static [u8]) -> RecordedEvent {
    RecordedEvent {
        position: 42,
        stream: "order/PO-1".into(),
        version: 3,
        id: "e-1".into(),
        source: "/shop".into(),
        event_type: "order.placed".into(),
        time: 1_714_557_600_500_000_000,
        recorded_at: 1_714_557_601_000_000_000,
        content_type: "application/json".into(),
        data: Bytes::from_static(data),
        correlation_id: String::new(),
        causation_id: String::new(),
        metadata: BTreeMap::new(),
        prev_hash: [0; 32],
        hash: [0xab; 32],
    }
}
