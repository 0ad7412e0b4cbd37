//! Content-mode selection for the NATS binding: which format parses a message,
//! decided from its content type and headers. (HTTP picks its mode from the
//! request's content type and calls the per-mode parsers itself.)

use bytes::Bytes;

use crate::error::{CloudEventError, Result};
use crate::{Incoming, media, parse_batch, parse_nats_binary, parse_protobuf, parse_protobuf_batch, parse_structured};

/// The media types of the structured and batch formats, in the order they are tried.
const SUPPORTED: [&str; 4] = [
    media::CLOUDEVENTS_JSON,
    media::CLOUDEVENTS_BATCH_JSON,
    media::CLOUDEVENTS_PROTOBUF,
    media::CLOUDEVENTS_BATCH_PROTOBUF,
];

/// The formats a content type may name, as a hint: with `batches`, the batch
/// formats too.
pub(crate) fn supported(batches: bool) -> String {
    let formats: Vec<&str> = SUPPORTED
        .iter()
        .copied()
        .filter(|f| batches || !f.contains("-batch"))
        .collect();
    let kinds = if batches { "structured or batch" } else { "structured" };
    format!("{} ({kinds})", formats.join(", "))
}

/// Whether `content_type` names a batch format.
fn is_batch(content_type: &str) -> bool {
    media::is_media_type(content_type, media::CLOUDEVENTS_BATCH_JSON)
        || media::is_media_type(content_type, media::CLOUDEVENTS_BATCH_PROTOBUF)
}

/// [`parse_any`] for a message that carries one event, as in the CloudEvents NATS
/// binding (structured, binary or protobuf; it has no batch mode): a batch content
/// type is [`CloudEventError::BatchNotTaken`], whatever it holds, and the hint of
/// [`CloudEventError::UnsupportedContentMode`] names no batch format.
///
/// ```
/// use bytes::Bytes;
/// use opsflow_cloudevents::{CloudEventError, parse_one};
///
/// let batch = Bytes::from_static(br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t.x"}]"#);
/// let err = parse_one(Some("application/cloudevents-batch+json"), [], batch).unwrap_err();
/// assert!(matches!(err, CloudEventError::BatchNotTaken { .. }));
/// ```
pub fn parse_one<'a>(
    content_type: Option<&str>,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    body: Bytes,
) -> Result<Incoming> {
    if let Some(content_type) = content_type.map(str::trim).filter(|c| is_batch(c)) {
        return Err(CloudEventError::BatchNotTaken {
            content_type: content_type.to_owned(),
        });
    }
    match parse_single(content_type, headers, body) {
        Err(CloudEventError::UnsupportedContentMode { content_type, .. }) => {
            Err(CloudEventError::UnsupportedContentMode {
                content_type,
                batches: false,
            })
        }
        other => other,
    }
}

/// Parses a message in whichever content mode it uses; one event gives a vector
/// of one.
///
/// 1. The media type of `content_type` (any case, parameters ignored) picks a
///    format: `application/cloudevents+json` or the NATS binding's
///    `application/cloudevents` ([`parse_structured`]),
///    `application/cloudevents-batch+json` ([`parse_batch`]),
///    `application/cloudevents+protobuf` ([`parse_protobuf`]) or
///    `application/cloudevents-batch+protobuf` ([`parse_protobuf_batch`]).
/// 2. Otherwise a `ce-` header (`ce-specversion`, name in any case) means binary
///    mode ([`parse_nats_binary`]): the data's content type is
///    `ce-datacontenttype`, else `content_type`.
/// 3. Otherwise, with no content type and a body that starts with `{` (after
///    whitespace), structured JSON: the NATS binding's structured mode, which
///    may arrive without headers.
/// 4. Otherwise [`CloudEventError::UnsupportedContentMode`], naming the content
///    type and the supported modes.
///
/// ```
/// use bytes::Bytes;
/// use opsflow_cloudevents::parse_any;
///
/// let headers: [(&str, &[u8]); 4] =
///     [("CE-SpecVersion", b"1.0"), ("ce-id", b"e-1"), ("ce-source", b"/shop"), ("ce-type", b"order.placed")];
/// let body = Bytes::from_static(br#"{"order_id":"PO-1"}"#);
/// let events = parse_any(Some("application/json"), headers, body)?;
/// assert_eq!(events[0].stream, "order/PO-1"); // binary mode: the data's content type is application/json
/// # Ok::<(), opsflow_cloudevents::CloudEventError>(())
/// ```
pub fn parse_any<'a>(
    content_type: Option<&str>,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    body: Bytes,
) -> Result<Vec<Incoming>> {
    if let Some(content_type) = content_type.map(str::trim) {
        if media::is_media_type(content_type, media::CLOUDEVENTS_BATCH_JSON) {
            return parse_batch(&body);
        }
        if media::is_media_type(content_type, media::CLOUDEVENTS_BATCH_PROTOBUF) {
            return parse_protobuf_batch(&body);
        }
    }
    parse_single(content_type, headers, body).map(|event| vec![event])
}

