//! Flink's keys: a Flink `config.yaml` loads, aliases set the Keel keys (deprecated ones warn
//! once, naming the new key), ignored keys say why, suggestions prefer a Flink alias's Keel
//! key, warnings reach only the processes that read the key, and the "Flink keys" table of
//! docs/configuration.md agrees with what the loader does.

use std::time::Duration;

use keel_conf::{
    from_str, load, ConfigError, FlinkTreatment, HaType, Process, RestartStrategyType, Source, StateBackendKind,
    FLINK_KEYS,
};

const FILE: &str = "conf/config.yaml";

fn d(overrides: &[&str]) -> Vec<String> {
    overrides.iter().map(|s| (*s).to_owned()).collect()
}

/// Flink 2.0's shipped conf/config.yaml (nested form), plus checkpointing and HA as a user
/// adds them.
const FLINK_2_CONFIG: &str = "\
env:
  java:
    opts:
      all: --add-exports=java.base/sun.net.util=ALL-UNNAMED
jobmanager:
  bind-host: 0.0.0.0
  rpc:
    address: localhost
    port: 6123
  memory:
    process:
      size: 1600m
  execution:
    failover-strategy: region
taskmanager:
  bind-host: 0.0.0.0
  host: tm-1.example
  numberOfTaskSlots: 2
  memory:
    process:
      size: 1728m
parallelism:
  default: 3
rest:
  address: localhost
  bind-address: 0.0.0.0
  bind-port: 8081-8090
state:
  backend:
    type: rocksdb
execution:
  checkpointing:
    dir: file:///flink/checkpoints
    savepoint-dir: /flink/savepoints
    num-retained: 4
    incremental: true
    interval: 5 s
restart-strategy:
  type: fixed-delay
  fixed-delay:
    attempts: 7
    delay: 2 s
";

#[test]
fn a_flink_2_config_yaml_loads_with_every_key_mapped() {
    let loaded = from_str(FLINK_2_CONFIG, FILE, &[]).unwrap();
    let c = &loaded.config;
    assert_eq!(c.state_backend, StateBackendKind::Rocksdb, "state.backend.type: rocksdb must select rocksdb");
    assert_eq!(c.checkpoints_dir.as_deref(), Some("file:///flink/checkpoints"));
    assert_eq!(c.savepoints_dir.as_deref(), Some("file:///flink/savepoints"));
    assert_eq!(c.checkpoints_num_retained, 4);
    assert!(c.state_incremental);
    assert_eq!(c.checkpoint_interval.duration, Duration::from_secs(5));
    assert_eq!(c.parallelism_default, 3);
    assert_eq!(c.restart_strategy, RestartStrategyType::FixedDelay);
    assert_eq!(c.restart_attempts, 7);
    assert_eq!(c.restart_delay.duration, Duration::from_secs(2));
    assert_eq!(c.rest_bind_address.as_deref(), Some("0.0.0.0"));
    assert_eq!(c.rest_bind_port, Some((8081, 8090)));
    assert_eq!(c.jobmanager_bind_host.as_deref(), Some("0.0.0.0"));
    assert_eq!(c.taskmanager_host.as_deref(), Some("tm-1.example"));
    assert_eq!(c.taskmanager_slots, 2);
    // Provenance names the line of the Flink name.
    assert_eq!(loaded.entry("state.backend").unwrap().source, Source::File { path: FILE.to_owned(), line: 30 });
    assert_eq!(loaded.entry("state.checkpoints.dir").unwrap().source, Source::File { path: FILE.to_owned(), line: 33 });

    // Nothing is "unknown"; the ignored keys say why.
    assert!(!loaded.warnings.iter().any(|w| w.starts_with("unknown key")), "{:#?}", loaded.warnings);
    let ignored: Vec<&String> = loaded.warnings.iter().filter(|w| w.contains("is ignored")).collect();
    assert_eq!(ignored.len(), 5, "{ignored:#?}");
    assert!(loaded.warnings.iter().any(|w| {
        w == "Flink key 'jobmanager.memory.process.size' at conf/config.yaml:12 is ignored: Keel runs no JVM: size the \
            process with its container or cgroup limits"
    }));

    // Client commands print none of them; each server prints its own.
    assert_eq!(loaded.warnings_for(Process::Client), Vec::<&str>::new());
    let dispatcher = loaded.warnings_for(Process::Dispatcher);
    let worker = loaded.warnings_for(Process::Worker);
    assert!(dispatcher.iter().any(|w| w.contains("'jobmanager.memory.process.size'")), "{dispatcher:#?}");
    assert!(!dispatcher.iter().any(|w| w.contains("'taskmanager.")), "{dispatcher:#?}");
    assert!(worker.iter().any(|w| w.contains("'taskmanager.memory.process.size'")), "{worker:#?}");
    assert!(worker.iter().any(|w| w.contains("'taskmanager.bind-host'")), "{worker:#?}");
    assert!(!worker.iter().any(|w| w.contains("'jobmanager.")), "{worker:#?}");
}

