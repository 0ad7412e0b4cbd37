//! `nats`: JetStream ingest end to end (publish → durable in the log → acked) next
//! to the raw JetStream acked-publish rate on the same `nats-server`, for the
//! default sync setting and for `sync_interval: always`.
//!
//! A third run per round measures the consume-only ceiling: the same publisher and
//! a JetStream pull consumer (same client library, pulls and acknowledgement per
//! batch as opsflow's) that does nothing with the messages. On a machine where the
//! publisher, `nats-server` and the consumer share the cores, no consumer can ingest
//! faster than this; the report gives opsflow's rate against it too.
//!
//! Under default sync a fourth run per round ingests with outbound off, so that
//! ingest alone can be told from ingest beside outbound (the default, which
//! publishes every recorded event back to NATS on the same cores).
//!
//! Each row also gives the CPU time per message of `nats-server` and of this
//! process (the publisher, plus the consumer or opsflow): with the cores shared, a
//! rate is bounded by the cores over the sum, and opsflow's own share is the ingest
//! run's process CPU less the raw run's (the publisher alone).

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

/// Both sync settings: (label, extra nats-server config, share of the messages,
/// whether ingest also runs with outbound off). `sync_interval: always` runs at a
/// few thousand messages a second, so it publishes a tenth of the messages.
const SETTINGS: [(&str, &str, u64, bool); 2] = [
    ("default sync", "", 1, true),
    (
        "sync_interval: always",
        "jetstream { sync_interval: always }",
        10,
        false,
    ),
];

/// Raw, consume-only and ingest runs alternate this many times per setting, and the
/// medians are compared: this VM's raw publish rate alone varies up to 2× between
/// runs.
const ROUNDS: usize = 3;

/// The consume-only consumer's acknowledgement batch and pull request: opsflow's
/// (`[nats.ingest] batch`, 1,000 by default, and eight batches per pull).
fn ceiling_batches() -> (usize, usize) {
    let batch = NatsConfig::default().ingest.batch;
    (batch, batch * 8)
}

pub async fn run(messages: u64) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (label, extra, divisor, alone) in SETTINGS {
        let messages = (messages / divisor).max(1000);
        let (mut raw, mut ceiling, mut ingested, mut ingested_alone) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 1..=ROUNDS {
            eprintln!("nats, {label}, round {round} of {ROUNDS}");
            raw.push(raw_publish(extra, messages).await?);
            ceiling.push(consume_only(extra, messages).await?);
            ingested.push(ingest(extra, messages, Outbound::On).await?);
            if alone {
                ingested_alone.push(ingest(extra, messages, Outbound::Off).await?);
            }
        }
        let cpu = [&raw, &ceiling, &ingested].map(|runs| Cpu::median(runs));
        let (raw, raw_range) = median(raw.iter().map(|r| r.rate).collect());
        let (ceiling, ceiling_range) = median(ceiling.iter().map(|r| r.rate).collect());
        let (ingest, ingest_range) = median(ingested.iter().map(|r| r.rate).collect());
        let ratio = ingest / raw;
        let bound = cpu[2].bound();
        rows.push(Row::new(
            format!("nats raw JetStream acked publish, {label}"),
            format!(
                "{} msgs/s, median of {ROUNDS} ({raw_range}; {} messages); CPU per message: {}",
                count(raw),
                count(messages as f64),
                cpu[0].text("publisher")
            ),
        ));
        rows.push(Row::new(
            format!("nats consume-only ceiling (publish → pull → acked, nothing else), {label}"),
            format!(
                "{} msgs/s = {:.2}× raw, median of {ROUNDS} ({ceiling_range}); CPU per message: {}",
                count(ceiling),
                ceiling / raw,
                cpu[1].text("publisher and consumer")
            ),
        ));
        rows.push(
            Row::new(
                format!("nats ingest publish → durable → acked, {label}"),
                format!(
                    "{} events/s = {ratio:.2}× raw, {:.2}× the consume-only ceiling, median of {ROUNDS} \
                     ({ingest_range}); CPU per event: {}, of which opsflow ≈ {:.1} µs (less the raw run's publisher); \
                     with every core busy, at most {} events/s = {:.2}× raw",
                    count(ingest),
                    ingest / ceiling,
                    cpu[2].text("publisher and opsflow"),
                    cpu[2].process - cpu[0].process,
                    count(bound),
                    bound / raw
                ),
            )
            .target("≥ 0.5× raw", ratio >= 0.5),
        );
        if !ingested_alone.is_empty() {
            let alone_cpu = Cpu::median(&ingested_alone);
            let (alone, alone_range) = median(ingested_alone.iter().map(|r| r.rate).collect());
            rows.push(Row::new(
                format!("nats ingest with outbound off (ingest alone, not the default), {label}"),
                format!(
                    "{} events/s = {:.2}× raw, {:.2}× the consume-only ceiling, median of {ROUNDS} ({alone_range}); \
                     CPU per event: {}, of which opsflow ≈ {:.1} µs",
                    count(alone),
                    alone / raw,
                    alone / ceiling,
                    alone_cpu.text("publisher and opsflow"),
                    alone_cpu.process - cpu[0].process,
                ),
            ));
        }
    }
    Ok(rows)
}

