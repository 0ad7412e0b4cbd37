//! Content checks supplied by the embedder, run on the append path.
//!
//! The log knows names, sizes and versions, not what the data of an event means.
//! An [`EventValidator`] (the operational catalog, in the server) adds content
//! checks without teaching the log any schema: it runs on every event of every
//! append, after the limits and before anything is queued, so a refused event
//! writes nothing and a multi-event append with one bad event writes none.

use crate::{LogError, ProposedEvent, Result, StreamAppend};

/// Why a validator refused an event: the field (relative to the event, e.g.
/// `data.order_id`) and a reason for a person to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub field: String,
    pub reason: String,
}

impl Rejection {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Rejection {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Checks the content of proposed events. Set it in
/// [`LogOptions::validator`](crate::LogOptions::validator); a refusal becomes
/// [`LogError::InvalidArgument`] with the field prefixed by the event's index
/// (`events[2].data.order_id`).
///
/// ```
/// use opsflow_log::{EventValidator, ProposedEvent, Rejection};
///
/// /// Refuses events without data.
/// #[derive(Debug)]
/// struct DataRequired;
///
/// impl EventValidator for DataRequired {
///     fn validate(&self, event: &ProposedEvent) -> Result<(), Rejection> {
///         if event.data.is_empty() {
///             return Err(Rejection::new("data", "must not be empty"));
///         }
///         Ok(())
///     }
/// }
/// assert!(DataRequired.validate(&ProposedEvent::json("a.b", "{}")).is_ok());
/// ```
pub trait EventValidator: Send + Sync + std::fmt::Debug {
    /// Checks one event, already normalised (id, source and content type filled in).
    /// Must be cheap and must not block: it runs on the appender's task (large
    /// appends are checked on a blocking thread).
    fn validate(&self, event: &ProposedEvent) -> std::result::Result<(), Rejection>;
}

/// Runs `validator` over every event of `parts`, numbered across parts in request
/// order as the limits number them.
pub(crate) fn validate_parts(validator: &dyn EventValidator, parts: &[StreamAppend]) -> Result<()> {
    for (i, event) in parts.iter().flat_map(|p| &p.events).enumerate() {
        validator.validate(event).map_err(|r| LogError::InvalidArgument {
            field: format!("events[{i}].{}", r.field),
            reason: r.reason,
        })?;
    }
    Ok(())
}
