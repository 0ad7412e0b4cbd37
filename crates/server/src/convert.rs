//! Conversions between the wire types (`opsflow.v1`) and the log's types.

use opsflow_log::{ExpectedVersion, ProposedEvent, RecordedEvent, StreamInfo, VerifyReport};
use opsflow_proto::v1;
use opsflow_proto::v1::expected_version::Kind;

use crate::ApiError;

pub fn timestamp(nanos: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

pub fn from_timestamp(ts: &prost_types::Timestamp, field: &str) -> Result<i64, ApiError> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(ApiError::invalid(
            field,
            format!("nanos {} is outside 0..1e9", ts.nanos),
        ));
    }
    ts.seconds
        .checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(i64::from(ts.nanos)))
        .ok_or_else(|| ApiError::invalid(field, format!("{} seconds is out of range", ts.seconds)))
}

pub fn expected(e: Option<v1::ExpectedVersion>) -> ExpectedVersion {
    match e.and_then(|e| e.kind) {
        None | Some(Kind::Any(_)) => ExpectedVersion::Any,
        Some(Kind::NoStream(_)) => ExpectedVersion::NoStream,
        Some(Kind::StreamExists(_)) => ExpectedVersion::StreamExists,
        Some(Kind::Exact(v)) => ExpectedVersion::Exact(v),
    }
}

pub fn proposed(index: usize, e: v1::ProposedEvent) -> Result<ProposedEvent, ApiError> {
    let time = e
        .time
        .as_ref()
        .map(|t| from_timestamp(t, &format!("events[{index}].time")))
        .transpose()?;
    Ok(ProposedEvent {
        id: e.id,
        source: if e.source.is_empty() {
            "opsflow:grpc".to_owned()
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
