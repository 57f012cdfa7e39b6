//! The storage directory conformance suite: the same checks against every backend.
//!
//! [`suite`] needs only a [`StorageDir`]; everything it writes goes under `suite/`, so a
//! backend test can run other checks beside it in the same directory.

use std::time::{Duration, Instant};

use keel_storage::{blob, BlobError, BlobKind, FaultInjector, StorageDir, StorageError};

/// Runs every backend-independent check against `dir`.
pub async fn suite(dir: &StorageDir) {
    write_once_then_read(dir).await;
    write_once_is_idempotent_for_identical_bytes(dir).await;
    write_once_refuses_different_bytes(dir).await;
    concurrent_write_once_has_one_winner(dir).await;
    read_missing_is_not_found(dir).await;
    list_is_recursive_sorted_and_relative(dir).await;
    delete_is_idempotent(dir).await;
    delete_prefix_is_recursive_and_exact(dir).await;
    blob_round_trip(dir).await;
    corrupt_blobs_are_rejected(dir).await;
    invalid_paths_are_rejected(dir).await;
    injected_write_failure_leaves_nothing(dir).await;
    lost_write_ack_is_recovered_by_retry(dir).await;
    injected_read_failures_and_delay(dir).await;
}

fn loc(dir: &StorageDir, path: &str) -> String {
    format!("{}/{path}", dir.uri())
}

async fn write_once_then_read(dir: &StorageDir) {
    dir.write_once("suite/basic/a.bin", b"alpha").await.unwrap();
    assert_eq!(dir.read("suite/basic/a.bin").await.unwrap(), b"alpha");
    assert!(dir.exists("suite/basic/a.bin").await.unwrap());
    assert!(!dir.exists("suite/basic/b.bin").await.unwrap());

    dir.write_once("suite/basic/empty", b"").await.unwrap();
    assert_eq!(dir.read("suite/basic/empty").await.unwrap(), b"");

    let big: Vec<u8> = (0..(1usize << 20)).map(|i| (i * 7 % 253) as u8).collect();
    dir.write_once("suite/basic/big", &big).await.unwrap();
    assert_eq!(dir.read("suite/basic/big").await.unwrap(), big);
}

async fn write_once_is_idempotent_for_identical_bytes(dir: &StorageDir) {
    dir.write_once("suite/idem/x", b"same bytes").await.unwrap();
    dir.write_once("suite/idem/x", b"same bytes").await.expect("identical retry is Ok");
    assert_eq!(dir.read("suite/idem/x").await.unwrap(), b"same bytes");
}

async fn write_once_refuses_different_bytes(dir: &StorageDir) {
    dir.write_once("suite/race/x", b"winner").await.unwrap();
    let err = dir.write_once("suite/race/x", b"loser").await.unwrap_err();
    assert_eq!(err, StorageError::AlreadyExists { uri: dir.uri().to_string(), path: "suite/race/x".into() });
    assert_eq!(
        err.to_string(),
        format!(
            "write_once {}: already exists with different content (a write-once file is never overwritten)",
            loc(dir, "suite/race/x")
        )
    );
    assert!(!err.is_temporary());
    assert_eq!(err.path(), Some("suite/race/x"));
    assert_eq!(dir.read("suite/race/x").await.unwrap(), b"winner", "stored bytes unchanged");
    // A prefix of the stored bytes is different bytes too.
    assert!(matches!(dir.write_once("suite/race/x", b"win").await, Err(StorageError::AlreadyExists { .. })));
}

