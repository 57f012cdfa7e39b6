//! One conformance suite, run against every backend kind (real RocksDB, no mocks).

mod common;

use std::collections::BTreeMap;
use std::fs;

use common::{contents, key, put_range, value};
use keel_state::{open_backend, restore_backend, BackendKind, FileKind, StateError, HASHMAP_SNAPSHOT_FILE};

fn put_get_delete(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let mut b = open_backend(kind, dir.path(), "op-1").unwrap();
    assert_eq!(b.kind(), kind);
    assert_eq!(b.get(b"missing").unwrap(), None);
    b.put(b"k1", b"v1").unwrap();
    b.put(b"k2", b"").unwrap();
    b.put(b"k1", b"v1-again").unwrap();
    assert_eq!(b.get(b"k1").unwrap(), Some(b"v1-again".to_vec()));
    assert_eq!(b.get(b"k2").unwrap(), Some(Vec::new()), "an empty value is a value");
    b.delete(b"k1").unwrap();
    b.delete(b"never-there").unwrap();
    assert_eq!(b.get(b"k1").unwrap(), None);

    // for_each visits ascending keys, binary keys included.
    b.put(&[0xff, 0x00], b"hi").unwrap();
    b.put(&[0x00], b"lo").unwrap();
    let mut seen = Vec::new();
    b.for_each(&mut |k, _| seen.push(k.to_vec())).unwrap();
    assert_eq!(seen, vec![vec![0x00], b"k2".to_vec(), vec![0xff, 0x00]]);
}

fn snapshot_and_restore(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    let mut b = open_backend(kind, dir.path(), "op-1").unwrap();
    put_range(b.as_mut(), &mut model, 0..500, 1);
    for i in (0..500).step_by(7) {
        b.delete(&key(i)).unwrap();
        model.remove(&key(i));
    }
    let snap = b.snapshot(3).unwrap();
    assert_eq!(snap.checkpoint_id, 3);
    assert_eq!(snap.backend, kind);
    assert_eq!(snap.dir, dir.path().join("op-1/snapshots/chk-3"));
    assert!(!snap.files.is_empty());
    for f in &snap.files {
        assert_eq!(fs::metadata(&f.path).unwrap().len(), f.size, "{}", f.name);
        assert_eq!(f.path, snap.dir.join(&f.name));
    }
    match kind {
        BackendKind::HashMap => {
            assert_eq!(snap.files.len(), 1);
            assert_eq!((snap.files[0].name.as_str(), snap.files[0].kind), (HASHMAP_SNAPSHOT_FILE, FileKind::Meta));
        }
        BackendKind::RocksDb => {
            assert!(snap.files.iter().any(|f| f.name == "CURRENT" && f.kind == FileKind::Meta));
            assert!(snap.files.iter().any(|f| f.kind == FileKind::Sst));
        }
    }

    // Writes after the snapshot are not in it.
    b.put(b"after", b"snapshot").unwrap();
    drop(b);

    // Restore into a fresh local dir.
    let other = tempfile::tempdir().unwrap();
    let restored = restore_backend(kind, other.path(), "op-1", &snap.dir).unwrap();
    assert_eq!(contents(restored.as_ref()), model);
    assert_eq!(restored.get(&key(1)).unwrap(), Some(value(1, 1)));
    assert_eq!(restored.get(b"after").unwrap(), None);

    // A restored backend keeps working and snapshots again.
    let mut restored = restored;
    restored.put(b"new", b"1").unwrap();
    let snap2 = restored.snapshot(4).unwrap();
    let again = restore_backend(kind, tempfile::tempdir().unwrap().path(), "op-1", &snap2.dir).unwrap();
    model.insert(b"new".to_vec(), b"1".to_vec());
    assert_eq!(contents(again.as_ref()), model);

    // Two open backends never share a state directory.
    let err = open_backend(kind, other.path(), "op-1").unwrap_err();
    assert_eq!(err, StateError::InUse { path: other.path().join("op-1") });
    assert_eq!(
        err.to_string(),
        format!("state directory {} is already used by an open backend", other.path().join("op-1").display())
    );
    drop(restored);

    // open_backend starts empty even when an earlier run left state behind.
    let fresh = open_backend(kind, other.path(), "op-1").unwrap();
    assert!(contents(fresh.as_ref()).is_empty());
}

