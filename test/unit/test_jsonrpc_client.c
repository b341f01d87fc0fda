/* The JSON-RPC client against the server over the in-memory pump and a
 * fake clock: calls, notifications, batches, cancellation and deadlines
 * crossing the wire, timeouts, connection loss mid-call, back-pressure,
 * and the queue of calls made while no connection is up. */
#include "test_jsonrpc_common.h"

static void watch(ct_deferred *d, outcome *o) {
  cr_assert_not_null(d);
  ct_deferred_add_callbacks(d, got_value, got_failure, o);
}

typedef struct cl_fx {
  rpc_fx fx;
  ct_rpc_client *c;
  ct_pump *pump;
} cl_fx;

static void cl_init(cl_fx *t, const ct_rpc_server_options *so,
                    const ct_rpc_client_options *co, size_t chunk,
                    int connect) {
  rpc_fx_init(&t->fx, so);
  t->c = ct_rpc_client_new(t->fx.r, co);
  cr_assert_not_null(t->c);
  if (connect) {
    ct_pump_options po = {.chunk_size = chunk, .clock = t->fx.clk};
    t->pump = ct_pump_connect_factories(t->fx.r, ct_rpc_server_factory(t->fx.s),
                                        ct_rpc_client_factory(t->c), &po);
    cr_assert_not_null(t->pump);
    cr_assert_eq(ct_rpc_client_connections(t->c), 1);
  }
}

static void flush(cl_fx *t) {
  cr_assert_geq(ct_pump_flush(t->pump), 0);
}

static void cl_free(cl_fx *t) {
  ct_rpc_client_free(t->c);
  ct_pump_free(t->pump);
  rpc_fx_free(&t->fx);
}

static void outcome_done(outcome *o) {
  json_decref(o->value);
}

static json_t *secs(double s) {
  return json_pack("[f]", s);
}

Test(jsonrpc_client, call_notify_and_batch) {
  cl_fx t;
  cl_init(&t, NULL, NULL, 0, 1);
  outcome a = {0}, b = {0}, e = {0};
  ct_deferred *d = ct_rpc_call(t.c, "subtract", json_pack("[ii]", 42, 23));
  watch(d, &a);
  cr_assert_eq(ct_rpc_client_pending(t.c), 1);
  ct_deferred_unref(d);
  d = ct_rpc_call(t.c, "nope", NULL);
  watch(d, &e);
  ct_deferred_unref(d);
  cr_assert_eq(ct_rpc_notify(t.c, "update", json_pack("[i]", 1)), 0);
  flush(&t);
  cr_assert_eq(a.fired, 1);
  cr_assert_eq(json_integer_value(a.value), 19);
  cr_assert_eq(e.fired, 1);
  cr_assert_eq(e.code, CT_RPC_METHOD_NOT_FOUND);
  cr_assert_str_eq(e.domain, CT_RPC_DOMAIN);
  cr_assert_eq(t.fx.calls, 2); /* subtract, update */
  cr_assert_eq(ct_rpc_client_pending(t.c), 0);

  ct_rpc_batch_entry be[] = {{"sum", json_pack("[iii]", 1, 2, 4), 0},
                             {"notify_hello", json_pack("[i]", 7), 1},
                             {"apperr", NULL, 0}};
  d = ct_rpc_call_batch(t.c, be, 3);
  watch(d, &b);
  ct_deferred_unref(d);
  flush(&t);
  cr_assert_eq(b.fired, 1);
  cr_assert_eq(json_array_size(b.value), 3);
  cr_assert_eq(
      json_integer_value(json_object_get(json_array_get(b.value, 0), "result")),
      7);
  cr_assert(json_is_null(json_array_get(b.value, 1)));
  json_t *err = json_object_get(json_array_get(b.value, 2), "error");
  cr_assert_eq(json_integer_value(json_object_get(err, "code")), -32000);

  /* Bad params are refused before anything is sent. */
  outcome bad = {0};
  d = ct_rpc_call(t.c, "sum", json_string("x"));
  watch(d, &bad);
  ct_deferred_unref(d);
  cr_assert_eq(bad.code, CT_EINVAL);
  cr_assert_eq(ct_rpc_notify(t.c, "sum", json_integer(1)), CT_EINVAL);
  outcome_done(&a);
  outcome_done(&b);
  cl_free(&t);
}

