/* The HTTP client against a ctwist HTTP site over loopback TCP, on a
 * fake-clock reactor (I/O from ct_reactor_iterate, timeouts from the
 * clock): keep-alive pooling, redirects and their limit, timeouts,
 * chunked and close-delimited bodies, HEAD, a streamed download, a proxy,
 * https refused, connection refused, cancellation, and freeing the client
 * with requests in flight. */
#include "test_http_common.h"
#include "test_transport_util.h"

static ct_listening_port *port;
static ct_http_client *client;
static char base[64];

/* "<method> <target> <body>" and the X-Test header echoed. */
static ct_http_reply h_echo(ct_http_request *req, void *arg) {
  (void)arg;
  ct_http_response *r = ct_http_response_new(200);
  char *t = NULL;
  int n = asprintf(&t, "%s %s %s", req->method, req->target, req->body);
  ct_http_response_take_body(r, t, (size_t)n);
  const char *x = ct_http_request_header(req, "X-Test");
  if (x != NULL)
    ct_http_headers_set(&r->headers, "X-Test", x);
  return ct_http_reply_now(r);
}

/* /redir/N redirects to /redir/N-1 (relative, absolute-path, absolute URL
 * in turn); /redir/0 answers; /loop redirects to itself; /see-other
 * answers a POST with 303. */
static ct_http_reply h_redir(ct_http_request *req, void *arg) {
  (void)arg;
  int n = atoi(req->subpath + 1);
  if (n == 0)
    return h_echo(req, NULL);
  char loc[128];
  if (n % 3 == 0)
    snprintf(loc, sizeof loc, "%d", n - 1);
  else if (n % 3 == 1)
    snprintf(loc, sizeof loc, "/redir/%d", n - 1);
  else
    snprintf(loc, sizeof loc, "%s/redir/%d", base, n - 1);
  return ct_http_reply_now(ct_http_response_redirect(n == 5 ? 307 : 302, loc));
}

static ct_http_reply h_loop(ct_http_request *req, void *arg) {
  (void)req;
  (void)arg;
  return ct_http_reply_now(ct_http_response_redirect(302, "/loop"));
}

static ct_http_reply h_see_other(ct_http_request *req, void *arg) {
  (void)req;
  (void)arg;
  return ct_http_reply_now(ct_http_response_redirect(303, "/echo/after"));
}

/* A streamed body of unknown length (chunked), `n` bytes of a pattern. */
typedef struct pat {
  size_t left, off;
} pat;

static int pat_read(void *arg, char *buf, size_t cap, size_t *out) {
  pat *p = arg;
  size_t n = p->left < cap ? p->left : cap;
  for (size_t i = 0; i < n; i++)
    buf[i] = (char)('a' + (p->off + i) % 26);
  p->off += n;
  p->left -= n;
  *out = n;
  return p->left == 0;
}

static ct_http_reply h_big(ct_http_request *req, void *arg) {
  (void)arg;
  pat *p = calloc(1, sizeof *p);
  p->left = (size_t)atol(req->subpath + 1);
  ct_http_response *r = ct_http_response_new(200);
  ct_http_response_set_source(
      r, (ct_http_body_source){pat_read, free, p},
      ct_http_request_param(req, "sized") ? (int64_t)p->left : -1);
  return ct_http_reply_now(r);
}

static void setup(void) {
  th_setup_reactor();
  static const th_route routes[] = {{"/hello", th_hello},
                                    {"/echo", h_echo},
                                    {"/redir", h_redir},
                                    {"/loop", h_loop},
                                    {"/see-other", h_see_other},
                                    {"/later", th_later},
                                    {"/big", h_big},
                                    {NULL, NULL}};
  th_add_routes(routes);
  ct_failure *f = NULL;
  port = ct_listen(th.reactor, "tcp:0:interface=127.0.0.1",
                   ct_http_site_factory(th.site), &f);
  cr_assert_not_null(port, "%s", f ? f->message : "?");
  ct_address a;
  ct_listening_port_address(port, &a);
  snprintf(base, sizeof base, "http://127.0.0.1:%d", ct_address_port(&a));
  ct_http_client_options o = {0};
  o.proxy = "";
  client = ct_http_client_new(th.reactor, &o);
  cr_assert_not_null(client);
}

