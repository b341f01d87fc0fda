/*
 * The thread pool: ct_defer_to_thread and ct_call_in_thread on a real
 * reactor.  Jobs that must stay "running" wait on a gate the test opens,
 * and every wait is on a condition (pool counters, flags), never a sleep.
 * Also run under ThreadSanitizer by `make tsan`.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "ctwist/defer_util.h"
#include "ctwist/deferred.h"
#include "ctwist/reactor.h"
#include "ctwist/threads.h"

static ct_reactor *R;
static pthread_t main_thread;

static void setup(void) {
  R = ct_reactor_new();
  cr_assert(R != NULL);
  main_thread = pthread_self();
}

static void teardown(void) {
  ct_reactor_free(R);
}

TestSuite(threads, .init = setup, .fini = teardown, .timeout = 30);

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Turn the loop until cond(arg); a 10 s safety net, not a timing. */
static int spin(int (*cond)(void *), void *arg) {
  double end = now() + 10;
  while (!cond(arg)) {
    if (now() > end)
      return 0;
    ct_reactor_iterate(R);
    sched_yield();
  }
  return 1;
}

/* ----------------------------------------------------------------- gate */

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open;

static void gate_wait(void) {
  pthread_mutex_lock(&gate_mu);
  while (!gate_open)
    pthread_cond_wait(&gate_cv, &gate_mu);
  pthread_mutex_unlock(&gate_mu);
}

static void gate_set(int open) {
  pthread_mutex_lock(&gate_mu);
  gate_open = open;
  pthread_cond_broadcast(&gate_cv);
  pthread_mutex_unlock(&gate_mu);
}

/* ----------------------------------------------------------------- jobs */

static atomic_int ran_on_main;   /* a job that ran on the reactor thread */
static atomic_int runs;          /* jobs started */
static atomic_int results_freed; /* result destructors run */
static int freed_on_main = 1;

static void result_free(void *p) {
  if (!pthread_equal(pthread_self(), main_thread))
    freed_on_main = 0;
  atomic_fetch_add(&results_freed, 1);
  free(p);
}

/* A malloc'd copy of *arg * 2. */
static ct_result twice(void *arg) {
  if (pthread_equal(pthread_self(), main_thread))
    atomic_store(&ran_on_main, 1);
  int *v = malloc(sizeof *v);
  *v = *(int *)arg * 2;
  return (ct_result){.value = ct_value_of(v, result_free)};
}

static ct_result double_it(void *arg) {
  atomic_fetch_add(&runs, 1);
  return twice(arg);
}

static ct_result fail_job(void *arg) {
  atomic_fetch_add(&runs, 1);
  return (ct_result){
      .failure = ct_failure_new(CT_EPROTO, "job %s failed", (const char *)arg)};
}

static ct_result gated_job(void *arg) {
  atomic_fetch_add(&runs, 1);
  gate_wait();
  return twice(arg);
}

typedef struct outcome {
  int done;
  int on_main;
  int value;
  ct_failure *failure;
} outcome;

static ct_step got(ct_result r, void *arg) {
  outcome *o = arg;
  o->done = 1;
  o->on_main = pthread_equal(pthread_self(), main_thread);
  o->failure = r.failure;
  if (r.value.ptr != NULL) {
    o->value = *(int *)r.value.ptr;
    r.value.free(r.value.ptr);
  }
  return ct_pass(CT_NONE);
}

static int is_done(void *arg) {
  return ((outcome *)arg)->done;
}

static ct_deferred *defer(ct_thread_fn fn, void *arg, outcome *o) {
  memset(o, 0, sizeof *o);
  ct_deferred *d = ct_defer_to_thread(R, fn, arg);
  cr_assert(d != NULL);
  ct_deferred_add_both(d, got, o);
  return d;
}

static void expect_failure(outcome *o, int code, const char *word) {
  cr_assert(o->done);
  cr_assert(o->failure != NULL);
  cr_assert_eq(o->failure->code, code, "%s", o->failure->message);
  cr_assert(strstr(o->failure->message, word) != NULL, "%s",
            o->failure->message);
  ct_failure_free(o->failure);
  o->failure = NULL;
}

