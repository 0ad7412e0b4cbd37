//! What every keyed view shares: the event being applied, the per-key `seen` events,
//! and evaluating keys, conditions and groups.

use std::collections::HashMap;
use std::sync::Arc;

use opsflow_definitions::{EventData, EventReads, Expr, FieldSet, Match, Scope};

pub use opsflow_definitions::Seen;

/// A view's key (an order id, a SKU and location, ...): held inline up to 24 bytes,
/// so most keys cost no allocation and a lookup no pointer chase; encoded as a
/// string.
pub type Key = compact_str::CompactString;

/// Per-key state of a view. Keys come from event data, so the hasher is seeded
/// per process (foldhash), and fast; encodings sort the keys
/// ([`crate::codec::sorted_map`]), so the bytes do not depend on it.
pub type KeyMap<V> = HashMap<Key, V, foldhash::fast::RandomState>;

/// The `seen` of a key without state.
pub static NO_SEEN: Seen = Seen::new();

/// Per-key state that remembers tracked events.
pub trait Tracks: Default {
    fn seen_mut(&mut self) -> &mut Seen;
}

/// Keys evaluated for the current event, by key slot: views whose key expressions
/// read the same evaluate them once per event. An entry is valid for the position it
/// was computed at.
pub type KeyCache = Vec<(u64, Option<Key>)>;

/// The event being applied and the view clock after it.
pub struct Ctx<'a> {
    pub event: &'a EventData,
    pub clock: i64,
    /// What views keep of the events they keep, and its data fields as a lookup.
    kept: (&'a EventReads, &'a FieldSet),
    /// The event as kept: the applied event itself when the caller shares it
    /// ([`Ctx::shared`]), else a projection made by the first view that keeps it and
    /// shared by the rest.
    shared: Option<Arc<EventData>>,
    keys: &'a mut KeyCache,
}

impl<'a> Ctx<'a> {
    pub fn new(event: &'a EventData, clock: i64, kept: (&'a EventReads, &'a FieldSet), keys: &'a mut KeyCache) -> Self {
        Ctx {
            event,
            clock,
            kept,
            shared: None,
            keys,
        }
    }

    /// [`Ctx::new`] for an event the caller shares: views keep it as it is, with no
    /// copy (it holds what views read of applied events, a superset of what they
    /// read of kept ones; encoding projects kept events, so the bytes are the same).
    pub fn shared(
        event: &'a Arc<EventData>,
        clock: i64,
        kept: (&'a EventReads, &'a FieldSet),
        keys: &'a mut KeyCache,
    ) -> Self {
        Ctx {
            shared: Some(event.clone()),
            ..Ctx::new(event, clock, kept, keys)
        }
    }

    /// Remembers the event being applied as `seen[type]` of `key` (a `Track` role).
    /// Nothing when the role does not keep its events ([`Role::keep`]).
    pub fn track<K: Tracks>(&mut self, role: &Role, keys: &mut KeyMap<K>, key: Key) {
        if !role.keep {
            return;
        }
        let event = self.keep();
        keys.entry(key).or_default().seen_mut().insert(event);
    }

    /// The role's key for this event; `None` when it fails to evaluate or is empty
    /// (the caller counts an evaluation error).
    pub fn key(&mut self, role: &Role) -> Option<Key> {
        let expr = role.key.as_ref()?;
        let position = self.event.position;
        let eval = || {
            expr.eval_str(&Scope::event(self.event))
                .ok()
                .filter(|k| !k.is_empty())
                .map(|k| Key::from(k.as_ref()))
        };
        match self.keys.get_mut(role.key_slot) {
            Some((at, cached)) if *at == position => cached.clone(),
            Some(slot) => {
                let key = eval();
                *slot = (position, key.clone());
                key
            }
            None => eval(),
        }
    }

    /// The event as views keep it: shared, or else only what their expressions read
    /// of kept events, copied once per apply however many views keep it.
    pub fn keep(&mut self) -> Arc<EventData> {
        let ((kept, data), event) = (self.kept, self.event);
        self.shared
            .get_or_insert_with(|| Arc::new(kept.project_with(event, data)))
            .clone()
    }

    pub fn scope<'s>(&'s self, seen: &'s Seen, start: Option<&'s EventData>) -> Scope<'s> {
        Scope {
            event: self.event,
            seen: Some(seen),
            start,
        }
    }
}

/// What an event does to a view. A view routes each event type to its roles, kind
/// roles first (in definition order), then `Track`, then `Close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    Start,
    End,
    On,
    Set,
    Add,
    Limit,
    Open,
    When,
    Requires,
    First,
    Second,
    After,
    Expect,
    Track,
    Close,
}

#[derive(Debug, Clone)]
pub struct Role {
    pub kind: RoleKind,
    /// The match (absent for `Track` and `Close`).
    pub matcher: Option<Match>,
    /// The key: the match's own `key:`, else the definition's.
    pub key: Option<Expr>,
    /// Where [`Ctx::key`] caches the key: the same for keys written alike in any view.
    pub key_slot: usize,
    /// For `Track`: whether the event is remembered as `seen[type]` of its key. Not
    /// when no expression of the view reads `seen` (see `Reads::seen`): nothing
    /// would ever read it, and it would hold the event until the key closes.
    pub keep: bool,
}

impl Role {
    /// The match's condition (none holds); an evaluation failure is false, and
    /// counted in `errors`.
    pub fn holds(&self, scope: &Scope<'_>, errors: &mut u64) -> bool {
        match self.matcher.as_ref().and_then(|m| m.condition.as_ref()) {
            Some(condition) => condition.eval_condition(scope).unwrap_or_else(|| {
                *errors += 1;
                false
            }),
            None => true,
        }
    }
}

/// `label=value,label2=value2`, or `""` without `group_by`; `None` when a label fails
/// to evaluate. Values are escaped ([`push_escaped`]), so different values never
/// make the same group.
pub fn group_of(group_by: &[(String, Expr)], scope: &Scope<'_>) -> Option<String> {
    let mut group = String::new();
    for (i, (label, expr)) in group_by.iter().enumerate() {
        let value = expr.eval_str(scope).ok()?;
        if i > 0 {
            group.push(',');
        }
        group.push_str(label);
        group.push('=');
        push_escaped(&mut group, &value);
    }
    Some(group)
}

/// Appends `value` with `\`, `,` and `=` escaped by a backslash: a value in a group
/// (`label=value,...`) cannot end its label or start another, and a key reported as
/// a group of its own (a level KPI's per-key rows) has no unescaped `=`, so it
/// never reads as a `group_by` group.
pub fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// `value` escaped as [`push_escaped`] does.
pub fn escaped(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_escaped(&mut out, value);
    out
}

/// Positions of a key's tracked events, oldest first.
pub fn seen_positions(seen: &Seen) -> Vec<u64> {
    let mut positions: Vec<u64> = seen.events().map(|e| e.position()).collect();
    positions.sort_unstable();
    positions
}

/// `#[serde(with = "seen_codec")]` for a [`Seen`].
pub mod seen_codec {
    use super::*;
    use crate::codec::Kept;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(seen: &Seen, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(seen.events().map(|e| Kept(e.clone())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Seen, D::Error> {
        let entries: Vec<Kept> = Vec::deserialize(deserializer)?;
        Ok(entries.into_iter().map(|e| e.0).collect())
    }
}
