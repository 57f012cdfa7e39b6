//! Slot allocation: which job's subtask runs on which worker slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::resource_manager::ResourceManager;

/// Tracks slot use per worker; the resource manager knows the workers and their slot counts.
#[derive(Clone)]
pub struct SlotPool {
    rm: ResourceManager,
    /// job id → worker id per subtask.
    used: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

impl SlotPool {
    pub fn new(rm: ResourceManager) -> Self {
        Self { rm, used: Arc::default() }
    }

    /// Allocates `n` slots for `job_id` (releasing what it held), spreading subtasks over the
    /// workers with the most free slots. `None` if there are not enough free slots now.
    pub fn allocate(&self, job_id: &str, n: u32) -> Option<Vec<String>> {
        let mut used = self.used.lock().expect("slot lock");
        used.remove(job_id);
        let workers = self.rm.worker_slots();
        let mut free: Vec<(String, u32)> = workers
            .iter()
            .map(|w| {
                let taken = used.values().flatten().filter(|id| **id == w.id).count() as u32;
                (w.id.clone(), w.slots.saturating_sub(taken))
            })
            .collect();
        let total: u32 = free.iter().map(|(_, f)| f).sum();
        if total < n {
            return None;
        }
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            free.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let slot = free.first_mut().expect("enough free slots");
            slot.1 -= 1;
            out.push(slot.0.clone());
        }
        used.insert(job_id.to_string(), out.clone());
        Some(out)
    }

    /// Records that `job_id`'s subtasks run on `workers` (one entry per subtask) without
    /// choosing: an adopted job keeps the slots its tasks already run in.
    pub fn assign(&self, job_id: &str, workers: Vec<String>) {
        self.used.lock().expect("slot lock").insert(job_id.to_string(), workers);
    }

    pub fn release(&self, job_id: &str) {
        self.used.lock().expect("slot lock").remove(job_id);
    }

    pub fn clear(&self) {
        self.used.lock().expect("slot lock").clear();
    }

    /// Free slots per registered worker, for the REST API.
    pub fn free_slots(&self, worker_id: &str, total: u32) -> u32 {
        let used = self.used.lock().expect("slot lock");
        total.saturating_sub(used.values().flatten().filter(|id| *id == worker_id).count() as u32)
    }
}
