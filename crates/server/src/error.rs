//! The one place where errors become gRPC status codes and HTTP statuses.
//!
//! | error | gRPC | HTTP |
//! |---|---|---|
//! | invalid argument, limit exceeded, bad CloudEvent | `INVALID_ARGUMENT` | 400 |
//! | wrong expected version | `FAILED_PRECONDITION` | 409 |
//! | duplicate `(source, id)` with other content | `ALREADY_EXISTS` | 409 |
//! | not found, unknown view | `NOT_FOUND` | 404 |
//! | as-of past the head or in the future (valid later) | `OUT_OF_RANGE` | 400 |
//! | views runtime stopped | `UNAVAILABLE` | 503 |
//! | unsupported media type | `INVALID_ARGUMENT` | 415 |
//! | request body over the limit | `INVALID_ARGUMENT` | 413 |
//! | closed / storage failure (poisoned) | `UNAVAILABLE` | 503 |
//! | corrupt data, storage error | `INTERNAL` | 500 |

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use opsflow_cloudevents::CloudEventError;
use opsflow_log::{ErrorKind, LogError};
use opsflow_views::ViewsError;
use serde_json::{Value, json};

/// An error of the API layer, from any lower layer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    CloudEvent(#[from] CloudEventError),
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error(
        "unsupported content type {0:?}: use application/cloudevents+json, application/cloudevents-batch+json, or binary mode with ce-* headers"
    )]
    UnsupportedMediaType(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("method {method} not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("request body too large: the limit is {limit} bytes (twice the largest append)")]
    BodyTooLarge { limit: u64 },
    #[error(transparent)]
    Views(#[from] opsflow_views::ViewsError),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The gRPC code, the HTTP status, and a short machine-readable name.
    fn class(&self) -> (tonic::Code, StatusCode, &'static str) {
        use tonic::Code;
        match self {
            ApiError::Log(e) => ApiError::log_class(e.kind()),
            ApiError::CloudEvent(_) | ApiError::InvalidArgument { .. } => {
                (Code::InvalidArgument, StatusCode::BAD_REQUEST, "invalid_argument")
            }
            ApiError::UnsupportedMediaType(_) => (
                Code::InvalidArgument,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            ApiError::NotFound(_) => (Code::NotFound, StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed { .. } => (
                Code::Unimplemented,
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            ),
            ApiError::BodyTooLarge { .. } => (Code::InvalidArgument, StatusCode::PAYLOAD_TOO_LARGE, "limit_exceeded"),
            ApiError::Views(e) => match e {
                // Valid later, once the log or the clock gets there (gRPC's
                // OUT_OF_RANGE, not INVALID_ARGUMENT).
                ViewsError::PastHead { .. } | ViewsError::FutureTime { .. } => {
                    (Code::OutOfRange, StatusCode::BAD_REQUEST, "out_of_range")
                }
                ViewsError::UnknownView { .. } | ViewsError::OtherKind { .. } => {
                    (Code::NotFound, StatusCode::NOT_FOUND, "not_found")
                }
                ViewsError::Log(e) => ApiError::log_class(e.kind()),
                ViewsError::Stopped(_) => (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                ViewsError::Storage(_) | ViewsError::Corrupt(_) | ViewsError::Files(_) => {
                    (Code::Internal, StatusCode::INTERNAL_SERVER_ERROR, "internal")
                }
            },
        }
    }

    fn log_class(kind: ErrorKind) -> (tonic::Code, StatusCode, &'static str) {
        use tonic::Code;
        let (grpc, http) = match kind {
            ErrorKind::InvalidArgument | ErrorKind::LimitExceeded => (Code::InvalidArgument, StatusCode::BAD_REQUEST),
            ErrorKind::WrongExpectedVersion => (Code::FailedPrecondition, StatusCode::CONFLICT),
            ErrorKind::DuplicateConflict => (Code::AlreadyExists, StatusCode::CONFLICT),
            ErrorKind::Unavailable => (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            ErrorKind::Internal => (Code::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        };
        (grpc, http, kind.as_str())
    }

    /// Structured detail: the field, limit, expected and actual values.
    pub fn details(&self) -> Value {
        let (_, _, code) = self.class();
        let mut body = json!({ "code": code, "message": self.to_string() });
        let extra = match self {
            ApiError::Log(e) | ApiError::Views(ViewsError::Log(e)) => e.detail_fields(),
            ApiError::InvalidArgument { field, .. } => json!({ "field": field }),
            ApiError::Views(ViewsError::PastHead { head, .. }) => json!({ "field": "as_of", "head": head }),
            ApiError::Views(ViewsError::FutureTime { .. }) => json!({ "field": "as_of" }),
            ApiError::Views(ViewsError::UnknownView { name, others, .. }) => {
                let names: Vec<&String> = std::iter::once(name).chain(others).collect();
                json!({ "name": name, "names": names })
            }
            ApiError::Views(ViewsError::OtherKind { name, .. }) => json!({ "name": name }),
            ApiError::CloudEvent(e) => e.detail_fields(),
            ApiError::BodyTooLarge { limit } => json!({ "field": "body", "limit": limit }),
            _ => json!({}),
        };
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        body
    }

    fn log(&self) {
        let (code, _, _) = self.class();
        if matches!(code, tonic::Code::Internal | tonic::Code::Unavailable) {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request refused");
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(err: ApiError) -> Self {
        err.log();
        let (code, _, _) = err.class();
        let mut status = tonic::Status::new(code, err.to_string());
        if let Ok(value) = err.details().to_string().parse() {
            status.metadata_mut().insert("opsflow-error", value);
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let (_, status, _) = self.class();
        (status, axum::Json(json!({ "error": self.details() }))).into_response()
    }
}

/// tonic answers a request it cannot decode (malformed protobuf, invalid UTF-8 in a
/// string field) with `INTERNAL`, as if the server had failed; it is the client's
/// input, so it becomes `INVALID_ARGUMENT` naming the field, with the
/// `opsflow-error` detail other refused inputs carry.
pub(crate) async fn decode_errors_are_invalid_argument(mut response: Response) -> Response {
    const PREFIX: &str = "failed to decode Protobuf message: ";
    let Some(detail) = tonic::Status::from_header_map(response.headers())
        .filter(|status| status.code() == tonic::Code::Internal)
        .and_then(|status| status.message().strip_prefix(PREFIX).map(str::to_owned))
    else {
        return response;
    };
    // prost names the field innermost first: "ProposedEvent.source:
    // AppendRequest.events: invalid string value: ..." is `events.source`.
    let mut path: Vec<&str> = detail
        .split(": ")
        .map_while(|part| {
            let (message, field) = part.split_once('.')?;
            let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            (word(message) && word(field)).then_some(field)
        })
        .collect();
    path.reverse();
    let field = if path.is_empty() {
        "request".to_owned()
    } else {
        path.join(".")
    };
    let status = tonic::Status::from(ApiError::invalid(field, detail.as_str()));
    // Replaces grpc-status and grpc-message, and adds the opsflow-error detail.
    let _ = status.add_header(response.headers_mut());
    response
}

/// tonic answers a method its service does not have with `UNIMPLEMENTED` and no
/// message; this names the method, as an unknown service's answer does.
pub(crate) async fn unimplemented_names_the_method(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    if tonic::Status::from_header_map(response.headers())
        .is_some_and(|status| status.code() == tonic::Code::Unimplemented && status.message().is_empty())
    {
        let _ = tonic::Status::unimplemented(format!("no gRPC method {path}")).add_header(response.headers_mut());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsflow_log::ExpectedVersion;

    #[test]
    fn version_conflict_maps_to_failed_precondition_with_figures() {
        let err = ApiError::from(LogError::WrongExpectedVersion {
            stream: "s".into(),
            expected: ExpectedVersion::Exact(3),
            actual: Some(5),
        });
        let details = err.details();
        assert_eq!(details["expected"], "3");
        assert_eq!(details["actual"], 5);
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(status.message().contains("expected 3, actual 5"));
    }
}
