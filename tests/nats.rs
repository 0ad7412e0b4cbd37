//! The NATS transport against a real `nats-server` with JetStream: ingest in the
//! three CloudEvents modes, exactly once through faults, dead letters,
//! request/reply and outbound publishing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture};
use futures::StreamExt;
use opsflow_e2e::{client, event, read_all, wait_ready};
use opsflow_nats::NatsConfig;
use opsflow_proto::cloudevents::CloudEvent;
use opsflow_proto::cloudevents::cloud_event::{self, CloudEventAttributeValue, cloud_event_attribute_value};
use opsflow_proto::v1;
use opsflow_testkit::{NatsServer, OpsflowProcess, TestServer, order_json};
use prost::Message as _;
use serde_json::json;

/// The data of a producer's event `seq`.
fn data_of(source: &str, seq: u64) -> serde_json::Value {
    json!({ "order_id": format!("{source}-{seq}"), "seq": seq, "customer": source, "total": seq * 3,
            "currency": "EUR", "promised_by": "2026-11-23T10:00:00Z" })
}

/// One producer's event `seq` in one of the three modes: subject
/// `order/<source>-<seq % 50>`, extension `region` = `r<seq % 3>`.
fn message(mode: usize, source: &str, seq: u64) -> (HeaderMap, bytes::Bytes) {
    let id = format!("{source}-{seq}");
    let subject = format!("order/{source}-{}", seq % 50);
    let data = data_of(source, seq);
    let mut headers = HeaderMap::new();
    match mode {
        0 => {
            headers.insert("Content-Type", "application/cloudevents+json");
            let ce = json!({ "specversion": "1.0", "id": id, "source": source, "type": "order.placed",
                             "subject": subject, "region": format!("r{}", seq % 3), "data": data });
            (headers, ce.to_string().into())
        }
        1 => {
            for (k, v) in [
                ("ce-specversion", "1.0"),
                ("ce-id", &id),
                ("ce-source", source),
                ("ce-type", "order.placed"),
            ] {
                headers.insert(k, v);
            }
            headers.insert("ce-subject", subject.as_str());
            headers.insert("ce-region", format!("r{}", seq % 3).as_str());
            headers.insert("Content-Type", "application/json");
            (headers, data.to_string().into())
        }
        _ => {
            headers.insert("Content-Type", "application/cloudevents+protobuf");
            let attr = |s: &str| CloudEventAttributeValue {
                attr: Some(cloud_event_attribute_value::Attr::CeString(s.to_owned())),
            };
            let ce = CloudEvent {
                id,
                source: source.to_owned(),
                spec_version: "1.0".into(),
                r#type: "order.placed".into(),
                attributes: [
                    ("subject".to_owned(), attr(&subject)),
                    ("region".to_owned(), attr(&format!("r{}", seq % 3))),
                    ("datacontenttype".to_owned(), attr("application/json")),
                ]
                .into_iter()
                .collect(),
                data: Some(cloud_event::Data::TextData(data.to_string())),
            };
            (headers, ce.encode_to_vec().into())
        }
    }
}

