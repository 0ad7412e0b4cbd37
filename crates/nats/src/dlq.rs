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
    /// The stream that keeps them, when it does so in memory.
    in_memory: Option<String>,
}

impl DeadLetters {
    /// Makes sure a stream keeps `<prefix>.>`; one made here has `replicas`
    /// replicas (the ingest stream's: ingest stops when dead letters have no home).
    pub async fn ensure(
        js: jetstream::Context,
        config: &DeadLetterConfig,
        replicas: usize,
    ) -> Result<DeadLetters, NatsError> {
        let subject = format!("{}.>", config.subject_prefix);
        let failed =
            |e: &dyn std::fmt::Display| NatsError::JetStream(format!("the dead-letter stream for {subject}: {e}"));
        // The stream that captures dead letters (any stream: a lookup matches one
        // capturing some of them), else one made for them.
        let mut kept = match js.stream_by_subject(subject.clone()).await {
            Ok(name) => js.get_stream(name).await.map_err(|e| failed(&e))?,
            Err(_) => js
                .get_or_create_stream(stream::Config {
                    name: config.stream.clone(),
                    subjects: vec![subject.clone()],
                    storage: stream::StorageType::File,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| failed(&e))?,
        };
        // One that keeps only some of them (or a stream of that name made
        // otherwise) would leave the others nowhere: ingest would stop at them.
        let info = kept.info().await.map_err(|e| failed(&e))?;
        if info.config.num_replicas < replicas {
            tracing::warn!(
                stream = %info.config.name,
                replicas = info.config.num_replicas,
                ingest_replicas = replicas,
                "the dead-letter stream has fewer replicas than the ingest stream: while a node holding it is \
                 down, dead letters have no home and ingest waits"
            );
        }
        if !info
            .config
            .subjects
            .iter()
            .any(|s| crate::subjects::covers(s, &subject))
        {
            return Err(NatsError::IncompatibleStream {
                stream: info.config.name.clone(),
                reason: format!(
                    "it keeps {:?}, not all of the dead letters' {subject}: make it keep {subject}, or set \
                     [nats.dead_letters] to a stream and prefix of their own",
                    info.config.subjects
                ),
            });
        }
        Ok(DeadLetters {
            js,
            prefix: config.subject_prefix.clone(),
            in_memory: (info.config.storage != stream::StorageType::File).then(|| info.config.name.clone()),
        })
    }

    /// Refuses a stream that keeps the dead letters in memory, for ingest: the
    /// message behind a dead letter is terminated once the dead letter is kept, so
    /// a nats-server restart would lose both. (Request/reply's dead letters, of
    /// core messages that nothing else keeps, are better kept there than nowhere.)
    pub fn file_stored(self) -> Result<DeadLetters, NatsError> {
        match &self.in_memory {
            None => Ok(self),
            Some(stream) => Err(NatsError::IncompatibleStream {
                stream: stream.clone(),
                reason: format!(
                    "it keeps the dead letters' {}.> in memory, where a nats-server restart loses them after their \
                     messages were terminated; ingest keeps dead letters only in file storage: make it a file \
                     stream, or set [nats.dead_letters] to a stream and prefix of their own",
                    self.prefix
                ),
            }),
        }
    }

    /// The stream keeping the dead letters in memory, if it does so.
    pub fn in_memory(&self) -> Option<&str> {
        self.in_memory.as_deref()
    }

    /// The server's largest message, as negotiated at the last connect.
    pub fn max_payload(&self) -> usize {
        self.js.client().max_payload()
    }

    /// Publishes a dead letter for `message`, kept in the ingest stream as `origin`,
    /// and waits for JetStream to keep it. The origin's `Origin::id` becomes its
    /// `Nats-Msg-Id`, so a message dead-lettered twice (redelivered, or recorded
    /// again after a crash) is kept once, within the dead-letter stream's duplicate
    /// window (2 minutes unless configured otherwise). A dead letter that would not
    /// fit in a NATS message (the original near `max_payload`, plus the error) goes
    /// without the payload, saying where the original is: otherwise it could never
    /// be published, and ingest could not move past it. Returns whether the dead
    /// letter holds the whole payload.
    pub async fn publish(
        &self,
        message: &async_nats::Message,
        reason: DeadReason,
        error: &str,
        origin: Option<&Origin>,
    ) -> anyhow::Result<bool> {
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
        insert(&mut headers, "Opsflow-Error", &header_text(error));
        insert(&mut headers, "Opsflow-Error-Reason", reason.as_str());
        insert(&mut headers, "Opsflow-Original-Subject", message.subject.as_str());
        if let Some(origin) = origin {
            insert(&mut headers, "Nats-Msg-Id", &origin.id());
        }
        let mut payload = message.payload.clone();
        let mut whole = true;
        if headers_size(&headers) + payload.len() > self.max_payload() {
            let place = origin.map_or_else(
                || "it is not kept".to_owned(),
                |o| format!("it is message {} of stream {}", o.sequence, o.stream),
            );
            insert(
                &mut headers,
                "Opsflow-Payload-Omitted",
                &header_text(&format!(
                    "the original payload ({} bytes) does not fit in a dead letter; {place}",
                    payload.len()
                )),
            );
            payload = bytes::Bytes::new();
            whole = false;
        }
        let subject = format!("{}.{}", self.prefix, reason.as_str());
        self.js.publish_with_headers(subject, headers, payload).await?.await?;
        metrics::counter!("opsflow_nats_dead_letters_total", "reason" => reason.as_str()).increment(1);
        tracing::warn!(reason = reason.as_str(), subject = %message.subject, error, "message dead-lettered");
        Ok(whole)
    }
}

/// Where a dead-lettered message is kept: its stream, sequence and stored time.
#[derive(Debug, Clone)]
pub struct Origin {
    pub stream: String,
    pub sequence: u64,
    /// The stored time, Unix nanoseconds.
    pub stored: i128,
}

impl Origin {
    /// The dead letter's `Nats-Msg-Id`: the same for every copy (and not the same
    /// for the message of that sequence in a stream deleted and made again since).
    pub fn id(&self) -> String {
        format!("opsflow-dlq:{}:{}:{}", self.stream, self.sequence, self.stored)
    }
}

/// The size of `headers` in a NATS message (`NATS/1.0` line, `name: value` lines,
/// blank line), as it counts against `max_payload`.
pub(crate) fn headers_size(headers: &HeaderMap) -> usize {
    let lines: usize = headers
        .iter()
        .map(|(name, values)| {
            values
                .iter()
                .map(|v| AsRef::<[u8]>::as_ref(name).len() + v.as_str().len() + 4)
                .sum::<usize>()
        })
        .sum();
    "NATS/1.0\r\n\r\n".len() + lines
}

/// Explanatory text for a header value: on one line, and in US-ASCII as header
/// values should be (RFC 9110 §5.5; some NATS clients refuse others), any other
/// character written as its Rust escape (`é` as `\u{e9}`). An error quotes what it
/// refuses, which may be anything a producer sent.
pub(crate) fn header_text(text: &str) -> String {
    let mut ascii = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            ascii.push(' ');
        } else if c.is_ascii() {
            ascii.push(c);
        } else {
            ascii.extend(c.escape_unicode());
        }
    }
    ascii
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    // Header values cannot hold line breaks.
    let clean: String = value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    headers.insert(name, clean.as_str());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_size_counts_every_line_as_sent() {
        let mut headers = HeaderMap::new();
        assert_eq!(headers_size(&headers), "NATS/1.0\r\n\r\n".len());
        headers.insert(async_nats::header::NATS_MESSAGE_ID, "42");
        headers.append("X-Custom", "a");
        headers.append("X-Custom", "bc");
        let sent = "NATS/1.0\r\nNats-Msg-Id: 42\r\nX-Custom: a\r\nX-Custom: bc\r\n\r\n";
        assert_eq!(headers_size(&headers), sent.len());
    }

    #[test]
    fn explanatory_text_goes_out_in_ascii() {
        assert_eq!(header_text("plain text"), "plain text");
        assert_eq!(header_text("id \"café\" is 🚚"), "id \"caf\\u{e9}\" is \\u{1f69a}");
        assert_eq!(header_text("line\r\nbreak\té"), "line  break \\u{e9}");
    }
}
