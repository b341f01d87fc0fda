/* Delayed calls under the fake clock: ordering, cancel/reset/delay (also
 * from inside callbacks), error codes, references, bad input. */
#include <criterion/criterion.h>
#include <math.h>

#include "ctwist/reactor.h"

static ct_clock *clk;
static ct_reactor *r;

static void setup(void) {
  clk = ct_clock_new();
  cr_assert_not_null(clk);
  r = ct_reactor_new_with_clock(clk);
  cr_assert_not_null(r);
}

static void teardown(void) {
  ct_reactor_free(r);
  ct_clock_free(clk);
}

TestSuite(timers, .init = setup, .fini = teardown);

/* Freeing the clock of a live reactor is refused: the reactor keeps its
 * fake time instead of silently moving to the real clock. */
static int clock_fired;
static void fire(void *arg) {
  (void)arg;
  clock_fired++;
}

Test(timers, clock_free_on_a_live_reactor_is_refused) {
  ct_clock_advance(clk, 5.0);
  cr_assert_not_null(ct_call_later(r, 1.0, fire, NULL));
  cr_assert_eq(ct_clock_free(clk), CT_EBUSY);
  cr_assert_eq(ct_reactor_seconds(r), 5.0, "still on the fake clock");
  cr_assert_eq(clock_fired, 0);
  cr_assert_eq(ct_clock_advance(clk, 1.0), 1);
  cr_assert_eq(clock_fired, 1);
  cr_assert_eq(ct_clock_free(NULL), 0);
}

/* A log of which callbacks ran, as small integers. */
static int order[64];
static int norder;
static void record(void *arg) {
  order[norder++] = (int)(intptr_t)arg;
}
#define TAG(n) ((void *)(intptr_t)(n))

Test(timers, equal_deadlines_run_in_schedule_order) {
  norder = 0;
  for (int i = 0; i < 10; i++)
    cr_assert_not_null(ct_call_later(r, 1.0, record, TAG(i)));
  cr_assert_eq(ct_reactor_pending_calls(r), 10);
  cr_assert_eq(ct_clock_advance(clk, 0.999999999), 0);
  cr_assert_eq(ct_clock_advance(clk, 0.000000001), 10);
  cr_assert_eq(norder, 10);
  for (int i = 0; i < 10; i++)
    cr_assert_eq(order[i], i);
  cr_assert_eq(ct_reactor_pending_calls(r), 0);
}

Test(timers, call_later_zero_is_fifo_and_needs_an_advance) {
  norder = 0;
  ct_call_later(r, 0, record, TAG(1));
  ct_call_later(r, -5, record, TAG(2)); /* clamped to 0 */
  ct_call_later(r, 0, record, TAG(3));
  cr_assert_eq(norder, 0, "nothing runs synchronously");
  cr_assert_eq(ct_clock_advance(clk, 0), 3);
  cr_assert_eq(order[0], 1);
  cr_assert_eq(order[1], 2);
  cr_assert_eq(order[2], 3);
}

Test(timers, deadline_order_then_fifo) {
  norder = 0;
  ct_call_later(r, 3, record, TAG(30));
  ct_call_later(r, 1, record, TAG(10));
  ct_call_later(r, 2, record, TAG(20));
  ct_call_later(r, 1, record, TAG(11));
  ct_call_later(r, 2, record, TAG(21));
  cr_assert_eq(ct_clock_advance(clk, 1.5), 2);
  cr_assert_eq(ct_clock_advance(clk, 10), 3);
  int want[] = {10, 11, 20, 21, 30};
  for (int i = 0; i < 5; i++)
    cr_assert_eq(order[i], want[i]);
}

