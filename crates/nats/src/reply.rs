//! Request/reply appends on `opsflow.api.append`, for producers that want the
//! position back. A JSON body is a CloudEvent (structured or batch; binary mode
//! with `ce-*` headers works too) and gets a JSON reply; a protobuf body
//! (`Content-Type: application/protobuf`) is an `opsflow.v1.AppendRequest` and gets
//! an `opsflow.v1.AppendResponse`. Errors carry `Nats-Service-Error-Code` (an HTTP
//! status) and `Nats-Service-Error` headers, and a JSON body `{"error": {...}}`.
//! A request that names no reply subject (published, not requested) is appended
//! all the same; if it is refused, nobody would hear it, so it is dead-lettered
//! (kept by the dead-letter stream, as ingest's bad messages are) instead.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use opsflow_log::{ErrorKind, EventLog, LogError};
use opsflow_proto::{convert, v1};
use prost::Message as _;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::decode::{DeadReason, header_pairs};
use crate::{DeadLetterConfig, DeadLetters, RequestReplyConfig};

/// Serves append requests until `shutdown`, resubscribing after NATS trouble. A
/// refused request without a reply subject is dead-lettered as `dead_letters`
/// says (its stream made with `replicas` replicas if there is none).
pub async fn run_request_reply(
    client: async_nats::Client,
    config: RequestReplyConfig,
    dead_letters: DeadLetterConfig,
    replicas: usize,
    log: EventLog,
    shutdown: CancellationToken,
    ready: crate::Readiness,
) -> anyhow::Result<()> {
    // Every outcome's count is on /metrics from the start, at 0 until it is not.
    for outcome in DeadReason::ALL
        .map(DeadReason::as_str)
        .into_iter()
        .chain([RECORDED, FAILED])
    {
        metrics::counter!("opsflow_nats_requests_total", "outcome" => outcome).increment(0);
    }
    let unanswered = Arc::new(Unanswered {
        js: async_nats::jetstream::new(client.clone()),
        config: dead_letters,
        replicas,
        kept: tokio::sync::Mutex::new(None),
    });
    crate::claim::while_held(
        &client,
        crate::claim::Role::Requests,
        &config.subject,
        &shutdown,
        &ready.requests,
        serve(&client, &config, &log, &shutdown, &ready, &unanswered),
    )
    .await
}

/// Serves append requests until `shutdown`, resubscribing after NATS trouble.
async fn serve(
    client: &async_nats::Client,
    config: &RequestReplyConfig,
    log: &EventLog,
    shutdown: &CancellationToken,
    ready: &crate::Readiness,
    unanswered: &Arc<Unanswered>,
) -> anyhow::Result<()> {
    loop {
        ready.requests.set(false);
        let mut requests = match client
            .queue_subscribe(config.subject.clone(), config.queue_group.clone())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to append requests; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        // The subscription is live once the server has seen it (a flush waits for
        // the connection: shutdown does not wait for it).
        match shutdown.run_until_cancelled(client.flush()).await {
            None => return Ok(()),
            Some(Ok(())) => {
                let check = check_capture(client.clone(), config.subject.clone(), ready.requests.clone());
                if shutdown.run_until_cancelled(check).await.is_none() {
                    return Ok(());
                }
            }
            Some(Err(_)) => {}
        }
        // A stream may capture the subject later (or stop): checked again now and then.
        let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + CAPTURE_CHECK, CAPTURE_CHECK);
        tracing::info!(subject = %config.subject, "serving append requests");
        // Requests are handled concurrently, as HTTP's are, so that appends from
        // many producers share the log's group commit; a producer that needs two
        // events in order waits for the first one's reply.
        let slots = Arc::new(Semaphore::new(CONCURRENT_REQUESTS));
        let mut handling: JoinSet<()> = JoinSet::new();
        let stopped = loop {
            while handling.try_join_next().is_some() {}
            let request = tokio::select! {
                r = requests.next() => r,
                _ = recheck.tick() => {
                    handling.spawn(check_capture(client.clone(), config.subject.clone(), ready.requests.clone()));
                    continue;
                }
                _ = shutdown.cancelled() => break true,
            };
            let Some(request) = request else { break false };
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => slot.ok(),
                _ = shutdown.cancelled() => None,
            };
            // Taken from the subscription, it is answered whatever happens (without a
            // slot when stopping, like those the drain below finds).
            let stopping = slot.is_none();
            handling.spawn(answer(log.clone(), client.clone(), request, unanswered.clone(), slot));
            if stopping {
                break true;
            }
        };
        // No more requests for this node (the queue group's others take them); those
        // already delivered to it are answered. (async-nats 0.51 forgets a draining
        // subscription once its UNSUB is written, not at the PONG after it: a request
        // the server sent before taking the UNSUB and still on the wire then gets no
        // answer, and its producer's retry after the timeout is absorbed by the
        // idempotent append.) Then the appends under way finish
        // (their events are recorded either way) and their replies go out, unless
        // NATS does not take them in time.
        // (Not with NATS unreachable: shutdown does not wait for it.)
        let drained = stopped && crate::is_connected(client) && requests.drain().await.is_ok();
        let finished = tokio::time::timeout(REPLIES_WITHIN, async {
            while drained && let Some(request) = requests.next().await {
                handling.spawn(answer(log.clone(), client.clone(), request, unanswered.clone(), None));
            }
            while handling.join_next().await.is_some() {}
        });
        if finished.await.is_err() {
            tracing::warn!(
                "append requests not answered within {REPLIES_WITHIN:?}: producers that asked retry after their \
                 timeout; one published without a reply subject is lost if it was not yet appended"
            );
        }
        if stopped {
            // The connection is this task's own: send what is buffered, briefly, and
            // not at all when NATS is unreachable (shutdown does not wait for it).
            if crate::is_connected(client) {
                let _ = tokio::time::timeout(FLUSH_WITHIN, client.flush()).await;
            }
            return Ok(());
        }
    }
}

