/* DeferredSemaphore, DeferredLock and DeferredQueue contracts: behaviours
 * of test_defer.py's OtherPrimitivesTests (testLock, testSemaphore,
 * testQueue, test_cancel*). */
#include "test_deferred_common.h"

/* ----------------------------------------------------------------- lock */

DTEST(deferred_lock, acquire_release_in_order) {
  rec r = {0};
  ct_deferred_lock *l = ct_deferred_lock_new();
  cr_assert_not(ct_deferred_lock_locked(l));
  ct_deferred *a = ct_deferred_lock_acquire(l);
  cr_assert(ct_deferred_called(a));
  cr_assert(ct_deferred_lock_locked(l));
  ct_deferred *b = ct_deferred_lock_acquire(l);
  ct_deferred *c = ct_deferred_lock_acquire(l);
  ct_deferred_add_callback(b, cb_add, (void *)1);
  ct_deferred_add_callback(b, cb_record, &r);
  ct_deferred_add_callback(c, cb_add, (void *)2);
  ct_deferred_add_callback(c, cb_record, &r);
  cr_assert_eq(r.n, 0);
  cr_assert_eq(ct_deferred_lock_release(l), 0);
  REC_EXPECT(&r, 1);
  cr_assert(ct_deferred_lock_locked(l));
  ct_deferred_lock_release(l);
  cr_assert_eq(r.n, 2);
  cr_assert_eq(r.items[1], 2);
  ct_deferred_lock_release(l);
  cr_assert_not(ct_deferred_lock_locked(l));
  cr_assert_eq(ct_deferred_lock_release(l), CT_ESTATE);
  ct_deferred_unref(a);
  ct_deferred_unref(b);
  ct_deferred_unref(c);
  ct_deferred_lock_free(l);
}

DTEST(deferred_lock, cancel_after_acquired_keeps_lock) {
  ct_deferred_lock *l = ct_deferred_lock_new();
  ct_deferred *a = ct_deferred_lock_acquire(l);
  ct_deferred_cancel(a);
  cr_assert(ct_deferred_lock_locked(l));
  cr_assert_not(ct_deferred_is_failed(a));
  ct_deferred_lock_release(l);
  ct_deferred_unref(a);
  ct_deferred_lock_free(l);
}

DTEST(deferred_lock, cancel_before_acquired_removes_waiter) {
  ct_deferred_lock *l = ct_deferred_lock_new();
  ct_deferred *a = ct_deferred_lock_acquire(l);
  ct_deferred *b = ct_deferred_lock_acquire(l);
  ct_deferred_cancel(b);
  cr_assert_eq(take_failure_code(b), CT_ECANCELLED);
  ct_deferred_lock_release(l);
  cr_assert_not(ct_deferred_lock_locked(l), "b must not get the lock");
  ct_deferred_unref(a);
  ct_deferred_unref(b);
  ct_deferred_lock_free(l);
}

typedef struct job {
  ct_deferred *pending; /* the Deferred the job returns */
  int ran;
} job;

static ct_step job_fn(void *arg) {
  job *j = arg;
  j->ran++;
  return ct_wait(ct_deferred_ref(j->pending));
}

DTEST(deferred_lock, run_serialises_jobs) {
  ct_deferred_lock *l = ct_deferred_lock_new();
  job j1 = {ct_deferred_new(NULL, NULL), 0};
  job j2 = {ct_deferred_new(NULL, NULL), 0};
  ct_deferred *r1 = ct_deferred_lock_run(l, job_fn, &j1);
  ct_deferred *r2 = ct_deferred_lock_run(l, job_fn, &j2);
  cr_assert_eq(j1.ran, 1);
  cr_assert_eq(j2.ran, 0, "second job waits for the lock");
  ct_deferred_callback(j1.pending, ct_value_int(10));
  cr_assert_eq(take_int(r1), 10);
  cr_assert_eq(j2.ran, 1);
  cr_assert(ct_deferred_lock_locked(l));
  ct_deferred_errback(j2.pending, ct_failure_new(CT_EPROTO, "job 2"));
  cr_assert_eq(take_failure_code(r2), CT_EPROTO);
  cr_assert_not(ct_deferred_lock_locked(l), "released after a failure too");
  ct_deferred_unref(r1);
  ct_deferred_unref(r2);
  ct_deferred_unref(j1.pending);
  ct_deferred_unref(j2.pending);
  ct_deferred_lock_free(l);
}

