//! The native evaluator against the CEL interpreter: every expression of the default
//! definitions and of the view fixtures, and a corpus of hand-written ones (edge cases
//! and errors included), evaluated both ways over random events. Both must answer
//! the same: equal values, or both an error (of the same kind, and naming the same
//! missing field).

use std::collections::BTreeMap;

use crate::Seen;
use std::sync::{Arc, LazyLock};

use proptest::prelude::*;
use serde_json::{Map as JsonMap, Value as Json};

use crate::expr::{Data, EvalError, EventData, Expr, Scope, Value};
use crate::{ControlKind, Definitions, KpiKind, Match};

/// Every expression written in a set of definitions.
fn expressions_of(defs: &Definitions) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |e: &Expr| out.push(e.source().to_string());
    let matches = |m: &Match, push: &mut dyn FnMut(&Expr)| {
        for e in [&m.condition, &m.key, &m.value, &m.actor].into_iter().flatten() {
            push(e);
        }
    };
    for kpi in &defs.kpis {
        kpi.key.iter().for_each(&mut push);
        kpi.group_by.iter().for_each(|(_, e)| push(e));
        match &kpi.kind {
            KpiKind::Duration { start, end } => {
                matches(start, &mut push);
                matches(end, &mut push);
            }
            KpiKind::Ratio { on, good, .. } => {
                matches(on, &mut push);
                push(good);
            }
            KpiKind::Count { on } => matches(on, &mut push),
            KpiKind::Sum { on, value } => {
                matches(on, &mut push);
                push(value);
            }
            KpiKind::Level { set, add, limit } => {
                for m in set.iter().chain(add).chain(limit) {
                    matches(m, &mut push);
                }
            }
            KpiKind::Open { open, state } => {
                open.iter().for_each(|m| matches(m, &mut push));
                state.iter().for_each(&mut push);
            }
        }
    }
    for control in &defs.controls {
        push(&control.key);
        let pair = match &control.kind {
            ControlKind::Requires { when, requires } => [when, requires],
            ControlKind::SeparationOfDuties { first, second } => [first, second],
            ControlKind::Within { after, expect, .. } => [after, expect],
        };
        pair.into_iter().for_each(|m| matches(m, &mut push));
    }
    out
}

