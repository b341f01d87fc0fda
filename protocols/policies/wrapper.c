/*
 * wrapper.c: the generic protocol wrapper behind every policy factory
 * (Twisted's ProtocolWrapper and WrappingFactory).
 *
 * Twisted's wrapper is both a protocol (for the real transport) and a
 * transport (for the wrapped protocol).  Here those are two structs in one
 * allocation: `w->proto` is carried by the real transport, and `w->wt` is a
 * transport kind of its own whose ops forward to the real transport.  The
 * wrapper transport uses the same generic machinery as every other kind
 * (transports/internal.h), so the wrapped protocol gets the usual
 * watermarks, producers and re-entrancy guarantees.
 *
 * Two things need care:
 *   - Back-pressure.  The inner protocol's output is what the wrapper holds
 *     back (throttling) plus what the real transport buffers.  The wrapper
 *     learns that the real transport drained by registering itself on it as
 *     a pull producer, but only while it needs to know (the inner protocol
 *     has a pull producer, the wrapper is above its high watermark, or it
 *     holds output): registering always would cost the common case an
 *     EV_WRITE wake-up per message.
 *   - Reading.  The inner protocol and the policy pause reading for
 *     different reasons; the real transport is paused while either wants it.
 */
#include <stdlib.h>
#include <string.h>

#include "protocols/policies/internal.h"
#include "transports/internal.h"

static const ct_transport_ops wrap_transport_ops;
static const ct_protocol_ops wrap_protocol_ops;

static ct__wrap *wrap_of_t(const ct_transport *t) {
  return ct_container_of(t, ct__wrap, wt);
}

/* Drop one of the two holds (protocol, wrapper transport) on the memory. */
static void wrap_put(ct__wrap *w) {
  if (--w->holds == 0) {
    ct__buf_free(&w->q);
    free(w);
  }
}

static void pf_unref(ct_policy_factory *pf) {
  if (--pf->refs > 0)
    return;
  if (pf->pops->destroy != NULL)
    pf->pops->destroy(pf);
  else
    free(pf);
}

static size_t allowance(ct__wrap *w) {
  return w->pf->pops->write_allowance != NULL ? w->pf->pops->write_allowance(w)
                                              : SIZE_MAX;
}

static void note_written(ct__wrap *w, size_t n) {
  if (n > 0 && w->pf->pops->wrote != NULL)
    w->pf->pops->wrote(w, n);
}

static size_t wt_buffered(const ct_transport *t) {
  const ct__wrap *w = wrap_of_t(t);
  return ct__wrap_held(w) +
         (w->real != NULL ? ct_transport_buffered(w->real) : 0);
}

/* --------------------------------------------- drain notices (the proxy) */

static void proxy_resume(void *arg);

static const ct_producer_ops proxy_ops = {
    .resume_producing = proxy_resume,
};

/* Ask the real transport to tell us (proxy_resume) once it has drained.
 * Registering a pull producer anew makes it ask at once (on a later turn)
 * if it is empty already. */
static void want_drain_notice(ct__wrap *w) {
  if (w->real == NULL)
    return;
  if (w->proxy_on)
    ct_transport_unregister_producer(w->real);
  w->proxy_on = ct_transport_register_producer(w->real, &proxy_ops, w, 0) == 0;
}

static void proxy_resume(void *arg) {
  ct__wrap *w = arg;
  if (!w->made || (w->wt.flags & CT__T_CLOSED) || w->real == NULL)
    return;
  ct__transport_buffer_changed(&w->wt, wt_buffered(&w->wt));
  if (ct__wrap_held(w) == 0)
    ct__transport_output_drained(&w->wt); /* the inner pull producer */
  if (w->real == NULL || (w->wt.flags & CT__T_CLOSED))
    return;
  int still = ct__wrap_held(w) > 0 || (w->wt.flags & CT__T_ABOVE_HIGH) ||
              (w->wt.producer != NULL && !(w->wt.flags & CT__T_STREAMING) &&
               (w->wt.flags & CT__T_PULL_PENDING));
  if (!still && w->proxy_on) {
    ct_transport_unregister_producer(w->real);
    w->proxy_on = 0;
  }
}

/* ------------------------------------------------------ reading switch */

static void apply_pause(ct__wrap *w) {
  int want = w->read_pause != 0;
  if (w->real == NULL || want == w->real_paused)
    return;
  w->real_paused = want;
  if (want)
    ct_transport_pause_reading(w->real);
  else
    ct_transport_resume_reading(w->real);
}

