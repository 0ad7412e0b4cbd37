//! opsflow views: KPI and compliance projections of the event log.
//!
//! This crate is the pure core: a [`ViewSet`] holds every view of a
//! [`Definitions`](opsflow_definitions::Definitions) and is fed the log's events in
//! position order with [`ViewSet::apply`]. It reads no clock and does no I/O: time is
//! the **view clock**, the latest event time applied, so replaying the same events
//! always gives the same reports and the same [`ViewSet::encode`] bytes, however the
//! replay was split by restarts. The runtime around it stores checkpoints, answers
//! as-of queries and rebuilds views whose definitions changed
//! ([`ViewSet::stale_views`], [`ViewSet::only`], [`ViewSet::take_view`],
//! [`ViewSet::put_view`]).
//!
//! ```
//! use opsflow_definitions::{Definitions, EventData};
//! use opsflow_views::{Status, ViewSet};
//!
//! let yaml = r#"
//! kpis:
//!   - name: mtta
//!     kind: duration
//!     key: event.data.incident_id
//!     start: { type: incident.opened }
//!     end: { type: incident.acknowledged }
//!     target: { stat: p90, green: "<= 15m" }
//! "#;
//! let definitions = Definitions::from_files(&[("incidents.yaml".into(), yaml.into())]).unwrap();
//! let minute = 60_000_000_000i64;
//! let event = |position: u64, event_type: &str, time: i64| EventData {
//!     position,
//!     event_type: event_type.into(),
//!     time,
//!     data: serde_json::json!({"incident_id": "INC-1"}).into(),
//!     ..EventData::default()
//! };
//! let log = [event(1, "incident.opened", 0), event(2, "deploy.done", 3 * minute), event(3, "incident.acknowledged", 5 * minute)];
//!
//! let mut views = ViewSet::new(&definitions);
//! for e in &log {
//!     if views.interested(&e.event_type) {
//!         views.apply(e);
//!     } else {
//!         // The runtime need not decode it, but passes its time on.
//!         views.skip_event(e.position, e.time);
//!     }
//! }
//! let mtta = &views.kpis()[0];
//! let last_hour = mtta.values.iter().find(|v| v.window == "1h" && v.group.is_empty()).unwrap();
//! assert_eq!(last_hour.headline, Some(300.0));
//! assert_eq!(last_hour.status, Status::Green);
//!
//! // A checkpoint, and a restart from it.
//! let restored = ViewSet::decode(&definitions, views.encode()).unwrap();
//! assert_eq!(restored.kpis(), views.kpis());
//! ```
//!
//! Memory stays bounded: percentiles come from a DDSketch (1% relative accuracy),
//! windows are fixed epoch-aligned buckets dropped as the clock passes them, calendar
//! days keep the last 31, a key's state goes when its lifecycle closes, and controls
//! keep their newest 1,000 violations (the count stays exact).

mod codec;
mod controls;
mod current;
mod error;
mod keyed;
mod kpis;
mod report;
mod runtime;
mod set;
mod sketch;
mod store;
mod time;
mod view;
mod windowed;

pub use controls::VIOLATIONS_KEPT;
pub use error::{Result, ViewError};
pub use report::{ControlReport, KpiReport, KpiValue, Obligation, Status, Violation};
pub use runtime::{
    Answer, AsOf, RebuildReport, Views, ViewsError, ViewsOptions, apply_event, apply_scanned, into_event_data,
};
pub use set::{FORMAT, StoredSet, ViewSet, WantedTypes};
pub use sketch::Sketch;
pub use time::day_label;
pub use view::View;
pub use windowed::DAYS_KEPT;

#[cfg(test)]
mod tests;
