//! Expressions over an event: simple field paths are evaluated directly, anything
//! else by the CEL interpreter.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

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
    /// the data is not JSON.
    pub data: serde_json::Value,
    pub metadata: BTreeMap<String, String>,
}

/// What an expression may refer to.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub event: &'a EventData,
    /// `seen[type]`: the last tracked event of each type for this key.
    pub seen: Option<&'a BTreeMap<String, Arc<EventData>>>,
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

/// A compiled expression. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Expr {
    source: Arc<str>,
    // The helper implementing CEL fills this in: a fast path for plain field paths
    // (`event.data.a.b`, `seen['t'].data.x`, `start.data.x`) and a compiled CEL program.
}

impl Expr {
    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn eval(&self, _scope: &Scope<'_>) -> Result<Value, EvalError> {
        Err(EvalError::Cel("not implemented".into()))
    }

    /// A condition: anything but `true` (including an error) is false.
    pub fn eval_bool(&self, scope: &Scope<'_>) -> bool {
        matches!(self.eval(scope), Ok(Value::Bool(true)))
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
