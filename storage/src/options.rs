//! Options for opening a storage directory.

use std::time::Duration;

/// How to reach the storage backend. Fields a backend does not use are ignored.
///
/// The defaults ([`StorageOptions::default`]): no S3 or Swift settings (S3 falls back to the
/// usual AWS environment variables, see [`StorageDir::open`](crate::StorageDir::open)),
/// virtual-host-style S3 addressing, a 10 s timeout per operation attempt and 3 retries.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageOptions {
    /// S3 endpoint, e.g. `http://127.0.0.1:9000`; else `AWS_ENDPOINT_URL`; else AWS.
    pub s3_endpoint: Option<String>,
    /// S3 region; else `AWS_REGION`, `AWS_DEFAULT_REGION`; else `us-east-1`.
    pub s3_region: Option<String>,
    /// S3 access key id; else `AWS_ACCESS_KEY_ID`; else OpenDAL's default credential chain.
    pub s3_access_key: Option<String>,
    /// S3 secret access key; else `AWS_SECRET_ACCESS_KEY`.
    pub s3_secret_key: Option<String>,
    /// `true`: `http://endpoint/bucket/key` (MinIO, moto, most S3-compatible servers);
    /// `false`: `http://bucket.endpoint/key` (AWS's preferred form). Flink's
    /// `s3.path.style.access`. Default `false`.
    pub s3_path_style_access: bool,
    /// OpenStack Swift endpoint including the account, e.g.
    /// `https://swift.example.com/v1/AUTH_account`. Required for `swift://`.
    pub swift_endpoint: Option<String>,
    /// OpenStack Swift auth token.
    pub swift_token: Option<String>,
    /// Timeout of one attempt of one operation (and of each I/O step within it). Default 10 s.
    pub op_timeout: Duration,
    /// How many times a temporary backend failure is retried (jittered exponential backoff,
    /// 50 ms doubling up to 2 s). `0` disables retries. Default 3.
    pub retries: usize,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            s3_endpoint: None,
            s3_region: None,
            s3_access_key: None,
            s3_secret_key: None,
            s3_path_style_access: false,
            swift_endpoint: None,
            swift_token: None,
            op_timeout: Duration::from_secs(10),
            retries: 3,
        }
    }
}

/// Secrets are not printed.
impl std::fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("StorageOptions")
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_region", &self.s3_region)
            .field("s3_access_key", &self.s3_access_key)
            .field("s3_secret_key", &redact(&self.s3_secret_key))
            .field("s3_path_style_access", &self.s3_path_style_access)
            .field("swift_endpoint", &self.swift_endpoint)
            .field("swift_token", &redact(&self.swift_token))
            .field("op_timeout", &self.op_timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

impl StorageOptions {
    /// Sets the S3 endpoint and turns on path-style addressing (what S3-compatible servers
    /// such as MinIO or moto want).
    pub fn with_s3_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.s3_endpoint = Some(endpoint.into());
        self.s3_path_style_access = true;
        self
    }

    /// Sets the S3 region.
    pub fn with_s3_region(mut self, region: impl Into<String>) -> Self {
        self.s3_region = Some(region.into());
        self
    }

    /// Sets static S3 credentials.
    pub fn with_s3_credentials(mut self, access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        self.s3_access_key = Some(access_key.into());
        self.s3_secret_key = Some(secret_key.into());
        self
    }

    /// Sets the Swift endpoint and token.
    pub fn with_swift(mut self, endpoint: impl Into<String>, token: impl Into<String>) -> Self {
        self.swift_endpoint = Some(endpoint.into());
        self.swift_token = Some(token.into());
        self
    }

    /// Sets the per-attempt timeout.
    pub fn with_op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Sets the number of retries of temporary failures.
    pub fn with_retries(mut self, retries: usize) -> Self {
        self.retries = retries;
        self
    }
}

/// `value`, else the first non-empty environment variable of `vars`.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) fn or_env(value: &Option<String>, vars: &[&str]) -> Option<String> {
    value
        .clone()
        .filter(|v| !v.is_empty())
        .or_else(|| vars.iter().find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty())))
}
