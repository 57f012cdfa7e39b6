//! The typed configuration and the per-key parsing of values.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::{parse_parts, DURATION_FORMS};
use crate::ConfDuration;

/// `high-availability.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaType {
    /// A single dispatcher at `jobmanager.rpc.address`:`jobmanager.rpc.port`, epoch 1.
    None,
    /// Leader election in ZooKeeper.
    Zookeeper,
}

impl HaType {
    /// The canonical spelling: `none` or `zookeeper`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            HaType::None => "none",
            HaType::Zookeeper => "zookeeper",
        }
    }
}

impl fmt::Display for HaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `high-availability.zookeeper.client.acl`: the ACL on the znodes Keel creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZkAcl {
    /// `open`: anyone may read, write and delete (ZooKeeper's `OPEN_ACL_UNSAFE`).
    Open,
    /// `creator`: only the authenticated identity that created a znode may read, write or
    /// delete it (ZooKeeper's `CREATOR_ALL_ACL`); needs an authenticated session (SASL).
    Creator,
}

impl ZkAcl {
    /// The canonical spelling: `open` or `creator`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ZkAcl::Open => "open",
            ZkAcl::Creator => "creator",
        }
    }
}

impl fmt::Display for ZkAcl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `state.backend`: where tasks keep keyed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateBackendKind {
    /// In memory (`hashmap`; Flink's legacy `filesystem` and `jobmanager` mean this too):
    /// fastest, bounded by memory, every checkpoint a full snapshot.
    Hashmap,
    /// RocksDB on local disk (`rocksdb`): state may exceed memory; checkpoints can be
    /// incremental.
    Rocksdb,
}

impl StateBackendKind {
    /// The canonical spelling: `hashmap` or `rocksdb`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            StateBackendKind::Hashmap => "hashmap",
            StateBackendKind::Rocksdb => "rocksdb",
        }
    }
}

impl fmt::Display for StateBackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `restart-strategy.type`: what a job does when a subtask fails, for jobs whose spec names
/// no restart strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartStrategyType {
    /// Fail the job (`none`; Flink's `off`, `disable` and `no-restart` too).
    None,
    /// Restart from the latest completed checkpoint up to
    /// `restart-strategy.fixed-delay.attempts` times (`fixed-delay`; Flink's `fixeddelay`).
    FixedDelay,
}

impl RestartStrategyType {
    /// The canonical spelling: `none` or `fixed-delay`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RestartStrategyType::None => "none",
            RestartStrategyType::FixedDelay => "fixed-delay",
        }
    }
}

/// What `keel config show`, [`Config::value_of`], `Debug` and error messages print instead
/// of a secret (`s3.secret-key`, `rest.auth.token`).
pub(crate) const MASK: &str = "******";

/// The system temporary directory as text: the default of `io.tmp.dirs`.
pub(crate) fn system_temp_dir() -> String {
    std::env::temp_dir().display().to_string()
}

/// The effective configuration. Build it with [`load`](crate::load) or
/// [`from_str`](crate::from_str), which validate it; [`Config::defaults`] gives the defaults.
///
/// Its `Debug` output shows secrets (`s3_secret_key`, `rest_auth_token`) as `******`.
#[derive(Clone, PartialEq)]
pub struct Config {
    /// `high-availability.type`.
    pub ha_type: HaType,
    /// `high-availability.zookeeper.quorum`, entries trimmed and joined with `,`.
    pub zk_quorum: Option<String>,
    /// `high-availability.zookeeper.path.root`, for example `/keel`.
    pub zk_path_root: String,
    /// `high-availability.cluster-id`, always with a leading `/`, for example `/default`.
    pub cluster_id: String,
    /// `high-availability.storageDir`, an absolute path turned into `file://...`.
    pub storage_dir: Option<String>,
    /// `high-availability.zookeeper.client.session-timeout`.
    pub zk_session_timeout: ConfDuration,
    /// `high-availability.zookeeper.client.connection-timeout`.
    pub zk_connection_timeout: ConfDuration,
    /// `high-availability.zookeeper.client.retry-wait`.
    pub zk_retry_wait: ConfDuration,
    /// `high-availability.zookeeper.client.tolerate-suspended-connections`.
    pub zk_tolerate_suspended_connections: bool,
    /// `high-availability.fast-failover.enabled`: a standby closes the session of a leader
    /// whose process is gone (its RPC port refuses connections) instead of waiting for expiry.
    pub ha_fast_failover: bool,
    /// `zookeeper.sasl.disable`: never authenticate to ZooKeeper with SASL, even when
    /// credentials are configured.
    pub zk_sasl_disable: bool,
    /// `high-availability.zookeeper.client.sasl.username`: the DIGEST-MD5 user Keel
    /// authenticates to ZooKeeper as.
    pub zk_sasl_username: Option<String>,
    /// `high-availability.zookeeper.client.sasl.password`: that user's password. A secret.
    pub zk_sasl_password: Option<String>,
    /// `high-availability.zookeeper.client.acl`.
    pub zk_acl: ZkAcl,
    /// `zookeeper.client.secure`: connect to ZooKeeper over TLS.
    pub zk_client_secure: bool,
    /// `zookeeper.ssl.trustStore.location`: PEM CA bundle the ZooKeeper servers' certificates
    /// must chain to.
    pub zk_ssl_truststore: Option<String>,
    /// `zookeeper.ssl.keyStore.location`: PEM file with this client's certificate (chain) and
    /// private key, presented to ZooKeeper.
    pub zk_ssl_keystore: Option<String>,
    /// `zookeeper.sasl.service-name`: the primary of the ZooKeeper servers' Kerberos
    /// principal (`zookeeper/<host>@REALM`).
    pub zk_sasl_service_name: String,
    /// `zookeeper.sasl.login-context-name`: the login context Kerberos must list in
    /// `security.kerberos.login.contexts` for ZooKeeper to use it.
    pub zk_sasl_login_context: String,
    /// `security.kerberos.login.keytab`: the keytab Keel logs in to Kerberos with.
    pub kerberos_keytab: Option<String>,
    /// `security.kerberos.login.principal`: the principal in that keytab.
    pub kerberos_principal: Option<String>,
    /// `security.kerberos.login.contexts`: the login contexts that use the Kerberos login.
    pub kerberos_contexts: Vec<String>,
    /// `rest.address`.
    pub rest_address: String,
    /// `rest.port` (0 = pick a free port).
    pub rest_port: u16,
    /// `rpc.address`.
    pub rpc_address: String,
    /// `rpc.port` (0 = pick a free port).
    pub rpc_port: u16,
    /// `jobmanager.rpc.address` (only with `high-availability.type: none`).
    pub jobmanager_rpc_address: String,
    /// `jobmanager.rpc.port` (only with `high-availability.type: none`).
    pub jobmanager_rpc_port: u16,
    /// `taskmanager.numberOfTaskSlots` (at least 1).
    pub taskmanager_slots: u32,
    /// `taskmanager.resource-id`; `None` means "generate one at start".
    pub taskmanager_resource_id: Option<String>,
    /// `rpc.advertised-address` (`host:port`): the gRPC address others are told to use
    /// instead of the bound one (behind a proxy or NAT); `None` advertises the bound address.
    pub rpc_advertised_address: Option<String>,
    /// `heartbeat.interval`.
    pub heartbeat_interval: ConfDuration,
    /// `heartbeat.timeout`.
    pub heartbeat_timeout: ConfDuration,
    /// `high-availability.recovery.worker-wait`: how long a new leader waits for workers to
    /// re-register before restarting recovered jobs on what it has (may be 0).
    pub recovery_worker_wait: ConfDuration,
    /// `high-availability.adoption.timeout`: how long a worker keeps its tasks running with no
    /// leader to adopt them (after it registers anew); 0 disables adoption (tasks are stopped
    /// at once and restarted by the new leader, as before).
    pub adoption_timeout: ConfDuration,
    /// `application-attempts` (Flink's `yarn.application-attempts`): how many times
    /// `keel run-application` starts its dispatcher (and each worker) in all (at least 1).
    pub application_attempts: u32,
    /// `rest.auth.token`: when set, mutating REST endpoints require `Authorization: Bearer`
    /// with it. A secret.
    pub rest_auth_token: Option<String>,
    /// `rest.admin.enabled`: whether `POST /admin/fault` exists (off by default).
    pub rest_admin_enabled: bool,
    /// `rest.auth.read`: whether GET endpoints need the token too (when one is set).
    pub rest_auth_read: bool,
    /// `metrics.reporter.prom.port`: the worker's `/metrics` listener binds the first free port
    /// of `(first, last)`; `(0, 0)` picks any free port.
    pub metrics_prom_port: (u16, u16),
    /// `security.internal.secret`: when set, every cluster-internal gRPC call carries it and
    /// every gRPC server refuses calls without it. A secret.
    pub internal_secret: Option<String>,
    /// `security.ssl.internal.enabled`: mutual TLS on cluster-internal gRPC.
    pub ssl_internal_enabled: bool,
    /// `security.ssl.internal.key`: PEM private key path.
    pub ssl_internal_key: Option<String>,
    /// `security.ssl.internal.cert`: PEM certificate (chain) path.
    pub ssl_internal_cert: Option<String>,
    /// `security.ssl.internal.truststore`: PEM CA bundle path.
    pub ssl_internal_truststore: Option<String>,
    /// `security.ssl.rest.enabled`: the REST API over TLS (HTTPS).
    pub ssl_rest_enabled: bool,
    /// `security.ssl.rest.key`: PEM private key path of the REST server.
    pub ssl_rest_key: Option<String>,
    /// `security.ssl.rest.cert`: PEM certificate (chain) path of the REST server.
    pub ssl_rest_cert: Option<String>,
    /// `security.ssl.rest.truststore`: PEM CA bundle path `keel` commands trust for REST.
    pub ssl_rest_truststore: Option<String>,
    /// `state.backend`.
    pub state_backend: StateBackendKind,
    /// `state.backend.rocksdb.localdir`, an absolute path; see
    /// [`Config::effective_rocksdb_localdir`] for the default.
    pub rocksdb_localdir: Option<String>,
    /// `state.backend.incremental`.
    pub state_incremental: bool,
    /// `state.backend.local-recovery`.
    pub state_local_recovery: bool,
    /// `state.checkpoints.dir`, normalised like `storage_dir` (`file:///...`); see
    /// [`Config::effective_checkpoints_dir`] for the default.
    pub checkpoints_dir: Option<String>,
    /// `state.checkpoints.num-retained` (at least 1).
    pub checkpoints_num_retained: u32,
    /// `execution.checkpointing.timeout` (greater than 0).
    pub checkpoint_timeout: ConfDuration,
    /// `execution.checkpointing.interval`: the checkpoint interval of a job whose spec sets
    /// none (at least 10 ms).
    pub checkpoint_interval: ConfDuration,
    /// `state.savepoints.dir` (Flink 2.x: `execution.checkpointing.savepoint-dir`), normalised
    /// like `checkpoints_dir`: where a savepoint goes when the request names no directory.
    pub savepoints_dir: Option<String>,
    /// `parallelism.default`: the parallelism of a job whose spec sets none (1..=1024).
    pub parallelism_default: u32,
    /// `restart-strategy.type`: the restart strategy of a job whose spec sets none.
    pub restart_strategy: RestartStrategyType,
    /// `restart-strategy.fixed-delay.attempts`: restarts allowed by that default strategy.
    pub restart_attempts: u32,
    /// `restart-strategy.fixed-delay.delay`: wait before each restart of that strategy.
    pub restart_delay: ConfDuration,
    /// `rest.bind-address`: where a dispatcher's REST listener binds; `None`: `rest.address`.
    pub rest_bind_address: Option<String>,
    /// `rest.bind-port`: the port, or the range `(first, last)`, a dispatcher's REST listener
    /// binds (the first free port of the range); `None`: `rest.port`.
    pub rest_bind_port: Option<(u16, u16)>,
    /// `jobmanager.bind-host`: where a dispatcher's gRPC listener binds; `None`: `rpc.address`
    /// (`jobmanager.rpc.address` with `high-availability.type: none`).
    pub jobmanager_bind_host: Option<String>,
    /// `taskmanager.host`: the address of a worker's gRPC listener, bound and advertised;
    /// `None`: `rpc.address`.
    pub taskmanager_host: Option<String>,
    /// `io.tmp.dirs`: absolute paths, at least one.
    pub io_tmp_dirs: Vec<String>,
    /// `s3.endpoint`, an `http://` or `https://` URL (scheme lower-cased).
    pub s3_endpoint: Option<String>,
    /// `s3.region`.
    pub s3_region: Option<String>,
    /// `s3.access-key`.
    pub s3_access_key: Option<String>,
    /// `s3.secret-key`. A secret.
    pub s3_secret_key: Option<String>,
    /// `s3.path.style.access`.
    pub s3_path_style_access: bool,
}

