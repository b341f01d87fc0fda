/*
 * The plugin ABI (ctwist/plugin.h): descriptor checks, the option parser
 * plugins share, the bundled plugins driven in memory, and the loader's
 * error paths.  ctwistd itself is tested end to end by
 * apps/ctwistd/test/test_ctwistd.py.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctwist/ctwist.h"
#include "ctwist/plugin.h"
#include "ctwist/testing.h"

/* --------------------------------------------------------- option parser */

typedef struct opts {
  int verbose;
  const char *name;
  long count;
  double ratio;
} opts;

static ct_plugin_option table[5];

static void table_for(opts *o) {
  memset(o, 0, sizeof *o);
  o->count = 7;
  ct_plugin_option t[] = {
      {"verbose", CT_PLUGIN_OPT_FLAG, &o->verbose, 0, 0, "chatty"},
      {"name", CT_PLUGIN_OPT_STRING, &o->name, 0, 0, "a name"},
      {"count", CT_PLUGIN_OPT_LONG, &o->count, 1, 100, "how many"},
      {"ratio", CT_PLUGIN_OPT_DOUBLE, &o->ratio, 0, 0, "any number"},
      {.name = NULL}};
  memcpy(table, t, sizeof t);
}

/* Parse `args` (argv[0] "demo" is prepended); returns the code and, on
 * failure, copies the message into `msg`. */
static int parse(opts *o, char *msg, size_t cap, int n, ...) {
  char *argv[16] = {"demo"};
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++)
    argv[i + 1] = va_arg(ap, char *);
  va_end(ap);
  table_for(o);
  ct_failure *err = NULL;
  int rc = ct_plugin_parse_options(table, n + 1, argv, &err);
  if (msg != NULL)
    msg[0] = '\0';
  if (rc != 0) {
    cr_assert(err != NULL);
    cr_assert_eq(err->code, CT_EINVAL);
    if (msg != NULL)
      snprintf(msg, cap, "%s", err->message);
    ct_failure_free(err);
  } else {
    cr_assert(err == NULL);
  }
  return rc;
}

Test(ctwistd_plugin, parser_accepts_every_form) {
  opts o;
  cr_assert_eq(parse(&o, NULL, 0, 0), 0);
  cr_assert_eq(o.count, 7, "defaults stay");
  cr_assert_eq(parse(&o, NULL, 0, 6, "--verbose", "--name", "x y", "--count=42",
                     "--ratio", "-2.5"),
               0);
  cr_assert_eq(o.verbose, 1);
  cr_assert_str_eq(o.name, "x y");
  cr_assert_eq(o.count, 42);
  cr_assert(fabs(o.ratio + 2.5) < 1e-12);
  cr_assert_eq(parse(&o, NULL, 0, 3, "--name=", "--count", "100"), 0);
  cr_assert_str_eq(o.name, "", "an empty value with '='");
  cr_assert_eq(o.count, 100, "the range is inclusive");
  cr_assert_eq(parse(&o, NULL, 0, 2, "--count=5", "--count=6"), 0);
  cr_assert_eq(o.count, 6, "the last occurrence wins");
}

Test(ctwistd_plugin, parser_errors_name_the_option) {
  opts o;
  char m[256];
  cr_assert_eq(parse(&o, m, sizeof m, 1, "--bogus"), CT_EINVAL);
  cr_assert(strstr(m, "demo") && strstr(m, "unknown option '--bogus'"), "%s",
            m);
  cr_assert_eq(parse(&o, m, sizeof m, 1, "--bogus=1"), CT_EINVAL);
  cr_assert(strstr(m, "'--bogus'"), "%s", m);
  cr_assert_eq(parse(&o, m, sizeof m, 1, "stray"), CT_EINVAL);
  cr_assert(strstr(m, "unexpected argument 'stray'"), "%s", m);
  cr_assert_eq(parse(&o, m, sizeof m, 1, "--"), CT_EINVAL);
  cr_assert_eq(parse(&o, m, sizeof m, 1, "--name"), CT_EINVAL);
  cr_assert(strstr(m, "--name needs a value"), "%s", m);
  cr_assert_eq(parse(&o, m, sizeof m, 1, "--verbose=yes"), CT_EINVAL);
  cr_assert(strstr(m, "--verbose takes no value"), "%s", m);
  cr_assert_eq(parse(&o, m, sizeof m, 2, "--count", "12x"), CT_EINVAL);
  cr_assert(strstr(m, "--count") && strstr(m, "'12x' is not an integer"), "%s",
            m);
  cr_assert_eq(parse(&o, m, sizeof m, 1, "--count="), CT_EINVAL);
  cr_assert_eq(parse(&o, m, sizeof m, 2, "--count", "101"), CT_EINVAL);
  cr_assert(strstr(m, "out of range"), "%s", m);
  cr_assert_eq(parse(&o, m, sizeof m, 2, "--count", "0"), CT_EINVAL);
  cr_assert_eq(parse(&o, m, sizeof m, 2, "--count", "99999999999999999999999"),
               CT_EINVAL);
  cr_assert_eq(parse(&o, m, sizeof m, 2, "--ratio", "nan"), CT_EINVAL);
  cr_assert(strstr(m, "'nan' is not a number"), "%s", m);
  cr_assert_eq(parse(&o, m, sizeof m, 2, "--ratio", "1e999"), CT_EINVAL);
}

