//! The one error type of this crate.

use std::fmt;

use crate::Source;

/// Everything that can make a configuration unusable.
///
/// Each message says what was wrong, the key, where it was set (`FILE:LINE`, `-D` or
/// `default`), the value given and what was expected, so it can be shown to a user as is.
/// Problems that do not stop loading (unknown keys) are warnings in
/// [`Loaded::warnings`](crate::Loaded::warnings) instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read configuration file '{path}': {reason}")]
    Unreadable {
        /// The file as named.
        path: String,
        /// The I/O error's text.
        reason: String,
    },

    /// The file is not valid YAML.
    #[error("YAML syntax error at {file}:{line}:{column}: {message}")]
    Syntax {
        /// The file as named.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },

    /// The document is valid YAML but its top level is a list or a plain value.
    #[error(
        "invalid configuration file {file}: the top level must be a mapping of keys to values \
         (key: value), found {found} at line {line}"
    )]
    NotAMapping {
        /// The file as named.
        file: String,
        /// 1-based line of the offending node.
        line: usize,
        /// What was found instead, for example `a list`.
        found: String,
    },

    /// A mapping key that is not plain text (a list, a mapping, or empty).
    #[error("invalid key at {file}:{line}: {problem}; expected a plain text key such as rest.port")]
    InvalidKey {
        /// The file as named.
        file: String,
        /// 1-based line of the key.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },

    /// The same (flattened) key appears twice in one file, in flat or nested form.
    #[error("duplicate key '{key}' in {file}: set at line {first_line} and again at line {second_line}")]
    DuplicateKey {
        /// The flattened key.
        key: String,
        /// The file as named.
        file: String,
        /// Line of the first occurrence.
        first_line: usize,
        /// Line of the second occurrence.
        second_line: usize,
    },

    /// One file sets a Keel key twice under different names: the key and a Flink alias of it
    /// (`state.backend` and `state.backend.type`), or two aliases.
    #[error(
        "'{first}' (line {first_line}) and '{second}' (line {second_line}) in {file} both set '{key}'; \
         keep one of them"
    )]
    AliasConflict {
        /// The Keel key both set.
        key: &'static str,
        /// The file as named.
        file: String,
        /// The first name, as written.
        first: String,
        /// Its line.
        first_line: usize,
        /// The second name, as written.
        second: String,
        /// Its line.
        second_line: usize,
    },

    /// A known key holds a YAML list or mapping where a single value is expected.
    #[error(
        "invalid value for '{key}' ({}): found {found} where a single value belongs; expected {expected}",
        .at.describe()
    )]
    NotAScalar {
        /// The key.
        key: &'static str,
        /// Where it was set.
        at: Source,
        /// `a list` or `a mapping`.
        found: &'static str,
        /// What the key accepts.
        expected: &'static str,
    },

    /// A value that does not parse or is out of range for its key.
    #[error("invalid value '{value}' for '{key}' ({}): {problem}; expected {expected}", .at.describe())]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// Where it was set.
        at: Source,
        /// What is wrong with it.
        problem: String,
        /// What the key accepts.
        expected: &'static str,
    },

    /// A key without a default that the rest of the configuration requires.
    #[error("missing required key '{key}': {when}; expected {expected}")]
    MissingKey {
        /// The missing key.
        key: &'static str,
        /// Why it is required, naming the key, value and location that require it.
        when: String,
        /// What the key accepts.
        expected: &'static str,
    },

    /// Two values that are fine alone but not together (boxed: it is the largest).
    #[error("{0}")]
    InvalidCombination(Box<Combination>),

    /// A `-D` argument that is not `key=value`.
    #[error("malformed -D override '{raw}': expected key=value, for example -D rest.port=8082")]
    MalformedOverride {
        /// The argument as given.
        raw: String,
    },
}

/// The details of [`ConfigError::InvalidCombination`]: `key` = `value` breaks `rule`
/// against `other_key` = `other_value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Combination {
    /// The key whose value breaks the rule.
    pub key: &'static str,
    /// Its effective value.
    pub value: String,
    /// Where it was set.
    pub at: Source,
    /// The rule, for example `must be greater than`.
    pub rule: &'static str,
    /// The key it is compared with.
    pub other_key: &'static str,
    /// That key's effective value.
    pub other_value: String,
    /// Where that was set.
    pub other_at: Source,
}

impl fmt::Display for Combination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid combination: '{}' = '{}' ({}) {} '{}' = '{}' ({})",
            self.key,
            self.value,
            self.at.describe(),
            self.rule,
            self.other_key,
            self.other_value,
            self.other_at.describe()
        )
    }
}
