//! Real ZooKeeper ensembles (1, 3 or 5 members) on 127.0.0.1, one JVM per member.
//!
//! Each member runs, in its own directory `<tmp>/zk<myid>/`:
//!
//! ```text
//! java -Xmx256m -XX:+UseSerialGC -XX:-UsePerfData -Djava.awt.headless=true
//!      -Dzookeeper.jmx.log4j.disable=true
//!      -Dlog4j.configuration=file:<dir>/log4j.properties -Dzookeeper.log.dir=<dir>
//!      -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar
//!      org.apache.zookeeper.server.quorum.QuorumPeerMain <dir>/zoo.cfg
//! ```
//!
//! `zookeeper.jar`'s manifest brings netty, jute, slf4j-api and the rest; the slf4j binding
//! and log4j 1.2 are added so the server's log goes to `<dir>/zookeeper.log` (stdout and
//! stderr of the JVM are appended to the same file) instead of being dropped or printed into
//! the test output. `KEEL_TEST_JAVA` replaces `java`, `KEEL_TEST_ZK_CLASSPATH` the classpath.
//!
//! `zoo.cfg`: `tickTime=200`, `initLimit=10`, `syncLimit=5`, `clientPortAddress=127.0.0.1`,
//! `minSessionTimeout=400`, `maxSessionTimeout=60000`, `4lw.commands.whitelist=*`,
//! `admin.enableServer=false`, `preAllocSize=4096`, and for 3 or 5 members
//! `server.N=127.0.0.1:<peer>:<election>`. One member gets no `server.N` line and runs in
//! standalone mode (`standaloneEnabled` keeps its default), so its mode is `standalone`.
//!
//! Optional security, off by default (the defaults above do not change):
//! * [`ZkEnsembleBuilder::with_sasl_digest_user`]: SASL DIGEST-MD5 required for every client
//!   session (`authProvider.1=...SASLAuthenticationProvider`, `sessionRequireClientSASLAuth=true`,
//!   a JAAS `Server` section with `DigestLoginModule` written to `<tmp>/jaas.conf`).
//! * [`ZkEnsembleBuilder::with_tls`]: a `secureClientPort` per member (Netty connection
//!   factory, PEM key store and trust store); the plaintext `clientPort` stays for the
//!   four-letter words. [`ZkEnsemble::secure_connect_string`] lists the secure ports.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::child;
use crate::ports::free_port;

/// How long [`ZkEnsemble::start`] waits for the ensemble to serve, unless changed with
/// [`ZkEnsembleBuilder::with_startup_timeout`].
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Set this environment variable to keep the ensemble's directory (data and logs) after
/// drop, for debugging.
pub const KEEP_DIRS_ENV: &str = "KEEL_TEST_KEEP_DIRS";

/// Timeout for one four-letter-word exchange in [`ZkEnsemble::mode`] and friends (connect
/// and read each).
const FLW_TIMEOUT: Duration = Duration::from_millis(700);

/// Poll interval while waiting for members to serve.
const POLL: Duration = Duration::from_millis(100);

/// How many times [`ZkEnsembleBuilder::start`] picks new ports after a member could not bind
/// one (another program took a port between picking and binding).
const BIND_ATTEMPTS: usize = 3;

/// Default JVM arguments: a small heap, the serial collector (no GC threads competing for
/// two cores), no `/tmp/hsperfdata_*` files, no log4j JMX beans.
const DEFAULT_JVM_ARGS: &[&str] = &[
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
    "-Dzookeeper.jmx.log4j.disable=true",
];

/// Jars for the Debian `zookeeper` package: the server (its manifest pulls in netty, jute,
/// slf4j-api, ...) plus an slf4j binding and log4j 1.2, so logs go to the member's log file
/// through our `log4j.properties` instead of being dropped.
const DEFAULT_CLASSPATH: &[&str] =
    &["/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-log4j12.jar", "/usr/share/java/log4j-1.2.jar"];

/// Jars added with [`ZkEnsembleBuilder::with_tls`] (Debian's `libnetty-java`).
const TLS_EXTRA_CLASSPATH: &[&str] = &["/usr/share/java/netty-codec.jar", "/usr/share/java/netty-resolver.jar"];