/// Appends what `request` carries and sends the reply to its reply subject, or,
/// when it names none and the append is refused, a dead letter; `slot` is held
/// meanwhile.
async fn answer(
    log: EventLog,
    client: async_nats::Client,
    request: async_nats::Message,
    unanswered: Arc<Unanswered>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let reply = handle(&log, request.headers.as_ref(), request.payload.clone()).await;
    metrics::counter!("opsflow_nats_requests_total", "outcome" => outcome(reply.refused.as_ref())).increment(1);
    match (&request.reply, reply.refused) {
        (Some(reply_to), _) => {
            let size = reply.body.len();
            if let Err(e) = client
                .publish_with_headers(reply_to.clone(), reply.headers, reply.body)
                .await
            {
                // Too large for NATS, say: the producer gets an error rather than
                // waiting out its timeout.
                tracing::warn!(error = %e, size, "cannot send an append reply; sending an error in its place");
                let instead = error_reply(
                    500,
                    "internal",
                    format!("the reply ({size} bytes) could not be sent: {e}"),
                    Value::Null,
                    None,
                );
                if let Err(e) = client
                    .publish_with_headers(reply_to.clone(), instead.headers, instead.body)
                    .await
                {
                    tracing::warn!(error = %e, "cannot send an append reply");
                }
            }
        }
        (None, None) => {}
        (None, Some(Refusal::Dead(reason, error))) => unanswered.dead_letter(&request, reason, &error).await,
        (None, Some(Refusal::Failed(error))) => tracing::error!(
            error, subject = %request.subject,
            "an append request that names no reply subject was not recorded (the log failed), and nobody waits \
             for the answer: it is lost"
        ),
    }
    drop(slot);
}

/// A request's outcome as `opsflow_nats_requests_total` counts it: `recorded`
/// (duplicates and an empty batch included), the dead-letter reason of a refusal
/// (`decode`, `invalid`, `limit`, `version_conflict`, `duplicate_conflict`), or
/// `failed` when the log could not take it.
fn outcome(refused: Option<&Refusal>) -> &'static str {
    match refused {
        None => RECORDED,
        Some(Refusal::Dead(reason, _)) => reason.as_str(),
        Some(Refusal::Failed(_)) => FAILED,
    }
}

/// The outcomes of [`outcome`] besides the dead-letter reasons.
const RECORDED: &str = "recorded";
const FAILED: &str = "failed";

/// Where refused requests that name no reply subject go: the dead-letter stream,
/// found (or made) at the first of them, and again after a dead letter fails (the
/// stream deleted since, say).
struct Unanswered {
    js: async_nats::jetstream::Context,
    config: DeadLetterConfig,
    replicas: usize,
    kept: tokio::sync::Mutex<Option<DeadLetters>>,
}

