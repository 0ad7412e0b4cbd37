//! JetStream ingest: a durable pull consumer over `ops.events.>`, batches appended
//! with [`EventLog::submit_each`] and settled strictly in order, each batch
//! acknowledged (one `AckPolicy::All` acknowledgement, see [`covering`]) only once
//! its events are durable. Redeliveries are absorbed by the log's idempotent
//! `(source, id)`, so each event is recorded exactly once. Bad messages go to the
//! dead-letter subject and are terminated, never redelivered forever.
//!
//! One acknowledgement covers every earlier message, including those an earlier
//! session (a killed process, a dropped connection) had been given and never
//! recorded: JetStream would redeliver them only after `ack_wait`, after this
//! session had acknowledged past them. So a session that finds messages given and
//! not acknowledged first reads them from the stream by sequence, records them
//! ([`recover`]) and acknowledges them ([`ack_through`]), and only then consumes.
//! The consumer's info bounds what an earlier session was given: nats-server
//! drops a pull request whose subscriber is gone (a killed process, a dropped
//! subscription) instead of delivering to it.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{self, stream};
use std::sync::Arc;

use opsflow_log::{AppendOutcome, EventLog, LogError};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod recover;

use crate::decode::{DeadReason, decode};
use crate::pull::{Delivery, Pull, ack, ack_through, covering, retry_after, terminate};
use crate::{DeadLetters, IngestConfig, NatsConfig, NatsError};
use recover::{RECOVER_SPAN_UNLIMITED, origin, recover};

/// Batches enqueued in the log and awaiting durability at once.
const BATCHES_IN_FLIGHT: usize = 8;

/// Messages asked of JetStream per pull request: this many append batches, at most
/// [`PULL_MESSAGES_MAX`] messages and [`PULL_BYTES`] bytes. The client asks again
/// when half is delivered; with pulls of one batch each re-pull stalled delivery
/// (about 7 ms per 1,000 messages on a busy 2-core machine, a third of the ingest
/// time), with eight batches it overlaps.
const PULL_BATCHES: usize = 8;
const PULL_MESSAGES_MAX: usize = 16_384;
/// NATS's largest possible message (`max_payload` cannot exceed 64 MB), so that
/// every message fits in a pull; it bounds what a pull buffers.
const PULL_BYTES: usize = 64 << 20;

/// Messages per pull request for an append batch size (see [`PULL_BATCHES`]).
fn pull_messages(batch: usize) -> usize {
    (batch * PULL_BATCHES).clamp(batch, PULL_MESSAGES_MAX.max(batch))
}

/// Runs ingest until `shutdown`; reconnects and re-creates the consumer after
/// transient failures (NATS restarts) with backoff. Fails only when the log does.
pub async fn run_ingest(
    client: async_nats::Client,
    config: NatsConfig,
    log: EventLog,
    shutdown: CancellationToken,
    ready: crate::Readiness,
) -> anyhow::Result<()> {
    // Every reason's count is on /metrics from the start, at 0 until it is not.
    for reason in crate::DeadReason::ALL {
        metrics::counter!("opsflow_nats_dead_letters_total", "reason" => reason.as_str()).increment(0);
    }
    metrics::counter!("opsflow_nats_ingested_total").increment(0);
    metrics::counter!("opsflow_nats_ingest_interruptions_total").increment(0);
    metrics::counter!("opsflow_nats_ingest_skipped_total").increment(0);
    let js = jetstream::new(client.clone());
    crate::claim::while_held(
        &client,
        crate::claim::Role::Ingest,
        &format!("{}/{}", config.ingest.stream, config.ingest.consumer),
        &shutdown,
        &ready.ingest,
        ingest(&js, &config, &log, &shutdown, &ready),
    )
    .await
}

