//! One KPI definition.

use marked_yaml::types::{MarkedMappingNode, Node};

use super::yaml::{Checker, MatchExtra, mapping_loc, node_loc, span_loc, valid_name};
use crate::model::kind_stats;
use crate::version::fingerprint;
use crate::{KpiDef, KpiKind, Origin};

pub(crate) const KINDS: &[&str] = &["duration", "ratio", "count", "sum", "level", "open"];

const COMMON: &[&str] = &["name", "description", "kind", "group_by", "target"];

/// The fields a KPI of `kind` may have besides [`COMMON`].
fn kind_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "duration" => &["key", "start", "end", "close", "track", "windows", "buckets"],
        "ratio" => &["key", "on", "good", "keep", "track", "close", "windows", "buckets"],
        "count" => &["on", "windows", "buckets"],
        "sum" => &["on", "value", "windows", "buckets"],
        "level" => &["key", "set", "add", "limit"],
        "open" => &["key", "open", "close", "state", "track"],
        _ => &[],
    }
}

fn windowed(kind: &str) -> bool {
    matches!(kind, "duration" | "ratio" | "count" | "sum")
}

/// Reads the definition's `name` (checked for syntax) and `kind` (checked against
/// `kinds`), shared by KPIs and controls.
pub(crate) fn name_and_kind(
    c: &mut Checker<'_>,
    map: &MarkedMappingNode,
    what: &str,
    kinds: &[&str],
) -> (Option<String>, Option<String>) {
    let name = c.required_string(map, "name", what).and_then(|(name, loc)| {
        if valid_name(&name) {
            Some(name)
        } else {
            c.error(
                loc,
                format!("invalid name `{name}`: use lowercase letters, digits and `_`, starting with a letter, at most 64 characters"),
            );
            None
        }
    });
    let kind = c.required_string(map, "kind", what).and_then(|(kind, loc)| {
        if kinds.contains(&kind.as_str()) {
            Some(kind)
        } else {
            c.error(
                loc,
                format!("unknown kind `{kind}` (valid kinds: {})", kinds.join(", ")),
            );
            None
        }
    });
    (name, kind)
}

/// Reads one KPI; `None` when it has errors (all of them reported).
pub(crate) fn kpi(c: &mut Checker<'_>, node: &Node) -> Option<KpiDef> {
    let Some(map) = node.as_mapping() else {
        c.error(
            node_loc(node),
            format!(
                "a KPI must be a mapping with name, kind, ... (not {})",
                super::yaml::describe(node)
            ),
        );
        return None;
    };
    let before = c.errors.len();
    let (name, kind) = name_and_kind(c, map, "a KPI", KINDS);
    let kind = kind?;
    let what = a_kpi(&kind);
    let allowed: Vec<&str> = COMMON.iter().chain(kind_fields(&kind)).copied().collect();
    c.unknown_fields(map, &allowed, &what);

    let description = c.string(map, "description").map(|(d, _)| d).unwrap_or_default();
    let key = match kind.as_str() {
        "duration" | "level" | "open" => c.required_expr(map, "key", &what),
        "ratio" => c.expr(map, "key"),
        _ => None,
    };
    c.start_known = kind == "duration";
    let group_by = group_by(c, map, &kind);
    c.start_known = false;
    let track = c.event_types(map, "track");
    let close = c.event_types(map, "close");
    let (windows, buckets) = if windowed(&kind) {
        (c.windows(map), c.buckets(map))
    } else {
        // Levels and open counts are current values: no windows, no calendar days.
        (Vec::new(), crate::Buckets::None)
    };
    let target = c.target(map, &kind, kind_stats(&kind));

    let m = MatchExtra::None;
    let kind_def = match kind.as_str() {
        "duration" => {
            let start = c.required_match(map, "start", &what, m);
            c.start_known = true;
            let end = c.required_match(map, "end", &what, m);
            c.start_known = false;
            start.zip(end).map(|(start, end)| KpiKind::Duration { start, end })
        }
        "ratio" => {
            if key.is_none() {
                for field in ["track", "close", "keep"] {
                    if let Some(n) = c.get(map, field) {
                        c.error(node_loc(n), format!("`{field}` needs a `key`: state is kept per key"));
                    }
                }
            }
            let on = c.required_match(map, "on", &what, m);
            let good = c.required_expr(map, "good", &what);
            let keep = c.bool(map, "keep").unwrap_or(false);
            on.zip(good).map(|(on, good)| KpiKind::Ratio { on, good, keep })
        }
        "count" => c.required_match(map, "on", &what, m).map(|on| KpiKind::Count { on }),
        "sum" => {
            let on = c.required_match(map, "on", &what, m);
            let value = c.required_expr(map, "value", &what);
            on.zip(value).map(|(on, value)| KpiKind::Sum { on, value })
        }
        "level" => {
            let set = c.matches(map, "set", MatchExtra::Value);
            let add = c.matches(map, "add", MatchExtra::Value);
            let limit = c.matches(map, "limit", MatchExtra::Value);
            if c.get(map, "set").is_none() && c.get(map, "add").is_none() {
                c.error(mapping_loc(map), format!("{what} needs `set` or `add` (or both)"));
            }
            Some(KpiKind::Level { set, add, limit })
        }
        "open" => {
            if c.get(map, "open").is_none() {
                c.missing(map, "open", &what);
            }
            if c.get(map, "close").is_none() {
                c.missing(map, "close", &what);
            }
            let open = c.matches(map, "open", m);
            let state = c.expr(map, "state");
            Some(KpiKind::Open { open, state })
        }
        _ => None,
    };
    if c.errors.len() > before {
        return None;
    }
    Some(KpiDef {
        name: name?,
        description,
        origin: Origin {
            file: c.file.to_string(),
            line: mapping_loc(map).0,
        },
        kind: kind_def?,
        key,
        group_by,
        track,
        close,
        windows,
        buckets,
        target,
        // A target (and the description) only colours reports: changing it keeps
        // the view's state.
        fingerprint: fingerprint(node, &["description", "target"]),
    })
}

/// `group_by: { label: expression }`, in file order.
fn group_by(c: &mut Checker<'_>, map: &MarkedMappingNode, kind: &str) -> Vec<(String, crate::Expr)> {
    let Some(node) = c.get(map, "group_by") else {
        return Vec::new();
    };
    let Some(labels) = node.as_mapping() else {
        c.wrong_type(node, "group_by", "a mapping of label to expression");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (label, expr) in labels.iter() {
        if !valid_name(label.as_str()) {
            c.error(
                span_loc(label.span()),
                format!(
                    "invalid group label `{}`: use lowercase letters, digits and `_`, starting with a letter",
                    label.as_str()
                ),
            );
            continue;
        }
        if kind == "open" && label.as_str() == "state" {
            c.error(
                span_loc(label.span()),
                "group label `state` is taken: an open KPI reports its counts by state as `state=...`; \
                 name the label otherwise",
            );
            continue;
        }
        let Some(scalar) = expr.as_scalar() else {
            c.wrong_type(expr, label.as_str(), "an expression");
            continue;
        };
        if let Some(e) = c.compile(scalar, label.as_str()) {
            out.push((label.as_str().to_string(), e));
        }
    }
    out
}

/// `a count KPI`, `an open KPI`: how errors name a KPI of `kind`.
pub(crate) fn a_kpi(kind: &str) -> String {
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind} KPI")
}
