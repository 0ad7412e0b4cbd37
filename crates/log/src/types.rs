//! The values that flow through the log: proposed and recorded events, expected
//! versions, append outcomes, stream information.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;

/// Nanoseconds since the Unix epoch (UTC).
pub type UnixNanos = i64;

/// Unix nanoseconds as an RFC 3339 time, for messages (the number itself when out
/// of range).
pub fn rfc3339(nanos: UnixNanos) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(nanos)).map_or_else(|_| format!("{nanos} ns"), |t| t.to_string())
}

/// The proleptic Gregorian `(year, month, day)` of a day number (days since
/// 1970-01-01), after Howard Hinnant's `civil_from_days`.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// The expected version of a stream before an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedVersion {
    /// No check.
    #[default]
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream whose last version is `actual` (None: no stream) satisfies this.
    pub fn accepts(self, actual: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(v) => actual == Some(v),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no_stream"),
            ExpectedVersion::StreamExists => f.write_str("stream_exists"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

impl std::str::FromStr for ExpectedVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "any" | "" => Ok(ExpectedVersion::Any),
            "no_stream" | "no-stream" => Ok(ExpectedVersion::NoStream),
            "stream_exists" | "stream-exists" => Ok(ExpectedVersion::StreamExists),
            n => n.parse().map(ExpectedVersion::Exact).map_err(|_| {
                format!("expected version {n:?} is not one of any, no_stream, stream_exists or a version number")
            }),
        }
    }
}

/// An event as a producer proposes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProposedEvent {
    /// CloudEvents id; a ULID is generated when empty.
    pub id: String,
    /// CloudEvents source; [`DEFAULT_SOURCE`](crate::DEFAULT_SOURCE) when empty.
    pub source: String,
    pub event_type: String,
    /// When it happened; the engine clock when `None`.
    pub time: Option<UnixNanos>,
    /// Empty means `application/json` when there is data.
    pub content_type: String,
    pub data: Bytes,
    pub correlation_id: String,
    pub causation_id: String,
    pub metadata: BTreeMap<String, String>,
}

impl ProposedEvent {
    /// A JSON event of `event_type` with `data`.
    pub fn json(event_type: impl Into<String>, data: impl Into<Bytes>) -> Self {
        ProposedEvent {
            event_type: event_type.into(),
            content_type: crate::JSON.to_owned(),
            data: data.into(),
            ..Default::default()
        }
    }

    /// Sets the CloudEvents identity.
    pub fn with_identity(mut self, source: impl Into<String>, id: impl Into<String>) -> Self {
        self.source = source.into();
        self.id = id.into();
        self
    }
}

/// One stream's part of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<ProposedEvent>,
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Position of each event, in request order.
    pub positions: Vec<u64>,
    /// Version of the stream's last event after the append.
    pub stream_version: u64,
    /// Every event was already recorded with the same content; nothing was written.
    pub duplicate: bool,
}

impl AppendOutcome {
    pub fn first_position(&self) -> u64 {
        self.positions.first().copied().unwrap_or(0)
    }
    pub fn last_position(&self) -> u64 {
        self.positions.last().copied().unwrap_or(0)
    }
}

/// A recorded event, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: u64,
    pub stream: String,
    pub version: u64,
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub time: UnixNanos,
    pub recorded_at: UnixNanos,
    pub content_type: String,
    pub data: Bytes,
    pub correlation_id: String,
    pub causation_id: String,
    pub metadata: BTreeMap<String, String>,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// Read direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Forward,
    Backward,
}

/// What the log knows of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamInfo {
    pub stream: String,
    /// Version of the last event; `None` when the stream does not exist.
    pub last_version: Option<u64>,
    pub event_count: u64,
    pub first_position: u64,
    pub last_position: u64,
    pub created_at: Option<UnixNanos>,
    pub updated_at: Option<UnixNanos>,
}

/// The result of checking the hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub events_checked: u64,
    /// The last position verified (0: none), and its hash (zeros: none).
    pub head_position: u64,
    pub head_hash: [u8; 32],
    /// `None` when everything verified.
    pub broken: Option<BrokenLink>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// The first place where the chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub position: u64,
    pub reason: String,
}

/// Which events a subscription delivers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Any of these stream prefixes (all streams when empty).
    pub stream_prefixes: Vec<String>,
    /// Any of these types (all types when empty).
    pub types: Vec<String>,
}

impl EventFilter {
    pub fn is_empty(&self) -> bool {
        self.stream_prefixes.is_empty() && self.types.is_empty()
    }

    pub fn matches(&self, event: &RecordedEvent) -> bool {
        (self.stream_prefixes.is_empty()
            || self
                .stream_prefixes
                .iter()
                .any(|p| event.stream.starts_with(p.as_str())))
            && (self.types.is_empty() || self.types.contains(&event.event_type))
    }
}

/// The text fields a scan decodes of the events it wants (see
/// [`EventLog::scan_projected`](crate::EventLog::scan_projected)); the others come
/// empty. Position, version, type, times, data and hashes always come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFields {
    pub stream: bool,
    pub id: bool,
    pub source: bool,
    pub content_type: bool,
    /// `correlation_id` and `causation_id`.
    pub correlation: bool,
    pub metadata: bool,
}

impl RecordFields {
    /// Every field.
    pub const ALL: RecordFields = RecordFields {
        stream: true,
        id: true,
        source: true,
        content_type: true,
        correlation: true,
        metadata: true,
    };

    /// Whether every field `other` decodes, this decodes too.
    pub fn includes(&self, other: &RecordFields) -> bool {
        (self.stream || !other.stream)
            && (self.id || !other.id)
            && (self.source || !other.source)
            && (self.content_type || !other.content_type)
            && (self.correlation || !other.correlation)
            && (self.metadata || !other.metadata)
    }
}

/// An event met by [`EventLog::scan`](crate::EventLog::scan): decoded when its type
/// was wanted, else only where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "scans hand each event on by value; a box would cost an allocation per event"
)]
pub enum Scanned {
    Event(RecordedEvent),
    /// An event of a type the scan did not want: its position, event time and
    /// recording time.
    Skipped {
        position: u64,
        time: UnixNanos,
        recorded_at: UnixNanos,
    },
}

impl Scanned {
    /// The event's position in the log.
    pub fn position(&self) -> u64 {
        match self {
            Scanned::Event(event) => event.position,
            Scanned::Skipped { position, .. } => *position,
        }
    }

    /// When the log recorded the event.
    pub fn recorded_at(&self) -> UnixNanos {
        match self {
            Scanned::Event(event) => event.recorded_at,
            Scanned::Skipped { recorded_at, .. } => *recorded_at,
        }
    }
}
