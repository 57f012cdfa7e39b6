//! Invariant 4: committed output equals one failure-free run.

use std::collections::HashMap;

use super::Verdict;

/// How many sample lines each side of the diff shows.
const SAMPLE: usize = 5;
/// Longest sample line shown (longer ones are cut).
const MAX_LINE: usize = 120;

/// **exactly_once** — the committed lines equal the expected lines *as a multiset* (order
/// is free; counts must match). On failure the details give the totals, then the first 5
/// missing lines (expected more often than committed, in expected order) and the first 5
/// duplicated or unexpected lines (committed more often than expected, in committed order),
/// each with its counts.
pub fn exactly_once<A: AsRef<str>, B: AsRef<str>>(expected: &[A], committed: &[B]) -> Verdict {
    let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
    for l in expected {
        counts.entry(l.as_ref()).or_default().0 += 1;
    }
    for l in committed {
        counts.entry(l.as_ref()).or_default().1 += 1;
    }
    let mut missing_lines = 0;
    let mut extra_lines = 0;
    for (exp, got) in counts.values() {
        missing_lines += exp.saturating_sub(*got);
        extra_lines += got.saturating_sub(*exp);
    }
    if missing_lines == 0 && extra_lines == 0 {
        return Verdict::from_violations("exactly_once", Vec::new());
    }
    let mut details = vec![format!(
        "{} lines expected, {} committed: {missing_lines} missing, {extra_lines} duplicated or unexpected",
        expected.len(),
        committed.len()
    )];
    let sample = |lines: Vec<&str>, what: &str, details: &mut Vec<String>| {
        let mut shown = Vec::new();
        for l in lines {
            if shown.len() == SAMPLE {
                break;
            }
            if !shown.contains(&l) {
                shown.push(l);
            }
        }
        for l in shown {
            let (exp, got) = counts[l];
            details.push(format!("{what}: {:?} (expected {exp}×, committed {got}×)", cut(l)));
        }
    };
    let missing: Vec<&str> = expected.iter().map(AsRef::as_ref).filter(|l| counts[l].0 > counts[l].1).collect();
    sample(missing, "missing", &mut details);
    let extra: Vec<&str> = committed.iter().map(AsRef::as_ref).filter(|l| counts[l].1 > counts[l].0).collect();
    sample(extra, "duplicated or unexpected", &mut details);
    Verdict { name: "exactly_once", ok: false, details }
}

fn cut(line: &str) -> String {
    if line.chars().count() <= MAX_LINE {
        line.to_string()
    } else {
        let head: String = line.chars().take(MAX_LINE).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_multisets_pass_in_any_order() {
        let v = exactly_once(&["a", "b", "b", "c"], &["b".to_string(), "c".into(), "a".into(), "b".into()]);
        assert!(v.ok, "{v}");
        assert!(exactly_once::<&str, &str>(&[], &[]).ok);
    }

    #[test]
    fn missing_duplicated_and_extra_lines_fail_with_a_diff() {
        let expected: Vec<String> = (0..20).map(|i| format!("k{i},1")).collect();
        let mut committed: Vec<String> = expected[3..].to_vec(); // k0..k2 missing
        committed.push("k5,1".into()); // duplicate
        committed.push("k5,1".into()); // and again
        committed.push("zz,9".into()); // never expected
        let v = exactly_once(&expected, &committed);
        assert!(!v.ok);
        assert_eq!(v.details[0], "20 lines expected, 20 committed: 3 missing, 3 duplicated or unexpected");
        assert_eq!(v.details[1], "missing: \"k0,1\" (expected 1×, committed 0×)");
        assert_eq!(v.details.len(), 1 + 3 + 2, "{v}");
        assert_eq!(v.details[4], "duplicated or unexpected: \"k5,1\" (expected 1×, committed 3×)");
        assert_eq!(v.details[5], "duplicated or unexpected: \"zz,9\" (expected 0×, committed 1×)");
    }

    #[test]
    fn samples_are_capped_at_five() {
        let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        let v = exactly_once::<String, String>(&expected, &[]);
        assert_eq!(v.details.len(), 1 + 5);
    }
}
