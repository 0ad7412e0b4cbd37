//! Check errors: every problem in a definitions directory, located.

use std::fmt;

/// One problem in a definitions file, displayed `file:line:column: message`
/// (`file: message` when it concerns the whole file: `line` is then 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckError {
    /// File name relative to the definitions directory (the directory itself for
    /// a directory that cannot be read).
    pub file: String,
    /// 1-based; 0 when the error is about the whole file.
    pub line: usize,
    /// 1-based; 0 when the error is about the whole file.
    pub column: usize,
    pub message: String,
}

impl CheckError {
    pub(crate) fn at(file: &str, (line, column): (usize, usize), message: impl Into<String>) -> Self {
        CheckError {
            file: file.to_string(),
            line,
            column,
            message: message.into(),
        }
    }

    pub(crate) fn file(file: &str, message: impl Into<String>) -> Self {
        CheckError::at(file, (0, 0), message)
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        }
    }
}

impl std::error::Error for CheckError {}

/// Every problem found in a definitions directory (never empty), sorted by file,
/// line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckErrors {
    pub errors: Vec<CheckError>,
}

impl CheckErrors {
    pub(crate) fn new(mut errors: Vec<CheckError>) -> Self {
        debug_assert!(!errors.is_empty(), "CheckErrors without an error");
        errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        CheckErrors { errors }
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, CheckError> {
        self.errors.iter()
    }
}

impl<'a> IntoIterator for &'a CheckErrors {
    type Item = &'a CheckError;
    type IntoIter = std::slice::Iter<'a, CheckError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

/// One error a line.
impl fmt::Display for CheckErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CheckErrors {}
