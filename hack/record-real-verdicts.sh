#!/usr/bin/env bash
# Records what a real kube-apiserver answers to each CRD and admission policy
# of the sandbox's verdict table, so that the sandbox is held to it in CI
# (crates/kube-sandbox/tests/conformance/real_server.rs replays the table).
#
#   KUBEBUILDER_ASSETS=<dir with kube-apiserver and etcd> bash hack/record-real-verdicts.sh
#
# Each object is created with dryRun=All (nothing is stored) as the admin; the
# answer's HTTP code, Status causes and Warning headers go to
# crates/kube-sandbox/tests/conformance/real_server/verdicts.json with the
# server's version. Re-run it when a case is added or changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=hack/lib/real-apiserver.sh
source hack/lib/real-apiserver.sh

TABLE=crates/kube-sandbox/tests/conformance/real_server
work=$(mktemp -d)
trap 'real_api_stop; rm -rf "$work"' EXIT
real_api_start "$work/server"
version=$(real_api_version)
echo "recording against kube-apiserver $version" >&2

cases=()
for f in "$TABLE"/cases/*.yaml; do cases+=("${f#"$ROOT"/}"); done
while read -r line; do
  [[ -z "$line" || "$line" == \#* ]] && continue
  cases+=("$line")
done <"$TABLE/cases.txt"

mkdir -p "$work/answers"
for c in "${cases[@]}"; do
  name=$(basename "$c" .yaml)
  # kubectl converts YAML to JSON without contacting the server.
  KUBECONFIG="$REAL_API_KUBECONFIG" "$KUBECTL" create --dry-run=client -o json -f "$c" >"$work/answers/$name.request.json"
  path=$(python3 -c 'import json,sys
kinds = {"CustomResourceDefinition": "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
         "ValidatingAdmissionPolicy": "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
         "MutatingAdmissionPolicy": "/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicies"}
print(kinds[json.load(open(sys.argv[1]))["kind"]])' "$work/answers/$name.request.json")
  code=$(curl -sS -o "$work/answers/$name.body.json" -D "$work/answers/$name.headers" -w '%{http_code}' \
    --cacert "$REAL_API_CA" --cert "$REAL_API_CERT" --key "$REAL_API_KEY" \
    -H 'Content-Type: application/json' -X POST \
    --data-binary "@$work/answers/$name.request.json" \
    "$REAL_API_URL$path?dryRun=All")
  printf '%s\t%s\n' "$c" "$code" >>"$work/answers/index.tsv"
  echo "  $code  $c" >&2
done

python3 - "$work/answers" "$version" >"$TABLE/verdicts.json" <<'EOF'
import json, re, sys
answers, version = sys.argv[1], sys.argv[2]
out = {"recordedWith": f"kube-apiserver {version}", "verdicts": []}
for line in open(f"{answers}/index.tsv"):
    path, code = line.rstrip("\n").split("\t")
    name = path.rsplit("/", 1)[-1][:-len(".yaml")]
    body = json.load(open(f"{answers}/{name}.body.json"))
    warnings = []
    for h in open(f"{answers}/{name}.headers", encoding="utf-8", errors="replace"):
        m = re.match(r"(?i)warning:\s*\d+\s+-\s+\"(.*)\"\s*$", h.strip())
        if m:
            warnings.append(m.group(1).replace('\\"', '"').replace("\\\\", "\\"))
    causes = []
    if body.get("kind") == "Status":
        for c in body.get("details", {}).get("causes", []):
            causes.append({"field": c.get("field", ""), "reason": c.get("reason", ""), "message": c.get("message", "")})
    out["verdicts"].append({"case": path, "code": int(code), "warnings": warnings, "causes": causes})
json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
print()
EOF
echo "wrote $TABLE/verdicts.json" >&2
