//! Conformance of the ZooKeeper model (`keel_ha::sim_zk::ZkModel`, issue 11) with a real
//! 3-node ensemble: one script of two clients' operations runs against both and every answer
//! must agree — results, error kinds, versions, child-change counters, ephemeral owners (as
//! set or not), sequential names, the nodes a closed session leaves behind, and the watch
//! events each watch delivers (type and path). A difference is a bug in the model.
//!
//! What the script cannot compare: that a one-shot watch fires only once (the client's watcher
//! is consumed by its first event, so the real side cannot observe a second), and unknown
//! outcomes (no fault is injected into the real ensemble; the model's are unit-tested).

use std::time::Duration;

use keel_ha::sim_zk::{Mode, Op, SessionId, ZkModel};
use zookeeper_client::{Acls, Client, CreateMode, MultiWriteError, OneshotWatcher, Stat};

type Answer = Result<String, String>;

fn stat(s: &Stat) -> String {
    format!(
        "version {} cversion {} children {} length {} ephemeral {}",
        s.version,
        s.cversion,
        s.num_children,
        s.data_length,
        s.ephemeral_owner != 0
    )
}

fn kind(e: &zookeeper_client::Error) -> String {
    format!("{e:?}")
}

/// Which of the two clients.
#[derive(Clone, Copy)]
enum Who {
    A,
    B,
}

enum Backend {
    Zk { a: Option<Client>, b: Client, watchers: Vec<(String, OneshotWatcher)> },
    Model { m: ZkModel, a: SessionId, b: SessionId },
}

fn mode_of(m: Mode) -> CreateMode {
    match (m.ephemeral, m.sequential) {
        (false, false) => CreateMode::Persistent,
        (false, true) => CreateMode::PersistentSequential,
        (true, false) => CreateMode::Ephemeral,
        (true, true) => CreateMode::EphemeralSequential,
    }
}

/// The real client of `who` (A's is gone once it closed its session).
fn client<'c>(a: &'c Option<Client>, b: &'c Client, who: Who) -> &'c Client {
    match who {
        Who::A => a.as_ref().expect("client A was closed"),
        Who::B => b,
    }
}

/// The model session of `who`.
fn session(a: SessionId, b: SessionId, who: Who) -> SessionId {
    match who {
        Who::A => a,
        Who::B => b,
    }
}

impl Backend {
    async fn create(&mut self, who: Who, path: &str, data: &[u8], mode: Mode) -> Answer {
        match self {
            Backend::Zk { a, b, .. } => client(a, b, who)
                .create(path, data, &mode_of(mode).with_acls(Acls::anyone_all()))
                .await
                .map(|(st, seq)| {
                    let name = if mode.sequential { format!("{path}{seq}") } else { path.to_string() };
                    format!("{name} {}", stat(&st))
                })
                .map_err(|e| kind(&e)),
            Backend::Model { m, a, b } => m
                .create(session(*a, *b, who), path, data, mode)
                .map(|(st, name)| format!("{name} {}", stat(&st)))
                .map_err(|e| kind(&e)),
        }
    }

    async fn set(&mut self, who: Who, path: &str, data: &[u8], version: Option<i32>) -> Answer {
        match self {
            Backend::Zk { a, b, .. } => client(a, b, who).set_data(path, data, version).await.map(|s| stat(&s)),
            Backend::Model { m, a, b } => m.set_data(session(*a, *b, who), path, data, version).map(|s| stat(&s)),
        }
        .map_err(|e| kind(&e))
    }

    async fn delete(&mut self, who: Who, path: &str, version: Option<i32>) -> Answer {
        match self {
            Backend::Zk { a, b, .. } => client(a, b, who).delete(path, version).await,
            Backend::Model { m, a, b } => m.delete(session(*a, *b, who), path, version),
        }
        .map(|()| "deleted".to_string())
        .map_err(|e| kind(&e))
    }

    async fn get(&mut self, who: Who, path: &str) -> Answer {
        match self {
            Backend::Zk { a, b, .. } => client(a, b, who).get_data(path).await,
            Backend::Model { m, a, b } => m.get_data(session(*a, *b, who), path, false),
        }
        .map(|(d, s)| format!("{:?} {}", String::from_utf8_lossy(&d), stat(&s)))
        .map_err(|e| kind(&e))
    }

