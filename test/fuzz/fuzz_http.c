/*
 * libFuzzer target for the HTTP server protocol (libhttp-parser plus
 * ctwist's glue: limits, pipelining, 100-continue, chunked bodies, Range,
 * conditional GET, streamed request bodies on /up).  The input is a byte stream
 * from a client, fed to a server on a string transport twice: whole, and in
 * chunks whose sizes come from the first byte.  Both runs must write the same
 * bytes (Date headers aside) up to the first response that closes the
 * connection, both must have one or neither, and both must end the same way;
 * nothing may crash or leak.  (Which error ends a bad request may depend on the
 * chunking: libhttp-parser reports a partial header value at a chunk's
 * end, so a length limit can fire before the bad byte that the whole
 * input stops at; both are correct answers.)  Small
 * limits make every limit reachable; the fake clock is advanced at the end
 * so that the header deadline fires too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/http.h"
#include "ctwist/log.h"
#include "ctwist/testing.h"

static ct_http_reply echo(ct_http_request *req, void *arg) {
  (void)arg;
  ct_http_response *r = ct_http_response_new(200);
  if (r == NULL)
    abort();
  char head[256];
  int n = snprintf(head, sizeof head, "%s %s %zu|", req->method, req->subpath,
                   req->body_len);
  char *body = malloc((size_t)n + req->body_len + 1);
  memcpy(body, head, (size_t)n);
  memcpy(body + n, req->body, req->body_len + 1);
  ct_http_response_take_body(r, body, (size_t)n + req->body_len);
  ct_http_headers_add(&r->headers, "ETag", "\"e\"");
  ct_http_headers_add(&r->headers, "Last-Modified",
                      "Sun, 06 Nov 1994 08:49:37 GMT");
  return ct_http_reply_now(r);
}

static ct_http_reply fail(ct_http_request *req, void *arg) {
  (void)req;
  (void)arg;
  return ct_http_reply_fail(ct_failure_new(CT_EUSER, "fuzz failure"));
}

/* /up streams its body: the consumer counts and hashes it, and the answer
 * (from `end`) names both, so whole and chunked input answer the same. */
typedef struct up_state {
  ct_deferred *d;
  size_t n;
  uint32_t h;
} up_state;

static int up_data(void *arg, const char *d, size_t len) {
  up_state *u = arg;
  for (size_t i = 0; i < len; i++)
    u->h = (u->h ^ (unsigned char)d[i]) * 16777619u;
  u->n += len;
  return 0;
}

static void up_end(void *arg, const ct_failure *f) {
  up_state *u = arg;
  ct_http_response *r = ct_http_response_new(f == NULL ? 200 : 400);
  if (r == NULL)
    abort();
  char text[64];
  int n = snprintf(text, sizeof text, "up %zu %08x", u->n, u->h);
  ct_http_response_set_body(r, text, (size_t)n);
  ct_deferred_callback(u->d,
                       ct_value_of(r, (void (*)(void *))ct_http_response_free));
  ct_deferred_unref(u->d);
  free(u);
}

static ct_http_reply up(ct_http_request *req, void *arg) {
  (void)arg;
  up_state *u = calloc(1, sizeof *u);
  if (u == NULL)
    abort();
  u->h = 2166136261u;
  u->d = ct_deferred_new(NULL, NULL);
  ct_deferred *d = ct_deferred_ref(u->d);
  ct_http_body_consumer c = {up_data, up_end, u};
  if (ct_http_request_read_body(req, &c) != 0)
    abort();
  return ct_http_reply_later(d);
}

/* Drop "Date: ...\r\n" lines, which depend on the wall clock. */
static size_t strip_dates(char *s, size_t n) {
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    if (n - i >= 6 && memcmp(s + i, "Date: ", 6) == 0 &&
        (i == 0 || s[i - 1] == '\n')) {
      while (i < n && s[i] != '\n')
        i++;
      i++;
      continue;
    }
    s[o++] = s[i++];
  }
  return o;
}

/* The length of the output before the first response carrying
 * "Connection: close", or `n` if none does. */
static size_t before_close(const char *s, size_t n) {
  size_t start = 0;
  for (size_t i = 0; i + 4 <= n; i++) {
    if (n - i >= 9 && memcmp(s + i, "HTTP/1.1 ", 9) == 0)
      start = i;
    if (n - i >= 19 && memcmp(s + i, "Connection: close\r\n", 19) == 0)
      return start;
  }
  return n;
}

static char *run(const uint8_t *data, size_t size, size_t chunk, size_t *len,
                 int *closed) {
  ct_clock *clock = ct_clock_new();
  ct_reactor *r = ct_reactor_new_with_clock(clock);
  ct_http_site *site = ct_http_site_new(r);
  ct_http_limits l = {0};
  l.max_header_line = 64;
  l.max_header_total = 256;
  l.max_body = 128;
  l.max_pipeline = 2;
  ct_http_site_set_limits(site, &l);
  ct_http_site_route(site, "/", echo, NULL);
  ct_http_site_route(site, "/fail", fail, NULL);
  ct_http_site_route_stream(site, "/up", up, NULL);
  ct_string_transport *st = ct_string_transport_new(r);
  ct_protocol *p = ct_factory_build(ct_http_site_factory(site), NULL);
  if (p == NULL || ct_string_transport_connect(st, p) != 0)
    abort();
  for (size_t off = 0; off < size;) {
    size_t n = chunk == 0 || chunk > size - off ? size - off : chunk;
    if (ct_string_transport_feed(st, data + off, n) != 0)
      break;
    off += n;
    while (ct_string_transport_step(st) > 0)
      ;
  }
  while (ct_string_transport_step(st) > 0)
    ;
  ct_clock_advance(clock, 100);
  while (ct_string_transport_step(st) > 0)
    ;
  ct_string_transport_stats stats;
  ct_string_transport_stats_get(st, &stats);
  *closed = stats.disconnecting;
  const char *v = ct_string_transport_value(st, len);
  char *copy = malloc(*len + 1);
  memcpy(copy, v, *len);
  *len = strip_dates(copy, *len);
  ct_string_transport_free(st);
  ct_http_site_free(site);
  ct_reactor_free(r);
  ct_clock_free(clock);
  return copy;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int quiet;
  if (!quiet) {
    ct_log_set_default_level(CT_LOG_CRITICAL); /* handler failures log */
    quiet = 1;
  }
  if (size < 1)
    return 0;
  size_t chunk = 1 + data[0] % 13;
  data++;
  size--;
  size_t la, lb;
  int ca, cb;
  char *a = run(data, size, 0, &la, &ca);
  char *b = run(data, size, chunk, &lb, &cb);
  size_t pa = before_close(a, la), pb = before_close(b, lb);
  if (pa != pb || memcmp(a, b, pa) != 0 || (pa == la) != (pb == lb) || ca != cb)
    abort();
  free(a);
  free(b);
  return 0;
}
