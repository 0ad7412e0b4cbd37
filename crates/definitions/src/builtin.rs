//! The default definitions (`deploy/definitions`), built into the binary.

use std::sync::LazyLock;

use crate::Definitions;

/// The files of `deploy/definitions`, as (file name, content), sorted by name.
pub const BUILTIN_FILES: &[(&str, &str)] = &[
    ("budget.yaml", include_str!("../../../deploy/definitions/budget.yaml")),
    (
        "controls.yaml",
        include_str!("../../../deploy/definitions/controls.yaml"),
    ),
    (
        "incidents.yaml",
        include_str!("../../../deploy/definitions/incidents.yaml"),
    ),
    (
        "inventory.yaml",
        include_str!("../../../deploy/definitions/inventory.yaml"),
    ),
    ("orders.yaml", include_str!("../../../deploy/definitions/orders.yaml")),
    (
        "procurement.yaml",
        include_str!("../../../deploy/definitions/procurement.yaml"),
    ),
    (
        "shipments.yaml",
        include_str!("../../../deploy/definitions/shipments.yaml"),
    ),
];

/// The built-in definitions: what `opsflow dev` uses when there is no
/// `deploy/definitions` directory. Checked once, then cloned.
///
/// # Panics
///
/// Never in a released binary: a test checks that the built-in files check clean.
pub fn builtin() -> Definitions {
    static BUILTIN: LazyLock<Definitions> = LazyLock::new(|| {
        let files: Vec<(String, String)> = BUILTIN_FILES
            .iter()
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect();
        match Definitions::from_files(&files) {
            Ok(d) => d,
            Err(e) => panic!("the built-in definitions do not check:\n{e}"),
        }
    });
    BUILTIN.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_definitions_check_clean() {
        let files: Vec<(String, String)> = BUILTIN_FILES
            .iter()
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect();
        if let Err(e) = Definitions::from_files(&files) {
            panic!("{e}");
        }
        let d = builtin();
        assert_eq!(
            d.kpis.len(),
            17,
            "{:?}",
            d.kpis.iter().map(|k| &k.name).collect::<Vec<_>>()
        );
        assert_eq!(d.controls.len(), 3);
        assert!(d.version.starts_with("sha256:"));
    }

    #[test]
    fn builtin_files_are_the_deploy_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/definitions");
        let on_disk = crate::dir::read_files(&dir).expect("deploy/definitions");
        let built_in: Vec<(String, String)> = BUILTIN_FILES
            .iter()
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect();
        assert_eq!(
            on_disk, built_in,
            "a file of deploy/definitions is missing from BUILTIN_FILES"
        );
    }

    /// The built-in expressions do what their descriptions say, on catalog events.
    mod semantics {
        use crate::Seen;
        use std::sync::Arc;

        use serde_json::json;

        use crate::{ControlKind, EventData, KpiKind, Scope, builtin};

        const HOUR: i64 = 3_600_000_000_000;
        /// 2025-11-21T10:00:00Z
        const PROMISED: i64 = 1_763_719_200 * 1_000_000_000;

        fn event(event_type: &str, time: i64, data: serde_json::Value) -> EventData {
            EventData {
                event_type: event_type.into(),
                time,
                data: crate::expr::Data::fields_of(data),
                ..EventData::default()
            }
        }

        fn seen(events: &[&EventData]) -> Seen {
            events.iter().map(|e| Arc::new((*e).clone())).collect()
        }

        /// The ratio's `good`: `None` when it does not evaluate (the sample is left out).
        fn judged(kpi: &str, event: &EventData, seen: &Seen) -> Option<bool> {
            let d = builtin();
            let KpiKind::Ratio { good, .. } = &d.kpi(kpi).expect("defined").kind else {
                panic!("{kpi} is not a ratio")
            };
            good.eval_condition(&Scope {
                event,
                seen: Some(seen),
                start: None,
            })
        }

        fn good(kpi: &str, event: &EventData, seen: &Seen) -> bool {
            judged(kpi, event, seen) == Some(true)
        }

        fn placed() -> EventData {
            event(
                "order.placed",
                PROMISED - 48 * HOUR,
                json!({"order_id": "O-1", "customer": "c", "total": 12500.5, "currency": "EUR",
                       "promised_by": "2025-11-21T10:00:00Z"}),
            )
        }

        #[test]
        fn order_on_time_and_perfect() {
            let p = placed();
            let on_time = event("order.delivered", PROMISED - HOUR, json!({"order_id": "O-1"}));
            let late = event("order.delivered", PROMISED + HOUR, json!({"order_id": "O-1"}));
            assert!(good("order_on_time_rate", &on_time, &seen(&[&p])));
            assert!(!good("order_on_time_rate", &late, &seen(&[&p])));
            // Without the placement there is no promise to judge by: not judged.
            assert_eq!(judged("order_on_time_rate", &on_time, &seen(&[])), None);
            assert_eq!(judged("order_on_time_rate", &late, &seen(&[&p])), Some(false));

            assert!(good("perfect_order_rate", &on_time, &seen(&[&p])));
            assert!(!good("perfect_order_rate", &late, &seen(&[&p])));
            let flagged = |data| event("order.delivered", PROMISED - HOUR, data);
            let complete = flagged(json!({"order_id": "O-1", "complete": true, "damaged": false}));
            assert!(good("perfect_order_rate", &complete, &seen(&[&p])));
            let partial = flagged(json!({"order_id": "O-1", "complete": false}));
            assert!(!good("perfect_order_rate", &partial, &seen(&[&p])));
            let damaged = flagged(json!({"order_id": "O-1", "damaged": true}));
            assert!(!good("perfect_order_rate", &damaged, &seen(&[&p])));
            let returned = event(
                "order.returned",
                PROMISED - 2 * HOUR,
                json!({"order_id": "O-1", "reason": "x"}),
            );
            assert!(!good("perfect_order_rate", &on_time, &seen(&[&p, &returned])));
        }

        #[test]
        fn three_way_match() {
            let po = event(
                "purchase_order.issued",
                0,
                json!({"po_number": "PO-1", "vendor": "v", "amount": 100, "quantity": 10,
                       "expected_by": "2025-11-21T10:00:00Z"}),
            );
            let received = event("goods.received", HOUR, json!({"po_number": "PO-1", "quantity": 10.0}));
            let invoice = |amount: f64, quantity: i64| {
                event(
                    "invoice.received",
                    2 * HOUR,
                    json!({"invoice_id": "I-1", "po_number": "PO-1", "amount": amount, "quantity": quantity}),
                )
            };
            assert!(good(
                "three_way_match_rate",
                &invoice(100.0, 10),
                &seen(&[&po, &received])
            ));
            assert!(!good(
                "three_way_match_rate",
                &invoice(101.0, 10),
                &seen(&[&po, &received])
            ));
            assert!(!good(
                "three_way_match_rate",
                &invoice(100.0, 9),
                &seen(&[&po, &received])
            ));
            assert!(!good("three_way_match_rate", &invoice(100.0, 10), &seen(&[&po])));
            assert!(good("vendor_on_time_rate", &received, &seen(&[&po])));
        }

        #[test]
        fn keys_and_groups() {
            let d = builtin();
            let counted = event(
                "inventory.counted",
                0,
                json!({"sku": "SKU-1", "location": "AMS", "quantity": 4}),
            );
            let key = d.kpi("inventory_on_hand").and_then(|k| k.key.as_ref()).expect("key");
            assert_eq!(key.eval_string(&Scope::event(&counted)), Ok("SKU-1@AMS".into()));
            let expense = event(
                "expense.recorded",
                0,
                json!({"cost_centre": "CC-7", "period": "2025-11", "amount": 10}),
            );
            let key = d.kpi("budget_burn").and_then(|k| k.key.as_ref()).expect("key");
            assert_eq!(key.eval_string(&Scope::event(&expense)), Ok("CC-7/2025-11".into()));

            let cycle = d.kpi("order_cycle_time").expect("defined");
            let delivered = event("order.delivered", 0, json!({"order_id": "O-1"}));
            let mut start = placed();
            let channel = |start: &EventData| {
                cycle.group_by[0].1.eval_string(&Scope {
                    event: &delivered,
                    seen: None,
                    start: Some(start),
                })
            };
            assert_eq!(channel(&start), Ok("unknown".into()));
            let mut data = start.data.as_json().clone();
            data["channel"] = json!("web");
            start.data = data.into();
            assert_eq!(channel(&start), Ok("web".into()));
        }

        #[test]
        fn control_conditions() {
            let d = builtin();
            let c = d.control("large_orders_approved_before_shipping").expect("defined");
            let ControlKind::Requires { when, requires } = &c.kind else {
                panic!()
            };
            let shipped = event("order.shipped", 0, json!({"order_id": "O-1", "carrier": "dhl"}));
            let big = placed();
            let mut small = placed();
            let mut data = small.data.as_json().clone();
            data["total"] = json!(10000);
            small.data = data.into();
            let with = |seen: &Seen| {
                when.matches(&Scope {
                    event: &shipped,
                    seen: Some(seen),
                    start: None,
                })
            };
            assert!(with(&seen(&[&big])));
            assert!(!with(&seen(&[&small])));
            let granted = event(
                "approval.granted",
                0,
                json!({"approval_id": "A-1", "subject_type": "order", "subject_id": "O-1", "approver": "x"}),
            );
            assert!(requires.matches(&Scope::event(&granted)));
            let key = requires.key.as_ref().expect("per-match key");
            assert_eq!(key.eval_string(&Scope::event(&granted)), Ok("O-1".into()));

            let c = d.control("postmortem_within_5_days").expect("defined");
            let ControlKind::Within {
                after, within_nanos, ..
            } = &c.kind
            else {
                panic!()
            };
            assert_eq!(*within_nanos, 120 * HOUR);
            let opened = |severity: &str| {
                event(
                    "incident.opened",
                    0,
                    json!({"incident_id": "I-1", "severity": severity, "service": "api"}),
                )
            };
            let resolved = event("incident.resolved", HOUR, json!({"incident_id": "I-1"}));
            let resolved_as = |severity: &str| {
                event(
                    "incident.resolved",
                    HOUR,
                    json!({"incident_id": "I-1", "severity": severity}),
                )
            };
            let after_with = |event: &EventData, seen: &Seen| {
                after.matches(&Scope {
                    event,
                    seen: Some(seen),
                    start: None,
                })
            };
            assert!(after_with(&resolved, &seen(&[&opened("sev1")])));
            assert!(!after_with(&resolved, &seen(&[&opened("sev2")])));
            // The severity at resolution wins over the one at opening.
            assert!(after_with(&resolved_as("sev1"), &seen(&[&opened("sev3")])));
            assert!(!after_with(&resolved_as("sev2"), &seen(&[&opened("sev1")])));
        }
    }
}
