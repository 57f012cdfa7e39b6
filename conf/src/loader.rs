//! Layering (defaults < file < `-D`), validation and provenance.

use std::path::Path;

use serde::Serialize;
use serde_json::json;

use crate::config::{Field, MASK};
use crate::flink::{alias_of, ignored_reason, reads, Process};
use crate::keys::{has_subkeys, key_doc, nearest_key};
use crate::yaml::{self, FlatValue};
use crate::{Combination, Config, ConfigError, HaType, Source, StateBackendKind, KEYS};

/// One key's effective value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The key, as in [`KEYS`].
    pub key: &'static str,
    /// The effective value as text, normalised (`zookeeper`, `/default`, `file:///data`);
    /// durations as written. Empty when the key is unset; `******` for a secret that is set.
    pub value: String,
    /// The layer that set it.
    pub source: Source,
}

/// A validated configuration with its warnings and the provenance of every key.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The effective, validated configuration.
    pub config: Config,
    /// Problems that did not stop loading, for example unknown keys; print them.
    pub warnings: Vec<String>,
    /// One entry for every key of [`KEYS`], in that order.
    pub entries: Vec<Entry>,
    /// For warnings about one key, the warning's index in `warnings` and that key (the Keel
    /// key, the Flink key, or the key an unknown key most resembles), for
    /// [`Loaded::warnings_for`]. Warnings without an entry concern every process.
    pub(crate) warning_keys: Vec<(usize, String)>,
}

impl Loaded {
    /// The entry of `key`, if it is a known key.
    #[must_use]
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.key == key)
    }

    /// The warnings `process` should print: those about keys it reads (see
    /// [`reads`](crate::reads)), and those about no key in particular. A client command
    /// does not print a warning about a worker's or a dispatcher's keys, and a worker not
    /// one about a dispatcher-only key.
    #[must_use]
    pub fn warnings_for(&self, process: Process) -> Vec<&str> {
        self.warnings
            .iter()
            .enumerate()
            .filter(|(index, _)| match self.warning_keys.iter().find(|(i, _)| i == index) {
                Some((_, key)) => reads(process, key),
                None => true,
            })
            .map(|(_, warning)| warning.as_str())
            .collect()
    }

    /// Adds a warning about `key` (see [`Loaded::warnings_for`]).
    fn warn_about(&mut self, key: &str, warning: String) {
        self.warning_keys.push((self.warnings.len(), key.to_owned()));
        self.warnings.push(warning);
    }

    /// A table of `key  value  source` for `keel config show`, one line per key, columns
    /// aligned; unset keys show `(none)`. Warnings are not included.
    #[must_use]
    pub fn show(&self) -> String {
        let rows: Vec<[String; 3]> = std::iter::once(["key", "value", "source"].map(String::from))
            .chain(self.entries.iter().map(|entry| {
                let value = if entry.value.is_empty() { "(none)".to_owned() } else { entry.value.clone() };
                [entry.key.to_owned(), value, entry.source.to_string()]
            }))
            .collect();
        let width = |column: usize| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0);
        let (key_width, value_width) = (width(0), width(1));
        let mut out = String::new();
        for [key, value, source] in &rows {
            out.push_str(&format!("{key:key_width$}  {value:value_width$}  {source}\n"));
        }
        out
    }

    /// `{"entries": [{"key", "value", "source"}], "warnings": [...]}`. `value` is `null` for
    /// an unset key; `source` is `{"kind": "default"}`, `{"kind": "override"}` or
    /// `{"kind": "file", "path": ..., "line": ...}`.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let entries: Vec<serde_json::Value> = self
            .entries
            .iter()
            .map(|entry| {
                json!({
                    "key": entry.key,
                    "value": (!entry.value.is_empty()).then_some(&entry.value),
                    "source": entry.source,
                })
            })
            .collect();
        json!({ "entries": entries, "warnings": self.warnings })
    }
}

