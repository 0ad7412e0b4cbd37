//! Bad input: every refusal names what was wrong (the field, or the limit and the
//! actual figure, or the expected and actual versions) and writes nothing.

mod common;

use common::{TestResult, event, options, read_everything};
use opsflow_log::{
    AppendOutcome, EventLog, ExpectedVersion, Limits, LogError, LogOptions, ProposedEvent, RecordedEvent, StreamAppend,
    event_size,
};

/// A log with a few events in two streams (`order/PO-1` at version 1, `order/PO-2`
/// at version 0), and what it holds.
async fn seeded(dir: &std::path::Path, options: LogOptions) -> opsflow_log::Result<(EventLog, Vec<RecordedEvent>)> {
    let log = common::open(dir, options).await?;
    log.append(
        "order/PO-1",
        ExpectedVersion::NoStream,
        vec![
            event("order.placed", "shop", "1", "{}"),
            event("order.paid", "shop", "2", "{}"),
        ],
    )
    .await?;
    log.append(
        "order/PO-2",
        ExpectedVersion::NoStream,
        vec![event("order.placed", "shop", "3", "{}")],
    )
    .await?;
    let all = read_everything(&log).await?;
    Ok((log, all))
}

/// Nothing was written: same head, same events; and the next append takes the
/// next position (a refusal consumes none).
async fn assert_nothing_written(log: &EventLog, before: &[RecordedEvent], what: &str) -> TestResult {
    assert_eq!(log.head(), before.len() as u64, "{what}: head");
    assert_eq!(read_everything(log).await?, before, "{what}: events");
    Ok(())
}

fn invalid_field(result: &opsflow_log::Result<impl std::fmt::Debug>) -> Option<&str> {
    match result {
        Err(LogError::InvalidArgument { field, .. }) => Some(field.as_str()),
        _ => None,
    }
}

