//! Throughput of `ViewSet::apply` with the default definitions over 1M synthetic events
//! (orders, shipments, procurement, incidents, inventory, budget and some custom noise,
//! with thousands of keys in flight). Run with:
//!
//! `cargo test -p opsflow-views --release --test bench -- --ignored --nocapture`

mod support;

use std::time::{Duration, Instant};

use opsflow_definitions::EventData;
use opsflow_views::ViewSet;
use serde_json::{Value, json};
use support::{default_definitions, nanos};

/// Events of one cycle `i`: each lifecycle step of an entity runs `LAG` cycles after the
/// previous one, so about `LAG` entities of each kind are open at any time.
const LAG: u64 = 500;
const TOTAL: usize = 1_000_000;
const CHUNK: usize = 1_000;

struct Generator {
    cycle: u64,
    position: u64,
    time: i64,
    pending: Vec<EventData>,
}

impl Generator {
    fn push(&mut self, event_type: &str, data: Value) {
        self.position += 1;
        self.time += 50_000_000; // 50 ms of event time per event
        self.pending.push(EventData {
            position: self.position,
            version: 0,
            stream: String::new(),
            source: "bench".into(),
            id: self.position.to_string(),
            event_type: event_type.into(),
            time: self.time,
            data: opsflow_definitions::Data::fields_of(data),
            metadata: Default::default(),
        });
    }

