//! Errors that point into a source file, with line and column, from Cedar's miette diagnostics.

use miette::Diagnostic;
use std::fmt;

/// One problem in a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// The file (or other label) it is in.
    pub source_name: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl SourceError {
    pub(crate) fn without_location(source_name: &str, message: String) -> Self {
        Self {
            source_name: source_name.to_owned(),
            line: None,
            column: None,
            message,
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{}:{line}:{column}: {}", self.source_name, self.message)
            }
            _ => write!(f, "{}: {}", self.source_name, self.message),
        }
    }
}

/// Turns a Cedar diagnostic (possibly holding several related errors) into located errors.
pub(crate) fn locate(
    source_name: &str,
    text: &str,
    diagnostic: &dyn Diagnostic,
) -> Vec<SourceError> {
    let mut message = diagnostic.to_string();
    if let Some(help) = diagnostic.help() {
        message = format!("{message} (help: {help})");
    }
    if let Some(related) = diagnostic.related() {
        let related: Vec<_> = related
            .flat_map(|inner| locate(source_name, text, inner))
            .collect();
        if !related.is_empty() {
            return related;
        }
    }
    let offset = diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    let (line, column) = match offset {
        Some(offset) => {
            let (line, column) = line_column(text, offset);
            (Some(line), Some(column))
        }
        None => (None, None),
    };
    vec![SourceError {
        source_name: source_name.to_owned(),
        line,
        column,
        message,
    }]
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |idx| idx + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let text = "ab\ncd\nef";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (2, 2));
        assert_eq!(line_column(text, 6), (3, 1));
        assert_eq!(line_column(text, 999), (3, 3));
    }
}
