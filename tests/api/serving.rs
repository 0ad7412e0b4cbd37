//! Streams, health, compression and shutdown as gRPC clients see them.

use super::*;

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
