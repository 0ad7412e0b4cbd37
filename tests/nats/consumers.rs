//! The ingest consumer and stream as an operator may change them: filters narrowed
//! (at runtime or before opsflow adopts the consumer), a full stream refusing
//! producers, and consumers that cannot be used (what to do is said per retention).

use super::*;

/// `items` of `producer` published on `subject` instead.
fn on_subject(subject: &str, producer: &str, count: u64) -> Vec<(String, HeaderMap, bytes::Bytes)> {
    items(&[producer], count, false)
        .into_iter()
        .map(|(_, headers, body)| (subject.to_owned(), headers, body))
        .collect()
}

/// `count` events of `producer`, published on the two `subjects` in turn.
fn alternating(producer: &str, count: u64, subjects: [&str; 2]) -> Vec<(String, HeaderMap, bytes::Bytes)> {
    items(&[producer], count, false)
        .into_iter()
        .enumerate()
        .map(|(i, (_, headers, body))| (subjects[i % 2].to_owned(), headers, body))
        .collect()
}

/// The stream `OPS_EVENTS` capturing `other.>` besides the ingest subjects (as an
/// operator may make it), so that the stream sequences the consumer skips tell
/// nothing.
fn wider_stream() -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: "OPS_EVENTS".into(),
        subjects: vec!["ops.events.>".into(), "other.>".into()],
        ..Default::default()
    }
}

/// The consumer `opsflow-ingest` filtered to `filter`, as an operator would make it.
fn ingest_consumer_filtered(filter: &str) -> jetstream::consumer::pull::Config {
    jetstream::consumer::pull::Config {
        durable_name: Some("opsflow-ingest".into()),
        filter_subject: filter.into(),
        ack_policy: jetstream::consumer::AckPolicy::All,
        ..Default::default()
    }
}

/// Each producer's events exactly once and in its order, `count` of each.
fn each_once_in_order(events: &[v1::RecordedEvent], producers: &[(&str, u64)]) {
    for (producer, count) in producers {
        let mine: Vec<v1::RecordedEvent> = events.iter().filter(|e| e.source == *producer).cloned().collect();
        assert_exactly_once(&mine, &[producer], *count, true);
    }
    let all: u64 = producers.iter().map(|(_, count)| count).sum();
    assert_eq!(events.len() as u64, all);
}

/// Makes consumer `config` on the stream `OPS_EVENTS`, as an operator would.
async fn consumer_of_ops_events(
    js: &jetstream::Context,
    config: jetstream::consumer::pull::Config,
) -> anyhow::Result<()> {
    js.get_stream("OPS_EVENTS").await?.create_consumer(config).await?;
    Ok(())
}

/// The stream `OPS_EVENTS` over `ops.events.>` and the consumer `opsflow-ingest`
/// filtered to `filter`, made as an operator would before opsflow starts.
async fn ingest_stream_and_consumer(js: &jetstream::Context, filter: &str) -> anyhow::Result<()> {
    js.create_stream(jetstream::stream::Config {
        name: "OPS_EVENTS".into(),
        subjects: vec!["ops.events.>".into()],
        ..Default::default()
    })
    .await?;
    consumer_of_ops_events(js, ingest_consumer_filtered(filter)).await
}

/// Sets the filter of opsflow's ingest consumer to `filter`, as `nats consumer
/// edit` does.
async fn narrow(js: &jetstream::Context, filter: &str) -> anyhow::Result<()> {
    let stream = js.get_stream("OPS_EVENTS").await?;
    let mut config = stream.consumer_info("opsflow-ingest").await?.config;
    config.filter_subject = filter.to_owned();
    stream.update_consumer(config).await?;
    Ok(())
}

