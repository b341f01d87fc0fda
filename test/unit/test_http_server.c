/* The HTTP server protocol over the string transport with a fake clock:
 * table-driven request parsing (every limit and malformed request gets its
 * status), keep-alive, pipelining order with late Deferreds, 100-continue,
 * chunked bodies, HEAD, conditional GET, Range, handler failures, the
 * slow-loris deadline, streamed bodies and the access log. */
#include <jansson.h>

#include "test_http_common.h"

/* ------------------------------------------------------------ handlers */

/* "<method> <subpath> q=<param q> len=<body_len> body=<body>" */
static ct_http_reply h_echo(ct_http_request *req, void *arg) {
  (void)arg;
  th.calls++;
  const char *q = ct_http_request_param(req, "q");
  char *text = NULL;
  int n = asprintf(&text, "%s %s q=%s len=%zu body=%s", req->method,
                   req->subpath, q ? q : "-", req->body_len, req->body);
  cr_assert_geq(n, 0);
  ct_http_response *r = ct_http_response_new(200);
  ct_http_response_take_body(r, text, (size_t)n);
  return ct_http_reply_now(r);
}

static ct_http_reply h_fail(ct_http_request *req, void *arg) {
  (void)req;
  (void)arg;
  return ct_http_reply_fail(ct_failure_new(CT_EUSER, "handler exploded"));
}

static ct_http_reply h_defer_fail(ct_http_request *req, void *arg) {
  (void)req;
  (void)arg;
  return ct_http_reply_later(
      ct_fail(ct_failure_new(CT_EUSER, "deferred exploded")));
}

