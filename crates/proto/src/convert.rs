//! Conversions between the wire types (`opsflow.v1`) and the log's types
//! (feature `log`), shared by every transport.

use opsflow_log::LogError;
use opsflow_log::{ExpectedVersion, ProposedEvent, RecordedEvent, StreamInfo, VerifyReport};

use crate::v1;
use crate::v1::expected_version::Kind;

/// Unix nanoseconds as a protobuf timestamp.
pub fn timestamp(nanos: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

/// A protobuf timestamp as Unix nanoseconds; `field` names it in errors.
pub fn from_timestamp(ts: &prost_types::Timestamp, field: &str) -> Result<i64, LogError> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(invalid(field, format!("nanos {} is outside 0..1e9", ts.nanos)));
    }
    ts.seconds
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(i64::from(ts.nanos)))
        .ok_or_else(|| {
            invalid(
                field,
                format!(
                    "{} seconds is outside the years 1677 to 2262 that the log can represent",
                    ts.seconds
                ),
            )
        })
}

/// The expected version from the wire; absent means `any`.
pub fn expected(e: Option<v1::ExpectedVersion>) -> ExpectedVersion {
    match e.and_then(|e| e.kind) {
        None | Some(Kind::Any(_)) => ExpectedVersion::Any,
        Some(Kind::NoStream(_)) => ExpectedVersion::NoStream,
        Some(Kind::StreamExists(_)) => ExpectedVersion::StreamExists,
        Some(Kind::Exact(v)) => ExpectedVersion::Exact(v),
    }
}

/// A proposed event from the wire; `index` names it in errors; `default_source`
/// fills an empty source.
pub fn proposed(index: usize, e: v1::ProposedEvent, default_source: &str) -> Result<ProposedEvent, LogError> {
    let time = e
        .time
        .as_ref()
        .map(|t| from_timestamp(t, &format!("events[{index}].time")))
        .transpose()?;
    Ok(ProposedEvent {
        id: e.id,
        source: if e.source.is_empty() {
            default_source.to_owned()
        } else {
            e.source
        },
        event_type: e.r#type,
        time,
        content_type: e.content_type,
        data: e.data,
        correlation_id: e.correlation_id,
        causation_id: e.causation_id,
        metadata: e.metadata.into_iter().collect(),
    })
}

/// A recorded event for the wire.
pub fn recorded(e: RecordedEvent) -> v1::RecordedEvent {
    v1::RecordedEvent {
        position: e.position,
        stream: e.stream,
        version: e.version,
        id: e.id,
        source: e.source,
        r#type: e.event_type,
        time: Some(timestamp(e.time)),
        recorded_at: Some(timestamp(e.recorded_at)),
        content_type: e.content_type,
        data: e.data,
        correlation_id: e.correlation_id,
        causation_id: e.causation_id,
        metadata: e.metadata.into_iter().collect(),
        prev_hash: e.prev_hash.to_vec(),
        hash: e.hash.to_vec(),
    }
}

pub fn stream_info(i: StreamInfo) -> v1::StreamInfo {
    v1::StreamInfo {
        stream: i.stream,
        exists: i.last_version.is_some(),
        last_version: i.last_version.unwrap_or(0),
        event_count: i.event_count,
        first_position: i.first_position,
        last_position: i.last_position,
        created_at: i.created_at.map(timestamp),
        updated_at: i.updated_at.map(timestamp),
    }
}

pub fn verify_report(r: VerifyReport) -> v1::VerifyResponse {
    v1::VerifyResponse {
        ok: r.ok(),
        events_checked: r.events_checked,
        head_position: r.head_position,
        head_hash: r.head_hash.to_vec(),
        first_broken_position: r.broken.as_ref().map_or(0, |b| b.position),
        reason: r.broken.map(|b| b.reason).unwrap_or_default(),
    }
}

fn invalid(field: &str, reason: String) -> LogError {
    LogError::InvalidArgument {
        field: field.to_owned(),
        reason,
    }
}

/// The expected version for the wire.
pub fn to_expected(e: ExpectedVersion) -> v1::ExpectedVersion {
    let kind = match e {
        ExpectedVersion::Any => Kind::Any(v1::expected_version::Any {}),
        ExpectedVersion::NoStream => Kind::NoStream(v1::expected_version::NoStream {}),
        ExpectedVersion::StreamExists => Kind::StreamExists(v1::expected_version::StreamExists {}),
        ExpectedVersion::Exact(v) => Kind::Exact(v),
    };
    v1::ExpectedVersion { kind: Some(kind) }
}

/// A request to append to one stream, as the log's type.
pub fn stream_append(request: v1::AppendRequest, default_source: &str) -> Result<opsflow_log::StreamAppend, LogError> {
    let events = request
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| proposed(i, e, default_source))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(opsflow_log::StreamAppend {
        stream: request.stream,
        expected: expected(request.expected),
        events,
    })
}

/// The answer to an append.
pub fn append_response(outcome: &opsflow_log::AppendOutcome) -> v1::AppendResponse {
    v1::AppendResponse {
        first_position: outcome.first_position(),
        last_position: outcome.last_position(),
        stream_version: outcome.stream_version,
        duplicate: outcome.duplicate,
        positions: outcome.positions.clone(),
    }
}
