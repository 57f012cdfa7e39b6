//! Loading: every key in flat, nested and `-D` form, precedence, provenance, warnings.

use std::time::Duration;

use keel_conf::{from_str, load, Config, HaType, Source, StateBackendKind, KEYS};

const FILE: &str = "conf/config.yaml";

fn d(overrides: &[&str]) -> Vec<String> {
    overrides.iter().map(|s| (*s).to_owned()).collect()
}

/// A valid non-default value for every key, and the effective value it should produce.
/// Values for `high-availability.type` come with the quorum it needs (added by `base`).
/// Secrets show as `******`.
const SAMPLES: &[(&str, &str, &str)] = &[
    ("high-availability.type", "ZooKeeper", "zookeeper"),
    ("high-availability.zookeeper.quorum", "zk1:2181, zk2:2182", "zk1:2181,zk2:2182"),
    ("high-availability.zookeeper.path.root", "/flink/keel", "/flink/keel"),
    ("high-availability.cluster-id", "prod-eu", "/prod-eu"),
    ("high-availability.storageDir", "/mnt/nfs/keel", "file:///mnt/nfs/keel"),
    ("high-availability.zookeeper.client.session-timeout", "30 s", "30 s"),
    ("high-availability.zookeeper.client.connection-timeout", "2500", "2500"),
    ("high-availability.zookeeper.client.retry-wait", "1min", "1min"),
    ("high-availability.zookeeper.client.tolerate-suspended-connections", "TRUE", "true"),
    ("high-availability.fast-failover.enabled", "FALSE", "false"),
    ("high-availability.zookeeper.client.sasl.username", "keel", "keel"),
    ("high-availability.zookeeper.client.sasl.password", "zk-Secret-1", "******"),
    ("zookeeper.sasl.disable", "FALSE", "false"),
    ("high-availability.zookeeper.client.acl", "Creator", "creator"),
    ("zookeeper.client.secure", "true", "true"),
    ("zookeeper.ssl.trustStore.location", "/etc/keel/tls/zk-ca.pem", "/etc/keel/tls/zk-ca.pem"),
    ("zookeeper.ssl.keyStore.location", "/etc/keel/tls/zk-client.pem", "/etc/keel/tls/zk-client.pem"),
    ("security.kerberos.login.keytab", "/etc/keel/keel.keytab", "/etc/keel/keel.keytab"),
    ("security.kerberos.login.principal", "keel/host1@EXAMPLE.COM", "keel/host1@EXAMPLE.COM"),
    ("security.kerberos.login.contexts", "KafkaClient, Other", "KafkaClient,Other"),
    ("zookeeper.sasl.service-name", "zk", "zk"),
    ("zookeeper.sasl.login-context-name", "ZkClient", "ZkClient"),
    ("high-availability.recovery.worker-wait", "0 s", "0 s"),
    ("high-availability.adoption.timeout", "0 s", "0 s"),
    ("application-attempts", "3", "3"),
    ("rest.address", "0.0.0.0", "0.0.0.0"),
    ("rest.port", "8082", "8082"),
    ("rest.bind-address", "0.0.0.0", "0.0.0.0"),
    ("rest.bind-port", "8081 - 8090", "8081-8090"),
    ("rest.auth.token", "t0ken-Secret", "******"),
    ("rest.admin.enabled", "TRUE", "true"),
    ("rest.auth.read", "false", "false"),
    ("metrics.reporter.prom.port", "9300-9310", "9300-9310"),
    ("security.internal.secret", "s3cr3t-value", "******"),
    ("security.ssl.internal.enabled", "FALSE", "false"),
    ("security.ssl.internal.key", "/etc/keel/tls/node.key", "/etc/keel/tls/node.key"),
    ("security.ssl.internal.cert", "/etc/keel/tls/node.pem", "/etc/keel/tls/node.pem"),
    ("security.ssl.internal.truststore", "/etc/keel/tls/ca.pem", "/etc/keel/tls/ca.pem"),
    ("security.ssl.rest.enabled", "true", "true"),
    ("security.ssl.rest.key", "/etc/keel/tls/rest.key", "/etc/keel/tls/rest.key"),
    ("security.ssl.rest.cert", "/etc/keel/tls/rest.pem", "/etc/keel/tls/rest.pem"),
    ("security.ssl.rest.truststore", "/etc/keel/tls/ca.pem", "/etc/keel/tls/ca.pem"),
    ("rpc.address", "10.1.2.3", "10.1.2.3"),
    ("rpc.port", "7000", "7000"),
    ("jobmanager.rpc.address", "jm.example.com", "jm.example.com"),
    ("jobmanager.rpc.port", "6124", "6124"),
    ("jobmanager.bind-host", "0.0.0.0", "0.0.0.0"),
    ("taskmanager.numberOfTaskSlots", "8", "8"),
    ("taskmanager.resource-id", "worker-7", "worker-7"),
    ("taskmanager.host", "tm-1.example", "tm-1.example"),
    ("rpc.advertised-address", "proxy.example:7001", "proxy.example:7001"),
    ("heartbeat.interval", "2 s", "2 s"),
    ("heartbeat.timeout", "1 min", "1 min"),
    ("state.backend", "RocksDB", "rocksdb"),
    ("state.backend.rocksdb.localdir", "/var/lib/keel/rocksdb", "/var/lib/keel/rocksdb"),
    ("state.backend.incremental", "TRUE", "true"),
    ("state.backend.local-recovery", "true", "true"),
    ("state.checkpoints.dir", "HDFS://nn:8020/keel/cp", "hdfs://nn:8020/keel/cp"),
    ("state.checkpoints.num-retained", "3", "3"),
    ("execution.checkpointing.timeout", "90 s", "90 s"),
    ("execution.checkpointing.interval", "500 ms", "500 ms"),
    ("state.savepoints.dir", "/mnt/savepoints", "file:///mnt/savepoints"),
    ("parallelism.default", "4", "4"),
    ("restart-strategy.type", "NO-RESTART", "none"),
    ("restart-strategy.fixed-delay.attempts", "0", "0"),
    ("restart-strategy.fixed-delay.delay", "0 s", "0 s"),
    ("io.tmp.dirs", "/data1/tmp:/data2/tmp, /data3/tmp", "/data1/tmp,/data2/tmp,/data3/tmp"),
    ("s3.endpoint", "HTTP://minio:9000", "http://minio:9000"),
    ("s3.region", "eu-west-1", "eu-west-1"),
    ("s3.access-key", "AKIAEXAMPLE", "AKIAEXAMPLE"),
    ("s3.secret-key", "wJalrXUtnFEMI/K7MDENG", "******"),
    ("s3.path.style.access", "True", "true"),
];

