//! Streams opsflow adopts or shares: its own subjects and the request subject captured.

use super::*;

/// A stream that also captures opsflow's own subjects (its committed events here)
/// is adopted: the consumer takes only the ingest subjects, so neither outbound
/// events nor dead letters come back as ingest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_stream_capturing_opsflows_own_subjects_is_not_ingested_from_them() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(client.clone());
    js.create_stream(jetstream::stream::Config {
        name: "OPS_EVENTS".into(),
        subjects: vec!["ops.>".into(), "opsflow.log.>".into()],
        ..Default::default()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    let mut dlq = client.subscribe("opsflow.dlq.>").await?;
    client.flush().await?;
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", "application/cloudevents+json");
    let mut all = items(&["own"], 20, false);
    all.push(("ops.events.x".to_owned(), headers, "not json".into()));
    publish_all(&js, all, 8).await?;
    let events = settled_head(&opsflow.url(), 20, Duration::from_secs(30)).await?;
    assert_exactly_once(&events, &["own"], 20, true);
    let dead = next_within(&mut dlq, 20).await?;
    assert_eq!(dead.subject.as_str(), "opsflow.dlq.decode");
    // Outbound put the 20 events in the stream too; none came back as a dead letter.
    let mut stream = js.get_stream("OPS_EVENTS").await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while stream.info().await?.state.messages < 41 {
        anyhow::ensure!(Instant::now() < deadline, "outbound events not in the stream");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), dlq.next())
            .await
            .is_err(),
        "one dead letter only"
    );
    let info = stream.consumer_info("opsflow-ingest").await?;
    assert_eq!(info.config.filter_subject, "ops.events.>");
    Ok(())
}

/// The consumer opsflow makes takes only the ingest subjects, even from a stream
/// that captures nothing else: when the stream comes to capture another subject
/// while opsflow runs, that subject's events are not ingested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_the_stream_comes_to_capture_is_not_ingested() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    publish_all(&js, items(&["before"], 3, false), 8).await?;
    assert_eq!(settled_head(&opsflow.url(), 3, Duration::from_secs(30)).await?.len(), 3);
    let mut stream = js.get_stream("OPS_EVENTS").await?;
    let mut config = stream.info().await?.config.clone();
    config.subjects.push("other.>".into());
    js.update_stream(config).await?;
    // A valid event on the other subject, then the producer's next ones.
    let (_, headers, body) = items(&["other"], 1, false).remove(0);
    js.publish_with_headers("other.order.placed", headers, body)
        .await?
        .await?;
    publish_all(&js, items(&["after"], 3, false), 8).await?;
    let events = settled_head(&opsflow.url(), 6, Duration::from_secs(30)).await?;
    assert_eq!(events.len(), 6, "the event on other.order.placed is not ingested");
    assert_exactly_once(&events[..3], &["before"], 3, true);
    assert_exactly_once(&events[3..], &["after"], 3, true);
    assert_eq!(ingest_consumer(&js).await?.config.filter_subject, "ops.events.>");
    Ok(())
}

/// A stream that captures the request subject answers each request itself (a
/// publish acknowledgement) before opsflow can: request/reply says so in /readyz.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_capturing_the_request_subject_is_reported() -> anyhow::Result<()> {
    let (_nats, _js, _dir, opsflow) = opsflow_with_stream(jetstream::stream::Config {
        name: "CAPTURES_REQUESTS".into(),
        subjects: vec!["opsflow.api.>".into()],
        ..Default::default()
    })
    .await?;
    not_ready_saying(
        &opsflow,
        "requests",
        "stream CAPTURES_REQUESTS captures the request subject opsflow.api.append",
    )
    .await
}

/// A dead-letter stream in memory is refused: a bad message is terminated once its
/// dead letter is kept, and a nats-server restart would lose the dead letter (it
/// was adopted without a word).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_stream_in_memory_is_refused() -> anyhow::Result<()> {
    let (_nats, _js, _dir, opsflow) = opsflow_with_stream(jetstream::stream::Config {
        name: "MEMDLQ".into(),
        subjects: vec!["opsflow.dlq.>".into()],
        storage: jetstream::stream::StorageType::Memory,
        ..Default::default()
    })
    .await?;
    not_ready_saying(
        &opsflow,
        "ingest",
        "JetStream stream \"MEMDLQ\" exists but does not fit: it keeps the dead letters' opsflow.dlq.> in memory, \
         where a nats-server restart loses them after their messages were terminated; ingest keeps dead letters \
         only in file storage: make it a file stream",
    )
    .await
}

/// Another stream holding the ingest subjects is named, and so is what to set; the
/// stream opsflow would make is not said to exist (it said "exists but does not
/// fit").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_holding_the_ingest_subjects_is_named() -> anyhow::Result<()> {
    let (_nats, _js, _dir, opsflow) = opsflow_with_stream(jetstream::stream::Config {
        name: "MYOPS".into(),
        subjects: vec!["ops.>".into()],
        ..Default::default()
    })
    .await?;
    not_ready_saying(
        &opsflow,
        "ingest",
        "JetStream stream \"OPS_EVENTS\" cannot be created: stream MYOPS already captures ops.events.>",
    )
    .await?;
    not_ready_saying(
        &opsflow,
        "ingest",
        "set [nats.ingest] stream = \"MYOPS\" to ingest from it",
    )
    .await
}

/// Messages the ingest stream removed before ingest read them (a limit with
/// discard old, while opsflow was down) are told: an error and
/// `opsflow_nats_ingest_skipped_total`. They went unnoticed: the producers had
/// their acknowledgements, and nothing said their events were not in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_the_stream_removed_before_ingest_read_them_are_counted() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let mut opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    anyhow::ensure!(opsflow.terminate(Duration::from_secs(20))?, "opsflow did not stop");
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let mut config = js.get_stream("OPS_EVENTS").await?.info().await?.config.clone();
    config.max_messages = 5;
    js.update_stream(config).await?;
    publish_all(&js, items(&["kept"], 10, false), 10).await?;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    let events = settled_head(&opsflow.url(), 5, Duration::from_secs(20)).await?;
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["kept-5", "kept-6", "kept-7", "kept-8", "kept-9"]);
    assert_eq!(counter(&opsflow.url(), "opsflow_nats_ingest_skipped_total").await?, 5);
    Ok(())
}

/// An ingest stream whose subject transform stores messages outside the ingest
/// subjects is refused, saying so: it was adopted, and ingest never saw a message
/// while /readyz read ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_transforming_subjects_away_from_ingest_is_refused() -> anyhow::Result<()> {
    let (_nats, _js, _dir, opsflow) = opsflow_with_stream(jetstream::stream::Config {
        name: "OPS_EVENTS".into(),
        subjects: vec!["ops.events.>".into()],
        subject_transform: Some(jetstream::stream::SubjectTransform {
            source: "ops.events.>".into(),
            destination: "ingested.ops.events.>".into(),
        }),
        ..Default::default()
    })
    .await?;
    not_ready_saying(
        &opsflow,
        "ingest",
        "its subject transform stores ops.events.> as ingested.ops.events.>, outside the ingest subjects",
    )
    .await
}