/// Loads the configuration: defaults, then `file` if given, then the `-D` `overrides`
/// (each `key=value`, later ones win), then validates the result.
///
/// # Errors
/// [`ConfigError::Unreadable`] when the file cannot be read; otherwise as [`from_str`].
pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Loaded, ConfigError> {
    match file {
        None => build(None, overrides),
        Some(path) => {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|err| ConfigError::Unreadable { path: name.clone(), reason: err.to_string() })?;
            from_str(&text, &name, overrides)
        }
    }
}

/// Like [`load`] for YAML `text` already in memory; `origin` names it in errors and
/// provenance (for example `conf/config.yaml`).
///
/// # Errors
/// [`ConfigError::Syntax`], [`ConfigError::NotAMapping`], [`ConfigError::InvalidKey`] and
/// [`ConfigError::DuplicateKey`] for the file's structure; [`ConfigError::MalformedOverride`]
/// for a `-D` that is not `key=value`; [`ConfigError::NotAScalar`] and
/// [`ConfigError::BadValue`] for one key's value; [`ConfigError::MissingKey`] and
/// [`ConfigError::InvalidCombination`] for checks across keys.
pub fn from_str(text: &str, origin: &str, overrides: &[String]) -> Result<Loaded, ConfigError> {
    // A mapping under `state.backend` holds `state.backend.*` keys, so it is flattened.
    let is_leaf = |key: &str| key_doc(key).is_some() && !has_subkeys(key);
    let flat = yaml::flatten(text, origin, &is_leaf)?;
    build(Some((origin, flat)), overrides)
}

/// A value set by the file or a `-D`, not yet parsed.
struct Setting {
    value: FlatValue,
    at: Source,
    /// The key as written: the Keel key or a Flink alias of it.
    written: String,
}

