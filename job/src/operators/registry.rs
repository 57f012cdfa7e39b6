//! The operator registry: pipeline step name → factory building an [`Operator`] from the
//! step's YAML settings.

use std::fmt;
use std::sync::Arc;

use super::{builtin, Operator};
use crate::expr::ExprError;
use crate::spec::{OperatorSpec, YamlNode, YamlValue};

/// The built-in operators, in the order errors list them.
pub const BUILTIN_OPERATORS: [&str; 6] = ["map", "filter", "count", "sum", "reduce", "window"];

/// Builds an operator from its step's settings. Called once when a spec is parsed (to
/// validate the settings; the operator is dropped) and once per subtask at start-up.
pub type OperatorFactory =
    Arc<dyn Fn(&OperatorConfig<'_>) -> Result<Box<dyn Operator>, OperatorConfigError> + Send + Sync>;

/// Which operators a worker can run: the built-ins plus whatever a custom build registers.
///
/// ```
/// use keel_job::{OperatorRegistry, BUILTIN_OPERATORS};
/// let registry = OperatorRegistry::new();
/// assert_eq!(registry.names().collect::<Vec<_>>(), BUILTIN_OPERATORS);
/// ```
#[derive(Clone)]
pub struct OperatorRegistry {
    entries: Vec<(String, OperatorFactory)>,
}

impl fmt::Debug for OperatorRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorRegistry").field("names", &self.names().collect::<Vec<_>>()).finish()
    }
}

impl Default for OperatorRegistry {
    fn default() -> Self {
        OperatorRegistry::new()
    }
}

/// Why [`OperatorRegistry::register`] refused a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The name is taken by a built-in or an earlier registration.
    #[error("operator '{name}' is already registered")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// `source` and `sink` are pipeline keywords.
    #[error("'{name}' is reserved for pipeline endpoints and cannot name an operator")]
    Reserved {
        /// The name.
        name: String,
    },
    /// Not a plain lowercase name.
    #[error("invalid operator name {name:?}: expected lowercase letters, digits, '-' and '_', starting with a letter")]
    InvalidName {
        /// The name.
        name: String,
    },
}

impl OperatorRegistry {
    /// A registry with the built-in operators ([`BUILTIN_OPERATORS`]).
    pub fn new() -> OperatorRegistry {
        let mut r = OperatorRegistry { entries: Vec::new() };
        for name in BUILTIN_OPERATORS {
            r.entries.push((name.to_string(), builtin::factory(name)));
        }
        r
    }

    /// Adds the operator `name`, built by `factory`. Custom worker builds call this before
    /// they parse job specs; the spec then uses the name as a pipeline step
    /// (`- name: { ...settings }`).
    ///
    /// # Notable errors
    /// * [`RegistryError::Duplicate`], [`RegistryError::Reserved`] (`source`, `sink`),
    ///   [`RegistryError::InvalidName`].
    pub fn register<F>(&mut self, name: &str, factory: F) -> Result<&mut Self, RegistryError>
    where
        F: Fn(&OperatorConfig<'_>) -> Result<Box<dyn Operator>, OperatorConfigError> + Send + Sync + 'static,
    {
        if name == "source" || name == "sink" {
            return Err(RegistryError::Reserved { name: name.to_string() });
        }
        let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid {
            return Err(RegistryError::InvalidName { name: name.to_string() });
        }
        if self.contains(name) {
            return Err(RegistryError::Duplicate { name: name.to_string() });
        }
        self.entries.push((name.to_string(), Arc::new(factory)));
        Ok(self)
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    /// The registered names: built-ins first, then custom ones in registration order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// Builds the operator of a pipeline step. `step` is the step's pipeline index
    /// (operator `i` of [`JobSpec::operators`](crate::JobSpec::operators) is step `i + 1`).
    ///
    /// # Notable errors
    /// * [`OperatorConfigError`] from the factory, or an unknown name (reported as
    ///   [`OperatorConfigError::Invalid`] without a field; specs from
    ///   [`parse_job_spec`](crate::parse_job_spec) only hold registered names).
    pub fn create(&self, step: usize, spec: &OperatorSpec) -> Result<Box<dyn Operator>, OperatorConfigError> {
        let Some((_, factory)) = self.entries.iter().find(|(n, _)| *n == spec.name) else {
            return Err(OperatorConfigError::Invalid {
                field: None,
                line: spec.line,
                problem: format!("unknown operator '{}'", keel_conf::excerpt(&spec.name)),
                expected: format!("one of: {}", self.names().collect::<Vec<_>>().join(", ")),
            });
        };
        factory(&OperatorConfig { step, name: &spec.name, node: &spec.config, line: spec.line })
    }
}

/// Why an operator's settings are wrong. [`parse_job_spec`](crate::parse_job_spec) turns it
/// into a [`JobSpecError`](crate::JobSpecError) naming the step and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorConfigError {
    /// A missing or wrong value.
    #[error("{}{problem}; expected {expected}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Invalid {
        /// The field (`None`: the settings as a whole).
        field: Option<String>,
        /// 1-based line (0: unknown).
        line: usize,
        /// What is wrong.
        problem: String,
        /// What would be accepted.
        expected: String,
    },
    /// A field the operator does not know.
    #[error("unknown field '{field}'; expected one of: {}", known.join(", "))]
    UnknownField {
        /// The unknown field.
        field: String,
        /// 1-based line (0: unknown).
        line: usize,
        /// The fields the operator knows.
        known: Vec<String>,
    },
    /// An expression that does not parse or has the wrong type.
    #[error("{field}: invalid expression {expr:?}: {error}")]
    Expression {
        /// The field holding the expression.
        field: String,
        /// 1-based line (0: unknown).
        line: usize,
        /// The expression text.
        expr: String,
        /// Where and why.
        error: ExprError,
    },
}