/// Publishes with JetStream acknowledgement, `window` messages in flight, and
/// resends from the first unacknowledged message while NATS is away. With a window
/// of 1 the order is strict even through failures.
async fn publish_all(
    js: &jetstream::Context,
    items: Vec<(String, HeaderMap, bytes::Bytes)>,
    window: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut next = 0;
    while next < items.len() {
        anyhow::ensure!(Instant::now() < deadline, "publishing did not finish in 120 s");
        let end = (next + window).min(items.len());
        let mut acks: Vec<PublishAckFuture> = Vec::new();
        for (subject, headers, body) in &items[next..end] {
            match js
                .publish_with_headers(subject.clone(), headers.clone(), body.clone())
                .await
            {
                Ok(ack) => acks.push(ack),
                Err(_) => break,
            }
        }
        let mut acked = next;
        for ack in acks {
            if ack.await.is_err() {
                break;
            }
            acked += 1;
        }
        if acked < end {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        next = acked;
    }
    Ok(())
}

fn items(producers: &[&str], per_producer: u64, modes: bool) -> Vec<(String, HeaderMap, bytes::Bytes)> {
    let mut out = Vec::new();
    for seq in 0..per_producer {
        for (p, source) in producers.iter().enumerate() {
            let (headers, body) = message(if modes { p % 3 } else { 0 }, source, seq);
            out.push(("ops.events.order.placed".to_owned(), headers, body));
        }
    }
    out
}

async fn wait_for_head(url: &str, at_least: usize, within: Duration) -> anyhow::Result<Vec<v1::RecordedEvent>> {
    let deadline = Instant::now() + within;
    loop {
        let mut c = client(url).await?;
        let events = read_all(&mut c).await?;
        if events.len() >= at_least || Instant::now() > deadline {
            return Ok(events);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `opsflow dev` as a process of its own on `nats`, with `env` overrides, ready.
async fn opsflow_on(nats: &NatsServer, data: &std::path::Path, env: &[(&str, &str)]) -> anyhow::Result<OpsflowProcess> {
    let opsflow = OpsflowProcess::start_with_env(data, &["--nats", &nats.url()], env)?;
    wait_ready(&opsflow.url()).await?;
    Ok(opsflow)
}

/// [`wait_for_head`], then once `count` events are there, the log 2 s later: a stray
/// redelivery recorded twice would show.
async fn settled_head(url: &str, count: usize, within: Duration) -> anyhow::Result<Vec<v1::RecordedEvent>> {
    let events = wait_for_head(url, count, within).await?;
    if events.len() != count {
        return Ok(events);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_for_head(url, count, Duration::ZERO).await
}

/// Every (source, id) exactly once and, when `ordered`, each producer's events in
/// its order. (After an opsflow crash, JetStream redelivers the messages that were
/// in flight once their ack wait expires, after newer ones: order holds in normal
/// operation, exactly-once always.)
fn assert_exactly_once(events: &[v1::RecordedEvent], producers: &[&str], per_producer: u64, ordered: bool) {
    let mut seen: HashMap<(String, String), u64> = HashMap::new();
    let mut last: HashMap<String, i64> = HashMap::new();
    for e in events {
        let previous = seen.insert((e.source.clone(), e.id.clone()), e.position);
        assert!(
            previous.is_none(),
            "{}/{} recorded twice (positions {previous:?} and {})",
            e.source,
            e.id,
            e.position
        );
        let seq: i64 = e.id.rsplit('-').next().and_then(|s| s.parse().ok()).unwrap_or(-1);
        let before = last.insert(e.source.clone(), seq).unwrap_or(-1);
        assert!(
            !ordered || seq > before,
            "producer {} out of order: {seq} after {before}",
            e.source
        );
    }
    for p in producers {
        for seq in 0..per_producer {
            assert!(
                seen.contains_key(&(p.to_string(), format!("{p}-{seq}"))),
                "{p}-{seq} is missing"
            );
        }
    }
    assert_eq!(events.len() as u64, producers.len() as u64 * per_producer);
}

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

/// opsflow's ingest consumer.
async fn ingest_consumer(js: &jetstream::Context) -> anyhow::Result<jetstream::consumer::Info> {
    Ok(js
        .get_stream("OPS_EVENTS")
        .await?
        .consumer_info("opsflow-ingest")
        .await?
        .clone())
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

/// The next message of `subscriber` within `secs` seconds.
async fn next_within(subscriber: &mut async_nats::Subscriber, secs: u64) -> anyhow::Result<async_nats::Message> {
    tokio::time::timeout(Duration::from_secs(secs), subscriber.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("subscription closed"))
}

/// Header `name` of `message`, or empty.
fn header_of(message: &async_nats::Message, name: &str) -> String {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}

/// `opsflow dev` as a process of its own on a new nats-server, with a client
/// subscribed to the dead letters.
struct WithDeadLetters {
    nats: NatsServer,
    _dir: tempfile::TempDir,
    opsflow: OpsflowProcess,
    client: async_nats::Client,
    js: jetstream::Context,
    dlq: async_nats::Subscriber,
}

async fn with_dead_letters(env: &[(&str, &str)]) -> anyhow::Result<WithDeadLetters> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), env).await?;
    let client = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(client.clone());
    let dlq = client.subscribe("opsflow.dlq.>").await?;
    client.flush().await?;
    Ok(WithDeadLetters {
        nats,
        _dir: dir,
        opsflow,
        client,
        js,
        dlq,
    })
}

/// A bad message close to NATS's largest does not fit in a dead letter with the
/// error added: it goes without its payload, saying where the original is, and
/// ingest moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_too_large_for_nats_goes_without_its_payload() -> anyhow::Result<()> {
    // A process of its own: the dead-letter counters of in-process servers are
    // shared by the tests running beside it.
    // Every field bound: the server and the data directory live to the end.
    let WithDeadLetters {
        nats: _nats,
        _dir,
        opsflow,
        client,
        js,
        mut dlq,
    } = with_dead_letters(&[]).await?;
    let max = client.server_info().max_payload;
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", "application/cloudevents+json");
    let mut big = vec![b'{'];
    big.resize(max - 100, b'x');
    let good = items(&["after"], 1, false).remove(0);
    publish_all(&js, vec![("ops.events.x".to_owned(), headers, big.into()), good], 1).await?;
    let dead = next_within(&mut dlq, 20).await?;
    assert_eq!(dead.subject.as_str(), "opsflow.dlq.decode");
    assert!(dead.payload.is_empty());
    let omitted = header_of(&dead, "Opsflow-Payload-Omitted");
    assert!(omitted.contains("it is message 1 of stream OPS_EVENTS"), "{omitted}");
    let events = wait_for_head(&opsflow.url(), 1, Duration::from_secs(20)).await?;
    assert_eq!(events[0].id, "after-0", "ingest moved on");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_dead_lettered_with_a_reason_and_ingest_continues() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let server = TestServer::start_with(|c| c.nats = Some(NatsConfig::url(nats.url()))).await?;
    wait_ready(&server.url()).await?;
    let nc = async_nats::connect(nats.url()).await?;
    let mut dlq = nc.subscribe("opsflow.dlq.>").await?;
    nc.flush().await?;
    let js = jetstream::new(nc.clone());
    let structured = |body: serde_json::Value| {
        let mut h = HeaderMap::new();
        h.insert("Content-Type", "application/cloudevents+json");
        ("ops.events.x".to_owned(), h, bytes::Bytes::from(body.to_string()))
    };
    let expecting = |expected: &str, (subject, mut h, body): (String, HeaderMap, bytes::Bytes)| {
        h.insert("opsflow-expected-version", expected);
        (subject, h, body)
    };
    let mut bad_json = HeaderMap::new();
    bad_json.insert("Content-Type", "application/cloudevents+json");
    // With a JetStream header that holds for the ingest stream, not for the
    // dead-letter stream: the dead letter must not carry it.
    let mut bad_json_expecting = bad_json.clone();
    bad_json_expecting.insert("Nats-Expected-Stream", "OPS_EVENTS");
    let cases = vec![
        (
            (
                "ops.events.x".to_owned(),
                bad_json,
                bytes::Bytes::from_static(b"{not json"),
            ),
            "decode",
        ),
        (
            (
                "ops.events.x".to_owned(),
                bad_json_expecting,
                bytes::Bytes::from_static(b"{not json either"),
            ),
            "decode",
        ),
        (
            structured(json!({"specversion":"1.0","source":"s","type":"a.b","subject":"s/1"})),
            "decode",
        ),
        // A batch of one: the NATS binding has no batch mode, whatever a batch holds.
        (
            (
                "ops.events.x".to_owned(),
                {
                    let mut h = HeaderMap::new();
                    h.insert("Content-Type", "application/cloudevents-batch+json");
                    h
                },
                bytes::Bytes::from(
                    json!([{"specversion":"1.0","id":"b1","source":"s","type":"a.b","subject":"s/1"}]).to_string(),
                ),
            ),
            "decode",
        ),
        (
            structured(json!({"specversion":"0.3","id":"1","source":"s","type":"a.b","subject":"s/1"})),
            "decode",
        ),
        (
            structured(
                json!({"specversion":"1.0","id":"2","source":"s","type":"a.b","subject":"s/9","expectedversion":"5"}),
            ),
            "version_conflict",
        ),
        // The request's expected version in the header, as over HTTP: s/8 has no
        // version 3; and a header that is not an expected version.
        (
            expecting(
                "3",
                structured(json!({"specversion":"1.0","id":"8","source":"s","type":"a.b","subject":"s/8"})),
            ),
            "version_conflict",
        ),
        (
            expecting(
                "soon",
                structured(json!({"specversion":"1.0","id":"9","source":"s","type":"a.b","subject":"s/8"})),
            ),
            "invalid",
        ),
        // A well-formed CloudEvent whose type the log refuses.
        (
            structured(json!({"specversion":"1.0","id":"3","source":"s","type":"a b","subject":"s/1"})),
            "invalid",
        ),
        // The same, quoted in the error header in US-ASCII.
        (
            structured(json!({"specversion":"1.0","id":"8","source":"s","type":"café au lait","subject":"s/1"})),
            "invalid",
        ),
        // A well-formed CloudEvent whose subject is not a stream name.
        (
            structured(json!({"specversion":"1.0","id":"5","source":"s","type":"a.b","subject":"s//1"})),
            "invalid",
        ),
        // A catalog event with neither a subject nor the field its stream comes from.
        (
            structured(json!({"specversion":"1.0","id":"6","source":"s","type":"order.placed",
                              "data":{"customer":"acme"}})),
            "invalid",
        ),
        // Stamped by a clock years ahead (log.max_time_ahead_secs).
        (
            structured(
                json!({"specversion":"1.0","id":"7","source":"s","type":"a.b","subject":"s/1","time":"2099-01-01T00:00:00Z"}),
            ),
            "invalid",
        ),
        // A catalog event without a required field (docs/catalog.md).
        (
            structured(
                json!({"specversion":"1.0","id":"4","source":"s","type":"order.placed","subject":"order/PO-1",
                              "data":{"customer":"acme","total":5,"currency":"EUR",
                                      "promised_by":"2026-11-23T10:00:00Z"}}),
            ),
            "invalid",
        ),
    ];
    let expected: Vec<&str> = cases.iter().map(|(_, r)| *r).collect();
    let mut messages: Vec<_> = cases.into_iter().map(|(m, _)| m).collect();
    messages.push(structured(
        json!({"specversion":"1.0","id":"ok","source":"s","type":"a.b","subject":"s/1"}),
    ));
    publish_all(&js, messages, 1).await?;
    let mut reasons = Vec::new();
    let mut errors = Vec::new();
    while reasons.len() < expected.len() {
        let m = tokio::time::timeout(Duration::from_secs(20), dlq.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("dlq closed"))?;
        let headers = m.headers.clone().unwrap_or_default();
        assert!(
            headers.get("Opsflow-Error").is_some_and(|v| !v.as_str().is_empty()),
            "error header on {}",
            m.subject
        );
        assert_eq!(
            headers.get("Opsflow-Original-Subject").map(|v| v.as_str()),
            Some("ops.events.x")
        );
        reasons.push(m.subject.as_str().trim_start_matches("opsflow.dlq.").to_owned());
        errors.push(
            headers
                .get("Opsflow-Error")
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default(),
        );
    }
    assert_eq!(reasons, expected);
    assert!(errors.iter().all(|e| e.is_ascii()), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains(r"caf\u{e9} au lait")), "{errors:?}");
    let ahead_error = &errors[errors.len() - 2];
    assert!(
        ahead_error.contains("events[0].time") && ahead_error.contains("ahead of the server's clock"),
        "{ahead_error}"
    );
    let catalog_error = errors.last().cloned().unwrap_or_default();
    assert!(
        catalog_error.contains("data.order_id: required field is missing for order.placed"),
        "{catalog_error}"
    );
    let events = wait_for_head(&server.url(), 1, Duration::from_secs(20)).await?;
    assert_eq!(events.len(), 1, "only the good event is recorded");
    assert_eq!(events[0].id, "ok");
    // Counted once JetStream acknowledged the dead letter, which a subscriber may
    // see first.
    let lines = [
        "opsflow_nats_dead_letters_total{reason=\"decode\"} 5",
        "opsflow_nats_dead_letters_total{reason=\"invalid\"} 7",
        "opsflow_nats_dead_letters_total{reason=\"version_conflict\"} 2",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = reqwest::get(format!("{}/metrics", server.url())).await?.text().await?;
        let missing: Vec<&str> = lines.iter().copied().filter(|l| !metrics.contains(l)).collect();
        if missing.is_empty() {
            break;
        }
        let counted: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("opsflow_nats_dead_letters_total"))
            .collect();
        assert!(Instant::now() < deadline, "/metrics lacks {missing:?}; has {counted:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_returns_positions_and_structured_errors() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let server = TestServer::start_with(|c| c.nats = Some(NatsConfig::url(nats.url()))).await?;
    wait_ready(&server.url()).await?;
    let nc = async_nats::connect(nats.url()).await?;
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", "application/cloudevents+json");
    let ce = json!({"specversion":"1.0","id":"r1","source":"svc","type":"order.placed",
                    "data":{"order_id":"PO-1","customer":"acme","total":5,"currency":"EUR",
                            "promised_by":"2026-11-23T10:00:00Z"}});
    let ask = |h: HeaderMap, body: bytes::Bytes| {
        let nc = nc.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(10),
                nc.request_with_headers("opsflow.api.append", h, body),
            )
            .await
        }
    };
    let reply = ask(headers.clone(), ce.to_string().into()).await??;
    let body: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(
        (body["position"].as_u64(), body["stream"].as_str()),
        (Some(1), Some("order/PO-1"))
    );
    let reply = ask(headers.clone(), ce.to_string().into()).await??;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&reply.payload)?["duplicate"],
        true
    );
    // An empty batch is valid in a request (JSON batch format, 4.3): nothing happens.
    let mut batch = HeaderMap::new();
    batch.insert("Content-Type", "application/cloudevents-batch+json");
    let reply = ask(batch, "[]".into()).await??;
    assert!(
        reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error-Code"))
            .is_none()
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&reply.payload)?,
        json!({"results": [], "duplicate": false})
    );

    let mut proto = HeaderMap::new();
    proto.insert("Content-Type", "application/protobuf");
    let request = v1::AppendRequest {
        stream: "order/PO-1".into(),
        expected: Some(v1::ExpectedVersion {
            kind: Some(v1::expected_version::Kind::Exact(0)),
        }),
        events: vec![v1::ProposedEvent {
            r#type: "order.approved".into(),
            data: br#"{"order_id":"PO-1","approver":"alice"}"#.to_vec().into(),
            ..Default::default()
        }],
    };
    let reply = ask(proto.clone(), request.encode_to_vec().into()).await??;
    let response = v1::AppendResponse::decode(reply.payload)?;
    assert_eq!((response.first_position, response.stream_version), (2, 1));
    let reply = ask(proto.clone(), request.encode_to_vec().into()).await??;
    let h = reply.headers.unwrap_or_default();
    assert_eq!(h.get("Nats-Service-Error-Code").map(|v| v.as_str()), Some("409"));
    let err: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(
        (err["error"]["expected"].as_str(), err["error"]["actual"].as_u64()),
        (Some("0"), Some(1))
    );
    // The request's expected version in the header: order/PO-1 exists.
    let mut expecting = headers.clone();
    expecting.insert("opsflow-expected-version", "no_stream");
    let mut next = ce.clone();
    next["id"] = json!("r3");
    let reply = ask(expecting.clone(), next.to_string().into()).await??;
    let err: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(err["error"]["code"], "wrong_expected_version", "{err}");
    expecting.insert("opsflow-expected-version", "soon");
    let reply = ask(expecting.clone(), next.to_string().into()).await??;
    let err: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(err["error"]["field"], "opsflow-expected-version", "{err}");
    let mut proto_expecting = proto.clone();
    proto_expecting.insert("opsflow-expected-version", "1");
    let reply = ask(proto_expecting, request.encode_to_vec().into()).await??;
    let err: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(err["error"]["field"], "opsflow-expected-version", "{err}");
    assert_eq!(server.server.log().head(), 2, "refused requests write nothing");
    let reply = ask(headers.clone(), bytes::Bytes::from_static(b"{")).await??;
    assert_eq!(
        reply
            .headers
            .unwrap_or_default()
            .get("Nats-Service-Error-Code")
            .map(|v| v.as_str()),
        Some("400")
    );
    // Errors carry the same details as over HTTP: the field, the original of a
    // conflicting duplicate.
    let mut conflicting = ce.clone();
    conflicting["data"]["total"] = json!(6);
    let reply = ask(headers.clone(), conflicting.to_string().into()).await??;
    let err: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(err["error"]["code"], "duplicate_conflict", "{err}");
    assert_eq!(
        (&err["error"]["source"], &err["error"]["id"], &err["error"]["position"]),
        (&json!("svc"), &json!("r1"), &json!(1))
    );
    let mut invalid = ce.clone();
    invalid["id"] = json!("r2");
    invalid["data"] = json!({"order_id": "PO-2"});
    let reply = ask(headers.clone(), invalid.to_string().into()).await??;
    let err: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(err["error"]["field"], "events[0].data.customer", "{err}");
    // The header says it in US-ASCII; the body as it is.
    let mut foreign = ce.clone();
    foreign["id"] = json!("r4");
    foreign["type"] = json!("café au lait");
    let reply = ask(headers.clone(), foreign.to_string().into()).await??;
    let said = reply
        .headers
        .unwrap_or_default()
        .get("Nats-Service-Error")
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    assert!(said.contains(r"caf\u{e9} au lait") && said.is_ascii(), "{said}");
    let err: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("café au lait")),
        "{err}"
    );
    let mut no_id = ce.clone();
    no_id.as_object_mut().map(|o| o.remove("id"));
    let reply = ask(headers, no_id.to_string().into()).await??;
    let err: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(err["error"]["field"], "id", "{err}");

    // Binary mode as the NATS binding writes it: the data's content type in
    // `ce-datacontenttype`, no Content-Type header.
    let mut binary = HeaderMap::new();
    for (name, value) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "b1"),
        ("ce-source", "svc"),
        ("ce-type", "note.added"),
        ("ce-subject", "note/b1"),
        ("ce-datacontenttype", "application/json"),
    ] {
        binary.insert(name, value);
    }
    let reply = ask(binary, bytes::Bytes::from_static(br#"{"text": "hi"}"#)).await??;
    let body: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(
        (body["stream"].as_str(), body["duplicate"].as_bool()),
        (Some("note/b1"), Some(false)),
        "{body}"
    );
    let recorded = server
        .server
        .log()
        .read_stream("note/b1", None, Default::default(), 1)
        .await?;
    assert_eq!(recorded[0].content_type, "application/json");
    // A structured CloudEvent in protobuf, as on ops.events.
    let (proto_ce, body) = message(2, "asker", 7);
    let reply = ask(proto_ce, body).await??;
    let body: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(
        (body["stream"].as_str(), body["duplicate"].as_bool()),
        (Some("order/asker-7"), Some(false)),
        "{body}"
    );
    server.shutdown().await
}

/// What a producer asking on `opsflow.api.append` heard.
#[derive(Debug, Default)]
struct Asked {
    /// (id, position) of each event answered with a position.
    answered: Vec<(String, u64)>,
    /// Error replies and failures other than "no responders" and timeouts.
    refused: Vec<String>,
    /// Requests that found no node serving the subject (opsflow had stopped).
    no_responders: usize,
    /// (producer, seq) of requests given no reply in time.
    unanswered: Vec<(usize, u64)>,
}

/// Producer `producer`'s note `seq`, as a structured CloudEvent.
fn note(producer: usize, seq: u64) -> (HeaderMap, bytes::Bytes) {
    let ce = json!({"specversion":"1.0","id":format!("p{producer}-{seq}"),"source":"rr-drain",
                    "type":"note.added","subject":format!("notes/{producer}"),"data":{"seq":seq}});
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", "application/cloudevents+json");
    (headers, ce.to_string().into())
}

/// Asks `opsflow.api.append` to record note `seq` of `producer`, and notes what
/// came back in `asked`.
async fn ask_note(nc: &async_nats::Client, producer: usize, seq: u64, asked: &mut Asked) {
    let (headers, body) = note(producer, seq);
    let id = format!("p{producer}-{seq}");
    let request = nc.request_with_headers("opsflow.api.append", headers, body);
    match tokio::time::timeout(Duration::from_secs(15), request).await {
        Err(_) => asked.unanswered.push((producer, seq)),
        Ok(Err(e)) => match e.kind() {
            async_nats::RequestErrorKind::NoResponders => asked.no_responders += 1,
            async_nats::RequestErrorKind::TimedOut => asked.unanswered.push((producer, seq)),
            _ => asked.refused.push(format!("{id}: request failed: {e}")),
        },
        Ok(Ok(reply)) => {
            let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
            match body["position"].as_u64() {
                Some(position) if body.get("error").is_none() => asked.answered.push((id, position)),
                _ => asked
                    .refused
                    .push(format!("{id}: {}", String::from_utf8_lossy(&reply.payload))),
            }
        }
    }
}

/// Asks for one note after another until `stop`, then for a second more, so that
/// it outlives the node it asks.
async fn ask_until(
    nc: async_nats::Client,
    producer: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Asked {
    let mut asked = Asked::default();
    let mut stopped_at: Option<Instant> = None;
    for seq in 0u64.. {
        if stopped_at.is_none() && stop.load(std::sync::atomic::Ordering::Relaxed) {
            stopped_at = Some(Instant::now());
        }
        if stopped_at.is_some_and(|at| at.elapsed() > Duration::from_secs(1)) {
            break;
        }
        let before = asked.no_responders;
        ask_note(&nc, producer, seq, &mut asked).await;
        if asked.no_responders > before {
            // Nobody serves the subject now: ask again a little later.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    asked
}

/// SIGTERM while producers keep asking on `opsflow.api.append`: the node stops
/// taking requests and exits cleanly; no request is refused, and every event it
/// recorded was answered (the log after a restart holds exactly the answered
/// events). A request still on the wire when it stopped may go unanswered
/// (async-nats 0.51 forgets a draining subscription before the server's PONG): its
/// producer asks again once a node is back. Then every position answered holds the
/// event it was answered for, and each event is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_requests_under_way_at_sigterm_are_answered_and_durable() -> anyhow::Result<()> {
    use std::sync::Arc;
    const PRODUCERS: usize = 32;
    use std::sync::atomic::{AtomicBool, Ordering};
    let nats = NatsServer::start()?;
    let data = tempfile::tempdir()?;
    let mut opsflow = opsflow_on(&nats, data.path(), &[]).await?;
    let nc = async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_secs(3)))
        .connect(nats.url())
        .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| tokio::spawn(ask_until(nc.clone(), p, stop.clone())))
        .collect();
    // Some answers first, then SIGTERM with requests under way.
    let mut log = client(&opsflow.url()).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_all(&mut log).await?.len() < 300 {
        anyhow::ensure!(Instant::now() < deadline, "fewer than 300 requests answered in 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let clean = tokio::task::spawn_blocking(move || opsflow.terminate(Duration::from_secs(30))).await??;
    assert!(clean, "opsflow did not exit cleanly on SIGTERM");
    stop.store(true, Ordering::Relaxed);
    let mut asked = Asked::default();
    for producer in producers {
        let one = producer.await?;
        asked.answered.extend(one.answered);
        asked.refused.extend(one.refused);
        asked.unanswered.extend(one.unanswered);
        asked.no_responders += one.no_responders;
    }
    assert!(
        asked.refused.is_empty(),
        "refused: {:?}",
        &asked.refused[..asked.refused.len().min(5)]
    );
    assert!(
        asked.no_responders > 0,
        "the producers stopped before the node did: the test proves nothing"
    );
    // One request at a time per producer: at most one each caught on the wire.
    assert!(
        asked.unanswered.len() <= PRODUCERS,
        "unanswered: {:?}",
        asked.unanswered
    );
    // A node again. What the stopped node took it answered: the log holds exactly
    // the answered events (an unanswered request never reached the node).
    let opsflow = opsflow_on(&nats, data.path(), &[]).await?;
    let mut recorded: Vec<String> = read_all(&mut client(&opsflow.url()).await?)
        .await?
        .into_iter()
        .map(|e| e.id)
        .collect();
    let mut answered: Vec<String> = asked.answered.iter().map(|(id, _)| id.clone()).collect();
    recorded.sort_unstable();
    answered.sort_unstable();
    assert_eq!(
        recorded, answered,
        "recorded but not answered, or answered but not recorded"
    );
    // The producers ask again for what went unanswered.
    let mut retried = Asked::default();
    for &(producer, seq) in &asked.unanswered {
        ask_note(&nc, producer, seq, &mut retried).await;
    }
    assert!(
        retried.refused.is_empty() && retried.unanswered.is_empty() && retried.no_responders == 0,
        "retries: {retried:?}"
    );
    asked.answered.extend(retried.answered);
    // Every answer holds: the position has the event, once.
    let events = read_all(&mut client(&opsflow.url()).await?).await?;
    let at: HashMap<u64, &str> = events.iter().map(|e| (e.position, e.id.as_str())).collect();
    for (id, position) in &asked.answered {
        assert_eq!(
            at.get(position),
            Some(&id.as_str()),
            "answered position {position} for {id}"
        );
    }
    let mut ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "an event recorded twice");
    assert_eq!(
        events.len(),
        asked.answered.len(),
        "an event recorded without an answer, or answered twice"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_publishes_in_order_and_resumes_without_gaps_or_duplicates() -> anyhow::Result<()> {
    // A duplicate window too short to hide a re-publish: the stream keeps every
    // copy (its default, 2 minutes, would drop a second copy of the same position).
    let (nats, _, js) = nats_with_stream(jetstream::stream::Config {
        duplicate_window: Duration::from_millis(100),
        ..outbound_capture()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let args = ["--nats", &nats.url()];
    let append = |url: String, from: u64, n: u64| async move {
        let mut c = client(&url).await?;
        for i in from..from + n {
            let event = if i % 2 == 0 {
                opsflow_e2e::event(
                    "out",
                    &format!("e{i}"),
                    "order.placed",
                    &order_json(&format!("SO-{i}"), i),
                )
            } else {
                let data = json!({"order_id": format!("SO-{}", i - 1), "carrier": "DHL"}).to_string();
                opsflow_e2e::event("out", &format!("e{i}"), "order.shipped", &data)
            };
            c.append(v1::AppendRequest {
                stream: format!("order/{}", i % 7),
                expected: None,
                events: vec![event],
            })
            .await?;
        }
        anyhow::Ok(())
    };
    let mut opsflow = OpsflowProcess::start_with(dir.path(), &args)?;
    append(opsflow.url(), 0, 300).await?;
    // Stopped at once, while outbound may still be publishing: it settles what it
    // sent and saves how far that went, and the next process goes on from there.
    assert!(opsflow.terminate(Duration::from_secs(20))?);
    let opsflow = OpsflowProcess::start_with(dir.path(), &args)?;
    append(opsflow.url(), 300, 200).await?;

    let mut stream = js.get_stream("OPSFLOW_LOG").await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stream.info().await?.state.messages < 500 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stream.info().await?.state.messages,
        500,
        "no gap and no duplicate across the restart"
    );
    for seq in 1..=500u64 {
        let m = stream.get_raw_message(seq).await?;
        let id = m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned());
        assert_eq!(id, Some(seq.to_string()), "in position order");
        let ce: serde_json::Value = serde_json::from_slice(&m.payload)?;
        assert_eq!(ce["id"], format!("e{}", seq - 1));
        let expected_type = if (seq - 1) % 2 == 0 {
            "order.placed"
        } else {
            "order.shipped"
        };
        assert_eq!(m.subject.as_str(), format!("opsflow.log.{expected_type}"));
    }
    drop(opsflow);
    Ok(())
}

/// A stream capturing everything outbound publishes (`opsflow.log.>`).
fn outbound_capture() -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: "OPSFLOW_LOG".into(),
        subjects: vec!["opsflow.log.>".into()],
        ..Default::default()
    }
}

/// A TCP proxy in front of `nats-server` that can drop what clients send and then
/// cut every connection: as a network failure loses what a client wrote into a
/// connection that then broke (the client cannot tell).
struct CutProxy {
    port: u16,
    holding: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cuts: tokio::sync::watch::Sender<u64>,
    accepting: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    async fn start(to: u16) -> anyhow::Result<CutProxy> {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let holding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (cuts, cut) = tokio::sync::watch::channel(0u64);
        let held = holding.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                    continue;
                };
                let (mut cut, holding) = (cut.clone(), held.clone());
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let upstream = async {
                        let mut buf = vec![0u8; 64 << 10];
                        loop {
                            let n = from_client.read(&mut buf).await?;
                            if n == 0 {
                                return anyhow::Ok(());
                            }
                            // Held: read from the client, never sent on.
                            if !holding.load(Ordering::SeqCst) {
                                to_server.write_all(&buf[..n]).await?;
                            }
                        }
                    };
                    let downstream = tokio::io::copy(&mut from_server, &mut to_client);
                    tokio::select! {
                        _ = upstream => {}
                        _ = downstream => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(CutProxy {
            port,
            holding,
            cuts,
            accepting,
        })
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// From now on, what clients send is read and dropped.
    fn hold(&self) {
        self.holding.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Closes every connection (what was held is lost) and lets new ones through.
    fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
        self.holding.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// nats-server with a stream capturing outbound, and opsflow (ready) connected to it
/// through a [`CutProxy`].
async fn capturing_behind_a_proxy() -> anyhow::Result<(
    NatsServer,
    jetstream::Context,
    CutProxy,
    tempfile::TempDir,
    OpsflowProcess,
)> {
    let (nats, _, js) = nats_with_stream(outbound_capture()).await?;
    let proxy = CutProxy::start(nats.port()).await?;
    let dir = tempfile::tempdir()?;
    let opsflow = OpsflowProcess::start_with(dir.path(), &["--nats", &proxy.url()])?;
    wait_ready(&opsflow.url()).await?;
    Ok((nats, js, proxy, dir, opsflow))
}

/// Publishes written into a connection that then breaks are lost, while those the
/// client queues after go out on the next connection: the capturing stream still
/// gets every position once and in order (it used to store the later ones first,
/// and the lost ones when outbound published again from its checkpoint).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_keeps_position_order_when_a_connection_breaks_and_loses_publishes() -> anyhow::Result<()> {
    let (_nats, js, proxy, _dir, opsflow) = capturing_behind_a_proxy().await?;
    const EVENTS: u64 = 300;
    let url = opsflow.url();
    let appending = tokio::spawn(async move {
        let mut c = client(&url).await?;
        for i in 0..EVENTS {
            append_order(&mut c, "cut", &format!("order/{}", i % 5), i).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::Ok(())
    });
    let mut stream = js.get_stream("OPSFLOW_LOG").await?;
    // Some published, then some lost with the connection, then the rest.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stream.info().await?.state.messages < 50 {
        anyhow::ensure!(Instant::now() < deadline, "outbound published nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.hold();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored_at_cut = stream.info().await?.state.messages;
    proxy.cut();
    appending.await??;
    assert_eq!(stored_once(&mut stream, EVENTS).await?, EVENTS, "no duplicate");
    assert!(
        stored_at_cut < EVENTS - 50,
        "the cut came while events were published ({stored_at_cut} stored)"
    );
    let expected: Vec<u64> = (1..=EVENTS).collect();
    assert_eq!(positions_in(&stream, EVENTS).await?, expected, "in position order");
    Ok(())
}

/// Someone else's messages stored in the capturing stream between outbound's make
/// outbound's next publish refused (it names the position before it): outbound
/// starts again from its checkpoint and every event still gets there once, in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_goes_on_past_other_messages_in_its_stream() -> anyhow::Result<()> {
    let (_nats, js, _dir, opsflow) = opsflow_with_stream(outbound_capture()).await?;
    wait_ready(&opsflow.url()).await?;
    let mut c = client(&opsflow.url()).await?;
    let mut stream = js.get_stream("OPSFLOW_LOG").await?;
    const EVENTS: u64 = 40;
    let mut others = 0;
    for i in 0..EVENTS {
        append_order(&mut c, "mixed", "order/mixed", i).await?;
        if i % 10 == 5 {
            // Right after outbound's publish of this event.
            let deadline = Instant::now() + Duration::from_secs(30);
            while stream.info().await?.state.messages < i + 1 + others {
                anyhow::ensure!(Instant::now() < deadline, "position {} not published", i + 1);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            js.publish("opsflow.log.by.someone.else", "{}".into()).await?.await?;
            others += 1;
        }
    }
    let stored = stored_once(&mut stream, EVENTS + 4).await?;
    assert_eq!(stored, EVENTS + 4, "no duplicate");
    assert_eq!(
        positions_in(&stream, stored).await?,
        (1..=EVENTS).collect::<Vec<_>>(),
        "in position order"
    );
    Ok(())
}

/// A connection that breaks while outbound has nothing outstanding loses nothing of
/// outbound's: it goes on publishing on the new connection without starting again
/// from its checkpoint (it used to, at its first publish after the reconnect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_goes_on_after_a_reconnect_while_idle() -> anyhow::Result<()> {
    let (_nats, js, proxy, _dir, opsflow) = capturing_behind_a_proxy().await?;
    let mut c = client(&opsflow.url()).await?;
    let mut stream = js.get_stream("OPSFLOW_LOG").await?;
    for i in 0..10 {
        append_order(&mut c, "idle", "order/idle", i).await?;
    }
    assert_eq!(stored_once(&mut stream, 10).await?, 10);
    proxy.cut();
    // Disconnected, and connected again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter(
        &opsflow.url(),
        "opsflow_nats_disconnections_total{connection=\"opsflow\"}",
    )
    .await?
        < 1
    {
        anyhow::ensure!(Instant::now() < deadline, "the cut went unnoticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_ready(&opsflow.url()).await?;
    for i in 10..20 {
        append_order(&mut c, "idle", "order/idle", i).await?;
    }
    assert_eq!(stored_once(&mut stream, 20).await?, 20, "no duplicate");
    assert_eq!(positions_in(&stream, 20).await?, (1..=20).collect::<Vec<_>>());
    assert_eq!(
        counter(&opsflow.url(), "opsflow_nats_outbound_interruptions_total").await?,
        0,
        "outbound started again"
    );
    Ok(())
}

/// The value of the counter `series` (name and labels, as /metrics writes them).
async fn counter(url: &str, series: &str) -> anyhow::Result<u64> {
    let metrics = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    let value = metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .ok_or_else(|| anyhow::anyhow!("no {series} in:\n{metrics}"))?;
    Ok(value.trim().parse()?)
}

/// How many messages `stream` holds once it has `expected` (within a minute) and
/// half a second more has passed (for any that should not come).
async fn stored_once(stream: &mut jetstream::stream::Stream, expected: u64) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = stream.info().await?.state.messages;
        if stored >= expected {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the stream has {stored} of {expected} messages"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(stream.info().await?.state.messages)
}

/// Appends event `e<i>` of `source`, an `order.placed`, to `stream`.
async fn append_order(
    c: &mut opsflow_proto::v1::event_log_client::EventLogClient<tonic::transport::Channel>,
    source: &str,
    stream: &str,
    i: u64,
) -> anyhow::Result<()> {
    let placed = event(
        source,
        &format!("e{i}"),
        "order.placed",
        &order_json(&format!("SO-{i}"), i),
    );
    c.append(v1::AppendRequest {
        stream: stream.into(),
        expected: None,
        events: vec![placed],
    })
    .await?;
    Ok(())
}

/// The positions (`Nats-Msg-Id`) of the first `messages` messages of `stream`, in
/// stream order; messages without one (not outbound's) left out.
async fn positions_in(stream: &jetstream::stream::Stream, messages: u64) -> anyhow::Result<Vec<u64>> {
    let mut positions = Vec::new();
    for seq in 1..=messages {
        let m = stream.get_raw_message(seq).await?;
        if let Some(id) = m.headers.get("Nats-Msg-Id") {
            positions.push(id.as_str().parse::<u64>()?);
        }
    }
    Ok(positions)
}

/// A stream that refuses a publish (full, discarding new messages) stops outbound
/// there: each new session starts from the refused position, not from an older
/// checkpoint, so what the stream holds is not sent again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_starts_again_from_a_refused_publish() -> anyhow::Result<()> {
    let (nats, nc, js) = nats_with_stream(jetstream::stream::Config {
        max_messages: 50,
        discard: jetstream::stream::DiscardPolicy::New,
        ..outbound_capture()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    let mut c = client(&opsflow.url()).await?;
    for i in 0..100 {
        append_order(&mut c, "full", "order/full", i).await?;
    }
    let mut stream = js.get_stream("OPSFLOW_LOG").await?;
    assert_eq!(stored_once(&mut stream, 50).await?, 50);
    // What outbound sends from now on (a core subscriber sees the refused ones too).
    let mut sent = nc.subscribe("opsflow.log.>").await?;
    let mut positions = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some(m)) = tokio::time::timeout_at(until, sent.next()).await {
        let id = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id"));
        positions.push(id.map_or(Ok(0), |v| v.as_str().parse::<u64>())?);
    }
    assert!(!positions.is_empty(), "outbound tries again");
    assert_eq!(positions.iter().min(), Some(&51), "{positions:?}");
    Ok(())
}

/// A `nats-server` with the stream `stream`, and a client connected to it.
async fn nats_with_stream(
    stream: jetstream::stream::Config,
) -> anyhow::Result<(NatsServer, async_nats::Client, jetstream::Context)> {
    let nats = NatsServer::start()?;
    let nc = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(nc.clone());
    js.create_stream(stream).await?;
    Ok((nats, nc, js))
}

/// [`nats_with_stream`], and `opsflow dev` on it as a process of its own (started,
/// not yet ready).
async fn opsflow_with_stream(
    stream: jetstream::stream::Config,
) -> anyhow::Result<(NatsServer, jetstream::Context, tempfile::TempDir, OpsflowProcess)> {
    let (nats, _, js) = nats_with_stream(stream).await?;
    let dir = tempfile::tempdir()?;
    let opsflow = OpsflowProcess::start_with(dir.path(), &["--nats", &nats.url()])?;
    Ok((nats, js, dir, opsflow))
}

/// One append of more events than outbound publishes in a turn of its loop: every
/// one is published, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_publishes_a_large_group_whole() -> anyhow::Result<()> {
    let (_nats, js, _dir, opsflow) = opsflow_with_stream(outbound_capture()).await?;
    wait_ready(&opsflow.url()).await?;
    let events = (0..600)
        .map(|i| {
            opsflow_e2e::event(
                "big",
                &format!("e{i}"),
                "order.placed",
                &order_json(&format!("SO-{i}"), i),
            )
        })
        .collect();
    client(&opsflow.url())
        .await?
        .append(v1::AppendRequest {
            stream: "order/big".into(),
            expected: None,
            events,
        })
        .await?;
    let mut stream = js.get_stream("OPSFLOW_LOG").await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stream.info().await?.state.messages < 600 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stream.info().await?.state.messages, 600);
    for seq in 1..=600u64 {
        let m = stream.get_raw_message(seq).await?;
        let id = m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned());
        assert_eq!(id, Some(seq.to_string()), "in position order");
    }
    Ok(())
}

/// Once outbound has caught up, its checkpoint is durable even if no append comes
/// after: a SIGKILL after a quiet spell longer than the capturing stream's duplicate
/// window re-publishes nothing (it used to re-publish everything since the last
/// group commit, and the stream kept the copies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_checkpoint_is_durable_once_caught_up() -> anyhow::Result<()> {
    let (nats, _, js) = nats_with_stream(jetstream::stream::Config {
        duplicate_window: Duration::from_secs(1),
        ..outbound_capture()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let args = ["--nats", &nats.url()];
    let mut opsflow = OpsflowProcess::start_with(dir.path(), &args)?;
    let mut c = client(&opsflow.url()).await?;
    for i in 0..3 {
        c.append(v1::AppendRequest {
            stream: "note/quiet".into(),
            expected: None,
            events: vec![event("quiet", &format!("q{i}"), "note.added", "{}")],
        })
        .await?;
    }
    let mut stream = js.get_stream("OPSFLOW_LOG").await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while stream.info().await?.state.messages < 3 {
        anyhow::ensure!(Instant::now() < deadline, "outbound did not publish the 3 events");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the checkpoint interval and the duplicate window, with no append since.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    opsflow.kill();
    let opsflow = OpsflowProcess::start_with(dir.path(), &args)?;
    wait_ready(&opsflow.url()).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        stream.info().await?.state.messages,
        3,
        "events published before the crash were published again"
    );
    drop(opsflow);
    Ok(())
}

/// Shutdown while NATS is unreachable ends (it used to wait for the connection in
/// the last flushes): ingest setup, request/reply and outbound let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_an_unreachable_nats() -> anyhow::Result<()> {
    let mut nats = NatsServer::start()?;
    let server = TestServer::start_with(|c| c.nats = Some(NatsConfig::url(nats.url()))).await?;
    wait_ready(&server.url()).await?;
    let mut client = client(&server.url()).await?;
    client
        .append(v1::AppendRequest {
            stream: "order/1".into(),
            events: vec![event("test", "1", "thing.happened", "{}")],
            expected: None,
        })
        .await?;
    nats.stop();
    let stopped = tokio::time::timeout(Duration::from_secs(60), server.shutdown()).await;
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "shutdown did not finish with NATS down: {stopped:?}"
    );
    Ok(())
}

/// Events committed while NATS is unreachable are published once it is back, even
/// across a restart of opsflow in between: the outbound checkpoint never moves past
/// a publish the server has not confirmed (it used to, for a core publish into the
/// client's buffer, and a type first seen while disconnected was taken as captured
/// by no stream). With a stream capturing `opsflow.log.>`, and without (core
/// publishes, to a subscriber).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_publishes_what_was_committed_while_nats_was_down() -> anyhow::Result<()> {
    // A core subscriber sees only what comes after it subscribes, so opsflow staying
    // up (it could publish before the subscriber is back) is tried with a stream.
    for (captured, restarted) in [(true, true), (false, true), (true, false)] {
        committed_while_nats_was_down(captured, restarted).await.map_err(|e| {
            e.context(format!(
                "captured by a stream: {captured}, opsflow restarted: {restarted}"
            ))
        })?;
    }
    Ok(())
}

