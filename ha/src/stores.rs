//! The ZooKeeper-backed job stores: job graphs, completed checkpoints, checkpoint-id counters
//! and job results.
//!
//! ZooKeeper holds pointers, the storage directory holds data (a znode holds at most ~1 MB):
//!
//! ```text
//! jobgraphs/<job-id>                          BlobPointer → <storageDir>/jobgraphs/<job-id>/<unique>
//! jobs/<job-id>/checkpoint-counter            next checkpoint id (decimal text)
//! jobs/<job-id>/attempt-counter               next execution attempt number (decimal text)
//! jobs/<job-id>/checkpoints/<id, 20 digits>   BlobPointer → checkpoint metadata (in the checkpoints dir)
//! job-results/<job-id>                        BlobPointer (status dirty | clean) → <storageDir>/job-results/<job-id>/<unique>
//! ```
//!
//! Every write goes through the leader's [`Fence`]: a blob is written under a unique name
//! first and becomes visible only through the guarded pointer write, so a stale leader can
//! leave unreferenced blobs behind, never change what is stored. Reads use any session.

use keel_proto::v1::{BlobPointer, JobGraphRecord, JobResultRecord};
use keel_storage::{BlobKind, StorageDir};
use prost::Message;

use crate::{Fence, HaError, MetaClient};

pub const JOBGRAPHS: &str = "/jobgraphs";
pub const JOBS: &str = "/jobs";
pub const JOB_RESULTS: &str = "/job-results";

/// Where a result stands in the dirty → clean protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    /// The job ended; its cleanup (graph, checkpoints, znodes) may not have finished.
    Dirty,
    /// Cleanup finished. The entry stays as the record that the job must never run again.
    Clean,
}

/// A completed checkpoint's pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointPointer {
    pub checkpoint_id: u64,
    /// Metadata blob path, relative to the checkpoints directory.
    pub metadata_path: String,
    pub epoch: i64,
    pub znode: String,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Job ids become znode names and storage paths: keep them to a safe alphabet.
pub fn validate_job_id(job_id: &str) -> Result<(), HaError> {
    let ok = !job_id.is_empty()
        && job_id.len() <= 64
        && job_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(HaError::NotFound {
            what: format!("job id {job_id:?} is malformed (expected 1-64 of [A-Za-z0-9_-]); job"),
            path: format!("{JOBGRAPHS}/{job_id}"),
        })
    }
}

pub(crate) fn decode_pointer(path: &str, data: &[u8]) -> Result<BlobPointer, HaError> {
    let p = BlobPointer::decode(data).map_err(|e| HaError::CorruptZnode {
        path: path.to_string(),
        reason: format!("not a BlobPointer record ({e}); {} bytes", data.len()),
    })?;
    if p.format_version != keel_proto::FORMAT_VERSION || p.blob_path.is_empty() {
        return Err(HaError::CorruptZnode {
            path: path.to_string(),
            reason: format!(
                "BlobPointer format version {} with blob path {:?}; expected version {} and a blob path",
                p.format_version,
                p.blob_path,
                keel_proto::FORMAT_VERSION
            ),
        });
    }
    Ok(p)
}

fn pointer(blob_path: &str, epoch: i64, status: &str) -> Vec<u8> {
    BlobPointer {
        format_version: keel_proto::FORMAT_VERSION,
        blob_path: blob_path.to_string(),
        written_unix_ms: now_ms(),
        epoch,
        status: status.to_string(),
    }
    .encode_to_vec()
}

/// The job stores over one HA storage directory (`high-availability.storageDir`).
#[derive(Clone, Debug)]
pub struct HaStores {
    dir: StorageDir,
}

impl HaStores {
    pub fn new(dir: StorageDir) -> Self {
        Self { dir }
    }

    pub fn storage(&self) -> &StorageDir {
        &self.dir
    }

    /// Creates the structural parents (`/jobgraphs`, `/jobs`, `/job-results`). They carry no
    /// state, so this is not guarded.
    ///
    /// They get the ACL of the cluster's namespace (`high-availability.zookeeper.client.acl`,
    /// applied when the session created it).
    pub async fn ensure_layout(client: &MetaClient) -> Result<(), HaError> {
        for p in [JOBGRAPHS, JOBS, JOB_RESULTS] {
            client.ensure_node(p).await?;
        }
        Ok(())
    }

    // ---- job graphs ----

