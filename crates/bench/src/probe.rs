//! What the process did during a load level, without a profiler: group commits
//! and fsyncs from the process-wide Prometheus recorder the server installs, and
//! CPU time per thread from `/proc/self/task/*/schedstat`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::report::count;

/// A snapshot of the process at one instant.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    log: Option<LogCounters>,
    /// Nanoseconds on CPU so far, by thread id, with the thread's name.
    threads: HashMap<u32, (String, u64)>,
}

/// Cumulative log counters.
#[derive(Debug, Clone, Copy, Default)]
struct LogCounters {
    groups: f64,
    group_events: f64,
    fsyncs: f64,
    fsync_seconds: f64,
}

/// What happened between two snapshots.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    log: Option<LogCounters>,
    /// CPU seconds by kind of thread.
    cpu: BTreeMap<&'static str, f64>,
}

impl Probe {
    pub fn snapshot() -> Probe {
        Probe {
            log: LogCounters::snapshot(),
            threads: thread_cpu(),
        }
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Probe) -> Activity {
        let log = match (self.log, earlier.log) {
            (Some(now), Some(then)) => Some(LogCounters {
                groups: now.groups - then.groups,
                group_events: now.group_events - then.group_events,
                fsyncs: now.fsyncs - then.fsyncs,
                fsync_seconds: now.fsync_seconds - then.fsync_seconds,
            }),
            _ => None,
        };
        let mut cpu = BTreeMap::new();
        for (tid, (name, nanos)) in &self.threads {
            // A thread that started in between counts from zero; one that ended is lost.
            let before = earlier
                .threads
                .get(tid)
                .filter(|(n, _)| n == name)
                .map_or(0, |(_, ns)| *ns);
            *cpu.entry(thread_kind(name)).or_default() += nanos.saturating_sub(before) as f64 / 1e9;
        }
        Activity { log, cpu }
    }
}

impl Activity {
    /// "212 group commits/s of 128.1 events, 213 fsyncs/s of 0.44 ms; CPU cores busy: ..."
    pub fn summary(&self, window: Duration) -> String {
        let secs = window.as_secs_f64();
        let mut parts = Vec::new();
        if let Some(log) = self.log {
            let per_group = if log.groups > 0.0 {
                log.group_events / log.groups
            } else {
                0.0
            };
            let per_fsync_ms = if log.fsyncs > 0.0 {
                1000.0 * log.fsync_seconds / log.fsyncs
            } else {
                0.0
            };
            parts.push(format!(
                "{} group commits/s of {per_group:.1} events, {} fsyncs/s of {per_fsync_ms:.2} ms",
                count(log.groups / secs),
                count(log.fsyncs / secs),
            ));
        }
        if !self.cpu.is_empty() {
            let mut busy: Vec<_> = self.cpu.iter().map(|(kind, cpu)| (*kind, cpu / secs)).collect();
            busy.sort_by(|a, b| b.1.total_cmp(&a.1));
            let total: f64 = busy.iter().map(|(_, cores)| cores).sum();
            let each: Vec<_> = busy.iter().map(|(kind, cores)| format!("{kind} {cores:.2}")).collect();
            parts.push(format!("CPU cores busy {total:.2} ({})", each.join(", ")));
        }
        parts.join("; ")
    }
}

impl LogCounters {
    /// `None` when no recorder is installed.
    fn snapshot() -> Option<LogCounters> {
        let text = opsflow_server::metrics::render();
        let value = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (!text.is_empty()).then(|| LogCounters {
            groups: value("opsflow_group_commit_events_count"),
            group_events: value("opsflow_group_commit_events_sum"),
            fsyncs: value("opsflow_fsync_seconds_count"),
            fsync_seconds: value("opsflow_fsync_seconds_sum"),
        })
    }
}

/// CPU nanoseconds of every thread of this process (empty where `/proc` is missing).
fn thread_cpu() -> HashMap<u32, (String, u64)> {
    let mut threads = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return threads;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let path = task.path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("schedstat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        if let Some(nanos) = stat.split_whitespace().next().and_then(|ns| ns.parse().ok()) {
            threads.insert(tid, (name.trim().to_owned(), nanos));
        }
    }
    threads
}

/// Groups threads by what they do (names are cut to 15 bytes by the kernel).
fn thread_kind(name: &str) -> &'static str {
    if name.starts_with("opsflow-log-wri") {
        "log writer"
    } else if name.starts_with("opsflow-log-flu") {
        "log flusher"
    } else if name.starts_with("tokio") {
        "tokio"
    } else if name.starts_with("sled-io") {
        "sled io"
    } else {
        "other"
    }
}
