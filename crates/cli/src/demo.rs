//! The built-in demo (`opsflow dev --demo`): a seeded, realistic stream of
//! operational events covering the whole catalog, appended through the public
//! gRPC API like any producer.
//!
//! KPIs are computed on event time and the views' clock is the latest event time,
//! so the demo first writes a week of history in a few seconds (events with past
//! times), then goes on live at the configured rate with event time = now and
//! compressed durations: a business day passes in about half a minute, so every
//! KPI and control moves within a minute of starting. The same seed gives the same
//! events; only their times depend on when the demo starts.
//!
//! Restarting on a data directory that has demo data writes no second history:
//! the new run continues live, naming its objects apart (`SO-10001-r1`).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use opsflow_proto::v1::event_log_client::EventLogClient;
use opsflow_proto::v1::{self, expected_version::Kind};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use opsflow_demo::{BACKFILL_DAYS, DemoEvent, Generator};

const SOURCE: &str = "opsflow:demo";
/// History is appended in chunks of this many events (grouped by stream, the
/// streams of a chunk in parallel); chunks go in time order.
const BACKFILL_CHUNK: usize = 128;
const BACKFILL_PARALLEL: usize = 32;

/// Appends demo events to the server at `url` until `shutdown`.
pub async fn run(url: String, rate: u32, seed: u64, shutdown: CancellationToken) -> anyhow::Result<()> {
    let channel = Channel::from_shared(url.clone())?
        .connect()
        .await
        .with_context(|| format!("demo: cannot connect to {url}"))?;
    let mut client = EventLogClient::new(channel);
    let run = find_run(&mut client).await?;
    let ids = IdMaker { seed, run, next: 0 };
    let now = Timestamp::now();
    let (generator, ids) = if run == 0 {
        let start = now - SignedDuration::from_hours(24 * BACKFILL_DAYS);
        let mut generator = Generator::new(seed, run, start);
        let history = generator.backfill(now);
        let started = std::time::Instant::now();
        let (ids, written) = backfill(&client, ids, history, &shutdown).await?;
        tracing::info!(events = written, elapsed = ?started.elapsed(), days = BACKFILL_DAYS, "demo history written");
        generator.go_live(Timestamp::now());
        (generator, ids)
    } else {
        tracing::info!(
            run,
            "earlier demo data found: continuing live, without a second history"
        );
        let mut generator = Generator::new(seed, run, now);
        generator.go_live(now);
        (generator, ids)
    };
    live(client, generator, ids, rate, shutdown).await
}

/// The first run number whose first order does not exist yet.
async fn find_run(client: &mut EventLogClient<Channel>) -> anyhow::Result<u32> {
    for run in 0..10_000 {
        let info = client
            .get_stream(v1::GetStreamRequest {
                stream: Generator::first_order_stream(run),
            })
            .await
            .context("demo: cannot read stream information")?
            .into_inner();
        if !info.exists {
            return Ok(run);
        }
    }
    anyhow::bail!("demo: ten thousand earlier demo runs found; use a fresh data directory")
}

/// Event ids: `demo-<seed>-<run>-<n>`, unique per run.
struct IdMaker {
    seed: u64,
    run: u32,
    next: u64,
}

impl IdMaker {
    fn next(&mut self) -> String {
        self.next += 1;
        format!("demo-{}-{}-{}", self.seed, self.run, self.next)
    }
}

fn expected(version: Option<u64>) -> Option<v1::ExpectedVersion> {
    let kind = match version {
        None => Kind::NoStream(v1::expected_version::NoStream {}),
        Some(v) => Kind::Exact(v),
    };
    Some(v1::ExpectedVersion { kind: Some(kind) })
}

fn proposed(event: &DemoEvent, id: String) -> v1::ProposedEvent {
    v1::ProposedEvent {
        id,
        source: SOURCE.into(),
        r#type: event.event_type.into(),
        time: Some(prost_types::Timestamp {
            seconds: event.time.as_second(),
            nanos: event.time.subsec_nanosecond(),
        }),
        content_type: "application/json".into(),
        data: event.data.to_string().into_bytes().into(),
        correlation_id: event.correlation_id.clone(),
        ..Default::default()
    }
}

