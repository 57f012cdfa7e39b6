//! `high-availability.type: none`: the pointer tree of a single dispatcher, kept in one local
//! file instead of ZooKeeper.
//!
//! The job stores ([`crate::stores`]) keep small pointers in a tree of znodes and the data in
//! the storage directory. Without ZooKeeper, a [`LocalMeta`] holds that tree: the same paths,
//! data and versions, the same errors (`NoNode`, `NodeExists`, `BadVersion`, `NotEmpty`) and
//! atomic multi-ops, so the stores and the job layer run unchanged. Every change rewrites
//! `pointers.bin` (a temporary file, fsync, rename, fsync of the directory), so a dispatcher
//! restarted on the same directory recovers its jobs. An exclusive lock on `pointers.lock` keeps
//! a second dispatcher off the same directory: there is exactly one writer, so there is no fence
//! to check, and no standby.
//!
//! The file format is versioned, checksummed (CRC-32) and bounded ([`MAX_FILE_BYTES`],
//! [`MAX_NODES`], [`MAX_PATH_BYTES`], [`MAX_DATA_BYTES`]); a file that breaks any rule is
//! refused with an error naming the file, the offset and what was expected, and is never
//! overwritten.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use zookeeper_client::{Error as ZkError, Stat};

/// Largest `pointers.bin` accepted (a pointer is ~100 bytes; retention keeps few per job).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Most nodes in the tree.
pub const MAX_NODES: usize = 1_000_000;
/// Longest path of a node.
pub const MAX_PATH_BYTES: usize = 4096;
/// Largest data of a node (ZooKeeper's default `jute.maxbuffer`).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

const MAGIC: &[u8; 8] = b"KEELPTR1";
const FILE: &str = "pointers.bin";
const LOCK: &str = "pointers.lock";

