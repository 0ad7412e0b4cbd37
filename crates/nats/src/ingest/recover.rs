//! Recovery at the start of an ingest session: what an earlier session was given
//! and did not acknowledge is read from the stream by sequence and recorded
//! ([`recover`]) before anything is acknowledged; a message whose headers no client
//! can read is dead-lettered whole and taken out of the stream ([`poisoned`]).

use async_nats::jetstream::{self, stream};
use futures::{StreamExt, TryStreamExt};
use opsflow_log::EventLog;

use super::{Stop, decode_batch, log_stop, outcome, transient};
use crate::DeadLetters;
use crate::dlq::Origin;

/// Deliveries read back for a consumer acknowledging each message and with no
/// `max_ack_pending`.
pub(super) const RECOVER_SPAN_UNLIMITED: u64 = 10_000;

/// Stream messages read at once while recovering.
const RECOVER_READS: usize = 64;

/// Which stream messages [`recover`] reads back.
pub(super) struct Which<'a> {
    pub range: std::ops::RangeInclusive<u64>,
    /// Only those within these subjects (all, when empty).
    pub filters: &'a [String],
    /// None within these (another consumer's, on a work-queue stream).
    pub others: &'a [String],
    /// From message to message rather than each sequence in turn: for a range
    /// that may be mostly deleted or of other subjects.
    pub sparse: bool,
    /// Delete each once recorded or dead-lettered (a work-queue stream, whose
    /// messages a consumer never delivered are never acknowledged).
    pub remove: bool,
}

/// What reading stream messages back and recording them takes.
#[derive(Clone, Copy)]
pub(super) struct Reading<'a> {
    pub js: &'a jetstream::Context,
    pub stream: &'a stream::Stream,
    /// Messages appended at once.
    pub batch: usize,
    pub log: &'a EventLog,
    pub dead: &'a DeadLetters,
    /// The ingest consumer's name.
    pub consumer: &'a str,
}

/// Records the messages of stream sequences `given` (those an earlier session was
/// given, past the consumer's acknowledged floor) before this session acknowledges
/// anything: with `AckPolicy::All` its first acknowledgement would cover them.
/// Each is read from the stream by sequence: one recorded already is a duplicate
/// the log absorbs, one gone from the stream (or outside the consumer's `filters`)
/// is skipped, a bad one is dead-lettered again
/// (JetStream drops the copy by its `Nats-Msg-Id`), one whose headers no client can
/// read is [`poisoned`]; with [`Which::remove`] each is then deleted. Returns how
/// many were recorded, duplicates included.
pub(super) async fn recover(reading: &Reading<'_>, which: Which<'_>) -> Result<u64, Stop> {
    let Reading {
        js,
        stream,
        batch,
        log,
        dead,
        ..
    } = *reading;
    let Which {
        range: given,
        filters,
        others,
        sparse,
        remove,
    } = which;
    // Only a read-back may step through the stream: recovery of what was given
    // reads each sequence (dense, and in parallel).
    let which_sparse = sparse;
    let mut recorded = 0;
    let (last, batch) = (*given.end(), batch.max(1));
    let name = stream.cached_info().config.name.clone();
    // With `sparse`, from message to message within one subject (any, with
    // several filters): what is deleted or of other subjects costs nothing.
    let next_by = match filters {
        [one] => one.as_str(),
        _ => ">",
    };
    let mut cursor = *given.start();
    // Sparse or not as found: a stretch read sequence by sequence that turns out
    // mostly empty is then stepped through, and one stepped through that turns
    // out dense is read sequence by sequence again (in parallel).
    let mut sparse = sparse;
    while cursor <= last {
        let read: Vec<Stored> = if sparse {
            let (from, mut read) = (cursor, Vec::new());
            while read.len() < batch && cursor <= last {
                match read_stored(js, &name, cursor, Some(next_by)).await.map_err(transient)? {
                    Some(m) if m.sequence <= last => {
                        cursor = m.sequence + 1;
                        read.push(m);
                    }
                    _ => cursor = last + 1,
                }
            }
            sparse = (cursor - from) > 2 * read.len() as u64;
            read
        } else {
            let end = last.min(cursor + (batch as u64 - 1));
            let read: Vec<Option<Stored>> = futures::stream::iter(cursor..=end)
                .map(|sequence| read_stored(js, &name, sequence, None))
                .buffered(RECOVER_READS)
                .try_collect()
                .await
                .map_err(transient)?;
            let found: Vec<Stored> = read.into_iter().flatten().collect();
            sparse = which_sparse && (end - cursor + 1) > 4 * found.len() as u64;
            cursor = end + 1;
            found
        };
        let mut messages: Vec<(Origin, async_nats::Message)> = Vec::new();
        for m in read {
            let within = |subjects: &[String]| subjects.iter().any(|f| crate::subjects::matches(f, &m.subject));
            if !(filters.is_empty() || within(filters)) || within(others) {
                continue;
            }
            let at = origin(&name, m.sequence, m.time.unix_timestamp_nanos());
            match m.headers {
                Ok(headers) => messages.push((at, message(m.subject, m.payload, headers))),
                Err(why) => poisoned(stream, dead, at, m.subject, m.payload, &m.raw_headers, &why).await?,
            }
        }
        let (parts, decoded) = decode_batch(messages.iter().map(|(_, m)| m));
        let mut results = log
            .submit_each(parts)
            .await
            .wait()
            .await
            .into_iter()
            .map(Some)
            .collect::<Vec<_>>();
        for ((from, message), slot) in messages.iter().zip(decoded) {
            match outcome(slot, &mut results) {
                Ok(Ok(())) => recorded += 1,
                Ok(Err((reason, text))) => {
                    // The original stays in the stream (unless `remove`): a dead
                    // letter without the payload says where it is.
                    dead.publish(message, reason, &text, Some(from))
                        .await
                        .map_err(transient)?;
                }
                Err(e) => return Err(log_stop(e)),
            }
        }
        if remove {
            // Recorded or dead-lettered: what acknowledging each would do.
            let sequences: Vec<u64> = messages.iter().map(|(from, _)| from.sequence).collect();
            let deleted: Vec<Result<(), String>> = futures::stream::iter(sequences)
                .map(|sequence| delete_stored(js, &name, sequence))
                .buffer_unordered(RECOVER_READS)
                .collect()
                .await;
            if let Some(Err(e)) = deleted.into_iter().find(Result::is_err) {
                tracing::warn!(error = %e, "messages read back and recorded could not be deleted from the \
                    work-queue stream");
            }
        }
    }
    metrics::counter!("opsflow_nats_ingested_total").increment(recorded);
    Ok(recorded)
}