async fn concurrent_write_once_has_one_winner(dir: &StorageDir) {
    let path = "suite/concurrent/commit";
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let dir = dir.clone();
            tokio::spawn(async move {
                let bytes = vec![i; 4096];
                (i, dir.write_once(path, &bytes).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (i, res) = t.await.unwrap();
        match res {
            Ok(()) => winners.push(i),
            Err(StorageError::AlreadyExists { .. }) => {}
            Err(e) => panic!("writer {i}: unexpected error {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer commits: {winners:?}");
    assert_eq!(dir.read(path).await.unwrap(), vec![winners[0]; 4096]);
}

async fn read_missing_is_not_found(dir: &StorageDir) {
    let err = dir.read("suite/missing/nothing.bin").await.unwrap_err();
    assert_eq!(
        err,
        StorageError::NotFound { op: "read", uri: dir.uri().to_string(), path: "suite/missing/nothing.bin".into() }
    );
    assert_eq!(err.to_string(), format!("read {}: not found", loc(dir, "suite/missing/nothing.bin")));
    assert!(err.is_not_found() && !err.is_temporary());
    let err = dir.read_blob("suite/missing/nothing.blob", BlobKind::JobGraph).await.unwrap_err();
    assert_eq!(err.to_string(), format!("read_blob {}: not found", loc(dir, "suite/missing/nothing.blob")));
}

async fn list_is_recursive_sorted_and_relative(dir: &StorageDir) {
    for p in ["suite/list/b", "suite/list/a", "suite/list/sub/c", "suite/list/sub/deeper/d", "suite/listing/e"] {
        dir.write_once(p, p.as_bytes()).await.unwrap();
    }
    let want = vec!["suite/list/a", "suite/list/b", "suite/list/sub/c", "suite/list/sub/deeper/d"];
    assert_eq!(dir.list("suite/list").await.unwrap(), want);
    assert_eq!(dir.list("suite/list/").await.unwrap(), want, "trailing slash is the same prefix");
    assert_eq!(dir.list("suite/list/sub").await.unwrap(), vec!["suite/list/sub/c", "suite/list/sub/deeper/d"]);
    assert_eq!(dir.list("suite/no-such-dir").await.unwrap(), Vec::<String>::new());
    let all = dir.list("").await.unwrap();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted: {all:?}");
    assert!(all.iter().any(|p| p == "suite/listing/e") && all.iter().any(|p| p == "suite/list/a"), "{all:?}");
    assert!(all.iter().all(|p| !p.starts_with('/') && !p.ends_with('/')), "{all:?}");
}

async fn delete_is_idempotent(dir: &StorageDir) {
    dir.write_once("suite/del/x", b"x").await.unwrap();
    dir.delete("suite/del/x").await.unwrap();
    assert!(!dir.exists("suite/del/x").await.unwrap());
    assert!(dir.read("suite/del/x").await.unwrap_err().is_not_found());
    dir.delete("suite/del/x").await.expect("deleting a missing file is Ok");
    dir.delete("suite/del/never-existed").await.unwrap();
    // A deleted write-once path can be written again (cleanup, then reuse).
    dir.write_once("suite/del/x", b"again").await.unwrap();
    assert_eq!(dir.read("suite/del/x").await.unwrap(), b"again");
}

async fn delete_prefix_is_recursive_and_exact(dir: &StorageDir) {
    for p in ["suite/jobs/j1/a", "suite/jobs/j1/cp/1", "suite/jobs/j1/cp/2", "suite/jobs/j10/a", "suite/jobs/j1.bak"] {
        dir.write_once(p, b"x").await.unwrap();
    }
    dir.delete_prefix("suite/jobs/j1").await.unwrap();
    assert_eq!(dir.list("suite/jobs").await.unwrap(), vec!["suite/jobs/j1.bak", "suite/jobs/j10/a"]);
    dir.delete_prefix("suite/jobs/j1/").await.expect("missing prefix is Ok");
    dir.delete_prefix("suite/jobs/").await.unwrap();
    assert_eq!(dir.list("suite/jobs").await.unwrap(), Vec::<String>::new());
    let err = dir.delete_prefix("").await.unwrap_err();
    assert!(matches!(err, StorageError::InvalidPath { .. }), "{err}");
    assert!(err.to_string().contains("would delete the whole storage directory"), "{err}");
}

async fn blob_round_trip(dir: &StorageDir) {
    let path = format!("suite/blobs/{}", blob::unique_name("jobgraph"));
    dir.write_blob(&path, BlobKind::JobGraph, b"prost job graph").await.unwrap();
    assert_eq!(dir.read_blob(&path, BlobKind::JobGraph).await.unwrap(), b"prost job graph");
    assert_eq!(dir.read(&path).await.unwrap(), blob::encode(BlobKind::JobGraph, b"prost job graph"));
    // Identical retry of the same blob is Ok; the same name with another payload is not.
    dir.write_blob(&path, BlobKind::JobGraph, b"prost job graph").await.unwrap();
    assert!(matches!(
        dir.write_blob(&path, BlobKind::JobGraph, b"other").await,
        Err(StorageError::AlreadyExists { .. })
    ));
    let err = dir.read_blob(&path, BlobKind::CheckpointMetadata).await.unwrap_err();
    assert_eq!(
        err,
        StorageError::CorruptBlob {
            uri: dir.uri().to_string(),
            path: path.clone(),
            source: BlobError::WrongKind {
                name: loc(dir, &path),
                found: BlobKind::JobGraph,
                expected: BlobKind::CheckpointMetadata
            }
        }
    );
    assert_eq!(
        err.to_string(),
        format!("read_blob: blob {}: wrong kind: found JobGraph (1), expected CheckpointMetadata (2)", loc(dir, &path))
    );
}

async fn corrupt_blobs_are_rejected(dir: &StorageDir) {
    let good = blob::encode(BlobKind::CheckpointMetadata, b"checkpoint 42");
    let mut flipped = good.clone();
    flipped[20] ^= 0x04;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("suite/corrupt/truncated", good[..good.len() - 3].to_vec(), "truncated: have 30 bytes, header says 33"),
        ("suite/corrupt/flipped", flipped, "checksum mismatch: stored crc32"),
        ("suite/corrupt/foreign", b"{\"json\": \"not a blob\"}".to_vec(), "bad magic: found 0x7b226a73"),
        ("suite/corrupt/tiny", b"KEEL".to_vec(), "too short: have 4 bytes"),
    ];
    for (path, bytes, what) in cases {
        dir.write_once(path, &bytes).await.unwrap();
        let err = dir.read_blob(path, BlobKind::CheckpointMetadata).await.unwrap_err();
        assert!(matches!(&err, StorageError::CorruptBlob { path: p, .. } if p == path), "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("read_blob: blob {}: ", loc(dir, path))), "{msg}");
        assert!(msg.contains(what), "{path}: {msg:?} should contain {what:?}");
        assert!(!err.is_temporary());
    }
}

async fn invalid_paths_are_rejected(dir: &StorageDir) {
    for bad in ["", "/abs", "dir/", "a//b", "a/../b", "./a"] {
        let err = dir.write_once(bad, b"x").await.unwrap_err();
        assert!(matches!(err, StorageError::InvalidPath { op: "write_once", .. }), "{bad:?}: {err}");
        assert!(err.to_string().starts_with(&format!("write_once {}: invalid path {bad:?}", dir.uri())), "{err}");
    }
    assert!(matches!(dir.list("../x").await, Err(StorageError::InvalidPath { op: "list", .. })));
}

async fn injected_write_failure_leaves_nothing(dir: &StorageDir) {
    let faults = FaultInjector::new();
    let fdir = dir.clone().with_faults(faults.clone());
    faults.fail_next_writes(1);
    let err = fdir.write_once("suite/faults/w", b"data").await.unwrap_err();
    assert_eq!(
        err,
        StorageError::Injected { op: "write_once", uri: dir.uri().to_string(), path: "suite/faults/w".into() }
    );
    assert_eq!(err.to_string(), format!("write_once {}: injected fault (temporary)", loc(dir, "suite/faults/w")));
    assert!(err.is_temporary());
    assert!(!dir.exists("suite/faults/w").await.unwrap(), "a failed write leaves nothing visible");
    fdir.write_once("suite/faults/w", b"data").await.expect("the next write succeeds");
    assert_eq!(dir.read("suite/faults/w").await.unwrap(), b"data");

    faults.fail_all_writes(true);
    for _ in 0..3 {
        assert!(fdir.write_once("suite/faults/w2", b"d").await.unwrap_err().is_temporary());
    }
    assert!(matches!(fdir.delete("suite/faults/w").await, Err(StorageError::Injected { op: "delete", .. })));
    assert!(matches!(fdir.delete_prefix("suite/faults").await, Err(StorageError::Injected { .. })));
    assert_eq!(fdir.read("suite/faults/w").await.unwrap(), b"data", "reads still work");
    faults.fail_all_writes(false);
    fdir.write_once("suite/faults/w2", b"d").await.unwrap();
    assert_eq!(faults.injected_count(), 6);
}

async fn lost_write_ack_is_recovered_by_retry(dir: &StorageDir) {
    let faults = FaultInjector::new();
    let fdir = dir.clone().with_faults(faults.clone());
    faults.lose_next_write_acks(1);
    let err = fdir.write_once("suite/faults/ack", b"committed").await.unwrap_err();
    assert!(err.is_temporary(), "{err}");
    assert!(dir.exists("suite/faults/ack").await.unwrap(), "the write did happen");
    // The caller retries: the backend says "exists", the read-back finds the same bytes.
    fdir.write_once("suite/faults/ack", b"committed").await.expect("retry of a committed write is Ok");
    assert!(matches!(fdir.write_once("suite/faults/ack", b"other").await, Err(StorageError::AlreadyExists { .. })));
}

async fn injected_read_failures_and_delay(dir: &StorageDir) {
    let faults = FaultInjector::new();
    let fdir = dir.clone().with_faults(faults.clone());
    dir.write_once("suite/faults/r", b"r").await.unwrap();
    faults.fail_reads(true);
    for err in [
        fdir.read("suite/faults/r").await.unwrap_err(),
        fdir.read_blob("suite/faults/r", BlobKind::JobResult).await.unwrap_err(),
        fdir.exists("suite/faults/r").await.unwrap_err(),
        fdir.list("suite/faults").await.unwrap_err(),
    ] {
        assert!(matches!(err, StorageError::Injected { .. }) && err.is_temporary(), "{err}");
    }
    faults.fail_reads(false);
    assert_eq!(fdir.read("suite/faults/r").await.unwrap(), b"r");

    faults.delay(Duration::from_millis(150));
    let t = Instant::now();
    fdir.read("suite/faults/r").await.unwrap();
    let delayed = t.elapsed();
    eprintln!("read with 150 ms injected delay: {delayed:?}");
    // A lower bound on an injected delay cannot fail by chance: it proves the delay applies.
    assert!(delayed >= Duration::from_millis(150), "read took {delayed:?}, less than the injected 150 ms");
    faults.clear();
    let t = Instant::now();
    fdir.read("suite/faults/r").await.unwrap();
    eprintln!("read after clearing the delay: {:?}", t.elapsed());
}
