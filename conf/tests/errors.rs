//! Malformed configurations: the exact message a user sees for each.

use keel_conf::{from_str, load, Combination, ConfigError, Source};

const FILE: &str = "conf/config.yaml";

const DURATION: &str = "a duration: a whole number of milliseconds (60000) or a whole number \
    and a unit (500 ms, 5 s, 5s, 1 min, 2 h, 1 d); units: ns, us, µs, ms, s, m, min, h, d or \
    their names (nanos, micros, millis, secs, seconds, minutes, hours, days)";

fn err(text: &str) -> String {
    err_with(text, &[])
}

fn err_with(text: &str, overrides: &[&str]) -> String {
    let overrides: Vec<String> = overrides.iter().map(|s| (*s).to_owned()).collect();
    match from_str(text, FILE, &overrides) {
        Ok(loaded) => panic!("expected an error for {text:?}, got {:?}", loaded.config),
        Err(err) => err.to_string(),
    }
}

#[test]
fn bad_duration() {
    assert_eq!(
        err("rest.port: 8081\nheartbeat.interval: 5 sx\n"),
        format!(
            "invalid value '5 sx' for 'heartbeat.interval' (set at conf/config.yaml:2): \
             unknown time unit 'sx'; expected {DURATION}"
        )
    );
    assert_eq!(
        err("heartbeat.timeout: -5 s\n"),
        format!(
            "invalid value '-5 s' for 'heartbeat.timeout' (set at conf/config.yaml:1): \
             negative durations are not allowed; expected {DURATION}"
        )
    );
    assert_eq!(
        err("high-availability.zookeeper.client.session-timeout: 1.5 min\n"),
        format!(
            "invalid value '1.5 min' for 'high-availability.zookeeper.client.session-timeout' \
             (set at conf/config.yaml:1): fractions are not allowed; use a smaller unit \
             (1500 ms, not 1.5 s); expected {DURATION}"
        )
    );
}

#[test]
fn zero_durations() {
    assert_eq!(
        err("high-availability:\n  zookeeper:\n    client:\n      retry-wait: 0 ms\n"),
        format!(
            "invalid value '0 ms' for 'high-availability.zookeeper.client.retry-wait' \
             (set at conf/config.yaml:4): must be greater than 0; expected {DURATION}"
        )
    );
    assert_eq!(
        err_with("", &["high-availability.zookeeper.client.connection-timeout=0"]),
        format!(
            "invalid value '0' for 'high-availability.zookeeper.client.connection-timeout' \
             (set by -D): must be greater than 0; expected {DURATION}"
        )
    );
}

#[test]
fn bad_port() {
    assert_eq!(
        err("rest.port: 80a81\n"),
        "invalid value '80a81' for 'rest.port' (set at conf/config.yaml:1): not an integer; \
         expected an integer from 0 to 65535"
    );
    assert_eq!(
        err("rest:\n  port: 70000\n"),
        "invalid value '70000' for 'rest.port' (set at conf/config.yaml:2): out of range; \
         expected an integer from 0 to 65535"
    );
    assert_eq!(
        err_with("", &["jobmanager.rpc.port=-1"]),
        "invalid value '-1' for 'jobmanager.rpc.port' (set by -D): negative; expected an \
         integer from 0 to 65535"
    );
}

#[test]
fn zero_slots() {
    assert_eq!(
        err("taskmanager.numberOfTaskSlots: 0\n"),
        "invalid value '0' for 'taskmanager.numberOfTaskSlots' (set at conf/config.yaml:1): \
         a worker needs at least one slot; expected an integer of at least 1"
    );
}

#[test]
fn bad_bool() {
    assert_eq!(
        err("high-availability.zookeeper.client.tolerate-suspended-connections: yes\n"),
        "invalid value 'yes' for \
         'high-availability.zookeeper.client.tolerate-suspended-connections' (set at \
         conf/config.yaml:1): not a boolean; expected true or false"
    );
}

#[test]
fn bad_enum() {
    assert_eq!(
        err("high-availability.type: kubernetes\n"),
        "invalid value 'kubernetes' for 'high-availability.type' (set at conf/config.yaml:1): \
         unknown high-availability type; expected one of none, zookeeper"
    );
}