static const char bytes100[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "0123456789abcdefghijklmnopqrstuvwxyz!?";

static ct_http_reply h_bytes(ct_http_request *req, void *arg) {
  (void)req;
  (void)arg;
  ct_http_response *r = ct_http_response_new(200);
  ct_http_response_set_body(r, bytes100, 100);
  ct_http_headers_set(&r->headers, "ETag", "\"v1\"");
  ct_http_headers_set(&r->headers, "Last-Modified",
                      "Sun, 06 Nov 1994 08:49:37 GMT");
  return ct_http_reply_now(r);
}

/* A streamed body of unknown length: 3 pieces "ab", "", "cd" then end. */
typedef struct src_state {
  int step;
  int *freed;
} src_state;

static int src_read(void *arg, char *buf, size_t cap, size_t *out) {
  src_state *s = arg;
  (void)cap;
  static const char *pieces[] = {"ab", "", "cd"};
  if (s->step >= 3) {
    *out = 0;
    return 1;
  }
  const char *p = pieces[s->step++];
  memcpy(buf, p, strlen(p));
  *out = strlen(p);
  return 0;
}

static void src_free(void *arg) {
  src_state *s = arg;
  (*s->freed)++;
  free(s);
}

static int sources_freed;

static ct_http_reply h_stream(ct_http_request *req, void *arg) {
  (void)req;
  (void)arg;
  src_state *s = calloc(1, sizeof *s);
  s->freed = &sources_freed;
  ct_http_response *r = ct_http_response_new(200);
  ct_http_response_set_source(r, (ct_http_body_source){src_read, src_free, s},
                              -1);
  return ct_http_reply_now(r);
}

static ct_http_reply h_json(ct_http_request *req, void *arg) {
  (void)arg;
  ct_failure *f = NULL;
  json_t *in = ct_http_request_json(req, &f);
  if (in == NULL) {
    ct_http_response *r = ct_http_response_json_error(400, f->message);
    ct_failure_free(f);
    return ct_http_reply_now(r);
  }
  json_t *x = json_object_get(in, "x");
  json_t *out =
      json_pack("{s:I}", "double", (json_int_t)(2 * json_integer_value(x)));
  json_decref(in);
  return ct_http_reply_now(ct_http_response_json(201, out));
}

static void setup(void) {
  th_setup_reactor();
  ct_http_limits l = {0};
  l.max_body = 1000;
  ct_http_site_set_limits(th.site, &l);
  static const th_route routes[] = {
      {"/hello", th_hello},  {"/echo", h_echo},        {"/later", th_later},
      {"/fail", h_fail},     {"/dfail", h_defer_fail}, {"/bytes", h_bytes},
      {"/stream", h_stream}, {"/json", h_json},        {NULL, NULL}};
  th_add_routes(routes);
}

TestSuite(http_server, .init = setup, .fini = th_teardown);

/* ---------------------------------------------------------- table: parse */

typedef struct parse_case {
  const char *name;
  const char *req; /* NULL: built by the test (big inputs) */
  int status;
  int closes;
  const char *body_has; /* substring expected in the output, or NULL */
} parse_case;

static const parse_case cases[] = {
    {"simple GET", "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, 0, "hello"},
    {"HTTP/1.0 closes", "GET /hello HTTP/1.0\r\n\r\n", 200, 1, "hello"},
    {"1.0 keep-alive", "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
     200, 0, "Connection: keep-alive"},
    {"Connection: close", "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n",
     200, 1, "Connection: close"},
    {"no route", "GET /nothing HTTP/1.1\r\n\r\n", 404, 0, "404 Not Found"},
    {"route prefix is a segment", "GET /hellox HTTP/1.1\r\n\r\n", 404, 0, NULL},
    {"subpath and query", "GET /echo/a%20b?q=x+y%21 HTTP/1.1\r\n\r\n", 200, 0,
     "GET /a b q=x y! len=0"},
    {"absolute-form target", "GET http://h:1/echo/z?q=1 HTTP/1.1\r\n\r\n", 200,
     0, "GET /z q=1"},
    {"content-length body",
     "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 200, 0,
     "len=5 body=hello"},
    {"chunked body",
     "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
     "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n",
     200, 0, "len=5 body=abcde"},
    {"garbage", "HELLO\r\n\r\n", 400, 1, "400 Bad Request"},
    {"bad method", "get / HTTP/1.1\r\n\r\n", 400, 1, NULL},
    {"bad version", "GET / HTTP/x.1\r\n\r\n", 400, 1, NULL},
    {"HTTP/2.0", "GET /hello HTTP/2.0\r\n\r\n", 505, 1, NULL},
    {"bad header token", "GET / HTTP/1.1\r\nBad\x01Header: x\r\n\r\n", 400, 1,
     NULL},
    {"bad content-length", "POST /echo HTTP/1.1\r\nContent-Length: x\r\n\r\n",
     400, 1, NULL},
    {"two content-lengths",
     "POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
     400, 1, NULL},
    {"bad chunk size",
     "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, 1,
     NULL},
    {"bad percent escape", "GET /echo/%zz HTTP/1.1\r\n\r\n", 400, 1,
     "percent-escape"},
    {"NUL in path", "GET /echo/a%00b HTTP/1.1\r\n\r\n", 400, 1, "NUL"},
    {"bad query escape", "GET /echo?q=%g HTTP/1.1\r\n\r\n", 400, 1, NULL},
    {"declared body too large",
     "POST /echo HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 413, 1, NULL},
    {"unknown expectation",
     "POST /echo HTTP/1.1\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\nx", 417,
     1, NULL},
    {"CONNECT", "CONNECT h:443 HTTP/1.1\r\n\r\n", 405, 1, NULL},
    {"handler failure", "GET /fail HTTP/1.1\r\n\r\n", 500, 0,
     "500 Internal Server Error"},
    {"deferred failure", "GET /dfail HTTP/1.1\r\n\r\n", 500, 0, NULL},
    {"json", "POST /json HTTP/1.1\r\nContent-Length: 8\r\n\r\n{\"x\":21}", 201,
     0, "{\"double\":42}"},
    {"json parse error", "POST /json HTTP/1.1\r\nContent-Length: 3\r\n\r\n{x}",
     400, 0, "not JSON"},
};

static void run_case(const parse_case *c, const char *req, size_t chunk) {
  free(th_run_case(c->name, req, chunk, c->status, c->closes, c->body_has));
}

Test(http_server, parse_table_whole_and_bytewise) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    run_case(&cases[i], cases[i].req, 0);
    run_case(&cases[i], cases[i].req, 1);
    run_case(&cases[i], cases[i].req, 7);
  }
}

/* Big inputs: each limit gets its status, and the connection closes. */
static char *repeat(char ch, size_t n) {
  char *s = malloc(n + 1);
  memset(s, ch, n);
  s[n] = 0;
  return s;
}

Test(http_server, limits_table) {
  char *long8k = repeat('a', 8200);
  char *v7k = repeat('v', 7000);
  char *body = repeat('b', 1001);
  char *req = NULL;
  struct {
    const char *name;
    int status;
  } want[5] = {{"header line", 431},
               {"header total", 431},
               {"target", 414},
               {"chunked body", 413},
               {"unread body", 413}};
  for (int k = 0; k < 5; k++) {
    switch (k) {
    case 0:
      cr_assert_geq(asprintf(&req, "GET / HTTP/1.1\r\nX: %s\r\n\r\n", long8k),
                    0);
      break;
    case 1: {
      char *all = calloc(1, 80000);
      strcat(all, "GET / HTTP/1.1\r\n");
      for (int i = 0; i < 10; i++) {
        char line[7100];
        snprintf(line, sizeof line, "X%d: %s\r\n", i, v7k);
        strcat(all, line);
      }
      strcat(all, "\r\n");
      req = all;
      break;
    }
    case 2:
      cr_assert_geq(asprintf(&req, "GET /%s HTTP/1.1\r\n\r\n", long8k), 0);
      break;
    case 3:
      cr_assert_geq(asprintf(&req,
                             "POST /echo HTTP/1.1\r\nTransfer-Encoding: "
                             "chunked\r\n\r\n3e9\r\n%s\r\n0\r\n\r\n",
                             body),
                    0);
      break;
    case 4:
      cr_assert_geq(asprintf(&req, "POST /echo HTTP/1.1\r\nContent-Length: "
                                   "1001\r\nExpect: 100-continue\r\n\r\n"),
                    0);
      break;
    }
    for (size_t chunk = 0; chunk <= 1000; chunk += 1000) {
      ct_string_transport *st = th_connect();
      char *out = th_exchange(st, req, chunk);
      cr_expect_eq(th_status(out), want[k].status, "%s: %.60s", want[k].name,
                   out);
      cr_expect(th_closed(st), "%s: not closed", want[k].name);
      cr_expect_null(strstr(out, "100 Continue"), "%s", want[k].name);
      free(out);
      ct_string_transport_free(st);
    }
    free(req);
    req = NULL;
  }
  free(long8k);
  free(v7k);
  free(body);
}

/* An input just under each limit is accepted. */
Test(http_server, limits_exact_fit) {
  char *v = repeat('v', 8192 - 4 - 1);
  char *req = NULL;
  cr_assert_geq(asprintf(&req, "GET /hello HTTP/1.1\r\nX: %s\r\n\r\n", v), 0);
  ct_string_transport *st = th_connect();
  char *out = th_exchange(st, req, 0);
  cr_expect_eq(th_status(out), 200);
  free(out);
  free(req);
  free(v);
  char *body = repeat('b', 1000);
  cr_assert_geq(asprintf(&req,
                         "POST /echo HTTP/1.1\r\nContent-Length: "
                         "1000\r\n\r\n%s",
                         body),
                0);
  ct_string_transport_clear(st);
  out = th_exchange(st, req, 0);
  cr_expect_eq(th_status(out), 200);
  cr_expect(strstr(out, "len=1000") != NULL);
  free(out);
  free(req);
  free(body);
  ct_string_transport_free(st);
}

/* ------------------------------------------------------- keep-alive, order */

Test(http_server, keep_alive_several_requests) {
  ct_string_transport *st = th_connect();
  for (int i = 0; i < 5; i++) {
    ct_string_transport_clear(st);
    char *out = th_exchange(st, "GET /hello HTTP/1.1\r\n\r\n", 0);
    cr_expect_eq(th_status(out), 200);
    cr_expect(strstr(out, "Content-Length: 6\r\n") != NULL);
    cr_expect(strstr(out, "Date: ") != NULL);
    free(out);
  }
  cr_expect_eq(th_closed(st), 0);
  cr_expect_eq(ct_http_site_requests(th.site), 5);
  ct_string_transport_free(st);
}

Test(http_server, pipelined_responses_leave_in_request_order) {
  ct_string_transport *st = th_connect();
  const char *reqs = "GET /later HTTP/1.1\r\n\r\n"
                     "GET /hello HTTP/1.1\r\n\r\n"
                     "GET /later HTTP/1.1\r\n\r\n"
                     "POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
  for (size_t chunk = 0; chunk < 2; chunk++) {
    char *out = th_exchange(st, reqs, chunk);
    /* Nothing leaves while the first handler is pending. */
    cr_expect_eq(strlen(out), 0, "%s", out);
    free(out);
    cr_assert_eq(th.npending, 2 * (int)chunk + 2);
    th_fire(th.npending - 1, "second-later");
    while (ct_string_transport_step(st) > 0)
      ;
    size_t n;
    cr_expect_eq((ct_string_transport_value(st, &n), n), 0);
    th_fire(th.npending - 2, "first-later");
    size_t len;
    const char *all = ct_string_transport_value(st, &len);
    const char *a = strstr(all, "first-later"), *b = strstr(all, "hello"),
               *c = strstr(all, "second-later"), *d = strstr(all, "body=hi");
    cr_assert(a && b && c && d, "%s", all);
    cr_expect(a < b && b < c && c < d);
    cr_expect_eq(th_count(all, "HTTP/1.1 200"), 4);
    ct_string_transport_clear(st);
  }
  ct_string_transport_free(st);
}

/* More than max_pipeline requests in one segment: reading pauses, every
 * request is still answered, in order. */
Test(http_server, pipeline_flood_is_bounded_and_complete) {
  ct_string_transport *st = th_connect();
  char *reqs = calloc(1, 40 * 64);
  for (int i = 0; i < 40; i++) {
    char one[64];
    snprintf(one, sizeof one, "GET /later HTTP/1.1\r\n\r\n");
    strcat(reqs, one);
  }
  char *out = th_exchange(st, reqs, 0);
  free(out);
  cr_expect_eq(th.npending, 16);
  int fired = 0;
  while (fired < 40) {
    cr_assert_lt(fired, th.npending);
    char body[32];
    snprintf(body, sizeof body, "<%d>", fired);
    th_fire(fired++, body);
    while (ct_string_transport_step(st) > 0)
      ;
  }
  const char *all = ct_string_transport_value(st, NULL);
  const char *p = all;
  for (int i = 0; i < 40; i++) {
    char body[32];
    snprintf(body, sizeof body, "<%d>", i);
    const char *q = strstr(p, body);
    cr_assert_not_null(q, "%s missing", body);
    p = q;
  }
  cr_expect_eq(th_count(all, "HTTP/1.1 200"), 40);
  free(reqs);
  ct_string_transport_free(st);
}

Test(http_server, connection_lost_with_a_pending_handler_cancels_it) {
  ct_string_transport *st = th_connect();
  free(th_exchange(st, "GET /later HTTP/1.1\r\n\r\n", 0));
  cr_assert_eq(th.npending, 1);
  ct_string_transport_lose(st, NULL);
  cr_expect(ct_deferred_called(th.pending[0]));
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(th.pending[0], &r), 0);
  cr_expect_null(r.failure);
  ct_string_transport_free(st);
}

