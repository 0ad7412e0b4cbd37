//! Serde helpers that make view state encode compactly and deterministically with
//! postcard: JSON values and events in a non-self-describing form, hash maps as
//! sequences sorted by key.

use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;

use opsflow_definitions::{Data, Members};
use serde::de::Deserializer;
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

mod events;
pub use events::Kept;
pub(crate) use events::{Continuation, EventTable, StoredEvents};

/// `serde_json::Value` needs a self-describing format to deserialize; this wrapper
/// does not. It encodes a value as the enum
/// `{Null, Bool(bool), Int(i64), Uint(u64), Float(f64), String, Array([..]), Object([(key, ..)])}`
/// would (numbers exactly: integers as integers, floats by their bits), and decodes
/// straight into a `serde_json::Value`, without an intermediate tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredJson(pub serde_json::Value);

const JSON: &str = "StoredValue";
const JSON_VARIANTS: &[&str] = &["Null", "Bool", "Int", "Uint", "Float", "String", "Array", "Object"];

/// A borrowed value, serialized as [`StoredJson`].
struct JsonRef<'a>(&'a serde_json::Value);

impl Serialize for JsonRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde_json::Value;
        match self.0 {
            Value::Null => s.serialize_unit_variant(JSON, 0, "Null"),
            Value::Bool(b) => s.serialize_newtype_variant(JSON, 1, "Bool", b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    s.serialize_newtype_variant(JSON, 3, "Uint", &u)
                } else if let Some(i) = n.as_i64() {
                    s.serialize_newtype_variant(JSON, 2, "Int", &i)
                } else {
                    s.serialize_newtype_variant(JSON, 4, "Float", &n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(text) => s.serialize_newtype_variant(JSON, 5, "String", text),
            Value::Array(items) => s.serialize_newtype_variant(JSON, 6, "Array", &Items(items)),
            Value::Object(map) => s.serialize_newtype_variant(JSON, 7, "Object", &Entries(Members::Json(map.iter()))),
        }
    }
}

struct Items<'a>(&'a [serde_json::Value]);

impl Serialize for Items<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(JsonRef))
    }
}

/// An object's members, in name order, as `Object`'s entries.
struct Entries<'a>(Members<'a>);

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Of exact size: postcard writes the length first.
        s.collect_seq(self.0.clone().map(|(k, v)| (k, JsonRef(v))))
    }
}

/// An event's data, serialized as [`StoredJson`] serializes the same JSON.
struct DataRef<'a>(&'a Data);

impl Serialize for DataRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.members() {
            Some(members) => s.serialize_newtype_variant(JSON, 7, "Object", &Entries(members)),
            None => JsonRef(self.0.as_json()).serialize(s),
        }
    }
}

impl Serialize for StoredJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        JsonRef(&self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for StoredJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_enum(JSON, JSON_VARIANTS, JsonVisitor).map(StoredJson)
    }
}

struct JsonVisitor;

impl<'de> serde::de::Visitor<'de> for JsonVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a stored JSON value")
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<serde_json::Value, A::Error> {
        use serde::de::VariantAccess;
        use serde_json::Value;
        let (tag, variant): (u32, A::Variant) = data.variant()?;
        Ok(match tag {
            0 => {
                variant.unit_variant()?;
                Value::Null
            }
            1 => Value::Bool(variant.newtype_variant()?),
            2 => Value::from(variant.newtype_variant::<i64>()?),
            3 => Value::from(variant.newtype_variant::<u64>()?),
            4 => serde_json::Number::from_f64(variant.newtype_variant()?).map_or(Value::Null, Value::Number),
            5 => Value::String(variant.newtype_variant()?),
            6 => Value::Array(variant.newtype_variant_seed(ITEMS)?),
            7 => Value::Object(variant.newtype_variant_seed(ENTRIES)?),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "stored JSON value of unknown kind {other}"
                )));
            }
        })
    }
}

/// Reads a sequence of `T` into a collection `C`, each element mapped as it is read
/// (no intermediate `Vec<T>`).
struct Collect<T, U, C> {
    map: fn(T) -> U,
    what: &'static str,
    into: PhantomData<fn() -> C>,
}

