//! No znodes or checkpoint files left behind after the jobs ended.

use super::Verdict;

/// **no_leaks** — both lists are empty: the znodes still under the cluster's job paths and
/// the files still in the storage directory for jobs that ended and were cleaned (the
/// caller decides what counts as leftover). Each leftover is one detail.
pub fn no_leaks<A: AsRef<str>, B: AsRef<str>>(leftover_znodes: &[A], leftover_files: &[B]) -> Verdict {
    let violations = leftover_znodes
        .iter()
        .map(|z| format!("leaked znode {}", z.as_ref()))
        .chain(leftover_files.iter().map(|f| format!("leaked file {}", f.as_ref())))
        .collect();
    Verdict::from_violations("no_leaks", violations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_passes_and_leftovers_fail() {
        assert!(no_leaks::<&str, &str>(&[], &[]).ok);
        let v = no_leaks(&["/keel/c1/jobs/j1/checkpoints/7"], &["s3://b/c1/j1/chk-7/_metadata"]);
        assert!(!v.ok);
        assert_eq!(
            v.details,
            ["leaked znode /keel/c1/jobs/j1/checkpoints/7", "leaked file s3://b/c1/j1/chk-7/_metadata"]
        );
    }
}
