//! Shared by the integration tests: YAML to JSON, times, events, definitions.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use marked_yaml::Node;
use opsflow_definitions::{Definitions, EventData};
use serde::Deserialize;

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shipped default definitions (`deploy/definitions`).
pub fn default_definitions() -> Definitions {
    Definitions::load_dir(&workspace().join("deploy/definitions")).expect("deploy/definitions checks")
}

pub fn definitions(yaml: &str) -> Definitions {
    Definitions::from_files(&[("test.yaml".to_string(), yaml.to_string())])
        .unwrap_or_else(|e| panic!("definitions do not check:\n{e}"))
}

/// YAML text to JSON: unquoted scalars become booleans, numbers or null when they
/// read as such.
pub fn yaml_to_json(yaml: &str) -> serde_json::Value {
    let node = marked_yaml::parse_yaml(0, yaml).expect("valid YAML");
    node_to_json(&node)
}

fn node_to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match node {
        Node::Scalar(s) => {
            let text = s.as_str();
            if !s.may_coerce() {
                return Value::String(text.to_string());
            }
            match text {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" | "~" => Value::Null,
                _ => {
                    let numeric = text.chars().any(|c| c.is_ascii_digit());
                    match (text.parse::<i64>(), text.parse::<f64>()) {
                        (Ok(i), _) => Value::from(i),
                        (_, Ok(f)) if numeric => Value::from(f),
                        _ => Value::String(text.to_string()),
                    }
                }
            }
        }
        Node::Sequence(items) => Value::Array(items.iter().map(node_to_json).collect()),
        Node::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.as_str().to_string(), node_to_json(v)))
                .collect(),
        ),
    }
}

/// RFC 3339 to Unix nanoseconds.
pub fn nanos(time: &str) -> i64 {
    let ts: jiff::Timestamp = time.parse().unwrap_or_else(|e| panic!("bad time {time}: {e}"));
    ts.as_nanosecond() as i64
}

/// An event as fixtures write it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureEvent {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub stream: Option<String>,
    pub time: String,
    #[serde(default)]
    pub data: serde_json::Value,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Positions from 1 in order, versions counted per stream.
pub fn events(fixture: &[FixtureEvent]) -> Vec<EventData> {
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    fixture
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let stream = e.stream.clone().unwrap_or_else(|| format!("test/{}", e.event_type));
            let version = versions.entry(stream.clone()).or_insert(0);
            let event = EventData {
                position: i as u64 + 1,
                version: *version,
                stream,
                source: e.source.clone().unwrap_or_else(|| "fixture".into()),
                id: format!("e{}", i + 1),
                event_type: e.event_type.clone(),
                time: nanos(&e.time),
                data: opsflow_definitions::Data::fields_of(e.data.clone()),
                metadata: e.metadata.clone(),
            };
            *version += 1;
            event
        })
        .collect()
}

/// Every event type the default definitions read, and one they do not.
pub const TYPES: &[&str] = &[
    "order.placed",
    "order.approved",
    "order.picked",
    "order.shipped",
    "order.delivered",
    "order.cancelled",
    "order.returned",
    "shipment.dispatched",
    "shipment.delayed",
    "shipment.delivered",
    "approval.requested",
    "approval.granted",
    "approval.rejected",
    "purchase_order.issued",
    "goods.received",
    "invoice.received",
    "incident.opened",
    "incident.acknowledged",
    "incident.mitigated",
    "incident.resolved",
    "postmortem.published",
    "inventory.adjusted",
    "inventory.counted",
    "reorder_point.set",
    "budget.allocated",
    "expense.recorded",
    "custom.thing",
];

/// Data for an event of `event_type` at `time` (Unix nanoseconds), the `index`th of
/// a run: keyed `K-<key>` (order, shipment, approval, purchase order, incident,
/// SKU, cost centre), numbers from `amount`, choices from `flag`, and dates some
/// hours after `time`.
pub fn sample_data(
    event_type: &str,
    key: u8,
    amount_units: u32,
    flag: bool,
    time: i64,
    index: usize,
) -> serde_json::Value {
    use serde_json::json;
    let minute = 60_000_000_000i64;
    let k = format!("K-{key}");
    let who = if flag { "alice" } else { "bob" };
    let amount = amount_units as f64 / 4.0;
    let later = rfc3339(time + (amount_units as i64 % 72) * 60 * minute);
    let severity = format!("sev{}", key + 1);
    match event_type.split('.').next().unwrap_or_default() {
        "order" => json!({"order_id": k, "customer": "c", "total": amount_units, "currency": "EUR",
                    "promised_by": later, "channel": if flag { "web" } else { "store" }, "carrier": "dhl",
                    "approver": who, "reason": "r", "complete": flag, "damaged": amount_units.is_multiple_of(7)}),
        "shipment" => {
            json!({"shipment_id": k, "carrier": if flag { "dhl" } else { "ups" }, "eta": later, "reason": "r"})
        }
        "approval" => json!({"approval_id": k, "subject_type": if flag { "order" } else { "requisition" },
                    "subject_id": k, "requester": who, "approver": if amount_units.is_multiple_of(2) { "alice" } else { "carol" }}),
        "purchase_order" | "goods" | "invoice" => {
            json!({"po_number": k, "vendor": if flag { "acme" } else { "globex" },
                    "amount": (amount_units % 3) as f64 * 100.0, "quantity": amount_units % 3, "expected_by": later, "invoice_id": format!("I-{index}")})
        }
        "incident" | "postmortem" => {
            json!({"incident_id": k, "severity": severity, "service": "api", "by": who, "author": who})
        }
        "inventory" | "reorder_point" => json!({"sku": k, "location": "W1", "delta": amount - 2500.0,
                    "quantity": amount, "reorder_point": 1000}),
        "budget" | "expense" => json!({"cost_centre": k, "period": "2026-11", "amount": amount}),
        _ => json!({"anything": amount}),
    }
}

fn rfc3339(nanos: i64) -> String {
    jiff::Timestamp::from_nanosecond(nanos as i128)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
