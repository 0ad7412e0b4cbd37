//! Ingest in the three CloudEvents modes, exactly once through a nats-server restart,
//! an opsflow SIGKILL and republishing, and what an earlier session left unacknowledged.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_in_three_modes_land_exactly_once_in_order() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let server = TestServer::start_with(|c| c.nats = Some(NatsConfig::url(nats.url()))).await?;
    wait_ready(&server.url()).await?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    // Every NATS counter is on /metrics from the start, so the first increase shows.
    let metrics = reqwest::get(format!("{}/metrics", server.url())).await?.text().await?;
    for counter in [
        "opsflow_nats_ingested_total",
        "opsflow_nats_ingest_interruptions_total",
        "opsflow_nats_dead_letters_total{reason=\"decode\"}",
        "opsflow_nats_published_total",
        "opsflow_nats_outbound_interruptions_total",
        "opsflow_nats_outbound_data_omitted_total",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(&format!("{counter} "))),
            "no {counter} in:\n{metrics}"
        );
    }
    let producers = ["json", "binary", "proto", "json2", "binary2", "proto2"];
    // 6 producers × 1667 = 10,002 events, two per mode.
    publish_all(&js, items(&producers, 1667, true), 256).await?;
    let events = wait_for_head(&server.url(), 10_002, Duration::from_secs(90)).await?;
    assert_exactly_once(&events, &producers, 1667, true);
    // Each event as it was published, whatever its mode.
    for e in &events {
        let seq: u64 = e.id.rsplit('-').next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
        let what = format!("{} at position {}", e.id, e.position);
        assert_eq!(e.id, format!("{}-{seq}", e.source), "{what}");
        assert_eq!(e.r#type, "order.placed", "{what}");
        assert_eq!(
            e.stream,
            format!("order/{}-{}", e.source, seq % 50),
            "the subject picks the stream: {what}"
        );
        assert_eq!(e.content_type, "application/json", "{what}");
        let data: serde_json::Value = serde_json::from_slice(&e.data)?;
        assert_eq!(data, data_of(&e.source, seq), "{what}");
        let region = format!("r{}", seq % 3);
        assert_eq!(e.metadata.get("region"), Some(&region), "the extension: {what}");
    }
    // Batch sizes in buckets, as the group commit's: every batch is within 1000.
    let metrics = reqwest::get(format!("{}/metrics", server.url())).await?.text().await?;
    let batches = |bucket: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("opsflow_nats_ingest_batch_bucket{{le=\"{bucket}\"}} ")))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    assert!(
        batches("1000").is_some_and(|n| n > 0 && Some(n) == batches("+Inf")),
        "{metrics}"
    );
    server.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_opsflow_kill_and_republish_keep_exactly_once() -> anyhow::Result<()> {
    let mut nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let args = ["--nats", &nats.url()];
    let mut opsflow = OpsflowProcess::start_with(dir.path(), &args)?;
    wait_ready(&opsflow.url()).await?;
    let producers = ["alpha", "beta"];
    let all = items(&producers, 1500, false);
    let js = jetstream::new(async_nats::connect(nats.url()).await?);

    // 1. Restart nats-server while a producer publishes and opsflow ingests. The
    //    producer resends from its first unacknowledged message, one at a time.
    let publisher = publish_in_background(&js, all[..2000].to_vec());
    until_ingesting(&js, 0).await?;
    anyhow::ensure!(
        !publisher.is_finished(),
        "the producer finished before NATS stopped: the restart would prove nothing"
    );
    nats.stop();
    // While NATS is down, opsflow is not ready, and says why: the last attempt to
    // connect, with the URL it tried.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let refused = format!("cannot connect to {}", nats.url());
    loop {
        let r = reqwest::get(format!("{}/readyz", opsflow.url())).await?;
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await?;
        if body["nats"]["status"] == "disconnected"
            && body["nats"]["connection"]
                .as_str()
                .is_some_and(|c| c.starts_with(&refused))
        {
            assert_eq!(status, 503, "{body}");
            assert_eq!(body["nats"]["ingest"], "waiting for the connection", "{body}");
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "still connected: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nats.restart()?;
    publisher.await??;
    // Checked before anything is published again, which would hide a loss: every
    // event once, each producer's in its order (opsflow was not killed).
    let events = settled_head(&opsflow.url(), 2000, Duration::from_secs(90)).await?;
    assert_exactly_once(&events, &producers, 1000, true);
    let head = ingest_sequence(&js).await?;
    // The outage is counted, on each of opsflow's two connections.
    let metrics = reqwest::get(format!("{}/metrics", opsflow.url())).await?.text().await?;
    for connection in ["opsflow", "opsflow-requests"] {
        let line = format!("opsflow_nats_disconnections_total{{connection=\"{connection}\"}} ");
        let count = metrics
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .and_then(|v| v.trim().parse::<u64>().ok());
        anyhow::ensure!(count.is_some_and(|c| c >= 1), "{line}: {count:?}");
    }

    // 2. SIGKILL opsflow while it ingests, then start it again on the same data.
    let publisher = publish_in_background(&js, all[2000..].to_vec());
    until_ingesting(&js, head).await?;
    anyhow::ensure!(
        !publisher.is_finished(),
        "the producer finished before opsflow was killed: the kill would prove nothing"
    );
    opsflow.kill();
    publisher.await??;
    let opsflow = OpsflowProcess::start_with(dir.path(), &args)?;
    let events = settled_head(&opsflow.url(), 3000, Duration::from_secs(90)).await?;
    assert_exactly_once(&events, &producers, 1500, false);

    // 3. Publish everything again: once all of it is taken, nothing more is recorded.
    publish_all(&js, all.clone(), 1).await?;
    drained(&js).await?;
    let events = settled_head(&opsflow.url(), 3000, Duration::from_secs(10)).await?;
    assert_exactly_once(&events, &producers, 1500, false);
    let mut audit = v1::audit_client::AuditClient::connect(opsflow.url()).await?;
    assert!(audit.verify(v1::VerifyRequest::default()).await?.into_inner().ok);
    Ok(())
}

/// [`publish_all`] one message at a time, on a task of its own, paced (a pause
/// after every 100) so that it is surely still publishing when a fault comes.
fn publish_in_background(
    js: &jetstream::Context,
    items: Vec<(String, HeaderMap, bytes::Bytes)>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let js = js.clone();
    tokio::spawn(async move {
        for chunk in items.chunks(100) {
            publish_all(&js, chunk.to_vec(), 1).await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })
}

/// The last stream sequence delivered to opsflow's ingest consumer.
async fn ingest_sequence(js: &jetstream::Context) -> anyhow::Result<u64> {
    Ok(ingest_consumer(js).await?.delivered.stream_sequence)
}

/// Waits until opsflow has been given messages past stream sequence `after` and
/// the stream holds some it has not acknowledged: a fault now comes mid-ingest.
async fn until_ingesting(js: &jetstream::Context, after: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = ingest_consumer(js).await?;
        if info.delivered.stream_sequence > after && (info.num_ack_pending > 0 || info.num_pending > 0) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "opsflow is not ingesting: {info:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until opsflow's ingest consumer has every message of the stream
/// delivered and acknowledged.
async fn drained(js: &jetstream::Context) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = ingest_consumer(js).await?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "ingest did not take everything: {info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGKILL while producers keep publishing: the messages opsflow had been given but
/// not yet acknowledged are delivered again and recorded, never acknowledged on the
/// way by a later acknowledgement, and nothing needs publishing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_nothing_while_producers_keep_publishing() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let args = ["--nats", &nats.url()];
    // A shorter ack wait than the default, so that what was in flight is redelivered
    // within the test; still longer than a restart takes, so a restarted opsflow
    // acknowledges newer messages before that redelivery.
    let env = [("OPSFLOW_NATS__INGEST__ACK_WAIT_SECS", "10")];
    let mut opsflow = opsflow_on(&nats, dir.path(), &env).await?;
    let producers = ["gamma", "delta"];
    let all = items(&producers, 20_000, false);
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    // Paced (about 10,000 a second) until told to stop, so that publishing spans
    // the kills; whole chunks of 100 per producer.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut sent = 0;
            for chunk in all.chunks(200) {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                publish_all(&js, chunk.to_vec(), 32).await?;
                sent += chunk.len();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok(sent)
        }
    });
    // Kill until two kills found messages in flight (a kill between two batches
    // finds none and proves nothing).
    let probe = jetstream::new(async_nats::connect(nats.url()).await?);
    let mut kills_in_flight = 0;
    for attempt in 0..15 {
        if kills_in_flight == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250 + 40 * attempt)).await;
        opsflow.kill();
        let info = ingest_consumer(&probe).await?;
        kills_in_flight += usize::from(info.num_ack_pending > 0);
        opsflow = OpsflowProcess::start_with_env(dir.path(), &args, &env)?;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = publisher.await??;
    assert_eq!(kills_in_flight, 2, "too few kills found messages in flight");
    let events = settled_head(&opsflow.url(), sent, Duration::from_secs(60)).await?;
    assert_exactly_once(&events, &producers, sent as u64 / 2, false);
    Ok(())
}