/// The expressions of `deploy/definitions` and of every `testdata/views` fixture
/// with inline definitions.
fn definition_expressions() -> Vec<String> {
    let builtin: Vec<(String, String)> = crate::BUILTIN_FILES
        .iter()
        .map(|(n, c)| (n.to_string(), c.to_string()))
        .collect();
    let mut out = expressions_of(&Definitions::from_files(&builtin).expect("the defaults check"));
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/views");
    let mut fixtures: Vec<_> = std::fs::read_dir(dir)
        .expect("testdata/views")
        .map(|e| e.expect("a fixture").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    fixtures.sort();
    assert!(!fixtures.is_empty(), "no fixtures in {dir}");
    for path in fixtures {
        let text = std::fs::read_to_string(&path).expect("readable fixture");
        let root = marked_yaml::parse_yaml(0, &text).expect("fixture yaml");
        let inline = root
            .as_mapping()
            .and_then(|m| m.get_scalar("definitions"))
            .map(|s| s.as_str().to_string());
        if let Some(yaml) = inline {
            let defs = Definitions::from_files(&[("fixture.yaml".into(), yaml)])
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.extend(expressions_of(&defs));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Hand-written expressions in the native subset: the edge cases of each operator,
/// and errors.
const NATIVE: &[&str] = &[
    // Selection and indexing.
    "event",
    "seen",
    "start",
    "event.metadata",
    "seen['order.placed']",
    // (`event.nope` does not compile: an event has no such field.)
    "event.data.total.x",
    "event.data.items.x",
    "event.data.nested.inner == 1",
    "event.data.nested['inner'] != 'x'",
    "event.data.items[0] == 1",
    "event.data.items[1u]",
    "event.data.items[0.0]",
    "event.data.items[0.5]",
    "event.data.items[-1]",
    "event.data.items['a']",
    "event.data[1]",
    "event.data[1u]",
    "event.data[1.5]",
    "event.data[true]",
    "event.data[null]",
    "event.data.name[0]",
    "seen['order.placed'].data.total > 10000",
    "seen.missing",
    "start.data.channel == 'web'",
    "event.metadata.tenant + '/' + event.type",
    "event.metadata['region']",
    "event.type.x == 1",
    "event.metadata.tenant.x == 1",
    "start.time.seconds == 1",
    "seen['order.placed'].metadata.tenant == 'acme'",
    "seen['order.placed']['data']['total']",
    "event['data'].total",
    // Numbers.
    "event.data.total > 10000",
    "event.data.total >= 10000.0",
    "event.data.total + 1",
    "event.data.total + 1.0",
    "event.data.total * 2.0",
    "event.data.total / 0.0",
    "event.data.total % 2",
    "event.data.count * 2",
    "event.data.count / 0",
    "event.data.count % 0",
    "event.data.count / 2",
    "event.data.count % 3",
    "event.data.count - 1",
    "-event.data.count",
    "-event.data.total",
    "-event.data.big",
    "event.data.count - 9223372036854775807 - 2",
    "9223372036854775807 + event.data.count",
    "-9223372036854775808 / -1",
    "-9223372036854775808 % -1",
    "event.data.count == 1u",
    "event.data.count < 18446744073709551615u",
    "event.data.big > 9223372036854775807",
    "event.data.big == event.data.big",
    "event.data.big + 1u",
    "1u - 2u",
    "2u * 3u",
    "5u / 0u",
    "5u % 2u",
    "-1u",
    "1.0 / 0.0",
    "0.0 / 0.0 == 0.0 / 0.0",
    "0.0 / 0.0 < 1.0",
    "0.0 / 0.0",
    "1 + 1.0",
    "1 == 1.0",
    "1 < 1.5",
    "2 > 1u",
    "event.data.total > 'x'",
    "event.data.count == event.data.total",
    "event.data.count < event.data.total",
    "event.data.x < event.data.other",
    "event.data.x == event.data.other",
    "event.data.x != event.data.other",
    "event.data.x + event.data.other",
    "event.data.x - event.data.other",
    "event.data.x * event.data.other",
    "event.data.x / event.data.other",
    "event.data.x % event.data.other",
    // Strings, bools, null.
    "'a' < 'b'",
    "'a' + 1",
    "event.data.name + event.data.other",
    "event.data.name < event.data.other",
    "true < false",
    "null == null",
    "null == false",
    "event.data.x == null",
    "event.data.flag == true",
    "--event.data.name",
    "!!event.data.name",
    "event.data.name.startsWith('w')",
    "event.data.name.endsWith(event.data.other)",
    "event.data.name.contains('')",
    "event.data.total.startsWith('1')",
    "'abc'.contains(event.data.name)",
    // Lists, maps, size, in.
    "event.data.nested == event.data.nested",
    "event.data.nested == event.data.other",
    "event.data.items == [1, 2]",
    "event.data.items == event.data.other",
    "[1, 2] + [3]",
    "[1, 'a'] + event.data.items",
    "[event.data.name, event.data.total]",
    "[1, 2.5, 'x', true, null]",
    "[[1], []]",
    "size([])",
    "size(event.data)",
    "size(event.data.name)",
    "event.data.name.size()",
    "size(event.data.items)",
    "size(seen)",
    "size(event)",
    "size(event.metadata)",
    "size(1)",
    "size(event.data.total)",
    "event == event",
    "seen == seen",
    "start == event",
    "event.metadata == event.data.nested",
    "'x' in event.data",
    "'order.placed' in seen",
    "'tenant' in event.metadata",
    "'time' in event",
    "1 in event.data",
    "null in event.data",
    "event.data.count in [1, 2, 3]",
    "event.data.name in ['web', 'store']",
    "event.type in [event.data.name, 'order.placed']",
    "1 in event.data.items",
    "'a' in 'abc'",
    "event.data.total in [10000, 12500.5]",
    "event.data.x in event.data.other",
    // has().
    "has(event.data.x)",
    "has(event.data.nested.inner)",
    "has(event.data.items.x)",
    "has(event.data.name.x)",
    "has(seen.order)",
    "has(start.data.channel)",
    "has(event.metadata.tenant)",
    "has(event.time)",
    "has(seen['order.placed'].data.total)",
    // Logic and the conditional.
    "event.data.flag && event.data.other",
    "event.data.flag || event.data.other",
    "event.data.missing == 1 && false",
    "false && event.data.missing == 1",
    "event.data.missing == 1 || true",
    "true || event.data.missing",
    "event.data.missing || event.data.missing2",
    "event.data.missing && event.data.flag",
    "event.data.name && false",
    "event.data.name || event.data.flag",
    "true && event.data.name",
    "!event.data.flag",
    "!event.data.name",
    "event.data.flag ? 1 : 'x'",
    "event.data.name ? 1 : 2",
    "event.data.missing ? 1 : 2",
    "has(event.data.severity) ? event.data.severity : seen['incident.opened'].data.severity",
    // Time.
    "event.time - start.time",
    "event.time - start.time > duration('1h')",
    "start.time + duration('24h') < event.time",
    "event.time + duration('-1h30m')",
    "duration('1.5h') + duration('30m')",
    "duration('soon')",
    "duration('5mXYZ')",
    "duration('0')",
    "duration('-5s') < duration('0')",
    "duration('1h') == duration('60m')",
    "duration('1h') < 1",
    "timestamp('2026-11-21T10:00:00Z') - duration('87600h')",
    "timestamp('0001-01-01T00:00:00Z') - duration('1s')",
    "timestamp('0001-01-01T00:00:00Z')",
    "timestamp('9999-12-31T23:59:59Z') - timestamp('0001-01-01T00:00:00Z')",
    "timestamp('2016-12-31T23:59:60Z') < timestamp('2017-01-01T00:00:00Z')",
    "timestamp('2016-12-31T23:59:60Z') - timestamp('2016-12-31T23:59:59Z')",
    "timestamp('2026-02-30T00:00:00Z')",
    "timestamp('2026-11-21T10:00:00+01:00') == timestamp('2026-11-21T09:00:00Z')",
    "timestamp(1700000000)",
    "timestamp(event.data.when) < event.time",
    "timestamp(event.data.when) == timestamp(event.data.other)",
    "timestamp(event.data.when) - event.time",
    "timestamp(event.data.when) + duration('1h')",
    "timestamp(event.data.count)",
    "timestamp(event.data.total)",
    "timestamp(event.time) == event.time",
    "timestamp(event.data.flag)",
    "event.time <= timestamp(event.data.when) && event.data.flag",
    "event.time == event.time",
    "event.time < start.time",
];

/// Hand-written expressions outside the subset: left to the interpreter.
const INTERPRETED: &[&str] = &[
    "{'a': 1}",
    "event.data.items.exists(x, x > 1)",
    "event.data.name.matches('^w')",
    "event.data.name.lowerAscii()",
    "int(event.data.total)",
    "string(event.data.count)",
    "type(event.data.x) == type(1)",
    "duration(event.data.name)",
    "b'abc'",
    "math.greatest(1, 2)",
];

/// Each expression compiled both ways: `(source, as compiled, interpreter only)`.
static CORPUS: LazyLock<Vec<(String, Expr, Expr)>> = LazyLock::new(|| {
    definition_expressions()
        .into_iter()
        .chain(NATIVE.iter().chain(INTERPRETED).map(|s| s.to_string()))
        .map(|source| {
            let compiled = Expr::compile(&source).unwrap_or_else(|e| panic!("{source}: {e}"));
            let interpreted = Expr::interpreted(&source).unwrap_or_else(|e| panic!("{source}: {e}"));
            (source, compiled, interpreted)
        })
        .collect()
});

#[test]
fn every_definition_expression_is_native() {
    let all = definition_expressions();
    assert!(all.len() >= 20, "only {} expressions found", all.len());
    for source in &all {
        assert!(
            Expr::compile(source).expect("compiles").is_native(),
            "`{source}` is left to the CEL interpreter, 5-13 µs an evaluation: extend the native subset"
        );
    }
}

#[test]
fn the_corpus_is_native_where_meant_to_be() {
    for source in NATIVE {
        let expr = Expr::compile(source).expect("compiles");
        assert!(expr.is_native(), "{source}");
    }
    for source in INTERPRETED {
        assert!(!Expr::compile(source).expect("compiles").is_native(), "{source}");
    }
}

/// Equal values, NaN equal to NaN. With `any_order`, lists may hold their items in
/// another order (see [`check_scope`]).
fn same_value(a: &Value, b: &Value, any_order: bool) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::List(x), Value::List(y)) if any_order => {
            let mut left: Vec<&Value> = x.iter().collect();
            x.len() == y.len()
                && y.iter()
                    .all(|q| match left.iter().position(|p| same_value(p, q, true)) {
                        Some(i) => {
                            left.swap_remove(i);
                            true
                        }
                        None => false,
                    })
        }
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q, any_order))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((j, p), (k, q))| j == k && same_value(p, q, any_order))
        }
        _ => a == b,
    }
}

