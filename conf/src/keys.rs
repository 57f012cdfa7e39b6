//! The list of keys: names, types, defaults and descriptions. Everything else (defaults,
//! `keel config show`, docs/configuration.md) is derived from [`KEYS`].

/// Documentation of one configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDoc {
    /// The dotted key, as written in `config.yaml` or after `-D`.
    pub key: &'static str,
    /// The default as text, parsed like a user's value; empty when the key has no default.
    /// A default computed at start (only `io.tmp.dirs`: the system temporary directory) is
    /// described in words instead (`$TMPDIR or /tmp`); [`KeyDoc::default_value`] computes it.
    pub default: &'static str,
    /// The value type: `duration`, `integer ...`, `boolean`, `string ...`, `enum: a|b`.
    pub kind: &'static str,
    /// What the key does (Markdown).
    pub description: &'static str,
}

/// The documented default of `io.tmp.dirs`, which [`KeyDoc::default_value`] computes.
const SYSTEM_TEMP_DIR: &str = "$TMPDIR or /tmp";

impl KeyDoc {
    /// The default as a value, parsed like a user's: [`KeyDoc::default`], except for a
    /// default computed at start (`io.tmp.dirs`: [`std::env::temp_dir`] as text). Empty when
    /// the key has no default.
    #[must_use]
    pub fn default_value(&self) -> String {
        if self.default == SYSTEM_TEMP_DIR {
            crate::config::system_temp_dir()
        } else {
            self.default.to_owned()
        }
    }
}

