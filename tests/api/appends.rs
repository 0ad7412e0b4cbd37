//! Appends over gRPC and HTTP read back the same way, retries and expected versions.

use super::*;

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

/// JSON data is read back over HTTP as recorded: a large number kept its digits
/// over gRPC and NATS but came back as `1.2345678901234568e+29` over HTTP, and of a
/// repeated member only the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reads_give_json_data_as_recorded() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let url = server.url();
    let data = r#"{"big":123456789012345678901234567890,"f":1.0000000000000000001,"dup":1,"dup":2}"#;
    let event =
        format!(r#"{{"specversion":"1.0","id":"n-1","source":"s","type":"custom.n","subject":"n/1","data":{data}}}"#);
    let (status, body) = post(&url, "application/cloudevents+json", event).await?;
    assert_eq!(status, 201, "{body}");
    for read in [format!("{url}/v1/streams/n/1"), format!("{url}/v1/events")] {
        let text = reqwest::get(&read).await?.text().await?;
        assert!(text.contains(&format!(r#""data":{data}"#)), "{read}: {text}");
        let page: Value = serde_json::from_str(&text)?;
        assert_eq!(page["events"][0]["id"], "n-1", "{read}: {text}");
    }
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
