/*
 * frame.c: the frame-completion deadline (the slow-loris defence) used by
 * the framing protocols, their bounded close after a protocol error, and
 * the frame-deadline policy factory that lets a runner set the deadline of
 * protocols it did not write.
 *
 * An idle timeout counts any byte as activity, so a peer trickling one
 * byte every few seconds of a frame that never completes defeats it.  The
 * deadline instead starts at a frame's first byte and only a minimum rate
 * of that frame's bytes pushes it back (Apache mod_reqtimeout's
 * header=20,MinRate=500).
 */
#include <math.h>
#include <stdlib.h>

#include "ctwist/log.h"
#include "protocols/policies/frame.h"
#include "protocols/policies/internal.h"

static void frame_fired(void *arg);

static ct_reactor *timer_reactor(const ct__frame_timer *ft) {
  return ft->t != NULL ? ft->t->reactor : NULL;
}

/* Make sure the timer fires no later than `when`. */
static void arm(ct__frame_timer *ft, double now, double when) {
  ct_reactor *r = timer_reactor(ft);
  if (r == NULL)
    return; /* a reactor-less test transport: no timers */
  if (ft->call != NULL) {
    if (ct_delayed_call_get_time(ft->call) <= when)
      return; /* fires first and re-arms for the rest (lazy) */
    ct_delayed_call_reset(ft->call, when - now);
    return;
  }
  ft->call = ct_call_later(r, when - now, frame_fired, ft);
}

static void frame_fired(void *arg) {
  ct__frame_timer *ft = arg;
  ft->call = NULL;
  ct_transport *t = ft->t;
  if (t == NULL)
    return;
  if (ft->closing) {
    /* The error close did not finish flushing: the peer is not reading. */
    ft->closing = 0;
    ct_log(CT_LOG_INFO, "policies",
           "%s: peer did not read its error reply within %g s; aborting",
           t->protocol && t->protocol->ops && t->protocol->ops->name
               ? t->protocol->ops->name
               : "connection",
           CT_ERROR_CLOSE_TIMEOUT);
    ct_transport_abort(t);
    return;
  }
  if (!ft->active || ct_transport_is_closing(t))
    return;
  double now = ct_reactor_seconds(t->reactor);
  if (ct_transport_reading_paused(t)) {
    /* We stopped reading (back-pressure): not the peer's fault.  Give the
     * frame a fresh deadline once reading may have resumed. */
    ft->start = now;
    ft->bytes = 0;
    ft->deadline = now + ft->timeout;
    arm(ft, now, ft->deadline);
    return;
  }
  if (now < ft->deadline) {
    arm(ft, now, ft->deadline);
    return;
  }
  ft->active = 0;
  if (ft->expired != NULL)
    ft->expired(ft, ft->arg);
}

void ct__frame_timer_init(ct__frame_timer *ft, ct_transport *t,
                          const ct_frame_deadline *cfg,
                          ct__frame_expired_cb expired, void *arg) {
  ct__frame_timer_cancel(ft);
  ct_frame_deadline c = {0, 0, 0};
  if (!ct__policy_frame_deadline(t, &c) && cfg != NULL)
    c = *cfg;
  ft->t = t;
  ft->timeout = c.timeout == 0  ? CT_FRAME_TIMEOUT_DEFAULT
                : c.timeout < 0 ? 0
                                : c.timeout;
  ft->min_rate = c.min_rate == 0  ? CT_FRAME_MIN_RATE_DEFAULT
                 : c.min_rate < 0 ? 0
                                  : c.min_rate;
  ft->max_timeout = c.max_timeout > 0 ? c.max_timeout : 0;
  ft->start = ft->deadline = 0;
  ft->bytes = 0;
  ft->active = ft->closing = 0;
  ft->expired = expired;
  ft->arg = arg;
}

void ct__frame_timer_update(ct__frame_timer *ft, size_t len, int completed,
                            int partial) {
  if (!partial) {
    ft->active = 0; /* a pending call finds nothing to do */
    return;
  }
  if (ft->timeout <= 0 || ft->t == NULL || ft->closing)
    return;
  double now = ct_reactor_seconds(ft->t->reactor);
  if (!ft->active || completed) {
    /* A new frame started in this chunk. */
    ft->active = 1;
    ft->start = now;
    ft->bytes = 0;
    ft->deadline = now + ft->timeout;
  } else {
    ft->bytes += len;
    if (ft->min_rate > 0)
      ft->deadline += (double)len / ft->min_rate;
  }
  if (ft->max_timeout > 0 && ft->deadline > ft->start + ft->max_timeout)
    ft->deadline = ft->start + ft->max_timeout;
  arm(ft, now, ft->deadline);
}

void ct__frame_timer_cancel(ct__frame_timer *ft) {
  if (ft == NULL)
    return;
  if (ft->call != NULL)
    ct_delayed_call_cancel(ft->call);
  ft->call = NULL;
  ft->active = ft->closing = 0;
}

int ct__frame_error_close(ct__frame_timer *ft, ct_transport *t) {
  if (t == NULL || ct_transport_is_closing(t))
    return CT_ECLOSED;
  /* Above the high watermark the peer is not reading what it is owed:
   * waiting for a flush would hold the connection for nothing. */
  if (ct_transport_buffered(t) > t->high_water)
    return ct_transport_abort(t);
  int rc = ct_transport_lose_connection(t);
  if (rc != 0 || ft == NULL || t->reactor == NULL)
    return rc;
  if (ft->call != NULL)
    ct_delayed_call_cancel(ft->call);
  ft->call = NULL;
  ft->active = 0;
  ft->closing = 1;
  ft->t = t;
  ft->call = ct_call_later(t->reactor, CT_ERROR_CLOSE_TIMEOUT, frame_fired, ft);
  return 0;
}

/* ------------------------------------------------------------- policy */

typedef struct frame_factory {
  ct_policy_factory pf; /* first */
  ct_frame_deadline deadline;
} frame_factory;

static const ct__policy_ops frame_ops = {.name = "frame-deadline"};

int ct__policy_frame_deadline(ct_transport *t, ct_frame_deadline *out) {
  /* The inner protocol sees the innermost wrapper's transport; the wrapper
   * protocol is carried by the next one out, up to the real transport. */
  for (ct__wrap *w = ct__wrap_of_transport(t); w != NULL;
       w = ct__wrap_of_transport(w->real)) {
    if (w->pf != NULL && w->pf->pops == &frame_ops) {
      *out = ((frame_factory *)w->pf)->deadline;
      return 1;
    }
  }
  return 0;
}

ct_policy_factory *
ct_frame_deadline_factory_new(ct_factory *wrapped,
                              const ct_frame_deadline *deadline) {
  if (wrapped == NULL || deadline == NULL || !isfinite(deadline->timeout) ||
      !isfinite(deadline->min_rate) || !isfinite(deadline->max_timeout))
    return NULL;
  frame_factory *ff = calloc(1, sizeof *ff);
  if (ff == NULL)
    return NULL;
  ct__policy_factory_init(&ff->pf, wrapped, &frame_ops);
  ff->deadline = *deadline;
  return &ff->pf;
}
