//! Keel dispatcher and worker processes under test.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::child;

/// How long [`KeelProcess::spawn`] waits for the `keel-ready` line.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Prefix of the one line a Keel process prints to stdout once it listens.
pub const READY_PREFIX: &str = "keel-ready ";

/// Which `keel` subcommand to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `keel dispatcher`
    Dispatcher,
    /// `keel worker`
    Worker,
}

impl Role {
    /// The subcommand and the `"role"` value of the ready line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Dispatcher => "dispatcher",
            Role::Worker => "worker",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything needed to start (and restart) one Keel process.
///
/// [`KeelProcess::spawn`] covers the common case; use this for extra environment variables
/// or another ready timeout.
#[derive(Debug, Clone)]
#[must_use = "a spec does nothing until .spawn()"]
pub struct KeelSpec {
    bin: PathBuf,
    role: Role,
    config_yaml: String,
    args: Vec<String>,
    workdir: PathBuf,
    name: String,
    env: Vec<(String, String)>,
    ready_timeout: Duration,
}

impl KeelSpec {
    /// `bin role --config <workdir>/<name>.yaml`, logging to `<workdir>/<name>.log`, ready
    /// timeout [`DEFAULT_READY_TIMEOUT`], no extra arguments or environment.
    pub fn new(
        bin: impl Into<PathBuf>,
        role: Role,
        config_yaml: impl Into<String>,
        workdir: impl Into<PathBuf>,
        name: impl Into<String>,
    ) -> Self {
        KeelSpec {
            bin: bin.into(),
            role,
            config_yaml: config_yaml.into(),
            args: Vec::new(),
            workdir: workdir.into(),
            name: name.into(),
            env: Vec::new(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }

    /// Appends command-line arguments after `--config FILE` (e.g. `-D`, `key=value`).
    pub fn with_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the process (`RUST_LOG` overrides the default).
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How long to wait for the `keel-ready` line. Default [`DEFAULT_READY_TIMEOUT`].
    pub fn with_ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Starts the process and waits for its ready line.
    ///
    /// # Errors
    ///
    /// See [`KeelProcess::spawn`].
    pub fn spawn(self) -> io::Result<KeelProcess> {
        let (child, ready) = launch(&self)?;
        Ok(KeelProcess { spec: self, child, ready, exit: None })
    }

    fn config_path(&self) -> PathBuf {
        self.workdir.join(format!("{}.yaml", self.name))
    }

    fn log_path(&self) -> PathBuf {
        self.workdir.join(format!("{}.log", self.name))
    }
}

/// A running `keel dispatcher` or `keel worker`.
///
/// Its stderr, and every stdout line, go to `<workdir>/<name>.log` (appended across
/// restarts). Dropping the handle SIGCONTs and SIGKILLs the process if it still runs and
/// reaps it; the kernel SIGKILLs it if the test process dies (see the crate docs).
#[derive(Debug)]
#[must_use = "dropping the handle kills the process"]
pub struct KeelProcess {
    spec: KeelSpec,
    child: Child,
    ready: serde_json::Value,
    /// Set once the current child has been reaped.
    exit: Option<ExitStatus>,
}

impl KeelProcess {
    /// Writes `config_yaml` to `<workdir>/<name>.yaml`, starts
    /// `bin <role> --config <that file> <extra_args...>` in `workdir` and waits up to 30 s
    /// for its `keel-ready {json}` line on stdout.
    ///
    /// `RUST_LOG` is inherited, or `info` if unset. Call from any thread (see the crate docs
    /// on PDEATHSIG).
    ///
    /// # Errors
    ///
    /// - the error from creating `workdir`, writing the files or spawning `bin`;
    /// - `TimedOut` if no ready line came in time;
    /// - `UnexpectedEof` if the process exited (or closed stdout) before it was ready;
    /// - `InvalidData` if the ready line is not a JSON object with a string `"rpc"`, or its
    ///   `"role"` is not the requested one.
    ///
    /// Every message ends with the tail of the process log. On error the process is killed.
    pub fn spawn(
        bin: &Path,
        role: Role,
        config_yaml: &str,
        extra_args: &[String],
        workdir: &Path,
        name: &str,
    ) -> io::Result<KeelProcess> {
        KeelSpec::new(bin, role, config_yaml, workdir, name).with_args(extra_args.iter().cloned()).spawn()
    }

    /// The parsed JSON of the latest ready line.
    pub fn ready(&self) -> &serde_json::Value {
        &self.ready
    }

    /// `"rest"` of the ready line (`127.0.0.1:port`; dispatchers only).
    pub fn rest_addr(&self) -> Option<String> {
        self.ready.get("rest").and_then(|v| v.as_str()).map(str::to_string)
    }

    /// `"rpc"` of the ready line (`127.0.0.1:port`).
    pub fn rpc_addr(&self) -> String {
        self.ready.get("rpc").and_then(|v| v.as_str()).unwrap_or_default().to_string()
    }

    /// `"id"` of the ready line (a number is printed as text; empty if absent).
    pub fn id(&self) -> String {
        match self.ready.get("id") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        }
    }

    /// PID of the current process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn (file stem of the config and log).
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The role given at spawn.
    pub fn role(&self) -> Role {
        self.spec.role
    }

    /// `<workdir>/<name>.yaml`.
    pub fn config_path(&self) -> PathBuf {
        self.spec.config_path()
    }

    /// `<workdir>/<name>.log`.
    pub fn log_path(&self) -> PathBuf {
        self.spec.log_path()
    }

    /// Whether the process is alive (a stopped process is).
    pub fn is_running(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exit = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// SIGKILL (after SIGCONT, in case it is stopped) and reap. Does nothing if it already
    /// exited.
    pub fn kill9(&mut self) {
        if self.exit.is_none() {
            self.exit = child::kill_and_reap(&mut self.child);
        }
    }

    /// SIGTERM: ask for a graceful stop. Does not wait; see [`wait_exit`](Self::wait_exit).
    ///
    /// # Errors
    ///
    /// `NotFound` if the process already exited.
    pub fn terminate(&mut self) -> io::Result<()> {
        self.signal_running(libc::SIGTERM)
    }

    /// Waits up to `timeout` for the process to exit; `Ok(None)` if it still runs.
    ///
    /// # Errors
    ///
    /// The `waitpid` error, which should not happen for a child we own.
    pub fn wait_exit(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.exit {
            return Ok(Some(status));
        }
        let status = child::wait_timeout(&mut self.child, timeout)?;
        self.exit = status;
        Ok(status)
    }

    /// SIGSTOP: freeze the process (sockets stay open, nothing answers).
    ///
    /// # Errors
    ///
    /// `NotFound` if the process already exited.
    pub fn stop(&mut self) -> io::Result<()> {
        self.signal_running(libc::SIGSTOP)
    }

    /// SIGCONT: resume a stopped process.
    ///
    /// # Errors
    ///
    /// `NotFound` if the process already exited.
    pub fn cont(&mut self) -> io::Result<()> {
        self.signal_running(libc::SIGCONT)
    }

    /// The last `lines` lines of `<workdir>/<name>.log`.
    pub fn log_tail(&self, lines: usize) -> String {
        child::tail_file(&self.spec.log_path(), lines)
    }

    /// Starts the process again with the same config, arguments and environment, and waits
    /// for its new ready line ([`ready`](Self::ready) and the addresses are refreshed; with
    /// `port: 0` in the config they usually change).
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if the process still runs (kill or terminate it first); otherwise as
    /// [`spawn`](Self::spawn).
    pub fn restart(&mut self) -> io::Result<()> {
        if self.is_running() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} {} is still running; stop it first", self.spec.role, self.spec.name),
            ));
        }
        let (child, ready) = launch(&self.spec)?;
        self.child = child;
        self.ready = ready;
        self.exit = None;
        Ok(())
    }

    fn signal_running(&mut self, sig: libc::c_int) -> io::Result<()> {
        if !self.is_running() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} {} is not running", self.spec.role, self.spec.name),
            ));
        }
        child::signal(self.child.id(), sig)
    }
}

