//! The core every binding shares: the attributes a binding collected (JSON members,
//! `ce-` headers or protobuf fields and map entries) plus the payload, checked in a
//! fixed order and turned into an [`Incoming`] event. Collecting first and checking
//! after keeps the first error reported independent of member or header order.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine;
use bytes::Bytes;
use opsflow_log::{ExpectedVersion, JSON, ProposedEvent, UnixNanos};

use crate::error::{CloudEventError, Result};
use crate::json::{compact_json, json_kind};
use crate::{Incoming, media, stream};

/// An attribute value as the binding carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AttributeValue<'a> {
    /// Borrowed from the message where the binding can (JSON strings without
    /// escapes).
    String(Cow<'a, str>),
    /// A JSON number, as its original text.
    Number(Cow<'a, str>),
    Boolean(bool),
    /// A JSON object or array, which no attribute may be; holds its description.
    Composite(&'static str),
}

impl AttributeValue<'_> {
    fn kind(&self) -> &'static str {
        match self {
            AttributeValue::String(_) => "a string",
            AttributeValue::Number(_) => "a number",
            AttributeValue::Boolean(_) => "a boolean",
            AttributeValue::Composite(kind) => kind,
        }
    }
}

/// The event data as the binding carried it.
#[derive(Debug)]
pub(crate) enum Payload<'a> {
    Absent,
    /// The `data` member of a JSON event, as its original JSON text; `compact`
    /// when it is known to hold no insignificant whitespace.
    Json {
        raw: &'a str,
        compact: bool,
    },
    /// The `data_base64` member of a JSON event.
    Base64(String),
    /// The body of a binary-mode message.
    Body(Bytes),
    /// Data the format marks as binary (protobuf `binary_data`).
    Binary(Bytes),
    /// Data the format marks as text (protobuf `text_data`).
    Text(String),
    /// A serialized protobuf message (the value of protobuf `proto_data`).
    Protobuf(Bytes),
}

/// Whether `name` is a CloudEvents attribute name: lower-case ASCII letters and digits.
pub(crate) fn is_attribute_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The attributes [`Attributes::into_incoming`] takes by name, each kept in a slot
/// of its own: the others are extensions.
const KNOWN: [&str; 11] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "expectedversion",
    "correlationid",
    "causationid",
];

/// The slot of a [`KNOWN`] attribute.
fn slot(name: &str) -> Option<usize> {
    KNOWN.iter().position(|known| *known == name)
}

/// Attributes collected from one event, not yet checked. Names are borrowed from
/// the message where the binding can (JSON member names without escapes).
#[derive(Debug, Default)]
pub(crate) struct Attributes<'a> {
    /// The [`KNOWN`] attributes, by slot.
    known: [Option<AttributeValue<'a>>; KNOWN.len()],
    /// The others, in the order added; an event has a few, so a list beats a map.
    extensions: Vec<(Cow<'a, str>, AttributeValue<'a>)>,
}

impl<'a> Attributes<'a> {
    /// Adds one attribute; refuses invalid names and repeats.
    pub(crate) fn insert(&mut self, name: impl Into<Cow<'a, str>>, value: AttributeValue<'a>) -> Result<()> {
        let name = name.into();
        if !is_attribute_name(&name) {
            return Err(CloudEventError::invalid_name(&name));
        }
        let taken = match slot(&name) {
            Some(i) => self.known[i].replace(value).is_some(),
            None if self.extensions.iter().any(|(n, _)| *n == name) => true,
            None => {
                self.extensions.push((name, value));
                return Ok(());
            }
        };
        if taken {
            return Err(CloudEventError::duplicate(&name));
        }
        Ok(())
    }

    /// Whether the attribute `name` has been added.
    pub(crate) fn contains(&self, name: &str) -> bool {
        match slot(name) {
            Some(i) => self.known[i].is_some(),
            None => self.extensions.iter().any(|(n, _)| n == name),
        }
    }

