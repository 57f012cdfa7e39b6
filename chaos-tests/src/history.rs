//! Reading what happened: the JSON-lines histories Keel processes and the harness append.
//!
//! Every Keel process started with `--events FILE` appends one JSON object per line:
//! `{"ts_ms": <unix ms>, "process": "d1", "role": "dispatcher"|"worker", "event": "<name>",
//! ...fields}`. The harness records the faults it injects in its own file through
//! [`FaultLog`] (`"process": "harness"`, events `fault_start` / `fault_end`).
//!
//! [`History::load`] merges several files into one list sorted by `ts_ms` (stable: events
//! with the same millisecond keep file order, then line order), and turns each line into an
//! [`Event`] with a typed [`EventKind`]. Parsing is lenient where writers differ and strict
//! where a checker would otherwise guess:
//!
//! - numbers may be JSON numbers or strings (`"epoch": "42"`); ids (`job`, `from`, `leader`)
//!   may be strings or numbers; job states are upper-cased (`running` → `RUNNING`);
//! - an unknown event name is kept as [`EventKind::Other`] (new events do not break old
//!   checkers);
//! - a line that is not a JSON object, lacks `ts_ms`, `process` or `event`, or is a known
//!   event without one of its required fields is *malformed*: skipped, counted in
//!   [`History::malformed`] and described in [`History::malformed_lines`] as `file:line:
//!   reason`. A process killed mid-write leaves a truncated last line: that one is counted too.
//!
//! The accessors derive the views the checker and the report need: leadership intervals,
//! fault windows, and per-job timelines.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `process` value the harness uses for its own events.
pub const HARNESS: &str = "harness";

/// At most this many malformed lines are described (all are counted).
const MAX_MALFORMED_LINES: usize = 200;

/// What one history line says, typed. Field meanings follow the event schema in the issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A dispatcher became leader with `epoch`.
    LeadershipGained { epoch: u64 },
    /// A dispatcher stopped leading (noticed loss, resigned) the leadership with `epoch`.
    LeadershipLost { epoch: u64 },
    /// A worker refused a command stamped `epoch`, having seen `highest`, from `from`.
    CommandRefused { epoch: u64, highest: u64, from: String },
    /// A worker accepted a command of `kind` stamped `epoch`.
    CommandAccepted { epoch: u64, kind: String },
    /// A worker registered with `leader` at `epoch`.
    Registered { epoch: u64, leader: String },
    /// The leader acknowledged a job submission.
    JobSubmitted { job: String },
    /// A job changed state (upper-case names).
    JobState { job: String, from: String, to: String },
    /// A checkpoint was triggered.
    CheckpointTriggered { job: String, checkpoint: u64 },
    /// A checkpoint became durable (its guarded ZooKeeper pointer write succeeded) under
    /// `epoch`. `issued_ms`, if the writer provides it, is when the guarded write was sent;
    /// the checker prefers it to `ts_ms` (see `no_stale_durable_write`).
    CheckpointCompleted { job: String, checkpoint: u64, epoch: u64, issued_ms: Option<i64> },
    /// A checkpoint was given up.
    CheckpointAborted { job: String, checkpoint: u64, reason: String },
    /// A job was restored from `checkpoint` (`None`: from no checkpoint, i.e. from scratch).
    CheckpointRestored { job: String, checkpoint: Option<u64>, attempt: Option<u64> },
    /// A new leader adopted a job's running tasks (same `attempt`, no restore) under `epoch`.
    JobAdopted { job: String, attempt: u64, epoch: u64 },
    /// A worker deployed a task.
    TaskDeployed { job: String, subtask: u64, attempt: u64, epoch: u64 },
    /// A worker's sink made a part file visible.
    SinkCommitted { job: String, subtask: u64, checkpoint: u64 },
    /// A job reached a terminal state.
    JobEnded { job: String, state: String },
    /// A job's HA data was cleaned up.
    JobCleaned { job: String },
    /// The harness started injecting a fault.
    FaultStart { fault: String, target: String, id: Option<u64> },
    /// The harness healed a fault.
    FaultEnd { fault: String, target: String, id: Option<u64> },
    /// An event this version does not know; see [`Event::name`] and [`Event::fields`].
    Other,
}