/// The quorum a `high-availability.type: zookeeper` sample needs, unless it is the sample.
fn extra_for(key: &str) -> &'static str {
    match key {
        "high-availability.type" => "high-availability.zookeeper.quorum: zk:2181\n",
        // SASL user and password come together; creator ACLs need them; TLS a truststore.
        "high-availability.zookeeper.client.sasl.username" => "high-availability.zookeeper.client.sasl.password: p\n",
        "high-availability.zookeeper.client.sasl.password" => "high-availability.zookeeper.client.sasl.username: u\n",
        "high-availability.zookeeper.client.acl" => {
            "high-availability.zookeeper.client.sasl.username: u\nhigh-availability.zookeeper.client.sasl.password: p\n"
        }
        "zookeeper.client.secure" => "zookeeper.ssl.trustStore.location: /etc/keel/tls/zk-ca.pem\n",
        "security.kerberos.login.keytab" => "security.kerberos.login.principal: keel@EXAMPLE.COM\n",
        "security.kerberos.login.principal" => "security.kerberos.login.keytab: /etc/keel/keel.keytab\n",
        _ => "",
    }
}

fn nested(key: &str, value: &str) -> String {
    let mut out = String::new();
    let parts: Vec<&str> = key.split('.').collect();
    for (depth, part) in parts.iter().enumerate() {
        out.push_str(&"  ".repeat(depth));
        out.push_str(part);
        out.push(':');
        if depth + 1 == parts.len() {
            out.push(' ');
            out.push_str(value);
        }
        out.push('\n');
    }
    out
}

#[test]
fn samples_cover_every_key() {
    let sampled: Vec<&str> = SAMPLES.iter().map(|(key, _, _)| *key).collect();
    let known: Vec<&str> = KEYS.iter().map(|doc| doc.key).collect();
    assert_eq!(sampled, known);
}

