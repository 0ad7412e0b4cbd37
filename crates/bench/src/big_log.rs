//! The big log that `read` and `disk` measure: `--events` events appended through
//! the library in 1000-event batches by a few concurrent tasks.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use opsflow_log::{EventLog, ExpectedVersion, LogOptions, event_size};
use tempfile::TempDir;
use tokio::task::JoinSet;

use crate::event;
use crate::report::{Row, count};

const BATCH_EVENTS: u64 = 1000;
/// Concurrent appenders, so that group commit has something to group.
const TASKS: u64 = 4;
const STREAMS: u64 = 100;

/// A built log and what went into it.
pub struct BigLog {
    /// Keeps the directory alive until the log is measured.
    pub dir: TempDir,
    pub log: EventLog,
    pub events: u64,
    /// Sum of [`event_size`] over every appended event (data and attributes).
    pub raw_bytes: u64,
    pub build_time: Duration,
}

impl BigLog {
    pub fn build_row(&self) -> Row {
        let rate = self.events as f64 / self.build_time.as_secs_f64();
        Row::new(
            format!(
                "library, build a {}-event log ({TASKS} tasks × {BATCH_EVENTS}-event appends)",
                count(self.events as f64)
            ),
            format!("{} events/s ({:.1} s)", count(rate), self.build_time.as_secs_f64()),
        )
    }
}

pub async fn build(events: u64) -> anyhow::Result<BigLog> {
    eprintln!("read/disk: building a log of {} events", count(events as f64));
    let dir = tempfile::tempdir().context("cannot create a temporary log directory")?;
    let log = EventLog::open_async(dir.path(), LogOptions::default())
        .await
        .context("cannot open the event log")?;
    let batches = events.div_ceil(BATCH_EVENTS);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let log = log.clone();
        tasks.spawn(async move {
            let mut raw_bytes = 0;
            // Task `task` appends batches task, task + TASKS, task + 2 × TASKS, ...
            for batch in (task..batches).step_by(TASKS as usize) {
                let first = batch * BATCH_EVENTS;
                let last = (first + BATCH_EVENTS).min(events);
                let proposed: Vec<_> = (first..last)
                    .map(|seq| event::proposed("opsflow-bench/load", format!("e{seq}"), seq))
                    .collect();
                raw_bytes += proposed.iter().map(event_size).sum::<u64>();
                let stream = format!("load/s{}", batch % STREAMS);
                log.append(&stream, ExpectedVersion::Any, proposed)
                    .await
                    .context("library append")?;
            }
            anyhow::Ok(raw_bytes)
        });
    }
    let mut raw_bytes = 0;
    while let Some(joined) = tasks.join_next().await {
        raw_bytes += joined.context("a load task panicked")??;
    }
    let build_time = started.elapsed();
    if log.head() != events {
        bail!("the log head is {} after appending {events} events", log.head());
    }
    Ok(BigLog {
        dir,
        log,
        events,
        raw_bytes,
        build_time,
    })
}