/// Builder for a [`ZkEnsemble`]; get one with [`ZkEnsemble::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .start()"]
pub struct ZkEnsembleBuilder {
    members: usize,
    cfg: Vec<(String, String)>,
    jvm_args: Vec<String>,
    startup_timeout: Duration,
    sasl_users: Vec<(String, String)>,
    sasl_optional: bool,
    tls: Option<ZkServerTls>,
}

/// PEM files for [`ZkEnsembleBuilder::with_tls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkServerTls {
    /// The servers' certificate (chain) and private key, in one PEM file (ZooKeeper's
    /// `ssl.keyStore.type=PEM`). It must name 127.0.0.1 (subject alternative name).
    pub keystore: PathBuf,
    /// CA certificates client certificates must chain to (`ssl.trustStore.type=PEM`).
    pub truststore: PathBuf,
    /// `ssl.clientAuth`: `need` (ZooKeeper's default), `want` or `none`.
    pub client_auth: &'static str,
}

impl ZkEnsembleBuilder {
    /// Requires SASL for every client session and lets `user` in with `password` (DIGEST-MD5).
    /// Call again for more users.
    pub fn with_sasl_digest_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.sasl_users.push((user.into(), password.into()));
        self
    }

    /// With [`with_sasl_digest_user`](Self::with_sasl_digest_user): accept sessions without
    /// SASL too (no `sessionRequireClientSASLAuth`), so that only ACLs protect znodes.
    pub fn with_sasl_optional(mut self) -> Self {
        self.sasl_optional = true;
        self
    }

    /// Serves TLS on a `secureClientPort` of every member as well as plaintext on `clientPort`.
    pub fn with_tls(mut self, tls: ZkServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Number of members: 1, 3 or 5. Default 1.
    pub fn with_members(mut self, n: usize) -> Self {
        self.members = n;
        self
    }

    /// Sets a `zoo.cfg` line `key=value` on every member, replacing the harness default for
    /// that key if there is one (e.g. `("forceSync", "no")`, `("maxSessionTimeout", "5000")`).
    ///
    /// Overriding `clientPort` pins every member to that port (so only for one member);
    /// [`ZkEnsemble::connect_string`] follows it. Do not override `dataDir` or `server.N`.
    pub fn with_cfg(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.cfg.retain(|(k, _)| *k != key);
        self.cfg.push((key, value.into()));
        self
    }

    /// Appends a JVM argument (after the defaults, so `-Xmx512m` wins over `-Xmx256m`).
    pub fn with_jvm_arg(mut self, arg: impl Into<String>) -> Self {
        self.jvm_args.push(arg.into());
        self
    }

    /// How long `start` waits for every member to serve. Default
    /// [`DEFAULT_STARTUP_TIMEOUT`] (60 s).
    pub fn with_startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Starts the members and waits until each answers `srvr` with a mode and (for more
    /// than one member) exactly one is the leader.
    ///
    /// Call from the test's own thread or any other; see the crate docs on PDEATHSIG.
    ///
    /// # Errors
    ///
    /// - `InvalidInput` if the member count is not 1, 3 or 5;
    /// - `NotFound` if `java` or the ZooKeeper jar is missing;
    /// - `TimedOut` if the ensemble did not serve within the startup timeout, or `Other` if
    ///   a member exited early; the message carries every member's mode and log tail.
    ///
    /// Already started members are killed and reaped on every error path.
    pub fn start(self) -> io::Result<ZkEnsemble> {
        if ![1, 3, 5].contains(&self.members) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ZkEnsemble supports 1, 3 or 5 members, not {}", self.members),
            ));
        }
        let mut classpath = classpath()?;
        if self.tls.is_some() && std::env::var_os("KEEL_TEST_ZK_CLASSPATH").is_none() {
            // The Netty connection factory's TLS handler needs the codec jar, which
            // zookeeper.jar's manifest does not list.
            for jar in TLS_EXTRA_CLASSPATH.iter().filter(|j| Path::new(j).exists()) {
                classpath.push(':');
                classpath.push_str(jar);
            }
        }
        let mut attempt = 1;
        loop {
            let mut ens = self.launch(&classpath)?;
            match ens.wait_started(self.startup_timeout) {
                Ok(()) => return Ok(ens),
                Err(e) if attempt < BIND_ATTEMPTS && ens.any_bind_failure() => {
                    drop(ens);
                    let first = e.to_string().lines().next().unwrap_or_default().to_string();
                    eprintln!("chaos-tests: a ZooKeeper port was taken ({first}); retrying with new ports");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes the configuration and spawns every member (does not wait).
    fn launch(&self, classpath: &str) -> io::Result<ZkEnsemble> {
        let dir = tempfile::Builder::new().prefix("keel-zk-").tempdir()?;
        let n = self.members;
        // An explicit `clientPort` override (sensible for one member only) is honoured.
        let pinned_client_port =
            self.cfg.iter().find(|(k, _)| k == "clientPort").and_then(|(_, v)| v.trim().parse::<u16>().ok());
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| {
                let client = pinned_client_port.unwrap_or_else(free_port);
                (client, free_port(), free_port())
            })
            .collect();
        let secure_ports: Vec<Option<u16>> = (0..n).map(|_| self.tls.as_ref().map(|_| free_port())).collect();
        let mut security_args = Vec::new();
        if !self.sasl_users.is_empty() {
            let jaas = dir.path().join("jaas.conf");
            fs::write(&jaas, jaas_server_section(&self.sasl_users))?;
            security_args.push(format!("-Djava.security.auth.login.config={}", jaas.display()));
        }
        let mut members = Vec::with_capacity(n);
        for (i, &(client_port, _, _)) in ports.iter().enumerate() {
            let myid = i + 1;
            let mdir = dir.path().join(format!("zk{myid}"));
            fs::create_dir_all(&mdir)?;
            fs::write(mdir.join("myid"), format!("{myid}\n"))?;
            let log = mdir.join("zookeeper.log");
            let log4j = mdir.join("log4j.properties");
            fs::write(&log4j, log4j_properties(&log))?;
            let cfg_path = mdir.join("zoo.cfg");
            let mut cfg = self.zoo_cfg(&mdir, client_port, &ports);
            cfg.push_str(&self.security_cfg(secure_ports[i]));
            fs::write(&cfg_path, cfg)?;
            let mut args: Vec<String> = DEFAULT_JVM_ARGS.iter().map(|s| s.to_string()).collect();
            args.extend(security_args.iter().cloned());
            args.extend(self.jvm_args.iter().cloned());
            args.push(format!("-Dlog4j.configuration=file:{}", log4j.display()));
            args.push(format!("-Dzookeeper.log.dir={}", mdir.display()));
            args.extend([
                "-cp".to_string(),
                classpath.to_string(),
                "org.apache.zookeeper.server.quorum.QuorumPeerMain".to_string(),
                cfg_path.display().to_string(),
            ]);
            members.push(Member {
                dir: mdir,
                log,
                client_port,
                secure_port: secure_ports[i],
                args,
                child: None,
                paused: false,
            });
        }
        let mut ens = ZkEnsemble { members, dir: Some(dir) };
        for i in 0..n {
            ens.spawn_member(i)?;
        }
        Ok(ens)
    }

    fn zoo_cfg(&self, data_dir: &Path, client_port: u16, ports: &[(u16, u16, u16)]) -> String {
        let mut lines: Vec<(String, String)> = [
            ("tickTime", "200".to_string()),
            ("initLimit", "10".to_string()),
            ("syncLimit", "5".to_string()),
            ("dataDir", data_dir.display().to_string()),
            ("clientPort", client_port.to_string()),
            ("clientPortAddress", "127.0.0.1".to_string()),
            ("minSessionTimeout", "400".to_string()),
            ("maxSessionTimeout", "60000".to_string()),
            ("4lw.commands.whitelist", "*".to_string()),
            ("admin.enableServer", "false".to_string()),
            // Transaction logs are preallocated in 64 MB steps by default; tests write little.
            ("preAllocSize", "4096".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if ports.len() > 1 {
            for (i, (_, peer, election)) in ports.iter().enumerate() {
                lines.push((format!("server.{}", i + 1), format!("127.0.0.1:{peer}:{election}")));
            }
        }
        for (k, v) in &self.cfg {
            match lines.iter_mut().find(|(key, _)| key == k) {
                Some(line) => line.1 = v.clone(),
                None => lines.push((k.clone(), v.clone())),
            }
        }
        let mut out = String::from("# written by chaos-tests\n");
        for (k, v) in lines {
            out.push_str(&format!("{k}={v}\n"));
        }
        out
    }
}

impl ZkEnsembleBuilder {
    /// `zoo.cfg` lines for SASL and TLS (empty by default).
    fn security_cfg(&self, secure_port: Option<u16>) -> String {
        let mut out = String::new();
        if !self.sasl_users.is_empty() {
            out.push_str("authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n");
            if !self.sasl_optional {
                out.push_str("sessionRequireClientSASLAuth=true\n");
            }
        }
        if let (Some(tls), Some(port)) = (&self.tls, secure_port) {
            out.push_str("serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n");
            out.push_str(&format!("secureClientPort={port}\nsecureClientPortAddress=127.0.0.1\n"));
            out.push_str(&format!("ssl.keyStore.location={}\nssl.keyStore.type=PEM\n", tls.keystore.display()));
            out.push_str(&format!("ssl.trustStore.location={}\nssl.trustStore.type=PEM\n", tls.truststore.display()));
            out.push_str(&format!("ssl.clientAuth={}\n", tls.client_auth));
        }
        out
    }
}

/// A JAAS file whose `Server` section lets each user in with DIGEST-MD5.
fn jaas_server_section(users: &[(String, String)]) -> String {
    let mut out = String::from("Server {\n    org.apache.zookeeper.server.auth.DigestLoginModule required");
    for (user, password) in users {
        out.push_str(&format!("\n    user_{user}=\"{password}\""));
    }
    out.push_str(";\n};\n");
    out
}

fn log4j_properties(log: &Path) -> String {
    format!(
        "log4j.rootLogger=INFO, FILE\n\
         log4j.appender.FILE=org.apache.log4j.FileAppender\n\
         log4j.appender.FILE.File={}\n\
         log4j.appender.FILE.Append=true\n\
         log4j.appender.FILE.layout=org.apache.log4j.PatternLayout\n\
         log4j.appender.FILE.layout.ConversionPattern=%d{{ISO8601}} %-5p [%t:%C{{1}}@%L] - %m%n\n",
        log.display()
    )
}

/// `KEEL_TEST_ZK_CLASSPATH` if set, else the Debian jars that exist.
fn classpath() -> io::Result<String> {
    if let Ok(cp) = std::env::var("KEEL_TEST_ZK_CLASSPATH") {
        return Ok(cp);
    }
    if !Path::new(DEFAULT_CLASSPATH[0]).exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} not found: apt-get install -y --no-install-recommends zookeeper \
                 (or set KEEL_TEST_ZK_CLASSPATH)",
                DEFAULT_CLASSPATH[0]
            ),
        ));
    }
    let jars: Vec<&str> = DEFAULT_CLASSPATH.iter().copied().filter(|j| Path::new(j).exists()).collect();
    Ok(jars.join(":"))
}