impl Config {
    /// The built-in defaults of [`KEYS`](crate::KEYS) (a test keeps the two equal).
    #[must_use]
    pub fn defaults() -> Config {
        let duration =
            |secs: u64, text: &str| ConfDuration { duration: Duration::from_secs(secs), text: text.to_owned() };
        Config {
            ha_type: HaType::None,
            zk_quorum: None,
            zk_path_root: "/keel".to_owned(),
            cluster_id: "/default".to_owned(),
            storage_dir: None,
            zk_session_timeout: duration(60, "60 s"),
            zk_connection_timeout: duration(15, "15 s"),
            zk_retry_wait: duration(5, "5 s"),
            zk_tolerate_suspended_connections: false,
            ha_fast_failover: true,
            zk_sasl_disable: false,
            zk_sasl_username: None,
            zk_sasl_password: None,
            zk_acl: ZkAcl::Open,
            zk_client_secure: false,
            zk_ssl_truststore: None,
            zk_ssl_keystore: None,
            zk_sasl_service_name: "zookeeper".to_owned(),
            zk_sasl_login_context: "Client".to_owned(),
            kerberos_keytab: None,
            kerberos_principal: None,
            kerberos_contexts: Vec::new(),
            rest_address: "127.0.0.1".to_owned(),
            rest_port: 8081,
            rpc_address: "127.0.0.1".to_owned(),
            rpc_port: 0,
            jobmanager_rpc_address: "127.0.0.1".to_owned(),
            jobmanager_rpc_port: 6123,
            taskmanager_slots: 1,
            taskmanager_resource_id: None,
            rpc_advertised_address: None,
            heartbeat_interval: duration(10, "10 s"),
            heartbeat_timeout: duration(50, "50 s"),
            recovery_worker_wait: duration(10, "10 s"),
            adoption_timeout: duration(30, "30 s"),
            application_attempts: 2,
            rest_auth_token: None,
            rest_admin_enabled: false,
            rest_auth_read: false,
            metrics_prom_port: (9249, 9260),
            internal_secret: None,
            ssl_internal_enabled: false,
            ssl_internal_key: None,
            ssl_internal_cert: None,
            ssl_internal_truststore: None,
            ssl_rest_enabled: false,
            ssl_rest_key: None,
            ssl_rest_cert: None,
            ssl_rest_truststore: None,
            state_backend: StateBackendKind::Hashmap,
            rocksdb_localdir: None,
            state_incremental: false,
            state_local_recovery: false,
            checkpoints_dir: None,
            checkpoints_num_retained: 1,
            checkpoint_timeout: duration(10 * 60, "10 min"),
            checkpoint_interval: duration(10, "10 s"),
            savepoints_dir: None,
            parallelism_default: 1,
            restart_strategy: RestartStrategyType::FixedDelay,
            restart_attempts: 3,
            restart_delay: duration(1, "1 s"),
            rest_bind_address: None,
            rest_bind_port: None,
            jobmanager_bind_host: None,
            taskmanager_host: None,
            io_tmp_dirs: vec![system_temp_dir()],
            s3_endpoint: None,
            s3_region: None,
            s3_access_key: None,
            s3_secret_key: None,
            s3_path_style_access: false,
        }
    }

    /// Whether ZooKeeper logs in with Kerberos: SASL not disabled, a keytab set, and
    /// `security.kerberos.login.contexts` lists `zookeeper.sasl.login-context-name` (Flink's rule).
    #[must_use]
    pub fn zk_kerberos(&self) -> bool {
        !self.zk_sasl_disable
            && self.kerberos_keytab.is_some()
            && self.kerberos_contexts.contains(&self.zk_sasl_login_context)
    }

    /// The znode of this cluster: `zk_path_root` + `cluster_id`, for example `/keel/default`.
    #[must_use]
    pub fn ha_root(&self) -> String {
        format!("{}{}", self.zk_path_root, self.cluster_id)
    }

    /// The local working directory of RocksDB: `state.backend.rocksdb.localdir`, else
    /// `<first io.tmp.dirs entry>/keel-rocksdb`.
    #[must_use]
    pub fn effective_rocksdb_localdir(&self) -> PathBuf {
        match &self.rocksdb_localdir {
            Some(dir) => PathBuf::from(dir),
            None => {
                let tmp = self.io_tmp_dirs.first().cloned().unwrap_or_else(system_temp_dir);
                Path::new(&tmp).join("keel-rocksdb")
            }
        }
    }

    /// The HA storage directory: `high-availability.storageDir`, else, with
    /// `high-availability.type: none`, `file://<first io.tmp.dirs entry>/keel-ha<cluster-id>`
    /// (a single dispatcher keeps its jobs there); `None` with ZooKeeper and no storageDir.
    #[must_use]
    pub fn effective_storage_dir(&self) -> Option<String> {
        self.storage_dir.clone().or_else(|| {
            (self.ha_type == HaType::None).then(|| format!("file://{}", self.default_local_ha_dir().display()))
        })
    }

    fn default_local_ha_dir(&self) -> PathBuf {
        let tmp = self.io_tmp_dirs.first().cloned().unwrap_or_else(system_temp_dir);
        Path::new(&tmp).join(format!("keel-ha{}", self.cluster_id))
    }

    /// With `high-availability.type: none`, where the only dispatcher keeps its pointer tree
    /// (job graphs, checkpoints, results; `pointers.bin`): `<storageDir>/pointers` when the
    /// storage directory is local (`file://`), else `<first io.tmp.dirs entry>/keel-ha<cluster-id>/pointers`.
    #[must_use]
    pub fn local_pointers_dir(&self) -> PathBuf {
        match self.effective_storage_dir().as_deref().and_then(|d| d.strip_prefix("file://")) {
            Some(path) => Path::new(path).join("pointers"),
            None => self.default_local_ha_dir().join("pointers"),
        }
    }

    /// Where checkpoint data goes: `state.checkpoints.dir`, else
    /// `<effective storage dir>/checkpoints` ([`Config::effective_storage_dir`]); `None` when
    /// neither exists.
    #[must_use]
    pub fn effective_checkpoints_dir(&self) -> Option<String> {
        self.checkpoints_dir
            .clone()
            .or_else(|| self.effective_storage_dir().map(|dir| format!("{}/checkpoints", dir.trim_end_matches('/'))))
    }

    /// The effective value of a known `key` as text (empty when unset); `None` for an
    /// unknown key. A secret that is set (`s3.secret-key`, `rest.auth.token`) is `******`:
    /// read it from its field.
    #[must_use]
    pub fn value_of(&self, key: &str) -> Option<String> {
        Field::of(key).map(|field| {
            let value = field.get(self);
            if field.secret() && !value.is_empty() {
                MASK.to_owned()
            } else {
                value
            }
        })
    }
}

