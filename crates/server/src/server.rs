//! Wiring: open the log, serve gRPC and HTTP on one address, shut down in order.

use std::net::SocketAddr;

use anyhow::Context;
use axum::serve::ListenerExt;
use opsflow_log::{EventLog, LogOptions};
use opsflow_proto::v1::audit_server::AuditServer;
use opsflow_proto::v1::event_log_server::EventLogServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::grpc::{AuditService, EventLogService};
use crate::health::Tasks;
use crate::http::{HttpState, router};
use crate::{Config, metrics};

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    log: EventLog,
    tasks: Tasks,
    shutdown: CancellationToken,
    serving: tokio::task::JoinHandle<anyhow::Result<()>>,
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
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
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
        .max_encoding_message_size(max_message);
        let audit = AuditServer::new(AuditService { log: log.clone() });
        let grpc = tonic::service::Routes::new(event_log)
            .add_service(audit)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .into_axum_router();
        let app = grpc.merge(router(HttpState {
            log: log.clone(),
            tasks: tasks.clone(),
        }));

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
        let served = self.serving.await.context("the server task panicked")?;
        self.log.close().await.context("closing the event log")?;
        served
    }

    /// Runs until SIGINT or SIGTERM, then shuts down.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        wait_for_signal().await;
        self.shutdown().await
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
