/* succeed/fail/maybeDeferred, DeferredList (every flag combination),
 * gatherResults, and cancelling lists.  Behaviours of test_defer.py's
 * DeferredListTests-style cases (testDeferredList*, test_cancelDeferredList*,
 * test_gatherResults*, test_maybeDeferred*, DeferredListEmptyTests). */
#include "test_deferred_common.h"

/* Fetch the ct_dl_result a list fired with (borrowed from the value, which
 * the caller frees with ct_value_free). */
static ct_dl_result *take_list(ct_deferred *d, ct_value *keep) {
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(d, &r), 0);
  cr_assert_null(r.failure, "list failed: %s",
                 r.failure ? r.failure->message : "");
  cr_assert_eq((void *)r.value.free, (void *)ct_dl_result_free);
  *keep = r.value;
  return r.value.ptr;
}

/* ------------------------------------------------------ immediate results */

DTEST(deferred_util, succeed_is_fired) {
  rec r = {0};
  ct_deferred *d = ct_succeed(ct_value_int(3));
  cr_assert(ct_deferred_called(d));
  ct_deferred_add_callback(d, cb_record, &r);
  REC_EXPECT(&r, 3);
  ct_deferred_unref(d);
}

DTEST(deferred_util, fail_is_failed) {
  ct_deferred *d = ct_fail(ct_failure_new(CT_EPROTO, "x"));
  cr_assert(ct_deferred_is_failed(d));
  cr_assert_eq(take_failure_code(d), CT_EPROTO);
  ct_deferred_unref(d);
  d = ct_fail(NULL);
  cr_assert_eq(take_failure_code(d), CT_EINVAL);
  ct_deferred_unref(d);
}

static ct_step fn_value(void *arg) {
  return ct_pass(ct_value_int((intptr_t)arg));
}
static ct_step fn_failure(void *arg) {
  return ct_raise(ct_failure_new((int)(intptr_t)arg, "sync failure"));
}
static ct_step fn_deferred(void *arg) {
  return ct_wait(ct_deferred_ref(arg));
}
static ct_step fn_heap(void *arg) {
  return ct_pass(heap_int(5));
}

DTEST(deferred_util, maybe_deferred_sync_value) {
  ct_deferred *d = ct_maybe_deferred(fn_value, (void *)10);
  cr_assert_eq(take_int(d), 10);
  ct_deferred_unref(d);
  d = ct_maybe_deferred(fn_heap, NULL);
  cr_assert_eq(take_int(d), 5);
  ct_deferred_unref(d);
}

DTEST(deferred_util, maybe_deferred_sync_failure) {
  ct_deferred *d = ct_maybe_deferred(fn_failure, (void *)(intptr_t)CT_EUSER);
  cr_assert_eq(take_failure_code(d), CT_EUSER);
  ct_deferred_unref(d);
}

DTEST(deferred_util, maybe_deferred_async_returns_same_deferred) {
  ct_deferred *inner = ct_deferred_new(NULL, NULL);
  ct_deferred *d = ct_maybe_deferred(fn_deferred, inner);
  cr_assert_eq(d, inner);
  cr_assert_not(ct_deferred_called(d));
  ct_deferred_callback(inner, ct_value_int(4));
  cr_assert_eq(take_int(d), 4);
  ct_deferred_unref(d);
  ct_deferred_unref(inner);
  cr_assert_null(ct_maybe_deferred(NULL, NULL));
}

DTEST(deferred_util, maybe_deferred_async_error) {
  ct_deferred *inner = ct_deferred_new(NULL, NULL);
  ct_deferred *d = ct_maybe_deferred(fn_deferred, inner);
  ct_deferred_errback(inner, ct_failure_new(CT_ECONNREFUSED, "async"));
  cr_assert_eq(take_failure_code(d), CT_ECONNREFUSED);
  ct_deferred_unref(d);
  ct_deferred_unref(inner);
}

/* ----------------------------------------------------------- DeferredList */

DTEST(deferred_list, empty_list_fires_at_once) {
  ct_deferred *l = ct_deferred_list(NULL, 0, 0);
  ct_value keep;
  ct_dl_result *res = take_list(l, &keep);
  cr_assert_eq(res->n, 0);
  ct_value_free(keep);
  ct_deferred_unref(l);
}

