//! Building the OpenDAL operator for a parsed location: one function per service, then the
//! common layers (timeout per attempt, jittered bounded retry that logs each retry, a tracing
//! span per operation).

use std::time::Duration;

use opendal::layers::{RetryEvent, RetryLayer, TimeoutLayer, TracingLayer};
use opendal::Operator;

use crate::error::StorageError;
use crate::options::StorageOptions;
use crate::uri::Location;

/// Region used when neither the options nor the environment name one. S3-compatible servers
/// mostly ignore it; AWS needs the bucket's real region.
pub const DEFAULT_S3_REGION: &str = "us-east-1";

/// The operator for `loc`, with layers. Does no I/O.
pub(crate) fn build(loc: &Location, options: &StorageOptions) -> Result<Operator, StorageError> {
    let op = match loc {
        Location::Fs { root, .. } => fs(root)?,
        Location::S3 { uri, bucket, root } => s3(uri, bucket, root, options)?,
        Location::Hdfs { uri, name_node, root } => hdfs(uri, name_node, root)?,
        Location::Swift { uri, container, root } => swift(uri, container, root, options)?,
    };
    let uri = loc.uri().to_string();
    // Layers added later wrap the earlier ones: every retry attempt gets its own timeout.
    let op = op.layer(TimeoutLayer::new().with_timeout(options.op_timeout).with_io_timeout(options.op_timeout)).layer(
        RetryLayer::new()
            .with_jitter()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(options.retries)
            .with_notify(move |e: RetryEvent<'_>| {
                tracing::warn!(
                    storage = %uri, op = ?e.op, attempt = e.attempt,
                    retry_after_ms = e.retry_after.as_millis() as u64,
                    error = %e.err, "storage operation failed; retrying"
                );
            }),
    );
    // Outermost: one span per logical operation, with its retries inside.
    let op = op.layer(TracingLayer::new());
    Ok(op)
}

fn config_error(uri: &str, e: opendal::Error) -> StorageError {
    StorageError::Config { uri: uri.to_string(), message: e.to_string() }
}

fn fs(root: &str) -> Result<Operator, StorageError> {
    // No `atomic_write_dir`: with it the fs service writes a temp file and renames it over
    // the target after a separate existence check, which is not a write-once commit point.
    // Without it, `if_not_exists` opens the target with O_CREAT|O_EXCL.
    let builder = opendal::services::Fs::default().root(root);
    Operator::new(builder).map_err(|e| config_error(&format!("file://{}", root.trim_end_matches('/')), e))
}

#[cfg(feature = "s3")]
fn s3(uri: &str, bucket: &str, root: &str, options: &StorageOptions) -> Result<Operator, StorageError> {
    use crate::options::or_env;

    opendal::install_default();
    let mut b = opendal::services::S3::default().bucket(bucket).root(root);
    if let Some(endpoint) = or_env(&options.s3_endpoint, &["AWS_ENDPOINT_URL"]) {
        b = b.endpoint(endpoint.trim_end_matches('/'));
    }
    let region =
        or_env(&options.s3_region, &["AWS_REGION", "AWS_DEFAULT_REGION"]).unwrap_or_else(|| DEFAULT_S3_REGION.into());
    b = b.region(&region);
    let access = or_env(&options.s3_access_key, &["AWS_ACCESS_KEY_ID"]);
    let secret = or_env(&options.s3_secret_key, &["AWS_SECRET_ACCESS_KEY"]);
    match (access, secret) {
        (Some(a), Some(s)) => b = b.access_key_id(&a).secret_access_key(&s),
        (None, None) => {} // OpenDAL's default chain: profile files, web identity, IMDS.
        (Some(_), None) => {
            return Err(StorageError::Config {
                uri: uri.into(),
                message: "an S3 access key is set but no secret key (s3_secret_key or AWS_SECRET_ACCESS_KEY)".into(),
            })
        }
        (None, Some(_)) => {
            return Err(StorageError::Config {
                uri: uri.into(),
                message: "an S3 secret key is set but no access key (s3_access_key or AWS_ACCESS_KEY_ID)".into(),
            })
        }
    }
    if !options.s3_path_style_access {
        b = b.enable_virtual_host_style();
    }
    Operator::new(b).map_err(|e| config_error(uri, e))
}

#[cfg(not(feature = "s3"))]
fn s3(uri: &str, _: &str, _: &str, _: &StorageOptions) -> Result<Operator, StorageError> {
    Err(not_compiled(uri, "s3"))
}

#[cfg(feature = "hdfs")]
fn hdfs(uri: &str, name_node: &str, root: &str) -> Result<Operator, StorageError> {
    let b = opendal::services::HdfsNative::default().name_node(name_node).root(root);
    Operator::new(b).map_err(|e| config_error(uri, e))
}

#[cfg(not(feature = "hdfs"))]
fn hdfs(uri: &str, _: &str, _: &str) -> Result<Operator, StorageError> {
    Err(not_compiled(uri, "hdfs"))
}

#[cfg(feature = "swift")]
fn swift(uri: &str, container: &str, root: &str, options: &StorageOptions) -> Result<Operator, StorageError> {
    opendal::install_default();
    let Some(endpoint) = options.swift_endpoint.as_deref().filter(|e| !e.is_empty()) else {
        return Err(StorageError::Config {
            uri: uri.into(),
            message: "swift:// needs a Swift endpoint (StorageOptions::swift_endpoint, \
                      e.g. https://swift.example.com/v1/AUTH_account)"
                .into(),
        });
    };
    let mut b = opendal::services::Swift::default().endpoint(endpoint).container(container).root(root);
    if let Some(token) = options.swift_token.as_deref().filter(|t| !t.is_empty()) {
        b = b.token(token);
    }
    Operator::new(b).map_err(|e| config_error(uri, e))
}

#[cfg(not(feature = "swift"))]
fn swift(uri: &str, _: &str, _: &str, _: &StorageOptions) -> Result<Operator, StorageError> {
    Err(not_compiled(uri, "swift"))
}

#[cfg(not(all(feature = "s3", feature = "hdfs", feature = "swift")))]
fn not_compiled(uri: &str, scheme: &str) -> StorageError {
    StorageError::InvalidUri {
        uri: uri.into(),
        reason: format!(
            "scheme {scheme:?} is not compiled into this build (enable cargo feature {scheme:?} of keel-storage)"
        ),
    }
}