void ct__wrap_policy_pause(ct__wrap *w, int on) {
  if (on)
    w->read_pause |= CT__WRAP_PAUSE_POLICY;
  else
    w->read_pause &= ~(unsigned)CT__WRAP_PAUSE_POLICY;
  apply_pause(w);
}

/* --------------------------------------------------------- hold queue */

/* After the held output ran out: do what the inner protocol asked for. */
static void after_held(ct__wrap *w) {
  if (w->real == NULL)
    return;
  if (w->lose_pending) {
    w->lose_pending = 0;
    w->half_pending = 0;
    ct_transport_lose_connection(w->real);
  } else if (w->half_pending) {
    w->half_pending = 0;
    ct_transport_half_close(w->real);
  }
}

void ct__wrap_flush(ct__wrap *w) {
  if (w->real == NULL || (w->wt.flags & CT__T_CLOSED) || ct__wrap_held(w) == 0)
    return;
  size_t n = ct__wrap_held(w);
  size_t allow = allowance(w);
  if (n > allow)
    n = allow;
  if (n > 0) {
    /* The allowance may end inside a piece: pass on whole iovecs, then
     * the head of the next. */
    struct iovec iov[16];
    int cnt = ct__buf_iov(&w->q, iov, 16), used = 0;
    size_t take = 0;
    for (; used < cnt && take < n; used++) {
      if (iov[used].iov_len > n - take)
        iov[used].iov_len = n - take;
      take += iov[used].iov_len;
    }
    n = take;
    if (ct_transport_writev(w->real, iov, used) < 0)
      return; /* the real transport is closing; connection_lost follows */
    ct__buf_consume(&w->q, n);
    note_written(w, n);
  }
  if (ct__wrap_held(w) == 0)
    after_held(w);
  if (w->real != NULL && !(w->wt.flags & CT__T_CLOSED)) {
    ct__transport_buffer_changed(&w->wt, wt_buffered(&w->wt));
    if (!w->proxy_on && (w->wt.flags & CT__T_ABOVE_HIGH))
      want_drain_notice(w);
  }
}

/* ---------------------------------------------- the wrapper transport */

/* After output was accepted: watermarks, and a drain notice when output
 * is held or a producer waits. */
static void after_write(ct_transport *t, ct__wrap *w) {
  ct__transport_buffer_changed(t, wt_buffered(t));
  if (!w->proxy_on && ((t->flags & CT__T_ABOVE_HIGH) || ct__wrap_held(w) > 0 ||
                       (t->producer != NULL && !(t->flags & CT__T_STREAMING))))
    want_drain_notice(w);
}

static int wt_write(ct_transport *t, const void *data, size_t len) {
  ct__wrap *w = wrap_of_t(t);
  if (w->real == NULL)
    return CT_ECLOSED;
  size_t sent = 0;
  if (ct__wrap_held(w) == 0) {
    size_t allow = allowance(w);
    sent = len < allow ? len : allow;
    if (sent > 0) {
      int rc = ct_transport_write(w->real, data, sent);
      if (rc < 0)
        return rc;
      note_written(w, sent);
    }
  }
  if (sent < len) {
    int rc = ct__buf_append(&w->q, (const char *)data + sent, len - sent);
    if (rc < 0)
      return rc;
  }
  after_write(t, w);
  return 0;
}

/* Shared bytes pass on uncopied when the policy lets them all through;
 * otherwise the hold queue keeps a reference. */
static int wt_write_bytes(ct_transport *t, ct_bytes *b, size_t off,
                          size_t len) {
  ct__wrap *w = wrap_of_t(t);
  if (w->real == NULL)
    return CT_ECLOSED;
  if (ct__wrap_held(w) == 0 && allowance(w) >= len) {
    int rc = ct_transport_write_bytes(w->real, b, off, len);
    if (rc < 0)
      return rc;
    note_written(w, len);
  } else if (ct__buf_append_blob(&w->q, b, off, len) != 0) {
    return CT_ENOMEM;
  }
  after_write(t, w);
  return 0;
}

static int wt_get_stats(const ct_transport *t, ct_transport_stats *out) {
  const ct__wrap *w = wrap_of_t(t);
  return w->real != NULL ? ct_transport_get_stats(w->real, out) : CT_ECLOSED;
}

static int wt_lose_connection(ct_transport *t) {
  ct__wrap *w = wrap_of_t(t);
  t->flags |= CT__T_CLOSING;
  if (ct__wrap_held(w) > 0) {
    w->lose_pending = 1;
    return 0;
  }
  return w->real != NULL ? ct_transport_lose_connection(w->real) : CT_ECLOSED;
}

