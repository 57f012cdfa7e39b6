//! Transport security of cluster-internal RPC: the one place that decides how a gRPC client
//! channel or server is built (plaintext, shared secret, mutual TLS).
//!
//! - **Shared secret** (`security.internal.secret`): every client call carries it in the
//!   `keel-internal-secret` metadata entry; every server compares it in constant time and
//!   refuses a call without it (or with another) with `UNAUTHENTICATED` and a log line that
//!   never holds the secret.
//! - **Mutual TLS** (`security.ssl.internal.*`): servers present the internal certificate and
//!   require a client certificate signed by a CA of the truststore; clients present the same
//!   certificate and verify the server against the truststore and the host they dial.
//!
//! Both can be on at once. Plaintext without a secret is the default.
//!
//! ```no_run
//! # async fn f(config: &keel_conf::Config) -> Result<(), String> {
//! use keel_proto::security::InternalSecurity;
//! use keel_proto::v1::worker_client::WorkerClient;
//! let security = InternalSecurity::from_config(config)?;
//! let channel = security.endpoint("127.0.0.1:7001")?.connect_lazy();
//! let client = WorkerClient::new(security.intercept(channel));
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::server::{Router, TcpIncoming};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server};
use tonic::{Request, Status};

/// The metadata entry that carries `security.internal.secret`.
pub const SECRET_METADATA: &str = "keel-internal-secret";

/// A client channel that adds the cluster secret (when one is set) to every call.
pub type InternalChannel = InterceptedService<Channel, SecretInterceptor>;

/// How cluster-internal RPC is secured, read once from the configuration (PEM files are read
/// at start, so a missing or unreadable file stops the process with the key's name).
#[derive(Clone, Default)]
pub struct InternalSecurity {
    secret: Option<Arc<str>>,
    tls: Option<Arc<Tls>>,
}

struct Tls {
    identity: Identity,
    ca: Certificate,
    /// The servers' side: our certificate, client certificates required (truststore CA).
    server: Arc<rustls::ServerConfig>,
}

/// How long a peer may take to complete its TLS handshake with an internal server.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Internal TLS handshakes in progress at once per server; connections beyond are closed.
pub const MAX_HANDSHAKES: usize = 256;

/// The internal servers' rustls configuration: `cert`/`key`, and client certificates
/// required, signed by a CA of `ca` (ring, HTTP/2 by ALPN).
fn internal_server_config(cert: &[u8], key: &[u8], ca: &[u8]) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("'security.ssl.internal.cert': {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("'security.ssl.internal.key': {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca) {
        let ca = ca.map_err(|e| format!("'security.ssl.internal.truststore': {e}"))?;
        roots.add(ca).map_err(|e| format!("'security.ssl.internal.truststore': {e}"))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("'security.ssl.internal.truststore': {e}"))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("internal TLS: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!("'security.ssl.internal.key' and 'security.ssl.internal.cert' do not make a usable pair: {e}")
        })?;
    server.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(server))
}

/// Never shows the secret or key material.
impl fmt::Debug for InternalSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InternalSecurity")
            .field("secret", &self.secret.as_ref().map(|_| "******"))
            .field("mutual_tls", &self.tls.is_some())
            .finish()
    }
}

fn read_pem(key: &str, path: Option<&str>) -> Result<Vec<u8>, String> {
    let path = path.ok_or_else(|| format!("'{key}' is required when 'security.ssl.internal.enabled' is true"))?;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read '{key}' file {path}: {e}"))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(format!("'{key}' file {path} holds no PEM block (expected -----BEGIN ...-----)"));
    }
    Ok(bytes)
}

