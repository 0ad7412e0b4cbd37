//! The business flows of the demo: what each step appends and what it schedules
//! next. Durations are in business hours (the generator compresses them live).
//! The anomalies that make KPIs and controls interesting are drawn here: late and
//! damaged deliveries, cancellations and returns, carrier delays and exceptions,
//! self-approved requisitions, invoice mismatches, large orders shipped without
//! approval, slow acknowledgements, missing postmortems, stock-outs, overruns.

use serde_json::{Value, json};

use crate::generator::{Generator, rfc3339};

mod incidents;
use crate::world::{
    CARRIERS, CHANNELS, COST_CENTRES, CUSTOMERS, EXPENSE_CATEGORIES, REQUESTERS, SALES, SALES_MANAGERS, VENDORS,
    WAREHOUSES,
};
pub(crate) use incidents::{Incident, IncidentStep};

/// Orders over this total need an approval (`approval.*` with subject type `order`).
pub(crate) const LARGE_ORDER: f64 = 10_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    Order,
    Requisition,
    Incident,
}

/// A scheduled step; the boxed state travels with it.
pub(crate) enum Action {
    Arrive(Arrival),
    Order(OrderStep, Box<Order>),
    Shipment(ShipmentStep, Box<Order>),
    Requisition(RequisitionStep, Box<Requisition>),
    Incident(IncidentStep, Box<Incident>),
    StockInit(usize),
    Stock(StockStep, usize),
    Spend(usize),
}

pub(crate) enum OrderStep {
    RequestApproval,
    Decide,
    Approve,
    Pick,
    Ship,
    Deliver,
    Return,
}

pub(crate) enum ShipmentStep {
    Delay,
    Exception,
    Deliver,
}

pub(crate) enum RequisitionStep {
    RequestApproval,
    Decide,
    IssuePo,
    Receive,
    Invoice,
}

pub(crate) enum StockStep {
    Demand,
    Replenish(i64),
    Count,
}

#[derive(Clone)]
pub(crate) struct Order {
    id: String,
    total: f64,
    /// The sales person behind it (requests approval of large orders).
    seller: &'static str,
    approval_id: String,
    carrier: usize,
    shipment_id: String,
    /// When the delayed shipment is now expected (Unix ms).
    new_eta: i64,
    damaged: bool,
    complete: bool,
}

pub(crate) struct Requisition {
    id: String,
    requester: &'static str,
    cost_centre: usize,
    amount: f64,
    vendor: &'static str,
    approval_id: String,
    po_number: String,
    quantity: i64,
    received: i64,
}

/// Stock of one SKU at one location.
pub(crate) struct Stock {
    pub sku: &'static str,
    pub location: &'static str,
    pub level: i64,
    pub reorder_point: i64,
    pub replenishing: bool,
    pub fast: bool,
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Generator {
    pub(crate) fn arrive(&mut self, arrival: Arrival) {
        match arrival {
            Arrival::Order => self.place_order(),
            Arrival::Requisition => self.create_requisition(),
            Arrival::Incident => self.open_incident(),
        }
    }

    pub(crate) fn step(&mut self, action: Action) {
        match action {
            Action::Arrive(arrival) => self.arrive(arrival),
            Action::Order(step, order) => self.order(step, order),
            Action::Shipment(step, order) => self.shipment(step, order),
            Action::Requisition(step, req) => self.requisition(step, req),
            Action::Incident(step, incident) => self.incident(step, incident),
            Action::StockInit(i) => self.stock_init(i),
            Action::Stock(step, i) => self.stock(step, i),
            Action::Spend(i) => {
                let (lo, hi) = if COST_CENTRES[i].tight {
                    (800.0, 6_000.0)
                } else {
                    (100.0, 4_000.0)
                };
                let amount = cents(self.rng_range(lo, hi));
                let category = self.pick(EXPENSE_CATEGORIES);
                self.record_expense(i, amount, category, None);
                let next = self.after(4.0, 16.0);
                self.schedule(next, Action::Spend(i));
            }
        }
    }

    fn rng_range(&mut self, lo: f64, hi: f64) -> f64 {
        use rand::Rng;
        self.rng.random_range(lo..hi)
    }

    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        use rand::Rng;
        self.rng.random_range(lo..hi)
    }

