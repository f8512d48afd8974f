//! The one error of this module's pure parsers: a kernel file that did not hold
//! what we expected. It names the file and what was missing.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The file, e.g. `/proc/stat`.
    pub file: &'static str,
    /// What was wrong, e.g. `no "cpu " line`.
    pub problem: String,
}

impl ParseError {
    pub fn new(file: &'static str, problem: impl Into<String>) -> ParseError {
        ParseError {
            file,
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.problem)
    }
}

impl From<ParseError> for String {
    fn from(error: ParseError) -> String {
        error.to_string()
    }
}

/// Parses whitespace-separated field `index` of `line` as a `T`.
pub fn field<T: std::str::FromStr>(
    file: &'static str,
    line: &str,
    index: usize,
) -> Result<T, ParseError> {
    let text = line
        .split_whitespace()
        .nth(index)
        .ok_or_else(|| ParseError::new(file, format!("field {index} missing in {line:?}")))?;
    text.parse()
        .map_err(|_| ParseError::new(file, format!("field {index} is not a number: {text:?}")))
}
