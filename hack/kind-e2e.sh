#!/usr/bin/env bash
# End-to-end check of cnpg-autoresize on a real Kubernetes (kind) cluster.
#
# NOT run in the project's CI (no Docker there): it is for people with
# docker, kind, kubectl and helm (v3.8+ or v4) on their machine. It
#
#   1. creates a kind cluster and an LVM volume group inside its node, so PVCs
#      are real, expandable ext4 filesystems (OpenEBS LVM LocalPV; kind's
#      default local-path provisioner cannot expand volumes, and hostPath-style
#      drivers report the node's disk in statvfs);
#   2. installs CloudNativePG and Kyverno from pinned release manifests;
#   3. builds the image from this repository and loads it into kind;
#   4. installs the chart with the Kyverno injection policy (the "mutating
#      admission" route of NOTES.txt) for one cluster;
#   5. creates a 2-instance Cluster with data + WAL volumes and resize enabled,
#      plus the pg_monitor login role the manager uses;
#   6. fills each instance's data volume past the trigger with dd;
#   7. waits for both data PVCs to grow, then checks status.autoResizeEvents,
#      the AutoResizeSuccess event, the Lease and the metrics.
#
# Usage:   bash hack/kind-e2e.sh
# Knobs (environment):
#   KIND_CLUSTER=cnpg-autoresize-e2e   kind cluster name
#   KEEP_CLUSTER=1                     keep the cluster (and the loop device) at the end
#   CNPG_VERSION=1.27.0                CloudNativePG release
#   KYVERNO_VERSION=v1.13.4            Kyverno release
#   LVM_LOCALPV_REF=v1.6.0             OpenEBS LVM LocalPV git tag
#   KIND_NODE_IMAGE=                   e.g. kindest/node:v1.33.1 (default: kind's)
#   TIMEOUT=600                        seconds to wait for the resize
#
# Exit status 0 when every check passed.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIND_CLUSTER="${KIND_CLUSTER:-cnpg-autoresize-e2e}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
CNPG_VERSION="${CNPG_VERSION:-1.27.0}"
CNPG_MINOR="${CNPG_VERSION%.*}"
CNPG_MANIFEST="https://raw.githubusercontent.com/cloudnative-pg/cloudnative-pg/release-${CNPG_MINOR}/releases/cnpg-${CNPG_VERSION}.yaml"
KYVERNO_VERSION="${KYVERNO_VERSION:-v1.13.4}"
KYVERNO_MANIFEST="https://github.com/kyverno/kyverno/releases/download/${KYVERNO_VERSION}/install.yaml"
LVM_LOCALPV_REF="${LVM_LOCALPV_REF:-v1.6.0}"
LVM_MANIFEST="https://raw.githubusercontent.com/openebs/lvm-localpv/${LVM_LOCALPV_REF}/deploy/lvm-operator.yaml"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-}"
TIMEOUT="${TIMEOUT:-600}"
IMAGE_REPO="cnpg-autoresize"
IMAGE_TAG="e2e"
NS="databases"
PG="pg-e2e"
NODE="${KIND_CLUSTER}-control-plane"
LOOP_IMG="/var/local/lvm-e2e.img"

log() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\nE2E FAIL: %s\n' "$*" >&2; exit 1; }

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "--- diagnostics (exit $rc) ---" >&2
    kubectl -n "$NS" get cluster,pods,pvc 2>/dev/null >&2 || true
    kubectl -n "$NS" logs -l "cnpg.io/cluster=$PG" -c cnpg-autoresize --tail=50 2>/dev/null >&2 || true
  fi
  if [[ "$KEEP_CLUSTER" == "1" ]]; then
    echo "KEEP_CLUSTER=1: kind cluster $KIND_CLUSTER kept (delete: kind delete cluster --name $KIND_CLUSTER)"
    return
  fi
  log "cleanup"
  # The loop device belongs to the host kernel: detach it before the node goes.
  docker exec "$NODE" sh -c "vgremove -f lvmvg >/dev/null 2>&1; \
    losetup -j $LOOP_IMG | cut -d: -f1 | xargs -r -n1 losetup -d" 2>/dev/null || true
  kind delete cluster --name "$KIND_CLUSTER" || true
}
trap cleanup EXIT

# Polls CMD until it succeeds or TIMEOUT seconds pass.
wait_for() {
  local what="$1"; shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    [[ $SECONDS -lt $deadline ]] || die "timed out waiting for: $what"
    sleep 5
  done
}

