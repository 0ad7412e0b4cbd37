//! Outbound: every committed event on `opsflow.log.<type>`, in position order, as a
//! structured CloudEvent with `Nats-Msg-Id` = position. When a JetStream stream
//! captures the subject, publishes are JetStream publishes (pipelined, each
//! acknowledged), so a restart that re-publishes is deduplicated by the stream.
//! A checkpoint in the log makes publishing resume where it stopped, without gaps.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use opsflow_log::{EventFilter, EventLog, LogError, RecordedEvent, SubscriptionItem};
use tokio_util::sync::CancellationToken;

use crate::OutboundConfig;

type Ack = futures::future::BoxFuture<'static, (u64, Result<(), String>)>;

/// How often the outbound checkpoint is saved while publishing (and how long after
/// the last publish it is saved when publishing pauses).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Publishes committed events until `shutdown`, resuming from the checkpoint.
pub async fn run_outbound(
    client: async_nats::Client,
    config: OutboundConfig,
    log: EventLog,
    shutdown: CancellationToken,
    ready: crate::Readiness,
) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(200);
    loop {
        let outcome = session(&client, &config, &log, &shutdown, &ready.outbound).await;
        ready.outbound.set(false);
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) => {
                if matches!(e.downcast_ref::<LogError>(), Some(LogError::Closed)) {
                    return Ok(());
                }
                tracing::warn!(error = %e, retry_in = ?delay, "nats outbound interrupted");
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
) -> anyhow::Result<()> {
    let js = jetstream::new(client.clone());
    let mut published = log.checkpoint(&config.checkpoint)?.unwrap_or(0);
    let mut subscription = log.subscribe(published + 1, EventFilter::default());
    let mut in_flight: FuturesOrdered<Ack> = FuturesOrdered::new();
    let mut subjects: HashMap<String, Outlet> = HashMap::new();
    // The headers every event carries, built once: each publish adds its Nats-Msg-Id.
    let mut template = HeaderMap::new();
    template.insert("Content-Type", "application/cloudevents+json");
    // Looked up once: the macro looks the counter up in the registry on every call.
    let published_total = metrics::counter!("opsflow_nats_published_total");
    let mut saved = published;
    // The log's head when the checkpoint was last saved.
    let mut head_at_save = log.head();
    // One timer, reset when the checkpoint is saved: a timer armed per event costs a
    // wake-up of the runtime's driver per event.
    let save_due = tokio::time::sleep(CHECKPOINT_EVERY);
    tokio::pin!(save_due);
    tracing::info!(from = published + 1, prefix = %config.subject_prefix, "nats outbound publishing");
    ready.set(true);
    let result = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            Some((position, acked)) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(e) = acked {
                    break Err(anyhow::anyhow!("publish of position {position} not acknowledged: {e}"));
                }
                published = position;
            }
            () = &mut save_due, if published != saved => {}
            item = subscription.next(), if in_flight.len() < config.max_in_flight => {
                match item {
                    Ok(SubscriptionItem::Event(event)) => {
                        let ack = publish(client, &js, &mut subjects, &config.subject_prefix, &template, &event).await?;
                        published_total.increment(1);
                        match ack {
                            Some(ack) => in_flight.push_back(ack),
                            // Nothing to wait for, and nothing before it either.
                            None if in_flight.is_empty() => published = event.position,
                            None => in_flight.push_back(futures::future::ready((event.position, Ok(()))).boxed()),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => break Err(e.into()),
                }
            }
        }
        // At most every CHECKPOINT_EVERY, not per event: a crash re-publishes at most
        // that much, which a capturing stream deduplicates by `Nats-Msg-Id`.
        if published != saved && save_due.is_elapsed() {
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
    // Settle what is in flight, then save how far we got.
    while let Some((position, acked)) = in_flight.next().await {
        if acked.is_err() {
            break;
        }
        published = position;
    }
    // Bounded, and not tried once disconnected: a flush waits for the connection,
    // and NATS may be unreachable (the server's shutdown flushes once more).
    if client.connection_state() != async_nats::connection::State::Disconnected {
        let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
    }
    if published != saved {
        log.save_checkpoint(&config.checkpoint, published)?;
    }
    result
}

/// Where events of one type go: their subject, and whether a JetStream stream
/// captures it (looked up once per type and session).
#[derive(Clone)]
struct Outlet {
    subject: async_nats::Subject,
    in_stream: bool,
}

/// Publishes `event`: the acknowledgement to wait for when a stream captures it,
/// `None` for a core publish (done once the connection has it).
async fn publish(
    client: &async_nats::Client,
    js: &jetstream::Context,
    subjects: &mut HashMap<String, Outlet>,
    prefix: &str,
    template: &HeaderMap,
    event: &RecordedEvent,
) -> anyhow::Result<Option<Ack>> {
    let outlet = match subjects.get(&event.event_type) {
        Some(outlet) => outlet.clone(),
        None => {
            let subject = format!("{prefix}.{}", event.event_type);
            let in_stream = js.stream_by_subject(subject.clone()).await.is_ok();
            let outlet = Outlet {
                subject: subject.into(),
                in_stream,
            };
            subjects.insert(event.event_type.clone(), outlet.clone());
            outlet
        }
    };
    let position = event.position;
    let mut headers = template.clone();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        async_nats::HeaderValue::from(position),
    );
    let body: bytes::Bytes = opsflow_cloudevents::recorded_to_cloudevent(event).into();
    if outlet.in_stream {
        let ack = js.publish_with_headers(outlet.subject, headers, body).await?;
        Ok(Some(
            async move { (position, ack.await.map(|_| ()).map_err(|e| e.to_string())) }.boxed(),
        ))
    } else {
        client.publish_with_headers(outlet.subject, headers, body).await?;
        Ok(None)
    }
}
