#!/usr/bin/env bash
# Connection storm benchmark (issue 8).
#
#   bash bench/storm/run.sh BUILD_DIR
#
# 10,000 connections opened as fast as the client can, each echoing one
# byte: the time until all are accepted and echoed, for ct-echo-server with
# its default listener (backlog SOMAXCONN) against the raw libevent echo
# server with backlog 1024, interleaved STORM_REPS times (default 5); the
# medians and their ratio (target <= 1.2).  retried_syns counts SYNs the
# client had to send again (a dropped SYN costs a second or more).
# Environment: STORM_CONNS (default 10000), STORM_REPS.
set -uo pipefail
B=$(cd "${1:-build}" && pwd)
CONNS=${STORM_CONNS:-10000}
REPS=${STORM_REPS:-5}
PY=/usr/bin/python3
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

. "$(dirname "$0")/../bench_lib.sh" # free_port, median, SRV_PIN, CLI_PIN

run_one() { # NAME CMD...  -> prints the storm line
  local port pid out
  port=$(free_port)
  local cmd=${*:2}
  cmd=${cmd//\{PORT\}/$port}
  $SRV_PIN $cmd >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    $PY -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$port)))" 2>/dev/null && break
    sleep 0.1
  done
  out=$($CLI_PIN "$B/bench/storm/storm" "$port" "$CONNS")
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  echo "$out"
}

declare -A T S
for rep in $(seq "$REPS"); do
  for name in ctwist libevent; do
    if [ $name = ctwist ]; then
      line=$(run_one ctwist "$B/apps/echo/ct-echo-server --listen tcp:{PORT}:interface=127.0.0.1")
    else
      line=$(run_one libevent "$B/bench/ref/ref_echo_libevent {PORT} 1024")
    fi
    secs=$(echo "$line" | sed -n 's/.*seconds=\([0-9.]*\).*/\1/p')
    syns=$(echo "$line" | sed -n 's/.*retried_syns=\([0-9-]*\).*/\1/p')
    T[$name]="${T[$name]:-} ${secs:-999}"
    S[$name]="${S[$name]:-} ${syns:-?}"
  done
done
med() { tr ' ' '\n' | grep -v '^$' | median; } # of a space-separated list
ct=$(echo "${T[ctwist]}" | med)
le=$(echo "${T[libevent]}" | med)
echo "Connection storm: $CONNS connects, each echoes 1 byte (median of $REPS)"
printf '%-9s %9s   %s\n' server seconds "retried SYNs per run"
printf '%-9s %9.3f  %s\n' ctwist "$ct" "${S[ctwist]}"
printf '%-9s %9.3f  %s\n' libevent "$le" "${S[libevent]}"
printf 'ctwist/libevent(backlog 1024): %.2f\n' "$(awk -v a="$ct" -v b="$le" 'BEGIN {print (b > 0 ? a / b : 0)}')"