/* --------------------------------------------------------- 100-continue */

Test(http_server, expect_100_continue) {
  ct_string_transport *st = th_connect();
  char *out = th_exchange(st,
                          "POST /echo HTTP/1.1\r\nContent-Length: 3\r\nExpect: "
                          "100-continue\r\n\r\n",
                          0);
  cr_expect_str_eq(out, "HTTP/1.1 100 Continue\r\n\r\n");
  free(out);
  ct_string_transport_clear(st);
  out = th_exchange(st, "abc", 0);
  cr_expect_eq(th_status(out), 200);
  cr_expect(strstr(out, "body=abc") != NULL);
  free(out);
  ct_string_transport_free(st);
}

/* The 100 of a pipelined request waits for the responses before it. */
Test(http_server, expect_100_continue_waits_its_turn) {
  ct_string_transport *st = th_connect();
  char *out = th_exchange(st,
                          "GET /later HTTP/1.1\r\n\r\n"
                          "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n"
                          "Expect: 100-continue\r\n\r\n",
                          0);
  cr_expect_eq(strlen(out), 0);
  free(out);
  th_fire(0, "first");
  const char *all = ct_string_transport_value(st, NULL);
  const char *a = strstr(all, "first"), *b = strstr(all, "100 Continue");
  cr_assert(a && b, "%s", all);
  cr_expect(a < b);
  ct_string_transport_free(st);
}

