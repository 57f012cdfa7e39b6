//! The blob format: one framing for everything Keel persists in the storage directory.
//!
//! ```text
//! offset  size  field
//!      0     4  magic b"KEEL"
//!      4     2  format version, u16 LE (= 1)
//!      6     2  blob kind, u16 LE (see BlobKind)
//!      8     8  payload length N, u64 LE
//!     16     N  payload (prost-encoded message; opaque here)
//!   16+N     4  CRC-32 (IEEE, `crc32fast`) of bytes [0, 16+N), u32 LE
//! ```
//!
//! [`decode`] checks, in this order: the size is at least a header plus a checksum, the magic,
//! the version, that the size matches the header's payload length exactly, the checksum, and
//! finally the kind. Checking the checksum before the kind means a flipped bit in the kind
//! field is reported as corruption, while a well-formed blob of another kind is reported as
//! the wrong kind. Every error names the blob and says what was found and what was expected.
//!
//! Blobs are written under unique names ([`unique_name`]) with
//! [`StorageDir::write_once`](crate::StorageDir::write_once) and made visible through a
//! guarded ZooKeeper pointer, never by renaming.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Test-only: `KEEL_TEST_DISABLE_CHECKSUM=1` makes [`decode`] skip the CRC-32 comparison, so
/// a blob with flipped payload bits is accepted. It exists so tests can show that they catch
/// a missing checksum check on read. Read once per process; never set it in production: the
/// first decode with it logs an error saying the check is off.
pub const DISABLE_CHECKSUM_ENV: &str = "KEEL_TEST_DISABLE_CHECKSUM";

fn checksum_disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| {
        let off = std::env::var(DISABLE_CHECKSUM_ENV).is_ok_and(|v| v == "1");
        if off {
            tracing::error!("{DISABLE_CHECKSUM_ENV}=1: blob checksums are NOT verified (test-only switch)");
        }
        off
    })
}

/// The four bytes every blob starts with.
pub const MAGIC: [u8; 4] = *b"KEEL";
/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the payload: magic, version, kind, payload length.
pub const HEADER_LEN: usize = 16;
/// Bytes after the payload: the CRC-32.
pub const TRAILER_LEN: usize = 4;
/// The smallest possible blob (an empty payload).
pub const MIN_BLOB_LEN: usize = HEADER_LEN + TRAILER_LEN;

/// What a blob holds. The number is stored in the header; unknown numbers are rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum BlobKind {
    /// A submitted job's graph.
    JobGraph = 1,
    /// A completed checkpoint's metadata.
    CheckpointMetadata = 2,
    /// A finished job's result.
    JobResult = 3,
    /// The manifest of an operator's state files.
    StateManifest = 4,
    /// A savepoint's metadata.
    Savepoint = 5,
}

impl BlobKind {
    /// Every kind, in number order.
    pub const ALL: [BlobKind; 5] = [
        BlobKind::JobGraph,
        BlobKind::CheckpointMetadata,
        BlobKind::JobResult,
        BlobKind::StateManifest,
        BlobKind::Savepoint,
    ];

    /// The number stored in the header.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The kind with this number, if there is one.
    pub fn from_u16(n: u16) -> Option<BlobKind> {
        BlobKind::ALL.into_iter().find(|k| k.as_u16() == n)
    }

    /// The kind's name, e.g. `"JobGraph"`.
    pub fn name(self) -> &'static str {
        match self {
            BlobKind::JobGraph => "JobGraph",
            BlobKind::CheckpointMetadata => "CheckpointMetadata",
            BlobKind::JobResult => "JobResult",
            BlobKind::StateManifest => "StateManifest",
            BlobKind::Savepoint => "Savepoint",
        }
    }
}

/// `JobGraph (1)`.
impl fmt::Display for BlobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u16())
    }
}

