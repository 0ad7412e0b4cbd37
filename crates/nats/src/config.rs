//! The `[nats]` section of the opsflow config. Present means NATS is used.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::NatsError;

/// How opsflow connects to NATS and what it does there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URLs, e.g. `["nats://127.0.0.1:4222"]`.
    pub urls: Vec<String>,
    /// Connection name shown by the server.
    pub name: String,
    /// A `.creds` file (JWT + nkey seed).
    pub credentials_file: Option<PathBuf>,
    /// A file holding an nkey seed (`SU...`).
    pub nkey_seed_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// How often the client pings the server. A connection that has not answered
    /// for three of these (30 s by default) is taken for lost and made again (a
    /// frozen server, a connection the network dropped without a word), and
    /// `/readyz` says so.
    pub ping_interval_secs: u64,
    pub tls: TlsConfig,
    pub ingest: IngestConfig,
    pub dead_letters: DeadLetterConfig,
    pub request_reply: RequestReplyConfig,
    pub outbound: OutboundConfig,
}

/// TLS to the NATS servers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub required: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// JetStream ingest: the stream producers publish to and opsflow's durable consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub enabled: bool,
    /// JetStream stream name (created, or adopted when its subjects and storage fit).
    pub stream: String,
    pub subjects: Vec<String>,
    /// `limits`, `interest` or `workqueue`.
    pub retention: String,
    pub replicas: usize,
    /// Durable pull consumer name.
    pub consumer: String,
    /// Messages fetched and appended per batch at most.
    pub batch: usize,
    /// Seconds JetStream waits for an ack before redelivering.
    pub ack_wait_secs: u64,
}

/// Where bad messages go: `<subject_prefix>.<reason>`, captured by a JetStream stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    pub subject_prefix: String,
    /// JetStream stream that keeps dead letters (created when missing).
    pub stream: String,
}

/// Request/reply appends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestReplyConfig {
    pub enabled: bool,
    pub subject: String,
    /// Queue group of the request subscription. One node serves a subject: a
    /// second node's request/reply on it does not start (see `claim`).
    pub queue_group: String,
}

/// Publishing committed events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    pub enabled: bool,
    /// Events go to `<subject_prefix>.<type>`.
    pub subject_prefix: String,
    /// Name of the checkpoint kept in the log.
    pub checkpoint: String,
    /// JetStream publishes awaiting their ack at most.
    pub max_in_flight: usize,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            urls: vec!["nats://127.0.0.1:4222".into()],
            name: "opsflow".into(),
            credentials_file: None,
            nkey_seed_file: None,
            user: None,
            password: None,
            token: None,
            ping_interval_secs: 10,
            tls: TlsConfig::default(),
            ingest: IngestConfig::default(),
            dead_letters: DeadLetterConfig::default(),
            request_reply: RequestReplyConfig::default(),
            outbound: OutboundConfig::default(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            enabled: true,
            stream: "OPS_EVENTS".into(),
            subjects: vec!["ops.events.>".into()],
            retention: "limits".into(),
            replicas: 1,
            consumer: "opsflow-ingest".into(),
            batch: 1000,
            ack_wait_secs: 30,
        }
    }
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            subject_prefix: "opsflow.dlq".into(),
            stream: "OPSFLOW_DLQ".into(),
        }
    }
}

impl Default for RequestReplyConfig {
    fn default() -> Self {
        RequestReplyConfig {
            enabled: true,
            subject: "opsflow.api.append".into(),
            queue_group: "opsflow".into(),
        }
    }
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            enabled: true,
            subject_prefix: "opsflow.log".into(),
            checkpoint: "nats-outbound".into(),
            max_in_flight: 512,
        }
    }
}

impl NatsConfig {
    /// A config for one server URL with every default.
    pub fn url(url: impl Into<String>) -> Self {
        NatsConfig {
            urls: vec![url.into()],
            ..NatsConfig::default()
        }
    }

