# shellcheck shell=bash
# A real kube-apiserver and etcd on loopback, for hack/envtest.sh and
# hack/record-real-verdicts.sh. Sourced, not run.
#
# The binaries are found the way controller-runtime's envtest finds them: in
# the directory $KUBEBUILDER_ASSETS (kube-apiserver, etcd, and kubectl when it
# has one; else kubectl from PATH) — what `setup-envtest use -p path` prints.
#
#   real_api_require            exits 1 naming what is missing
#   real_api_start DIR          starts both with their state in DIR and sets
#                               REAL_API_URL, REAL_API_KUBECONFIG (admin, in
#                               system:masters), REAL_API_CA, REAL_API_CERT,
#                               REAL_API_KEY, KUBECTL
#   real_api_stop               stops both (also on EXIT once started)
#
# The server authenticates client certificates and ServiceAccount tokens,
# authorizes with RBAC, and runs its default admission plugins, so Roles,
# ValidatingAdmissionPolicies and MutatingAdmissionPolicies (1.36) apply as on
# a cluster. No kubelet, scheduler or controller-manager runs: pods stay
# Pending, and the script creates the "default" ServiceAccount itself.

real_api_die() { printf '%s: %s\n' "${0##*/}" "$*" >&2; exit 1; }

real_api_require() {
  local missing=()
  if [[ -z "${KUBEBUILDER_ASSETS:-}" ]]; then
    real_api_die "KUBEBUILDER_ASSETS is not set: point it at a directory holding kube-apiserver and etcd (controller-runtime's envtest convention; e.g. \`export KUBEBUILDER_ASSETS=\$(setup-envtest use -p path)\`)"
  fi
  [[ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]] || missing+=("$KUBEBUILDER_ASSETS/kube-apiserver")
  [[ -x "$KUBEBUILDER_ASSETS/etcd" ]] || missing+=("$KUBEBUILDER_ASSETS/etcd")
  if [[ -x "$KUBEBUILDER_ASSETS/kubectl" ]]; then
    KUBECTL="$KUBEBUILDER_ASSETS/kubectl"
  elif command -v kubectl >/dev/null 2>&1; then
    KUBECTL=$(command -v kubectl)
  else
    missing+=("kubectl (in \$KUBEBUILDER_ASSETS or PATH)")
  fi
  local tool
  for tool in openssl curl python3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if (( ${#missing[@]} > 0 )); then
    real_api_die "missing: ${missing[*]}"
  fi
  export KUBECTL
}

real_api_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

real_api_start() {
  local dir=$1
  real_api_require
  mkdir -p "$dir/etcd" "$dir/certs" "$dir/pki"
  chmod 700 "$dir/etcd"
  local pki=$dir/pki
  local etcd_port peer_port api_port
  etcd_port=$(real_api_free_port)
  peer_port=$(real_api_free_port)
  api_port=$(real_api_free_port)

  # A client CA and an admin certificate in system:masters; the key pair that
  # signs ServiceAccount tokens.
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=envtest-client-ca" \
    -keyout "$pki/client-ca.key" -out "$pki/client-ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=admin" \
    -keyout "$pki/admin.key" -out "$pki/admin.csr" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' >"$pki/client.ext"
  openssl x509 -req -in "$pki/admin.csr" -CA "$pki/client-ca.crt" -CAkey "$pki/client-ca.key" \
    -CAcreateserial -days 2 -extfile "$pki/client.ext" -out "$pki/admin.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

  "$KUBEBUILDER_ASSETS/etcd" --name=envtest --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="envtest=http://127.0.0.1:$peer_port" --initial-cluster-state=new \
    >"$dir/etcd.log" 2>&1 &
  REAL_API_ETCD_PID=$!
  trap real_api_stop EXIT
  local i
  for i in $(seq 1 60); do
    curl -fsS "http://127.0.0.1:$etcd_port/health" 2>/dev/null | grep -q '"health":"true"' && break
    (( i == 60 )) && real_api_die "etcd did not become healthy in 30 s; see $dir/etcd.log"
    sleep 0.5
  done

  "$KUBEBUILDER_ASSETS/kube-apiserver" \
    --advertise-address=127.0.0.1 --bind-address=127.0.0.1 --secure-port="$api_port" \
    --cert-dir="$dir/certs" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --client-ca-file="$pki/client-ca.crt" --anonymous-auth=false \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range=10.0.0.0/24 --allow-privileged=true \
    --endpoint-reconciler-type=none --v=1 \
    >"$dir/kube-apiserver.log" 2>&1 &
  REAL_API_SERVER_PID=$!

  # kube-apiserver writes its self-signed serving certificate (and CA) first.
  for i in $(seq 1 240); do
    [[ -s "$dir/certs/apiserver.crt" ]] && break
    kill -0 "$REAL_API_SERVER_PID" 2>/dev/null || real_api_die "kube-apiserver exited; see $dir/kube-apiserver.log"
    sleep 0.5
  done
  REAL_API_URL="https://127.0.0.1:$api_port"
  REAL_API_CA="$dir/certs/apiserver.crt"
  REAL_API_CERT="$pki/admin.crt"
  REAL_API_KEY="$pki/admin.key"
  REAL_API_KUBECONFIG="$dir/admin.kubeconfig"
  KUBECONFIG="$REAL_API_KUBECONFIG" "$KUBECTL" config set-cluster envtest --server="$REAL_API_URL" \
    --certificate-authority="$REAL_API_CA" --embed-certs=true >/dev/null
  KUBECONFIG="$REAL_API_KUBECONFIG" "$KUBECTL" config set-credentials admin \
    --client-certificate="$REAL_API_CERT" --client-key="$REAL_API_KEY" --embed-certs=true >/dev/null
  KUBECONFIG="$REAL_API_KUBECONFIG" "$KUBECTL" config set-context envtest --cluster=envtest --user=admin --namespace=default >/dev/null
  KUBECONFIG="$REAL_API_KUBECONFIG" "$KUBECTL" config use-context envtest >/dev/null
  for i in $(seq 1 240); do
    [[ "$(KUBECONFIG="$REAL_API_KUBECONFIG" "$KUBECTL" get --raw /readyz 2>/dev/null)" == ok ]] && break
    kill -0 "$REAL_API_SERVER_PID" 2>/dev/null || real_api_die "kube-apiserver exited; see $dir/kube-apiserver.log"
    (( i == 240 )) && real_api_die "kube-apiserver not ready after 120 s; see $dir/kube-apiserver.log"
    sleep 0.5
  done
  # No controller-manager creates the namespace's "default" ServiceAccount.
  for i in $(seq 1 60); do
    KUBECONFIG="$REAL_API_KUBECONFIG" "$KUBECTL" get namespace default >/dev/null 2>&1 && break
    sleep 0.5
  done
  KUBECONFIG="$REAL_API_KUBECONFIG" "$KUBECTL" -n default create serviceaccount default >/dev/null 2>&1 || true
  export REAL_API_URL REAL_API_CA REAL_API_CERT REAL_API_KEY REAL_API_KUBECONFIG
}

real_api_stop() {
  local pid
  for pid in ${REAL_API_SERVER_PID:-} ${REAL_API_ETCD_PID:-}; do
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  done
  REAL_API_SERVER_PID=
  REAL_API_ETCD_PID=
}

# The version the server reports, e.g. "v1.36.2".
real_api_version() {
  KUBECONFIG="$REAL_API_KUBECONFIG" "$KUBECTL" get --raw /version | python3 -c 'import json,sys; print(json.load(sys.stdin)["gitVersion"])'
}
