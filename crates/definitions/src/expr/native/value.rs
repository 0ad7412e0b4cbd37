//! The values the native evaluator works on, and CEL's operators over them.
//!
//! A value borrows what it can: strings, lists and maps from the event's JSON data,
//! the event itself, and literals from the compiled program. Only operators that
//! build something new (`+` on strings and lists) own their result. Every operator
//! follows the `cel` interpreter this evaluator stands in for, down to its quirks:
//! the differential tests in `differential.rs` hold the two to the same answers.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, FixedOffset, TimeDelta};

use crate::expr::{Data, EvalError, EventData, Seen, Value};

/// CEL's `timestamp`, as the interpreter holds it (instants compare, offsets don't).
pub(super) type Timestamp = DateTime<FixedOffset>;

/// `0001-01-01T00:00:00Z`, the first timestamp CEL allows.
static MIN_TIMESTAMP: LazyLock<Timestamp> = LazyLock::new(|| {
    DateTime::from_timestamp(-62_135_596_800, 0)
        .expect("year 1 is in chrono's range")
        .fixed_offset()
});

/// `9999-12-31T23:59:59.999999999Z`, the last timestamp CEL allows.
static MAX_TIMESTAMP: LazyLock<Timestamp> = LazyLock::new(|| {
    DateTime::from_timestamp(253_402_300_799, 999_999_999)
        .expect("year 9999 is in chrono's range")
        .fixed_offset()
});

