//! The ingest consumer's deliveries, pulled through a core subscription: pull
//! requests to `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>` with a reply inbox
//! of the session's own, and acknowledgements published to each delivery's
//! `$JS.ACK` reply subject (the JetStream wire API). The client's pull stream does
//! the same with a JetStream context copied into every message, and a timer armed
//! each time it waits; per message that was a tenth of what ingest spends outside
//! decoding and appending.
//!
//! Like the client's stream, a pull asks for a batch of messages (with a byte
//! ceiling, and expiring after [`EXPIRES`] or the consumer's `max_expires`), and
//! the next is asked for when half is delivered. A pull that ends early (expired,
//! or ended by the server: `408`, `409`) gives back what it did not deliver
//! (`Nats-Pending-Messages`, `Nats-Pending-Bytes`). A waiting pull asks the
//! server for idle heartbeats ([`HEARTBEAT`]); one that neither delivers, nor
//! ends, nor beats for two of them is taken for lost ([`Pull::check`]: a server
//! drops the waiting pulls of a consumer whose leader goes away) and asked again. A
//! delivery is a message with a `$JS.ACK` reply subject, whatever its headers say;
//! the server's status messages have none. An error ends the pull for good.

use std::time::{Duration, Instant};

use async_nats::{Message, StatusCode, Subject, Subscriber};
use futures::{FutureExt, StreamExt};

/// How long a pull request waits for messages before the server ends it (unless
/// the consumer allows less).
pub(crate) const EXPIRES: Duration = Duration::from_secs(30);

/// How long past its expiry a pull that neither delivered nor ended is taken for
/// lost, when it has no heartbeat.
const LOST_AFTER: Duration = Duration::from_secs(5);

/// How often, at most, the server is asked to say that a pull with nothing to
/// deliver is still waiting (`idle_heartbeat`): a pull not heard of for two of
/// these and [`LOST_MARGIN`] is taken for lost, long before it would expire.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Time allowed past two missed heartbeats.
const LOST_MARGIN: Duration = Duration::from_secs(1);

/// The heartbeat of a pull that expires after `expires`: the server refuses one
/// over half of the expiry.
fn heartbeat_for(expires: Duration) -> Duration {
    HEARTBEAT.min(expires / 4)
}

/// The JetStream API prefix (no domain).
const API: &str = "$JS.API";

/// A consumer's deliveries, pulled.
pub(crate) struct Pull {
    client: async_nats::Client,
    /// Where pull requests go.
    next: Subject,
    /// Where deliveries and the server's status messages come.
    inbox: Subject,
    subscriber: Subscriber,
    /// A pull request's body.
    request: bytes::Bytes,
    batch: usize,
    max_bytes: usize,
    /// Asked for and not yet delivered.
    pending_messages: usize,
    pending_bytes: usize,
    expires: Duration,
    /// How often the server says a waiting pull is alive; zero for never.
    heartbeat: Duration,
    /// Messages taken from the inbox (deliveries and status), and how many there
    /// were at the last [`Pull::check`]; since when nothing was heard nor asked.
    heard: u64,
    heard_at_check: u64,
    quiet_since: Instant,
    /// Why the pull ended, for good: every later call says it again.
    ended: Option<String>,
}

