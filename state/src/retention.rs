//! Which remote files may be deleted when checkpoints are dropped: reference counting over
//! the files of retained manifests. Pure logic, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use crate::manifest::SnapshotManifest;

/// Remote paths referenced by some `dropped` manifest and by no `retained` manifest,
/// sorted and without duplicates. Deleting exactly these frees the dropped checkpoints
/// without touching any file a retained checkpoint needs (shared SST files included).
pub fn deletable_after_retention(retained: &[SnapshotManifest], dropped: &[SnapshotManifest]) -> Vec<String> {
    let in_use: BTreeSet<&str> = retained.iter().flat_map(|m| m.files.iter().map(|f| f.remote_path.as_str())).collect();
    let candidates: BTreeSet<&str> =
        dropped.iter().flat_map(|m| m.files.iter().map(|f| f.remote_path.as_str())).collect();
    candidates.difference(&in_use).map(|p| p.to_string()).collect()
}

/// Reference counts of remote files over the registered (retained) checkpoints, for
/// callers that keep the counts across checkpoints instead of recomputing them.
///
/// Register a new checkpoint's manifest *before* releasing the ones it replaces, so a file
/// both use never drops to zero in between.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SharedRegistry {
    refs: BTreeMap<String, usize>,
    registered: BTreeSet<u64>,
}

impl SharedRegistry {
    /// An empty registry.
    pub fn new() -> SharedRegistry {
        SharedRegistry::default()
    }

    /// Counts one reference for each file of `manifest`. Returns `false` (and counts
    /// nothing) when this checkpoint id is already registered.
    pub fn register(&mut self, manifest: &SnapshotManifest) -> bool {
        if !self.registered.insert(manifest.checkpoint_id) {
            return false;
        }
        for f in &manifest.files {
            *self.refs.entry(f.remote_path.clone()).or_default() += 1;
        }
        true
    }

    /// Drops the references of `manifest` and returns the remote paths nobody references
    /// any more (sorted). Releasing an unregistered checkpoint returns nothing.
    pub fn release(&mut self, manifest: &SnapshotManifest) -> Vec<String> {
        if !self.registered.remove(&manifest.checkpoint_id) {
            return Vec::new();
        }
        let mut freed = BTreeSet::new();
        for f in &manifest.files {
            if let Some(n) = self.refs.get_mut(&f.remote_path) {
                *n -= 1;
                if *n == 0 {
                    self.refs.remove(&f.remote_path);
                    freed.insert(f.remote_path.clone());
                }
            }
        }
        freed.into_iter().collect()
    }

    /// How many registered checkpoints reference `remote_path`.
    pub fn reference_count(&self, remote_path: &str) -> usize {
        self.refs.get(remote_path).copied().unwrap_or(0)
    }

    /// The registered checkpoint ids, ascending.
    pub fn checkpoints(&self) -> impl Iterator<Item = u64> + '_ {
        self.registered.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan_upload;
    use crate::plan::tests::{complete, snapshot};

    /// Checkpoints 1..=4 of one backend: 1 = {a, b}; 2 adds c; 3 compacts a+b into d;
    /// 4 adds e. Each has its own meta files.
    fn history() -> Vec<SnapshotManifest> {
        let layouts: [&[(&str, u64)]; 4] = [
            &[("a.sst", 1), ("b.sst", 2)],
            &[("a.sst", 1), ("b.sst", 2), ("c.sst", 3)],
            &[("c.sst", 3), ("d.sst", 4)],
            &[("c.sst", 3), ("d.sst", 4), ("e.sst", 5)],
        ];
        let mut out: Vec<SnapshotManifest> = Vec::new();
        for (i, ssts) in layouts.iter().enumerate() {
            let id = i as u64 + 1;
            let files: Vec<(&str, u64)> = ssts.iter().copied().chain([("CURRENT", 16), ("MANIFEST-1", 9)]).collect();
            let plan = plan_upload(&snapshot(id, &files), out.last(), true, "shared", &format!("chk-{id}"));
            out.push(complete(&plan));
        }
        out
    }

    fn path_of(m: &SnapshotManifest, name: &str) -> String {
        m.files.iter().find(|f| f.name == name).unwrap().remote_path.clone()
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn history_shares_what_it_should() {
        let h = history();
        assert_eq!(path_of(&h[0], "a.sst"), path_of(&h[1], "a.sst"));
        assert_eq!(path_of(&h[1], "c.sst"), path_of(&h[3], "c.sst"));
        assert_ne!(path_of(&h[0], "CURRENT"), path_of(&h[1], "CURRENT"));
    }

    #[test]
    fn retention_of_one() {
        let h = history();
        // After 2 completes, 1 is dropped: a and b are still used by 2; only 1's meta goes.
        let del = deletable_after_retention(&h[1..2], &h[0..1]);
        assert_eq!(del, sorted(vec![path_of(&h[0], "CURRENT"), path_of(&h[0], "MANIFEST-1")]));
        // After 3 completes (compaction), 2 is dropped: a, b and 2's meta go; c stays.
        let del = deletable_after_retention(&h[2..3], &h[1..2]);
        assert_eq!(
            del,
            sorted(vec![
                path_of(&h[1], "a.sst"),
                path_of(&h[1], "b.sst"),
                path_of(&h[1], "CURRENT"),
                path_of(&h[1], "MANIFEST-1"),
            ])
        );
    }

    #[test]
    fn retention_of_two() {
        let h = history();
        // Retain {2, 3}, drop 1: everything of 1's data is still in 2.
        let del = deletable_after_retention(&h[1..3], &h[0..1]);
        assert_eq!(del, sorted(vec![path_of(&h[0], "CURRENT"), path_of(&h[0], "MANIFEST-1")]));
        // Retain {3, 4}, drop 2: a and b are free now.
        let del = deletable_after_retention(&h[2..4], &h[1..2]);
        assert_eq!(
            del,
            sorted(vec![
                path_of(&h[1], "a.sst"),
                path_of(&h[1], "b.sst"),
                path_of(&h[1], "CURRENT"),
                path_of(&h[1], "MANIFEST-1"),
            ])
        );
        // Dropping everything deletes every file exactly once.
        let all = deletable_after_retention(&[], &h);
        let distinct: BTreeSet<String> = h.iter().flat_map(|m| m.files.iter().map(|f| f.remote_path.clone())).collect();
        assert_eq!(all, distinct.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn registry_agrees_with_the_function() {
        let h = history();
        for keep in [1usize, 2] {
            let mut reg = SharedRegistry::new();
            let mut retained: Vec<SnapshotManifest> = Vec::new();
            for m in &h {
                assert!(reg.register(m));
                assert!(!reg.register(m), "registering twice counts once");
                retained.push(m.clone());
                while retained.len() > keep {
                    let dropped = retained.remove(0);
                    let expected = deletable_after_retention(&retained, std::slice::from_ref(&dropped));
                    assert_eq!(reg.release(&dropped), expected, "keep {keep}, dropping {}", dropped.checkpoint_id);
                    assert!(reg.release(&dropped).is_empty(), "releasing twice frees nothing");
                }
            }
            assert_eq!(
                reg.checkpoints().collect::<Vec<_>>(),
                retained.iter().map(|m| m.checkpoint_id).collect::<Vec<_>>()
            );
            let c = path_of(&h[3], "c.sst");
            assert_eq!(reg.reference_count(&c), keep);
        }
    }
}
