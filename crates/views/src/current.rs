//! Current-value KPIs (window `now`): `level` and `open`.

use std::collections::BTreeMap;

use opsflow_definitions::{Expr, KpiDef, Scope};
use serde::{Deserialize, Serialize};

use crate::codec::sorted_map;
use crate::keyed::{Ctx, Key, KeyMap, NO_SEEN, Role, RoleKind, Seen, escaped, group_of, seen_codec};
use crate::report::{KpiValue, Status};
use crate::time::NANOS_PER_SECOND;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LevelKey {
    value: f64,
    limit: Option<f64>,
    /// `group_by` labels, evaluated when the key is created.
    group: String,
    #[serde(with = "seen_codec")]
    seen: Seen,
}

/// `level`: per key a value (`set` replaces, `add` adds, from 0) and a `limit`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LevelState {
    #[serde(with = "sorted_map")]
    keys: KeyMap<LevelKey>,
}

impl LevelState {
    pub fn apply(&mut self, def: &KpiDef, roles: &[Role], ctx: &mut Ctx<'_>, errors: &mut u64) {
        let mut dropped = false;
        for role in roles {
            let Some(key) = ctx.key(role) else {
                *errors += 1;
                continue;
            };
            match role.kind {
                RoleKind::Set | RoleKind::Add | RoleKind::Limit => {
                    // One lookup for a key that has state (most events), a second to
                    // insert a new one.
                    let existing = self.keys.get_mut(&key);
                    let scope = ctx.scope(existing.as_deref().map_or(&NO_SEEN, |k| &k.seen), None);
                    if !role.holds(&scope, errors) {
                        continue;
                    }
                    let value = match role
                        .matcher
                        .as_ref()
                        .and_then(|m| m.value.as_ref())
                        .map(|v| v.eval_f64(&scope))
                    {
                        Some(Ok(x)) if x.is_finite() => x,
                        _ => {
                            *errors += 1;
                            continue;
                        }
                    };
                    let group = match existing {
                        Some(_) => None,
                        None => match group_of(&def.group_by, &scope) {
                            Some(group) => Some(group),
                            None => {
                                *errors += 1;
                                continue;
                            }
                        },
                    };
                    let state = match (existing, group) {
                        (Some(state), _) => state,
                        (None, group) => {
                            let state = self.keys.entry(key).or_default();
                            state.group = group.unwrap_or_default();
                            state
                        }
                    };
                    match role.kind {
                        RoleKind::Set => state.value = value,
                        RoleKind::Add => state.value += value,
                        _ => state.limit = Some(value),
                    }
                }
                RoleKind::Track if !dropped && role.keep => {
                    if let Some(state) = self.keys.get_mut(&key) {
                        state.seen.insert(ctx.keep());
                    }
                }
                RoleKind::Close => {
                    self.keys.remove(&key);
                    dropped = true;
                }
                _ => {}
            }
        }
    }

    /// The summary (`""`, then one per group), then one value per key, by key.
    pub fn report(&self, def: &KpiDef) -> Vec<KpiValue> {
        let mut keys: Vec<(&Key, &LevelKey)> = self.keys.iter().collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let target = def.target.as_ref();
        let per_key: Vec<KpiValue> = keys
            .iter()
            .map(|(key, state)| {
                let mut stats = BTreeMap::new();
                stats.insert("value".to_string(), state.value);
                if let Some(limit) = state.limit {
                    stats.insert("limit".to_string(), limit);
                    if limit != 0.0 {
                        stats.insert("usage".to_string(), state.value / limit);
                    }
                }
                let status = Status::of(target, target.and_then(|t| stats.get(&t.stat).copied()));
                KpiValue {
                    window: "now".into(),
                    group: escaped(key),
                    headline: Some(state.value),
                    stats,
                    status,
                }
            })
            .collect();

        #[derive(Default)]
        struct Summary {
            keys: u64,
            at_or_below_zero: u64,
            below_limit: u64,
            over_limit: u64,
            status: Status,
        }
        let mut summaries: BTreeMap<&str, Summary> = BTreeMap::new();
        summaries.insert("", Summary::default());
        for ((_, state), value) in keys.iter().zip(&per_key) {
            let mut groups = vec![""];
            if !def.group_by.is_empty() {
                groups.push(state.group.as_str());
            }
            for group in groups {
                let s = summaries.entry(group).or_default();
                s.keys += 1;
                s.at_or_below_zero += u64::from(state.value <= 0.0);
                s.below_limit += u64::from(state.limit.is_some_and(|l| state.value < l));
                s.over_limit += u64::from(state.limit.is_some_and(|l| state.value > l));
                s.status = s.status.max(value.status);
            }
        }
        let mut out: Vec<KpiValue> = summaries
            .into_iter()
            .map(|(group, s)| {
                let stats = BTreeMap::from([
                    ("keys".to_string(), s.keys as f64),
                    ("at_or_below_zero".to_string(), s.at_or_below_zero as f64),
                    ("below_limit".to_string(), s.below_limit as f64),
                    ("over_limit".to_string(), s.over_limit as f64),
                ]);
                // A target on a summary stat judges the summary; a target on a per-key
                // stat gives the summary the worst status of its keys.
                let summary_stat = target.and_then(|t| stats.get(&t.stat).copied());
                let (headline, status) = match summary_stat {
                    Some(x) => (Some(x), Status::of(target, Some(x))),
                    None => (None, s.status),
                };
                KpiValue {
                    window: "now".into(),
                    group: group.to_string(),
                    stats,
                    headline,
                    status,
                }
            })
            .collect();
        out.extend(per_key);
        out
    }

