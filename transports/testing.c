/*
 * testing.c: the string transport, Twisted's StringTransport for ctwist.
 *
 * It records what the protocol writes and lets the test play the peer.  The
 * one rule it must keep from transport.h is that connection_lost never runs
 * inside a call the protocol makes: lose_connection and abort only record
 * the request, and the test delivers the end with
 * ct_string_transport_step() or ct_string_transport_lose(), exactly where a
 * real transport would deliver it on a later loop turn.
 *
 * The handle and the transport are one allocation with two references: the
 * connection's (dropped by ct__transport_deliver_lost) and the test's
 * (dropped by ct_string_transport_free), so that value() can still be read
 * after the connection ended.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/testing.h"
#include "reactor/buf.h"
#include "transports/internal.h"

struct ct_string_transport {
  ct_transport base; /* first: the ops get a ct_transport * */
  ct__buf out;       /* written bytes, kept NUL-terminated */
  ct__buf in;        /* fed while reading was paused */
  int backpressure;
  int lost_pending; /* CT_ECONNDONE / CT_ECONNABORTED, or 0 */
  int pull_wanted;
  ct_address host, peer;
  ct_string_transport_stats stats;
};

static ct_string_transport *st_of(ct_transport *t) {
  return (ct_string_transport *)(void *)t;
}

/* ------------------------------------------------------------------- ops */

static int st_write(ct_transport *t, const void *data, size_t len) {
  ct_string_transport *st = st_of(t);
  char *tail = ct__buf_tail(&st->out, len + 1);
  if (tail == NULL) {
    return CT_ENOMEM;
  }
  memcpy(tail, data, len);
  tail[len] = '\0'; /* room reserved, outside the committed bytes */
  ct__buf_commit(&st->out, len);
  if (st->backpressure) {
    ct__transport_buffer_changed(t, ct__buf_len(&st->out));
  }
  return 0;
}

static int st_lose_connection(ct_transport *t) {
  ct_string_transport *st = st_of(t);
  st->stats.lose_connection_calls++;
  st->stats.disconnecting = 1;
  t->flags |= CT__T_CLOSING;
  if (st->lost_pending == 0) {
    st->lost_pending = CT_ECONNDONE;
  }
  return 0;
}

static int st_abort(ct_transport *t) {
  ct_string_transport *st = st_of(t);
  st->stats.abort_calls++;
  st->stats.disconnecting = 1;
  t->flags |= CT__T_CLOSING | CT__T_CLOSED;
  st->lost_pending = CT_ECONNABORTED;
  return 0;
}

static int st_half_close(ct_transport *t) {
  ct_string_transport *st = st_of(t);
  st->stats.half_close_calls++;
  st->stats.write_shut = 1;
  t->flags |= CT__T_WRITE_SHUT;
  return 0;
}

static int st_pause_reading(ct_transport *t) {
  st_of(t)->stats.pause_calls++;
  return 0;
}

static int st_resume_reading(ct_transport *t) {
  st_of(t)->stats.resume_calls++;
  return 0;
}

static int st_get_peer(ct_transport *t, ct_address *out) {
  *out = st_of(t)->peer;
  return 0;
}

static int st_get_host(ct_transport *t, ct_address *out) {
  *out = st_of(t)->host;
  return 0;
}

static int st_set_option(ct_transport *t, ct_transport_option opt, int value) {
  (void)t;
  (void)opt;
  (void)value;
  return 0; /* accepted and ignored, like a Unix socket ignores NODELAY */
}

static size_t st_buffered(const ct_transport *t) {
  const ct_string_transport *st = (const ct_string_transport *)(const void *)t;
  return st->backpressure ? ct__buf_len(&st->out) : 0;
}

static void st_want_pull(ct_transport *t) {
  st_of(t)->pull_wanted = 1;
}

static void st_destroy(ct_transport *t) {
  ct_string_transport *st = st_of(t);
  ct__buf_free(&st->out);
  ct__buf_free(&st->in);
  free(st);
}

static const ct_transport_ops string_ops = {
    .name = "string",
    .write = st_write,
    .lose_connection = st_lose_connection,
    .abort = st_abort,
    .half_close = st_half_close,
    .pause_reading = st_pause_reading,
    .resume_reading = st_resume_reading,
    .get_peer = st_get_peer,
    .get_host = st_get_host,
    .set_option = st_set_option,
    .buffered = st_buffered,
    .want_pull = st_want_pull,
    .destroy = st_destroy,
};

