/* LoopingCall under the fake clock: alignment, skipped counts after a jump
 * of the clock, stop/free from inside, error stop, done callback. */
#include <criterion/criterion.h>

#include "ctwist/reactor.h"

static ct_clock *clk;
static ct_reactor *r;

static void setup(void) {
  clk = ct_clock_new();
  r = ct_reactor_new_with_clock(clk);
  cr_assert_not_null(r);
}

static void teardown(void) {
  cr_assert_eq(ct_reactor_pending_calls(r), 0, "no timer left behind");
  ct_reactor_free(r);
  ct_clock_free(clk);
}

TestSuite(looping, .init = setup, .fini = teardown);

struct rec {
  uint64_t counts[64];
  double times[64];
  int n;
  int stop_after; /* stop from inside on this call (1-based), 0: never */
  int fail_after; /* return an error on this call */
  int free_after; /* free from inside on this call */
  int done_calls;
  int done_err;
};

static int tick(ct_looping_call *lc, uint64_t count, void *arg) {
  struct rec *rc = arg;
  rc->counts[rc->n] = count;
  rc->times[rc->n] = ct_clock_seconds(clk);
  rc->n++;
  if (rc->n == rc->stop_after)
    cr_assert_eq(ct_looping_call_stop(lc), 0);
  if (rc->n == rc->free_after)
    ct_looping_call_free(lc);
  if (rc->n == rc->fail_after)
    return CT_EUSER;
  return 0;
}

static void done(ct_looping_call *lc, int err, void *arg) {
  struct rec *rc = arg;
  rc->done_calls++;
  rc->done_err = err;
  cr_assert_not(ct_looping_call_running(lc));
}

Test(looping, runs_every_interval_aligned) {
  struct rec rc = {0};
  ct_looping_call *lc = ct_looping_call_new(r, tick, &rc);
  cr_assert_not_null(lc);
  cr_assert_eq(ct_looping_call_start(lc, 1.0, 0), 0);
  cr_assert(ct_looping_call_running(lc));
  cr_assert_eq(ct_looping_call_start(lc, 1.0, 0), CT_ESTATE);
  cr_assert_eq(rc.n, 0);
  for (int i = 0; i < 5; i++)
    ct_clock_advance(clk, 1.0);
  cr_assert_eq(rc.n, 5);
  for (int i = 0; i < 5; i++) {
    cr_assert_eq(rc.counts[i], 1);
    cr_assert_float_eq(rc.times[i], i + 1.0, 1e-9);
  }
  /* Advancing in uneven steps stays aligned to start + k*interval. */
  ct_clock_advance(clk, 0.7);
  ct_clock_advance(clk, 0.7); /* 6.4: call at 6 */
  ct_clock_advance(clk, 0.7); /* 7.1: call at 7 (late, still count 1) */
  cr_assert_eq(rc.n, 7);
  cr_assert_eq(rc.counts[6], 1);
  cr_assert_eq(ct_looping_call_skipped(lc), 0);
  cr_assert_eq(ct_looping_call_calls(lc), 7);
  ct_looping_call_free(lc);
}

Test(looping, now_calls_at_once) {
  struct rec rc = {0};
  ct_looping_call *lc = ct_looping_call_new(r, tick, &rc);
  cr_assert_eq(ct_looping_call_start(lc, 2.0, 1), 0);
  cr_assert_eq(rc.n, 1);
  cr_assert_eq(rc.counts[0], 1);
  ct_clock_advance(clk, 2.0);
  cr_assert_eq(rc.n, 2);
  cr_assert_eq(rc.counts[1], 1);
  ct_looping_call_free(lc);
}

Test(looping, skipped_intervals_after_clock_jump) {
  struct rec rc = {0};
  ct_looping_call *lc = ct_looping_call_new(r, tick, &rc);
  ct_looping_call_start(lc, 1.0, 1);
  ct_clock_advance(clk, 1.0); /* t=1, count 1 */
  ct_clock_advance(clk, 5.5); /* t=6.5: one call, 5 intervals elapsed */
  cr_assert_eq(rc.n, 3);
  cr_assert_eq(rc.counts[2], 5);
  cr_assert_eq(ct_looping_call_skipped(lc), 4);
  ct_clock_advance(clk, 0.5); /* t=7: back on the grid */
  cr_assert_eq(rc.n, 4);
  cr_assert_eq(rc.counts[3], 1);
  cr_assert_float_eq(rc.times[3], 7.0, 1e-9);
  ct_clock_advance(clk, 3.0); /* t=10: 3 intervals */
  cr_assert_eq(rc.counts[4], 3);
  cr_assert_eq(ct_looping_call_skipped(lc), 6);
  cr_assert_eq(ct_looping_call_calls(lc), 5);
  ct_looping_call_free(lc);
}

Test(looping, stop_from_outside_runs_done) {
  struct rec rc = {0};
  ct_looping_call *lc = ct_looping_call_new(r, tick, &rc);
  ct_looping_call_on_done(lc, done, &rc);
  ct_looping_call_start(lc, 1.0, 0);
  ct_clock_advance(clk, 1.0);
  cr_assert_eq(ct_looping_call_stop(lc), 0);
  cr_assert_eq(rc.done_calls, 1);
  cr_assert_eq(rc.done_err, 0);
  cr_assert_eq(ct_looping_call_stop(lc), CT_ESTATE);
  ct_clock_advance(clk, 5.0);
  cr_assert_eq(rc.n, 1);
  /* Restart: aligned to the new start. */
  cr_assert_eq(ct_looping_call_start(lc, 0.5, 0), 0);
  ct_clock_advance(clk, 0.5);
  cr_assert_eq(rc.n, 2);
  ct_looping_call_stop(lc);
  cr_assert_eq(rc.done_calls, 2);
  ct_looping_call_free(lc);
}

