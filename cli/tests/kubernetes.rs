//! Kubernetes manifests (issue 9, item 7): `deploy/kubernetes/*.yaml` validate offline
//! against the Kubernetes API schemas (`kubernetes-validate --strict`), the ConfigMap's
//! config.yaml loads with no warning, and the manifests run under `podman kube play` on this
//! host (changed only where one host forces it: see `kube_overlay.py`): two dispatcher pods
//! elect a leader, the worker pod registers, and a job finishes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use chaos_tests::{config_yaml, http_get_json, wait_until, ZkEnsemble};
use serde_json::Value;

const KEEL: &str = env!("CARGO_BIN_EXE_keel");
const T: Duration = Duration::from_secs(90);
const IMAGE: &str = "localhost/keel:test";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn manifests() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .expect("deploy/kubernetes")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

fn kubernetes_validate() -> Command {
    // bin/setup installs it (pip); `python3 -m` finds it even when pip's bin dir is not on PATH.
    let mut c = Command::new("python3");
    c.args(["-m", "kubernetes_validate"]);
    c
}

#[test]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    let files = manifests();
    assert!(files.len() >= 4, "deploy/kubernetes holds the manifests: {files:?}");
    let out = kubernetes_validate().arg("--strict").args(&files).output().expect("run kubernetes-validate");
    assert!(out.status.success(), "kubernetes-validate --strict:\n{}", text(&out));
    for kind in ["configmap/keel-config", "deployment/keel-dispatcher", "deployment/keel-worker", "service/keel-rest"] {
        assert!(text(&out).contains(&format!("passed for resource {kind}")), "{kind} not validated:\n{}", text(&out));
    }

    // A manifest with a field the schema does not have is refused: the check can fail.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let broken = std::fs::read_to_string(repo().join("deploy/kubernetes/dispatcher-deployment.yaml"))
        .unwrap()
        .replace("replicas: 3", "replicas: three");
    std::fs::write(&bad, broken).unwrap();
    let out = kubernetes_validate().arg("--strict").arg(&bad).output().unwrap();
    assert!(!out.status.success(), "a broken manifest passed:\n{}", text(&out));

    // The ConfigMap's config.yaml is a configuration keel loads without a warning.
    let cm = std::fs::read_to_string(repo().join("deploy/kubernetes/keel-configuration-configmap.yaml")).unwrap();
    let body: String = cm
        .split_once("config.yaml: |\n")
        .expect("the ConfigMap holds config.yaml")
        .1
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, body).unwrap();
    let out = Command::new(KEEL).args(["config", "show", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "keel config show on the ConfigMap's config.yaml:\n{}", text(&out));
    assert!(!text(&out).contains("warning"), "the ConfigMap's config.yaml gives warnings:\n{}", text(&out));
}

/// Pods played from one manifest file, taken down (and their volume removed) on drop.
struct Played {
    file: PathBuf,
}

impl Played {
    fn logs(&self) -> String {
        let ps = Command::new("podman").args(["ps", "-a", "--format", "{{.Names}}"]).output().unwrap();
        let mut s = String::new();
        for name in String::from_utf8_lossy(&ps.stdout).lines().filter(|n| n.starts_with("keel-")) {
            let out = Command::new("podman").args(["logs", "--tail", "30", name]).output().unwrap();
            s.push_str(&format!("---- {name}\n{}\n", text(&out)));
        }
        s
    }
}

impl Drop for Played {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["kube", "down"]).arg(&self.file).output();
        let _ = Command::new("podman").args(["volume", "rm", "-f", "keel-data"]).output();
    }
}

#[test]
fn the_manifests_run_under_podman_kube_play() {
    let out = Command::new(repo().join("bin/build-image"))
        .args(["--tag", IMAGE])
        .env("KEEL_BIN", KEEL)
        .output()
        .expect("run bin/build-image");
    assert!(out.status.success(), "bin/build-image failed:\n{}", text(&out));

    let zk = ZkEnsemble::start(1).expect("1-node ZooKeeper");
    let dir = tempfile::tempdir().expect("temp dir");
    // Storage lives in the pods' keel-data volume (/keel-data), as in the manifests.
    let cfg = config_yaml(
        &zk.connect_string(),
        "/kube",
        &[
            ("high-availability.storageDir", "file:///keel-data/ha"),
            ("state.checkpoints.dir", "file:///keel-data/checkpoints"),
            ("taskmanager.numberOfTaskSlots", "2"),
        ],
    );
    let cfg_path = dir.path().join("config.yaml");
    std::fs::write(&cfg_path, &cfg).unwrap();
    let played = dir.path().join("played.yaml");
    let out = Command::new("python3")
        .arg(repo().join("cli/tests/kube_overlay.py"))
        .arg(repo().join("deploy/kubernetes"))
        .arg(IMAGE)
        .arg(&cfg_path)
        .output()
        .expect("python3 kube_overlay.py");
    assert!(out.status.success(), "kube_overlay.py:\n{}", text(&out));
    std::fs::write(&played, &out.stdout).unwrap();

    // A leftover from an interrupted run would make `kube play` refuse.
    let _ = Command::new("podman").args(["kube", "down"]).arg(&played).output();
    let _ = Command::new("podman").args(["volume", "rm", "-f", "keel-data"]).output();
    let guard = Played { file: played.clone() };
    // Run from the temp dir: podman tries to build an image for a folder named like a container.
    let out = Command::new("podman").current_dir(dir.path()).args(["kube", "play"]).arg(&played).output().unwrap();
    assert!(out.status.success(), "podman kube play:\n{}", text(&out));

    // Two dispatcher pods: one leads (found through ZooKeeper, as keel commands do), the
    // other stands by; the worker pod registers with the leader.
    let status = |_: ()| -> Option<Value> {
        let o = Command::new(KEEL).args(["status", "--json", "--config", cfg_path.to_str().unwrap()]).output().ok()?;
        serde_json::from_slice::<Value>(&o.stdout).ok()
    };
    let rest =
        wait_until(T, Duration::from_millis(300), "a leading dispatcher pod with a standby and the worker", || {
            let s = status(())?;
            let rest = s["leader"]["rest_address"].as_str().or_else(|| s["rest_address"].as_str())?.to_string();
            let (_, tms) = http_get_json(&rest, "/taskmanagers", Duration::from_secs(2)).ok()?;
            let registered = tms["taskmanagers"].as_array()?.iter().any(|t| t["id"] == "kube-worker");
            let standbys = s["standbys"].as_array().map(|a| a.len()).unwrap_or(0);
            (registered && standbys >= 1).then_some(rest)
        })
        .unwrap_or_else(|e| panic!("{e}\nstatus: {:?}\n{}", status(()), guard.logs()));

    let spec = "name: in-pods\nparallelism: 2\ncheckpoint-interval: 200 ms\npipeline:\n  - source: { type: sequence, count: 2000, keys: 4, rate: 4000 }\n  - count: {}\n  - sink: { type: file, path: file:///keel-data/out }\n";
    let spec_path = dir.path().join("job.yaml");
    std::fs::write(&spec_path, spec).unwrap();
    let out = Command::new(KEEL)
        .args(["run", "--config", cfg_path.to_str().unwrap(), spec_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "keel run:\n{}\n{}", text(&out), guard.logs());
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    wait_until(T, Duration::from_millis(200), "the job to finish in the pods", || {
        let (_, v) = http_get_json(&rest, &format!("/jobs/{id}"), Duration::from_secs(2)).ok()?;
        (v["state"] == "FINISHED").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", guard.logs()));
}