/// Writes the history: chunk by chunk in time order, each chunk's streams in
/// parallel (one request per stream). Returns the id maker and the events written.
async fn backfill(
    client: &EventLogClient<Channel>,
    mut ids: IdMaker,
    history: Vec<DemoEvent>,
    shutdown: &CancellationToken,
) -> anyhow::Result<(IdMaker, u64)> {
    let mut written = 0u64;
    for chunk in history.chunks(BACKFILL_CHUNK) {
        if shutdown.is_cancelled() {
            break;
        }
        let mut requests: Vec<v1::AppendRequest> = Vec::new();
        let mut by_stream: HashMap<&str, usize> = HashMap::new();
        for event in chunk {
            let event_id = ids.next();
            match by_stream.get(event.stream.as_str()) {
                Some(&i) => requests[i].events.push(proposed(event, event_id)),
                None => {
                    by_stream.insert(&event.stream, requests.len());
                    requests.push(v1::AppendRequest {
                        stream: event.stream.clone(),
                        expected: expected(event.expected),
                        events: vec![proposed(event, event_id)],
                    });
                }
            }
        }
        let results: Vec<_> = futures::stream::iter(requests)
            .map(|request| {
                let mut client = client.clone();
                let count = request.events.len() as u64;
                async move { (client.append(request).await, count) }
            })
            .buffer_unordered(BACKFILL_PARALLEL)
            .collect()
            .await;
        for (result, count) in results {
            match result {
                Ok(_) => written += count,
                Err(s) if tolerated(&s) => tracing::debug!(error = %s.message(), "demo history event refused"),
                Err(s) if s.code() == tonic::Code::Unavailable && shutdown.is_cancelled() => break,
                Err(s) => anyhow::bail!("demo append failed: {} ({:?})", s.message(), s.code()),
            }
        }
    }
    Ok((ids, written))
}

/// Refusals a demo can live with: the same ids or streams from an earlier run.
fn tolerated(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists
    )
}

