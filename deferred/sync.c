/* DeferredSemaphore, DeferredLock and DeferredQueue.
 *
 * Each keeps a FIFO of waiting Deferreds (holding a reference on each) and
 * gives every waiter a canceller that takes it out of the FIFO, so a
 * cancelled acquire or get never receives a token or a value. */
#include <stdlib.h>
#include <string.h>

#include "ctwist/deferred.h"
#include "deferred/internal.h"
#include "reactor/buf.h"

/* ------------------------------------------------------------- FIFO */

/* A FIFO of Deferreds (one reference each) on the tree's one ring. */
typedef ct__ring fifo;
#define FIFO_INIT CT__RING_INIT(sizeof(ct_deferred *))

static int fifo_push(fifo *q, ct_deferred *d) {
  return ct__ring_push(q, &d);
}

static ct_deferred *fifo_pop(fifo *q) {
  ct_deferred *d = NULL;
  (void)ct__ring_pop(q, &d);
  return d;
}

static int fifo_remove(fifo *q, ct_deferred *d) {
  for (size_t i = 0; i < ct__ring_len(q); i++) {
    if (*(ct_deferred **)ct__ring_at(q, i) == d) {
      ct__ring_remove(q, i);
      return 1;
    }
  }
  return 0;
}

/* Errback every waiter with CT_ECLOSED, then release the FIFO. */
static void fifo_close(fifo *q, const char *what) {
  ct_deferred *d;
  while ((d = fifo_pop(q)) != NULL) {
    ct__deferred_set_canceller(d, NULL, NULL);
    ct_deferred_errback(d, ct_failure_new(CT_ECLOSED, "%s was freed", what));
    ct_deferred_unref(d);
  }
  ct__ring_free(q);
}

/* ------------------------------------------------------ DeferredSemaphore */

struct ct_deferred_semaphore {
  size_t limit;
  size_t tokens;
  fifo waiting;
};

ct_deferred_semaphore *ct_deferred_semaphore_new(size_t tokens) {
  if (tokens == 0)
    return NULL;
  ct_deferred_semaphore *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return NULL;
  s->limit = tokens;
  s->tokens = tokens;
  s->waiting = (fifo)FIFO_INIT;
  return s;
}

void ct_deferred_semaphore_free(ct_deferred_semaphore *s) {
  if (s == NULL)
    return;
  fifo_close(&s->waiting, "semaphore");
  free(s);
}

static void sem_cancel_acquire(ct_deferred *d, void *arg) {
  ct_deferred_semaphore *s = arg;
  if (fifo_remove(&s->waiting, d)) {
    ct_deferred_errback(d, ct_failure_new(CT_ECANCELLED, CT__CANCELLED_MSG));
    ct_deferred_unref(d); /* the FIFO's reference */
  }
}

ct_deferred *ct_deferred_semaphore_acquire(ct_deferred_semaphore *s) {
  if (s == NULL)
    return NULL;
  ct_deferred *d = ct_deferred_new(sem_cancel_acquire, s);
  if (d == NULL)
    return NULL;
  if (s->tokens > 0) {
    s->tokens--;
    ct_deferred_callback(d, CT_NONE);
    return d;
  }
  if (fifo_push(&s->waiting, ct_deferred_ref(d)) < 0) {
    ct_deferred_unref(d);
    ct_deferred_unref(d);
    return NULL;
  }
  return d;
}

int ct_deferred_semaphore_release(ct_deferred_semaphore *s) {
  if (s == NULL)
    return CT_EINVAL;
  if (s->tokens >= s->limit)
    return CT_ESTATE;
  ct_deferred *d = fifo_pop(&s->waiting);
  if (d == NULL) {
    s->tokens++;
    return 0;
  }
  /* Hand the token straight to the oldest waiter. */
  ct_deferred_callback(d, CT_NONE);
  ct_deferred_unref(d);
  return 0;
}

size_t ct_deferred_semaphore_tokens(const ct_deferred_semaphore *s) {
  return s != NULL ? s->tokens : 0;
}

size_t ct_deferred_semaphore_limit(const ct_deferred_semaphore *s) {
  return s != NULL ? s->limit : 0;
}

size_t ct_deferred_semaphore_waiting(const ct_deferred_semaphore *s) {
  return s != NULL ? ct__ring_len(&s->waiting) : 0;
}

/* run(): acquire, then call fn, then release when fn's result is ready. */

typedef struct sem_run {
  ct_deferred_semaphore *s;
  ct_step_fn fn;
  void *arg;
} sem_run;

static ct_step sem_release_both(ct_result r, void *arg) {
  ct_deferred_semaphore_release(arg);
  return r.failure != NULL ? ct_raise(r.failure) : ct_pass(r.value);
}

static ct_step sem_execute(ct_value v, void *arg) {
  sem_run run = *(sem_run *)arg;
  free(arg);
  ct_value_free(v);
  ct_deferred *inner = ct_maybe_deferred(run.fn, run.arg);
  if (inner == NULL) {
    ct_deferred_semaphore_release(run.s);
    return ct_raise(ct_failure_new(CT_ENOMEM, "semaphore run"));
  }
  if (ct_deferred_add_both(inner, sem_release_both, run.s) < 0) {
    ct_deferred_semaphore_release(run.s);
    ct_deferred_unref(inner);
    return ct_raise(ct_failure_new(CT_ENOMEM, "semaphore run"));
  }
  return ct_wait(inner);
}

/* The acquire failed (cancelled, or the semaphore was freed): no token. */
static ct_step sem_execute_failed(ct_failure *f, void *arg) {
  free(arg);
  return ct_raise(f);
}

