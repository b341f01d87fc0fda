/*
 * The reactor: lifecycle, run/stop with shutdown phases, call_soon,
 * call_when_running and calls from other threads.
 *
 * The loop is libevent's event_base_loop() with EVLOOP_NO_EXIT_ON_EMPTY, so
 * that a reactor with nothing to watch still runs until it is stopped.
 * Everything that must happen "on a later turn" (shutdown phases, released
 * holds, call_soon) goes through one zero-timeout event: libevent runs
 * timeouts after polling, so such calls never starve I/O and never run
 * re-entrantly inside the callback that queued them.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event_struct.h>

#include "reactor/impl.h"

/* ------------------------------------------------------------ call_soon */

static void soon_event_cb(evutil_socket_t fd, short what, void *arg);

static void soon_schedule(ct_reactor *r) {
  static const struct timeval zero = {0, 0};
  if (!r->soon_scheduled && evtimer_add(r->soon_ev, &zero) == 0)
    r->soon_scheduled = 1;
}

int ct__reactor_call_soon(ct_reactor *r, ct_call_cb fn, void *arg) {
  if (r == NULL || fn == NULL)
    return CT_EINVAL;
  ct__thunk t = {fn, arg};
  if (ct__ring_push(&r->soon, &t) != 0)
    return CT_ENOMEM;
  if (!r->soon_draining)
    soon_schedule(r);
  return 0;
}

static void soon_event_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  ct_reactor *r = arg;
  r->soon_scheduled = 0;
  r->soon_draining = 1;
  /* Only what was queued before this turn; the rest waits for the next. */
  size_t n = ct__ring_len(&r->soon);
  ct__thunk t;
  while (n-- > 0 && ct__ring_pop(&r->soon, &t) == 0)
    t.fn(t.arg);
  r->soon_draining = 0;
  if (ct__ring_len(&r->soon) > 0)
    soon_schedule(r);
}

/* ------------------------------------------------------ flush before poll */

/*
 * flush_ev is never added, only activated: event_active() puts it at the
 * end of libevent's active queue, which libevent drains before it polls
 * again, so the nodes are flushed after the callbacks of this turn and
 * before the reactor waits.  The list is taken whole before the walk;
 * nodes queued by a flush re-activate the event and run in the same turn.
 */
static void flush_event_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  ct_reactor *r = arg;
  r->flush_active = 0;
  ct__flush_node *h = &r->flush_head;
  while (h->next != h) {
    ct__flush_node *n = h->next;
    ct__reactor_flush_cancel(r, n);
    n->fn(n);
  }
}

void ct__reactor_flush_later(ct_reactor *r, ct__flush_node *n) {
  if (n->next != NULL)
    return; /* queued already */
  ct__flush_node *h = &r->flush_head;
  n->prev = h->prev;
  n->next = h;
  h->prev->next = n;
  h->prev = n;
  if (!r->flush_active) {
    r->flush_active = 1;
    event_active(r->flush_ev, EV_TIMEOUT, 0);
  }
}

void ct__reactor_flush_cancel(ct_reactor *r, ct__flush_node *n) {
  (void)r;
  if (n->next == NULL)
    return;
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = NULL;
}

ct__gather *ct__reactor_gather(ct_reactor *r) {
  return &r->gather;
}

/* --------------------------------------------------------- thread calls */

/*
 * Calls from other threads go through ctwist's own mutex-protected queue and
 * an eventfd watched by an ordinary EV_READ event.  libevent's base is
 * created with EVENT_BASE_FLAG_NOLOCK and libevent's thread support is never
 * switched on, so no event activation anywhere pays for a mutex; the only
 * cross-thread operations are on the queue (under thread_mu) and the
 * eventfd write, which the kernel makes safe.
 *
 * tq_wake is set, under the lock, by the caller that must write the
 * eventfd; the reactor clears it when it takes the queue.  So one write
 * wakes the loop per batch, and a call queued after the reactor took the
 * queue always writes again.
 */

