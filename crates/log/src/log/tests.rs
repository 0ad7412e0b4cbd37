//! Unit tests of [`EventLog`].

use super::*;

pub(super) fn event(id: &str) -> ProposedEvent {
    ProposedEvent::json("order.placed", "{}").with_identity("test", id)
}

/// A log another handle (another process, in practice) has open is refused with
/// an error that says so, after sled's brief lock retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_open_elsewhere_is_refused_saying_so() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
    let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
    match EventLog::open_async(dir.path(), LogOptions::default()).await {
        Err(e @ LogError::Locked { .. }) => {
            assert_eq!(e.kind(), crate::ErrorKind::Unavailable);
            assert!(
                e.to_string().contains("another opsflow on the same data directory"),
                "{e}"
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    log.close().await
}

/// An atomic append naming one stream in two parts: the second part's
/// expected version is checked against the stream with the first part applied,
/// and a conflict in either writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_naming_a_stream_twice_sees_its_own_first_part() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
    let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
    let part = |stream: &str, expected, id: &str| StreamAppend {
        stream: stream.into(),
        expected,
        events: vec![event(id)],
    };
    let outcomes = log
        .append_many(vec![
            part("s/1", ExpectedVersion::NoStream, "a"),
            part("s/2", ExpectedVersion::Any, "b"),
            part("s/1", ExpectedVersion::Exact(0), "c"),
        ])
        .await?;
    let versions: Vec<u64> = outcomes.iter().map(|o| o.stream_version).collect();
    assert_eq!(versions, [0, 0, 1]);
    // The stream as the writer now knows it: version 1.
    log.append("s/1", ExpectedVersion::Exact(1), vec![event("d")]).await?;
    // The second part expects the stream as it stood before the first: refused whole.
    match log
        .append_many(vec![
            part("s/3", ExpectedVersion::NoStream, "e"),
            part("s/3", ExpectedVersion::NoStream, "f"),
        ])
        .await
    {
        Err(LogError::WrongExpectedVersion { stream, actual, .. }) => {
            assert_eq!((stream.as_str(), actual), ("s/3", Some(0)));
        }
        other => panic!("expected a version conflict, got {other:?}"),
    }
    assert_eq!(log.head(), 4);
    log.close().await
}

/// A retry may name the same media type differently (another content mode or
/// SDK): it is the same event. A different media type, or charset on a non-JSON
/// type, is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_naming_the_same_media_type_differently_is_a_duplicate() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
    let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
    let with = |content_type: &str, data: &str| {
        let mut e = event("ct-1");
        e.content_type = content_type.into();
        e.data = data.as_bytes().to_vec().into();
        e
    };
    let first = log
        .append("s", ExpectedVersion::Any, vec![with("application/json", r#"{"a":1}"#)])
        .await?;
    for same in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/json;charset=\"UTF-8\"",
    ] {
        let again = log
            .append("s", ExpectedVersion::Any, vec![with(same, r#"{"a": 1}"#)])
            .await?;
        assert!(again.duplicate, "{same}");
        assert_eq!(again.last_position(), first.last_position(), "{same}");
    }
    for other in [
        "application/json; charset=utf-16",
        "text/json+x",
        "application/xml",
        // Quoted or bare parameters compare as written.
        "application/json; a=\"1;b=2\"",
        "application/json; v1",
    ] {
        match log
            .append("s", ExpectedVersion::Any, vec![with(other, r#"{"a":1}"#)])
            .await
        {
            Err(LogError::DuplicateConflict { .. }) => {}
            unexpected => panic!("{other}: {unexpected:?}"),
        }
    }
    let mut text = event("ct-2");
    text.content_type = "text/plain".into();
    log.append("s", ExpectedVersion::Any, vec![text.clone()]).await?;
    text.content_type = "text/plain; charset=utf-8".into();
    assert!(matches!(
        log.append("s", ExpectedVersion::Any, vec![text]).await,
        Err(LogError::DuplicateConflict { .. })
    ));
    log.close().await
}

/// Whatever moment is asked for while appends go on, the head given includes
/// every event recorded by then: the event after it was recorded later. (The
/// plain head, read at the same moment, often does not: counted, for contrast.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_recorded_through_a_moment_includes_every_event_recorded_by_then() -> Result<()> {
    use std::sync::atomic::AtomicUsize;
    let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
    let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let ids = Arc::new(AtomicUsize::new(0));
    let appenders: Vec<_> = (0..16)
        .map(|_| {
            let (log, stop, ids) = (log.clone(), stop.clone(), ids.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let id = ids.fetch_add(1, Ordering::Relaxed);
                    log.append("s", ExpectedVersion::Any, vec![event(&format!("e{id}"))])
                        .await?;
                }
                Ok::<_, LogError>(())
            })
        })
        .collect();
    let mut asked = Vec::new();
    for _ in 0..300 {
        let time = crate::writer::now_nanos();
        let plain = log.head();
        let l = log.clone();
        let head =
            tokio::task::spawn_blocking(move || l.head_recorded_through(time, std::time::Duration::from_secs(10)))
                .await
                .map_err(|e| LogError::Storage(sled::Error::Unsupported(e.to_string())))?;
        asked.push((time, plain, head));
        tokio::time::sleep(std::time::Duration::from_micros(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for a in appenders {
        a.await
            .map_err(|e| LogError::Storage(sled::Error::Unsupported(e.to_string())))??;
    }
    let recorded_after = |position: u64, time: i64| -> Result<bool> {
        Ok(log
            .read_all_blocking(Some(position + 1), Direction::Forward, 1)?
            .first()
            .is_none_or(|e| e.recorded_at > time))
    };
    let mut plain_short = 0;
    for (time, plain, head) in asked {
        assert!(
            recorded_after(head, time)?,
            "head {head} lacks an event recorded by {time}"
        );
        plain_short += usize::from(!recorded_after(plain, time)?);
    }
    eprintln!("the plain head lacked an event recorded by then {plain_short} times of 300");
    log.close().await
}

/// Regression: after a reopen, a stream written by several appends reported the
/// version of its first run (the backward scan started at version 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_version_after_reopen_with_several_runs() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
    let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
    log.append("order/1", ExpectedVersion::NoStream, vec![event("a")])
        .await?;
    log.append("order/1", ExpectedVersion::Exact(0), vec![event("b"), event("c")])
        .await?;
    log.close().await?;
    drop(log); // the directory is released with the last handle
    let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
    let info = log.stream_info("order/1").await?;
    assert_eq!(info.last_version, Some(2));
    let outcome = log
        .append("order/1", ExpectedVersion::Exact(2), vec![event("d")])
        .await?;
    assert_eq!(outcome.stream_version, 3);
    log.close().await
}

/// A retry through another API or content mode may space or order its JSON
/// differently: the same JSON value is the same event; other data, or the same
/// text under a content type that is not JSON, is a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_retries_compare_as_json_values() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
    let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
    let with = |content_type: &str, data: &str| ProposedEvent {
        content_type: content_type.into(),
        ..ProposedEvent::json("note.added", data.to_owned()).with_identity("test", "n-1")
    };
    let first = log
        .append(
            "note/1",
            ExpectedVersion::Any,
            vec![with("application/json", r#"{ "a": 1, "b": [1, 2] }"#)],
        )
        .await?;
    let retry = log
        .append(
            "note/1",
            ExpectedVersion::Any,
            vec![with("application/json", r#"{"b":[1,2],"a":1}"#)],
        )
        .await?;
    assert!(retry.duplicate);
    assert_eq!(retry.positions, first.positions);
    for (content_type, data) in [
        ("application/json", r#"{"b":[1,2],"a":1.0}"#),
        ("application/json", r#"{"b":[2,1],"a":1}"#),
        ("application/json", "{"),
    ] {
        let outcome = log
            .append("note/1", ExpectedVersion::Any, vec![with(content_type, data)])
            .await;
        assert!(
            matches!(outcome, Err(LogError::DuplicateConflict { .. })),
            "{data}: {outcome:?}"
        );
    }
    // Say which conflict it is: different content, or recorded and new mixed.
    let message = |outcome: Result<AppendOutcome>| outcome.err().map(|e| e.to_string()).unwrap_or_default();
    let changed = log
        .append(
            "note/1",
            ExpectedVersion::Any,
            vec![with("application/json", r#"{"a":2}"#)],
        )
        .await;
    assert!(message(changed).ends_with("with different content (data differs)"));
    let new = ProposedEvent::json("note.added", "{}").with_identity("test", "n-new");
    let mixed = log
        .append(
            "note/1",
            ExpectedVersion::Any,
            vec![with("application/json", r#"{"b":[1,2],"a":1}"#), new],
        )
        .await;
    let said = message(mixed);
    assert!(said.contains("while other events of this append are new"), "{said}");
    assert!(!said.contains("different content"), "{said}");
    let text = |data: &str| ProposedEvent {
        content_type: "text/plain".into(),
        data: data.to_owned().into(),
        ..ProposedEvent::json("note.added", "{}").with_identity("test", "t-1")
    };
    log.append("note/2", ExpectedVersion::Any, vec![text("{ }")]).await?;
    let outcome = log.append("note/2", ExpectedVersion::Any, vec![text("{}")]).await;
    assert!(
        matches!(outcome, Err(LogError::DuplicateConflict { .. })),
        "{outcome:?}"
    );
    assert!(is_json_content_type("application/vnd.x+JSON; v=1"));
    assert!(!is_json_content_type("application/jsonl"));
    log.close().await
}

/// Appends to two streams in turn make one index entry per stream, listing its
/// interleaved pieces; reads in both directions, from any
/// version, and stream info see every version, before and after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_appends_in_one_group_index_every_version() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
    let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
    log.append("a/1", ExpectedVersion::Any, vec![event("a0")]).await?;
    let part = |stream: &str, ids: &[&str]| StreamAppend {
        stream: stream.into(),
        expected: ExpectedVersion::Any,
        events: ids.iter().map(|id| event(id)).collect(),
    };
    // Positions 2..=8: a a b a b b a (a: versions 1..=4, b: 0..=2).
    let results = log
        .append_each(vec![
            part("a/1", &["a1", "a2"]),
            part("b/1", &["b0"]),
            part("a/1", &["a3"]),
            part("b/1", &["b1", "b2"]),
            part("a/1", &["a4"]),
        ])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        log.inner.store.db.scan_prefix(b"s").count(),
        0,
        "the entries are still in memory"
    );
    check_interleaved(&log).await?;
    log.close().await?;
    drop(log);
    let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
    assert_eq!(
        log.inner.store.db.scan_prefix(b"s").count(),
        2,
        "closing wrote one entry per stream, listing its interleaved pieces"
    );
    check_interleaved(&log).await?;
    let outcome = log.append("b/1", ExpectedVersion::Exact(2), vec![event("b3")]).await?;
    assert_eq!(outcome.stream_version, 3);
    let b = log.read_stream("b/1", None, Direction::Forward, 100).await?;
    assert_eq!(
        b.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["b0", "b1", "b2", "b3"]
    );
    log.close().await
}

async fn check_interleaved(log: &EventLog) -> Result<()> {
    let ids = |events: Vec<RecordedEvent>| events.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let forward = log.read_stream("a/1", None, Direction::Forward, 100).await?;
    assert_eq!(ids(forward), ["a0", "a1", "a2", "a3", "a4"]);
    let from = log.read_stream("a/1", Some(2), Direction::Forward, 2).await?;
    assert_eq!(ids(from), ["a2", "a3"]);
    let backward = log.read_stream("a/1", Some(3), Direction::Backward, 3).await?;
    assert_eq!(ids(backward), ["a3", "a2", "a1"]);
    let b = log.read_stream("b/1", None, Direction::Backward, 100).await?;
    assert_eq!(b.iter().map(|e| e.position).collect::<Vec<_>>(), [7, 6, 4]);
    let info = log.stream_info("a/1").await?;
    assert_eq!(
        (info.last_version, info.last_position, info.first_position),
        (Some(4), 8, 1)
    );
    Ok(())
}

/// One bad message must not fail its neighbours; order is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_each_isolates_failures_and_keeps_order() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
    let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
    log.append("s/1", ExpectedVersion::Any, vec![event("dup")]).await?;
    let part = |stream: &str, expected, e| StreamAppend {
        stream: stream.into(),
        expected,
        events: vec![e],
    };
    let results = log
        .append_each(vec![
            part("s/2", ExpectedVersion::NoStream, event("a")),
            part("s/2", ExpectedVersion::NoStream, event("b")), // conflict: s/2 exists by now
            part("bad//stream", ExpectedVersion::Any, event("c")),
            part("s/1", ExpectedVersion::Any, event("dup")), // exact retry
            part("s/2", ExpectedVersion::Exact(0), event("d")),
        ])
        .await;
    assert_eq!(results[0].as_ref().map(|o| o.first_position()).ok(), Some(2));
    assert!(matches!(results[1], Err(LogError::WrongExpectedVersion { .. })));
    assert!(matches!(results[2], Err(LogError::InvalidArgument { .. })));
    assert!(
        results[3]
            .as_ref()
            .is_ok_and(|o| o.duplicate && o.first_position() == 1)
    );
    assert_eq!(
        results[4].as_ref().map(|o| (o.first_position(), o.stream_version)).ok(),
        Some((3, 1))
    );
    assert_eq!(log.head(), 3);
    log.close().await
}

/// Refuses `order.placed` events whose data lacks `"order_id"`.
#[derive(Debug)]
struct NeedsOrderId;

impl EventValidator for NeedsOrderId {
    fn validate(&self, event: &ProposedEvent) -> std::result::Result<(), crate::Rejection> {
        let has_id = event.data.windows(10).any(|w| w == b"\"order_id\"");
        if event.event_type == "order.placed" && !has_id {
            return Err(crate::Rejection::new("data.order_id", "required field is missing"));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_refusal_writes_nothing_and_names_the_event_and_field() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
    let options = LogOptions {
        validator: Some(Arc::new(NeedsOrderId)),
        ..LogOptions::default()
    };
    let log = EventLog::open_async(dir.path(), options).await?;
    let good = |id: &str| ProposedEvent::json("order.placed", r#"{"order_id":"1"}"#).with_identity("t", id);
    let bad = |id: &str| ProposedEvent::json("order.placed", "{}").with_identity("t", id);
    let custom = ProposedEvent::json("custom.thing", "{}").with_identity("t", "c");

    // One bad event among good ones, in the second part: nothing is written.
    let parts = vec![
        StreamAppend {
            stream: "order/1".into(),
            expected: ExpectedVersion::Any,
            events: vec![good("a")],
        },
        StreamAppend {
            stream: "order/2".into(),
            expected: ExpectedVersion::Any,
            events: vec![good("b"), bad("c")],
        },
    ];
    match log.append_many(parts).await {
        Err(LogError::InvalidArgument { field, reason }) => {
            assert_eq!(field, "events[2].data.order_id");
            assert_eq!(reason, "required field is missing");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(log.head(), 0);

    // A large append is checked off the runtime, with the same outcome.
    let mut many: Vec<ProposedEvent> = (0..1000).map(|i| good(&format!("m{i}"))).collect();
    many.push(bad("last"));
    let err = log.append("order/3", ExpectedVersion::Any, many).await.unwrap_err();
    assert!(err.to_string().contains("events[1000].data.order_id"), "{err}");
    assert_eq!(log.head(), 0);

    // Independent appends: only the bad part is refused.
    let part = |e| StreamAppend {
        stream: "order/4".into(),
        expected: ExpectedVersion::Any,
        events: vec![e],
    };
    let results = log
        .append_each(vec![part(good("d")), part(bad("e")), part(custom)])
        .await;
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(matches!(&results[1], Err(LogError::InvalidArgument { field, .. }) if field == "events[0].data.order_id"));
    assert_eq!(log.head(), 2);
    log.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_survive_close() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| LogError::Storage(e.into()))?;
    let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
    assert_eq!(log.checkpoint("outbound")?, None);
    log.save_checkpoint("outbound", 42)?;
    log.close().await?;
    drop(log);
    let log = EventLog::open_async(dir.path(), LogOptions::default()).await?;
    assert_eq!(log.checkpoint("outbound")?, Some(42));
    assert_eq!(log.checkpoint("other")?, None);
    log.close().await
}