    /// Server URLs written in one string, comma-separated as NATS clients take them
    /// (`nats://n1:4222,nats://n2:4222`); blanks around each are dropped.
    pub fn split_urls(urls: &str) -> Vec<String> {
        urls.split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect()
    }

    /// The server URLs as logs, `/readyz` and the start banner show them: without
    /// a `user:password@` (or token) written into one.
    pub fn display_urls(&self) -> String {
        self.urls
            .iter()
            .map(|u| without_credentials(u))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks values that parse but make no sense; errors name the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((format!("nats.{k}"), m));
        if self.urls.is_empty() {
            return err("urls", "needs at least one server URL".into());
        }
        match crate::connection::check_urls(self) {
            Ok(()) => {}
            Err(NatsError::Config { key, message }) => return Err((key, message)),
            Err(other) => return err("urls", other.to_string()),
        }
        if !(1..=3600).contains(&self.ping_interval_secs) {
            return err(
                "ping_interval_secs",
                format!("is {}, expected 1 to 3600", self.ping_interval_secs),
            );
        }
        if !["limits", "interest", "workqueue"].contains(&self.ingest.retention.as_str()) {
            return err(
                "ingest.retention",
                format!("{:?} is not one of limits, interest, workqueue", self.ingest.retention),
            );
        }
        if self.ingest.batch == 0 || self.ingest.batch > 10_000 {
            return err("ingest.batch", format!("is {}, expected 1 to 10000", self.ingest.batch));
        }
        if self.ingest.subjects.is_empty() {
            return err("ingest.subjects", "needs at least one subject".into());
        }
        if self.ingest.replicas == 0 {
            return err("ingest.replicas", "must be at least 1".into());
        }
        for (key, name) in [
            ("ingest.stream", &self.ingest.stream),
            ("ingest.consumer", &self.ingest.consumer),
            ("dead_letters.stream", &self.dead_letters.stream),
        ] {
            if let Some(problem) = crate::subjects::name_problem(name) {
                return err(key, problem);
            }
        }
        for (i, subject) in self.ingest.subjects.iter().enumerate() {
            if let Some(problem) = crate::subjects::subject_problem(subject, true) {
                return err(&format!("ingest.subjects[{i}]"), problem);
            }
        }
        // The request subject is subscribed to (a pattern will do); the prefixes
        // are published to.
        for (key, subject, wildcards) in [
            ("request_reply.subject", &self.request_reply.subject, true),
            ("dead_letters.subject_prefix", &self.dead_letters.subject_prefix, false),
            ("outbound.subject_prefix", &self.outbound.subject_prefix, false),
        ] {
            if let Some(problem) = crate::subjects::subject_problem(subject, wildcards) {
                return err(key, problem);
            }
        }
        if let Some(c) = (self.request_reply.queue_group.chars()).find(|c| c.is_whitespace() || c.is_control()) {
            return err(
                "request_reply.queue_group",
                format!(
                    "{:?} holds {c:?}: a queue group has no spaces",
                    self.request_reply.queue_group
                ),
            );
        }
        if self.request_reply.queue_group.is_empty() {
            return err("request_reply.queue_group", "is empty".into());
        }
        if self.outbound.checkpoint.is_empty() {
            return err("outbound.checkpoint", "is empty".into());
        }
        if self.token.is_some() && self.user.is_some() {
            return err(
                "token",
                "a token and a user/password are two ways to authenticate: give one".into(),
            );
        }
        if self.outbound.max_in_flight == 0 {
            return err("outbound.max_in_flight", "must be at least 1".into());
        }
        // What opsflow publishes must not come back to it as ingest: a dead letter
        // ingested again is dead-lettered again, without end.
        if self.ingest.enabled {
            for (key, subject, what) in self.own_subjects() {
                if let Some(ingested) = self
                    .ingest
                    .subjects
                    .iter()
                    .find(|s| crate::subjects::overlap(s, &subject))
                {
                    return err(
                        key,
                        format!(
                            "{subject} overlaps the ingest subject {ingested}: opsflow would ingest its own {what}; \
                             choose subjects apart"
                        ),
                    );
                }
            }
        }
        let dead_letters = format!("{}.>", self.dead_letters.subject_prefix);
        let outbound = format!("{}.>", self.outbound.subject_prefix);
        if self.outbound.enabled && crate::subjects::overlap(&dead_letters, &outbound) {
            return err(
                "outbound.subject_prefix",
                format!("{outbound} overlaps the dead letters' {dead_letters}; choose subjects apart"),
            );
        }
        if self.request_reply.enabled {
            let requests = &self.request_reply.subject;
            for (key, published, enabled) in [
                ("dead_letters.subject_prefix", &dead_letters, true),
                ("outbound.subject_prefix", &outbound, self.outbound.enabled),
            ] {
                if enabled && crate::subjects::overlap(requests, published) {
                    return err(
                        key,
                        format!("{published} overlaps the request subject {requests}; choose subjects apart"),
                    );
                }
            }
        }
        if self.user.is_some() != self.password.is_some() {
            return err("password", "user and password go together".into());
        }
        Ok(())
    }

