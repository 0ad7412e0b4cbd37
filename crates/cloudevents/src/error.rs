//! Why a CloudEvent was refused. Every variant names the attribute (or JSON
//! position) at fault, so a producer can fix the event without reading our code.

/// Result alias for the CloudEvents bindings.
pub type Result<T, E = CloudEventError> = std::result::Result<T, E>;

/// A CloudEvent that cannot be mapped to the log.
#[derive(Debug, thiserror::Error)]
pub enum CloudEventError {
    /// The body is not JSON, or not JSON of the right shape (serde's message
    /// carries the line and column).
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),

    /// The body does not decode as the protobuf message of its format
    /// (`CloudEvent` or `CloudEventBatch`); prost's message names the field.
    #[error("invalid protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),

    /// [`parse_any`](crate::parse_any) cannot tell the content mode: the content
    /// type is not a CloudEvents format, there is no `ce-specversion` header, and
    /// (without a content type) the body is not a JSON object.
    #[error(
        "cannot tell the CloudEvents content mode: {}; send one of {}, or binary mode with a \
         `ce-specversion` header",
        describe_content_type(.content_type.as_deref()),
        crate::mode::supported(*.batches)
    )]
    UnsupportedContentMode {
        /// The content type as given; `None` when there was none.
        content_type: Option<String>,
        /// Whether batches are taken where this was sent (the hint lists their formats).
        batches: bool,
    },

    /// A batch where a message carries one event ([`parse_one`](crate::parse_one)): the
    /// CloudEvents NATS binding has no batch mode.
    #[error(
        "content type {content_type:?} is a batch, but a message here carries one event (the CloudEvents \
         NATS binding has no batch mode): publish each event as a message of its own"
    )]
    BatchNotTaken {
        /// The content type as given.
        content_type: String,
    },

    /// A required attribute (`specversion`, `id`, `source`, `type`) is absent or null.
    #[error("missing required attribute `{attribute}`")]
    MissingAttribute { attribute: String },

    /// An attribute has the wrong JSON type, e.g. `"id": 5`.
    #[error("attribute `{attribute}` must be {expected}, found {found}")]
    WrongType {
        attribute: String,
        expected: String,
        found: String,
    },

    /// An attribute that must not be empty is the empty string.
    #[error("attribute `{attribute}` must not be empty")]
    EmptyAttribute { attribute: String },

    /// `specversion` is not `1.0`.
    #[error("unsupported `specversion`: expected \"1.0\", found {actual:?}")]
    UnsupportedSpecVersion { actual: String },

    /// An attribute's value does not parse (time, expected version, base64, stream name).
    #[error("attribute `{attribute}` has an invalid value {value:?}: {reason}")]
    InvalidValue {
        attribute: String,
        value: String,
        reason: String,
    },

    /// A request header (not a CloudEvents attribute) whose value is not valid.
    #[error("header `{header}` has an invalid value {value:?}: {reason}")]
    InvalidHeader {
        header: String,
        value: String,
        reason: String,
    },

    /// A member or `ce-` header whose name is not a CloudEvents attribute name.
    #[error("`{name}` is not a valid CloudEvents attribute name (lower-case ASCII letters and digits only)")]
    InvalidAttributeName { name: String },

    /// The same attribute appears twice in one event.
    #[error("attribute `{attribute}` is given more than once")]
    DuplicateAttribute { attribute: String },

    /// An attribute that this binding does not allow, e.g. `ce-datacontenttype` in binary mode.
    #[error("attribute `{attribute}` is not allowed here: {reason}")]
    NotAllowed { attribute: String, reason: String },

    /// Both `data` and `data_base64` are present.
    #[error("an event carries either `data` or `data_base64`, not both")]
    DataConflict,

    /// No `subject`, and the stream could not be derived from the data.
    #[error(
        "missing subject: the stream is taken from the CloudEvents `subject` attribute (or, for JSON data and protobuf catalog data, from the data's {}{})",
        .fields.join(" or "),
        not_json_note(.not_json.as_deref())
    )]
    MissingSubject {
        /// The data fields (or pairs of fields) that were looked for, in order, as
        /// shown: "`po_id`", "`sku` and `location`".
        fields: Vec<String>,
        /// The data's content type when it is not JSON (so no field was looked at).
        not_json: Option<String>,
    },

    /// An event of a batch is invalid; `index` counts from 0.
    #[error("event [{index}]: {error}")]
    InBatch { index: usize, error: Box<CloudEventError> },
}

impl CloudEventError {
    /// The error's detail for an error body: `{"field": <attribute>}` when an
    /// attribute is at fault, else nothing (a body without `field`, as for every
    /// other error that names none).
    pub fn detail_fields(&self) -> serde_json::Value {
        let mut fields = serde_json::Map::new();
        if let Some(attribute) = self.attribute() {
            fields.insert("field".into(), attribute.into());
        }
        // Which event of a batch, as the message says ("event [1]: ...").
        if let Some(index) = self.batch_index() {
            fields.insert("index".into(), index.into());
        }
        serde_json::Value::Object(fields)
    }

