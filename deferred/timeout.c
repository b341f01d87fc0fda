/* ct_deferred_add_timeout: cancel a Deferred after N seconds on the
 * reactor's clock, turning the cancellation into CT_ETIMEDOUT (Twisted's
 * Deferred.addTimeout). */
#include <stdlib.h>

#include "ctwist/deferred.h"
#include "deferred/internal.h"

typedef struct timeout_state {
  ct_delayed_call *dc; /* pending while non-NULL */
  ct_deferred *d;      /* weak: alive while our entry is in its chain */
  double seconds;
  int timed_out;
} timeout_state;

/* Stop the timer (if still pending) and free the state.  Called exactly
 * once: when our entry runs, or when it is dropped unrun. */
static void timeout_done(timeout_state *t) {
  if (t->dc != NULL)
    ct_delayed_call_cancel(t->dc);
  free(t);
}

static void timeout_drop(void *arg) {
  timeout_done(arg);
}

static void timeout_fire(void *arg) {
  timeout_state *t = arg;
  ct_deferred *d = t->d;
  t->dc = NULL; /* the handle is invalid once we return */
  t->timed_out = 1;
  /* cancel() may run our entry, which frees t: do not touch t after. */
  ct_deferred_ref(d);
  ct_deferred_cancel(d);
  ct_deferred_unref(d);
}

static ct_step timeout_convert(ct_result r, void *arg) {
  timeout_state *t = arg;
  int timed_out = t->timed_out;
  double seconds = t->seconds;
  timeout_done(t);
  if (r.failure == NULL)
    return ct_pass(r.value);
  if (timed_out && r.failure->code == CT_ECANCELLED)
    return ct_raise(ct_failure_wrap("ctwist", CT_ETIMEDOUT, r.failure,
                                    "Deferred timed out after %g seconds",
                                    seconds));
  return ct_raise(r.failure);
}

int ct_deferred_add_timeout(ct_deferred *d, ct_reactor *r, double seconds) {
  if (d == NULL || r == NULL)
    return CT_EINVAL;
  if (ct_deferred_called(d))
    return CT_ESTATE;
  timeout_state *t = malloc(sizeof(*t));
  if (t == NULL)
    return CT_ENOMEM;
  t->d = d;
  t->seconds = seconds;
  t->timed_out = 0;
  t->dc = ct_call_later(r, seconds, timeout_fire, t);
  if (t->dc == NULL) {
    free(t);
    return CT_ENOMEM;
  }
  if (ct_deferred_add_both_full(d, timeout_convert, t, timeout_drop) < 0) {
    timeout_done(t);
    return CT_ENOMEM;
  }
  return 0;
}
