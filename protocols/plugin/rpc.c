/*
 * rpc.c: the bundled `rpc` plugin, a JSON-RPC 2.0 server (jsonrpc.h) with
 * demo methods:
 *
 *   add(a, b)       the sum of two numbers ([a, b] or {"a":, "b":})
 *   echo(...)       the params, as they came
 *   sleep(seconds)  answers `seconds` after that long (callLater); cancels
 *                   its timer when cancelled (rpc.cancel, deadline, loss)
 *   fib(n)          Fibonacci by naive recursion: CPU work, n <= --max-fib
 *   stats()         served, in flight, cancelled, errors, connections,
 *                   uptime
 *
 * The factory ctwistd listens with wraps the server's own factory, so that
 * destroy() can find the server again through `user`.  The web plugin's
 * --rpc serves the same methods over HTTP (ct__rpc_service_new()).
 */
#include <jansson.h>
#include <stdlib.h>

#include "ctwist/jsonrpc.h"
#include "ctwist/plugin.h"
#include "protocols/plugin/internal.h"

struct rpc_service {
  ct_factory f; /* first: destroy() gets this back */
  ct_reactor *r;
  ct_rpc_server *s;
  double started;
  long max_fib;
};

static ct_failure *bad_params(const char *what) {
  return ct_rpc_error_new(CT_RPC_INVALID_PARAMS, NULL, "Invalid params: %s",
                          what);
}

/* The param at `pos` of an array, or `name` of an object. */
static json_t *param(json_t *params, size_t pos, const char *name) {
  return json_is_array(params) ? json_array_get(params, pos)
                               : json_object_get(params, name);
}

static ct_step m_add(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  (void)arg;
  json_t *a = param(params, 0, "a"), *b = param(params, 1, "b");
  if (!json_is_number(a) || !json_is_number(b))
    return ct_raise(bad_params("add needs two numbers, [a, b]"));
  if (json_is_integer(a) && json_is_integer(b))
    return ct_pass(ct_rpc_value(
        json_integer(json_integer_value(a) + json_integer_value(b))));
  return ct_pass(
      ct_rpc_value(json_real(json_number_value(a) + json_number_value(b))));
}

static ct_step m_echo(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  (void)arg;
  return ct_pass(ct_rpc_value(params ? json_incref(params) : NULL));
}

typedef struct nap {
  ct_deferred *d;
  ct_delayed_call *dc;
  double secs;
} nap;

static void nap_done(void *arg) {
  nap *n = arg;
  ct_deferred_callback(n->d, ct_rpc_value(json_real(n->secs)));
  ct_deferred_unref(n->d);
  free(n);
}

static void nap_cancel(ct_deferred *d, void *arg) {
  nap *n = arg;
  ct_delayed_call_cancel(n->dc);
  ct_deferred_errback(d, ct_failure_new(CT_ECANCELLED, "sleep cancelled"));
  ct_deferred_unref(n->d);
  free(n);
}

static ct_step m_sleep(ct_rpc_request *req, json_t *params, void *arg) {
  (void)arg;
  json_t *s = param(params, 0, "seconds");
  double secs = json_number_value(s);
  if (!json_is_number(s) || secs < 0 || secs > 3600)
    return ct_raise(bad_params("sleep needs seconds in [0, 3600]"));
  nap *n = calloc(1, sizeof *n);
  if (n == NULL)
    return ct_raise(ct_failure_new(CT_ENOMEM, "out of memory"));
  n->secs = secs;
  n->d = ct_deferred_new(nap_cancel, n);
  n->dc = ct_call_later(ct_rpc_request_reactor(req), secs, nap_done, n);
  if (n->d == NULL || n->dc == NULL) {
    ct_deferred_unref(n->d);
    free(n);
    return ct_raise(ct_failure_new(CT_ENOMEM, "out of memory"));
  }
  return ct_wait(ct_deferred_ref(n->d));
}

