//! ZooKeeper security as Flink users configure it, against a real ZooKeeper (no mocks):
//! SASL DIGEST-MD5, `creator` ACLs against foreign clients, TLS to a `secureClientPort`.
//!
//! The settings come from configuration text through `keel_conf` and
//! [`ZkSettings::from_config`], as in the dispatcher and worker.
//!
//! `KEEL_TEST_ZK_ACL=open` runs [`creator_acl_locks_out_foreign_clients`] with
//! `high-availability.zookeeper.client.acl: open`: it must then fail (a foreign client gets in).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chaos_tests::zk::ZkServerTls;
use chaos_tests::ZkEnsemble;
use keel_ha::election::Contender;
use keel_ha::{HaError, HaStores, LeaderElection, LeaderRetrieval, Leadership, ZkSettings};
use tokio::sync::watch;
use zookeeper_client::{Acls, Client, CreateMode, SaslOptions};

const PASSWORD: &str = "Keel-zk-Secret-42";

fn settings(yaml: &str) -> ZkSettings {
    let text = format!(
        "high-availability.type: zookeeper\n\
         high-availability.zookeeper.client.session-timeout: 2 s\n\
         high-availability.zookeeper.client.connection-timeout: 2 s\n\
         high-availability.zookeeper.client.retry-wait: 500 ms\n{yaml}"
    );
    let loaded = keel_conf::from_str(&text, "zk_security.yaml", &[]).unwrap_or_else(|e| panic!("{e}\n{text}"));
    ZkSettings::from_config(&loaded.config).expect("high-availability.type is zookeeper")
}

fn contender(id: &str) -> Contender {
    Contender { id: id.into(), rpc_address: format!("{id}:1"), rest_address: format!("{id}:2") }
}

async fn wait_for<T>(rx: &mut watch::Receiver<T>, what: &str, mut f: impl FnMut(&T) -> bool) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if f(&rx.borrow_and_update()) {
                return;
            }
            rx.changed().await.expect("sender alive");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// A client outside Keel: no credentials, or SASL as someone else.
async fn try_stranger(quorum: &str, sasl: Option<(&str, &str)>) -> Result<Client, zookeeper_client::Error> {
    let mut connector = Client::connector().with_session_timeout(Duration::from_secs(4));
    if let Some((user, password)) = sasl {
        connector = connector.with_sasl(SaslOptions::digest_md5(user.to_owned(), password.to_owned()));
    }
    tokio::time::timeout(Duration::from_secs(30), connector.connect(quorum)).await.expect("stranger connect bounded")
}

async fn stranger(quorum: &str, sasl: Option<(&str, &str)>) -> Client {
    try_stranger(quorum, sasl).await.expect("stranger connects")
}

