//! Reading only some top-level fields of JSON data: the others are checked as a
//! full parse checks them (strings unescaped, numbers read) and skipped without
//! building them, so that data reads the same whatever is kept.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// `data` parsed as JSON, keeping only the top-level fields `keep` accepts. Data
/// that is not an object is parsed whole. Invalid JSON is `None`, exactly when
/// `serde_json::from_slice::<Value>` fails; duplicate keys keep the last value,
/// as it does.
pub(crate) fn parse(data: &[u8], keep: &dyn Fn(&str) -> bool) -> Option<Value> {
    let first = data.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return serde_json::from_slice(data).ok();
    }
    let mut de = serde_json::Deserializer::from_slice(data);
    let value = de.deserialize_map(Object { keep }).ok()?;
    de.end().ok()?;
    Some(value)
}

/// Whether `data` is JSON that `serde_json::from_slice::<Value>` accepts (strings
/// unescaped, numbers in range, nesting within its limit), building nothing.
pub fn is_json(data: &[u8]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(data);
    Skip.deserialize(&mut de).is_ok() && de.end().is_ok()
}

struct Object<'k> {
    keep: &'k dyn Fn(&str) -> bool,
}

impl<'de> Visitor<'de> for Object<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key_seed(Key { keep: self.keep })? {
            match key {
                Some(key) => {
                    let value: Value = access.next_value()?;
                    map.insert(key, value);
                }
                None => access.next_value_seed(Skip)?,
            }
        }
        Ok(Value::Object(map))
    }
}

/// A key: `Some` (allocated) when kept, `None` when its value is to be skipped.
struct Key<'k> {
    keep: &'k dyn Fn(&str) -> bool,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<String>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Option<String>, E> {
        Ok((self.keep)(key).then(|| key.to_owned()))
    }
}

/// A value read and dropped. Unlike `IgnoredAny`, strings are unescaped (a lone
/// surrogate fails, as it does when the value is built).
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep_ab(k: &str) -> bool {
        k == "a" || k == "b"
    }

    #[test]
    fn keeps_only_the_named_fields() {
        let data = br#" {"a": 1, "x": {"deep": [1, 2, {"y": "z"}]}, "b": "two\u00e9", "c": null} "#;
        assert_eq!(
            parse(data, &keep_ab),
            Some(serde_json::json!({"a": 1, "b": "two\u{e9}"}))
        );
        assert_eq!(
            parse(br#"{"a\u0062": 1, "b": 2}"#, &keep_ab),
            Some(serde_json::json!({"b": 2}))
        );
        assert_eq!(
            parse(br#"{"a": 1, "a": 2}"#, &keep_ab),
            Some(serde_json::json!({"a": 2}))
        );
        assert_eq!(parse(b"[1, 2]", &keep_ab), Some(serde_json::json!([1, 2])));
        assert_eq!(parse(b"\"s\"", &keep_ab), Some(serde_json::json!("s")));
    }

    #[test]
    fn invalid_json_is_none_as_for_a_full_parse() {
        for bad in [
            &br#"{"a": 1, "x": [1, }"#[..],
            br#"{"a": 1} trailing"#,
            br#"{"x": tru}"#,
            br#"{"a": 1"#,
            b"",
            b"   ",
            br#"{"x": "\ud800"}"#,
            br#"{"x": {"\udc00": 1}}"#,
            br#"{"x": [1e999]}"#,
        ] {
            assert!(serde_json::from_slice::<Value>(bad).is_err(), "{bad:?}");
            assert_eq!(parse(bad, &keep_ab), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
