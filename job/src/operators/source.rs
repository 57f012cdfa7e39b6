//! The built-in sources. Each subtask runs its own source instance, which keeps only the
//! records whose key belongs to the subtask, so keyed operators need no network shuffle.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use super::Record;
use crate::spec::SourceSpec;

/// A running source with a checkpointable position.
pub(crate) enum Source {
    Sequence(Sequence),
    File(FileLines),
}

impl Source {
    /// Opens the source of `spec` for `subtask` of `parallelism`, positioned at `offset`
    /// (from a restored snapshot; 0 for a fresh start).
    pub(crate) fn open(spec: &SourceSpec, subtask: u32, parallelism: u32, offset: u64) -> Result<Source, String> {
        Ok(match spec {
            SourceSpec::Sequence { count, keys, rate: _ } => {
                Source::Sequence(Sequence { next: offset, count: *count, keys: *keys, subtask, parallelism })
            }
            SourceSpec::File { path, key_field, delimiter } => Source::File(FileLines::open(
                path.clone(),
                *key_field,
                delimiter.clone(),
                subtask,
                parallelism,
                offset,
            )?),
        })
    }

    /// The next record of this subtask, `None` once the input is exhausted.
    pub(crate) fn next_record(&mut self) -> Result<Option<Record>, String> {
        match self {
            Source::Sequence(s) => Ok(s.next_record()),
            Source::File(f) => f.next_record(),
        }
    }

    /// The position to store in a checkpoint (`SubtaskSnapshot::source_offset`).
    pub(crate) fn position(&self) -> u64 {
        match self {
            Source::Sequence(s) => s.next,
            Source::File(f) => f.lines_read,
        }
    }
}

/// `sequence`: record `n` has key `k{n % keys}`, value `n`, seq `n`; subtask `i` of `P`
/// keeps the records whose key index `(n % keys) % P == i`. Position: the next `n`.
pub(crate) struct Sequence {
    next: u64,
    count: Option<u64>,
    keys: u64,
    subtask: u32,
    parallelism: u32,
}

impl Sequence {
    fn next_record(&mut self) -> Option<Record> {
        // Key index j belongs to subtask j % P; subtask i owns some key iff i < keys.
        if u64::from(self.subtask) >= self.keys {
            return None;
        }
        loop {
            if self.count.is_some_and(|c| self.next >= c) || self.next == u64::MAX {
                return None;
            }
            let n = self.next;
            self.next += 1;
            let key_index = n % self.keys;
            if key_index % u64::from(self.parallelism) == u64::from(self.subtask) {
                let value = i64::try_from(n).unwrap_or(i64::MAX);
                return Some(Record::new(format!("k{key_index}"), value, n));
            }
        }
    }
}

/// `file`: every subtask reads the whole file and keeps the non-empty lines whose key
/// hashes (FNV-1a, 64 bit) to it; value 1, seq = 1-based line number. Position: lines read.
pub(crate) struct FileLines {
    path: PathBuf,
    reader: BufReader<File>,
    lines_read: u64,
    key_field: Option<usize>,
    delimiter: String,
    subtask: u32,
    parallelism: u32,
    buf: Vec<u8>,
}

impl FileLines {
    fn open(
        path: PathBuf,
        key_field: Option<usize>,
        delimiter: String,
        subtask: u32,
        parallelism: u32,
        offset: u64,
    ) -> Result<FileLines, String> {
        let file = File::open(&path).map_err(|e| format!("file source {}: cannot open: {e}", path.display()))?;
        let mut me = FileLines {
            path,
            reader: BufReader::new(file),
            lines_read: 0,
            key_field,
            delimiter,
            subtask,
            parallelism,
            buf: Vec::new(),
        };
        while me.lines_read < offset {
            if !me.read_line()? {
                return Err(format!(
                    "file source {}: the checkpoint's position is line {}, but the file has only {} lines \
                     (was it changed since the checkpoint?)",
                    me.path.display(),
                    offset,
                    me.lines_read
                ));
            }
        }
        Ok(me)
    }