DTEST(deferred_list, empty_list_fire_on_one_callback_never_fires) {
  ct_deferred *l = ct_deferred_list(NULL, 0, CT_DL_FIRE_ON_ONE_CALLBACK);
  cr_assert_not(ct_deferred_called(l));
  ct_deferred_unref(l);
}

DTEST(deferred_list, waits_for_all_and_keeps_order) {
  ct_deferred *ds[3];
  for (int i = 0; i < 3; i++)
    ds[i] = ct_deferred_new(NULL, NULL);
  ct_deferred *l = ct_deferred_list(ds, 3, 0);
  ct_deferred_callback(ds[2], ct_value_int(30));
  ct_deferred_errback(ds[1], ct_failure_new(CT_EPROTO, "one"));
  cr_assert_not(ct_deferred_called(l));
  ct_deferred_callback(ds[0], heap_int(10));
  ct_value keep;
  ct_dl_result *res = take_list(l, &keep);
  cr_assert_eq(res->n, 3);
  cr_assert_eq(res->index, SIZE_MAX);
  cr_assert(res->entries[0].done && res->entries[0].success);
  cr_assert_eq(heap_get(res->entries[0].value), 10);
  cr_assert(res->entries[1].done && !res->entries[1].success);
  cr_assert_eq(res->entries[1].failure->code, CT_EPROTO);
  cr_assert_eq(ct_value_as_int(res->entries[2].value), 30);
  ct_value_free(keep);
  /* Without CONSUME_ERRORS the failure stays in ds[1] as well. */
  cr_assert_eq(take_failure_code(ds[1]), CT_EPROTO);
  /* Values moved into the list: the listed Deferred holds CT_NONE. */
  cr_assert_eq(take_int(ds[0]), 0);
  for (int i = 0; i < 3; i++)
    ct_deferred_unref(ds[i]);
  ct_deferred_unref(l);
}

DTEST(deferred_list, prefired_deferreds) {
  ct_deferred *ds[2] = {ct_succeed(ct_value_int(1)),
                        ct_succeed(ct_value_int(2))};
  ct_deferred *l = ct_deferred_list(ds, 2, 0);
  ct_value keep;
  ct_dl_result *res = take_list(l, &keep);
  cr_assert_eq(ct_value_as_int(res->entries[0].value), 1);
  cr_assert_eq(ct_value_as_int(res->entries[1].value), 2);
  ct_value_free(keep);
  unref_all(ds, 2);
  ct_deferred_unref(l);
}

DTEST(deferred_list, consume_errors_takes_failures) {
  log_capture lc;
  log_capture_start(&lc);
  ct_deferred *ds[2] = {ct_deferred_new(NULL, NULL),
                        ct_deferred_new(NULL, NULL)};
  ct_deferred *l = ct_deferred_list(ds, 2, CT_DL_CONSUME_ERRORS);
  ct_deferred_errback(ds[0], ct_failure_new(CT_EPROTO, "a"));
  ct_deferred_errback(ds[1], ct_failure_new(CT_EPIPE, "b"));
  ct_value keep;
  ct_dl_result *res = take_list(l, &keep);
  cr_assert_eq(res->entries[0].failure->code, CT_EPROTO);
  cr_assert_eq(res->entries[1].failure->code, CT_EPIPE);
  ct_value_free(keep);
  cr_assert_not(ct_deferred_is_failed(ds[0]));
  unref_all(ds, 2);
  ct_deferred_unref(l);
  cr_assert_eq(lc.unhandled, 0);
  log_capture_stop(&lc);
}

DTEST(deferred_list, unconsumed_errors_are_logged_by_their_deferreds) {
  log_capture lc;
  log_capture_start(&lc);
  ct_deferred *ds[1] = {ct_deferred_new(NULL, NULL)};
  ct_deferred *l = ct_deferred_list(ds, 1, 0);
  ct_deferred_errback(ds[0], ct_failure_new(CT_EPROTO, "a"));
  ct_deferred_unref(ds[0]);
  cr_assert_eq(lc.unhandled, 1);
  ct_deferred_unref(l); /* the list's result holds a copy: not logged */
  cr_assert_eq(lc.unhandled, 1);
  log_capture_stop(&lc);
}

