//! ZooKeeper sessions: connect with the configured quorum and timeouts, chrooted at the
//! cluster's namespace (`<path.root>/<cluster-id>`), which is created when missing.
//!
//! Security, as Flink users configure it (see the README, "Security"):
//! * SASL DIGEST-MD5 ([`ZkSasl`], `high-availability.zookeeper.client.sasl.*`, off with
//!   `zookeeper.sasl.disable`); a refused authentication is [`HaError::ZkAuth`].
//! * ACLs ([`ZkAcl`], `high-availability.zookeeper.client.acl`): every znode Keel creates for
//!   the cluster, the namespace itself included, gets [`ZkSettings::acls`]; the path root
//!   above it stays open so clusters with other credentials can share it.
//! * TLS ([`ZkTls`], `zookeeper.client.secure` + `zookeeper.ssl.*`): PEM files read at every
//!   connect, so renewed certificates are picked up by the next session.
//! * Kerberos ([`ZkKerberos`], `security.kerberos.login.*`, feature `kerberos`): SASL GSSAPI
//!   with MIT's client keytab; a failed or unavailable login is [`HaError::ZkKerberos`].

use std::time::Duration;

use keel_conf::Config;
pub use keel_conf::ZkAcl;
use zookeeper_client::{Acls, Client, CreateMode, SaslOptions, SessionInfo, SessionState, TlsOptions};

use crate::{paths, HaError};

/// Everything needed to open a session for one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkSettings {
    /// `host:port,host:port,...`
    pub quorum: String,
    /// `<path.root>/<cluster-id>`, for example `/keel/default`.
    pub namespace: String,
    /// The cluster id as configured (for display).
    pub cluster_id: String,
    pub session_timeout: Duration,
    pub connection_timeout: Duration,
    /// Cap on the reconnect backoff.
    pub retry_wait: Duration,
    pub tolerate_suspended_connections: bool,
    /// SASL DIGEST-MD5 credentials; `None`: no SASL.
    pub sasl: Option<ZkSasl>,
    /// The ACL of the znodes Keel creates.
    pub acl: ZkAcl,
    /// TLS to ZooKeeper; `None`: plaintext.
    pub tls: Option<ZkTls>,
    /// Kerberos (SASL GSSAPI) login; `None`: no Kerberos. Needs the `kerberos` feature.
    pub kerberos: Option<ZkKerberos>,
}

/// Kerberos login for ZooKeeper (`security.kerberos.login.*`, `zookeeper.sasl.service-name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkKerberos {
    /// The client keytab (MIT `KRB5_CLIENT_KTNAME`).
    pub keytab: std::path::PathBuf,
    /// The principal in it (the keytab's first principal is the one MIT logs in as).
    pub principal: String,
    /// Primary of the servers' principal, `zookeeper` by default.
    pub service_name: String,
}

/// SASL DIGEST-MD5 credentials. `Debug` shows the password as `******`.
#[derive(Clone, PartialEq, Eq)]
pub struct ZkSasl {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for ZkSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkSasl").field("username", &self.username).field("password", &"******").finish()
    }
}

/// TLS to ZooKeeper: PEM paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkTls {
    /// CA bundle the servers' certificates must chain to.
    pub truststore: std::path::PathBuf,
    /// Certificate chain and private key presented to the servers, if any.
    pub keystore: Option<std::path::PathBuf>,
}

impl ZkSettings {
    /// Settings from the configuration; `None` when `high-availability.type` is not `zookeeper`.
    pub fn from_config(config: &Config) -> Option<Self> {
        let quorum = config.zk_quorum.clone()?;
        if config.ha_type != keel_conf::HaType::Zookeeper {
            return None;
        }
        Some(Self {
            quorum,
            namespace: paths::namespace(&config.zk_path_root, &config.cluster_id),
            cluster_id: config.cluster_id.clone(),
            session_timeout: config.zk_session_timeout.duration,
            connection_timeout: config.zk_connection_timeout.duration,
            retry_wait: config.zk_retry_wait.duration,
            tolerate_suspended_connections: config.zk_tolerate_suspended_connections,
            sasl: match (&config.zk_sasl_username, &config.zk_sasl_password) {
                (Some(username), Some(password)) if !config.zk_sasl_disable => {
                    Some(ZkSasl { username: username.clone(), password: password.clone() })
                }
                _ => None,
            },
            acl: config.zk_acl,
            kerberos: match (&config.kerberos_keytab, &config.kerberos_principal) {
                (Some(keytab), Some(principal)) if config.zk_kerberos() => Some(ZkKerberos {
                    keytab: keytab.into(),
                    principal: principal.clone(),
                    service_name: config.zk_sasl_service_name.clone(),
                }),
                _ => None,
            },
            tls: match (config.zk_client_secure, &config.zk_ssl_truststore) {
                (true, Some(truststore)) => Some(ZkTls {
                    truststore: truststore.into(),
                    keystore: config.zk_ssl_keystore.as_ref().map(Into::into),
                }),
                _ => None,
            },
        })
    }

