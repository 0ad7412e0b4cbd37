//! Reloading a definitions directory when its content changes.

use std::path::{Path, PathBuf};

use crate::Definitions;
use crate::error::CheckErrors;
use crate::version::version_of;

/// Watches a definitions directory by polling: [`poll`](Self::poll) reads the
/// directory and answers only when its content changed since the last poll.
///
/// Polling reads every definition file (a few kilobytes), so it is cheap but
/// blocking: from async code, call it with `spawn_blocking` or accept a short
/// block once a second.
#[derive(Debug)]
pub struct DefinitionsWatcher {
    dir: PathBuf,
    /// What the last poll saw: the version of the files, or the error reading them.
    last: Option<String>,
}

impl DefinitionsWatcher {
    /// A watcher whose first poll loads the directory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DefinitionsWatcher {
            dir: dir.into(),
            last: None,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `None` when the directory holds what it held at the last poll; otherwise the
    /// new definitions, or every problem with them (the caller keeps its last good
    /// set). The first poll always answers.
    pub fn poll(&mut self) -> Option<Result<Definitions, CheckErrors>> {
        let files = crate::dir::read_files(&self.dir);
        let seen = match &files {
            Ok(files) => version_of(files),
            Err(e) => format!("error: {e}"),
        };
        if self.last.as_deref() == Some(seen.as_str()) {
            return None;
        }
        self.last = Some(seen);
        Some(files.and_then(|files| Definitions::from_files(&files)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "kpis:\n  - name: placed\n    kind: count\n    on: { type: order.placed }\n";

    #[test]
    fn poll_answers_only_when_the_directory_changes() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("a.yaml"), GOOD)?;
        let mut watcher = DefinitionsWatcher::new(dir.path());

        let first = watcher.poll().expect("the first poll answers").expect("checks");
        assert_eq!(first.kpis.len(), 1);
        assert!(watcher.poll().is_none(), "nothing changed");

        // Files that are not definitions do not count.
        std::fs::write(dir.path().join("notes.txt"), "hello")?;
        assert!(watcher.poll().is_none());

        // A broken file: reported once, then quiet until it changes again.
        std::fs::write(dir.path().join("b.yml"), "kpis: [")?;
        let errors = watcher.poll().expect("changed").expect_err("does not check");
        assert_eq!(errors.errors[0].file, "b.yml");
        assert!(watcher.poll().is_none());

        // Fixed: the new set, with a new version.
        std::fs::write(
            dir.path().join("b.yml"),
            "kpis:\n  - name: shipped\n    kind: count\n    on: { type: order.shipped }\n",
        )?;
        let second = watcher.poll().expect("changed").expect("checks");
        assert_eq!(second.kpis.len(), 2);
        assert_ne!(second.version, first.version);
        assert!(watcher.poll().is_none());

        // Back to the first content: the first version again.
        std::fs::remove_file(dir.path().join("b.yml"))?;
        let third = watcher.poll().expect("changed").expect("checks");
        assert_eq!(third.version, first.version);
        Ok(())
    }

    #[test]
    fn a_missing_directory_is_reported_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut watcher = DefinitionsWatcher::new(dir.path().join("nope"));
        let errors = watcher.poll().expect("answers").expect_err("no directory");
        assert!(errors.to_string().contains("cannot read the directory"), "{errors}");
        assert!(watcher.poll().is_none());
        std::fs::create_dir(dir.path().join("nope")).expect("mkdir");
        let empty = watcher.poll().expect("changed").expect("an empty directory checks");
        assert!(empty.kpis.is_empty() && empty.controls.is_empty());
    }
}