#[test]
fn empty_value_for_a_key_with_a_default() {
    assert_eq!(
        err("rest.address:\n"),
        "invalid value '' for 'rest.address' (set at conf/config.yaml:1): empty value; \
         expected a host name or IP address"
    );
}

#[test]
fn bad_paths_and_storage_dir() {
    assert_eq!(
        err("high-availability.zookeeper.path.root: keel\n"),
        "invalid value 'keel' for 'high-availability.zookeeper.path.root' (set at \
         conf/config.yaml:1): does not start with '/'; expected a ZooKeeper path such as \
         /keel: starting with '/', without a trailing '/' or empty segments"
    );
    assert_eq!(
        err("high-availability.zookeeper.path.root: /\n"),
        "invalid value '/' for 'high-availability.zookeeper.path.root' (set at \
         conf/config.yaml:1): the ZooKeeper root itself is not allowed; expected a ZooKeeper \
         path such as /keel: starting with '/', without a trailing '/' or empty segments"
    );
    assert_eq!(
        err("high-availability.cluster-id: a//b\n"),
        "invalid value 'a//b' for 'high-availability.cluster-id' (set at conf/config.yaml:1): \
         empty path segment; expected a ZooKeeper path such as /default or default, without \
         empty segments"
    );
    assert_eq!(
        err("high-availability.storageDir: gs://bucket/ha\n"),
        "invalid value 'gs://bucket/ha' for 'high-availability.storageDir' (set at \
         conf/config.yaml:1): unsupported scheme 'gs://'; expected a URI with scheme file://, \
         s3://, hdfs:// or swift://, or an absolute path"
    );
    assert_eq!(
        err("high-availability.storageDir: data/ha\n"),
        "invalid value 'data/ha' for 'high-availability.storageDir' (set at \
         conf/config.yaml:1): neither a URI nor an absolute path; expected a URI with scheme \
         file://, s3://, hdfs:// or swift://, or an absolute path"
    );
}

#[test]
fn yaml_syntax_error_with_line() {
    assert_eq!(
        err("rest.port: 8081\nrest.address: [a, b\n"),
        "YAML syntax error at conf/config.yaml:3:1: while parsing a flow sequence, expected \
         ',' or ']'"
    );
    assert_eq!(
        err("rest.port: 8081\n  heartbeat.interval: 1 s\n"),
        "YAML syntax error at conf/config.yaml:2:21: mapping values are not allowed in this \
         context"
    );
    assert_eq!(
        err("high-availability:\n\tzookeeper: {}\n"),
        "YAML syntax error at conf/config.yaml:2:2: tabs disallowed within this context \
         (block indentation)"
    );
}

#[test]
fn duplicate_key() {
    assert_eq!(
        err("rest.port: 1\nrest.port: 2\n"),
        "duplicate key 'rest.port' in conf/config.yaml: set at line 1 and again at line 2"
    );
    assert_eq!(
        err("heartbeat.interval: 1 s\nrpc.port: 1\nheartbeat:\n  interval: 2 s\n"),
        "duplicate key 'heartbeat.interval' in conf/config.yaml: set at line 1 and again at \
         line 4"
    );
}

#[test]
fn quorum_entry_without_port() {
    assert_eq!(
        err("high-availability.type: zookeeper\nhigh-availability.zookeeper.quorum: zk1:2181,zk2\n"),
        "invalid value 'zk1:2181,zk2' for 'high-availability.zookeeper.quorum' (set at \
         conf/config.yaml:2): entry 'zk2' has no port; expected a comma-separated list of \
         host:port, for example zk1:2181,zk2:2181,zk3:2181"
    );
    assert_eq!(
        err_with("", &["high-availability.zookeeper.quorum=zk1:21a"]),
        "invalid value 'zk1:21a' for 'high-availability.zookeeper.quorum' (set by -D): entry \
         'zk1:21a' has port '21a', which is not a number from 1 to 65535; expected a \
         comma-separated list of host:port, for example zk1:2181,zk2:2181,zk3:2181"
    );
}

