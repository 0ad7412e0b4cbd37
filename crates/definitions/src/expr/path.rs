//! The fast path: plain field paths (`event.data.order_id`,
//! `seen['order.placed'].data.total`, `start.data.channel`) read straight from
//! [`EventData`] without the CEL interpreter.

use std::collections::BTreeMap;

use super::{EvalError, EventData, Reads, Scope, Value};

/// The fields of an event, as expressions name them.
pub(crate) const EVENT_FIELDS: &[&str] = &[
    "type", "stream", "subject", "source", "id", "time", "position", "version", "data", "metadata",
];

/// Which event a path starts from.
#[derive(Debug, Clone, PartialEq)]
enum Root {
    Event,
    Start,
    Seen(String),
}

/// What a path reads of that event.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Type,
    Stream,
    Source,
    Id,
    Time,
    Position,
    Version,
    /// `data` followed by zero or more keys.
    Data(Vec<String>),
    /// `metadata` alone (the whole map) or `metadata.<key>`.
    Metadata(Option<String>),
}

/// A parsed field path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldPath {
    root: Root,
    field: Field,
}

/// Why a source that looks like a field path is not a valid one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PathError {
    pub message: String,
    /// 1-based column in the source.
    pub column: usize,
}

/// One step of a path as written: `.name` or `['name']`.
struct Segment<'a> {
    name: &'a str,
    /// 1-based column where the name starts.
    column: usize,
    /// Written `['name']` rather than `.name`.
    index: bool,
}

impl FieldPath {
    /// Whether the path reads the `start` event.
    pub(crate) fn is_of_start(&self) -> bool {
        matches!(self.root, Root::Start)
    }

    /// Parses `source` as a field path. `Ok(None)` when it is not a plain path (it is
    /// then left to CEL); `Err` when it is a path of an event but names a field an
    /// event does not have, a mistake better reported when the definitions are checked.
    pub(crate) fn parse(source: &str) -> Result<Option<FieldPath>, PathError> {
        let Some(segments) = split(source) else {
            return Ok(None);
        };
        let mut rest = segments.iter();
        let root = match rest.next() {
            Some(s) if s.name == "event" && !s.index => Root::Event,
            Some(s) if s.name == "start" && !s.index => Root::Start,
            Some(s) if s.name == "seen" && !s.index => match rest.next() {
                Some(t) if t.index => Root::Seen(t.name.to_string()),
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        let Some(first) = rest.next() else {
            // The whole event: rare, and CEL builds it just as well.
            return Ok(None);
        };
        let name = first.name;
        let remaining: Vec<String> = rest.map(|s| s.name.to_string()).collect();
        let terminal = |field: Field| -> Result<Option<FieldPath>, PathError> {
            if remaining.is_empty() {
                Ok(Some(FieldPath {
                    root: root.clone(),
                    field,
                }))
            } else {
                Err(PathError {
                    message: format!("event field `{name}` has no fields of its own"),
                    column: first.column,
                })
            }
        };
        match name {
            "type" => terminal(Field::Type),
            "stream" | "subject" => terminal(Field::Stream),
            "source" => terminal(Field::Source),
            "id" => terminal(Field::Id),
            "time" => terminal(Field::Time),
            "position" => terminal(Field::Position),
            "version" => terminal(Field::Version),
            "data" => Ok(Some(FieldPath {
                root,
                field: Field::Data(remaining),
            })),
            "metadata" if remaining.len() <= 1 => Ok(Some(FieldPath {
                root,
                field: Field::Metadata(remaining.into_iter().next()),
            })),
            "metadata" => Err(PathError {
                message: "metadata values are strings: `metadata.<key>` has no fields".into(),
                column: first.column,
            }),
            other => Err(no_such_field(other, first.column)),
        }
    }

    /// Adds what the path reads to `reads`.
    pub(crate) fn reads(&self, reads: &mut Reads) {
        let mut keys: Vec<&str> = match &self.root {
            Root::Seen(t) => vec![t.as_str()],
            Root::Event | Root::Start => Vec::new(),
        };
        keys.push(match &self.field {
            Field::Type => "type",
            Field::Stream => "stream",
            Field::Source => "source",
            Field::Id => "id",
            Field::Time => "time",
            Field::Position => "position",
            Field::Version => "version",
            Field::Data(_) => "data",
            Field::Metadata(_) => "metadata",
        });
        if let Field::Data(data) = &self.field {
            keys.extend(data.iter().map(String::as_str));
        }
        match &self.root {
            Root::Event => reads.event_path(&keys),
            Root::Start => reads.start_path(&keys),
            Root::Seen(_) => reads.seen_path(&keys),
        }
    }

    /// The event the path starts from.
    fn root<'a>(&self, scope: &Scope<'a>) -> Result<&'a EventData, EvalError> {
        Ok(match &self.root {
            Root::Event => scope.event,
            Root::Start => scope.start.ok_or_else(|| EvalError::NoSuchField("start".into()))?,
            Root::Seen(t) => scope
                .seen
                .and_then(|seen| seen.get(t))
                .map(|e| e.as_ref())
                .ok_or_else(|| EvalError::NoSuchField(format!("seen['{t}']")))?,
        })
    }

