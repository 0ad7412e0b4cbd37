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
    /// The stream's largest message (`max_msg_size`), when it sets one.
    max_message: Option<usize>,
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
            max_message: usize::try_from(info.config.max_message_size).ok().filter(|&m| m > 0),
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

    /// Publishes a dead letter for `message`, kept in the ingest stream as `origin`
    /// (none for a core request), and waits for JetStream to keep it: the original
    /// payload and headers (except NATS's own) with `Opsflow-Error`,
    /// `Opsflow-Error-Reason` and `Opsflow-Original-Subject`, or, when that does not
    /// fit in one message, the same in parts ([`letters`]). The origin's
    /// `Origin::id` becomes its `Nats-Msg-Id`, so a message dead-lettered twice
    /// (redelivered, or recorded again after a crash) is kept once, within the
    /// dead-letter stream's duplicate window (2 minutes unless configured otherwise).
    pub async fn publish(
        &self,
        message: &async_nats::Message,
        reason: DeadReason,
        error: &str,
        origin: Option<&Origin>,
    ) -> anyhow::Result<()> {
        let original = Original {
            subject: message.subject.as_str(),
            headers: OriginalHeaders::Read(message.headers.as_ref()),
            payload: &message.payload,
        };
        self.send(&original, reason, error, origin).await
    }

    /// [`publish`](Self::publish) for a message whose header block no client can
    /// read: `raw_headers` goes in base64 as `Opsflow-Original-Headers-Base64`, or
    /// as it is in the parts of a dead letter too large for one message.
    pub async fn publish_unreadable(
        &self,
        subject: &str,
        raw_headers: &[u8],
        payload: &bytes::Bytes,
        error: &str,
        origin: &Origin,
    ) -> anyhow::Result<()> {
        let original = Original {
            subject,
            headers: OriginalHeaders::Unreadable(raw_headers),
            payload,
        };
        self.send(&original, DeadReason::Decode, error, Some(origin)).await
    }

    async fn send(
        &self,
        original: &Original<'_>,
        reason: DeadReason,
        error: &str,
        origin: Option<&Origin>,
    ) -> anyhow::Result<()> {
        let of = || {
            origin.map_or_else(
                || format!("a request on {}", original.subject),
                |o| format!("message {} of stream {}", o.sequence, o.stream),
            )
        };
        let room = self.max_payload().min(self.max_message.unwrap_or(usize::MAX));
        let id = origin.map(Origin::id);
        let letters = letters(original, reason, error, id.as_deref(), room)
            .map_err(|e| anyhow::anyhow!("cannot dead-letter {}: {e}", of()))?;
        let subject = format!("{}.{}", self.prefix, reason.as_str());
        let parts = letters.len();
        for (headers, payload) in letters {
            let kept = async {
                self.js
                    .publish_with_headers(subject.clone(), headers, payload)
                    .await?
                    .await
            };
            kept.await
                .map_err(|e| anyhow::anyhow!("dead-lettering {} on {subject}: {e}", of()))?;
        }
        metrics::counter!("opsflow_nats_dead_letters_total", "reason" => reason.as_str()).increment(1);
        tracing::warn!(
            reason = reason.as_str(),
            subject = original.subject,
            parts,
            error,
            "message dead-lettered"
        );
        Ok(())
    }
}

/// JetStream refuses a message whose header block is longer than this: it keeps
/// the length in 16 bits (error 10097, "header size exceeds maximum allowed of 64k").
pub(crate) const HEADERS_MAX: usize = 65_535;

/// The longest `Opsflow-Error`: an error may quote much of what it refuses, and
/// each part of a dead letter carries it.
const ERROR_MAX: usize = 2_048;

/// The least content a part of a dead letter must have room for: a dead-letter
/// stream whose messages leave less beside opsflow's headers is refused.
const PART_CONTENT_MIN: usize = 1_024;

/// The message a dead letter stands for.
struct Original<'a> {
    subject: &'a str,
    headers: OriginalHeaders<'a>,
    payload: &'a bytes::Bytes,
}

