//! Reading YAML nodes with their positions, collecting located errors.

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode, Node, Span};

use crate::error::CheckError;
use crate::{Expr, Match};

/// 1-based (line, column); (0, 0) when unknown.
pub(crate) type Loc = (usize, usize);

pub(crate) fn span_loc(span: &Span) -> Loc {
    span.start().map_or((0, 0), |m| (m.line(), m.column()))
}

/// Where a node starts. A block mapping's own mark is after its first key, so a
/// mapping is located at its first key.
pub(crate) fn node_loc(node: &Node) -> Loc {
    match node {
        Node::Mapping(m) => mapping_loc(m),
        other => span_loc(other.span()),
    }
}

pub(crate) fn mapping_loc(m: &MarkedMappingNode) -> Loc {
    m.keys()
        .next()
        .map_or_else(|| span_loc(m.span()), |k| span_loc(k.span()))
}

/// `~`, `null` and an empty plain scalar: written but without a value.
fn is_null(node: &Node) -> bool {
    node.as_scalar()
        .is_some_and(|s| s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL"))
}

/// "a list", "a mapping", "a string": for type errors.
pub(crate) fn describe(node: &Node) -> &'static str {
    match node {
        Node::Mapping(_) => "a mapping",
        Node::Sequence(_) => "a list",
        Node::Scalar(_) if is_null(node) => "null",
        Node::Scalar(_) => "a string",
    }
}

/// The syntax of KPI, control and label names.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The syntax of event types in matches: what the log records (dot-separated
/// tokens of `[A-Za-z0-9_-]`, at most 128 bytes), so any recorded type can be
/// measured.
pub(crate) fn valid_event_type(t: &str) -> bool {
    t.len() <= 128
        && t.split('.').all(|token| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        })
}

/// The extra fields a match may or must have where it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchExtra {
    /// `type`, `if`, `key`.
    None,
    /// ... and a required `value` (level `set`, `add`, `limit`).
    Value,
    /// ... and a required `actor` (separation of duties).
    Actor,
}

/// Collects the errors of one file while its definitions are read.
pub(crate) struct Checker<'f> {
    pub file: &'f str,
    pub errors: Vec<CheckError>,
    /// Whether expressions compiled now may name `start` (see [`Expr::names_start`]):
    /// a duration KPI's `end` condition and `group_by`.
    pub start_known: bool,
}

impl<'f> Checker<'f> {
    pub fn new(file: &'f str) -> Self {
        Checker {
            file,
            errors: Vec::new(),
            start_known: false,
        }
    }

    pub fn error(&mut self, loc: Loc, message: impl Into<String>) {
        self.errors.push(CheckError::at(self.file, loc, message));
    }

