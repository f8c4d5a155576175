#!/usr/bin/env bash
# The in-pod build (`--no-default-features`, what the Dockerfile builds) must
# link no test-bed crate: no API sandbox, no PostgreSQL launcher.
#
#   bash hack/check-lean.sh
set -euo pipefail
cd "$(dirname "$0")/.."

forbidden='^(kube-sandbox|cnpg-testbed|kube-cel) '
lean="$(cargo tree -p cnpg-autoresize -e normal --no-default-features --prefix none --locked)"
if grep -E "$forbidden" <<<"$lean" | sort -u | grep .; then
  echo "hack/check-lean.sh: the in-pod build links the test bed (above)" >&2
  exit 1
fi
full="$(cargo tree -p cnpg-autoresize -e normal --prefix none --locked)"
# The check must be able to fail: the default build does link the test bed.
grep -qE "$forbidden" <<<"$full" || {
  echo "hack/check-lean.sh: the default build links no test bed either; is the feature still named testbed?" >&2
  exit 1
}
count() { sort -u | wc -l; }
echo "hack/check-lean.sh: in-pod build links no test-bed crate ($(count <<<"$lean") crates; default build $(count <<<"$full"))"
