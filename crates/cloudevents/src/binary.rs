//! Binary content mode of the HTTP binding: attributes in `ce-` headers, the data
//! in the body, its content type in `Content-Type`.

use std::borrow::Cow;

use bytes::Bytes;

use crate::attributes::{AttributeValue, Attributes, Payload};
use crate::error::{CloudEventError, Result};
use crate::{Incoming, media};

/// Parses a binary-mode CloudEvent of the HTTP binding, or of the NATS binding,
/// which maps headers the same way.
///
/// Every header named `ce-<attribute>` (any case) carries one attribute; other
/// headers are ignored. Values are unquoted when they are an HTTP quoted-string,
/// then percent-decoded once and must be UTF-8 (HTTP binding §3.1.3.2, NATS
/// binding 1.0.3 §3.1.3.2). The data
/// is `body`, its content type `content_type` (the `Content-Type` header);
/// `ce-datacontenttype` is refused, as the binding requires.
pub fn parse_binary<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Incoming> {
    parse(Binding::Http, headers, content_type, body)
}

/// Parses a binary-mode CloudEvent of the NATS binding: as [`parse_binary`], but
/// the data's content type is the `ce-datacontenttype` header (NATS binding
/// §3.1.3.1). A `Content-Type` header, as producers used to the HTTP binding send,
/// stands for it when it is absent, and must name the same media type when both
/// are present (`ce-datacontenttype`, with its parameters, is kept).
pub fn parse_nats_binary<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Incoming> {
    parse(Binding::Nats, headers, content_type, body)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Binding {
    Http,
    Nats,
}

fn parse<'a>(
    binding: Binding,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Incoming> {
    let mut attributes = Attributes::default();
    let mut declared: Option<String> = None;
    for (header, raw) in headers {
        let Some(attribute) = ce_attribute(header) else {
            continue;
        };
        if attribute == "datacontenttype" {
            if binding == Binding::Http {
                return Err(CloudEventError::NotAllowed {
                    attribute,
                    reason: "in binary mode the Content-Type header carries the data content type".into(),
                });
            }
            let value = decode_header_value(&attribute, raw)?;
            if declared.replace(value).is_some() {
                return Err(CloudEventError::duplicate(&attribute));
            }
            continue;
        }
        let value = decode_header_value(&attribute, raw)?;
        attributes.insert(attribute, AttributeValue::String(value.into()))?;
    }
    let content_type = content_type.map(str::trim).filter(|c| !c.is_empty());
    let data_type = match (declared, content_type) {
        (Some(declared), Some(header)) if !media::same_media_type(&declared, header) => {
            return Err(CloudEventError::invalid(
                "datacontenttype",
                &declared,
                format!("the Content-Type header says {header:?}; send one, or the same in both"),
            ));
        }
        (Some(declared), _) => Some(declared),
        (None, header) => header.map(str::to_owned),
    };
    if let Some(data_type) = data_type.filter(|c| !c.trim().is_empty()) {
        attributes.insert(
            "datacontenttype",
            AttributeValue::String(data_type.trim().to_owned().into()),
        )?;
    }
    attributes.into_incoming(Payload::Body(body))
}

/// `ce-Time` -> `time`; `None` for headers that are not CloudEvents attributes.
fn ce_attribute(header: &str) -> Option<String> {
    let prefix = header.get(..3)?;
    let name = header.get(3..)?;
    prefix.eq_ignore_ascii_case("ce-").then(|| name.to_ascii_lowercase())
}

/// Unquotes an HTTP quoted-string, then percent-decodes once into UTF-8.
fn decode_header_value(attribute: &str, raw: &[u8]) -> Result<String> {
    let invalid = |reason: &str| CloudEventError::invalid(attribute, &String::from_utf8_lossy(raw), reason);
    let unquoted = unquote(raw.trim_ascii());
    let mut decoded = Vec::with_capacity(unquoted.len());
    let mut bytes = unquoted.iter().copied();
    while let Some(byte) = bytes.next() {
        if byte != b'%' {
            decoded.push(byte);
            continue;
        }
        match (bytes.next().and_then(hex_digit), bytes.next().and_then(hex_digit)) {
            (Some(high), Some(low)) => decoded.push(high << 4 | low),
            _ => return Err(invalid("a `%` is not followed by two hex digits")),
        }
    }
    String::from_utf8(decoded).map_err(|_| invalid("not UTF-8 after percent-decoding"))
}

/// The content of an HTTP quoted-string (RFC 7230 §3.2.6), backslash escapes
/// resolved; other values unchanged.
fn unquote(value: &[u8]) -> Cow<'_, [u8]> {
    let Some(inner) = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")) else {
        return Cow::Borrowed(value);
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter().copied();
    while let Some(byte) = bytes.next() {
        match byte {
            b'\\' => out.extend(bytes.next()),
            other => out.push(other),
        }
    }
    Cow::Owned(out)
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static [u8])> {
        pairs.iter().map(|(name, value)| (*name, value.as_bytes())).collect()
    }

    const REQUIRED: [(&str, &str); 4] = [
        ("ce-specversion", "1.0"),
        ("ce-id", "e-1"),
        ("ce-source", "/shop"),
        ("ce-type", "order.placed"),
    ];

    fn parse(
        extra: &[(&'static str, &'static str)],
        content_type: Option<&str>,
        body: &'static [u8],
    ) -> Result<Incoming> {
        let mut all = headers(&REQUIRED);
        all.extend(headers(extra));
        parse_binary(all, content_type, Bytes::from_static(body))
    }

    #[test]
    fn attributes_come_from_ce_headers_in_any_case() {
        let incoming = parse(
            &[
                ("CE-Subject", "order/PO-1"),
                ("Ce-Time", "2024-05-01T10:00:00Z"),
                ("ce-correlationid", "c-1"),
                ("ce-causationid", "k-1"),
                ("ce-expectedversion", "no_stream"),
                ("ce-tenant", "acme"),
                ("ce-dataschema", "https://example.com/order.json"),
                ("x-request-id", "ignored"),
            ],
            Some("application/json; charset=utf-8"),
            br#"{"total": 10}"#,
        )
        .expect("valid event");
        assert_eq!(incoming.stream, "order/PO-1");
        assert_eq!(incoming.expected, Some(opsflow_log::ExpectedVersion::NoStream));
        let event = incoming.event;
        assert_eq!((event.id.as_str(), event.source.as_str()), ("e-1", "/shop"));
        assert_eq!(event.time, Some(1_714_557_600_000_000_000));
        assert_eq!(event.content_type, "application/json; charset=utf-8");
        assert_eq!(&event.data[..], br#"{"total": 10}"#, "binary data is stored as sent");
        assert_eq!(
            (event.correlation_id.as_str(), event.causation_id.as_str()),
            ("c-1", "k-1")
        );
        assert_eq!(event.metadata.get("tenant").map(String::as_str), Some("acme"));
        assert_eq!(
            event.metadata.get("dataschema").map(String::as_str),
            Some("https://example.com/order.json")
        );
        assert_eq!(event.metadata.len(), 2);
    }

    #[test]
    fn header_values_are_percent_decoded() {
        let incoming = parse(
            &[
                ("ce-subject", "order/PO-1"),
                ("ce-note", "Euro%20%E2%82%ac%20%F0%9F%98%80"),
                ("ce-pct", "100%25"),
            ],
            None,
            b"",
        )
        .expect("valid event");
        assert_eq!(incoming.event.metadata["note"], "Euro \u{20ac} \u{1f600}");
        assert_eq!(incoming.event.metadata["pct"], "100%");
    }

    #[test]
    fn quoted_header_values_are_unquoted_first() {
        let incoming = parse(
            &[("ce-subject", "order/PO-1"), ("ce-note", r#" "a \"b\" %41" "#)],
            None,
            b"",
        )
        .expect("valid event");
        assert_eq!(incoming.event.metadata["note"], r#"a "b" A"#);
    }

    #[test]
    fn bad_percent_encoding_is_refused_naming_the_attribute() {
        for bad in ["50%", "%G1", "%4", "%C0%A0", "%FF"] {
            let err = parse(&[("ce-subject", "order/PO-1"), ("ce-note", bad)], None, b"").expect_err(bad);
            assert_eq!(err.attribute(), Some("note"), "{bad}: {err}");
        }
    }

    #[test]
    fn ce_data_is_not_an_attribute() {
        let err = parse(&[("ce-subject", "order/PO-1"), ("ce-data", "x")], None, b"").expect_err("ce-data");
        assert_eq!(err.attribute(), Some("data"), "{err}");
        assert!(err.to_string().contains("the event's payload"), "{err}");
    }

    #[test]
    fn ce_datacontenttype_is_not_allowed() {
        let err = parse(
            &[("ce-subject", "s"), ("ce-datacontenttype", "application/json")],
            None,
            b"{}",
        )
        .expect_err("not allowed");
        assert!(matches!(err, CloudEventError::NotAllowed { .. }), "{err}");
        assert_eq!(err.attribute(), Some("datacontenttype"));
    }

    /// NATS binding §3.1.3.1: `datacontenttype` maps to `ce-datacontenttype`.
    #[test]
    fn nats_binary_mode_takes_ce_datacontenttype() {
        let nats = |extra: &[(&'static str, &'static str)], content_type: Option<&str>| {
            let mut all = headers(&REQUIRED);
            all.extend(headers(extra));
            parse_nats_binary(all, content_type, Bytes::from_static(br#"{"order_id": "PO-1"}"#))
        };
        let event = nats(&[("CE-DataContentType", "application/json")], None).expect("spec example");
        assert_eq!(event.event.content_type, "application/json");
        assert_eq!(event.stream, "order/PO-1");
        // A Content-Type header, as HTTP-minded producers send, alone or agreeing.
        let event = nats(&[], Some("application/json")).expect("Content-Type alone");
        assert_eq!(event.event.content_type, "application/json");
        let event = nats(
            &[("ce-datacontenttype", "application/json; charset=utf-8")],
            Some("Application/JSON"),
        )
        .expect("both, same media type");
        assert_eq!(event.event.content_type, "application/json; charset=utf-8");
        let err = nats(&[("ce-datacontenttype", "application/json")], Some("text/plain")).expect_err("disagree");
        assert_eq!(err.attribute(), Some("datacontenttype"));
        assert!(err.to_string().contains("text/plain"), "{err}");
        let err = nats(
            &[
                ("ce-datacontenttype", "application/json"),
                ("ce-datacontenttype", "application/json"),
            ],
            None,
        )
        .expect_err("twice");
        assert!(matches!(err, CloudEventError::DuplicateAttribute { .. }), "{err}");
    }

    #[test]
    fn missing_headers_are_named() {
        for missing in ["ce-specversion", "ce-id", "ce-source", "ce-type"] {
            let all: Vec<_> = headers(&REQUIRED)
                .into_iter()
                .filter(|(name, _)| *name != missing)
                .collect();
            let err = parse_binary(all, None, Bytes::new()).expect_err(missing);
            assert_eq!(
                err.to_string(),
                format!("missing required attribute `{}`", &missing[3..])
            );
        }
    }

    #[test]
    fn stream_rule_applies_to_json_bodies() {
        let incoming = parse(&[], Some("application/json"), br#"{"order_id": "PO-9"}"#).expect("valid event");
        assert_eq!(incoming.stream, "order/PO-9");
        let err = parse(&[], Some("application/octet-stream"), br#"{"order_id": "PO-9"}"#).expect_err("not JSON");
        assert!(matches!(err, CloudEventError::MissingSubject { .. }), "{err}");
    }

    #[test]
    fn invalid_header_names_and_repeats_are_refused() {
        let err = parse(&[("ce-subject", "s"), ("ce-my_ext", "x")], None, b"").expect_err("bad name");
        assert!(matches!(err, CloudEventError::InvalidAttributeName { .. }), "{err}");
        let err = parse(&[("ce-subject", "s"), ("CE-ID", "again")], None, b"").expect_err("repeat");
        assert!(matches!(err, CloudEventError::DuplicateAttribute { .. }), "{err}");
        assert!(
            ce_attribute("ce").is_none() && ce_attribute("cé-x").is_none() && ce_attribute("content-type").is_none()
        );
    }
}
