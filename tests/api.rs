//! The gRPC and HTTP APIs of one in-process server, through real clients.

use opsflow_e2e::{client, event, exact, no_stream, read_all};
use opsflow_proto::v1::{self, subscribe_response::Message};
use opsflow_testkit::{TestServer, order_json};
use serde_json::{Value, json};
use tonic::Code;

async fn post(url: &str, content_type: &str, body: String) -> anyhow::Result<(u16, Value)> {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/events"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await?))
}

async fn get(url: &str) -> anyhow::Result<(u16, Value)> {
    let r = reqwest::get(url).await?;
    let status = r.status().as_u16();
    let text = r.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_appends_are_readable_over_http_and_back() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let url = server.url();
    let mut grpc = client(&url).await?;

    let placed = event("shop", "o-1", "order.placed", &order_json("PO-1", 12_000));
    let approved = event(
        "shop",
        "o-2",
        "order.approved",
        r#"{"order_id":"PO-1","approver":"alice"}"#,
    );
    let r = grpc
        .append(v1::AppendRequest {
            stream: "order/PO-1".into(),
            expected: no_stream(),
            events: vec![placed, approved],
        })
        .await?
        .into_inner();
    assert_eq!(
        (r.first_position, r.last_position, r.stream_version, r.duplicate),
        (1, 2, 1, false)
    );

    let (status, body) = post(
        &url,
        "application/cloudevents+json",
        json!({"specversion":"1.0","id":"o-3","source":"shop","type":"order.shipped","subject":"order/PO-1",
               "expectedversion":"1","data":{"order_id":"PO-1","carrier":"DHL"}})
        .to_string(),
    )
    .await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["position"], 3);
    assert_eq!(body["stream_version"], 2);

    let (status, stream) = get(&format!("{url}/v1/streams/order/PO-1")).await?;
    assert_eq!(status, 200);
    let types: Vec<&str> = stream["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types, ["order.placed", "order.approved", "order.shipped"]);
    assert_eq!(
        stream["events"][0]["data"]["total"], 12_000,
        "JSON data comes back as JSON"
    );
    assert_eq!(stream["last_version"], 2);

    let (_, all) = get(&format!("{url}/v1/events?from=2&limit=1")).await?;
    assert_eq!(all["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(all["events"][0]["position"], 2);
    assert_eq!(all["next"], 3);
    // Backwards, the last page says so; limit 0 is the default, as in gRPC.
    let (_, back) = get(&format!("{url}/v1/events?from=1&direction=backward")).await?;
    assert_eq!(
        (back["events"][0]["position"].clone(), back["next"].clone()),
        (json!(1), Value::Null)
    );
    let (_, zero) = get(&format!("{url}/v1/events?limit=0")).await?;
    assert_eq!(zero["events"].as_array().map(Vec::len), Some(3));

    let events = read_all(&mut grpc).await?;
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].r#type, "order.shipped");
    assert_eq!(events[1].prev_hash, events[0].hash, "hash chain links");
    let info = grpc
        .get_stream(v1::GetStreamRequest {
            stream: "order/PO-1".into(),
        })
        .await?
        .into_inner();
    assert!(info.exists);
    assert_eq!(
        (
            info.last_version,
            info.event_count,
            info.first_position,
            info.last_position
        ),
        (2, 3, 1, 3)
    );

    // Binary mode with non-JSON data comes back base64.
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "bin-1")
        .header("ce-source", "scanner")
        .header("ce-type", "scanner.frame")
        .header("ce-subject", "inventory/SKU-1")
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 159, 146, 150])
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 201);
    let (_, stream) = get(&format!("{url}/v1/streams/inventory/SKU-1")).await?;
    assert_eq!(stream["events"][0]["data_base64"], "AJ+Slg==");

    // Batch mode is atomic across streams.
    let order = |id: &str| serde_json::from_str::<Value>(&order_json(id, 99)).unwrap_or_default();
    let batch = json!([
        {"specversion":"1.0","id":"b-1","source":"shop","type":"order.placed","data":order("PO-2")},
        {"specversion":"1.0","id":"b-2","source":"shop","type":"order.placed","data":order("PO-3")}
    ]);
    let (status, body) = post(&url, "application/cloudevents-batch+json", batch.to_string()).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["results"][1]["stream"], "order/PO-3",
        "stream derived from order_id"
    );
    // An empty batch is valid in a request (JSON batch format, 4.3): nothing happens.
    let (status, body) = post(&url, "application/cloudevents-batch+json", "[]".to_owned()).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"results": [], "duplicate": false}));

    let verify = reqwest::get(format!("{url}/v1/audit/verify"))
        .await?
        .json::<Value>()
        .await?;
    assert_eq!(verify["ok"], true);
    assert_eq!(verify["events_checked"], 6);
    // A range, as gRPC's Audit.Verify takes; past the head nothing is checked.
    for (query, checked) in [("from=2&to=4", 3), ("from=5", 2), ("from=7", 0)] {
        let verify = reqwest::get(format!("{url}/v1/audit/verify?{query}"))
            .await?
            .json::<Value>()
            .await?;
        assert_eq!(
            (&verify["ok"], &verify["events_checked"]),
            (&json!(true), &json!(checked)),
            "{query}: {verify}"
        );
    }
    for query in ["bogus=1", "from=x", "from=5&to=2"] {
        let r = reqwest::get(format!("{url}/v1/audit/verify?{query}")).await?;
        assert_eq!(r.status().as_u16(), 400, "{query}");
    }
    server.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_writes_nothing() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.log.max_event_bytes = 1024).await?;
    let url = server.url();
    let mut grpc = client(&url).await?;
    let ok = event("shop", "good-1", "order.placed", &order_json("PO-1", 1));
    grpc.append(v1::AppendRequest {
        stream: "order/PO-1".into(),
        expected: None,
        events: vec![ok.clone()],
    })
    .await?;
    let head = || server.server.log().head();
    assert_eq!(head(), 1);

    let cases: Vec<(v1::AppendRequest, Code, &[&str])> = vec![
        (
            v1::AppendRequest {
                stream: "order/PO-1".into(),
                expected: exact(7),
                events: vec![event("s", "x1", "a.b", "{}")],
            },
            Code::FailedPrecondition,
            &["expected 7", "actual 0"],
        ),
        (
            v1::AppendRequest {
                stream: "order//bad".into(),
                expected: None,
                events: vec![event("s", "x2", "a.b", "{}")],
            },
            Code::InvalidArgument,
            &["stream", "empty segment"],
        ),
        (
            v1::AppendRequest {
                stream: "s/1".into(),
                expected: None,
                events: vec![event("s", "x3", "", "{}")],
            },
            Code::InvalidArgument,
            &["events[0].type", "empty"],
        ),
        (
            v1::AppendRequest {
                stream: "s/1".into(),
                expected: None,
                events: vec![event("s", "x4", "a.b", &format!("\"{}\"", "x".repeat(2000)))],
            },
            Code::InvalidArgument,
            &["limit of 1024"],
        ),
        (
            v1::AppendRequest {
                stream: "order/PO-1".into(),
                expected: None,
                events: vec![event("shop", "good-1", "order.placed", &order_json("PO-1", 2))],
            },
            Code::AlreadyExists,
            &["good-1", "position 1", "data differs"],
        ),
        (
            v1::AppendRequest {
                stream: "s/1".into(),
                expected: None,
                events: vec![],
            },
            Code::InvalidArgument,
            &["has no events"],
        ),
        (
            v1::AppendRequest {
                stream: "s/1".into(),
                expected: None,
                events: vec![v1::ProposedEvent {
                    time: Some(prost_types::Timestamp {
                        seconds: 4_070_908_800, // 2099-01-01
                        nanos: 0,
                    }),
                    ..event("s", "x6", "a.b", "{}")
                }],
            },
            Code::InvalidArgument,
            &[
                "events[0].time",
                "2099-01-01T00:00:00Z",
                "ahead of the server's clock",
                "max_time_ahead_secs",
            ],
        ),
    ];
    for (request, code, needles) in cases {
        let status = grpc.append(request.clone()).await.expect_err("must be refused");
        assert_eq!(status.code(), code, "{request:?}: {}", status.message());
        for needle in needles {
            assert!(
                status.message().contains(needle),
                "{:?} lacks {needle:?}",
                status.message()
            );
        }
        assert_eq!(head(), 1, "nothing written for {request:?}");
    }

    // The exact retry is idempotent.
    let r = grpc
        .append(v1::AppendRequest {
            stream: "order/PO-1".into(),
            expected: None,
            events: vec![ok],
        })
        .await?
        .into_inner();
    assert!(r.duplicate);
    assert_eq!(r.first_position, 1);

    // HTTP: malformed JSON, missing attributes, wrong specversion, unsupported media type.
    let http_cases = [
        ("application/cloudevents+json", "{not json".to_owned(), 400, "line 1"),
        (
            "application/cloudevents+json",
            json!({"specversion":"1.0","source":"s","type":"a.b","subject":"s/1"}).to_string(),
            400,
            "id",
        ),
        (
            "application/cloudevents+json",
            json!({"specversion":"1.0","id":"1","type":"a.b","subject":"s/1"}).to_string(),
            400,
            "source",
        ),
        (
            "application/cloudevents+json",
            json!({"specversion":"1.0","id":"1","source":"s","subject":"s/1"}).to_string(),
            400,
            "type",
        ),
        (
            "application/cloudevents+json",
            json!({"id":"1","source":"s","type":"a.b","subject":"s/1"}).to_string(),
            400,
            "specversion",
        ),
        (
            "application/cloudevents+json",
            json!({"specversion":"0.3","id":"1","source":"s","type":"a.b","subject":"s/1"}).to_string(),
            400,
            "1.0",
        ),
        ("application/cloudevents-batch+json", "[{}]".to_owned(), 400, "[0]"),
        ("text/plain", "hello".to_owned(), 415, "content type"),
    ];
    for (ct, body, status, needle) in http_cases {
        let (got, err) = post(&url, ct, body.clone()).await?;
        assert_eq!(got, status, "{body}: {err}");
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        assert_eq!(head(), 1);
    }
    let (status, err) = post(
        &url,
        "application/cloudevents+json",
        json!({"specversion":"1.0","id":"v","source":"s","type":"a.b","subject":"order/PO-1","expectedversion":"5"})
            .to_string(),
    )
    .await?;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["code"], "wrong_expected_version");
    assert_eq!(err["error"]["expected"], "5");
    assert_eq!(err["error"]["actual"], 0);
    let (status, err) = get(&format!("{url}/v1/events?limit=abc")).await?;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["field"], "limit");

    // Still serving, nothing lost.
    let r = grpc
        .append(v1::AppendRequest {
            stream: "order/PO-9".into(),
            expected: no_stream(),
            events: vec![event("s", "ok-9", "a.b", "{}")],
        })
        .await?
        .into_inner();
    assert_eq!(r.first_position, 2);
    server.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_events_are_validated_on_append_over_http_and_grpc() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let url = server.url();
    let mut grpc = client(&url).await?;
    let head = || server.server.log().head();
    let without_id = r#"{"customer":"acme","total":10,"currency":"EUR","promised_by":"2026-11-23T10:00:00Z"}"#;

    // HTTP structured mode: 400 naming the field; nothing written.
    let (status, err) = post(
        &url,
        "application/cloudevents+json",
        json!({"specversion":"1.0","id":"h-1","source":"shop","type":"order.placed","subject":"order/PO-1",
               "data": serde_json::from_str::<Value>(without_id)?})
        .to_string(),
    )
    .await?;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "invalid_argument");
    assert_eq!(err["error"]["field"], "events[0].data.order_id");
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("data.order_id: required field is missing for order.placed"),
        "{message}"
    );
    // A field of the wrong type: expected and actual are named.
    let (status, err) = post(
        &url,
        "application/cloudevents+json",
        json!({"specversion":"1.0","id":"h-2","source":"shop","type":"order.placed","subject":"order/PO-1",
               "data": {"order_id":"PO-1","customer":"acme","total":"12","currency":"EUR",
                        "promised_by":"2026-11-23T10:00:00Z"}})
        .to_string(),
    )
    .await?;
    assert_eq!(status, 400, "{err}");
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(r#"data.total: expected a number >= 0, got "12""#),
        "{message}"
    );
    assert_eq!(head(), 0);

    // gRPC: INVALID_ARGUMENT naming the field; one bad event fails the whole append.
    let status = grpc
        .append(v1::AppendRequest {
            stream: "order/PO-1".into(),
            expected: None,
            events: vec![
                event("shop", "g-1", "order.placed", &order_json("PO-1", 10)),
                event("shop", "g-2", "order.placed", without_id),
            ],
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("events[1].data.order_id"),
        "{}",
        status.message()
    );
    assert_eq!(head(), 0, "nothing written");

    // Valid catalog events and custom types are accepted, JSON or protobuf.
    let placed = opsflow_proto::v1::OrderPlaced {
        order_id: "PO-2".into(),
        customer: "acme".into(),
        total: Some(12.5),
        currency: "EUR".into(),
        promised_by: Some(prost_types::Timestamp {
            seconds: 1_795_428_000,
            nanos: 0,
        }),
        ..Default::default()
    };
    let as_protobuf = v1::ProposedEvent {
        content_type: "application/protobuf".into(),
        data: prost::Message::encode_to_vec(&placed).into(),
        ..event("shop", "g-4", "order.placed", "")
    };
    let r = grpc
        .append(v1::AppendRequest {
            stream: "order/PO-1".into(),
            expected: no_stream(),
            events: vec![
                event("shop", "g-1", "order.placed", &order_json("PO-1", 10)),
                event("shop", "g-3", "my.custom_event", r#"{"anything":[1,2,3]}"#),
                as_protobuf,
            ],
        })
        .await?
        .into_inner();
    assert_eq!((r.first_position, r.last_position), (1, 3));
    let missing_in_protobuf = v1::ProposedEvent {
        content_type: "application/protobuf".into(),
        data: prost::Message::encode_to_vec(&opsflow_proto::v1::OrderPlaced {
            order_id: String::new(),
            ..placed
        })
        .into(),
        ..event("shop", "g-5", "order.placed", "")
    };
    let status = grpc
        .append(v1::AppendRequest {
            stream: "order/PO-1".into(),
            expected: None,
            events: vec![missing_in_protobuf],
        })
        .await
        .expect_err("refused");
    assert!(status.message().contains("data.order_id"), "{}", status.message());
    let (status, body) = post(
        &url,
        "application/cloudevents+json",
        json!({"specversion":"1.0","id":"h-3","source":"shop","type":"order.noted","subject":"order/PO-1",
               "data": {"note": "custom types take any JSON"}})
        .to_string(),
    )
    .await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(head(), 4);
    server.shutdown().await?;

    // Validation can be turned off.
    let server = TestServer::start_with(|c| c.log.validate_catalog = false).await?;
    let mut grpc = client(&server.url()).await?;
    grpc.append(v1::AppendRequest {
        stream: "order/PO-1".into(),
        expected: None,
        events: vec![event("shop", "g-1", "order.placed", without_id)],
    })
    .await?;
    server.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_catches_up_then_follows_http_appends() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let url = server.url();
    let mut grpc = client(&url).await?;
    for i in 0..50 {
        let stream = if i % 2 == 0 { "order/A" } else { "incident/B" };
        grpc.append(v1::AppendRequest {
            stream: stream.into(),
            expected: None,
            events: vec![event("s", &format!("e{i}"), "x.y", "{}")],
        })
        .await?;
    }
    // Filters that could match nothing are refused, naming the entry.
    for (prefixes, types, field) in [
        (vec!["order/", "a b"], vec![], "stream_prefixes[1]"),
        (vec!["order/"], vec!["x.y", "x..y"], "types[1]"),
    ] {
        let refused = grpc
            .subscribe(v1::SubscribeRequest {
                stream_prefixes: prefixes.into_iter().map(String::from).collect(),
                types: types.into_iter().map(String::from).collect(),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .err()
            .ok_or_else(|| anyhow::anyhow!("{field} taken"))?;
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().starts_with(&format!("invalid {field}: ")),
            "{refused:?}"
        );
    }
    let mut sub = grpc
        .subscribe(v1::SubscribeRequest {
            from_position: Some(1),
            stream_prefixes: vec!["order/".into()],
            ..Default::default()
        })
        .await?
        .into_inner();
    let writer = tokio::spawn({
        let url = url.clone();
        async move {
            for i in 50..100 {
                let subject = if i % 2 == 0 { "order/A" } else { "incident/B" };
                let body =
                    json!({"specversion":"1.0","id":format!("e{i}"),"source":"s","type":"x.y","subject":subject});
                post(&url, "application/cloudevents+json", body.to_string()).await?;
            }
            anyhow::Ok(())
        }
    });
    let mut positions = Vec::new();
    let mut caught_up = 0;
    while positions.len() < 50 {
        match sub.message().await?.and_then(|m| m.message) {
            Some(Message::Event(e)) => {
                assert!(e.stream.starts_with("order/"));
                positions.push(e.position);
            }
            Some(Message::CaughtUp(_)) => caught_up += 1,
            Some(Message::Checkpoint(_)) => {}
            None => anyhow::bail!("subscription ended early"),
        }
    }
    writer.await??;
    let expected: Vec<u64> = (1..=100).step_by(2).collect();
    assert_eq!(positions, expected, "no gap, no duplicate across catch-up and live");
    assert!(caught_up <= 1);

    let channel = tonic::transport::Channel::from_shared(url.clone())?.connect().await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    assert_serving(&mut health, "opsflow.v1.EventLog").await?;
    let ready = reqwest::get(format!("{url}/readyz")).await?;
    assert_eq!(ready.status().as_u16(), 200);
    let metrics = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    for name in [
        "opsflow_appended_events_total",
        "opsflow_append_latency_seconds_bucket",
        "opsflow_group_commit_events_bucket",
        "opsflow_fsync_seconds_bucket",
        "opsflow_appended_bytes_total",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    opsflow_e2e::assert_described(&metrics);
    server.shutdown().await
}

/// gRPC health watches, as clients keep one open on each connection: an unknown
/// service is SERVICE_UNKNOWN with the call left open (the health protocol), and at
/// shutdown every watch hears NOT_SERVING and ends as `Subscribe` does, instead of
/// being cut when the shutdown's grace period gives up on its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_watches_hear_not_serving_and_end_at_shutdown() -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let server = TestServer::start().await?;
    let channel = tonic::transport::Channel::from_shared(server.url())?.connect().await?;
    let health = tonic_health::pb::health_client::HealthClient::new(channel);
    let watch = |service: &str| {
        let request = tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        };
        let mut health = health.clone();
        async move { anyhow::Ok(health.watch(request).await?.into_inner()) }
    };
    let mut whole = watch("").await?;
    let mut event_log = watch("opsflow.v1.EventLog").await?;
    let mut unknown = watch("opsflow.v1.Nope").await?;
    for (watching, expected) in [
        (&mut whole, ServingStatus::Serving),
        (&mut event_log, ServingStatus::Serving),
        (&mut unknown, ServingStatus::ServiceUnknown),
    ] {
        assert_eq!(watching.message().await?.map(|m| m.status), Some(expected as i32));
    }
    let stopping = tokio::spawn(server.shutdown());
    for (watching, last) in [
        (&mut whole, ServingStatus::NotServing),
        (&mut event_log, ServingStatus::NotServing),
        (&mut unknown, ServingStatus::ServiceUnknown),
    ] {
        assert_eq!(watching.message().await?.map(|m| m.status), Some(last as i32));
        let ended = watching.message().await.map(|m| m.map(|m| m.status));
        let status = ended.err().ok_or_else(|| anyhow::anyhow!("the watch went on"))?;
        assert_eq!(
            (status.code(), status.message()),
            (tonic::Code::Unavailable, "the server is shutting down")
        );
    }
    stopping.await??;
    Ok(())
}

/// A client set to gzip (its requests compressed, compressed answers accepted), as
/// gRPC clients in other languages may be, is served: Append, Read, Views, health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_compressed_calls_are_served() -> anyhow::Result<()> {
    use tonic::codec::CompressionEncoding::Gzip;
    let server = TestServer::start().await?;
    let channel = tonic::transport::Channel::from_shared(server.url())?.connect().await?;
    let mut grpc = v1::event_log_client::EventLogClient::new(channel.clone())
        .send_compressed(Gzip)
        .accept_compressed(Gzip);
    let placed = event("shop", "z-1", "order.placed", &order_json("PO-Z", 100));
    let r = grpc
        .append(v1::AppendRequest {
            stream: "order/PO-Z".into(),
            expected: no_stream(),
            events: vec![placed],
        })
        .await?
        .into_inner();
    assert_eq!((r.first_position, r.duplicate), (1, false));
    let read = read_all(&mut grpc).await?;
    assert_eq!(read.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["z-1"]);
    let mut views = v1::views_client::ViewsClient::new(channel.clone())
        .send_compressed(Gzip)
        .accept_compressed(Gzip);
    let kpis = views.get_kpis(v1::GetKpisRequest::default()).await?.into_inner();
    assert!(!kpis.kpis.is_empty());
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel)
        .send_compressed(Gzip)
        .accept_compressed(Gzip);
    assert_serving(&mut health, "").await?;
    server.shutdown().await
}

