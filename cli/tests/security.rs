//! Issue #8, authenticated peers: cluster-internal RPC (worker ↔ dispatcher gRPC) with a
//! shared secret and with mutual TLS. Real 3-node ZooKeeper ensemble, real `keel` processes.
//! In each mode the cluster runs a job to completion, and a stranger's command to a worker
//! (no secret, a wrong secret; no client certificate, a certificate from another CA) is
//! refused before it reaches the worker's epoch gate: the gate and the refusal counter stay
//! as they were. Test certificates are made at test time with the `openssl` command.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{block_on, Cluster};
use keel_proto::security::InternalSecurity;
use keel_proto::v1::dispatcher_client::DispatcherClient;
use keel_proto::v1::worker_client::WorkerClient;
use keel_proto::v1::{leader_command, HeartbeatRequest, LeaderCommand, RegisterWorkerRequest, WorkerStatus};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

const T: Duration = Duration::from_secs(60);
const SECRET: &str = "k33l-internal-s3cret-for-tests";

/// `sequence → count → exactly-once file sink`, finishing on its own.
fn counting_job(name: &str, sink: &Path) -> String {
    format!(
        "name: {name}\nparallelism: 2\ncheckpoint-interval: 300 ms\nrestart-strategy: {{ type: fixed-delay, attempts: 20, delay: 200 ms }}\npipeline:\n  - source: {{ type: sequence, count: 3000, keys: 2, rate: 1500 }}\n  - count: {{}}\n  - sink: {{ type: file, path: file://{} }}\n",
        sink.display()
    )
}

/// Runs the job to FINISHED and checks its exactly-once output: registration, deploys,
/// heartbeats, task reports and checkpoints all went through the secured RPC.
fn run_a_job(c: &Cluster, name: &str) {
    let sink = c.dir.path().join(format!("out-{name}"));
    let id = c.submit(&counting_job(name, &sink));
    let done = c.wait_job_state(&id, "FINISHED", Duration::from_secs(120));
    assert_eq!(done["state"], "FINISHED");
    assert_eq!(common::committed_lines(&sink), common::expected_counts(3000, 2));
}

fn security_with_secret(secret: &str) -> InternalSecurity {
    let mut config = keel_conf::Config::defaults();
    config.internal_secret = Some(secret.to_owned());
    InternalSecurity::from_config(&config).unwrap()
}

fn forged_command() -> LeaderCommand {
    LeaderCommand {
        epoch: i64::MAX,
        leader_id: "stranger".into(),
        kind: Some(leader_command::Kind::Heartbeat(HeartbeatRequest {})),
    }
}

/// What must not change when a stranger is refused: the gate, the refusals, the last refusal.
fn gate_and_counters(s: &WorkerStatus) -> (i64, u64, String) {
    (s.highest_epoch, s.commands_refused, s.last_refusal.clone())
}

#[test]
fn with_a_shared_secret_the_cluster_works_and_strangers_are_refused() {
    let c = Cluster::start("sec-secret", 1, 2, &[("security.internal.secret", SECRET)]);
    let leader = c.wait_leader(&[0], T);
    // Status probes carry the cluster's secret (Cluster::worker_status).
    c.wait_workers_follow(&leader, T);
    run_a_job(&c, "secret");

    let before = c.worker_status(0).expect("status with the cluster's secret");
    assert_eq!(before.highest_epoch, leader.epoch);
    for (who, stranger) in
        [("no secret", InternalSecurity::plaintext()), ("a wrong secret", security_with_secret("guess"))]
    {
        let err = c.send_command_with(0, i64::MAX, "stranger", &stranger).expect_err("a stranger's command is refused");
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{who}: {err:?}");
        assert!(err.message().contains("security.internal.secret"), "{who}: {}", err.message());
        assert!(!err.message().contains(SECRET), "the refusal never shows the secret");
        let status = c.worker_status_with(0, &stranger).expect_err("a stranger cannot read the status either");
        assert!(status.contains("Unauthenticated") || status.contains("cluster secret"), "{who}: {status}");
        // Registering with the leader as a stranger is refused too: the leader lists no intruder.
        let leader_rpc = c.dispatchers[0].rpc_addr();
        let endpoint = stranger.endpoint(&leader_rpc).unwrap();
        let reg = block_on(async {
            let channel = endpoint.connect().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            DispatcherClient::new(stranger.intercept(channel))
                .register_worker(RegisterWorkerRequest {
                    worker_id: "intruder".into(),
                    rpc_address: "127.0.0.1:1".into(),
                    slots: 8,
                    leader_epoch: leader.epoch,
                    running: vec![],
                    metrics_address: String::new(),
                })
                .await
        })
        .expect_err("a stranger's registration is refused");
        assert_eq!(reg.code(), tonic::Code::Unauthenticated, "{who}: {reg:?}");
    }
    let after = c.worker_status(0).expect("status with the cluster's secret");
    assert_eq!(gate_and_counters(&after), gate_and_counters(&before), "the stranger never reached the epoch gate");
    assert_eq!(c.registered_workers(0).expect("taskmanagers"), c.worker_ids(), "no intruder registered");
    // An authenticated peer is still judged by the gate: this is what the stranger would
    // have met without the secret check (a refusal that counts).
    let gate = c.send_command(0, i64::MAX, "member").expect_err("forged epoch");
    assert_eq!(gate.code(), tonic::Code::Unavailable, "{gate:?}");

    // Logged without the secret; `keel config show` masks it.
    let worker_log = c.workers[0].log_tail(5000);
    assert!(worker_log.contains("internal RPC refused"), "the worker logs the refusal:\n{worker_log}");
    let dispatcher_log = c.dispatchers[0].log_tail(5000);
    assert!(dispatcher_log.contains("internal RPC refused"), "the dispatcher logs the refusal");
    for p in c.dispatchers.iter().chain(c.workers.iter()) {
        assert!(!p.log_tail(100_000).contains(SECRET), "{} logged the secret", p.name());
    }
    let show = c.keel(&["config", "show"]);
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(show.contains("security.internal.secret") && show.contains("******") && !show.contains(SECRET), "{show}");
}

