//! Planning an upload: which files of a local snapshot must go to remote storage and which
//! the previous checkpoint already has there. Pure logic, no I/O.

use std::collections::BTreeMap;

use crate::backend::{FileKind, LocalFile, LocalSnapshot};
use crate::manifest::{ManifestFile, SnapshotManifest};
use crate::options::BackendKind;

/// What to upload for one local snapshot, and what to reuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPlan {
    /// The checkpoint being uploaded.
    pub checkpoint_id: u64,
    /// The backend that wrote the snapshot.
    pub backend: BackendKind,
    /// Whether the plan was made incremental: uploaded SST files are then shared.
    pub incremental: bool,
    /// Files already in remote storage (entries of the previous manifest), reused as is.
    pub reuse: Vec<ManifestFile>,
    /// Local files to upload, each with its remote path.
    pub upload: Vec<(LocalFile, String)>,
}

impl UploadPlan {
    /// Bytes this plan uploads.
    pub fn upload_bytes(&self) -> u64 {
        self.upload.iter().map(|(f, _)| f.size).sum()
    }

    /// Bytes this plan reuses.
    pub fn reused_bytes(&self) -> u64 {
        self.reuse.iter().map(|f| f.size).sum()
    }
}

/// Decides, for every file of `local`, whether to reuse a remote copy or upload it.
///
/// * Incremental: an SST file whose name **and** size match a *shared* file of `previous`
///   (same backend kind) is reused with that file's remote path; other SST files go to
///   `<shared_prefix>/<random id>-<name>` (unique, so concurrent or retried attempts never
///   overwrite each other). Meta files always go to `<exclusive_prefix>/<name>`.
/// * Not incremental: every file goes to `<exclusive_prefix>/<name>`; nothing is reused.
///
/// Contract: `previous` must be the latest *retained* manifest of this backend's own
/// lineage — the checkpoint it last completed, or the one it was restored from. RocksDB
/// numbers SST files per instance, so a manifest from another lineage could hold a
/// different file under the same name. `exclusive_prefix` must be unique per checkpoint
/// attempt (for example `.../chk-<id>-<attempt>`).
pub fn plan_upload(
    local: &LocalSnapshot,
    previous: Option<&SnapshotManifest>,
    incremental: bool,
    shared_prefix: &str,
    exclusive_prefix: &str,
) -> UploadPlan {
    let reusable: BTreeMap<(&str, u64), &ManifestFile> = match previous {
        Some(prev) if incremental && prev.backend == local.backend => {
            prev.files.iter().filter(|f| f.shared).map(|f| ((f.name.as_str(), f.size), f)).collect()
        }
        _ => BTreeMap::new(),
    };
    let mut plan = UploadPlan {
        checkpoint_id: local.checkpoint_id,
        backend: local.backend,
        incremental,
        reuse: Vec::new(),
        upload: Vec::new(),
    };
    for file in &local.files {
        if incremental && file.kind == FileKind::Sst {
            if let Some(prev) = reusable.get(&(file.name.as_str(), file.size)) {
                plan.reuse.push((*prev).clone());
            } else {
                let unique = format!("{}-{}", uuid::Uuid::new_v4().simple(), file.name);
                plan.upload.push((file.clone(), join(shared_prefix, &unique)));
            }
        } else {
            plan.upload.push((file.clone(), join(exclusive_prefix, &file.name)));
        }
    }
    plan
}

