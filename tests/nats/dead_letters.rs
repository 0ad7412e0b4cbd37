//! Bad messages: dead-lettered with a reason (too large, undecodable headers
//! included), and ingest goes on.

use super::*;

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
    let (_nats, server, nc, mut dlq) = in_process_with_dead_letters().await?;
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

/// A message whose NATS headers async-nats cannot parse drops the connection it is
/// delivered on: it is read from the stream by sequence, dead-lettered with its raw
/// header block, deleted from the stream (the only way past it), and ingest goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_headers_no_client_reads_is_dead_lettered_and_ingest_goes_on() -> anyhow::Result<()> {
    poisoned_message_is_taken_out(&[], NOT_UTF8).await
}

/// A header value holding a bare CR stops async-nats's connection task (it panics
/// there; the client still reads as connected): the transport starts again on new
/// connections, as a restart of opsflow would, and the message is dead-lettered
/// (it stopped ingest until opsflow was restarted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_header_stops_the_client_is_dead_lettered_without_a_restart() -> anyhow::Result<()> {
    poisoned_message_is_taken_out(&[], (b"NATS/1.0\r\nX-Bad: a\rb\r\n\r\n", "line break")).await
}

/// A header block async-nats cannot read (a value not UTF-8), and the error it gets.
const NOT_UTF8: (&[u8], &str) = (b"NATS/1.0\r\nX-Bad: \xff\xfe\r\n\r\n", "not UTF-8");

/// The same with a consumer that acknowledges each message (a work queue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_queue_takes_out_a_message_whose_headers_no_client_reads() -> anyhow::Result<()> {
    poisoned_message_is_taken_out(&[("OPSFLOW_NATS__INGEST__RETENTION", "workqueue")], NOT_UTF8).await
}

async fn poisoned_message_is_taken_out(env: &[(&str, &str)], (raw_headers, why): (&[u8], &str)) -> anyhow::Result<()> {
    use base64::Engine;
    let WithDeadLetters {
        nats,
        _dir,
        opsflow,
        client: _client,
        js,
        mut dlq,
    } = with_dead_letters(env).await?;
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
    assert!(error.contains(why), "{error}");
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
    // A message that stops the client makes it start again once, not again and again.
    let restarts = counter(&opsflow.url(), "opsflow_nats_transport_restarts_total").await?;
    assert_eq!(restarts, u64::from(why == "line break"), "{why}");
    Ok(())
}
