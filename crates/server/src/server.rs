//! Wiring: open the log, serve gRPC and HTTP on one address, shut down in order.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use opsflow_catalog::CatalogValidator;
use opsflow_log::{EventLog, EventValidator, LogOptions};
use opsflow_proto::v1::audit_server::AuditServer;
use opsflow_proto::v1::event_log_server::EventLogServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::grpc::{AuditService, EventLogService};
use crate::health::Tasks;
use crate::http::{HttpState, router};
use crate::views::ViewsService;
use crate::{Config, metrics};
use opsflow_proto::v1::views_server::ViewsServer;

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    log: EventLog,
    tasks: Tasks,
    shutdown: CancellationToken,
    serving: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The views and their tasks: stopped (and checkpointed) before the log closes.
    views: crate::views::RunningViews,
    /// The NATS transport, and its supervisor, whose tasks append to the log:
    /// stopped before it closes.
    nats: Option<(crate::nats::NatsHandle, tokio::task::JoinHandle<()>)>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Server {
    /// Opens the log and starts serving. `config.listen` may use port 0.
    pub async fn start(config: &Config) -> anyhow::Result<Server> {
        metrics::install();
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
        let options = LogOptions {
            limits: config.log.limits(),
            cache_bytes: config.log.cache_mib.saturating_mul(1 << 20),
            validator: config
                .log
                .validate_catalog
                .then(|| Arc::new(CatalogValidator) as Arc<dyn EventValidator>),
            ..LogOptions::default()
        };
        let log = EventLog::open_async(config.data_dir.join("log"), options)
            .await
            .with_context(|| format!("cannot open the event log in {}", config.data_dir.display()))?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let tasks = Tasks::default();

        let max_message = usize::try_from(config.log.max_append_bytes.saturating_mul(2))
            .unwrap_or(usize::MAX)
            .max(4 << 20);
        let health_reporter = tonic_health::server::HealthReporter::new();
        let health_service = crate::grpc_health::service(&health_reporter, shutdown.clone());
        health_reporter.set_serving::<EventLogServer<EventLogService>>().await;
        health_reporter.set_serving::<AuditServer<AuditService>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(opsflow_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("cannot build the gRPC reflection service")?;
        let reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(opsflow_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .context("cannot build the gRPC reflection service")?;
        let event_log = EventLogServer::new(EventLogService {
            log: log.clone(),
            shutdown: shutdown.clone(),
        })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message)
        .accept_compressed(GZIP)
        .send_compressed(GZIP);
        let audit = AuditServer::new(AuditService { log: log.clone() })
            .accept_compressed(GZIP)
            .send_compressed(GZIP);
        let views = crate::views::start(config, &log, &tasks, &shutdown).await?;
        health_reporter.set_serving::<ViewsServer<ViewsService>>().await;
        let views_grpc = ViewsServer::new(ViewsService {
            views: views.views.clone(),
            shutdown: shutdown.clone(),
        })
        .accept_compressed(GZIP)
        .send_compressed(GZIP);
        let grpc = tonic::service::Routes::new(event_log)
            .add_service(audit)
            .add_service(views_grpc)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .into_axum_router()
            .layer(axum::middleware::map_response(
                crate::error::decode_errors_are_invalid_argument,
            ))
            .layer(axum::middleware::from_fn(crate::error::unimplemented_names_the_method));
        let nats = match &config.nats {
            Some(nats_config) => Some(crate::nats::start(nats_config, &log, &tasks, &shutdown).await?),
            None => None,
        };
        let http_state = HttpState {
            log: log.clone(),
            tasks: tasks.clone(),
            nats: nats.as_ref().map(|(handle, _)| handle.clone()),
            definitions: views.status.clone(),
            gauges: views.gauges.clone(),
            views: views.views.clone(),
        };
        let views_http = crate::views::router(crate::views::ViewsHttp {
            views: views.views.clone(),
            shutdown: shutdown.clone(),
        });
        let app = grpc
            .merge(router(http_state))
            .merge(views_http)
            .fallback(crate::http::fallback)
            .method_not_allowed_fallback(crate::http::method_not_allowed);

        let token = shutdown.clone();
        let serving = tokio::spawn(async move {
            // gRPC and HTTP answers are small writes: disable Nagle, or delayed ACKs
            // add tens of milliseconds to replies.
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await?;
            Ok(())
        });
        tracing::info!(%addr, "serving gRPC and HTTP");
        Ok(Server {
            addr,
            log,
            tasks,
            shutdown,
            serving,
            views,
            nats,
        })
    }

    /// The address gRPC and HTTP are served on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's event log.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// The server's KPI and compliance views.
    pub fn views(&self) -> &opsflow_views::Views {
        &self.views.views
    }

    /// Supervised background tasks (reported by `/readyz`).
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// A token cancelled when the server shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, ends streams, waits for in-flight requests, then closes the
    /// log (which commits and flushes everything acknowledged).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        tracing::info!("shutting down");
        self.shutdown.cancel();
        // Order: stop ingest and publishing, stop serving (in-flight appends finish),
        // then close the log, which commits and flushes everything acknowledged.
        // The supervisor stops each NATS task, waiting at most 10 s for each.
        let (nats, supervisor) = self.nats.unzip();
        if let Some(supervisor) = supervisor
            && tokio::time::timeout(std::time::Duration::from_secs(35), supervisor)
                .await
                .is_err()
        {
            tracing::warn!("the NATS transport did not stop within 35 s");
        }
        // Streams end at shutdown, but a client that stopped reading may not be
        // sent their end: after a grace period the shutdown stops waiting for its
        // connection (axum runs connections as tasks of their own: they end with
        // the process; an embedder's runtime keeps them until it stops). Every
        // acknowledged append is durable already; an append whose answer is lost is
        // retried by its client and absorbed as a duplicate.
        let mut serving = self.serving;
        let served = match tokio::time::timeout(SERVING_GRACE, &mut serving).await {
            Ok(joined) => joined.context("the server task panicked")?,
            Err(_) => {
                tracing::warn!(
                    grace = ?SERVING_GRACE,
                    "connections still open after the grace period (a client not reading its stream); \
                     stopping without them (they end when the process exits)"
                );
                serving.abort();
                Ok(())
            }
        };
        for task in self.views.handles {
            if tokio::time::timeout(std::time::Duration::from_secs(30), task)
                .await
                .is_err()
            {
                tracing::warn!("a views task did not stop within 30 s");
            }
        }
        // Publishes still buffered go out if NATS is there; an unreachable server
        // must not hold the shutdown.
        if let Some(nats) = nats.map(|n| n.current()) {
            if nats.client.connection_state() == async_nats::connection::State::Disconnected {
                tracing::warn!("NATS is unreachable; stopping without the publishes it has not taken");
            } else if tokio::time::timeout(std::time::Duration::from_secs(2), nats.client.flush())
                .await
                .is_err()
            {
                tracing::warn!("NATS did not take the buffered publishes within 2 s; stopping without them");
            }
        }
        self.log.close().await.context("closing the event log")?;
        close_views(self.views.views).await;
        served
    }

    /// Runs until SIGINT or SIGTERM, then shuts down. A second signal during the
    /// shutdown exits at once (every acknowledged event is already durable).
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        wait_for_signal().await;
        tokio::spawn(async {
            let signal = wait_for_signal().await;
            tracing::error!("second signal: exiting without finishing the shutdown");
            // As a shell reports a process the signal ended: 128 + its number.
            std::process::exit(128 + signal);
        });
        self.shutdown().await
    }
}

