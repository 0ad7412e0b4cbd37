//! The HTTP API: the CloudEvents HTTP binding on `POST /v1/events`, JSON reads,
//! audit, health, readiness and metrics.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use opsflow_cloudevents::{parse_batch, parse_binary, parse_structured, recorded_to_json};
use opsflow_log::{Direction, EventLog};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::health::{Tasks, readiness};
use crate::{ApiError, grpc};

#[derive(Clone)]
pub struct HttpState {
    pub log: EventLog,
    pub tasks: Tasks,
    pub nats: Option<crate::nats::NatsHandle>,
    pub views: opsflow_views::Views,
    pub definitions: crate::views::DefinitionsStatus,
    pub gauges: crate::views::ViewGauges,
}

/// The HTTP routes.
pub fn router(state: HttpState) -> axum::Router {
    let body_limit = usize::try_from(body_limit(&state.log)).unwrap_or(usize::MAX);
    axum::Router::new()
        .route("/v1/events", post(post_events).get(get_events))
        .route("/v1/streams/{*stream}", get(get_stream))
        .route("/v1/audit/verify", get(verify))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The largest request body: twice the largest append (room for JSON's overhead).
fn body_limit(log: &EventLog) -> u64 {
    log.limits().max_append_bytes.saturating_mul(2)
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn media_type(ct: &str) -> String {
    ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// What no route answers: a gRPC call of an unknown method gets gRPC's
/// `UNIMPLEMENTED`, anything else a 404 with the JSON error object.
pub async fn fallback(method: http::Method, uri: http::Uri, headers: HeaderMap) -> Response {
    let grpc = content_type(&headers).is_some_and(|ct| media_type(&ct).starts_with("application/grpc"));
    if grpc {
        return tonic::Status::unimplemented(format!("no gRPC method {}", uri.path())).into_http();
    }
    ApiError::NotFound(format!("route {method} {}", uri.path())).into_response()
}

/// A route asked with a method it does not take: 405 with the JSON error object
/// (axum adds the `Allow` header).
pub async fn method_not_allowed(method: http::Method, uri: http::Uri) -> Response {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
    .into_response()
}

async fn post_events(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge {
            limit: body_limit(&state.log),
        },
        _ => ApiError::invalid("body", rejection.body_text()),
    })?;
    let pairs = || headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
    let ct = opsflow_cloudevents::content_type(pairs())?.map(str::to_owned);
    let media = ct.as_deref().map(media_type).unwrap_or_default();
    let header_expected = opsflow_cloudevents::request_expected(pairs())?;
    let (incoming, batch) = if media == "application/cloudevents-batch+json" {
        (parse_batch(&body)?, true)
    } else if media == "application/cloudevents+json" {
        (vec![parse_structured(&body)?], false)
    } else if headers.contains_key("ce-specversion") {
        (vec![parse_binary(pairs(), ct.as_deref(), body)?], false)
    } else {
        return Err(ApiError::UnsupportedMediaType(ct.unwrap_or_default()));
    };
    if incoming.is_empty() {
        // The JSON batch format allows an empty batch in a request: nothing to do.
        let nothing = json!({ "results": [], "duplicate": false });
        return Ok((StatusCode::OK, Json(nothing)).into_response());
    }
    let streams: Vec<String> = incoming.iter().map(|i| i.stream.clone()).collect();
    let parts = opsflow_cloudevents::appends(incoming, header_expected);
    let outcomes = state.log.append_many(parts).await?;
    let results: Vec<Value> = outcomes
        .iter()
        .zip(&streams)
        .map(|(o, stream)| {
            json!({
                "stream": stream,
                "position": o.first_position(),
                "stream_version": o.stream_version,
                "duplicate": o.duplicate,
            })
        })
        .collect();
    let duplicate = outcomes.iter().all(|o| o.duplicate);
    let status = if duplicate { StatusCode::OK } else { StatusCode::CREATED };
    let body = if batch {
        json!({ "results": results, "duplicate": duplicate })
    } else {
        results.into_iter().next().unwrap_or(Value::Null)
    };
    Ok((status, Json(body)).into_response())
}

struct ReadParams {
    from: Option<u64>,
    limit: usize,
    direction: Direction,
}

/// The query parameters by name. A repeated `name` or `window` (of the views) adds
/// to the list, as a comma does; any other repeated parameter is refused, not
/// silently taken once.
pub(crate) fn query_params(pairs: Vec<(String, String)>) -> Result<HashMap<String, String>, ApiError> {
    use std::collections::hash_map::Entry;
    let mut params: HashMap<String, String> = HashMap::with_capacity(pairs.len());
    for (key, value) in pairs {
        match params.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
            Entry::Occupied(mut names) if ["name", "window"].contains(&names.key().as_str()) => {
                let names = names.get_mut();
                names.push(',');
                names.push_str(&value);
            }
            Entry::Occupied(repeated) => {
                return Err(ApiError::invalid(
                    repeated.key(),
                    "query parameter given more than once".to_owned(),
                ));
            }
        }
    }
    Ok(params)
}

/// Refuses a query parameter not in `known`, naming it and the known ones.
pub(crate) fn only_params(q: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match q.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::invalid(
            unknown,
            format!("unknown query parameter; known are {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// The query parameter `key` as a non-negative integer, when given.
fn number_param(q: &HashMap<String, String>, key: &str) -> Result<Option<u64>, ApiError> {
    q.get(key)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::invalid(key, format!("{v:?} is not a non-negative integer")))
        })
        .transpose()
}

fn read_params(q: &HashMap<String, String>) -> Result<ReadParams, ApiError> {
    only_params(q, &["from", "limit", "direction"])?;
    let number = |key: &str| number_param(q, key);
    // 0 means the default, as in gRPC's ReadRequest.
    let limit = number("limit")?
        .filter(|l| *l > 0)
        .unwrap_or(u64::from(grpc::DEFAULT_READ_LIMIT));
    if limit > u64::from(grpc::MAX_READ_LIMIT) {
        return Err(ApiError::invalid(
            "limit",
            format!("is {limit}, over the maximum of {}", grpc::MAX_READ_LIMIT),
        ));
    }
    let direction = match q.get("direction").map(String::as_str) {
        None | Some("forward") => Direction::Forward,
        Some("backward") => Direction::Backward,
        Some(other) => {
            return Err(ApiError::invalid(
                "direction",
                format!("{other:?} is not forward or backward"),
            ));
        }
    };
    Ok(ReadParams {
        from: number("from")?,
        limit: limit as usize,
        direction,
    })
}

async fn get_events(
    State(state): State<HttpState>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Json<EventsPage>, ApiError> {
    let p = read_params(&query_params(q)?)?;
    let events = state.log.read_all(p.from, p.direction, p.limit).await?;
    // Where the next page starts; null backwards once position 1 was read.
    let next = events.last().and_then(|e| match p.direction {
        Direction::Forward => Some(e.position + 1),
        Direction::Backward => Some(e.position - 1).filter(|p| *p > 0),
    });
    Ok(Json(EventsPage {
        head: state.log.head(),
        next,
        events: events.iter().map(recorded_to_json).collect(),
    }))
}

/// `GET /v1/events`: serialized, never made a [`Value`], so that each event's
/// JSON data goes out as recorded (see [`recorded_to_json`]).
#[derive(serde::Serialize)]
struct EventsPage {
    head: u64,
    next: Option<u64>,
    events: Vec<Box<RawValue>>,
}

/// `GET /v1/streams/{stream}`, as [`EventsPage`].
#[derive(serde::Serialize)]
struct StreamPage {
    stream: String,
    exists: bool,
    last_version: Option<u64>,
    event_count: u64,
    first_position: u64,
    last_position: u64,
    events: Vec<Box<RawValue>>,
}

async fn get_stream(
    State(state): State<HttpState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Json<StreamPage>, ApiError> {
    // A path that does not decode (invalid UTF-8 after percent-decoding) gets the
    // JSON error every other bad input gets, not axum's plain text.
    let Path(stream) = path.map_err(|e| ApiError::invalid("stream", e.body_text()))?;
    let p = read_params(&query_params(q)?)?;
    let info = state.log.stream_info(&stream).await?;
    let events = state.log.read_stream(&stream, p.from, p.direction, p.limit).await?;
    Ok(Json(StreamPage {
        stream,
        exists: info.last_version.is_some(),
        last_version: info.last_version,
        event_count: info.event_count,
        first_position: info.first_position,
        last_position: info.last_position,
        events: events.iter().map(recorded_to_json).collect(),
    }))
}

/// `GET /v1/audit/verify[?from=N][&to=M]`: the hash chain over positions
/// `from..=to` (default: the whole log), as gRPC's `Audit.Verify`.
async fn verify(
    State(state): State<HttpState>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let q = query_params(q)?;
    only_params(&q, &["from", "to"])?;
    let r = state
        .log
        .verify(number_param(&q, "from")?, number_param(&q, "to")?)
        .await?;
    Ok(Json(json!({
        "ok": r.ok(),
        "events_checked": r.events_checked,
        "head_position": r.head_position,
        "head_hash": hex::encode(r.head_hash),
        "first_broken_position": r.broken.as_ref().map(|b| b.position),
        "reason": r.broken.map(|b| b.reason),
    })))
}

async fn readyz(State(state): State<HttpState>) -> Response {
    let (mut ready, mut report) = readiness(&state.log, &state.tasks);
    if let Some(nats) = state.nats.as_ref().map(|n| n.current()) {
        let connected = opsflow_nats::is_connected(&nats.client);
        // Request/reply has a connection of its own.
        let requests_connected = nats.requests.as_ref().is_none_or(opsflow_nats::is_connected);
        // A task is ready only while its connection is up (its consumer or
        // subscription does nothing without it), and on that connection: ingest
        // starts a new session on a new one, and is not ready until it has.
        let part = |wanted: bool, client: Option<&async_nats::Client>, flag: &opsflow_nats::Flag| match client
            .filter(|_| wanted)
        {
            None => "disabled".to_owned(),
            // Refused whether or not NATS is there: it does not start when it is.
            Some(_) if flag.refused() => format!("not started: {}", flag.problem_text().unwrap_or_default()),
            Some(client) if !opsflow_nats::is_connected(client) => "waiting for the connection".to_owned(),
            Some(client) if flag.ready_on(opsflow_nats::connects(client)) => "ready".to_owned(),
            // The last failure says why, e.g. a consumer or stream opsflow cannot use,
            // or a server without JetStream: the task retries, but some failures only
            // a change of setup cures, so it is not called a recovery.
            Some(_) => match flag.problem_text() {
                Some(problem) => format!("not ready, retrying; last failure: {problem}"),
                None => "starting (or starting again on a new connection)".to_owned(),
            },
        };
        let ingest = part(nats.wanted.ingest, Some(&nats.client), &nats.ready.ingest);
        let requests = part(nats.wanted.requests, nats.requests.as_ref(), &nats.ready.requests);
        let outbound = part(nats.wanted.outbound, Some(&nats.client), &nats.ready.outbound);
        ready &= connected
            && [&ingest, &requests, &outbound]
                .iter()
                .all(|s| *s == "ready" || *s == "disabled");
        report["nats"] = json!({
            "status": if connected { "connected" } else { "disconnected" },
            "ingest": ingest, "requests": requests, "outbound": outbound,
        });
        // Why not connected: the last failed attempt, with the URLs it tried.
        let why = |connected: bool, flag: &opsflow_nats::Flag| (!connected).then(|| flag.problem_text()).flatten();
        if let Some(problem) = why(connected, &nats.ready.connection) {
            report["nats"]["connection"] = json!(problem);
        }
        if let Some(problem) = why(requests_connected, &nats.ready.requests_connection) {
            report["nats"]["requests_connection"] = json!(problem);
        }
        report["ready"] = json!(ready);
    }
    // Views and definitions are reported, not gating: a refused definitions edit
    // leaves the last good set serving.
    let definitions = state.views.definitions();
    report["views"] = json!({
        "position": state.views.position(),
        "lag": state.log.head().saturating_sub(state.views.position()),
        "rebuilding": state.views.rebuilding(),
        "definitions_version": definitions.version,
        "definitions_error": state.definitions.error(),
        "rebuild_error": state.views.background_error(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let mut text = crate::metrics::render();
    text.push_str(&state.gauges.text());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