impl EventKind {
    /// The job the event is about, if any.
    pub fn job(&self) -> Option<&str> {
        match self {
            EventKind::JobSubmitted { job }
            | EventKind::JobState { job, .. }
            | EventKind::CheckpointTriggered { job, .. }
            | EventKind::CheckpointCompleted { job, .. }
            | EventKind::CheckpointAborted { job, .. }
            | EventKind::CheckpointRestored { job, .. }
            | EventKind::JobAdopted { job, .. }
            | EventKind::TaskDeployed { job, .. }
            | EventKind::SinkCommitted { job, .. }
            | EventKind::JobEnded { job, .. }
            | EventKind::JobCleaned { job } => Some(job),
            _ => None,
        }
    }
}

/// One history line.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unix time in milliseconds, from the writer's clock (all processes share one machine).
    pub ts_ms: i64,
    /// `d1`, `w2`, [`HARNESS`], ...
    pub process: String,
    /// `dispatcher` or `worker`; `None` for the harness or when absent.
    pub role: Option<String>,
    /// The event name as written.
    pub name: String,
    /// The typed content.
    pub kind: EventKind,
    /// Every field except `ts_ms`, `process`, `role` and `event`, as written.
    pub fields: Map<String, Value>,
    /// Where it came from: `file:line`.
    pub source: String,
}

impl Event {
    /// Parses one JSON object (a line, already decoded). `source` names it in errors.
    ///
    /// # Errors
    ///
    /// Why the object is malformed (see the module docs).
    pub fn from_value(value: Value, source: &str) -> Result<Event, String> {
        let Value::Object(mut map) = value else {
            return Err("not a JSON object".into());
        };
        let ts_ms = map.remove("ts_ms").ok_or("no `ts_ms`")?;
        let ts_ms = as_i64(&ts_ms).ok_or_else(|| format!("`ts_ms` is not a number: {ts_ms}"))?;
        let process = map.remove("process").ok_or("no `process`")?;
        let process = as_text(&process).ok_or_else(|| format!("`process` is not a string: {process}"))?;
        let name = map.remove("event").ok_or("no `event`")?;
        let name = as_text(&name).ok_or_else(|| format!("`event` is not a string: {name}"))?;
        let role = map.remove("role").as_ref().and_then(as_text);
        let kind = parse_kind(&name, &map)?;
        Ok(Event { ts_ms, process, role, name, kind, fields: map, source: source.to_string() })
    }

    /// Parses one line of text.
    ///
    /// # Errors
    ///
    /// Not JSON, or malformed as in [`from_value`](Self::from_value).
    pub fn parse_line(line: &str, source: &str) -> Result<Event, String> {
        let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        Event::from_value(value, source)
    }

