//! The data-driven view suite: every `testdata/views/*.yaml` gives definitions, events
//! and hand-computed expectations.
//!
//! ```yaml
//! definitions: |            # inline definitions YAML, or
//! use_defaults: true        # deploy/definitions
//! events:                   # positions 1, 2, ... in order
//!   - { type: order.placed, stream: order/O-1, time: "2026-11-21T10:00:00Z", data: { ... } }
//! expect:
//!   kpis:
//!     order_cycle_time:
//!       - { window: 24h, group: "", stats: { count: 2, p90: 7200 }, headline: 7200, status: green }
//!       - { window: 1h, group: "", absent: true }        # no such value reported
//!   controls:
//!     some_control:
//!       status: red
//!       checked: 1
//!       violations_total: 1
//!       violations: [{ key: O-1, evidence: [1, 3], at: "2026-...", position: 3 }]
//!       pending: [{ key: INC-1, due: "2026-...", evidence: [2] }]
//!   eval_errors: { some_kpi: 1 }  # expressions that failed, per view (others: none)
//! ```
//!
//! Percentile stats (`p50`, `p90`, `p99`) match within the sketch's 1%; every other
//! number within 1e-9. Each fixture is also replayed with a restart (encode, decode)
//! after every event, and must give the same bytes and reports.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use opsflow_definitions::{Definitions, EventData};
use opsflow_views::{ControlReport, KpiReport, ViewSet};
use serde::Deserialize;
use support::{FixtureEvent, default_definitions, definitions, events, nanos, workspace, yaml_to_json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    #[serde(default)]
    definitions: Option<String>,
    #[serde(default)]
    use_defaults: bool,
    events: Vec<FixtureEvent>,
    expect: Expect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    kpis: BTreeMap<String, Vec<ExpectValue>>,
    #[serde(default)]
    controls: BTreeMap<String, ExpectControl>,
    #[serde(default)]
    clock: Option<String>,
    /// Expressions that failed to evaluate, per view: every view not named here must
    /// have none.
    #[serde(default)]
    eval_errors: BTreeMap<String, u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectValue {
    window: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    stats: BTreeMap<String, f64>,
    /// A number, or `none` for no headline.
    #[serde(default)]
    headline: Option<serde_json::Value>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    absent: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectControl {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    checked: Option<u64>,
    #[serde(default)]
    violations_total: Option<u64>,
    #[serde(default)]
    violations: Option<Vec<ExpectViolation>>,
    #[serde(default)]
    pending: Option<Vec<ExpectObligation>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectViolation {
    key: String,
    evidence: Vec<u64>,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    position: Option<u64>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectObligation {
    key: String,
    due: String,
    evidence: Vec<u64>,
}

fn close(stat: &str, got: f64, want: f64) -> bool {
    let tolerance = if matches!(stat, "p50" | "p90" | "p99") {
        0.01 * want.abs()
    } else {
        1e-9 * want.abs().max(1.0)
    };
    (got - want).abs() <= tolerance
}

fn check_kpi(report: &KpiReport, expected: &[ExpectValue], problems: &mut Vec<String>) {
    for want in expected {
        let got = report
            .values
            .iter()
            .find(|v| v.window == want.window && v.group == want.group);
        let at = format!("kpi {} window {} group {:?}", report.name, want.window, want.group);
        let Some(got) = got else {
            if !want.absent {
                let have: Vec<String> = report
                    .values
                    .iter()
                    .map(|v| format!("{}|{}", v.window, v.group))
                    .collect();
                problems.push(format!("{at}: missing (have {have:?})"));
            }
            continue;
        };
        if want.absent {
            problems.push(format!("{at}: expected absent, got {got:?}"));
            continue;
        }
        for (stat, value) in &want.stats {
            match got.stats.get(stat) {
                Some(x) if close(stat, *x, *value) => {}
                other => problems.push(format!("{at}: stat {stat} = {other:?}, expected {value}")),
            }
        }
        match &want.headline {
            None => {}
            Some(serde_json::Value::String(s)) if s == "none" && got.headline.is_some() => {
                problems.push(format!("{at}: headline {:?}, expected none", got.headline));
            }
            Some(serde_json::Value::String(s)) if s == "none" => {}
            Some(v) => {
                let value = v.as_f64().unwrap_or(f64::NAN);
                if !got
                    .headline
                    .is_some_and(|h| close(report_headline_stat(report), h, value))
                {
                    problems.push(format!("{at}: headline {:?}, expected {value}", got.headline));
                }
            }
        }
        if let Some(status) = &want.status
            && got.status.as_str() != status
        {
            problems.push(format!("{at}: status {}, expected {status}", got.status.as_str()));
        }
    }
}

fn report_headline_stat(report: &KpiReport) -> &'static str {
    if report.kind == "duration" { "p90" } else { "other" }
}

fn check_control(report: &ControlReport, want: &ExpectControl, problems: &mut Vec<String>) {
    let at = format!("control {}", report.name);
    if let Some(status) = &want.status
        && report.status.as_str() != status
    {
        problems.push(format!("{at}: status {}, expected {status}", report.status.as_str()));
    }
    if let Some(checked) = want.checked
        && report.checked != checked
    {
        problems.push(format!("{at}: checked {}, expected {checked}", report.checked));
    }
    if let Some(total) = want.violations_total
        && report.violations_total != total
    {
        problems.push(format!(
            "{at}: violations_total {}, expected {total}",
            report.violations_total
        ));
    }
    if let Some(violations) = &want.violations {
        if violations.len() != report.violations.len() {
            problems.push(format!(
                "{at}: {} violations, expected {}: {:?}",
                report.violations.len(),
                violations.len(),
                report.violations
            ));
        }
        for (want, got) in violations.iter().zip(&report.violations) {
            let same = want.key == got.key
                && want.evidence == got.evidence
                && want.at.as_ref().is_none_or(|t| nanos(t) == got.at)
                && want.position.is_none_or(|p| p == got.position)
                && want.message.as_ref().is_none_or(|m| *m == got.message);
            if !same {
                problems.push(format!("{at}: violation {got:?}, expected {want:?}"));
            }
        }
    }
    if let Some(pending) = &want.pending {
        if pending.len() != report.pending.len() {
            problems.push(format!(
                "{at}: {} pending, expected {}: {:?}",
                report.pending.len(),
                pending.len(),
                report.pending
            ));
        }
        for (want, got) in pending.iter().zip(&report.pending) {
            if want.key != got.key || nanos(&want.due) != got.due || want.evidence != got.evidence {
                problems.push(format!("{at}: pending {got:?}, expected {want:?}"));
            }
        }
    }
}

/// Applies with a restart (encode, decode) after every event.
fn with_restarts(defs: &Definitions, events: &[EventData]) -> ViewSet {
    let mut views = ViewSet::new(defs);
    for event in events {
        views.apply(event);
        views = ViewSet::decode(defs, views.encode()).expect("decodes what it encoded");
        assert!(views.stale_views().is_empty());
    }
    views
}

fn run(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("readable fixture");
    let fixture: Fixture =
        serde_json::from_value(yaml_to_json(&text)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let defs = match (&fixture.definitions, fixture.use_defaults) {
        (Some(yaml), false) => definitions(yaml),
        (None, true) => default_definitions(),
        _ => panic!("{}: give either definitions or use_defaults", path.display()),
    };
    let events = events(&fixture.events);
    let mut views = ViewSet::new(&defs);
    for event in &events {
        views.apply(event);
    }
    let mut problems = Vec::new();
    let kpis = views.kpis();
    let controls = views.controls();
    for (name, expected) in &fixture.expect.kpis {
        match kpis.iter().find(|k| &k.name == name) {
            Some(report) => check_kpi(report, expected, &mut problems),
            None => problems.push(format!("no kpi {name}")),
        }
    }
    for (name, expected) in &fixture.expect.controls {
        match controls.iter().find(|c| &c.name == name) {
            Some(report) => check_control(report, expected, &mut problems),
            None => problems.push(format!("no control {name}")),
        }
    }
    if let Some(clock) = &fixture.expect.clock
        && views.clock() != nanos(clock)
    {
        problems.push(format!("clock {}, expected {clock}", views.clock()));
    }
    let errors: BTreeMap<String, u64> = views.eval_errors().into_iter().filter(|(_, n)| *n > 0).collect();
    if errors != fixture.expect.eval_errors {
        problems.push(format!(
            "evaluation errors {errors:?}, expected {:?}",
            fixture.expect.eval_errors
        ));
    }
    let restarted = with_restarts(&defs, &events);
    if restarted.encode() != views.encode() {
        problems.push("restarting after every event changes the encoded state".into());
    }
    if restarted.kpis() != kpis || restarted.controls() != controls {
        problems.push("restarting after every event changes the reports".into());
    }
    if problems.is_empty() {
        return problems;
    }
    let mut dump = String::new();
    for report in &kpis {
        if fixture.expect.kpis.contains_key(&report.name) {
            dump.push_str(&format!("\n{report:#?}"));
        }
    }
    for report in &controls {
        if fixture.expect.controls.contains_key(&report.name) {
            dump.push_str(&format!("\n{report:#?}"));
        }
    }
    problems.push(format!("reports:{dump}"));
    problems
        .into_iter()
        .map(|p| format!("{}: {p}", path.file_name().unwrap_or_default().to_string_lossy()))
        .collect()
}

#[test]
fn fixtures() {
    let dir = workspace().join("testdata/views");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/views exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    let only = std::env::var("FIXTURE").ok();
    let mut failures = Vec::new();
    let mut ran = 0;
    for path in &paths {
        if only
            .as_ref()
            .is_some_and(|o| !path.to_string_lossy().contains(o.as_str()))
        {
            continue;
        }
        ran += 1;
        failures.extend(run(path));
    }
    assert!(ran > 0, "FIXTURE={only:?} names no fixture in {}", dir.display());
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every default KPI and control has expectations in a fixture over the default
/// definitions: a KPI with at least one value, a control with at least one check.
#[test]
fn every_default_definition_has_a_fixture() {
    let defs = default_definitions();
    let dir = workspace().join("testdata/views");
    let mut expected: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("testdata/views exists").flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable fixture");
        let fixture: Fixture =
            serde_json::from_value(yaml_to_json(&text)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if !fixture.use_defaults {
            continue;
        }
        let kpis = fixture.expect.kpis.iter().filter(|(_, values)| !values.is_empty());
        let controls = fixture.expect.controls.iter().filter(|(_, c)| {
            c.status.is_some()
                || c.checked.is_some()
                || c.violations_total.is_some()
                || c.violations.is_some()
                || c.pending.is_some()
        });
        expected.extend(kpis.map(|(name, _)| name.clone()));
        expected.extend(controls.map(|(name, _)| name.clone()));
    }
    let missing: Vec<&String> = defs
        .kpis
        .iter()
        .map(|k| &k.name)
        .chain(defs.controls.iter().map(|c| &c.name))
        .filter(|n| !expected.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "default definitions without expectations in a `use_defaults: true` fixture: {missing:?}"
    );
}
