//! Windowed KPIs: `duration`, `ratio`, `count` and `sum`.

use std::collections::BTreeMap;
use std::collections::hash_map::Entry;

use opsflow_definitions::{Expr, KpiDef};
use serde::{Deserialize, Serialize};

use crate::codec::{Kept, sorted_map};
use crate::keyed::{Ctx, KeyMap, NO_SEEN, Role, RoleKind, Seen, Tracks, group_of, seen_codec};
use crate::report::{KpiValue, Status};
use crate::sketch::Sketch;
use crate::time::NANOS_PER_SECOND;
use crate::windowed::{Cell, RatioCell, SumCell, Windowed};

/// A key's tracked events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tracked {
    #[serde(with = "seen_codec")]
    pub seen: Seen,
}

impl Tracks for Tracked {
    fn seen_mut(&mut self) -> &mut Seen {
        &mut self.seen
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DurationKey {
    start: Option<Kept>,
    #[serde(with = "seen_codec")]
    seen: Seen,
}

impl Tracks for DurationKey {
    fn seen_mut(&mut self) -> &mut Seen {
        &mut self.seen
    }
}

/// `duration`: per key the first start event; a sample at the end event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DurationState {
    #[serde(with = "sorted_map")]
    keys: KeyMap<DurationKey>,
    series: Windowed<Sketch>,
}

impl DurationState {
    pub fn apply(&mut self, def: &KpiDef, roles: &[Role], ctx: &mut Ctx<'_>, errors: &mut u64) {
        let mut dropped = false;
        for role in roles {
            let Some(key) = ctx.key(role) else {
                *errors += 1;
                continue;
            };
            match role.kind {
                // One lookup per role: the key's state is read and then kept,
                // started or dropped through its entry.
                RoleKind::Start => match self.keys.entry(key) {
                    Entry::Occupied(mut state) => {
                        if role.holds(&ctx.scope(&state.get().seen, None), errors) && state.get().start.is_none() {
                            state.get_mut().start = Some(Kept(ctx.keep().into()));
                        }
                    }
                    Entry::Vacant(state) => {
                        if role.holds(&ctx.scope(&NO_SEEN, None), errors) {
                            state.insert(DurationKey {
                                start: Some(Kept(ctx.keep().into())),
                                seen: Seen::new(),
                            });
                        }
                    }
                },
                RoleKind::End => {
                    let Entry::Occupied(state) = self.keys.entry(key) else {
                        continue;
                    };
                    let held = state.get();
                    if !role.holds(
                        &ctx.scope(&held.seen, held.start.as_ref().map(|s| &**s.0.event())),
                        errors,
                    ) {
                        continue;
                    }
                    let state = state.remove();
                    dropped = true;
                    let Some(start) = &state.start else { continue };
                    let seconds = (ctx.event.time - start.0.time()) as f64 / NANOS_PER_SECOND as f64;
                    let Some(group) = group_of(&def.group_by, &ctx.scope(&state.seen, Some(start.0.event()))) else {
                        *errors += 1;
                        continue;
                    };
                    self.series
                        .add(group, seconds, ctx.event.time, ctx.clock, &def.windows, def.buckets);
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

    pub fn report(&self, def: &KpiDef, clock: i64) -> Vec<KpiValue> {
        values(def, &self.series, clock, |s| {
            let mut stats = BTreeMap::new();
            stats.insert("count".to_string(), s.count() as f64);
            if let (Some(p50), Some(p90), Some(p99), Some(mean)) =
                (s.quantile(0.5), s.quantile(0.9), s.quantile(0.99), s.mean())
            {
                stats.insert("p50".to_string(), p50);
                stats.insert("p90".to_string(), p90);
                stats.insert("p99".to_string(), p99);
                stats.insert("mean".to_string(), mean);
            }
            stats
        })
    }

    pub fn keys(&self) -> usize {
        self.keys.len()
    }
}

/// `ratio`: each `on` event counts in `total`, and in `good` when `good` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RatioState {
    #[serde(with = "sorted_map")]
    keys: KeyMap<Tracked>,
    series: Windowed<RatioCell>,
}

impl RatioState {
    pub fn apply(
        &mut self,
        def: &KpiDef,
        good: &Expr,
        keep: bool,
        roles: &[Role],
        ctx: &mut Ctx<'_>,
        errors: &mut u64,
    ) {
        let mut dropped = false;
        for role in roles {
            // A ratio without a key has no per-key state.
            let key = match &role.key {
                None => None,
                Some(_) => match ctx.key(role) {
                    Some(key) => Some(key),
                    None => {
                        *errors += 1;
                        continue;
                    }
                },
            };
            match (role.kind, key) {
                (RoleKind::On, key) => {
                    // The key's entry is looked up once: read, then dropped.
                    let mut state = key.map(|k| self.keys.entry(k));
                    let seen = match &state {
                        Some(Entry::Occupied(tracked)) => &tracked.get().seen,
                        _ => &NO_SEEN,
                    };
                    let scope = ctx.scope(seen, None);
                    if !role.holds(&scope, errors) {
                        continue;
                    }
                    // A sample whose `good` cannot be told (it reads what is not
                    // there) counts neither way: an error, not a bad sample.
                    match (good.eval_condition(&scope), group_of(&def.group_by, &scope)) {
                        (Some(is_good), Some(group)) => {
                            self.series
                                .add(group, is_good, ctx.event.time, ctx.clock, &def.windows, def.buckets)
                        }
                        _ => *errors += 1,
                    }
                    if !keep && let Some(state) = state.take() {
                        if let Entry::Occupied(tracked) = state {
                            tracked.remove();
                        }
                        dropped = true;
                    }
                }
                (RoleKind::Track, Some(key)) if !dropped => ctx.track(role, &mut self.keys, key),
                (RoleKind::Close, Some(key)) => {
                    self.keys.remove(&key);
                    dropped = true;
                }
                _ => {}
            }
        }
    }

    pub fn report(&self, def: &KpiDef, clock: i64) -> Vec<KpiValue> {
        values(def, &self.series, clock, |c| {
            let mut stats = BTreeMap::new();
            stats.insert("good".to_string(), c.good as f64);
            stats.insert("total".to_string(), c.total as f64);
            if c.total > 0 {
                stats.insert("ratio".to_string(), c.good as f64 / c.total as f64);
            }
            stats
        })
    }

    pub fn keys(&self) -> usize {
        self.keys.len()
    }
}

/// `count` and `sum` (a count is a sum without a value).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SumState {
    series: Windowed<SumCell>,
}

impl SumState {
    pub fn apply(&mut self, def: &KpiDef, value: Option<&Expr>, roles: &[Role], ctx: &mut Ctx<'_>, errors: &mut u64) {
        for role in roles.iter().filter(|r| r.kind == RoleKind::On) {
            let scope = ctx.scope(&NO_SEEN, None);
            if !role.holds(&scope, errors) {
                continue;
            }
            let sample = match value {
                None => 1.0,
                Some(expr) => match expr.eval_f64(&scope) {
                    Ok(x) if x.is_finite() => x,
                    _ => {
                        *errors += 1;
                        continue;
                    }
                },
            };
            match group_of(&def.group_by, &scope) {
                Some(group) => self
                    .series
                    .add(group, sample, ctx.event.time, ctx.clock, &def.windows, def.buckets),
                None => *errors += 1,
            }
        }
    }

    pub fn report(&self, def: &KpiDef, clock: i64, with_sum: bool) -> Vec<KpiValue> {
        values(def, &self.series, clock, |c| {
            let mut stats = BTreeMap::new();
            stats.insert("count".to_string(), c.count as f64);
            if with_sum {
                stats.insert("sum".to_string(), c.sum);
            }
            stats
        })
    }
}

/// Report values from merged slices: headline and status only with samples.
fn values<C: Cell>(
    def: &KpiDef,
    series: &Windowed<C>,
    clock: i64,
    stats_of: impl Fn(&C) -> BTreeMap<String, f64>,
) -> Vec<KpiValue> {
    let headline_stat = def.kind.headline();
    series
        .slices(clock, &def.windows, def.buckets, !def.group_by.is_empty())
        .into_iter()
        .map(|slice| {
            let stats = stats_of(&slice.cell);
            let has_samples = slice.cell.samples() > 0;
            let headline = stats.get(headline_stat).copied();
            let status = match &def.target {
                Some(target) if has_samples => Status::of(Some(target), stats.get(&target.stat).copied()),
                _ => Status::None,
            };
            KpiValue {
                window: slice.window,
                group: slice.group,
                stats,
                headline,
                status,
            }
        })
        .collect()
}