#[test]
fn missing_quorum_with_zookeeper() {
    assert_eq!(
        err("high-availability:\n  type: zookeeper\n"),
        "missing required key 'high-availability.zookeeper.quorum': required when \
         'high-availability.type' is 'zookeeper' (set at conf/config.yaml:2); expected a \
         comma-separated list of host:port, for example zk1:2181,zk2:2181,zk3:2181"
    );
    assert_eq!(
        err_with(
            "high-availability.zookeeper.quorum: zk:2181\n",
            &["high-availability.type=zookeeper", "high-availability.zookeeper.quorum="]
        ),
        "missing required key 'high-availability.zookeeper.quorum': required when \
         'high-availability.type' is 'zookeeper' (set by -D); expected a comma-separated list \
         of host:port, for example zk1:2181,zk2:2181,zk3:2181"
    );
}

#[test]
fn heartbeat_timeout_not_above_interval() {
    assert_eq!(
        err("heartbeat:\n  interval: 10 s\n  timeout: 10000\n"),
        "invalid combination: 'heartbeat.timeout' = '10000' (set at conf/config.yaml:3) must \
         be greater than 'heartbeat.interval' = '10 s' (set at conf/config.yaml:2)"
    );
    assert_eq!(
        err_with("", &["heartbeat.timeout=5 s"]),
        "invalid combination: 'heartbeat.timeout' = '5 s' (set by -D) must be greater than \
         'heartbeat.interval' = '10 s' (default)"
    );
}

#[test]
fn malformed_override() {
    assert_eq!(
        err_with("", &["foo"]),
        "malformed -D override 'foo': expected key=value, for example -D rest.port=8082"
    );
    assert_eq!(
        err_with("", &["=8082"]),
        "malformed -D override '=8082': expected key=value, for example -D rest.port=8082"
    );
}

#[test]
fn list_or_mapping_where_a_scalar_is_expected() {
    assert_eq!(
        err("high-availability.zookeeper.quorum:\n  - zk1:2181\n  - zk2:2181\n"),
        "invalid value for 'high-availability.zookeeper.quorum' (set at conf/config.yaml:1): \
         found a list where a single value belongs; expected a comma-separated list of \
         host:port, for example zk1:2181,zk2:2181,zk3:2181"
    );
    assert_eq!(
        err("rest:\n  port:\n    value: 8081\n"),
        "invalid value for 'rest.port' (set at conf/config.yaml:2): found a mapping where a \
         single value belongs; expected an integer from 0 to 65535"
    );
}

#[test]
fn top_level_not_a_mapping() {
    assert_eq!(
        err("- rest.port: 8081\n"),
        "invalid configuration file conf/config.yaml: the top level must be a mapping of keys \
         to values (key: value), found a list at line 1"
    );
}

#[test]
fn unreadable_file() {
    let path = std::path::Path::new("/nonexistent/keel/config.yaml");
    let error = load(Some(path), &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot read configuration file '/nonexistent/keel/config.yaml': No such file or \
         directory (os error 2)"
    );
    let dir = std::env::temp_dir();
    let error = load(Some(&dir), &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("cannot read configuration file '{}': Is a directory (os error 21)", dir.display())
    );
}

#[test]
fn file_that_is_not_utf8() {
    let path = std::env::temp_dir().join(format!("keel-conf-latin1-{}.yaml", std::process::id()));
    std::fs::write(&path, b"rest.address: caf\xe9\n").unwrap();
    let error = load(Some(&path), &[]).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        error.to_string(),
        format!("cannot read configuration file '{}': stream did not contain valid UTF-8", path.display())
    );
}

#[test]
fn errors_are_comparable_values() {
    let error = from_str("rest.port: x\n", FILE, &[]).unwrap_err();
    assert_eq!(
        error,
        ConfigError::BadValue {
            key: "rest.port",
            value: "x".to_owned(),
            at: Source::File { path: FILE.to_owned(), line: 1 },
            problem: "not an integer".to_owned(),
            expected: "an integer from 0 to 65535",
        }
    );
    let error = from_str("", FILE, &["heartbeat.interval=1 min".to_owned()]).unwrap_err();
    assert_eq!(
        error,
        ConfigError::InvalidCombination(Box::new(Combination {
            key: "heartbeat.timeout",
            value: "50 s".to_owned(),
            at: Source::Default,
            rule: "must be greater than",
            other_key: "heartbeat.interval",
            other_value: "1 min".to_owned(),
            other_at: Source::Override,
        }))
    );
}