fn build(file: Option<(&str, Vec<yaml::FlatEntry>)>, overrides: &[String]) -> Result<Loaded, ConfigError> {
    let mut settings: Vec<Option<Setting>> = KEYS.iter().map(|_| None).collect();
    // Indices into `settings` in the order the values were last set, so that the first
    // error reported is the first one in the file, then in the -D list.
    let mut order: Vec<usize> = Vec::new();
    let mut warnings = Vec::new();
    let mut warning_keys: Vec<(usize, String)> = Vec::new();
    let mut warn = |key: &str, warning: String| {
        warning_keys.push((warnings.len(), key.to_owned()));
        warnings.push(warning);
    };
    let mut deprecated_warned: Vec<String> = Vec::new();
    let mut note_alias = |written: &str, location: &str, warn: &mut dyn FnMut(&str, String)| {
        if let Some((keel, true)) = alias_of(written) {
            if !deprecated_warned.iter().any(|w| w == written) {
                deprecated_warned.push(written.to_owned());
                warn(
                    written,
                    format!("'{written}' {location} is a deprecated Flink key; use '{keel}' (read as '{keel}')"),
                );
            }
        }
    };
    let record = |index: usize, setting: Setting, order: &mut Vec<usize>, settings: &mut Vec<Option<Setting>>| {
        order.retain(|&i| i != index);
        order.push(index);
        settings[index] = Some(setting);
    };

    if let Some((path, entries)) = file {
        for entry in entries {
            let location = format!("at {path}:{}", entry.line);
            match key_index(&entry.key) {
                Some(index) => {
                    if let Some(Some(earlier)) = settings.get(index) {
                        if let (Source::File { line: first_line, .. }, true) =
                            (&earlier.at, earlier.written != entry.key)
                        {
                            return Err(ConfigError::AliasConflict {
                                key: KEYS[index].key,
                                file: path.to_owned(),
                                first: earlier.written.clone(),
                                first_line: *first_line,
                                second: entry.key.clone(),
                                second_line: entry.line,
                            });
                        }
                    }
                    note_alias(&entry.key, &location, &mut warn);
                    let at = Source::File { path: path.to_owned(), line: entry.line };
                    let setting = Setting { value: entry.value, at, written: entry.key.clone() };
                    record(index, setting, &mut order, &mut settings);
                }
                None => match ignored_reason(&entry.key) {
                    Some(reason) => warn(&entry.key, ignored_key(&entry.key, &location, reason)),
                    None => {
                        let (warning, about) = unknown_key(&entry.key, &location);
                        warn(&about, warning);
                    }
                },
            }
        }
    }
    for raw in overrides {
        let (key, value) = raw
            .split_once('=')
            .map(|(key, value)| (key.trim(), value.trim()))
            .filter(|(key, _)| !key.is_empty())
            .ok_or_else(|| ConfigError::MalformedOverride { raw: raw.clone() })?;
        match key_index(key) {
            Some(index) => {
                note_alias(key, "in -D override", &mut warn);
                let value = FlatValue::Scalar((!value.is_empty()).then(|| value.to_owned()));
                let setting = Setting { value, at: Source::Override, written: key.to_owned() };
                record(index, setting, &mut order, &mut settings);
            }
            None => match ignored_reason(key) {
                Some(reason) => warn(key, ignored_key(key, "in -D override", reason)),
                None => {
                    let (warning, about) = unknown_key(key, "in -D override");
                    warn(&about, warning);
                }
            },
        }
    }

    let mut config = Config::defaults();
    for &index in &order {
        let Some(setting) = &settings[index] else {
            continue;
        };
        let key = KEYS[index].key;
        let Some(field) = Field::of(key) else {
            continue;
        };
        let text = match &setting.value {
            FlatValue::Scalar(text) => text.as_deref(),
            other => {
                return Err(ConfigError::NotAScalar {
                    key,
                    at: setting.at.clone(),
                    found: other.describe(),
                    expected: field.expected(),
                })
            }
        };
        field.set(&mut config, text).map_err(|invalid| ConfigError::BadValue {
            key,
            value: if field.secret() { MASK } else { text.unwrap_or_default() }.to_owned(),
            at: setting.at.clone(),
            problem: invalid.problem,
            expected: invalid.expected,
        })?;
    }

    let entries: Vec<Entry> = KEYS
        .iter()
        .zip(&settings)
        .map(|(doc, setting)| Entry {
            key: doc.key,
            value: config.value_of(doc.key).unwrap_or_default(),
            source: setting.as_ref().map_or(Source::Default, |setting| setting.at.clone()),
        })
        .collect();
    let loaded = Loaded { config, warnings, entries, warning_keys };
    validate(loaded)
}

/// The index in [`KEYS`] of a Keel key or of the Keel key a Flink alias sets.
fn key_index(key: &str) -> Option<usize> {
    let key = alias_of(key).map_or(key, |(keel, _)| keel);
    KEYS.iter().position(|doc| doc.key == key)
}

/// The warning about an unknown key, and the key it is about (the suggestion, if any).
fn unknown_key(key: &str, location: &str) -> (String, String) {
    match nearest_key(key) {
        Some((known, Some(keel))) => (
            format!("unknown key '{key}' {location} (did you mean '{keel}'? Flink's '{known}' is read as '{keel}')"),
            keel.to_owned(),
        ),
        Some((known, None)) => (format!("unknown key '{key}' {location} (did you mean '{known}'?)"), known.to_owned()),
        None => (format!("unknown key '{key}' {location}"), key.to_owned()),
    }
}

fn ignored_key(key: &str, location: &str, reason: &str) -> String {
    format!("Flink key '{key}' {location} is ignored: {reason}")
}

/// The effective value and source of a known key.
fn provenance(entries: &[Entry], key: &str) -> (String, Source) {
    entries
        .iter()
        .find(|entry| entry.key == key)
        .map_or((String::new(), Source::Default), |entry| (entry.value.clone(), entry.source.clone()))
}

