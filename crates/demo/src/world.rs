//! The demo's cast: customers, carriers, people, services, SKUs and cost centres,
//! with the traits that make the generated KPIs and controls interesting.

/// A carrier and how it behaves (transit in business hours).
pub(crate) struct Carrier {
    pub name: &'static str,
    pub transit_hours: (f64, f64),
    /// Chance that a shipment is delayed (with a new ETA).
    pub delay: f64,
    /// Chance of a shipment exception (damage, address, customs).
    pub exception: f64,
}

pub(crate) const CARRIERS: &[Carrier] = &[
    Carrier {
        name: "DHL",
        transit_hours: (20.0, 44.0),
        delay: 0.05,
        exception: 0.02,
    },
    Carrier {
        name: "UPS",
        transit_hours: (22.0, 52.0),
        delay: 0.08,
        exception: 0.03,
    },
    Carrier {
        name: "FedEx",
        transit_hours: (16.0, 40.0),
        delay: 0.06,
        exception: 0.02,
    },
    Carrier {
        name: "PostNL",
        transit_hours: (30.0, 70.0),
        delay: 0.22,
        exception: 0.04,
    },
    Carrier {
        name: "DPD",
        transit_hours: (24.0, 56.0),
        delay: 0.12,
        exception: 0.09,
    },
];

pub(crate) const CUSTOMERS: &[&str] = &[
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
];
pub(crate) const CHANNELS: &[&str] = &["web", "web", "web", "marketplace", "store", "phone"];
pub(crate) const WAREHOUSES: &[&str] = &["AMS-1", "RTM-2", "BER-1"];
/// Sales people: they request approval of large orders.
pub(crate) const SALES: &[&str] = &["sam", "tina", "umar"];
/// Sales managers: they approve large orders.
pub(crate) const SALES_MANAGERS: &[&str] = &["vera", "walt"];
/// Employees who raise requisitions.
pub(crate) const REQUESTERS: &[&str] = &["alice", "bob", "carol", "dave", "erin", "frank"];
pub(crate) const VENDORS: &[&str] = &["Office Depot", "Dell", "Würth", "Staples", "Bosch Rexroth", "Lyreco"];
pub(crate) const ON_CALL: &[&str] = &["grace", "heidi", "ivan", "judy", "mallory"];
pub(crate) const SERVICES: &[&str] = &[
    "checkout",
    "payments",
    "warehouse-api",
    "search",
    "erp-sync",
    "carrier-gateway",
];
pub(crate) const INCIDENT_TITLES: &[&str] = &[
    "elevated error rate",
    "p99 latency above SLO",
    "queue backlog growing",
    "certificate expiring",
    "database failover",
    "partial outage in one region",
];
pub(crate) const SKUS: &[&str] = &[
    "SKU-1001", "SKU-1002", "SKU-1003", "SKU-1004", "SKU-1005", "SKU-1006", "SKU-1007", "SKU-1008",
];
/// SKUs that sell fast: with slow replenishment they run out.
pub(crate) const FAST_MOVERS: &[&str] = &["SKU-1003", "SKU-1007"];

/// A cost centre: who approves its requisitions, its monthly budget, and
/// whether it is tight (its spending overruns the budget).
pub(crate) struct CostCentre {
    pub name: &'static str,
    pub manager: &'static str,
    pub monthly_budget: f64,
    pub tight: bool,
}

pub(crate) const COST_CENTRES: &[CostCentre] = &[
    CostCentre {
        name: "CC-ENG",
        manager: "nina",
        monthly_budget: 400_000.0,
        tight: false,
    },
    CostCentre {
        name: "CC-OPS",
        manager: "oscar",
        monthly_budget: 350_000.0,
        tight: false,
    },
    CostCentre {
        name: "CC-SALES",
        manager: "peggy",
        monthly_budget: 250_000.0,
        tight: false,
    },
    CostCentre {
        name: "CC-MKT",
        manager: "quinn",
        monthly_budget: 40_000.0,
        tight: true,
    },
    CostCentre {
        name: "CC-IT",
        manager: "rupert",
        monthly_budget: 60_000.0,
        tight: true,
    },
    CostCentre {
        name: "CC-FIN",
        manager: "sybil",
        monthly_budget: 120_000.0,
        tight: false,
    },
];
pub(crate) const EXPENSE_CATEGORIES: &[&str] = &["travel", "software", "cloud", "training", "catering", "hardware"];
