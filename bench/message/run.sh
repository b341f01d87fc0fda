#!/usr/bin/env bash
# Message protocol benchmark (issue 5): ctwist's message echo server
# (ctwistd message-echo) against the raw libevent echo reference
# (bench/ref/ref_echo_libevent) under the same load: 1 KiB content frames
# ({"content-length":1024} + 1024 bytes = 1051 bytes per request) over
# loopback TCP, 50 connections with 1 and with 16 requests in flight.
# The raw server echoes the same bytes without parsing them: it is the
# ceiling for any framing on this machine.
#
#   bash bench/message/run.sh BUILD_DIR
#
# Servers run pinned to core 1, the load generator to core 0 (taskset, when
# available).  Each shape runs BENCH_REPS times (default 3) interleaved over
# the two servers; the table shows medians and the ratio ctwist/raw.
#
# Environment: BENCH_SECONDS (default 3), BENCH_REPS (3), BENCH_CONTENT (1024).
set -uo pipefail

B=$(cd "${1:-build}" && pwd)
SECS=${BENCH_SECONDS:-3}
REPS=${BENCH_REPS:-3}
CONTENT=${BENCH_CONTENT:-1024}
LOADGEN=$B/bench/message/message_tcp
MSG=$B/apps/ctwistd/ctwistd
RAW=$B/bench/ref/ref_echo_libevent
for x in "$LOADGEN" "$MSG" "$RAW"; do
  if [ ! -x "$x" ]; then
    echo "message bench: $x not built" >&2
    exit 1
  fi
done
# SRV_PIN, CLI_PIN, free_port, median
. "$(dirname "$0")/../bench_lib.sh"

# start_server NAME -> sets PID and PORT
start_server() {
  local out
  out=$(mktemp /tmp/ct-msg-bench.XXXXXX)
  PORT=$(free_port)
  if [ "$1" = ctwist ]; then
    $SRV_PIN "$MSG" --log-level error message-echo --listen "tcp:$PORT:interface=127.0.0.1" >"$out" 2>&1 &
  else
    $SRV_PIN "$RAW" "$PORT" >"$out" 2>&1 &
  fi
  PID=$!
  for _ in $(seq 1 100); do
    if [ -s "$out" ]; then break; fi
    sleep 0.05
  done
  rm -f "$out"
}

stop_server() {
  kill "$PID" 2>/dev/null
  wait "$PID" 2>/dev/null
}


declare -A RES RAT last CPU
SHAPES="50x1 50x16"
for shape in $SHAPES; do
  conns=${shape%x*}; depth=${shape#*x}
  for rep in $(seq 1 "$REPS"); do
    for srv in ctwist raw; do
      start_server "$srv"
      out=$($CLI_PIN "$LOADGEN" "$PORT" "$conns" "$depth" "$SECS" "$CONTENT" 0.5)
      r=$(echo "$out" | awk '/^req\/s/ {print $2}')
      all=$(echo "$out" | awk '/^req\/s/ {print $8}')
      # Server CPU time (user+system ticks) per response, warm-up included:
      # steadier than req/s when other jobs share the cores.
      ticks=$(awk '{print $14 + $15}' "/proc/$PID/stat" 2>/dev/null)
      cpu=$(awk -v t="${ticks:-0}" -v a="${all:-0}" -v hz="$(getconf CLK_TCK)" \
            'BEGIN { if (a > 0) printf "%.2f", t * 1e6 / hz / a; else print 0 }')
      stop_server
      CPU[$shape,$srv]="${CPU[$shape,$srv]:-} $cpu"
      RES[$shape,$srv]="${RES[$shape,$srv]:-} ${r:-0}"
      last[$srv]=${r:-0}
    done
    # The ratio of each back-to-back pair: robust against load drifting
    # between runs on a shared machine.
    RAT[$shape]="${RAT[$shape]:-} $(awk -v c="${last[ctwist]}" -v r="${last[raw]}" 'BEGIN { if (r > 0) printf "%.3f", c / r; else print 0 }')"
  done
done

echo "## Message protocol (TCP)"
echo
echo "$(date -u +%Y-%m-%d), $(nproc) cores, content $CONTENT bytes (frame $((4 + ${#CONTENT} + 19 + CONTENT)) bytes), ${SECS} s x ${REPS} runs, medians; servers on core 1, load generator on core 0."
echo
echo "| shape (connections x in flight) | ctwist message echo req/s | raw libevent echo req/s | ratio (median of pairs) | target | server CPU us/req ctwist / raw |"
echo "|---|---|---|---|---|---|"
for shape in $SHAPES; do
  c=$(echo ${RES[$shape,ctwist]} | tr ' ' '\n' | median)
  r=$(echo ${RES[$shape,raw]} | tr ' ' '\n' | median)
  ratio=$(echo ${RAT[$shape]} | tr ' ' '\n' | median)
  target=0.8; [ "$shape" = 50x16 ] && target=0.5
  cc=$(echo ${CPU[$shape,ctwist]} | tr ' ' '\n' | median)
  cr=$(echo ${CPU[$shape,raw]} | tr ' ' '\n' | median)
  echo "| $shape | $c | $r | $ratio | >= $target | $cc / $cr |"
done
echo
echo "Per-pair ratios: 50x1:${RAT[50x1]}; 50x16:${RAT[50x16]}"
