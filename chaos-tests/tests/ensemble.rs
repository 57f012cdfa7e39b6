//! Real ZooKeeper ensembles: start, leader failover, pause/resume, cleanup on drop.

use std::time::{Duration, Instant};

use chaos_tests::{wait_until, ZkEnsemble};

fn pid_gone(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

#[test]
fn single_node_serves_in_standalone_mode() {
    let t = Instant::now();
    let zk = ZkEnsemble::start(1).expect("start 1-node ZooKeeper");
    eprintln!("1-node ensemble serving after {:?}", t.elapsed());

    assert_eq!(zk.len(), 1);
    assert_eq!(zk.mode(0).as_deref(), Some("standalone"));
    assert_eq!(zk.leader_index(), Some(0));
    assert_eq!(zk.connect_string(), format!("127.0.0.1:{}", zk.client_port(0)));
    let ruok = zk.four_letter_word(0, "ruok", Duration::from_secs(1)).unwrap();
    assert_eq!(ruok, "imok");
    // ZooKeeper's own logging lands in the member's log file.
    let tail = zk.log_tail(0, 500);
    assert!(tail.contains("QuorumPeerConfig"), "log tail:\n{tail}");
}

#[test]
fn three_nodes_fail_over_and_recover() {
    let t = Instant::now();
    let mut zk = ZkEnsemble::start(3).expect("start 3-node ZooKeeper");
    eprintln!("3-node ensemble serving after {:?}", t.elapsed());
    assert_eq!(zk.connect_string().split(',').count(), 3);

    let modes = zk.modes();
    assert_eq!(modes.iter().filter(|m| m.as_deref() == Some("leader")).count(), 1, "{modes:?}");
    assert_eq!(modes.iter().filter(|m| m.as_deref() == Some("follower")).count(), 2, "{modes:?}");
    let pids: Vec<u32> = (0..3).map(|i| zk.pid(i).unwrap()).collect();

    // Kill the leader: the other two elect a new one.
    let old = zk.leader_index().expect("a leader");
    zk.kill(old);
    assert!(!zk.is_running(old));
    assert!(pid_gone(pids[old]));
    let t = Instant::now();
    zk.wait_serving(Duration::from_secs(30)).expect("remaining two elect a leader");
    eprintln!("new leader after {:?}", t.elapsed());
    let new = zk.leader_index().expect("a new leader");
    assert_ne!(new, old);
    assert_eq!(zk.mode(old), None);

    // Bring the old leader back: all three serve, still exactly one leader.
    zk.restart(old).unwrap();
    let t = Instant::now();
    zk.wait_serving(Duration::from_secs(30)).expect("all three serve again");
    eprintln!("restarted member serving after {:?}", t.elapsed());
    assert!(zk.modes().iter().all(Option::is_some));
    assert!(zk.leader_index().is_some());
    assert!(zk.restart(old).is_err(), "restart of a running member");

    // Pause a follower: it stops answering; resume: it answers again.
    let leader = zk.leader_index().unwrap();
    let follower = (0..3).find(|&i| i != leader).unwrap();
    zk.pause(follower).unwrap();
    assert!(zk.is_paused(follower) && zk.is_running(follower));
    // A stopped JVM cannot answer; allow a moment for the stop to land.
    wait_until(Duration::from_secs(5), Duration::from_millis(100), "the paused follower to stop answering", || {
        zk.mode(follower).is_none().then_some(())
    })
    .unwrap();
    // The other two still form a quorum; the paused member is not waited for.
    zk.wait_serving(Duration::from_secs(10)).unwrap();
    zk.resume(follower).unwrap();
    let mode =
        wait_until(Duration::from_secs(30), Duration::from_millis(100), "the resumed follower to answer srvr", || {
            zk.mode(follower)
        })
        .unwrap();
    assert!(mode == "follower" || mode == "leader", "{mode}");
    zk.wait_serving(Duration::from_secs(30)).unwrap();

    // Drop kills and reaps every member.
    let live: Vec<u32> = (0..3).filter_map(|i| zk.pid(i)).collect();
    let dir = zk.dir().to_path_buf();
    drop(zk);
    for pid in live {
        assert!(pid_gone(pid), "pid {pid} survived drop");
    }
    assert!(!dir.exists(), "{} survived drop", dir.display());
}

#[test]
fn drop_during_panic_kills_members() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let zk = ZkEnsemble::start(1).expect("start 1-node ZooKeeper");
        tx.send(zk.pid(0).unwrap()).unwrap();
        panic!("test failure while the ensemble runs");
    });
    assert!(result.is_err());
    let pid = rx.recv().unwrap();
    assert!(pid_gone(pid), "ZooKeeper pid {pid} survived a panicking test");
}

#[test]
fn taken_client_port_fails_fast_with_log_tail() {
    // The override pins the port, so every retry hits the same conflict.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let t = Instant::now();
    let err = ZkEnsemble::builder()
        .with_members(1)
        .with_cfg("clientPort", port.to_string())
        .with_startup_timeout(Duration::from_secs(30))
        .start()
        .unwrap_err();
    eprintln!("bind failure reported after {:?}: {err}", t.elapsed());
    assert!(err.to_string().contains("Address already in use"), "{err}");
}

#[test]
fn five_nodes_elect_one_leader() {
    let t = Instant::now();
    let zk = ZkEnsemble::start(5).expect("start 5-node ZooKeeper");
    eprintln!("5-node ensemble serving after {:?}", t.elapsed());
    let modes = zk.modes();
    let count = |m: &str| modes.iter().filter(|x| x.as_deref() == Some(m)).count();
    assert_eq!((count("leader"), count("follower")), (1, 4), "{modes:?}");
}
