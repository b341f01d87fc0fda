/* Cancellation, pause/unpause and the "Unhandled error in Deferred" log.
 * Behaviours of test_defer.py's DeferredCancellerTests, the pause tests of
 * DeferredTests, and LogTests. */
#include "test_deferred_common.h"

static int cancel_calls;
static ct_deferred *cancel_seen;

static void canceller_noop(ct_deferred *d, void *arg) {
  cancel_calls++;
  cancel_seen = d;
  (void)arg;
}

static void canceller_errbacks(ct_deferred *d, void *arg) {
  cancel_calls++;
  ct_deferred_errback(d, ct_failure_new((int)(intptr_t)arg, "custom"));
}

static void canceller_callbacks(ct_deferred *d, void *arg) {
  cancel_calls++;
  ct_deferred_callback(d, ct_value_int((intptr_t)arg));
}

DTEST(deferred_cancel, no_canceller_errbacks_cancelled) {
  rec r = {0};
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_errback(d, eb_record, &r);
  cr_assert_eq(ct_deferred_cancel(d), 0);
  REC_EXPECT(&r, CT_ECANCELLED);
  cr_assert_eq(take_failure_code(d), CT_ECANCELLED);
  ct_deferred_unref(d);
}

DTEST(deferred_cancel, no_canceller_eats_one_late_callback) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_cancel(d);
  /* The producer finishing late is silently ignored once... */
  cr_assert_eq(ct_deferred_callback(d, heap_int(1)), 0);
  /* ...but not twice. */
  cr_assert_eq(ct_deferred_callback(d, heap_int(2)), CT_EALREADY_CALLED);
  cr_assert_eq(take_failure_code(d), CT_ECANCELLED);
  ct_deferred_unref(d);
}

DTEST(deferred_cancel, no_canceller_eats_one_late_errback) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_cancel(d);
  cr_assert_eq(ct_deferred_errback(d, ct_failure_new(CT_EPROTO, "late")), 0);
  cr_assert_eq(ct_deferred_errback(d, ct_failure_new(CT_EPROTO, "later")),
               CT_EALREADY_CALLED);
  cr_assert_eq(take_failure_code(d), CT_ECANCELLED);
  ct_deferred_unref(d);
}

DTEST(deferred_cancel, no_canceller_multiple_cancels_errback_once) {
  rec r = {0};
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_errback(d, eb_record, &r);
  ct_deferred_cancel(d);
  ct_deferred_cancel(d);
  ct_deferred_callback(d, CT_NONE); /* eaten */
  ct_deferred_cancel(d);
  cr_assert_eq(r.n, 1);
  cr_assert_eq(take_failure_code(d), CT_ECANCELLED);
  ct_deferred_unref(d);
}

DTEST(deferred_cancel, canceller_called_once_with_deferred) {
  cancel_calls = 0;
  cancel_seen = NULL;
  ct_deferred *d = ct_deferred_new(canceller_noop, NULL);
  ct_deferred_cancel(d);
  ct_deferred_cancel(d);
  cr_assert_eq(cancel_calls, 1);
  cr_assert_eq(cancel_seen, d);
  /* The canceller did not fire it: cancel errbacked with CT_ECANCELLED. */
  cr_assert_eq(take_failure_code(d), CT_ECANCELLED);
  /* With a canceller, a late fire is an error (nothing is suppressed). */
  cr_assert_eq(ct_deferred_callback(d, CT_NONE), CT_EALREADY_CALLED);
  ct_deferred_unref(d);
}

DTEST(deferred_cancel, canceller_that_errbacks_sets_the_failure) {
  cancel_calls = 0;
  ct_deferred *d =
      ct_deferred_new(canceller_errbacks, (void *)(intptr_t)CT_ECONNABORTED);
  ct_deferred_cancel(d);
  cr_assert_eq(cancel_calls, 1);
  cr_assert_eq(take_failure_code(d), CT_ECONNABORTED);
  ct_deferred_unref(d);
}

DTEST(deferred_cancel, canceller_that_callbacks_sets_the_value) {
  cancel_calls = 0;
  ct_deferred *d = ct_deferred_new(canceller_callbacks, (void *)77);
  ct_deferred_cancel(d);
  cr_assert_eq(cancel_calls, 1);
  cr_assert_eq(take_int(d), 77);
  ct_deferred_unref(d);
}

DTEST(deferred_cancel, cancel_after_callback_does_nothing) {
  cancel_calls = 0;
  ct_deferred *d = ct_deferred_new(canceller_noop, NULL);
  ct_deferred_callback(d, ct_value_int(3));
  ct_deferred_cancel(d);
  cr_assert_eq(cancel_calls, 0);
  cr_assert_eq(take_int(d), 3);
  ct_deferred_unref(d);
}

DTEST(deferred_cancel, cancel_after_errback_does_nothing) {
  cancel_calls = 0;
  ct_deferred *d = ct_deferred_new(canceller_noop, NULL);
  ct_deferred_errback(d, ct_failure_new(CT_EPROTO, "x"));
  ct_deferred_cancel(d);
  cr_assert_eq(cancel_calls, 0);
  cr_assert_eq(take_failure_code(d), CT_EPROTO);
  ct_deferred_unref(d);
}