/// Every key Keel reads, in documentation order. The single source of truth for the key list.
pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "high-availability.type",
        default: "none",
        kind: "enum: none|zookeeper",
        description: "`zookeeper` runs leader election in ZooKeeper, so several dispatchers can \
            run and one leads; `none` runs a single dispatcher at \
            `jobmanager.rpc.address`:`jobmanager.rpc.port` with leader epoch 1. \
            Case-insensitive (`ZOOKEEPER` works).",
    },
    KeyDoc {
        key: "high-availability.zookeeper.quorum",
        default: "",
        kind: "string (host:port list)",
        description: "Comma-separated ZooKeeper servers, for example \
            `zk1:2181,zk2:2181,zk3:2181`. Each entry is `host:port` with a numeric port \
            (IPv6 hosts in brackets). Required when `high-availability.type` is `zookeeper`.",
    },
    KeyDoc {
        key: "high-availability.zookeeper.path.root",
        default: "/keel",
        kind: "string (ZooKeeper path)",
        description: "Root znode under which every Keel cluster keeps its state. Starts with \
            `/`, has no trailing `/` and no empty segments; `/` alone is not allowed.",
    },
    KeyDoc {
        key: "high-availability.cluster-id",
        default: "/default",
        kind: "string (ZooKeeper path)",
        description: "Identifies this cluster under the root: its znodes live under \
            `<path.root><cluster-id>`, for example `/keel/default`. A leading `/` is added \
            when missing; no empty segments.",
    },
    KeyDoc {
        key: "high-availability.storageDir",
        default: "",
        kind: "string (URI)",
        description: "Storage directory for job graphs and checkpoint metadata; ZooKeeper \
            holds only pointers into it. A `file://`, `s3://`, `hdfs://` or `swift://` URI, \
            or an absolute path (read as `file://`). With `high-availability.type: none` it \
            defaults to `<first io.tmp.dirs entry>/keel-ha<cluster-id>`, and the single \
            dispatcher keeps its pointer tree (`pointers.bin`) in its `pointers` subdirectory \
            (under that default when the storage directory is not `file://`).",
    },
    KeyDoc {
        key: "high-availability.zookeeper.client.session-timeout",
        default: "60 s",
        kind: "duration",
        description: "ZooKeeper session timeout. A leader whose session expires loses \
            leadership; when a leader dies, a standby takes over after about this long. \
            Greater than 0.",
    },
    KeyDoc {
        key: "high-availability.zookeeper.client.connection-timeout",
        default: "15 s",
        kind: "duration",
        description: "How long to wait for a connection to ZooKeeper. Greater than 0.",
    },
    KeyDoc {
        key: "high-availability.zookeeper.client.retry-wait",
        default: "5 s",
        kind: "duration",
        description: "Cap on the back-off between ZooKeeper reconnection attempts. \
            Greater than 0.",
    },
    KeyDoc {
        key: "high-availability.zookeeper.client.tolerate-suspended-connections",
        default: "false",
        kind: "boolean",
        description: "When `true`, a leader keeps acting while its ZooKeeper connection is \
            suspended, until the session expires; when `false`, it stops acting as soon as \
            the connection is suspended.",
    },
    KeyDoc {
        key: "high-availability.fast-failover.enabled",
        default: "true",
        kind: "boolean",
        description: "When the leader's process is gone (its RPC port refuses connections: \
            kill -9, OOM kill, crash), a standby re-attaches to the leader's ZooKeeper session \
            (published in `leader/session`) and closes it, so a new leader is elected at once \
            instead of after `session-timeout`. A paused or partitioned leader is not affected \
            (its port does not refuse). `false`: always wait for the session to expire.",
    },
    KeyDoc {
        key: "high-availability.zookeeper.client.sasl.username",
        default: "",
        kind: "string",
        description: "The user Keel authenticates to ZooKeeper as, with SASL DIGEST-MD5 (what \
            Flink reads from the `Client` section of its JAAS file, \
            `org.apache.zookeeper.server.auth.DigestLoginModule`). Needs \
            `high-availability.zookeeper.client.sasl.password`. The ZooKeeper servers must \
            know the user (`user_<name>=\"<password>\"` in their JAAS `Server` section) and run \
            `authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider`. A \
            session whose authentication fails is refused at start with an error naming the \
            user and the quorum (never the password).",
    },
    KeyDoc {
        key: "high-availability.zookeeper.client.sasl.password",
        default: "",
        kind: "string (secret)",
        description: "The password of `high-availability.zookeeper.client.sasl.username`. No \
            whitespace. `keel config show` and error messages print `******`; it is never \
            logged. Prefer `-D` or an environment-specific file with tight permissions.",
    },
    KeyDoc {
        key: "zookeeper.sasl.disable",
        default: "false",
        kind: "boolean",
        description: "Flink's key: `true` never authenticates to ZooKeeper with SASL, even when \
            credentials are configured (then `high-availability.zookeeper.client.acl: \
            creator` is refused).",
    },
    KeyDoc {
        key: "high-availability.zookeeper.client.acl",
        default: "open",
        kind: "enum: open|creator",
        description: "Flink's key: the ACL on every znode Keel creates for the cluster \
            (`<path.root>/<cluster-id>` and below). `open`: anyone may read, change and delete \
            (ZooKeeper's `OPEN_ACL_UNSAFE`). `creator`: only the authenticated identity that \
            created a znode may read, change or delete it (`CREATOR_ALL_ACL`); every \
            dispatcher, worker and `keel` command of the cluster must then authenticate as the \
            same user. Needs SASL credentials. Znodes that already exist keep their ACL; the \
            path root above the cluster stays open so that clusters with other credentials \
            can share it.",
    },
    KeyDoc {
        key: "zookeeper.client.secure",
        default: "false",
        kind: "boolean",
        description: "ZooKeeper's client property: connect to ZooKeeper over TLS. The quorum \
            must then list the servers' `secureClientPort`s. Needs \
            `zookeeper.ssl.trustStore.location`; the servers' certificates must name the host \
            in the quorum (subject alternative name).",
    },
    KeyDoc {
        key: "zookeeper.ssl.trustStore.location",
        default: "",
        kind: "string (absolute path)",
        description: "PEM bundle of the CA certificates ZooKeeper servers' certificates must \
            be signed by (ZooKeeper's client property, with `zookeeper.ssl.trustStore.type: \
            PEM`; no password).",
    },
    KeyDoc {
        key: "zookeeper.ssl.keyStore.location",
        default: "",
        kind: "string (absolute path)",
        description: "PEM file holding this client's certificate (chain, leaf first) and its \
            unencrypted private key, presented to ZooKeeper (ZooKeeper's client property with \
            `zookeeper.ssl.keyStore.type: PEM`). Needed when the servers require client \
            certificates (`ssl.clientAuth=need`, ZooKeeper's default).",
    },
    KeyDoc {
        key: "security.kerberos.login.keytab",
        default: "",
        kind: "string (absolute path)",
        description: "Flink's key: the keytab Keel logs in to Kerberos with, for the login \
            contexts in `security.kerberos.login.contexts` (today: ZooKeeper's, \
            `zookeeper.sasl.login-context-name`). Keel uses it as MIT Kerberos's client keytab \
            (`KRB5_CLIENT_KTNAME`) with a credential cache of its own \
            (`KRB5CCNAME=MEMORY:keel-<pid>`) unless `KRB5CCNAME` is set, so tickets are obtained \
            and renewed from the keytab without `kinit`. Needs \
            `security.kerberos.login.principal`.",
    },
    KeyDoc {
        key: "security.kerberos.login.principal",
        default: "",
        kind: "string",
        description: "Flink's key: the Kerberos principal in `security.kerberos.login.keytab` \
            (for example `keel/host1.example@EXAMPLE.COM`). MIT Kerberos logs in as the \
            keytab's first principal: give Keel a keytab holding only this one.",
    },
    KeyDoc {
        key: "security.kerberos.login.contexts",
        default: "",
        kind: "string (comma-separated list)",
        description: "Flink's key: the login contexts that use the Kerberos login. ZooKeeper \
            authenticates with Kerberos (SASL GSSAPI) when this lists \
            `zookeeper.sasl.login-context-name` (`Client`) and `zookeeper.sasl.disable` is \
            not `true`; then `high-availability.zookeeper.client.sasl.username` must be unset.",
    },
    KeyDoc {
        key: "zookeeper.sasl.service-name",
        default: "zookeeper",
        kind: "string",
        description: "Flink's key: the primary of the ZooKeeper servers' Kerberos principal; \
            Keel asks for `<service-name>/<host as in the quorum>@<realm>`.",
    },
    KeyDoc {
        key: "zookeeper.sasl.login-context-name",
        default: "Client",
        kind: "string",
        description: "Flink's key: the name `security.kerberos.login.contexts` must list for \
            ZooKeeper to use the Kerberos login.",
    },
    KeyDoc {
        key: "high-availability.recovery.worker-wait",
        default: "10 s",
        kind: "duration",
        description: "How long a new leader waits for enough workers to re-register before it \
            restarts the jobs it recovered anyway, on the workers it has. `0` restarts them at \
            once.",
    },
    KeyDoc {
        key: "high-availability.adoption.timeout",
        default: "30 s",
        kind: "duration",
        description: "Tasks keep running through a leader change: when a worker registers with \
            a new leader it reports its running tasks and keeps them running for up to this \
            long; the new leader's job master adopts a job whose every subtask of its current \
            attempt is still running (no restart, no replay) and restarts it from its latest \
            checkpoint otherwise. Tasks not adopted within this time are stopped, and so are \
            the tasks of a worker that has heard from no leader for `heartbeat.timeout` plus \
            this. `0` disables adoption: tasks stop when their worker registers anew, run on \
            while there is no leader, and every failover restarts the job.",
    },
    KeyDoc {
        key: "application-attempts",
        default: "2",
        kind: "integer (>= 1)",
        description: "Application mode (`keel run-application`): how many times the dedicated \
            cluster's dispatcher is started in all, so `2` restarts it once after it exits \
            unexpectedly (each worker likewise). The job is recovered by the restarted \
            dispatcher from its stores. Flink's `yarn.application-attempts` is an alias.",
    },
    KeyDoc {
        key: "rest.address",
        default: "127.0.0.1",
        kind: "string",
        description: "Address the REST API binds to and advertises.",
    },
    KeyDoc {
        key: "rest.port",
        default: "8081",
        kind: "integer (0..65535)",
        description: "Port of the REST API; `0` picks a free port.",
    },
    KeyDoc {
        key: "rest.bind-address",
        default: "",
        kind: "string",
        description: "Address a dispatcher's REST listener binds to (Flink's key), for example \
            `0.0.0.0`, while `rest.address` stays the address clients use. Unset: \
            `rest.address`.",
    },
    KeyDoc {
        key: "rest.bind-port",
        default: "",
        kind: "string (port or range)",
        description: "Port, or range of ports `FIRST-LAST` (Flink's key, for example \
            `8081-8090`), a dispatcher's REST listener binds: the first free port of the range, \
            so several dispatchers on one host can share one configuration. The bound address \
            is published to ZooKeeper, so `keel` commands find the leader wherever it bound. \
            Unset: `rest.port`.",
    },
    KeyDoc {
        key: "rest.auth.token",
        default: "",
        kind: "string (secret)",
        description: "When set, mutating REST endpoints (`POST`, `DELETE` and the admin \
            endpoints) require the header `Authorization: Bearer <token>`. No whitespace. \
            `keel config show` and error messages print `******` instead of the token.",
    },
    KeyDoc {
        key: "rest.admin.enabled",
        default: "false",
        kind: "boolean",
        description: "Whether the admin endpoint `POST /admin/fault` (a dispatcher kills, pauses or \
            isolates itself on request, for `keel drill` and chaos tests) exists. Off by default: \
            without it the endpoint answers `403`. When on, it still requires `rest.auth.token` \
            if one is set.",
    },
    KeyDoc {
        key: "rest.auth.read",
        default: "false",
        kind: "boolean",
        description: "With `rest.auth.token` set, also require the token on `GET` endpoints \
            (jobs, overview, task managers, leader, `/metrics` and the dashboard `/`; workers' \
            `/metrics` too). `keel` commands send it from the configuration.",
    },
    KeyDoc {
        key: "metrics.reporter.prom.port",
        default: "9249-9260",
        kind: "string (port or FIRST-LAST range)",
        description: "Where a worker serves `GET /metrics` (Prometheus text; Flink's key): the \
            first free port of the range, on the worker's RPC host (`taskmanager.host`, else \
            `rpc.address`); `0` picks any free port (the worker prints it in its ready line as \
            `metrics`). No free port: the worker logs a warning and runs without `/metrics`. \
            Dispatchers serve `/metrics` on `rest.port`.",
    },
    KeyDoc {
        key: "security.internal.secret",
        default: "",
        kind: "string (secret)",
        description: "A shared secret for cluster-internal RPC (worker ↔ dispatcher gRPC, both \
            directions): when set, every internal call carries it and every dispatcher and \
            worker refuses a call without it (or with another) with \
            `UNAUTHENTICATED` and a log line. Set the same value on every process. Printable \
            ASCII, no whitespace. `keel config show` and error messages print `******`; it is \
            never logged. Can be combined with `security.ssl.internal.enabled`.",
    },
    KeyDoc {
        key: "security.ssl.internal.enabled",
        default: "false",
        kind: "boolean",
        description: "Mutual TLS on cluster-internal RPC (Flink's key): every gRPC server \
            (dispatchers, workers) presents `security.ssl.internal.cert` and requires a client \
            certificate signed by a CA in `security.ssl.internal.truststore`; every client \
            presents the same certificate and verifies the server against the truststore and \
            the host it dials (the certificate needs that host or IP as a subject alternative \
            name). Needs the key, cert and truststore keys.",
    },
    KeyDoc {
        key: "security.ssl.internal.key",
        default: "",
        kind: "string (absolute path)",
        description: "PEM private key (PKCS#8, PKCS#1 or SEC1) of this process's internal \
            certificate. With `security.ssl.internal.cert` it replaces Flink's \
            `security.ssl.internal.keystore` (+ `keystore-password`, `key-password`): Keel reads \
            unencrypted PEM, so protect the file with its permissions.",
    },
    KeyDoc {
        key: "security.ssl.internal.cert",
        default: "",
        kind: "string (absolute path)",
        description: "PEM certificate (chain, leaf first) for cluster-internal RPC, used both as \
            server and as client certificate.",
    },
    KeyDoc {
        key: "security.ssl.internal.truststore",
        default: "",
        kind: "string (absolute path)",
        description: "PEM bundle of the CA certificates that internal peers' certificates must \
            be signed by (Flink's `security.ssl.internal.truststore`, as PEM; no password).",
    },
    KeyDoc {
        key: "security.ssl.rest.enabled",
        default: "false",
        kind: "boolean",
        description: "Serve the REST API over TLS (HTTPS) on `rest.port` (Flink's key); plain \
            HTTP is then not answered. Dispatchers need `security.ssl.rest.key` and \
            `security.ssl.rest.cert`; `keel` commands with this set call `https://` and trust \
            `security.ssl.rest.truststore`, else the certificate itself.",
    },
    KeyDoc {
        key: "security.ssl.rest.key",
        default: "",
        kind: "string (absolute path)",
        description: "PEM private key of the REST server's certificate (replaces Flink's \
            `security.ssl.rest.keystore` and its passwords: unencrypted PEM, protect the file).",
    },
    KeyDoc {
        key: "security.ssl.rest.cert",
        default: "",
        kind: "string (absolute path)",
        description: "PEM certificate (chain, leaf first) of the REST server. It must name the \
            host clients use (`rest.address`, as a subject alternative name).",
    },
    KeyDoc {
        key: "security.ssl.rest.truststore",
        default: "",
        kind: "string (absolute path)",
        description: "PEM bundle of the CA certificates `keel` commands trust for the REST \
            API (Flink's `security.ssl.rest.truststore`, as PEM). Unset: \
            `security.ssl.rest.cert` itself is trusted.",
    },
    KeyDoc {
        key: "rpc.address",
        default: "127.0.0.1",
        kind: "string",
        description: "Address of the gRPC listener of a dispatcher or worker.",
    },
    KeyDoc {
        key: "rpc.port",
        default: "0",
        kind: "integer (0..65535)",
        description: "Port of the gRPC listener of a dispatcher or worker; `0` picks a free \
            port.",
    },
    KeyDoc {
        key: "jobmanager.rpc.address",
        default: "127.0.0.1",
        kind: "string",
        description: "Used only with `high-availability.type: none`: where the single \
            dispatcher listens and where workers find it.",
    },
    KeyDoc {
        key: "jobmanager.rpc.port",
        default: "6123",
        kind: "integer (0..65535)",
        description: "Used only with `high-availability.type: none`: the port of the single \
            dispatcher.",
    },
    KeyDoc {
        key: "jobmanager.bind-host",
        default: "",
        kind: "string",
        description: "Address a dispatcher's gRPC listener binds to (Flink's key), for example \
            `0.0.0.0`. Unset: `rpc.address` (with `high-availability.type: none`, \
            `jobmanager.rpc.address`). Workers ignore it.",
    },
    KeyDoc {
        key: "taskmanager.numberOfTaskSlots",
        default: "1",
        kind: "integer (>= 1)",
        description: "Number of task slots a worker offers.",
    },
    KeyDoc {
        key: "taskmanager.resource-id",
        default: "",
        kind: "string",
        description: "Identifier of a worker (no whitespace). Generated at start when not set.",
    },
    KeyDoc {
        key: "taskmanager.host",
        default: "",
        kind: "string",
        description: "Address of a worker's gRPC listener (Flink's key): the worker binds it and \
            registers with it. Unset: `rpc.address`. Dispatchers ignore it.",
    },
    KeyDoc {
        key: "rpc.advertised-address",
        default: "",
        kind: "string (host:port)",
        description: "The gRPC address a dispatcher publishes in ZooKeeper and a worker \
            registers with, instead of the bound `rpc.address`:`rpc.port` (behind a proxy or \
            NAT). Unset: the bound address.",
    },
    KeyDoc {
        key: "heartbeat.interval",
        default: "10 s",
        kind: "duration",
        description: "How often dispatchers and workers exchange heartbeats. Greater than 0.",
    },
    KeyDoc {
        key: "heartbeat.timeout",
        default: "50 s",
        kind: "duration",
        description: "A peer that sent no heartbeat for this long is considered dead. Greater \
            than `heartbeat.interval`.",
    },
    KeyDoc {
        key: "state.backend",
        default: "hashmap",
        kind: "enum: hashmap|rocksdb",
        description: "Keyed state backend of tasks. `hashmap` keeps state in memory (fastest, \
            bounded by memory; every checkpoint is a full snapshot); `rocksdb` keeps it in \
            RocksDB on local disk under `state.backend.rocksdb.localdir` (state may exceed \
            memory; checkpoints can be incremental). Case-insensitive; Flink's legacy names \
            `filesystem` and `jobmanager` mean `hashmap`. Other keys start with \
            `state.backend.`, so in nested YAML write them beside this one as \
            `backend.incremental: true` under `state:`, or flat.",
    },
    KeyDoc {
        key: "state.backend.rocksdb.localdir",
        default: "",
        kind: "string (absolute path)",
        description: "Local working directory of RocksDB on each worker: one absolute path. \
            When unset, `<first io.tmp.dirs entry>/keel-rocksdb`.",
    },
    KeyDoc {
        key: "state.backend.incremental",
        default: "false",
        kind: "boolean",
        description: "Upload only the SST files that the previous retained checkpoint does not \
            already hold, instead of a full snapshot every time. Needs `state.backend: \
            rocksdb`; with `hashmap` it has no effect (a warning says so).",
    },
    KeyDoc {
        key: "state.backend.local-recovery",
        default: "false",
        kind: "boolean",
        description: "Keep a local copy of the latest checkpoint on the worker, and restore \
            from it instead of downloading when a task comes back on the same worker.",
    },
    KeyDoc {
        key: "state.checkpoints.dir",
        default: "",
        kind: "string (URI)",
        description: "Where checkpoint data goes. A `file://`, `s3://`, `hdfs://` or \
            `swift://` URI, or an absolute path (read as `file://`). When unset, \
            `<high-availability.storageDir>/checkpoints`.",
    },
    KeyDoc {
        key: "state.checkpoints.num-retained",
        default: "1",
        kind: "integer (>= 1)",
        description: "Number of completed checkpoints kept per job.",
    },
    KeyDoc {
        key: "execution.checkpointing.timeout",
        default: "10 min",
        kind: "duration",
        description: "A checkpoint that is not complete within this long is aborted. Greater \
            than 0.",
    },
    KeyDoc {
        key: "execution.checkpointing.interval",
        default: "10 s",
        kind: "duration",
        description: "Cluster-wide default: how often a job is checkpointed when its spec sets no \
            `checkpoint-interval`. At least 10 ms. Read by dispatchers when a job starts.",
    },
    KeyDoc {
        key: "state.savepoints.dir",
        default: "",
        kind: "string (URI)",
        description: "Where savepoints go when `keel savepoint` / `keel stop` (or the REST \
            request) names no directory. A `file://`, `s3://`, `hdfs://` or `swift://` URI, or an \
            absolute path (read as `file://`). Flink 2.x calls it \
            `execution.checkpointing.savepoint-dir`. Unset: `<checkpoints dir>/savepoints`.",
    },
    KeyDoc {
        key: "parallelism.default",
        default: "1",
        kind: "integer (1..1024)",
        description: "Cluster-wide default: the parallelism of a job whose spec sets no \
            `parallelism` (Flink's key).",
    },
    KeyDoc {
        key: "restart-strategy.type",
        default: "fixed-delay",
        kind: "enum: none|fixed-delay",
        description: "Cluster-wide default: what a job whose spec sets no `restart-strategy` \
            does when a subtask fails: `fixed-delay` restarts it from the latest completed \
            checkpoint up to `restart-strategy.fixed-delay.attempts` times; `none` fails the \
            job. Flink's spellings `off`, `disable`, `no-restart` and `fixeddelay` work; \
            `failure-rate` and `exponential-delay` are refused (not implemented).",
    },
    KeyDoc {
        key: "restart-strategy.fixed-delay.attempts",
        default: "3",
        kind: "integer (>= 0)",
        description: "Restarts the default `fixed-delay` strategy allows (Flink's key).",
    },
    KeyDoc {
        key: "restart-strategy.fixed-delay.delay",
        default: "1 s",
        kind: "duration",
        description: "Wait before each restart of the default `fixed-delay` strategy (Flink's \
            key).",
    },
    KeyDoc {
        key: "io.tmp.dirs",
        default: SYSTEM_TEMP_DIR,
        kind: "string (list of absolute paths)",
        description: "Local directories for temporary files, separated by `,` or (as in \
            Flink) `:`, for example `/data1/tmp,/data2/tmp`. The default is the system \
            temporary directory: `$TMPDIR`, else `/tmp`.",
    },
    KeyDoc {
        key: "s3.endpoint",
        default: "",
        kind: "string (URL)",
        description: "Endpoint of an S3-compatible store, `http://host:port` or \
            `https://host:port` (for example `http://minio:9000`). When unset, \
            `AWS_ENDPOINT_URL`, else AWS itself.",
    },
    KeyDoc {
        key: "s3.region",
        default: "",
        kind: "string",
        description: "Region of the S3 buckets. When unset, `AWS_REGION`, else \
            `AWS_DEFAULT_REGION`, else `us-east-1`.",
    },
    KeyDoc {
        key: "s3.access-key",
        default: "",
        kind: "string",
        description: "S3 access key id. When unset, `AWS_ACCESS_KEY_ID`.",
    },
    KeyDoc {
        key: "s3.secret-key",
        default: "",
        kind: "string (secret)",
        description: "S3 secret access key. When unset, `AWS_SECRET_ACCESS_KEY`. \
            `keel config show` and error messages print `******` instead of the key.",
    },
    KeyDoc {
        key: "s3.path.style.access",
        default: "false",
        kind: "boolean",
        description: "Send path-style requests (`http://host/bucket/key`) instead of \
            virtual-hosted ones (`http://bucket.host/key`); most S3-compatible servers need \
            `true`.",
    },
];

