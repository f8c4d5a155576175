#!/usr/bin/env bash
# The in-pod build (`--no-default-features`, what the Dockerfile builds) must
# link no test-bed crate (no API sandbox, no PostgreSQL launcher) and carry
# no test-only switch of `run` (`--fault-panic`, `--simulated-volumes`).
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

# The lean binary itself. Cargo puts it where the default build's binary
# goes, so it is copied away and the default one restored afterwards.
work="$(mktemp -d)"
manager=""
cleanup() {
  if [[ -n "$manager" ]]; then kill "$manager" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cargo build -q -p cnpg-autoresize --bin cnpg-autoresize --no-default-features --locked
cp "$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug/cnpg-autoresize" "$work/lean"
cargo build -q -p cnpg-autoresize --bin cnpg-autoresize --locked

# 1. `run --help` names no test-only switch (they are hidden in test-bed
#    builds too, so this alone proves little; 2. is the proof).
help="$("$work/lean" run --help)"
for flag in --fault-panic --simulated-volumes; do
  if grep -q -- "$flag" <<<"$help"; then
    echo "hack/check-lean.sh: the in-pod binary's run --help names $flag" >&2
    exit 1
  fi
done

# 2. Passed anyway, the switch is an unknown flag. Without a terminal (as in
#    a pod) that leaves the manager up and inert: it says so in its log and
#    serves cnpg_autoresize_config_valid 0.
port=$((40000 + RANDOM % 20000))
mkdir "$work/data"
"$work/lean" run --fault-panic planner:1 --cluster pg --pod-name pg-1 \
  --data-path "$work/data" --http-addr "127.0.0.1:$port" --log-format text \
  </dev/null >"$work/log" 2>&1 &
manager=$!
metrics() {
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
  cat <&3
  exec 3<&-
}
inert=""
for _ in $(seq 1 100); do
  if ! kill -0 "$manager" 2>/dev/null; then
    echo "hack/check-lean.sh: the in-pod binary exited on --fault-panic without a terminal:" >&2
    cat "$work/log" >&2
    exit 1
  fi
  if metrics 2>/dev/null | grep -q '^cnpg_autoresize_config_valid 0$'; then
    inert=yes
    break
  fi
  sleep 0.2
done
if [[ -z "$inert" ]] || ! grep -q -- "--fault-panic" "$work/log"; then
  echo "hack/check-lean.sh: the in-pod binary did not refuse --fault-panic as an unknown flag:" >&2
  cat "$work/log" >&2
  exit 1
fi
echo "hack/check-lean.sh: the in-pod binary has no test-only switch (--fault-panic is an unknown flag: inert, config_valid 0)"
