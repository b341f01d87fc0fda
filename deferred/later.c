/* ct_defer_later: a Deferred fired by a delayed call (Twisted's
 * task.deferLater), cancellable. */
#include <stdlib.h>

#include "ctwist/deferred.h"
#include "deferred/internal.h"

typedef struct later_state {
  ct_delayed_call *dc;
  ct_deferred *d; /* the delayed call's reference */
  ct_step_fn fn;
  void *arg;
} later_state;

static void later_fire(void *arg) {
  later_state *L = arg;
  ct_deferred *d = L->d;
  ct_step_fn fn = L->fn;
  void *fn_arg = L->arg;
  free(L);
  /* From here on a cancel of d must not reach the freed state: it simply
   * errbacks, and the late result below is then ignored. */
  ct__deferred_set_canceller(d, NULL, NULL);
  ct_step s = fn != NULL ? fn(fn_arg) : ct_pass(CT_NONE);
  switch (s.kind) {
  case CT_STEP_VALUE:
    ct_deferred_callback(d, s.value);
    break;
  case CT_STEP_FAILURE:
    ct_deferred_errback(d, s.failure);
    break;
  case CT_STEP_WAIT:
    if (s.wait == NULL)
      ct_deferred_errback(d, ct_failure_new(CT_EINVAL, "waited on NULL"));
    else if (ct_deferred_called(d))
      ct_deferred_unref(s.wait);
    else {
      if (ct_deferred_chain(s.wait, d) < 0)
        ct_deferred_errback(d, ct_failure_new(CT_ENOMEM, "defer_later"));
      ct_deferred_unref(s.wait);
    }
    break;
  default:
    ct_deferred_errback(d, ct_failure_new(CT_EINVAL, "bad step kind"));
    break;
  }
  ct_deferred_unref(d);
}

static void later_cancel(ct_deferred *d, void *arg) {
  later_state *L = arg;
  ct_delayed_call_cancel(L->dc);
  free(L);
  ct__deferred_set_canceller(d, NULL, NULL);
  /* ct_deferred_cancel() holds a reference while we run, and errbacks d
   * with CT_ECANCELLED after we return. */
  ct_deferred_unref(d);
}

ct_deferred *ct_defer_later_at(const char *file, int line, ct_reactor *r,
                               double seconds, ct_step_fn fn, void *arg) {
  if (r == NULL)
    return NULL;
  later_state *L = malloc(sizeof(*L));
  if (L == NULL)
    return NULL;
  L->fn = fn;
  L->arg = arg;
  L->d = ct_deferred_new_at(file, line, later_cancel, L);
  if (L->d == NULL) {
    free(L);
    return NULL;
  }
  L->dc = ct_call_later(r, seconds, later_fire, L);
  if (L->dc == NULL) {
    ct_deferred_unref(L->d);
    free(L);
    return NULL;
  }
  return ct_deferred_ref(L->d);
}
