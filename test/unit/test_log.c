/* Logging: levels, text and JSON observers, observer order and removal,
 * the default stderr observer, libevent's log routed in, failures. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctwist/log.h"

/* Bounded strcat for the test's trace buffers. */
static void append(char *buf, size_t size, const char *s) {
  size_t len = strlen(buf);
  snprintf(buf + len, size - len, "%s", s);
}

struct capture {
  char *text;
  size_t len;
  FILE *f;
};

static void cap_open(struct capture *c) {
  c->text = NULL;
  c->len = 0;
  c->f = open_memstream(&c->text, &c->len);
}

static void cap_close(struct capture *c) {
  fclose(c->f);
  free(c->text);
}

Test(log, level_names_and_parse) {
  cr_assert_str_eq(ct_log_level_name(CT_LOG_DEBUG), "debug");
  cr_assert_str_eq(ct_log_level_name(CT_LOG_CRITICAL), "critical");
  cr_assert_str_eq(ct_log_level_name((ct_log_level)42), "unknown");
  ct_log_level l;
  cr_assert_eq(ct_log_level_parse("WARN", &l), 0);
  cr_assert_eq(l, CT_LOG_WARN);
  cr_assert_eq(ct_log_level_parse("warning", &l), 0);
  cr_assert_eq(l, CT_LOG_WARN);
  cr_assert_eq(ct_log_level_parse("error", &l), 0);
  cr_assert_eq(l, CT_LOG_ERROR);
  cr_assert_eq(ct_log_level_parse("loud", &l), CT_EINVAL);
  cr_assert_eq(ct_log_level_parse(NULL, &l), CT_EINVAL);
  cr_assert_eq(ct_log_level_parse("info", NULL), CT_EINVAL);
}

Test(log, text_observer_format_and_levels) {
  struct capture c;
  cap_open(&c);
  ct_log_observer *o =
      ct_log_add_observer(CT_LOG_INFO, ct_log_text_observer, c.f);
  cr_assert_not_null(o);
  ct_log(CT_LOG_DEBUG, "tcp", "hidden %d", 1);
  ct_log(CT_LOG_WARN, "tcp", "accept failed: %s", "EMFILE");
  ct_log_emit(CT_LOG_ERROR, NULL, NULL, 0, "no source");
  ct_log_remove_observer(o);
  fflush(c.f);
  cr_assert_null(strstr(c.text, "hidden"));
  /* "2026-11-24T06:20:00.123Z [warn] tcp: message (file.c:12)" */
  char *line = strstr(c.text, "[warn] tcp: accept failed: EMFILE (test_log.c:");
  cr_assert_not_null(line, "got: %s", c.text);
  cr_assert_eq(c.text[4], '-');
  cr_assert_eq(c.text[10], 'T');
  cr_assert_eq(c.text[23], 'Z');
  cr_assert_not_null(strstr(c.text, "[error] ctwist: no source\n"));
  cap_close(&c);
}

