//! `opsflow definitions check DIR`: validate a definitions directory offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use opsflow_definitions::{CheckError, Definitions, Expr, Fields, KpiKind, Match, Origin};

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
            for warning in warnings(&d, dir) {
                eprintln!("{warning}");
            }
            if d.kpis.is_empty() && d.controls.is_empty() {
                eprintln!(
                    "{}: warning: no KPI or control is defined here (definitions are .yaml or .yml files with kpis: and controls:)",
                    dir.display()
                );
            }
            crate::output::emit(format_args!(
                "ok: {} kpis, {} controls, version {}",
                d.kpis.len(),
                d.controls.len(),
                d.version
            ));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{}", located(dir, e));
            }
            let n = errors.len();
            eprintln!(
                "{n} problem{} in {} (warnings about likely typos, such as data fields a catalog type \
                 does not have, follow once these are fixed)",
                if n == 1 { "" } else { "s" },
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Things `check` lets pass but that are most often mistakes: an expression reading
/// a data field its catalog type does not list (producers may add fields, so it is
/// not an error), and a type named like a catalog type that is not one.
pub fn warnings(d: &Definitions, dir: &Path) -> Vec<String> {
    let mut out = Warnings::new();
    for kpi in &d.kpis {
        let at = Site {
            dir,
            origin: &kpi.origin,
            line: kpi.origin.line,
            what: format!("kpi `{}`", kpi.name),
        };
        at.matches(&mut out, &kpi.kind.matches(), kpi.key.as_ref(), &kpi.track, &kpi.close);
        at.seen(&mut out, &kpi.reads(), &kpi.track);
        // Expressions evaluated on one match's event.
        let group_by = kpi.group_by.iter().map(|(_, e)| e);
        match &kpi.kind {
            KpiKind::Ratio { on, good, .. } => at.fields(&mut out, &on.event_type, group_by.chain([good])),
            KpiKind::Count { on } => at.fields(&mut out, &on.event_type, group_by),
            KpiKind::Sum { on, value } => at.fields(&mut out, &on.event_type, group_by.chain([value])),
            KpiKind::Duration { end, .. } => at.fields(&mut out, &end.event_type, group_by),
            KpiKind::Level { .. } | KpiKind::Open { .. } => {}
        }
    }
    for control in &d.controls {
        let at = Site {
            dir,
            origin: &control.origin,
            line: control.origin.line,
            what: format!("control `{}`", control.name),
        };
        at.matches(
            &mut out,
            &control.kind.matches(),
            Some(&control.key),
            &control.track,
            &control.close,
        );
        at.seen(&mut out, &control.reads(), &control.track);
    }
    out.into_iter()
        .map(|(file, line, message)| format!("{file}:{line}: warning: {message}"))
        .collect()
}

/// (file, line, message), in file and line order.
type Warnings = std::collections::BTreeSet<(String, usize, String)>;

/// Where a warning points: the definition, or a line of it.
struct Site<'a> {
    dir: &'a Path,
    origin: &'a Origin,
    /// The line a warning names: the definition's, or that of the expression
    /// it is about.
    line: usize,
    what: String,
}

impl<'a> Site<'a> {
    /// Each match's type, and its expressions (with the definition's key where the
    /// match has none) against that type; tracked and closing types likewise.
    fn matches(&self, out: &mut Warnings, matches: &[&Match], key: Option<&Expr>, track: &[String], close: &[String]) {
        for m in matches {
            self.at((m.line > 0).then_some(m.line)).event_type(out, &m.event_type);
            let key = if m.key.is_none() { key } else { None };
            self.fields(out, &m.event_type, m.expressions().chain(key));
        }
        for t in track.iter().chain(close) {
            self.event_type(out, t);
            let own_key = matches.iter().find(|m| &m.event_type == t).and_then(|m| m.key.as_ref());
            self.fields(out, t, own_key.or(key));
        }
    }

    fn event_type(&self, out: &mut Warnings, event_type: &str) {
        if opsflow_catalog::spec_of(event_type).is_some() {
            return;
        }
        // Types are case-sensitive: `Order.Placed` never matches `order.placed`.
        if let Some(catalog) = opsflow_catalog::types().find(|t| t.eq_ignore_ascii_case(event_type)) {
            out.insert(self.warn(format!(
                "`{event_type}` is not the catalog type `{catalog}`: event types are case-sensitive, so it \
                 matches only events recorded with exactly this type"
            )));
            return;
        }
        let Some((domain, _)) = event_type.split_once('.') else {
            return;
        };
        let alike: Vec<&str> = opsflow_catalog::types()
            .filter(|t| t.split_once('.').is_some_and(|(d, _)| d == domain))
            .collect();
        if !alike.is_empty() {
            out.insert(self.warn(format!(
                "`{event_type}` is not a catalog type (the catalog's {domain}.* types: {}); a custom type is allowed: is it a typo?",
                alike.join(", ")
            )));
        }
    }

