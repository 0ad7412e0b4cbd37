use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::*;

const HOUR: i64 = 3_600_000_000_000;

/// 2025-11-20T10:00:00Z
const PLACED_AT: i64 = 1_763_632_800 * 1_000_000_000;

fn event(event_type: &str, time: i64, data: serde_json::Value) -> EventData {
    EventData {
        position: 7,
        version: 2,
        stream: "order/PO-1".into(),
        source: "erp".into(),
        id: format!("id-{event_type}"),
        event_type: event_type.into(),
        time,
        // As views decode it: the object's fields.
        data: crate::expr::Data::fields_of(data),
        metadata: BTreeMap::from([("tenant".to_string(), "acme".to_string())]),
    }
}

fn placed() -> EventData {
    event(
        "order.placed",
        PLACED_AT,
        json!({
            "order_id": "PO-1",
            "total": 12500.5,
            "lines": 3,
            "promised_by": "2025-11-21T10:00:00Z",
            "channel": "web",
            "address": {"country": "NL", "zip": "1011"},
        }),
    )
}

fn seen_of(events: &[EventData]) -> Seen {
    events.iter().map(|e| Arc::new(e.clone())).collect()
}

fn compile(source: &str) -> Expr {
    Expr::compile(source).unwrap_or_else(|e| panic!("{source}: {e}"))
}

fn eval(source: &str, scope: &Scope<'_>) -> Result<Value, EvalError> {
    compile(source).eval(scope)
}

#[test]
fn field_paths_take_the_fast_path() {
    for source in [
        "event.type",
        "event.data.order_id",
        "event.data['order_id']",
        "seen['order.placed'].data.total",
        "start.data.x",
        "event.metadata.tenant",
    ] {
        assert!(compile(source).is_field_path(), "{source}");
    }
    for source in ["event.data.total > 1", "event.data.sku + '@' + event.data.location"] {
        assert!(!compile(source).is_field_path(), "{source}");
    }
}

#[test]
fn fast_path_reads_every_event_field() {
    let e = placed();
    let scope = Scope::event(&e);
    assert_eq!(eval("event.type", &scope), Ok(Value::String("order.placed".into())));
    assert_eq!(eval("event.stream", &scope), Ok(Value::String("order/PO-1".into())));
    assert_eq!(eval("event.subject", &scope), Ok(Value::String("order/PO-1".into())));
    assert_eq!(eval("event.source", &scope), Ok(Value::String("erp".into())));
    assert_eq!(eval("event.id", &scope), Ok(Value::String("id-order.placed".into())));
    assert_eq!(eval("event.time", &scope), Ok(Value::Timestamp(PLACED_AT)));
    assert_eq!(eval("event.position", &scope), Ok(Value::Int(7)));
    assert_eq!(eval("event.version", &scope), Ok(Value::Int(2)));
    assert_eq!(eval("event.metadata.tenant", &scope), Ok(Value::String("acme".into())));
    assert_eq!(eval("event.data.total", &scope), Ok(Value::Float(12500.5)));
    assert_eq!(eval("event.data.lines", &scope), Ok(Value::Int(3)));
    assert_eq!(
        eval("event.data.address.country", &scope),
        Ok(Value::String("NL".into()))
    );
    assert_eq!(
        eval("event.data['address']['zip']", &scope),
        Ok(Value::String("1011".into()))
    );
    assert_eq!(compile("event.data.lines").eval_string(&scope), Ok("3".into()));
    assert_eq!(compile("event.data.total").eval_f64(&scope), Ok(12500.5));
}

#[test]
fn fast_path_reads_seen_and_start() {
    let p = placed();
    let delivered = event("order.delivered", PLACED_AT + 20 * HOUR, json!({"order_id": "PO-1"}));
    let seen = seen_of(std::slice::from_ref(&p));
    let scope = Scope {
        event: &delivered,
        seen: Some(&seen),
        start: Some(&p),
    };
    assert_eq!(
        eval("seen['order.placed'].data.total", &scope),
        Ok(Value::Float(12500.5))
    );
    assert_eq!(
        eval("seen[\"order.placed\"].time", &scope),
        Ok(Value::Timestamp(PLACED_AT))
    );
    assert_eq!(eval("start.data.channel", &scope), Ok(Value::String("web".into())));
}

