//! The client subcommands: gRPC calls to a running server.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use opsflow_proto::v1::audit_client::AuditClient;
use opsflow_proto::v1::event_log_client::EventLogClient;
use opsflow_proto::v1::{self, expected_version::Kind, subscribe_response::Message};
use serde_json::json;
use tonic::transport::Channel;

use crate::output::{EVENT_HEADER, print_event, print_pairs, rfc3339};
use crate::{ClientOpts, OutputFormat};

pub async fn channel(server: &str) -> anyhow::Result<Channel> {
    // `host:port` alone means plain HTTP/2 there, as `opsflow dev` serves it.
    let server = if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    };
    let endpoint = Channel::from_shared(server.clone())
        .with_context(|| format!("--server {server:?} is not a URL like http://127.0.0.1:7070"))?;
    endpoint.connect().await.with_context(|| {
        format!("cannot connect to {server}: is opsflow running there? (start one with `opsflow dev`, or set --server / OPSFLOW_SERVER)")
    })
}

/// A request the server refused: its message and gRPC code, and the structured
/// detail it attached (`opsflow-error`: field, limit, expected and actual, ...).
#[derive(Debug, thiserror::Error)]
#[error("{message} ({code:?})")]
pub struct Refused {
    pub message: String,
    pub code: tonic::Code,
    pub detail: Option<serde_json::Value>,
}

pub fn status(s: tonic::Status) -> anyhow::Error {
    let detail = s
        .metadata()
        .get("opsflow-error")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str(v).ok());
    // Not the server's answer but the connection's end (the server died, or the
    // network went): tonic words it as the HTTP/2 layer saw it.
    let lowered = s.message().to_lowercase();
    let transport = detail.is_none()
        && matches!(
            s.code(),
            tonic::Code::Unknown | tonic::Code::Unavailable | tonic::Code::Internal
        )
        && [
            "h2 protocol error",
            "transport error",
            "connection reset",
            "broken pipe",
        ]
        .iter()
        .any(|t| lowered.contains(t));
    let message = if transport {
        format!(
            "lost the connection to the server (is it still running?): {}",
            s.message()
        )
    } else {
        s.message().to_owned()
    };
    Refused {
        message,
        code: s.code(),
        detail,
    }
    .into()
}

/// An error as `--output json` prints it (to standard error): the server's
/// detail when it sent one, else the code and message.
pub fn error_json(e: &anyhow::Error) -> serde_json::Value {
    match e.downcast_ref::<Refused>() {
        Some(Refused {
            detail: Some(detail), ..
        }) => json!({ "error": detail }),
        Some(refused) => json!({ "error": { "code": format!("{:?}", refused.code), "message": refused.message } }),
        None => json!({ "error": { "message": format!("{e:#}") } }),
    }
}

