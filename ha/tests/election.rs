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
        sasl: None,
        acl: keel_ha::session::ZkAcl::Open,
        tls: None,
        kerberos: None,
    }
}

fn contender(id: &str) -> Contender {
    Contender { id: id.into(), rpc_address: format!("{id}:1"), rest_address: format!("{id}:2") }
}

/// Every `keel_ha` tracing event of this test process, as `message key=value ...` lines: the
/// election's own account of each transition (`leadership_gained`, `leadership_lost`, each
/// event it handled), which the tests read instead of sleeping.
static EVENTS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

struct Capture;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write;
                let _ = write!(self.0, " {}={:?}", field.name(), value);
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                use std::fmt::Write;
                let _ = write!(self.0, " {}={}", field.name(), value);
            }
        }
        if !event.metadata().target().starts_with("keel") {
            return;
        }
        let mut f = Fields(String::new());
        event.record(&mut f);
        EVENTS.lock().unwrap_or_else(|e| e.into_inner()).push(f.0);
    }
}

/// The tests that read [`EVENTS`] run one at a time (epochs of two ensembles can coincide).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the [`SERIAL`] lock and starts a fresh event record.
async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    let guard = SERIAL.lock().await;
    EVENTS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    guard
}

fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let _ = tracing_subscriber::registry()
        .with(Capture.with_filter(tracing_subscriber::filter::LevelFilter::DEBUG))
        .with(
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(tracing_subscriber::EnvFilter::from_default_env()),
        )
        .try_init();
}

/// Captured events containing every one of `needles`.
fn events_with(needles: &[&str]) -> Vec<String> {
    EVENTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|e| needles.iter().all(|n| e.contains(n)))
        .cloned()
        .collect()
}

/// Waits (bounded) until an event containing every one of `needles` was logged.
async fn wait_event(what: &str, needles: &[&str]) -> String {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(e) = events_with(needles).pop() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}: no event with {needles:?}"))
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
    init_tracing();
    let _serial = exclusive().await;
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
    // Both sides of the transition, as the contenders logged them: a stopped acting at its
    // epoch, b started at its own.
    let (ea, eb) = (format!("epoch={epoch_a}"), format!("epoch={epoch_b}"));
    wait_event("a to log that it stopped acting", &["event=leadership_lost", &ea]).await;
    wait_event("b to log that it leads", &["event=leadership_gained", &eb]).await;
    wait_for(&mut leader_rx, "retrieval to see b", |v| v.as_ref().is_some_and(|l| l.leader_id == "b")).await;

    // Expire b's session from outside (a second client takes the session over and closes it):
    // b loses leadership, its guarded writes fail, a (which re-contended) leads with a newer epoch.
    let fence_b = b.current().fence().cloned().unwrap();
    let takeover = Client::connector()
        .with_session(fence_b.zk_client().expect("a ZooKeeper fence").session().clone())
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
    // The old side of the transition: b, whose session expired, stopped acting at epoch_b
    // (its own log says so, and its published role is no longer Leading at epoch_b), and the
    // new leader logged gaining epoch_2.
    wait_event("b to log that it stopped acting after its session expired", &["event=leadership_lost", &eb]).await;
    let b_side = if first.current().epoch() == Some(epoch_2) { &second } else { &first };
    assert!(
        !(b_side.current().is_leading() && b_side.current().epoch() == Some(epoch_b)),
        "b still acts at epoch {epoch_b} after its session expired"
    );
    wait_event("the new leader to log that it leads", &["event=leadership_gained", &format!("epoch={epoch_2}")]).await;
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
    init_tracing();
    let _serial = exclusive().await;
    let zk = ZkEnsemble::start(1).expect("ensemble");
    let s = settings(&zk, "ha-fenced");
    let a = LeaderElection::start(s.clone(), contender("a"));
    let mut rx = a.subscribe();
    wait_for(&mut rx, "a to lead", Leadership::is_leading).await;
    let fence = a.current().fence().cloned().unwrap();
    let epoch = fence.epoch();
    let lost = format!("epoch={epoch}");
    // A report of an older or equal epoch changes nothing: once the election has handled it
    // (its own debug event says so), a still leads at the same epoch and never logged losing it.
    let older = keel_ha::LeaderEpoch(epoch.0 - 1);
    fence.report_fenced(older);
    wait_event("the election to handle the older report", &["leadership event", &format!("seen: {older:?}")]).await;
    assert!(a.current().is_leading() && a.current().epoch() == Some(epoch), "{:?}", a.current());
    assert_eq!(events_with(&["event=leadership_lost", &lost]), Vec::<String>::new(), "an older epoch made a step down");
    // A newer epoch: step down (logged at this epoch) and contend again with a new session
    // (and a newer latch).
    fence.report_fenced(keel_ha::LeaderEpoch(epoch.0 + 1_000_000));
    wait_event("a to log that it stopped acting", &["event=leadership_lost", &lost]).await;
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
