/*
 * Delayed calls (callLater) and the fake clock.
 *
 * ctwist keeps its own timer queue instead of one libevent timer per call:
 * a 4-ary min-heap of compact (deadline, seq, call) entries.  The sequence
 * number breaks ties, so calls due at the same nanosecond run in the order
 * they were scheduled -- something libevent's heap does not promise.  Only
 * the earliest deadline is armed as a libevent timer, and it is re-armed
 * only when a new call becomes earlier than what is armed: cancelling the
 * head leaves an early wake-up in place, which costs one empty pass and is
 * much cheaper than re-arming on every change.
 *
 * A fake clock drives the same heap from ct_clock_advance(), so tests run
 * the exact code that production runs, minus the libevent timer.
 *
 * Call objects are 40 bytes taken from a slab (one malloc per 1023 calls)
 * with a free list, which keeps the memory per pending call well under
 * what a libevent `struct event` costs.  Chunks are kept until the reactor
 * is freed.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reactor/impl.h"

#define CHUNK_CALLS 1023

struct ct__call_chunk {
  struct ct__call_chunk *next;
  struct ct_delayed_call calls[CHUNK_CALLS];
};

/* ------------------------------------------------------------------ time */

static int64_t mono_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * CT_NS_PER_SEC + ts.tv_nsec;
}

/* About 285 years: far enough to mean "never", small enough not to overflow
 * when added to the current time. */
#define CT_NS_MAX (INT64_C(9000000000) * CT_NS_PER_SEC)

int64_t ct__seconds_to_ns(double seconds) {
  if (!(seconds > 0)) /* negative or NaN */
    return 0;
  if (seconds >= 9.0e9)
    return CT_NS_MAX;
  return (int64_t)(seconds * 1e9 + 0.5);
}

int64_t ct__seconds_to_ns_signed(double seconds) {
  if (isnan(seconds))
    return 0;
  if (seconds < 0)
    return -ct__seconds_to_ns(-seconds);
  return ct__seconds_to_ns(seconds);
}

int64_t ct__reactor_now_ns(const ct_reactor *r) {
  return r->clock != NULL ? r->clock->now_ns : mono_now_ns();
}

int ct__reactor_has_fake_clock(const ct_reactor *r) {
  return r->clock != NULL;
}

double ct_reactor_seconds(const ct_reactor *r) {
  if (r == NULL)
    return 0.0;
  return (double)ct__reactor_now_ns(r) / 1e9;
}

double ct__reactor_turn_seconds(ct_reactor *r) {
  ct__gather *g = &r->gather;
  if (g->dispatching == 0 || r->clock != NULL)
    return ct_reactor_seconds(r);
  if (!g->now_valid) {
    g->now_ns = mono_now_ns();
    g->now_valid = 1;
  }
  return (double)g->now_ns / 1e9;
}

/* ------------------------------------------------------------------ slab */

static struct ct_delayed_call *call_alloc(ct_reactor *r) {
#ifdef CT_CALL_MALLOC
  struct ct_delayed_call *c = calloc(1, sizeof(*c));
  if (c != NULL)
    r->live_calls++;
  return c;
#else
  struct ct_delayed_call *c = r->free_calls;
  if (c != NULL) {
    r->free_calls = c->u.next_free;
    r->live_calls++;
    return c;
  }
  /* Bump allocation through the chunks, in address order. */
  if (r->bump_chunk != NULL && r->bump_idx == CHUNK_CALLS) {
    r->bump_chunk = r->bump_chunk->next;
    r->bump_idx = 0;
  }
  if (r->bump_chunk == NULL) {
    struct ct__call_chunk *ch = malloc(sizeof(*ch));
    if (ch == NULL)
      return NULL;
    ch->next = NULL;
    if (r->chunks_tail != NULL)
      r->chunks_tail->next = ch;
    else
      r->chunks = ch;
    r->chunks_tail = ch;
    r->bump_chunk = ch;
    r->bump_idx = 0;
  }
  r->live_calls++;
  return &r->bump_chunk->calls[r->bump_idx++];
#endif
}