fn one(stream: &str, events: Vec<ProposedEvent>) -> Vec<StreamAppend> {
    vec![StreamAppend {
        stream: stream.into(),
        expected: ExpectedVersion::Any,
        events,
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_event_names_the_limit_and_its_size() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (log, before) = seeded(dir.path(), options()).await?;
    let limit = Limits::default().max_event_bytes;
    assert_eq!(limit, 1 << 20);

    // Exactly at the limit is fine, one byte more is not.
    let mut at_limit = event("blob.stored", "shop", "big-1", "");
    at_limit.data = vec![b'x'; (limit - event_size(&at_limit)) as usize].into();
    assert_eq!(event_size(&at_limit), limit);
    let mut over = event("blob.stored", "shop", "big-2", "");
    over.data = vec![b'x'; (limit + 1 - event_size(&over)) as usize].into();

    let refused = log
        .append(
            "blob/1",
            ExpectedVersion::Any,
            vec![event("small", "shop", "s", "{}"), over],
        )
        .await;
    match &refused {
        Err(
            e @ LogError::LimitExceeded {
                field,
                what,
                limit: l,
                actual,
                ..
            },
        ) => {
            assert_eq!((*l, *actual), (limit, limit + 1));
            assert!(what.contains("events[1]"), "the message names the event: {what:?}");
            let text = refused.as_ref().err().map(ToString::to_string).unwrap_or_default();
            assert!(
                text.contains(&limit.to_string()) && text.contains(&(limit + 1).to_string()),
                "{text}"
            );
            assert!(
                text.ends_with("(log.max_event_bytes)"),
                "the message names the setting: {text}"
            );
            assert_eq!(field, "events[1]");
            assert_eq!(
                e.detail_fields(),
                serde_json::json!({"field": "events[1]", "limit": limit, "actual": limit + 1,
                                   "setting": "log.max_event_bytes"})
            );
        }
        other => panic!("expected a limit error, got {other:?}"),
    }
    assert_nothing_written(&log, &before, "oversized event").await?;

    let accepted = log.append("blob/1", ExpectedVersion::Any, vec![at_limit]).await?;
    assert_eq!(accepted.positions, vec![before.len() as u64 + 1]);
    common::close(log).await?;
    Ok(())
}

/// Regression: the limit error named the event `size of events[0]. (bytes)`: the
/// `.replace(".)", ")")` meant to drop the dot of `events[0].` never matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_oversized_event_message_has_no_stray_dot() -> TestResult {
    let dir = tempfile::tempdir()?;
    let limits = Limits {
        max_event_bytes: 10,
        ..Limits::default()
    };
    let log = common::open(dir.path(), LogOptions { limits, ..options() }).await?;
    let refused = log
        .append("blob/1", ExpectedVersion::Any, vec![event("t", "s", "1", "0123456789")])
        .await;
    match refused {
        Err(LogError::LimitExceeded { what, .. }) => assert_eq!(what, "size of events[0] (bytes)"),
        other => panic!("expected a limit error, got {other:?}"),
    }
    common::close(log).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_events_or_bytes_in_one_append() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (log, before) = seeded(dir.path(), options()).await?;
    let max = Limits::default().max_append_events;
    let events = |n: u64, prefix: &str| -> Vec<ProposedEvent> {
        (0..n)
            .map(|i| event("tick", "load", &format!("{prefix}-{i}"), ""))
            .collect()
    };
    match log.append("load/1", ExpectedVersion::Any, events(max + 1, "a")).await {
        Err(LogError::LimitExceeded {
            field,
            what,
            setting,
            limit,
            actual,
        }) => {
            assert_eq!((limit, actual), (max, max + 1));
            assert!(what.contains("number of events"), "{what}");
            assert_eq!((field.as_str(), setting), ("events", "max_append_events"));
        }
        other => panic!("expected a limit error, got {other:?}"),
    }
    // The count is over the whole append, across streams.
    let split = vec![
        StreamAppend {
            stream: "load/1".into(),
            expected: ExpectedVersion::Any,
            events: events(max / 2 + 1, "b"),
        },
        StreamAppend {
            stream: "load/2".into(),
            expected: ExpectedVersion::Any,
            events: events(max / 2, "c"),
        },
    ];
    assert!(matches!(log.append_many(split).await, Err(LogError::LimitExceeded { actual, .. }) if actual == max + 1));
    assert_nothing_written(&log, &before, "too many events").await?;
    common::close(log).await?;

    // The byte limit of a whole append, with a log configured smaller.
    let limits = Limits {
        max_append_events: 3,
        max_append_bytes: 1_000,
        ..Limits::default()
    };
    let log = common::open(dir.path(), LogOptions { limits, ..options() }).await?;
    assert_eq!(log.limits(), limits);
    let blob = |id: &str| event("blob.stored", "shop", id, &"x".repeat(400));
    let size: u64 = ["1", "2", "3"].iter().map(|id| event_size(&blob(id))).sum();
    match log
        .append("blob/1", ExpectedVersion::Any, vec![blob("1"), blob("2"), blob("3")])
        .await
    {
        Err(LogError::LimitExceeded {
            field,
            what,
            setting,
            limit,
            actual,
        }) => {
            assert_eq!((limit, actual), (1_000, size));
            assert!(what.contains("size of the append"), "{what}");
            assert_eq!((field.as_str(), setting), ("events", "max_append_bytes"));
        }
        other => panic!("expected a limit error, got {other:?}"),
    }
    assert!(matches!(
        log.append("tick/1", ExpectedVersion::Any, events(4, "d")).await,
        Err(LogError::LimitExceeded {
            limit: 3,
            actual: 4,
            ..
        })
    ));
    assert_nothing_written(&log, &before, "configured limits").await?;
    let at_limit = log.append("tick/1", ExpectedVersion::Any, events(3, "e")).await?;
    assert_eq!(at_limit.positions.len(), 3);
    common::close(log).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_stream_names_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (log, before) = seeded(dir.path(), options()).await?;
    let too_long = "a".repeat(257);
    for stream in [
        "",
        "/order",
        "order/",
        "order//1",
        "order 1",
        "order/é",
        "order\0",
        "order*",
        too_long.as_str(),
    ] {
        let result = log
            .append(
                stream,
                ExpectedVersion::Any,
                vec![event("order.placed", "shop", "x", "{}")],
            )
            .await;
        assert_eq!(invalid_field(&result), Some("stream"), "{stream:?}: {result:?}");
        let result = log
            .append_many(one(stream, vec![event("order.placed", "shop", "x", "{}")]))
            .await;
        assert_eq!(invalid_field(&result), Some("stream"), "{stream:?}: {result:?}");
        let result = log.read_stream(stream, None, opsflow_log::Direction::Forward, 10).await;
        assert_eq!(invalid_field(&result), Some("stream"), "read_stream({stream:?})");
        let result = log.stream_info(stream).await;
        assert_eq!(invalid_field(&result), Some("stream"), "stream_info({stream:?})");
    }
    // The longest valid name is fine.
    assert_nothing_written(&log, &before, "invalid stream names").await?;
    let longest = "a".repeat(256);
    log.append(
        &longest,
        ExpectedVersion::NoStream,
        vec![event("order.placed", "shop", "x", "{}")],
    )
    .await?;
    common::close(log).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_name_the_field() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (log, before) = seeded(dir.path(), options()).await?;
    let good = || event("order.placed", "shop", "ok", "{}");
    let with = |f: &dyn Fn(&mut ProposedEvent)| {
        let mut e = event("order.placed", "shop", "bad", "{}");
        f(&mut e);
        e
    };
    let cases: Vec<(&str, Vec<ProposedEvent>, &str)> = vec![
        ("empty type", vec![with(&|e| e.event_type.clear())], "events[0].type"),
        (
            "empty type token",
            vec![with(&|e| e.event_type = "order..placed".into())],
            "events[0].type",
        ),
        (
            "type wildcard",
            vec![with(&|e| e.event_type = "order.*".into())],
            "events[0].type",
        ),
        (
            "type too long",
            vec![with(&|e| e.event_type = "a".repeat(129))],
            "events[0].type",
        ),
        (
            "second event's type",
            vec![good(), with(&|e| e.event_type = " ".into())],
            "events[1].type",
        ),
        (
            "control character in id",
            vec![with(&|e| e.id = "a\nb".into())],
            "events[0].id",
        ),
        ("id too long", vec![with(&|e| e.id = "i".repeat(257))], "events[0].id"),
        (
            "source too long",
            vec![with(&|e| e.source = "s".repeat(1025))],
            "events[0].source",
        ),
        (
            "empty metadata key",
            vec![with(&|e| _ = e.metadata.insert(String::new(), "v".into()))],
            "events[0].metadata",
        ),
        (
            "control character in correlation id",
            vec![with(&|e| e.correlation_id = "\u{7}".into())],
            "events[0].correlation_id",
        ),
        ("same identity twice", vec![good(), good()], "events[1].id"),
    ];
    for (what, events, field) in cases {
        let result = log.append("order/PO-9", ExpectedVersion::Any, events).await;
        assert_eq!(invalid_field(&result), Some(field), "{what}: {result:?}");
        let text = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.starts_with(&format!("invalid {field}: ")), "{what}: {text}");
    }

    // Empty appends.
    let result = log.append("order/PO-9", ExpectedVersion::Any, vec![]).await;
    assert_eq!(invalid_field(&result), Some("events"), "{result:?}");
    let result = log.append_many(vec![]).await;
    assert_eq!(invalid_field(&result), Some("events"), "{result:?}");
    let mut parts = one("order/PO-9", vec![good()]);
    parts.extend(one("order/PO-8", vec![]));
    let result = log.append_many(parts).await;
    assert_eq!(invalid_field(&result), Some("events"), "{result:?}");

    assert_nothing_written(&log, &before, "invalid events").await?;
    // Empty ids and sources are filled in, not refused.
    let filled = ProposedEvent::json("order.placed", "{}");
    log.append("order/PO-9", ExpectedVersion::NoStream, vec![filled])
        .await?;
    let recorded = read_everything(&log).await?.pop().ok_or("the event is there")?;
    assert!(!recorded.id.is_empty());
    assert_eq!(
        (recorded.source.as_str(), recorded.content_type.as_str()),
        (opsflow_log::DEFAULT_SOURCE, opsflow_log::JSON)
    );
    common::close(log).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_expected_version_names_expected_and_actual() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (log, before) = seeded(dir.path(), options()).await?;
    let cases = [
        (
            "order/PO-1",
            ExpectedVersion::NoStream,
            Some(1),
            "expected no_stream, actual 1",
        ),
        ("order/PO-1", ExpectedVersion::Exact(0), Some(1), "expected 0, actual 1"),
        ("order/PO-1", ExpectedVersion::Exact(2), Some(1), "expected 2, actual 1"),
        (
            "order/PO-7",
            ExpectedVersion::StreamExists,
            None,
            "expected stream_exists, actual no stream",
        ),
        (
            "order/PO-7",
            ExpectedVersion::Exact(0),
            None,
            "expected 0, actual no stream",
        ),
    ];
    for (stream, expected, actual, text) in cases {
        let result = log
            .append(stream, expected, vec![event("order.paid", "shop", "new", "{}")])
            .await;
        match &result {
            Err(LogError::WrongExpectedVersion {
                stream: s,
                expected: e,
                actual: a,
            }) => {
                assert_eq!((s.as_str(), *e, *a), (stream, expected, actual));
            }
            other => panic!("{stream} {expected}: expected a wrong expected version, got {other:?}"),
        }
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains(text), "{message}");
    }
    // A multi-stream append is all or nothing: a good part is not written either.
    let parts = vec![
        StreamAppend {
            stream: "order/PO-2".into(),
            expected: ExpectedVersion::Exact(0),
            events: vec![event("order.paid", "shop", "p2", "{}")],
        },
        StreamAppend {
            stream: "order/PO-1".into(),
            expected: ExpectedVersion::Exact(0),
            events: vec![event("order.paid", "shop", "p1", "{}")],
        },
    ];
    match log.append_many(parts).await {
        Err(LogError::WrongExpectedVersion { stream, actual, .. }) => {
            assert_eq!((stream.as_str(), actual), ("order/PO-1", Some(1)))
        }
        other => panic!("expected a wrong expected version, got {other:?}"),
    }
    assert_nothing_written(&log, &before, "wrong expected versions").await?;
    assert_eq!(log.stream_info("order/PO-2").await?.last_version, Some(0));

    // The refused event was not recorded: the same identity is new afterwards.
    let outcome = log
        .append(
            "order/PO-1",
            ExpectedVersion::Exact(1),
            vec![event("order.paid", "shop", "new", "{}")],
        )
        .await?;
    assert_eq!(
        outcome,
        AppendOutcome {
            positions: vec![4],
            stream_version: 2,
            duplicate: false
        }
    );
    common::close(log).await?;
    Ok(())
}
