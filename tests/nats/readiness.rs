//! `/readyz` for the NATS tasks: a server that stops answering, a stopped client, a
//! new connection.

use super::*;

/// A server that stops answering (frozen here; a connection the network dropped
/// without a word looks the same) is noticed after a few unanswered pings
/// (`ping_interval_secs`): /readyz says disconnected, and ready again once it
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_is_noticed_within_a_few_pings() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[("OPSFLOW_NATS__PING_INTERVAL_SECS", "1")]).await?;
    let pid = nats.pid().ok_or_else(|| anyhow::anyhow!("nats-server has no pid"))?;
    let signal = |name: &str| -> anyhow::Result<()> {
        let sent = std::process::Command::new("kill")
            .args([name, &pid.to_string()])
            .status()?;
        anyhow::ensure!(sent.success(), "kill {name} {pid}: {sent}");
        Ok(())
    };
    signal("-STOP")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let noticed = loop {
        let r = reqwest::get(format!("{}/readyz", opsflow.url())).await?;
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await?;
        if body["nats"]["status"] == "disconnected" {
            break (status, body);
        }
        if Instant::now() > deadline {
            signal("-CONT")?;
            anyhow::bail!("a frozen server still looks connected after 20 s: {body}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    signal("-CONT")?;
    assert_eq!(noticed.0, 503, "{}", noticed.1);
    wait_ready(&opsflow.url()).await?;
    Ok(())
}

/// A header value holding a bare CR stops async-nats's connection task (it panics
/// there) while the client still reads as connected. A request carrying one stops
/// the request connection: request/reply starts again on a new connection (it said
/// so in /readyz and did nothing more until opsflow was restarted), the next
/// request is answered, and ingest and outbound, on their own connection, go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_nats_client_is_replaced_by_a_new_connection() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    publish_raw(&nats, "opsflow.api.append", b"NATS/1.0\r\nA: x\ry\r\n\r\n", b"{}").await?;
    // Until request/reply is ready again: ingest and outbound stay ready throughout.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut requests_down = false;
    loop {
        let ready: serde_json::Value = reqwest::get(format!("{}/readyz", opsflow.url())).await?.json().await?;
        let nats = &ready["nats"];
        assert_eq!(
            (&nats["ingest"], &nats["outbound"]),
            (&json!("ready"), &json!("ready")),
            "{ready}"
        );
        requests_down |= nats["requests"] != "ready";
        if requests_down && ready["ready"] == true {
            assert_eq!(ready["tasks"]["nats-monitor"]["status"], "running", "{ready}");
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "request/reply not ready again: {ready}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let nc = async_nats::connect(nats.url()).await?;
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", "application/cloudevents+json");
    let event =
        json!({"specversion":"1.0","id":"after","source":"svc","type":"note.added","subject":"notes/1","data":{}});
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        nc.request_with_headers("opsflow.api.append", headers, event.to_string().into()),
    )
    .await??;
    let body: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(body["position"], 1, "{body}");
    assert_eq!(
        counter(&opsflow.url(), "opsflow_nats_transport_restarts_total").await?,
        1
    );
    // Only request/reply's connection started again: ingest and outbound were not
    // interrupted.
    assert_eq!(
        counter(&opsflow.url(), "opsflow_nats_ingest_interruptions_total").await?,
        0
    );
    assert_eq!(
        counter(&opsflow.url(), "opsflow_nats_outbound_interruptions_total").await?,
        0
    );
    Ok(())
}

/// After NATS comes back, opsflow is not ready until ingest consumes on the new
/// connection: between the reconnect and ingest noticing it (up to a second), the
/// old session's readiness read ready, then not ready while it started again
/// (found in a fault soak: 200, 503 for half a second, 200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_on_a_new_connection_until_ingest_has_started_on_it() -> anyhow::Result<()> {
    let mut nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    let interruptions = "opsflow_nats_ingest_interruptions_total";
    let before = counter(&opsflow.url(), interruptions).await?;
    nats.restart()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen_down = false;
    loop {
        let r = reqwest::get(format!("{}/readyz", opsflow.url())).await?;
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await?;
        seen_down |= body["nats"]["status"] == "disconnected";
        if status == 200 && seen_down {
            // Ready again only once ingest has ended the old session.
            let after = counter(&opsflow.url(), interruptions).await?;
            assert!(
                after > before,
                "ready on the new connection before ingest started on it: {body}"
            );
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "not ready again within 30 s: {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
