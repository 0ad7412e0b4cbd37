//! Property: views are a function of the events alone. Applying a random event sequence
//! in one go, or with restarts (encode, decode) at random points, or rebuilding one view
//! on its own, gives the same bytes and the same reports.

mod support;

use std::sync::Arc;

use opsflow_definitions::{Definitions, EventData};
use opsflow_views::ViewSet;
use proptest::prelude::*;
use support::{TYPES, default_definitions, nanos, sample_data};

/// One generated event: a type, a key among three, a number, a time step and a flag.
#[derive(Debug, Clone)]
struct Step {
    type_index: usize,
    key: u8,
    amount: u32,
    /// Minutes since the previous event; negative for a late event.
    step_minutes: i64,
    flag: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0..TYPES.len(),
        0u8..3,
        0u32..20_000,
        prop_oneof![8 => 0i64..600, 1 => 0i64..8_000, 1 => -600i64..0],
        any::<bool>(),
    )
        .prop_map(|(type_index, key, amount, step_minutes, flag)| Step {
            type_index,
            key,
            amount,
            step_minutes,
            flag,
        })
}

fn events(steps: &[Step]) -> Vec<EventData> {
    let mut time = nanos("2026-11-01T00:00:00Z");
    let minute = 60_000_000_000i64;
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            time += s.step_minutes * minute;
            let event_type = TYPES[s.type_index];
            EventData {
                position: i as u64 + 1,
                version: 0,
                stream: format!("s/K-{}", s.key),
                source: "prop".into(),
                id: format!("e{i}"),
                event_type: event_type.into(),
                time,
                data: opsflow_definitions::Data::fields_of(sample_data(event_type, s.key, s.amount, s.flag, time, i)),
                metadata: Default::default(),
            }
        })
        .collect()
}

fn all_at_once(defs: &Definitions, events: &[EventData]) -> ViewSet {
    let mut views = ViewSet::new(defs);
    for event in events {
        views.apply(event);
    }
    views
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn restarts_change_nothing(steps in prop::collection::vec(step(), 1..160), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6), view in any::<prop::sample::Index>()) {
        let defs = default_definitions();
        let events = events(&steps);
        let straight = all_at_once(&defs, &events);

        let mut cut_points: Vec<usize> = cuts.iter().map(|c| c.index(events.len())).collect();
        cut_points.sort_unstable();
        // Applied as the runtime applies them, shared whole (the straight run keeps
        // copies of what views read): the encoded state is the same.
        let mut views = ViewSet::new(&defs);
        for (i, event) in events.iter().enumerate() {
            views.apply_shared(&Arc::new(event.clone()));
            if cut_points.binary_search(&i).is_ok() {
                views = ViewSet::decode(&defs, views.encode()).expect("decodes");
                prop_assert!(views.stale_views().is_empty());
            }
        }
        prop_assert_eq!(views.position(), straight.position());
        prop_assert_eq!(views.clock(), straight.clock());
        prop_assert!(views.encode() == straight.encode(), "encoded state differs after restarts");
        prop_assert_eq!(views.kpis(), straight.kpis());
        prop_assert_eq!(views.controls(), straight.controls());

        // One view rebuilt alone, uninteresting events skipped with their time, is the
        // same view: swapping it in changes nothing.
        let names = straight.view_names();
        let name = names[view.index(names.len())].clone();
        let mut alone = ViewSet::only(&defs, &[name.as_str()]);
        for event in &events {
            if alone.interested(&event.event_type) {
                alone.apply_shared(&Arc::new(event.clone()));
            } else {
                alone.skip_event(event.position, event.time);
            }
        }
        let rebuilt = alone.take_view(&name).expect("the view is there");
        let mut swapped = straight.clone();
        swapped.put_view(rebuilt);
        prop_assert!(swapped.encode() == straight.encode(), "rebuilding {} alone differs", name);
    }
}