static ct_step sync_fail(void *arg) {
  return ct_raise(ct_failure_new(CT_EUSER, "sync"));
}

DTEST(deferred_lock, run_synchronous_failure_releases) {
  ct_deferred_lock *l = ct_deferred_lock_new();
  ct_deferred *d = ct_deferred_lock_run(l, sync_fail, NULL);
  cr_assert_eq(take_failure_code(d), CT_EUSER);
  cr_assert_not(ct_deferred_lock_locked(l));
  ct_deferred_unref(d);
  ct_deferred_lock_free(l);
}

DTEST(deferred_lock, free_with_waiters_errbacks_them) {
  ct_deferred_lock *l = ct_deferred_lock_new();
  ct_deferred *a = ct_deferred_lock_acquire(l);
  ct_deferred *b = ct_deferred_lock_acquire(l);
  ct_deferred_lock_free(l);
  cr_assert_eq(take_failure_code(b), CT_ECLOSED);
  ct_deferred_cancel(b); /* no canceller reaches the freed lock */
  ct_deferred_unref(a);
  ct_deferred_unref(b);
  ct_deferred_lock_free(NULL);
}

/* ------------------------------------------------------------ semaphore */

DTEST(deferred_semaphore, tokens_and_fifo_waiters) {
  rec r = {0};
  ct_deferred_semaphore *s = ct_deferred_semaphore_new(2);
  cr_assert_eq(ct_deferred_semaphore_limit(s), 2);
  ct_deferred *a = ct_deferred_semaphore_acquire(s);
  ct_deferred *b = ct_deferred_semaphore_acquire(s);
  cr_assert(ct_deferred_called(a) && ct_deferred_called(b));
  cr_assert_eq(ct_deferred_semaphore_tokens(s), 0);
  ct_deferred *c = ct_deferred_semaphore_acquire(s);
  ct_deferred *d = ct_deferred_semaphore_acquire(s);
  cr_assert_eq(ct_deferred_semaphore_waiting(s), 2);
  ct_deferred_add_callback(c, cb_add, (void *)3);
  ct_deferred_add_callback(c, cb_record, &r);
  ct_deferred_add_callback(d, cb_add, (void *)4);
  ct_deferred_add_callback(d, cb_record, &r);
  ct_deferred_semaphore_release(s);
  REC_EXPECT(&r, 3);
  ct_deferred_semaphore_release(s);
  cr_assert_eq(r.items[1], 4);
  cr_assert_eq(ct_deferred_semaphore_tokens(s), 0);
  ct_deferred_semaphore_release(s);
  ct_deferred_semaphore_release(s);
  cr_assert_eq(ct_deferred_semaphore_tokens(s), 2);
  cr_assert_eq(ct_deferred_semaphore_release(s), CT_ESTATE);
  ct_deferred_unref(a);
  ct_deferred_unref(b);
  ct_deferred_unref(c);
  ct_deferred_unref(d);
  ct_deferred_semaphore_free(s);
}

DTEST(deferred_semaphore, invalid_tokens) {
  cr_assert_null(ct_deferred_semaphore_new(0));
  cr_assert_null(ct_deferred_semaphore_acquire(NULL));
  cr_assert_eq(ct_deferred_semaphore_release(NULL), CT_EINVAL);
  cr_assert_eq(ct_deferred_semaphore_tokens(NULL), 0);
  ct_deferred_semaphore *s = ct_deferred_semaphore_new(1);
  cr_assert_null(ct_deferred_semaphore_run(s, NULL, NULL));
  ct_deferred_semaphore_free(s);
}

DTEST(deferred_semaphore, cancel_after_acquired_keeps_token) {
  ct_deferred_semaphore *s = ct_deferred_semaphore_new(1);
  ct_deferred *a = ct_deferred_semaphore_acquire(s);
  ct_deferred_cancel(a);
  cr_assert_eq(ct_deferred_semaphore_tokens(s), 0);
  ct_deferred_semaphore_release(s);
  ct_deferred_unref(a);
  ct_deferred_semaphore_free(s);
}

