//! No input makes the parsers panic: arbitrary bytes, every truncation of a valid
//! document (JSON or protobuf), and arbitrary header names and values.

use bytes::Bytes;
use opsflow_cloudevents::{
    parse_any, parse_batch, parse_binary, parse_one, parse_protobuf, parse_protobuf_batch, parse_structured,
};
use opsflow_proto::cloudevents::cloud_event::cloud_event_attribute_value::Attr;
use opsflow_proto::cloudevents::cloud_event::{CloudEventAttributeValue, Data};
use opsflow_proto::cloudevents::{CloudEvent, CloudEventBatch};
use proptest::prelude::*;
use prost::Message;

const VALID: &str = r#"{"specversion":"1.0","id":"e-1","source":"/shop","type":"order.placed",
"time":"2024-05-01T10:00:00Z","correlationid":"c","expectedversion":"2","tenant":"acme",
"data":{"order_id":"PO-1","lines":[{"sku":"é","qty":2}],"note":"a \"quoted\" \\ text"}}"#;

#[test]
fn every_truncation_of_a_valid_document_is_handled() {
    assert!(parse_structured(VALID.as_bytes()).is_ok());
    let batch = format!("[{VALID},{VALID}]");
    assert_eq!(parse_batch(batch.as_bytes()).map(|b| b.len()).ok(), Some(2));
    for end in 0..batch.len() {
        let _ = parse_structured(&VALID.as_bytes()[..end.min(VALID.len())]);
        let _ = parse_batch(&batch.as_bytes()[..end]);
    }
}

/// A valid protobuf-format event with every kind of attribute value.
fn valid_protobuf() -> Vec<u8> {
    let attributes = [
        ("subject", Attr::CeString("order/PO-1".into())),
        (
            "time",
            Attr::CeTimestamp(prost_types::Timestamp {
                seconds: 1_714_557_600,
                nanos: 5,
            }),
        ),
        ("datacontenttype", Attr::CeString("application/json".into())),
        ("expectedversion", Attr::CeInteger(2)),
        ("urgent", Attr::CeBoolean(true)),
        ("blob", Attr::CeBytes(vec![0, 255])),
        ("link", Attr::CeUri("https://example.com".into())),
        ("ref", Attr::CeUriRef("/a".into())),
    ];
    CloudEvent {
        id: "e-1".into(),
        source: "/shop".into(),
        spec_version: "1.0".into(),
        r#type: "order.placed".into(),
        attributes: attributes
            .into_iter()
            .map(|(name, attr)| (name.to_owned(), CloudEventAttributeValue { attr: Some(attr) }))
            .collect(),
        data: Some(Data::TextData(r#"{"order_id":"PO-1","note":"é"}"#.into())),
    }
    .encode_to_vec()
}

#[test]
fn every_truncation_of_a_valid_protobuf_event_is_handled() {
    let event = valid_protobuf();
    assert!(parse_protobuf(&event).is_ok());
    let batch = CloudEventBatch {
        events: vec![CloudEvent::decode(&event[..]).expect("valid"); 2],
    }
    .encode_to_vec();
    assert_eq!(parse_protobuf_batch(&batch).map(|b| b.len()).ok(), Some(2));
    for end in 0..batch.len() {
        let _ = parse_protobuf(&event[..end.min(event.len())]);
        let _ = parse_protobuf_batch(&batch[..end]);
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_structured(&body);
        let _ = parse_batch(&body);
        let _ = parse_protobuf(&body);
        let _ = parse_protobuf_batch(&body);
    }

    #[test]
    fn mutated_valid_protobuf_events(seed in any::<usize>(), byte in any::<u8>()) {
        let mut event = valid_protobuf();
        let position = seed % event.len();
        event[position] = byte;
        let _ = parse_protobuf(&event);
        let _ = parse_protobuf_batch(&[&[0x0a, u8::try_from(event.len()).unwrap_or(0)][..], &event].concat());
    }

    #[test]
    fn arbitrary_content_types_and_bodies(
        content_type in proptest::option::of("(?i)(application/cloudevents(-batch)?\\+(json|protobuf))?.{0,12}"),
        with_specversion in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let headers: Vec<(&str, &[u8])> = if with_specversion { vec![("Ce-Specversion", b"1.0")] } else { Vec::new() };
        let _ = parse_any(content_type.as_deref(), headers.clone(), Bytes::from(body.clone()));
        let _ = parse_one(content_type.as_deref(), headers, Bytes::from(body));
    }

    #[test]
    fn mutated_valid_documents(position in 0..VALID.len(), byte in any::<u8>()) {
        let mut body = VALID.as_bytes().to_vec();
        body[position] = byte;
        let _ = parse_structured(&body);
        let batch = [&b"["[..], &body, b"]"].concat();
        let _ = parse_batch(&batch);
    }

    #[test]
    fn arbitrary_headers(
        headers in proptest::collection::vec(("(?i)ce-[a-z0-9_é]{0,12}", proptest::collection::vec(any::<u8>(), 0..40)), 0..8),
        content_type in proptest::option::of(".{0,30}"),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let pairs = headers.iter().map(|(name, value)| (name.as_str(), value.as_slice()));
        let _ = parse_binary(pairs, content_type.as_deref(), Bytes::from(body));
    }

    #[test]
    fn arbitrary_header_values_with_required_attributes(value in "[ -~%\"\\\\]{0,40}") {
        let headers: Vec<(&str, &[u8])> = vec![
            ("ce-specversion", b"1.0"),
            ("ce-id", value.as_bytes()),
            ("ce-source", value.as_bytes()),
            ("ce-type", value.as_bytes()),
            ("ce-subject", value.as_bytes()),
            ("ce-time", value.as_bytes()),
            ("ce-expectedversion", value.as_bytes()),
        ];
        let _ = parse_binary(headers, Some("application/json"), Bytes::from(value.clone()));
    }
}