/* ------------------------------------------------- HEAD, 304, Range */

Test(http_server, head_has_headers_and_no_body) {
  ct_string_transport *st = th_connect();
  char *out = th_exchange(st,
                          "HEAD /bytes HTTP/1.1\r\n\r\n"
                          "GET /hello HTTP/1.1\r\n\r\n",
                          0);
  cr_expect(strstr(out, "Content-Length: 100\r\n") != NULL);
  cr_expect_null(strstr(out, "0123456789"));
  cr_expect(strstr(out, "hello\n") != NULL);
  free(out);
  ct_string_transport_free(st);
}

static void expect_status(const char *req, int status, const char *has,
                          const char *hasnt) {
  ct_string_transport *st = th_connect();
  char *out = th_exchange(st, req, 0);
  cr_expect_eq(th_status(out), status, "%s -> %s", req, out);
  if (has != NULL)
    cr_expect(strstr(out, has) != NULL, "%s: no %s in %s", req, has, out);
  if (hasnt != NULL)
    cr_expect_null(strstr(out, hasnt), "%s: %s in %s", req, hasnt, out);
  free(out);
  ct_string_transport_free(st);
}

Test(http_server, conditional_get) {
  expect_status("GET /bytes HTTP/1.1\r\nIf-None-Match: \"v1\"\r\n\r\n", 304,
                "ETag: \"v1\"", "0123");
  expect_status("GET /bytes HTTP/1.1\r\nIf-None-Match: \"x\", W/\"v1\"\r\n\r\n",
                304, NULL, "Content-Length");
  expect_status("GET /bytes HTTP/1.1\r\nIf-None-Match: \"v2\"\r\n\r\n", 200,
                "0123", NULL);
  expect_status("GET /bytes HTTP/1.1\r\nIf-None-Match: *\r\n\r\n", 304, NULL,
                NULL);
  expect_status("GET /bytes HTTP/1.1\r\nIf-Modified-Since: Sun, 06 Nov 1994 "
                "08:49:37 GMT\r\n\r\n",
                304, NULL, NULL);
  expect_status("GET /bytes HTTP/1.1\r\nIf-Modified-Since: Sat, 05 Nov 1994 "
                "08:49:37 GMT\r\n\r\n",
                200, NULL, NULL);
  /* If-None-Match wins over If-Modified-Since. */
  expect_status("GET /bytes HTTP/1.1\r\nIf-None-Match: \"v2\"\r\n"
                "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
                200, NULL, NULL);
  expect_status("GET /bytes HTTP/1.1\r\nIf-Modified-Since: garbage\r\n\r\n",
                200, NULL, NULL);
  /* Not for POST. */
  expect_status("POST /bytes HTTP/1.1\r\nIf-None-Match: \"v1\"\r\n\r\n", 200,
                NULL, NULL);
}

