//! The conformance suite against every backend that can run here: `file://` on a temporary
//! directory and `s3://` on a moto server (`chaos_tests::S3Server`; needs
//! `pip install 'moto[server]'`). Plus what only one backend can show: corrupting a stored
//! blob behind the code's back, and an S3 server that goes away and comes back.

mod suite;

#[cfg(feature = "s3")]
use std::time::{Duration, Instant};

#[cfg(feature = "s3")]
use chaos_tests::S3Server;
use keel_storage::{blob, BlobError, BlobKind, StorageDir, StorageError, StorageOptions};

fn fs_dir(tmp: &tempfile::TempDir) -> StorageDir {
    let uri = format!("file://{}/keel-ha", tmp.path().display());
    StorageDir::open(&uri, &StorageOptions::default()).unwrap()
}

#[cfg(feature = "s3")]
fn s3_options(s3: &S3Server) -> StorageOptions {
    StorageOptions::default()
        .with_s3_endpoint(s3.endpoint())
        .with_s3_region(S3Server::REGION)
        .with_s3_credentials(S3Server::ACCESS_KEY, S3Server::SECRET_KEY)
        .with_op_timeout(Duration::from_secs(5))
        .with_retries(2)
}

#[cfg(feature = "s3")]
fn s3_server(bucket: &str) -> S3Server {
    let s3 = S3Server::start().unwrap_or_else(|e| panic!("{e}"));
    s3.create_bucket(bucket).unwrap();
    s3
}

#[tokio::test]
async fn fs_conformance() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fs_dir(&tmp);
    assert_eq!(dir.uri(), format!("file://{}/keel-ha", tmp.path().display()));
    suite::suite(&dir).await;
    // No temporary or hidden files are left beside the committed ones.
    let mut stray = Vec::new();
    let mut stack = vec![tmp.path().join("keel-ha")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().starts_with('.') {
                stray.push(e.path());
            }
        }
    }
    assert!(stray.is_empty(), "{stray:?}");
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn s3_conformance() {
    let s3 = s3_server("keel-conformance");
    let dir = StorageDir::open("s3://keel-conformance/clusters/c1/", &s3_options(&s3)).unwrap();
    assert_eq!(dir.uri(), "s3://keel-conformance/clusters/c1");
    suite::suite(&dir).await;
    // The prefix is the root: objects live under it in the bucket.
    assert_eq!(
        s3.get_object("keel-conformance", "clusters/c1/suite/basic/a.bin").unwrap().as_deref(),
        Some(&b"alpha"[..])
    );
}

/// A stored blob corrupted in place (bit rot, a bad copy) is caught on read.
async fn corrupted_in_place(dir: &StorageDir, overwrite: impl Fn(&str, &[u8])) {
    let path = "jobs/j1/checkpoints/cp-0000000001";
    let good = blob::encode(BlobKind::CheckpointMetadata, b"checkpoint 1 metadata");
    dir.write_once(path, &good).await.unwrap();
    assert_eq!(dir.read_blob(path, BlobKind::CheckpointMetadata).await.unwrap(), b"checkpoint 1 metadata");

    let mut bad = good.clone();
    bad[18] ^= 0x80;
    overwrite(path, &bad);
    let err = dir.read_blob(path, BlobKind::CheckpointMetadata).await.unwrap_err();
    let StorageError::CorruptBlob { path: p, source: BlobError::ChecksumMismatch { name, .. }, .. } = &err else {
        panic!("expected a checksum mismatch, got {err}");
    };
    assert_eq!(p, path);
    assert_eq!(name, &format!("{}/{path}", dir.uri()));
    assert!(err.to_string().starts_with(&format!("read_blob: blob {}/{path}: checksum mismatch", dir.uri())), "{err}");

    overwrite(path, &good[..good.len() - 1]);
    let err = dir.read_blob(path, BlobKind::CheckpointMetadata).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "read_blob: blob {}/{path}: truncated: have 40 bytes, header says 41 \
             (16-byte header + 21-byte payload + 4-byte checksum)",
            dir.uri()
        )
    );
}

