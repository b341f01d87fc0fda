/*
 * plugin_upper.c: a ctwistd plugin answering every line upper-cased.
 * The example of docs/tutorial.md.
 *
 *   $ ctwistd --plugin ./upper.so --listen tcp:8000 [--max-length N]
 *                                                    [--goodbye-after S]
 *   $ printf 'hello\r\n' | nc -q1 127.0.0.1 8000
 *   HELLO
 *
 * Options:
 *   --max-length N     longest line accepted (default 1024); a longer
 *                      line closes the connection
 *   --goodbye-after S  after S seconds without a line, send "BYE" and
 *                      close (default 0: never)
 *
 * Build:  cc -shared -fPIC plugin_upper.c $(pkg-config --cflags --libs
 *         ctwist) -o upper.so
 */
#include <ctype.h>
#include <stdlib.h>

#include "ctwist/ctwist.h"
#include "ctwist/plugin.h"

/* ---------------------------------------------------------- configuration */

/* The factory and the options it was made with.  The factory is the first
 * member, so the protocol finds its configuration from `p->factory`. */
typedef struct upper_config {
  ct_factory factory;
  long max_length;
  double goodbye_after;
} upper_config;

/* ------------------------------------------------------------- protocol */

/* Per-connection state: a line receiver (FIRST member: the library treats
 * a pointer to the struct as a pointer to it) plus an idle timer. */
typedef struct upper_conn {
  ct_line_receiver lr;
  ct_idle_timeout idle;
} upper_conn;

static const upper_config *config_of(ct_line_receiver *lr) {
  return (const upper_config *)lr->base.factory;
}

/* The idle timer fired: say goodbye, then close (after the flush). */
static void on_idle(ct_idle_timeout *it, void *arg) {
  (void)it;
  upper_conn *c = arg;
  ct_line_receiver_send_line(&c->lr, "BYE", 3);
  ct_transport_lose_connection(c->lr.base.transport);
}

static void upper_connection_made(ct_line_receiver *lr) {
  upper_conn *c = (upper_conn *)lr;
  const upper_config *cfg = config_of(lr);
  ct_line_receiver_set_max_length(lr, (size_t)cfg->max_length);
  ct_idle_timeout_init(&c->idle, NULL, &lr->base, on_idle, c);
  if (cfg->goodbye_after > 0)
    ct_idle_timeout_set(&c->idle, cfg->goodbye_after);
}

static void upper_line_received(ct_line_receiver *lr, const char *line,
                                size_t len) {
  upper_conn *c = (upper_conn *)lr;
  ct_idle_timeout_reset(&c->idle);
  /* `line` is borrowed and read-only: upper-case into our own buffer.
   * Lines are at most max_length bytes long. */
  char small[256];
  char *out = len <= sizeof small ? small : malloc(len);
  if (out == NULL) {
    ct_transport_abort(lr->base.transport);
    return;
  }
  for (size_t i = 0; i < len; i++)
    out[i] = (char)toupper((unsigned char)line[i]);
  ct_line_receiver_send_line(lr, out, len);
  if (out != small)
    free(out);
}

static void upper_connection_lost(ct_line_receiver *lr,
                                  const ct_failure *reason) {
  (void)reason;
  /* The timer points at this connection: stop it before the memory goes. */
  ct_idle_timeout_cancel(&((upper_conn *)lr)->idle);
}

/* The vtable: the line receiver's protocol entry points, then ours. */
static const ct_line_receiver_ops upper_ops = {
    CT_LINE_RECEIVER_BASE("upper", CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER),
    .connection_made = upper_connection_made,
    .line_received = upper_line_received,
    .connection_lost = upper_connection_lost,
};

/* --------------------------------------------------------------- plugin */

static int upper_make_factory(ct_reactor *r, int argc, char **argv,
                              ct_factory **out, ct_failure **err) {
  (void)r;
  upper_config *cfg = calloc(1, sizeof *cfg);
  if (cfg == NULL) {
    *err = ct_failure_new(CT_ENOMEM, "plugin upper: out of memory");
    return CT_ENOMEM;
  }
  cfg->max_length = 1024;
  const ct_plugin_option opts[] = {
      {"max-length", CT_PLUGIN_OPT_LONG, &cfg->max_length, 1, 1 << 20,
       "longest line accepted (default 1024)"},
      {"goodbye-after", CT_PLUGIN_OPT_DOUBLE, &cfg->goodbye_after, 0, 86400,
       "close after S idle seconds (default 0: never)"},
      {.name = NULL}};
  int rc = ct_plugin_parse_options(opts, argc, argv, err);
  if (rc != 0) {
    free(cfg);
    return rc;
  }
  /* The default builder allocates a zero-filled upper_conn per connection
   * and the line receiver releases it after connection_lost. */
  ct_factory_init(&cfg->factory, NULL, &upper_ops.base, sizeof(upper_conn),
                  NULL);
  *out = &cfg->factory;
  return 0;
}

static void upper_destroy(ct_factory *f) {
  free(f);
}

CT_PLUGIN_EXPORT const ct_plugin_descriptor ctwist_plugin = {
    .abi_version = CT_PLUGIN_ABI_VERSION,
    .name = "upper",
    .description = "answers each line upper-cased",
    .usage = "[--max-length N] [--goodbye-after S]",
    .make_factory = upper_make_factory,
    .destroy = upper_destroy,
};