    /// `ts=<ts_ms> <process> (<source>)`, the prefix of checker details.
    pub fn at(&self) -> String {
        format!("ts={} {} ({})", self.ts_ms, self.process, self.source)
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite() && f.fract() == 0.0).map(|f| f as i64))
        }
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().filter(|f| f.is_finite() && f.fract() == 0.0).map(|f| f as i64))
        }
        _ => None,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| as_i64(v).and_then(|i| u64::try_from(i).ok())),
        Value::String(s) => s.trim().parse::<u64>().ok().or_else(|| as_i64(v).and_then(|i| u64::try_from(i).ok())),
        _ => None,
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_kind(name: &str, m: &Map<String, Value>) -> Result<EventKind, String> {
    let num = |key: &str| -> Result<u64, String> {
        let v = m.get(key).ok_or_else(|| format!("`{name}` without `{key}`"))?;
        as_u64(v).ok_or_else(|| format!("`{name}`: `{key}` is not a non-negative integer: {v}"))
    };
    let opt_num = |key: &str| -> Result<Option<u64>, String> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                as_u64(v).map(Some).ok_or_else(|| format!("`{name}`: `{key}` is not a non-negative integer: {v}"))
            }
        }
    };
    let text = |key: &str| -> Result<String, String> {
        let v = m.get(key).ok_or_else(|| format!("`{name}` without `{key}`"))?;
        as_text(v).ok_or_else(|| format!("`{name}`: `{key}` is not a string: {v}"))
    };
    let opt_text = |key: &str| m.get(key).and_then(as_text).unwrap_or_default();
    let state = |key: &str| text(key).map(|s| s.to_ascii_uppercase());
    Ok(match name {
        "leadership_gained" => EventKind::LeadershipGained { epoch: num("epoch")? },
        "leadership_lost" => EventKind::LeadershipLost { epoch: num("epoch")? },
        "command_refused" => {
            EventKind::CommandRefused { epoch: num("epoch")?, highest: num("highest")?, from: opt_text("from") }
        }
        "command_accepted" => EventKind::CommandAccepted { epoch: num("epoch")?, kind: opt_text("kind") },
        "registered" => EventKind::Registered { epoch: num("epoch")?, leader: opt_text("leader") },
        "job_submitted" => EventKind::JobSubmitted { job: text("job")? },
        "job_state" => EventKind::JobState {
            job: text("job")?,
            from: m.get("from").and_then(as_text).unwrap_or_default().to_ascii_uppercase(),
            to: state("to")?,
        },
        "checkpoint_triggered" => EventKind::CheckpointTriggered { job: text("job")?, checkpoint: num("checkpoint")? },
        "checkpoint_completed" => EventKind::CheckpointCompleted {
            job: text("job")?,
            checkpoint: num("checkpoint")?,
            epoch: num("epoch")?,
            issued_ms: m.get("issued_ms").and_then(as_i64),
        },
        "checkpoint_aborted" => EventKind::CheckpointAborted {
            job: text("job")?,
            checkpoint: num("checkpoint")?,
            reason: opt_text("reason"),
        },
        "checkpoint_restored" => EventKind::CheckpointRestored {
            job: text("job")?,
            checkpoint: opt_num("checkpoint")?,
            attempt: opt_num("attempt")?,
        },
        "job_adopted" => EventKind::JobAdopted { job: text("job")?, attempt: num("attempt")?, epoch: num("epoch")? },
        "task_deployed" => EventKind::TaskDeployed {
            job: text("job")?,
            subtask: opt_num("subtask")?.unwrap_or(0),
            attempt: opt_num("attempt")?.unwrap_or(0),
            epoch: num("epoch")?,
        },
        "sink_committed" => EventKind::SinkCommitted {
            job: text("job")?,
            subtask: opt_num("subtask")?.unwrap_or(0),
            checkpoint: num("checkpoint")?,
        },
        "job_ended" => EventKind::JobEnded { job: text("job")?, state: state("state")? },
        "job_cleaned" => EventKind::JobCleaned { job: text("job")? },
        "fault_start" => {
            EventKind::FaultStart { fault: text("fault")?, target: opt_text("target"), id: opt_num("id")? }
        }
        "fault_end" => EventKind::FaultEnd { fault: opt_text("fault"), target: opt_text("target"), id: opt_num("id")? },
        _ => EventKind::Other,
    })
}

/// A dispatcher's leadership as its history shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadershipInterval {
    pub process: String,
    pub epoch: u64,
    /// `leadership_gained`.
    pub start_ms: i64,
    /// The process's next `leadership_lost` or `leadership_gained`; `None` if it never
    /// logged one (still leading at the end, or killed).
    pub end_ms: Option<i64>,
    /// When another process first gained a higher epoch during this interval: from then on
    /// this one is at best a fenced zombie.
    pub superseded_ms: Option<i64>,
}