#[derive(Args)]
pub struct AppendArgs {
    /// Stream, e.g. order/PO-1001.
    pub stream: String,
    /// Event type, e.g. order.placed.
    #[arg(value_name = "TYPE")]
    pub event_type: String,
    /// Event data (JSON unless --content-type says otherwise); '-' reads standard input.
    pub data: Option<String>,
    /// CloudEvents id (default: a generated ULID).
    #[arg(long, default_value = "")]
    pub id: String,
    /// CloudEvents source.
    #[arg(long, default_value = "opsflow:cli")]
    pub source: String,
    /// Expected version: any, no_stream, stream_exists, or a number.
    #[arg(long, default_value = "any")]
    pub expected: opsflow_log::ExpectedVersion,
    #[arg(long, default_value = "application/json")]
    pub content_type: String,
    /// When it happened (RFC 3339; default: now).
    #[arg(long)]
    pub time: Option<String>,
    #[arg(long, default_value = "")]
    pub correlation_id: String,
    /// Metadata entries KEY=VALUE (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub async fn append(a: AppendArgs) -> anyhow::Result<ExitCode> {
    let data = match a.data.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("reading standard input")?;
            s
        }
        Some(d) => d.to_owned(),
        None => String::new(),
    };
    if a.content_type.contains("json") && !data.is_empty() {
        serde_json::from_str::<serde_json::Value>(&data)
            .with_context(|| format!("DATA is not valid JSON (use --content-type for other data): {data:?}"))?;
    }
    let time = a
        .time
        .as_deref()
        .map(|t| {
            t.parse::<jiff::Timestamp>()
                .map(|ts| prost_types::Timestamp {
                    seconds: ts.as_second(),
                    nanos: ts.subsec_nanosecond(),
                })
                .with_context(|| format!("--time {t:?} is not an RFC 3339 time like 2026-11-21T10:00:00Z"))
        })
        .transpose()?;
    let mut metadata = std::collections::HashMap::new();
    for m in &a.metadata {
        let Some((k, v)) = m.split_once('=') else {
            bail!("--meta {m:?} is not KEY=VALUE")
        };
        metadata.insert(k.to_owned(), v.to_owned());
    }
    let kind = match a.expected {
        opsflow_log::ExpectedVersion::Any => Kind::Any(v1::expected_version::Any {}),
        opsflow_log::ExpectedVersion::NoStream => Kind::NoStream(v1::expected_version::NoStream {}),
        opsflow_log::ExpectedVersion::StreamExists => Kind::StreamExists(v1::expected_version::StreamExists {}),
        opsflow_log::ExpectedVersion::Exact(v) => Kind::Exact(v),
    };
    let request = v1::AppendRequest {
        stream: a.stream.clone(),
        expected: Some(v1::ExpectedVersion { kind: Some(kind) }),
        events: vec![v1::ProposedEvent {
            id: a.id,
            source: a.source,
            r#type: a.event_type,
            time,
            content_type: a.content_type,
            data: data.into_bytes().into(),
            correlation_id: a.correlation_id,
            causation_id: String::new(),
            metadata,
        }],
    };
    let mut client = EventLogClient::new(channel(&a.opts.server).await?);
    let r = client.append(request).await.map_err(status)?.into_inner();
    let json = json!({
        "stream": a.stream, "position": r.first_position, "stream_version": r.stream_version, "duplicate": r.duplicate,
    });
    match a.opts.output {
        OutputFormat::Json => crate::output::emit(format_args!("{json}")),
        OutputFormat::Table => crate::output::emit(format_args!(
            "{} position {} (stream {} version {})",
            if r.duplicate {
                "already recorded at"
            } else {
                "appended at"
            },
            r.first_position,
            a.stream,
            r.stream_version
        )),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ReadArgs {
    /// One stream (default: the whole log).
    pub stream: Option<String>,
    /// Start here (a position for the log, a version for a stream).
    #[arg(long)]
    pub from: Option<u64>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Newest first.
    #[arg(long)]
    pub backward: bool,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub async fn read(a: ReadArgs) -> anyhow::Result<ExitCode> {
    let mut client = EventLogClient::new(channel(&a.opts.server).await?);
    let direction = if a.backward {
        v1::Direction::Backward
    } else {
        v1::Direction::Forward
    };
    let request = v1::ReadRequest {
        stream: a.stream.clone().unwrap_or_default(),
        direction: direction as i32,
        from: a.from,
        limit: a.limit,
    };
    let mut stream = client.read(request).await.map_err(status)?.into_inner();
    if a.opts.output == OutputFormat::Table {
        crate::output::emit(format_args!("{EVENT_HEADER}"));
    }
    let mut printed = 0u64;
    while let Some(item) = stream.message().await.map_err(status)? {
        if let Some(e) = item.event {
            print_event(&e, a.opts.output);
            printed += 1;
        }
    }
    // An empty table alone would not say why.
    if printed == 0 && a.opts.output == OutputFormat::Table {
        let way = if a.backward { "down" } else { "on" };
        match (&a.stream, a.from) {
            (Some(name), None) => eprintln!("(stream {name} has no events: no event was ever appended to it)"),
            (Some(name), Some(from)) => eprintln!("(stream {name} has no events from version {from} {way})"),
            (None, Some(from)) => eprintln!("(the log has no events from position {from} {way})"),
            (None, None) => eprintln!("(the log is empty)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct TailArgs {
    /// Catch up from this position first (default: only new events).
    #[arg(long)]
    pub from: Option<u64>,
    /// Only streams starting with this prefix (repeatable).
    #[arg(long = "stream-prefix")]
    pub stream_prefixes: Vec<String>,
    /// Only events of this type (repeatable).
    #[arg(long = "type")]
    pub types: Vec<String>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub async fn tail(a: TailArgs) -> anyhow::Result<ExitCode> {
    let mut client = EventLogClient::new(channel(&a.opts.server).await?);
    let request = v1::SubscribeRequest {
        from_position: a.from,
        from_end: a.from.is_none(),
        stream_prefixes: a.stream_prefixes,
        types: a.types,
    };
    let mut stream = client.subscribe(request).await.map_err(status)?.into_inner();
    if a.opts.output == OutputFormat::Table {
        crate::output::emit(format_args!("{EVENT_HEADER}"));
    }
    loop {
        let item = tokio::select! {
            item = stream.message() => item.map_err(status)?,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        match item.and_then(|m| m.message) {
            Some(Message::Event(e)) => print_event(&e, a.opts.output),
            Some(Message::CaughtUp(c)) => {
                if a.opts.output == OutputFormat::Table {
                    eprintln!("-- live (head at {}) --", c.position);
                }
            }
            Some(Message::Checkpoint(_)) => {}
            None => return Ok(ExitCode::SUCCESS),
        }
    }
}

#[derive(Args)]
pub struct StreamArgs {
    pub stream: String,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub async fn stream(a: StreamArgs) -> anyhow::Result<ExitCode> {
    let mut client = EventLogClient::new(channel(&a.opts.server).await?);
    let i = client
        .get_stream(v1::GetStreamRequest { stream: a.stream })
        .await
        .map_err(status)?
        .into_inner();
    let time = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| rfc3339(crate::output::nanos(Some(t))));
    let json = json!({
        "stream": i.stream, "exists": i.exists, "last_version": i.exists.then_some(i.last_version),
        "event_count": i.event_count, "first_position": i.first_position, "last_position": i.last_position,
        "created_at": time(&i.created_at), "updated_at": time(&i.updated_at),
    });
    let pairs = if i.exists {
        vec![
            ("stream", i.stream.clone()),
            ("last version", i.last_version.to_string()),
            ("events", i.event_count.to_string()),
            ("positions", format!("{}..{}", i.first_position, i.last_position)),
            ("created at", time(&i.created_at).unwrap_or_default()),
            ("updated at", time(&i.updated_at).unwrap_or_default()),
        ]
    } else {
        vec![("stream", i.stream.clone()), ("exists", "no".into())]
    };
    print_pairs(&pairs, &json, a.opts.output);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub async fn verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut client = AuditClient::new(channel(&a.opts.server).await?);
    let r = client
        .verify(v1::VerifyRequest::default())
        .await
        .map_err(status)?
        .into_inner();
    let json = json!({
        "ok": r.ok, "events_checked": r.events_checked, "head_position": r.head_position,
        "head_hash": hex::encode(&r.head_hash),
        "first_broken_position": (!r.ok).then_some(r.first_broken_position),
        "reason": (!r.ok).then_some(r.reason.clone()),
    });
    let mut pairs = vec![
        (
            "result",
            if r.ok {
                "ok: the hash chain verifies".to_owned()
            } else {
                "BROKEN".to_owned()
            },
        ),
        ("events checked", r.events_checked.to_string()),
        ("head position", r.head_position.to_string()),
        ("head hash", hex::encode(&r.head_hash)),
    ];
    if !r.ok {
        pairs.push(("first broken", r.first_broken_position.to_string()));
        pairs.push(("reason", r.reason.clone()));
    }
    print_pairs(&pairs, &json, a.opts.output);
    Ok(if r.ok { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_says_so_and_a_refusal_stays_as_the_server_said_it() {
        let lost = status(tonic::Status::unknown(
            "h2 protocol error: error reading a body from connection",
        ));
        assert!(
            lost.to_string()
                .starts_with("lost the connection to the server (is it still running?): h2 protocol error"),
            "{lost}"
        );
        let refused = status(tonic::Status::unavailable("the server is shutting down"));
        assert_eq!(refused.to_string(), "the server is shutting down (Unavailable)");
    }
}
