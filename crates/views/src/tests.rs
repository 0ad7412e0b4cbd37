//! Unit tests of the view set as a whole: each kind on small inline definitions,
//! evaluation errors, bounded state, encoding and decoding, swapping views.

use opsflow_definitions::{Definitions, EventData};
use serde_json::json;

use crate::{FORMAT, Status, VIOLATIONS_KEPT, ViewError, ViewSet};

const HOUR: i64 = 3_600_000_000_000;
/// 2026-11-21T00:00:00Z.
const T0: i64 = 1_795_219_200_000_000_000;

fn defs(yaml: &str) -> Definitions {
    Definitions::from_files(&[("t.yaml".to_string(), yaml.to_string())]).unwrap_or_else(|e| panic!("{e}"))
}

fn event(position: u64, event_type: &str, time: i64, data: serde_json::Value) -> EventData {
    EventData {
        position,
        event_type: event_type.into(),
        time,
        data: opsflow_definitions::Data::fields_of(data),
        ..EventData::default()
    }
}

fn feed(views: &mut ViewSet, events: &[(&str, i64, serde_json::Value)]) {
    for (event_type, time, data) in events {
        let position = views.position() + 1;
        views.apply(&event(position, event_type, *time, data.clone()));
    }
}

const DURATION: &str = r#"
kpis:
  - name: cycle
    kind: duration
    key: event.data.id
    start: { type: a.start }
    end: { type: a.end }
    close: [a.cancel]
    target: { stat: p90, green: "<= 2h", amber: "<= 3h" }
"#;

#[test]
fn duration_samples_and_drops_keys() {
    let d = defs(DURATION);
    let mut views = ViewSet::new(&d);
    feed(
        &mut views,
        &[
            ("a.start", T0, json!({"id": "1"})),
            ("a.start", T0, json!({"id": "2"})),
            ("a.start", T0, json!({"id": "3"})),
            ("a.end", T0 + HOUR, json!({"id": "1"})),
            ("a.cancel", T0 + HOUR, json!({"id": "2"})),
            ("a.end", T0 + 2 * HOUR, json!({"id": "2"})),
        ],
    );
    assert_eq!(
        views.view("cycle").map(|v| v.keys()),
        Some(1),
        "1 ended, 2 cancelled, 3 open"
    );
    let report = &views.kpis()[0];
    assert_eq!(report.kind, "duration");
    assert_eq!(report.target.as_deref(), Some("p90 <= 2h, amber <= 3h"));
    let day = report.values.iter().find(|v| v.window == "24h").unwrap();
    assert_eq!(day.stats["count"], 1.0);
    assert_eq!(day.headline, Some(3600.0));
    assert_eq!(day.status, Status::Green);
}

#[test]
fn failed_keys_groups_and_values_count_as_eval_errors() {
    let d = defs(
        r#"
kpis:
  - name: total
    kind: sum
    on: { type: x }
    value: event.data.amount
    group_by: { who: event.data.who }
"#,
    );
    let mut views = ViewSet::new(&d);
    feed(
        &mut views,
        &[
            ("x", T0, json!({"amount": 2, "who": "a"})),
            ("x", T0, json!({"amount": "two", "who": "a"})),
            ("x", T0, json!({"amount": 3})),
            ("x", T0, json!({"amount": 5, "who": "b"})),
        ],
    );
    assert_eq!(views.eval_errors()["total"], 2);
    let all = views.kpis()[0]
        .values
        .iter()
        .find(|v| v.window == "1h" && v.group.is_empty())
        .cloned()
        .unwrap();
    assert_eq!(all.stats["sum"], 7.0);
    assert_eq!(all.stats["count"], 2.0);
}

#[test]
fn uninteresting_events_only_move_position_and_clock() {
    let d = defs(DURATION);
    let mut views = ViewSet::new(&d);
    assert!(views.interested("a.start") && views.interested("a.cancel"));
    assert!(!views.interested("b.other"));
    views.apply(&event(1, "b.other", T0, json!(null)));
    views.skip_event(2, T0 + HOUR);
    views.skip_to(5);
    assert_eq!((views.position(), views.clock()), (5, T0 + HOUR));
    let before = views.encode();
    assert_eq!(ViewSet::decode(&d, before.as_slice()).unwrap().encode(), before);
}

