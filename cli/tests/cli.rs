//! The `keel` command line: configuration errors as a user sees them, `config show`, and the
//! `high-availability.type: none` mode (one dispatcher, no ZooKeeper).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chaos_tests::{free_port, http_get_json, wait_until, KeelProcess, Role};

const KEEL: &str = env!("CARGO_BIN_EXE_keel");

fn keel(args: &[&str]) -> std::process::Output {
    Command::new(KEEL).args(args).output().expect("run keel")
}

#[test]
fn bad_config_is_reported_with_key_file_line_and_expectation_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(
        &file,
        "high-availability:\n  type: zookeeper\n  zookeeper:\n    quorum: zk1:2181\nrest.port: 80a81\n",
    )
    .unwrap();
    let out = keel(&["--config", file.to_str().unwrap(), "config", "show"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: invalid value '80a81' for 'rest.port' (set at {}:5): not an integer; expected an integer from 0 to 65535\n",
            file.display()
        )
    );
    // The same error stops a dispatcher before it binds anything.
    let out = keel(&["--config", file.to_str().unwrap(), "dispatcher"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value '80a81' for 'rest.port'"));

    let out = keel(&["--config", "/nonexistent/keel.yaml", "config", "show"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("error: cannot read configuration file '/nonexistent/keel.yaml': "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_show_names_the_source_of_every_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, "rest.port: 9091\nheartbeat:\n  interval: 2 s\nrest.adress: 0.0.0.0\n").unwrap();
    let out = keel(&["--config", file.to_str().unwrap(), "-D", "heartbeat.timeout=20 s", "config", "show", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("unknown key 'rest.adress' at {}:4 (did you mean 'rest.address'?)", file.display())),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = |k: &str| v["entries"].as_array().unwrap().iter().find(|e| e["key"] == k).cloned().unwrap();
    assert_eq!(entry("rest.port")["value"], "9091");
    assert_eq!(entry("rest.port")["source"]["line"], 1);
    assert_eq!(entry("heartbeat.interval")["source"]["line"], 3);
    assert_eq!(entry("heartbeat.timeout")["value"], "20 s");
    assert_eq!(entry("heartbeat.timeout")["source"]["kind"], "override");
    assert_eq!(entry("high-availability.zookeeper.client.session-timeout")["source"]["kind"], "default");
}

#[test]
fn ha_none_runs_one_dispatcher_that_workers_find_at_jobmanager_rpc_address() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = format!(
        "high-availability.type: none\njobmanager.rpc.port: {port}\nrest.port: 0\nrpc.port: 0\nheartbeat.interval: 200 ms\nheartbeat.timeout: 2 s\nio.tmp.dirs: {}\n",
        dir.path().join("tmp").display()
    );
    let d = KeelProcess::spawn(Path::new(KEEL), Role::Dispatcher, &cfg, &[], dir.path(), "d").unwrap();
    assert_eq!(d.rpc_addr(), format!("127.0.0.1:{port}"));
    let _w = KeelProcess::spawn(
        Path::new(KEEL),
        Role::Worker,
        &cfg,
        &["-D".into(), "taskmanager.resource-id=w-none".into()],
        dir.path(),
        "w",
    )
    .unwrap();
    let rest = d.rest_addr().unwrap();
    let (code, v) = http_get_json(&rest, "/ha/leader", Duration::from_secs(2)).unwrap();
    assert_eq!(code, 200);
    assert_eq!(v["is_leader"], true);
    assert_eq!(v["epoch"], 1);
    wait_until(Duration::from_secs(20), Duration::from_millis(50), "the worker to register", || {
        let (code, v) = http_get_json(&rest, "/overview", Duration::from_secs(1)).ok()?;
        (code == 200 && v["taskmanagers"] == 1 && v["slots-total"] == 1).then_some(())
    })
    .unwrap();
    // Jobs run here too (tests/local_mode.rs); keel status explains that there is no
    // ZooKeeper to read.
    let cfg_path = dir.path().join("d.yaml");
    let out = keel(&["--config", cfg_path.to_str().unwrap(), "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("high-availability.type is none"));
}