#[test]
fn every_key_from_flat_form() {
    for (key, value, effective) in SAMPLES {
        let text = format!("# comment\n{key}: {value}\n{}", extra_for(key));
        let loaded = from_str(&text, FILE, &[]).unwrap_or_else(|e| panic!("{key}: {e}"));
        let entry = loaded.entry(key).unwrap();
        assert_eq!(entry.value, *effective, "{key}");
        assert_eq!(entry.source, Source::File { path: FILE.to_owned(), line: 2 }, "{key}");
        let unknown: Vec<&String> = loaded.warnings.iter().filter(|w| w.starts_with("unknown key")).collect();
        assert!(unknown.is_empty(), "{key}: {unknown:?}");
    }
}

#[test]
fn every_key_from_nested_form() {
    for (key, value, effective) in SAMPLES {
        let text = format!("{}{}", extra_for(key), nested(key, value));
        let loaded = from_str(&text, FILE, &[]).unwrap_or_else(|e| panic!("{key}: {e}"));
        let entry = loaded.entry(key).unwrap();
        assert_eq!(entry.value, *effective, "{key}");
        let line = extra_for(key).lines().count() + key.split('.').count();
        assert_eq!(entry.source, Source::File { path: FILE.to_owned(), line }, "{key}");
    }
}

#[test]
fn every_key_from_override() {
    for (key, value, effective) in SAMPLES {
        let mut overrides = vec![format!("{key}={value}")];
        overrides.extend(extra_for(key).lines().filter_map(|l| l.split_once(": ")).map(|(k, v)| format!("{k}={v}")));
        let loaded = load(None, &overrides).unwrap_or_else(|e| panic!("{key}: {e}"));
        let entry = loaded.entry(key).unwrap();
        assert_eq!(entry.value, *effective, "{key}");
        assert_eq!(entry.source, Source::Override, "{key}");
    }
}

#[test]
fn typed_fields_from_samples() {
    let text: String = SAMPLES.iter().map(|(key, value, _)| format!("{key}: {value}\n")).collect();
    let config = from_str(&text, FILE, &[]).unwrap().config;
    assert_eq!(config.ha_type, HaType::Zookeeper);
    assert_eq!(config.zk_quorum.as_deref(), Some("zk1:2181,zk2:2182"));
    assert_eq!(config.zk_path_root, "/flink/keel");
    assert_eq!(config.cluster_id, "/prod-eu");
    assert_eq!(config.ha_root(), "/flink/keel/prod-eu");
    assert_eq!(config.storage_dir.as_deref(), Some("file:///mnt/nfs/keel"));
    assert_eq!(config.zk_session_timeout.duration, Duration::from_secs(30));
    assert_eq!(config.zk_session_timeout.text, "30 s");
    assert_eq!(config.zk_connection_timeout.duration, Duration::from_millis(2500));
    assert_eq!(config.zk_retry_wait.duration, Duration::from_secs(60));
    assert!(config.zk_tolerate_suspended_connections);
    assert_eq!(config.zk_sasl_username.as_deref(), Some("keel"));
    assert_eq!(config.zk_sasl_password.as_deref(), Some("zk-Secret-1"));
    assert!(!config.zk_sasl_disable);
    assert_eq!(config.zk_acl, keel_conf::ZkAcl::Creator);
    assert!(config.zk_client_secure);
    assert_eq!(config.zk_ssl_truststore.as_deref(), Some("/etc/keel/tls/zk-ca.pem"));
    assert_eq!(config.zk_ssl_keystore.as_deref(), Some("/etc/keel/tls/zk-client.pem"));
    assert_eq!(config.kerberos_keytab.as_deref(), Some("/etc/keel/keel.keytab"));
    assert_eq!(config.kerberos_principal.as_deref(), Some("keel/host1@EXAMPLE.COM"));
    assert_eq!(config.kerberos_contexts, vec!["KafkaClient", "Other"]);
    assert_eq!(config.zk_sasl_service_name, "zk");
    assert_eq!(config.zk_sasl_login_context, "ZkClient");
    assert!(!config.zk_kerberos(), "the contexts do not list ZkClient");
    assert_eq!(config.rest_address, "0.0.0.0");
    assert_eq!(config.rest_port, 8082);
    assert_eq!(config.rpc_address, "10.1.2.3");
    assert_eq!(config.rpc_port, 7000);
    assert_eq!(config.jobmanager_rpc_address, "jm.example.com");
    assert_eq!(config.jobmanager_rpc_port, 6124);
    assert_eq!(config.taskmanager_slots, 8);
    assert_eq!(config.taskmanager_resource_id.as_deref(), Some("worker-7"));
    assert_eq!(config.heartbeat_interval.duration, Duration::from_secs(2));
    assert_eq!(config.heartbeat_timeout.duration, Duration::from_secs(60));
    assert_eq!(config.recovery_worker_wait.duration, Duration::ZERO);
    assert_eq!(config.recovery_worker_wait.text, "0 s");
    assert_eq!(config.rest_auth_token.as_deref(), Some("t0ken-Secret"));
    assert_eq!(config.state_backend, StateBackendKind::Rocksdb);
    assert_eq!(config.rocksdb_localdir.as_deref(), Some("/var/lib/keel/rocksdb"));
    assert_eq!(config.effective_rocksdb_localdir(), std::path::PathBuf::from("/var/lib/keel/rocksdb"));
    assert!(config.state_incremental);
    assert!(config.state_local_recovery);
    assert_eq!(config.checkpoints_dir.as_deref(), Some("hdfs://nn:8020/keel/cp"));
    assert_eq!(config.effective_checkpoints_dir().as_deref(), Some("hdfs://nn:8020/keel/cp"));
    assert_eq!(config.checkpoints_num_retained, 3);
    assert_eq!(config.checkpoint_timeout.duration, Duration::from_secs(90));
    assert_eq!(config.io_tmp_dirs, vec!["/data1/tmp", "/data2/tmp", "/data3/tmp"]);
    assert_eq!(config.s3_endpoint.as_deref(), Some("http://minio:9000"));
    assert_eq!(config.s3_region.as_deref(), Some("eu-west-1"));
    assert_eq!(config.s3_access_key.as_deref(), Some("AKIAEXAMPLE"));
    assert_eq!(config.s3_secret_key.as_deref(), Some("wJalrXUtnFEMI/K7MDENG"));
    assert!(config.s3_path_style_access);
}