/// Ingests until `shutdown`, starting a new session after transient failures.
async fn ingest(
    js: &jetstream::Context,
    config: &NatsConfig,
    log: &EventLog,
    shutdown: &CancellationToken,
    ready: &crate::Readiness,
) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(200);
    loop {
        let mut consumed = false;
        let outcome = session(js, config, log, shutdown, &ready.ingest, &mut consumed).await;
        ready.ingest.set(false);
        if consumed {
            // A session that got going: the next failure is a new one, not this one
            // again.
            delay = Duration::from_millis(200);
        }
        match outcome {
            Ok(()) => return Ok(()),
            Err(Stop::Log(e)) => return Err(anyhow::anyhow!("the event log refused ingest: {e}")),
            Err(Stop::Transient(e)) => {
                metrics::counter!("opsflow_nats_ingest_interruptions_total").increment(1);
                tracing::warn!(error = %e, retry_in = ?delay, "nats ingest interrupted");
                ready.ingest.fail(e);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

pub(super) enum Stop {
    /// NATS or JetStream trouble: retry.
    Transient(String),
    /// The log cannot take writes: stop and report.
    Log(LogError),
}

pub(super) fn transient(e: impl std::fmt::Display) -> Stop {
    Stop::Transient(e.to_string())
}

/// Creates the ingest stream, or adopts an existing one whose subjects and storage fit.
pub async fn ensure_stream(js: &jetstream::Context, config: &IngestConfig) -> Result<stream::Stream, NatsError> {
    let retention = match config.retention.as_str() {
        "interest" => stream::RetentionPolicy::Interest,
        "workqueue" => stream::RetentionPolicy::WorkQueue,
        _ => stream::RetentionPolicy::Limits,
    };
    let wanted = stream::Config {
        name: config.stream.clone(),
        subjects: config.subjects.clone(),
        storage: stream::StorageType::File,
        retention,
        num_replicas: config.replicas,
        ..Default::default()
    };
    let mut stream = match js.get_or_create_stream(wanted).await {
        Ok(stream) => stream,
        Err(e) if jetstream_not_enabled(e.kind()) => {
            return Err(NatsError::JetStream(format!(
                "{e}: ingest needs JetStream, and the server has none for this account; start nats-server with -js \
                 (or a jetstream block in its config), and enable it for the account if accounts are configured"
            )));
        }
        Err(e) => {
            // Most likely another stream holds the subjects: name it.
            for subject in &config.subjects {
                if let Ok(other) = js.stream_by_subject(subject.clone()).await
                    && other != config.stream
                {
                    return Err(NatsError::StreamNotCreated {
                        stream: config.stream.clone(),
                        reason: format!(
                            "stream {other} already captures {subject} ({e}); set [nats.ingest] stream = \"{other}\" \
                             to ingest from it, or take {subject} out of it"
                        ),
                    });
                }
            }
            return Err(NatsError::JetStream(e.to_string()));
        }
    };
    let info = stream.info().await.map_err(|e| NatsError::JetStream(e.to_string()))?;
    let existing = &info.config;
    // Adopted when its subjects cover the ingest subjects (`ops.>` covers
    // `ops.events.>`); the consumer then filters to the ingest subjects.
    let missing: Vec<&String> = config
        .subjects
        .iter()
        .filter(|s| !existing.subjects.iter().any(|e| crate::subjects::covers(e, s)))
        .collect();
    if !missing.is_empty() {
        return Err(NatsError::IncompatibleStream {
            stream: config.stream.clone(),
            reason: format!("its subjects {:?} lack {missing:?}", existing.subjects),
        });
    }
    // A transform stores messages under other subjects: the consumer, filtered to
    // the ingest subjects, must still see them. (Its mapped tokens, `$1` or
    // `{{wildcard(1)}}`, are taken as any token.)
    if let Some(transform) = &existing.subject_transform {
        let stored: String = (transform.destination.split('.'))
            .map(|t| if t.contains("{{") || t.starts_with('$') { "*" } else { t })
            .collect::<Vec<_>>()
            .join(".");
        let overlaps = config
            .subjects
            .iter()
            .any(|s| crate::subjects::overlap(s, &transform.source));
        if overlaps && !config.subjects.iter().any(|s| crate::subjects::covers(s, &stored)) {
            return Err(NatsError::IncompatibleStream {
                stream: config.stream.clone(),
                reason: format!(
                    "its subject transform stores {} as {}, outside the ingest subjects {:?}: ingest would never \
                     see those messages; remove the transform, or make the ingest subjects cover it",
                    transform.source, transform.destination, config.subjects
                ),
            });
        }
    }
    if existing.storage != stream::StorageType::File {
        return Err(NatsError::IncompatibleStream {
            stream: config.stream.clone(),
            reason: "it uses memory storage; opsflow ingests only from file storage".into(),
        });
    }
    Ok(stream)
}

/// Whether the server has no JetStream (nothing answers its API), or none for
/// this account.
fn jetstream_not_enabled(kind: jetstream::context::CreateStreamErrorKind) -> bool {
    use jetstream::context::CreateStreamErrorKind;
    match kind {
        CreateStreamErrorKind::JetStreamUnavailable => true,
        CreateStreamErrorKind::JetStream(api) => crate::connection::JETSTREAM_NOT_ENABLED.contains(&api.error_code()),
        _ => false,
    }
}

/// What a session consumes with.
struct Consuming {
    dead_letters: DeadLetters,
    messages: Pull,
    /// Present when the consumer acknowledges a batch with one message: its
    /// deliveries are then checked for gaps.
    deliveries: Option<Deliveries>,
    /// None when the consumer delivers only some of its stream's subjects (the
    /// others' sequences come between its messages).
    skipped: Option<Skipped>,
}

/// The ingest stream, the dead-letter publisher and the consumer's deliveries ([`Pull`]).
/// What an earlier session was given and did not acknowledge is recorded first
/// ([`recover`]).
async fn setup(js: &jetstream::Context, config: &NatsConfig, log: &EventLog) -> Result<Consuming, Stop> {
    let stream = ensure_stream(js, &config.ingest).await.map_err(transient)?;
    let replicas = stream.cached_info().config.num_replicas.max(1);
    let dead_letters = DeadLetters::ensure(js.clone(), &config.dead_letters, replicas)
        .await
        .and_then(DeadLetters::file_stored)
        .map_err(transient)?;
    let batch = config.ingest.batch;
    let pull = pull_messages(batch);
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &config.ingest.consumer,
            pull::Config {
                durable_name: Some(config.ingest.consumer.clone()),
                // One acknowledgement per batch (of its highest stream sequence) instead
                // of one per message: batches settle strictly in order, so it
                // acknowledges exactly what is durable (see the module docs). A
                // work-queue stream takes only consumers that acknowledge each one.
                ack_policy: if stream.cached_info().config.retention == stream::RetentionPolicy::WorkQueue {
                    AckPolicy::Explicit
                } else {
                    AckPolicy::All
                },
                ack_wait: config.ack_wait(),
                // Only the ingest subjects, whatever else an adopted stream captures.
                filter_subject: match config.ingest.subjects.as_slice() {
                    [one] => one.clone(),
                    _ => String::new(),
                },
                filter_subjects: match config.ingest.subjects.as_slice() {
                    [_] => Vec::new(),
                    many => many.to_vec(),
                },
                // Room for what is being appended and one and a half pulls delivered.
                max_ack_pending: i64::try_from(batch * BATCHES_IN_FLIGHT + pull * 2).unwrap_or(i64::MAX),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| {
            transient(format!(
                "consumer {} of stream {}: {e} (a consumer of that name made otherwise, e.g. a push consumer, \
                 cannot be used: delete it and opsflow will make its own, or set [nats.ingest] consumer)",
                config.ingest.consumer, config.ingest.stream
            ))
        })?;
    let info = consumer.cached_info();
    // A consumer made otherwise is adopted if it can keep the promise: each message
    // acknowledged, and only once recorded, with its payload.
    if info.config.ack_policy == AckPolicy::None || info.config.headers_only {
        return Err(transient(format!(
            "consumer {} of stream {} cannot be used for ingest ({}): delete it and opsflow will make its own",
            config.ingest.consumer,
            config.ingest.stream,
            if info.config.headers_only {
                "it delivers headers only"
            } else {
                "it does not wait for acknowledgements, so a crash would lose messages"
            }
        )));
    }
    // What the consumer delivers: its filters, else all its stream captures.
    let mut filters = info.config.filter_subjects.clone();
    filters.extend(Some(info.config.filter_subject.clone()).filter(|f| !f.is_empty()));
    let delivers = if filters.is_empty() {
        &stream.cached_info().config.subjects
    } else {
        &filters
    };
    for (key, own, what) in config.own_subjects() {
        if let Some(overlapping) = delivers.iter().find(|d| crate::subjects::overlap(d, &own)) {
            return Err(transient(format!(
                "consumer {} of stream {} delivers {overlapping}, which holds opsflow's own {what} ({own}, \
                 [nats] {key}): ingesting them would loop; give the consumer filter subjects within {:?}, or \
                 delete it and opsflow will make its own",
                config.ingest.consumer, config.ingest.stream, config.ingest.subjects
            )));
        }
    }
    let left_out: Vec<&String> = config
        .ingest
        .subjects
        .iter()
        .filter(|s| !delivers.iter().any(|d| crate::subjects::covers(d, s)))
        .collect();
    if !left_out.is_empty() {
        tracing::warn!(
            consumer = %config.ingest.consumer,
            filters = ?delivers,
            "the ingest consumer delivers only part of the ingest subjects {:?}: events outside its filters are \
             not ingested",
            left_out
        );
    }
    if info.config.max_deliver > 0 {
        tracing::warn!(
            consumer = %config.ingest.consumer,
            max_deliver = info.config.max_deliver,
            "the ingest consumer gives up on a message after max_deliver deliveries; \
             a message opsflow could not record in time would then be dropped"
        );
    }
    // A consumer made otherwise acknowledges each message: keep doing so for it
    // (JetStream cannot change a consumer's ack policy).
    let ack_all = info.config.ack_policy == AckPolicy::All;
    if !ack_all {
        tracing::info!(consumer = %config.ingest.consumer, "existing consumer acknowledges each message");
    }
    // Pending, or given and past the floor without being pending: a consumer with
    // `max_deliver` stops redelivering (and counting as pending) what reached it,
    // though never acknowledged (an earlier session stopped before recording it).
    if info.num_ack_pending > 0 || info.ack_floor.stream_sequence < info.delivered.stream_sequence {
        let (floor, delivered) = (info.ack_floor.stream_sequence, info.delivered.stream_sequence);
        // One acknowledgement covers them all with `AckPolicy::All`: every one
        // must be read. Acknowledged one by one, only the last deliveries are
        // read (as many as may be pending at once): one message left
        // unacknowledged long ago must not make each session read everything
        // since; JetStream redelivers the older ones.
        let span = match u64::try_from(info.config.max_ack_pending) {
            Ok(pending) if pending > 0 => pending,
            _ => RECOVER_SPAN_UNLIMITED,
        };
        let first = if ack_all {
            floor + 1
        } else {
            (floor + 1).max(delivered.saturating_sub(span) + 1)
        };
        let given = first..=delivered;
        let (from, to) = (*given.start(), *given.end());
        // A consumer acknowledging each message would get them again, but only
        // after `ack_wait`; recorded now (the redeliveries are then duplicates),
        // they keep their order and a message no client can read is taken out.
        let recorded = recover(js, &stream, &filters, given, batch, log, &dead_letters).await?;
        if ack_all {
            // Recorded, so acknowledged now: else JetStream would deliver them all
            // again after `ack_wait` when nothing newer comes to carry an
            // acknowledgement past them.
            let delivered_as = info.delivered.consumer_sequence;
            ack_through(&js.client(), (&info.stream_name, &info.name), to, delivered_as)
                .await
                .map_err(transient)?;
        }
        tracing::info!(
            consumer = %config.ingest.consumer,
            from,
            to,
            pending = info.num_ack_pending,
            recorded,
            "nats ingest recorded what an earlier session was given and did not acknowledge"
        );
    }

    // Within the consumer's own limits on a pull (the server's, for one it made).
    let within = |wanted: usize, limit: i64| match usize::try_from(limit) {
        Ok(limit) if limit > 0 => wanted.min(limit),
        _ => wanted,
    };
    let messages = Pull::start(
        js.client(),
        (&info.stream_name, &info.name),
        within(pull, info.config.max_batch),
        within(PULL_BYTES, info.config.max_bytes),
        crate::pull::expires_within(info.config.max_expires),
    )
    .await
    .map_err(transient)?;
    Ok(Consuming {
        dead_letters,
        messages,
        deliveries: ack_all.then_some(Deliveries {
            next: info.delivered.consumer_sequence + 1,
        }),
        skipped: covers_all(delivers, &stream.cached_info().config.subjects)
            .then(|| Skipped::from(info, stream.cached_info(), delivers)),
    })
}

/// The consumer sequences of a session's deliveries. Every delivery of the
/// consumer, redeliveries included, takes the next one, so they follow each other;
/// a gap is a delivery this session did not get (written into a connection that
/// then broke, or to the pull request of a session that is gone but not yet
/// noticed by the server), which acknowledging a later message would cover
/// unrecorded. The session then ends before that, and the next one recovers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Deliveries {
    next: u64,
}

impl Deliveries {
    fn check(&mut self, message: &async_nats::Message) -> Result<(), String> {
        let reply = message.reply.as_deref().unwrap_or_default();
        let delivered = Delivery::of(reply)
            .ok_or_else(|| format!("a delivery without acknowledgement details (reply subject {reply:?})"))?
            .consumer_sequence;
        self.follows(delivered)
    }

    fn follows(&mut self, delivered: u64) -> Result<(), String> {
        if delivered != self.next {
            return Err(format!(
                "delivery {delivered} of the consumer arrived where {} was due: deliveries were missed \
                 (a broken connection, or another subscriber of the consumer)",
                self.next
            ));
        }
        self.next += 1;
        Ok(())
    }
}

/// The stream sequences a consumer delivering all of its stream's subjects first
/// delivers: one after the other, but for messages removed before it got to them
/// (the stream's limits with discard old: `max_msgs`, `max_bytes`, `max_age`, or
/// a purge). Their events, if any, never reach the log: counted
/// (`opsflow_nats_ingest_skipped_total`) and logged as an error, which nothing else
/// would tell.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Skipped {
    /// The stream sequence last delivered, or before the first the consumer was to
    /// deliver; `None` when that is not known (the first delivery then tells).
    last: Option<u64>,
    /// What the consumer delivers (its filters, else its stream's subjects).
    delivers: Vec<String>,
}

impl Skipped {
    /// For consumer `info` of `stream`: after what it delivered last; else (it
    /// delivered nothing yet) from the stream's start when both were made together
    /// (as opsflow makes them), or from the stream's first message when the
    /// consumer was made just now (an adopted stream may have lost messages long
    /// before opsflow's time).
    fn from(info: &jetstream::consumer::Info, stream: &jetstream::stream::Info, delivers: &[String]) -> Skipped {
        let delivered = info.delivered.stream_sequence;
        const SECOND: i128 = 1_000_000_000;
        let created = info.created.unix_timestamp_nanos();
        let now = jiff::Timestamp::now().as_nanosecond();
        let made_together = (created - stream.created.unix_timestamp_nanos()).abs() < 5 * SECOND;
        let made_now = (now - created).abs() < 10 * SECOND;
        let last = if delivered > 0 {
            Some(delivered)
        } else if made_together {
            Some(0)
        } else if made_now {
            Some(stream.state.first_sequence.saturating_sub(1))
        } else {
            None
        };
        Skipped {
            last,
            delivers: delivers.to_vec(),
        }
    }

    /// Of the stream sequences `gap`, those removed before the consumer got to them:
    /// the ones below the stream's first message now (the stream's limits or a
    /// purge took them from its start). Those deleted from within the stream (by an
    /// operator, or by opsflow after dead-lettering a message no client can read)
    /// are not counted, nor anything once the stream captures subjects the
    /// consumer does not deliver (their messages come between its own): `None`,
    /// and the check stops.
    async fn removed(
        &self,
        js: &jetstream::Context,
        stream: &str,
        gap: std::ops::RangeInclusive<u64>,
    ) -> Option<std::ops::RangeInclusive<u64>> {
        let found = match js.get_stream(stream).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(error = %e, stream, "cannot read the ingest stream's subjects");
                return None;
            }
        };
        let info = found.cached_info();
        if !covers_all(&self.delivers, &info.config.subjects) {
            return None;
        }
        let below = (*gap.end()).min(info.state.first_sequence.saturating_sub(1));
        Some(*gap.start()..=below)
    }

    /// Notes `message`; returns the stream sequences skipped before it.
    fn check(&mut self, message: &async_nats::Message) -> Option<std::ops::RangeInclusive<u64>> {
        let delivery = Delivery::of(message.reply.as_deref()?)?;
        let next = delivery.stream_sequence;
        if delivery.deliveries != 1 || self.last.is_some_and(|last| next <= last) {
            return None;
        }
        let last = self.last.replace(next)?;
        (next > last + 1).then(|| last + 1..=next - 1)
    }
}