#[test]
fn error_stays_small() {
    // Callers return Result<_, ConfigError>; keep it under clippy's result_large_err limit.
    assert!(std::mem::size_of::<ConfigError>() < 128);
}

#[test]
fn first_error_in_file_order_is_reported() {
    assert_eq!(
        err("rpc.port: bad\nrest.port: alsobad\n"),
        "invalid value 'bad' for 'rpc.port' (set at conf/config.yaml:1): not an integer; \
         expected an integer from 0 to 65535"
    );
}

#[test]
fn bad_state_backend() {
    assert_eq!(
        err("state.backend: memory\n"),
        "invalid value 'memory' for 'state.backend' (set at conf/config.yaml:1): unknown state \
         backend; expected one of hashmap, rocksdb (or Flink's legacy filesystem, jobmanager for \
         hashmap)"
    );
    assert_eq!(
        err("state:\n  backend: {}\n"),
        "invalid value for 'state.backend' (set at conf/config.yaml:2): found a mapping where a \
         single value belongs; expected one of hashmap, rocksdb (or Flink's legacy filesystem, \
         jobmanager for hashmap)"
    );
}

#[test]
fn zero_retained_checkpoints() {
    assert_eq!(
        err("state.checkpoints.num-retained: 0\n"),
        "invalid value '0' for 'state.checkpoints.num-retained' (set at conf/config.yaml:1): \
         must keep at least one completed checkpoint; expected an integer of at least 1"
    );
    assert_eq!(
        err_with("", &["state.checkpoints.num-retained=-2"]),
        "invalid value '-2' for 'state.checkpoints.num-retained' (set by -D): negative; expected \
         an integer of at least 1"
    );
}

#[test]
fn bad_s3_endpoint() {
    assert_eq!(
        err("s3.endpoint: ftp://minio:9000\n"),
        "invalid value 'ftp://minio:9000' for 's3.endpoint' (set at conf/config.yaml:1): \
         unsupported scheme 'ftp://'; expected an http:// or https:// URL, for example \
         http://minio:9000"
    );
    assert_eq!(
        err("s3:\n  endpoint: minio:9000\n"),
        "invalid value 'minio:9000' for 's3.endpoint' (set at conf/config.yaml:2): not a URL \
         (no scheme://); expected an http:// or https:// URL, for example http://minio:9000"
    );
    assert_eq!(
        err_with("", &["s3.endpoint=http://minio:9x"]),
        "invalid value 'http://minio:9x' for 's3.endpoint' (set by -D): port '9x' is not a \
         number from 1 to 65535; expected an http:// or https:// URL, for example \
         http://minio:9000"
    );
}

#[test]
fn bad_checkpoints_dir() {
    assert_eq!(
        err("state.checkpoints.dir: gs://bucket/cp\n"),
        "invalid value 'gs://bucket/cp' for 'state.checkpoints.dir' (set at conf/config.yaml:1): \
         unsupported scheme 'gs://'; expected a URI with scheme file://, s3://, hdfs:// or \
         swift://, or an absolute path"
    );
    assert_eq!(
        err("state.checkpoints.dir: checkpoints\n"),
        "invalid value 'checkpoints' for 'state.checkpoints.dir' (set at conf/config.yaml:1): \
         neither a URI nor an absolute path; expected a URI with scheme file://, s3://, hdfs:// \
         or swift://, or an absolute path"
    );
    assert_eq!(
        err("state.checkpoints.dir: file://cp\n"),
        "invalid value 'file://cp' for 'state.checkpoints.dir' (set at conf/config.yaml:1): a \
         file:// URI needs an absolute path (file:///data/keel); expected a URI with scheme \
         file://, s3://, hdfs:// or swift://, or an absolute path"
    );
}