static int no_server_conns(void *arg) {
  (void)arg;
  return ct_http_site_connections(th.site) == 0;
}

static void teardown(void) {
  ct_http_client_free(client);
  ct_deferred_unref(ct_listening_port_stop(port));
  cr_assert(tu_spin(th.reactor, no_server_conns, NULL, 10));
  th_teardown();
}

TestSuite(http_client, .init = setup, .fini = teardown);

static int fired(void *arg) {
  return ct_deferred_called(arg) && ct_deferred_has_result(arg);
}

/* Run `d` to its result; returns the response (NULL on failure, with
 * *code set). */
static ct_http_client_response *wait_for(ct_deferred *d, int *code) {
  cr_assert_not_null(d);
  cr_assert(tu_spin(th.reactor, fired, d, 20), "request did not finish");
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(d, &r), 0);
  ct_deferred_unref(d);
  if (r.failure != NULL) {
    if (code != NULL)
      *code = r.failure->code;
    ct_failure_free(r.failure);
    return NULL;
  }
  return r.value.ptr;
}

static ct_http_client_response *get(const char *path) {
  char url[256];
  snprintf(url, sizeof url, "%s%s", base, path);
  int code = 0;
  ct_http_client_response *r = wait_for(
      ct_http_client_request(client, "GET", url, NULL, NULL, 0), &code);
  cr_assert_not_null(r, "GET %s failed: %s", path, ct_err_name(code));
  return r;
}

static int get_fails(const char *url) {
  int code = 0;
  ct_http_client_response *r = wait_for(
      ct_http_client_request(client, "GET", url, NULL, NULL, 0), &code);
  cr_assert_null(r, "%s did not fail", url);
  return code;
}

Test(http_client, get_and_keep_alive_pool) {
  for (int i = 0; i < 5; i++) {
    ct_http_client_response *r = get("/hello");
    cr_expect_eq(r->status, 200);
    cr_expect_str_eq(r->reason, "OK");
    cr_expect_str_eq(r->body, "hello\n");
    cr_expect_str_eq(ct_http_headers_get(&r->headers, "Content-Length"), "6");
    ct_http_client_response_free(r);
  }
  cr_expect_eq(ct_listening_port_accepted(port), 1, "the pool reused nothing");
  cr_expect_eq(ct_http_client_connections(client), 1);
  /* The idle connection is closed after idle_timeout. */
  ct_clock_advance(th.clock, 61);
  cr_expect_eq(ct_http_client_connections(client), 0);
  cr_assert(tu_spin(th.reactor, no_server_conns, NULL, 10));
  ct_http_client_response_free(get("/hello"));
  cr_expect_eq(ct_listening_port_accepted(port), 2);
}

Test(http_client, post_with_headers_and_body) {
  ct_http_headers h = {0};
  ct_http_headers_add(&h, "X-Test", "yes");
  char url[128];
  snprintf(url, sizeof url, "%s/echo/x?a=1", base);
  ct_http_client_response *r = wait_for(
      ct_http_client_request(client, "POST", url, &h, "payload", 7), NULL);
  ct_http_headers_clear(&h);
  cr_assert_not_null(r);
  cr_expect_str_eq(r->body, "POST /echo/x?a=1 payload");
  cr_expect_str_eq(ct_http_headers_get(&r->headers, "X-Test"), "yes");
  ct_http_client_response_free(r);
}

Test(http_client, redirects_followed_and_limited) {
  ct_http_client_response *r = get("/redir/5");
  cr_expect_eq(r->status, 200);
  cr_expect_eq(r->redirects, 5);
  cr_expect_str_eq(r->body, "GET /redir/0 ");
  char want[128];
  snprintf(want, sizeof want, "%s/redir/0", base);
  cr_expect_str_eq(r->url, want);
  ct_http_client_response_free(r);
  snprintf(want, sizeof want, "%s/loop", base);
  cr_expect_eq(get_fails(want), CT_ETOOBIG);
  /* 303 turns a POST into a GET without body. */
  snprintf(want, sizeof want, "%s/see-other", base);
  r = wait_for(ct_http_client_request(client, "POST", want, NULL, "x", 1),
               NULL);
  cr_assert_not_null(r);
  cr_expect_str_eq(r->body, "GET /echo/after ");
  ct_http_client_response_free(r);
  cr_expect_eq(ct_listening_port_accepted(port), 1);
}

