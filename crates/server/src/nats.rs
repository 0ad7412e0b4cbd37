//! The NATS transport's wiring: its connections and tasks, watched by a supervisor
//! that starts a connection's tasks again on a new connection when its client
//! stops. Ingest and outbound share a connection; request/reply has one of its own,
//! so that a request that stops its client does not interrupt them.
//!
//! async-nats's connection task panics on a header value holding a bare CR, which
//! any raw client can publish; its client then still reads as connected and does
//! nothing. Starting again on new connections is what a restart of opsflow would
//! do: the request that carried it is gone (core NATS), and a stored message that
//! carried it is read raw by ingest's next session and dead-lettered.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use opsflow_log::EventLog;
use tokio_util::sync::CancellationToken;

use crate::health::{TaskState, Tasks};

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

    fn update(&self, change: impl FnOnce(&mut NatsState)) {
        change(&mut self.0.write().unwrap_or_else(|e| e.into_inner()));
    }
}

/// A task that appends to the log, and its name (for the stop's warnings).
type Transport = (&'static str, tokio::task::JoinHandle<()>);

/// How long stopping waits for each transport task before aborting it.
const TASK_STOP: Duration = Duration::from_secs(10);

/// The pause before a connection's tasks start again: doubled for each restart of
/// the same connection within [`RESTARTS_WINDOW`] of the one before, up to
/// [`RESTART_PAUSE_MAX`], so that a client stopped again and again does not spin.
const RESTART_PAUSE: Duration = Duration::from_secs(1);
const RESTART_PAUSE_MAX: Duration = Duration::from_secs(30);
const RESTARTS_WINDOW: Duration = Duration::from_secs(60);

/// Connects to NATS (in the background), starts the transport tasks and their
/// supervisor (`nats-monitor`), whose handle stops them all at shutdown.
pub(crate) async fn start(
    config: &opsflow_nats::NatsConfig,
    log: &EventLog,
    tasks: &Tasks,
    shutdown: &CancellationToken,
) -> anyhow::Result<(NatsHandle, tokio::task::JoinHandle<()>)> {
    // On /metrics from the start, at 0, so that the first one shows in `increase()`.
    ::metrics::counter!("opsflow_nats_transport_restarts_total").increment(0);
    let ready = opsflow_nats::Readiness::default();
    let start = Starter {
        config: config.clone(),
        log: log.clone(),
        tasks: tasks.clone(),
        ready: ready.clone(),
        shutdown: shutdown.clone(),
    };
    let mut units = vec![start.unit(Part::Shared).await?];
    if config.request_reply.enabled {
        units.push(start.unit(Part::Requests).await?);
    }
    let state = NatsState {
        client: units[0].client.clone(),
        requests: units.get(1).map(|u| u.client.clone()),
        ready,
        wanted: NatsWanted {
            ingest: config.ingest.enabled,
            requests: config.request_reply.enabled,
            outbound: config.outbound.enabled,
        },
    };
    let handle = NatsHandle(Arc::new(RwLock::new(state)));
    tracing::info!(urls = %config.display_urls(), "nats transport started");
    let current = handle.clone();
    let supervisor = async move {
        loop {
            let stopped = tokio::select! {
                biased;
                _ = start.shutdown.cancelled() => None,
                stopped = watch(&units) => Some(stopped),
            };
            let Some((at, why)) = stopped else {
                for unit in units {
                    unit.stop(&start.tasks).await;
                }
                return Ok(());
            };
            let unit = units.remove(at);
            let part = unit.part;
            let Some(unit) = start.again(unit, &why).await else {
                for unit in units {
                    unit.stop(&start.tasks).await;
                }
                return Ok(());
            };
            current.update(|state| match part {
                Part::Shared => state.client = unit.client.clone(),
                Part::Requests => state.requests = Some(unit.client.clone()),
            });
            units.insert(at, unit);
        }
    };
    Ok((handle, tasks.spawn("nats-monitor", supervisor)))
}

/// Returns when the client of one of `units` has stopped: its index, and why. Sets
/// the connected gauge meanwhile.
async fn watch(units: &[Unit]) -> (usize, String) {
    loop {
        let up = units.iter().all(|u| opsflow_nats::is_connected(&u.client));
        ::metrics::gauge!("opsflow_nats_connected").set(if up { 1.0 } else { 0.0 });
        // A client whose connection task died still reads as connected and does
        // nothing: found by its commands no longer going anywhere.
        for (at, unit) in units.iter().enumerate() {
            if let Some(stopped) = opsflow_nats::client_stopped(&unit.client).await {
                ::metrics::gauge!("opsflow_nats_connected").set(0.0);
                return (at, stopped);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The tasks of one connection.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Part {
    /// Ingest and outbound, on the connection they share.
    Shared,
    /// Request/reply, on its own connection.
    Requests,
}

/// What starting a connection's tasks takes.
struct Starter {
    config: opsflow_nats::NatsConfig,
    log: EventLog,
    tasks: Tasks,
    ready: opsflow_nats::Readiness,
    shutdown: CancellationToken,
}

impl Starter {
    /// Connects (the connection itself is made in the background), then starts
    /// the part's tasks.
    async fn unit(&self, part: Part) -> anyhow::Result<Unit> {
        let (config, ready, log) = (&self.config, &self.ready, &self.log);
        let stop = self.shutdown.child_token();
        let mut handles = Vec::new();
        let (name, client) = match part {
            Part::Shared => {
                let client = opsflow_nats::connect(config, &ready.connection).await?;
                if config.ingest.enabled {
                    spawn(
                        &self.tasks,
                        &mut handles,
                        "nats-ingest",
                        opsflow_nats::run_ingest(
                            client.clone(),
                            config.clone(),
                            log.clone(),
                            stop.clone(),
                            ready.clone(),
                        ),
                    );
                }
                if config.outbound.enabled {
                    spawn(
                        &self.tasks,
                        &mut handles,
                        "nats-outbound",
                        opsflow_nats::run_outbound(
                            client.clone(),
                            config.outbound.clone(),
                            log.clone(),
                            stop.clone(),
                            ready.clone(),
                        ),
                    );
                }
                (config.name.clone(), client)
            }
            Part::Requests => {
                // A connection of its own: a request the client cannot read
                // (malformed headers from a raw client) drops or stops the
                // connection it arrives on, and must not interrupt ingest and
                // outbound with it.
                let requests = opsflow_nats::NatsConfig {
                    name: format!("{}-requests", config.name),
                    ..config.clone()
                };
                let client = opsflow_nats::connect(&requests, &ready.requests_connection).await?;
                spawn(
                    &self.tasks,
                    &mut handles,
                    "nats-request-reply",
                    opsflow_nats::run_request_reply(
                        client.clone(),
                        config.request_reply.clone(),
                        config.dead_letters.clone(),
                        config.ingest.replicas,
                        log.clone(),
                        stop.clone(),
                        ready.clone(),
                    ),
                );
                (requests.name, client)
            }
        };
        Ok(Unit {
            part,
            name,
            client,
            stop,
            handles,
            restarts: 0,
            last_restart: None,
        })
    }

    /// Stops `unit`, whose client stopped (`why`), and starts its tasks again on a
    /// new connection after a pause, retrying until it can; `None` at shutdown.
    async fn again(&self, unit: Unit, why: &str) -> Option<Unit> {
        ::metrics::counter!("opsflow_nats_transport_restarts_total").increment(1);
        tracing::error!(
            connection = %unit.name, error = %why,
            "the NATS client stopped, most likely at a message it could not read; starting its tasks again on a \
             new connection"
        );
        let flags = match unit.part {
            Part::Shared => vec![&self.ready.ingest, &self.ready.outbound],
            Part::Requests => vec![&self.ready.requests],
        };
        let problem = format!(
            "the NATS client of connection {} stopped ({why}); starting again",
            unit.name
        );
        for flag in &flags {
            flag.fail(problem.clone());
        }
        let recent = unit.last_restart.is_some_and(|at| at.elapsed() < RESTARTS_WINDOW);
        let restarts = if recent { unit.restarts + 1 } else { 0 };
        let (part, name) = (unit.part, unit.name.clone());
        unit.stop(&self.tasks).await;
        let mut pause = restart_pause(restarts);
        loop {
            self.shutdown.run_until_cancelled(tokio::time::sleep(pause)).await?;
            match self.unit(part).await {
                Ok(mut unit) => {
                    unit.restarts = restarts;
                    unit.last_restart = Some(Instant::now());
                    return Some(unit);
                }
                Err(e) => {
                    tracing::error!(connection = %name, error = %format!("{e:#}"), "cannot start the NATS tasks again; retrying");
                    for flag in &flags {
                        flag.fail(format!("cannot start again on a new connection ({e:#}); retrying"));
                    }
                    pause = pause.saturating_mul(2).min(RESTART_PAUSE_MAX);
                }
            }
        }
    }
}

/// Starts `run` as the task `name`, kept in `handles`.
fn spawn<F>(tasks: &Tasks, handles: &mut Vec<Transport>, name: &'static str, run: F)
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    handles.push((name, tasks.spawn(name, run)));
}

/// A connection and its tasks, stopped by `stop`.
struct Unit {
    part: Part,
    /// The connection's name.
    name: String,
    client: async_nats::Client,
    stop: CancellationToken,
    handles: Vec<Transport>,
    /// Restarts of this connection in a row, each within [`RESTARTS_WINDOW`] of
    /// the one before, and when the last was.
    restarts: u32,
    last_restart: Option<Instant>,
}

impl Unit {
    /// Stops the tasks and waits for each; one still running after [`TASK_STOP`]
    /// is aborted, so that it never runs beside its successor (and reported so in
    /// `tasks`).
    async fn stop(self, tasks: &Tasks) {
        self.stop.cancel();
        for (name, mut task) in self.handles {
            if tokio::time::timeout(TASK_STOP, &mut task).await.is_err() {
                tracing::warn!(
                    task = name,
                    "a NATS transport task did not stop within 10 s; aborting it"
                );
                task.abort();
                let _ = task.await;
                tasks.set(name, TaskState::Failed("did not stop within 10 s; aborted".into()));
            }
        }
    }
}

/// The pause before a restart that follows `restarts` others in a row.
fn restart_pause(restarts: u32) -> Duration {
    RESTART_PAUSE
        .saturating_mul(1 << restarts.min(5))
        .min(RESTART_PAUSE_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_in_a_row_wait_longer_up_to_the_most() {
        let secs: Vec<u64> = [0, 1, 2, 3, 4, 5, 6, 1000].map(|n| restart_pause(n).as_secs()).to_vec();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
