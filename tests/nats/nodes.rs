//! Several opsflow nodes on one NATS. Each keeps a log of its own, so a second node
//! with the same ingest consumer, request subject or outbound subjects as a running
//! one does not start that part (they would split the events between their logs,
//! or mix their positions on `opsflow.log.>`); with names of its own it does, and
//! ingests every event too.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_does_not_take_what_a_running_one_holds() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let (dir_a, dir_b, dir_c) = (tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?);
    let a = opsflow_on(&nats, dir_a.path(), &[]).await?;
    let b = OpsflowProcess::start_with_env(dir_b.path(), &["--nats", &nats.url()], &[])?;
    // Each of B's parts says it did not start, naming A and what to change.
    for part in ["ingest", "requests", "outbound"] {
        not_ready_saying(&b, part, "not started: ").await?;
    }
    let r = reqwest::get(format!("{}/readyz", b.url())).await?;
    let status = r.status().as_u16();
    let ready: serde_json::Value = r.json().await?;
    assert_eq!(status, 503, "{ready}");
    let pid = format!(", pid {}, since ", a.pid());
    for (part, holds, remedy) in [
        (
            "ingest",
            "already ingests with consumer OPS_EVENTS/opsflow-ingest: ",
            "give this node its own [nats.ingest] consumer",
        ),
        (
            "requests",
            "already answers append requests on opsflow.api.append: ",
            "give this node its own [nats.request_reply] subject",
        ),
        (
            "outbound",
            "already publishes committed events to opsflow.log.>: ",
            "give this node its own [nats.outbound] subject_prefix",
        ),
    ] {
        let text = ready["nats"][part].as_str().unwrap_or_default();
        assert!(text.starts_with("not started: "), "{part}: {text}");
        for wanted in [
            "another opsflow node (host ",
            &pid,
            holds,
            remedy,
            "and restart this node",
        ] {
            assert!(text.contains(wanted), "{part}: {wanted:?} missing from {text}");
        }
    }
    // A stays ready, and takes both the published event and the request.
    wait_ready(&a.url()).await?;
    let nc = async_nats::connect(nats.url()).await?;
    let js = jetstream::new(nc.clone());
    let (headers, body) = message(0, "svc-nodes", 0);
    js.publish_with_headers("ops.events.order.placed", headers, body)
        .await?
        .await?;
    // Recorded before the request, so that the request's position is 2.
    wait_for_head(&a.url(), 1, Duration::from_secs(20)).await?;
    let (headers, body) = message(0, "svc-nodes", 1);
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        nc.request_with_headers("opsflow.api.append", headers, body),
    )
    .await??;
    let answer: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(answer["position"], 2, "{answer}");
    let on_a = wait_for_head(&a.url(), 2, Duration::from_secs(20)).await?;
    assert_eq!(on_a.len(), 2);
    // B recorded neither: nothing was split off to it.
    let on_b = read_all(&mut client(&b.url()).await?).await?;
    assert!(on_b.is_empty(), "node B recorded {} events", on_b.len());

    // A node with names of its own starts every part, and ingests the event as well.
    let c = opsflow_on(
        &nats,
        dir_c.path(),
        &[
            ("OPSFLOW_NATS__INGEST__CONSUMER", "node-c"),
            ("OPSFLOW_NATS__REQUEST_REPLY__SUBJECT", "node-c.api.append"),
            ("OPSFLOW_NATS__OUTBOUND__SUBJECT_PREFIX", "node-c.log"),
        ],
    )
    .await?;
    let on_c = wait_for_head(&c.url(), 1, Duration::from_secs(20)).await?;
    assert_eq!(on_c.len(), 1);
    assert_eq!(on_c[0].id, on_a[0].id);
    Ok(())
}

/// A refusal stays until the node is restarted, also when its NATS client stops
/// and its tasks start again on a new connection, with the other node gone by then
/// (ingest then took the other node's consumer, mixing two logs). A header value
/// holding a bare CR, asked on the claim subject that B's outbound answers, stops
/// B's shared client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_stays_when_the_client_starts_again() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let a = opsflow_on(&nats, dir_a.path(), &[]).await?;
    let b = OpsflowProcess::start_with_env(
        dir_b.path(),
        &["--nats", &nats.url()],
        &[
            ("OPSFLOW_NATS__REQUEST_REPLY__SUBJECT", "node-b.api.append"),
            ("OPSFLOW_NATS__OUTBOUND__SUBJECT_PREFIX", "node-b.log"),
        ],
    )?;
    let parts =
        |ready: &serde_json::Value| ["ingest", "outbound"].map(|p| ready["nats"][p].as_str().unwrap_or("").to_owned());
    let ready_b = || async {
        let ready: serde_json::Value = reqwest::get(format!("{}/readyz", b.url())).await?.json().await?;
        anyhow::Ok(ready)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = ready_b().await?;
        let [ingest, outbound] = parts(&ready);
        if ingest.starts_with("not started: ") && outbound == "ready" {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "node B did not refuse ingest alone: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(a);
    publish_raw(&nats, "_OPSFLOW.CLAIMS.outbound", b"NATS/1.0\r\nA: x\ry\r\n\r\n", b"{}").await?;
    // B's shared client starts again (after a pause of 1 s): outbound is ready again,
    // ingest still refused.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut restarted = false;
    loop {
        restarted = restarted || counter(&b.url(), "opsflow_nats_transport_restarts_total").await? >= 1;
        let ready = ready_b().await?;
        let [ingest, outbound] = parts(&ready);
        assert!(ingest.starts_with("not started: "), "{ready}");
        if restarted && outbound == "ready" {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "node B's client did not start again: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Long enough for a new claim to have been made and held.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ready = ready_b().await?;
    assert!(
        parts(&ready)[0].contains("already ingests with consumer OPS_EVENTS/opsflow-ingest"),
        "{ready}"
    );
    Ok(())
}
