/*
 * Helpers shared by the transport tests (header-only, static functions):
 * a loop driver, an echo server protocol and a recording client protocol.
 */
#ifndef CT_TEST_TRANSPORT_UTIL_H
#define CT_TEST_TRANSPORT_UTIL_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctwist/deferred.h"
#include "ctwist/protocol.h"
#include "ctwist/reactor.h"
#include "ctwist/testing.h"
#include "ctwist/transport.h"
#include "tu_wait.h"

static inline double tu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef int (*tu_cond_fn)(void *arg);

/* Turn the loop until cond(arg) holds; gives up after `secs` of real time
 * (a safety net for hangs, not a timing assertion).  Returns 1 if met. */
static inline int tu_spin(ct_reactor *r, tu_cond_fn cond, void *arg,
                          double secs) {
  double end = tu_now() + secs;
  while (!cond(arg)) {
    if (tu_now() > end)
      return 0;
    /* Wait for the loop's next event (bounded, for conditions on state
     * outside the reactor such as a raw socket of the test). */
    ct_reactor_iterate_wait(r, 0.001);
  }
  return 1;
}

/* Turn the loop `n` times, without waiting: for work the test's own calls
 * queued for later turns (closes, call_soon), never for I/O from elsewhere
 * (wait for that with tu_spin() and a condition). */
static inline void tu_turns(ct_reactor *r, int n) {
  for (int i = 0; i < n; i++)
    ct_reactor_iterate(r);
}

/* The kernel's view of a TCP transport's socket (/proc/net/tcp): 1 and
 * *out filled, or 0 (not TCP over IPv4, or gone). */
static inline int tu_tcp_of(ct_transport *t, tu_tcp_sock *out) {
  ct_address host, peer;
  if (ct_transport_get_host(t, &host) != 0 ||
      ct_transport_get_peer(t, &peer) != 0 || host.family != CT_ADDRESS_IPV4)
    return 0;
  return tu_tcp_find(ct_address_port(&host), ct_address_port(&peer), out);
}

/* The peer of TCP transport `t` has read every byte `t` sent: nothing
 * waits in t's send queue nor in the peer's receive queue. */
static inline int tu_tcp_sent_all_read(void *t) {
  ct_address host, peer;
  tu_tcp_sock mine, theirs;
  if (ct_transport_buffered(t) > 0 || ct_transport_get_host(t, &host) != 0 ||
      ct_transport_get_peer(t, &peer) != 0)
    return 0;
  int hp = ct_address_port(&host), pp = ct_address_port(&peer);
  return tu_tcp_find(hp, pp, &mine) && tu_tcp_find(pp, hp, &theirs) &&
         mine.tx_queue == 0 && theirs.rx_queue == 0;
}

/* TCP transport `t` has bytes waiting unread in its socket. */
static inline int tu_tcp_has_unread(void *t) {
  tu_tcp_sock me;
  return tu_tcp_of(t, &me) && me.rx_queue > 0;
}

static inline uint64_t tu_fnv(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/* A malloc'd test pattern of n bytes: byte i is (char)(i * mul + i / div). */
static inline char *tu_pattern(size_t n, size_t mul, size_t div) {
  char *p = malloc(n > 0 ? n : 1);
  cr_assert(p != NULL);
  for (size_t i = 0; i < n; i++)
    p[i] = (char)(i * mul + i / div);
  return p;
}

/* Write data[0, total) in pieces of 1, then chunk * mul + 1 bytes, back to
 * 1 once above max; asserts that every write succeeds. */
static inline void tu_write_chunked(ct_transport *t, const char *data,
                                    size_t total, size_t mul, size_t max) {
  size_t off = 0, chunk = 1;
  while (off < total) {
    size_t n = chunk < total - off ? chunk : total - off;
    cr_assert_eq(ct_transport_write(t, data + off, n), 0, "write at %zu", off);
    off += n;
    chunk = chunk * mul + 1;
    if (chunk > max)
      chunk = 1;
  }
}

static inline int tu_count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL)
    return -1;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n - 1; /* the directory's own descriptor */
}