#[tokio::test]
async fn fs_corrupted_blob_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fs_dir(&tmp);
    let root = tmp.path().join("keel-ha");
    corrupted_in_place(&dir, |path, bytes| std::fs::write(root.join(path), bytes).unwrap()).await;
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn s3_corrupted_blob_in_place() {
    let s3 = s3_server("keel-corrupt");
    let dir = StorageDir::open("s3://keel-corrupt/ha", &s3_options(&s3)).unwrap();
    corrupted_in_place(&dir, |path, bytes| s3.put_object("keel-corrupt", &format!("ha/{path}"), bytes).unwrap()).await;
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn s3_server_down_is_temporary_and_recovers() {
    let mut s3 = s3_server("keel-down");
    let options = s3_options(&s3).with_op_timeout(Duration::from_secs(1)).with_retries(1);
    let dir = StorageDir::open("s3://keel-down/ha", &options).unwrap();
    dir.write_once("before", b"1").await.unwrap();

    s3.stop();
    let check = |what: &str, t: Instant, err: StorageError| {
        assert!(err.is_temporary(), "{what}: {err}");
        eprintln!("{what} failed after {:?}", t.elapsed());
        assert!(matches!(err, StorageError::Backend { .. }), "{what}: {err}");
        assert!(err.to_string().starts_with(&format!("{what} s3://keel-down/ha")), "{err}");
    };
    let t = Instant::now();
    check("write_once", t, dir.write_once("during", b"2").await.unwrap_err());
    let t = Instant::now();
    check("read", t, dir.read("before").await.unwrap_err());
    let t = Instant::now();
    check("list", t, dir.list("").await.unwrap_err());

    // Paused (SIGSTOP): requests hang; the per-attempt timeout bounds them.
    s3.restart().unwrap();
    dir.write_once("after-restart", b"3").await.unwrap();
    s3.pause().unwrap();
    let t = Instant::now();
    // A hang here would mean no timeout applies at all: bound the wait and say so.
    let err = tokio::time::timeout(Duration::from_secs(120), dir.read("after-restart"))
        .await
        .expect("a read from a paused S3 server hung for 120 s: the per-attempt timeout is not applied")
        .unwrap_err();
    let took = t.elapsed();
    assert!(err.is_temporary(), "{err}");
    eprintln!("read from a paused server failed after {took:?}");
    // A paused server accepts connections and never answers: the read can only have failed
    // through the per-attempt timeout, so it took at least one attempt's 1 s. (A lower bound
    // on an injected condition, never an upper bound on time.)
    assert!(took >= Duration::from_secs(1), "read failed after {took:?}, before the 1 s op timeout: {err}");
    s3.resume().unwrap();
    assert_eq!(dir.read("after-restart").await.unwrap(), b"3");
}

#[test]
fn invalid_uris_name_the_uri_and_the_accepted_forms() {
    let forms = "accepted forms: file:///absolute/path, s3://bucket[/prefix], hdfs://namenode[:port][/path], \
                 swift://container[/prefix]";
    let open = |uri: &str| StorageDir::open(uri, &StorageOptions::default()).unwrap_err().to_string();
    assert_eq!(
        open("gcs://bucket/x"),
        format!("invalid storage URI \"gcs://bucket/x\": unknown scheme \"gcs\"; {forms}")
    );
    assert_eq!(
        open("/var/lib/keel"),
        format!("invalid storage URI \"/var/lib/keel\": no scheme (expected <scheme>://...); {forms}")
    );
    assert_eq!(
        open("file://relative/path"),
        format!(
            "invalid storage URI \"file://relative/path\": a file URI has no host (found \"relative\"); \
             write file:///absolute/path; {forms}"
        )
    );
    assert_eq!(open("s3://"), format!("invalid storage URI \"s3://\": no bucket; {forms}"));
    assert_eq!(
        open("s3://bucket/a/../b"),
        format!("invalid storage URI \"s3://bucket/a/../b\": path segment \"..\" is not allowed; {forms}")
    );
    assert_eq!(
        open("hdfs://namenode:http/keel"),
        format!(
            "invalid storage URI \"hdfs://namenode:http/keel\": namenode port \"http\" is not a number in \
             1..=65535; {forms}"
        )
    );
    #[cfg(not(feature = "hdfs"))]
    assert_eq!(
        open("hdfs://namenode:8020/keel"),
        format!(
            "invalid storage URI \"hdfs://namenode:8020/keel\": scheme \"hdfs\" is not compiled into this build \
             (enable cargo feature \"hdfs\" of keel-storage); {forms}"
        )
    );
    #[cfg(not(feature = "swift"))]
    assert!(open("swift://container/keel").contains("enable cargo feature \"swift\""));
    #[cfg(feature = "swift")]
    assert_eq!(
        open("swift://container/keel"),
        "storage directory swift://container/keel: invalid configuration: swift:// needs a Swift endpoint \
         (StorageOptions::swift_endpoint, e.g. https://swift.example.com/v1/AUTH_account)"
    );
    let err = open("file:///dev/null/keel");
    assert!(
        err.starts_with("storage directory file:///dev/null/keel: invalid configuration: ")
            && err.contains("Not a directory"),
        "{err}"
    );
    let half = StorageOptions { s3_access_key: Some("ak".into()), ..StorageOptions::default() };
    if cfg!(feature = "s3") && std::env::var_os("AWS_SECRET_ACCESS_KEY").is_none() {
        assert_eq!(
            StorageDir::open("s3://b-1/x", &half).unwrap_err().to_string(),
            "storage directory s3://b-1/x: invalid configuration: an S3 access key is set but no secret key \
             (s3_secret_key or AWS_SECRET_ACCESS_KEY)"
        );
    }
}

#[tokio::test]
async fn fs_open_creates_the_root_and_sees_other_handles_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let uri = format!("file://{}/a/b/c/", tmp.path().display());
    let one = StorageDir::open(&uri, &StorageOptions::default()).unwrap();
    assert!(tmp.path().join("a/b/c").is_dir());
    one.write_once("x", b"1").await.unwrap();
    let two = StorageDir::open(&uri, &StorageOptions::default()).unwrap();
    assert_eq!(two.read("x").await.unwrap(), b"1");
    assert!(matches!(two.write_once("x", b"2").await, Err(StorageError::AlreadyExists { .. })));
}