    /// Persists a submitted job: the graph blob, then in one guarded multi-op the graph
    /// pointer, `jobs/<id>`, its `checkpoints` parent and its counter (starting at 1).
    /// Acknowledge a submission only after this returns `Ok`.
    ///
    /// # Notable errors
    /// * [`HaError::JobExists`] if the id is taken (by a running or an ended job).
    /// * [`HaError::LeadershipLost`]: nothing became visible.
    pub async fn put_job_graph(&self, fence: &Fence, record: &JobGraphRecord) -> Result<(), HaError> {
        let id = &record.job_id;
        validate_job_id(id)?;
        let graph_znode = format!("{JOBGRAPHS}/{id}");
        let result_znode = format!("{JOB_RESULTS}/{id}");
        for z in [&graph_znode, &result_znode] {
            if fence.client().check_stat(z).await.map_err(|e| HaError::zk("exists", z, e))?.is_some() {
                return Err(HaError::JobExists { job_id: id.clone(), path: z.clone() });
            }
        }
        let blob = format!("jobgraphs/{id}/{}.graph", keel_storage::unique_name("jobgraph"));
        self.dir.write_blob(&blob, BlobKind::JobGraph, &record.encode_to_vec()).await?;
        let job = format!("{JOBS}/{id}");
        let mut txn = fence.transaction();
        txn.create(&graph_znode, &pointer(&blob, fence.epoch().0, ""), &fence.persistent())?
            .create(&job, b"", &fence.persistent())?
            .create(&format!("{job}/checkpoints"), b"", &fence.persistent())?
            .create(&format!("{job}/checkpoint-counter"), b"1", &fence.persistent())?
            .create(&format!("{job}/attempt-counter"), b"1", &fence.persistent())?;
        match txn.commit().await {
            Ok(()) => Ok(()),
            Err(HaError::Zk { source: zookeeper_client::Error::NodeExists, path, .. }) => {
                let _ = self.dir.delete(&blob).await;
                Err(HaError::JobExists { job_id: id.clone(), path })
            }
            Err(e) => {
                // Unreferenced either way (LeadershipLost: nothing visible). A ConnectionLoss
                // could have committed; keep the blob then.
                if !matches!(e, HaError::ConnectionLoss { .. }) {
                    let _ = self.dir.delete(&blob).await;
                }
                Err(e)
            }
        }
    }

    /// Ids of every stored job graph.
    pub async fn job_ids(&self, client: &MetaClient) -> Result<Vec<String>, HaError> {
        match client.list_children(JOBGRAPHS).await {
            Ok(mut ids) => {
                ids.sort();
                Ok(ids)
            }
            Err(zookeeper_client::Error::NoNode) => Ok(vec![]),
            Err(e) => Err(HaError::zk("list_children", JOBGRAPHS, e)),
        }
    }

    /// Loads a job graph. A corrupt pointer or blob is an error naming it.
    pub async fn get_job_graph(&self, client: &MetaClient, job_id: &str) -> Result<JobGraphRecord, HaError> {
        let znode = format!("{JOBGRAPHS}/{job_id}");
        let data = match client.get_data(&znode).await {
            Ok((d, _)) => d,
            Err(zookeeper_client::Error::NoNode) => {
                return Err(HaError::NotFound { what: format!("job graph of {job_id}"), path: znode })
            }
            Err(e) => return Err(HaError::zk("get_data", &znode, e)),
        };
        let p = decode_pointer(&znode, &data)?;
        let bytes = self.dir.read_blob(&p.blob_path, BlobKind::JobGraph).await?;
        let record = JobGraphRecord::decode(bytes.as_slice()).map_err(|e| HaError::CorruptZnode {
            path: self.dir.location(&p.blob_path),
            reason: format!("blob holds no JobGraphRecord ({e})"),
        })?;
        if record.job_id != job_id {
            return Err(HaError::CorruptZnode {
                path: self.dir.location(&p.blob_path),
                reason: format!("job graph is for job {:?}, expected {job_id:?}", record.job_id),
            });
        }
        Ok(record)
    }

    // ---- checkpoint ids and attempt numbers ----

    /// Takes the next checkpoint id: a guarded, version-checked increment, so two leaders can
    /// never hand out the same id and ids never go back.
    pub async fn next_checkpoint_id(&self, fence: &Fence, job_id: &str) -> Result<u64, HaError> {
        increment(fence, &format!("{JOBS}/{job_id}/checkpoint-counter"), "checkpoint counter").await
    }