    // ---- orders and shipments ----

    fn place_order(&mut self) {
        let id = self.next_id("SO", 10_000);
        let total = cents(match self.int(0, 100) {
            0..8 => self.rng_range(10_500.0, 45_000.0),
            8..25 => self.rng_range(2_000.0, 10_000.0),
            _ => self.rng_range(40.0, 2_000.0),
        });
        // Promises a shop can mostly keep: late deliveries come from slow picking,
        // carrier delays and exceptions, not from every order.
        let promised_hours = self.pick(&[72.0, 96.0, 96.0, 120.0]);
        let promised_by = self.in_hours(promised_hours);
        let (customer, lines, channel) = (self.pick(CUSTOMERS), self.int(1, 9), self.pick(CHANNELS));
        self.emit_order(
            &id,
            "order.placed",
            json!({ "order_id": id, "customer": customer, "total": total, "currency": "EUR",
                    "promised_by": rfc3339(promised_by), "lines": lines, "channel": channel }),
        );
        let order = Box::new(Order {
            id,
            total,
            seller: self.pick(SALES),
            approval_id: String::new(),
            carrier: 0,
            shipment_id: String::new(),
            new_eta: 0,
            damaged: false,
            complete: true,
        });
        // Most large orders go through approval; some are waved through (and
        // shipped with no approval: the control catches them).
        if order.total > LARGE_ORDER && !self.chance(0.3) {
            let at = self.after(0.05, 0.5);
            self.schedule(at, Action::Order(OrderStep::RequestApproval, order));
        } else {
            let at = self.after(0.05, 1.5);
            self.schedule(at, Action::Order(OrderStep::Approve, order));
        }
    }

    fn emit_order(&mut self, id: &str, event_type: &'static str, data: Value) {
        self.emit(format!("order/{id}"), event_type, id, data);
    }

