//! The NATS transport's wiring: its connections and tasks (ingest, request/reply,
//! outbound), watched by a supervisor that starts them all again on new
//! connections when a client stops.
//!
//! async-nats's connection task panics on a header value holding a bare CR, which
//! any raw client can publish; its client then still reads as connected and does
//! nothing. Starting again on new connections is what a restart of opsflow would
//! do: the request that carried it is gone (core NATS), and a stored message that
//! carried it is read raw by ingest's next session and dead-lettered.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use opsflow_log::EventLog;
use tokio_util::sync::CancellationToken;

use crate::health::Tasks;

/// The NATS clients and whether each enabled task is doing its job.
#[derive(Clone)]
pub(crate) struct NatsState {
    pub client: async_nats::Client,
    /// Request/reply's connection of its own, when it is on.
    pub requests: Option<async_nats::Client>,
    pub ready: opsflow_nats::Readiness,
    pub wanted: NatsWanted,
}

#[derive(Clone, Copy)]
pub(crate) struct NatsWanted {
    pub ingest: bool,
    pub requests: bool,
    pub outbound: bool,
}

/// The transport's state now, for `/readyz` and the shutdown: replaced when the
/// supervisor starts the transport again.
#[derive(Clone)]
pub(crate) struct NatsHandle(Arc<RwLock<NatsState>>);

impl NatsHandle {
    pub fn current(&self) -> NatsState {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, state: NatsState) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = state;
    }
}

/// A task that appends to the log, and its name (for the shutdown's warnings).
pub(crate) type Transport = (&'static str, tokio::task::JoinHandle<()>);

/// How long stopping waits for each transport task.
const TASK_STOP: Duration = Duration::from_secs(10);

/// The least time between two starts of the transport, so that a client stopped
/// again and again does not spin.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// Connects to NATS (in the background), starts the transport tasks and their
/// supervisor (`nats-monitor`), whose handle stops them all at shutdown.
pub(crate) async fn start(
    config: &opsflow_nats::NatsConfig,
    log: &EventLog,
    tasks: &Tasks,
    shutdown: &CancellationToken,
) -> anyhow::Result<(NatsHandle, Transport)> {
    // On /metrics from the start, at 0, so that the first one shows in `increase()`.
    ::metrics::counter!("opsflow_nats_transport_restarts_total").increment(0);
    let mut running = Incarnation::start(config, log, tasks, shutdown).await?;
    let handle = NatsHandle(Arc::new(RwLock::new(running.state.clone())));
    tracing::info!(urls = %config.display_urls(), "nats transport started");
    let (config, log, watched_tasks, token, current) = (
        config.clone(),
        log.clone(),
        tasks.clone(),
        shutdown.clone(),
        handle.clone(),
    );
    let supervisor = async move {
        loop {
            let stopped = tokio::select! {
                _ = token.cancelled() => None,
                stopped = running.watch() => Some(stopped),
            };
            let Some((name, why)) = stopped else {
                running.stop().await;
                return Ok(());
            };
            ::metrics::counter!("opsflow_nats_transport_restarts_total").increment(1);
            tracing::error!(
                connection = %name, error = %why,
                "the NATS client stopped, most likely at a message it could not read; starting the NATS transport \
                 again on new connections"
            );
            let problem = format!("the NATS client of connection {name} stopped ({why}); starting again");
            for flag in [
                &running.state.ready.ingest,
                &running.state.ready.requests,
                &running.state.ready.outbound,
            ] {
                flag.fail(problem.clone());
            }
            running.stop().await;
            if token
                .run_until_cancelled(tokio::time::sleep(RESTART_PAUSE))
                .await
                .is_none()
            {
                return Ok(());
            }
            running = Incarnation::start(&config, &log, &watched_tasks, &token).await?;
            current.replace(running.state.clone());
        }
    };
    Ok((handle, ("nats-monitor", tasks.spawn("nats-monitor", supervisor))))
}

/// One start of the transport: its connections and tasks, stopped by `stop`.
struct Incarnation {
    state: NatsState,
    /// The connections watched, by name.
    watched: Vec<(String, async_nats::Client)>,
    stop: CancellationToken,
    handles: Vec<Transport>,
}

impl Incarnation {
    async fn start(
        config: &opsflow_nats::NatsConfig,
        log: &EventLog,
        tasks: &Tasks,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Incarnation> {
        let stop = shutdown.child_token();
        let ready = opsflow_nats::Readiness::default();
        let client = opsflow_nats::connect(config, &ready.connection).await?;
        let mut requests_client = None;
        let mut watched = vec![(config.name.clone(), client.clone())];
        let mut handles = Vec::new();
        let mut spawn = |name: &'static str, run: Task| handles.push((name, tasks.spawn(name, run)));
        if config.ingest.enabled {
            spawn(
                "nats-ingest",
                Box::pin(opsflow_nats::run_ingest(
                    client.clone(),
                    config.clone(),
                    log.clone(),
                    stop.clone(),
                    ready.clone(),
                )),
            );
        }
        if config.request_reply.enabled {
            // A connection of its own: a request the client cannot read (malformed
            // headers from a raw client) drops the connection it arrives on, and must
            // not interrupt ingest and outbound with it.
            let requests = opsflow_nats::NatsConfig {
                name: format!("{}-requests", config.name),
                ..config.clone()
            };
            let name = requests.name.clone();
            let requests = opsflow_nats::connect(&requests, &ready.requests_connection).await?;
            watched.push((name, requests.clone()));
            requests_client = Some(requests.clone());
            spawn(
                "nats-request-reply",
                Box::pin(opsflow_nats::run_request_reply(
                    requests,
                    config.request_reply.clone(),
                    config.dead_letters.clone(),
                    config.ingest.replicas,
                    log.clone(),
                    stop.clone(),
                    ready.clone(),
                )),
            );
        }
        if config.outbound.enabled {
            spawn(
                "nats-outbound",
                Box::pin(opsflow_nats::run_outbound(
                    client.clone(),
                    config.outbound.clone(),
                    log.clone(),
                    stop.clone(),
                    ready.clone(),
                )),
            );
        }
        let state = NatsState {
            client,
            requests: requests_client,
            ready,
            wanted: NatsWanted {
                ingest: config.ingest.enabled,
                requests: config.request_reply.enabled,
                outbound: config.outbound.enabled,
            },
        };
        Ok(Incarnation {
            state,
            watched,
            stop,
            handles,
        })
    }

    /// Returns when a client has stopped: its connection's name, and why. Sets the
    /// connected gauge meanwhile.
    async fn watch(&self) -> (String, String) {
        loop {
            let up = if opsflow_nats::is_connected(&self.state.client) {
                1.0
            } else {
                0.0
            };
            ::metrics::gauge!("opsflow_nats_connected").set(up);
            // A client whose connection task died still reads as connected and does
            // nothing: found by its commands no longer going anywhere.
            for (name, client) in &self.watched {
                if let Some(stopped) = opsflow_nats::client_stopped(client).await {
                    ::metrics::gauge!("opsflow_nats_connected").set(0.0);
                    return (name.clone(), stopped);
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Stops the tasks and waits for each (at most [`TASK_STOP`]).
    async fn stop(self) {
        self.stop.cancel();
        for (name, task) in self.handles {
            if tokio::time::timeout(TASK_STOP, task).await.is_err() {
                tracing::warn!(task = name, "a NATS transport task did not stop within 10 s");
            }
        }
    }
}

type Task = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>;