Test(http_server, single_range) {
  expect_status("GET /bytes HTTP/1.1\r\nRange: bytes=0-9\r\n\r\n", 206,
                "Content-Length: 10\r\n\r\n0123456789", NULL);
  expect_status("GET /bytes HTTP/1.1\r\nRange: bytes=0-9\r\n\r\n", 206,
                "Content-Range: bytes 0-9/100\r\n", NULL);
  expect_status("GET /bytes HTTP/1.1\r\nRange: bytes=98-\r\n\r\n", 206,
                "Content-Length: 2\r\n\r\n!?", NULL);
  expect_status("GET /bytes HTTP/1.1\r\nRange: bytes=-3\r\n\r\n", 206,
                "bytes 97-99/100", NULL);
  expect_status("GET /bytes HTTP/1.1\r\nRange: bytes=90-1000\r\n\r\n", 206,
                "bytes 90-99/100", NULL);
  expect_status("GET /bytes HTTP/1.1\r\nRange: bytes=100-\r\n\r\n", 416,
                "Content-Range: bytes */100", NULL);
  expect_status("GET /bytes HTTP/1.1\r\nRange: bytes=-0\r\n\r\n", 416, NULL,
                NULL);
  /* Ignored: several ranges, other units, malformed. */
  expect_status("GET /bytes HTTP/1.1\r\nRange: bytes=0-1,5-6\r\n\r\n", 200,
                "Content-Length: 100", NULL);
  expect_status("GET /bytes HTTP/1.1\r\nRange: lines=1-2\r\n\r\n", 200, NULL,
                NULL);
  expect_status("GET /bytes HTTP/1.1\r\nRange: bytes=5-2\r\n\r\n", 200, NULL,
                NULL);
  /* A 304 wins over a range. */
  expect_status("GET /bytes HTTP/1.1\r\nRange: bytes=0-1\r\nIf-None-Match: "
                "\"v1\"\r\n\r\n",
                304, NULL, NULL);
}

