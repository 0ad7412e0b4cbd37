//! The JSON event format: structured mode (`application/cloudevents+json`) and the
//! batch format (`application/cloudevents-batch+json`).
//!
//! Members are read as raw JSON text, so `data` is stored from exactly what the
//! producer sent (numbers keep their digits, objects their key order), minus
//! insignificant whitespace.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::Incoming;
use crate::attributes::{AttributeValue, Attributes, Payload};
use crate::error::{CloudEventError, Result};

/// Parses one CloudEvent in the JSON format (structured mode).
pub fn parse_structured(body: &[u8]) -> Result<Incoming> {
    event_from_members(members(body)?)
}

/// Parses a JSON batch: an array of CloudEvents in the JSON format. An empty
/// array gives an empty vector; the first invalid event fails the whole batch
/// with its index ([`CloudEventError::InBatch`]).
pub fn parse_batch(body: &[u8]) -> Result<Vec<Incoming>> {
    let Batch(events) = serde_json::from_slice(body)?;
    events
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            members(raw.get().as_bytes())
                .map_err(CloudEventError::from)
                .and_then(event_from_members)
                .map_err(|error| error.in_batch(index))
        })
        .collect()
}

fn event_from_members(Members(members): Members<'_>) -> Result<Incoming> {
    let mut attributes = Attributes::default();
    let mut data: Option<(&str, bool)> = None;
    let mut data_base64: Option<String> = None;
    for Member { name, raw, compact } in members {
        match &*name {
            "data" => {
                if data.replace((raw, compact)).is_some() {
                    return Err(CloudEventError::duplicate(&name));
                }
            }
            "data_base64" => {
                if data_base64.is_some() {
                    return Err(CloudEventError::duplicate(&name));
                }
                data_base64 = match attribute_value(raw)? {
                    None => None,
                    Some(AttributeValue::String(text)) => Some(text.into_owned()),
                    Some(_) => {
                        return Err(CloudEventError::wrong_type(&name, "a base64 string", json_kind(raw)));
                    }
                };
            }
            _ => {
                if let Some(value) = attribute_value(raw)? {
                    attributes.insert(name, value)?;
                }
            }
        }
    }
    let payload = match (data, data_base64) {
        (Some(_), Some(_)) => return Err(CloudEventError::DataConflict),
        (Some((raw, compact)), None) => Payload::Json { raw, compact },
        (None, Some(text)) => Payload::Base64(text),
        (None, None) => Payload::Absent,
    };
    attributes.into_incoming(payload)
}

/// An attribute member's value; `None` for `null`, which means absent (JSON format §2.2).
fn attribute_value(text: &str) -> Result<Option<AttributeValue<'_>>> {
    // Raw member values have no whitespace around them; JSON's is ASCII anyway.
    let text = text.trim_ascii();
    Ok(Some(match text.as_bytes().first() {
        // A string without escapes is its text between the quotes (the member was
        // read as valid JSON already); one with escapes is decoded.
        Some(b'"') => match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(inner) if !inner.bytes().any(|b| b == b'\\') => AttributeValue::String(Cow::Borrowed(inner)),
            _ => AttributeValue::String(Cow::Owned(serde_json::from_str(text)?)),
        },
        Some(b't') => AttributeValue::Boolean(true),
        Some(b'f') => AttributeValue::Boolean(false),
        Some(b'n') => return Ok(None),
        Some(b'{' | b'[') => AttributeValue::Composite(json_kind(text)),
        _ => AttributeValue::Number(Cow::Borrowed(text)),
    }))
}

/// "a string", "an object", ... for valid JSON text, for error messages.
pub(crate) fn json_kind(raw: &str) -> &'static str {
    match raw.trim_start().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Valid JSON text without insignificant whitespace; string contents are kept byte
/// for byte.
pub(crate) fn compact_json(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    // Copies runs between insignificant whitespace in one go, and skips through
    // strings to their closing quote with memchr.
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                loop {
                    match bytes.get(i..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) {
                        // A backslash and the character it escapes.
                        Some(found) if bytes[i + found] == b'\\' => i += found + 2,
                        Some(found) => {
                            i += found;
                            break;
                        }
                        None => {
                            i = bytes.len();
                            break;
                        }
                    }
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                out.extend_from_slice(&bytes[run..i]);
                run = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[run.min(bytes.len())..]);
    out
}

