/*
 * plugin_upper_test.c: tests of the upper plugin without sockets and
 * without waiting -- a string transport stands in for TCP and a fake clock
 * for time.  The second example of docs/tutorial.md.
 *
 * Build and run:
 *   cc plugin_upper_test.c plugin_upper.c $(pkg-config --cflags --libs
 *      ctwist) -o upper_test && ./upper_test
 * Prints "all upper tests passed" and exits 0, or names the failed check.
 */
#include <stdio.h>
#include <string.h>

#include "ctwist/ctwist.h"
#include "ctwist/plugin.h"
#include "ctwist/testing.h"

/* The descriptor plugin_upper.c exports. */
extern const ct_plugin_descriptor ctwist_plugin;

static int failures;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                              \
    }                                                                          \
  } while (0)

/* What the protocol wrote so far (a NUL-terminated copy inside `st`). */
static const char *written(ct_string_transport *st) {
  return ct_string_transport_value(st, NULL);
}

/* The reason code of connection_lost, once delivered (0 before). */
static int lost_code(ct_string_transport *st) {
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  return s.lost_code;
}

/* Make the plugin's factory from options, as ctwistd would. */
static ct_factory *make(ct_reactor *r, int argc, char **argv) {
  ct_factory *f = NULL;
  ct_failure *err = NULL;
  if (ctwist_plugin.make_factory(r, argc, argv, &f, &err) != 0) {
    ct_failure_print(err, stderr);
    ct_failure_free(err);
    return NULL;
  }
  return f;
}

/* Start one connection: the factory builds a protocol, the string
 * transport runs its connection_made. */
static ct_string_transport *open_connection(ct_reactor *r, ct_factory *f) {
  ct_string_transport *st = ct_string_transport_new(r);
  ct_string_transport_connect(st, ct_factory_build(f, NULL));
  return st;
}

static void test_lines(ct_reactor *r) {
  char *argv[] = {"upper", NULL};
  ct_factory *f = make(r, 1, argv);
  CHECK(f != NULL);
  ct_string_transport *st = open_connection(r, f);

  /* Whole lines in one chunk. */
  ct_string_transport_feed_str(st, "hello\r\nWorld 42\r\n");
  CHECK(strcmp(written(st), "HELLO\r\nWORLD 42\r\n") == 0);
  ct_string_transport_clear(st);

  /* The same bytes one at a time: TCP may split data anywhere. */
  const char *in = "split\r\n";
  for (size_t i = 0; i < strlen(in); i++) {
    ct_string_transport_feed(st, in + i, 1);
    if (i < strlen(in) - 1)
      CHECK(written(st)[0] == '\0'); /* nothing until the line is whole */
  }
  CHECK(strcmp(written(st), "SPLIT\r\n") == 0);

  ct_string_transport_free(st); /* closes the connection */
  ctwist_plugin.destroy(f);
}

static void test_too_long(ct_reactor *r) {
  char *argv[] = {"upper", "--max-length", "4", NULL};
  ct_factory *f = make(r, 3, argv);
  CHECK(f != NULL);
  ct_string_transport *st = open_connection(r, f);
  ct_string_transport_feed_str(st, "abcd\r\nabcdefgh\r\n");
  CHECK(strcmp(written(st), "ABCD\r\n") == 0);
  /* The line receiver logged the problem and closed the connection
   * cleanly (its connection_lost callback gets a CT_ETOOBIG failure). */
  ct_string_transport_step(st); /* deliver the close */
  CHECK(lost_code(st) == CT_ECONNDONE);
  ct_string_transport_free(st);
  ctwist_plugin.destroy(f);
}

static void test_goodbye(ct_reactor *r, ct_clock *clock) {
  char *argv[] = {"upper", "--goodbye-after", "30", NULL};
  ct_factory *f = make(r, 3, argv);
  CHECK(f != NULL);
  ct_string_transport *st = open_connection(r, f);

  ct_clock_advance(clock, 20); /* 20 s idle: nothing yet */
  ct_string_transport_feed_str(st, "still here\r\n"); /* restarts the timer */
  ct_string_transport_clear(st);
  ct_clock_advance(clock, 29.9); /* 29.9 s after the line: nothing */
  CHECK(written(st)[0] == '\0');
  ct_clock_advance(clock, 0.1); /* 30 s: goodbye */
  CHECK(strcmp(written(st), "BYE\r\n") == 0);
  ct_string_transport_step(st);
  CHECK(lost_code(st) == CT_ECONNDONE);

  ct_string_transport_free(st);
  ctwist_plugin.destroy(f);
}

static void test_bad_option(ct_reactor *r) {
  char *argv[] = {"upper", "--max-length", "lots", NULL};
  ct_factory *f = NULL;
  ct_failure *err = NULL;
  CHECK(ctwist_plugin.make_factory(r, 3, argv, &f, &err) == CT_EINVAL);
  CHECK(f == NULL);
  CHECK(err != NULL && strstr(err->message, "--max-length") != NULL);
  ct_failure_free(err);
}

int main(void) {
  /* A reactor on a fake clock: timers fire only from ct_clock_advance(). */
  ct_clock *clock = ct_clock_new();
  ct_reactor *r = ct_reactor_new_with_clock(clock);

  test_lines(r);
  test_too_long(r);
  test_goodbye(r, clock);
  test_bad_option(r);

  ct_reactor_free(r);
  ct_clock_free(clock);
  if (failures == 0)
    printf("all upper tests passed\n");
  return failures == 0 ? 0 : 1;
}
