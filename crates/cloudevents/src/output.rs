//! Recorded events as JSON: the read representation (HTTP reads, the CLI) and
//! structured-mode CloudEvents (outbound publishing, exports).

use std::cell::Cell;

use base64::Engine;
use opsflow_log::{JSON, RecordedEvent, UnixNanos};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::attributes::is_attribute_name;
use crate::media;

/// Attribute names `recorded_to_cloudevent` and `recorded_to_protobuf` set
/// themselves (or must never take from metadata); metadata entries with these
/// names are not copied.
pub(crate) const RESERVED: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "data",
    "position",
    "streamversion",
    "recordedat",
    "correlationid",
    "causationid",
    "expectedversion",
];

/// The JSON read representation of a recorded event (HTTP reads, the CLI).
///
/// Members: `position`, `stream`, `version`, `id`, `source`, `type`, `time` and
/// `recorded_at` (RFC 3339), `content_type`, `correlation_id`, `causation_id` and
/// `metadata` (only when not empty), `prev_hash` and `hash` (lowercase hex), then
/// `data`: the recorded JSON text as it is when the content type is JSON and a
/// strict parser reads it (as [`recorded_to_cloudevent`] gives it), so that large
/// numbers keep their digits and the bytes the hash chain covers are what a reader
/// gets; else `data_base64` (neither when there is no data).
///
/// Raw JSON: serialize it (axum's `Json`, `serde_json::to_writer`), never turn it
/// into a [`Value`], which would round such numbers again.
pub fn recorded_to_json(event: &RecordedEvent) -> Box<RawValue> {
    let mut members = object(json!({
        "position": event.position,
        "stream": event.stream,
        "version": event.version,
        "id": event.id,
        "source": event.source,
        "type": event.event_type,
        "time": rfc3339(event.time),
        "recorded_at": rfc3339(event.recorded_at),
        "content_type": event.content_type,
        "prev_hash": hex(&event.prev_hash),
        "hash": hex(&event.hash),
    }));
    let data = json_text(event);
    if data.is_none() && !event.data.is_empty() {
        members.insert("data_base64".into(), base64(&event.data));
    }
    insert_non_empty(&mut members, "correlation_id", &event.correlation_id);
    insert_non_empty(&mut members, "causation_id", &event.causation_id);
    if !event.metadata.is_empty() {
        members.insert("metadata".into(), json!(event.metadata));
    }
    let members = Value::Object(members);
    let Some(data) = data else {
        return serde_json::value::to_raw_value(&members).unwrap_or_default();
    };
    let mut text = members.to_string();
    // `text` is a non-empty object: its last byte is the closing brace.
    text.pop();
    text.reserve(data.len() + 9);
    text.push_str(",\"data\":");
    push_compact(&mut text, data);
    text.push('}');
    // Well-formed by construction (the data was checked); should it ever not be,
    // the other members still are the event.
    RawValue::from_string(text)
        .or_else(|_| serde_json::value::to_raw_value(&members))
        .unwrap_or_default()
}

