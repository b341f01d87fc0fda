/* Nested Deferreds: a callback returning another Deferred (ct_wait), the
 * explicit chainDeferred (ct_deferred_chain), and the #4593 trampoline
 * (chains of any length and depth in constant C stack).  Behaviours from
 * test_defer.py: test_synchronousImplicitChain, test_asynchronousImplicit*,
 * test_doubleAsynchronousImplicitChaining, test_nestedAsynchronousChained*,
 * test_innerCallbacksPreserved, test_callbackOrderPreserved,
 * test_boundedStackDepth, test_circularChain*, ... */
#include <pthread.h>

#include "test_deferred_common.h"

/* Callback: wait on the Deferred in arg (the callback's reference is
 * taken with ct_deferred_ref, as ct_wait takes one over). */
DTEST(deferred_chain, wait_on_unfired_inner_pauses_outer) {
  rec r = {0};
  ct_deferred *outer = ct_deferred_new(NULL, NULL);
  ct_deferred *inner = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(outer, cb_wait_on, inner);
  ct_deferred_add_callback(outer, cb_record, &r);
  ct_deferred_callback(outer, ct_value_int(1));
  cr_assert_eq(r.n, 0);
  cr_assert(ct_deferred_waiting(outer));
  cr_assert_not(ct_deferred_has_result(outer));
  ct_deferred_callback(inner, ct_value_int(2));
  cr_assert_not(ct_deferred_waiting(outer));
  REC_EXPECT(&r, 2);
  cr_assert_eq(take_int(outer), 2);
  /* The inner result was handed over: inner holds CT_NONE. */
  cr_assert_eq(take_int(inner), 0);
  ct_deferred_unref(inner);
  ct_deferred_unref(outer);
}

DTEST(deferred_chain, wait_on_fired_inner_takes_result_at_once) {
  ct_deferred *outer = ct_deferred_new(NULL, NULL);
  ct_deferred *inner = ct_succeed(ct_value_int(5));
  ct_deferred_add_callback(outer, cb_wait_on, inner);
  ct_deferred_add_callback(outer, cb_add, (void *)1);
  ct_deferred_callback(outer, CT_NONE);
  cr_assert_eq(take_int(outer), 6);
  ct_deferred_unref(inner);
  ct_deferred_unref(outer);
}

DTEST(deferred_chain, wait_on_failed_inner_moves_failure_outward) {
  log_capture lc;
  log_capture_start(&lc);
  rec r = {0};
  ct_deferred *outer = ct_deferred_new(NULL, NULL);
  ct_deferred *inner = ct_fail(ct_failure_new(CT_EPROTO, "inner"));
  ct_deferred_add_callback(outer, cb_wait_on, inner);
  ct_deferred_add_errback(outer, eb_record, &r);
  ct_deferred_add_errback(outer, eb_recover, (void *)3);
  ct_deferred_callback(outer, CT_NONE);
  REC_EXPECT(&r, CT_EPROTO);
  cr_assert_eq(take_int(outer), 3);
  /* The failure moved out of inner: freeing it logs nothing. */
  cr_assert_not(ct_deferred_is_failed(inner));
  ct_deferred_unref(inner);
  ct_deferred_unref(outer);
  cr_assert_eq(lc.unhandled, 0);
  log_capture_stop(&lc);
}

DTEST(deferred_chain, async_inner_failure_reaches_outer_errback) {
  ct_deferred *outer = ct_deferred_new(NULL, NULL);
  ct_deferred *inner = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(outer, cb_wait_on, inner);
  ct_deferred_add_errback(outer, eb_recover, (void *)11);
  ct_deferred_callback(outer, CT_NONE);
  ct_deferred_errback(inner, ct_failure_new(CT_ECONNRESET, "later"));
  cr_assert_eq(take_int(outer), 11);
  ct_deferred_unref(inner);
  ct_deferred_unref(outer);
}

DTEST(deferred_chain, inner_callbacks_run_before_outer_resumes) {
  rec r = {0};
  ct_deferred *outer = ct_deferred_new(NULL, NULL);
  ct_deferred *inner = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(inner, cb_add, (void *)100);
  ct_deferred_add_callback(inner, cb_record, &r);
  ct_deferred_add_callback(outer, cb_wait_on, inner);
  ct_deferred_add_callback(outer, cb_record, &r);
  ct_deferred_callback(outer, CT_NONE);
  ct_deferred_callback(inner, ct_value_int(1));
  REC_EXPECT(&r, 101, 101);
  ct_deferred_unref(inner);
  ct_deferred_unref(outer);
}