/// The same outcome: equal values, or errors of the same kind. A plain field path
/// names a missing field its own way (`data.x` rather than `x`): only that it failed
/// must agree.
fn same_outcome(
    a: &Result<Value, EvalError>,
    b: &Result<Value, EvalError>,
    strict_errors: bool,
    any_order: bool,
) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => same_value(x, y, any_order),
        (Err(x), Err(y)) if strict_errors => match (x, y) {
            (EvalError::NoSuchField(f), EvalError::NoSuchField(g)) => f == g,
            (EvalError::Cel(_), EvalError::Cel(_)) | (EvalError::Type { .. }, EvalError::Type { .. }) => true,
            _ => false,
        },
        (Err(_), Err(_)) => true,
        _ => false,
    }
}

/// Evaluates the corpus both ways over `scope`.
///
/// `list + map` appends the map's keys, which the interpreter holds in a `HashMap`:
/// in an order that changes from one evaluation to the next. Where an expression
/// adds, its list results are compared in any order.
fn check_scope(scope: &Scope<'_>) -> Result<(), TestCaseError> {
    for (source, compiled, interpreted) in CORPUS.iter() {
        let (native, cel) = (compiled.eval(scope), interpreted.eval(scope));
        prop_assert!(
            same_outcome(&native, &cel, !compiled.is_field_path(), source.contains('+')),
            "{source}:\n native {native:?}\n    cel {cel:?}"
        );
        prop_assert_eq!(
            compiled.eval_condition(scope),
            interpreted.eval_condition(scope),
            "{}",
            source
        );
        let (native_f64, cel_f64) = (compiled.eval_f64(scope), interpreted.eval_f64(scope));
        prop_assert!(
            match (&native_f64, &cel_f64) {
                (Ok(x), Ok(y)) => x == y || (x.is_nan() && y.is_nan()),
                (Err(_), Err(_)) => true,
                _ => false,
            },
            "{source}: eval_f64 {native_f64:?} vs {cel_f64:?}"
        );
        let (native_string, cel_string) = (compiled.eval_string(scope), interpreted.eval_string(scope));
        prop_assert!(
            native_string.is_ok() == cel_string.is_ok() && native_string.as_ref().ok() == cel_string.as_ref().ok(),
            "{source}: eval_string {native_string:?} vs {cel_string:?}"
        );
    }
    Ok(())
}

