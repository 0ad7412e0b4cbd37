//! Limits and name syntax, checked before anything reaches the writer.

use crate::{LogError, ProposedEvent, Result, StreamAppend};

/// Configurable limits. Defaults: 1 MiB per event, 10,000 events and 16 MiB per append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest encoded event (data, metadata and attributes), in bytes.
    pub max_event_bytes: u64,
    /// Most events in one append.
    pub max_append_events: u64,
    /// Largest append, in bytes (sum of its events).
    pub max_append_bytes: u64,
    /// How far an event's `time` may be ahead of the server's clock, in seconds.
    /// Views and timers run on event time: one event stamped by a clock years
    /// ahead would move their clock there for good (windows empty, obligations
    /// overdue), and an append-only log cannot take it back.
    pub max_time_ahead_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 1 << 20,
            max_append_events: 10_000,
            max_append_bytes: 16 << 20,
            max_time_ahead_secs: 300,
        }
    }
}

pub(crate) const MAX_STREAM_LEN: usize = 256;
pub(crate) const MAX_TYPE_LEN: usize = 128;
pub(crate) const MAX_ID_LEN: usize = 256;
pub(crate) const MAX_SOURCE_LEN: usize = 1024;
pub(crate) const MAX_ATTRIBUTE_LEN: usize = 256;

/// Checks a stream name: 1-256 characters of `[A-Za-z0-9._:@/-]`, segments
/// separated by `/`, none empty.
pub fn validate_stream_name(stream: &str) -> Result<()> {
    if stream.is_empty() {
        return Err(LogError::invalid("stream", "must not be empty"));
    }
    check_stream_text("stream", stream, false)
}

/// Checks a stream prefix (a subscription's filter): what a stream name can start
/// with, so that a mistyped one is refused rather than left matching nothing for
/// ever. Empty (every stream) and a trailing `/` (`order/`) are allowed.
pub fn validate_stream_prefix(prefix: &str) -> Result<()> {
    check_stream_text("stream_prefix", prefix, true)
}

fn check_stream_text(field: &str, text: &str, prefix: bool) -> Result<()> {
    // A prefix ending in `/` has at least one more character to come.
    let least = text.len() + usize::from(prefix && text.ends_with('/'));
    if least > MAX_STREAM_LEN {
        return Err(LogError::invalid(
            field,
            format!("is {} bytes long, over the limit of {MAX_STREAM_LEN}", text.len()),
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._:@/-".contains(c);
    // Byte by byte first (a non-ASCII byte is never allowed); the character is
    // found only to name it.
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:@/-".contains(&b))
        && let Some(c) = text.chars().find(|&c| !allowed(c))
    {
        return Err(LogError::invalid(
            field,
            format!("{text:?} contains {c:?}; allowed are letters, digits and . _ : @ / -"),
        ));
    }
    if text.starts_with('/') || (text.ends_with('/') && !prefix) || text.contains("//") {
        return Err(LogError::invalid(
            field,
            format!("{text:?} has an empty segment (leading, trailing or double '/')"),
        ));
    }
    Ok(())
}

/// A stream name an append may use: a valid name ([`validate_stream_name`]) without
/// `.` or `..` segments, which URL paths give a meaning (HTTP clients resolve them
/// away, so such a stream could not be read at `/v1/streams/<name>`). Only appends
/// are held to it: streams recorded before the rule stay readable by name, and an
/// exact retry of one of their events still answers as a duplicate.
fn validate_new_stream_name(stream: &str) -> Result<()> {
    validate_stream_name(stream)?;
    if stream.contains('.') && stream.split('/').any(|segment| segment == "." || segment == "..") {
        return Err(LogError::invalid(
            "stream",
            format!("{stream:?} has a '.' or '..' segment, which HTTP clients resolve away in /v1/streams/<name>"),
        ));
    }
    Ok(())
}

/// Why `text` is not a URI-reference (RFC 3986) as far as its characters go, or
/// `None`: no spaces, control characters or `"<>\^`{|}`, and `%` only before two
/// hex digits. Characters beyond ASCII are let through (IRIs).
pub fn uri_reference_problem(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let (i, &b) = bytes.iter().enumerate().find(|&(i, &b)| match b {
        b'%' => {
            !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        }
        b' ' | b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}' => true,
        b => b.is_ascii_control(),
    })?;
    Some(format!(
        "not a URI-reference: {:?} at byte {i} {}",
        char::from(b),
        if b == b'%' {
            "is not followed by two hex digits"
        } else {
            "must be percent-encoded"
        }
    ))
}

/// Why a non-empty `content_type` is not a media type (`type/subtype`, each an RFC
/// 9110 token, then optional `;` parameters), or `None`.
pub fn media_type_problem(content_type: &str) -> Option<String> {
    if content_type.is_empty() {
        return None;
    }
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    match essence.split_once('/') {
        Some((kind, subtype)) if token(kind) && token(subtype) => None,
        _ => Some("not a media type (type/subtype, e.g. application/json)".into()),
    }
}

/// Checks an event type: dot-separated tokens of `[A-Za-z0-9_-]`, at most 128 bytes
/// (each token is a valid NATS subject token).
pub fn validate_event_type(event_type: &str) -> Result<()> {
    let field = "type";
    if event_type.is_empty() {
        return Err(LogError::invalid(field, "must not be empty"));
    }
    if event_type.len() > MAX_TYPE_LEN {
        return Err(LogError::invalid(
            field,
            format!("is {} bytes long, over the limit of {MAX_TYPE_LEN}", event_type.len()),
        ));
    }
    // The usual type, checked byte by byte: allowed bytes, and no empty token (no
    // leading, trailing or doubled dot). Anything else is looked at closely, to
    // say what is wrong.
    let bytes = event_type.as_bytes();
    let plain = bytes
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && bytes.first() != Some(&b'.')
        && bytes.last() != Some(&b'.')
        && !bytes.windows(2).any(|pair| pair == b"..");
    if plain {
        return Ok(());
    }
    for token in event_type.split('.') {
        if token.is_empty() {
            return Err(LogError::invalid(
                field,
                format!("{event_type:?} has an empty dot-separated token"),
            ));
        }
        if let Some(c) = token
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(LogError::invalid(
                field,
                format!("{event_type:?} contains {c:?}; allowed are letters, digits, _ and - between dots"),
            ));
        }
    }
    Ok(())
}

/// Checks a free-text attribute; `field` is only formatted when there is an error.
fn validate_text(field: impl Fn() -> String, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(LogError::invalid(
            field(),
            format!("is {} bytes long, over the limit of {max}", value.len()),
        ));
    }
    // ASCII is checked byte by byte; other text by character (C1 controls).
    let control = if value.is_ascii() {
        value.bytes().any(|b| b.is_ascii_control())
    } else {
        value.chars().any(char::is_control)
    };
    if control {
        return Err(LogError::invalid(field(), "must not contain control characters"));
    }
    Ok(())
}

