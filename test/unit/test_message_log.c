/* What a hostile peer can put in the server's log: the message server's
 * protocol-error warning escapes the peer's bytes, names its source once,
 * and is rate-limited per source on the reactor clock (300 bad peers give
 * one line and one "... and 299 more" line, not 300 lines). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/log.h"
#include "ctwist/message.h"
#include "ctwist/testing.h"

typedef struct warn_log {
  int lines;
  char first[1024];
  char last[1024];
} warn_log;

static void collect(const ct_log_event *ev, void *arg) {
  warn_log *w = arg;
  if (strcmp(ev->module, "message") != 0 || ev->level != CT_LOG_WARN)
    return;
  char line[1024];
  FILE *f = fmemopen(line, sizeof line, "w");
  ct_log_text_observer(ev, f);
  fclose(f);
  if (w->lines++ == 0)
    snprintf(w->first, sizeof w->first, "%s", line);
  snprintf(w->last, sizeof w->last, "%s", line);
}

static void on_close(ct_messenger *m, size_t alive, const ct_failure *reason,
                     void *arg) {
  (void)m;
  (void)alive;
  (void)reason;
  ++*(int *)arg;
}

/* A frame whose header has a key with an ESC sequence and a bad value. */
static void hostile_frame(char *buf, size_t *len) {
  const char header[] = "{\"\\u001b[2J\\u001b]0;pwned\\u0007\": [1]}";
  size_t h = sizeof header - 1;
  buf[0] = buf[1] = buf[2] = 0;
  buf[3] = (char)h;
  memcpy(buf + 4, header, h);
  *len = 4 + h;
}

Test(message_log, bad_peers_log_escaped_and_rate_limited) {
  ct_clock *clk = ct_clock_new();
  ct_reactor *r = ct_reactor_new_with_clock(clk);
  int closes = 0;
  ct_msg_callbacks cb = {NULL, NULL, on_close, NULL, &closes};
  ct_msg_server *s = ct_msg_server_new(r, &cb, NULL);
  warn_log w = {0};
  ct_log_observer *o = ct_log_add_observer(CT_LOG_DEBUG, collect, &w);
  char frame[128];
  size_t flen;
  hostile_frame(frame, &flen);
  for (int i = 0; i < 300; i++) {
    ct_string_transport *st = ct_string_transport_new(r);
    ct_protocol *p = ct_factory_build(ct_msg_server_factory(s), NULL);
    cr_assert_eq(ct_string_transport_connect(st, p), 0);
    cr_assert_eq(ct_string_transport_feed(st, frame, flen), 0);
    while (ct_string_transport_step(st) > 0) {
    }
    ct_string_transport_free(st);
  }
  cr_assert_eq(closes, 300, "every bad peer is closed (%d)", closes);
  cr_assert_eq(w.lines, 1, "%d warnings for 300 bad peers", w.lines);
  /* The peer's bytes are escaped; the source location appears once. */
  cr_assert_null(strchr(w.first, '\x1b'), "raw ESC: %s", w.first);
  cr_assert_null(strchr(w.first, '\x07'), "raw BEL: %s", w.first);
  cr_assert_not_null(strstr(w.first, "\\x1b[2J\\x1b]0;pwned\\x07"), "%s",
                     w.first);
  const char *at = strstr(w.first, "(decoder.c:");
  cr_assert_not_null(at, "%s", w.first);
  cr_assert_null(strstr(at + 1, "(decoder.c:"), "location twice: %s", w.first);
  cr_assert_eq(strchr(w.first, '\n'), w.first + strlen(w.first) - 1,
               "one line: %s", w.first);
  ct_clock_advance(clk, 10.0);
  cr_assert_eq(w.lines, 2);
  cr_assert_not_null(
      strstr(w.last, "... and 299 more like this in the last 10 s"), "%s",
      w.last);
  ct_log_remove_observer(o);
  ct_msg_server_free(s);
  ct_reactor_free(r);
  ct_clock_free(clk);
}
