//! Conformance of the local pointer tree (`keel_ha::LocalMeta`, the store of
//! `high-availability.type: none`) with ZooKeeper: the same script of operations runs against a
//! real 3-node ensemble and against the local tree, and every answer must agree (results,
//! error kinds, versions, children, the failing index of a multi-op, nothing of a failed
//! multi-op applied). These are the operations and errors the job stores rely on; sessions,
//! ephemeral and sequential nodes, watches and ACLs are not part of the local tree (a single
//! dispatcher has no use for them) and are not compared.

use keel_ha::local::{LocalMeta, LocalOp};
use zookeeper_client::{Acls, Client, CreateMode, MultiWriteError};

enum Backend {
    Zk(Client),
    Local(LocalMeta),
}

/// An answer, reduced to what both sides must agree on.
type Answer = Result<String, String>;

fn kind(e: &zookeeper_client::Error) -> String {
    format!("{e:?}")
}

fn stat(s: &zookeeper_client::Stat) -> String {
    format!("version {} children {} length {}", s.version, s.num_children, s.data_length)
}

impl Backend {
    async fn create(&self, path: &str, data: &[u8]) -> Answer {
        match self {
            Backend::Zk(c) => {
                c.create(path, data, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await.map(|(s, _)| stat(&s))
            }
            Backend::Local(m) => m.create(path, data).map(|s| stat(&s)),
        }
        .map_err(|e| kind(&e))
    }

    async fn set(&self, path: &str, data: &[u8], version: Option<i32>) -> Answer {
        match self {
            Backend::Zk(c) => c.set_data(path, data, version).await,
            Backend::Local(m) => m.set_data(path, data, version),
        }
        .map(|s| stat(&s))
        .map_err(|e| kind(&e))
    }

    async fn delete(&self, path: &str, version: Option<i32>) -> Answer {
        match self {
            Backend::Zk(c) => c.delete(path, version).await,
            Backend::Local(m) => m.delete(path, version),
        }
        .map(|()| "deleted".to_string())
        .map_err(|e| kind(&e))
    }

    async fn get(&self, path: &str) -> Answer {
        match self {
            Backend::Zk(c) => c.get_data(path).await,
            Backend::Local(m) => m.get_data(path),
        }
        .map(|(d, s)| format!("{} {}", String::from_utf8_lossy(&d), stat(&s)))
        .map_err(|e| kind(&e))
    }

    async fn exists(&self, path: &str) -> Answer {
        match self {
            Backend::Zk(c) => c.check_stat(path).await,
            Backend::Local(m) => m.check_stat(path),
        }
        .map(|s| s.map_or("absent".to_string(), |s| stat(&s)))
        .map_err(|e| kind(&e))
    }

    async fn children(&self, path: &str) -> Answer {
        match self {
            Backend::Zk(c) => c.list_children(path).await,
            Backend::Local(m) => m.list_children(path),
        }
        .map(|mut v| {
            v.sort();
            v.join(",")
        })
        .map_err(|e| kind(&e))
    }

    async fn multi(&self, ops: &[LocalOp]) -> Answer {
        match self {
            Backend::Zk(c) => {
                let mut w = c.new_multi_writer();
                let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
                for op in ops {
                    match op {
                        LocalOp::Create { path, data } => w.add_create(path, data, &options),
                        LocalOp::SetData { path, data, version } => w.add_set_data(path, data, *version),
                        LocalOp::Delete { path, version } => w.add_delete(path, *version),
                    }
                    .unwrap();
                }
                match w.commit().await {
                    Ok(_) => Ok("committed".to_string()),
                    Err(MultiWriteError::OperationFailed { index, source }) => {
                        Err(format!("op {index}: {}", kind(&source)))
                    }
                    Err(MultiWriteError::RequestFailed { source }) => Err(format!("request: {}", kind(&source))),
                }
            }
            Backend::Local(m) => match m.multi(ops) {
                Ok(()) => Ok("committed".to_string()),
                Err((index, source)) => Err(format!("op {index}: {}", kind(&source))),
            },
        }
    }
}

fn create(path: &str, data: &str) -> LocalOp {
    LocalOp::Create { path: path.into(), data: data.as_bytes().to_vec() }
}

/// The script: every step's answer, labelled.
async fn script(b: &Backend) -> Vec<(String, Answer)> {
    let mut out = Vec::new();
    macro_rules! step {
        ($label:expr, $e:expr) => {
            out.push(($label.to_string(), $e.await))
        };
    }
    step!("create /t", b.create("/t", b""));
    step!("create /t/a", b.create("/t/a", b"one"));
    step!("create /t/a again", b.create("/t/a", b"two"));
    step!("create under a missing parent", b.create("/t/nope/x", b""));
    step!("set with a wrong version", b.set("/t/a", b"x", Some(5)));
    step!("set with the right version", b.set("/t/a", b"two", Some(0)));
    step!("set without a version", b.set("/t/a", b"three", None));
    step!("set a missing node", b.set("/t/nope", b"", None));
    step!("get", b.get("/t/a"));
    step!("get a missing node", b.get("/t/nope"));
    step!("create /t/a/b", b.create("/t/a/b", b""));
    step!("create /t/a/c", b.create("/t/a/c", b"c"));
    step!("create /t/a/b/deep", b.create("/t/a/b/deep", b""));
    step!("children of /t/a", b.children("/t/a"));
    step!("children of a leaf", b.children("/t/a/c"));
    step!("children of a missing node", b.children("/t/nope"));
    step!("exists /t/a", b.exists("/t/a"));
    step!("exists a missing node", b.exists("/t/nope"));
    step!("delete a node with children", b.delete("/t/a", None));
    step!("delete with a wrong version", b.delete("/t/a/c", Some(3)));
    step!("delete with the right version", b.delete("/t/a/c", Some(0)));
    step!("delete a missing node", b.delete("/t/a/c", None));
    step!("multi failing at its second op", b.multi(&[create("/t/m", "m"), create("/t/a", "")]));
    step!("nothing of the failed multi landed", b.exists("/t/m"));
    step!(
        "multi that commits",
        b.multi(&[
            create("/t/m", "m"),
            create("/t/m/child", "c"),
            LocalOp::SetData { path: "/t/a".into(), data: b"four".to_vec(), version: Some(2) },
            LocalOp::Delete { path: "/t/a/b/deep".into(), version: Some(0) },
        ])
    );
    step!("after the multi: /t/m", b.get("/t/m"));
    step!("after the multi: /t/a", b.get("/t/a"));
    step!("after the multi: children of /t/a/b", b.children("/t/a/b"));
    step!(
        "multi with a stale version",
        b.multi(&[
            LocalOp::Delete { path: "/t/m/child".into(), version: Some(0) },
            LocalOp::SetData { path: "/t/m".into(), data: vec![], version: Some(9) }
        ])
    );
    step!("the stale multi deleted nothing", b.exists("/t/m/child"));
    step!(
        "multi deleting a child then its parent",
        b.multi(&[
            LocalOp::Delete { path: "/t/m/child".into(), version: None },
            LocalOp::Delete { path: "/t/m".into(), version: None }
        ])
    );
    step!("children of /t", b.children("/t"));
    step!("multi creating one path twice", b.multi(&[create("/t/d", ""), create("/t/d", "")]));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_pointer_tree_answers_like_zookeeper() {
    let zk = chaos_tests::ZkEnsemble::start(3).expect("3-node ZooKeeper ensemble");
    let client = Client::connector().connect(&zk.connect_string()).await.expect("connect");
    let dir = tempfile::tempdir().unwrap();
    let zk_answers = script(&Backend::Zk(client)).await;
    let local_answers = script(&Backend::Local(LocalMeta::open(dir.path()).unwrap())).await;
    let mut differences = Vec::new();
    for ((label, z), (_, l)) in zk_answers.iter().zip(&local_answers) {
        if z != l {
            differences.push(format!("{label}: ZooKeeper {z:?}, local {l:?}"));
        }
    }
    assert!(differences.is_empty(), "the local tree differs from ZooKeeper:\n{}", differences.join("\n"));
    // The script exercises each error kind the stores rely on (a script of successes would
    // agree trivially).
    let errors: Vec<&String> = zk_answers.iter().filter_map(|(_, a)| a.as_ref().err()).collect();
    for kind in ["NodeExists", "NoNode", "BadVersion", "NotEmpty", "op 1: NodeExists", "op 1: BadVersion"] {
        assert!(errors.iter().any(|e| e.contains(kind)), "no step answered {kind}: {errors:?}");
    }
    // What the tree holds survives a reopen, answer for answer.
    let reopened = Backend::Local(LocalMeta::open(dir.path()).unwrap());
    let z = Backend::Zk(Client::connector().connect(&zk.connect_string()).await.unwrap());
    for path in ["/t", "/t/a", "/t/a/b", "/t/d"] {
        assert_eq!(reopened.get(path).await, z.get(path).await, "{path} after a reopen");
        assert_eq!(reopened.children(path).await, z.children(path).await, "children of {path} after a reopen");
    }
}
