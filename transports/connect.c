/*
 * connect.c: outgoing TCP and Unix stream connections (Twisted's
 * connectTCP/connectUNIX through endpoint strings), returning a Deferred.
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
#include "transports/stream.h"

enum { C_CONNECTING, C_FAIL_SCHEDULED, C_DONE };

typedef struct connector {
  ct_reactor *reactor;
  ct_client_factory *cf;
  ct_deferred *d; /* the producer's reference */
  struct event ev;
  int ev_added;
  int fd;
  int is_unix;
  unsigned stream_flags; /* CT__STREAM_* */
  int state;
  double timeout;
  ct_delayed_call *timer;
  ct_failure *pending; /* failure found before the loop ran */
  ct_address addr;
  char desc[CT_ADDRESS_STRLEN + 16]; /* "127.0.0.1:80", "unix:/x" */
} connector;

static void connector_cleanup(connector *c) {
  if (c->timer != NULL) {
    ct_delayed_call_cancel(c->timer);
    c->timer = NULL;
  }
  if (c->ev_added) {
    event_del(&c->ev);
    c->ev_added = 0;
  }
  if (c->fd >= 0) {
    close(c->fd);
    c->fd = -1;
  }
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
    free(c);
}

static ct_failure *errno_failure(connector *c, int err) {
  return ct_failure_new_at(__FILE__, __LINE__, c->is_unix ? "unix" : "tcp",
                           -err, NULL, "connect to %s failed: %s (errno %d)",
                           c->desc, strerror(err), err);
}

static void scheduled_fail_cb(void *arg) {
  connector *c = arg;
  if (c->state == C_DONE) { /* cancelled meanwhile */
    free(c);
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

static void timeout_cb(void *arg) {
  connector *c = arg;
  c->timer = NULL;
  connector_fail(
      c, ct_failure_new_at(__FILE__, __LINE__, c->is_unix ? "unix" : "tcp",
                           CT_ETIMEDOUT, NULL,
                           "connect to %s failed: timed out after %g seconds "
                           "(errno %d)",
                           c->desc, c->timeout, ETIMEDOUT));
}

static void connected_cb(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  connector *c = arg;
  c->ev_added = 0; /* one-shot */
  int soerr = 0;
  socklen_t sl = sizeof soerr;
  if (getsockopt((int)fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
    soerr = errno;
  if (soerr != 0) {
    connector_fail(c, errno_failure(c, soerr));
    return;
  }
  if (c->timer != NULL) {
    ct_delayed_call_cancel(c->timer);
    c->timer = NULL;
  }
  ct_protocol *p = ct_factory_build(&c->cf->base, &c->addr);
  if (p == NULL) {
    connector_fail(
        c, ct_failure_new_at(__FILE__, __LINE__, c->is_unix ? "unix" : "tcp",
                             CT_ECONNABORTED, NULL,
                             "connect to %s: the factory refused to build a "
                             "protocol",
                             c->desc));
    return;
  }
  ct_transport *t = ct__stream_new(c->reactor, c->fd, c->is_unix, c->stream_flags);
  if (t == NULL) {
    ct__protocol_discard(p);
    connector_fail(
        c, ct_failure_new(CT_ENOMEM, "connect to %s: out of memory", c->desc));
    return;
  }
  c->fd = -1; /* the transport owns it now */
  c->state = C_DONE;
  t->client_factory = c->cf;
  /* Keep the protocol alive over connection_made: it may close at once,
   * but connection_lost only runs on a later turn. */
  ct__stream_start(t, p);
  ct_deferred *d = c->d;
  c->d = NULL;
  free(c);
  ct_deferred_callback(d, ct_value_of(p, NULL));
  ct_deferred_unref(d);
}

static void canceller(ct_deferred *d, void *arg) {
  (void)d;
  connector *c = arg;
  if (c->state == C_DONE)
    return;
  ct_failure *f = ct_failure_new_at(
      __FILE__, __LINE__, c->is_unix ? "unix" : "tcp", CT_ECANCELLED, NULL,
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
  c->fd = -1;
  c->state = C_CONNECTING;
  c->d = ct_deferred_new(canceller, c);
  if (c->d == NULL) {
    free(c);
    return NULL;
  }
  ct_deferred *ret = ct_deferred_ref(c->d);
  ct_factory_do_start(&cf->base);
  snprintf(c->desc, sizeof c->desc, "%s", endpoint);

  ct_endpoint ep;
  memset(&ep, 0, sizeof ep);
  ct_failure *f = NULL;
  if (ct_endpoint_parse_client(endpoint, &ep, &f) != 0) {
    fail_later(c, f);
    return ret;
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
    return ret;
  }
  if (c->is_unix)
    snprintf(c->desc, sizeof c->desc, "unix:%s%s", ep.abstract ? "@" : "",
             ep.path);
  else
    snprintf(c->desc, sizeof c->desc, "%s port %d", ep.host, ep.port);
  c->timeout = ep.timeout > 0 ? ep.timeout : CT_ENDPOINT_DEFAULT_TIMEOUT;
  struct sockaddr_storage ss, bs;
  socklen_t sl = 0, bl = 0;
  if (ct_endpoint_resolve(&ep, &ss, &sl, &f) != 0 ||
      ct_endpoint_resolve_bind(&ep, &bs, &bl, &f) != 0) {
    ct_endpoint_clear(&ep);
    fail_later(c, ct_failure_wrap(c->is_unix ? "unix" : "tcp", f->code, f,
                                  "connect to %s failed", c->desc));
    return ret;
  }
  ct_endpoint_clear(&ep);
  ct_address_from_sockaddr(&c->addr, (struct sockaddr *)&ss, sl);
  if (!c->is_unix) {
    char a[CT_ADDRESS_STRLEN];
    ct_address_format(&c->addr, a, sizeof a);
    size_t n = strlen(c->desc);
    snprintf(c->desc + n, sizeof c->desc - n, " (%s)", a);
  }
  c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    fail_later(c, errno_failure(c, errno));
    return ret;
  }
  if (bl > 0 && bind(c->fd, (struct sockaddr *)&bs, bl) != 0) {
    fail_later(c, errno_failure(c, errno));
    return ret;
  }
  int rc;
  do {
    rc = connect(c->fd, (struct sockaddr *)&ss, sl);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0 && errno != EINPROGRESS) {
    /* Unix sockets refuse at once; a full Unix backlog says EAGAIN. */
    fail_later(c, errno_failure(c, errno == EAGAIN ? ECONNREFUSED : errno));
    return ret;
  }
  /* Connected or in progress: writability tells (a connected socket is
   * writable at once), on the loop, like every other outcome. */
  event_assign(&c->ev, ct__reactor_base(r), c->fd, EV_WRITE, connected_cb, c);
  event_add(&c->ev, NULL);
  c->ev_added = 1;
  c->timer = ct_call_later(r, c->timeout, timeout_cb, c);
  return ret;
}