    fn order(&mut self, step: OrderStep, mut order: Box<Order>) {
        let id = order.id.clone();
        match step {
            OrderStep::RequestApproval => {
                order.approval_id = self.next_id("APR", 30_000);
                self.emit_order(
                    &id,
                    "approval.requested",
                    json!({ "approval_id": order.approval_id, "subject_type": "order", "subject_id": id,
                            "requester": order.seller, "amount": order.total }),
                );
                let at = self.after(0.5, 10.0);
                self.schedule(at, Action::Order(OrderStep::Decide, order));
            }
            OrderStep::Decide => {
                let manager = self.pick(SALES_MANAGERS);
                if self.chance(0.12) {
                    self.emit_order(
                        &id,
                        "approval.rejected",
                        json!({ "approval_id": order.approval_id, "subject_type": "order", "subject_id": id,
                                "approver": manager, "reason": "margin below policy" }),
                    );
                    self.emit_order(
                        &id,
                        "order.cancelled",
                        json!({ "order_id": id, "reason": "approval rejected" }),
                    );
                    return;
                }
                // Now and then the seller approves their own order.
                let approver = if self.chance(0.1) { order.seller } else { manager };
                self.emit_order(
                    &id,
                    "approval.granted",
                    json!({ "approval_id": order.approval_id, "subject_type": "order", "subject_id": id,
                            "approver": approver }),
                );
                let at = self.after(0.05, 0.5);
                self.schedule(at, Action::Order(OrderStep::Approve, order));
            }
            OrderStep::Approve => {
                if self.chance(0.04) {
                    let reason = self.pick(&["customer request", "payment failed", "duplicate order"]);
                    self.emit_order(&id, "order.cancelled", json!({ "order_id": id, "reason": reason }));
                    return;
                }
                let approver = if order.total > LARGE_ORDER {
                    self.pick(SALES_MANAGERS)
                } else {
                    "credit-check"
                };
                self.emit_order(&id, "order.approved", json!({ "order_id": id, "approver": approver }));
                // Some picks are slow: those orders miss their promise.
                let at = if self.chance(0.12) {
                    self.after(18.0, 40.0)
                } else {
                    self.after(1.0, 10.0)
                };
                self.schedule(at, Action::Order(OrderStep::Pick, order));
            }
            OrderStep::Pick => {
                let warehouse = self.pick(WAREHOUSES);
                self.emit_order(&id, "order.picked", json!({ "order_id": id, "warehouse": warehouse }));
                let at = self.after(1.0, 6.0);
                self.schedule(at, Action::Order(OrderStep::Ship, order));
            }
            OrderStep::Ship => self.ship(order),
            OrderStep::Deliver => {
                order.complete = !self.chance(0.04);
                order.damaged = order.damaged || self.chance(0.02);
                self.emit_order(
                    &id,
                    "order.delivered",
                    json!({ "order_id": id, "complete": order.complete, "damaged": order.damaged }),
                );
                let returns = if order.damaged {
                    0.7
                } else if !order.complete {
                    0.3
                } else {
                    0.04
                };
                if self.chance(returns) {
                    let at = self.after(12.0, 96.0);
                    self.schedule(at, Action::Order(OrderStep::Return, order));
                }
            }
            OrderStep::Return => {
                let reason = if order.damaged {
                    "arrived damaged"
                } else if !order.complete {
                    "items missing"
                } else {
                    self.pick(&["changed mind", "wrong size", "not as described"])
                };
                self.emit_order(&id, "order.returned", json!({ "order_id": id, "reason": reason }));
            }
        }
    }

    fn ship(&mut self, mut order: Box<Order>) {
        order.carrier = self.int(0, CARRIERS.len() as i64) as usize;
        order.shipment_id = self.next_id("SH", 40_000);
        let carrier = &CARRIERS[order.carrier];
        let (lo, hi) = carrier.transit_hours;
        let transit = self.rng_range(lo, hi);
        // The ETA is what the carrier quotes: most normal transits arrive by it, the
        // slowest tenth and the delayed or failed ones after it.
        let eta = self.in_hours(lo + (hi - lo) * 0.9);
        let (id, shipment) = (order.id.clone(), order.shipment_id.clone());
        self.emit_order(
            &id,
            "order.shipped",
            json!({ "order_id": id, "carrier": carrier.name, "shipment_id": shipment }),
        );
        self.emit(
            format!("shipment/{shipment}"),
            "shipment.dispatched",
            &id,
            json!({ "shipment_id": shipment, "carrier": carrier.name, "eta": rfc3339(eta), "order_id": id }),
        );
        let roll = self.rng_range(0.0, 1.0);
        let delivered_after = if roll < carrier.exception {
            let at = self.in_hours(transit * 0.5);
            order.damaged = self.chance(0.6);
            let extra = self.rng_range(24.0, 48.0);
            self.schedule(
                at,
                Action::Shipment(ShipmentStep::Exception, Box::new((*order).clone())),
            );
            transit + extra
        } else if roll < carrier.exception + carrier.delay {
            let extra = self.rng_range(12.0, 40.0);
            order.new_eta = self.in_hours(transit + extra);
            let at = self.in_hours(transit * 0.5);
            self.schedule(at, Action::Shipment(ShipmentStep::Delay, Box::new((*order).clone())));
            transit + extra
        } else {
            transit
        };
        let at = self.in_hours(delivered_after);
        self.schedule(at, Action::Shipment(ShipmentStep::Deliver, order));
    }

