//! What a parsed CloudEvent becomes: an event for one stream of the log.

use std::collections::HashSet;

use opsflow_log::{ExpectedVersion, ProposedEvent, StreamAppend};

use crate::CloudEventError;

/// The header (HTTP and NATS) that sets a request's expected versions: each
/// stream's version before the request. An event's `expectedversion` extension
/// sets its own.
pub const EXPECTED_VERSION_HEADER: &str = "opsflow-expected-version";

/// The request's expected version from its headers (`None`: the header is absent);
/// an error names the header when its value is not one.
pub fn request_expected<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Option<ExpectedVersion>, CloudEventError> {
    let Some(value) = single_header(headers, EXPECTED_VERSION_HEADER)? else {
        return Ok(None);
    };
    let invalid = |value: &str, reason: String| CloudEventError::invalid_header(EXPECTED_VERSION_HEADER, value, reason);
    let text = std::str::from_utf8(value).map_err(|_| invalid(&String::from_utf8_lossy(value), "not UTF-8".into()))?;
    text.trim()
        .parse::<ExpectedVersion>()
        .map(Some)
        .map_err(|e| invalid(text, e.to_string()))
}

/// The value of the request header `name` (in any case), `None` when it is absent.
/// One given more than once is refused, whether or not the values agree: which
/// one counts would be a guess (a field that is not a list, such as
/// `Content-Type`, is given once, RFC 9110 §5.3), and a repeated `ce-` attribute
/// is refused too.
pub fn single_header<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    name: &str,
) -> Result<Option<&'a [u8]>, CloudEventError> {
    let mut values = headers
        .into_iter()
        .filter(|(header, _)| header.eq_ignore_ascii_case(name))
        .map(|(_, value)| value);
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let Some(second) = values.next() else {
        return Ok(Some(first));
    };
    let all: Vec<String> = [first, second]
        .into_iter()
        .chain(values)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    Err(CloudEventError::invalid_header(
        name,
        &all.join(", "),
        format!("it is given {} times; send it once", all.len()),
    ))
}

/// The request's `Content-Type` ([`single_header`]), when it is UTF-8.
pub fn content_type<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Option<&'a str>, CloudEventError> {
    Ok(single_header(headers, "Content-Type")?.and_then(|v| std::str::from_utf8(v).ok()))
}

/// The appends of a request's events, one per event. `request` (the
/// [`EXPECTED_VERSION_HEADER`]) is the expectation of each stream's first event in
/// the request (its version before the request), unless the event sets its own;
/// the stream's later events follow that one. Without either, an event expects
/// [`ExpectedVersion::Any`].
pub fn appends(incoming: Vec<Incoming>, request: Option<ExpectedVersion>) -> Vec<StreamAppend> {
    let mut seen = HashSet::new();
    incoming
        .into_iter()
        .map(|incoming| {
            let first = request.is_some() && seen.insert(incoming.stream.clone());
            incoming.into_append(request.filter(|_| first))
        })
        .collect()
}

/// One incoming CloudEvent mapped to the log: the target stream, an optional
/// expected version, the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// From `subject`, or derived from the data (see the crate docs' stream rule).
    pub stream: String,
    /// From the `expectedversion` extension; `None` when it is absent.
    pub expected: Option<ExpectedVersion>,
    pub event: ProposedEvent,
}

impl Incoming {
    /// The append of this one event: its own expected version, else `request`,
    /// else [`ExpectedVersion::Any`] (see [`appends`], for several).
    pub fn into_append(self, request: Option<ExpectedVersion>) -> StreamAppend {
        StreamAppend {
            expected: self.expected.or(request).unwrap_or_default(),
            stream: self.stream,
            events: vec![self.event],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_to_a_single_event_append() {
        let event = ProposedEvent::json("order.placed", "{}").with_identity("shop", "1");
        let mut parts = appends(
            vec![Incoming {
                stream: "order/1".into(),
                expected: None,
                event: event.clone(),
            }],
            None,
        );
        assert_eq!(parts.len(), 1);
        let append = parts.remove(0);
        assert_eq!(append.expected, ExpectedVersion::Any);
        assert_eq!(append.events, vec![event]);
        assert_eq!(append.stream, "order/1");
    }

    #[test]
    fn the_request_expectation_is_each_streams_first_events() {
        let event = |stream: &str, expected| Incoming {
            stream: stream.into(),
            expected,
            event: ProposedEvent::json("order.placed", "{}"),
        };
        let parts = appends(
            vec![
                event("a", None),
                event("b", Some(ExpectedVersion::Exact(4))),
                event("a", None),
                event("c", None),
            ],
            Some(ExpectedVersion::NoStream),
        );
        let expected: Vec<_> = parts.iter().map(|p| (p.stream.as_str(), p.expected)).collect();
        assert_eq!(
            expected,
            [
                ("a", ExpectedVersion::NoStream),
                ("b", ExpectedVersion::Exact(4)),
                ("a", ExpectedVersion::Any),
                ("c", ExpectedVersion::NoStream),
            ]
        );
        let parts = appends(vec![event("a", None)], None);
        assert_eq!(parts[0].expected, ExpectedVersion::Any);
    }

    #[test]
    fn the_request_header_is_read_case_insensitively_and_checked() {
        let headers = [("Opsflow-Expected-Version", &b" 3 "[..])];
        assert_eq!(request_expected(headers).unwrap(), Some(ExpectedVersion::Exact(3)));
        assert_eq!(request_expected([("x", &b"1"[..])]).unwrap(), None);
        let err = request_expected([(EXPECTED_VERSION_HEADER, &b"soon"[..])]).unwrap_err();
        assert_eq!(err.attribute(), Some(EXPECTED_VERSION_HEADER));
        assert!(
            err.to_string()
                .starts_with("header `opsflow-expected-version` has an invalid value \"soon\""),
            "{err}"
        );
        // Given twice, it is refused even when both say the same.
        for second in [&b"no_stream"[..], b"any"] {
            let twice = [
                (EXPECTED_VERSION_HEADER, &b"any"[..]),
                ("OPSFLOW-EXPECTED-VERSION", second),
            ];
            let err = request_expected(twice).unwrap_err();
            assert_eq!(err.attribute(), Some(EXPECTED_VERSION_HEADER));
            assert!(err.to_string().contains("given 2 times; send it once"), "{err}");
        }
    }

    #[test]
    fn a_single_header_is_one_given_once() {
        let headers = [("Content-Type", &b"text/plain"[..]), ("x", b"1")];
        assert_eq!(
            single_header(headers, "content-type").unwrap(),
            Some(&b"text/plain"[..])
        );
        assert_eq!(single_header(headers, "y").unwrap(), None);
        let twice = [
            ("Content-Type", &b"application/cloudevents+json"[..]),
            ("content-type", b"text/plain"),
        ];
        let err = single_header(twice, "Content-Type").unwrap_err();
        assert_eq!(
            err.to_string(),
            "header `Content-Type` has an invalid value \"application/cloudevents+json, text/plain\": it is given 2 \
             times; send it once"
        );
    }
}
