//! What an ingest session keeps an eye on while it consumes, which the messages
//! it is given would not tell:
//!
//! - stream messages removed before the consumer got to them ([`Skipped`]);
//! - the consumer's filters: an operator narrowing them (`nats consumer edit`)
//!   makes the consumer pass over the events of the subjects left out, which
//!   producers had acknowledged; opsflow sets them back to `[nats.ingest] subjects`
//!   and reads back and records what the consumer passed over meanwhile
//!   ([`Watch`], [`PassedOver`]; where the consumer delivers all of its stream's
//!   subjects, each stream sequence it skips is read back at once, [`Skipped`]);
//! - the stream being full with discard new, which refuses producers
//!   ([`Watch`], reported in `/readyz`).

use std::ops::RangeInclusive;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use tokio_util::sync::CancellationToken;

use super::Stop;
use super::recover::{Reading, Which, recover};
use crate::pull::Delivery;

/// How often a session reads its consumer's and stream's info ([`Watch::check`]).
pub(super) const WATCH_PERIOD: Duration = Duration::from_secs(5);

/// How long a look waits for the consumer's or the stream's info.
const READ_WITHIN: Duration = Duration::from_secs(2);

/// How long setting the consumer's filters back may take.
const SET_WITHIN: Duration = Duration::from_secs(2);

/// After setting the filters back failed, how long until it is tried again (the
/// session waits for each try).
const SET_BACK_RETRY: Duration = Duration::from_secs(60);

/// The `filter_subject` and `filter_subjects` of a consumer delivering `subjects`:
/// one filter in the first (which older servers know), several in the second.
pub(super) fn filters_for(subjects: &[String]) -> (String, Vec<String>) {
    match subjects {
        [one] => (one.clone(), Vec::new()),
        many => (String::new(), many.to_vec()),
    }
}

/// What consumer `info` delivers: its filters, else all its `stream` captures.
pub(super) fn delivered_subjects(info: &consumer::Info, stream: &[String]) -> Vec<String> {
    let mut filters = info.config.filter_subjects.clone();
    filters.extend(Some(info.config.filter_subject.clone()).filter(|f| !f.is_empty()));
    if filters.is_empty() { stream.to_vec() } else { filters }
}

/// The ingest `subjects` consumer `info` of a stream capturing `stream` does not
/// deliver.
pub(super) fn left_out<'a>(info: &consumer::Info, stream: &[String], subjects: &'a [String]) -> Vec<&'a String> {
    let delivers = delivered_subjects(info, stream);
    subjects
        .iter()
        .filter(|s| !delivers.iter().any(|d| crate::subjects::covers(d, s)))
        .collect()
}

/// Sets the filters of consumer `info` of `stream` back to the ingest `subjects`,
/// keeping the rest of its configuration; returns its info as updated, or why not.
pub(super) async fn set_filters(
    stream: &stream::Stream,
    info: &consumer::Info,
    subjects: &[String],
) -> Result<consumer::Info, String> {
    let mut config = info.config.clone();
    (config.filter_subject, config.filter_subjects) = filters_for(subjects);
    let stream_name = &stream.cached_info().config.name;
    let by_hand = |e: &dyn std::fmt::Display| {
        format!(
            "setting its filters back failed ({e}): opsflow's NATS user needs publish permission on \
             $JS.API.CONSUMER.CREATE.{stream_name}.> for that, or set them back by hand (nats consumer edit \
             {stream_name} {})",
            info.name
        )
    };
    match tokio::time::timeout(SET_WITHIN, stream.update_consumer(config)).await {
        Ok(Ok(updated)) => Ok(updated.cached_info().clone()),
        Ok(Err(e)) => match e.kind() {
            stream::ConsumerUpdateErrorKind::JetStream(js)
                if matches!(
                    js.error_code(),
                    jetstream::ErrorCode::CONSUMER_WQ_CONSUMER_NOT_UNIQUE
                        | jetstream::ErrorCode::CONSUMER_WQ_MULTIPLE_UNFILTERED
                ) =>
            {
                let code = Some(js.error_code());
                Err(super::advice::consumer_refused(&e, code, stream, &info.name, subjects))
            }
            _ => Err(by_hand(&e)),
        },
        Err(_) => Err(by_hand(&format!("no answer within {} s", SET_WITHIN.as_secs()))),
    }
}