# ---------------------------------------------------------------- 1. cluster
log "1/7 kind cluster $KIND_CLUSTER"
if ! kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  kind_args=(create cluster --name "$KIND_CLUSTER" --wait 120s)
  [[ -n "$KIND_NODE_IMAGE" ]] && kind_args+=(--image "$KIND_NODE_IMAGE")
  kind "${kind_args[@]}"
fi
kubectl config use-context "kind-$KIND_CLUSTER" >/dev/null

log "1/7 LVM volume group 'lvmvg' on a 20 GiB sparse loop file inside the node"
docker exec "$NODE" sh -c "command -v vgcreate >/dev/null || \
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lvm2 >/dev/null)"
docker exec "$NODE" sh -c "vgs lvmvg >/dev/null 2>&1 || { \
  truncate -s 20G $LOOP_IMG && dev=\$(losetup -f --show $LOOP_IMG) && \
  pvcreate -q \"\$dev\" && vgcreate -q lvmvg \"\$dev\"; }"

kubectl apply -f "$LVM_MANIFEST"
kubectl apply -f - <<'EOF'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: lvm-expandable
provisioner: local.csi.openebs.io
parameters:
  storage: lvm
  volgroup: lvmvg
  fsType: ext4
allowVolumeExpansion: true
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
EOF
kubectl -n kube-system rollout status deploy/openebs-lvm-controller --timeout=300s 2>/dev/null \
  || kubectl -n kube-system wait --for=condition=Ready pod -l role=openebs-lvm --timeout=300s

# ---------------------------------------------------------- 2. CNPG, Kyverno
log "2/7 CloudNativePG $CNPG_VERSION"
kubectl apply --server-side -f "$CNPG_MANIFEST"
kubectl -n cnpg-system rollout status deploy/cnpg-controller-manager --timeout=300s

log "2/7 Kyverno $KYVERNO_VERSION"
# `create`, not `apply`: Kyverno's CRDs exceed the client-side apply annotation limit.
kubectl get ns kyverno >/dev/null 2>&1 || kubectl create -f "$KYVERNO_MANIFEST"
kubectl -n kyverno rollout status deploy/kyverno-admission-controller --timeout=300s

# ------------------------------------------------------------------ 3. image
log "3/7 build and load image $IMAGE_REPO:$IMAGE_TAG"
docker build -t "$IMAGE_REPO:$IMAGE_TAG" \
  --build-arg VERSION="e2e" --build-arg REVISION="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" \
  "$ROOT"
kind load docker-image "$IMAGE_REPO:$IMAGE_TAG" --name "$KIND_CLUSTER"

# ------------------------------------------------------------------ 4. chart
log "4/7 helm install (RBAC + Kyverno injection for Cluster $PG)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
# Monitoring objects need the Prometheus Operator CRDs, absent here.
helm upgrade --install cnpg-autoresize "$ROOT/charts/cnpg-autoresize" -n "$NS" --wait \
  --set image.repository="$IMAGE_REPO" --set image.tag="$IMAGE_TAG" --set image.pullPolicy=Never \
  --set "clusters[0].name=$PG" --set "clusters[0].walStorage=true" \
  --set injection.mode=kyverno \
  --set podMonitor.enabled=false --set prometheusRule.enabled=false --set grafanaDashboard.enabled=false \
  --set sidecar.logFormat=text
kubectl -n "$NS" wait --for=condition=Ready "policy.kyverno.io/cnpg-autoresize-inject" --timeout=120s

# ---------------------------------------------------------------- 5. Cluster
log "5/7 Cluster $PG (2 instances, data + WAL, resize enabled)"
kubectl -n "$NS" apply -f - <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: ${PG}-autoresize
type: kubernetes.io/basic-auth
stringData:
  username: cnpg_autoresize
  password: e2e-$(date +%s)-not-a-secret
---
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: ${PG}
spec:
  instances: 2
  managed:
    roles:
      - name: cnpg_autoresize
        ensure: present
        login: true
        inRoles: [pg_monitor]
        passwordSecret:
          name: ${PG}-autoresize
  storage:
    size: 1Gi
    storageClass: lvm-expandable
    resize:
      enabled: true
      triggers:
        usageThreshold: 70
      expansion:
        step: "50%"
        minStep: 1Gi
        limit: 4Gi
      strategy:
        maxActionsPerDay: 2
  walStorage:
    size: 1Gi
    storageClass: lvm-expandable
    resize:
      enabled: true
      strategy:
        walSafetyPolicy:
          requireArchiveHealthy: true