#[test]
fn violations_keep_the_newest_thousand_and_count_all() {
    let d = defs(
        r#"
controls:
  - name: approved
    kind: requires
    key: event.data.id
    when: { type: ship }
    requires: { type: approve }
"#,
    );
    let mut views = ViewSet::new(&d);
    let n = VIOLATIONS_KEPT as u64 + 5;
    for i in 1..=n {
        views.apply(&event(i, "ship", T0 + i as i64, json!({"id": format!("K{i}")})));
    }
    let report = &views.controls()[0];
    assert_eq!(report.violations_total, n);
    assert_eq!(report.checked, n);
    assert_eq!(report.violations.len(), VIOLATIONS_KEPT);
    assert_eq!(report.violations[0].key, "K6");
    assert_eq!(report.violations.last().map(|v| v.position), Some(n));
    assert_eq!(report.status, Status::Red);
    assert_eq!(views.view("approved").map(|v| v.keys()), Some(0));
}

#[test]
fn decode_refuses_other_formats_and_corrupt_bytes_without_panicking() {
    let d = defs(DURATION);
    let mut views = ViewSet::new(&d);
    feed(
        &mut views,
        &[
            ("a.start", T0, json!({"id": "1"})),
            ("a.end", T0 + HOUR, json!({"id": "1"})),
        ],
    );
    let bytes = views.encode();
    assert_eq!(bytes[0], FORMAT);
    let mut other = bytes.clone();
    other[0] = FORMAT + 1;
    assert_eq!(
        ViewSet::decode(&d, other.as_slice()).unwrap_err(),
        ViewError::Format {
            found: FORMAT + 1,
            expected: FORMAT
        }
    );
    assert!(matches!(ViewSet::decode(&d, Vec::new()), Err(ViewError::Corrupt(_))));
    // Every truncation and many bit flips: an error or a set, never a panic.
    for len in 0..bytes.len() {
        let _ = ViewSet::decode(&d, &bytes[..len]);
    }
    for i in 1..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x5a;
        let _ = ViewSet::decode(&d, flipped.as_slice());
    }
}

#[test]
fn changed_and_new_views_decode_empty_and_stale() {
    let old = defs(DURATION);
    let mut views = ViewSet::new(&old);
    feed(
        &mut views,
        &[
            ("a.start", T0, json!({"id": "1"})),
            ("a.end", T0 + HOUR, json!({"id": "1"})),
        ],
    );
    let bytes = views.encode();

    // Same definitions: nothing stale, same state.
    let same = ViewSet::decode(&old, bytes.as_slice()).unwrap();
    assert!(same.stale_views().is_empty());
    assert_eq!(same.kpis(), views.kpis());

    // `cycle` changed (a new close type), `count_a` is new.
    let new = defs(&format!(
        "{}\n  - name: count_a\n    kind: count\n    on: {{ type: a.end }}\n",
        DURATION.replace("close: [a.cancel]", "close: [a.cancel, a.abort]")
    ));
    let mut decoded = ViewSet::decode(&new, bytes.as_slice()).unwrap();
    assert_eq!(decoded.stale_views(), ["cycle".to_string(), "count_a".to_string()]);
    assert_eq!(decoded.position(), 2);
    assert_eq!(
        decoded.kpis()[0]
            .values
            .iter()
            .find(|v| v.window == "24h")
            .unwrap()
            .stats["count"],
        0.0
    );

    // Rebuild `cycle` alone and swap it in.
    let mut alone = ViewSet::only(&new, &["cycle"]);
    feed(
        &mut alone,
        &[
            ("a.start", T0, json!({"id": "1"})),
            ("a.end", T0 + HOUR, json!({"id": "1"})),
        ],
    );
    // A stale view goes on applying events, but stored (a checkpoint or a snapshot
    // taken while it is rebuilt) it comes back stale: what it holds is partial.
    feed(&mut decoded, &[("a.end", T0 + 2 * HOUR, json!({"id": "2"}))]);
    let again = ViewSet::decode(&new, decoded.encode()).unwrap();
    assert_eq!(again.stale_views(), ["cycle".to_string(), "count_a".to_string()]);
    assert_eq!(again.position(), 3);

    decoded.put_view(alone.take_view("cycle").unwrap());
    assert_eq!(decoded.stale_views(), ["count_a".to_string()]);
    let again = ViewSet::decode(&new, decoded.encode()).unwrap();
    assert_eq!(
        again.stale_views(),
        ["count_a".to_string()],
        "a rebuilt view is stored whole"
    );
    assert_eq!(
        decoded.kpis()[0]
            .values
            .iter()
            .find(|v| v.window == "24h")
            .unwrap()
            .stats["count"],
        1.0
    );
    assert_eq!(decoded.fingerprint("cycle"), new.kpis[0].fingerprint.as_str().into());
}

