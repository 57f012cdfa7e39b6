//! The snapshot manifest: which remote files make up one backend's state at one checkpoint.
//!
//! Stored as protobuf (prost, hand-written message types, so no `protoc` is needed):
//!
//! ```text
//! message SnapshotManifest {        message ManifestFile {
//!   uint32 version = 1;               string name = 1;
//!   uint64 checkpoint_id = 2;         string remote_path = 2;
//!   string backend = 3;               uint64 size = 3;
//!   repeated ManifestFile files = 4;  bool shared = 4;
//! }                                 }
//! ```
//!
//! The bytes carry no checksum of their own: the storage layer's blob format wraps them.

use std::collections::BTreeSet;

use prost::Message;

use crate::error::StateError;
use crate::options::BackendKind;

/// The manifest format version this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// One remote file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ManifestFile {
    /// File name in the local snapshot directory (and after download).
    pub name: String,
    /// Where the file lives in remote storage.
    pub remote_path: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether the file lives under the shared prefix and may be referenced by later
    /// checkpoints (an SST file of an incremental snapshot).
    pub shared: bool,
}

/// The remote files holding one backend's state at one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotManifest {
    /// The checkpoint.
    pub checkpoint_id: u64,
    /// The backend that wrote the snapshot (a restore must use the same kind).
    pub backend: BackendKind,
    /// The files, sorted by name, names unique.
    pub files: Vec<ManifestFile>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ManifestProto {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(uint64, tag = "2")]
    checkpoint_id: u64,
    #[prost(string, tag = "3")]
    backend: String,
    #[prost(message, repeated, tag = "4")]
    files: Vec<ManifestFileProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ManifestFileProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    remote_path: String,
    #[prost(uint64, tag = "3")]
    size: u64,
    #[prost(bool, tag = "4")]
    shared: bool,
}

impl SnapshotManifest {
    /// Total bytes of all files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The encoded manifest (protobuf, version [`MANIFEST_VERSION`]).
    pub fn encode(&self) -> Vec<u8> {
        ManifestProto {
            version: MANIFEST_VERSION,
            checkpoint_id: self.checkpoint_id,
            backend: self.backend.as_str().to_string(),
            files: self
                .files
                .iter()
                .map(|f| ManifestFileProto {
                    name: f.name.clone(),
                    remote_path: f.remote_path.clone(),
                    size: f.size,
                    shared: f.shared,
                })
                .collect(),
        }
        .encode_to_vec()
    }

    /// Decodes and validates a manifest.
    ///
    /// # Notable errors
    /// * [`StateError::Manifest`] naming the problem: undecodable protobuf, an unsupported
    ///   version, an unknown backend, or a file entry (by index and name) with an unsafe
    ///   name, an empty remote path or a duplicate name.
    pub fn decode(bytes: &[u8]) -> Result<SnapshotManifest, StateError> {
        let proto = ManifestProto::decode(bytes).map_err(|e| StateError::manifest(format!("not a manifest: {e}")))?;
        if proto.version != MANIFEST_VERSION {
            return Err(StateError::manifest(format!(
                "unsupported version {} (this build reads version {MANIFEST_VERSION}{})",
                proto.version,
                if proto.version == 0 { "; version 0 means the field is missing" } else { "" }
            )));
        }
        let backend = BackendKind::parse(&proto.backend).map_err(|_| {
            StateError::manifest(format!("unknown backend {:?} (expected rocksdb or hashmap)", proto.backend))
        })?;
        let files = proto
            .files
            .into_iter()
            .map(|f| ManifestFile { name: f.name, remote_path: f.remote_path, size: f.size, shared: f.shared })
            .collect();
        let manifest = SnapshotManifest { checkpoint_id: proto.checkpoint_id, backend, files };
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks what [`SnapshotManifest::decode`] checks on an in-memory manifest.
    ///
    /// # Notable errors
    /// * [`StateError::Manifest`] naming the file entry.
    pub fn validate(&self) -> Result<(), StateError> {
        let mut seen = BTreeSet::new();
        for (i, f) in self.files.iter().enumerate() {
            if let Err(why) = check_file_name(&f.name) {
                return Err(StateError::manifest(format!("files[{i}] name {:?}: {why}", f.name)));
            }
            if f.remote_path.is_empty() {
                return Err(StateError::manifest(format!("files[{i}] ({}): empty remote_path", f.name)));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(StateError::manifest(format!("files[{i}]: duplicate name {:?}", f.name)));
            }
        }
        Ok(())
    }
}

/// A manifest file name must be one plain path component, so a download cannot write
/// outside its target directory.
pub(crate) fn check_file_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("empty")
    } else if name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        Err("not a plain file name")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SnapshotManifest {
        SnapshotManifest {
            checkpoint_id: 7,
            backend: BackendKind::RocksDb,
            files: vec![
                ManifestFile {
                    name: "000009.sst".into(),
                    remote_path: "s/ab-000009.sst".into(),
                    size: 1234,
                    shared: true,
                },
                ManifestFile { name: "CURRENT".into(), remote_path: "x/chk-7/CURRENT".into(), size: 16, shared: false },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(SnapshotManifest::decode(&m.encode()).unwrap(), m);
        assert_eq!(m.total_size(), 1250);
        let empty = SnapshotManifest { checkpoint_id: 0, backend: BackendKind::HashMap, files: vec![] };
        assert_eq!(SnapshotManifest::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn decode_errors_name_the_problem() {
        let err = SnapshotManifest::decode(b"\xff\xff\xff").unwrap_err();
        assert!(err.to_string().starts_with("invalid snapshot manifest: not a manifest: "), "{err}");

        let mut p = ManifestProto::decode(sample().encode().as_slice()).unwrap();
        p.version = 2;
        let err = SnapshotManifest::decode(&p.encode_to_vec()).unwrap_err();
        assert_eq!(err.to_string(), "invalid snapshot manifest: unsupported version 2 (this build reads version 1)");

        let mut p = ManifestProto::decode(sample().encode().as_slice()).unwrap();
        p.backend = "leveldb".into();
        let err = SnapshotManifest::decode(&p.encode_to_vec()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid snapshot manifest: unknown backend \"leveldb\" (expected rocksdb or hashmap)"
        );

        let mut p = ManifestProto::decode(sample().encode().as_slice()).unwrap();
        p.files[1].name = "../../etc/passwd".into();
        let err = SnapshotManifest::decode(&p.encode_to_vec()).unwrap_err();
        assert_eq!(err, StateError::manifest("files[1] name \"../../etc/passwd\": not a plain file name"));

        let mut p = ManifestProto::decode(sample().encode().as_slice()).unwrap();
        p.files[1].name = "000009.sst".into();
        let err = SnapshotManifest::decode(&p.encode_to_vec()).unwrap_err();
        assert_eq!(err, StateError::manifest("files[1]: duplicate name \"000009.sst\""));

        let mut p = ManifestProto::decode(sample().encode().as_slice()).unwrap();
        p.files[0].remote_path.clear();
        let err = SnapshotManifest::decode(&p.encode_to_vec()).unwrap_err();
        assert_eq!(err, StateError::manifest("files[0] (000009.sst): empty remote_path"));

        // An empty buffer decodes to version 0: the missing field is called out.
        let err = SnapshotManifest::decode(&[]).unwrap_err();
        assert!(err.to_string().contains("version 0 means the field is missing"), "{err}");
    }
}