static void call_release(ct_reactor *r, struct ct_delayed_call *c) {
  r->live_calls--;
#ifdef CT_CALL_MALLOC
  free(c);
#else
  c->state = CT__CALL_FREE;
  if (r->live_calls == 0) {
    /* Every call is free: forget the free list, whose order is that of
     * the last release (deadline order, i.e. scattered), and hand out
     * memory in address order again.  O(1), and it keeps the next burst of
     * calls cache-friendly. */
    r->free_calls = NULL;
    r->bump_chunk = r->chunks;
    r->bump_idx = 0;
    return;
  }
  c->u.next_free = r->free_calls;
  r->free_calls = c;
#endif
}

/* Frees the call once nobody can reach it: not pending, not running, not
 * referenced. */
static void call_maybe_release(struct ct_delayed_call *c) {
  if (c->refs == 0 && !c->running && c->state != CT__CALL_PENDING)
    call_release(c->r, c);
}

/* ------------------------------------------------------------------ heap */

static inline int entry_less(const ct__heap_entry *a, const ct__heap_entry *b) {
  return a->deadline < b->deadline ||
         (a->deadline == b->deadline && a->seq < b->seq);
}

static void sift_up(ct_reactor *r, size_t i, ct__heap_entry e) {
  ct__heap_entry *h = r->heap;
  while (i > 0) {
    size_t p = (i - 1) / 4;
    if (!entry_less(&e, &h[p]))
      break;
    h[i] = h[p];
    h[i].call->heap_idx = (uint32_t)i;
    i = p;
  }
  h[i] = e;
  e.call->heap_idx = (uint32_t)i;
}

static void sift_down(ct_reactor *r, size_t i, ct__heap_entry e) {
  ct__heap_entry *h = r->heap;
  size_t n = r->heap_len;
  for (;;) {
    size_t c = 4 * i + 1;
    if (c >= n)
      break;
    size_t end = c + 4 < n ? c + 4 : n;
    size_t best = c;
    for (size_t k = c + 1; k < end; k++)
      if (entry_less(&h[k], &h[best]))
        best = k;
    if (!entry_less(&h[best], &e))
      break;
    h[i] = h[best];
    h[i].call->heap_idx = (uint32_t)i;
    i = best;
  }
  h[i] = e;
  e.call->heap_idx = (uint32_t)i;
}

static int heap_reserve(ct_reactor *r) {
  if (r->heap_len < r->heap_cap)
    return 0;
  if (r->heap_cap >= UINT32_MAX / 2)
    return CT_ENOMEM;
  size_t cap = r->heap_cap ? r->heap_cap * 2 : 64;
  ct__heap_entry *h = realloc(r->heap, cap * sizeof(*h));
  if (h == NULL)
    return CT_ENOMEM;
  r->heap = h;
  r->heap_cap = cap;
  return 0;
}

static void heap_push(ct_reactor *r, struct ct_delayed_call *c) {
  ct__heap_entry e = {c->deadline, r->seq++, c};
  r->heap_len++;
  sift_up(r, r->heap_len - 1, e);
}

static void heap_remove(ct_reactor *r, size_t i) {
  ct__heap_entry last = r->heap[--r->heap_len];
  if (i == r->heap_len)
    return;
  if (i > 0 && entry_less(&last, &r->heap[(i - 1) / 4]))
    sift_up(r, i, last);
  else
    sift_down(r, i, last);
}

/* Re-place entry i after its key changed. */
static void heap_update(ct_reactor *r, size_t i, ct__heap_entry e) {
  if (i > 0 && entry_less(&e, &r->heap[(i - 1) / 4]))
    sift_up(r, i, e);
  else
    sift_down(r, i, e);
}

/* ------------------------------------------------------ the libevent timer */

static void timer_arm(ct_reactor *r, int64_t deadline) {
  int64_t delta = deadline - mono_now_ns();
  if (delta < 0)
    delta = 0;
  /* Round up to whole microseconds: waking early only costs a pass. */
  int64_t us = (delta + 999) / 1000;
  struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
  if (evtimer_add(r->timer_ev, &tv) == 0) {
    r->timer_armed = 1;
    r->armed_deadline = deadline;
  }
}