static void wake_drain(int fd) {
  uint64_t v;
  while (read(fd, &v, sizeof v) < 0 && errno == EINTR) {
  }
}

static void wake_write(int fd) {
  uint64_t one = 1;
  /* EAGAIN would mean the counter is about to overflow: the eventfd is
   * readable anyway, which is all a wake-up needs. */
  while (write(fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

static void thread_event_cb(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  ct_reactor *r = arg;
  /* Reset the eventfd before taking the queue: a wake-up written after
   * this point belongs to a call that is either in the batch we take now
   * (a harmless spurious wake-up later) or queued after it (it wakes us
   * again).  Reading after taking the queue could swallow the latter. */
  wake_drain((int)fd);
  pthread_mutex_lock(&r->thread_mu);
  ct__thunk *q = r->tq;
  size_t n = r->tq_len;
  r->tq = NULL;
  r->tq_len = r->tq_cap = 0;
  r->tq_wake = 0;
  pthread_mutex_unlock(&r->thread_mu);
  /* Only this batch; calls queued while it runs wait for the next turn. */
  for (size_t i = 0; i < n; i++)
    q[i].fn(q[i].arg);
  free(q);
}

int ct_reactor_call_from_thread(ct_reactor *r, ct_call_cb fn, void *arg) {
  if (r == NULL || fn == NULL)
    return CT_EINVAL;
  pthread_mutex_lock(&r->thread_mu);
  if (r->closing) {
    pthread_mutex_unlock(&r->thread_mu);
    return CT_ECLOSED;
  }
  if (r->tq_len == r->tq_cap) {
    size_t cap = r->tq_cap ? r->tq_cap * 2 : 64;
    ct__thunk *q = realloc(r->tq, cap * sizeof(*q));
    if (q == NULL) {
      pthread_mutex_unlock(&r->thread_mu);
      return CT_ENOMEM;
    }
    r->tq = q;
    r->tq_cap = cap;
  }
  r->tq[r->tq_len++] = (ct__thunk){fn, arg};
  /* One wake-up per batch: later callers see tq_wake set and only queue. */
  int wake = !r->tq_wake;
  r->tq_wake = 1;
  pthread_mutex_unlock(&r->thread_mu);
  if (wake)
    wake_write(r->wake_fd);
  return 0;
}

/* ------------------------------------------------------------ lifecycle */

/* A base without libevent's locks: everything on it runs on the reactor
 * thread (see "thread calls" above). */
static struct event_base *base_new(void) {
  struct event_config *cfg = event_config_new();
  if (cfg == NULL)
    return NULL;
  struct event_base *base = NULL;
  if (event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK) == 0)
    base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  return base;
}

static ct_reactor *reactor_new(ct_clock *clock) {
  ct_log_capture_libevent();
  /* SIGPIPE's disposition is the application's: every socket write of the
   * library passes MSG_NOSIGNAL, so a closed peer is an EPIPE error, never
   * a kill, whatever the disposition is (see reactor.h). */

  ct_reactor *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return NULL;
  r->phase = -1;
  r->next_trigger_id = 1;
  r->wake_fd = -1;
  r->soon = (ct__ring)CT__RING_INIT(sizeof(ct__thunk));
  r->flush_head.prev = r->flush_head.next = &r->flush_head;
  if (pthread_mutex_init(&r->thread_mu, NULL) != 0) {
    free(r);
    return NULL;
  }
  r->base = base_new();
  if (r->base == NULL)
    goto fail;
  r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (r->wake_fd < 0)
    goto fail;
  r->timer_ev = evtimer_new(r->base, ct__timer_event_cb, r);
  r->soon_ev = evtimer_new(r->base, soon_event_cb, r);
  r->flush_ev = event_new(r->base, -1, 0, flush_event_cb, r);
  r->thread_ev =
      event_new(r->base, r->wake_fd, EV_READ | EV_PERSIST, thread_event_cb, r);
  if (r->timer_ev == NULL || r->soon_ev == NULL || r->thread_ev == NULL ||
      r->flush_ev == NULL || event_add(r->thread_ev, NULL) != 0)
    goto fail;
  if (clock != NULL) {
    r->clock = clock;
    clock->r = r;
  }
  return r;
fail:
  if (r->timer_ev)
    event_free(r->timer_ev);
  if (r->soon_ev)
    event_free(r->soon_ev);
  if (r->flush_ev)
    event_free(r->flush_ev);
  if (r->thread_ev)
    event_free(r->thread_ev);
  if (r->base)
    event_base_free(r->base);
  if (r->wake_fd >= 0)
    close(r->wake_fd);
  pthread_mutex_destroy(&r->thread_mu);
  free(r);
  return NULL;
}

ct_reactor *ct_reactor_new(void) {
  return reactor_new(NULL);
}

ct_reactor *ct_reactor_new_with_clock(ct_clock *clock) {
  if (clock == NULL || clock->r != NULL)
    return NULL;
  return reactor_new(clock);
}

void ct_reactor_free(ct_reactor *r) {
  if (r == NULL)
    return;
  if (r->running || r->iterating) {
    ct_log(CT_LOG_ERROR, "reactor",
           "ct_reactor_free() on a running reactor: ignored (leaked)");
    return;
  }
  pthread_mutex_lock(&r->thread_mu);
  r->closing = 1;
  pthread_mutex_unlock(&r->thread_mu);

  ct__services_close(r);
  ct__log_limits_free(r);
  ct__io_free(r);
  ct__timers_free(r);
  event_free(r->timer_ev);
  event_free(r->soon_ev);
  event_free(r->flush_ev);
  event_free(r->thread_ev);
  ct__services_free(r);
  event_base_free(r->base);
  close(r->wake_fd);
  free(r->read_buf);
  if (r->clock != NULL)
    r->clock->r = NULL;
  ct__ring_free(&r->soon);
  ct__buf_free(&r->gather.buf);
  free(r->tq);
  free(r->triggers);
  free(r->when_running);
  pthread_mutex_destroy(&r->thread_mu);
  free(r);
}

char *ct__reactor_read_buffer(ct_reactor *r) {
  if (r->read_buf == NULL)
    r->read_buf = malloc(CT__READ_BUFFER_SIZE);
  return r->read_buf;
}

struct event_base *ct__reactor_base(ct_reactor *r) {
  return r != NULL ? r->base : NULL;
}

void *ct_reactor_event_base(ct_reactor *r) {
  return ct__reactor_base(r);
}

int ct_reactor_is_running(const ct_reactor *r) {
  return r != NULL && r->running;
}

/* ----------------------------------------------------------- run / stop */

int ct_reactor_call_when_running(ct_reactor *r, ct_call_cb fn, void *arg) {
  if (r == NULL || fn == NULL)
    return CT_EINVAL;
  if (r->running)
    return ct__reactor_call_soon(r, fn, arg);
  if (r->nwhen_running == r->when_running_cap) {
    size_t cap = r->when_running_cap ? r->when_running_cap * 2 : 4;
    ct__thunk *q = realloc(r->when_running, cap * sizeof(*q));
    if (q == NULL)
      return CT_ENOMEM;
    r->when_running = q;
    r->when_running_cap = cap;
  }
  r->when_running[r->nwhen_running++] = (ct__thunk){fn, arg};
  return 0;
}

int ct_reactor_run(ct_reactor *r) {
  if (r == NULL)
    return CT_EINVAL;
  if (r->running || r->iterating)
    return CT_ESTATE;
  r->running = 1;
  r->stopping = 0;
  r->phase = -1;
  r->phase_finish_queued = 0;
  r->hurried = 0;
  ct__signals_install_defaults(r);
  /* Startup callbacks, in registration order; those registered while
   * these run go to call_soon (the reactor counts as running now). */
  ct__thunk *start = r->when_running;
  size_t nstart = r->nwhen_running;
  r->when_running = NULL;
  r->nwhen_running = r->when_running_cap = 0;
  for (size_t i = 0; i < nstart; i++)
    start[i].fn(start[i].arg);
  free(start);
  if (event_base_loop(r->base, EVLOOP_NO_EXIT_ON_EMPTY) < 0)
    ct_log(CT_LOG_CRITICAL, "reactor", "the libevent loop failed; run returns");
  ct__signals_remove_defaults(r);
  r->running = 0;
  r->stopping = 0;
  r->hurried = 0;
  r->phase = -1;
  r->phase_active = 0;
  r->hold_gen++; /* a hold still held now can never count again */
  r->holds = 0;
  return 0;
}

static void wait_bound_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  (void)arg; /* its only job is to end the wait */
}

/* One turn; `bound` NULL: poll without waiting, else wait at most that
 * long for something to become ready. */
static int iterate(ct_reactor *r, const struct timeval *bound) {
  if (r == NULL)
    return CT_EINVAL;
  /* Never a loop inside a loop: callbacks of one reactor must not nest
   * (the stream transports' shared read buffer relies on it, and libevent
   * would refuse anyway). */
  if (r->running || r->iterating)
    return CT_ESTATE;
  r->iterating = 1;
  if (bound == NULL) {
    event_base_loop(r->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
  } else {
    /* A timer of our own bounds the wait (event_base_loopexit would leave
     * a pending exit behind for a later loop when I/O comes first). */
    struct event bound_ev;
    evtimer_assign(&bound_ev, r->base, wait_bound_cb, NULL);
    evtimer_add(&bound_ev, bound);
    event_base_loop(r->base, EVLOOP_ONCE);
    evtimer_del(&bound_ev);
  }
  r->iterating = 0;
  return 0;
}

int ct_reactor_iterate(ct_reactor *r) {
  return iterate(r, NULL);
}

int ct_reactor_iterate_wait(ct_reactor *r, double max_seconds) {
  int64_t ns = ct__seconds_to_ns(max_seconds);
  struct timeval tv = {(time_t)(ns / CT_NS_PER_SEC),
                       (suseconds_t)(ns % CT_NS_PER_SEC / 1000)};
  return iterate(r, &tv);
}

static void phase_run(void *arg);

/*
 * The end of a phase.  The last release of a hold queues it for the next
 * turn, and until then the phase is still active: a hold taken in between
 * counts (phase_finish then waits for its release instead), and only one
 * phase_finish is ever queued, so a second "last release" in that window
 * cannot end the next phase too.
 */
static void phase_finish(void *arg) {
  ct_reactor *r = arg;
  r->phase_finish_queued = 0;
  if (r->holds > 0)
    return; /* a hold taken since the last release: its release ends it */
  r->phase_active = 0;
  if (r->phase >= CT_PHASE_AFTER) {
    event_base_loopbreak(r->base);
    return;
  }
  r->phase++;
  if (ct__reactor_call_soon(r, phase_run, r) != 0)
    phase_run(r); /* out of memory: run it now rather than hang */
}

static void triggers_compact(ct_reactor *r) {
  size_t j = 0;
  for (size_t i = 0; i < r->ntriggers; i++)
    if (r->triggers[i].fn != NULL)
      r->triggers[j++] = r->triggers[i];
  r->ntriggers = j;
}

/* Run the triggers of `phase` in registration order. */
static void triggers_run(ct_reactor *r, int phase) {
  r->triggers_walking++;
  /* Index loop: triggers may add or remove triggers while we walk. */
  for (size_t i = 0; i < r->ntriggers; i++) {
    ct__trigger t = r->triggers[i];
    if (t.phase == phase && t.fn != NULL)
      t.fn(t.arg);
  }
  if (--r->triggers_walking == 0)
    triggers_compact(r);
}

static void phase_run(void *arg) {
  ct_reactor *r = arg;
  r->phase_active = 1;
  r->phase_triggers_done = 0;
  r->holds = 0;
  triggers_run(r, r->phase);
  r->phase_triggers_done = 1;
  if (r->holds == 0)
    phase_finish(r);
}

int ct_reactor_stop(ct_reactor *r) {
  if (r == NULL)
    return CT_EINVAL;
  if (!r->running || r->stopping)
    return CT_ENOTRUNNING;
  int rc = ct__reactor_call_soon(r, phase_run, r);
  if (rc != 0)
    return rc;
  r->stopping = 1;
  r->phase = CT_PHASE_BEFORE;
  return 0;
}

/* ------------------------------------------------------------- triggers */

long ct_reactor_add_trigger(ct_reactor *r, ct_phase phase, ct_call_cb fn,
                            void *arg) {
  if (r == NULL || fn == NULL ||
      (phase != CT_PHASE_BEFORE && phase != CT_PHASE_DURING &&
       phase != CT_PHASE_AFTER && phase != CT_PHASE_ABORT))
    return CT_EINVAL;
  if (r->ntriggers == r->triggers_cap) {
    size_t cap = r->triggers_cap ? r->triggers_cap * 2 : 8;
    ct__trigger *t = realloc(r->triggers, cap * sizeof(*t));
    if (t == NULL)
      return CT_ENOMEM;
    r->triggers = t;
    r->triggers_cap = cap;
  }
  long id = r->next_trigger_id++;
  r->triggers[r->ntriggers++] = (ct__trigger){id, (int)phase, fn, arg};
  return id;
}

int ct_reactor_remove_trigger(ct_reactor *r, long id) {
  if (r == NULL)
    return CT_EINVAL;
  for (size_t i = 0; i < r->ntriggers; i++) {
    if (r->triggers[i].id == id && r->triggers[i].fn != NULL) {
      r->triggers[i].fn = NULL;
      if (r->triggers_walking == 0)
        triggers_compact(r);
      return 0;
    }
  }
  return CT_ENOTFOUND;
}

ct_phase_hold *ct_reactor_hold_phase(ct_reactor *r) {
  if (r == NULL || !r->phase_active || r->hurried)
    return NULL;
  ct_phase_hold *h = malloc(sizeof(*h));
  if (h == NULL)
    return NULL;
  h->r = r;
  h->gen = r->hold_gen;
  r->holds++;
  return h;
}

void ct_phase_hold_release(ct_phase_hold *h) {
  if (h == NULL)
    return;
  ct_reactor *r = h->r;
  unsigned gen = h->gen;
  free(h);
  if (gen != r->hold_gen)
    return; /* voided by ct_reactor_hurry() or the end of run */
  if (r->holds > 0 && --r->holds == 0 && r->phase_triggers_done &&
      !r->phase_finish_queued) {
    if (ct__reactor_call_soon(r, phase_finish, r) == 0)
      r->phase_finish_queued = 1;
    else
      phase_finish(r);
  }
}

/*
 * Hurry a stop in progress (a second SIGINT/SIGTERM): the CT_PHASE_ABORT
 * triggers abort what the phases were waiting for, then every hold is
 * voided (its later release does nothing) and no new one is granted, so
 * the remaining phases run their triggers on the next turns without
 * waiting and ct_reactor_run() returns.
 */
int ct_reactor_hurry(ct_reactor *r) {
  if (r == NULL)
    return CT_EINVAL;
  if (!r->running || !r->stopping)
    return CT_ENOTRUNNING;
  if (r->hurried)
    return 0;
  r->hurried = 1;
  triggers_run(r, CT_PHASE_ABORT);
  r->hold_gen++;
  r->holds = 0;
  if (r->phase_active && r->phase_triggers_done && !r->phase_finish_queued) {
    if (ct__reactor_call_soon(r, phase_finish, r) == 0)
      r->phase_finish_queued = 1;
    else
      phase_finish(r);
  }
  return 0;
}

int ct_reactor_is_hurried(const ct_reactor *r) {
  return r != NULL && r->hurried;
}