    fn shipment(&mut self, step: ShipmentStep, order: Box<Order>) {
        let carrier = CARRIERS[order.carrier].name;
        let (id, shipment) = (order.id.clone(), order.shipment_id.clone());
        let stream = format!("shipment/{shipment}");
        match step {
            ShipmentStep::Delay => {
                let reason = self.pick(&["hub congestion", "weather", "vehicle breakdown", "sorting backlog"]);
                self.emit(
                    stream,
                    "shipment.delayed",
                    &id,
                    json!({ "shipment_id": shipment, "carrier": carrier, "reason": reason,
                            "new_eta": rfc3339(order.new_eta) }),
                );
            }
            ShipmentStep::Exception => {
                let reason = if order.damaged {
                    "damaged in transit"
                } else {
                    self.pick(&["address not found", "customs hold"])
                };
                self.emit(
                    stream,
                    "shipment.exception",
                    &id,
                    json!({ "shipment_id": shipment, "carrier": carrier, "reason": reason }),
                );
            }
            ShipmentStep::Deliver => {
                self.emit(
                    stream,
                    "shipment.delivered",
                    &id,
                    json!({ "shipment_id": shipment, "carrier": carrier, "order_id": id }),
                );
                let at = self.after(0.02, 0.3);
                self.schedule(at, Action::Order(OrderStep::Deliver, order));
            }
        }
    }

    // ---- procurement ----

    fn create_requisition(&mut self) {
        let id = self.next_id("REQ", 20_000);
        let amount = cents(match self.int(0, 10) {
            0..6 => self.rng_range(200.0, 5_000.0),
            6..9 => self.rng_range(5_000.0, 20_000.0),
            _ => self.rng_range(20_000.0, 60_000.0),
        });
        let req = Box::new(Requisition {
            id: id.clone(),
            requester: self.pick(REQUESTERS),
            cost_centre: self.int(0, COST_CENTRES.len() as i64) as usize,
            amount,
            vendor: self.pick(VENDORS),
            approval_id: String::new(),
            po_number: String::new(),
            quantity: 0,
            received: 0,
        });
        self.emit(
            format!("requisition/{id}"),
            "requisition.created",
            &id,
            json!({ "requisition_id": id, "requester": req.requester, "amount": amount,
                    "cost_centre": COST_CENTRES[req.cost_centre].name, "vendor": req.vendor }),
        );
        let at = self.after(0.05, 1.0);
        self.schedule(at, Action::Requisition(RequisitionStep::RequestApproval, req));
    }