/// Why a [`LocalMeta`] could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LocalMetaError {
    #[error("cannot use {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(
        "{path} is locked by another process (another dispatcher with high-availability.type: none on this \
         directory?); stop it or give this one its own high-availability.storageDir"
    )]
    Locked { path: String },
    #[error("corrupt {path} at byte {offset}: {problem}; the file was left untouched (move it away to start empty)")]
    Corrupt { path: String, offset: usize, problem: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    data: Vec<u8>,
    version: i32,
    czxid: i64,
    mzxid: i64,
    ctime: i64,
    mtime: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Tree {
    /// Every node but the root (`/` always exists).
    nodes: BTreeMap<String, Node>,
    zxid: i64,
}

/// One operation of a [`LocalMeta::multi`].
#[derive(Clone, Debug)]
pub enum LocalOp {
    Create { path: String, data: Vec<u8> },
    SetData { path: String, data: Vec<u8>, version: Option<i32> },
    Delete { path: String, version: Option<i32> },
}

/// The pointer tree of one dispatcher in `high-availability.type: none` (see the module docs).
#[derive(Debug)]
pub struct LocalMeta {
    dir: PathBuf,
    tree: Mutex<Tree>,
    /// Held (exclusively locked) for the life of this value.
    _lock: File,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn check_path(path: &str) -> Result<(), ZkError> {
    let ok = path.starts_with('/')
        && path.len() > 1
        && path.len() <= MAX_PATH_BYTES
        && !path.ends_with('/')
        && !path.contains("//")
        && !path.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(ZkError::BadArguments(&"invalid path"))
    }
}

impl Tree {
    fn stat(&self, path: &str, node: &Node) -> Stat {
        let prefix = format!("{path}/");
        let children = self.nodes.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix));
        let num_children = children.filter(|(k, _)| !k[prefix.len()..].contains('/')).count() as i32;
        Stat {
            czxid: node.czxid,
            mzxid: node.mzxid,
            pzxid: node.mzxid,
            ctime: node.ctime,
            mtime: node.mtime,
            version: node.version,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: 0,
            data_length: node.data.len() as i32,
            num_children,
        }
    }

    fn exists(&self, path: &str) -> bool {
        path == "/" || self.nodes.contains_key(path)
    }

    fn children(&self, path: &str) -> Result<Vec<String>, ZkError> {
        if !self.exists(path) {
            return Err(ZkError::NoNode);
        }
        let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
        Ok(self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| &k[prefix.len()..])
            .filter(|rest| !rest.contains('/'))
            .map(str::to_string)
            .collect())
    }

    fn apply(&mut self, op: &LocalOp) -> Result<(), ZkError> {
        match op {
            LocalOp::Create { path, data } => {
                check_path(path)?;
                if data.len() > MAX_DATA_BYTES {
                    return Err(ZkError::BadArguments(&"data larger than 1 MiB"));
                }
                if self.nodes.contains_key(path) {
                    return Err(ZkError::NodeExists);
                }
                if !self.exists(parent_of(path)) {
                    return Err(ZkError::NoNode);
                }
                if self.nodes.len() >= MAX_NODES {
                    return Err(ZkError::QuotaExceeded);
                }
                self.zxid += 1;
                let now = now_ms();
                let node =
                    Node { data: data.clone(), version: 0, czxid: self.zxid, mzxid: self.zxid, ctime: now, mtime: now };
                self.nodes.insert(path.clone(), node);
            }
            LocalOp::SetData { path, data, version } => {
                if data.len() > MAX_DATA_BYTES {
                    return Err(ZkError::BadArguments(&"data larger than 1 MiB"));
                }
                self.zxid += 1;
                let zxid = self.zxid;
                let node = self.nodes.get_mut(path).ok_or(ZkError::NoNode)?;
                if version.is_some_and(|v| v != node.version) {
                    return Err(ZkError::BadVersion);
                }
                node.data = data.clone();
                node.version += 1;
                node.mzxid = zxid;
                node.mtime = now_ms();
            }
            LocalOp::Delete { path, version } => {
                let node = self.nodes.get(path).ok_or(ZkError::NoNode)?;
                if version.is_some_and(|v| v != node.version) {
                    return Err(ZkError::BadVersion);
                }
                if !self.children(path)?.is_empty() {
                    return Err(ZkError::NotEmpty);
                }
                self.nodes.remove(path);
                self.zxid += 1;
            }
        }
        Ok(())
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.nodes.len() * 128);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.zxid.to_be_bytes());
        out.extend_from_slice(&(self.nodes.len() as u32).to_be_bytes());
        for (path, n) in &self.nodes {
            out.extend_from_slice(&(path.len() as u32).to_be_bytes());
            out.extend_from_slice(path.as_bytes());
            out.extend_from_slice(&(n.data.len() as u32).to_be_bytes());
            out.extend_from_slice(&n.data);
            out.extend_from_slice(&n.version.to_be_bytes());
            for v in [n.czxid, n.mzxid, n.ctime, n.mtime] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses a file written by [`Tree::encode`]; the error names the offset and the rule.
    fn decode(bytes: &[u8]) -> Result<Tree, (usize, String)> {
        if bytes.len() < MAGIC.len() + 8 + 4 + 4 {
            return Err((0, format!("{} bytes, shorter than the smallest valid file (24)", bytes.len())));
        }
        if &bytes[..8] != MAGIC {
            return Err((0, format!("expected the header {:?}", String::from_utf8_lossy(MAGIC))));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let want = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
        let got = crc32fast::hash(body);
        if want != got {
            return Err((body.len(), format!("CRC-32 {got:08x} of the contents does not match the stored {want:08x}")));
        }
        let mut r = Reader { bytes: body, at: 8 };
        let zxid = r.i64()?;
        let count = r.u32()? as usize;
        if count > MAX_NODES {
            return Err((r.at - 4, format!("{count} nodes; at most {MAX_NODES} expected")));
        }
        let mut tree = Tree { nodes: BTreeMap::new(), zxid };
        for _ in 0..count {
            let at = r.at;
            let path = r.bytes(MAX_PATH_BYTES, "path")?;
            let path = String::from_utf8(path.to_vec()).map_err(|_| (at, "a path that is not UTF-8".to_string()))?;
            check_path(&path).map_err(|_| (at, format!("invalid path {path:?}")))?;
            let data = r.bytes(MAX_DATA_BYTES, "data")?.to_vec();
            let version = r.i32()?;
            let (czxid, mzxid, ctime, mtime) = (r.i64()?, r.i64()?, r.i64()?, r.i64()?);
            if tree.nodes.insert(path.clone(), Node { data, version, czxid, mzxid, ctime, mtime }).is_some() {
                return Err((at, format!("path {path:?} twice")));
            }
        }
        if r.at != body.len() {
            return Err((r.at, format!("{} bytes after the last node", body.len() - r.at)));
        }
        for path in tree.nodes.keys() {
            if !tree.exists(parent_of(path)) {
                return Err((0, format!("node {path:?} has no parent node")));
            }
        }
        Ok(tree)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], (usize, String)> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or((self.at, format!("{n} more bytes expected, the file ends first")))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, (usize, String)> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn i32(&mut self) -> Result<i32, (usize, String)> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn i64(&mut self) -> Result<i64, (usize, String)> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self, max: usize, what: &str) -> Result<&'a [u8], (usize, String)> {
        let at = self.at;
        let n = self.u32()? as usize;
        if n > max {
            return Err((at, format!("{what} of {n} bytes; at most {max} expected")));
        }
        self.take(n)
    }
}

