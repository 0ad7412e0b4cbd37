//! Crash safety: SIGKILL the server during concurrent appends, 20 times; after each
//! restart every acknowledged event is present at its position and the chain verifies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opsflow_e2e::{client, event, read_all};
use opsflow_proto::v1;
use opsflow_testkit::{OpsflowProcess, order_json};
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 20;
const WRITERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(2026);
    // Every acknowledged append: (position, id).
    let acked: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    for round in 0..ROUNDS {
        let mut server = OpsflowProcess::start(dir.path())?;
        let url = server.url();
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let url = url.clone();
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                let Ok(mut c) = client(&url).await else { return };
                for n in 0.. {
                    let id = format!("r{round}-w{w}-{n}");
                    let batch = 1 + (n % 3) as usize;
                    let events = (0..batch)
                        .map(|i| event("crash-test", &format!("{id}-{i}"), "order.placed", &order_json(&id, n)))
                        .collect();
                    let stream = format!("order/w{w}-{}", n % 5);
                    match c
                        .append(v1::AppendRequest {
                            stream,
                            expected: None,
                            events,
                        })
                        .await
                    {
                        Ok(r) => {
                            let r = r.into_inner();
                            if let Ok(mut a) = acked.lock() {
                                for (i, p) in r.positions.iter().enumerate() {
                                    a.push((*p, format!("{id}-{i}")));
                                }
                            }
                        }
                        Err(_) => return, // the server died
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..500))).await;
        server.kill();
        for w in writers {
            let _ = w.await;
        }

        let server = OpsflowProcess::start(dir.path())?;
        let mut c = client(&server.url()).await?;
        let events = read_all(&mut c).await?;
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.position, i as u64 + 1, "round {round}: positions are gapless");
        }
        let acked = acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
        assert!(!acked.is_empty() || round > 0);
        for (position, id) in &acked {
            let e = events.get(*position as usize - 1);
            assert_eq!(
                e.map(|e| e.id.as_str()),
                Some(id.as_str()),
                "round {round}: acknowledged {id} at {position} is lost"
            );
        }
        let mut audit = v1::audit_client::AuditClient::connect(server.url()).await?;
        let report = audit.verify(v1::VerifyRequest::default()).await?.into_inner();
        assert!(
            report.ok,
            "round {round}: chain broken at {}: {}",
            report.first_broken_position, report.reason
        );
        assert_eq!(report.events_checked, events.len() as u64);
        drop(server);
    }
    let total = acked.lock().map(|a| a.len()).unwrap_or(0);
    assert!(total > 1000, "only {total} acknowledged events over {ROUNDS} rounds");
    Ok(())
}

/// Views after SIGKILL: the live views restored from their checkpoint and caught up
/// equal views rebuilt from position 1 (nothing double-counted, nothing missed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_after_sigkill_equal_a_rebuild() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(4);
    let http = reqwest::Client::new();
    for round in 0..5 {
        // The demo appends realistic catalog events; kill it at a random moment.
        let mut server = OpsflowProcess::start_with(dir.path(), &["--demo", "--demo-rate", "400"])?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(1500..3000))).await;
        server.kill();

        let server = OpsflowProcess::start(dir.path())?;
        let url = server.url();
        let ready = wait_views_caught_up(&http, &url).await?;
        assert!(ready > 0, "round {round}: the demo wrote nothing");
        let live_kpis: serde_json::Value = http.get(format!("{url}/v1/kpis")).send().await?.json().await?;
        let live_controls: serde_json::Value = http.get(format!("{url}/v1/compliance")).send().await?.json().await?;
        let names: Vec<String> = live_kpis["kpis"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(live_controls["controls"].as_array().into_iter().flatten())
            .filter_map(|v| v["name"].as_str().map(str::to_owned))
            .collect();
        assert!(names.len() >= 20, "round {round}: {names:?}");
        for name in &names {
            let r = http.post(format!("{url}/v1/views/{name}/rebuild")).send().await?;
            assert!(
                r.status().is_success(),
                "round {round}: rebuild {name}: {}",
                r.text().await?
            );
        }
        let rebuilt_kpis: serde_json::Value = http.get(format!("{url}/v1/kpis")).send().await?.json().await?;
        let rebuilt_controls: serde_json::Value = http.get(format!("{url}/v1/compliance")).send().await?.json().await?;
        assert_eq!(rebuilt_kpis["position"], live_kpis["position"], "round {round}");
        assert!(
            rebuilt_kpis == live_kpis,
            "round {round}: KPIs restored after SIGKILL differ from a rebuild"
        );
        assert!(
            rebuilt_controls == live_controls,
            "round {round}: controls restored after SIGKILL differ from a rebuild"
        );
        drop(server);
    }
    Ok(())
}

/// Waits until `/readyz` shows the views at the log's head; returns the head.
async fn wait_views_caught_up(http: &reqwest::Client, url: &str) -> anyhow::Result<u64> {
    for _ in 0..200 {
        let ready: serde_json::Value = http.get(format!("{url}/readyz")).send().await?.json().await?;
        let head = ready["log"]["head"].as_u64().unwrap_or(0);
        if ready["views"]["lag"] == 0 && ready["views"]["rebuilding"].as_array().is_some_and(Vec::is_empty) {
            return Ok(head);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the views did not catch up with the log")
}