impl Unanswered {
    /// Dead-letters `request`, refused for `reason` (`error`), and waits for the
    /// stream to keep it (it is then counted and logged as ingest's are), trying
    /// once more with the stream found again; logs an error when it cannot be kept
    /// (no JetStream, say).
    async fn dead_letter(&self, request: &async_nats::Message, reason: DeadReason, error: &str) {
        let mut outcome = self.try_dead_letter(request, reason, error).await;
        if outcome.is_err() {
            outcome = self.try_dead_letter(request, reason, error).await;
        }
        if let Err(e) = outcome {
            tracing::error!(
                error = %e, refusal = error, subject = %request.subject,
                "a refused append request that names no reply subject could not be dead-lettered: it is lost"
            );
        }
    }

    async fn try_dead_letter(
        &self,
        request: &async_nats::Message,
        reason: DeadReason,
        error: &str,
    ) -> anyhow::Result<()> {
        let mut kept = self.kept.lock().await;
        let dead_letters = match kept.as_ref() {
            Some(found) => found.clone(),
            None => {
                let found = DeadLetters::ensure(self.js.clone(), &self.config, self.replicas).await?;
                if let Some(stream) = found.in_memory() {
                    tracing::warn!(
                        stream,
                        "the dead-letter stream keeps refused requests in memory: a nats-server restart loses them"
                    );
                }
                kept.insert(found).clone()
            }
        };
        drop(kept);
        let published = dead_letters.publish(request, reason, error, None).await;
        if published.is_err() {
            *self.kept.lock().await = None;
        }
        published
    }
}

/// What a request gets back, and why its append was refused, if it was.
#[derive(Debug)]
pub(crate) struct Answer {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub refused: Option<Refusal>,
}

/// Why a request was not recorded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    /// The request itself: what a dead letter would say.
    Dead(DeadReason, String),
    /// The log (closed or failing), not the request.
    Failed(String),
}

/// Append requests handled at once at most.
const CONCURRENT_REQUESTS: usize = 256;

/// How long a stopping or resubscribing request loop waits for replies under way.
const REPLIES_WITHIN: Duration = Duration::from_secs(5);

/// How long a stopping request loop waits for its replies to leave.
const FLUSH_WITHIN: Duration = Duration::from_secs(2);

/// How often request/reply checks again that no stream captures its subject.
const CAPTURE_CHECK: Duration = Duration::from_secs(30);

/// Ready unless a JetStream stream captures `subject`: JetStream acknowledges
/// every request to a captured subject before opsflow can answer, so say so
/// rather than seem ready.
async fn check_capture(client: async_nats::Client, subject: String, ready: crate::Flag) {
    match captured_by(&client, &subject).await {
        Some(stream) => {
            let problem = format!(
                "stream {stream} captures the request subject {subject}: JetStream answers each request first (a \
                 publish acknowledgement), so producers never see opsflow's reply; take the subject out of the \
                 stream or set [nats.request_reply] subject"
            );
            if ready.problem_text().as_deref() != Some(problem.as_str()) {
                tracing::error!("{problem}");
            }
            ready.fail(problem);
        }
        None => ready.set(true),
    }
}

/// The JetStream stream that captures `subject`, if any (none without JetStream,
/// or when the lookup fails: a warning then, not a refusal).
async fn captured_by(client: &async_nats::Client, subject: &str) -> Option<String> {
    let js = async_nats::jetstream::new(client.clone());
    match tokio::time::timeout(Duration::from_secs(5), js.stream_by_subject(subject)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) if e.kind() == async_nats::jetstream::context::GetStreamByNameErrorKind::NotFound => None,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, subject, "cannot tell whether a stream captures the request subject");
            None
        }
        Err(_) => None,
    }
}

/// Whether the headers make a binary-mode CloudEvent: any `ce-` header, as ingest
/// reads a message (one without `ce-specversion` is then refused, saying so,
/// rather than read as an `AppendRequest` it is not).
fn is_binary_mode(pairs: &[(&str, &[u8])]) -> bool {
    pairs
        .iter()
        .any(|(name, _)| name.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("ce-")))
}

