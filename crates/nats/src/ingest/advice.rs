//! What to do about an ingest consumer JetStream refuses or opsflow cannot use.

use async_nats::jetstream::{self, stream};

/// Why JetStream refused to make or change ingest consumer `name` of `stream`
/// (`e`, JetStream's error `code` if it gave one), and what to do.
pub(crate) fn consumer_refused(
    e: &dyn std::fmt::Display,
    code: Option<jetstream::ErrorCode>,
    stream: &stream::Stream,
    name: &str,
    subjects: &[String],
) -> String {
    let stream_name = &stream.cached_info().config.name;
    if matches!(
        code,
        Some(
            jetstream::ErrorCode::CONSUMER_WQ_CONSUMER_NOT_UNIQUE
                | jetstream::ErrorCode::CONSUMER_WQ_MULTIPLE_UNFILTERED
        )
    ) {
        return format!(
            "consumer {name} of work-queue stream {stream_name}: {e}: a work-queue stream gives each message to \
             one consumer only, and another of its consumers already takes (some of) the ingest subjects \
             {subjects:?}; give the stream's other consumers filters apart from those (nats consumer ls \
             {stream_name}), or let opsflow ingest from a stream of its own ([nats.ingest] stream)"
        );
    }
    format!(
        "consumer {name} of stream {stream_name}: {e} (a consumer of that name made otherwise, e.g. a push \
         consumer, cannot be used: {})",
        replace_advice(stream, name)
    )
}

/// How to replace ingest consumer `name` of `stream` that cannot be used,
/// keeping what it holds: with interest retention, deleting it first would drop the
/// messages only it was still to deliver.
pub(super) fn replace_advice(stream: &stream::Stream, name: &str) -> String {
    let stream_name = &stream.cached_info().config.name;
    if stream.cached_info().config.retention == stream::RetentionPolicy::Interest {
        format!(
            "set [nats.ingest] consumer to a new name and opsflow makes that one, which reads what the stream \
             holds; delete {name} only after (with interest retention, deleting it first drops the messages only \
             it was still to deliver)"
        )
    } else {
        format!(
            "delete it (nats consumer rm {stream_name} {name}) and opsflow makes its own, which reads what the \
             stream holds (what is recorded already is not recorded twice), or set [nats.ingest] consumer"
        )
    }
}
