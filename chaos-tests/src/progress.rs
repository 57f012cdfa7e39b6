//! Progress of a job's tasks from the workers' own counters (`keel_task_records_in_total` on
//! their `/metrics`), sampled every ~10 ms: the processing gap around a fault (the longest
//! interval in which no subtask processed a record) and the records read twice after a
//! restart. Used by `keel-bench failover` and `keel drill`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http_get_json;

/// One sample of every running subtask's `keel_task_records_in_total`, keyed by
/// (job, subtask, attempt).
pub type Counters = HashMap<(String, u32, u64), f64>;

/// Parses the task record counters out of a Prometheus text exposition.
pub fn parse_counters(text: &str, job: &str, into: &mut Counters) {
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("keel_task_records_in_total{") else { continue };
        let Some((labels, value)) = rest.split_once("} ") else { continue };
        let mut id = None;
        let mut subtask = None;
        let mut attempt = None;
        for kv in labels.split(',') {
            let Some((k, v)) = kv.split_once('=') else { continue };
            let v = v.trim_matches('"');
            match k {
                "job_id" => id = Some(v),
                "subtask" => subtask = v.parse().ok(),
                "attempt" => attempt = v.parse().ok(),
                _ => {}
            }
        }
        if let (Some(j), Some(s), Some(a), Ok(n)) = (id, subtask, attempt, value.trim().parse::<f64>()) {
            if j == job {
                into.insert((j.to_string(), s, a), n);
            }
        }
    }
}

/// A progress sample: when, and the highest attempt that processed a record since the
/// previous sample (`None`: nothing was processed in between).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub at: Instant,
    pub attempt: Option<u64>,
}

/// Turns successive counter samples into progress samples: a subtask progressed when its
/// counter for the same attempt grew. A series seen for the first time does not count (its
/// first value may be a restored count).
pub fn progress(prev: &Counters, now: &Counters, at: Instant) -> Progress {
    let attempt = now.iter().filter(|(k, v)| prev.get(*k).is_some_and(|p| *v > p)).map(|((_, _, a), _)| *a).max();
    Progress { at, attempt }
}

/// Per (attempt, subtask), the records it had read in one sample.
pub type Sums = Vec<((u64, u32), f64)>;

pub fn sums(now: &Counters) -> Sums {
    let mut v: Sums = now.iter().map(|((_, i, a), n)| ((*a, *i), *n)).collect();
    v.sort_by_key(|x| x.0);
    v
}

/// Records read twice because of a restart, summed over subtasks: what subtask `i` of attempt
/// `before` had read at most, minus what subtask `i` of attempt `after` started from (its
/// restored count: its first non-zero sample, which may include the records of its first
/// ~10 ms, so this errs low by those). 0 when the same attempt ran on (adopted); `None` when a
/// subtask of either attempt was never seen.
pub fn replayed(samples: &[Sums], before: u64, after: u64) -> Option<u64> {
    if before == after {
        return Some(0);
    }
    let subtasks: std::collections::BTreeSet<u32> =
        samples.iter().flatten().filter(|((a, _), _)| *a == after).map(|((_, i), _)| *i).collect();
    if subtasks.is_empty() {
        return None;
    }
    let mut total = 0.0;
    for i in subtasks {
        let get = |s: &Sums, a: u64| s.iter().find(|(k, _)| *k == (a, i)).map(|(_, v)| *v);
        let old = samples
            .iter()
            .filter_map(|s| get(s, before))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?;
        // A new task publishes its (restored) counter with its first batch: before that it reads 0.
        let new = samples.iter().filter_map(|s| get(s, after)).find(|v| *v > 0.0)?;
        total += (old - new).max(0.0);
    }
    Some(total as u64)
}

/// The longest interval between two consecutive progress samples within `[from, to]`
/// (the ends of the window count as progress only if a sample there progressed).
pub fn longest_gap(samples: &[Progress], from: Instant, to: Instant) -> Option<Duration> {
    let moving: Vec<Instant> =
        samples.iter().filter(|s| s.at >= from && s.at <= to && s.attempt.is_some()).map(|s| s.at).collect();
    moving.windows(2).map(|w| w[1] - w[0]).max()
}

