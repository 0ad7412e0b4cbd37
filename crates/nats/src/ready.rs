//! Whether each NATS task is actually doing its job, for `/readyz`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// The connection (its count of connects) the task is ready on, 0 for any.
    connection: AtomicU64,
    problem: Mutex<Option<String>>,
    /// The problem is not retried: only a change of setup and a restart cure it.
    refused: AtomicBool,
}

impl Flag {
    /// Ready (which clears the last problem) or not.
    pub fn set(&self, ready: bool) {
        self.0.connection.store(0, Ordering::Release);
        self.0.ready.store(ready, Ordering::Release);
        if ready {
            self.0.refused.store(false, Ordering::Release);
            *self.problem() = None;
        }
    }

    /// Ready on connection `connects` (the client's count of connects) only: a
    /// task that must start again on a new connection is not ready on it until it
    /// has ([`Flag::ready_on`]).
    pub fn set_ready_on(&self, connects: u64) {
        // The connection first: ready is never read with the one before.
        self.0.connection.store(connects, Ordering::Release);
        self.0.ready.store(true, Ordering::Release);
        self.0.refused.store(false, Ordering::Release);
        *self.problem() = None;
    }

    /// Whether the task is ready on the client's connection `connects`.
    pub fn ready_on(&self, connects: u64) -> bool {
        let on = self.0.connection.load(Ordering::Acquire);
        self.get() && (on == 0 || on == connects)
    }

    /// Not ready, because of `problem` (shown until the task is ready again); a
    /// refusal ([`Flag::refuse`]) stays as it is.
    pub fn fail(&self, problem: impl Into<String>) {
        self.0.ready.store(false, Ordering::Release);
        if !self.refused() {
            *self.problem() = Some(problem.into());
        }
    }

    /// Not ready, and not trying again, because of `problem`: it stays so until
    /// the process is restarted, or the task is ready after all.
    pub fn refuse(&self, problem: impl Into<String>) {
        self.0.ready.store(false, Ordering::Release);
        *self.problem() = Some(problem.into());
        self.0.refused.store(true, Ordering::Release);
    }

    /// Whether the task does not try again ([`Flag::refuse`]).
    pub fn refused(&self) -> bool {
        self.0.refused.load(Ordering::Acquire)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_ready_on_a_connection_is_not_ready_on_the_next() {
        let flag = Flag::default();
        assert!(!flag.ready_on(1));
        flag.set_ready_on(1);
        assert!(flag.get() && flag.ready_on(1));
        assert!(!flag.ready_on(2), "ready on a connection it has not started on");
        flag.set_ready_on(2);
        assert!(flag.ready_on(2));
        // Ready without a connection: on any.
        flag.set(true);
        assert!(flag.ready_on(3));
        flag.fail("down");
        assert!(!flag.ready_on(3));
        assert!(!flag.refused());
        flag.refuse("taken");
        assert!(flag.refused() && !flag.get());
        // A later failure (the client stopped, say) leaves the refusal as it is.
        flag.fail("client stopped");
        assert!(flag.refused());
        assert_eq!(flag.problem_text().as_deref(), Some("taken"));
    }
}