    fn requisition(&mut self, step: RequisitionStep, mut req: Box<Requisition>) {
        let id = req.id.clone();
        let manager = COST_CENTRES[req.cost_centre].manager;
        match step {
            RequisitionStep::RequestApproval => {
                req.approval_id = self.next_id("APR", 30_000);
                self.emit(
                    format!("requisition/{id}"),
                    "approval.requested",
                    &id,
                    json!({ "approval_id": req.approval_id, "subject_type": "requisition", "subject_id": id,
                            "requester": req.requester, "amount": req.amount }),
                );
                let at = if self.chance(0.2) {
                    self.after(20.0, 48.0)
                } else {
                    self.after(1.0, 12.0)
                };
                self.schedule(at, Action::Requisition(RequisitionStep::Decide, req));
            }
            RequisitionStep::Decide => {
                if self.chance(0.1) {
                    let reason = self.pick(&["over budget", "use a preferred vendor", "not needed this quarter"]);
                    self.emit(
                        format!("requisition/{id}"),
                        "approval.rejected",
                        &id,
                        json!({ "approval_id": req.approval_id, "subject_type": "requisition", "subject_id": id,
                                "approver": manager, "reason": reason }),
                    );
                    return;
                }
                // Separation of duties is not always respected.
                let approver = if self.chance(0.09) { req.requester } else { manager };
                self.emit(
                    format!("requisition/{id}"),
                    "approval.granted",
                    &id,
                    json!({ "approval_id": req.approval_id, "subject_type": "requisition", "subject_id": id,
                            "approver": approver }),
                );
                let at = self.after(2.0, 20.0);
                self.schedule(at, Action::Requisition(RequisitionStep::IssuePo, req));
            }
            RequisitionStep::IssuePo => {
                req.po_number = self.next_id("PO", 50_000);
                req.quantity = self.int(1, 400);
                let lead = self.rng_range(24.0, 120.0);
                let expected_by = self.in_hours(lead);
                self.emit(
                    format!("po/{}", req.po_number),
                    "purchase_order.issued",
                    &id,
                    json!({ "po_number": req.po_number, "vendor": req.vendor, "amount": req.amount,
                            "quantity": req.quantity, "expected_by": rfc3339(expected_by),
                            "requisition_id": id, "cost_centre": COST_CENTRES[req.cost_centre].name }),
                );
                let received_after = if self.chance(0.2) {
                    lead + self.rng_range(12.0, 72.0)
                } else {
                    (lead - self.rng_range(0.0, 24.0)).max(1.0)
                };
                let at = self.in_hours(received_after);
                self.schedule(at, Action::Requisition(RequisitionStep::Receive, req));
            }
            RequisitionStep::Receive => {
                req.received = if self.chance(0.1) {
                    ((req.quantity as f64) * self.rng_range(0.5, 0.9)).floor().max(1.0) as i64
                } else {
                    req.quantity
                };
                self.emit(
                    format!("po/{}", req.po_number),
                    "goods.received",
                    &id,
                    json!({ "po_number": req.po_number, "quantity": req.received, "vendor": req.vendor }),
                );
                let at = self.after(0.5, 48.0);
                self.schedule(at, Action::Requisition(RequisitionStep::Invoice, req));
            }
            RequisitionStep::Invoice => {
                // Some vendors invoice more than the order said.
                let amount = if self.chance(0.15) {
                    cents(req.amount * self.rng_range(1.03, 1.15))
                } else {
                    req.amount
                };
                let invoice = self.next_id("INV", 70_000);
                self.emit(
                    format!("po/{}", req.po_number),
                    "invoice.received",
                    &id,
                    json!({ "invoice_id": invoice, "po_number": req.po_number, "amount": amount,
                            "quantity": req.quantity, "vendor": req.vendor }),
                );
                self.record_expense(req.cost_centre, amount, "procurement", Some(&id));
            }
        }
    }

    // ---- budgets ----

    /// Records an expense in the current period, allocating the period's budget
    /// first if needed; budgets that are not tight get a top-up near their limit.
    fn record_expense(&mut self, cc: usize, amount: f64, category: &str, requisition: Option<&str>) {
        let centre = &COST_CENTRES[cc];
        let period = self.period();
        let stream = format!("budget/{}", centre.name);
        if !self.budgets[cc].contains_key(&period) {
            self.emit(
                stream.clone(),
                "budget.allocated",
                centre.name,
                json!({ "cost_centre": centre.name, "period": period, "amount": centre.monthly_budget,
                        "currency": "EUR" }),
            );
            self.budgets[cc].insert(period.clone(), (centre.monthly_budget, 0.0));
        }
        let mut data = json!({ "cost_centre": centre.name, "period": period, "amount": amount, "category": category });
        if let (Some(req), Some(map)) = (requisition, data.as_object_mut()) {
            map.insert("requisition_id".into(), json!(req));
        }
        self.emit(stream.clone(), "expense.recorded", centre.name, data);
        let entry = self.budgets[cc].entry(period.clone()).or_insert((0.0, 0.0));
        entry.1 += amount;
        let (allocated, spent) = *entry;
        if !centre.tight && spent > 0.9 * allocated {
            let top_up = centre.monthly_budget / 2.0;
            self.emit(
                stream,
                "budget.allocated",
                centre.name,
                json!({ "cost_centre": centre.name, "period": period, "amount": top_up, "currency": "EUR" }),
            );
            entry_add(&mut self.budgets[cc], &period, top_up);
        }
    }

    // ---- inventory ----

