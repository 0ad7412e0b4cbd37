//! A session's batches in flight: appended as enqueued, settled strictly in
//! order once durable ([`Pipeline`], [`settle`]).

use std::sync::Arc;
use std::time::Duration;

use opsflow_log::{AppendOutcome, EventLog, LogError};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;

use super::{Decoded, Stop, decode_batch, log_stop, origin, outcome, transient};
use crate::DeadLetters;
use crate::pull::{Delivery, ack, covering, retry_after, terminate};

/// A session's batches in flight: each appended as enqueued, settled in order
/// once durable, after the one before it ([`settle`]).
pub(super) struct Pipeline<'a> {
    /// At most [`super::BATCHES_IN_FLIGHT`] at once.
    pub(super) slots: Arc<Semaphore>,
    pub(super) settling: JoinSet<Result<(), Stop>>,
    /// Tells when the last batch enqueued has settled.
    pub(super) previous: Option<oneshot::Receiver<()>>,
    pub(super) log: &'a EventLog,
    pub(super) dead: &'a DeadLetters,
    pub(super) client: &'a async_nats::Client,
    pub(super) ack_all: bool,
}

impl Pipeline<'_> {
    /// Appends `pending` and settles it once durable, after the batch before it
    /// (and only if that one settled: with one acknowledgement per batch,
    /// acknowledging past a failed batch would acknowledge its messages too).
    /// False when no more can be enqueued.
    pub(super) async fn enqueue(&mut self, pending: Vec<async_nats::Message>) -> bool {
        let Ok(permit) = self.slots.clone().acquire_owned().await else {
            return false;
        };
        let (parts, decoded) = decode_batch(pending.iter());
        let appends = self.log.submit_each(parts).await;
        let (done, next) = oneshot::channel();
        let before = self.previous.replace(next);
        let (dead, acks, ack_all) = (self.dead.clone(), self.client.clone(), self.ack_all);
        self.settling.spawn(async move {
            let results = appends.wait().await;
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
        true
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