/* test_callbackOrderPreserved: callbacks added to the inner Deferred after
 * the outer started waiting run after the outer's continuation. */
DTEST(deferred_chain, callbacks_added_to_inner_later_run_after_outer) {
  rec r = {0};
  ct_deferred *outer = ct_deferred_new(NULL, NULL);
  ct_deferred *inner = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(outer, cb_wait_on, inner);
  ct_deferred_add_callback(outer, cb_add, (void *)10);
  ct_deferred_add_callback(outer, cb_record, &r);
  ct_deferred_callback(outer, CT_NONE);
  ct_deferred_add_callback(inner, cb_record, &r); /* sees CT_NONE (0) */
  ct_deferred_callback(inner, ct_value_int(1));
  REC_EXPECT(&r, 11, 0);
  ct_deferred_unref(inner);
  ct_deferred_unref(outer);
}

DTEST(deferred_chain, double_nesting) {
  ct_deferred *n[3];
  double_nest_new(n);
  cr_assert(ct_deferred_waiting(n[0]));
  cr_assert(ct_deferred_waiting(n[1]));
  ct_deferred_callback(n[2], ct_value_int(42));
  cr_assert_eq(take_int(n[0]), 42);
  double_nest_free(n);
}

/* test_nestedAsynchronousChainedDeferreds: an inner Deferred whose own
 * callback returns a third, fired later. */
DTEST(deferred_chain, nested_async_with_extra_callbacks) {
  rec r = {0};
  ct_deferred *started = ct_deferred_new(NULL, NULL);
  ct_deferred *inner = ct_deferred_new(NULL, NULL);
  ct_deferred *third = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(inner, cb_wait_on, third);
  ct_deferred_add_callback(inner, cb_add, (void *)1000);
  ct_deferred_add_callback(started, cb_wait_on, inner);
  ct_deferred_add_callback(started, cb_record, &r);
  ct_deferred_callback(started, CT_NONE);
  ct_deferred_callback(inner, CT_NONE);
  cr_assert_eq(r.n, 0);
  ct_deferred_callback(third, ct_value_int(7));
  REC_EXPECT(&r, 1007);
  ct_deferred_unref(started);
  ct_deferred_unref(inner);
  ct_deferred_unref(third);
}

DTEST(deferred_chain, wait_on_paused_fired_inner_waits_for_unpause) {
  ct_deferred *outer = ct_deferred_new(NULL, NULL);
  ct_deferred *inner = ct_deferred_new(NULL, NULL);
  ct_deferred_pause(inner);
  ct_deferred_callback(inner, ct_value_int(9));
  ct_deferred_add_callback(outer, cb_wait_on, inner);
  ct_deferred_callback(outer, CT_NONE);
  cr_assert(ct_deferred_waiting(outer));
  ct_deferred_unpause(inner);
  cr_assert_eq(take_int(outer), 9);
  ct_deferred_unref(inner);
  ct_deferred_unref(outer);
}

DTEST(deferred_chain, wait_on_itself_fails_einval) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(d, cb_wait_on, d);
  ct_deferred_callback(d, CT_NONE);
  cr_assert_eq(take_failure_code(d), CT_EINVAL);
  ct_deferred_unref(d);
}

DTEST(deferred_chain, circular_wait_fails_einval) {
  ct_deferred *a = ct_deferred_new(NULL, NULL);
  ct_deferred *b = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(b, cb_wait_on, a);
  ct_deferred_add_callback(a, cb_wait_on, b);
  ct_deferred_callback(a, CT_NONE); /* a waits on b */
  ct_deferred_callback(b, CT_NONE); /* b would wait on a: refused */
  /* b's chain failed with EINVAL, which flowed into a. */
  cr_assert_eq(take_failure_code(a), CT_EINVAL);
  ct_deferred_unref(a);
  ct_deferred_unref(b);
}

static ct_step cb_wait_null(ct_value v, void *arg) {
  ct_value_free(v);
  return ct_wait(NULL);
}

DTEST(deferred_chain, wait_on_null_fails_einval) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(d, cb_wait_null, NULL);
  ct_deferred_callback(d, CT_NONE);
  cr_assert_eq(take_failure_code(d), CT_EINVAL);
  ct_deferred_unref(d);
}

