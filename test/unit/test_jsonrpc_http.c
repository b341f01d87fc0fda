/* JSON-RPC served outside the message protocol: ct_rpc_server_handle()
 * (async replies, cancellation, deadlines, freeing the server with a
 * request pending) and JSON-RPC over HTTP (ct_rpc_http_handler(): status
 * codes, notifications, a client that goes away), on a fake clock over
 * string transports. */
#include <jansson.h>

#include "ctwist/bytes.h"
#include "ctwist/jsonrpc.h"
#include "test_http_common.h"

typedef struct nap {
  ct_deferred *d;
  ct_delayed_call *dc;
} nap;

static struct {
  ct_rpc_server *s;
  int naps_started, naps_cancelled, naps_done;
} fx;

static ct_step m_add(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  (void)arg;
  return ct_pass(ct_rpc_value(
      json_integer(json_integer_value(json_array_get(params, 0)) +
                   json_integer_value(json_array_get(params, 1)))));
}

static void nap_fire(void *arg) {
  nap *n = arg;
  fx.naps_done++;
  ct_deferred_callback(n->d, ct_rpc_value(json_string("rested")));
  ct_deferred_unref(n->d);
  free(n);
}

static void nap_cancel(ct_deferred *d, void *arg) {
  nap *n = arg;
  fx.naps_cancelled++;
  ct_delayed_call_cancel(n->dc);
  ct_deferred_errback(d, ct_failure_new(CT_ECANCELLED, "nap cancelled"));
  ct_deferred_unref(n->d);
  free(n);
}

/* nap([seconds]): answers "rested" after that long; cancellable. */
static ct_step m_nap(ct_rpc_request *req, json_t *params, void *arg) {
  (void)arg;
  fx.naps_started++;
  nap *n = calloc(1, sizeof *n);
  n->d = ct_deferred_new(nap_cancel, n);
  n->dc =
      ct_call_later(ct_rpc_request_reactor(req),
                    json_number_value(json_array_get(params, 0)), nap_fire, n);
  return ct_wait(ct_deferred_ref(n->d));
}

static void setup(void) {
  th_setup_reactor();
  memset(&fx, 0, sizeof fx);
  fx.s = ct_rpc_server_new(th.reactor, NULL);
  cr_assert_not_null(fx.s);
  cr_assert_eq(ct_rpc_server_register(fx.s, "add", m_add, NULL), 0);
  cr_assert_eq(ct_rpc_server_register(fx.s, "nap", m_nap, NULL), 0);
  cr_assert_eq(ct_http_site_route(th.site, "/rpc", ct_rpc_http_handler, fx.s),
               0);
}

static void teardown(void) {
  th_teardown();
  ct_rpc_server_free(fx.s);
}

TestSuite(jsonrpc_http, .init = setup, .fini = teardown);

/* The reply text of a fired handle() Deferred ("" for none). */
static char *reply_text(ct_deferred *d) {
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(d, &r), 0);
  cr_assert_null(r.failure, "failed: %s", r.failure ? r.failure->message : "");
  ct_bytes *b = r.value.ptr;
  size_t n = b != NULL ? ct_bytes_len(b) : 0;
  char *s = malloc(n + 1); /* the reply is not NUL-terminated */
  cr_assert_not_null(s);
  if (n > 0)
    memcpy(s, ct_bytes_data(b), n);
  s[n] = '\0';
  ct_value_free(r.value);
  ct_deferred_unref(d);
  return s;
}

static ct_deferred *handle(const char *text, int64_t deadline_ms) {
  ct_deferred *d = ct_rpc_server_handle(fx.s, text, strlen(text), deadline_ms);
  cr_assert_not_null(d);
  return d;
}

Test(jsonrpc_http, handle_async_reply_fires_when_the_method_answers) {
  ct_deferred *d = handle(
      "{\"jsonrpc\":\"2.0\",\"method\":\"nap\",\"params\":[2],\"id\":9}", -1);
  cr_assert_not(ct_deferred_called(d));
  ct_clock_advance(th.clock, 1.9);
  cr_assert_not(ct_deferred_called(d));
  ct_clock_advance(th.clock, 0.2);
  char *s = reply_text(d);
  cr_expect_str_eq(s, "{\"jsonrpc\":\"2.0\",\"result\":\"rested\",\"id\":9}");
  free(s);
}

Test(jsonrpc_http, handle_batch_waits_for_every_entry) {
  ct_deferred *d = handle(
      "[{\"jsonrpc\":\"2.0\",\"method\":\"nap\",\"params\":[1],\"id\":1},"
      "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":[2,3],\"id\":2},"
      "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":[1,1]}]",
      -1);
  cr_assert_not(ct_deferred_called(d));
  ct_clock_advance(th.clock, 1.0);
  char *s = reply_text(d);
  json_t *j = json_loads(s, 0, NULL);
  cr_assert(json_is_array(j), "%s", s);
  cr_expect_eq(json_array_size(j), 2); /* the notification has no entry */
  json_decref(j);
  free(s);
}

Test(jsonrpc_http, handle_async_notification_answers_nothing_at_once) {
  ct_deferred *d =
      handle("{\"jsonrpc\":\"2.0\",\"method\":\"nap\",\"params\":[5]}", -1);
  char *s = reply_text(d);
  cr_expect_str_eq(s, "");
  free(s);
  /* The method goes on and finishes with nobody to tell. */
  ct_clock_advance(th.clock, 5.0);
  cr_expect_eq(fx.naps_done, 1);
  cr_expect_eq(fx.naps_cancelled, 0);
}