#[test]
fn level_and_open_report_now() {
    let d = defs(
        r#"
kpis:
  - name: stock
    kind: level
    key: event.data.sku
    set: [{ type: counted, value: event.data.qty }]
    add: [{ type: adjusted, value: event.data.delta }]
    limit: [{ type: reorder, value: event.data.point }]
  - name: tickets
    kind: open
    key: event.data.id
    open: [{ type: opened }]
    close: [closed]
    group_by: { queue: event.data.queue }
"#,
    );
    let mut views = ViewSet::new(&d);
    feed(
        &mut views,
        &[
            ("counted", T0, json!({"sku": "A", "qty": 10})),
            ("adjusted", T0, json!({"sku": "A", "delta": -4})),
            ("reorder", T0, json!({"sku": "A", "point": 8})),
            ("adjusted", T0, json!({"sku": "B", "delta": -1})),
            ("opened", T0, json!({"id": "1", "queue": "q1"})),
            ("opened", T0 + HOUR, json!({"id": "2", "queue": "q2"})),
            ("closed", T0 + HOUR, json!({"id": "1"})),
        ],
    );
    let kpis = views.kpis();
    let stock = &kpis[0];
    assert_eq!(stock.values[0].group, "");
    assert_eq!(stock.values[0].stats["keys"], 2.0);
    assert_eq!(stock.values[0].stats["below_limit"], 1.0);
    assert_eq!(stock.values[0].stats["at_or_below_zero"], 1.0);
    let a = stock.values.iter().find(|v| v.group == "A").unwrap();
    assert_eq!((a.stats["value"], a.stats["limit"], a.stats["usage"]), (6.0, 8.0, 0.75));
    let tickets = &kpis[1];
    let groups: Vec<(&str, f64)> = tickets
        .values
        .iter()
        .map(|v| (v.group.as_str(), v.stats["open"]))
        .collect();
    assert_eq!(
        groups,
        [
            ("", 1.0),
            ("queue=q2", 1.0),
            ("queue=q2,state=opened", 1.0),
            ("state=opened", 1.0)
        ]
    );
    assert_eq!(views.view("tickets").map(|v| v.keys()), Some(1));
}

#[test]
fn group_values_and_per_key_rows_are_escaped_so_groups_never_merge() {
    let d = defs(
        r#"
kpis:
  - name: grp
    kind: count
    on: { type: g }
    group_by: { x: event.data.x, y: event.data.y }
  - name: lvl
    kind: level
    key: event.data.sku
    set: [{ type: s, value: event.data.v }]
    group_by: { team: event.data.team }
"#,
    );
    let mut views = ViewSet::new(&d);
    feed(
        &mut views,
        &[
            ("g", T0, json!({"x": "1,y=2", "y": "3"})),
            ("g", T0, json!({"x": "1", "y": "2,y=3"})),
            ("g", T0, json!({"x": "a\\", "y": "b"})),
            ("s", T0, json!({"sku": "S1", "team": "a", "v": 5})),
            ("s", T0, json!({"sku": "team=a", "team": "b", "v": -7})),
        ],
    );
    let kpis = views.kpis();
    let groups = |k: usize| -> Vec<String> {
        let mut g: Vec<String> = kpis[k].values.iter().map(|v| v.group.clone()).collect();
        g.sort();
        g.dedup();
        g
    };
    assert_eq!(
        groups(0),
        ["", r"x=1,y=2\,y\=3", r"x=1\,y\=2,y=3", r"x=a\\,y=b"],
        "three groups, none merged"
    );
    // A key is a row of its own; escaped, it never reads as a `group_by` group.
    assert_eq!(groups(1), ["", "S1", "team=a", "team=b", r"team\=a"]);
    let rows = kpis[1].values.iter().filter(|v| v.group == "team=a").count();
    assert_eq!(rows, 1, "{:?}", kpis[1].values);
}