/* An application error keeps its code, message and data on the client. */
Test(jsonrpc_client, error_data_reaches_the_caller) {
  cl_fx t;
  cl_init(&t, NULL, NULL, 0, 1);
  ct_deferred *d = ct_rpc_call(t.c, "apperr", NULL);
  flush(&t);
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(d, &r), 0);
  cr_assert_not_null(r.failure);
  cr_assert(ct_rpc_is_error(r.failure));
  cr_assert_eq(r.failure->code, -32000);
  cr_assert_str_eq(r.failure->message, "application error");
  cr_assert_str_eq(ct_rpc_error_data(r.failure), "{\"why\":\"because\"}");
  ct_failure_free(r.failure);
  ct_deferred_unref(d);
  cl_free(&t);
}

/* Cancelling the caller's Deferred sends rpc.cancel: the server cancels
 * the method's Deferred (the sleep's timer is cancelled) and answers
 * -32800, which the client, no longer waiting, drops. */
Test(jsonrpc_client, cancel_crosses_the_wire) {
  cl_fx t;
  cl_init(&t, NULL, NULL, 0, 1);
  outcome o = {0}, other = {0};
  ct_deferred *d = ct_rpc_call(t.c, "sleep", secs(10));
  ct_deferred *d2 = ct_rpc_call(t.c, "sleep", secs(2));
  watch(d, &o);
  watch(d2, &other);
  flush(&t);
  cr_assert_eq(t.fx.sleeps_started, 2);
  ct_rpc_server_stats st;
  ct_rpc_server_stats_get(t.fx.s, &st);
  cr_assert_eq(st.inflight, 2);
  cr_assert_eq(ct_deferred_cancel(d), 0);
  cr_assert_eq(o.fired, 1);
  cr_assert_eq(o.code, CT_ECANCELLED);
  flush(&t);
  cr_assert_eq(t.fx.sleeps_cancelled, 1);
  ct_rpc_server_stats_get(t.fx.s, &st);
  cr_assert_eq(st.inflight, 1);
  cr_assert_eq(st.cancelled, 1);
  cr_assert_eq(st.errors, 1); /* the -32800 answer */
  /* The other call is untouched. */
  ct_clock_advance(t.fx.clk, 2.0);
  flush(&t);
  cr_assert_eq(other.fired, 1);
  cr_assert_float_eq(json_real_value(other.value), 2.0, 1e-9);
  cr_assert_eq(t.fx.sleeps_done, 1);
  ct_deferred_unref(d);
  ct_deferred_unref(d2);
  outcome_done(&other);
  cl_free(&t);
}

/* rpc.cancel answered on the wire: -32800 for the original id. */
Test(jsonrpc_client, cancel_answers_32800) {
  rpc_fx fx;
  rpc_fx_init(&fx, NULL);
  raw_connect(&fx, 0);
  raw_send(&fx,
           "{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":[5],\"id\":"
           "\"a\"}",
           -1);
  cr_assert_eq(fx.got_raw, 0);
  raw_send(&fx,
           "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.cancel\",\"params\":{\"id\":"
           "\"a\"}}",
           -1);
  cr_assert_eq(fx.got_raw, 1);
  cr_assert_eq(fx.sleeps_cancelled, 1);
  json_t *want =
      json_pack("{s:s,s:{s:i,s:s},s:s}", "jsonrpc", "2.0", "error", "code",
                -32800, "message", "request cancelled", "id", "a");
  cr_assert(json_equal(json_array_get(fx.got, 0), want));
  json_decref(want);
  rpc_fx_free(&fx);
}

/* deadline-ms: the server cancels at the deadline and answers -32001; an
 * expired deadline does not start the method. */