/// Elects `a`, has it write through its fence (the job-store layout and a guarded create),
/// and checks a second process with the same settings reads the leader: Keel works.
async fn keel_works(s: &ZkSettings) -> (keel_ha::ElectionHandle, LeaderRetrieval) {
    let retrieval = LeaderRetrieval::start(s.clone());
    let a = LeaderElection::start(s.clone(), contender("a"));
    let mut a_rx = a.subscribe();
    wait_for(&mut a_rx, "a to lead", Leadership::is_leading).await;
    let fence = a.current().fence().cloned().expect("a leads");
    HaStores::ensure_layout(fence.client()).await.expect("layout");
    fence.create("/jobgraphs/probe", b"p", &fence.persistent()).await.expect("guarded create");
    let mut leader_rx = retrieval.subscribe();
    wait_for(&mut leader_rx, "retrieval to see a", |l| l.as_ref().is_some_and(|l| l.leader_id == "a")).await;
    (a, retrieval)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_digest_elects_a_leader_and_a_wrong_password_is_refused() {
    let zk = ZkEnsemble::builder().with_sasl_digest_user("keel", PASSWORD).start().expect("ensemble");
    let quorum = zk.connect_string();

    // The servers really require SASL: a client without credentials can do nothing.
    match try_stranger(&quorum, None).await {
        Err(e) => assert_eq!(e, zookeeper_client::Error::AuthFailed),
        Ok(plain) => {
            let refused = plain.create("/x", b"", &CreateMode::Persistent.with_acls(Acls::anyone_all())).await;
            assert!(refused.is_err(), "an unauthenticated session must be refused, got {refused:?}");
        }
    }

    let base = format!(
        "high-availability.zookeeper.quorum: {quorum}\n\
         high-availability.cluster-id: sasl\n\
         high-availability.zookeeper.client.sasl.username: keel\n"
    );
    let good = settings(&format!("{base}high-availability.zookeeper.client.sasl.password: {PASSWORD}\n"));
    assert!(!format!("{good:?}").contains(PASSWORD), "Debug of the settings shows the password: {good:?}");
    let (a, retrieval) = keel_works(&good).await;

    let wrong_password = "Not-The-Password-7";
    let bad = settings(&format!("{base}high-availability.zookeeper.client.sasl.password: {wrong_password}\n"));
    let err = bad.connect().await.expect_err("a wrong password must be refused");
    assert!(matches!(err, HaError::ZkAuth { ref user, .. } if user == "keel"), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("SASL") && message.contains("'keel'"), "{message}");
    assert!(!message.contains(wrong_password) && !message.contains(PASSWORD), "the password leaked: {message}");

    // The same settings with SASL switched off (Flink's key) are refused as well.
    let disabled = settings(&format!(
        "{base}high-availability.zookeeper.client.sasl.password: {PASSWORD}\nzookeeper.sasl.disable: true\n"
    ));
    assert!(disabled.sasl.is_none());
    assert!(disabled.connect().await.is_err(), "a session without SASL must be refused");

    a.shutdown().await;
    retrieval.shutdown().await;
}

/// Every way a foreign session could touch the cluster: each must get `NoAuth`.
async fn assert_locked_out(who: &str, client: &Client, root: &str) {
    let open = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let checks: Vec<(&str, Result<(), zookeeper_client::Error>)> = vec![
        ("create under the cluster root", client.create(&format!("{root}/evil"), b"x", &open).await.map(|_| ())),
        ("create under jobgraphs", client.create(&format!("{root}/jobgraphs/evil"), b"x", &open).await.map(|_| ())),
        (
            "change a job graph pointer",
            client.set_data(&format!("{root}/jobgraphs/probe"), b"x", None).await.map(|_| ()),
        ),
        ("delete a job graph pointer", client.delete(&format!("{root}/jobgraphs/probe"), None).await),
        ("delete leader/info", client.delete(&format!("{root}/leader/info"), None).await),
        ("read leader/info", client.get_data(&format!("{root}/leader/info")).await.map(|_| ())),
        ("list the latch", client.list_children(&format!("{root}/leader/latch")).await.map(|_| ())),
        ("open the root's ACL", client.set_acl(root, &Acls::anyone_all(), None).await.map(|_| ())),
    ];
    for (what, result) in checks {
        assert_eq!(result, Err(zookeeper_client::Error::NoAuth), "{who}: {what} must be refused with NoAuth");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creator_acl_locks_out_foreign_clients() {
    // SASL is optional on these servers: only the ACLs protect the cluster.
    let zk = ZkEnsemble::builder()
        .with_sasl_digest_user("keel", PASSWORD)
        .with_sasl_digest_user("mallory", "mallory-pw")
        .with_sasl_optional()
        .start()
        .expect("ensemble");
    let quorum = zk.connect_string();
    let acl = std::env::var("KEEL_TEST_ZK_ACL").unwrap_or_else(|_| "creator".to_owned());
    let s = settings(&format!(
        "high-availability.zookeeper.quorum: {quorum}\n\
         high-availability.cluster-id: locked\n\
         high-availability.zookeeper.client.sasl.username: keel\n\
         high-availability.zookeeper.client.sasl.password: {PASSWORD}\n\
         high-availability.zookeeper.client.acl: {acl}\n"
    ));
    let (a, retrieval) = keel_works(&s).await;

    let root = &s.namespace;
    let anonymous = stranger(&quorum, None).await;
    assert_locked_out("a client without credentials", &anonymous, root).await;
    let mallory = stranger(&quorum, Some(("mallory", "mallory-pw"))).await;
    assert_locked_out("a client authenticated as another user", &mallory, root).await;

    // Keel still works after the attempts: a new leader takes over and writes.
    a.shutdown().await;
    let b = LeaderElection::start(s.clone(), contender("b"));
    let mut b_rx = b.subscribe();
    wait_for(&mut b_rx, "b to lead", Leadership::is_leading).await;
    let fence = b.current().fence().cloned().expect("b leads");
    fence.set_data("/jobgraphs/probe", b"b", None).await.expect("b's guarded write");
    b.shutdown().await;
    retrieval.shutdown().await;
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a certificate named `name` for 127.0.0.1 signed by it; returns `<name>.pem`, a
/// file holding the certificate and its key (ZooKeeper's PEM key store form).
fn issue(dir: &Path, ca: &str, name: &str) -> std::path::PathBuf {
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
    std::fs::write(dir.join(format!("{name}.ext")), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
    let pem = dir.join(format!("{name}.pem"));
    let cert = std::fs::read_to_string(dir.join(format!("{name}.crt"))).unwrap();
    let key = std::fs::read_to_string(dir.join(format!("{name}.key"))).unwrap();
    std::fs::write(&pem, format!("{cert}{key}")).unwrap();
    pem
}

fn new_ca(dir: &Path, ca: &str) -> std::path::PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{ca}.key"),
            "-subj",
            &format!("/CN={ca}"),
            "-days",
            "2",
            "-out",
            &format!("{ca}.crt"),
        ],
    );
    dir.join(format!("{ca}.crt"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_zookeeper_connects_and_plaintext_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca(dir.path(), "ca");
    let server = issue(dir.path(), "ca", "zk-server");
    let client = issue(dir.path(), "ca", "keel-client");
    let zk = ZkEnsemble::builder()
        .with_tls(ZkServerTls { keystore: server, truststore: ca.clone(), client_auth: "need" })
        .start()
        .expect("ensemble");
    let secure = zk.secure_connect_string().expect("secure ports");

    let s = settings(&format!(
        "high-availability.zookeeper.quorum: {secure}\n\
         high-availability.cluster-id: tls\n\
         zookeeper.client.secure: true\n\
         zookeeper.ssl.trustStore.location: {}\n\
         zookeeper.ssl.keyStore.location: {}\n",
        ca.display(),
        client.display()
    ));
    assert!(s.tls.is_some());
    let (a, retrieval) = keel_works(&s).await;

    // Plaintext to the secure port gets no session.
    let plain = settings(&format!("high-availability.zookeeper.quorum: {secure}\nhigh-availability.cluster-id: tls\n"));
    let err = plain.connect().await.expect_err("plaintext to the secure port must fail");
    assert!(matches!(err, HaError::Connect { .. }), "{err:?}");

    // A client trusting another CA does not accept the servers.
    let other_ca = new_ca(dir.path(), "other-ca");
    let distrust = settings(&format!(
        "high-availability.zookeeper.quorum: {secure}\n\
         high-availability.cluster-id: tls\n\
         zookeeper.client.secure: true\n\
         zookeeper.ssl.trustStore.location: {}\n\
         zookeeper.ssl.keyStore.location: {}\n",
        other_ca.display(),
        client.display()
    ));
    assert!(distrust.connect().await.is_err(), "a client trusting another CA must not connect");

    // A missing key store file is named in the error.
    let missing = settings(&format!(
        "high-availability.zookeeper.quorum: {secure}\n\
         zookeeper.client.secure: true\n\
         zookeeper.ssl.trustStore.location: {}/nope.pem\n",
        dir.path().display()
    ));
    let err = missing.connect().await.expect_err("missing truststore");
    assert!(matches!(err, HaError::ZkTls { ref path, .. } if path.ends_with("nope.pem")), "{err:?}");

    a.shutdown().await;
    retrieval.shutdown().await;
}
