//! The job spec: YAML text → [`JobSpec`], with errors that say what, where and what was
//! expected.
//!
//! ```yaml
//! name: counts
//! parallelism: 2                       # 1..=1024, default 1
//! checkpoint-interval: 1 s             # Flink durations (500 ms, 1 s, 1 min, plain ms); default 10 s
//! restart-strategy: { type: fixed-delay, attempts: 3, delay: 1 s }   # or { type: none } / none
//! pipeline:
//!   - source: { type: sequence, count: 100000, keys: 16, rate: 2000 }
//!   - count: {}
//!   - sink: { type: file, path: file:///abs/out }
//! ```

mod error;
mod yaml;

use std::path::PathBuf;
use std::time::Duration;

pub use self::error::{JobSpecError, Location};
pub use self::yaml::{YamlEntry, YamlNode, YamlValue, MAX_YAML_DEPTH, MAX_YAML_EXPANDED_BYTES, MAX_YAML_NODES};
use crate::operators::{OperatorConfig, OperatorConfigError, OperatorRegistry};
use keel_conf::excerpt;

/// The largest job spec accepted, in bytes (1 MiB; the REST API refuses larger bodies too).
pub const MAX_SPEC_BYTES: usize = 1 << 20;
/// The largest parallelism a job may ask for.
pub const MAX_PARALLELISM: u32 = 1024;
/// The checkpoint interval when the spec sets none.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
/// The smallest checkpoint interval accepted.
pub const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(10);

const TOP_LEVEL_FIELDS: [&str; 5] = ["name", "parallelism", "checkpoint-interval", "restart-strategy", "pipeline"];
const PARALLELISM_EXPECTED: &str = "a whole number from 1 to 1024";
const SINK_URI_EXPECTED: &str =
    "a storage URI (file:///absolute/path, s3://bucket/prefix, hdfs://namenode/path, swift://container/prefix) \
     or an absolute path, without . or .. segments";
const SOURCE_PATH_EXPECTED: &str =
    "the absolute path of the input file without . or .. segments (/data/input.txt or file:///data/input.txt)";

/// A parsed, validated job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// The job's name (not unique; the dispatcher assigns job ids).
    pub name: String,
    /// How many parallel subtasks run the pipeline.
    pub parallelism: u32,
    /// How often the checkpoint coordinator triggers a checkpoint.
    pub checkpoint_interval: Duration,
    /// What happens when a subtask fails.
    pub restart_strategy: RestartStrategy,
    /// The first step.
    pub source: SourceSpec,
    /// The steps between source and sink; operator `i` is pipeline step `i + 1`.
    pub operators: Vec<OperatorSpec>,
    /// The last step.
    pub sink: SinkSpec,
    /// Where the spec came from (a file name, "request"), for error messages.
    pub origin: String,
}

/// What the job master does when a subtask fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartStrategy {
    /// Fail the job (`{ type: none }`).
    None,
    /// Restart from the latest completed checkpoint up to `attempts` times, waiting `delay`
    /// before each restart (`{ type: fixed-delay, attempts: 3, delay: 1 s }`; the defaults).
    FixedDelay {
        /// Restarts allowed (default 3).
        attempts: u32,
        /// Wait before each restart (default 1 s).
        delay: Duration,
    },
}

/// Restarts of `fixed-delay` when the spec sets no `attempts`.
pub const DEFAULT_RESTART_ATTEMPTS: u32 = 3;
/// Delay of `fixed-delay` when the spec sets no `delay`.
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(1);

/// `fixed-delay`, 3 attempts, 1 s.
impl Default for RestartStrategy {
    fn default() -> Self {
        RestartStrategy::FixedDelay { attempts: DEFAULT_RESTART_ATTEMPTS, delay: DEFAULT_RESTART_DELAY }
    }
}

/// The source step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `{ type: sequence, count: N, keys: K, rate: R }`: records `n = 0..count` (forever
    /// without `count`), key `k{n % keys}`, value and seq `n`; `rate` records/s per subtask
    /// (unthrottled without it); `keys` default 1.
    Sequence {
        /// How many records in total (all subtasks); `None`: unbounded.
        count: Option<u64>,
        /// How many distinct keys (at least 1).
        keys: u64,
        /// Records per second per subtask; `None`: as fast as possible.
        rate: Option<u64>,
    },
    /// `{ type: file, path: /abs/input.txt, key-field: 0, delimiter: "," }`: the lines of a
    /// local file; the key is field `key-field` (0-based) of the line split by `delimiter`
    /// (default `,`), or the whole line without `key-field`; value 1; seq the line number.
    /// Blank lines are skipped.
    File {
        /// Absolute path of the input file (every worker must see it at this path).
        path: PathBuf,
        /// 0-based index of the key field; `None`: the whole line is the key.
        key_field: Option<usize>,
        /// Field delimiter (non-empty).
        delimiter: String,
    },
}

