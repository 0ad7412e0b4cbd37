//! Why an event's data does not fit the catalog.

use std::fmt;

/// Result alias for the catalog crate.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// What is wrong, as a value (the message is built from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A required field is absent.
    Missing,
    /// A field is present with a value of the wrong kind.
    WrongType {
        /// What the catalog wants, e.g. `a number >= 0`.
        expected: &'static str,
        /// The value as sent, abbreviated, e.g. `"12"`.
        actual: String,
    },
    /// The data as a whole cannot be read: not JSON, not the protobuf message,
    /// not an object, or no data at all.
    Unreadable(String),
    /// Catalog data must be JSON or protobuf.
    UnsupportedContentType(String),
}

/// An event whose data does not fit its catalog type. Displays as
/// `data.order_id: required field is missing for order.placed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {}", self.reason())]
pub struct CatalogError {
    /// The event type, e.g. `order.placed`.
    pub event_type: String,
    /// The offending field: `data.order_id`, `data`, or `content_type`.
    pub field: String,
    pub problem: Problem,
}

impl CatalogError {
    pub(crate) fn missing(event_type: &str, name: &str) -> Self {
        CatalogError {
            event_type: event_type.to_owned(),
            field: format!("data.{name}"),
            problem: Problem::Missing,
        }
    }

    pub(crate) fn wrong_type(event_type: &str, name: &str, expected: &'static str, actual: String) -> Self {
        CatalogError {
            event_type: event_type.to_owned(),
            field: format!("data.{name}"),
            problem: Problem::WrongType { expected, actual },
        }
    }

    pub(crate) fn unreadable(event_type: &str, reason: impl Into<String>) -> Self {
        CatalogError {
            event_type: event_type.to_owned(),
            field: "data".into(),
            problem: Problem::Unreadable(reason.into()),
        }
    }

    pub(crate) fn content_type(event_type: &str, content_type: &str) -> Self {
        CatalogError {
            event_type: event_type.to_owned(),
            field: "content_type".into(),
            problem: Problem::UnsupportedContentType(content_type.to_owned()),
        }
    }

    /// The message without the field: what is wrong, for which type.
    pub fn reason(&self) -> String {
        Reason(self).to_string()
    }
}

struct Reason<'a>(&'a CatalogError);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let event_type = &self.0.event_type;
        match &self.0.problem {
            Problem::Missing => write!(f, "required field is missing for {event_type}"),
            Problem::WrongType { expected, actual } => {
                write!(f, "expected {expected}, got {actual} ({event_type})")
            }
            Problem::Unreadable(why) => write!(f, "{why} ({event_type})"),
            Problem::UnsupportedContentType(ct) => {
                write!(
                    f,
                    "{event_type} data must be application/json or application/protobuf, not {ct:?}"
                )?;
                // What binary data is taken as when nothing declares its type.
                if ct == "application/octet-stream" {
                    f.write_str(
                        " (the CloudEvents default when no content type is declared: declare it with \
                         datacontenttype, or with the Content-Type header in binary mode)",
                    )?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_field_type_and_values() {
        assert_eq!(
            CatalogError::missing("order.placed", "order_id").to_string(),
            "data.order_id: required field is missing for order.placed"
        );
        let err = CatalogError::wrong_type("order.placed", "total", "a number >= 0", "\"12\"".into());
        assert_eq!(
            err.to_string(),
            r#"data.total: expected a number >= 0, got "12" (order.placed)"#
        );
        assert_eq!(err.reason(), r#"expected a number >= 0, got "12" (order.placed)"#);
    }

    #[test]
    fn undeclared_binary_data_says_how_to_declare_its_type() {
        let err = CatalogError::content_type("order.placed", "text/plain");
        assert_eq!(
            err.reason(),
            r#"order.placed data must be application/json or application/protobuf, not "text/plain""#
        );
        let err = CatalogError::content_type("order.placed", "application/octet-stream");
        assert!(
            err.reason().ends_with(
                "not \"application/octet-stream\" (the CloudEvents default when no content type is declared: \
                 declare it with datacontenttype, or with the Content-Type header in binary mode)"
            ),
            "{}",
            err.reason()
        );
    }
}
