//! `nats`: JetStream ingest end to end (publish → durable in the log → acked) next
//! to the raw JetStream acked-publish rate on the same `nats-server`, for the
//! default sync setting and for `sync_interval: always`.

use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::HeaderMap;
use async_nats::jetstream;
use opsflow_server::{Config, NatsConfig, Server};
use opsflow_testkit::NatsServer;

use crate::event;
use crate::report::{Row, count};

/// Publishes in flight at once, for both the raw and the ingest runs.
const WINDOW: usize = 2048;

/// Both sync settings: (label, extra nats-server config, share of the messages).
/// `sync_interval: always` runs at a few thousand messages a second, so it
/// publishes a tenth of the messages.
const SETTINGS: [(&str, &str, u64); 2] = [
    ("default sync", "", 1),
    ("sync_interval: always", "jetstream { sync_interval: always }", 10),
];

/// Raw and ingest runs alternate this many times per setting, and the medians are
/// compared: this VM's raw publish rate alone varies up to 2× between runs.
const ROUNDS: usize = 3;

pub async fn run(messages: u64) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (label, extra, divisor) in SETTINGS {
        let messages = (messages / divisor).max(1000);
        let (mut raw, mut ingested) = (Vec::new(), Vec::new());
        for round in 1..=ROUNDS {
            eprintln!("nats, {label}, round {round} of {ROUNDS}");
            raw.push(raw_publish(extra, messages).await?);
            ingested.push(ingest(extra, messages).await?);
        }
        let (raw, raw_range) = median(raw);
        let (ingest, ingest_range) = median(ingested);
        let ratio = ingest / raw;
        rows.push(Row::new(
            format!("nats raw JetStream acked publish, {label}"),
            format!(
                "{} msgs/s, median of {ROUNDS} ({raw_range}; {} messages)",
                count(raw),
                count(messages as f64)
            ),
        ));
        rows.push(
            Row::new(
                format!("nats ingest publish → durable → acked, {label}"),
                format!(
                    "{} events/s = {ratio:.2}× raw, median of {ROUNDS} ({ingest_range})",
                    count(ingest)
                ),
            )
            .target("≥ 0.5× raw", ratio >= 0.5),
        );
    }
    Ok(rows)
}

/// The median of the runs and their range as text.
fn median(mut runs: Vec<f64>) -> (f64, String) {
    runs.sort_by(f64::total_cmp);
    let (low, high) = (
        runs.first().copied().unwrap_or(0.0),
        runs.last().copied().unwrap_or(0.0),
    );
    (
        runs.get(runs.len() / 2).copied().unwrap_or(0.0),
        format!("runs {}–{}", count(low), count(high)),
    )
}

/// A structured-mode CloudEvent, written directly (a producer that parsed and
/// re-serialized JSON per message would spend the CPU this 2-core machine shares
/// with nats-server and opsflow).
fn structured(seq: u64) -> (HeaderMap, bytes::Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", "application/cloudevents+json");
    let data = event::json_data(seq);
    let mut body = Vec::with_capacity(data.len() + 160);
    body.extend_from_slice(
        format!(
            r#"{{"specversion":"1.0","id":"n-{seq}","source":"opsflow-bench/nats","type":"{}","subject":"bench/s-{}","data":"#,
            event::EVENT_TYPE,
            seq % 100
        )
        .as_bytes(),
    );
    body.extend_from_slice(&data);
    body.push(b'}');
    (headers, body.into())
}

/// The messages of one run, built before its clock starts: a producer on another
/// machine would not spend this machine's CPU building them.
fn prepared(messages: u64) -> Vec<(HeaderMap, bytes::Bytes)> {
    (0..messages).map(structured).collect()
}

