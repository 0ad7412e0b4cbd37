//! The real `opsflow` binary, driven the way a new user drives it: `opsflow dev`,
//! the client subcommands, SIGTERM, restart.

use std::process::{Command, Output};
use std::time::Duration;

use opsflow_testkit::{OpsflowProcess, opsflow_binary};
use serde_json::Value;

const SHIPPED: &str = r#"{"order_id":"PO-1","carrier":"DHL"}"#;

fn cli(server: &str, args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(opsflow_binary()?)
        .args(args)
        .arg("--server")
        .arg(server)
        .env("OPSFLOW_LOG", "warn")
        .output()?)
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn cli_round_trip_survives_a_clean_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = OpsflowProcess::start(dir.path())?;
    let url = server.url();

    let out = cli(
        &url,
        &[
            "append",
            "order/PO-1",
            "order.placed",
            r#"{"order_id":"PO-1","customer":"acme","total":10,"currency":"EUR","promised_by":"2026-11-23T10:00:00Z"}"#,
            "--expected",
            "no_stream",
            "--output",
            "json",
        ],
    )?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_lines(&out)[0]["position"], 1);
    let out = cli(
        &url,
        &[
            "append",
            "order/PO-1",
            "order.approved",
            r#"{"order_id":"PO-1","approver":"alice"}"#,
            "--expected",
            "0",
        ],
    )?;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("position 2"));

    let conflicting = [
        "append",
        "order/PO-1",
        "order.shipped",
        SHIPPED,
        "--expected",
        "no_stream",
    ];
    let out = cli(&url, &conflicting)?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected no_stream, actual 1"), "{err}");
    // With --output json, the error is JSON too, with the server's detail.
    let out = cli(&url, &[&conflicting[..], &["--output", "json"]].concat())?;
    assert!(!out.status.success());
    let err: Value = serde_json::from_slice(&out.stderr)?;
    assert_eq!(err["error"]["code"], "wrong_expected_version", "{err}");
    assert_eq!(
        (&err["error"]["expected"], &err["error"]["actual"]),
        (&Value::from("no_stream"), &Value::from(1))
    );
    let out = cli("http://127.0.0.1:1", &["read", "--output", "json"])?;
    let err: Value = serde_json::from_slice(&out.stderr)?;
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot connect"),
        "{err}"
    );
    let out = cli(&url, &["append", "order/PO-1", "order.shipped", "{not json"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));
    // The server validates catalog types: the missing field is named.
    let out = cli(
        &url,
        &["append", "order/PO-2", "order.placed", r#"{"customer":"acme"}"#],
    )?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("data.order_id") && err.contains("InvalidArgument"),
        "{err}"
    );

    let out = cli(&url, &["read", "--output", "json"])?;
    let events = json_lines(&out);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["type"], "order.approved");
    let out = cli(
        &url,
        &["read", "order/PO-1", "--backward", "--limit", "1", "--output", "json"],
    )?;
    assert_eq!(json_lines(&out)[0]["version"], 1);
    let out = cli(&url, &["stream", "order/PO-1", "--output", "json"])?;
    assert_eq!(json_lines(&out)[0]["event_count"], 2);
    let out = cli(&url, &["audit", "verify", "--output", "json"])?;
    assert!(out.status.success());
    assert_eq!(json_lines(&out)[0]["ok"], true);

    // `--window` filters JSON output too; a window no KPI has is an error naming them.
    let out = cli(&url, &["kpis", "--name", "mtta", "--window", "24h", "--output", "json"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kpis = json_lines(&out);
    let values = kpis[0]["kpis"][0]["values"].as_array().cloned().unwrap_or_default();
    assert!(!values.is_empty(), "{kpis:?}");
    assert!(values.iter().all(|v| v["window"] == "24h"), "{values:?}");
    // The table: names and windows as lists, each value with its KPI's target.
    let out = cli(&url, &["kpis", "--name", "mtta,open_orders", "--window", "24h,now"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    let header = table.lines().nth(1).unwrap_or_default();
    assert!(
        header
            .split_whitespace()
            .eq(["KPI", "WINDOW", "GROUP", "VALUE", "STATUS", "TARGET", "STATS"]),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("mtta ") && l.contains("p90 <= 15m")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("open_orders ") && l.contains(" now ")),
        "{table}"
    );
    // A calendar day without samples: a row that says so.
    let out = cli(&url, &["kpis", "--name", "mtta", "--window", "day:2099-01-01"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("mtta ") && l.contains("day:2099-01-01") && l.ends_with("no samples")),
        "{table}"
    );
    let out = cli(&url, &["kpis", "--window", "2h"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"no KPI has the window "2h""#) && err.contains("24h"),
        "{err}"
    );
    let out = cli(&url, &["kpis", "--name", "mtta", "--window", "now"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"mtta does not have the window "now"; it has: "#),
        "{err}"
    );
    let out = cli(&url, &["kpis", "--as-of", "yesterday"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"--as-of "yesterday" is neither a position nor an RFC 3339 time"#),
        "{err}"
    );
    for bad in ["-5", "1.5"] {
        let out = cli(&url, &["kpis", "--as-of", bad])?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "--as-of {bad:?} is not a position: a position is a whole number, 0 or more"
            )),
            "{err}"
        );
    }
    // With no --window, JSON has the table's windows: no calendar days.
    let out = cli(&url, &["kpis", "--name", "mtta", "--output", "json"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !text.contains("day:"), "{text}");
    // A server given as host:port is plain HTTP/2 there.
    let out = cli(url.trim_start_matches("http://"), &["kpis", "--name", "mtta"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    assert!(server.terminate(Duration::from_secs(20))?, "SIGTERM exits with success");
    assert!(server.stdout_lines().iter().any(|l| l.contains("stopped cleanly")));

    let server = OpsflowProcess::start(dir.path())?;
    let out = cli(&server.url(), &["read", "--output", "json"])?;
    assert_eq!(json_lines(&out).len(), 2, "events survive the restart");
    let out = cli(
        &server.url(),
        &["append", "order/PO-1", "order.shipped", SHIPPED, "--expected", "1"],
    )?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

#[test]
fn demo_moves_the_log_and_tail_follows() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = OpsflowProcess::start_with(dir.path(), &["--demo", "--demo-rate", "200"])?;
    let url = server.url();
    let mut tail = Command::new(opsflow_binary()?)
        .args(["tail", "--output", "json", "--server", &url])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1500));
    let _ = tail.kill();
    let out = tail.wait_with_output()?;
    let live = json_lines(&out);
    assert!(!live.is_empty(), "tail shows live demo events");
    let out = cli(&url, &["read", "--limit", "1000", "--output", "json"])?;
    let events = json_lines(&out);
    assert!(events.len() >= 20, "the demo appended {} events", events.len());
    let types: std::collections::BTreeSet<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    for prefix in ["order.", "incident.", "approval."] {
        assert!(
            types.iter().any(|t| t.starts_with(prefix)),
            "no {prefix} events in {types:?}"
        );
    }
    let out = cli(&url, &["audit", "verify", "--output", "json"])?;
    assert_eq!(json_lines(&out)[0]["ok"], true);
    Ok(())
}

#[test]
fn serve_rejects_unknown_config_keys_by_name() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("opsflow.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\n[log]\nmax_event_byte = 10\n")?;
    let out = Command::new(opsflow_binary()?)
        .args(["serve", "--config"])
        .arg(&config)
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_event_byte"), "{err}");
    let out = Command::new(opsflow_binary()?)
        .args(["serve", "--config"])
        .arg(&config)
        .env("OPSFLOW_LISTEN", "not-an-address")
        .output()?;
    assert!(!out.status.success());
    Ok(())
}

/// NATS server URLs are checked at start, before anything is opened: a URL that
/// does not parse, or credentials the client cannot use, are refused naming where
/// they came from (`--nats`, or the config key), and no data directory is made
/// (the log and views were opened first, and `dev --nats` named `nats.urls`).
#[test]
fn bad_nats_urls_are_refused_before_anything_is_opened() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    for (urls, said) in [
        ("not a url", "--nats: \"not a url\": "),
        (
            "nats://a:b@h1:4222,nats://c:d@h2:4222",
            "--nats: the server URLs carry different credentials",
        ),
    ] {
        let out = Command::new(opsflow_binary()?)
            .args(["dev", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .args(["--nats", urls])
            .output()?;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(said), "{err}");
        assert!(!data.exists(), "{urls}: the data directory was made");
    }
    // `--nats` replaces the environment's URLs, so those are not checked: dev starts.
    let mut dev = Command::new(opsflow_binary()?)
        .args(["dev", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .args(["--nats", "nats://127.0.0.1:1"])
        .env("OPSFLOW_NATS__URLS", "not a url")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut first = String::new();
    let read = std::io::BufRead::read_line(
        &mut std::io::BufReader::new(dev.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?),
        &mut first,
    );
    let _ = dev.kill();
    let _ = dev.wait();
    read?;
    assert_eq!(first.trim(), "opsflow is running", "dev did not start");
    std::fs::remove_dir_all(&data)?;
    let config = dir.path().join("opsflow.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\n[nats]\nurls = [\"bad url\"]\n")?;
    let out = Command::new(opsflow_binary()?)
        .args(["serve", "--config"])
        .arg(&config)
        .env("OPSFLOW_DATA_DIR", &data)
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config key `nats.urls`: \"bad url\": "), "{err}");
    assert!(!data.exists(), "serve: the data directory was made");
    Ok(())
}
