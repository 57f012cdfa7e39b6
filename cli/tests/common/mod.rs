//! Shared scaffolding for the process-level HA tests: a real ZooKeeper ensemble, real `keel`
//! dispatcher and worker processes, and read-only probes (REST, gRPC status, `keel status`).

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use chaos_tests::{config_yaml, http_get_json, wait_until, KeelProcess, Role, ZkEnsemble};
use keel_proto::security::InternalSecurity;
use keel_proto::v1::worker_client::WorkerClient;
use keel_proto::v1::{leader_command, HeartbeatRequest, LeaderCommand, StatusRequest, WorkerStatus};
use serde_json::Value;

pub const KEEL: &str = env!("CARGO_BIN_EXE_keel");

pub struct Cluster {
    pub zk: ZkEnsemble,
    pub dir: tempfile::TempDir,
    pub cfg: String,
    pub cfg_path: std::path::PathBuf,
    pub dispatchers: Vec<KeelProcess>,
    pub workers: Vec<KeelProcess>,
}

/// The acting leader as the dispatchers report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub index: usize,
    pub id: String,
    pub epoch: i64,
}

impl Cluster {
    pub fn start(cluster_id: &str, dispatchers: usize, workers: usize, extra: &[(&str, &str)]) -> Cluster {
        let zk = ZkEnsemble::start(3).expect("3-node ZooKeeper ensemble");
        let dir = tempfile::tempdir().expect("temp dir");
        // Job graphs, results and checkpoints go to a file:// storage directory in the test's
        // temp dir (an `extra` entry for the same key wins).
        let storage = format!("file://{}/storage", dir.path().display());
        let tmp = format!("{}/tmp", dir.path().display());
        let mut all: Vec<(&str, &str)> = vec![("high-availability.storageDir", &storage), ("io.tmp.dirs", &tmp)];
        all.extend_from_slice(extra);
        let cfg = config_yaml(&zk.connect_string(), cluster_id, &all);
        let cfg_path = dir.path().join("cluster.yaml");
        std::fs::write(&cfg_path, &cfg).expect("write config");
        let mut c = Cluster { zk, dir, cfg, cfg_path, dispatchers: vec![], workers: vec![] };
        for i in 0..dispatchers {
            c.add_dispatcher(&format!("d{i}"));
        }
        for i in 0..workers {
            c.add_worker(&format!("w{i}"));
        }
        c
    }

    pub fn add_dispatcher(&mut self, name: &str) {
        let p = KeelProcess::spawn(
            Path::new(KEEL),
            Role::Dispatcher,
            &self.cfg,
            &["--id".to_string(), name.to_string()],
            self.dir.path(),
            name,
        )
        .expect("dispatcher starts");
        self.dispatchers.push(p);
    }

    /// Like [`Cluster::add_dispatcher`], with its own configuration text (for example one that
    /// reaches ZooKeeper through a [`chaos_tests::ProxyMesh`]).
    pub fn add_dispatcher_cfg(&mut self, name: &str, cfg: &str) {
        let p = KeelProcess::spawn(
            Path::new(KEEL),
            Role::Dispatcher,
            cfg,
            &["--id".to_string(), name.to_string()],
            self.dir.path(),
            name,
        )
        .expect("dispatcher starts");
        self.dispatchers.push(p);
    }

    /// Like [`Cluster::add_dispatcher`], with extra environment variables (test-only
    /// switches such as `KEEL_TEST_FENCE_BARRIER`).
    pub fn add_dispatcher_env(&mut self, name: &str, env: &[(&str, &str)]) {
        let mut spec = chaos_tests::KeelSpec::new(KEEL, Role::Dispatcher, &self.cfg, self.dir.path(), name)
            .with_args(["--id".to_string(), name.to_string()]);
        for (k, v) in env {
            spec = spec.with_env(*k, *v);
        }
        self.dispatchers.push(spec.spawn().expect("dispatcher starts"));
    }

