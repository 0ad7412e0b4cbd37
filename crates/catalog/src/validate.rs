//! The entry points: validate data by type and content type, read data as JSON.

use serde_json::{Map, Value};

use crate::check::{check_object, json_kind};
use crate::media::{Media, media};
use crate::projected::DataMembers;
use crate::{CatalogError, EventSpec, Result, protobuf, spec_of};

/// Validates JSON `data` for `event_type`. A catalog type needs a JSON object with
/// its required fields, each field of the documented kind; a custom type needs
/// well-formed JSON (or no data at all).
///
/// ```
/// let err = opsflow_catalog::validate_json("order.placed", br#"{"customer":"acme"}"#).unwrap_err();
/// assert_eq!(err.field, "data.order_id");
/// assert!(opsflow_catalog::validate_json("my.custom", br#"[1, 2]"#).is_ok());
/// ```
pub fn validate_json(event_type: &str, data: &[u8]) -> Result<()> {
    // JSON text is UTF-8 (RFC 8259), and serde_json does not check the strings it
    // skips: checked here first, for all of it (so the text is parsed as a `str`,
    // without checking its strings again).
    let text = std::str::from_utf8(data).map_err(|e| {
        CatalogError::unreadable(
            event_type,
            format!("not valid JSON: invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    match spec_of(event_type) {
        Some(spec) => check_object(spec, &json_object(spec, data)?),
        None if data.is_empty() => Ok(()),
        None if crate::plain::plainly_utf8_json(text) => Ok(()),
        None => serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map(|_| ())
            .map_err(|e| CatalogError::unreadable(event_type, format!("not valid JSON ({e})"))),
    }
}

/// [`data_as_json`] keeping only the top-level fields `keep` names, without making
/// them a map: each kept one named by what `keep` gives for its name, in the order
/// written (a name given twice is there twice; the last counts). JSON fields that
/// are not kept are skipped without being built, which is most of the cost of
/// reading an event.
pub fn data_members<K>(
    event_type: &str,
    content_type: &str,
    data: &[u8],
    keep: &dyn Fn(&str) -> Option<K>,
) -> Option<DataMembers<K>> {
    if data.is_empty() {
        return None;
    }
    match media(content_type) {
        Media::Json => crate::projected::members(data, keep),
        _ => match data_as_json(event_type, content_type, data)? {
            Value::Object(map) => Some(DataMembers::Object(
                map.into_iter().filter_map(|(k, v)| Some((keep(&k)?, v))).collect(),
            )),
            other => Some(DataMembers::Other(other)),
        },
    }
}

/// Validates `data` of `content_type` for `event_type`: JSON as
/// [`validate_json`], protobuf catalog data (`application/protobuf`, the messages
/// of `catalog.proto`) decoded and checked the same way. Catalog data in any other
/// encoding is refused; custom types with a non-JSON content type take any bytes.
pub fn validate(event_type: &str, content_type: &str, data: &[u8]) -> Result<()> {
    match (spec_of(event_type), media(content_type)) {
        (_, Media::Json) => validate_json(event_type, data),
        (Some(spec), Media::Protobuf) => check_object(spec, &protobuf_object(spec, data)?),
        (Some(_), Media::Other) => Err(CatalogError::content_type(event_type, content_type)),
        (None, _) => Ok(()),
    }
}

/// The data as JSON, for readers such as the views: JSON data parsed (one parse,
/// no checks), protobuf catalog data decoded to the same field names (timestamps
/// as RFC 3339 strings). `None` for no data, data that does not decode, and
/// non-JSON data of custom types.
pub fn data_as_json(event_type: &str, content_type: &str, data: &[u8]) -> Option<Value> {
    if data.is_empty() {
        return None;
    }
    match media(content_type) {
        Media::Json => serde_json::from_slice(data).ok(),
        Media::Protobuf => {
            let spec = spec_of(event_type)?;
            protobuf::decode(spec, data).ok().map(Value::Object)
        }
        Media::Other => None,
    }
}

/// The data's fields that `spec` checks. The others are read and dropped without
/// being built (checked as a full parse checks them), so that validation costs
/// little more than reading the bytes.
fn json_object(spec: &EventSpec, data: &[u8]) -> Result<Map<String, Value>> {
    if data.is_empty() {
        return Err(no_data(spec));
    }
    let checked = |name: &str| spec.fields.iter().any(|field| field.name == name);
    match crate::projected::parse(data, &checked) {
        Some(Value::Object(map)) => Ok(map),
        Some(other) => Err(CatalogError::unreadable(
            spec.event_type,
            format!("expected a JSON object, got {}", json_kind(&other)),
        )),
        // Parsed again, whole, only to say why it is not JSON.
        None => Err(CatalogError::unreadable(
            spec.event_type,
            match serde_json::from_slice::<Value>(data) {
                Err(e) => format!("not valid JSON ({e})"),
                Ok(_) => "not valid JSON".to_owned(),
            },
        )),
    }
}

fn protobuf_object(spec: &EventSpec, data: &[u8]) -> Result<Map<String, Value>> {
    // An empty message is valid protobuf (every field absent): let the field
    // check name the first missing field.
    protobuf::decode(spec, data)
}

fn no_data(spec: &EventSpec) -> CatalogError {
    CatalogError::unreadable(spec.event_type, "no data; a JSON object is required")
}