/// Where the consumer may have passed over ingest events, kept across sessions
/// and, in the log's checkpoints, across restarts ([`PassedOver::in_log`]): a
/// crash or a restart while what it passed over was still to be read back (after
/// the consumer's acknowledgements had moved past it) lost it for good. What is
/// kept is of one consumer of one stream, as made ([`PassedOver::bind`]): the
/// sequences of a stream or consumer made again mean nothing to another.
#[derive(Debug, Default)]
pub(super) struct PassedOver {
    /// The stream sequence the consumer had delivered when last found delivering
    /// every ingest subject.
    complete: Option<u64>,
    /// Set once it was found leaving some out: what it delivered after this may
    /// have passed over their events, to be read back once it delivers them again.
    after: Option<u64>,
    /// Where the two are kept: the log (`None` in memory only) and the consumer
    /// they are of.
    log: Option<opsflow_log::EventLog>,
    of: Option<Kept>,
}

/// The checkpoint names keeping a [`PassedOver`] of one consumer of one stream,
/// each as made (a value is the sequence plus one, 0 for none).
#[derive(Debug, PartialEq)]
struct Kept {
    complete: String,
    after: String,
}

/// A stream or consumer name and when it was made, in nanoseconds since the
/// epoch: which one it is.
pub(super) type Made<'a> = (&'a str, i128);

impl PassedOver {
    /// Kept in `log`, once bound to a consumer.
    pub(super) fn in_log(log: &opsflow_log::EventLog) -> PassedOver {
        PassedOver {
            log: Some(log.clone()),
            ..PassedOver::default()
        }
    }

    /// Of the consumer `consumer` of `stream` from now on: what was kept of it
    /// (by this run or an earlier one) when it is another than before.
    pub(super) fn bind(&mut self, (stream, stream_made): Made<'_>, (consumer, consumer_made): Made<'_>) {
        let prefix = format!("nats-ingest/{stream}@{stream_made}/{consumer}@{consumer_made}");
        let of = Kept {
            complete: format!("{prefix}/whole"),
            after: format!("{prefix}/passed-over-after"),
        };
        if self.of.as_ref() == Some(&of) {
            return;
        }
        let read = |name: &str| match self.log.as_ref().map(|log| log.checkpoint(name)) {
            Some(Ok(value)) => value.and_then(|v| v.checked_sub(1)),
            Some(Err(e)) => {
                tracing::warn!(error = %e, checkpoint = name, "cannot read an ingest checkpoint");
                None
            }
            None => None,
        };
        self.complete = read(&of.complete);
        self.after = read(&of.after);
        self.of = Some(of);
    }

    fn keep(&self, which: fn(&Kept) -> &String, value: Option<u64>) {
        let (Some(log), Some(of)) = (&self.log, &self.of) else {
            return;
        };
        let name = which(of);
        if let Err(e) = log.save_checkpoint(name, value.map_or(0, |v| v.saturating_add(1))) {
            tracing::warn!(error = %e, checkpoint = %name, "cannot save an ingest checkpoint");
        }
    }

    /// The consumer leaves out ingest subjects: what it passed over starts after
    /// the last time it did not (unknown, and not read back, when never seen so).
    /// Kept durably before this returns.
    pub(super) async fn narrowed(&mut self) {
        let before = self.after;
        self.after = self.after.or(self.complete);
        if self.after != before {
            self.keep(|k| &k.after, self.after);
            if let Some(log) = &self.log
                && let Err(e) = log.flush_checkpoints().await
            {
                tracing::warn!(error = %e, "cannot make an ingest checkpoint durable");
            }
        }
    }

    /// Whether where it passed over them is known (it was seen delivering them
    /// all before).
    pub(super) fn known(&self) -> bool {
        self.after.is_some()
    }

