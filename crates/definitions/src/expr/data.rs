//! An event's `data` as expressions read it: the whole JSON value, or only the
//! top-level fields that definitions read, held as a short sorted list. The list is
//! what views build for every event they apply, so it costs one allocation, its
//! names are shared with the definitions (no copy per event), and finding a field
//! compares a few names instead of walking a tree. Everything else (CEL, encoding,
//! `size(event.data)`) sees a JSON object with the same members, built on first use.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A top-level field name, shared with the definitions that read it.
pub type Name = Arc<str>;

#[derive(Clone)]
pub struct Data(Repr);

#[derive(Clone)]
enum Repr {
    Json(Value),
    /// An object's members, sorted by name, each name once; `json` is the same
    /// object, built when something needs it whole.
    Fields {
        fields: Vec<(Name, Value)>,
        json: OnceLock<Value>,
    },
}

impl Data {
    /// The object with these members. A name given twice keeps its last value, as
    /// a JSON object read by serde_json does.
    pub fn from_fields(mut fields: Vec<(Name, Value)>) -> Data {
        if !fields.is_sorted_by(|a, b| a.0 < b.0) {
            // Reversed, the last given of equal names comes first; the sort is
            // stable and `dedup_by` keeps the first.
            fields.reverse();
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            fields.dedup_by(|later, kept| later.0 == kept.0);
        }
        Data(Repr::Fields {
            fields,
            json: OnceLock::new(),
        })
    }

    /// `value`, held as fields when it is an object (as views hold what they
    /// decode), whole otherwise.
    pub fn fields_of(value: Value) -> Data {
        match value {
            Value::Object(map) => Data::from_fields(map.into_iter().map(|(k, v)| (Name::from(k), v)).collect()),
            other => Data::from(other),
        }
    }

    /// A member of the data when it is an object; `Err` with the data when it is
    /// not one.
    pub fn get(&self, key: &str) -> Result<Option<&Value>, &Value> {
        match &self.0 {
            Repr::Json(Value::Object(map)) => Ok(map.get(key)),
            Repr::Json(other) => Err(other),
            Repr::Fields { fields, .. } => Ok(fields.iter().find(|(name, _)| **name == *key).map(|(_, v)| v)),
        }
    }

    /// The data as one JSON value when it is held whole (`None`: held as fields).
    pub fn whole(&self) -> Option<&Value> {
        match &self.0 {
            Repr::Json(value) => Some(value),
            Repr::Fields { .. } => None,
        }
    }

    /// The data as one JSON value.
    pub fn as_json(&self) -> &Value {
        match &self.0 {
            Repr::Json(value) => value,
            Repr::Fields { fields, json } => json.get_or_init(|| object(fields)),
        }
    }

    /// The members whose names `keep` accepts (data that is not an object whole).
    pub fn project(&self, keep: impl Fn(&str) -> bool) -> Data {
        match &self.0 {
            Repr::Json(Value::Object(map)) => Data::from(Value::Object(
                map.iter()
                    .filter(|(k, _)| keep(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )),
            Repr::Json(_) => self.clone(),
            Repr::Fields { fields, .. } => Data(Repr::Fields {
                fields: fields.iter().filter(|(k, _)| keep(k)).cloned().collect(),
                json: OnceLock::new(),
            }),
        }
    }

    /// The members in name order, when the data is an object (`None`: it is not).
    pub fn members(&self) -> Option<Members<'_>> {
        match &self.0 {
            Repr::Json(Value::Object(map)) => Some(Members::Json(map.iter())),
            Repr::Json(_) => None,
            Repr::Fields { fields, .. } => Some(Members::Fields(fields.iter())),
        }
    }
}

fn object(fields: &[(Name, Value)]) -> Value {
    Value::Object(fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

/// [`Data::members`].
#[derive(Clone)]
pub enum Members<'a> {
    Json(serde_json::map::Iter<'a>),
    Fields(std::slice::Iter<'a, (Name, Value)>),
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, &'a Value);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Members::Json(it) => it.next().map(|(k, v)| (k.as_str(), v)),
            Members::Fields(it) => it.next().map(|(k, v)| (&**k, v)),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Members::Json(it) => it.size_hint(),
            Members::Fields(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for Members<'_> {}

impl Default for Data {
    fn default() -> Self {
        Data(Repr::Json(Value::Null))
    }
}

impl From<Value> for Data {
    fn from(value: Value) -> Self {
        Data(Repr::Json(value))
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        match (self.members(), other.members()) {
            // Two objects: their members in name order, neither made whole.
            (Some(a), Some(b)) => a.eq(b),
            (None, None) => self.as_json() == other.as_json(),
            _ => false,
        }
    }
}

impl PartialEq<Value> for Data {
    fn eq(&self, other: &Value) -> bool {
        self.as_json() == other
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_json().fmt(f)
    }
}

impl<I: serde_json::value::Index> std::ops::Index<I> for Data {
    type Output = Value;

    fn index(&self, index: I) -> &Value {
        &self.as_json()[index]
    }
}

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.members() {
            Some(members) => s.collect_map(members),
            None => self.as_json().serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Data::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(members: &[(&str, Value)]) -> Data {
        Data::from_fields(members.iter().map(|(k, v)| (Name::from(*k), v.clone())).collect())
    }

    #[test]
    fn fields_read_as_the_object_with_the_same_members() {
        let data = fields(&[("b", json!(2)), ("a", json!("x")), ("b", json!(3))]);
        let whole = Data::from(json!({"a": "x", "b": 3}));
        assert_eq!(data, whole);
        assert_eq!(data.as_json(), &json!({"a": "x", "b": 3}));
        assert_eq!(data.get("b"), Ok(Some(&json!(3))));
        assert_eq!(data.get("c"), Ok(None));
        assert_eq!(whole.get("b"), Ok(Some(&json!(3))));
        let names: Vec<&str> = data.members().into_iter().flatten().map(|(k, _)| k).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(serde_json::to_string(&data).ok(), serde_json::to_string(&whole).ok());
    }

    #[test]
    fn data_that_is_not_an_object_has_no_members() {
        let data = Data::from(json!([1]));
        assert_eq!(data.get("a"), Err(&json!([1])));
        assert!(data.members().is_none());
        assert_eq!(serde_json::to_string(&data).ok().as_deref(), Some("[1]"));
    }

    #[test]
    fn projecting_keeps_the_members() {
        let data = fields(&[("a", json!(1)), ("b", json!(2))]);
        assert_eq!(data.project(|k| k == "b"), Data::from(json!({"b": 2})));
        assert_eq!(
            Data::from(json!({"a": 1, "b": 2})).project(|k| k == "a"),
            json!({"a": 1})
        );
    }
}