#[test]
fn defaults_when_absent() {
    for text in ["", "\n# only a comment\n", "---\n", "unrelated.key: 1\n"] {
        let loaded = from_str(text, FILE, &[]).unwrap();
        assert_eq!(loaded.config, Config::defaults());
        for (entry, doc) in loaded.entries.iter().zip(KEYS) {
            assert_eq!(entry.key, doc.key);
            assert_eq!(entry.value, doc.default_value(), "{}", doc.key);
            assert_eq!(entry.source, Source::Default, "{}", doc.key);
        }
    }
    assert_eq!(load(None, &[]).unwrap().config, Config::defaults());
}

#[test]
fn defaults_match_the_key_table() {
    // Config::defaults() must equal the documented defaults parsed like user input.
    let text: String = KEYS
        .iter()
        .filter(|doc| !doc.default.is_empty())
        .map(|doc| format!("{}: {}\n", doc.key, doc.default_value()))
        .collect();
    assert_eq!(from_str(&text, FILE, &[]).unwrap().config, Config::defaults());
    let defaults = Config::defaults();
    assert_eq!(defaults.zk_session_timeout.duration, Duration::from_millis(60_000));
    assert_eq!(defaults.zk_connection_timeout.duration, Duration::from_millis(15_000));
    assert_eq!(defaults.zk_retry_wait.duration, Duration::from_millis(5_000));
    assert_eq!(defaults.heartbeat_interval.duration, Duration::from_millis(10_000));
    assert_eq!(defaults.heartbeat_timeout.duration, Duration::from_millis(50_000));
    assert_eq!(defaults.recovery_worker_wait.duration, Duration::from_secs(10));
    assert_eq!(defaults.checkpoint_timeout.duration, Duration::from_secs(600));
    assert_eq!(defaults.checkpoint_timeout.text, "10 min");
    assert_eq!(defaults.state_backend, StateBackendKind::Hashmap);
    assert_eq!(defaults.checkpoints_num_retained, 1);
    assert_eq!(defaults.io_tmp_dirs, vec![std::env::temp_dir().display().to_string()]);
    assert_eq!(defaults.effective_rocksdb_localdir(), std::env::temp_dir().join("keel-rocksdb"));
    let tmp_ha = std::env::temp_dir().join("keel-ha/default");
    assert_eq!(defaults.effective_checkpoints_dir(), Some(format!("file://{}/checkpoints", tmp_ha.display())));
    assert!(!defaults.state_incremental && !defaults.state_local_recovery && !defaults.s3_path_style_access);
    assert_eq!(key_doc_default("io.tmp.dirs"), "$TMPDIR or /tmp");
}