    /// The `data` value at `keys`.
    fn data<'a>(event: &'a EventData, keys: &[String]) -> Result<&'a serde_json::Value, EvalError> {
        let Some((first, rest)) = keys.split_first() else {
            return Ok(event.data.as_json());
        };
        let mut node = event
            .data
            .get(first)
            .ok()
            .flatten()
            .ok_or_else(|| EvalError::NoSuchField(data_path(&keys[..1])))?;
        for (i, key) in rest.iter().enumerate() {
            node = node
                .as_object()
                .and_then(|o| o.get(key))
                .ok_or_else(|| EvalError::NoSuchField(data_path(&keys[..=i + 1])))?;
        }
        Ok(node)
    }

    /// The value borrowed from the event when it is a string (`None`: it is not,
    /// [`FieldPath::eval`] it); errors as [`FieldPath::eval`].
    pub(crate) fn eval_str<'a>(&self, scope: &Scope<'a>) -> Result<Option<&'a str>, EvalError> {
        let event = self.root(scope)?;
        Ok(match &self.field {
            Field::Type => Some(&event.event_type),
            Field::Stream => Some(&event.stream),
            Field::Source => Some(&event.source),
            Field::Id => Some(&event.id),
            Field::Data(keys) => Self::data(event, keys)?.as_str(),
            Field::Metadata(Some(key)) => Some(
                event
                    .metadata
                    .get(key)
                    .ok_or_else(|| EvalError::NoSuchField(format!("metadata.{key}")))?,
            ),
            Field::Time | Field::Position | Field::Version | Field::Metadata(None) => None,
        })
    }

    pub(crate) fn eval(&self, scope: &Scope<'_>) -> Result<Value, EvalError> {
        let event = self.root(scope)?;
        Ok(match &self.field {
            Field::Type => Value::String(event.event_type.clone()),
            Field::Stream => Value::String(event.stream.clone()),
            Field::Source => Value::String(event.source.clone()),
            Field::Id => Value::String(event.id.clone()),
            Field::Time => Value::Timestamp(event.time),
            Field::Position => Value::Int(event.position as i64),
            Field::Version => Value::Int(event.version as i64),
            Field::Data(keys) => Value::from_json(Self::data(event, keys)?),
            Field::Metadata(None) => Value::Map(
                event
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            Field::Metadata(Some(key)) => event
                .metadata
                .get(key)
                .map(|v| Value::String(v.clone()))
                .ok_or_else(|| EvalError::NoSuchField(format!("metadata.{key}")))?,
        })
    }
}

/// Checks every `event.<f>`, `start.<f>` and `seen['t'].<f>` of a CEL expression as
/// a bare path is checked: a field an event does not have (`event.dta.total > 1`)
/// is an error, reported at its first mention in `source` (1-based column).
/// Comprehensions are not entered past their range: their variables may shadow
/// the roots.
pub(crate) fn check_fields(expr: &cel::IdedExpr, source: &str) -> Result<(), PathError> {
    use cel::common::ast::{EntryExpr, Expr as Ast, MapExpr, StructExpr, operators};
    let is_root = |operand: &cel::IdedExpr| match &operand.expr {
        Ast::Ident(name) => name == "event" || name == "start",
        Ast::Call(call) => {
            call.func_name == operators::INDEX
                && call.target.is_none()
                && matches!(call.args.first().map(|a| &a.expr), Some(Ast::Ident(name)) if name == "seen")
        }
        _ => false,
    };
    match &expr.expr {
        Ast::Select(select) => {
            let field = select.field.as_str();
            if is_root(&select.operand) && !EVENT_FIELDS.contains(&field) {
                let column = source.find(&format!(".{field}")).map_or(1, |at| at + 2);
                return Err(no_such_field(field, column));
            }
            check_fields(&select.operand, source)
        }
        Ast::Call(call) => {
            if let Some(target) = &call.target {
                check_fields(target, source)?;
            }
            call.args.iter().try_for_each(|a| check_fields(a, source))
        }
        Ast::List(list) => list.elements.iter().try_for_each(|e| check_fields(e, source)),
        Ast::Map(MapExpr { entries }) | Ast::Struct(StructExpr { entries, .. }) => {
            entries.iter().try_for_each(|entry| match &entry.expr {
                EntryExpr::MapEntry(e) => check_fields(&e.key, source).and_then(|()| check_fields(&e.value, source)),
                EntryExpr::StructField(f) => check_fields(&f.value, source),
            })
        }
        Ast::Comprehension(c) => check_fields(&c.iter_range, source),
        Ast::Ident(_) | Ast::Literal(_) | Ast::Unspecified => Ok(()),
    }
}