impl SourceSpec {
    /// Whether the source ends (a `sequence` with `count`, or a `file`).
    pub fn is_bounded(&self) -> bool {
        match self {
            SourceSpec::Sequence { count, .. } => count.is_some(),
            SourceSpec::File { .. } => true,
        }
    }

    /// The rate limit in records per second per subtask, if any.
    pub fn rate(&self) -> Option<u64> {
        match self {
            SourceSpec::Sequence { rate, .. } => *rate,
            SourceSpec::File { .. } => None,
        }
    }
}

/// An operator step: the registry name and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSpec {
    /// The registered operator name (`map`, `count`, a custom name, ...).
    pub name: String,
    /// The settings (a mapping; null for `count:`).
    pub config: YamlNode,
    /// 1-based line of the step (0 when built in code).
    pub line: usize,
}

/// The sink step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// `{ type: file, path: URI }`: the exactly-once file sink (two-phase commit).
    File {
        /// The output directory as a storage URI (`file:///abs/out`, `s3://bucket/prefix`).
        uri: String,
    },
    /// `{ type: print }`: lines to stdout, prefixed by `<subtask>> `. At-least-once.
    Print,
    /// `{ type: discard }`: drop everything.
    Discard,
}

/// Parses a job spec with the built-in operators only. `origin` names the text in errors
/// (a file name, `request`).
///
/// # Notable errors
/// Every [`JobSpecError`] variant; see [`parse_job_spec_with`].
pub fn parse_job_spec(yaml: &str, origin: &str) -> Result<JobSpec, JobSpecError> {
    parse_job_spec_with(yaml, origin, &OperatorRegistry::new())
}

/// Parses a job spec whose operators come from `registry` (built-ins plus custom ones).
/// Every operator's factory runs once to check its settings.
///
/// # Notable errors
/// * [`JobSpecError::Syntax`]: not YAML (line and column).
/// * [`JobSpecError::Structure`]: not a mapping, empty or missing pipeline, no source
///   first, no sink last, a second source or sink, a step that is not `- name: {...}`.
/// * [`JobSpecError::Invalid`]: a missing or bad value (parallelism, duration, restart
///   strategy, source or sink settings, operator settings).
/// * [`JobSpecError::UnknownField`]: a field no one reads (with the nearest known one).
/// * [`JobSpecError::UnknownOperator`]: with the known operators and the nearest one.
/// * [`JobSpecError::Expression`]: a `map`/`filter` expression, with the column.
/// * [`JobSpecError::Structure`] also when the text is longer than [`MAX_SPEC_BYTES`], and
///   [`JobSpecError::Syntax`] when the YAML nests deeper than [`MAX_YAML_DEPTH`] or expands
///   (aliases included) beyond [`MAX_YAML_NODES`] nodes or [`MAX_YAML_EXPANDED_BYTES`] bytes.
pub fn parse_job_spec_with(yaml: &str, origin: &str, registry: &OperatorRegistry) -> Result<JobSpec, JobSpecError> {
    parse_job_spec_with_defaults(yaml, origin, registry, &JobDefaults::default())
}

/// Cluster-wide defaults for what a spec leaves out: `parallelism.default`,
/// `execution.checkpointing.interval` and `restart-strategy.*` of the configuration. A
/// setting in the spec always wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobDefaults {
    /// The parallelism of a spec without `parallelism`.
    pub parallelism: u32,
    /// The checkpoint interval of a spec without `checkpoint-interval`.
    pub checkpoint_interval: Duration,
    /// The restart strategy of a spec without `restart-strategy`.
    pub restart_strategy: RestartStrategy,
}

/// Parallelism 1, [`DEFAULT_CHECKPOINT_INTERVAL`], [`RestartStrategy::default`].
impl Default for JobDefaults {
    fn default() -> Self {
        JobDefaults {
            parallelism: 1,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            restart_strategy: RestartStrategy::default(),
        }
    }
}

