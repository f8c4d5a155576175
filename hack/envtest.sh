#!/usr/bin/env bash
# The chart and two managers against a REAL kube-apiserver and etcd (not the
# project's API sandbox), for anyone who has the binaries:
#
#   KUBEBUILDER_ASSETS=<dir> bash hack/envtest.sh [--record FILE]
#
# KUBEBUILDER_ASSETS is controller-runtime envtest's convention: a directory
# holding kube-apiserver and etcd (and optionally kubectl), e.g. what
# `setup-envtest use -p path` prints. Without them this script says what is
# missing and exits 1; it never passes without having run. Not part of the
# README's test command (CI has no such binaries). --record FILE writes the
# server's answers to the blast-radius attempts as JSON
# (tests/packaging/real-server-answers.json is such a file).
#
# What it does, in order (each step fails the run on error):
#   1. starts etcd and kube-apiserver on loopback (hack/lib/real-apiserver.sh):
#      client certificates, ServiceAccount tokens, RBAC, the default admission
#      plugins;
#   2. creates the chart's CRDs (charts/cnpg-autoresize/crds/) and a Cluster
#      CRD — the CloudNativePG fork's when $CNPG_CLUSTER_CRD or
#      ../shared/cnpg/postgresql.cnpg.io_clusters.yaml has it, else the
#      project's generated one — and waits for them to be Established;
#   3. renders the chart (helm-python-sdk, as hack/check-chart.sh does) for
#      the clusters "forkpg", "uppg" and "qospg" in namespace "envtest" and
#      applies what a bare API server serves: ServiceAccount, Roles,
#      RoleBindings, the ValidatingAdmissionPolicy and MutatingAdmissionPolicy
#      with their bindings (PodMonitor, PrometheusRule and Kyverno need their
#      operators' CRDs and are left out; no CNI enforces NetworkPolicies);
#   4. runs `cnpg-envtest` (crates/testbed/src/bin/cnpg-envtest.rs): pods,
#      PVCs and ServiceAccount tokens as CloudNativePG makes them, one
#      `cnpg-autoresize run` per instance with the cluster's token, a data
#      volume filled past its trigger in each cluster, and checks the resize,
#      its record, the Event and the owner's status (the fork's Cluster, the
#      AutoResizePolicy); then the QoS check (every CNPG instance pod fixture
#      of tests/packaging/pods/, Guaranteed and Burstable, created with and
#      without the injection: the sidecar is there and status.qosClass is
#      unchanged) and the blast-radius check (forkpg's token against uppg's
#      PVC, Cluster status, Lease and policy status, and its own PVC: each
#      refused but the grow with the record annotation); the same policy
#      rendered with no cluster listed (namespace "envtest-nolist") knows a
#      cluster by the instance pod its caller's token is bound to;
#   5. creates the pods as the Kyverno policy injects them (played by
#      hack/check-injection.py --write-kyverno: no Kyverno here) in namespace
#      "envtest-kyverno": each must be accepted and keep its QoS class.
# Exit status 0 when every step passed. Logs stay in the printed directory.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=hack/lib/real-apiserver.sh
source hack/lib/real-apiserver.sh

say() { printf 'hack/envtest.sh: %s\n' "$*"; }
NS=envtest
record=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --record) record=(--record "$(realpath -m "${2:?--record needs a file}")"); shift ;;
    *) real_api_die "unknown argument: $1 (usage: bash hack/envtest.sh [--record FILE])" ;;
  esac
  shift
done

real_api_require
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import helm_python, yaml' 2>/dev/null; then
  say "installing helm-python-sdk and PyYAML (pip) to render the chart"
  "$PY" -m pip install --quiet --disable-pip-version-check helm-python-sdk==0.2.2 "PyYAML>=6" \
    || real_api_die "cannot install helm-python-sdk/PyYAML with pip; install them and re-run"
fi

work=$(mktemp -d -t cnpg-envtest-XXXXXX)
say "work directory: $work"
say "building cnpg-autoresize and cnpg-envtest"
cargo build --quiet --bin cnpg-autoresize -p cnpg-autoresize
cargo build --quiet --bin cnpg-envtest -p cnpg-testbed

say "starting etcd and kube-apiserver from $KUBEBUILDER_ASSETS"
real_api_start "$work/server"
say "kube-apiserver $(real_api_version) ready at $REAL_API_URL"
kc() { KUBECONFIG="$REAL_API_KUBECONFIG" "$KUBECTL" "$@"; }