    /// Checks the attributes and the payload and maps them to the log.
    pub(crate) fn into_incoming(mut self, payload: Payload<'_>) -> Result<Incoming> {
        let specversion = self.take_string("specversion")?.ok_or_else(|| missing("specversion"))?;
        if specversion != "1.0" {
            return Err(CloudEventError::UnsupportedSpecVersion {
                actual: specversion.into_owned(),
            });
        }
        let id = self.required("id")?.into_owned();
        let source = self.required("source")?.into_owned();
        check_uri_reference("source", &source)?;
        let event_type = self.required("type")?.into_owned();
        let subject = self.non_empty("subject")?;
        let time = self.non_empty("time")?.map(|time| parse_time(&time)).transpose()?;
        let declared_content_type = self.non_empty("datacontenttype")?.map(Cow::into_owned);
        let expected = self.remove("expectedversion").map(parse_expected).transpose()?;
        let correlation_id = self.take_string("correlationid")?.unwrap_or_default().into_owned();
        let causation_id = self.take_string("causationid")?.unwrap_or_default().into_owned();
        let mut metadata = BTreeMap::new();
        if let Some(schema) = self.non_empty("dataschema")? {
            // Checked by the log (a URI-reference: the protobuf format's type URLs,
            // which producers give as the schema, have no scheme), where an exact
            // retry of an event recorded before the check still answers as a
            // duplicate.
            metadata.insert("dataschema".to_owned(), schema.into_owned());
        }
        // In name order, so the first extension reported does not depend on the
        // order of the members or headers.
        let mut extensions = std::mem::take(&mut self.extensions);
        extensions.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (name, value) in extensions {
            // `data` is the payload, never an attribute (spec, "Attribute Naming").
            if name == "data" {
                return Err(CloudEventError::NotAllowed {
                    attribute: name.into_owned(),
                    reason: "`data` is the event's payload, not an attribute (in binary mode the body)".into(),
                });
            }
            let text = extension_text(&name, value)?;
            metadata.insert(name.into_owned(), text);
        }
        let (content_type, data) = resolve_payload(payload, declared_content_type)?;
        let event = ProposedEvent {
            id,
            source,
            event_type,
            time,
            content_type,
            data,
            correlation_id,
            causation_id,
            metadata,
        };
        let stream = stream::stream_for(subject.as_deref(), &event)?;
        Ok(Incoming {
            stream,
            expected,
            event,
        })
    }

    /// A [`KNOWN`] attribute, taken out.
    fn remove(&mut self, name: &str) -> Option<AttributeValue<'a>> {
        self.known.get_mut(slot(name)?)?.take()
    }

    fn take_string(&mut self, name: &str) -> Result<Option<Cow<'a, str>>> {
        match self.remove(name) {
            None => Ok(None),
            Some(AttributeValue::String(text)) => Ok(Some(text)),
            Some(other) => Err(CloudEventError::wrong_type(name, "a string", other.kind())),
        }
    }

    /// An optional string attribute that, when present, must not be empty.
    fn non_empty(&mut self, name: &str) -> Result<Option<Cow<'a, str>>> {
        match self.take_string(name)? {
            Some(text) if text.is_empty() => Err(CloudEventError::EmptyAttribute {
                attribute: name.to_owned(),
            }),
            other => Ok(other),
        }
    }

    fn required(&mut self, name: &str) -> Result<Cow<'a, str>> {
        self.non_empty(name)?.ok_or_else(|| missing(name))
    }
}

fn missing(name: &str) -> CloudEventError {
    CloudEventError::MissingAttribute {
        attribute: name.to_owned(),
    }
}

/// A URI-reference (RFC 3986) as far as its characters go (see
/// [`opsflow_log::uri_reference_problem`]).
fn check_uri_reference(attribute: &str, text: &str) -> Result<()> {
    match opsflow_log::uri_reference_problem(text) {
        None => Ok(()),
        Some(problem) => Err(CloudEventError::invalid(attribute, text, problem)),
    }
}

/// Whether `text` has the shape RFC 3339 gives a timestamp (`date-time`: seconds
/// required, `T` or a space between date and time, `Z` or a `+hh:mm` offset), which
/// the parser alone does not insist on.
fn rfc3339_shaped(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |from: usize, to: usize| b.get(from..to).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    let date_time = digits(0, 4)
        && at(4, b"-")
        && digits(5, 7)
        && at(7, b"-")
        && digits(8, 10)
        && at(10, b"Tt ")
        && digits(11, 13)
        && at(13, b":")
        && digits(14, 16)
        && at(16, b":")
        && digits(17, 19);
    if !date_time {
        return false;
    }
    let mut i = 19;
    if at(i, b".") {
        let start = i + 1;
        i = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if i == start {
            return false;
        }
    }
    // time-numoffset: hours 00 to 23, minutes 00 to 59 (RFC 3339 §5.6).
    let two_digits = |from: usize| (b[from] - b'0') * 10 + (b[from + 1] - b'0');
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', ..] => {
            b.len() == i + 6
                && digits(i + 1, i + 3)
                && at(i + 3, b":")
                && digits(i + 4, i + 6)
                && two_digits(i + 1) < 24
                && two_digits(i + 4) < 60
        }
        _ => false,
    }
}