    /// Takes the number of a new execution attempt of a job (`jobs/<id>/attempt-counter`, a
    /// guarded, version-checked increment like the checkpoint counter). Attempt numbers grow
    /// strictly across attempts *and* leaders, never collide and cannot overflow in practice
    /// (one per restart), so workers and sinks fence older attempts by comparing numbers.
    ///
    /// # Notable errors
    /// * [`HaError::LeadershipLost`]: this leader may not start attempts any more.
    /// * [`HaError::CorruptZnode`] if the counter does not hold a decimal number.
    pub async fn next_attempt(&self, fence: &Fence, job_id: &str) -> Result<u64, HaError> {
        let znode = format!("{JOBS}/{job_id}/attempt-counter");
        if fence.client().check_stat(&znode).await.map_err(|e| HaError::zk("exists", &znode, e))?.is_none() {
            // Jobs stored before attempt counters existed: create it (guarded; a concurrent
            // create by the same leader is harmless).
            match fence.create(&znode, b"1", &fence.persistent()).await {
                Ok(_) | Err(HaError::Zk { source: zookeeper_client::Error::NodeExists, .. }) => {}
                Err(HaError::ConnectionLoss { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        increment(fence, &znode, "attempt counter").await
    }

    /// The newest attempt number taken for a job so far (`None`: none was taken, or the job
    /// predates attempt counters). Read-only: a new leader compares it with the attempt its
    /// workers report running, to adopt only the newest attempt.
    ///
    /// # Notable errors
    /// * [`HaError::CorruptZnode`] if the counter does not hold a decimal number.
    pub async fn last_attempt(&self, client: &MetaClient, job_id: &str) -> Result<Option<u64>, HaError> {
        let znode = format!("{JOBS}/{job_id}/attempt-counter");
        let data = match client.get_data(&znode).await {
            Ok((data, _)) => data,
            Err(zookeeper_client::Error::NoNode) => return Ok(None),
            Err(e) => return Err(HaError::zk("get_data", &znode, e)),
        };
        let text = String::from_utf8_lossy(&data[..data.len().min(64)]).to_string();
        let next: u64 = text.trim().parse().map_err(|_| HaError::CorruptZnode {
            path: znode.clone(),
            reason: format!("attempt counter holds {text:?}; expected a decimal number"),
        })?;
        Ok(next.checked_sub(1).filter(|&a| a > 0))
    }

    // ---- completed checkpoints ----

    /// Publishes a completed checkpoint (its metadata blob is already written) and drops
    /// pointers beyond `retained`, newest kept. Returns the dropped pointers: delete their
    /// files only after this returned (the pointer is the commit point).
    ///
    /// # Notable errors
    /// * [`HaError::LeadershipLost`]: definitely not published.
    /// * Any other error: the outcome may be unknown (connection lost, session expired): the
    ///   caller must not delete anything the checkpoint references. Once the pointer is
    ///   written, a failure of the retention step is logged and `Ok(vec![])` returned.
    pub async fn add_checkpoint(
        &self,
        fence: &Fence,
        job_id: &str,
        checkpoint_id: u64,
        metadata_path: &str,
        retained: usize,
    ) -> Result<Vec<CheckpointPointer>, HaError> {
        let znode = format!("{JOBS}/{job_id}/checkpoints/{checkpoint_id:020}");
        match fence.create(&znode, &pointer(metadata_path, fence.epoch().0, ""), &fence.persistent()).await {
            Ok(_) => {}
            Err(HaError::ConnectionLoss { .. }) => {
                // Unknown outcome: it counts only if it is there with our blob.
                let (data, _) =
                    fence.client().get_data(&znode).await.map_err(|e| HaError::zk("get_data", &znode, e))?;
                if decode_pointer(&znode, &data)?.blob_path != metadata_path {
                    return Err(HaError::CorruptZnode {
                        path: znode,
                        reason: "holds another checkpoint's metadata".into(),
                    });
                }
            }
            Err(e) => return Err(e),
        }
        // The checkpoint is committed. Retention is best effort from here: if it fails, the
        // older pointers stay (and their files with them) until the next checkpoint.
        match self.drop_beyond(fence, job_id, retained).await {
            Ok(dropped) => Ok(dropped),
            Err(e) => {
                tracing::warn!(job = job_id, checkpoint = checkpoint_id, error = %e, "retention skipped; older checkpoints stay for now");
                Ok(vec![])
            }
        }
    }

    async fn drop_beyond(
        &self,
        fence: &Fence,
        job_id: &str,
        retained: usize,
    ) -> Result<Vec<CheckpointPointer>, HaError> {
        let all = self.checkpoints(fence.client(), job_id).await?;
        let excess = all.len().saturating_sub(retained.max(1));
        let dropped: Vec<CheckpointPointer> = all.into_iter().take(excess).collect();
        if !dropped.is_empty() {
            let mut txn = fence.transaction();
            for d in &dropped {
                txn.delete(&d.znode, None)?;
            }
            txn.commit().await?;
        }
        Ok(dropped)
    }

    /// Every retained checkpoint pointer of a job, oldest first. A pointer that cannot be
    /// decoded is returned as an error naming it only if it is the only one; otherwise it is
    /// skipped with an error log (recovery falls back to the others).
    pub async fn checkpoints(&self, client: &MetaClient, job_id: &str) -> Result<Vec<CheckpointPointer>, HaError> {
        let parent = format!("{JOBS}/{job_id}/checkpoints");
        let mut names = match client.list_children(&parent).await {
            Ok(n) => n,
            Err(zookeeper_client::Error::NoNode) => return Ok(vec![]),
            Err(e) => return Err(HaError::zk("list_children", &parent, e)),
        };
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let znode = format!("{parent}/{name}");
            let Ok(checkpoint_id) = name.parse::<u64>() else {
                tracing::error!(znode = %znode, "ignoring a checkpoint znode whose name is not a checkpoint id");
                continue;
            };
            let data = match client.get_data(&znode).await {
                Ok((d, _)) => d,
                Err(zookeeper_client::Error::NoNode) => continue,
                Err(e) => return Err(HaError::zk("get_data", &znode, e)),
            };
            match decode_pointer(&znode, &data) {
                Ok(p) => {
                    out.push(CheckpointPointer { checkpoint_id, metadata_path: p.blob_path, epoch: p.epoch, znode })
                }
                Err(e) => tracing::error!(error = %e, "skipping an unreadable checkpoint pointer"),
            }
        }
        Ok(out)
    }

    // ---- results ----

    /// Records that a job ended (status dirty), before its cleanup starts.
    pub async fn put_result(&self, fence: &Fence, record: &JobResultRecord) -> Result<(), HaError> {
        let id = &record.job_id;
        let znode = format!("{JOB_RESULTS}/{id}");
        if fence.client().check_stat(&znode).await.map_err(|e| HaError::zk("exists", &znode, e))?.is_some() {
            return Ok(());
        }
        let blob = format!("job-results/{id}/{}.result", keel_storage::unique_name("result"));
        self.dir.write_blob(&blob, BlobKind::JobResult, &record.encode_to_vec()).await?;
        match fence.create(&znode, &pointer(&blob, fence.epoch().0, "dirty"), &fence.persistent()).await {
            Ok(_) | Err(HaError::Zk { source: zookeeper_client::Error::NodeExists, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The result of a job, if it ended.
    pub async fn result(
        &self,
        client: &MetaClient,
        job_id: &str,
    ) -> Result<Option<(JobResultRecord, ResultStatus)>, HaError> {
        let znode = format!("{JOB_RESULTS}/{job_id}");
        let data = match client.get_data(&znode).await {
            Ok((d, _)) => d,
            Err(zookeeper_client::Error::NoNode) => return Ok(None),
            Err(e) => return Err(HaError::zk("get_data", &znode, e)),
        };
        let p = decode_pointer(&znode, &data)?;
        let status = match p.status.as_str() {
            "dirty" => ResultStatus::Dirty,
            "clean" => ResultStatus::Clean,
            other => {
                return Err(HaError::CorruptZnode {
                    path: znode,
                    reason: format!("result status {other:?}; expected \"dirty\" or \"clean\""),
                })
            }
        };
        let bytes = self.dir.read_blob(&p.blob_path, BlobKind::JobResult).await?;
        let record = JobResultRecord::decode(bytes.as_slice()).map_err(|e| HaError::CorruptZnode {
            path: self.dir.location(&p.blob_path),
            reason: format!("blob holds no JobResultRecord ({e})"),
        })?;
        Ok(Some((record, status)))
    }

    /// Ids of every job with a result.
    pub async fn result_ids(&self, client: &MetaClient) -> Result<Vec<String>, HaError> {
        match client.list_children(JOB_RESULTS).await {
            Ok(mut ids) => {
                ids.sort();
                Ok(ids)
            }
            Err(zookeeper_client::Error::NoNode) => Ok(vec![]),
            Err(e) => Err(HaError::zk("list_children", JOB_RESULTS, e)),
        }
    }

    /// Cleanup of an ended job's HA data: the graph pointer and the whole `jobs/<id>` subtree
    /// in one guarded multi-op, then the graph blobs. Checkpoint files are the caller's (they
    /// live in the checkpoints directory). Idempotent.
    pub async fn remove_job(&self, fence: &Fence, job_id: &str) -> Result<(), HaError> {
        let client = fence.client();
        let mut paths = Vec::new();
        let job = format!("{JOBS}/{job_id}");
        let mut stack = vec![job.clone()];
        while let Some(p) = stack.pop() {
            match client.list_children(&p).await {
                Ok(kids) => {
                    paths.push(p.clone());
                    for k in kids {
                        stack.push(format!("{p}/{k}"));
                    }
                }
                Err(zookeeper_client::Error::NoNode) => {}
                Err(e) => return Err(HaError::zk("list_children", &p, e)),
            }
        }
        let graph = format!("{JOBGRAPHS}/{job_id}");
        if client.check_stat(&graph).await.map_err(|e| HaError::zk("exists", &graph, e))?.is_some() {
            paths.push(graph);
        }
        if !paths.is_empty() {
            // Children before parents: deepest paths first.
            paths.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
            let mut txn = fence.transaction();
            for p in &paths {
                txn.delete(p, None)?;
            }
            txn.commit().await?;
        }
        self.dir.delete_prefix(&format!("jobgraphs/{job_id}/")).await?;
        Ok(())
    }

    /// Marks a result clean after cleanup finished.
    pub async fn mark_result_clean(&self, fence: &Fence, job_id: &str) -> Result<(), HaError> {
        let znode = format!("{JOB_RESULTS}/{job_id}");
        let (data, stat) = fence.client().get_data(&znode).await.map_err(|e| HaError::zk("get_data", &znode, e))?;
        let mut p = decode_pointer(&znode, &data)?;
        if p.status == "clean" {
            return Ok(());
        }
        p.status = "clean".into();
        fence.set_data(&znode, &p.encode_to_vec(), Some(stat.version)).await?;
        Ok(())
    }
}

/// A guarded, version-checked increment of a decimal counter znode; returns the value
/// before the increment. An unknown outcome (connection lost) is read again: a successful
/// increment then just skips one value.
async fn increment(fence: &Fence, znode: &str, what: &str) -> Result<u64, HaError> {
    for _ in 0..16 {
        let (data, stat) = fence.client().get_data(znode).await.map_err(|e| HaError::zk("get_data", znode, e))?;
        let text = String::from_utf8_lossy(&data[..data.len().min(64)]).to_string();
        let value: u64 = text.trim().parse().map_err(|_| HaError::CorruptZnode {
            path: znode.to_string(),
            reason: format!("{what} holds {text:?}; expected a decimal number"),
        })?;
        let next = value.checked_add(1).ok_or_else(|| HaError::CorruptZnode {
            path: znode.to_string(),
            reason: format!("{what} is at its maximum {value}"),
        })?;
        match fence.set_data(znode, next.to_string().as_bytes(), Some(stat.version)).await {
            Ok(_) => return Ok(value),
            Err(HaError::Zk { source: zookeeper_client::Error::BadVersion, .. }) => continue,
            Err(HaError::ConnectionLoss { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(HaError::Zk { op: "increment", path: znode.to_string(), source: zookeeper_client::Error::BadVersion })
}

/// Storage options (S3 endpoint, region, credentials, path style) from the configuration;
/// unset values fall back to the AWS environment variables inside `keel-storage`.
pub fn storage_options(config: &keel_conf::Config) -> keel_storage::StorageOptions {
    keel_storage::StorageOptions {
        s3_endpoint: config.s3_endpoint.clone(),
        s3_region: config.s3_region.clone(),
        s3_access_key: config.s3_access_key.clone(),
        s3_secret_key: config.s3_secret_key.clone(),
        s3_path_style_access: config.s3_path_style_access,
        ..Default::default()
    }
}