DTEST(deferred_chain, explicit_chain_fires_other) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred *other = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(other, cb_add, (void *)1);
  cr_assert_eq(ct_deferred_chain(d, other), 0);
  ct_deferred_callback(d, ct_value_int(5));
  cr_assert_eq(take_int(other), 6);
  cr_assert_eq(take_int(d), 0); /* d continues with CT_NONE */
  ct_deferred_unref(d);
  ct_deferred_unref(other);
}

DTEST(deferred_chain, explicit_chain_carries_failure) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred *other = ct_deferred_new(NULL, NULL);
  ct_deferred_chain(d, other);
  ct_deferred_errback(d, ct_failure_new(CT_EPROTO, "x"));
  cr_assert_eq(take_failure_code(other), CT_EPROTO);
  cr_assert_not(ct_deferred_is_failed(d));
  ct_deferred_unref(d);
  ct_deferred_unref(other);
}

DTEST(deferred_chain, explicit_chain_to_called_deferred_fails) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred *other = ct_succeed(ct_value_int(1));
  ct_deferred_chain(d, other);
  ct_deferred_callback(d, heap_int(2));
  cr_assert_eq(take_failure_code(d), CT_EALREADY_CALLED);
  cr_assert_eq(take_int(other), 1);
  ct_deferred_unref(d);
  ct_deferred_unref(other);
}

DTEST(deferred_chain, explicit_chain_after_fire_and_abandoned) {
  /* Chained after firing: runs at once. */
  ct_deferred *d = ct_succeed(ct_value_int(3));
  ct_deferred *other = ct_deferred_new(NULL, NULL);
  ct_deferred_chain(d, other);
  cr_assert_eq(take_int(other), 3);
  ct_deferred_unref(d);
  ct_deferred_unref(other);
  /* Abandoned before firing: the chain's reference on other is dropped. */
  d = ct_deferred_new(NULL, NULL);
  other = ct_deferred_new(NULL, NULL);
  ct_deferred_chain(d, other);
  ct_deferred_unref(other);
  ct_deferred_unref(d);
}

DTEST(deferred_chain, outer_abandoned_while_waiting_is_freed) {
  rec r = {0};
  ct_deferred *outer = ct_deferred_new(NULL, NULL);
  ct_deferred *inner = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(outer, cb_wait_on, inner);
  ct_deferred_add_callback(outer, cb_record, &r);
  ct_deferred_callback(outer, heap_int(1));
  ct_deferred_unref(outer); /* nobody wants the outer result any more */
  ct_deferred_callback(inner, heap_int(2));
  cr_assert_eq(r.n, 0);
  /* The continuation was removed: inner keeps its own result. */
  cr_assert_eq(take_int(inner), 2);
  ct_deferred_unref(inner);
}

DTEST(deferred_chain, outer_keeps_inner_alive_while_waiting) {
  ct_deferred *outer = ct_deferred_new(NULL, NULL);
  ct_deferred *inner = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(outer, cb_wait_on, inner);
  ct_deferred_callback(outer, CT_NONE);
  ct_deferred_unref(inner); /* only outer's reference is left */
  cr_assert(ct_deferred_waiting(outer));
  /* Cancelling the outer reaches the inner through that reference. */
  ct_deferred_cancel(outer);
  cr_assert_eq(take_failure_code(outer), CT_ECANCELLED);
  ct_deferred_unref(outer);
}

DTEST(deferred_chain, whole_nest_abandoned_unfired) {
  enum { N = 1000 };
  ct_deferred *ds[N];
  for (int i = 0; i < N; i++)
    ds[i] = ct_deferred_new(NULL, NULL);
  for (int i = 0; i + 1 < N; i++)
    ct_deferred_add_callback(ds[i], cb_wait_on, ds[i + 1]);
  for (int i = 0; i + 1 < N; i++)
    ct_deferred_callback(ds[i], heap_int(i));
  /* All but the last wait; drop every reference, last first. */
  for (int i = N - 1; i >= 0; i--)
    ct_deferred_unref(ds[i]);
}

/* ---------------------------------------------------------- stack depth */

#define SMALL_STACK (256 * 1024)

typedef struct stack_job {
  void (*fn)(struct stack_job *);
  long n;
  long result;
  int ok;
} stack_job;

static void *stack_thread(void *arg) {
  stack_job *job = arg;
  job->fn(job);
  return NULL;
}

