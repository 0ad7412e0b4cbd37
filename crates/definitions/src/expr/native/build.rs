//! From the `cel` crate's AST to a native [`Node`] tree, or `None` for anything
//! outside the native subset.

use std::sync::Arc;

use cel::common::ast::{CallExpr, Expr as Ast, LiteralValue, operators};
use cel::{Context, IdedExpr};

use super::{Arith, Literal, Node, Order, Root, StringFn};
use crate::expr::cel::{ENV, eval_error};

/// The native form of `expr`; `None` when any part of it is outside the subset.
pub(super) fn node(expr: &IdedExpr) -> Option<Node> {
    match &expr.expr {
        Ast::Literal(l) => Some(Node::Literal(literal(l)?)),
        Ast::Ident(name) => {
            let root = match name.as_str() {
                "event" => Root::Event,
                "seen" => Root::Seen,
                "start" => Root::Start,
                _ => return None,
            };
            Some(Node::Path(root, Box::new([])))
        }
        Ast::Select(select) => {
            let operand = node(&select.operand)?;
            let field: Box<str> = select.field.as_str().into();
            Some(if select.test {
                Node::Has(Box::new(operand), field)
            } else {
                key_of(operand, field, |operand, field| Node::Select(Box::new(operand), field))
            })
        }
        Ast::List(list) if list.optional_indices.is_empty() => {
            let literals: Option<Box<[Literal]>> = list
                .elements
                .iter()
                .map(|e| match &e.expr {
                    Ast::Literal(l) => literal(l),
                    _ => None,
                })
                .collect();
            match literals {
                Some(literals) => Some(Node::LiteralList(literals)),
                None => Some(Node::List(list.elements.iter().map(node).collect::<Option<_>>()?)),
            }
        }
        Ast::Call(call) => self::call(expr, call),
        _ => None,
    }
}

/// `operand.key` or `operand['key']`: one more key of a path, or `otherwise`.
fn key_of(operand: Node, key: Box<str>, otherwise: impl FnOnce(Node, Box<str>) -> Node) -> Node {
    match operand {
        Node::Path(root, keys) => {
            let mut keys = keys.into_vec();
            keys.push(key);
            Node::Path(root, keys.into_boxed_slice())
        }
        operand => otherwise(operand, key),
    }
}

fn literal(l: &LiteralValue) -> Option<Literal> {
    Some(match l {
        LiteralValue::Null => Literal::Null,
        LiteralValue::Boolean(b) => Literal::Bool(*b.inner()),
        LiteralValue::Int(i) => Literal::Int(*i.inner()),
        LiteralValue::UInt(u) => Literal::Uint(*u.inner()),
        LiteralValue::Double(d) => Literal::Double(*d.inner()),
        LiteralValue::String(s) => Literal::String(s.inner().into()),
        LiteralValue::Bytes(_) => return None,
    })
}

fn call(expr: &IdedExpr, call: &CallExpr) -> Option<Node> {
    let boxed = |e: &IdedExpr| node(e).map(Box::new);
    if let Some(target) = &call.target {
        let function = match (call.func_name.as_str(), call.args.as_slice()) {
            ("size", []) => return Some(Node::Size(boxed(target)?)),
            ("startsWith", [_]) => StringFn::StartsWith,
            ("endsWith", [_]) => StringFn::EndsWith,
            ("contains", [_]) => StringFn::Contains,
            _ => return None,
        };
        return Some(Node::String(function, boxed(target)?, boxed(&call.args[0])?));
    }
    match (call.func_name.as_str(), call.args.as_slice()) {
        (operators::CONDITIONAL, [c, t, o]) => Some(Node::Conditional(Box::new([node(c)?, node(t)?, node(o)?]))),
        (operators::LOGICAL_AND, [l, r]) => Some(Node::And(boxed(l)?, boxed(r)?)),
        (operators::LOGICAL_OR, [l, r]) => Some(Node::Or(boxed(l)?, boxed(r)?)),
        (operators::EQUALS, [l, r]) => Some(Node::Equals(boxed(l)?, boxed(r)?)),
        (operators::NOT_EQUALS, [l, r]) => Some(Node::NotEquals(boxed(l)?, boxed(r)?)),
        (operators::INDEX, [l, r]) => match (node(l)?, node(r)?) {
            (operand, Node::Literal(Literal::String(key))) => Some(key_of(operand, key, |operand, key| {
                Node::Index(Box::new(operand), Box::new(Node::Literal(Literal::String(key))))
            })),
            (operand, index) => Some(Node::Index(Box::new(operand), Box::new(index))),
        },
        (operators::IN, [l, r]) => Some(Node::In(boxed(l)?, boxed(r)?)),
        (operators::LESS, [l, r]) => Some(Node::Order(Order::Lt, boxed(l)?, boxed(r)?)),
        (operators::LESS_EQUALS, [l, r]) => Some(Node::Order(Order::Le, boxed(l)?, boxed(r)?)),
        (operators::GREATER, [l, r]) => Some(Node::Order(Order::Gt, boxed(l)?, boxed(r)?)),
        (operators::GREATER_EQUALS, [l, r]) => Some(Node::Order(Order::Ge, boxed(l)?, boxed(r)?)),
        (operators::ADD, [l, r]) => Some(Node::Arith(Arith::Add, boxed(l)?, boxed(r)?)),
        (operators::SUBSTRACT, [l, r]) => Some(Node::Arith(Arith::Sub, boxed(l)?, boxed(r)?)),
        (operators::MULTIPLY, [l, r]) => Some(Node::Arith(Arith::Mul, boxed(l)?, boxed(r)?)),
        (operators::DIVIDE, [l, r]) => Some(Node::Arith(Arith::Div, boxed(l)?, boxed(r)?)),
        (operators::MODULO, [l, r]) => Some(Node::Arith(Arith::Rem, boxed(l)?, boxed(r)?)),
        (operators::LOGICAL_NOT, [x]) => Some(Node::Not(boxed(x)?)),
        (operators::NEGATE, [x]) => Some(Node::Negate(boxed(x)?)),
        ("size", [x]) => Some(Node::Size(boxed(x)?)),
        // Of a literal: evaluated now, by the interpreter itself, so the parsing of
        // timestamps and durations is the interpreter's to the letter.
        (
            "timestamp" | "duration",
            [
                IdedExpr {
                    expr: Ast::Literal(_), ..
                },
            ],
        ) => constant(expr),
        ("timestamp", [x]) => Some(Node::Timestamp(boxed(x)?)),
        _ => None,
    }
}

/// The value of a constant call, as the interpreter computes it; a constant that
/// fails is a node that fails the same way.
fn constant(expr: &IdedExpr) -> Option<Node> {
    let context = Context::with_env(Arc::clone(&ENV));
    match cel::Value::resolve(expr, &context) {
        Ok(cel::Value::Timestamp(t)) => Some(Node::Literal(Literal::Timestamp(t))),
        Ok(cel::Value::Duration(d)) => Some(Node::Literal(Literal::Duration(d))),
        Ok(_) => None,
        Err(e) => Some(Node::Fail(eval_error(e))),
    }
}