DTEST(deferred_semaphore, cancel_before_acquired) {
  ct_deferred_semaphore *s = ct_deferred_semaphore_new(1);
  ct_deferred *a = ct_deferred_semaphore_acquire(s);
  ct_deferred *b = ct_deferred_semaphore_acquire(s);
  ct_deferred *c = ct_deferred_semaphore_acquire(s);
  ct_deferred_cancel(b);
  cr_assert_eq(take_failure_code(b), CT_ECANCELLED);
  cr_assert_eq(ct_deferred_semaphore_waiting(s), 1);
  ct_deferred_semaphore_release(s);
  cr_assert(ct_deferred_called(c), "c, not the cancelled b, gets the token");
  ct_deferred_semaphore_release(s);
  cr_assert_eq(ct_deferred_semaphore_tokens(s), 1);
  ct_deferred_unref(a);
  ct_deferred_unref(b);
  ct_deferred_unref(c);
  ct_deferred_semaphore_free(s);
}

static int concurrent, max_concurrent;

static ct_step counted_job(void *arg) {
  concurrent++;
  if (concurrent > max_concurrent)
    max_concurrent = concurrent;
  return ct_wait(ct_deferred_ref(arg));
}

static ct_step job_done(ct_value v, void *arg) {
  concurrent--;
  return ct_pass(v);
}

DTEST(deferred_semaphore, run_limits_concurrency) {
  enum { JOBS = 10, LIMIT = 3 };
  concurrent = max_concurrent = 0;
  ct_deferred_semaphore *s = ct_deferred_semaphore_new(LIMIT);
  ct_deferred *pending[JOBS], *results[JOBS];
  for (int i = 0; i < JOBS; i++) {
    pending[i] = ct_deferred_new(NULL, NULL);
    ct_deferred_add_callback(pending[i], job_done, NULL);
    results[i] = ct_deferred_semaphore_run(s, counted_job, pending[i]);
  }
  cr_assert_eq(concurrent, LIMIT);
  cr_assert_eq(ct_deferred_semaphore_waiting(s), JOBS - LIMIT);
  for (int i = 0; i < JOBS; i++) {
    ct_deferred_callback(pending[i], ct_value_int(i));
    cr_assert_eq(take_int(results[i]), i);
  }
  cr_assert_eq(max_concurrent, LIMIT);
  cr_assert_eq(ct_deferred_semaphore_tokens(s), LIMIT);
  for (int i = 0; i < JOBS; i++) {
    ct_deferred_unref(pending[i]);
    ct_deferred_unref(results[i]);
  }
  ct_deferred_semaphore_free(s);
}

DTEST(deferred_semaphore, cancelled_run_never_calls_fn) {
  ct_deferred_semaphore *s = ct_deferred_semaphore_new(1);
  ct_deferred *held = ct_deferred_semaphore_acquire(s);
  job j = {ct_deferred_new(NULL, NULL), 0};
  ct_deferred *r = ct_deferred_semaphore_run(s, job_fn, &j);
  ct_deferred_cancel(r);
  cr_assert_eq(take_failure_code(r), CT_ECANCELLED);
  ct_deferred_semaphore_release(s);
  cr_assert_eq(j.ran, 0);
  cr_assert_eq(ct_deferred_semaphore_tokens(s), 1);
  ct_deferred_unref(r);
  ct_deferred_unref(held);
  ct_deferred_unref(j.pending);
  ct_deferred_semaphore_free(s);
}

DTEST(deferred_semaphore, abandoned_waiting_run_is_freed_with_semaphore) {
  ct_deferred_semaphore *s = ct_deferred_semaphore_new(1);
  ct_deferred *held = ct_deferred_semaphore_acquire(s);
  job j = {ct_deferred_new(NULL, NULL), 0};
  ct_deferred *r = ct_deferred_semaphore_run(s, job_fn, &j);
  log_capture lc;
  log_capture_start(&lc);
  ct_deferred_unref(r);          /* nobody waits for the result */
  ct_deferred_semaphore_free(s); /* the waiter is errbacked CT_ECLOSED */
  cr_assert_eq(j.ran, 0);
  /* ... and nobody handles that failure: reported once. */
  log_expect_unhandled(&lc, 1, "ECLOSED");
  log_capture_stop(&lc);
  ct_deferred_unref(held);
  ct_deferred_unref(j.pending);
}