DTEST(deferred_list, fire_on_one_callback) {
  ct_deferred *ds[3];
  for (int i = 0; i < 3; i++)
    ds[i] = ct_deferred_new(NULL, NULL);
  ct_deferred *l = ct_deferred_list(ds, 3, CT_DL_FIRE_ON_ONE_CALLBACK);
  ct_deferred_errback(ds[0], ct_failure_new(CT_EPROTO, "x"));
  cr_assert_not(ct_deferred_called(l));
  ct_deferred_callback(ds[2], ct_value_int(9));
  ct_value keep;
  ct_dl_result *res = take_list(l, &keep);
  cr_assert_eq(res->index, 2);
  cr_assert_eq(ct_value_as_int(res->entries[2].value), 9);
  ct_value_free(keep);
  /* Later results stay in their Deferreds. */
  ct_deferred_callback(ds[1], ct_value_int(5));
  cr_assert_eq(take_int(ds[1]), 5);
  cr_assert_eq(take_failure_code(ds[0]), CT_EPROTO);
  for (int i = 0; i < 3; i++)
    ct_deferred_unref(ds[i]);
  ct_deferred_unref(l);
}

DTEST(deferred_list, fire_on_one_callback_all_failed_fires_list) {
  ct_deferred *ds[2] = {ct_deferred_new(NULL, NULL),
                        ct_deferred_new(NULL, NULL)};
  ct_deferred *l = ct_deferred_list(
      ds, 2, CT_DL_FIRE_ON_ONE_CALLBACK | CT_DL_CONSUME_ERRORS);
  ct_deferred_errback(ds[0], ct_failure_new(CT_EPROTO, "x"));
  ct_deferred_errback(ds[1], ct_failure_new(CT_EPROTO, "y"));
  ct_value keep;
  ct_dl_result *res = take_list(l, &keep);
  cr_assert_eq(res->index, SIZE_MAX);
  cr_assert_not(res->entries[0].success);
  cr_assert_not(res->entries[1].success);
  ct_value_free(keep);
  unref_all(ds, 2);
  ct_deferred_unref(l);
}

DTEST(deferred_list, fire_on_one_errback) {
  ct_deferred *ds[3];
  for (int i = 0; i < 3; i++)
    ds[i] = ct_deferred_new(NULL, NULL);
  ct_deferred *l = ct_deferred_list(ds, 3, CT_DL_FIRE_ON_ONE_ERRBACK);
  ct_deferred_callback(ds[0], ct_value_int(1));
  cr_assert_not(ct_deferred_called(l));
  ct_deferred_errback(ds[1], ct_failure_new(CT_ECONNRESET, "reset"));
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(l, &r), 0);
  cr_assert_not_null(r.failure);
  cr_assert_eq(r.failure->code, CT_EFIRST_ERROR);
  cr_assert_eq(ct_first_error_index(r.failure), 1);
  cr_assert(ct_failure_check(r.failure, CT_ECONNRESET));
  cr_assert_not_null(strstr(r.failure->message, "reset"));
  ct_failure_free(r.failure);
  /* Not consumed: ds[1] still holds its failure. */
  cr_assert_eq(take_failure_code(ds[1]), CT_ECONNRESET);
  ct_deferred_callback(ds[2], ct_value_int(3));
  cr_assert_eq(take_int(ds[2]), 3);
  for (int i = 0; i < 3; i++)
    ct_deferred_unref(ds[i]);
  ct_deferred_unref(l);
}

DTEST(deferred_list, fire_on_one_errback_all_succeed) {
  ct_deferred *ds[2] = {ct_deferred_new(NULL, NULL),
                        ct_deferred_new(NULL, NULL)};
  ct_deferred *l = ct_deferred_list(ds, 2, CT_DL_FIRE_ON_ONE_ERRBACK);
  ct_deferred_callback(ds[1], ct_value_int(2));
  ct_deferred_callback(ds[0], ct_value_int(1));
  ct_value keep;
  ct_dl_result *res = take_list(l, &keep);
  cr_assert_eq(res->n, 2);
  cr_assert(res->entries[0].success && res->entries[1].success);
  ct_value_free(keep);
  unref_all(ds, 2);
  ct_deferred_unref(l);
}