impl JobDefaults {
    /// The defaults a configuration sets (`parallelism.default`,
    /// `execution.checkpointing.interval`, `restart-strategy.type`,
    /// `restart-strategy.fixed-delay.attempts`, `restart-strategy.fixed-delay.delay`).
    #[must_use]
    pub fn from_config(config: &keel_conf::Config) -> Self {
        JobDefaults {
            parallelism: config.parallelism_default.clamp(1, MAX_PARALLELISM),
            checkpoint_interval: config.checkpoint_interval.duration.max(MIN_CHECKPOINT_INTERVAL),
            restart_strategy: match config.restart_strategy {
                keel_conf::RestartStrategyType::None => RestartStrategy::None,
                keel_conf::RestartStrategyType::FixedDelay => RestartStrategy::FixedDelay {
                    attempts: config.restart_attempts,
                    delay: config.restart_delay.duration,
                },
            },
        }
    }
}

/// `yaml` with what it leaves out (`parallelism`, `checkpoint-interval`, `restart-strategy`)
/// written in from `defaults`, as lines before its first top-level key. The dispatcher stores
/// this text, so every process that reads the job later (workers, the job master after a
/// leader change) runs it the same way, whatever its own configuration says. `None` when
/// nothing is missing, or when the text does not parse or its top level is not a block
/// mapping (`{ ... }`), where no line can be added.
#[must_use]
pub fn pin_job_defaults(yaml: &str, defaults: &JobDefaults) -> Option<String> {
    let root = yaml::parse(yaml).ok()??;
    let YamlValue::Map(entries) = &root.value else { return None };
    let first = entries.first()?;
    let lines: Vec<&str> = yaml.split_inclusive('\n').collect();
    let first_line = *lines.get(first.line.checked_sub(1)?)?;
    if first_line.starts_with([' ', '\t', '{', '-']) {
        return None;
    }
    let has = |key: &str| entries.iter().any(|e| e.key == key);
    let mut pinned = String::new();
    if !has("parallelism") {
        pinned.push_str(&format!("parallelism: {}\n", defaults.parallelism));
    }
    if !has("checkpoint-interval") {
        pinned.push_str(&format!("checkpoint-interval: {} ms\n", defaults.checkpoint_interval.as_millis()));
    }
    if !has("restart-strategy") {
        match defaults.restart_strategy {
            RestartStrategy::None => pinned.push_str("restart-strategy: none\n"),
            RestartStrategy::FixedDelay { attempts, delay } => pinned.push_str(&format!(
                "restart-strategy: {{ type: fixed-delay, attempts: {attempts}, delay: {} ms }}\n",
                delay.as_millis()
            )),
        }
    }
    if pinned.is_empty() {
        return None;
    }
    let at = first.line - 1;
    Some(format!("{}{pinned}{}", lines[..at].concat(), lines[at..].concat()))
}

/// [`parse_job_spec_with`], taking what the spec leaves out from `defaults` (the cluster's
/// configuration) instead of the built-in defaults.
///
/// # Notable errors
/// As [`parse_job_spec_with`].
pub fn parse_job_spec_with_defaults(
    yaml: &str,
    origin: &str,
    registry: &OperatorRegistry,
    defaults: &JobDefaults,
) -> Result<JobSpec, JobSpecError> {
    if yaml.len() > MAX_SPEC_BYTES {
        return Err(JobSpecError::Structure {
            at: Location::new(origin, 0),
            problem: format!("the job spec is {} bytes long; the limit is {MAX_SPEC_BYTES} bytes (1 MiB)", yaml.len()),
        });
    }
    let root = yaml::parse(yaml).map_err(|e| JobSpecError::Syntax {
        at: Location::new(origin, e.line),
        column: e.column,
        message: e.message,
    })?;
    let Some(root) = root else {
        return Err(JobSpecError::Structure {
            at: Location::new(origin, 1),
            problem: "the job spec is empty; expected a mapping with name, parallelism, checkpoint-interval, \
                      restart-strategy and pipeline"
                .to_string(),
        });
    };
    Parser { origin, registry, defaults }.job(&root)
}

struct Parser<'a> {
    origin: &'a str,
    registry: &'a OperatorRegistry,
    defaults: &'a JobDefaults,
}

