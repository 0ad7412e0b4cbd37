//! Every KPI, control and view failure as Prometheus text for `/metrics`,
//! rendered on a timer from the live views.

use std::time::Duration;

use opsflow_views::Views;
use tokio_util::sync::CancellationToken;

/// The views' metrics as Prometheus text, rendered by [`publish_gauges`] and
/// appended to `/metrics` as they are: every series of a render replaces those of
/// the last, so a KPI, group or view that is gone leaves no stale series behind.
#[derive(Clone, Default)]
pub struct ViewGauges {
    text: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ViewGauges {
    /// The last render (empty before the first).
    pub fn text(&self) -> String {
        self.text.lock().map(|t| t.clone()).unwrap_or_default()
    }

    fn set(&self, text: String) {
        if let Ok(mut current) = self.text.lock() {
            *current = text;
        }
    }
}

/// Renders every live KPI headline as `opsflow_kpi{name,window,group}` and its
/// status as `opsflow_kpi_status`, each control's status, violations, pending
/// obligations and checks (`opsflow_control_*{name}`), and every view's evaluation
/// failures as `opsflow_view_eval_errors_total{view}` into
/// `gauges` every `every` until `shutdown` (calendar-day windows are left out: one
/// series per day would grow without bound).
pub async fn publish_gauges(
    views: Views,
    gauges: ViewGauges,
    every: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        let views = views.clone();
        let text = tokio::task::spawn_blocking(move || {
            // Views restarted empty after a definitions change hold only part of
            // the log until their rebuild swaps in: their values and statuses are
            // left out (an alert on them would read as resolved), and said to be
            // partial. (During a rebuild asked for by hand the live view is whole.)
            let partial: std::collections::BTreeSet<String> = views.live_stale().into_iter().collect();
            let kpis: Vec<_> = views
                .live_kpis()
                .into_iter()
                .filter(|k| !partial.contains(&k.name))
                .collect();
            let controls: Vec<_> = views
                .live_controls()
                .into_iter()
                .filter(|c| !partial.contains(&c.name))
                .collect();
            render_gauges(&kpis, &controls, &views.live_eval_errors(), &partial)
        })
        .await?;
        gauges.set(text);
    }
}

/// A status as a number, for alerts: 0 none (no target or no samples), 1 green,
/// 2 amber, 3 red.
fn status_number(status: opsflow_views::Status) -> u8 {
    match status {
        opsflow_views::Status::None => 0,
        opsflow_views::Status::Green => 1,
        opsflow_views::Status::Amber => 2,
        opsflow_views::Status::Red => 3,
    }
}

/// The Prometheus text exposition (format 0.0.4) of KPI headlines and statuses,
/// controls, and evaluation failures.
fn render_gauges(
    kpis: &[opsflow_views::KpiReport],
    controls: &[opsflow_views::ControlReport],
    eval_errors: &std::collections::BTreeMap<String, u64>,
    partial: &std::collections::BTreeSet<String>,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    // Each KPI value (calendar days aside) with its labels.
    let values: Vec<(&opsflow_views::KpiValue, String)> = kpis
        .iter()
        .flat_map(|kpi| {
            kpi.values
                .iter()
                .filter(|v| !v.window.starts_with("day:"))
                .map(move |v| {
                    let labels = format!(
                        "name=\"{}\",window=\"{}\",group=\"{}\"",
                        label(&kpi.name),
                        label(&v.window),
                        label(&v.group)
                    );
                    (v, labels)
                })
        })
        .collect();
    out.push_str("# HELP opsflow_kpi KPI headline value, by KPI, window and group\n# TYPE opsflow_kpi gauge\n");
    for (value, labels) in &values {
        if let Some(headline) = value.headline {
            let _ = writeln!(out, "opsflow_kpi{{{labels}}} {}", sample(headline));
        }
    }
    out.push_str(
        "# HELP opsflow_kpi_status KPI status against its target: 0 none, 1 green, 2 amber, 3 red\n\
         # TYPE opsflow_kpi_status gauge\n",
    );
    for (value, labels) in &values {
        let _ = writeln!(out, "opsflow_kpi_status{{{labels}}} {}", status_number(value.status));
    }
    type Figure = fn(&opsflow_views::ControlReport) -> u64;
    let figures: [(&str, &str, Figure); 4] = [
        (
            "opsflow_control_status",
            "Control status: 1 green, 2 amber (obligations pending), 3 red (violations)",
            |c| u64::from(status_number(c.status)),
        ),
        (
            "opsflow_control_violations",
            "Violations found by the control (a withdrawn one goes)",
            |c| c.violations_total,
        ),
        (
            "opsflow_control_pending",
            "Obligations of the control not yet due",
            |c| c.pending.len() as u64,
        ),
        ("opsflow_control_checked", "Checks the control made", |c| c.checked),
    ];
    for (metric, help, figure) in figures {
        let _ = write!(out, "# HELP {metric} {help}\n# TYPE {metric} gauge\n");
        for control in controls {
            let _ = writeln!(out, "{metric}{{name=\"{}\"}} {}", label(&control.name), figure(control));
        }
    }
    out.push_str(
        "# HELP opsflow_view_partial 1 for a view that restarted empty after its definition changed, until its \
         rebuild swaps in (its opsflow_kpi* or opsflow_control_* series are left out meanwhile)\n\
         # TYPE opsflow_view_partial gauge\n",
    );
    for view in eval_errors.keys() {
        let _ = writeln!(
            out,
            "opsflow_view_partial{{view=\"{}\"}} {}",
            label(view),
            u8::from(partial.contains(view))
        );
    }
    out.push_str(
        "# HELP opsflow_view_eval_errors_total Expressions that failed to evaluate while views applied events, by view\n\
         # TYPE opsflow_view_eval_errors_total counter\n",
    );
    for (view, errors) in eval_errors {
        let _ = writeln!(
            out,
            "opsflow_view_eval_errors_total{{view=\"{}\"}} {errors}",
            label(view)
        );
    }
    out
}

/// A label value escaped as the text format requires (backslash, quote, newline).
fn label(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// A sample value as the text format writes it (`NaN`, `+Inf`, `-Inf`).
fn sample(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        value.to_string()
    }
}