/// An operator narrowing the ingest consumer's filter while opsflow runs made it
/// pass over the events published on the subjects left out: the producers had
/// their acknowledgements, the events never reached the log, /readyz read ready.
/// Now the filter is set back within moments and what the consumer passed over is
/// read back and recorded (here from a stream that captures other subjects too,
/// so that the sequences the consumer skips tell nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_narrowed_at_runtime_is_set_back_and_what_it_passed_over_recorded() -> anyhow::Result<()> {
    let (_nats, js, _dir, opsflow) = opsflow_with_stream(wider_stream()).await?;
    wait_ready(&opsflow.url()).await?;
    publish_all(&js, on_subject("ops.events.order.placed", "before", 3), 8).await?;
    assert_eq!(settled_head(&opsflow.url(), 3, Duration::from_secs(30)).await?.len(), 3);
    narrow(&js, "ops.events.kept.>").await?;
    publish_all(&js, on_subject("ops.events.order.placed", "left", 5), 8).await?;
    publish_all(&js, on_subject("other.x", "other", 2), 8).await?;
    publish_all(&js, on_subject("ops.events.kept.x", "kept", 5), 8).await?;
    let events = settled_head(&opsflow.url(), 13, Duration::from_secs(30)).await?;
    each_once_in_order(&events, &[("before", 3), ("left", 5), ("kept", 5)]);
    assert_eq!(ingest_consumer(&js).await?.config.filter_subject, "ops.events.>");
    // And it goes on: a later event on the subject left out is ingested.
    publish_all(&js, on_subject("ops.events.order.placed", "after", 2), 8).await?;
    assert_eq!(
        settled_head(&opsflow.url(), 15, Duration::from_secs(30)).await?.len(),
        15
    );
    Ok(())
}

/// A consumer whose filter leaves out ingest subjects when opsflow starts is given
/// the ingest subjects (it was adopted with a warning, and the events published
/// on the rest were never ingested).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_consumer_leaving_out_ingest_subjects_is_given_them() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    ingest_stream_and_consumer(&js, "ops.events.kept.>").await?;
    publish_all(&js, on_subject("ops.events.order.placed", "waiting", 4), 8).await?;
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    let events = settled_head(&opsflow.url(), 4, Duration::from_secs(30)).await?;
    assert_exactly_once(&events, &["waiting"], 4, true);
    assert_eq!(ingest_consumer(&js).await?.config.filter_subject, "ops.events.>");
    Ok(())
}

/// A full ingest stream with discard new refuses producers: /readyz says so (it
/// read ready while every producer was refused), and is ready again once there is
/// room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_refusing_producers_is_reported_until_there_is_room() -> anyhow::Result<()> {
    let (_nats, js, _dir, opsflow) = opsflow_with_stream(jetstream::stream::Config {
        name: "OPS_EVENTS".into(),
        subjects: vec!["ops.events.>".into()],
        max_messages: 5,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await?;
    wait_ready(&opsflow.url()).await?;
    publish_all(&js, on_subject("ops.events.order.placed", "fills", 5), 8).await?;
    let refused = js
        .publish("ops.events.order.placed", "{}".into())
        .await?
        .await
        .expect_err("a full stream with discard new refuses");
    assert!(refused.to_string().contains("maximum messages"), "{refused}");
    not_ready_saying(
        &opsflow,
        "ingest",
        "ingest stream OPS_EVENTS is full (it holds 5 messages, its max_msgs 5) and discards new messages: \
         producers' events are refused; with limits retention only max_age, a purge or deletes free room",
    )
    .await?;
    assert_eq!(
        wait_for_head(&opsflow.url(), 5, Duration::from_secs(10)).await?.len(),
        5
    );
    let mut config = js.get_stream("OPS_EVENTS").await?.info().await?.config.clone();
    config.max_messages = 100;
    js.update_stream(config).await?;
    wait_ready(&opsflow.url()).await?;
    Ok(())
}

/// A consumer an operator paused delivers nothing: /readyz says so and how to
/// resume it (it read ready while 100 events waited), and is ready again once it
/// is resumed, when the events come in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_consumer_is_reported_until_it_is_resumed() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let nc = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(nc.clone());
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    let pause = "$JS.API.CONSUMER.PAUSE.OPS_EVENTS.opsflow-ingest";
    let until = json!({ "pause_until": "2099-01-01T00:00:00Z" }).to_string();
    let paused: serde_json::Value = serde_json::from_slice(&nc.request(pause, until.into()).await?.payload)?;
    anyhow::ensure!(paused["paused"] == true, "not paused: {paused}");
    publish_all(&js, on_subject("ops.events.order.placed", "waiting", 3), 8).await?;
    not_ready_saying(&opsflow, "ingest", "consumer opsflow-ingest is paused for another").await?;
    not_ready_saying(
        &opsflow,
        "ingest",
        "so nothing is ingested meanwhile (producers' events wait in the stream): resume it with `nats consumer \
         resume OPS_EVENTS opsflow-ingest`",
    )
    .await?;
    nc.request(pause, "{}".into()).await?;
    wait_ready(&opsflow.url()).await?;
    let events = settled_head(&opsflow.url(), 3, Duration::from_secs(30)).await?;
    each_once_in_order(&events, &[("waiting", 3)]);
    Ok(())
}