Test(ctwistd_plugin, parser_bad_arguments) {
  ct_failure *err = NULL;
  cr_assert_eq(ct_plugin_parse_options(NULL, 0, NULL, &err), CT_EINVAL);
  cr_assert(err != NULL);
  ct_failure_free(err);
  opts o;
  table_for(&o);
  cr_assert_eq(ct_plugin_parse_options(table, 2, NULL, NULL), CT_EINVAL);
  cr_assert_eq(ct_plugin_parse_options(table, 0, NULL, NULL), 0,
               "no arguments at all is fine");
  char *argv[] = {"demo", "--nope", NULL};
  cr_assert_eq(ct_plugin_parse_options(table, 2, argv, NULL), CT_EINVAL,
               "err may be NULL");
}

Test(ctwistd_plugin, print_options) {
  opts o;
  table_for(&o);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ct_plugin_print_options(table, f);
  ct_plugin_print_options(NULL, f);
  fclose(f);
  cr_assert(strstr(buf, "--verbose ") && strstr(buf, "chatty"), "%s", buf);
  cr_assert(strstr(buf, "--name TEXT"), "%s", buf);
  cr_assert(strstr(buf, "--count N") && strstr(buf, "how many"), "%s", buf);
  free(buf);
}

/* ------------------------------------------------------------ descriptor */

static int dummy_make(ct_reactor *r, int argc, char **argv, ct_factory **out,
                      ct_failure **err) {
  (void)r, (void)argc, (void)argv, (void)out, (void)err;
  return CT_EINVAL;
}

static void check_fails(const ct_plugin_descriptor *d, const char *needle) {
  ct_failure *err = NULL;
  cr_assert_eq(ct_plugin_check(d, "./x.so", &err), CT_EINVAL);
  cr_assert(err != NULL);
  cr_assert(strstr(err->message, needle), "%s", err->message);
  cr_assert(strstr(err->message, "./x.so"), "%s", err->message);
  ct_failure_free(err);
}

Test(ctwistd_plugin, check_descriptor) {
  ct_plugin_descriptor d = {
      CT_PLUGIN_ABI_VERSION, "ok", NULL, NULL, dummy_make, NULL};
  cr_assert_eq(ct_plugin_check(&d, NULL, NULL), 0);
  check_fails(NULL, "no descriptor");
  d.abi_version = 99;
  check_fails(&d, "ABI version 99");
  d.abi_version = CT_PLUGIN_ABI_VERSION;
  d.name = "";
  check_fails(&d, "no name");
  d.name = "ok";
  d.make_factory = NULL;
  check_fails(&d, "no make_factory");
  cr_assert_eq(ct_plugin_check(&d, NULL, NULL), CT_EINVAL);
}

/* ---------------------------------------------------------------- builtins */

Test(ctwistd_plugin, builtins_are_valid) {
  const char *names[] = {"echo", "discard",      "chargen", "daytime",
                         "qotd", "message-echo", "rpc",     "web"};
  size_t n = 0;
  for (const ct_plugin_descriptor *const *d = ct_plugin_builtins(); *d; d++) {
    cr_assert_eq(ct_plugin_check(*d, NULL, NULL), 0);
    cr_assert_str_eq((*d)->name, names[n]);
    cr_assert_eq(ct_plugin_builtin(names[n]), *d);
    cr_assert((*d)->description != NULL && (*d)->destroy != NULL);
    n++;
  }
  cr_assert_eq(n, 8);
  cr_assert_null(ct_plugin_builtin("nosuch"));
  cr_assert_null(ct_plugin_builtin(NULL));
}

/* Make a builtin's factory from `argc`/`argv`. */
static ct_factory *make(const char *name, int argc, char **argv) {
  const ct_plugin_descriptor *d = ct_plugin_builtin(name);
  cr_assert(d != NULL);
  ct_factory *f = NULL;
  ct_failure *err = NULL;
  cr_assert_eq(d->make_factory(NULL, argc, argv, &f, &err), 0);
  cr_assert(f != NULL && err == NULL);
  return f;
}

Test(ctwistd_plugin, echo_in_memory) {
  char *argv[] = {"echo", NULL};
  ct_factory *f = make("echo", 1, argv);
  ct_string_transport *st = ct_string_transport_new(NULL);
  ct_protocol *p = ct_factory_build(f, NULL);
  cr_assert_eq(ct_string_transport_connect(st, p), 0);
  ct_string_transport_feed_str(st, "ping");
  cr_assert_str_eq(ct_string_transport_value(st, NULL), "ping");
  ct_string_transport_free(st);
  ct_plugin_builtin("echo")->destroy(f);
}

