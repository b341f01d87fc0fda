/* DeferredSemaphore, DeferredLock and DeferredQueue.
 *
 * Each keeps a FIFO of waiting Deferreds (holding a reference on each) and
 * gives every waiter a canceller that takes it out of the FIFO, so a
 * cancelled acquire or get never receives a token or a value. */
#include <stdlib.h>
#include <string.h>

#include "ctwist/deferred.h"
#include "deferred/internal.h"

/* ------------------------------------------------------------- FIFO */

typedef struct fifo {
  void **items;
  size_t head, count, cap; /* items[head .. head+count) (no wrap) */
} fifo;

static int fifo_push(fifo *q, void *item) {
  if (q->head + q->count == q->cap) {
    if (q->head > 0) {
      memmove(q->items, q->items + q->head, q->count * sizeof(void *));
      q->head = 0;
    } else {
      size_t cap = q->cap ? q->cap * 2 : 4;
      void **items = realloc(q->items, cap * sizeof(void *));
      if (items == NULL)
        return CT_ENOMEM;
      q->items = items;
      q->cap = cap;
    }
  }
  q->items[q->head + q->count++] = item;
  return 0;
}

static void *fifo_pop(fifo *q) {
  if (q->count == 0)
    return NULL;
  void *item = q->items[q->head++];
  if (--q->count == 0)
    q->head = 0;
  return item;
}

static int fifo_remove(fifo *q, void *item) {
  for (size_t i = 0; i < q->count; i++) {
    if (q->items[q->head + i] == item) {
      memmove(q->items + q->head + i, q->items + q->head + i + 1,
              (q->count - i - 1) * sizeof(void *));
      q->count--;
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
  free(q->items);
  q->items = NULL;
  q->cap = 0;
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
  return s != NULL ? s->waiting.count : 0;
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
  ct_value *vals; /* ring buffer */
  size_t vhead, vcount, vcap;
  fifo waiting;
};

ct_deferred_queue *ct_deferred_queue_new(size_t size, size_t backlog) {
  ct_deferred_queue *q = calloc(1, sizeof(*q));
  if (q == NULL)
    return NULL;
  q->size = size;
  q->backlog = backlog;
  return q;
}

void ct_deferred_queue_free(ct_deferred_queue *q) {
  if (q == NULL)
    return;
  for (size_t i = 0; i < q->vcount; i++)
    ct_value_free(q->vals[(q->vhead + i) % q->vcap]);
  free(q->vals);
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
  if (q->size != CT_UNLIMITED && q->vcount >= q->size)
    return CT_EQUEUEFULL;
  if (q->vcount == q->vcap) {
    size_t cap = q->vcap ? q->vcap * 2 : 8;
    ct_value *vals = malloc(cap * sizeof(*vals));
    if (vals == NULL)
      return CT_ENOMEM;
    for (size_t i = 0; i < q->vcount; i++)
      vals[i] = q->vals[(q->vhead + i) % q->vcap];
    free(q->vals);
    q->vals = vals;
    q->vhead = 0;
    q->vcap = cap;
  }
  q->vals[(q->vhead + q->vcount++) % q->vcap] = v;
  return 0;
}

ct_deferred *ct_deferred_queue_get_at(const char *file, int line,
                                      ct_deferred_queue *q) {
  if (q == NULL)
    return NULL;
  if (q->vcount > 0) {
    ct_value v = q->vals[q->vhead];
    q->vhead = (q->vhead + 1) % q->vcap;
    q->vcount--;
    return ct_succeed_at(file, line, v);
  }
  if (q->backlog != CT_UNLIMITED && q->waiting.count >= q->backlog)
    return ct_fail_at(file, line,
                      ct_failure_new(CT_EQUEUEEMPTY,
                                     "queue is empty and %zu getters already "
                                     "wait (backlog limit)",
                                     q->waiting.count));
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
  return q != NULL ? q->vcount : 0;
}

size_t ct_deferred_queue_waiting(const ct_deferred_queue *q) {
  return q != NULL ? q->waiting.count : 0;
}