/* Run job->fn on a thread with a 256 KiB stack: recursion per callback or
 * per nesting level would overflow it long before the end. */
static void run_on_small_stack(stack_job *job) {
  pthread_attr_t attr;
  pthread_t t;
  cr_assert_eq(pthread_attr_init(&attr), 0);
  cr_assert_eq(pthread_attr_setstacksize(&attr, SMALL_STACK), 0);
  cr_assert_eq(pthread_create(&t, &attr, stack_thread, job), 0);
  cr_assert_eq(pthread_join(t, NULL), 0);
  pthread_attr_destroy(&attr);
}

/* If `d` has a successful result, store it as an int in job->result and
 * set job->ok. */
static void job_take_value(stack_job *job, ct_deferred *d) {
  ct_result r;
  if (ct_deferred_take_result(d, &r) == 0 && r.failure == NULL) {
    job->result = ct_value_as_int(r.value);
    job->ok = 1;
  }
}

/* Run fn with job size n on the small stack; assert it completed. */
static stack_job run_job(void (*fn)(stack_job *), long n) {
  stack_job job = {fn, n, 0, 0};
  run_on_small_stack(&job);
  cr_assert(job.ok, "job did not complete (n=%ld)", n);
  return job;
}

static ct_step cb_inc(ct_value v, void *arg) {
  return ct_pass(ct_value_int(ct_value_as_int(v) + 1));
}

static void long_chain(stack_job *job) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  for (long i = 0; i < job->n; i++)
    if (ct_deferred_add_callback(d, cb_inc, NULL) != 0)
      return;
  ct_deferred_callback(d, ct_value_int(0));
  job_take_value(job, d);
  ct_deferred_unref(d);
}

DTEST(deferred_chain, million_callbacks_in_constant_stack) {
  stack_job job = run_job(long_chain, 1000000);
  cr_assert_eq(job.result, 1000000);
}

typedef struct nest {
  ct_deferred **ds;
  long n;
} nest;

/* n fresh Deferreds; when `link` is set, Deferred i's callback waits on
 * Deferred i+1 (cb_wait_on). */
static ct_deferred **nest_new(long n, int link) {
  ct_deferred **ds = malloc((size_t)n * sizeof(*ds));
  for (long i = 0; i < n; i++)
    ds[i] = ct_deferred_new(NULL, NULL);
  if (link)
    for (long i = 0; i + 1 < n; i++)
      ct_deferred_add_callback(ds[i], cb_wait_on, ds[i + 1]);
  return ds;
}

/* Unref every Deferred of the array (first to last) and free it. */
static void nest_free(ct_deferred **ds, long n) {
  for (long i = 0; i < n; i++)
    ct_deferred_unref(ds[i]);
  free(ds);
}

/* Fire ds[0..count-1] in order, each with its index. */
static void nest_fire_in_order(ct_deferred **ds, long count) {
  for (long i = 0; i < count; i++)
    ct_deferred_callback(ds[i], ct_value_int(i));
}

/* Deferred i's callback returns Deferred i+1.  Firing them in order leaves
 * every Deferred waiting on the next one; firing the last unwinds a nest
 * 100,000 deep (Twisted #4593). */
static void deep_nest(stack_job *job) {
  long n = job->n;
  ct_deferred **ds = nest_new(n, 1);
  ct_deferred_add_callback(ds[n - 1], cb_inc, NULL);
  nest_fire_in_order(ds, n);
  job_take_value(job, ds[0]);
  nest_free(ds, n);
}

DTEST(deferred_chain, hundred_thousand_nested_in_constant_stack) {
  stack_job job = run_job(deep_nest, 100000);
  cr_assert_eq(job.result, 100000); /* last got 99999, +1 */
}

/* The reverse order: each callback returns an already-fired Deferred. */
static void fired_nest(stack_job *job) {
  long n = job->n;
  ct_deferred **ds = nest_new(n, 1);
  for (long i = n - 1; i >= 0; i--)
    ct_deferred_callback(ds[i], ct_value_int(i));
  job_take_value(job, ds[0]);
  nest_free(ds, n);
}

DTEST(deferred_chain, hundred_thousand_prefired_nested) {
  stack_job job = run_job(fired_nest, 100000);
  cr_assert_eq(job.result, 99999);
}

