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

#include "ctwist/reactor.h"

static double now_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_bytes(void) {
  char buf[128] = {0};
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL)
    return 0;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *end;
  strtol(buf, &end, 10);                 /* total pages */
  long resident = strtol(end, NULL, 10); /* resident pages */
  return resident * sysconf(_SC_PAGESIZE);
}

static uint64_t rng;
static uint64_t next_rand(void) { /* xorshift64*, same stream as the ref */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * UINT64_C(2685821657736338717);
}

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
  double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
  long rss0 = rss_bytes();
  for (long i = 0; i < n; i++) {
    uint64_t us = next_rand() % 1000000;
    ct_call_later(r, (double)us / 1e6, on_timer, NULL);
  }
  long rss1 = rss_bytes();
  ct_reactor_run(r);
  double w1 = now_s(CLOCK_MONOTONIC), c1 = now_s(CLOCK_PROCESS_CPUTIME_ID);
  if (fired != n)
    fprintf(stderr, "fired %ld of %ld\n", fired, n);
  printf("ctwist fire n=%ld wall=%.3f cpu=%.3f rss_per_timer=%.1f\n", n,
         w1 - w0, c1 - c0, (double)(rss1 - rss0) / (double)n);

  /* cancel (memory is reused from the first shape, as in the ref) */
  rng = seed;
  w0 = now_s(CLOCK_MONOTONIC);
  c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
  for (long i = 0; i < n; i++) {
    uint64_t us = next_rand() % 1000000;
    calls[i] = ct_call_later(r, (double)us / 1e6, on_timer, NULL);
  }
  for (long i = 0; i < n; i++)
    ct_delayed_call_cancel(calls[i]);
  w1 = now_s(CLOCK_MONOTONIC);
  c1 = now_s(CLOCK_PROCESS_CPUTIME_ID);
  printf("ctwist cancel n=%ld wall=%.3f cpu=%.3f\n", n, w1 - w0, c1 - c0);
  ct_reactor_free(r);
  free(calls);
  return 0;
}
