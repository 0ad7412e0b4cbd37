//! One view: a KPI or control definition, its routes (event type -> roles) and its state.

use std::sync::Arc;

use opsflow_definitions::{ControlDef, ControlKind, Expr, KpiDef, KpiKind, Match, Reads};
use serde::{Deserialize, Serialize};

use crate::controls::{DutiesState, Findings, RequiresState, WithinState};
use crate::current::{LevelState, OpenState};
use crate::keyed::{Ctx, Role, RoleKind};
use crate::kpis::{DurationState, RatioState, SumState};
use crate::report::{ControlReport, KpiReport, Status, target_text};

#[derive(Debug, Clone)]
pub(crate) enum Def {
    Kpi(Arc<KpiDef>),
    Control(Arc<ControlDef>),
}

/// The roles one event type plays in a view.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub event_type: String,
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum State {
    Duration(DurationState),
    Ratio(RatioState),
    Count(SumState),
    Sum(SumState),
    Level(LevelState),
    Open(OpenState),
    Requires(RequiresState),
    Duties(DutiesState),
    Within(WithinState),
}

/// What a view stores: its state and its count of evaluation errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub eval_errors: u64,
    pub state: State,
}

/// One KPI or control view with its state. Obtained from
/// [`ViewSet::take_view`](crate::ViewSet::take_view) to swap a rebuilt view in.
#[derive(Debug, Clone)]
pub struct View {
    pub(crate) def: Def,
    pub(crate) routes: Vec<Route>,
    pub(crate) stored: Stored,
    /// What the view's expressions read: of each applied event, and of the events it
    /// keeps.
    pub(crate) reads: Reads,
}

impl View {
    pub(crate) fn for_kpi(def: Arc<KpiDef>) -> View {
        let state = match &def.kind {
            KpiKind::Duration { .. } => State::Duration(DurationState::default()),
            KpiKind::Ratio { .. } => State::Ratio(RatioState::default()),
            KpiKind::Count { .. } => State::Count(SumState::default()),
            KpiKind::Sum { .. } => State::Sum(SumState::default()),
            KpiKind::Level { .. } => State::Level(LevelState::default()),
            KpiKind::Open { .. } => State::Open(OpenState::default()),
        };
        let mut roles: Vec<(RoleKind, &Match)> = Vec::new();
        match &def.kind {
            KpiKind::Duration { start, end } => roles.extend([(RoleKind::Start, start), (RoleKind::End, end)]),
            KpiKind::Ratio { on, .. } | KpiKind::Count { on } | KpiKind::Sum { on, .. } => {
                roles.push((RoleKind::On, on))
            }
            KpiKind::Level { set, add, limit } => {
                roles.extend(set.iter().map(|m| (RoleKind::Set, m)));
                roles.extend(add.iter().map(|m| (RoleKind::Add, m)));
                roles.extend(limit.iter().map(|m| (RoleKind::Limit, m)));
            }
            KpiKind::Open { open, .. } => roles.extend(open.iter().map(|m| (RoleKind::Open, m))),
        }
        let reads = def.reads();
        // A KPI reports nothing of its tracked events but what its expressions read
        // of them: when none reads `seen`, tracking only moves an open key's state.
        let routes = routes(&roles, def.key.as_ref(), &def.track, &def.close, reads.seen);
        View {
            routes,
            reads,
            def: Def::Kpi(def),
            stored: Stored { eval_errors: 0, state },
        }
    }

    pub(crate) fn for_control(def: Arc<ControlDef>) -> View {
        let (state, roles) = match &def.kind {
            ControlKind::Requires { when, requires } => (
                State::Requires(RequiresState::default()),
                vec![(RoleKind::When, when), (RoleKind::Requires, requires)],
            ),
            ControlKind::SeparationOfDuties { first, second } => (
                State::Duties(DutiesState::default()),
                vec![(RoleKind::First, first), (RoleKind::Second, second)],
            ),
            ControlKind::Within { after, expect, .. } => (
                State::Within(WithinState::default()),
                vec![(RoleKind::After, after), (RoleKind::Expect, expect)],
            ),
        };
        // A control's tracked events are the evidence of its violations: always kept.
        let routes = routes(&roles, Some(&def.key), &def.track, &def.close, true);
        View {
            routes,
            reads: def.reads(),
            def: Def::Control(def),
            stored: Stored { eval_errors: 0, state },
        }
    }

