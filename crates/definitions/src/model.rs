//! The validated, compiled form of a definitions directory.

use crate::{Expr, Reads};

/// A whole definitions directory, validated and compiled.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    /// `sha256:` + 16 hex digits over the sorted file names and contents.
    pub version: String,
    pub kpis: Vec<KpiDef>,
    pub controls: Vec<ControlDef>,
}

impl Definitions {
    pub fn kpi(&self, name: &str) -> Option<&KpiDef> {
        self.kpis.iter().find(|k| k.name == name)
    }

    pub fn control(&self, name: &str) -> Option<&ControlDef> {
        self.controls.iter().find(|c| c.name == name)
    }
}

/// Where a definition was written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// File name relative to the definitions directory.
    pub file: String,
    pub line: usize,
}

/// Selects events: a type, an optional condition, and optional per-match expressions.
#[derive(Debug, Clone)]
pub struct Match {
    pub event_type: String,
    /// `if:`; a condition that fails to evaluate counts as false.
    pub condition: Option<Expr>,
    /// `key:`, overriding the definition's key for this match.
    pub key: Option<Expr>,
    /// `value:` (level `set`/`add`/`limit`).
    pub value: Option<Expr>,
    /// `actor:` (separation of duties).
    pub actor: Option<Expr>,
    /// The definitions file line of its `type:` (0: not from a file).
    pub line: usize,
}

impl Match {
    /// Its expressions: condition, key, value, actor (those present).
    pub fn expressions(&self) -> impl Iterator<Item = &Expr> {
        [&self.condition, &self.key, &self.value, &self.actor]
            .into_iter()
            .flatten()
    }

    /// Whether `scope.event` is of this match's type and its condition (if any) holds.
    pub fn matches(&self, scope: &crate::Scope<'_>) -> bool {
        scope.event.event_type == self.event_type && self.condition.as_ref().is_none_or(|c| c.eval_bool(scope))
    }
}

/// A rolling window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// As written: `1h`, `24h`, `7d`.
    pub label: String,
    pub length_nanos: i64,
    /// Width of the fixed, epoch-aligned buckets the window is made of.
    pub bucket_nanos: i64,
}

/// Calendar buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Buckets {
    #[default]
    Day,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Le,
    Lt,
    Ge,
    Gt,
}

/// `<= 72h`: durations are in seconds, percentages are fractions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub op: Op,
    pub value: f64,
}

impl Comparison {
    pub fn holds(&self, x: f64) -> bool {
        match self.op {
            Op::Le => x <= self.value,
            Op::Lt => x < self.value,
            Op::Ge => x >= self.value,
            Op::Gt => x > self.value,
        }
    }
}

/// Green/amber/red thresholds on one stat.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub stat: String,
    pub green: Comparison,
    pub amber: Option<Comparison>,
}

#[derive(Debug, Clone)]
pub struct KpiDef {
    pub name: String,
    pub description: String,
    pub origin: Origin,
    pub kind: KpiKind,
    pub key: Option<Expr>,
    /// Label -> expression, in file order.
    pub group_by: Vec<(String, Expr)>,
    /// Types whose last event per key is kept as `seen[type]`.
    pub track: Vec<String>,
    /// Types that drop a key's state.
    pub close: Vec<String>,
    pub windows: Vec<Window>,
    pub buckets: Buckets,
    pub target: Option<Target>,
    /// Hash of this definition's content: a change means its view must be rebuilt.
    pub fingerprint: String,
}

impl KpiDef {
    /// What the KPI's expressions read, together (see [`Reads`]).
    pub fn reads(&self) -> Reads {
        let mut own: Vec<&Expr> = self.key.iter().chain(self.group_by.iter().map(|(_, e)| e)).collect();
        match &self.kind {
            KpiKind::Ratio { good, .. } => own.push(good),
            KpiKind::Sum { value, .. } => own.push(value),
            KpiKind::Open { state, .. } => own.extend(state),
            KpiKind::Duration { .. } | KpiKind::Count { .. } | KpiKind::Level { .. } => {}
        }
        union(
            own.into_iter()
                .chain(self.kind.matches().into_iter().flat_map(Match::expressions)),
        )
    }
}