/// `KEEL_TEST_JAVA` if set, else `java` from `PATH`.
fn java() -> String {
    std::env::var("KEEL_TEST_JAVA").unwrap_or_else(|_| "java".to_string())
}

#[derive(Debug)]
struct Member {
    dir: PathBuf,
    log: PathBuf,
    client_port: u16,
    /// `secureClientPort` with [`ZkEnsembleBuilder::with_tls`].
    secure_port: Option<u16>,
    /// JVM arguments, fixed at creation so `restart` runs the same command.
    args: Vec<String>,
    child: Option<Child>,
    paused: bool,
}

/// A running ZooKeeper ensemble on 127.0.0.1 in a temporary directory.
///
/// Members are indexed from 0 (member `i` has `myid` `i + 1`). Every method taking an index
/// panics if it is `>= len()`.
///
/// Dropping the ensemble SIGKILLs and reaps every member that still runs (also while a test
/// panics) and deletes the directory. Members also get SIGKILL from the kernel if the test
/// process dies (PDEATHSIG; see the crate docs).
#[derive(Debug)]
#[must_use = "dropping the ensemble kills it"]
pub struct ZkEnsemble {
    members: Vec<Member>,
    /// The temporary directory; `Option` only so `Drop` can keep it on request.
    dir: Option<tempfile::TempDir>,
}

