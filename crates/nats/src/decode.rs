//! From a NATS message to a proposed append, or to a dead-letter reason.

use async_nats::HeaderMap;
use bytes::Bytes;
use opsflow_cloudevents::CloudEventError;
use opsflow_log::{ErrorKind, LogError, StreamAppend};

/// Why a message cannot be recorded; the suffix of its dead-letter subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// Not a CloudEvent opsflow can read (bad JSON or protobuf, missing attributes).
    Decode,
    /// A well-formed event the log refuses (names, syntax, attribute values).
    Invalid,
    /// Over a configured limit.
    Limit,
    /// The expected version did not match.
    VersionConflict,
    /// The same (source, id) was recorded with other content.
    DuplicateConflict,
}

impl DeadReason {
    pub const ALL: [DeadReason; 5] = [
        DeadReason::Decode,
        DeadReason::Invalid,
        DeadReason::Limit,
        DeadReason::VersionConflict,
        DeadReason::DuplicateConflict,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Decode => "decode",
            DeadReason::Invalid => "invalid",
            DeadReason::Limit => "limit",
            DeadReason::VersionConflict => "version_conflict",
            DeadReason::DuplicateConflict => "duplicate_conflict",
        }
    }

    /// A CloudEvent that reads but whose attribute values the log cannot take (a
    /// stream name's syntax, a time out of range, an unknown expected version) or that
    /// gives no stream (`subject` is optional in CloudEvents, the log needs one) is
    /// `invalid`; one that does not read (format, missing required attributes) is
    /// `decode`.
    pub(crate) fn of_cloudevent(e: &CloudEventError) -> DeadReason {
        match e {
            CloudEventError::InvalidValue { .. }
            | CloudEventError::InvalidHeader { .. }
            | CloudEventError::MissingSubject { .. } => DeadReason::Invalid,
            _ => DeadReason::Decode,
        }
    }

    /// The reason for a refused append, or `None` when the failure is the log's
    /// (closed, storage) and the message must be retried rather than dead-lettered.
    pub fn of(error: &LogError) -> Option<DeadReason> {
        match error.kind() {
            ErrorKind::InvalidArgument => Some(DeadReason::Invalid),
            ErrorKind::LimitExceeded => Some(DeadReason::Limit),
            ErrorKind::WrongExpectedVersion => Some(DeadReason::VersionConflict),
            ErrorKind::DuplicateConflict => Some(DeadReason::DuplicateConflict),
            ErrorKind::Unavailable | ErrorKind::Internal => None,
        }
    }
}

/// Header pairs of a NATS message (names as sent), borrowed from it.
pub fn header_pairs(headers: Option<&HeaderMap>) -> Vec<(&str, &[u8])> {
    let mut out = Vec::new();
    if let Some(headers) = headers {
        for (name, values) in headers.iter() {
            for value in values {
                out.push((name.as_ref(), value.as_str().as_bytes()));
            }
        }
    }
    out
}

/// Decodes one message into one single-event append. The mode follows the
/// CloudEvents NATS binding: `Content-Type: application/cloudevents+json` (or no
/// headers and a JSON body) is structured mode, `ce-*` headers are binary mode,
/// `application/cloudevents+protobuf` is the protobuf format. The header
/// `opsflow-expected-version` is the event's expected version unless the event's
/// `expectedversion` extension sets it, as over HTTP.
pub fn decode(headers: Option<&HeaderMap>, payload: Bytes) -> Result<StreamAppend, (DeadReason, String)> {
    let pairs = header_pairs(headers);
    let ct = opsflow_cloudevents::content_type(pairs.iter().copied()).map_err(decode_error)?;
    let incoming = match opsflow_cloudevents::parse_one(ct, pairs.iter().copied(), payload) {
        Ok(incoming) => incoming,
        Err(e @ CloudEventError::BatchNotTaken { .. }) => {
            return Err((
                DeadReason::Decode,
                format!("{e} (or send the batch to opsflow.api.append, or over HTTP)"),
            ));
        }
        Err(e) => return Err(decode_error(e)),
    };
    let request = opsflow_cloudevents::request_expected(pairs.iter().copied()).map_err(decode_error)?;
    Ok(incoming.into_append(request))
}

fn decode_error(e: CloudEventError) -> (DeadReason, String) {
    (DeadReason::of_cloudevent(&e), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header that must be given once and is given twice is refused naming it,
    /// whether or not the values agree (the first one used to count).
    #[test]
    fn a_repeated_content_type_or_expected_version_is_refused() {
        let event = r#"{"specversion":"1.0","id":"a","source":"s","type":"t.x","subject":"t/1"}"#;
        for (name, first, second) in [
            ("Content-Type", "application/cloudevents+json", "text/plain"),
            (
                "Content-Type",
                "application/cloudevents+json",
                "application/cloudevents+json",
            ),
            ("opsflow-expected-version", "any", "no_stream"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("Content-Type", "application/cloudevents+json");
            headers.insert(name, first);
            headers.append(name, second);
            let (reason, message) = decode(Some(&headers), Bytes::from(event)).unwrap_err();
            assert_eq!(reason, DeadReason::Invalid, "{message}");
            assert!(message.contains(&format!("header `{name}`")), "{message}");
            assert!(message.contains("given 2 times"), "{message}");
        }
    }

    #[test]
    fn a_batch_on_the_ingest_subjects_says_where_batches_go() {
        let mut headers = HeaderMap::new();
        headers.insert("Content-Type", "application/cloudevents-batch+json");
        let event = r#"{"specversion":"1.0","id":"a","source":"s","type":"t.x","subject":"t/1"}"#;
        // Whatever the batch holds: two events, one, none.
        for body in [
            format!("[{event},{}]", event.replace("\"a\"", "\"b\"")),
            format!("[{event}]"),
            "[]".into(),
        ] {
            match decode(Some(&headers), Bytes::from(body)) {
                Err((DeadReason::Decode, message)) => {
                    assert!(message.contains("is a batch"), "{message}");
                    assert!(message.contains("opsflow.api.append"), "{message}");
                }
                other => panic!("expected a decode dead letter, got {other:?}"),
            }
        }
        headers.insert("Content-Type", "Application/CloudEvents-Batch+Protobuf; charset=x");
        assert!(
            matches!(decode(Some(&headers), Bytes::new()), Err((DeadReason::Decode, m)) if m.contains("is a batch"))
        );
    }

    #[test]
    fn an_unknown_mode_on_the_ingest_subjects_names_single_event_formats_only() {
        let mut headers = HeaderMap::new();
        headers.insert("Content-Type", "text/csv");
        match decode(Some(&headers), Bytes::from_static(b"hello")) {
            Err((DeadReason::Decode, message)) => {
                assert!(message.contains("application/cloudevents+json"), "{message}");
                assert!(message.contains("application/cloudevents+protobuf"), "{message}");
                assert!(!message.contains("batch"), "{message}");
            }
            other => panic!("expected a decode dead letter, got {other:?}"),
        }
    }
}