Test(log, json_observer_lines_parse) {
  struct capture c;
  cap_open(&c);
  ct_log_observer *o =
      ct_log_add_observer(CT_LOG_DEBUG, ct_log_json_observer, c.f);
  ct_log(CT_LOG_DEBUG, "rpc",
         "quote \" backslash \\ newline \n tab \t ctl \x01 end");
  ct_log(CT_LOG_INFO, "rpc", "utf8 \xc3\xa9 bad \xff\xfe over \xc0\xaf ok");
  ct_log_emit(CT_LOG_CRITICAL, "x", NULL, 0, "no file");
  ct_log_remove_observer(o);
  fflush(c.f);
  char *save = NULL;
  int lines = 0;
  for (char *l = strtok_r(c.text, "\n", &save); l;
       l = strtok_r(NULL, "\n", &save)) {
    json_error_t err;
    json_t *j = json_loads(l, 0, &err);
    cr_assert_not_null(j, "invalid JSON line %d: %s (%s)", lines, l, err.text);
    cr_assert(json_is_string(json_object_get(j, "time")));
    cr_assert(json_is_string(json_object_get(j, "level")));
    const char *msg = json_string_value(json_object_get(j, "message"));
    if (lines == 0) {
      cr_assert_str_eq(json_string_value(json_object_get(j, "level")), "debug");
      cr_assert_str_eq(json_string_value(json_object_get(j, "module")), "rpc");
      /* Control bytes arrive escaped, like in the text format. */
      cr_assert_str_eq(
          msg, "quote \" backslash \\ newline \\n tab \\t ctl \\x01 end");
      cr_assert_str_eq(json_string_value(json_object_get(j, "file")),
                       "test_log.c");
      cr_assert(json_is_integer(json_object_get(j, "line")));
    } else if (lines == 1) {
      cr_assert_str_eq(msg, "utf8 \xc3\xa9 bad \\xff\\xfe over \\xc0\\xaf ok");
    } else {
      cr_assert_str_eq(json_string_value(json_object_get(j, "level")),
                       "critical");
      cr_assert_null(json_object_get(j, "file"));
    }
    json_decref(j);
    lines++;
  }
  cr_assert_eq(lines, 3);
  cap_close(&c);
}

static char seen[256];
static void observer_a(const ct_log_event *ev, void *arg) {
  append(seen, sizeof(seen), (const char *)arg);
  (void)ev;
}

Test(log, observers_in_order_with_own_levels) {
  seen[0] = 0;
  ct_log_observer *a = ct_log_add_observer(CT_LOG_DEBUG, observer_a, "a");
  ct_log_observer *b = ct_log_add_observer(CT_LOG_ERROR, observer_a, "b");
  ct_log(CT_LOG_INFO, "m", "x");
  ct_log(CT_LOG_ERROR, "m", "y");
  ct_log_remove_observer(a);
  ct_log(CT_LOG_CRITICAL, "m", "z");
  ct_log_remove_observer(b);
  cr_assert_str_eq(seen, "aabb");
  cr_assert_null(ct_log_add_observer(CT_LOG_INFO, NULL, NULL));
  ct_log_remove_observer(NULL);
}

static ct_log_observer *self;
static void reentrant(const ct_log_event *ev, void *arg) {
  (void)arg;
  if (strcmp(ev->module, "outer") != 0)
    return;
  append(seen, sizeof(seen), "r");
  /* Logging from an observer must not deadlock; changing the list from
   * inside is refused. */
  ct_log(CT_LOG_ERROR, "inner", "from an observer");
  cr_assert_null(ct_log_add_observer(CT_LOG_INFO, observer_a, "x"));
  ct_log_remove_observer(self); /* ignored */
}

Test(log, observer_may_log_without_deadlock, .init = cr_redirect_stderr) {
  seen[0] = 0;
  self = ct_log_add_observer(CT_LOG_DEBUG, reentrant, NULL);
  ct_log(CT_LOG_INFO, "outer", "hello");
  ct_log(CT_LOG_INFO, "outer", "again");
  ct_log_remove_observer(self);
  cr_assert_str_eq(seen, "rr");
  fflush(stderr);
  cr_assert_stderr_neq_str("");
}

Test(log, default_observer_writes_stderr_at_level, .init = cr_redirect_stderr) {
  ct_log_set_default_level(CT_LOG_WARN);
  ct_log(CT_LOG_INFO, "m", "quiet");
  ct_log(CT_LOG_WARN, "m", "loud");
  fflush(stderr);
  ct_log_set_default_level(CT_LOG_INFO);
  FILE *f = cr_get_redirected_stderr();
  char buf[512] = {0};
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  cr_assert_gt(n, 0);
  cr_assert_null(strstr(buf, "quiet"));
  cr_assert_not_null(strstr(buf, "[warn] m: loud"));
}

