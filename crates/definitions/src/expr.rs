//! Expressions over an event: plain field paths are read directly, the subset of CEL
//! that definitions use is evaluated natively over the event (see `native`), and
//! anything else by the CEL interpreter.

mod cel;
mod data;
mod kept;
mod native;
mod path;
mod reads;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use self::cel::CelProgram;
pub use self::data::{Data, Members, Name};
pub use self::kept::{EventSource, LazyEvent, SharedEvent};
use self::native::NativeProgram;
use self::path::FieldPath;
pub use self::reads::{EventReads, FieldSet, Fields, Reads};

/// One event as expressions see it: decoded once, shared by every view.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EventData {
    pub position: u64,
    pub version: u64,
    pub stream: String,
    pub source: String,
    pub id: String,
    pub event_type: String,
    /// Event time, Unix nanoseconds.
    pub time: i64,
    /// The JSON data (protobuf catalog data decoded to the same fields); `Null` when
    /// the data is not JSON. Views hold only the fields definitions read.
    pub data: Data,
    pub metadata: BTreeMap<String, String>,
}

/// `seen`: the last tracked event of each type for one key, in type order. Small
/// (one entry per tracked type), so a sorted vector: no allocation per entry beyond
/// the shared event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Seen(Vec<SharedEvent>);

impl Seen {
    pub const fn new() -> Seen {
        Seen(Vec::new())
    }

    fn find(&self, event_type: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|e| e.event_type().cmp(event_type))
    }

    /// Where `event_type` is: a key tracks a few types, so a scan that compares
    /// lengths before bytes beats a binary search by order.
    fn index(&self, event_type: &str) -> Option<usize> {
        self.0.iter().position(|e| e.event_type() == event_type)
    }

    /// The last event of `event_type` (decoded if it was stored).
    pub fn get(&self, event_type: &str) -> Option<&Arc<EventData>> {
        self.index(event_type).map(|i| self.0[i].event())
    }

    pub fn contains_key(&self, event_type: &str) -> bool {
        self.index(event_type).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Remembers `event` as the last of its type.
    pub fn insert(&mut self, event: impl Into<SharedEvent>) {
        let event = event.into();
        match self.find(event.event_type()) {
            Ok(i) => self.0[i] = event,
            Err(i) => self.0.insert(i, event),
        }
    }

    /// The events, in type order (as kept: stored ones are not decoded).
    pub fn events(&self) -> impl Iterator<Item = &SharedEvent> {
        self.0.iter()
    }

    /// `(type, event)` in type order (stored events are decoded).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<EventData>)> {
        self.0.iter().map(|e| (e.event_type(), e.event()))
    }
}

impl<E: Into<SharedEvent>> FromIterator<E> for Seen {
    /// The last event of each type wins.
    fn from_iter<I: IntoIterator<Item = E>>(events: I) -> Seen {
        let mut seen = Seen::new();
        for e in events {
            seen.insert(e);
        }
        seen
    }
}

/// What an expression may refer to.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub event: &'a EventData,
    /// `seen[type]`: the last tracked event of each type for this key.
    pub seen: Option<&'a Seen>,
    /// `start`: the start event of a duration.
    pub start: Option<&'a EventData>,
}

impl<'a> Scope<'a> {
    pub fn event(event: &'a EventData) -> Self {
        Scope {
            event,
            seen: None,
            start: None,
        }
    }
}

/// The result of an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    String(String),
    /// Unix nanoseconds.
    Timestamp(i64),
    /// Nanoseconds.
    Duration(i64),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("no such field: {0}")]
    NoSuchField(String),
    #[error("expected {expected}, got {actual}")]
    Type { expected: &'static str, actual: String },
    #[error("{0}")]
    Cel(String),
}

/// Why an expression does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub message: String,
    /// 1-based column in the expression, when known.
    pub column: Option<usize>,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "{} (column {c} of the expression)", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for CompileError {}

/// A compiled expression. Cheap to clone.
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    compiled: Compiled,
    /// See [`Expr::names_start`].
    names_start: bool,
    /// The definitions file line it was read from (0: not from a file).
    line: usize,
}

/// Shows the source, not the compiled program.
impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expr").field(&&*self.source).finish()
    }
}

#[derive(Clone)]
enum Compiled {
    /// A plain field path, read straight from the event.
    Path(Arc<FieldPath>),
    /// The CEL subset evaluated natively, with the interpreter's semantics.
    Native(Arc<NativeProgram>),
    /// Anything else, compiled once for the CEL interpreter.
    Cel(Arc<CelProgram>),
}

