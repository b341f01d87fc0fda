/*
 * plugin_ping.c: the pipelined request/response benchmark's server, a
 * ctwistd plugin written the way docs/tutorial.md teaches: a line receiver
 * that answers each request line with its own reply
 * (ct_line_receiver_send_line), no batching of its own.  It speaks enough
 * of redis's inline protocol for `redis-benchmark -t ping_inline`:
 * "PING" gets "+PONG", anything else "-ERR unknown command".
 *
 *   ctwistd --plugin ./ping.so --listen tcp:6380:interface=127.0.0.1
 */
#include <stdlib.h>
#include <string.h>

#include "ctwist/ctwist.h"
#include "ctwist/plugin.h"

static void ping_line(ct_line_receiver *lr, const char *line, size_t len) {
  if (len == 4 && memcmp(line, "PING", 4) == 0)
    ct_line_receiver_send_line(lr, "+PONG", 5);
  else
    ct_line_receiver_send_line(lr, "-ERR unknown command", 20);
}

static const ct_line_receiver_ops ping_ops = {
    CT_LINE_RECEIVER_BASE("ping", CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER),
    .line_received = ping_line,
};

static int ping_make_factory(ct_reactor *r, int argc, char **argv,
                             ct_factory **out, ct_failure **err) {
  (void)r;
  const ct_plugin_option opts[] = {{NULL}};
  int rc = ct_plugin_parse_options(opts, argc, argv, err);
  if (rc != 0)
    return rc;
  ct_factory *f = calloc(1, sizeof *f);
  if (f == NULL) {
    *err = ct_failure_new(CT_ENOMEM, "plugin ping: out of memory");
    return CT_ENOMEM;
  }
  ct_factory_init(f, NULL, &ping_ops.base, sizeof(ct_line_receiver), NULL);
  *out = f;
  return 0;
}

static void ping_destroy(ct_factory *f) {
  free(f);
}

CT_PLUGIN_EXPORT const ct_plugin_descriptor ctwist_plugin = {
    .abi_version = CT_PLUGIN_ABI_VERSION,
    .name = "ping",
    .description = "answers PING lines with +PONG (redis inline PING)",
    .usage = "",
    .make_factory = ping_make_factory,
    .destroy = ping_destroy,
};