/// Like the derived `Debug`, with secrets shown as `******`.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured so that a new field cannot be left out.
        let Config {
            ha_type,
            zk_quorum,
            zk_path_root,
            cluster_id,
            storage_dir,
            zk_session_timeout,
            zk_connection_timeout,
            zk_retry_wait,
            zk_tolerate_suspended_connections,
            ha_fast_failover,
            zk_sasl_disable,
            zk_sasl_username,
            zk_sasl_password,
            zk_acl,
            zk_client_secure,
            zk_ssl_truststore,
            zk_ssl_keystore,
            zk_sasl_service_name,
            zk_sasl_login_context,
            kerberos_keytab,
            kerberos_principal,
            kerberos_contexts,
            rest_address,
            rest_port,
            rpc_address,
            rpc_port,
            jobmanager_rpc_address,
            jobmanager_rpc_port,
            taskmanager_slots,
            taskmanager_resource_id,
            rpc_advertised_address,
            heartbeat_interval,
            heartbeat_timeout,
            recovery_worker_wait,
            adoption_timeout,
            application_attempts,
            rest_auth_token,
            rest_admin_enabled,
            rest_auth_read,
            metrics_prom_port,
            internal_secret,
            ssl_internal_enabled,
            ssl_internal_key,
            ssl_internal_cert,
            ssl_internal_truststore,
            ssl_rest_enabled,
            ssl_rest_key,
            ssl_rest_cert,
            ssl_rest_truststore,
            state_backend,
            rocksdb_localdir,
            state_incremental,
            state_local_recovery,
            checkpoints_dir,
            checkpoints_num_retained,
            checkpoint_timeout,
            checkpoint_interval,
            savepoints_dir,
            parallelism_default,
            restart_strategy,
            restart_attempts,
            restart_delay,
            rest_bind_address,
            rest_bind_port,
            jobmanager_bind_host,
            taskmanager_host,
            io_tmp_dirs,
            s3_endpoint,
            s3_region,
            s3_access_key,
            s3_secret_key,
            s3_path_style_access,
        } = self;
        let masked = |secret: &Option<String>| secret.as_ref().map(|_| MASK);
        f.debug_struct("Config")
            .field("ha_type", ha_type)
            .field("zk_quorum", zk_quorum)
            .field("zk_path_root", zk_path_root)
            .field("cluster_id", cluster_id)
            .field("storage_dir", storage_dir)
            .field("zk_session_timeout", zk_session_timeout)
            .field("zk_connection_timeout", zk_connection_timeout)
            .field("zk_retry_wait", zk_retry_wait)
            .field("zk_tolerate_suspended_connections", zk_tolerate_suspended_connections)
            .field("ha_fast_failover", ha_fast_failover)
            .field("zk_sasl_disable", zk_sasl_disable)
            .field("zk_sasl_username", zk_sasl_username)
            .field("zk_sasl_password", &masked(zk_sasl_password))
            .field("zk_acl", zk_acl)
            .field("zk_client_secure", zk_client_secure)
            .field("zk_ssl_truststore", zk_ssl_truststore)
            .field("zk_ssl_keystore", zk_ssl_keystore)
            .field("zk_sasl_service_name", zk_sasl_service_name)
            .field("zk_sasl_login_context", zk_sasl_login_context)
            .field("kerberos_keytab", kerberos_keytab)
            .field("kerberos_principal", kerberos_principal)
            .field("kerberos_contexts", kerberos_contexts)
            .field("rest_address", rest_address)
            .field("rest_port", rest_port)
            .field("rpc_address", rpc_address)
            .field("rpc_port", rpc_port)
            .field("jobmanager_rpc_address", jobmanager_rpc_address)
            .field("jobmanager_rpc_port", jobmanager_rpc_port)
            .field("taskmanager_slots", taskmanager_slots)
            .field("taskmanager_resource_id", taskmanager_resource_id)
            .field("rpc_advertised_address", rpc_advertised_address)
            .field("heartbeat_interval", heartbeat_interval)
            .field("heartbeat_timeout", heartbeat_timeout)
            .field("recovery_worker_wait", recovery_worker_wait)
            .field("adoption_timeout", adoption_timeout)
            .field("application_attempts", application_attempts)
            .field("rest_auth_token", &masked(rest_auth_token))
            .field("rest_admin_enabled", rest_admin_enabled)
            .field("rest_auth_read", rest_auth_read)
            .field("metrics_prom_port", metrics_prom_port)
            .field("internal_secret", &masked(internal_secret))
            .field("ssl_internal_enabled", ssl_internal_enabled)
            .field("ssl_internal_key", ssl_internal_key)
            .field("ssl_internal_cert", ssl_internal_cert)
            .field("ssl_internal_truststore", ssl_internal_truststore)
            .field("ssl_rest_enabled", ssl_rest_enabled)
            .field("ssl_rest_key", ssl_rest_key)
            .field("ssl_rest_cert", ssl_rest_cert)
            .field("ssl_rest_truststore", ssl_rest_truststore)
            .field("state_backend", state_backend)
            .field("rocksdb_localdir", rocksdb_localdir)
            .field("state_incremental", state_incremental)
            .field("state_local_recovery", state_local_recovery)
            .field("checkpoints_dir", checkpoints_dir)
            .field("checkpoints_num_retained", checkpoints_num_retained)
            .field("checkpoint_timeout", checkpoint_timeout)
            .field("checkpoint_interval", checkpoint_interval)
            .field("savepoints_dir", savepoints_dir)
            .field("parallelism_default", parallelism_default)
            .field("restart_strategy", restart_strategy)
            .field("restart_attempts", restart_attempts)
            .field("restart_delay", restart_delay)
            .field("rest_bind_address", rest_bind_address)
            .field("rest_bind_port", rest_bind_port)
            .field("jobmanager_bind_host", jobmanager_bind_host)
            .field("taskmanager_host", taskmanager_host)
            .field("io_tmp_dirs", io_tmp_dirs)
            .field("s3_endpoint", s3_endpoint)
            .field("s3_region", s3_region)
            .field("s3_access_key", s3_access_key)
            .field("s3_secret_key", &masked(s3_secret_key))
            .field("s3_path_style_access", s3_path_style_access)
            .finish()
    }
}

/// Why a value was refused: the problem and what the key accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub problem: String,
    pub expected: &'static str,
}

/// One field of [`Config`], named by its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    HaType,
    ZkQuorum,
    ZkPathRoot,
    ClusterId,
    StorageDir,
    ZkSessionTimeout,
    ZkConnectionTimeout,
    ZkRetryWait,
    ZkTolerateSuspended,
    HaFastFailover,
    ZkSaslDisable,
    ZkSaslUsername,
    ZkSaslPassword,
    ZkAcl,
    ZkClientSecure,
    ZkSslTruststore,
    ZkSslKeystore,
    ZkSaslServiceName,
    ZkSaslLoginContext,
    KerberosKeytab,
    KerberosPrincipal,
    KerberosContexts,
    RestAddress,
    RestPort,
    RpcAddress,
    RpcPort,
    JobmanagerRpcAddress,
    JobmanagerRpcPort,
    TaskmanagerSlots,
    TaskmanagerResourceId,
    RpcAdvertisedAddress,
    HeartbeatInterval,
    HeartbeatTimeout,
    RecoveryWorkerWait,
    AdoptionTimeout,
    ApplicationAttempts,
    RestAuthToken,
    RestAdminEnabled,
    RestAuthRead,
    MetricsPromPort,
    InternalSecret,
    SslInternalEnabled,
    SslInternalKey,
    SslInternalCert,
    SslInternalTruststore,
    SslRestEnabled,
    SslRestKey,
    SslRestCert,
    SslRestTruststore,
    StateBackend,
    RocksdbLocaldir,
    StateIncremental,
    StateLocalRecovery,
    CheckpointsDir,
    CheckpointsNumRetained,
    CheckpointTimeout,
    CheckpointInterval,
    SavepointsDir,
    ParallelismDefault,
    RestartStrategy,
    RestartAttempts,
    RestartDelay,
    RestBindAddress,
    RestBindPort,
    JobmanagerBindHost,
    TaskmanagerHost,
    IoTmpDirs,
    S3Endpoint,
    S3Region,
    S3AccessKey,
    S3SecretKey,
    S3PathStyleAccess,
}

const QUORUM_EXPECTED: &str = "a comma-separated list of host:port, for example zk1:2181,zk2:2181,zk3:2181";
const PORT_EXPECTED: &str = "an integer from 0 to 65535";
const ADDRESS_EXPECTED: &str = "a host name or IP address";
const URI_EXPECTED: &str = "a URI with scheme file://, s3://, hdfs:// or swift://, or an absolute path";
const BOOLEAN_EXPECTED: &str = "true or false";
const AT_LEAST_ONE_EXPECTED: &str = "an integer of at least 1";
/// Separates `io.tmp.dirs` entries besides `,`, like Java's `File.pathSeparator`.
const PATH_LIST_SEPARATOR: char = if cfg!(windows) { ';' } else { ':' };
/// ZooKeeper carries the session timeout as a signed 32-bit number of milliseconds.
const MAX_SESSION_TIMEOUT_MS: u128 = i32::MAX as u128;