/// Whether every subject of `subjects` is among what `delivers` covers.
fn covers_all(delivers: &[String], subjects: &[String]) -> bool {
    subjects
        .iter()
        .all(|s| delivers.iter().any(|d| crate::subjects::covers(d, s)))
}

/// Reports stream sequences `removed` before the consumer delivered them.
fn report_skipped(stream: &str, removed: std::ops::RangeInclusive<u64>) {
    let count = removed.end() - removed.start() + 1;
    metrics::counter!("opsflow_nats_ingest_skipped_total").increment(count);
    tracing::error!(
        stream,
        from = removed.start(),
        to = removed.end(),
        count,
        "stream messages were removed before ingest read them (the stream's limits discarding old messages, or a \
         purge): their events are not in the log; bound the ingest stream with discard new, so that \
         producers are refused instead"
    );
}

/// How often a session checks whether the client connected again.
const RECONNECT_CHECK: Duration = Duration::from_secs(1);

/// The session's end for a failure of the log itself.
pub(super) fn log_stop(e: LogError) -> Stop {
    if matches!(e, LogError::Closed) {
        Stop::Transient("the log is closing".into())
    } else {
        Stop::Log(e)
    }
}

async fn session(
    js: &jetstream::Context,
    config: &NatsConfig,
    log: &EventLog,
    shutdown: &CancellationToken,
    ready: &crate::ready::Flag,
    consumed: &mut bool,
) -> Result<(), Stop> {
    // Setting up holds no work: shutdown does not wait for it (each step waits for
    // NATS, which may be unreachable).
    let Some(setup) = shutdown.run_until_cancelled(setup(js, config, log)).await else {
        return Ok(());
    };
    let Consuming {
        dead_letters,
        mut messages,
        mut deliveries,
        mut skipped,
    } = setup?;
    let ack_all = deliveries.is_some();
    *consumed = true;
    // A new connection ends the session: deliveries the old one had not received
    // are then recovered at once, not redelivered after `ack_wait`.
    let client = js.client();
    let connected = crate::connection::connects(&client);
    let mut reconnected = tokio::time::interval(RECONNECT_CHECK);
    let batch = config.ingest.batch;
    tracing::info!(stream = %config.ingest.stream, consumer = %config.ingest.consumer, "nats ingest consuming");
    // Not ready on a new connection until a new session is.
    ready.set_ready_on(connected);
    // Pipelining: batches are enqueued in order and commit while the next batch is
    // fetched and decoded; each batch acknowledges after the one before it.
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    let mut settling: JoinSet<Result<(), Stop>> = JoinSet::new();
    let mut previous: Option<oneshot::Receiver<()>> = None;
    let outcome = loop {
        let mut failed = None;
        while let Some(done) = settling.try_join_next() {
            if let Err(stop) = done.unwrap_or_else(|e| Err(transient(e))) {
                failed = Some(stop);
            }
        }
        if let Some(stop) = failed {
            break Err(stop);
        }
        let first = tokio::select! {
            m = messages.next() => m,
            // A batch that failed ends the session now, not at the next message.
            Some(done) = settling.join_next(), if !settling.is_empty() => {
                if let Err(stop) = done.unwrap_or_else(|e| Err(transient(e))) {
                    break Err(stop);
                }
                continue;
            }
            _ = reconnected.tick() => {
                messages.check();
                if crate::connection::connects(&client) != connected {
                    break Err(transient(
                        "the connection to NATS was made again: what the old one was given is recovered now",
                    ));
                }
                continue;
            }
            _ = shutdown.cancelled() => break Ok(()),
        };
        let first = match first {
            Ok(m) => m,
            Err(e) => break Err(transient(e)),
        };
        if let Some(Err(missed)) = deliveries.as_mut().map(|d| d.check(&first)) {
            break Err(transient(missed));
        }
        let mut pending = Vec::with_capacity(batch);
        pending.push(first);
        let mut missed = None;
        while pending.len() < batch {
            match messages.ready() {
                Some(Ok(m)) => {
                    if let Some(Err(gap)) = deliveries.as_mut().map(|d| d.check(&m)) {
                        missed = Some(gap);
                        break;
                    }
                    pending.push(m);
                }
                // The pull ended: what came before it settles, then the session
                // ends.
                Some(Err(e)) => {
                    missed = Some(e);
                    break;
                }
                None => break,
            }
        }
        for message in &pending {
            let Some(check) = skipped.as_mut() else { break };
            let Some(gap) = check.check(message) else { continue };
            // Rare: whether it is a loss is worth a request.
            match check.removed(js, &config.ingest.stream, gap).await {
                Some(removed) if !removed.is_empty() => report_skipped(&config.ingest.stream, removed),
                Some(_) => {}
                None => skipped = None,
            }
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break Ok(());
        };
        let (parts, decoded) = decode_batch(pending.iter());
        let appends = log.submit_each(parts).await;
        let (done, next) = oneshot::channel();
        let before = previous.replace(next);
        let dead = dead_letters.clone();
        let acks = client.clone();
        settling.spawn(async move {
            let results = appends.wait().await;
            // Settle after the batch before, and only if it settled: with one
            // acknowledgement per batch, acknowledging past a failed batch would
            // acknowledge its messages too.
            if let Some(before) = before
                && before.await.is_err()
            {
                return Err(transient("an earlier batch was not settled"));
            }
            let outcome = settle(&acks, pending, decoded, results, &dead, ack_all).await;
            if outcome.is_ok() {
                let _ = done.send(());
            }
            drop(permit);
            outcome
        });
        // What came before a missed delivery settles; nothing after it is taken.
        if let Some(missed) = missed {
            break Err(transient(missed));
        }
    };
    // Let every enqueued batch finish: acknowledge what became durable.
    let mut first_error = None;
    while let Some(done) = settling.join_next().await {
        if let Err(stop) = done.unwrap_or_else(|e| Err(transient(e))) {
            first_error.get_or_insert(stop);
        }
    }
    match (outcome, first_error) {
        (Err(stop), _) | (Ok(()), Some(stop)) => Err(stop),
        (Ok(()), None) => Ok(()),
    }
}