impl Parser<'_> {
    fn at(&self, line: usize) -> Location {
        Location::new(self.origin, line)
    }

    fn invalid(
        &self,
        line: usize,
        field: &str,
        problem: impl Into<String>,
        expected: impl Into<String>,
    ) -> JobSpecError {
        JobSpecError::Invalid {
            at: self.at(line),
            field: field.to_string(),
            problem: problem.into(),
            expected: expected.into(),
        }
    }

    fn structure(&self, line: usize, problem: impl Into<String>) -> JobSpecError {
        JobSpecError::Structure { at: self.at(line), problem: problem.into() }
    }

    /// Maps an operator-settings error of step `prefix` (`pipeline[2].map`) into a spec error.
    fn config_error(&self, prefix: &str, step_line: usize, e: OperatorConfigError) -> JobSpecError {
        let line = |l: usize| if l == 0 { step_line } else { l };
        match e {
            OperatorConfigError::Invalid { field, line: l, problem, expected } => JobSpecError::Invalid {
                at: self.at(line(l)),
                field: field.map_or(prefix.to_string(), |f| format!("{prefix}.{f}")),
                problem,
                expected,
            },
            OperatorConfigError::UnknownField { field, line: l, known } => JobSpecError::UnknownField {
                at: self.at(line(l)),
                mapping: prefix.to_string(),
                suggestion: nearest(&field, known.iter().map(String::as_str)).map(str::to_string),
                name: field,
                known,
            },
            OperatorConfigError::Expression { field, line: l, expr, error } => JobSpecError::Expression {
                at: self.at(line(l)),
                field: format!("{prefix}.{field}"),
                expr,
                column: error.column,
                message: error.message,
            },
        }
    }

    fn job(&self, root: &YamlNode) -> Result<JobSpec, JobSpecError> {
        let YamlValue::Map(entries) = &root.value else {
            return Err(self.structure(
                root.line,
                format!("the top level must be a mapping (name: ..., pipeline: ...), found {}", root.describe()),
            ));
        };
        for e in entries {
            if !TOP_LEVEL_FIELDS.contains(&e.key.as_str()) {
                return Err(JobSpecError::UnknownField {
                    at: self.at(e.line),
                    mapping: String::new(),
                    name: e.key.clone(),
                    suggestion: nearest(&e.key, TOP_LEVEL_FIELDS).map(str::to_string),
                    known: TOP_LEVEL_FIELDS.iter().map(|s| s.to_string()).collect(),
                });
            }
        }
        let get = |k: &str| entries.iter().find(|e| e.key == k);

        let name = match get("name") {
            None => return Err(self.invalid(root.line, "name", "missing", "the job's name (a non-empty string)")),
            Some(e) => match e.value.as_scalar().map(str::trim) {
                Some(s) if !s.is_empty() => s.to_string(),
                _ => {
                    return Err(self.invalid(
                        e.line,
                        "name",
                        format!("found {}", e.value.describe()),
                        "the job's name (a non-empty string)",
                    ))
                }
            },
        };

        let parallelism = match get("parallelism") {
            None => self.defaults.parallelism,
            Some(e) => {
                let text = self.scalar(e, "parallelism", PARALLELISM_EXPECTED)?;
                parse_parallelism(text)
                    .map_err(|problem| self.invalid(e.line, "parallelism", problem, PARALLELISM_EXPECTED))?
            }
        };

        let checkpoint_interval = match get("checkpoint-interval") {
            None => self.defaults.checkpoint_interval,
            Some(e) => {
                let d = self.duration(e, "checkpoint-interval")?;
                if d < MIN_CHECKPOINT_INTERVAL {
                    return Err(self.invalid(
                        e.line,
                        "checkpoint-interval",
                        format!("{} is too short", excerpt(self.scalar(e, "checkpoint-interval", "")?.trim())),
                        "at least 10 ms",
                    ));
                }
                d
            }
        };

        let restart_strategy = match get("restart-strategy") {
            None => self.defaults.restart_strategy,
            Some(e) => self.restart_strategy(e)?,
        };

        let Some(pipeline) = get("pipeline") else {
            return Err(
                self.structure(root.line, "pipeline: missing; expected a list of steps: a source, operators, a sink")
            );
        };
        let steps = match &pipeline.value.value {
            YamlValue::Seq(items) if !items.is_empty() => items,
            YamlValue::Seq(_) | YamlValue::Null => {
                return Err(self.structure(
                    pipeline.line,
                    "pipeline: empty; expected a list of steps: a source, operators, a sink",
                ))
            }
            _ => {
                return Err(self.structure(
                    pipeline.line,
                    format!(
                    "pipeline: found {}; expected a list of steps (- source: {{...}}, - count: {{}}, - sink: {{...}})",
                    pipeline.value.describe()
                ),
                ))
            }
        };

        let last = steps.len() - 1;
        let mut source = None;
        let mut sink = None;
        let mut operators = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let (op, settings, line) = self.step_parts(i, step)?;
            match op {
                "source" if i == 0 => source = Some(self.source(i, settings, line)?),
                "source" => {
                    return Err(self.structure(
                        line,
                        format!(
                            "pipeline[{i}]: a source can only be the first step (a pipeline has exactly one source)"
                        ),
                    ))
                }
                _ if i == 0 => {
                    return Err(self.structure(
                        line,
                        format!(
                            "pipeline[0]: the first step must be a source, found '{op}'; expected \
                             - source: {{ type: sequence | file, ... }}"
                        ),
                    ))
                }
                "sink" if i == last => sink = Some(self.sink(i, settings, line)?),
                "sink" => {
                    return Err(self.structure(
                        line,
                        format!(
                            "pipeline[{i}]: the sink must be the last step, found {} more step(s) after it",
                            last - i
                        ),
                    ))
                }
                _ if i == last => {
                    return Err(self.structure(
                        line,
                        format!(
                            "pipeline[{i}]: the last step must be a sink, found '{op}'; expected \
                             - sink: {{ type: file | print | discard, ... }}"
                        ),
                    ))
                }
                name => {
                    if !self.registry.contains(name) {
                        let mut known: Vec<String> = vec!["source".to_string()];
                        known.extend(self.registry.names().map(str::to_string));
                        known.push("sink".to_string());
                        return Err(JobSpecError::UnknownOperator {
                            at: self.at(line),
                            step: i,
                            name: name.to_string(),
                            suggestion: nearest(name, known.iter().map(String::as_str)).map(str::to_string),
                            known,
                        });
                    }
                    let spec = OperatorSpec { name: name.to_string(), config: settings.clone(), line };
                    self.registry
                        .create(i, &spec)
                        .map_err(|e| self.config_error(&format!("pipeline[{i}].{name}"), line, e))?;
                    operators.push(spec);
                }
            }
        }
        let (Some(source), Some(sink)) = (source, sink) else {
            unreachable!("the loop returns unless the first step is a source and the last a sink");
        };
        Ok(JobSpec {
            name,
            parallelism,
            checkpoint_interval,
            restart_strategy,
            source,
            operators,
            sink,
            origin: self.origin.to_string(),
        })
    }

    /// `- name: settings` → (name, settings, line).
    fn step_parts<'n>(&self, i: usize, step: &'n YamlNode) -> Result<(&'n str, &'n YamlNode, usize), JobSpecError> {
        let shape = "expected - <operator>: { settings }, e.g. - count: {}";
        match &step.value {
            YamlValue::Map(entries) if entries.len() == 1 => {
                Ok((entries[0].key.as_str(), &entries[0].value, entries[0].line))
            }
            YamlValue::Map(entries) if entries.is_empty() => {
                Err(self.structure(step.line, format!("pipeline[{i}]: an empty step; {shape}")))
            }
            YamlValue::Map(entries) => Err(self.structure(
                step.line,
                format!(
                    "pipeline[{i}]: a step names exactly one operator, found {}: {}; {shape} (settings are \
                     indented under the operator)",
                    entries.len(),
                    entries.iter().map(|e| e.key.as_str()).collect::<Vec<_>>().join(", ")
                ),
            )),
            YamlValue::Scalar(s) => Err(self.structure(
                step.line,
                format!("pipeline[{i}]: found the value '{s}'; {shape} (write '- {s}: {{}}' for no settings)"),
            )),
            _ => Err(self.structure(step.line, format!("pipeline[{i}]: found {}; {shape}", step.describe()))),
        }
    }

    fn source(&self, i: usize, settings: &YamlNode, line: usize) -> Result<SourceSpec, JobSpecError> {
        let prefix = format!("pipeline[{i}].source");
        let c = OperatorConfig::new(i, "source", settings);
        let err = |e| self.config_error(&prefix, line, e);
        match c.one_of("type", &["sequence", "file"]).map_err(err)? {
            None => Err(self.invalid(line, &format!("{prefix}.type"), "missing", "one of: sequence, file")),
            Some("sequence") => {
                c.check_fields(&["type", "count", "keys", "rate"]).map_err(err)?;
                Ok(SourceSpec::Sequence {
                    count: c.u64_at_least("count", 0).map_err(err)?,
                    keys: c.u64_at_least("keys", 1).map_err(err)?.unwrap_or(1),
                    rate: c.u64_at_least("rate", 1).map_err(err)?,
                })
            }
            Some(_) => {
                c.check_fields(&["type", "path", "key-field", "delimiter"]).map_err(err)?;
                let path = match c.str("path").map_err(err)? {
                    None => return Err(err(c.invalid("path", "missing", "the absolute path of the input file"))),
                    Some(p) => {
                        let local = p.strip_prefix("file://").unwrap_or(p);
                        check_source_path(local)
                            .map_err(|problem| err(c.invalid("path", problem, SOURCE_PATH_EXPECTED)))?;
                        PathBuf::from(local)
                    }
                };
                let key_field =
                    c.u64_at_least("key-field", 0).map_err(err)?.map(|k| usize::try_from(k).unwrap_or(usize::MAX));
                let delimiter = match c.str("delimiter").map_err(err)? {
                    None => ",".to_string(),
                    Some("") => return Err(err(c.invalid("delimiter", "empty", "a non-empty string, e.g. \",\""))),
                    Some(d) => d.to_string(),
                };
                Ok(SourceSpec::File { path, key_field, delimiter })
            }
        }
    }

    fn sink(&self, i: usize, settings: &YamlNode, line: usize) -> Result<SinkSpec, JobSpecError> {
        let prefix = format!("pipeline[{i}].sink");
        let c = OperatorConfig::new(i, "sink", settings);
        let err = |e| self.config_error(&prefix, line, e);
        match c.one_of("type", &["file", "print", "discard"]).map_err(err)? {
            None => Err(self.invalid(line, &format!("{prefix}.type"), "missing", "one of: file, print, discard")),
            Some("file") => {
                c.check_fields(&["type", "path"]).map_err(err)?;
                match c.str("path").map_err(err)? {
                    None => Err(err(c.invalid("path", "missing", SINK_URI_EXPECTED))),
                    Some(p) => Ok(SinkSpec::File {
                        uri: sink_uri(p).map_err(|problem| err(c.invalid("path", problem, SINK_URI_EXPECTED)))?,
                    }),
                }
            }
            Some(kind) => {
                c.check_fields(&["type"]).map_err(err)?;
                Ok(if kind == "print" { SinkSpec::Print } else { SinkSpec::Discard })
            }
        }
    }

    fn restart_strategy(&self, e: &YamlEntry) -> Result<RestartStrategy, JobSpecError> {
        let kinds = ["fixed-delay", "none"];
        let expected = "one of: fixed-delay, none";
        if let Some(s) = e.value.as_scalar() {
            return match s.trim() {
                "none" => Ok(RestartStrategy::None),
                "fixed-delay" => Ok(RestartStrategy::default()),
                other => Err(self.invalid(
                    e.line,
                    "restart-strategy",
                    format!("unknown restart strategy '{}'{}", excerpt(other), suggestion_hint(other, kinds)),
                    expected,
                )),
            };
        }
        let c = OperatorConfig::new(0, "restart-strategy", &e.value);
        let err = |x| self.config_error("restart-strategy", e.line, x);
        let kind = match c.str("type").map_err(err)? {
            None => return Err(self.invalid(e.line, "restart-strategy.type", "missing", expected)),
            Some(t) => t.trim(),
        };
        match kind {
            "none" => {
                c.check_fields(&["type"]).map_err(err)?;
                Ok(RestartStrategy::None)
            }
            "fixed-delay" => {
                c.check_fields(&["type", "attempts", "delay"]).map_err(err)?;
                let attempts = match c.u64_at_least("attempts", 0).map_err(err)? {
                    None => DEFAULT_RESTART_ATTEMPTS,
                    Some(a) => u32::try_from(a).map_err(|_| {
                        err(c.invalid("attempts", format!("{a} is too large"), "a whole number up to 4294967295"))
                    })?,
                };
                let delay = match e.value.get("delay") {
                    None => DEFAULT_RESTART_DELAY,
                    Some(d) => self.duration(d, "restart-strategy.delay")?,
                };
                Ok(RestartStrategy::FixedDelay { attempts, delay })
            }
            other => {
                let line = e.value.get("type").map_or(e.line, |t| t.line);
                Err(self.invalid(
                    line,
                    "restart-strategy.type",
                    format!("unknown restart strategy '{}'{}", excerpt(other), suggestion_hint(other, kinds)),
                    expected,
                ))
            }
        }
    }

    fn scalar<'n>(&self, e: &'n YamlEntry, field: &str, expected: &str) -> Result<&'n str, JobSpecError> {
        e.value
            .as_scalar()
            .ok_or_else(|| self.invalid(e.line, field, format!("found {}", e.value.describe()), expected))
    }

    fn duration(&self, e: &YamlEntry, field: &str) -> Result<Duration, JobSpecError> {
        let text = self.scalar(e, field, "a duration such as 500 ms, 1 s or 1 min")?;
        keel_conf::parse_duration(text).map_err(|message| {
            let (problem, expected) = message.split_once("; expected ").unwrap_or((message.as_str(), "a duration"));
            self.invalid(e.line, field, format!("invalid duration '{}': {problem}", excerpt(text.trim())), expected)
        })
    }
}

