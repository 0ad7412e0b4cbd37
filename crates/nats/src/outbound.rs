//! Outbound: every committed event on `opsflow.log.<type>`, in position order, as a
//! structured CloudEvent with `Nats-Msg-Id` = position. When a JetStream stream
//! captures the subject, publishes are JetStream publishes (pipelined, each
//! acknowledged), so a restart that re-publishes is deduplicated by the stream.
//! Each such publish after a session's first to a stream also names the position
//! published to that stream before it (`Nats-Expected-Last-Msg-Id`): a connection
//! that breaks can lose what was written into it while the publishes queued after
//! go out on the next one, and the stream then refuses those instead of storing
//! them ahead of the lost ones; the session starts again from its checkpoint.
//! A checkpoint in the log makes publishing resume where it stopped, without gaps:
//! it moves past a JetStream publish once the stream acknowledges it, and past a
//! core publish once a round trip through the server after it comes back (the
//! server has then taken it), never for a publish only in the client's buffer.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::context::{GetStreamByNameErrorKind, PublishErrorKind};
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use opsflow_log::{EventFilter, EventLog, LogError, RecordedEvent, SubscriptionRef};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::OutboundConfig;
use crate::connection::connects;

type Ack = futures::future::BoxFuture<'static, (u64, Result<(), Refused>)>;

/// Why a JetStream publish was not acknowledged.
struct Refused {
    text: String,
    /// The stream's last message was not the position published to it before
    /// (`Nats-Expected-Last-Msg-Id`).
    wrong_last: bool,
}

/// What a session leaves the next one.
#[derive(Default)]
struct Carry {
    /// The session moved the checkpoint on.
    progressed: bool,
    /// The position the next session publishes without naming the one before it:
    /// the stream refused it as the session's first failure, so every publish
    /// before it was acknowledged (stored, the one before it last of outbound's),
    /// and something else was stored after that. Named again, it would be refused
    /// again, session after session.
    unchecked: Option<u64>,
}

/// How often the outbound checkpoint is saved while publishing (and how long after
/// the last publish it is saved when publishing pauses).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Events published in one turn of the session's loop at most, when they are
/// ready one after the other.
const DRAIN_MOST: usize = 256;

/// How long the server may take to confirm the core publishes before a checkpoint
/// (a round trip): longer, and the session starts again from the last checkpoint.
const CONFIRM_WITHIN: Duration = Duration::from_secs(5);

/// How long a stopping session waits for the acknowledgements and the confirmation
/// of what it published; what is not confirmed by then is published again next time.
const SETTLE_WITHIN: Duration = Duration::from_secs(1);

/// How often a session with event types no stream captures asks whether a stream
/// captures some of its subjects now (one request), when no advisory said so (the
/// NATS user may not subscribe to them): a stream made meanwhile would get core
/// publishes, which it can refuse unseen (when full, say).
const OUTLETS_FRESH: Duration = Duration::from_secs(5);

/// JetStream's advisories about streams: `<action>.<stream>`.
const STREAM_ADVISORIES: &str = "$JS.EVENT.ADVISORY.STREAM.*.*";

/// Publishes committed events until `shutdown`, resuming from the checkpoint.
pub async fn run_outbound(
    client: async_nats::Client,
    config: OutboundConfig,
    log: EventLog,
    shutdown: CancellationToken,
    ready: crate::Readiness,
) -> anyhow::Result<()> {
    // On /metrics from the start, at 0, so that the first one shows in `increase()`.
    metrics::counter!("opsflow_nats_published_total").increment(0);
    metrics::counter!("opsflow_nats_outbound_interruptions_total").increment(0);
    metrics::counter!("opsflow_nats_outbound_data_omitted_total").increment(0);
    crate::claim::while_held(
        &client,
        crate::claim::Role::Outbound,
        &format!("{}.>", config.subject_prefix),
        &shutdown,
        &ready.outbound,
        publish(&client, &config, &log, &shutdown, &ready),
    )
    .await
}