/* Abandon a 100,000-deep waiting nest: freeing must not recurse either. */
static void abandoned_nest(stack_job *job) {
  long n = job->n;
  ct_deferred **ds = nest_new(n, 1);
  nest_fire_in_order(ds, n - 1);
  /* Drop the innermost first: the outer ones keep it alive; the last
   * unref (of ds[0]) frees the whole nest. */
  for (long i = n - 1; i >= 0; i--)
    ct_deferred_unref(ds[i]);
  free(ds);
  job->ok = 1;
}

DTEST(deferred_chain, hundred_thousand_abandoned_nest_freed) {
  (void)run_job(abandoned_nest, 100000);
}

/* Cancelling the outermost of a deep waiting nest reaches the innermost
 * without recursion. */
static void cancel_nest(stack_job *job) {
  long n = job->n;
  ct_deferred **ds = nest_new(n, 1);
  nest_fire_in_order(ds, n - 1);
  ct_deferred_cancel(ds[0]);
  ct_result r;
  if (ct_deferred_take_result(ds[0], &r) == 0 && r.failure != NULL) {
    job->result = r.failure->code;
    job->ok = 1;
    ct_failure_free(r.failure);
  }
  nest_free(ds, n);
}

DTEST(deferred_chain, cancel_deep_nest_reaches_innermost) {
  stack_job job = run_job(cancel_nest, 100000);
  cr_assert_eq(job.result, CT_ECANCELLED);
}

/* A callback of d2 fires d1, whose callback waits on d2 -- which is in the
 * middle of running its chain.  d1 must resume with d2's final result once
 * d2's running callback returns. */
typedef struct running_case {
  ct_deferred *d1;
  rec *r;
} running_case;

static ct_step cb_fire_other(ct_value v, void *arg) {
  running_case *rc = arg;
  ct_deferred_callback(rc->d1, CT_NONE);
  rec_add(rc->r, 1);
  return ct_pass(ct_value_int(ct_value_as_int(v) + 10));
}

DTEST(deferred_chain, wait_on_deferred_that_is_running) {
  rec r = {0};
  ct_deferred *d1 = ct_deferred_new(NULL, NULL);
  ct_deferred *d2 = ct_deferred_new(NULL, NULL);
  running_case rc = {d1, &r};
  ct_deferred_add_callback(d1, cb_wait_on, d2);
  ct_deferred_add_callback(d1, cb_record, &r);
  ct_deferred_add_callback(d2, cb_fire_other, &rc);
  ct_deferred_callback(d2, ct_value_int(5));
  /* d2's callback finished first (1), then d1 resumed with 15. */
  REC_EXPECT(&r, 1, 15);
  ct_deferred_unref(d1);
  ct_deferred_unref(d2);
}

static ct_step cb_add_errback_and_raise(ct_value v, void *arg) {
  rec *r = arg;
  (void)r;
  ct_value_free(v);
  return ct_raise(ct_failure_new(CT_EUSER, "raised"));
}

typedef struct self_add {
  ct_deferred *d;
  rec *r;
} self_add;

static ct_step cb_self_add_errback(ct_value v, void *arg) {
  self_add *sa = arg;
  ct_deferred_add_errback(sa->d, eb_record, sa->r);
  rec_add(sa->r, 1);
  return cb_add_errback_and_raise(v, sa->r);
}

/* test_reentrantRunCallbacksWithFailure */
DTEST(deferred_chain, errback_added_from_raising_callback_runs_after) {
  rec r = {0};
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  self_add sa = {d, &r};
  ct_deferred_add_callback(d, cb_self_add_errback, &sa);
  ct_deferred_callback(d, CT_NONE);
  REC_EXPECT(&r, 1, CT_EUSER);
  cr_assert_eq(take_failure_code(d), CT_EUSER);
  ct_deferred_unref(d);
}

/* A long line of ct_deferred_chain()ed Deferreds also runs in a loop. */
static void chained_line(stack_job *job) {
  long n = job->n;
  ct_deferred **ds = nest_new(n, 0);
  for (long i = 0; i + 1 < n; i++)
    ct_deferred_chain(ds[i], ds[i + 1]);
  ct_deferred_add_callback(ds[n - 1], cb_inc, NULL);
  ct_deferred_callback(ds[0], ct_value_int(41));
  job_take_value(job, ds[n - 1]);
  nest_free(ds, n);
}

DTEST(deferred_chain, hundred_thousand_chain_deferred_links) {
  stack_job job = run_job(chained_line, 100000);
  cr_assert_eq(job.result, 42);
}
