//! The gRPC services: `opsflow.v1.EventLog` and `opsflow.v1.Audit`.

use std::pin::Pin;

use futures::Stream;
use opsflow_log::{Direction, EventFilter, EventLog, LogError, SubscriptionItem};
use opsflow_proto::v1::{self, subscribe_response};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use opsflow_proto::convert;

use crate::ApiError;

/// Default and maximum number of events a `Read` returns.
pub const DEFAULT_READ_LIMIT: u32 = 1000;
pub const MAX_READ_LIMIT: u32 = 100_000;
const PAGE: usize = 512;

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The responses a task sends to `rx`, as a response stream that ends with
/// `UNAVAILABLE` as soon as the server shuts down: responses still buffered are not
/// sent (the client sees where it was cut off, and resumes from there), and a client
/// that stopped reading holds up nothing.
fn until_shutdown<T: Send + 'static>(
    rx: mpsc::Receiver<Result<T, Status>>,
    shutdown: CancellationToken,
) -> EventStream<T> {
    Box::pin(futures::stream::unfold(Some((rx, shutdown)), |state| async move {
        let (mut rx, shutdown) = state?;
        tokio::select! {
            biased;
            () = shutdown.cancelled() => Some((Err(Status::unavailable("the server is shutting down")), None)),
            item = rx.recv() => item.map(|item| (item, Some((rx, shutdown)))),
        }
    }))
}

/// `opsflow.v1.EventLog`.
#[derive(Clone)]
pub struct EventLogService {
    pub log: EventLog,
    pub shutdown: CancellationToken,
}

#[tonic::async_trait]
impl v1::event_log_server::EventLog for EventLogService {
    async fn append(&self, request: Request<v1::AppendRequest>) -> Result<Response<v1::AppendResponse>, Status> {
        let part = convert::stream_append(request.into_inner(), "opsflow:grpc").map_err(ApiError::from)?;
        let outcome = self
            .log
            .append_many(vec![part])
            .await
            .map_err(ApiError::from)?
            .pop()
            .ok_or_else(|| Status::internal("the log returned no outcome"))?;
        Ok(Response::new(convert::append_response(&outcome)))
    }

    type ReadStream = EventStream<v1::ReadResponse>;

    async fn read(&self, request: Request<v1::ReadRequest>) -> Result<Response<Self::ReadStream>, Status> {
        let req = request.into_inner();
        let limit = match req.limit {
            0 => DEFAULT_READ_LIMIT,
            n if n > MAX_READ_LIMIT => {
                return Err(ApiError::invalid("limit", format!("is {n}, over the maximum of {MAX_READ_LIMIT}")).into());
            }
            n => n,
        } as usize;
        let direction = match v1::Direction::try_from(req.direction) {
            Ok(v1::Direction::Forward) => Direction::Forward,
            Ok(v1::Direction::Backward) => Direction::Backward,
            Err(_) => return Err(ApiError::invalid("direction", format!("unknown value {}", req.direction)).into()),
        };
        if !req.stream.is_empty() {
            opsflow_log::validate_stream_name(&req.stream).map_err(ApiError::from)?;
        }
        let (tx, rx) = mpsc::channel(4);
        let log = self.log.clone();
        tokio::spawn(async move {
            let mut from = req.from;
            let mut sent = 0usize;
            while sent < limit {
                let want = PAGE.min(limit - sent);
                let page = if req.stream.is_empty() {
                    log.read_all(from, direction, want).await
                } else {
                    log.read_stream(&req.stream, from, direction, want).await
                };
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(ApiError::from(e)))).await;
                        return;
                    }
                };
                let n = page.len();
                let Some(last) = page.last() else { return };
                let cursor = if req.stream.is_empty() {
                    last.position
                } else {
                    last.version
                };
                from = match direction {
                    Direction::Forward => cursor.checked_add(1),
                    Direction::Backward => cursor.checked_sub(1),
                };
                for event in page {
                    if tx
                        .send(Ok(v1::ReadResponse {
                            event: Some(convert::recorded(event)),
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                sent += n;
                if n < want
                    || from.is_none()
                    || (direction == Direction::Backward && from == Some(0) && req.stream.is_empty())
                {
                    return;
                }
            }
        });
        Ok(Response::new(until_shutdown(rx, self.shutdown.clone())))
    }

    type SubscribeStream = EventStream<v1::SubscribeResponse>;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let req = request.into_inner();
        each_valid("types", &req.types, opsflow_log::validate_event_type)?;
        each_valid(
            "stream_prefixes",
            &req.stream_prefixes,
            opsflow_log::validate_stream_prefix,
        )?;
        let from = if req.from_end {
            self.log.head() + 1
        } else {
            req.from_position.unwrap_or(1)
        };
        let filter = EventFilter {
            stream_prefixes: req.stream_prefixes,
            types: req.types,
        };
        let mut subscription = self.log.subscribe(from, filter);
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                // The response stream ends itself at shutdown (see until_shutdown),
                // which closes the channel.
                let item = tokio::select! {
                    item = subscription.next() => item,
                    _ = tx.closed() => return,
                };
                let message = match item {
                    Ok(SubscriptionItem::Event(e)) => subscribe_response::Message::Event(convert::recorded(e)),
                    Ok(SubscriptionItem::CaughtUp(position)) => {
                        subscribe_response::Message::CaughtUp(subscribe_response::CaughtUp { position })
                    }
                    Ok(SubscriptionItem::Checkpoint(position)) => {
                        subscribe_response::Message::Checkpoint(subscribe_response::Checkpoint { position })
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(ApiError::from(e)))).await;
                        return;
                    }
                };
                // Back-pressure: a slow client makes this send wait; nothing is dropped.
                if tx
                    .send(Ok(v1::SubscribeResponse { message: Some(message) }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(until_shutdown(rx, self.shutdown.clone())))
    }

    async fn get_stream(&self, request: Request<v1::GetStreamRequest>) -> Result<Response<v1::StreamInfo>, Status> {
        let info = self
            .log
            .stream_info(&request.into_inner().stream)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(convert::stream_info(info)))
    }
}

/// `opsflow.v1.Audit`.
#[derive(Clone)]
pub struct AuditService {
    pub log: EventLog,
}

#[tonic::async_trait]
impl v1::audit_server::Audit for AuditService {
    async fn verify(&self, request: Request<v1::VerifyRequest>) -> Result<Response<v1::VerifyResponse>, Status> {
        let req = request.into_inner();
        let report = self.log.verify(req.from, req.to).await.map_err(ApiError::from)?;
        Ok(Response::new(convert::verify_report(report)))
    }
}

/// Checks each of the list `field` with `check`; the first refused is
/// INVALID_ARGUMENT naming it (`types[1]`).
fn each_valid(field: &str, items: &[String], check: fn(&str) -> opsflow_log::Result<()>) -> Result<(), ApiError> {
    for (i, item) in items.iter().enumerate() {
        check(item).map_err(|e| match e {
            LogError::InvalidArgument { reason, .. } => ApiError::invalid(format!("{field}[{i}]"), reason),
            other => ApiError::from(other),
        })?;
    }
    Ok(())
}
