#!/bin/bash
# ct-cmd end to end.
#   test_cmd.sh pipe CT_CMD   commands through a pipe and from a file
#   test_cmd.sh tmux CT_CMD   commands typed into a terminal (tmux send-keys);
#                             exit 77 (skipped) without tmux
set -u
mode=$1
cmd=$2
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d /tmp/ct-cmd-test.XXXXXX)
cleanup() {
  [ -n "${tmux_sock:-}" ] && tmux -L "$tmux_sock" kill-server 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

if [ "$mode" = pipe ]; then
  # The sleep is answered after the commands that follow it (the loop never
  # blocks), and end of input waits for it (half-close).
  printf 'echo hi there\nadd 2 40\nsleep 0.2\nupper abc\nadd x\nnope\n' |
    "$cmd" >"$work/out" 2>"$work/err" || fail "exit status $?"
  printf 'hi there\n42\nABC\nerror: usage: add A B (two integers)\nerror: unknown command '"'"'nope'"'"' (try help)\nslept 0.2\n' >"$work/want"
  diff -u "$work/want" "$work/out" || fail "pipe: unexpected output"
  [ -s "$work/err" ] && fail "pipe: stderr: $(cat "$work/err")"
  # stdin a regular file, stdout a regular file.
  printf 'echo from a file\nquit\necho after quit\n' >"$work/in"
  "$cmd" <"$work/in" >"$work/out2" || fail "file: exit status $?"
  printf 'from a file\nbye\n' >"$work/want2"
  diff -u "$work/want2" "$work/out2" || fail "file: unexpected output"
  "$cmd" --help | grep -q "usage: ct-cmd" || fail "--help"
  "$cmd" --bogus 2>/dev/null
  [ $? -eq 2 ] || fail "bad usage must exit 2"
  echo "ok"
  exit 0
fi

if [ "$mode" = tmux ]; then
  command -v tmux >/dev/null || { echo "tmux not installed: skipped"; exit 77; }
  tmux_sock="ct-cmd-$$"
  export TERM=${TERM:-xterm}
  [ "$TERM" = dumb ] && export TERM=xterm
  # stdin is the pane's terminal; stdout goes to a file we can read.
  tmux -L "$tmux_sock" -f /dev/null new-session -d -x 120 -y 30 \
    "$cmd > $work/out 2> $work/err; echo \$? > $work/status; tmux -L $tmux_sock wait-for -S ct-cmd-done" ||
    fail "cannot start tmux"
  # Keys typed before the program reads are kept by the terminal.
  tmux -L "$tmux_sock" send-keys "add 20 22" Enter
  tmux -L "$tmux_sock" send-keys "upper typed" Enter
  tmux -L "$tmux_sock" send-keys "quit" Enter
  # The pane signals a tmux channel when ct-cmd has exited (a signal sent
  # before we wait is remembered by tmux); 10 s is only a safety net.
  timeout 10 tmux -L "$tmux_sock" wait-for ct-cmd-done || true
  [ -s "$work/status" ] || fail "ct-cmd did not exit under tmux"
  [ "$(cat "$work/status")" = 0 ] || fail "exit status $(cat "$work/status")"
  # The prompt is shown because stdin is a terminal.
  printf 'ct> 42\nct> TYPED\nct> bye\n' >"$work/want"
  diff -u "$work/want" "$work/out" || fail "tmux: unexpected output"
  echo "ok"
  exit 0
fi
fail "unknown mode $mode"