/// The documentation of `key`, if Keel knows it.
#[must_use]
pub fn key_doc(key: &str) -> Option<&'static KeyDoc> {
    KEYS.iter().find(|doc| doc.key == key)
}

/// Whether other keys start with `key.` (only `state.backend`). In a YAML file such a key
/// is a value and also the start of other keys, so a mapping under it is flattened.
pub(crate) fn has_subkeys(key: &str) -> bool {
    KEYS.iter().any(|doc| doc.key.strip_prefix(key).is_some_and(|rest| rest.starts_with('.')))
}

/// The known key closest to an unknown `key`, if it is close enough to be a likely typo:
/// a Keel key `(key, None)`, or a Flink alias `(alias, Some(keel key it sets))`. On a tie an
/// alias wins, since a Flink key that is one letter off is more likely meant than a Keel key.
pub(crate) fn nearest_key(key: &str) -> Option<(&'static str, Option<&'static str>)> {
    let wanted = key.to_lowercase();
    let keel = KEYS.iter().map(|doc| (doc.key, None));
    let aliases = crate::flink::FLINK_KEYS.iter().filter_map(|flink| match flink.treatment {
        crate::flink::FlinkTreatment::Alias { keel, .. } => Some((flink.key, Some(keel))),
        _ => None,
    });
    aliases
        .chain(keel)
        .map(|(known, target)| (strsim::osa_distance(&wanted, &known.to_lowercase()), known, target))
        .min_by_key(|(distance, _, _)| *distance)
        .filter(|(distance, known, _)| *distance <= (known.len() / 5).max(2))
        .map(|(_, known, target)| (known, target))
}

