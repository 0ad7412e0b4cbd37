//! The demo's simulation core: a seeded discrete-event simulation. Business
//! objects (orders, requisitions, incidents, stock, budgets) schedule their next
//! steps on one queue; each step appends events. Time runs in two modes:
//!
//! - **backfill**: from `start` (a week ago) up to now at business pace, with
//!   arrivals drawn at realistic rates; events carry their past times.
//! - **live**: event time is the wall clock and durations are compressed
//!   ([`LIVE_SCALE`]: a business day in 36 s); each call emits one event, a due
//!   step if there is one, else a new arrival, so the rate is the caller's.
//!
//! The same seed (and run) gives the same events; only the times depend on when
//! the demo starts.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use jiff::Timestamp;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::flows::{Action, Arrival, Stock};
use crate::world::{COST_CENTRES, FAST_MOVERS, SKUS, WAREHOUSES};

/// How much history the demo writes before going live.
pub const BACKFILL_DAYS: i64 = 7;
/// Live durations: one business hour passes in 1.5 s, a business day in 36 s.
pub const LIVE_SCALE: f64 = 1.5 / 3600.0;
const HOUR_MS: f64 = 3_600_000.0;

/// One generated event.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoEvent {
    pub stream: String,
    /// The stream's last version before this event; `None`: the stream is new.
    pub expected: Option<u64>,
    pub event_type: &'static str,
    pub time: Timestamp,
    pub data: Value,
    /// The business key that ties related events together (order, requisition, ...).
    pub correlation_id: String,
}

/// A step due at `at` (Unix milliseconds); `seq` keeps ties in scheduling order.
struct Scheduled {
    at: i64,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed: the earliest step is the greatest, on top of the max-heap.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Spending of one cost centre in one period: (allocated, spent).
pub(crate) type Periods = BTreeMap<String, (f64, f64)>;

/// The simulation. See the module docs.
pub struct Generator {
    pub(crate) rng: SmallRng,
    /// The current event time, Unix milliseconds.
    pub(crate) clock: i64,
    /// Multiplier from business durations to event-time durations.
    scale: f64,
    pub(crate) live: bool,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    versions: HashMap<String, u64>,
    counters: HashMap<&'static str, u64>,
    run: u32,
    pub(crate) stocks: Vec<Stock>,
    pub(crate) budgets: Vec<Periods>,
    out: VecDeque<DemoEvent>,
    /// In live mode the first arrival is an order (the demo finds earlier runs by it).
    spawned_live: bool,
    /// Incidents opened since going live.
    pub(crate) live_incidents: u64,
}

impl Generator {
    /// A simulation that starts at `start`; `run` numbers demo runs on the same log
    /// (run 0 names objects `SO-10001`, run 2 `SO-10001-r2`).
    pub fn new(seed: u64, run: u32, start: Timestamp) -> Self {
        let mut g = Generator {
            rng: SmallRng::seed_from_u64(seed ^ u64::from(run).rotate_left(32)),
            clock: start.as_millisecond(),
            scale: 1.0,
            live: false,
            queue: BinaryHeap::new(),
            seq: 0,
            versions: HashMap::new(),
            counters: HashMap::new(),
            run,
            stocks: Vec::new(),
            budgets: vec![Periods::new(); COST_CENTRES.len()],
            out: VecDeque::new(),
            spawned_live: false,
            live_incidents: 0,
        };
        for sku in SKUS {
            for location in WAREHOUSES {
                let fast = FAST_MOVERS.contains(sku);
                let reorder_point = g.rng.random_range(20..60);
                g.stocks.push(Stock {
                    sku,
                    location,
                    level: g.rng.random_range(80..260),
                    reorder_point,
                    replenishing: false,
                    fast,
                });
            }
        }
        for i in 0..g.stocks.len() {
            g.schedule(g.clock, Action::StockInit(i));
        }
        for i in 0..COST_CENTRES.len() {
            let first = g.after(0.5, 8.0);
            g.schedule(first, Action::Spend(i));
        }
        for arrival in [Arrival::Order, Arrival::Requisition, Arrival::Incident] {
            let first = g.clock + g.inter_arrival(arrival);
            g.schedule(first, Action::Arrive(arrival));
        }
        g
    }

    /// The first order's id of `run`: the demo probes for it to find earlier runs.
    pub fn first_order_stream(run: u32) -> String {
        format!("order/{}", id_for(run, "SO", 10_001))
    }

    /// Every event due up to `until`, in time order, at business pace.
    pub fn backfill(&mut self, until: Timestamp) -> Vec<DemoEvent> {
        let until = until.as_millisecond();
        let mut events = Vec::new();
        while self.queue.peek().is_some_and(|s| s.at <= until) {
            let Some(next) = self.queue.pop() else { break };
            self.clock = self.clock.max(next.at);
            self.handle(next.action);
            events.extend(self.out.drain(..));
        }
        events
    }

