//! Bad input gets a clear error that names the problem, and writes nothing.

use super::*;

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