/// The members of a JSON object in document order, values as raw JSON text.
/// Unlike a map it keeps repeated names, so they can be refused.
pub(crate) struct Members<'a>(pub(crate) Vec<Member<'a>>);

/// One member of an object: its name (borrowed from the document unless it has
/// escapes) and its value as raw JSON text.
pub(crate) struct Member<'a> {
    pub(crate) name: Cow<'a, str>,
    pub(crate) raw: &'a str,
    /// Known to hold no insignificant whitespace (`false` when not known).
    pub(crate) compact: bool,
}

/// The members of the JSON object `text`: read by a quick scan when the text is
/// plainly JSON (see [`opsflow_catalog::plain_object`]), else by serde_json, which
/// gives the same members or says what is wrong.
pub(crate) fn members(text: &[u8]) -> serde_json::Result<Members<'_>> {
    match plain_members(text) {
        Some(members) => Ok(members),
        None => serde_json::from_slice(text),
    }
}

/// The members of a plainly JSON object without escapes in its member names, as
/// serde_json reads them, in one pass and without allocating more than the list;
/// `None` for anything else (which may still be valid: serde_json decides).
fn plain_members(body: &[u8]) -> Option<Members<'_>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut members = Vec::with_capacity(16);
    let plain = opsflow_catalog::plain_object(text, |member| {
        // A name with escapes is decoded by serde_json.
        !member.escapes && {
            members.push(Member {
                name: Cow::Borrowed(member.name),
                raw: member.value,
                compact: !member.spaced,
            });
            true
        }
    });
    plain.then_some(Members(members))
}

/// A member name, borrowed from the document unless it has escapes.
#[derive(serde::Deserialize)]
#[serde(transparent)]
struct Name<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object (one CloudEvent)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // Room for the attributes an event usually has: growing 4, 8, 16
                // took a good part of decoding.
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).max(16));
                while let Some((Name(name), value)) = map.next_entry::<Name<'de>, &'de RawValue>()? {
                    members.push(Member {
                        name,
                        raw: value.get(),
                        compact: false,
                    });
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// The events of a JSON batch, each as raw JSON text.
struct Batch<'a>(Vec<&'a RawValue>);

impl<'de> Deserialize<'de> for Batch<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BatchVisitor;
        impl<'de> Visitor<'de> for BatchVisitor {
            type Value = Batch<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON array of CloudEvents")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut events = Vec::new();
                while let Some(event) = seq.next_element::<&'de RawValue>()? {
                    events.push(event);
                }
                Ok(Batch(events))
            }
        }
        deserializer.deserialize_seq(BatchVisitor)
    }
}

#[cfg(test)]
mod tests {
    use opsflow_log::ExpectedVersion;
    use serde_json::{Value, json};

    use super::*;

    fn valid() -> Value {
        json!({
            "specversion": "1.0",
            "id": "e-1",
            "source": "/shop",
            "type": "order.placed",
            "subject": "order/PO-1",
            "data": {"order_id": "PO-1"}
        })
    }

    fn with(changes: Value) -> Vec<u8> {
        let mut event = valid();
        if let (Value::Object(event), Value::Object(changes)) = (&mut event, changes) {
            for (name, value) in changes {
                if value == json!("<remove>") {
                    event.remove(&name);
                } else {
                    event.insert(name, value);
                }
            }
        }
        serde_json::to_vec(&event).expect("serializable")
    }

    fn parse(changes: Value) -> Result<Incoming> {
        parse_structured(&with(changes))
    }