    /// Switches to live mode at `now`: pending steps keep their order but their
    /// remaining durations are compressed; arrivals then come on demand.
    pub fn go_live(&mut self, now: Timestamp) {
        let now = now.as_millisecond();
        let pending = std::mem::take(&mut self.queue);
        for mut s in pending.into_vec() {
            if matches!(s.action, Action::Arrive(_)) {
                continue;
            }
            if s.at > now {
                s.at = now + ((s.at - now) as f64 * LIVE_SCALE).ceil() as i64;
            }
            self.queue.push(s);
        }
        self.clock = self.clock.max(now);
        self.scale = LIVE_SCALE;
        self.live = true;
    }

    /// The next live event at wall-clock `now`: a due step, else a new arrival.
    pub fn next_live(&mut self, now: Timestamp) -> DemoEvent {
        debug_assert!(self.live, "go_live first");
        let now = now.as_millisecond().max(self.clock);
        loop {
            if let Some(event) = self.out.pop_front() {
                return event;
            }
            self.clock = now;
            if self.queue.peek().is_some_and(|s| s.at <= now) {
                if let Some(next) = self.queue.pop() {
                    self.handle(next.action);
                }
                continue;
            }
            let arrival = if self.spawned_live {
                match self.rng.random_range(0..73) {
                    0..50 => Arrival::Order,
                    50..64 => Arrival::Requisition,
                    _ => Arrival::Incident,
                }
            } else {
                Arrival::Order
            };
            self.spawned_live = true;
            self.arrive(arrival);
        }
    }

    /// After a refused append: the log says `stream` is at `last_version`.
    pub fn resync(&mut self, stream: &str, last_version: Option<u64>) {
        match last_version {
            Some(v) => self.versions.insert(stream.to_owned(), v),
            None => self.versions.remove(stream),
        };
    }

    fn handle(&mut self, action: Action) {
        match action {
            Action::Arrive(arrival) => {
                self.arrive(arrival);
                let next = self.clock + self.inter_arrival(arrival);
                self.schedule(next, Action::Arrive(arrival));
            }
            other => self.step(other),
        }
    }

    /// Mean arrivals per business day: 50 orders, 14 requisitions, 9 incidents.
    fn inter_arrival(&mut self, arrival: Arrival) -> i64 {
        let per_day = match arrival {
            Arrival::Order => 50.0,
            Arrival::Requisition => 14.0,
            Arrival::Incident => 9.0,
        };
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let hours = -u.ln() * 24.0 / per_day;
        (hours * HOUR_MS).max(1.0) as i64
    }

    // ---- helpers for the flows ----

    pub(crate) fn schedule(&mut self, at: i64, action: Action) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            action,
        });
    }

    /// A time `lo..hi` business hours from now, compressed in live mode.
    pub(crate) fn after(&mut self, lo: f64, hi: f64) -> i64 {
        let hours = if hi > lo { self.rng.random_range(lo..hi) } else { lo };
        self.clock + (hours * HOUR_MS * self.scale).max(1.0) as i64
    }

    /// A time `hours` business hours from now (no randomness), compressed in live mode.
    pub(crate) fn in_hours(&self, hours: f64) -> i64 {
        self.clock + (hours * HOUR_MS * self.scale).max(1.0) as i64
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }

    /// A fresh id: `SO-10001` in run 0, `SO-10001-r2` in run 2.
    pub(crate) fn next_id(&mut self, prefix: &'static str, base: u64) -> String {
        let n = self.counters.entry(prefix).or_insert(0);
        *n += 1;
        id_for(self.run, prefix, base + *n)
    }

    pub(crate) fn now(&self) -> Timestamp {
        Timestamp::from_millisecond(self.clock).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// The `YYYY-MM` period of the current event time (UTC).
    pub(crate) fn period(&self) -> String {
        self.now().strftime("%Y-%m").to_string()
    }

    /// Queues an event on `stream` at the current time.
    pub(crate) fn emit(&mut self, stream: String, event_type: &'static str, correlation_id: &str, data: Value) {
        self.emit_earlier(stream, event_type, correlation_id, data, 0);
    }

    /// [`Generator::emit`] of an event that happened `earlier_ms` before it is
    /// recorded (reported late): its time is that much before the current time.
    pub(crate) fn emit_earlier(
        &mut self,
        stream: String,
        event_type: &'static str,
        correlation_id: &str,
        data: Value,
        earlier_ms: i64,
    ) {
        let time = Timestamp::from_millisecond(self.clock - earlier_ms).unwrap_or(Timestamp::UNIX_EPOCH);
        let expected = self.versions.get(&stream).copied();
        self.versions.insert(stream.clone(), expected.map_or(0, |v| v + 1));
        self.out.push_back(DemoEvent {
            stream,
            expected,
            event_type,
            time,
            data,
            correlation_id: correlation_id.to_owned(),
        });
    }
}

fn id_for(run: u32, prefix: &str, n: u64) -> String {
    if run == 0 {
        format!("{prefix}-{n}")
    } else {
        format!("{prefix}-{n}-r{run}")
    }
}

/// An RFC 3339 string, to the second, of Unix milliseconds `ms`.
pub(crate) fn rfc3339(ms: i64) -> String {
    Timestamp::from_second(ms.div_euclid(1000))
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string()
}
