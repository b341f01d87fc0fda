/* The reactor-driven parts: ct_deferred_add_timeout (test_defer.py's
 * DeferredAddTimeoutTests), ct_defer_later (task.deferLater), the Deferred
 * form of LoopingCall, and Deferred-returning shutdown triggers.  Timed
 * behaviour runs on the fake clock; nothing asserts wall time. */
#include "test_deferred_common.h"

typedef struct fake {
  ct_clock *clock;
  ct_reactor *r;
} fake;

static fake fake_new(void) {
  fake f;
  f.clock = ct_clock_new();
  cr_assert_not_null(f.clock);
  f.r = ct_reactor_new_with_clock(f.clock);
  cr_assert_not_null(f.r);
  return f;
}

static void fake_free(fake *f) {
  ct_reactor_free(f->r);
  ct_clock_free(f->clock);
}

/* A fake-clock reactor and one Deferred (with `canceller`) on it. */
typedef struct timed {
  fake f;
  ct_deferred *d;
} timed;

static timed timed_new(ct_canceller_cb canceller) {
  timed t;
  t.f = fake_new();
  t.d = ct_deferred_new(canceller, NULL);
  cr_assert_not_null(t.d);
  return t;
}

static void timed_free(timed *t) {
  ct_deferred_unref(t->d);
  fake_free(&t->f);
}

/* ---------------------------------------------------------------- timeout */

DTEST(deferred_timeout, success_before_timeout) {
  timed t = timed_new(NULL);
  cr_assert_eq(ct_deferred_add_timeout(t.d, t.f.r, 10), 0);
  cr_assert_eq(ct_reactor_pending_calls(t.f.r), 1);
  ct_clock_advance(t.f.clock, 5);
  cr_assert_not(ct_deferred_called(t.d));
  ct_deferred_callback(t.d, ct_value_int(1));
  cr_assert_eq(take_int(t.d), 1);
  cr_assert_eq(ct_reactor_pending_calls(t.f.r), 0, "timer cancelled");
  ct_clock_advance(t.f.clock, 10);
  timed_free(&t);
}

DTEST(deferred_timeout, failure_before_timeout) {
  timed t = timed_new(NULL);
  ct_deferred_add_timeout(t.d, t.f.r, 10);
  ct_deferred_errback(t.d, ct_failure_new(CT_EPROTO, "early"));
  cr_assert_eq(take_failure_code(t.d), CT_EPROTO);
  cr_assert_eq(ct_reactor_pending_calls(t.f.r), 0);
  timed_free(&t);
}

DTEST(deferred_timeout, timed_out) {
  timed t = timed_new(NULL);
  ct_deferred_add_timeout(t.d, t.f.r, 10);
  ct_clock_advance(t.f.clock, 9.5);
  cr_assert_not(ct_deferred_called(t.d));
  ct_clock_advance(t.f.clock, 0.5);
  cr_assert(ct_deferred_called(t.d));
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(t.d, &r), 0);
  cr_assert_eq(r.failure->code, CT_ETIMEDOUT);
  cr_assert(ct_failure_check(r.failure, CT_ECANCELLED), "cause kept");
  ct_failure_free(r.failure);
  /* The producer finishing late is ignored (no canceller: suppressed). */
  cr_assert_eq(ct_deferred_callback(t.d, heap_int(1)), 0);
  timed_free(&t);
}

static void canceller_succeeds(ct_deferred *d, void *arg) {
  ct_deferred_callback(d, ct_value_int(55));
}

static void canceller_fails(ct_deferred *d, void *arg) {
  ct_deferred_errback(d, ct_failure_new(CT_ECONNABORTED, "custom"));
}

DTEST(deferred_timeout, provided_canceller_success_passes) {
  timed t = timed_new(canceller_succeeds);
  ct_deferred_add_timeout(t.d, t.f.r, 1);
  ct_clock_advance(t.f.clock, 1);
  cr_assert_eq(take_int(t.d), 55);
  timed_free(&t);
}

DTEST(deferred_timeout, provided_canceller_failure_passes) {
  timed t = timed_new(canceller_fails);
  ct_deferred_add_timeout(t.d, t.f.r, 1);
  ct_clock_advance(t.f.clock, 1);
  cr_assert_eq(take_failure_code(t.d), CT_ECONNABORTED);
  timed_free(&t);
}