    async fn children(&mut self, who: Who, path: &str) -> Answer {
        match self {
            Backend::Zk { a, b, .. } => client(a, b, who).list_children(path).await,
            Backend::Model { m, a, b } => m.children(session(*a, *b, who), path, false),
        }
        .map(|mut v| {
            v.sort();
            v.join(",")
        })
        .map_err(|e| kind(&e))
    }

    /// Client B sets a watch: `what` is "data" (get), "exists" or "children".
    async fn watch(&mut self, what: &str, path: &str) -> Answer {
        match self {
            Backend::Zk { b, watchers, .. } => {
                let label = format!("{what} {path}");
                let r = match what {
                    "data" => b.get_and_watch_data(path).await.map(|(_, s, w)| (stat(&s), w)),
                    "exists" => {
                        b.check_and_watch_stat(path).await.map(|(s, w)| (s.map_or("absent".into(), |s| stat(&s)), w))
                    }
                    _ => b.list_and_watch_children(path).await.map(|(c, w)| (c.len().to_string(), w)),
                };
                r.map(|(answer, w)| {
                    watchers.push((label, w));
                    answer
                })
                .map_err(|e| kind(&e))
            }
            Backend::Model { m, b, .. } => match what {
                "data" => m.get_data(*b, path, true).map(|(_, s)| stat(&s)),
                "exists" => m.exists(*b, path, true).map(|s| s.map_or("absent".into(), |s| stat(&s))),
                _ => m.children(*b, path, true).map(|c| c.len().to_string()),
            }
            .map_err(|e| kind(&e)),
        }
    }

    /// The events the watches set so far delivered to client B, sorted. On the real side each
    /// pending watcher is awaited (bounded: 10 s); every watch set before this step must have
    /// fired by then, so the script only lists steps whose watches all fire.
    async fn events(&mut self) -> Answer {
        let mut out = match self {
            Backend::Zk { watchers, .. } => {
                let mut out = Vec::new();
                for (label, w) in watchers.drain(..) {
                    match tokio::time::timeout(Duration::from_secs(10), w.changed()).await {
                        Ok(e) => out.push(format!("{:?} {}", e.event_type, e.path)),
                        Err(_) => return Err(format!("the watch {label} did not fire within 10 s")),
                    }
                }
                out
            }
            Backend::Model { m, b, .. } => {
                m.take_events(*b).into_iter().map(|e| format!("{:?} {}", e.event_type, e.path)).collect()
            }
        };
        out.sort();
        Ok(out.join("; "))
    }

    /// Client A closes its session (its ephemeral nodes go).
    async fn close_a(&mut self) -> Answer {
        match self {
            Backend::Zk { a, .. } => {
                keel_ha::session::close(a.take().expect("open"), Duration::from_secs(10)).await;
                Ok("closed".into())
            }
            Backend::Model { m, a, .. } => m.close_session(*a).map(|()| "closed".into()).map_err(|e| kind(&e)),
        }
    }

    async fn multi(&mut self, who: Who, ops: &[Op]) -> Answer {
        match self {
            Backend::Zk { a, b, .. } => {
                let mut w = client(a, b, who).new_multi_writer();
                for op in ops {
                    match op {
                        Op::Create { path, data, mode } => {
                            w.add_create(path, data, &mode_of(*mode).with_acls(Acls::anyone_all()))
                        }
                        Op::SetData { path, data, version } => w.add_set_data(path, data, *version),
                        Op::Delete { path, version } => w.add_delete(path, *version),
                        Op::Check { path, version } => w.add_check_version(path, version.unwrap_or(-1)),
                    }
                    .unwrap();
                }
                match w.commit().await {
                    Ok(_) => Ok("committed".into()),
                    Err(MultiWriteError::OperationFailed { index, source }) => {
                        Err(format!("op {index}: {}", kind(&source)))
                    }
                    Err(MultiWriteError::RequestFailed { source }) => Err(format!("request: {}", kind(&source))),
                }
            }
            Backend::Model { m, a, b } => m
                .multi(session(*a, *b, who), ops)
                .map(|_| "committed".into())
                .map_err(|(i, e)| format!("op {i}: {}", kind(&e))),
        }
    }
}

