#!/bin/bash
# Runs the commands of docs/tutorial.md, in order, against a scratch
# install of the build tree.  The only differences from the text: the
# install prefix is a scratch directory instead of $HOME/.local, and the
# server listens on port 0 of 127.0.0.1 (the port it prints is used).
#
# usage: tutorial.sh BUILD_DIR SOURCE_DIR WORK_DIR
set -euo pipefail
BUILD=$1 SRC=$2 WORK=$3
rm -rf "$WORK"
mkdir -p "$WORK/project"
PREFIX=$WORK/prefix
SERVER=
cleanup() {
  if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then kill -KILL "$SERVER"; fi
}
trap cleanup EXIT
step() { echo "--- $*"; }

step "install"
cmake --install "$BUILD" --prefix "$PREFIX" > "$WORK/install.log"
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
export PATH=$PREFIX/bin:$PATH
export LD_LIBRARY_PATH=$PREFIX/lib
pkg-config --cflags --libs ctwist

cd "$WORK/project"
cp "$SRC/docs/examples/plugin_upper.c" "$SRC/docs/examples/plugin_upper_test.c" .

step "the code of sections 1 and 2 compiles as written, in order"
# Each block may only use what an earlier block defined.
sed -n '/^## 1\./,/^## 3\./p' "$SRC/docs/tutorial.md" |
  awk '/^```c$/ {on = 1; next} /^```$/ {on = 0} on' > tutorial_plugin.c
cc -c -std=c11 -Wall -Werror tutorial_plugin.c $(pkg-config --cflags ctwist) -o tutorial_plugin.o

step "test in memory"
cc plugin_upper_test.c plugin_upper.c $(pkg-config --cflags --libs ctwist) -o upper_test
./upper_test 2>/dev/null | grep -qx "all upper tests passed"

step "build the plugin"
cc -shared -fPIC plugin_upper.c $(pkg-config --cflags --libs ctwist) -o upper.so

step "help"
ctwistd --plugin ./upper.so --help | grep -q -- "--goodbye-after"

# Start the server the way the tutorial does, on port 0; wait (bounded)
# for the line "listening on 127.0.0.1:PORT".
start() {
  ctwistd "$@" > server.out 2> server.err &
  SERVER=$!
  for _ in $(seq 100); do
    PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' server.out)
    [ -n "$PORT" ] && return 0
    kill -0 "$SERVER" 2>/dev/null || { cat server.err >&2; return 1; }
    sleep 0.1
  done
  echo "no 'listening on' line" >&2
  return 1
}

step "run"
start --plugin ./upper.so --listen tcp:0:interface=127.0.0.1
step "talk (python)"
out=$(python3 -c 'import socket; s = socket.create_connection(("127.0.0.1", '"$PORT"')); s.sendall(b"hello\r\n"); print(s.recv(100))')
[ "$out" = "b'HELLO\\r\\n'" ] || { echo "got: $out" >&2; exit 1; }
step "stop (Ctrl-C is SIGINT)"
kill -INT "$SERVER"
wait "$SERVER"
SERVER=
grep -q "stopped" server.err

step "options"
start --plugin ./upper.so --listen tcp:0:interface=127.0.0.1 --max-length 80 --goodbye-after 1
out=$(python3 -c 'import socket; s = socket.create_connection(("127.0.0.1", '"$PORT"')); print(s.recv(100))')
[ "$out" = "b'BYE\\r\\n'" ] || { echo "got: $out" >&2; exit 1; }
kill -TERM "$SERVER"
wait "$SERVER"
SERVER=

step "bad option"
if ctwistd --plugin ./upper.so --listen tcp:0 --max-length lots 2> err.txt; then exit 1; fi
grep -q "plugin upper: option --max-length: 'lots' is not an integer" err.txt

step "daemon"
out=$(ctwistd --daemon --pidfile upper.pid --logfile upper.log --log-format json \
      --plugin ./upper.so --listen tcp:0:interface=127.0.0.1)
PORT=$(echo "$out" | sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p')
python3 -c 'import socket; s = socket.create_connection(("127.0.0.1", '"$PORT"')); s.sendall(b"daemon\r\n"); assert s.recv(100) == b"DAEMON\r\n"'
kill "$(cat upper.pid)"
for _ in $(seq 100); do [ -e upper.pid ] || break; sleep 0.1; done
[ ! -e upper.pid ]
python3 -c 'import json, sys; [json.loads(l) for l in open("upper.log")]'
tail -n 1 upper.log | grep -q stopped

echo "tutorial: every step worked"