#[test]
fn bad_local_directories() {
    assert_eq!(
        err("io.tmp.dirs: /tmp,scratch\n"),
        "invalid value '/tmp,scratch' for 'io.tmp.dirs' (set at conf/config.yaml:1): entry \
         'scratch' is not an absolute path; expected absolute directory paths separated by ',' \
         or ':', for example /tmp or /data1/tmp,/data2/tmp"
    );
    assert_eq!(
        err("io.tmp.dirs: '/a,,/b'\n"),
        "invalid value '/a,,/b' for 'io.tmp.dirs' (set at conf/config.yaml:1): empty entry (two \
         separators in a row, or a leading or trailing one); expected absolute directory paths \
         separated by ',' or ':', for example /tmp or /data1/tmp,/data2/tmp"
    );
    assert_eq!(
        err("io.tmp.dirs:\n"),
        "invalid value '' for 'io.tmp.dirs' (set at conf/config.yaml:1): empty value; expected \
         absolute directory paths separated by ',' or ':', for example /tmp or \
         /data1/tmp,/data2/tmp"
    );
    assert_eq!(
        err("state.backend.rocksdb.localdir: rocksdb\n"),
        "invalid value 'rocksdb' for 'state.backend.rocksdb.localdir' (set at \
         conf/config.yaml:1): not an absolute path; expected one absolute directory path, for \
         example /var/lib/keel/rocksdb"
    );
}

#[test]
fn bad_checkpoint_durations_and_booleans() {
    assert_eq!(
        err("execution.checkpointing.timeout: 0 s\n"),
        format!(
            "invalid value '0 s' for 'execution.checkpointing.timeout' (set at \
             conf/config.yaml:1): must be greater than 0; expected {DURATION}"
        )
    );
    assert_eq!(
        err_with("", &["high-availability.recovery.worker-wait=-10 s"]),
        format!(
            "invalid value '-10 s' for 'high-availability.recovery.worker-wait' (set by -D): \
             negative durations are not allowed; expected {DURATION}"
        )
    );
    assert_eq!(
        err("state.backend.local-recovery: enabled\n"),
        "invalid value 'enabled' for 'state.backend.local-recovery' (set at conf/config.yaml:1): \
         not a boolean; expected true or false"
    );
    assert_eq!(
        err("s3.path.style.access: 1\n"),
        "invalid value '1' for 's3.path.style.access' (set at conf/config.yaml:1): not a \
         boolean; expected true or false"
    );
}

#[test]
fn secrets_are_masked_in_errors() {
    let message = err("s3.secret-key: wJalr XUtnFEMI\n");
    assert_eq!(
        message,
        "invalid value '******' for 's3.secret-key' (set at conf/config.yaml:1): contains \
         whitespace; expected a secret key without whitespace"
    );
    assert!(!message.contains("wJalr"));
    let message = err_with("", &["rest.auth.token=Bearer s3cr3t"]);
    assert_eq!(
        message,
        "invalid value '******' for 'rest.auth.token' (set by -D): contains whitespace; expected \
         a token without whitespace"
    );
    assert!(!message.contains("s3cr3t"));
    let error = from_str("s3.secret-key: 'a\tb'\n", FILE, &[]).unwrap_err();
    assert_eq!(
        error,
        ConfigError::BadValue {
            key: "s3.secret-key",
            value: "******".to_owned(),
            at: Source::File { path: FILE.to_owned(), line: 1 },
            problem: "contains whitespace".to_owned(),
            expected: "a secret key without whitespace",
        }
    );
    assert!(!format!("{error:?}").contains("a\tb"));
    // Not secret: the access key id is shown.
    assert_eq!(
        err("s3.access-key: AKIA EXAMPLE\n"),
        "invalid value 'AKIA EXAMPLE' for 's3.access-key' (set at conf/config.yaml:1): contains \
         whitespace; expected an access key id without whitespace"
    );
}

#[test]
fn bad_advertised_address() {
    assert_eq!(
        err("rpc.advertised-address: proxy.example\n"),
        "invalid value 'proxy.example' for 'rpc.advertised-address' (set at conf/config.yaml:1): no port; expected host:port, for example proxy.example:7001"
    );
    assert_eq!(
        err("rpc.advertised-address: proxy.example:70000\n"),
        "invalid value 'proxy.example:70000' for 'rpc.advertised-address' (set at conf/config.yaml:1): port '70000' is not a number from 1 to 65535; expected host:port, for example proxy.example:7001"
    );
}

