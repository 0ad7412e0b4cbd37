//! `opsflow kpis`, `opsflow compliance` and `opsflow views rebuild`: the views,
//! live or as of a past moment, over gRPC.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use opsflow_proto::v1::{self, views_client::ViewsClient};
use serde_json::json;

use opsflow_server::ApiError;
use opsflow_server::views::{self as views_api, controls_json, kpis_json, status_name};

use crate::output::{emit, nanos, printable, printable_key, rfc3339};
use crate::{ClientOpts, OutputFormat};

#[derive(Args)]
pub struct KpisArgs {
    /// Only these KPIs (repeatable, or a comma-separated list).
    #[arg(long = "name", value_name = "NAME", value_delimiter = ',')]
    pub names: Vec<String>,
    /// The views as they stood at a position (e.g. 1200) or a time (RFC 3339).
    #[arg(long, value_name = "POSITION|TIME", allow_hyphen_values = true)]
    pub as_of: Option<String>,
    /// Only these windows (1h, 24h, 7d, now, day:2026-11-21; repeatable, or a
    /// comma-separated list). Default:
    /// the rolling windows and current values, without calendar days (in the table
    /// and in JSON; HTTP `GET /v1/kpis` without `window=` has them all).
    #[arg(long = "window", value_name = "WINDOW", value_delimiter = ',')]
    pub windows: Vec<String>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Args)]
pub struct ComplianceArgs {
    /// Only these controls (repeatable, or a comma-separated list).
    #[arg(long = "name", value_name = "NAME", value_delimiter = ',')]
    pub names: Vec<String>,
    /// The views as they stood at a position (e.g. 1200) or a time (RFC 3339).
    #[arg(long, value_name = "POSITION|TIME", allow_hyphen_values = true)]
    pub as_of: Option<String>,
    /// Violations listed per control in the table (the JSON output has them all).
    #[arg(long, default_value_t = 5)]
    pub show: usize,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Subcommand)]
pub enum ViewsCommand {
    /// Rebuild a view from position 1 beside the live one; swaps it in when caught up.
    Rebuild {
        /// The KPI or control name.
        name: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

fn as_of(text: Option<&str>) -> anyhow::Result<Option<v1::AsOf>> {
    let as_of = views_api::parse_as_of(text).map_err(|e| said("--as-of ", e))?;
    Ok(views_api::as_of_proto(as_of))
}

async fn client(server: &str) -> anyhow::Result<ViewsClient<tonic::transport::Channel>> {
    Ok(ViewsClient::new(crate::client::channel(server).await?))
}

/// The first line of a table: which point of the log it shows.
fn print_header(position: u64, clock: Option<&prost_types::Timestamp>, definitions_version: &str) {
    emit(format_args!(
        "as of position {position}  clock {}  definitions {definitions_version}",
        time_text(clock)
    ));
}

/// A time, or `-` when there is none (empty views have no clock).
fn time_text(ts: Option<&prost_types::Timestamp>) -> String {
    match nanos(ts) {
        0 => "-".into(),
        n => rfc3339(n),
    }
}

/// A headline as a person reads it: durations in h/m/s, ratios in percent.
fn headline_text(kind: &str, stat: Option<f64>) -> String {
    let Some(x) = stat else { return "-".into() };
    match kind {
        "duration" => duration_text(x),
        "ratio" => format!("{:.1}%", x * 100.0),
        _ if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
        _ => format!("{x:.2}"),
    }
}

/// Seconds as a person reads them, rounded to the last unit shown (a second from a
/// minute up, a minute from a day up), so a value just over a target does not read
/// as on it: `0.25s`, `42s`, `12m05s`, `5h07m12s`, `3d00h27m`, `-1h00m00s`.
fn duration_text(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let sign = if x < 0.0 { "-" } else { "" };
    let a = x.abs();
    if a < 10.0 {
        let text = format!("{a:.2}");
        return format!("{sign}{}s", text.trim_end_matches('0').trim_end_matches('.'));
    }
    // Which units from the value as rounded to a second: 86,399.6 s is a day.
    if a.round() >= 86_400.0 {
        let minutes = (a / 60.0).round() as u64;
        let (d, h, m) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
        return format!("{sign}{d}d{h:02}h{m:02}m");
    }
    let secs = a.round() as u64;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, _) => format!("{sign}{m}m{s:02}s"),
        _ => format!("{sign}{h}h{m:02}m{s:02}s"),
    }
}

