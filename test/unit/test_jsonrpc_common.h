/* Shared by the JSON-RPC tests: a fake-clock reactor, a server with the
 * methods of the specification's examples plus async and failing ones, a
 * raw message-level peer (to send exact bytes and read exact replies),
 * and JSON comparison helpers.  Header-only, static functions. */
#ifndef CT_TEST_JSONRPC_COMMON_H
#define CT_TEST_JSONRPC_COMMON_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/jsonrpc.h"
#include "ctwist/testing.h"

typedef struct rpc_fx {
  ct_clock *clk;
  ct_reactor *r;
  ct_rpc_server *s;
  int calls;            /* method invocations (all methods) */
  int sleeps_started;   /* sleep invocations */
  int sleeps_cancelled; /* sleep cancellers run */
  int sleeps_done;      /* sleep timers fired */
  /* Raw peer. */
  ct_msg_client *raw;
  ct_pump *pump;
  json_t *got; /* array of parsed replies */
  int got_raw; /* replies received */
} rpc_fx;

static ct_step m_subtract(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  rpc_fx *fx = arg;
  fx->calls++;
  json_t *a, *b;
  if (json_is_array(params) && json_array_size(params) == 2) {
    a = json_array_get(params, 0);
    b = json_array_get(params, 1);
  } else {
    a = json_object_get(params, "minuend");
    b = json_object_get(params, "subtrahend");
  }
  if (!json_is_number(a) || !json_is_number(b))
    return ct_raise(
        ct_rpc_error_new(CT_RPC_INVALID_PARAMS, NULL, "Invalid params"));
  return ct_pass(ct_rpc_value(
      json_integer((json_int_t)(json_number_value(a) - json_number_value(b)))));
}

static ct_step m_sum(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  rpc_fx *fx = arg;
  fx->calls++;
  json_int_t t = 0;
  size_t i;
  json_t *v;
  json_array_foreach(params, i, v) t += json_integer_value(v);
  return ct_pass(ct_rpc_value(json_integer(t)));
}

static ct_step m_null(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  (void)params;
  rpc_fx *fx = arg;
  fx->calls++;
  return ct_pass(CT_NONE);
}

static ct_step m_get_data(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  (void)params;
  rpc_fx *fx = arg;
  fx->calls++;
  return ct_pass(ct_rpc_value(json_pack("[si]", "hello", 5)));
}

static ct_step m_fail(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  (void)params;
  rpc_fx *fx = arg;
  fx->calls++;
  return ct_raise(ct_failure_new(CT_EINVAL, "boom"));
}

static ct_step m_apperr(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  (void)params;
  rpc_fx *fx = arg;
  fx->calls++;
  return ct_raise(ct_rpc_error_new(-32000, json_pack("{ss}", "why", "because"),
                                   "application error"));
}

/* sleep([seconds]): answers the seconds after that long, cancellable. */
typedef struct sleeper {
  rpc_fx *fx;
  ct_deferred *d;
  ct_delayed_call *dc;
  double secs;
} sleeper;

static void sleeper_fire(void *arg) {
  sleeper *sl = arg;
  sl->fx->sleeps_done++;
  ct_deferred_callback(sl->d, ct_rpc_value(json_real(sl->secs)));
  ct_deferred_unref(sl->d);
  free(sl);
}

static void sleeper_cancel(ct_deferred *d, void *arg) {
  sleeper *sl = arg;
  sl->fx->sleeps_cancelled++;
  ct_delayed_call_cancel(sl->dc);
  ct_deferred_errback(d, ct_failure_new(CT_ECANCELLED, "sleep cancelled"));
  ct_deferred_unref(sl->d);
  free(sl);
}

static ct_step m_sleep(ct_rpc_request *req, json_t *params, void *arg) {
  rpc_fx *fx = arg;
  fx->calls++;
  fx->sleeps_started++;
  sleeper *sl = calloc(1, sizeof *sl);
  cr_assert_not_null(sl);
  sl->fx = fx;
  sl->secs = json_number_value(json_array_get(params, 0));
  sl->d = ct_deferred_new(sleeper_cancel, sl);
  sl->dc =
      ct_call_later(ct_rpc_request_reactor(req), sl->secs, sleeper_fire, sl);
  return ct_wait(ct_deferred_ref(sl->d));
}