    /// A field's value, `None` when absent or null.
    pub fn get<'n>(&self, map: &'n MarkedMappingNode, key: &str) -> Option<&'n Node> {
        map.get_node(key).filter(|n| !is_null(n))
    }

    /// Reports every key of `map` that is not in `allowed`.
    pub fn unknown_fields(&mut self, map: &MarkedMappingNode, allowed: &[&str], what: &str) {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                self.error(
                    span_loc(key.span()),
                    format!(
                        "unknown field `{}` in {what} (allowed: {})",
                        key.as_str(),
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    pub fn missing(&mut self, map: &MarkedMappingNode, key: &str, what: &str) {
        self.error(mapping_loc(map), format!("missing required field `{key}` for {what}"));
    }

    pub fn wrong_type(&mut self, node: &Node, key: &str, expected: &str) {
        self.error(
            node_loc(node),
            format!("`{key}` must be {expected}, not {}", describe(node)),
        );
    }

    /// A scalar field; `None` (with an error) when it is a list or a mapping.
    pub fn scalar<'n>(&mut self, map: &'n MarkedMappingNode, key: &str) -> Option<&'n MarkedScalarNode> {
        let node = self.get(map, key)?;
        match node.as_scalar() {
            Some(s) => Some(s),
            None => {
                self.wrong_type(node, key, "a string");
                None
            }
        }
    }

    pub fn string(&mut self, map: &MarkedMappingNode, key: &str) -> Option<(String, Loc)> {
        self.scalar(map, key)
            .map(|s| (s.as_str().to_string(), span_loc(s.span())))
    }

    pub fn required_string(&mut self, map: &MarkedMappingNode, key: &str, what: &str) -> Option<(String, Loc)> {
        if self.get(map, key).is_none() {
            self.missing(map, key, what);
            return None;
        }
        self.string(map, key)
    }

    pub fn bool(&mut self, map: &MarkedMappingNode, key: &str) -> Option<bool> {
        let node = self.get(map, key)?;
        match node.as_scalar().and_then(|s| s.as_bool()) {
            Some(b) => Some(b),
            None => {
                self.wrong_type(node, key, "true or false");
                None
            }
        }
    }

    /// An expression field, compiled; compile errors are located at the expression.
    pub fn expr(&mut self, map: &MarkedMappingNode, key: &str) -> Option<Expr> {
        let scalar = self.scalar(map, key)?;
        self.compile(scalar, key)
    }

    pub fn required_expr(&mut self, map: &MarkedMappingNode, key: &str, what: &str) -> Option<Expr> {
        if self.get(map, key).is_none() {
            self.missing(map, key, what);
            return None;
        }
        self.expr(map, key)
    }

    pub fn compile(&mut self, scalar: &MarkedScalarNode, key: &str) -> Option<Expr> {
        match Expr::compile(scalar.as_str()) {
            Ok(e) if e.names_start() && !self.start_known => {
                self.error(
                    span_loc(scalar.span()),
                    format!(
                        "`{key}`: `start` is the start event of a duration KPI, known only in its `end` \
                         condition (`if`) and its `group_by`; here it never is, so `{}` could never evaluate",
                        scalar.as_str().split_whitespace().collect::<Vec<_>>().join(" ")
                    ),
                );
                None
            }
            Ok(e) => Some(e.at_line(span_loc(scalar.span()).0)),
            Err(e) => {
                self.error(
                    span_loc(scalar.span()),
                    format!(
                        "`{key}`: invalid expression `{}`: {e}",
                        scalar.as_str().split_whitespace().collect::<Vec<_>>().join(" ")
                    ),
                );
                None
            }
        }
    }

    /// An event type, checked for syntax.
    pub fn event_type(&mut self, node: &Node, key: &str) -> Option<String> {
        let Some(scalar) = node.as_scalar().filter(|_| !is_null(node)) else {
            self.wrong_type(node, key, "an event type");
            return None;
        };
        let t = scalar.as_str();
        if valid_event_type(t) {
            Some(t.to_string())
        } else {
            self.error(
                span_loc(scalar.span()),
                format!("`{key}`: invalid event type `{t}` (dot-separated words of letters, digits, `_` and `-`, at most 128 bytes, as the log records them)"),
            );
            None
        }
    }

    /// A list of event types (`track`, `close`); a single type is a list of one.
    pub fn event_types(&mut self, map: &MarkedMappingNode, key: &str) -> Vec<String> {
        let Some(node) = self.get(map, key) else {
            return Vec::new();
        };
        match node {
            Node::Sequence(items) => items.iter().filter_map(|n| self.event_type(n, key)).collect(),
            Node::Scalar(_) => self.event_type(node, key).into_iter().collect(),
            Node::Mapping(_) => {
                self.wrong_type(node, key, "a list of event types");
                Vec::new()
            }
        }
    }

    /// A match: `{ type: order.placed, if: "...", key: "..." }`, plus `value` or
    /// `actor` where the use requires one.
    pub fn match_node(&mut self, node: &Node, key: &str, extra: MatchExtra) -> Option<Match> {
        let Some(map) = node.as_mapping() else {
            self.wrong_type(node, key, "a match such as `{ type: order.placed }`");
            return None;
        };
        let allowed: &[&str] = match extra {
            MatchExtra::None => &["type", "if", "key"],
            MatchExtra::Value => &["type", "if", "key", "value"],
            MatchExtra::Actor => &["type", "if", "key", "actor"],
        };
        let before = self.errors.len();
        let what = format!("a match in `{key}`");
        self.unknown_fields(map, allowed, &what);
        let type_node = self.get(map, "type");
        let line = type_node.map_or_else(|| mapping_loc(map).0, |t| span_loc(t.span()).0);
        let event_type = match type_node {
            Some(t) => self.event_type(t, "type"),
            None => {
                self.error(
                    mapping_loc(map),
                    format!("a match in `{key}` needs a `type` (e.g. `{{ type: order.placed }}`)"),
                );
                None
            }
        };
        let condition = self.expr(map, "if");
        // Only a condition may read `start`.
        let start_known = std::mem::replace(&mut self.start_known, false);
        let match_key = self.expr(map, "key");
        let value = match extra {
            MatchExtra::Value => self.required_expr(map, "value", &what),
            _ => None,
        };
        let actor = match extra {
            MatchExtra::Actor => self.required_expr(map, "actor", &what),
            _ => None,
        };
        self.start_known = start_known;
        if self.errors.len() > before {
            return None;
        }
        Some(Match {
            event_type: event_type?,
            condition,
            key: match_key,
            value,
            actor,
            line,
        })
    }

    /// One required match.
    pub fn required_match(
        &mut self,
        map: &MarkedMappingNode,
        key: &str,
        what: &str,
        extra: MatchExtra,
    ) -> Option<Match> {
        match self.get(map, key) {
            Some(node) => self.match_node(node, key, extra),
            None => {
                self.missing(map, key, what);
                None
            }
        }
    }

    /// A list of matches; a single match is a list of one. Absent: empty.
    pub fn matches(&mut self, map: &MarkedMappingNode, key: &str, extra: MatchExtra) -> Vec<Match> {
        match self.get(map, key) {
            None => Vec::new(),
            Some(Node::Sequence(items)) => items.iter().filter_map(|n| self.match_node(n, key, extra)).collect(),
            Some(node) => self.match_node(node, key, extra).into_iter().collect(),
        }
    }
}