/// Keys the expressions read, so that random data often has them.
const KEYS: &[&str] = &[
    "total",
    "count",
    "name",
    "other",
    "flag",
    "when",
    "nested",
    "items",
    "big",
    "x",
    "inner",
    "severity",
    "channel",
    "promised_by",
    "complete",
    "damaged",
    "quantity",
    "sku",
    "location",
    "cost_centre",
    "period",
    "amount",
    "subject_type",
    "subject_id",
    "requester",
    "approver",
    "vendor",
    "expected_by",
    "eta",
    "carrier",
    "delta",
    "reorder_point",
    "id",
    "ok",
    "team",
    "incident_id",
    "order_id",
    "po_number",
    "approval_id",
    "shipment_id",
];

const STRINGS: &[&str] = &[
    "",
    "web",
    "store",
    "w",
    "sev1",
    "sev9",
    "order",
    "requisition",
    "PO-1",
    "order.placed",
    "queued",
    "2026-11-21T10:00:00Z",
    "2025-11-20T10:00:00Z",
    "2026-11-21T10:00:00.123456789+02:00",
    "2026-11-21T10:00:00Z ",
    "2026-13-01T00:00:00Z",
    "2026-11-21",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999Z",
    "1600-01-01T00:00:00Z",
    "2016-12-31T23:59:60Z",
    "not a time",
    "5m",
    "ünïcödé",
    "a@b",
];

const TYPES: &[&str] = &[
    "order.placed",
    "order.delivered",
    "order.returned",
    "order.cancelled",
    "approval.granted",
    "purchase_order.issued",
    "goods.received",
    "shipment.dispatched",
    "incident.opened",
    "incident.resolved",
    "job.started",
    "job.progress",
    "job.note",
    "inventory.counted",
];

/// 2025-11-20T10:00:00Z
const PLACED_AT: i64 = 1_763_632_800 * 1_000_000_000;