/// One run: its rate and the CPU it took per message.
struct Run {
    rate: f64,
    cpu: Cpu,
}

/// CPU microseconds per message, from `/proc/<pid>/stat` (user and system time):
/// `nats-server`'s, and this process's (the publisher, and the consumer or
/// opsflow where the run has one). On this 2-core machine the three share the
/// cores, so what the consumer side spends is taken from what could publish.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    nats: f64,
    process: f64,
}

impl Cpu {
    /// Componentwise medians of the runs.
    fn median(runs: &[Run]) -> Cpu {
        let of = |part: fn(&Cpu) -> f64| median(runs.iter().map(|r| part(&r.cpu)).collect()).0;
        Cpu {
            nats: of(|c| c.nats),
            process: of(|c| c.process),
        }
    }

    /// The most messages a second the machine's cores could carry at this CPU per
    /// message, were they never idle: with the publisher, `nats-server` and the
    /// consumer sharing them, no scheduling gets a run past it.
    fn bound(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let per_message = self.nats + self.process;
        if per_message > 0.0 {
            cores * 1e6 / per_message
        } else {
            0.0
        }
    }

    fn text(&self, process: &str) -> String {
        format!(
            "nats-server {:.1} µs, bench process ({process}) {:.1} µs",
            self.nats, self.process
        )
    }
}

/// CPU time a run took, from when it was made to [`CpuClock::per_message`].
struct CpuClock {
    nats: Option<u32>,
    start: (Duration, Duration),
}

impl CpuClock {
    fn start(nats: &NatsServer) -> CpuClock {
        let nats = nats.pid();
        CpuClock {
            nats,
            start: (cpu_time(nats), cpu_time(None)),
        }
    }

    fn per_message(&self, messages: u64) -> Cpu {
        let micros = |now: Duration, then: Duration| now.saturating_sub(then).as_secs_f64() * 1e6 / messages as f64;
        Cpu {
            nats: micros(cpu_time(self.nats), self.start.0),
            process: micros(cpu_time(None), self.start.1),
        }
    }
}

/// User and system CPU time of process `pid` (this one for `None`); zero where
/// `/proc` cannot tell.
fn cpu_time(pid: Option<u32>) -> Duration {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let Ok(stat) = std::fs::read_to_string(path) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) in parentheses; utime
    // and stime are fields 14 and 15, in USER_HZ (100 on Linux) ticks.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((tick(11) + tick(12)) * 10)
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
    let parsed: PubAck = serde_json::from_slice(&ack.payload).with_context(|| {
        format!(
            "not a publish acknowledgement: {}",
            String::from_utf8_lossy(&ack.payload)
        )
    })?;
    anyhow::ensure!(
        parsed.error.is_none() && parsed.seq.is_some(),
        "publish refused: {}",
        String::from_utf8_lossy(&ack.payload)
    );
    Ok(())
}

/// What a producer reads of a JetStream publish acknowledgement
/// (`{"stream":…,"seq":…}` or `{"error":{…}}`), parsed into a struct as a producer in
/// any language does, not into a generic JSON value.
#[derive(serde::Deserialize)]
struct PubAck {
    seq: Option<u64>,
    error: Option<serde::de::IgnoredAny>,
}