/// One fault the harness injected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    pub id: Option<u64>,
    pub fault: String,
    pub target: String,
    pub start_ms: i64,
    /// `None` if the history has no matching `fault_end` (never healed).
    pub end_ms: Option<i64>,
}

/// A job state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    pub ts_ms: i64,
    pub process: String,
    pub from: String,
    pub to: String,
}

/// A completed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMark {
    pub ts_ms: i64,
    pub process: String,
    pub checkpoint: u64,
    pub epoch: u64,
}

/// A restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreMark {
    pub ts_ms: i64,
    pub process: String,
    pub checkpoint: Option<u64>,
    pub attempt: Option<u64>,
}

/// A job's terminal state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEnd {
    pub ts_ms: i64,
    pub process: String,
    pub state: String,
}

/// Everything the history says about one job, in time order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTimeline {
    pub job: String,
    pub submitted_ms: Option<i64>,
    pub states: Vec<StateChange>,
    pub checkpoints: Vec<CheckpointMark>,
    pub restores: Vec<RestoreMark>,
    /// The first `job_ended`.
    pub ended: Option<JobEnd>,
}

impl JobTimeline {
    /// The state after the last change at or before `ts_ms` (`None` before the first).
    pub fn state_at(&self, ts_ms: i64) -> Option<&str> {
        self.states.iter().take_while(|s| s.ts_ms <= ts_ms).last().map(|s| s.to.as_str())
    }
}

/// Merged, time-ordered events of one run (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct History {
    events: Vec<Event>,
    /// Lines skipped as malformed.
    pub malformed: usize,
    /// `file:line: reason` for the first 200 malformed lines.
    pub malformed_lines: Vec<String>,
    /// The files loaded, in order.
    pub files: Vec<PathBuf>,
}

impl History {
    /// Loads and merges history files (see the module docs for ordering and leniency).
    ///
    /// # Errors
    ///
    /// A file cannot be read (a missing file too: pass only files that should exist, or use
    /// [`load_dir`](Self::load_dir)). Malformed lines are not errors.
    pub fn load(paths: &[PathBuf]) -> Result<History, String> {
        let mut h = History::default();
        for p in paths {
            let bytes = std::fs::read(p).map_err(|e| format!("cannot read history file {}: {e}", p.display()))?;
            h.ingest(&String::from_utf8_lossy(&bytes), &p.display().to_string());
            h.files.push(p.clone());
        }
        h.sort();
        Ok(h)
    }

    /// Loads every `*.jsonl` file in `dir` (sorted by name).
    ///
    /// # Errors
    ///
    /// The directory or a file cannot be read.
    pub fn load_dir(dir: &Path) -> Result<History, String> {
        let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let mut paths: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        paths.sort();
        History::load(&paths)
    }

    /// Parses one file's text; `source` names it in `file:line`.
    pub fn parse(text: &str, source: &str) -> History {
        let mut h = History::default();
        h.ingest(text, source);
        h.sort();
        h
    }

    /// A history from JSON objects (synthetic histories in tests); sources are `value:<n>`.
    pub fn from_values(values: impl IntoIterator<Item = Value>) -> History {
        let mut h = History::default();
        for (i, v) in values.into_iter().enumerate() {
            let source = format!("value:{}", i + 1);
            match Event::from_value(v, &source) {
                Ok(e) => h.events.push(e),
                Err(why) => h.note_malformed(&source, &why),
            }
        }
        h.sort();
        h
    }

    /// A history from parsed events (sorted stably by `ts_ms`).
    pub fn from_events(events: Vec<Event>) -> History {
        let mut h = History { events, ..History::default() };
        h.sort();
        h
    }

