//! The stream rule: which stream of the log a CloudEvent is appended to.
//!
//! 1. The CloudEvents `subject` attribute, when present, is the stream, verbatim.
//! 2. Otherwise, when the data is a JSON object, the type's first dot-separated
//!    token `T` names the business object: the field `T_id` (a non-empty string or
//!    a number) gives the stream `T/<value>`. `order.placed` with
//!    `{"order_id": "PO-1001"}` goes to `order/PO-1001`.
//! 3. Catalog events about an object that has no id field of its own join the
//!    stream of the object they belong to (the conventions of `docs/catalog.md`),
//!    tried after `T_id`:
//!
//!    | type prefix                           | field(s)            | stream                      |
//!    |---------------------------------------|---------------------|-----------------------------|
//!    | `approval`                            | `requisition_id`    | `requisition/<value>`       |
//!    | `purchase_order`, `goods`, `invoice`  | `po_number`         | `po/<value>`                |
//!    | `purchase_order`, `goods`, `invoice`  | `po_id`             | `purchase_order/<value>`    |
//!    | `postmortem`                          | `incident_id`       | `incident/<value>`          |
//!    | `inventory`, `reorder_point`          | `sku` and `location`| `inventory/<sku>@<location>`|
//!    | `budget`, `expense`                   | `cost_centre`       | `budget/<value>`            |
//!
//!    So `goods.received` with `{"po_number": "PO-7"}` goes to `po/PO-7`, while an
//!    `invoice.received` that carries its own `invoice_id` goes to
//!    `invoice/<invoice_id>`.
//! 4. Otherwise the event is refused with [`CloudEventError::MissingSubject`],
//!    naming the fields that were looked for.
//!
//! Catalog data in protobuf (`application/protobuf`, the messages of
//! `catalog.proto`) is decoded and read for the same fields; other data that is not
//! JSON has none, so such an event needs a `subject`.
//!
//! The stream must be a valid log stream name
//! ([`validate_stream_name`](opsflow_log::validate_stream_name)); an invalid one is
//! refused naming `subject` or `data`.

use opsflow_log::{LogError, ProposedEvent, validate_stream_name};

use crate::error::{CloudEventError, Result};
use crate::json::{Members, members};
use crate::media;

/// Procurement events keyed by the object they belong to: (type prefix, field,
/// stream prefix), tried after the type's own `T_id`.
const PARENT_KEYS: &[(&str, &str, &str)] = &[
    ("approval", "requisition_id", "requisition"),
    ("purchase_order", "po_number", "po"),
    ("goods", "po_number", "po"),
    ("invoice", "po_number", "po"),
    ("purchase_order", "po_id", "purchase_order"),
    ("goods", "po_id", "purchase_order"),
    ("invoice", "po_id", "purchase_order"),
    ("postmortem", "incident_id", "incident"),
    ("budget", "cost_centre", "budget"),
    ("expense", "cost_centre", "budget"),
];

/// Stock is kept per SKU and location: these types go to `inventory/<sku>@<location>`.
const STOCK_PREFIXES: &[&str] = &["inventory", "reorder_point"];

/// The stream for `event` under the stream rule (see the module docs): `subject`
/// when given, else derived from the event's JSON data.
///
/// Transports that carry CloudEvents in other encodings (protobuf) use this to
/// route exactly as the JSON and binary bindings do.
pub fn stream_for(subject: Option<&str>, event: &ProposedEvent) -> Result<String> {
    if let Some(subject) = subject {
        return validate_stream_name(subject)
            .map(|()| subject.to_owned())
            .map_err(|e| CloudEventError::invalid("subject", subject, reason(e)));
    }
    let keys = key_fields(&event.event_type);
    let json_data = event.content_type.is_empty() || media::is_json(&event.content_type);
    // Protobuf catalog data, decoded to the same field names as JSON.
    let decoded = (!json_data)
        .then(|| opsflow_catalog::data_as_json(&event.event_type, &event.content_type, &event.data))
        .flatten()
        .map(|object| object.to_string());
    // Data that is not a JSON object has no key fields.
    let members = if let Some(decoded) = &decoded {
        members(decoded.as_bytes()).map_or_else(|_| Vec::new(), |Members(m)| m)
    } else if json_data {
        match members(&event.data) {
            Ok(Members(m)) => m,
            // Not JSON at all: say so, rather than that no key field was found.
            Err(e)
                if !event.data.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&event.data).is_err() =>
            {
                let shown: String = String::from_utf8_lossy(&event.data).chars().take(40).collect();
                return Err(CloudEventError::invalid(
                    "data",
                    &shown,
                    format!("the data is declared JSON but is not valid JSON ({e})"),
                ));
            }
            Err(_) => Vec::new(),
        }
    } else {
        Vec::new()
    };
    let field = |name: &str| members.iter().find(|m| m.name == name).and_then(|m| key_value(m.raw));
    // `from` names the field(s) the stream came from, for the error.
    let checked = |stream: String, from: &str| match validate_stream_name(&stream) {
        Ok(()) => Ok(stream),
        Err(e) => Err(CloudEventError::invalid(
            "data",
            &stream,
            format!("{from} gives an invalid stream name: {}", reason(e)),
        )),
    };
    for (name, stream_prefix) in &keys {
        if let Some(value) = field(name) {
            return checked(format!("{stream_prefix}/{value}"), &format!("field `{name}`"));
        }
    }
    let mut fields: Vec<String> = keys.into_iter().map(|(field, _)| format!("`{field}`")).collect();
    if STOCK_PREFIXES.contains(&type_prefix(&event.event_type)) {
        if let (Some(sku), Some(location)) = (field("sku"), field("location")) {
            return checked(format!("inventory/{sku}@{location}"), "fields `sku` and `location`");
        }
        fields.push("`sku` and `location`".into());
    }
    Err(CloudEventError::MissingSubject {
        fields,
        not_json: (!json_data && decoded.is_none()).then(|| event.content_type.clone()),
    })
}