#[test]
fn fast_path_missing_fields_are_no_such_field() {
    let e = placed();
    let scope = Scope::event(&e);
    assert_eq!(
        eval("event.data.missing", &scope),
        Err(EvalError::NoSuchField("data.missing".into()))
    );
    assert_eq!(
        eval("event.data.order_id.deeper", &scope),
        Err(EvalError::NoSuchField("data.order_id.deeper".into()))
    );
    assert_eq!(
        eval("event.metadata.nope", &scope),
        Err(EvalError::NoSuchField("metadata.nope".into()))
    );
    assert_eq!(
        eval("seen['order.placed'].data.total", &scope),
        Err(EvalError::NoSuchField("seen['order.placed']".into()))
    );
    assert_eq!(
        eval("start.data.x", &scope),
        Err(EvalError::NoSuchField("start".into()))
    );
    assert!(!compile("event.data.missing").eval_bool(&scope));
    assert!(compile("event.data.missing").eval_string(&scope).is_err());
}

#[test]
fn cel_compares_event_time_with_a_timestamp_from_the_data() {
    let p = placed();
    let seen = seen_of(std::slice::from_ref(&p));
    let on_time = compile("event.time <= timestamp(seen['order.placed'].data.promised_by)");
    let promised = 1_763_719_200 * 1_000_000_000; // 2025-11-21T10:00:00Z
    let early = event("order.delivered", promised - HOUR, json!({"order_id": "PO-1"}));
    let exact = event("order.delivered", promised, json!({"order_id": "PO-1"}));
    let late = event("order.delivered", promised + 1, json!({"order_id": "PO-1"}));
    let with = |e| Scope {
        event: e,
        seen: Some(&seen),
        start: None,
    };
    assert!(on_time.eval_bool(&with(&early)));
    assert!(on_time.eval_bool(&with(&exact)));
    assert!(!on_time.eval_bool(&with(&late)));
    // Without the placed event the condition fails to evaluate: false.
    assert!(!on_time.eval_bool(&Scope::event(&early)));
    assert!(matches!(
        on_time.eval(&Scope::event(&early)),
        Err(EvalError::NoSuchField(_))
    ));
}

#[test]
fn cel_compares_numbers_across_int_and_double() {
    let shipped = event("order.shipped", PLACED_AT, json!({"order_id": "PO-1"}));
    let big = seen_of(&[placed()]);
    let small = seen_of(&[event("order.placed", PLACED_AT, json!({"total": 10000}))]);
    let large = compile("seen['order.placed'].data.total > 10000");
    let scope = |seen| Scope {
        event: &shipped,
        seen: Some(seen),
        start: None,
    };
    assert!(large.eval_bool(&scope(&big)));
    assert!(!large.eval_bool(&scope(&small)));
    let e = placed();
    assert!(compile("event.data.lines == 3.0").eval_bool(&Scope::event(&e)));
    assert!(compile("event.data.total > 10000.0").eval_bool(&Scope::event(&e)));
}

#[test]
fn cel_string_equality_and_concatenation() {
    let granted = event(
        "approval.granted",
        PLACED_AT,
        json!({"approval_id": "A-1", "subject_type": "order", "subject_id": "PO-1"}),
    );
    let scope = Scope::event(&granted);
    assert!(compile("event.data.subject_type == 'order'").eval_bool(&scope));
    assert!(!compile("event.data.subject_type == 'requisition'").eval_bool(&scope));

    let counted = event(
        "inventory.counted",
        PLACED_AT,
        json!({"sku": "SKU-9", "location": "AMS"}),
    );
    let key = compile("event.data.sku + '@' + event.data.location");
    assert_eq!(key.eval_string(&Scope::event(&counted)), Ok("SKU-9@AMS".into()));
    // A missing part is an error, not a key with a hole in it.
    let partial = event("inventory.counted", PLACED_AT, json!({"sku": "SKU-9"}));
    assert!(key.eval_string(&Scope::event(&partial)).is_err());
}

#[test]
fn cel_has_in_size_and_string_functions() {
    let delivered = event(
        "order.delivered",
        PLACED_AT,
        json!({"order_id": "PO-1", "damaged": false}),
    );
    let seen = seen_of(&[placed()]);
    let scope = Scope {
        event: &delivered,
        seen: Some(&seen),
        start: None,
    };
    let yes = |s: &str| assert!(compile(s).eval_bool(&scope), "{s}");
    let no = |s: &str| assert!(!compile(s).eval_bool(&scope), "{s}");
    yes("has(event.data.damaged)");
    no("has(event.data.complete)");
    yes("!has(event.data.complete) || event.data.complete");
    yes("'order.placed' in seen");
    no("'order.returned' in seen");
    yes("event.type in ['order.delivered', 'order.cancelled']");
    yes("size(event.data) == 2");
    yes("size(event.data.order_id) == 4");
    yes("event.data.order_id.startsWith('PO-')");
    yes("event.type.endsWith('.delivered')");
    yes("event.data.order_id.contains('-')");
    yes("event.data.order_id.matches('^PO-[0-9]+$')");
    yes("event.data.order_id.lowerAscii() == 'po-1'");
    yes("event.metadata.tenant == 'acme'");
    yes("event.subject == 'order/PO-1'");
    yes("event.position == 7 && event.version == 2");
    yes("seen['order.placed'].data.channel == 'web'");
}