type Decoded = Result<usize, (DeadReason, String)>;

/// Decodes a batch: the appends to submit, and per message its part index or why not.
pub(super) fn decode_batch<'a>(
    messages: impl ExactSizeIterator<Item = &'a async_nats::Message>,
) -> (Vec<opsflow_log::StreamAppend>, Vec<Decoded>) {
    metrics::histogram!("opsflow_nats_ingest_batch").record(messages.len() as f64);
    let mut parts = Vec::with_capacity(messages.len());
    let mut decoded = Vec::with_capacity(messages.len());
    for m in messages {
        match decode(m.headers.as_ref(), m.payload.clone()) {
            Ok(part) => {
                decoded.push(Ok(parts.len()));
                parts.push(part);
            }
            Err(reason) => decoded.push(Err(reason)),
        }
    }
    (parts, decoded)
}

/// How a decoded message ends once its batch is appended: recorded (or an exact
/// duplicate), or a dead letter with its reason; `Err` for the log's own failure.
pub(super) fn outcome(
    slot: Decoded,
    results: &mut [Option<Result<AppendOutcome, LogError>>],
) -> Result<Result<(), (DeadReason, String)>, LogError> {
    let i = match slot {
        Ok(i) => i,
        Err(dead) => return Ok(Err(dead)),
    };
    match results.get_mut(i).and_then(Option::take) {
        Some(Ok(_)) => Ok(Ok(())),
        Some(Err(e)) => match DeadReason::of(&e) {
            Some(reason) => Ok(Err((reason, e.to_string()))),
            None => Err(e),
        },
        None => Ok(Err((DeadReason::Decode, "internal: no append result".into()))),
    }
}