impl Drop for KeelProcess {
    fn drop(&mut self) {
        if self.exit.is_none() {
            child::kill_and_reap(&mut self.child);
        }
    }
}

/// Writes the config, spawns the process and waits for its ready line.
fn launch(spec: &KeelSpec) -> io::Result<(Child, serde_json::Value)> {
    fs::create_dir_all(&spec.workdir)?;
    let config_path = spec.config_path();
    fs::write(&config_path, &spec.config_yaml)?;
    let log_path = spec.log_path();
    let log = OpenOptions::new().create(true).append(true).open(&log_path)?;

    let mut cmd = Command::new(&spec.bin);
    cmd.arg(spec.role.as_str())
        .arg("--config")
        .arg(&config_path)
        .args(&spec.args)
        .current_dir(&spec.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log.try_clone()?));
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    writeln!(
        &log,
        "=== chaos-tests: starting {} {}: {} {} --config {} {} ===",
        spec.role,
        spec.name,
        spec.bin.display(),
        spec.role,
        config_path.display(),
        spec.args.join(" ")
    )?;

    let mut child = child::spawn_with_deathsig(cmd)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {}: {e}", spec.bin.display())))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    let drain =
        thread::Builder::new().name(format!("keel-stdout-{}", spec.name)).spawn(move || drain_stdout(stdout, log, tx));
    if let Err(e) = drain {
        child::kill_and_reap(&mut child);
        return Err(e);
    }

    let fail = |child: &mut Child, kind: io::ErrorKind, msg: String| {
        child::kill_and_reap(child);
        io::Error::new(
            kind,
            format!(
                "{} {}: {msg}\n--- {} (tail):\n{}",
                spec.role,
                spec.name,
                log_path.display(),
                child::tail_file(&log_path, 40)
            ),
        )
    };
    let line = match rx.recv_timeout(spec.ready_timeout) {
        Ok(line) => line,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            return Err(fail(
                &mut child,
                io::ErrorKind::TimedOut,
                format!("no `keel-ready` line within {:?}", spec.ready_timeout),
            ))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let status = child::wait_timeout(&mut child, Duration::from_secs(1)).ok().flatten();
            return Err(fail(
                &mut child,
                io::ErrorKind::UnexpectedEof,
                format!("stdout closed before the `keel-ready` line (exit status: {status:?})"),
            ));
        }
    };
    match parse_ready(&line, spec.role) {
        Ok(ready) => Ok((child, ready)),
        Err(msg) => Err(fail(&mut child, io::ErrorKind::InvalidData, msg)),
    }
}