DTEST(deferred_timeout, cancel_before_timeout_is_cancelled_not_timed_out) {
  timed t = timed_new(NULL);
  ct_deferred_add_timeout(t.d, t.f.r, 10);
  ct_deferred_cancel(t.d);
  cr_assert_eq(take_failure_code(t.d), CT_ECANCELLED);
  cr_assert_eq(ct_reactor_pending_calls(t.f.r), 0);
  timed_free(&t);
}

DTEST(deferred_timeout, errback_added_before_sees_cancelled) {
  fake f = fake_new();
  rec r = {0};
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_errback(d, eb_record, &r);
  ct_deferred_add_timeout(d, f.r, 1);
  ct_clock_advance(f.clock, 1);
  REC_EXPECT(&r, CT_ECANCELLED);
  cr_assert_eq(take_failure_code(d), CT_ETIMEDOUT);
  ct_deferred_unref(d);
  fake_free(&f);
}

DTEST(deferred_timeout, errback_added_before_can_suppress_cancellation) {
  timed t = timed_new(NULL);
  ct_deferred_add_errback(t.d, eb_recover, (void *)3);
  ct_deferred_add_timeout(t.d, t.f.r, 1);
  ct_clock_advance(t.f.clock, 1);
  cr_assert_eq(take_int(t.d), 3);
  timed_free(&t);
}

DTEST(deferred_timeout, timeout_of_waiting_outer_cancels_inner) {
  fake f = fake_new();
  ct_deferred *outer = ct_deferred_new(NULL, NULL);
  ct_deferred *inner = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(outer, cb_wait_on, inner);
  ct_deferred_add_timeout(outer, f.r, 2);
  ct_deferred_callback(outer, CT_NONE);
  ct_clock_advance(f.clock, 2);
  cr_assert(ct_deferred_called(inner));
  cr_assert_eq(take_failure_code(outer), CT_ETIMEDOUT);
  ct_deferred_unref(inner);
  ct_deferred_unref(outer);
  fake_free(&f);
}

DTEST(deferred_timeout, abandoned_deferred_cancels_timer) {
  fake f = fake_new();
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_timeout(d, f.r, 5);
  ct_deferred_unref(d);
  cr_assert_eq(ct_reactor_pending_calls(f.r), 0);
  ct_clock_advance(f.clock, 10);
  fake_free(&f);
}

DTEST(deferred_timeout, bad_arguments_and_fired) {
  fake f = fake_new();
  ct_deferred *d = ct_succeed(ct_value_int(1));
  cr_assert_eq(ct_deferred_add_timeout(d, f.r, 1), CT_ESTATE);
  cr_assert_eq(ct_deferred_add_timeout(NULL, f.r, 1), CT_EINVAL);
  cr_assert_eq(ct_deferred_add_timeout(d, NULL, 1), CT_EINVAL);
  ct_deferred_unref(d);
  fake_free(&f);
}

/* ------------------------------------------------------------ defer_later */

static int later_calls;

static ct_step later_value(void *arg) {
  later_calls++;
  return ct_pass(ct_value_int((intptr_t)arg));
}

static ct_step later_failure(void *arg) {
  later_calls++;
  return ct_raise(ct_failure_new(CT_EUSER, "later"));
}

static ct_step later_deferred(void *arg) {
  later_calls++;
  return ct_wait(ct_deferred_ref(arg));
}

DTEST(deferred_later, fires_after_delay) {
  fake f = fake_new();
  later_calls = 0;
  ct_deferred *d = ct_defer_later(f.r, 3, later_value, (void *)8);
  cr_assert_not_null(d);
  ct_clock_advance(f.clock, 2.9);
  cr_assert_not(ct_deferred_called(d));
  cr_assert_eq(later_calls, 0);
  ct_clock_advance(f.clock, 0.1);
  cr_assert_eq(later_calls, 1);
  cr_assert_eq(take_int(d), 8);
  ct_deferred_unref(d);
  fake_free(&f);
}

DTEST(deferred_later, null_fn_fires_none_and_failure_propagates) {
  fake f = fake_new();
  ct_deferred *a = ct_defer_later(f.r, 1, NULL, NULL);
  ct_deferred *b = ct_defer_later(f.r, 1, later_failure, NULL);
  ct_clock_advance(f.clock, 1);
  cr_assert_eq(take_int(a), 0);
  cr_assert_eq(take_failure_code(b), CT_EUSER);
  ct_deferred_unref(a);
  ct_deferred_unref(b);
  fake_free(&f);
}