/// `text` with its fraction of a second cut to nanoseconds, the log's precision:
/// RFC 3339 allows any number of digits (`time-secfrac = "." 1*DIGIT`), the parser
/// at most nine. `text` is [`rfc3339_shaped`].
fn to_nanoseconds(text: &str) -> std::borrow::Cow<'_, str> {
    const FRACTION: usize = 20;
    if text.as_bytes().get(FRACTION - 1) != Some(&b'.') {
        return text.into();
    }
    let digits = text.as_bytes()[FRACTION..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits <= 9 {
        return text.into();
    }
    format!("{}{}", &text[..FRACTION + 9], &text[FRACTION + digits..]).into()
}

/// RFC 3339 to nanoseconds since the epoch.
fn parse_time(text: &str) -> Result<UnixNanos> {
    if !rfc3339_shaped(text) {
        return Err(CloudEventError::invalid(
            "time",
            text,
            "not an RFC 3339 timestamp (expected YYYY-MM-DDThh:mm:ss[.fraction] and Z or an offset from -23:59 \
             to +23:59 such as +02:00)",
        ));
    }
    let timestamp: jiff::Timestamp = to_nanoseconds(text)
        .parse()
        .map_err(|e| CloudEventError::invalid("time", text, format!("not an RFC 3339 timestamp ({e})")))?;
    UnixNanos::try_from(timestamp.as_nanosecond()).map_err(|_| {
        CloudEventError::invalid(
            "time",
            text,
            "outside the years 1677 to 2262 that the log can represent",
        )
    })
}

/// `any`, `no_stream`, `stream_exists` or a version, as a string or a JSON integer.
fn parse_expected(value: AttributeValue<'_>) -> Result<ExpectedVersion> {
    const ATTRIBUTE: &str = "expectedversion";
    const ALLOWED: &str = "must be any, no_stream, stream_exists or a version number";
    match value {
        AttributeValue::String(text) => text
            .trim()
            .parse()
            .map_err(|_| CloudEventError::invalid(ATTRIBUTE, &text, ALLOWED)),
        AttributeValue::Number(text) => text
            .parse()
            .map(ExpectedVersion::Exact)
            .map_err(|_| CloudEventError::invalid(ATTRIBUTE, &text, ALLOWED)),
        other => Err(CloudEventError::wrong_type(
            ATTRIBUTE,
            "a string or an integer",
            other.kind(),
        )),
    }
}

/// An extension attribute as a metadata value. A JSON number must be a CloudEvents
/// Integer (32 bits, no fraction: JSON format §2.2); no other numbers exist there.
fn extension_text(name: &str, value: AttributeValue<'_>) -> Result<String> {
    match value {
        AttributeValue::String(text) => Ok(text.into_owned()),
        AttributeValue::Number(text) => text.parse::<i32>().map(|n| n.to_string()).map_err(|_| {
            CloudEventError::invalid(
                name,
                &text,
                "a number must be a CloudEvents Integer (a whole number from -2147483648 to 2147483647); \
                 send other numbers as strings",
            )
        }),
        AttributeValue::Boolean(flag) => Ok(flag.to_string()),
        AttributeValue::Composite(kind) => Err(CloudEventError::wrong_type(name, "a string, number or boolean", kind)),
    }
}