Test(timers, many_random_deadlines_come_out_sorted) {
  /* Exercises the 4-ary heap with inserts and cancels. */
  static ct_delayed_call *h[2000];
  unsigned seed = 12345;
  for (int i = 0; i < 2000; i++) {
    seed = seed * 1103515245u + 12345u;
    h[i] = ct_call_later(r, (double)(seed % 1000) / 100.0, record, TAG(0));
  }
  for (int i = 0; i < 2000; i += 3)
    cr_assert_eq(ct_delayed_call_cancel(h[i]), 0);
  double last = -1;
  size_t pending = ct_reactor_pending_calls(r);
  cr_assert_eq(pending, 2000 - 667);
  /* Advance in small steps; every call must fire at its time. */
  long fired = 0;
  for (int step = 0; step <= 1000; step++) {
    norder = 0;
    long n = ct_clock_advance(clk, step == 0 ? 0 : 0.01);
    cr_assert_geq(n, 0);
    fired += n;
    double now = ct_clock_seconds(clk);
    cr_assert_geq(now, last);
    last = now;
  }
  cr_assert_eq(fired, 2000 - 667);
  cr_assert_eq(ct_reactor_pending_calls(r), 0);
}

static ct_delayed_call *victim;
static void cancel_victim(void *arg) {
  record(arg);
  cr_assert_eq(ct_delayed_call_cancel(victim), 0);
}

Test(timers, cancel_other_from_callback) {
  norder = 0;
  ct_call_later(r, 1, cancel_victim, TAG(1));
  victim = ct_call_later(r, 1, record, TAG(2)); /* same deadline, later */
  cr_assert_eq(ct_clock_advance(clk, 1), 1);
  cr_assert_eq(norder, 1);
  cr_assert_eq(ct_reactor_pending_calls(r), 0);
}

static void reset_victim(void *arg) {
  record(arg);
  cr_assert_eq(ct_delayed_call_reset(victim, 5), 0);
}

Test(timers, reset_other_from_callback) {
  norder = 0;
  ct_call_later(r, 1, reset_victim, TAG(1));
  victim = ct_call_later(r, 2, record, TAG(2));
  cr_assert_eq(ct_clock_advance(clk, 1), 1);
  cr_assert_float_eq(ct_delayed_call_get_time(victim), 6.0, 1e-9);
  cr_assert_eq(ct_clock_advance(clk, 4.999), 0);
  cr_assert_eq(ct_clock_advance(clk, 0.001), 1);
  cr_assert_eq(order[1], 2);
}

static void delay_victim(void *arg) {
  record(arg);
  cr_assert_eq(ct_delayed_call_delay(victim, 2), 0);
}

Test(timers, delay_other_from_callback) {
  norder = 0;
  ct_call_later(r, 1, delay_victim, TAG(1));
  victim = ct_call_later(r, 1, record, TAG(2));
  cr_assert_eq(ct_clock_advance(clk, 1), 1);
  cr_assert(ct_delayed_call_active(victim));
  cr_assert_float_eq(ct_delayed_call_get_time(victim), 3.0, 1e-9);
  cr_assert_eq(ct_clock_advance(clk, 2), 1);
}

static int self_runs;
static ct_delayed_call *self_call;
static void rearm_self(void *arg) {
  (void)arg;
  self_runs++;
  cr_assert_not(ct_delayed_call_active(self_call), "not active while running");
  cr_assert_eq(ct_delayed_call_cancel(self_call), CT_EALREADY_CALLED);
  cr_assert_eq(ct_delayed_call_delay(self_call, 1), CT_EALREADY_CALLED);
  if (self_runs < 3)
    cr_assert_eq(ct_delayed_call_reset(self_call, 1), 0);
  if (self_runs < 3)
    cr_assert(ct_delayed_call_active(self_call));
}

Test(timers, reset_self_from_own_callback_rearms) {
  self_runs = 0;
  self_call = ct_call_later(r, 1, rearm_self, NULL);
  cr_assert_eq(ct_clock_advance(clk, 1), 1);
  cr_assert_eq(ct_reactor_pending_calls(r), 1);
  cr_assert_eq(ct_clock_advance(clk, 1), 1);
  cr_assert_eq(ct_clock_advance(clk, 1), 1);
  cr_assert_eq(self_runs, 3);
  cr_assert_eq(ct_reactor_pending_calls(r), 0);
}