    /// The attribute at fault, when there is one (`data` for payload errors,
    /// `subject` when the stream is missing). Looks through batch wrapping.
    pub fn attribute(&self) -> Option<&str> {
        match self {
            CloudEventError::Json(_)
            | CloudEventError::Protobuf(_)
            | CloudEventError::UnsupportedContentMode { .. }
            | CloudEventError::BatchNotTaken { .. } => None,
            CloudEventError::MissingAttribute { attribute }
            | CloudEventError::WrongType { attribute, .. }
            | CloudEventError::EmptyAttribute { attribute }
            | CloudEventError::InvalidValue { attribute, .. }
            | CloudEventError::DuplicateAttribute { attribute }
            | CloudEventError::NotAllowed { attribute, .. } => Some(attribute),
            CloudEventError::InvalidAttributeName { name } => Some(name),
            CloudEventError::InvalidHeader { header, .. } => Some(header),
            CloudEventError::UnsupportedSpecVersion { .. } => Some("specversion"),
            CloudEventError::DataConflict => Some("data"),
            CloudEventError::MissingSubject { .. } => Some("subject"),
            CloudEventError::InBatch { error, .. } => error.attribute(),
        }
    }

    /// The index of the offending event in a batch.
    pub fn batch_index(&self) -> Option<usize> {
        match self {
            CloudEventError::InBatch { index, .. } => Some(*index),
            _ => None,
        }
    }

    pub(crate) fn in_batch(self, index: usize) -> Self {
        CloudEventError::InBatch {
            index,
            error: Box::new(self),
        }
    }

    pub(crate) fn invalid(attribute: &str, value: &str, reason: impl Into<String>) -> Self {
        CloudEventError::InvalidValue {
            attribute: excerpt(attribute),
            value: excerpt(value),
            reason: reason.into(),
        }
    }

    /// A name that is not an attribute name, quoted cut ([`excerpt`]).
    pub(crate) fn invalid_name(name: &str) -> Self {
        CloudEventError::InvalidAttributeName { name: excerpt(name) }
    }

    /// An attribute given twice, its name quoted cut ([`excerpt`]).
    pub(crate) fn duplicate(attribute: &str) -> Self {
        CloudEventError::DuplicateAttribute {
            attribute: excerpt(attribute),
        }
    }

    /// A request header whose value is not valid, both quoted cut ([`excerpt`]).
    pub(crate) fn invalid_header(header: &str, value: &str, reason: impl Into<String>) -> Self {
        CloudEventError::InvalidHeader {
            header: excerpt(header),
            value: excerpt(value),
            reason: reason.into(),
        }
    }

    pub(crate) fn wrong_type(attribute: &str, expected: impl Into<String>, found: &str) -> Self {
        CloudEventError::WrongType {
            attribute: excerpt(attribute),
            expected: expected.into(),
            found: found.to_owned(),
        }
    }
}

/// Values quoted in errors are cut to this many bytes (a bad `data_base64` can be megabytes).
const MAX_QUOTED: usize = 80;

fn excerpt(value: &str) -> String {
    if value.len() <= MAX_QUOTED {
        return value.to_owned();
    }
    let mut end = MAX_QUOTED;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &value[..end])
}

fn describe_content_type(content_type: Option<&str>) -> String {
    match content_type {
        Some(content_type) => format!("content type {:?} is not a CloudEvents format", excerpt(content_type)),
        None => "there is no content type and the body is not a JSON object".to_owned(),
    }
}

/// Why no key field was found: the data lacks it, or is not JSON (producers that
/// leave out the content type, as CloudEvents SDKs do in binary mode, send bytes:
/// `application/octet-stream`).
fn not_json_note(content_type: Option<&str>) -> String {
    content_type.map_or_else(
        || ": a non-empty string or a number, which this event's data does not give".to_owned(),
        |ct| {
            format!(
                "; this event's data is `{ct}`, not JSON, so no field was read: if it is JSON, \
             say so in `datacontenttype` (in binary mode, the `Content-Type` header)"
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_errors_name_the_index_and_keep_the_attribute() {
        let err = CloudEventError::MissingAttribute { attribute: "id".into() }.in_batch(3);
        assert_eq!(err.to_string(), "event [3]: missing required attribute `id`");
        assert_eq!(err.attribute(), Some("id"));
        assert_eq!(err.batch_index(), Some(3));
        assert_eq!(err.detail_fields(), serde_json::json!({"field": "id", "index": 3}));
    }

    #[test]
    fn long_values_are_cut_on_a_char_boundary() {
        let err = CloudEventError::invalid("data_base64", &"é".repeat(100), "bad");
        let CloudEventError::InvalidValue { value, .. } = err else {
            panic!("wrong variant")
        };
        assert!(value.ends_with("...") && value.len() <= MAX_QUOTED + 3, "{value}");
    }

    #[test]
    fn missing_subject_lists_the_fields_tried() {
        let err = CloudEventError::MissingSubject {
            fields: vec!["`goods_id`".into(), "`po_id`".into()],
            not_json: None,
        };
        assert!(
            err.to_string()
                .ends_with("from the data's `goods_id` or `po_id`: a non-empty string or a number, which this event's data does not give)"),
            "{err}"
        );
        let err = CloudEventError::MissingSubject {
            fields: vec!["order_id".into()],
            not_json: Some("application/octet-stream".into()),
        };
        assert!(
            err.to_string()
                .contains("data is `application/octet-stream`, not JSON, so no field was read"),
            "{err}"
        );
    }
}