async fn script(b: &mut Backend) -> Vec<(String, Answer)> {
    use Who::{A, B};
    let mut out = Vec::new();
    macro_rules! step {
        ($label:expr, $e:expr) => {{
            let answer = $e.await;
            out.push(($label.to_string(), answer));
        }};
    }
    step!("A creates /c", b.create(A, "/c", b"root", Mode::PERSISTENT));
    step!("A creates an ephemeral sequential child", b.create(A, "/c/e-", b"", Mode::EPHEMERAL_SEQUENTIAL));
    step!("A creates a persistent sequential child", b.create(A, "/c/p-", b"p", Mode::PERSISTENT_SEQUENTIAL));
    step!("A creates an ephemeral", b.create(A, "/c/eph", b"e", Mode::EPHEMERAL));
    step!("a child of an ephemeral", b.create(A, "/c/eph/x", b"", Mode::PERSISTENT));
    step!("stat of /c", b.get(B, "/c"));
    step!("B watches /c/x (absent)", b.watch("exists", "/c/x"));
    step!("B watches the data of /c/p-0000000001", b.watch("data", "/c/p-0000000001"));
    step!("B watches the children of /c", b.watch("children", "/c"));
    step!("A creates /c/x", b.create(A, "/c/x", b"x", Mode::PERSISTENT));
    step!("A sets /c/p-0000000001", b.set(A, "/c/p-0000000001", b"q", Some(0)));
    step!("B's events: created, data changed, children changed", b.events());
    step!("B watches the data of /c/x again", b.watch("data", "/c/x"));
    step!("delete /c/x with a wrong version", b.delete(A, "/c/x", Some(4)));
    step!("delete /c/x", b.delete(A, "/c/x", Some(0)));
    step!("B's events: deleted", b.events());
    step!(
        "the next sequential name counts the children created, not the deleted",
        b.create(A, "/c/p-", b"", Mode::PERSISTENT_SEQUENTIAL)
    );
    step!(
        "a multi failing at its check",
        b.multi(
            A,
            &[
                Op::Create { path: "/c/m".into(), data: vec![], mode: Mode::PERSISTENT },
                Op::Check { path: "/c/p-0000000001".into(), version: Some(0) },
            ]
        )
    );
    step!("nothing of it landed", b.children(B, "/c"));
    step!(
        "a multi creating an ephemeral and checking a version",
        b.multi(
            A,
            &[
                Op::Create { path: "/c/m".into(), data: b"m".to_vec(), mode: Mode::EPHEMERAL },
                Op::Check { path: "/c/p-0000000001".into(), version: Some(1) },
            ]
        )
    );
    step!("B watches the children of /c before A closes", b.watch("children", "/c"));
    step!("B watches the ephemeral /c/eph", b.watch("data", "/c/eph"));
    step!("A closes its session", b.close_a());
    step!("B's events: children changed, ephemeral deleted", b.events());
    step!("A's ephemerals are gone", b.children(B, "/c"));
    step!("stat of /c after the close", b.get(B, "/c"));
    step!("B creates a sequential child after it all", b.create(B, "/c/p-", b"", Mode::PERSISTENT_SEQUENTIAL));
    step!("B deletes /c with children", b.delete(B, "/c", None));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zookeeper_model_answers_like_a_real_ensemble() {
    let zk = chaos_tests::ZkEnsemble::start(3).expect("3-node ZooKeeper ensemble");
    let connect = || async {
        Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .connect(&zk.connect_string())
            .await
            .expect("connect")
    };
    let mut real = Backend::Zk { a: Some(connect().await), b: connect().await, watchers: vec![] };
    let real_answers = script(&mut real).await;
    let mut model = ZkModel::new();
    let (a, b) = (model.open_session(10_000), model.open_session(10_000));
    let model_answers = script(&mut Backend::Model { m: model, a, b }).await;
    let mut differences = Vec::new();
    for ((label, r), (_, m)) in real_answers.iter().zip(&model_answers) {
        if r != m {
            differences.push(format!("{label}:\n  ZooKeeper {r:?}\n  model     {m:?}"));
        }
    }
    assert!(differences.is_empty(), "the model differs from ZooKeeper:\n{}", differences.join("\n"));
    // The script reaches each error and event kind (a script of successes would agree
    // trivially).
    let all: String = real_answers.iter().map(|(_, a)| format!("{a:?}\n")).collect();
    for kind in [
        "NoChildrenForEphemerals",
        "BadVersion",
        "NotEmpty",
        "op 1: BadVersion",
        "NodeCreated",
        "NodeDataChanged",
        "NodeChildrenChanged",
        "NodeDeleted",
        "ephemeral true",
        "/c/p-0000000004 ",
    ] {
        assert!(all.contains(kind), "no step answered {kind}:\n{all}");
    }
}