    fn due(&self, n: u64) -> String {
        jiff::Timestamp::from_nanosecond((self.time + (n as i64 % 7200) * 1_000_000_000) as i128)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    fn cycle(&mut self) {
        let i = self.cycle;
        self.cycle += 1;
        let o = |k: u64| format!("O-{k}");
        let total = if i.is_multiple_of(10) { 12_000 } else { 250 };
        let promised = self.due(i);
        self.push("order.placed", json!({"order_id": o(i), "customer": "c", "total": total, "currency": "EUR", "promised_by": promised, "channel": if i.is_multiple_of(2) { "web" } else { "store" }}));
        if let Some(k) = i.checked_sub(LAG) {
            self.push("approval.requested", json!({"approval_id": format!("A-{k}"), "subject_type": "order", "subject_id": o(k), "requester": "alice"}));
            self.push("order.picked", json!({"order_id": o(k), "warehouse": "W1"}));
            self.push("shipment.dispatched", json!({"shipment_id": format!("S-{k}"), "carrier": if k % 3 == 0 { "dhl" } else { "ups" }, "eta": promised, "order_id": o(k)}));
            self.push("purchase_order.issued", json!({"po_number": format!("P-{k}"), "vendor": "acme", "amount": 100, "quantity": 10, "expected_by": promised}));
        }
        if let Some(k) = i.checked_sub(2 * LAG) {
            self.push("approval.granted", json!({"approval_id": format!("A-{k}"), "subject_type": "order", "subject_id": o(k), "approver": if k % 50 == 0 { "alice" } else { "bob" }}));
            self.push("order.shipped", json!({"order_id": o(k), "carrier": "dhl"}));
            if k % 5 == 0 {
                self.push(
                    "shipment.delayed",
                    json!({"shipment_id": format!("S-{k}"), "carrier": "ups", "reason": "weather"}),
                );
            }
            self.push("goods.received", json!({"po_number": format!("P-{k}"), "quantity": 10}));
        }
        if let Some(k) = i.checked_sub(3 * LAG) {
            self.push("order.delivered", json!({"order_id": o(k), "complete": k % 20 != 0}));
            self.push(
                "shipment.delivered",
                json!({"shipment_id": format!("S-{k}"), "carrier": if k % 3 == 0 { "dhl" } else { "ups" }}),
            );
            self.push(
                "invoice.received",
                json!({"invoice_id": format!("I-{k}"), "po_number": format!("P-{k}"), "amount": 100, "quantity": 10}),
            );
        }
        if i.is_multiple_of(4) {
            let n = i / 4;
            self.push(
                "incident.opened",
                json!({"incident_id": format!("INC-{n}"), "severity": format!("sev{}", n % 4 + 1), "service": "api"}),
            );
            if let Some(k) = n.checked_sub(LAG / 4) {
                self.push(
                    "incident.acknowledged",
                    json!({"incident_id": format!("INC-{k}"), "by": "ann"}),
                );
            }
            if let Some(k) = n.checked_sub(LAG / 2) {
                self.push(
                    "incident.resolved",
                    json!({"incident_id": format!("INC-{k}"), "by": "ann"}),
                );
                self.push(
                    "postmortem.published",
                    json!({"incident_id": format!("INC-{k}"), "author": "ann"}),
                );
            }
        }
        let sku = format!("SKU-{}", i % 2000);
        self.push("inventory.adjusted", json!({"sku": sku, "location": "W1", "delta": -1}));
        self.push(
            "expense.recorded",
            json!({"cost_centre": format!("cc{}", i % 40), "period": "2026-11", "amount": 12.5}),
        );
        self.push("custom.noise", json!({"anything": i}));
        self.push("custom.noise", json!({"anything": i + 1}));
    }

    fn chunk(&mut self, n: usize) -> Vec<EventData> {
        while self.pending.len() < n {
            self.cycle();
        }
        let rest = self.pending.split_off(n);
        std::mem::replace(&mut self.pending, rest)
    }
}

/// Applies `TOTAL` synthetic events; returns how many and the time spent applying
/// (generation excluded).
fn feed_synthetic(views: &mut ViewSet) -> (usize, Duration) {
    let mut generator = Generator {
        cycle: 0,
        position: 0,
        time: nanos("2026-11-01T00:00:00Z"),
        pending: Vec::new(),
    };
    let mut spent = Duration::ZERO;
    let mut applied = 0usize;
    while applied < TOTAL {
        let events = generator.chunk(CHUNK);
        let started = Instant::now();
        for event in &events {
            if views.interested(&event.event_type) {
                views.apply(event);
            } else {
                views.skip_event(event.position, event.time);
            }
        }
        spent += started.elapsed();
        applied += events.len();
    }
    (applied, spent)
}

#[test]
#[ignore = "a benchmark: run in release with --ignored --nocapture"]
fn apply_throughput() {
    let defs = default_definitions();
    let mut views = ViewSet::new(&defs);
    let (applied, spent) = feed_synthetic(&mut views);
    let rate = applied as f64 / spent.as_secs_f64();
    let encoded = views.encode();
    println!(
        "applied {applied} events in {:.3} s: {:.0} events/s; state {} bytes; keys {:?}",
        spent.as_secs_f64(),
        rate,
        encoded.len(),
        views
            .view_names()
            .iter()
            .map(|n| (n.clone(), views.view(n).map(|v| v.keys()).unwrap_or(0)))
            .filter(|(_, k)| *k > 0)
            .collect::<Vec<_>>()
    );
    let errors: u64 = views.eval_errors().values().sum();
    assert_eq!(errors, 0, "{:?}", views.eval_errors());
    for kpi in views.kpis() {
        let first = kpi
            .values
            .first()
            .map(|v| (v.window.clone(), v.group.clone(), v.headline, v.status));
        println!("{:<28} {:?}", kpi.name, first);
    }
    for control in views.controls() {
        println!(
            "{:<40} {} checked {} violations {} pending {}",
            control.name,
            control.status.as_str(),
            control.checked,
            control.violations_total,
            control.pending.len()
        );
    }
}

#[test]
#[ignore = "a benchmark: run in release with --ignored --nocapture"]
fn apply_cost_per_view() {
    let defs = default_definitions();
    let mut generator = Generator {
        cycle: 0,
        position: 0,
        time: nanos("2026-11-01T00:00:00Z"),
        pending: Vec::new(),
    };
    let chunks: Vec<Vec<EventData>> = (0..200).map(|_| generator.chunk(CHUNK)).collect();
    let only = std::env::var("BENCH_VIEW").ok();
    for name in ViewSet::new(&defs).view_names() {
        if only.as_ref().is_some_and(|o| *o != name) {
            continue;
        }
        let mut views = ViewSet::only(&defs, &[name.as_str()]);
        let (mut spent, mut matched) = (Duration::ZERO, 0u64);
        for events in &chunks {
            // Warm the chunk first: the runtime applies an event right after decoding it.
            let types: usize = events.iter().map(|e| e.event_type.len()).sum();
            std::hint::black_box(types);
            let started = Instant::now();
            for event in events {
                if views.interested(&event.event_type) {
                    matched += 1;
                    views.apply(event);
                } else {
                    views.skip_event(event.position, event.time);
                }
            }
            spent += started.elapsed();
        }
        let n = (chunks.len() * CHUNK) as f64;
        println!(
            "{name:<40} {:>7.1} ns/event, {:>7.0} ns per matching event ({matched})",
            spent.as_nanos() as f64 / n,
            spent.as_nanos() as f64 / matched.max(1) as f64
        );
    }
}

#[test]
#[ignore = "a benchmark: run in release with --ignored --nocapture"]
fn expression_costs() {
    use opsflow_definitions::{Expr, Scope};
    let event = EventData {
        event_type: "expense.recorded".into(),
        time: nanos("2026-11-01T00:00:00Z"),
        data: json!({"cost_centre": "cc1", "period": "2026-11", "amount": 12.5, "promised_by": "2026-11-02T00:00:00Z"})
            .into(),
        ..EventData::default()
    };
    for source in [
        "event.data.cost_centre",
        "event.data.cost_centre + '/' + event.data.period",
        "event.time <= timestamp(event.data.promised_by)",
        "event.data.amount > 10.0",
    ] {
        let expr = Expr::compile(source).expect("compiles");
        let n = 100_000;
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(expr.eval(&Scope::event(std::hint::black_box(&event))).ok());
        }
        println!(
            "{source:<50} {:>8.0} ns",
            started.elapsed().as_nanos() as f64 / n as f64
        );
    }
}

