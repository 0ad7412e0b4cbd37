//! `disk`: bytes on disk per event of the big log, once it is closed.

use std::path::Path;

use anyhow::Context;

use crate::big_log::BigLog;
use crate::report::{Row, count};

/// Closes the log and sums the sizes of the files in its directory.
pub async fn measure(big: BigLog) -> anyhow::Result<Row> {
    big.log.close().await.context("closing the event log")?;
    let Usage { on_disk, allocated } = usage(big.dir.path())?;
    let events = big.events as f64;
    let ratio = on_disk as f64 / big.raw_bytes as f64;
    let figure = format!(
        "{:.0} bytes/event = {ratio:.2}× raw ({:.0} raw bytes/event; {:.1} MB in files, {:.1} MB allocated)",
        on_disk as f64 / events,
        big.raw_bytes as f64 / events,
        on_disk as f64 / 1e6,
        allocated as f64 / 1e6,
    );
    let row = Row::new(format!("disk, after {} events", count(events)), figure);
    Ok(row.target("≤ 2× raw", ratio <= 2.0))
}

#[derive(Debug, Default)]
pub(crate) struct Usage {
    /// Sum of the file sizes.
    pub on_disk: u64,
    /// Sum of the blocks allocated to the files (what `du` reports).
    pub allocated: u64,
}

/// Space used by the files under `dir`.
pub(crate) fn usage(dir: &Path) -> anyhow::Result<Usage> {
    let mut total = Usage::default();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let meta = entry
            .metadata()
            .with_context(|| format!("cannot stat {}", entry.path().display()))?;
        if meta.is_dir() {
            let inner = usage(&entry.path())?;
            total.on_disk += inner.on_disk;
            total.allocated += inner.allocated;
        } else {
            total.on_disk += meta.len();
            total.allocated += allocated(&meta);
        }
    }
    Ok(total)
}

#[cfg(unix)]
fn allocated(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.blocks() * 512
}

#[cfg(not(unix))]
fn allocated(meta: &std::fs::Metadata) -> u64 {
    meta.len()
}
