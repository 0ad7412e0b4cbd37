//! Outbound publishing on `opsflow.log.<type>`: in position order, resumed without
//! gaps or duplicates, through broken connections, refusals and NATS outages.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_publishes_in_order_and_resumes_without_gaps_or_duplicates() -> anyhow::Result<()> {
    // A duplicate window too short to hide a re-publish: the stream keeps every
    // copy (its default, 2 minutes, would drop a second copy of the same position).
    let (nats, _, js) = nats_with_stream(jetstream::stream::Config {
        duplicate_window: Duration::from_millis(100),
        ..outbound_capture()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let args = ["--nats", &nats.url()];
    let append = |url: String, from: u64, n: u64| async move {
        let mut c = client(&url).await?;
        for i in from..from + n {
            let event = if i % 2 == 0 {
                opsflow_e2e::event(
                    "out",
                    &format!("e{i}"),
                    "order.placed",
                    &order_json(&format!("SO-{i}"), i),
                )
            } else {
                let data = json!({"order_id": format!("SO-{}", i - 1), "carrier": "DHL"}).to_string();
                opsflow_e2e::event("out", &format!("e{i}"), "order.shipped", &data)
            };
            c.append(v1::AppendRequest {
                stream: format!("order/{}", i % 7),
                expected: None,
                events: vec![event],
            })
            .await?;
        }
        anyhow::Ok(())
    };
    let mut opsflow = OpsflowProcess::start_with(dir.path(), &args)?;
    append(opsflow.url(), 0, 300).await?;
    // Stopped at once, while outbound may still be publishing: it settles what it
    // sent and saves how far that went, and the next process goes on from there.
    assert!(opsflow.terminate(Duration::from_secs(20))?);
    let opsflow = OpsflowProcess::start_with(dir.path(), &args)?;
    append(opsflow.url(), 300, 200).await?;

    let mut stream = js.get_stream("OPSFLOW_LOG").await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stream.info().await?.state.messages < 500 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stream.info().await?.state.messages,
        500,
        "no gap and no duplicate across the restart"
    );
    for seq in 1..=500u64 {
        let m = stream.get_raw_message(seq).await?;
        let id = m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned());
        assert_eq!(id, Some(seq.to_string()), "in position order");
        let ce: serde_json::Value = serde_json::from_slice(&m.payload)?;
        assert_eq!(ce["id"], format!("e{}", seq - 1));
        let expected_type = if (seq - 1) % 2 == 0 {
            "order.placed"
        } else {
            "order.shipped"
        };
        assert_eq!(m.subject.as_str(), format!("opsflow.log.{expected_type}"));
    }
    drop(opsflow);
    Ok(())
}

/// A stream capturing everything outbound publishes (`opsflow.log.>`).
fn outbound_capture() -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: "OPSFLOW_LOG".into(),
        subjects: vec!["opsflow.log.>".into()],
        ..Default::default()
    }
}

