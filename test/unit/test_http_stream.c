/* Streamed request bodies (ct_http_site_route_stream) over the string
 * transport: a table of requests (content-length, chunked, no body,
 * 100-continue read or refused, discarded bodies, a consumer refusing
 * midway, bad chunked framing, bodies over max_body) fed whole, byte by
 * byte and in 7-byte pieces; a body many times the buffered limit streamed
 * with back-pressure (nothing delivered while paused, the server stops
 * reading); a handler that reads the body later; a client leaving
 * mid-body. */
#include "test_http_common.h"

/* One upload in progress (the handler's state; freed at its end). */
typedef struct upload {
  ct_http_request *req;
  ct_deferred *d;
  size_t got;
  uint32_t hash; /* FNV-1a of the body */
  int refuse;    /* data returns non-zero after the first piece */
  int ended, failed_code;
  size_t pause_every; /* pause after this many bytes (0: never) */
  size_t since_pause;
  int paused;
} upload;

/* What the tests look at; every upload is freed at teardown. */
static struct {
  upload *all[64];
  int n;
  upload *last;
  int ends, lost, pieces_while_paused, closed_reads;
} up;

static uint32_t fnv(uint32_t h, const char *d, size_t n) {
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)d[i]) * 16777619u;
  return h;
}

static void reply_text(upload *u, int status, const char *text) {
  ct_http_response *r = ct_http_response_new(status);
  ct_http_response_set_body(r, text, strlen(text));
  ct_deferred *d = u->d;
  u->d = NULL;
  cr_assert_eq(ct_deferred_callback(
                   d, ct_value_of(r, (void (*)(void *))ct_http_response_free)),
               0);
  ct_deferred_unref(d);
}

static int on_data(void *arg, const char *d, size_t len) {
  upload *u = arg;
  if (u->paused)
    up.pieces_while_paused++;
  if (u->refuse && u->got + len > 5) {
    reply_text(u, 413, "refused midway");
    return 1;
  }
  u->got += len;
  u->hash = fnv(u->hash, d, len);
  u->since_pause += len;
  if (u->pause_every && u->since_pause >= u->pause_every) {
    u->since_pause = 0;
    u->paused = 1;
    ct_http_request_pause_body(u->req);
  }
  return 0;
}

static void on_end(void *arg, const ct_failure *f) {
  upload *u = arg;
  up.ends++;
  u->ended = 1;
  if (f != NULL) {
    u->failed_code = f->code;
    if (f->code == CT_ECONNLOST)
      up.lost++;
    char msg[128];
    snprintf(msg, sizeof msg, "body failed: %s", ct_strerror(f->code));
    reply_text(u, 400, msg);
  } else {
    char msg[128];
    snprintf(msg, sizeof msg, "got %zu hash %08x", u->got, u->hash);
    reply_text(u, 200, msg);
  }
}

static const ct_http_body_consumer consumer = {on_data, on_end, NULL};

/* On the handler's Deferred, before the server's callback: a request
 * whose connection is gone cannot be read any more. */
static ct_step after_reply(ct_result r, void *arg) {
  upload *u = arg;
  if (r.failure != NULL && r.failure->code == CT_ECANCELLED) {
    ct_http_body_consumer c = consumer;
    c.arg = u;
    if (ct_http_request_read_body(u->req, &c) == CT_ECLOSED)
      up.closed_reads++;
  }
  return r.failure != NULL ? ct_raise(r.failure) : ct_pass(r.value);
}

/* /upload?mode=read|reject|later|refuse[&pause=N] */
static ct_http_reply h_upload(ct_http_request *req, void *arg) {
  (void)arg;
  const char *mode = ct_http_request_param(req, "mode");
  mode = mode ? mode : "read";
  cr_assert_eq(req->body_len, 0);
  if (strcmp(mode, "reject") == 0)
    return ct_http_reply_now(ct_http_response_error(403, "no uploads here"));
  upload *u = calloc(1, sizeof *u);
  u->req = req;
  u->hash = 2166136261u;
  u->refuse = strcmp(mode, "refuse") == 0;
  const char *pe = ct_http_request_param(req, "pause");
  u->pause_every = pe ? (size_t)atol(pe) : 0;
  u->d = ct_deferred_new(NULL, NULL);
  ct_deferred *d = ct_deferred_ref(u->d);
  ct_deferred_add_both(d, after_reply, u);
  cr_assert_lt(up.n, 64);
  up.all[up.n++] = u;
  up.last = u;
  if (strcmp(mode, "later") != 0) {
    ct_http_body_consumer c = consumer;
    c.arg = u;
    cr_assert_eq(ct_http_request_read_body(req, &c), 0);
    /* Once only. */
    cr_assert_eq(ct_http_request_read_body(req, &c), CT_EINVAL);
  }
  return ct_http_reply_later(d);
}