static void rearm_then_cancel_self(void *arg) {
  (void)arg;
  self_runs++;
  cr_assert_eq(ct_delayed_call_reset(self_call, 0), 0);
  cr_assert_eq(ct_delayed_call_cancel(self_call), 0);
  cr_assert_eq(ct_delayed_call_cancel(self_call), CT_EALREADY_CANCELLED);
}

Test(timers, rearm_then_cancel_self) {
  self_runs = 0;
  self_call = ct_call_later(r, 0, rearm_then_cancel_self, NULL);
  cr_assert_eq(ct_clock_advance(clk, 0), 1);
  cr_assert_eq(self_runs, 1);
  cr_assert_eq(ct_reactor_pending_calls(r), 0);
}

static void reset_self_zero(void *arg) {
  (void)arg;
  if (++self_runs < 5)
    ct_delayed_call_reset(self_call, 0);
}

Test(timers, reset_self_to_zero_runs_again_in_same_advance) {
  /* Like task.Clock: calls falling due within the advanced time run. */
  self_runs = 0;
  self_call = ct_call_later(r, 0, reset_self_zero, NULL);
  cr_assert_eq(ct_clock_advance(clk, 0), 5);
  cr_assert_eq(self_runs, 5);
}

static void schedule_more(void *arg) {
  record(arg);
  ct_call_later(r, 0, record, TAG(2));   /* due now: runs in this advance */
  ct_call_later(r, 0.5, record, TAG(3)); /* due at now + 0.5 */
  ct_call_later(r, 5, record, TAG(4));   /* not due */
}

Test(timers, calls_scheduled_by_callbacks_within_advance) {
  /* Like task.Clock.advance: time jumps to the end first, then what is due
   * runs, so a callback sees the new time; a call it schedules at 0 runs
   * in the same advance, later ones wait. */
  norder = 0;
  ct_call_later(r, 1, schedule_more, TAG(1));
  cr_assert_eq(ct_clock_advance(clk, 2), 2);
  cr_assert_eq(order[0], 1);
  cr_assert_eq(order[1], 2);
  cr_assert_eq(ct_reactor_pending_calls(r), 2);
  cr_assert_eq(ct_clock_advance(clk, 0.5), 1);
  cr_assert_eq(order[2], 3);
  cr_assert_eq(ct_reactor_pending_calls(r), 1);
}

Test(timers, double_cancel_and_cancel_after_fire_are_error_codes) {
  ct_delayed_call *a = ct_delayed_call_ref(ct_call_later(r, 1, record, TAG(0)));
  ct_delayed_call *b = ct_delayed_call_ref(ct_call_later(r, 1, record, TAG(0)));
  cr_assert_eq(ct_delayed_call_cancel(a), 0);
  cr_assert_eq(ct_delayed_call_cancel(a), CT_EALREADY_CANCELLED);
  cr_assert_eq(ct_delayed_call_reset(a, 1), CT_EALREADY_CANCELLED);
  cr_assert_eq(ct_delayed_call_delay(a, 1), CT_EALREADY_CANCELLED);
  cr_assert_not(ct_delayed_call_active(a));
  norder = 0;
  cr_assert_eq(ct_clock_advance(clk, 1), 1);
  cr_assert_not(ct_delayed_call_active(b));
  cr_assert_eq(ct_delayed_call_cancel(b), CT_EALREADY_CALLED);
  cr_assert_eq(ct_delayed_call_reset(b, 1), CT_EALREADY_CALLED);
  cr_assert_eq(ct_delayed_call_delay(b, 1), CT_EALREADY_CALLED);
  cr_assert_float_eq(ct_delayed_call_get_time(b), 1.0, 1e-9);
  ct_delayed_call_unref(a);
  ct_delayed_call_unref(b);
}