/// Checks across keys; adds warnings for settings that have no effect.
fn validate(mut loaded: Loaded) -> Result<Loaded, ConfigError> {
    const TYPE: &str = "high-availability.type";
    const QUORUM: &str = "high-availability.zookeeper.quorum";
    const INTERVAL: &str = "heartbeat.interval";
    const TIMEOUT: &str = "heartbeat.timeout";
    const BACKEND: &str = "state.backend";
    const INCREMENTAL: &str = "state.backend.incremental";

    let config = &loaded.config;
    let entries = &loaded.entries;
    match (config.ha_type, &config.zk_quorum) {
        (HaType::Zookeeper, None) => {
            let (_, type_at) = provenance(entries, TYPE);
            return Err(ConfigError::MissingKey {
                key: QUORUM,
                when: format!("required when '{TYPE}' is 'zookeeper' ({})", type_at.describe()),
                expected: Field::ZkQuorum.expected(),
            });
        }
        (HaType::None, Some(_)) => {
            let (_, quorum_at) = provenance(entries, QUORUM);
            let (_, type_at) = provenance(entries, TYPE);
            let warning = format!(
                "'{QUORUM}' ({}) has no effect: '{TYPE}' is 'none' ({})",
                quorum_at.describe(),
                type_at.describe()
            );
            loaded.warn_about(QUORUM, warning);
        }
        _ => {}
    }

    let config = &loaded.config;
    if config.state_incremental && config.state_backend == StateBackendKind::Hashmap {
        let (_, incremental_at) = provenance(&loaded.entries, INCREMENTAL);
        let (_, backend_at) = provenance(&loaded.entries, BACKEND);
        let warning = format!(
            "'{INCREMENTAL}' ({}) has no effect: '{BACKEND}' is 'hashmap' ({})",
            incremental_at.describe(),
            backend_at.describe()
        );
        loaded.warn_about(INCREMENTAL, warning);
    }

    zookeeper_security(&loaded)?;

    let config = &loaded.config;
    if config.ssl_internal_enabled {
        const ENABLED: &str = "security.ssl.internal.enabled";
        let files = [
            ("security.ssl.internal.key", &config.ssl_internal_key, Field::SslInternalKey),
            ("security.ssl.internal.cert", &config.ssl_internal_cert, Field::SslInternalCert),
            ("security.ssl.internal.truststore", &config.ssl_internal_truststore, Field::SslInternalTruststore),
        ];
        if let Some((key, _, field)) = files.iter().find(|(_, value, _)| value.is_none()) {
            let (_, enabled_at) = provenance(&loaded.entries, ENABLED);
            return Err(ConfigError::MissingKey {
                key,
                when: format!("required when '{ENABLED}' is 'true' ({})", enabled_at.describe()),
                expected: field.expected(),
            });
        }
    }

    let config = &loaded.config;
    if config.heartbeat_timeout.duration <= config.heartbeat_interval.duration {
        let (value, at) = provenance(&loaded.entries, TIMEOUT);
        let (other_value, other_at) = provenance(&loaded.entries, INTERVAL);
        return Err(ConfigError::InvalidCombination(Box::new(Combination {
            key: TIMEOUT,
            value,
            at,
            rule: "must be greater than",
            other_key: INTERVAL,
            other_value,
            other_at,
        })));
    }
    Ok(loaded)
}