async fn committed_while_nats_was_down(captured: bool, restarted: bool) -> anyhow::Result<()> {
    let mut nats = NatsServer::start()?;
    if captured {
        // A short duplicate window: a re-publish of `a` would be kept, not dropped.
        let stream_config = jetstream::stream::Config {
            duplicate_window: Duration::from_millis(100),
            ..outbound_capture()
        };
        jetstream::new(async_nats::connect(nats.url()).await?)
            .create_stream(stream_config)
            .await?;
    }
    // What reaches `opsflow.log.>`: the stream's messages, or a subscriber's.
    let published = async |nats: &NatsServer, subscriber: Option<&mut async_nats::Subscriber>, at_least: usize| {
        let mut ids = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        match subscriber {
            Some(sub) => {
                while ids.len() < at_least && Instant::now() < deadline {
                    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
                        ids.extend(m.headers.and_then(|h| h.get("Nats-Msg-Id").map(|v| v.to_string())));
                    }
                }
                // Anything published twice would come within this.
                while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
                    ids.extend(m.headers.and_then(|h| h.get("Nats-Msg-Id").map(|v| v.to_string())));
                }
            }
            None => {
                let js = jetstream::new(async_nats::connect(nats.url()).await?);
                let mut stream = js.get_stream("OPSFLOW_LOG").await?;
                while (stream.info().await?.state.messages as usize) < at_least && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                for seq in 1..=stream.info().await?.state.messages {
                    let m = stream.get_raw_message(seq).await?;
                    ids.extend(m.headers.get("Nats-Msg-Id").map(|v| v.to_string()));
                }
            }
        }
        anyhow::Ok(ids)
    };
    let subscribe = async |nats: &NatsServer| -> anyhow::Result<Option<async_nats::Subscriber>> {
        if captured {
            return Ok(None);
        }
        let nc = async_nats::connect(nats.url()).await?;
        let sub = nc.subscribe("opsflow.log.>").await?;
        nc.flush().await?;
        Ok(Some(sub))
    };
    let mut sub = subscribe(&nats).await?;
    let dir = tempfile::tempdir()?;
    let args = ["--nats", &nats.url()];
    let mut opsflow = OpsflowProcess::start_with(dir.path(), &args)?;
    wait_ready(&opsflow.url()).await?;
    let mut c = client(&opsflow.url()).await?;
    let mut append = async |id: &str, event_type: &str| {
        c.append(v1::AppendRequest {
            stream: "note/down".into(),
            expected: None,
            events: vec![event("down", id, event_type, "{}")],
        })
        .await
    };
    append("a", "note.added").await?;
    assert_eq!(published(&nats, sub.as_mut(), 1).await?, ["1"]);
    // Past the checkpoint interval: `a` is confirmed and checkpointed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // NATS goes away; a new type and a known one are committed; opsflow stops (or
    // stays up).
    nats.stop();
    append("b", "note.moved").await?;
    append("c", "note.added").await?;
    append("d", "note.moved").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    if restarted {
        let started = Instant::now();
        assert!(
            opsflow.terminate(Duration::from_secs(30))?,
            "opsflow did not stop cleanly"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "shutdown waited {:?} for NATS",
            started.elapsed()
        );
    }
    // Both come back: every event is published, in position order, `a` once.
    nats.restart()?;
    let mut sub = subscribe(&nats).await?;
    if restarted {
        opsflow = OpsflowProcess::start_with(dir.path(), &args)?;
        wait_ready(&opsflow.url()).await?;
    }
    let expected: &[&str] = if captured {
        &["1", "2", "3", "4"]
    } else {
        &["2", "3", "4"]
    };
    let ids = published(&nats, sub.as_mut(), expected.len()).await?;
    if restarted {
        assert_eq!(
            ids, expected,
            "an event committed while NATS was down is missing, or published twice"
        );
    } else {
        // `a` was confirmed and checkpointed before NATS went away: it is never
        // sent again. What was committed while NATS was down may come twice (the
        // session that lost its connection may have sent it before the next one
        // starts again from the checkpoint; a stream within its duplicate window
        // keeps one), but in position order.
        assert_eq!(
            ids.iter().filter(|id| *id == "1").count(),
            1,
            "`a` published again: {ids:?}"
        );
        let mut first: Vec<&str> = Vec::new();
        for id in &ids {
            if !first.contains(&id.as_str()) {
                first.push(id);
            }
        }
        assert_eq!(
            first, expected,
            "an event committed while NATS was down is missing, or out of order: {ids:?}"
        );
    }
    drop(opsflow);
    Ok(())
}