/// On a work-queue stream, another consumer taking the ingest subjects keeps
/// opsflow from making its own: that consumer is what to change (the advice was to
/// delete opsflow's, which did not exist).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_consumer_of_a_work_queue_stream_is_named_as_the_obstacle() -> anyhow::Result<()> {
    let (_nats, js, _dir, opsflow) = opsflow_with_stream(jetstream::stream::Config {
        name: "OPS_EVENTS".into(),
        subjects: vec!["ops.events.>".into()],
        retention: jetstream::stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await?;
    consumer_of_ops_events(
        &js,
        jetstream::consumer::pull::Config {
            durable_name: Some("billing".into()),
            filter_subject: "ops.events.>".into(),
            ..Default::default()
        },
    )
    .await?;
    not_ready_saying(
        &opsflow,
        "ingest",
        "a work-queue stream gives each message to one consumer only, and another of its consumers already takes \
         (some of) the ingest subjects [\"ops.events.>\"]; give the stream's other consumers filters apart from \
         those (nats consumer ls OPS_EVENTS)",
    )
    .await
}

/// A consumer that cannot be used on a stream with interest retention is replaced
/// under another name first: deleting it, as the advice was, drops the messages
/// only it was still to deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_an_unusable_consumer_of_an_interest_stream_keeps_its_messages() -> anyhow::Result<()> {
    let (_nats, js, _dir, opsflow) = opsflow_with_stream(jetstream::stream::Config {
        name: "OPS_EVENTS".into(),
        subjects: vec!["ops.events.>".into()],
        retention: jetstream::stream::RetentionPolicy::Interest,
        ..Default::default()
    })
    .await?;
    consumer_of_ops_events(
        &js,
        jetstream::consumer::pull::Config {
            durable_name: Some("opsflow-ingest".into()),
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        },
    )
    .await?;
    not_ready_saying(
        &opsflow,
        "ingest",
        "it does not wait for acknowledgements, so a crash would lose messages): set [nats.ingest] consumer to a \
         new name and opsflow makes that one, which reads what the stream holds; delete opsflow-ingest only after",
    )
    .await
}

/// Filters narrowed and widened back between two of opsflow's looks: where the
/// consumer delivers all of its stream's subjects, each stream sequence it skips
/// is read back at once, so nothing is lost however briefly (the events passed
/// over were lost for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_narrowed_and_widened_back_between_two_looks_lose_nothing() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    publish_all(&js, on_subject("ops.events.order.placed", "before", 3), 8).await?;
    assert_eq!(settled_head(&opsflow.url(), 3, Duration::from_secs(30)).await?.len(), 3);
    narrow(&js, "ops.events.kept.>").await?;
    publish_all(&js, on_subject("ops.events.order.placed", "left", 5), 8).await?;
    publish_all(&js, on_subject("ops.events.kept.x", "kept", 5), 8).await?;
    narrow(&js, "ops.events.>").await?;
    let events = settled_head(&opsflow.url(), 13, Duration::from_secs(30)).await?;
    // Read back before what came after them: every producer in order.
    each_once_in_order(&events, &[("before", 3), ("left", 5), ("kept", 5)]);
    Ok(())
}