/// Asserts that gRPC health checks of `service` answer SERVING.
async fn assert_serving(
    health: &mut tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>,
    service: &str,
) -> anyhow::Result<()> {
    let request = tonic_health::pb::HealthCheckRequest {
        service: service.into(),
    };
    let status = health.check(request).await?.into_inner().status;
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(status, serving, "{service:?}");
    Ok(())
}

/// A path no route serves is a 404 with the JSON error object (not an empty gRPC
/// answer); an unknown gRPC method is still gRPC's UNIMPLEMENTED; a body over the
/// limit is a 413 naming the limit, in JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_oversized_bodies_get_json_errors() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.log.max_append_bytes = 4096).await?;
    let url = server.url();
    for path in ["/", "/v1/nope", "/v1/stream/order/PO-1"] {
        let (status, err) = get(&format!("{url}{path}")).await?;
        assert_eq!(status, 404, "{path}: {err}");
        assert_eq!(err["error"]["code"], "not_found", "{path}");
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("GET {path}")), "{message}");
    }
    // A stream name that does not decode to UTF-8: 400, the JSON error object.
    let (status, err) = get(&format!("{url}/v1/streams/custom/%FF%FE")).await?;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["field"], "stream", "{err}");
    // A route asked with a method it does not take: 405, the JSON error object, Allow.
    let refused = reqwest::Client::new().delete(format!("{url}/v1/events")).send().await?;
    assert_eq!(refused.status().as_u16(), 405);
    let allow = refused
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "Allow: {allow:?}");
    let err: serde_json::Value = refused.json().await?;
    assert_eq!(err["error"]["code"], "method_not_allowed", "{err}");
    assert_eq!(err["error"]["message"], "method DELETE not allowed on /v1/events");
    let grpc = reqwest::Client::new()
        .post(format!("{url}/opsflow.v1.EventLog/Nope"))
        .header("content-type", "application/grpc")
        .body(Vec::<u8>::new())
        .send()
        .await?;
    assert_eq!(grpc.status().as_u16(), 200);
    assert_eq!(
        grpc.headers().get("grpc-status").and_then(|v| v.to_str().ok()),
        Some("12"),
        "UNIMPLEMENTED"
    );
    let message = grpc
        .headers()
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(message.contains("opsflow.v1.EventLog/Nope"), "{message:?}");

    // Bytes that are not an AppendRequest (a field with invalid UTF-8): the
    // client's input, INVALID_ARGUMENT naming the field (by its path when nested),
    // not INTERNAL.
    for (message, field) in [
        // stream (field 1) = 0xff 0xfe
        (&[0x0a, 0x02, 0xff, 0xfe][..], "stream"),
        // events (field 3) holding source (field 2) = 0xff
        (&[0x1a, 0x03, 0x12, 0x01, 0xff][..], "events.source"),
    ] {
        let mut frame = vec![0u8, 0, 0, 0, message.len() as u8];
        frame.extend(message);
        let grpc = reqwest::Client::new()
            .post(format!("{url}/opsflow.v1.EventLog/Append"))
            .header("content-type", "application/grpc")
            .body(frame)
            .send()
            .await?;
        let header = |name: &str| {
            grpc.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(
            header("grpc-status"),
            "3",
            "INVALID_ARGUMENT: {}",
            header("grpc-message")
        );
        let detail = header("opsflow-error");
        assert!(detail.contains(&format!(r#""field":"{field}""#)), "{detail}");
    }

    let (status, err) = post(&url, "application/cloudevents+json", "x".repeat(10_000)).await?;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["error"]["code"], "limit_exceeded");
    assert_eq!(err["error"]["field"], "body");
    assert_eq!(err["error"]["limit"], 8192);
    assert_eq!(server.server.log().head(), 0);
    server.shutdown().await
}

/// The same event sent in binary mode (JSON as the producer spaced it) and again
/// in structured mode is a duplicate, not a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_in_the_other_content_mode_is_a_duplicate() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let url = server.url();
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "ws-1")
        .header("ce-source", "shop")
        .header("ce-type", "custom.note")
        .header("ce-subject", "note/ws-1")
        .header("content-type", "application/json")
        .body("{ \"text\": \"hello\",\n  \"n\": [1, 2] }")
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 201);
    let structured = json!({"specversion":"1.0","id":"ws-1","source":"shop","type":"custom.note",
                            "subject":"note/ws-1","data":{"n":[1,2],"text":"hello"}});
    let (status, body) = post(&url, "application/cloudevents+json", structured.to_string()).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["duplicate"], true, "{body}");
    let mut other = structured.clone();
    other["data"]["text"] = json!("bye");
    let (status, body) = post(&url, "application/cloudevents+json", other.to_string()).await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(server.server.log().head(), 1);
    server.shutdown().await
}

