//! `opsflow definitions check`, run as a user runs it: on the shipped definitions
//! and on a directory with mistakes.

use std::path::Path;
use std::process::{Command, Output};

use opsflow_testkit::opsflow_binary;

fn check(dir: &Path) -> anyhow::Result<Output> {
    Ok(Command::new(opsflow_binary()?)
        .args(["definitions", "check"])
        .arg(dir)
        .env("OPSFLOW_LOG", "warn")
        .output()?)
}

#[test]
fn the_shipped_definitions_check_clean() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/definitions");
    let out = check(&dir)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.starts_with("ok: 17 kpis, 3 controls, version sha256:"),
        "{stdout}"
    );
    Ok(())
}

#[test]
fn every_problem_is_printed_with_its_location_and_the_exit_code_is_1() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("orders.yaml"),
        "kpis:\n  - name: order_cycle_time\n    kind: duration\n    key: event.data.order_id\n    start: { type: order.placed }\n",
    )?;
    std::fs::write(
        dir.path().join("shipments.yml"),
        "kpis:\n  - name: delays\n    kind: count\n    on: { type: shipment.delayed, if: \"event.data.reason ==\" }\n",
    )?;
    std::fs::write(dir.path().join("README.md"), "not a definitions file")?;
    let out = check(dir.path())?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let orders = dir.path().join("orders.yaml").display().to_string();
    let shipments = dir.path().join("shipments.yml").display().to_string();
    assert!(
        stderr.contains(&format!(
            "{orders}:2:5: missing required field `end` for a duration KPI"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{shipments}:4:39: `if`: invalid expression")),
        "{stderr}"
    );
    assert!(stderr.contains("2 problems"), "{stderr}");
    assert!(out.stdout.is_empty());
    Ok(())
}

#[test]
fn a_missing_directory_is_an_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = check(&dir.path().join("nope"))?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the directory"));
    Ok(())
}

#[test]
fn a_directory_without_definitions_is_warned_about() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("notes.txt"), "kpis: []")?;
    let out = check(dir.path())?;
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: no KPI or control is defined here"), "{err}");
    Ok(())
}
