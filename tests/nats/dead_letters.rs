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

/// Bad messages whose dead letter would not fit in one NATS message go in parts
/// whose payloads joined are the original message (its header block, then its
/// payload), and ingest moves on: one close to NATS's largest, one whose headers
/// are close to JetStream's 64 KiB (they stopped ingest: the dead letter's publish
/// was refused, again and again), and one quoting a 70,000-byte name in its error
/// (cut in `Opsflow-Error`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_too_large_for_one_nats_message_goes_in_parts() -> anyhow::Result<()> {
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
    let mut large_headers = headers.clone();
    large_headers.insert("X-Big", "b".repeat(65_400).as_str());
    let old = bytes::Bytes::from_static(br#"{"specversion":"0.3"}"#);
    let long_name = format!(
        r#"{{"specversion":"1.0","id":"n","source":"s","type":"a.b","subject":"s/1","{}":"x"}}"#,
        "A".repeat(70_000)
    );
    let good = items(&["after"], 1, false).remove(0);
    let bad = [
        (
            "ops.events.x".to_owned(),
            headers.clone(),
            bytes::Bytes::from(big.clone()),
        ),
        ("ops.events.x".to_owned(), large_headers.clone(), old.clone()),
        ("ops.events.x".to_owned(), headers.clone(), long_name.clone().into()),
    ];
    publish_all(&js, bad.into_iter().chain([good]).collect(), 1).await?;
    // Each dead letter's parts, in order.
    let mut letters: Vec<Vec<async_nats::Message>> = Vec::new();
    while letters.len() < 3 || letters.last().is_some_and(|l| part(l.last()).0 < part(l.last()).1) {
        let dead = next_within(&mut dlq, 20).await?;
        assert_eq!(dead.subject.as_str(), "opsflow.dlq.decode");
        match letters.last_mut() {
            Some(open) if part(open.last()).0 < part(open.last()).1 => open.push(dead),
            _ => letters.push(vec![dead]),
        }
    }
    // A dead letter in parts as (its original's header lines, sorted, and payload).
    let original = |letter: &[async_nats::Message]| -> anyhow::Result<(Vec<String>, Vec<u8>)> {
        let joined: Vec<u8> = letter.iter().flat_map(|m| m.payload.to_vec()).collect();
        let size: usize = header_of(&letter[0], "Opsflow-Original-Headers-Size").parse()?;
        let block = std::str::from_utf8(&joined[..size])?;
        anyhow::ensure!(
            block.starts_with("NATS/1.0\r\n") && block.ends_with("\r\n\r\n"),
            "{block:.60}"
        );
        let mut lines: Vec<String> = block
            .split("\r\n")
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        lines.sort();
        Ok((lines, joined[size..].to_vec()))
    };
    let lines = |headers: &HeaderMap| -> Vec<String> {
        let mut lines: Vec<String> = headers
            .iter()
            .flat_map(|(name, values)| values.iter().map(move |v| format!("{name}: {}", v.as_str())))
            .collect();
        lines.sort();
        lines
    };
    // Near the largest message: two parts.
    assert_eq!(letters[0].len(), 2);
    assert_eq!(original(&letters[0])?, (lines(&headers), big));
    let origin = origin_id(&js, 1).await?;
    assert_eq!(header_of(&letters[0][1], "Opsflow-Dead-Letter-Id"), origin);
    let msg_id = header_of(&letters[0][1], "Nats-Msg-Id");
    assert!(msg_id.starts_with(&format!("{origin}:part-2-of-2-by-")), "{msg_id}");
    // Headers near 64 KiB: one part, the header block in its payload.
    assert_eq!(letters[1].len(), 1);
    assert_eq!(original(&letters[1])?, (lines(&large_headers), old.to_vec()));
    assert!(header_of(&letters[1][0], "Opsflow-Error").contains("specversion"));
    // A long name: the whole message in one dead letter, the error cut.
    assert_eq!(letters[2].len(), 1);
    assert_eq!(letters[2][0].payload, long_name.as_bytes());
    let error = header_of(&letters[2][0], "Opsflow-Error");
    assert!(
        error.len() < 300 && error.contains("AAAA...` is not a valid CloudEvents attribute name"),
        "{error}"
    );
    let events = wait_for_head(&opsflow.url(), 1, Duration::from_secs(20)).await?;
    assert_eq!(events[0].id, "after-0", "ingest moved on");
    Ok(())
}

/// A dead letter's part number and count (`Opsflow-Dead-Letter-Part: <i>/<n>`), 1/1
/// for one sent whole.
fn part(message: Option<&async_nats::Message>) -> (u64, u64) {
    let value = message
        .and_then(|m| m.headers.as_ref())
        .and_then(|h| h.get("Opsflow-Dead-Letter-Part"))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_else(|| "1/1".into());
    let (i, n) = value.split_once('/').unwrap_or(("1", "1"));
    (i.parse().unwrap_or(1), n.parse().unwrap_or(1))
}

/// The dead-letter identity of message `sequence` of `OPS_EVENTS`.
async fn origin_id(js: &jetstream::Context, sequence: u64) -> anyhow::Result<String> {
    let stored = js.get_stream("OPS_EVENTS").await?.get_raw_message(sequence).await?;
    Ok(format!(
        "opsflow-dlq:OPS_EVENTS:{sequence}:{}",
        stored.time.unix_timestamp_nanos()
    ))
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

/// A message opsflow dead-lettered and deleted from within the stream (its headers
/// no client reads) is not counted as removed before ingest read it, also when the
/// consumer is made again and reads the stream from its start (it was: an error
/// saying the event was not in the log, for one safe in the dead letters).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_opsflow_deleted_is_not_counted_as_skipped() -> anyhow::Result<()> {
    let WithDeadLetters {
        nats,
        _dir,
        opsflow,
        client: _client,
        js,
        mut dlq,
    } = with_dead_letters(&[]).await?;
    publish_all(&js, items(&["before"], 1, false), 1).await?;
    let payload = br#"{"specversion":"1.0","id":"poison","source":"/raw","type":"order.placed"}"#;
    publish_raw(&nats, "ops.events.order.placed", NOT_UTF8.0, payload).await?;
    publish_all(&js, items(&["after"], 1, false), 1).await?;
    next_within(&mut dlq, 30).await?;
    settled_head(&opsflow.url(), 2, Duration::from_secs(30)).await?;
    // Made again by opsflow, the consumer reads 1 and 3 (2 is gone).
    js.get_stream("OPS_EVENTS")
        .await?
        .delete_consumer("opsflow-ingest")
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(info) = ingest_consumer(&js).await
            && info.delivered.stream_sequence == 3
            && info.num_ack_pending == 0
        {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the consumer was not made again and read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counter(&opsflow.url(), "opsflow_nats_ingest_skipped_total").await?, 0);
    assert_eq!(settled_head(&opsflow.url(), 2, Duration::from_secs(5)).await?.len(), 2);
    Ok(())
}
