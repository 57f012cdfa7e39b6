//! Keel configuration: Flink-style keys, defaults, validation and provenance.
//!
//! This crate owns the list of configuration keys ([`KEYS`]: name, type, default,
//! description), reading them from a `config.yaml` and the command line, checking every
//! value and the combinations between them, and telling where each effective value came
//! from. docs/configuration.md is generated from [`KEYS`] by [`reference_markdown`].
//!
//! ```
//! let loaded = keel_conf::from_str(
//!     "high-availability.type: zookeeper\n\
//!      high-availability.zookeeper.quorum: zk1:2181,zk2:2181\n",
//!     "conf/config.yaml",
//!     &["rest.port=8082".to_owned()],
//! )?;
//! assert_eq!(loaded.config.rest_port, 8082);
//! assert_eq!(loaded.config.ha_root(), "/keel/default");
//! # Ok::<(), keel_conf::ConfigError>(())
//! ```
//!
//! # Precedence
//!
//! Built-in defaults < the configuration file < `-D key=value` overrides (a later `-D` for
//! the same key wins). Only the effective value of a key is checked: a bad value in the file
//! that a `-D` replaces is not an error. [`Loaded::entries`] records the [`Source`] of every
//! key (`default`, `FILE:LINE` or `-D`), which `keel config show` prints via
//! [`Loaded::show`].
//!
//! # File format
//!
//! A Flink-style YAML file. Keys may be flat (`rest.port: 8081`) or nested mappings
//! (`rest:` / `  port: 8081`), mixed in one file; nested mappings flatten into dotted keys.
//! An empty file means all defaults; a top level that is not a mapping is an error; the same
//! flattened key twice is an error naming both lines; a list or mapping where a single value
//! belongs is an error. Unknown keys are **not** errors, since Flink configuration files carry
//! keys for other tools: each one adds a warning (`unknown key 'X' at FILE:LINE (did you mean
//! 'Y'?)`) to [`Loaded::warnings`], as do unknown keys given with `-D`.
//!
//! Values: durations as in [`parse_duration`] (`60000` is milliseconds; `5 s`, `1min`, ...);
//! booleans `true`/`false` in any case; integers as YAML integers or strings of digits, range
//! checked; `high-availability.type` is `none` or `zookeeper` and `state.backend` is `hashmap`
//! or `rocksdb` (Flink's legacy `filesystem` and `jobmanager` mean `hashmap`), in any case;
//! `io.tmp.dirs` is a list separated by `,` or `:`. A key left empty or `null` is unset, which
//! only keys without a default allow.
//!
//! `state.backend` is the one key that other keys extend (`state.backend.incremental`, ...):
//! in a nested file, a mapping under `state.backend` holds those keys, so write
//! `state.backend: rocksdb` flat, or as `backend: rocksdb` beside `backend.incremental: true`
//! under `state:`.
//!
//! # Secrets
//!
//! `s3.secret-key`, `rest.auth.token` and `security.internal.secret` are secrets:
//! [`Loaded::show`], [`Loaded::to_json`], [`Loaded::entries`], [`Config::value_of`], `Debug`
//! of [`Config`] and every [`ConfigError`] print `******` instead of their value. Only the
//! fields of [`Config`] hold them.
//!
//! # Errors
//!
//! One [`ConfigError`] whose message names what was wrong, the key, the file and line (or
//! `-D`), the value given and what was expected, for example:
//!
//! ```text
//! invalid value '80a81' for 'rest.port' (set at conf/config.yaml:3): not an integer; expected an integer from 0 to 65535
//! ```

mod config;
mod duration;
mod error;
mod flink;
mod keys;
mod loader;
mod source;
mod yaml;

pub use config::ZkAcl;
pub use config::{Config, HaType, RestartStrategyType, StateBackendKind};
pub use duration::{parse_duration, ConfDuration};
pub use error::{Combination, ConfigError};
pub use flink::{reads, FlinkKey, FlinkTreatment, Process, FLINK_KEYS};
pub use keys::{key_doc, reference_markdown, KeyDoc, KEYS};
pub use loader::{from_str, load, Entry, Loaded};
pub use source::Source;

/// The longest excerpt of a user-supplied value that messages quote, in characters.
pub const EXCERPT_CHARS: usize = 80;

/// `text` as messages quote it: whole when it is at most [`EXCERPT_CHARS`] characters,
/// otherwise its first [`EXCERPT_CHARS`] characters followed by `…(N bytes)`, so that an
/// error about a huge value stays small. Control characters are escaped.
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == EXCERPT_CHARS {
            out.push_str(&format!("…({} bytes)", text.len()));
            return out;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod excerpt_tests {
    #[test]
    fn long_values_are_cut() {
        assert_eq!(super::excerpt("short"), "short");
        assert_eq!(super::excerpt("a\nb"), "a\\nb");
        let long = "x".repeat(2 << 20);
        let e = super::excerpt(&long);
        assert_eq!(e, format!("{}…(2097152 bytes)", "x".repeat(80)));
    }
}