fn suggestion_hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    nearest(word, candidates).map(|s| format!(" (did you mean '{s}'?)")).unwrap_or_default()
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub(crate) fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wanted = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::osa_distance(&wanted, &c.to_lowercase()), c))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, c)| *d <= (c.len() / 4).max(1))
        .map(|(_, c)| c)
}

/// Parses a whole number of at least `min`; on error, (problem, expected).
pub(crate) fn parse_count(text: &str, min: u64) -> Result<u64, (String, String)> {
    let expected = || format!("a whole number of at least {min}");
    let trimmed = text.trim();
    let quoted = excerpt(trimmed);
    let t = quoted.as_str();
    if t.strip_prefix('-').is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())) {
        return Err((format!("{t} is negative"), expected()));
    }
    if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return Err((format!("'{t}' is not a whole number"), expected()));
    }
    if trimmed.len() > t.len() {
        return Err((format!("'{t}' is not a whole number"), expected()));
    }
    let n: u64 = t.replace('_', "").parse().map_err(|_| (format!("{t} is too large"), expected()))?;
    if n < min {
        return Err((format!("{n} is too small"), expected()));
    }
    Ok(n)
}

fn parse_parallelism(text: &str) -> Result<u32, String> {
    let n = parse_count(text, 1).map_err(|(problem, _)| problem)?;
    if n > u64::from(MAX_PARALLELISM) {
        return Err(format!("{n} is too large"));
    }
    Ok(n as u32)
}