/// The stats of a value, sorted by name: those of a duration KPI that are times
/// (percentiles, mean, oldest) as durations, the rest as numbers.
fn stats_text(kind: &str, stats: &std::collections::HashMap<String, f64>) -> String {
    let mut pairs: Vec<_> = stats.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    pairs
        .iter()
        .map(|(k, v)| {
            let is_time =
                matches!(k.as_str(), "p50" | "p90" | "p99" | "mean" | "oldest") && matches!(kind, "duration" | "open");
            if is_time {
                format!("{k}={}", duration_text(**v))
            } else if v.fract() == 0.0 && v.abs() < 1e15 {
                format!("{k}={}", **v as i64)
            } else {
                format!("{k}={v:.3}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An argument the server's own check refused, said as the CLI names it: `prefix`
/// (the option) and the reason.
fn said(prefix: &str, e: ApiError) -> anyhow::Error {
    match e {
        ApiError::InvalidArgument { reason, .. } => anyhow::anyhow!("{prefix}{reason}"),
        other => anyhow::anyhow!("{prefix}{other}"),
    }
}

pub async fn kpis(args: KpisArgs) -> anyhow::Result<ExitCode> {
    let request_names = args.names.clone();
    let request = v1::GetKpisRequest {
        as_of: as_of(args.as_of.as_deref())?,
        names: args.names,
    };
    let response = client(&args.opts.server)
        .await?
        .get_kpis(request)
        .await
        .map_err(crate::client::status)?
        .into_inner();
    let mut response = response;
    views_api::keep_windows(&mut response, &request_names, &args.windows).map_err(|e| said("", e))?;
    if args.windows.is_empty() {
        // The default, in the table and in JSON alike: no calendar days.
        for kpi in &mut response.kpis {
            kpi.values.retain(|v| !v.window.starts_with("day:"));
        }
    }
    if args.opts.output == OutputFormat::Json {
        emit(format_args!("{}", kpis_json(&response)));
        return Ok(ExitCode::SUCCESS);
    }
    print_header(
        response.position,
        response.clock.as_ref(),
        &response.definitions_version,
    );
    // (name, window, group, value, status, target, stats) per line, then aligned.
    let mut lines: Vec<[String; 7]> = Vec::new();
    for kpi in &response.kpis {
        let name = if kpi.rebuilding {
            format!("{} (rebuilding)", kpi.name)
        } else {
            kpi.name.clone()
        };
        let values = &kpi.values;
        let target = if kpi.target.is_empty() {
            "-".to_string()
        } else {
            kpi.target.clone()
        };
        // Calendar days asked for that have no samples: a row that says so, rather
        // than none.
        let mut empty: Vec<&str> = args
            .windows
            .iter()
            .filter(|w| w.starts_with("day:") && kpi.calendar_days && !values.iter().any(|v| &v.window == *w))
            .map(String::as_str)
            .collect();
        if values.is_empty() && empty.is_empty() {
            empty.push("-");
        }
        for window in empty {
            lines.push([
                name.clone(),
                window.into(),
                "-".into(),
                "-".into(),
                "none".into(),
                target.clone(),
                "no samples".into(),
            ]);
        }
        for v in values {
            lines.push([
                name.clone(),
                v.window.clone(),
                if v.group.is_empty() {
                    "-".into()
                } else {
                    printable(&v.group).into_owned()
                },
                headline_text(&kpi.kind, v.headline),
                status_name(v.status).into(),
                target.clone(),
                stats_text(&kpi.kind, &v.stats),
            ]);
        }
    }
    let header = ["KPI", "WINDOW", "GROUP", "VALUE", "STATUS", "TARGET", "STATS"].map(String::from);
    let width = |i: usize| {
        lines
            .iter()
            .chain(std::iter::once(&header))
            .map(|l| l[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2, w3, w5) = (width(0), width(1), width(2), width(3), width(5));
    for l in std::iter::once(&header).chain(&lines) {
        emit(format_args!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:<6}  {:<w5$}  {}",
            l[0], l[1], l[2], l[3], l[4], l[5], l[6]
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn compliance(args: ComplianceArgs) -> anyhow::Result<ExitCode> {
    let request = v1::GetComplianceRequest {
        as_of: as_of(args.as_of.as_deref())?,
        names: args.names,
    };
    let response = client(&args.opts.server)
        .await?
        .get_compliance(request)
        .await
        .map_err(crate::client::status)?
        .into_inner();
    if args.opts.output == OutputFormat::Json {
        emit(format_args!("{}", controls_json(&response)));
        return Ok(ExitCode::SUCCESS);
    }
    print_header(
        response.position,
        response.clock.as_ref(),
        &response.definitions_version,
    );
    emit(format_args!(
        "{:<40} {:<22} {:<6} {:>8} {:>10} {:>8}",
        "CONTROL", "KIND", "STATUS", "CHECKED", "VIOLATIONS", "PENDING"
    ));
    for c in &response.controls {
        let name = if c.rebuilding {
            format!("{} (rebuilding)", c.name)
        } else {
            c.name.clone()
        };
        emit(format_args!(
            "{:<40} {:<22} {:<6} {:>8} {:>10} {:>8}",
            name,
            c.kind,
            status_name(c.status),
            c.checked,
            c.violations_total,
            c.pending.len()
        ));
        let unlisted = c.violations.len().saturating_sub(args.show);
        for v in c.violations.iter().rev().take(args.show) {
            let evidence: Vec<String> = v.evidence.iter().map(u64::to_string).collect();
            emit(format_args!(
                "    violation  {}  {}  at {} (position {})  evidence positions {}",
                printable_key(&v.key),
                printable(&v.message),
                rfc3339(nanos(v.at.as_ref())),
                v.position,
                evidence.join(",")
            ));
        }
        if unlisted > 0 {
            emit(format_args!(
                "    ... {unlisted} older violation{} not listed (--show N, or --output json for all kept)",
                if unlisted == 1 { "" } else { "s" }
            ));
        }
        for o in c.pending.iter().take(args.show) {
            emit(format_args!(
                "    pending    {}  due {}",
                printable_key(&o.key),
                rfc3339(nanos(o.due.as_ref()))
            ));
        }
        let unlisted = c.pending.len().saturating_sub(args.show);
        if unlisted > 0 {
            emit(format_args!(
                "    ... {unlisted} later obligation{} not listed",
                if unlisted == 1 { "" } else { "s" }
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn views(command: ViewsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ViewsCommand::Rebuild { name, opts } => {
            let response = client(&opts.server)
                .await?
                .rebuild_view(v1::RebuildViewRequest { name })
                .await
                .map_err(crate::client::status)?
                .into_inner();
            let pairs = [
                ("rebuilt", response.name.clone()),
                ("events", response.events.to_string()),
                ("swapped at", format!("position {}", response.position)),
                ("seconds", format!("{:.3}", response.seconds)),
            ];
            let json = json!({
                "name": response.name, "events": response.events,
                "position": response.position, "seconds": response.seconds,
            });
            crate::output::print_pairs(&pairs, &json, opts.output);
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::duration_text;

    #[test]
    fn durations_read_to_their_last_unit_with_their_sign() {
        for (seconds, text) in [
            (0.0, "0s"),
            (0.25, "0.25s"),
            (1.5, "1.5s"),
            (9.999, "10s"),
            (42.4, "42s"),
            (59.6, "1m00s"),
            (725.0, "12m05s"),
            (18_432.0, "5h07m12s"),
            // Just over a 72h target: not `3d00h`.
            (260_815.0, "3d00h27m"),
            (-3600.0, "-1h00m00s"),
            (-0.5, "-0.5s"),
            (86_399.6, "1d00h00m"),
        ] {
            assert_eq!(duration_text(seconds), text, "{seconds}");
        }
        assert_eq!(duration_text(f64::NAN), "NaN");
    }
}