/* ---------------------------------------------------------------- queue */

DTEST(deferred_queue, put_then_get_fifo) {
  ct_deferred_queue *q = ct_deferred_queue_new(CT_UNLIMITED, CT_UNLIMITED);
  for (int i = 0; i < 20; i++)
    cr_assert_eq(ct_deferred_queue_put(q, heap_int(i)), 0);
  cr_assert_eq(ct_deferred_queue_pending(q), 20);
  for (int i = 0; i < 20; i++) {
    ct_deferred *d = ct_deferred_queue_get(q);
    cr_assert_eq(take_int(d), i);
    ct_deferred_unref(d);
  }
  cr_assert_eq(ct_deferred_queue_pending(q), 0);
  ct_deferred_queue_free(q);
}

DTEST(deferred_queue, get_then_put_wakes_oldest_waiter) {
  ct_deferred_queue *q = ct_deferred_queue_new(CT_UNLIMITED, CT_UNLIMITED);
  ct_deferred *a = ct_deferred_queue_get(q);
  ct_deferred *b = ct_deferred_queue_get(q);
  cr_assert_eq(ct_deferred_queue_waiting(q), 2);
  cr_assert_not(ct_deferred_called(a));
  ct_deferred_queue_put(q, ct_value_int(1));
  cr_assert_eq(take_int(a), 1);
  cr_assert_not(ct_deferred_called(b));
  ct_deferred_queue_put(q, ct_value_int(2));
  cr_assert_eq(take_int(b), 2);
  cr_assert_eq(ct_deferred_queue_waiting(q), 0);
  ct_deferred_unref(a);
  ct_deferred_unref(b);
  ct_deferred_queue_free(q);
}

DTEST(deferred_queue, size_limit) {
  ct_deferred_queue *q = ct_deferred_queue_new(2, CT_UNLIMITED);
  cr_assert_eq(ct_deferred_queue_put(q, ct_value_int(1)), 0);
  cr_assert_eq(ct_deferred_queue_put(q, ct_value_int(2)), 0);
  ct_value v = heap_int(3);
  cr_assert_eq(ct_deferred_queue_put(q, v), CT_EQUEUEFULL);
  ct_value_free(v); /* not taken on error */
  ct_deferred *d = ct_deferred_queue_get(q);
  cr_assert_eq(take_int(d), 1);
  ct_deferred_unref(d);
  cr_assert_eq(ct_deferred_queue_put(q, ct_value_int(4)), 0);
  ct_deferred_queue_free(q); /* frees the pending values */
}

DTEST(deferred_queue, zero_size_only_hands_to_waiters) {
  ct_deferred_queue *q = ct_deferred_queue_new(0, CT_UNLIMITED);
  cr_assert_eq(ct_deferred_queue_put(q, ct_value_int(1)), CT_EQUEUEFULL);
  ct_deferred *d = ct_deferred_queue_get(q);
  cr_assert_eq(ct_deferred_queue_put(q, ct_value_int(2)), 0);
  cr_assert_eq(take_int(d), 2);
  ct_deferred_unref(d);
  ct_deferred_queue_free(q);
}

DTEST(deferred_queue, backlog_limit) {
  ct_deferred_queue *q = ct_deferred_queue_new(CT_UNLIMITED, 1);
  ct_deferred *a = ct_deferred_queue_get(q);
  ct_deferred *b = ct_deferred_queue_get(q);
  cr_assert_eq(take_failure_code(b), CT_EQUEUEEMPTY);
  cr_assert_eq(ct_deferred_queue_waiting(q), 1);
  ct_deferred_unref(b);
  ct_deferred_queue_free(q); /* a: errbacked CT_ECLOSED */
  cr_assert_eq(take_failure_code(a), CT_ECLOSED);
  ct_deferred_unref(a);
}

