/*
 * Reference for bench/timers: the same two workloads written against raw
 * libevent, one `struct event` per timer (evtimer_new + evtimer_add).
 *
 *   fire:   schedule N timers with random delays in [0, 1 s) and run the
 *           loop until all have fired;
 *   cancel: schedule N timers, then cancel (evtimer_del + event_free) all.
 *
 * Prints one line per shape: "<impl> <shape> n=... wall=... cpu=...
 * rss_per_timer=..." (rss_per_timer: resident-memory growth with all N pending,
 * divided by N). Usage: ref_timers_libevent [N] [seed]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#include <event2/event.h>

static uint64_t rng; /* the shared stream (bench_util.h) */

static long fired, n_total;

static void on_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  event_free(arg);
  fired++;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
  if (n <= 0)
    n = 1000000;
  uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 42;
  n_total = n;
  struct event **evs = calloc((size_t)n, sizeof(struct event *));
  struct event_base *base = event_base_new();
  if (evs == NULL || base == NULL) {
    free(evs);
    if (base != NULL)
      event_base_free(base);
    return 1;
  }
  memset(evs, 0, (size_t)n * sizeof(struct event *));

  /* fire */
  rng = seed;
  double w0 = bench_seconds(CLOCK_MONOTONIC),
         c0 = bench_seconds(CLOCK_PROCESS_CPUTIME_ID);
  long rss0 = bench_rss_bytes();
  for (long i = 0; i < n; i++) {
    uint64_t us = bench_xorshift(&rng) % 1000000; /* [0, 1 s) in microseconds */
    struct timeval tv = {0, (suseconds_t)us};
    struct event *ev = evtimer_new(base, on_timer, event_self_cbarg());
    evtimer_add(ev, &tv);
  }
  long rss1 = bench_rss_bytes();
  event_base_dispatch(base);
  double w1 = bench_seconds(CLOCK_MONOTONIC),
         c1 = bench_seconds(CLOCK_PROCESS_CPUTIME_ID);
  if (fired != n)
    fprintf(stderr, "fired %ld of %ld\n", fired, n);
  printf("libevent fire n=%ld wall=%.3f cpu=%.3f rss_per_timer=%.1f\n", n,
         w1 - w0, c1 - c0, (double)(rss1 - rss0) / (double)n);

  /* cancel */
  rng = seed;
  w0 = bench_seconds(CLOCK_MONOTONIC);
  c0 = bench_seconds(CLOCK_PROCESS_CPUTIME_ID);
  for (long i = 0; i < n; i++) {
    uint64_t us = bench_xorshift(&rng) % 1000000;
    struct timeval tv = {0, (suseconds_t)us};
    evs[i] = evtimer_new(base, on_timer, event_self_cbarg());
    evtimer_add(evs[i], &tv);
  }
  for (long i = 0; i < n; i++)
    event_free(evs[i]); /* event_free deletes a pending event */
  w1 = bench_seconds(CLOCK_MONOTONIC);
  c1 = bench_seconds(CLOCK_PROCESS_CPUTIME_ID);
  printf("libevent cancel n=%ld wall=%.3f cpu=%.3f\n", n, w1 - w0, c1 - c0);
  event_base_free(base);
  free(evs);
  return 0;
}
