/*
 * throttle.c: bandwidth caps shared by a factory's connections (Twisted's
 * ThrottlingFactory/ThrottlingProtocol).
 *
 * Time is cut into one-second ticks on the reactor clock, run only while
 * the factory has connections.  Reading: received bytes are counted as
 * they arrive, and when the second's budget is spent every connection
 * stops reading until a tick brings the count back under the cap (the
 * excess of a second is carried into the next, so an overshoot by one
 * chunk is paid back).  Writing: the wrapper transport asks for an
 * allowance before passing bytes on and holds the rest; each tick renews
 * the allowance and flushes held output.  Twisted pauses producers instead,
 * which lets a protocol that ignores its producer exceed the cap; holding
 * the bytes keeps the cap exact, and the held bytes count as buffered
 * output, so the usual watermarks still pause producers and reading.
 */
#include <stdlib.h>

#include "protocols/policies/internal.h"

typedef struct throttle_factory {
  ct_policy_factory pf; /* first */
  ct_reactor *reactor;
  size_t read_limit, write_limit;
  size_t read_used, write_used; /* in the current second */
  int reads_paused;
  ct__wrap *conns; /* live connections, oldest first */
  ct__wrap *conns_tail;
  ct_delayed_call *tick; /* pending while there are connections */
} throttle_factory;

static throttle_factory *tf_of(ct__wrap *w) {
  return (throttle_factory *)w->pf;
}

static void pause_all(throttle_factory *tf, int on) {
  for (ct__wrap *w = tf->conns; w != NULL; w = w->next)
    ct__wrap_policy_pause(w, on);
}

static void tick_cb(void *arg) {
  throttle_factory *tf = arg;
  tf->tick = NULL;
  tf->read_used =
      tf->read_used > tf->read_limit ? tf->read_used - tf->read_limit : 0;
  tf->write_used = 0;
  if (tf->reads_paused &&
      (tf->read_limit == 0 || tf->read_used < tf->read_limit)) {
    tf->reads_paused = 0;
    pause_all(tf, 0);
  }
  /* Release held output, starting with a different connection each tick
   * (rotate the list) so that no connection starves the others. */
  for (ct__wrap *w = tf->conns; w != NULL; w = w->next)
    ct__wrap_flush(w);
  if (tf->conns != NULL && tf->conns != tf->conns_tail) {
    ct__wrap *first = tf->conns;
    tf->conns = first->next;
    tf->conns->prev = NULL;
    first->next = NULL;
    first->prev = tf->conns_tail;
    tf->conns_tail->next = first;
    tf->conns_tail = first;
  }
  if (tf->conns != NULL)
    tf->tick = ct_call_later(tf->reactor, 1.0, tick_cb, tf);
}

static void th_init(ct__wrap *w) {
  throttle_factory *tf = tf_of(w);
  w->next = NULL;
  w->prev = tf->conns_tail;
  if (tf->conns_tail != NULL)
    tf->conns_tail->next = w;
  else
    tf->conns = w;
  tf->conns_tail = w;
  if (tf->tick == NULL)
    tf->tick = ct_call_later(tf->reactor, 1.0, tick_cb, tf);
}

static void th_made(ct__wrap *w) {
  if (tf_of(w)->reads_paused)
    ct__wrap_policy_pause(w, 1);
}

static void th_fini(ct__wrap *w) {
  throttle_factory *tf = tf_of(w);
  if (w->prev != NULL)
    w->prev->next = w->next;
  else
    tf->conns = w->next;
  if (w->next != NULL)
    w->next->prev = w->prev;
  else
    tf->conns_tail = w->prev;
  w->next = w->prev = NULL;
  if (tf->conns == NULL && tf->tick != NULL) {
    ct_delayed_call_cancel(tf->tick);
    tf->tick = NULL;
  }
}

static void th_read(ct__wrap *w, size_t len) {
  throttle_factory *tf = tf_of(w);
  if (tf->read_limit == 0)
    return;
  tf->read_used += len;
  if (tf->read_used >= tf->read_limit && !tf->reads_paused) {
    tf->reads_paused = 1;
    pause_all(tf, 1);
  }
}

static size_t th_allowance(ct__wrap *w) {
  throttle_factory *tf = tf_of(w);
  if (tf->write_limit == 0)
    return SIZE_MAX;
  return tf->write_used < tf->write_limit ? tf->write_limit - tf->write_used
                                          : 0;
}

static void th_wrote(ct__wrap *w, size_t len) {
  tf_of(w)->write_used += len;
}

static void th_destroy(ct_policy_factory *pf) {
  throttle_factory *tf = (throttle_factory *)pf;
  if (tf->tick != NULL)
    ct_delayed_call_cancel(tf->tick);
  free(tf);
}

static const ct__policy_ops throttle_ops = {
    .name = "throttle",
    .conn_init = th_init,
    .connection_made = th_made,
    .data_received = th_read,
    .write_allowance = th_allowance,
    .wrote = th_wrote,
    .conn_fini = th_fini,
    .destroy = th_destroy,
};

ct_policy_factory *ct_throttling_factory_new(ct_reactor *r, ct_factory *wrapped,
                                             size_t read_limit,
                                             size_t write_limit) {
  if (r == NULL || wrapped == NULL)
    return NULL;
  throttle_factory *tf = calloc(1, sizeof *tf);
  if (tf == NULL)
    return NULL;
  ct__policy_factory_init(&tf->pf, wrapped, &throttle_ops);
  tf->reactor = r;
  tf->read_limit = read_limit;
  tf->write_limit = write_limit;
  return &tf->pf;
}
