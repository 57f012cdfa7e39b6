//! The subtask task: setup (restore), the record loop, and control handling.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keel_proto::v1::SubtaskSnapshot;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use super::layout;
use super::sink::{FileSink, Sink};
use super::state::{KeyedState, Owner};
use super::{Control, SubtaskContext, SubtaskEvent, TaskMetrics};
use crate::operators::source::Source;
use crate::operators::{Operator, OperatorContext, Record};
use crate::spec::{JobSpec, SinkSpec};

/// Records processed between two yields to the runtime.
const BATCH: u64 = 512;

/// Why the record loop ended.
enum Exit {
    Finished,
    Cancelled,
    Failed(String),
}

struct Step {
    index: usize,
    name: String,
    op: Box<dyn Operator>,
}

struct Subtask {
    ctx: SubtaskContext,
    owner: Owner,
    source: Source,
    chain: Vec<Step>,
    sink: Sink,
    state: Option<KeyedState>,
    records_in: u64,
    records_out: u64,
    /// The source is exhausted and every operator's `finish` ran.
    input_done: bool,
    /// The first checkpoint acknowledged with `end_of_input`.
    end_acked: Option<u64>,
    last_triggered: Option<u64>,
    throttle: Option<Throttle>,
    events: UnboundedSender<SubtaskEvent>,
    metrics: Arc<TaskMetrics>,
}

/// What setup produced.
enum Started {
    Running(Box<Subtask>),
    /// Restored from a snapshot taken after the end of input: nothing left to do.
    AlreadyFinished(Sink),
}

pub(super) async fn run(
    spec: Arc<JobSpec>,
    ctx: SubtaskContext,
    restore: Option<SubtaskSnapshot>,
    mut control: UnboundedReceiver<Control>,
    events: UnboundedSender<SubtaskEvent>,
    metrics: Arc<TaskMetrics>,
) {
    let mut backlog = VecDeque::new();
    let who = format!("job {} subtask {} attempt {}", ctx.job_id, ctx.subtask, ctx.attempt);
    let setup = Subtask::start(&spec, ctx, restore, events.clone(), metrics);
    let started = match cancellable(setup, &mut control, &mut backlog).await {
        None => {
            tracing::info!("{who}: cancelled during setup");
            return;
        }
        Some(Err(reason)) => {
            tracing::warn!("{who}: failed to start: {reason}");
            let _ = events.send(SubtaskEvent::Failed { reason });
            return;
        }
        Some(Ok(started)) => started,
    };
    let _ = events.send(SubtaskEvent::Running);
    let mut task = match started {
        Started::AlreadyFinished(sink) => {
            sink.clean_up().await;
            tracing::info!("{who}: restored after the end of input; finished");
            let _ = events.send(SubtaskEvent::Finished);
            return;
        }
        Started::Running(task) => task,
    };
    match task.run(&mut control, &mut backlog).await {
        Exit::Finished => {
            task.sink.clean_up().await;
            if let Some(state) = task.state.take() {
                // Closing RocksDB and removing its files is disk I/O: off the async threads.
                let _ = tokio::task::spawn_blocking(move || state.close_and_remove_local()).await;
            }
            tracing::info!("{who}: finished ({} records in, {} out)", task.records_in, task.records_out);
            let _ = events.send(SubtaskEvent::Finished);
        }
        Exit::Cancelled => tracing::info!("{who}: cancelled"),
        Exit::Failed(reason) => {
            tracing::warn!("{who}: failed: {reason}");
            let _ = events.send(SubtaskEvent::Failed { reason });
        }
    }
}

/// Runs `fut` while watching `control`: a `Cancel` (or a closed channel) drops `fut` and
/// returns `None`; other messages wait in `backlog`.
async fn cancellable<F: Future>(
    fut: F,
    control: &mut UnboundedReceiver<Control>,
    backlog: &mut VecDeque<Control>,
) -> Option<F::Output> {
    if backlog.iter().any(|c| *c == Control::Cancel) {
        return None;
    }
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return Some(out),
            msg = control.recv() => match msg {
                None | Some(Control::Cancel) => return None,
                Some(other) => backlog.push_back(other),
            },
        }
    }
}