/// gRPC compression the services take, and answer with when a client accepts it
/// (`grpc-accept-encoding`): clients set to gzip fail on every call otherwise.
pub(crate) const GZIP: tonic::codec::CompressionEncoding = tonic::codec::CompressionEncoding::Gzip;

/// How long shutdown waits for open connections to finish their requests.
const SERVING_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long shutdown waits for the views' store to close.
const VIEWS_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Drops the server's handle on the views on a thread of its own and waits at most
/// [`VIEWS_CLOSE_TIMEOUT`]: the last handle closes their sled store, which flushes,
/// and a store whose files were removed under it waits there forever. The views are
/// derived data (rebuilt from their checkpoint and the log), and the log is closed.
async fn close_views(views: opsflow_views::Views) {
    let (done, closed) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new().name("views close".into()).spawn(move || {
        drop(views);
        let _ = done.send(());
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to close the views");
        return;
    }
    if tokio::time::timeout(VIEWS_CLOSE_TIMEOUT, closed).await.is_err() {
        tracing::error!(
            timeout_secs = VIEWS_CLOSE_TIMEOUT.as_secs(),
            "the views' store did not close in time; stopping without it (the views resume from their last checkpoint)"
        );
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM, with its number.
pub async fn wait_for_signal() -> i32 {
    const SIGINT: i32 = 2;
    #[cfg(unix)]
    {
        const SIGTERM: i32 = 15;
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => SIGINT,
                    _ = term.recv() => SIGTERM,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
                SIGINT
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        SIGINT
    }
}
