//! The in-memory backend and its one-file snapshot format.
//!
//! Snapshot file (`hashmap-state.bin`), all integers little-endian:
//!
//! ```text
//! 0   magic "KEELHMAP"            8 bytes
//! 8   format version (1)          u32
//! 12  checkpoint id               u64
//! 20  entry count                 u64
//! 28  entries, ascending keys:    u32 key length, key, u32 value length, value
//! end CRC-32 (IEEE) of every byte before it   u32
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{fresh_snapshot_dir, list_snapshot_files, KeyedStateBackend, LocalSnapshot, RootGuard};
use crate::error::StateError;
use crate::options::BackendKind;

/// Name of the hashmap backend's snapshot file.
pub const HASHMAP_SNAPSHOT_FILE: &str = "hashmap-state.bin";

const MAGIC: &[u8; 8] = b"KEELHMAP";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 28;
const TRAILER_LEN: usize = 4;

/// Keyed state in an in-memory ordered map.
#[derive(Debug)]
pub struct HashMapBackend {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    local_dir: PathBuf,
    name: String,
    _guard: RootGuard,
}

impl HashMapBackend {
    /// An empty map whose snapshots go under `<local_dir>/<name>/snapshots/`.
    ///
    /// # Notable errors
    /// * [`StateError::InvalidName`] when `name` is not a single path component.
    /// * [`StateError::InUse`] when another open backend of this process uses the same
    ///   `<local_dir>/<name>`.
    pub fn open(local_dir: &Path, name: &str) -> Result<HashMapBackend, StateError> {
        let guard = RootGuard::acquire(local_dir, name)?;
        Ok(HashMapBackend {
            map: BTreeMap::new(),
            local_dir: local_dir.to_path_buf(),
            name: name.to_string(),
            _guard: guard,
        })
    }

    /// A map holding the snapshot file in directory `from`.
    ///
    /// # Notable errors
    /// * [`StateError::Io`] naming the file when it cannot be read (missing included).
    /// * [`StateError::Corrupt`] naming the file when it fails any check of the format.
    pub fn restore(local_dir: &Path, name: &str, from: &Path) -> Result<HashMapBackend, StateError> {
        let mut backend = Self::open(local_dir, name)?;
        let path = from.join(HASHMAP_SNAPSHOT_FILE);
        let bytes = fs::read(&path).map_err(|e| StateError::io("read", &path, e))?;
        backend.map = decode(&bytes).map_err(|reason| StateError::corrupt(path.display(), reason))?;
        Ok(backend)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl KeyedStateBackend for HashMapBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.map.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        match self.map.get_mut(key) {
            Some(v) => {
                v.clear();
                v.extend_from_slice(value);
            }
            None => {
                self.map.insert(key.to_vec(), value.to_vec());
            }
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StateError> {
        self.map.remove(key);
        Ok(())
    }

    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), StateError> {
        for (k, v) in &self.map {
            f(k, v);
        }
        Ok(())
    }

    fn snapshot(&mut self, checkpoint_id: u64) -> Result<LocalSnapshot, StateError> {
        let dir = fresh_snapshot_dir(&self.local_dir, &self.name, checkpoint_id)?;
        fs::create_dir_all(&dir).map_err(|e| StateError::io("create directory", &dir, e))?;
        let path = dir.join(HASHMAP_SNAPSHOT_FILE);
        let bytes = encode(checkpoint_id, &self.map);
        let mut file = fs::File::create_new(&path).map_err(|e| StateError::io("create", &path, e))?;
        file.write_all(&bytes).map_err(|e| StateError::io("write", &path, e))?;
        file.sync_all().map_err(|e| StateError::io("sync", &path, e))?;
        let files = list_snapshot_files(&dir)?;
        Ok(LocalSnapshot { checkpoint_id, backend: BackendKind::HashMap, dir, files })
    }

    fn kind(&self) -> BackendKind {
        BackendKind::HashMap
    }
}

fn encode(checkpoint_id: u64, map: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<u8> {
    let body: usize = map.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + body + TRAILER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&checkpoint_id.to_le_bytes());
    out.extend_from_slice(&(map.len() as u64).to_le_bytes());
    for (k, v) in map {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a snapshot file; the error says what is wrong and where.
fn decode(bytes: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(format!(
            "file is {} bytes, shorter than the {}-byte header and checksum (truncated?)",
            bytes.len(),
            HEADER_LEN + TRAILER_LEN
        ));
    }
    if &bytes[..8] != MAGIC {
        return Err(format!("bad magic {:?}: expected {:?} (not a Keel hashmap snapshot)", &bytes[..8], MAGIC));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(format!("unsupported format version {version}: this build reads version {FORMAT_VERSION}"));
    }
    let (payload, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
    let stored = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(format!(
            "checksum mismatch: stored {stored:#010x}, computed {computed:#010x} over {} bytes (truncated or modified)",
            payload.len()
        ));
    }
    let count = u64::from_le_bytes(payload[20..28].try_into().expect("8 bytes"));
    let mut pos = HEADER_LEN;
    let mut map = BTreeMap::new();
    let take = |pos: &mut usize, what: &str, i: u64| -> Result<Vec<u8>, String> {
        let at = *pos;
        let len_bytes = payload
            .get(at..at + 4)
            .ok_or_else(|| format!("entry {i}: {what} length at offset {at} runs past the end"))?;
        let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        let data = payload
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| format!("entry {i}: {what} of {len} bytes at offset {} runs past the end", at + 4))?;
        *pos = at + 4 + len;
        Ok(data.to_vec())
    };
    for i in 0..count {
        let key = take(&mut pos, "key", i)?;
        let value = take(&mut pos, "value", i)?;
        if let Some((last, _)) = map.last_key_value() {
            if *last >= key {
                return Err(format!("entry {i}: keys not in ascending order"));
            }
        }
        map.insert(key, value);
    }
    if pos != payload.len() {
        return Err(format!("{} bytes after the {count} entries the header announces", payload.len() - pos));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BTreeMap<Vec<u8>, Vec<u8>> {
        [(b"a".to_vec(), b"1".to_vec()), (b"bb".to_vec(), vec![]), (vec![0, 255], vec![7; 300])].into_iter().collect()
    }

    #[test]
    fn round_trip() {
        let map = sample();
        assert_eq!(decode(&encode(9, &map)).unwrap(), map);
        assert_eq!(decode(&encode(1, &BTreeMap::new())).unwrap(), BTreeMap::new());
    }

    #[test]
    fn every_damage_is_named() {
        let good = encode(9, &sample());
        assert!(decode(&good[..10]).unwrap_err().contains("truncated"));
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert!(decode(&bad_magic).unwrap_err().contains("bad magic"));
        let mut flipped = good.clone();
        flipped[HEADER_LEN + 5] ^= 0x40;
        assert!(decode(&flipped).unwrap_err().starts_with("checksum mismatch"));
        assert!(decode(&good[..good.len() - 1]).unwrap_err().starts_with("checksum mismatch"));

        // Structurally wrong but correctly checksummed: a count larger than the entries.
        let mut lying = good[..good.len() - TRAILER_LEN].to_vec();
        lying[20..28].copy_from_slice(&4u64.to_le_bytes());
        let crc = crc32fast::hash(&lying);
        lying.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode(&lying).unwrap_err(),
            format!("entry 3: key length at offset {} runs past the end", lying.len() - 4)
        );

        let mut v2 = good.clone();
        v2[8] = 2;
        assert!(decode(&v2).unwrap_err().starts_with("unsupported format version 2"));
    }
}
