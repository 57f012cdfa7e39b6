//! Flink's configuration keys as Keel reads them, and which process reads which key.
//!
//! [`FLINK_KEYS`] is the one registry of the Flink keys a user may bring in a Flink
//! `config.yaml` (1.x legacy and 2.x names): each is [`FlinkTreatment::Used`] under the same
//! name, an [`FlinkTreatment::Alias`] of a Keel key (the loader sets that key; deprecated
//! legacy names warn once, naming the key to use), or [`FlinkTreatment::Ignored`] with the
//! reason. The loader and the "Flink keys" table of docs/configuration.md both read it.
//!
//! [`Process`] and [`reads`] say which process reads a key, so that a warning about a key
//! is printed only by the processes it concerns ([`Loaded::warnings_for`](crate::Loaded::warnings_for)):
//! `keel run`, `list` and `status` do not repeat a dispatcher's or a worker's warnings.

#[cfg(test)]
use crate::keys::key_doc;

/// How Keel treats one Flink key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlinkTreatment {
    /// Keel reads the key under the same name (it is in [`KEYS`](crate::KEYS)).
    Used,
    /// Keel reads the key as the Keel key `keel`, with the same values. A `deprecated` alias
    /// (a legacy Flink name) adds a warning naming `keel`; a current Flink name does not.
    Alias {
        /// The Keel key it sets.
        keel: &'static str,
        /// Whether it is a legacy name that warns.
        deprecated: bool,
    },
    /// Keel accepts the key without effect, for this reason (a warning says so, in the
    /// processes that would have used it).
    Ignored(&'static str),
}

/// One Flink key and how Keel treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlinkKey {
    /// The key as Flink spells it.
    pub key: &'static str,
    /// What Keel does with it.
    pub treatment: FlinkTreatment,
}

const fn used(key: &'static str) -> FlinkKey {
    FlinkKey { key, treatment: FlinkTreatment::Used }
}

const fn alias(key: &'static str, keel: &'static str) -> FlinkKey {
    FlinkKey { key, treatment: FlinkTreatment::Alias { keel, deprecated: false } }
}

const fn deprecated(key: &'static str, keel: &'static str) -> FlinkKey {
    FlinkKey { key, treatment: FlinkTreatment::Alias { keel, deprecated: true } }
}

const fn ignored(key: &'static str, reason: &'static str) -> FlinkKey {
    FlinkKey { key, treatment: FlinkTreatment::Ignored(reason) }
}

const NO_JVM: &str = "Keel runs no JVM: size the process with its container or cgroup limits";

