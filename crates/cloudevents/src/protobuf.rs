//! The protobuf event format: one event (`application/cloudevents+protobuf`), a
//! batch (`application/cloudevents-batch+protobuf`), and recorded events out.
//!
//! Decoding maps each typed attribute value to the form the JSON format gives it
//! (a timestamp as RFC 3339 text, bytes as base64 text, an integer as a number)
//! and then checks the event with the same code as the JSON and binary bindings,
//! so every rule and every error message is the same in all three.

use std::collections::HashMap;

use base64::Engine;
use bytes::Bytes;
use opsflow_log::{RecordedEvent, UnixNanos};
use opsflow_proto::cloudevents::cloud_event::cloud_event_attribute_value::Attr;
use opsflow_proto::cloudevents::cloud_event::{CloudEventAttributeValue, Data};
use opsflow_proto::cloudevents::{CloudEvent, CloudEventBatch};
use prost::Message;

use crate::Incoming;
use crate::attributes::{AttributeValue, Attributes, Payload, is_attribute_name};
use crate::error::{CloudEventError, Result};
use crate::media;
use crate::output::{RESERVED, effective_content_type};

/// Attributes that are fields of `CloudEvent` (the required ones, and the data),
/// so never entries of its `attributes` map: (attribute, field).
const FIELDS: &[(&str, &str)] = &[
    ("specversion", "spec_version"),
    ("id", "id"),
    ("source", "source"),
    ("type", "type"),
    ("data", "data"),
];

/// Parses one CloudEvent in the protobuf format (`application/cloudevents+protobuf`).
///
/// Bytes that do not decode as a `CloudEvent` message are
/// [`CloudEventError::Protobuf`]; the event is then checked like a JSON one.
pub fn parse_protobuf(body: &[u8]) -> Result<Incoming> {
    event_from_message(CloudEvent::decode(body)?)
}

/// Parses a protobuf batch (`application/cloudevents-batch+protobuf`): a
/// `CloudEventBatch` message. No events gives an empty vector; the first invalid
/// event fails the whole batch with its index ([`CloudEventError::InBatch`]).
pub fn parse_protobuf_batch(body: &[u8]) -> Result<Vec<Incoming>> {
    let CloudEventBatch { events } = CloudEventBatch::decode(body)?;
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| event_from_message(event).map_err(|error| error.in_batch(index)))
        .collect()
}