/// Renders the configuration reference (docs/configuration.md) from [`KEYS`].
#[must_use]
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Keel configuration reference\n\
         \n\
         <!-- Generated from keel_conf::KEYS by keel_conf::reference_markdown(). Do not edit: \
         change conf/src/keys.rs and run `KEEL_REGENERATE_DOCS=1 cargo test -p keel-conf`. -->\n\
         \n\
         Keel reads a Flink-style `config.yaml` (`keel dispatcher --config conf/config.yaml`). \
         Keys may be written flat or as nested YAML mappings, mixed in one file; nested \
         mappings flatten into dotted keys (here `quorum` is \
         `high-availability.zookeeper.quorum`):\n\
         \n\
         ```yaml\n\
         high-availability.type: zookeeper\n\
         high-availability:\n\
        \x20 zookeeper:\n\
        \x20   quorum: zk1:2181,zk2:2181,zk3:2181\n\
         heartbeat.timeout: 1 min\n\
         ```\n\
         \n\
         The same key set twice, in any form, is an error naming both lines. An empty file is \
         valid and means all defaults. Unknown keys are not errors, because Flink \
         configuration files carry keys for other tools: each one produces a warning, with \
         the nearest known key when it looks like a typo.\n\
         \n\
         **Precedence**: built-in defaults < the configuration file < `-D key=value` on the \
         command line (a later `-D` for the same key wins). `keel config show` prints every \
         key's effective value and where it came from (`default`, `FILE:LINE` or `-D`).\n\
         \n\
         **Durations** are a whole number of milliseconds (`60000`) or a whole number and a \
         unit, with or without a space (`500 ms`, `5 s`, `5s`, `1 min`, `2 h`, `1 d`). Units, \
         case-insensitive: `ns`/`nano`/`nanos`/`nanosecond(s)`, `us`/`µs`/`micro`/`micros`/\
         `microsecond(s)`, `ms`/`milli`/`millis`/`millisecond(s)`, `s`/`sec`/`secs`/\
         `second(s)`, `m`/`min`/`minute(s)`, `h`/`hour(s)`, `d`/`day(s)`.\n\
         \n\
         **Booleans** are `true` or `false` (any case). **Integers** are plain YAML integers \
         or quoted strings of digits. A key left empty (`key:`) or set to `~`/`null` is unset: \
         allowed for keys without a default, an error for the others. Secrets \
         (`s3.secret-key`, `rest.auth.token`, `security.internal.secret`) are printed as `******` by `keel config show` \
         and in error messages.\n\
         \n\
         Errors name what was wrong, the key, the file and line (or `-D`), the value given and \
         what was expected.\n\
         \n\
         | key | type | default | description |\n\
         | --- | --- | --- | --- |\n",
    );
    for doc in KEYS {
        let default = if doc.default.is_empty() { "(none)".to_owned() } else { format!("`{}`", doc.default) };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            doc.key,
            escape_cell(doc.kind),
            escape_cell(&default),
            escape_cell(doc.description)
        ));
    }
    out.push_str(&crate::flink::flink_markdown());
    out
}