ct_deferred *ct_deferred_semaphore_run(ct_deferred_semaphore *s, ct_step_fn fn,
                                       void *arg) {
  if (s == NULL || fn == NULL)
    return NULL;
  sem_run *run = malloc(sizeof(*run));
  if (run == NULL)
    return NULL;
  run->s = s;
  run->fn = fn;
  run->arg = arg;
  ct_deferred *d = ct_deferred_semaphore_acquire(s);
  if (d == NULL) {
    free(run);
    return NULL;
  }
  if (ct_deferred_add_callbacks_full(d, sem_execute, sem_execute_failed, run,
                                     free) < 0) {
    free(run);
    ct_deferred_cancel(d);
    ct_result r;
    if (ct_deferred_take_result(d, &r) == 0) {
      ct_value_free(r.value);
      ct_failure_free(r.failure);
    }
    ct_deferred_unref(d);
    return NULL;
  }
  return d;
}

/* ----------------------------------------------------------- DeferredLock */

/* A lock is a semaphore with one token. */
struct ct_deferred_lock {
  ct_deferred_semaphore sem;
};

ct_deferred_lock *ct_deferred_lock_new(void) {
  ct_deferred_lock *l = calloc(1, sizeof(*l));
  if (l == NULL)
    return NULL;
  l->sem.limit = 1;
  l->sem.tokens = 1;
  l->sem.waiting = (fifo)FIFO_INIT;
  return l;
}

void ct_deferred_lock_free(ct_deferred_lock *l) {
  if (l == NULL)
    return;
  fifo_close(&l->sem.waiting, "lock");
  free(l);
}

ct_deferred *ct_deferred_lock_acquire(ct_deferred_lock *l) {
  return l != NULL ? ct_deferred_semaphore_acquire(&l->sem) : NULL;
}

int ct_deferred_lock_release(ct_deferred_lock *l) {
  return l != NULL ? ct_deferred_semaphore_release(&l->sem) : CT_EINVAL;
}

ct_deferred *ct_deferred_lock_run(ct_deferred_lock *l, ct_step_fn fn,
                                  void *arg) {
  return l != NULL ? ct_deferred_semaphore_run(&l->sem, fn, arg) : NULL;
}

int ct_deferred_lock_locked(const ct_deferred_lock *l) {
  return l != NULL && l->sem.tokens == 0;
}

/* ---------------------------------------------------------- DeferredQueue */

struct ct_deferred_queue {
  size_t size;    /* max pending values */
  size_t backlog; /* max waiting getters */
  ct__ring vals;  /* of ct_value */
  fifo waiting;
};

ct_deferred_queue *ct_deferred_queue_new(size_t size, size_t backlog) {
  ct_deferred_queue *q = calloc(1, sizeof(*q));
  if (q == NULL)
    return NULL;
  q->size = size;
  q->backlog = backlog;
  q->vals = (ct__ring)CT__RING_INIT(sizeof(ct_value));
  q->waiting = (fifo)FIFO_INIT;
  return q;
}

void ct_deferred_queue_free(ct_deferred_queue *q) {
  if (q == NULL)
    return;
  ct_value v;
  while (ct__ring_pop(&q->vals, &v) == 0)
    ct_value_free(v);
  ct__ring_free(&q->vals);
  fifo_close(&q->waiting, "queue");
  free(q);
}

static void queue_cancel_get(ct_deferred *d, void *arg) {
  ct_deferred_queue *q = arg;
  if (fifo_remove(&q->waiting, d)) {
    ct_deferred_errback(d, ct_failure_new(CT_ECANCELLED, CT__CANCELLED_MSG));
    ct_deferred_unref(d);
  }
}

int ct_deferred_queue_put(ct_deferred_queue *q, ct_value v) {
  if (q == NULL)
    return CT_EINVAL;
  ct_deferred *d = fifo_pop(&q->waiting);
  if (d != NULL) {
    ct_deferred_callback(d, v);
    ct_deferred_unref(d);
    return 0;
  }
  if (q->size != CT_UNLIMITED && ct__ring_len(&q->vals) >= q->size)
    return CT_EQUEUEFULL;
  if (ct__ring_push(&q->vals, &v) != 0)
    return CT_ENOMEM;
  return 0;
}

ct_deferred *ct_deferred_queue_get_at(const char *file, int line,
                                      ct_deferred_queue *q) {
  if (q == NULL)
    return NULL;
  ct_value v;
  if (ct__ring_pop(&q->vals, &v) == 0)
    return ct_succeed_at(file, line, v);
  if (q->backlog != CT_UNLIMITED && ct__ring_len(&q->waiting) >= q->backlog)
    return ct_fail_at(file, line,
                      ct_failure_new(CT_EQUEUEEMPTY,
                                     "queue is empty and %zu getters already "
                                     "wait (backlog limit)",
                                     ct__ring_len(&q->waiting)));
  ct_deferred *d = ct_deferred_new_at(file, line, queue_cancel_get, q);
  if (d == NULL)
    return NULL;
  if (fifo_push(&q->waiting, ct_deferred_ref(d)) < 0) {
    ct_deferred_unref(d);
    ct_deferred_unref(d);
    return NULL;
  }
  return d;
}

size_t ct_deferred_queue_pending(const ct_deferred_queue *q) {
  return q != NULL ? ct__ring_len(&q->vals) : 0;
}

size_t ct_deferred_queue_waiting(const ct_deferred_queue *q) {
  return q != NULL ? ct__ring_len(&q->waiting) : 0;
}