/// Publishes one message with `headers` (a raw header block, `NATS/1.0` first) as a
/// raw client can, which async-nats could not: its headers may be malformed.
async fn publish_raw(nats: &NatsServer, subject: &str, headers: &[u8], payload: &[u8]) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", nats.port())).await?;
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    stream.read_line(&mut line).await?; // INFO
    let mut out = Vec::new();
    out.extend_from_slice(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n");
    out.extend_from_slice(format!("HPUB {subject} {} {}\r\n", headers.len(), headers.len() + payload.len()).as_bytes());
    out.extend_from_slice(headers);
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\nPING\r\n");
    stream.get_mut().write_all(&out).await?;
    loop {
        line.clear();
        anyhow::ensure!(
            stream.read_line(&mut line).await? > 0,
            "nats-server closed the raw connection"
        );
        anyhow::ensure!(!line.starts_with("-ERR"), "nats-server refused the raw publish: {line}");
        if line.starts_with("PONG") {
            return Ok(());
        }
    }
}

/// A message whose NATS headers async-nats cannot parse drops the connection it is
/// delivered on: it is read from the stream by sequence, dead-lettered with its raw
/// header block, deleted from the stream (the only way past it), and ingest goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_headers_no_client_reads_is_dead_lettered_and_ingest_goes_on() -> anyhow::Result<()> {
    poisoned_message_is_taken_out(&[]).await
}