/// [`parse_any`] for the formats of one event; a batch content type is an
/// unsupported content mode here.
fn parse_single<'a>(
    content_type: Option<&str>,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    body: Bytes,
) -> Result<Incoming> {
    let content_type = content_type.map(str::trim).filter(|c| !c.is_empty());
    if let Some(content_type) = content_type {
        let is = |expected| media::is_media_type(content_type, expected);
        if is(media::CLOUDEVENTS_JSON) || is(media::CLOUDEVENTS) {
            return parse_structured(&body);
        }
        if is(media::CLOUDEVENTS_PROTOBUF) {
            return parse_protobuf(&body);
        }
    }
    let headers: Vec<(&str, &[u8])> = headers.into_iter().collect();
    // Binary mode: `ce-specversion`, or other `ce-` headers without it (binary mode
    // missing its specversion, which parsing says, rather than the body misread
    // as a structured event).
    if headers
        .iter()
        .any(|(name, _)| name.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("ce-")))
    {
        return parse_nats_binary(headers, content_type, body);
    }
    if content_type.is_none() && body.trim_ascii_start().starts_with(b"{") {
        return parse_structured(&body);
    }
    Err(CloudEventError::UnsupportedContentMode {
        content_type: content_type.map(str::to_owned),
        batches: true,
    })
}

#[cfg(test)]
mod tests {
    use opsflow_proto::cloudevents::{CloudEvent, CloudEventBatch};
    use prost::Message;

    use super::*;

    const JSON_EVENT: &str =
        r#"{"specversion":"1.0","id":"e-1","source":"/shop","type":"order.placed","data":{"order_id":"PO-1"}}"#;

    const BINARY_HEADERS: [(&str, &[u8]); 4] = [
        ("ce-specversion", b"1.0"),
        ("ce-id", b"e-2"),
        ("ce-source", b"/shop"),
        ("ce-type", b"order.placed"),
    ];

    fn protobuf_event() -> CloudEvent {
        CloudEvent {
            id: "e-3".into(),
            source: "/shop".into(),
            spec_version: "1.0".into(),
            r#type: "order.placed".into(),
            data: Some(opsflow_proto::cloudevents::cloud_event::Data::TextData(
                r#"{"order_id":"PO-3"}"#.into(),
            )),
            attributes: [(
                "datacontenttype".to_owned(),
                opsflow_proto::cloudevents::cloud_event::CloudEventAttributeValue {
                    attr: Some(
                        opsflow_proto::cloudevents::cloud_event::cloud_event_attribute_value::Attr::CeString(
                            "application/json".into(),
                        ),
                    ),
                },
            )]
            .into(),
        }
    }

    fn ids(events: &[Incoming]) -> Vec<&str> {
        events.iter().map(|incoming| incoming.event.id.as_str()).collect()
    }

    fn parse(
        content_type: Option<&str>,
        headers: &[(&'static str, &'static [u8])],
        body: &[u8],
    ) -> Result<Vec<Incoming>> {
        parse_any(content_type, headers.iter().copied(), Bytes::copy_from_slice(body))
    }

    #[test]
    fn cloudevents_media_types_pick_the_format() {
        let json_batch = format!("[{JSON_EVENT},{JSON_EVENT}]");
        let protobuf = protobuf_event().encode_to_vec();
        let protobuf_batch = CloudEventBatch {
            events: vec![protobuf_event()],
        }
        .encode_to_vec();
        for (content_type, body, expected) in [
            ("application/cloudevents+json", JSON_EVENT.as_bytes(), vec!["e-1"]),
            (
                "Application/CloudEvents+JSON; charset=utf-8",
                JSON_EVENT.as_bytes(),
                vec!["e-1"],
            ),
            (
                "application/cloudevents-batch+json",
                json_batch.as_bytes(),
                vec!["e-1", "e-1"],
            ),
            ("application/cloudevents+protobuf", &protobuf, vec!["e-3"]),
            ("APPLICATION/CLOUDEVENTS+PROTOBUF ; x=y", &protobuf, vec!["e-3"]),
            ("application/cloudevents-batch+protobuf", &protobuf_batch, vec!["e-3"]),
        ] {
            // The media type wins over binary-mode headers.
            let events = parse(Some(content_type), &BINARY_HEADERS, body).expect(content_type);
            assert_eq!(ids(&events), expected, "{content_type}");
        }
        let err = parse(Some("application/cloudevents+protobuf"), &[], JSON_EVENT.as_bytes()).expect_err("JSON");
        assert!(matches!(err, CloudEventError::Protobuf(_)), "{err}");
    }

