//! Reading a definitions directory: its `*.yaml` and `*.yml` files, sorted by name.

use std::path::Path;

use crate::error::{CheckError, CheckErrors};

/// The definition files of `dir` (not its subdirectories) as (file name, content),
/// sorted by name.
pub(crate) fn read_files(dir: &Path) -> Result<Vec<(String, String)>, CheckErrors> {
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        CheckErrors::new(vec![CheckError::file(
            &shown,
            format!("cannot read the directory: {e}"),
        )])
    })?;
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(CheckError::file(&shown, format!("cannot read the directory: {e}")));
                continue;
            }
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.ends_with(".yaml") || name.ends_with(".yml")) || name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(content) => files.push((name, content)),
                Err(_) => errors.push(CheckError::file(&name, "not UTF-8 text")),
            },
            Err(e) => errors.push(CheckError::file(&name, format!("cannot read: {e}"))),
        }
    }
    if !errors.is_empty() {
        return Err(CheckErrors::new(errors));
    }
    files.sort_unstable();
    Ok(files)
}
