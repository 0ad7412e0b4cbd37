//! Readiness: the log's state and every supervised task's state, for `/readyz`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use opsflow_log::EventLog;
use serde_json::{Value, json};

/// The state of a supervised task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    Running,
    Finished,
    Failed(String),
}

/// Named tasks and their states. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    states: Arc<Mutex<BTreeMap<String, TaskState>>>,
}

impl Tasks {
    /// Spawns `future` under `name`; its failure is logged and reported by `/readyz`.
    pub fn spawn<F>(&self, name: &str, future: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.set(name, TaskState::Running);
        let tasks = self.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let state = match future.await {
                Ok(()) => TaskState::Finished,
                Err(e) => {
                    tracing::error!(task = %name, error = %format!("{e:#}"), "task failed");
                    TaskState::Failed(format!("{e:#}"))
                }
            };
            tasks.set(&name, state);
        })
    }

    pub fn set(&self, name: &str, state: TaskState) {
        if let Ok(mut s) = self.states.lock() {
            s.insert(name.to_owned(), state);
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, TaskState> {
        self.states.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Whether the server is ready, and a JSON report of why.
pub fn readiness(log: &EventLog, tasks: &Tasks) -> (bool, Value) {
    let mut ready = true;
    let log_state = if let Some(reason) = log.failure() {
        ready = false;
        json!({ "status": "failed", "reason": reason })
    } else if log.is_closed() {
        ready = false;
        json!({ "status": "closed" })
    } else {
        json!({ "status": "ok", "head": log.head() })
    };
    let mut task_states = serde_json::Map::new();
    for (name, state) in tasks.snapshot() {
        let v = match state {
            TaskState::Running => json!({ "status": "running" }),
            TaskState::Finished => json!({ "status": "finished" }),
            TaskState::Failed(reason) => {
                ready = false;
                json!({ "status": "failed", "reason": reason })
            }
        };
        task_states.insert(name, v);
    }
    (ready, json!({ "ready": ready, "log": log_state, "tasks": task_states }))
}
