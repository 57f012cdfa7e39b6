//! Where an effective value came from.

use std::fmt;

use serde::Serialize;

/// The layer that supplied a key's effective value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// The built-in default from [`KEYS`](crate::KEYS).
    Default,
    /// A line of a configuration file.
    File {
        /// The file as it was named to [`load`](crate::load), or the origin given to
        /// [`from_str`](crate::from_str).
        path: String,
        /// 1-based line of the key.
        line: usize,
    },
    /// A `-D key=value` override on the command line.
    Override,
}

impl Source {
    /// The phrase used inside error messages: `set at conf/config.yaml:3`, `set by -D`,
    /// `default`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Source::Default => "default".to_owned(),
            Source::File { path, line } => format!("set at {path}:{line}"),
            Source::Override => "set by -D".to_owned(),
        }
    }
}

/// `default`, `conf/config.yaml:12` or `-D`, as in the `source` column of
/// [`Loaded::show`](crate::Loaded::show).
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "{path}:{line}"),
            Source::Override => f.write_str("-D"),
        }
    }
}
