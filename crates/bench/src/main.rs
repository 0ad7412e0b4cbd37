//! `opsflow-bench`: measures the event log and its gRPC front end and prints a
//! markdown table of figures next to their targets.
//!
//! ```text
//! opsflow-bench --quick               # smoke run, under a minute
//! opsflow-bench                       # full run: 5 s per level, a 1,000,000-event log
//! opsflow-bench --only grpc-single    # one section
//! OPSFLOW_BENCH_SERVER=http://127.0.0.1:7070 opsflow-bench --only grpc-single
//!                                     # load a server running elsewhere (its own CPU)
//! ```
//!
//! Sections, in the order they run:
//!
//! - `grpc-single` ([`grpc::single`]): one event per append over gRPC, 1/16/256 clients.
//! - `grpc-batch` ([`grpc::batch`]): 100-event appends over gRPC.
//! - `library` ([`library::run`]): the same loads through `EventLog::append` directly.
//! - `read` ([`read::run`]): a full scan of a big log built by [`big_log::build`].
//! - `nats` ([`nats::run`]): JetStream ingest end to end against raw JetStream publishing.
//! - `disk` ([`disk::measure`]): bytes on disk per event of that same log.
//! - `views` ([`views::run`]): rebuild rate of the default views over a realistic
//!   log of `--events` demo events, as-of latency, live lag at 20,000 appends/s
//!   (`views-rebuild`: the rebuild alone; `views-as-of`: the as-of rows alone; both
//!   over a log `--views-log DIR` can keep).
//!
//! The header measures the machine's speed at the start and at the end against the
//! reference figures the targets assume ([`machine`]).
//!
//! Progress goes to stderr, the report to stdout.

mod big_log;
mod disk;
mod event;
mod grpc;
mod h2;
mod latency;
mod library;
mod load;
mod machine;
mod nats;
mod probe;
mod read;
mod report;
mod views;

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The same allocator as the `opsflow` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crate::load::Phases;
use crate::report::Report;

/// Measures opsflow and prints a markdown table of figures and targets.
#[derive(Debug, Parser)]
#[command(name = "opsflow-bench", version)]
struct Args {
    /// Small sizes and short runs: a smoke test that finishes in well under a minute.
    #[arg(long)]
    quick: bool,
    /// Events in the log that `read` and `disk` build [default: 1000000, 20000 with --quick].
    #[arg(long, value_name = "N")]
    events: Option<u64>,
    /// Run only this section.
    #[arg(long, value_enum, value_name = "NAME")]
    only: Option<Section>,
    /// With `--only views-rebuild` or `--only views-as-of`: keep the demo log in DIR,
    /// built there on the first run and reused by later ones (to profile without
    /// building the log each time; DIR/views, the previous run's views, is deleted).
    /// The full `views` section appends to its log, so it always builds its own.
    #[arg(long, value_name = "DIR")]
    views_log: Option<std::path::PathBuf>,
    /// Snapshot interval of the views in the as-of rows [default: the runtime's].
    #[arg(long, value_name = "N")]
    snapshot_every: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    GrpcSingle,
    GrpcBatch,
    Library,
    Read,
    Disk,
    Nats,
    Views,
    /// Only the first row of `views`: the rebuild rate.
    ViewsRebuild,
    /// Only the as-of rows of `views` (no rebuild row, no appends).
    ViewsAsOf,
}

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Warm-up and measurement window of every load level.
    pub phases: Phases,
    /// Events in the big log of `read` and `disk`.
    pub events: u64,
}

impl Args {
    fn plan(&self) -> Plan {
        let (warmup, measure, events) = if self.quick {
            (0.2, 1.0, 20_000)
        } else {
            (1.0, 5.0, 1_000_000)
        };
        Plan {
            phases: Phases {
                warmup: Duration::from_secs_f64(warmup),
                measure: Duration::from_secs_f64(measure),
            },
            events: self.events.unwrap_or(events).max(1),
        }
    }

    fn runs(&self, section: Section) -> bool {
        self.only.is_none_or(|only| only == section)
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let plan = args.plan();
    // The server installs the Prometheus recorder; install it up front so the
    // library sections pay the same metrics cost whichever sections run.
    opsflow_server::metrics::install();
    let mut report = Report::new(&plan, args.quick);
    report.header(machine::line("at start").await);

    if args.runs(Section::GrpcSingle) {
        report.extend(grpc::single(plan.phases).await?);
    }
    if args.runs(Section::GrpcBatch) {
        report.extend(grpc::batch(plan.phases).await?);
    }
    if args.runs(Section::Library) {
        report.extend(library::run(plan.phases).await?);
    }
    if args.runs(Section::Read) || args.runs(Section::Disk) {
        let log = big_log::build(plan.events).await?;
        report.push(log.build_row());
        if args.runs(Section::Read) {
            report.push(read::run(&log).await?);
        }
        let disk = disk::measure(log).await?;
        if args.runs(Section::Disk) {
            report.push(disk);
        }
    }

    let part = match args.only {
        None | Some(Section::Views) => Some(views::Part::All),
        Some(Section::ViewsRebuild) => Some(views::Part::Rebuild),
        Some(Section::ViewsAsOf) => Some(views::Part::AsOf),
        Some(_) => None,
    };
    if let Some(part) = part {
        let keep = args.views_log.as_deref().filter(|_| part != views::Part::All);
        report.extend(views::run(plan.events, keep, part, args.snapshot_every).await?);
    }

    if args.runs(Section::Nats) {
        report.extend(nats::run(if args.quick { 20_000 } else { 200_000 }).await?);
    }

    report.header(machine::line("at end").await);
    report.print();
    Ok(())
}