fn key_doc_default(key: &str) -> &'static str {
    keel_conf::key_doc(key).unwrap().default
}

#[test]
fn override_beats_file_and_later_override_wins() {
    let text = "rest.port: 9000\nrest:\n  address: 10.0.0.1\n";
    let loaded = from_str(text, FILE, &d(&["rest.port=9001", "rest.port = 9002"])).unwrap();
    assert_eq!(loaded.config.rest_port, 9002);
    assert_eq!(loaded.entry("rest.port").unwrap().source, Source::Override);
    assert_eq!(loaded.config.rest_address, "10.0.0.1");
    assert_eq!(loaded.entry("rest.address").unwrap().source, Source::File { path: FILE.to_owned(), line: 3 });
}

#[test]
fn override_replaces_a_bad_file_value() {
    let loaded = from_str("rest.port: 80a81\n", FILE, &d(&["rest.port=8082"])).unwrap();
    assert_eq!(loaded.config.rest_port, 8082);
}

#[test]
fn override_value_may_contain_equals_and_unset_optional_keys() {
    let text = "high-availability.storageDir: s3://bucket/ha\n";
    let loaded = from_str(text, FILE, &d(&["taskmanager.resource-id=a=b"])).unwrap();
    assert_eq!(loaded.config.taskmanager_resource_id.as_deref(), Some("a=b"));
    assert_eq!(loaded.config.storage_dir.as_deref(), Some("s3://bucket/ha"));
    let loaded = from_str(text, FILE, &d(&["high-availability.storageDir="])).unwrap();
    assert_eq!(loaded.config.storage_dir, None);
    assert_eq!(loaded.entry("high-availability.storageDir").unwrap().source, Source::Override);
}

#[test]
fn provenance_lines_for_mixed_flat_and_nested() {
    let text = "\
# Keel
high-availability.type: zookeeper

high-availability:
  zookeeper:
    quorum: a:2181,b:2181
    client:
      session-timeout: 20 s
  cluster-id: prod
high-availability.zookeeper.path.root: /k
rest:
  port: '9090'
";
    let loaded = from_str(text, FILE, &[]).unwrap();
    let line = |key: &str| match &loaded.entry(key).unwrap().source {
        Source::File { path, line } => {
            assert_eq!(path, FILE);
            *line
        }
        other => panic!("{key}: {other:?}"),
    };
    assert_eq!(line("high-availability.type"), 2);
    assert_eq!(line("high-availability.zookeeper.quorum"), 6);
    assert_eq!(line("high-availability.zookeeper.client.session-timeout"), 8);
    assert_eq!(line("high-availability.cluster-id"), 9);
    assert_eq!(line("high-availability.zookeeper.path.root"), 10);
    assert_eq!(line("rest.port"), 12);
    assert_eq!(loaded.config.rest_port, 9090);
    assert_eq!(loaded.config.ha_root(), "/k/prod");
    assert_eq!(loaded.entry("rpc.port").unwrap().source, Source::Default);
}

#[test]
fn yaml_native_and_quoted_scalars() {
    let text = "\
high-availability.zookeeper.client.tolerate-suspended-connections: True
taskmanager.numberOfTaskSlots: \"4\"
heartbeat.interval: 3000
heartbeat.timeout: '9 s'
high-availability.type: NONE
";
    let config = from_str(text, FILE, &[]).unwrap().config;
    assert!(config.zk_tolerate_suspended_connections);
    assert_eq!(config.taskmanager_slots, 4);
    assert_eq!(config.heartbeat_interval.duration, Duration::from_secs(3));
    assert_eq!(config.heartbeat_timeout.duration, Duration::from_secs(9));
    assert_eq!(config.ha_type, HaType::None);
}

#[test]
fn every_duration_form_through_a_key() {
    let forms: &[(&str, Duration)] = &[
        ("60000", Duration::from_millis(60_000)),
        ("500 ms", Duration::from_millis(500)),
        ("5 s", Duration::from_secs(5)),
        ("5s", Duration::from_secs(5)),
        ("1 min", Duration::from_secs(60)),
        ("1min", Duration::from_secs(60)),
        ("2 h", Duration::from_secs(7200)),
        ("1 d", Duration::from_secs(86_400)),
        ("1500000000 ns", Duration::from_millis(1500)),
        ("2000000 us", Duration::from_secs(2)),
        ("3 Seconds", Duration::from_secs(3)),
    ];
    for (text, expected) in forms {
        let loaded = from_str(&format!("high-availability.zookeeper.client.retry-wait: {text}\n"), FILE, &[])
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(loaded.config.zk_retry_wait.duration, *expected, "{text}");
        assert_eq!(loaded.config.zk_retry_wait.text, *text);
    }
}