fn is_protobuf(ct: Option<&str>) -> bool {
    let media = ct.map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    matches!(
        media.as_deref(),
        Some("application/protobuf" | "application/x-protobuf")
    )
}

/// Handles one request: appends what it carries and returns the reply.
pub(crate) async fn handle(log: &EventLog, headers: Option<&HeaderMap>, payload: Bytes) -> Answer {
    let pairs = header_pairs(headers);
    let ct = match opsflow_cloudevents::content_type(pairs.iter().copied()) {
        Ok(ct) => ct,
        Err(e) => return cloudevent_error_reply(&e),
    };
    let request_expected = match opsflow_cloudevents::request_expected(pairs.iter().copied()) {
        Ok(expected) => expected,
        Err(e) => return cloudevent_error_reply(&e),
    };
    // An AppendRequest, unless `ce-` headers make it a binary-mode CloudEvent whose
    // data is protobuf.
    if is_protobuf(ct) && !is_binary_mode(&pairs) {
        if request_expected.is_some() {
            return error_reply(
                400,
                "invalid_argument",
                format!(
                    "an AppendRequest sets its own expected version (its field `expected`); the {} header applies to \
                     CloudEvents bodies",
                    opsflow_cloudevents::EXPECTED_VERSION_HEADER
                ),
                json!({ "field": opsflow_cloudevents::EXPECTED_VERSION_HEADER }),
                Some(DeadReason::Invalid),
            );
        }
        let request = match v1::AppendRequest::decode(payload) {
            Ok(r) => r,
            Err(e) => {
                return error_reply(
                    400,
                    "invalid_argument",
                    format!("malformed AppendRequest: {e}"),
                    Value::Null,
                    Some(DeadReason::Decode),
                );
            }
        };
        let part = match convert::stream_append(request, "opsflow:nats") {
            Ok(p) => p,
            Err(e) => return log_error_reply(&e),
        };
        return match log.append_many(vec![part]).await.map(|mut v| v.pop()) {
            Ok(Some(outcome)) => {
                let mut headers = HeaderMap::new();
                headers.insert("Content-Type", "application/protobuf");
                recorded(headers, convert::append_response(&outcome).encode_to_vec().into())
            }
            Ok(None) => error_reply(500, "internal", "the log returned no outcome".into(), Value::Null, None),
            Err(e) => log_error_reply(&e),
        };
    }
    let incoming = match opsflow_cloudevents::parse_any(ct, pairs.iter().copied(), payload) {
        Ok(i) if !i.is_empty() => i,
        // The JSON batch format allows an empty batch in a request: nothing to do.
        Ok(_) => {
            let mut headers = HeaderMap::new();
            headers.insert("Content-Type", "application/json");
            let nothing = json!({ "results": [], "duplicate": false });
            return recorded(headers, nothing.to_string().into());
        }
        Err(e) => return cloudevent_error_reply(&e),
    };
    let single = incoming.len() == 1;
    let streams: Vec<String> = incoming.iter().map(|i| i.stream.clone()).collect();
    let parts = opsflow_cloudevents::appends(incoming, request_expected);
    match log.append_many(parts).await {
        Ok(outcomes) => {
            let results: Vec<Value> = outcomes
                .iter()
                .zip(&streams)
                .map(|(o, s)| {
                    json!({ "stream": s, "position": o.first_position(), "stream_version": o.stream_version,
                            "duplicate": o.duplicate })
                })
                .collect();
            let body = if single {
                results.into_iter().next().unwrap_or(Value::Null)
            } else {
                json!({ "results": results, "duplicate": outcomes.iter().all(|o| o.duplicate) })
            };
            let mut headers = HeaderMap::new();
            headers.insert("Content-Type", "application/json");
            recorded(headers, body.to_string().into())
        }
        Err(e) => log_error_reply(&e),
    }
}

/// The reply to a request that was recorded (or held nothing).
fn recorded(headers: HeaderMap, body: Bytes) -> Answer {
    Answer {
        headers,
        body,
        refused: None,
    }
}

/// A request that is not a CloudEvent opsflow can take: 400 naming the attribute
/// (or header).
fn cloudevent_error_reply(e: &opsflow_cloudevents::CloudEventError) -> Answer {
    let mut message = e.to_string();
    if matches!(e, opsflow_cloudevents::CloudEventError::UnsupportedContentMode { .. }) {
        // Here an AppendRequest is a form too: what a sender without a content
        // type most likely meant.
        message.push_str(", or an opsflow.v1.AppendRequest with Content-Type: application/protobuf");
    }
    error_reply(
        400,
        "invalid_argument",
        message,
        e.detail_fields(),
        Some(DeadReason::of_cloudevent(e)),
    )
}