impl ZkEnsemble {
    /// Starts an ensemble of `n` members (1, 3 or 5) with default settings and waits until it
    /// serves. A 1-member "ensemble" runs in standalone mode (no `server.N` lines).
    ///
    /// # Errors
    ///
    /// See [`ZkEnsembleBuilder::start`].
    pub fn start(n: usize) -> io::Result<ZkEnsemble> {
        Self::builder().with_members(n).start()
    }

    /// A builder with the defaults of [`ZkEnsemble::start`]`(1)`.
    pub fn builder() -> ZkEnsembleBuilder {
        ZkEnsembleBuilder {
            members: 1,
            cfg: Vec::new(),
            jvm_args: Vec::new(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            sasl_users: Vec::new(),
            sasl_optional: false,
            tls: None,
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: an ensemble has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,...` over all members (running or not).
    pub fn connect_string(&self) -> String {
        self.members.iter().map(|m| format!("127.0.0.1:{}", m.client_port)).collect::<Vec<_>>().join(",")
    }

    /// `127.0.0.1:s1,...` over the members' `secureClientPort`s; `None` without
    /// [`ZkEnsembleBuilder::with_tls`].
    pub fn secure_connect_string(&self) -> Option<String> {
        let ports: Option<Vec<u16>> = self.members.iter().map(|m| m.secure_port).collect();
        ports.map(|ports| ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(","))
    }

    /// Client port of member `i`.
    pub fn client_port(&self, i: usize) -> u16 {
        self.members[i].client_port
    }

    /// Data directory of member `i` (holds `myid`, `zoo.cfg`, `zookeeper.log`, `version-2/`).
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.members[i].dir
    }

    /// The ensemble's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).expect("ensemble dir present until drop")
    }

    /// PID of member `i` if it was started and not killed through this handle.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// Whether member `i`'s process is alive (a paused member is running).
    pub fn is_running(&mut self, i: usize) -> bool {
        let m = &mut self.members[i];
        match &mut m.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Runs one ZooKeeper CLI command (`org.apache.zookeeper.ZooKeeperMain -server <member>
    /// <args>`, e.g. `["create", "/a", "data"]` or `["delete", "/a"]`) against the first
    /// running member, bounded by `timeout` (the JVM is killed past it). Returns its output;
    /// an error if it could not run, timed out or exited non-zero.
    pub fn cli(&mut self, args: &[&str], timeout: Duration) -> io::Result<String> {
        let i = (0..self.members.len())
            .find(|&i| self.is_running(i) && !self.is_paused(i))
            .ok_or_else(|| io::Error::other("no ZooKeeper member is running"))?;
        let out_path = self.dir().join(format!("cli-{}.out", crate::ports::free_port()));
        let out = std::fs::File::create(&out_path)?;
        let mut child = Command::new(java())
            .args(["-Xmx64m", "-XX:+UseSerialGC", "-XX:-UsePerfData", "-Dzookeeper.jmx.log4j.disable=true"])
            .arg("-cp")
            .arg(classpath()?)
            .arg("org.apache.zookeeper.ZooKeeperMain")
            .arg("-server")
            .arg(format!("127.0.0.1:{}", self.members[i].client_port))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if start.elapsed() > timeout {
                child::kill_and_reap(&mut child);
                let text = std::fs::read_to_string(&out_path).unwrap_or_default();
                let _ = std::fs::remove_file(&out_path);
                return Err(io::Error::other(format!("zk cli {args:?} timed out after {timeout:?}: {text}")));
            }
            std::thread::sleep(POLL);
        };
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        let _ = std::fs::remove_file(&out_path);
        if !status.success() {
            return Err(io::Error::other(format!("zk cli {args:?} exited {status}: {text}")));
        }
        Ok(text)
    }

    /// Whether member `i` was paused with [`pause`](Self::pause) and not resumed.
    pub fn is_paused(&self, i: usize) -> bool {
        self.members[i].paused
    }

    /// SIGKILLs member `i` and reaps it. Does nothing if it is not running.
    pub fn kill(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(mut c) = m.child.take() {
            child::kill_and_reap(&mut c);
        }
        m.paused = false;
    }

    /// Starts member `i` again with the same configuration and data directory; its log is
    /// appended to. Does not wait for it to join: use [`wait_serving`](Self::wait_serving).
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if the member is still running (kill it first), or the spawn error.
    pub fn restart(&mut self, i: usize) -> io::Result<()> {
        if self.is_running(i) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("ZooKeeper member {i} is still running; kill it first"),
            ));
        }
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.wait();
        }
        self.spawn_member(i)
    }

    /// SIGSTOPs member `i`: its sockets stay open but nothing answers.
    ///
    /// # Errors
    ///
    /// `NotFound` if the member is not running.
    pub fn pause(&mut self, i: usize) -> io::Result<()> {
        let pid = self.running_pid(i)?;
        child::signal(pid, libc::SIGSTOP)?;
        self.members[i].paused = true;
        Ok(())
    }

    /// SIGCONTs member `i`.
    ///
    /// # Errors
    ///
    /// `NotFound` if the member is not running.
    pub fn resume(&mut self, i: usize) -> io::Result<()> {
        let pid = self.running_pid(i)?;
        child::signal(pid, libc::SIGCONT)?;
        self.members[i].paused = false;
        Ok(())
    }

    /// Sends a four-letter word (`srvr`, `mntr`, `cons`, `dump`, `ruok`, ...) to member `i`
    /// and returns the reply. Connect and read each time out after `timeout`.
    ///
    /// # Errors
    ///
    /// The connect/read error, e.g. `ConnectionRefused` for a dead member or
    /// `WouldBlock`/`TimedOut` for a paused one.
    pub fn four_letter_word(&self, i: usize, word: &str, timeout: Duration) -> io::Result<String> {
        four_letter_word(self.members[i].client_port, word, timeout)
    }

    /// Member `i`'s mode from `srvr`: `"leader"`, `"follower"`, `"standalone"` (or
    /// `"observer"`); `None` if it does not answer within ~0.7 s or is not serving (e.g.
    /// during an election).
    pub fn mode(&self, i: usize) -> Option<String> {
        mode_of(self.members[i].client_port)
    }

    /// [`mode`](Self::mode) of every member, queried in parallel (so a paused member costs
    /// one timeout, not one per member).
    pub fn modes(&self) -> Vec<Option<String>> {
        thread::scope(|s| {
            let handles: Vec<_> = self
                .members
                .iter()
                .map(|m| {
                    let port = m.client_port;
                    s.spawn(move || mode_of(port))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(None)).collect()
        })
    }

    /// Index of the member whose mode is `leader` (or `standalone` for a 1-member ensemble);
    /// `None` if there is none or more than one answers as leader.
    pub fn leader_index(&self) -> Option<usize> {
        let modes = self.modes();
        let leaders: Vec<usize> = modes
            .iter()
            .enumerate()
            .filter(|(_, m)| matches!(m.as_deref(), Some("leader") | Some("standalone")))
            .map(|(i, _)| i)
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    /// Waits until the quorum is back: exactly one member is leader (standalone for one
    /// member) and every member that runs and is not paused serves.
    ///
    /// # Errors
    ///
    /// `TimedOut` with each member's mode and log tail.
    pub fn wait_serving(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let modes = self.modes();
            if self.serving(&modes) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("ZooKeeper ensemble not serving after {timeout:?}\n{}", self.diagnostics(&modes)),
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// The last `lines` lines of member `i`'s log (ZooKeeper's log4j output plus the JVM's
    /// stdout/stderr).
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        child::tail_file(&self.members[i].log, lines)
    }

    fn serving(&mut self, modes: &[Option<String>]) -> bool {
        let n = self.len();
        let mut leaders = 0;
        for (i, mode) in modes.iter().enumerate() {
            let counted = self.is_running(i) && !self.members[i].paused;
            match mode.as_deref() {
                Some("leader") => leaders += 1,
                Some("standalone") if n == 1 => leaders += 1,
                Some(_) => {}
                None if counted => return false,
                None => {}
            }
        }
        leaders == 1
    }

    /// Startup wait: like `wait_serving`, but every member must serve and a member exiting
    /// or failing to bind a port ends the wait at once.
    fn wait_started(&mut self, timeout: Duration) -> io::Result<()> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut next_bind_check = start + Duration::from_secs(1);
        loop {
            let modes = self.modes();
            if modes.iter().all(Option::is_some) && self.serving(&modes) {
                return Ok(());
            }
            let exited: Vec<usize> = (0..self.len()).filter(|&i| !self.is_running(i)).collect();
            if !exited.is_empty() {
                return Err(io::Error::other(format!(
                    "ZooKeeper member(s) {exited:?} exited during startup\n{}",
                    self.diagnostics(&modes)
                )));
            }
            // A port taken by someone else shows as a BindException in the log; the member
            // may keep running without it (election port), so look once a second.
            if Instant::now() >= next_bind_check {
                if self.any_bind_failure() {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("a ZooKeeper member could not bind its port\n{}", self.diagnostics(&modes)),
                    ));
                }
                next_bind_check = Instant::now() + Duration::from_secs(1);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "ZooKeeper ensemble of {} not serving after {:?}\n{}",
                        self.len(),
                        start.elapsed(),
                        self.diagnostics(&modes)
                    ),
                ));
            }
            thread::sleep(POLL);
        }
    }

    fn any_bind_failure(&self) -> bool {
        self.members.iter().any(|m| {
            let mut text = String::new();
            File::open(&m.log).and_then(|mut f| f.read_to_string(&mut text)).is_ok()
                && text.contains("Address already in use")
        })
    }

    fn diagnostics(&self, modes: &[Option<String>]) -> String {
        let mut out = String::new();
        for (i, m) in self.members.iter().enumerate() {
            out.push_str(&format!(
                "--- member {i} (myid {}, client port {}, pid {:?}, paused {}, mode {:?}) log tail:\n{}\n",
                i + 1,
                m.client_port,
                m.child.as_ref().map(Child::id),
                m.paused,
                modes.get(i).cloned().flatten(),
                child::tail_file(&m.log, 30)
            ));
        }
        out
    }

    fn running_pid(&mut self, i: usize) -> io::Result<u32> {
        if !self.is_running(i) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("ZooKeeper member {i} is not running")));
        }
        Ok(self.members[i].child.as_ref().map(Child::id).unwrap_or(0))
    }

    fn spawn_member(&mut self, i: usize) -> io::Result<()> {
        let m = &mut self.members[i];
        let log = OpenOptions::new().create(true).append(true).open(&m.log)?;
        writeln!(&log, "=== chaos-tests: starting member {i} (myid {}) ===", i + 1)?;
        let mut cmd = Command::new(java());
        cmd.args(&m.args)
            .current_dir(&m.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let c = child::spawn_with_deathsig(cmd)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {} (ZooKeeper member {i}): {e}", java())))?;
        m.child = Some(c);
        m.paused = false;
        Ok(())
    }
}

