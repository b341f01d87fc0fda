/* call_from_thread: 4 threads x 10,000 calls on a real reactor, each call
 * arriving exactly once and in per-thread order. */
#include <criterion/criterion.h>
#include <pthread.h>

#include "ctwist/reactor.h"

#define NTHREADS 4
#define NCALLS 10000

static ct_reactor *r;
static int next_expected[NTHREADS];
static long total;
static int out_of_order;

/* The argument encodes thread and sequence: thread * NCALLS + i. */
static void arrived(void *arg) {
  long v = (long)(intptr_t)arg;
  int t = (int)(v / NCALLS), i = (int)(v % NCALLS);
  if (next_expected[t] != i)
    out_of_order++;
  next_expected[t] = i + 1;
  if (++total == (long)NTHREADS * NCALLS)
    ct_reactor_stop(r);
}

static void *producer(void *arg) {
  long t = (long)(intptr_t)arg;
  for (int i = 0; i < NCALLS; i++) {
    int rc = ct_reactor_call_from_thread(r, arrived,
                                         (void *)(intptr_t)(t * NCALLS + i));
    if (rc != 0)
      return (void *)1;
  }
  return NULL;
}

static pthread_t threads[NTHREADS];

static void start_threads(void *arg) {
  (void)arg;
  for (long t = 0; t < NTHREADS; t++)
    cr_assert_eq(
        pthread_create(&threads[t], NULL, producer, (void *)(intptr_t)t), 0);
}

Test(thread, four_threads_ten_thousand_calls_each) {
  r = ct_reactor_new();
  cr_assert_not_null(r);
  ct_reactor_call_when_running(r, start_threads, NULL);
  cr_assert_eq(ct_reactor_run(r), 0);
  for (int t = 0; t < NTHREADS; t++) {
    void *ret;
    pthread_join(threads[t], &ret);
    cr_assert_null(ret);
    cr_assert_eq(next_expected[t], NCALLS);
  }
  cr_assert_eq(total, (long)NTHREADS * NCALLS);
  cr_assert_eq(out_of_order, 0);
  ct_reactor_free(r);
}

static int ran;
static void mark(void *arg) {
  ran += (int)(intptr_t)arg;
}

Test(thread, queued_before_run_and_dropped_on_free) {
  r = ct_reactor_new();
  cr_assert_eq(ct_reactor_call_from_thread(r, mark, (void *)1), 0);
  cr_assert_eq(ct_reactor_iterate(r), 0);
  cr_assert_eq(ran, 1);
  /* Queued but never run: freed with the reactor without leaking. */
  cr_assert_eq(ct_reactor_call_from_thread(r, mark, (void *)1), 0);
  ct_reactor_free(r);
  cr_assert_eq(ran, 1);
}

Test(thread, bad_input) {
  r = ct_reactor_new();
  cr_assert_eq(ct_reactor_call_from_thread(NULL, mark, NULL), CT_EINVAL);
  cr_assert_eq(ct_reactor_call_from_thread(r, NULL, NULL), CT_EINVAL);
  ct_reactor_free(r);
}