cluster_crd="${CNPG_CLUSTER_CRD:-$ROOT/../shared/cnpg/postgresql.cnpg.io_clusters.yaml}"
if [[ ! -f "$cluster_crd" ]]; then
  [[ -n "${CNPG_CLUSTER_CRD:-}" ]] && real_api_die "CNPG_CLUSTER_CRD=$CNPG_CLUSTER_CRD is not a file"
  cluster_crd="$ROOT/crates/kube-sandbox/crds/postgresql.cnpg.io_clusters.generated.yaml"
fi
say "Cluster CRD: $cluster_crd"
kc create -f "$cluster_crd" >/dev/null
kc create -f charts/cnpg-autoresize/crds/ >/dev/null
kc wait --for=condition=Established --timeout=60s \
  crd/clusters.postgresql.cnpg.io crd/autoresizepolicies.autoresize.cnpg.io >/dev/null
say "CRDs accepted and Established"

kc create namespace "$NS" >/dev/null
"$PY" hack/chart-tool.py render --chart charts/cnpg-autoresize --namespace "$NS" \
  --set-json 'clusters=[{"name": "forkpg"}, {"name": "uppg"}, {"name": "qospg"}]' \
  --out "$work/chart" >/dev/null
"$PY" - "$work/chart" "$work/apply.yaml" <<'EOF'
import sys, pathlib, yaml
served = {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "NetworkPolicy",
          "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
          "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"}
docs, skipped = [], set()
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.yaml")):
    for d in yaml.safe_load_all(p.read_text()):
        if not d:
            continue
        (docs.append(d) if d["kind"] in served else skipped.add(d["kind"]))
pathlib.Path(sys.argv[2]).write_text(yaml.safe_dump_all(docs))
print(f"applying {len(docs)} rendered objects; left out (no CRD on a bare server): {', '.join(sorted(skipped)) or 'none'}")
EOF
kc apply -f "$work/apply.yaml" >/dev/null
# The same chart with no cluster listed, in a second namespace: its
# ValidatingAdmissionPolicy then knows a cluster by the caller's instance pod.
kc create namespace "$NS-nolist" >/dev/null
"$PY" hack/chart-tool.py render --chart charts/cnpg-autoresize --namespace "$NS-nolist" \
  --set-json 'injection.mode="none"' --set-json serviceAccount.create=false \
  --out "$work/chart-nolist" >/dev/null
"$PY" - "$work/chart-nolist" "$work/apply-nolist.yaml" <<'EOF'
import sys, pathlib, yaml
served = {"Role", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "NetworkPolicy"}
docs = [d for p in sorted(pathlib.Path(sys.argv[1]).glob("*.yaml"))
        for d in yaml.safe_load_all(p.read_text()) if d and d["kind"] in served]
pathlib.Path(sys.argv[2]).write_text(yaml.safe_dump_all(docs))
EOF
kc apply -f "$work/apply-nolist.yaml" >/dev/null
say "chart objects applied: $(kc -n "$NS" get role,rolebinding,serviceaccount -o name | tr '\n' ' ')"

say "running the managers of forkpg (fork mode) and uppg (AutoResizePolicy), then the QoS and blast-radius checks"
if ! target/debug/cnpg-envtest --kubeconfig "$REAL_API_KUBECONFIG" \
  --manager target/debug/cnpg-autoresize --namespace "$NS" "${record[@]}"; then
  say "FAIL (server logs in $work/server)"
  exit 1
fi

# The Kyverno path cannot run here (no Kyverno): its output, as
# hack/check-injection.py plays it, is created on the server instead, which
# must accept each pod and keep its QoS class.
"$PY" hack/check-injection.py --write-kyverno "$work/kyverno-pods" >/dev/null
kc create namespace "$NS-kyverno" >/dev/null
kc -n "$NS-kyverno" create serviceaccount pg-main >/dev/null
kyverno_failed=0
for pod in "$work"/kyverno-pods/*.json; do
  name=$(basename "$pod" .json)
  want=Burstable
  [[ "$name" == *-guaranteed ]] && want=Guaranteed
  sed "s/\"pg-main-1\"/\"kyv-${name//./-}\"/g" "$pod" >"$pod.named"
  if ! got=$(kc -n "$NS-kyverno" create -f "$pod.named" -o jsonpath='{.status.qosClass}' 2>&1); then
    say "Kyverno-injected $name: the server refused the pod: $got"
    kyverno_failed=1
  elif [[ "$got" != "$want" ]]; then
    say "Kyverno-injected $name: QoS $got, expected $want"
    kyverno_failed=1
  else
    say "Kyverno-injected $name: accepted, QoS $got"
  fi
done
if [[ $kyverno_failed -ne 0 ]]; then
  say "FAIL (server logs in $work/server)"
  exit 1
fi
real_api_stop
rm -rf "$work"
say "PASS"