/// A value during evaluation.
#[derive(Debug, Clone)]
#[repr(u64)]
pub(super) enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    Str(Cow<'a, str>),
    Timestamp(Timestamp),
    /// Always within the `i64` nanoseconds CEL allows.
    Duration(TimeDelta),
    List(List<'a>),
    Map(Map<'a>),
}

/// A list: a JSON array, a literal list of the program, or one built by `+`.
#[derive(Debug, Clone)]
pub(super) enum List<'a> {
    Json(&'a [serde_json::Value]),
    Literal(&'a [Literal]),
    Owned(Vec<V<'a>>),
}

/// A map with string keys: JSON data, an event, its metadata, or `seen`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Map<'a> {
    Json(&'a serde_json::Map<String, serde_json::Value>),
    /// Event data held as fields ([`Data::whole`] is `None`): read without making
    /// it a JSON object.
    Data(&'a Data),
    Event(&'a EventData),
    Metadata(&'a BTreeMap<String, String>),
    /// `None` when the scope has no `seen`: CEL sees an empty map.
    Seen(Option<&'a Seen>),
}

/// A constant of the program: a literal, or a `timestamp('...')` / `duration('...')`
/// of one, evaluated when compiling.
#[derive(Debug, Clone)]
pub(crate) enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    String(Box<str>),
    Timestamp(Timestamp),
    Duration(TimeDelta),
}

/// Why an evaluation failed. Small and cheap to make: the message is only written
/// when the failure is the expression's result (`&&` and `||` may absorb it).
#[derive(Debug, Clone)]
pub(super) enum Failure<'a> {
    /// A map has no such key (the interpreter's `NoSuchKey`).
    NoSuchKey(&'a str),
    /// The same, for a key built while evaluating.
    NoSuchBuiltKey(Box<str>),
    /// The same, for a key of another type than string: never in these maps.
    NoSuchScalarKey(ScalarKey),
    /// `start` used in a scope without one (the interpreter's undeclared reference).
    NoStart,
    /// No overload of `function` for arguments of these types (`None` for a
    /// function of one argument).
    NoOverload {
        function: &'static str,
        types: [Option<Kind>; 2],
    },
    /// A condition that is not a bool.
    NotBool(Kind),
    DivisionByZero,
    RemainderByZero,
    Overflow(&'static str),
    IndexOutOfBounds,
    /// A fractional double used as a list index.
    FractionalIndex,
    TimestampParse(chrono::ParseError),
    TimestampRange,
    /// A value opsflow's [`Value`] cannot hold.
    Unrepresentable(&'static str),
    /// A constant part of the program that always fails (`duration('soon')`).
    Constant(&'a EvalError),
}

/// A map key that is not a string, as the interpreter names it when missing.
#[derive(Debug, Clone, Copy)]
pub(super) enum ScalarKey {
    Int(i64),
    Uint(u64),
    Double(f64),
    Bool(bool),
}

/// The type of a value, as CEL names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Null,
    Bool,
    Int,
    Uint,
    Double,
    String,
    Timestamp,
    Duration,
    List,
    Map,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Null => "null_type",
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Uint => "uint",
            Kind::Double => "double",
            Kind::String => "string",
            Kind::Timestamp => "google.protobuf.Timestamp",
            Kind::Duration => "google.protobuf.Duration",
            Kind::List => "list",
            Kind::Map => "map",
        }
    }
}

impl Failure<'_> {
    pub(super) fn no_overload(function: &'static str, lhs: &V<'_>, rhs: &V<'_>) -> Self {
        Failure::NoOverload {
            function,
            types: [Some(lhs.kind()), Some(rhs.kind())],
        }
    }

    pub(super) fn no_unary_overload(function: &'static str, arg: &V<'_>) -> Self {
        Failure::NoOverload {
            function,
            types: [Some(arg.kind()), None],
        }
    }

    /// The error as the CEL path reports it: a missing key or `start` is
    /// [`EvalError::NoSuchField`], a value opsflow cannot hold [`EvalError::Type`],
    /// anything else [`EvalError::Cel`].
    pub(super) fn into_eval_error(self) -> EvalError {
        let cel = |message: String| EvalError::Cel(message);
        match self {
            Failure::NoSuchKey(key) => EvalError::NoSuchField(key.to_string()),
            Failure::NoSuchBuiltKey(key) => EvalError::NoSuchField(key.into()),
            Failure::NoSuchScalarKey(key) => EvalError::NoSuchField(match key {
                ScalarKey::Int(i) => i.to_string(),
                ScalarKey::Uint(u) => u.to_string(),
                ScalarKey::Double(d) => d.to_string(),
                ScalarKey::Bool(b) => b.to_string(),
            }),
            Failure::NoStart => EvalError::NoSuchField("start".into()),
            Failure::NoOverload { function, types } => {
                let types: Vec<&str> = types.iter().flatten().map(|k| k.name()).collect();
                cel(format!(
                    "found no matching overload for '{function}' applied to '({})'",
                    types.join(", ")
                ))
            }
            Failure::NotBool(got) => cel(format!("Unexpected type: got '{}', want 'bool'", got.name())),
            Failure::DivisionByZero => cel("division by zero".into()),
            Failure::RemainderByZero => cel("remainder by zero".into()),
            Failure::Overflow(op) => cel(format!("overflow from '{op}'")),
            Failure::IndexOutOfBounds => cel("index out of bounds".into()),
            Failure::FractionalIndex => cel("a list index must be a whole number".into()),
            Failure::TimestampParse(e) => cel(format!("Error executing function 'timestamp': {e}")),
            Failure::TimestampRange => {
                cel("Error executing function 'timestamp': range error parsing timestamp".into())
            }
            Failure::Unrepresentable(what) => EvalError::Type {
                expected: "a value opsflow can use",
                actual: what.to_string(),
            },
            Failure::Constant(e) => e.clone(),
        }
    }
}

pub(super) type Outcome<'a> = Result<V<'a>, Failure<'a>>;

impl<'a> V<'a> {
    /// JSON integers become `int` (`uint` past `i64::MAX`), other numbers `double`:
    /// as the CEL path converts them.
    pub(super) fn from_json(v: &'a serde_json::Value) -> V<'a> {
        match v {
            serde_json::Value::Null => V::Null,
            serde_json::Value::Bool(b) => V::Bool(*b),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    V::Int(i)
                } else if let Some(u) = n.as_u64() {
                    V::Uint(u)
                } else {
                    V::Double(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            serde_json::Value::String(s) => V::Str(Cow::Borrowed(s)),
            serde_json::Value::Array(a) => V::List(List::Json(a)),
            serde_json::Value::Object(o) => V::Map(Map::Json(o)),
        }
    }

    /// An event's `data`.
    pub(super) fn from_data(d: &'a Data) -> V<'a> {
        match d.whole() {
            Some(json) => V::from_json(json),
            None => V::Map(Map::Data(d)),
        }
    }

    pub(super) fn from_literal(l: &'a Literal) -> V<'a> {
        match l {
            Literal::Null => V::Null,
            Literal::Bool(b) => V::Bool(*b),
            Literal::Int(i) => V::Int(*i),
            Literal::Uint(u) => V::Uint(*u),
            Literal::Double(d) => V::Double(*d),
            Literal::String(s) => V::Str(Cow::Borrowed(s)),
            Literal::Timestamp(t) => V::Timestamp(*t),
            Literal::Duration(d) => V::Duration(*d),
        }
    }

    pub(super) fn event_time(nanos: i64) -> V<'a> {
        V::Timestamp(DateTime::from_timestamp_nanos(nanos).fixed_offset())
    }

    pub(super) fn kind(&self) -> Kind {
        match self {
            V::Null => Kind::Null,
            V::Bool(_) => Kind::Bool,
            V::Int(_) => Kind::Int,
            V::Uint(_) => Kind::Uint,
            V::Double(_) => Kind::Double,
            V::Str(_) => Kind::String,
            V::Timestamp(_) => Kind::Timestamp,
            V::Duration(_) => Kind::Duration,
            V::List(_) => Kind::List,
            V::Map(_) => Kind::Map,
        }
    }

    /// The result as opsflow holds it; fails, as the CEL path does, for a timestamp
    /// or duration that does not fit `i64` nanoseconds.
    pub(super) fn into_value(self) -> Result<Value, Failure<'a>> {
        Ok(match self {
            V::Null => Value::Null,
            V::Bool(b) => Value::Bool(b),
            V::Int(i) => Value::Int(i),
            V::Uint(u) => Value::Uint(u),
            V::Double(d) => Value::Float(d),
            V::Str(s) => Value::String(s.into_owned()),
            V::Timestamp(t) => Value::Timestamp(
                t.timestamp_nanos_opt()
                    .ok_or(Failure::Unrepresentable("a timestamp outside 1677..2262"))?,
            ),
            V::Duration(d) => Value::Duration(
                d.num_nanoseconds()
                    .ok_or(Failure::Unrepresentable("a duration over 292 years"))?,
            ),
            V::List(l) => Value::List(l.iter().map(V::into_value).collect::<Result<_, _>>()?),
            V::Map(m) => Value::Map(
                m.entries()
                    .into_iter()
                    .map(|(k, v)| Ok((k.to_string(), v.into_value()?)))
                    .collect::<Result<_, Failure<'a>>>()?,
            ),
        })
    }
}

impl<'a> List<'a> {
    pub(super) fn len(&self) -> usize {
        match self {
            List::Json(a) => a.len(),
            List::Literal(l) => l.len(),
            List::Owned(v) => v.len(),
        }
    }

    pub(super) fn get(&self, i: usize) -> Option<V<'a>> {
        match self {
            List::Json(a) => a.get(i).map(V::from_json),
            List::Literal(l) => l.get(i).map(V::from_literal),
            List::Owned(v) => v.get(i).cloned(),
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = V<'a>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// The keys of an event as a CEL map, in the order [`Map::entries`] lists them.
const EVENT_KEYS: [&str; 10] = [
    "type", "stream", "subject", "source", "id", "time", "position", "version", "data", "metadata",
];

impl<'a> Map<'a> {
    pub(super) fn get(&self, key: &str) -> Option<V<'a>> {
        match *self {
            Map::Json(o) => o.get(key).map(V::from_json),
            Map::Data(d) => d.get(key).ok().flatten().map(V::from_json),
            Map::Event(e) => event_field(e, key),
            Map::Metadata(m) => m.get(key).map(|v| V::Str(Cow::Borrowed(v))),
            Map::Seen(seen) => seen?.get(key).map(|e| V::Map(Map::Event(e))),
        }
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        match *self {
            Map::Json(o) => o.contains_key(key),
            Map::Data(d) => matches!(d.get(key), Ok(Some(_))),
            Map::Event(_) => EVENT_KEYS.contains(&key),
            Map::Metadata(m) => m.contains_key(key),
            Map::Seen(seen) => seen.is_some_and(|s| s.contains_key(key)),
        }
    }

    pub(super) fn len(&self) -> usize {
        match *self {
            Map::Json(o) => o.len(),
            Map::Data(d) => d.members().map_or(0, |m| m.len()),
            Map::Event(_) => EVENT_KEYS.len(),
            Map::Metadata(m) => m.len(),
            Map::Seen(seen) => seen.map_or(0, Seen::len),
        }
    }

    /// Every key with its value. Allocates: for equality of whole maps, `+` of a list
    /// and a map, and the result; never on a path through a map.
    pub(super) fn entries(&self) -> Vec<(&'a str, V<'a>)> {
        match *self {
            Map::Json(o) => o.iter().map(|(k, v)| (k.as_str(), V::from_json(v))).collect(),
            Map::Data(d) => d
                .members()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k, V::from_json(v)))
                .collect(),
            Map::Event(e) => EVENT_KEYS
                .iter()
                .filter_map(|k| event_field(e, k).map(|v| (*k, v)))
                .collect(),
            Map::Metadata(m) => m.iter().map(|(k, v)| (k.as_str(), V::Str(Cow::Borrowed(v)))).collect(),
            Map::Seen(seen) => seen
                .into_iter()
                .flat_map(Seen::iter)
                .map(|(k, e)| (k, V::Map(Map::Event(e))))
                .collect(),
        }
    }
}

/// A field of an event, named as the CEL path names it (`subject` is the stream).
pub(super) fn event_field<'a>(e: &'a EventData, key: &str) -> Option<V<'a>> {
    Some(match key {
        "type" => V::Str(Cow::Borrowed(&e.event_type)),
        "stream" | "subject" => V::Str(Cow::Borrowed(&e.stream)),
        "source" => V::Str(Cow::Borrowed(&e.source)),
        "id" => V::Str(Cow::Borrowed(&e.id)),
        "time" => V::event_time(e.time),
        // As the CEL path converts them: a position past i64::MAX wraps.
        "position" => V::Int(e.position as i64),
        "version" => V::Int(e.version as i64),
        "data" => V::from_data(&e.data),
        "metadata" => V::Map(Map::Metadata(&e.metadata)),
        _ => return None,
    })
}

/// CEL equality: numbers compare across `int`, `uint` and `double`; values of
/// different types are unequal, never an error.
pub(super) fn equals(a: &V<'_>, b: &V<'_>) -> bool {
    match (a, b) {
        (V::Null, V::Null) => true,
        (V::Bool(x), V::Bool(y)) => x == y,
        (V::Str(x), V::Str(y)) => x == y,
        (V::Timestamp(x), V::Timestamp(y)) => x == y,
        (V::Duration(x), V::Duration(y)) => x == y,
        (V::List(x), V::List(y)) => x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| equals(&p, &q)),
        (V::Map(x), V::Map(y)) => {
            x.len() == y.len() && x.entries().iter().all(|(k, v)| y.get(k).is_some_and(|w| equals(v, &w)))
        }
        _ => compare_numbers(a, b) == Some(Some(Ordering::Equal)),
    }
}

/// `None` unless both are numbers; `Some(None)` when one is NaN. Mixed `int` and
/// `double` compare as doubles, as the interpreter does.
fn compare_numbers(a: &V<'_>, b: &V<'_>) -> Option<Option<Ordering>> {
    Some(match (a, b) {
        (V::Int(x), V::Int(y)) => Some(x.cmp(y)),
        (V::Int(x), V::Uint(y)) => Some(u64::try_from(*x).map_or(Ordering::Less, |x| x.cmp(y))),
        (V::Int(x), V::Double(y)) => (*x as f64).partial_cmp(y),
        (V::Uint(x), V::Uint(y)) => Some(x.cmp(y)),
        (V::Uint(x), V::Int(y)) => Some(i64::try_from(*x).map_or(Ordering::Greater, |x| x.cmp(y))),
        (V::Uint(x), V::Double(y)) => (*x as f64).partial_cmp(y),
        (V::Double(x), V::Double(y)) => x.partial_cmp(y),
        (V::Double(x), V::Int(y)) => x.partial_cmp(&(*y as f64)),
        (V::Double(x), V::Uint(y)) => x.partial_cmp(&(*y as f64)),
        _ => return None,
    })
}

/// CEL ordering (`<`, `<=`, `>`, `>=`): numbers across types, strings, bools,
/// timestamps and durations each among themselves; anything else, or NaN, fails.
pub(super) fn compare<'a>(function: &'static str, a: &V<'a>, b: &V<'a>) -> Result<Ordering, Failure<'a>> {
    let ordering = match (a, b) {
        (V::Str(x), V::Str(y)) => Some(x.cmp(y)),
        (V::Bool(x), V::Bool(y)) => Some(x.cmp(y)),
        (V::Timestamp(x), V::Timestamp(y)) => Some(x.cmp(y)),
        (V::Duration(x), V::Duration(y)) => Some(x.cmp(y)),
        _ => compare_numbers(a, b).flatten(),
    };
    ordering.ok_or_else(|| Failure::no_overload(function, a, b))
}

/// A duration CEL allows: one that fits `i64` nanoseconds.
fn duration(d: Option<TimeDelta>, op: &'static str) -> Outcome<'static> {
    match d {
        Some(d) if d.num_nanoseconds().is_some() => Ok(V::Duration(d)),
        _ => Err(Failure::Overflow(op)),
    }
}

/// A timestamp CEL allows: one within years 1 to 9999.
fn timestamp(t: Option<Timestamp>, op: &'static str) -> Outcome<'static> {
    match t {
        Some(t) if t >= *MIN_TIMESTAMP && t <= *MAX_TIMESTAMP => Ok(V::Timestamp(t)),
        _ => Err(Failure::Overflow(op)),
    }
}

pub(super) fn add<'a>(a: V<'a>, b: V<'a>) -> Outcome<'a> {
    const OP: &str = "_+_";
    match (a, b) {
        (V::Int(x), V::Int(y)) => x.checked_add(y).map(V::Int).ok_or(Failure::Overflow(OP)),
        (V::Uint(x), V::Uint(y)) => x.checked_add(y).map(V::Uint).ok_or(Failure::Overflow(OP)),
        (V::Double(x), V::Double(y)) => Ok(V::Double(x + y)),
        (V::Str(x), V::Str(y)) => {
            // Adds to a string the left side already owns (`a + b + c`).
            let mut s = match x {
                Cow::Owned(s) => s,
                Cow::Borrowed(x) => {
                    let mut s = String::with_capacity(x.len() + y.len());
                    s.push_str(x);
                    s
                }
            };
            s.push_str(&y);
            Ok(V::Str(Cow::Owned(s)))
        }
        (V::Timestamp(t), V::Duration(d)) | (V::Duration(d), V::Timestamp(t)) => timestamp(t.checked_add_signed(d), OP),
        (V::Duration(x), V::Duration(y)) => duration(x.checked_add(&y), OP),
        // The interpreter appends anything iterable: a list's items, a map's keys.
        (V::List(x), V::List(y)) => {
            let mut items: Vec<V<'a>> = x.iter().collect();
            items.extend(y.iter());
            Ok(V::List(List::Owned(items)))
        }
        (V::List(x), V::Map(y)) => {
            let mut items: Vec<V<'a>> = x.iter().collect();
            items.extend(y.entries().into_iter().map(|(k, _)| V::Str(Cow::Borrowed(k))));
            Ok(V::List(List::Owned(items)))
        }
        (a, b) => Err(Failure::no_overload(OP, &a, &b)),
    }
}

pub(super) fn sub<'a>(a: V<'a>, b: V<'a>) -> Outcome<'a> {
    const OP: &str = "_-_";
    match (a, b) {
        (V::Int(x), V::Int(y)) => x.checked_sub(y).map(V::Int).ok_or(Failure::Overflow(OP)),
        (V::Uint(x), V::Uint(y)) => x.checked_sub(y).map(V::Uint).ok_or(Failure::Overflow(OP)),
        (V::Double(x), V::Double(y)) => Ok(V::Double(x - y)),
        (V::Timestamp(t), V::Duration(d)) => timestamp(t.checked_sub_signed(d), OP),
        (V::Timestamp(x), V::Timestamp(y)) => duration(Some(x.signed_duration_since(y)), OP),
        (V::Duration(x), V::Duration(y)) => duration(x.checked_sub(&y), OP),
        (a, b) => Err(Failure::no_overload(OP, &a, &b)),
    }
}

pub(super) fn mul<'a>(a: V<'a>, b: V<'a>) -> Outcome<'a> {
    const OP: &str = "_*_";
    match (a, b) {
        (V::Int(x), V::Int(y)) => x.checked_mul(y).map(V::Int).ok_or(Failure::Overflow(OP)),
        (V::Uint(x), V::Uint(y)) => x.checked_mul(y).map(V::Uint).ok_or(Failure::Overflow(OP)),
        (V::Double(x), V::Double(y)) => Ok(V::Double(x * y)),
        (a, b) => Err(Failure::no_overload(OP, &a, &b)),
    }
}

pub(super) fn div<'a>(a: V<'a>, b: V<'a>) -> Outcome<'a> {
    const OP: &str = "_/_";
    match (a, b) {
        (V::Int(_), V::Int(0)) | (V::Uint(_), V::Uint(0)) => Err(Failure::DivisionByZero),
        (V::Int(x), V::Int(y)) => x.checked_div(y).map(V::Int).ok_or(Failure::Overflow(OP)),
        (V::Uint(x), V::Uint(y)) => x.checked_div(y).map(V::Uint).ok_or(Failure::Overflow(OP)),
        // IEEE: `x / 0.0` is an infinity or NaN, not an error.
        (V::Double(x), V::Double(y)) => Ok(V::Double(x / y)),
        (a, b) => Err(Failure::no_overload(OP, &a, &b)),
    }
}

pub(super) fn rem<'a>(a: V<'a>, b: V<'a>) -> Outcome<'a> {
    const OP: &str = "_%_";
    match (a, b) {
        (V::Int(_), V::Int(0)) | (V::Uint(_), V::Uint(0)) => Err(Failure::RemainderByZero),
        (V::Int(x), V::Int(y)) => x.checked_rem(y).map(V::Int).ok_or(Failure::Overflow(OP)),
        (V::Uint(x), V::Uint(y)) => x.checked_rem(y).map(V::Uint).ok_or(Failure::Overflow(OP)),
        (a, b) => Err(Failure::no_overload(OP, &a, &b)),
    }
}

pub(super) fn negate(a: V<'_>) -> Outcome<'_> {
    match a {
        V::Int(x) => x.checked_neg().map(V::Int).ok_or(Failure::Overflow("-_")),
        V::Double(x) => Ok(V::Double(-x)),
        a => Err(Failure::no_unary_overload("-_", &a)),
    }
}

/// `timestamp(x)`: an RFC 3339 string, a timestamp, or Unix seconds.
pub(super) fn to_timestamp(a: V<'_>) -> Outcome<'_> {
    match a {
        V::Str(s) => {
            let t = DateTime::parse_from_rfc3339(&s).map_err(Failure::TimestampParse)?;
            timestamp(Some(t), "timestamp").map_err(|_| Failure::TimestampRange)
        }
        V::Timestamp(t) => Ok(V::Timestamp(t)),
        V::Int(seconds) => timestamp(
            DateTime::from_timestamp(seconds, 0).map(|t| t.fixed_offset()),
            "timestamp",
        ),
        a => Err(Failure::no_unary_overload("timestamp", &a)),
    }
}

/// `size(x)`: characters of a string, items of a list, keys of a map.
pub(super) fn size(a: V<'_>) -> Outcome<'_> {
    match a {
        V::Str(s) => Ok(V::Int(s.chars().count() as i64)),
        V::List(l) => Ok(V::Int(l.len() as i64)),
        V::Map(m) => Ok(V::Int(m.len() as i64)),
        a => Err(Failure::no_unary_overload("size", &a)),
    }
}
