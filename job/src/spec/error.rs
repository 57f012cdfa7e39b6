//! The job spec error type.

use std::fmt;
use std::sync::Arc;

/// Where in a job spec: the origin (file name or "request") and the 1-based line (0 when
/// unknown, e.g. for specs built in code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name or another description of where the text came from.
    pub origin: Arc<str>,
    /// 1-based line; 0 when unknown.
    pub line: usize,
}

impl Location {
    pub(crate) fn new(origin: &str, line: usize) -> Location {
        Location { origin: origin.into(), line }
    }
}

/// `job.yaml:3`, or `job.yaml` when the line is unknown.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}", self.origin, self.line)
        } else {
            f.write_str(&self.origin)
        }
    }
}

fn hint(suggestion: &Option<String>) -> String {
    suggestion.as_ref().map(|s| format!(" (did you mean '{s}'?)")).unwrap_or_default()
}

fn mapping_prefix(w: &str) -> String {
    if w.is_empty() {
        String::new()
    } else {
        format!("{w}: ")
    }
}

/// Why a job spec was rejected. Every message starts with `origin:line:` and says what is
/// wrong, where (the field, as `pipeline[2].map.expr`), and what was expected.
///
/// Fields are named by their path: top-level keys (`parallelism`), nested keys
/// (`restart-strategy.delay`), and pipeline steps by index and operator
/// (`pipeline[0].source.keys`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobSpecError {
    /// The text is not YAML.
    #[error("{at}:{column}: invalid YAML: {message}")]
    Syntax {
        /// Where.
        at: Location,
        /// 1-based column.
        column: usize,
        /// The YAML parser's message.
        message: String,
    },
    /// The document or the pipeline has the wrong shape (no source, sink not last, ...).
    #[error("{at}: {problem}")]
    Structure {
        /// Where.
        at: Location,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// A field holds a wrong value or is missing.
    #[error("{at}: {field}: {problem}; expected {expected}")]
    Invalid {
        /// Where.
        at: Location,
        /// The field path, e.g. `parallelism` or `pipeline[0].source.count`.
        field: String,
        /// What is wrong.
        problem: String,
        /// What would be accepted.
        expected: String,
    },
    /// A field nobody knows. Unknown fields are errors, not warnings: a job spec is read by
    /// Keel alone, so an unknown field is a typo that would silently change the job.
    #[error("{at}: {}unknown field '{}'{}; expected one of: {}", mapping_prefix(mapping), keel_conf::excerpt(name), hint(suggestion), known.join(", "))]
    UnknownField {
        /// Where.
        at: Location,
        /// The mapping holding the field (`pipeline[1].map`; empty for the top level).
        mapping: String,
        /// The unknown field.
        name: String,
        /// The nearest known field, if one is close.
        suggestion: Option<String>,
        /// The known fields.
        known: Vec<String>,
    },
    /// A pipeline step names an operator that is not registered.
    #[error("{at}: pipeline[{step}]: unknown operator '{}'{}; expected one of: {}", keel_conf::excerpt(name), hint(suggestion), known.join(", "))]
    UnknownOperator {
        /// Where.
        at: Location,
        /// The pipeline index.
        step: usize,
        /// The unknown name.
        name: String,
        /// The nearest known operator, if one is close.
        suggestion: Option<String>,
        /// The operators the registry knows (plus `source` and `sink`).
        known: Vec<String>,
    },
    /// A `map` or `filter` expression does not parse or has the wrong type.
    #[error("{at}: {field}: invalid expression {:?}: column {column}: {message}", keel_conf::excerpt(expr))]
    Expression {
        /// Where.
        at: Location,
        /// The field path, e.g. `pipeline[1].map.expr`.
        field: String,
        /// The expression text.
        expr: String,
        /// 1-based column in the expression.
        column: usize,
        /// What is wrong there.
        message: String,
    },
}

impl JobSpecError {
    /// Where the problem is.
    pub fn location(&self) -> &Location {
        match self {
            JobSpecError::Syntax { at, .. }
            | JobSpecError::Structure { at, .. }
            | JobSpecError::Invalid { at, .. }
            | JobSpecError::UnknownField { at, .. }
            | JobSpecError::UnknownOperator { at, .. }
            | JobSpecError::Expression { at, .. } => at,
        }
    }
}
