//! The catalog as data: every well-known event type and its fields, exactly as
//! `docs/catalog.md` lists them.

use std::collections::HashMap;
use std::sync::LazyLock;

/// What a field holds (see the conventions in `docs/catalog.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A non-empty string.
    String,
    /// A number `>= 0`, in major units (`12500.50`).
    Money,
    /// Any number.
    Number,
    /// A whole number.
    Integer,
    /// An RFC 3339 timestamp string (`2026-11-21T10:00:00Z`).
    Timestamp,
    /// `true` or `false`.
    Bool,
}

impl Kind {
    /// What a value of this kind must be, as error messages say it.
    pub fn expected(self) -> &'static str {
        match self {
            Kind::String => "a non-empty string",
            Kind::Money => "a number >= 0",
            Kind::Number => "a number",
            Kind::Integer => "a whole number",
            Kind::Timestamp => "an RFC 3339 timestamp",
            Kind::Bool => "true or false",
        }
    }
}

/// Values a string field is further held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `sev1` (most severe) to `sev4`.
    Severity,
    /// A month, `YYYY-MM`.
    YearMonth,
}

impl Format {
    /// What a value of this format must be, as error messages say it.
    pub fn expected(self) -> &'static str {
        match self {
            Format::Severity => "one of sev1, sev2, sev3, sev4",
            Format::YearMonth => "a month as YYYY-MM (2026-11)",
        }
    }

    pub fn fits(self, text: &str) -> bool {
        match self {
            Format::Severity => matches!(text, "sev1" | "sev2" | "sev3" | "sev4"),
            Format::YearMonth => {
                let b = text.as_bytes();
                b.len() == 7
                    && b[..4].iter().all(u8::is_ascii_digit)
                    && b[4] == b'-'
                    && matches!((b[5], b[6]), (b'0', b'1'..=b'9') | (b'1', b'0'..=b'2'))
            }
        }
    }
}

/// One field of a catalog event's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// For strings: the values it may take, beyond being a non-empty string.
    pub format: Option<Format>,
}

/// One catalog event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSpec {
    /// The CloudEvents type, e.g. `order.placed`.
    pub event_type: &'static str,
    /// The protobuf message in `proto/opsflow/v1/catalog.proto`, e.g. `OrderPlaced`.
    pub message: &'static str,
    /// Required fields first, then optional ones, in the order of the docs.
    pub fields: &'static [Field],
}

impl EventSpec {
    /// The fully qualified protobuf message name, e.g. `opsflow.v1.OrderPlaced`.
    pub fn full_message_name(&self) -> String {
        format!("opsflow.v1.{}", self.message)
    }

    /// The field called `name`, if the catalog lists it.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The required fields.
    pub fn required(&self) -> impl Iterator<Item = &'static Field> + use<> {
        self.fields.iter().filter(|f| f.required)
    }
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
        format: None,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
        format: None,
    }
}

impl Field {
    const fn format(self, format: Format) -> Field {
        Field {
            format: Some(format),
            ..self
        }
    }
}

use Kind::{Bool, Integer, Money, Number, String as Str, Timestamp};

const fn spec(event_type: &'static str, message: &'static str, fields: &'static [Field]) -> EventSpec {
    EventSpec {
        event_type,
        message,
        fields,
    }
}

