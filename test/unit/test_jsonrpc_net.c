/* The JSON-RPC client and server over loopback TCP on the real clock:
 * a call, the loss of the server (pending calls errback naming the
 * endpoint), and the reconnection that sends calls queued meanwhile.
 * Waits are bounded by a watchdog timer, never by sleeping. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>

#include "ctwist/jsonrpc.h"

typedef struct net {
  ct_reactor *r;
  int fired, code;
  json_t *value;
  char msg[256];
} net;

static ct_step on_value(ct_value v, void *arg) {
  net *n = arg;
  n->fired++;
  n->value = json_incref(ct_rpc_value_json(v));
  ct_value_free(v);
  ct_reactor_stop(n->r);
  return ct_pass(CT_NONE);
}

static ct_step on_failure(ct_failure *f, void *arg) {
  net *n = arg;
  n->fired++;
  n->code = f->code;
  snprintf(n->msg, sizeof n->msg, "%s", f->message);
  ct_failure_free(f);
  ct_reactor_stop(n->r);
  return ct_pass(CT_NONE);
}

static void watchdog(void *arg) {
  ct_reactor_stop(arg);
}

static ct_step m_add(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  (void)arg;
  return ct_pass(ct_rpc_value(
      json_integer(json_integer_value(json_array_get(params, 0)) +
                   json_integer_value(json_array_get(params, 1)))));
}

static ct_rpc_server *serve(ct_reactor *r, const char *ep) {
  ct_failure *err = NULL;
  ct_rpc_server *s = ct_rpc_server_listen(r, ep, NULL, &err);
  cr_assert_not_null(s, "%s", err ? err->message : "");
  cr_assert_eq(ct_rpc_server_register(s, "add", m_add, NULL), 0);
  return s;
}

/* Run until `n` has fired once more, or 10 s pass (then fail). */
static void run_until(net *n, int fired) {
  ct_delayed_call *w = ct_call_later(n->r, 10.0, watchdog, n->r);
  ct_delayed_call_ref(w);
  while (n->fired < fired && ct_delayed_call_active(w))
    ct_reactor_run(n->r);
  ct_delayed_call_cancel(w);
  ct_delayed_call_unref(w);
  cr_assert_eq(n->fired, fired, "timed out waiting");
}

Test(jsonrpc_net, call_loss_and_reconnect) {
  net n = {0};
  n.r = ct_reactor_new();
  ct_rpc_server *s = serve(n.r, "tcp:0:interface=127.0.0.1");
  int port = ct_rpc_server_port(s);
  char ep[64], lep[64];
  snprintf(ep, sizeof ep, "tcp:127.0.0.1:%d", port);
  snprintf(lep, sizeof lep, "tcp:%d:interface=127.0.0.1", port);
  ct_rpc_client_options co = {.retry_initial = 0.05, .retry_max = 0.2};
  ct_rpc_client *c = ct_rpc_client_new(n.r, &co);
  cr_assert_eq(ct_rpc_client_connect(c, ep), 0);

  ct_deferred *d = ct_rpc_call(c, "add", json_pack("[ii]", 2, 3));
  ct_deferred_add_callbacks(d, on_value, on_failure, &n);
  ct_deferred_unref(d);
  run_until(&n, 1);
  cr_assert_eq(json_integer_value(n.value), 5);
  json_decref(n.value);
  n.value = NULL;

  /* A call pending when the server goes away. */
  d = ct_rpc_call(c, "add", json_pack("[ii]", 1, 1));
  ct_deferred_add_callbacks(d, on_value, on_failure, &n);
  ct_deferred_unref(d);
  ct_rpc_server_free(s); /* before the request is even read */
  run_until(&n, 2);
  if (n.code != 0) { /* it may also have been answered in time */
    cr_assert_eq(n.code, CT_ECONNLOST);
    cr_assert(strstr(n.msg, ep) != NULL, "%s", n.msg);
  }
  json_decref(n.value);
  n.value = NULL;
  n.code = 0;
  cr_assert_eq(ct_rpc_client_connections(c), 0);

  /* Calls made while the server is down are queued, then sent when the
   * client has reconnected to the new server. */
  s = serve(n.r, lep);
  d = ct_rpc_call(c, "add", json_pack("[ii]", 20, 22));
  ct_deferred_add_callbacks(d, on_value, on_failure, &n);
  ct_deferred_unref(d);
  run_until(&n, 3);
  cr_assert_eq(n.code, 0, "%s", n.msg);
  cr_assert_eq(json_integer_value(n.value), 42);
  cr_assert_eq(ct_rpc_client_connections(c), 1);
  json_decref(n.value);
  ct_rpc_client_free(c);
  ct_rpc_server_free(s);
  /* Let both ends finish closing (the sockets release their protocols
   * on later loop turns) before the reactor goes. */
  for (int i = 0; i < 5; i++) {
    ct_call_later(n.r, 0.01, watchdog, n.r);
    ct_reactor_run(n.r);
  }
  ct_reactor_free(n.r);
}