    /// The same definition with empty state.
    pub(crate) fn emptied(&self) -> View {
        match &self.def {
            Def::Kpi(def) => View::for_kpi(def.clone()),
            Def::Control(def) => View::for_control(def.clone()),
        }
    }

    pub fn name(&self) -> &str {
        match &self.def {
            Def::Kpi(def) => &def.name,
            Def::Control(def) => &def.name,
        }
    }

    /// The definition's fingerprint: a different one means the view must be rebuilt.
    pub fn fingerprint(&self) -> &str {
        match &self.def {
            Def::Kpi(def) => &def.fingerprint,
            Def::Control(def) => &def.fingerprint,
        }
    }

    /// `duration`, ..., `requires`, ...
    pub fn kind(&self) -> &'static str {
        match &self.def {
            Def::Kpi(def) => def.kind.name(),
            Def::Control(def) => def.kind.name(),
        }
    }

    pub fn is_control(&self) -> bool {
        matches!(self.def, Def::Control(_))
    }

    /// Expressions that failed to evaluate while applying events: keys, groups,
    /// values and conditions (see `docs/definitions.md`).
    pub fn eval_errors(&self) -> u64 {
        self.stored.eval_errors
    }

    /// Keys with state (a gauge of the view's memory).
    pub fn keys(&self) -> usize {
        match &self.stored.state {
            State::Duration(s) => s.keys(),
            State::Ratio(s) => s.keys(),
            State::Level(s) => s.keys(),
            State::Open(s) => s.keys(),
            _ => 0,
        }
    }

    pub(crate) fn apply(&mut self, route: usize, ctx: &mut Ctx<'_>) {
        let roles = &self.routes[route].roles;
        let errors = &mut self.stored.eval_errors;
        match (&self.def, &mut self.stored.state) {
            (Def::Kpi(def), State::Duration(s)) => s.apply(def, roles, ctx, errors),
            (Def::Kpi(def), State::Ratio(s)) => {
                if let KpiKind::Ratio { good, keep, .. } = &def.kind {
                    s.apply(def, good, *keep, roles, ctx, errors);
                }
            }
            (Def::Kpi(def), State::Count(s)) => s.apply(def, None, roles, ctx, errors),
            (Def::Kpi(def), State::Sum(s)) => {
                if let KpiKind::Sum { value, .. } = &def.kind {
                    s.apply(def, Some(value), roles, ctx, errors);
                }
            }
            (Def::Kpi(def), State::Level(s)) => s.apply(def, roles, ctx, errors),
            (Def::Kpi(def), State::Open(s)) => {
                if let KpiKind::Open { state, .. } = &def.kind {
                    s.apply(def, state.as_ref(), roles, ctx, errors);
                }
            }
            (Def::Control(def), State::Requires(s)) => s.apply(def, roles, ctx, errors),
            (Def::Control(def), State::Duties(s)) => s.apply(def, roles, ctx, errors),
            (Def::Control(def), State::Within(s)) => {
                if let ControlKind::Within { within_nanos, .. } = &def.kind {
                    s.apply(def, *within_nanos, roles, ctx, errors);
                }
            }
            _ => debug_assert!(false, "view state does not match its definition"),
        }
    }

    /// The earliest obligation deadline (`within` controls).
    pub(crate) fn next_due(&self) -> Option<i64> {
        match &self.stored.state {
            State::Within(s) => s.next_due(),
            _ => None,
        }
    }

    /// Turns obligations the clock has passed into violations.
    pub(crate) fn expire(&mut self, clock: i64, position: u64) {
        if let (Def::Control(def), State::Within(s)) = (&self.def, &mut self.stored.state)
            && let ControlKind::Within { within_nanos, .. } = &def.kind
        {
            s.expire(def, *within_nanos, clock, position);
        }
    }

    pub(crate) fn kpi_report(&self, version: &str, position: u64, clock: i64) -> Option<KpiReport> {
        let Def::Kpi(def) = &self.def else { return None };
        let values = match &self.stored.state {
            State::Duration(s) => s.report(def, clock),
            State::Ratio(s) => s.report(def, clock),
            State::Count(s) => s.report(def, clock, false),
            State::Sum(s) => s.report(def, clock, true),
            State::Level(s) => s.report(def),
            State::Open(s) => s.report(def, clock),
            _ => Vec::new(),
        };
        Some(KpiReport {
            name: def.name.clone(),
            description: def.description.clone(),
            kind: def.kind.name().to_string(),
            definitions_version: version.to_string(),
            position,
            clock,
            target: def.target.as_ref().map(|t| target_text(&def.kind, t)),
            calendar_days: def.buckets == opsflow_definitions::Buckets::Day,
            values,
        })
    }

    pub(crate) fn control_report(&self, version: &str, position: u64, clock: i64) -> Option<ControlReport> {
        let Def::Control(def) = &self.def else { return None };
        let (findings, pending): (&Findings, _) = match &self.stored.state {
            State::Requires(s) => (&s.findings, Vec::new()),
            State::Duties(s) => (&s.findings, Vec::new()),
            State::Within(s) => (&s.findings, s.pending()),
            _ => return None,
        };
        let status = if findings.total > 0 {
            Status::Red
        } else if !pending.is_empty() {
            Status::Amber
        } else {
            Status::Green
        };
        Some(ControlReport {
            name: def.name.clone(),
            description: def.description.clone(),
            kind: def.kind.name().to_string(),
            definitions_version: version.to_string(),
            position,
            clock,
            status,
            checked: findings.checked,
            violations_total: findings.total,
            violations: findings.newest.iter().cloned().collect(),
            pending,
        })
    }
}