static ct_http_reply h_buffered(ct_http_request *req, void *arg) {
  (void)arg;
  ct_http_body_consumer c = consumer;
  /* Not a streamed route: refused. */
  cr_assert_eq(ct_http_request_read_body(req, &c), CT_EINVAL);
  ct_http_request_pause_body(req); /* no-op */
  return th_hello(req, NULL);
}

static void setup(void) {
  th_setup_reactor();
  memset(&up, 0, sizeof up);
  ct_http_limits l = {0};
  l.max_body = 1000; /* the buffered limit; streamed routes go beyond */
  ct_http_site_set_limits(th.site, &l);
  cr_assert_eq(ct_http_site_route_stream(th.site, "/upload", h_upload, NULL),
               0);
  cr_assert_eq(ct_http_site_route(th.site, "/hello", h_buffered, NULL), 0);
}

static void teardown(void) {
  th_teardown();
  for (int i = 0; i < up.n; i++) {
    ct_deferred_unref(up.all[i]->d);
    free(up.all[i]);
  }
}

TestSuite(http_stream, .init = setup, .fini = teardown);

/* ------------------------------------------------------------- table */

typedef struct stream_case {
  const char *name;
  const char *req;
  int status;
  int closes;
  int continues; /* "100 Continue" lines expected */
  int responses; /* final responses expected */
  const char *body_has;
} stream_case;

static const stream_case cases[] = {
    {"content-length",
     "POST /upload HTTP/1.1\r\nContent-Length: 11\r\n\r\n"
     "hello world",
     200, 0, 0, 1, "got 11 hash"},
    {"chunked",
     "POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
     "3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nTrailer: 1\r\n\r\n",
     200, 0, 0, 1, "got 5 hash"},
    {"no body", "GET /upload HTTP/1.1\r\n\r\n", 200, 0, 0, 1, "got 0 hash"},
    {"100-continue, read",
     "POST /upload HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n"
     "\r\nabc",
     200, 0, 1, 1, "got 3 hash"},
    {"100-continue, rejected: no 100, close",
     "POST /upload?mode=reject HTTP/1.1\r\nExpect: 100-continue\r\n"
     "Content-Length: 3\r\n\r\n",
     403, 1, 0, 1, "no uploads here"},
    {"rejected body is discarded, next request served",
     "POST /upload?mode=reject HTTP/1.1\r\nContent-Length: 5\r\n\r\nxxxxx"
     "GET /hello HTTP/1.1\r\n\r\n",
     403, 0, 0, 2, "hello\n"},
    {"rejected chunked body is discarded",
     "POST /upload?mode=reject HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
     "5\r\nxxxxx\r\n0\r\n\r\nGET /hello HTTP/1.1\r\n\r\n",
     403, 0, 0, 2, "hello\n"},
    {"consumer refuses midway",
     "POST /upload?mode=refuse HTTP/1.1\r\nContent-Length: 2000\r\n\r\n"
     "0123456789",
     413, 1, 0, 1, "refused midway"},
    {"bad chunk framing reaches the consumer",
     "POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
     "3\r\nabc\r\nzz\r\n",
     400, 1, 0, 1, "body failed"},
    {"pipelined after a streamed body",
     "POST /upload HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"
     "POST /upload HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
     200, 0, 0, 2, "got 3 hash"},
};

static void run_case(const stream_case *c, size_t chunk) {
  char *out =
      th_run_case(c->name, c->req, chunk, c->status, c->closes, c->body_has);
  cr_expect_eq(th_count(out, "100 Continue"), c->continues,
               "%s (chunk %zu): %s", c->name, chunk, out);
  cr_expect_eq(th_count(out, "HTTP/1.1 ") - th_count(out, "100 Continue"),
               c->responses, "%s (chunk %zu): %s", c->name, chunk, out);
  free(out);
}