#[test]
fn tracked_events_are_kept_only_for_views_that_read_seen() {
    let d = defs(
        r#"
kpis:
  - name: plain
    kind: open
    key: event.data.id
    open: [{ type: opened }]
    track: [picked]
    close: [closed]
  - name: reading
    kind: open
    key: event.data.id
    open: [{ type: opened }]
    track: [picked]
    close: [closed]
    state: "'picked' in seen ? 'in hand' : 'waiting'"
  - name: cycle
    kind: duration
    key: event.data.id
    start: { type: opened }
    end: { type: closed }
    track: [picked]
"#,
    );
    let events = [
        ("opened", T0, json!({"id": "1"})),
        ("picked", T0 + HOUR, json!({"id": "1"})),
    ];
    // Each view on its own: the events its stored state keeps.
    let kept = |name: &str| {
        let mut views = ViewSet::only(&d, &[name]);
        feed(&mut views, &events);
        let state = views.kpis()[0]
            .values
            .iter()
            .map(|v| v.group.clone())
            .find(|g| g.starts_with("state="));
        let kept = crate::StoredSet::open(views.encode()).unwrap().kept_events();
        (kept, state)
    };
    // Both open views move their state; only the one whose state reads `seen`
    // remembers the picked event. The duration keeps its start event, not the
    // tracked one nothing reads.
    assert_eq!(kept("plain"), (0, Some("state=picked".to_string())));
    assert_eq!(kept("reading"), (1, Some("state=in hand".to_string())));
    assert_eq!(kept("cycle"), (1, None));
}

const CLOSING: &str = r#"
controls:
  - name: approved
    kind: requires
    key: event.data.id
    track: [o.placed]
    when: { type: o.shipped }
    requires: { type: o.approved }
    close: [o.cancelled]
  - name: follow_up
    kind: within
    key: event.data.id
    after: { type: i.resolved }
    expect: { type: i.reviewed }
    within: 1h
    close: [i.reopened]
"#;

#[test]
fn close_drops_control_state_and_withdraws_obligations() {
    let d = defs(CLOSING);
    let mut views = ViewSet::new(&d);
    feed(
        &mut views,
        &[
            ("o.placed", T0, json!({"id": "A"})),
            ("o.approved", T0, json!({"id": "A"})),
            ("o.cancelled", T0, json!({"id": "A"})),
            // After the close, the approval is forgotten: shipping A is a violation.
            ("o.shipped", T0, json!({"id": "A"})),
            ("i.resolved", T0, json!({"id": "X"})),
            ("i.reopened", T0 + HOUR / 2, json!({"id": "X"})),
            // Well past the deadline: the withdrawn obligation is not a violation.
            ("o.placed", T0 + 3 * HOUR, json!({"id": "B"})),
            ("o.cancelled", T0 + 3 * HOUR, json!({"id": "B"})),
        ],
    );
    let controls = views.controls();
    assert_eq!(controls[0].violations_total, 1);
    assert_eq!(controls[0].violations[0].evidence, vec![4]);
    assert_eq!(controls[1].violations_total, 0);
    assert!(controls[1].pending.is_empty());
    let keys: usize = views
        .view_names()
        .iter()
        .filter_map(|n| views.view(n))
        .map(|v| v.keys())
        .sum();
    assert_eq!(keys, 0, "closed keys hold no state");
}

