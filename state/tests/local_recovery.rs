//! Local recovery: restore from the local snapshot when it matches the manifest.

mod common;

use std::collections::BTreeMap;
use std::fs;

use common::{contents, put_range, DirRemote};
use keel_state::{
    open_backend, plan_upload, restore_backend, upload, BackendKind, LocalRecovery, SnapshotManifest, StateOptions,
};

async fn snapshot_and_upload(
    kind: BackendKind,
    local: &std::path::Path,
    remote: &DirRemote,
) -> (SnapshotManifest, BTreeMap<Vec<u8>, Vec<u8>>) {
    let mut model = BTreeMap::new();
    let mut b = open_backend(kind, local, "op").unwrap();
    put_range(b.as_mut(), &mut model, 0..400, 1);
    let snap = b.snapshot(5).unwrap();
    let m = upload(&plan_upload(&snap, None, true, "shared", "chk-5"), remote).await.unwrap();
    (m, model)
}

#[tokio::test]
async fn hit_restores_without_download_and_leaves_the_copy_intact() {
    for kind in BackendKind::ALL {
        let local = tempfile::tempdir().unwrap();
        let remote_dir = tempfile::tempdir().unwrap();
        let remote = DirRemote::new(remote_dir.path());
        let (m, model) = snapshot_and_upload(kind, local.path(), &remote).await;

        let found = LocalRecovery::find(local.path(), "op", &m).expect("local copy matches");
        assert_eq!(found, local.path().join("op/snapshots/chk-5"));
        // Restore from the local copy (same local dir, as after a task restart), then
        // write, compact and snapshot: the local copy must stay what the manifest says.
        let mut b = restore_backend(kind, local.path(), "op", &found).unwrap();
        assert_eq!(contents(b.as_ref()), model, "{kind}");
        put_range(b.as_mut(), &mut BTreeMap::new(), 0..400, 9);
        b.snapshot(6).unwrap();
        assert_eq!(LocalRecovery::find(local.path(), "op", &m), Some(found), "{kind}");
    }
}

#[tokio::test]
async fn miss_when_anything_differs() {
    for kind in BackendKind::ALL {
        let local = tempfile::tempdir().unwrap();
        let remote_dir = tempfile::tempdir().unwrap();
        let remote = DirRemote::new(remote_dir.path());
        let (m, _) = snapshot_and_upload(kind, local.path(), &remote).await;
        let dir = local.path().join("op/snapshots/chk-5");

        // Another checkpoint id, another name, another local dir: nothing there.
        let mut other = m.clone();
        other.checkpoint_id = 4;
        assert_eq!(LocalRecovery::find(local.path(), "op", &other), None);
        assert_eq!(LocalRecovery::find(local.path(), "other-op", &m), None);
        assert_eq!(LocalRecovery::find(remote_dir.path(), "op", &m), None);

        // A file with another size.
        let victim = dir.join(&m.files[0].name);
        let original = fs::read(&victim).unwrap();
        fs::write(&victim, [original.as_slice(), b"x"].concat()).unwrap();
        assert_eq!(LocalRecovery::find(local.path(), "op", &m), None, "{kind}");
        fs::write(&victim, &original).unwrap();
        assert!(LocalRecovery::find(local.path(), "op", &m).is_some());

        // A missing file, or an extra one.
        fs::write(dir.join("extra"), b"?").unwrap();
        assert_eq!(LocalRecovery::find(local.path(), "op", &m), None);
        fs::remove_file(dir.join("extra")).unwrap();
        fs::remove_file(&victim).unwrap();
        assert_eq!(LocalRecovery::find(local.path(), "op", &m), None);
    }
}

#[test]
fn pruning_keeps_the_completed_one_and_newer() {
    let local = tempfile::tempdir().unwrap();
    let mut b = open_backend(BackendKind::RocksDb, local.path(), "op").unwrap();
    for id in [1, 2, 3, 4] {
        b.put(format!("k{id}").as_bytes(), b"v").unwrap();
        b.snapshot(id).unwrap();
    }
    assert_eq!(LocalRecovery::local_snapshots(local.path(), "op").unwrap(), vec![1, 2, 3, 4]);
    assert_eq!(LocalRecovery::retain_only(local.path(), "op", 3).unwrap(), vec![1, 2]);
    assert_eq!(LocalRecovery::local_snapshots(local.path(), "op").unwrap(), vec![3, 4]);

    let on = StateOptions::new(local.path()).with_local_dir(local.path()).with_local_recovery(true);
    assert_eq!(LocalRecovery::checkpoint_completed(&on, "op", 4).unwrap(), vec![3]);
    assert_eq!(LocalRecovery::local_snapshots(local.path(), "op").unwrap(), vec![4]);

    b.snapshot(5).unwrap();
    b.snapshot(6).unwrap();
    let off = on.clone().with_local_recovery(false);
    assert_eq!(LocalRecovery::checkpoint_completed(&off, "op", 5).unwrap(), vec![4, 5]);
    assert_eq!(LocalRecovery::local_snapshots(local.path(), "op").unwrap(), vec![6]);
    assert_eq!(LocalRecovery::discard_all(local.path(), "op").unwrap(), vec![6]);
    assert_eq!(LocalRecovery::local_snapshots(local.path(), "nobody").unwrap(), Vec::<u64>::new());

    // The live instance is untouched by pruning.
    assert_eq!(b.get(b"k4").unwrap(), Some(b"v".to_vec()));
}
