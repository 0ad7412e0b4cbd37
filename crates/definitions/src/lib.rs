//! opsflow definitions: what the organisation measures and checks, as YAML.
//!
//! See `docs/definitions.md` for the file format. This crate parses and validates a
//! definitions directory ([`Definitions`]), compiles CEL expressions ([`Expr`]) and
//! evaluates them over an event ([`EventData`], [`Scope`]).

mod expr;
mod model;

pub use expr::{EvalError, EventData, Expr, Scope, Value};
pub use model::{
    Buckets, Comparison, ControlDef, ControlKind, Definitions, KpiDef, KpiKind, Match, Op, Origin, Target, Window,
};
