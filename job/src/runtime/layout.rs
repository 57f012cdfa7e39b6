//! Where a job's files live, in the checkpoint directory and in the sink directory.

/// `<job>/shared`: incremental SST files shared by checkpoints of the job.
pub(crate) fn shared_prefix(job_id: &str) -> String {
    format!("{job_id}/shared")
}

/// `<job>/chk-<id>/`: every exclusive file of checkpoint `id` (all subtasks, all attempts).
pub(crate) fn checkpoint_prefix(job_id: &str, checkpoint_id: u64) -> String {
    format!("{job_id}/chk-{checkpoint_id}/")
}

/// `<job>/chk-<id>/subtask-<i>/attempt-<a>`.
fn attempt_dir(job_id: &str, checkpoint_id: u64, subtask: u32, attempt: u64) -> String {
    format!("{job_id}/chk-{checkpoint_id}/subtask-{subtask}/attempt-{attempt}")
}

/// Exclusive state files of one subtask attempt's checkpoint.
pub(crate) fn exclusive_prefix(job_id: &str, checkpoint_id: u64, subtask: u32, attempt: u64) -> String {
    format!("{}/state", attempt_dir(job_id, checkpoint_id, subtask, attempt))
}

/// The state manifest blob of one subtask attempt's checkpoint.
pub(crate) fn manifest_path(job_id: &str, checkpoint_id: u64, subtask: u32, attempt: u64) -> String {
    format!("{}/state-manifest", attempt_dir(job_id, checkpoint_id, subtask, attempt))
}

/// `.pending/<job>/<subtask>/`: every pending part of one subtask (all attempts).
pub(crate) fn pending_dir(job_id: &str, subtask: u32) -> String {
    format!(".pending/{job_id}/{subtask}/")
}

/// `.pending/<job>/`: every pending part of a job.
pub(crate) fn pending_job_dir(job_id: &str) -> String {
    format!(".pending/{job_id}/")
}

/// Where the file sink pre-commits the part of `checkpoint_id`, relative to the sink
/// directory: `.pending/<job>/<subtask>/<attempt>-<checkpoint>.part`.
pub fn pending_part_path(job_id: &str, subtask: u32, attempt: u64, checkpoint_id: u64) -> String {
    format!(".pending/{job_id}/{subtask}/{attempt}-{checkpoint_id}.part")
}

/// The `(attempt, checkpoint)` of a pending part's file name `<attempt>-<checkpoint>.part`.
pub(crate) fn parse_pending_part_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".part")?;
    let (attempt, checkpoint) = stem.split_once('-')?;
    Some((attempt.parse().ok()?, checkpoint.parse().ok()?))
}

/// Where the part of `checkpoint_id` becomes visible, relative to the sink directory:
/// `part-<job>-<subtask:05>-<checkpoint:020>` (deterministic, so a re-commit after recovery
/// writes the same object; the job id keeps jobs sharing a sink directory, such as a job and
/// the job restored from its savepoint, apart).
pub fn final_part_path(job_id: &str, subtask: u32, checkpoint_id: u64) -> String {
    format!("part-{job_id}-{subtask:05}-{checkpoint_id:020}")
}

/// Checks that a job id can name a directory.
pub(crate) fn check_job_id(job_id: &str) -> Result<(), String> {
    if job_id.is_empty() {
        return Err("empty".to_string());
    }
    if job_id == "." || job_id == ".." || job_id.starts_with('.') {
        return Err("must not start with '.'".to_string());
    }
    if let Some(c) = job_id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))) {
        return Err(format!("contains {c:?}; expected letters, digits, '-' and '_'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(final_part_path("j1", 3, 42), "part-j1-00003-00000000000000000042");
        assert_eq!(pending_part_path("j1", 3, 2, 42), ".pending/j1/3/2-42.part");
        assert_eq!(parse_pending_part_name("2-42.part"), Some((2, 42)));
        for bad in ["2-42", "x-42.part", "2_42.part", "-42.part", "2-.part"] {
            assert_eq!(parse_pending_part_name(bad), None, "{bad:?}");
        }
        assert_eq!(manifest_path("j1", 7, 1, 2), "j1/chk-7/subtask-1/attempt-2/state-manifest");
        assert_eq!(exclusive_prefix("j1", 7, 1, 2), "j1/chk-7/subtask-1/attempt-2/state");
        assert!(check_job_id("3f2a-b_c").is_ok());
        for bad in ["", ".", "..x", "a/b", "a b"] {
            assert!(check_job_id(bad).is_err(), "{bad:?}");
        }
    }
}
