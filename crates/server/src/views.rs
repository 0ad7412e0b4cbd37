//! The views surfaces: gRPC `opsflow.v1.Views`, HTTP `GET /v1/kpis`,
//! `GET /v1/compliance`, `POST /v1/views/{name}/rebuild`, and every KPI as a
//! Prometheus gauge.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use opsflow_proto::v1;
use opsflow_views::{Answer, AsOf, ControlReport, KpiReport, KpiValue, Status, Views};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response};

use crate::ApiError;

mod gauges;
pub use gauges::{ViewGauges, publish_gauges};

/// `opsflow.v1.Views`.
#[derive(Clone)]
pub struct ViewsService {
    pub views: Views,
    pub shutdown: CancellationToken,
}

/// An empty name among `names` is a bad request (as `RebuildView` says of its
/// `name`), not an unknown view.
fn no_empty_name(names: &[String]) -> Result<(), ApiError> {
    match names.iter().position(String::is_empty) {
        Some(i) => Err(ApiError::invalid(
            format!("names[{i}]"),
            "is empty; give the name of a KPI or control, or no names for all",
        )),
        None => Ok(()),
    }
}

fn as_of_from_proto(as_of: Option<v1::AsOf>) -> Result<AsOf, ApiError> {
    match as_of.and_then(|a| a.point) {
        None => Ok(AsOf::Live),
        Some(v1::as_of::Point::Position(p)) => Ok(AsOf::Position(p)),
        // Checked as an appended event's time is (nanos within 0..1e9).
        Some(v1::as_of::Point::Time(t)) => opsflow_proto::convert::from_timestamp(&t, "as_of.time")
            .map(AsOf::Time)
            .map_err(ApiError::from),
    }
}

/// `as_of=1234` (a position) or `as_of=2026-11-21T10:00:00Z` (a time); absent is live.
pub fn parse_as_of(text: Option<&str>) -> Result<AsOf, ApiError> {
    let Some(text) = text.map(str::trim) else {
        return Ok(AsOf::Live);
    };
    if text.is_empty() {
        return Err(ApiError::invalid(
            "as_of",
            "is empty: give a position or an RFC 3339 time, or leave as_of out for the live views",
        ));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().map(AsOf::Position).map_err(|_| {
            ApiError::invalid(
                "as_of",
                format!("position {text} is out of range (at most {})", u64::MAX),
            )
        });
    }
    if text.parse::<f64>().is_ok() {
        // `-5`, `1.5`, `1e3`: meant as a position, not a time.
        return Err(ApiError::invalid(
            "as_of",
            format!("{text:?} is not a position: a position is a whole number, 0 or more"),
        ));
    }
    let time: jiff::Timestamp = text.parse().map_err(|e| {
        // `+01:00` unescaped in a URL query arrives as ` 01:00`; a date and a time
        // with a space between them is not RFC 3339.
        let hint = match (text.contains(' '), text.contains('T')) {
            (true, true) => "; in a URL query a `+` reads as a space: write it %2B",
            (true, false) => "; write a `T` between the date and the time, and an offset: e.g. 2026-11-21T10:00:00Z",
            _ => "",
        };
        ApiError::invalid(
            "as_of",
            format!("{text:?} is neither a position nor an RFC 3339 time ({e}){hint}"),
        )
    })?;
    i64::try_from(time.as_nanosecond())
        .map(AsOf::Time)
        .map_err(|_| ApiError::invalid("as_of", "is out of range"))
}

fn timestamp(nanos: i64) -> Option<prost_types::Timestamp> {
    (nanos > 0).then(|| prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    })
}

fn rfc3339(nanos: i64) -> Value {
    if nanos <= 0 {
        return Value::Null;
    }
    jiff::Timestamp::from_nanosecond(i128::from(nanos)).map_or(Value::Null, |t| Value::String(t.to_string()))
}

fn status_proto(status: Status) -> i32 {
    match status {
        Status::None => v1::Status::None,
        Status::Green => v1::Status::Green,
        Status::Amber => v1::Status::Amber,
        Status::Red => v1::Status::Red,
    }
    .into()
}

fn kpi_value_proto(value: &KpiValue) -> v1::KpiValue {
    v1::KpiValue {
        window: value.window.clone(),
        group: value.group.clone(),
        stats: value.stats.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        headline: value.headline,
        status: status_proto(value.status),
    }
}

