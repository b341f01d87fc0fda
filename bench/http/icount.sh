#!/usr/bin/env bash
# Instructions per request of the HTTP server, counted by valgrind's
# callgrind (unlike wall-clock figures, not disturbed by a busy machine).
#
#   bash bench/http/icount.sh BUILD_DIR [static|hello|nginx-static|nginx-hello] [N]
#
# The server (ctwistd web on a 1 KiB file in a 4-level tree, or
# bench/http/http_hello_server; nginx-light, one process, `sendfile on`,
# access log off, for reference) runs under callgrind twice, answering
# N/5 and then N keep-alive requests from a Python http.client loop on one
# connection; the difference of the two totals divided by the difference of
# the request counts removes start-up and shut-down.  Prints
# "SHAPE: X instructions/request" and leaves the larger profile in
# $ICOUNT_OUT (default /tmp/ct-icount-SHAPE.out) for callgrind_annotate.
set -euo pipefail

B=$(cd "${1:-build}" && pwd)
SHAPE=${2:-static}
N=${3:-5000}
PY=/usr/bin/python3
OUT=${ICOUNT_OUT:-/tmp/ct-icount-$SHAPE.out}
# shellcheck source=bench/http/nginx_conf.sh
. "$(dirname "$0")/nginx_conf.sh"
command -v valgrind >/dev/null || { echo "icount: valgrind is missing" >&2; exit 1; }

WORK=$(mktemp -d /tmp/ct-icount-XXXXXX)
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/www/a/b/c"
head -c 1024 /dev/urandom > "$WORK/www/a/b/c/file1k.bin"
URL_PATH=/a/b/c/file1k.bin
case $SHAPE in *hello) URL_PATH=/hello ;; esac
mkdir -p "$WORK/nginx/tmp"
chmod 755 "$WORK" "$WORK/www" "$WORK/www/a" "$WORK/www/a/b" "$WORK/www/a/b/c"
chmod 644 "$WORK/www/a/b/c/file1k.bin"
nginx_conf() {
  nginx_conf_write "$WORK/nginx" "$WORK/www" "$1" "master_process off;"
}

free_port() {
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# run COUNT OUTFILE: total instructions of a server answering COUNT requests
run() {
  local count=$1 out=$2 port
  port=$(free_port)
  if [ "${SHAPE#nginx}" != "$SHAPE" ]; then
    nginx_conf "$port"
    valgrind --tool=callgrind --callgrind-out-file="$out" \
      /usr/sbin/nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
      >"$WORK/server.log" 2>&1 &
  elif [ "$SHAPE" = hello ]; then
    valgrind --tool=callgrind --callgrind-out-file="$out" \
      "$B/bench/http/http_hello_server" "$port" >"$WORK/server.log" 2>&1 &
  else
    valgrind --tool=callgrind --callgrind-out-file="$out" \
      "$B/apps/ctwistd/ctwistd" web --path "$WORK/www" \
      --listen "tcp:$port:interface=127.0.0.1" --access-log none \
      >"$WORK/server.log" 2>&1 &
  fi
  SERVER_PID=$!
  $PY - "$port" "$count" "$URL_PATH" <<'PYEOF'
import http.client, sys, time
port, count, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + 60
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", path)
        c.getresponse().read()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("icount: the server did not start")
        time.sleep(0.2)
for _ in range(count - 1):
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
PYEOF
  kill -INT "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
  awk '/^summary:|^totals:/ {print $2; exit}' "$out"
}

small=$((N / 5))
a=$(run "$small" "$WORK/small.out")
b=$(run "$N" "$OUT")
echo "$SHAPE: $(( (b - a) / (N - small) )) instructions/request ($small requests: $a, $N: $b; profile: $OUT)"