#[test]
fn unknown_keys_warn_with_suggestion() {
    let text = "\
rest.prot: 8082
high-availability:
  zookeeper:
    quorom: a:2181
state.backend.type: rocksdb
env.java.opts.all: [-Xmx1g]
";
    let loaded = from_str(text, FILE, &d(&["heartbeat.intervall=5 s", "parallelism.default=4"])).unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            "unknown key 'rest.prot' at conf/config.yaml:1 (did you mean 'rest.port'?)",
            "unknown key 'high-availability.zookeeper.quorom' at conf/config.yaml:4 (did you mean \
             'high-availability.zookeeper.quorum'?)",
            "Flink key 'env.java.opts.all' at conf/config.yaml:6 is ignored: Keel runs no JVM: size the \
             process with its container or cgroup limits",
            "unknown key 'heartbeat.intervall' in -D override (did you mean 'heartbeat.interval'?)",
        ]
    );
    // Flink's `state.backend.type` and `parallelism.default` are read (see tests/flink.rs).
    let mut expected = Config::defaults();
    expected.state_backend = StateBackendKind::Rocksdb;
    expected.parallelism_default = 4;
    assert_eq!(loaded.config, expected);
}

#[test]
fn quorum_without_zookeeper_warns() {
    let loaded = from_str("high-availability.zookeeper.quorum: a:2181\n", FILE, &[]).unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            "'high-availability.zookeeper.quorum' (set at conf/config.yaml:1) has no effect: \
             'high-availability.type' is 'none' (default)"
        ]
    );
}

#[test]
fn show_renders_a_table_with_sources() {
    let text = "high-availability.type: zookeeper\nhigh-availability.zookeeper.quorum: zk:2181\n";
    // io.tmp.dirs pinned: its default ($TMPDIR) could widen the value column.
    let loaded = from_str(text, FILE, &d(&["rest.port=9000", "io.tmp.dirs=/tmp"])).unwrap();
    let shown = loaded.show();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), KEYS.len() + 1);
    let width = "high-availability.zookeeper.client.tolerate-suspended-connections".len();
    // The widest value: `fixed-delay` (restart-strategy.type).
    assert_eq!(lines[0], format!("{:width$}  {:11}  source", "key", "value"));
    assert_eq!(lines[1], format!("{:width$}  {:11}  conf/config.yaml:1", "high-availability.type", "zookeeper"));
    assert!(shown.contains(&format!("{:width$}  {:11}  -D\n", "rest.port", "9000")));
    assert!(shown.contains(&format!("{:width$}  {:11}  default\n", "high-availability.storageDir", "(none)")));
}

#[test]
fn to_json_lists_entries_and_warnings() {
    let loaded = from_str("rest.port: 9000\nfoo: 1\n", FILE, &d(&["rpc.port=1"])).unwrap();
    let json = loaded.to_json();
    let entries = json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), KEYS.len());
    let find = |key: &str| entries.iter().find(|e| e["key"] == key).unwrap().clone();
    assert_eq!(
        find("rest.port"),
        serde_json::json!({"key": "rest.port", "value": "9000",
            "source": {"kind": "file", "path": FILE, "line": 1}})
    );
    assert_eq!(find("rpc.port"), serde_json::json!({"key": "rpc.port", "value": "1", "source": {"kind": "override"}}));
    assert_eq!(
        find("high-availability.storageDir"),
        serde_json::json!({"key": "high-availability.storageDir", "value": null,
            "source": {"kind": "default"}})
    );
    assert_eq!(json["warnings"], serde_json::json!(["unknown key 'foo' at conf/config.yaml:2"]));
}