/// What an earlier session was given and did not acknowledge is recorded before
/// anything newer is acknowledged (which, with one acknowledgement covering all
/// earlier messages, would acknowledge it unrecorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_earlier_session_did_not_acknowledge_is_recorded_first() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let mut messages = items(&["old"], 100, false);
    // One of those given and not acknowledged cannot be read.
    messages[39].2 = bytes::Bytes::from_static(b"{not json");
    // An earlier session was given 50 messages and acknowledged the first 30.
    let info = earlier_session(&js, messages, 50, 30).await?;
    assert_eq!((info.ack_floor.stream_sequence, info.num_ack_pending), (30, 20));

    let dir = tempfile::tempdir()?;
    let opsflow = OpsflowProcess::start_with(dir.path(), &["--nats", &nats.url()])?;
    let events = wait_for_head(&opsflow.url(), 69, Duration::from_secs(30)).await?;
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let expected: Vec<String> = (30..100)
        .filter(|&seq| seq != 39)
        .map(|seq| format!("old-{seq}"))
        .collect();
    assert_eq!(ids, expected, "everything past the acknowledged floor, once, in order");
    let dead = js.get_stream("OPSFLOW_DLQ").await?.get_raw_message(1).await?;
    assert_eq!(dead.subject.as_str(), "opsflow.dlq.decode");
    assert_eq!(dead.payload.as_ref(), b"{not json");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = ingest_consumer(&js).await?;
        if (info.ack_floor.stream_sequence, info.num_ack_pending) == (100, 0) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "not all acknowledged: {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut dlq = js.get_stream("OPSFLOW_DLQ").await?;
    assert_eq!(dlq.info().await?.state.messages, 1, "dead-lettered once");
    Ok(())
}