    pub fn keys(&self) -> usize {
        self.keys.len()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenItem {
    state: String,
    /// `group_by` labels, evaluated when the key opens.
    group: String,
    /// Event time of the opening event.
    since: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenKey {
    open: Option<OpenItem>,
    #[serde(with = "seen_codec")]
    seen: Seen,
}

/// `open`: keys opened and not yet closed, with their current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenState {
    #[serde(with = "sorted_map")]
    keys: KeyMap<OpenKey>,
}

impl OpenState {
    pub fn apply(
        &mut self,
        def: &KpiDef,
        state_expr: Option<&Expr>,
        roles: &[Role],
        ctx: &mut Ctx<'_>,
        errors: &mut u64,
    ) {
        let mut dropped = false;
        for role in roles {
            let Some(key) = ctx.key(role) else {
                *errors += 1;
                continue;
            };
            match role.kind {
                RoleKind::Open => {
                    let existing = self.keys.get(&key);
                    let scope = ctx.scope(existing.map_or(&NO_SEEN, |k| &k.seen), None);
                    if !role.holds(&scope, errors) {
                        continue;
                    }
                    let state = match state_expr {
                        None => ctx.event.event_type.clone(),
                        Some(expr) => match expr.eval_string(&scope) {
                            Ok(state) => state,
                            Err(_) => {
                                *errors += 1;
                                continue;
                            }
                        },
                    };
                    let group = match existing.and_then(|k| k.open.as_ref()) {
                        Some(_) => None,
                        None => match group_of(&def.group_by, &scope) {
                            Some(group) => Some(group),
                            None => {
                                *errors += 1;
                                continue;
                            }
                        },
                    };
                    let entry = self.keys.entry(key).or_default();
                    match (&mut entry.open, group) {
                        (Some(item), _) => item.state = state,
                        (open, group) => {
                            *open = Some(OpenItem {
                                state,
                                group: group.unwrap_or_default(),
                                since: ctx.event.time,
                            })
                        }
                    }
                }
                RoleKind::Track if !dropped => {
                    // A tracked event of an open key is seen and moves its state.
                    let Some(state) = self.keys.get_mut(&key) else { continue };
                    let Some(item) = state.open.as_mut() else { continue };
                    if role.keep {
                        state.seen.insert(ctx.keep());
                    }
                    let scope = Scope {
                        event: ctx.event,
                        seen: Some(&state.seen),
                        start: None,
                    };
                    match state_expr.map(|e| e.eval_string(&scope)) {
                        // Into the state's own buffer: no allocation per event.
                        None => item.state.clone_from(&ctx.event.event_type),
                        Some(Ok(s)) => item.state = s,
                        Some(Err(_)) => *errors += 1,
                    }
                }
                RoleKind::Close => {
                    self.keys.remove(&key);
                    dropped = true;
                }
                _ => {}
            }
        }
    }

    /// Open counts: `""`, each group, each `state=...`, and each group and state.
    /// Stats: `open`, and `oldest` (seconds since the oldest still-open key opened).
    pub fn report(&self, def: &KpiDef, clock: i64) -> Vec<KpiValue> {
        let grouped = !def.group_by.is_empty();
        let mut tally: BTreeMap<String, (u64, i64)> = BTreeMap::new();
        tally.insert(String::new(), (0, i64::MAX));
        let mut count = |group: String, since: i64| {
            let entry = tally.entry(group).or_insert((0, i64::MAX));
            entry.0 += 1;
            entry.1 = entry.1.min(since);
        };
        for item in self.keys.values().filter_map(|k| k.open.as_ref()) {
            count(String::new(), item.since);
            let state = escaped(&item.state);
            count(format!("state={state}"), item.since);
            if grouped {
                count(item.group.clone(), item.since);
                count(format!("{},state={state}", item.group), item.since);
            }
        }
        tally
            .into_iter()
            .map(|(group, (open, oldest))| {
                let mut stats = BTreeMap::from([("open".to_string(), open as f64)]);
                if open > 0 {
                    stats.insert(
                        "oldest".to_string(),
                        (clock - oldest).max(0) as f64 / NANOS_PER_SECOND as f64,
                    );
                }
                let target = def.target.as_ref();
                let status = Status::of(target, target.and_then(|t| stats.get(&t.stat).copied()));
                KpiValue {
                    window: "now".into(),
                    group,
                    headline: Some(open as f64),
                    stats,
                    status,
                }
            })
            .collect()
    }

    pub fn keys(&self) -> usize {
        self.keys.len()
    }
}