/* --------------------------------------------------------- echo server */

typedef struct tu_server_stats {
  int made, lost, eof;
  int last_lost_code;
  ct_transport *last; /* last connected transport (ref held) */
} tu_server_stats;

static inline void tu_echo_made(ct_protocol *p, ct_transport *t) {
  tu_server_stats *st = p->factory->user;
  if (st != NULL) {
    st->made++;
    if (st->last != NULL)
      ct_transport_unref(st->last);
    st->last = ct_transport_ref(t);
  }
}

static inline void tu_echo_data(ct_protocol *p, const char *data, size_t len) {
  ct_transport_write(p->transport, data, len);
}

static inline void tu_echo_lost(ct_protocol *p, const ct_failure *reason) {
  tu_server_stats *st = p->factory->user;
  if (st != NULL) {
    st->lost++;
    st->last_lost_code = reason->code;
  }
}

static const ct_protocol_ops tu_echo_ops = {
    .name = "test-echo",
    .flags = CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER,
    .connection_made = tu_echo_made,
    .data_received = tu_echo_data,
    .connection_lost = tu_echo_lost,
};

static inline void tu_server_stats_release(tu_server_stats *st) {
  if (st->last != NULL)
    ct_transport_unref(st->last);
  st->last = NULL;
}

/* ------------------------------------------------------ recording client */

typedef struct tu_client {
  ct_protocol base;
  char *buf;
  size_t len, cap;
  int made, lost, eof;
  int lost_code;
  int keep_open_on_eof;
  int lost_inside_call; /* connection_lost ran during one of our calls */
  int in_call;
  struct tu_client **self_slot; /* cleared when freed */
} tu_client;

typedef struct tu_client_stats {
  int failed, lost, made;
  int failed_code;
  tu_client *last;
  char failed_msg[512];
  /* Snapshot of the last client at its connection_lost. */
  size_t final_len;
  uint64_t final_hash;
  int final_eof, final_code;
  char final_head[64]; /* first bytes received */
} tu_client_stats;

static inline void tu_client_made(ct_protocol *p, ct_transport *t) {
  (void)t;
  tu_client *c = (tu_client *)p;
  c->made++;
  tu_client_stats *st = p->factory->user;
  if (st != NULL) {
    st->made++;
    st->last = c;
    c->self_slot = &st->last;
  }
}

static inline void tu_client_data(ct_protocol *p, const char *data,
                                  size_t len) {
  tu_client *c = (tu_client *)p;
  if (c->len + len > c->cap) {
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + len)
      cap *= 2;
    c->buf = realloc(c->buf, cap);
    cr_assert(c->buf != NULL);
    c->cap = cap;
  }
  memcpy(c->buf + c->len, data, len);
  c->len += len;
}

static inline int tu_client_eof(ct_protocol *p) {
  tu_client *c = (tu_client *)p;
  c->eof++;
  return c->keep_open_on_eof;
}

static inline void tu_client_lost(ct_protocol *p, const ct_failure *reason) {
  tu_client *c = (tu_client *)p;
  c->lost++;
  c->lost_code = reason->code;
  if (c->in_call)
    c->lost_inside_call = 1;
  tu_client_stats *st = p->factory != NULL ? p->factory->user : NULL;
  if (st != NULL) {
    st->final_len = c->len;
    st->final_hash = tu_fnv(c->buf, c->len);
    st->final_eof = c->eof;
    st->final_code = reason->code;
    memset(st->final_head, 0, sizeof st->final_head);
    if (c->len > 0)
      memcpy(st->final_head, c->buf,
             c->len < sizeof st->final_head ? c->len : sizeof st->final_head);
  }
}

static inline void tu_client_free(ct_protocol *p) {
  tu_client *c = (tu_client *)p;
  if (c->self_slot != NULL && *c->self_slot == c)
    *c->self_slot = NULL;
  free(c->buf);
  free(c);
}

static const ct_protocol_ops tu_client_ops = {
    .name = "test-client",
    .connection_made = tu_client_made,
    .data_received = tu_client_data,
    .eof_received = tu_client_eof,
    .connection_lost = tu_client_lost,
    .free = tu_client_free,
};

