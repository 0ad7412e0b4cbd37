//! Whether each NATS task is actually doing its job, for `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Set by the transport tasks once their consumer or subscription is established,
/// cleared while they recover. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    pub ingest: Flag,
    pub requests: Flag,
    pub outbound: Flag,
    /// The connection ingest and outbound share ([`crate::connect`]).
    pub connection: Flag,
    /// Request/reply's own connection.
    pub requests_connection: Flag,
}

/// One task's readiness, and why it is not ready when it failed.
#[derive(Debug, Clone, Default)]
pub struct Flag(Arc<FlagState>);

#[derive(Debug, Default)]
struct FlagState {
    ready: AtomicBool,
    problem: Mutex<Option<String>>,
}

impl Flag {
    /// Ready (which clears the last problem) or not.
    pub fn set(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::Release);
        if ready {
            *self.problem() = None;
        }
    }

    /// Not ready, because of `problem` (shown until the task is ready again).
    pub fn fail(&self, problem: impl Into<String>) {
        self.0.ready.store(false, Ordering::Release);
        *self.problem() = Some(problem.into());
    }

    pub fn get(&self) -> bool {
        self.0.ready.load(Ordering::Acquire)
    }

    /// The last failure since the task was last ready.
    pub fn problem_text(&self) -> Option<String> {
        self.problem().clone()
    }

    fn problem(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.0.problem.lock().unwrap_or_else(|e| e.into_inner())
    }
}
