/* Deferred forms of the reactor's LoopingCall and shutdown triggers.  They
 * live here, not in reactor/, because the reactor layer must not depend on
 * the deferred layer above it. */
#include <stdlib.h>

#include "ctwist/deferred.h"
#include "ctwist/log.h"
#include "deferred/internal.h"

/* ----------------------------------------------------------- looping call */

static void lc_done(ct_looping_call *lc, int err, void *arg) {
  ct_deferred *d = arg;
  /* A later plain start() must not fire this Deferred again. */
  ct_looping_call_on_done(lc, NULL, NULL);
  if (err == 0)
    ct_deferred_callback(d, CT_NONE);
  else
    ct_deferred_errback(
        d, ct_failure_new(err, "looping call failed: %s", ct_strerror(err)));
  ct_deferred_unref(d);
}

ct_deferred *ct_looping_call_start_deferred(ct_looping_call *lc,
                                            double interval, int now) {
  /* A running loop already has a done callback (perhaps an earlier
   * Deferred's): leave it alone. */
  if (lc == NULL || ct_looping_call_running(lc) || !(interval > 0))
    return NULL;
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  if (d == NULL)
    return NULL;
  ct_looping_call_on_done(lc, lc_done, ct_deferred_ref(d));
  if (ct_looping_call_start(lc, interval, now) < 0) {
    ct_looping_call_on_done(lc, NULL, NULL);
    ct_deferred_unref(d);
    ct_deferred_unref(d);
    return NULL;
  }
  return d;
}

/* ------------------------------------------------------ shutdown triggers */

static void hold_release_drop(void *arg) {
  ct_phase_hold_release(arg);
}

static ct_step hold_release(ct_result r, void *arg) {
  ct_phase_hold_release(arg);
  if (r.failure != NULL) {
    ct_log_failure(CT_LOG_ERROR, "deferred",
                   "shutdown trigger's Deferred failed", r.failure);
    ct_failure_free(r.failure);
  } else {
    ct_value_free(r.value);
  }
  return ct_pass(CT_NONE);
}

static void trigger_run(void *arg) {
  ct_deferred_trigger *t = arg;
  ct_deferred *d = t->fn(t->reactor, t->arg);
  if (d == NULL)
    return;
  ct_phase_hold *h = ct_reactor_hold_phase(t->reactor);
  if (ct_deferred_add_both_full(d, hold_release, h, hold_release_drop) < 0)
    ct_phase_hold_release(h);
  ct_deferred_unref(d);
}

long ct_reactor_add_trigger_deferred(ct_reactor *r, ct_phase phase,
                                     ct_deferred_trigger *t,
                                     ct_trigger_deferred_cb fn, void *arg) {
  if (r == NULL || t == NULL || fn == NULL)
    return CT_EINVAL;
  t->reactor = r;
  t->fn = fn;
  t->arg = arg;
  return ct_reactor_add_trigger(r, phase, trigger_run, t);
}