#[test]
fn zookeeper_security_combinations() {
    const USERNAME: &str = "a user name without whitespace";
    assert_eq!(
        err("high-availability.zookeeper.client.acl: creator\n"),
        format!(
            "missing required key 'high-availability.zookeeper.client.sasl.username': required when \
             'high-availability.zookeeper.client.acl' is 'creator' (set at conf/config.yaml:1): only an \
             authenticated session can own znodes; expected {USERNAME}"
        )
    );
    assert_eq!(
        err("high-availability.zookeeper.client.sasl.username: keel\n"),
        "missing required key 'high-availability.zookeeper.client.sasl.password': required when \
         'high-availability.zookeeper.client.sasl.username' is set (set at conf/config.yaml:1); expected a \
         password without whitespace"
    );
    let disabled = err("high-availability.zookeeper.client.sasl.username: keel\n\
         high-availability.zookeeper.client.sasl.password: Pw-123\n\
         high-availability.zookeeper.client.acl: creator\n\
         zookeeper.sasl.disable: true\n");
    assert!(
        disabled.starts_with("invalid combination: 'high-availability.zookeeper.client.acl' = 'creator'"),
        "{disabled}"
    );
    assert!(disabled.contains("'zookeeper.sasl.disable' = 'true' (set at conf/config.yaml:4)"), "{disabled}");
    assert!(!disabled.contains("Pw-123"), "{disabled}");
    assert_eq!(
        err_with("", &["zookeeper.client.secure=true"]),
        "missing required key 'zookeeper.ssl.trustStore.location': required when 'zookeeper.client.secure' \
         is 'true' (set by -D); expected an absolute path to a PEM file, for example /etc/keel/tls/zk-ca.pem"
    );
    let acl = err("high-availability.zookeeper.client.acl: world\n");
    assert!(acl.contains("one of open, creator"), "{acl}");
    let password = err("high-availability.zookeeper.client.sasl.password: two words\n");
    assert!(!password.contains("two words"), "a refused secret is echoed: {password}");
}

#[test]
fn kerberos_combinations() {
    assert_eq!(
        err("security.kerberos.login.keytab: /etc/keel/keel.keytab\n"),
        "missing required key 'security.kerberos.login.principal': required when \
         'security.kerberos.login.keytab' is set (set at conf/config.yaml:1); expected a Kerberos principal \
         without whitespace, for example keel/host@EXAMPLE.COM"
    );
    assert_eq!(
        err("security.kerberos.login.contexts: Client\n"),
        "missing required key 'security.kerberos.login.keytab': required when 'security.kerberos.login.contexts' \
         ('Client', set at conf/config.yaml:1) lists the ZooKeeper login context; expected an absolute path to \
         a keytab file, for example /etc/keel/keel.keytab"
    );
    let both = err("security.kerberos.login.keytab: /k\nsecurity.kerberos.login.principal: keel@R\n\
         security.kerberos.login.contexts: Client\nhigh-availability.zookeeper.client.sasl.username: keel\n\
         high-availability.zookeeper.client.sasl.password: pw\n");
    assert!(both.starts_with("invalid combination: 'high-availability.zookeeper.client.sasl.username'"), "{both}");
    let service = err("zookeeper.sasl.service-name: zookeeper/host\n");
    assert!(service.contains("give the service name only"), "{service}");
    // Kerberos satisfies creator ACLs; another context name does not select it.
    let krb = "security.kerberos.login.keytab: /k\nsecurity.kerberos.login.principal: keel@R\n";
    assert!(from_str(
        &format!("{krb}security.kerberos.login.contexts: Client\nhigh-availability.zookeeper.client.acl: creator\n"),
        FILE,
        &[]
    )
    .is_ok());
    let other = err(&format!(
        "{krb}security.kerberos.login.contexts: KafkaClient\nhigh-availability.zookeeper.client.acl: creator\n"
    ));
    assert!(other.contains("only an authenticated session can own znodes"), "{other}");
}
