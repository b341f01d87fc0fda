/* The bundled `rpc` plugin through the descriptor ABI, on the in-memory
 * pump with a fake clock: every demo method, a cancelled sleep (its timer
 * goes), the stats, and bad options. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "ctwist/jsonrpc.h"
#include "ctwist/plugin.h"
#include "ctwist/testing.h"

typedef struct plug {
  ct_clock *clk;
  ct_reactor *r;
  const ct_plugin_descriptor *d;
  ct_factory *f;
  ct_rpc_client *c;
  ct_pump *pump;
} plug;

static void plug_init(plug *p, int argc, char **argv) {
  memset(p, 0, sizeof *p);
  p->clk = ct_clock_new();
  p->r = ct_reactor_new_with_clock(p->clk);
  p->d = ct_plugin_builtin("rpc");
  cr_assert_not_null(p->d);
  ct_failure *err = NULL;
  cr_assert_eq(p->d->make_factory(p->r, argc, argv, &p->f, &err), 0);
  p->c = ct_rpc_client_new(p->r, NULL);
  ct_pump_options po = {.clock = p->clk};
  p->pump =
      ct_pump_connect_factories(p->r, p->f, ct_rpc_client_factory(p->c), &po);
  cr_assert_not_null(p->pump);
}

static void plug_free(plug *p) {
  ct_rpc_client_free(p->c);
  ct_pump_free(p->pump);
  p->d->destroy(p->f);
  ct_reactor_free(p->r);
  ct_clock_free(p->clk);
}

/* Call and pump; returns the result (caller decrefs) or NULL with *code. */
static json_t *call(plug *p, const char *method, json_t *params, int *code) {
  ct_deferred *d = ct_rpc_call(p->c, method, params);
  cr_assert_geq(ct_pump_flush(p->pump), 0);
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(d, &r), 0, "%s did not answer", method);
  ct_deferred_unref(d);
  if (r.failure != NULL) {
    *code = r.failure->code;
    ct_failure_free(r.failure);
    return NULL;
  }
  *code = 0;
  return ct_rpc_value_json(r.value); /* the value owns it: hand it over */
}

static void expect_int(plug *p, const char *m, json_t *params, json_int_t v) {
  int code;
  json_t *j = call(p, m, params, &code);
  cr_assert_eq(code, 0, "%s failed with %d", m, code);
  cr_assert(json_is_integer(j) && json_integer_value(j) == v, "%s", m);
  json_decref(j);
}

static void expect_error(plug *p, const char *m, json_t *params, int want) {
  int code;
  json_t *j = call(p, m, params, &code);
  cr_assert_null(j);
  cr_assert_eq(code, want, "%s: %d", m, code);
}

Test(jsonrpc_plugin, demo_methods) {
  plug p;
  char *argv[] = {"rpc", "--max-fib", "25"};
  plug_init(&p, 3, argv);
  expect_int(&p, "add", json_pack("[ii]", 2, 3), 5);
  expect_int(&p, "add", json_pack("{sisi}", "a", 40, "b", 2), 42);
  expect_error(&p, "add", json_pack("[s]", "x"), CT_RPC_INVALID_PARAMS);
  expect_int(&p, "fib", json_pack("[i]", 20), 6765);
  expect_error(&p, "fib", json_pack("[i]", 26), CT_RPC_INVALID_PARAMS);
  expect_error(&p, "sleep", json_pack("[i]", -1), CT_RPC_INVALID_PARAMS);
  int code;
  json_t *e = call(&p, "echo", json_pack("{s[i]}", "k", 1), &code);
  json_t *want = json_pack("{s[i]}", "k", 1);
  cr_assert(json_equal(e, want));
  json_decref(e);
  json_decref(want);

  /* sleep answers after its time on the fake clock. */
  ct_deferred *d = ct_rpc_call(p.c, "sleep", json_pack("[f]", 2.0));
  cr_assert_geq(ct_pump_flush(p.pump), 0);
  cr_assert_not(ct_deferred_called(d));
  ct_clock_advance(p.clk, 2.0);
  cr_assert_geq(ct_pump_flush(p.pump), 0);
  cr_assert(ct_deferred_has_result(d) && !ct_deferred_is_failed(d));
  ct_deferred_unref(d);

  /* A cancelled sleep: its timer is gone from the reactor. */
  d = ct_rpc_call(p.c, "sleep", json_pack("[i]", 100));
  cr_assert_geq(ct_pump_flush(p.pump), 0);
  size_t timers = ct_reactor_pending_calls(p.r);
  ct_deferred_cancel(d);
  cr_assert_geq(ct_pump_flush(p.pump), 0);
  cr_assert_eq(ct_reactor_pending_calls(p.r), timers - 3,
               "the sleep timer, the server's deadline timer and the "
               "client's timeout are gone");
  ct_deferred_unref(d);

  ct_clock_advance(p.clk, 1.0);
  json_t *st = call(&p, "stats", NULL, &code);
  cr_assert_eq(code, 0);
  cr_assert_eq(json_integer_value(json_object_get(st, "cancelled")), 1);
  cr_assert_eq(json_integer_value(json_object_get(st, "in_flight")), 0);
  cr_assert_eq(json_integer_value(json_object_get(st, "connections")), 1);
  cr_assert_geq(json_integer_value(json_object_get(st, "served")), 10);
  cr_assert_float_eq(json_real_value(json_object_get(st, "uptime")), 3.0, 1e-9);
  json_decref(st);
  plug_free(&p);
}

Test(jsonrpc_plugin, bad_options) {
  const ct_plugin_descriptor *d = ct_plugin_builtin("rpc");
  char *argv[] = {"rpc", "--max-fib", "1000"};
  ct_factory *f = NULL;
  ct_failure *err = NULL;
  cr_assert_eq(d->make_factory(NULL, 3, argv, &f, &err), CT_EINVAL);
  cr_assert_null(f);
  cr_assert(strstr(err->message, "max-fib") != NULL, "%s", err->message);
  ct_failure_free(err);
}