/// Copies the child's stdout into its log and hands the first ready line to `tx`. Runs until
/// the child closes stdout; dropping `tx` at EOF tells `launch` that no ready line came.
fn drain_stdout(stdout: ChildStdout, mut log: fs::File, tx: mpsc::Sender<String>) {
    let mut reader = BufReader::new(stdout);
    let mut tx = Some(tx);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        let _ = writeln!(log, "[stdout] {line}");
        if line.starts_with(READY_PREFIX) {
            if let Some(tx) = tx.take() {
                let _ = tx.send(line.to_string());
            }
        }
    }
}

/// Parses `keel-ready {json}` and checks the fields the harness relies on.
fn parse_ready(line: &str, role: Role) -> Result<serde_json::Value, String> {
    let json = line.strip_prefix(READY_PREFIX).ok_or_else(|| format!("not a ready line: {line:?}"))?;
    let value: serde_json::Value =
        serde_json::from_str(json.trim()).map_err(|e| format!("bad ready JSON {json:?}: {e}"))?;
    if !value.is_object() {
        return Err(format!("ready JSON is not an object: {json}"));
    }
    if value.get("rpc").and_then(|v| v.as_str()).is_none() {
        return Err(format!("ready JSON has no string \"rpc\": {json}"));
    }
    if let Some(r) = value.get("role") {
        if r.as_str() != Some(role.as_str()) {
            return Err(format!("ready JSON has role {r}, expected {:?}: {json}", role.as_str()));
        }
    }
    Ok(value)
}

