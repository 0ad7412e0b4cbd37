//! `read`: one full forward scan of the big log with `EventLog::iter_all`.

use std::time::Instant;

use anyhow::{Context, bail};

use crate::big_log::BigLog;
use crate::report::{Row, count};
use opsflow_log::recorded_event_size;

pub async fn run(big: &BigLog) -> anyhow::Result<Row> {
    eprintln!("read: scanning {} events", count(big.events as f64));
    let log = big.log.clone();
    let (events, bytes, elapsed) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let (mut events, mut bytes) = (0u64, 0u64);
        for event in log.iter_all(1) {
            let event = event.context("reading the log")?;
            events += 1;
            bytes += recorded_event_size(&event);
        }
        anyhow::Ok((events, bytes, started.elapsed()))
    })
    .await
    .context("the read task panicked")??;
    if events != big.events {
        bail!("read {events} events from a log of {}", big.events);
    }
    let secs = elapsed.as_secs_f64();
    let rate = events as f64 / secs;
    let figure = format!(
        "{} events/s, {:.0} MB/s ({:.2} s)",
        count(rate),
        bytes as f64 / 1e6 / secs,
        secs
    );
    let row = Row::new(format!("read, iter_all over {} events", count(events as f64)), figure);
    Ok(row.target("≥ 1,000,000 events/s", rate >= 1_000_000.0))
}