/// Encoded size of an event as counted against `max_event_bytes`: its data,
/// metadata and attributes.
pub fn event_size(event: &ProposedEvent) -> u64 {
    counted_size(
        [
            &event.id,
            &event.source,
            &event.event_type,
            &event.content_type,
            &event.correlation_id,
            &event.causation_id,
        ],
        &event.metadata,
        event.data.len(),
    )
}

/// The size of a recorded event counted as [`event_size`] counts a proposed one.
pub fn recorded_event_size(event: &crate::RecordedEvent) -> u64 {
    counted_size(
        [
            &event.id,
            &event.source,
            &event.event_type,
            &event.content_type,
            &event.correlation_id,
            &event.causation_id,
        ],
        &event.metadata,
        event.data.len(),
    )
}

fn counted_size(attributes: [&String; 6], metadata: &std::collections::BTreeMap<String, String>, data: usize) -> u64 {
    let metadata: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    (attributes.iter().map(|a| a.len()).sum::<usize>() + metadata + data) as u64
}

impl Limits {
    /// Checks one multi-stream append. `index` names the offending event.
    pub fn validate(&self, parts: &[StreamAppend]) -> Result<()> {
        let mut total_events = 0u64;
        let mut total_bytes = 0u64;
        if parts.is_empty() {
            return Err(LogError::invalid("events", "an append needs at least one event"));
        }
        // Read once, and only for an event that has a time.
        let mut now = None;
        let mut index = 0usize; // events are numbered across all parts, in request order
        for part in parts {
            validate_new_stream_name(&part.stream)?;
            if part.events.is_empty() {
                return Err(LogError::invalid(
                    "events",
                    format!("the append to stream {:?} has no events", part.stream),
                ));
            }
            for event in &part.events {
                let i = index;
                index += 1;
                let at = |f: &str| format!("events[{i}].{f}");
                validate_event_type(&event.event_type).map_err(|e| rename_field(e, &at("type")))?;
                if event.id.is_empty() {
                    return Err(LogError::invalid(at("id"), "must not be empty"));
                }
                if event.source.is_empty() {
                    return Err(LogError::invalid(at("source"), "must not be empty"));
                }
                validate_text(|| at("id"), &event.id, MAX_ID_LEN)?;
                validate_text(|| at("source"), &event.source, MAX_SOURCE_LEN)?;
                validate_text(|| at("content_type"), &event.content_type, MAX_ATTRIBUTE_LEN)?;
                if let Some(problem) = uri_reference_problem(&event.source) {
                    return Err(LogError::invalid(
                        at("source"),
                        format!("{:?} is {problem}", event.source),
                    ));
                }
                // `dataschema` becomes the CloudEvents attribute of that name, a URI.
                if let Some(schema) = event.metadata.get("dataschema")
                    && let Some(problem) = uri_reference_problem(schema)
                {
                    return Err(LogError::invalid(
                        at("metadata.dataschema"),
                        format!("{schema:?} is {problem}"),
                    ));
                }
                if let Some(problem) = media_type_problem(&event.content_type) {
                    return Err(LogError::invalid(
                        at("content_type"),
                        format!("{:?} is {problem}", event.content_type),
                    ));
                }
                validate_text(|| at("correlation_id"), &event.correlation_id, MAX_ATTRIBUTE_LEN)?;
                validate_text(|| at("causation_id"), &event.causation_id, MAX_ATTRIBUTE_LEN)?;
                for key in event.metadata.keys() {
                    if key.is_empty() {
                        return Err(LogError::invalid(at("metadata"), "keys must not be empty"));
                    }
                    validate_text(|| at("metadata"), key, MAX_ATTRIBUTE_LEN)?;
                }
                if let Some(time) = event.time {
                    let now = *now.get_or_insert_with(crate::writer::now_nanos);
                    self.check_time(time, now).map_err(|e| rename_field(e, &at("time")))?;
                }
                let size = event_size(event);
                if size > self.max_event_bytes {
                    return Err(LogError::LimitExceeded {
                        field: format!("events[{i}]"),
                        what: format!("size of events[{i}] (bytes)"),
                        setting: "max_event_bytes",
                        limit: self.max_event_bytes,
                        actual: size,
                    });
                }
                total_bytes += size;
            }
            total_events += part.events.len() as u64;
        }
        if total_events > self.max_append_events {
            return Err(LogError::LimitExceeded {
                field: "events".into(),
                what: "number of events in the append".into(),
                setting: "max_append_events",
                limit: self.max_append_events,
                actual: total_events,
            });
        }
        if total_bytes > self.max_append_bytes {
            return Err(LogError::LimitExceeded {
                field: "events".into(),
                what: "size of the append (bytes)".into(),
                setting: "max_append_bytes",
                limit: self.max_append_bytes,
                actual: total_bytes,
            });
        }
        Ok(())
    }
}