static int wt_abort(ct_transport *t) {
  ct__wrap *w = wrap_of_t(t);
  t->flags |= CT__T_CLOSING | CT__T_CLOSED;
  ct__buf_clear(&w->q);
  return w->real != NULL ? ct_transport_abort(w->real) : CT_ECLOSED;
}

static int wt_half_close(ct_transport *t) {
  ct__wrap *w = wrap_of_t(t);
  t->flags |= CT__T_WRITE_SHUT;
  if (ct__wrap_held(w) > 0) {
    w->half_pending = 1;
    return 0;
  }
  return w->real != NULL ? ct_transport_half_close(w->real) : CT_ECLOSED;
}

static int wt_pause_reading(ct_transport *t) {
  ct__wrap *w = wrap_of_t(t);
  w->read_pause |= CT__WRAP_PAUSE_INNER;
  apply_pause(w);
  return 0;
}

static int wt_resume_reading(ct_transport *t) {
  ct__wrap *w = wrap_of_t(t);
  w->read_pause &= ~(unsigned)CT__WRAP_PAUSE_INNER;
  apply_pause(w);
  return 0;
}

static int wt_get_peer(ct_transport *t, ct_address *out) {
  ct__wrap *w = wrap_of_t(t);
  return w->real != NULL ? ct_transport_get_peer(w->real, out) : CT_ECLOSED;
}

static int wt_get_host(ct_transport *t, ct_address *out) {
  ct__wrap *w = wrap_of_t(t);
  return w->real != NULL ? ct_transport_get_host(w->real, out) : CT_ECLOSED;
}

static int wt_set_option(ct_transport *t, ct_transport_option opt, int value) {
  ct__wrap *w = wrap_of_t(t);
  return w->real != NULL ? ct_transport_set_option(w->real, opt, value)
                         : CT_ECLOSED;
}

static void wt_want_pull(ct_transport *t) {
  want_drain_notice(wrap_of_t(t));
}

static int wt_fileno(const ct_transport *t) {
  const ct__wrap *w = wrap_of_t(t);
  return w->real != NULL ? ct_transport_fileno(w->real) : -1;
}

static void wt_destroy(ct_transport *t) {
  wrap_put(wrap_of_t(t));
}

static const ct_transport_ops wrap_transport_ops = {
    .name = "policy",
    .write = wt_write,
    .write_bytes = wt_write_bytes,
    .get_stats = wt_get_stats,
    .lose_connection = wt_lose_connection,
    .abort = wt_abort,
    .half_close = wt_half_close,
    .pause_reading = wt_pause_reading,
    .resume_reading = wt_resume_reading,
    .get_peer = wt_get_peer,
    .get_host = wt_get_host,
    .set_option = wt_set_option,
    .buffered = wt_buffered,
    .want_pull = wt_want_pull,
    .fileno = wt_fileno,
    .destroy = wt_destroy,
};

/* ------------------------------------------------ the wrapper protocol */

static void wp_connection_made(ct_protocol *p, ct_transport *real) {
  ct__wrap *w = (ct__wrap *)p;
  w->real = real;
  ct__transport_init(&w->wt, &wrap_transport_ops, real->reactor);
  w->holds++; /* released by wt_destroy after the last unref */
  if (w->pf->pops->connection_made != NULL)
    w->pf->pops->connection_made(w);
  w->made = 1;
  ct__transport_make_connection(&w->wt, w->inner);
}

static void wp_data_received(ct_protocol *p, const char *data, size_t len) {
  ct__wrap *w = (ct__wrap *)p;
  if (w->pf->pops->data_received != NULL)
    w->pf->pops->data_received(w, len);
  if (!w->made || (w->wt.flags & (CT__T_CLOSED | CT__T_CLOSING)))
    return;
  ct_protocol *in = w->inner;
  if (in->ops != NULL && in->ops->data_received != NULL)
    in->ops->data_received(in, data, len);
}

static int wp_eof_received(ct_protocol *p) {
  ct__wrap *w = (ct__wrap *)p;
  if (!w->made || (w->wt.flags & CT__T_CLOSED))
    return 0;
  w->wt.flags |= CT__T_EOF;
  ct_protocol *in = w->inner;
  int keep = in->ops != NULL && in->ops->eof_received != NULL
                 ? in->ops->eof_received(in)
                 : 0;
  if (keep || (w->wt.flags & CT__T_CLOSED))
    return keep;
  /* The inner protocol closes: held output goes first. */
  w->wt.flags |= CT__T_CLOSING;
  if (ct__wrap_held(w) > 0) {
    w->lose_pending = 1;
    return 1;
  }
  return 0;
}

