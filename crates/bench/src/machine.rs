//! How fast this machine is right now, against the reference figures the issues
//! quote for it (measured on the same kind of 2-core machine): the targets assume
//! those figures, and the speed of a virtual machine drifts by 2× or more over hours.
//! The report prints this at its start and end, so a figure can be read against the
//! machine it was measured on.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::report::count;

/// Issue 2's reference: sled 0.34 raw inserts of 300-byte values on one thread.
const REFERENCE_INSERTS: f64 = 130_000.0;
/// Issue 2's reference: sled full scans.
const REFERENCE_SCAN: f64 = 3_000_000.0;
/// Issue 2's reference: one fsync.
const REFERENCE_FSYNC_MS: f64 = 0.2;

const KEYS: u64 = 200_000;
const FSYNCS: usize = 200;

/// The three reference measurements, taken now.
#[derive(Debug, Clone, Copy)]
pub struct Speed {
    inserts: f64,
    scan: f64,
    fsync_ms: f64,
}

impl Speed {
    /// Measures (blocking, a few seconds) in a temporary directory.
    pub fn measure() -> anyhow::Result<Speed> {
        let dir = tempfile::tempdir()?;
        let db = sled::Config::new().path(dir.path().join("sled")).open()?;
        let value = [0x5a_u8; 300];
        let started = Instant::now();
        for key in 0..KEYS {
            db.insert(key.to_be_bytes(), &value[..])?;
        }
        let inserts = KEYS as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut items = 0_u64;
        for item in db.iter() {
            item?;
            items += 1;
        }
        let scan = items as f64 / started.elapsed().as_secs_f64();
        drop(db);

        let mut file = std::fs::File::create(dir.path().join("fsync"))?;
        let page = [0_u8; 4096];
        let mut times: Vec<Duration> = Vec::with_capacity(FSYNCS);
        for _ in 0..FSYNCS {
            file.write_all(&page)?;
            let started = Instant::now();
            file.sync_data()?;
            times.push(started.elapsed());
        }
        times.sort_unstable();
        let fsync_ms = times[FSYNCS / 2].as_secs_f64() * 1e3;
        Ok(Speed {
            inserts,
            scan,
            fsync_ms,
        })
    }

    /// The CPU-bound figures against their references: about 1.0 on the machine the
    /// targets were set on, 0.5 when it runs at half that speed.
    pub fn factor(&self) -> f64 {
        (self.inserts / REFERENCE_INSERTS * (self.scan / REFERENCE_SCAN)).sqrt()
    }

    /// One line of the report's header.
    pub fn line(&self, when: &str) -> String {
        format!(
            "- machine speed {when} (the issues' reference figures in brackets): sled raw inserts of 300-byte \
             values {} keys/s (≈ {}), sled full scan {} items/s (≈ {}), fsync {:.2} ms (≈ {:.1} ms); \
             CPU speed {:.2}× the reference",
            count(self.inserts),
            count(REFERENCE_INSERTS),
            count(self.scan),
            count(REFERENCE_SCAN),
            self.fsync_ms,
            REFERENCE_FSYNC_MS,
            self.factor(),
        )
    }
}

/// [`Speed::measure`] as a header line; a failure is reported in the line, not fatal.
pub async fn line(when: &'static str) -> String {
    match tokio::task::spawn_blocking(Speed::measure).await {
        Ok(Ok(speed)) => speed.line(when),
        Ok(Err(e)) => format!("- machine speed {when}: not measured ({e:#})"),
        Err(e) => format!("- machine speed {when}: not measured ({e})"),
    }
}
