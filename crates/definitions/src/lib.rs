//! opsflow definitions: what the organisation measures and checks, as YAML.
//!
//! See `docs/definitions.md` for the file format. This crate parses and validates a
//! definitions directory ([`Definitions`]), compiles CEL expressions ([`Expr`]) and
//! evaluates them over an event ([`EventData`], [`Scope`]), and notices when the
//! directory changes ([`DefinitionsWatcher`]).
//!
//! ```
//! use opsflow_definitions::{Definitions, KpiKind};
//!
//! let files = vec![(
//!     "orders.yaml".to_string(),
//!     r#"
//! kpis:
//!   - name: order_cycle_time
//!     description: Order placed to delivered
//!     kind: duration
//!     key: event.data.order_id
//!     start: { type: order.placed }
//!     end: { type: order.delivered }
//!     target: { stat: p90, green: "<= 72h", amber: "<= 96h" }
//! "#
//!     .to_string(),
//! )];
//! let definitions = Definitions::from_files(&files).unwrap();
//! let kpi = &definitions.kpis[0];
//! assert!(matches!(kpi.kind, KpiKind::Duration { .. }));
//! assert_eq!(kpi.target.as_ref().unwrap().green.value, 72.0 * 3600.0);
//!
//! // Problems are located: `file:line:column: message`.
//! let broken = vec![("orders.yaml".to_string(), "kpis:\n  - name: x\n    kind: gauge\n".to_string())];
//! let errors = Definitions::from_files(&broken).unwrap_err();
//! assert!(errors.to_string().starts_with("orders.yaml:3:11: unknown kind `gauge`"));
//! ```

mod builtin;
mod dir;
mod error;
mod expr;
mod model;
mod parse;
mod version;
mod watch;

pub use builtin::{BUILTIN_FILES, builtin};
pub use error::{CheckError, CheckErrors};
pub use expr::{
    CompileError, Data, EvalError, EventData, EventReads, EventSource, Expr, FieldSet, Fields, LazyEvent, Members,
    Name, Reads, Scope, Seen, SharedEvent, Value,
};
pub use model::{
    Buckets, Comparison, ControlDef, ControlKind, Definitions, KpiDef, KpiKind, Match, Op, Origin, Target, Window,
};
pub use version::version_of;
pub use watch::DefinitionsWatcher;