fn snapshot_replaces_leftover_dir(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let mut b = open_backend(kind, dir.path(), "s").unwrap();
    let leftover = dir.path().join("s/snapshots/chk-1");
    fs::create_dir_all(&leftover).unwrap();
    fs::write(leftover.join("garbage"), b"x").unwrap();
    b.put(b"a", b"b").unwrap();
    let snap = b.snapshot(1).unwrap();
    assert!(snap.files.iter().all(|f| f.name != "garbage"));
}

#[test]
fn rocksdb_put_get_delete() {
    put_get_delete(BackendKind::RocksDb);
}

#[test]
fn hashmap_put_get_delete() {
    put_get_delete(BackendKind::HashMap);
}

#[test]
fn rocksdb_snapshot_and_restore() {
    snapshot_and_restore(BackendKind::RocksDb);
}

#[test]
fn hashmap_snapshot_and_restore() {
    snapshot_and_restore(BackendKind::HashMap);
}

#[test]
fn rocksdb_snapshot_replaces_leftover_dir() {
    snapshot_replaces_leftover_dir(BackendKind::RocksDb);
}

#[test]
fn hashmap_snapshot_replaces_leftover_dir() {
    snapshot_replaces_leftover_dir(BackendKind::HashMap);
}

#[test]
fn corrupt_hashmap_snapshot_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = open_backend(BackendKind::HashMap, dir.path(), "op").unwrap();
    put_range(b.as_mut(), &mut BTreeMap::new(), 0..50, 1);
    let snap = b.snapshot(1).unwrap();
    let file = snap.dir.join(HASHMAP_SNAPSHOT_FILE);
    let mut bytes = fs::read(&file).unwrap();
    bytes[100] ^= 0x01;
    fs::write(&file, &bytes).unwrap();

    let err = restore_backend(BackendKind::HashMap, dir.path(), "restored", &snap.dir).unwrap_err();
    let StateError::Corrupt { file: named, reason } = &err else { panic!("{err}") };
    assert_eq!(named, &file.display().to_string());
    assert!(reason.starts_with("checksum mismatch: stored 0x"), "{reason}");
    assert!(err.to_string().starts_with(&format!("corrupt state file {}: checksum mismatch", file.display())));
    assert!(!err.is_temporary());

    fs::write(&file, &bytes[..20]).unwrap();
    let err = restore_backend(BackendKind::HashMap, dir.path(), "restored", &snap.dir).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "corrupt state file {}: file is 20 bytes, shorter than the 32-byte header and checksum (truncated?)",
            file.display()
        )
    );
}

#[test]
fn restoring_the_wrong_kind_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = open_backend(BackendKind::HashMap, dir.path(), "h").unwrap();
    h.put(b"a", b"b").unwrap();
    let hs = h.snapshot(1).unwrap();
    let err = restore_backend(BackendKind::RocksDb, dir.path(), "x", &hs.dir).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "corrupt state file {}: not a RocksDB snapshot: no CURRENT file (expected the files of a rocksdb checkpoint)",
            hs.dir.display()
        )
    );

    let mut r = open_backend(BackendKind::RocksDb, dir.path(), "r").unwrap();
    r.put(b"a", b"b").unwrap();
    let rs = r.snapshot(1).unwrap();
    let err = restore_backend(BackendKind::HashMap, dir.path(), "y", &rs.dir).unwrap_err();
    let StateError::Io { op: "read", path, kind: std::io::ErrorKind::NotFound, .. } = &err else { panic!("{err:?}") };
    assert_eq!(path, &rs.dir.join(HASHMAP_SNAPSHOT_FILE));
}

#[test]
fn bad_names_are_rejected_before_touching_disk() {
    let dir = tempfile::tempdir().unwrap();
    for kind in BackendKind::ALL {
        let err = open_backend(kind, dir.path(), "../escape").unwrap_err();
        assert!(matches!(err, StateError::InvalidName { .. }), "{err}");
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}