/// A file-storage stream over `<subjects>.>` on a new connection to `nats`.
async fn with_stream(
    nats: &NatsServer,
    name: &str,
    subjects: &str,
) -> anyhow::Result<(async_nats::Client, jetstream::Context)> {
    let client = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(client.clone());
    js.create_stream(jetstream::stream::Config {
        name: name.into(),
        subjects: vec![format!("{subjects}.>")],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    Ok((client, js))
}

async fn raw_publish(extra: &str, messages: u64) -> anyhow::Result<Run> {
    let nats = NatsServer::start_with_config(extra)?;
    let (client, _) = with_stream(&nats, "BENCH_RAW", "bench.raw").await?;
    let prepared = prepared(messages);
    let (started, clock) = (Instant::now(), CpuClock::start(&nats));
    publish(&client, "bench.raw.order.placed", prepared).await?;
    Ok(Run {
        rate: messages as f64 / started.elapsed().as_secs_f64(),
        cpu: clock.per_message(messages),
    })
}

/// The consume-only ceiling: the messages published as in the raw run while a
/// durable pull consumer on its own connection takes them in batches (whatever has
/// arrived, at most opsflow's batch) and acknowledges each batch's last message
/// (`AckPolicy::All`), doing nothing else with them. Returns when all are taken and
/// acknowledged.
async fn consume_only(extra: &str, messages: u64) -> anyhow::Result<Run> {
    use futures::{FutureExt, StreamExt};
    let nats = NatsServer::start_with_config(extra)?;
    let (client, js) = with_stream(&nats, "BENCH_CEILING", "bench.ceiling").await?;
    let (most, pull) = ceiling_batches();
    let consumer_client = async_nats::connect(nats.url()).await?;
    let consumer: jetstream::consumer::PullConsumer = jetstream::new(consumer_client)
        .get_stream("BENCH_CEILING")
        .await?
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("ceiling".into()),
            ack_policy: jetstream::consumer::AckPolicy::All,
            max_ack_pending: i64::try_from(pull * 3)?,
            ..Default::default()
        })
        .await?;
    let mut deliveries = consumer
        .stream()
        .max_messages_per_batch(pull)
        .max_bytes_per_batch(64 << 20)
        .messages()
        .await?;
    let consuming = tokio::spawn(async move {
        let mut taken = 0u64;
        while taken < messages {
            let next = tokio::time::timeout(Duration::from_secs(30), deliveries.next())
                .await
                .context("no delivery within 30 s")?
                .context("the consumer's message stream ended")?;
            let mut last = next.map_err(|e| anyhow::anyhow!("delivery: {e}"))?;
            taken += 1;
            let mut batch = 1;
            while batch < most {
                match deliveries.next().now_or_never() {
                    Some(Some(Ok(m))) => last = m,
                    _ => break,
                }
                batch += 1;
                taken += 1;
            }
            last.ack().await.map_err(|e| anyhow::anyhow!("acknowledging: {e}"))?;
        }
        anyhow::Ok(())
    });
    let prepared = prepared(messages);
    let (started, clock) = (Instant::now(), CpuClock::start(&nats));
    publish(&client, "bench.ceiling.order.placed", prepared).await?;
    consuming.await??;
    settled(&js, "BENCH_CEILING", "ceiling").await?;
    Ok(Run {
        rate: messages as f64 / started.elapsed().as_secs_f64(),
        cpu: clock.per_message(messages),
    })
}

/// Whether opsflow publishes what it records back to NATS during an ingest run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outbound {
    On,
    Off,
}

async fn ingest(extra: &str, messages: u64, outbound: Outbound) -> anyhow::Result<Run> {
    let nats = NatsServer::start_with_config(extra)?;
    let dir = tempfile::tempdir()?;
    let mut nats_config = NatsConfig::url(nats.url());
    nats_config.outbound.enabled = outbound == Outbound::On;
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: ([127, 0, 0, 1], 0).into(),
        nats: Some(nats_config),
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
    let (started, clock) = (Instant::now(), CpuClock::start(&nats));
    publish(&client, "ops.events.order.placed", prepared).await?;
    // Durable in the log, and every message acknowledged.
    let mut head = server.log().watch_head();
    while *head.borrow_and_update() < messages {
        tokio::time::timeout(Duration::from_secs(60), head.changed())
            .await
            .context("ingest stalled")??;
    }
    settled(&js, "OPS_EVENTS", "opsflow-ingest").await?;
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    let cpu = clock.per_message(messages);
    anyhow::ensure!(
        server.log().head() == messages,
        "log has {} events, expected {messages}",
        server.log().head()
    );
    server.shutdown().await?;
    Ok(Run { rate, cpu })
}

/// Waits (30 s at most) until the server has every message of `stream` delivered to
/// `consumer` and acknowledged.
async fn settled(js: &jetstream::Context, stream: &str, consumer: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = js.get_stream(stream).await?.consumer_info(consumer).await?;
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "acks did not settle");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn consumer_exists(js: &jetstream::Context) -> bool {
    match js.get_stream("OPS_EVENTS").await {
        Ok(s) => s.consumer_info("opsflow-ingest").await.is_ok(),
        Err(_) => false,
    }
}
