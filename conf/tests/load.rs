//! Loading: every key in flat, nested and `-D` form, precedence, provenance, warnings.

use std::time::Duration;

use keel_conf::{from_str, load, Config, HaType, Source, KEYS};

const FILE: &str = "conf/config.yaml";

fn d(overrides: &[&str]) -> Vec<String> {
    overrides.iter().map(|s| (*s).to_owned()).collect()
}

/// A valid non-default value for every key, and the effective value it should produce.
/// Values for `high-availability.type` come with the quorum it needs (added by `base`).
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
    ("rest.address", "0.0.0.0", "0.0.0.0"),
    ("rest.port", "8082", "8082"),
    ("rpc.address", "10.1.2.3", "10.1.2.3"),
    ("rpc.port", "7000", "7000"),
    ("jobmanager.rpc.address", "jm.example.com", "jm.example.com"),
    ("jobmanager.rpc.port", "6124", "6124"),
    ("taskmanager.numberOfTaskSlots", "8", "8"),
    ("taskmanager.resource-id", "worker-7", "worker-7"),
    ("heartbeat.interval", "2 s", "2 s"),
    ("heartbeat.timeout", "1 min", "1 min"),
];

/// The quorum a `high-availability.type: zookeeper` sample needs, unless it is the sample.
fn extra_for(key: &str) -> &'static str {
    if key == "high-availability.type" {
        "high-availability.zookeeper.quorum: zk:2181\n"
    } else {
        ""
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
        if *key == "high-availability.type" {
            overrides.push("high-availability.zookeeper.quorum=zk:2181".to_owned());
        }
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
}

#[test]
fn defaults_when_absent() {
    for text in ["", "\n# only a comment\n", "---\n", "unrelated.key: 1\n"] {
        let loaded = from_str(text, FILE, &[]).unwrap();
        assert_eq!(loaded.config, Config::defaults());
        for (entry, doc) in loaded.entries.iter().zip(KEYS) {
            assert_eq!(entry.key, doc.key);
            assert_eq!(entry.value, doc.default, "{}", doc.key);
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
        .map(|doc| format!("{}: {}\n", doc.key, doc.default))
        .collect();
    assert_eq!(from_str(&text, FILE, &[]).unwrap().config, Config::defaults());
    let defaults = Config::defaults();
    assert_eq!(defaults.zk_session_timeout.duration, Duration::from_millis(60_000));
    assert_eq!(defaults.zk_connection_timeout.duration, Duration::from_millis(15_000));
    assert_eq!(defaults.zk_retry_wait.duration, Duration::from_millis(5_000));
    assert_eq!(defaults.heartbeat_interval.duration, Duration::from_millis(10_000));
    assert_eq!(defaults.heartbeat_timeout.duration, Duration::from_millis(50_000));
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
            "unknown key 'state.backend.type' at conf/config.yaml:5",
            "unknown key 'env.java.opts.all' at conf/config.yaml:6",
            "unknown key 'heartbeat.intervall' in -D override (did you mean 'heartbeat.interval'?)",
            "unknown key 'parallelism.default' in -D override",
        ]
    );
    assert_eq!(loaded.config, Config::defaults());
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
    let loaded = from_str(text, FILE, &d(&["rest.port=9000"])).unwrap();
    let shown = loaded.show();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), KEYS.len() + 1);
    let width = "high-availability.zookeeper.client.tolerate-suspended-connections".len();
    assert_eq!(lines[0], format!("{:width$}  {:9}  source", "key", "value"));
    assert_eq!(lines[1], format!("{:width$}  {:9}  conf/config.yaml:1", "high-availability.type", "zookeeper"));
    assert!(shown.contains(&format!("{:width$}  {:9}  -D\n", "rest.port", "9000")));
    assert!(shown.contains(&format!("{:width$}  {:9}  default\n", "high-availability.storageDir", "(none)")));
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