impl Field {
    /// The field a known key sets.
    pub(crate) fn of(key: &str) -> Option<Field> {
        Some(match key {
            "high-availability.type" => Field::HaType,
            "high-availability.zookeeper.quorum" => Field::ZkQuorum,
            "high-availability.zookeeper.path.root" => Field::ZkPathRoot,
            "high-availability.cluster-id" => Field::ClusterId,
            "high-availability.storageDir" => Field::StorageDir,
            "high-availability.zookeeper.client.session-timeout" => Field::ZkSessionTimeout,
            "high-availability.zookeeper.client.connection-timeout" => Field::ZkConnectionTimeout,
            "high-availability.zookeeper.client.retry-wait" => Field::ZkRetryWait,
            "high-availability.zookeeper.client.tolerate-suspended-connections" => Field::ZkTolerateSuspended,
            "high-availability.fast-failover.enabled" => Field::HaFastFailover,
            "zookeeper.sasl.disable" => Field::ZkSaslDisable,
            "high-availability.zookeeper.client.sasl.username" => Field::ZkSaslUsername,
            "high-availability.zookeeper.client.sasl.password" => Field::ZkSaslPassword,
            "high-availability.zookeeper.client.acl" => Field::ZkAcl,
            "zookeeper.client.secure" => Field::ZkClientSecure,
            "zookeeper.ssl.trustStore.location" => Field::ZkSslTruststore,
            "zookeeper.ssl.keyStore.location" => Field::ZkSslKeystore,
            "zookeeper.sasl.service-name" => Field::ZkSaslServiceName,
            "zookeeper.sasl.login-context-name" => Field::ZkSaslLoginContext,
            "security.kerberos.login.keytab" => Field::KerberosKeytab,
            "security.kerberos.login.principal" => Field::KerberosPrincipal,
            "security.kerberos.login.contexts" => Field::KerberosContexts,
            "rest.address" => Field::RestAddress,
            "rest.port" => Field::RestPort,
            "rpc.address" => Field::RpcAddress,
            "rpc.port" => Field::RpcPort,
            "jobmanager.rpc.address" => Field::JobmanagerRpcAddress,
            "jobmanager.rpc.port" => Field::JobmanagerRpcPort,
            "taskmanager.numberOfTaskSlots" => Field::TaskmanagerSlots,
            "taskmanager.resource-id" => Field::TaskmanagerResourceId,
            "rpc.advertised-address" => Field::RpcAdvertisedAddress,
            "heartbeat.interval" => Field::HeartbeatInterval,
            "heartbeat.timeout" => Field::HeartbeatTimeout,
            "high-availability.recovery.worker-wait" => Field::RecoveryWorkerWait,
            "high-availability.adoption.timeout" => Field::AdoptionTimeout,
            "application-attempts" => Field::ApplicationAttempts,
            "rest.auth.token" => Field::RestAuthToken,
            "rest.admin.enabled" => Field::RestAdminEnabled,
            "rest.auth.read" => Field::RestAuthRead,
            "metrics.reporter.prom.port" => Field::MetricsPromPort,
            "security.internal.secret" => Field::InternalSecret,
            "security.ssl.internal.enabled" => Field::SslInternalEnabled,
            "security.ssl.internal.key" => Field::SslInternalKey,
            "security.ssl.internal.cert" => Field::SslInternalCert,
            "security.ssl.internal.truststore" => Field::SslInternalTruststore,
            "security.ssl.rest.enabled" => Field::SslRestEnabled,
            "security.ssl.rest.key" => Field::SslRestKey,
            "security.ssl.rest.cert" => Field::SslRestCert,
            "security.ssl.rest.truststore" => Field::SslRestTruststore,
            "state.backend" => Field::StateBackend,
            "state.backend.rocksdb.localdir" => Field::RocksdbLocaldir,
            "state.backend.incremental" => Field::StateIncremental,
            "state.backend.local-recovery" => Field::StateLocalRecovery,
            "state.checkpoints.dir" => Field::CheckpointsDir,
            "state.checkpoints.num-retained" => Field::CheckpointsNumRetained,
            "execution.checkpointing.timeout" => Field::CheckpointTimeout,
            "execution.checkpointing.interval" => Field::CheckpointInterval,
            "state.savepoints.dir" => Field::SavepointsDir,
            "parallelism.default" => Field::ParallelismDefault,
            "restart-strategy.type" => Field::RestartStrategy,
            "restart-strategy.fixed-delay.attempts" => Field::RestartAttempts,
            "restart-strategy.fixed-delay.delay" => Field::RestartDelay,
            "rest.bind-address" => Field::RestBindAddress,
            "rest.bind-port" => Field::RestBindPort,
            "jobmanager.bind-host" => Field::JobmanagerBindHost,
            "taskmanager.host" => Field::TaskmanagerHost,
            "io.tmp.dirs" => Field::IoTmpDirs,
            "s3.endpoint" => Field::S3Endpoint,
            "s3.region" => Field::S3Region,
            "s3.access-key" => Field::S3AccessKey,
            "s3.secret-key" => Field::S3SecretKey,
            "s3.path.style.access" => Field::S3PathStyleAccess,
            _ => return None,
        })
    }

