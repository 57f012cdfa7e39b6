//! Test-only switches that turn one job-layer safety mechanism off, so tests (the chaos
//! campaigns in `chaos-tests/tests/campaign.rs`, `bin/mutation-check`) can show that they
//! catch its absence. Each is read once per process and logs at error level when on. Never
//! set them in production.

use std::sync::OnceLock;

/// `KEEL_TEST_DISABLE_PER_JOB_RECOVERY=1`: recovery behaves as before per-job recovery (issue
/// 7, hole 2): the first unreadable entry aborts the whole recovery pass, and nothing retries
/// while this leader stays ("will retry when leadership is regained").
pub const DISABLE_PER_JOB_RECOVERY_ENV: &str = "KEEL_TEST_DISABLE_PER_JOB_RECOVERY";

/// `KEEL_TEST_DISABLE_DURABLE_CANCEL=1`: a cancel is answered before its result is recorded,
/// and the job's end then skips writing the result (as it did before the fix when the leader
/// was momentarily suspended or `put_result` failed; issue 7, hole 4), so the next leader
/// recovers the cancelled job.
pub const DISABLE_DURABLE_CANCEL_ENV: &str = "KEEL_TEST_DISABLE_DURABLE_CANCEL";

/// `KEEL_TEST_DISABLE_RESULT_CHECK=1`: recovery ignores the result store (`/job-results`): it
/// neither finishes dirty results' cleanup first (which removes the job graph) nor skips
/// stored jobs that have a result, so a job whose end was recorded by a leader that died
/// before its cleanup is started again.
pub const DISABLE_RESULT_CHECK_ENV: &str = "KEEL_TEST_DISABLE_RESULT_CHECK";

/// `KEEL_TEST_DISABLE_ADOPTION_RENOTIFY=1`: a master that adopts a job does not announce the
/// latest completed checkpoint again, so a checkpoint whose pointer the old leader wrote but
/// never announced is committed by the tasks only with the next one.
pub const DISABLE_ADOPTION_RENOTIFY_ENV: &str = "KEEL_TEST_DISABLE_ADOPTION_RENOTIFY";

/// `KEEL_TEST_EXIT_AFTER_POINTER=<N>` (fault injection, not a switch): the dispatcher exits
/// at once (status 137, no cleanup: like kill -9) right after its guarded pointer write of a
/// checkpoint numbered N or more succeeded, before it tells the tasks. It places a leader
/// crash in the window between a checkpoint's completion and its announcement.
pub const EXIT_AFTER_POINTER_ENV: &str = "KEEL_TEST_EXIT_AFTER_POINTER";

/// `KEEL_TEST_EXIT_AFTER_POINTER_FILE=<path>` (fault injection for the chaos campaigns'
/// `kill-leader-after-pointer`): while the file exists, the next successful checkpoint pointer
/// write makes the dispatcher delete the file and exit as for [`EXIT_AFTER_POINTER_ENV`].
pub const EXIT_AFTER_POINTER_FILE_ENV: &str = "KEEL_TEST_EXIT_AFTER_POINTER_FILE";

/// Whether to exit now, right after the pointer of checkpoint `id` was written (see
/// [`EXIT_AFTER_POINTER_ENV`] and [`EXIT_AFTER_POINTER_FILE_ENV`]); a trigger file is consumed.
pub fn exit_after_pointer_now(id: u64) -> bool {
    static FILE: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    if exit_after_pointer().is_some_and(|n| id >= n) {
        return true;
    }
    let file = FILE.get_or_init(|| {
        std::env::var_os(EXIT_AFTER_POINTER_FILE_ENV).filter(|v| !v.is_empty()).map(std::path::PathBuf::from)
    });
    file.as_ref().is_some_and(|f| std::fs::remove_file(f).is_ok())
}

/// `KEEL_TEST_EXIT_BEFORE_POINTER=<N>` (fault injection): the dispatcher exits (137) right
/// before its guarded pointer write of a checkpoint numbered N or more, after every subtask
/// acknowledged it and its metadata blob was written: a checkpoint that never completes.
pub const EXIT_BEFORE_POINTER_ENV: &str = "KEEL_TEST_EXIT_BEFORE_POINTER";

/// `KEEL_TEST_EXIT_BEFORE_POINTER_FILE=<path>` (the chaos campaigns' `kill-leader-before-pointer`):
/// while the file exists, the dispatcher deletes it and exits as for [`EXIT_BEFORE_POINTER_ENV`]
/// at its next pointer write.
pub const EXIT_BEFORE_POINTER_FILE_ENV: &str = "KEEL_TEST_EXIT_BEFORE_POINTER_FILE";

pub fn exit_before_pointer_now(id: u64) -> bool {
    static N: OnceLock<Option<u64>> = OnceLock::new();
    static FILE: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    if N.get_or_init(|| std::env::var(EXIT_BEFORE_POINTER_ENV).ok()?.parse().ok()).is_some_and(|n| id >= n) {
        return true;
    }
    let file = FILE.get_or_init(|| {
        std::env::var_os(EXIT_BEFORE_POINTER_FILE_ENV).filter(|v| !v.is_empty()).map(std::path::PathBuf::from)
    });
    file.as_ref().is_some_and(|f| std::fs::remove_file(f).is_ok())
}

pub fn exit_after_pointer() -> Option<u64> {
    static N: OnceLock<Option<u64>> = OnceLock::new();
    *N.get_or_init(|| {
        let n = std::env::var(EXIT_AFTER_POINTER_ENV).ok()?.parse().ok()?;
        tracing::error!("{EXIT_AFTER_POINTER_ENV}={n}: this dispatcher exits after writing checkpoint {n}'s pointer (test-only fault)");
        Some(n)
    })
}

pub fn adoption_renotify_disabled() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    read(&OFF, DISABLE_ADOPTION_RENOTIFY_ENV, "announcing the latest completed checkpoint on adoption")
}

fn read(cell: &'static OnceLock<bool>, name: &str, what: &str) -> bool {
    *cell.get_or_init(|| {
        let off = std::env::var(name).is_ok_and(|v| v == "1");
        if off {
            tracing::error!("{name}=1: {what} is OFF (test-only switch)");
        }
        off
    })
}

pub fn per_job_recovery_disabled() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    read(&OFF, DISABLE_PER_JOB_RECOVERY_ENV, "per-job recovery (one bad entry aborts the whole recovery)")
}

pub fn durable_cancel_disabled() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    read(&OFF, DISABLE_DURABLE_CANCEL_ENV, "durable cancel (a cancel is answered before its result is recorded)")
}

pub fn result_check_disabled() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    read(&OFF, DISABLE_RESULT_CHECK_ENV, "the result-store check in recovery (finished jobs may run again)")
}

/// `KEEL_TEST_DISABLE_MISSING_SUBTASK_FAILOVER=1`: a worker answering a checkpoint trigger with
/// "no subtask of this attempt runs here" only aborts that checkpoint; the subtask is never
/// declared missing, so a job whose subtask vanished without a report stays RUNNING forever.
pub const DISABLE_MISSING_SUBTASK_FAILOVER_ENV: &str = "KEEL_TEST_DISABLE_MISSING_SUBTASK_FAILOVER";

pub fn missing_subtask_failover_disabled() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    read(&OFF, DISABLE_MISSING_SUBTASK_FAILOVER_ENV, "failing over a subtask its worker denies running")
}