#[test]
fn the_default_views_read_few_fields_and_keep_less() {
    let set = ViewSet::new(&opsflow_definitions::builtin());
    let opsflow_definitions::Fields::Only(fields) = set.data_fields() else {
        panic!("the default views should not need whole events")
    };
    for needed in [
        "order_id",
        "promised_by",
        "channel",
        "severity",
        "approver",
        "requester",
    ] {
        assert!(fields.contains(needed), "{needed} missing from {fields:?}");
    }
    for unread in ["lines", "customer", "currency"] {
        assert!(!fields.contains(unread), "{unread} is decoded for nothing");
    }
    // A kept order placement holds what the views read of it, no more.
    let mut views = ViewSet::new(&opsflow_definitions::builtin());
    let placed = event(
        1,
        "order.placed",
        0,
        serde_json::json!({"order_id": "O-1", "customer": "c", "total": 5, "currency": "EUR",
            "promised_by": "2026-11-25T00:00:00Z", "channel": "web", "lines": [{"sku": "S"}]}),
    );
    views.apply(&placed);
    let bytes = views.encode();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("promised_by") && text.contains("channel"));
    assert!(!text.contains("currency") && !text.contains("lines"), "kept whole");
}

#[test]
fn views_decoded_apart_and_joined_equal_views_decoded_together() {
    let d = opsflow_definitions::builtin();
    let order = |n: u32| {
        json!({"order_id": format!("O-{n}"), "total": 20_000 * n, "channel": "web",
        "promised_by": "2026-11-22T00:00:00Z", "approver": "a", "requester": "r"})
    };
    let mut before = Vec::new();
    for n in 0..40 {
        before.push(("order.placed", T0 + i64::from(n) * HOUR / 10, order(n)));
        if n % 3 != 0 {
            before.push(("order.approved", T0 + HOUR, order(n)));
        }
        if n % 2 == 0 {
            before.push(("order.shipped", T0 + 2 * HOUR, order(n)));
        }
    }
    let after: Vec<_> = (0..40).map(|n| ("order.delivered", T0 + 30 * HOUR, order(n))).collect();
    let mut views = ViewSet::new(&d);
    feed(&mut views, &before);
    let bytes = views.encode();

    let mut together = ViewSet::decode(&d, bytes.as_slice()).unwrap();
    feed(&mut together, &after);

    let stored = crate::StoredSet::open(bytes).unwrap();
    let names = together.view_names();
    let (a, b): (Vec<&str>, Vec<&str>) = names.iter().map(String::as_str).partition(|n| n.len() % 2 == 0);
    let mut apart = std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            let mut set = stored.decode(ViewSet::only(&d, &b)).unwrap();
            feed(&mut set, &after);
            set
        });
        let mut set = stored.decode(ViewSet::only(&d, &a)).unwrap();
        feed(&mut set, &after);
        set.join(&d, other.join().unwrap()).unwrap();
        set
    });
    assert_eq!(apart.view_names(), names, "definitions order");
    assert_eq!(apart.kpis(), together.kpis());
    assert_eq!(apart.controls(), together.controls());
    assert_eq!(apart.encode(), together.encode());
    // Joining views of another moment is refused.
    let behind = stored.decode(ViewSet::only(&d, &[])).unwrap();
    assert!(matches!(apart.join(&d, behind), Err(ViewError::Corrupt(_))));
}

