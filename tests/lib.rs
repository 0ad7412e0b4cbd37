//! End-to-end tests for opsflow (see `api/`, `binary.rs`, `crash.rs`): real gRPC
//! and HTTP clients against in-process servers and the real `opsflow` binary.
//! This library holds the helpers they share.

use opsflow_proto::v1::{self, event_log_client::EventLogClient, expected_version::Kind};
use tonic::transport::Channel;

/// A gRPC client for `url`, retrying the connection for a few seconds.
pub async fn client(url: &str) -> anyhow::Result<EventLogClient<Channel>> {
    let mut last = None;
    for _ in 0..50 {
        match Channel::from_shared(url.to_owned())?.connect().await {
            Ok(ch) => return Ok(EventLogClient::new(ch)),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(anyhow::anyhow!("cannot connect to {url}: {last:?}"))
}

/// A JSON event with an explicit identity.
pub fn event(source: &str, id: &str, event_type: &str, data: &str) -> v1::ProposedEvent {
    v1::ProposedEvent {
        id: id.into(),
        source: source.into(),
        r#type: event_type.into(),
        content_type: "application/json".into(),
        data: data.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

pub fn exact(v: u64) -> Option<v1::ExpectedVersion> {
    Some(v1::ExpectedVersion {
        kind: Some(Kind::Exact(v)),
    })
}

pub fn no_stream() -> Option<v1::ExpectedVersion> {
    Some(v1::ExpectedVersion {
        kind: Some(Kind::NoStream(v1::expected_version::NoStream {})),
    })
}

/// Reads the whole log over gRPC.
pub async fn read_all(client: &mut EventLogClient<Channel>) -> anyhow::Result<Vec<v1::RecordedEvent>> {
    let mut out = Vec::new();
    let mut from = 1;
    loop {
        let request = v1::ReadRequest {
            from: Some(from),
            limit: 100_000,
            ..Default::default()
        };
        let mut stream = client.read(request).await?.into_inner();
        let before = out.len();
        while let Some(r) = stream.message().await? {
            if let Some(e) = r.event {
                from = e.position + 1;
                out.push(e);
            }
        }
        if out.len() == before {
            return Ok(out);
        }
    }
}

/// Waits until `GET /readyz` answers 200 (every configured part is serving).
pub async fn wait_ready(url: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{url}/readyz")).await {
            if r.status().is_success() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!("{url} not ready after 30 s: {}", r.text().await.unwrap_or_default());
            }
        } else if std::time::Instant::now() > deadline {
            anyhow::bail!("{url} not answering /readyz after 30 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Asserts that every metric family on `/metrics` (`metrics`, the text format) has
/// its `# HELP` line.
pub fn assert_described(metrics: &str) {
    for family in metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
    {
        assert!(
            metrics.lines().any(|l| l.starts_with(&format!("# HELP {family} "))),
            "{family} has no # HELP line"
        );
    }
}
