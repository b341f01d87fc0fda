/*
 * connect.c: outgoing TCP and Unix stream connections (Twisted's
 * connectTCP/connectUNIX through endpoint strings, and its
 * HostnameEndpoint), returning a Deferred.
 *
 * A host name is looked up with the reactor's asynchronous resolver
 * (transports/resolve.c); nothing here blocks.  When the name has several
 * addresses they are tried in order, staggered as in happy eyeballs (RFC
 * 8305 section 5): the next attempt starts 250 ms after the previous one
 * unless that one has connected, and at once when it fails.  The first to
 * connect wins and the others are closed.  One deadline (the endpoint's
 * timeout) covers the lookup and every attempt.
 *
 * Every outcome is delivered from the event loop, never from inside
 * ct_connect(): even a Unix connect refused synchronously is reported on a
 * later turn, so callers can add callbacks first (libuv's rule).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "ctwist/endpoint.h"
#include "ctwist/log.h"
#include "reactor/internal.h"
#include "transports/resolve.h"
#include "transports/stream.h"

/* RFC 8305's recommended "Connection Attempt Delay". */
#define CT__ATTEMPT_DELAY_NS (250 * INT64_C(1000000))

enum { C_CONNECTING, C_FAIL_SCHEDULED, C_DONE };

typedef struct connector connector;

/* One connection attempt to one address. */
typedef struct attempt {
  connector *c;
  struct event ev;
  int ev_added;
  int fd;
} attempt;

struct connector {
  ct_reactor *reactor;
  ct_client_factory *cf;
  ct_deferred *d; /* the producer's reference */
  int is_unix;
  unsigned stream_flags; /* CT__STREAM_* */
  int state;
  int starting; /* inside ct_connect(): failures go through fail_later */
  double timeout;
  ct_delayed_call *timer;   /* the overall deadline */
  ct_delayed_call *stagger; /* starts the next attempt */
  ct__lookup *lookup;       /* the host-name lookup in flight */
  ct_failure *pending;      /* failure found before the loop ran */
  ct_failure *last_error;   /* of the latest failed attempt */
  ct_address_list *addrs;   /* the addresses to try, in order */
  attempt *att;             /* one per address */
  size_t next;              /* the next address to try */
  size_t live;              /* attempts in progress */
  struct sockaddr_storage bind_ss;
  socklen_t bind_len;
  ct_address addr;                    /* the peer that answered */
  char desc[CT_ADDRESS_STRLEN + 300]; /* "host port 80", "unix:/x" */
};

static const char *domain_of(const connector *c) {
  return c->is_unix ? "unix" : "tcp";
}

static void attempt_close(attempt *a) {
  if (a->ev_added) {
    event_del(&a->ev);
    a->ev_added = 0;
  }
  if (a->fd >= 0) {
    close(a->fd);
    a->fd = -1;
  }
}

static void connector_cleanup(connector *c) {
  if (c->timer != NULL) {
    ct_delayed_call_cancel(c->timer);
    c->timer = NULL;
  }
  if (c->stagger != NULL) {
    ct_delayed_call_cancel(c->stagger);
    c->stagger = NULL;
  }
  if (c->lookup != NULL) {
    ct__resolve_cancel(c->lookup);
    c->lookup = NULL;
  }
  for (size_t i = 0; c->att != NULL && i < c->addrs->n; i++)
    attempt_close(&c->att[i]);
  c->live = 0;
}

static void connector_free(connector *c) {
  ct_failure_free(c->last_error);
  free(c->att);
  free(c->addrs);
  free(c);
}

/* Report `f` (taken): connection_failed, then errback.  Frees c unless a
 * scheduled call still points at it. */
static void connector_fail(connector *c, ct_failure *f) {
  connector_cleanup(c);
  int was_scheduled = c->state == C_FAIL_SCHEDULED;
  c->state = C_DONE;
  if (c->cf->connection_failed != NULL)
    c->cf->connection_failed(c->cf, f);
  ct_factory_do_stop(&c->cf->base);
  ct_deferred *d = c->d;
  c->d = NULL;
  ct_deferred_errback(d, f);
  ct_deferred_unref(d);
  if (!was_scheduled)
    connector_free(c);
}

static void scheduled_fail_cb(void *arg) {
  connector *c = arg;
  if (c->state == C_DONE) { /* cancelled meanwhile */
    connector_free(c);
    return;
  }
  ct_failure *f = c->pending;
  c->pending = NULL;
  c->state = C_CONNECTING; /* so that connector_fail frees it */
  connector_fail(c, f);
}

