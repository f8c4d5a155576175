#!/usr/bin/env python3
"""Writes the CloudNativePG instance pod fixtures of tests/packaging/pods/.

    python3 hack/gen-cnpg-pods.py [--check]

Each fixture is an instance pod as the CNPG operator sends it to the API
server (before any admission plugin), built from the operator's own code at
the version it names (github.com/cloudnative-pg/cloudnative-pg, tags v1.25.0,
v1.27.0, v1.28.2, v1.30.0 and main after v1.30.0):

  pkg/specs/pods.go       buildInstance / PodWithExistingStorage (labels,
                          annotations), createClusterPodSpec,
                          createPostgresContainers (probes, command, env);
  pkg/specs/containers.go createBootstrapContainer (the same mounts as
                          postgres; on main without kube-api-access);
  pkg/specs/volumes.go    createPostgresVolumes / CreatePostgresVolumeMounts
                          (order; tablespace volume names: the bare name
                          before v1.27.4 / v1.28.2 / v1.29.0, "tbs-<name>"
                          from then; main: automountServiceAccountToken
                          false and its own "kube-api-access" volume, mounted
                          only into postgres, commit 7a9d386).

Left out, because no injection path reads them: the cnpg.io/podSpec
annotation (the spec as JSON), the podEnvHash's real value.

--check compares the committed files with what this script writes and exits
1 when they differ (hack/check-chart.sh runs it).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "packaging" / "pods"
NAMESPACE = "databases"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"

# What differs between the versions (see the docstring for where each comes from).
VERSIONS = {
    "1.25": {"tag": "1.25.0", "tbs_prefix": "", "startup_path": "/healthz", "app_labels": False,
             "own_token": False},
    "1.27.0": {"tag": "1.27.0", "tbs_prefix": "", "startup_path": "/startupz", "app_labels": False,
               "own_token": False},
    "1.28.2": {"tag": "1.28.2", "tbs_prefix": "tbs-", "startup_path": "/startupz", "app_labels": True,
               "own_token": False},
    "1.30": {"tag": "1.30.0", "tbs_prefix": "tbs-", "startup_path": "/startupz", "app_labels": True,
             "own_token": False},
    # Not released yet (main reports 1.30.0): the next minor.
    "main": {"tag": "1.30.0", "tbs_prefix": "tbs-", "startup_path": "/startupz", "app_labels": True,
             "own_token": True, "commit": "7a9d386"},
}

# Cluster resources (spec.resources), given to bootstrap-controller and postgres.
RESOURCES = {
    "guaranteed": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
    "burstable": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
}


def k8s_name(tablespace: str) -> str:
    """convertPostgresIDToK8sName: a leading _ becomes 1, $ and _ become -, lower case."""
    if tablespace.startswith("_"):
        tablespace = "1" + tablespace[1:]
    return tablespace.replace("$", "-").replace("_", "-").lower()


def instance_pod(version: str, cluster: str, serial: int, wal: bool, tablespaces: list[str],
                 qos: str) -> dict:
    v = VERSIONS[version]
    pod_name = f"{cluster}-{serial}"
    tablespaces = sorted(tablespaces)  # getSortedTablespaceList
    labels = {"cnpg.io/cluster": cluster, "cnpg.io/instanceName": pod_name, "cnpg.io/podRole": "instance"}
    if v["app_labels"]:
        labels.update({
            "app.kubernetes.io/name": "postgresql",
            "app.kubernetes.io/instance": cluster,
            "app.kubernetes.io/version": "17",
            "app.kubernetes.io/component": "database",
            "app.kubernetes.io/managed-by": "cloudnative-pg",
        })
    mounts = [
        {"name": "pgdata", "mountPath": "/var/lib/postgresql/data"},
        {"name": "scratch-data", "mountPath": "/run"},
        {"name": "scratch-data", "mountPath": "/controller"},
        {"name": "shm", "mountPath": "/dev/shm"},
    ]
    volumes = [
        {"name": "pgdata", "persistentVolumeClaim": {"claimName": pod_name}},
        {"name": "scratch-data", "emptyDir": {}},
        {"name": "shm", "emptyDir": {"medium": "Memory"}},
    ]
    if wal:
        mounts.append({"name": "pg-wal", "mountPath": "/var/lib/postgresql/wal"})
        volumes.append({"name": "pg-wal", "persistentVolumeClaim": {"claimName": f"{pod_name}-wal"}})
    token_mount = {"name": "kube-api-access", "mountPath": TOKEN_PATH, "readOnly": True}
    postgres_mounts = copy.deepcopy(mounts)
    if v["own_token"]:
        postgres_mounts.append(token_mount)
    for t in tablespaces:
        vol = v["tbs_prefix"] + k8s_name(t)
        m = {"name": vol, "mountPath": f"/var/lib/postgresql/tablespaces/{t}"}
        mounts.append(m)
        postgres_mounts.append(copy.deepcopy(m))
        volumes.append({"name": vol, "persistentVolumeClaim": {"claimName": f"{pod_name}-tbs-{k8s_name(t)}"}})
    if v["own_token"]:
        volumes.append({"name": "kube-api-access", "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]}})
    seccomp = {"type": "RuntimeDefault"}
    container_sc = {"capabilities": {"drop": ["ALL"]}, "privileged": False, "runAsNonRoot": True,
                    "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                    "seccompProfile": seccomp}
    resources = RESOURCES[qos]

    def probe(path, **extra):
        return {"httpGet": {"path": path, "port": 8000, "scheme": "HTTPS"}, "periodSeconds": 10,
                "timeoutSeconds": 5, **extra}

    spec = {
        "hostname": pod_name,
        "initContainers": [{
            "name": "bootstrap-controller",
            "image": f"ghcr.io/cloudnative-pg/cloudnative-pg:{v['tag']}",
            "command": ["/manager", "bootstrap", "/controller/manager", "--log-level=info"],
            "volumeMounts": mounts,
            "resources": copy.deepcopy(resources),
            "securityContext": copy.deepcopy(container_sc),
        }],
        "containers": [{
            "name": "postgres",
            "image": "ghcr.io/cloudnative-pg/postgresql:17.5",
            "command": ["/controller/manager", "instance", "run", "--status-port-tls", "--log-level=info"],
            "env": [
                {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
                {"name": "POD_NAME", "value": pod_name},
                {"name": "NAMESPACE", "value": NAMESPACE},
                {"name": "CLUSTER_NAME", "value": cluster},
                {"name": "PSQL_HISTORY", "value": "/controller/tmp/.psql_history"},
                {"name": "PGPORT", "value": "5432"},
                {"name": "PGHOST", "value": "/controller/run"},
                {"name": "TMPDIR", "value": "/controller/tmp"},
            ],
            "ports": [
                {"name": "postgresql", "containerPort": 5432, "protocol": "TCP"},
                {"name": "metrics", "containerPort": 9187, "protocol": "TCP"},
                {"name": "status", "containerPort": 8000, "protocol": "TCP"},
            ],
            "startupProbe": probe(v["startup_path"], failureThreshold=360),
            "readinessProbe": probe("/readyz"),
            "livenessProbe": probe("/healthz"),
            "volumeMounts": postgres_mounts,
            "resources": copy.deepcopy(resources),
            "securityContext": copy.deepcopy(container_sc),
        }],
        "volumes": volumes,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 26, "runAsGroup": 26, "fsGroup": 26,
                            "seccompProfile": seccomp},
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {
                "labelSelector": {"matchExpressions": [
                    {"key": "cnpg.io/cluster", "operator": "In", "values": [cluster]},
                    {"key": "cnpg.io/podRole", "operator": "In", "values": ["instance"]},
                ]},
                "topologyKey": "kubernetes.io/hostname",
            }}]}},
        "serviceAccountName": cluster,
        "terminationGracePeriodSeconds": 1800,
    }
    if v["own_token"]:
        spec["automountServiceAccountToken"] = False
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "namespace": NAMESPACE,
            "labels": labels,
            "annotations": {
                "cnpg.io/nodeSerial": str(serial),
                "cnpg.io/operatorVersion": v["tag"],
                "cnpg.io/podEnvHash": "5d8c9f7b6",
            },
            "ownerReferences": [{"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "name": cluster,
                                 "uid": "6f3c1d2e-0000-4000-8000-00000000c1a5", "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": spec,
    }


def fixtures() -> dict[str, tuple[str, dict]]:
    """file name -> (header, pod)."""
    out = {}
    for version, v in VERSIONS.items():
        for qos in RESOURCES:
            pod = instance_pod(version, "pg-main", 1, True, ["analytics", "_scratch"], qos)
            if version == "main":
                what = f"CloudNativePG main after 1.30.0 (commit {v['commit']}, the next minor)"
                extra = ("# automountServiceAccountToken false and its own kube-api-access volume,\n"
                         "# mounted only into postgres (not into bootstrap-controller);\n")
            else:
                what, extra = f"CloudNativePG {v['tag']}", ""
            naming = ("volumes named after the tablespace: _scratch -> 1scratch"
                      if not v["tbs_prefix"] else "volumes tbs-<name>: _scratch -> tbs-1scratch")
            quantities = yaml.safe_dump(RESOURCES[qos], default_flow_style=True, width=1000).strip()
            header = (f"# An instance pod of Cluster pg-main as {what} creates it:\n"
                      + extra + "# a WAL volume, tablespaces analytics and _scratch\n"
                      f"# ({naming}). {qos.capitalize()}: the cluster's resources\n"
                      f"# {quantities} on both containers.\n"
                      "# Expected: the sidecar appended on every injection path, the pod valid\n"
                      f"# and still {qos.capitalize()}.\n")
            out[f"cnpg-{version}-{qos}.yaml"] = (header, pod)
    out["instance-data-only.yaml"] = (
        "# An instance pod of Cluster pg-reporting (CloudNativePG 1.30.0): a single\n"
        "# volume (no walStorage, no tablespaces). Expected: the sidecar with\n"
        "# --data-path only.\n",
        instance_pod("1.30", "pg-reporting", 1, False, [], "guaranteed"))
    out["instance-unlisted-cluster.yaml"] = (
        "# An instance pod of Cluster pg-other (CloudNativePG 1.30.0), which the\n"
        "# example values do not list. Expected: unchanged when `clusters` lists\n"
        "# others, injected when it is empty.\n",
        instance_pod("1.30", "pg-other", 1, False, [], "burstable"))
    injected = instance_pod("1.30", "pg-main", 3, True, ["analytics", "_scratch"], "guaranteed")
    injected["spec"]["initContainers"].append({
        "name": "cnpg-autoresize",
        "image": "registry.example.com/cnpg-autoresize:custom",
        "restartPolicy": "Always",
        "args": ["run", "--data-path=/var/lib/postgresql/data"],
        "volumeMounts": [{"name": "pgdata", "mountPath": "/var/lib/postgresql/data", "readOnly": True}],
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"cpu": "20m", "memory": "32Mi"}},
    })
    out["instance-already-injected.yaml"] = (
        "# An instance pod of Cluster pg-main (CloudNativePG 1.30.0) that already\n"
        "# carries a container named cnpg-autoresize (added by hand or by another\n"
        "# injector). Expected: unchanged on every path.\n",
        injected)
    return out


def render(header: str, pod: dict) -> str:
    return (header + "# Written by hack/gen-cnpg-pods.py (do not edit by hand); read by\n"
            "# hack/check-injection.py and the real-server checks (hack/envtest.sh).\n"
            + yaml.safe_dump(pod, sort_keys=False, width=1000))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--check", action="store_true", help="fail when a committed fixture differs")
    a = p.parse_args()
    stale = []
    for name, (header, pod) in fixtures().items():
        text = render(header, pod)
        path = OUT / name
        if a.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if a.check:
        if stale:
            print(f"stale pod fixtures (run python3 hack/gen-cnpg-pods.py): {', '.join(stale)}", file=sys.stderr)
            return 1
        print(f"  {len(fixtures())} CloudNativePG pod fixtures match hack/gen-cnpg-pods.py")
        return 0
    print(f"wrote {len(fixtures())} fixtures to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