#[test]
fn load_reads_a_file() {
    let dir = std::env::temp_dir().join(format!("keel-conf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(&path, "taskmanager:\n  numberOfTaskSlots: 3\n").unwrap();
    let loaded = load(Some(&path), &[]).unwrap();
    assert_eq!(loaded.config.taskmanager_slots, 3);
    assert_eq!(
        loaded.entry("taskmanager.numberOfTaskSlots").unwrap().source,
        Source::File { path: path.display().to_string(), line: 2 }
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shipped_example_config_loads_cleanly() {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml"));
    let loaded = load(Some(path), &[]).unwrap();
    assert_eq!(loaded.warnings, Vec::<String>::new());
}

#[test]
fn crlf_and_bom_files() {
    let text = "\u{feff}# Windows file\r\nrest:\r\n  port: 9001\r\n";
    let loaded = from_str(text, FILE, &[]).unwrap();
    assert_eq!(loaded.config.rest_port, 9001);
    assert_eq!(loaded.entry("rest.port").unwrap().source, Source::File { path: FILE.to_owned(), line: 3 });
}

#[test]
fn state_backend_names_and_legacy_aliases() {
    for (text, kind) in [
        ("hashmap", StateBackendKind::Hashmap),
        ("HASHMAP", StateBackendKind::Hashmap),
        ("filesystem", StateBackendKind::Hashmap),
        ("jobmanager", StateBackendKind::Hashmap),
        ("rocksdb", StateBackendKind::Rocksdb),
        ("RocksDB", StateBackendKind::Rocksdb),
    ] {
        let loaded = from_str(&format!("state.backend: {text}\n"), FILE, &[]).unwrap();
        assert_eq!(loaded.config.state_backend, kind, "{text}");
        assert_eq!(loaded.entry("state.backend").unwrap().value, kind.as_str(), "{text}");
    }
}

#[test]
fn state_backend_beside_its_subkeys_in_nested_files() {
    // `backend` beside `backend.*` under `state:`, and a mapping under `state.backend`.
    let text = "\
state:
  backend: rocksdb
  backend.incremental: true
  checkpoints:
    dir: /mnt/cp
    num-retained: 2
";
    let loaded = from_str(text, FILE, &[]).unwrap();
    assert_eq!(loaded.config.state_backend, StateBackendKind::Rocksdb);
    assert!(loaded.config.state_incremental);
    assert_eq!(loaded.config.checkpoints_dir.as_deref(), Some("file:///mnt/cp"));
    assert_eq!(loaded.config.checkpoints_num_retained, 2);
    assert_eq!(
        loaded.entry("state.backend.incremental").unwrap().source,
        Source::File { path: FILE.to_owned(), line: 3 }
    );
    assert_eq!(loaded.warnings, Vec::<String>::new());

    let text = "state:\n  backend:\n    local-recovery: true\n    rocksdb:\n      localdir: /ssd\n    type: rocksdb\n";
    let loaded = from_str(text, FILE, &[]).unwrap();
    assert!(loaded.config.state_local_recovery);
    assert_eq!(loaded.config.rocksdb_localdir.as_deref(), Some("/ssd"));
    // Flink's `state.backend.type` sets `state.backend` (it once warned "unknown key" and the
    // cluster silently ran on hashmap).
    assert_eq!(loaded.config.state_backend, StateBackendKind::Rocksdb);
    assert_eq!(loaded.entry("state.backend").unwrap().source, Source::File { path: FILE.to_owned(), line: 6 });
    assert_eq!(loaded.warnings, Vec::<String>::new());
}

#[test]
fn incremental_with_hashmap_warns() {
    let loaded = from_str("state.backend.incremental: true\n", FILE, &[]).unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            "'state.backend.incremental' (set at conf/config.yaml:1) has no effect: \
             'state.backend' is 'hashmap' (default)"
        ]
    );
    let loaded = from_str("state.backend: filesystem\n", FILE, &d(&["state.backend.incremental=true"])).unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            "'state.backend.incremental' (set by -D) has no effect: 'state.backend' is 'hashmap' \
             (set at conf/config.yaml:1)"
        ]
    );
    assert!(loaded.config.state_incremental);
    let loaded = from_str("state.backend: rocksdb\nstate.backend.incremental: true\n", FILE, &[]).unwrap();
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let loaded = from_str("state.backend.incremental: false\n", FILE, &[]).unwrap();
    assert_eq!(loaded.warnings, Vec::<String>::new());
}