/* -------------------------------------------------------- streamed body */

Test(http_server, streamed_body_is_chunked_for_http11) {
  ct_string_transport *st = th_connect();
  char *out = th_exchange(st,
                          "GET /stream HTTP/1.1\r\n\r\n"
                          "GET /hello HTTP/1.1\r\n\r\n",
                          0);
  cr_expect(strstr(out, "Transfer-Encoding: chunked\r\n") != NULL, "%s", out);
  cr_expect(
      strstr(out, "\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\nHTTP/1.1 200") !=
          NULL,
      "%s", out);
  cr_expect(strstr(out, "hello\n") != NULL);
  free(out);
  cr_expect_eq(sources_freed, 1);
  ct_string_transport_free(st);
}

Test(http_server, streamed_body_for_http10_ends_with_the_close) {
  ct_string_transport *st = th_connect();
  char *out = th_exchange(
      st, "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0);
  cr_expect_null(strstr(out, "chunked"));
  cr_expect(strstr(out, "Connection: close\r\n\r\nabcd") != NULL, "%s", out);
  cr_expect(th_closed(st));
  free(out);
  ct_string_transport_free(st);
}

Test(http_server, source_freed_when_connection_drops_midway) {
  ct_string_transport *st = th_connect();
  ct_string_transport_feed_str(st, "GET /stream HTTP/1.1\r\n\r\n");
  ct_string_transport_lose(st, NULL);
  ct_string_transport_free(st);
  cr_expect_eq(sources_freed, 1);
}

/* --------------------------------------------------------- slow-loris */

Test(http_server, header_deadline_gives_408_and_closes) {
  ct_string_transport *st = th_connect();
  ct_clock_advance(th.clock, 5);
  char *out = th_exchange(st, "GET /hello HTTP/1.1\r\nX-Slow: ", 1);
  cr_expect_eq(strlen(out), 0);
  free(out);
  ct_clock_advance(th.clock, 19.9);
  cr_expect_eq(th_closed(st), 0);
  ct_clock_advance(th.clock, 0.1);
  while (ct_string_transport_step(st) > 0)
    ;
  cr_expect_eq(th_status(ct_string_transport_value(st, NULL)), 408);
  cr_expect(th_closed(st));
  ct_string_transport_free(st);
}

/* The deadline is per request: a slow second request on a keep-alive
 * connection gets its own 20 s. */
Test(http_server, header_deadline_per_request) {
  ct_string_transport *st = th_connect();
  free(th_exchange(st, "GET /hello HTTP/1.1\r\n\r\n", 0));
  ct_clock_advance(th.clock, 30);
  cr_expect_eq(th_closed(st), 0);
  free(th_exchange(st, "GET /hel", 0));
  ct_clock_advance(th.clock, 19);
  cr_expect_eq(th_closed(st), 0);
  ct_clock_advance(th.clock, 1);
  while (ct_string_transport_step(st) > 0)
    ;
  cr_expect(th_closed(st));
  cr_expect(strstr(ct_string_transport_value(st, NULL), "408 Request Timeout"));
  ct_string_transport_free(st);
}

Test(http_server, idle_keep_alive_connection_closes_quietly) {
  ct_string_transport *st = th_connect();
  free(th_exchange(st, "GET /hello HTTP/1.1\r\n\r\n", 0));
  ct_string_transport_clear(st);
  ct_clock_advance(th.clock, 74);
  cr_expect_eq(th_closed(st), 0);
  ct_clock_advance(th.clock, 1);
  cr_expect(th_closed(st));
  size_t n;
  ct_string_transport_value(st, &n);
  cr_expect_eq(n, 0);
  ct_string_transport_free(st);
}

/* -------------------------------------------------------------- misc */

Test(http_server, failure_keeps_the_connection) {
  ct_string_transport *st = th_connect();
  char *out = th_exchange(
      st, "GET /fail HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n", 0);
  cr_expect_eq(th_status(out), 500);
  cr_expect(strstr(out, "hello\n") != NULL);
  cr_expect_eq(th_closed(st), 0);
  free(out);
  ct_string_transport_free(st);
}

/* EOF from the client: answered responses still leave in order, the
 * unanswered handler is cancelled, then the connection closes. */
Test(http_server, eof_flushes_answered_and_cancels_the_rest) {
  ct_string_transport *st = th_connect();
  free(th_exchange(st, "GET /hello HTTP/1.1\r\n\r\nGET /later HTTP/1.1\r\n\r\n",
                   0));
  cr_expect_eq(ct_string_transport_feed_eof(st), 0);
  cr_expect(ct_deferred_called(th.pending[0]));
  while (ct_string_transport_step(st) > 0)
    ;
  cr_expect(strstr(ct_string_transport_value(st, NULL), "hello\n") != NULL);
  ct_string_transport_stats stats;
  ct_string_transport_stats_get(st, &stats);
  cr_expect(stats.disconnected);
  ct_string_transport_free(st);
}

Test(http_server, access_log_common_log_format) {
  char *buf = NULL;
  size_t len = 0;
  FILE *log = open_memstream(&buf, &len);
  ct_http_site_set_access_log(th.site, log);
  ct_string_transport *st = th_connect();
  free(th_exchange(
      st, "GET /hello?x=\"1\" HTTP/1.1\r\n\r\nGET /nope HTTP/1.0\r\n\r\n", 0));
  ct_string_transport_free(st);
  fclose(log);
  cr_expect(strstr(buf, "192.168.1.1 - - [") == buf, "%s", buf);
  cr_expect(strstr(buf, "] \"GET /hello?x=\\x221\\x22 HTTP/1.1\" 200 6\n") !=
                NULL,
            "%s", buf);
  cr_expect(strstr(buf, "\"GET /nope HTTP/1.0\" 404 ") != NULL, "%s", buf);
  free(buf);
}

Test(http_server, headers_api) {
  ct_http_headers h = {0};
  cr_expect_eq(ct_http_headers_add(&h, "A", "1"), 0);
  cr_expect_eq(ct_http_headers_add(&h, "a", "2"), 0);
  cr_expect_eq(ct_http_headers_add(&h, "B", "x\r\nEvil: 1"), CT_EINVAL);
  cr_expect_str_eq(ct_http_headers_get(&h, "A"), "1");
  cr_expect_eq(ct_http_headers_set(&h, "A", "3"), 0);
  cr_expect_eq(h.count, 1);
  cr_expect_str_eq(ct_http_headers_get(&h, "a"), "3");
  cr_expect_eq(ct_http_headers_remove(&h, "A"), 1);
  cr_expect_null(ct_http_headers_get(&h, "A"));
  ct_http_headers_clear(&h);
  char date[32];
  ct_http_format_date(784111777, date);
  cr_expect_str_eq(date, "Sun, 06 Nov 1994 08:49:37 GMT");
  int64_t t;
  cr_expect_eq(ct_http_parse_date(date, &t), 0);
  cr_expect_eq(t, 784111777);
  cr_expect_eq(ct_http_parse_date("Sunday, 06-Nov-94 08:49:37 GMT", &t),
               CT_EPARSE);
  char out[16];
  cr_expect_eq(ct_http_decode("a%2Fb+c", 7, out, 1), 5);
  cr_expect_str_eq(out, "a/b c");
  cr_expect_eq(ct_http_decode("%2", 2, out, 0), CT_EPARSE);
  cr_expect_str_eq(ct_http_status_text(431), "Request Header Fields Too Large");
}