/* ------------------------------------------------------------------- API */

ct_string_transport *ct_string_transport_new(ct_reactor *r) {
  ct_string_transport *st = calloc(1, sizeof(*st));
  if (st == NULL) {
    return NULL;
  }
  ct__transport_init(&st->base, &string_ops, r);
  st->base.refs = 2; /* the connection's and the test's */
  ct_address_from_ip(&st->host, "10.0.0.1", 12345);
  ct_address_from_ip(&st->peer, "192.168.1.1", 54321);
  return st;
}

int ct_string_transport_connect(ct_string_transport *st, ct_protocol *p) {
  if (st == NULL || p == NULL) {
    return CT_EINVAL;
  }
  if (st->base.protocol != NULL || (st->base.flags & CT__T_CONNECTED)) {
    return CT_ESTATE;
  }
  ct__transport_make_connection(&st->base, p);
  return 0;
}

ct_transport *ct_string_transport_transport(ct_string_transport *st) {
  return st != NULL ? &st->base : NULL;
}

const char *ct_string_transport_value(const ct_string_transport *st,
                                      size_t *len) {
  if (len != NULL) {
    *len = st != NULL ? ct__buf_len(&st->out) : 0;
  }
  return st != NULL && ct__buf_len(&st->out) > 0 ? ct__buf_head(&st->out) : "";
}

/* Ask a waiting pull producer for more once nothing is buffered. */
static int run_pull(ct_string_transport *st) {
  if (st->base.producer == NULL || (st->base.flags & CT__T_STREAMING) ||
      !(st->base.flags & CT__T_PULL_PENDING) || st_buffered(&st->base) > 0 ||
      (st->base.flags & CT__T_CLOSED)) {
    return 0;
  }
  st->pull_wanted = 0;
  ct__transport_output_drained(&st->base);
  return 1;
}

void ct_string_transport_clear(ct_string_transport *st) {
  if (st == NULL) {
    return;
  }
  ct__buf_clear(&st->out);
  if (st->backpressure && !(st->base.flags & CT__T_CLOSED)) {
    ct__transport_buffer_changed(&st->base, 0);
    run_pull(st);
  }
}

int ct_string_transport_set_backpressure(ct_string_transport *st, int on) {
  if (st == NULL) {
    return CT_EINVAL;
  }
  st->backpressure = on != 0;
  ct__transport_buffer_changed(&st->base, st_buffered(&st->base));
  return 0;
}

static int deliverable(const ct_string_transport *st) {
  return ct__transport_want_reading(&st->base) && st->base.protocol != NULL;
}

static void deliver(ct_string_transport *st, const char *data, size_t len) {
  ct_protocol *p = st->base.protocol;
  if (p->ops != NULL && p->ops->data_received != NULL) {
    /* Hold the transport: the protocol may drop references it took. */
    ct_transport_ref(&st->base);
    p->ops->data_received(p, data, len);
    ct_transport_unref(&st->base);
  }
}

int ct_string_transport_feed(ct_string_transport *st, const void *data,
                             size_t len) {
  if (st == NULL || (data == NULL && len > 0)) {
    return CT_EINVAL;
  }
  if (!(st->base.flags & CT__T_CONNECTED)) {
    return CT_ESTATE;
  }
  if (st->base.flags & (CT__T_CLOSED | CT__T_CLOSING | CT__T_EOF)) {
    return CT_ECLOSED;
  }
  if (len == 0) {
    return 0;
  }
  if (!deliverable(st) || ct__buf_len(&st->in) > 0) {
    /* Paused: keep the bytes for a later step, in order. */
    if (ct__buf_append(&st->in, data, len) != 0) {
      return CT_ENOMEM;
    }
    if (deliverable(st)) {
      ct_string_transport_step(st); /* resumed since: deliver in order */
    }
    return 0;
  }
  deliver(st, data, len);
  return 0;
}

int ct_string_transport_feed_str(ct_string_transport *st, const char *s) {
  if (s == NULL) {
    return CT_EINVAL;
  }
  return ct_string_transport_feed(st, s, strlen(s));
}