/// A recorded event as a structured-mode CloudEvent (JSON format).
///
/// `specversion` 1.0, `id`, `source`, `type`, `subject` (the stream), `time`,
/// `datacontenttype` (when known), then `data` as a JSON value (JSON content
/// types), as a string (text and XML content types that are UTF-8) or
/// `data_base64` (anything else). Extensions: `position` and `streamversion` (as
/// strings: CloudEvents integers are 32-bit), `recordedat` (RFC 3339),
/// `correlationid` and `causationid` (when not empty), and every metadata entry
/// whose name is a valid attribute name not already used (so a `dataschema`
/// recorded from an incoming event is given back as `dataschema`).
///
/// Written straight to JSON bytes: well-formed JSON data is copied as written,
/// never parsed into a tree.
pub fn recorded_to_cloudevent(event: &RecordedEvent) -> Vec<u8> {
    let mut out = MemberWriter(Vec::with_capacity(event.data.len() + 320));
    out.0.extend_from_slice(br#"{"specversion":"1.0""#);
    out.string("id", &event.id);
    out.string("source", &event.source);
    out.string("type", &event.event_type);
    out.string("subject", &event.stream);
    out.time("time", event.time);
    let content_type = effective_content_type(event);
    if !content_type.is_empty() {
        out.string("datacontenttype", content_type);
    }
    if !event.data.is_empty() {
        // Only JSON that a strict parser reads (no lone surrogates, numbers in
        // range) goes out as `data`, copied as recorded; anything else as a string
        // (text content types) or `data_base64`.
        if media::is_json(content_type) && opsflow_catalog::is_json(&event.data) {
            out.name("data");
            out.0.extend_from_slice(&event.data);
        } else if media::is_text(content_type)
            && let Ok(text) = std::str::from_utf8(&event.data)
        {
            out.string("data", text);
        } else {
            out.string("data_base64", &base64_text(&event.data));
        }
    }
    out.decimal("position", event.position);
    out.decimal("streamversion", event.version);
    out.time("recordedat", event.recorded_at);
    if !event.correlation_id.is_empty() {
        out.string("correlationid", &event.correlation_id);
    }
    if !event.causation_id.is_empty() {
        out.string("causationid", &event.causation_id);
    }
    for (name, value) in &event.metadata {
        if is_attribute_name(name) && !RESERVED.contains(&name.as_str()) {
            out.string(name, value);
        }
    }
    out.0.push(b'}');
    out.0
}

/// A JSON object being written member by member after its first member. Written
/// directly rather than through a serializer so that JSON data, checked once, is
/// copied as it is (a serializer takes raw JSON only as a `RawValue`, which would
/// parse it a second time).
struct MemberWriter(Vec<u8>);

impl MemberWriter {
    /// `,"name":`; names are attribute names (lower-case letters and digits), which
    /// need no escaping.
    fn name(&mut self, name: &str) {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    fn string(&mut self, name: &str, value: &str) {
        self.name(name);
        if opsflow_catalog::json_string_stop(value.as_bytes()).is_none() {
            // Nothing to escape (a quote, a backslash, a control character).
            self.0.push(b'"');
            self.0.extend_from_slice(value.as_bytes());
            self.0.push(b'"');
        } else {
            // Writing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.0, value);
        }
    }

    /// An RFC 3339 time (see [`write_rfc3339`]), which needs no escaping.
    fn time(&mut self, name: &str, nanos: UnixNanos) {
        self.name(name);
        self.0.push(b'"');
        write_rfc3339(&mut self.0, nanos);
        self.0.push(b'"');
    }

    /// An integer as a decimal string (CloudEvents integers are 32-bit).
    fn decimal(&mut self, name: &str, value: u64) {
        self.name(name);
        self.0.push(b'"');
        write_digits(&mut self.0, value, 0);
        self.0.push(b'"');
    }
}

/// `value` in decimal, padded with zeros to `width` digits.
fn write_digits(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while value > 0 || start == digits.len() {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    start = start.min(digits.len().saturating_sub(width));
    out.extend_from_slice(&digits[start..]);
}

/// [`rfc3339`] appended to `out`, without the formatting machinery (every outbound
/// event has two times): `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, the fraction without
/// trailing zeros, as jiff writes it.
fn write_rfc3339(out: &mut Vec<u8>, nanos: UnixNanos) {
    // An outbound event's two times are mostly its group's commit time, which the
    // events around it share: the last one written on this thread is kept.
    thread_local! {
        static LAST: Cell<(UnixNanos, [u8; RFC3339_MAX], usize)> = const { Cell::new((0, [0; RFC3339_MAX], 0)) };
    }
    let (last, text, len) = LAST.get();
    if last == nanos && len > 0 {
        out.extend_from_slice(&text[..len]);
        return;
    }
    let (text, len) = rfc3339_text(nanos);
    LAST.set((nanos, text, len));
    out.extend_from_slice(&text[..len]);
}

/// The longest [`rfc3339_text`]: `YYYY-MM-DDTHH:MM:SS.fffffffffZ`.
const RFC3339_MAX: usize = 30;

/// `nanos` as `YYYY-MM-DDTHH:MM:SS[.fraction]Z` in a buffer, and its length.
fn rfc3339_text(nanos: UnixNanos) -> ([u8; RFC3339_MAX], usize) {
    const NANOS: i64 = 1_000_000_000;
    let (seconds, fraction) = (nanos.div_euclid(NANOS), nanos.rem_euclid(NANOS));
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = opsflow_log::civil_from_days(days);
    // Filled in place: one copy into `out`, not a push per digit.
    let mut text = *b"0000-00-00T00:00:00.000000000Z";
    // Unix nanoseconds in an i64 span the years 1677 to 2262: four digits, positive.
    let fields = [
        (0, 4, year.unsigned_abs()),
        (5, 2, month.unsigned_abs()),
        (8, 2, day.unsigned_abs()),
        (11, 2, (second_of_day / 3600).unsigned_abs()),
        (14, 2, (second_of_day / 60 % 60).unsigned_abs()),
        (17, 2, (second_of_day % 60).unsigned_abs()),
        (20, 9, fraction.unsigned_abs()),
    ];
    for (at, width, mut value) in fields {
        for digit in text[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    // The fraction without its trailing zeros, and without its dot when zero.
    let end = match text[20..29].iter().rposition(|&d| d != b'0') {
        Some(last) => 21 + last,
        None => 19,
    };
    text[end] = b'Z';
    (text, end + 1)
}

/// The members of an object literal built with `json!`.
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(members) => members,
        _ => Map::new(),
    }
}

/// The log records events with data and no content type as JSON.
pub(crate) fn effective_content_type(event: &RecordedEvent) -> &str {
    if event.content_type.is_empty() && !event.data.is_empty() {
        JSON
    } else {
        &event.content_type
    }
}

/// Pushes JSON text `json` without the whitespace between its tokens, so that an
/// event is one line (the CLI prints one per line) whatever the producer's layout;
/// strings, numbers and members stay as written.
fn push_compact(out: &mut String, json: &str) {
    let mut in_string = false;
    let mut escaped = false;
    let mut from = 0;
    for (i, byte) in json.bytes().enumerate() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if byte == b'"' {
            in_string = true;
        } else if matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            out.push_str(&json[from..i]);
            from = i + 1;
        }
    }
    out.push_str(&json[from..]);
}

/// The data as JSON text, when its content type is JSON and a strict parser reads
/// it (no lone surrogates, numbers in range).
fn json_text(event: &RecordedEvent) -> Option<&str> {
    if event.data.is_empty() || !media::is_json(effective_content_type(event)) || !opsflow_catalog::is_json(&event.data)
    {
        return None;
    }
    std::str::from_utf8(&event.data).ok()
}

fn insert_non_empty(members: &mut Map<String, Value>, name: &str, value: &str) {
    if !value.is_empty() {
        members.insert(name.to_owned(), Value::String(value.to_owned()));
    }
}

/// RFC 3339 in UTC, with as many fractional digits as needed.
fn rfc3339(nanos: UnixNanos) -> String {
    let mut out = Vec::with_capacity(30);
    write_rfc3339(&mut out, nanos);
    // Digits and ASCII separators only.
    String::from_utf8(out).unwrap_or_default()
}

fn base64(data: &[u8]) -> Value {
    Value::String(base64_text(data))
}

fn base64_text(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;

    use super::*;
    use crate::parse_structured;

    fn recorded() -> RecordedEvent {
        crate::fixtures::recorded_order(br#"{"order_id":"PO-1","total":12}"#)
    }

    /// The read representation, parsed (for tests that compare members).
    fn read(event: &RecordedEvent) -> Value {
        serde_json::from_str(recorded_to_json(event).get()).expect("valid JSON")
    }

    fn cloudevent(event: &RecordedEvent) -> Value {
        serde_json::from_slice(&recorded_to_cloudevent(event)).expect("valid JSON")
    }

    #[test]
    fn read_representation() {
        let value = read(&recorded());
        assert_eq!(
            value,
            json!({
                "position": 42,
                "stream": "order/PO-1",
                "version": 3,
                "id": "e-1",
                "source": "/shop",
                "type": "order.placed",
                "time": "2024-05-01T10:00:00.5Z",
                "recorded_at": "2024-05-01T10:00:01Z",
                "content_type": "application/json",
                "data": {"order_id": "PO-1", "total": 12},
                "prev_hash": "0".repeat(64),
                "hash": "ab".repeat(32),
            })
        );
    }

    /// JSON data is read back as recorded: a reader over HTTP got
    /// `1.2345678901234568e+29` for `123456789012345678901234567890`, and one member
    /// of two with the same name, while gRPC and NATS gave the recorded text.
    #[test]
    fn read_representation_gives_json_data_as_recorded() {
        let data = br#"{"big":123456789012345678901234567890,"f":1.0000000000000000001,"n":-18446744073709551617,"dup":1,"dup":2}"#;
        let event = crate::fixtures::recorded_order(data);
        let text = recorded_to_json(&event).get().to_owned();
        let recorded = std::str::from_utf8(data).expect("UTF-8");
        assert!(text.ends_with(&format!(",\"data\":{recorded}}}")), "{text}");
        // On one line whatever the layout, strings as written (`opsflow tail -o json`
        // printed an event over several lines).
        let laid_out = crate::fixtures::recorded_order(b"{\r\n  \"a\" : [1,\n 2],\t\"s\": \"x y\\\" \\\\\" } \n");
        let text = recorded_to_json(&laid_out).get().to_owned();
        assert!(text.ends_with(r#","data":{"a":[1,2],"s":"x y\" \\"}}"#), "{text}");
        assert_eq!(read(&event)["position"], 42);
        // What a strict parser refuses goes as base64, as recorded_to_cloudevent does.
        for refused in [&br#"{"s":"\ud800"}"#[..], br#"{"e":1e400}"#] {
            let event = crate::fixtures::recorded_order(refused);
            let value = read(&event);
            assert!(value.get("data").is_none(), "{value}");
            assert!(value["data_base64"].is_string(), "{value}");
        }
    }

    #[test]
    fn read_representation_includes_ids_and_metadata_when_set() {
        let event = RecordedEvent {
            correlation_id: "c".into(),
            causation_id: "k".into(),
            metadata: BTreeMap::from([("tenant".to_owned(), "acme".to_owned())]),
            ..recorded()
        };
        let value = read(&event);
        assert_eq!(value["correlation_id"], "c");
        assert_eq!(value["causation_id"], "k");
        assert_eq!(value["metadata"], json!({"tenant": "acme"}));
    }

    #[test]
    fn read_representation_of_binary_and_broken_json_data_is_base64() {
        let event = RecordedEvent {
            content_type: "application/protobuf".into(),
            data: Bytes::from_static(&[0, 1, 255]),
            ..recorded()
        };
        let value = read(&event);
        assert_eq!(value["data_base64"], "AAH/");
        assert!(value.get("data").is_none());
        let broken = RecordedEvent {
            data: Bytes::from_static(b"{nope"),
            ..recorded()
        };
        assert_eq!(read(&broken)["data_base64"], "e25vcGU=");
        let empty = RecordedEvent {
            data: Bytes::new(),
            ..recorded()
        };
        let value = read(&empty);
        assert!(value.get("data").is_none() && value.get("data_base64").is_none());
    }

    #[test]
    fn cloudevent_carries_the_log_attributes_as_extensions() {
        let event = RecordedEvent {
            correlation_id: "c".into(),
            metadata: BTreeMap::from([
                ("tenant".to_owned(), "acme".to_owned()),
                ("dataschema".to_owned(), "https://example.com/s".to_owned()),
                ("Bad_Name".to_owned(), "skipped".to_owned()),
                ("position".to_owned(), "forged".to_owned()),
                ("expectedversion".to_owned(), "0".to_owned()),
            ]),
            ..recorded()
        };
        assert_eq!(
            cloudevent(&event),
            json!({
                "specversion": "1.0",
                "id": "e-1",
                "source": "/shop",
                "type": "order.placed",
                "subject": "order/PO-1",
                "time": "2024-05-01T10:00:00.5Z",
                "datacontenttype": "application/json",
                "data": {"order_id": "PO-1", "total": 12},
                "position": "42",
                "streamversion": "3",
                "recordedat": "2024-05-01T10:00:01Z",
                "correlationid": "c",
                "tenant": "acme",
                "dataschema": "https://example.com/s",
            })
        );
    }

    #[test]
    fn cloudevent_data_forms() {
        let text = RecordedEvent {
            content_type: "text/plain".into(),
            data: Bytes::from_static("héllo".as_bytes()),
            ..recorded()
        };
        assert_eq!(cloudevent(&text)["data"], "héllo");
        let binary = RecordedEvent {
            content_type: "application/protobuf".into(),
            data: Bytes::from_static(b"\x08\x01"),
            ..recorded()
        };
        let value = cloudevent(&binary);
        assert_eq!(
            (&value["data_base64"], &value["datacontenttype"]),
            (&json!("CAE="), &json!("application/protobuf"))
        );
        let untyped = RecordedEvent {
            content_type: String::new(),
            ..recorded()
        };
        let value = cloudevent(&untyped);
        assert_eq!(value["datacontenttype"], "application/json");
        assert_eq!(value["data"]["order_id"], "PO-1");
        let empty = RecordedEvent {
            content_type: String::new(),
            data: Bytes::new(),
            ..recorded()
        };
        let value = cloudevent(&empty);
        assert!(value.get("datacontenttype").is_none() && value.get("data").is_none());
    }

    #[test]
    fn cloudevent_sends_json_a_strict_parser_refuses_as_base64() {
        for data in [&br#"{"x":1e999}"#[..], br#"{"s":"\ud800"}"#] {
            let event = RecordedEvent {
                data: Bytes::copy_from_slice(data),
                ..recorded()
            };
            let value = cloudevent(&event);
            assert!(value.get("data").is_none(), "{value}");
            assert!(value.get("data_base64").is_some(), "{value}");
        }
    }

    #[test]
    fn cloudevent_copies_json_data_as_written_and_falls_back_to_base64_when_broken() {
        let written = RecordedEvent {
            data: Bytes::from_static(br#"{ "big": 123456789012345678901234567890 }"#),
            ..recorded()
        };
        let body = String::from_utf8(recorded_to_cloudevent(&written)).expect("UTF-8");
        assert!(
            body.contains(r#""data":{ "big": 123456789012345678901234567890 }"#),
            "{body}"
        );
        let broken = RecordedEvent {
            data: Bytes::from_static(b"{nope"),
            ..recorded()
        };
        let value = cloudevent(&broken);
        assert_eq!(value["data_base64"], "e25vcGU=");
        assert!(value.get("data").is_none());
    }

    #[test]
    fn cloudevent_parses_back_to_the_same_event() {
        for event in [
            RecordedEvent {
                correlation_id: "c".into(),
                causation_id: "k".into(),
                ..recorded()
            },
            RecordedEvent {
                content_type: "text/plain".into(),
                data: Bytes::from_static(b"hi"),
                ..recorded()
            },
            RecordedEvent {
                content_type: "application/protobuf".into(),
                data: Bytes::from_static(&[9, 0]),
                ..recorded()
            },
        ] {
            let body = recorded_to_cloudevent(&event);
            let incoming = parse_structured(&body).expect("parses back");
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
        }
    }

    #[test]
    fn extreme_times_format() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // The hand-written form is jiff's, across the whole range.
        let jiff = |nanos: i64| jiff::Timestamp::from_nanosecond(i128::from(nanos)).unwrap().to_string();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let samples = (0..20_000).map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as i64
        });
        for nanos in samples.chain([
            0,
            1,
            -1,
            999_999_999,
            1_000_000_000,
            i64::MIN,
            i64::MAX,
            951_782_400 * 1_000_000_000,
            1_763_719_200_120_000_000,
        ]) {
            let mut fast = Vec::new();
            write_rfc3339(&mut fast, nanos);
            assert_eq!(String::from_utf8(fast).unwrap(), jiff(nanos), "{nanos}");
            for truncated in [
                nanos / 1000 * 1000,
                nanos / 1_000_000 * 1_000_000,
                nanos / 1_000_000_000 * 1_000_000_000,
            ] {
                let mut fast = Vec::new();
                write_rfc3339(&mut fast, truncated);
                assert_eq!(String::from_utf8(fast).unwrap(), jiff(truncated), "{truncated}");
            }
        }
        // The same time again, from the last one kept, and another after it.
        for nanos in [1_763_719_200_120_000_000, 1_763_719_200_120_000_000, 0, 0, -1, 5] {
            let mut again = Vec::new();
            write_rfc3339(&mut again, nanos);
            assert_eq!(String::from_utf8(again).unwrap(), jiff(nanos), "{nanos}");
        }
        let mut digits = Vec::new();
        write_digits(&mut digits, 0, 0);
        write_digits(&mut digits, u64::MAX, 0);
        write_digits(&mut digits, 7, 3);
        assert_eq!(digits, format!("0{}007", u64::MAX).as_bytes());
        assert!(rfc3339(i64::MIN).starts_with("1677-"));
        assert!(rfc3339(i64::MAX).starts_with("2262-"));
    }

    proptest::proptest! {
        #[test]
        fn strings_are_written_as_serde_json_writes_them(text in "[a \"\\\\\u{0}\u{1f}\u{7f}é😀/]{0,24}") {
            let mut out = MemberWriter(Vec::new());
            out.string("n", &text);
            let expected = format!(",\"n\":{}", serde_json::to_string(&text).expect("a string"));
            proptest::prop_assert_eq!(String::from_utf8(out.0).expect("UTF-8"), expected);
        }
    }
}