/// A TCP proxy in front of `nats-server` that can drop what clients send and then
/// cut every connection: as a network failure loses what a client wrote into a
/// connection that then broke (the client cannot tell).
struct CutProxy {
    port: u16,
    holding: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cuts: tokio::sync::watch::Sender<u64>,
    accepting: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    async fn start(to: u16) -> anyhow::Result<CutProxy> {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let holding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (cuts, cut) = tokio::sync::watch::channel(0u64);
        let held = holding.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                    continue;
                };
                let (mut cut, holding) = (cut.clone(), held.clone());
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let upstream = async {
                        let mut buf = vec![0u8; 64 << 10];
                        loop {
                            let n = from_client.read(&mut buf).await?;
                            if n == 0 {
                                return anyhow::Ok(());
                            }
                            // Held: read from the client, never sent on.
                            if !holding.load(Ordering::SeqCst) {
                                to_server.write_all(&buf[..n]).await?;
                            }
                        }
                    };
                    let downstream = tokio::io::copy(&mut from_server, &mut to_client);
                    tokio::select! {
                        _ = upstream => {}
                        _ = downstream => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(CutProxy {
            port,
            holding,
            cuts,
            accepting,
        })
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// From now on, what clients send is read and dropped.
    fn hold(&self) {
        self.holding.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Closes every connection (what was held is lost) and lets new ones through.
    fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
        self.holding.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// nats-server with a stream capturing outbound, and opsflow (ready) connected to it
/// through a [`CutProxy`].
async fn capturing_behind_a_proxy() -> anyhow::Result<(
    NatsServer,
    jetstream::Context,
    CutProxy,
    tempfile::TempDir,
    OpsflowProcess,
)> {
    let (nats, _, js) = nats_with_stream(outbound_capture()).await?;
    let proxy = CutProxy::start(nats.port()).await?;
    let dir = tempfile::tempdir()?;
    let opsflow = OpsflowProcess::start_with(dir.path(), &["--nats", &proxy.url()])?;
    wait_ready(&opsflow.url()).await?;
    Ok((nats, js, proxy, dir, opsflow))
}

/// Publishes written into a connection that then breaks are lost, while those the
/// client queues after go out on the next connection: the capturing stream still
/// gets every position once and in order (it used to store the later ones first,
/// and the lost ones when outbound published again from its checkpoint).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_keeps_position_order_when_a_connection_breaks_and_loses_publishes() -> anyhow::Result<()> {
    let (_nats, js, proxy, _dir, opsflow) = capturing_behind_a_proxy().await?;
    const EVENTS: u64 = 300;
    let url = opsflow.url();
    let appending = tokio::spawn(async move {
        let mut c = client(&url).await?;
        for i in 0..EVENTS {
            append_order(&mut c, "cut", &format!("order/{}", i % 5), i).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::Ok(())
    });
    let mut stream = js.get_stream("OPSFLOW_LOG").await?;
    // Some published, then some lost with the connection, then the rest.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stream.info().await?.state.messages < 50 {
        anyhow::ensure!(Instant::now() < deadline, "outbound published nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.hold();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored_at_cut = stream.info().await?.state.messages;
    proxy.cut();
    appending.await??;
    assert_eq!(stored_once(&mut stream, EVENTS).await?, EVENTS, "no duplicate");
    assert!(
        stored_at_cut < EVENTS - 50,
        "the cut came while events were published ({stored_at_cut} stored)"
    );
    let expected: Vec<u64> = (1..=EVENTS).collect();
    assert_eq!(positions_in(&stream, EVENTS).await?, expected, "in position order");
    Ok(())
}

/// Someone else's messages stored in the capturing stream between outbound's make
/// outbound's next publish refused (it names the position before it): outbound
/// starts again from its checkpoint and every event still gets there once, in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_goes_on_past_other_messages_in_its_stream() -> anyhow::Result<()> {
    let (_nats, js, _dir, opsflow) = opsflow_with_stream(outbound_capture()).await?;
    wait_ready(&opsflow.url()).await?;
    let mut c = client(&opsflow.url()).await?;
    let mut stream = js.get_stream("OPSFLOW_LOG").await?;
    const EVENTS: u64 = 40;
    let mut others = 0;
    for i in 0..EVENTS {
        append_order(&mut c, "mixed", "order/mixed", i).await?;
        if i % 10 == 5 {
            // Right after outbound's publish of this event.
            let deadline = Instant::now() + Duration::from_secs(30);
            while stream.info().await?.state.messages < i + 1 + others {
                anyhow::ensure!(Instant::now() < deadline, "position {} not published", i + 1);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            js.publish("opsflow.log.by.someone.else", "{}".into()).await?.await?;
            others += 1;
        }
    }
    let stored = stored_once(&mut stream, EVENTS + 4).await?;
    assert_eq!(stored, EVENTS + 4, "no duplicate");
    assert_eq!(
        positions_in(&stream, stored).await?,
        (1..=EVENTS).collect::<Vec<_>>(),
        "in position order"
    );
    Ok(())
}

/// A connection that breaks while outbound has nothing outstanding loses nothing of
/// outbound's: it goes on publishing on the new connection without starting again
/// from its checkpoint (it used to, at its first publish after the reconnect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_goes_on_after_a_reconnect_while_idle() -> anyhow::Result<()> {
    let (_nats, js, proxy, _dir, opsflow) = capturing_behind_a_proxy().await?;
    let mut c = client(&opsflow.url()).await?;
    let mut stream = js.get_stream("OPSFLOW_LOG").await?;
    for i in 0..10 {
        append_order(&mut c, "idle", "order/idle", i).await?;
    }
    assert_eq!(stored_once(&mut stream, 10).await?, 10);
    proxy.cut();
    // Disconnected, and connected again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter(
        &opsflow.url(),
        "opsflow_nats_disconnections_total{connection=\"opsflow\"}",
    )
    .await?
        < 1
    {
        anyhow::ensure!(Instant::now() < deadline, "the cut went unnoticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_ready(&opsflow.url()).await?;
    for i in 10..20 {
        append_order(&mut c, "idle", "order/idle", i).await?;
    }
    assert_eq!(stored_once(&mut stream, 20).await?, 20, "no duplicate");
    assert_eq!(positions_in(&stream, 20).await?, (1..=20).collect::<Vec<_>>());
    assert_eq!(
        counter(&opsflow.url(), "opsflow_nats_outbound_interruptions_total").await?,
        0,
        "outbound started again"
    );
    Ok(())
}

/// How many messages `stream` holds once it has `expected` (within a minute) and
/// half a second more has passed (for any that should not come).
async fn stored_once(stream: &mut jetstream::stream::Stream, expected: u64) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = stream.info().await?.state.messages;
        if stored >= expected {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the stream has {stored} of {expected} messages"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(stream.info().await?.state.messages)
}

/// Appends event `e<i>` of `source`, an `order.placed`, to `stream`.
async fn append_order(
    c: &mut opsflow_proto::v1::event_log_client::EventLogClient<tonic::transport::Channel>,
    source: &str,
    stream: &str,
    i: u64,
) -> anyhow::Result<()> {
    let placed = event(
        source,
        &format!("e{i}"),
        "order.placed",
        &order_json(&format!("SO-{i}"), i),
    );
    c.append(v1::AppendRequest {
        stream: stream.into(),
        expected: None,
        events: vec![placed],
    })
    .await?;
    Ok(())
}

/// The positions (`Nats-Msg-Id`) of the first `messages` messages of `stream`, in
/// stream order; messages without one (not outbound's) left out.
async fn positions_in(stream: &jetstream::stream::Stream, messages: u64) -> anyhow::Result<Vec<u64>> {
    let mut positions = Vec::new();
    for seq in 1..=messages {
        let m = stream.get_raw_message(seq).await?;
        if let Some(id) = m.headers.get("Nats-Msg-Id") {
            positions.push(id.as_str().parse::<u64>()?);
        }
    }
    Ok(positions)
}

/// A stream that refuses a publish (full, discarding new messages) stops outbound
/// there: each new session starts from the refused position, not from an older
/// checkpoint, so what the stream holds is not sent again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_starts_again_from_a_refused_publish() -> anyhow::Result<()> {
    let (nats, nc, js) = nats_with_stream(jetstream::stream::Config {
        max_messages: 50,
        discard: jetstream::stream::DiscardPolicy::New,
        ..outbound_capture()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    let mut c = client(&opsflow.url()).await?;
    for i in 0..100 {
        append_order(&mut c, "full", "order/full", i).await?;
    }
    let mut stream = js.get_stream("OPSFLOW_LOG").await?;
    assert_eq!(stored_once(&mut stream, 50).await?, 50);
    // What outbound sends from now on (a core subscriber sees the refused ones too).
    let mut sent = nc.subscribe("opsflow.log.>").await?;
    let mut positions = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some(m)) = tokio::time::timeout_at(until, sent.next()).await {
        let id = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id"));
        positions.push(id.map_or(Ok(0), |v| v.as_str().parse::<u64>())?);
    }
    assert!(!positions.is_empty(), "outbound tries again");
    assert_eq!(positions.iter().min(), Some(&51), "{positions:?}");
    Ok(())
}

/// One append of more events than outbound publishes in a turn of its loop: every
/// one is published, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_publishes_a_large_group_whole() -> anyhow::Result<()> {
    let (_nats, js, _dir, opsflow) = opsflow_with_stream(outbound_capture()).await?;
    wait_ready(&opsflow.url()).await?;
    let events = (0..600)
        .map(|i| {
            opsflow_e2e::event(
                "big",
                &format!("e{i}"),
                "order.placed",
                &order_json(&format!("SO-{i}"), i),
            )
        })
        .collect();
    client(&opsflow.url())
        .await?
        .append(v1::AppendRequest {
            stream: "order/big".into(),
            expected: None,
            events,
        })
        .await?;
    let mut stream = js.get_stream("OPSFLOW_LOG").await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stream.info().await?.state.messages < 600 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stream.info().await?.state.messages, 600);
    for seq in 1..=600u64 {
        let m = stream.get_raw_message(seq).await?;
        let id = m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned());
        assert_eq!(id, Some(seq.to_string()), "in position order");
    }
    Ok(())
}

/// Once outbound has caught up, its checkpoint is durable even if no append comes
/// after: a SIGKILL after a quiet spell longer than the capturing stream's duplicate
/// window re-publishes nothing (it used to re-publish everything since the last
/// group commit, and the stream kept the copies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_checkpoint_is_durable_once_caught_up() -> anyhow::Result<()> {
    let (nats, _, js) = nats_with_stream(jetstream::stream::Config {
        duplicate_window: Duration::from_secs(1),
        ..outbound_capture()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let args = ["--nats", &nats.url()];
    let mut opsflow = OpsflowProcess::start_with(dir.path(), &args)?;
    let mut c = client(&opsflow.url()).await?;
    for i in 0..3 {
        c.append(v1::AppendRequest {
            stream: "note/quiet".into(),
            expected: None,
            events: vec![event("quiet", &format!("q{i}"), "note.added", "{}")],
        })
        .await?;
    }
    let mut stream = js.get_stream("OPSFLOW_LOG").await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while stream.info().await?.state.messages < 3 {
        anyhow::ensure!(Instant::now() < deadline, "outbound did not publish the 3 events");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the checkpoint interval and the duplicate window, with no append since.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    opsflow.kill();
    let opsflow = OpsflowProcess::start_with(dir.path(), &args)?;
    wait_ready(&opsflow.url()).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        stream.info().await?.state.messages,
        3,
        "events published before the crash were published again"
    );
    drop(opsflow);
    Ok(())
}

/// Shutdown while NATS is unreachable ends (it used to wait for the connection in
/// the last flushes): ingest setup, request/reply and outbound let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_an_unreachable_nats() -> anyhow::Result<()> {
    let mut nats = NatsServer::start()?;
    let server = TestServer::start_with(|c| c.nats = Some(NatsConfig::url(nats.url()))).await?;
    wait_ready(&server.url()).await?;
    let mut client = client(&server.url()).await?;
    client
        .append(v1::AppendRequest {
            stream: "order/1".into(),
            events: vec![event("test", "1", "thing.happened", "{}")],
            expected: None,
        })
        .await?;
    nats.stop();
    let stopped = tokio::time::timeout(Duration::from_secs(60), server.shutdown()).await;
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "shutdown did not finish with NATS down: {stopped:?}"
    );
    Ok(())
}