Test(http_client, redirects_not_followed_when_off) {
  ct_http_client_free(client);
  ct_http_client_options o = {0};
  o.proxy = "";
  o.max_redirects = -1;
  client = ct_http_client_new(th.reactor, &o);
  ct_http_client_response *r = get("/loop");
  cr_expect_eq(r->status, 302);
  cr_expect_str_eq(ct_http_headers_get(&r->headers, "Location"), "/loop");
  ct_http_client_response_free(r);
}

static int one_pending(void *arg) {
  (void)arg;
  return th.npending == 1;
}

Test(http_client, timeout_on_the_reactor_clock) {
  char url[128];
  snprintf(url, sizeof url, "%s/later", base);
  ct_http_client_request_options o = {0};
  o.url = url;
  o.timeout = 5;
  ct_deferred *d = ct_http_client_request_ex(client, &o);
  cr_assert(tu_spin(th.reactor, one_pending, NULL, 10));
  ct_clock_advance(th.clock, 4.9);
  cr_expect_not(ct_deferred_called(d));
  ct_clock_advance(th.clock, 0.1);
  int code = 0;
  cr_expect_null(wait_for(d, &code));
  cr_expect_eq(code, CT_ETIMEDOUT);
  /* The aborted connection cancels the server's pending handler. */
  cr_assert(tu_spin(th.reactor, no_server_conns, NULL, 10));
  cr_expect(ct_deferred_called(th.pending[0]));
  cr_expect_eq(ct_http_client_connections(client), 0);
}

Test(http_client, cancel_aborts_the_request) {
  char url[128];
  snprintf(url, sizeof url, "%s/later", base);
  ct_deferred *d = ct_http_client_request(client, "GET", url, NULL, NULL, 0);
  cr_assert(tu_spin(th.reactor, one_pending, NULL, 10));
  ct_deferred_cancel(d);
  int code = 0;
  cr_expect_null(wait_for(d, &code));
  cr_expect_eq(code, CT_ECANCELLED);
}

Test(http_client, free_with_requests_in_flight) {
  char url[128];
  snprintf(url, sizeof url, "%s/later", base);
  ct_deferred *d = ct_http_client_request(client, "GET", url, NULL, NULL, 0);
  cr_assert(tu_spin(th.reactor, one_pending, NULL, 10));
  ct_deferred *d2 = ct_http_client_request(client, "GET", url, NULL, NULL, 0);
  ct_http_client_free(client);
  client = NULL;
  int code = 0;
  cr_expect_null(wait_for(d, &code));
  cr_expect_eq(code, CT_ECANCELLED);
  cr_expect_null(wait_for(d2, &code));
  cr_expect_eq(code, CT_ECANCELLED);
}

Test(http_client, close_fires_when_connections_are_gone) {
  ct_http_client_response_free(get("/hello"));
  cr_assert_eq(ct_http_client_connections(client), 1);
  ct_deferred *d = ct_http_client_close(client);
  client = NULL;
  cr_expect_not(ct_deferred_called(d));
  cr_assert(tu_spin(th.reactor, fired, d, 10));
  ct_deferred_unref(d);
  /* With no connection it fires at once. */
  ct_http_client_options o = {0};
  o.proxy = "";
  client = ct_http_client_new(th.reactor, &o);
  d = ct_http_client_close(client);
  client = NULL;
  cr_expect(ct_deferred_called(d));
  ct_deferred_unref(d);
}

Test(http_client, chunked_and_sized_streamed_bodies) {
  ct_http_client_response *r = get("/big/100000");
  cr_expect_eq(r->body_len, 100000);
  cr_expect_str_eq(ct_http_headers_get(&r->headers, "Transfer-Encoding"),
                   "chunked");
  for (size_t i = 0; i < r->body_len; i++)
    cr_assert_eq(r->body[i], (char)('a' + i % 26));
  ct_http_client_response_free(r);
  r = get("/big/70000?sized=1");
  cr_expect_eq(r->body_len, 70000);
  ct_http_client_response_free(r);
}