/// opsflow's NATS user may not change consumers; an administrator made the
/// consumer and narrows it.
const CONSUMERS_DENIED: &str = r#"
accounts {
  A {
    jetstream: enabled
    users = [
      {user: admin, password: admin}
      {user: opsflow, password: opsflow, permissions: {
         publish: { allow: ">", deny: ["$JS.API.CONSUMER.CREATE.OPS_EVENTS.>"] }, subscribe: { allow: ">" } } }
    ]
  }
}
"#;

/// Where opsflow may not set the filters back, /readyz says what it needs, the
/// subjects still delivered are ingested as ever (each try waited out the
/// request timeout and held up ingest), what the consumer skips is read back, and
/// once an operator sets the filters back by hand, it is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_opsflow_may_not_set_back_are_reported_and_nothing_is_lost() -> anyhow::Result<()> {
    let nats = NatsServer::start_with_config(CONSUMERS_DENIED)?;
    let admin = async_nats::ConnectOptions::with_user_and_password("admin".into(), "admin".into())
        .connect(nats.url())
        .await?;
    let js = jetstream::new(admin);
    ingest_stream_and_consumer(&js, "ops.events.>").await?;
    let dir = tempfile::tempdir()?;
    let url = format!("nats://opsflow:opsflow@127.0.0.1:{}", nats.port());
    let opsflow = OpsflowProcess::start_with(dir.path(), &["--nats", &url])?;
    wait_ready(&opsflow.url()).await?;
    narrow(&js, "ops.events.kept.>").await?;
    publish_all(&js, on_subject("ops.events.order.placed", "left", 5), 8).await?;
    publish_all(&js, on_subject("ops.events.kept.x", "kept", 1000), 64).await?;
    not_ready_saying(
        &opsflow,
        "ingest",
        "consumer opsflow-ingest delivers only [\"ops.events.kept.>\"], leaving out the ingest subjects \
         [\"ops.events.>\"]: setting its filters back failed (no answer within 2 s): opsflow's NATS user needs \
         publish permission on $JS.API.CONSUMER.CREATE.OPS_EVENTS.> for that",
    )
    .await?;
    let events = settled_head(&opsflow.url(), 1005, Duration::from_secs(60)).await?;
    each_once_in_order(&events, &[("left", 5), ("kept", 1000)]);
    narrow(&js, "ops.events.>").await?;
    wait_ready(&opsflow.url()).await?;
    Ok(())
}

/// On a work-queue stream, what was read back is deleted once recorded, as its
/// acknowledgement would have removed it (it stayed in the stream for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_work_queue_stream_what_was_read_back_is_removed() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[("OPSFLOW_NATS__INGEST__RETENTION", "workqueue")]).await?;
    narrow(&js, "ops.events.kept.>").await?;
    publish_all(&js, on_subject("ops.events.order.placed", "left", 5), 8).await?;
    publish_all(&js, on_subject("ops.events.kept.x", "kept", 5), 8).await?;
    let events = settled_head(&opsflow.url(), 10, Duration::from_secs(30)).await?;
    assert_exactly_once(&events, &["left", "kept"], 5, true);
    let mut stream = js.get_stream("OPS_EVENTS").await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while stream.info().await?.state.messages > 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the work-queue stream still holds {:?}",
            stream.cached_info().state
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// What the consumer went past without delivering when its filters are set back
/// (nats-server does not take it back) is read back too: 5 events published just
/// after 300 it delivered were lost (0 or 4 of 5), with /readyz ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_consumer_went_past_last_is_read_back_too() -> anyhow::Result<()> {
    let (_nats, js, _dir, opsflow) = opsflow_with_stream(wider_stream()).await?;
    wait_ready(&opsflow.url()).await?;
    // After opsflow's first look has seen the consumer whole.
    tokio::time::sleep(Duration::from_secs(6)).await;
    narrow(&js, "ops.events.kept.>").await?;
    let mut burst = on_subject("ops.events.kept.x", "kept", 300);
    burst.extend(on_subject("ops.events.order.placed", "left", 5));
    publish_all(&js, burst, 512).await?;
    let events = settled_head(&opsflow.url(), 305, Duration::from_secs(30)).await?;
    each_once_in_order(&events, &[("kept", 300), ("left", 5)]);
    Ok(())
}

