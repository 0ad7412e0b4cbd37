//! The native path: the subset of CEL that definitions use, compiled from the `cel`
//! crate's own AST into a tree evaluated straight over the event, without
//! converting the event, `seen` and `start` into CEL values on every call.
//!
//! Native: field selection (`event.data.x`, `seen['t'].time`, `start.data.y`) and
//! indexing (`m['k']`, `list[0]`), literals (int, uint, double, string, bool, null,
//! lists), `!` and unary `-`, `== != < <= > >= && || + - * / %`, `?:`, `has()`,
//! `in` (list membership, map keys), `size()`, `timestamp()`, `duration()` of a
//! literal, and `startsWith`, `endsWith` and `contains` on strings. Anything else
//! (comprehensions, map literals, other functions, type names...) makes
//! [`NativeProgram::build`] decline the whole expression, which is then left to the
//! interpreter.
//!
//! Semantics are the interpreter's, quirks included; `differential.rs` checks the
//! two against each other over every expression of the definitions and random events.

mod build;
#[cfg(test)]
mod differential;
mod value;
mod walk;

use std::borrow::Cow;

use self::value::{Failure, Kind, List, Literal, Outcome, ScalarKey, V};
use self::walk::Root;
use super::{EvalError, Reads, Scope, Value};

/// An expression compiled for native evaluation.
#[derive(Debug)]
pub(crate) struct NativeProgram {
    root: Node,
}

impl NativeProgram {
    /// The native form of a compiled CEL program, if all of it is in the native subset.
    pub(crate) fn build(program: &cel::Program) -> Option<NativeProgram> {
        build::node(program.expression()).map(|root| NativeProgram { root })
    }

    pub(crate) fn eval(&self, scope: &Scope<'_>) -> Result<Value, EvalError> {
        self.root
            .eval(scope)
            .and_then(V::into_value)
            .map_err(Failure::into_eval_error)
    }

    /// The bool the expression evaluates to, `None` when it fails or is not a bool;
    /// without building a [`Value`].
    pub(crate) fn eval_condition(&self, scope: &Scope<'_>) -> Option<bool> {
        match self.root.eval(scope) {
            Ok(V::Bool(b)) => Some(b),
            _ => None,
        }
    }

    /// Adds what the expression reads to `reads`.
    pub(crate) fn reads(&self, reads: &mut Reads) {
        self.root.reads(reads);
    }
}

/// A string function called as a method: `s.startsWith(t)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StringFn {
    StartsWith,
    EndsWith,
    Contains,
}