static int running_is(void *arg) {
  ct_threadpool_stats st;
  ct_threadpool_stats_get(R, &st);
  return st.running == *(size_t *)arg;
}

/* Configure the pool and start one gated job; wait until it runs. */
static ct_deferred *one_busy_worker_grace(size_t queue_max, double grace,
                                          outcome *busy, int *arg) {
  ct_threadpool_config cfg = {
      .threads = 1, .queue_max = queue_max, .grace = grace};
  cr_assert_eq(ct_threadpool_configure(R, &cfg), 0);
  gate_set(0);
  ct_deferred *d = defer(gated_job, arg, busy);
  size_t one = 1;
  cr_assert(spin(running_is, &one));
  return d;
}

static ct_deferred *one_busy_worker(size_t queue_max, outcome *busy, int *arg) {
  return one_busy_worker_grace(queue_max, 0, busy, arg);
}

/* ---------------------------------------------------------------- tests */

Test(threads, result_comes_back_on_the_reactor_thread) {
  int arg = 21;
  outcome o;
  ct_deferred *d = defer(double_it, &arg, &o);
  ct_deferred_unref(d);
  cr_assert(spin(is_done, &o));
  cr_assert(o.failure == NULL);
  cr_assert_eq(o.value, 42);
  cr_assert(o.on_main, "the callback ran on a worker");
  cr_assert_eq(atomic_load(&ran_on_main), 0, "the job ran on the reactor");
  cr_assert(freed_on_main);
}

Test(threads, failure_comes_back_as_errback) {
  outcome o;
  ct_deferred *d = defer(fail_job, "x7", &o);
  ct_deferred_unref(d);
  cr_assert(spin(is_done, &o));
  cr_assert(o.on_main);
  expect_failure(&o, CT_EPROTO, "job x7 failed");
}

static atomic_int calls;

static void count_call(void *arg) {
  (void)arg;
  atomic_fetch_add(&calls, 1);
}

static int calls_at(void *arg) {
  return atomic_load(&calls) >= *(int *)arg;
}

Test(threads, call_in_thread_runs_everything_on_a_bounded_pool) {
  ct_threadpool_config cfg = {.threads = 3, .queue_max = 1000};
  cr_assert_eq(ct_threadpool_configure(R, &cfg), 0);
  for (int i = 0; i < 500; i++)
    cr_assert_eq(ct_call_in_thread(R, count_call, NULL), 0);
  int want = 500;
  cr_assert(spin(calls_at, &want));
  ct_threadpool_stats st;
  ct_threadpool_stats_get(R, &st);
  cr_assert_leq(st.threads, 3);
  cr_assert_geq(st.threads, 1);
  cr_assert_eq(ct_call_in_thread(R, NULL, NULL), CT_EINVAL);
}

Test(threads, full_queue_is_a_clear_error) {
  int arg = 1;
  outcome busy, q1, q2, over;
  ct_deferred *db = one_busy_worker(2, &busy, &arg);
  ct_deferred *d1 = defer(double_it, &arg, &q1);
  ct_deferred *d2 = defer(double_it, &arg, &q2);
  ct_deferred *d3 = defer(double_it, &arg, &over);
  /* The refusal is immediate, and names the problem. */
  expect_failure(&over, CT_EQUEUEFULL, "queue is full");
  cr_assert_eq(ct_call_in_thread(R, count_call, NULL), CT_EQUEUEFULL);
  ct_threadpool_stats st;
  ct_threadpool_stats_get(R, &st);
  cr_assert_eq(st.queued, 2);
  gate_set(1);
  cr_assert(spin(is_done, &q2));
  cr_assert(busy.done && q1.done);
  cr_assert_eq(busy.value + q1.value + q2.value, 6);
  ct_deferred_unref(db);
  ct_deferred_unref(d1);
  ct_deferred_unref(d2);
  ct_deferred_unref(d3);
  /* Configuring is refused while jobs are in flight, allowed after. */
  cr_assert_eq(ct_threadpool_configure(R, NULL), 0);
}