DTEST(deferred_cancel, cancel_outer_cancels_inner) {
  cancel_calls = 0;
  rec r = {0};
  ct_deferred *outer = ct_deferred_new(canceller_noop, NULL);
  ct_deferred *inner =
      ct_deferred_new(canceller_errbacks, (void *)(intptr_t)CT_ECANCELLED);
  ct_deferred_add_callback(outer, cb_wait_on, inner);
  ct_deferred_add_errback(outer, eb_record, &r);
  ct_deferred_callback(outer, CT_NONE);
  ct_deferred_cancel(outer);
  /* Only the inner canceller runs (the outer one fired already). */
  cr_assert_eq(cancel_calls, 1);
  REC_EXPECT(&r, CT_ECANCELLED);
  cr_assert_eq(take_failure_code(outer), CT_ECANCELLED);
  ct_deferred_unref(inner);
  ct_deferred_unref(outer);
}

DTEST(deferred_cancel, cancel_outer_of_double_nest_cancels_innermost) {
  ct_deferred *n[3];
  double_nest_new(n);
  ct_deferred_cancel(n[0]);
  cr_assert(ct_deferred_called(n[2]));
  cr_assert_eq(take_failure_code(n[0]), CT_ECANCELLED);
  double_nest_free(n);
}

static void canceller_unrefs(ct_deferred *d, void *arg) {
  /* A canceller dropping the last user reference must not free d under
   * ct_deferred_cancel(). */
  ct_deferred_unref(d);
}

DTEST(deferred_cancel, canceller_may_drop_last_reference) {
  ct_deferred *d = ct_deferred_new(canceller_unrefs, NULL);
  ct_deferred_add_errback(d, eb_recover, (void *)0);
  ct_deferred_cancel(d); /* d is freed when cancel returns */
}

DTEST(deferred_cancel, cancel_paused_fired_deferred_does_nothing) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_pause(d);
  ct_deferred_callback(d, ct_value_int(2));
  ct_deferred_cancel(d);
  ct_deferred_unpause(d);
  cr_assert_eq(take_int(d), 2);
  ct_deferred_unref(d);
}

static ct_step cb_cancel_self(ct_value v, void *arg) {
  ct_deferred_cancel(arg); /* fired and running: nothing happens */
  return ct_pass(v);
}

DTEST(deferred_cancel, cancel_from_own_callback_does_nothing) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(d, cb_cancel_self, d);
  ct_deferred_callback(d, ct_value_int(6));
  cr_assert_eq(take_int(d), 6);
  ct_deferred_unref(d);
}

DTEST(deferred_cancel, cancelled_abandoned_paths_do_not_leak) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(d, cb_add, (void *)1);
  ct_deferred_cancel(d);
  ct_deferred_add_errback(d, eb_recover, (void *)0); /* consume */
  ct_deferred_unref(d);
}

/* ---------------------------------------------------------------- pause */

DTEST(deferred_pause, pause_before_fire_holds_callbacks) {
  rec r = {0};
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(d, cb_record, &r);
  ct_deferred_pause(d);
  cr_assert(ct_deferred_paused(d));
  ct_deferred_callback(d, ct_value_int(1));
  cr_assert_eq(r.n, 0);
  cr_assert(ct_deferred_called(d));
  ct_deferred_unpause(d);
  cr_assert_not(ct_deferred_paused(d));
  cr_assert_eq(r.n, 1);
  ct_deferred_unref(d);
}

DTEST(deferred_pause, pause_after_fire_holds_new_callbacks) {
  rec r = {0};
  ct_deferred *d = ct_succeed(ct_value_int(1));
  ct_deferred_pause(d);
  ct_deferred_add_callback(d, cb_record, &r);
  ct_deferred_add_callback(d, cb_add, (void *)1);
  ct_deferred_add_callback(d, cb_record, &r);
  cr_assert_eq(r.n, 0);
  cr_assert_not(ct_deferred_has_result(d));
  ct_deferred_unpause(d);
  cr_assert_eq(r.n, 2);
  cr_assert_eq(r.items[1], 2);
  ct_deferred_unref(d);
}

DTEST(deferred_pause, pauses_nest) {
  rec r = {0};
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(d, cb_record, &r);
  ct_deferred_pause(d);
  ct_deferred_pause(d);
  ct_deferred_callback(d, ct_value_int(1));
  ct_deferred_unpause(d);
  cr_assert_eq(r.n, 0);
  ct_deferred_unpause(d);
  cr_assert_eq(r.n, 1);
  ct_deferred_unpause(d); /* extra: ignored */
  ct_deferred_unref(d);
}

static ct_step cb_pause_self(ct_value v, void *arg) {
  ct_deferred_pause(arg);
  return ct_pass(v);
}