fn kpis_proto(answer: Answer<KpiReport>) -> v1::GetKpisResponse {
    v1::GetKpisResponse {
        position: answer.position,
        clock: timestamp(answer.clock),
        definitions_version: answer.definitions_version,
        kpis: answer
            .items
            .iter()
            .map(|k| v1::Kpi {
                name: k.name.clone(),
                description: k.description.clone(),
                kind: k.kind.clone(),
                target: k.target.clone().unwrap_or_default(),
                rebuilding: answer.rebuilding.contains(&k.name),
                values: k.values.iter().map(kpi_value_proto).collect(),
                calendar_days: k.calendar_days,
            })
            .collect(),
    }
}

fn controls_proto(answer: Answer<ControlReport>) -> v1::GetComplianceResponse {
    let version = answer.definitions_version.clone();
    v1::GetComplianceResponse {
        position: answer.position,
        clock: timestamp(answer.clock),
        definitions_version: answer.definitions_version,
        controls: answer
            .items
            .iter()
            .map(|c| v1::Control {
                name: c.name.clone(),
                description: c.description.clone(),
                kind: c.kind.clone(),
                status: status_proto(c.status),
                checked: c.checked,
                violations_total: c.violations_total,
                violations: c
                    .violations
                    .iter()
                    .map(|v| v1::Violation {
                        key: v.key.clone(),
                        message: v.message.clone(),
                        evidence: v.evidence.clone(),
                        at: timestamp(v.at),
                        position: v.position,
                        control: c.name.clone(),
                        definitions_version: version.clone(),
                    })
                    .collect(),
                pending: c
                    .pending
                    .iter()
                    .map(|o| v1::Obligation {
                        key: o.key.clone(),
                        due: timestamp(o.due),
                        evidence: o.evidence.clone(),
                    })
                    .collect(),
                rebuilding: answer.rebuilding.contains(&c.name),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl v1::views_server::Views for ViewsService {
    async fn get_kpis(
        &self,
        request: Request<v1::GetKpisRequest>,
    ) -> Result<Response<v1::GetKpisResponse>, tonic::Status> {
        let req = request.into_inner();
        let as_of = as_of_from_proto(req.as_of)?;
        no_empty_name(&req.names)?;
        let answer = self.views.kpis(as_of, &req.names).await.map_err(ApiError::from)?;
        Ok(Response::new(kpis_proto(answer)))
    }

    async fn get_compliance(
        &self,
        request: Request<v1::GetComplianceRequest>,
    ) -> Result<Response<v1::GetComplianceResponse>, tonic::Status> {
        let req = request.into_inner();
        let as_of = as_of_from_proto(req.as_of)?;
        no_empty_name(&req.names)?;
        let answer = self.views.controls(as_of, &req.names).await.map_err(ApiError::from)?;
        Ok(Response::new(controls_proto(answer)))
    }

    async fn rebuild_view(
        &self,
        request: Request<v1::RebuildViewRequest>,
    ) -> Result<Response<v1::RebuildViewResponse>, tonic::Status> {
        let name = request.into_inner().name;
        if name.is_empty() {
            return Err(ApiError::invalid("name", "is empty; give the name of the KPI or control to rebuild").into());
        }
        let report = self
            .views
            .rebuild(vec![name.clone()], self.shutdown.clone())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(v1::RebuildViewResponse {
            name,
            events: report.events,
            position: report.position,
            seconds: report.seconds,
        }))
    }
}

/// State of the views HTTP routes.
#[derive(Clone)]
pub struct ViewsHttp {
    pub views: Views,
    pub shutdown: CancellationToken,
}

/// `GET /v1/kpis`, `GET /v1/compliance`, `POST /v1/views/{name}/rebuild`.
pub fn router(state: ViewsHttp) -> axum::Router {
    axum::Router::new()
        .route("/v1/kpis", get(get_kpis))
        .route("/v1/compliance", get(get_compliance))
        .route("/v1/views/{name}/rebuild", post(rebuild))
        .with_state(state)
}

/// The view names asked for (`name=a,b`); a parameter not in `known` is refused,
/// naming it.
fn names(query: &HashMap<String, String>, known: &[&str]) -> Result<Vec<String>, ApiError> {
    crate::http::only_params(query, known)?;
    list(query, "name")
}

/// A comma-separated (or repeated) query parameter as a list; given but empty
/// (`?window=`) is an error, as an empty `as_of` is: leaving it out means all.
fn list(query: &HashMap<String, String>, key: &str) -> Result<Vec<String>, ApiError> {
    let Some(value) = query.get(key) else {
        return Ok(Vec::new());
    };
    let items: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if items.is_empty() {
        return Err(ApiError::invalid(
            key,
            format!("is empty: name one or more, or leave {key} out for all"),
        ));
    }
    Ok(items)
}

/// Keeps of each KPI the values of `windows` only (all when empty). A window no KPI
/// asked for has (`names`: those asked for; empty, all) is an error naming the
/// windows they do have; but a calendar day (`day:YYYY-MM-DD`) of KPIs with
/// calendar days that has no samples is no value, not an error, unless it is older
/// than the days kept at the view clock.
pub fn keep_windows(response: &mut v1::GetKpisResponse, names: &[String], windows: &[String]) -> Result<(), ApiError> {
    if windows.is_empty() {
        return Ok(());
    }
    let known: std::collections::BTreeSet<&str> = response
        .kpis
        .iter()
        .flat_map(|k| k.values.iter().map(|v| v.window.as_str()))
        .collect();
    let has_days = response.kpis.iter().any(|k| k.calendar_days);
    let clock_day = response.clock.as_ref().map_or(0, |c| c.seconds.div_euclid(86_400));
    for window in windows {
        let Some(date) = window.strip_prefix("day:") else {
            continue;
        };
        if known.contains(window.as_str()) || !has_days {
            continue;
        }
        // Only as the views write a day (other spellings jiff reads, such as
        // 20261121, would match nothing).
        let day = date
            .parse::<jiff::civil::Date>()
            .ok()
            .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .map(|z| z.timestamp().as_second().div_euclid(86_400))
            .filter(|day| opsflow_views::day_label(*day) == date);
        let Some(day) = day else {
            return Err(ApiError::invalid(
                "window",
                format!("{window:?} is not a calendar day: write day:YYYY-MM-DD, e.g. day:2026-11-21"),
            ));
        };
        let oldest = clock_day - (opsflow_views::DAYS_KEPT - 1);
        if day < oldest {
            return Err(ApiError::invalid(
                "window",
                format!(
                    "{window:?} is older than the {} calendar days kept at the view clock (the oldest is day:{}); \
                     ask as of a time within {} days after it",
                    opsflow_views::DAYS_KEPT,
                    opsflow_views::day_label(oldest),
                    opsflow_views::DAYS_KEPT
                ),
            ));
        }
    }
    let is_day_kept = |w: &str| has_days && w.starts_with("day:");
    if let Some(unknown) = windows.iter().find(|w| !known.contains(w.as_str()) && !is_day_kept(w)) {
        let (which, has) = match names {
            [] => ("no KPI has".to_string(), "the windows are"),
            [one] => (format!("{one} does not have"), "it has"),
            many => (format!("{} do not have", many.join(", ")), "they have"),
        };
        let known: Vec<&str> = known.into_iter().collect();
        return Err(ApiError::invalid(
            "window",
            format!("{which} the window {unknown:?}; {has}: {}", known.join(", ")),
        ));
    }
    for kpi in &mut response.kpis {
        kpi.values.retain(|v| windows.contains(&v.window));
    }
    Ok(())
}

/// The proto form of an as-of point (`None`: live), for clients.
pub fn as_of_proto(as_of: AsOf) -> Option<v1::AsOf> {
    let point = match as_of {
        AsOf::Live => return None,
        AsOf::Position(p) => v1::as_of::Point::Position(p),
        AsOf::Time(nanos) => v1::as_of::Point::Time(prost_types::Timestamp {
            seconds: nanos.div_euclid(1_000_000_000),
            nanos: nanos.rem_euclid(1_000_000_000) as i32,
        }),
    };
    Some(v1::AsOf { point: Some(point) })
}

/// `green`, `amber`, `red` or `none`.
pub fn status_name(status: i32) -> &'static str {
    match v1::Status::try_from(status) {
        Ok(v1::Status::Green) => "green",
        Ok(v1::Status::Amber) => "amber",
        Ok(v1::Status::Red) => "red",
        _ => "none",
    }
}

fn json_time(ts: Option<&prost_types::Timestamp>) -> Value {
    rfc3339(ts.map_or(0, |t| {
        t.seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(t.nanos))
    }))
}

/// A stat as JSON: a whole number as an integer (a count is `3`, not `3.0`), any
/// other as it is; one that is not finite (none should be) as `null`.
fn json_number(x: f64) -> Value {
    // Whole numbers up to 2^53 are exact in both forms.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if x.fract() == 0.0 && x.abs() <= EXACT {
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

/// JSON of a KPI answer: `GET /v1/kpis` and `opsflow kpis --output json`.
pub fn kpis_json(r: &v1::GetKpisResponse) -> Value {
    json!({
        "position": r.position,
        "clock": json_time(r.clock.as_ref()),
        "definitions_version": r.definitions_version,
        "kpis": r.kpis.iter().map(|k| json!({
            "name": k.name,
            "description": k.description,
            "kind": k.kind,
            "target": (!k.target.is_empty()).then_some(&k.target),
            "rebuilding": k.rebuilding,
            "calendar_days": k.calendar_days,
            "values": k.values.iter().map(|v| json!({
                "window": v.window,
                "group": v.group,
                "stats": v.stats.iter().map(|(k, x)| (k.clone(), json_number(*x))).collect::<serde_json::Map<_, _>>(),
                "headline": v.headline.map(json_number),
                "status": status_name(v.status),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// JSON of a compliance answer: `GET /v1/compliance` and `opsflow compliance --output json`.
pub fn controls_json(r: &v1::GetComplianceResponse) -> Value {
    json!({
        "position": r.position,
        "clock": json_time(r.clock.as_ref()),
        "definitions_version": r.definitions_version,
        "controls": r.controls.iter().map(|c| json!({
            "name": c.name,
            "description": c.description,
            "kind": c.kind,
            "status": status_name(c.status),
            "checked": c.checked,
            "violations_total": c.violations_total,
            "rebuilding": c.rebuilding,
            "violations": c.violations.iter().map(|v| json!({
                "key": v.key,
                "message": v.message,
                "evidence": v.evidence,
                "at": json_time(v.at.as_ref()),
                "position": v.position,
                "control": v.control,
                "definitions_version": v.definitions_version,
            })).collect::<Vec<_>>(),
            "pending": c.pending.iter().map(|o| json!({
                "key": o.key,
                "due": json_time(o.due.as_ref()),
                "evidence": o.evidence,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

async fn get_kpis(
    State(state): State<ViewsHttp>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let query = crate::http::query_params(query)?;
    let as_of = parse_as_of(query.get("as_of").map(String::as_str))?;
    let names = names(&query, &["name", "as_of", "window"])?;
    let mut response = kpis_proto(state.views.kpis(as_of, &names).await?);
    keep_windows(&mut response, &names, &list(&query, "window")?)?;
    Ok(Json(kpis_json(&response)))
}

async fn get_compliance(
    State(state): State<ViewsHttp>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let query = crate::http::query_params(query)?;
    let as_of = parse_as_of(query.get("as_of").map(String::as_str))?;
    let answer = state.views.controls(as_of, &names(&query, &["name", "as_of"])?).await?;
    Ok(Json(controls_json(&controls_proto(answer))))
}

async fn rebuild(State(state): State<ViewsHttp>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let report = state.views.rebuild(vec![name.clone()], state.shutdown.clone()).await?;
    Ok(Json(json!({
        "name": name,
        "events": report.events,
        "position": report.position,
        "seconds": report.seconds,
    })))
}

/// The definitions in force and the last reload problem, for `/readyz`.
#[derive(Clone, Default)]
pub struct DefinitionsStatus {
    inner: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// The directory reloaded, as `/metrics` labels it.
    dir: String,
}

impl DefinitionsStatus {
    /// The status of reloading `dir` (none: the built-in set, never reloaded, and
    /// no metric).
    fn new(dir: Option<&std::path::Path>) -> Self {
        let status = DefinitionsStatus {
            inner: Default::default(),
            dir: dir.map(|d| d.display().to_string()).unwrap_or_default(),
        };
        if dir.is_some() {
            status.set(None);
        }
        status
    }

    /// The last reload error, if the directory currently does not check.
    pub fn error(&self) -> Option<String> {
        self.inner.lock().map(|e| e.clone()).unwrap_or_default()
    }

    fn set(&self, error: Option<String>) {
        // On /metrics too, for an alert: 1 while the directory on disk does not
        // check (the last definitions that did stay in force).
        metrics::gauge!("opsflow_definitions_reload_failed", "dir" => self.dir.clone()).set(if error.is_some() {
            1.0
        } else {
            0.0
        });
        if let Ok(mut e) = self.inner.lock() {
            *e = error;
        }
    }
}

/// Loads the configured definitions (or the built-in set), refusing a directory
/// that does not check with every problem listed.
pub fn load_definitions(config: &crate::DefinitionsConfig) -> anyhow::Result<opsflow_definitions::Definitions> {
    match &config.dir {
        None => Ok(opsflow_definitions::builtin()),
        Some(dir) => opsflow_definitions::Definitions::load_dir(dir)
            .map_err(|errors| anyhow::anyhow!("definitions in {} do not check:\n{errors}", dir.display())),
    }
}

/// The running views: the runtime, its supervised tasks, and the reload status.
pub struct RunningViews {
    pub views: Views,
    pub status: DefinitionsStatus,
    /// The views' metrics, for `/metrics`.
    pub gauges: ViewGauges,
    /// Stopped (after `shutdown` is cancelled) before the log closes.
    pub handles: Vec<tokio::task::JoinHandle<()>>,
}

/// Opens the views beside the log and starts keeping them up to date, publishing
/// the KPI gauges and reloading the definitions directory when it changes.
pub async fn start(
    config: &crate::Config,
    log: &opsflow_log::EventLog,
    tasks: &crate::Tasks,
    shutdown: &CancellationToken,
) -> anyhow::Result<RunningViews> {
    use anyhow::Context;
    let defs_config = config.definitions.clone();
    let definitions = tokio::task::spawn_blocking(move || load_definitions(&defs_config)).await??;
    let options = opsflow_views::ViewsOptions {
        snapshot_every: config.views.snapshot_every,
        checkpoint_interval: Duration::from_millis(config.views.checkpoint_interval_ms),
        ..Default::default()
    };
    let dir = config.data_dir.join("views");
    let views = Views::open_async(log.clone(), definitions, &dir, options)
        .await
        .with_context(|| format!("cannot open the views in {}", dir.display()))?;
    let mut handles = Vec::new();
    let (v, token) = (views.clone(), shutdown.clone());
    handles.push(tasks.spawn("views", async move { Ok(v.run(token).await?) }));
    let gauges = ViewGauges::default();
    handles.push(tasks.spawn(
        "kpi-gauges",
        publish_gauges(
            views.clone(),
            gauges.clone(),
            Duration::from_millis(config.views.gauges_interval_ms),
            shutdown.clone(),
        ),
    ));
    let status = DefinitionsStatus::new(config.definitions.dir.as_deref());
    if let Some(dir) = config.definitions.dir.clone() {
        let every = Duration::from_millis(config.definitions.reload_interval_ms);
        handles.push(tasks.spawn(
            "definitions-reload",
            reload(dir, views.clone(), status.clone(), every, shutdown.clone()),
        ));
    }
    Ok(RunningViews {
        views,
        status,
        gauges,
        handles,
    })
}

/// Polls the definitions directory; a changed directory that checks is put in
/// force, one that does not is refused (the last good set stays) and reported.
async fn reload(
    dir: std::path::PathBuf,
    views: Views,
    status: DefinitionsStatus,
    every: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut watcher = opsflow_definitions::DefinitionsWatcher::new(&dir);
    // The first poll sees the directory as it was loaded at start.
    let mut watcher = tokio::task::spawn_blocking(move || {
        let _ = watcher.poll();
        watcher
    })
    .await?;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        let (w, polled) = tokio::task::spawn_blocking(move || {
            let polled = watcher.poll();
            (watcher, polled)
        })
        .await?;
        watcher = w;
        match polled {
            None => {}
            Some(Ok(definitions)) => {
                status.set(None);
                let stale = views.reload(definitions, shutdown.clone());
                tracing::info!(dir = %dir.display(), rebuilding = ?stale, "definitions changed");
            }
            Some(Err(errors)) => {
                let message = format!(
                    "definitions in {} do not check; keeping the last good set:\n{errors}",
                    dir.display()
                );
                tracing::error!(dir = %dir.display(), errors = %errors, "definitions refused");
                status.set(Some(message));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_as_of_time_with_a_space_says_what_to_write() {
        let said = |text: &str| match parse_as_of(Some(text)) {
            Err(e) => e.to_string(),
            Ok(as_of) => panic!("{text:?} read as {as_of:?}"),
        };
        // A date and a time, as people write them.
        assert!(said("2026-11-23 10:00").contains("write a `T` between the date and the time"));
        // An offset's `+` unescaped in a URL query.
        assert!(said("2026-11-23T10:00:00 01:00").contains("%2B"));
        assert!(!said("yesterday").contains("%2B"));
    }

    #[test]
    fn whole_stats_are_json_integers_and_others_stay_as_they_are() {
        assert_eq!(json_number(3.0).to_string(), "3");
        assert_eq!(json_number(-0.0).to_string(), "0");
        assert_eq!(json_number(0.25).to_string(), "0.25");
        assert_eq!(json_number(345_881.355).to_string(), "345881.355");
        assert_eq!(json_number(2f64.powi(53)).to_string(), "9007199254740992");
        assert_eq!(json_number(2f64.powi(60)).to_string(), "1.152921504606847e+18");
        assert_eq!(json_number(f64::NAN), Value::Null);
    }
}