#[test]
fn legacy_names_are_read_and_warn_once_naming_the_new_key() {
    let text = "high-availability: zookeeper\nhigh-availability.zookeeper.quorum: zk:2181\nrestart-strategy: none\n";
    let loaded = from_str(text, FILE, &d(&["restart-strategy=fixeddelay"])).unwrap();
    assert_eq!(loaded.config.ha_type, HaType::Zookeeper, "high-availability: zookeeper must turn HA on");
    assert_eq!(loaded.config.restart_strategy, RestartStrategyType::FixedDelay, "-D beats the file");
    assert_eq!(
        loaded.warnings,
        vec![
            "'high-availability' at conf/config.yaml:1 is a deprecated Flink key; use 'high-availability.type' \
             (read as 'high-availability.type')",
            "'restart-strategy' at conf/config.yaml:3 is a deprecated Flink key; use 'restart-strategy.type' \
             (read as 'restart-strategy.type')",
        ],
        "one warning per deprecated name, even when it is set twice"
    );
    // `keel run` needs high-availability.type, so it shows that one; not the restart strategy.
    assert_eq!(loaded.warnings_for(Process::Client).len(), 1);
    assert_eq!(loaded.warnings_for(Process::Dispatcher).len(), 2);
    assert_eq!(loaded.warnings_for(Process::Worker).len(), 1);

    // Current Flink names are synonyms: no warning.
    let loaded = load(None, &d(&["state.backend.type=ROCKSDB", "execution.checkpointing.num-retained=2"])).unwrap();
    assert_eq!(loaded.config.state_backend, StateBackendKind::Rocksdb);
    assert_eq!(loaded.config.checkpoints_num_retained, 2);
    assert_eq!(loaded.entry("state.backend").unwrap().source, Source::Override);
    assert_eq!(loaded.warnings, Vec::<String>::new());
}