impl<T, U, C> Collect<T, U, C> {
    const fn new(what: &'static str, map: fn(T) -> U) -> Self {
        Collect {
            map,
            what,
            into: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>, U, C: Default + Extend<U>> serde::de::DeserializeSeed<'de> for Collect<T, U, C> {
    type Value = C;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<C, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>, U, C: Default + Extend<U>> serde::de::Visitor<'de> for Collect<T, U, C> {
    type Value = C;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.what)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<C, A::Error> {
        let mut out = C::default();
        while let Some(item) = seq.next_element::<T>()? {
            out.extend(std::iter::once((self.map)(item)));
        }
        Ok(out)
    }
}

/// A stored array, straight into its values.
const ITEMS: Collect<StoredJson, serde_json::Value, Vec<serde_json::Value>> =
    Collect::new("stored JSON items", |item| item.0);

/// A stored object's entries, straight into a map.
const ENTRIES: Collect<(String, StoredJson), (String, serde_json::Value), serde_json::Map<String, serde_json::Value>> =
    Collect::new("stored JSON entries", |(key, value)| (key, value.0));

/// `#[serde(with = "byte_string")]` for a `Vec<u8>`: read and written whole. Postcard
/// writes a `Vec<u8>` and a byte string alike (its length, then its bytes), so the
/// stored bytes are the same, but a sequence is read a byte at a time.
pub mod byte_string {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_byte_buf(Bytes)
    }
}

/// `#[serde(with = "sorted_map")]` for a `HashMap`: encoded as pairs sorted by key, so
/// the bytes do not depend on the hasher.
pub mod sorted_map {
    use super::*;

    pub fn serialize<K, V, H, S>(map: &HashMap<K, V, H>, serializer: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize + Ord,
        V: Serialize,
        S: Serializer,
    {
        let mut entries: Vec<(&K, &V)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        serializer.collect_seq(entries)
    }

    pub fn deserialize<'de, K, V, H, D>(deserializer: D) -> Result<HashMap<K, V, H>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        H: std::hash::BuildHasher + Default,
        D: Deserializer<'de>,
    {
        let entries: Vec<(K, V)> = Vec::deserialize(deserializer)?;
        Ok(entries.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape [`StoredJson`] is written in, derived.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum StoredValue {
        Null,
        Bool(bool),
        Int(i64),
        Uint(u64),
        Float(f64),
        String(String),
        Array(Vec<StoredValue>),
        Object(Vec<(String, StoredValue)>),
    }

    #[test]
    fn byte_strings_are_byte_vectors_on_the_wire() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Plain(String, Vec<u8>, u8);
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Whole(String, #[serde(with = "byte_string")] Vec<u8>, u8);
        for bytes in [Vec::new(), vec![0, 255, 7], (0..=255).cycle().take(300).collect()] {
            let plain = postcard::to_stdvec(&Plain("a".into(), bytes.clone(), 9)).unwrap();
            let whole = postcard::to_stdvec(&Whole("a".into(), bytes.clone(), 9)).unwrap();
            assert_eq!(plain, whole);
            assert_eq!(
                postcard::from_bytes::<Whole>(&plain).unwrap(),
                Whole("a".into(), bytes, 9)
            );
        }
        // Cut short: an error.
        let plain = postcard::to_stdvec(&Plain("a".into(), vec![1; 10], 9)).unwrap();
        assert!(postcard::from_bytes::<Whole>(&plain[..6]).is_err());
    }

    #[test]
    fn stored_json_is_the_stored_value_enum_on_the_wire() {
        let value = serde_json::json!({"a": null, "b": true, "c": -4, "d": 18446744073709551615u64,
            "e": 0.1, "f": "text", "g": [1, [2.5, {"h": "i"}], null], "j": {}});
        let bytes = postcard::to_stdvec(&StoredJson(value.clone())).unwrap();
        let derived = StoredValue::Object(vec![
            ("a".into(), StoredValue::Null),
            ("b".into(), StoredValue::Bool(true)),
            ("c".into(), StoredValue::Int(-4)),
            ("d".into(), StoredValue::Uint(u64::MAX)),
            ("e".into(), StoredValue::Float(0.1)),
            ("f".into(), StoredValue::String("text".into())),
            (
                "g".into(),
                StoredValue::Array(vec![
                    StoredValue::Uint(1),
                    StoredValue::Array(vec![
                        StoredValue::Float(2.5),
                        StoredValue::Object(vec![("h".into(), StoredValue::String("i".into()))]),
                    ]),
                    StoredValue::Null,
                ]),
            ),
            ("j".into(), StoredValue::Object(vec![])),
        ]);
        assert_eq!(bytes, postcard::to_stdvec(&derived).unwrap());
        let back: StoredJson = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.0, value);
        assert!(postcard::from_bytes::<StoredJson>(&[9]).is_err(), "unknown kind");
    }
}
