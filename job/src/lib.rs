//! Keel jobs: the job spec, the operators, the subtask runtime, and the exactly-once file
//! sink. This is the data plane a worker hosts and a checkpoint coordinator drives.
//!
//! # What the crate owns
//!
//! * **The job spec** ([`parse_job_spec`], [`JobSpec`]): YAML with a name, parallelism,
//!   checkpoint interval, restart strategy and a pipeline `source → operators → sink`.
//!   Errors ([`JobSpecError`]) name the origin, line, field path (`pipeline[2].map.expr`),
//!   the problem and what was expected; unknown operators and fields come with the nearest
//!   known name. Unknown fields are errors (a typo would silently change the job).
//! * **Operators** ([`Operator`], [`OperatorRegistry`]): `map` and `filter` over a small
//!   [`Expression`] language or fixed functions; keyed `count`, `sum`, `reduce`; a keyed
//!   tumbling `window` over the record sequence number. Custom operators plug in through
//!   the registry.
//! * **The subtask runtime** ([`spawn_subtask`]): runs one parallel instance of a pipeline,
//!   checkpoints its keyed state (through `keel-state`: RocksDB or hashmap, incremental
//!   uploads, local recovery) into the checkpoint directory, and answers the checkpoint
//!   coordinator through [`Control`] / [`SubtaskEvent`].
//! * **The exactly-once file sink**: two-phase commit with write-once objects (never a
//!   rename): parts are pre-committed under `.pending/` at each checkpoint and written once
//!   to their final name `part-<job>-<subtask>-<checkpoint>` when the checkpoint completes, again
//!   idempotently after a recovery. Parts of checkpoints that never complete are deleted,
//!   never made visible.
//! * **Cleanup** of checkpoint files: [`discard_checkpoints`] (retention, shared files
//!   reference-counted), [`discard_job`], [`discard_sink_pending`].
//!
//! # Job spec
//!
//! ```yaml
//! name: counts
//! parallelism: 2                                    # 1..=1024 (default 1)
//! checkpoint-interval: 1 s                          # 500 ms, 1 s, 1 min, or plain ms (default 10 s, min 10 ms)
//! restart-strategy: { type: fixed-delay, attempts: 3, delay: 1 s }   # or { type: none } (default fixed-delay 3 × 1 s)
//! pipeline:
//!   - source: { type: sequence, count: 100000, keys: 16, rate: 2000 }  # count omitted: unbounded; rate: records/s per subtask
//!   # - source: { type: file, path: /abs/input.txt, key-field: 0, delimiter: "," }
//!   - map: { expr: "value * 2" }                    # or { function: identity|double|negate|abs }
//!   - filter: { expr: "value % 3 != 0" }            # or { function: even|odd }
//!   - count: {}                                     # keyed running count → (key, count)
//!   - sum: {}                                       # keyed running sum → (key, sum)
//!   - reduce: { function: max }                     # max | min | sum, keyed
//!   - window: { type: tumbling, size: 100 }         # keyed, over seq: (key, window start, count)
//!   - sink: { type: file, path: file:///abs/out }   # exactly-once; or s3://bucket/prefix; or { type: print } / { type: discard }
//! ```
//!
//! Expressions ([`Expression`]): integers, `value`, `seq`, `key` (strings compare with `==`
//! and `!=` only), `+ - * / %` (checked: division by zero and overflow fail the record), `<
//! <= > >= == !=`, `&& || !`, parentheses; `map` needs an integer expression, `filter` a
//! boolean one, both checked at parse time.
//!
//! # Execution model
//!
//! A job runs as `parallelism` subtasks, each one **chained pipeline** in one tokio task:
//! source → operators → sink, record by record, no network between steps. Sources are
//! **key-partitioned** so keyed operators need no shuffle: the `sequence` source's subtask
//! `i` keeps record `n` (key `k{n % keys}`) when `(n % keys) % parallelism == i`; the `file`
//! source has every subtask read the whole file and keep the lines whose key hashes
//! (FNV-1a) to it. Every key therefore lives in exactly one subtask, with its keyed state
//! (one [`keel_state::KeyedStateBackend`] per subtask; each operator's keys are prefixed
//! with its pipeline index so operators never collide).
//!
//! Checkpoints are aligned and synchronous: on [`Control::TriggerCheckpoint`] the subtask
//! stops between two records, records the source position, snapshots and uploads keyed
//! state, pre-commits the sink part, and acknowledges with a
//! [`keel_proto::v1::SubtaskSnapshot`] — the contract with the checkpoint coordinator, which
//! stores it in the checkpoint metadata and hands it back on restore. On
//! [`Control::CheckpointComplete`] the sink commits. A bounded source that runs out lets
//! every operator flush ([`Operator::finish`]); the next checkpoint carries
//! `end_of_input: true`, and once it completes the subtask reports
//! [`SubtaskEvent::Finished`]. The committed output of a job therefore equals one
//! failure-free run's, whatever failures and restores happen in between (DESIGN invariant 4).
//!
//! # Adding an operator
//!
//! Implement [`Operator`] (keep everything that must survive a failure in keyed state
//! through [`OperatorContext`]), register a factory under a name in an
//! [`OperatorRegistry`], and parse specs with [`parse_job_spec_with`]; give the same
//! registry to the runtime in [`SubtaskContext::registry`]. A custom worker build does this
//! at start-up.
//!
//! ```
//! use keel_job::{
//!     parse_job_spec_with, Operator, OperatorConfig, OperatorConfigError, OperatorContext, OperatorError,
//!     OperatorRegistry, Record,
//! };
//!
//! /// `clamp: { max: 10 }` caps values at `max`.
//! struct Clamp {
//!     max: i64,
//! }
//!
//! impl Operator for Clamp {
//!     fn process(&mut self, mut record: Record, ctx: &mut OperatorContext<'_>) -> Result<(), OperatorError> {
//!         record.value = record.value.min(self.max);
//!         ctx.emit(record);
//!         Ok(())
//!     }
//!
//!     fn is_stateful(&self) -> bool {
//!         false
//!     }
//! }
//!
//! fn clamp(config: &OperatorConfig<'_>) -> Result<Box<dyn Operator>, OperatorConfigError> {
//!     config.check_fields(&["max"])?;
//!     let max = config.i64("max")?.ok_or_else(|| config.invalid("max", "missing", "a whole number"))?;
//!     Ok(Box::new(Clamp { max }))
//! }
//!
//! let mut registry = OperatorRegistry::new();
//! registry.register("clamp", clamp).unwrap();
//!
//! let spec = parse_job_spec_with(
//!     "name: capped\n\
//!      pipeline:\n\
//!      \x20 - source: { type: sequence, count: 100 }\n\
//!      \x20 - clamp: { max: 10 }\n\
//!      \x20 - sink: { type: discard }\n",
//!     "capped.yaml",
//!     &registry,
//! )
//! .unwrap();
//! assert_eq!(spec.operators[0].name, "clamp");
//!
//! // Settings are checked when the spec is parsed, with the step and field in the error.
//! let err = parse_job_spec_with(
//!     "name: capped\npipeline:\n  - source: { type: sequence }\n  - clamp: { max: ten }\n  - sink: { type: discard }\n",
//!     "capped.yaml",
//!     &registry,
//! )
//! .unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "capped.yaml:4: pipeline[1].clamp.max: 'ten' is not a whole number; expected a whole number"
//! );
//!
//! // Operators run against keyed state and an output collector; unit-test them directly.
//! let mut out = Vec::new();
//! let mut op = Clamp { max: 10 };
//! op.process(Record::new("k0", 42, 0), &mut OperatorContext::new(1, None, &mut out)).unwrap();
//! assert_eq!(out[0].value, 10);
//! ```
//!
//! # Layout
//!
//! * `spec/` — [`JobSpec`], the YAML reader with line numbers, [`JobSpecError`]
//! * `expr` — the [`Expression`] language
//! * `operators/` — [`Record`], [`Operator`], [`OperatorContext`], the built-ins, the
//!   sources, [`OperatorRegistry`]
//! * `runtime/` — [`spawn_subtask`] and the task loop, keyed state checkpointing, the
//!   sinks, the storage layout, discarding files
//!
//! # Feature flags
//!
//! None. Storage URI schemes come from `keel-storage`'s features.

