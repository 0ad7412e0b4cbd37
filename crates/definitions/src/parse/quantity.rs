//! Durations, windows and targets.

use marked_yaml::types::{MarkedMappingNode, Node};

use super::yaml::{Checker, node_loc, span_loc};
use crate::{Buckets, Comparison, Op, Target, Window};

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// `72h`, `5d`, `30m`, `1h30m`: in nanoseconds, greater than zero.
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration `{s}`: {e} (write e.g. 30m, 72h, 5d)"))?;
    let nanos = i64::try_from(d.as_nanos()).map_err(|_| format!("duration `{s}` is too long"))?;
    if nanos == 0 {
        return Err(format!("duration `{s}` must be greater than zero"));
    }
    Ok(nanos)
}

/// The default rolling windows.
pub(crate) fn default_windows() -> Vec<Window> {
    ["1h", "24h", "7d"]
        .into_iter()
        .filter_map(|label| window(label).ok())
        .collect()
}

/// A window and its bucket width: 1 minute for `1h`, 15 minutes for `24h`, 1 hour
/// for `7d`; any other length / 96, in whole seconds, at least 1 second.
pub(crate) fn window(label: &str) -> Result<Window, String> {
    let length_nanos = parse_duration(label)?;
    let bucket_secs = match length_nanos / NANOS_PER_SEC {
        _ if length_nanos % NANOS_PER_SEC != 0 => (length_nanos / 96 / NANOS_PER_SEC).max(1),
        3_600 => 60,
        86_400 => 900,
        604_800 => 3_600,
        secs => (secs / 96).max(1),
    };
    Ok(Window {
        label: label.to_string(),
        length_nanos,
        bucket_nanos: bucket_secs * NANOS_PER_SEC,
    })
}

impl Checker<'_> {
    /// `windows:`: absent is the default set; present must be a non-empty list of
    /// distinct durations.
    pub(crate) fn windows(&mut self, map: &MarkedMappingNode) -> Vec<Window> {
        let Some(node) = self.get(map, "windows") else {
            if map.get_node("windows").is_some() {
                // `windows:` with nothing after it.
                self.error(
                    span_loc(map.get_node("windows").map_or(map.span(), |n| n.span())),
                    "`windows` must not be empty (leave it out for the default [1h, 24h, 7d])",
                );
            }
            return default_windows();
        };
        let Node::Sequence(items) = node else {
            self.wrong_type(node, "windows", "a list of durations such as [1h, 24h, 7d]");
            return Vec::new();
        };
        if items.is_empty() {
            self.error(
                node_loc(node),
                "`windows` must not be empty (leave it out for the default [1h, 24h, 7d])",
            );
        }
        let mut windows: Vec<Window> = Vec::new();
        for item in items.iter() {
            let Some(label) = item.as_scalar() else {
                self.wrong_type(item, "windows", "a list of durations such as [1h, 24h, 7d]");
                continue;
            };
            match window(label.as_str()) {
                Ok(w) if windows.iter().any(|o| o.length_nanos == w.length_nanos) => {
                    self.error(
                        span_loc(label.span()),
                        format!("window `{}` is listed twice", label.as_str()),
                    );
                }
                Ok(w) => windows.push(w),
                Err(e) => self.error(span_loc(label.span()), format!("`windows`: {e}")),
            }
        }
        windows
    }

    pub(crate) fn buckets(&mut self, map: &MarkedMappingNode) -> Buckets {
        match self.string(map, "buckets") {
            None => Buckets::Day,
            Some((s, _)) if s == "day" => Buckets::Day,
            Some((s, _)) if s == "none" => Buckets::None,
            Some((s, loc)) => {
                self.error(loc, format!("`buckets` must be `day` or `none`, not `{s}`"));
                Buckets::Day
            }
        }
    }

    /// `target: { stat, green, amber }` for a KPI whose stats are `stats` (the first
    /// is the headline, the default).
    pub(crate) fn target(&mut self, map: &MarkedMappingNode, kind: &str, stats: &[&str]) -> Option<Target> {
        let node = self.get(map, "target")?;
        let Some(target) = node.as_mapping() else {
            self.wrong_type(node, "target", "a mapping such as `{ stat: p90, green: \"<= 72h\" }`");
            return None;
        };
        self.unknown_fields(target, &["stat", "green", "amber"], "a target");
        let stat = match self.string(target, "stat") {
            None => stats[0].to_string(),
            Some((s, _)) if stats.contains(&s.as_str()) => s,
            Some((s, loc)) => {
                self.error(
                    loc,
                    format!(
                        "unknown stat `{s}` for {} (stats: {})",
                        super::kpi::a_kpi(kind),
                        stats.join(", ")
                    ),
                );
                return None;
            }
        };
        let unit = Unit::of(kind, &stat);
        let read = |checker: &mut Self, key: &str| -> Option<Comparison> {
            let (text, loc) = checker.string(target, key)?;
            match comparison(&text, unit) {
                Ok(c) => Some(c),
                Err(e) => {
                    checker.error(loc, format!("`{key}`: bad target comparison `{text}`: {e}"));
                    None
                }
            }
        };
        if self.get(target, "green").is_none() {
            self.missing(target, "green", "a target");
            return None;
        }
        let green = read(self, "green");
        let amber = read(self, "amber");
        let amber_given = self.get(target, "amber").is_some();
        match (green, amber) {
            (Some(green), amber) if amber.is_some() || !amber_given => Some(Target { stat, green, amber }),
            _ => None,
        }
    }
}