impl Pull {
    /// Subscribes the inbox and sends the first pull request for `batch` messages of
    /// at most `max_bytes` (both positive), each request expiring after `expires`
    /// (within the consumer's `max_expires`, see [`expires_within`]).
    pub(crate) async fn start(
        client: async_nats::Client,
        (stream, consumer): (&str, &str),
        batch: usize,
        max_bytes: usize,
        expires: Duration,
    ) -> Result<Pull, String> {
        let inbox = Subject::from(client.new_inbox());
        let subscriber = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| format!("subscribing the pull inbox: {e}"))?;
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let heartbeat = heartbeat_for(expires);
        let mut request = serde_json::json!({
            "batch": batch,
            "max_bytes": max_bytes,
            "expires": nanos(expires),
        });
        if !heartbeat.is_zero() {
            request["idle_heartbeat"] = nanos(heartbeat).into();
        }
        let mut pull = Pull {
            next: Subject::from(format!("{API}.CONSUMER.MSG.NEXT.{stream}.{consumer}")),
            client,
            inbox,
            subscriber,
            request: serde_json::to_vec(&request).unwrap_or_default().into(),
            batch,
            max_bytes,
            pending_messages: 0,
            pending_bytes: 0,
            expires,
            heartbeat,
            heard: 0,
            heard_at_check: 0,
            quiet_since: Instant::now(),
            ended: None,
        };
        pull.ask().await?;
        Ok(pull)
    }

    /// Sends a pull request.
    async fn ask(&mut self) -> Result<(), String> {
        self.client
            .publish_with_reply(self.next.clone(), self.inbox.clone(), self.request.clone())
            .await
            .map_err(|e| format!("sending a pull request: {e}"))?;
        self.pending_messages += self.batch;
        self.pending_bytes += self.max_bytes;
        self.quiet_since = Instant::now();
        Ok(())
    }

    /// How long a pull may be silent (no delivery, heartbeat or status) before it
    /// is taken for lost.
    fn lost_after(&self) -> Duration {
        if self.heartbeat.is_zero() {
            self.expires + LOST_AFTER
        } else {
            self.heartbeat * 2 + LOST_MARGIN
        }
    }

    /// Called now and then (every second or so): when nothing came since a pull
    /// was sent, for two heartbeats (or longer than a pull lives, without them),
    /// the pulls are taken for lost and the next call to [`Pull::next`] asks
    /// again (a pull still alive just delivers alongside).
    pub(crate) fn check(&mut self) {
        if self.heard != self.heard_at_check {
            self.heard_at_check = self.heard;
            self.quiet_since = Instant::now();
        } else if self.quiet_since.elapsed() > self.lost_after() {
            tracing::debug!(silent_for = ?self.lost_after(), "nats pull neither delivered nor ended: asking again");
            self.pending_messages = 0;
            self.pending_bytes = 0;
            self.quiet_since = Instant::now();
        }
    }

    /// The next delivery. An error ends the consumption (the consumer is gone, the
    /// connection is closed, JetStream does not answer).
    pub(crate) async fn next(&mut self) -> Result<Message, String> {
        if let Some(why) = &self.ended {
            return Err(why.clone());
        }
        let taken = self.pull().await;
        if let Err(why) = &taken {
            self.ended = Some(why.clone());
        }
        taken
    }

    async fn pull(&mut self) -> Result<Message, String> {
        loop {
            if self.pending_messages <= self.batch / 2 || self.pending_bytes <= self.max_bytes / 2 {
                self.ask().await?;
            }
            let message = self
                .subscriber
                .next()
                .await
                .ok_or_else(|| "the pull subscription ended".to_owned())?;
            if let Some(delivery) = self.take(message)? {
                return Ok(delivery);
            }
        }
    }

    /// The next delivery if one is here already.
    pub(crate) fn ready(&mut self) -> Option<Result<Message, String>> {
        // Dropped unfinished, `next` loses nothing: a message is taken only once
        // received, and a pull counts only once sent.
        self.next().now_or_never()
    }

    /// A delivery, or what a status message changes (`None`).
    fn take(&mut self, message: Message) -> Result<Option<Message>, String> {
        self.heard += 1;
        if message.reply.as_deref().is_some_and(|r| r.starts_with("$JS.ACK.")) {
            self.pending_messages = self.pending_messages.saturating_sub(1);
            self.pending_bytes = self.pending_bytes.saturating_sub(message.length);
            return Ok(Some(message));
        }
        let description = message.description.as_deref().unwrap_or_default();
        // What the pull the status ends had left (all of it, when not said).
        let left = |name: &str, all: usize| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .and_then(|v| v.as_str().parse().ok())
                .unwrap_or(all)
        };
        match message.status {
            Some(StatusCode::IDLE_HEARTBEAT) => Ok(None),
            // The server ends a pull whose bytes left are fewer than the next
            // message's: a pull that ends so having delivered something ended as
            // usual (asked for again below). One that delivered nothing would end
            // every pull again: the message is larger than a whole pull, said so.
            Some(status)
                if description.starts_with("Message Size Exceeds MaxBytes")
                    && left("Nats-Pending-Bytes", self.max_bytes) >= self.max_bytes =>
            {
                Err(format!(
                    "the consumer ended the pull: {status} {description} (the next message is larger than the \
                 consumer's max_bytes per pull allows: raise it, or delete the consumer and opsflow makes its own)"
                ))
            }
            Some(StatusCode::TIMEOUT | StatusCode::REQUEST_TERMINATED)
                if !(description == "Consumer Deleted"
                    || description == "Consumer is push based"
                    || description.starts_with("Exceeded MaxRequest")) =>
            {
                // A pull ended; what it had left is asked for again.
                self.pending_messages = self
                    .pending_messages
                    .saturating_sub(left("Nats-Pending-Messages", self.batch));
                self.pending_bytes = self
                    .pending_bytes
                    .saturating_sub(left("Nats-Pending-Bytes", self.max_bytes));
                Ok(None)
            }
            Some(StatusCode::NO_RESPONDERS) => {
                Err("no JetStream answered the pull request (is JetStream enabled, and the stream there?)".into())
            }
            Some(status) => Err(format!("the consumer ended the pull: {status} {description}")),
            None => Err(format!(
                "a message on the pull inbox that is no delivery (subject {}, no $JS.ACK reply subject)",
                message.subject
            )),
        }
    }
}