    fn stock_stream(&self, i: usize) -> (String, String) {
        let s = &self.stocks[i];
        let key = format!("{}@{}", s.sku, s.location);
        (format!("inventory/{key}"), key)
    }

    fn stock_init(&mut self, i: usize) {
        let (stream, key) = self.stock_stream(i);
        let s = &self.stocks[i];
        let (sku, location, level, reorder_point) = (s.sku, s.location, s.level, s.reorder_point);
        self.emit(
            stream.clone(),
            "reorder_point.set",
            &key,
            json!({ "sku": sku, "location": location, "reorder_point": reorder_point }),
        );
        self.emit(
            stream,
            "inventory.counted",
            &key,
            json!({ "sku": sku, "location": location, "quantity": level }),
        );
        let demand = self.after(0.5, 4.0);
        self.schedule(demand, Action::Stock(StockStep::Demand, i));
        let count = self.after(20.0, 28.0);
        self.schedule(count, Action::Stock(StockStep::Count, i));
    }

    fn stock(&mut self, step: StockStep, i: usize) {
        let (stream, key) = self.stock_stream(i);
        let (sku, location, fast) = (self.stocks[i].sku, self.stocks[i].location, self.stocks[i].fast);
        match step {
            StockStep::Demand => {
                let demand = if fast { self.int(5, 25) } else { self.int(1, 10) };
                let taken = demand.min(self.stocks[i].level);
                if taken > 0 {
                    self.stocks[i].level -= taken;
                    let reason = if self.chance(0.05) {
                        "damaged"
                    } else {
                        "shipped to customer"
                    };
                    self.emit(
                        stream,
                        "inventory.adjusted",
                        &key,
                        json!({ "sku": sku, "location": location, "delta": -taken, "reason": reason }),
                    );
                }
                let s = &self.stocks[i];
                if s.level <= s.reorder_point && !s.replenishing {
                    let quantity = s.reorder_point * 3 + 40;
                    self.stocks[i].replenishing = true;
                    // Slow suppliers (more often for fast movers) cause stock-outs.
                    let slow = if fast { 0.5 } else { 0.15 };
                    let at = if self.chance(slow) {
                        self.after(60.0, 120.0)
                    } else {
                        self.after(12.0, 36.0)
                    };
                    self.schedule(at, Action::Stock(StockStep::Replenish(quantity), i));
                }
                let at = if fast {
                    self.after(1.0, 3.0)
                } else {
                    self.after(2.0, 6.0)
                };
                self.schedule(at, Action::Stock(StockStep::Demand, i));
            }
            StockStep::Replenish(quantity) => {
                self.stocks[i].level += quantity;
                self.stocks[i].replenishing = false;
                self.emit(
                    stream,
                    "inventory.adjusted",
                    &key,
                    json!({ "sku": sku, "location": location, "delta": quantity, "reason": "goods received" }),
                );
            }
            StockStep::Count => {
                let discrepancy = if self.chance(0.15) { self.int(-4, 4) } else { 0 };
                let level = (self.stocks[i].level + discrepancy).max(0);
                self.stocks[i].level = level;
                self.emit(
                    stream.clone(),
                    "inventory.counted",
                    &key,
                    json!({ "sku": sku, "location": location, "quantity": level }),
                );
                if self.chance(0.08) {
                    let point = (self.stocks[i].reorder_point + self.int(-10, 15)).max(10);
                    self.stocks[i].reorder_point = point;
                    self.emit(
                        stream,
                        "reorder_point.set",
                        &key,
                        json!({ "sku": sku, "location": location, "reorder_point": point }),
                    );
                }
                let at = self.after(20.0, 28.0);
                self.schedule(at, Action::Stock(StockStep::Count, i));
            }
        }
    }
}

fn entry_add(periods: &mut crate::generator::Periods, period: &str, amount: f64) {
    if let Some(entry) = periods.get_mut(period) {
        entry.0 += amount;
    }
}