/// A stream message read by sequence through the JetStream API, whose answer is
/// JSON: its headers arrive as bytes, so one whose headers the client cannot parse
/// (delivered, it drops the client's connection) is read too.
struct Stored {
    subject: String,
    sequence: u64,
    /// When the stream stored it (what a delivery's `published` says).
    time: async_nats::datetime::DateTime,
    payload: bytes::Bytes,
    /// The parsed headers, or why they do not parse.
    headers: Result<async_nats::HeaderMap, String>,
    raw_headers: Vec<u8>,
}

/// A message as the consumer would deliver it (without a reply subject).
fn message(subject: String, payload: bytes::Bytes, headers: async_nats::HeaderMap) -> async_nats::Message {
    async_nats::Message {
        length: payload.len(),
        subject: subject.into(),
        reply: None,
        payload,
        headers: Some(headers),
        status: None,
        description: None,
    }
}

/// Whether stream sequences `range` hold a message within `filters` (of any
/// subject, with several): one request; true when that cannot be told.
pub(super) async fn holds_any(
    reading: &Reading<'_>,
    filters: &[String],
    range: &std::ops::RangeInclusive<u64>,
) -> bool {
    let next_by = match filters {
        [one] => one.as_str(),
        _ => ">",
    };
    let name = &reading.stream.cached_info().config.name;
    match read_stored(reading.js, name, *range.start(), Some(next_by)).await {
        Ok(Some(m)) => m.sequence <= *range.end(),
        Ok(None) => false,
        Err(_) => true,
    }
}

/// Deletes message `sequence` of `stream` without overwriting it (as an
/// acknowledgement on a work-queue stream removes it; the API's default erases,
/// which is slow).
async fn delete_stored(js: &jetstream::Context, stream: &str, sequence: u64) -> Result<(), String> {
    use jetstream::response::Response;
    let reply: Response<serde_json::Value> = js
        .request(
            format!("STREAM.MSG.DELETE.{stream}"),
            &serde_json::json!({ "seq": sequence, "no_erase": true }),
        )
        .await
        .map_err(|e| format!("deleting message {sequence} of stream {stream}: {e}"))?;
    match reply {
        Response::Ok(_) => Ok(()),
        Response::Err { error } if error.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND => Ok(()),
        Response::Err { error } => Err(format!("deleting message {sequence} of stream {stream}: {error}")),
    }
}

