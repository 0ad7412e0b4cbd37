//! The opsflow operational catalog: the well-known event types of
//! `docs/catalog.md`, their fields, and validation of event data against them.
//!
//! - [`CATALOG`] is the catalog as data: type -> fields, each required or
//!   optional, of a [`Kind`] (string, money, number, integer, timestamp, bool).
//! - [`validate`] checks an event's data by type and content type: JSON, or
//!   protobuf (`application/protobuf`, the messages of
//!   `proto/opsflow/v1/catalog.proto`) decoded and checked the same way. Custom
//!   types (not in the catalog) pass: any JSON with a JSON content type, any bytes
//!   otherwise. Errors name the field, the type, and expected vs actual.
//! - [`data_as_json`] reads data as JSON whichever the encoding (for the views).
//! - [`CatalogValidator`] plugs the catalog into the event log's append path.
//!
//! ```
//! use opsflow_catalog::{validate, validate_json};
//! let placed = br#"{"order_id":"PO-1","customer":"acme","total":"12","currency":"EUR",
//!                   "promised_by":"2026-11-21T10:00:00Z"}"#;
//! let err = validate_json("order.placed", placed).unwrap_err();
//! assert_eq!(err.to_string(), r#"data.total: expected a number >= 0, got "12" (order.placed)"#);
//! assert!(validate("scanner.frame", "application/octet-stream", &[0, 159]).is_ok());
//! assert!(opsflow_catalog::is_catalog_type("incident.opened"));
//! ```

mod check;
mod error;
mod media;
mod plain;
mod projected;
mod protobuf;
mod table;
mod validate;
mod validator;

pub use error::{CatalogError, Problem, Result};
pub use plain::{PlainMember, plain_object, string_stop as json_string_stop};
pub use projected::{DataMembers, is_json};
pub use table::{CATALOG, EventSpec, Field, Format, Kind, is_catalog_type, spec_of, types};
pub use validate::{data_as_json, data_members, validate, validate_json};
pub use validator::CatalogValidator;
