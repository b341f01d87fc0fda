#!/usr/bin/env bash
# Install the Debian packages ctwist needs, only when something is missing.
# Idempotent: a machine that has everything runs no apt-get at all.
#   scripts/deps.sh          what building and testing need
#   scripts/deps.sh bench    that, plus the benchmarks' references
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libevent-dev libssl-dev libjansson-dev libcriterion-dev
  libhttp-parser-dev    # protocols/http
  libuv1-dev            # bench/ref: the libuv echo reference
  python3-twisted       # interop tests and bench references
  clang libclang-rt-14-dev  # libFuzzer targets (make fuzz)
  valgrind strace
  tmux                  # apps/stdio: ct-cmd typed into a terminal
  tzdata                # apps/sched: the DST tests use TZ=America/New_York
  zookeeper libzookeeper-st-dev  # transports/zk.c, the ctest label zk
)
# `scripts/deps.sh bench`: also what only the benchmarks use.
BENCH_PKGS=(
  redis-server redis-tools  # bench/pipeline, bench/rpc: redis-server, redis-benchmark
  wrk nginx-light           # bench/http: load generator and reference server
)
if [ "${1:-}" = bench ]; then
  PKGS+=("${BENCH_PKGS[@]}")
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "deps.sh: installing ${missing[*]}"
SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
