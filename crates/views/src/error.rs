//! Errors of the views layer.

/// Why stored view state could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The state was written by another format version: rebuild from the log.
    #[error("view state format {found} (written by another opsflow version), this one reads {expected}")]
    Format { found: u8, expected: u8 },
    /// The bytes do not decode: rebuild from the log.
    #[error("corrupt view state: {0}")]
    Corrupt(String),
}

pub type Result<T, E = ViewError> = std::result::Result<T, E>;