Test(threads, cancelling_a_queued_job_removes_it) {
  int arg = 5;
  outcome busy, queued;
  ct_deferred *db = one_busy_worker(10, &busy, &arg);
  ct_threadpool_config cfg = {.threads = 2};
  cr_assert_eq(ct_threadpool_configure(R, &cfg), CT_ESTATE);
  ct_deferred *dq = defer(fail_job, "never", &queued);
  ct_deferred_cancel(dq);
  expect_failure(&queued, CT_ECANCELLED, "before it ran");
  ct_threadpool_stats st;
  ct_threadpool_stats_get(R, &st);
  cr_assert_eq(st.queued, 0);
  gate_set(1);
  cr_assert(spin(is_done, &busy));
  cr_assert_eq(busy.value, 10);
  /* Only the gated job ever started. */
  cr_assert_eq(atomic_load(&runs), 1);
  ct_deferred_unref(db);
  ct_deferred_unref(dq);
}

static int freed_at(void *arg) {
  return atomic_load(&results_freed) >= *(int *)arg;
}

Test(threads, cancelling_a_running_job_errbacks_at_once) {
  int arg = 4;
  outcome busy;
  ct_deferred *db = one_busy_worker(10, &busy, &arg);
  ct_deferred_cancel(db);
  expect_failure(&busy, CT_ECANCELLED, "discarded");
  gate_set(1);
  /* The job still finishes; its result is freed on the reactor thread. */
  int one = 1;
  cr_assert(spin(freed_at, &one));
  cr_assert(freed_on_main);
  ct_deferred_unref(db);
}

/* ------------------------------------------------------------ shutdown */

static outcome sd_busy, sd_queued;

/* Runs in the DURING phase right after the pool's trigger (registered
 * later): the queued job is already cancelled; open the gate so the
 * running one can finish within the grace period. */
static void open_gate_trigger(void *arg) {
  (void)arg;
  gate_set(1);
}

static void stop_soon(void *arg) {
  (void)arg;
  ct_reactor_stop(R);
}

/* Run R, stop it at once (the shutdown phases run), then read the pool. */
static void run_and_stop(ct_threadpool_stats *st) {
  ct_reactor_call_when_running(R, stop_soon, NULL);
  cr_assert_eq(ct_reactor_run(R), 0);
  ct_threadpool_stats_get(R, st);
}

Test(threads, shutdown_cancels_the_queue_and_joins_the_workers) {
  int arg = 8;
  ct_deferred *db = one_busy_worker(10, &sd_busy, &arg);
  ct_deferred *dq = defer(double_it, &arg, &sd_queued);
  cr_assert(
      ct_reactor_add_trigger(R, CT_PHASE_DURING, open_gate_trigger, NULL) > 0);
  /* run returns only after the workers were joined. */
  ct_threadpool_stats st;
  run_and_stop(&st);
  cr_assert_eq(st.threads, 0);
  cr_assert_eq(st.running, 0);
  cr_assert(sd_busy.done);
  cr_assert_eq(sd_busy.value, 16);
  expect_failure(&sd_queued, CT_ECANCELLED, "shutting down");
  /* The pool starts again on the next run. */
  outcome again;
  ct_deferred *da = defer(double_it, &arg, &again);
  cr_assert(spin(is_done, &again));
  cr_assert_eq(again.value, 16);
  ct_deferred_unref(db);
  ct_deferred_unref(dq);
  ct_deferred_unref(da);
}

static outcome grace_busy;

Test(threads, grace_period_lets_shutdown_go_on) {
  int arg = 3;
  ct_deferred *d = one_busy_worker_grace(10, 0.05, &grace_busy, &arg);
  /* The job outlives the grace period: still running, not delivered. */
  ct_threadpool_stats st;
  run_and_stop(&st);
  cr_assert_eq(st.running, 1);
  cr_assert_eq(grace_busy.done, 0);
  ct_deferred_unref(d);
  /* Freeing the reactor waits for it and delivers the result. */
  gate_set(1);
  ct_reactor_free(R);
  R = ct_reactor_new();
  cr_assert(grace_busy.done);
  cr_assert_eq(grace_busy.value, 6);
}