DTEST(deferred_queue, cancel_after_synchronous_get) {
  ct_deferred_queue *q = ct_deferred_queue_new(CT_UNLIMITED, CT_UNLIMITED);
  ct_deferred_queue_put(q, ct_value_int(1));
  ct_deferred *d = ct_deferred_queue_get(q);
  ct_deferred_cancel(d);
  cr_assert_eq(take_int(d), 1);
  ct_deferred_unref(d);
  ct_deferred_queue_free(q);
}

DTEST(deferred_queue, cancel_waiting_get) {
  ct_deferred_queue *q = ct_deferred_queue_new(CT_UNLIMITED, CT_UNLIMITED);
  ct_deferred *d = ct_deferred_queue_get(q);
  ct_deferred_cancel(d);
  cr_assert_eq(take_failure_code(d), CT_ECANCELLED);
  cr_assert_eq(ct_deferred_queue_waiting(q), 0);
  /* The value now waits in the queue for the next get. */
  ct_deferred_queue_put(q, heap_int(5));
  cr_assert_eq(ct_deferred_queue_pending(q), 1);
  ct_deferred *e = ct_deferred_queue_get(q);
  cr_assert_eq(take_int(e), 5);
  ct_deferred_unref(d);
  ct_deferred_unref(e);
  ct_deferred_queue_free(q);
}

static ct_step cb_get_again(ct_value v, void *arg) {
  /* A getter re-arming from its callback (a consumer loop). */
  ct_deferred_queue *q = arg;
  ct_deferred *next = ct_deferred_queue_get(q);
  ct_deferred_unref(next); /* left waiting in the queue */
  return ct_pass(v);
}

DTEST(deferred_queue, reentrant_get_from_callback) {
  ct_deferred_queue *q = ct_deferred_queue_new(CT_UNLIMITED, CT_UNLIMITED);
  ct_deferred *d = ct_deferred_queue_get(q);
  ct_deferred_add_callback(d, cb_get_again, q);
  ct_deferred_queue_put(q, ct_value_int(1));
  cr_assert_eq(ct_deferred_queue_waiting(q), 1);
  ct_deferred_queue_put(q, heap_int(2)); /* delivered to the abandoned get */
  cr_assert_eq(take_int(d), 1);
  ct_deferred_unref(d);
  ct_deferred_queue_free(q);
}

DTEST(deferred_queue, ring_buffer_wraps) {
  ct_deferred_queue *q = ct_deferred_queue_new(CT_UNLIMITED, CT_UNLIMITED);
  int next_put = 0, next_get = 0;
  for (int round = 0; round < 50; round++) {
    for (int i = 0; i < 7; i++)
      ct_deferred_queue_put(q, ct_value_int(next_put++));
    for (int i = 0; i < 5; i++) {
      ct_deferred *d = ct_deferred_queue_get(q);
      cr_assert_eq(take_int(d), next_get++);
      ct_deferred_unref(d);
    }
  }
  cr_assert_eq(ct_deferred_queue_pending(q), (size_t)(next_put - next_get));
  ct_deferred_queue_free(q);
}

DTEST(deferred_queue, bad_arguments) {
  cr_assert_eq(ct_deferred_queue_put(NULL, CT_NONE), CT_EINVAL);
  cr_assert_null(ct_deferred_queue_get(NULL));
  cr_assert_eq(ct_deferred_queue_pending(NULL), 0);
  ct_deferred_queue_free(NULL);
}

DTEST(deferred_queue, unhandled_close_names_the_callers_line) {
  log_capture lc;
  log_capture_start(&lc);
  ct_deferred_queue *q = ct_deferred_queue_new(CT_UNLIMITED, CT_UNLIMITED);
  int line = __LINE__ + 1;
  ct_deferred *d = ct_deferred_queue_get(q);
  ct_deferred_queue_free(q);
  ct_deferred_unref(d);
  cr_assert_eq(lc.unhandled, 1);
  char site[64];
  snprintf(site, sizeof(site), "test_deferred_sync.c:%d", line);
  cr_assert_not_null(strstr(lc.last, site), "%s", lc.last);
  log_capture_stop(&lc);
}