#[test]
fn a_lazily_decoded_set_decodes_kept_events_when_read_and_reports_a_damaged_one() {
    let d = defs(
        r#"
kpis:
  - name: cycle
    kind: duration
    key: event.data.id
    start: { type: opened }
    end: { type: closed, if: "start.data.code == 'zq'" }
"#,
    );
    let mut views = ViewSet::new(&d);
    feed(
        &mut views,
        &[
            ("opened", T0, json!({"id": "1", "code": "zq"})),
            ("opened", T0, json!({"id": "2", "code": "ok"})),
        ],
    );
    let bytes = views.encode();
    let close = |set: &mut ViewSet| {
        let position = set.position() + 1;
        set.apply(&event(position, "closed", T0 + HOUR, json!({"id": "1"})));
    };
    // Decoded lazily, the set answers as an eager decode does.
    let stored = crate::StoredSet::open(bytes.clone()).unwrap();
    let (mut eager, mut lazy) = (
        stored.decode(ViewSet::new(&d)).unwrap(),
        stored.decode_lazily(ViewSet::new(&d)).unwrap(),
    );
    close(&mut eager);
    close(&mut lazy);
    assert_eq!(lazy.kpis(), eager.kpis());
    assert!(!stored.lazy_failed());
    // A kept event's body damaged (as a state stored before checksums could be): the
    // lazy decode still opens, and says so once the replay reads that event.
    let at = bytes.windows(2).position(|w| w == b"zq").unwrap();
    assert_eq!(
        bytes.windows(2).filter(|w| *w == b"zq").count(),
        1,
        "stored once, shared"
    );
    let mut damaged = bytes;
    damaged[at] = 0xff;
    let stored = crate::StoredSet::open(damaged).unwrap();
    assert!(stored.decode(ViewSet::new(&d)).is_err(), "an eager decode refuses it");
    let mut lazy = stored.decode_lazily(ViewSet::new(&d)).unwrap();
    assert!(!stored.lazy_failed());
    close(&mut lazy);
    assert!(stored.lazy_failed());
}