#[test]
fn cel_durations_and_timestamps_convert_back() {
    let p = placed();
    let delivered = event("order.delivered", PLACED_AT + 20 * HOUR, json!({}));
    let scope = Scope {
        event: &delivered,
        seen: None,
        start: Some(&p),
    };
    assert_eq!(eval("event.time - start.time", &scope), Ok(Value::Duration(20 * HOUR)));
    assert_eq!(compile("event.time - start.time").eval_f64(&scope), Ok(72_000.0));
    assert_eq!(
        eval("timestamp('2026-11-21T10:00:00Z')", &scope),
        Ok(Value::Timestamp(1_795_255_200 * 1_000_000_000))
    );
    assert!(compile("event.time - start.time < duration('72h')").eval_bool(&scope));
    assert_eq!(
        eval("{'a': [1, 2.5, 'x', true, null]}", &scope),
        Ok(Value::Map(BTreeMap::from([(
            "a".to_string(),
            Value::List(vec![
                Value::Int(1),
                Value::Float(2.5),
                Value::String("x".into()),
                Value::Bool(true),
                Value::Null
            ])
        )])))
    );
}

#[test]
fn cel_errors_make_conditions_false() {
    let e = placed();
    let scope = Scope::event(&e);
    for source in [
        "event.data.missing == 1",
        "event.data.total > 'x'",
        "timestamp(event.data.channel) < event.time",
        "start.data.x == 1",
        "seen['order.placed'].data.total > 1",
        "event.data.total",
        "1 / 0 == 1",
    ] {
        assert!(!compile(source).eval_bool(&scope), "{source}");
    }
    assert_eq!(
        eval("event.data.missing == 1", &scope),
        Err(EvalError::NoSuchField("missing".into()))
    );
    assert_eq!(
        eval("start.data.x == 1", &scope),
        Err(EvalError::NoSuchField("start".into()))
    );
}

#[test]
fn comprehensions_may_bind_their_own_variables() {
    let e = event("x", 0, json!({"lines": [{"qty": 1}, {"qty": 5}]}));
    let scope = Scope::event(&e);
    assert!(compile("event.data.lines.exists(l, l.qty > 4)").eval_bool(&scope));
    assert!(!compile("event.data.lines.all(l, l.qty > 4)").eval_bool(&scope));
}

#[test]
fn compile_errors_name_the_problem_and_column() {
    let err = Expr::compile("event.data.total >").expect_err("incomplete");
    assert!(err.column.is_some(), "{err:?}");
    let err = Expr::compile("event.data.total > 1 &&& true").expect_err("bad operator");
    assert!(err.column.is_some(), "{err:?}");
    let err = Expr::compile("evnt.data.total > 1").expect_err("unknown variable");
    assert!(err.message.contains("unknown variable `evnt`"), "{err}");
    assert_eq!(err.column, Some(1));
    let err = Expr::compile("event.dta.order_id").expect_err("unknown event field");
    assert!(err.message.contains("no field `dta`"), "{err}");
    assert_eq!(err.column, Some(7));
    assert!(Expr::compile("  ").is_err());
}

#[test]
fn expressions_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Expr>();
}

/// Keys are read with `eval_str`: borrowed from the event for a plain path to a
/// string, and always what `eval_string` gives.
#[test]
fn eval_str_borrows_plain_strings_and_agrees_with_eval_string() -> Result<(), CompileError> {
    let event = placed();
    let scope = Scope::event(&event);
    for (source, borrowed) in [
        ("event.data.order_id", true),
        ("event.stream", true),
        ("event.type", true),
        ("event.metadata.tenant", true),
        ("event.data.lines", false),
        ("event.data.total", false),
        ("event.data.order_id + '/' + event.data.channel", false),
    ] {
        let expr = Expr::compile(source)?;
        let got = expr.eval_str(&scope);
        assert_eq!(matches!(got, Ok(Cow::Borrowed(_))), borrowed, "{source}");
        assert_eq!(got.map(Cow::into_owned), expr.eval_string(&scope), "{source}");
    }
    let missing = Expr::compile("event.data.nope")?;
    assert_eq!(
        missing.eval_str(&scope).map(Cow::into_owned),
        missing.eval_string(&scope)
    );
    assert!(missing.eval_str(&scope).is_err());
    Ok(())
}