/// Settles a batch whose appends are done: durable (or an exact duplicate) →
/// acknowledged; refused → dead letter, then terminated. With `ack_all` one
/// acknowledgement covers it (the consumer's `AckPolicy::All`, of the delivery
/// [`covering`] picks), and the dead letters are terminated after it; else each
/// message is acknowledged or terminated in turn.
async fn settle(
    client: &async_nats::Client,
    messages: Vec<async_nats::Message>,
    slots: Vec<Decoded>,
    results: Vec<Result<AppendOutcome, LogError>>,
    dead: &DeadLetters,
    ack_all: bool,
) -> Result<(), Stop> {
    let mut results: Vec<Option<Result<AppendOutcome, LogError>>> = results.into_iter().map(Some).collect();
    let mut ingested = 0u64;
    let mut dead_lettered = Vec::new();
    for (message, slot) in messages.iter().zip(slots) {
        match outcome(slot, &mut results) {
            Ok(Ok(())) => {
                if !ack_all {
                    ack(client, message).await.map_err(transient)?;
                }
                ingested += 1;
            }
            Ok(Err((reason, text))) => {
                let from = (message.reply.as_deref())
                    .and_then(Delivery::of)
                    .map(|d| origin(d.stream, d.stream_sequence, d.stored));
                dead.publish(message, reason, &text, from.as_ref())
                    .await
                    .map_err(transient)?;
                if ack_all {
                    dead_lettered.push(message);
                } else {
                    terminate(client, message).await.map_err(transient)?;
                }
            }
            Err(e) => {
                // The log's own failure: leave the message for redelivery.
                let _ = retry_after(client, message, Duration::from_secs(1)).await;
                return Err(log_stop(e));
            }
        }
    }
    if ack_all && let Some(covering) = covering(&messages) {
        // Covers every message of the batch, the dead-lettered ones too.
        ack(client, covering).await.map_err(transient)?;
        // Only then: nats-server takes a termination for an acknowledgement, and
        // one of a redelivery (a high delivery, a low stream sequence) first would
        // make it ignore the covering one.
        for message in dead_lettered {
            terminate(client, message).await.map_err(transient)?;
        }
    }
    metrics::counter!("opsflow_nats_ingested_total").increment(ingested);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_must_follow_each_other() {
        let mut deliveries = Deliveries { next: 8 };
        assert_eq!(deliveries.follows(8), Ok(()));
        assert_eq!(deliveries.follows(9), Ok(()));
        let gap = deliveries.follows(12).unwrap_err();
        assert!(
            gap.contains("delivery 12 of the consumer arrived where 10 was due"),
            "{gap}"
        );
        assert_eq!(deliveries, Deliveries { next: 10 }, "a gap does not move on");
    }

    #[test]
    fn stream_sequences_removed_before_delivery_are_told() {
        let delivered = |deliveries: u64, stream_sequence: u64| async_nats::Message {
            subject: "ops.events.x".into(),
            reply: Some(format!("$JS.ACK.OPS_EVENTS.opsflow-ingest.{deliveries}.{stream_sequence}.1.1.0").into()),
            payload: bytes::Bytes::new(),
            headers: None,
            status: None,
            description: None,
            length: 0,
        };
        // Not known where the consumer was to start: nothing to compare the first with.
        let mut skipped = Skipped {
            last: None,
            delivers: Vec::new(),
        };
        assert_eq!(skipped.check(&delivered(1, 5)), None);
        assert_eq!(skipped.check(&delivered(1, 6)), None);
        assert_eq!(skipped.check(&delivered(1, 10)), Some(7..=9));
        // A redelivery of an older one says nothing, and moves nothing.
        assert_eq!(skipped.check(&delivered(2, 3)), None);
        assert_eq!(skipped.check(&delivered(1, 11)), None);
        // Resumed where an earlier session stopped (the consumer's delivered).
        let mut skipped = Skipped {
            last: Some(100),
            delivers: Vec::new(),
        };
        assert_eq!(skipped.check(&delivered(1, 150)), Some(101..=149));
        // From the stream's start: its first message is 1.
        let mut skipped = Skipped {
            last: Some(0),
            delivers: Vec::new(),
        };
        assert_eq!(skipped.check(&delivered(1, 6)), Some(1..=5));
    }

    #[test]
    fn pulls_hold_several_batches_within_bounds() {
        assert_eq!(pull_messages(1000), 8000);
        assert_eq!(pull_messages(1), 8);
        assert_eq!(pull_messages(4000), PULL_MESSAGES_MAX);
        // Never less than one batch, however large the batch.
        assert_eq!(pull_messages(20_000), 20_000);
    }
}