DTEST(deferred_pause, pause_from_callback_stops_the_rest) {
  rec r = {0};
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(d, cb_record, &r);
  ct_deferred_add_callback(d, cb_pause_self, d);
  ct_deferred_add_callback(d, cb_record, &r);
  ct_deferred_callback(d, ct_value_int(5));
  cr_assert_eq(r.n, 1);
  ct_deferred_unpause(d);
  cr_assert_eq(r.n, 2);
  ct_deferred_unref(d);
}

/* test_chainedPausedDeferredWithResult */
DTEST(deferred_pause, chained_paused_deferred_with_result) {
  rec r = {0};
  ct_deferred *paused = ct_succeed(ct_value_int(12));
  ct_deferred_pause(paused);
  ct_deferred *chained = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(chained, cb_wait_on, paused);
  ct_deferred_callback(chained, CT_NONE);
  ct_deferred_add_callback(chained, cb_record, &r);
  cr_assert_eq(r.n, 0);
  ct_deferred_unpause(paused);
  REC_EXPECT(&r, 12);
  ct_deferred_unref(paused);
  ct_deferred_unref(chained);
}

DTEST(deferred_pause, paused_outer_receives_inner_result_on_unpause) {
  rec r = {0};
  ct_deferred *outer = ct_deferred_new(NULL, NULL);
  ct_deferred *inner = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(outer, cb_wait_on, inner);
  ct_deferred_add_callback(outer, cb_record, &r);
  ct_deferred_callback(outer, CT_NONE);
  ct_deferred_pause(outer);
  ct_deferred_callback(inner, ct_value_int(8));
  cr_assert_eq(r.n, 0);
  cr_assert_not(ct_deferred_waiting(outer));
  ct_deferred_unpause(outer);
  REC_EXPECT(&r, 8);
  ct_deferred_unref(inner);
  ct_deferred_unref(outer);
}

/* ------------------------------------------------------ unhandled errors */

DTEST(deferred_log, unhandled_failure_logged_once_with_site) {
  log_capture lc;
  log_capture_start(&lc);
  int line = __LINE__ + 1;
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_ref(d);
  ct_deferred_errback(d, ct_failure_wrap("tcp", CT_ECONNRESET,
                                         ct_failure_new(CT_EPIPE, "root"),
                                         "peer went away"));
  ct_deferred_unref(d);
  cr_assert_eq(lc.unhandled, 0, "not while a reference remains");
  ct_deferred_unref(d);
  cr_assert_eq(lc.unhandled, 1);
  char site[64];
  snprintf(site, sizeof(site), "test_deferred_cancel.c:%d", line);
  cr_assert_not_null(strstr(lc.last, site), "creation site in: %s", lc.last);
  cr_assert_not_null(strstr(lc.last, "peer went away"), "%s", lc.last);
  cr_assert_not_null(strstr(lc.last, "ECONNRESET"), "%s", lc.last);
  cr_assert_not_null(strstr(lc.last, "caused by"), "%s", lc.last);
  cr_assert_not_null(strstr(lc.last, "root"), "%s", lc.last);
  log_capture_stop(&lc);
}

DTEST(deferred_log, consumed_failure_is_not_logged) {
  log_capture lc;
  log_capture_start(&lc);
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_errback(d, eb_recover, (void *)0);
  ct_deferred_errback(d, ct_failure_new(CT_EPROTO, "handled"));
  ct_deferred_unref(d);
  d = ct_fail(ct_failure_new(CT_EPROTO, "taken"));
  cr_assert_eq(take_failure_code(d), CT_EPROTO);
  ct_deferred_unref(d);
  d = ct_deferred_new(NULL, NULL); /* never fired */
  ct_deferred_unref(d);
  cr_assert_eq(lc.unhandled, 0);
  log_capture_stop(&lc);
}

DTEST(deferred_log, failure_recovered_then_raised_again_is_logged) {
  log_capture lc;
  log_capture_start(&lc);
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_errback(d, eb_recover, (void *)0);
  ct_deferred_add_callback(d, cb_raise, (void *)(intptr_t)CT_EUSER);
  ct_deferred_errback(d, ct_failure_new(CT_EPROTO, "first"));
  ct_deferred_unref(d);
  log_expect_unhandled(&lc, 1, "EUSER");
  log_capture_stop(&lc);
}

/* test_errorClearedByChaining: a failure handed to an outer Deferred is
 * reported (once) by the outer one, not by the inner. */
DTEST(deferred_log, failure_moved_by_chaining_logged_by_outer_only) {
  log_capture lc;
  log_capture_start(&lc);
  ct_deferred *bad = ct_fail(ct_failure_new(CT_EPROTO, "Boom!"));
  ct_deferred *good = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(good, cb_wait_on, bad);
  ct_deferred_callback(good, CT_NONE);
  ct_deferred_unref(bad);
  cr_assert_eq(lc.unhandled, 0);
  ct_deferred_unref(good);
  log_expect_unhandled(&lc, 1, "Boom!");
  log_capture_stop(&lc);
}

DTEST(deferred_log, cancelled_unhandled_is_logged) {
  log_capture lc;
  log_capture_start(&lc);
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_cancel(d);
  ct_deferred_unref(d);
  log_expect_unhandled(&lc, 1, "ECANCELLED");
  log_capture_stop(&lc);
}