enum OriginalHeaders<'a> {
    /// As the client read them; none when the message had no header block.
    Read(Option<&'a HeaderMap>),
    /// The raw header block, which no client can read.
    Unreadable(&'a [u8]),
}

/// The messages of the dead letter of `original`, each at most `room` bytes with a
/// header block JetStream takes ([`HEADERS_MAX`]):
/// - one, when it fits: the original payload, its headers (except NATS's own
///   `Nats-*`, which JetStream would apply to the dead letter's publish: dropping
///   it as a duplicate, or refusing it) or an unreadable block in base64
///   (`Opsflow-Original-Headers-Base64`), and opsflow's;
/// - else parts (a payload near `max_payload`, headers near 64 KiB), each with
///   opsflow's headers, `Opsflow-Dead-Letter-Id` (`id`, or one of its own for a
///   request), `Opsflow-Dead-Letter-Part: <i>/<n>` and
///   `Opsflow-Original-Headers-Size`, whose payloads joined in order are the
///   original message: its header block as NATS carries one (`NATS/1.0` line to
///   the blank line; that many bytes, 0 when it had none), then its payload.
///
/// `Nats-Msg-Id` is `id`, or for a part `<letter id>:part-<i>-of-<n>-by-<bytes>`
/// (the split: sent again split otherwise, no part is taken for another's
/// duplicate). Errs only when the room is too small for any part.
fn letters(
    original: &Original<'_>,
    reason: DeadReason,
    error: &str,
    id: Option<&str>,
    room: usize,
) -> Result<Vec<(HeaderMap, bytes::Bytes)>, String> {
    let mut ours = HeaderMap::new();
    insert(&mut ours, "Opsflow-Error", &error_text(error));
    insert(&mut ours, "Opsflow-Error-Reason", reason.as_str());
    insert(&mut ours, "Opsflow-Original-Subject", original.subject);
    // Whole, when it fits.
    let mut headers = HeaderMap::new();
    match original.headers {
        OriginalHeaders::Read(Some(read)) => {
            for (name, values) in read.iter() {
                if !is_nats_header(name.as_ref()) {
                    for value in values {
                        headers.append(name.clone(), value.clone());
                    }
                }
            }
        }
        OriginalHeaders::Read(None) => {}
        OriginalHeaders::Unreadable(raw) => {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
            headers.insert("Opsflow-Original-Headers-Base64", encoded.as_str());
        }
    }
    for (name, values) in ours.iter() {
        for value in values {
            headers.insert(name.clone(), value.clone());
        }
    }
    if let Some(id) = id {
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    }
    let size = headers_size(&headers);
    if size <= HEADERS_MAX && size + original.payload.len() <= room {
        return Ok(vec![(headers, original.payload.clone())]);
    }
    // In parts: the original message as NATS carried it.
    let block = match original.headers {
        OriginalHeaders::Read(Some(read)) => header_block(read),
        OriginalHeaders::Read(None) => Vec::new(),
        OriginalHeaders::Unreadable(raw) => raw.to_vec(),
    };
    insert(&mut ours, "Opsflow-Original-Headers-Size", &block.len().to_string());
    let mut whole = block;
    whole.extend_from_slice(original.payload);
    let whole = bytes::Bytes::from(whole);
    // One letter's parts share an id: its origin's, or one of its own (a request's).
    let letter = id.map_or_else(
        || format!("opsflow-dlq:request:{:032x}", rand::random::<u128>()),
        str::to_owned,
    );
    let part_of = |ours: &HeaderMap, content: usize, i: usize, n: usize| {
        let mut headers = ours.clone();
        insert(&mut headers, "Opsflow-Dead-Letter-Id", &letter);
        insert(&mut headers, "Opsflow-Dead-Letter-Part", &format!("{i}/{n}"));
        // The split in the id too: a letter sent again split otherwise (a
        // server's or stream's other limit) is not taken for a duplicate of the
        // first, part by part.
        let msg_id = format!("{letter}:part-{i}-of-{n}-by-{content}");
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id.as_str());
        headers
    };
    // Sized for the longest error and the widest numbers, not this error: a letter
    // sent again (its error may then quote another version) splits at the same
    // bytes.
    let mut widest_ours = ours.clone();
    insert(&mut widest_ours, "Opsflow-Error", &"x".repeat(ERROR_MAX + 64));
    let widest = headers_size(&part_of(&widest_ours, usize::MAX, usize::MAX, usize::MAX));
    let content = room.saturating_sub(widest);
    if content < PART_CONTENT_MIN || widest > HEADERS_MAX {
        return Err(format!(
            "its parts would have room for {content} bytes each beside {widest} bytes of headers, in messages of \
             at most {room} bytes (the server's max_payload, or the dead-letter stream's max_msg_size); at least \
             {PART_CONTENT_MIN} are needed"
        ));
    }
    let n = whole.len().div_ceil(content).max(1);
    Ok((0..n)
        .map(|i| {
            let end = whole.len().min((i + 1) * content);
            (part_of(&ours, content, i + 1, n), whole.slice(i * content..end))
        })
        .collect())
}

/// Whether `name` is one of NATS's own headers (`Nats-Msg-Id`, `Nats-Expected-*`,
/// `Nats-Rollup`, `Nats-TTL`, ...).
fn is_nats_header(name: &[u8]) -> bool {
    name.get(..5).is_some_and(|p| p.eq_ignore_ascii_case(b"nats-"))
}

