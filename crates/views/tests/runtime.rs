//! The runtime over a real log on disk: the live views equal a from-scratch replay
//! after random appends with restarts in between; as-of equals a replay cut at that
//! position (from snapshots taken every few positions); definition changes rebuild
//! exactly the changed views.

mod support;

use std::time::Duration;

use opsflow_definitions::Definitions;
use opsflow_log::{EventLog, ExpectedVersion, LogOptions, ProposedEvent};
use opsflow_views::{AsOf, Status, ViewSet, Views, ViewsOptions, apply_event, into_event_data};
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use support::{TYPES, sample_data};

const T0: i64 = 1_795_219_200_000_000_000; // 2026-11-21T00:00:00Z
const MINUTE: i64 = 60_000_000_000;

/// One event to append: (type, data, minutes after the previous one).
type Step = (&'static str, Value, i64);

/// One generated event: a type of [`TYPES`] (every type the default views read,
/// and one they do not), a key among three, a number, a flag and the minutes since
/// the previous event (negative: a late event).
#[derive(Debug, Clone)]
struct Generated {
    type_index: usize,
    key: u8,
    amount: u32,
    flag: bool,
    gap: i64,
}

fn generated() -> impl Strategy<Value = Generated> {
    (
        0..TYPES.len(),
        0u8..3,
        0u32..20_000,
        any::<bool>(),
        prop_oneof![6 => 0i64..5, 6 => 60i64..600, 2 => 1440i64..10_000, 1 => -600i64..0],
    )
        .prop_map(|(type_index, key, amount, flag, gap)| Generated {
            type_index,
            key,
            amount,
            flag,
            gap,
        })
}

/// The steps of `generated`, their data dated from `clock` as [`append_all`] dates
/// them (which advances it the same way).
fn steps(generated: &[Generated], clock: i64, index: &mut usize) -> Vec<Step> {
    let mut time = clock;
    generated
        .iter()
        .map(|g| {
            time += g.gap * MINUTE;
            *index += 1;
            let event_type = TYPES[g.type_index];
            let data = sample_data(event_type, g.key, g.amount, g.flag, time, *index);
            (event_type, data, g.gap)
        })
        .collect()
}

/// A log for events on a simulated clock, which runs ahead of the real one.
fn sim_log(dir: &std::path::Path) -> anyhow::Result<EventLog> {
    let mut options = LogOptions::default();
    options.limits.max_time_ahead_secs = u64::MAX;
    Ok(EventLog::open(dir.join("log"), options)?)
}

/// `all` counts every `t.x`; `some` counts all of them under the first
/// definitions, the even ones under the second.
fn all_then_some() -> anyhow::Result<(Definitions, Definitions)> {
    let counts = |cond: &str| {
        format!(
            "kpis:\n  - name: all\n    kind: count\n    on: {{ type: t.x }}\n  - name: some\n    kind: count\n    on: {{ type: t.x{cond} }}\n"
        )
    };
    let v1 = Definitions::from_files(&[("k.yaml".into(), counts(""))]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let v2 = Definitions::from_files(&[("k.yaml".into(), counts(", if: \"event.data.n % 2 == 0\""))])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((v1, v2))
}

/// Opens the views again after a crash (an aborted run): work it had handed to
/// blocking threads still holds the store for a moment, as a crashed process's
/// threads would until they die.
async fn reopen(
    log: &EventLog,
    defs: &Definitions,
    dir: &std::path::Path,
    options: &ViewsOptions,
) -> anyhow::Result<Views> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Views::open(log.clone(), defs.clone(), dir, options.clone()) {
            Ok(views) => return Ok(views),
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn append_all(log: &EventLog, steps: &[Step], clock: &mut i64) -> anyhow::Result<u64> {
    let mut last = 0;
    for (event_type, data, gap) in steps {
        *clock += gap * MINUTE;
        let mut e = ProposedEvent::json(*event_type, data.to_string());
        e.time = Some(*clock);
        last = log.append("s", ExpectedVersion::Any, vec![e]).await?.last_position();
    }
    Ok(last)
}

/// Every event of the log applied to a fresh view set, up to `to`.
fn replay(log: &EventLog, defs: &Definitions, to: u64) -> anyhow::Result<ViewSet> {
    let mut set = ViewSet::new(defs);
    for event in log.iter_all(1) {
        let event = event?;
        if event.position > to {
            break;
        }
        apply_event(&mut set, event);
    }
    Ok(set)
}

/// [`replay`] with every event decoded whole, where views decode only the fields
/// they read: the answers must not differ.
fn replay_whole(log: &EventLog, defs: &Definitions) -> anyhow::Result<ViewSet> {
    let mut set = ViewSet::new(defs);
    for event in log.iter_all(1) {
        let event = event?;
        if set.interested(&event.event_type) {
            set.apply(&into_event_data(event));
        } else {
            set.skip_event(event.position, event.time);
        }
    }
    Ok(set)
}

struct Running {
    views: Views,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<opsflow_views::Result<(), opsflow_views::ViewsError>>,
}

/// Snapshots every 7 positions, a checkpoint after every batch of 5.
fn options() -> ViewsOptions {
    ViewsOptions {
        snapshot_every: 7,
        checkpoint_interval: Duration::from_millis(1),
        batch: 5,
    }
}

fn start(log: &EventLog, defs: &Definitions, dir: &std::path::Path) -> anyhow::Result<Running> {
    let views = Views::open(log.clone(), defs.clone(), dir, options())?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(views.clone().run(stop.clone()));
    Ok(Running { views, stop, task })
}

/// [`start`] on views that a crashed run may still hold for a moment ([`reopen`]).
async fn start_again(log: &EventLog, defs: &Definitions, dir: &std::path::Path) -> anyhow::Result<Running> {
    let views = reopen(log, defs, dir, &options()).await?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(views.clone().run(stop.clone()));
    Ok(Running { views, stop, task })
}

async fn until(views: &Views, position: u64) -> anyhow::Result<()> {
    let mut w = views.watch_position();
    tokio::time::timeout(Duration::from_secs(10), w.wait_for(|p| *p >= position)).await??;
    Ok(())
}

async fn check(log: &EventLog, defs: &Definitions, views: &Views, cuts: &[u64]) -> anyhow::Result<()> {
    let head = log.head();
    until(views, head).await?;
    let live = views.kpis(AsOf::Live, &[]).await?;
    let expected = replay(log, defs, head)?;
    assert_eq!(live.position, head);
    assert_eq!(live.items, expected.kpis(), "live KPIs differ from a replay");
    assert_eq!(views.controls(AsOf::Live, &[]).await?.items, expected.controls());
    let whole = replay_whole(log, defs)?;
    assert_eq!(whole.kpis(), expected.kpis(), "decoding whole events changes KPIs");
    assert_eq!(
        whole.controls(),
        expected.controls(),
        "decoding whole events changes controls"
    );
    for &cut in cuts {
        let cut = cut % (head + 1);
        let at = views.kpis(AsOf::Position(cut), &[]).await?;
        let expected = replay(log, defs, cut)?;
        assert_eq!(at.position, cut);
        assert_eq!(at.items, expected.kpis(), "as of {cut}");
        assert_eq!(
            views.controls(AsOf::Position(cut), &[]).await?.items,
            expected.controls()
        );
        // Asking for some views rebuilds only those: each answers as in the whole set.
        for kpi in expected.kpis().into_iter().step_by(3) {
            let named = views.kpis(AsOf::Position(cut), std::slice::from_ref(&kpi.name)).await?;
            assert_eq!(named.items, vec![kpi], "as of {cut}, one KPI");
        }
        for control in expected.controls() {
            let named = views
                .controls(AsOf::Position(cut), std::slice::from_ref(&control.name))
                .await?;
            assert_eq!(named.items, vec![control], "as of {cut}, one control");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Chunks of events, each appended while a runtime runs; between chunks the
    /// runtime stops cleanly or is aborted mid-flight (a crash: its last checkpoint
    /// may be behind), and the next one opens the same views directory.
    #[test]
    fn live_equals_replay_across_restarts_and_as_of_equals_a_cut(
        chunks in prop::collection::vec((prop::collection::vec(generated(), 1..40), any::<bool>()), 1..6),
        cuts in prop::collection::vec(any::<u64>(), 3),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        rt.block_on(async move {
            let dir = tempfile::tempdir()?;
            let log = sim_log(dir.path())?;
            let defs = opsflow_definitions::builtin();
            let views_dir = dir.path().join("views");
            let mut clock = T0;
            let mut index = 0;
            for (chunk, crash) in &chunks {
                let running = start_again(&log, &defs, &views_dir).await?;
                append_all(&log, &steps(chunk, clock, &mut index), &mut clock).await?;
                check(&log, &defs, &running.views, &cuts).await?;
                if *crash {
                    running.task.abort();
                    let _ = running.task.await;
                } else {
                    running.stop.cancel();
                    running.task.await??;
                }
            }
            log.close().await?;
            Ok::<_, anyhow::Error>(())
        }).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_definition_rebuilds_only_its_view_and_as_of_still_matches() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = sim_log(dir.path())?;
    let (v1, v2) = all_then_some()?;
    let running = start(&log, &v1, &dir.path().join("views"))?;
    let mut clock = T0;
    let steps: Vec<Step> = (0..40).map(|n| ("t.x", json!({ "n": n }), 1)).collect();
    append_all(&log, &steps, &mut clock).await?;
    check(&log, &v1, &running.views, &[3, 14, 22, 40]).await?;

    let stale = running.views.reload(v2.clone(), running.stop.clone());
    assert_eq!(stale, ["some"], "only the changed view is rebuilt");
    for _ in 0..100 {
        if running.views.rebuilding().is_empty()
            && running.views.kpis(AsOf::Live, &[]).await?.items == replay(&log, &v2, 40)?.kpis()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check(&log, &v2, &running.views, &[3, 14, 22, 35, 40]).await?;
    append_all(&log, &steps[..5], &mut clock).await?;
    check(&log, &v2, &running.views, &[7, 44]).await?;

    // A new target (and description) only: nothing is rebuilt, and the reports
    // judge by it at once, as of any position too.
    let yaml = "kpis:\n  - name: all\n    kind: count\n    on: { type: t.x }\n    description: every t.x\n    \
                target: { green: \"<= 1\" }\n  - name: some\n    kind: count\n    on: { type: t.x, if: \"event.data.n % 2 == 0\" }\n";
    let v3 = Definitions::from_files(&[("k.yaml".into(), yaml.into())]).map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_ne!(v3.version, v2.version);
    let stale = running.views.reload(v3.clone(), running.stop.clone());
    assert!(stale.is_empty(), "{stale:?}");
    for as_of in [AsOf::Live, AsOf::Position(22)] {
        let all = running.views.kpis(as_of, &["all".to_string()]).await?.items;
        assert_eq!(all[0].target.as_deref(), Some("count <= 1"), "{all:?}");
        assert_eq!(all[0].description, "every t.x");
        let day = all[0].values.iter().find(|v| v.window == "24h").expect("a 24h value");
        assert_eq!(day.status, Status::Red, "{day:?}");
    }
    check(&log, &v3, &running.views, &[7, 44]).await?;
    running.stop.cancel();
    running.task.await??;
    log.close().await?;
    Ok(())
}

#[tokio::test]
async fn shutdown_stops_a_catch_up_between_batches() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = sim_log(dir.path())?;
    let yaml = "kpis:\n  - name: all\n    kind: count\n    on: { type: t.x }\n";
    let defs = Definitions::from_files(&[("k.yaml".into(), yaml.into())]).map_err(|e| anyhow::anyhow!("{e}"))?;
    for chunk in 0..4 {
        let events = (0..500)
            .map(|n| ProposedEvent::json("t.x", json!({ "n": chunk * 500 + n }).to_string()))
            .collect();
        log.append("s", ExpectedVersion::Any, events).await?;
    }
    // Batches of 5: 400 of them to catch up with the log.
    let running = start(&log, &defs, &dir.path().join("views"))?;
    running.stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), running.task).await???;
    let position = running.views.position();
    assert!(
        position < log.head(),
        "stopped at {position} of {}: shutdown waited for the whole catch-up",
        log.head()
    );
    log.close().await?;
    Ok(())
}

fn count_all() -> anyhow::Result<Definitions> {
    let yaml = "kpis:\n  - name: all\n    kind: count\n    on: { type: t.x }\n";
    Definitions::from_files(&[("k.yaml".into(), yaml.into())]).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs the views in `dir` while `count` `t.x` events are appended, and stops them
/// cleanly (checkpointed) once they have applied them.
async fn append_and_stop(
    log: &EventLog,
    defs: &Definitions,
    dir: &std::path::Path,
    options: &ViewsOptions,
    count: u64,
) -> anyhow::Result<()> {
    let views = Views::open(log.clone(), defs.clone(), dir, options.clone())?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(views.clone().run(stop.clone()));
    let events = (0..count)
        .map(|n| ProposedEvent::json("t.x", json!({ "n": n }).to_string()))
        .collect();
    log.append("s", ExpectedVersion::Any, events).await?;
    until(&views, log.head()).await?;
    stop.cancel();
    task.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_views_are_checkpointed_while_events_trickle_in_and_once_they_stop() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = sim_log(dir.path())?;
    let defs = count_all()?;
    let options = ViewsOptions {
        snapshot_every: 1_000_000,
        checkpoint_interval: Duration::from_millis(100),
        batch: 5,
    };
    let views = Views::open(log.clone(), defs.clone(), &dir.path().join("views"), options)?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(views.clone().run(stop.clone()));
    // One event at a time, so that every catch-up applies only a few.
    let mut checkpointed_while_appending = 0;
    for n in 0..120 {
        let e = ProposedEvent::json("t.x", json!({ "n": n }).to_string());
        log.append("s", ExpectedVersion::Any, vec![e]).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        checkpointed_while_appending = views.checkpoint_position();
    }
    assert!(
        checkpointed_while_appending > 0,
        "no checkpoint in {} appends over more than 0.6 s (interval 0.1 s)",
        log.head()
    );
    // Nothing more comes: the rest is checkpointed after the interval.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while views.checkpoint_position() < log.head() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "checkpoint stuck at {} of {}",
            views.checkpoint_position(),
            log.head()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    task.await??;
    log.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_views_start_from_a_snapshot_newer_than_their_checkpoint() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = sim_log(dir.path())?;
    let defs = count_all()?;
    let options = ViewsOptions {
        snapshot_every: 10,
        checkpoint_interval: Duration::from_secs(3600),
        batch: 5,
    };
    let views = Views::open(log.clone(), defs.clone(), &dir.path().join("views"), options.clone())?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(views.clone().run(stop.clone()));
    let events = (0..25)
        .map(|n| ProposedEvent::json("t.x", json!({ "n": n }).to_string()))
        .collect();
    log.append("s", ExpectedVersion::Any, events).await?;
    until(&views, 25).await?;
    assert_eq!(views.checkpoint_position(), 0, "no checkpoint is due within the hour");
    // A crash: no shutdown, so no checkpoint.
    task.abort();
    let _ = task.await;
    drop(views);
    let views = reopen(&log, &defs, &dir.path().join("views"), &options).await?;
    assert_eq!(views.position(), 20, "the snapshot at 20 is newer than the checkpoint");
    let stop = CancellationToken::new();
    let task = tokio::spawn(views.clone().run(stop.clone()));
    until(&views, 25).await?;
    assert_eq!(
        views.kpis(AsOf::Live, &[]).await?.items,
        replay(&log, &defs, 25)?.kpis()
    );
    stop.cancel();
    task.await??;
    log.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_view_is_checkpointed_when_it_is_swapped_in() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = sim_log(dir.path())?;
    let (v1, v2) = all_then_some()?;
    let options = ViewsOptions {
        snapshot_every: 1_000,
        checkpoint_interval: Duration::from_secs(3600),
        batch: 5,
    };
    let views_dir = dir.path().join("views");
    // Under v1, stopped cleanly (checkpointed) at 40.
    append_and_stop(&log, &v1, &views_dir, &options, 40).await?;

    // Under v2 `some` is rebuilt and swapped in while no event comes; then a crash,
    // with no checkpoint due for an hour.
    let views = Views::open(log.clone(), v2.clone(), &views_dir, options.clone())?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(views.clone().run(stop.clone()));
    let expected = replay(&log, &v2, 40)?.kpis();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while views.kpis(AsOf::Live, &[]).await?.items != expected {
        anyhow::ensure!(std::time::Instant::now() < deadline, "the rebuild did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    let _ = task.await;
    drop(views);
    let views = reopen(&log, &v2, &views_dir, &options).await?;
    // Opened, not yet run: the rebuilt view is there, not a stale empty one.
    assert_eq!(views.kpis(AsOf::Live, &[]).await?.items, expected);
    log.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_checkpoints_and_snapshots_are_passed_over_and_rebuilt() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = sim_log(dir.path())?;
    let defs = count_all()?;
    let options = ViewsOptions {
        snapshot_every: 10,
        checkpoint_interval: Duration::from_millis(1),
        batch: 5,
    };
    let views_dir = dir.path().join("views");
    append_and_stop(&log, &defs, &views_dir, &options, 25).await?;
    // One byte of the checkpoint and of the snapshot at 20 flipped on disk. The
    // stopped views' store may hold sled's lock a moment longer: opened as opsflow
    // opens it, waiting for the lock (a plain sled::open failed once in CI).
    {
        let db = opsflow_log::open_sled(&sled::Config::new().path(&views_dir))?;
        let mut live = db
            .get(b"live")?
            .map(|v| v.to_vec())
            .ok_or_else(|| anyhow::anyhow!("no checkpoint"))?;
        let last = live.len() - 1;
        live[last] ^= 0x01;
        db.insert(b"live", live)?;
        db.flush()?;
    }
    let snapshot = views_dir.join("snapshots").join(format!("{:020}.snap", 20));
    let mut bytes = std::fs::read(&snapshot)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&snapshot, bytes)?;
    // The views open all the same, rebuild, and answer as a replay does; as of 22 the
    // query starts from the snapshot at 10.
    let views = reopen(&log, &defs, &views_dir, &options).await?;
    assert_eq!(
        views.position(),
        10,
        "the checkpoint and the snapshot at 20 are passed over"
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(views.clone().run(stop.clone()));
    until(&views, 25).await?;
    assert_eq!(
        views.kpis(AsOf::Live, &[]).await?.items,
        replay(&log, &defs, 25)?.kpis()
    );
    for cut in [15, 22] {
        assert_eq!(
            views.kpis(AsOf::Position(cut), &[]).await?.items,
            replay(&log, &defs, cut)?.kpis(),
            "as of {cut}"
        );
    }
    stop.cancel();
    task.await??;
    log.close().await?;
    Ok(())
}

/// `n` events of every type in turn over `keys` keys.
fn mixed(n: usize, keys: usize) -> Vec<Generated> {
    (0..n)
        .map(|i| Generated {
            type_index: i % TYPES.len(),
            key: (i % keys) as u8,
            amount: (i * 7919 % 20_000) as u32,
            flag: i % 2 == 0,
            gap: (i % 7) as i64,
        })
        .collect()
}

/// The built-in views running over a log of `generated`, caught up; `clock` and
/// `index` go on from there.
struct Builtin {
    log: EventLog,
    defs: Definitions,
    running: Running,
    clock: i64,
    index: usize,
}

async fn builtin_over(dir: &std::path::Path, generated: &[Generated]) -> anyhow::Result<Builtin> {
    let log = sim_log(dir)?;
    let defs = opsflow_definitions::builtin();
    let running = start(&log, &defs, &dir.join("views"))?;
    let (mut clock, mut index) = (T0, 0);
    append_all(&log, &steps(generated, clock, &mut index), &mut clock).await?;
    until(&running.views, log.head()).await?;
    Ok(Builtin {
        log,
        defs,
        running,
        clock,
        index,
    })
}

/// Rebuilds asked for at the same time, of one view and of several, while events
/// come: each returns once its views are swapped in, none fails, and the views and
/// their snapshots (as-of answers) are as a replay gives them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilds_at_the_same_time_all_finish_and_change_no_answer() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let generated = mixed(600, 3);
    let Builtin {
        log,
        defs,
        running,
        mut clock,
        mut index,
    } = builtin_over(dir.path(), &generated[..400]).await?;
    let names = ["order_cycle_time", "order_cycle_time", "mtta", "mttr", "open_orders"];
    let rebuilds = names.map(|name| {
        let views = running.views.clone();
        let stop = running.stop.clone();
        tokio::spawn(async move { views.rebuild(vec![name.to_owned()], stop).await })
    });
    // Events keep coming meanwhile.
    append_all(&log, &steps(&generated[400..], clock, &mut index), &mut clock).await?;
    for (name, rebuild) in names.iter().zip(rebuilds) {
        let report = rebuild.await?.map_err(|e| anyhow::anyhow!("rebuilding {name}: {e}"))?;
        assert_eq!(report.names, [*name]);
    }
    check(&log, &defs, &running.views, &[3, 210, 399, 455, 600]).await?;
    running.stop.cancel();
    running.task.await??;
    log.close().await?;
    Ok(())
}

/// A rebuild asked for while one under the same definitions that covers its views
/// runs or waits joins it, so a client retrying after its deadline queues nothing:
/// the answers are that rebuild's. Asked for once it is done, a rebuild is a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_asked_for_while_one_covering_it_runs_joins_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let Builtin { log, defs, running, .. } = builtin_over(dir.path(), &mixed(300, 5)).await?;
    let ask = |names: &[&str]| {
        let (views, stop) = (running.views.clone(), running.stop.clone());
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        async move { views.rebuild(names, stop).await }
    };
    // Polled in order: every view first, then one of them, twice.
    let (all, mtta, again) = futures::future::join3(ask(&[]), ask(&["mtta"]), ask(&["mtta"])).await;
    let (all, mtta, again) = (all?, mtta?, again?);
    assert_eq!(all.names.len(), defs.kpis.len() + defs.controls.len());
    for joined in [&mtta, &again] {
        assert_eq!(joined.names, ["mtta"]);
        assert_eq!(
            (joined.events, joined.position, joined.seconds),
            (all.events, all.position, all.seconds),
            "not the rebuild it joined"
        );
    }
    // Views the running one does not cover: a rebuild of their own.
    let (open_orders, mttr) = futures::future::join(ask(&["open_orders"]), ask(&["mttr"])).await;
    assert_ne!(open_orders?.seconds, mttr?.seconds);
    let later = ask(&["mtta"]).await?;
    assert_ne!(
        later.seconds, all.seconds,
        "a rebuild asked for after the last one ended is new"
    );
    check(&log, &defs, &running.views, &[1, 150, 300]).await?;
    running.stop.cancel();
    running.task.await??;
    log.close().await?;
    Ok(())
}
