//! Errors of the NATS transport.

/// Result alias for this crate.
pub type Result<T, E = NatsError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("config key `{key}`: {message}")]
    Config { key: String, message: String },
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    #[error("JetStream stream {stream:?} exists but does not fit: {reason}")]
    IncompatibleStream { stream: String, reason: String },
    #[error("JetStream stream {stream:?} cannot be created: {reason}")]
    StreamNotCreated { stream: String, reason: String },
    #[error("JetStream: {0}")]
    JetStream(String),
}