Test(jsonrpc_client, deadline_on_the_wire) {
  rpc_fx fx;
  rpc_fx_init(&fx, NULL);
  raw_connect(&fx, 0);
  raw_send(&fx,
           "{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":[5],\"id\":1}",
           500);
  cr_assert_eq(fx.sleeps_started, 1);
  ct_clock_advance(fx.clk, 0.499);
  cr_assert_eq(fx.got_raw, 0);
  ct_clock_advance(fx.clk, 0.001);
  cr_assert_geq(ct_pump_flush(fx.pump), 0);
  cr_assert_eq(fx.got_raw, 1);
  cr_assert_eq(fx.sleeps_cancelled, 1);
  json_t *err = json_object_get(json_array_get(fx.got, 0), "error");
  cr_assert_eq(json_integer_value(json_object_get(err, "code")), -32001);
  cr_assert_str_eq(json_string_value(json_object_get(err, "message")),
                   "deadline exceeded");
  /* Already expired: not started. */
  raw_send(&fx,
           "{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":[5],\"id\":2}",
           0);
  cr_assert_eq(fx.sleeps_started, 1);
  cr_assert_eq(fx.got_raw, 2);
  err = json_object_get(json_array_get(fx.got, 1), "error");
  cr_assert_eq(json_integer_value(json_object_get(err, "code")), -32001);
  /* A deadline that is met changes nothing. */
  raw_send(&fx,
           "{\"jsonrpc\":\"2.0\",\"method\":\"sleep\",\"params\":[1],\"id\":3}",
           2000);
  ct_clock_advance(fx.clk, 1.0);
  cr_assert_geq(ct_pump_flush(fx.pump), 0);
  cr_assert_eq(fx.got_raw, 3);
  cr_assert_float_eq(
      json_real_value(json_object_get(json_array_get(fx.got, 2), "result")),
      1.0, 1e-9);
  cr_assert_eq(ct_reactor_pending_calls(fx.r), 0);
  rpc_fx_free(&fx);
}

/* The client's timeout travels as deadline-ms: the server stops the work
 * when the caller stops waiting. */
Test(jsonrpc_client, timeout_and_deadline_end_to_end) {
  cl_fx t;
  ct_rpc_client_options co = {.timeout = 1.5};
  cl_init(&t, NULL, &co, 0, 1);
  outcome o = {0};
  ct_deferred *d = ct_rpc_call(t.c, "sleep", secs(10));
  watch(d, &o);
  flush(&t);
  cr_assert_eq(t.fx.sleeps_started, 1);
  ct_clock_advance(t.fx.clk, 1.5);
  flush(&t);
  cr_assert_eq(o.fired, 1);
  cr_assert(o.code == CT_ETIMEDOUT || o.code == CT_RPC_DEADLINE_EXCEEDED,
            "code %d", o.code);
  cr_assert_eq(t.fx.sleeps_cancelled, 1);
  ct_deferred_unref(d);
  /* The default timeout is 30 s. */
  ct_rpc_client *c2 = ct_rpc_client_new(t.fx.r, NULL);
  outcome q = {0};
  d = ct_rpc_call(c2, "sum", NULL); /* queued: no connection */
  watch(d, &q);
  ct_clock_advance(t.fx.clk, 29.9);
  cr_assert_eq(q.fired, 0);
  ct_clock_advance(t.fx.clk, 0.1);
  cr_assert_eq(q.fired, 1);
  cr_assert_eq(q.code, CT_ETIMEDOUT);
  cr_assert_eq(ct_rpc_client_queued(c2), 0);
  ct_deferred_unref(d);
  ct_rpc_client_free(c2);
  cl_free(&t);
}

/* A client that goes away mid-call: the server cancels everything that
 * connection had in flight; the client errbacks its pending calls with a
 * failure naming the endpoint. */
Test(jsonrpc_client, disconnect_mid_call) {
  cl_fx t;
  cl_init(&t, NULL, NULL, 0, 1);
  outcome o[3] = {{0}};
  ct_deferred *d[3];
  for (int i = 0; i < 3; i++) {
    d[i] = ct_rpc_call(t.c, "sleep", secs(5 + i));
    watch(d[i], &o[i]);
  }
  flush(&t);
  cr_assert_eq(t.fx.sleeps_started, 3);
  cr_assert_eq(ct_transport_abort(ct_pump_client_transport(t.pump)), 0);
  flush(&t);
  cr_assert_eq(t.fx.sleeps_cancelled, 3);
  ct_rpc_server_stats st;
  ct_rpc_server_stats_get(t.fx.s, &st);
  cr_assert_eq(st.inflight, 0);
  cr_assert_eq(st.connections, 0);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(o[i].fired, 1);
    cr_assert_eq(o[i].code, CT_ECONNLOST);
    cr_assert(strstr(o[i].msg, "127.0.0.1:8000") != NULL, "%s", o[i].msg);
    ct_deferred_unref(d[i]);
  }
  cr_assert_eq(ct_rpc_client_connections(t.c), 0);
  cr_assert_eq(ct_reactor_pending_calls(t.fx.r), 0);
  cl_free(&t);
}