fn event_from_message(event: CloudEvent) -> Result<Incoming> {
    let CloudEvent {
        id,
        source,
        spec_version,
        r#type,
        attributes: entries,
        data,
    } = event;
    let mut attributes = Attributes::default();
    // Proto3 strings cannot be absent: an empty required field is a missing attribute.
    let event_type = r#type.clone();
    for (name, value) in [
        ("specversion", spec_version),
        ("id", id),
        ("source", source),
        ("type", r#type),
    ] {
        if !value.is_empty() {
            attributes.insert(name, AttributeValue::String(value.into()))?;
        }
    }
    // The map arrives in no particular order; sorting makes the first error reported stable.
    let mut entries: Vec<(String, CloudEventAttributeValue)> = entries.into_iter().collect();
    entries.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
    for (name, value) in entries {
        if let Some((_, field)) = FIELDS.iter().find(|(attribute, _)| *attribute == name) {
            return Err(CloudEventError::NotAllowed {
                reason: format!(
                    "in the protobuf format it is the `{field}` field of CloudEvent, not an entry of `attributes`"
                ),
                attribute: name,
            });
        }
        if let Some(value) = attribute_value(&name, value)? {
            attributes.insert(name, value)?;
        }
    }
    let payload = match data {
        None => Payload::Absent,
        Some(Data::BinaryData(data)) => Payload::Binary(Bytes::from(data)),
        Some(Data::TextData(text)) => Payload::Text(text),
        Some(Data::ProtoData(any)) => {
            check_packed(&event_type, &any.type_url)?;
            // The type URL names the message: the `dataschema` the spec asks producers to set.
            if !any.type_url.is_empty() && !attributes.contains("dataschema") {
                attributes.insert("dataschema", AttributeValue::String(any.type_url.into()))?;
            }
            Payload::Protobuf(Bytes::from(any.value))
        }
    };
    attributes.into_incoming(payload)
}

/// For a catalog type, the message packed in `proto_data` (the last segment of
/// its type URL) must be the type's: the bytes would otherwise be read as another
/// message (an `OrderShipped` packed for `order.approved` read as an approval by
/// its carrier).
fn check_packed(event_type: &str, type_url: &str) -> Result<()> {
    let Some(spec) = opsflow_catalog::spec_of(event_type) else {
        return Ok(());
    };
    let packed = type_url.rsplit('/').next().unwrap_or_default();
    let expected = spec.full_message_name();
    if type_url.is_empty() || packed == expected {
        return Ok(());
    }
    let named = !packed.is_empty()
        && packed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    let reason = if named {
        format!("it packs {packed}, but events of type {event_type} carry {expected}")
    } else {
        format!(
            "its type URL does not end in a message name (as in type.googleapis.com/{expected}, what events of type \
             {event_type} carry)"
        )
    };
    Err(CloudEventError::invalid("proto_data", type_url, reason))
}

/// A typed attribute value in the form the JSON format carries it; `None` when no
/// value is set, which means absent (like JSON `null`).
fn attribute_value(name: &str, value: CloudEventAttributeValue) -> Result<Option<AttributeValue<'static>>> {
    let Some(attr) = value.attr else {
        return Ok(None);
    };
    Ok(Some(match attr {
        Attr::CeBoolean(flag) => AttributeValue::Boolean(flag),
        Attr::CeInteger(number) => AttributeValue::Number(number.to_string().into()),
        Attr::CeString(text) | Attr::CeUri(text) | Attr::CeUriRef(text) => AttributeValue::String(text.into()),
        Attr::CeBytes(bytes) => AttributeValue::String(base64::engine::general_purpose::STANDARD.encode(bytes).into()),
        Attr::CeTimestamp(timestamp) => {
            AttributeValue::String(timestamp_text(name, timestamp.seconds, timestamp.nanos)?.into())
        }
    }))
}

/// A protobuf `Timestamp` as RFC 3339 text in UTC.
fn timestamp_text(name: &str, seconds: i64, nanos: i32) -> Result<String> {
    let invalid = |reason: &str| CloudEventError::invalid(name, &format!("seconds {seconds}, nanos {nanos}"), reason);
    if !(0..1_000_000_000).contains(&nanos) {
        return Err(invalid("not a protobuf Timestamp: nanos must be 0 to 999999999"));
    }
    jiff::Timestamp::new(seconds, nanos)
        .map(|timestamp| timestamp.to_string())
        .map_err(|_| invalid("outside the years -9999 to 9999"))
}