DTEST(deferred_list, both_fire_on_one_flags) {
  ct_deferred *ds[2] = {ct_deferred_new(NULL, NULL),
                        ct_deferred_new(NULL, NULL)};
  ct_deferred *l =
      ct_deferred_list(ds, 2,
                       CT_DL_FIRE_ON_ONE_CALLBACK | CT_DL_FIRE_ON_ONE_ERRBACK |
                           CT_DL_CONSUME_ERRORS);
  ct_deferred_errback(ds[1], ct_failure_new(CT_EPROTO, "first"));
  cr_assert_eq(take_failure_code(l), CT_EFIRST_ERROR);
  ct_deferred_callback(ds[0], ct_value_int(1));
  cr_assert_eq(take_int(ds[0]), 1);
  unref_all(ds, 2);
  ct_deferred_unref(l);
}

DTEST(deferred_list, list_abandoned_before_firing) {
  ct_deferred *ds[2] = {ct_deferred_new(NULL, NULL),
                        ct_deferred_new(NULL, NULL)};
  ct_deferred *l = ct_deferred_list(ds, 2, 0);
  ct_deferred_unref(l); /* the caller loses interest */
  ct_deferred_callback(ds[0], heap_int(1));
  ct_deferred_callback(ds[1], heap_int(2));
  unref_all(ds, 2);
}

DTEST(deferred_list, listed_deferreds_abandoned_unfired) {
  ct_deferred *ds[2] = {ct_deferred_new(NULL, NULL),
                        ct_deferred_new(NULL, NULL)};
  ct_deferred *l = ct_deferred_list(ds, 2, 0);
  unref_all(ds, 2);
  /* The list can never fire now; cancelling it is still safe. */
  ct_deferred_cancel(l);
  cr_assert_eq(take_failure_code(l), CT_ECANCELLED);
  ct_deferred_unref(l);
}

DTEST(deferred_list, bad_arguments) {
  cr_assert_null(ct_deferred_list(NULL, 2, 0));
  cr_assert_null(ct_gather_results(NULL, 1));
  cr_assert_eq(ct_first_error_index(NULL), -1);
  ct_failure *f = ct_failure_new(CT_EPROTO, "FirstError at index 3");
  cr_assert_eq(ct_first_error_index(f), -1, "wrong code");
  ct_failure_free(f);
  /* The right code and the text, but not made by a list: no index. */
  f = ct_failure_new(CT_EFIRST_ERROR, "FirstError at index 3: fake");
  cr_assert_eq(ct_first_error_index(f), -1, "index parsed from the text");
  ct_failure_free(f);
}

DTEST(deferred_list, first_error_index_is_stored_not_parsed) {
  ct_deferred *ds[3] = {ct_deferred_new(NULL, NULL),
                        ct_deferred_new(NULL, NULL),
                        ct_deferred_new(NULL, NULL)};
  ct_deferred *l = ct_gather_results(ds, 3);
  /* A cause whose text looks like another index. */
  ct_deferred_errback(ds[2], ct_failure_new(CT_EUSER, "at index 7"));
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(l, &r), 0);
  cr_assert_not_null(r.failure);
  cr_assert_eq(ct_first_error_index(r.failure), 2);
  ct_failure *copy = ct_failure_copy(r.failure);
  cr_assert_eq(ct_first_error_index(copy), 2, "a copy keeps the index");
  cr_assert_eq(copy->cause->detail, -1);
  ct_failure_free(copy);
  ct_failure_free(r.failure);
  ct_deferred_unref(l);
  ct_deferred_callback(ds[0], ct_value_int(1));
  ct_deferred_callback(ds[1], ct_value_int(2));
  unref_all(ds, 3);
}

/* ------------------------------------------------------ cancelling lists */

static void fake_callback_canceller(ct_deferred *d, void *arg) {
  ct_deferred_callback(d, ct_value_int(1234));
}

DTEST(deferred_list, cancel_cancels_every_deferred) {
  ct_deferred *ds[2] = {ct_deferred_new(NULL, NULL),
                        ct_deferred_new(NULL, NULL)};
  ct_deferred *l = ct_deferred_list(ds, 2, 0);
  ct_deferred_cancel(l);
  cr_assert_eq(take_failure_code(ds[0]), CT_ECANCELLED);
  cr_assert_eq(take_failure_code(ds[1]), CT_ECANCELLED);
  /* All fired: the list fired with the (failed) entries. */
  ct_value keep;
  ct_dl_result *res = take_list(l, &keep);
  cr_assert_eq(res->entries[0].failure->code, CT_ECANCELLED);
  ct_value_free(keep);
  unref_all(ds, 2);
  ct_deferred_unref(l);
}

