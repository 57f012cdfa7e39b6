"""Turns deploy/kubernetes/*.yaml into what `podman kube play` can run on one host for
cli/tests/kubernetes.rs, changing only what a single host forces:
  - the image is the test's image; pods use the host network (hostNetwork: true);
  - container ports and probes are dropped (podman cannot map ports on the host network, and
    runs probes as in-container commands, not kubelet HTTP checks);
  - KEEL_PROPERTIES bind loopback with port 0 (several pods share one host);
  - the ConfigMap's config.yaml is the test's (its ZooKeeper, its storage);
  - Services are left out (podman has no service network);
  - replicas: 2 dispatchers, 1 worker.
usage: kube_overlay.py MANIFEST_DIR IMAGE CONFIG_FILE > out.yaml
"""
import pathlib
import sys

import yaml

src, image, config = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3]).read_text()
docs = []
for f in sorted(src.glob("*.yaml")):
    for d in yaml.safe_load_all(f.read_text()):
        if not d or d["kind"] == "Service":
            continue
        if d["kind"] == "ConfigMap":
            d["data"]["config.yaml"] = config
        if d["kind"] == "Deployment":
            component = d["metadata"]["labels"]["component"]
            d["spec"]["replicas"] = 2 if component == "dispatcher" else 1
            pod = d["spec"]["template"]["spec"]
            pod["hostNetwork"] = True
            for c in pod["containers"]:
                c["image"] = image
                for k in ("ports", "livenessProbe", "readinessProbe"):
                    c.pop(k, None)
                c["env"] = [e for e in c["env"] if e["name"] not in ("POD_IP",)]
                for e in c["env"]:
                    if e["name"] == "KEEL_PROPERTIES":
                        props = "rest.address: 127.0.0.1\nrpc.address: 127.0.0.1\nrpc.port: 0\n"
                        if component == "worker":
                            props += "taskmanager.resource-id: kube-worker\nmetrics.reporter.prom.port: 0\n"
                        e["value"] = props
                c["env"] = [e for e in c["env"] if e["name"] != "POD_NAME"]
        docs.append(d)
print(yaml.safe_dump_all(docs, sort_keys=False))