/// On a stream capturing other subjects too, opsflow killed while reading back
/// what a narrowed consumer passed over finishes it after a restart: where to read
/// back from is kept in the log (it was kept in memory, and 44,000 of 50,000
/// events were lost for good in a review, with /readyz ready).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_back_cut_short_on_a_wider_stream_is_finished_after_a_restart() -> anyhow::Result<()> {
    let (nats, _, js) = nats_with_stream(wider_stream()).await?;
    let dir = tempfile::tempdir()?;
    let mut opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    narrow(&js, "ops.events.kept.>").await?;
    publish_all(&js, on_subject("ops.events.order.placed", "left", 40_000), 512).await?;
    publish_all(&js, on_subject("ops.events.kept.x", "kept", 1), 8).await?;
    // The next look sets the filters back and reads back what was passed over.
    wait_for_head(&opsflow.url(), 1_000, Duration::from_secs(60)).await?;
    opsflow.kill();
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    let events = settled_head(&opsflow.url(), 40_001, Duration::from_secs(120)).await?;
    each_once_in_order(&events, &[("kept", 1), ("left", 40_000)]);
    Ok(())
}

/// What a run kept of where the consumer was last whole is of that stream and
/// consumer as made: after the stream was made again (its sequences start over)
/// with a narrowed consumer, the next run read back 301..=400 of the new stream
/// before the consumer delivered 1..=300, breaking the producer's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_kept_of_a_stream_made_again_is_not_used() -> anyhow::Result<()> {
    let (nats, _, js) = nats_with_stream(wider_stream()).await?;
    let dir = tempfile::tempdir()?;
    let mut opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    publish_all(
        &js,
        alternating("first", 300, ["ops.events.a.x", "ops.events.b.x"]),
        128,
    )
    .await?;
    settled_head(&opsflow.url(), 300, Duration::from_secs(30)).await?;
    // A look keeps where the consumer was whole (300); a clean stop makes it durable.
    tokio::time::sleep(Duration::from_secs(6)).await;
    anyhow::ensure!(opsflow.terminate(Duration::from_secs(20))?, "opsflow did not stop");
    js.delete_stream("OPS_EVENTS").await?;
    js.create_stream(wider_stream()).await?;
    consumer_of_ops_events(&js, ingest_consumer_filtered("ops.events.a.x")).await?;
    publish_all(
        &js,
        alternating("second", 400, ["ops.events.a.x", "ops.events.b.x"]),
        128,
    )
    .await?;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    let events = settled_head(&opsflow.url(), 700, Duration::from_secs(60)).await?;
    each_once_in_order(&events, &[("first", 300), ("second", 400)]);
    Ok(())
}

/// One producer publishing alternately on a subject left out and one delivered:
/// what the consumer skipped is read back in stream order, between what it
/// delivered (a gap in the middle of a batch was read back before the batch's
/// earlier events: 1, 3, 5, …, 11, 0, 2, 4, …).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_read_back_keeps_a_producers_order() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    narrow(&js, "ops.events.kept.>").await?;
    let mixed = alternating("mixed", 400, ["ops.events.kept.x", "ops.events.order.placed"]);
    publish_all(&js, mixed, 128).await?;
    let events = settled_head(&opsflow.url(), 400, Duration::from_secs(60)).await?;
    each_once_in_order(&events, &[("mixed", 400)]);
    Ok(())
}