/// What the numbers of a stat measure, which decides how a target may write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Seconds: `72h` or a number of seconds.
    Seconds,
    /// A fraction of a whole, from 0 to 1 (a ratio): `95%` or `0.95`.
    Fraction,
    /// A share of a limit, which may pass it or fall below zero (a level's
    /// usage: value / limit, and a value can be negative): `80%`, `0.8`, `120%`.
    Share,
    /// A plain number.
    Number,
}

impl Unit {
    pub(crate) fn of(kind: &str, stat: &str) -> Unit {
        match (kind, stat) {
            ("duration", "p50" | "p90" | "p99" | "mean") => Unit::Seconds,
            ("ratio", "ratio") => Unit::Fraction,
            ("level", "usage") => Unit::Share,
            _ => Unit::Number,
        }
    }
}

/// `<= 72h`, `>= 95%`, `< 10`.
pub(crate) fn comparison(text: &str, unit: Unit) -> Result<Comparison, String> {
    let text = text.trim();
    let (op, rest) = if let Some(r) = text.strip_prefix("<=") {
        (Op::Le, r)
    } else if let Some(r) = text.strip_prefix(">=") {
        (Op::Ge, r)
    } else if let Some(r) = text.strip_prefix('<') {
        (Op::Lt, r)
    } else if let Some(r) = text.strip_prefix('>') {
        (Op::Gt, r)
    } else {
        return Err("expected an operator (<=, <, >=, >) followed by a value, e.g. \"<= 72h\"".into());
    };
    let rest = rest.trim();
    if rest.is_empty() {
        return Err("expected a value after the operator".into());
    }
    let value = if let Ok(n) = rest.parse::<f64>() {
        if !n.is_finite() {
            return Err(format!("`{rest}` is not a finite number"));
        }
        if unit == Unit::Fraction && !(0.0..=1.0).contains(&n) {
            return Err(format!(
                "this stat is a fraction between 0 and 1: write `{rest}%` or `{}`",
                n / 100.0
            ));
        }
        n
    } else if let Some(p) = rest.strip_suffix('%') {
        if !matches!(unit, Unit::Fraction | Unit::Share) {
            return Err("a percentage only fits a ratio or a usage".into());
        }
        let p: f64 = p
            .trim()
            .parse()
            .map_err(|_| format!("`{rest}` is not a percentage such as 95%"))?;
        if !p.is_finite() {
            return Err(format!("`{rest}` is not a percentage such as 95%"));
        }
        if unit == Unit::Fraction && !(0.0..=100.0).contains(&p) {
            return Err(format!("this stat is a fraction: `{rest}` is outside 0% to 100%"));
        }
        p / 100.0
    } else if unit == Unit::Seconds {
        parse_duration(rest)? as f64 / NANOS_PER_SEC as f64
    } else {
        return Err(match unit {
            Unit::Fraction | Unit::Share => format!("`{rest}` is not a number or a percentage such as 95%"),
            _ => format!("`{rest}` is not a number"),
        });
    };
    Ok(Comparison { op, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_humantime() {
        assert_eq!(parse_duration("72h"), Ok(72 * 3_600 * NANOS_PER_SEC));
        assert_eq!(parse_duration("5d"), Ok(5 * 86_400 * NANOS_PER_SEC));
        assert_eq!(parse_duration("30m"), Ok(1_800 * NANOS_PER_SEC));
        assert_eq!(parse_duration("1h 30m"), Ok(5_400 * NANOS_PER_SEC));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5").is_err());
    }

    #[test]
    fn windows_get_their_bucket_widths() {
        let secs = |label: &str| window(label).map(|w| w.bucket_nanos / NANOS_PER_SEC);
        assert_eq!(secs("1h"), Ok(60));
        assert_eq!(secs("60m"), Ok(60));
        assert_eq!(secs("24h"), Ok(900));
        assert_eq!(secs("1d"), Ok(900));
        assert_eq!(secs("7d"), Ok(3_600));
        assert_eq!(secs("30d"), Ok(27_000));
        assert_eq!(secs("4h"), Ok(150));
        assert_eq!(secs("100s"), Ok(1));
        assert_eq!(secs("10s"), Ok(1));
        assert_eq!(secs("1500ms"), Ok(1));
        assert_eq!(window("24h").map(|w| w.label), Ok("24h".to_string()));
        let defaults = default_windows();
        assert_eq!(
            defaults.iter().map(|w| w.label.as_str()).collect::<Vec<_>>(),
            ["1h", "24h", "7d"]
        );
    }

    #[test]
    fn comparisons_read_durations_percentages_and_numbers() {
        let c = |text: &str, unit| comparison(text, unit);
        assert_eq!(
            c("<= 72h", Unit::Seconds),
            Ok(Comparison {
                op: Op::Le,
                value: 259_200.0
            })
        );
        assert_eq!(
            c("<900", Unit::Seconds),
            Ok(Comparison {
                op: Op::Lt,
                value: 900.0
            })
        );
        assert_eq!(
            c(">= 95%", Unit::Fraction),
            Ok(Comparison {
                op: Op::Ge,
                value: 0.95
            })
        );
        assert_eq!(c("> 0.9", Unit::Fraction), Ok(Comparison { op: Op::Gt, value: 0.9 }));
        assert_eq!(c("<= 0", Unit::Number), Ok(Comparison { op: Op::Le, value: 0.0 }));
        assert!(c("72h", Unit::Seconds).is_err());
        assert!(c("== 3", Unit::Number).is_err());
        assert!(c("<=", Unit::Number).is_err());
        assert!(c(">= 95", Unit::Fraction).is_err());
        assert!(c(">= 130%", Unit::Fraction).is_err());
        assert!(c(">= -5%", Unit::Fraction).is_err());
        // A usage may pass its limit.
        assert_eq!(c("<= 120%", Unit::Share), Ok(Comparison { op: Op::Le, value: 1.2 }));
        assert_eq!(c("<= 1.5", Unit::Share), Ok(Comparison { op: Op::Le, value: 1.5 }));
        // A value below zero gives a negative usage.
        assert_eq!(
            c(">= -10%", Unit::Share),
            Ok(Comparison {
                op: Op::Ge,
                value: -0.1
            })
        );
        assert!(c(">= 95%", Unit::Number).is_err());
        assert!(c("<= 3h", Unit::Number).is_err());
        assert!(c("<= soon", Unit::Seconds).is_err());
    }
}
