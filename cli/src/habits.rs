//! What `keel run | list | stop | savepoint | status` do for Flink users' habits: plain
//! absolute paths where a URI is expected, `-p` overriding a spec's parallelism, offline
//! spec checks, the job and worker tables.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::bail;
use serde_json::Value;

/// A savepoint location or directory as the dispatcher expects it: a URI as given, an
/// absolute path as `file://` + path. A relative path is refused here, at the client, since
/// the dispatcher would resolve it against its own working directory.
///
/// # Errors
/// A relative path or an empty value, naming `what` (the flag) and the value.
pub fn location_uri(what: &str, value: &str) -> anyhow::Result<String> {
    let value = value.trim();
    if value.is_empty() {
        bail!("{what} is empty; expected an absolute path (/data/savepoints) or a URI (file:///data/savepoints, s3://bucket/savepoints)");
    }
    if value.contains("://") {
        return Ok(value.to_owned());
    }
    if value.starts_with('/') {
        return Ok(format!("file://{value}"));
    }
    bail!(
        "{what} '{value}' is a relative path; the dispatcher cannot know what it is relative to. Give an \
         absolute path (/data/savepoints) or a URI (file:///data/savepoints, s3://bucket/savepoints)"
    )
}

/// `spec` with its top-level `parallelism` set to `parallelism` (`keel run -p N`): an existing
/// top-level `parallelism:` line is replaced, else one is added at the top. The text is
/// otherwise unchanged, so line numbers in errors stay right (but for the added line).
///
/// # Errors
/// A spec whose top level is not a block mapping (it starts with `{` or `-`), where a line
/// cannot be added.
pub fn with_parallelism(spec: &str, parallelism: u32) -> anyhow::Result<String> {
    let line = format!("parallelism: {parallelism}");
    let mut replaced = false;
    let mut out: Vec<String> = Vec::new();
    for l in spec.lines() {
        let is_top = l.starts_with("parallelism:") || l.starts_with("parallelism :");
        if is_top && !replaced {
            out.push(line.clone());
            replaced = true;
        } else {
            out.push(l.to_owned());
        }
    }
    if replaced {
        return Ok(out.join("\n") + "\n");
    }
    let first = spec.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#') && *l != "---");
    if first.is_some_and(|l| l.starts_with('{') || l.starts_with('-')) {
        bail!(
            "-p needs a job spec whose top level is a block mapping (name: ..., pipeline: ...) to set parallelism in"
        );
    }
    // After a leading `---`, if any.
    match spec.strip_prefix("---\n") {
        Some(rest) => Ok(format!("---\n{line}\n{rest}")),
        None => Ok(format!("{line}\n{spec}")),
    }
}

/// `keel run --check FILE`: the spec parsed offline with the built-in operators and the
/// configuration's defaults; a one-line summary, or the error naming the file and line.
///
/// # Errors
/// The spec's error, as the dispatcher would report it, naming `file`.
pub fn check_spec(config: &keel_conf::Config, file: &Path, text: &str) -> anyhow::Result<String> {
    let origin = file.display().to_string();
    let spec = parse_spec(config, file, text)?;
    Ok(format!(
        "{origin}: OK: job '{}', parallelism {}, checkpoint interval {:?}, {} operator(s){}",
        spec.name,
        spec.parallelism,
        spec.checkpoint_interval,
        spec.operators.len(),
        if spec.source.is_bounded() { ", bounded" } else { ", unbounded" }
    ))
}

/// A spec parsed offline: built-in operators, this configuration's defaults; errors name `file`.
fn parse_spec(config: &keel_conf::Config, file: &Path, text: &str) -> anyhow::Result<keel_job::JobSpec> {
    let defaults = keel_job::JobDefaults::from_config(config);
    let registry = keel_job::OperatorRegistry::new();
    keel_job::parse_job_spec_with_defaults(text, &file.display().to_string(), &registry, &defaults)
        .map_err(|e| anyhow::anyhow!("invalid job spec: {e}"))
}

/// The parallelism of a spec, checked offline as [`check_spec`] does.
pub fn spec_parallelism(config: &keel_conf::Config, file: &Path, text: &str) -> anyhow::Result<u32> {
    Ok(parse_spec(config, file, text)?.parallelism)
}

/// Whether a job in `state` is still running or about to (`keel list -r`).
pub fn is_active(state: &str) -> bool {
    !matches!(state, "FINISHED" | "CANCELED" | "CANCELLED" | "FAILED")
}