/// Why bytes are not a valid blob of the expected kind. Every variant names the blob
/// (`name`: usually its location in the storage directory).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// Fewer bytes than a header and a checksum.
    #[error(
        "blob {name}: too short: have {have} bytes, a blob needs at least {MIN_BLOB_LEN} \
         ({HEADER_LEN}-byte header + {TRAILER_LEN}-byte checksum)"
    )]
    TooShort {
        /// The blob's name.
        name: String,
        /// Its size.
        have: usize,
    },
    /// The first four bytes are not `KEEL`.
    #[error("blob {name}: bad magic: found 0x{}, expected \"KEEL\" (0x4b45454c); not a Keel blob", hex(found))]
    BadMagic {
        /// The blob's name.
        name: String,
        /// The first four bytes.
        found: [u8; 4],
    },
    /// A format version this build cannot read.
    #[error("blob {name}: unsupported format version {found}, this build reads version {FORMAT_VERSION}")]
    UnsupportedVersion {
        /// The blob's name.
        name: String,
        /// The version in the header.
        found: u16,
    },
    /// Fewer bytes than the header's payload length asks for.
    #[error(
        "blob {name}: truncated: have {have} bytes, header says {expected} \
         ({HEADER_LEN}-byte header + {payload_len}-byte payload + {TRAILER_LEN}-byte checksum)"
    )]
    Truncated {
        /// The blob's name.
        name: String,
        /// Its size.
        have: usize,
        /// The size the header implies (saturated at `u64::MAX`).
        expected: u64,
        /// The payload length in the header.
        payload_len: u64,
    },
    /// More bytes than the header's payload length accounts for.
    #[error(
        "blob {name}: {} unexpected trailing bytes: have {have} bytes, header says {expected} \
         ({HEADER_LEN}-byte header + {payload_len}-byte payload + {TRAILER_LEN}-byte checksum)",
        *have as u64 - *expected
    )]
    TrailingBytes {
        /// The blob's name.
        name: String,
        /// Its size.
        have: usize,
        /// The size the header implies.
        expected: u64,
        /// The payload length in the header.
        payload_len: u64,
    },
    /// The stored CRC-32 does not match the bytes.
    #[error(
        "blob {name}: checksum mismatch: stored crc32 {stored:#010x}, computed {computed:#010x}; the blob is corrupt"
    )]
    ChecksumMismatch {
        /// The blob's name.
        name: String,
        /// The checksum in the trailer.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
    /// A kind number this build does not know (the checksum was valid).
    #[error("blob {name}: unknown blob kind {found}, expected {expected}")]
    UnknownKind {
        /// The blob's name.
        name: String,
        /// The number in the header.
        found: u16,
        /// The kind the caller asked for.
        expected: BlobKind,
    },
    /// A valid blob, but of another kind than the caller asked for.
    #[error("blob {name}: wrong kind: found {found}, expected {expected}")]
    WrongKind {
        /// The blob's name.
        name: String,
        /// The kind in the header.
        found: BlobKind,
        /// The kind the caller asked for.
        expected: BlobKind,
    },
}