Test(jsonrpc_http, cancelling_handle_cancels_the_method) {
  ct_deferred *d = handle(
      "{\"jsonrpc\":\"2.0\",\"method\":\"nap\",\"params\":[60],\"id\":1}", -1);
  ct_deferred_cancel(d);
  cr_expect_eq(fx.naps_cancelled, 1);
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(d, &r), 0);
  cr_assert_not_null(r.failure);
  cr_expect_eq(r.failure->code, CT_ECANCELLED);
  ct_failure_free(r.failure);
  ct_deferred_unref(d);
  ct_rpc_server_stats st;
  ct_rpc_server_stats_get(fx.s, &st);
  cr_expect_eq(st.inflight, 0);
}

Test(jsonrpc_http, handle_deadline_crosses_as_with_frames) {
  ct_deferred *d = handle(
      "{\"jsonrpc\":\"2.0\",\"method\":\"nap\",\"params\":[60],\"id\":3}", 500);
  ct_clock_advance(th.clock, 0.5);
  cr_expect_eq(fx.naps_cancelled, 1);
  char *s = reply_text(d);
  cr_expect(strstr(s, "-32001") != NULL, "%s", s);
  free(s);
  /* A deadline already passed: the method does not start. */
  d = handle("{\"jsonrpc\":\"2.0\",\"method\":\"nap\",\"params\":[1],\"id\":4}",
             0);
  s = reply_text(d);
  cr_expect(strstr(s, "deadline exceeded") != NULL, "%s", s);
  cr_expect_eq(fx.naps_started, 1);
  free(s);
}

Test(jsonrpc_http, freeing_the_server_fails_a_pending_handle) {
  ct_deferred *d = handle(
      "{\"jsonrpc\":\"2.0\",\"method\":\"nap\",\"params\":[60],\"id\":1}", -1);
  ct_rpc_server_free(fx.s);
  fx.s = NULL;
  cr_expect_eq(fx.naps_cancelled, 1);
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(d, &r), 0);
  cr_assert_not_null(r.failure);
  cr_expect_eq(r.failure->code, CT_ECLOSED);
  ct_failure_free(r.failure);
  ct_deferred_unref(d);
}

/* ------------------------------------------------------------------ HTTP */

static char *post(ct_string_transport *st, const char *extra,
                  const char *body) {
  char req[1024];
  snprintf(req, sizeof req,
           "POST /rpc HTTP/1.1\r\nHost: x\r\n%sContent-Length: %zu\r\n\r\n%s",
           extra, strlen(body), body);
  return th_exchange(st, req, 0);
}

Test(jsonrpc_http, post_answers_200_with_the_reply) {
  ct_string_transport *st = th_connect();
  char *out = post(st, "Content-Type: application/json\r\n",
                   "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":[1,2],"
                   "\"id\":1}");
  cr_expect_eq(th_status(out), 200, "%s", out);
  cr_expect(strstr(out, "Content-Type: application/json") != NULL, "%s", out);
  cr_expect(
      strstr(out, "\r\n\r\n{\"jsonrpc\":\"2.0\",\"result\":3,\"id\":1}") !=
          NULL,
      "%s", out);
  free(out);
  ct_string_transport_free(st);
}

Test(jsonrpc_http, statuses) {
  static const struct {
    const char *headers;
    const char *body; /* NULL: a GET */
    int status;
    const char *has;
  } cases[] = {
      {"", "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":[1,2]}", 204,
       NULL},
      {"", "{bad", 200, "-32700"},
      {"", "[]", 200, "-32600"},
      {"", NULL, 405, "Allow: POST"},
      {"Content-Type: text/plain\r\n", "{}", 415, NULL},
      {"Content-Type: application/json; charset=utf-8\r\n", "{}", 200,
       "-32600"},
      {"Deadline-Ms: soon\r\n", "{}", 400, NULL},
  };
  ct_string_transport *st = th_connect();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ct_string_transport_clear(st);
    char *out = cases[i].body != NULL
                    ? post(st, cases[i].headers, cases[i].body)
                    : th_exchange(st, "GET /rpc HTTP/1.1\r\n\r\n", 0);
    cr_expect_eq(th_status(out), cases[i].status, "case %zu: %s", i, out);
    if (cases[i].has != NULL)
      cr_expect(strstr(out, cases[i].has) != NULL, "case %zu: %s", i, out);
    free(out);
  }
  cr_expect_not(th_closed(st)); /* every answer kept the connection */
  ct_string_transport_free(st);
}

Test(jsonrpc_http, deadline_header_and_async_reply) {
  ct_string_transport *st = th_connect();
  char *out = post(st, "Deadline-Ms: 1000\r\n",
                   "{\"jsonrpc\":\"2.0\",\"method\":\"nap\",\"params\":[5],"
                   "\"id\":2}");
  cr_expect_eq(th_status(out), -1, "answered early: %s", out);
  free(out);
  ct_clock_advance(th.clock, 1.0);
  while (ct_string_transport_step(st) > 0)
    ;
  size_t n;
  const char *all = ct_string_transport_value(st, &n);
  cr_expect_eq(th_status(all), 200, "%s", all);
  cr_expect(strstr(all, "-32001") != NULL, "%s", all);
  ct_string_transport_free(st);
}

Test(jsonrpc_http, client_going_away_cancels_the_method) {
  ct_string_transport *st = th_connect();
  free(post(
      st, "",
      "{\"jsonrpc\":\"2.0\",\"method\":\"nap\",\"params\":[60],\"id\":1}"));
  cr_assert_eq(fx.naps_started, 1);
  ct_string_transport_lose(st, NULL);
  cr_expect_eq(fx.naps_cancelled, 1);
  ct_rpc_server_stats st_;
  ct_rpc_server_stats_get(fx.s, &st_);
  cr_expect_eq(st_.inflight, 0);
  ct_string_transport_free(st);
}
