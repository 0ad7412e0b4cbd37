//! Printing events and reports as tables or JSON.

use opsflow_proto::v1;
use serde_json::Value;

use crate::OutputFormat;

pub fn nanos(ts: Option<&prost_types::Timestamp>) -> i64 {
    ts.map_or(0, |t| {
        t.seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(t.nanos))
    })
}

pub fn rfc3339(nanos: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(nanos))
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|_| nanos.to_string())
}

/// `text` for a table cell: control characters (a newline in a key from event
/// data) shown escaped (`\n`), so each row stays one line.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    escaped_where(text, char::is_control)
}

/// A key for a table cell: as [`printable`], with backslashes doubled too, so a
/// key holding a newline and one holding a backslash and an `n` never print
/// alike (groups come escaped from the views already).
pub fn printable_key(key: &str) -> std::borrow::Cow<'_, str> {
    escaped_where(key, |c| c == '\\' || c.is_control())
}

fn escaped_where(text: &str, escape: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(&escape) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// A line of a server's own output (where it listens, that it stopped): written
/// while standard output is there. A server goes on, and stops cleanly, when it
/// is not (`opsflow dev | head -3`).
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line).and_then(|()| out.write_all(b"\n"));
}

/// Prints a line; a closed stdout (`opsflow tail | head`) ends the program quietly.
pub fn emit(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// The wire event as the log's type, to share the JSON representation.
pub fn to_log(e: &v1::RecordedEvent) -> opsflow_log::RecordedEvent {
    let hash = |b: &[u8]| <[u8; 32]>::try_from(b).unwrap_or([0; 32]);
    opsflow_log::RecordedEvent {
        position: e.position,
        stream: e.stream.clone(),
        version: e.version,
        id: e.id.clone(),
        source: e.source.clone(),
        event_type: e.r#type.clone(),
        time: nanos(e.time.as_ref()),
        recorded_at: nanos(e.recorded_at.as_ref()),
        content_type: e.content_type.clone(),
        data: e.data.clone(),
        correlation_id: e.correlation_id.clone(),
        causation_id: e.causation_id.clone(),
        metadata: e.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        prev_hash: hash(&e.prev_hash),
        hash: hash(&e.hash),
    }
}

/// The read representation (JSON data as recorded: print it, do not parse it).
pub fn event_json(e: &v1::RecordedEvent) -> Box<serde_json::value::RawValue> {
    opsflow_cloudevents::recorded_to_json(&to_log(e))
}

fn data_preview(e: &v1::RecordedEvent, width: usize) -> String {
    let text = if e.content_type.contains("json") || e.content_type.is_empty() {
        String::from_utf8_lossy(&e.data).into_owned()
    } else {
        format!("<{} bytes {}>", e.data.len(), e.content_type)
    };
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() > width {
        format!("{}…", text.chars().take(width - 1).collect::<String>())
    } else {
        text
    }
}

pub const EVENT_HEADER: &str =
    "POSITION  STREAM                    VER  TYPE                  TIME                      DATA";

/// Widths of [`EVENT_HEADER`]'s stream and type columns.
const STREAM_WIDTH: usize = 24;
const TYPE_WIDTH: usize = 20;

pub fn print_event(e: &v1::RecordedEvent, format: OutputFormat) {
    match format {
        OutputFormat::Json => emit(format_args!("{}", event_json(e))),
        OutputFormat::Table => emit(format_args!(
            "{:<8}  {:<STREAM_WIDTH$}  {:>3}  {:<TYPE_WIDTH$}  {:<24}  {}",
            e.position,
            fitted(&printable(&e.stream), STREAM_WIDTH),
            e.version,
            fitted(&printable(&e.r#type), TYPE_WIDTH),
            rfc3339(nanos(e.time.as_ref())),
            data_preview(e, 60)
        )),
    }
}

/// `text` in at most `width` characters, so that the columns after it stay
/// aligned: a longer one keeps its start and its end (a stream's kind and its
/// id, a type's domain and its verb) around an ellipsis. `--output json` shows
/// it whole.
fn fitted(text: &str, width: usize) -> std::borrow::Cow<'_, str> {
    let count = text.chars().count();
    if count <= width || width < 3 {
        return text.into();
    }
    let end = (width - 1) / 2;
    let start = width - 1 - end;
    let mut out: String = text.chars().take(start).collect();
    out.push('…');
    out.extend(text.chars().skip(count - end));
    out.into()
}

pub fn print_pairs(pairs: &[(&str, String)], json: &Value, format: OutputFormat) {
    match format {
        OutputFormat::Json => emit(format_args!("{json}")),
        OutputFormat::Table => {
            for (k, v) in pairs {
                emit(format_args!("{k:<16} {v}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_cells_keep_their_ends_within_the_column() {
        assert_eq!(fitted("order/ORD-1", 24), "order/ORD-1");
        let stream = "shipment/SHP-2026-11-24-000123";
        let cell = fitted(stream, STREAM_WIDTH);
        assert_eq!(cell, "shipment/SHP…1-24-000123");
        assert_eq!(cell.chars().count(), STREAM_WIDTH);
        assert_eq!(
            fitted("inventory.reservation.expired", TYPE_WIDTH),
            "inventory.…n.expired"
        );
        // Counted in characters, not bytes.
        assert_eq!(fitted("ééééé", 4), "éé…é");
        assert_eq!(fitted("ééééé", 5), "ééééé");
    }

    #[test]
    fn table_cells_stay_on_one_line_and_keys_never_print_alike() {
        assert_eq!(printable("plain"), "plain");
        assert_eq!(printable("a\nb"), "a\\nb");
        // Groups come escaped: a backslash stays as it is.
        assert_eq!(printable(r"x=1\,y"), r"x=1\,y");
        let (newline, backslash_n) = (printable_key("N\nX"), printable_key(r"N\nX"));
        assert_eq!(newline, r"N\nX");
        assert_eq!(backslash_n, r"N\\nX");
        assert_ne!(newline, backslash_n);
    }
}
