//! Read-only probes of a running cluster over REST, shared by `keel-demo` and `keel-bench`:
//! who leads (and does everyone agree), are the workers registered, and a bounded poll; and
//! where those tools find the `keel` binary and put their logs.

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

/// The `keel` binary: `explicit` (`--keel`), else `$KEEL_BIN`, else `keel` next to the running
/// executable (both are built into the same target directory).
///
/// # Errors
///
/// When the chosen path does not exist, naming it and how to build it.
pub fn keel_binary(explicit: Option<std::path::PathBuf>) -> Result<std::path::PathBuf, String> {
    let keel = match explicit.or_else(|| std::env::var_os("KEEL_BIN").map(Into::into)) {
        Some(k) => k,
        None => std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("keel"),
    };
    if !keel.exists() {
        return Err(format!(
            "keel binary not found at {}; build it (cargo build -p keel-cli) or pass --keel",
            keel.display()
        ));
    }
    Ok(keel)
}

/// `dir`, or `<parent>/run-<unix seconds>`, made absolute: the processes a tool starts run in
/// other directories and read their configuration files from here (a relative default once
/// broke the README's first command).
///
/// # Errors
///
/// When the current directory cannot be read.
pub fn run_dir(dir: Option<std::path::PathBuf>, parent: &str) -> Result<std::path::PathBuf, String> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let dir = dir.unwrap_or_else(|| std::path::PathBuf::from(format!("{parent}/run-{stamp}")));
    if dir.is_absolute() {
        return Ok(dir);
    }
    Ok(std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?.join(dir))
}

/// Starts the local cluster shape `keel-demo` and `keel-bench` use: dispatchers
/// `dispatcher-1..=3` and workers `worker-1..=2` with configuration `cfg`, logs in `dir`.
///
/// # Errors
///
/// The first process that did not start, by name.
pub fn start_dispatchers_and_workers(
    keel: &std::path::Path,
    cfg: &str,
    dir: &std::path::Path,
) -> Result<(Vec<KeelProcess>, Vec<KeelProcess>), String> {
    use crate::Role;
    let spawn = |role: Role, name: &str, extra: &[String]| {
        KeelProcess::spawn(keel, role, cfg, extra, dir, name).map_err(|e| format!("{name}: {e}"))
    };
    let mut ds = Vec::new();
    for i in 1..=3 {
        ds.push(spawn(Role::Dispatcher, &format!("dispatcher-{i}"), &["--id".into(), format!("dispatcher-{i}")])?);
    }
    let mut ws = Vec::new();
    for i in 1..=2 {
        ws.push(spawn(
            Role::Worker,
            &format!("worker-{i}"),
            &["-D".into(), format!("taskmanager.resource-id=worker-{i}")],
        )?);
    }
    Ok((ds, ws))
}