/// Appends one event per tick at `rate` events per second until `shutdown`.
async fn live(
    mut client: EventLogClient<Channel>,
    mut generator: Generator,
    mut ids: IdMaker,
    rate: u32,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let event = generator.next_live(Timestamp::now());
        let request = v1::AppendRequest {
            stream: event.stream.clone(),
            expected: expected(event.expected),
            events: vec![proposed(&event, ids.next())],
        };
        match client.append(request.clone()).await {
            Ok(_) => sent += 1,
            // The stream moved on without us (an earlier run wrote to a shared
            // stream such as budget/CC-ENG): catch up with it and retry once.
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                let info = client
                    .get_stream(v1::GetStreamRequest {
                        stream: event.stream.clone(),
                    })
                    .await?
                    .into_inner();
                let last = info.exists.then_some(info.last_version);
                let retry = v1::AppendRequest {
                    expected: expected(last),
                    ..request
                };
                match client.append(retry).await {
                    Ok(_) => {
                        generator.resync(&event.stream, Some(last.map_or(0, |v| v + 1)));
                        sent += 1;
                    }
                    Err(s) if tolerated(&s) => {
                        generator.resync(&event.stream, last);
                        tracing::debug!(error = %s.message(), "demo event refused");
                    }
                    Err(s) => anyhow::bail!("demo append failed: {} ({:?})", s.message(), s.code()),
                }
            }
            Err(s) if s.code() == tonic::Code::AlreadyExists => {
                tracing::debug!(error = %s.message(), "demo event refused");
            }
            Err(s) if s.code() == tonic::Code::Unavailable && shutdown.is_cancelled() => break,
            Err(s) => anyhow::bail!("demo append failed: {} ({:?})", s.message(), s.code()),
        }
    }
    tracing::info!(sent, "demo stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn start() -> Timestamp {
        "2026-11-14T09:00:00Z".parse().expect("a timestamp")
    }

    /// A week of history, then `live` live events a twentieth of a second apart.
    fn generate(seed: u64, live: usize) -> Vec<DemoEvent> {
        let mut g = Generator::new(seed, 0, start());
        let now = start() + SignedDuration::from_hours(24 * BACKFILL_DAYS);
        let mut events = g.backfill(now);
        g.go_live(now);
        for i in 0..live {
            events.push(g.next_live(now + SignedDuration::from_millis(50 * i as i64)));
        }
        events
    }

    #[test]
    fn same_seed_same_events() {
        assert_eq!(generate(7, 500), generate(7, 500));
        assert_ne!(generate(7, 0), generate(8, 0));
    }

    #[test]
    fn every_event_passes_the_catalog_and_every_type_appears() {
        let events = generate(42, 2_000);
        let mut seen = BTreeSet::new();
        for e in &events {
            let data = e.data.to_string();
            if let Err(err) = opsflow_catalog::validate_json(e.event_type, data.as_bytes()) {
                panic!("{} on {}: {err}\n{data}", e.event_type, e.stream);
            }
            assert!(opsflow_catalog::is_catalog_type(e.event_type), "{}", e.event_type);
            assert!(opsflow_log::validate_stream_name(&e.stream).is_ok(), "{}", e.stream);
            seen.insert(e.event_type);
        }
        let missing: Vec<_> = opsflow_catalog::types().filter(|t| !seen.contains(t)).collect();
        assert!(missing.is_empty(), "never generated: {missing:?}");
    }

    #[test]
    fn history_is_a_week_of_thousands_of_events_in_time_order() {
        let mut g = Generator::new(42, 0, start());
        let now = start() + SignedDuration::from_hours(24 * BACKFILL_DAYS);
        let history = g.backfill(now);
        assert!((3_000..12_000).contains(&history.len()), "{} events", history.len());
        assert!(history.windows(2).all(|w| w[0].time <= w[1].time), "in time order");
        assert!(history.first().is_some_and(|e| e.time == start()));
        assert!(
            history
                .last()
                .is_some_and(|e| e.time <= now && e.time > now - SignedDuration::from_hours(2))
        );
        g.go_live(now);
        let live = g.next_live(now + SignedDuration::from_secs(1));
        assert_eq!(
            live.time,
            now + SignedDuration::from_secs(1),
            "live events are stamped now"
        );
    }

    #[test]
    fn versions_follow_each_stream() {
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        for e in generate(1, 1_000) {
            let prev = seen.insert(e.stream.clone(), e.expected.map_or(0, |v| v + 1));
            assert_eq!(prev, e.expected, "{}", e.stream);
        }
    }

    /// The anomalies the KPIs and controls are there to catch all occur.
    #[test]
    fn the_history_has_the_anomalies() {
        let events = generate(42, 0);
        let of = |t: &'static str| events.iter().filter(move |e| e.event_type == t);
        let str_of = |e: &DemoEvent, f: &str| e.data[f].as_str().unwrap_or_default().to_owned();

        // Late deliveries: delivered after promised_by.
        let promised: HashMap<String, Timestamp> = of("order.placed")
            .map(|e| {
                (
                    str_of(e, "order_id"),
                    str_of(e, "promised_by").parse().expect("rfc3339"),
                )
            })
            .collect();
        let late = of("order.delivered")
            .filter(|e| promised.get(&str_of(e, "order_id")).is_some_and(|p| e.time > *p))
            .count();
        let delivered = of("order.delivered").count();
        assert!(late > 0 && late < delivered, "{late} of {delivered} late");
        assert!(of("order.delivered").any(|e| e.data["damaged"] == true));
        assert!(of("order.delivered").any(|e| e.data["complete"] == false));
        assert!(of("order.cancelled").count() > 0 && of("order.returned").count() > 0);
        assert!(of("shipment.delayed").count() > 0 && of("shipment.exception").count() > 0);

        // Self-approval: approver == requester of the same approval.
        let requesters: HashMap<String, String> = of("approval.requested")
            .map(|e| (str_of(e, "approval_id"), str_of(e, "requester")))
            .collect();
        assert!(
            of("approval.granted").any(|e| requesters.get(&str_of(e, "approval_id")) == Some(&str_of(e, "approver")))
        );
        assert!(of("approval.rejected").count() > 0);

        // Invoices that do not match their purchase order.
        let po_amounts: HashMap<String, f64> = of("purchase_order.issued")
            .map(|e| (str_of(e, "po_number"), e.data["amount"].as_f64().unwrap_or_default()))
            .collect();
        assert!(of("invoice.received").any(|e| {
            po_amounts
                .get(&str_of(e, "po_number"))
                .is_some_and(|a| (e.data["amount"].as_f64().unwrap_or_default() - a).abs() > 0.01)
        }));

        // Large orders shipped with no granted approval of subject type order.
        let approved: BTreeSet<String> = of("approval.granted")
            .filter(|e| e.data["subject_type"] == "order")
            .map(|e| str_of(e, "subject_id"))
            .collect();
        let large: BTreeSet<String> = of("order.placed")
            .filter(|e| e.data["total"].as_f64().unwrap_or_default() > 10_000.0)
            .map(|e| str_of(e, "order_id"))
            .collect();
        assert!(of("order.shipped").any(|e| {
            let id = str_of(e, "order_id");
            large.contains(&id) && !approved.contains(&id)
        }));
        assert!(of("order.shipped").any(|e| approved.contains(&str_of(e, "order_id"))));

        // Incidents of every severity; sev1 resolutions with and without postmortems.
        let severities: BTreeSet<String> = of("incident.opened").map(|e| str_of(e, "severity")).collect();
        assert_eq!(severities.len(), 4, "{severities:?}");
        let postmortems: BTreeSet<String> = of("postmortem.published").map(|e| str_of(e, "incident_id")).collect();
        let sev1: Vec<String> = of("incident.resolved")
            .filter(|e| e.data["severity"] == "sev1")
            .map(|e| str_of(e, "incident_id"))
            .collect();
        assert!(
            sev1.iter().any(|i| !postmortems.contains(i)),
            "a sev1 without postmortem"
        );

        // Stock-outs: some stream's stock reaches zero.
        let mut stock: HashMap<&str, f64> = HashMap::new();
        let mut stock_out = false;
        for e in &events {
            match e.event_type {
                "inventory.counted" => {
                    stock.insert(&e.stream, e.data["quantity"].as_f64().unwrap_or_default());
                }
                "inventory.adjusted" => {
                    let level = stock.entry(&e.stream).or_default();
                    *level += e.data["delta"].as_f64().unwrap_or_default();
                    stock_out |= *level <= 0.0;
                }
                _ => {}
            }
        }
        assert!(stock_out, "no stock-out");

        // Budgets: some cost centre spends more than it was allocated.
        let mut budget: HashMap<(String, String), (f64, f64)> = HashMap::new();
        for e in &events {
            let key = (str_of(e, "cost_centre"), str_of(e, "period"));
            let amount = e.data["amount"].as_f64().unwrap_or_default();
            match e.event_type {
                "budget.allocated" => budget.entry(key).or_default().0 += amount,
                "expense.recorded" => budget.entry(key).or_default().1 += amount,
                _ => {}
            }
        }
        assert!(
            budget.values().any(|(allocated, spent)| spent > allocated),
            "{budget:?}"
        );
        assert!(
            budget.values().any(|(allocated, spent)| spent <= allocated),
            "{budget:?}"
        );
    }

    #[test]
    fn live_durations_are_compressed_to_seconds_and_minutes() {
        let mut g = Generator::new(3, 0, start());
        let now = start() + SignedDuration::from_hours(24 * BACKFILL_DAYS);
        g.backfill(now);
        g.go_live(now);
        let mut opened: HashMap<String, Timestamp> = HashMap::new();
        let mut acked = Vec::new();
        // Five minutes at 20 events per second.
        for i in 0..6_000 {
            let e = g.next_live(now + SignedDuration::from_millis(50 * i));
            let id = e.data["incident_id"].as_str().unwrap_or_default().to_owned();
            match e.event_type {
                "incident.opened" => {
                    opened.insert(id, e.time);
                }
                "incident.acknowledged" => {
                    if let Some(t) = opened.get(&id) {
                        acked.push(e.time.duration_since(*t));
                    }
                }
                _ => {}
            }
        }
        assert!(acked.len() > 10, "{} acknowledgements", acked.len());
        let quick = acked.iter().filter(|d| **d < SignedDuration::from_secs(60)).count();
        assert!(quick * 10 >= acked.len() * 6, "most in seconds: {acked:?}");
        // Some incidents are reported late: a slow acknowledgement by event time.
        assert!(acked.iter().any(|d| *d >= SignedDuration::from_mins(20)), "{acked:?}");
    }

    /// Live, a minute shows a slow acknowledgement and an overdue postmortem: some
    /// incidents are recorded after they happened, a whole sev1 a week late.
    #[test]
    fn live_incidents_include_some_recorded_late() {
        // The default seed: what `opsflow dev --demo` shows.
        let mut g = Generator::new(42, 0, start());
        let now = start() + SignedDuration::from_hours(24 * BACKFILL_DAYS);
        g.backfill(now);
        g.go_live(now);
        // One minute at 20 events per second.
        let live: Vec<DemoEvent> = (0..1_200)
            .map(|i| g.next_live(now + SignedDuration::from_millis(50 * i)))
            .collect();
        let week_late: Vec<&DemoEvent> = live
            .iter()
            .filter(|e| e.event_type == "incident.resolved" && e.time < now - SignedDuration::from_hours(24 * 5))
            .collect();
        assert!(
            week_late.iter().any(|e| e.data["severity"] == "sev1"),
            "no sev1 resolved a week late within a minute"
        );
        // Nothing is stamped after the time it is recorded.
        assert!(
            live.iter()
                .enumerate()
                .all(|(i, e)| e.time <= now + SignedDuration::from_millis(50 * i as i64)),
            "an event from the future"
        );
    }

    #[test]
    fn later_runs_name_their_objects_apart() {
        assert_eq!(Generator::first_order_stream(0), "order/SO-10001");
        assert_eq!(Generator::first_order_stream(2), "order/SO-10001-r2");
        let mut g = Generator::new(42, 2, start());
        g.go_live(start());
        let first_order = (0..200)
            .map(|i| g.next_live(start() + SignedDuration::from_millis(50 * i)))
            .find(|e| e.event_type == "order.placed")
            .expect("an order");
        assert_eq!(first_order.stream, Generator::first_order_stream(2));
    }
}