static void wp_connection_lost(ct_protocol *p, const ct_failure *reason) {
  ct__wrap *w = (ct__wrap *)p;
  ct__buf_clear(&w->q);
  w->proxy_on = 0; /* the real transport dropped it already */
  if (w->made)
    ct__transport_deliver_lost(&w->wt, ct_failure_copy(reason));
  if (w->pf->pops->connection_lost != NULL)
    w->pf->pops->connection_lost(w, reason);
  w->real = NULL;
}

static void wp_free(ct_protocol *p) {
  ct__wrap *w = (ct__wrap *)p;
  ct_policy_factory *pf = w->pf;
  if (pf->pops->conn_fini != NULL)
    pf->pops->conn_fini(w);
  if (!w->made) {
    /* Never connected: the inner protocol was never attached to wt. */
    ct_protocol_release(w->inner);
  }
  w->inner = NULL;
  pf->conns--;
  wrap_put(w);
  pf_unref(pf);
}

static const ct_protocol_ops wrap_protocol_ops = {
    .name = "policy",
    .connection_made = wp_connection_made,
    .data_received = wp_data_received,
    .eof_received = wp_eof_received,
    .connection_lost = wp_connection_lost,
    .free = wp_free,
};

ct__wrap *ct__wrap_of(ct_protocol *p) {
  return p != NULL && p->ops == &wrap_protocol_ops ? (ct__wrap *)p : NULL;
}

ct__wrap *ct__wrap_of_transport(ct_transport *t) {
  return t != NULL && t->ops == &wrap_transport_ops ? wrap_of_t(t) : NULL;
}

/* ------------------------------------------------------ policy factory */

static ct_protocol *pf_build(ct_factory *f, const ct_address *peer) {
  ct_policy_factory *pf = (ct_policy_factory *)f;
  const ct__policy_ops *pops = pf->pops;
  if (pops->admit != NULL && pops->admit(pf, peer) != 0) {
    pf->refused++;
    return NULL;
  }
  ct_protocol *inner = ct_factory_build(pf->wrapped, peer);
  if (inner == NULL)
    return NULL;
  size_t size =
      pops->conn_size > sizeof(ct__wrap) ? pops->conn_size : sizeof(ct__wrap);
  ct__wrap *w = calloc(1, size);
  if (w == NULL) {
    ct_protocol_release(inner);
    return NULL;
  }
  ct_protocol_init(&w->proto, &wrap_protocol_ops);
  w->inner = inner;
  w->pf = pf;
  w->holds = 1;
  if (peer != NULL)
    w->peer = *peer;
  /* The real transport takes its watermarks from the wrapper's factory. */
  pf->base.write_high_water = pf->wrapped->write_high_water;
  pf->base.write_low_water = pf->wrapped->write_low_water;
  pf->refs++;
  pf->conns++;
  if (pops->conn_init != NULL)
    pops->conn_init(w);
  return &w->proto;
}

static void pf_start(ct_factory *f) {
  ct_factory_do_start(((ct_policy_factory *)f)->wrapped);
}

static void pf_stop(ct_factory *f) {
  ct_factory_do_stop(((ct_policy_factory *)f)->wrapped);
}

static const ct_factory_ops pf_factory_ops = {
    .name = "policy",
    .build_protocol = pf_build,
    .start = pf_start,
    .stop = pf_stop,
};

void ct__policy_factory_init(ct_policy_factory *pf, ct_factory *wrapped,
                             const ct__policy_ops *pops) {
  ct_factory_init(&pf->base, &pf_factory_ops, NULL, 0, pf);
  pf->wrapped = wrapped;
  pf->pops = pops;
  pf->refs = 1;
}

ct_factory *ct_policy_factory_base(ct_policy_factory *pf) {
  return pf != NULL ? &pf->base : NULL;
}

ct_factory *ct_policy_factory_wrapped(ct_policy_factory *pf) {
  return pf != NULL ? pf->wrapped : NULL;
}

unsigned ct_policy_factory_connections(const ct_policy_factory *pf) {
  return pf != NULL ? pf->conns : 0;
}

unsigned long ct_policy_factory_refused(const ct_policy_factory *pf) {
  return pf != NULL ? pf->refused : 0;
}

void ct_policy_factory_free(ct_policy_factory *pf) {
  if (pf == NULL || pf->freed)
    return;
  pf->freed = 1;
  pf_unref(pf);
}

ct_protocol *ct_policy_inner_protocol(ct_protocol *p) {
  ct__wrap *w = ct__wrap_of(p);
  return w != NULL ? w->inner : p;
}