int ct_string_transport_feed_eof(ct_string_transport *st) {
  if (st == NULL) {
    return CT_EINVAL;
  }
  if (!(st->base.flags & CT__T_CONNECTED)) {
    return CT_ESTATE;
  }
  if (st->base.flags & (CT__T_CLOSED | CT__T_CLOSING | CT__T_EOF)) {
    return CT_ECLOSED;
  }
  st->base.flags |= CT__T_EOF;
  ct_protocol *p = st->base.protocol;
  int keep = 0;
  if (p != NULL && p->ops != NULL && p->ops->eof_received != NULL) {
    ct_transport_ref(&st->base);
    keep = p->ops->eof_received(p) != 0;
    ct_transport_unref(&st->base);
  }
  if (!keep && !(st->base.flags & CT__T_CLOSED)) {
    /* Not counted as a protocol call: the transport closes itself. */
    st->base.flags |= CT__T_CLOSING;
    if (st->lost_pending == 0) {
      st->lost_pending = CT_ECONNDONE;
    }
  }
  return keep;
}

static void finish(ct_string_transport *st, ct_failure *reason) {
  st->stats.disconnected = 1;
  st->stats.lost_code = reason->code;
  ct__buf_clear(&st->in);
  ct__transport_deliver_lost(&st->base, reason);
}

int ct_string_transport_step(ct_string_transport *st) {
  if (st == NULL || (st->base.flags & CT__T_LOST)) {
    return 0;
  }
  int n = 0;
  if (ct__buf_len(&st->in) > 0 && deliverable(st)) {
    /* Deliver from a private copy: data_received may feed more. */
    ct__buf data = CT__BUF_INIT;
    ct__buf_move(&data, &st->in); /* takes the block over: cannot fail */
    deliver(st, ct__buf_head(&data), ct__buf_len(&data));
    ct__buf_free(&data);
    n++;
  }
  n += run_pull(st);
  if (st->lost_pending != 0 && !(st->base.flags & CT__T_LOST)) {
    int code = st->lost_pending;
    st->lost_pending = 0;
    finish(st,
           code == CT_ECONNABORTED
               ? ct_failure_new(CT_ECONNABORTED,
                                "connection aborted (string transport)")
               : ct_failure_new(CT_ECONNDONE, "connection was closed cleanly"));
    n++;
  }
  return n;
}

int ct_string_transport_lose(ct_string_transport *st, ct_failure *reason) {
  if (st == NULL) {
    ct_failure_free(reason);
    return CT_EINVAL;
  }
  if (st->base.flags & CT__T_LOST) {
    ct_failure_free(reason);
    return CT_ECLOSED;
  }
  if (st->lost_pending != 0) {
    ct_failure_free(reason);
    st->base.flags |= CT__T_CLOSED;
    ct_string_transport_step(st);
    return 0;
  }
  if (reason == NULL) {
    reason = ct_failure_new(CT_ECONNDONE, "connection was closed cleanly");
  }
  st->base.flags |= CT__T_CLOSED;
  finish(st, reason);
  return 0;
}

void ct_string_transport_stats_get(const ct_string_transport *st,
                                   ct_string_transport_stats *out) {
  if (out == NULL) {
    return;
  }
  memset(out, 0, sizeof(*out));
  if (st == NULL) {
    return;
  }
  *out = st->stats;
  out->producer_registered = st->base.producer != NULL;
  out->producer_streaming =
      st->base.producer != NULL && (st->base.flags & CT__T_STREAMING) != 0;
  out->queued_input = ct__buf_len(&st->in);
}

void ct_string_transport_set_peer(ct_string_transport *st,
                                  const ct_address *a) {
  if (st != NULL && a != NULL) {
    st->peer = *a;
  }
}

void ct_string_transport_set_host(ct_string_transport *st,
                                  const ct_address *a) {
  if (st != NULL && a != NULL) {
    st->host = *a;
  }
}

void ct_string_transport_free(ct_string_transport *st) {
  if (st == NULL) {
    return;
  }
  if (!(st->base.flags & CT__T_LOST)) {
    if (st->base.flags & CT__T_CONNECTED) {
      st->lost_pending = CT_ECONNABORTED;
      st->base.flags |= CT__T_CLOSED;
      ct_string_transport_step(st);
    } else {
      /* Never connected: drop the connection's reference too. */
      st->base.flags |= CT__T_LOST | CT__T_CLOSED;
      ct_transport_unref(&st->base);
    }
  }
  ct_transport_unref(&st->base);
}