static long long fib(long n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

static ct_step m_fib(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  rpc_service *svc = arg;
  json_t *n = param(params, 0, "n");
  if (!json_is_integer(n) || json_integer_value(n) < 0 ||
      json_integer_value(n) > svc->max_fib)
    return ct_raise(ct_rpc_error_new(
        CT_RPC_INVALID_PARAMS,
        json_pack("{sI}", "max", (json_int_t)svc->max_fib),
        "Invalid params: fib needs an integer n in [0, %ld]", svc->max_fib));
  return ct_pass(ct_rpc_value(json_integer(fib((long)json_integer_value(n)))));
}

static ct_step m_stats(ct_rpc_request *req, json_t *params, void *arg) {
  (void)params;
  rpc_service *svc = arg;
  ct_rpc_server_stats st;
  ct_rpc_server_stats_get(svc->s, &st);
  return ct_pass(ct_rpc_value(json_pack(
      "{sIsIsIsIsIsf}", "served", (json_int_t)st.served, "in_flight",
      (json_int_t)st.inflight, "cancelled", (json_int_t)st.cancelled, "errors",
      (json_int_t)st.errors, "connections", (json_int_t)st.connections,
      "uptime",
      ct_reactor_seconds(ct_rpc_request_reactor(req)) - svc->started)));
}

static ct_protocol *build(ct_factory *f, const ct_address *peer) {
  rpc_service *svc = (rpc_service *)f;
  return ct_factory_build(ct_rpc_server_factory(svc->s), peer);
}

static const ct_factory_ops rpc_factory_ops = {"rpc", build, NULL, NULL};

static void destroy_rpc(ct_factory *f) {
  ct__rpc_service_free((rpc_service *)f);
}

rpc_service *ct__rpc_service_new(ct_reactor *r, const ct_rpc_server_options *so,
                                 long max_fib) {
  rpc_service *svc = calloc(1, sizeof *svc);
  if (svc != NULL)
    svc->s = ct_rpc_server_new(r, so);
  if (svc == NULL || svc->s == NULL) {
    free(svc);
    return NULL;
  }
  ct_factory_init(&svc->f, &rpc_factory_ops, NULL, 0, svc);
  svc->r = r;
  svc->started = ct_reactor_seconds(r);
  svc->max_fib = max_fib;
  static const struct {
    const char *name;
    ct_rpc_method_cb fn;
  } methods[] = {{"add", m_add},
                 {"echo", m_echo},
                 {"sleep", m_sleep},
                 {"fib", m_fib},
                 {"stats", m_stats}};
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
    if (ct_rpc_server_register(svc->s, methods[i].name, methods[i].fn, svc) !=
        0) {
      ct__rpc_service_free(svc);
      return NULL;
    }
  }
  return svc;
}

ct_rpc_server *ct__rpc_service_server(rpc_service *svc) {
  return svc->s;
}

void ct__rpc_service_free(rpc_service *svc) {
  if (svc == NULL)
    return;
  ct_rpc_server_free(svc->s);
  free(svc);
}

static int make_rpc(ct_reactor *r, int argc, char **argv, ct_factory **out,
                    ct_failure **err) {
  long max_fib = 32, max_inflight = CT_RPC_MAX_INFLIGHT_DEFAULT,
       max_batch = CT_RPC_MAX_BATCH_DEFAULT;
  const ct_plugin_option opts[] = {
      {"max-fib", CT_PLUGIN_OPT_LONG, &max_fib, 0, 92,
       "largest n fib accepts (default 32)"},
      {"max-inflight", CT_PLUGIN_OPT_LONG, &max_inflight, 1, 1e6,
       "requests running per connection before reading pauses (1024)"},
      {"max-batch", CT_PLUGIN_OPT_LONG, &max_batch, 1, 1e6,
       "entries per batch (1000)"},
      {NULL, CT_PLUGIN_OPT_FLAG, NULL, 0, 0, NULL}};
  int rc = ct_plugin_parse_options(opts, argc, argv, err);
  if (rc != 0)
    return rc;
  ct_rpc_server_options so = {.max_inflight = (size_t)max_inflight,
                              .max_batch = (size_t)max_batch};
  rpc_service *svc = ct__rpc_service_new(r, &so, max_fib);
  if (svc == NULL) {
    if (err != NULL)
      *err = ct_failure_new(CT_ENOMEM, "plugin rpc: out of memory");
    return CT_ENOMEM;
  }
  *out = &svc->f;
  return 0;
}

const ct_plugin_descriptor ct__rpc_plugin = {
    CT_PLUGIN_ABI_VERSION,
    "rpc",
    "JSON-RPC 2.0 demo methods: add, echo, sleep, fib, stats (docs/rpc.md)",
    "[--max-fib N] [--max-inflight N] [--max-batch N]",
    make_rpc,
    destroy_rpc};
