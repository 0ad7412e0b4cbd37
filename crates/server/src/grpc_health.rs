//! The gRPC health service (`grpc.health.v1.Health`): tonic-health's statuses,
//! with the watch of the health checking protocol kept to the end. An unknown
//! service is answered `SERVICE_UNKNOWN` and the call stays open (tonic-health
//! refuses it with `NOT_FOUND`), and at shutdown every check answers
//! `NOT_SERVING` and every watch is told `NOT_SERVING` and ended, as `Subscribe`
//! is: clients keep a health watch open on each connection, and an open one held
//! the shutdown up for its whole grace period.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

/// The health service over `reporter`'s statuses, until `shutdown`.
pub(crate) fn service(reporter: &HealthReporter, shutdown: CancellationToken) -> HealthServer<GrpcHealth> {
    HealthServer::new(GrpcHealth {
        statuses: HealthService::from_health_reporter(reporter.clone()),
        shutdown,
    })
    .accept_compressed(crate::server::GZIP)
    .send_compressed(crate::server::GZIP)
}

pub(crate) struct GrpcHealth {
    statuses: HealthService,
    shutdown: CancellationToken,
}

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse { status: status as i32 }
}

type Statuses = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for GrpcHealth {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let known = self.statuses.check(request).await?;
        if self.shutdown.is_cancelled() {
            return Ok(Response::new(answer(ServingStatus::NotServing)));
        }
        Ok(known)
    }

    type WatchStream = Statuses;

    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<Statuses>, Status> {
        let (statuses, last): (Statuses, _) = match self.statuses.watch(request).await {
            Ok(watching) => (Box::pin(watching.into_inner()), ServingStatus::NotServing),
            // Services are all registered at start: an unknown one stays unknown.
            Err(e) if e.code() == Code::NotFound => (
                Box::pin(
                    futures::stream::once(async { Ok(answer(ServingStatus::ServiceUnknown)) })
                        .chain(futures::stream::pending()),
                ),
                ServingStatus::ServiceUnknown,
            ),
            Err(e) => return Err(e),
        };
        let ending = futures::stream::iter([
            Ok(answer(last)),
            Err(Status::unavailable("the server is shutting down")),
        ]);
        let until_shutdown = statuses.take_until(self.shutdown.clone().cancelled_owned());
        Ok(Response::new(Box::pin(until_shutdown.chain(ending))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn health() -> (GrpcHealth, CancellationToken) {
        let (reporter, _) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("opsflow.v1.EventLog", tonic_health::ServingStatus::Serving)
            .await;
        let shutdown = CancellationToken::new();
        let health = GrpcHealth {
            statuses: HealthService::from_health_reporter(reporter),
            shutdown: shutdown.clone(),
        };
        (health, shutdown)
    }

    fn asking(service: &str) -> Request<HealthCheckRequest> {
        Request::new(HealthCheckRequest {
            service: service.into(),
        })
    }

    fn status(item: Option<Result<HealthCheckResponse, Status>>) -> Result<i32, Code> {
        match item {
            Some(Ok(answer)) => Ok(answer.status),
            Some(Err(e)) => Err(e.code()),
            None => Err(Code::Ok),
        }
    }

    #[tokio::test]
    async fn watches_say_not_serving_and_end_at_shutdown() {
        let (health, shutdown) = health().await;
        let mut known = health.watch(asking("opsflow.v1.EventLog")).await.unwrap().into_inner();
        let mut unknown = health.watch(asking("nope")).await.unwrap().into_inner();
        assert_eq!(status(known.next().await), Ok(ServingStatus::Serving as i32));
        assert_eq!(status(unknown.next().await), Ok(ServingStatus::ServiceUnknown as i32));
        // The unknown one stays open, saying nothing more.
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), unknown.next()).await;
        assert!(quiet.is_err(), "the watch of an unknown service ended: {quiet:?}");
        let check = health.check(asking("opsflow.v1.EventLog")).await.unwrap();
        assert_eq!(check.into_inner().status, ServingStatus::Serving as i32);

        shutdown.cancel();
        assert_eq!(status(known.next().await), Ok(ServingStatus::NotServing as i32));
        assert_eq!(status(known.next().await), Err(Code::Unavailable));
        assert_eq!(status(known.next().await), Err(Code::Ok), "ended");
        assert_eq!(status(unknown.next().await), Ok(ServingStatus::ServiceUnknown as i32));
        assert_eq!(status(unknown.next().await), Err(Code::Unavailable));
        let check = health.check(asking("opsflow.v1.EventLog")).await.unwrap();
        assert_eq!(check.into_inner().status, ServingStatus::NotServing as i32);
        let unknown = health.check(asking("nope")).await.map(|_| ()).unwrap_err();
        assert_eq!(
            unknown.code(),
            Code::NotFound,
            "Check of an unknown service stays NOT_FOUND"
        );
    }
}