fn leaf() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        (-3i64..=3).prop_map(Json::from),
        prop::sample::select(vec![i64::MIN, i64::MAX, 10_000, 12_500, 1_763_632_800]).prop_map(Json::from),
        prop::sample::select(vec![u64::MAX, i64::MAX as u64 + 1]).prop_map(Json::from),
        prop::sample::select(vec![0.0, -0.0, 0.5, 1.0, 2.5, 10_000.0, 12_500.5, -1e300, 1e300]).prop_map(Json::from),
        prop::sample::select(STRINGS).prop_map(Json::from),
        "[a-c]{0,2}".prop_map(Json::from),
    ]
}

fn object(entries: BTreeMap<&str, Json>) -> Json {
    Json::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<JsonMap<_, _>>(),
    )
}

fn json() -> impl Strategy<Value = Json> {
    leaf().prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..4).prop_map(object),
        ]
    })
}

fn data() -> impl Strategy<Value = Json> {
    prop_oneof![
        1 => Just(Json::Null),
        1 => leaf(),
        8 => prop::collection::btree_map(prop::sample::select(KEYS), json(), 0..KEYS.len()).prop_map(object),
    ]
}

fn event_of(event_type: Option<String>) -> impl Strategy<Value = EventData> {
    let event_type = match event_type {
        Some(t) => Just(t).boxed(),
        None => prop::sample::select(TYPES).prop_map(str::to_string).boxed(),
    };
    let time = prop_oneof![
        8 => PLACED_AT - 30 * 86_400_000_000_000..PLACED_AT + 30 * 86_400_000_000_000,
        1 => prop::sample::select(vec![i64::MIN, i64::MAX, 0, -1]),
    ];
    let metadata = prop::collection::btree_map(
        prop::sample::select(vec!["tenant", "region", ""]).prop_map(str::to_string),
        "[a-c]{0,2}",
        0..3,
    );
    let data = (data(), any::<bool>()).prop_map(|(data, fields)| {
        // Both ways data is held: whole, and as the fields views decode.
        if fields {
            Data::fields_of(data)
        } else {
            Data::from(data)
        }
    });
    (event_type, time, any::<u64>(), 0u64..5, "[a-c/]{0,3}", data, metadata).prop_map(
        |(event_type, time, position, version, stream, data, metadata)| EventData {
            position,
            version,
            source: "test".into(),
            id: stream.clone(),
            stream,
            event_type,
            time,
            data,
            metadata,
        },
    )
}

fn seen() -> impl Strategy<Value = Option<Seen>> {
    let events = prop::collection::vec(
        prop::sample::select(TYPES).prop_flat_map(|t| event_of(Some(t.to_string()))),
        0..4,
    );
    prop::option::of(events.prop_map(|events| events.into_iter().map(Arc::new).collect()))
}

/// 256 random scopes by default; set `PROPTEST_CASES` for a longer run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn native_and_interpreter_agree(event in event_of(None), seen in seen(), start in prop::option::of(event_of(None))) {
        let scope = Scope { event: &event, seen: seen.as_ref(), start: start.as_ref() };
        check_scope(&scope)?;
    }
}

/// The corpus over a few events written by hand, so that the interesting values
/// (timestamps in the data, nested maps, matching types) meet for certain.
#[test]
fn native_and_interpreter_agree_on_hand_written_events() {
    let with = |event_type: &str, data: Json| EventData {
        position: 7,
        version: 2,
        stream: "order/PO-1".into(),
        source: "erp".into(),
        id: "id-1".into(),
        event_type: event_type.into(),
        time: PLACED_AT,
        data: Data::fields_of(data),
        metadata: BTreeMap::from([("tenant".to_string(), "acme".to_string())]),
    };
    let placed = with(
        "order.placed",
        serde_json::json!({
            "order_id": "PO-1", "total": 12500.5, "count": 3, "name": "web", "other": "eb", "flag": true,
            "when": "2025-11-21T10:00:00Z", "nested": {"inner": 1}, "items": [1, 2], "big": u64::MAX,
            "severity": "sev1", "promised_by": "2025-11-21T10:00:00Z", "channel": "web",
        }),
    );
    let delivered = with(
        "order.delivered",
        serde_json::json!({"order_id": "PO-1", "complete": true, "damaged": false, "x": null, "other": [1, 2]}),
    );
    let seen: Seen = Seen::from_iter([Arc::new(placed.clone())]);
    for scope in [
        Scope::event(&placed),
        Scope::event(&delivered),
        Scope {
            event: &delivered,
            seen: Some(&seen),
            start: Some(&placed),
        },
    ] {
        check_scope(&scope).unwrap_or_else(|e| panic!("{e}"));
    }
}
