//! `library`: the gRPC loads through `EventLog::append` directly, so that the
//! difference between the two sections is the cost of the network layer.

use anyhow::{Context, bail};
use opsflow_log::{EventLog, ExpectedVersion, LogOptions};

use crate::event;
use crate::load::{Appender, Measurement, Phases, closed_loop};
use crate::report::{Row, count};

const BATCH_TASKS: usize = 16;
const BATCH_EVENTS: usize = 100;
/// Streams each task spreads its appends over.
const STREAMS_PER_TASK: u64 = 100;

/// One event per append with 1, 16 and 256 tasks, then 100-event appends.
pub async fn run(phases: Phases) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for tasks in [1, 16, 256] {
        let name = format!("library, {tasks} task{}", if tasks == 1 { "" } else { "s" });
        eprintln!("{name}");
        let mut m = level(tasks, 1, phases).await?;
        let figure = format!("{} appends/s; {}", count(m.appends_per_sec()), m.latency_summary());
        rows.push(Row::new(name, figure).note(m.activity_summary()));
    }

    let name = format!("library, {BATCH_TASKS} tasks × {BATCH_EVENTS}-event appends");
    eprintln!("{name}");
    let mut m = level(BATCH_TASKS, BATCH_EVENTS, phases).await?;
    let figure = format!(
        "{} events/s ({} appends/s; {})",
        count(m.events_per_sec()),
        count(m.appends_per_sec()),
        m.latency_summary()
    );
    rows.push(Row::new(name, figure).note(m.activity_summary()));
    Ok(rows)
}

/// Runs one load level against a fresh, empty log.
async fn level(tasks: usize, batch: usize, phases: Phases) -> anyhow::Result<Measurement> {
    let dir = tempfile::tempdir().context("cannot create a temporary log directory")?;
    let log = EventLog::open_async(dir.path(), LogOptions::default())
        .await
        .context("cannot open the event log")?;
    let appenders = (0..tasks)
        .map(|task| LibraryAppender {
            log: log.clone(),
            task,
            batch,
        })
        .collect();
    let measured = closed_loop(appenders, phases).await;
    log.close().await.context("closing the event log")?;
    measured
}

struct LibraryAppender {
    log: EventLog,
    task: usize,
    batch: usize,
}

impl Appender for LibraryAppender {
    fn events_per_append(&self) -> u64 {
        self.batch as u64
    }

    async fn append(&mut self, seq: u64) -> anyhow::Result<()> {
        let t = self.task;
        let events = (0..self.batch)
            .map(|i| event::proposed("opsflow-bench/library", format!("t{t}-{seq}-{i}"), seq))
            .collect();
        let stream = format!("bench/t{t}-{}", seq % STREAMS_PER_TASK);
        let outcome = self
            .log
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .context("library append")?;
        if outcome.duplicate || outcome.positions.len() != self.batch {
            bail!(
                "append {seq} of task {t} was not recorded as {} new events: {outcome:?}",
                self.batch
            );
        }
        Ok(())
    }
}
