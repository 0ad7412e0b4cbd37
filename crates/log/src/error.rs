//! Errors of the log layer. Expected outcomes (a version conflict, a conflicting
//! duplicate, a limit) are variants with their figures, never strings to parse.

use crate::ExpectedVersion;

/// Result alias for the log crate.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// Everything that can go wrong in the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A field of a proposed event or request is invalid (syntax, emptiness).
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },

    /// A configured limit was exceeded.
    #[error("{what} is {actual}, over the limit of {limit} (log.{setting})")]
    LimitExceeded {
        /// Where in the request: `events[3]` (one event), `events` (the append).
        field: String,
        /// What was measured, in words: `size of events[3] (bytes)`.
        what: String,
        /// The configuration key of the limit (under `[log]`): `max_event_bytes`.
        setting: &'static str,
        limit: u64,
        actual: u64,
    },

    /// The stream is not at the expected version; nothing was written.
    #[error("wrong expected version for stream {stream:?}: expected {expected}, actual {}", fmt_actual(.actual))]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedVersion,
        /// `None` when the stream does not exist.
        actual: Option<u64>,
    },

    /// The same `(source, id)` was already recorded with different content, or an
    /// append mixes recorded events with new ones.
    #[error("event (source {event_source:?}, id {id:?}) is already recorded at position {position} {detail}")]
    DuplicateConflict {
        event_source: String,
        id: String,
        position: u64,
        /// How the append conflicts with it, as the end of the message.
        detail: String,
    },

    /// Stored bytes do not decode; the log may be damaged.
    #[error("corrupt record at {at}: {reason}")]
    Corrupt { at: String, reason: String },

    /// The stored format is newer or older than this build understands.
    #[error("stored format version {found} is not supported (this build reads version {supported})")]
    UnsupportedFormat { found: u32, supported: u32 },

    /// A previous fsync failed; the log refuses writes until restarted.
    #[error("the log stopped accepting writes after a storage failure: {0}")]
    Poisoned(String),

    /// The log is shutting down or closed.
    #[error("the event log is closed")]
    Closed,

    /// sled or the file system failed.
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),

    /// Another process has the log's directory open.
    #[error(
        "{path} is open in another process (another opsflow on the same data directory?): stop it, or give \
         this one a data directory of its own"
    )]
    Locked { path: String },
}

fn fmt_actual(actual: &Option<u64>) -> String {
    match actual {
        Some(v) => v.to_string(),
        None => "no stream".to_owned(),
    }
}

/// The class of a [`LogError`]: what a caller can do about it. Transports map
/// classes (not variants) to their status codes, so a new variant is classified
/// here once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed; retrying it unchanged fails again.
    InvalidArgument,
    /// The request exceeds a configured limit.
    LimitExceeded,
    /// The stream is not at the expected version.
    WrongExpectedVersion,
    /// The `(source, id)` is recorded with other content.
    DuplicateConflict,
    /// The log cannot take the request now (closing, or stopped after a storage failure).
    Unavailable,
    /// Stored data or storage is broken.
    Internal,
}

impl ErrorKind {
    /// A stable machine-readable name, e.g. `wrong_expected_version`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::LimitExceeded => "limit_exceeded",
            ErrorKind::WrongExpectedVersion => "wrong_expected_version",
            ErrorKind::DuplicateConflict => "duplicate_conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

impl LogError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LogError::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            LogError::LimitExceeded { .. } => ErrorKind::LimitExceeded,
            LogError::WrongExpectedVersion { .. } => ErrorKind::WrongExpectedVersion,
            LogError::DuplicateConflict { .. } => ErrorKind::DuplicateConflict,
            LogError::Closed | LogError::Poisoned(_) | LogError::Locked { .. } => ErrorKind::Unavailable,
            LogError::Corrupt { .. } | LogError::UnsupportedFormat { .. } | LogError::Storage(_) => ErrorKind::Internal,
        }
    }

    /// The error's figures as the members every API's error object carries next to
    /// its `code` and `message` (a JSON object): `field` (and `limit`, `actual` and
    /// the configuration key `setting` of the limit) for invalid input, `stream`, `expected`, `actual` for a version conflict,
    /// `source`, `id`, `position` for a conflicting duplicate; none for the others.
    pub fn detail_fields(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            LogError::InvalidArgument { field, .. } => json!({ "field": field }),
            LogError::LimitExceeded {
                field,
                setting,
                limit,
                actual,
                ..
            } => {
                json!({ "field": field, "limit": limit, "actual": actual, "setting": format!("log.{setting}") })
            }
            LogError::WrongExpectedVersion {
                stream,
                expected,
                actual,
            } => json!({ "stream": stream, "expected": expected.to_string(), "actual": actual }),
            LogError::DuplicateConflict {
                event_source,
                id,
                position,
                ..
            } => json!({ "source": event_source, "id": id, "position": position }),
            _ => json!({}),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        LogError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(at: impl Into<String>, reason: impl Into<String>) -> Self {
        LogError::Corrupt {
            at: at.into(),
            reason: reason.into(),
        }
    }
}
