//! CloudEvents 1.0 bindings for the opsflow log: the JSON event format
//! (structured mode and batches), the protobuf event format (one event and
//! batches) and the HTTP binary mode in; recorded events as JSON or protobuf
//! out. No network code: transports hand bytes and headers to these functions
//! and append what they return.
//!
//! | mode | media type | function |
//! |---|---|---|
//! | any of the below, picked from content type and headers (NATS) | | [`parse_any`] |
//! | structured | `application/cloudevents+json` | [`parse_structured`] |
//! | batch | `application/cloudevents-batch+json` | [`parse_batch`] |
//! | structured, protobuf | `application/cloudevents+protobuf` | [`parse_protobuf`] |
//! | batch, protobuf | `application/cloudevents-batch+protobuf` | [`parse_protobuf_batch`] |
//! | binary (HTTP) | `ce-*` headers, data in the body, its type in `Content-Type` | [`parse_binary`] |
//! | binary (NATS) | `ce-*` headers (`ce-datacontenttype` too), data in the body | [`parse_nats_binary`] |
//! | read representation | `application/json` | [`recorded_to_json`] |
//! | structured, outbound | `application/cloudevents+json` | [`recorded_to_cloudevent`] |
//! | structured, outbound, protobuf | `application/cloudevents+protobuf` | [`recorded_to_protobuf`] |
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
//! # Choosing the mode
//!
//! [`parse_any`] picks the mode as the NATS binding says: the four CloudEvents
//! media types above and the NATS binding's `application/cloudevents` (any case,
//! parameters ignored) select their format; otherwise a `ce-specversion` header
//! (any case) means binary mode;
//! otherwise a message with no content type whose body starts with `{` is
//! structured JSON (the NATS binding's structured mode, which may arrive without
//! headers); anything else is [`CloudEventError::UnsupportedContentMode`], naming
//! the content type and the supported modes.
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
//! # The protobuf format
//!
//! The message is `io.cloudevents.v1.CloudEvent` (or `CloudEventBatch`) from
//! [`opsflow_proto::cloudevents`]; bytes that do not decode are
//! [`CloudEventError::Protobuf`]. The required attributes are the fields `id`,
//! `source`, `spec_version` and `type` (empty counts as missing; as map entries
//! they are refused), the others are entries of `attributes`. Each typed value
//! is taken in the form the JSON format carries it: `ce_string`, `ce_uri` and
//! `ce_uri_ref` as strings, `ce_integer` as a number, `ce_boolean` as a boolean,
//! `ce_bytes` as base64 text and `ce_timestamp` as RFC 3339 text (so `time` may
//! be a timestamp or a string); an entry with no value set is absent. Then every
//! rule above applies unchanged. The data:
//!
//! - `binary_data`: the bytes; content type `datacontenttype`, else
//!   `application/octet-stream`.
//! - `text_data`: the UTF-8 text as sent; content type `datacontenttype`, else
//!   `text/plain`. With a JSON content type the text must parse as JSON.
//! - `proto_data` (`google.protobuf.Any`): its `value` bytes with content type
//!   `application/protobuf` (a declared `datacontenttype` must be that media
//!   type); its `type_url` is recorded as the `dataschema` metadata unless a
//!   `dataschema` attribute is given. For a catalog type the message it names
//!   (the URL's last segment) must be the type's, e.g. `opsflow.v1.OrderShipped`
//!   for `order.shipped`.
//!
//! # The stream rule
//!
//! 1. `subject`, when present, is the stream.
//! 2. Otherwise, for JSON object data, the type's first dot-separated token `T`
//!    names the business object and the field `T_id` (a non-empty string or a
//!    number) gives the stream `T/<value>`: `order.placed` with `order_id: "PO-1"`
//!    goes to `order/PO-1`.
//! 3. Catalog events without an id field of their own then join the stream of the
//!    object they belong to: `approval.*` by `requisition_id`
//!    (`requisition/<value>`); `purchase_order.*`, `goods.*` and `invoice.*` by
//!    `po_number` (`po/<value>`), else `po_id` (`purchase_order/<value>`);
//!    `postmortem.*` by `incident_id`; inventory by `sku` and `location`; budgets
//!    by `cost_centre` (the table in `stream.rs`).
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
//! `serde_json` prints them). [`recorded_to_protobuf`] gives the same event in the
//! protobuf format (timestamps as `ce_timestamp`, JSON and text data as
//! `text_data`, other data as `binary_data`); [`parse_protobuf`] gives its data
//! back byte for byte.

mod attributes;
mod binary;
mod error;
#[cfg(test)]
mod fixtures;
mod incoming;
mod json;
mod media;
mod mode;
mod output;
mod protobuf;
mod stream;

pub use binary::{parse_binary, parse_nats_binary};
pub use error::{CloudEventError, Result};
pub use incoming::{EXPECTED_VERSION_HEADER, Incoming, appends, content_type, request_expected, single_header};
pub use json::{parse_batch, parse_structured};
pub use mode::{parse_any, parse_one};
pub use output::{recorded_to_cloudevent, recorded_to_json};
pub use protobuf::{parse_protobuf, parse_protobuf_batch, recorded_to_protobuf};
pub use stream::stream_for;
