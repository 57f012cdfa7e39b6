//! Keel's container image (issue 9, item 6): `bin/build-image` builds
//! `deploy/docker/Dockerfile` with podman; a dispatcher container and a worker container (host
//! network, `conf/` mounted, `KEEL_PROPERTIES` overriding keys as Flink's `FLINK_PROPERTIES`
//! does) run against a real ZooKeeper started by the test; a job submitted from the host
//! finishes. Containers are removed (`podman rm -f`) however the test ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use chaos_tests::{config_yaml, free_port, http_get_json, wait_until, ZkEnsemble};

const KEEL: &str = env!("CARGO_BIN_EXE_keel");
const T: Duration = Duration::from_secs(90);
const IMAGE: &str = "localhost/keel:test";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman").args(args).output().unwrap_or_else(|e| panic!("cannot run podman {args:?}: {e}"))
}

/// The containers this test started, removed on drop.
struct Containers(Vec<String>);

impl Containers {
    fn logs(&self) -> String {
        let mut s = String::new();
        for name in &self.0 {
            let out = podman(&["logs", "--tail", "40", name]);
            s.push_str(&format!(
                "---- podman logs {name}\n{}{}\n",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        s
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = podman(&["rm", "-f", "-t", "5", name]);
        }
    }
}

#[test]
fn the_image_runs_a_dispatcher_and_a_worker_that_finish_a_job() {
    // Build the image from the keel binary under test.
    let out = Command::new(repo().join("bin/build-image"))
        .args(["--tag", IMAGE])
        .env("KEEL_BIN", KEEL)
        .output()
        .expect("run bin/build-image");
    assert!(
        out.status.success(),
        "bin/build-image failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let zk = ZkEnsemble::start(1).expect("1-node ZooKeeper");
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display().to_string();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let storage = format!("file://{d}/storage");
    let tmp = format!("{d}/tmp");
    // rest.port 0 in the file: the dispatcher listens on `port` only if KEEL_PROPERTIES applied.
    let cfg = config_yaml(
        &zk.connect_string(),
        "/container",
        &[("high-availability.storageDir", &storage), ("io.tmp.dirs", &tmp), ("rest.port", "0")],
    );
    std::fs::write(conf.join("config.yaml"), cfg).unwrap();
    let port = free_port();
    let tag = free_port(); // a distinct suffix for the container names
    let names = Containers(vec![format!("keel-test-dispatcher-{tag}"), format!("keel-test-worker-{tag}")]);
    let conf_mount = format!("{}:/opt/keel/conf:ro", conf.display());
    let data_mount = format!("{d}:{d}");
    let run = |name: &str, props: &str, role: &str| {
        let out = podman(&[
            "run",
            "-d",
            "--runtime",
            "runc",
            "--network",
            "host",
            "--name",
            name,
            "-v",
            &conf_mount,
            "-v",
            &data_mount,
            "-e",
            &format!("KEEL_PROPERTIES={props}"),
            IMAGE,
            role,
        ]);
        assert!(out.status.success(), "podman run {role}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&names.0[0], &format!("rest.port: {port}\n# a comment line\n"), "dispatcher");
    run(&names.0[1], "taskmanager.resource-id: container-worker\ntaskmanager.numberOfTaskSlots: 2", "worker");

    let rest = format!("127.0.0.1:{port}");
    wait_until(T, Duration::from_millis(200), "the dispatcher container to lead with the worker registered", || {
        let (_, v) = http_get_json(&rest, "/ha/leader", Duration::from_secs(2)).ok()?;
        if v["is_leader"] != true {
            return None;
        }
        let (_, tms) = http_get_json(&rest, "/taskmanagers", Duration::from_secs(2)).ok()?;
        tms["taskmanagers"].as_array()?.iter().any(|t| t["id"] == "container-worker").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", names.logs()));

    // A job submitted from the host (found through ZooKeeper) runs in the worker container.
    let sink = dir.path().join("out");
    let spec = format!(
        "name: in-a-container\nparallelism: 2\ncheckpoint-interval: 200 ms\npipeline:\n  - source: {{ type: sequence, count: 2000, keys: 4, rate: 4000 }}\n  - count: {{}}\n  - sink: {{ type: file, path: file://{} }}\n",
        sink.display()
    );
    let spec_path = dir.path().join("job.yaml");
    std::fs::write(&spec_path, spec).unwrap();
    let out = Command::new(KEEL)
        .args(["run", "--config", conf.join("config.yaml").to_str().unwrap(), spec_path.to_str().unwrap()])
        .output()
        .expect("keel run");
    assert!(out.status.success(), "keel run: {}\n{}", String::from_utf8_lossy(&out.stderr), names.logs());
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    wait_until(T, Duration::from_millis(200), "the job to finish", || {
        let (_, v) = http_get_json(&rest, &format!("/jobs/{id}"), Duration::from_secs(2)).ok()?;
        (v["state"] == "FINISHED").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", names.logs()));
    let committed = chaos_tests::util::files_under(&sink);
    assert!(!committed.is_empty(), "the worker container committed no output under {}", sink.display());
}