/// Every catalog type, in the order of `docs/catalog.md`.
pub static CATALOG: &[EventSpec] = &[
    // Orders
    spec(
        "order.placed",
        "OrderPlaced",
        &[
            req("order_id", Str),
            req("customer", Str),
            req("total", Money),
            req("currency", Str),
            req("promised_by", Timestamp),
            opt("lines", Integer),
            opt("channel", Str),
        ],
    ),
    spec(
        "order.approved",
        "OrderApproved",
        &[req("order_id", Str), req("approver", Str)],
    ),
    spec(
        "order.picked",
        "OrderPicked",
        &[req("order_id", Str), opt("warehouse", Str)],
    ),
    spec(
        "order.shipped",
        "OrderShipped",
        &[req("order_id", Str), req("carrier", Str), opt("shipment_id", Str)],
    ),
    spec(
        "order.delivered",
        "OrderDelivered",
        &[req("order_id", Str), opt("complete", Bool), opt("damaged", Bool)],
    ),
    spec(
        "order.cancelled",
        "OrderCancelled",
        &[req("order_id", Str), req("reason", Str)],
    ),
    spec(
        "order.returned",
        "OrderReturned",
        &[req("order_id", Str), req("reason", Str)],
    ),
    // Shipments
    spec(
        "shipment.dispatched",
        "ShipmentDispatched",
        &[
            req("shipment_id", Str),
            req("carrier", Str),
            req("eta", Timestamp),
            opt("order_id", Str),
        ],
    ),
    spec(
        "shipment.delayed",
        "ShipmentDelayed",
        &[
            req("shipment_id", Str),
            req("carrier", Str),
            req("reason", Str),
            opt("new_eta", Timestamp),
        ],
    ),
    spec(
        "shipment.delivered",
        "ShipmentDelivered",
        &[req("shipment_id", Str), req("carrier", Str), opt("order_id", Str)],
    ),
    spec(
        "shipment.exception",
        "ShipmentException",
        &[req("shipment_id", Str), req("carrier", Str), req("reason", Str)],
    ),
    // Procurement
    spec(
        "requisition.created",
        "RequisitionCreated",
        &[
            req("requisition_id", Str),
            req("requester", Str),
            req("amount", Money),
            req("cost_centre", Str),
            opt("vendor", Str),
        ],
    ),
    spec(
        "approval.requested",
        "ApprovalRequested",
        &[
            req("approval_id", Str),
            req("subject_type", Str),
            req("subject_id", Str),
            req("requester", Str),
            opt("amount", Money),
        ],
    ),
    spec(
        "approval.granted",
        "ApprovalGranted",
        &[
            req("approval_id", Str),
            req("subject_type", Str),
            req("subject_id", Str),
            req("approver", Str),
        ],
    ),
    spec(
        "approval.rejected",
        "ApprovalRejected",
        &[
            req("approval_id", Str),
            req("subject_type", Str),
            req("subject_id", Str),
            req("approver", Str),
            opt("reason", Str),
        ],
    ),
    spec(
        "purchase_order.issued",
        "PurchaseOrderIssued",
        &[
            req("po_number", Str),
            req("vendor", Str),
            req("amount", Money),
            req("quantity", Number),
            req("expected_by", Timestamp),
            opt("requisition_id", Str),
            opt("cost_centre", Str),
        ],
    ),
    spec(
        "goods.received",
        "GoodsReceived",
        &[req("po_number", Str), req("quantity", Number), opt("vendor", Str)],
    ),
    spec(
        "invoice.received",
        "InvoiceReceived",
        &[
            req("invoice_id", Str),
            req("po_number", Str),
            req("amount", Money),
            req("quantity", Number),
            opt("vendor", Str),
        ],
    ),
    // Incidents
    spec(
        "incident.opened",
        "IncidentOpened",
        &[
            req("incident_id", Str),
            req("severity", Str).format(Format::Severity),
            req("service", Str),
            opt("title", Str),
        ],
    ),
    spec(
        "incident.acknowledged",
        "IncidentAcknowledged",
        &[req("incident_id", Str), req("by", Str)],
    ),
    spec(
        "incident.mitigated",
        "IncidentMitigated",
        &[req("incident_id", Str), opt("by", Str)],
    ),
    spec(
        "incident.resolved",
        "IncidentResolved",
        &[
            req("incident_id", Str),
            opt("by", Str),
            opt("severity", Str).format(Format::Severity),
        ],
    ),
    spec(
        "postmortem.published",
        "PostmortemPublished",
        &[req("incident_id", Str), req("author", Str), opt("url", Str)],
    ),
    // Inventory
    spec(
        "inventory.adjusted",
        "InventoryAdjusted",
        &[
            req("sku", Str),
            req("location", Str),
            req("delta", Number),
            opt("reason", Str),
        ],
    ),
    spec(
        "inventory.counted",
        "InventoryCounted",
        &[req("sku", Str), req("location", Str), req("quantity", Number)],
    ),
    spec(
        "reorder_point.set",
        "ReorderPointSet",
        &[req("sku", Str), req("location", Str), req("reorder_point", Number)],
    ),
    // Budget
    spec(
        "budget.allocated",
        "BudgetAllocated",
        &[
            req("cost_centre", Str),
            req("period", Str).format(Format::YearMonth),
            req("amount", Money),
            opt("currency", Str),
        ],
    ),
    spec(
        "expense.recorded",
        "ExpenseRecorded",
        &[
            req("cost_centre", Str),
            req("period", Str).format(Format::YearMonth),
            req("amount", Money),
            opt("category", Str),
            opt("requisition_id", Str),
        ],
    ),
];

