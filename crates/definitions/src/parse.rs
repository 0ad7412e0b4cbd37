//! From YAML files to [`Definitions`]: every file read, every problem reported.

mod control;
mod kpi;
mod quantity;
mod yaml;

use std::collections::BTreeMap;
use std::path::Path;

use marked_yaml::{LoadError, LoaderOptions, Node};

use self::yaml::{Checker, Loc, describe, span_loc};
use crate::error::CheckErrors;
use crate::version::version_of;
use crate::{ControlDef, Definitions, KpiDef};

/// The keys a definitions file may have at its top level.
const TOP_LEVEL: &[&str] = &["kpis", "controls"];

impl Definitions {
    /// Checks and compiles a set of definition files, given as (file name, content).
    /// The order of `files` does not matter: they are read sorted by name. On
    /// failure, every problem found in every file is returned.
    pub fn from_files(files: &[(String, String)]) -> Result<Definitions, CheckErrors> {
        let mut sorted: Vec<&(String, String)> = files.iter().collect();
        sorted.sort_unstable();
        let mut errors = Vec::new();
        let mut kpis = Vec::new();
        let mut controls = Vec::new();
        // Name -> where it was first defined, for duplicates across files.
        let mut names: BTreeMap<String, (String, Loc)> = BTreeMap::new();
        for (file, content) in sorted {
            let mut checker = Checker::new(file);
            read_file(&mut checker, content, &mut kpis, &mut controls, &mut names);
            errors.append(&mut checker.errors);
        }
        if !errors.is_empty() {
            return Err(CheckErrors::new(errors));
        }
        Ok(Definitions {
            version: version_of(files),
            kpis,
            controls,
        })
    }

    /// Checks and compiles the `*.yaml` and `*.yml` files of `dir` (not its
    /// subdirectories; names starting with `.` are skipped).
    pub fn load_dir(dir: &Path) -> Result<Definitions, CheckErrors> {
        Definitions::from_files(&crate::dir::read_files(dir)?)
    }
}

fn read_file(
    c: &mut Checker<'_>,
    content: &str,
    kpis: &mut Vec<KpiDef>,
    controls: &mut Vec<ControlDef>,
    names: &mut BTreeMap<String, (String, Loc)>,
) {
    if let Some(line) = second_document(content) {
        c.error(
            (line, 1),
            "a definitions file holds one YAML document: split it into files or merge the lists",
        );
        return;
    }
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    let root = match marked_yaml::parse_yaml_with_options(0, content, options) {
        Ok(root) => root,
        Err(e) => {
            let (loc, message) = load_error(&e);
            let (loc, message) = match indenting_tab(content, loc.0) {
                // The scanner names where the value it was reading starts, often a
                // line before the tab: the tab is what to fix.
                Some(tab) if message.contains("tab") => (tab, format!("{message}: YAML indents with spaces only")),
                _ => (loc, message),
            };
            c.error(loc, message);
            return;
        }
    };
    let Some(top) = root.as_mapping() else {
        c.error(
            span_loc(root.span()),
            "a definitions file must be a mapping with `kpis:` and/or `controls:`",
        );
        return;
    };
    c.unknown_fields(top, TOP_LEVEL, "a definitions file (top level)");
    for (section, node) in top.iter() {
        let section = section.as_str();
        if !TOP_LEVEL.contains(&section) {
            continue;
        }
        let items = match node {
            Node::Sequence(items) => items.iter().collect::<Vec<_>>(),
            Node::Scalar(s) if s.may_coerce() && matches!(s.as_str(), "" | "~" | "null") => Vec::new(),
            other => {
                c.error(
                    yaml::node_loc(other),
                    format!("`{section}` must be a list, not {}", describe(other)),
                );
                continue;
            }
        };
        for item in items {
            let name_loc = item
                .as_mapping()
                .and_then(|m| m.get_scalar("name"))
                .map(|s| (s.as_str().to_string(), span_loc(s.span())));
            if section == "kpis" {
                kpis.extend(kpi::kpi(c, item));
            } else {
                controls.extend(control::control(c, item));
            }
            if let Some((name, loc)) = name_loc {
                if !yaml::valid_name(&name) {
                    continue;
                }
                match names.get(&name) {
                    Some((file, (line, _))) => c.error(
                        loc,
                        format!("duplicate name `{name}`: already defined at {file}:{line}"),
                    ),
                    None => {
                        names.insert(name, (c.file.to_string(), loc));
                    }
                }
            }
        }
    }
}

/// The line of a second YAML document (`---` after content), which the loader
/// would silently drop.
fn second_document(content: &str) -> Option<usize> {
    let mut content_seen = false;
    for (i, line) in content.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line == "..." || line.starts_with("... ");
        if is_marker && content_seen {
            return Some(i + 1);
        }
        let trimmed = line.trim();
        if !is_marker && !trimmed.is_empty() && !trimmed.starts_with('#') && !trimmed.starts_with('%') {
            content_seen = true;
        }
    }
    None
}

/// The first tab in a line's indentation from line `from` on (1-based line and
/// column), if any.
fn indenting_tab(content: &str, from: usize) -> Option<Loc> {
    content
        .lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find_map(|(i, line)| {
            let indent = &line[..line.len() - line.trim_start().len()];
            indent.find('\t').map(|at| (i + 1, indent[..at].chars().count() + 1))
        })
}

fn load_error(e: &LoadError) -> (Loc, String) {
    let at = |m: &marked_yaml::Marker| (m.line(), m.column());
    match e {
        LoadError::TopLevelMustBeMapping(m) | LoadError::TopLevelMustBeSequence(m) => (
            at(m),
            "a definitions file must be a mapping with `kpis:` and/or `controls:`".into(),
        ),
        LoadError::UnexpectedAnchor(m) => (at(m), "YAML anchors and aliases are not supported".into()),
        LoadError::MappingKeyMustBeScalar(m) => (at(m), "YAML syntax: mapping keys must be plain strings".into()),
        LoadError::UnexpectedTag(m) => (at(m), "YAML tags (`!!str`, `!x`) are not supported".into()),
        LoadError::ScanError(m, err) => (at(m), format!("YAML syntax: {}", err.info())),
        LoadError::DuplicateKey(d) => {
            let first = span_loc(d.prev_key.span());
            (
                span_loc(d.key.span()),
                format!("duplicate key `{}` (first at line {})", d.key.as_str(), first.0),
            )
        }
    }
}

#[cfg(test)]
mod tests;

/// Errors for a single file's content, for tests.
#[cfg(test)]
pub(crate) fn check_one(name: &str, content: &str) -> Result<Definitions, CheckErrors> {
    Definitions::from_files(&[(name.to_string(), content.to_string())])
}
