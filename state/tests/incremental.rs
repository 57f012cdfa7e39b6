//! Incremental snapshots of a real RocksDB, uploaded to a directory-backed remote, then
//! retention and restore from what is left.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{contents, put_range, DirRemote};
use keel_state::{
    deletable_after_retention, delete_remote_files, download, plan_upload, restore_backend, upload, BackendKind,
    FileKind, KeyedStateBackend, LocalSnapshot, RocksDbBackend, SnapshotManifest, StateError,
};

fn names(snap: &LocalSnapshot, kind: FileKind) -> BTreeSet<String> {
    snap.files.iter().filter(|f| f.kind == kind).map(|f| f.name.clone()).collect()
}

fn remote_paths(manifests: &[&SnapshotManifest]) -> BTreeSet<String> {
    manifests.iter().flat_map(|m| m.files.iter().map(|f| f.remote_path.clone())).collect()
}

async fn restore_and_read(m: &SnapshotManifest, remote: &DirRemote) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let snap = download(m, remote, &dir.path().join("download")).await.unwrap();
    let b = restore_backend(m.backend, dir.path(), "restored", &snap.dir).unwrap();
    contents(b.as_ref())
}

#[tokio::test]
async fn second_snapshot_uploads_only_new_ssts_and_meta() {
    let local = tempfile::tempdir().unwrap();
    let remote_dir = tempfile::tempdir().unwrap();
    let remote = DirRemote::new(remote_dir.path());
    let mut model = BTreeMap::new();
    let mut db = RocksDbBackend::open(local.path(), "op").unwrap();

    put_range(&mut db, &mut model, 0..2000, 1); // batch A
    let s1 = db.snapshot(1).unwrap();
    let p1 = plan_upload(&s1, None, true, "shared", "chk-1");
    assert!(p1.reuse.is_empty());
    let m1 = upload(&p1, &remote).await.unwrap();
    assert_eq!(remote.take_puts().len(), s1.files.len());

    put_range(&mut db, &mut model, 2000..3000, 2); // batch B
    let s2 = db.snapshot(2).unwrap();
    let p2 = plan_upload(&s2, Some(&m1), true, "shared", "chk-2");

    let old_ssts = names(&s1, FileKind::Sst);
    let new_ssts: BTreeSet<String> = names(&s2, FileKind::Sst).difference(&old_ssts).cloned().collect();
    assert!(!old_ssts.is_empty() && !new_ssts.is_empty(), "s1 {old_ssts:?}, new {new_ssts:?}");
    assert!(old_ssts.is_subset(&names(&s2, FileKind::Sst)), "no compaction expected between two small flushes");
    let reused: BTreeSet<String> = p2.reuse.iter().map(|f| f.name.clone()).collect();
    assert_eq!(reused, old_ssts);
    let uploaded: BTreeSet<String> = p2.upload.iter().map(|(f, _)| f.name.clone()).collect();
    let expected: BTreeSet<String> = new_ssts.union(&names(&s2, FileKind::Meta)).cloned().collect();
    assert_eq!(uploaded, expected, "exactly the new SSTs and the meta files");

    let m2 = upload(&p2, &remote).await.unwrap();
    let puts: BTreeSet<String> = remote.take_puts().into_iter().collect();
    assert_eq!(puts, p2.upload.iter().map(|(_, r)| r.clone()).collect());
    for f in &m2.files {
        if old_ssts.contains(&f.name) {
            assert_eq!(Some(f), m1.files.iter().find(|g| g.name == f.name), "same remote object as checkpoint 1");
        }
        assert_eq!(f.shared, f.name.ends_with(".sst"));
    }
    // Both checkpoints restore from remote storage alone.
    drop(db);
    assert_eq!(restore_and_read(&m2, &remote).await, model);
    assert_eq!(restore_and_read(&m1, &remote).await.len(), 2000);
}

#[tokio::test]
async fn compaction_and_retention_delete_exactly_the_unused_files() {
    let local = tempfile::tempdir().unwrap();
    let remote_dir = tempfile::tempdir().unwrap();
    let remote = DirRemote::new(remote_dir.path());
    let mut model = BTreeMap::new();
    let mut db = RocksDbBackend::open(local.path(), "op").unwrap();

    let mut manifests: Vec<SnapshotManifest> = Vec::new();
    let mut models = Vec::new();
    for id in 1..=4u64 {
        let round = id as u32;
        put_range(&mut db, &mut model, (round - 1) * 500..round * 500 + 100, round);
        if id == 3 {
            db.compact(); // rewrites every SST
        }
        let snap = db.snapshot(id).unwrap();
        let plan = plan_upload(&snap, manifests.last(), true, "shared", &format!("chk-{id}"));
        if id == 3 {
            assert!(plan.reuse.is_empty(), "after a full compaction no SST is reused: {:?}", plan.reuse);
        } else if id > 1 {
            assert!(!plan.reuse.is_empty());
        }
        manifests.push(upload(&plan, &remote).await.unwrap());
        models.push(model.clone());
    }
    drop(db);
    let [m1, m2, m3, m4] = [&manifests[0], &manifests[1], &manifests[2], &manifests[3]];
    assert_eq!(remote.list(), remote_paths(&[m1, m2, m3, m4]).into_iter().collect::<Vec<_>>());

    // Retain 2: drop 1 and 2 once 4 completed.
    let del = deletable_after_retention(&[m3.clone(), m4.clone()], &[m1.clone(), m2.clone()]);
    let expected: BTreeSet<String> = remote_paths(&[m1, m2]).difference(&remote_paths(&[m3, m4])).cloned().collect();
    assert_eq!(del.iter().cloned().collect::<BTreeSet<_>>(), expected);
    delete_remote_files(&del, &remote).await.unwrap();
    assert_eq!(remote.list(), remote_paths(&[m3, m4]).into_iter().collect::<Vec<_>>());
    assert_eq!(restore_and_read(m3, &remote).await, models[2]);
    assert_eq!(restore_and_read(m4, &remote).await, models[3]);

    // Retain 1: drop 3.
    let del = deletable_after_retention(std::slice::from_ref(m4), std::slice::from_ref(m3));
    delete_remote_files(&del, &remote).await.unwrap();
    assert_eq!(remote.list(), remote_paths(&[m4]).into_iter().collect::<Vec<_>>());
    assert_eq!(restore_and_read(m4, &remote).await, models[3]);

    // A checkpoint whose files are gone fails to download, naming the remote path.
    let dir = tempfile::tempdir().unwrap();
    let err = download(m1, &remote, dir.path()).await.unwrap_err();
    let StateError::Remote { op: "get", path, .. } = &err else { panic!("{err}") };
    assert!(m1.files.iter().any(|f| &f.remote_path == path));
    assert!(err.is_temporary());
}

