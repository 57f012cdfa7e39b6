//! Keel's storage directory: where job graphs, checkpoint metadata and job results live,
//! reached through [Apache OpenDAL](https://opendal.apache.org), in one checksummed blob
//! format, committed by write-once files.
//!
//! # What the crate owns
//!
//! - [`StorageDir`]: a root in a filesystem, S3 bucket, HDFS or Swift container. Operations
//!   take paths relative to the root: [`write_once`](StorageDir::write_once),
//!   [`write_blob`](StorageDir::write_blob), [`read`](StorageDir::read),
//!   [`read_blob`](StorageDir::read_blob), [`exists`](StorageDir::exists),
//!   [`delete`](StorageDir::delete), [`delete_prefix`](StorageDir::delete_prefix),
//!   [`list`](StorageDir::list).
//! - [`blob`]: the format of everything Keel persists: `KEEL` magic, version, [`BlobKind`],
//!   payload length, payload, CRC-32. [`blob::decode`] says exactly what is wrong with bad
//!   bytes ([`BlobError`]); [`unique_name`] names new blobs.
//! - [`FaultInjector`]: failed and slow storage operations for tests and chaos runs.
//! - [`StorageError`]: the one error type; every message names the operation and the full
//!   location; [`StorageError::is_temporary`] tells "retry later" from "give up".
//!
//! # Commit-point rules
//!
//! Data becomes visible in exactly one of two ways, never through a rename (S3 has none,
//! OpenDAL's HDFS rename is delete-then-rename, its fs "atomic write" is check-then-rename):
//!
//! 1. A **write-once file**: [`StorageDir::write_once`] creates the file only if it does not
//!    exist (`O_CREAT|O_EXCL` on `file://`, `If-None-Match: *` on S3). When the backend says
//!    the file exists, it reads it back: the same bytes mean an earlier attempt of this write
//!    succeeded (a retried request whose answer was lost) and the call succeeds; other bytes
//!    are [`StorageError::AlreadyExists`] and stay untouched. OpenDAL 0.59 has no
//!    create-if-absent for HDFS and Swift: there it is check-then-write (safe for unique
//!    names, not a lock; see [`StorageDir::write_once`]).
//! 2. A **guarded ZooKeeper pointer**: a leader writes a blob under a fresh
//!    [`unique_name`], then publishes its path with a ZooKeeper write guarded by its leader
//!    latch. A stale leader can leave an unreferenced blob behind, never change state.
//!
//! Sets of files (a checkpoint's state files) are listed in a manifest blob rather than
//! made visible by renaming them. Readers go through [`StorageDir::read_blob`], which
//! rejects truncated, foreign, wrong-kind and bit-flipped data with
//! [`StorageError::CorruptBlob`]; recovery then falls back to an older checkpoint.
//!
//! # URI schemes and cargo features
//!
//! | URI | OpenDAL service | feature | default |
//! | --- | --- | --- | --- |
//! | `file:///absolute/path` | `services-fs` | (always) | yes |
//! | `s3://bucket[/prefix]` | `services-s3` | `s3` | on |
//! | `hdfs://namenode[:port][/path]` | `services-hdfs-native` (pure Rust, no JVM) | `hdfs` | off |
//! | `swift://container[/prefix]` | `services-swift` | `swift` | off |
//!
//! A URI whose scheme was compiled out is rejected with [`StorageError::InvalidUri`] naming
//! the feature to enable. S3 settings come from [`StorageOptions`] or, when unset, the usual
//! AWS environment variables (see [`StorageDir::open`]). Every operator gets OpenDAL's
//! timeout layer ([`StorageOptions::op_timeout`] per attempt) and a bounded, jittered retry
//! layer ([`StorageOptions::retries`]) that logs each retry through `tracing`.
//!
//! HDFS and Swift are built, not run, here: there is no Hadoop or Swift server in the test
//! environment; the conformance suite runs against `file://` and an S3-compatible server
//! (moto, see `chaos_tests::S3Server`).
//!
//! # Example
//!
//! ```no_run
//! use keel_storage::{blob, BlobKind, StorageDir, StorageOptions};
//!
//! # async fn demo() -> Result<(), keel_storage::StorageError> {
//! let dir = StorageDir::open("file:///var/lib/keel/ha", &StorageOptions::default())?;
//! let path = format!("jobs/j1/{}", blob::unique_name("jobgraph"));
//! dir.write_blob(&path, BlobKind::JobGraph, b"prost bytes").await?;
//! // ... publish `path` through a guarded ZooKeeper write, then, on recovery:
//! let payload = dir.read_blob(&path, BlobKind::JobGraph).await?;
//! assert_eq!(payload, b"prost bytes");
//! # Ok(())
//! # }
//! ```

mod backend;
pub mod blob;
mod dir;
mod error;
mod faults;
mod options;
mod uri;

pub use backend::DEFAULT_S3_REGION;
pub use blob::{unique_name, BlobError, BlobKind};
pub use dir::{StorageDir, DISABLE_WRITE_ONCE_ENV};
pub use error::{StorageError, ACCEPTED_URI_FORMS};
pub use faults::FaultInjector;
pub use options::StorageOptions;
pub use uri::check_uri;
