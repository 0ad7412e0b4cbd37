//! The ingest stream: made, or adopted when it fits ([`ensure_stream`]).

use async_nats::jetstream::{self, stream};

use crate::{IngestConfig, NatsError};

/// Creates the ingest stream, or adopts an existing one whose subjects and storage fit.
pub async fn ensure_stream(js: &jetstream::Context, config: &IngestConfig) -> Result<stream::Stream, NatsError> {
    let retention = match config.retention.as_str() {
        "interest" => stream::RetentionPolicy::Interest,
        "workqueue" => stream::RetentionPolicy::WorkQueue,
        _ => stream::RetentionPolicy::Limits,
    };
    let wanted = stream::Config {
        name: config.stream.clone(),
        subjects: config.subjects.clone(),
        storage: stream::StorageType::File,
        retention,
        num_replicas: config.replicas,
        ..Default::default()
    };
    let mut stream = match js.get_or_create_stream(wanted).await {
        Ok(stream) => stream,
        Err(e) if jetstream_not_enabled(e.kind()) => {
            return Err(NatsError::JetStream(format!(
                "{e}: ingest needs JetStream, and the server has none for this account; start nats-server with -js \
                 (or a jetstream block in its config), and enable it for the account if accounts are configured"
            )));
        }
        Err(e) => {
            // Most likely another stream holds the subjects: name it.
            for subject in &config.subjects {
                if let Ok(other) = js.stream_by_subject(subject.clone()).await
                    && other != config.stream
                {
                    return Err(NatsError::StreamNotCreated {
                        stream: config.stream.clone(),
                        reason: format!(
                            "stream {other} already captures {subject} ({e}); set [nats.ingest] stream = \"{other}\" \
                             to ingest from it, or take {subject} out of it"
                        ),
                    });
                }
            }
            return Err(NatsError::JetStream(e.to_string()));
        }
    };
    let info = stream.info().await.map_err(|e| NatsError::JetStream(e.to_string()))?;
    let existing = &info.config;
    // Adopted when its subjects cover the ingest subjects (`ops.>` covers
    // `ops.events.>`); the consumer then filters to the ingest subjects.
    let missing: Vec<&String> = config
        .subjects
        .iter()
        .filter(|s| !existing.subjects.iter().any(|e| crate::subjects::covers(e, s)))
        .collect();
    if !missing.is_empty() {
        return Err(NatsError::IncompatibleStream {
            stream: config.stream.clone(),
            reason: format!("its subjects {:?} lack {missing:?}", existing.subjects),
        });
    }
    // A transform stores messages under other subjects: the consumer, filtered to
    // the ingest subjects, must still see them. (Its mapped tokens, `$1` or
    // `{{wildcard(1)}}`, are taken as any token.)
    if let Some(transform) = &existing.subject_transform {
        let stored: String = (transform.destination.split('.'))
            .map(|t| if t.contains("{{") || t.starts_with('$') { "*" } else { t })
            .collect::<Vec<_>>()
            .join(".");
        let overlaps = config
            .subjects
            .iter()
            .any(|s| crate::subjects::overlap(s, &transform.source));
        if overlaps && !config.subjects.iter().any(|s| crate::subjects::covers(s, &stored)) {
            return Err(NatsError::IncompatibleStream {
                stream: config.stream.clone(),
                reason: format!(
                    "its subject transform stores {} as {}, outside the ingest subjects {:?}: ingest would never \
                     see those messages; remove the transform, or make the ingest subjects cover it",
                    transform.source, transform.destination, config.subjects
                ),
            });
        }
    }
    if existing.storage != stream::StorageType::File {
        return Err(NatsError::IncompatibleStream {
            stream: config.stream.clone(),
            reason: "it uses memory storage; opsflow ingests only from file storage".into(),
        });
    }
    Ok(stream)
}

/// Whether the server has no JetStream (nothing answers its API), or none for
/// this account.
fn jetstream_not_enabled(kind: jetstream::context::CreateStreamErrorKind) -> bool {
    use jetstream::context::CreateStreamErrorKind;
    match kind {
        CreateStreamErrorKind::JetStreamUnavailable => true,
        CreateStreamErrorKind::JetStream(api) => crate::connection::JETSTREAM_NOT_ENABLED.contains(&api.error_code()),
        _ => false,
    }
}
