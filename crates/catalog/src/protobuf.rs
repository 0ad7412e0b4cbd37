//! Protobuf catalog data: the messages of `proto/opsflow/v1/catalog.proto`,
//! decoded with the descriptors the proto crate embeds and turned into the JSON
//! object a JSON producer would have sent (same field names, timestamps as RFC
//! 3339 strings), so that one check serves both encodings.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage, Value as ProtoValue};
use serde_json::{Map, Number, Value};

use crate::{CatalogError, EventSpec, Result};

const TIMESTAMP: &str = "google.protobuf.Timestamp";

/// The opsflow descriptors; `None` only if the embedded set does not decode,
/// which a unit test rules out.
static POOL: LazyLock<Option<DescriptorPool>> =
    LazyLock::new(|| DescriptorPool::decode(opsflow_proto::FILE_DESCRIPTOR_SET).ok());

/// The message descriptor of a catalog entry.
pub(crate) fn descriptor(spec: &EventSpec) -> Option<MessageDescriptor> {
    POOL.as_ref()?.get_message_by_name(&spec.full_message_name())
}

/// Decodes `data` as the message of `spec` into a JSON object of the fields that
/// are set (an empty string, like an absent one, is not set in proto3).
pub(crate) fn decode(spec: &EventSpec, data: &[u8]) -> Result<Map<String, Value>> {
    let Some(desc) = descriptor(spec) else {
        return Err(CatalogError::unreadable(
            spec.event_type,
            format!("no protobuf message {} is known", spec.full_message_name()),
        ));
    };
    let message = DynamicMessage::decode(desc, data).map_err(|e| {
        CatalogError::unreadable(
            spec.event_type,
            format!("not a valid {} message ({e})", spec.full_message_name()),
        )
    })?;
    let mut out = Map::new();
    for (field, value) in message.fields() {
        let name = field.name();
        let wrong = |actual: String| {
            let expected = spec.field(name).map_or("a valid value", |f| f.kind.expected());
            CatalogError::wrong_type(spec.event_type, name, expected, actual)
        };
        let json = match value {
            ProtoValue::String(s) => Value::String(s.clone()),
            ProtoValue::Bool(b) => Value::Bool(*b),
            ProtoValue::I64(i) => Value::from(*i),
            ProtoValue::I32(i) => Value::from(*i),
            ProtoValue::U64(u) => Value::from(*u),
            ProtoValue::U32(u) => Value::from(*u),
            ProtoValue::F64(x) => Value::Number(Number::from_f64(*x).ok_or_else(|| wrong(x.to_string()))?),
            ProtoValue::F32(x) => Value::Number(Number::from_f64(f64::from(*x)).ok_or_else(|| wrong(x.to_string()))?),
            ProtoValue::Message(m) if m.descriptor().full_name() == TIMESTAMP => {
                let ts: prost_types::Timestamp = m
                    .transcode_to()
                    .map_err(|e| wrong(format!("an undecodable timestamp ({e})")))?;
                let time = jiff::Timestamp::new(ts.seconds, ts.nanos)
                    .map_err(|_| wrong(format!("seconds {} nanos {}", ts.seconds, ts.nanos)))?;
                Value::String(time.to_string())
            }
            // Nothing in the catalog uses other kinds; fields added later that do
            // are carried by producers, not checked, and not translated.
            _ => continue,
        };
        out.insert(name.to_owned(), json);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CATALOG, Kind};
    use prost_reflect::Kind as ProtoKind;

    /// catalog.proto has one message per catalog type, with the catalog's field
    /// names and the agreed mapping of kinds; optional scalars track presence.
    #[test]
    fn the_proto_messages_match_the_table() {
        for spec in CATALOG {
            let desc = descriptor(spec).unwrap_or_else(|| panic!("no message for {}", spec.event_type));
            let names: Vec<String> = desc.fields().map(|f| f.name().to_owned()).collect();
            let ours: Vec<&str> = spec.fields.iter().map(|f| f.name).collect();
            assert_eq!(names, ours, "{}", spec.event_type);
            for field in spec.fields {
                let proto = desc.get_field_by_name(field.name).expect("field");
                let kind_ok = match (field.kind, proto.kind()) {
                    (Kind::String, ProtoKind::String) => true,
                    (Kind::Money | Kind::Number, ProtoKind::Double) => proto.supports_presence(),
                    (Kind::Integer, ProtoKind::Int64) => proto.supports_presence(),
                    (Kind::Bool, ProtoKind::Bool) => proto.supports_presence(),
                    (Kind::Timestamp, ProtoKind::Message(m)) => m.full_name() == TIMESTAMP,
                    _ => false,
                };
                assert!(
                    kind_ok,
                    "{}.{}: {:?} as {:?}",
                    spec.event_type,
                    field.name,
                    field.kind,
                    proto.kind()
                );
            }
        }
    }
}