static inline void tu_cf_failed(ct_client_factory *cf,
                                const ct_failure *reason) {
  tu_client_stats *st = cf->base.user;
  st->failed++;
  st->failed_code = reason->code;
  ct_failure_format(reason, st->failed_msg, sizeof st->failed_msg);
}

static inline void tu_cf_lost(ct_client_factory *cf, const ct_failure *reason) {
  (void)reason;
  tu_client_stats *st = cf->base.user;
  st->lost++;
}

static inline void tu_client_factory_init(ct_client_factory *cf,
                                          tu_client_stats *st) {
  memset(cf, 0, sizeof *cf);
  memset(st, 0, sizeof *st);
  ct_factory_init(&cf->base, NULL, &tu_client_ops, sizeof(tu_client), st);
  cf->connection_failed = tu_cf_failed;
  cf->connection_lost = tu_cf_lost;
}

/* A memory pump (options o, may be NULL) between the server factory sf
 * and a recording client factory cf (stats in st), initialised here;
 * asserts the pump was made. */
static inline ct_pump *tu_pump_client(ct_reactor *r, ct_factory *sf,
                                      ct_client_factory *cf,
                                      tu_client_stats *st,
                                      const ct_pump_options *o) {
  tu_client_factory_init(cf, st);
  ct_pump *p = ct_pump_connect_factories(r, sf, &cf->base, o);
  cr_assert(p != NULL, "pump not connected");
  return p;
}

/* Result holder for a connect Deferred. */
typedef struct tu_conn_result {
  int done;
  ct_protocol *protocol;
  ct_failure *failure;
} tu_conn_result;

static inline ct_step tu_conn_ok(ct_value v, void *arg) {
  tu_conn_result *res = arg;
  res->done = 1;
  res->protocol = v.ptr;
  return ct_pass(CT_NONE);
}

static inline ct_step tu_conn_err(ct_failure *f, void *arg) {
  tu_conn_result *res = arg;
  res->done = 1;
  res->failure = f;
  return ct_pass(CT_NONE);
}

/* Bytes the last client has received, alive or already gone. */
static inline size_t tu_client_len(const tu_client_stats *st) {
  return st->last != NULL ? st->last->len : st->final_len;
}

static inline const char *tu_client_head(const tu_client_stats *st) {
  return st->last != NULL ? st->last->buf : st->final_head;
}

static inline int tu_conn_done(void *arg) {
  return ((tu_conn_result *)arg)->done;
}

/* Start connecting, recording the outcome in `res`; returns the Deferred
 * (the caller's reference). */
static inline ct_deferred *tu_connect_begin(ct_reactor *r, const char *ep,
                                            ct_client_factory *cf,
                                            tu_conn_result *res) {
  memset(res, 0, sizeof *res);
  ct_deferred *d = ct_connect(r, ep, cf);
  cr_assert(d != NULL);
  ct_deferred_add_callbacks(d, tu_conn_ok, tu_conn_err, res);
  return d;
}

/* Connect and wait for the outcome. */
static inline void tu_connect(ct_reactor *r, const char *ep,
                              ct_client_factory *cf, tu_conn_result *res) {
  ct_deferred_unref(tu_connect_begin(r, ep, cf, res));
  cr_assert(tu_spin(r, tu_conn_done, res, 10), "connect %s timed out", ep);
}

/* Listen and return the port; asserts success. */
static inline ct_listening_port *tu_listen(ct_reactor *r, const char *ep,
                                           ct_factory *f) {
  ct_failure *err = NULL;
  ct_listening_port *port = ct_listen(r, ep, f, &err);
  if (port == NULL) {
    char msg[512];
    ct_failure_format(err, msg, sizeof msg);
    ct_failure_free(err);
    cr_assert_fail("listen %s: %s", ep, msg);
  }
  return port;
}