/// On a work-queue stream, messages another consumer takes are its own: not read
/// back, not deleted (opsflow recorded and deleted all five of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_work_queue_stream_another_consumers_messages_are_left_to_it() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[("OPSFLOW_NATS__INGEST__RETENTION", "workqueue")]).await?;
    narrow(&js, "ops.events.kept.>").await?;
    consumer_of_ops_events(
        &js,
        jetstream::consumer::pull::Config {
            durable_name: Some("billing".into()),
            filter_subject: "ops.events.order.>".into(),
            ..Default::default()
        },
    )
    .await?;
    publish_all(&js, on_subject("ops.events.order.placed", "billing", 5), 8).await?;
    publish_all(&js, on_subject("ops.events.kept.x", "kept", 3), 8).await?;
    let events = settled_head(&opsflow.url(), 3, Duration::from_secs(30)).await?;
    // Past a look or two, which cannot set the filter back (billing takes those).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let events_after = wait_for_head(&opsflow.url(), 3, Duration::ZERO).await?;
    each_once_in_order(&events_after, &[("kept", 3)]);
    assert_eq!(events.len(), 3);
    let billing = js.get_stream("OPS_EVENTS").await?.consumer_info("billing").await?;
    assert_eq!(billing.num_pending, 5, "{billing:?}");
    Ok(())
}

/// On a work-queue stream, opsflow killed while reading back a large stretch the
/// consumer skipped records it all after a restart, and takes it all out of the
/// stream (a restart recovered only the consumer's last deliveries and left the
/// rest in the stream for good: 25,999 of 40,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_back_cut_short_on_a_work_queue_stream_is_finished_after_a_restart() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let dir = tempfile::tempdir()?;
    let env = [("OPSFLOW_NATS__INGEST__RETENTION", "workqueue")];
    let mut opsflow = opsflow_on(&nats, dir.path(), &env).await?;
    narrow(&js, "ops.events.kept.>").await?;
    publish_all(&js, on_subject("ops.events.order.placed", "left", 30_000), 512).await?;
    publish_all(&js, on_subject("ops.events.kept.x", "kept", 1), 8).await?;
    wait_for_head(&opsflow.url(), 1_000, Duration::from_secs(60)).await?;
    opsflow.kill();
    narrow(&js, "ops.events.>").await?;
    let opsflow = opsflow_on(&nats, dir.path(), &env).await?;
    let events = settled_head(&opsflow.url(), 30_001, Duration::from_secs(120)).await?;
    each_once_in_order(&events, &[("left", 30_000), ("kept", 1)]);
    let mut stream = js.get_stream("OPS_EVENTS").await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stream.info().await?.state.messages > 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "left in the stream: {:?}",
            stream.cached_info().state
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// opsflow's NATS user may not list consumers.
const CONSUMER_LIST_DENIED: &str = r#"
accounts {
  A {
    jetstream: enabled
    users = [
      {user: opsflow, password: opsflow, permissions: {
         publish: { allow: ">", deny: ["$JS.API.CONSUMER.LIST.>"] }, subscribe: { allow: ">" } } }
    ]
  }
}
"#;

/// On a work-queue stream, recovery after a crash does not depend on listing the
/// stream's consumers: where opsflow's NATS user may not, it recovers what its
/// consumer was given as before (a session that could not list them failed, and
/// ingest never started again: 0 of 60,000 after 40 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_queue_recovery_goes_on_without_listing_consumers() -> anyhow::Result<()> {
    let nats = NatsServer::start_with_config(CONSUMER_LIST_DENIED)?;
    let url = format!("nats://opsflow:opsflow@127.0.0.1:{}", nats.port());
    let producer = async_nats::ConnectOptions::with_user_and_password("opsflow".into(), "opsflow".into())
        .connect(nats.url())
        .await?;
    let js = jetstream::new(producer);
    let dir = tempfile::tempdir()?;
    let env = [("OPSFLOW_NATS__INGEST__RETENTION", "workqueue")];
    let mut opsflow = OpsflowProcess::start_with_env(dir.path(), &["--nats", &url], &env)?;
    wait_ready(&opsflow.url()).await?;
    publish_all(&js, on_subject("ops.events.order.placed", "queued", 20_000), 512).await?;
    wait_for_head(&opsflow.url(), 1_000, Duration::from_secs(60)).await?;
    opsflow.kill();
    let opsflow = OpsflowProcess::start_with_env(dir.path(), &["--nats", &url], &env)?;
    wait_ready(&opsflow.url()).await?;
    let events = settled_head(&opsflow.url(), 20_000, Duration::from_secs(120)).await?;
    each_once_in_order(&events, &[("queued", 20_000)]);
    Ok(())
}