impl Limits {
    /// An event time at most `max_time_ahead_secs` ahead of `now` (both Unix nanoseconds).
    fn check_time(&self, time: i64, now: i64) -> Result<()> {
        let ahead = i128::from(time) - i128::from(now);
        let limit = i128::from(self.max_time_ahead_secs) * 1_000_000_000;
        if ahead <= limit {
            return Ok(());
        }
        Err(LogError::invalid(
            "time",
            format!(
                "{} is {} ahead of the server's clock ({}); at most {} s ahead is accepted \
                 (log.max_time_ahead_secs); check the producer's clock",
                crate::rfc3339(time),
                ahead_text(ahead),
                crate::rfc3339(now),
                self.max_time_ahead_secs
            ),
        ))
    }
}

/// A positive span of nanoseconds, roughly, for a person.
fn ahead_text(nanos: i128) -> String {
    match nanos / 1_000_000_000 {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

fn rename_field(err: LogError, field: &str) -> LogError {
    match err {
        LogError::InvalidArgument { reason, .. } => LogError::InvalidArgument {
            field: field.into(),
            reason,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_uri_references_and_content_types_media_types() {
        for ok in [
            "shop",
            "https://shop.example.com/orders",
            "urn:x:y",
            "/a/b%20c",
            "opsflow:unspecified",
            "é",
        ] {
            assert_eq!(uri_reference_problem(ok), None, "{ok}");
        }
        for bad in ["not a uri", "a\"b", "a%zz", "a%2", "{x}", "a\tb"] {
            assert!(uri_reference_problem(bad).is_some(), "{bad:?}");
        }
        for ok in [
            "",
            "application/json",
            "text/plain; charset=utf-8",
            "application/cloudevents+json",
            "application/vnd.a-b.c+json",
        ] {
            assert_eq!(media_type_problem(ok), None, "{ok}");
        }
        for bad in [
            "not a media type",
            "json",
            "application/",
            "/json",
            "text/plain x",
            "a/b/c",
        ] {
            assert!(media_type_problem(bad).is_some(), "{bad:?}");
        }
        let event = |source: &str, content_type: &str| StreamAppend {
            stream: "s".into(),
            expected: crate::ExpectedVersion::Any,
            events: vec![ProposedEvent {
                content_type: content_type.into(),
                ..ProposedEvent::json("t", "{}").with_identity(source, "1")
            }],
        };
        let limits = Limits::default();
        assert!(limits.validate(&[event("shop", "application/json")]).is_ok());
        let mut with_schema = event("shop", "application/json");
        for (schema, ok) in [
            ("https://schemas.example.com/order/v1.json", true),
            ("type.googleapis.com/shop.v1.OrderPlaced", true),
            ("not a uri", false),
            ("https://x/%zz", false),
        ] {
            with_schema.events[0]
                .metadata
                .insert("dataschema".into(), schema.into());
            match limits.validate(std::slice::from_ref(&with_schema)) {
                Ok(()) => assert!(ok, "{schema:?} accepted"),
                Err(LogError::InvalidArgument { field, .. }) => {
                    assert!(!ok, "{schema:?} refused");
                    assert_eq!(field, "events[0].metadata.dataschema");
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        for (source, content_type, field) in [
            ("not a uri", "application/json", "events[0].source"),
            ("shop", "not a media type", "events[0].content_type"),
        ] {
            match limits.validate(&[event(source, content_type)]) {
                Err(LogError::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{source:?} {content_type:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn stream_names() {
        for ok in ["order/PO-1001", "incident/INC-7", "a", "x.y:z@w/1_2", "a/.b/c..", "..."] {
            assert!(validate_stream_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "a b", "a\0b", "é"] {
            assert!(validate_stream_name(bad).is_err(), "{bad:?}");
        }
        // Dot segments: readable (streams recorded before the rule), not appendable.
        for dotted in [".", "..", "a/./b", "a/../b", "a/.."] {
            assert!(validate_stream_name(dotted).is_ok(), "{dotted:?}");
            assert!(validate_new_stream_name(dotted).is_err(), "{dotted:?}");
        }
        assert!(validate_stream_name(&"a".repeat(257)).is_err());
    }

    #[test]
    fn stream_prefixes() {
        for ok in ["", "order/", "order/PO-", "o", "x.y:z@w/1_"] {
            assert!(validate_stream_prefix(ok).is_ok(), "{ok}");
        }
        let refused = |prefix: &str| match validate_stream_prefix(prefix) {
            Err(LogError::InvalidArgument { field, reason }) => format!("{field}: {reason}"),
            other => panic!("{prefix:?}: {other:?}"),
        };
        assert_eq!(
            refused("a b"),
            r#"stream_prefix: "a b" contains ' '; allowed are letters, digits and . _ : @ / -"#
        );
        for bad in ["/a", "a//", "é"] {
            refused(bad);
        }
        assert!(validate_stream_prefix(&"a".repeat(256)).is_ok());
        // Nothing fits after it.
        assert!(refused(&format!("{}/", "a".repeat(255))).contains("over the limit of 256"));
    }

    #[test]
    fn event_types() {
        for ok in ["order.placed", "x", "a-b.c_d"] {
            assert!(validate_event_type(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "a*", "a>", "a b"] {
            assert!(validate_event_type(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn free_text_refuses_control_characters_ascii_or_not() {
        for ok in ["", "shop", "café au lait", "a\u{a0}b"] {
            assert!(validate_text(String::new, ok, 64).is_ok(), "{ok:?}");
        }
        for bad in ["a\nb", "a\u{7f}b", "a\u{0}", "é\u{85}", "\u{9f}"] {
            assert!(validate_text(String::new, bad, 64).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn oversized_event_names_limit_and_size() {
        let limits = Limits {
            max_event_bytes: 10,
            ..Limits::default()
        };
        let event = ProposedEvent::json("t", vec![0u8; 100]).with_identity("s", "1");
        let err = limits
            .validate(&[StreamAppend {
                stream: "s".into(),
                expected: Default::default(),
                events: vec![event],
            }])
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("events[0]") && text.contains("limit of 10"), "{text}");
    }

    #[test]
    fn an_event_time_far_ahead_of_the_clock_is_refused_naming_both() {
        let limits = Limits::default();
        let at = |offset_secs: i64| {
            let mut event = ProposedEvent::json("t", "{}").with_identity("s", "1");
            event.time = Some(crate::writer::now_nanos() + offset_secs * 1_000_000_000);
            limits.validate(&[StreamAppend {
                stream: "s".into(),
                expected: Default::default(),
                events: vec![event],
            }])
        };
        assert!(at(-10 * 365 * 86_400).is_ok(), "the past is fine");
        assert!(at(240).is_ok(), "a clock a few minutes ahead is fine");
        let text = at(3 * 365 * 86_400).unwrap_err().to_string();
        assert!(
            text.contains("events[0].time") && text.contains("days ahead") && text.contains("max_time_ahead_secs"),
            "{text}"
        );
        let text = at(3600).unwrap_err().to_string();
        assert!(text.contains("59 min ahead") || text.contains("60 min ahead"), "{text}");
    }
}
