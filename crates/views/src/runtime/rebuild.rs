//! Rebuilding views from position 1 beside the live ones, swapping them in once
//! caught up; a rebuild under new definitions runs in the background.

use super::*;

impl Views {
    /// Rebuilds the named views from position 1 beside the live ones, swapping them
    /// in once caught up. Returns when done.
    pub async fn rebuild(&self, names: Vec<String>, shutdown: CancellationToken) -> Result<RebuildReport> {
        let defs = self.definitions();
        let known = view_names(&defs);
        let mut unknown = names.iter().filter(|n| !known.contains(n)).cloned();
        if let Some(name) = unknown.next() {
            return Err(ViewsError::UnknownView {
                name,
                others: unknown.collect(),
                kind: "view",
                known,
            });
        }
        let names = if names.is_empty() { known } else { names };
        let mut landing = self.flight(defs, &names, shutdown);
        let landed = landing
            .wait_for(Option::is_some)
            .await
            .map_err(|_| ViewsError::Stopped("the rebuild ended without an outcome".into()))?
            .clone();
        match landed.as_deref() {
            Some(Ok(report)) => Ok(RebuildReport {
                names,
                ..report.clone()
            }),
            Some(Err(e)) => Err(joined(e)),
            None => Err(ViewsError::Stopped("the rebuild ended without an outcome".into())),
        }
    }

    /// The rebuild of `names` under `defs`: one already running or waiting under
    /// the same definitions that covers them is joined (its views, rebuilt from
    /// position 1 and caught up with the head, are what another would give), so a
    /// client retrying after its deadline does not queue the same rebuild again;
    /// else a new one starts. It runs to its end whoever waits, and [`Views::run`]
    /// waits for it before it returns.
    fn flight(&self, defs: Arc<Definitions>, names: &[String], shutdown: CancellationToken) -> Landing {
        let mut flights = lock(&self.inner.flights);
        if let Some(flight) = flights
            .iter()
            .find(|f| f.version == defs.version && names.iter().all(|n| f.names.contains(n)))
        {
            return flight.landing.clone();
        }
        let (land, landing) = watch::channel(None);
        flights.push(Flight {
            version: defs.version.clone(),
            names: names.iter().cloned().collect(),
            landing: landing.clone(),
        });
        drop(flights);
        let inner = self.inner.clone();
        let names = names.to_vec();
        let own = landing.clone();
        let handle = tokio::spawn(async move {
            let rebuilding = inner.clone();
            let outcome = blocking(move || rebuilding.rebuild(&defs, names, &shutdown)).await;
            // Out of the list first: a request from now on starts a rebuild of its own.
            lock(&inner.flights).retain(|f| !f.landing.same_channel(&own));
            let _ = land.send(Some(Arc::new(outcome)));
        });
        let mut background = lock(&self.inner.background);
        background.retain(|h| !h.is_finished());
        background.push(handle);
        landing
    }

    /// Puts new definitions in force: views whose definition is unchanged keep their
    /// state; new and changed ones start empty and are rebuilt in the background.
    pub fn reload(&self, definitions: Definitions, shutdown: CancellationToken) -> Vec<String> {
        let stale = {
            let mut live = lock(&self.inner.live);
            let reloaded = match ViewSet::decode(&definitions, live.encode()) {
                Ok(set) => set,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot carry views over to the new definitions; rebuilding all");
                    ViewSet::new(&definitions)
                }
            };
            let stale = if reloaded.position() == live.position() {
                reloaded.stale_views().to_vec()
            } else {
                ViewSet::new(&definitions).view_names()
            };
            *live = reloaded;
            stale
        };
        if let Ok(mut d) = self.inner.definitions.write() {
            *d = Arc::new(definitions);
        }
        tracing::info!(version = %self.definitions().version, stale = ?stale, "definitions reloaded");
        if !stale.is_empty() {
            self.spawn_rebuild(stale.clone(), shutdown);
        }
        stale
    }

    pub(super) fn spawn_rebuild(&self, names: Vec<String>, shutdown: CancellationToken) {
        let views = self.clone();
        let handle = tokio::spawn(async move {
            let outcome = views.rebuild(names, shutdown).await;
            let error = match outcome {
                Ok(report) => {
                    tracing::info!(views = ?report.names, events = report.events, seconds = report.seconds, "views rebuilt");
                    None
                }
                // A rebuild cut short by shutdown or by newer definitions is not a failure.
                Err(ViewsError::Stopped(reason)) => {
                    tracing::info!(reason, "view rebuild stopped");
                    None
                }
                Err(e) => {
                    tracing::error!(error = %e, "view rebuild failed");
                    Some(e.to_string())
                }
            };
            *lock(&views.inner.background_error) = error;
        });
        let mut background = lock(&self.inner.background);
        background.retain(|h| !h.is_finished());
        background.push(handle);
    }
}