/* Over the in-flight cap, the server stops reading; it resumes as calls
 * finish, and every call is answered. */
Test(jsonrpc_client, inflight_cap_pauses_reading) {
  cl_fx t;
  ct_rpc_server_options so = {.max_inflight = 2};
  cl_init(&t, &so, NULL, 1, 1);
  outcome o[5] = {{0}};
  ct_deferred *d[5];
  for (int i = 0; i < 5; i++) {
    d[i] = ct_rpc_call(t.c, "sleep", secs(1));
    watch(d[i], &o[i]);
  }
  flush(&t);
  cr_assert_eq(t.fx.sleeps_started, 2);
  cr_assert(ct_transport_reading_paused(ct_pump_server_transport(t.pump)));
  int rounds = 0;
  while (o[4].fired == 0 && rounds++ < 10) {
    ct_clock_advance(t.fx.clk, 1.0);
    flush(&t);
    ct_rpc_server_stats st;
    ct_rpc_server_stats_get(t.fx.s, &st);
    cr_assert_leq(st.inflight, 2);
  }
  for (int i = 0; i < 5; i++) {
    cr_assert_eq(o[i].fired, 1, "call %d", i);
    cr_assert_float_eq(json_real_value(o[i].value), 1.0, 1e-9);
    outcome_done(&o[i]);
    ct_deferred_unref(d[i]);
  }
  cr_assert_not(ct_transport_reading_paused(ct_pump_server_transport(t.pump)));
  cl_free(&t);
}

/* Calls made with no connection wait in a bounded queue and go out when
 * one comes up. */
Test(jsonrpc_client, queue_while_disconnected) {
  cl_fx t;
  ct_rpc_client_options co = {.max_queued = 2};
  cl_init(&t, NULL, &co, 0, 0);
  outcome o[3] = {{0}};
  ct_deferred *d[3];
  for (int i = 0; i < 3; i++) {
    d[i] = ct_rpc_call(t.c, "sum", json_pack("[ii]", i, 1));
    watch(d[i], &o[i]);
  }
  cr_assert_eq(ct_rpc_client_queued(t.c), 2);
  cr_assert_eq(o[2].fired, 1);
  cr_assert_eq(o[2].code, CT_EQUEUEFULL);
  cr_assert_eq(ct_rpc_notify(t.c, "update", NULL), CT_EQUEUEFULL);
  ct_pump_options po = {.clock = t.fx.clk};
  t.pump = ct_pump_connect_factories(t.fx.r, ct_rpc_server_factory(t.fx.s),
                                     ct_rpc_client_factory(t.c), &po);
  cr_assert_eq(ct_rpc_client_queued(t.c), 0);
  flush(&t);
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(o[i].fired, 1);
    cr_assert_eq(json_integer_value(o[i].value), i + 1);
    outcome_done(&o[i]);
  }
  for (int i = 0; i < 3; i++)
    ct_deferred_unref(d[i]);
  cl_free(&t);
}

/* Two connections: calls alternate between them. */
Test(jsonrpc_client, calls_spread_over_connections) {
  cl_fx t;
  cl_init(&t, NULL, NULL, 0, 1);
  ct_pump_options po = {.clock = t.fx.clk};
  ct_pump *p2 = ct_pump_connect_factories(t.fx.r, ct_rpc_server_factory(t.fx.s),
                                          ct_rpc_client_factory(t.c), &po);
  cr_assert_eq(ct_rpc_client_connections(t.c), 2);
  outcome o[4] = {{0}};
  for (int i = 0; i < 4; i++) {
    ct_deferred *d = ct_rpc_call(t.c, "sum", json_pack("[i]", i));
    watch(d, &o[i]);
    ct_deferred_unref(d);
  }
  size_t before1 = ct_pump_delivered(t.pump, 1),
         before2 = ct_pump_delivered(p2, 1);
  flush(&t);
  cr_assert_geq(ct_pump_flush(p2), 0);
  cr_assert_gt(ct_pump_delivered(t.pump, 1), before1);
  cr_assert_gt(ct_pump_delivered(p2, 1), before2);
  for (int i = 0; i < 4; i++) {
    cr_assert_eq(o[i].fired, 1);
    cr_assert_eq(json_integer_value(o[i].value), i);
    outcome_done(&o[i]);
  }
  ct_rpc_client_free(t.c);
  t.c = NULL;
  ct_pump_free(p2);
  cl_free(&t);
}