/// `headers` as a NATS header block: `NATS/1.0`, a line per value, a blank line.
fn header_block(headers: &HeaderMap) -> Vec<u8> {
    let mut block = b"NATS/1.0\r\n".to_vec();
    for (name, values) in headers.iter() {
        for value in values {
            block.extend_from_slice(name.as_ref());
            block.extend_from_slice(b": ");
            block.extend_from_slice(value.as_str().as_bytes());
            block.extend_from_slice(b"\r\n");
        }
    }
    block.extend_from_slice(b"\r\n");
    block
}

/// An error as a header value ([`header_text`]), cut to [`ERROR_MAX`] bytes.
pub(crate) fn error_text(error: &str) -> String {
    let mut text = header_text(error);
    if text.len() > ERROR_MAX {
        let total = text.len();
        // ASCII: any byte is a character boundary.
        text.truncate(ERROR_MAX - 40);
        let cut = total - text.len();
        text.push_str(&format!("... ({cut} of {total} bytes cut)"));
    }
    text
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

    fn original<'a>(headers: OriginalHeaders<'a>, payload: &'a bytes::Bytes) -> Original<'a> {
        Original {
            subject: "ops.events.x",
            headers,
            payload,
        }
    }

    fn value(headers: &HeaderMap, name: &str) -> String {
        headers.get(name).map(|v| v.as_str().to_owned()).unwrap_or_default()
    }

    /// The parts' payloads joined, checking each part's headers on the way.
    fn joined(letters: &[(HeaderMap, bytes::Bytes)], room: usize) -> Vec<u8> {
        let n = letters.len();
        let mut whole = Vec::new();
        for (i, (headers, payload)) in letters.iter().enumerate() {
            let size = headers_size(headers);
            assert!(
                size <= HEADERS_MAX && size + payload.len() <= room,
                "part {i}: {size} + {}",
                payload.len()
            );
            assert_eq!(value(headers, "Opsflow-Dead-Letter-Part"), format!("{}/{n}", i + 1));
            assert_eq!(value(headers, "Opsflow-Error-Reason"), "decode");
            assert_eq!(value(headers, "Opsflow-Original-Subject"), "ops.events.x");
            let msg_id = value(headers, "Nats-Msg-Id");
            assert!(
                msg_id.starts_with(&format!("id-7:part-{}-of-{n}-by-", i + 1)),
                "{msg_id}"
            );
            assert_eq!(value(headers, "Opsflow-Dead-Letter-Id"), "id-7");
            whole.extend_from_slice(payload);
        }
        whole
    }

    #[test]
    fn a_dead_letter_that_fits_is_one_message_without_nats_headers() -> Result<(), String> {
        let mut headers = HeaderMap::new();
        headers.insert("Content-Type", "application/cloudevents+json");
        headers.insert("Nats-Expected-Stream", "OPS_EVENTS");
        headers.insert("Opsflow-Error", "a producer's own");
        let payload = bytes::Bytes::from_static(b"{not json");
        let at = original(OriginalHeaders::Read(Some(&headers)), &payload);
        let sent = letters(&at, DeadReason::Decode, "bad JSON", Some("id-7"), 1 << 20)?;
        assert_eq!(sent.len(), 1);
        let (headers, body) = &sent[0];
        assert_eq!(body, &payload);
        assert_eq!(value(headers, "Content-Type"), "application/cloudevents+json");
        assert!(headers.get("Nats-Expected-Stream").is_none());
        assert_eq!(value(headers, "Opsflow-Error"), "bad JSON");
        assert_eq!(value(headers, "Nats-Msg-Id"), "id-7");
        assert!(headers.get("Opsflow-Dead-Letter-Part").is_none());
        Ok(())
    }

    /// A payload near the largest message, and headers near JetStream's 64 KiB
    /// (the original held them; with opsflow's added they do not fit): parts whose
    /// payloads joined are the original message, nothing lost.
    #[test]
    fn a_dead_letter_too_large_for_one_message_goes_in_parts() -> Result<(), String> {
        let room = 1 << 20;
        let mut small = HeaderMap::new();
        small.insert("Content-Type", "application/cloudevents+json");
        let mut large = HeaderMap::new();
        large.insert("X-Big", "b".repeat(65_450).as_str());
        let near_room = bytes::Bytes::from(vec![b'x'; room - 100]);
        let tiny = bytes::Bytes::from_static(b"{\"specversion\":\"0.3\"}");
        // Large headers go in the payload of a single part.
        for (headers, payload, parts) in [(&small, &near_room, 2), (&large, &tiny, 1)] {
            let at = original(OriginalHeaders::Read(Some(headers)), payload);
            let sent = letters(&at, DeadReason::Decode, "refused", Some("id-7"), room)?;
            assert_eq!(sent.len(), parts);
            let block = header_block(headers);
            let size: usize = value(&sent[0].0, "Opsflow-Original-Headers-Size")
                .parse()
                .map_err(|e| format!("{e}"))?;
            assert_eq!(size, block.len());
            assert_eq!(joined(&sent, room), [&block[..], &payload[..]].concat());
        }
        // An unreadable header block goes as it is.
        let raw = [&b"NATS/1.0\r\nX-Bad: \xff"[..], &vec![b'y'; 50_000], b"\r\n\r\n"].concat();
        let at = original(OriginalHeaders::Unreadable(&raw), &tiny);
        let sent = letters(&at, DeadReason::Decode, "unreadable", Some("id-7"), room)?;
        assert_eq!(sent.len(), 1, "fits whole in one message");
        let at = original(OriginalHeaders::Unreadable(&raw), &near_room);
        let sent = letters(&at, DeadReason::Decode, "unreadable", Some("id-7"), room)?;
        assert_eq!(joined(&sent, room), [&raw[..], &near_room[..]].concat());
        // Without headers: the size is 0, and the parts are the payload.
        let at = original(OriginalHeaders::Read(None), &near_room);
        let sent = letters(&at, DeadReason::Decode, "refused", Some("id-7"), 100_000)?;
        assert_eq!(sent.len(), 11);
        assert_eq!(value(&sent[0].0, "Opsflow-Original-Headers-Size"), "0");
        assert_eq!(joined(&sent, 100_000), near_room.to_vec());
        Ok(())
    }

    /// A letter sent again with another error (a version conflict quoting a newer
    /// version, say) splits at the same bytes under the same ids, so parts kept from
    /// either join up; a request's parts share an id of their own.
    #[test]
    fn parts_split_alike_whatever_the_error_and_a_requests_share_an_id() -> Result<(), String> {
        let payload = bytes::Bytes::from(vec![b'x'; 20_000]);
        let at = original(OriginalHeaders::Read(None), &payload);
        let split = |error: &str, id: Option<&str>| -> Result<Vec<(String, String, bytes::Bytes)>, String> {
            Ok(letters(&at, DeadReason::VersionConflict, error, id, 8_192)?
                .into_iter()
                .map(|(h, p)| (value(&h, "Nats-Msg-Id"), value(&h, "Opsflow-Dead-Letter-Id"), p))
                .collect())
        };
        let first = split("expected 1, actual 9", Some("id-7"))?;
        let again = split(
            "expected 1, actual 10 (and a much longer explanation than before)",
            Some("id-7"),
        )?;
        assert_eq!(first.len(), 4);
        assert_eq!(first, again);
        let request = split("refused", None)?;
        let letter = &request[0].1;
        assert!(letter.starts_with("opsflow-dlq:request:"), "{letter}");
        assert!(
            request
                .iter()
                .all(|(msg_id, id, _)| id == letter && msg_id.starts_with(letter.as_str()))
        );
        assert_ne!(
            split("refused", None)?[0].1,
            *letter,
            "each request letter an id of its own"
        );
        Ok(())
    }

    #[test]
    fn an_error_is_cut_and_a_room_too_small_for_any_part_is_refused() -> Result<(), String> {
        let payload = bytes::Bytes::from_static(b"x");
        let at = original(OriginalHeaders::Read(None), &payload);
        let long = format!("`{}` is not a valid name", "\u{e9}".repeat(100_000));
        let sent = letters(&at, DeadReason::Decode, &long, None, 1 << 20)?;
        let error = value(&sent[0].0, "Opsflow-Error");
        let total = header_text(&long).len();
        let said = format!("... ({} of {total} bytes cut)", total - (ERROR_MAX - 40));
        assert!(error.starts_with("`\\u{e9}"), "{}", &error[..20]);
        assert!(error.ends_with(&said), "{}", &error[error.len() - 60..]);
        assert_eq!(error.len(), ERROR_MAX - 40 + said.len());
        let payload = bytes::Bytes::from(vec![b'x'; 2_000]);
        let at = original(OriginalHeaders::Read(None), &payload);
        let refused = letters(&at, DeadReason::Decode, &long, None, 3_000).unwrap_err();
        assert!(refused.contains("in messages of at most 3000 bytes"), "{refused}");
        Ok(())
    }

    #[test]
    fn explanatory_text_goes_out_in_ascii() {
        assert_eq!(header_text("plain text"), "plain text");
        assert_eq!(header_text("id \"café\" is 🚚"), "id \"caf\\u{e9}\" is \\u{1f69a}");
        assert_eq!(header_text("line\r\nbreak\té"), "line  break \\u{e9}");
    }
}