/* Arms the libevent timer if the head is earlier than what is armed.  Not
 * while a batch is running: the batch re-arms once at its end. */
static void timer_maybe_arm(ct_reactor *r) {
  if (r->clock != NULL || r->firing || r->heap_len == 0)
    return;
  int64_t d = r->heap[0].deadline;
  if (r->timer_armed && r->armed_deadline <= d)
    return;
  timer_arm(r, d);
}

/* Runs the head call.  The handle stays valid while its callback runs. */
static void run_head(ct_reactor *r) {
  struct ct_delayed_call *c = r->heap[0].call;
  heap_remove(r, 0);
  c->state = CT__CALL_RUNNING;
  c->running = 1;
  c->fn(c->u.arg);
  c->running = 0;
  if (c->state == CT__CALL_RUNNING)
    c->state = CT__CALL_CALLED;
  call_maybe_release(c);
}

void ct__timer_event_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  ct_reactor *r = arg;
  r->timer_armed = 0;
  int64_t now = mono_now_ns();
  /* Calls scheduled by this batch (call_later(0) included) wait for the
   * next turn, so that a callback re-arming itself at 0 cannot starve I/O. */
  uint64_t limit = r->seq;
  r->firing = 1;
  while (r->heap_len > 0 && r->heap[0].deadline <= now &&
         r->heap[0].seq < limit)
    run_head(r);
  r->firing = 0;
  if (r->heap_len > 0)
    timer_arm(r, r->heap[0].deadline);
}

/* ------------------------------------------------------------ public API */

ct_delayed_call *ct__call_later_ns(ct_reactor *r, int64_t delay_ns,
                                   ct_call_cb fn, void *arg) {
  if (r == NULL || fn == NULL)
    return NULL;
  if (delay_ns < 0)
    delay_ns = 0;
  if (delay_ns > CT_NS_MAX)
    delay_ns = CT_NS_MAX;
  if (heap_reserve(r) != 0)
    return NULL;
  struct ct_delayed_call *c = call_alloc(r);
  if (c == NULL)
    return NULL;
  c->fn = fn;
  c->u.arg = arg;
  c->r = r;
  c->deadline = ct__reactor_now_ns(r) + delay_ns;
  c->refs = 0;
  c->running = 0;
  c->state = CT__CALL_PENDING;
  heap_push(r, c);
  timer_maybe_arm(r);
  return c;
}

ct_delayed_call *ct_call_later(ct_reactor *r, double seconds, ct_call_cb fn,
                               void *arg) {
  return ct__call_later_ns(r, ct__seconds_to_ns(seconds), fn, arg);
}

static int not_pending_code(const struct ct_delayed_call *c) {
  return c->state == CT__CALL_CANCELLED ? CT_EALREADY_CANCELLED
                                        : CT_EALREADY_CALLED;
}

int ct_delayed_call_cancel(ct_delayed_call *c) {
  if (c == NULL)
    return CT_EINVAL;
  if (c->state != CT__CALL_PENDING)
    return not_pending_code(c);
  heap_remove(c->r, c->heap_idx);
  c->state = CT__CALL_CANCELLED;
  call_maybe_release(c);
  return 0;
}

int ct_delayed_call_reset(ct_delayed_call *c, double seconds) {
  if (c == NULL)
    return CT_EINVAL;
  ct_reactor *r = c->r;
  int64_t ns = ct__seconds_to_ns(seconds);
  if (c->state == CT__CALL_PENDING) {
    c->deadline = ct__reactor_now_ns(r) + ns;
    /* A reset is a new scheduling: it goes behind equal deadlines. */
    ct__heap_entry e = {c->deadline, r->seq++, c};
    heap_update(r, c->heap_idx, e);
  } else if (c->state == CT__CALL_RUNNING && c->running) {
    /* Re-arming itself from inside its own callback. */
    if (heap_reserve(r) != 0)
      return CT_ENOMEM;
    c->deadline = ct__reactor_now_ns(r) + ns;
    c->state = CT__CALL_PENDING;
    heap_push(r, c);
  } else {
    return not_pending_code(c);
  }
  timer_maybe_arm(r);
  return 0;
}