    /// What the key accepts, for messages.
    pub(crate) fn expected(self) -> &'static str {
        match self {
            Field::HaType => "one of none, zookeeper",
            Field::ZkQuorum => QUORUM_EXPECTED,
            Field::ZkPathRoot => {
                "a ZooKeeper path such as /keel: starting with '/', without a trailing '/' \
                 or empty segments"
            }
            Field::ClusterId => "a ZooKeeper path such as /default or default, without empty segments",
            Field::StorageDir | Field::CheckpointsDir | Field::SavepointsDir => URI_EXPECTED,
            Field::CheckpointInterval => "a duration of at least 10 ms, for example 10 s or 500 ms",
            Field::RestartDelay => DURATION_FORMS,
            Field::ParallelismDefault => "an integer from 1 to 1024",
            Field::RestartStrategy => "one of none, fixed-delay (Flink's off, disable, no-restart and fixeddelay too)",
            Field::RestartAttempts => "an integer of at least 0",
            Field::RestBindAddress | Field::JobmanagerBindHost | Field::TaskmanagerHost => ADDRESS_EXPECTED,
            Field::RestBindPort => "a port (0 to 65535) or a range FIRST-LAST, for example 8081-8090",
            Field::ZkSessionTimeout
            | Field::ZkConnectionTimeout
            | Field::ZkRetryWait
            | Field::HeartbeatInterval
            | Field::HeartbeatTimeout
            | Field::RecoveryWorkerWait
            | Field::AdoptionTimeout
            | Field::CheckpointTimeout => DURATION_FORMS,
            Field::ZkSaslUsername => "a user name without whitespace",
            Field::ZkSaslPassword => "a password without whitespace",
            Field::ZkAcl => "one of open, creator",
            Field::ZkSaslServiceName => "a Kerberos service name without whitespace or '/', for example zookeeper",
            Field::ZkSaslLoginContext => "a JAAS login context name without whitespace, for example Client",
            Field::KerberosKeytab => "an absolute path to a keytab file, for example /etc/keel/keel.keytab",
            Field::KerberosPrincipal => "a Kerberos principal without whitespace, for example keel/host@EXAMPLE.COM",
            Field::KerberosContexts => "comma-separated login context names, for example Client",
            Field::ZkSslTruststore | Field::ZkSslKeystore => {
                "an absolute path to a PEM file, for example /etc/keel/tls/zk-ca.pem"
            }
            Field::ZkTolerateSuspended
            | Field::HaFastFailover
            | Field::ZkSaslDisable
            | Field::ZkClientSecure
            | Field::StateIncremental
            | Field::StateLocalRecovery
            | Field::S3PathStyleAccess
            | Field::RestAdminEnabled
            | Field::RestAuthRead
            | Field::SslInternalEnabled
            | Field::SslRestEnabled => BOOLEAN_EXPECTED,
            Field::RestAddress | Field::RpcAddress | Field::JobmanagerRpcAddress => ADDRESS_EXPECTED,
            Field::RestPort | Field::RpcPort | Field::JobmanagerRpcPort => PORT_EXPECTED,
            Field::TaskmanagerSlots | Field::CheckpointsNumRetained | Field::ApplicationAttempts => {
                AT_LEAST_ONE_EXPECTED
            }
            Field::TaskmanagerResourceId => "an identifier without whitespace",
            Field::RpcAdvertisedAddress => "host:port, for example proxy.example:7001",
            Field::RestAuthToken => "a token without whitespace",
            Field::MetricsPromPort => "a port (0 = any free port) or a range FIRST-LAST, for example 9249-9260",
            Field::InternalSecret => "a secret of printable ASCII characters without whitespace",
            Field::SslInternalKey
            | Field::SslInternalCert
            | Field::SslInternalTruststore
            | Field::SslRestKey
            | Field::SslRestCert
            | Field::SslRestTruststore => "an absolute path to a PEM file, for example /etc/keel/tls/internal.pem",
            Field::StateBackend => "one of hashmap, rocksdb (or Flink's legacy filesystem, jobmanager for hashmap)",
            Field::RocksdbLocaldir => "one absolute directory path, for example /var/lib/keel/rocksdb",
            Field::IoTmpDirs => {
                "absolute directory paths separated by ',' or ':', for example /tmp or \
                 /data1/tmp,/data2/tmp"
            }
            Field::S3Endpoint => "an http:// or https:// URL, for example http://minio:9000",
            Field::S3Region => "a region name without whitespace, for example us-east-1",
            Field::S3AccessKey => "an access key id without whitespace",
            Field::S3SecretKey => "a secret key without whitespace",
        }
    }

    /// Whether the key may be unset (has no default).
    pub(crate) fn optional(self) -> bool {
        matches!(
            self,
            Field::ZkQuorum
                | Field::ZkSaslUsername
                | Field::ZkSaslPassword
                | Field::ZkSslTruststore
                | Field::ZkSslKeystore
                | Field::KerberosKeytab
                | Field::KerberosPrincipal
                | Field::KerberosContexts
                | Field::StorageDir
                | Field::TaskmanagerResourceId
                | Field::RpcAdvertisedAddress
                | Field::RestAuthToken
                | Field::InternalSecret
                | Field::SslInternalKey
                | Field::SslInternalCert
                | Field::SslInternalTruststore
                | Field::SslRestKey
                | Field::SslRestCert
                | Field::SslRestTruststore
                | Field::RocksdbLocaldir
                | Field::CheckpointsDir
                | Field::SavepointsDir
                | Field::RestBindAddress
                | Field::RestBindPort
                | Field::JobmanagerBindHost
                | Field::TaskmanagerHost
                | Field::S3Endpoint
                | Field::S3Region
                | Field::S3AccessKey
                | Field::S3SecretKey
        )
    }

    /// Whether the value is a secret, printed as `******` everywhere.
    pub(crate) fn secret(self) -> bool {
        matches!(self, Field::S3SecretKey | Field::RestAuthToken | Field::InternalSecret | Field::ZkSaslPassword)
    }

    /// Parses `text` into the field of `config`; `None` unsets an optional field.
    pub(crate) fn set(self, config: &mut Config, text: Option<&str>) -> Result<(), Invalid> {
        let invalid = |problem: &str| Invalid { problem: problem.to_owned(), expected: self.expected() };
        let text = match text.map(str::trim) {
            Some(text) if !text.is_empty() => text,
            _ if self.optional() => {
                match self {
                    Field::ZkQuorum => config.zk_quorum = None,
                    Field::ZkSaslUsername => config.zk_sasl_username = None,
                    Field::ZkSaslPassword => config.zk_sasl_password = None,
                    Field::ZkSslTruststore => config.zk_ssl_truststore = None,
                    Field::ZkSslKeystore => config.zk_ssl_keystore = None,
                    Field::KerberosKeytab => config.kerberos_keytab = None,
                    Field::KerberosPrincipal => config.kerberos_principal = None,
                    Field::KerberosContexts => config.kerberos_contexts = Vec::new(),
                    Field::StorageDir => config.storage_dir = None,
                    Field::RestAuthToken => config.rest_auth_token = None,
                    Field::InternalSecret => config.internal_secret = None,
                    Field::SslInternalKey => config.ssl_internal_key = None,
                    Field::SslInternalCert => config.ssl_internal_cert = None,
                    Field::SslInternalTruststore => config.ssl_internal_truststore = None,
                    Field::SslRestKey => config.ssl_rest_key = None,
                    Field::SslRestCert => config.ssl_rest_cert = None,
                    Field::SslRestTruststore => config.ssl_rest_truststore = None,
                    Field::RocksdbLocaldir => config.rocksdb_localdir = None,
                    Field::CheckpointsDir => config.checkpoints_dir = None,
                    Field::SavepointsDir => config.savepoints_dir = None,
                    Field::RestBindAddress => config.rest_bind_address = None,
                    Field::RestBindPort => config.rest_bind_port = None,
                    Field::JobmanagerBindHost => config.jobmanager_bind_host = None,
                    Field::TaskmanagerHost => config.taskmanager_host = None,
                    Field::S3Endpoint => config.s3_endpoint = None,
                    Field::S3Region => config.s3_region = None,
                    Field::S3AccessKey => config.s3_access_key = None,
                    Field::S3SecretKey => config.s3_secret_key = None,
                    Field::RpcAdvertisedAddress => config.rpc_advertised_address = None,
                    _ => config.taskmanager_resource_id = None,
                }
                return Ok(());
            }
            _ => return Err(invalid("empty value")),
        };
        match self {
            Field::HaType => {
                config.ha_type = match text.to_lowercase().as_str() {
                    "none" => HaType::None,
                    "zookeeper" => HaType::Zookeeper,
                    _ => return Err(invalid("unknown high-availability type")),
                }
            }
            Field::ZkQuorum => config.zk_quorum = Some(quorum(text).map_err(|p| invalid(&p))?),
            Field::ZkPathRoot => config.zk_path_root = path_root(text).map_err(|p| invalid(&p))?,
            Field::ClusterId => config.cluster_id = cluster_id(text).map_err(|p| invalid(&p))?,
            Field::StorageDir => {
                config.storage_dir = Some(storage_dir(text).map_err(|p| invalid(&p))?);
            }
            Field::ZkSessionTimeout => {
                let value = positive_duration(text).map_err(|p| invalid(&p))?;
                if value.duration.as_millis() > MAX_SESSION_TIMEOUT_MS {
                    return Err(invalid("longer than ZooKeeper allows (2147483647 ms, about 24 days)"));
                }
                config.zk_session_timeout = value;
            }
            Field::ZkConnectionTimeout => {
                config.zk_connection_timeout = positive_duration(text).map_err(|p| invalid(&p))?;
            }
            Field::ZkRetryWait => {
                config.zk_retry_wait = positive_duration(text).map_err(|p| invalid(&p))?;
            }
            Field::HeartbeatInterval => {
                config.heartbeat_interval = positive_duration(text).map_err(|p| invalid(&p))?;
            }
            Field::HeartbeatTimeout => {
                config.heartbeat_timeout = positive_duration(text).map_err(|p| invalid(&p))?;
            }
            Field::ZkTolerateSuspended => {
                config.zk_tolerate_suspended_connections = boolean(text).map_err(|p| invalid(&p))?;
            }
            Field::HaFastFailover => config.ha_fast_failover = boolean(text).map_err(|p| invalid(&p))?,
            Field::ZkSaslDisable => config.zk_sasl_disable = boolean(text).map_err(|p| invalid(&p))?,
            Field::ZkSaslUsername => config.zk_sasl_username = Some(no_whitespace(text).map_err(|p| invalid(&p))?),
            Field::ZkSaslPassword => config.zk_sasl_password = Some(no_whitespace(text).map_err(|p| invalid(&p))?),
            Field::ZkAcl => {
                config.zk_acl = match text.to_lowercase().as_str() {
                    "open" => ZkAcl::Open,
                    "creator" => ZkAcl::Creator,
                    _ => return Err(invalid("unknown ACL mode")),
                }
            }
            Field::ZkClientSecure => config.zk_client_secure = boolean(text).map_err(|p| invalid(&p))?,
            Field::ZkSslTruststore => config.zk_ssl_truststore = Some(pem_path(text).map_err(|p| invalid(&p))?),
            Field::ZkSslKeystore => config.zk_ssl_keystore = Some(pem_path(text).map_err(|p| invalid(&p))?),
            Field::ZkSaslServiceName => {
                if text.contains('/') {
                    return Err(invalid("contains '/': give the service name only, not a principal"));
                }
                config.zk_sasl_service_name = no_whitespace(text).map_err(|p| invalid(&p))?;
            }
            Field::ZkSaslLoginContext => config.zk_sasl_login_context = no_whitespace(text).map_err(|p| invalid(&p))?,
            Field::KerberosKeytab => config.kerberos_keytab = Some(pem_path(text).map_err(|p| invalid(&p))?),
            Field::KerberosPrincipal => config.kerberos_principal = Some(no_whitespace(text).map_err(|p| invalid(&p))?),
            Field::KerberosContexts => {
                let mut contexts = Vec::new();
                for context in text.split(',').map(str::trim) {
                    if context.is_empty() || context.chars().any(char::is_whitespace) {
                        return Err(invalid("empty entry or whitespace inside a name"));
                    }
                    contexts.push(context.to_owned());
                }
                config.kerberos_contexts = contexts;
            }
            Field::RestAddress => config.rest_address = address(text).map_err(|p| invalid(&p))?,
            Field::RpcAddress => config.rpc_address = address(text).map_err(|p| invalid(&p))?,
            Field::JobmanagerRpcAddress => {
                config.jobmanager_rpc_address = address(text).map_err(|p| invalid(&p))?;
            }
            Field::RestPort => config.rest_port = port(text).map_err(|p| invalid(&p))?,
            Field::RpcPort => config.rpc_port = port(text).map_err(|p| invalid(&p))?,
            Field::JobmanagerRpcPort => {
                config.jobmanager_rpc_port = port(text).map_err(|p| invalid(&p))?;
            }
            Field::TaskmanagerSlots => {
                let slots: u32 = integer(text).map_err(|p| invalid(&p))?;
                if slots == 0 {
                    return Err(invalid("a worker needs at least one slot"));
                }
                config.taskmanager_slots = slots;
            }
            Field::ApplicationAttempts => {
                let attempts: u32 = integer(text).map_err(|p| invalid(&p))?;
                if attempts == 0 {
                    return Err(invalid("an application needs at least one attempt"));
                }
                config.application_attempts = attempts;
            }
            Field::TaskmanagerResourceId => {
                if text.chars().any(char::is_whitespace) {
                    return Err(invalid("contains whitespace"));
                }
                config.taskmanager_resource_id = Some(text.to_owned());
            }
            Field::RpcAdvertisedAddress => {
                let Some((host, port)) = text.rsplit_once(':') else {
                    return Err(invalid("no port"));
                };
                if host.is_empty() || host.chars().any(char::is_whitespace) {
                    return Err(invalid("bad host"));
                }
                match port.parse::<u16>() {
                    Ok(p) if p > 0 => {}
                    _ => return Err(invalid(&format!("port '{port}' is not a number from 1 to 65535"))),
                }
                config.rpc_advertised_address = Some(text.to_owned());
            }
            Field::RecoveryWorkerWait => {
                let duration = parse_parts(text).map_err(|p| invalid(&p))?;
                config.recovery_worker_wait = ConfDuration { duration, text: text.to_owned() };
            }
            Field::AdoptionTimeout => {
                let duration = parse_parts(text).map_err(|p| invalid(&p))?;
                config.adoption_timeout = ConfDuration { duration, text: text.to_owned() };
            }
            Field::RestAuthToken => config.rest_auth_token = Some(no_whitespace(text).map_err(|p| invalid(&p))?),
            Field::RestAdminEnabled => config.rest_admin_enabled = boolean(text).map_err(|p| invalid(&p))?,
            Field::RestAuthRead => config.rest_auth_read = boolean(text).map_err(|p| invalid(&p))?,
            Field::MetricsPromPort => config.metrics_prom_port = prom_ports(text).map_err(|p| invalid(&p))?,
            Field::InternalSecret => {
                if !text.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(invalid("contains whitespace or characters outside printable ASCII"));
                }
                config.internal_secret = Some(text.to_owned());
            }
            Field::SslInternalEnabled => config.ssl_internal_enabled = boolean(text).map_err(|p| invalid(&p))?,
            Field::SslInternalKey => config.ssl_internal_key = Some(pem_path(text).map_err(|p| invalid(&p))?),
            Field::SslInternalCert => config.ssl_internal_cert = Some(pem_path(text).map_err(|p| invalid(&p))?),
            Field::SslInternalTruststore => {
                config.ssl_internal_truststore = Some(pem_path(text).map_err(|p| invalid(&p))?);
            }
            Field::SslRestEnabled => config.ssl_rest_enabled = boolean(text).map_err(|p| invalid(&p))?,
            Field::SslRestKey => config.ssl_rest_key = Some(pem_path(text).map_err(|p| invalid(&p))?),
            Field::SslRestCert => config.ssl_rest_cert = Some(pem_path(text).map_err(|p| invalid(&p))?),
            Field::SslRestTruststore => config.ssl_rest_truststore = Some(pem_path(text).map_err(|p| invalid(&p))?),
            Field::StateBackend => {
                config.state_backend = match text.to_lowercase().as_str() {
                    "hashmap" | "filesystem" | "jobmanager" => StateBackendKind::Hashmap,
                    "rocksdb" => StateBackendKind::Rocksdb,
                    _ => return Err(invalid("unknown state backend")),
                }
            }
            Field::RocksdbLocaldir => config.rocksdb_localdir = Some(local_dir(text).map_err(|p| invalid(&p))?),
            Field::StateIncremental => config.state_incremental = boolean(text).map_err(|p| invalid(&p))?,
            Field::StateLocalRecovery => config.state_local_recovery = boolean(text).map_err(|p| invalid(&p))?,
            Field::CheckpointsDir => {
                config.checkpoints_dir = Some(storage_dir(text).map_err(|p| invalid(&p))?);
            }
            Field::CheckpointsNumRetained => {
                let retained: u32 = integer(text).map_err(|p| invalid(&p))?;
                if retained == 0 {
                    return Err(invalid("must keep at least one completed checkpoint"));
                }
                config.checkpoints_num_retained = retained;
            }
            Field::CheckpointTimeout => {
                config.checkpoint_timeout = positive_duration(text).map_err(|p| invalid(&p))?;
            }
            Field::CheckpointInterval => {
                let duration = parse_parts(text).map_err(|p| invalid(&p))?;
                if duration < Duration::from_millis(10) {
                    return Err(invalid("shorter than 10 ms"));
                }
                config.checkpoint_interval = ConfDuration { duration, text: text.to_owned() };
            }
            Field::SavepointsDir => config.savepoints_dir = Some(storage_dir(text).map_err(|p| invalid(&p))?),
            Field::ParallelismDefault => {
                config.parallelism_default = match integer::<u32>(text) {
                    Ok(n @ 1..=1024) => n,
                    Ok(0) => return Err(invalid("must be at least 1")),
                    Ok(_) => return Err(invalid("greater than 1024")),
                    Err(p) => return Err(invalid(&p)),
                }
            }
            Field::RestartStrategy => {
                config.restart_strategy = match text.to_lowercase().as_str() {
                    "none" | "off" | "disable" | "no-restart" => RestartStrategyType::None,
                    "fixed-delay" | "fixeddelay" => RestartStrategyType::FixedDelay,
                    "failure-rate" | "failurerate" | "exponential-delay" | "exponentialdelay" => {
                        return Err(invalid("Keel does not implement this Flink restart strategy"))
                    }
                    _ => return Err(invalid("unknown restart strategy")),
                }
            }
            Field::RestartAttempts => config.restart_attempts = integer(text).map_err(|p| invalid(&p))?,
            Field::RestartDelay => {
                let duration = parse_parts(text).map_err(|p| invalid(&p))?;
                config.restart_delay = ConfDuration { duration, text: text.to_owned() };
            }
            Field::RestBindAddress => config.rest_bind_address = Some(address(text).map_err(|p| invalid(&p))?),
            Field::RestBindPort => config.rest_bind_port = Some(port_range(text).map_err(|p| invalid(&p))?),
            Field::JobmanagerBindHost => config.jobmanager_bind_host = Some(address(text).map_err(|p| invalid(&p))?),
            Field::TaskmanagerHost => config.taskmanager_host = Some(address(text).map_err(|p| invalid(&p))?),
            Field::IoTmpDirs => config.io_tmp_dirs = tmp_dirs(text).map_err(|p| invalid(&p))?,
            Field::S3Endpoint => config.s3_endpoint = Some(http_url(text).map_err(|p| invalid(&p))?),
            Field::S3Region => config.s3_region = Some(no_whitespace(text).map_err(|p| invalid(&p))?),
            Field::S3AccessKey => config.s3_access_key = Some(no_whitespace(text).map_err(|p| invalid(&p))?),
            Field::S3SecretKey => config.s3_secret_key = Some(no_whitespace(text).map_err(|p| invalid(&p))?),
            Field::S3PathStyleAccess => config.s3_path_style_access = boolean(text).map_err(|p| invalid(&p))?,
        }
        Ok(())
    }

    /// The field's value as text (normalised), empty when unset.
    pub(crate) fn get(self, config: &Config) -> String {
        match self {
            Field::HaType => config.ha_type.as_str().to_owned(),
            Field::ZkQuorum => config.zk_quorum.clone().unwrap_or_default(),
            Field::ZkPathRoot => config.zk_path_root.clone(),
            Field::ClusterId => config.cluster_id.clone(),
            Field::StorageDir => config.storage_dir.clone().unwrap_or_default(),
            Field::ZkSessionTimeout => config.zk_session_timeout.text.clone(),
            Field::ZkConnectionTimeout => config.zk_connection_timeout.text.clone(),
            Field::ZkRetryWait => config.zk_retry_wait.text.clone(),
            Field::ZkTolerateSuspended => config.zk_tolerate_suspended_connections.to_string(),
            Field::HaFastFailover => config.ha_fast_failover.to_string(),
            Field::ZkSaslDisable => config.zk_sasl_disable.to_string(),
            Field::ZkSaslUsername => config.zk_sasl_username.clone().unwrap_or_default(),
            Field::ZkSaslPassword => config.zk_sasl_password.clone().unwrap_or_default(),
            Field::ZkAcl => config.zk_acl.as_str().to_owned(),
            Field::ZkClientSecure => config.zk_client_secure.to_string(),
            Field::ZkSslTruststore => config.zk_ssl_truststore.clone().unwrap_or_default(),
            Field::ZkSslKeystore => config.zk_ssl_keystore.clone().unwrap_or_default(),
            Field::ZkSaslServiceName => config.zk_sasl_service_name.clone(),
            Field::ZkSaslLoginContext => config.zk_sasl_login_context.clone(),
            Field::KerberosKeytab => config.kerberos_keytab.clone().unwrap_or_default(),
            Field::KerberosPrincipal => config.kerberos_principal.clone().unwrap_or_default(),
            Field::KerberosContexts => config.kerberos_contexts.join(","),
            Field::RestAddress => config.rest_address.clone(),
            Field::RestPort => config.rest_port.to_string(),
            Field::RpcAddress => config.rpc_address.clone(),
            Field::RpcPort => config.rpc_port.to_string(),
            Field::JobmanagerRpcAddress => config.jobmanager_rpc_address.clone(),
            Field::JobmanagerRpcPort => config.jobmanager_rpc_port.to_string(),
            Field::TaskmanagerSlots => config.taskmanager_slots.to_string(),
            Field::TaskmanagerResourceId => config.taskmanager_resource_id.clone().unwrap_or_default(),
            Field::RpcAdvertisedAddress => config.rpc_advertised_address.clone().unwrap_or_default(),
            Field::HeartbeatInterval => config.heartbeat_interval.text.clone(),
            Field::HeartbeatTimeout => config.heartbeat_timeout.text.clone(),
            Field::RecoveryWorkerWait => config.recovery_worker_wait.text.clone(),
            Field::AdoptionTimeout => config.adoption_timeout.text.clone(),
            Field::ApplicationAttempts => config.application_attempts.to_string(),
            Field::RestAuthToken => config.rest_auth_token.clone().unwrap_or_default(),
            Field::RestAdminEnabled => config.rest_admin_enabled.to_string(),
            Field::RestAuthRead => config.rest_auth_read.to_string(),
            Field::MetricsPromPort => match config.metrics_prom_port {
                (first, last) if first == last => first.to_string(),
                (first, last) => format!("{first}-{last}"),
            },
            Field::InternalSecret => config.internal_secret.clone().unwrap_or_default(),
            Field::SslInternalEnabled => config.ssl_internal_enabled.to_string(),
            Field::SslInternalKey => config.ssl_internal_key.clone().unwrap_or_default(),
            Field::SslInternalCert => config.ssl_internal_cert.clone().unwrap_or_default(),
            Field::SslInternalTruststore => config.ssl_internal_truststore.clone().unwrap_or_default(),
            Field::SslRestEnabled => config.ssl_rest_enabled.to_string(),
            Field::SslRestKey => config.ssl_rest_key.clone().unwrap_or_default(),
            Field::SslRestCert => config.ssl_rest_cert.clone().unwrap_or_default(),
            Field::SslRestTruststore => config.ssl_rest_truststore.clone().unwrap_or_default(),
            Field::StateBackend => config.state_backend.as_str().to_owned(),
            Field::RocksdbLocaldir => config.rocksdb_localdir.clone().unwrap_or_default(),
            Field::StateIncremental => config.state_incremental.to_string(),
            Field::StateLocalRecovery => config.state_local_recovery.to_string(),
            Field::CheckpointsDir => config.checkpoints_dir.clone().unwrap_or_default(),
            Field::CheckpointsNumRetained => config.checkpoints_num_retained.to_string(),
            Field::CheckpointTimeout => config.checkpoint_timeout.text.clone(),
            Field::CheckpointInterval => config.checkpoint_interval.text.clone(),
            Field::SavepointsDir => config.savepoints_dir.clone().unwrap_or_default(),
            Field::ParallelismDefault => config.parallelism_default.to_string(),
            Field::RestartStrategy => config.restart_strategy.as_str().to_owned(),
            Field::RestartAttempts => config.restart_attempts.to_string(),
            Field::RestartDelay => config.restart_delay.text.clone(),
            Field::RestBindAddress => config.rest_bind_address.clone().unwrap_or_default(),
            Field::RestBindPort => match config.rest_bind_port {
                None => String::new(),
                Some((first, last)) if first == last => first.to_string(),
                Some((first, last)) => format!("{first}-{last}"),
            },
            Field::JobmanagerBindHost => config.jobmanager_bind_host.clone().unwrap_or_default(),
            Field::TaskmanagerHost => config.taskmanager_host.clone().unwrap_or_default(),
            Field::IoTmpDirs => config.io_tmp_dirs.join(","),
            Field::S3Endpoint => config.s3_endpoint.clone().unwrap_or_default(),
            Field::S3Region => config.s3_region.clone().unwrap_or_default(),
            Field::S3AccessKey => config.s3_access_key.clone().unwrap_or_default(),
            Field::S3SecretKey => config.s3_secret_key.clone().unwrap_or_default(),
            Field::S3PathStyleAccess => config.s3_path_style_access.to_string(),
        }
    }
}