    fn fields<'e>(&self, out: &mut Warnings, event_type: &str, exprs: impl IntoIterator<Item = &'e Expr>) {
        for expr in exprs {
            if let Fields::Only(names) = expr.reads().event.data {
                self.at(expr.line()).unlisted(out, event_type, &names, |name| {
                    format!("`{}` reads data.{name}", expr.source())
                });
            }
        }
    }

    /// A warning for each of `names` (top-level data fields) that the catalog type
    /// `event_type` does not list; `read` says where one is read.
    fn unlisted<'n>(
        &self,
        out: &mut Warnings,
        event_type: &str,
        names: impl IntoIterator<Item = &'n String>,
        read: impl Fn(&str) -> String,
    ) {
        let Some(spec) = opsflow_catalog::spec_of(event_type) else {
            return;
        };
        for name in names.into_iter().filter(|n| spec.field(n).is_none()) {
            let listed: Vec<&str> = spec.fields.iter().map(|f| f.name).collect();
            out.insert(self.warn(format!(
                "{}, which {event_type} does not have in the catalog (its fields: {}); extra fields are \
                 allowed: is it a typo?",
                read(name),
                listed.join(", ")
            )));
        }
    }

    /// Types the expressions look for in `seen` that are not tracked, so never there;
    /// and data fields read of a tracked catalog type that it does not have.
    fn seen(&self, out: &mut Warnings, reads: &opsflow_definitions::Reads, track: &[String]) {
        for (event_type, names) in &reads.seen_data {
            self.unlisted(out, event_type, names, |name| {
                format!("an expression reads seen['{event_type}'].data.{name}")
            });
        }
        for t in reads.seen_types.iter().filter(|t| !track.contains(t)) {
            let tracked = match track {
                [] => "it tracks nothing".to_string(),
                _ => format!("it tracks {}", track.join(", ")),
            };
            out.insert(self.warn(format!(
                "an expression looks for `{t}` in `seen`, which holds only tracked types ({tracked}): \
                 add it to `track:`, or is it a typo?"
            )));
        }
    }

    /// The same definition, pointing at `line` when known.
    fn at(&self, line: Option<usize>) -> Site<'a> {
        Site {
            line: line.unwrap_or(self.line),
            what: self.what.clone(),
            ..*self
        }
    }

    fn warn(&self, message: String) -> (String, usize, String) {
        let file = self.dir.join(&self.origin.file).display().to_string();
        (file, self.line, format!("{}: {message}", self.what))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_definitions_have_no_warnings() {
        assert_eq!(
            warnings(&opsflow_definitions::builtin(), Path::new("deploy/definitions")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_type_looked_for_in_seen_but_not_tracked_is_warned_about() {
        let yaml = "kpis:
  - name: on_time
    kind: ratio
    key: event.data.order_id
    on: { type: order.delivered }
    good: \"event.time <= timestamp(seen['order.plced'].data.promised_by)\"
    track: [order.placed]
controls:
  - name: returned
    kind: requires
    key: event.data.order_id
    when: { type: order.shipped, if: \"!('order.returned' in seen)\" }
    requires: { type: order.approved }
";
        let d = Definitions::from_files(&[("k.yaml".into(), yaml.into())]).expect("valid definitions");
        let w = warnings(&d, Path::new("defs"));
        assert_eq!(w.len(), 2, "{w:#?}");
        assert_eq!(
            w[0],
            "defs/k.yaml:2: warning: kpi `on_time`: an expression looks for `order.plced` in `seen`, which holds \
             only tracked types (it tracks order.placed): add it to `track:`, or is it a typo?"
        );
        assert!(
            w[1].starts_with("defs/k.yaml:9: warning: control `returned`: an expression looks for `order.returned` in `seen`, which holds only tracked types (it tracks nothing)"),
            "{w:#?}"
        );
    }

    #[test]
    fn a_data_field_read_of_a_seen_event_is_checked_against_its_catalog_type() {
        let yaml = "kpis:
  - name: on_time
    kind: ratio
    key: event.data.order_id
    on: { type: order.delivered }
    good: \"event.time <= timestamp(seen['order.placed'].data.promised_bye) && seen['order.placed'].data.total > 0\"
    track: [order.placed]
";
        let d = Definitions::from_files(&[("k.yaml".into(), yaml.into())]).expect("valid definitions");
        let w = warnings(&d, Path::new("defs"));
        assert_eq!(w.len(), 1, "{w:#?}");
        assert!(
            w[0].starts_with(
                "defs/k.yaml:2: warning: kpi `on_time`: an expression reads seen['order.placed'].data.promised_bye, \
                 which order.placed does not have in the catalog (its fields: order_id,"
            ),
            "{w:#?}"
        );
    }

    #[test]
    fn unlisted_data_fields_and_near_catalog_types_are_warned_about() {
        let yaml = "kpis:
  - name: big_orders
    kind: count
    on: { type: order.placed, if: \"event.data.totl > 1000\" }
    group_by: { channel: event.data.channel }
  - name: typo
    kind: count
    on: { type: order.plaecd }
  - name: custom
    kind: count
    on: { type: thing.happened, if: \"event.data.anything > 1\" }
  - name: capitals
    kind: count
    on: { type: Order.Placed }
controls:
  - name: dup
    kind: separation_of_duties
    key: event.data.approval_id
    first: { type: approval.requested, actor: event.data.requestor }
    second: { type: approval.granted, actor: event.data.approver }
";
        let d = Definitions::from_files(&[("k.yaml".into(), yaml.into())]).expect("valid definitions");
        let w = warnings(&d, Path::new("defs"));
        assert_eq!(w.len(), 4, "{w:#?}");
        // At the expression's line, not the definition's.
        assert!(w[0].starts_with("defs/k.yaml:4: warning: kpi `big_orders`: `event.data.totl > 1000` reads data.totl, which order.placed does not have"), "{w:#?}");
        assert!(
            w[1].starts_with("defs/k.yaml:8: warning: kpi `typo`: `order.plaecd` is not a catalog type"),
            "{w:#?}"
        );
        assert!(
            w[2].starts_with(
                "defs/k.yaml:14: warning: kpi `capitals`: `Order.Placed` is not the catalog type `order.placed`: \
                 event types are case-sensitive"
            ),
            "{w:#?}"
        );
        assert!(
            w[3].starts_with("defs/k.yaml:19: warning: control `dup`: `event.data.requestor` reads data.requestor"),
            "{w:#?}"
        );
    }
}