/// The Flink keys Keel knows, in documentation order.
pub const FLINK_KEYS: &[FlinkKey] = &[
    used("high-availability.type"),
    deprecated("high-availability", "high-availability.type"),
    used("high-availability.zookeeper.quorum"),
    used("high-availability.zookeeper.path.root"),
    used("high-availability.cluster-id"),
    used("high-availability.storageDir"),
    used("high-availability.zookeeper.client.session-timeout"),
    used("high-availability.zookeeper.client.connection-timeout"),
    used("high-availability.zookeeper.client.retry-wait"),
    used("high-availability.zookeeper.client.tolerate-suspended-connections"),
    ignored("security.kerberos.login.use-ticket-cache", "Keel logs in from `security.kerberos.login.keytab` only"),
    used("zookeeper.client.secure"),
    used("zookeeper.ssl.trustStore.location"),
    used("zookeeper.ssl.keyStore.location"),
    ignored("zookeeper.ssl.trustStore.type", "Keel reads PEM files (`zookeeper.ssl.trustStore.location`)"),
    ignored("zookeeper.ssl.keyStore.type", "Keel reads PEM files (`zookeeper.ssl.keyStore.location`)"),
    used("high-availability.zookeeper.client.acl"),
    used("zookeeper.sasl.disable"),
    used("zookeeper.sasl.service-name"),
    used("zookeeper.sasl.login-context-name"),
    used("security.kerberos.login.keytab"),
    used("security.kerberos.login.principal"),
    used("security.kerberos.login.contexts"),
    ignored(
        "high-availability.zookeeper.client.max-retry-attempts",
        "Keel retries ZooKeeper until the session expires, waiting at most `retry-wait`",
    ),
    used("state.backend"),
    alias("state.backend.type", "state.backend"),
    used("state.backend.incremental"),
    alias("execution.checkpointing.incremental", "state.backend.incremental"),
    used("state.backend.local-recovery"),
    alias("execution.state-recovery.from-local", "state.backend.local-recovery"),
    used("state.backend.rocksdb.localdir"),
    used("state.checkpoints.dir"),
    alias("execution.checkpointing.dir", "state.checkpoints.dir"),
    used("state.savepoints.dir"),
    alias("execution.checkpointing.savepoint-dir", "state.savepoints.dir"),
    used("state.checkpoints.num-retained"),
    alias("execution.checkpointing.num-retained", "state.checkpoints.num-retained"),
    ignored(
        "state.checkpoint-storage",
        "checkpoints always go to `state.checkpoints.dir` (Flink's `filesystem` storage)",
    ),
    ignored(
        "execution.checkpointing.storage",
        "checkpoints always go to `state.checkpoints.dir` (Flink's `filesystem` storage)",
    ),
    used("execution.checkpointing.interval"),
    used("execution.checkpointing.timeout"),
    ignored("execution.checkpointing.mode", "Keel checkpoints are always exactly-once"),
    ignored(
        "execution.checkpointing.externalized-checkpoint-retention",
        "Keel keeps the retained checkpoints of a job until it ends; cancelling deletes them \
         (take a savepoint first: `keel stop --savepointPath`)",
    ),
    ignored("execution.checkpointing.max-concurrent-checkpoints", "Keel runs one checkpoint of a job at a time"),
    ignored("execution.checkpointing.min-pause", "the interval is measured from one trigger to the next"),
    used("restart-strategy.type"),
    deprecated("restart-strategy", "restart-strategy.type"),
    used("restart-strategy.fixed-delay.attempts"),
    used("restart-strategy.fixed-delay.delay"),
    ignored(
        "jobmanager.execution.failover-strategy",
        "Keel restarts every subtask of a job from its latest checkpoint (Flink's `full`)",
    ),
    used("parallelism.default"),
    alias("yarn.application-attempts", "application-attempts"),
    used("rest.address"),
    used("rest.port"),
    used("rest.bind-address"),
    used("rest.bind-port"),
    used("jobmanager.rpc.address"),
    used("jobmanager.rpc.port"),
    used("jobmanager.bind-host"),
    ignored("jobmanager.memory.process.size", NO_JVM),
    ignored("jobmanager.memory.flink.size", NO_JVM),
    ignored("jobmanager.memory.heap.size", NO_JVM),
    used("taskmanager.host"),
    ignored(
        "taskmanager.bind-host",
        "a worker binds `taskmanager.host` (else `rpc.address`), the address it registers with",
    ),
    used("taskmanager.numberOfTaskSlots"),
    used("taskmanager.resource-id"),
    ignored("taskmanager.memory.process.size", NO_JVM),
    ignored("taskmanager.memory.flink.size", NO_JVM),
    ignored("taskmanager.memory.managed.fraction", NO_JVM),
    ignored("taskmanager.memory.network.fraction", "Keel workers exchange no network buffers"),
    ignored("taskmanager.data.port", "Keel workers exchange no data between each other"),
    ignored("blob.server.port", "Keel ships no jars: job specs travel in the submission"),
    ignored("env.java.opts.all", NO_JVM),
    ignored("env.java.home", NO_JVM),
    ignored("web.submit.enable", "Keel's REST API takes job specs, not jars"),
    ignored("web.cancel.enable", "cancelling is guarded by `rest.auth.token`"),
    used("heartbeat.interval"),
    used("heartbeat.timeout"),
    used("io.tmp.dirs"),
    used("s3.endpoint"),
    used("s3.access-key"),
    used("s3.secret-key"),
    used("s3.path.style.access"),
    used("security.ssl.internal.enabled"),
    ignored(
        "security.ssl.internal.keystore",
        "Keel reads PEM: set `security.ssl.internal.key` and `security.ssl.internal.cert`",
    ),
    used("security.ssl.internal.truststore"),
    used("security.ssl.rest.enabled"),
    ignored("security.ssl.rest.keystore", "Keel reads PEM: set `security.ssl.rest.key` and `security.ssl.rest.cert`"),
    used("security.ssl.rest.truststore"),
    used("metrics.reporter.prom.port"),
    ignored(
        "metrics.reporter.prom.factory.class",
        "Keel always serves Prometheus text: dispatchers on `rest.port`, workers on `metrics.reporter.prom.port`",
    ),
];

/// Where `key` is a Flink alias: the Keel key it sets and whether it is deprecated.
pub(crate) fn alias_of(key: &str) -> Option<(&'static str, bool)> {
    FLINK_KEYS.iter().find(|flink| flink.key == key).and_then(|flink| match flink.treatment {
        FlinkTreatment::Alias { keel, deprecated } => Some((keel, deprecated)),
        _ => None,
    })
}

/// Why Keel ignores the Flink key `key`, if it does.
pub(crate) fn ignored_reason(key: &str) -> Option<&'static str> {
    FLINK_KEYS.iter().find(|flink| flink.key == key).and_then(|flink| match flink.treatment {
        FlinkTreatment::Ignored(reason) => Some(reason),
        _ => None,
    })
}

/// Which process loads the configuration, for [`Loaded::warnings_for`](crate::Loaded::warnings_for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// `keel dispatcher`.
    Dispatcher,
    /// `keel worker`.
    Worker,
    /// The client commands (`keel run`, `list`, `status`, `cancel`, `savepoint`, `stop`, ...),
    /// which read only how to find and call the cluster.
    Client,
}

