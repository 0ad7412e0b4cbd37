//! The catalog's validation, table-driven over every type: required fields,
//! wrong kinds, protobuf round trips, and no panic on arbitrary bytes.

use opsflow_catalog::{CATALOG, EventSpec, Field, Format, Kind, Problem, data_as_json, validate, validate_json};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Value as ProtoValue};
use serde_json::{Map, Value, json};

const PROTOBUF: &str = "application/protobuf";
const JSON: &str = "application/json";
const TIME: &str = "2026-11-21T10:00:00Z";

/// A valid value of each field.
fn good(field: &Field) -> Value {
    match field.format {
        Some(Format::Severity) => return json!("sev2"),
        Some(Format::YearMonth) => return json!("2026-11"),
        None => {}
    }
    match field.kind {
        Kind::String => json!("x-1"),
        Kind::Money => json!(12500.5),
        Kind::Number => json!(-3.25),
        Kind::Integer => json!(4),
        Kind::Timestamp => json!(TIME),
        Kind::Bool => json!(false),
    }
}

/// Values a field does not take: of another kind, or of its kind but not its
/// format; with what the error says was expected.
fn bad(field: &Field) -> Vec<(Value, &'static str)> {
    let mut values: Vec<(Value, &'static str)> = bad_kind(field.kind)
        .into_iter()
        .map(|v| (v, field.kind.expected()))
        .collect();
    match field.format {
        Some(f @ Format::Severity) => {
            values.extend([json!("critical"), json!("sev5"), json!("SEV1")].map(|v| (v, f.expected())))
        }
        Some(f @ Format::YearMonth) => values.extend(
            [
                json!("November"),
                json!("2026-13"),
                json!("2026-1"),
                json!("2026-11-01"),
            ]
            .map(|v| (v, f.expected())),
        ),
        None => {}
    }
    values
}

fn bad_kind(kind: Kind) -> Vec<Value> {
    match kind {
        Kind::String => vec![json!(""), json!(12), json!(null), json!(["a"])],
        Kind::Money => vec![json!("12"), json!(-1), json!(true)],
        Kind::Number => vec![json!("3"), json!(null), json!({})],
        Kind::Integer => vec![json!(2.5), json!("4")],
        Kind::Timestamp => vec![json!("yesterday"), json!("2026-11-21"), json!(1_700_000_000)],
        Kind::Bool => vec![json!("true"), json!(0)],
    }
}

/// Data with every field of `spec` set (`optional`: also the optional ones).
fn sample(spec: &EventSpec, optional: bool) -> Map<String, Value> {
    spec.fields
        .iter()
        .filter(|f| f.required || optional)
        .map(|f| (f.name.to_owned(), good(f)))
        .collect()
}

fn bytes(map: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(map).expect("serialises")
}

#[test]
fn every_type_accepts_its_required_fields_alone_and_with_the_optional_ones() {
    for spec in CATALOG {
        for optional in [false, true] {
            let mut data = sample(spec, optional);
            data.insert("extra_field_from_a_newer_producer".into(), json!({"any": "thing"}));
            let result = validate(spec.event_type, JSON, &bytes(&data));
            assert!(result.is_ok(), "{} {data:?}: {result:?}", spec.event_type);
        }
    }
}

#[test]
fn every_missing_required_field_is_named() {
    for spec in CATALOG {
        for field in spec.fields.iter().filter(|f| f.required) {
            let mut data = sample(spec, true);
            data.remove(field.name);
            let err = validate_json(spec.event_type, &bytes(&data)).expect_err("must be refused");
            assert_eq!(err.field, format!("data.{}", field.name));
            assert_eq!(err.problem, Problem::Missing);
            assert_eq!(err.event_type, spec.event_type);
            assert_eq!(
                err.to_string(),
                format!("data.{}: required field is missing for {}", field.name, spec.event_type)
            );
        }
    }
}

#[test]
fn every_field_of_the_wrong_kind_is_named_with_expected_and_actual() {
    for spec in CATALOG {
        for field in spec.fields {
            for (value, expected_text) in bad(field) {
                let mut data = sample(spec, false);
                data.insert(field.name.to_owned(), value.clone());
                let err = validate_json(spec.event_type, &bytes(&data)).expect_err("must be refused");
                assert_eq!(err.field, format!("data.{}", field.name), "{value}");
                let Problem::WrongType { expected, actual } = &err.problem else {
                    panic!("{}.{} = {value}: {err}", spec.event_type, field.name);
                };
                assert_eq!(*expected, expected_text);
                assert!(!actual.is_empty());
                assert!(err.to_string().contains(spec.event_type));
            }
        }
    }
}

#[test]
fn the_documented_example_messages() {
    let err = validate_json(
        "order.placed",
        br#"{"order_id":"PO-1","customer":"acme","total":"12","currency":"EUR","promised_by":"2026-11-21T10:00:00Z"}"#,
    )
    .expect_err("total is a string");
    assert_eq!(
        err.to_string(),
        r#"data.total: expected a number >= 0, got "12" (order.placed)"#
    );
    let err = validate_json("order.placed", br#"{"customer":"acme"}"#).expect_err("no id");
    assert_eq!(
        err.to_string(),
        "data.order_id: required field is missing for order.placed"
    );
}

#[test]
fn data_that_is_not_an_object_is_an_error_naming_data() {
    for data in [&b"{not json"[..], b"[1,2]", b"\"text\"", b"null", b""] {
        let err = validate("order.placed", JSON, data).expect_err("refused");
        assert_eq!(err.field, "data", "{:?}", String::from_utf8_lossy(data));
        assert!(matches!(err.problem, Problem::Unreadable(_)));
    }
    let err = validate("order.placed", "text/plain", b"hello").expect_err("not JSON nor protobuf");
    assert_eq!(err.field, "content_type");
}

/// JSON is UTF-8: invalid bytes inside a string (which serde_json skips without
/// checking) are refused, for catalog and custom types alike.
#[test]
fn json_data_with_invalid_utf8_is_refused() {
    for (event_type, data) in [
        ("my.custom", &b"{\"a\":\"\xff\"}"[..]),
        ("order.placed", b"{\"order_id\":\"PO-1\",\"note\":\"\xc3(\"}"),
    ] {
        let err = validate(event_type, JSON, data).expect_err("invalid UTF-8");
        assert_eq!(err.field, "data");
        assert!(err.to_string().contains("invalid UTF-8 at byte"), "{err}");
    }
}

#[test]
fn custom_types_take_any_json_or_any_bytes() {
    assert!(validate("my.custom", JSON, br#"{"anything": [1, 2]}"#).is_ok());
    assert!(validate("my.custom", JSON, b"42").is_ok());
    assert!(validate("my.custom", JSON, b"").is_ok());
    assert!(validate("my.custom", "application/octet-stream", &[0, 159, 146, 150]).is_ok());
    assert!(validate("my.custom", PROTOBUF, &[0xff, 0xff]).is_ok());
    let err = validate("my.custom", JSON, b"{not json").expect_err("declared JSON");
    assert_eq!(err.field, "data");
    assert!(err.to_string().contains("my.custom"), "{err}");
}

#[test]
fn data_as_json_parses_json_and_decodes_protobuf() {
    let json_data = br#"{"order_id":"PO-1","customer":"acme"}"#;
    assert_eq!(
        data_as_json("order.placed", JSON, json_data),
        Some(json!({"order_id":"PO-1","customer":"acme"}))
    );
    assert_eq!(data_as_json("x.y", JSON, b"[1]"), Some(json!([1])));
    assert_eq!(data_as_json("x.y", JSON, b"{bad"), None);
    assert_eq!(data_as_json("x.y", "application/octet-stream", b"{}"), None);
    assert_eq!(
        data_as_json("x.y", PROTOBUF, b"\x0a\x01a"),
        None,
        "custom protobuf is opaque"
    );
    assert_eq!(data_as_json("x.y", JSON, b""), None);

    let placed = opsflow_proto::v1::OrderPlaced {
        order_id: "PO-7".into(),
        customer: "acme".into(),
        total: Some(12_000.0),
        currency: "EUR".into(),
        promised_by: Some(prost_types::Timestamp {
            seconds: 1_795_255_200,
            nanos: 500_000_000,
        }),
        lines: Some(3),
        channel: String::new(),
    };
    let bytes = placed.encode_to_vec();
    assert!(validate("order.placed", PROTOBUF, &bytes).is_ok());
    assert_eq!(
        data_as_json("order.placed", PROTOBUF, &bytes),
        Some(
            json!({"order_id":"PO-7","customer":"acme","total":12000.0,"currency":"EUR",
                    "promised_by":"2026-11-21T10:00:00.5Z","lines":3})
        )
    );
}

#[test]
fn protobuf_data_is_checked_like_json() {
    let mut placed = opsflow_proto::v1::OrderPlaced {
        order_id: String::new(),
        customer: "acme".into(),
        total: Some(1.0),
        currency: "EUR".into(),
        promised_by: Some(prost_types::Timestamp {
            seconds: 1_795_255_200,
            nanos: 0,
        }),
        ..Default::default()
    };
    let err = validate("order.placed", PROTOBUF, &placed.encode_to_vec()).expect_err("no order id");
    assert_eq!(
        err.to_string(),
        "data.order_id: required field is missing for order.placed"
    );
    placed.order_id = "PO-1".into();
    placed.total = None;
    let err = validate("order.placed", PROTOBUF, &placed.encode_to_vec()).expect_err("no total");
    assert_eq!(err.field, "data.total");
    placed.total = Some(-5.0);
    let err = validate("order.placed", PROTOBUF, &placed.encode_to_vec()).expect_err("negative");
    assert_eq!(
        err.to_string(),
        "data.total: expected a number >= 0, got -5.0 (order.placed)"
    );
    placed.total = Some(f64::NAN);
    let err = validate("order.placed", PROTOBUF, &placed.encode_to_vec()).expect_err("NaN");
    assert_eq!(err.field, "data.total");
    placed.total = Some(1.0);
    placed.promised_by = Some(prost_types::Timestamp {
        seconds: i64::MAX,
        nanos: 0,
    });
    let err = validate("order.placed", PROTOBUF, &placed.encode_to_vec()).expect_err("out of range");
    assert_eq!(err.field, "data.promised_by");
    let err = validate("order.placed", PROTOBUF, b"\xff\xff\xff").expect_err("garbage");
    assert_eq!(err.field, "data");
    assert!(err.to_string().contains("opsflow.v1.OrderPlaced"), "{err}");
}

/// Every type: the JSON sample encoded as its protobuf message decodes back to
/// the same fields and validates.
#[test]
fn protobuf_round_trip_for_every_type() {
    let pool = DescriptorPool::decode(opsflow_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    for spec in CATALOG {
        let desc = pool
            .get_message_by_name(&spec.full_message_name())
            .expect("a message per type");
        let json_sample = sample(spec, true);
        let mut message = DynamicMessage::new(desc.clone());
        for field in spec.fields {
            let value = &json_sample[field.name];
            let proto = match field.kind {
                Kind::String => ProtoValue::String(value.as_str().unwrap_or_default().to_owned()),
                Kind::Money | Kind::Number => ProtoValue::F64(value.as_f64().unwrap_or_default()),
                Kind::Integer => ProtoValue::I64(value.as_i64().unwrap_or_default()),
                Kind::Bool => ProtoValue::Bool(value.as_bool().unwrap_or_default()),
                Kind::Timestamp => {
                    let ts: jiff::Timestamp = value.as_str().unwrap_or_default().parse().expect("timestamp");
                    let proto_ts = prost_types::Timestamp {
                        seconds: ts.as_second(),
                        nanos: ts.subsec_nanosecond(),
                    };
                    let field_desc = desc.get_field_by_name(field.name).expect("field");
                    let ts_desc = field_desc.kind().as_message().expect("a message").clone();
                    let mut dynamic = DynamicMessage::new(ts_desc);
                    dynamic.transcode_from(&proto_ts).expect("transcode");
                    ProtoValue::Message(dynamic)
                }
            };
            message.set_field_by_name(field.name, proto);
        }
        let bytes = message.encode_to_vec();
        assert!(
            validate(spec.event_type, PROTOBUF, &bytes).is_ok(),
            "{}",
            spec.event_type
        );
        let back = data_as_json(spec.event_type, PROTOBUF, &bytes).expect("decodes");
        for field in spec.fields {
            let (a, b) = (&back[field.name], &json_sample[field.name]);
            let same = match field.kind {
                Kind::Money | Kind::Number | Kind::Integer => a.as_f64() == b.as_f64(),
                _ => a == b,
            };
            assert!(same, "{}.{}: {a} vs {b}", spec.event_type, field.name);
        }
    }
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..256), pick in 0usize..CATALOG.len()) {
            let event_type = CATALOG[pick].event_type;
            for content_type in [JSON, PROTOBUF, "text/plain", ""] {
                let _ = validate(event_type, content_type, &data);
                let _ = data_as_json(event_type, content_type, &data);
            }
            let _ = validate("custom.type", JSON, &data);
        }

        #[test]
        fn arbitrary_json_objects(
            fields in proptest::collection::btree_map("[a-z_]{1,12}", prop_oneof![
                Just(json!(null)), any::<bool>().prop_map(Value::from), any::<f64>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from), ".{0,20}".prop_map(Value::from)], 0..8),
            pick in 0usize..CATALOG.len(),
        ) {
            let spec = &CATALOG[pick];
            let mut data = sample(spec, false);
            data.extend(fields);
            let _ = validate_json(spec.event_type, &bytes(&data));
        }
    }
}
