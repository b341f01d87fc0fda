#!/usr/bin/env bash
# Echo benchmark (issue 4): ctwist's echo server against raw libevent,
# bufferevent, libuv and Twisted echo servers, same load, same invocation.
#
#   bash bench/echo/run.sh BUILD_DIR
#
# Servers run pinned to core 1 (taskset -c 1), the load generator to core 0.
# Every shape is run BENCH_REPS times (default 3), interleaved over the
# servers; the table shows medians.  Then: syscalls per echoed message
# (strace -c -f -p over a fixed message count) and idle memory per connection
# (VmRSS delta with BENCH_IDLE_CONNS idle connections open).
#
# Environment:
#   BENCH_SECONDS     measured seconds per run (default 3; warm-up 0.5 s extra)
#   BENCH_REPS        runs per shape and server (default 3)
#   BENCH_SHAPES      shapes (default "pp1 pp50 pipe50x16 bulk4"; also
#                     pp50_1k and pipe50x16_1k: 1 KiB messages, for bench/framing)
#   BENCH_SERVERS     servers to run (default: "ctwist libevent bufferevent libuv twisted")
#   BENCH_IDLE_CONNS  idle connections for the memory figure (default 10000; 0 skips)
#   BENCH_STRACE_MSGS ping-pong messages under strace (default 20000; 0 skips)
#   CTWIST_ECHO       command line of the ctwist echo server, {PORT} replaced
#                     (default: found under BUILD_DIR/apps)
set -uo pipefail