impl Drop for ZkEnsemble {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                child::kill_and_reap(&mut c);
            }
        }
        if let Some(dir) = self.dir.take() {
            if std::env::var_os(KEEP_DIRS_ENV).is_some() {
                let kept = dir.keep();
                eprintln!("chaos-tests: kept ZooKeeper dir {}", kept.display());
            }
            // Otherwise dropping the TempDir deletes it.
        }
    }
}

fn four_letter_word(port: u16, word: &str, timeout: Duration) -> io::Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(word.as_bytes())?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "four-letter word reply too slow"));
        }
        s.set_read_timeout(Some(deadline - now))?;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn mode_of(port: u16) -> Option<String> {
    let reply = four_letter_word(port, "srvr", FLW_TIMEOUT).ok()?;
    parse_mode(&reply)
}

/// The `Mode:` value of a `srvr` reply; `None` for "not currently serving requests".
fn parse_mode(reply: &str) -> Option<String> {
    reply.lines().find_map(|l| l.strip_prefix("Mode:")).map(|m| m.trim().to_string()).filter(|m| !m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_srvr() {
        let reply = "Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.0/0\nMode: follower\nNode count: 5\n";
        assert_eq!(parse_mode(reply).as_deref(), Some("follower"));
        assert_eq!(parse_mode("This ZooKeeper instance is not currently serving requests\n"), None);
        assert_eq!(parse_mode(""), None);
    }

    #[test]
    fn zoo_cfg_overrides_and_server_lines() {
        let b = ZkEnsemble::builder().with_members(3).with_cfg("tickTime", "100").with_cfg("forceSync", "no");
        let cfg = b.zoo_cfg(Path::new("/d"), 7, &[(7, 8, 9), (10, 11, 12), (13, 14, 15)]);
        assert!(cfg.contains("\ntickTime=100\n"), "{cfg}");
        assert!(!cfg.contains("tickTime=200"), "{cfg}");
        assert!(cfg.contains("\nforceSync=no\n"), "{cfg}");
        assert!(cfg.contains("\nclientPort=7\n"), "{cfg}");
        assert!(cfg.contains("\nserver.1=127.0.0.1:8:9\n"), "{cfg}");
        assert!(cfg.contains("\nserver.3=127.0.0.1:14:15\n"), "{cfg}");
        assert!(cfg.contains("\n4lw.commands.whitelist=*\n"), "{cfg}");

        let single = ZkEnsemble::builder().zoo_cfg(Path::new("/d"), 7, &[(7, 8, 9)]);
        assert!(!single.contains("server."), "{single}");
    }

    #[test]
    fn rejects_even_member_counts() {
        let err = ZkEnsemble::start(2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
