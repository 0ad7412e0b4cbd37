//! The printed report: the machine, the commit, and one markdown row per figure.

use std::process::Command;

use crate::Plan;

/// One measured figure, with its target if it has one.
#[derive(Debug)]
pub struct Row {
    benchmark: String,
    figure: String,
    target: Option<(String, bool)>,
    /// Printed under the table: what the process did meanwhile.
    note: Option<String>,
}

impl Row {
    pub fn new(benchmark: impl Into<String>, figure: impl Into<String>) -> Row {
        Row {
            benchmark: benchmark.into(),
            figure: figure.into(),
            target: None,
            note: None,
        }
    }

    /// Sets the target and whether the figure meets it.
    pub fn target(mut self, target: impl Into<String>, met: bool) -> Row {
        self.target = Some((target.into(), met));
        self
    }

    /// Adds a note printed under the table (ignored when empty).
    pub fn note(mut self, note: String) -> Row {
        self.note = (!note.is_empty()).then_some(note);
        self
    }
}

/// The rows of a run and how it was run.
#[derive(Debug)]
pub struct Report {
    header: Vec<String>,
    rows: Vec<Row>,
}

impl Report {
    pub fn new(plan: &Plan, quick: bool) -> Report {
        let cpus = std::thread::available_parallelism().map_or_else(|_| "unknown".to_owned(), |n| n.to_string());
        let mode = if quick { "quick" } else { "full" };
        let header = vec![
            format!("- machine: {cpus} CPUs (nproc), {}", std::env::consts::ARCH),
            format!("- commit: {}", commit()),
            format!("- load average (1, 5, 15 min) at start: {}", load_average()),
            format!(
                "- run: {mode}; each load level {:.1} s after a {:.1} s warm-up; read/disk log of {} events",
                plan.phases.measure.as_secs_f64(),
                plan.phases.warmup.as_secs_f64(),
                count(plan.events as f64),
            ),
        ];
        Report {
            header,
            rows: Vec::new(),
        }
    }

    /// Adds a line to the header (before the rows).
    pub fn header(&mut self, line: String) {
        self.header.push(line);
    }

    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn extend(&mut self, rows: impl IntoIterator<Item = Row>) {
        self.rows.extend(rows);
    }

    pub fn print(&self) {
        println!("## opsflow-bench\n");
        for line in &self.header {
            println!("{line}");
        }
        println!("- load average at end: {}", load_average());
        println!();
        println!("| benchmark | figure | target | met? |");
        println!("|---|---|---|---|");
        for row in &self.rows {
            let (target, met) = match &row.target {
                Some((target, met)) => (target.as_str(), if *met { "yes" } else { "**no**" }),
                None => ("—", "—"),
            };
            println!("| {} | {} | {target} | {met} |", row.benchmark, row.figure);
        }
        let notes: Vec<_> = self
            .rows
            .iter()
            .filter_map(|r| Some((&r.benchmark, r.note.as_ref()?)))
            .collect();
        if !notes.is_empty() {
            println!("\nWhat the process did during each measured window:\n");
            for (benchmark, note) in notes {
                println!("- {benchmark}: {note}");
            }
        }
    }
}

/// The 1, 5 and 15 minute load averages, to show what else ran on the machine.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .filter(|loads| !loads.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `git rev-parse --short HEAD`, marked when the work tree has changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        // The checkout this binary was built from, wherever it is run.
        Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(hash) if !hash.is_empty() => match git(&["status", "--porcelain"]) {
            Some(changes) if !changes.is_empty() => format!("{hash} (with uncommitted changes)"),
            _ => hash,
        },
        _ => "unknown (git rev-parse failed)".to_owned(),
    }
}

/// A whole number with thousands separators: 1234567.8 → "1,234,568".
pub fn count(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn thousands_separators() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.4), "999");
        assert_eq!(count(1000.0), "1,000");
        assert_eq!(count(1_234_567.8), "1,234,568");
    }
}