Test(ctwistd_plugin, qotd_quote_option) {
  char *argv[] = {"qotd", "--quote", "Now is better than never.", NULL};
  ct_factory *f = make("qotd", 3, argv);
  ct_string_transport *st = ct_string_transport_new(NULL);
  cr_assert_eq(ct_string_transport_connect(st, ct_factory_build(f, NULL)), 0);
  cr_assert_str_eq(ct_string_transport_value(st, NULL),
                   "Now is better than never.\r\n");
  ct_string_transport_step(st);
  ct_string_transport_stats stats;
  ct_string_transport_stats_get(st, &stats);
  cr_assert_eq(stats.lost_code, CT_ECONNDONE, "qotd closes after the quote");
  ct_string_transport_free(st);
  ct_plugin_builtin("qotd")->destroy(f);

  char *dflt[] = {"qotd", NULL};
  f = make("qotd", 1, dflt);
  st = ct_string_transport_new(NULL);
  cr_assert_eq(ct_string_transport_connect(st, ct_factory_build(f, NULL)), 0);
  cr_assert_str_eq(ct_string_transport_value(st, NULL),
                   CT_QOTD_DEFAULT_QUOTE "\r\n");
  ct_string_transport_free(st);
  ct_plugin_builtin("qotd")->destroy(f);
}

Test(ctwistd_plugin, message_echo_in_memory) {
  ct_clock *clk = ct_clock_new();
  ct_reactor *r = ct_reactor_new_with_clock(clk);
  const ct_plugin_descriptor *d = ct_plugin_builtin("message-echo");
  char *argv[] = {"message-echo", "--max-content", "100", NULL};
  ct_factory *f = NULL;
  ct_failure *err = NULL;
  cr_assert_eq(d->make_factory(r, 3, argv, &f, &err), 0);
  cr_assert(f != NULL && err == NULL);
  ct_string_transport *st = ct_string_transport_new(r);
  cr_assert_eq(ct_string_transport_connect(st, ct_factory_build(f, NULL)), 0);
  ct_msg_header *h = ct_msg_header_new();
  ct_msg_header_set_str(h, "type", "hi");
  char *frame;
  size_t fl;
  cr_assert_eq(ct_msg_encode(h, "abc", 3, &frame, &fl), 0);
  ct_string_transport_feed(st, frame, fl);
  size_t got;
  const char *v = ct_string_transport_value(st, &got);
  cr_assert_eq(got, fl);
  cr_assert_eq(memcmp(v, frame, fl), 0, "echoed");
  free(frame);
  /* --max-content applies: 101 bytes is a protocol error. */
  char big[101] = {0};
  cr_assert_eq(ct_msg_encode(h, big, sizeof big, &frame, &fl), 0);
  ct_string_transport_feed(st, frame, fl);
  ct_string_transport_stats stats;
  ct_string_transport_stats_get(st, &stats);
  cr_assert_eq(stats.lose_connection_calls, 1);
  free(frame);
  ct_msg_header_free(h);
  ct_string_transport_free(st);
  d->destroy(f);
  ct_reactor_free(r);
  ct_clock_free(clk);
}

Test(ctwistd_plugin, builtins_reject_unknown_options) {
  for (const ct_plugin_descriptor *const *d = ct_plugin_builtins(); *d; d++) {
    char *argv[] = {(char *)(*d)->name, "--bogus", NULL};
    ct_factory *f = NULL;
    ct_failure *err = NULL;
    cr_assert_eq((*d)->make_factory(NULL, 2, argv, &f, &err), CT_EINVAL);
    cr_assert_null(f);
    cr_assert(err != NULL);
    cr_assert(strstr(err->message, (*d)->name) &&
                  strstr(err->message, "'--bogus'"),
              "%s", err->message);
    ct_failure_free(err);
  }
}

/* ------------------------------------------------------------------ loader */

Test(ctwistd_plugin, load_errors) {
  ct_failure *err = NULL;
  cr_assert_null(ct_plugin_load("/nonexistent/dir/x.so", &err));
  cr_assert(err != NULL);
  cr_assert_eq(err->code, CT_ENOENT);
  cr_assert(strstr(err->message, "cannot load plugin /nonexistent/dir/x.so"),
            "%s", err->message);
  ct_failure_free(err);

  /* Not a shared object at all. */
  char path[] = "/tmp/ctwistd-notso-XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  cr_assert_eq(write(fd, "hello\n", 6), 6);
  close(fd);
  err = NULL;
  cr_assert_null(ct_plugin_load(path, &err));
  cr_assert_eq(err->code, CT_ENOENT);
  cr_assert(strstr(err->message, path), "%s", err->message);
  ct_failure_free(err);
  unlink(path);

  err = NULL;
  cr_assert_null(ct_plugin_load(NULL, &err));
  cr_assert_eq(err->code, CT_EINVAL);
  ct_failure_free(err);
  cr_assert_null(ct_plugin_load("", NULL));
  cr_assert_null(ct_plugin_descriptor_of(NULL));
  ct_plugin_unload(NULL);
}
