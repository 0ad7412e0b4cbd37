//! KPI and compliance views through real gRPC and HTTP clients: live, as of a
//! position or a time, rebuilt, restarted, and with definitions reloaded on change.

use std::time::Duration;

use opsflow_e2e::{client, event};
use opsflow_proto::v1::{self, views_client::ViewsClient};
use opsflow_server::{Config, Server};
use opsflow_testkit::TestServer;
use serde_json::{Value, json};
use tonic::Code;

async fn get(url: &str) -> anyhow::Result<(u16, Value)> {
    let r = reqwest::get(url).await?;
    let status = r.status().as_u16();
    let text = r.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

async fn views_client(url: &str) -> anyhow::Result<ViewsClient<tonic::transport::Channel>> {
    Ok(ViewsClient::connect(url.to_owned()).await?)
}

/// Appends one event over gRPC and returns its position.
/// `thing.happened` number `n` on the stream `things`.
async fn thing(url: &str, n: u64, time: &str, data: Value) -> anyhow::Result<u64> {
    append(url, "things", &n.to_string(), "thing.happened", time, data).await
}

async fn append(url: &str, stream: &str, id: &str, event_type: &str, time: &str, data: Value) -> anyhow::Result<u64> {
    let mut grpc = client(url).await?;
    let mut e = event("e2e", id, event_type, &data.to_string());
    let t: jiff::Timestamp = time.parse()?;
    e.time = Some(prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    });
    let r = grpc
        .append(v1::AppendRequest {
            stream: stream.into(),
            events: vec![e],
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(r.positions[0])
}

/// Waits until the live views include `position`.
async fn caught_up(server: &Server, position: u64) -> anyhow::Result<()> {
    let mut watch = server.views().watch_position();
    tokio::time::timeout(Duration::from_secs(10), watch.wait_for(|p| *p >= position))
        .await
        .map_err(|_| anyhow::anyhow!("views did not reach position {position}"))??;
    Ok(())
}

fn value<'a>(kpi: &'a Value, window: &str, group: &str) -> Option<&'a Value> {
    kpi["values"]
        .as_array()?
        .iter()
        .find(|v| v["window"] == window && v["group"] == group)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpis_and_compliance_live_as_of_and_rebuilt() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.views.gauges_interval_ms = 50).await?;
    let url = server.url();
    // A large order shipped without approval, then delivered a day after it was
    // placed, a day before its promise.
    let placed = append(
        &url,
        "order/SO-1",
        "1",
        "order.placed",
        "2026-11-01T10:00:00Z",
        json!({"order_id":"SO-1","customer":"acme","total":12000,"currency":"EUR","promised_by":"2026-11-03T10:00:00Z","channel":"web"}),
    )
    .await?;
    let shipped = append(
        &url,
        "order/SO-1",
        "2",
        "order.shipped",
        "2026-11-01T16:00:00Z",
        json!({"order_id":"SO-1","carrier":"DHL"}),
    )
    .await?;
    let delivered = append(
        &url,
        "order/SO-1",
        "3",
        "order.delivered",
        "2026-11-02T10:00:00Z",
        json!({"order_id":"SO-1"}),
    )
    .await?;
    assert_eq!((placed, shipped, delivered), (1, 2, 3));
    caught_up(&server.server, delivered).await?;

    // Live, over HTTP: cycle time is exactly one day (86,400 s, within the sketch's 1%).
    let (status, body) = get(&format!("{url}/v1/kpis?name=order_cycle_time,order_on_time_rate")).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["position"], 3);
    assert_eq!(body["clock"], "2026-11-02T10:00:00Z");
    let cycle = &body["kpis"][0];
    assert_eq!(cycle["name"], "order_cycle_time");
    let day = value(cycle, "24h", "").expect("a 24h value");
    let p50 = day["stats"]["p50"].as_f64().unwrap_or_default();
    assert!((p50 - 86_400.0).abs() <= 864.0, "p50 {p50}");
    assert_eq!(day["stats"]["count"], 1.0);
    assert_eq!(day["status"], "green");
    assert!(value(cycle, "24h", "channel=web").is_some(), "{cycle}");
    let on_time = value(&body["kpis"][1], "7d", "").expect("a 7d value");
    assert_eq!(on_time["stats"]["ratio"], 1.0);
    // Some windows only, as `opsflow kpis --window` asks (a list, or repeated).
    for query in ["window=24h,7d", "window=24h&window=7d"] {
        let (status, body) = get(&format!("{url}/v1/kpis?name=order_cycle_time&{query}")).await?;
        assert_eq!(status, 200, "{body}");
        let values = body["kpis"][0]["values"].as_array().cloned().unwrap_or_default();
        assert!(!values.is_empty(), "{body}");
        assert!(
            values.iter().all(|v| v["window"] == "24h" || v["window"] == "7d"),
            "{body}"
        );
    }
    let (status, body) = get(&format!("{url}/v1/kpis?name=order_cycle_time&window=2h")).await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["message"]
            .as_str()
            .map(|m| m.starts_with(r#"invalid window: order_cycle_time does not have the window "2h"; it has: "#)),
        Some(true),
        "{body}"
    );

    // A calendar day without samples is no value, not an error, while it is kept (31
    // days back from the view clock, 2026-11-02); an older one, or no date, is.
    for day in ["2026-10-20", "2026-10-03", "2026-11-10"] {
        let (status, body) = get(&format!("{url}/v1/kpis?name=order_cycle_time&window=day:{day}")).await?;
        assert_eq!(status, 200, "{day}: {body}");
        assert_eq!(body["kpis"][0]["calendar_days"], true, "{body}");
        assert_eq!(body["kpis"][0]["values"], json!([]), "{day}: {body}");
    }
    let (status, body) = get(&format!("{url}/v1/kpis?name=order_cycle_time&window=day:2026-11-02")).await?;
    assert_eq!(status, 200, "{body}");
    assert!(value(&body["kpis"][0], "day:2026-11-02", "").is_some(), "{body}");
    for (window, says) in [
        (
            "day:2026-10-02",
            r#""day:2026-10-02" is older than the 31 calendar days kept at the view clock (the oldest is day:2026-10-03)"#,
        ),
        (
            "day:2026-13-01",
            r#""day:2026-13-01" is not a calendar day: write day:YYYY-MM-DD"#,
        ),
        ("day:yesterday", r#""day:yesterday" is not a calendar day"#),
        // Read as a date by some parsers, but never how a day is written here.
        ("day:20261102", r#""day:20261102" is not a calendar day"#),
        ("day:2026-11-02T00:00", r#"is not a calendar day"#),
    ] {
        let (status, body) = get(&format!("{url}/v1/kpis?name=order_cycle_time&window={window}")).await?;
        assert_eq!(status, 400, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{window}: {message}");
    }

    // Current values keep no calendar days.
    let (status, body) = get(&format!("{url}/v1/kpis?name=open_orders&window=day:2026-11-02")).await?;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(r#"open_orders does not have the window "day:2026-11-02""#),
        "{message}"
    );
    let (_, body) = get(&format!("{url}/v1/kpis?name=open_orders")).await?;
    assert_eq!(body["kpis"][0]["calendar_days"], false, "{body}");

    // The same over gRPC.
    let mut views = views_client(&url).await?;
    let grpc = views
        .get_kpis(v1::GetKpisRequest {
            names: vec!["order_cycle_time".into()],
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(grpc.position, 3);
    let kpi = &grpc.kpis[0];
    let v = kpi
        .values
        .iter()
        .find(|v| v.window == "24h" && v.group.is_empty())
        .expect("24h");
    assert_eq!(v.stats["p50"], p50);
    assert_eq!(v.status, i32::from(v1::Status::Green));

    // Compliance: the shipment broke the approval control, with evidence.
    let (_, body) = get(&format!(
        "{url}/v1/compliance?name=large_orders_approved_before_shipping"
    ))
    .await?;
    let control = &body["controls"][0];
    assert_eq!(control["status"], "red");
    assert_eq!(control["violations_total"], 1);
    let violation = &control["violations"][0];
    assert_eq!(violation["key"], "SO-1");
    assert_eq!(violation["position"], 2);
    // Each violation names its control and the definitions version it was judged by.
    assert_eq!(violation["control"], "large_orders_approved_before_shipping");
    assert_eq!(violation["definitions_version"], body["definitions_version"]);
    assert!(
        violation["definitions_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("sha256:")),
        "{body}"
    );
    assert!(
        violation["evidence"].as_array().is_some_and(|e| e.contains(&json!(2))),
        "{violation}"
    );

    // As of position 1 (only the placement): no violation, no cycle time yet.
    let (_, body) = get(&format!("{url}/v1/compliance?as_of=1")).await?;
    assert_eq!(body["position"], 1);
    assert_eq!(body["controls"][0]["violations_total"], 0);
    let as_of = views
        .get_kpis(v1::GetKpisRequest {
            as_of: Some(v1::AsOf {
                point: Some(v1::as_of::Point::Position(2)),
            }),
            names: vec!["order_cycle_time".into()],
        })
        .await?
        .into_inner();
    assert_eq!(as_of.position, 2);
    let windows: Vec<&str> = as_of.kpis[0].values.iter().map(|v| v.window.as_str()).collect();
    for window in ["1h", "24h", "7d"] {
        assert!(windows.contains(&window), "no {window} window: {as_of:?}");
    }
    for value in &as_of.kpis[0].values {
        assert_eq!(value.headline, None, "{as_of:?}");
        assert_eq!(value.stats.get("count"), Some(&0.0), "{as_of:?}");
    }
    // As of a time before anything was recorded: empty views at position 0.
    let (_, body) = get(&format!("{url}/v1/kpis?as_of=2000-01-01T00:00:00Z")).await?;
    assert_eq!(body["position"], 0);
    // As of now: everything.
    let now = jiff::Timestamp::now().to_string();
    let (_, body) = get(&format!("{url}/v1/kpis?as_of={now}")).await?;
    assert_eq!(body["position"], 3);

    // Bad requests name the problem.
    let (status, body) = get(&format!("{url}/v1/kpis?as_of=yesterday")).await?;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap_or_default().contains("as_of"),
        "{body}"
    );
    let (status, body) = get(&format!("{url}/v1/kpis?name=no_such_kpi")).await?;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no_such_kpi")
    );
    assert_eq!(body["error"]["name"], "no_such_kpi", "{body}");
    // Every unknown name at once.
    let (status, body) = get(&format!("{url}/v1/kpis?name=mtta,nope,nope2")).await?;
    assert_eq!(status, 404, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("no KPIs named `nope`, `nope2`; the KPIs are: "),
        "{body}"
    );
    assert_eq!(body["error"]["names"], json!(["nope", "nope2"]), "{body}");
    let err = views
        .get_compliance(v1::GetComplianceRequest {
            names: vec!["nope".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // The controls are listed, not the KPIs; the detail names the view.
    assert!(
        err.message().starts_with("no control named `nope`; the controls are: "),
        "{}",
        err.message()
    );
    assert!(!err.message().contains("order_cycle_time"), "{}", err.message());
    let detail = err
        .metadata()
        .get("opsflow-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(detail.contains(r#""name":"nope""#), "{detail}");
    // A view of the other kind is not found either, and the message says what it is.
    let err = views
        .get_compliance(v1::GetComplianceRequest {
            names: vec!["order_cycle_time".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "`order_cycle_time` is a KPI, not a control");
    let (status, body) = get(&format!("{url}/v1/kpis?name=order_cycle_time,mtta&as_of=1")).await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&format!("{url}/v1/compliance?name=order_cycle_time&as_of=1")).await?;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    for (query, field) in [
        ("/v1/kpis?as_of=99999999", "as_of"),
        // How the views will stand is not known yet.
        ("/v1/kpis?as_of=2099-01-01T00:00:00Z", "as_of"),
        ("/v1/kpis?as_of=", "as_of"),
        ("/v1/kpis?window=", "window"),
        ("/v1/kpis?name=", "name"),
        // `+01:00` not written %2B: the message says so.
        ("/v1/kpis?as_of=2026-11-20T00:00:00+01:00", "as_of"),
        ("/v1/kpis?as_of=18446744073709551616", "as_of"),
        ("/v1/compliance?window=24h", "window"),
        // Repeated parameters are refused, not taken once (a repeated name adds).
        ("/v1/kpis?as_of=1&as_of=2", "as_of"),
        ("/v1/events?limit=1&limit=2", "limit"),
    ] {
        let (status, body) = get(&format!("{url}{query}")).await?;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        if query.contains("2099") {
            assert!(message.contains("is in the future"), "{message}");
        }
        if query.contains("1844") {
            assert!(message.contains("out of range"), "{message}");
        }
        if query.contains("+01:00") {
            assert!(message.contains("write it %2B"), "{message}");
        }
        if query.ends_with('=') {
            assert!(message.contains("is empty"), "{message}");
        }
    }
    let err = views
        .get_kpis(v1::GetKpisRequest {
            as_of: Some(v1::AsOf {
                point: Some(v1::as_of::Point::Time(prost_types::Timestamp {
                    seconds: 4_070_908_800,
                    nanos: 0,
                })),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    // A time (or position) the views have not reached yet: valid later.
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    let err = views
        .get_kpis(v1::GetKpisRequest {
            as_of: Some(v1::AsOf {
                point: Some(v1::as_of::Point::Position(1_000_000)),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("past the head"), "{err:?}");
    // Nanos outside 0..1e9 are refused, as in an appended event's time.
    for nanos in [-5, 2_000_000_000] {
        let err = views
            .get_kpis(v1::GetKpisRequest {
                as_of: Some(v1::AsOf {
                    point: Some(v1::as_of::Point::Time(prost_types::Timestamp {
                        seconds: 1_763_719_200,
                        nanos,
                    })),
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains("as_of.time") && err.message().contains("nanos"),
            "{err:?}"
        );
    }
    // A repeated name adds to the list.
    let (status, body) = get(&format!("{url}/v1/kpis?name=order_cycle_time&name=mtta")).await?;
    assert_eq!(status, 200, "{body}");
    let named: std::collections::BTreeSet<&str> = body["kpis"]
        .as_array()
        .map(|k| k.iter().filter_map(|k| k["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(named, ["mtta", "order_cycle_time"].into(), "{body}");

    // Rebuild from position 1 gives the same answer.
    let rebuilt = views
        .rebuild_view(v1::RebuildViewRequest {
            name: "order_cycle_time".into(),
        })
        .await?
        .into_inner();
    assert_eq!((rebuilt.events, rebuilt.position), (3, 3));
    let again = views
        .get_kpis(v1::GetKpisRequest {
            names: vec!["order_cycle_time".into()],
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(again.kpis, grpc.kpis);
    let err = views
        .rebuild_view(v1::RebuildViewRequest { name: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // An empty name is a bad request, as RebuildView says of its own.
    let err = views
        .get_kpis(v1::GetKpisRequest {
            names: vec!["mtta".into(), String::new()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("names[1]"), "{err:?}");
    let err = views
        .get_compliance(v1::GetComplianceRequest {
            names: vec![String::new()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Every KPI headline is a Prometheus gauge (calendar days aside).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    let all = views.get_kpis(v1::GetKpisRequest::default()).await?.into_inner();
    let mut gauges = 0;
    for kpi in &all.kpis {
        for value in kpi.values.iter().filter(|v| !v.window.starts_with("day:")) {
            let Some(headline) = value.headline else { continue };
            let series = format!(
                r#"opsflow_kpi{{name="{}",window="{}",group="{}"}} "#,
                kpi.name, value.window, value.group
            );
            let line = metrics.lines().find(|l| l.starts_with(&series));
            let gauge: Option<f64> = line.and_then(|l| l[series.len()..].parse().ok());
            assert_eq!(gauge, Some(headline), "{series}in:\n{metrics}");
            gauges += 1;
        }
        // Its status too, with or without a headline: 0 none, 1 green, 2 amber, 3 red.
        for value in kpi.values.iter().filter(|v| !v.window.starts_with("day:")) {
            let series = format!(
                r#"opsflow_kpi_status{{name="{}",window="{}",group="{}"}} "#,
                kpi.name, value.window, value.group
            );
            let status = match v1::Status::try_from(value.status) {
                Ok(v1::Status::Green) => "1",
                Ok(v1::Status::Amber) => "2",
                Ok(v1::Status::Red) => "3",
                _ => "0",
            };
            assert!(
                metrics.lines().any(|l| l == format!("{series}{status}")),
                "{series}{status}"
            );
        }
    }
    assert!(gauges > 0, "no KPI has a headline: {all:?}");
    // And every control: status, violations, pending obligations, checks.
    let compliance = views
        .get_compliance(v1::GetComplianceRequest::default())
        .await?
        .into_inner();
    assert!(!compliance.controls.is_empty());
    for control in &compliance.controls {
        let status = match v1::Status::try_from(control.status) {
            Ok(v1::Status::Green) => 1,
            Ok(v1::Status::Amber) => 2,
            Ok(v1::Status::Red) => 3,
            _ => 0,
        };
        for (metric, value) in [
            ("opsflow_control_status", status),
            ("opsflow_control_violations", control.violations_total),
            ("opsflow_control_pending", control.pending.len() as u64),
            ("opsflow_control_checked", control.checked),
        ] {
            let line = format!(r#"{metric}{{name="{}"}} {value}"#, control.name);
            assert!(metrics.lines().any(|l| l == line), "no {line} in:\n{metrics}");
        }
    }
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"opsflow_control_status{name="large_orders_approved_before_shipping"} 3"#),
        "SO-1 (12,000) shipped without an approval: red"
    );
    // No view is partial (none restarted empty after a definitions change).
    for name in all
        .kpis
        .iter()
        .map(|k| &k.name)
        .chain(compliance.controls.iter().map(|c| &c.name))
    {
        let line = format!(r#"opsflow_view_partial{{view="{name}"}} 0"#);
        assert!(metrics.lines().any(|l| l == line), "no {line}");
    }
    server.shutdown().await
}

const COUNT_KPI: &str = "kpis:\n  - name: things\n    kind: count\n    on: { type: thing.happened }\n";
const COUNT_BIG_KPI: &str =
    "kpis:\n  - name: things\n    kind: count\n    on: { type: thing.happened, if: \"event.data.n > 1\" }\n";

async fn things(url: &str) -> anyhow::Result<(Value, Value)> {
    let (_, body) = get(&format!("{url}/v1/kpis?name=things")).await?;
    let count = value(&body["kpis"][0], "7d", "").map_or(Value::Null, |v| v["stats"]["count"].clone());
    Ok((count, body))
}

/// A server on a free port with data in `data`, reloading the definitions in `defs`
/// every 100 ms.
fn watching(data: &std::path::Path, defs: &std::path::Path) -> anyhow::Result<Config> {
    Ok(Config {
        data_dir: data.to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
        definitions: opsflow_server::DefinitionsConfig {
            dir: Some(defs.to_path_buf()),
            reload_interval_ms: 100,
        },
        ..Config::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_survive_restart_and_follow_definition_changes() -> anyhow::Result<()> {
    let defs = tempfile::tempdir()?;
    std::fs::write(defs.path().join("things.yaml"), COUNT_KPI)?;
    let data = tempfile::tempdir()?;
    let config = watching(data.path(), defs.path())?;
    let server = Server::start(&config).await?;
    let url = format!("http://{}", server.addr());
    for n in 1..=3 {
        thing(&url, n, "2026-11-01T10:00:00Z", json!({ "n": n })).await?;
    }
    caught_up(&server, 3).await?;
    assert_eq!(things(&url).await?.0, 3.0);
    server.shutdown().await?;

    // Restarted from its checkpoint: nothing counted twice.
    let server = Server::start(&config).await?;
    let url = format!("http://{}", server.addr());
    assert_eq!(server.views().position(), 3);
    thing(&url, 4, "2026-11-01T10:01:00Z", json!({ "n": 4 })).await?;
    caught_up(&server, 4).await?;
    assert_eq!(things(&url).await?.0, 4.0);

    // A changed definition is picked up and its view rebuilt: only n > 1 counts now.
    let before = things(&url).await?.1["definitions_version"].clone();
    std::fs::write(defs.path().join("things.yaml"), COUNT_BIG_KPI)?;
    let mut rebuilt = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (count, body) = things(&url).await?;
        if body["definitions_version"] != before && count == 3.0 && body["kpis"][0]["rebuilding"] == false {
            rebuilt = true;
            break;
        }
    }
    assert!(
        rebuilt,
        "the changed definition was not applied: {:?}",
        things(&url).await?
    );

    // A broken edit is refused: the last good set keeps serving, /readyz says why.
    std::fs::write(
        defs.path().join("things.yaml"),
        "kpis:\n  - name: things\n    kind: nonsense\n",
    )?;
    let mut reported = Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, ready) = get(&format!("{url}/readyz")).await?;
        if ready["views"]["definitions_error"].is_string() {
            reported = ready["views"]["definitions_error"].clone();
            break;
        }
    }
    let message = reported.as_str().unwrap_or_default();
    assert!(message.contains("things.yaml:3"), "{reported}");
    assert_eq!(things(&url).await?.0, 3.0);
    // And /metrics, for an alert.
    let failed = format!(
        r#"opsflow_definitions_reload_failed{{dir="{}"}} 1"#,
        defs.path().display()
    );
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    assert!(text.lines().any(|l| l == failed), "no {failed}");
    server.shutdown().await
}

/// The `/metrics` lines of the views' series.
async fn view_metrics(url: &str) -> anyhow::Result<Vec<String>> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("opsflow_kpi{") || l.starts_with("opsflow_view_eval_errors_total{"))
        .map(str::to_owned)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_views_and_count_evaluation_failures() -> anyhow::Result<()> {
    let defs = tempfile::tempdir()?;
    let grouped = "kpis:\n  - name: things\n    kind: count\n    on: { type: thing.happened }\n    group_by: { g: event.data.g }\n";
    std::fs::write(defs.path().join("things.yaml"), grouped)?;
    let broken = "kpis:\n  - name: keyed\n    kind: open\n    key: event.data.nope\n    open: [{ type: thing.happened }]\n    close: [thing.closed]\n";
    std::fs::write(defs.path().join("keyed.yaml"), broken)?;
    let data = tempfile::tempdir()?;
    let mut config = watching(data.path(), defs.path())?;
    config.views.gauges_interval_ms = 50;
    let server = Server::start(&config).await?;
    let url = format!("http://{}", server.addr());
    for n in 1..=2 {
        let group = if n == 1 { "a\"b\\c" } else { "plain" };
        thing(&url, n, "2026-11-01T10:00:00Z", json!({ "n": n, "g": group })).await?;
    }
    caught_up(&server, 2).await?;
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = view_metrics(&url).await?;
        if lines.iter().any(|l| l.contains(r#"view="keyed"} 2"#)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Label values escaped as the text format wants (the group `g=a"b\\c` has its
    // value's backslash escaped already).
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(r#"opsflow_kpi{name="things",window="24h",group="g=a\"b\\\\c"} 1"#)),
        "{lines:#?}"
    );
    // Both events failed the key `event.data.nope`.
    assert!(
        lines.contains(&r#"opsflow_view_eval_errors_total{view="keyed"} 2"#.to_owned()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&r#"opsflow_view_eval_errors_total{view="things"} 0"#.to_owned()),
        "{lines:#?}"
    );

    // A KPI that is gone leaves no series behind.
    std::fs::remove_file(defs.path().join("things.yaml"))?;
    let mut gone = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        lines = view_metrics(&url).await?;
        if !lines.iter().any(|l| l.contains("things")) {
            gone = true;
            break;
        }
    }
    assert!(gone, "series of a removed KPI are still exported: {lines:#?}");
    let metrics = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    assert!(metrics.contains("opsflow_view_lag_seconds"), "{metrics}");
    opsflow_e2e::assert_described(&metrics);
    server.shutdown().await
}