/// Keys (or key prefixes, ending in `.`) the client commands read: finding the leader in
/// ZooKeeper, calling REST, the debug command's internal RPC security.
const CLIENT_KEYS: &[&str] = &[
    "application-attempts",
    "high-availability.type",
    "high-availability.zookeeper.",
    "high-availability.cluster-id",
    "zookeeper.",
    "rest.address",
    "rest.port",
    "rest.auth.",
    "security.",
];

/// Keys (or prefixes) only workers read.
const WORKER_ONLY: &[&str] = &[
    "taskmanager.",
    "state.backend.rocksdb.",
    "state.backend.local-recovery",
    "execution.state-recovery.",
    "metrics.reporter.prom.port",
];

/// Keys (or prefixes) only dispatchers read.
const DISPATCHER_ONLY: &[&str] = &[
    "jobmanager.bind-host",
    "jobmanager.execution.",
    "jobmanager.memory.",
    "rest.bind-",
    "rest.admin.",
    "parallelism.default",
    "restart-strategy",
    "execution.checkpointing.interval",
    "execution.checkpointing.timeout",
    "execution.checkpointing.mode",
    "execution.checkpointing.max-concurrent-checkpoints",
    "execution.checkpointing.min-pause",
    "state.savepoints.",
    "execution.checkpointing.savepoint-dir",
    "web.",
    "blob.",
    "high-availability.recovery.",
];

fn matches(key: &str, patterns: &[&str]) -> bool {
    patterns.iter().any(|p| {
        if p.ends_with('.') {
            key.starts_with(p)
        } else {
            key == *p || key.starts_with(&format!("{p}."))
        }
    })
}

/// Whether `process` reads `key` (a Keel key, a Flink alias or an ignored Flink key): a
/// warning about `key` is shown by exactly these processes. Client commands read only
/// [`CLIENT_KEYS`]; dispatchers and workers read everything but the other one's own keys.
#[must_use]
pub fn reads(process: Process, key: &str) -> bool {
    let key = alias_of(key).map_or(key, |(keel, _)| keel);
    match process {
        Process::Client => matches(key, CLIENT_KEYS),
        Process::Dispatcher => !matches(key, WORKER_ONLY) || matches(key, CLIENT_KEYS),
        Process::Worker => !matches(key, DISPATCHER_ONLY) || matches(key, CLIENT_KEYS),
    }
}

/// The markdown section of docs/configuration.md that maps every key of [`FLINK_KEYS`].
pub(crate) fn flink_markdown() -> String {
    let mut out = String::from(
        "\n## Flink keys\n\
         \n\
         A Flink `config.yaml` (1.x flat or 2.x nested) works as it is. Every Flink key below is \
         either **used** (Keel reads it under the same name), an **alias** (Keel reads it as the \
         Keel key named; a *deprecated* legacy name adds a warning naming that key, once), or \
         **ignored** with the reason (a warning says so, only in the process that would have \
         used it). Setting a key and its alias in one file is an error naming both lines. \
         Other unknown keys warn, suggesting the nearest key, or the Keel key a near Flink \
         alias maps to. `keel run`, `list`, `status` and the other client commands print only \
         warnings about the keys they read (ZooKeeper, REST, security). Generated from \
         `keel_conf::FLINK_KEYS`, which the loader reads.\n\
         \n\
         | Flink key | Keel |\n\
         | --- | --- |\n",
    );
    for flink in FLINK_KEYS {
        let keel = match flink.treatment {
            FlinkTreatment::Used => "used".to_owned(),
            FlinkTreatment::Alias { keel, deprecated: false } => format!("alias of `{keel}`"),
            FlinkTreatment::Alias { keel, deprecated: true } => format!("deprecated alias of `{keel}` (warns)"),
            FlinkTreatment::Ignored(reason) => format!("ignored: {reason}"),
        };
        out.push_str(&format!("| `{}` | {} |\n", flink.key, keel.replace('|', "\\|")));
    }
    out
}

/// Checks the registry against [`KEYS`](crate::KEYS): a used key is a Keel key, an alias
/// names a Keel key and is not one, an ignored key is not a Keel key.
#[cfg(test)]
pub(crate) fn registry_problems() -> Vec<String> {
    let mut problems = Vec::new();
    for (i, flink) in FLINK_KEYS.iter().enumerate() {
        if FLINK_KEYS[..i].iter().any(|other| other.key == flink.key) {
            problems.push(format!("{} is listed twice", flink.key));
        }
        match flink.treatment {
            FlinkTreatment::Used if key_doc(flink.key).is_none() => {
                problems.push(format!("{} is marked used but is not a Keel key", flink.key))
            }
            FlinkTreatment::Alias { keel, .. } if key_doc(keel).is_none() || key_doc(flink.key).is_some() => {
                problems.push(format!("{} aliases {keel}, which must be a Keel key while it is not", flink.key))
            }
            FlinkTreatment::Ignored(_) if key_doc(flink.key).is_some() => {
                problems.push(format!("{} is marked ignored but Keel reads it", flink.key))
            }
            _ => {}
        }
    }
    problems
}