impl StringFn {
    fn name(self) -> &'static str {
        match self {
            StringFn::StartsWith => "startsWith",
            StringFn::EndsWith => "endsWith",
            StringFn::Contains => "contains",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Order {
    fn function(self) -> &'static str {
        match self {
            Order::Lt => "_<_",
            Order::Le => "_<=_",
            Order::Gt => "_>_",
            Order::Ge => "_>=_",
        }
    }
}

/// One node of a compiled expression. Operands are evaluated in the order the
/// interpreter evaluates them, so that when both fail, the same failure wins.
#[derive(Debug)]
enum Node {
    Literal(Literal),
    /// A list literal of literals: borrowed, never built.
    LiteralList(Box<[Literal]>),
    List(Box<[Node]>),
    /// A constant that always fails (`duration('soon')`).
    Fail(EvalError),
    /// `event`, `seen` or `start`, then map keys: `.key` or `['key']`.
    Path(Root, Box<[Box<str>]>),
    /// `operand.field`, for an operand that is not a path.
    Select(Box<Node>, Box<str>),
    /// `has(operand.field)`
    Has(Box<Node>, Box<str>),
    /// `operand[index]`
    Index(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Negate(Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    Order(Order, Box<Node>, Box<Node>),
    Equals(Box<Node>, Box<Node>),
    NotEquals(Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Conditional(Box<[Node; 3]>),
    In(Box<Node>, Box<Node>),
    Size(Box<Node>),
    Timestamp(Box<Node>),
    /// `target.function(arg)`
    String(StringFn, Box<Node>, Box<Node>),
}

impl Node {
    fn reads(&self, r: &mut Reads) {
        match self {
            Node::Literal(_) | Node::LiteralList(_) | Node::Fail(_) => {}
            Node::List(items) => items.iter().for_each(|n| n.reads(r)),
            Node::Path(root, keys) => path_reads(*root, keys, r),
            Node::Has(operand, field) => match &**operand {
                Node::Path(root, keys) => {
                    let mut keys: Vec<&str> = keys.iter().map(|k| &**k).collect();
                    keys.push(field);
                    path_reads(*root, &keys, r);
                }
                other => other.reads(r),
            },
            // `'t' in seen` asks only which types were seen.
            Node::In(lhs, rhs) => {
                lhs.reads(r);
                if matches!(&**rhs, Node::Path(Root::Seen, keys) if keys.is_empty()) {
                    r.seen_types(match &**lhs {
                        Node::Literal(Literal::String(t)) => Some(t),
                        _ => None,
                    });
                } else {
                    rhs.reads(r);
                }
            }
            Node::Select(operand, _)
            | Node::Not(operand)
            | Node::Negate(operand)
            | Node::Size(operand)
            | Node::Timestamp(operand) => operand.reads(r),
            Node::Index(a, b)
            | Node::Arith(_, a, b)
            | Node::Order(_, a, b)
            | Node::Equals(a, b)
            | Node::NotEquals(a, b)
            | Node::And(a, b)
            | Node::Or(a, b)
            | Node::String(_, a, b) => {
                a.reads(r);
                b.reads(r);
            }
            Node::Conditional(parts) => parts.iter().for_each(|n| n.reads(r)),
        }
    }

    fn eval<'a>(&'a self, scope: &Scope<'a>) -> Outcome<'a> {
        match self {
            Node::Literal(l) => Ok(V::from_literal(l)),
            Node::LiteralList(items) => Ok(V::List(List::Literal(items))),
            Node::List(items) => Ok(V::List(List::Owned(
                items.iter().map(|i| i.eval(scope)).collect::<Result<_, _>>()?,
            ))),
            Node::Fail(e) => Err(Failure::Constant(e)),
            Node::Path(root, keys) => walk::walk(*root, keys, scope),
            Node::Select(operand, field) => match operand.eval(scope)? {
                V::Map(m) => m.get(field).ok_or(Failure::NoSuchKey(field)),
                other => Err(walk::no_fields(other.kind())),
            },
            Node::Has(operand, field) => match operand.eval(scope)? {
                V::Map(m) => Ok(V::Bool(m.contains(field))),
                other => Err(walk::no_fields(other.kind())),
            },
            Node::Index(operand, index) => {
                let operand = operand.eval(scope)?;
                let index = index.eval(scope)?;
                self::index(operand, index)
            }
            Node::Not(operand) => match operand.eval(scope)? {
                V::Bool(b) => Ok(V::Bool(!b)),
                other => Err(Failure::no_unary_overload("!_", &other)),
            },
            Node::Negate(operand) => value::negate(operand.eval(scope)?),
            Node::Arith(op, lhs, rhs) => {
                let lhs = lhs.eval(scope)?;
                let rhs = rhs.eval(scope)?;
                match op {
                    Arith::Add => value::add(lhs, rhs),
                    Arith::Sub => value::sub(lhs, rhs),
                    Arith::Mul => value::mul(lhs, rhs),
                    Arith::Div => value::div(lhs, rhs),
                    Arith::Rem => value::rem(lhs, rhs),
                }
            }
            Node::Order(op, lhs, rhs) => {
                let lhs = lhs.eval(scope)?;
                let rhs = rhs.eval(scope)?;
                let ordering = value::compare(op.function(), &lhs, &rhs)?;
                Ok(V::Bool(match op {
                    Order::Lt => ordering.is_lt(),
                    Order::Le => ordering.is_le(),
                    Order::Gt => ordering.is_gt(),
                    Order::Ge => ordering.is_ge(),
                }))
            }
            Node::Equals(lhs, rhs) => {
                let lhs = lhs.eval(scope)?;
                Ok(V::Bool(value::equals(&lhs, &rhs.eval(scope)?)))
            }
            Node::NotEquals(lhs, rhs) => {
                let lhs = lhs.eval(scope)?;
                Ok(V::Bool(!value::equals(&lhs, &rhs.eval(scope)?)))
            }
            Node::And(lhs, rhs) => logical("_&&_", false, lhs, rhs, scope),
            Node::Or(lhs, rhs) => logical("_||_", true, lhs, rhs, scope),
            Node::Conditional(parts) => {
                let [condition, then, otherwise] = &**parts;
                if condition.eval(scope).and_then(truth)? {
                    then.eval(scope)
                } else {
                    otherwise.eval(scope)
                }
            }
            Node::In(lhs, rhs) => {
                let lhs = lhs.eval(scope)?;
                let rhs = rhs.eval(scope)?;
                contains(rhs, lhs)
            }
            Node::Size(operand) => value::size(operand.eval(scope)?),
            Node::Timestamp(operand) => value::to_timestamp(operand.eval(scope)?),
            Node::String(function, target, arg) => {
                // A method's arguments are evaluated before its target.
                let arg = arg.eval(scope)?;
                let target = target.eval(scope)?;
                match (&target, &arg) {
                    (V::Str(s), V::Str(t)) => Ok(V::Bool(match function {
                        StringFn::StartsWith => s.starts_with(&**t),
                        StringFn::EndsWith => s.ends_with(&**t),
                        StringFn::Contains => s.contains(&**t),
                    })),
                    _ => Err(Failure::no_overload(function.name(), &target, &arg)),
                }
            }
        }
    }
}

/// A condition's truth: anything but a bool fails.
fn truth(v: V<'_>) -> Result<bool, Failure<'_>> {
    match v {
        V::Bool(b) => Ok(b),
        other => Err(Failure::NotBool(other.kind())),
    }
}

/// `&&` (`absorbing` false) and `||` (`absorbing` true), commutative for errors as
/// CEL requires: `error && false` is false, like `false && error`. When neither
/// side decides, the right side's failure wins, then the left side's.
fn logical<'a>(
    function: &'static str,
    absorbing: bool,
    lhs: &'a Node,
    rhs: &'a Node,
    scope: &Scope<'a>,
) -> Outcome<'a> {
    let left = lhs.eval(scope).and_then(truth);
    if matches!(left, Ok(b) if b == absorbing) {
        return Ok(V::Bool(absorbing));
    }
    let right = rhs.eval(scope)?;
    match (left, right) {
        (Ok(_), V::Bool(r)) => Ok(V::Bool(r)),
        (Err(_), V::Bool(r)) if r == absorbing => Ok(V::Bool(absorbing)),
        (Err(Failure::NotBool(got)), right) => Err(Failure::NoOverload {
            function,
            types: [Some(got), Some(right.kind())],
        }),
        (Err(e), _) => Err(e),
        (Ok(_), right) => Err(Failure::NoOverload {
            function,
            types: [Some(Kind::Bool), Some(right.kind())],
        }),
    }
}

/// `operand[index]`: a map by key, a list by position.
fn index<'a>(operand: V<'a>, index: V<'a>) -> Outcome<'a> {
    match (operand, index) {
        (V::Map(m), V::Str(key)) => match m.get(&key) {
            Some(v) => Ok(v),
            None => Err(match key {
                Cow::Borrowed(key) => Failure::NoSuchKey(key),
                Cow::Owned(key) => Failure::NoSuchBuiltKey(key.into()),
            }),
        },
        // Every map here has string keys: other keys a map may have are missing.
        (V::Map(_), V::Int(i)) => Err(Failure::NoSuchScalarKey(ScalarKey::Int(i))),
        (V::Map(_), V::Uint(u)) => Err(Failure::NoSuchScalarKey(ScalarKey::Uint(u))),
        (V::Map(_), V::Double(d)) => Err(Failure::NoSuchScalarKey(ScalarKey::Double(d))),
        (V::Map(_), V::Bool(b)) => Err(Failure::NoSuchScalarKey(ScalarKey::Bool(b))),
        (V::List(l), index) => {
            let position = match index {
                V::Int(i) => usize::try_from(i).map_err(|_| Failure::IndexOutOfBounds)?,
                V::Uint(u) => usize::try_from(u).map_err(|_| Failure::IndexOutOfBounds)?,
                V::Double(d) => {
                    let i = whole(d).ok_or(Failure::FractionalIndex)?;
                    usize::try_from(i).map_err(|_| Failure::IndexOutOfBounds)?
                }
                other => return Err(Failure::no_overload("_[_]", &V::List(l), &other)),
            };
            l.get(position).ok_or(Failure::IndexOutOfBounds)
        }
        (operand, index) => Err(Failure::no_overload("_[_]", &operand, &index)),
    }
}

/// `d` as an `i64` if it is a whole number in range (as the interpreter indexes).
fn whole(d: f64) -> Option<i64> {
    if d > i64::MIN as f64 && d < i64::MAX as f64 {
        let i = d as i64;
        (i as f64 == d).then_some(i)
    } else {
        None
    }
}

/// `item in container`: list membership by CEL equality, or a map key.
fn contains<'a>(container: V<'a>, item: V<'a>) -> Outcome<'a> {
    match (&container, &item) {
        (V::List(l), _) => Ok(V::Bool(l.iter().any(|v| value::equals(&v, &item)))),
        (V::Map(m), V::Str(key)) => Ok(V::Bool(m.contains(key))),
        // A key of another type a map may have: never one of these string-keyed maps.
        (V::Map(_), V::Int(_) | V::Uint(_) | V::Double(_) | V::Bool(_)) => Ok(V::Bool(false)),
        _ => Err(Failure::no_overload("@in", &item, &container)),
    }
}

fn path_reads<S: AsRef<str>>(root: Root, keys: &[S], r: &mut Reads) {
    match root {
        Root::Event => r.event_path(keys),
        Root::Start => r.start_path(keys),
        Root::Seen => r.seen_path(keys),
    }
}
