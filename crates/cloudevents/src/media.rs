//! Media types: which content types declare JSON or text data.

/// The content type given to data whose type nobody declared (RFC 9110 §8.3).
pub(crate) const OCTET_STREAM: &str = "application/octet-stream";

/// The content type given to protobuf `text_data` whose type nobody declared.
pub(crate) const TEXT_PLAIN: &str = "text/plain";

/// The content type of protobuf message data (protobuf format §1.2).
pub(crate) const PROTOBUF: &str = "application/protobuf";

/// Structured mode in the NATS binding (§3): the JSON event format.
pub(crate) const CLOUDEVENTS: &str = "application/cloudevents";

/// One CloudEvent in the JSON format (structured mode).
pub(crate) const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// A batch of CloudEvents in the JSON format.
pub(crate) const CLOUDEVENTS_BATCH_JSON: &str = "application/cloudevents-batch+json";

/// One CloudEvent in the protobuf format.
pub(crate) const CLOUDEVENTS_PROTOBUF: &str = "application/cloudevents+protobuf";

/// A batch of CloudEvents in the protobuf format.
pub(crate) const CLOUDEVENTS_BATCH_PROTOBUF: &str = "application/cloudevents-batch+protobuf";

/// Splits `type/subtype; params` into trimmed `(type, subtype)`, as written: compare
/// them with `eq_ignore_ascii_case` (media types are case-insensitive).
fn essence(content_type: &str) -> Option<(&str, &str)> {
    let media = content_type.split(';').next()?.trim();
    let (kind, subtype) = media.split_once('/')?;
    Some((kind.trim(), subtype.trim()))
}

/// Whether `subtype` ends with `suffix` (lower-case), in any case.
fn has_suffix(subtype: &str, suffix: &str) -> bool {
    subtype
        .get(subtype.len().saturating_sub(suffix.len())..)
        .is_some_and(|end| end.len() == suffix.len() && end.eq_ignore_ascii_case(suffix))
}

/// Whether `content_type` declares JSON data: subtype `json` or a `+json` suffix,
/// parameters ignored (CloudEvents JSON format §3.1.1), as the log decides it.
pub(crate) use opsflow_log::is_json_content_type as is_json;

/// Whether `content_type` is the media type `expected` (lower-case `type/subtype`),
/// in any case and with any parameters.
pub(crate) fn is_media_type(content_type: &str, expected: &str) -> bool {
    // The usual content type, a bare `type/subtype` (nothing to trim, no
    // parameters), is compared whole.
    if content_type.eq_ignore_ascii_case(expected) {
        return true;
    }
    if content_type.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
        return false;
    }
    essence(content_type).is_some_and(|(kind, subtype)| {
        expected.split_once('/').is_some_and(|(want_kind, want_subtype)| {
            kind.eq_ignore_ascii_case(want_kind) && subtype.eq_ignore_ascii_case(want_subtype)
        })
    })
}

/// Whether two content types name the same media type (any case, parameters
/// ignored); content types without a `/` are compared whole.
pub(crate) fn same_media_type(a: &str, b: &str) -> bool {
    match (essence(a), essence(b)) {
        (Some((kind_a, sub_a)), Some((kind_b, sub_b))) => {
            kind_a.eq_ignore_ascii_case(kind_b) && sub_a.eq_ignore_ascii_case(sub_b)
        }
        _ => a.trim().eq_ignore_ascii_case(b.trim()),
    }
}

/// Whether `content_type` declares a serialized protobuf message
/// (`application/protobuf`, or the older `application/x-protobuf`).
pub(crate) fn is_protobuf(content_type: &str) -> bool {
    is_media_type(content_type, PROTOBUF) || is_media_type(content_type, "application/x-protobuf")
}

/// Whether `content_type` declares text (`text/*`, XML), written as a `data` string.
pub(crate) fn is_text(content_type: &str) -> bool {
    essence(content_type).is_some_and(|(kind, subtype)| {
        kind.eq_ignore_ascii_case("text") || subtype.eq_ignore_ascii_case("xml") || has_suffix(subtype, "+xml")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "text/json",
            "application/cloudevents+json",
            "application/vnd.opsflow.order+json ; v=1",
        ] {
            assert!(is_json(json), "{json}");
        }
        for other in [
            "",
            "json",
            "application/xml",
            "application/jsonx",
            "text/plain",
            "application/protobuf",
        ] {
            assert!(!is_json(other), "{other}");
        }
    }

    #[test]
    fn media_types_ignore_case_and_parameters() {
        assert!(is_media_type(
            " Application/CloudEvents+JSON ; charset=utf-8",
            CLOUDEVENTS_JSON
        ));
        assert!(!is_media_type("application/cloudevents+json", CLOUDEVENTS_BATCH_JSON));
        assert!(!is_media_type("application", CLOUDEVENTS_JSON));
        assert!(is_protobuf("application/protobuf; messageType=\"x.Y\""));
        assert!(is_protobuf("application/x-protobuf"));
        assert!(!is_protobuf("application/json"));
    }

    #[test]
    fn text_content_types() {
        assert!(is_text("text/plain; charset=utf-8"));
        assert!(is_text("application/xml"));
        assert!(is_text("application/atom+xml"));
        assert!(!is_text("application/octet-stream"));
        assert!(!is_text("application/json"));
    }
}
