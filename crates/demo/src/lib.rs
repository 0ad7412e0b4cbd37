//! Realistic operational events for demos and benchmarks: a seeded discrete-event
//! simulation of orders, shipments, procurement, incidents, inventory and budgets
//! whose events all pass the catalog (`docs/catalog.md`), with the anomalies the
//! default KPIs and controls exist to catch (late shipments, missing approvals,
//! self-approvals, slow acknowledgements, stock-outs, budget overruns).
//!
//! ```
//! use opsflow_demo::Generator;
//! let start = jiff::Timestamp::from_second(1_795_219_200).unwrap();
//! let mut simulation = Generator::new(42, 0, start);
//! let history = simulation.backfill(start + jiff::SignedDuration::from_hours(24));
//! assert!(history.iter().any(|e| e.event_type == "order.placed"));
//! ```

mod flows;
mod generator;
mod world;

pub use generator::{BACKFILL_DAYS, DemoEvent, Generator, LIVE_SCALE};