#[tokio::test]
async fn damaged_remote_file_is_reported_by_path() {
    let local = tempfile::tempdir().unwrap();
    let remote_dir = tempfile::tempdir().unwrap();
    let remote = DirRemote::new(remote_dir.path());
    let mut db = RocksDbBackend::open(local.path(), "op").unwrap();
    put_range(&mut db, &mut BTreeMap::new(), 0..100, 1);
    let snap = db.snapshot(1).unwrap();
    let m = upload(&plan_upload(&snap, None, true, "shared", "chk-1"), &remote).await.unwrap();
    let victim = m.files.iter().find(|f| f.name.ends_with(".sst")).unwrap();
    let full = remote_dir.path().join(&victim.remote_path);
    let bytes = std::fs::read(&full).unwrap();
    std::fs::write(&full, &bytes[..bytes.len() / 2]).unwrap();

    let err = download(&m, &remote, &local.path().join("dl")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "corrupt state file {}: {} bytes, the manifest of checkpoint 1 says {}",
            victim.remote_path,
            bytes.len() / 2,
            victim.size
        )
    );
}

#[tokio::test]
async fn failed_upload_cleans_up_what_it_wrote() {
    let local = tempfile::tempdir().unwrap();
    let remote_dir = tempfile::tempdir().unwrap();
    let remote = DirRemote::new(remote_dir.path());
    let mut db = RocksDbBackend::open(local.path(), "op").unwrap();
    put_range(&mut db, &mut BTreeMap::new(), 0..100, 1);
    let snap = db.snapshot(1).unwrap();
    let plan = plan_upload(&snap, None, false, "shared", "chk-1");
    // Occupy the last object's path: the write-once put fails there.
    let (_, last) = plan.upload.last().unwrap();
    std::fs::create_dir_all(remote_dir.path().join("chk-1")).unwrap();
    std::fs::write(remote_dir.path().join(last), b"zombie").unwrap();

    let err = upload(&plan, &remote).await.unwrap_err();
    assert!(matches!(&err, StateError::Remote { op: "put", path, .. } if path == last), "{err}");
    assert_eq!(remote.list(), vec![last.clone()], "everything this attempt wrote is gone");
}

#[tokio::test]
async fn hashmap_snapshots_upload_whole_every_time() {
    let local = tempfile::tempdir().unwrap();
    let remote_dir = tempfile::tempdir().unwrap();
    let remote = DirRemote::new(remote_dir.path());
    let mut model = BTreeMap::new();
    let mut b = keel_state::open_backend(BackendKind::HashMap, local.path(), "op").unwrap();
    put_range(b.as_mut(), &mut model, 0..300, 1);
    let m1 = upload(&plan_upload(&b.snapshot(1).unwrap(), None, true, "shared", "chk-1"), &remote).await.unwrap();
    put_range(b.as_mut(), &mut model, 300..400, 2);
    let p2 = plan_upload(&b.snapshot(2).unwrap(), Some(&m1), true, "shared", "chk-2");
    assert!(p2.reuse.is_empty());
    assert_eq!(p2.upload.len(), 1);
    assert_eq!(p2.upload[0].1, "chk-2/hashmap-state.bin");
    let m2 = upload(&p2, &remote).await.unwrap();
    assert!(!m2.files[0].shared);
    assert_eq!(SnapshotManifest::decode(&m2.encode()).unwrap(), m2);
    assert_eq!(restore_and_read(&m2, &remote).await, model);
}

fn _object_safe(_: &dyn KeyedStateBackend) {}

/// The transfer futures can be handed to `tokio::spawn`.
#[allow(dead_code)]
fn _futures_are_send(plan: &keel_state::UploadPlan, m: &SnapshotManifest, remote: &DirRemote, dir: &std::path::Path) {
    fn send<T: Send>(_: T) {}
    send(upload(plan, remote));
    send(download(m, remote, dir));
    send(delete_remote_files(&[], remote));
}
