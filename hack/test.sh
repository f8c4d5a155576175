#!/usr/bin/env bash
# The whole test suite, set-up included: installs what the tests need and is
# missing, then runs every test of the workspace.
#
#   bash hack/test.sh [NEXTEST ARGS...]   e.g. bash hack/test.sh -E 'test(outage)'
#   bash hack/test.sh --setup-only        install what is missing, run nothing
#
# What the tests need, and what installs it when it is missing:
#   cargo-nextest                  cargo install --locked cargo-nextest
#   PostgreSQL server binaries     apt: postgresql (when no initdb is in PATH
#                                  or /usr/lib/postgresql/*/bin)
#   kubectl                        apt: kubernetes-client (the API sandbox's
#                                  conformance tests drive the real kubectl)
#   promtool                       apt: prometheus (`promtool check metrics`)
#   mkfs.ext4, dumpe2fs            apt: e2fsprogs (filesystem overhead of the
#                                  volume simulator)
#   jq                             apt: jq
# apt runs as root, or through sudo when sudo works without a password; the
# services those packages ship are not started (a temporary
# /usr/sbin/policy-rc.d). Nothing present is installed again: a second run
# prints "nothing to install". When something is missing and cannot be
# installed, it says exactly what and exits 1.
#
# Then: cargo nextest run --workspace --locked --no-fail-fast [NEXTEST ARGS...]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

setup_only=0
if [[ "${1:-}" == "--setup-only" ]]; then
  setup_only=1
  shift
fi

say() { printf 'hack/test.sh: %s\n' "$*"; }
die() { printf 'hack/test.sh: %s\n' "$*" >&2; exit 1; }

# mkfs.ext4 and dumpe2fs live in sbin, which a non-root PATH may lack.
for d in /usr/sbin /sbin; do
  case ":$PATH:" in *":$d:"*) ;; *) [[ -d "$d" ]] && PATH="$PATH:$d" ;; esac
done
export PATH

have() { command -v "$1" >/dev/null 2>&1; }
have_initdb() {
  have initdb && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

# ------------------------------------------------------------ what is missing
# "<what the tests need>=<Debian package>" for each missing tool.
missing_apt() {
  have_initdb || echo "initdb (PostgreSQL server binaries)=postgresql"
  have kubectl || echo "kubectl=kubernetes-client"
  have promtool || echo "promtool=prometheus"
  have mkfs.ext4 || echo "mkfs.ext4=e2fsprogs"
  have dumpe2fs || echo "dumpe2fs=e2fsprogs"
  have jq || echo "jq=jq"
}

have cargo || die "cargo is not installed (install Rust with rustup first)"

mapfile -t wanted < <(missing_apt)
need_nextest=0
cargo nextest --version >/dev/null 2>&1 || need_nextest=1

if [[ ${#wanted[@]} -eq 0 && $need_nextest -eq 0 ]]; then
  say "nothing to install (cargo-nextest, initdb, kubectl, promtool, mkfs.ext4, dumpe2fs, jq all present)"
fi

# ----------------------------------------------------------------------- apt
if [[ ${#wanted[@]} -gt 0 ]]; then
  tools=()
  pkgs=()
  for w in "${wanted[@]}"; do
    tools+=("${w%%=*}")
    p="${w#*=}"
    [[ " ${pkgs[*]} " == *" $p "* ]] || pkgs+=("$p")
  done
  sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then
    if have sudo && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      missing_list="$(printf '%s, ' "${tools[@]}")"
      die "missing: ${missing_list%, } (Debian packages: ${pkgs[*]}); cannot install them: not root, and sudo $(have sudo && echo 'needs a password' || echo 'is not installed'). Install them (apt-get install ${pkgs[*]}) or run as root."
    fi
  fi
  have apt-get || die "missing: ${tools[*]} (Debian packages: ${pkgs[*]}); cannot install them: no apt-get on this system"

  say "installing ${pkgs[*]} (for ${tools[*]})"
  # The packages' services must not start: the tests run their own
  # PostgreSQL servers. policy-rc.d answering 101 forbids every service
  # action; any policy-rc.d already present is put back afterwards.
  policy=/usr/sbin/policy-rc.d
  backup=""
  if [[ -e "$policy" ]]; then
    backup="$(mktemp -u /usr/sbin/policy-rc.d.test-sh.XXXXXX)"
    "${sudo[@]}" mv "$policy" "$backup"
  fi
  restore_policy() {
    "${sudo[@]}" rm -f "$policy"
    if [[ -n "$backup" ]]; then "${sudo[@]}" mv "$backup" "$policy"; fi
  }
  trap restore_policy EXIT
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 0755 "$policy"

  "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" \
    || die "apt-get install ${pkgs[*]} failed"
  restore_policy
  trap - EXIT

  mapfile -t still < <(missing_apt)
  if [[ ${#still[@]} -gt 0 ]]; then
    die "still missing after apt-get install: $(printf '%s ' "${still[@]%%=*}")"
  fi
fi

# ------------------------------------------------------------- cargo-nextest
if [[ $need_nextest -eq 1 ]]; then
  say "installing cargo-nextest (cargo install --locked cargo-nextest)"
  cargo install --locked cargo-nextest || die "cargo install --locked cargo-nextest failed"
  cargo nextest --version >/dev/null 2>&1 || die "cargo-nextest is still not usable after cargo install"
fi

if [[ $setup_only -eq 1 ]]; then
  say "set-up done (--setup-only: no tests run)"
  exit 0
fi

# ---------------------------------------------------------------------- tests
say "cargo nextest run --workspace --locked --no-fail-fast $*"
exec cargo nextest run --workspace --locked --no-fail-fast "$@"