    /// The consumer delivers every ingest subject, having delivered the stream up
    /// to `delivered`, which ends at `last`: the stream sequences to read back,
    /// from where it was last whole to `last` (nats-server does not take the
    /// consumer back when its filters widen: what it passed over beyond what it
    /// delivered is not delivered either). With `gaps`, a session's gap check that
    /// started after `.0` and has seen up to `.1`, what it read back itself is
    /// left out. They stay to be read back until [`PassedOver::read`].
    pub(super) fn complete(&mut self, delivered: u64, last: u64, gaps: Option<(u64, u64)>) -> Vec<RangeInclusive<u64>> {
        if self.complete != Some(delivered) {
            self.complete = Some(delivered);
            self.keep(|k| &k.complete, self.complete);
        }
        let Some(after) = self.after else {
            return Vec::new();
        };
        let ranges: Vec<RangeInclusive<u64>> = match gaps {
            None => vec![after + 1..=last],
            Some((from, seen)) => vec![after + 1..=from.min(last), after.max(seen) + 1..=last],
        }
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect();
        if ranges.is_empty() {
            self.read();
        }
        ranges
    }

    /// What [`PassedOver::complete`] gave is read back.
    pub(super) fn read(&mut self) {
        if self.after.take().is_some() {
            self.keep(|k| &k.after, None);
        }
    }
}

/// Reads back and records what the consumer passed over, stream sequences
/// `range` (within the ingest `subjects`; on a work-queue stream each is then
/// deleted, as its acknowledgement would), and says so; `None` when shutdown
/// came first.
pub(super) async fn read_back(
    reading: &Reading<'_>,
    subjects: &[String],
    range: RangeInclusive<u64>,
    shutdown: &CancellationToken,
) -> Option<Result<(), Stop>> {
    let (from, to) = (*range.start(), *range.end());
    let read = shutdown
        .run_until_cancelled(async {
            let work_queue = reading.stream.cached_info().config.retention == stream::RetentionPolicy::WorkQueue;
            let others = if work_queue {
                match others_on_work_queue(reading.stream, reading.consumer).await {
                    Some(others) => others,
                    None => return Ok(0),
                }
            } else {
                Vec::new()
            };
            let which = Which {
                range,
                filters: subjects,
                others: &others,
                sparse: true,
                remove: work_queue,
            };
            recover(reading, which).await
        })
        .await?;
    Some(read.map(|read_back| {
        // Nothing read: a gap of messages deleted from within the stream.
        if read_back == 0 {
            return;
        }
        tracing::warn!(
            from,
            to,
            read_back,
            "ingest read back from the stream what its consumer passed over while its filters left out ingest \
             subjects, and recorded it (duplicates of what it delivered are absorbed by the log)"
        );
    }))
}

/// What the other consumers of work-queue `stream` deliver (`>` for one without
/// filters): theirs to take, never read back by ingest (`consumer`). `None`, with
/// a warning, when they cannot be listed (opsflow's NATS user needs
/// `$JS.API.CONSUMER.LIST.<stream>`).
pub(super) async fn others_on_work_queue(stream: &stream::Stream, consumer: &str) -> Option<Vec<String>> {
    use futures::TryStreamExt;
    let name = &stream.cached_info().config.name;
    let listed = match tokio::time::timeout(READ_WITHIN, stream.consumers().try_collect::<Vec<consumer::Info>>()).await
    {
        Ok(Ok(all)) => Ok(all),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", READ_WITHIN.as_secs())),
    };
    match listed {
        Ok(all) => Some(
            all.iter()
                .filter(|info| info.name != consumer)
                .flat_map(|info| delivered_subjects(info, &[">".to_owned()]))
                .collect(),
        ),
        Err(e) => {
            tracing::warn!(
                error = %e,
                stream = %name,
                "cannot list the work-queue stream's consumers, so what the ingest consumer passed over is not read \
                 back (it may be another consumer's): opsflow's NATS user needs $JS.API.CONSUMER.LIST.{name}"
            );
            None
        }
    }
}