    /// The ACL for znodes Keel creates under the namespace (and the namespace itself).
    #[must_use]
    pub fn acls(&self) -> Acls<'static> {
        acls_of(self.acl)
    }

    /// The TLS options from the PEM files (read now).
    ///
    /// # Notable errors
    /// * [`HaError::ZkTls`] when a file cannot be read or holds no usable PEM.
    fn tls_options(tls: &ZkTls) -> Result<TlsOptions, HaError> {
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map_err(|e| HaError::ZkTls { path: path.display().to_string(), problem: e.to_string() })
        };
        let ca = read(&tls.truststore)?;
        let mut options = TlsOptions::new().with_pem_ca(&ca).map_err(|e| HaError::ZkTls {
            path: tls.truststore.display().to_string(),
            problem: format!("no CA certificate in PEM form ({e})"),
        })?;
        if let Some(keystore) = &tls.keystore {
            let pem = read(keystore)?;
            options = options.with_pem_identity(&pem, &pem).map_err(|e| HaError::ZkTls {
                path: keystore.display().to_string(),
                problem: format!("expected a PEM certificate chain and its private key ({e})"),
            })?;
        }
        Ok(options)
    }

    /// Opens a new session chrooted at [`ZkSettings::namespace`], creating it when missing.
    ///
    /// # Notable errors
    /// * [`HaError::Connect`] when no session could be established within the session timeout
    ///   plus the connection timeout.
    pub async fn connect(&self) -> Result<Client, HaError> {
        let client = self.dial(None).await?;
        // The namespace's ancestors (the path root) stay open; the namespace gets the ACL.
        let parent = self.namespace.rsplit_once('/').map_or("", |(parent, _)| parent);
        if !parent.is_empty() {
            let open = CreateMode::Persistent.with_acls(Acls::anyone_all());
            client.mkdir(parent, &open).await.map_err(|e| self.connect_error_at(parent, e))?;
        }
        match client.create(&self.namespace, b"", &CreateMode::Persistent.with_acls(self.acls())).await {
            Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
            Err(e) => return Err(self.connect_error_at(&self.namespace, e)),
        }
        client.chroot(self.namespace.clone()).map_err(|_| HaError::Zk {
            op: "chroot",
            path: self.namespace.clone(),
            source: zookeeper_client::Error::BadArguments(&"invalid chroot path"),
        })
    }

    /// Re-attaches to an existing session (its id and password) without touching any znode;
    /// dropping or [closing](close) the returned client closes that session. Used by the
    /// fast failover path to close the session of a leader whose process is gone.
    ///
    /// # Notable errors
    /// * [`HaError::Connect`] with `SessionExpired` when that session no longer exists.
    pub async fn connect_to_session(&self, session: SessionInfo) -> Result<Client, HaError> {
        self.dial(Some(session)).await
    }

    /// Opens (or re-attaches to) a session with the configured quorum, timeouts, SASL and TLS.
    async fn dial(&self, session: Option<SessionInfo>) -> Result<Client, HaError> {
        let mut connector = Client::connector()
            .with_session_timeout(self.session_timeout)
            .with_connection_timeout(self.connection_timeout);
        if let Some(session) = session {
            connector = connector.with_session(session);
        }
        if let Some(sasl) = &self.sasl {
            connector = connector.with_sasl(SaslOptions::digest_md5(sasl.username.clone(), sasl.password.clone()));
        }
        if let Some(kerberos) = &self.kerberos {
            connector = self.with_kerberos(connector, kerberos)?;
        }
        let tls = match &self.tls {
            Some(tls) => {
                keel_proto::security::install_crypto_provider();
                Some(Self::tls_options(tls)?)
            }
            None => None,
        };
        let quorum = self.quorum.as_str();
        let connect = async move {
            match tls {
                Some(options) => connector.with_tls(options).secure_connect(quorum).await,
                None => connector.connect(quorum).await,
            }
        };
        let bound = self.session_timeout + self.connection_timeout;
        match tokio::time::timeout(bound, connect).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(source)) => Err(self.connect_error(source)),
            Err(_) => Err(self.connect_error(zookeeper_client::Error::Timeout)),
        }
    }

    /// SASL GSSAPI with the configured keytab: MIT Kerberos gets (and renews) tickets from
    /// the client keytab by itself, into a credential cache of this process.
    #[cfg(feature = "kerberos")]
    fn with_kerberos(
        &self,
        connector: zookeeper_client::Connector,
        kerberos: &ZkKerberos,
    ) -> Result<zookeeper_client::Connector, HaError> {
        if let Err(e) = std::fs::File::open(&kerberos.keytab) {
            return Err(HaError::ZkKerberos {
                quorum: self.quorum.clone(),
                principal: kerberos.principal.clone(),
                problem: format!("cannot read keytab {}: {e}", kerberos.keytab.display()),
            });
        }
        kerberos_environment(&kerberos.keytab);
        Ok(connector.with_sasl(SaslOptions::gssapi().with_username(kerberos.service_name.clone())))
    }

    #[cfg(not(feature = "kerberos"))]
    fn with_kerberos(
        &self,
        _connector: zookeeper_client::Connector,
        kerberos: &ZkKerberos,
    ) -> Result<zookeeper_client::Connector, HaError> {
        Err(HaError::ZkKerberos {
            quorum: self.quorum.clone(),
            principal: kerberos.principal.clone(),
            problem: "this build has no Kerberos support (build with --features keel-ha/kerberos, \
                      which needs libkrb5-dev and libclang)"
                .to_owned(),
        })
    }

    /// The error for a failed connect: a refused SASL authentication names the user (never
    /// the password), anything else is [`HaError::Connect`].
    fn connect_error(&self, source: zookeeper_client::Error) -> HaError {
        if let (Some(kerberos), zookeeper_client::Error::AuthFailed) = (&self.kerberos, &source) {
            return HaError::ZkKerberos {
                quorum: self.quorum.clone(),
                principal: kerberos.principal.clone(),
                problem: format!(
                    "the servers refused the SASL GSSAPI authentication ({source}); check the keytab, \
                     the principal and zookeeper.sasl.service-name '{}'",
                    kerberos.service_name
                ),
            };
        }
        match (&self.sasl, source) {
            (Some(sasl), zookeeper_client::Error::AuthFailed) => HaError::ZkAuth {
                quorum: self.quorum.clone(),
                user: sasl.username.clone(),
                source: zookeeper_client::Error::AuthFailed,
            },
            (_, source) => HaError::Connect { quorum: self.quorum.clone(), source },
        }
    }

    fn connect_error_at(&self, path: &str, source: zookeeper_client::Error) -> HaError {
        match source {
            zookeeper_client::Error::AuthFailed | zookeeper_client::Error::NoAuth
                if self.sasl.is_some() || self.kerberos.is_some() =>
            {
                self.connect_error(zookeeper_client::Error::AuthFailed)
            }
            source => HaError::zk("create", path, source),
        }
    }

    /// Connects, retrying with a backoff that doubles from 100 ms up to `retry_wait`, until
    /// connected or `cancel` fires (then `None`).
    pub async fn connect_with_retry(&self, cancel: &tokio_util::sync::CancellationToken, what: &str) -> Option<Client> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = tokio::select! {
                r = self.connect() => r,
                _ = cancel.cancelled() => return None,
            };
            match attempt {
                Ok(client) => return Some(client),
                Err(err) => {
                    tracing::warn!(%err, retry_in_ms = backoff.as_millis() as u64, "{what}: ZooKeeper connect failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {},
                        _ = cancel.cancelled() => return None,
                    }
                    backoff = (backoff * 2).min(self.retry_wait.max(Duration::from_millis(100)));
                }
            }
        }
    }
}