DTEST(deferred_later, fn_returning_deferred_is_chained) {
  fake f = fake_new();
  ct_deferred *inner = ct_deferred_new(NULL, NULL);
  ct_deferred *d = ct_defer_later(f.r, 1, later_deferred, inner);
  ct_clock_advance(f.clock, 1);
  cr_assert_not(ct_deferred_called(d));
  ct_deferred_callback(inner, ct_value_int(21));
  cr_assert_eq(take_int(d), 21);
  ct_deferred_unref(inner);
  ct_deferred_unref(d);
  fake_free(&f);
}

DTEST(deferred_later, cancel_cancels_delayed_call) {
  fake f = fake_new();
  later_calls = 0;
  ct_deferred *d = ct_defer_later(f.r, 1, later_value, (void *)1);
  cr_assert_eq(ct_reactor_pending_calls(f.r), 1);
  ct_deferred_cancel(d);
  cr_assert_eq(ct_reactor_pending_calls(f.r), 0);
  cr_assert_eq(take_failure_code(d), CT_ECANCELLED);
  ct_clock_advance(f.clock, 5);
  cr_assert_eq(later_calls, 0);
  ct_deferred_unref(d);
  fake_free(&f);
}

DTEST(deferred_later, caller_may_drop_reference_before_firing) {
  fake f = fake_new();
  later_calls = 0;
  ct_deferred *d = ct_defer_later(f.r, 1, later_value, (void *)1);
  ct_deferred_unref(d);
  ct_clock_advance(f.clock, 1);
  cr_assert_eq(later_calls, 1);
  fake_free(&f);
}

DTEST(deferred_later, with_timeout_shorter_than_delay) {
  fake f = fake_new();
  later_calls = 0;
  ct_deferred *d = ct_defer_later(f.r, 10, later_value, (void *)1);
  ct_deferred_add_timeout(d, f.r, 1);
  ct_clock_advance(f.clock, 1);
  cr_assert_eq(take_failure_code(d), CT_ETIMEDOUT);
  cr_assert_eq(ct_reactor_pending_calls(f.r), 0);
  ct_clock_advance(f.clock, 20);
  cr_assert_eq(later_calls, 0);
  ct_deferred_unref(d);
  fake_free(&f);
}

/* ------------------------------------------------------------ looping call */

static int tick(ct_looping_call *lc, uint64_t count, void *arg) {
  int *n = arg;
  (*n)++;
  return 0;
}

static int tick_fail_third(ct_looping_call *lc, uint64_t count, void *arg) {
  int *n = arg;
  return ++(*n) == 3 ? CT_EPROTO : 0;
}

DTEST(deferred_looping, deferred_fires_on_stop) {
  fake f = fake_new();
  int n = 0;
  ct_looping_call *lc = ct_looping_call_new(f.r, tick, &n);
  ct_deferred *d = ct_looping_call_start_deferred(lc, 1.0, 1);
  cr_assert_not_null(d);
  cr_assert_eq(n, 1);
  const double steps[] = {1, 1, 1};
  ct_clock_pump(f.clock, steps, 3);
  cr_assert_eq(n, 4);
  cr_assert_not(ct_deferred_called(d));
  cr_assert_eq(ct_looping_call_stop(lc), 0);
  cr_assert_eq(take_int(d), 0);
  ct_deferred_unref(d);
  ct_looping_call_free(lc);
  fake_free(&f);
}

DTEST(deferred_looping, deferred_fails_when_function_fails) {
  fake f = fake_new();
  int n = 0;
  ct_looping_call *lc = ct_looping_call_new(f.r, tick_fail_third, &n);
  ct_deferred *d = ct_looping_call_start_deferred(lc, 0.5, 0);
  const double steps[] = {0.5, 0.5};
  ct_clock_pump(f.clock, steps, 2);
  cr_assert_eq(n, 2);
  cr_assert_not(ct_deferred_called(d));
  ct_clock_advance(f.clock, 0.5);
  cr_assert_eq(take_failure_code(d), CT_EPROTO);
  cr_assert_not(ct_looping_call_running(lc));
  ct_deferred_unref(d);
  ct_looping_call_free(lc);
  fake_free(&f);
}

DTEST(deferred_looping, bad_start_returns_null) {
  fake f = fake_new();
  int n = 0;
  ct_looping_call *lc = ct_looping_call_new(f.r, tick, &n);
  cr_assert_null(ct_looping_call_start_deferred(lc, 0, 0));
  cr_assert_null(ct_looping_call_start_deferred(NULL, 1, 0));
  ct_deferred *d = ct_looping_call_start_deferred(lc, 1, 0);
  cr_assert_null(ct_looping_call_start_deferred(lc, 1, 0), "running");
  ct_looping_call_stop(lc);
  discard_result(d);
  ct_deferred_unref(d);
  /* Restarted with the plain API, the old Deferred is not fired again. */
  cr_assert_eq(ct_looping_call_start(lc, 1, 0), 0);
  ct_looping_call_stop(lc);
  ct_looping_call_free(lc);
  fake_free(&f);
}