/// Events committed while NATS is unreachable are published once it is back, even
/// across a restart of opsflow in between: the outbound checkpoint never moves past
/// a publish the server has not confirmed (it used to, for a core publish into the
/// client's buffer, and a type first seen while disconnected was taken as captured
/// by no stream). With a stream capturing `opsflow.log.>`, and without (core
/// publishes, to a subscriber).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_publishes_what_was_committed_while_nats_was_down() -> anyhow::Result<()> {
    // A core subscriber sees only what comes after it subscribes, so opsflow staying
    // up (it could publish before the subscriber is back) is tried with a stream.
    for (captured, restarted) in [(true, true), (false, true), (true, false)] {
        committed_while_nats_was_down(captured, restarted).await.map_err(|e| {
            e.context(format!(
                "captured by a stream: {captured}, opsflow restarted: {restarted}"
            ))
        })?;
    }
    Ok(())
}

async fn committed_while_nats_was_down(captured: bool, restarted: bool) -> anyhow::Result<()> {
    let mut nats = NatsServer::start()?;
    if captured {
        // A short duplicate window: a re-publish of `a` would be kept, not dropped.
        let stream_config = jetstream::stream::Config {
            duplicate_window: Duration::from_millis(100),
            ..outbound_capture()
        };
        jetstream::new(async_nats::connect(nats.url()).await?)
            .create_stream(stream_config)
            .await?;
    }
    // What reaches `opsflow.log.>`: the stream's messages, or a subscriber's.
    let published = async |nats: &NatsServer, subscriber: Option<&mut async_nats::Subscriber>, at_least: usize| {
        let mut ids = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        match subscriber {
            Some(sub) => {
                while ids.len() < at_least && Instant::now() < deadline {
                    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
                        ids.extend(m.headers.and_then(|h| h.get("Nats-Msg-Id").map(|v| v.to_string())));
                    }
                }
                // Anything published twice would come within this.
                while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
                    ids.extend(m.headers.and_then(|h| h.get("Nats-Msg-Id").map(|v| v.to_string())));
                }
            }
            None => {
                let js = jetstream::new(async_nats::connect(nats.url()).await?);
                let mut stream = js.get_stream("OPSFLOW_LOG").await?;
                while (stream.info().await?.state.messages as usize) < at_least && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                for seq in 1..=stream.info().await?.state.messages {
                    let m = stream.get_raw_message(seq).await?;
                    ids.extend(m.headers.get("Nats-Msg-Id").map(|v| v.to_string()));
                }
            }
        }
        anyhow::Ok(ids)
    };
    let subscribe = async |nats: &NatsServer| -> anyhow::Result<Option<async_nats::Subscriber>> {
        if captured {
            return Ok(None);
        }
        let nc = async_nats::connect(nats.url()).await?;
        let sub = nc.subscribe("opsflow.log.>").await?;
        nc.flush().await?;
        Ok(Some(sub))
    };
    let mut sub = subscribe(&nats).await?;
    let dir = tempfile::tempdir()?;
    let args = ["--nats", &nats.url()];
    let mut opsflow = OpsflowProcess::start_with(dir.path(), &args)?;
    wait_ready(&opsflow.url()).await?;
    let mut c = client(&opsflow.url()).await?;
    let mut append = async |id: &str, event_type: &str| {
        c.append(v1::AppendRequest {
            stream: "note/down".into(),
            expected: None,
            events: vec![event("down", id, event_type, "{}")],
        })
        .await
    };
    append("a", "note.added").await?;
    assert_eq!(published(&nats, sub.as_mut(), 1).await?, ["1"]);
    // Past the checkpoint interval: `a` is confirmed and checkpointed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // NATS goes away; a new type and a known one are committed; opsflow stops (or
    // stays up).
    nats.stop();
    append("b", "note.moved").await?;
    append("c", "note.added").await?;
    append("d", "note.moved").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    if restarted {
        let started = Instant::now();
        assert!(
            opsflow.terminate(Duration::from_secs(30))?,
            "opsflow did not stop cleanly"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "shutdown waited {:?} for NATS",
            started.elapsed()
        );
    }
    // Both come back: every event is published, in position order, `a` once.
    nats.restart()?;
    let mut sub = subscribe(&nats).await?;
    if restarted {
        opsflow = OpsflowProcess::start_with(dir.path(), &args)?;
        wait_ready(&opsflow.url()).await?;
    }
    let expected: &[&str] = if captured {
        &["1", "2", "3", "4"]
    } else {
        &["2", "3", "4"]
    };
    let ids = published(&nats, sub.as_mut(), expected.len()).await?;
    if restarted {
        assert_eq!(
            ids, expected,
            "an event committed while NATS was down is missing, or published twice"
        );
    } else {
        // `a` was confirmed and checkpointed before NATS went away: it is never
        // sent again. What was committed while NATS was down may come twice (the
        // session that lost its connection may have sent it before the next one
        // starts again from the checkpoint; a stream within its duplicate window
        // keeps one), but in position order.
        assert_eq!(
            ids.iter().filter(|id| *id == "1").count(),
            1,
            "`a` published again: {ids:?}"
        );
        let mut first: Vec<&str> = Vec::new();
        for id in &ids {
            if !first.contains(&id.as_str()) {
                first.push(id);
            }
        }
        assert_eq!(
            first, expected,
            "an event committed while NATS was down is missing, or out of order: {ids:?}"
        );
    }
    drop(opsflow);
    Ok(())
}

