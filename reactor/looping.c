/*
 * LoopingCall: call a function every interval, aligned to start + k*interval.
 *
 * When the loop runs late (a slow callback, a blocked process, a jump of
 * the fake clock) the missed intervals are not run back to back: the next
 * call gets `count` = the number of intervals elapsed since the previous
 * one, like Twisted's LoopingCall.withCount, and the difference is added to
 * the skipped total.
 */
#include <stdlib.h>

#include "reactor/impl.h"

struct ct_looping_call {
  ct_reactor *r;
  ct_looping_cb fn;
  void *arg;
  ct_looping_done_cb done;
  void *done_arg;
  ct_delayed_call *dc; /* the pending timer, or NULL */
  int64_t interval;    /* ns, > 0 */
  int64_t start;       /* ns on the reactor clock */
  int64_t last_k;      /* interval index of the previous call */
  uint64_t calls, skipped;
  unsigned running : 1;
  unsigned in_fn : 1;
  unsigned free_pending : 1;
};

ct_looping_call *ct_looping_call_new(ct_reactor *r, ct_looping_cb fn,
                                     void *arg) {
  if (r == NULL || fn == NULL)
    return NULL;
  ct_looping_call *lc = calloc(1, sizeof(*lc));
  if (lc == NULL)
    return NULL;
  lc->r = r;
  lc->fn = fn;
  lc->arg = arg;
  return lc;
}

static void lc_timer_cb(void *arg);

static int lc_schedule(ct_looping_call *lc, int64_t now) {
  int64_t next = lc->start + (lc->last_k + 1) * lc->interval;
  lc->dc = ct__call_later_ns(lc->r, next - now, lc_timer_cb, lc);
  return lc->dc != NULL ? 0 : CT_ENOMEM;
}

/* Stops the loop and runs the done callback, which may free lc. */
static void lc_finish(ct_looping_call *lc, int err) {
  lc->running = 0;
  if (lc->dc != NULL) {
    ct_delayed_call_cancel(lc->dc);
    lc->dc = NULL;
  }
  if (lc->done != NULL)
    lc->done(lc, err, lc->done_arg);
}

static void lc_fire(ct_looping_call *lc) {
  int64_t now = ct__reactor_now_ns(lc->r);
  int64_t k = (now - lc->start) / lc->interval;
  int64_t count = k - lc->last_k;
  if (count < 1) /* cannot happen on a monotonic clock; stay sane anyway */
    count = 1;
  lc->last_k = lc->last_k + count;
  lc->skipped += (uint64_t)(count - 1);
  lc->calls++;
  lc->in_fn = 1;
  int rc = lc->fn(lc, (uint64_t)count, lc->arg);
  lc->in_fn = 0;
  if (lc->free_pending) {
    free(lc);
    return;
  }
  if (!lc->running)
    return; /* stopped from inside: done already ran */
  if (rc < 0) {
    lc_finish(lc, rc);
    return;
  }
  /* A stop() + start() from inside fn has already scheduled. */
  if (lc->dc == NULL && lc_schedule(lc, now) != 0)
    lc_finish(lc, CT_ENOMEM);
}

static void lc_timer_cb(void *arg) {
  ct_looping_call *lc = arg;
  lc->dc = NULL; /* the handle is the reactor's again after we return */
  lc_fire(lc);
}

int ct_looping_call_start(ct_looping_call *lc, double interval, int now) {
  if (lc == NULL || !(interval > 0))
    return CT_EINVAL;
  if (lc->running)
    return CT_ESTATE;
  int64_t ns = ct__seconds_to_ns(interval);
  if (ns <= 0)
    return CT_EINVAL;
  lc->interval = ns;
  lc->start = ct__reactor_now_ns(lc->r);
  lc->last_k = now ? -1 : 0;
  lc->running = 1;
  if (now) {
    lc_fire(lc); /* may stop or free lc */
    return 0;
  }
  if (lc_schedule(lc, lc->start) != 0) {
    lc->running = 0;
    return CT_ENOMEM;
  }
  return 0;
}

int ct_looping_call_stop(ct_looping_call *lc) {
  if (lc == NULL)
    return CT_EINVAL;
  if (!lc->running)
    return CT_ESTATE;
  lc_finish(lc, 0);
  return 0;
}

void ct_looping_call_on_done(ct_looping_call *lc, ct_looping_done_cb cb,
                             void *arg) {
  if (lc == NULL)
    return;
  lc->done = cb;
  lc->done_arg = arg;
}

int ct_looping_call_running(const ct_looping_call *lc) {
  return lc != NULL && lc->running;
}

uint64_t ct_looping_call_skipped(const ct_looping_call *lc) {
  return lc != NULL ? lc->skipped : 0;
}

uint64_t ct_looping_call_calls(const ct_looping_call *lc) {
  return lc != NULL ? lc->calls : 0;
}

void ct_looping_call_free(ct_looping_call *lc) {
  if (lc == NULL)
    return;
  lc->running = 0;
  if (lc->dc != NULL) {
    ct_delayed_call_cancel(lc->dc);
    lc->dc = NULL;
  }
  if (lc->in_fn) {
    lc->free_pending = 1; /* lc_fire frees it when fn returns */
    return;
  }
  free(lc);
}