DTEST(deferred_list, cancel_with_callbacking_canceller) {
  ct_deferred *ds[2] = {ct_deferred_new(fake_callback_canceller, NULL),
                        ct_deferred_new(NULL, NULL)};
  ct_deferred *l = ct_deferred_list(ds, 2, 0);
  ct_deferred_cancel(l);
  cr_assert_eq(take_failure_code(ds[1]), CT_ECANCELLED);
  ct_value keep;
  ct_dl_result *res = take_list(l, &keep);
  cr_assert(res->entries[0].success);
  cr_assert_eq(ct_value_as_int(res->entries[0].value), 1234);
  cr_assert_not(res->entries[1].success);
  cr_assert_eq(res->entries[1].failure->code, CT_ECANCELLED);
  ct_value_free(keep);
  unref_all(ds, 2);
  ct_deferred_unref(l);
}

DTEST(deferred_list, cancel_fire_on_one_callback_with_callbacking_canceller) {
  ct_deferred *ds[2] = {ct_deferred_new(fake_callback_canceller, NULL),
                        ct_deferred_new(NULL, NULL)};
  ct_deferred *l = ct_deferred_list(ds, 2, CT_DL_FIRE_ON_ONE_CALLBACK);
  ct_deferred_cancel(l);
  cr_assert_eq(take_failure_code(ds[1]), CT_ECANCELLED);
  ct_value keep;
  ct_dl_result *res = take_list(l, &keep);
  cr_assert_eq(res->index, 0);
  cr_assert_eq(ct_value_as_int(res->entries[0].value), 1234);
  ct_value_free(keep);
  unref_all(ds, 2);
  ct_deferred_unref(l);
}

DTEST(deferred_list, cancel_fire_on_one_errback) {
  ct_deferred *ds[2] = {ct_deferred_new(NULL, NULL),
                        ct_deferred_new(NULL, NULL)};
  ct_deferred *l = ct_deferred_list(ds, 2, CT_DL_FIRE_ON_ONE_ERRBACK);
  ct_deferred_cancel(l);
  cr_assert_eq(take_failure_code(ds[0]), CT_ECANCELLED);
  cr_assert_eq(take_failure_code(ds[1]), CT_ECANCELLED);
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(l, &r), 0);
  cr_assert_eq(r.failure->code, CT_EFIRST_ERROR);
  cr_assert(ct_failure_check(r.failure, CT_ECANCELLED));
  ct_failure_free(r.failure);
  unref_all(ds, 2);
  ct_deferred_unref(l);
}

DTEST(deferred_list, cancel_fire_on_one_errback_all_callback) {
  ct_deferred *ds[2] = {ct_deferred_new(fake_callback_canceller, NULL),
                        ct_deferred_new(fake_callback_canceller, NULL)};
  ct_deferred *l = ct_deferred_list(ds, 2, CT_DL_FIRE_ON_ONE_ERRBACK);
  ct_deferred_cancel(l);
  ct_value keep;
  ct_dl_result *res = take_list(l, &keep);
  cr_assert(res->entries[0].success && res->entries[1].success);
  ct_value_free(keep);
  unref_all(ds, 2);
  ct_deferred_unref(l);
}

DTEST(deferred_list, cancel_after_fired_on_one_callback_does_nothing) {
  ct_deferred *ds[2] = {ct_deferred_new(NULL, NULL),
                        ct_deferred_new(NULL, NULL)};
  ct_deferred *l = ct_deferred_list(ds, 2, CT_DL_FIRE_ON_ONE_CALLBACK);
  ct_deferred_callback(ds[0], CT_NONE);
  ct_deferred_cancel(l);
  cr_assert_not(ct_deferred_called(ds[1]));
  discard_result(l);
  unref_all(ds, 2);
  ct_deferred_unref(l);
}

DTEST(deferred_list, cancel_after_fired_on_one_errback_does_nothing) {
  ct_deferred *ds[2] = {ct_deferred_new(NULL, NULL),
                        ct_deferred_new(NULL, NULL)};
  ct_deferred *l = ct_deferred_list(ds, 2, CT_DL_FIRE_ON_ONE_ERRBACK);
  ct_deferred_errback(ds[0], ct_failure_new(CT_EPROTO, "x"));
  ct_deferred_cancel(l);
  cr_assert_not(ct_deferred_called(ds[1]));
  cr_assert_eq(take_failure_code(ds[0]), CT_EPROTO);
  cr_assert_eq(take_failure_code(l), CT_EFIRST_ERROR);
  unref_all(ds, 2);
  ct_deferred_unref(l);
}