/// Polls every worker's `/metrics` about every 10 ms on its own thread until stopped.
pub struct Sampler {
    samples: Arc<Mutex<Vec<Progress>>>,
    sums: Arc<Mutex<Vec<Sums>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    pub fn start(metrics: Vec<String>, job: String) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sums_all = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, su) = (samples.clone(), stop.clone(), sums_all.clone());
        let thread = std::thread::spawn(move || {
            let mut prev = Counters::new();
            while !st.load(Ordering::Relaxed) {
                let mut now = Counters::new();
                for m in &metrics {
                    if let Ok((200, Value::String(text))) = http_get_json(m, "/metrics", Duration::from_millis(500)) {
                        parse_counters(&text, &job, &mut now);
                    }
                }
                let p = progress(&prev, &now, Instant::now());
                s.lock().expect("samples").push(p);
                su.lock().expect("sums").push(sums(&now));
                prev = now;
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Sampler { samples, sums: sums_all, stop, thread: Some(thread) }
    }

    pub fn snapshot(&self) -> Vec<Progress> {
        self.samples.lock().expect("samples").clone()
    }

    pub fn sums(&self) -> Vec<Sums> {
        self.sums.lock().expect("sums").clone()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_parsed_for_the_job_only() {
        let text = "# HELP x\nkeel_task_records_in_total{job_id=\"j1\",subtask=\"0\",attempt=\"3\"} 120\n\
                    keel_task_records_in_total{job_id=\"j2\",subtask=\"0\",attempt=\"1\"} 7\n\
                    keel_task_records_out_total{job_id=\"j1\",subtask=\"0\",attempt=\"3\"} 99\n";
        let mut c = Counters::new();
        parse_counters(text, "j1", &mut c);
        assert_eq!(c.len(), 1);
        assert_eq!(c[&("j1".to_string(), 0, 3)], 120.0);
    }

    #[test]
    fn progress_needs_growth_of_the_same_attempt_and_the_gap_is_the_longest_pause() {
        let t = Instant::now();
        let key = |a| ("j".to_string(), 0u32, a);
        let c = |pairs: &[(u64, f64)]| pairs.iter().map(|&(a, v)| (key(a), v)).collect::<Counters>();
        // Grew: progress at attempt 1. Unchanged: none. A new attempt's first value: none.
        assert_eq!(progress(&c(&[(1, 5.0)]), &c(&[(1, 9.0)]), t).attempt, Some(1));
        assert_eq!(progress(&c(&[(1, 9.0)]), &c(&[(1, 9.0)]), t).attempt, None);
        assert_eq!(progress(&c(&[(1, 9.0)]), &c(&[(2, 4.0)]), t).attempt, None);
        assert_eq!(progress(&c(&[(2, 4.0)]), &c(&[(2, 6.0)]), t).attempt, Some(2));
        let at = |ms: u64, moving: bool| Progress { at: t + Duration::from_millis(ms), attempt: moving.then_some(1) };
        let samples = [at(0, true), at(10, true), at(20, false), at(300, false), at(310, true), at(320, true)];
        assert_eq!(longest_gap(&samples, t, t + Duration::from_secs(1)), Some(Duration::from_millis(300)));
        assert_eq!(
            longest_gap(&samples, t + Duration::from_millis(305), t + Duration::from_secs(1)),
            Some(Duration::from_millis(10))
        );
    }

    #[test]
    fn replayed_records_are_what_the_old_attempt_read_beyond_the_new_ones_start() {
        // Two subtasks; the new attempt's subtask 1 shows up two samples after subtask 0 (a
        // sum over the attempt would count subtask 1's whole old count as replayed).
        let s = vec![
            vec![((3, 0), 100.0), ((3, 1), 90.0)],
            vec![((3, 0), 180.0), ((3, 1), 170.0)],
            vec![((3, 0), 180.0), ((3, 1), 170.0), ((4, 0), 0.0)],
            vec![((4, 0), 150.0)],
            vec![((4, 0), 170.0), ((4, 1), 160.0)],
        ];
        assert_eq!(replayed(&s, 3, 4), Some(30 + 10));
        assert_eq!(replayed(&s, 3, 3), Some(0), "the same attempt ran on");
        assert_eq!(replayed(&s, 3, 9), None);
    }
}