    /// The subjects opsflow itself publishes or answers on: (config key, subject,
    /// what goes there).
    pub(crate) fn own_subjects(&self) -> Vec<(&'static str, String, &'static str)> {
        let mut own = vec![(
            "dead_letters.subject_prefix",
            format!("{}.>", self.dead_letters.subject_prefix),
            "dead letters",
        )];
        if self.outbound.enabled {
            own.push((
                "outbound.subject_prefix",
                format!("{}.>", self.outbound.subject_prefix),
                "committed events",
            ));
        }
        if self.request_reply.enabled {
            own.push((
                "request_reply.subject",
                self.request_reply.subject.clone(),
                "append requests (the stream would answer them first)",
            ));
        }
        own
    }

    pub(crate) fn ack_wait(&self) -> Duration {
        Duration::from_secs(self.ingest.ack_wait_secs.max(1))
    }
}

/// `url` without the user information of its authority (`nats://u:p@host:4222` is
/// `nats://host:4222`). A URL that does not parse (a password holding a `/` not
/// percent-encoded, say) is cut at its last `@`, so that no part of a password
/// shows.
pub(crate) fn without_credentials(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = match url.parse::<async_nats::ServerAddr>() {
        Ok(_) => rest.find('/').map_or(rest, |end| &rest[..end]),
        Err(_) => rest,
    };
    match authority.rfind('@') {
        Some(at) if scheme.is_empty() => rest[at + 1..].to_owned(),
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(without_credentials("nats://u:s3cret@nats:4222"), "nats://nats:4222");
        assert_eq!(
            without_credentials("nats://token@127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(without_credentials("u:p@host:4222"), "host:4222");
        assert_eq!(without_credentials("tls://host:4222/x@y"), "tls://host:4222/x@y");
        // Not a URL: a password with a `/` not percent-encoded.
        assert_eq!(without_credentials("nats://u:p/ss@host:4222"), "nats://host:4222");
        assert_eq!(without_credentials("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }

    #[test]
    fn urls_in_one_string_are_comma_separated() {
        assert_eq!(NatsConfig::split_urls("nats://a:4222"), ["nats://a:4222"]);
        assert_eq!(
            NatsConfig::split_urls("nats://a:4222, nats://b:4222,,"),
            ["nats://a:4222", "nats://b:4222"]
        );
        assert!(NatsConfig::split_urls(" , ").is_empty());
    }

    #[test]
    fn pings_are_at_least_a_second_apart() {
        let config = NatsConfig {
            ping_interval_secs: 0,
            ..NatsConfig::default()
        };
        assert_eq!(
            config.validate(),
            Err(("nats.ping_interval_secs".into(), "is 0, expected 1 to 3600".into()))
        );
    }

    #[test]
    fn opsflow_never_ingests_what_it_publishes() {
        let mut config = NatsConfig::default();
        assert_eq!(config.validate(), Ok(()));
        config.dead_letters.subject_prefix = "ops.events.dlq".into();
        let (key, message) = config.validate().unwrap_err();
        assert_eq!(key, "nats.dead_letters.subject_prefix");
        assert!(
            message.contains("ops.events.dlq.> overlaps the ingest subject ops.events.>"),
            "{message}"
        );

        let mut config = NatsConfig::default();
        config.ingest.subjects = vec!["ops.events.>".into(), "opsflow.>".into()];
        assert_eq!(config.validate().unwrap_err().0, "nats.dead_letters.subject_prefix");
        config.ingest.subjects = vec!["ops.events.>".into(), "opsflow.log.>".into()];
        assert_eq!(config.validate().unwrap_err().0, "nats.outbound.subject_prefix");
        // Without outbound, nothing is published there.
        config.outbound.enabled = false;
        assert_eq!(config.validate(), Ok(()));

        let mut config = NatsConfig::default();
        config.request_reply.subject = "ops.events.append".into();
        assert_eq!(config.validate().unwrap_err().0, "nats.request_reply.subject");
        let mut config = NatsConfig::default();
        config.outbound.subject_prefix = "opsflow.dlq".into();
        assert_eq!(config.validate().unwrap_err().0, "nats.outbound.subject_prefix");
        // Outbound of a type `append` would land on the request subject.
        let mut config = NatsConfig::default();
        config.outbound.subject_prefix = "opsflow.api".into();
        let (key, message) = config.validate().unwrap_err();
        assert_eq!(key, "nats.outbound.subject_prefix");
        assert!(
            message.contains("overlaps the request subject opsflow.api.append"),
            "{message}"
        );
    }

    /// Names and subjects nats-server would refuse, or take for others, are refused
    /// at start naming the key (they were taken, and failed for ever with messages
    /// blaming something else).
    #[test]
    fn names_and_subjects_are_checked_at_start() {
        let refused = |change: fn(&mut NatsConfig)| {
            let mut config = NatsConfig::default();
            change(&mut config);
            config.validate().unwrap_err()
        };
        let (key, message) = refused(|c| c.ingest.stream = "OPS.EVENTS".into());
        assert_eq!(key, "nats.ingest.stream");
        assert!(message.contains("holds '.'"), "{message}");
        assert_eq!(refused(|c| c.ingest.stream = String::new()).0, "nats.ingest.stream");
        assert_eq!(refused(|c| c.ingest.consumer = "a.b".into()).0, "nats.ingest.consumer");
        assert_eq!(
            refused(|c| c.dead_letters.stream = "a b".into()).0,
            "nats.dead_letters.stream"
        );
        let (key, message) = refused(|c| c.ingest.subjects = vec!["ops.events.>".into(), "ops events.>".into()]);
        assert_eq!(key, "nats.ingest.subjects[1]");
        assert!(message.contains("holds ' '"), "{message}");
        let (key, message) = refused(|c| c.outbound.subject_prefix = String::new());
        assert_eq!(key, "nats.outbound.subject_prefix");
        assert_eq!(message, "is empty");
        assert_eq!(
            refused(|c| c.outbound.subject_prefix = "opsflow.*".into()).0,
            "nats.outbound.subject_prefix"
        );
        assert_eq!(
            refused(|c| c.dead_letters.subject_prefix = "dlq.".into()).0,
            "nats.dead_letters.subject_prefix"
        );
        assert_eq!(
            refused(|c| c.request_reply.subject = "a..b".into()).0,
            "nats.request_reply.subject"
        );
        assert_eq!(
            refused(|c| c.request_reply.queue_group = "a b".into()).0,
            "nats.request_reply.queue_group"
        );
        assert_eq!(
            refused(|c| c.outbound.checkpoint = String::new()).0,
            "nats.outbound.checkpoint"
        );
        let (key, _) = refused(|c| {
            c.token = Some("t".into());
            c.user = Some("u".into());
            c.password = Some("p".into());
        });
        assert_eq!(key, "nats.token");
        // A pattern for the request subject is a subscription like any other.
        let mut config = NatsConfig::default();
        config.request_reply.subject = "opsflow.api.append.*".into();
        assert_eq!(config.validate(), Ok(()));
    }
}
