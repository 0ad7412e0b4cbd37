//! Compliance controls: `requires`, `separation_of_duties` and `within`.

use std::collections::{BTreeSet, VecDeque};

use opsflow_definitions::ControlDef;
use serde::{Deserialize, Serialize};

use crate::codec::sorted_map;
use crate::keyed::{Ctx, Key, KeyMap, NO_SEEN, Role, RoleKind, Seen, Tracks, seen_codec, seen_positions};
use crate::report::{Obligation, Violation};
use crate::time::{NANOS_PER_SECOND, format_seconds, format_span};

/// Violations kept per control; the count stays exact.
pub const VIOLATIONS_KEPT: usize = 1000;

/// The newest violations and the exact count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Findings {
    pub checked: u64,
    pub total: u64,
    pub newest: VecDeque<Violation>,
}

impl Findings {
    /// Records a violation; returns the one it pushed out of `newest`, if any.
    fn record(&mut self, violation: Violation) -> Option<Violation> {
        self.total += 1;
        let dropped = (self.newest.len() == VIOLATIONS_KEPT)
            .then(|| self.newest.pop_front())
            .flatten();
        self.newest.push_back(violation);
        dropped
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequiresKey {
    /// A `requires` event has been seen.
    satisfied: bool,
    #[serde(with = "seen_codec")]
    seen: Seen,
}

impl Tracks for RequiresKey {
    fn seen_mut(&mut self) -> &mut Seen {
        &mut self.seen
    }
}

/// `requires`: a `when` event for a key that has not seen a `requires` event is a
/// violation. The key's state is dropped at its `when`-type event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequiresState {
    #[serde(with = "sorted_map")]
    keys: KeyMap<RequiresKey>,
    pub findings: Findings,
}

impl RequiresState {
    pub fn apply(&mut self, def: &ControlDef, roles: &[Role], ctx: &mut Ctx<'_>, errors: &mut u64) {
        let mut dropped = false;
        for role in roles {
            let Some(key) = ctx.key(role) else {
                *errors += 1;
                continue;
            };
            let state = self.keys.get(&key);
            let seen = state.map_or(&NO_SEEN, |k| &k.seen);
            match role.kind {
                RoleKind::Requires if role.holds(&ctx.scope(seen, None), errors) => {
                    self.keys.entry(key).or_default().satisfied = true;
                }
                RoleKind::When => {
                    if role.holds(&ctx.scope(seen, None), errors) {
                        self.findings.checked += 1;
                        if !state.is_some_and(|k| k.satisfied) {
                            let mut evidence = seen_positions(seen);
                            evidence.push(ctx.event.position);
                            let (when, requires) = types(def);
                            self.findings.record(Violation {
                                message: format!("{when} without a prior {requires}"),
                                key: key.to_string(),
                                evidence,
                                at: ctx.event.time,
                                position: ctx.event.position,
                            });
                        }
                    }
                    self.keys.remove(&key);
                    dropped = true;
                }
                RoleKind::Track if !dropped => ctx.track(role, &mut self.keys, key),
                RoleKind::Close => {
                    self.keys.remove(&key);
                    dropped = true;
                }
                _ => {}
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DutiesKey {
    /// Actors of `first` events with the position of their first such event.
    firsts: Vec<(String, u64)>,
    #[serde(with = "seen_codec")]
    seen: Seen,
}

impl Tracks for DutiesKey {
    fn seen_mut(&mut self) -> &mut Seen {
        &mut self.seen
    }
}

/// `separation_of_duties`: a `second` event by an actor who did `first` on the same
/// key. The key's state is dropped once a `second` event has been checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DutiesState {
    #[serde(with = "sorted_map")]
    keys: KeyMap<DutiesKey>,
    pub findings: Findings,
}

impl DutiesState {
    pub fn apply(&mut self, def: &ControlDef, roles: &[Role], ctx: &mut Ctx<'_>, errors: &mut u64) {
        let mut dropped = false;
        for role in roles {
            let Some(key) = ctx.key(role) else {
                *errors += 1;
                continue;
            };
            let state = self.keys.get(&key);
            let scope = ctx.scope(state.map_or(&NO_SEEN, |k| &k.seen), None);
            match role.kind {
                RoleKind::First | RoleKind::Second => {
                    if !role.holds(&scope, errors) {
                        continue;
                    }
                    let actor = match role
                        .matcher
                        .as_ref()
                        .and_then(|m| m.actor.as_ref())
                        .map(|a| a.eval_string(&scope))
                    {
                        Some(Ok(actor)) => actor,
                        _ => {
                            *errors += 1;
                            continue;
                        }
                    };
                    if role.kind == RoleKind::First {
                        let state = self.keys.entry(key).or_default();
                        if !state.firsts.iter().any(|(a, _)| *a == actor) {
                            state.firsts.push((actor, ctx.event.position));
                        }
                        continue;
                    }
                    let Some(state) = self.keys.remove(&key) else { continue };
                    dropped = true;
                    if state.firsts.is_empty() {
                        continue;
                    }
                    self.findings.checked += 1;
                    if let Some((_, first_position)) = state.firsts.iter().find(|(a, _)| *a == actor) {
                        let (first, second) = types(def);
                        self.findings.record(Violation {
                            message: format!("{second} by {actor}, who also did {first}"),
                            key: key.into_string(),
                            evidence: vec![*first_position, ctx.event.position],
                            at: ctx.event.time,
                            position: ctx.event.position,
                        });
                    }
                }
                RoleKind::Track if !dropped => ctx.track(role, &mut self.keys, key),
                RoleKind::Close => {
                    self.keys.remove(&key);
                    dropped = true;
                }
                _ => {}
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    due: i64,
    /// The tracked events and the `after` event, oldest first.
    evidence: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WithinKey {
    pending: Option<Pending>,
    #[serde(with = "seen_codec")]
    seen: Seen,
}

impl Tracks for WithinKey {
    fn seen_mut(&mut self) -> &mut Seen {
        &mut self.seen
    }
}

/// `within`: an `after` event opens an obligation due `within` later (event time); an
/// `expect` event settles it, late when after the deadline; the view clock passing the
/// deadline makes it overdue. A key's state is dropped when its obligation settles,
/// or at an `after`-type event that opens none.
///
/// The clock is the latest event time of any stream, so an `expect` can arrive after
/// the clock passed its deadline and yet be on time by its own time (recorded late,
/// or another producer ahead). An overdue violation still among the newest kept is
/// therefore remembered by key (`overdue`): its `expect`, when it comes, withdraws it
/// (on time) or turns it into a late violation with the `expect` as evidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WithinState {
    #[serde(with = "sorted_map")]
    keys: KeyMap<WithinKey>,
    /// `(due, key)` of every pending obligation.
    due: BTreeSet<(i64, Key)>,
    /// `(at, position)` of each key's overdue violation (its deadline, and where it
    /// was found), while it is in `findings.newest` and no `expect`, `close` or new
    /// obligation of the key came since.
    #[serde(with = "sorted_map")]
    overdue: KeyMap<(i64, u64)>,
    pub findings: Findings,
}

impl WithinState {
    pub fn apply(&mut self, def: &ControlDef, within: i64, roles: &[Role], ctx: &mut Ctx<'_>, errors: &mut u64) {
        let mut dropped = false;
        for role in roles {
            let Some(key) = ctx.key(role) else {
                *errors += 1;
                continue;
            };
            let state = self.keys.get(&key);
            let scope = ctx.scope(state.map_or(&NO_SEEN, |k| &k.seen), None);
            match role.kind {
                RoleKind::After => {
                    // The first obligation stands: the condition is not even looked at.
                    if state.is_some_and(|k| k.pending.is_some()) {
                        continue;
                    }
                    if role.holds(&scope, errors) {
                        // A new obligation: an `expect` from now on is for it.
                        self.overdue.remove(&key);
                        let due = ctx.event.time.saturating_add(within);
                        let state = self.keys.entry(key.clone()).or_default();
                        let mut evidence = seen_positions(&state.seen);
                        evidence.push(ctx.event.position);
                        state.pending = Some(Pending { due, evidence });
                        self.due.insert((due, key));
                    } else {
                        self.keys.remove(&key);
                        dropped = true;
                    }
                }
                RoleKind::Expect => {
                    if state.is_none_or(|k| k.pending.is_none()) {
                        if self.overdue.contains_key(&key) && role.holds(&scope, errors) {
                            self.settle_overdue(def, within, key, ctx.event.time, ctx.event.position);
                        }
                        continue;
                    }
                    if !role.holds(&scope, errors) {
                        continue;
                    }
                    let Some(WithinKey {
                        pending: Some(pending), ..
                    }) = self.keys.remove(&key)
                    else {
                        continue;
                    };
                    dropped = true;
                    self.due.remove(&(pending.due, key.clone()));
                    self.findings.checked += 1;
                    if ctx.event.time > pending.due {
                        let mut evidence = pending.evidence;
                        evidence.push(ctx.event.position);
                        let dropped = self.findings.record(Violation {
                            message: late_message(def, within, ctx.event.time - pending.due),
                            key: key.into_string(),
                            evidence,
                            at: pending.due,
                            position: ctx.event.position,
                        });
                        self.forget(dropped);
                    }
                }
                RoleKind::Track if !dropped => ctx.track(role, &mut self.keys, key),
                RoleKind::Close => {
                    // The key ended: a pending obligation is withdrawn, not violated;
                    // an overdue one stands.
                    self.overdue.remove(&key);
                    if let Some(WithinKey {
                        pending: Some(pending), ..
                    }) = self.keys.remove(&key)
                    {
                        self.due.remove(&(pending.due, key));
                    }
                    dropped = true;
                }
                _ => {}
            }
        }
    }

    /// The earliest deadline.
    pub fn next_due(&self) -> Option<i64> {
        self.due.first().map(|(due, _)| *due)
    }

    /// Obligations whose deadline the clock has passed become violations.
    pub fn expire(&mut self, def: &ControlDef, within: i64, clock: i64, position: u64) {
        while let Some((due, _)) = self.due.first() {
            if *due >= clock {
                break;
            }
            let Some((due, key)) = self.due.pop_first() else { break };
            let evidence = match self.keys.remove(&key).and_then(|k| k.pending) {
                Some(pending) => pending.evidence,
                None => Vec::new(),
            };
            let (after, expect) = types(def);
            self.findings.checked += 1;
            self.overdue.insert(key.clone(), (due, position));
            let dropped = self.findings.record(Violation {
                message: format!(
                    "no {expect} within {} of {after}",
                    format_seconds(within as f64 / NANOS_PER_SECOND as f64)
                ),
                key: key.into_string(),
                evidence,
                at: due,
                position,
            });
            self.forget(dropped);
        }
    }

    /// An `expect` (at `time`, `position`) for `key` whose obligation was found
    /// overdue: on time by its own time, the violation is withdrawn (the obligation
    /// stays counted in `checked`); late, it becomes a late violation with the
    /// `expect` as evidence.
    fn settle_overdue(&mut self, def: &ControlDef, within: i64, key: Key, time: i64, position: u64) {
        let Some((due, found)) = self.overdue.remove(&key) else {
            return;
        };
        let Some(at) = self
            .findings
            .newest
            .iter()
            .rposition(|v| v.at == due && v.position == found && v.key == key.as_str())
        else {
            return;
        };
        if time <= due {
            self.findings.newest.remove(at);
            self.findings.total -= 1;
        } else if let Some(violation) = self.findings.newest.get_mut(at) {
            violation.message = late_message(def, within, time - due);
            violation.evidence.push(position);
        }
    }

    /// A violation pushed out of the kept ones can no longer be amended.
    fn forget(&mut self, dropped: Option<Violation>) {
        if let Some(v) = dropped
            && self.overdue.get(v.key.as_str()) == Some(&(v.at, v.position))
        {
            self.overdue.remove(v.key.as_str());
        }
    }

    pub fn pending(&self) -> Vec<Obligation> {
        self.due
            .iter()
            .map(|(due, key)| Obligation {
                key: key.to_string(),
                due: *due,
                evidence: self
                    .keys
                    .get(key)
                    .and_then(|k| k.pending.as_ref())
                    .map(|p| p.evidence.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }
}

/// `postmortem.published 2h 30m late: due within 5d of incident.resolved`.
fn late_message(def: &ControlDef, within: i64, late: i64) -> String {
    let (after, expect) = types(def);
    format!(
        "{expect} {} late: due within {} of {after}",
        format_span(late),
        format_seconds(within as f64 / NANOS_PER_SECOND as f64)
    )
}

/// The two event types a control relates, for messages.
fn types(def: &ControlDef) -> (&str, &str) {
    use opsflow_definitions::ControlKind;
    match &def.kind {
        ControlKind::Requires { when, requires } => (&when.event_type, &requires.event_type),
        ControlKind::SeparationOfDuties { first, second } => (&first.event_type, &second.event_type),
        ControlKind::Within { after, expect, .. } => (&after.event_type, &expect.event_type),
    }
}
