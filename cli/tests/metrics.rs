//! Issue 9, item 8: `GET /metrics` on every dispatcher and worker, scraped by a real
//! Prometheus (Debian's `prometheus`, started here on a free loopback port with its own
//! storage directory) from a live cluster (real ZooKeeper ensemble, two dispatchers, a worker,
//! a running job); the series are read back through Prometheus's HTTP query API.
//!
//! Shown to fail with the metrics not registered: `KEEL_TEST_DISABLE_DISPATCHER_METRICS=1` (no
//! dispatcher series) or `KEEL_TEST_DISABLE_WORKER_METRICS=1` (no worker series), inherited by
//! the processes this test starts (both listed in bin/mutation-check).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chaos_tests::{free_port, http_get_json, wait_until};
use common::{report, Cluster};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// A Prometheus server of this test's own; killed (and its storage removed) on drop.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (job name → `host:port` list) every 500 ms.
    fn start(targets: &[(&str, Vec<String>)]) -> Prometheus {
        let bin = which("prometheus").expect(
            "the `prometheus` binary (Debian's prometheus package; bin/setup installs it) is needed by this test",
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg = String::from("global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\nscrape_configs:\n");
        for (job, addrs) in targets {
            let list = addrs.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", ");
            cfg.push_str(&format!("  - job_name: {job}\n    static_configs:\n      - targets: [{list}]\n"));
        }
        let cfg_path = dir.path().join("prometheus.yml");
        std::fs::write(&cfg_path, &cfg).expect("write prometheus.yml");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("prometheus log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, addr, _dir: dir };
        wait_until(T, Duration::from_millis(100), "Prometheus to answer /-/ready", || {
            http_get_json(&p.addr, "/-/ready", Duration::from_secs(2)).ok().filter(|(code, _)| *code == 200)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", p.log()));
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/query?query=...`: the result vector (`[{metric, value: [t, "v"]}]`).
    fn query(&self, promql: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        match http_get_json(&self.addr, &path, Duration::from_secs(5)) {
            Ok((200, v)) if v["status"] == "success" => v["data"]["result"].as_array().cloned().unwrap_or_default(),
            _ => vec![],
        }
    }

    /// Waits until `promql` returns at least one series and every one passes `ok`.
    fn wait_for(&self, promql: &str, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        wait_until(T, Duration::from_millis(250), what, || {
            let r = self.query(promql);
            (!r.is_empty() && ok(&r)).then_some(r)
        })
        .unwrap_or_else(|e| panic!("{e}\nlast answer to {promql}: {:?}", self.query(promql)))
    }

    /// The targets Prometheus scrapes, with their health.
    fn targets(&self) -> Value {
        http_get_json(&self.addr, "/api/v1/targets", Duration::from_secs(5)).map(|(_, v)| v).unwrap_or(Value::Null)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join(name)).find(|p| p.is_file())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn value(series: &Value) -> f64 {
    series["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

fn counting_job(sink: &std::path::Path) -> String {
    format!(
        "name: metered\nparallelism: 1\ncheckpoint-interval: 300 ms\nrestart-strategy: {{ type: fixed-delay, attempts: 5, delay: 200 ms }}\npipeline:\n  - source: {{ type: sequence, count: 10000000, keys: 4, rate: 500 }}\n  - count: {{}}\n  - sink: {{ type: file, path: file://{} }}\n",
        sink.display()
    )
}

#[test]
fn prometheus_scrapes_dispatchers_and_workers_and_reads_the_series_back() {
    let mut c = Cluster::start("it-metrics", 2, 1, &[("metrics.reporter.prom.port", "0")]);
    let leader = c.wait_leader(&[0, 1], T);
    c.wait_workers_follow(&leader, T);
    let id = c.submit(&counting_job(&c.dir.path().join("out")));
    c.wait_job_state(&id, "RUNNING", T);
    c.wait_checkpoints(&id, 1, T);

    let dispatchers: Vec<String> = c.dispatchers.iter().map(|d| d.rest_addr().expect("rest address")).collect();
    let workers: Vec<String> = c
        .workers
        .iter()
        .map(|w| w.ready()["metrics"].as_str().expect("the worker's ready line names its metrics address").to_string())
        .collect();
    // The raw endpoints answer in the text format first (a clear failure before Prometheus).
    let (code, text) = http_get_json(&dispatchers[leader.index], "/metrics", Duration::from_secs(5)).unwrap();
    assert_eq!(code, 200, "{text}");
    let (code, text) = http_get_json(&workers[0], "/metrics", Duration::from_secs(5)).unwrap();
    assert_eq!(code, 200, "{text}");

    let started = Instant::now();
    let prom = Prometheus::start(&[("keel-dispatcher", dispatchers.clone()), ("keel-worker", workers.clone())]);

    // Exactly one dispatcher reports keel_leader == 1: the one the cluster agrees leads.
    let leaders = prom.wait_for("keel_leader", "keel_leader from both dispatchers", |r| r.len() == 2);
    let leading: Vec<&Value> = leaders.iter().filter(|s| value(s) == 1.0).collect();
    assert_eq!(leading.len(), 1, "exactly one keel_leader == 1: {leaders:?}");
    assert_eq!(leading[0]["metric"]["instance"], dispatchers[leader.index].as_str(), "{leaders:?}");
    report("Prometheus start to the first keel_leader series", started);
    // Both know the leader's epoch; its ZooKeeper session is connected.
    let epochs = prom.wait_for("keel_leader_epoch", "keel_leader_epoch from both dispatchers", |r| r.len() == 2);
    for s in &epochs {
        assert_eq!(value(s), leader.epoch as f64, "{epochs:?}");
    }
    prom.wait_for("keel_zookeeper_session_state{state=\"connected\"} == 1", "connected sessions", |r| r.len() == 2);
    // Workers and slots as the leader holds them; jobs by state.
    let instance = &dispatchers[leader.index];
    prom.wait_for(&format!("keel_registered_workers{{instance=\"{instance}\"}}"), "1 registered worker", |r| {
        value(&r[0]) == 1.0
    });
    prom.wait_for(&format!("keel_slots_total{{instance=\"{instance}\"}}"), "2 slots", |r| value(&r[0]) == 2.0);
    prom.wait_for(&format!("keel_jobs{{instance=\"{instance}\",state=\"RUNNING\"}}"), "1 running job", |r| {
        value(&r[0]) == 1.0
    });
    // Checkpoints: counted, timed (histogram), and the job's own count and age.
    prom.wait_for("keel_checkpoints_completed_total > 0", "completed checkpoints", |_| true);
    prom.wait_for("keel_checkpoint_duration_seconds_count > 0", "checkpoint durations observed", |_| true);
    prom.wait_for(
        &format!("keel_job_checkpoints_completed_total{{job_id=\"{id}\"}} > 0"),
        "the job's checkpoints",
        |_| true,
    );
    prom.wait_for(
        &format!("keel_job_last_checkpoint_age_seconds{{job_id=\"{id}\"}}"),
        "the job's checkpoint age",
        |_| true,
    );
    prom.wait_for("keel_checkpoint_size_bytes > 0", "the size of the last checkpoint", |_| true);
    // The worker: the job's records flow, and it is busy some of the time.
    prom.wait_for(
        &format!("keel_task_records_out_total{{job_id=\"{id}\"}} > 0"),
        "records out of the job's task",
        |_| true,
    );
    prom.wait_for(&format!("keel_task_records_in_total{{job_id=\"{id}\"}} > 0"), "records into the job's task", |_| {
        true
    });
    prom.wait_for(
        &format!("keel_task_busy_seconds_total{{job_id=\"{id}\"}} > 0"),
        "busy time of the job's task",
        |_| true,
    );
    prom.wait_for("keel_worker_registered == 1", "the worker registered", |_| true);

    // A stale command is refused by reason, and the count reaches Prometheus.
    let refused = c.send_command(0, leader.epoch - 1, "a-stale-leader").expect_err("a stale epoch is refused");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    prom.wait_for(
        "keel_worker_commands_refused_total{reason=\"stale_epoch\"} == 1",
        "one refusal for a stale epoch",
        |_| true,
    );

    // A leader change: the new leader reports 1, the count of observed changes grows.
    let old = leader.index;
    c.dispatchers[old].kill9();
    let new = c.wait_leader(&[1 - old], T);
    let survivor = &dispatchers[new.index];
    prom.wait_for(&format!("keel_leader{{instance=\"{survivor}\"}} == 1"), "the survivor leads", |_| true);
    prom.wait_for(
        &format!("keel_leadership_changes_total{{instance=\"{survivor}\"}} >= 2"),
        "the survivor counted the change",
        |_| true,
    );
    prom.wait_for(&format!("keel_leader_epoch{{instance=\"{survivor}\"}}"), "the new epoch", |r| {
        value(&r[0]) == new.epoch as f64 && new.epoch > leader.epoch
    });
    let targets = prom.targets();
    eprintln!("prometheus targets: {}", targets["data"]["activeTargets"].as_array().map_or(0, |a| a.len()));
}

#[test]
fn metrics_follow_the_read_token_rule() {
    let c = Cluster::start(
        "it-metrics-auth",
        1,
        1,
        &[("metrics.reporter.prom.port", "0"), ("rest.auth.token", "s3cret-token"), ("rest.auth.read", "true")],
    );
    let d = c.dispatchers[0].rest_addr().unwrap();
    let w = c.workers[0].ready()["metrics"].as_str().unwrap().to_string();
    for (addr, path) in [(&d, "/metrics"), (&d, "/"), (&w, "/metrics")] {
        let (code, body) = http_get_json(addr, path, Duration::from_secs(5)).unwrap();
        assert_eq!(code, 401, "GET {path} on {addr} without the token: {body}");
    }
    for (addr, path) in [(&d, "/metrics"), (&w, "/metrics"), (&d, "/")] {
        let (code, body) = get_with_token(addr, path, "s3cret-token");
        assert_eq!(code, 200, "GET {path} on {addr} with the token: {body}");
    }
}

/// `GET` with `Authorization: Bearer <token>` and `Connection: close`: status and body.
fn get_with_token(addr: &str, path: &str, token: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    let text = String::from_utf8_lossy(&out).to_string();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}