    #[test]
    fn ce_specversion_header_in_any_case_means_binary_mode() {
        for name in ["ce-specversion", "CE-SPECVERSION", "Ce-SpecVersion"] {
            let mut headers = BINARY_HEADERS;
            headers[0].0 = name;
            let events = parse(Some("application/json"), &headers, br#"{"order_id":"PO-2"}"#).expect(name);
            assert_eq!(ids(&events), ["e-2"]);
            assert_eq!(events[0].stream, "order/PO-2");
            assert_eq!(events[0].event.content_type, "application/json");
        }
        let headers = [&BINARY_HEADERS[..], &[("ce-subject", b"order/PO-2")]].concat();
        let events = parse(None, &headers, b"\x00\x01").expect("binary without content type");
        assert_eq!(events[0].event.content_type, "application/octet-stream");
        let err = parse(None, &BINARY_HEADERS, b"{}").expect_err("binary, no subject");
        assert!(matches!(err, CloudEventError::MissingSubject { .. }), "{err}");
        // `ce-` headers without `ce-specversion`: binary mode that lacks it, not a
        // structured event read from the body.
        let err = parse(None, &BINARY_HEADERS[1..], br#"{"order_id":"PO-2"}"#).expect_err("no specversion");
        assert!(
            matches!(&err, CloudEventError::MissingAttribute { attribute } if attribute == "specversion"),
            "{err}"
        );
    }

    /// NATS binding §3: a `Content-Type` of `application/cloudevents` is structured
    /// mode; binary mode's data content type is `ce-datacontenttype`.
    #[test]
    fn nats_binding_content_types() {
        for content_type in ["application/cloudevents", "Application/CloudEvents; charset=utf-8"] {
            let events = parse(Some(content_type), &[], JSON_EVENT.as_bytes()).expect(content_type);
            assert_eq!(ids(&events), ["e-1"]);
        }
        let headers = [&BINARY_HEADERS[..], &[("ce-datacontenttype", b"application/json")]].concat();
        let events = parse(None, &headers, br#"{"order_id":"PO-2"}"#).expect("binary, ce-datacontenttype");
        assert_eq!(events[0].event.content_type, "application/json");
        assert_eq!(events[0].stream, "order/PO-2");
    }

    #[test]
    fn json_object_without_content_type_is_structured() {
        for content_type in [None, Some(""), Some("  ")] {
            let body = format!(" \n{JSON_EVENT}");
            let events = parse(content_type, &[("x-trace", b"1")], body.as_bytes()).expect("structured");
            assert_eq!(ids(&events), ["e-1"]);
        }
    }

    #[test]
    fn anything_else_is_refused_naming_the_content_type() {
        let err = parse(Some("application/json"), &[("x-id", b"e-1")], JSON_EVENT.as_bytes())
            .expect_err("JSON content type without ce- headers");
        assert_eq!(
            err.to_string(),
            "cannot tell the CloudEvents content mode: content type \"application/json\" is not a CloudEvents \
             format; send one of application/cloudevents+json, application/cloudevents-batch+json, \
             application/cloudevents+protobuf, application/cloudevents-batch+protobuf (structured or batch), \
             or binary mode with a `ce-specversion` header"
        );
        let CloudEventError::UnsupportedContentMode { content_type, .. } = &err else {
            panic!("wrong variant: {err}")
        };
        assert_eq!(content_type.as_deref(), Some("application/json"));
        assert_eq!(err.attribute(), None);
        for body in [&b"[]"[..], b"", b"hello"] {
            let err = parse(None, &[], body).expect_err("no content type, not an object");
            assert!(
                err.to_string()
                    .contains("there is no content type and the body is not a JSON object"),
                "{err}"
            );
        }
    }
}