/* "tcp:host=127.0.0.1:port=N" for a listening port. */
static inline void tu_client_endpoint(ct_listening_port *port, char *buf,
                                      size_t len) {
  ct_address a;
  ct_listening_port_address(port, &a);
  if (a.family == CT_ADDRESS_IPV4)
    snprintf(buf, len, "tcp:host=127.0.0.1:port=%d", ct_address_port(&a));
  else if (a.family == CT_ADDRESS_IPV6)
    snprintf(buf, len, "tcp6:host=\\:\\:1:port=%d", ct_address_port(&a));
  else {
    char s[CT_ADDRESS_STRLEN];
    ct_address_format(&a, s, sizeof s);
    int n = snprintf(buf, len, "unix:path=%s", s + 5);
    cr_assert(n > 0 && (size_t)n < len, "endpoint buffer too small");
  }
}

/* tu_listen, then write the clients' endpoint for the port into ep. */
static inline ct_listening_port *tu_listen_ep(ct_reactor *r,
                                              const char *server_ep,
                                              ct_factory *f, char *ep,
                                              size_t len) {
  ct_listening_port *port = tu_listen(r, server_ep, f);
  tu_client_endpoint(port, ep, len);
  return port;
}

/* Initialise a recording client factory, connect it to ep and assert the
 * connection succeeded; returns the client's transport (not referenced). */
static inline ct_transport *tu_connect_ok(ct_reactor *r, const char *ep,
                                          ct_client_factory *cf,
                                          tu_client_stats *st,
                                          tu_conn_result *res) {
  tu_client_factory_init(cf, st);
  tu_connect(r, ep, cf, res);
  cr_assert(res->failure == NULL, "connect %s failed", ep);
  return res->protocol != NULL ? res->protocol->transport : NULL;
}

static inline void tu_stop_port(ct_listening_port *port) {
  ct_deferred *d = ct_listening_port_stop(port);
  cr_assert(d != NULL);
  cr_assert(ct_deferred_called(d));
  ct_deferred_unref(d);
}

/* ------------------------------------------------------------ fixtures */

/* The usual per-file fixture: a static reactor `R`, made fresh by setup()
 * and freed by teardown(), for TestSuite(..., .init = setup,
 * .fini = teardown). */
#define TU_REACTOR_FIXTURE                                                     \
  static ct_reactor *R;                                                        \
  static void setup(void) {                                                    \
    R = ct_reactor_new();                                                      \
    cr_assert(R != NULL);                                                      \
  }                                                                            \
  static void teardown(void) {                                                 \
    ct_reactor_free(R);                                                        \
  }

/* The same on a fake clock: static `C` and `R`; teardown first runs the
 * statement BEFORE_FREE (e.g. an assertion on what the test left behind,
 * or (void)0). */
#define TU_CLOCK_REACTOR_FIXTURE(BEFORE_FREE)                                  \
  static ct_clock *C;                                                          \
  static ct_reactor *R;                                                        \
  static void setup(void) {                                                    \
    C = ct_clock_new();                                                        \
    R = ct_reactor_new_with_clock(C);                                          \
    cr_assert(R != NULL);                                                      \
  }                                                                            \
  static void teardown(void) {                                                 \
    BEFORE_FREE;                                                               \
    ct_reactor_free(R);                                                        \
    ct_clock_free(C);                                                          \
  }

/* -------------------------------------------------- tu_spin conditions */

/* Wait for `n` bytes at a client (tu_got_len: at the live last client;
 * tu_got_len_any: alive or already gone). */
typedef struct tu_want_len {
  tu_client_stats *st;
  size_t n;
} tu_want_len;

static inline int tu_got_len(void *arg) {
  tu_want_len *w = arg;
  return w->st->last != NULL && w->st->last->len >= w->n;
}

static inline int tu_got_len_any(void *arg) {
  tu_want_len *w = arg;
  return tu_client_len(w->st) >= w->n;
}

/* The last client (tu_client_stats *) has been freed. */
static inline int tu_client_gone(void *arg) {
  return ((tu_client_stats *)arg)->last == NULL;
}

/* Every connection the echo server (tu_server_stats *) made is lost. */
static inline int tu_server_lost(void *arg) {
  tu_server_stats *st = arg;
  return st->lost > 0 && st->lost == st->made;
}

#endif