/// `prefix/name`, without doubling or inventing slashes.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use super::*;

    pub(crate) fn snapshot(id: u64, files: &[(&str, u64)]) -> LocalSnapshot {
        let dir = PathBuf::from(format!("/local/snapshots/chk-{id}"));
        LocalSnapshot {
            checkpoint_id: id,
            backend: BackendKind::RocksDb,
            files: files
                .iter()
                .map(|(n, s)| LocalFile { name: n.to_string(), path: dir.join(n), size: *s, kind: FileKind::of(n) })
                .collect(),
            dir,
        }
    }

    /// What `upload` would produce, without I/O.
    pub(crate) fn complete(plan: &UploadPlan) -> SnapshotManifest {
        let mut files = plan.reuse.clone();
        for (f, remote) in &plan.upload {
            files.push(ManifestFile {
                name: f.name.clone(),
                remote_path: remote.clone(),
                size: f.size,
                shared: plan.incremental && f.kind == FileKind::Sst,
            });
        }
        files.sort();
        SnapshotManifest { checkpoint_id: plan.checkpoint_id, backend: plan.backend, files }
    }

    fn uploaded(plan: &UploadPlan) -> BTreeSet<&str> {
        plan.upload.iter().map(|(f, _)| f.name.as_str()).collect()
    }

    fn reused(plan: &UploadPlan) -> BTreeSet<&str> {
        plan.reuse.iter().map(|f| f.name.as_str()).collect()
    }

    const META: [(&str, u64); 3] = [("CURRENT", 16), ("MANIFEST-000010", 300), ("OPTIONS-000012", 7000)];

    fn with_meta(ssts: &[(&'static str, u64)]) -> Vec<(&'static str, u64)> {
        ssts.iter().copied().chain(META).collect()
    }

    #[test]
    fn first_snapshot_uploads_everything_to_the_right_prefixes() {
        let s1 = snapshot(1, &with_meta(&[("000008.sst", 100), ("000009.sst", 200)]));
        let plan = plan_upload(&s1, None, true, "shared/", "chk-1");
        assert!(plan.reuse.is_empty());
        assert_eq!(plan.upload.len(), 5);
        for (f, remote) in &plan.upload {
            if f.kind == FileKind::Sst {
                assert!(remote.starts_with("shared/") && remote.ends_with(&format!("-{}", f.name)), "{remote}");
                assert_eq!(remote.len(), "shared/".len() + 32 + 1 + f.name.len());
            } else {
                assert_eq!(remote, &format!("chk-1/{}", f.name));
            }
        }
        assert_eq!(plan.upload_bytes(), 100 + 200 + 16 + 300 + 7000);
    }

    #[test]
    fn second_snapshot_reuses_old_ssts_and_uploads_only_new_ones() {
        let s1 = snapshot(1, &with_meta(&[("000008.sst", 100), ("000009.sst", 200)]));
        let m1 = complete(&plan_upload(&s1, None, true, "shared", "chk-1"));
        let s2 = snapshot(2, &with_meta(&[("000008.sst", 100), ("000009.sst", 200), ("000014.sst", 50)]));
        let plan = plan_upload(&s2, Some(&m1), true, "shared", "chk-2");
        assert_eq!(reused(&plan), BTreeSet::from(["000008.sst", "000009.sst"]));
        assert_eq!(uploaded(&plan), BTreeSet::from(["000014.sst", "CURRENT", "MANIFEST-000010", "OPTIONS-000012"]));
        // Reused entries keep the remote path of checkpoint 1.
        for r in &plan.reuse {
            assert_eq!(Some(r), m1.files.iter().find(|f| f.name == r.name));
        }
        assert_eq!(plan.reused_bytes(), 300);
    }

    #[test]
    fn compaction_replaces_ssts_and_a_size_change_is_not_reused() {
        let s1 = snapshot(1, &with_meta(&[("000008.sst", 100), ("000009.sst", 200), ("000010.sst", 10)]));
        let m1 = complete(&plan_upload(&s1, None, true, "shared", "chk-1"));
        // Compaction merged 8 and 9 into 15; 10 survived; a file named like an old one
        // but with another size is a different file.
        let s2 = snapshot(2, &with_meta(&[("000010.sst", 10), ("000015.sst", 280)]));
        let plan = plan_upload(&s2, Some(&m1), true, "shared", "chk-2");
        assert_eq!(reused(&plan), BTreeSet::from(["000010.sst"]));
        assert_eq!(uploaded(&plan), BTreeSet::from(["000015.sst", "CURRENT", "MANIFEST-000010", "OPTIONS-000012"]));

        let s3 = snapshot(3, &with_meta(&[("000010.sst", 11)]));
        let plan = plan_upload(&s3, Some(&m1), true, "shared", "chk-3");
        assert!(plan.reuse.is_empty());
    }

    #[test]
    fn not_incremental_uploads_everything_exclusively() {
        let s1 = snapshot(1, &with_meta(&[("000008.sst", 100)]));
        let m1 = complete(&plan_upload(&s1, None, true, "shared", "chk-1"));
        let plan = plan_upload(&s1, Some(&m1), false, "shared", "chk-2/");
        assert!(plan.reuse.is_empty());
        let remotes: BTreeSet<&str> = plan.upload.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(
            remotes,
            BTreeSet::from(["chk-2/000008.sst", "chk-2/CURRENT", "chk-2/MANIFEST-000010", "chk-2/OPTIONS-000012"])
        );
        assert!(complete(&plan).files.iter().all(|f| !f.shared));
    }

    #[test]
    fn exclusive_files_of_the_previous_manifest_are_never_reused() {
        // Previous checkpoint was taken without incremental: its SSTs are exclusive.
        let s1 = snapshot(1, &with_meta(&[("000008.sst", 100)]));
        let m1 = complete(&plan_upload(&s1, None, false, "shared", "chk-1"));
        let plan = plan_upload(&s1, Some(&m1), true, "shared", "chk-2");
        assert!(plan.reuse.is_empty());
        // Nor across backend kinds.
        let mut m1 = complete(&plan_upload(&s1, None, true, "shared", "chk-1"));
        m1.backend = BackendKind::HashMap;
        assert!(plan_upload(&s1, Some(&m1), true, "shared", "chk-2").reuse.is_empty());
    }

    #[test]
    fn join_handles_slashes() {
        assert_eq!(join("a/b/", "c"), "a/b/c");
        assert_eq!(join("a/b", "c"), "a/b/c");
        assert_eq!(join("", "c"), "c");
    }
}