/// How long a pull lives: [`EXPIRES`], or less when the consumer's `max_expires`
/// (zero for none) allows less (the server refuses a longer pull).
pub(crate) fn expires_within(max_expires: Duration) -> Duration {
    if max_expires.is_zero() {
        EXPIRES
    } else {
        EXPIRES.min(max_expires)
    }
}

/// What a delivery's `$JS.ACK` reply subject says (ADR-15): the original format
/// `<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`,
/// or with `<domain>.<account hash>.` before and tokens after, read as the client's
/// `Message::info` reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivery<'a> {
    pub stream: &'a str,
    /// How many times the message was delivered, this one included.
    pub deliveries: u64,
    pub stream_sequence: u64,
    pub consumer_sequence: u64,
    /// When the stream stored the message, Unix nanoseconds.
    pub stored: i128,
}

impl<'a> Delivery<'a> {
    pub(crate) fn of(reply: &'a str) -> Option<Delivery<'a>> {
        let tokens = reply.strip_prefix("$JS.ACK.")?;
        let mut all = [""; 9];
        let mut count = 0;
        for (slot, token) in all.iter_mut().zip(tokens.split('.')) {
            *slot = token;
            count += 1;
        }
        let at = match count {
            9 => &all[2..],
            7 | 8 => &all[..],
            _ => return None,
        };
        Some(Delivery {
            stream: at[0],
            deliveries: at[2].parse().ok()?,
            stream_sequence: at[3].parse().ok()?,
            consumer_sequence: at[4].parse().ok()?,
            stored: at[5].parse().ok()?,
        })
    }
}

/// The delivery of `batch` whose `AckPolicy::All` acknowledgement covers all of it:
/// the one of the highest stream sequence. nats-server takes such an
/// acknowledgement as "every pending message up to this stream sequence", so the
/// batch's last delivery would not do when it is a redelivery of an older message
/// (after `ack_wait`, or of what an earlier session was given): the newer ones
/// delivered before it would stay pending until `ack_wait` and come again. Those of
/// lower stream sequences not in the batch are recorded already (earlier batches,
/// or recovered at the session's start), as the first delivery of a message always
/// comes after those of lower sequences. `None` for an empty batch; a delivery
/// without acknowledgement details counts as sequence 0.
pub(crate) fn covering(batch: &[Message]) -> Option<&Message> {
    let sequence = |m: &Message| {
        m.reply
            .as_deref()
            .and_then(Delivery::of)
            .map_or(0, |d| d.stream_sequence)
    };
    // The last of equals: the newest delivery of that message.
    batch.iter().max_by_key(|m| sequence(m))
}

/// The body of an acknowledgement.
const ACK: bytes::Bytes = bytes::Bytes::from_static(b"+ACK");

/// Acknowledges, for a consumer with `AckPolicy::All`, every message up to stream
/// sequence `stream_sequence` (its delivery `delivered` of the consumer) without a
/// delivery at hand: on the `$JS.ACK` subject such a delivery carries (ADR-15),
/// of which nats-server reads the delivery count and the two sequences.
pub(crate) async fn ack_through(
    client: &async_nats::Client,
    (stream, consumer): (&str, &str),
    stream_sequence: u64,
    delivered: u64,
) -> Result<(), String> {
    let subject = format!("$JS.ACK.{stream}.{consumer}.1.{stream_sequence}.{delivered}.0.0");
    client
        .publish(subject, ACK)
        .await
        .map_err(|e| format!("acknowledging through stream sequence {stream_sequence}: {e}"))
}

/// Acknowledges `message` (with `AckPolicy::All`, every delivery before it too).
pub(crate) async fn ack(client: &async_nats::Client, message: &Message) -> Result<(), String> {
    reply(client, message, ACK).await
}

/// Ends `message`'s deliveries (it was dead-lettered).
pub(crate) async fn terminate(client: &async_nats::Client, message: &Message) -> Result<(), String> {
    reply(client, message, bytes::Bytes::from_static(b"+TERM")).await
}

/// Asks for `message` again after `delay`.
pub(crate) async fn retry_after(client: &async_nats::Client, message: &Message, delay: Duration) -> Result<(), String> {
    let body = format!("-NAK {{\"delay\":{}}}", delay.as_nanos());
    reply(client, message, body.into()).await
}

async fn reply(client: &async_nats::Client, message: &Message, body: bytes::Bytes) -> Result<(), String> {
    let to = message
        .reply
        .clone()
        .ok_or_else(|| "a delivery without a reply subject cannot be acknowledged".to_owned())?;
    client
        .publish(to, body)
        .await
        .map_err(|e| format!("acknowledging a delivery: {e}"))
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream::{self, consumer, stream};

    use super::*;

    /// A stream over `t.>` and a pull consumer `c` of it, acknowledging each message.
    async fn consumer_of(
        nats: &opsflow_testkit::NatsServer,
    ) -> anyhow::Result<(async_nats::Client, jetstream::Context)> {
        consumer_with(nats, consumer::pull::Config::default()).await
    }

    /// [`consumer_of`], the consumer made with `config` otherwise.
    async fn consumer_with(
        nats: &opsflow_testkit::NatsServer,
        config: consumer::pull::Config,
    ) -> anyhow::Result<(async_nats::Client, jetstream::Context)> {
        let client = async_nats::connect(nats.url()).await?;
        let js = jetstream::new(client.clone());
        let stream = js
            .create_stream(stream::Config {
                name: "T".into(),
                subjects: vec!["t.>".into()],
                ..Default::default()
            })
            .await?;
        stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some("c".into()),
                ..config
            })
            .await?;
        Ok((client, js))
    }

    /// A pull of consumer `c` of `T`, four messages at a time.
    async fn pull_of(client: async_nats::Client, expires: Duration) -> anyhow::Result<Pull> {
        Pull::start(client, ("T", "c"), 4, 1 << 20, expires)
            .await
            .map_err(anyhow::Error::msg)
    }

    /// Consumer `c`'s (pending acknowledgements, acknowledged stream floor), once
    /// what `client` sent has reached the server and they are `expected`, or as
    /// they are after 10 s: the server applies acknowledgements after it has taken
    /// them, so an info request right after can see them pending (under load it
    /// did).
    async fn acknowledged(
        client: &async_nats::Client,
        js: &jetstream::Context,
        expected: (usize, u64),
    ) -> anyhow::Result<(usize, u64)> {
        client.flush().await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = acknowledged_now(js).await?;
            if now == expected || std::time::Instant::now() > deadline {
                return Ok(now);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Consumer `c`'s (pending acknowledgements, acknowledged stream floor) now.
    async fn acknowledged_now(js: &jetstream::Context) -> anyhow::Result<(usize, u64)> {
        let mut consumer: consumer::PullConsumer = js
            .get_stream("T")
            .await?
            .get_consumer("c")
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let info = consumer.info().await?;
        Ok((info.num_ack_pending, info.ack_floor.stream_sequence))
    }

    async fn next(pull: &mut Pull) -> anyhow::Result<Message> {
        tokio::time::timeout(Duration::from_secs(10), pull.next())
            .await?
            .map_err(anyhow::Error::msg)
    }

    #[tokio::test]
    async fn pulls_again_after_a_pull_expires_and_acknowledges() -> anyhow::Result<()> {
        let nats = opsflow_testkit::NatsServer::start()?;
        let (client, js) = consumer_of(&nats).await?;
        let mut pull = pull_of(client.clone(), Duration::from_secs(1)).await?;
        // The first pull expires unanswered (the server says so with a 408 and
        // what it had left); the messages published after it still come.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        for n in 0..10 {
            js.publish(format!("t.{n}"), n.to_string().into()).await?.await?;
        }
        for n in 0..10u64 {
            let message = next(&mut pull).await?;
            assert_eq!(message.payload, n.to_string());
            let delivery = Delivery::of(message.reply.as_deref().unwrap_or_default());
            assert_eq!(
                delivery.map(|d| (d.stream, d.stream_sequence, d.consumer_sequence)),
                Some(("T", n + 1, n + 1))
            );
            ack(&client, &message).await.map_err(anyhow::Error::msg)?;
        }
        assert!(pull.ready().is_none(), "nothing more");
        assert_eq!(acknowledged(&client, &js, (0, 10)).await?, (0, 10));
        Ok(())
    }

    #[tokio::test]
    async fn the_acknowledgement_of_a_batch_covers_it_when_it_ends_with_redeliveries() -> anyhow::Result<()> {
        let nats = opsflow_testkit::NatsServer::start()?;
        let ack_wait = Duration::from_secs(3);
        let (client, js) = consumer_with(
            &nats,
            consumer::pull::Config {
                ack_policy: consumer::AckPolicy::All,
                ack_wait,
                ..Default::default()
            },
        )
        .await?;
        let mut pull = pull_of(client.clone(), Duration::from_secs(30)).await?;
        let sequences = |m: &Message| {
            Delivery::of(m.reply.as_deref().unwrap_or_default()).map(|d| (d.stream_sequence, d.consumer_sequence))
        };
        // Three given and never acknowledged (a session that died), two more a
        // while later, then the three again once their `ack_wait` is over: one
        // batch of five, acknowledged well before the two's `ack_wait` is over.
        let mut batch = Vec::new();
        for n in 1..=5 {
            if n == 4 {
                tokio::time::sleep(ack_wait - Duration::from_secs(1)).await;
            }
            js.publish(format!("t.{n}"), n.to_string().into()).await?.await?;
            let message = next(&mut pull).await?;
            if n > 3 {
                batch.push(message);
            }
        }
        for _ in 0..3 {
            batch.push(next(&mut pull).await?);
        }
        let order: Vec<_> = batch.iter().map(sequences).collect();
        assert_eq!(
            order,
            [(4, 4), (5, 5), (1, 6), (2, 7), (3, 8)].map(Some),
            "stream and consumer sequences"
        );
        let covering = covering(&batch).ok_or_else(|| anyhow::anyhow!("no delivery"))?;
        assert_eq!(sequences(covering), Some((5, 5)));
        ack(&client, covering).await.map_err(anyhow::Error::msg)?;
        // A dead letter among them is terminated after (before, the server would
        // take its termination for an acknowledgement through delivery 8 and
        // ignore the covering one).
        terminate(&client, &batch[4]).await.map_err(anyhow::Error::msg)?;
        // The batch's last delivery, (3, 8), would leave 4 and 5 pending.
        assert_eq!(acknowledged(&client, &js, (0, 5)).await?, (0, 5));
        // Nor do they come again once it is.
        tokio::time::sleep(ack_wait).await;
        let again = pull.ready().map(|m| m.map(|m| sequences(&m)));
        assert!(again.is_none(), "{again:?}");
        Ok(())
    }

    #[test]
    fn the_covering_delivery_is_the_newest_of_the_highest_stream_sequence() {
        let delivery = |reply: Option<&str>| Message {
            subject: "t.x".into(),
            reply: reply.map(Into::into),
            payload: bytes::Bytes::new(),
            headers: None,
            status: None,
            description: None,
            length: 0,
        };
        let batch = [
            delivery(Some("$JS.ACK.T.c.1.4.4.1700000000000000000.9")),
            delivery(Some("$JS.ACK.T.c.1.5.5.1700000000000000000.8")),
            delivery(Some("$JS.ACK.T.c.2.1.6.1700000000000000000.7")),
            delivery(Some("$JS.ACK.T.c.2.5.7.1700000000000000000.6")),
            delivery(None),
        ];
        let reply = |m: Option<&Message>| m.and_then(|m| m.reply.as_deref().map(str::to_owned));
        assert_eq!(
            reply(covering(&batch)).as_deref(),
            Some("$JS.ACK.T.c.2.5.7.1700000000000000000.6")
        );
        assert_eq!(reply(covering(&batch[..1])).as_deref(), batch[0].reply.as_deref());
        assert!(covering(&[]).is_none());
    }

    /// A pull whose bytes left are fewer than the next message's ends with 409
    /// "Message Size Exceeds MaxBytes" after delivering what fitted: it is asked
    /// again, not taken for a message larger than a whole pull (which ended ingest
    /// sessions again and again, saying so in /readyz).
    #[tokio::test]
    async fn a_pull_ended_by_its_byte_budget_is_asked_again() -> anyhow::Result<()> {
        let nats = opsflow_testkit::NatsServer::start()?;
        let (client, js) = consumer_of(&nats).await?;
        for n in 0..10 {
            js.publish(format!("t.{n}"), vec![b'x'; 300].into()).await?.await?;
        }
        let mut pull = Pull::start(client, ("T", "c"), 100, 1_024, Duration::from_secs(30))
            .await
            .map_err(anyhow::Error::msg)?;
        for _ in 0..10 {
            next(&mut pull).await?;
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_deleted_consumer_ends_the_pull() -> anyhow::Result<()> {
        let nats = opsflow_testkit::NatsServer::start()?;
        let (client, js) = consumer_of(&nats).await?;
        let mut pull = pull_of(client.clone(), Duration::from_secs(30)).await?;
        // The pull request at the server before the consumer goes (else nobody
        // answers it: once in a run of the whole suite, "no responders").
        client.flush().await?;
        js.get_stream("T").await?.delete_consumer("c").await?;
        let ended = tokio::time::timeout(Duration::from_secs(10), pull.next()).await?;
        let error = ended.err().unwrap_or_default();
        assert!(error.contains("Consumer Deleted"), "{error}");
        // For good: asked again, it says so at once (it does not wait for a pull
        // that will never be answered).
        let again = tokio::time::timeout(Duration::from_secs(1), pull.next()).await?;
        assert_eq!(again.err(), Some(error.clone()));
        assert_eq!(pull.ready().and_then(Result::err), Some(error));
        Ok(())
    }

    #[tokio::test]
    async fn pulls_live_within_the_consumers_max_expires() -> anyhow::Result<()> {
        assert_eq!(expires_within(Duration::ZERO), EXPIRES);
        assert_eq!(expires_within(Duration::from_secs(2)), Duration::from_secs(2));
        assert_eq!(expires_within(Duration::from_secs(600)), EXPIRES);
        let nats = opsflow_testkit::NatsServer::start()?;
        let config = consumer::pull::Config {
            max_expires: Duration::from_secs(1),
            ..Default::default()
        };
        let (client, js) = consumer_with(&nats, config).await?;
        let mut pull = pull_of(client, expires_within(Duration::from_secs(1))).await?;
        // Past one expiry, then a message: the server took the pulls (a longer one
        // it refuses with 409 "Exceeded MaxRequestExpires").
        tokio::time::sleep(Duration::from_millis(1500)).await;
        js.publish("t.x", "x".into()).await?.await?;
        assert_eq!(next(&mut pull).await?.payload, "x");
        Ok(())
    }

    #[tokio::test]
    async fn a_pull_neither_delivering_nor_ending_is_asked_again() -> anyhow::Result<()> {
        let nats = opsflow_testkit::NatsServer::start()?;
        let (client, _js) = consumer_of(&nats).await?;
        let mut pull = pull_of(client, Duration::from_secs(60)).await?;
        assert_eq!(pull.pending_messages, 4);
        // As if the server had dropped it silently: nothing came, not even a
        // heartbeat, for two heartbeats.
        assert_eq!(pull.lost_after(), HEARTBEAT * 2 + LOST_MARGIN);
        let long_ago = Instant::now()
            .checked_sub(pull.lost_after() + Duration::from_secs(1))
            .ok_or_else(|| anyhow::anyhow!("clock too young"))?;
        pull.quiet_since = long_ago;
        pull.check();
        assert_eq!(pull.pending_messages, 0, "taken for lost");
        assert!(pull.ready().is_none());
        assert_eq!(pull.pending_messages, 4, "asked again");
        // Heard from lately: not lost.
        pull.heard += 1;
        pull.quiet_since = long_ago;
        pull.check();
        assert_eq!(pull.pending_messages, 4);
        Ok(())
    }

    #[tokio::test]
    async fn a_waiting_pull_is_kept_alive_by_heartbeats() -> anyhow::Result<()> {
        assert_eq!(heartbeat_for(EXPIRES), HEARTBEAT);
        assert_eq!(heartbeat_for(Duration::from_secs(2)), Duration::from_millis(500));
        let nats = opsflow_testkit::NatsServer::start()?;
        let (client, js) = consumer_of(&nats).await?;
        // Heartbeats every 500 ms; nothing to deliver for 2.5 s.
        let mut pull = pull_of(client, Duration::from_secs(2)).await?;
        let quiet_until = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < quiet_until {
            // The server took the request (one with too long a heartbeat it
            // refuses, which would end the pull here) and says it is waiting.
            assert!(pull.ready().transpose().map_err(anyhow::Error::msg)?.is_none());
            pull.check();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(pull.heard >= 2, "heartbeats heard: {}", pull.heard);
        assert!(pull.quiet_since.elapsed() < pull.lost_after(), "not taken for lost");
        js.publish("t.x", "x".into()).await?.await?;
        assert_eq!(next(&mut pull).await?.payload, "x");
        Ok(())
    }

    #[test]
    fn deliveries_are_read_from_either_ack_subject_format() {
        let of = |reply| Delivery::of(reply).map(|d| (d.stream, d.stream_sequence, d.consumer_sequence, d.stored));
        // The original format, and ADR-15's with a domain (`_` for none), an account
        // hash and a trailing token.
        assert_eq!(
            of("$JS.ACK.OPS_EVENTS.opsflow-ingest.1.1042.77.1795409357748934871.3"),
            Some(("OPS_EVENTS", 1042, 77, 1_795_409_357_748_934_871))
        );
        assert_eq!(
            of("$JS.ACK._.ACCHASH.OPS_EVENTS.opsflow-ingest.2.1043.78.1795409357748934872.3.tok"),
            Some(("OPS_EVENTS", 1043, 78, 1_795_409_357_748_934_872))
        );
        assert_eq!(
            of("$JS.ACK.hub.ACCHASH.OPS_EVENTS.opsflow-ingest.2.1044.79.1795409357748934873.3"),
            Some(("OPS_EVENTS", 1044, 79, 1_795_409_357_748_934_873))
        );
        // Tokens past those known are ignored, as the client does.
        assert_eq!(of("$JS.ACK._.H.S.C.1.2.3.4.5.6.7.8.9"), Some(("S", 2, 3, 4)));
        for bad in [
            "",
            "_INBOX.x",
            "$JS.ACK.S.C.1.2",
            "$JS.ACK.S.C.1.2.x.4.5",
            "$JS.ACK.S.C.1.2.3.4",
        ] {
            assert_eq!(of(bad), None, "{bad}");
        }
    }
}