/// A field no event has, at `column` of the expression.
fn no_such_field(name: &str, column: usize) -> PathError {
    PathError {
        message: format!("an event has no field `{name}` (fields: {})", EVENT_FIELDS.join(", ")),
        column,
    }
}

fn data_path(keys: &[String]) -> String {
    let mut path = String::from("data");
    for k in keys {
        path.push('.');
        path.push_str(k);
    }
    path
}

/// Splits `a.b['c'].d` into segments; `None` when the source is anything else
/// (operators, calls, whitespace, escapes...).
fn split(source: &str) -> Option<Vec<Segment<'_>>> {
    let bytes = source.as_bytes();
    // The end of the identifier starting at `start`.
    let ident = |start: usize| -> Option<usize> {
        let first = *bytes.get(start)?;
        if !(first.is_ascii_alphabetic() || first == b'_') {
            return None;
        }
        let len = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count();
        Some(start + len)
    };
    let mut i = ident(0)?;
    let mut segments = vec![Segment {
        name: &source[..i],
        column: 1,
        index: false,
    }];
    while i < bytes.len() {
        match bytes[i] {
            b'.' => {
                let end = ident(i + 1)?;
                segments.push(Segment {
                    name: &source[i + 1..end],
                    column: i + 2,
                    index: false,
                });
                i = end;
            }
            b'[' => {
                let quote = *bytes.get(i + 1)?;
                if quote != b'\'' && quote != b'"' {
                    return None;
                }
                let start = i + 2;
                let len = source[start..].find(quote as char)?;
                let name = &source[start..start + len];
                if name.contains('\\') || bytes.get(start + len + 1) != Some(&b']') {
                    return None;
                }
                segments.push(Segment {
                    name,
                    column: start + 1,
                    index: true,
                });
                i = start + len + 2;
            }
            _ => return None,
        }
    }
    Some(segments)
}

impl Value {
    /// JSON integers become `Int` (`Uint` past `i64::MAX`), other numbers `Float`.
    pub(crate) fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Value::Uint(u)
                } else {
                    Value::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => {
                Value::Map(o.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> Option<FieldPath> {
        FieldPath::parse(s).expect("a valid path or not a path")
    }

    #[test]
    fn recognises_plain_paths() {
        assert!(parsed("event.data.order_id").is_some());
        assert!(parsed("event.data['order id'].x").is_some());
        assert!(parsed("seen['order.placed'].data.total").is_some());
        assert!(parsed("seen[\"order.placed\"].time").is_some());
        assert!(parsed("start.data.channel").is_some());
        assert!(parsed("event.metadata.tenant").is_some());
        assert!(parsed("event.type").is_some());
        assert!(parsed("event.subject").is_some());
    }

    #[test]
    fn leaves_everything_else_to_cel() {
        for s in [
            "event",
            "event.data.total > 1",
            "event.data.a + 'x'",
            "size(event.data)",
            "event.data.items[0]",
            "seen.x",
            "seen",
            "other.data.x",
            " event.data.x",
            "event.data['a\\'b']",
            "event.type.startsWith('order.')",
        ] {
            assert_eq!(parsed(s), None, "{s}");
        }
    }

    #[test]
    fn rejects_fields_an_event_does_not_have() {
        let err = FieldPath::parse("event.dat.order_id").expect_err("unknown field");
        assert_eq!(err.column, 7);
        assert!(err.message.contains("no field `dat`"), "{}", err.message);
        assert!(FieldPath::parse("event.type.x").is_err());
        assert!(FieldPath::parse("event.metadata.a.b").is_err());
    }
}