/// The same with a consumer that acknowledges each message (a work queue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_queue_takes_out_a_message_whose_headers_no_client_reads() -> anyhow::Result<()> {
    poisoned_message_is_taken_out(&[("OPSFLOW_NATS__INGEST__RETENTION", "workqueue")]).await
}

async fn poisoned_message_is_taken_out(env: &[(&str, &str)]) -> anyhow::Result<()> {
    use base64::Engine;
    let WithDeadLetters {
        nats,
        _dir,
        opsflow,
        client: _client,
        js,
        mut dlq,
    } = with_dead_letters(env).await?;
    let raw_headers = b"NATS/1.0\r\nX-Bad: \xff\xfe\r\n\r\n";
    let payload =
        br#"{"specversion":"1.0","id":"poison","source":"/raw","type":"order.placed","data":{"order_id":"P-1"}}"#;
    publish_raw(&nats, "ops.events.order.placed", raw_headers, payload).await?;
    publish_all(&js, items(&["after"], 3, false), 3).await?;

    let dead = next_within(&mut dlq, 30).await?;
    assert_eq!(dead.subject.as_str(), "opsflow.dlq.decode");
    assert_eq!(&dead.payload[..], &payload[..]);
    let original =
        base64::engine::general_purpose::STANDARD.decode(header_of(&dead, "Opsflow-Original-Headers-Base64"))?;
    assert_eq!(original, raw_headers);
    let error = header_of(&dead, "Opsflow-Error");
    assert!(error.contains("not UTF-8"), "{error}");
    // Named by where it was kept: the stream, its sequence and its stored time (Unix
    // nanoseconds, as a delivery of it would say), here read by sequence.
    let id = header_of(&dead, "Nats-Msg-Id");
    let stored: i128 = id
        .strip_prefix("opsflow-dlq:OPS_EVENTS:1:")
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("dead letter id {id:?}"))?;
    let now = jiff::Timestamp::now().as_nanosecond();
    assert!(
        (now - 60_000_000_000..=now).contains(&stored),
        "dead letter id {id:?}: not the stored time"
    );
    let events = settled_head(&opsflow.url(), 3, Duration::from_secs(30)).await?;
    assert_exactly_once(&events, &["after"], 3, true);
    // Gone from the stream, so never delivered again.
    let stream = js.get_stream("OPS_EVENTS").await?;
    assert!(
        stream.get_raw_message(1).await.is_err(),
        "the poison message is deleted"
    );
    Ok(())
}

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