/// The content type and bytes to store, from the payload and `datacontenttype`.
fn resolve_payload(payload: Payload<'_>, declared: Option<String>) -> Result<(String, Bytes)> {
    match payload {
        Payload::Absent => Ok((declared.unwrap_or_default(), Bytes::new())),
        Payload::Json { raw, compact } => {
            let content_type = declared.unwrap_or_else(|| JSON.to_owned());
            if media::is_json(&content_type) {
                let stored = if compact {
                    raw.as_bytes().to_vec()
                } else {
                    compact_json(raw)
                };
                return Ok((content_type, Bytes::from(stored)));
            }
            // A declared type that is no media type is the mistake to name, not
            // that JSON data does not fit it.
            if let Some(problem) = opsflow_log::media_type_problem(&content_type) {
                return Err(CloudEventError::invalid("datacontenttype", &content_type, problem));
            }
            match serde_json::from_str::<String>(raw) {
                Ok(text) => Ok((content_type, Bytes::from(text))),
                Err(_) => Err(CloudEventError::wrong_type(
                    "data",
                    format!("a string (datacontenttype {content_type:?} is not JSON)"),
                    json_kind(raw),
                )),
            }
        }
        Payload::Base64(text) => {
            let data = base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|e| CloudEventError::invalid("data_base64", &text, format!("not standard base64 ({e})")))?;
            resolve_payload(Payload::Binary(Bytes::from(data)), declared)
        }
        Payload::Binary(data) => Ok((declared.unwrap_or_else(|| media::OCTET_STREAM.to_owned()), data)),
        Payload::Text(text) => {
            let content_type = declared.unwrap_or_else(|| media::TEXT_PLAIN.to_owned());
            if media::is_json(&content_type)
                && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text)
            {
                return Err(CloudEventError::invalid(
                    "data",
                    &text,
                    format!("not JSON, although datacontenttype {content_type:?} says it is ({e})"),
                ));
            }
            Ok((content_type, Bytes::from(text)))
        }
        Payload::Protobuf(data) => match declared {
            None => Ok((media::PROTOBUF.to_owned(), data)),
            Some(declared) if media::is_protobuf(&declared) => Ok((declared, data)),
            Some(declared) => Err(CloudEventError::invalid(
                "datacontenttype",
                &declared,
                "the data is a protobuf message (`proto_data`): datacontenttype must be application/protobuf or absent",
            )),
        },
        Payload::Body(body) => {
            let content_type = match declared {
                Some(declared) => declared,
                None if body.is_empty() => String::new(),
                None => media::OCTET_STREAM.to_owned(),
            };
            Ok((content_type, body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(text: &str) -> AttributeValue<'_> {
        AttributeValue::String(text.to_owned().into())
    }

    fn base() -> Attributes<'static> {
        let mut attributes = Attributes::default();
        for (name, value) in [
            ("specversion", "1.0"),
            ("id", "1"),
            ("source", "shop"),
            ("type", "t"),
            ("subject", "s"),
        ] {
            attributes
                .insert(name.to_owned(), string(value))
                .expect("valid attribute");
        }
        attributes
    }

    #[test]
    fn attribute_names_are_lower_case_letters_and_digits() {
        assert!(is_attribute_name("traceparent2"));
        for bad in ["", "Id", "my_ext", "my-ext", "é"] {
            assert!(!is_attribute_name(bad), "{bad:?}");
            let err = Attributes::default()
                .insert(bad.to_owned(), string("x"))
                .expect_err(bad);
            assert!(matches!(err, CloudEventError::InvalidAttributeName { .. }), "{err}");
        }
    }

    #[test]
    fn repeated_attribute_is_refused() {
        let err = base().insert("id".to_owned(), string("2")).expect_err("duplicate");
        assert_eq!(err.to_string(), "attribute `id` is given more than once");
    }

    #[test]
    fn expected_version_from_string_or_integer() {
        for (value, expected) in [
            (string("any"), ExpectedVersion::Any),
            (string("no_stream"), ExpectedVersion::NoStream),
            (string("stream_exists"), ExpectedVersion::StreamExists),
            (string("7"), ExpectedVersion::Exact(7)),
            (AttributeValue::Number("3".into()), ExpectedVersion::Exact(3)),
        ] {
            let mut attributes = base();
            attributes.insert("expectedversion", value).expect("valid attribute");
            let incoming = attributes.into_incoming(Payload::Absent).expect("valid event");
            assert_eq!(incoming.expected, Some(expected));
        }
        for bad in [
            string("soon"),
            AttributeValue::Number("-1".into()),
            AttributeValue::Number("1.5".into()),
        ] {
            let mut attributes = base();
            attributes.insert("expectedversion", bad).expect("valid attribute");
            let err = attributes
                .into_incoming(Payload::Absent)
                .expect_err("invalid expected version");
            assert_eq!(err.attribute(), Some("expectedversion"), "{err}");
        }
        let mut attributes = base();
        attributes
            .insert("expectedversion", AttributeValue::Boolean(true))
            .expect("valid attribute");
        let err = attributes.into_incoming(Payload::Absent).expect_err("wrong type");
        assert!(matches!(err, CloudEventError::WrongType { .. }), "{err}");
    }

    #[test]
    fn time_outside_the_log_range_is_refused() {
        let mut attributes = base();
        attributes
            .insert("time", string("2300-01-01T00:00:00Z"))
            .expect("valid attribute");
        let err = attributes.into_incoming(Payload::Absent).expect_err("out of range");
        assert!(err.to_string().contains("1677 to 2262"), "{err}");
    }

    #[test]
    fn binary_body_without_content_type_is_octet_stream() {
        let incoming = base()
            .into_incoming(Payload::Body(Bytes::from_static(b"\x00\x01")))
            .expect("valid");
        assert_eq!(incoming.event.content_type, "application/octet-stream");
        let incoming = base().into_incoming(Payload::Body(Bytes::new())).expect("valid");
        assert_eq!(incoming.event.content_type, "");
    }
}