/// Groups roles by event type: kind roles in definition order, then `Track`, then
/// `Close`. A tracked or closing type uses the key of a match of the same type that
/// has its own `key:`, else the definition's key. `keep`: whether `Track` roles
/// remember their events as `seen`.
fn routes(
    kind_roles: &[(RoleKind, &Match)],
    key: Option<&Expr>,
    track: &[String],
    close: &[String],
    keep: bool,
) -> Vec<Route> {
    let mut routes: Vec<Route> = Vec::new();
    let mut push = |event_type: &str, role: Role| match routes.iter_mut().find(|r| r.event_type == event_type) {
        Some(route) => route.roles.push(role),
        None => routes.push(Route {
            event_type: event_type.to_string(),
            roles: vec![role],
        }),
    };
    for (kind, m) in kind_roles {
        let key = m.key.clone().or_else(|| key.cloned());
        push(
            &m.event_type,
            Role {
                kind: *kind,
                matcher: Some((*m).clone()),
                key,
                key_slot: usize::MAX,
                keep: true,
            },
        );
    }
    let key_for = |event_type: &str| {
        kind_roles
            .iter()
            .find_map(|(_, m)| {
                if m.event_type == event_type {
                    m.key.clone()
                } else {
                    None
                }
            })
            .or_else(|| key.cloned())
    };
    for t in track {
        push(
            t,
            Role {
                kind: RoleKind::Track,
                matcher: None,
                key: key_for(t),
                key_slot: usize::MAX,
                keep,
            },
        );
    }
    for t in close {
        push(
            t,
            Role {
                kind: RoleKind::Close,
                matcher: None,
                key: key_for(t),
                key_slot: usize::MAX,
                keep: true,
            },
        );
    }
    routes
}
