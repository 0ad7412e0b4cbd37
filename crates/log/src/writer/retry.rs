//! Whether a retry repeats the event it names by `(source, id)`: the attributes it
//! must repeat, with content types and JSON data compared by meaning.

use crate::{ProposedEvent, RecordedEvent};

/// The parts of an event that an exact retry must repeat.
struct Content<'a> {
    stream: &'a str,
    event_type: &'a str,
    content_type: &'a str,
    data: &'a [u8],
    correlation_id: &'a str,
    causation_id: &'a str,
    metadata: &'a std::collections::BTreeMap<String, String>,
    time: i64,
}

/// The first attribute in which `a` (proposed for `stream`) differs from `b`. The
/// time counts only when the retry states one.
fn first_difference(stream: &str, a: &ProposedEvent, b: Content<'_>) -> Option<&'static str> {
    if stream != b.stream {
        Some("stream")
    } else if a.event_type != b.event_type {
        Some("type")
    } else if !same_media_type(&a.content_type, b.content_type) {
        Some("content type")
    } else if a.data[..] != *b.data && !same_json(a.content_type.as_str(), &a.data, b.data) {
        Some("data")
    } else if a.correlation_id != b.correlation_id || a.causation_id != b.causation_id {
        Some("correlation or causation id")
    } else if a.metadata != *b.metadata {
        Some("metadata")
    } else if a.time.is_some_and(|t| t != b.time) {
        Some("time")
    } else {
        None
    }
}

/// Whether content types `a` and `b` name the same media type: type, subtype and
/// parameter names in any case, parameters in any order and spacing, and a JSON
/// type's `charset=utf-8` (JSON is UTF-8, RFC 8259) left out. A retry may come
/// through another mode or SDK (`application/json` in structured mode,
/// `application/json; charset=utf-8` from a binary emitter). The stored content
/// type stays as first written.
fn same_media_type(a: &str, b: &str) -> bool {
    a == b || media_type_key(a).is_some_and(|key| Some(key) == media_type_key(b))
}

/// `content_type` as [`same_media_type`] compares it; `None` (compared as written)
/// when a parameter is not `name=value` or its quoted value holds a quote, a
/// backslash or a `;`, which a split on `;` and `=` could misread.
fn media_type_key(content_type: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    if essence.contains('"') {
        return None;
    }
    let json = crate::is_json_content_type(&essence);
    let mut params = Vec::new();
    for part in parts.map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=')?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        // `"UTF-8"` is `UTF-8`; any other quote (an escape, a `;` inside quotes
        // split this part) is compared as written.
        let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(inner) if !inner.contains(['"', '\\']) => inner,
            _ if value.contains('"') => return None,
            _ => value,
        };
        if name.is_empty() || name.contains('"') || value.is_empty() {
            return None;
        }
        let value = if name == "charset" {
            value.to_ascii_lowercase()
        } else {
            value.to_owned()
        };
        if !(json && name == "charset" && value == "utf-8") {
            params.push((name, value));
        }
    }
    params.sort();
    Some((essence, params))
}

/// Whether `a` and `b`, differing bytes of the content type `content_type`, are
/// the same JSON value: a retry may come through another API or content mode,
/// spaced or ordered differently (`{"a": 1}` in HTTP binary mode, `{"a":1}` in
/// structured mode). Numbers compare as written (`1` and `1.0` differ).
fn same_json(content_type: &str, a: &[u8], b: &[u8]) -> bool {
    if !crate::is_json_content_type(content_type) {
        return false;
    }
    match (
        serde_json::from_slice::<serde_json::Value>(a),
        serde_json::from_slice::<serde_json::Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

pub(super) fn differs_recorded(stream: &str, a: &ProposedEvent, b: &RecordedEvent) -> Option<&'static str> {
    let content = Content {
        stream: &b.stream,
        event_type: &b.event_type,
        content_type: &b.content_type,
        data: &b.data,
        correlation_id: &b.correlation_id,
        causation_id: &b.causation_id,
        metadata: &b.metadata,
        time: b.time,
    };
    first_difference(stream, a, content)
}

pub(super) fn differs_proposed(
    stream: &str,
    a: &ProposedEvent,
    b_stream: &str,
    b: &ProposedEvent,
    b_time: i64,
) -> Option<&'static str> {
    let content = Content {
        stream: b_stream,
        event_type: &b.event_type,
        content_type: &b.content_type,
        data: &b.data,
        correlation_id: &b.correlation_id,
        causation_id: &b.causation_id,
        metadata: &b.metadata,
        time: b_time,
    };
    first_difference(stream, a, content)
}