// ---- mutual TLS ----

/// A throwaway CA and certificates made with the `openssl` command.
struct Pki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command (apt-get install openssl) makes the test certificates");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ext = "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
                   keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n";
        std::fs::write(dir.join("leaf.ext"), ext).unwrap();
        Pki { dir: dir.to_owned() }
    }

    /// A self-signed CA: `<name>-ca.pem`, `<name>-ca.key`.
    fn ca(&self, name: &str) -> PathBuf {
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}-ca.key"),
                "-out",
                &format!("{name}-ca.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={name} test CA"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        self.dir.join(format!("{name}-ca.pem"))
    }

    /// A leaf for 127.0.0.1/localhost signed by CA `ca`: (`<name>.pem`, `<name>.key`).
    fn leaf(&self, ca: &str, name: &str) -> (PathBuf, PathBuf) {
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}-ca.pem"),
                "-CAkey",
                &format!("{ca}-ca.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                "leaf.ext",
            ],
        );
        (self.dir.join(format!("{name}.pem")), self.dir.join(format!("{name}.key")))
    }
}

fn pem(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Sends the forged command over `endpoint` without any of Keel's client settings.
fn stranger_command(endpoint: Endpoint) -> Result<(), String> {
    block_on(async move {
        let channel = endpoint.connect().await.map_err(|e| format!("connect: {e:?}"))?;
        WorkerClient::new(channel).command(forged_command()).await.map(|_| ()).map_err(|s| format!("{s:?}"))
    })
}

#[test]
fn with_mutual_tls_the_cluster_works_and_strangers_are_refused() {
    let keys = tempfile::tempdir().unwrap();
    let pki = Pki::new(keys.path());
    let ca = pki.ca("cluster");
    let (cert, key) = pki.leaf("cluster", "node");
    pki.ca("other");
    let (other_cert, other_key) = pki.leaf("other", "stranger");
    let (ca_s, cert_s, key_s) = (ca.display().to_string(), cert.display().to_string(), key.display().to_string());
    let c = Cluster::start(
        "sec-mtls",
        1,
        2,
        &[
            ("security.ssl.internal.enabled", "true"),
            ("security.ssl.internal.key", &key_s),
            ("security.ssl.internal.cert", &cert_s),
            ("security.ssl.internal.truststore", &ca_s),
        ],
    );
    let leader = c.wait_leader(&[0], T);
    // Status probes use the cluster's certificate (Cluster::worker_status).
    c.wait_workers_follow(&leader, T);
    run_a_job(&c, "mtls");

    let before = c.worker_status(0).expect("status over mutual TLS");
    assert_eq!(before.highest_epoch, leader.epoch);
    let addr = c.workers[0].rpc_addr();
    let https = || Endpoint::from_shared(format!("https://{addr}")).unwrap();
    let trusts_cluster = || ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem(&ca)));
    let strangers: Vec<(&str, Endpoint)> = vec![
        ("plaintext", Endpoint::from_shared(format!("http://{addr}")).unwrap()),
        ("TLS without a client certificate", https().tls_config(trusts_cluster()).unwrap()),
        (
            "a client certificate from another CA",
            https()
                .tls_config(trusts_cluster().identity(Identity::from_pem(pem(&other_cert), pem(&other_key))))
                .unwrap(),
        ),
    ];
    for (who, endpoint) in strangers {
        let err = stranger_command(endpoint).expect_err("a stranger's command is refused");
        // Refused by the transport, not by the gate (whose refusal says "not confirmed").
        assert!(!err.contains("not confirmed") && !err.contains("has not learnt"), "{who}: {err}");
        eprintln!("refused as expected ({who}): {err}");
    }
    let after = c.worker_status(0).expect("status over mutual TLS");
    assert_eq!(gate_and_counters(&after), gate_and_counters(&before), "no stranger reached the epoch gate");
    // Each refused handshake is logged by the worker, with the stranger's address.
    let log = c.workers[0].log_tail(5000);
    let refusals = log.lines().filter(|l| l.contains("internal RPC refused: TLS handshake from 127.0.0.1:")).count();
    assert!(refusals >= 3, "the worker logs each refused handshake ({refusals}):\n{log}");
    // With the cluster's certificate the same forged command reaches the gate (and is
    // refused there): the transport was what stopped the strangers.
    let gate = c.send_command(0, i64::MAX, "member").expect_err("forged epoch");
    assert_eq!(gate.code(), tonic::Code::Unavailable, "{gate:?}");
    assert!(gate.message().contains("not confirmed"), "{}", gate.message());
}