impl Expr {
    /// Compiles `source`: a plain field path (`event.data.order_id`,
    /// `seen['order.placed'].data.total`, `start.data.channel`, `event.metadata.k`)
    /// takes the fast path; other expressions are checked by the CEL compiler and,
    /// when all of an expression is in the native subset (operators, `has`, `in`,
    /// `size`, `timestamp`, `duration` of a literal, `startsWith`, `endsWith`,
    /// `contains`), evaluated natively; anything else by the CEL interpreter.
    ///
    /// ```
    /// use opsflow_definitions::{EventData, Expr, Scope, Value};
    ///
    /// let event = EventData {
    ///     event_type: "order.placed".into(),
    ///     data: serde_json::json!({"order_id": "PO-1", "total": 12500.5}).into(),
    ///     ..EventData::default()
    /// };
    /// let key = Expr::compile("event.data.order_id").unwrap();
    /// assert_eq!(key.eval_string(&Scope::event(&event)).unwrap(), "PO-1");
    /// let large = Expr::compile("event.data.total > 10000").unwrap();
    /// assert!(large.eval_bool(&Scope::event(&event)));
    /// assert_eq!(large.eval(&Scope::event(&event)), Ok(Value::Bool(true)));
    /// ```
    pub fn compile(source: &str) -> Result<Expr, CompileError> {
        if source.trim().is_empty() {
            return Err(CompileError {
                message: "the expression is empty".into(),
                column: None,
            });
        }
        let names_start;
        let compiled = match FieldPath::parse(source) {
            Ok(Some(path)) => {
                names_start = path.is_of_start();
                Compiled::Path(Arc::new(path))
            }
            Ok(None) => {
                let program = CelProgram::compile(source)?;
                names_start = program.names_start;
                path::check_fields(program.program.expression(), source).map_err(|e| CompileError {
                    message: e.message,
                    column: Some(e.column),
                })?;
                match NativeProgram::build(&program.program) {
                    Some(native) => Compiled::Native(Arc::new(native)),
                    None => Compiled::Cel(Arc::new(program)),
                }
            }
            Err(e) => {
                return Err(CompileError {
                    message: e.message,
                    column: Some(e.column),
                });
            }
        };
        Ok(Expr {
            source: source.into(),
            compiled,
            names_start,
            line: 0,
        })
    }

    /// `source` compiled for the CEL interpreter alone, whatever it is: what the
    /// native path is tested against.
    #[cfg(test)]
    pub(crate) fn interpreted(source: &str) -> Result<Expr, CompileError> {
        let program = CelProgram::compile(source)?;
        Ok(Expr {
            source: source.into(),
            names_start: program.names_start,
            compiled: Compiled::Cel(Arc::new(program)),
            line: 0,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The definitions file line it was read from, when it was read from one.
    pub fn line(&self) -> Option<usize> {
        (self.line > 0).then_some(self.line)
    }

    /// The same expression, read from `line` of a definitions file.
    pub(crate) fn at_line(mut self, line: usize) -> Expr {
        self.line = line;
        self
    }

    /// Whether this is a plain field path, evaluated without the CEL interpreter.
    pub fn is_field_path(&self) -> bool {
        matches!(self.compiled, Compiled::Path(_))
    }

    /// Whether this is evaluated without the CEL interpreter: a plain field path or
    /// an expression in the native subset.
    pub fn is_native(&self) -> bool {
        !matches!(self.compiled, Compiled::Cel(_))
    }

    /// Whether the expression names `start`, the start event of a duration KPI
    /// (which only a duration KPI's `end` condition and `group_by` have). Not when
    /// `start` may be a comprehension's own variable.
    pub fn names_start(&self) -> bool {
        self.names_start
    }

    /// What the expression reads of the event being applied and of the kept events
    /// (see [`Reads`]); everything when that cannot be narrowed.
    pub fn reads(&self) -> Reads {
        let mut reads = Reads::default();
        match &self.compiled {
            Compiled::Path(path) => path.reads(&mut reads),
            Compiled::Native(program) => program.reads(&mut reads),
            Compiled::Cel(_) => reads = Reads::everything(),
        }
        reads
    }

    pub fn eval(&self, scope: &Scope<'_>) -> Result<Value, EvalError> {
        match &self.compiled {
            Compiled::Path(path) => path.eval(scope),
            Compiled::Native(program) => program.eval(scope),
            Compiled::Cel(program) => program.eval(scope),
        }
    }

    /// A condition: anything but `true` (including an error) is false.
    pub fn eval_bool(&self, scope: &Scope<'_>) -> bool {
        self.eval_condition(scope) == Some(true)
    }

    /// A condition that may fail: `None` when it does not evaluate (a missing field,
    /// a type error) or evaluates to something other than a bool.
    pub fn eval_condition(&self, scope: &Scope<'_>) -> Option<bool> {
        match &self.compiled {
            Compiled::Native(program) => program.eval_condition(scope),
            _ => match self.eval(scope) {
                Ok(Value::Bool(b)) => Some(b),
                _ => None,
            },
        }
    }

    /// A key or group value: strings as they are, numbers and bools printed.
    pub fn eval_string(&self, scope: &Scope<'_>) -> Result<String, EvalError> {
        match self.eval(scope)? {
            Value::String(s) => Ok(s),
            Value::Int(i) => Ok(i.to_string()),
            Value::Uint(u) => Ok(u.to_string()),
            Value::Float(f) => Ok(f.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(EvalError::Type {
                expected: "a string, number or bool",
                actual: format!("{other:?}"),
            }),
        }
    }

    /// [`Expr::eval_string`], borrowed from the event when the expression is a plain
    /// path to a string (keys are evaluated for every event: no copy to look one up).
    pub fn eval_str<'a>(&self, scope: &Scope<'a>) -> Result<Cow<'a, str>, EvalError> {
        if let Compiled::Path(path) = &self.compiled
            && let Some(s) = path.eval_str(scope)?
        {
            return Ok(Cow::Borrowed(s));
        }
        self.eval_string(scope).map(Cow::Owned)
    }

    /// A number (durations as seconds).
    pub fn eval_f64(&self, scope: &Scope<'_>) -> Result<f64, EvalError> {
        match self.eval(scope)? {
            Value::Int(i) => Ok(i as f64),
            Value::Uint(u) => Ok(u as f64),
            Value::Float(f) => Ok(f),
            Value::Duration(n) => Ok(n as f64 / 1e9),
            other => Err(EvalError::Type {
                expected: "a number",
                actual: format!("{other:?}"),
            }),
        }
    }
}