impl LocalMeta {
    /// Opens (creating when missing) the pointer tree in `dir`, holding its lock.
    ///
    /// # Errors
    /// [`LocalMetaError::Locked`] when another process holds the directory,
    /// [`LocalMetaError::Corrupt`] for a file that is not a valid pointer tree (left untouched),
    /// [`LocalMetaError::Io`] otherwise.
    pub fn open(dir: &Path) -> Result<LocalMeta, LocalMetaError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| LocalMetaError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join(LOCK);
        let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LocalMetaError::Locked { path: lock_path.display().to_string() })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let file = dir.join(FILE);
        let tree = match std::fs::metadata(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Tree::default(),
            Err(e) => return Err(io(&file)(e)),
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                return Err(LocalMetaError::Corrupt {
                    path: file.display().to_string(),
                    offset: 0,
                    problem: format!("{} bytes; at most {MAX_FILE_BYTES} expected", meta.len()),
                })
            }
            Ok(_) => {
                let bytes = std::fs::read(&file).map_err(io(&file))?;
                Tree::decode(&bytes).map_err(|(offset, problem)| LocalMetaError::Corrupt {
                    path: file.display().to_string(),
                    offset,
                    problem,
                })?
            }
        };
        Ok(LocalMeta { dir: dir.to_path_buf(), tree: Mutex::new(tree), _lock: lock })
    }

    /// Reads the tree in `dir` without taking its lock (a running dispatcher holds it): every
    /// node with its data and stat, sorted by path; empty when there is no file yet. For
    /// `keel ha inspect`. The file is only ever replaced whole (rename), so a read sees one
    /// complete version.
    ///
    /// # Errors
    /// As [`LocalMeta::open`], except [`LocalMetaError::Locked`].
    pub fn read_snapshot(dir: &Path) -> Result<Vec<(String, Vec<u8>, Stat)>, LocalMetaError> {
        let file = dir.join(FILE);
        let path = file.display().to_string();
        let bytes = match std::fs::metadata(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(source) => return Err(LocalMetaError::Io { path, source }),
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                return Err(LocalMetaError::Corrupt {
                    path,
                    offset: 0,
                    problem: format!("{} bytes; at most {MAX_FILE_BYTES} expected", meta.len()),
                })
            }
            Ok(_) => std::fs::read(&file).map_err(|source| LocalMetaError::Io { path: path.clone(), source })?,
        };
        let tree =
            Tree::decode(&bytes).map_err(|(offset, problem)| LocalMetaError::Corrupt { path, offset, problem })?;
        Ok(tree.nodes.iter().map(|(p, n)| (p.clone(), n.data.clone(), tree.stat(p, n))).collect())
    }

    /// The directory holding `pointers.bin`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn persist(&self, tree: &Tree) -> Result<(), ZkError> {
        let file = self.dir.join(FILE);
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&tree.encode())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &file)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| ZkError::UnexpectedError(format!("writing {}: {e}", file.display())))
    }

    /// Applies every operation or none (the first failure's index and error), then makes the
    /// result durable before returning `Ok`. A failed write to disk leaves the tree as it was.
    pub fn multi(&self, ops: &[LocalOp]) -> Result<(), (usize, ZkError)> {
        let mut tree = self.tree.lock().expect("local meta lock");
        let mut next = tree.clone();
        for (i, op) in ops.iter().enumerate() {
            next.apply(op).map_err(|e| (i, e))?;
        }
        self.persist(&next).map_err(|e| (0, e))?;
        *tree = next;
        Ok(())
    }

    pub fn create(&self, path: &str, data: &[u8]) -> Result<Stat, ZkError> {
        self.multi(&[LocalOp::Create { path: path.to_string(), data: data.to_vec() }]).map_err(|(_, e)| e)?;
        Ok(self.check_stat(path)?.expect("just created"))
    }

    pub fn set_data(&self, path: &str, data: &[u8], version: Option<i32>) -> Result<Stat, ZkError> {
        self.multi(&[LocalOp::SetData { path: path.to_string(), data: data.to_vec(), version }]).map_err(|(_, e)| e)?;
        Ok(self.check_stat(path)?.expect("just written"))
    }

    pub fn delete(&self, path: &str, version: Option<i32>) -> Result<(), ZkError> {
        self.multi(&[LocalOp::Delete { path: path.to_string(), version }]).map_err(|(_, e)| e)
    }

    pub fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat), ZkError> {
        let tree = self.tree.lock().expect("local meta lock");
        let node = tree.nodes.get(path).ok_or(ZkError::NoNode)?;
        Ok((node.data.clone(), tree.stat(path, node)))
    }

    pub fn check_stat(&self, path: &str) -> Result<Option<Stat>, ZkError> {
        let tree = self.tree.lock().expect("local meta lock");
        Ok(tree.nodes.get(path).map(|node| tree.stat(path, node)))
    }

    pub fn list_children(&self, path: &str) -> Result<Vec<String>, ZkError> {
        self.tree.lock().expect("local meta lock").children(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(path: &str) -> LocalOp {
        LocalOp::Create { path: path.into(), data: path.as_bytes().to_vec() }
    }

    #[test]
    fn znode_rules_and_atomic_multi_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let meta = LocalMeta::open(dir.path()).unwrap();
            assert!(matches!(meta.create("/a/b", b"x"), Err(ZkError::NoNode)));
            meta.create("/a", b"1").unwrap();
            meta.create("/a/b", b"2").unwrap();
            assert!(matches!(meta.create("/a", b"1"), Err(ZkError::NodeExists)));
            assert!(matches!(meta.set_data("/a/b", b"3", Some(7)), Err(ZkError::BadVersion)));
            assert_eq!(meta.set_data("/a/b", b"3", Some(0)).unwrap().version, 1);
            assert!(matches!(meta.delete("/a", None), Err(ZkError::NotEmpty)));
            // The second op fails: the first must not land either.
            let err = meta.multi(&[create("/c"), create("/a")]).unwrap_err();
            assert_eq!(err.0, 1);
            assert!(matches!(err.1, ZkError::NodeExists));
            assert_eq!(meta.check_stat("/c").unwrap(), None);
            meta.multi(&[create("/c"), create("/c/d"), LocalOp::Delete { path: "/a/b".into(), version: Some(1) }])
                .unwrap();
            assert!(matches!(LocalMeta::open(dir.path()), Err(LocalMetaError::Locked { .. })));
        }
        let meta = LocalMeta::open(dir.path()).unwrap();
        assert_eq!(meta.list_children("/").unwrap(), vec!["a", "c"]);
        assert_eq!(meta.list_children("/c").unwrap(), vec!["d"]);
        assert!(meta.list_children("/a").unwrap().is_empty());
        assert_eq!(meta.get_data("/c/d").unwrap().0, b"/c/d");
        assert_eq!(meta.check_stat("/c").unwrap().unwrap().num_children, 1);
        assert!(matches!(meta.get_data("/a/b"), Err(ZkError::NoNode)));
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_offset_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        {
            let meta = LocalMeta::open(dir.path()).unwrap();
            meta.create("/jobgraphs", b"").unwrap();
        }
        let file = dir.path().join(FILE);
        let good = std::fs::read(&file).unwrap();
        let mut flipped = good.clone();
        flipped[20] ^= 0x40;
        std::fs::write(&file, &flipped).unwrap();
        let err = LocalMeta::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("CRC-32") && err.contains("pointers.bin"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), flipped, "a corrupt file is never rewritten");

        // A valid checksum over a lying length: refused by the bound, not allocated.
        let mut lying = good[..good.len() - 4].to_vec();
        lying[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        let crc = crc32fast::hash(&lying);
        lying.extend_from_slice(&crc.to_be_bytes());
        std::fs::write(&file, &lying).unwrap();
        let err = LocalMeta::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("at most 1000000"), "{err}");

        std::fs::write(&file, b"garbage").unwrap();
        let err = LocalMeta::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("byte 0"), "{err}");
    }

    #[test]
    fn a_snapshot_reads_the_tree_while_it_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(LocalMeta::read_snapshot(dir.path()).unwrap().is_empty(), "no file yet");
        let meta = LocalMeta::open(dir.path()).unwrap();
        meta.create("/a", b"x").unwrap();
        meta.create("/a/b", b"yz").unwrap();
        let snap = LocalMeta::read_snapshot(dir.path()).unwrap();
        let view: Vec<(&str, usize, i32)> =
            snap.iter().map(|(p, d, s)| (p.as_str(), d.len(), s.num_children)).collect();
        assert_eq!(view, vec![("/a", 1, 1), ("/a/b", 2, 0)]);
    }

    #[test]
    fn decode_never_panics_on_truncations() {
        let mut tree = Tree::default();
        for p in ["/a", "/a/b", "/c"] {
            tree.apply(&create(p)).unwrap();
        }
        let bytes = tree.encode();
        assert_eq!(Tree::decode(&bytes).unwrap(), tree);
        for n in 0..bytes.len() {
            assert!(Tree::decode(&bytes[..n]).is_err(), "truncated at {n}");
        }
    }
}