/// The settings of one pipeline step, as an operator factory sees them, with helpers that
/// produce [`OperatorConfigError`]s carrying the right line.
#[derive(Debug, Clone, Copy)]
pub struct OperatorConfig<'a> {
    step: usize,
    name: &'a str,
    node: &'a YamlNode,
    line: usize,
}

impl<'a> OperatorConfig<'a> {
    /// Settings for tests of custom factories: step `step`, operator `name`, settings `node`.
    pub fn new(step: usize, name: &'a str, node: &'a YamlNode) -> OperatorConfig<'a> {
        OperatorConfig { step, name, node, line: node.line }
    }

    /// The pipeline index of the step.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The operator name.
    pub fn name(&self) -> &str {
        self.name
    }

    /// The raw settings (a mapping, or null for `count:` / `count: {}` alike).
    pub fn node(&self) -> &'a YamlNode {
        self.node
    }

    /// Checks that the settings are a mapping (or empty) whose fields are all in `known`.
    ///
    /// # Notable errors
    /// * [`OperatorConfigError::UnknownField`] for the first unknown field.
    /// * [`OperatorConfigError::Invalid`] when the settings are a list or a single value.
    pub fn check_fields(&self, known: &[&str]) -> Result<(), OperatorConfigError> {
        match &self.node.value {
            YamlValue::Null => Ok(()),
            YamlValue::Map(entries) => {
                for e in entries {
                    if !known.contains(&e.key.as_str()) {
                        return Err(OperatorConfigError::UnknownField {
                            field: e.key.clone(),
                            line: e.line,
                            known: known.iter().map(|s| s.to_string()).collect(),
                        });
                    }
                }
                Ok(())
            }
            _ => Err(OperatorConfigError::Invalid {
                field: None,
                line: self.line,
                problem: format!("the settings are {}", self.node.describe()),
                expected: if known.is_empty() {
                    "no settings ({})".to_string()
                } else {
                    format!("a mapping with the fields: {}", known.join(", "))
                },
            }),
        }
    }

    /// An [`OperatorConfigError::Invalid`] for `field`, at its line.
    pub fn invalid(&self, field: &str, problem: impl Into<String>, expected: impl Into<String>) -> OperatorConfigError {
        OperatorConfigError::Invalid {
            field: Some(field.to_string()),
            line: self.field_line(field),
            problem: problem.into(),
            expected: expected.into(),
        }
    }

    fn field_line(&self, field: &str) -> usize {
        self.node.get(field).map_or(self.line, |e| e.line)
    }

    /// The text of scalar `field`, `None` when absent or null.
    ///
    /// # Notable errors
    /// * [`OperatorConfigError::Invalid`] when the field is a list or mapping.
    pub fn str(&self, field: &str) -> Result<Option<&'a str>, OperatorConfigError> {
        match self.node.get(field).map(|e| &e.value) {
            None => Ok(None),
            Some(YamlNode { value: YamlValue::Null, .. }) => Ok(None),
            Some(YamlNode { value: YamlValue::Scalar(s), .. }) => Ok(Some(s.as_str())),
            Some(other) => Err(self.invalid(field, format!("found {}", other.describe()), "a single value")),
        }
    }

    /// Scalar `field` as an i64.
    ///
    /// # Notable errors
    /// * [`OperatorConfigError::Invalid`] when it is not a whole number.
    pub fn i64(&self, field: &str) -> Result<Option<i64>, OperatorConfigError> {
        let Some(text) = self.str(field)? else { return Ok(None) };
        text.trim().parse::<i64>().map(Some).map_err(|_| {
            self.invalid(field, format!("'{}' is not a whole number", keel_conf::excerpt(text)), "a whole number")
        })
    }

    /// Scalar `field` as a u64 of at least `min`.
    ///
    /// # Notable errors
    /// * [`OperatorConfigError::Invalid`] when it is not a whole number of at least `min`.
    pub fn u64_at_least(&self, field: &str, min: u64) -> Result<Option<u64>, OperatorConfigError> {
        let Some(text) = self.str(field)? else { return Ok(None) };
        crate::spec::parse_count(text, min)
            .map(Some)
            .map_err(|(problem, expected)| self.invalid(field, problem, expected))
    }

    /// Scalar `field`, which must be one of `choices`.
    ///
    /// # Notable errors
    /// * [`OperatorConfigError::Invalid`] naming the choices (and the nearest one).
    pub fn one_of(&self, field: &str, choices: &[&'static str]) -> Result<Option<&'static str>, OperatorConfigError> {
        let Some(text) = self.str(field)? else { return Ok(None) };
        if let Some(c) = choices.iter().find(|c| **c == text) {
            return Ok(Some(c));
        }
        let hint = crate::spec::nearest(text, choices.iter().copied())
            .map(|n| format!(" (did you mean '{n}'?)"))
            .unwrap_or_default();
        Err(self.invalid(
            field,
            format!("unknown value '{}'{hint}", keel_conf::excerpt(text)),
            format!("one of: {}", choices.join(", ")),
        ))
    }

    /// Parses scalar `field` as an expression.
    ///
    /// # Notable errors
    /// * [`OperatorConfigError::Expression`] with the column and message.
    pub fn expression(&self, field: &str) -> Result<Option<crate::Expression>, OperatorConfigError> {
        let Some(text) = self.str(field)? else { return Ok(None) };
        crate::Expression::parse(text).map(Some).map_err(|error| OperatorConfigError::Expression {
            field: field.to_string(),
            line: self.field_line(field),
            expr: text.to_string(),
            error,
        })
    }
}