/// Makes ring the process's rustls crypto provider, unless one is installed already: tonic's
/// server side builds its TLS configuration with the process default, which rustls cannot
/// pick by itself when more than one provider is compiled in.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl InternalSecurity {
    /// Plaintext, no secret.
    #[must_use]
    pub fn plaintext() -> Self {
        Self::default()
    }

    /// The security a process's configuration asks for.
    ///
    /// # Errors
    /// A PEM file that cannot be read or holds no PEM block, naming the key and path.
    pub fn from_config(config: &keel_conf::Config) -> Result<Self, String> {
        let secret = config.internal_secret.as_deref().map(Arc::from);
        let tls = if config.ssl_internal_enabled {
            install_crypto_provider();
            let key = read_pem("security.ssl.internal.key", config.ssl_internal_key.as_deref())?;
            let cert = read_pem("security.ssl.internal.cert", config.ssl_internal_cert.as_deref())?;
            let ca = read_pem("security.ssl.internal.truststore", config.ssl_internal_truststore.as_deref())?;
            let server = internal_server_config(&cert, &key, &ca)?;
            Some(Arc::new(Tls { identity: Identity::from_pem(cert, key), ca: Certificate::from_pem(ca), server }))
        } else {
            None
        };
        Ok(Self { secret, tls })
    }

    /// Whether mutual TLS is on.
    #[must_use]
    pub fn mutual_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether a shared secret is set.
    #[must_use]
    pub fn has_secret(&self) -> bool {
        self.secret.is_some()
    }

    /// A client endpoint for `address` (`host:port`): `https` with the internal certificate
    /// and truststore under mutual TLS, else `http`.
    ///
    /// # Errors
    /// `address` is not `host:port`, or the TLS settings are refused.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|e| format!("address {address:?} is not host:port: {e}"))?;
        match &self.tls {
            None => Ok(endpoint),
            Some(tls) => endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(tls.ca.clone()).identity(tls.identity.clone()))
                .map_err(|e| format!("internal TLS settings refused for {address}: {e}")),
        }
    }

    /// Wraps a channel so that every call carries the secret (when one is set).
    #[must_use]
    pub fn intercept(&self, channel: Channel) -> InternalChannel {
        InterceptedService::new(channel, self.client_interceptor())
    }

    /// The interceptor [`InternalSecurity::intercept`] uses.
    #[must_use]
    pub fn client_interceptor(&self) -> SecretInterceptor {
        SecretInterceptor {
            value: self.secret.as_deref().map(|s| s.parse().expect("the secret is printable ASCII (checked by conf)")),
        }
    }

    /// A server builder. Transport security is applied by [`InternalSecurity::serve`].
    #[must_use]
    pub fn server(&self) -> Server {
        Server::builder()
    }

    /// Serves `router` on `listener` until `shutdown`: plaintext, or under mutual TLS with
    /// the internal certificate, requiring client certificates signed by the truststore.
    /// Handshakes run on their own tasks (at most [`MAX_HANDSHAKES`] at once, each bounded
    /// by [`HANDSHAKE_TIMEOUT`]); a refused one is logged with the peer's address.
    ///
    /// # Errors
    /// The server fails.
    pub async fn serve(
        &self,
        router: Router,
        listener: tokio::net::TcpListener,
        service: &'static str,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        match &self.tls {
            None => router.serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown).await,
            Some(tls) => {
                let incoming = tls_incoming(listener, tls.server.clone(), service);
                router.serve_with_incoming_shutdown(incoming, shutdown).await
            }
        }
    }

    /// The server-side check of the secret for `service` (named in refusals and logs).
    #[must_use]
    pub fn server_check(&self, service: &'static str) -> SecretCheck {
        SecretCheck { secret: self.secret.clone(), service }
    }
}

/// Accepted connections whose mutual-TLS handshake succeeded; refusals are logged.
fn tls_incoming(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    service: &'static str,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                // The server stopped (shutdown): stop accepting, close the listener.
                _ = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "{service} service: accept failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                tracing::warn!(peer = %peer, "{service} service: {MAX_HANDSHAKES} TLS handshakes in progress; connection closed");
                continue;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let problem = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                        return;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
                };
                tracing::warn!(
                    target: "keel::events", event = "internal_rpc_refused",
                    service, peer = %peer, reason = %problem,
                    "internal RPC refused: TLS handshake from {peer} to the {service} service failed \
                     (security.ssl.internal.*: a client certificate signed by the truststore is required): {problem}"
                );
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The REST server's TLS configuration (`security.ssl.rest.*`), `None` when REST is plain
/// HTTP. Uses ring explicitly (HTTP/2 and HTTP/1.1 offered by ALPN).
///
/// # Errors
/// The key or certificate is not set, cannot be read, or is not valid PEM, naming the key.
pub fn rest_server_tls(config: &keel_conf::Config) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    if !config.ssl_rest_enabled {
        return Ok(None);
    }
    let required = |key: &str, value: &Option<String>| {
        value.clone().ok_or_else(|| format!("'{key}' is required when 'security.ssl.rest.enabled' is true"))
    };
    let key_path = required("security.ssl.rest.key", &config.ssl_rest_key)?;
    let cert_path = required("security.ssl.rest.cert", &config.ssl_rest_cert)?;
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("'security.ssl.rest.cert' file {cert_path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("'security.ssl.rest.cert' file {cert_path} holds no certificate"));
    }
    let key =
        PrivateKeyDer::from_pem_file(&key_path).map_err(|e| format!("'security.ssl.rest.key' file {key_path}: {e}"))?;
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("REST TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("'security.ssl.rest.key' and 'security.ssl.rest.cert' do not make a usable pair: {e}"))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(server)))
}

