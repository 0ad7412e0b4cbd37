//! `opsflow definitions check DIR`: validate a definitions directory offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use opsflow_definitions::{CheckError, Definitions};

#[derive(Subcommand)]
pub enum DefinitionsCommand {
    /// Check a definitions directory: prints every problem as file:line:column:
    /// message and exits 1 when there is any.
    Check(CheckArgs),
}

#[derive(Args)]
pub struct CheckArgs {
    /// The directory of *.yaml / *.yml definition files.
    dir: PathBuf,
}

pub fn run(command: DefinitionsCommand) -> ExitCode {
    match command {
        DefinitionsCommand::Check(args) => check(&args.dir),
    }
}

fn check(dir: &Path) -> ExitCode {
    match Definitions::load_dir(dir) {
        Ok(d) => {
            println!(
                "ok: {} kpis, {} controls, version {}",
                d.kpis.len(),
                d.controls.len(),
                d.version
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{}", located(dir, e));
            }
            let n = errors.len();
            eprintln!("{n} problem{} in {}", if n == 1 { "" } else { "s" }, dir.display());
            ExitCode::FAILURE
        }
    }
}

/// The error with its file as a path a terminal or an editor can open.
fn located(dir: &Path, e: &CheckError) -> CheckError {
    let mut e = e.clone();
    if e.file != dir.display().to_string() {
        e.file = dir.join(&e.file).display().to_string();
    }
    e
}
