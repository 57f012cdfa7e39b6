//! The fast failover path (issue 10, part 1): when the leader's process is gone, a standby
//! closes its ZooKeeper session instead of waiting for the session timeout; when the leader
//! is only paused, or a standby's connection merely broke, nothing is closed. Real 3-node
//! ZooKeeper, real `keel` dispatchers, `session-timeout: 60 s` (so a failover without the
//! fast path would take a minute).
//!
//! No test here bounds a time: each checks the mechanism from the processes' logs (the
//! standby's `fast_failover` line names the dead leader's session) and the epochs.

mod common;

use std::time::{Duration, Instant};

use chaos_tests::wait_until;
use common::Cluster;

/// Generous bounds on waits (the session timeout is 60 s; a wait ends as soon as its condition holds).
const T: Duration = Duration::from_secs(150);

fn start() -> Cluster {
    Cluster::start(
        &format!("/fast-{}", common::uuid_like()),
        2,
        0,
        &[("high-availability.zookeeper.client.session-timeout", "60 s")],
    )
}

/// Waits until the leader has published its session for the fast path (`/leader/session`).
fn wait_published(c: &Cluster) {
    let ns = c.zk_namespace();
    wait_until(T, Duration::from_millis(100), "the leader to publish /leader/session", || {
        common::block_on(async {
            let zk = common::zk_connect(&c.zk.connect_string(), &ns).await;
            zk.check_stat("/leader/session").await.ok().flatten()
        })
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
}

fn fast_failover_lines(log: &str) -> Vec<String> {
    log.lines().filter(|l| l.contains("fast_failover")).map(str::to_string).collect()
}

#[test]
fn a_killed_leader_is_replaced_without_waiting_for_its_session_timeout() {
    let mut c = start();
    let old = c.wait_leader(&[0, 1], T);
    wait_published(&c);
    let standby = 1 - old.index;
    let killed = Instant::now();
    c.dispatchers[old.index].kill9();

    let new = c.wait_leader(&[standby], T);
    let elapsed = killed.elapsed();
    assert!(new.epoch > old.epoch, "the new leader's epoch {} is not above {}", new.epoch, old.epoch);
    // The standby closed the dead leader's session itself: its log names that session.
    let log = c.dispatchers[standby].log_tail(4000);
    let lines = fast_failover_lines(&log);
    assert!(
        lines.iter().any(|l| l.contains(&format!("leader={}", old.id)) || l.contains(&old.id)),
        "the standby did not close the dead leader's session (no fast_failover line naming {}):\n{log}",
        old.id
    );
    println!("measured: kill -9 -> new leader {} ms with a 60 s session timeout (fast path)", elapsed.as_millis());
}

#[test]
fn a_paused_leader_and_a_restarted_standby_do_not_trigger_the_fast_path() {
    let mut c = start();
    let old = c.wait_leader(&[0, 1], T);
    wait_published(&c);
    let standby = 1 - old.index;

    // 1. A standby whose connection merely broke: it restarts, connects to the live leader
    //    again, and closes nothing.
    c.dispatchers[standby].kill9();
    c.dispatchers[standby].restart().expect("the standby restarts");
    wait_until(T, Duration::from_millis(100), "the restarted standby to hold a connection to the leader", || {
        c.dispatchers[standby].log_tail(4000).contains("fast failover: watching the leader").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));

    // 2. A paused leader (SIGSTOP): its kernel still accepts connections. The standby restarts
    //    once more while the leader is stopped, so it probes the paused leader from scratch,
    //    connects, and closes nothing.
    c.dispatchers[old.index].stop().expect("SIGSTOP the leader");
    c.dispatchers[standby].kill9();
    let before = c.dispatchers[standby].log_tail(100_000).matches("fast failover: watching the leader").count();
    c.dispatchers[standby].restart().expect("the standby restarts");
    wait_until(T, Duration::from_millis(100), "the standby to connect to the paused leader's RPC port", || {
        let n = c.dispatchers[standby].log_tail(100_000).matches("fast failover: watching the leader").count();
        (n > before).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    c.dispatchers[old.index].cont().expect("SIGCONT the leader");

    // The old leader still leads at its epoch, and no fast_failover line was ever written.
    let now = c.wait_leader(&[0, 1], T);
    assert_eq!(
        (now.index, now.epoch),
        (old.index, old.epoch),
        "the leader changed: {now:?} (was {old:?})\n{}",
        c.logs()
    );
    for (i, d) in c.dispatchers.iter().enumerate() {
        let lines = fast_failover_lines(&d.log_tail(100_000));
        assert!(lines.is_empty(), "dispatcher {i} used the fast path on a live leader:\n{}", lines.join("\n"));
    }
}

#[test]
fn a_killed_worker_is_dropped_without_waiting_for_heartbeat_timeout() {
    // heartbeat.timeout 10 min: only the fast path can drop the worker within the test.
    let mut c = Cluster::start(
        &format!("/fast-w-{}", common::uuid_like()),
        1,
        2,
        &[("heartbeat.timeout", "10 min"), ("heartbeat.interval", "200 ms")],
    );
    let leader = c.wait_leader(&[0], T);
    c.wait_workers_follow(&leader, T);
    // A registered worker is ready (GET /ready on its metrics port: the Kubernetes readiness
    // probe of deploy/kubernetes), naming the leader it is registered with.
    for w in &c.workers {
        let metrics = w.ready()["metrics"].as_str().expect("the worker reports its metrics address").to_string();
        let (code, body) = http_get_text(&metrics, "/ready", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("GET /ready on {metrics}: {e}"));
        assert_eq!(code, 200, "GET /ready of a registered worker: {body}");
        assert!(body.contains(&leader.id), "GET /ready names the leader: {body}");
    }
    let victim = c.workers[0].id();
    c.workers[0].kill9();
    wait_until(T, Duration::from_millis(100), "the leader to drop the killed worker", || {
        let ids = c.registered_workers(0)?;
        (!ids.contains(&victim)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let log = c.dispatchers[0].log_tail(4000);
    assert!(
        log.lines().any(|l| l.contains("worker_lost") && l.contains(&victim) && l.contains("refuses connections")),
        "the leader did not drop {victim} for a refused RPC port:\n{log}"
    );
    // The other worker stays registered.
    assert_eq!(c.registered_workers(0).unwrap(), vec![c.workers[1].id()]);
}

/// `GET http://{addr}{path}` with a plain-text answer: (status, body).
fn http_get_text(addr: &str, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| format!("no complete answer within {timeout:?}: {e}"))?;
    let text = String::from_utf8_lossy(&out).to_string();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("not HTTP: {text}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}

/// A partitioned leader is not a dead one: its standby's connection to it breaks and a new
/// connect is answered by no one (here: accepted by a blackholed proxy and never answered, the
/// closest a loopback test gets to dropped packets; a real partition's connect times out), so
/// the fast path must not close its session; the standby leads only once ZooKeeper expired it.
#[test]
fn a_partitioned_leader_is_not_closed_by_the_fast_path() {
    // A 4 s session so the expiry-driven failover is quick; the leader reaches ZooKeeper through
    // its own proxies and is reached (by the standby, by workers) through an RPC proxy it
    // advertises.
    let mut c = Cluster::start(
        &format!("/fast-part-{}", common::uuid_like()),
        0,
        0,
        &[("high-availability.zookeeper.client.session-timeout", "4 s")],
    );
    let mesh = chaos_tests::ProxyMesh::for_zk(&c.zk).expect("proxies in front of ZooKeeper");
    let rpc_port = chaos_tests::free_port();
    let rpc_proxy = chaos_tests::FaultProxy::start(([127, 0, 0, 1], rpc_port).into())
        .expect("a proxy in front of the leader's RPC port");
    let cfg = c
        .cfg
        .replace(&c.zk.connect_string(), &mesh.connect_string())
        .replace("rpc.port: 0\n", &format!("rpc.port: {rpc_port}\nrpc.advertised-address: {}\n", rpc_proxy.addr()));
    assert!(cfg.contains(&format!("rpc.port: {rpc_port}")), "the leader's config names its ports: {cfg}");
    c.add_dispatcher_cfg("d0", &cfg);
    let leader = c.wait_leader(&[0], T);
    wait_published(&c);
    c.add_dispatcher("d1");
    wait_until(T, Duration::from_millis(100), "the standby to watch the leader through the proxy", || {
        let log = c.dispatchers[1].log_tail(4000);
        (log.contains("fast failover: watching the leader") && log.contains(&rpc_proxy.addr().to_string()))
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));

    // Partition the leader: ZooKeeper and its RPC port stop answering; the standby's open
    // connection is reset, so it probes again and finds nobody answering.
    let t0 = Instant::now();
    mesh.blackhole();
    rpc_proxy.blackhole();
    assert!(rpc_proxy.drop_connections() >= 1, "the standby held a connection through the proxy");
    let new = c.wait_leader(&[1], T);
    let took = t0.elapsed();
    assert!(new.epoch > leader.epoch);
    let lines = fast_failover_lines(&c.dispatchers[1].log_tail(100_000));
    assert!(lines.is_empty(), "the fast path closed a partitioned leader's session:\n{}", lines.join("\n"));
    // Mechanism check (a lower bound): only the session's expiry let the standby lead. The
    // servers expire it 4 s after they last heard the leader (its pings come every ~1.3 s, so
    // about 2.7 s or more after the partition; 1 s leaves room for pings delayed by load); the
    // fast path closes a session within tens of milliseconds.
    assert!(took >= Duration::from_secs(1), "the standby led {took:?} after the partition: not by expiry");
    println!("measured: partitioned leader -> standby leads after {} ms (session timeout 4 s)", took.as_millis());
    mesh.heal();
    rpc_proxy.heal();
}