/* --------------------------------------------------------- gatherResults */

DTEST(deferred_gather, all_succeed) {
  ct_deferred *ds[3] = {ct_deferred_new(NULL, NULL),
                        ct_succeed(ct_value_int(2)),
                        ct_deferred_new(NULL, NULL)};
  ct_deferred *g = ct_gather_results(ds, 3);
  ct_deferred_callback(ds[0], ct_value_int(1));
  cr_assert_not(ct_deferred_called(g));
  ct_deferred_callback(ds[2], heap_int(3));
  ct_value keep;
  ct_dl_result *res = take_list(g, &keep);
  cr_assert_eq(ct_value_as_int(res->entries[0].value), 1);
  cr_assert_eq(ct_value_as_int(res->entries[1].value), 2);
  cr_assert_eq(heap_get(res->entries[2].value), 3);
  ct_value_free(keep);
  for (int i = 0; i < 3; i++)
    ct_deferred_unref(ds[i]);
  ct_deferred_unref(g);
}

DTEST(deferred_gather, first_failure_wins_others_consumed) {
  log_capture lc;
  log_capture_start(&lc);
  ct_deferred *ds[3];
  for (int i = 0; i < 3; i++)
    ds[i] = ct_deferred_new(NULL, NULL);
  ct_deferred *g = ct_gather_results(ds, 3);
  ct_deferred_errback(ds[2], ct_failure_new(CT_EPROTO, "first"));
  ct_deferred_errback(ds[0], ct_failure_new(CT_EPIPE, "second"));
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(g, &r), 0);
  cr_assert_eq(r.failure->code, CT_EFIRST_ERROR);
  cr_assert_eq(ct_first_error_index(r.failure), 2);
  cr_assert_eq(r.failure->cause->code, CT_EPROTO);
  ct_failure_free(r.failure);
  ct_deferred_callback(ds[1], ct_value_int(1));
  for (int i = 0; i < 3; i++)
    ct_deferred_unref(ds[i]);
  ct_deferred_unref(g);
  cr_assert_eq(lc.unhandled, 0, "gather consumes every failure");
  log_capture_stop(&lc);
}

DTEST(deferred_gather, cancel_gather_cancels_all) {
  ct_deferred *ds[2] = {ct_deferred_new(NULL, NULL),
                        ct_deferred_new(NULL, NULL)};
  ct_deferred *g = ct_gather_results(ds, 2);
  ct_deferred_cancel(g);
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(g, &r), 0);
  cr_assert(ct_failure_check(r.failure, CT_ECANCELLED));
  cr_assert_eq(ct_first_error_index(r.failure), 0);
  ct_failure_free(r.failure);
  cr_assert(ct_deferred_called(ds[1]));
  unref_all(ds, 2);
  ct_deferred_unref(g);
}

DTEST(deferred_gather, cancel_gather_with_all_callbacking) {
  ct_deferred *ds[2] = {ct_deferred_new(fake_callback_canceller, NULL),
                        ct_deferred_new(fake_callback_canceller, NULL)};
  ct_deferred *g = ct_gather_results(ds, 2);
  ct_deferred_cancel(g);
  ct_value keep;
  ct_dl_result *res = take_list(g, &keep);
  cr_assert_eq(ct_value_as_int(res->entries[1].value), 1234);
  ct_value_free(keep);
  unref_all(ds, 2);
  ct_deferred_unref(g);
}

DTEST(deferred_gather, large_fan_out) {
  enum { N = 5000 };
  ct_deferred **ds = malloc(N * sizeof(*ds));
  for (int i = 0; i < N; i++)
    ds[i] = ct_deferred_new(NULL, NULL);
  ct_deferred *g = ct_gather_results(ds, N);
  for (int i = N - 1; i >= 0; i--)
    ct_deferred_callback(ds[i], ct_value_int(i));
  ct_value keep;
  ct_dl_result *res = take_list(g, &keep);
  cr_assert_eq(res->n, (size_t)N);
  for (int i = 0; i < N; i++)
    cr_assert_eq(ct_value_as_int(res->entries[i].value), i);
  ct_value_free(keep);
  for (int i = 0; i < N; i++)
    ct_deferred_unref(ds[i]);
  free(ds);
  ct_deferred_unref(g);
}
