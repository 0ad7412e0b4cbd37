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

mod consumers;
mod dead_letters;
mod ingest;
mod nodes;
mod outbound;
mod readiness;
mod requests;
mod streams;

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

/// opsflow's ingest consumer.
async fn ingest_consumer(js: &jetstream::Context) -> anyhow::Result<jetstream::consumer::Info> {
    Ok(js
        .get_stream("OPS_EVENTS")
        .await?
        .consumer_info("opsflow-ingest")
        .await?
        .clone())
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

/// The value of the counter `series` (name and labels, as /metrics writes them).
async fn counter(url: &str, series: &str) -> anyhow::Result<u64> {
    let metrics = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    let value = metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .ok_or_else(|| anyhow::anyhow!("no {series} in:\n{metrics}"))?;
    Ok(value.trim().parse()?)
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

/// An in-process opsflow (ready) on a new nats-server, and a client subscribed to
/// the dead letters.
async fn in_process_with_dead_letters()
-> anyhow::Result<(NatsServer, TestServer, async_nats::Client, async_nats::Subscriber)> {
    let nats = NatsServer::start()?;
    let server = TestServer::start_with(|c| c.nats = Some(NatsConfig::url(nats.url()))).await?;
    wait_ready(&server.url()).await?;
    let nc = async_nats::connect(nats.url()).await?;
    let dlq = nc.subscribe("opsflow.dlq.>").await?;
    nc.flush().await?;
    Ok((nats, server, nc, dlq))
}

/// Waits (30 s at most) for /readyz to say `said` of the NATS task `task`, not ready.
async fn not_ready_saying(opsflow: &OpsflowProcess, task: &str, said: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready: serde_json::Value = match reqwest::get(format!("{}/readyz", opsflow.url())).await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        if ready["nats"][task].as_str().is_some_and(|s| s.contains(said)) {
            anyhow::ensure!(ready["ready"] == false, "{ready}");
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "/readyz does not say {said:?}: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