static void fail_later(connector *c, ct_failure *f) {
  connector_cleanup(c);
  c->pending = f;
  c->state = C_FAIL_SCHEDULED;
  if (ct__reactor_call_soon(c->reactor, scheduled_fail_cb, c) != 0) {
    ct_log(CT_LOG_ERROR, "tcp", "out of memory scheduling a connect failure");
  }
}

/* Fail now from the loop, or on a later turn from inside ct_connect(). */
static void connector_fail_any(connector *c, ct_failure *f) {
  if (c->starting)
    fail_later(c, f);
  else
    connector_fail(c, f);
}

static ct_failure *attempt_failure(connector *c, size_t i, int err) {
  char a[CT_ADDRESS_STRLEN] = "";
  if (!c->is_unix)
    ct_address_format(&c->addrs->addrs[i], a, sizeof a);
  return ct_failure_new_at(__FILE__, __LINE__, domain_of(c), -err, NULL,
                           "connect to %s%s%s%s failed: %s (errno %d)", c->desc,
                           c->is_unix ? "" : " (", a, c->is_unix ? "" : ")",
                           strerror(err), err);
}

/* Every address failed: report the last error (naming how many were
 * tried when there were several). */
static void fail_exhausted(connector *c) {
  ct_failure *last = c->last_error;
  c->last_error = NULL;
  if (c->addrs->n > 1)
    last = ct_failure_wrap(domain_of(c), last->code, last,
                           "connect to %s failed: all %zu addresses failed",
                           c->desc, c->addrs->n);
  connector_fail_any(c, last);
}

static void attempt_cb(evutil_socket_t fd, short what, void *arg);
static void start_next(connector *c);

static void stagger_cb(void *arg) {
  connector *c = arg;
  c->stagger = NULL;
  start_next(c);
}

/* Start attempts until one is in progress (then arm the stagger timer for
 * the one after) or the addresses run out. */