Test(looping, stop_from_inside) {
  struct rec rc = {.stop_after = 3};
  ct_looping_call *lc = ct_looping_call_new(r, tick, &rc);
  ct_looping_call_on_done(lc, done, &rc);
  ct_looping_call_start(lc, 1.0, 0);
  ct_clock_advance(clk, 10.0); /* one call (count 10) */
  ct_clock_advance(clk, 1.0);
  ct_clock_advance(clk, 1.0);
  cr_assert_eq(rc.n, 3);
  ct_clock_advance(clk, 10.0);
  cr_assert_eq(rc.n, 3);
  cr_assert_eq(rc.done_calls, 1);
  cr_assert_eq(rc.done_err, 0);
  cr_assert_not(ct_looping_call_running(lc));
  ct_looping_call_free(lc);
}

Test(looping, error_return_stops_with_code) {
  struct rec rc = {.fail_after = 2};
  ct_looping_call *lc = ct_looping_call_new(r, tick, &rc);
  ct_looping_call_on_done(lc, done, &rc);
  ct_looping_call_start(lc, 0.25, 1);
  ct_clock_advance(clk, 0.25);
  ct_clock_advance(clk, 1);
  cr_assert_eq(rc.n, 2);
  cr_assert_eq(rc.done_calls, 1);
  cr_assert_eq(rc.done_err, CT_EUSER);
  ct_looping_call_free(lc);
}

Test(looping, free_from_inside) {
  struct rec rc = {.free_after = 2};
  ct_looping_call *lc = ct_looping_call_new(r, tick, &rc);
  ct_looping_call_on_done(lc, done, &rc);
  ct_looping_call_start(lc, 1.0, 0);
  ct_clock_advance(clk, 1.0);
  ct_clock_advance(clk, 1.0);
  ct_clock_advance(clk, 1.0);
  cr_assert_eq(rc.n, 2);
  cr_assert_eq(rc.done_calls, 0, "free does not run done");
}

Test(looping, free_from_inside_with_now) {
  struct rec rc = {.free_after = 1};
  ct_looping_call *lc = ct_looping_call_new(r, tick, &rc);
  cr_assert_eq(ct_looping_call_start(lc, 1.0, 1), 0);
  cr_assert_eq(rc.n, 1);
}

static void free_in_done(ct_looping_call *lc, int err, void *arg) {
  (void)err;
  ++*(int *)arg;
  ct_looping_call_free(lc);
}

static int stop_first(ct_looping_call *lc, uint64_t count, void *arg) {
  (void)count;
  (void)arg;
  ct_looping_call_stop(lc);
  return 0;
}

Test(looping, free_in_done_callback_from_inside_fn) {
  int n = 0;
  ct_looping_call *lc = ct_looping_call_new(r, stop_first, NULL);
  ct_looping_call_on_done(lc, free_in_done, &n);
  ct_looping_call_start(lc, 1.0, 0);
  ct_clock_advance(clk, 1.0);
  cr_assert_eq(n, 1);
}

Test(looping, free_running_cancels_timer) {
  struct rec rc = {0};
  ct_looping_call *lc = ct_looping_call_new(r, tick, &rc);
  ct_looping_call_start(lc, 1.0, 0);
  cr_assert_eq(ct_reactor_pending_calls(r), 1);
  ct_looping_call_free(lc);
  cr_assert_eq(ct_reactor_pending_calls(r), 0);
}

Test(looping, bad_input) {
  struct rec rc = {0};
  cr_assert_null(ct_looping_call_new(NULL, tick, NULL));
  cr_assert_null(ct_looping_call_new(r, NULL, NULL));
  ct_looping_call *lc = ct_looping_call_new(r, tick, &rc);
  cr_assert_eq(ct_looping_call_start(lc, 0, 0), CT_EINVAL);
  cr_assert_eq(ct_looping_call_start(lc, -1, 0), CT_EINVAL);
  cr_assert_eq(ct_looping_call_start(lc, 1e-12, 0), CT_EINVAL);
  cr_assert_eq(ct_looping_call_start(NULL, 1, 0), CT_EINVAL);
  cr_assert_eq(ct_looping_call_stop(lc), CT_ESTATE);
  cr_assert_eq(ct_looping_call_stop(NULL), CT_EINVAL);
  cr_assert_not(ct_looping_call_running(NULL));
  cr_assert_eq(ct_looping_call_skipped(NULL), 0);
  cr_assert_eq(ct_looping_call_calls(NULL), 0);
  ct_looping_call_on_done(NULL, done, NULL);
  ct_looping_call_free(NULL);
  ct_looping_call_free(lc);
}

/* On the real clock: the loop runs from ct_reactor_run(); no timing is
 * asserted, only that calls happen and the loop stops cleanly. */
static ct_reactor *real_r;
static int real_tick(ct_looping_call *lc, uint64_t count, void *arg) {
  int *n = arg;
  cr_assert_geq(count, 1);
  if (++*n == 3) {
    cr_assert_eq(ct_looping_call_stop(lc), 0);
    cr_assert_eq(ct_reactor_stop(real_r), 0);
  }
  return 0;
}

Test(looping, on_the_real_clock) {
  real_r = ct_reactor_new();
  int n = 0;
  ct_looping_call *lc = ct_looping_call_new(real_r, real_tick, &n);
  cr_assert_eq(ct_looping_call_start(lc, 0.002, 0), 0);
  cr_assert_eq(ct_reactor_run(real_r), 0);
  cr_assert_eq(n, 3);
  cr_assert_eq(ct_looping_call_calls(lc), 3);
  cr_assert_eq(ct_reactor_pending_calls(real_r), 0);
  ct_looping_call_free(lc);
  ct_reactor_free(real_r);
}