/// A flat Keel YAML config for tests: HA through ZooKeeper at `quorum` under `cluster_id`,
/// ephemeral REST/RPC ports and short timeouts, then `extra` (an `extra` key replaces the
/// default of the same key in place; new keys are appended in order).
///
/// Defaults: `high-availability.type: zookeeper`, `high-availability.zookeeper.quorum`,
/// `high-availability.cluster-id`, `rest.port: 0`, `rpc.port: 0`,
/// `high-availability.zookeeper.client.session-timeout: 2000 ms`,
/// `high-availability.zookeeper.client.connection-timeout: 2000 ms`,
/// `high-availability.zookeeper.client.retry-wait: 500 ms`, `heartbeat.interval: 200 ms`,
/// `heartbeat.timeout: 2000 ms`, and `rest.admin.enabled: true` (drills and fault injection
/// use `POST /admin/fault`, which is off by default; override it with `false` to test that),
/// `metrics.reporter.prom.port: 0` (each worker's `/metrics` on a free port, in its ready line).
///
/// Values are written as plain YAML scalars; a value that would not survive that (empty,
/// containing `": "` or `" #"`, or with surrounding spaces) is double-quoted.
pub fn config_yaml(quorum: &str, cluster_id: &str, extra: &[(&str, &str)]) -> String {
    let mut entries: Vec<(String, String)> = vec![
        ("high-availability.type".into(), "zookeeper".into()),
        ("high-availability.zookeeper.quorum".into(), quorum.into()),
        ("high-availability.cluster-id".into(), cluster_id.into()),
        ("rest.port".into(), "0".into()),
        ("rpc.port".into(), "0".into()),
        ("high-availability.zookeeper.client.session-timeout".into(), "2000 ms".into()),
        ("high-availability.zookeeper.client.connection-timeout".into(), "2000 ms".into()),
        ("high-availability.zookeeper.client.retry-wait".into(), "500 ms".into()),
        ("heartbeat.interval".into(), "200 ms".into()),
        ("heartbeat.timeout".into(), "2000 ms".into()),
        ("rest.admin.enabled".into(), "true".into()),
        ("metrics.reporter.prom.port".into(), "0".into()),
    ];
    for (k, v) in extra {
        match entries.iter_mut().find(|(key, _)| key == k) {
            Some(e) => e.1 = (*v).to_string(),
            None => entries.push(((*k).to_string(), (*v).to_string())),
        }
    }
    let mut out = String::from("# Keel test config written by chaos-tests\n");
    for (k, v) in entries {
        out.push_str(&format!("{k}: {}\n", yaml_scalar(&v)));
    }
    out
}

fn yaml_scalar(v: &str) -> String {
    let needs_quotes = v.is_empty() || v.contains(": ") || v.contains(" #") || v.trim() != v || v.ends_with(':');
    if needs_quotes {
        serde_json::Value::String(v.to_string()).to_string()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_yaml_defaults_and_overrides() {
        let y = config_yaml(
            "127.0.0.1:1,127.0.0.1:2",
            "c1",
            &[("rest.port", "8081"), ("state.dir", "/tmp/x"), ("note", "a: b")],
        );
        let lines: Vec<&str> = y.lines().collect();
        assert!(lines.contains(&"high-availability.type: zookeeper"));
        assert!(lines.contains(&"high-availability.zookeeper.quorum: 127.0.0.1:1,127.0.0.1:2"));
        assert!(lines.contains(&"high-availability.cluster-id: c1"));
        assert!(lines.contains(&"rest.port: 8081"));
        assert!(!lines.contains(&"rest.port: 0"));
        assert!(lines.contains(&"rpc.port: 0"));
        assert!(lines.contains(&"high-availability.zookeeper.client.session-timeout: 2000 ms"));
        assert!(lines.contains(&"heartbeat.timeout: 2000 ms"));
        assert!(lines.contains(&"rest.admin.enabled: true"));
        assert!(lines.contains(&"metrics.reporter.prom.port: 0"));
        assert!(lines.contains(&"state.dir: /tmp/x"));
        assert!(lines.contains(&"note: \"a: b\""));
        // Overridden in place: rest.port still comes before rpc.port.
        let pos = |k: &str| lines.iter().position(|l| l.starts_with(k)).unwrap();
        assert!(pos("rest.port") < pos("rpc.port"));
    }

    #[test]
    fn ready_line_parsing() {
        let v = parse_ready(
            r#"keel-ready {"role":"dispatcher","rpc":"127.0.0.1:5","rest":"127.0.0.1:6","id":"d1"}"#,
            Role::Dispatcher,
        )
        .unwrap();
        assert_eq!(v["rest"], "127.0.0.1:6");
        assert!(parse_ready(r#"keel-ready {"role":"worker","rpc":"x"}"#, Role::Dispatcher)
            .unwrap_err()
            .contains("role"));
        assert!(parse_ready(r#"keel-ready {"role":"worker"}"#, Role::Worker).unwrap_err().contains("rpc"));
        assert!(parse_ready("keel-ready nope", Role::Worker).is_err());
    }
}