#[test]
fn a_key_and_its_alias_in_one_file_is_an_error_naming_both_lines() {
    let err = from_str("state.backend: hashmap\nstate.backend.type: rocksdb\n", FILE, &[]).unwrap_err();
    assert!(matches!(err, ConfigError::AliasConflict { key: "state.backend", .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "'state.backend' (line 1) and 'state.backend.type' (line 2) in conf/config.yaml both set 'state.backend'; \
         keep one of them"
    );
    // Across layers the later layer wins, as for any key.
    let loaded = from_str("state.backend: hashmap\n", FILE, &d(&["state.backend.type=rocksdb"])).unwrap();
    assert_eq!(loaded.config.state_backend, StateBackendKind::Rocksdb);
}

#[test]
fn bad_values_under_flink_names_name_the_flink_key_line() {
    let err = from_str("state.backend.type: leveldb\n", FILE, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid value 'leveldb' for 'state.backend' (set at conf/config.yaml:1): unknown state backend; expected \
         one of hashmap, rocksdb (or Flink's legacy filesystem, jobmanager for hashmap)"
    );
    let err = from_str("restart-strategy.type: exponential-delay\n", FILE, &[]).unwrap_err();
    assert!(err.to_string().contains("Keel does not implement this Flink restart strategy"), "{err}");
    let err = from_str("rest.bind-port: 8090-8081\n", FILE, &[]).unwrap_err();
    assert!(err.to_string().contains("the range 8090-8081 is empty"), "{err}");
    let err = from_str("parallelism.default: 0\n", FILE, &[]).unwrap_err();
    assert!(err.to_string().contains("must be at least 1"), "{err}");
}

#[test]
fn unknown_keys_suggest_the_keel_key_of_a_near_flink_alias() {
    let loaded = from_str("execution.checkpointing.dirs: /cp\nstate.savepoint.dir: /sp\n", FILE, &[]).unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            "unknown key 'execution.checkpointing.dirs' at conf/config.yaml:1 (did you mean 'state.checkpoints.dir'? \
             Flink's 'execution.checkpointing.dir' is read as 'state.checkpoints.dir')",
            "unknown key 'state.savepoint.dir' at conf/config.yaml:2 (did you mean 'state.savepoints.dir'?)",
        ]
    );
    // And `execution.checkpointing.dir` itself is no longer unknown (it once suggested
    // `execution.checkpointing.timeout`).
    let loaded = from_str("execution.checkpointing.dir: /cp\n", FILE, &[]).unwrap();
    assert_eq!(loaded.warnings, Vec::<String>::new());
    assert_eq!(loaded.config.checkpoints_dir.as_deref(), Some("file:///cp"));
}

#[test]
fn client_commands_see_only_warnings_about_keys_they_read() {
    let text = "\
rest.prot: 8082
state.backend.incremental: true
some.other.tool: 1
taskmanager.memory.process.size: 2g
high-availability.zookeeper.quorum: zk:2181
";
    let loaded = from_str(text, FILE, &[]).unwrap();
    assert_eq!(loaded.warnings.len(), 5, "{:#?}", loaded.warnings);
    assert_eq!(
        loaded.warnings_for(Process::Client),
        vec![
            "unknown key 'rest.prot' at conf/config.yaml:1 (did you mean 'rest.port'?)",
            "'high-availability.zookeeper.quorum' (set at conf/config.yaml:5) has no effect: 'high-availability.type' \
             is 'none' (default)",
        ]
    );
    assert_eq!(loaded.warnings_for(Process::Worker).len(), 5);
    // The dispatcher skips only the worker's memory size.
    assert_eq!(loaded.warnings_for(Process::Dispatcher).len(), 4);
}

/// A valid value for the Keel keys that aliases set.
fn sample(keel: &str) -> &'static str {
    match keel {
        "high-availability.type" => "none",
        "state.backend" => "rocksdb",
        "state.backend.incremental" | "state.backend.local-recovery" => "true",
        "state.checkpoints.dir" | "state.savepoints.dir" => "/data/x",
        "state.checkpoints.num-retained" | "application-attempts" => "2",
        "restart-strategy.type" => "none",
        other => panic!("add a sample value for {other}"),
    }
}

/// Every row of the "Flink keys" table in docs/configuration.md, checked against the loader:
/// a used key is a Keel key, an alias sets its Keel key, an ignored key warns that it is
/// ignored (not "unknown"); and every key of the registry has a row.
#[test]
fn the_docs_flink_table_matches_the_loader() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md")).unwrap();
    let section = doc.split("## Flink keys").nth(1).expect("docs/configuration.md has a '## Flink keys' section");
    let mut rows = 0;
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        let flink = cells[0].trim_matches('`');
        let keel = cells[1];
        rows += 1;
        assert!(FLINK_KEYS.iter().any(|k| k.key == flink), "{flink} is in the docs but not in FLINK_KEYS");
        if keel == "used" {
            assert!(keel_conf::key_doc(flink).is_some(), "{flink}: documented as used, not a Keel key");
        } else if let Some(rest) =
            keel.strip_prefix("alias of `").or_else(|| keel.strip_prefix("deprecated alias of `"))
        {
            let target = rest.split('`').next().unwrap();
            let loaded = from_str(&format!("{flink}: {}\n", sample(target)), FILE, &[])
                .unwrap_or_else(|e| panic!("{flink}: {e}"));
            assert_eq!(
                loaded.entry(target).unwrap().source,
                Source::File { path: FILE.to_owned(), line: 1 },
                "{flink} must set {target}"
            );
            let warns = loaded.warnings.iter().any(|w| w.contains("deprecated Flink key"));
            assert_eq!(warns, keel.starts_with("deprecated"), "{flink}: {:?}", loaded.warnings);
        } else if let Some(reason) = keel.strip_prefix("ignored: ") {
            let loaded = from_str(&format!("{flink}: x\n"), FILE, &[]).unwrap();
            assert_eq!(
                loaded.warnings,
                vec![format!("Flink key '{flink}' at conf/config.yaml:1 is ignored: {reason}")],
                "{flink}"
            );
        } else {
            panic!("{flink}: unexpected treatment '{keel}'");
        }
    }
    assert_eq!(rows, FLINK_KEYS.len(), "every FLINK_KEYS entry has a row");
    for k in FLINK_KEYS {
        if let FlinkTreatment::Alias { keel, .. } = k.treatment {
            assert!(section.contains(&format!("| `{}` |", k.key)) && section.contains(keel), "{}", k.key);
        }
    }
}
