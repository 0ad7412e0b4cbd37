//! JetStream ingest: a durable pull consumer over `ops.events.>`, batches appended
//! with [`EventLog::submit_each`] and settled strictly in order, each batch
//! acknowledged (one `AckPolicy::All` acknowledgement, see [`crate::pull::covering`]) only once
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
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod adopt;
mod advice;
mod pipeline;
mod recover;
mod watch;

use crate::decode::{DeadReason, decode};
use crate::pull::{Delivery, Pull, ack_through};
use crate::{DeadLetters, NatsConfig};
pub use adopt::ensure_stream;
use advice::{consumer_refused, replace_advice};
use pipeline::Pipeline;
use recover::{RECOVER_SPAN_UNLIMITED, Reading, Which, origin, recover};
use watch::{PassedOver, Skipped, WATCH_PERIOD, Watch, covers_all, report_skipped};

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
    // Where the consumer passed over ingest events, across sessions and restarts.
    let mut passed = PassedOver::in_log(log);
    loop {
        let mut consumed = false;
        let outcome = session(js, config, log, shutdown, &ready.ingest, &mut consumed, &mut passed).await;
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
    watch: Watch,
    stream: stream::Stream,
}

/// The ingest stream, the dead-letter publisher and the consumer's deliveries ([`Pull`]).
/// What an earlier session was given and did not acknowledge is recorded first
/// ([`recover`]).
async fn setup(
    js: &jetstream::Context,
    config: &NatsConfig,
    log: &EventLog,
    passed: &mut PassedOver,
) -> Result<Consuming, Stop> {
    let stream = ensure_stream(js, &config.ingest).await.map_err(transient)?;
    let replicas = stream.cached_info().config.num_replicas.max(1);
    let dead_letters = DeadLetters::ensure(js.clone(), &config.dead_letters, replicas)
        .await
        .and_then(DeadLetters::file_stored)
        .map_err(transient)?;
    let batch = config.ingest.batch;
    let pull = pull_messages(batch);
    let (filter_subject, filter_subjects) = watch::filters_for(&config.ingest.subjects);
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
                filter_subject,
                filter_subjects,
                // Room for what is being appended and one and a half pulls delivered.
                max_ack_pending: i64::try_from(batch * BATCHES_IN_FLIGHT + pull * 2).unwrap_or(i64::MAX),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| {
            let code = match e.kind() {
                jetstream::stream::ConsumerErrorKind::JetStream(e) => Some(e.error_code()),
                _ => None,
            };
            transient(consumer_refused(
                &e,
                code,
                &stream,
                &config.ingest.consumer,
                &config.ingest.subjects,
            ))
        })?;
    let mut info = consumer.cached_info().clone();
    let replace = replace_advice(&stream, &config.ingest.consumer);
    // A consumer made otherwise is adopted if it can keep the promise: each message
    // acknowledged, and only once recorded, with its payload.
    if info.config.ack_policy == AckPolicy::None || info.config.headers_only {
        return Err(transient(format!(
            "consumer {} of stream {} cannot be used for ingest ({}): {replace}",
            config.ingest.consumer,
            config.ingest.stream,
            if info.config.headers_only {
                "it delivers headers only"
            } else {
                "it does not wait for acknowledgements, so a crash would lose messages"
            }
        )));
    }
    // What was kept of where it passed over events is of this consumer of this
    // stream only, as made.
    passed.bind(
        (
            &config.ingest.stream,
            stream.cached_info().created.unix_timestamp_nanos(),
        ),
        (&config.ingest.consumer, info.created.unix_timestamp_nanos()),
    );
    // A consumer whose filters leave out ingest subjects (an operator narrowed
    // them, or it was made so) would pass over events producers had published:
    // its filters are set to the ingest subjects, as a session does when it finds
    // them narrowed ([`watch::Watch`]).
    let stream_subjects = stream.cached_info().config.subjects.clone();
    let left_out: Vec<String> = watch::left_out(&info, &stream_subjects, &config.ingest.subjects)
        .into_iter()
        .cloned()
        .collect();
    if !left_out.is_empty() {
        passed.narrowed().await;
        let had = watch::delivered_subjects(&info, &stream_subjects);
        match watch::set_filters(&stream, &info, &config.ingest.subjects).await {
            Ok(updated) => {
                tracing::warn!(
                    consumer = %config.ingest.consumer,
                    filters = ?had,
                    left_out = ?left_out,
                    "the ingest consumer's filters left out ingest subjects: set to {:?} (to ingest fewer subjects, \
                     set [nats.ingest] subjects){}",
                    config.ingest.subjects,
                    if passed.known() { "" } else { "; what it passed over before opsflow started is not read back" }
                );
                info = updated;
            }
            // The session's first look says so in /readyz, and tries again.
            Err(e) => tracing::warn!(consumer = %config.ingest.consumer, left_out = ?left_out, "{e}"),
        }
    }
    let info = &info;
    // The consumer's filters (none: all its stream captures), and what it delivers.
    let mut filters = info.config.filter_subjects.clone();
    filters.extend(Some(info.config.filter_subject.clone()).filter(|f| !f.is_empty()));
    let delivers = &watch::delivered_subjects(info, &stream_subjects);
    for (key, own, what) in config.own_subjects() {
        if let Some(overlapping) = delivers.iter().find(|d| crate::subjects::overlap(d, &own)) {
            return Err(transient(format!(
                "consumer {} of stream {} delivers {overlapping}, which holds opsflow's own {what} ({own}, \
                 [nats] {key}): ingesting them would loop; give the consumer filter subjects within {:?}, or \
                 {replace}",
                config.ingest.consumer, config.ingest.stream, config.ingest.subjects
            )));
        }
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
    let reading = Reading {
        js,
        stream: &stream,
        batch,
        log,
        dead: &dead_letters,
        consumer: &config.ingest.consumer,
    };
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
        // A work-queue stream holds only what no consumer acknowledged: all of
        // it since the floor is read (from message to message), what the
        // consumer passed over included, and each is deleted once recorded, as
        // its acknowledgement would; not what another consumer takes (when they
        // cannot be listed, only the last deliveries, as below).
        let work_queue = stream.cached_info().config.retention == stream::RetentionPolicy::WorkQueue;
        let others = if work_queue {
            watch::others_on_work_queue(&stream, &config.ingest.consumer).await
        } else {
            None
        };
        let whole = others.is_some();
        let first = if ack_all || whole {
            floor + 1
        } else {
            (floor + 1).max(delivered.saturating_sub(span) + 1)
        };
        let given = first..=delivered;
        let (from, to) = (*given.start(), *given.end());
        // A consumer acknowledging each message would get them again, but only
        // after `ack_wait`; recorded now (the redeliveries are then duplicates),
        // they keep their order and a message no client can read is taken out.
        let which = Which {
            range: given,
            filters: if whole { &config.ingest.subjects } else { &filters },
            others: others.as_deref().unwrap_or_default(),
            sparse: whole,
            remove: whole,
        };
        let recorded = recover(&reading, which).await?;
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

    // Delivering every ingest subject again after an earlier session saw it leave
    // some out: what it passed over meanwhile is read back first.
    let mut read_to = None;
    if watch::left_out(info, &stream_subjects, &config.ingest.subjects).is_empty() {
        let last = if passed.known() {
            let fresh = js.get_stream(&config.ingest.stream).await.map_err(transient)?;
            fresh.cached_info().state.last_sequence
        } else {
            0
        };
        for range in passed.complete(info.delivered.stream_sequence, last, None) {
            read_to = read_to.max(Some(*range.end()));
            let never = CancellationToken::new();
            if let Some(read) = watch::read_back(&reading, &config.ingest.subjects, range, &never).await {
                read?;
            }
        }
        passed.read();
    }

    let mut skipped =
        covers_all(delivers, &stream_subjects).then(|| Skipped::from(info, stream.cached_info(), delivers));
    // What was read back is not a gap (on a work-queue stream it is deleted).
    if let (Some(check), Some(to)) = (skipped.as_mut(), read_to) {
        check.passed(to);
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
        watch: Watch::new(info, &config.ingest.subjects, skipped.as_ref().and_then(|s| s.last)),
        skipped,
        stream,
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
    passed: &mut PassedOver,
) -> Result<(), Stop> {
    // Setting up holds no work: shutdown does not wait for it (each step waits for
    // NATS, which may be unreachable).
    let Some(setup) = shutdown.run_until_cancelled(setup(js, config, log, passed)).await else {
        return Ok(());
    };
    let Consuming {
        dead_letters,
        mut messages,
        mut deliveries,
        mut skipped,
        mut watch,
        stream,
    } = setup?;
    let reading = Reading {
        js,
        stream: &stream,
        batch: config.ingest.batch,
        log,
        dead: &dead_letters,
        consumer: &config.ingest.consumer,
    };
    let ack_all = deliveries.is_some();
    *consumed = true;
    // A new connection ends the session: deliveries the old one had not received
    // are then recovered at once, not redelivered after `ack_wait`.
    let client = js.client();
    let connected = crate::connection::connects(&client);
    let mut reconnected = tokio::time::interval(RECONNECT_CHECK);
    let mut watched = tokio::time::interval_at(tokio::time::Instant::now() + WATCH_PERIOD, WATCH_PERIOD);
    watched.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let batch = config.ingest.batch;
    tracing::info!(stream = %config.ingest.stream, consumer = %config.ingest.consumer, "nats ingest consuming");
    // Ready once the first look finds nothing wrong (a stream full already is
    // said from the start, not after a moment of ready), and only on this
    // connection: not on a new one until a new session is.
    match shutdown
        .run_until_cancelled(watch.check(
            &reading,
            passed,
            skipped.as_ref().and_then(|s| s.last),
            (ready, connected),
            shutdown,
        ))
        .await
    {
        Some(Ok(())) => {}
        Some(Err(stop)) => return Err(stop),
        None => return Ok(()),
    }
    // Pipelining: batches are enqueued in order and commit while the next batch is
    // fetched and decoded; each batch acknowledges after the one before it.
    let mut pipeline = Pipeline {
        slots: Arc::new(Semaphore::new(BATCHES_IN_FLIGHT)),
        settling: JoinSet::new(),
        previous: None,
        log,
        dead: &dead_letters,
        client: &client,
        ack_all,
    };
    let outcome = loop {
        let mut failed = None;
        while let Some(done) = pipeline.settling.try_join_next() {
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
            Some(done) = pipeline.settling.join_next(), if !pipeline.settling.is_empty() => {
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
            _ = watched.tick() => {
                let seen = skipped.as_ref().and_then(|s| s.last);
                // Shutdown does not wait for a look (its requests wait for NATS).
                let look = watch.check(&reading, passed, seen, (ready, connected), shutdown);
                match shutdown.run_until_cancelled(look).await {
                    Some(Ok(())) => {
                        if let (Some(check), Some(to)) = (skipped.as_mut(), watch.read_to.take()) {
                            check.passed(to);
                        }
                        continue;
                    }
                    Some(Err(stop)) => break Err(stop),
                    None => break Ok(()),
                }
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
        // Split where the consumer skipped stream sequences still in the stream
        // (its filters left them out for a while): what came before is enqueued,
        // then what it skipped is read back, then the rest, in stream order.
        let mut stopped = None;
        let mut unchecked = false;
        if let Some(check) = skipped.as_mut() {
            let mut i = 0;
            while i < pending.len() {
                let Some(gap) = check.check(&pending[i]) else {
                    i += 1;
                    continue;
                };
                // Rare: whether it is a loss is worth a request.
                let Some(removed) = check.removed(js, &config.ingest.stream, gap.clone()).await else {
                    unchecked = true;
                    break;
                };
                if !removed.is_empty() {
                    report_skipped(&config.ingest.stream, removed.clone());
                }
                let unread = (removed.end() + 1).max(*gap.start())..=*gap.end();
                // Most often deleted from within the stream (a per-subject limit,
                // a dead letter opsflow took out): nothing to read, no split.
                if !unread.is_empty() && recover::holds_any(&reading, &config.ingest.subjects, &unread).await {
                    let before: Vec<async_nats::Message> = pending.drain(..i).collect();
                    i = 0;
                    if !before.is_empty() && !pipeline.enqueue(before).await {
                        stopped = Some(Ok(()));
                        break;
                    }
                    match watch::read_back(&reading, &config.ingest.subjects, unread, shutdown).await {
                        Some(Ok(())) => {}
                        Some(Err(stop)) => {
                            stopped = Some(Err(stop));
                            break;
                        }
                        None => {
                            stopped = Some(Ok(()));
                            break;
                        }
                    }
                }
                i += 1;
            }
        }
        if unchecked {
            skipped = None;
            watch.gaps_from = None;
        }
        // Not enqueued: delivered again to a later session.
        if let Some(stop) = stopped {
            break stop;
        }
        if !pending.is_empty() && !pipeline.enqueue(pending).await {
            break Ok(());
        }
        // What came before a missed delivery settles; nothing after it is taken.
        if let Some(missed) = missed {
            break Err(transient(missed));
        }
    };
    // Let every enqueued batch finish: acknowledge what became durable.
    let mut first_error = None;
    while let Some(done) = pipeline.settling.join_next().await {
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
    fn pulls_hold_several_batches_within_bounds() {
        assert_eq!(pull_messages(1000), 8000);
        assert_eq!(pull_messages(1), 8);
        assert_eq!(pull_messages(4000), PULL_MESSAGES_MAX);
        // Never less than one batch, however large the batch.
        assert_eq!(pull_messages(20_000), 20_000);
    }
}
