//! The typed configuration and the per-key parsing of values.

use std::fmt;
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

/// The effective configuration. Build it with [`load`](crate::load) or
/// [`from_str`](crate::from_str), which validate it; [`Config::defaults`] gives the defaults.
#[derive(Debug, Clone, PartialEq)]
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
    /// `heartbeat.interval`.
    pub heartbeat_interval: ConfDuration,
    /// `heartbeat.timeout`.
    pub heartbeat_timeout: ConfDuration,
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
            rest_address: "127.0.0.1".to_owned(),
            rest_port: 8081,
            rpc_address: "127.0.0.1".to_owned(),
            rpc_port: 0,
            jobmanager_rpc_address: "127.0.0.1".to_owned(),
            jobmanager_rpc_port: 6123,
            taskmanager_slots: 1,
            taskmanager_resource_id: None,
            heartbeat_interval: duration(10, "10 s"),
            heartbeat_timeout: duration(50, "50 s"),
        }
    }

    /// The znode of this cluster: `zk_path_root` + `cluster_id`, for example `/keel/default`.
    #[must_use]
    pub fn ha_root(&self) -> String {
        format!("{}{}", self.zk_path_root, self.cluster_id)
    }

    /// The effective value of a known `key` as text (empty when unset); `None` for an
    /// unknown key.
    #[must_use]
    pub fn value_of(&self, key: &str) -> Option<String> {
        Field::of(key).map(|field| field.get(self))
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
    RestAddress,
    RestPort,
    RpcAddress,
    RpcPort,
    JobmanagerRpcAddress,
    JobmanagerRpcPort,
    TaskmanagerSlots,
    TaskmanagerResourceId,
    HeartbeatInterval,
    HeartbeatTimeout,
}

const QUORUM_EXPECTED: &str = "a comma-separated list of host:port, for example zk1:2181,zk2:2181,zk3:2181";
const PORT_EXPECTED: &str = "an integer from 0 to 65535";
const ADDRESS_EXPECTED: &str = "a host name or IP address";
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
            "rest.address" => Field::RestAddress,
            "rest.port" => Field::RestPort,
            "rpc.address" => Field::RpcAddress,
            "rpc.port" => Field::RpcPort,
            "jobmanager.rpc.address" => Field::JobmanagerRpcAddress,
            "jobmanager.rpc.port" => Field::JobmanagerRpcPort,
            "taskmanager.numberOfTaskSlots" => Field::TaskmanagerSlots,
            "taskmanager.resource-id" => Field::TaskmanagerResourceId,
            "heartbeat.interval" => Field::HeartbeatInterval,
            "heartbeat.timeout" => Field::HeartbeatTimeout,
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
            Field::StorageDir => "a URI with scheme file://, s3://, hdfs:// or swift://, or an absolute path",
            Field::ZkSessionTimeout
            | Field::ZkConnectionTimeout
            | Field::ZkRetryWait
            | Field::HeartbeatInterval
            | Field::HeartbeatTimeout => DURATION_FORMS,
            Field::ZkTolerateSuspended => "true or false",
            Field::RestAddress | Field::RpcAddress | Field::JobmanagerRpcAddress => ADDRESS_EXPECTED,
            Field::RestPort | Field::RpcPort | Field::JobmanagerRpcPort => PORT_EXPECTED,
            Field::TaskmanagerSlots => "an integer of at least 1",
            Field::TaskmanagerResourceId => "an identifier without whitespace",
        }
    }

    /// Whether the key may be unset (has no default).
    pub(crate) fn optional(self) -> bool {
        matches!(self, Field::ZkQuorum | Field::StorageDir | Field::TaskmanagerResourceId)
    }

    /// Parses `text` into the field of `config`; `None` unsets an optional field.
    pub(crate) fn set(self, config: &mut Config, text: Option<&str>) -> Result<(), Invalid> {
        let invalid = |problem: &str| Invalid { problem: problem.to_owned(), expected: self.expected() };
        let text = match text.map(str::trim) {
            Some(text) if !text.is_empty() => text,
            _ if self.optional() => {
                match self {
                    Field::ZkQuorum => config.zk_quorum = None,
                    Field::StorageDir => config.storage_dir = None,
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
                config.zk_tolerate_suspended_connections = match text.to_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid("not a boolean")),
                }
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
            Field::TaskmanagerResourceId => {
                if text.chars().any(char::is_whitespace) {
                    return Err(invalid("contains whitespace"));
                }
                config.taskmanager_resource_id = Some(text.to_owned());
            }
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
            Field::RestAddress => config.rest_address.clone(),
            Field::RestPort => config.rest_port.to_string(),
            Field::RpcAddress => config.rpc_address.clone(),
            Field::RpcPort => config.rpc_port.to_string(),
            Field::JobmanagerRpcAddress => config.jobmanager_rpc_address.clone(),
            Field::JobmanagerRpcPort => config.jobmanager_rpc_port.to_string(),
            Field::TaskmanagerSlots => config.taskmanager_slots.to_string(),
            Field::TaskmanagerResourceId => config.taskmanager_resource_id.clone().unwrap_or_default(),
            Field::HeartbeatInterval => config.heartbeat_interval.text.clone(),
            Field::HeartbeatTimeout => config.heartbeat_timeout.text.clone(),
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
    }

    #[test]
    fn optional_fields_unset() {
        let mut config = Config::defaults();
        Field::ZkQuorum.set(&mut config, Some("a:1")).unwrap();
        Field::ZkQuorum.set(&mut config, None).unwrap();
        assert_eq!(config.zk_quorum, None);
        Field::StorageDir.set(&mut config, Some(" ")).unwrap();
        assert_eq!(config.storage_dir, None);
    }

    #[test]
    fn ha_root_joins_root_and_cluster_id() {
        assert_eq!(Config::defaults().ha_root(), "/keel/default");
    }
}