/// The default definitions with every CEL expression replaced by a plain field path:
/// what the views themselves cost when expressions are cheap.
fn field_path_definitions() -> opsflow_definitions::Definitions {
    use opsflow_definitions::{ControlKind, Expr, KpiKind};
    let path = |s: &str| Expr::compile(s).expect("compiles");
    let mut defs = default_definitions();
    for kpi in &mut defs.kpis {
        if kpi.key.as_ref().is_some_and(|k| !k.is_field_path()) {
            kpi.key = Some(path(if kpi.name.starts_with("budget") {
                "event.data.cost_centre"
            } else {
                "event.data.sku"
            }));
        }
        for (_, g) in &mut kpi.group_by {
            if !g.is_field_path() {
                *g = path("start.data.channel");
            }
        }
        if let KpiKind::Ratio { good, .. } = &mut kpi.kind
            && !good.is_field_path()
        {
            *good = path("event.data.complete");
        }
    }
    for control in &mut defs.controls {
        match &mut control.kind {
            ControlKind::Requires { when, requires } => {
                when.condition = None;
                requires.condition = None;
            }
            ControlKind::Within { after, .. } => after.condition = None,
            ControlKind::SeparationOfDuties { .. } => {}
        }
    }
    defs
}

#[test]
#[ignore = "a benchmark: run in release with --ignored --nocapture"]
fn apply_throughput_field_paths_only() {
    let defs = field_path_definitions();
    let mut views = ViewSet::new(&defs);
    let (applied, spent) = feed_synthetic(&mut views);
    println!(
        "field paths only: applied {applied} events in {:.3} s: {:.0} events/s",
        spent.as_secs_f64(),
        applied as f64 / spent.as_secs_f64()
    );
}