int ct_delayed_call_delay(ct_delayed_call *c, double seconds) {
  if (c == NULL)
    return CT_EINVAL;
  if (c->state != CT__CALL_PENDING)
    return not_pending_code(c);
  ct_reactor *r = c->r;
  c->deadline += ct__seconds_to_ns_signed(seconds);
  /* Keeps its sequence number: still ordered by when it was scheduled. */
  ct__heap_entry e = r->heap[c->heap_idx];
  e.deadline = c->deadline;
  heap_update(r, c->heap_idx, e);
  timer_maybe_arm(r);
  return 0;
}

int ct_delayed_call_active(const ct_delayed_call *c) {
  return c != NULL && c->state == CT__CALL_PENDING;
}

double ct_delayed_call_get_time(const ct_delayed_call *c) {
  return c != NULL ? (double)c->deadline / 1e9 : 0.0;
}

ct_delayed_call *ct_delayed_call_ref(ct_delayed_call *c) {
  if (c != NULL)
    c->refs++;
  return c;
}

void ct_delayed_call_unref(ct_delayed_call *c) {
  if (c == NULL || c->refs == 0)
    return;
  c->refs--;
  call_maybe_release(c);
}

size_t ct_reactor_pending_calls(const ct_reactor *r) {
  return r != NULL ? r->heap_len : 0;
}

void ct__timers_free(ct_reactor *r) {
#ifdef CT_CALL_MALLOC
  /* Pending calls are dropped; done calls still referenced are the
   * referrer's to release (LeakSanitizer reports those that never are). */
  for (size_t i = 0; i < r->heap_len; i++) {
    struct ct_delayed_call *c = r->heap[i].call;
    c->state = CT__CALL_CANCELLED;
    if (c->refs == 0)
      free(c);
  }
#endif
  struct ct__call_chunk *ch = r->chunks;
  while (ch != NULL) {
    struct ct__call_chunk *next = ch->next;
    free(ch);
    ch = next;
  }
  r->chunks = r->chunks_tail = r->bump_chunk = NULL;
  r->free_calls = NULL;
  r->live_calls = 0;
  free(r->heap);
  r->heap = NULL;
  r->heap_len = r->heap_cap = 0;
}

/* ------------------------------------------------------------- fake clock */

ct_clock *ct_clock_new(void) {
  return calloc(1, sizeof(ct_clock));
}

int ct_clock_free(ct_clock *c) {
  if (c == NULL)
    return 0;
  if (c->r != NULL) {
    /* Freeing it would silently move the reactor to the real clock (or
     * leave it pointing at freed memory): refuse, keep everything. */
    ct_log(CT_LOG_ERROR, "reactor",
           "ct_clock_free() on the clock of a live reactor: refused (free "
           "the reactor first)");
    return CT_EBUSY;
  }
  free(c);
  return 0;
}

double ct_clock_seconds(const ct_clock *c) {
  return c != NULL ? (double)c->now_ns / 1e9 : 0.0;
}

long ct_clock_advance(ct_clock *c, double seconds) {
  if (c == NULL || !(seconds >= 0))
    return CT_EINVAL;
  c->now_ns += ct__seconds_to_ns(seconds);
  ct_reactor *r = c->r;
  if (r == NULL)
    return 0;
  /* Like task.Clock.advance: time jumps first, then everything due runs,
   * including calls those callbacks schedule within the new time. */
  long n = 0;
  while (r->heap_len > 0 && r->heap[0].deadline <= c->now_ns) {
    run_head(r);
    n++;
  }
  return n;
}

long ct_clock_pump(ct_clock *c, const double *steps, size_t n) {
  if (c == NULL || (steps == NULL && n > 0))
    return CT_EINVAL;
  long total = 0;
  for (size_t i = 0; i < n; i++) {
    long k = ct_clock_advance(c, steps[i]);
    if (k < 0)
      return k;
    total += k;
  }
  return total;
}