#[test]
fn rebuilt_views_spliced_into_a_stored_set_equal_them_put_into_the_decoded_set() {
    let d = opsflow_definitions::builtin();
    let order = |n: u32| {
        json!({"order_id": format!("O-{n}"), "total": 20_000 * n, "channel": "web",
        "promised_by": "2026-11-22T00:00:00Z", "approver": "a", "requester": "r", "note": "n"})
    };
    let mut events = Vec::new();
    for n in 0..40 {
        events.push(("order.placed", T0 + i64::from(n) * HOUR / 10, order(n)));
        if n % 3 != 0 {
            events.push(("order.approved", T0 + HOUR, order(n)));
        }
        if n % 2 == 0 {
            events.push(("order.shipped", T0 + 2 * HOUR, order(n)));
        }
        if n % 4 == 0 {
            events.push(("order.delivered", T0 + 30 * HOUR, order(n)));
        }
    }
    let mut views = ViewSet::new(&d);
    feed(&mut views, &events);
    let stored = views.encode();
    let kept = |bytes: &[u8]| crate::StoredSet::open(bytes.to_vec()).unwrap().kept_events();

    // What a rebuild merged into a snapshot by decoding it, putting the rebuilt
    // views in and encoding it again.
    let merged = |d: &Definitions, stored: &[u8], fresh: &ViewSet| {
        let mut set = ViewSet::decode(d, stored).unwrap();
        let mut copy = ViewSet::decode(d, fresh.encode()).unwrap();
        for name in fresh.view_names() {
            set.put_view(copy.take_view(&name).unwrap());
        }
        set.encode()
    };
    let rebuilt = |d: &Definitions, names: &[&str]| {
        let mut fresh = ViewSet::only(d, names);
        feed(&mut fresh, &events);
        fresh
    };

    // Same definitions: read back, the same set; events both keep are stored once.
    let fresh = rebuilt(&d, &["order_on_time_rate", "large_orders_approved_before_shipping"]);
    let (spliced, added) = fresh.splice_into(&d, stored.clone()).unwrap().unwrap();
    let read = ViewSet::decode(&d, spliced.as_slice()).unwrap();
    assert!(read.stale_views().is_empty());
    assert_eq!(read.kpis(), views.kpis());
    assert_eq!(read.controls(), views.controls());
    assert_eq!(read.encode(), merged(&d, &stored, &fresh));
    assert!(kept(&stored) > 0);
    assert_eq!((kept(&spliced), added), (kept(&stored), 0), "no event stored twice");
    // Spliced again (a second rebuild): nothing grows.
    let (again, _) = fresh.splice_into(&d, spliced.clone()).unwrap().unwrap();
    assert_eq!(again.len(), spliced.len());

    // The rebuilt views' state is what is stored, not the snapshot's own: here the
    // snapshot's `order_on_time_rate` is empty.
    let mut partial = views.clone();
    partial.take_view("order_on_time_rate");
    assert_ne!(partial.kpis(), views.kpis());
    let (spliced, _) = fresh.splice_into(&d, partial.encode()).unwrap().unwrap();
    let read = ViewSet::decode(&d, spliced.as_slice()).unwrap();
    assert_eq!(read.kpis(), views.kpis());
    assert_eq!(read.encode(), merged(&d, &partial.encode(), &fresh));

    // Changed definitions: the stored set's changed view is stale, the rebuilt one
    // replaces it; a view that now reads more of kept events keeps new copies of them.
    let yaml: Vec<(String, String)> = opsflow_definitions::BUILTIN_FILES
        .iter()
        .map(|(name, text)| {
            let text = text.replace(
                "event.time <= timestamp(seen['order.placed'].data.promised_by)\n      &&",
                "event.time <= timestamp(seen['order.placed'].data.promised_by)\n      && seen['order.placed'].data.note == 'n' &&",
            );
            (name.to_string(), text)
        })
        .collect();
    let changed = Definitions::from_files(&yaml).unwrap();
    assert_ne!(changed.version, d.version);
    assert_ne!(
        changed.kpi("perfect_order_rate").unwrap().fingerprint,
        d.kpi("perfect_order_rate").unwrap().fingerprint
    );
    // Two rebuilt views that keep the same events, from sets applied apart (so as
    // copies, found alike by position rather than by address).
    let mut fresh = rebuilt(&changed, &["perfect_order_rate"]);
    fresh
        .join(&changed, rebuilt(&changed, &["order_on_time_rate"]))
        .unwrap();
    let (spliced, added) = fresh.splice_into(&changed, stored.clone()).unwrap().unwrap();
    let read = ViewSet::decode(&changed, spliced.as_slice()).unwrap();
    assert!(read.stale_views().is_empty());
    assert_eq!(read.encode(), merged(&changed, &stored, &fresh));
    assert!(added > 0);
    assert_eq!(kept(&spliced), kept(&stored) + added);
    assert_eq!(added, kept(&fresh.encode()), "each new event once");
    // Merged (what the runtime stores): written whole instead, with no unused event.
    let whole = fresh.merge_into(&changed, stored.clone()).unwrap().unwrap();
    assert_eq!(whole, merged(&changed, &stored, &fresh));
    assert!(kept(&whole) <= kept(&spliced));
    // Under the same definitions it is the splice.
    let same = rebuilt(&d, &["order_on_time_rate"]);
    assert_eq!(
        same.merge_into(&d, stored.clone()).unwrap(),
        same.splice_into(&d, stored.clone()).unwrap().map(|(bytes, _)| bytes)
    );

    // Another position: not spliced.
    let mut ahead = rebuilt(&d, &["order_on_time_rate"]);
    feed(&mut ahead, &[("order.placed", T0, order(99))]);
    assert!(ahead.splice_into(&d, stored.clone()).unwrap().is_none());
    // Damaged: an error, not a panic.
    assert!(
        fresh
            .splice_into(&changed, stored[..stored.len() / 2].to_vec())
            .is_err()
    );
}

#[test]
fn conditions_that_fail_count_as_errors_only_where_they_decide() {
    let d = defs(
        r#"
controls:
  - name: pm
    kind: within
    key: event.data.id
    after: { type: i.resolved, if: "event.data.sev == 'sev1'" }
    expect: { type: i.reviewed }
    within: 1h
"#,
    );
    let mut views = ViewSet::new(&d);
    feed(
        &mut views,
        &[
            // No sev: the condition fails, an error; no obligation.
            ("i.resolved", T0, json!({"id": "1"})),
            ("i.resolved", T0, json!({"id": "2", "sev": "sev1"})),
            // An obligation stands for 2: its condition is not looked at again.
            ("i.resolved", T0 + 1, json!({"id": "2"})),
        ],
    );
    assert_eq!(views.eval_errors()["pm"], 1);
    assert_eq!(views.controls()[0].pending.len(), 1);
}
