//! A closed-loop load driver: N workers, each appending as fast as its previous
//! append is acknowledged, for a warm-up and then a measured window.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinSet;

use crate::latency::Latencies;
use crate::probe::{Activity, Probe};

/// How long a load level runs.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// Load before the window opens; not measured.
    pub warmup: Duration,
    /// The measured window.
    pub measure: Duration,
}

/// One worker's way to append. Each call is one append request of
/// [`Appender::events_per_append`] events; `seq` counts this worker's calls from 0.
pub trait Appender: Send + 'static {
    fn events_per_append(&self) -> u64;
    fn append(&mut self, seq: u64) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// What a load level achieved within the measured window.
#[derive(Debug)]
pub struct Measurement {
    /// Appends acknowledged within the window.
    pub appends: u64,
    /// Events in those appends.
    pub events: u64,
    pub window: Duration,
    /// Latency of each append acknowledged within the window.
    pub latencies: Latencies,
    /// What the process did within the window.
    pub activity: Activity,
}

impl Measurement {
    pub fn appends_per_sec(&self) -> f64 {
        self.appends as f64 / self.window.as_secs_f64()
    }

    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.window.as_secs_f64()
    }

    /// "p50 0.42 ms, p99 3.10 ms"
    pub fn latency_summary(&mut self) -> String {
        let fmt = |ms: Option<f64>| ms.map_or_else(|| "n/a".to_owned(), |ms| format!("{ms:.2} ms"));
        let p50 = fmt(self.latencies.quantile_ms(0.50));
        let p99 = fmt(self.latencies.quantile_ms(0.99));
        format!("p50 {p50}, p99 {p99}")
    }

    /// What the process did, as a note for the report.
    pub fn activity_summary(&self) -> String {
        self.activity.summary(self.window)
    }
}

/// Runs every appender concurrently through the warm-up and the window; an
/// append counts when it is acknowledged inside the window.
pub async fn closed_loop<A: Appender>(appenders: Vec<A>, phases: Phases) -> anyhow::Result<Measurement> {
    let opens = Instant::now() + phases.warmup;
    let closes = opens + phases.measure;
    let mut workers = JoinSet::new();
    for appender in appenders {
        workers.spawn(worker(appender, opens, closes));
    }
    let probe = tokio::spawn(async move {
        tokio::time::sleep_until(opens.into()).await;
        let before = Probe::snapshot();
        tokio::time::sleep_until(closes.into()).await;
        Probe::snapshot().since(&before)
    });
    let mut total = Measurement {
        appends: 0,
        events: 0,
        window: phases.measure,
        latencies: Latencies::default(),
        activity: Activity::default(),
    };
    while let Some(joined) = workers.join_next().await {
        let (appends, events, latencies) = joined.context("a load worker panicked")??;
        total.appends += appends;
        total.events += events;
        total.latencies.merge(latencies);
    }
    total.activity = probe.await.context("the metrics probe panicked")?;
    debug_assert_eq!(total.latencies.len() as u64, total.appends);
    Ok(total)
}

async fn worker<A: Appender>(
    mut appender: A,
    opens: Instant,
    closes: Instant,
) -> anyhow::Result<(u64, u64, Latencies)> {
    let mut latencies = Latencies::default();
    let (mut appends, mut events) = (0, 0);
    let mut seq = 0;
    loop {
        let started = Instant::now();
        if started >= closes {
            break;
        }
        appender.append(seq).await?;
        let done = Instant::now();
        if opens <= done && done <= closes {
            appends += 1;
            events += appender.events_per_append();
            latencies.record(done - started);
        }
        seq += 1;
    }
    Ok((appends, events, latencies))
}