mod expr;
mod operators;
mod runtime;
mod spec;

pub use expr::{EvalError, ExprError, ExprType, ExprValue, Expression};
/// Input limits: what a job spec and its expressions may not exceed.
pub use expr::{MAX_EXPR_DEPTH, MAX_EXPR_LEN, MAX_EXPR_TOKENS};
pub use operators::{
    Operator, OperatorConfig, OperatorConfigError, OperatorContext, OperatorError, OperatorFactory, OperatorRegistry,
    Record, RegistryError, BUILTIN_OPERATORS,
};
pub use runtime::{
    attempt_fence_disabled, check_sink_parts, discard_checkpoints, discard_job, discard_sink_pending, final_part_path,
    pending_part_path, read_metadata, read_state_manifest, spawn_subtask, CheckpointFilesError, CheckpointStore,
    Control, DiscardReport, SubtaskContext, SubtaskEvent, SubtaskHandle, TaskMetrics, Unusable,
};
pub use spec::{
    parse_job_spec, parse_job_spec_with, JobSpec, JobSpecError, Location, OperatorSpec, RestartStrategy, SinkSpec,
    SourceSpec, YamlEntry, YamlNode, YamlValue, DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_RESTART_ATTEMPTS,
    DEFAULT_RESTART_DELAY, MAX_PARALLELISM, MIN_CHECKPOINT_INTERVAL,
};
pub use spec::{
    parse_job_spec_with_defaults, pin_job_defaults, JobDefaults, MAX_SPEC_BYTES, MAX_YAML_DEPTH,
    MAX_YAML_EXPANDED_BYTES, MAX_YAML_NODES,
};