/// An event whose outbound CloudEvent does not fit in a NATS message goes out
/// without its data (saying so), and the events after it follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_publishes_an_event_too_large_for_nats_without_its_data() -> anyhow::Result<()> {
    outbound_too_large("max_payload: 8192", None).await
}

/// The same against a capturing stream's own `max_msg_size`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_publishes_an_event_too_large_for_its_stream_without_its_data() -> anyhow::Result<()> {
    outbound_too_large("", Some(8192)).await
}

async fn outbound_too_large(nats_config: &str, stream_limit: Option<i32>) -> anyhow::Result<()> {
    let nats = NatsServer::start_with_config(nats_config)?;
    let nc = async_nats::connect(nats.url()).await?;
    if let Some(limit) = stream_limit {
        jetstream::new(nc.clone())
            .create_stream(jetstream::stream::Config {
                max_message_size: limit,
                ..outbound_capture()
            })
            .await?;
    }
    let mut out = nc.subscribe("opsflow.log.>").await?;
    nc.flush().await?;
    let server = TestServer::start_with(|c| c.nats = Some(NatsConfig::url(nats.url()))).await?;
    wait_ready(&server.url()).await?;
    let mut c = client(&server.url()).await?;
    let big = json!({ "order_id": "BIG-1", "note": "x".repeat(20_000) }).to_string();
    for (id, data) in [("big", big.as_str()), ("small", r#"{"order_id":"S-1"}"#)] {
        c.append(v1::AppendRequest {
            stream: format!("order/{id}"),
            expected: None,
            events: vec![opsflow_e2e::event("out", id, "custom.note", data)],
        })
        .await?;
    }
    let got = [next_within(&mut out, 20).await?, next_within(&mut out, 20).await?];
    let omitted = header_of(&got[0], "Opsflow-Payload-Omitted");
    assert!(omitted.contains("read position 1 from the log"), "{omitted}");
    let first: serde_json::Value = serde_json::from_slice(&got[0].payload)?;
    assert_eq!((first["id"].as_str(), first.get("data")), (Some("big"), None));
    let second: serde_json::Value = serde_json::from_slice(&got[1].payload)?;
    assert_eq!(second["data"]["order_id"], "S-1");
    Ok(())
}

/// A stream made while outbound runs gets JetStream publishes from then on (it is
/// looked up again when JetStream says a stream was made): when it is full, outbound
/// stops at the refused position and /readyz says so. Outbound used to go on with
/// core publishes, which the full stream dropped unseen (a gap for good, while
/// /readyz read ready).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_made_while_outbound_runs_is_published_to_with_acknowledgements() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let opsflow = opsflow_on(&nats, dir.path(), &[]).await?;
    let mut c = client(&opsflow.url()).await?;
    // Before the stream: core publishes (the type's outlet is looked up).
    append_order(&mut c, "late", "order/late", 0).await?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let mut stream = js
        .create_stream(jetstream::stream::Config {
            max_messages: 20,
            discard: jetstream::stream::DiscardPolicy::New,
            ..outbound_capture()
        })
        .await?;
    // Within the time outbound goes by what it looked up without an advisory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 1..=40 {
        append_order(&mut c, "late", "order/late", i).await?;
    }
    assert_eq!(stored_once(&mut stream, 20).await?, 20);
    not_ready_saying(&opsflow, "outbound", "maximum messages exceeded").await?;
    let positions = positions_in(&stream, 20).await?;
    assert_eq!(
        positions,
        (2..=21).collect::<Vec<_>>(),
        "in order, from the first after the stream was made"
    );
    Ok(())
}