EOF
kubectl -n "$NS" wait --for=condition=Ready "cluster.postgresql.cnpg.io/$PG" --timeout=600s
for pod in "$PG-1" "$PG-2"; do
  kubectl -n "$NS" get pod "$pod" -o jsonpath='{.spec.initContainers[*].name}' | grep -qw cnpg-autoresize \
    || die "$pod has no cnpg-autoresize (native sidecar) init container: is the Kyverno policy working?"
done
kubectl -n "$NS" wait --for=condition=Ready pod -l "cnpg.io/cluster=$PG" --timeout=300s
wait_for "lease cnpg-autoresize-$PG" kubectl -n "$NS" get lease "cnpg-autoresize-$PG"
echo "leader: $(kubectl -n "$NS" get lease "cnpg-autoresize-$PG" -o jsonpath='{.spec.holderIdentity}')"

# ------------------------------------------------------------------- 6. fill
log "6/7 fill each data volume to ~85% with dd"
for pod in "$PG-1" "$PG-2"; do
  # df -Pm: size and available MiB of the data mount, as the manager sees it.
  read -r size avail < <(kubectl -n "$NS" exec "$pod" -c postgres -- df -Pm /var/lib/postgresql/data \
    | awk 'NR==2 {print $2, $4}')
  fill=$(( avail - size * 15 / 100 ))
  [[ $fill -gt 0 ]] || die "$pod: cannot compute fill size (size=$size avail=$avail)"
  echo "$pod: ${size} MiB volume, writing ${fill} MiB"
  kubectl -n "$NS" exec "$pod" -c postgres -- \
    dd if=/dev/zero of=/var/lib/postgresql/data/e2e-fill bs=1M count="$fill" status=none
done

# ------------------------------------------------------------------ 7. check
log "7/7 wait for both data PVCs to grow past 1Gi"
pvc_grown() {
  local cap
  cap="$(kubectl -n "$NS" get pvc "$1" -o jsonpath='{.status.capacity.storage}')"
  [[ -n "$cap" && "$cap" != "1Gi" ]]
}
for pvc in "$PG-1" "$PG-2"; do
  wait_for "PVC $pvc to grow" pvc_grown "$pvc"
  echo "$pvc: request $(kubectl -n "$NS" get pvc "$pvc" -o jsonpath='{.spec.resources.requests.storage}'), \
capacity $(kubectl -n "$NS" get pvc "$pvc" -o jsonpath='{.status.capacity.storage}')"
done

events="$(kubectl -n "$NS" get cluster "$PG" -o jsonpath='{.status.autoResizeEvents}')"
echo "status.autoResizeEvents: $events"
for pvc in "$PG-1" "$PG-2"; do
  echo "$events" | grep -q "\"pvcName\":\"$pvc\"" || die "no autoResizeEvents entry for $pvc"
done
echo "$events" | grep -q '"result":"success"' || die "no successful autoResizeEvents entry"
echo "$events" | grep -q '"volumeType":"data"' || die "no data volume entry in autoResizeEvents"

kubectl -n "$NS" get events --field-selector "involvedObject.name=$PG,reason=AutoResizeSuccess" -o name \
  | grep -q . || die "no AutoResizeSuccess event on Cluster $PG"

# WAL volumes were not filled: they must not have grown.
for pvc in "$PG-1-wal" "$PG-2-wal"; do
  [[ "$(kubectl -n "$NS" get pvc "$pvc" -o jsonpath='{.spec.resources.requests.storage}')" == "1Gi" ]] \
    || die "$pvc grew although it was not filled"
done

# Metrics through the API server's pod proxy (no port-forward needed).
metrics="$(kubectl get --raw "/api/v1/namespaces/$NS/pods/$PG-1:9188/proxy/metrics")"
echo "$metrics" | grep -E '^cnpg_disk_resizes_total\{.*result="success".*\} [1-9]' >/dev/null \
  || die "cnpg_disk_resizes_total{result=\"success\"} not > 0 on $PG-1"
echo "$metrics" | grep -q '^cnpg_autoresize_build_info' || die "cnpg_autoresize_build_info missing"

for pod in "$PG-1" "$PG-2"; do
  kubectl -n "$NS" exec "$pod" -c postgres -- rm -f /var/lib/postgresql/data/e2e-fill
done

printf '\nE2E PASS: both data PVCs grew, the resize is recorded in status.autoResizeEvents and as an event.\n'