/// The sink's output location as a canonical storage URI (see [`keel_storage::check_uri`]):
/// absolute paths become `file://` URIs; unknown schemes, relative paths and `.`/`..`
/// segments are refused (they could only fail, or escape the intended directory).
fn sink_uri(text: &str) -> Result<String, String> {
    let t = text.trim();
    let quoted = excerpt(t);
    if let Some((scheme, rest)) = t.split_once("://") {
        if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-') {
            if rest.is_empty() {
                return Err(format!("'{quoted}' has no path"));
            }
            return keel_storage::check_uri(t).map_err(|reason| format!("'{quoted}': {}", excerpt(&reason)));
        }
    }
    if t.starts_with('/') {
        return keel_storage::check_uri(&format!("file://{t}"))
            .map_err(|reason| format!("'{quoted}': {}", excerpt(&reason)));
    }
    Err(format!("'{quoted}' is neither a URI nor an absolute path"))
}

/// Checks the path of a `file` source: absolute, no `.` or `..` segment.
fn check_source_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("'{}' is not an absolute path", excerpt(path)));
    }
    if let Some(seg) = path.split('/').find(|s| *s == "." || *s == "..") {
        return Err(format!("'{}' has a '{seg}' segment", excerpt(path)));
    }
    Ok(())
}

