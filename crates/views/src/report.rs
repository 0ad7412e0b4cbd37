//! What views report: plain values the runtime serves over gRPC/HTTP and as metrics.

use std::collections::BTreeMap;

use opsflow_definitions::{Comparison, KpiKind, Op, Target};
use serde::{Deserialize, Serialize};

use crate::time::{format_number, format_seconds};

/// Green/amber/red against a target; `None` without a target or without samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub enum Status {
    #[default]
    None,
    Green,
    Amber,
    Red,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::None => "none",
            Status::Green => "green",
            Status::Amber => "amber",
            Status::Red => "red",
        }
    }

    /// The status of `value` against `target`.
    pub fn of(target: Option<&Target>, value: Option<f64>) -> Status {
        match (target, value) {
            (Some(target), Some(x)) => {
                if target.green.holds(x) {
                    Status::Green
                } else if target.amber.is_some_and(|amber| amber.holds(x)) {
                    Status::Amber
                } else {
                    Status::Red
                }
            }
            _ => Status::None,
        }
    }
}

/// One KPI, every window and group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiReport {
    pub name: String,
    pub description: String,
    /// `duration`, `ratio`, `count`, `sum`, `level`, `open`.
    pub kind: String,
    pub definitions_version: String,
    pub position: u64,
    /// The view clock (Unix nanoseconds): the latest event time seen.
    pub clock: i64,
    /// The target as written, e.g. `p90 <= 72h` or `ratio >= 95%, amber >= 90%`.
    pub target: Option<String>,
    /// Whether the KPI keeps calendar days (`buckets: day`): values `day:YYYY-MM-DD`
    /// for the last [`crate::DAYS_KEPT`] days that have samples.
    pub calendar_days: bool,
    pub values: Vec<KpiValue>,
}

/// One window (or calendar day, or `now`) of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiValue {
    /// `1h`, `24h`, `7d`, `day:2026-11-21`, or `now` for levels and open counts.
    pub window: String,
    /// `""` for everything, `label=value,label2=value2` for a group, the key for a
    /// level, `state=...` for an open state.
    pub group: String,
    /// Durations in seconds, ratios as fractions.
    pub stats: BTreeMap<String, f64>,
    /// The headline stat (the first of the kind's stats) when there is one.
    pub headline: Option<f64>,
    pub status: Status,
}

/// One compliance control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlReport {
    pub name: String,
    pub description: String,
    /// `requires`, `separation_of_duties`, `within`.
    pub kind: String,
    pub definitions_version: String,
    pub position: u64,
    pub clock: i64,
    /// Red with any violation, else amber with pending obligations, else green.
    pub status: Status,
    /// Checks made: `when` events, `second` events after a `first`, settled obligations.
    pub checked: u64,
    /// Exact, although only the newest violations are kept.
    pub violations_total: u64,
    /// The newest violations (at most 1,000), oldest first.
    pub violations: Vec<Violation>,
    /// Obligations not yet due, soonest first.
    pub pending: Vec<Obligation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub key: String,
    pub message: String,
    /// Positions of the evidence events, oldest first.
    pub evidence: Vec<u64>,
    /// Event time (Unix nanoseconds) at which it became a violation.
    pub at: i64,
    /// Position of the event that revealed it.
    pub position: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Obligation {
    pub key: String,
    /// Deadline, Unix nanoseconds of event time.
    pub due: i64,
    pub evidence: Vec<u64>,
}

fn is_duration_stat(kind: &KpiKind, stat: &str) -> bool {
    matches!(kind, KpiKind::Duration { .. }) && matches!(stat, "p50" | "p90" | "p99" | "mean")
}

fn comparison_text(kind: &KpiKind, stat: &str, comparison: &Comparison) -> String {
    let op = match comparison.op {
        Op::Le => "<=",
        Op::Lt => "<",
        Op::Ge => ">=",
        Op::Gt => ">",
    };
    let value = if is_duration_stat(kind, stat) {
        format_seconds(comparison.value)
    } else if stat == "ratio" || stat == "usage" {
        format!("{}%", format_number((comparison.value * 1e6).round() / 1e4))
    } else {
        format_number(comparison.value)
    };
    format!("{op} {value}")
}

/// `p90 <= 72h`, with `, amber <= 96h` when there is an amber band.
pub fn target_text(kind: &KpiKind, target: &Target) -> String {
    let mut text = format!("{} {}", target.stat, comparison_text(kind, &target.stat, &target.green));
    if let Some(amber) = &target.amber {
        text.push_str(", amber ");
        text.push_str(&comparison_text(kind, &target.stat, amber));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsflow_definitions::Match;

    fn target(stat: &str, green: (Op, f64), amber: Option<(Op, f64)>) -> Target {
        Target {
            stat: stat.into(),
            green: Comparison {
                op: green.0,
                value: green.1,
            },
            amber: amber.map(|(op, value)| Comparison { op, value }),
        }
    }

    #[test]
    fn statuses() {
        let t = target("p90", (Op::Le, 72.0 * 3600.0), Some((Op::Le, 96.0 * 3600.0)));
        assert_eq!(Status::of(Some(&t), Some(3600.0)), Status::Green);
        assert_eq!(Status::of(Some(&t), Some(80.0 * 3600.0)), Status::Amber);
        assert_eq!(Status::of(Some(&t), Some(100.0 * 3600.0)), Status::Red);
        assert_eq!(Status::of(Some(&t), None), Status::None);
        assert_eq!(Status::of(None, Some(1.0)), Status::None);
        assert_eq!(Status::Amber.as_str(), "amber");
    }

    #[test]
    fn target_texts() {
        let m = Match {
            event_type: "x".into(),
            condition: None,
            key: None,
            value: None,
            actor: None,
            line: 0,
        };
        let duration = KpiKind::Duration {
            start: m.clone(),
            end: m.clone(),
        };
        let t = target("p90", (Op::Le, 72.0 * 3600.0), Some((Op::Le, 96.0 * 3600.0)));
        assert_eq!(target_text(&duration, &t), "p90 <= 72h, amber <= 96h");
        let count = KpiKind::Count { on: m };
        assert_eq!(target_text(&count, &target("count", (Op::Lt, 5.0), None)), "count < 5");
    }
}
