//! Paths through the event (`event.data.a.b`, `seen['t'].data.x`, `start.time`):
//! walked by reference, one key after another, making a value only at the end.
//! Most of what definitions evaluate is such a path, so this is the hot loop.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::value::{Failure, Kind, Map, Outcome, V, event_field};
use crate::expr::{Data, EventData, Scope, Seen};

/// Where a path starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Root {
    Event,
    Seen,
    Start,
}

/// A place in the scope a path has reached: always a map, or JSON.
#[derive(Clone, Copy)]
enum Place<'a> {
    Json(&'a serde_json::Value),
    Data(&'a Data),
    Event(&'a EventData),
    Metadata(&'a BTreeMap<String, String>),
    Seen(Option<&'a Seen>),
}

impl<'a> Place<'a> {
    fn into_value(self) -> V<'a> {
        match self {
            Place::Json(v) => V::from_json(v),
            Place::Data(d) => V::from_data(d),
            Place::Event(e) => V::Map(Map::Event(e)),
            Place::Metadata(m) => V::Map(Map::Metadata(m)),
            Place::Seen(s) => V::Map(Map::Seen(s)),
        }
    }
}

/// Follows `keys` from `root`: each a map key (written `.key` or `['key']`, the
/// same to CEL for a map). A missing key fails as the interpreter's `NoSuchKey`;
/// a key of something that is not a map fails for want of an overload.
pub(super) fn walk<'a>(root: Root, keys: &'a [Box<str>], scope: &Scope<'a>) -> Outcome<'a> {
    let mut place = match root {
        Root::Event => Place::Event(scope.event),
        Root::Seen => Place::Seen(scope.seen),
        Root::Start => Place::Event(scope.start.ok_or(Failure::NoStart)?),
    };
    for (i, key) in keys.iter().enumerate() {
        let key: &'a str = key;
        // A value that is not a map ends the path: fine if this is its last key.
        let leaf = |v: V<'a>| -> Outcome<'a> {
            if i + 1 == keys.len() {
                Ok(v)
            } else {
                Err(no_fields(v.kind()))
            }
        };
        place = match place {
            Place::Json(serde_json::Value::Object(o)) => Place::Json(o.get(key).ok_or(Failure::NoSuchKey(key))?),
            Place::Json(other) => return Err(no_fields(V::from_json(other).kind())),
            Place::Data(data) => match data.get(key) {
                Ok(member) => Place::Json(member.ok_or(Failure::NoSuchKey(key))?),
                Err(other) => return Err(no_fields(V::from_json(other).kind())),
            },
            Place::Event(e) => match key {
                "data" => Place::Data(&e.data),
                "metadata" => Place::Metadata(&e.metadata),
                _ => return leaf(event_field(e, key).ok_or(Failure::NoSuchKey(key))?),
            },
            Place::Metadata(m) => {
                return leaf(V::Str(Cow::Borrowed(m.get(key).ok_or(Failure::NoSuchKey(key))?)));
            }
            Place::Seen(seen) => Place::Event(seen.and_then(|s| s.get(key)).ok_or(Failure::NoSuchKey(key))?),
        };
    }
    Ok(place.into_value())
}

/// A field of something that has none.
pub(super) fn no_fields<'a>(kind: Kind) -> Failure<'a> {
    Failure::NoOverload {
        function: "_._",
        types: [Some(kind), Some(Kind::String)],
    }
}