B=$(cd "${1:-build}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
SECS=${BENCH_SECONDS:-3}
WARM=${BENCH_WARMUP:-0.5}
REPS=${BENCH_REPS:-3}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
STRACE_MSGS=${BENCH_STRACE_MSGS:-20000}
LOADGEN=$B/bench/echo/echo_loadgen
PY=/usr/bin/python3
SERVER_CPU=1
CLIENT_CPU=0

if [ ! -x "$LOADGEN" ]; then
  echo "echo bench: $LOADGEN not built" >&2
  exit 1
fi
# 10,000 idle connections need more descriptors than the usual soft limit,
# in the load generator and in every server: raise the soft limit to the hard
# one for this shell and everything it starts.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# --- the ctwist server --------------------------------------------------------
if [ -z "${CTWIST_ECHO:-}" ]; then
  for cand in "$B/apps/echo/ct-echo-server" \
              "$B/apps/echo/ct_echo_server" "$B/apps/echo/echo-server"; do
    if [ -x "$cand" ]; then
      CTWIST_ECHO="$cand --listen tcp:{PORT}:interface=127.0.0.1 --nodelay"
      break
    fi
  done
fi

declare -A CMD
CMD[ctwist]=${CTWIST_ECHO:-}
CMD[libevent]="$B/bench/ref/ref_echo_libevent {PORT}"
CMD[bufferevent]="$B/bench/ref/ref_echo_bufferevent {PORT}"
CMD[libuv]="$B/bench/ref/ref_echo_libuv {PORT}"
CMD[twisted]="$PY $TOP/bench/ref/echo_twisted.py {PORT}"

SERVERS=""
for s in ${BENCH_SERVERS:-ctwist libevent bufferevent libuv twisted}; do
  cmd=${CMD[$s]:-}
  exe=${cmd%% *}
  if [ -z "$cmd" ] || [ ! -x "$exe" ]; then
    echo "echo bench: skipping $s (no server: '${exe}')" >&2
    continue
  fi
  if [ "$s" = twisted ] && ! $PY -c 'import twisted' 2>/dev/null; then
    echo "echo bench: skipping twisted (python3-twisted missing)" >&2
    continue
  fi
  SERVERS="$SERVERS $s"
done

tmp=$(mktemp -d /tmp/ct-echo-bench.XXXXXX)
FAILED=0
declare -A PID PORT
cleanup() {
  for s in "${!PID[@]}"; do
    kill "${PID[$s]}" 2>/dev/null
  done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server NAME: starts it pinned on SERVER_CPU, waits until it accepts.
start_server() {
  local s=$1 port cmd
  port=$(free_port)
  cmd=${CMD[$s]//\{PORT\}/$port}
  # shellcheck disable=SC2086
  taskset -c "$SERVER_CPU" $cmd >"$tmp/$s.out" 2>"$tmp/$s.err" &
  PID[$s]=$!
  PORT[$s]=$port
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "${PID[$s]}" 2>/dev/null; then
      break
    fi
    sleep 0.05
  done
  echo "echo bench: $s did not start: $(cat "$tmp/$s.err")" >&2
  unset "PID[$s]"
  return 1
}

stop_server() {
  local s=$1
  kill "${PID[$s]}" 2>/dev/null
  wait "${PID[$s]}" 2>/dev/null
  unset "PID[$s]"
}

loadgen() {
  taskset -c "$CLIENT_CPU" "$LOADGEN" "$@"
}

SHAPES=${BENCH_SHAPES:-pp1 pp50 pipe50x16 bulk4}
declare -A SHAPE_ARGS
SHAPE_ARGS[pp1]="-c 1 -s 64 -d 1"
SHAPE_ARGS[pp50]="-c 50 -s 64 -d 1"
SHAPE_ARGS[pipe50x16]="-c 50 -s 64 -d 16"
SHAPE_ARGS[bulk4]="-c 4 -s 16384 -b"
# Raw-bytes baselines for bench/framing (issue 5: 1 KiB messages), on request.
SHAPE_ARGS[pp50_1k]="-c 50 -s 1024 -d 1"
SHAPE_ARGS[pipe50x16_1k]="-c 50 -s 1024 -d 16"

cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
echo "# echo bench: $(nproc) x ${cpu_model:-cpu}, Linux $(uname -r), servers on cpu $SERVER_CPU, loadgen on cpu $CLIENT_CPU"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews req/s; server µs/msg less so)"
echo "# servers:$SERVERS; ${SECS}s per run (+${WARM}s warm-up), medians of $REPS interleaved runs"
echo "# ctwist server: ${CMD[ctwist]:-(none)}"

# CPU time of the whole machine (jiffies: busy total), to tell a quiet run
# from one that shared the cores with other work.
cpu_jiffies() { awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6}' /proc/stat; }
# Jiffies used by this script's finished children (the load generators) and
# by the running servers.
ours_jiffies() {
  local j p
  j=$(awk '{print $16+$17}' /proc/$$/stat)
  for p in "${PID[@]}"; do
    j=$(( j + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0) ))
  done
  echo "$j"
}

# --- throughput and latency ----------------------------------------------------
for s in $SERVERS; do
  start_server "$s" || SERVERS=${SERVERS/ $s/}
done
read -r busy0 total0 < <(cpu_jiffies)
ours0=$(ours_jiffies)
results=$tmp/results.txt
: >"$results"
for rep in $(seq "$REPS"); do
  for shape in $SHAPES; do
    for s in $SERVERS; do
      # shellcheck disable=SC2086
      line=$(loadgen -p "${PORT[$s]}" -P "${PID[$s]}" -t "$SECS" -w "$WARM" ${SHAPE_ARGS[$shape]} 2>"$tmp/lg.err")
      if [ $? -ne 0 ] || [ -z "$line" ]; then
        echo "echo bench: $s $shape run $rep FAILED: $(head -c 300 "$tmp/lg.err")" >&2
        line="failed=1"
        FAILED=$((FAILED + 1))
        if ! kill -0 "${PID[$s]}" 2>/dev/null; then
          echo "echo bench: $s died; restarting it" >&2
          start_server "$s"
        fi
      fi
      echo "server=$s bench=$shape rep=$rep $line" >>"$results"
    done
  done
done

read -r busy1 total1 < <(cpu_jiffies)
ours1=$(ours_jiffies)
other=$(( 100 * $(nproc) * (busy1 - busy0 - (ours1 - ours0)) / (total1 - total0 + 1) ))
echo "# other processes used ${other}% of one core on average during the throughput runs" \
  "(0% = a quiet machine; the servers and the load generator need both cores)"

# --- syscalls per echoed message ------------------------------------------------
strace_out=$tmp/strace.txt
: >"$strace_out"
if [ "$STRACE_MSGS" -gt 0 ] && command -v strace >/dev/null; then
  for conns in 1 50; do
    for s in $SERVERS; do
      st=$tmp/strace.$s.$conns
      strace -c -f -p "${PID[$s]}" -o "$st" 2>"$tmp/strace.err" &
      spid=$!
      for _ in $(seq 100); do
        grep -q attached "$tmp/strace.err" 2>/dev/null && break
        sleep 0.05
      done
      sleep 0.2
      loadgen -p "${PORT[$s]}" -c "$conns" -s 64 -d 1 -n "$STRACE_MSGS" >/dev/null 2>"$tmp/lg.err" ||
        { echo "echo bench: strace run on $s FAILED: $(head -c 300 "$tmp/lg.err")" >&2; FAILED=$((FAILED + 1)); }
      sleep 0.2
      kill -INT "$spid"
      wait "$spid" 2>/dev/null
      echo "server=$s conns=$conns msgs=$STRACE_MSGS file=$st" >>"$strace_out"
    done
  done
fi

for s in $SERVERS; do
  stop_server "$s"
done

# --- idle memory per connection -------------------------------------------------
mem_out=$tmp/mem.txt
: >"$mem_out"
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
if [ "$IDLE_CONNS" -gt 0 ]; then
  for s in $SERVERS; do
    start_server "$s" || continue
    # One short exchange first, so one-time set-up is not counted.
    loadgen -p "${PORT[$s]}" -c 1 -n 100 >/dev/null 2>&1
    sleep 0.2
    r0=$(rss_kb "${PID[$s]}")
    # Not through the loadgen function: $! must be the load generator itself.
    taskset -c "$CLIENT_CPU" "$LOADGEN" -p "${PORT[$s]}" -i -c "$IDLE_CONNS" -t 60 \
      >"$tmp/idle.out" 2>"$tmp/idle.err" &
    lpid=$!
    ok=0
    for _ in $(seq 600); do
      if grep -q established "$tmp/idle.out"; then ok=1; break; fi
      kill -0 "$lpid" 2>/dev/null || break
      sleep 0.1
    done
    sleep 0.5
    r1=$(rss_kb "${PID[$s]}")
    kill "$lpid" 2>/dev/null
    wait "$lpid" 2>/dev/null
    if [ "$ok" = 1 ]; then
      echo "server=$s conns=$IDLE_CONNS rss0_kb=$r0 rss1_kb=$r1" >>"$mem_out"
    else
      echo "echo bench: idle connections to $s FAILED: $(head -c 300 "$tmp/idle.err")" >&2
      FAILED=$((FAILED + 1))
    fi
    stop_server "$s"
  done
fi

# --- report -----------------------------------------------------------------------
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
$PY "$HERE/report.py" "$results" "$strace_out" "$mem_out"
if [ "$FAILED" -gt 0 ]; then
  echo "echo bench: $FAILED run(s) FAILED (wrong echo, server died or timeout): see above" >&2
  exit 1
fi