/// An event whose outbound CloudEvent does not fit in a NATS message goes out
/// without its data (saying so), and the events after it follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_publishes_an_event_too_large_for_nats_without_its_data() -> anyhow::Result<()> {
    outbound_too_large("max_payload: 8192", None).await
}

/// The same against a capturing stream's own `max_msg_size`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_publishes_an_event_too_large_for_its_stream_without_its_data() -> anyhow::Result<()> {
    outbound_too_large("", Some(8192)).await
}

async fn outbound_too_large(nats_config: &str, stream_limit: Option<i32>) -> anyhow::Result<()> {
    let nats = NatsServer::start_with_config(nats_config)?;
    let nc = async_nats::connect(nats.url()).await?;
    if let Some(limit) = stream_limit {
        jetstream::new(nc.clone())
            .create_stream(jetstream::stream::Config {
                max_message_size: limit,
                ..outbound_capture()
            })
            .await?;
    }
    let mut out = nc.subscribe("opsflow.log.>").await?;
    nc.flush().await?;
    let server = TestServer::start_with(|c| c.nats = Some(NatsConfig::url(nats.url()))).await?;
    wait_ready(&server.url()).await?;
    let mut c = client(&server.url()).await?;
    let big = json!({ "order_id": "BIG-1", "note": "x".repeat(20_000) }).to_string();
    for (id, data) in [("big", big.as_str()), ("small", r#"{"order_id":"S-1"}"#)] {
        c.append(v1::AppendRequest {
            stream: format!("order/{id}"),
            expected: None,
            events: vec![opsflow_e2e::event("out", id, "custom.note", data)],
        })
        .await?;
    }
    let got = [next_within(&mut out, 20).await?, next_within(&mut out, 20).await?];
    let omitted = header_of(&got[0], "Opsflow-Payload-Omitted");
    assert!(omitted.contains("read position 1 from the log"), "{omitted}");
    let first: serde_json::Value = serde_json::from_slice(&got[0].payload)?;
    assert_eq!((first["id"].as_str(), first.get("data")), (Some("big"), None));
    let second: serde_json::Value = serde_json::from_slice(&got[1].payload)?;
    assert_eq!(second["data"]["order_id"], "S-1");
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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready: serde_json::Value = match reqwest::get(format!("{}/readyz", opsflow.url())).await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        let requests = ready["nats"]["requests"].as_str().unwrap_or_default().to_owned();
        if requests.contains("stream CAPTURES_REQUESTS captures the request subject opsflow.api.append") {
            assert_eq!(ready["ready"], false, "{ready}");
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "not reported: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A server that stops answering (frozen here; a connection the network dropped
/// without a word looks the same) is noticed after a few unanswered pings
/// (`ping_interval_secs`): /readyz says disconnected, and ready again once it
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_is_noticed_within_a_few_pings() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[("OPSFLOW_NATS__PING_INTERVAL_SECS", "1")]).await?;
    let pid = nats.pid().ok_or_else(|| anyhow::anyhow!("nats-server has no pid"))?;
    let signal = |name: &str| -> anyhow::Result<()> {
        let sent = std::process::Command::new("kill")
            .args([name, &pid.to_string()])
            .status()?;
        anyhow::ensure!(sent.success(), "kill {name} {pid}: {sent}");
        Ok(())
    };
    signal("-STOP")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let noticed = loop {
        let r = reqwest::get(format!("{}/readyz", opsflow.url())).await?;
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await?;
        if body["nats"]["status"] == "disconnected" {
            break (status, body);
        }
        if Instant::now() > deadline {
            signal("-CONT")?;
            anyhow::bail!("a frozen server still looks connected after 20 s: {body}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    signal("-CONT")?;
    assert_eq!(noticed.0, 503, "{}", noticed.1);
    wait_ready(&opsflow.url()).await?;
    Ok(())
}

/// A header value holding a bare CR stops async-nats's connection task (it panics
/// there) while the client still reads as connected. A request carrying one stops
/// the request connection: /readyz says so, rather than look ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_nats_client_is_reported_not_ready() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    publish_raw(&nats, "opsflow.api.append", b"NATS/1.0\r\nA: x\ry\r\n\r\n", b"{}").await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready: serde_json::Value = reqwest::get(format!("{}/readyz", opsflow.url())).await?.json().await?;
        let monitor = &ready["tasks"]["nats-monitor"];
        if monitor["status"] == "failed" {
            let reason = monitor["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("connection opsflow-requests stopped"), "{ready}");
            assert_eq!(ready["ready"], false, "{ready}");
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "a stopped client not reported: {ready}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// After NATS comes back, opsflow is not ready until ingest consumes on the new
/// connection: between the reconnect and ingest noticing it (up to a second), the
/// old session's readiness read ready, then not ready while it started again
/// (found in a fault soak: 200, 503 for half a second, 200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_on_a_new_connection_until_ingest_has_started_on_it() -> anyhow::Result<()> {
    let mut nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    let interruptions = "opsflow_nats_ingest_interruptions_total";
    let before = counter(&opsflow.url(), interruptions).await?;
    nats.restart()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen_down = false;
    loop {
        let r = reqwest::get(format!("{}/readyz", opsflow.url())).await?;
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await?;
        seen_down |= body["nats"]["status"] == "disconnected";
        if status == 200 && seen_down {
            // Ready again only once ingest has ended the old session.
            let after = counter(&opsflow.url(), interruptions).await?;
            assert!(
                after > before,
                "ready on the new connection before ingest started on it: {body}"
            );
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "not ready again within 30 s: {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