/// Publishes committed events until `shutdown`, starting again after failures.
async fn publish(
    client: &async_nats::Client,
    config: &OutboundConfig,
    log: &EventLog,
    shutdown: &CancellationToken,
    ready: &crate::Readiness,
) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(200);
    let mut carry = Carry::default();
    loop {
        let outcome = session(client, config, log, shutdown, &ready.outbound, &mut carry).await;
        ready.outbound.set(false);
        if std::mem::take(&mut carry.progressed) {
            // The next failure is a new one, not this one again.
            delay = Duration::from_millis(200);
        }
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) => {
                if matches!(e.downcast_ref::<LogError>(), Some(LogError::Closed)) {
                    return Ok(());
                }
                metrics::counter!("opsflow_nats_outbound_interruptions_total").increment(1);
                tracing::warn!(error = %e, retry_in = ?delay, "nats outbound interrupted");
                ready.outbound.fail(format!("{e:#}"));
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn session(
    client: &async_nats::Client,
    config: &OutboundConfig,
    log: &EventLog,
    shutdown: &CancellationToken,
    ready: &crate::Flag,
    carry: &mut Carry,
) -> anyhow::Result<()> {
    let js = jetstream::new(client.clone());
    let Some(jetstream) = or_shutdown(shutdown, jetstream_available(&js)).await.transpose()? else {
        return Ok(());
    };
    let Some(mut echoes) = or_shutdown(shutdown, Echo::new(client)).await.transpose()? else {
        return Ok(());
    };
    let mut published = log.checkpoint(&config.checkpoint)?.unwrap_or(0);
    let from = published;
    let mut subscription = log.subscribe(published + 1, EventFilter::default());
    let mut in_flight: FuturesOrdered<Ack> = FuturesOrdered::new();
    let mut outlets = Outlets::default();
    // Which stream captures which subject is looked up again when a stream is
    // made, changed or deleted, or found every OUTLETS_FRESH: a stream made while
    // outbound runs gets JetStream publishes (acknowledged, or refused and seen)
    // from then on, not core ones it could refuse unseen.
    let mut advisories = match or_shutdown(shutdown, client.subscribe(STREAM_ADVISORIES)).await {
        None => return Ok(()),
        Some(Ok(subscriber)) => Some(subscriber),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot follow stream advisories: streams made while outbound runs are seen \
                within {OUTLETS_FRESH:?}");
            None
        }
    };
    let mut fresh = tokio::time::interval_at(tokio::time::Instant::now() + OUTLETS_FRESH, OUTLETS_FRESH);
    fresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The headers every event carries, built once: each publish adds its Nats-Msg-Id.
    let mut template = HeaderMap::new();
    template.insert("Content-Type", "application/cloudevents+json");
    // Looked up once: the macro looks the counter up in the registry on every call.
    let published_total = metrics::counter!("opsflow_nats_published_total");
    let mut saved = published;
    // Core publishes since the last checkpoint, which the server has yet to confirm.
    let mut unconfirmed = false;
    // The log's head when the checkpoint was last saved.
    let mut head_at_save = log.head();
    // One timer, reset when the checkpoint is saved: a timer armed per event costs a
    // wake-up of the runtime's driver per event.
    let save_due = tokio::time::sleep(CHECKPOINT_EVERY);
    tokio::pin!(save_due);
    tracing::info!(from = published + 1, prefix = %config.subject_prefix, "nats outbound publishing");
    ready.set(true);
    let mut to = Outbound {
        client,
        js: jetstream.then_some(&js),
        prefix: &config.subject_prefix,
        template: &template,
        last_in_stream: HashMap::new(),
        unchecked: carry.unchecked.take(),
    };
    // One wait for shutdown for the session, not one made (and its waiter
    // registered and removed) per event.
    let stopping = shutdown.cancelled();
    tokio::pin!(stopping);
    let result = 'session: loop {
        tokio::select! {
            biased;
            _ = &mut stopping => break Ok(()),
            Some((position, acked)) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(refused) = acked {
                    if refused.wrong_last {
                        carry.unchecked = Some(position);
                        break Err(anyhow::anyhow!(
                            "publish of position {position} refused: the last message of its stream is not \
                             outbound's publish before it, something else was stored there ({}; a stream \
                             capturing outbound's subjects should hold only them)",
                            refused.text
                        ));
                    }
                    break Err(anyhow::anyhow!("publish of position {position} not acknowledged: {}", refused.text));
                }
                published = position;
            }
            () = &mut save_due, if published != saved => {}
            Some(advisory) = next_advisory(&mut advisories) => {
                let mut tokens = advisory.subject.rsplit('.');
                let (stream, action) = (tokens.next().unwrap_or_default(), tokens.next().unwrap_or_default());
                if matches!(action, "CREATED" | "UPDATED" | "DELETED") {
                    // The outlets it captured, and those no stream captured (it may
                    // now), are looked up again.
                    tracing::debug!(stream, action, "a stream changed: looking up its outlets again");
                    outlets.forget(|o| o.stream.as_deref().is_none_or(|s| s == stream));
                    if action != "UPDATED" {
                        // A stream made again is empty: nothing of outbound's is last.
                        to.last_in_stream.remove(stream);
                    }
                }
            }
            // One request: only when some stream captures part of what outbound
            // publishes are the outlets no stream captured looked up again.
            _ = fresh.tick(), if outlets.any_uncaptured() => {
                if let Some(js) = to.js
                    && js.stream_by_subject(format!("{}.>", config.subject_prefix)).await.is_ok()
                {
                    outlets.forget(|o| o.stream.is_none());
                }
            }
            // Lent: live events are shared with the other subscribers, not copied.
            item = subscription.next_ref(), if in_flight.len() < config.max_in_flight => {
                match item {
                    // The events at hand after it are published in the same turn (up
                    // to DRAIN_MOST), not each after a turn of the select: the
                    // connection then writes them together too.
                    Ok(SubscriptionRef::Event(first)) => {
                        // Nothing outstanding: a reconnect since lost nothing.
                        if in_flight.is_empty() && !unconfirmed {
                            echoes.rebase(client);
                        }
                        let (mut event, mut taken) = (first, 1);
                        loop {
                            let ack = match to.publish(&mut outlets, stopping.as_mut(), event).await {
                                None => break 'session Ok(()),
                                Some(Err(e)) => break 'session Err(e),
                                Some(Ok(ack)) => ack,
                            };
                            unconfirmed |= ack.is_none();
                            published_total.increment(1);
                            match ack {
                                Some(ack) => in_flight.push_back(ack),
                                // Nothing to wait for, and nothing before it either.
                                None if in_flight.is_empty() => published = event.position,
                                None => in_flight.push_back(futures::future::ready((event.position, Ok(()))).boxed()),
                            }
                            if taken == DRAIN_MOST || in_flight.len() >= config.max_in_flight {
                                break;
                            }
                            match subscription.try_next_ref() {
                                Some(next) => (event, taken) = (next, taken + 1),
                                None => break,
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => break Err(e.into()),
                }
            }
        }
        // What the old connection had not sent when it broke is lost: its JetStream
        // acknowledgements would only time out (after 5 s), and what is published
        // meanwhile is refused (see the module docs). Checked whenever the loop
        // turns, which publishing makes it do.
        if !in_flight.is_empty() && echoes.reconnected(client) {
            break Err(anyhow::anyhow!(
                "the connection to NATS was made again while publishes were unacknowledged: what the old one had \
                 not sent may be lost, so outbound starts again from its checkpoint"
            ));
        }
        // At most every CHECKPOINT_EVERY, not per event: a crash re-publishes at most
        // that much, which a capturing stream deduplicates by `Nats-Msg-Id`.
        if published != saved && save_due.is_elapsed() {
            if unconfirmed {
                match or_stopping(stopping.as_mut(), echoes.round_trip(client, CONFIRM_WITHIN)).await {
                    None => break Ok(()),
                    Some(confirmed) => confirmed?,
                }
                unconfirmed = false;
            }
            log.save_checkpoint(&config.checkpoint, published)?;
            saved = published;
            save_due.as_mut().reset(tokio::time::Instant::now() + CHECKPOINT_EVERY);
            // The checkpoint becomes durable with the next group commit, which may
            // never come: when outbound has caught up (appends may stop here), or
            // when nothing was committed since the last save (a backlog drained
            // with no appends). Then it is fsynced now (at most once per
            // CHECKPOINT_EVERY); otherwise a crash after a quiet spell re-publishes
            // events older than a capturing stream's duplicate window.
            let head = log.head();
            if (in_flight.is_empty() && published >= head) || head == head_at_save {
                log.flush_checkpoints().await?;
            }
            head_at_save = head;
        }
    };
    // Settle what is in flight and confirm the core publishes, briefly (NATS may be
    // unreachable), then save how far the server has surely taken them. Not after a
    // failure: an acknowledgement after a failed one does not cover it.
    let settled = result.is_ok()
        && tokio::time::timeout(SETTLE_WITHIN, async {
            while let Some((position, acked)) = in_flight.next().await {
                if acked.is_err() {
                    return false;
                }
                published = position;
            }
            !unconfirmed || echoes.round_trip(client, SETTLE_WITHIN).await.is_ok()
        })
        .await
        .unwrap_or(false);
    // After a failure, what was acknowledged before it (in order) still counts;
    // core publishes not yet confirmed do not.
    if (settled || (result.is_err() && !unconfirmed)) && published != saved {
        match log.save_checkpoint(&config.checkpoint, published) {
            Ok(()) => saved = published,
            Err(e) if result.is_ok() => return Err(e.into()),
            Err(e) => tracing::warn!(error = %e, "saving the outbound checkpoint after a failure"),
        }
    }
    // Progress is a checkpoint moved on: a session whose acknowledgements were of
    // duplicates before it failed again is the same failure again.
    carry.progressed = saved > from;
    result
}

/// Where events of one type go: their subject, and whether a JetStream stream
/// captures it (looked up once per type and session).
struct Outlet {
    event_type: String,
    subject: async_nats::Subject,
    /// The stream that captures the subject, if any.
    stream: Option<String>,
    /// The capturing stream's largest message (`max_msg_size`), 0 for none.
    stream_limit: usize,
}

/// The outlets looked up in a session, by event type; the last one asked for is
/// tried first (events of one type mostly come together).
#[derive(Default)]
struct Outlets {
    by_type: HashMap<String, Arc<Outlet>>,
    last: Option<Arc<Outlet>>,
}

impl Outlets {
    fn get(&mut self, event_type: &str) -> Option<Arc<Outlet>> {
        if let Some(last) = &self.last
            && last.event_type == event_type
        {
            return Some(Arc::clone(last));
        }
        let outlet = Arc::clone(self.by_type.get(event_type)?);
        self.last = Some(Arc::clone(&outlet));
        Some(outlet)
    }

    /// Forgets the outlets `stale` picks: they are looked up again when next used.
    fn forget(&mut self, stale: impl Fn(&Outlet) -> bool) {
        self.by_type.retain(|_, o| !stale(o));
        if self.last.as_deref().is_some_and(&stale) {
            self.last = None;
        }
    }

    /// Whether some event type goes out with core publishes, no stream capturing it.
    fn any_uncaptured(&self) -> bool {
        self.by_type.values().any(|o| o.stream.is_none())
    }

    fn insert(&mut self, outlet: Outlet) -> Arc<Outlet> {
        let outlet = Arc::new(outlet);
        self.by_type.insert(outlet.event_type.clone(), Arc::clone(&outlet));
        self.last = Some(Arc::clone(&outlet));
        outlet
    }
}

/// The next stream advisory; never, without a subscription (or once it ends).
async fn next_advisory(advisories: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match advisories {
        Some(subscriber) => match subscriber.next().await {
            Some(advisory) => Some(advisory),
            None => {
                *advisories = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// `work`, unless `shutdown` comes first (`None`): a NATS request or publish waits
/// for the connection, which may not come back.
async fn or_shutdown<T>(shutdown: &CancellationToken, work: impl Future<Output = T>) -> Option<T> {
    let stopping = shutdown.cancelled();
    tokio::pin!(stopping);
    or_stopping(stopping, work).await
}

/// [`or_shutdown`] with a wait for shutdown already made. Work done at its first
/// poll (a publish the client's buffer takes at once) is not raced with it.
async fn or_stopping<T>(stopping: Pin<&mut WaitForCancellationFuture<'_>>, work: impl Future<Output = T>) -> Option<T> {
    let mut work = std::pin::pin!(work);
    if let std::task::Poll::Ready(done) = futures::poll!(work.as_mut()) {
        return Some(done);
    }
    tokio::select! {
        biased;
        _ = stopping => None,
        done = work => Some(done),
    }
}

/// Whether the server has JetStream for this account (without it no stream can
/// capture a subject, and every publish is a core publish). An error is transient.
///
/// Any answer but an error means JetStream: what the account holds is not read
/// (the client's own account query refuses the answer of a nats-server before
/// 2.10, which leaves out fields it requires).
async fn jetstream_available(js: &jetstream::Context) -> anyhow::Result<bool> {
    use async_nats::jetstream::context::RequestErrorKind;
    use async_nats::jetstream::response::Response;
    let unavailable = |reason: &dyn std::fmt::Display| {
        tracing::info!(%reason, "no JetStream for outbound: events go out as core NATS publishes");
        Ok(false)
    };
    match js.request::<_, _, Response<serde::de::IgnoredAny>>("INFO", b"").await {
        Ok(Response::Ok(_)) => Ok(true),
        Err(e) if e.kind() == RequestErrorKind::NoResponders => unavailable(&e),
        // Not enabled, for the server or the account; other API errors (a cluster
        // without a leader, say) pass.
        Ok(Response::Err { error }) if crate::connection::JETSTREAM_NOT_ENABLED.contains(&error.error_code()) => {
            unavailable(&error)
        }
        Ok(Response::Err { error }) => Err(anyhow::anyhow!("asking the server about JetStream: {error}")),
        Err(e) => Err(anyhow::anyhow!("asking the server about JetStream: {e}")),
    }
}

/// A subject of this session's own, to which a message makes a round trip through
/// the server: once it is back, the server has taken every publish sent before it
/// on the same connection (a connection's messages are processed in order). A
/// reconnect in between drops what the old connection had not sent, so it fails
/// the round trip.
struct Echo {
    subject: async_nats::Subject,
    replies: async_nats::Subscriber,
    /// The client's connection count when publishes were last confirmed.
    connects: u64,
}

impl Echo {
    async fn new(client: &async_nats::Client) -> anyhow::Result<Echo> {
        let connects = connects(client);
        let subject = async_nats::Subject::from(client.new_inbox());
        let replies = client.subscribe(subject.clone()).await?;
        Ok(Echo {
            subject,
            replies,
            connects,
        })
    }

    /// Whether the connection was made again since the last confirmation.
    fn reconnected(&self, client: &async_nats::Client) -> bool {
        connects(client) != self.connects
    }

    /// Takes the connection as it is now for confirmed: for when every publish
    /// before is confirmed or acknowledged.
    fn rebase(&mut self, client: &async_nats::Client) {
        self.connects = connects(client);
    }

    async fn round_trip(&mut self, client: &async_nats::Client, within: Duration) -> anyhow::Result<()> {
        let back = tokio::time::timeout(within, async {
            client.publish(self.subject.clone(), bytes::Bytes::new()).await?;
            anyhow::Ok(self.replies.next().await)
        });
        match back.await {
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => anyhow::bail!("the confirmation subscription closed"),
            Ok(Err(e)) => return Err(e),
            Err(_) => anyhow::bail!(
                "the server did not confirm the core publishes within {within:?} (is NATS reachable, and may \
                 this user publish to its own inbox, `_INBOX.>` by default?)"
            ),
        }
        let now = connects(client);
        if now != self.connects {
            self.connects = now;
            anyhow::bail!(
                "the connection to NATS was made again since the last confirmation: publishes the old one had \
                 not sent may be lost, so outbound starts again from its checkpoint"
            );
        }
        Ok(())
    }
}

/// Where a session publishes.
struct Outbound<'a> {
    client: &'a async_nats::Client,
    /// `None` when the server has no JetStream.
    js: Option<&'a jetstream::Context>,
    prefix: &'a str,
    template: &'a HeaderMap,
    /// The position last published to each capturing stream in this session.
    last_in_stream: HashMap<String, u64>,
    /// The position published without naming the one before it (see [`Carry`]).
    unchecked: Option<u64>,
}

impl Outbound<'_> {
    /// Where events of `event_type` go (asking the server which stream captures
    /// the subject, if any).
    async fn outlet(&self, event_type: &str) -> anyhow::Result<Outlet> {
        let subject = format!("{}.{}", self.prefix, event_type);
        let stream = match self.js {
            None => None,
            Some(js) => match js.stream_by_subject(subject.clone()).await {
                Ok(name) => Some(
                    js.get_stream(&name)
                        .await
                        .map_err(|e| anyhow::anyhow!("reading stream {name}, which captures {subject}: {e}"))?,
                ),
                Err(e) if e.kind() == GetStreamByNameErrorKind::NotFound => None,
                // Unknown is not "none": guessing would send a captured
                // subject's events as core publishes, unacknowledged.
                Err(e) => anyhow::bail!("looking up the stream that captures {subject}: {e}"),
            },
        };
        let stream_limit = (stream.as_ref())
            .and_then(|s| usize::try_from(s.cached_info().config.max_message_size).ok())
            .unwrap_or(0);
        Ok(Outlet {
            event_type: event_type.to_owned(),
            subject: subject.into(),
            stream: stream.map(|s| s.cached_info().config.name.clone()),
            stream_limit,
        })
    }

    /// Publishes `event` to its outlet (looked up the first time its type comes):
    /// see [`Outbound::send`]; `None` when the session stops first.
    async fn publish(
        &mut self,
        outlets: &mut Outlets,
        mut stopping: Pin<&mut WaitForCancellationFuture<'_>>,
        event: &RecordedEvent,
    ) -> Option<anyhow::Result<Option<Ack>>> {
        let outlet = match outlets.get(&event.event_type) {
            Some(outlet) => outlet,
            None => match or_stopping(stopping.as_mut(), self.outlet(&event.event_type)).await? {
                Ok(outlet) => outlets.insert(outlet),
                Err(e) => return Some(Err(e)),
            },
        };
        let (headers, body) = self.message(&outlet, event);
        or_stopping(stopping, self.send(&outlet, event.position, headers, body)).await
    }

    /// The headers and body that carry `event` to `outlet`: without its data when
    /// the whole would not fit in a NATS message.
    fn message(&self, outlet: &Outlet, event: &RecordedEvent) -> (HeaderMap, bytes::Bytes) {
        let position = event.position;
        let mut headers = self.template.clone();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            async_nats::HeaderValue::from(position),
        );
        let mut body: bytes::Bytes = opsflow_cloudevents::recorded_to_cloudevent(event).into();
        // The server's limit, and a capturing stream's own when it is lower.
        let max_payload = match outlet.stream_limit {
            0 => self.client.max_payload(),
            stream => self.client.max_payload().min(stream),
        };
        if crate::dlq::headers_size(&headers) + body.len() > max_payload {
            // The event goes out without its data rather than never (outbound could
            // not move past it): its attributes, and where to read it whole.
            let without_data = RecordedEvent {
                data: bytes::Bytes::new(),
                ..event.clone()
            };
            body = opsflow_cloudevents::recorded_to_cloudevent(&without_data).into();
            headers.insert(
                "Opsflow-Payload-Omitted",
                format!(
                    "the event ({} bytes of data) does not fit in a NATS message (max_payload {max_payload}); \
                     read position {position} from the log",
                    event.data.len()
                )
                .as_str(),
            );
            metrics::counter!("opsflow_nats_outbound_data_omitted_total").increment(1);
            tracing::warn!(
                position,
                max_payload,
                "outbound event too large for NATS: published without its data"
            );
        }
        (headers, body)
    }

    /// Publishes the message of the event at `position`: the acknowledgement to
    /// wait for when a stream captures it, `None` for a core publish (confirmed by
    /// the next [`Echo`]).
    async fn send(
        &mut self,
        outlet: &Outlet,
        position: u64,
        mut headers: HeaderMap,
        body: bytes::Bytes,
    ) -> anyhow::Result<Option<Ack>> {
        match (self.js, &outlet.stream) {
            (Some(js), Some(stream)) => {
                // The stream refuses it unless the position before it (for the
                // stream) was stored last: see the module docs. The session's
                // first to the stream has none to name.
                let before = match self.last_in_stream.get_mut(stream) {
                    Some(last) => Some(std::mem::replace(last, position)),
                    None => {
                        self.last_in_stream.insert(stream.clone(), position);
                        None
                    }
                };
                if let Some(before) = before.filter(|_| self.unchecked != Some(position)) {
                    headers.insert(
                        async_nats::header::NATS_EXPECTED_LAST_MESSAGE_ID,
                        async_nats::HeaderValue::from(before),
                    );
                }
                // Boxed: its future is large, and a core publish (the other arm)
                // would carry its size into every publish's future.
                let ack = Box::pin(js.publish_with_headers(outlet.subject.clone(), headers, body)).await?;
                Ok(Some(
                    async move {
                        let acked = ack.await.map(|_| ()).map_err(|e| Refused {
                            wrong_last: e.kind() == PublishErrorKind::WrongLastMessageId,
                            text: e.to_string(),
                        });
                        (position, acked)
                    }
                    .boxed(),
                ))
            }
            _ => {
                self.client
                    .publish_with_headers(outlet.subject.clone(), headers, body)
                    .await?;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    /// What nats-server 2.9.10 (Debian 12's package) answers `$JS.API.INFO`: no
    /// `reserved_memory` or `reserved_storage`, which the client's account query
    /// requires.
    const INFO_2_9: &str = r#"{"type":"io.nats.jetstream.api.v1.account_info_response","memory":0,"storage":274,"streams":2,"consumers":1,"limits":{"max_memory":-1,"max_storage":-1,"max_streams":-1,"max_consumers":-1,"max_ack_pending":-1,"memory_max_stream_bytes":-1,"storage_max_stream_bytes":-1,"max_bytes_required":false},"api":{"total":17,"errors":3}}"#;

    /// Whether outbound takes the server to have JetStream when its API (under a
    /// prefix of the test's own) answers `INFO` with `answer`, or nothing answers.
    async fn available_when_answered(
        client: &async_nats::Client,
        prefix: &str,
        answer: Option<&'static str>,
    ) -> anyhow::Result<bool> {
        let mut responder = client.subscribe(format!("{prefix}.INFO")).await?;
        if answer.is_none() {
            responder.unsubscribe().await?;
        }
        client.flush().await?;
        let replying = {
            let client = client.clone();
            tokio::spawn(async move {
                if let (Some(answer), Some(request)) = (answer, responder.next().await)
                    && let Some(reply) = request.reply
                {
                    let _ = client.publish(reply, answer.into()).await;
                }
            })
        };
        let js = jetstream::with_prefix(client.clone(), prefix);
        let available = jetstream_available(&js).await;
        replying.abort();
        available
    }

    #[tokio::test]
    async fn jetstream_is_told_from_any_servers_answer() -> anyhow::Result<()> {
        let nats = opsflow_testkit::NatsServer::start()?;
        let client = async_nats::connect(nats.url()).await?;
        // The real server's answer.
        assert!(jetstream_available(&jetstream::new(client.clone())).await?);
        // 2.9's answer is JetStream too (the client's own account query failed it:
        // "data did not match any variant of untagged enum Response").
        assert!(available_when_answered(&client, "$T1.API", Some(INFO_2_9)).await?);
        // Not enabled for the account, or for the server; nobody answering: none.
        let not_for_account = r#"{"type":"io.nats.jetstream.api.v1.account_info_response","error":{"code":503,"err_code":10039,"description":"jetstream not enabled for account"}}"#;
        assert!(!available_when_answered(&client, "$T2.API", Some(not_for_account)).await?);
        let not_enabled = r#"{"error":{"code":503,"err_code":10076,"description":"JetStream not enabled"}}"#;
        assert!(!available_when_answered(&client, "$T3.API", Some(not_enabled)).await?);
        assert!(!available_when_answered(&client, "$T4.API", None).await?);
        // Any other error is one: outbound tries again rather than guess.
        let no_leader =
            r#"{"error":{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}}"#;
        let e = available_when_answered(&client, "$T5.API", Some(no_leader))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("temporarily unavailable"), "{e}");
        Ok(())
    }
}