    fn ingest(&mut self, text: &str, source: &str) {
        let ends_with_newline = text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("{source}:{}", i + 1);
            match Event::parse_line(line, &at) {
                Ok(e) => self.events.push(e),
                Err(why) if i + 1 == lines.len() && !ends_with_newline => {
                    self.note_malformed(&at, &format!("truncated last line (writer killed mid-line?): {why}"))
                }
                Err(why) => self.note_malformed(&at, &why),
            }
        }
    }

    fn note_malformed(&mut self, at: &str, why: &str) {
        self.malformed += 1;
        if self.malformed_lines.len() < MAX_MALFORMED_LINES {
            self.malformed_lines.push(format!("{at}: {why}"));
        }
    }

    fn sort(&mut self) {
        self.events.sort_by_key(|e| e.ts_ms);
    }

    /// Adds `other`'s events (re-sorted) and malformed counts.
    pub fn merge(&mut self, other: History) {
        self.events.extend(other.events);
        self.malformed += other.malformed;
        self.malformed_lines.extend(other.malformed_lines);
        self.malformed_lines.truncate(MAX_MALFORMED_LINES);
        self.files.extend(other.files);
        self.sort();
    }

    /// All events, sorted by `ts_ms`.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True if there is no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// First and last `ts_ms`.
    pub fn span(&self) -> Option<(i64, i64)> {
        Some((self.events.first()?.ts_ms, self.events.last()?.ts_ms))
    }

    /// Events of one process, in time order.
    pub fn of_process<'a>(&'a self, process: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
        self.events.iter().filter(move |e| e.process == process)
    }

    /// Events about one job, in time order.
    pub fn of_job<'a>(&'a self, job: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
        self.events.iter().filter(move |e| e.kind.job() == Some(job))
    }

    /// Every process except the harness, sorted.
    pub fn processes(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.events.iter().map(|e| e.process.as_str()).filter(|p| *p != HARNESS).collect();
        set.into_iter().map(str::to_string).collect()
    }

    /// Processes with role `dispatcher` or with leadership events, sorted.
    pub fn dispatchers(&self) -> Vec<String> {
        self.processes_where(|e| {
            e.role.as_deref() == Some("dispatcher")
                || matches!(e.kind, EventKind::LeadershipGained { .. } | EventKind::LeadershipLost { .. })
        })
    }

    /// Processes with role `worker` or with worker events, sorted.
    pub fn workers(&self) -> Vec<String> {
        self.processes_where(|e| {
            e.role.as_deref() == Some("worker")
                || matches!(
                    e.kind,
                    EventKind::Registered { .. } | EventKind::CommandAccepted { .. } | EventKind::CommandRefused { .. }
                )
        })
    }

    fn processes_where(&self, f: impl Fn(&Event) -> bool) -> Vec<String> {
        let set: BTreeSet<&str> =
            self.events.iter().filter(|e| e.process != HARNESS && f(e)).map(|e| e.process.as_str()).collect();
        set.into_iter().map(str::to_string).collect()
    }

    /// Every job mentioned, in order of first mention.
    pub fn jobs(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for e in &self.events {
            if let Some(j) = e.kind.job() {
                if seen.insert(j) {
                    out.push(j.to_string());
                }
            }
        }
        out
    }

    /// Every `leadership_gained`, in time order, as an interval (see [`LeadershipInterval`]).
    pub fn leadership_intervals(&self) -> Vec<LeadershipInterval> {
        let gains: Vec<(usize, &Event, u64)> = self
            .events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e.kind {
                EventKind::LeadershipGained { epoch } => Some((i, e, epoch)),
                _ => None,
            })
            .collect();
        gains
            .iter()
            .map(|&(i, e, epoch)| {
                let end_ms = self.events[i + 1..]
                    .iter()
                    .find(|x| {
                        x.process == e.process
                            && matches!(x.kind, EventKind::LeadershipLost { .. } | EventKind::LeadershipGained { .. })
                    })
                    .map(|x| x.ts_ms);
                let superseded_ms = gains
                    .iter()
                    .filter(|&&(j, x, ep)| j > i && x.process != e.process && ep > epoch)
                    .map(|&(_, x, _)| x.ts_ms)
                    .find(|&t| end_ms.is_none_or(|end| t <= end));
                LeadershipInterval { process: e.process.clone(), epoch, start_ms: e.ts_ms, end_ms, superseded_ms }
            })
            .collect()
    }

    /// Every fault the harness recorded, in start order. A `fault_end` closes the window
    /// with the same `id`, or (without ids) the oldest open one with the same fault and
    /// target.
    pub fn fault_windows(&self) -> Vec<FaultWindow> {
        let mut out: Vec<FaultWindow> = Vec::new();
        for e in &self.events {
            match &e.kind {
                EventKind::FaultStart { fault, target, id } => out.push(FaultWindow {
                    id: *id,
                    fault: fault.clone(),
                    target: target.clone(),
                    start_ms: e.ts_ms,
                    end_ms: None,
                }),
                EventKind::FaultEnd { fault, target, id } => {
                    let open = out.iter_mut().find(|w| {
                        w.end_ms.is_none()
                            && match id {
                                Some(id) => w.id == Some(*id),
                                None => w.fault == *fault && w.target == *target,
                            }
                    });
                    if let Some(w) = open {
                        w.end_ms = Some(e.ts_ms);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// One timeline per job, in order of first mention.
    pub fn job_timelines(&self) -> Vec<JobTimeline> {
        let mut by_job: BTreeMap<String, JobTimeline> = BTreeMap::new();
        let order = self.jobs();
        for e in &self.events {
            let Some(job) = e.kind.job() else { continue };
            let t = by_job.entry(job.to_string()).or_insert_with(|| JobTimeline {
                job: job.to_string(),
                submitted_ms: None,
                states: Vec::new(),
                checkpoints: Vec::new(),
                restores: Vec::new(),
                ended: None,
            });
            match &e.kind {
                EventKind::JobSubmitted { .. } => {
                    t.submitted_ms.get_or_insert(e.ts_ms);
                }
                EventKind::JobState { from, to, .. } => t.states.push(StateChange {
                    ts_ms: e.ts_ms,
                    process: e.process.clone(),
                    from: from.clone(),
                    to: to.clone(),
                }),
                EventKind::CheckpointCompleted { checkpoint, epoch, .. } => t.checkpoints.push(CheckpointMark {
                    ts_ms: e.ts_ms,
                    process: e.process.clone(),
                    checkpoint: *checkpoint,
                    epoch: *epoch,
                }),
                EventKind::CheckpointRestored { checkpoint, attempt, .. } => t.restores.push(RestoreMark {
                    ts_ms: e.ts_ms,
                    process: e.process.clone(),
                    checkpoint: *checkpoint,
                    attempt: *attempt,
                }),
                EventKind::JobEnded { state, .. } if t.ended.is_none() => {
                    t.ended = Some(JobEnd { ts_ms: e.ts_ms, process: e.process.clone(), state: state.clone() });
                }
                _ => {}
            }
        }
        order.into_iter().filter_map(|j| by_job.remove(&j)).collect()
    }
}

/// The harness's own history file: appends `fault_start` / `fault_end` (and other harness
/// events) as JSON lines with `"process": "harness"`, one flushed write per line.
///
/// Thread-safe; ids are unique within one log.
#[derive(Debug)]
pub struct FaultLog {
    path: PathBuf,
    file: Mutex<File>,
    open: Mutex<HashMap<u64, (String, String)>>,
    next_id: Mutex<u64>,
}

impl FaultLog {
    /// Opens (creating or appending to) the harness history at `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be opened.
    pub fn create(path: &Path) -> io::Result<FaultLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(FaultLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            open: Mutex::new(HashMap::new()),
            next_id: Mutex::new(1),
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that `fault` on `target` starts now; returns its id for [`end`](Self::end).
    ///
    /// # Errors
    ///
    /// The write failed.
    pub fn start(&self, fault: &str, target: &str) -> io::Result<u64> {
        let id = {
            let mut n = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
            let id = *n;
            *n += 1;
            id
        };
        self.open.lock().unwrap_or_else(|e| e.into_inner()).insert(id, (fault.to_string(), target.to_string()));
        self.write("fault_start", serde_json::json!({"fault": fault, "target": target, "id": id}))?;
        Ok(id)
    }

    /// Records that fault `id` is healed now.
    ///
    /// # Errors
    ///
    /// `NotFound` for an id that is not open; or the write failed.
    pub fn end(&self, id: u64) -> io::Result<()> {
        let (fault, target) = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("fault {id} is not open")))?;
        self.write("fault_end", serde_json::json!({"fault": fault, "target": target, "id": id}))
    }

    /// Ids of faults started and not ended yet.
    pub fn open_faults(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.open.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Appends any harness event (`fields` must be an object; others are ignored).
    ///
    /// # Errors
    ///
    /// The write failed.
    pub fn write(&self, event: &str, fields: Value) -> io::Result<()> {
        let ts = crate::util::now_unix_ms();
        let mut line = Map::new();
        line.insert("ts_ms".into(), Value::from(ts));
        line.insert("process".into(), Value::from(HARNESS));
        line.insert("event".into(), Value::from(event));
        if let Value::Object(f) = fields {
            line.extend(f);
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(text.as_bytes())?;
        f.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lenient_numbers_and_ids() {
        let e = Event::parse_line(
            r#"{"ts_ms":"1000","process":"w1","role":"worker","event":"command_refused","epoch":"3","highest":7,"from":12}"#,
            "f:1",
        )
        .unwrap();
        assert_eq!(e.ts_ms, 1000);
        assert_eq!(e.kind, EventKind::CommandRefused { epoch: 3, highest: 7, from: "12".into() });
        let e = Event::parse_line(
            r#"{"ts_ms":1.0e3,"process":"d1","event":"job_state","job":7,"from":"created","to":"running"}"#,
            "f:2",
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::JobState { job: "7".into(), from: "CREATED".into(), to: "RUNNING".into() });
        let e = Event::parse_line(
            r#"{"ts_ms":5,"process":"d1","event":"checkpoint_restored","job":"j","checkpoint":null}"#,
            "f:3",
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::CheckpointRestored { job: "j".into(), checkpoint: None, attempt: None });
        let e = Event::parse_line(
            r#"{"ts_ms":5,"process":"d2","event":"job_adopted","job":"j","attempt":4,"epoch":"12"}"#,
            "f:3",
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::JobAdopted { job: "j".into(), attempt: 4, epoch: 12 });
        let e = Event::parse_line(r#"{"ts_ms":5,"process":"d1","event":"brand_new","x":1}"#, "f:4").unwrap();
        assert_eq!(e.kind, EventKind::Other);
        assert_eq!(e.fields.get("x"), Some(&json!(1)));
    }

    #[test]
    fn malformed_lines_are_counted_with_file_and_line() {
        let text = concat!(
            "{\"ts_ms\":3,\"process\":\"d1\",\"event\":\"leadership_gained\",\"epoch\":5}\n",
            "not json\n",
            "\n",
            "{\"ts_ms\":1,\"process\":\"d1\",\"event\":\"leadership_gained\"}\n",
            "{\"process\":\"d1\",\"event\":\"x\"}\n",
            "{\"ts_ms\":2,\"process\":\"d2\",\"event\":\"leadership_gained\",\"epoch\":-1}\n",
            "[1,2]\n",
            "{\"ts_ms\":1,\"process\":\"d2\",\"event\":\"leadership_lost\",\"epoch\":4}\n",
            "{\"ts_ms\":9,\"process\":\"d1\",\"ev",
        );
        let h = History::parse(text, "d.jsonl");
        assert_eq!(h.len(), 2);
        assert_eq!(h.malformed, 6, "{:#?}", h.malformed_lines);
        assert!(h.malformed_lines[0].starts_with("d.jsonl:2: not JSON"), "{:?}", h.malformed_lines);
        assert!(h.malformed_lines[1].starts_with("d.jsonl:4: `leadership_gained` without `epoch`"));
        assert!(h.malformed_lines[2].contains("no `ts_ms`"));
        assert!(h.malformed_lines[3].contains("not a non-negative integer"));
        assert!(h.malformed_lines[4].contains("not a JSON object"));
        assert!(h.malformed_lines[5].starts_with("d.jsonl:9: truncated last line"));
        // Sorted by ts.
        assert_eq!(h.events()[0].ts_ms, 1);
        assert_eq!(h.events()[0].source, "d.jsonl:8");
    }

    #[test]
    fn load_merges_files_sorted_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        let b = dir.path().join("b.jsonl");
        std::fs::write(
            &a,
            "{\"ts_ms\":10,\"process\":\"d1\",\"event\":\"x\"}\n{\"ts_ms\":20,\"process\":\"d1\",\"event\":\"y\"}\n",
        )
        .unwrap();
        std::fs::write(
            &b,
            "{\"ts_ms\":10,\"process\":\"d2\",\"event\":\"z\"}\n{\"ts_ms\":5,\"process\":\"d2\",\"event\":\"w\"}\n",
        )
        .unwrap();
        let h = History::load(&[a.clone(), b.clone()]).unwrap();
        let names: Vec<&str> = h.events().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["w", "x", "z", "y"]);
        let h2 = History::load_dir(dir.path()).unwrap();
        assert_eq!(h2.len(), 4);
        let err = History::load(&[dir.path().join("missing.jsonl")]).unwrap_err();
        assert!(err.contains("missing.jsonl"), "{err}");
    }

    #[test]
    fn fault_log_round_trips_through_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("harness.jsonl");
        let log = FaultLog::create(&path).unwrap();
        let a = log.start("kill9", "d1").unwrap();
        let b = log.start("partition-zk", "d2").unwrap();
        assert_eq!(log.open_faults(), vec![a, b]);
        log.end(a).unwrap();
        assert!(log.end(a).is_err());
        let h = History::load(&[path]).unwrap();
        assert_eq!(h.malformed, 0);
        let w = h.fault_windows();
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].fault.as_str(), w[0].target.as_str(), w[0].id), ("kill9", "d1", Some(a)));
        assert!(w[0].end_ms.is_some());
        assert_eq!(w[1].end_ms, None);
        assert!(h.processes().is_empty(), "the harness is not a process under test");
    }

    #[test]
    fn intervals_and_timelines() {
        let h = History::from_values([
            json!({"ts_ms": 100, "process": "d1", "role": "dispatcher", "event": "leadership_gained", "epoch": 5}),
            json!({"ts_ms": 110, "process": "d1", "event": "job_submitted", "job": "j1"}),
            json!({"ts_ms": 120, "process": "d1", "event": "job_state", "job": "j1", "from": "CREATED", "to": "RUNNING"}),
            json!({"ts_ms": 200, "process": "d2", "role": "dispatcher", "event": "leadership_gained", "epoch": 9}),
            json!({"ts_ms": 250, "process": "d1", "event": "leadership_lost", "epoch": 5}),
            json!({"ts_ms": 260, "process": "w1", "role": "worker", "event": "registered", "epoch": 9, "leader": "d2"}),
        ]);
        let iv = h.leadership_intervals();
        assert_eq!(iv.len(), 2);
        assert_eq!((iv[0].end_ms, iv[0].superseded_ms), (Some(250), Some(200)));
        assert_eq!((iv[1].end_ms, iv[1].superseded_ms), (None, None));
        assert_eq!(h.dispatchers(), ["d1", "d2"]);
        assert_eq!(h.workers(), ["w1"]);
        let t = h.job_timelines();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].submitted_ms, Some(110));
        assert_eq!(t[0].state_at(119), None);
        assert_eq!(t[0].state_at(500), Some("RUNNING"));
    }
}