fn log_error_reply(e: &LogError) -> Answer {
    let kind = e.kind();
    let status = match kind {
        ErrorKind::InvalidArgument | ErrorKind::LimitExceeded => 400,
        ErrorKind::WrongExpectedVersion | ErrorKind::DuplicateConflict => 409,
        ErrorKind::Unavailable => 503,
        ErrorKind::Internal => 500,
    };
    error_reply(
        status,
        kind.as_str(),
        e.to_string(),
        e.detail_fields(),
        DeadReason::of(e),
    )
}

/// An error reply: `Nats-Service-Error(-Code)` headers and the body
/// `{"error": {"code", "message", ...details}}`, as HTTP answers the same error;
/// the request's dead letter has `reason`, or none when the log failed.
fn error_reply(status: u16, code: &str, message: String, details: Value, reason: Option<DeadReason>) -> Answer {
    let refusal = match reason {
        Some(reason) => Refusal::Dead(reason, message.clone()),
        None => Refusal::Failed(message.clone()),
    };
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", "application/json");
    headers.insert("Nats-Service-Error-Code", status.to_string().as_str());
    headers.insert("Nats-Service-Error", crate::dlq::error_text(&message).as_str());
    let mut error = json!({ "code": code, "message": message });
    if let (Some(error), Value::Object(details)) = (error.as_object_mut(), details) {
        error.extend(details);
    }
    Answer {
        headers,
        body: json!({ "error": error }).to_string().into(),
        refused: Some(refusal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsflow_log::LogOptions;

    fn json_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("Content-Type", "application/cloudevents+json");
        headers
    }

    /// Why each request was refused, as a published one's dead letter would say,
    /// and nothing for one recorded.
    #[tokio::test]
    async fn a_refusal_names_the_dead_letter_reason() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = EventLog::open_async(dir.path().join("log"), LogOptions::default()).await?;
        let event = |id: &str| json!({"specversion":"1.0","id":id,"source":"svc","type":"note.added","subject":"notes/1","data":{}});
        let recorded = handle(&log, Some(&json_headers()), event("n-1").to_string().into()).await;
        assert!(recorded.refused.is_none(), "{recorded:?}");
        let refusal = |answer: Answer| match answer.refused {
            Some(Refusal::Dead(reason, _)) => Some(reason),
            other => panic!("not a dead letter: {other:?}"),
        };
        let malformed = handle(&log, Some(&json_headers()), Bytes::from_static(b"{")).await;
        assert_eq!(refusal(malformed), Some(DeadReason::Decode));
        let mut proto = HeaderMap::new();
        proto.insert("Content-Type", "application/protobuf");
        let garbage = handle(&log, Some(&proto), Bytes::from_static(b"\xff\xff")).await;
        assert_eq!(refusal(garbage), Some(DeadReason::Decode));
        let mut bad_time = event("n-2");
        bad_time["time"] = json!("yesterday");
        let invalid = handle(&log, Some(&json_headers()), bad_time.to_string().into()).await;
        assert_eq!(refusal(invalid), Some(DeadReason::Invalid));
        let mut expecting = json_headers();
        expecting.insert("opsflow-expected-version", "no_stream");
        let conflict = handle(&log, Some(&expecting), event("n-3").to_string().into()).await;
        assert_eq!(refusal(conflict), Some(DeadReason::VersionConflict));
        let mut changed = event("n-1");
        changed["data"] = json!({"other": true});
        let duplicate = handle(&log, Some(&json_headers()), changed.to_string().into()).await;
        assert_eq!(refusal(duplicate), Some(DeadReason::DuplicateConflict));
        log.close().await?;
        let closed = handle(&log, Some(&json_headers()), event("n-4").to_string().into()).await;
        assert!(matches!(closed.refused, Some(Refusal::Failed(_))), "{closed:?}");
        Ok(())
    }

    /// A binary-mode CloudEvent whose data is protobuf (`Content-Type:
    /// application/protobuf`, as ingest takes it) is recorded, not read as an
    /// `AppendRequest` (it was: `invalid wire type`).
    #[tokio::test]
    async fn a_binary_mode_event_with_protobuf_data_is_not_an_append_request() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = EventLog::open_async(dir.path().join("log"), LogOptions::default()).await?;
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "p-1"),
            ("ce-source", "pager"),
            ("ce-type", "note.added"),
            ("ce-subject", "notes/1"),
            ("Content-Type", "application/protobuf"),
        ] {
            headers.insert(name, value);
        }
        let answer = handle(&log, Some(&headers), Bytes::from_static(b"\x0a\x03abc\x17")).await;
        assert!(answer.refused.is_none(), "{answer:?}");
        let body: Value = serde_json::from_slice(&answer.body)?;
        assert_eq!(
            (body["stream"].as_str(), body["position"].as_u64()),
            (Some("notes/1"), Some(1))
        );
        let event = log
            .read_all(Some(1), opsflow_log::Direction::Forward, 1)
            .await?
            .remove(0);
        assert_eq!(event.content_type, "application/protobuf");
        assert_eq!(&event.data[..], b"\x0a\x03abc\x17");
        Ok(())
    }

    /// A body of no form it can tell (here an AppendRequest sent without a content
    /// type) is refused listing the AppendRequest too: the list named the
    /// CloudEvents forms only, not what the sender meant.
    #[tokio::test]
    async fn a_body_of_no_known_form_is_told_an_append_request_is_one() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = EventLog::open_async(dir.path().join("log"), LogOptions::default()).await?;
        let answer = handle(&log, None, Bytes::from_static(b"\x0a\x03abc")).await;
        let body: Value = serde_json::from_slice(&answer.body)?;
        let said = body["error"]["message"].as_str().unwrap_or_default();
        assert!(said.starts_with("cannot tell the CloudEvents content mode"), "{body}");
        assert!(
            said.ends_with("or an opsflow.v1.AppendRequest with Content-Type: application/protobuf"),
            "{body}"
        );
        Ok(())
    }

    /// A protobuf body with `ce-` headers but no `ce-specversion` is a binary-mode
    /// event missing its spec version, as ingest says, not an `AppendRequest`
    /// (protobuf data read as one said `invalid wire type`, or recorded nothing).
    #[tokio::test]
    async fn ce_headers_without_a_spec_version_are_a_binary_mode_event_missing_it() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = EventLog::open_async(dir.path().join("log"), LogOptions::default()).await?;
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("CE-id", "p-1"),
            ("ce-source", "pager"),
            ("ce-type", "note.added"),
            ("Content-Type", "application/protobuf"),
        ] {
            headers.insert(name, value);
        }
        let answer = handle(&log, Some(&headers), Bytes::from_static(b"\x0a\x03abc\x17")).await;
        let body: Value = serde_json::from_slice(&answer.body)?;
        let said = body["error"]["message"].as_str().unwrap_or_default();
        assert!(said.contains("specversion"), "{body}");
        let ingest = crate::decode::decode(Some(&headers), Bytes::from_static(b"\x0a\x03abc\x17"))
            .err()
            .map(|(_, said)| said)
            .unwrap_or_default();
        assert_eq!(said, ingest, "request/reply and ingest read the message alike");
        Ok(())
    }

    /// An error quoting a name of 400,000 bytes is answered, cut: the reply used to
    /// exceed NATS's largest message, and the producer waited out its timeout.
    #[tokio::test]
    async fn an_error_quoting_a_huge_name_is_answered_cut() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = EventLog::open_async(dir.path().join("log"), LogOptions::default()).await?;
        let mut event = json!({"specversion":"1.0","id":"n-1","source":"svc","type":"note.added","subject":"notes/1"});
        event["\u{e9}".repeat(200_000)] = json!("x");
        let answer = handle(&log, Some(&json_headers()), event.to_string().into()).await;
        assert!(
            matches!(answer.refused, Some(Refusal::Dead(DeadReason::Decode, _))),
            "{:?}",
            answer.refused
        );
        assert!(answer.body.len() < 1_000, "{} bytes", answer.body.len());
        let said = answer.headers.get("Nats-Service-Error").map(|v| v.as_str().len());
        assert!(said.is_some_and(|n| n < 1_000), "{said:?}");
        Ok(())
    }
}
