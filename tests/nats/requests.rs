//! Request/reply on `opsflow.api.append`: positions, structured errors, and requests
//! under way at SIGTERM.

use super::*;

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
    // No attribute is at fault: the body has no `field` (it had `"field": null`).
    let err: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(err["error"].get("field"), None, "{err}");
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
    // A header given twice is refused naming it, as over HTTP.
    let mut twice = HeaderMap::new();
    twice.insert("Content-Type", "application/cloudevents+json");
    twice.append("Content-Type", "text/plain");
    let reply = ask(twice, ce.to_string().into()).await??;
    let err: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(err["error"]["field"], "Content-Type", "{err}");
    // Every request is counted by its outcome (at least: the other tests of this
    // binary count into the same registry).
    for (outcome, at_least) in [
        ("recorded", 6),
        ("decode", 2),
        ("invalid", 5),
        ("version_conflict", 2),
        ("duplicate_conflict", 1),
    ] {
        let series = format!("opsflow_nats_requests_total{{outcome=\"{outcome}\"}}");
        let counted = counter(&server.url(), &series).await?;
        assert!(
            counted >= at_least,
            "{series} is {counted}, expected at least {at_least}"
        );
    }
    assert!(
        counter(&server.url(), "opsflow_nats_requests_total{outcome=\"limit\"}")
            .await
            .is_ok()
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

/// An append published to `opsflow.api.append` without a reply subject (`publish`,
/// not `request`) is recorded all the same; one that is refused goes to the dead
/// letters with its reason, kept by their stream (made by request/reply when ingest
/// is off), since nobody hears a reply (it was dropped unseen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_published_without_a_reply_subject_is_recorded_or_dead_lettered() -> anyhow::Result<()> {
    // With ingest off, a dead-letter stream in memory (which ingest refuses) keeps
    // them too: nothing else keeps a core message.
    for (ingest, kept_by) in [(true, "OPSFLOW_DLQ"), (false, "OPSFLOW_DLQ"), (false, "MEMDLQ")] {
        let nats = NatsServer::start()?;
        if kept_by == "MEMDLQ" {
            let js = jetstream::new(async_nats::connect(nats.url()).await?);
            js.create_stream(jetstream::stream::Config {
                name: kept_by.into(),
                subjects: vec!["opsflow.dlq.>".into()],
                storage: jetstream::stream::StorageType::Memory,
                ..Default::default()
            })
            .await?;
        }
        let mut config = NatsConfig::url(nats.url());
        config.ingest.enabled = ingest;
        let server = TestServer::start_with(|c| c.nats = Some(config)).await?;
        wait_ready(&server.url()).await?;
        let nc = async_nats::connect(nats.url()).await?;
        let mut dlq = nc.subscribe("opsflow.dlq.>").await?;
        nc.flush().await?;
        let (headers, body) = note(1, 1);
        nc.publish_with_headers("opsflow.api.append", headers, body).await?;
        // Refused by the catalog: order.placed needs an order_id.
        let mut headers = HeaderMap::new();
        headers.insert("Content-Type", "application/cloudevents+json");
        headers.insert("X-Trace", "t-1");
        let refused = json!({"specversion":"1.0","id":"r-1","source":"svc","type":"order.placed",
                             "subject":"order/PO-9","data":{"customer":"acme"}})
        .to_string();
        nc.publish_with_headers("opsflow.api.append", headers, refused.clone().into())
            .await?;
        // A protobuf AppendRequest that does not decode.
        let mut proto = HeaderMap::new();
        proto.insert("Content-Type", "application/protobuf");
        nc.publish_with_headers("opsflow.api.append", proto, bytes::Bytes::from_static(b"\xff\xff"))
            .await?;
        nc.flush().await?;
        let events = wait_for_head(&server.url(), 1, Duration::from_secs(20)).await?;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id, "p1-1", "{:?}", events[0]);
        let mut dead = [next_within(&mut dlq, 20).await?, next_within(&mut dlq, 20).await?];
        dead.sort_by(|a, b| a.subject.cmp(&b.subject));
        assert_eq!(dead[0].subject.as_str(), "opsflow.dlq.decode", "ingest {ingest}");
        assert!(header_of(&dead[0], "Opsflow-Error").contains("malformed AppendRequest"));
        let invalid = &dead[1];
        assert_eq!(invalid.subject.as_str(), "opsflow.dlq.invalid");
        assert_eq!(invalid.payload, refused.as_bytes(), "the original payload");
        assert_eq!(header_of(invalid, "X-Trace"), "t-1", "the original headers");
        assert_eq!(header_of(invalid, "Opsflow-Original-Subject"), "opsflow.api.append");
        let error = header_of(invalid, "Opsflow-Error");
        assert!(error.contains("order_id"), "{error}");
        // Kept, not only seen by a subscriber.
        let js = jetstream::new(nc.clone());
        let mut kept = js.get_stream(kept_by).await?;
        assert_eq!(kept.info().await?.state.messages, 2, "ingest {ingest}, {kept_by}");
        assert_eq!(server.server.log().head(), 1, "the refused ones are not recorded");
        if !ingest && kept_by == "OPSFLOW_DLQ" {
            // The dead-letter stream deleted while opsflow runs (with ingest off,
            // nothing else makes it again): the next refusal makes it again.
            js.delete_stream(kept_by).await?;
            let mut proto = HeaderMap::new();
            proto.insert("Content-Type", "application/protobuf");
            nc.publish_with_headers("opsflow.api.append", proto, bytes::Bytes::from_static(b"\xff"))
                .await?;
            // (A subscriber hears the first try too, which no stream kept.)
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(mut kept) = js.get_stream(kept_by).await
                    && kept.info().await?.state.messages == 1
                {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "the dead letter was not kept by a stream made again"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        server.shutdown().await?;
    }
    Ok(())
}