    /// Reads the next line into `buf` (without its line break); `false` at the end.
    fn read_line(&mut self) -> Result<bool, String> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| format!("file source {}: read after line {}: {e}", self.path.display(), self.lines_read))?;
        if n == 0 {
            return Ok(false);
        }
        self.lines_read += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        }
        Ok(true)
    }

    fn next_record(&mut self) -> Result<Option<Record>, String> {
        loop {
            if !self.read_line()? {
                return Ok(None);
            }
            let line_no = self.lines_read;
            let line = std::str::from_utf8(&self.buf)
                .map_err(|e| format!("file source {} line {line_no}: not valid UTF-8: {e}", self.path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let key = match self.key_field {
                None => line,
                Some(i) => {
                    let fields = line.split(self.delimiter.as_str()).count();
                    line.split(self.delimiter.as_str()).nth(i).ok_or_else(|| {
                        format!(
                            "file source {} line {line_no}: {fields} field(s) separated by {:?}, key-field {i} \
                             needs at least {}",
                            self.path.display(),
                            self.delimiter,
                            i + 1
                        )
                    })?
                }
            };
            if fnv1a(key.as_bytes()) % u64::from(self.parallelism) == u64::from(self.subtask) {
                return Ok(Some(Record::new(key, 1, line_no)));
            }
        }
    }
}

/// FNV-1a, 64 bit: stable across builds and platforms (unlike std's `DefaultHasher`).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Source) -> Vec<Record> {
        std::iter::from_fn(|| s.next_record().unwrap()).collect()
    }

    #[test]
    fn sequence_partitions_by_key_and_resumes() {
        let spec = SourceSpec::Sequence { count: Some(20), keys: 4, rate: None };
        let all: Vec<Vec<Record>> = (0..3).map(|i| drain(&mut Source::open(&spec, i, 3, 0).unwrap())).collect();
        // Key indexes 0 and 3 → subtask 0, 1 → 1, 2 → 2.
        assert!(all[0].iter().all(|r| r.key == "k0" || r.key == "k3"));
        assert!(all[1].iter().all(|r| r.key == "k1"));
        assert_eq!(all.iter().map(Vec::len).sum::<usize>(), 20);
        let mut s = Source::open(&spec, 0, 3, 0).unwrap();
        let first: Vec<Record> = (0..4).map(|_| s.next_record().unwrap().unwrap()).collect();
        let mut resumed = Source::open(&spec, 0, 3, s.position()).unwrap();
        let rest = drain(&mut resumed);
        assert_eq!([first, rest].concat(), all[0]);
        // More subtasks than keys: the extra ones are empty, even when unbounded.
        let unbounded = SourceSpec::Sequence { count: None, keys: 2, rate: None };
        assert!(Source::open(&unbounded, 2, 3, 0).unwrap().next_record().unwrap().is_none());
    }

    #[test]
    fn file_lines_partition_by_hash_and_resume() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("in.txt");
        std::fs::write(&path, "a,1\nb,2\r\n\nc,3\na,4\nbad\n").unwrap();
        let spec = SourceSpec::File { path: path.clone(), key_field: Some(1), delimiter: ",".into() };
        let mut s = Source::open(&spec, 0, 1, 0).unwrap();
        let keys: Vec<String> = (0..4).map(|_| s.next_record().unwrap().unwrap().key).collect();
        assert_eq!(keys, ["1", "2", "3", "4"]);
        let err = s.next_record().unwrap_err();
        assert_eq!(
            err,
            format!(
                "file source {} line 6: 1 field(s) separated by \",\", key-field 1 needs at least 2",
                path.display()
            )
        );
        let spec = SourceSpec::File { path: path.clone(), key_field: None, delimiter: ",".into() };
        let whole: Vec<Record> = (0..2).flat_map(|i| drain(&mut Source::open(&spec, i, 2, 0).unwrap())).collect();
        let mut seqs: Vec<u64> = whole.iter().map(|r| r.seq).collect();
        seqs.sort();
        assert_eq!(seqs, [1, 2, 4, 5, 6]);
        assert!(whole.iter().any(|r| r.key == "b,2"));
        let mut s = Source::open(&spec, 0, 1, 3).unwrap();
        assert_eq!(s.next_record().unwrap().unwrap().seq, 4);
        let err = Source::open(&spec, 0, 1, 99).err().unwrap();
        assert!(err.contains("the checkpoint's position is line 99, but the file has only 6 lines"), "{err}");
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    }
}
