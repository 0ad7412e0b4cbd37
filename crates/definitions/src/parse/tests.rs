use super::check_one;
use crate::{Buckets, CheckErrors, ControlKind, Definitions, KpiKind, Op};

const SEC: i64 = 1_000_000_000;

fn ok(content: &str) -> Definitions {
    check_one("defs.yaml", content).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(content: &str) -> CheckErrors {
    match check_one("defs.yaml", content) {
        Ok(_) => panic!("expected errors for:\n{content}"),
        Err(e) => e,
    }
}

/// The only error, as `file:line:column: message`.
fn only_error(content: &str) -> String {
    let e = errors(content);
    assert_eq!(e.len(), 1, "{e}");
    e.errors[0].to_string()
}

#[track_caller]
fn assert_error(content: &str, expected_prefix: &str, contains: &[&str]) {
    let e = only_error(content);
    assert!(
        e.starts_with(expected_prefix),
        "{e}\n  does not start with\n{expected_prefix}"
    );
    for c in contains {
        assert!(e.contains(c), "{e}\n  does not contain\n{c}");
    }
}

const COUNT: &str = "kpis:\n  - name: placed\n    kind: count\n    on: { type: order.placed }\n";

// --- every field of the model ---

#[test]
fn duration_kpi_fills_every_field() {
    let d = ok(r#"
kpis:
  - name: order_cycle_time
    description: Order placed to delivered
    kind: duration
    key: event.data.order_id
    start: { type: order.placed }
    end: { type: order.delivered, if: "event.data.complete" }
    close: [order.cancelled]
    track: [order.shipped]
    group_by: { channel: start.data.channel, big: "start.data.total > 1000" }
    windows: [1h, 30d]
    buckets: none
    target: { stat: p50, green: "<= 72h", amber: "< 4d" }
"#);
    let k = d.kpi("order_cycle_time").expect("defined");
    assert_eq!(k.description, "Order placed to delivered");
    assert_eq!((k.origin.file.as_str(), k.origin.line), ("defs.yaml", 3));
    assert_eq!(k.key.as_ref().map(|e| e.source()), Some("event.data.order_id"));
    let KpiKind::Duration { start, end } = &k.kind else {
        panic!("{:?}", k.kind)
    };
    assert_eq!(start.event_type, "order.placed");
    assert!(start.condition.is_none() && start.key.is_none());
    assert_eq!(end.event_type, "order.delivered");
    assert_eq!(end.condition.as_ref().map(|e| e.source()), Some("event.data.complete"));
    assert_eq!(k.close, ["order.cancelled"]);
    assert_eq!(k.track, ["order.shipped"]);
    let labels: Vec<_> = k.group_by.iter().map(|(l, e)| (l.as_str(), e.source())).collect();
    assert_eq!(
        labels,
        [("channel", "start.data.channel"), ("big", "start.data.total > 1000")]
    );
    assert_eq!(k.windows.len(), 2);
    assert_eq!(k.windows[1].label, "30d");
    assert_eq!(k.windows[1].length_nanos, 30 * 86_400 * SEC);
    assert_eq!(k.windows[1].bucket_nanos, 27_000 * SEC);
    assert_eq!(k.buckets, Buckets::None);
    let t = k.target.as_ref().expect("target");
    assert_eq!(t.stat, "p50");
    assert_eq!((t.green.op, t.green.value), (Op::Le, 72.0 * 3600.0));
    let amber = t.amber.expect("amber");
    assert_eq!((amber.op, amber.value), (Op::Lt, 4.0 * 86_400.0));
    assert_eq!(k.fingerprint.len(), 16);
    assert!(d.version.starts_with("sha256:"));
}

#[test]
fn defaults_windows_buckets_and_headline_stat() {
    let d = ok(r#"
kpis:
  - name: on_time
    kind: ratio
    on: { type: order.delivered }
    good: "event.data.on_time == true"
    target: { green: ">= 95%" }
"#);
    let k = &d.kpis[0];
    assert_eq!(k.description, "");
    assert!(k.key.is_none());
    let labels: Vec<_> = k
        .windows
        .iter()
        .map(|w| (w.label.as_str(), w.bucket_nanos / SEC))
        .collect();
    assert_eq!(labels, [("1h", 60), ("24h", 900), ("7d", 3600)]);
    assert_eq!(k.buckets, Buckets::Day);
    let t = k.target.as_ref().expect("target");
    assert_eq!(t.stat, "ratio");
    assert_eq!((t.green.op, t.green.value), (Op::Ge, 0.95));
    assert!(t.amber.is_none());
    assert!(matches!(k.kind, KpiKind::Ratio { keep: false, .. }));
}

#[test]
fn every_kind_of_kpi_reads() {
    let d = ok(r#"
kpis:
  - name: on_time
    kind: ratio
    key: event.data.order_id
    track: [order.placed]
    close: order.cancelled
    keep: true
    on: { type: order.delivered, key: event.data.id }
    good: "event.time <= timestamp(seen['order.placed'].data.promised_by)"
  - name: delays
    kind: count
    on: { type: shipment.delayed }
    group_by: { carrier: event.data.carrier }
  - name: revenue
    kind: sum
    on: { type: order.placed }
    value: event.data.total
    target: { stat: count, green: ">= 10" }
  - name: stock
    kind: level
    key: "event.data.sku + '@' + event.data.location"
    set: [{ type: inventory.counted, value: event.data.quantity }]
    add: { type: inventory.adjusted, value: event.data.delta }
    limit: [{ type: reorder_point.set, value: event.data.reorder_point }]
    target: { stat: usage, green: "<= 90%" }
  - name: open_orders
    kind: open
    key: event.data.order_id
    open: { type: order.placed }
    close: [order.delivered, order.cancelled]
    track: [order.shipped]
    state: "event.type.split('.')[1]"
"#);
    let KpiKind::Ratio { on, good, keep } = &d.kpis[0].kind else {
        panic!()
    };
    assert!(*keep);
    assert_eq!(on.key.as_ref().map(|e| e.source()), Some("event.data.id"));
    assert!(good.source().starts_with("event.time"));
    assert_eq!(d.kpis[0].close, ["order.cancelled"]);
    assert!(matches!(&d.kpis[1].kind, KpiKind::Count { on } if on.event_type == "shipment.delayed"));
    assert!(matches!(&d.kpis[2].kind, KpiKind::Sum { value, .. } if value.source() == "event.data.total"));
    let KpiKind::Level { set, add, limit } = &d.kpis[3].kind else {
        panic!()
    };
    assert_eq!((set.len(), add.len(), limit.len()), (1, 1, 1));
    assert_eq!(add[0].value.as_ref().map(|e| e.source()), Some("event.data.delta"));
    assert!(d.kpis[3].windows.is_empty(), "level KPIs are current values");
    let KpiKind::Open { open, state } = &d.kpis[4].kind else {
        panic!()
    };
    assert_eq!(open[0].event_type, "order.placed");
    assert!(state.is_some());
    assert_eq!(d.kpis[4].close, ["order.delivered", "order.cancelled"]);
}

#[test]
fn every_kind_of_control_reads() {
    let d = ok(r#"
controls:
  - name: approved_before_shipping
    description: An order over 10,000 is not shipped before its approval is granted
    kind: requires
    key: event.data.order_id
    track: [order.placed]
    when: { type: order.shipped, if: "seen['order.placed'].data.total > 10000" }
    requires: { type: approval.granted, key: event.data.subject_id, if: "event.data.subject_type == 'order'" }
  - name: four_eyes
    kind: separation_of_duties
    key: event.data.approval_id
    first: { type: approval.requested, actor: event.data.requester }
    second: { type: approval.granted, actor: event.data.approver }
  - name: postmortem
    kind: within
    key: event.data.incident_id
    after: { type: incident.resolved }
    expect: { type: postmortem.published }
    within: 5d
"#);
    let c = d.control("approved_before_shipping").expect("defined");
    assert_eq!(c.origin.line, 3);
    assert_eq!(c.track, ["order.placed"]);
    let ControlKind::Requires { when, requires } = &c.kind else {
        panic!()
    };
    assert_eq!(when.event_type, "order.shipped");
    assert_eq!(requires.key.as_ref().map(|e| e.source()), Some("event.data.subject_id"));
    let ControlKind::SeparationOfDuties { first, second } = &d.controls[1].kind else {
        panic!()
    };
    assert_eq!(first.actor.as_ref().map(|e| e.source()), Some("event.data.requester"));
    assert_eq!(second.actor.as_ref().map(|e| e.source()), Some("event.data.approver"));
    assert!(matches!(d.controls[2].kind, ControlKind::Within { within_nanos, .. } if within_nanos == 5 * 86_400 * SEC));
}

#[test]
fn editing_one_definition_changes_only_its_fingerprint() {
    let two = |total: &str| {
        ok(&format!(
            "kpis:\n  - name: a\n    kind: count\n    on: {{ type: order.placed }}\n  - name: b\n    kind: sum\n    on: {{ type: order.placed }}\n    value: {total}\n"
        ))
    };
    let before = two("event.data.total");
    let after = two("event.data.amount");
    assert_eq!(before.kpis[0].fingerprint, after.kpis[0].fingerprint);
    assert_ne!(before.kpis[1].fingerprint, after.kpis[1].fingerprint);
    assert_ne!(before.version, after.version);
}

#[test]
fn a_target_or_description_edit_keeps_the_fingerprint() {
    let kpi = |extra: &str| {
        ok(&format!(
            "kpis:\n  - name: a\n    kind: ratio\n    on: {{ type: order.delivered }}\n    good: event.data.ok\n{extra}"
        ))
        .kpis[0]
            .fingerprint
            .clone()
    };
    let plain = kpi("");
    assert_eq!(kpi("    target: { green: \">= 95%\" }\n"), plain);
    assert_eq!(
        kpi("    target: { green: \">= 90%\", amber: \">= 80%\" }\n    description: d\n"),
        plain
    );
    assert_ne!(kpi("    windows: [1h]\n"), plain, "a window is state");
    let control = |description: &str| {
        ok(&format!(
            "controls:\n  - name: c\n    kind: requires\n    key: event.data.id\n    description: {description}\n    when: {{ type: a.b }}\n    requires: {{ type: a.c }}\n"
        ))
        .controls[0]
            .fingerprint
            .clone()
    };
    assert_eq!(control("one"), control("two"));
}

#[test]
fn empty_files_and_sections_are_fine() {
    let d = ok("");
    assert!(d.kpis.is_empty() && d.controls.is_empty());
    ok("# nothing yet\n");
    ok("kpis:\ncontrols: []\n");
}

#[test]
fn files_are_read_sorted_by_name() {
    let count = |name: &str| format!("kpis:\n  - name: {name}\n    kind: count\n    on: {{ type: x }}\n");
    let files = vec![
        ("b.yaml".to_string(), count("second")),
        ("a.yaml".to_string(), count("first")),
    ];
    let d = Definitions::from_files(&files).expect("checks");
    assert_eq!(d.kpis[0].name, "first");
    assert_eq!(d.kpis[1].origin.file, "b.yaml");
}

// --- one test per kind of check error ---

#[test]
fn yaml_syntax_error() {
    assert_error("kpis:\n  - name: a\n    on: [x\n", "defs.yaml:4:1: YAML syntax:", &[]);
    assert_error("kpis:\n\t- name: a\n", "defs.yaml:2:", &["YAML syntax", "tabs"]);
    // The scanner names the value before the tab; the error points at the tab.
    assert_error(
        "kpis:\n  - name: x\n  \tkind: count\n",
        "defs.yaml:3:3: YAML syntax:",
        &["found a tab: YAML indents with spaces only"],
    );
}

#[test]
fn duplicate_yaml_key() {
    assert_error(
        "kpis:\n  - name: a\n    kind: count\n    kind: sum\n",
        "defs.yaml:4:5: duplicate key `kind` (first at line 3)",
        &[],
    );
}

#[test]
fn a_file_that_is_not_a_mapping() {
    assert_error("- a\n- b\n", "defs.yaml:1:1: a definitions file must be a mapping", &[]);
}

#[test]
fn a_second_yaml_document() {
    assert_error(
        &format!("{COUNT}---\nkpis: []\n"),
        "defs.yaml:5:1: a definitions file holds one YAML document",
        &[],
    );
    // A leading `---` is just the start of the only document.
    ok(&format!("---\n{COUNT}"));
}

#[test]
fn unsupported_yaml_features() {
    assert_error("kpis: &a []\n", "defs.yaml:1:", &["anchors"]);
    assert_error("kpis: !!seq []\n", "defs.yaml:1:", &["tags"]);
}

#[test]
fn unknown_top_level_key() {
    assert_error(
        &format!("{COUNT}workflows: []\n"),
        "defs.yaml:5:1: unknown field `workflows` in a definitions file (top level) (allowed: kpis, controls)",
        &[],
    );
}

#[test]
fn unknown_field_in_a_kpi() {
    assert_error(
        &format!("{COUNT}    goal: 3\n"),
        "defs.yaml:5:5: unknown field `goal` in a count KPI (allowed: name, description, kind, group_by, target, on, windows, buckets)",
        &[],
    );
    // A field of another kind is unknown for this one.
    assert_error(
        &format!("{COUNT}    key: event.data.order_id\n"),
        "defs.yaml:5:5: unknown field `key` in a count KPI",
        &[],
    );
    assert_error(
        "kpis:\n  - name: s\n    kind: level\n    key: event.data.sku\n    set: [{ type: a, value: event.data.q }]\n    windows: [1h]\n",
        "defs.yaml:6:5: unknown field `windows` in a level KPI",
        &[],
    );
}

#[test]
fn unknown_field_in_a_control() {
    assert_error(
        "controls:\n  - name: c\n    kind: within\n    key: event.data.id\n    after: { type: a }\n    expect: { type: b }\n    within: 1d\n    deadline: 2d\n",
        "defs.yaml:8:5: unknown field `deadline` in a within control (allowed: name, description, kind, key, after, expect, within, track, close)",
        &[],
    );
}

#[test]
fn unknown_field_in_a_match() {
    assert_error(
        "kpis:\n  - name: placed\n    kind: count\n    on: { type: order.placed, when: x }\n",
        "defs.yaml:4:31: unknown field `when` in a match in `on` (allowed: type, if, key)",
        &[],
    );
    // `value` belongs to level matches, `actor` to separation of duties.
    assert_error(
        "kpis:\n  - name: placed\n    kind: count\n    on: { type: order.placed, value: event.data.total }\n",
        "defs.yaml:4:31: unknown field `value` in a match in `on`",
        &[],
    );
}

#[test]
fn missing_required_field_for_the_kind() {
    assert_error(
        "kpis:\n  - name: cycle\n    kind: duration\n    key: event.data.id\n    start: { type: a }\n",
        "defs.yaml:2:5: missing required field `end` for a duration KPI",
        &[],
    );
    assert_error(
        "kpis:\n  - name: total\n    kind: sum\n    on: { type: a }\n",
        "defs.yaml:2:5: missing required field `value` for a sum KPI",
        &[],
    );
    assert_error(
        "kpis:\n  - kind: count\n    on: { type: a }\n",
        "defs.yaml:2:5: missing required field `name` for a KPI",
        &[],
    );
    assert_error(
        "controls:\n  - name: c\n    kind: separation_of_duties\n    key: event.data.id\n    first: { type: a, actor: event.data.by }\n    second: { type: b }\n",
        "defs.yaml:6:15: missing required field `actor` for a match in `second`",
        &[],
    );
    assert_error(
        "kpis:\n  - name: s\n    kind: level\n    key: event.data.sku\n    limit: [{ type: a, value: event.data.q }]\n",
        "defs.yaml:2:5: a level KPI needs `set` or `add`",
        &[],
    );
    assert_error(
        "kpis:\n  - name: o\n    kind: open\n    key: event.data.id\n    open: [{ type: a }]\n",
        "defs.yaml:2:5: missing required field `close` for an open KPI",
        &[],
    );
}

#[test]
fn state_per_key_needs_a_key() {
    assert_error(
        "kpis:\n  - name: r\n    kind: ratio\n    track: [a]\n    on: { type: b }\n    good: 'true'\n",
        "defs.yaml:4:12: `track` needs a `key`",
        &[],
    );
}

#[test]
fn wrong_type() {
    assert_error(
        "kpis:\n  - name: placed\n    kind: count\n    on: order.placed\n",
        "defs.yaml:4:9: `on` must be a match such as `{ type: order.placed }`, not a string",
        &[],
    );
    assert_error("kpis: {}\n", "defs.yaml:1:7: `kpis` must be a list, not a mapping", &[]);
    assert_error(
        "kpis:\n  - name: [a]\n    kind: count\n    on: { type: a }\n",
        "defs.yaml:2:11: `name` must be a string, not a list",
        &[],
    );
    assert_error(
        "kpis:\n  - name: r\n    kind: ratio\n    key: event.data.id\n    keep: yes\n    on: { type: a }\n    good: 'true'\n",
        "defs.yaml:5:11: `keep` must be true or false, not a string",
        &[],
    );
    assert_error(
        "kpis:\n  - just a string\n",
        "defs.yaml:2:5: a KPI must be a mapping",
        &[],
    );
    assert_error(
        &format!("{COUNT}    group_by: [carrier]\n"),
        "defs.yaml:5:15: `group_by` must be a mapping of label to expression, not a list",
        &[],
    );
}

#[test]
fn invalid_name_syntax() {
    assert_error(
        "kpis:\n  - name: Order-Cycle\n    kind: count\n    on: { type: a }\n",
        "defs.yaml:2:11: invalid name `Order-Cycle`",
        &["lowercase"],
    );
    let long = "a".repeat(65);
    assert_error(
        &format!("kpis:\n  - name: {long}\n    kind: count\n    on: {{ type: a }}\n"),
        "defs.yaml:2:11: invalid name",
        &["64"],
    );
    assert_error(
        &format!("{COUNT}    group_by: {{ Carrier: event.data.carrier }}\n"),
        "defs.yaml:5:17: invalid group label `Carrier`",
        &[],
    );
}

#[test]
fn duplicate_name_cites_the_other_definition() {
    let files = vec![
        ("a.yaml".to_string(), COUNT.to_string()),
        (
            "b.yaml".to_string(),
            format!("# a comment\n{}", COUNT.replace("kpis:", "controls: []\nkpis:")),
        ),
    ];
    let e = Definitions::from_files(&files).expect_err("duplicate");
    assert_eq!(e.len(), 1, "{e}");
    assert_eq!(
        e.errors[0].to_string(),
        "b.yaml:4:11: duplicate name `placed`: already defined at a.yaml:2"
    );
    // KPIs and controls share one namespace.
    let e = errors(&format!(
        "{COUNT}controls:\n  - name: placed\n    kind: within\n    key: event.data.id\n    after: {{ type: a }}\n    expect: {{ type: b }}\n    within: 1d\n"
    ));
    assert_eq!(
        e.errors[0].to_string(),
        "defs.yaml:6:11: duplicate name `placed`: already defined at defs.yaml:2"
    );
}

#[test]
fn unknown_kind_lists_the_valid_kinds() {
    assert_error(
        "kpis:\n  - name: g\n    kind: gauge\n",
        "defs.yaml:3:11: unknown kind `gauge` (valid kinds: duration, ratio, count, sum, level, open)",
        &[],
    );
    assert_error(
        "controls:\n  - name: c\n    kind: forbids\n    key: event.data.id\n",
        "defs.yaml:3:11: unknown kind `forbids` (valid kinds: requires, separation_of_duties, within)",
        &[],
    );
}

#[test]
fn bad_duration() {
    assert_error(
        &format!("{COUNT}    windows: [1h, soon]\n"),
        "defs.yaml:5:19: `windows`: invalid duration `soon`",
        &[],
    );
    assert_error(
        "controls:\n  - name: c\n    kind: within\n    key: event.data.id\n    after: { type: a }\n    expect: { type: b }\n    within: 5 days later\n",
        "defs.yaml:7:13: `within`: invalid duration `5 days later`",
        &[],
    );
    assert_error(
        &format!("{COUNT}    windows: [0s]\n"),
        "defs.yaml:5:15: `windows`: duration `0s` must be greater than zero",
        &[],
    );
    assert_error(
        &format!("{COUNT}    windows: [1h, 60m]\n"),
        "defs.yaml:5:19: window `60m` is listed twice",
        &[],
    );
}

#[test]
fn bad_target_comparison() {
    assert_error(
        &format!("{COUNT}    target: {{ green: \"about 3\" }}\n"),
        "defs.yaml:5:22: `green`: bad target comparison `about 3`: expected an operator",
        &[],
    );
    assert_error(
        "kpis:\n  - name: r\n    kind: ratio\n    on: { type: a }\n    good: 'true'\n    target: { green: '>= 95' }\n",
        "defs.yaml:6:22: `green`: bad target comparison `>= 95`: this stat is a fraction between 0 and 1: write `95%` or `0.95`",
        &[],
    );
    assert_error(
        &format!("{COUNT}    target: {{ green: \"<= 3\", amber: \"<= 3h\" }}\n"),
        "defs.yaml:5:37: `amber`: bad target comparison `<= 3h`",
        &[],
    );
    assert_error(
        &format!("{COUNT}    target: {{ amber: \"<= 3\" }}\n"),
        "defs.yaml:5:15: missing required field `green` for a target",
        &[],
    );
}

#[test]
fn cel_compile_error_is_located_at_the_expression() {
    assert_error(
        "kpis:\n  - name: r\n    kind: ratio\n    on: { type: a }\n    good: |\n      event.data.total >\n      && true\n",
        "defs.yaml:6:7: `good`: invalid expression `event.data.total > && true`: Syntax error",
        &["column"],
    );
    assert_error(
        "kpis:\n  - name: c\n    kind: count\n    on: { type: a, if: \"evnt.data.x == 1\" }\n",
        "defs.yaml:4:24: `if`: invalid expression `evnt.data.x == 1`: unknown variable `evnt`",
        &[],
    );
    assert_error(
        "kpis:\n  - name: c\n    kind: duration\n    key: event.dta.id\n    start: { type: a }\n    end: { type: b }\n",
        "defs.yaml:4:10: `key`: invalid expression `event.dta.id`: an event has no field `dta`",
        &[],
    );
    // Inside any expression, not only a bare path.
    assert_error(
        "kpis:\n  - name: c\n    kind: count\n    on: { type: a, if: \"event.dta.total > 1\" }\n",
        "defs.yaml:4:24: `if`: invalid expression `event.dta.total > 1`: an event has no field `dta`",
        &["(column 7 of the expression)"],
    );
    assert_error(
        "kpis:\n  - name: c\n    kind: count\n    on: { type: a, if: \"has(seen['a'].tyme) || start.dat == 1\" }\n",
        "defs.yaml:4:24: `if`: invalid expression `has(seen['a'].tyme) || start.dat == 1`: an event has no field `tyme`",
        &["(column 15 of the expression)"],
    );
}

#[test]
fn expressions_over_real_event_fields_check() {
    let defs = format!(
        "{COUNT}    group_by: {{ big: \"event.data.total > 1 && 'a' in seen && [1].exists(event, event > 0) ? 'y' : size(event.type) > 0 ? 'n' : event.metadata.k\" }}\n"
    );
    ok(&defs);
}

#[test]
fn unknown_target_stat_for_the_kind() {
    assert_error(
        &format!("{COUNT}    target: {{ stat: p90, green: \"<= 3\" }}\n"),
        "defs.yaml:5:21: unknown stat `p90` for a count KPI (stats: count)",
        &[],
    );
}

#[test]
fn match_without_type() {
    assert_error(
        "kpis:\n  - name: c\n    kind: count\n    on: { if: \"event.data.x == 1\" }\n",
        "defs.yaml:4:11: a match in `on` needs a `type`",
        &[],
    );
}

#[test]
fn invalid_event_type() {
    assert_error(
        "kpis:\n  - name: c\n    kind: count\n    on: { type: order..placed }\n",
        "defs.yaml:4:17: `type`: invalid event type `order..placed`",
        &[],
    );
    assert_error(
        "kpis:\n  - name: c\n    kind: duration\n    key: event.data.id\n    start: { type: a }\n    end: { type: b }\n    close: [ok, 'not ok']\n",
        "defs.yaml:7:17: `close`: invalid event type `not ok`",
        &[],
    );
    // Custom types are fine as long as they have the syntax.
    ok("kpis:\n  - name: c\n    kind: count\n    on: { type: 3pl.pallet-scanned_v2 }\n");
    // Any type the log records, capitals too.
    ok("kpis:\n  - name: c\n    kind: count\n    on: { type: Order.Placed }\n");
}

#[test]
fn empty_windows() {
    assert_error(
        &format!("{COUNT}    windows: []\n"),
        "defs.yaml:5:14: `windows` must not be empty",
        &[],
    );
    assert_error(
        &format!("{COUNT}    windows:\n"),
        "defs.yaml:",
        &["`windows` must not be empty"],
    );
}

#[test]
fn bad_buckets() {
    assert_error(
        &format!("{COUNT}    buckets: week\n"),
        "defs.yaml:5:14: `buckets` must be `day` or `none`, not `week`",
        &[],
    );
}

#[test]
fn every_error_in_every_file_is_reported() {
    let files = vec![
        (
            "a.yaml".to_string(),
            "kpis:\n  - name: Bad\n    kind: count\n    on: { type: a }\n  - name: fine\n    kind: gauge\n".to_string(),
        ),
        ("b.yaml".to_string(), "kpis: [\n".to_string()),
        (
            "c.yaml".to_string(),
            "controls:\n  - name: c\n    kind: within\n    after: { }\n    expect: { type: b! }\n    within: never\n"
                .to_string(),
        ),
    ];
    let e = Definitions::from_files(&files).expect_err("broken");
    let lines: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    let located: Vec<String> = lines
        .iter()
        .map(|l| l.splitn(4, ':').take(3).collect::<Vec<_>>().join(":"))
        .collect();
    assert_eq!(
        located,
        [
            "a.yaml:2:11", // invalid name
            "a.yaml:6:11", // unknown kind
            "b.yaml:2:1",  // YAML syntax
            "c.yaml:2:5",  // missing key
            "c.yaml:4:12", // match without type
            "c.yaml:5:21", // invalid event type
            "c.yaml:6:13", // bad duration
        ],
        "{e}"
    );
    assert_eq!(e.to_string().lines().count(), 7);
}

#[test]
fn start_is_known_only_in_a_duration_end_condition_and_group_by() {
    const DURATION: &str = "kpis:\n  - name: d\n    kind: duration\n    key: event.data.id\n";
    ok(&format!(
        "{DURATION}    start: {{ type: a }}\n    end: {{ type: b, if: 'event.time > start.time' }}\n    group_by: {{ c: start.data.channel }}\n"
    ));
    assert_error(
        &format!("{DURATION}    start: {{ type: a, if: 'start.data.x == 1' }}\n    end: {{ type: b }}\n"),
        "defs.yaml:5:27: `if`: `start` is the start event of a duration KPI, known only in its `end` condition",
        &["`start.data.x == 1` could never evaluate"],
    );
    assert_error(
        &format!("{DURATION}    start: {{ type: a }}\n    end: {{ type: b, key: start.data.id }}\n"),
        "defs.yaml:6:26: `key`: `start` is the start event",
        &[],
    );
    assert_error(
        "kpis:\n  - name: c\n    kind: count\n    on: { type: a, if: \"start.data.x == 1\" }\n    group_by: { x: event.data.x }\n",
        "defs.yaml:4:24: `if`: `start` is the start event",
        &[],
    );
    assert_error(
        "controls:\n  - name: c\n    kind: within\n    key: event.data.id\n    after: { type: a }\n    expect: { type: b, if: 'start.time > 0' }\n    within: 1h\n",
        "defs.yaml:6:28: `if`: `start` is the start event",
        &[],
    );
    // A comprehension's own variable named `start` is not the start event.
    ok("kpis:\n  - name: c\n    kind: count\n    on: { type: a, if: 'event.data.items.exists(start, start > 1)' }\n");
}

#[test]
fn an_open_kpi_reports_states_under_the_label_state() {
    assert_error(
        "kpis:\n  - name: o\n    kind: open\n    key: event.data.id\n    open: { type: a }\n    close: [b]\n    group_by: { state: event.data.s }\n",
        "defs.yaml:7:17: group label `state` is taken",
        &[],
    );
}
