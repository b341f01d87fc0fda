/*
 * ct-cmd: a line protocol on standard input and output (Twisted's
 * StandardIO example): it answers commands typed at a terminal, or piped
 * in, one line each.
 *
 *   $ ct-cmd
 *   ct> add 2 3
 *   5
 *   ct> sleep 1        (answers later; other commands are served meanwhile)
 *   ct> upper hello
 *   HELLO
 *   slept 1
 *   ct> quit
 *   bye
 *
 * Commands: help, echo TEXT, upper TEXT, add A B, time, sleep SECONDS,
 * quit.  The prompt is shown only when stdin is a terminal.  End of input
 * is a half-close: answers still owed (pending sleeps) are written, then
 * the program exits.  Exit status 0, or 2 on bad usage.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctwist/basic.h"
#include "ctwist/ctwist.h"
#include "ctwist/stdio.h"

typedef struct cmd_proto {
  ct_line_receiver lr; /* first */
  ct_reactor *r;
  int pending; /* sleeps not yet answered */
  int input_done;
  int prompt;
} cmd_proto;

static void say(cmd_proto *c, const char *fmt, ...) CT_PRINTF(2, 3);

static void say(cmd_proto *c, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  ct_line_receiver_send_line(
      &c->lr, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void prompt(cmd_proto *c) {
  if (c->prompt && !c->input_done && c->lr.base.transport != NULL)
    ct_transport_write_str(c->lr.base.transport, "ct> ");
}

typedef struct sleeper {
  cmd_proto *c;
  char what[32];
} sleeper;

static void maybe_finish(cmd_proto *c) {
  if (c->input_done && c->pending == 0 && c->lr.base.transport != NULL)
    ct_transport_lose_connection(c->lr.base.transport);
}

static void slept(void *arg) {
  sleeper *s = arg;
  cmd_proto *c = s->c;
  c->pending--;
  say(c, "slept %s", s->what);
  free(s);
  maybe_finish(c);
}

static void run_command(cmd_proto *c, char *line) {
  char *arg = line;
  while (*arg && !isspace((unsigned char)*arg))
    arg++;
  if (*arg)
    *arg++ = '\0';
  while (isspace((unsigned char)*arg))
    arg++;
  if (strcmp(line, "") == 0) {
    return;
  } else if (strcmp(line, "help") == 0) {
    say(c, "commands: help, echo TEXT, upper TEXT, add A B, time, "
           "sleep SECONDS, quit");
  } else if (strcmp(line, "echo") == 0) {
    say(c, "%s", arg);
  } else if (strcmp(line, "upper") == 0) {
    for (char *p = arg; *p; p++)
      *p = (char)toupper((unsigned char)*p);
    say(c, "%s", arg);
  } else if (strcmp(line, "add") == 0) {
    char *end1, *end2;
    long long a = strtoll(arg, &end1, 10);
    long long b = strtoll(end1, &end2, 10);
    if (end1 == arg || end2 == end1 || *end2 != '\0')
      say(c, "error: usage: add A B (two integers)");
    else
      say(c, "%lld", a + b);
  } else if (strcmp(line, "time") == 0) {
    say(c, "%.3f", ct_reactor_seconds(c->r));
  } else if (strcmp(line, "sleep") == 0) {
    char *end;
    double secs = strtod(arg, &end);
    sleeper *s = malloc(sizeof *s);
    if (end == arg || *end != '\0' || !(secs >= 0 && secs <= 3600) ||
        s == NULL) {
      free(s);
      say(c, "error: usage: sleep SECONDS (0..3600)");
    } else {
      s->c = c;
      snprintf(s->what, sizeof s->what, "%.31s", arg);
      c->pending++;
      ct_call_later(c->r, secs, slept, s);
    }
  } else if (strcmp(line, "quit") == 0) {
    say(c, "bye");
    c->input_done = 1;
    maybe_finish(c);
    return;
  } else {
    say(c, "error: unknown command '%.64s' (try help)", line);
  }
  prompt(c);
}

static void cmd_line(ct_line_receiver *lr, const char *line, size_t len) {
  cmd_proto *c = (cmd_proto *)lr;
  if (c->input_done)
    return;
  char buf[1024];
  if (len >= sizeof buf)
    len = sizeof buf - 1;
  memcpy(buf, line, len);
  buf[len] = '\0';
  if (len > 0 && buf[len - 1] == '\r') /* a terminal may send CR LF */
    buf[len - 1] = '\0';
  run_command(c, buf);
}

static void cmd_made(ct_line_receiver *lr) {
  prompt((cmd_proto *)lr);
}

/* End of input: finish what is owed (half-close), then close. */
static int cmd_eof(ct_line_receiver *lr) {
  cmd_proto *c = (cmd_proto *)lr;
  c->input_done = 1;
  if (c->pending == 0)
    return 0;
  return 1;
}

static void cmd_lost(ct_line_receiver *lr, const ct_failure *reason) {
  cmd_proto *c = (cmd_proto *)lr;
  if (reason->code != CT_ECONNDONE)
    fprintf(stderr, "ct-cmd: %s\n", reason->message);
  ct_reactor_stop(c->r);
}

static const ct_line_receiver_ops cmd_ops = {
    CT_LINE_RECEIVER_BASE("ct-cmd", 0),
    .delimiter = "\n",
    .connection_made = cmd_made,
    .line_received = cmd_line,
    .eof_received = cmd_eof,
    .connection_lost = cmd_lost,
};

static void usage(FILE *f) {
  fprintf(f, "usage: ct-cmd [--help]\n"
             "Answers commands read from standard input, one per line:\n"
             "  help, echo TEXT, upper TEXT, add A B, time, sleep SECONDS, "
             "quit\n"
             "A prompt is shown when standard input is a terminal.\n");
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    }
    usage(stderr);
    return 2;
  }
  ct_reactor *r = ct_reactor_new();
  if (r == NULL) {
    fprintf(stderr, "ct-cmd: cannot create the reactor\n");
    return 1;
  }
  cmd_proto *c = (cmd_proto *)ct_protocol_new(&cmd_ops.base, sizeof *c);
  if (c == NULL) {
    ct_reactor_free(r);
    return 1;
  }
  c->r = r;
  c->prompt = isatty(STDIN_FILENO);
  ct_failure *err = NULL;
  if (ct_stdio_connect(r, &c->lr.base, &err) == NULL) {
    fprintf(stderr, "ct-cmd: %s\n", err->message);
    ct_failure_free(err);
    ct_reactor_free(r);
    return 1;
  }
  ct_reactor_run(r);
  ct_reactor_free(r);
  return 0;
}
