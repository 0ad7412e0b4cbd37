//! CloudEvents 1.0 bindings for the opsflow log: the JSON event format
//! (structured mode and batches) and the HTTP binary mode in, recorded events as
//! JSON out. No network code: transports hand bytes and headers to these
//! functions and append what they return.
//!
//! | mode | media type | function |
//! |---|---|---|
//! | structured | `application/cloudevents+json` | [`parse_structured`] |
//! | batch | `application/cloudevents-batch+json` | [`parse_batch`] |
//! | binary | `ce-*` headers, data in the body | [`parse_binary`] |
//! | read representation | `application/json` | [`recorded_to_json`] |
//! | structured, outbound | `application/cloudevents+json` | [`recorded_to_cloudevent`] |
//!
//! ```
//! use opsflow_cloudevents::{parse_structured, Incoming};
//! use opsflow_log::ExpectedVersion;
//!
//! let body = br#"{
//!     "specversion": "1.0", "id": "e-1", "source": "/shop", "type": "order.placed",
//!     "time": "2024-05-01T10:00:00Z", "expectedversion": "no_stream", "tenant": "acme",
//!     "data": { "order_id": "PO-1001", "total": 120.50 }
//! }"#;
//! let Incoming { stream, expected, event } = parse_structured(body)?;
//! assert_eq!(stream, "order/PO-1001"); // no `subject`: taken from `order_id`
//! assert_eq!(expected, Some(ExpectedVersion::NoStream));
//! assert_eq!(event.content_type, "application/json");
//! assert_eq!(&event.data[..], br#"{"order_id":"PO-1001","total":120.50}"#);
//! assert_eq!(event.metadata["tenant"], "acme");
//! # Ok::<(), opsflow_cloudevents::CloudEventError>(())
//! ```
//!
//! # Attributes
//!
//! - **Required**: `specversion` (must be `"1.0"`), `id`, `source`, `type`: non-empty
//!   strings. A missing one (absent or `null`: JSON null means unset) is
//!   [`CloudEventError::MissingAttribute`]; a wrong JSON type (`"id": 5`) is
//!   [`CloudEventError::WrongType`] naming the expected type; another specversion is
//!   [`CloudEventError::UnsupportedSpecVersion`].
//! - `time`: RFC 3339, stored as nanoseconds since the epoch; absent means the
//!   engine clock. `subject`: the stream (below).
//! - **Extensions**: `correlationid` and `causationid` become the event's
//!   correlation and causation ids; `expectedversion` (`any`, `no_stream`,
//!   `stream_exists` or a version, as a string or an integer) becomes
//!   [`Incoming::expected`]. `dataschema` and every other extension (a string,
//!   number or boolean) go to `metadata` as strings, numbers as written.
//! - Names are CloudEvents attribute names (lower-case ASCII letters and digits);
//!   anything else, or the same attribute twice, is refused.
//!
//! # Data
//!
//! - `data` with a JSON content type (subtype `json` or a `+json` suffix, parameters
//!   ignored), or with no `datacontenttype` (which then becomes `application/json`),
//!   is stored as compact JSON: the text as sent without insignificant whitespace,
//!   so numbers keep their digits and objects their key order. `"data": null` is
//!   stored as `null`.
//! - `data` with another content type must be a JSON string; its text is stored.
//! - `data_base64` is decoded (standard alphabet, padded); with no
//!   `datacontenttype` it is `application/octet-stream`. `data` and `data_base64`
//!   together are [`CloudEventError::DataConflict`].
//! - Binary mode: the body, with the `Content-Type` header as content type
//!   (`application/octet-stream` when a non-empty body has none). Header values are
//!   percent-decoded per the HTTP binding (§3.1.3.2); `ce-datacontenttype` is refused.
//!
//! # The stream rule
//!
//! 1. `subject`, when present, is the stream.
//! 2. Otherwise, for JSON object data, the type's first dot-separated token `T`
//!    names the business object and the field `T_id` (a non-empty string or a
//!    number) gives the stream `T/<value>`: `order.placed` with `order_id: "PO-1"`
//!    goes to `order/PO-1`.
//! 3. Procurement events without an id of their own then join their parent's
//!    stream: `approval.*` by `requisition_id` (`requisition/<value>`);
//!    `purchase_order.*`, `goods.*` and `invoice.*` by `po_id`
//!    (`purchase_order/<value>`).
//! 4. Otherwise: [`CloudEventError::MissingSubject`], naming the fields looked for.
//!
//! [`stream_for`] applies the same rule to events that arrive in other encodings.
//!
//! # Errors
//!
//! [`CloudEventError`] names the attribute ([`CloudEventError::attribute`]) and, in
//! a batch, the index of the first invalid event, as in
//! ``event [2]: missing required attribute `id` ``. Malformed JSON carries serde's
//! line and column. No input panics.
//!
//! # Output
//!
//! [`recorded_to_json`] is the read representation served by HTTP reads and the
//! CLI; [`recorded_to_cloudevent`] renders a recorded event as a structured-mode
//! CloudEvent with `subject` = stream and the log's own attributes as extensions
//! (`position`, `streamversion`, `recordedat`). Feeding that back to
//! [`parse_structured`] gives the same stream, identity, time and ids, and the
//! same data (JSON data as an equivalent document: keys sorted, numbers as
//! `serde_json` prints them).

mod attributes;
mod binary;
mod error;
mod incoming;
mod json;
mod media;
mod output;
mod stream;

pub use binary::parse_binary;
pub use error::{CloudEventError, Result};
pub use incoming::Incoming;
pub use json::{parse_batch, parse_structured};
pub use output::{recorded_to_cloudevent, recorded_to_json};
pub use stream::stream_for;