/// The type's first dot-separated token: the business object it is about.
fn type_prefix(event_type: &str) -> &str {
    event_type.split_once('.').map_or(event_type, |(first, _)| first)
}

/// The (field, stream prefix) pairs tried for `event_type`, in order.
fn key_fields(event_type: &str) -> Vec<(String, String)> {
    let prefix = type_prefix(event_type);
    let mut keys = vec![(format!("{prefix}_id"), prefix.to_owned())];
    keys.extend(
        PARENT_KEYS
            .iter()
            .filter(|(type_prefix, _, _)| *type_prefix == prefix)
            .map(|(_, field, stream_prefix)| ((*field).to_owned(), (*stream_prefix).to_owned())),
    );
    keys
}

/// A key field's value: a non-empty string, or a number as written.
fn key_value(raw: &str) -> Option<String> {
    match raw.trim_start().as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(raw).ok().filter(|text| !text.is_empty()),
        b'-' | b'0'..=b'9' => Some(raw.trim().to_owned()),
        _ => None,
    }
}

fn reason(error: LogError) -> String {
    match error {
        LogError::InvalidArgument { reason, .. } => reason,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, data: &str) -> ProposedEvent {
        ProposedEvent::json(event_type, data.to_owned())
    }

    fn stream(event_type: &str, data: &str) -> Result<String> {
        stream_for(None, &event(event_type, data))
    }

    #[test]
    fn subject_wins_over_data() {
        let got = stream_for(Some("custom/1"), &event("order.placed", r#"{"order_id":"PO-1"}"#));
        assert_eq!(got.expect("valid subject"), "custom/1");
    }

    #[test]
    fn type_prefix_id_field_names_the_stream() {
        assert_eq!(
            stream("order.placed", r#"{"order_id":"PO-1001"}"#).expect("stream"),
            "order/PO-1001"
        );
        assert_eq!(
            stream("incident.opened", r#"{"incident_id":7}"#).expect("stream"),
            "incident/7"
        );
        assert_eq!(
            stream(
                "shipment.delayed",
                r#"{"x":{"shipment_id":"inner"},"shipment_id":"S-1"}"#
            )
            .expect("stream"),
            "shipment/S-1"
        );
        assert_eq!(stream("custom", r#"{"custom_id":"c"}"#).expect("stream"), "custom/c");
    }

    #[test]
    fn protobuf_catalog_data_is_read_for_the_same_fields() {
        let placed = opsflow_proto::v1::OrderPlaced {
            order_id: "PO-9".into(),
            customer: "acme".into(),
            total: Some(12.5),
            currency: "EUR".into(),
            ..Default::default()
        };
        let as_protobuf = |event_type: &str, data: Vec<u8>| ProposedEvent {
            content_type: "application/protobuf".into(),
            data: data.into(),
            ..event(event_type, "")
        };
        let order = as_protobuf("order.placed", prost::Message::encode_to_vec(&placed));
        assert_eq!(stream_for(None, &order).expect("stream"), "order/PO-9");
        // Decoded but without the field: the fields looked for, not "not JSON".
        let nameless = opsflow_proto::v1::OrderPlaced {
            order_id: String::new(),
            ..placed
        };
        let nameless = as_protobuf("order.placed", prost::Message::encode_to_vec(&nameless));
        match stream_for(None, &nameless) {
            Err(CloudEventError::MissingSubject { fields, not_json }) => {
                assert_eq!((fields, not_json), (vec!["`order_id`".to_owned()], None));
            }
            other => panic!("expected a missing subject, got {other:?}"),
        }
        // Protobuf of a custom type is not read: it needs a subject.
        let custom = as_protobuf("thing.happened", vec![0x0a, 0x01, 0x41]);
        assert!(matches!(
            stream_for(None, &custom),
            Err(CloudEventError::MissingSubject { not_json: Some(_), .. })
        ));
    }

    #[test]
    fn procurement_events_join_their_parent_stream() {
        assert_eq!(
            stream("goods.received", r#"{"po_id":"PO-7"}"#).expect("stream"),
            "purchase_order/PO-7"
        );
        assert_eq!(
            stream("purchase_order.issued", r#"{"po_id":"PO-7","requisition_id":"R-1"}"#).expect("stream"),
            "purchase_order/PO-7"
        );
        assert_eq!(
            stream("invoice.received", r#"{"po_id":"PO-7"}"#).expect("stream"),
            "purchase_order/PO-7"
        );
        assert_eq!(
            stream("invoice.received", r#"{"po_id":"PO-7","invoice_id":"INV-3"}"#).expect("stream"),
            "invoice/INV-3"
        );
        assert_eq!(
            stream("approval.granted", r#"{"requisition_id":"R-1"}"#).expect("stream"),
            "requisition/R-1"
        );
        assert_eq!(
            stream("requisition.created", r#"{"requisition_id":"R-1"}"#).expect("stream"),
            "requisition/R-1"
        );
    }

    #[test]
    fn catalog_objects_without_an_id_join_their_stream() {
        assert_eq!(
            stream("goods.received", r#"{"po_number":"PO-7"}"#).expect("stream"),
            "po/PO-7"
        );
        assert_eq!(
            stream("inventory.adjusted", r#"{"sku":"SKU-1","location":"AMS","delta":-2}"#).expect("stream"),
            "inventory/SKU-1@AMS"
        );
        assert_eq!(
            stream(
                "reorder_point.set",
                r#"{"sku":"SKU-1","location":"AMS","reorder_point":5}"#
            )
            .expect("stream"),
            "inventory/SKU-1@AMS"
        );
        assert_eq!(
            stream(
                "expense.recorded",
                r#"{"cost_centre":"CC-IT","period":"2026-11","amount":5}"#
            )
            .expect("stream"),
            "budget/CC-IT"
        );
        assert_eq!(
            stream("postmortem.published", r#"{"incident_id":"INC-1","author":"a"}"#).expect("stream"),
            "incident/INC-1"
        );
        let err = stream("inventory.counted", r#"{"sku":"SKU-1"}"#).expect_err("no location");
        assert!(err.to_string().contains("`location`"), "{err}");
    }

    #[test]
    fn missing_key_names_the_fields_looked_for() {
        let err = stream("goods.received", r#"{"sku":"A"}"#).expect_err("no key");
        assert_eq!(
            err.to_string(),
            "missing subject: the stream is taken from the CloudEvents `subject` attribute \
             (or, for JSON data and protobuf catalog data, from the data's `goods_id` or `po_number` or `po_id`: \
             a non-empty string or a number, which this event's data does not give)"
        );
        assert_eq!(err.attribute(), Some("subject"));
        for (event_type, data) in [
            ("order.placed", r#"{"order_id":""}"#),
            ("order.placed", r#"{"order_id":null}"#),
            ("order.placed", r#"{"order_id":{"a":1}}"#),
            ("order.placed", r#"["order_id"]"#),
        ] {
            let err = stream(event_type, data).expect_err(data);
            assert!(matches!(err, CloudEventError::MissingSubject { .. }), "{data}: {err}");
        }
        // Declared JSON and not JSON: that is the problem to name.
        let err = stream("order.placed", "not json").expect_err("not json");
        assert_eq!(err.attribute(), Some("data"));
        assert!(err.to_string().contains("is not valid JSON"), "{err}");
        let binary = ProposedEvent {
            content_type: "text/plain".into(),
            ..event("order.placed", r#"{"order_id":"1"}"#)
        };
        assert!(stream_for(None, &binary).is_err());
    }

    #[test]
    fn invalid_stream_names_are_refused_naming_the_source() {
        let err = stream_for(Some("a b"), &event("t", "{}")).expect_err("space");
        assert_eq!(err.attribute(), Some("subject"));
        let err = stream("order.placed", r#"{"order_id":"PO 1"}"#).expect_err("space");
        assert_eq!(err.attribute(), Some("data"));
        assert!(err.to_string().contains("`order_id`"), "{err}");
    }
}