impl JobSpec {
    /// The pipeline index of the sink (the number of steps minus one).
    pub fn sink_step(&self) -> usize {
        self.operators.len() + 1
    }

    /// Checks an in-memory spec (for example one built in code) the way
    /// [`parse_job_spec_with`] checks parsed text: value ranges, and that every operator is
    /// registered in `registry` and accepts its settings. Line numbers in errors are the
    /// ones stored in the spec (0 for specs built in code).
    ///
    /// # Notable errors
    /// [`JobSpecError::Invalid`], [`JobSpecError::UnknownOperator`] and the operator
    /// settings errors of [`parse_job_spec_with`].
    pub fn validate(&self, registry: &OperatorRegistry) -> Result<(), JobSpecError> {
        let defaults = JobDefaults::default();
        let p = Parser { origin: &self.origin, registry, defaults: &defaults };
        if self.name.trim().is_empty() {
            return Err(p.invalid(0, "name", "empty", "the job's name (a non-empty string)"));
        }
        if self.parallelism == 0 || self.parallelism > MAX_PARALLELISM {
            return Err(p.invalid(
                0,
                "parallelism",
                format!("{} is too {}", self.parallelism, if self.parallelism == 0 { "small" } else { "large" }),
                PARALLELISM_EXPECTED,
            ));
        }
        if self.checkpoint_interval < MIN_CHECKPOINT_INTERVAL {
            return Err(p.invalid(
                0,
                "checkpoint-interval",
                format!("{:?} is too short", self.checkpoint_interval),
                "at least 10 ms",
            ));
        }
        match &self.source {
            SourceSpec::Sequence { keys: 0, .. } => {
                return Err(p.invalid(0, "pipeline[0].source.keys", "0 is too small", "a whole number of at least 1"))
            }
            SourceSpec::Sequence { rate: Some(0), .. } => {
                return Err(p.invalid(0, "pipeline[0].source.rate", "0 is too small", "a whole number of at least 1"))
            }
            SourceSpec::File { path, .. } if check_source_path(&path.to_string_lossy()).is_err() => {
                let problem = check_source_path(&path.to_string_lossy()).unwrap_err();
                return Err(p.invalid(0, "pipeline[0].source.path", problem, SOURCE_PATH_EXPECTED));
            }
            SourceSpec::File { delimiter, .. } if delimiter.is_empty() => {
                return Err(p.invalid(0, "pipeline[0].source.delimiter", "empty", "a non-empty string"))
            }
            _ => {}
        }
        for (i, op) in self.operators.iter().enumerate() {
            let step = i + 1;
            if !registry.contains(&op.name) {
                let known: Vec<String> = registry.names().map(str::to_string).collect();
                return Err(JobSpecError::UnknownOperator {
                    at: p.at(op.line),
                    step,
                    name: op.name.clone(),
                    suggestion: nearest(&op.name, known.iter().map(String::as_str)).map(str::to_string),
                    known,
                });
            }
            registry
                .create(step, op)
                .map_err(|e| p.config_error(&format!("pipeline[{step}].{}", op.name), op.line, e))?;
        }
        if let SinkSpec::File { uri } = &self.sink {
            let field = format!("pipeline[{}].sink.path", self.sink_step());
            let normalized = sink_uri(uri).map_err(|problem| p.invalid(0, &field, problem, SINK_URI_EXPECTED))?;
            if &normalized != uri {
                return Err(p.invalid(
                    0,
                    &field,
                    format!("'{}' is not a normalized URI", excerpt(uri)),
                    format!("'{}'", excerpt(&normalized)),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_nearest() {
        assert_eq!(parse_count("12", 1), Ok(12));
        assert_eq!(parse_count("1_000", 1), Ok(1000));
        assert_eq!(parse_count("0", 1).unwrap_err().0, "0 is too small");
        assert_eq!(parse_count("-3", 1).unwrap_err().0, "-3 is negative");
        assert_eq!(parse_count("1.5", 1).unwrap_err().0, "'1.5' is not a whole number");
        assert_eq!(parse_count("99999999999999999999", 1).unwrap_err().0, "99999999999999999999 is too large");
        assert_eq!(nearest("cuont", ["map", "count", "sum"]), Some("count"));
        assert_eq!(nearest("xyz", ["map", "count", "sum"]), None);
        assert_eq!(nearest("ma", ["map"]), Some("map"));
        assert_eq!(sink_uri("/abs/out/").unwrap(), "file:///abs/out");
        assert_eq!(sink_uri("s3://bucket/p").unwrap(), "s3://bucket/p");
        assert!(sink_uri("out").is_err());
        assert_eq!(sink_uri("file:///a//b/").unwrap(), "file:///a/b");
        assert_eq!(sink_uri("/abs/../etc").unwrap_err(), "'/abs/../etc': path segment \"..\" is not allowed");
        assert_eq!(sink_uri("gs://b/x").unwrap_err(), "'gs://b/x': unknown scheme \"gs\"");
        assert_eq!(check_source_path("/a/./b").unwrap_err(), "'/a/./b' has a '.' segment");
        assert_eq!(check_source_path("a/b").unwrap_err(), "'a/b' is not an absolute path");
        let long = "9".repeat(5000);
        assert_eq!(parse_count(&long, 1).unwrap_err().0, format!("'{}' is not a whole number", excerpt(&long)));
    }
}