#[test]
fn io_tmp_dirs_lists_and_default() {
    for (text, dirs) in [
        ("/tmp", vec!["/tmp"]),
        ("/a,/b", vec!["/a", "/b"]),
        ("/a:/b", vec!["/a", "/b"]),
        ("' /a , /b:/c '", vec!["/a", "/b", "/c"]),
    ] {
        let loaded = from_str(&format!("io.tmp.dirs: {text}\n"), FILE, &[]).unwrap();
        assert_eq!(loaded.config.io_tmp_dirs, dirs, "{text}");
        assert_eq!(loaded.entry("io.tmp.dirs").unwrap().value, dirs.join(","), "{text}");
    }
    let loaded = load(None, &d(&["io.tmp.dirs=/data1/tmp,/data2/tmp"])).unwrap();
    assert_eq!(loaded.config.effective_rocksdb_localdir(), std::path::PathBuf::from("/data1/tmp/keel-rocksdb"));
    let loaded = load(None, &[]).unwrap();
    assert_eq!(loaded.entry("io.tmp.dirs").unwrap().value, std::env::temp_dir().display().to_string());
    assert_eq!(loaded.entry("io.tmp.dirs").unwrap().source, Source::Default);
}

#[test]
fn checkpoints_dir_defaults_under_storage_dir() {
    let loaded = from_str("high-availability.storageDir: s3://bucket/keel/ha\n", FILE, &[]).unwrap();
    assert_eq!(loaded.config.checkpoints_dir, None);
    assert_eq!(loaded.config.effective_checkpoints_dir().as_deref(), Some("s3://bucket/keel/ha/checkpoints"));
    assert_eq!(loaded.entry("state.checkpoints.dir").unwrap().value, "");
    let loaded = from_str("state.checkpoints.dir: /mnt/cp\n", FILE, &[]).unwrap();
    assert_eq!(loaded.config.effective_checkpoints_dir().as_deref(), Some("file:///mnt/cp"));
}

#[test]
fn secrets_are_masked_in_show_json_entries_and_debug() {
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG";
    const TOKEN: &str = "s3cr3t-t0ken";
    let text = format!("s3:\n  access-key: AKIAEXAMPLE\n  secret-key: {SECRET}\n");
    let loaded = from_str(&text, FILE, &d(&[&format!("rest.auth.token={TOKEN}")])).unwrap();
    assert_eq!(loaded.config.s3_secret_key.as_deref(), Some(SECRET));
    assert_eq!(loaded.config.rest_auth_token.as_deref(), Some(TOKEN));

    let shown = loaded.show();
    let json = loaded.to_json().to_string();
    let debug = format!("{loaded:?}");
    for rendered in [&shown, &json, &debug] {
        assert!(!rendered.contains(SECRET) && !rendered.contains(TOKEN), "{rendered}");
    }
    let row = |key: &str| shown.lines().find(|line| line.starts_with(&format!("{key} "))).unwrap().to_owned();
    assert_eq!(
        row("s3.secret-key").split_whitespace().collect::<Vec<_>>(),
        ["s3.secret-key", "******", "conf/config.yaml:3"]
    );
    assert_eq!(row("rest.auth.token").split_whitespace().collect::<Vec<_>>(), ["rest.auth.token", "******", "-D"]);
    assert_eq!(
        row("s3.access-key").split_whitespace().collect::<Vec<_>>(),
        ["s3.access-key", "AKIAEXAMPLE", "conf/config.yaml:2"]
    );

    let json = loaded.to_json();
    let find = |key: &str| json["entries"].as_array().unwrap().iter().find(|e| e["key"] == key).unwrap().clone();
    assert_eq!(
        find("s3.secret-key"),
        serde_json::json!({"key": "s3.secret-key", "value": "******",
            "source": {"kind": "file", "path": FILE, "line": 3}})
    );
    assert_eq!(
        find("rest.auth.token"),
        serde_json::json!({"key": "rest.auth.token", "value": "******", "source": {"kind": "override"}})
    );
    assert_eq!(loaded.entry("s3.secret-key").unwrap().value, "******");
    assert_eq!(loaded.config.value_of("rest.auth.token").as_deref(), Some("******"));

    // Unset secrets show as unset, not masked.
    let loaded = load(None, &[]).unwrap();
    assert!(loaded.show().lines().any(|line| line.split_whitespace().eq(["s3.secret-key", "(none)", "default"])));
    let json = loaded.to_json();
    let entry = json["entries"].as_array().unwrap().iter().find(|e| e["key"] == "rest.auth.token").unwrap().clone();
    assert_eq!(entry["value"], serde_json::Value::Null);
}