Test(http_stream, table_whole_and_bytewise) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    run_case(&cases[i], 0);
    run_case(&cases[i], 1);
    run_case(&cases[i], 7);
  }
}

Test(http_stream, body_content_is_exact) {
  ct_string_transport *st = th_connect();
  char *out = th_exchange(st,
                          "POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked"
                          "\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                          3);
  char want[64];
  snprintf(want, sizeof want, "got 5 hash %08x", fnv(2166136261u, "abcde", 5));
  cr_expect(strstr(out, want) != NULL, "%s", out);
  free(out);
  ct_string_transport_free(st);
}

/* ------------------------------------------- big body, back-pressure */

static size_t queued_input(ct_string_transport *st) {
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  return s.queued_input;
}

static void stream_big(int chunked) {
  const size_t total = 32u * 1024 * 1024; /* 32768 x the buffered limit */
  const size_t piece = 64 * 1024;
  ct_string_transport *st = th_connect();
  char head[160];
  if (chunked)
    snprintf(head, sizeof head,
             "PUT /upload?pause=262144 HTTP/1.1\r\n"
             "Transfer-Encoding: chunked\r\n\r\n");
  else
    snprintf(head, sizeof head,
             "PUT /upload?pause=262144 HTTP/1.1\r\nContent-Length: %zu\r\n\r\n",
             total);
  cr_assert_eq(ct_string_transport_feed_str(st, head), 0);
  while (ct_string_transport_step(st) > 0)
    ;
  upload *u = up.last;
  cr_assert_not_null(u);
  char *buf = malloc(piece + 32);
  uint32_t want = 2166136261u;
  size_t sent = 0, wire = 0, frame = 0, got_at_pause = 0;
  int pauses = 0, checking = 0;
  while (sent < total) {
    for (size_t i = 0; i < piece; i++)
      buf[i] = (char)((sent + i) * 2654435761u >> 13);
    want = fnv(want, buf, piece);
    size_t n = piece;
    if (chunked) {
      char hdr[16];
      int hl = snprintf(hdr, sizeof hdr, "%zx\r\n", piece);
      memmove(buf + hl, buf, piece);
      memcpy(buf, hdr, (size_t)hl);
      memcpy(buf + hl + piece, "\r\n", 2);
      n = (size_t)hl + piece + 2;
      frame += n - piece;
    }
    cr_assert_eq(ct_string_transport_feed(st, buf, n), 0);
    sent += piece;
    wire += n;
    while (ct_string_transport_step(st) > 0)
      ;
    if (checking) {
      /* The consumer is behind: the server stopped reading, so what the
       * client sent since waits on the client's side, and nothing more
       * was delivered. */
      size_t q = queued_input(st);
      cr_assert_gt(q, 0, "reading not paused at %zu", sent);
      cr_assert_eq(u->got, got_at_pause);
      /* What the server read but did not deliver: at most one read. */
      cr_assert_leq(wire - q - u->got, piece + 32 + frame);
      checking = 0;
      u->paused = 0;
      ct_http_request_resume_body(u->req);
      while (ct_string_transport_step(st) > 0)
        ;
    }
    if (u->paused) {
      pauses++;
      checking = 1; /* feed one more piece, then look */
      got_at_pause = u->got;
    }
  }
  if (chunked)
    cr_assert_eq(ct_string_transport_feed_str(st, "0\r\n\r\n"), 0);
  while (ct_string_transport_step(st) > 0 || u->paused) {
    if (u->paused) {
      u->paused = 0;
      ct_http_request_resume_body(u->req);
    }
  }
  free(buf);
  cr_expect_eq(up.pieces_while_paused, 0);
  cr_expect_geq(pauses, (int)(total / 262144) - 1);
  size_t outlen;
  const char *out = ct_string_transport_value(st, &outlen);
  char msg[64];
  snprintf(msg, sizeof msg, "got %zu hash %08x", total, want);
  cr_expect_eq(th_status(out), 200, "%s", out);
  cr_expect(strstr(out, msg) != NULL, "want '%s' in %s", msg, out);
  cr_expect_eq(th_closed(st), 0);
  ct_string_transport_free(st);
}

Test(http_stream, big_content_length_body_with_backpressure, .timeout = 120) {
  stream_big(0);
}

Test(http_stream, big_chunked_body_with_backpressure, .timeout = 120) {
  stream_big(1);
}

/* ------------------------------------------------------ later, lost */

Test(http_stream, body_held_until_the_handler_reads_it) {
  ct_string_transport *st = th_connect();
  cr_assert_eq(
      ct_string_transport_feed_str(st, "POST /upload?mode=later HTTP/1.1\r\n"
                                       "Content-Length: 6\r\n\r\nabc"),
      0);
  while (ct_string_transport_step(st) > 0)
    ;
  cr_assert_eq(ct_string_transport_feed_str(st, "def"), 0);
  while (ct_string_transport_step(st) > 0)
    ;
  upload *u = up.last;
  cr_assert_not_null(u);
  cr_expect_eq(u->got, 0);
  /* Nothing read while the handler has not asked: the second piece waits
   * on the client's side. */
  cr_expect_gt(queued_input(st), 0);
  ct_http_body_consumer c = consumer;
  c.arg = u;
  cr_assert_eq(ct_http_request_read_body(u->req, &c), 0);
  while (ct_string_transport_step(st) > 0)
    ;
  cr_expect_eq(u->got, 6);
  size_t n;
  const char *out = ct_string_transport_value(st, &n);
  cr_expect(strstr(out, "got 6 hash") != NULL, "%s", out);
  ct_string_transport_free(st);
}

Test(http_stream, later_read_of_a_request_without_body_ends_at_once) {
  ct_string_transport *st = th_connect();
  char *out = th_exchange(st, "GET /upload?mode=later HTTP/1.1\r\n\r\n", 0);
  cr_expect_eq(out[0], 0);
  free(out);
  upload *u = up.last;
  ct_http_body_consumer c = consumer;
  c.arg = u;
  cr_assert_eq(ct_http_request_read_body(u->req, &c), 0);
  cr_expect_eq(up.ends, 1);
  out = th_exchange(st, "", 0);
  cr_expect(strstr(out, "got 0 hash") != NULL, "%s", out);
  free(out);
  ct_string_transport_free(st);
}

Test(http_stream, client_leaving_mid_body_fails_the_consumer) {
  ct_string_transport *st = th_connect();
  cr_assert_eq(ct_string_transport_feed_str(
                   st, "POST /upload HTTP/1.1\r\nContent-Length: 100\r\n\r\n"
                       "partial"),
               0);
  while (ct_string_transport_step(st) > 0)
    ;
  cr_expect_eq(up.last->got, 7);
  ct_string_transport_lose(st, ct_failure_new(CT_ECONNRESET, "reset"));
  while (ct_string_transport_step(st) > 0)
    ;
  cr_expect_eq(up.lost, 1);
  cr_expect_eq(up.ends, 1);
  ct_string_transport_free(st);
}

Test(http_stream, eof_mid_body_fails_the_consumer) {
  ct_string_transport *st = th_connect();
  cr_assert_eq(ct_string_transport_feed_str(
                   st, "POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked"
                       "\r\n\r\n4\r\nab"),
               0);
  while (ct_string_transport_step(st) > 0)
    ;
  ct_string_transport_feed_eof(st);
  while (ct_string_transport_step(st) > 0)
    ;
  cr_expect_eq(up.lost, 1);
  ct_string_transport_free(st);
}

Test(http_stream, read_body_after_the_connection_is_gone) {
  ct_string_transport *st = th_connect();
  cr_assert_eq(
      ct_string_transport_feed_str(st, "POST /upload?mode=later HTTP/1.1\r\n"
                                       "Content-Length: 6\r\n\r\n"),
      0);
  while (ct_string_transport_step(st) > 0)
    ;
  /* The handler's Deferred is cancelled with the connection; the request
   * stays valid until it has fired, and reading it then says it is
   * closed (after_reply). */
  ct_string_transport_lose(st, ct_failure_new(CT_ECONNRESET, "reset"));
  while (ct_string_transport_step(st) > 0)
    ;
  cr_expect_eq(up.closed_reads, 1);
  cr_expect_eq(up.ends, 0);
  ct_string_transport_free(st);
}

Test(http_stream, buffered_routes_refuse_read_body) {
  ct_string_transport *st = th_connect();
  char *out = th_exchange(st, "GET /hello HTTP/1.1\r\n\r\n", 0);
  cr_expect_eq(th_status(out), 200);
  free(out);
  cr_expect_eq(ct_http_request_read_body(NULL, &consumer), CT_EINVAL);
  ct_string_transport_free(st);
}