/// A recorded event as a CloudEvent in the protobuf format (outbound publishing).
///
/// `spec_version` 1.0, `id`, `source`, `type`; attributes `subject` (the stream),
/// `time` and `recordedat` (timestamps), `position` and `streamversion` (strings:
/// CloudEvents integers are 32-bit), `datacontenttype` (when known),
/// `correlationid` and `causationid` (when not empty), and every metadata entry
/// whose name is a valid attribute name not already used, as a string
/// (`dataschema` as a URI). The data is `text_data` when the content type is JSON
/// or text and the bytes are UTF-8, else `binary_data`; no data leaves the oneof
/// unset. [`parse_protobuf`] gives back the same stream, identity, time, ids and
/// data, byte for byte.
pub fn recorded_to_protobuf(event: &RecordedEvent) -> CloudEvent {
    let mut attributes = HashMap::new();
    let mut set = |name: &str, attr: Attr| {
        attributes.insert(name.to_owned(), CloudEventAttributeValue { attr: Some(attr) });
    };
    set("subject", Attr::CeString(event.stream.clone()));
    set("time", Attr::CeTimestamp(timestamp(event.time)));
    set("recordedat", Attr::CeTimestamp(timestamp(event.recorded_at)));
    set("position", Attr::CeString(event.position.to_string()));
    set("streamversion", Attr::CeString(event.version.to_string()));
    let content_type = effective_content_type(event);
    for (name, value) in [
        ("datacontenttype", content_type),
        ("correlationid", &event.correlation_id),
        ("causationid", &event.causation_id),
    ] {
        if !value.is_empty() {
            set(name, Attr::CeString(value.to_owned()));
        }
    }
    for (name, value) in &event.metadata {
        if is_attribute_name(name) && !RESERVED.contains(&name.as_str()) {
            let attr = if name == "dataschema" {
                Attr::CeUri(value.clone())
            } else {
                Attr::CeString(value.clone())
            };
            set(name, attr);
        }
    }
    let textual = media::is_json(content_type) || media::is_text(content_type);
    let data = if event.data.is_empty() {
        None
    } else {
        match std::str::from_utf8(&event.data).ok().filter(|_| textual) {
            Some(text) => Some(Data::TextData(text.to_owned())),
            None => Some(Data::BinaryData(event.data.to_vec())),
        }
    };
    CloudEvent {
        id: event.id.clone(),
        source: event.source.clone(),
        spec_version: "1.0".to_owned(),
        r#type: event.event_type.clone(),
        attributes,
        data,
    }
}

