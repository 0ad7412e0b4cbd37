//! Subscriptions: catch-up then live without gap or duplicate, filters,
//! back-pressure instead of drops, and the end of a subscription at close.

mod common;

use std::time::Duration;

use common::{TestResult, event, options, read_everything};
use opsflow_log::{EventFilter, EventLog, ExpectedVersion, LogError, RecordedEvent, Subscription, SubscriptionItem};
use tokio::time::timeout;

/// Long enough for anything that should happen; only reached when something hangs.
const PATIENCE: Duration = Duration::from_secs(20);
/// How long to wait to conclude that nothing more comes.
const QUIET: Duration = Duration::from_millis(200);

async fn next(subscription: &mut Subscription) -> opsflow_log::Result<SubscriptionItem> {
    match timeout(PATIENCE, subscription.next()).await {
        Ok(item) => item,
        Err(_) => panic!(
            "the subscription at {} yielded nothing for {PATIENCE:?}",
            subscription.position()
        ),
    }
}

/// Appends `count` events to `stream` in appends of `batch`, with ids `{prefix}-{n}`.
async fn append_batches(
    log: &EventLog,
    stream: &str,
    prefix: &str,
    count: usize,
    batch: usize,
) -> opsflow_log::Result<()> {
    for start in (0..count).step_by(batch) {
        let events = (start..(start + batch).min(count))
            .map(|n| {
                event(
                    "test.event",
                    "test",
                    &format!("{prefix}-{n}"),
                    &format!(r#"{{"n":{n}}}"#),
                )
            })
            .collect();
        log.append(stream, ExpectedVersion::Any, events).await?;
    }
    Ok(())
}

/// Items until `CaughtUp`, which is returned separately.
async fn until_caught_up(subscription: &mut Subscription) -> opsflow_log::Result<(Vec<RecordedEvent>, u64)> {
    let mut events = Vec::new();
    loop {
        match next(subscription).await? {
            SubscriptionItem::Event(e) => events.push(e),
            SubscriptionItem::CaughtUp(head) => return Ok((events, head)),
            SubscriptionItem::Checkpoint(_) => {}
        }
    }
}

/// Events until the subscription ends; the end must be `Closed`.
async fn until_closed(subscription: &mut Subscription) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    loop {
        match next(subscription).await {
            Ok(SubscriptionItem::Event(e)) => events.push(e),
            Ok(_) => {}
            Err(LogError::Closed) => return events,
            Err(other) => panic!("the subscription failed: {other}"),
        }
    }
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_then_live_has_no_gap_and_no_duplicate() -> TestResult {
    const BEFORE: usize = 1_100; // more than two catch-up pages
    const LIVE: usize = 600;
    let total = (BEFORE + LIVE) as u64;
    let dir = tempfile::tempdir()?;
    let log = EventLog::open_async(dir.path(), options()).await?;
    append_batches(&log, "order/PO-1", "before", BEFORE, 50).await?;

    let mut subscription = log.subscribe(1, EventFilter::default());
    // Keep appending, in small appends, while the subscription catches up.
    let appender = {
        let log = log.clone();
        tokio::spawn(async move {
            for n in 0..LIVE {
                let stream = if n % 2 == 0 { "order/PO-1" } else { "order/PO-2" };
                log.append(
                    stream,
                    ExpectedVersion::Any,
                    vec![event("test.event", "test", &format!("live-{n}"), "{}")],
                )
                .await?;
            }
            Ok::<(), LogError>(())
        })
    };

    let mut items = Vec::new();
    let mut delivered = 0;
    while delivered < total {
        let item = next(&mut subscription).await?;
        delivered += u64::from(matches!(item, SubscriptionItem::Event(_)));
        items.push(item);
    }
    appender.await??;
    // Only the switch to live may still be due; after it nothing comes.
    if !items.iter().any(|i| matches!(i, SubscriptionItem::CaughtUp(_))) {
        items.push(next(&mut subscription).await?);
    }
    assert!(
        timeout(QUIET, subscription.next()).await.is_err(),
        "nothing after the last event"
    );

    let caught_up: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, i)| matches!(i, SubscriptionItem::CaughtUp(_)))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(caught_up.len(), 1, "CaughtUp is yielded exactly once");
    let SubscriptionItem::CaughtUp(switch) = items[caught_up[0]] else {
        unreachable!()
    };
    let events: Vec<RecordedEvent> = items
        .iter()
        .filter_map(|i| match i {
            SubscriptionItem::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        positions(&events),
        (1..=total).collect::<Vec<_>>(),
        "every position once, in order"
    );
    assert_eq!(events, read_everything(&log).await?, "the same events as read_all");
    assert_eq!(
        caught_up[0] as u64, switch,
        "CaughtUp({switch}) comes right after the event at {switch}"
    );
    assert!(
        switch >= BEFORE as u64,
        "catch-up covers at least what was there when subscribing"
    );
    common::close(log).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_starts_at_the_given_position() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = EventLog::open_async(dir.path(), options()).await?;
    append_batches(&log, "order/PO-1", "e", 20, 7).await?;
    let (events, head) = until_caught_up(&mut log.subscribe(15, EventFilter::default())).await?;
    assert_eq!((positions(&events), head), ((15..=20).collect(), 20));
    let (events, head) = until_caught_up(&mut log.subscribe(0, EventFilter::default())).await?;
    assert_eq!((events.len(), head), (20, 20), "from 0 means from the start");
    // From past the head: nothing to catch up, then live from there.
    let mut ahead = log.subscribe(23, EventFilter::default());
    assert_eq!(next(&mut ahead).await?, SubscriptionItem::CaughtUp(20));
    append_batches(&log, "order/PO-1", "more", 5, 5).await?;
    let SubscriptionItem::Event(first) = next(&mut ahead).await? else {
        panic!("expected an event")
    };
    assert_eq!(first.position, 23);
    common::close(log).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_deliver_exactly_the_matching_events() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = EventLog::open_async(dir.path(), options()).await?;
    let streams = [
        "order/PO-1",
        "order/PO-2",
        "orders-archive/1",
        "incident/INC-7",
        "shipment/S-1",
    ];
    let types = ["order.placed", "order.shipped", "incident.opened"];
    let append_mix = |round: usize| {
        let log = log.clone();
        async move {
            for (k, stream) in streams.iter().enumerate() {
                let events = types
                    .iter()
                    .enumerate()
                    .filter(|(t, _)| (k + t + round) % 4 < 3)
                    .map(|(t, ty)| event(ty, "test", &format!("{round}-{k}-{t}"), "{}"))
                    .collect();
                log.append(stream, ExpectedVersion::Any, events).await?;
            }
            Ok::<(), LogError>(())
        }
    };
    for round in 0..3 {
        append_mix(round).await?;
    }

    let filters = [
        EventFilter {
            stream_prefixes: vec!["order/".into()],
            types: vec![],
        },
        EventFilter {
            stream_prefixes: vec![],
            types: vec!["incident.opened".into()],
        },
        EventFilter {
            stream_prefixes: vec!["order/".into(), "shipment/".into()],
            types: vec!["order.shipped".into()],
        },
        EventFilter {
            stream_prefixes: vec!["nothing/".into()],
            types: vec![],
        },
    ];
    let mut subscriptions: Vec<Subscription> = filters.iter().map(|f| log.subscribe(1, f.clone())).collect();
    let head = log.head();
    let mut caught_up = Vec::new();
    for subscription in &mut subscriptions {
        let (events, at) = until_caught_up(subscription).await?;
        assert_eq!(at, head);
        caught_up.push(events);
    }
    // Live events go through the same filters.
    for round in 3..5 {
        append_mix(round).await?;
    }
    let all = read_everything(&log).await?;
    log.close().await?;

    for ((filter, subscription), mut events) in filters.iter().zip(&mut subscriptions).zip(caught_up) {
        events.extend(until_closed(subscription).await);
        let expected: Vec<&RecordedEvent> = all
            .iter()
            .filter(|e| {
                (filter.stream_prefixes.is_empty() || filter.stream_prefixes.iter().any(|p| e.stream.starts_with(p)))
                    && (filter.types.is_empty() || filter.types.contains(&e.event_type))
            })
            .collect();
        assert!(
            events.iter().eq(expected.iter().copied()),
            "{filter:?}: {:?}",
            positions(&events)
        );
        assert_eq!(
            !expected.is_empty(),
            filter.stream_prefixes != ["nothing/"],
            "the fixture exercises {filter:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_does_not_block_appends_and_loses_nothing() -> TestResult {
    const EVENTS: usize = 5_000;
    let dir = tempfile::tempdir()?;
    let log = EventLog::open_async(dir.path(), options()).await?;
    // Subscribed before anything exists, and not read until the end.
    let mut idle = log.subscribe(1, EventFilter::default());
    let mut filtered_idle = log.subscribe(
        1,
        EventFilter {
            types: vec!["never.sent".into()],
            ..EventFilter::default()
        },
    );

    let appenders: Vec<_> = (0..5)
        .map(|task| {
            let log = log.clone();
            tokio::spawn(async move {
                append_batches(&log, &format!("load/{task}"), &format!("t{task}"), EVENTS / 5, 100).await
            })
        })
        .collect();
    let appended = timeout(PATIENCE, async {
        for appender in appenders {
            appender.await??;
        }
        TestResult::Ok(())
    })
    .await;
    assert!(appended.is_ok(), "appends must not wait for an idle subscriber");
    appended??;
    assert_eq!(log.head(), EVENTS as u64);

    let (events, head) = until_caught_up(&mut idle).await?;
    assert_eq!(head, EVENTS as u64);
    assert_eq!(
        positions(&events),
        (1..=EVENTS as u64).collect::<Vec<_>>(),
        "no drops, in order"
    );

    // A filter that matches nothing still reports progress while it scans.
    let mut checkpoints = Vec::new();
    loop {
        match next(&mut filtered_idle).await? {
            SubscriptionItem::Checkpoint(at) => checkpoints.push(at),
            SubscriptionItem::CaughtUp(at) => {
                assert_eq!(at, EVENTS as u64);
                break;
            }
            SubscriptionItem::Event(e) => panic!("the filter matches nothing, got {e:?}"),
        }
    }
    assert!(
        !checkpoints.is_empty(),
        "a long scan without matches reports checkpoints"
    );
    assert!(checkpoints.windows(2).all(|w| w[0] < w[1]) && checkpoints.iter().all(|c| *c <= EVENTS as u64));
    common::close(log).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_subscriptions_after_every_durable_event() -> TestResult {
    const EVENTS: usize = 1_000;
    let dir = tempfile::tempdir()?;
    let log = EventLog::open_async(dir.path(), options()).await?;
    append_batches(&log, "order/PO-1", "e", EVENTS, 100).await?;

    // One subscriber halfway through catch-up, one waiting for live events.
    let mut behind = log.subscribe(1, EventFilter::default());
    let mut first = Vec::new();
    for _ in 0..10 {
        if let SubscriptionItem::Event(e) = next(&mut behind).await? {
            first.push(e);
        }
    }
    let mut live = log.subscribe(EVENTS as u64 + 1, EventFilter::default());
    assert_eq!(next(&mut live).await?, SubscriptionItem::CaughtUp(EVENTS as u64));
    let waiting = tokio::spawn(async move { (timeout(PATIENCE, live.next()).await, live) });
    tokio::time::sleep(Duration::from_millis(50)).await;

    log.close().await?;
    let (ended, mut live) = waiting.await?;
    assert!(
        matches!(ended, Ok(Err(LogError::Closed))),
        "a waiting subscriber is woken by close: {ended:?}"
    );
    assert!(matches!(live.next().await, Err(LogError::Closed)), "and stays ended");

    first.extend(until_closed(&mut behind).await);
    assert_eq!(
        positions(&first),
        (1..=EVENTS as u64).collect::<Vec<_>>(),
        "everything durable is delivered first"
    );
    assert!(matches!(behind.next().await, Err(LogError::Closed)));
    Ok(())
}
