//! Read-only probes of a running cluster over REST, shared by `keel-demo` and `keel-bench`:
//! who leads (and does everyone agree), are the workers registered, and a bounded poll.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{http_get_json, KeelProcess};

/// `GET /ha/leader` of one dispatcher; `None` when it does not answer 200 within 300 ms.
pub fn ha_leader(p: &KeelProcess) -> Option<Value> {
    let (code, v) = http_get_json(&p.rest_addr()?, "/ha/leader", Duration::from_millis(300)).ok()?;
    (code == 200).then_some(v)
}

/// (index, id, epoch) of the single acting leader among `among`, if exactly one acts and all
/// answering dispatchers agree on its id and epoch.
pub fn agreed_leader(ds: &[KeelProcess], among: &[usize]) -> Option<(usize, String, i64)> {
    let views: Vec<(usize, Value)> = among.iter().filter_map(|&i| ha_leader(&ds[i]).map(|v| (i, v))).collect();
    let acting: Vec<&(usize, Value)> = views.iter().filter(|(_, v)| v["is_leader"] == true).collect();
    if acting.len() != 1 {
        return None;
    }
    let (i, v) = acting[0];
    let id = ds[*i].id();
    let epoch = v["own_epoch"].as_i64()?;
    views
        .iter()
        .all(|(_, v)| v["leader_id"] == id.as_str() && v["epoch"].as_i64() == Some(epoch))
        .then_some((*i, id, epoch))
}

/// Whether `leader` reports exactly `n` registered workers (`GET /overview`).
pub fn workers_registered(leader: &KeelProcess, n: usize) -> bool {
    let Some(addr) = leader.rest_addr() else { return false };
    matches!(http_get_json(&addr, "/overview", Duration::from_millis(300)), Ok((200, v)) if v["taskmanagers"] == n as u64)
}

/// Calls `f` every 10 ms until it returns `Some`, for at most `timeout`.
///
/// # Errors
///
/// `"gave up after {timeout:?} waiting for {what}"`.
pub fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T, String> {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return Ok(t);
        }
        if start.elapsed() > timeout {
            return Err(format!("gave up after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