/// `opsflow-expected-version` is each stream's version before the request: a
/// batch of two events to a new stream with `no_stream` is appended, and the same
/// batch against the wrong version writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expected_version_header_applies_to_each_streams_first_event() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let url = server.url();
    let batch = |ids: [&str; 3], expected: &str| {
        let events: Vec<Value> = ids
            .iter()
            .zip(["note/a", "note/a", "note/b"])
            .map(|(id, subject)| {
                json!({"specversion":"1.0","id":id,"source":"shop","type":"custom.note","subject":subject,"data":{}})
            })
            .collect();
        reqwest::Client::new()
            .post(format!("{url}/v1/events"))
            .header("content-type", "application/cloudevents-batch+json")
            .header("opsflow-expected-version", expected)
            .body(Value::Array(events).to_string())
            .send()
    };
    let r = batch(["1", "2", "3"], "no_stream").await?;
    assert_eq!(r.status().as_u16(), 201);
    let body: Value = r.json().await?;
    let versions: Vec<_> = body["results"]
        .as_array()
        .map(|r| r.iter().map(|x| x["stream_version"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(versions, [json!(0), json!(1), json!(0)], "{body}");
    let r = batch(["4", "5", "6"], "0").await?;
    assert_eq!(r.status().as_u16(), 409, "note/a is at 1, not 0");
    assert_eq!(server.server.log().head(), 3);
    let r = batch(["4", "5", "6"], "stream_exists").await?;
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(server.server.log().head(), 6);
    // A header that must be given once, given twice, is refused naming it (the
    // first one used to count, whatever the second said).
    let event = json!({"specversion":"1.0","id":"7","source":"shop","type":"custom.note","subject":"note/a","data":{}});
    for (name, first, second) in [
        ("opsflow-expected-version", "any", "no_stream"),
        ("content-type", "application/cloudevents+json", "text/plain"),
    ] {
        let r = reqwest::Client::new()
            .post(format!("{url}/v1/events"))
            .header("content-type", "application/cloudevents+json")
            .header(name, first)
            .header(name, second)
            .body(event.to_string())
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 400, "{name}");
        let body: Value = r.json().await?;
        let field = body["error"]["field"].as_str().unwrap_or_default().to_owned();
        assert!(field.eq_ignore_ascii_case(name), "{body}");
    }
    assert_eq!(server.server.log().head(), 6);
    server.shutdown().await
}

/// Shutdown is not held up by a client that opened a stream and stopped reading
/// it (it used to wait for that client to go away); a client that reads sees its
/// stream end with UNAVAILABLE, not as if it were complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_client_that_stopped_reading() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let url = server.url();
    let mut c = client(&url).await?;
    // Megabytes of events: more than HTTP/2 flow control lets through unread.
    let data = json!({ "text": "x".repeat(300) }).to_string();
    for batch in 0..20 {
        c.append(v1::AppendRequest {
            stream: format!("note/{batch}"),
            expected: None,
            events: (0..1000)
                .map(|i| event("test", &format!("{batch}-{i}"), "note.added", &data))
                .collect(),
        })
        .await?;
    }
    let mut stalled = client(&url).await?;
    let mut read = stalled
        .read(v1::ReadRequest {
            limit: 100_000,
            ..Default::default()
        })
        .await?
        .into_inner();
    read.message().await?;
    let mut reading = client(&url).await?;
    let mut live = reading
        .subscribe(v1::SubscribeRequest {
            from_end: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let started = std::time::Instant::now();
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(30), server.shutdown()).await;
    assert!(matches!(stopped, Ok(Ok(()))), "shutdown did not finish: {stopped:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "shutdown took {:?}",
        started.elapsed()
    );
    let ended = loop {
        match live.message().await {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    assert_eq!(ended.err().map(|s| s.code()), Some(Code::Unavailable));
    drop(read);
    Ok(())
}