fn positive_duration(text: &str) -> Result<ConfDuration, String> {
    let duration = parse_parts(text)?;
    if duration.is_zero() {
        return Err("must be greater than 0".to_owned());
    }
    Ok(ConfDuration { duration, text: text.to_owned() })
}

/// A non-negative decimal integer that fits `T`.
fn integer<T: TryFrom<u64>>(text: &str) -> Result<T, String> {
    if text.starts_with('-') && text.len() > 1 && text[1..].bytes().all(|b| b.is_ascii_digit()) {
        return Err("negative".to_owned());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not an integer".to_owned());
    }
    text.parse::<u64>().ok().and_then(|n| T::try_from(n).ok()).ok_or_else(|| "out of range".to_owned())
}

fn port(text: &str) -> Result<u16, String> {
    integer(text)
}

/// A port, or a range `FIRST-LAST` of ports (`rest.bind-port`), as `(first, last)`.
fn port_range(text: &str) -> Result<(u16, u16), String> {
    let (first, last) = match text.split_once('-') {
        Some((first, last)) => (first.trim(), last.trim()),
        None => (text, text),
    };
    let first: u16 = integer(first).map_err(|p| format!("first port: {p}"))?;
    let last: u16 = integer(last).map_err(|p| format!("last port: {p}"))?;
    if first > last {
        return Err(format!("the range {first}-{last} is empty (first port greater than last)"));
    }
    if first == 0 && last != 0 {
        return Err("a range cannot start at 0".to_owned());
    }
    Ok((first, last))
}

