//! Dead letters: `opsflow.dlq.<reason>` with the original payload and headers plus
//! `Opsflow-Error`, `Opsflow-Error-Reason` and `Opsflow-Original-Subject`, kept by
//! a JetStream stream so that nothing is lost even when nobody listens.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};

use crate::decode::DeadReason;
use crate::{DeadLetterConfig, NatsError};

/// Publishes dead letters with JetStream acknowledgement.
#[derive(Clone)]
pub struct DeadLetters {
    js: jetstream::Context,
    prefix: String,
}

impl DeadLetters {
    /// Makes sure a stream keeps `<prefix>.>`.
    pub async fn ensure(js: jetstream::Context, config: &DeadLetterConfig) -> Result<DeadLetters, NatsError> {
        let subject = format!("{}.>", config.subject_prefix);
        if js.stream_by_subject(subject.clone()).await.is_err() {
            js.get_or_create_stream(stream::Config {
                name: config.stream.clone(),
                subjects: vec![subject],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| NatsError::JetStream(e.to_string()))?;
        }
        Ok(DeadLetters {
            js,
            prefix: config.subject_prefix.clone(),
        })
    }

    /// Publishes a dead letter for `message` and waits for JetStream to keep it.
    /// `id` (the message's stream, sequence and time; none when empty) becomes its
    /// `Nats-Msg-Id`, so a message dead-lettered twice (redelivered, or recorded
    /// again after a crash) is kept once, within the dead-letter stream's duplicate
    /// window (2 minutes unless configured otherwise).
    pub async fn publish(
        &self,
        message: &async_nats::Message,
        reason: DeadReason,
        error: &str,
        id: &str,
    ) -> anyhow::Result<()> {
        // Keep the original headers, except NATS's own (`Nats-Msg-Id`,
        // `Nats-Expected-*`, `Nats-Rollup`, `Nats-TTL`, ...): JetStream would apply
        // them to the dead letter's publish, dropping it as a duplicate or refusing
        // it, and ingest could not move past the message.
        let mut headers = HeaderMap::new();
        if let Some(original) = &message.headers {
            for (name, values) in original.iter() {
                if name
                    .to_string()
                    .get(..5)
                    .is_some_and(|p| p.eq_ignore_ascii_case("nats-"))
                {
                    continue;
                }
                for value in values {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        insert(&mut headers, "Opsflow-Error", error);
        insert(&mut headers, "Opsflow-Error-Reason", reason.as_str());
        insert(&mut headers, "Opsflow-Original-Subject", message.subject.as_str());
        if !id.is_empty() {
            insert(&mut headers, "Nats-Msg-Id", id);
        }
        let subject = format!("{}.{}", self.prefix, reason.as_str());
        self.js
            .publish_with_headers(subject, headers, message.payload.clone())
            .await?
            .await?;
        metrics::counter!("opsflow_nats_dead_letters_total", "reason" => reason.as_str()).increment(1);
        tracing::warn!(reason = reason.as_str(), subject = %message.subject, error, "message dead-lettered");
        Ok(())
    }
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    // Header values cannot hold line breaks.
    let clean: String = value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    headers.insert(name, clean.as_str());
}
