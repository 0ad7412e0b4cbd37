//! One control definition.

use marked_yaml::types::Node;

use super::kpi::name_and_kind;
use super::quantity::parse_duration;
use super::yaml::{Checker, MatchExtra, describe, mapping_loc, node_loc};
use crate::version::fingerprint;
use crate::{ControlDef, ControlKind, Origin};

pub(crate) const KINDS: &[&str] = &["requires", "separation_of_duties", "within"];

const COMMON: &[&str] = &["name", "description", "kind", "key"];

fn kind_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "requires" => &["when", "requires", "track", "close"],
        "separation_of_duties" => &["first", "second", "close"],
        "within" => &["after", "expect", "within", "track", "close"],
        _ => &[],
    }
}

/// Reads one control; `None` when it has errors (all of them reported).
pub(crate) fn control(c: &mut Checker<'_>, node: &Node) -> Option<ControlDef> {
    let Some(map) = node.as_mapping() else {
        c.error(
            node_loc(node),
            format!(
                "a control must be a mapping with name, kind, ... (not {})",
                describe(node)
            ),
        );
        return None;
    };
    let before = c.errors.len();
    let (name, kind) = name_and_kind(c, map, "a control", KINDS);
    let kind = kind?;
    let what = format!("a {kind} control");
    let allowed: Vec<&str> = COMMON.iter().chain(kind_fields(&kind)).copied().collect();
    c.unknown_fields(map, &allowed, &what);

    let description = c.string(map, "description").map(|(d, _)| d).unwrap_or_default();
    let key = c.required_expr(map, "key", &what);
    let track = c.event_types(map, "track");
    let close = c.event_types(map, "close");
    let m = MatchExtra::None;
    let kind_def = match kind.as_str() {
        "requires" => {
            let when = c.required_match(map, "when", &what, m);
            let requires = c.required_match(map, "requires", &what, m);
            when.zip(requires)
                .map(|(when, requires)| ControlKind::Requires { when, requires })
        }
        "separation_of_duties" => {
            let first = c.required_match(map, "first", &what, MatchExtra::Actor);
            let second = c.required_match(map, "second", &what, MatchExtra::Actor);
            first
                .zip(second)
                .map(|(first, second)| ControlKind::SeparationOfDuties { first, second })
        }
        "within" => {
            let after = c.required_match(map, "after", &what, m);
            let expect = c.required_match(map, "expect", &what, m);
            let within = match c.get(map, "within") {
                None => {
                    c.missing(map, "within", &what);
                    None
                }
                Some(node) => match node.as_scalar() {
                    None => {
                        c.wrong_type(node, "within", "a duration such as 5d");
                        None
                    }
                    Some(s) => match parse_duration(s.as_str()) {
                        Ok(n) => Some(n),
                        Err(e) => {
                            c.error(node_loc(node), format!("`within`: {e}"));
                            None
                        }
                    },
                },
            };
            match (after, expect, within) {
                (Some(after), Some(expect), Some(within_nanos)) => Some(ControlKind::Within {
                    after,
                    expect,
                    within_nanos,
                }),
                _ => None,
            }
        }
        _ => None,
    };
    if c.errors.len() > before {
        return None;
    }
    Some(ControlDef {
        name: name?,
        description,
        origin: Origin {
            file: c.file.to_string(),
            line: mapping_loc(map).0,
        },
        key: key?,
        track,
        close,
        kind: kind_def?,
        fingerprint: fingerprint(node, &["description"]),
    })
}
