//! Prometheus metrics. The recorder is process-wide, installed once.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 20000.0,
];

/// Installs the recorder (once per process) and returns its handle.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("opsflow_group_commit_events".into()), BATCH_BUCKETS)
                })
                // Batch sizes are whole numbers: as a summary its quantiles read
                // 0.9998999999999999 for batches of one.
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("opsflow_nats_ingest_batch".into()), BATCH_BUCKETS)
                });
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!("opsflow_appends_total", "Append requests, by result");
    describe_counter!("opsflow_appended_events_total", "Events made durable");
    describe_counter!(
        "opsflow_appended_bytes_total",
        Unit::Bytes,
        "Encoded bytes made durable"
    );
    describe_histogram!(
        "opsflow_append_latency_seconds",
        Unit::Seconds,
        "Append latency until durable"
    );
    describe_histogram!("opsflow_group_commit_events", "Events per group commit");
    describe_histogram!("opsflow_nats_ingest_batch", "Messages per NATS ingest batch");
    describe_histogram!("opsflow_fsync_seconds", Unit::Seconds, "Time of one flush + fsync");
    describe_histogram!(
        "opsflow_stream_index_write_seconds",
        Unit::Seconds,
        "Time of one write of the stream index (in the background, off the append path)"
    );
    describe_histogram!(
        "opsflow_view_lag_seconds",
        Unit::Seconds,
        "From an event's recording to the views having applied it"
    );
    metrics::describe_gauge!(
        "opsflow_view_checkpoint_bytes",
        Unit::Bytes,
        "Size of the views' last checkpoint"
    );
    metrics::describe_gauge!(
        "opsflow_definitions_reload_failed",
        "1 while the definitions directory does not check (the last set that did stays in force)"
    );
    describe_counter!(
        "opsflow_nats_disconnections_total",
        "NATS connections lost (the client reconnects by itself), by connection"
    );
    describe_counter!(
        "opsflow_nats_requests_total",
        "Append requests on the request subject, by outcome: recorded, the dead-letter reason of a refusal, or failed"
    );
    metrics::describe_gauge!(
        "opsflow_nats_connected",
        "1 while every NATS connection of opsflow is up (ingest's and outbound's, request/reply's)"
    );
    describe_counter!(
        "opsflow_nats_ingest_skipped_total",
        "Ingest stream messages removed before ingest read them (the stream's limits discarding old messages, or a \
         purge): their events are not in the log"
    );
    describe_counter!(
        "opsflow_nats_transport_restarts_total",
        "Times a NATS connection's tasks started again on a new connection because its client stopped (at a \
         message it could not read)"
    );
}

/// The Prometheus text exposition.
pub fn render() -> String {
    match HANDLE.get().cloned().flatten() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}
