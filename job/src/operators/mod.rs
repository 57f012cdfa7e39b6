//! Records, the [`Operator`] trait, the context operators see, and the registry that turns
//! pipeline steps into operators.

mod builtin;
mod registry;
pub(crate) mod source;

use std::fmt;

use keel_state::KeyedStateBackend;

pub use self::registry::{
    OperatorConfig, OperatorConfigError, OperatorFactory, OperatorRegistry, RegistryError, BUILTIN_OPERATORS,
};

/// One record flowing through a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Record {
    /// The key: keyed operators (`count`, `sum`, `reduce`, `window`) keep state per key.
    pub key: String,
    /// The value.
    pub value: i64,
    /// The record's sequence number: the source's record index (`sequence`) or 1-based line
    /// number (`file`); `window` uses it as event time.
    pub seq: u64,
    /// The window start, for records a `window` emitted.
    pub window: Option<u64>,
}

impl Record {
    /// A record outside any window.
    pub fn new(key: impl Into<String>, value: i64, seq: u64) -> Record {
        Record { key: key.into(), value, seq, window: None }
    }

    /// The sink's line for this record: `key,value`, or `key,window,value` for window output.
    pub fn to_line(&self) -> String {
        match self.window {
            Some(w) => format!("{},{},{}", self.key, w, self.value),
            None => format!("{},{}", self.key, self.value),
        }
    }
}

/// `(key k1, value 5, seq 5)` or `(key k1, window 100, value 25, seq 199)`.
impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.window {
            Some(w) => write!(f, "(key {}, window {w}, value {}, seq {})", self.key, self.value, self.seq),
            None => write!(f, "(key {}, value {}, seq {})", self.key, self.value, self.seq),
        }
    }
}

/// Why an operator failed on a record. The subtask fails with this message, prefixed by the
/// pipeline step and the record (`pipeline[2] map failed on record (key k1, value 5, seq 5):
/// ...`), and the job restarts from its latest checkpoint as its restart strategy says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OperatorError {
    /// What went wrong.
    pub message: String,
}

impl OperatorError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> OperatorError {
        OperatorError { message: message.into() }
    }
}

/// A processing step between the source and the sink.
///
/// Operators run chained in one subtask: a record a step emits through
/// [`OperatorContext::emit`] goes straight into the next step, synchronously, before the
/// source produces its next record. A checkpoint is taken between two source records, so
/// whatever an operator keeps must live in keyed state ([`OperatorContext::get`] /
/// [`OperatorContext::put`]) to survive a failure: fields of the operator itself are lost on
/// restart (rebuild them in [`Operator::open`]).
///
/// Object safe; built-in and custom operators are created by an [`OperatorRegistry`] from
/// their step's configuration.
pub trait Operator: Send {
    /// Called once before the first record, after keyed state was restored (or opened
    /// empty): rebuild in-memory indexes from state here.
    ///
    /// # Notable errors
    /// [`OperatorError`] fails the subtask.
    fn open(&mut self, ctx: &mut OperatorContext<'_>) -> Result<(), OperatorError> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one record; emit any number of records through `ctx`.
    ///
    /// # Notable errors
    /// [`OperatorError`] fails the subtask (a record error such as a division by zero).
    fn process(&mut self, record: Record, ctx: &mut OperatorContext<'_>) -> Result<(), OperatorError>;

    /// Called once when a bounded source is exhausted, before the checkpoint that marks the
    /// end of input: flush what is still open (the `window` operator emits its open windows
    /// here). Not called again after a restore from that checkpoint.
    ///
    /// # Notable errors
    /// [`OperatorError`] fails the subtask.
    fn finish(&mut self, ctx: &mut OperatorContext<'_>) -> Result<(), OperatorError> {
        let _ = ctx;
        Ok(())
    }

    /// Whether the operator uses keyed state. A pipeline without a stateful operator runs
    /// without a state backend and checkpoints no state files. Default `true`.
    fn is_stateful(&self) -> bool {
        true
    }
}

/// What an [`Operator`] sees while it works: keyed state scoped to this operator (its keys
/// cannot collide with another step's) and the output collector.
pub struct OperatorContext<'a> {
    step: usize,
    namespace: [u8; 4],
    state: Option<&'a mut dyn KeyedStateBackend>,
    out: &'a mut Vec<Record>,
}

impl<'a> OperatorContext<'a> {
    /// A context for the operator at pipeline index `step`, over `state` (`None`: the
    /// pipeline has no state backend), collecting output into `out`. The runtime builds
    /// these; it is public so custom operators can be unit-tested.
    pub fn new(
        step: usize,
        state: Option<&'a mut dyn KeyedStateBackend>,
        out: &'a mut Vec<Record>,
    ) -> OperatorContext<'a> {
        let namespace = u32::try_from(step).unwrap_or(u32::MAX).to_be_bytes();
        OperatorContext { step, namespace, state, out }
    }

