/*
 * Shared fixture of the HTTP tests: a fake-clock reactor, a site with test
 * handlers, and string-transport connections to it (header-only).
 */
#ifndef CT_TEST_HTTP_COMMON_H
#define CT_TEST_HTTP_COMMON_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/http.h"
#include "ctwist/testing.h"

typedef struct th_env {
  ct_clock *clock;
  ct_reactor *reactor;
  ct_http_site *site;
  ct_deferred *pending[64]; /* Deferreds handed out by /later */
  int npending;
  int calls;
} th_env;

static th_env th;

/* Status line of the first response in `out`, or -1. */
static inline int th_status(const char *out) {
  int st = -1;
  if (out == NULL || sscanf(out, "HTTP/1.1 %d", &st) != 1)
    return -1;
  return st;
}

/* Count occurrences of `needle` in `hay`. */
static inline int th_count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

/* A string-transport connection to the site. */
static inline ct_string_transport *th_connect(void) {
  ct_string_transport *st = ct_string_transport_new(th.reactor);
  cr_assert_not_null(st);
  ct_address peer;
  ct_address_from_ip(&peer, "192.168.1.1", 54321);
  ct_protocol *p = ct_factory_build(ct_http_site_factory(th.site), &peer);
  cr_assert_not_null(p);
  cr_assert_eq(ct_string_transport_connect(st, p), 0);
  return st;
}

/* Feed `req` (len bytes; chunk bytes at a time, 0 = all at once), run what
 * the transport has pending, and return a copy of everything written. */
static inline char *th_exchange_n(ct_string_transport *st, const char *req,
                                  size_t len, size_t chunk) {
  size_t off = 0;
  while (off < len) {
    size_t n = chunk == 0 || chunk > len - off ? len - off : chunk;
    if (ct_string_transport_feed(st, req + off, n) != 0)
      break;
    off += n;
    while (ct_string_transport_step(st) > 0)
      ;
  }
  while (ct_string_transport_step(st) > 0)
    ;
  size_t outlen;
  const char *out = ct_string_transport_value(st, &outlen);
  char *copy = malloc(outlen + 1);
  memcpy(copy, out, outlen + 1);
  return copy;
}

static inline char *th_exchange(ct_string_transport *st, const char *req,
                                size_t chunk) {
  return th_exchange_n(st, req, strlen(req), chunk);
}

static inline int th_closed(ct_string_transport *st) {
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  return s.disconnecting;
}

/* Feed a table case's request (chunk bytes at a time) on a new connection
 * and check what every table checks: the first final status (interim 100s
 * skipped), whether the connection closes, and a substring of the output
 * (may be NULL).  Returns the output (free it). */
static inline char *th_run_case(const char *name, const char *req, size_t chunk,
                                int status, int closes, const char *has) {
  ct_string_transport *st = th_connect();
  char *out = th_exchange(st, req, chunk);
  const char *final = out;
  while (strncmp(final, "HTTP/1.1 100 ", 13) == 0)
    final = strstr(final, "\r\n\r\n") + 4;
  cr_expect_eq(th_status(final), status, "%s (chunk %zu): got %.200s", name,
               chunk, out);
  cr_expect_eq(th_closed(st), closes, "%s (chunk %zu): close", name, chunk);
  if (has != NULL)
    cr_expect(strstr(out, has) != NULL, "%s (chunk %zu): no '%s' in %s", name,
              chunk, has, out);
  ct_string_transport_free(st);
  return out;
}

static inline void th_setup_reactor(void) {
  memset(&th, 0, sizeof th);
  th.clock = ct_clock_new();
  th.reactor = ct_reactor_new_with_clock(th.clock);
  cr_assert_not_null(th.reactor);
  th.site = ct_http_site_new(th.reactor);
  cr_assert_not_null(th.site);
}

static inline void th_teardown(void) {
  for (int i = 0; i < th.npending; i++)
    ct_deferred_unref(th.pending[i]);
  ct_http_site_free(th.site);
  ct_reactor_free(th.reactor);
  ct_clock_free(th.clock);
}

/* ------------------------------------------------- shared handlers */

/* "hello\n", text/plain. */
static inline ct_http_reply th_hello(ct_http_request *req, void *arg) {
  (void)req;
  (void)arg;
  th.calls++;
  ct_http_response *r = ct_http_response_new(200);
  ct_http_headers_set(&r->headers, "Content-Type", "text/plain");
  ct_http_response_set_body(r, "hello\n", 6);
  return ct_http_reply_now(r);
}

/* Replies later: the test fires th.pending[i] (th_fire). */
static inline ct_http_reply th_later(ct_http_request *req, void *arg) {
  (void)req;
  (void)arg;
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  th.pending[th.npending++] = ct_deferred_ref(d);
  return ct_http_reply_later(d);
}

/* Fire th.pending[i] with a 200 response whose body is `body`. */
static inline void th_fire(int i, const char *body) {
  ct_http_response *r = ct_http_response_new(200);
  ct_http_response_set_body(r, body, strlen(body));
  cr_assert_eq(ct_deferred_callback(
                   th.pending[i],
                   ct_value_of(r, (void (*)(void *))ct_http_response_free)),
               0);
}

/* A route table, ending with a NULL prefix. */
typedef struct th_route {
  const char *prefix;
  ct_http_handler_cb fn;
} th_route;

static inline void th_add_routes(const th_route *routes) {
  for (const th_route *r = routes; r->prefix != NULL; r++)
    cr_assert_eq(ct_http_site_route(th.site, r->prefix, r->fn, NULL), 0);
}

#endif /* CT_TEST_HTTP_COMMON_H */
