//! Issue #8, ZooKeeper security with real `keel` processes: a ZooKeeper that requires SASL
//! (DIGEST-MD5) and serves TLS only to clients with a certificate, and a Keel cluster
//! configured with Flink-style keys (`high-availability.zookeeper.client.sasl.*`,
//! `high-availability.zookeeper.client.acl: creator`, `zookeeper.client.secure`,
//! `zookeeper.ssl.*`). Two dispatchers elect a leader, a worker follows, a job runs to
//! FINISHED with exactly-once output, the leader is killed and the standby takes over (its
//! session, logged in as the same user, may replace what the old leader created), `keel
//! status` reads ZooKeeper, and the password appears in no log and not in `keel config show`.
//! The ZooKeeper-level refusals (wrong password, foreign clients under creator ACLs,
//! plaintext to the TLS port) are in ha/tests/zk_security.rs.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chaos_tests::zk::ZkServerTls;
use chaos_tests::{config_yaml, ZkEnsemble};
use common::Cluster;

const PASSWORD: &str = "Zk-Digest-Pw-for-cli-tests-9";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `<name>.pem` (certificate + key) for 127.0.0.1, signed by `ca`.
fn issue(dir: &Path, name: &str) -> std::path::PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={name}"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
    let cert = std::fs::read_to_string(dir.join(format!("{name}.crt"))).unwrap();
    let key = std::fs::read_to_string(dir.join(format!("{name}.key"))).unwrap();
    let pem = dir.join(format!("{name}.pem"));
    std::fs::write(&pem, format!("{cert}{key}")).unwrap();
    pem
}

fn counting_job(name: &str, sink: &Path) -> String {
    format!(
        "name: {name}\nparallelism: 2\ncheckpoint-interval: 300 ms\nrestart-strategy: {{ type: fixed-delay, attempts: 20, delay: 200 ms }}\npipeline:\n  - source: {{ type: sequence, count: 3000, keys: 2, rate: 1500 }}\n  - count: {{}}\n  - sink: {{ type: file, path: file://{} }}\n",
        sink.display()
    )
}

#[test]
fn cluster_on_a_sasl_tls_zookeeper_with_creator_acls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    openssl(
        &pki,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-subj",
            "/CN=zk test CA",
            "-days",
            "2",
            "-out",
            "ca.crt",
        ],
    );
    let ca = pki.join("ca.crt");
    let server = issue(&pki, "zk-server");
    let client = issue(&pki, "keel-client");
    let zk = ZkEnsemble::builder()
        .with_members(3)
        .with_sasl_digest_user("keel", PASSWORD)
        .with_tls(ZkServerTls { keystore: server, truststore: ca.clone(), client_auth: "need" })
        .start()
        .expect("3-node ZooKeeper ensemble with SASL and TLS");
    let quorum = zk.secure_connect_string().expect("secure ports");

    let storage = format!("file://{}/storage", dir.path().display());
    let tmp = format!("{}/tmp", dir.path().display());
    let (ca, client) = (ca.display().to_string(), client.display().to_string());
    let cfg = config_yaml(
        &quorum,
        "zk-secured",
        &[
            ("high-availability.storageDir", &storage),
            ("io.tmp.dirs", &tmp),
            ("high-availability.zookeeper.client.sasl.username", "keel"),
            ("high-availability.zookeeper.client.sasl.password", PASSWORD),
            ("high-availability.zookeeper.client.acl", "creator"),
            ("zookeeper.client.secure", "true"),
            ("zookeeper.ssl.trustStore.location", &ca),
            ("zookeeper.ssl.keyStore.location", &client),
        ],
    );
    let cfg_path = dir.path().join("cluster.yaml");
    std::fs::write(&cfg_path, &cfg).expect("write config");
    let mut c = Cluster { zk, dir, cfg, cfg_path, dispatchers: vec![], workers: vec![] };
    c.add_dispatcher("d0");
    c.add_dispatcher("d1");
    c.add_worker("w0");
    let t = Duration::from_secs(60);
    let leader = c.wait_leader(&[0, 1], t);
    c.wait_workers_follow(&leader, t);

    let sink = c.dir.path().join("out");
    let id = c.submit(&counting_job("zk-secured", &sink));
    let done = c.wait_job_state(&id, "FINISHED", Duration::from_secs(120));
    assert_eq!(done["state"], "FINISHED");
    assert_eq!(common::committed_lines(&sink), common::expected_counts(3000, 2));

    // Failover: the standby's session (same user) takes over the creator-owned znodes.
    c.dispatchers[leader.index].kill9();
    let standby = 1 - leader.index;
    let next = c.wait_leader(&[standby], t);
    assert!(next.epoch > leader.epoch, "epochs grow: {} then {}", leader.epoch, next.epoch);
    c.wait_workers_follow(&next, t);

    // A client command reads the cluster from ZooKeeper with the same settings.
    let status = c.keel(&["status"]);
    assert!(status.status.success(), "keel status: {}", String::from_utf8_lossy(&status.stderr));

    let show = c.keel(&["config", "show"]);
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(show.contains("high-availability.zookeeper.client.sasl.password") && show.contains("******"), "{show}");
    assert!(!show.contains(PASSWORD), "config show prints the ZooKeeper password:\n{show}");
    for p in c.dispatchers.iter().chain(c.workers.iter()) {
        assert!(!p.log_tail(100_000).contains(PASSWORD), "{} logged the ZooKeeper password", p.name());
    }
}