/// Stream message `sequence` of `stream`, or with `next_by` the first at or
/// after it whose subject `next_by` matches; `None` when there is none.
async fn read_stored(
    js: &jetstream::Context,
    stream: &str,
    sequence: u64,
    next_by: Option<&str>,
) -> Result<Option<Stored>, String> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use jetstream::response::Response;

    #[derive(serde::Deserialize)]
    struct Reply {
        message: stream::RawMessage,
    }
    let reply: Response<Reply> = js
        .request(
            format!("STREAM.MSG.GET.{stream}"),
            &match next_by {
                Some(subject) => serde_json::json!({ "seq": sequence, "next_by_subj": subject }),
                None => serde_json::json!({ "seq": sequence }),
            },
        )
        .await
        .map_err(|e| format!("reading message {sequence} of stream {stream}: {e}"))?;
    let message = match reply {
        Response::Ok(Reply { message }) => message,
        Response::Err { error } if error.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND => return Ok(None),
        Response::Err { error } => return Err(format!("reading message {sequence} of stream {stream}: {error}")),
    };
    let undecodable = |what: &str| format!("message {sequence} of stream {stream}: its {what} is not base64");
    let payload = STANDARD.decode(&message.payload).map_err(|_| undecodable("payload"))?;
    let raw_headers = match &message.headers {
        Some(h) => STANDARD.decode(h).map_err(|_| undecodable("header block"))?,
        None => Vec::new(),
    };
    Ok(Some(Stored {
        subject: message.subject,
        sequence: message.sequence,
        time: message.time,
        payload: payload.into(),
        headers: parse_headers(&raw_headers),
        raw_headers,
    }))
}

