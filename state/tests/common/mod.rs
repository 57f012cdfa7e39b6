//! Test scaffolding: a `SnapshotRemote` over a local directory, and small helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use keel_state::{KeyedStateBackend, RemoteFuture, SnapshotRemote};

/// Remote storage in a local directory. `put` is write-once (`create_new`), like the
/// storage crate's commit rule. Records every put.
pub struct DirRemote {
    pub root: PathBuf,
    pub puts: Mutex<Vec<String>>,
}

impl DirRemote {
    pub fn new(root: &Path) -> DirRemote {
        std::fs::create_dir_all(root).unwrap();
        DirRemote { root: root.to_path_buf(), puts: Mutex::new(Vec::new()) }
    }

    pub fn take_puts(&self) -> Vec<String> {
        std::mem::take(&mut *self.puts.lock().unwrap())
    }

    /// Every object path under the root, sorted.
    pub fn list(&self) -> Vec<String> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, root, out);
                } else {
                    out.push(p.strip_prefix(root).unwrap().to_str().unwrap().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out);
        out.sort();
        out
    }
}

impl SnapshotRemote for DirRemote {
    fn put<'a>(&'a self, path: &'a str, bytes: Vec<u8>) -> RemoteFuture<'a, ()> {
        Box::pin(async move {
            let full = self.root.join(path);
            tokio::fs::create_dir_all(full.parent().unwrap()).await.map_err(|e| e.to_string())?;
            use tokio::io::AsyncWriteExt;
            let mut f = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&full)
                .await
                .map_err(|e| format!("create {}: {e}", full.display()))?;
            f.write_all(&bytes).await.map_err(|e| e.to_string())?;
            self.puts.lock().unwrap().push(path.to_string());
            Ok(())
        })
    }

    fn get<'a>(&'a self, path: &'a str) -> RemoteFuture<'a, Vec<u8>> {
        Box::pin(async move { tokio::fs::read(self.root.join(path)).await.map_err(|e| e.to_string()) })
    }

    fn delete<'a>(&'a self, path: &'a str) -> RemoteFuture<'a, ()> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.root.join(path)).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// The whole contents of a backend.
pub fn contents(b: &dyn KeyedStateBackend) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    b.for_each(&mut |k, v| {
        out.insert(k.to_vec(), v.to_vec());
    })
    .unwrap();
    out
}

pub fn key(i: u32) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

pub fn value(i: u32, round: u32) -> Vec<u8> {
    format!("value-{i}-{round}-{}", "x".repeat(40)).into_bytes()
}

/// Puts keys `range` with values of `round` into both the backend and the model.
pub fn put_range(
    b: &mut dyn KeyedStateBackend,
    model: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    range: std::ops::Range<u32>,
    round: u32,
) {
    for i in range {
        b.put(&key(i), &value(i, round)).unwrap();
        model.insert(key(i), value(i, round));
    }
}