/* -------------------------------------------------------------- triggers */

typedef struct shutdown_log {
  ct_reactor *r;
  ct_deferred *pending;
  int before_fired;
  int during_ran;
  int during_ran_before_fire;
} shutdown_log;

static void fire_pending(void *arg) {
  shutdown_log *s = arg;
  s->during_ran_before_fire = s->during_ran;
  s->before_fired = 1;
  ct_deferred_callback(s->pending, heap_int(1));
}

static ct_deferred *before_trigger(ct_reactor *r, void *arg) {
  shutdown_log *s = arg;
  s->pending = ct_deferred_new(NULL, NULL);
  ct_call_later(r, 0, fire_pending, s);
  return ct_deferred_ref(s->pending);
}

static void during_trigger(void *arg) {
  shutdown_log *s = arg;
  s->during_ran = 1;
}

static void stop_now(void *arg) {
  ct_reactor_stop(arg);
}

DTEST(deferred_trigger, phase_waits_for_deferred) {
  ct_reactor *r = ct_reactor_new();
  cr_assert_not_null(r);
  shutdown_log s = {r, NULL, 0, 0, 0};
  ct_deferred_trigger t;
  cr_assert_gt(ct_reactor_add_trigger_deferred(r, CT_PHASE_BEFORE, &t,
                                               before_trigger, &s),
               0);
  cr_assert_gt(ct_reactor_add_trigger(r, CT_PHASE_DURING, during_trigger, &s),
               0);
  ct_reactor_call_when_running(r, stop_now, r);
  cr_assert_eq(ct_reactor_run(r), 0);
  cr_assert(s.before_fired);
  cr_assert_eq(s.during_ran_before_fire, 0,
               "DURING must wait for BEFORE's Deferred");
  cr_assert(s.during_ran);
  ct_deferred_unref(s.pending);
  ct_reactor_free(r);
}

static ct_deferred *failing_trigger(ct_reactor *r, void *arg) {
  return ct_fail(ct_failure_new(CT_EPROTO, "trigger failed"));
}

static ct_deferred *null_trigger(ct_reactor *r, void *arg) {
  int *n = arg;
  (*n)++;
  return NULL;
}

DTEST(deferred_trigger, failing_and_null_triggers_do_not_block) {
  log_capture lc;
  log_capture_start(&lc);
  ct_reactor *r = ct_reactor_new();
  int n = 0;
  ct_deferred_trigger t1, t2;
  ct_reactor_add_trigger_deferred(r, CT_PHASE_BEFORE, &t1, failing_trigger,
                                  NULL);
  ct_reactor_add_trigger_deferred(r, CT_PHASE_AFTER, &t2, null_trigger, &n);
  ct_reactor_call_when_running(r, stop_now, r);
  cr_assert_eq(ct_reactor_run(r), 0);
  cr_assert_eq(n, 1);
  cr_assert_eq(lc.unhandled, 0, "the trigger's failure is consumed");
  cr_assert_not_null(strstr(lc.last, "trigger failed"), "%s", lc.last);
  ct_reactor_free(r);
  log_capture_stop(&lc);
}

DTEST(deferred_trigger, bad_arguments_and_removal) {
  ct_clock *c = ct_clock_new();
  ct_reactor *r = ct_reactor_new_with_clock(c);
  ct_deferred_trigger t;
  cr_assert_eq(ct_reactor_add_trigger_deferred(NULL, CT_PHASE_BEFORE, &t,
                                               null_trigger, NULL),
               CT_EINVAL);
  cr_assert_eq(ct_reactor_add_trigger_deferred(r, CT_PHASE_BEFORE, NULL,
                                               null_trigger, NULL),
               CT_EINVAL);
  cr_assert_eq(
      ct_reactor_add_trigger_deferred(r, CT_PHASE_BEFORE, &t, NULL, NULL),
      CT_EINVAL);
  long id = ct_reactor_add_trigger_deferred(r, CT_PHASE_BEFORE, &t,
                                            null_trigger, NULL);
  cr_assert_gt(id, 0);
  cr_assert_eq(ct_reactor_remove_trigger(r, id), 0);
  ct_reactor_free(r);
  ct_clock_free(c);
}