/// `metrics.reporter.prom.port`: a port (`0`: any free port) or a range `FIRST-LAST`.
fn prom_ports(text: &str) -> Result<(u16, u16), String> {
    let (first, last) = text.split_once('-').map_or((text, text), |(a, b)| (a.trim(), b.trim()));
    let first: u16 = integer(first).map_err(|p| format!("first port: {p}"))?;
    let last: u16 = integer(last).map_err(|p| format!("last port: {p}"))?;
    if first > last {
        return Err(format!("the range {first}-{last} is empty (first port greater than last)"));
    }
    if first == 0 && last != 0 {
        return Err("a range cannot start at 0".to_owned());
    }
    Ok((first, last))
}

fn boolean(text: &str) -> Result<bool, String> {
    match text.to_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("not a boolean".to_owned()),
    }
}

/// A PEM file path: absolute (processes may start from any directory).
fn pem_path(text: &str) -> Result<String, String> {
    if !Path::new(text).is_absolute() {
        return Err("not an absolute path".to_owned());
    }
    Ok(text.to_owned())
}

/// A name, key or token: any text without whitespace.
fn no_whitespace(text: &str) -> Result<String, String> {
    if text.chars().any(char::is_whitespace) {
        return Err("contains whitespace".to_owned());
    }
    Ok(text.to_owned())
}

/// One absolute directory (`state.backend.rocksdb.localdir`).
fn local_dir(text: &str) -> Result<String, String> {
    if text.contains(',') {
        return Err("a list of directories is not supported; give one directory".to_owned());
    }
    if !Path::new(text).is_absolute() {
        return Err("not an absolute path".to_owned());
    }
    Ok(text.to_owned())
}

/// Absolute directories separated by `,` or [`PATH_LIST_SEPARATOR`] (`io.tmp.dirs`).
fn tmp_dirs(text: &str) -> Result<Vec<String>, String> {
    let mut dirs = Vec::new();
    for entry in text.split([',', PATH_LIST_SEPARATOR]).map(str::trim) {
        if entry.is_empty() {
            return Err("empty entry (two separators in a row, or a leading or trailing one)".to_owned());
        }
        if !Path::new(entry).is_absolute() {
            return Err(format!("entry '{entry}' is not an absolute path"));
        }
        dirs.push(entry.to_owned());
    }
    Ok(dirs)
}

/// An `http://` or `https://` URL with a host and an optional port (`s3.endpoint`).
fn http_url(text: &str) -> Result<String, String> {
    if text.chars().any(char::is_whitespace) {
        return Err("contains whitespace".to_owned());
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err("not a URL (no scheme://)".to_owned());
    };
    let scheme = scheme.to_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") {
        return Err(format!("unsupported scheme '{scheme}://'"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !authority.ends_with(']') => (host, Some(port)),
        _ => (authority, None),
    };
    if host.is_empty() {
        return Err(format!("no host after '{scheme}://'"));
    }
    if let Some(port) = port {
        if !matches!(integer::<u16>(port), Ok(1..)) {
            return Err(format!("port '{port}' is not a number from 1 to 65535"));
        }
    }
    Ok(format!("{scheme}://{rest}"))
}

fn address(text: &str) -> Result<String, String> {
    if text.chars().any(char::is_whitespace) {
        return Err("contains whitespace".to_owned());
    }
    Ok(text.to_owned())
}

/// Checks each `host:port` entry; returns the entries trimmed and joined with `,`.
fn quorum(text: &str) -> Result<String, String> {
    let mut entries = Vec::new();
    for entry in text.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err("empty entry (two commas in a row, or a leading or trailing comma)".into());
        }
        let Some((host, port)) = entry.rsplit_once(':') else {
            return Err(format!("entry '{entry}' has no port"));
        };
        let bracketed = host.starts_with('[') && host.ends_with(']');
        if host.is_empty() || (host.contains(':') && !bracketed) {
            return Err(format!("entry '{entry}' has no valid host (write IPv6 hosts in brackets: [::1]:2181)"));
        }
        if host.chars().any(char::is_whitespace) {
            return Err(format!("entry '{entry}' has whitespace in its host"));
        }
        match integer::<u16>(port) {
            Ok(0) => return Err(format!("entry '{entry}' has port 0")),
            Ok(_) => {}
            Err(_) if port.is_empty() => return Err(format!("entry '{entry}' has no port")),
            Err(_) => return Err(format!("entry '{entry}' has port '{port}', which is not a number from 1 to 65535")),
        }
        entries.push(entry);
    }
    Ok(entries.join(","))
}

/// Checks every `/`-separated segment of a ZooKeeper path after its leading `/`.
fn segments(path: &str) -> Result<(), String> {
    for segment in path.split('/').skip(1) {
        match segment {
            "" => return Err("empty path segment".to_owned()),
            "." | ".." => return Err(format!("ZooKeeper does not allow the segment '{segment}'")),
            _ if segment.chars().any(char::is_whitespace) => {
                return Err(format!("segment '{segment}' contains whitespace"))
            }
            _ => {}
        }
    }
    Ok(())
}

fn path_root(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err("does not start with '/'".to_owned());
    }
    if text == "/" {
        return Err("the ZooKeeper root itself is not allowed".to_owned());
    }
    if text.ends_with('/') {
        return Err("ends with '/'".to_owned());
    }
    segments(text)?;
    Ok(text.to_owned())
}

fn cluster_id(text: &str) -> Result<String, String> {
    let normalised = if text.starts_with('/') { text.to_owned() } else { format!("/{text}") };
    if normalised == "/" {
        return Err("empty cluster id".to_owned());
    }
    segments(&normalised)?;
    Ok(normalised)
}