/// Renders rows as columns padded to their widest cell (two spaces apart); the last column
/// is not padded.
fn columns(rows: &[Vec<String>], right: &[usize]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..n).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else if right.contains(&c) {
                let _ = write!(line, "{cell:>w$}  ", w = widths[c]);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The failure reason shown in one table cell: the first line, at most 120 characters.
fn reason_cell(failure: Option<&str>) -> String {
    let Some(f) = failure else { return String::new() };
    let first = f.lines().next().unwrap_or_default();
    let cell: String = first.chars().take(120).collect();
    if cell.len() < first.len() || f.lines().nth(1).is_some() {
        format!("{cell}…")
    } else {
        cell
    }
}

/// `keel list`: one aligned row per job of `GET /jobs/overview`, with the failure reason;
/// `active_only` keeps running (non-terminal) jobs (`-r`).
pub fn jobs_table(v: &Value, active_only: bool) -> String {
    let mut rows = vec![["JOB ID", "NAME", "STATE", "PARALLELISM", "RESTARTS", "RESTORED FROM", "REASON"]
        .map(String::from)
        .to_vec()];
    for j in v["jobs"].as_array().into_iter().flatten() {
        let state = j["state"].as_str().unwrap_or("");
        if active_only && !is_active(state) {
            continue;
        }
        rows.push(vec![
            j["jid"].as_str().unwrap_or("").to_owned(),
            j["name"].as_str().unwrap_or("").to_owned(),
            state.to_owned(),
            j["parallelism"].to_string(),
            j["restarts"].to_string(),
            j["restored-from"].as_u64().map(|c| format!("checkpoint {c}")).unwrap_or_else(|| "-".to_owned()),
            reason_cell(j["failure"].as_str()),
        ]);
    }
    if rows.len() == 1 {
        return if active_only { "No running jobs.\n".to_owned() } else { "No jobs.\n".to_owned() };
    }
    columns(&rows, &[3, 4])
}

/// `keel status`: the workers the leader has registered (`GET /taskmanagers`).
pub fn workers_table(v: &Value) -> String {
    let workers = v["taskmanagers"].as_array().cloned().unwrap_or_default();
    let total: u64 = workers.iter().filter_map(|w| w["slotsNumber"].as_u64()).sum();
    let free: u64 = workers.iter().filter_map(|w| w["freeSlots"].as_u64()).sum();
    let mut out = format!("\nworkers   {} registered, {free} of {total} slots free\n", workers.len());
    if workers.is_empty() {
        return out;
    }
    let mut rows = vec![["WORKER", "RPC", "SLOTS", "FREE", "EPOCH"].map(String::from).to_vec()];
    for w in &workers {
        rows.push(vec![
            w["id"].as_str().unwrap_or("").to_owned(),
            w["path"].as_str().unwrap_or("").to_owned(),
            w["slotsNumber"].to_string(),
            w["freeSlots"].to_string(),
            w["leaderEpoch"].to_string(),
        ]);
    }
    out.push_str(&columns(&rows, &[2, 3, 4]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(location_uri("-s", "/abs/sp").unwrap(), "file:///abs/sp");
        assert_eq!(location_uri("-s", "s3://b/p").unwrap(), "s3://b/p");
        let err = location_uri("--savepointPath", "rel/dir").unwrap_err().to_string();
        assert!(err.starts_with("--savepointPath 'rel/dir' is a relative path"), "{err}");
    }

    #[test]
    fn parallelism_is_replaced_or_added() {
        assert_eq!(
            with_parallelism("name: a\nparallelism: 1\npipeline: []\n", 4).unwrap(),
            "name: a\nparallelism: 4\npipeline: []\n"
        );
        assert_eq!(with_parallelism("name: a\n", 3).unwrap(), "parallelism: 3\nname: a\n");
        assert_eq!(with_parallelism("---\nname: a\n", 3).unwrap(), "---\nparallelism: 3\nname: a\n");
        // Nested `parallelism` keys (indented) are not the job's.
        assert_eq!(
            with_parallelism("name: a\nx:\n  parallelism: 9\n", 2).unwrap(),
            "parallelism: 2\nname: a\nx:\n  parallelism: 9\n"
        );
        assert!(with_parallelism("{name: a}", 2).is_err());
    }

    #[test]
    fn tables_align_every_column() {
        let v = serde_json::json!({"jobs": [
            {"jid": "a", "name": "short", "state": "RUNNING", "parallelism": 2, "restarts": 0},
            {"jid": "job-with-a-long-id", "name": "n", "state": "FAILED", "parallelism": 12, "restarts": 3,
             "failure": "subtask 1 failed: boom\nstack", "restored-from": 7},
        ]});
        let t = jobs_table(&v, false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        let col = |l: &str, h: &str| l.find(h);
        let state_at = col(lines[0], "STATE").unwrap();
        assert_eq!(lines[1].find("RUNNING"), Some(state_at));
        assert_eq!(lines[2].find("FAILED"), Some(state_at));
        assert!(lines[2].ends_with("subtask 1 failed: boom…"), "{t}");
        assert_eq!(jobs_table(&v, true).lines().count(), 2);
    }
}