/// Nanoseconds since the epoch as a protobuf `Timestamp` (nanos always 0 to 999999999).
fn timestamp(nanos: UnixNanos) -> prost_types::Timestamp {
    const NANOS_PER_SECOND: i64 = 1_000_000_000;
    let subsecond = nanos.rem_euclid(NANOS_PER_SECOND);
    debug_assert!((0..NANOS_PER_SECOND).contains(&subsecond));
    prost_types::Timestamp {
        seconds: nanos.div_euclid(NANOS_PER_SECOND),
        nanos: i32::try_from(subsecond).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use opsflow_log::ExpectedVersion;

    use super::*;

    fn value(attr: Attr) -> CloudEventAttributeValue {
        CloudEventAttributeValue { attr: Some(attr) }
    }

    fn string(text: &str) -> Attr {
        Attr::CeString(text.to_owned())
    }

    fn valid() -> CloudEvent {
        CloudEvent {
            id: "e-1".into(),
            source: "/shop".into(),
            spec_version: "1.0".into(),
            r#type: "order.placed".into(),
            attributes: HashMap::from([("subject".to_owned(), value(string("order/PO-1")))]),
            data: Some(Data::TextData(r#"{"order_id": "PO-1"}"#.into())),
        }
    }

    /// `valid()` with the attribute entries `entries` added (or replaced).
    fn with(entries: impl IntoIterator<Item = (&'static str, Attr)>) -> CloudEvent {
        let mut event = valid();
        for (name, attr) in entries {
            event.attributes.insert(name.to_owned(), value(attr));
        }
        event
    }

    fn parse(event: &CloudEvent) -> Result<Incoming> {
        parse_protobuf(&event.encode_to_vec())
    }

    fn data(event: CloudEvent, data: Data) -> CloudEvent {
        CloudEvent {
            data: Some(data),
            ..event
        }
    }

    fn proto_data(type_url: &str, value: &[u8]) -> Data {
        Data::ProtoData(prost_types::Any {
            type_url: type_url.to_owned(),
            value: value.to_vec(),
        })
    }

    /// A catalog type's data packed as another message is refused, naming both: an
    /// `OrderShipped` packed for `order.approved` was recorded and read as an
    /// approval by the carrier.
    #[test]
    fn proto_data_packing_another_message_than_the_types_is_refused() {
        let shipped = opsflow_proto::v1::OrderShipped {
            order_id: "PB-5".into(),
            carrier: "DHL".into(),
            ..Default::default()
        };
        let event = |event_type: &str, type_url: &str| CloudEvent {
            r#type: event_type.into(),
            ..data(valid(), proto_data(type_url, &shipped.encode_to_vec()))
        };
        let err = parse(&event("order.approved", "type.googleapis.com/opsflow.v1.OrderShipped"))
            .expect_err("another message");
        assert_eq!(err.attribute(), Some("proto_data"), "{err}");
        assert!(
            err.to_string().ends_with(
                "it packs opsflow.v1.OrderShipped, but events of type order.approved carry opsflow.v1.OrderApproved"
            ),
            "{err}"
        );
        parse(&event("order.shipped", "type.googleapis.com/opsflow.v1.OrderShipped")).expect("its own message");
        for odd in [
            "type.googleapis.com/opsflow.v1.OrderShipped/",
            "x/opsflow.v1.OrderShipped?v=1",
        ] {
            let err = parse(&event("order.shipped", odd)).expect_err(odd);
            assert!(
                err.to_string().ends_with(
                    "its type URL does not end in a message name (as in type.googleapis.com/opsflow.v1.OrderShipped, \
                     what events of type order.shipped carry)"
                ),
                "{err}"
            );
        }
        parse(&event("custom.x", "type.googleapis.com/opsflow.v1.OrderShipped")).expect("not a catalog type");
    }

    #[test]
    fn maps_fields_and_attributes_to_the_proposed_event() {
        let incoming = parse(&with([
            (
                "time",
                Attr::CeTimestamp(prost_types::Timestamp {
                    seconds: 1_714_557_600,
                    nanos: 500_000_000,
                }),
            ),
            ("datacontenttype", string("application/json")),
            ("correlationid", string("corr-1")),
            ("causationid", string("cause-1")),
            ("expectedversion", Attr::CeInteger(4)),
            ("tenant", string("acme")),
            ("priority", Attr::CeInteger(-3)),
            ("urgent", Attr::CeBoolean(true)),
            ("blob", Attr::CeBytes(vec![0, 1, 255])),
            ("dataschema", Attr::CeUri("https://example.com/s.json".into())),
            ("origin", Attr::CeUriRef("/orders/1".into())),
            (
                "dueat",
                Attr::CeTimestamp(prost_types::Timestamp { seconds: 0, nanos: 1 }),
            ),
        ]))
        .expect("valid event");
        assert_eq!(incoming.stream, "order/PO-1");
        assert_eq!(incoming.expected, Some(ExpectedVersion::Exact(4)));
        let event = incoming.event;
        assert_eq!(
            (event.id.as_str(), event.source.as_str(), event.event_type.as_str()),
            ("e-1", "/shop", "order.placed")
        );
        assert_eq!(event.time, Some(1_714_557_600_500_000_000));
        assert_eq!(event.content_type, "application/json");
        assert_eq!(
            &event.data[..],
            br#"{"order_id": "PO-1"}"#,
            "text data is stored as sent"
        );
        assert_eq!(
            (event.correlation_id.as_str(), event.causation_id.as_str()),
            ("corr-1", "cause-1")
        );
        let metadata: Vec<(&str, &str)> = event.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            metadata,
            [
                ("blob", "AAH/"),
                ("dataschema", "https://example.com/s.json"),
                ("dueat", "1970-01-01T00:00:00.000000001Z"),
                ("origin", "/orders/1"),
                ("priority", "-3"),
                ("tenant", "acme"),
                ("urgent", "true")
            ]
        );
    }

    #[test]
    fn time_may_be_a_timestamp_or_rfc3339_text() {
        let incoming = parse(&with([("time", string("2024-05-01T12:00:00.5+02:00"))])).expect("valid");
        assert_eq!(incoming.event.time, Some(1_714_557_600_500_000_000));
        let before_epoch = prost_types::Timestamp {
            seconds: -1,
            nanos: 999_999_999,
        };
        let incoming = parse(&with([("time", Attr::CeTimestamp(before_epoch))])).expect("valid");
        assert_eq!(incoming.event.time, Some(-1));
        let err = parse(&with([("time", string("yesterday"))])).expect_err("not RFC 3339");
        assert_eq!(err.attribute(), Some("time"), "{err}");
        let err = parse(&with([("time", Attr::CeInteger(5))])).expect_err("an integer");
        assert_eq!(err.to_string(), "attribute `time` must be a string, found a number");
    }

    #[test]
    fn invalid_timestamps_are_refused_naming_the_attribute() {
        for (seconds, nanos, reason) in [
            (0, -1, "nanos must be 0 to 999999999"),
            (0, 1_000_000_000, "nanos must be 0 to 999999999"),
            (i64::MAX, 0, "outside the years -9999 to 9999"),
            (10_413_792_000, 0, "1677 to 2262"),
        ] {
            let timestamp = Attr::CeTimestamp(prost_types::Timestamp { seconds, nanos });
            let err = parse(&with([("time", timestamp)])).expect_err(reason);
            assert_eq!(err.attribute(), Some("time"), "{err}");
            assert!(err.to_string().contains(reason), "{err}");
        }
        let timestamp = Attr::CeTimestamp(prost_types::Timestamp { seconds: 0, nanos: -5 });
        let err = parse(&with([("dueat", timestamp)])).expect_err("bad extension timestamp");
        assert_eq!(
            err.to_string(),
            "attribute `dueat` has an invalid value \"seconds 0, nanos -5\": \
             not a protobuf Timestamp: nanos must be 0 to 999999999"
        );
    }

    #[test]
    fn missing_required_field_is_named() {
        for attribute in ["specversion", "id", "source", "type"] {
            let mut event = valid();
            match attribute {
                "specversion" => event.spec_version.clear(),
                "id" => event.id.clear(),
                "source" => event.source.clear(),
                _ => event.r#type.clear(),
            }
            let err = parse(&event).expect_err(attribute);
            assert_eq!(err.to_string(), format!("missing required attribute `{attribute}`"));
            assert_eq!(err.attribute(), Some(attribute));
        }
    }

    #[test]
    fn wrong_spec_version_names_expected_and_actual() {
        let event = CloudEvent {
            spec_version: "0.3".into(),
            ..valid()
        };
        let err = parse(&event).expect_err("0.3");
        assert_eq!(
            err.to_string(),
            r#"unsupported `specversion`: expected "1.0", found "0.3""#
        );
        assert_eq!(err.attribute(), Some("specversion"));
    }

    #[test]
    fn fields_are_not_allowed_as_map_entries() {
        for attribute in ["specversion", "id", "source", "type", "data"] {
            let err = parse(&with([(attribute, string("x"))])).expect_err(attribute);
            assert!(matches!(err, CloudEventError::NotAllowed { .. }), "{err}");
            assert_eq!(err.attribute(), Some(attribute));
        }
        let err = parse(&with([("specversion", string("1.0"))])).expect_err("field as entry");
        assert_eq!(
            err.to_string(),
            "attribute `specversion` is not allowed here: in the protobuf format it is the `spec_version` \
             field of CloudEvent, not an entry of `attributes`"
        );
    }

    #[test]
    fn attribute_rules_are_the_json_rules() {
        let err = parse(&with([("my_ext", string("x"))])).expect_err("underscore");
        assert!(matches!(err, CloudEventError::InvalidAttributeName { .. }), "{err}");
        let err = parse(&with([("subject", string(""))])).expect_err("empty subject");
        assert_eq!(err.to_string(), "attribute `subject` must not be empty");
        let err = parse(&with([("subject", Attr::CeBoolean(true))])).expect_err("boolean subject");
        assert_eq!(err.to_string(), "attribute `subject` must be a string, found a boolean");
        let err = parse(&with([("expectedversion", Attr::CeInteger(-1))])).expect_err("negative");
        assert_eq!(err.attribute(), Some("expectedversion"));
        let incoming = parse(&with([("expectedversion", string("no_stream"))])).expect("valid");
        assert_eq!(incoming.expected, Some(ExpectedVersion::NoStream));
        // The first error in attribute-name order is reported, whatever the map order.
        let err = parse(&with([("zz_bad", string("x")), ("a_bad", string("x"))])).expect_err("two bad names");
        assert_eq!(err.attribute(), Some("a_bad"));
    }

    #[test]
    fn entry_without_a_value_is_absent() {
        let mut event = with([("datacontenttype", string("application/json"))]);
        event
            .attributes
            .insert("tenant".into(), CloudEventAttributeValue { attr: None });
        event
            .attributes
            .insert("subject".into(), CloudEventAttributeValue { attr: None });
        let incoming = parse(&event).expect("valid");
        assert!(incoming.event.metadata.is_empty(), "{:?}", incoming.event.metadata);
        assert_eq!(
            incoming.stream, "order/PO-1",
            "no subject: the stream comes from the data"
        );
    }

    #[test]
    fn garbage_bytes_are_a_decode_error() {
        for garbage in [&b"\xff\xff\xff\xff"[..], b"\x0a\x05ab", b"\x08", b"\x0a\x02\xc3\x28"] {
            let err = parse_protobuf(garbage).expect_err("garbage");
            assert!(matches!(err, CloudEventError::Protobuf(_)), "{garbage:?}: {err}");
            assert!(err.to_string().starts_with("invalid protobuf: "), "{err}");
            assert_eq!(err.attribute(), None);
            let err = parse_protobuf_batch(garbage).expect_err("garbage");
            assert!(matches!(err, CloudEventError::Protobuf(_)), "{garbage:?}: {err}");
        }
        let err = parse_protobuf(b"").expect_err("an empty message has no attributes");
        assert_eq!(err.to_string(), "missing required attribute `specversion`");
    }

    #[test]
    fn binary_data_is_stored_as_is() {
        let incoming = parse(&data(valid(), Data::BinaryData(vec![0, 1, 255]))).expect("valid");
        assert_eq!(&incoming.event.data[..], [0, 1, 255]);
        assert_eq!(incoming.event.content_type, "application/octet-stream");
        let mut event = data(
            with([("datacontenttype", string("application/json"))]),
            Data::BinaryData(br#"{"order_id":"PO-9"}"#.to_vec()),
        );
        event.attributes.remove("subject");
        let incoming = parse(&event).expect("valid");
        assert_eq!(incoming.event.content_type, "application/json");
        assert_eq!(incoming.stream, "order/PO-9", "stream rule on JSON binary data");
    }

    #[test]
    fn text_data_is_text_unless_declared_json() {
        let incoming = parse(&data(valid(), Data::TextData("héllo {".into()))).expect("valid");
        assert_eq!(incoming.event.content_type, "text/plain");
        assert_eq!(&incoming.event.data[..], "héllo {".as_bytes());
        let event = data(
            with([("datacontenttype", string("text/csv"))]),
            Data::TextData("a,b".into()),
        );
        assert_eq!(parse(&event).expect("valid").event.content_type, "text/csv");
        let event = data(
            with([("datacontenttype", string("application/vnd.order+json"))]),
            Data::TextData(" [1, 2] ".into()),
        );
        assert_eq!(&parse(&event).expect("valid").event.data[..], b" [1, 2] ");
    }

    #[test]
    fn json_text_data_must_parse() {
        for bad in ["{", "not json", "{} {}", ""] {
            let event = data(
                with([("datacontenttype", string("application/json"))]),
                Data::TextData(bad.into()),
            );
            let err = parse(&event).expect_err(bad);
            assert_eq!(err.attribute(), Some("data"), "{err}");
            assert!(
                err.to_string()
                    .contains(r#"not JSON, although datacontenttype "application/json" says it is"#),
                "{err}"
            );
        }
    }

    #[test]
    fn proto_data_keeps_the_message_and_its_type_url() {
        let url = "type.googleapis.com/shop.v1.OrderPlaced";
        // A type of its own: the catalog's order.placed carries opsflow.v1.OrderPlaced.
        let custom = |event: CloudEvent| CloudEvent {
            r#type: "shop.order.placed".into(),
            ..event
        };
        let incoming = parse(&custom(data(valid(), proto_data(url, b"\x08\x01")))).expect("valid");
        let event = incoming.event;
        assert_eq!(&event.data[..], b"\x08\x01");
        assert_eq!(event.content_type, "application/protobuf");
        assert_eq!(event.metadata["dataschema"], url);
        let event = data(
            with([
                ("dataschema", Attr::CeUri("https://example.com/order.proto".into())),
                (
                    "datacontenttype",
                    string("application/protobuf; messageType=shop.v1.OrderPlaced"),
                ),
            ]),
            proto_data(url, b"\x08\x01"),
        );
        let event = parse(&custom(event)).expect("valid").event;
        assert_eq!(event.metadata["dataschema"], "https://example.com/order.proto");
        assert_eq!(
            event.content_type,
            "application/protobuf; messageType=shop.v1.OrderPlaced"
        );
        let event = parse(&data(valid(), proto_data("", b""))).expect("valid").event;
        assert!(event.metadata.is_empty() && event.data.is_empty());
        let event = data(
            with([("datacontenttype", string("application/json"))]),
            proto_data(url, b"\x08\x01"),
        );
        let err = parse(&custom(event)).expect_err("JSON content type for a protobuf message");
        assert_eq!(err.attribute(), Some("datacontenttype"), "{err}");
    }

    #[test]
    fn no_data_means_empty_data() {
        let event = CloudEvent { data: None, ..valid() };
        let event = parse(&event).expect("valid").event;
        assert!(event.data.is_empty() && event.content_type.is_empty());
    }

    #[test]
    fn stream_comes_from_the_data_without_subject() {
        let mut event = data(valid(), Data::TextData(r#"{"po_id":"PO-7"}"#.into()));
        event.r#type = "goods.received".into();
        event.attributes.clear();
        event
            .attributes
            .insert("datacontenttype".into(), value(string("application/json")));
        assert_eq!(parse(&event).expect("valid").stream, "purchase_order/PO-7");
        event.attributes.clear();
        let err = parse(&event).expect_err("text/plain data has no key fields");
        assert!(matches!(err, CloudEventError::MissingSubject { .. }), "{err}");
    }

    #[test]
    fn batch_parses_every_event() {
        let second = CloudEvent {
            id: "e-2".into(),
            ..with([("subject", string("order/PO-2"))])
        };
        let batch = CloudEventBatch {
            events: vec![valid(), second],
        };
        let events = parse_protobuf_batch(&batch.encode_to_vec()).expect("valid batch");
        let streams: Vec<&str> = events.iter().map(|e| e.stream.as_str()).collect();
        assert_eq!(streams, ["order/PO-1", "order/PO-2"]);
        assert!(parse_protobuf_batch(b"").expect("empty batch").is_empty());
    }

    #[test]
    fn batch_error_names_the_index() {
        let batch = CloudEventBatch {
            events: vec![
                valid(),
                CloudEvent {
                    id: String::new(),
                    ..valid()
                },
                CloudEvent {
                    source: String::new(),
                    ..valid()
                },
            ],
        };
        let err = parse_protobuf_batch(&batch.encode_to_vec()).expect_err("second event has no id");
        assert_eq!(err.to_string(), "event [1]: missing required attribute `id`");
        assert_eq!((err.batch_index(), err.attribute()), (Some(1), Some("id")));
    }

    fn recorded() -> RecordedEvent {
        crate::fixtures::recorded_order(br#"{"order_id": "PO-1", "total": 12.50}"#)
    }

    #[test]
    fn recorded_event_as_protobuf() {
        let event = RecordedEvent {
            correlation_id: "c".into(),
            metadata: BTreeMap::from([
                ("tenant".to_owned(), "acme".to_owned()),
                ("dataschema".to_owned(), "https://example.com/s".to_owned()),
                ("Bad_Name".to_owned(), "skipped".to_owned()),
                ("position".to_owned(), "forged".to_owned()),
            ]),
            ..recorded()
        };
        let message = recorded_to_protobuf(&event);
        assert_eq!(
            (
                message.id.as_str(),
                message.source.as_str(),
                message.spec_version.as_str()
            ),
            ("e-1", "/shop", "1.0")
        );
        assert_eq!(message.r#type, "order.placed");
        let attributes: BTreeMap<&str, Attr> = message
            .attributes
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.attr.clone()?)))
            .collect();
        let timestamp = |seconds, nanos| Attr::CeTimestamp(prost_types::Timestamp { seconds, nanos });
        assert_eq!(
            attributes,
            BTreeMap::from([
                ("subject", string("order/PO-1")),
                ("time", timestamp(1_714_557_600, 500_000_000)),
                ("recordedat", timestamp(1_714_557_601, 0)),
                ("position", string("42")),
                ("streamversion", string("3")),
                ("datacontenttype", string("application/json")),
                ("correlationid", string("c")),
                ("tenant", string("acme")),
                ("dataschema", Attr::CeUri("https://example.com/s".into())),
            ])
        );
        assert_eq!(
            message.data,
            Some(Data::TextData(r#"{"order_id": "PO-1", "total": 12.50}"#.into()))
        );
    }

    #[test]
    fn recorded_data_forms() {
        let form = |content_type: &str, data: &'static [u8]| {
            let event = RecordedEvent {
                content_type: content_type.into(),
                data: Bytes::from_static(data),
                ..recorded()
            };
            let message = recorded_to_protobuf(&event);
            let declared = message
                .attributes
                .get("datacontenttype")
                .and_then(|value| value.attr.clone());
            (declared, message.data)
        };
        assert_eq!(
            form("text/plain", "héllo".as_bytes()),
            (Some(string("text/plain")), Some(Data::TextData("héllo".into())))
        );
        assert_eq!(
            form("application/protobuf", b"\x08\x01"),
            (Some(string("application/protobuf")), Some(Data::BinaryData(vec![8, 1])))
        );
        assert_eq!(
            form("text/plain", b"\xff"),
            (Some(string("text/plain")), Some(Data::BinaryData(vec![255])))
        );
        assert_eq!(
            form("", b"{}"),
            (Some(string("application/json")), Some(Data::TextData("{}".into())))
        );
        assert_eq!(form("", b""), (None, None));
    }

    #[test]
    fn recorded_event_parses_back_to_the_same_event() {
        for event in [
            RecordedEvent {
                correlation_id: "c".into(),
                causation_id: "k".into(),
                ..recorded()
            },
            RecordedEvent {
                content_type: "text/plain".into(),
                data: Bytes::from_static(b"hi"),
                time: -1,
                ..recorded()
            },
            RecordedEvent {
                content_type: "application/protobuf".into(),
                data: Bytes::from_static(&[9, 0]),
                metadata: BTreeMap::from([("dataschema".to_owned(), "type.googleapis.com/x.Y".to_owned())]),
                ..recorded()
            },
        ] {
            let body = recorded_to_protobuf(&event).encode_to_vec();
            let incoming = parse_protobuf(&body).expect("parses back");
            assert_eq!(incoming.stream, event.stream);
            let back = incoming.event;
            assert_eq!(
                (back.id, back.source, back.event_type),
                (event.id, event.source, event.event_type)
            );
            assert_eq!(back.time, Some(event.time));
            assert_eq!((back.content_type, back.data), (event.content_type, event.data));
            assert_eq!(
                (back.correlation_id, back.causation_id),
                (event.correlation_id, event.causation_id)
            );
            assert_eq!(back.metadata["position"], "42");
            assert_eq!(back.metadata["recordedat"], "2024-05-01T10:00:01Z");
            assert_eq!(back.metadata.get("dataschema"), event.metadata.get("dataschema"));
        }
    }

    #[test]
    fn extreme_times_convert_to_valid_timestamps() {
        for nanos in [i64::MIN, -1, 0, 1, i64::MAX] {
            let timestamp = timestamp(nanos);
            assert!((0..1_000_000_000).contains(&timestamp.nanos), "{nanos}");
            let back = i128::from(timestamp.seconds) * 1_000_000_000 + i128::from(timestamp.nanos);
            assert_eq!(back, i128::from(nanos));
        }
    }
}