/// Checks of the ZooKeeper security keys: SASL user and password come together, `creator`
/// ACLs need an authenticated session, TLS needs a truststore.
fn zookeeper_security(loaded: &Loaded) -> Result<(), ConfigError> {
    const USERNAME: &str = "high-availability.zookeeper.client.sasl.username";
    const PASSWORD: &str = "high-availability.zookeeper.client.sasl.password";
    const ACL: &str = "high-availability.zookeeper.client.acl";
    const DISABLE: &str = "zookeeper.sasl.disable";
    const SECURE: &str = "zookeeper.client.secure";
    const TRUSTSTORE: &str = "zookeeper.ssl.trustStore.location";
    let config = &loaded.config;
    let entries = &loaded.entries;
    let pair = [
        (
            USERNAME,
            config.zk_sasl_username.is_some(),
            PASSWORD,
            config.zk_sasl_password.is_some(),
            Field::ZkSaslPassword,
        ),
        (
            PASSWORD,
            config.zk_sasl_password.is_some(),
            USERNAME,
            config.zk_sasl_username.is_some(),
            Field::ZkSaslUsername,
        ),
    ];
    for (set_key, set, missing_key, present, field) in pair {
        if set && !present {
            let (_, at) = provenance(entries, set_key);
            return Err(ConfigError::MissingKey {
                key: missing_key,
                when: format!("required when '{set_key}' is set ({})", at.describe()),
                expected: field.expected(),
            });
        }
    }
    if config.zk_acl == crate::ZkAcl::Creator {
        let (_, acl_at) = provenance(entries, ACL);
        if config.zk_sasl_disable {
            let (value, at) = provenance(entries, DISABLE);
            return Err(ConfigError::InvalidCombination(Box::new(Combination {
                key: ACL,
                value: "creator".to_owned(),
                at: acl_at,
                rule: "needs an authenticated ZooKeeper session, so cannot be combined with",
                other_key: DISABLE,
                other_value: value,
                other_at: at,
            })));
        }
        if config.zk_sasl_username.is_none() && !config.zk_kerberos() {
            return Err(ConfigError::MissingKey {
                key: USERNAME,
                when: format!(
                    "required when '{ACL}' is 'creator' ({}): only an authenticated session can own znodes",
                    acl_at.describe()
                ),
                expected: Field::ZkSaslUsername.expected(),
            });
        }
    }
    const KEYTAB: &str = "security.kerberos.login.keytab";
    const PRINCIPAL: &str = "security.kerberos.login.principal";
    const CONTEXTS: &str = "security.kerberos.login.contexts";
    let kerberos = [
        (
            KEYTAB,
            config.kerberos_keytab.is_some(),
            PRINCIPAL,
            config.kerberos_principal.is_some(),
            Field::KerberosPrincipal,
        ),
        (
            PRINCIPAL,
            config.kerberos_principal.is_some(),
            KEYTAB,
            config.kerberos_keytab.is_some(),
            Field::KerberosKeytab,
        ),
    ];
    for (set_key, set, missing_key, present, field) in kerberos {
        if set && !present {
            let (_, at) = provenance(entries, set_key);
            return Err(ConfigError::MissingKey {
                key: missing_key,
                when: format!("required when '{set_key}' is set ({})", at.describe()),
                expected: field.expected(),
            });
        }
    }
    let zk_context = config.kerberos_contexts.contains(&config.zk_sasl_login_context);
    if zk_context && !config.zk_sasl_disable && config.kerberos_keytab.is_none() {
        let (value, at) = provenance(entries, CONTEXTS);
        return Err(ConfigError::MissingKey {
            key: KEYTAB,
            when: format!(
                "required when '{CONTEXTS}' ('{value}', {}) lists the ZooKeeper login context",
                at.describe()
            ),
            expected: Field::KerberosKeytab.expected(),
        });
    }
    if config.zk_kerberos() && config.zk_sasl_username.is_some() {
        let (value, at) = provenance(entries, CONTEXTS);
        let (user, user_at) = provenance(entries, USERNAME);
        return Err(ConfigError::InvalidCombination(Box::new(Combination {
            key: USERNAME,
            value: user,
            at: user_at,
            rule: "(SASL DIGEST-MD5) cannot be combined with the Kerberos login for ZooKeeper,",
            other_key: CONTEXTS,
            other_value: value,
            other_at: at,
        })));
    }
    if config.zk_client_secure && config.zk_ssl_truststore.is_none() {
        let (_, at) = provenance(entries, SECURE);
        return Err(ConfigError::MissingKey {
            key: TRUSTSTORE,
            when: format!("required when '{SECURE}' is 'true' ({})", at.describe()),
            expected: Field::ZkSslTruststore.expected(),
        });
    }
    Ok(())
}