Test(http_client, head_has_no_body) {
  char url[128];
  snprintf(url, sizeof url, "%s/hello", base);
  ct_http_client_response *r = wait_for(
      ct_http_client_request(client, "HEAD", url, NULL, NULL, 0), NULL);
  cr_assert_not_null(r);
  cr_expect_eq(r->body_len, 0);
  cr_expect_str_eq(ct_http_headers_get(&r->headers, "Content-Length"), "6");
  ct_http_client_response_free(r);
  /* The connection is still usable. */
  ct_http_client_response_free(get("/hello"));
  cr_expect_eq(ct_listening_port_accepted(port), 1);
}

typedef struct sink_state {
  size_t bytes, calls;
  int stop_after;
} sink_state;

static int sink_data(void *arg, const char *d, size_t len) {
  sink_state *s = arg;
  (void)d;
  s->bytes += len;
  s->calls++;
  return s->stop_after && s->bytes >= 100000 ? CT_ECANCELLED : 0;
}

Test(http_client, download_through_a_sink) {
  char url[128];
  snprintf(url, sizeof url, "%s/big/3000000", base);
  sink_state s = {0};
  ct_http_body_sink sink = {sink_data, &s};
  ct_http_client_request_options o = {0};
  o.url = url;
  o.sink = &sink;
  ct_http_client_response *r =
      wait_for(ct_http_client_request_ex(client, &o), NULL);
  cr_assert_not_null(r);
  cr_expect_eq(r->body_len, 0);
  cr_expect_eq(s.bytes, 3000000);
  cr_expect_gt(s.calls, 1);
  ct_http_client_response_free(r);
  sink_state stop = {0, 0, 1};
  sink.arg = &stop;
  int code = 0;
  cr_expect_null(wait_for(ct_http_client_request_ex(client, &o), &code));
  cr_expect_eq(code, CT_ECANCELLED);
}

Test(http_client, max_body_is_enforced) {
  ct_http_client_free(client);
  ct_http_client_options o = {0};
  o.proxy = "";
  o.max_body = 1000;
  client = ct_http_client_new(th.reactor, &o);
  char url[128];
  snprintf(url, sizeof url, "%s/big/5000", base);
  cr_expect_eq(get_fails(url), CT_ETOOBIG);
}

Test(http_client, through_a_proxy) {
  ct_http_client_free(client);
  ct_http_client_options o = {0};
  char proxy[80];
  snprintf(proxy, sizeof proxy, "%s/", base);
  o.proxy = proxy;
  client = ct_http_client_new(th.reactor, &o);
  /* The site accepts absolute-form targets, so it plays the proxy. */
  int code = 0;
  ct_http_client_response *r = wait_for(
      ct_http_client_request(
          client, "GET", "http://example.invalid:81/echo/p?q=1", NULL, NULL, 0),
      &code);
  cr_assert_not_null(r, "%s", ct_err_name(code));
  cr_expect_str_eq(r->body, "GET http://example.invalid:81/echo/p?q=1 ");
  ct_http_client_response_free(r);
}

Test(http_client, bad_urls_https_and_refused) {
  cr_expect_eq(get_fails("https://127.0.0.1/"), CT_ENOSYS);
  cr_expect_eq(get_fails("ftp://127.0.0.1/"), CT_EINVAL);
  cr_expect_eq(get_fails("not a url"), CT_EINVAL);
  /* A port nobody listens on: the listener's, once stopped. */
  char url[128];
  snprintf(url, sizeof url, "%s/hello", base);
  ct_deferred_unref(ct_listening_port_stop(port));
  port = NULL;
  cr_expect_eq(get_fails(url), CT_ECONNREFUSED);
  port = ct_listen(th.reactor, "tcp:0:interface=127.0.0.1",
                   ct_http_site_factory(th.site), NULL);
  cr_assert_not_null(port);
}