impl Subtask {
    async fn start(
        spec: &JobSpec,
        ctx: SubtaskContext,
        restore: Option<SubtaskSnapshot>,
        events: UnboundedSender<SubtaskEvent>,
        metrics: Arc<TaskMetrics>,
    ) -> Result<Started, String> {
        layout::check_job_id(&ctx.job_id).map_err(|e| format!("invalid job id {:?}: {e}", ctx.job_id))?;
        if ctx.parallelism != spec.parallelism {
            return Err(format!(
                "deployed with parallelism {}, but the job spec says {}",
                ctx.parallelism, spec.parallelism
            ));
        }
        if ctx.subtask >= ctx.parallelism {
            return Err(format!("subtask index {} is out of range 0..{}", ctx.subtask, ctx.parallelism));
        }
        if let Some(r) = &restore {
            if r.subtask != ctx.subtask {
                return Err(format!(
                    "asked to restore subtask {} from a snapshot of subtask {}",
                    ctx.subtask, r.subtask
                ));
            }
        }
        let owner = Owner { job_id: ctx.job_id.clone(), subtask: ctx.subtask, attempt: ctx.attempt };

        let mut chain = Vec::with_capacity(spec.operators.len());
        for (i, op) in spec.operators.iter().enumerate() {
            let index = i + 1;
            let built = ctx.registry.create(index, op).map_err(|e| format!("pipeline[{index}] {}: {e}", op.name))?;
            chain.push(Step { index, name: op.name.clone(), op: built });
        }
        let stateful = chain.iter().any(|s| s.op.is_stateful());

        let mut sink = match &spec.sink {
            SinkSpec::Discard => Sink::Discard,
            SinkSpec::Print => Sink::Print { subtask: ctx.subtask },
            SinkSpec::File { uri } => {
                Sink::File(Box::new(FileSink::open(uri, &ctx.storage_options, &ctx.job_id, ctx.subtask, ctx.attempt)?))
            }
        };

        if let Some(r) = restore.as_ref().filter(|r| r.end_of_input) {
            sink.recover(&r.pending).await?;
            return Ok(Started::AlreadyFinished(sink));
        }

        // Keyed state first: a snapshot whose state cannot be restored must not have its
        // sink parts committed by this attempt (the coordinator may fall back to an older
        // checkpoint).
        let manifest = restore.as_ref().map(|r| r.state_manifest.as_str()).filter(|m| !m.is_empty());
        let state = match (stateful, manifest) {
            (false, m) => {
                if let Some(m) = m {
                    tracing::warn!(
                        manifest = m,
                        "the pipeline has no stateful operator; ignoring the snapshot's keyed state"
                    );
                }
                None
            }
            (true, None) if restore.is_some() => {
                return Err(format!(
                    "the snapshot of subtask {} holds no keyed state, but the pipeline has stateful operators \
                     (was the job spec changed?)",
                    ctx.subtask
                ))
            }
            (true, m) => Some(KeyedState::open(&ctx.state, &ctx.checkpoints, &owner, m).await?),
        };

        let offset = restore.as_ref().map_or(0, |r| r.source_offset);
        let source = Source::open(&spec.source, ctx.subtask, ctx.parallelism, offset)?;
        sink.recover(restore.as_ref().map_or(&[][..], |r| &r.pending[..])).await?;

        let mut task = Subtask {
            owner,
            source,
            chain,
            sink,
            state,
            records_in: restore.as_ref().map_or(0, |r| r.records_in),
            records_out: restore.as_ref().map_or(0, |r| r.records_out),
            input_done: false,
            end_acked: None,
            last_triggered: None,
            throttle: spec.source.rate().map(Throttle::new),
            events,
            metrics,
            ctx,
        };
        for i in 0..task.chain.len() {
            let mut out = Vec::new();
            let step = &mut task.chain[i];
            let backend = task.state.as_mut().and_then(|s| s.backend_mut());
            step.op
                .open(&mut OperatorContext::new(step.index, backend, &mut out))
                .map_err(|e| format!("pipeline[{}] {} failed to open: {e}", step.index, step.name))?;
            task.push_through(i + 1, out)?;
        }
        Ok(Started::Running(Box::new(task)))
    }