impl Inner {
    fn rebuild(&self, defs: &Definitions, names: Vec<String>, stop: &CancellationToken) -> Result<RebuildReport> {
        let started = Instant::now();
        // Said to be rebuilding from the moment it is asked for, also while it waits.
        {
            let mut rebuilding = lock(&self.rebuilding);
            for n in &names {
                *rebuilding.entry(n.clone()).or_default() += 1;
            }
        }
        let result = {
            // One at a time: a rebuild asked for while another runs waits for it,
            // and does not start under definitions replaced meanwhile.
            let _one_at_a_time = lock(&self.rebuilds);
            if self.definitions().version == defs.version {
                self.rebuild_inner(defs, &names, stop)
            } else {
                Err(ViewsError::Stopped(
                    "the definitions changed while the rebuild waited; the views they changed are rebuilt".into(),
                ))
            }
        };
        {
            let mut rebuilding = lock(&self.rebuilding);
            for n in &names {
                if let Some(count) = rebuilding.get_mut(n) {
                    *count -= 1;
                    if *count == 0 {
                        rebuilding.remove(n);
                    }
                }
            }
        }
        let (events, position) = result?;
        // The swapped-in views are saved now: with no event coming, nothing else
        // would checkpoint them before a crash.
        self.checkpoint()?;
        Ok(RebuildReport {
            names,
            events,
            position,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn rebuild_inner(&self, defs: &Definitions, names: &[String], stop: &CancellationToken) -> Result<(u64, u64)> {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut fresh = ViewSet::only(defs, &refs);
        let mut events = 0u64;
        loop {
            if stop.is_cancelled() {
                return Err(ViewsError::Stopped("shutdown during a rebuild".into()));
            }
            let live_position = lock(&self.live).position();
            // Far behind: catch up without holding the live lock.
            if live_position > fresh.position() + self.options.batch as u64 {
                events += self.replay(&mut fresh, live_position, |f| self.rebuilt_to(defs, f, stop))?;
                continue;
            }
            // Close: finish under the live lock, then swap.
            let mut live = lock(&self.live);
            if live.definitions_version() != defs.version {
                return Err(ViewsError::Stopped(
                    "the definitions changed during the rebuild; a new rebuild follows".into(),
                ));
            }
            events += self.replay(&mut fresh, live.position(), |f| self.rebuilt_to(defs, f, stop))?;
            if fresh.position() != live.position() {
                return Err(ViewsError::Corrupt(format!(
                    "rebuild reached position {} but the live views are at {}",
                    fresh.position(),
                    live.position()
                )));
            }
            for name in names {
                if let Some(view) = fresh.take_view(name) {
                    live.put_view(view);
                }
            }
            return Ok((events, live.position()));
        }
    }

    /// After each event of a rebuild: merge into the snapshot at this position, and
    /// stop now and then if the server is shutting down.
    fn rebuilt_to(&self, defs: &Definitions, fresh: &ViewSet, stop: &CancellationToken) -> Result<()> {
        if fresh.position().is_multiple_of(self.options.snapshot_every) {
            self.merge_into_snapshot(defs, fresh)?;
        }
        if fresh.position().is_multiple_of(65_536) && stop.is_cancelled() {
            return Err(ViewsError::Stopped("shutdown during a rebuild".into()));
        }
        Ok(())
    }

    /// Puts the rebuilt views into the stored snapshot at the same position, so as-of
    /// queries can start there again.
    fn merge_into_snapshot(&self, defs: &Definitions, fresh: &ViewSet) -> Result<()> {
        let position = fresh.position();
        // Read, changed and written again as one: the live views may write this
        // snapshot meanwhile.
        let _writing = lock(&self.snapshots);
        // A rebuild of every view makes the whole snapshot, whatever was there (or
        // nothing was: taken under other definitions, or never).
        if fresh.view_names().len() == defs.kpis.len() + defs.controls.len() {
            return self.store.save_snapshot(position, &fresh.encode());
        }
        let Some(bytes) = self.store.snapshot(position)? else {
            return Ok(());
        };
        // The other views' states are copied as stored, not decoded, when the
        // rebuilt views keep what the snapshot already holds (a rebuild under the
        // same definitions): a merge then costs about the bytes of the snapshot.
        match fresh.merge_into(defs, bytes) {
            Ok(Some(merged)) => self.store.save_snapshot(position, &merged),
            // Unreadable (another format) or not of this position: left as it is.
            _ => Ok(()),
        }
    }
}

/// A rebuild's error for a request that joined it (not every error can be cloned):
/// of the same kind as far as a client can tell.
fn joined(e: &ViewsError) -> ViewsError {
    match e {
        ViewsError::Stopped(reason) => ViewsError::Stopped(reason.clone()),
        ViewsError::Log(log) if log.kind() == opsflow_log::ErrorKind::Unavailable => {
            ViewsError::Stopped(log.to_string())
        }
        ViewsError::Corrupt(reason) => ViewsError::Corrupt(reason.clone()),
        ViewsError::Storage(storage) => ViewsError::Storage(storage.clone()),
        other => ViewsError::Files(format!("the rebuild failed: {other}")),
    }
}