impl BlobError {
    /// The name of the blob the error is about.
    pub fn name(&self) -> &str {
        match self {
            BlobError::TooShort { name, .. }
            | BlobError::BadMagic { name, .. }
            | BlobError::UnsupportedVersion { name, .. }
            | BlobError::Truncated { name, .. }
            | BlobError::TrailingBytes { name, .. }
            | BlobError::ChecksumMismatch { name, .. }
            | BlobError::UnknownKind { name, .. }
            | BlobError::WrongKind { name, .. } => name,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Frames `payload` as a blob of `kind` (see the module docs for the layout).
pub fn encode(kind: BlobKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MIN_BLOB_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&kind.as_u16().to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks that `bytes` is one complete, intact blob of kind `expected` and returns its
/// payload. `name` (the blob's path or URI) goes into every error.
///
/// # Notable errors
///
/// Every [`BlobError`] variant; see the module docs for the order of the checks.
pub fn decode<'a>(name: &str, bytes: &'a [u8], expected: BlobKind) -> Result<&'a [u8], BlobError> {
    let name = || name.to_string();
    if bytes.len() < MIN_BLOB_LEN {
        return Err(BlobError::TooShort { name: name(), have: bytes.len() });
    }
    let magic: [u8; 4] = bytes[0..4].try_into().expect("4 bytes");
    if magic != MAGIC {
        return Err(BlobError::BadMagic { name: name(), found: magic });
    }
    let version = u16::from_le_bytes(bytes[4..6].try_into().expect("2 bytes"));
    if version != FORMAT_VERSION {
        return Err(BlobError::UnsupportedVersion { name: name(), found: version });
    }
    let kind = u16::from_le_bytes(bytes[6..8].try_into().expect("2 bytes"));
    let payload_len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let expected_len = payload_len.saturating_add(MIN_BLOB_LEN as u64);
    let have = bytes.len();
    if (have as u64) < expected_len {
        return Err(BlobError::Truncated { name: name(), have, expected: expected_len, payload_len });
    }
    if (have as u64) > expected_len {
        return Err(BlobError::TrailingBytes { name: name(), have, expected: expected_len, payload_len });
    }
    let body_end = have - TRAILER_LEN;
    let stored = u32::from_le_bytes(bytes[body_end..].try_into().expect("4 bytes"));
    let computed = crc32fast::hash(&bytes[..body_end]);
    if stored != computed && !checksum_disabled() {
        return Err(BlobError::ChecksumMismatch { name: name(), stored, computed });
    }
    match BlobKind::from_u16(kind) {
        None => Err(BlobError::UnknownKind { name: name(), found: kind, expected }),
        Some(found) if found != expected => Err(BlobError::WrongKind { name: name(), found, expected }),
        Some(_) => Ok(&bytes[HEADER_LEN..body_end]),
    }
}

/// A fresh blob name: `<prefix>-<unix-ms, 13 digits>-<uuid v4, 32 hex digits>`.
///
/// Names from one prefix sort by creation time (to the millisecond) and never collide, so a
/// blob can be written under its unique name first and become visible later through a guarded
/// ZooKeeper pointer: a stale leader's write leaves garbage, never overwrites state.
pub fn unique_name(prefix: &str) -> String {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("{prefix}-{ms:013}-{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "jobs/j1/checkpoints/cp-7";

    fn sample() -> Vec<u8> {
        encode(BlobKind::CheckpointMetadata, b"checkpoint 7 metadata")
    }

    #[test]
    fn round_trip_every_kind_and_sizes() {
        for kind in BlobKind::ALL {
            for len in [0usize, 1, 15, 16, 17, 1000, 70_000] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                let blob = encode(kind, &payload);
                assert_eq!(blob.len(), MIN_BLOB_LEN + len);
                assert_eq!(decode(NAME, &blob, kind).unwrap(), &payload[..]);
                assert_eq!(BlobKind::from_u16(kind.as_u16()), Some(kind));
            }
        }
    }

    #[test]
    fn layout_is_stable() {
        let blob = encode(BlobKind::JobGraph, b"ab");
        assert_eq!(&blob[0..4], b"KEEL");
        assert_eq!(&blob[4..6], &[1, 0]);
        assert_eq!(&blob[6..8], &[1, 0]);
        assert_eq!(&blob[8..16], &[2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&blob[16..18], b"ab");
        assert_eq!(u32::from_le_bytes(blob[18..22].try_into().unwrap()), crc32fast::hash(&blob[..18]));
        // A golden value: changing the format must be a deliberate act.
        assert_eq!(hex(&blob), "4b45454c0100010002000000000000006162f89b858f");
        assert_eq!(blob.len(), 22);
    }

    #[test]
    fn too_short() {
        for n in 0..MIN_BLOB_LEN {
            let err = decode(NAME, &sample()[..n], BlobKind::CheckpointMetadata).unwrap_err();
            assert_eq!(err, BlobError::TooShort { name: NAME.into(), have: n });
        }
        assert_eq!(
            decode(NAME, b"KEEL", BlobKind::JobGraph).unwrap_err().to_string(),
            "blob jobs/j1/checkpoints/cp-7: too short: have 4 bytes, a blob needs at least 20 \
             (16-byte header + 4-byte checksum)"
        );
    }

    #[test]
    fn every_truncation_is_detected() {
        let blob = sample();
        for n in 0..blob.len() {
            let err = decode(NAME, &blob[..n], BlobKind::CheckpointMetadata).unwrap_err();
            if n < MIN_BLOB_LEN {
                assert!(matches!(err, BlobError::TooShort { have, .. } if have == n), "{n}: {err}");
            } else {
                assert_eq!(
                    err,
                    BlobError::Truncated {
                        name: NAME.into(),
                        have: n,
                        expected: blob.len() as u64,
                        payload_len: (blob.len() - MIN_BLOB_LEN) as u64
                    },
                    "{n}"
                );
            }
        }
        let err = decode(NAME, &blob[..blob.len() - 1], BlobKind::CheckpointMetadata).unwrap_err();
        assert_eq!(
            err.to_string(),
            "blob jobs/j1/checkpoints/cp-7: truncated: have 40 bytes, header says 41 \
             (16-byte header + 21-byte payload + 4-byte checksum)"
        );
    }

    #[test]
    fn trailing_bytes() {
        let mut blob = sample();
        blob.extend_from_slice(b"xy");
        let err = decode(NAME, &blob, BlobKind::CheckpointMetadata).unwrap_err();
        assert_eq!(
            err.to_string(),
            "blob jobs/j1/checkpoints/cp-7: 2 unexpected trailing bytes: have 43 bytes, header says 41 \
             (16-byte header + 21-byte payload + 4-byte checksum)"
        );
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let blob = sample();
        for byte in 0..blob.len() {
            for bit in 0..8 {
                let mut bad = blob.clone();
                bad[byte] ^= 1 << bit;
                let err = decode(NAME, &bad, BlobKind::CheckpointMetadata).unwrap_err();
                let ok = match byte {
                    0..4 => matches!(err, BlobError::BadMagic { .. }),
                    4..6 => matches!(err, BlobError::UnsupportedVersion { .. }),
                    8..16 => matches!(err, BlobError::Truncated { .. } | BlobError::TrailingBytes { .. }),
                    _ => matches!(err, BlobError::ChecksumMismatch { .. }),
                };
                assert!(ok, "byte {byte} bit {bit}: {err}");
                assert_eq!(err.name(), NAME);
            }
        }
    }

    #[test]
    fn bad_magic() {
        let mut blob = sample();
        blob[0..4].copy_from_slice(b"PK\x03\x04");
        assert_eq!(
            decode(NAME, &blob, BlobKind::CheckpointMetadata).unwrap_err().to_string(),
            "blob jobs/j1/checkpoints/cp-7: bad magic: found 0x504b0304, expected \"KEEL\" (0x4b45454c); \
             not a Keel blob"
        );
    }

    #[test]
    fn unsupported_version() {
        let mut blob = sample();
        blob[4..6].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(
            decode(NAME, &blob, BlobKind::CheckpointMetadata).unwrap_err().to_string(),
            "blob jobs/j1/checkpoints/cp-7: unsupported format version 2, this build reads version 1"
        );
    }

    /// Re-frames `blob` with another kind number and a valid checksum.
    fn with_kind(n: u16) -> Vec<u8> {
        let mut blob = sample();
        blob[6..8].copy_from_slice(&n.to_le_bytes());
        let end = blob.len() - TRAILER_LEN;
        let crc = crc32fast::hash(&blob[..end]);
        blob[end..].copy_from_slice(&crc.to_le_bytes());
        blob
    }

    #[test]
    fn wrong_and_unknown_kind() {
        let err = decode(NAME, &with_kind(1), BlobKind::CheckpointMetadata).unwrap_err();
        assert_eq!(
            err.to_string(),
            "blob jobs/j1/checkpoints/cp-7: wrong kind: found JobGraph (1), expected CheckpointMetadata (2)"
        );
        for n in [0u16, 6, 999, u16::MAX] {
            let err = decode(NAME, &with_kind(n), BlobKind::CheckpointMetadata).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("blob jobs/j1/checkpoints/cp-7: unknown blob kind {n}, expected CheckpointMetadata (2)")
            );
        }
    }

    #[test]
    fn checksum_mismatch() {
        let mut blob = sample();
        blob[20] ^= 0x10;
        let stored = u32::from_le_bytes(blob[blob.len() - 4..].try_into().unwrap());
        let computed = crc32fast::hash(&blob[..blob.len() - 4]);
        assert_eq!(
            decode(NAME, &blob, BlobKind::CheckpointMetadata).unwrap_err().to_string(),
            format!(
                "blob jobs/j1/checkpoints/cp-7: checksum mismatch: stored crc32 {stored:#010x}, \
                 computed {computed:#010x}; the blob is corrupt"
            )
        );
    }

    #[test]
    fn huge_length_field_does_not_overflow() {
        let mut blob = sample();
        blob[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = decode(NAME, &blob, BlobKind::CheckpointMetadata).unwrap_err();
        assert!(matches!(err, BlobError::Truncated { expected: u64::MAX, .. }), "{err}");
    }

    #[test]
    fn unique_names_differ_and_sort_by_time() {
        let a = unique_name("cp");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = unique_name("cp");
        assert_ne!(a, b);
        assert!(a < b, "{a} < {b}");
        let parts: Vec<&str> = a.splitn(3, '-').collect();
        assert_eq!(parts[0], "cp");
        assert_eq!(parts[1].len(), 13);
        assert_eq!(parts[2].len(), 32);
        assert!(parts[2].chars().all(|c| c.is_ascii_hexdigit()));
    }
}

#[cfg(test)]
mod props {
    //! Property tests: `decode` never panics on random or mutated bytes, and accepts a blob
    //! only if it is exactly what `encode` produced.

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), kind in 0usize..5) {
            let _ = decode("blob", &bytes, BlobKind::ALL[kind]);
            // With a valid header the length and checksum checks run too.
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            framed.extend_from_slice(&bytes);
            let _ = decode("blob", &framed, BlobKind::ALL[kind]);
        }

        #[test]
        fn mutated_blobs_are_refused_or_unchanged(
            payload in prop::collection::vec(any::<u8>(), 0..300),
            kind in 0usize..5,
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6),
        ) {
            let kind = BlobKind::ALL[kind];
            let blob = encode(kind, &payload);
            prop_assert_eq!(decode("blob", &blob, kind).unwrap(), &payload[..]);
            let mut bytes = blob.clone();
            for (at, b, op) in edits {
                let i = at % bytes.len().max(1);
                match op {
                    0 if !bytes.is_empty() => bytes[i] = b,
                    1 => bytes.insert(i.min(bytes.len()), b),
                    _ if !bytes.is_empty() => {
                        bytes.remove(i);
                    }
                    _ => {}
                }
            }
            match decode("blob", &bytes, kind) {
                Ok(p) => prop_assert!(bytes == blob && p == &payload[..], "a changed blob was accepted"),
                Err(e) => prop_assert!(e.to_string().contains("blob"), "{e}"),
            }
        }

        #[test]
        fn huge_declared_lengths_are_refused_without_allocating(len in any::<u64>(), kind in 0usize..5) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            bytes.extend_from_slice(&BlobKind::ALL[kind].as_u16().to_le_bytes());
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(&[0; 4]);
            let r = decode("blob", &bytes, BlobKind::ALL[kind]);
            prop_assert!(len == 0 || r.is_err());
        }
    }
}