/// The catalog entry for `event_type`, or `None` for a custom type.
pub fn spec_of(event_type: &str) -> Option<&'static EventSpec> {
    // Asked on every append, twice: by hash rather than by comparing entries.
    type ByType = HashMap<&'static str, &'static EventSpec, foldhash::fast::FixedState>;
    static BY_TYPE: LazyLock<ByType> = LazyLock::new(|| CATALOG.iter().map(|spec| (spec.event_type, spec)).collect());
    BY_TYPE.get(event_type).copied()
}

/// Whether `event_type` is a catalog type (validated on append).
pub fn is_catalog_type(event_type: &str) -> bool {
    spec_of(event_type).is_some()
}

/// Every catalog type, in the order of `docs/catalog.md`.
pub fn types() -> impl Iterator<Item = &'static str> {
    CATALOG.iter().map(|s| s.event_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_unique_and_messages_follow_the_type_name() {
        let mut seen = std::collections::BTreeSet::new();
        for spec in CATALOG {
            assert!(seen.insert(spec.event_type), "{} listed twice", spec.event_type);
            let camel: std::string::String = spec
                .event_type
                .split(['.', '_'])
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                        .unwrap_or_default()
                })
                .collect();
            assert_eq!(spec.message, camel);
            assert!(
                spec.required().count() >= 1,
                "{} has no required field",
                spec.event_type
            );
            let required_first = spec.fields.iter().skip_while(|f| f.required).all(|f| !f.required);
            assert!(required_first, "{}: required fields come first", spec.event_type);
        }
        assert_eq!(seen.len(), 28);
    }

    /// The table against docs/catalog.md itself: every row, every field, every kind.
    #[test]
    fn the_table_is_the_documented_catalog() {
        let doc = include_str!("../../../docs/catalog.md");
        let mut documented = Vec::new();
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let event_type = cells[1].trim_matches('`');
            let parse = |cell: &str, required: bool| -> Vec<(std::string::String, std::string::String, bool)> {
                // Drop annotations in parentheses: "`severity` string (`sev1`..`sev4`)".
                let mut depth = 0;
                let cell: std::string::String = cell
                    .chars()
                    .filter(|c| {
                        match c {
                            '(' => depth += 1,
                            ')' => {
                                depth -= 1;
                                return false;
                            }
                            _ => {}
                        }
                        depth == 0
                    })
                    .collect();
                cell.split(", `")
                    .filter(|s| !s.trim().is_empty())
                    .map(|f| {
                        let f = f.trim_start_matches('`');
                        let (name, rest) = f.split_once('`').expect("a field name in backquotes");
                        let kind = rest.split_whitespace().next().expect("a kind after the name");
                        (name.to_owned(), kind.to_owned(), required)
                    })
                    .collect()
            };
            let mut fields = parse(cells[2], true);
            fields.extend(parse(cells[3], false));
            documented.push((event_type.to_owned(), fields));
        }
        let ours: Vec<_> = CATALOG
            .iter()
            .map(|s| {
                let fields = s
                    .fields
                    .iter()
                    .map(|f| (f.name.to_owned(), format!("{:?}", f.kind).to_lowercase(), f.required))
                    .collect::<Vec<_>>();
                (s.event_type.to_owned(), fields)
            })
            .collect();
        assert_eq!(ours, documented);
    }
}