fn union<'a>(exprs: impl Iterator<Item = &'a Expr>) -> Reads {
    let mut reads = Reads::default();
    for e in exprs {
        reads.union(&e.reads());
    }
    reads
}

#[derive(Debug, Clone)]
pub enum KpiKind {
    Duration {
        start: Match,
        end: Match,
    },
    Ratio {
        on: Match,
        good: Expr,
        /// Keep the key's tracked events after its `on` event (`keep: true`).
        keep: bool,
    },
    Count {
        on: Match,
    },
    Sum {
        on: Match,
        value: Expr,
    },
    Level {
        set: Vec<Match>,
        add: Vec<Match>,
        limit: Vec<Match>,
    },
    /// Keys opened by an `open` match and not yet closed by a `close` type. Events of
    /// the KPI's `track` types update an open key's state without opening it;
    /// `group_by` is evaluated on the opening event.
    Open {
        open: Vec<Match>,
        /// The key's state; `None` means `event.type`.
        state: Option<Expr>,
    },
}

impl KpiKind {
    /// The matches that select its events, in definition order.
    pub fn matches(&self) -> Vec<&Match> {
        match self {
            KpiKind::Duration { start, end } => vec![start, end],
            KpiKind::Ratio { on, .. } | KpiKind::Count { on } | KpiKind::Sum { on, .. } => vec![on],
            KpiKind::Level { set, add, limit } => set.iter().chain(add).chain(limit).collect(),
            KpiKind::Open { open, .. } => open.iter().collect(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            KpiKind::Duration { .. } => "duration",
            KpiKind::Ratio { .. } => "ratio",
            KpiKind::Count { .. } => "count",
            KpiKind::Sum { .. } => "sum",
            KpiKind::Level { .. } => "level",
            KpiKind::Open { .. } => "open",
        }
    }

    /// Every stat this kind produces; the first is the headline.
    pub fn stats(&self) -> &'static [&'static str] {
        kind_stats(self.name())
    }

    /// The stat the target and the `opsflow_kpi` gauge use by default.
    pub fn headline(&self) -> &'static str {
        match self {
            KpiKind::Duration { .. } => "p90",
            KpiKind::Ratio { .. } => "ratio",
            KpiKind::Count { .. } => "count",
            KpiKind::Sum { .. } => "sum",
            KpiKind::Level { .. } => "value",
            KpiKind::Open { .. } => "open",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ControlDef {
    pub name: String,
    pub description: String,
    pub origin: Origin,
    pub key: Expr,
    pub track: Vec<String>,
    /// Types that end a key: its state is dropped (a pending obligation withdrawn).
    pub close: Vec<String>,
    pub kind: ControlKind,
    pub fingerprint: String,
}

impl ControlDef {
    /// What the control's expressions read, together (see [`Reads`]).
    pub fn reads(&self) -> Reads {
        union(std::iter::once(&self.key).chain(self.kind.matches().into_iter().flat_map(Match::expressions)))
    }
}

#[derive(Debug, Clone)]
pub enum ControlKind {
    Requires {
        when: Match,
        requires: Match,
    },
    SeparationOfDuties {
        first: Match,
        second: Match,
    },
    Within {
        after: Match,
        expect: Match,
        within_nanos: i64,
    },
}

impl ControlKind {
    /// Its two matches: the event that obliges (or is checked), then the other.
    pub fn matches(&self) -> [&Match; 2] {
        match self {
            ControlKind::Requires { when, requires } => [when, requires],
            ControlKind::SeparationOfDuties { first, second } => [first, second],
            ControlKind::Within { after, expect, .. } => [after, expect],
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ControlKind::Requires { .. } => "requires",
            ControlKind::SeparationOfDuties { .. } => "separation_of_duties",
            ControlKind::Within { .. } => "within",
        }
    }
}

/// The stats a KPI of `kind` produces; the first is the headline.
pub(crate) fn kind_stats(kind: &str) -> &'static [&'static str] {
    match kind {
        "duration" => &["p90", "p50", "p99", "mean", "count"],
        "ratio" => &["ratio", "good", "total"],
        "count" => &["count"],
        "sum" => &["sum", "count"],
        "level" => &[
            "value",
            "limit",
            "usage",
            "keys",
            "at_or_below_zero",
            "below_limit",
            "over_limit",
        ],
        "open" => &["open"],
        _ => &[],
    }
}
