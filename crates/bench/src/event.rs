//! The events the benchmarks append: 300 bytes of JSON each, with a unique
//! `(source, id)`.

use bytes::Bytes;
use opsflow_log::ProposedEvent;
use opsflow_proto::v1;

/// Size of every event's data, in bytes.
pub const DATA_BYTES: usize = 300;
/// Type of every benchmark event.
pub const EVENT_TYPE: &str = "bench.order_placed";
/// Content type of every benchmark event.
pub const JSON: &str = "application/json";

/// A JSON object of exactly [`DATA_BYTES`] bytes that mentions `seq`.
pub fn json_data(seq: u64) -> Bytes {
    let head = format!(
        r#"{{"order_id":"PO-{seq:010}","customer":"cust-{:04}","amount_cents":{},"currency":"EUR","note":""#,
        seq % 9973,
        1000 + seq % 100_000,
    );
    let tail = "\"}";
    let padding = DATA_BYTES.saturating_sub(head.len() + tail.len());
    let mut json = String::with_capacity(DATA_BYTES);
    json.push_str(&head);
    json.extend(std::iter::repeat_n('x', padding));
    json.push_str(tail);
    debug_assert_eq!(json.len(), DATA_BYTES, "{json}");
    Bytes::from(json)
}

/// A library event with the given identity.
pub fn proposed(source: &str, id: String, seq: u64) -> ProposedEvent {
    ProposedEvent::json(EVENT_TYPE, json_data(seq)).with_identity(source, id)
}

/// A gRPC event with the given identity.
pub fn proto(source: &str, id: String, seq: u64) -> v1::ProposedEvent {
    v1::ProposedEvent {
        id,
        source: source.to_owned(),
        r#type: EVENT_TYPE.to_owned(),
        content_type: JSON.to_owned(),
        data: json_data(seq),
        ..Default::default()
    }
}
