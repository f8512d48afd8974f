//! Where a configuration problem is (`Location`) and what it is (`ConfigError`,
//! `Warning`). Every message names `file:line:col`, what was expected and what was found.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// A place in a configuration file. Lines and columns count from 1; column counts
/// characters, not bytes. Line 0 means "the file as a whole" (e.g. it cannot be read).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl Location {
    pub fn new(file: &Arc<str>, line: u32, col: u32) -> Location {
        Location {
            file: Arc::clone(file),
            line,
            col,
        }
    }

    /// The file as a whole, for problems that have no line (an unreadable file).
    pub(crate) fn whole_file(file: &str) -> Location {
        Location {
            file: Arc::from(file),
            line: 0,
            col: 0,
        }
    }

    /// `line:col` without the file, for pointing at a second place in the same file.
    pub(crate) fn line_col(&self) -> String {
        format!("{}:{}", self.line, self.col)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.col)
        }
    }
}

/// Serialized as its `file:line:col` text, which keeps snapshots short and readable.
impl Serialize for Location {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One problem that makes the configuration unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{at}: error: {kind}")]
pub struct ConfigError {
    pub at: Location,
    pub kind: ErrorKind,
}

impl ConfigError {
    pub fn new(at: Location, kind: ErrorKind) -> ConfigError {
        ConfigError { at, kind }
    }
}

/// Serialized as its one-line text (`file:line:col: error: ...`).
impl Serialize for ConfigError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What went wrong. Each message reads as "expected X, found Y" where that fits.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErrorKind {
    #[error("expected {expected}, found {found}")]
    Syntax { expected: String, found: String },
    #[error("unterminated string: expected a closing `{quote}` before the end of the line")]
    UnterminatedString { quote: char },
    #[error("unterminated comment: expected `*/` before the end of the file")]
    UnterminatedComment,
    #[error("unknown section `{name}` {context}{}", did_you_mean(suggestion))]
    UnknownSection {
        name: String,
        context: String,
        suggestion: Option<String>,
    },
    /// `section` is already quoted or described ("`globals`", "the top level");
    /// `hint` is appended as written (empty when there is none).
    #[error("unknown key `{key}` in {section}{}{hint}", did_you_mean(suggestion))]
    UnknownKey {
        section: String,
        key: String,
        suggestion: Option<String>,
        hint: String,
    },
    #[error("`{key}`: expected {expected}, found {found}")]
    InvalidValue {
        key: String,
        expected: String,
        found: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read `{path}`: {reason}")]
    Read { path: String, reason: String },
    #[error("{0}")]
    Include(String),
    #[error("module `{module}`: {message}")]
    Module { module: String, message: String },
}

/// Appends ` did you mean `X`?` to a message when a close name exists.
fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}

/// Every error found in a configuration, in the order of the files and lines.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Something wasmond accepts but does differently from gmond, or ignores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    pub at: Location,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: warning: {}", self.at, self.message)
    }
}

/// Describes a piece of input for "found ..." in messages, shortened so that a
/// runaway token cannot flood the output.
pub(crate) fn describe_text(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    let mut shown: String = text.chars().take(MAX_CHARS).collect();
    if text.chars().count() > MAX_CHARS {
        shown.push('…');
    }
    format!("`{}`", shown.escape_debug())
}