/// A NATS header block read exactly as async-nats reads a delivered one (its
/// connection reader): `NATS/1.0` with an optional status, then `Name: value` lines,
/// a line starting with whitespace continuing the value before it. An error (what
/// the client would fail on, dropping its connection) says what it cannot read; a
/// block the client reads is never an error, so no deliverable message is taken
/// for a poisoned one.
fn parse_headers(raw: &[u8]) -> Result<async_nats::HeaderMap, String> {
    use std::str::FromStr;
    let mut headers = async_nats::HeaderMap::new();
    if raw.is_empty() {
        return Ok(headers);
    }
    let text = std::str::from_utf8(raw).map_err(|_| "the header block is not UTF-8".to_owned())?;
    let mut lines = text.lines().peekable();
    let version = lines.next().ok_or_else(|| "the header block is empty".to_owned())?;
    let suffix = version
        .strip_prefix("NATS/1.0")
        .ok_or_else(|| "the header block does not start with NATS/1.0".to_owned())?
        .trim();
    let status = suffix.split_once(' ').map_or(suffix, |(status, _)| status.trim());
    if !status.is_empty() && status.parse::<async_nats::StatusCode>().is_err() {
        return Err(format!("the status {status:?} is not a status code"));
    }
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line {line:?} has no colon"))?;
        let name =
            async_nats::HeaderName::from_str(name).map_err(|e| format!("header name {name:?} is not valid: {e}"))?;
        let mut value = value.trim_start().to_owned();
        while let Some(more) = lines.next_if(|l| l.starts_with(char::is_whitespace)) {
            value.push_str(more);
        }
        value.truncate(value.trim_end().len());
        let value = async_nats::HeaderValue::from_str(&value)
            .map_err(|_| format!("the value of header {name} holds a line break"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// A message whose headers cannot be read: every delivery of it drops the client's
/// connection, so it can be neither recorded nor terminated as a delivery. It is
/// dead-lettered whole (the raw header block in `Opsflow-Original-Headers-Base64`,
/// or, in a dead letter of several parts, as it is: [`DeadLetters::publish_unreadable`])
/// and only then deleted from the stream, the only way past it. Where the stream
/// denies deletes, nothing is done and ingest stops here, saying what to do.
async fn poisoned(
    stream: &stream::Stream,
    dead: &DeadLetters,
    at: Origin,
    subject: String,
    payload: bytes::Bytes,
    raw_headers: &[u8],
    why: &str,
) -> Result<(), Stop> {
    // The reason quotes the bad line: cut.
    let why: String = why.chars().take(200).collect();
    // Ingest stops at the message, saying why and what to do.
    let stuck = |because: &str| {
        transient(format!(
            "message {} of stream {} has NATS headers no client can read ({why}) {because}: save it and delete \
             it by hand (`nats stream rmm {} {}`)",
            at.sequence, at.stream, at.stream, at.sequence
        ))
    };
    if stream.cached_info().config.deny_delete {
        return Err(stuck("and the stream denies deletes"));
    }
    let error = format!(
        "the message's NATS headers cannot be read ({why}); a client drops its connection at it, so it is \
         deleted from stream {} (sequence {}) after this dead letter",
        at.stream, at.sequence
    );
    dead.publish_unreadable(&subject, raw_headers, &payload, &error, &at)
        .await
        .map_err(|e| stuck(&format!("and could not be dead-lettered ({e})")))?;
    stream.delete_message(at.sequence).await.map_err(|e| {
        stuck(&format!(
            "and could not be deleted once dead-lettered ({e}; opsflow's NATS user needs \
             $JS.API.STREAM.MSG.DELETE.{})",
            at.stream
        ))
    })?;
    Ok(())
}

/// Where stream message `sequence`, stored at `stored`, is kept (its dead letter's
/// identity).
pub(super) fn origin(stream: &str, sequence: u64, stored: i128) -> Origin {
    Origin {
        stream: stream.to_owned(),
        sequence,
        stored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pull::Delivery;

    #[test]
    fn header_blocks_read_as_the_client_reads_delivered_ones() {
        let read = |raw: &[u8]| parse_headers(raw);
        let value = |raw: &[u8], name: &str| read(raw).ok().and_then(|h| h.get(name).map(|v| v.as_str().to_owned()));
        assert_eq!(value(b"NATS/1.0\r\nA: x\r\n\r\n", "A").as_deref(), Some("x"));
        // Bare line feeds, a status, continuation lines: the client reads them.
        assert_eq!(value(b"NATS/1.0\r\nA: x\nB: y\r\n\r\n", "B").as_deref(), Some("y"));
        assert_eq!(value(b"NATS/1.0 503\r\nA: x\r\n\r\n", "A").as_deref(), Some("x"));
        // A status line, as a raw producer may write one: the pull consumer hands
        // such a delivery over (a test showed it), so it is read, not poisoned.
        assert_eq!(
            value(b"NATS/1.0 408 Timeout\r\nA: x\r\n\r\n", "A").as_deref(),
            Some("x")
        );
        assert_eq!(value(b"NATS/1.0\r\nA: x\r\n  y\r\n\r\n", "A").as_deref(), Some("x  y"));
        assert!(read(b"").is_ok_and(|h| h.is_empty()));
        // What it fails on (and drops its connection for).
        for (raw, why) in [
            (&b"NATS/1.0\r\nX-Bad: \xff\r\n\r\n"[..], "not UTF-8"),
            (b"NATS/1.0\r\nno colon here\r\n\r\n", "no colon"),
            (b"NATS/1.0\r\nBad Name: x\r\n\r\n", "header name"),
            (b"NATS/1.0\r\nA: x\ry\r\n\r\n", "line break"),
            (b"HTTP/1.1\r\n\r\n", "NATS/1.0"),
            (b"NATS/1.0 abc\r\n\r\n", "status"),
        ] {
            let err = read(raw).expect_err(why);
            assert!(err.contains(why), "{err}");
        }
    }

    /// The stored time of a message read by sequence (as `$JS.API.STREAM.MSG.GET`
    /// answers) and of its delivery (the `$JS.ACK` reply subject's nanoseconds) name
    /// its dead letter alike.
    #[test]
    fn a_dead_letter_is_named_alike_whether_its_message_was_delivered_or_read_by_sequence() -> anyhow::Result<()> {
        let read: stream::RawMessage = serde_json::from_str(
            r#"{"subject":"ops.events.x","seq":7,"data":"","time":"2026-11-23T04:49:17.748934871Z"}"#,
        )?;
        let delivered = Delivery::of("$JS.ACK.OPS_EVENTS.opsflow-ingest.1.7.3.1795409357748934871.0")
            .ok_or_else(|| anyhow::anyhow!("an ack subject"))?;
        let id = origin("OPS_EVENTS", read.sequence, read.time.unix_timestamp_nanos()).id();
        assert_eq!(
            id,
            origin(delivered.stream, delivered.stream_sequence, delivered.stored).id()
        );
        assert_eq!(id, "opsflow-dlq:OPS_EVENTS:7:1795409357748934871");
        Ok(())
    }
}