    async fn run(&mut self, control: &mut UnboundedReceiver<Control>, backlog: &mut VecDeque<Control>) -> Exit {
        loop {
            let msg = match backlog.pop_front() {
                Some(m) => Some(m),
                None => match control.try_recv() {
                    Ok(m) => Some(m),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return Exit::Cancelled,
                },
            };
            if let Some(msg) = msg {
                let started = Instant::now();
                let exit = self.handle(msg, control, backlog).await;
                self.account(started);
                if let Some(exit) = exit {
                    return exit;
                }
                continue;
            }
            if self.input_done {
                match control.recv().await {
                    None => return Exit::Cancelled,
                    Some(m) => backlog.push_back(m),
                }
                continue;
            }
            let budget = match &mut self.throttle {
                None => BATCH,
                Some(t) => t.budget(BATCH),
            };
            if budget == 0 {
                let wait = self.throttle.as_ref().map_or(Duration::ZERO, Throttle::wait);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    msg = control.recv() => match msg {
                        None => return Exit::Cancelled,
                        Some(m) => backlog.push_back(m),
                    },
                }
                continue;
            }
            let started = Instant::now();
            let exit = self.batch(budget, control);
            self.account(started);
            if let Some(exit) = exit {
                return exit;
            }
            tokio::task::yield_now().await;
        }
    }

    /// Publishes the counters and adds the time since `started` to the busy time.
    fn account(&self, started: Instant) {
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics.records_in.store(self.records_in, Relaxed);
        self.metrics.records_out.store(self.records_out, Relaxed);
        let busy = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.metrics.busy_nanos.fetch_add(busy, Relaxed);
    }

    /// Runs up to `budget` records (fewer when a control message arrives); `Some` ends the loop.
    fn batch(&mut self, budget: u64, control: &UnboundedReceiver<Control>) -> Option<Exit> {
        for _ in 0..budget {
            let next = match self.source.next_record() {
                Ok(next) => next,
                Err(reason) => return Some(Exit::Failed(reason)),
            };
            match next {
                None => {
                    if let Err(reason) = self.end_input() {
                        return Some(Exit::Failed(reason));
                    }
                    break;
                }
                Some(record) => {
                    if let Some(t) = &mut self.throttle {
                        t.emitted += 1;
                    }
                    self.records_in += 1;
                    if let Err(reason) = self.push_through(0, vec![record]) {
                        return Some(Exit::Failed(reason));
                    }
                }
            }
            if !control.is_empty() {
                break;
            }
        }
        None
    }

    /// Runs `batch` through the chain from operator `from` (0-based in `chain`) to the sink.
    fn push_through(&mut self, from: usize, mut batch: Vec<Record>) -> Result<(), String> {
        for step in self.chain.iter_mut().skip(from) {
            if batch.is_empty() {
                return Ok(());
            }
            let mut out = Vec::with_capacity(batch.len());
            for record in batch {
                let shown = record.clone();
                let backend = self.state.as_mut().and_then(|s| s.backend_mut());
                step.op
                    .process(record, &mut OperatorContext::new(step.index, backend, &mut out))
                    .map_err(|e| format!("pipeline[{}] {} failed on record {shown}: {e}", step.index, step.name))?;
            }
            batch = out;
        }
        for record in &batch {
            self.sink.write(record);
        }
        self.records_out += batch.len() as u64;
        Ok(())
    }

    /// The source is exhausted: let every operator flush, in pipeline order.
    fn end_input(&mut self) -> Result<(), String> {
        self.input_done = true;
        for i in 0..self.chain.len() {
            let mut out = Vec::new();
            let step = &mut self.chain[i];
            let backend = self.state.as_mut().and_then(|s| s.backend_mut());
            step.op
                .finish(&mut OperatorContext::new(step.index, backend, &mut out))
                .map_err(|e| format!("pipeline[{}] {} failed at the end of input: {e}", step.index, step.name))?;
            self.push_through(i + 1, out)?;
        }
        tracing::info!(
            job = %self.ctx.job_id,
            subtask = self.ctx.subtask,
            records_in = self.records_in,
            "end of input; waiting for the next checkpoint to complete"
        );
        Ok(())
    }

    fn send(&self, event: SubtaskEvent) {
        let _ = self.events.send(event);
    }

    /// Handles one control message; `Some` ends the loop.
    async fn handle(
        &mut self,
        msg: Control,
        control: &mut UnboundedReceiver<Control>,
        backlog: &mut VecDeque<Control>,
    ) -> Option<Exit> {
        match msg {
            Control::Cancel => Some(Exit::Cancelled),
            Control::TriggerCheckpoint { id } => {
                // The same checkpoint again (a duplicate delivery): answered already, ignored.
                // Declining it would abort a checkpoint this subtask acknowledged.
                if self.last_triggered == Some(id) {
                    tracing::debug!(job = %self.ctx.job_id, subtask = self.ctx.subtask, checkpoint = id, "checkpoint triggered again; ignored");
                    return None;
                }
                if let Some(last) = self.last_triggered.filter(|last| id < *last) {
                    self.send(SubtaskEvent::CheckpointDeclined {
                        id,
                        reason: format!("checkpoint {id} is not newer than checkpoint {last}, triggered before"),
                    });
                    return None;
                }
                self.last_triggered = Some(id);
                match cancellable(self.checkpoint(id), control, backlog).await {
                    None => Some(Exit::Cancelled),
                    Some(Ok(snapshot)) => {
                        if snapshot.end_of_input {
                            self.end_acked.get_or_insert(id);
                        }
                        self.metrics.last_acked_checkpoint.fetch_max(id, std::sync::atomic::Ordering::Relaxed);
                        self.send(SubtaskEvent::CheckpointAck { id, snapshot });
                        None
                    }
                    Some(Err(reason)) => {
                        tracing::warn!(job = %self.ctx.job_id, subtask = self.ctx.subtask, checkpoint = id, "declined: {reason}");
                        self.send(SubtaskEvent::CheckpointDeclined {
                            id,
                            reason: format!("checkpoint {id} of subtask {}: {reason}", self.ctx.subtask),
                        });
                        None
                    }
                }
            }
            Control::CheckpointComplete { id } => {
                // Not cancellable: a commit cut short on `file://` would leave a torn part
                // visible. A cancel takes effect once the commit is done.
                if let Err(reason) = self.sink.commit_upto(id).await {
                    return Some(Exit::Failed(reason));
                }
                self.metrics.last_committed_checkpoint.fetch_max(id, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(
                    target: "keel::events", event = "checkpoint_committed", job = %self.ctx.job_id,
                    subtask = self.ctx.subtask, attempt = self.ctx.attempt, checkpoint = id,
                    "sink parts up to this checkpoint committed"
                );
                if let Some(state) = &mut self.state {
                    state.completed(id);
                }
                if self.end_acked.is_some_and(|first| id >= first) {
                    return Some(Exit::Finished);
                }
                None
            }
            Control::CheckpointAborted { id } => {
                if let Some(state) = &mut self.state {
                    if cancellable(state.aborted(&self.ctx.checkpoints, id), control, backlog).await.is_none() {
                        return Some(Exit::Cancelled);
                    }
                }
                None
            }
        }
    }

    async fn checkpoint(&mut self, id: u64) -> Result<SubtaskSnapshot, String> {
        let state_manifest = match &mut self.state {
            Some(state) => state.checkpoint(&self.ctx.checkpoints, &self.owner, id).await?,
            None => String::new(),
        };
        if let Err(e) = self.sink.pre_commit(id).await {
            if let Some(state) = &mut self.state {
                state.aborted(&self.ctx.checkpoints, id).await;
            }
            return Err(e);
        }
        Ok(SubtaskSnapshot {
            subtask: self.ctx.subtask,
            source_offset: self.source.position(),
            state_manifest,
            pending: self.sink.pending(),
            records_in: self.records_in,
            records_out: self.records_out,
            end_of_input: self.input_done,
        })
    }
}

/// A per-subtask rate limit: at most `rate` records per second on average since start.
struct Throttle {
    rate: u64,
    start: Instant,
    emitted: u64,
}

impl Throttle {
    fn new(rate: u64) -> Throttle {
        Throttle { rate: rate.max(1), start: Instant::now(), emitted: 0 }
    }

    /// How many records may go now (at most `max`). After a long pause (a slow checkpoint)
    /// the schedule restarts instead of bursting to catch up more than one second.
    fn budget(&mut self, max: u64) -> u64 {
        let elapsed = self.start.elapsed().as_secs_f64();
        let allowed = (elapsed * self.rate as f64) as u64;
        if allowed > self.emitted + self.rate {
            self.start = Instant::now();
            self.emitted = 0;
            return max.min(self.rate);
        }
        allowed.saturating_sub(self.emitted).min(max)
    }

    /// How long until the next record may go.
    fn wait(&self) -> Duration {
        let due = Duration::from_secs_f64((self.emitted + 1) as f64 / self.rate as f64);
        due.saturating_sub(self.start.elapsed()).max(Duration::from_millis(1))
    }
}