    #[test]
    fn maps_attributes_to_the_proposed_event() {
        let incoming = parse(json!({
            "time": "2024-05-01T12:00:00.5+02:00",
            "correlationid": "corr-1",
            "causationid": "cause-1",
            "expectedversion": "4",
            "dataschema": "https://example.com/s.json",
            "tenant": "acme",
            "priority": 3,
            "urgent": true,
            "unsetextension": null,
            "comment": ""
        }))
        .expect("valid event");
        assert_eq!(incoming.stream, "order/PO-1");
        assert_eq!(incoming.expected, Some(ExpectedVersion::Exact(4)));
        let event = incoming.event;
        assert_eq!(
            (event.id.as_str(), event.source.as_str(), event.event_type.as_str()),
            ("e-1", "/shop", "order.placed")
        );
        assert_eq!(event.time, Some(1_714_557_600_500_000_000));
        assert_eq!(
            (event.correlation_id.as_str(), event.causation_id.as_str()),
            ("corr-1", "cause-1")
        );
        let metadata: Vec<(&str, &str)> = event.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            metadata,
            [
                ("comment", ""),
                ("dataschema", "https://example.com/s.json"),
                ("priority", "3"),
                ("tenant", "acme"),
                ("urgent", "true")
            ]
        );
    }

    #[test]
    fn optional_attributes_may_be_absent() {
        let incoming = parse(json!({})).expect("valid event");
        assert_eq!(incoming.expected, None);
        assert_eq!(incoming.event.time, None);
        assert!(incoming.event.correlation_id.is_empty() && incoming.event.metadata.is_empty());
    }

    #[test]
    fn missing_required_attribute_is_named() {
        for attribute in ["specversion", "id", "source", "type"] {
            for absent in [json!("<remove>"), Value::Null] {
                let err = parse(json!({ attribute: absent })).expect_err(attribute);
                assert_eq!(err.to_string(), format!("missing required attribute `{attribute}`"));
                assert_eq!(err.attribute(), Some(attribute));
            }
        }
    }

    #[test]
    fn empty_required_attribute_is_refused() {
        for attribute in ["id", "source", "type", "subject", "datacontenttype"] {
            let err = parse(json!({ attribute: "" })).expect_err(attribute);
            assert_eq!(err.to_string(), format!("attribute `{attribute}` must not be empty"));
        }
    }

    #[test]
    fn wrong_json_type_names_attribute_and_expected_type() {
        let err = parse(json!({"id": 5})).expect_err("number id");
        assert_eq!(err.to_string(), "attribute `id` must be a string, found a number");
        let err = parse(json!({"source": {"a": 1}})).expect_err("object source");
        assert_eq!(err.to_string(), "attribute `source` must be a string, found an object");
        let err = parse(json!({"time": true})).expect_err("boolean time");
        assert_eq!(err.attribute(), Some("time"));
        let err = parse(json!({"tenant": ["a"]})).expect_err("array extension");
        assert_eq!(
            err.to_string(),
            "attribute `tenant` must be a string, number or boolean, found an array"
        );
        // Numbers are CloudEvents Integers: 32 bits, no fraction.
        for number in [json!(1.5), json!(1_099_511_627_776u64), json!(2.0)] {
            let err = parse(json!({"tenant": number})).expect_err("not an Integer");
            assert!(
                err.to_string().starts_with(&format!(
                    "attribute `tenant` has an invalid value \"{number}\": a number must be a CloudEvents Integer"
                )),
                "{err}"
            );
        }
        for (number, text) in [(json!(-2_147_483_648i64), "-2147483648"), (json!(42), "42")] {
            let incoming = parse(json!({"tenant": number})).expect("an Integer");
            assert_eq!(incoming.event.metadata.get("tenant").map(String::as_str), Some(text));
        }
        let err = parse(json!({"data_base64": 12})).expect_err("number base64");
        assert_eq!(err.attribute(), Some("data_base64"));
    }

    #[test]
    fn wrong_specversion_names_expected_and_actual() {
        let err = parse(json!({"specversion": "0.3"})).expect_err("0.3");
        assert_eq!(
            err.to_string(),
            r#"unsupported `specversion`: expected "1.0", found "0.3""#
        );
        assert_eq!(err.attribute(), Some("specversion"));
        let err = parse(json!({"specversion": 1.0})).expect_err("number");
        assert_eq!(
            err.to_string(),
            "attribute `specversion` must be a string, found a number"
        );
    }

    #[test]
    fn invalid_time_names_attribute_and_value() {
        for bad in [
            "yesterday",
            "2024-05-01",
            "2024-05-01T10:00:00",
            "2024-13-01T00:00:00Z",
            "2024-05-01T10:00Z",
            "2024-05-01T10:00:00.Z",
            "2024-05-01T10:00:00+0200",
            "2024-05-01T10:00:00+02",
            "2024-05-01T10:00:00Z[UTC]",
            "2024-05-01T10:00:00,5Z",
        ] {
            let err = parse(json!({"time": bad})).expect_err(bad);
            assert_eq!(err.attribute(), Some("time"), "{err}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn rfc3339_times_parse_with_either_separator_and_any_offset() {
        for (good, nanos) in [
            ("2024-05-01T10:00:00Z", 1_714_557_600_000_000_000),
            ("2024-05-01t10:00:00z", 1_714_557_600_000_000_000),
            ("2024-05-01 10:00:00Z", 1_714_557_600_000_000_000),
            ("2024-05-01T12:00:00.5+02:00", 1_714_557_600_500_000_000),
            ("2024-05-01T07:00:00-03:00", 1_714_557_600_000_000_000),
            ("2024-05-02T09:59:00+23:59", 1_714_557_600_000_000_000),
            // RFC 3339 allows any number of fraction digits: cut to nanoseconds
            // (refused with the parser's "unparsed input" before).
            ("2024-05-01T10:00:00.123456789012Z", 1_714_557_600_123_456_789),
            ("2024-05-01T12:00:00.0000000009999+02:00", 1_714_557_600_000_000_000),
        ] {
            let incoming = parse(json!({"time": good})).expect(good);
            assert_eq!(incoming.event.time, Some(nanos), "{good}");
        }
        // Offset hours are 00 to 23, minutes 00 to 59 (+24:00 was taken as a day).
        for bad in [
            "2024-05-01T10:00:00+24:00",
            "2024-05-01T10:00:00-02:60",
            "2024-05-01T10:00:00.Z",
        ] {
            let err = parse(json!({"time": bad})).expect_err(bad);
            assert!(err.to_string().contains("offset from -23:59 to +23:59"), "{err}");
        }
    }

    #[test]
    fn a_source_that_is_not_a_uri_reference_is_refused() {
        for bad in ["a b c", "urn:a b", "x%zz", "x%4", "<shop>", "a\tb", "a{b}"] {
            let err = parse(json!({"source": bad})).expect_err(bad);
            assert_eq!(err.attribute(), Some("source"), "{err}");
            assert!(err.to_string().contains("not a URI-reference"), "{err}");
        }
        for good in [
            "/shop",
            "urn:shop:1",
            "https://shop.example/a?b=c#d",
            "shop%20one",
            "/shop\u{e9}",
        ] {
            parse(json!({"source": good})).expect(good);
        }
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let err = parse_structured(b"{\n  \"id\": \"1\",\n  oops\n}").expect_err("malformed");
        let CloudEventError::Json(inner) = &err else {
            panic!("wrong variant: {err}")
        };
        assert_eq!((inner.line(), inner.column()), (3, 3));
        assert!(err.to_string().contains("line 3 column 3"), "{err}");
        for bad in [&b""[..], b"[]", b"42", b"{} {}", b"\xff"] {
            assert!(
                matches!(parse_structured(bad), Err(CloudEventError::Json(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn escaped_names_and_strings_are_decoded() -> Result<()> {
        // `\u0069d` is `id`; the source has escapes, the type none.
        let body = br#"{"specversion":"1.0","\u0069d":"e\"1","source":"\/shop\u00e9","type":"order.placed","subject":"order/PO-1"}"#;
        let incoming = parse_structured(body)?;
        assert_eq!(incoming.event.id, "e\"1");
        assert_eq!(incoming.event.source, "/shop\u{e9}");
        assert_eq!(incoming.event.event_type, "order.placed");
        // An escaped name that repeats a plain one is a repeat.
        let body = br#"{"specversion":"1.0","id":"a","\u0069d":"b","source":"s","type":"t"}"#;
        assert!(matches!(
            parse_structured(body),
            Err(CloudEventError::DuplicateAttribute { attribute }) if attribute == "id"
        ));
        Ok(())
    }

    #[test]
    fn repeated_member_is_refused() {
        let body = br#"{"specversion":"1.0","id":"1","id":"2","source":"s","type":"t","subject":"s"}"#;
        assert!(matches!(
            parse_structured(body),
            Err(CloudEventError::DuplicateAttribute { .. })
        ));
        let body = br#"{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"s","data":1,"data":2}"#;
        assert!(matches!(
            parse_structured(body),
            Err(CloudEventError::DuplicateAttribute { .. })
        ));
    }

    #[test]
    fn invalid_attribute_name_is_refused() {
        let err = parse(json!({"my_ext": "x"})).expect_err("underscore");
        assert_eq!(err.attribute(), Some("my_ext"));
        let err = parse(json!({"Tenant": "x"})).expect_err("upper case");
        assert!(matches!(err, CloudEventError::InvalidAttributeName { .. }), "{err}");
    }

    #[test]
    fn json_data_is_stored_compact_as_written() {
        let body = br#"{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"s",
            "data": { "z" : 1.50, "a" : [ 1, 2 ], "s": "keep  \" spaces\\" , "big": 123456789012345678901234567890 }}"#;
        let event = parse_structured(body).expect("valid event").event;
        assert_eq!(event.content_type, "application/json");
        assert_eq!(
            &event.data[..],
            br#"{"z":1.50,"a":[1,2],"s":"keep  \" spaces\\","big":123456789012345678901234567890}"#
        );
    }

    #[test]
    fn json_content_types_keep_data_as_json() {
        let event = parse(json!({"datacontenttype": "application/vnd.order+json", "data": "text"}))
            .expect("valid")
            .event;
        assert_eq!(&event.data[..], br#""text""#, "a JSON string stays a JSON document");
        assert_eq!(event.content_type, "application/vnd.order+json");
        let event = parse(json!({"data": null})).expect("valid").event;
        assert_eq!(&event.data[..], b"null");
    }

    #[test]
    fn string_data_with_other_content_type_is_stored_as_text() {
        let event = parse(json!({"datacontenttype": "text/plain", "data": "héllo \"world\""}))
            .expect("valid")
            .event;
        assert_eq!(&event.data[..], "héllo \"world\"".as_bytes());
        assert_eq!(event.content_type, "text/plain");
        let err = parse(json!({"datacontenttype": "text/plain", "data": {"a": 1}})).expect_err("object as text");
        assert_eq!(
            err.to_string(),
            r#"attribute `data` must be a string (datacontenttype "text/plain" is not JSON), found an object"#
        );
        // A datacontenttype that is no media type is named as the problem.
        let err = parse(json!({"datacontenttype": "not a media type", "data": {"a": 1}})).expect_err("no media type");
        assert_eq!(
            err.to_string(),
            r#"attribute `datacontenttype` has an invalid value "not a media type": not a media type (type/subtype, e.g. application/json)"#
        );
    }

    #[test]
    fn data_base64_is_decoded() {
        let event = parse(json!({"data": "<remove>", "data_base64": "AAH/"}))
            .expect("valid")
            .event;
        assert_eq!(&event.data[..], [0, 1, 255]);
        assert_eq!(event.content_type, "application/octet-stream");
        let event =
            parse(json!({"data": "<remove>", "data_base64": "AAH/", "datacontenttype": "application/protobuf"}))
                .expect("valid")
                .event;
        assert_eq!(event.content_type, "application/protobuf");
        let event = parse(json!({"data": "<remove>", "data_base64": null}))
            .expect("valid")
            .event;
        assert!(event.data.is_empty() && event.content_type.is_empty());
    }

    #[test]
    fn bad_base64_is_refused() {
        for bad in ["not base64!", "AAH", "AA=H"] {
            let err = parse(json!({"data": "<remove>", "data_base64": bad})).expect_err(bad);
            assert_eq!(err.attribute(), Some("data_base64"), "{err}");
            assert!(err.to_string().contains("not standard base64"), "{err}");
        }
    }

    #[test]
    fn data_and_data_base64_together_are_refused() {
        let err = parse(json!({"data_base64": "AAH/"})).expect_err("both");
        assert!(matches!(err, CloudEventError::DataConflict));
        assert_eq!(
            err.to_string(),
            "an event carries either `data` or `data_base64`, not both"
        );
    }

    #[test]
    fn no_data_means_empty_data() {
        let event = parse(json!({"data": "<remove>"})).expect("valid").event;
        assert!(event.data.is_empty() && event.content_type.is_empty());
    }

    #[test]
    fn stream_from_data_when_there_is_no_subject() {
        let incoming = parse(json!({"subject": "<remove>"})).expect("valid");
        assert_eq!(incoming.stream, "order/PO-1");
        let err = parse(json!({"subject": "<remove>", "data": {"sku": "X"}})).expect_err("no key");
        assert!(
            err.to_string()
                .starts_with("missing subject: the stream is taken from the CloudEvents `subject`"),
            "{err}"
        );
        assert!(err.to_string().contains("`order_id`"), "{err}");
    }

    #[test]
    fn batch_parses_every_event() {
        let first = with(json!({}));
        let second = with(json!({"id": "e-2", "subject": "<remove>", "data": {"order_id": 7}}));
        let body = [&b"[\n"[..], &first, b",", &second, b"]"].concat();
        let batch = parse_batch(&body).expect("valid batch");
        assert_eq!(batch.len(), 2);
        assert_eq!(
            (batch[0].stream.as_str(), batch[1].stream.as_str()),
            ("order/PO-1", "order/7")
        );
        assert!(parse_batch(b" [ ] ").expect("empty batch").is_empty());
    }

    #[test]
    fn batch_error_names_the_index() {
        let events = [
            with(json!({})),
            with(json!({"id": "e-2"})),
            with(json!({"id": "<remove>"})),
        ];
        let body = [&b"["[..], &events[0], b",", &events[1], b",", &events[2], b"]"].concat();
        let err = parse_batch(&body).expect_err("third event has no id");
        assert_eq!(err.to_string(), "event [2]: missing required attribute `id`");
        assert_eq!((err.batch_index(), err.attribute()), (Some(2), Some("id")));
        let err = parse_batch(br#"[{"specversion":"1.0"}, 5]"#).expect_err("first invalid");
        assert_eq!(err.batch_index(), Some(0));
        let err = parse_batch(br#"[5]"#).expect_err("not an object");
        assert!(
            err.to_string()
                .starts_with("event [0]: invalid JSON: invalid type: integer `5`, expected a JSON object"),
            "{err}"
        );
    }

    #[test]
    fn batch_must_be_an_array() {
        let err = parse_batch(&with(json!({}))).expect_err("an object");
        assert!(
            err.to_string().contains("expected a JSON array of CloudEvents"),
            "{err}"
        );
        assert_eq!(err.batch_index(), None);
        assert!(matches!(parse_batch(b"[{}"), Err(CloudEventError::Json(_))));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let body = format!(r#"{{"specversion":"1.0","id":"1","source":"s","type":"t","data":{deep}}}"#);
        let err = parse_structured(body.as_bytes()).expect_err("no stream in a deep array");
        assert!(
            matches!(err, CloudEventError::MissingSubject { .. } | CloudEventError::Json(_)),
            "{err}"
        );
        let body = format!(r#"{{"specversion":"1.0","id":"1","source":"s","type":"t","x":{deep}}}"#);
        assert!(parse_structured(body.as_bytes()).is_err());
    }

    #[test]
    fn compact_json_removes_only_insignificant_whitespace() {
        assert_eq!(
            compact_json(" { \"a b\" : [ 1 , \"\\\\\" , \"\\\" x\" ] }\n"),
            br#"{"a b":[1,"\\","\" x"]}"#
        );
        // Never given unterminated strings (the data was parsed first), but no panic.
        for broken in ["\"ab\\", "\"a b", "\"\\\\\\"] {
            assert_eq!(compact_json(broken), broken.as_bytes());
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            // Spaces, quotes, backslashes and control characters inside strings.
            "[ a\"\\\\\t\n\u{1}é{}:,\\[\\]]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[ a\"\\\\]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The quick scan, where it answers, reads the members serde_json reads (names,
    /// raw values), and a value it calls compact is.
    fn quick_is_serde(text: &[u8]) -> Result<(), proptest::test_runner::TestCaseError> {
        use proptest::prop_assert_eq;
        let Some(Members(quick)) = plain_members(text) else {
            return Ok(());
        };
        let Members(slow) = serde_json::from_slice::<Members<'_>>(text).map_err(|e| {
            proptest::test_runner::TestCaseError::fail(format!(
                "the quick scan took what serde_json refuses ({e}): {}",
                String::from_utf8_lossy(text)
            ))
        })?;
        prop_assert_eq!(quick.len(), slow.len());
        for (quick, slow) in quick.iter().zip(&slow) {
            prop_assert_eq!(&quick.name, &slow.name);
            prop_assert_eq!(quick.raw, slow.raw);
            if quick.compact {
                prop_assert_eq!(compact_json(quick.raw), quick.raw.as_bytes());
            }
        }
        Ok(())
    }

    #[test]
    fn usual_events_are_read_by_the_quick_scan() {
        let event = br#"{"specversion":"1.0","id":"n-1","source":"opsflow-bench/nats","type":"order.placed","subject":"bench/s-1","data":{"order_id":"PO-1","amount_cents":1200,"lines":[{"sku":"a b","qty":2.5}],"paid":true,"note":null}}"#;
        let Some(Members(members)) = plain_members(event) else {
            panic!("a usual event is left to serde_json");
        };
        assert_eq!(members.len(), 6);
        assert!(members.iter().all(|m| m.compact));
        let pretty: Value = serde_json::from_slice(event).expect("JSON");
        let pretty = serde_json::to_vec_pretty(&pretty).expect("serializable");
        let Some(Members(members)) = plain_members(&pretty) else {
            panic!("a pretty-printed event is left to serde_json");
        };
        let data = members.iter().find(|m| m.name == "data").expect("data");
        assert!(!data.compact, "{}", data.raw);
        assert!(members.iter().filter(|m| m.name != "data").all(|m| m.compact));
        // Left to serde_json: escapes in names, `\u` escapes, exponents.
        for hard in [
            &br#"{"spec\u0076ersion":"1.0"}"#[..],
            br#"{"s\"":"1.0"}"#,
            br#"{"id":"\u00e9"}"#,
            br#"{"data":1e3}"#,
        ] {
            assert!(plain_members(hard).is_none(), "{}", String::from_utf8_lossy(hard));
            quick_is_serde(hard).expect("same members");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_quick_scan_reads_members_as_serde_json_does(
            members in proptest::collection::vec(("[a-z\"\\\\é ]{0,6}", json_value()), 0..6),
            pretty in proptest::prelude::any::<bool>(),
            change in proptest::option::of((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>())),
        ) {
            // Written member by member, so that names may repeat.
            let write = |value: &Value| if pretty {
                serde_json::to_string_pretty(value)
            } else {
                serde_json::to_string(value)
            }.expect("serializable");
            let gap = if pretty { "\n  " } else { "" };
            let members: Vec<String> = members
                .iter()
                .map(|(name, value)| format!("{gap}{}:{}{}", write(&Value::from(name.as_str())), if pretty { " " } else { "" }, write(value)))
                .collect();
            let mut text = format!("{{{}{gap}}}", members.join(",")).into_bytes();
            quick_is_serde(&text)?;
            // Any one byte changed: the scan still never takes what serde_json would not.
            if let Some((at, byte)) = change && !text.is_empty() {
                let at = at.index(text.len());
                text[at] = byte;
                quick_is_serde(&text)?;
            }
        }

        #[test]
        fn compact_json_of_pretty_json_is_compact_json(value in json_value()) {
            let pretty = serde_json::to_string_pretty(&value).expect("serializable");
            let compact = serde_json::to_string(&value).expect("serializable");
            proptest::prop_assert_eq!(String::from_utf8(compact_json(&pretty)).expect("UTF-8"), compact);
        }
    }
}
