//! The CEL path: expressions compiled once with the `cel` crate and evaluated over
//! the event, `seen` and `start` converted to CEL values.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, Program};

use super::{CompileError, EvalError, EventData, Scope, Value};

/// The standard library plus the `strings` and `math` extensions; built once.
pub(in crate::expr) static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // Both only fail when an overload is declared twice, which a fresh stdlib
    // environment rules out; an expression using them would then fail to evaluate.
    let _ = env.add_extension(cel::extensions::strings);
    let _ = env.add_extension(cel::extensions::math);
    Arc::new(env)
});

/// The variables an expression may use.
const VARIABLES: &[&str] = &["event", "seen", "start"];

/// Macros that bind variables of their own (`list.exists(x, x > 1)`).
const BINDING_MACROS: &[&str] = &["all", "exists", "exists_one", "map", "filter"];

/// A compiled CEL program and which of the scope variables it reads, so an
/// evaluation only converts those.
#[derive(Debug)]
pub(crate) struct CelProgram {
    pub(super) program: Program,
    uses_event: bool,
    uses_seen: bool,
    uses_start: bool,
    /// `start` is named as a variable (not only bound by a comprehension).
    pub(super) names_start: bool,
}

impl CelProgram {
    pub(crate) fn compile(source: &str) -> Result<CelProgram, CompileError> {
        let program = ENV.compile(source).map_err(|errors| {
            let first = errors.errors.first();
            CompileError {
                message: first.map_or_else(|| errors.to_string(), |e| e.msg.clone()),
                column: first.and_then(|e| usize::try_from(e.pos.1).ok()).filter(|c| *c > 0),
            }
        })?;
        let references = program.references();
        let binds_variables = BINDING_MACROS.iter().any(|m| source.contains(&format!(".{m}(")));
        if !binds_variables {
            // Without a comprehension every variable must be one of ours: a typo such as
            // `evnt.data.x` would otherwise be false on every event without a word.
            let mut unknown: Vec<&str> = references
                .variables()
                .into_iter()
                .filter(|v| !VARIABLES.contains(v))
                .collect();
            unknown.sort_unstable();
            if let Some(v) = unknown.first() {
                return Err(CompileError {
                    message: format!("unknown variable `{v}` (expressions may use event, seen and start)"),
                    column: source.find(v).map(|i| i + 1),
                });
            }
        }
        Ok(CelProgram {
            uses_event: references.has_variable("event") || binds_variables,
            uses_seen: references.has_variable("seen") || binds_variables,
            uses_start: references.has_variable("start") || binds_variables,
            names_start: references.has_variable("start") && !binds_variables,
            program,
        })
    }

    pub(crate) fn eval(&self, scope: &Scope<'_>) -> Result<Value, EvalError> {
        let mut context = Context::with_env(Arc::clone(&ENV));
        if self.uses_event {
            context.add_variable_from_value("event", event_value(scope.event));
        }
        if self.uses_seen {
            let seen: HashMap<Key, cel::Value> = scope
                .seen
                .into_iter()
                .flat_map(crate::Seen::iter)
                .map(|(t, e)| (Key::from(t), event_value(e)))
                .collect();
            context.add_variable_from_value("seen", cel::Value::Map(Map { map: Arc::new(seen) }));
        }
        if self.uses_start {
            // Without a start event `start` is left undeclared: using it is an error.
            if let Some(start) = scope.start {
                context.add_variable_from_value("start", event_value(start));
            }
        }
        let result = self.program.execute(&context).map_err(eval_error)?;
        from_cel(&result)
    }
}

pub(in crate::expr) fn eval_error(e: ExecutionError) -> EvalError {
    match e {
        ExecutionError::NoSuchKey(k) => EvalError::NoSuchField(k.to_string()),
        ExecutionError::UndeclaredReference(name) if VARIABLES.contains(&name.as_str()) => {
            EvalError::NoSuchField(name.to_string())
        }
        other => EvalError::Cel(other.to_string()),
    }
}

/// An event as a CEL map: `type`, `stream`, `subject`, `source`, `id`, `time`
/// (timestamp), `position`, `version` (int), `data`, `metadata`.
fn event_value(e: &EventData) -> cel::Value {
    let string = |s: &str| cel::Value::String(Arc::new(s.to_string()));
    let metadata: HashMap<Key, cel::Value> = e
        .metadata
        .iter()
        .map(|(k, v)| (Key::from(k.as_str()), string(v)))
        .collect();
    let fields: HashMap<Key, cel::Value> = [
        ("type", string(&e.event_type)),
        ("stream", string(&e.stream)),
        ("subject", string(&e.stream)),
        ("source", string(&e.source)),
        ("id", string(&e.id)),
        ("time", timestamp(e.time)),
        ("position", cel::Value::Int(e.position as i64)),
        ("version", cel::Value::Int(e.version as i64)),
        ("data", json_value(e.data.as_json())),
        (
            "metadata",
            cel::Value::Map(Map {
                map: Arc::new(metadata),
            }),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (Key::from(k), v))
    .collect();
    cel::Value::Map(Map { map: Arc::new(fields) })
}

fn timestamp(nanos: i64) -> cel::Value {
    cel::Value::Timestamp(chrono::DateTime::from_timestamp_nanos(nanos).fixed_offset())
}

/// JSON integers become `int` (`uint` past `i64::MAX`), other numbers `double`.
fn json_value(v: &serde_json::Value) -> cel::Value {
    match v {
        serde_json::Value::Null => cel::Value::Null,
        serde_json::Value::Bool(b) => cel::Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                cel::Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                cel::Value::UInt(u)
            } else {
                cel::Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(json_value).collect())),
        serde_json::Value::Object(o) => {
            let map: HashMap<Key, cel::Value> = o.iter().map(|(k, v)| (Key::from(k.as_str()), json_value(v))).collect();
            cel::Value::Map(Map { map: Arc::new(map) })
        }
    }
}

fn from_cel(v: &cel::Value) -> Result<Value, EvalError> {
    let unsupported = |what: &str| EvalError::Type {
        expected: "a value opsflow can use",
        actual: what.to_string(),
    };
    Ok(match v {
        cel::Value::Null => Value::Null,
        cel::Value::Bool(b) => Value::Bool(*b),
        cel::Value::Int(i) => Value::Int(*i),
        cel::Value::UInt(u) => Value::Uint(*u),
        cel::Value::Float(f) => Value::Float(*f),
        cel::Value::String(s) => Value::String(s.to_string()),
        cel::Value::Timestamp(t) => Value::Timestamp(
            t.timestamp_nanos_opt()
                .ok_or_else(|| unsupported("a timestamp outside 1677..2262"))?,
        ),
        cel::Value::Duration(d) => Value::Duration(
            d.num_nanoseconds()
                .ok_or_else(|| unsupported("a duration over 292 years"))?,
        ),
        cel::Value::List(items) => Value::List(items.iter().map(from_cel).collect::<Result<_, _>>()?),
        cel::Value::Map(m) => Value::Map(
            m.map
                .iter()
                .map(|(k, v)| Ok((key_string(k), from_cel(v)?)))
                .collect::<Result<_, EvalError>>()?,
        ),
        cel::Value::Bytes(_) => return Err(unsupported("bytes")),
        other => return Err(unsupported(&format!("{other:?}"))),
    })
}

fn key_string(k: &Key) -> String {
    match k {
        Key::Int(i) => i.to_string(),
        Key::Uint(u) => u.to_string(),
        Key::Bool(b) => b.to_string(),
        Key::String(s) => s.to_string(),
    }
}