/// Escapes the pipe so a cell cannot split a Markdown table row.
fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_not_prefixes_of_each_other() {
        // `state.backend` (Flink's name) is the one exception: a value in YAML cannot also be
        // a mapping, so every such key makes nested files harder to write. Add no others.
        const PREFIXES: &[&str] = &["state.backend"];
        for (i, a) in KEYS.iter().enumerate() {
            for b in &KEYS[i + 1..] {
                assert_ne!(a.key, b.key);
                if !PREFIXES.contains(&a.key) {
                    assert!(!b.key.starts_with(&format!("{}.", a.key)), "{}", b.key);
                }
                if !PREFIXES.contains(&b.key) {
                    assert!(!a.key.starts_with(&format!("{}.", b.key)), "{}", a.key);
                }
            }
        }
        let with_subkeys: Vec<&str> = KEYS.iter().map(|doc| doc.key).filter(|key| has_subkeys(key)).collect();
        assert_eq!(with_subkeys, PREFIXES);
        assert!(!has_subkeys("state.backend.rocksdb.localdir"));
        assert!(!has_subkeys("state.backend.incremental"));
    }

    #[test]
    fn computed_default_of_io_tmp_dirs() {
        let doc = key_doc("io.tmp.dirs").unwrap();
        assert_eq!(doc.default, "$TMPDIR or /tmp");
        assert_eq!(doc.default_value(), std::env::temp_dir().display().to_string());
        assert_eq!(key_doc("rest.port").unwrap().default_value(), "8081");
        assert_eq!(key_doc("s3.region").unwrap().default_value(), "");
    }

    #[test]
    fn nearest_key_suggests_only_close_keys() {
        let keel = |key| Some((key, None));
        assert_eq!(nearest_key("rest.prot"), keel("rest.port"));
        assert_eq!(nearest_key("high-availability.zookeeper.quorom"), keel("high-availability.zookeeper.quorum"));
        assert_eq!(nearest_key("taskmanager.numberoftaskslots"), keel("taskmanager.numberOfTaskSlots"));
        assert_eq!(nearest_key("heartbeat.intervall"), keel("heartbeat.interval"));
        assert_eq!(nearest_key("state.checkpoint.dir"), keel("state.checkpoints.dir"));
        assert_eq!(nearest_key("s3.secret_key"), keel("s3.secret-key"));
        assert_eq!(nearest_key("io.tmp.dir"), keel("io.tmp.dirs"));
        assert_eq!(nearest_key("jobmanager.memory.process.size"), None);
        // A near Flink alias is suggested with the Keel key it sets, not a near Keel key
        // (`execution.checkpointing.dirs` once suggested `execution.checkpointing.timeout`).
        assert_eq!(
            nearest_key("execution.checkpointing.dirs"),
            Some(("execution.checkpointing.dir", Some("state.checkpoints.dir")))
        );
        assert_eq!(
            nearest_key("execution.checkpointing.savepoint.dir"),
            Some(("execution.checkpointing.savepoint-dir", Some("state.savepoints.dir")))
        );
    }

    #[test]
    fn flink_registry_agrees_with_keys() {
        assert_eq!(crate::flink::registry_problems(), Vec::<String>::new());
    }

    #[test]
    fn markdown_has_a_row_per_key_and_escapes_pipes() {
        let md = reference_markdown();
        for doc in KEYS {
            assert!(md.contains(&format!("| `{}` |", doc.key)), "{}", doc.key);
        }
        assert!(md.contains("enum: none\\|zookeeper"));
        assert!(md.contains("| `io.tmp.dirs` | string (list of absolute paths) | `$TMPDIR or /tmp` |"));
        assert!(md.starts_with("# Keel configuration reference\n"));
    }
}
