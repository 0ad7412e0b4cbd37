//! The log against a reference model.
//!
//! Proptest generates steps: either a handful of appends sent at once from
//! concurrent tasks, or a restart (`close`, then open the same directory again).
//! Appends go to a few streams with every kind of expected version, and some reuse
//! the `(source, id)` of earlier events, as exact retries or with different content.
//!
//! Concurrent appends race, so the model cannot predict each outcome. Instead it
//! replays the appends that wrote something in the order of the positions the log
//! gave them, checking each against the model as it stands at that point, and then
//! checks that every refusal and every duplicate is explained by the model. After
//! each step the whole log is read back every way there is and compared.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use opsflow_log::{AppendOutcome, Direction, EventLog, ExpectedVersion, LogError, ProposedEvent, RecordedEvent};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};

const STREAMS: [&str; 4] = ["order/PO-1", "order/PO-2", "incident/INC-7", "shipment/S-1"];
const TYPES: [&str; 3] = ["order.placed", "order.shipped", "incident.opened"];
const SOURCES: [&str; 2] = ["shop", "erp"];

// ---------------------------------------------------------------------------
// What proptest generates

#[derive(Debug, Clone)]
enum ExpectSpec {
    Any,
    NoStream,
    StreamExists,
    /// `Exact` with the stream's version when the step starts (`NoStream` if it has none).
    ExactCorrect,
    /// `Exact` with a version the stream does not have when the step starts.
    ExactWrong(u8),
}

#[derive(Debug, Clone)]
enum EventSpec {
    Fresh {
        event_type: usize,
        with_time: bool,
        with_metadata: bool,
    },
    /// The identity of an earlier proposed event (index modulo their number), with
    /// the same content or with different data.
    Reuse { of: usize, same_content: bool },
}

#[derive(Debug, Clone)]
enum AppendSpec {
    New {
        stream: usize,
        expected: ExpectSpec,
        events: Vec<EventSpec>,
    },
    /// An earlier request sent again (index modulo their number), identical or with
    /// the data of one event changed.
    Retry { of: usize, alter: Option<usize> },
}

#[derive(Debug, Clone)]
enum Step {
    Concurrently(Vec<AppendSpec>),
    Reopen,
}

fn expect_spec() -> impl Strategy<Value = ExpectSpec> {
    prop_oneof![
        2 => Just(ExpectSpec::Any),
        1 => Just(ExpectSpec::NoStream),
        1 => Just(ExpectSpec::StreamExists),
        2 => Just(ExpectSpec::ExactCorrect),
        1 => (0u8..3).prop_map(ExpectSpec::ExactWrong),
    ]
}

fn event_spec() -> impl Strategy<Value = EventSpec> {
    prop_oneof![
        4 => (0..TYPES.len(), any::<bool>(), any::<bool>()).prop_map(|(event_type, with_time, with_metadata)| {
            EventSpec::Fresh { event_type, with_time, with_metadata }
        }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(of, same_content)| EventSpec::Reuse { of, same_content }),
    ]
}