#[test]
fn tls_settings_are_checked_at_start() {
    let out = Command::new(common::KEEL)
        .args(["config", "show", "-D", "security.ssl.internal.enabled=true"])
        .output()
        .expect("run keel");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "enabled without key, cert and truststore is refused");
    assert!(err.contains("security.ssl.internal.key") && err.contains("security.ssl.internal.enabled"), "{err}");
}

// ---- REST over TLS ----

fn https_client(ca: &Path) -> reqwest::Client {
    let roots = reqwest::Certificate::from_pem_bundle(&pem(ca)).unwrap();
    reqwest::Client::builder().tls_certs_only(roots).timeout(Duration::from_secs(5)).build().unwrap()
}

fn https_get(client: &reqwest::Client, url: &str) -> Result<(u16, serde_json::Value), String> {
    block_on(async {
        let resp = client.get(url).send().await.map_err(|e| format!("{e:?}"))?;
        let code = resp.status().as_u16();
        let body = resp.json().await.map_err(|e| format!("{e:?}"))?;
        Ok((code, body))
    })
}

#[test]
fn rest_over_tls_answers_and_keel_commands_follow_it() {
    let keys = tempfile::tempdir().unwrap();
    let pki = Pki::new(keys.path());
    let ca = pki.ca("rest");
    let (cert, key) = pki.leaf("rest", "rest-server");
    let other_ca = pki.ca("elsewhere");
    let (ca_s, cert_s, key_s) = (ca.display().to_string(), cert.display().to_string(), key.display().to_string());
    let c = Cluster::start(
        "sec-rest-tls",
        1,
        1,
        &[
            ("security.ssl.rest.enabled", "true"),
            ("security.ssl.rest.key", &key_s),
            ("security.ssl.rest.cert", &cert_s),
            ("security.ssl.rest.truststore", &ca_s),
        ],
    );
    let rest = c.dispatchers[0].rest_addr().expect("REST address");
    let client = https_client(&ca);
    let leader =
        chaos_tests::wait_until(T, Duration::from_millis(100), "the dispatcher to lead, asked over https", || {
            let (code, v) = https_get(&client, &format!("https://{rest}/ha/leader")).ok()?;
            // is_leader is this process's role; leader_id is read back from ZooKeeper a moment later.
            (code == 200 && v["is_leader"] == true && !v["leader_id"].is_null()).then_some(v)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert_eq!(leader["leader_id"], "d0");

    // Plain HTTP is not answered, and a client that trusts another CA refuses the server.
    let plain = chaos_tests::http_get_json(&rest, "/ha/leader", Duration::from_secs(2));
    assert!(plain.is_err(), "plain HTTP must not be answered: {plain:?}");
    let wrong = https_get(&https_client(&other_ca), &format!("https://{rest}/ha/leader"));
    assert!(wrong.is_err(), "the server's certificate is verified: {wrong:?}");

    // The keel commands follow the configuration: run, list and status.
    chaos_tests::wait_until(T, Duration::from_millis(100), "the worker to register, asked over https", || {
        let (_, v) = https_get(&client, &format!("https://{rest}/taskmanagers")).ok()?;
        (v["taskmanagers"].as_array()?.len() == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let sink = c.dir.path().join("out-rest");
    let id = c.submit(&counting_job("rest-tls", &sink));
    chaos_tests::wait_until(
        Duration::from_secs(120),
        Duration::from_millis(200),
        "keel list to show the job FINISHED",
        || {
            let out = c.keel(&["list"]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            (out.status.success() && text.lines().any(|l| l.contains(&id) && l.contains("FINISHED"))).then_some(())
        },
    )
    .unwrap_or_else(|e| {
        let out = c.keel(&["list"]);
        panic!(
            "{e}\nkeel list: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            c.logs()
        )
    });
    assert_eq!(common::committed_lines(&sink), common::expected_counts(3000, 2));
    let status = c.keel(&["status"]);
    assert!(status.status.success(), "keel status: {}", String::from_utf8_lossy(&status.stderr));
}
