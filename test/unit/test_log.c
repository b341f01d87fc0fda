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
      cr_assert_str_eq(msg,
                       "quote \" backslash \\ newline \n tab \t ctl \x01 end");
      cr_assert_str_eq(json_string_value(json_object_get(j, "file")),
                       "test_log.c");
      cr_assert(json_is_integer(json_object_get(j, "line")));
    } else if (lines == 1) {
      cr_assert_str_eq(msg, "utf8 \xc3\xa9 bad \xef\xbf\xbd\xef\xbf\xbd over "
                            "\xef\xbf\xbd\xef\xbf\xbd ok");
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