static inline void rpc_fx_init(rpc_fx *fx, const ct_rpc_server_options *o) {
  memset(fx, 0, sizeof *fx);
  fx->clk = ct_clock_new();
  fx->r = ct_reactor_new_with_clock(fx->clk);
  fx->s = ct_rpc_server_new(fx->r, o);
  cr_assert_not_null(fx->s);
  static const struct {
    const char *name;
    ct_rpc_method_cb fn;
  } ms[] = {{"subtract", m_subtract}, {"sum", m_sum},
            {"update", m_null},       {"notify_hello", m_null},
            {"notify_sum", m_null},   {"get_data", m_get_data},
            {"fail", m_fail},         {"apperr", m_apperr},
            {"sleep", m_sleep}};
  for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
    cr_assert_eq(ct_rpc_server_register(fx->s, ms[i].name, ms[i].fn, fx), 0);
  fx->got = json_array();
}

/* --- the raw peer ---------------------------------------------------- */

static void raw_on_message(ct_messenger *m, const ct_msg_header *h,
                           const char *content, size_t len, void *arg) {
  (void)m;
  rpc_fx *fx = arg;
  const char *ct;
  cr_assert_eq(ct_msg_header_get_str(h, "content-type", &ct), 0);
  cr_assert_str_eq(ct, "application/json");
  json_error_t e;
  json_t *j = json_loadb(content, len, 0, &e);
  cr_assert_not_null(j, "reply is not JSON: %.*s", (int)len, content);
  json_array_append_new(fx->got, j);
  fx->got_raw++;
}

static inline void raw_connect(rpc_fx *fx, size_t chunk) {
  ct_msg_callbacks cb = {NULL, raw_on_message, NULL, NULL, fx};
  fx->raw = ct_msg_client_new(fx->r, &cb, NULL);
  ct_pump_options po = {.chunk_size = chunk, .clock = fx->clk};
  fx->pump = ct_pump_connect_factories(fx->r, ct_rpc_server_factory(fx->s),
                                       ct_msg_client_factory(fx->raw), &po);
  cr_assert_not_null(fx->pump);
}

/* Send `text` as one frame (with an optional deadline-ms, < 0: none) and
 * pump until quiet. */
static inline void raw_send(rpc_fx *fx, const char *text, long deadline_ms) {
  ct_msg_header *h = ct_msg_header_new();
  ct_msg_header_set_str(h, "content-type", "application/json");
  if (deadline_ms >= 0)
    ct_msg_header_set_int(h, CT_RPC_DEADLINE_KEY, deadline_ms);
  cr_assert_eq(ct_msg_client_broadcast(fx->raw, h, text, strlen(text)), 1);
  ct_msg_header_free(h);
  cr_assert_geq(ct_pump_flush(fx->pump), 0);
}

static inline void rpc_fx_free(rpc_fx *fx) {
  ct_pump_free(fx->pump);
  ct_msg_client_free(fx->raw);
  ct_rpc_server_free(fx->s);
  ct_reactor_free(fx->r);
  ct_clock_free(fx->clk);
  json_decref(fx->got);
}

/* --- a client call's outcome ---------------------------------------- */

typedef struct outcome {
  int fired;
  json_t *value; /* the result (a reference) */
  int code;
  char msg[512];
  char domain[32];
} outcome;

static inline ct_step got_value(ct_value v, void *arg) {
  outcome *o = arg;
  o->fired++;
  o->value = json_incref(ct_rpc_value_json(v));
  ct_value_free(v);
  return ct_pass(CT_NONE);
}

static inline ct_step got_failure(ct_failure *f, void *arg) {
  outcome *o = arg;
  o->fired++;
  o->code = f->code;
  snprintf(o->msg, sizeof o->msg, "%s", f->message ? f->message : "");
  snprintf(o->domain, sizeof o->domain, "%s", f->domain);
  ct_failure_free(f);
  return ct_pass(CT_NONE);
}

/* --- comparing ------------------------------------------------------- */

/* Responses are compared without the error's "data" (free-form text). */
static inline void strip_data(json_t *j) {
  if (json_is_array(j)) {
    size_t i;
    json_t *v;
    json_array_foreach(j, i, v) strip_data(v);
  } else if (json_is_object(j)) {
    json_t *err = json_object_get(j, "error");
    if (json_is_object(err))
      json_object_del(err, "data");
  }
}

/* Equal, treating a batch (array) as a multiset: the specification lets
 * a server answer a batch's calls in any order. */
static inline int json_same(json_t *a, json_t *b) {
  if (!json_is_array(a) || !json_is_array(b))
    return json_equal(a, b);
  size_t n = json_array_size(a);
  if (n != json_array_size(b))
    return 0;
  char *used = calloc(n ? n : 1, 1);
  int ok = 1;
  for (size_t i = 0; i < n && ok; i++) {
    ok = 0;
    for (size_t k = 0; k < n; k++)
      if (!used[k] && json_equal(json_array_get(a, i), json_array_get(b, k))) {
        used[k] = 1;
        ok = 1;
        break;
      }
  }
  free(used);
  return ok;
}

#endif