/// A session's periodic look at its consumer and stream ([`WATCH_PERIOD`]).
pub(super) struct Watch {
    consumer: String,
    /// `[nats.ingest] subjects`.
    subjects: Vec<String>,
    /// The stream sequence after which this session's gap check reads back what
    /// the consumer passed over ([`Skipped`]); `None` when it does not.
    pub(super) gaps_from: Option<u64>,
    /// Why the consumer's filters are not what they must be, while setting them
    /// back fails.
    narrowed: Option<String>,
    /// When setting them back may be tried again, after a failure.
    retry_at: Option<tokio::time::Instant>,
    /// Why producers are refused, when the stream is full.
    full: Option<String>,
    /// Why nothing is delivered, while an operator paused the consumer.
    paused: Option<String>,
    /// Whether a problem is shown in `/readyz`.
    reported: bool,
    /// Whether the session's first look, which makes it ready, was taken.
    looked: bool,
    /// The last stream sequence read back, for the session's gap check to start
    /// after (on a work-queue stream what was read back is deleted, and is no
    /// loss).
    pub(super) read_to: Option<u64>,
}

impl Watch {
    pub(super) fn new(info: &consumer::Info, subjects: &[String], gaps_from: Option<u64>) -> Watch {
        Watch {
            consumer: info.name.clone(),
            subjects: subjects.to_vec(),
            gaps_from,
            narrowed: None,
            retry_at: None,
            full: None,
            paused: None,
            reported: false,
            looked: false,
            read_to: None,
        }
    }

    /// Reads the consumer's info: filters leaving out ingest subjects are set back
    /// (tried again after [`SET_BACK_RETRY`] when that fails, said in `/readyz`
    /// meanwhile), and once it delivers them all again, whoever set them back, what
    /// it passed over is read back ([`PassedOver`]). Then reads the stream's: full
    /// with discard new, producers are refused. Either shows in `/readyz` (`ready`,
    /// on connection `connected`) until it is over; the first look finding neither
    /// makes the session ready. Fails only when recording does.
    pub(super) async fn check(
        &mut self,
        reading: &Reading<'_>,
        passed: &mut PassedOver,
        seen: Option<u64>,
        (ready, connected): (&crate::ready::Flag, u64),
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        // The session waits meanwhile: a JetStream slow to answer holds it up
        // for moments at most, and the next look tries again.
        match tokio::time::timeout(READ_WITHIN, reading.stream.consumer_info(&self.consumer)).await {
            Ok(Ok(info)) => {
                let stream = reading.stream.cached_info();
                // A consumer made again meanwhile is another (the session notices too).
                passed.bind(
                    (&stream.config.name, stream.created.unix_timestamp_nanos()),
                    (&info.name, info.created.unix_timestamp_nanos()),
                );
                self.paused = paused(&info, &stream.config.name);
                self.filters(reading, info, (passed, seen), ready, shutdown).await?
            }
            // The session notices a consumer or connection that is gone.
            Ok(Err(e)) => {
                tracing::debug!(error = %e, consumer = %self.consumer, "cannot read the ingest consumer's info")
            }
            Err(_) => tracing::debug!(consumer = %self.consumer, "the ingest consumer's info did not come in time"),
        }
        let name = &reading.stream.cached_info().config.name;
        match tokio::time::timeout(READ_WITHIN, reading.js.get_stream(name)).await {
            Ok(Ok(stream)) => self.full = full(stream.cached_info()),
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot read the ingest stream's info"),
            Err(_) => tracing::debug!("the ingest stream's info did not come in time"),
        }
        let problems: Vec<&str> = [&self.narrowed, &self.paused, &self.full]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if !problems.is_empty() {
            if !self.reported {
                tracing::error!(problems = ?problems, "nats ingest is not ready");
            }
            ready.fail(problems.join("; "));
            self.reported = true;
        } else if std::mem::take(&mut self.reported) {
            tracing::info!("nats ingest is ready again");
            ready.set_ready_on(connected);
        } else if !self.looked {
            ready.set_ready_on(connected);
        }
        self.looked = true;
        Ok(())
    }