/// Closes a session and waits (bounded) until the servers confirmed it, so its ephemeral nodes
/// are gone when this returns.
pub async fn close(client: Client, bound: Duration) {
    let mut state = client.state_watcher();
    drop(client);
    let _ = tokio::time::timeout(bound, async {
        loop {
            match state.changed().await {
                SessionState::Closed | SessionState::Expired | SessionState::AuthFailed => break,
                _ => continue,
            }
        }
    })
    .await;
}

/// Hex form of a session id, as ZooKeeper's own tools print it.
pub fn session_hex(client: &Client) -> String {
    format!("{:x}", client.session_id().0)
}

/// The ACL list for `acl`.
pub(crate) fn acls_of(acl: ZkAcl) -> Acls<'static> {
    match acl {
        ZkAcl::Open => Acls::anyone_all(),
        ZkAcl::Creator => Acls::creator_all(),
    }
}

/// Points MIT Kerberos at `keytab` as the client keytab, and at a credential cache of this
/// process unless `KRB5CCNAME` is set. Set once per keytab (the environment is process-wide).
#[cfg(feature = "kerberos")]
fn kerberos_environment(keytab: &std::path::Path) {
    static SET: std::sync::Mutex<Option<std::path::PathBuf>> = std::sync::Mutex::new(None);
    let mut set = SET.lock().unwrap_or_else(|e| e.into_inner());
    if set.as_deref() == Some(keytab) {
        return;
    }
    std::env::set_var("KRB5_CLIENT_KTNAME", keytab);
    if std::env::var_os("KRB5CCNAME").is_none() {
        std::env::set_var("KRB5CCNAME", format!("MEMORY:keel-{}", std::process::id()));
    }
    *set = Some(keytab.to_owned());
}