/// Publishes the messages as JetStream publishes with `WINDOW` acknowledgements
/// outstanding; returns when every one is acknowledged. Each publish names one reply
/// subject, and the stream's acknowledgements are counted there (as a pipelining
/// producer in any language does), rather than through a future per message.
async fn publish(
    client: &async_nats::Client,
    subject: &str,
    messages: Vec<(HeaderMap, bytes::Bytes)>,
) -> anyhow::Result<()> {
    let reply = async_nats::Subject::from(client.new_inbox());
    let mut acks = client.subscribe(reply.clone()).await?;
    client.flush().await?;
    let subject = async_nats::Subject::from(subject);
    let total = messages.len();
    let mut acked = 0;
    for (sent, (headers, body)) in messages.into_iter().enumerate() {
        while sent - acked >= WINDOW {
            next_ack(&mut acks).await?;
            acked += 1;
        }
        client
            .publish_with_reply_and_headers(subject.clone(), reply.clone(), headers, body)
            .await?;
    }
    while acked < total {
        next_ack(&mut acks).await?;
        acked += 1;
    }
    Ok(())
}

/// The next JetStream publish acknowledgement: an error if it is one, or if none
/// comes within 30 s.
async fn next_ack(acks: &mut async_nats::Subscriber) -> anyhow::Result<()> {
    use futures::StreamExt;
    let ack = tokio::time::timeout(Duration::from_secs(30), acks.next())
        .await
        .context("publish not acknowledged within 30 s")?
        .context("acknowledgement subscription closed")?;
    let parsed: serde_json::Value = serde_json::from_slice(&ack.payload).with_context(|| {
        format!(
            "not a publish acknowledgement: {}",
            String::from_utf8_lossy(&ack.payload)
        )
    })?;
    anyhow::ensure!(
        parsed.get("error").is_none() && parsed.get("seq").is_some_and(serde_json::Value::is_u64),
        "publish refused: {}",
        String::from_utf8_lossy(&ack.payload)
    );
    Ok(())
}

async fn raw_publish(extra: &str, messages: u64) -> anyhow::Result<f64> {
    let nats = NatsServer::start_with_config(extra)?;
    let client = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(client.clone());
    js.create_stream(jetstream::stream::Config {
        name: "BENCH_RAW".into(),
        subjects: vec!["bench.raw.>".into()],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let prepared = prepared(messages);
    let started = Instant::now();
    publish(&client, "bench.raw.order.placed", prepared).await?;
    Ok(messages as f64 / started.elapsed().as_secs_f64())
}

async fn ingest(extra: &str, messages: u64) -> anyhow::Result<f64> {
    let nats = NatsServer::start_with_config(extra)?;
    let dir = tempfile::tempdir()?;
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: ([127, 0, 0, 1], 0).into(),
        nats: Some(NatsConfig::url(nats.url())),
        ..Config::default()
    };
    let server = Server::start(&config).await?;
    let client = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(client.clone());
    // Wait for opsflow's stream and consumer.
    let deadline = Instant::now() + Duration::from_secs(30);
    while js.get_stream("OPS_EVENTS").await.is_err() || !consumer_exists(&js).await {
        anyhow::ensure!(Instant::now() < deadline, "opsflow did not set up its consumer in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let prepared = prepared(messages);
    let started = Instant::now();
    publish(&client, "ops.events.order.placed", prepared).await?;
    // Durable in the log, and every message acknowledged.
    let mut head = server.log().watch_head();
    while *head.borrow_and_update() < messages {
        tokio::time::timeout(Duration::from_secs(60), head.changed())
            .await
            .context("ingest stalled")??;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stream = js.get_stream("OPS_EVENTS").await?;
        let info = stream.consumer_info("opsflow-ingest").await?;
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "acks did not settle");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        server.log().head() == messages,
        "log has {} events, expected {messages}",
        server.log().head()
    );
    server.shutdown().await?;
    Ok(rate)
}

async fn consumer_exists(js: &jetstream::Context) -> bool {
    match js.get_stream("OPS_EVENTS").await {
        Ok(s) => s.consumer_info("opsflow-ingest").await.is_ok(),
        Err(_) => false,
    }
}
