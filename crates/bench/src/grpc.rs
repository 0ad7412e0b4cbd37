//! `grpc-single` and `grpc-batch`: durable appends through an in-process server,
//! over real TCP connections on 127.0.0.1. The clients are tonic's generated
//! `EventLogClient` over plain hyper HTTP/2 connections ([`H2Channel`]).

use anyhow::{Context, bail};
use opsflow_proto::v1;
use opsflow_proto::v1::event_log_client::EventLogClient;
use opsflow_server::{Config, Server};

use crate::event;
use crate::h2::H2Channel;
use crate::load::{Appender, Measurement, Phases, closed_loop};
use crate::report::{Row, count};

/// TCP connections the clients share round-robin (HTTP/2 multiplexes the rest).
const CONNECTIONS: usize = 16;
/// Streams each client spreads its appends over.
const STREAMS_PER_CLIENT: u64 = 100;
const BATCH_EVENTS: usize = 100;
const BATCH_CLIENTS: usize = 16;

/// One event per append with 1, 16 and 256 concurrent clients.
pub async fn single(phases: Phases) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for clients in [1, 16, 256] {
        let name = format!("grpc-single, {clients} client{}", if clients == 1 { "" } else { "s" });
        eprintln!("{name}");
        let mut m = level(clients, 1, phases).await?;
        let figure = format!("{} appends/s; {}", count(m.appends_per_sec()), m.latency_summary());
        let row = Row::new(name, figure).note(m.activity_summary());
        rows.push(match clients {
            16 => {
                let p99 = m.latencies.quantile_ms(0.99);
                row.target("p99 ≤ 10 ms", p99.is_some_and(|ms| ms <= 10.0))
            }
            256 => row.target("≥ 30,000 appends/s", m.appends_per_sec() >= 30_000.0),
            _ => row,
        });
    }
    Ok(rows)
}

/// 100-event appends with 16 concurrent clients.
pub async fn batch(phases: Phases) -> anyhow::Result<Vec<Row>> {
    eprintln!("grpc-batch, {BATCH_CLIENTS} clients × {BATCH_EVENTS}-event appends");
    let mut m = level(BATCH_CLIENTS, BATCH_EVENTS, phases).await?;
    let figure = format!(
        "{} events/s ({} appends/s; {})",
        count(m.events_per_sec()),
        count(m.appends_per_sec()),
        m.latency_summary()
    );
    let met = m.events_per_sec() >= 150_000.0;
    let name = format!("grpc-batch, {BATCH_CLIENTS} clients × {BATCH_EVENTS}-event appends");
    let row = Row::new(name, figure).note(m.activity_summary());
    Ok(vec![row.target("≥ 150,000 events/s", met)])
}

/// Runs one load level against a fresh server with an empty log.
async fn level(clients: usize, batch: usize, phases: Phases) -> anyhow::Result<Measurement> {
    let data_dir = tempfile::tempdir().context("cannot create a temporary data directory")?;
    let config = Config {
        listen: ([127, 0, 0, 1], 0).into(),
        data_dir: data_dir.path().to_path_buf(),
        ..Config::default()
    };
    // OPSFLOW_BENCH_SERVER=http://host:port loads a server that is already running
    // (another process or machine), so the load generator does not share its CPU.
    let external = std::env::var("OPSFLOW_BENCH_SERVER").ok();
    let server = match external {
        Some(_) => None,
        None => Some(Server::start(&config).await.context("cannot start the server")?),
    };
    let uri = match (&external, &server) {
        (Some(url), _) => url.clone(),
        (None, Some(server)) => format!("http://{}", server.addr()),
        (None, None) => anyhow::bail!("no server to load"),
    };
    let origin: http::Uri = uri.parse().with_context(|| format!("bad server URL {uri}"))?;
    let authority = origin
        .authority()
        .with_context(|| format!("server URL {uri} has no host:port"))?;
    let addr: std::net::SocketAddr = tokio::net::lookup_host(authority.as_str())
        .await
        .with_context(|| format!("cannot resolve {uri}"))?
        .next()
        .with_context(|| format!("{uri} resolves to no address"))?;
    let mut channels = Vec::new();
    for _ in 0..clients.min(CONNECTIONS) {
        channels.push(H2Channel::connect(addr).await?);
    }
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let appenders = (0..clients)
        .map(|client| GrpcAppender {
            client: EventLogClient::with_origin(channels[client % channels.len()].clone(), origin.clone()),
            client_id: client,
            batch,
            run,
        })
        .collect();
    let measured = closed_loop(appenders, phases).await;
    drop(channels);
    if let Some(server) = server {
        server.shutdown().await.context("server shutdown")?;
    }
    measured
}

struct GrpcAppender {
    client: EventLogClient<H2Channel>,
    client_id: usize,
    batch: usize,
    /// Distinguishes runs against a server that outlives them.
    run: u128,
}

impl Appender for GrpcAppender {
    fn events_per_append(&self) -> u64 {
        self.batch as u64
    }

    async fn append(&mut self, seq: u64) -> anyhow::Result<()> {
        let c = self.client_id;
        let events = (0..self.batch)
            .map(|i| event::proto("opsflow-bench/grpc", format!("{:x}-c{c}-{seq}-{i}", self.run), seq))
            .collect();
        let request = v1::AppendRequest {
            stream: format!("bench/c{c}-{}", seq % STREAMS_PER_CLIENT),
            expected: Some(v1::ExpectedVersion {
                kind: Some(v1::expected_version::Kind::Any(v1::expected_version::Any {})),
            }),
            events,
        };
        let response = self.client.append(request).await.context("gRPC append")?.into_inner();
        if response.duplicate || response.positions.len() != self.batch {
            bail!(
                "append {seq} of client {c} was not recorded as {} new events: {response:?}",
                self.batch
            );
        }
        Ok(())
    }
}
