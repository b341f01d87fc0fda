/*
 * bench/timers: ctwist's callLater against the raw-libevent reference
 * (bench/ref/ref_timers_libevent.c), same workloads and random stream.
 *
 *   fire:   schedule N calls with random delays in [0, 1 s) and run the
 *           reactor until all have fired (the last one stops it);
 *   cancel: schedule N calls, then cancel all of them.
 *
 * Output: "<impl> <shape> n=... wall=... cpu=... rss_per_timer=..."
 * Usage: bench_timers [N] [seed]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#include "ctwist/reactor.h"

static uint64_t rng; /* the shared stream (bench_util.h) */

static ct_reactor *r;
static long fired, n_total;

static void on_timer(void *arg) {
  (void)arg;
  if (++fired == n_total)
    ct_reactor_stop(r);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
  if (n <= 0)
    n = 1000000;
  uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 42;
  n_total = n;
  /* Allocated and touched before the baseline, as in the reference. */
  ct_delayed_call **calls = calloc((size_t)n, sizeof(ct_delayed_call *));
  r = ct_reactor_new();
  if (r == NULL || calls == NULL) {
    free(calls);
    ct_reactor_free(r);
    return 1;
  }
  memset(calls, 0, (size_t)n * sizeof(ct_delayed_call *));

  /* fire */
  rng = seed;
  double w0 = bench_seconds(CLOCK_MONOTONIC),
         c0 = bench_seconds(CLOCK_PROCESS_CPUTIME_ID);
  long rss0 = bench_rss_bytes();
  for (long i = 0; i < n; i++) {
    uint64_t us = bench_xorshift(&rng) % 1000000;
    ct_call_later(r, (double)us / 1e6, on_timer, NULL);
  }
  long rss1 = bench_rss_bytes();
  ct_reactor_run(r);
  double w1 = bench_seconds(CLOCK_MONOTONIC),
         c1 = bench_seconds(CLOCK_PROCESS_CPUTIME_ID);
  if (fired != n)
    fprintf(stderr, "fired %ld of %ld\n", fired, n);
  printf("ctwist fire n=%ld wall=%.3f cpu=%.3f rss_per_timer=%.1f\n", n,
         w1 - w0, c1 - c0, (double)(rss1 - rss0) / (double)n);

  /* cancel (memory is reused from the first shape, as in the ref) */
  rng = seed;
  w0 = bench_seconds(CLOCK_MONOTONIC);
  c0 = bench_seconds(CLOCK_PROCESS_CPUTIME_ID);
  for (long i = 0; i < n; i++) {
    uint64_t us = bench_xorshift(&rng) % 1000000;
    calls[i] = ct_call_later(r, (double)us / 1e6, on_timer, NULL);
  }
  for (long i = 0; i < n; i++)
    ct_delayed_call_cancel(calls[i]);
  w1 = bench_seconds(CLOCK_MONOTONIC);
  c1 = bench_seconds(CLOCK_PROCESS_CPUTIME_ID);
  printf("ctwist cancel n=%ld wall=%.3f cpu=%.3f\n", n, w1 - w0, c1 - c0);
  ct_reactor_free(r);
  free(calls);
  return 0;
}