    async fn filters(
        &mut self,
        reading: &Reading<'_>,
        mut info: consumer::Info,
        (passed, seen): (&mut PassedOver, Option<u64>),
        ready: &crate::ready::Flag,
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        let stream_subjects = &reading.stream.cached_info().config.subjects;
        let left_out: Vec<String> = left_out(&info, stream_subjects, &self.subjects)
            .into_iter()
            .cloned()
            .collect();
        if !left_out.is_empty() {
            passed.narrowed().await;
            if self.retry_at.is_some_and(|at| tokio::time::Instant::now() < at) {
                return Ok(());
            }
            let filters = delivered_subjects(&info, stream_subjects);
            match set_filters(reading.stream, &info, &self.subjects).await {
                Ok(updated) => {
                    tracing::warn!(
                        consumer = %self.consumer,
                        filters = ?filters,
                        left_out = ?left_out,
                        "the ingest consumer's filters had been changed to leave out ingest subjects: set back to \
                         {:?} (to ingest fewer subjects, set [nats.ingest] subjects)",
                        self.subjects
                    );
                    info = updated;
                }
                Err(e) => {
                    self.narrowed = Some(format!(
                        "consumer {} delivers only {filters:?}, leaving out the ingest subjects {left_out:?}: {e}; \
                         what it passes over meanwhile is read from the stream and recorded once it delivers them \
                         again{}",
                        self.consumer,
                        if self.gaps_from.is_some() {
                            ", and as the stream sequences it skips show"
                        } else {
                            ""
                        }
                    ));
                    self.retry_at = Some(tokio::time::Instant::now() + SET_BACK_RETRY);
                    return Ok(());
                }
            }
        }
        self.narrowed = None;
        self.retry_at = None;
        if passed.known() {
            let name = &reading.stream.cached_info().config.name;
            let last = match tokio::time::timeout(READ_WITHIN, reading.js.get_stream(name)).await {
                Ok(Ok(stream)) => stream.cached_info().state.last_sequence,
                // The next look tries again.
                _ => return Ok(()),
            };
            let gaps = self.gaps_from.zip(seen);
            let ranges = passed.complete(info.delivered.stream_sequence, last, gaps);
            for range in &ranges {
                self.read_to = self.read_to.max(Some(*range.end()));
                ready.fail(format!(
                    "reading back stream messages {}..={} that consumer {} passed over while its filters left out \
                     ingest subjects",
                    range.start(),
                    range.end(),
                    self.consumer
                ));
                self.reported = true;
                match read_back(reading, &self.subjects, range.clone(), shutdown).await {
                    Some(read) => read?,
                    None => return Ok(()),
                }
            }
            passed.read();
        } else {
            passed.complete(info.delivered.stream_sequence, 0, None);
        }
        Ok(())
    }
}

/// Why the consumer delivers nothing, when an operator paused it (nats-server 2.11
/// and later): left as it is, said in `/readyz` until it resumes.
fn paused(info: &consumer::Info, stream: &str) -> Option<String> {
    if !info.paused {
        return None;
    }
    let remaining = info
        .pause_remaining
        .map(|left| format!(" for another {} s", left.as_secs()))
        .unwrap_or_default();
    Some(format!(
        "consumer {} is paused{remaining}, so nothing is ingested meanwhile (producers' events wait in the stream): \
         resume it with `nats consumer resume {stream} {}`",
        info.name, info.name
    ))
}

/// Why a stream with discard new refuses producers, when it is full (or nearly:
/// less room left than two messages of its average size).
fn full(info: &stream::Info) -> Option<String> {
    let (config, state) = (&info.config, &info.state);
    if config.discard != stream::DiscardPolicy::New {
        return None;
    }
    let limit = |max: i64| u64::try_from(max).ok().filter(|&m| m > 0);
    let average = state.bytes.checked_div(state.messages).unwrap_or(0);
    let room = (2 * average).max(1 << 10);
    let by_messages = limit(config.max_messages).filter(|&max| state.messages >= max);
    let by_bytes = limit(config.max_bytes).filter(|&max| state.bytes.saturating_add(room) > max);
    let what = match (by_messages, by_bytes) {
        (Some(max), _) => format!("it holds {} messages, its max_msgs {max}", state.messages),
        (None, Some(max)) => format!(
            "it holds {} bytes of its max_bytes {max}, less than two messages' room",
            state.bytes
        ),
        (None, None) => return None,
    };
    Some(format!(
        "ingest stream {} is full ({what}) and discards new messages: producers' events are refused; {}",
        config.name,
        if config.retention == stream::RetentionPolicy::Limits {
            "with limits retention only max_age, a purge or deletes free room (acknowledgements free nothing): \
             raise the limit or set max_age (nats stream edit)"
        } else {
            "ingest has not recorded what it holds yet, or another consumer holds it: raise the limit (nats stream \
             edit)"
        }
    ))
}

