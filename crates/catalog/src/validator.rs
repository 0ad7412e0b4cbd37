//! The catalog as the event log's content check.

use opsflow_log::{EventValidator, ProposedEvent, Rejection};

/// Validates every appended event against the catalog (see [`crate::validate`]).
/// Put it in [`opsflow_log::LogOptions::validator`]; a refusal becomes
/// `INVALID_ARGUMENT` naming the event and field (`events[0].data.order_id`).
///
/// ```
/// use opsflow_log::{EventValidator, ProposedEvent};
/// let event = ProposedEvent::json("order.placed", r#"{"customer":"acme"}"#);
/// let refusal = opsflow_catalog::CatalogValidator.validate(&event).unwrap_err();
/// assert_eq!(refusal.field, "data.order_id");
/// assert_eq!(refusal.reason, "required field is missing for order.placed");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CatalogValidator;

impl EventValidator for CatalogValidator {
    fn validate(&self, event: &ProposedEvent) -> Result<(), Rejection> {
        crate::validate(&event.event_type, &event.content_type, &event.data)
            .map_err(|e| Rejection::new(e.field.clone(), e.reason()))
    }
}
