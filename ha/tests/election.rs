//! The HA services against a real 3-node ZooKeeper ensemble (no mocks): election, epochs,
//! guarded writes, leader retrieval, session expiry.

use std::time::Duration;

use chaos_tests::ZkEnsemble;
use keel_ha::election::Contender;
use keel_ha::{HaError, LeaderElection, LeaderRetrieval, Leadership, ZkSettings};
use tokio::sync::watch;
use zookeeper_client::{Acls, Client, CreateMode};

fn settings(zk: &ZkEnsemble, cluster: &str) -> ZkSettings {
    ZkSettings {
        quorum: zk.connect_string(),
        namespace: format!("/keel/{cluster}"),
        cluster_id: format!("/{cluster}"),
        session_timeout: Duration::from_secs(2),
        connection_timeout: Duration::from_secs(2),
        retry_wait: Duration::from_millis(500),
        tolerate_suspended_connections: false,
    }
}

fn contender(id: &str) -> Contender {
    Contender { id: id.into(), rpc_address: format!("{id}:1"), rest_address: format!("{id}:2") }
}

async fn wait_for<T>(rx: &mut watch::Receiver<T>, what: &str, mut f: impl FnMut(&T) -> bool) {
    tokio::time::timeout(Duration::from_secs(30), async {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_epochs_guarded_writes_and_retrieval() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let zk = ZkEnsemble::start(3).expect("ensemble");
    let s = settings(&zk, "ha-election");
    let retrieval = LeaderRetrieval::start(s.clone());
    let mut leader_rx = retrieval.subscribe();

    let a = LeaderElection::start(s.clone(), contender("a"));
    let mut a_rx = a.subscribe();
    wait_for(&mut a_rx, "a to lead", Leadership::is_leading).await;
    let b = LeaderElection::start(s.clone(), contender("b"));
    let b_rx = b.subscribe();

    let fence_a = a.current().fence().cloned().expect("a leads");
    let epoch_a = fence_a.epoch();
    assert!(epoch_a.0 > 0);
    // The epoch is the latch node's czxid.
    let (_, stat) = fence_a.client().get_data(fence_a.latch_path()).await.unwrap();
    assert_eq!(stat.czxid, epoch_a.0);
    wait_for(&mut leader_rx, "retrieval to see a", |v| v.as_ref().is_some_and(|l| l.leader_id == "a")).await;
    assert_eq!(retrieval.current().unwrap().epoch, epoch_a);
    assert_eq!(retrieval.current().unwrap().address, "a:1");
    assert!(!b_rx.borrow().is_leading(), "b stands by while a leads");

    // A guarded write by the leader lands.
    let probe = "/probe";
    fence_a
        .create(probe, b"a", &CreateMode::Persistent.with_acls(Acls::anyone_all()))
        .await
        .expect("leader's guarded create");

    // Someone deletes a's latch node (as a takeover would): a's guarded writes now fail and
    // nothing changes; a steps down and b leads with a greater epoch.
    let admin = Client::connector().connect(&zk.connect_string()).await.unwrap();
    let admin = admin.chroot(s.namespace.clone()).unwrap();
    admin.delete(fence_a.latch_path(), None).await.unwrap();
    let err = fence_a.set_data(probe, b"stale", None).await.unwrap_err();
    assert_eq!(
        err,
        HaError::LeadershipLost { epoch: epoch_a, op: "set_data", path: probe.into() },
        "a stale leader's write is refused"
    );
    assert_eq!(
        err.to_string(),
        format!("leadership lost (epoch {epoch_a}): guarded set_data /probe refused because the latch node is gone")
    );
    assert_eq!(admin.get_data(probe).await.unwrap().0, b"a", "nothing written by the stale leader");

    let mut b_rx2 = b.subscribe();
    wait_for(&mut b_rx2, "b to lead", Leadership::is_leading).await;
    let epoch_b = b.current().epoch().unwrap();
    assert!(epoch_b > epoch_a, "epochs only grow: {epoch_a} then {epoch_b}");
    wait_for(&mut a_rx, "a to stand by", |l| !l.is_leading()).await;
    wait_for(&mut leader_rx, "retrieval to see b", |v| v.as_ref().is_some_and(|l| l.leader_id == "b")).await;

    // Expire b's session from outside (a second client takes the session over and closes it):
    // b loses leadership, its guarded writes fail, a (which re-contended) leads with a newer epoch.
    let fence_b = b.current().fence().cloned().unwrap();
    let takeover = Client::connector()
        .with_session(fence_b.client().session().clone())
        .connect(&zk.connect_string())
        .await
        .unwrap();
    keel_ha::session::close(takeover, Duration::from_secs(5)).await;
    // A write in flight as the session dies has an unknown outcome (ConnectionLoss); retry
    // (bounded) until the answer is definite. It must never succeed.
    let mut err = fence_b.set_data(probe, b"zombie", None).await.unwrap_err();
    for _ in 0..50 {
        if !matches!(err, HaError::ConnectionLoss { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        err = fence_b.set_data(probe, b"zombie", None).await.unwrap_err();
    }
    assert!(
        matches!(err, HaError::SessionExpired | HaError::LeadershipLost { .. }),
        "guarded write after session expiry fails: {err:?}"
    );
    // Whoever contends first on a new session leads next, with a newer epoch.
    let newer = |l: &Leadership| l.is_leading() && l.epoch().is_some_and(|e| e > epoch_b);
    tokio::time::timeout(Duration::from_secs(30), async {
        while !newer(&a.current()) && !newer(&b.current()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a new leader after b's session expired");
    let (first, second) = if newer(&a.current()) { (a, b) } else { (b, a) };
    let epoch_2 = first.current().epoch().unwrap();
    assert_eq!(admin.get_data(probe).await.unwrap().0, b"a", "the expired leader wrote nothing");
    wait_for(&mut leader_rx, "retrieval to see the newest leader", |v| v.as_ref().is_some_and(|l| l.epoch == epoch_2))
        .await;

    // Graceful shutdown resigns at once: the other contender takes over.
    drop((fence_a, fence_b));
    first.shutdown().await;
    let mut rx = second.subscribe();
    wait_for(&mut rx, "the other contender to lead after a resignation", Leadership::is_leading).await;
    assert!(second.current().epoch().unwrap() > epoch_2);
    second.shutdown().await;
    wait_for(&mut leader_rx, "no leader after both resigned", Option::is_none).await;
    retrieval.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_report_with_newer_epoch_makes_the_leader_step_down() {
    let zk = ZkEnsemble::start(1).expect("ensemble");
    let s = settings(&zk, "ha-fenced");
    let a = LeaderElection::start(s.clone(), contender("a"));
    let mut rx = a.subscribe();
    wait_for(&mut rx, "a to lead", Leadership::is_leading).await;
    let fence = a.current().fence().cloned().unwrap();
    let epoch = fence.epoch();
    // A report of an older or equal epoch changes nothing.
    fence.report_fenced(keel_ha::LeaderEpoch(epoch.0 - 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.current().epoch(), Some(epoch));
    // A newer epoch: step down and contend again with a new session (and a newer latch).
    fence.report_fenced(keel_ha::LeaderEpoch(epoch.0 + 1_000_000));
    wait_for(&mut rx, "a to lead again with a newer epoch", |l| l.epoch().is_some_and(|e| e > epoch) && l.is_leading())
        .await;
    assert!(matches!(
        fence.set_data("/x", b"", None).await,
        Err(HaError::LeadershipLost { .. } | HaError::SessionExpired)
    ));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_host_in_the_quorum_does_not_block_start_up() {
    let zk = ZkEnsemble::start(1).expect("ensemble");
    let mut s = settings(&zk, "ha-unresolvable");
    s.quorum = format!("no-such-host.invalid:2181,{}", zk.connect_string());
    let client = tokio::time::timeout(Duration::from_secs(30), s.connect())
        .await
        .expect("connect finishes")
        .expect("connects through the resolvable member");
    client.check_stat("/").await.expect("a working session");
    keel_ha::session::close(client, Duration::from_secs(2)).await;
}