/// The stream sequences a consumer delivering all of its stream's subjects first
/// delivers: one after the other, but for messages removed before it got to them
/// (the stream's limits with discard old: `max_msgs`, `max_bytes`, `max_age`, or
/// a purge). Their events, if any, never reach the log: counted
/// (`opsflow_nats_ingest_skipped_total`) and logged as an error, which nothing else
/// would tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Skipped {
    /// The stream sequence last delivered, or before the first the consumer was to
    /// deliver; `None` when that is not known (the first delivery then tells).
    pub(super) last: Option<u64>,
    /// What the consumer delivers (its filters, else its stream's subjects).
    delivers: Vec<String>,
}

impl Skipped {
    /// For consumer `info` of `stream`: after what it delivered last; else (it
    /// delivered nothing yet) from the stream's start when both were made together
    /// (as opsflow makes them), or from the stream's first message when the
    /// consumer was made just now (an adopted stream may have lost messages long
    /// before opsflow's time).
    pub(super) fn from(
        info: &jetstream::consumer::Info,
        stream: &jetstream::stream::Info,
        delivers: &[String],
    ) -> Skipped {
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
    pub(super) async fn removed(
        &self,
        js: &jetstream::Context,
        stream: &str,
        gap: std::ops::RangeInclusive<u64>,
    ) -> Option<std::ops::RangeInclusive<u64>> {
        let found = match js.get_stream(stream).await {
            Ok(found) => found,
            // Not known: nothing counted, all of it read back.
            Err(e) => {
                tracing::debug!(error = %e, stream, "cannot read the ingest stream's subjects");
                return Some(*gap.start()..=gap.start().saturating_sub(1));
            }
        };
        let info = found.cached_info();
        if !covers_all(&self.delivers, &info.config.subjects) {
            return None;
        }
        let below = (*gap.end()).min(info.state.first_sequence.saturating_sub(1));
        Some(*gap.start()..=below)
    }

    /// Stream sequences up to `to` were read back: no gap below it is one.
    pub(super) fn passed(&mut self, to: u64) {
        self.last = self.last.max(Some(to));
    }

    /// Notes `message`; returns the stream sequences skipped before it.
    pub(super) fn check(&mut self, message: &async_nats::Message) -> Option<std::ops::RangeInclusive<u64>> {
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
pub(super) fn covers_all(delivers: &[String], subjects: &[String]) -> bool {
    subjects
        .iter()
        .all(|s| delivers.iter().any(|d| crate::subjects::covers(d, s)))
}

/// Reports stream sequences `removed` before the consumer delivered them.
pub(super) fn report_skipped(stream: &str, removed: std::ops::RangeInclusive<u64>) {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn what_was_passed_over_is_read_back_once_from_where_it_was_last_whole() {
        let mut passed = PassedOver::default();
        let none: Vec<RangeInclusive<u64>> = Vec::new();
        // Never seen whole: where it started is not known.
        passed.narrowed().await;
        assert!(!passed.known());
        assert_eq!(passed.complete(10, 12, None), none);
        // Whole at 10, narrowed, whole again having delivered 25 of a stream
        // ending at 28: 11-28 (it went past 26-28 without delivering them), until
        // read.
        passed.narrowed().await;
        assert!(passed.known());
        assert_eq!(passed.complete(25, 28, None), [11..=28]);
        assert_eq!(passed.complete(30, 30, None), [11..=30], "not read yet");
        passed.read();
        assert_eq!(passed.complete(31, 31, None), none);
        // A session whose gap check started after 35 and has seen up to 45:
        // 32-35 and what followed 45.
        passed.narrowed().await;
        assert_eq!(passed.complete(50, 52, Some((35, 45))), [32..=35, 46..=52]);
        passed.read();
        // Narrowed within that session, after 52: only what followed what it saw.
        passed.narrowed().await;
        assert_eq!(passed.complete(60, 61, Some((35, 58))), [59..=61]);
        passed.read();
        assert!(!passed.known());
    }

    /// Where to read back from outlives the process: kept in the log's checkpoints,
    /// for the consumer of the stream as made.
    #[tokio::test]
    async fn where_to_read_back_from_is_kept_in_the_log() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = opsflow_log::EventLog::open_async(dir.path().join("log"), Default::default()).await?;
        let (stream, consumer) = (("OPS_EVENTS", 1), ("opsflow-ingest", 2));
        let run = |stream: Made<'static>, consumer: Made<'static>| {
            let mut passed = PassedOver::in_log(&log);
            passed.bind(stream, consumer);
            passed
        };
        let mut passed = run(stream, consumer);
        assert!(!passed.known());
        assert!(passed.complete(10, 10, None).is_empty());
        passed.narrowed().await;
        // The next run finds it, for this consumer of this stream only: not for
        // another, nor for either made again.
        let mut again = run(stream, consumer);
        assert!(again.known());
        assert!(!run(stream, ("other", 2)).known());
        assert!(!run(stream, ("opsflow-ingest", 3)).known());
        assert!(!run(("OPS_EVENTS", 4), consumer).known());
        assert_eq!(again.complete(20, 25, None), [11..=25]);
        again.read();
        assert!(!run(stream, consumer).known());
        // Narrowed while no run watched: from where the last one saw it whole.
        let mut third = run(stream, consumer);
        third.narrowed().await;
        assert_eq!(third.complete(30, 31, None), [21..=31]);
        // Bound to a consumer made again, within a run: what it knew is dropped.
        third.bind(stream, ("opsflow-ingest", 5));
        assert!(!third.known());
        log.close().await?;
        Ok(())
    }

    #[test]
    fn a_stream_with_discard_new_is_full_at_a_limit_or_near_its_bytes() -> anyhow::Result<()> {
        let info = |discard: &str, max_msgs: i64, max_bytes: i64, messages: u64, bytes: u64| {
            serde_json::from_value::<stream::Info>(serde_json::json!({
                "config": { "name": "OPS_EVENTS", "subjects": ["ops.events.>"], "retention": "limits",
                            "max_consumers": -1, "max_msgs": max_msgs, "max_bytes": max_bytes, "max_age": 0,
                            "discard": discard, "storage": "file", "num_replicas": 1 },
                "created": "2026-11-24T00:00:00Z",
                "state": { "messages": messages, "bytes": bytes, "first_seq": 1, "first_ts": "2026-11-24T00:00:00Z",
                           "last_seq": messages, "last_ts": "2026-11-24T00:00:00Z", "consumer_count": 1 },
                "cluster": { "leader": "n1" }
            }))
        };
        // Discard old makes room itself (and loses what ingest had not read yet).
        assert_eq!(full(&info("old", 5, -1, 5, 100)?), None);
        assert_eq!(full(&info("new", 5, -1, 4, 100)?), None);
        let said = full(&info("new", 5, -1, 5, 100)?).unwrap_or_default();
        assert!(said.contains("it holds 5 messages, its max_msgs 5"), "{said}");
        // Bytes: full once less room is left than two messages of the average
        // size (here 1,000 bytes; 1 KiB at least).
        let max = 1 << 30;
        let messages = (max - 10_000) as u64 / 1000;
        assert_eq!(full(&info("new", -1, max, messages, messages * 1000)?), None);
        let said = full(&info("new", -1, max, messages + 9, (messages + 9) * 1000)?).unwrap_or_default();
        assert!(
            said.contains(&format!(
                "it holds {} bytes of its max_bytes {max}, less than two messages' room",
                (messages + 9) * 1000
            )),
            "{said}"
        );
        // Messages of 100 KB in 1 MiB: full with room for one more.
        assert_eq!(full(&info("new", -1, 1 << 20, 8, 800_000)?), None);
        assert!(full(&info("new", -1, 1 << 20, 9, 900_000)?).is_some());
        Ok(())
    }
}