    pub fn add_worker(&mut self, name: &str) {
        self.add_worker_env(name, &[]);
    }

    /// Like [`Cluster::add_worker`], with extra environment variables (`RUST_LOG`, ...).
    pub fn add_worker_env(&mut self, name: &str, env: &[(&str, &str)]) {
        let args = [
            "-D".to_string(),
            format!("taskmanager.resource-id={name}"),
            "-D".into(),
            "taskmanager.numberOfTaskSlots=2".into(),
        ];
        let mut spec = chaos_tests::KeelSpec::new(KEEL, Role::Worker, &self.cfg, self.dir.path(), name).with_args(args);
        for (k, v) in env {
            spec = spec.with_env(*k, *v);
        }
        self.workers.push(spec.spawn().expect("worker starts"));
    }

    /// `GET /ha/leader` of dispatcher `i`; `None` if it does not answer (dead or paused).
    pub fn ha_leader(&self, i: usize) -> Option<Value> {
        let addr = self.dispatchers[i].rest_addr()?;
        match http_get_json(&addr, "/ha/leader", Duration::from_millis(500)) {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    }

    /// Every answering dispatcher that says it is the acting leader, with its epoch.
    pub fn acting(&self, among: &[usize]) -> Vec<(usize, i64)> {
        among
            .iter()
            .filter_map(|&i| {
                let v = self.ha_leader(i)?;
                (v["is_leader"] == true).then(|| (i, v["own_epoch"].as_i64().unwrap_or(-1)))
            })
            .collect()
    }

    /// Waits until exactly one of `among` acts as leader and every answering one of `among`
    /// names it (id and epoch) in `/ha/leader`.
    pub fn wait_leader(&self, among: &[usize], timeout: Duration) -> Leader {
        wait_until(timeout, Duration::from_millis(50), "exactly one acting leader that everyone agrees on", || {
            let acting = self.acting(among);
            if acting.len() != 1 {
                return None;
            }
            let (index, epoch) = acting[0];
            let id = self.dispatchers[index].id();
            for &i in among {
                let v = self.ha_leader(i)?;
                if v["leader_id"] != id.as_str() || v["epoch"].as_i64() != Some(epoch) {
                    return None;
                }
            }
            Some(Leader { index, id, epoch })
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// Worker ids the dispatcher `i` has registered (`GET /taskmanagers`), if it answers 200.
    pub fn registered_workers(&self, i: usize) -> Option<Vec<String>> {
        let addr = self.dispatchers[i].rest_addr()?;
        let (code, v) = http_get_json(&addr, "/taskmanagers", Duration::from_millis(500)).ok()?;
        if code != 200 {
            return None;
        }
        let mut ids: Vec<String> =
            v["taskmanagers"].as_array()?.iter().filter_map(|w| w["id"].as_str().map(str::to_string)).collect();
        ids.sort();
        Some(ids)
    }

    /// `high-availability.storageDir` on disk.
    pub fn storage_path(&self) -> std::path::PathBuf {
        self.dir.path().join("storage")
    }

    /// The default checkpoints directory (`<storageDir>/checkpoints`) on disk.
    pub fn checkpoints_path(&self) -> std::path::PathBuf {
        self.storage_path().join("checkpoints")
    }

    pub fn worker_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.workers.iter().map(|w| w.id()).collect();
        ids.sort();
        ids
    }

    /// Waits until the leader `leader` lists every worker and every worker says it is
    /// registered with that leader at that epoch.
    pub fn wait_workers_follow(&self, leader: &Leader, timeout: Duration) {
        let want = self.worker_ids();
        wait_until(timeout, Duration::from_millis(50), "every worker registered with the new leader", || {
            if self.registered_workers(leader.index)? != want {
                return None;
            }
            for w in 0..self.workers.len() {
                let s = self.worker_status(w).ok()?;
                if s.registered_epoch != leader.epoch || s.registered_leader_id != leader.id {
                    return None;
                }
            }
            Some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    /// How this cluster's processes secure internal RPC (from its configuration).
    pub fn internal_security(&self) -> InternalSecurity {
        let loaded = keel_conf::from_str(&self.cfg, "cluster.yaml", &[]).expect("the cluster's config loads");
        InternalSecurity::from_config(&loaded.config).expect("the cluster's internal security settings")
    }

    /// `Status` of worker `w`, asked as a cluster member (with the cluster's internal security).
    pub fn worker_status(&self, w: usize) -> Result<WorkerStatus, String> {
        self.worker_status_with(w, &self.internal_security())
    }

    /// `Status` of worker `w`, asked with `security` (a stranger's, for example).
    pub fn worker_status_with(&self, w: usize, security: &InternalSecurity) -> Result<WorkerStatus, String> {
        let endpoint = security.endpoint(&self.workers[w].rpc_addr()).map_err(|e| e.to_string())?;
        let security = security.clone();
        block_on(async move {
            let channel = endpoint.connect().await.map_err(|e| format!("connect: {e:?}"))?;
            let mut client = WorkerClient::new(security.intercept(channel));
            client.status(StatusRequest {}).await.map(|r| r.into_inner()).map_err(|e| e.to_string())
        })
    }

    /// Sends a heartbeat command stamped with `epoch` to worker `w`, as a leader would (with
    /// the cluster's internal security).
    pub fn send_command(&self, w: usize, epoch: i64, from: &str) -> Result<(), tonic::Status> {
        self.send_command_with(w, epoch, from, &self.internal_security())
    }

    /// Like [`Cluster::send_command`], secured with `security` (a stranger's, for example).
    pub fn send_command_with(
        &self,
        w: usize,
        epoch: i64,
        from: &str,
        security: &InternalSecurity,
    ) -> Result<(), tonic::Status> {
        let endpoint = security.endpoint(&self.workers[w].rpc_addr()).map_err(tonic::Status::invalid_argument)?;
        let security = security.clone();
        let from = from.to_string();
        block_on(async move {
            let channel =
                endpoint.connect().await.map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
            let mut client = WorkerClient::new(security.intercept(channel));
            client
                .command(LeaderCommand {
                    epoch,
                    leader_id: from,
                    kind: Some(leader_command::Kind::Heartbeat(HeartbeatRequest {})),
                })
                .await
                .map(|_| ())
        })
    }

    /// Runs the `keel` CLI against this cluster's config.
    pub fn keel(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(KEEL).arg("--config").arg(&self.cfg_path).args(args).output().expect("run keel")
    }

    pub fn status_json(&self) -> Value {
        let out = self.keel(&["status", "--json"]);
        assert!(out.status.success(), "keel status failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("keel status --json prints JSON")
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        for p in self.dispatchers.iter().chain(self.workers.iter()) {
            s.push_str(&format!("---- {} ----\n{}\n", p.name(), p.log_tail(40)));
        }
        s
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

/// Prints a measured duration (informational; tests never assert on wall-clock time).
pub fn report(what: &str, since: Instant) {
    eprintln!("measured: {what}: {} ms", since.elapsed().as_millis());
}

// ---- jobs ----

impl Cluster {
    /// The REST address of the acting leader among the running dispatchers.
    pub fn leader_rest(&self) -> Option<String> {
        (0..self.dispatchers.len()).find_map(|i| {
            let v = self.ha_leader(i)?;
            (v["is_leader"] == true).then(|| self.dispatchers[i].rest_addr()).flatten()
        })
    }

    /// `keel run` with the cluster's config; returns the job id (panics with stderr on failure).
    pub fn submit(&self, spec: &str) -> String {
        let path = self.dir.path().join(format!("job-{}.yaml", uuid_like()));
        std::fs::write(&path, spec).unwrap();
        let out = self.keel(&["run", path.to_str().unwrap()]);
        assert!(out.status.success(), "keel run failed: {}\n{}", String::from_utf8_lossy(&out.stderr), self.logs());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `GET /jobs/{id}` on the leader.
    pub fn job(&self, id: &str) -> Option<Value> {
        let rest = self.leader_rest()?;
        match http_get_json(&rest, &format!("/jobs/{id}"), Duration::from_secs(2)) {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    }

    pub fn job_checkpoints(&self, id: &str) -> Option<Value> {
        let rest = self.leader_rest()?;
        match http_get_json(&rest, &format!("/jobs/{id}/checkpoints"), Duration::from_secs(2)) {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    }

    pub fn wait_job_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        wait_until(timeout, Duration::from_millis(100), &format!("job {id} to be {state}"), || {
            self.job(id).filter(|j| j["state"] == state)
        })
        .unwrap_or_else(|e| panic!("{e}\nlast: {:?}\n{}", self.job(id), self.logs()))
    }

    /// Waits until the job has completed at least `n` checkpoints (as its leader reports).
    pub fn wait_checkpoints(&self, id: &str, n: u64, timeout: Duration) -> Value {
        wait_until(timeout, Duration::from_millis(100), &format!("job {id} to complete {n} checkpoints"), || {
            self.job_checkpoints(id).filter(|c| c["counts"]["completed"].as_u64().unwrap_or(0) >= n)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    pub fn kill_all(&mut self) {
        for p in self.dispatchers.iter_mut().chain(self.workers.iter_mut()) {
            p.kill9();
        }
    }

    pub fn restart_all(&mut self) {
        for p in self.dispatchers.iter_mut().chain(self.workers.iter_mut()) {
            p.restart().expect("restart");
        }
    }
}

pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

#[allow(unused_imports)]
pub use chaos_tests::campaign::{committed_lines, expected_counts};

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    chaos_tests::util::files_under(dir)
}

// ---- ZooKeeper itself, and raw HTTP ----

impl Cluster {
    /// The cluster's ZooKeeper namespace (`<path.root>/<cluster-id>`), as `keel status` reports it.
    pub fn zk_namespace(&self) -> String {
        self.status_json()["namespace"].as_str().expect("keel status names the namespace").to_string()
    }
}

/// A ZooKeeper session of the test's own, chrooted at `namespace`. Use it inside one
/// [`block_on`]: the session lives on the runtime that opened it.
pub async fn zk_connect(quorum: &str, namespace: &str) -> zookeeper_client::Client {
    let client = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(quorum)
        .await
        .unwrap_or_else(|e| panic!("a ZooKeeper session for the test ({quorum}): {e}"));
    client.chroot(namespace.to_string()).unwrap_or_else(|_| panic!("chroot {namespace}"))
}

/// `POST` of a plain-text body (a job spec) with `Connection: close`: the status code and
/// the body. `timeout` bounds every read (the answer may legitimately take long).
pub fn http_post_text(addr: &str, path: &str, body: &str, timeout: Duration) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let what = format!("POST http://{addr}{path}");
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("{what}: connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).and_then(|_| s.set_write_timeout(Some(timeout))).map_err(|e| e.to_string())?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| format!("{what}: write: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| format!("{what}: no complete answer within {timeout:?}: {e}"))?;
    let text = String::from_utf8_lossy(&out).to_string();
    let code =
        text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("{what}: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}

/// A log line without its terminal colour codes (logs written before plain-text logging, or
/// from a terminal, carry them).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// The committed output of a counting job (`count` records over `keys` keys) equals a
/// failure-free run's, record for record.
pub fn assert_exactly_once(sink: &Path, count: u64, keys: u64) {
    let expected = expected_counts(count, keys);
    let got = committed_lines(sink);
    assert!(
        got == expected,
        "committed output differs from a failure-free run: {} lines, expected {}",
        got.len(),
        expected.len()
    );
}