/// What a REST client (the `keel` commands) trusts when `security.ssl.rest.enabled` is set:
/// the PEM bytes of `security.ssl.rest.truststore`, else of `security.ssl.rest.cert`; `None`
/// for plain HTTP.
///
/// # Errors
/// Neither is set, or the file cannot be read.
pub fn rest_client_roots(config: &keel_conf::Config) -> Result<Option<Vec<u8>>, String> {
    if !config.ssl_rest_enabled {
        return Ok(None);
    }
    let (key, path) = match (&config.ssl_rest_truststore, &config.ssl_rest_cert) {
        (Some(path), _) => ("security.ssl.rest.truststore", path),
        (None, Some(path)) => ("security.ssl.rest.cert", path),
        (None, None) => {
            return Err("'security.ssl.rest.enabled' is true: set 'security.ssl.rest.truststore' (or \
                 'security.ssl.rest.cert') so that the REST server's certificate can be verified"
                .to_owned())
        }
    };
    std::fs::read(path).map(Some).map_err(|e| format!("cannot read '{key}' file {path}: {e}"))
}

/// `https` when the REST API is served over TLS, else `http`.
#[must_use]
pub fn rest_scheme(config: &keel_conf::Config) -> &'static str {
    if config.ssl_rest_enabled {
        "https"
    } else {
        "http"
    }
}

/// Adds the secret to every outgoing call.
#[derive(Clone)]
pub struct SecretInterceptor {
    value: Option<MetadataValue<Ascii>>,
}

impl Interceptor for SecretInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.value {
            request.metadata_mut().insert(SECRET_METADATA, value.clone());
        }
        Ok(request)
    }
}

/// Refuses incoming calls that do not carry the secret (when one is set).
#[derive(Clone)]
pub struct SecretCheck {
    secret: Option<Arc<str>>,
    service: &'static str,
}

/// Equality in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for SecretCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(secret) = &self.secret else { return Ok(request) };
        let problem = match request.metadata().get(SECRET_METADATA) {
            Some(given) if constant_time_eq(given.as_bytes(), secret.as_bytes()) => return Ok(request),
            Some(_) => "carries a wrong cluster secret",
            None => "carries no cluster secret",
        };
        let peer = request.remote_addr().map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        tracing::warn!(
            target: "keel::events", event = "internal_rpc_refused",
            service = self.service, peer = %peer, reason = problem,
            "internal RPC refused: a call to the {} service from {peer} {problem} (security.internal.secret)",
            self.service
        );
        Err(Status::unauthenticated(format!(
            "{} service: call refused, it {problem}; cluster-internal calls need the cluster's security.internal.secret",
            self.service
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_check_refuses_missing_and_wrong_and_accepts_the_secret() {
        let security = InternalSecurity { secret: Some(Arc::from("s3cr3t")), tls: None };
        let mut check = security.server_check("Worker");
        let missing = check.call(Request::new(())).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(missing.message().contains("no cluster secret"), "{}", missing.message());
        let mut wrong = Request::new(());
        wrong.metadata_mut().insert(SECRET_METADATA, "s3cr3T".parse().unwrap());
        let wrong = check.call(wrong).unwrap_err();
        assert!(wrong.message().contains("wrong cluster secret") && !wrong.message().contains("s3cr3"));
        let right = security.client_interceptor().call(Request::new(())).unwrap();
        assert!(check.call(right).is_ok());
        assert!(InternalSecurity::plaintext().server_check("Worker").call(Request::new(())).is_ok());
        assert!(!format!("{security:?}").contains("s3cr3t"));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