Test(timers, reset_and_delay_pending) {
  ct_delayed_call *c = ct_call_later(r, 10, record, TAG(0));
  cr_assert_float_eq(ct_delayed_call_get_time(c), 10.0, 1e-9);
  ct_clock_advance(clk, 1);
  cr_assert_eq(ct_delayed_call_reset(c, 2), 0);
  cr_assert_float_eq(ct_delayed_call_get_time(c), 3.0, 1e-9);
  cr_assert_eq(ct_delayed_call_delay(c, -1.5), 0);
  cr_assert_float_eq(ct_delayed_call_get_time(c), 1.5, 1e-9);
  norder = 0;
  cr_assert_eq(ct_clock_advance(clk, 0.5), 1);
}

Test(timers, reset_goes_behind_equal_deadlines_delay_keeps_order) {
  norder = 0;
  ct_delayed_call *a = ct_call_later(r, 1, record, TAG(1));
  ct_call_later(r, 1, record, TAG(2));
  ct_delayed_call *c = ct_call_later(r, 0, record, TAG(3));
  cr_assert_eq(ct_delayed_call_reset(a, 1), 0); /* now after 2 */
  cr_assert_eq(ct_delayed_call_delay(c, 1), 0); /* keeps its seq: after 2? */
  ct_clock_advance(clk, 1);
  cr_assert_eq(norder, 3);
  /* seq: 2 (seq 1), 3 (seq 2), 1 (seq 3) */
  cr_assert_eq(order[0], 2);
  cr_assert_eq(order[1], 3);
  cr_assert_eq(order[2], 1);
}

Test(timers, reference_keeps_handle_after_cancel) {
  ct_delayed_call *c = ct_call_later(r, 1, record, TAG(0));
  ct_delayed_call_ref(c);
  ct_delayed_call_ref(c);
  ct_delayed_call_cancel(c);
  ct_delayed_call_unref(c);
  cr_assert_eq(ct_delayed_call_cancel(c), CT_EALREADY_CANCELLED);
  ct_delayed_call_unref(c);
  cr_assert_eq(ct_reactor_pending_calls(r), 0);
}

Test(timers, unref_does_not_cancel) {
  norder = 0;
  ct_delayed_call *c = ct_delayed_call_ref(ct_call_later(r, 1, record, TAG(0)));
  ct_delayed_call_unref(c);
  cr_assert_eq(ct_reactor_pending_calls(r), 1);
  cr_assert_eq(ct_clock_advance(clk, 1), 1);
}

Test(timers, free_with_pending_calls_drops_them) {
  for (int i = 0; i < 5000; i++)
    ct_call_later(r, i, record, TAG(0));
  cr_assert_eq(ct_reactor_pending_calls(r), 5000);
  /* teardown frees the reactor; ASan/LSan would flag a leak */
}

Test(timers, bad_input) {
  cr_assert_null(ct_call_later(NULL, 1, record, NULL));
  cr_assert_null(ct_call_later(r, 1, NULL, NULL));
  cr_assert_eq(ct_delayed_call_cancel(NULL), CT_EINVAL);
  cr_assert_eq(ct_delayed_call_reset(NULL, 1), CT_EINVAL);
  cr_assert_eq(ct_delayed_call_delay(NULL, 1), CT_EINVAL);
  cr_assert_not(ct_delayed_call_active(NULL));
  cr_assert_null(ct_delayed_call_ref(NULL));
  ct_delayed_call_unref(NULL);
  cr_assert_eq(ct_reactor_pending_calls(NULL), 0);
  cr_assert_eq(ct_clock_advance(clk, -1), CT_EINVAL);
  cr_assert_eq(ct_clock_advance(clk, NAN), CT_EINVAL);
  cr_assert_eq(ct_clock_advance(NULL, 1), CT_EINVAL);
  cr_assert_null(ct_reactor_new_with_clock(NULL));
  cr_assert_null(ct_reactor_new_with_clock(clk), "one clock, one reactor");
  /* NaN and huge delays are clamped, not UB. */
  ct_delayed_call *c = ct_call_later(r, NAN, record, TAG(0));
  cr_assert_float_eq(ct_delayed_call_get_time(c), 0.0, 1e-9);
  c = ct_call_later(r, 1e300, record, TAG(0));
  cr_assert_gt(ct_delayed_call_get_time(c), 1e9);
  cr_assert_eq(ct_delayed_call_cancel(c), 0);
  ct_clock_free(NULL);
}