/// The stream `OPS_EVENTS` with `messages`, and the consumer `opsflow-ingest`
/// (acknowledging all, the default `ack_wait` of 30 s) as an earlier session left
/// it: `given` delivered, the first `acknowledged` of them acknowledged.
async fn earlier_session(
    js: &jetstream::Context,
    messages: Vec<(String, HeaderMap, bytes::Bytes)>,
    given: usize,
    acknowledged: usize,
) -> anyhow::Result<jetstream::consumer::Info> {
    use jetstream::consumer::{AckPolicy, pull};
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "OPS_EVENTS".into(),
            subjects: vec!["ops.events.>".into()],
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("opsflow-ingest".into()),
            ack_policy: AckPolicy::All,
            ..Default::default()
        })
        .await?;
    publish_all(js, messages, 16).await?;
    let mut deliveries = consumer.fetch().max_messages(given).messages().await?;
    let mut n = 0;
    while let Some(message) = deliveries.next().await {
        n += 1;
        if n == acknowledged {
            let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
            message.double_ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    Ok(stream.clone().consumer_info("opsflow-ingest").await?)
}

/// What an earlier session was given last is acknowledged once recorded, though
/// nothing newer comes to carry an acknowledgement past it: JetStream does not
/// deliver it all again once `ack_wait` is over (found in a fault soak: 952
/// messages pending for 22 s, then redelivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_earlier_session_was_given_last_is_acknowledged_once_recorded() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    // An earlier session was given all 60 and acknowledged the first 20; the
    // consumer redelivers after 30 s.
    earlier_session(&js, items(&["last"], 60, false), 60, 20).await?;
    let dir = tempfile::tempdir()?;
    let opsflow = OpsflowProcess::start_with(dir.path(), &["--nats", &nats.url()])?;
    wait_for_head(&opsflow.url(), 40, Duration::from_secs(30)).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = ingest_consumer(&js).await?;
        if (info.ack_floor.stream_sequence, info.num_ack_pending) == (60, 0) {
            assert_eq!(
                info.delivered.consumer_sequence, 60,
                "nothing delivered again: {info:?}"
            );
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not acknowledged well within ack_wait: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Deliveries the session did not get (here: taken by another subscriber of the
/// consumer, as a pull request of a vanished session would take them) end the
/// session before anything past them is acknowledged; the next one records them
/// from the stream, long before JetStream's redelivery (`ack_wait`, 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_someone_else_are_recorded_not_acknowledged_past() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let all = items(&["eps"], 1000, false);
    publish_all(&js, all[..100].to_vec(), 16).await?;
    wait_for_head(&opsflow.url(), 100, Duration::from_secs(20)).await?;
    // Another subscriber waits on opsflow's consumer and takes a few deliveries,
    // never acknowledging them; in rounds until it has been given some (JetStream
    // may serve opsflow's pulls first).
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream("OPS_EVENTS")
        .await?
        .get_consumer("opsflow-ingest")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut stolen, mut sent) = (0, 100);
    while stolen == 0 {
        anyhow::ensure!(
            sent < all.len(),
            "the other subscriber was never given a delivery in {} rounds",
            sent / 100 - 1
        );
        let mut taken = consumer
            .fetch()
            .max_messages(5)
            .expires(Duration::from_secs(2))
            .messages()
            .await?;
        publish_all(&js, all[sent..sent + 100].to_vec(), 16).await?;
        sent += 100;
        while let Some(message) = taken.next().await {
            message.map_err(|e| anyhow::anyhow!("{e}"))?;
            stolen += 1;
        }
    }
    // Within 20 s, under the consumer's 30 s ack wait: opsflow read what the other
    // subscriber took from the stream, rather than waiting for its redelivery.
    let started = Instant::now();
    let events = settled_head(&opsflow.url(), sent, Duration::from_secs(20)).await?;
    assert_exactly_once(&events, &["eps"], sent as u64, false);
    eprintln!(
        "{stolen} deliveries taken by another subscriber; all {sent} recorded in {:?}",
        started.elapsed()
    );
    Ok(())
}

/// A work-queue stream takes only consumers that acknowledge each message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_queue_stream_is_ingested_with_one_acknowledgement_per_message() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let env = [("OPSFLOW_NATS__INGEST__RETENTION", "workqueue")];
    let opsflow = opsflow_on(&nats, dir.path(), &env).await?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    publish_all(&js, items(&["wq"], 50, false), 16).await?;
    let events = settled_head(&opsflow.url(), 50, Duration::from_secs(20)).await?;
    assert_exactly_once(&events, &["wq"], 50, true);
    let mut stream = js.get_stream("OPS_EVENTS").await?;
    let info = stream.consumer_info("opsflow-ingest").await?;
    assert_eq!(info.config.ack_policy, jetstream::consumer::AckPolicy::Explicit);
    // Acknowledged messages leave a work queue.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stream.info().await?.state.messages > 0 {
        anyhow::ensure!(Instant::now() < deadline, "messages left in the work queue");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A consumer an operator set to `max_deliver = 1` stops counting as pending what
/// an opsflow SIGKILLed had been given: the next session records it all the same
/// (it read only pending ones, and lost the rest for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_messages_a_consumer_stopped_delivering_are_recorded_after_a_sigkill() -> anyhow::Result<()> {
    const MESSAGES: u64 = 20_000;
    let nats = NatsServer::start()?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "OPS_EVENTS".into(),
            subjects: vec!["ops.events.>".into()],
            ..Default::default()
        })
        .await?;
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("opsflow-ingest".into()),
            ack_policy: jetstream::consumer::AckPolicy::All,
            ack_wait: Duration::from_secs(1),
            max_deliver: 1,
            filter_subject: "ops.events.>".into(),
            ..Default::default()
        })
        .await?;
    publish_all(&js, items(&["given"], MESSAGES, false), 500).await?;
    let dir = tempfile::tempdir()?;
    let mut opsflow = OpsflowProcess::start_with(dir.path(), &["--nats", &nats.url()])?;
    until_ingesting(&js, 2_000).await?;
    opsflow.kill();
    // Past ack_wait: what was given is not delivered again, nor pending.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    drained(&js).await?;
    let events = settled_head(&opsflow.url(), MESSAGES as usize, Duration::from_secs(60)).await?;
    assert_exactly_once(&events, &["given"], MESSAGES, false);
    Ok(())
}