/* Freeing the client errbacks what is pending with CT_ECANCELLED. */
Test(jsonrpc_client, free_cancels_pending) {
  cl_fx t;
  cl_init(&t, NULL, NULL, 0, 1);
  outcome o = {0};
  ct_deferred *d = ct_rpc_call(t.c, "sleep", secs(3));
  watch(d, &o);
  flush(&t);
  ct_rpc_client_free(t.c);
  t.c = NULL;
  cr_assert_eq(o.fired, 1);
  cr_assert_eq(o.code, CT_ECANCELLED);
  flush(&t);
  cr_assert_eq(t.fx.sleeps_cancelled, 1);
  ct_deferred_unref(d);
  cl_free(&t);
}

/* Many calls answered out of order: the pending map grows and loses
 * entries in any order, and every answer reaches its own caller. */
Test(jsonrpc_client, many_calls_answered_out_of_order) {
  cl_fx t;
  ct_rpc_client_options co = {.timeout = 200};
  cl_init(&t, NULL, &co, 0, 1);
  enum { N = 500 };
  static outcome o[N];
  memset(o, 0, sizeof o);
  for (int i = 0; i < N; i++) {
    /* Durations 1..97 s in a scrambled order. */
    ct_deferred *d = ct_rpc_call(t.c, "sleep", secs((double)(i * 37 % 97 + 1)));
    watch(d, &o[i]);
    ct_deferred_unref(d);
  }
  flush(&t);
  cr_assert_eq(ct_rpc_client_pending(t.c), N);
  for (int s = 0; s < 97; s++) {
    ct_clock_advance(t.fx.clk, 1.0);
    flush(&t);
  }
  cr_assert_eq(ct_rpc_client_pending(t.c), 0);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(o[i].fired, 1, "call %d", i);
    cr_assert_float_eq(json_real_value(o[i].value), (double)(i * 37 % 97 + 1),
                       1e-9, "call %d", i);
    outcome_done(&o[i]);
  }
  cl_free(&t);
}

/* What a method can ask about its request. */
typedef struct seen {
  int calls, notification;
  double remaining;
  char method[32];
  int same_conn;
} seen;

static ct_step m_inspect(ct_rpc_request *req, json_t *params, void *arg) {
  (void)params;
  seen *s = arg;
  s->calls++;
  s->notification = ct_rpc_request_is_notification(req);
  s->remaining = ct_rpc_request_remaining(req);
  snprintf(s->method, sizeof s->method, "%s", ct_rpc_request_method(req));
  s->same_conn = ct_messenger_is_open(ct_rpc_request_messenger(req));
  return ct_pass(ct_rpc_value(json_true()));
}

Test(jsonrpc_client, request_accessors) {
  rpc_fx fx;
  rpc_fx_init(&fx, NULL);
  seen s = {0};
  cr_assert_eq(ct_rpc_server_register(fx.s, "inspect", m_inspect, &s), 0);
  raw_connect(&fx, 0);
  raw_send(&fx, "{\"jsonrpc\":\"2.0\",\"method\":\"inspect\",\"id\":1}", 1500);
  cr_assert_eq(s.calls, 1);
  cr_assert_float_eq(s.remaining, 1.5, 1e-9);
  cr_assert_not(s.notification);
  cr_assert_str_eq(s.method, "inspect");
  cr_assert(s.same_conn);
  raw_send(&fx, "{\"jsonrpc\":\"2.0\",\"method\":\"inspect\"}", -1);
  cr_assert_eq(s.calls, 2);
  cr_assert(s.notification);
  cr_assert_lt(s.remaining, 0);
  cr_assert_eq(fx.got_raw, 1);
  rpc_fx_free(&fx);
}