static void start_next(connector *c) {
  while (c->next < c->addrs->n) {
    size_t i = c->next++;
    attempt *a = &c->att[i];
    const ct_address *to = &c->addrs->addrs[i];
    a->fd = socket(to->u.sa.sa_family,
                   SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = a->fd < 0 ? -1 : 0;
    if (rc == 0 && c->bind_len > 0 &&
        c->bind_ss.ss_family == to->u.sa.sa_family)
      rc = bind(a->fd, (struct sockaddr *)&c->bind_ss, c->bind_len);
    if (rc == 0) {
      do {
        rc = connect(a->fd, &to->u.sa, to->len);
      } while (rc != 0 && errno == EINTR);
    }
    if (rc != 0 && errno != EINPROGRESS) {
      /* Unix sockets refuse at once; a full Unix backlog says EAGAIN. */
      int err = errno == EAGAIN && c->is_unix ? ECONNREFUSED : errno;
      attempt_close(a);
      ct_failure_free(c->last_error);
      c->last_error = attempt_failure(c, i, err);
      continue;
    }
    /* Connected or in progress: writability tells (a connected socket is
     * writable at once), on the loop, like every other outcome. */
    event_assign(&a->ev, ct__reactor_base(c->reactor), a->fd, EV_WRITE,
                 attempt_cb, a);
    event_add(&a->ev, NULL);
    a->ev_added = 1;
    c->live++;
    if (c->next < c->addrs->n)
      c->stagger =
          ct__call_later_ns(c->reactor, CT__ATTEMPT_DELAY_NS, stagger_cb, c);
    return;
  }
  if (c->live == 0)
    fail_exhausted(c);
}

static void timeout_cb(void *arg) {
  connector *c = arg;
  c->timer = NULL;
  char a[CT_ADDRESS_STRLEN + 4] = "";
  if (!c->is_unix && c->addrs != NULL && c->addrs->n == 1) {
    a[0] = ' ';
    a[1] = '(';
    size_t n = ct_address_format(&c->addrs->addrs[0], a + 2, sizeof a - 3);
    if (n + 3 < sizeof a)
      strcat(a, ")");
  }
  connector_fail(
      c, ct_failure_new_at(__FILE__, __LINE__, domain_of(c), CT_ETIMEDOUT, NULL,
                           "connect to %s%s failed: timed out after %g "
                           "seconds%s (errno %d)",
                           c->desc, a, c->timeout,
                           c->lookup != NULL ? " looking up the host name" : "",
                           ETIMEDOUT));
}

static void connected(connector *c, attempt *won) {
  size_t i = (size_t)(won - c->att);
  int fd = won->fd;
  won->fd = -1;
  c->addr = c->addrs->addrs[i];
  connector_cleanup(c); /* closes the losers and the timers */
  ct_protocol *p = ct_factory_build(&c->cf->base, &c->addr);
  if (p == NULL) {
    close(fd);
    connector_fail(c, ct_failure_new_at(__FILE__, __LINE__, domain_of(c),
                                        CT_ECONNABORTED, NULL,
                                        "connect to %s: the factory refused "
                                        "to build a protocol",
                                        c->desc));
    return;
  }
  ct_transport *t = ct__stream_new(c->reactor, fd, c->is_unix, c->stream_flags);
  if (t == NULL) {
    close(fd);
    ct__protocol_discard(p);
    connector_fail(
        c, ct_failure_new(CT_ENOMEM, "connect to %s: out of memory", c->desc));
    return;
  }
  c->state = C_DONE;
  t->client_factory = c->cf;
  /* Keep the protocol alive over connection_made: it may close at once,
   * but connection_lost only runs on a later turn. */
  ct__stream_start(t, p);
  ct_deferred *d = c->d;
  c->d = NULL;
  connector_free(c);
  ct_deferred_callback(d, ct_value_of(p, NULL));
  ct_deferred_unref(d);
}

static void attempt_cb(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  attempt *a = arg;
  connector *c = a->c;
  a->ev_added = 0; /* one-shot */
  int soerr = 0;
  socklen_t sl = sizeof soerr;
  if (getsockopt((int)fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
    soerr = errno;
  if (soerr == 0) {
    connected(c, a);
    return;
  }
  attempt_close(a);
  c->live--;
  ct_failure_free(c->last_error);
  c->last_error = attempt_failure(c, (size_t)(a - c->att), soerr);
  /* A failed attempt hands over to the next address at once. */
  if (c->stagger != NULL) {
    ct_delayed_call_cancel(c->stagger);
    c->stagger = NULL;
  }
  if (c->next < c->addrs->n)
    start_next(c);
  else if (c->live == 0)
    fail_exhausted(c);
}

/* Take `addrs` and start connecting. */
static void begin(connector *c, ct_address_list *addrs) {
  c->addrs = addrs;
  c->att = calloc(addrs->n, sizeof *c->att);
  if (c->att == NULL) {
    connector_fail_any(
        c, ct_failure_new(CT_ENOMEM, "connect to %s: out of memory", c->desc));
    return;
  }
  for (size_t i = 0; i < addrs->n; i++) {
    c->att[i].c = c;
    c->att[i].fd = -1;
  }
  start_next(c);
}

static void resolved_cb(ct_address_list *addrs, ct_failure *f, void *arg) {
  connector *c = arg;
  c->lookup = NULL;
  if (f != NULL) {
    connector_fail(c, ct_failure_wrap(domain_of(c), f->code, f,
                                      "connect to %s failed", c->desc));
    return;
  }
  begin(c, addrs);
}

static void canceller(ct_deferred *d, void *arg) {
  (void)d;
  connector *c = arg;
  if (c->state == C_DONE)
    return;
  ct_failure *f =
      ct_failure_new_at(__FILE__, __LINE__, domain_of(c), CT_ECANCELLED, NULL,
                        "connect to %s was cancelled", c->desc);
  if (c->state == C_FAIL_SCHEDULED) {
    /* The scheduled call will find C_DONE and free the connector. */
    ct_failure_free(c->pending);
    c->pending = NULL;
  }
  connector_fail(c, f);
}

/* A bad call with a reactor: its Deferred errbacks on a later turn, as
 * every connect failure does (the caller adds callbacks first). */
typedef struct bad_call {
  ct_deferred *d;
  ct_failure *f;
} bad_call;

static void bad_call_cb(void *arg) {
  bad_call *b = arg;
  ct_deferred_errback(b->d, b->f); /* f freed if cancelled meanwhile */
  ct_deferred_unref(b->d);
  free(b);
}

/* A one-address list from a resolved sockaddr. */
static ct_address_list *single(const struct sockaddr_storage *ss,
                               socklen_t sl) {
  ct_address_list *l = malloc(sizeof *l + sizeof(ct_address));
  if (l == NULL)
    return NULL;
  l->n = 1;
  ct_address_from_sockaddr(&l->addrs[0], (const struct sockaddr *)ss, sl);
  return l;
}

/* 1 if `host` needs a lookup (it is not a numeric address). */
static int is_name(const char *host) {
  ct_address a;
  return ct_address_from_ip(&a, host, 0) != 0;
}

static void connect_start(connector *c, const char *endpoint) {
  ct_endpoint ep;
  memset(&ep, 0, sizeof ep);
  ct_failure *f = NULL;
  if (ct_endpoint_parse_client(endpoint, &ep, &f) != 0) {
    fail_later(c, f);
    return;
  }
  c->is_unix = ep.kind == CT_ENDPOINT_UNIX;
  c->stream_flags = ep.nodelay ? CT__STREAM_NODELAY : 0;
  if (ep.kind != CT_ENDPOINT_TCP && ep.kind != CT_ENDPOINT_TCP6 &&
      ep.kind != CT_ENDPOINT_UNIX) {
    fail_later(c, ep.kind == CT_ENDPOINT_SSL
                      ? ct_failure_new(CT_ENOSYS,
                                       "ct_connect: '%s': TLS (ssl:) "
                                       "endpoints are not implemented yet",
                                       endpoint)
                      : ct_failure_new(CT_EBADENDPOINT,
                                       "ct_connect: '%s' is not a stream "
                                       "endpoint; expected tcp:host=H:port=P "
                                       "or unix:path=P",
                                       endpoint));
    ct_endpoint_clear(&ep);
    return;
  }
  if (c->is_unix)
    snprintf(c->desc, sizeof c->desc, "unix:%s%s", ep.abstract ? "@" : "",
             ep.path);
  else
    snprintf(c->desc, sizeof c->desc, "%s port %d", ep.host, ep.port);
  c->timeout = ep.timeout > 0 ? ep.timeout : CT_ENDPOINT_DEFAULT_TIMEOUT;
  /* bindAddress is numeric: no lookup. */
  if (ct_endpoint_resolve_bind(&ep, &c->bind_ss, &c->bind_len, &f) != 0) {
    ct_endpoint_clear(&ep);
    fail_later(c, ct_failure_wrap(domain_of(c), f->code, f,
                                  "connect to %s failed", c->desc));
    return;
  }
  c->timer = ct_call_later(c->reactor, c->timeout, timeout_cb, c);
  if (!c->is_unix && is_name(ep.host)) {
    int family = ep.kind == CT_ENDPOINT_TCP6 ? AF_INET6 : AF_INET;
    c->lookup =
        ct__resolve_start(c->reactor, ep.host, family, ep.port, resolved_cb, c);
    ct_endpoint_clear(&ep);
    if (c->lookup == NULL)
      fail_later(c, ct_failure_new(CT_ENOMEM, "connect to %s: out of memory",
                                   c->desc));
    return;
  }
  /* A numeric address or a Unix path: ct_endpoint_resolve does no lookup
   * for those. */
  struct sockaddr_storage ss;
  socklen_t sl = 0;
  if (ct_endpoint_resolve(&ep, &ss, &sl, &f) != 0) {
    ct_endpoint_clear(&ep);
    fail_later(c, ct_failure_wrap(domain_of(c), f->code, f,
                                  "connect to %s failed", c->desc));
    return;
  }
  ct_endpoint_clear(&ep);
  ct_address_list *l = single(&ss, sl);
  if (l == NULL) {
    fail_later(
        c, ct_failure_new(CT_ENOMEM, "connect to %s: out of memory", c->desc));
    return;
  }
  begin(c, l);
}

ct_deferred *ct_connect(ct_reactor *r, const char *endpoint,
                        ct_client_factory *cf) {
  if (r == NULL)
    return NULL; /* no loop to report on: a synchronous error */
  if (cf == NULL || endpoint == NULL) {
    bad_call *b = malloc(sizeof *b);
    ct_deferred *d = ct_deferred_new(NULL, NULL);
    if (b == NULL || d == NULL) {
      free(b);
      ct_deferred_unref(d);
      return NULL;
    }
    b->d = ct_deferred_ref(d);
    b->f = ct_failure_new(CT_EINVAL, "ct_connect: %s is required",
                          cf == NULL ? "a client factory" : "an endpoint");
    if (ct__reactor_call_soon(r, bad_call_cb, b) != 0) {
      ct_failure_free(b->f);
      ct_deferred_unref(b->d);
      ct_deferred_unref(d);
      free(b);
      return NULL;
    }
    return d;
  }
  connector *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->reactor = r;
  c->cf = cf;
  c->state = C_CONNECTING;
  c->d = ct_deferred_new(canceller, c);
  if (c->d == NULL) {
    free(c);
    return NULL;
  }
  ct_deferred *ret = ct_deferred_ref(c->d);
  ct_factory_do_start(&cf->base);
  snprintf(c->desc, sizeof c->desc, "%s", endpoint);
  c->starting = 1;
  connect_start(c, endpoint);
  /* The connector may be waiting for a scheduled failure (then it is
   * still allocated: scheduled_fail_cb frees it), or connecting. */
  c->starting = 0;
  return ret;
}