    /// The operator's pipeline index (its state namespace).
    pub fn step(&self) -> usize {
        self.step
    }

    /// Sends `record` to the next step.
    pub fn emit(&mut self, record: Record) {
        self.out.push(record);
    }

    fn scoped(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(4 + key.len());
        k.extend_from_slice(&self.namespace);
        k.extend_from_slice(key);
        k
    }

    fn backend(&self) -> Result<&dyn KeyedStateBackend, OperatorError> {
        self.state.as_deref().ok_or_else(no_state)
    }

    fn backend_mut(&mut self) -> Result<&mut (dyn KeyedStateBackend + 'a), OperatorError> {
        self.state.as_deref_mut().ok_or_else(no_state)
    }

    /// The state value under `key` in this operator's namespace.
    ///
    /// # Notable errors
    /// [`OperatorError`] when the backend fails, or there is none (the operator said it is
    /// not stateful).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, OperatorError> {
        let k = self.scoped(key);
        self.backend()?.get(&k).map_err(state_error)
    }

    /// Stores `value` under `key` in this operator's namespace.
    ///
    /// # Notable errors
    /// As [`OperatorContext::get`].
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), OperatorError> {
        let k = self.scoped(key);
        self.backend_mut()?.put(&k, value).map_err(state_error)
    }

    /// Removes `key` from this operator's namespace.
    ///
    /// # Notable errors
    /// As [`OperatorContext::get`].
    pub fn delete(&mut self, key: &[u8]) -> Result<(), OperatorError> {
        let k = self.scoped(key);
        self.backend_mut()?.delete(&k).map_err(state_error)
    }

    /// The i64 stored under `key` (8 bytes big-endian), if any.
    ///
    /// # Notable errors
    /// As [`OperatorContext::get`], and when the stored value is not 8 bytes.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>, OperatorError> {
        match self.get(key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => {
                let arr: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                    OperatorError::new(format!(
                        "keyed state of step {} for key {key:?} holds {} bytes, expected an 8-byte integer",
                        self.step,
                        bytes.len()
                    ))
                })?;
                Ok(Some(i64::from_be_bytes(arr)))
            }
        }
    }

    /// Stores `value` under `key` (8 bytes big-endian).
    ///
    /// # Notable errors
    /// As [`OperatorContext::get`].
    pub fn put_i64(&mut self, key: &str, value: i64) -> Result<(), OperatorError> {
        self.put(key.as_bytes(), &value.to_be_bytes())
    }

    /// Calls `f` for every entry of this operator's namespace (keys without the namespace
    /// prefix), in key order. Scans the whole backend: use it in [`Operator::open`], not
    /// per record.
    ///
    /// # Notable errors
    /// As [`OperatorContext::get`].
    pub fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), OperatorError> {
        let ns = self.namespace;
        self.backend()?
            .for_each(&mut |k, v| {
                if let Some(rest) = k.strip_prefix(&ns[..]) {
                    f(rest, v);
                }
            })
            .map_err(state_error)
    }
}

fn no_state() -> OperatorError {
    OperatorError::new("keyed state used by an operator that declared itself stateless (Operator::is_stateful)")
}

fn state_error(e: keel_state::StateError) -> OperatorError {
    OperatorError::new(format!("keyed state: {e}"))
}