Test(timers, clock_time_and_pump) {
  cr_assert_float_eq(ct_clock_seconds(clk), 0.0, 1e-12);
  cr_assert_float_eq(ct_reactor_seconds(r), 0.0, 1e-12);
  norder = 0;
  ct_call_later(r, 0.1, record, TAG(1));
  ct_call_later(r, 0.3, record, TAG(2));
  double steps[] = {0.1, 0.1, 0.1};
  cr_assert_eq(ct_clock_pump(clk, steps, 3), 2);
  cr_assert_float_eq(ct_clock_seconds(clk), 0.3, 1e-12);
  cr_assert_float_eq(ct_reactor_seconds(r), 0.3, 1e-12);
  cr_assert_eq(ct_clock_pump(clk, NULL, 1), CT_EINVAL);
  /* Ten steps of 0.1 add up to exactly 1 s: time is integer ns inside. */
  for (int i = 0; i < 7; i++)
    ct_clock_advance(clk, 0.1);
  ct_call_later(r, 0, record, TAG(3));
  cr_assert_eq(ct_clock_advance(clk, 0), 1);
}

Test(timers, clock_without_reactor) {
  ct_clock *c = ct_clock_new();
  cr_assert_eq(ct_clock_advance(c, 2.5), 0);
  cr_assert_float_eq(ct_clock_seconds(c), 2.5, 1e-12);
  ct_clock_free(c);
}

Test(timers, real_clock_is_monotonic) {
  ct_reactor *real = ct_reactor_new();
  cr_assert_not_null(real);
  double a = ct_reactor_seconds(real);
  double b = ct_reactor_seconds(real);
  cr_assert_geq(b, a);
  cr_assert_gt(a, 0);
  ct_reactor_free(real);
}

static long counted;
static void count_call(void *arg) {
  (void)arg;
  counted++;
}

Test(timers, slab_reuse_across_bursts_with_a_held_reference) {
  /* Several bursts of calls, one handle kept referenced across them: the
   * slab must never hand its memory out again while it is referenced. */
  ct_delayed_call *kept = NULL;
  for (int burst = 0; burst < 4; burst++) {
    counted = 0;
    for (int i = 0; i < 3000; i++) {
      ct_delayed_call *c = ct_call_later(r, (i % 7) * 0.1, count_call, NULL);
      if (burst == 1 && i == 1500)
        kept = ct_delayed_call_ref(c);
      if (i % 5 == 0)
        ct_delayed_call_cancel(c);
    }
    cr_assert_eq(ct_clock_advance(clk, 1), 2400);
    cr_assert_eq(counted, 2400);
    cr_assert_eq(ct_reactor_pending_calls(r), 0);
    if (kept != NULL) {
      cr_assert_not(ct_delayed_call_active(kept));
      cr_assert_eq(ct_delayed_call_cancel(kept), CT_EALREADY_CANCELLED);
    }
  }
  ct_delayed_call_unref(kept);
  /* After the last reference goes, the next burst starts afresh. */
  ct_call_later(r, 0, count_call, NULL);
  cr_assert_eq(ct_clock_advance(clk, 0), 1);
}
