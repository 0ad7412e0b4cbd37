//! Whether each NATS task is actually doing its job, for `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the transport tasks once their consumer or subscription is established,
/// cleared while they recover. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    pub ingest: Flag,
    pub requests: Flag,
    pub outbound: Flag,
}

/// One task's readiness.
#[derive(Debug, Clone, Default)]
pub struct Flag(Arc<AtomicBool>);

impl Flag {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