Test(log, long_messages_are_not_truncated) {
  struct capture c;
  cap_open(&c);
  ct_log_observer *o =
      ct_log_add_observer(CT_LOG_DEBUG, ct_log_text_observer, c.f);
  char big[2000];
  memset(big, 'q', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  ct_log(CT_LOG_INFO, "m", "<%s>", big);
  ct_log_remove_observer(o);
  fflush(c.f);
  char *lt = strchr(c.text, '<');
  cr_assert_not_null(lt);
  cr_assert_eq(strncmp(lt + 1, big, sizeof(big) - 1), 0);
  cr_assert_eq(lt[sizeof(big)], '>');
  cap_close(&c);
}

static void ignore(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  (void)arg;
}

static char libevent_msg[512];
static int libevent_level = -1;
static void catch_libevent(const ct_log_event *ev, void *arg) {
  (void)arg;
  if (strcmp(ev->module, "libevent") == 0) {
    snprintf(libevent_msg, sizeof(libevent_msg), "%s", ev->message);
    libevent_level = (int)ev->level;
  }
}

Test(log, libevent_messages_are_routed) {
  ct_log_capture_libevent();
  ct_log_capture_libevent(); /* idempotent */
  ct_log_observer *o = ct_log_add_observer(CT_LOG_DEBUG, catch_libevent, NULL);
  /* epoll refuses a closed descriptor and libevent warns about it. */
  int p[2];
  cr_assert_eq(pipe(p), 0);
  close(p[0]);
  close(p[1]);
  struct event_base *base = event_base_new();
  struct event *ev = event_new(base, p[0], EV_READ, ignore, NULL);
  cr_assert_neq(event_add(ev, NULL), 0);
  event_free(ev);
  event_base_free(base);
  ct_log_remove_observer(o);
  cr_assert_str_neq(libevent_msg, "", "no libevent message arrived");
  cr_assert_eq(libevent_level, CT_LOG_WARN);
}

static char failure_line[1024];
static void catch_failure(const ct_log_event *ev, void *arg) {
  (void)arg;
  snprintf(failure_line, sizeof(failure_line), "%s|%s", ev->message,
           ev->file ? ev->file : "");
}

Test(log, log_failure_includes_chain_and_site) {
  ct_log_observer *o = ct_log_add_observer(CT_LOG_DEBUG, catch_failure, NULL);
  ct_failure *f =
      ct_failure_wrap("tcp", CT_ECONNLOST,
                      ct_failure_errno(CT_ECONNRESET, "read"), "client %d", 3);
  ct_log_failure(CT_LOG_ERROR, "tcp", "connection lost", f);
  ct_log_failure(CT_LOG_ERROR, "tcp", "nothing", NULL);
  ct_log_remove_observer(o);
  ct_failure_free(f);
  cr_assert_not_null(strstr(failure_line, "nothing: "));
  o = ct_log_add_observer(CT_LOG_DEBUG, catch_failure, NULL);
  f = ct_failure_wrap("tcp", CT_ECONNLOST,
                      ct_failure_errno(CT_ECONNRESET, "read"), "client %d", 3);
  ct_log_failure(CT_LOG_ERROR, "tcp", "connection lost", f);
  ct_log_remove_observer(o);
  ct_failure_free(f);
  cr_assert_not_null(
      strstr(failure_line, "connection lost: [tcp] ECONNLOST: client 3"), "%s",
      failure_line);
  cr_assert_not_null(
      strstr(failure_line, "caused by: [os] ECONNRESET: read: "));
  cr_assert_not_null(strstr(failure_line, "|"));
  cr_assert_not_null(strstr(failure_line, "test_log.c"));
}

/* ------------------------------------------------- escaping peer bytes */

/* No control byte but the newline ending a line, no DEL, no invalid
 * UTF-8 and none of the hostile code points of `hostile` below. */
static void assert_printable(const char *text) {
  for (const unsigned char *p = (const unsigned char *)text; *p; p++)
    cr_assert((*p >= 0x20 || *p == '\n') && *p != 0x7f && *p != 0xff,
              "raw byte 0x%02x at offset %td in: %s", *p,
              (const char *)p - text, text);
  cr_assert_null(strstr(text, "\xc2\x9b"), "raw CSI in: %s", text);
  cr_assert_null(strstr(text, "\xe2\x80\xae"), "raw RLO in: %s", text);
}

static const char hostile[] = "peer says \x1b[2J\x1b]0;owned\x07 \r\n"
                              "2026-01-01T00:00:00.000Z [crit] fake line "
                              "\xc2\x9b"
                              "31m \xe2\x80\xae"
                              "evil \xff\x7f end";

/* Log `hostile` through `observer` into c, and check the output is one
 * printable line (the forged line stays inside the first). */
static void log_hostile(struct capture *c, ct_log_observer_cb observer) {
  cap_open(c);
  ct_log_observer *o = ct_log_add_observer(CT_LOG_DEBUG, observer, c->f);
  ct_log(CT_LOG_WARN, "message", "bad header %s", hostile);
  ct_log_remove_observer(o);
  fflush(c->f);
  assert_printable(c->text);
  cr_assert_eq(strchr(c->text, '\n'), c->text + c->len - 1, "%s", c->text);
}

Test(log, peer_bytes_are_escaped_in_text_lines) {
  struct capture c;
  log_hostile(&c, ct_log_text_observer);
  cr_assert_null(strchr(c.text, '\x1b'), "raw ESC in: %s", c.text);
  cr_assert_not_null(strstr(c.text, "peer says \\x1b[2J\\x1b]0;owned\\x07 "
                                    "\\r\\n2026-01-01T00:00:00.000Z [crit] "
                                    "fake line \\u009b31m \\u202eevil "
                                    "\\xff\\x7f end"),
                     "%s", c.text);
  cap_close(&c);
}

Test(log, peer_bytes_are_escaped_in_json_lines) {
  struct capture c;
  log_hostile(&c, ct_log_json_observer);
  json_error_t err;
  json_t *j = json_loads(c.text, 0, &err);
  cr_assert_not_null(j, "invalid JSON: %s", c.text);
  const char *msg = json_string_value(json_object_get(j, "message"));
  /* What a JSON reader gets back is the escaped, printable text. */
  assert_printable(msg);
  cr_assert_not_null(strstr(msg, "\\x1b[2J"), "%s", msg);
  cr_assert_not_null(strstr(msg, "\\u202eevil"), "%s", msg);
  json_decref(j);
  cap_close(&c);
}

Test(log, printable_text_is_kept_as_is) {
  struct capture c;
  cap_open(&c);
  ct_log_observer *o =
      ct_log_add_observer(CT_LOG_DEBUG, ct_log_text_observer, c.f);
  ct_log(CT_LOG_INFO, "m",
         "caf\xc3\xa9 \xe2\x82\xac 100%% {\"a\": \"b\\\\c\"}");
  ct_log_remove_observer(o);
  fflush(c.f);
  cr_assert_not_null(
      strstr(c.text, "caf\xc3\xa9 \xe2\x82\xac 100% {\"a\": \"b\\\\c\"}"), "%s",
      c.text);
  cap_close(&c);
}

/* The failure's location is printed once, by the observer. */
Test(log, failure_location_is_printed_once) {
  struct capture c;
  cap_open(&c);
  ct_log_observer *o =
      ct_log_add_observer(CT_LOG_DEBUG, ct_log_text_observer, c.f);
  ct_failure *f = ct_failure_wrap("message", CT_EPROTO,
                                  ct_failure_errno(CT_ECONNRESET, "read"),
                                  "header is not JSON");
  char site[64];
  snprintf(site, sizeof site, "(test_log.c:%d)", f->line);
  ct_log_failure(CT_LOG_WARN, "message", "closing connection", f);
  ct_log_remove_observer(o);
  ct_failure_free(f);
  fflush(c.f);
  char *first = strstr(c.text, site);
  cr_assert_not_null(first, "%s not in: %s", site, c.text);
  cr_assert_null(strstr(first + 1, site), "printed twice: %s", c.text);
  cr_assert_not_null(
      strstr(c.text, "closing connection: [message] EPROTO: header is not "
                     "JSON; caused by: [os] ECONNRESET: read: "),
      "%s", c.text);
  cr_assert_eq(strchr(c.text, '\n'), c.text + c.len - 1, "one line: %s",
               c.text);
  cap_close(&c);
}

/* ------------------------------------------------- per-source rate limit */

#include "ctwist/reactor.h"

typedef struct limit_capture {
  int events;
  char last[512];
  int last_line;
  ct_log_level last_level;
} limit_capture;

static void limit_cb(const ct_log_event *ev, void *arg) {
  limit_capture *c = arg;
  if (strcmp(ev->module, "peer") != 0)
    return;
  c->events++;
  c->last_line = ev->line;
  c->last_level = ev->level;
  snprintf(c->last, sizeof c->last, "%s", ev->message);
}

static void bad_peers(ct_reactor *r, int n, int *line) {
  for (int i = 0; i < n; i++) {
    *line = __LINE__ + 1;
    ct_log_limited(r, CT_LOG_WARN, "peer", "bad peer %d", i);
  }
}

Test(log, repeated_warnings_are_limited_per_source) {
  ct_clock *clk = ct_clock_new();
  ct_reactor *r = ct_reactor_new_with_clock(clk);
  limit_capture c = {0};
  ct_log_observer *o = ct_log_add_observer(CT_LOG_DEBUG, limit_cb, &c);
  int line;
  bad_peers(r, 300, &line);
  cr_assert_eq(c.events, 1, "%d events", c.events);
  cr_assert_str_eq(c.last, "bad peer 0");
  ct_clock_advance(clk, 9.9);
  cr_assert_eq(c.events, 1, "the window is 10 s");
  ct_clock_advance(clk, 0.1);
  cr_assert_eq(c.events, 2);
  cr_assert_str_eq(c.last, "... and 299 more like this in the last 10 s");
  cr_assert_eq(c.last_line, line, "the summary names the source");
  cr_assert_eq(c.last_level, CT_LOG_WARN);
  /* A new window: the next one is logged again, without a summary. */
  bad_peers(r, 1, &line);
  cr_assert_eq(c.events, 3);
  cr_assert_str_eq(c.last, "bad peer 0");
  ct_clock_advance(clk, 10);
  cr_assert_eq(c.events, 3, "nothing suppressed, nothing to summarise");
  /* Another call site is another source. */
  ct_log_limited(r, CT_LOG_ERROR, "peer", "other source");
  cr_assert_eq(c.events, 4);
  cr_assert_eq(ct_reactor_pending_calls(r), 0);
  ct_log_remove_observer(o);
  ct_reactor_free(r);
  ct_clock_free(clk);
}

Test(log, limit_burst_interval_and_counts_open_at_free) {
  ct_clock *clk = ct_clock_new();
  ct_reactor *r = ct_reactor_new_with_clock(clk);
  limit_capture c = {0};
  ct_log_observer *o = ct_log_add_observer(CT_LOG_DEBUG, limit_cb, &c);
  cr_assert_eq(ct_reactor_set_log_limit(r, 1.0, 3), 0);
  cr_assert_eq(ct_reactor_set_log_limit(r, 0, 3), CT_EINVAL);
  cr_assert_eq(ct_reactor_set_log_limit(r, 1.0, 0), CT_EINVAL);
  cr_assert_eq(ct_reactor_set_log_limit(NULL, 1.0, 1), CT_EINVAL);
  int line;
  bad_peers(r, 5, &line);
  cr_assert_eq(c.events, 3);
  ct_clock_advance(clk, 1.0);
  cr_assert_eq(c.events, 4);
  cr_assert_str_eq(c.last, "... and 2 more like this in the last 1 s");
  /* Counts still open when the reactor goes are reported then. */
  bad_peers(r, 10, &line);
  cr_assert_eq(c.events, 7);
  ct_reactor_free(r);
  cr_assert_eq(c.events, 8);
  cr_assert_str_eq(c.last, "... and 7 more like this in the last 1 s");
  /* Without a reactor there is no limit. */
  bad_peers(NULL, 4, &line);
  cr_assert_eq(c.events, 12);
  ct_log_remove_observer(o);
  ct_clock_free(clk);
}