fn append_spec() -> impl Strategy<Value = AppendSpec> {
    prop_oneof![
        3 => (0..STREAMS.len(), expect_spec(), prop::collection::vec(event_spec(), 1..=5))
            .prop_map(|(stream, expected, events)| AppendSpec::New { stream, expected, events }),
        2 => (any::<usize>(), prop::option::of(any::<usize>())).prop_map(|(of, alter)| AppendSpec::Retry { of, alter }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => prop::collection::vec(append_spec(), 1..=4).prop_map(Step::Concurrently),
        1 => Just(Step::Reopen),
    ]
}

// ---------------------------------------------------------------------------
// Turning specs into requests

/// One append as sent to the log.
#[derive(Debug, Clone)]
struct Request {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<ProposedEvent>,
}

impl Request {
    fn has_repeated_identity(&self) -> bool {
        let mut seen = HashSet::new();
        !self.events.iter().all(|e| seen.insert(identity(e)))
    }
}

fn identity(event: &ProposedEvent) -> (String, String) {
    (event.source.clone(), event.id.clone())
}

/// Everything proposed so far, to draw retries and reused identities from.
#[derive(Default)]
struct Proposals {
    events: Vec<ProposedEvent>,
    requests: Vec<Request>,
    counter: i64,
}

impl Proposals {
    fn fresh(&mut self, event_type: usize, with_time: bool, with_metadata: bool) -> ProposedEvent {
        self.counter += 1;
        let n = self.counter;
        let source = SOURCES[n as usize % SOURCES.len()];
        let mut event = common::event(
            TYPES[event_type],
            source,
            &format!("ev-{n}"),
            &format!(r#"{{"n":{n}}}"#),
        );
        if with_time {
            event.time = Some(1_700_000_000_000_000_000 + n * 1_000);
        }
        if with_metadata {
            event.metadata.insert("trace".into(), format!("t-{n}"));
            event.correlation_id = format!("corr-{n}");
        }
        event
    }

    /// The same identity and attributes with different data.
    fn altered(&mut self, event: &ProposedEvent) -> ProposedEvent {
        self.counter += 1;
        ProposedEvent {
            data: format!(r#"{{"n":{},"altered":true}}"#, self.counter).into(),
            ..event.clone()
        }
    }

    fn resolve(&mut self, spec: &AppendSpec, model: &Model) -> Request {
        let request = match spec {
            AppendSpec::Retry { of, alter } if !self.requests.is_empty() => {
                let mut request = self.requests[of % self.requests.len()].clone();
                if let Some(i) = alter {
                    let i = i % request.events.len();
                    request.events[i] = self.altered(&request.events[i]);
                }
                request
            }
            AppendSpec::Retry { of, .. } => Request {
                stream: STREAMS[of % STREAMS.len()].to_owned(),
                expected: ExpectedVersion::Any,
                events: vec![self.fresh(0, false, false)],
            },
            AppendSpec::New {
                stream,
                expected,
                events,
            } => {
                let stream = STREAMS[*stream].to_owned();
                let current = model.version(&stream);
                let expected = match expected {
                    ExpectSpec::Any => ExpectedVersion::Any,
                    ExpectSpec::NoStream => ExpectedVersion::NoStream,
                    ExpectSpec::StreamExists => ExpectedVersion::StreamExists,
                    ExpectSpec::ExactCorrect => current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
                    ExpectSpec::ExactWrong(k) => {
                        ExpectedVersion::Exact(current.map_or(u64::from(*k), |v| v + 1 + u64::from(*k)))
                    }
                };
                let events = events
                    .iter()
                    .map(|spec| match spec {
                        EventSpec::Reuse { of, same_content } if !self.events.is_empty() => {
                            let original = self.events[of % self.events.len()].clone();
                            if *same_content {
                                original
                            } else {
                                self.altered(&original)
                            }
                        }
                        EventSpec::Reuse { .. } => self.fresh(0, false, false),
                        EventSpec::Fresh {
                            event_type,
                            with_time,
                            with_metadata,
                        } => self.fresh(*event_type, *with_time, *with_metadata),
                    })
                    .collect();
                Request {
                    stream,
                    expected,
                    events,
                }
            }
        };
        self.events.extend(request.events.iter().cloned());
        self.requests.push(request.clone());
        request
    }
}

// ---------------------------------------------------------------------------
// The reference model

#[derive(Debug, Clone)]
struct ModelEvent {
    stream: String,
    version: u64,
    proposed: ProposedEvent,
}

impl ModelEvent {
    /// Whether `event` appended to `stream` is an exact retry of this event.
    fn same_content(&self, stream: &str, event: &ProposedEvent) -> bool {
        let p = &self.proposed;
        self.stream == stream
            && p.event_type == event.event_type
            && p.content_type == event.content_type
            && p.data == event.data
            && p.correlation_id == event.correlation_id
            && p.causation_id == event.causation_id
            && p.metadata == event.metadata
            && (event.time.is_none() || event.time == p.time)
    }
}

#[derive(Debug, Clone, Default)]
struct Model {
    /// The event at position `p` is at index `p - 1`.
    log: Vec<ModelEvent>,
    /// Last version of each stream.
    streams: BTreeMap<String, u64>,
    /// Position of each recorded identity.
    identities: HashMap<(String, String), u64>,
}

impl Model {
    fn head(&self) -> u64 {
        self.log.len() as u64
    }

    fn version(&self, stream: &str) -> Option<u64> {
        self.streams.get(stream).copied()
    }

    fn at(&self, position: u64) -> &ModelEvent {
        &self.log[position as usize - 1]
    }

    /// Applies the outcomes of one concurrent step, checking each against the model.
    fn apply_step(
        &mut self,
        requests: &[Request],
        results: &[Result<AppendOutcome, LogError>],
    ) -> Result<(), TestCaseError> {
        let before = self.clone();
        // Every version each stream had during the step: a refusal must name one.
        let mut versions_seen: HashMap<String, Vec<Option<u64>>> = STREAMS
            .iter()
            .map(|s| (s.to_string(), vec![before.version(s)]))
            .collect();
        // Which request of this step recorded each new identity.
        let mut recorded_by: HashMap<(String, String), usize> = HashMap::new();

        let mut written: Vec<(usize, &AppendOutcome)> = results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match r {
                Ok(outcome) if !outcome.duplicate => Some((i, outcome)),
                _ => None,
            })
            .collect();
        written.sort_by_key(|(_, outcome)| outcome.first_position());
        for (i, outcome) in written {
            let request = &requests[i];
            prop_assert!(
                !request.has_repeated_identity(),
                "request {i} repeats an identity but was written"
            );
            let current = self.version(&request.stream);
            prop_assert!(
                request.expected.accepts(current),
                "request {i} (expected {}) was written when {} was at {current:?}",
                request.expected,
                request.stream
            );
            let first = self.head() + 1;
            let count = request.events.len() as u64;
            prop_assert_eq!(
                &outcome.positions,
                &(first..first + count).collect::<Vec<_>>(),
                "request {} must take the next positions, without gaps",
                i
            );
            let first_version = current.map_or(0, |v| v + 1);
            for (k, event) in request.events.iter().enumerate() {
                let key = identity(event);
                prop_assert!(
                    !self.identities.contains_key(&key),
                    "request {i} wrote {key:?} a second time"
                );
                self.identities.insert(key.clone(), first + k as u64);
                recorded_by.insert(key, i);
                self.log.push(ModelEvent {
                    stream: request.stream.clone(),
                    version: first_version + k as u64,
                    proposed: event.clone(),
                });
            }
            let last_version = first_version + count - 1;
            prop_assert_eq!(outcome.stream_version, last_version, "request {}: stream version", i);
            self.streams.insert(request.stream.clone(), last_version);
            versions_seen
                .entry(request.stream.clone())
                .or_default()
                .push(Some(last_version));
        }

        for (i, (request, result)) in requests.iter().zip(results).enumerate() {
            if request.has_repeated_identity() {
                prop_assert!(
                    matches!(result, Err(LogError::InvalidArgument { field, .. }) if field.ends_with(".id")),
                    "request {i} repeats an identity: {result:?}"
                );
                continue;
            }
            let originals: Vec<Option<u64>> = request
                .events
                .iter()
                .map(|e| before.identities.get(&identity(e)).copied())
                .collect();
            let pairs = || originals.iter().zip(&request.events);
            let exact_retry_of_earlier_steps =
                pairs().all(|(p, e)| p.is_some_and(|p| before.at(p).same_content(&request.stream, e)));
            let conflicts_with_earlier_steps =
                pairs().any(|(p, e)| p.is_some_and(|p| !before.at(p).same_content(&request.stream, e)));
            let touches_earlier_steps = originals.iter().any(Option::is_some);
            let touched_by_others = request
                .events
                .iter()
                .any(|e| recorded_by.get(&identity(e)).is_some_and(|j| *j != i));

            if exact_retry_of_earlier_steps {
                prop_assert!(
                    matches!(result, Ok(o) if o.duplicate),
                    "request {i} is an exact retry: {result:?}"
                );
            }
            if conflicts_with_earlier_steps {
                prop_assert!(
                    matches!(result, Err(LogError::DuplicateConflict { .. })),
                    "request {i} reuses a recorded identity with other content: {result:?}"
                );
            }
            if request.expected == ExpectedVersion::Any && !touches_earlier_steps && !touched_by_others {
                prop_assert!(
                    matches!(result, Ok(o) if !o.duplicate),
                    "request {i} cannot be refused: {result:?}"
                );
            }

            match result {
                Ok(outcome) if !outcome.duplicate => {} // checked above
                Ok(outcome) => {
                    prop_assert_eq!(
                        outcome.positions.len(),
                        request.events.len(),
                        "request {}: duplicate positions",
                        i
                    );
                    for (event, position) in request.events.iter().zip(&outcome.positions) {
                        prop_assert_eq!(
                            self.identities.get(&identity(event)),
                            Some(position),
                            "request {}: a duplicate must answer the original position",
                            i
                        );
                        prop_assert!(
                            self.at(*position).same_content(&request.stream, event),
                            "request {i} was answered as a duplicate of different content at {position}"
                        );
                    }
                    let last = *outcome.positions.last().unwrap_or(&0);
                    prop_assert_eq!(
                        outcome.stream_version,
                        self.at(last).version,
                        "request {}: duplicate version",
                        i
                    );
                }
                Err(LogError::WrongExpectedVersion {
                    stream,
                    expected,
                    actual,
                }) => {
                    prop_assert_eq!(stream, &request.stream);
                    prop_assert_eq!(*expected, request.expected);
                    prop_assert!(!expected.accepts(*actual), "request {i}: {expected} accepts {actual:?}");
                    prop_assert!(
                        versions_seen[stream].contains(actual),
                        "request {i}: {stream} never was at {actual:?} during the step ({:?})",
                        versions_seen[stream]
                    );
                    prop_assert!(
                        !touches_earlier_steps,
                        "request {i}: identities are checked before versions"
                    );
                }
                Err(LogError::DuplicateConflict {
                    event_source,
                    id,
                    position,
                    ..
                }) => {
                    let key = (event_source.clone(), id.clone());
                    prop_assert!(
                        request.events.iter().any(|e| identity(e) == key),
                        "request {i}: conflict on {key:?}"
                    );
                    prop_assert_eq!(
                        self.identities.get(&key),
                        Some(position),
                        "request {}: conflict position",
                        i
                    );
                }
                Err(other) => prop_assert!(false, "request {i} failed unexpectedly: {other}"),
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Running a case

/// 48 cases keep the test at a few seconds; `PROPTEST_CASES=2000` digs deeper.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(48);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn log_matches_model(steps in prop::collection::vec(step(), 1..12)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build()?;
        runtime.block_on(run_case(steps))?;
    }
}

async fn run_case(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir()?;
    let mut log = common::open(dir.path(), common::options()).await?;
    let mut model = Model::default();
    let mut proposals = Proposals::default();
    let mut acked: Vec<RecordedEvent> = Vec::new();
    for step in steps.iter().chain([&Step::Reopen]) {
        match step {
            Step::Concurrently(specs) => {
                let requests: Vec<Request> = specs.iter().map(|spec| proposals.resolve(spec, &model)).collect();
                let results = append_concurrently(&log, &requests).await?;
                model.apply_step(&requests, &results)?;
            }
            Step::Reopen => log = reopen(log, dir.path()).await?,
        }
        acked = check_log(&log, &model, &acked).await?;
    }
    common::close(log).await?;
    Ok(())
}

/// Sends every request from its own task, all released at once.
async fn append_concurrently(
    log: &EventLog,
    requests: &[Request],
) -> Result<Vec<Result<AppendOutcome, LogError>>, TestCaseError> {
    let start = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .iter()
        .cloned()
        .map(|request| {
            let log = log.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                log.append(&request.stream, request.expected, request.events).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await?);
    }
    Ok(results)
}

async fn reopen(log: EventLog, dir: &Path) -> Result<EventLog, TestCaseError> {
    log.close().await?;
    let refused = log
        .append(
            STREAMS[0],
            ExpectedVersion::Any,
            vec![common::event("late.event", "late", "1", "{}")],
        )
        .await;
    prop_assert!(
        matches!(refused, Err(LogError::Closed)),
        "append after close: {refused:?}"
    );
    drop(log);
    Ok(common::open(dir, common::options()).await?)
}

/// Reads the log back every way there is and compares with the model and with the
/// events acknowledged before (which must not have changed at all). Returns what
/// is acknowledged now.
async fn check_log(
    log: &EventLog,
    model: &Model,
    acked: &[RecordedEvent],
) -> Result<Vec<RecordedEvent>, TestCaseError> {
    let head = model.head();
    prop_assert_eq!(log.head(), head, "head");
    let all = common::read_everything(log).await?;
    prop_assert_eq!(all.len() as u64, head, "read_all returns every event up to the head");
    prop_assert!(
        all.len() >= acked.len() && all[..acked.len()] == *acked,
        "acknowledged events changed"
    );

    let mut prev_hash = [0u8; 32];
    let mut prev_recorded_at = i64::MIN;
    for (event, expected) in all.iter().zip(&model.log) {
        let p = &expected.proposed;
        let position = event.position;
        prop_assert_eq!(
            (&event.stream, event.version, &event.id, &event.source),
            (&expected.stream, expected.version, &p.id, &p.source),
            "event at {}",
            position
        );
        prop_assert_eq!(
            (
                &event.event_type,
                &event.content_type,
                &event.data,
                &event.correlation_id,
                &event.causation_id
            ),
            (
                &p.event_type,
                &p.content_type,
                &p.data,
                &p.correlation_id,
                &p.causation_id
            ),
            "event at {}",
            position
        );
        prop_assert_eq!(&event.metadata, &p.metadata, "event at {}", position);
        prop_assert_eq!(
            event.time,
            p.time.unwrap_or(event.recorded_at),
            "event at {}: time",
            position
        );
        prop_assert_eq!(event.prev_hash, prev_hash, "event at {}: chain link", position);
        prop_assert!(
            event.recorded_at >= prev_recorded_at,
            "recorded_at goes back at {position}"
        );
        prev_hash = event.hash;
        prev_recorded_at = event.recorded_at;
    }
    for (i, event) in all.iter().enumerate() {
        prop_assert_eq!(event.position, i as u64 + 1, "positions are gapless from 1");
    }

    let mut backward = log.read_all(None, Direction::Backward, usize::MAX).await?;
    backward.reverse();
    prop_assert!(backward == all, "read_all backward is read_all forward reversed");
    for from in [1, head / 2, head.saturating_sub(1), head]
        .into_iter()
        .filter(|p| (1..=head).contains(p))
    {
        let i = from as usize - 1;
        let page = log.read_all(Some(from), Direction::Forward, 3).await?;
        prop_assert!(page[..] == all[i..(i + 3).min(all.len())], "forward page from {from}");
        let page = log.read_all(Some(from), Direction::Backward, 3).await?;
        let expected: Vec<_> = all[(i + 1).saturating_sub(3)..=i].iter().rev().cloned().collect();
        prop_assert!(page == expected, "backward page from {from}");
    }
    let iterated = {
        let log = log.clone();
        tokio::task::spawn_blocking(move || log.iter_all(1).collect::<opsflow_log::Result<Vec<_>>>()).await??
    };
    prop_assert!(iterated == all, "iter_all(1) is read_all");

    for stream in STREAMS {
        let expected: Vec<&RecordedEvent> = all.iter().filter(|e| e.stream == stream).collect();
        let forward = common::read_stream_all(log, stream).await?;
        prop_assert!(
            forward.iter().eq(expected.iter().copied()),
            "read_stream({stream}) forward"
        );
        for (version, event) in forward.iter().enumerate() {
            prop_assert_eq!(
                event.version,
                version as u64,
                "{} versions are contiguous from 0",
                stream
            );
        }
        let mut backward = log.read_stream(stream, None, Direction::Backward, usize::MAX).await?;
        backward.reverse();
        prop_assert!(backward == forward, "read_stream({stream}) backward");
        if let Some(middle) = forward.len().checked_sub(1).map(|last| last / 2) {
            let page = log
                .read_stream(stream, Some(middle as u64), Direction::Forward, 2)
                .await?;
            prop_assert!(
                page[..] == forward[middle..(middle + 2).min(forward.len())],
                "{stream} page from {middle}"
            );
            let page = log
                .read_stream(stream, Some(middle as u64), Direction::Backward, 2)
                .await?;
            let back: Vec<_> = forward[middle.saturating_sub(1)..=middle]
                .iter()
                .rev()
                .cloned()
                .collect();
            prop_assert!(page == back, "{stream} backward page from {middle}");
        }

        let info = log.stream_info(stream).await?;
        prop_assert_eq!(
            info.last_version,
            model.version(stream),
            "stream_info({}).last_version",
            stream
        );
        prop_assert_eq!(
            info.event_count,
            forward.len() as u64,
            "stream_info({}).event_count",
            stream
        );
        let first = forward.first();
        let last = forward.last();
        prop_assert_eq!(
            info.first_position,
            first.map_or(0, |e| e.position),
            "stream_info({})",
            stream
        );
        prop_assert_eq!(
            info.last_position,
            last.map_or(0, |e| e.position),
            "stream_info({})",
            stream
        );
        prop_assert_eq!(info.created_at, first.map(|e| e.recorded_at), "stream_info({})", stream);
        prop_assert_eq!(info.updated_at, last.map(|e| e.recorded_at), "stream_info({})", stream);
    }

    let report = log.verify(None, None).await?;
    prop_assert!(report.ok(), "verify: {:?}", report.broken);
    prop_assert_eq!(report.events_checked, head);
    prop_assert_eq!(report.head_position, head);
    prop_assert_eq!(report.head_hash, prev_hash);
    Ok(all)
}