fn storage_dir(text: &str) -> Result<String, String> {
    if let Some((scheme, rest)) = text.split_once("://") {
        let scheme = scheme.to_lowercase();
        if !matches!(scheme.as_str(), "file" | "s3" | "hdfs" | "swift") {
            return Err(format!("unsupported scheme '{scheme}://'"));
        }
        if rest.is_empty() || (scheme == "file" && !rest.starts_with('/')) {
            return Err(match scheme.as_str() {
                "file" => "a file:// URI needs an absolute path (file:///data/keel)".to_owned(),
                _ => format!("nothing after '{scheme}://'"),
            });
        }
        Ok(format!("{scheme}://{rest}"))
    } else if text.starts_with('/') {
        Ok(format!("file://{text}"))
    } else {
        Err("neither a URI nor an absolute path".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(field: Field, text: &str) -> Result<Config, Invalid> {
        let mut config = Config::defaults();
        field.set(&mut config, Some(text))?;
        Ok(config)
    }

    fn problem(field: Field, text: &str) -> String {
        set(field, text).unwrap_err().problem
    }

    #[test]
    fn integers() {
        assert_eq!(integer::<u16>("65535"), Ok(65535));
        assert_eq!(integer::<u16>("0"), Ok(0));
        assert_eq!(integer::<u16>("65536"), Err("out of range".to_owned()));
        assert_eq!(integer::<u16>("99999999999999999999999"), Err("out of range".to_owned()));
        assert_eq!(integer::<u16>("-1"), Err("negative".to_owned()));
        assert_eq!(integer::<u16>("80a81"), Err("not an integer".to_owned()));
        assert_eq!(integer::<u16>("1.0"), Err("not an integer".to_owned()));
        assert_eq!(integer::<u16>("-"), Err("not an integer".to_owned()));
    }

    #[test]
    fn quorum_entries() {
        assert_eq!(quorum("a:2181, b:2182 ,[::1]:2183"), Ok("a:2181,b:2182,[::1]:2183".to_owned()));
        assert_eq!(quorum("a:2181,b"), Err("entry 'b' has no port".to_owned()));
        assert_eq!(quorum("a:"), Err("entry 'a:' has no port".to_owned()));
        assert_eq!(
            quorum("a:2181,"),
            Err("empty entry (two commas in a row, or a leading or trailing comma)".to_owned())
        );
        assert_eq!(
            quorum("a:21x"),
            Err("entry 'a:21x' has port '21x', which is not a number from 1 to 65535".to_owned())
        );
        assert_eq!(quorum("a:0"), Err("entry 'a:0' has port 0".to_owned()));
        assert_eq!(
            quorum("::1:2181"),
            Err("entry '::1:2181' has no valid host (write IPv6 hosts in brackets: [::1]:2181)".to_owned())
        );
        assert_eq!(
            quorum(":2181"),
            Err("entry ':2181' has no valid host (write IPv6 hosts in brackets: [::1]:2181)".to_owned())
        );
    }

    #[test]
    fn paths() {
        assert_eq!(path_root("/keel"), Ok("/keel".to_owned()));
        assert_eq!(path_root("/a/b"), Ok("/a/b".to_owned()));
        assert_eq!(path_root("keel"), Err("does not start with '/'".to_owned()));
        assert_eq!(path_root("/"), Err("the ZooKeeper root itself is not allowed".to_owned()));
        assert_eq!(path_root("/keel/"), Err("ends with '/'".to_owned()));
        assert_eq!(path_root("/a//b"), Err("empty path segment".to_owned()));
        assert_eq!(path_root("/a/../b"), Err("ZooKeeper does not allow the segment '..'".to_owned()));
        assert_eq!(cluster_id("prod"), Ok("/prod".to_owned()));
        assert_eq!(cluster_id("/prod/eu"), Ok("/prod/eu".to_owned()));
        assert_eq!(cluster_id("/"), Err("empty cluster id".to_owned()));
        assert_eq!(cluster_id("prod/"), Err("empty path segment".to_owned()));
    }

    #[test]
    fn storage_dirs() {
        assert_eq!(storage_dir("/data/ha"), Ok("file:///data/ha".to_owned()));
        assert_eq!(storage_dir("file:///data/ha"), Ok("file:///data/ha".to_owned()));
        assert_eq!(storage_dir("S3://bucket/ha"), Ok("s3://bucket/ha".to_owned()));
        assert_eq!(storage_dir("hdfs://nn:8020/ha"), Ok("hdfs://nn:8020/ha".to_owned()));
        assert_eq!(storage_dir("swift://c.p/ha"), Ok("swift://c.p/ha".to_owned()));
        assert_eq!(storage_dir("gs://bucket"), Err("unsupported scheme 'gs://'".to_owned()));
        assert_eq!(storage_dir("s3://"), Err("nothing after 's3://'".to_owned()));
        assert_eq!(
            storage_dir("file://data"),
            Err("a file:// URI needs an absolute path (file:///data/keel)".to_owned())
        );
        assert_eq!(storage_dir("data/ha"), Err("neither a URI nor an absolute path".to_owned()));
    }

    #[test]
    fn field_level_problems() {
        assert_eq!(problem(Field::TaskmanagerSlots, "0"), "a worker needs at least one slot");
        assert_eq!(problem(Field::RestPort, "70000"), "out of range");
        assert_eq!(problem(Field::ZkRetryWait, "0 s"), "must be greater than 0");
        assert_eq!(
            problem(Field::ZkSessionTimeout, "30 d"),
            "longer than ZooKeeper allows (2147483647 ms, about 24 days)"
        );
        assert_eq!(problem(Field::ZkTolerateSuspended, "yes"), "not a boolean");
        assert_eq!(problem(Field::RestAddress, "a b"), "contains whitespace");
        assert_eq!(problem(Field::TaskmanagerResourceId, "w 1"), "contains whitespace");
        assert_eq!(problem(Field::HaType, "kubernetes"), "unknown high-availability type");
        assert_eq!(problem(Field::RestPort, "  "), "empty value");
        assert_eq!(problem(Field::StateBackend, "memory"), "unknown state backend");
        assert_eq!(problem(Field::CheckpointsNumRetained, "0"), "must keep at least one completed checkpoint");
        assert_eq!(problem(Field::CheckpointsNumRetained, "4294967296"), "out of range");
        assert_eq!(problem(Field::CheckpointTimeout, "0"), "must be greater than 0");
        assert_eq!(problem(Field::RecoveryWorkerWait, "-1 s"), "negative durations are not allowed");
        assert_eq!(problem(Field::StateIncremental, "on"), "not a boolean");
        assert_eq!(problem(Field::S3SecretKey, "a b"), "contains whitespace");
        assert_eq!(problem(Field::RestAuthToken, "Bearer x"), "contains whitespace");
        assert_eq!(problem(Field::CheckpointsDir, "cp"), "neither a URI nor an absolute path");
        assert_eq!(problem(Field::IoTmpDirs, ""), "empty value");
    }

    #[test]
    fn state_backends_and_legacy_names() {
        for (text, kind) in [
            ("hashmap", StateBackendKind::Hashmap),
            ("HashMap", StateBackendKind::Hashmap),
            ("filesystem", StateBackendKind::Hashmap),
            ("JobManager", StateBackendKind::Hashmap),
            ("rocksdb", StateBackendKind::Rocksdb),
            ("RocksDB", StateBackendKind::Rocksdb),
        ] {
            let config = set(Field::StateBackend, text).unwrap();
            assert_eq!(config.state_backend, kind, "{text}");
            assert_eq!(Field::StateBackend.get(&config), kind.as_str());
        }
        assert_eq!(StateBackendKind::Rocksdb.to_string(), "rocksdb");
    }

    #[test]
    fn tmp_dir_lists() {
        let dirs = |list: &[&str]| Ok(list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(tmp_dirs("/tmp"), dirs(&["/tmp"]));
        assert_eq!(tmp_dirs("/a,/b"), dirs(&["/a", "/b"]));
        assert_eq!(tmp_dirs("/a:/b , /c"), dirs(&["/a", "/b", "/c"]));
        assert_eq!(
            tmp_dirs("/a,,/b"),
            Err("empty entry (two separators in a row, or a leading or trailing one)".into())
        );
        assert_eq!(tmp_dirs("/a:"), Err("empty entry (two separators in a row, or a leading or trailing one)".into()));
        assert_eq!(tmp_dirs("/a,tmp"), Err("entry 'tmp' is not an absolute path".into()));
        assert_eq!(tmp_dirs("file:///tmp"), Err("entry 'file' is not an absolute path".into()));
        let config = set(Field::IoTmpDirs, "/a:/b").unwrap();
        assert_eq!(Field::IoTmpDirs.get(&config), "/a,/b");
    }

    #[test]
    fn local_dirs() {
        assert_eq!(local_dir("/var/lib/keel"), Ok("/var/lib/keel".to_owned()));
        assert_eq!(local_dir("rocksdb"), Err("not an absolute path".to_owned()));
        assert_eq!(local_dir("/a,/b"), Err("a list of directories is not supported; give one directory".to_owned()));
    }

    #[test]
    fn http_urls() {
        assert_eq!(http_url("http://minio:9000"), Ok("http://minio:9000".to_owned()));
        assert_eq!(http_url("HTTPS://s3.eu.example.com/"), Ok("https://s3.eu.example.com/".to_owned()));
        assert_eq!(http_url("http://[::1]:9000"), Ok("http://[::1]:9000".to_owned()));
        assert_eq!(http_url("http://[::1]"), Ok("http://[::1]".to_owned()));
        assert_eq!(http_url("minio:9000"), Err("not a URL (no scheme://)".to_owned()));
        assert_eq!(http_url("s3://bucket"), Err("unsupported scheme 's3://'".to_owned()));
        assert_eq!(http_url("http://"), Err("no host after 'http://'".to_owned()));
        assert_eq!(http_url("http://:9000"), Err("no host after 'http://'".to_owned()));
        assert_eq!(http_url("http://minio:"), Err("port '' is not a number from 1 to 65535".to_owned()));
        assert_eq!(http_url("http://minio:0"), Err("port '0' is not a number from 1 to 65535".to_owned()));
        assert_eq!(http_url("http://minio:9x/a"), Err("port '9x' is not a number from 1 to 65535".to_owned()));
        assert_eq!(http_url("http://a b"), Err("contains whitespace".to_owned()));
    }

    #[test]
    fn secrets_are_masked_in_value_of_and_debug() {
        let mut config = Config::defaults();
        assert_eq!(config.value_of("s3.secret-key"), Some(String::new()));
        Field::S3SecretKey.set(&mut config, Some("wJalrXUtnFEMI")).unwrap();
        Field::RestAuthToken.set(&mut config, Some("t0ken")).unwrap();
        Field::S3AccessKey.set(&mut config, Some("AKIAEXAMPLE")).unwrap();
        assert_eq!(config.s3_secret_key.as_deref(), Some("wJalrXUtnFEMI"));
        assert_eq!(config.value_of("s3.secret-key").as_deref(), Some("******"));
        assert_eq!(config.value_of("rest.auth.token").as_deref(), Some("******"));
        assert_eq!(config.value_of("s3.access-key").as_deref(), Some("AKIAEXAMPLE"));
        let debug = format!("{config:?}");
        assert!(!debug.contains("wJalrXUtnFEMI") && !debug.contains("t0ken"), "{debug}");
        assert!(debug.contains("s3_secret_key: Some(\"******\")"), "{debug}");
        assert!(debug.contains("rest_auth_token: Some(\"******\")"), "{debug}");
        assert!(debug.contains("s3_access_key: Some(\"AKIAEXAMPLE\")"), "{debug}");
        assert!(format!("{:?}", Config::defaults()).contains("s3_secret_key: None"));
    }

    #[test]
    fn effective_directories() {
        let mut config = Config::defaults();
        config.io_tmp_dirs = vec!["/data1/tmp".to_owned(), "/data2/tmp".to_owned()];
        assert_eq!(config.effective_rocksdb_localdir(), PathBuf::from("/data1/tmp/keel-rocksdb"));
        config.rocksdb_localdir = Some("/ssd/rocksdb".to_owned());
        assert_eq!(config.effective_rocksdb_localdir(), PathBuf::from("/ssd/rocksdb"));
        assert_eq!(
            config.effective_checkpoints_dir().as_deref(),
            Some("file:///data1/tmp/keel-ha/default/checkpoints"),
            "type none keeps its jobs under io.tmp.dirs"
        );
        assert_eq!(config.local_pointers_dir(), PathBuf::from("/data1/tmp/keel-ha/default/pointers"));
        config.ha_type = HaType::Zookeeper;
        assert_eq!(config.effective_checkpoints_dir(), None);
        config.storage_dir = Some("s3://bucket/ha/".to_owned());
        assert_eq!(config.effective_checkpoints_dir().as_deref(), Some("s3://bucket/ha/checkpoints"));
        config.checkpoints_dir = Some("file:///cp".to_owned());
        assert_eq!(config.effective_checkpoints_dir().as_deref(), Some("file:///cp"));
        config.ha_type = HaType::None;
        assert_eq!(config.local_pointers_dir(), PathBuf::from("/data1/tmp/keel-ha/default/pointers"));
        config.storage_dir = Some("file:///srv/keel".to_owned());
        assert_eq!(config.local_pointers_dir(), PathBuf::from("/srv/keel/pointers"));
        let tmp = Config::defaults().effective_rocksdb_localdir();
        assert_eq!(tmp, std::env::temp_dir().join("keel-rocksdb"));
    }

    #[test]
    fn optional_fields_unset() {
        let mut config = Config::defaults();
        Field::ZkQuorum.set(&mut config, Some("a:1")).unwrap();
        Field::ZkQuorum.set(&mut config, None).unwrap();
        assert_eq!(config.zk_quorum, None);
        Field::StorageDir.set(&mut config, Some(" ")).unwrap();
        assert_eq!(config.storage_dir, None);
        let optional = [
            Field::RestAuthToken,
            Field::RocksdbLocaldir,
            Field::CheckpointsDir,
            Field::S3Endpoint,
            Field::S3Region,
            Field::S3AccessKey,
            Field::S3SecretKey,
        ];
        for field in optional {
            let value = if field == Field::S3Endpoint { "http://minio:9000" } else { "/x" };
            field.set(&mut config, Some(value)).unwrap();
            assert_ne!(field.get(&config), "", "{field:?}");
            field.set(&mut config, None).unwrap();
            assert_eq!(field.get(&config), "", "{field:?}");
        }
        assert_eq!(config, Config::defaults());
    }

    #[test]
    fn every_key_has_a_field_and_secrets_say_so() {
        for doc in crate::KEYS {
            let field = Field::of(doc.key).unwrap_or_else(|| panic!("{} has no field", doc.key));
            assert_eq!(field.optional(), doc.default.is_empty(), "{}", doc.key);
            assert_eq!(field.secret(), doc.kind.contains("secret"), "{}", doc.key);
        }
    }

    #[test]
    fn ha_root_joins_root_and_cluster_id() {
        assert_eq!(Config::defaults().ha_root(), "/keel/default");
    }
}
