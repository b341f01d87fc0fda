/* Deferred core: firing, callback ordering, errback recovery, add after
 * fire, AlreadyCalled, add_both, result inspection and ownership.  A C port
 * of the behaviours of twisted/test/test_defer.py's DeferredTests and
 * AlreadyCalledTests. */
#include "test_deferred_common.h"

DTEST(deferred_core, callback_runs_with_value) {
  rec r = {0};
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  cr_assert_not_null(d);
  cr_assert_eq(ct_deferred_add_callback(d, cb_record, &r), 0);
  cr_assert_eq(r.n, 0, "nothing runs before firing");
  cr_assert_eq(ct_deferred_callback(d, ct_value_int(7)), 0);
  REC_EXPECT(&r, 7);
  cr_assert_eq(take_int(d), 7);
  ct_deferred_unref(d);
}

DTEST(deferred_core, callbacks_run_in_order_and_transform) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  rec r = {0};
  ct_deferred_add_callback(d, cb_add, (void *)1);
  ct_deferred_add_callback(d, cb_record, &r);
  ct_deferred_add_callback(d, cb_add, (void *)10);
  ct_deferred_add_callback(d, cb_record, &r);
  ct_deferred_add_callback(d, cb_add, (void *)100);
  ct_deferred_callback(d, ct_value_int(0));
  REC_EXPECT(&r, 1, 11);
  cr_assert_eq(take_int(d), 111);
  ct_deferred_unref(d);
}

DTEST(deferred_core, errback_runs_with_failure) {
  rec r = {0};
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_errback(d, eb_record, &r);
  ct_deferred_errback(d, ct_failure_new(CT_EPROTO, "boom"));
  REC_EXPECT(&r, CT_EPROTO);
  cr_assert(ct_deferred_is_failed(d));
  cr_assert_eq(take_failure_code(d), CT_EPROTO);
  ct_deferred_unref(d);
}

DTEST(deferred_core, failure_skips_callbacks_value_skips_errbacks) {
  rec r = {0};
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(d, cb_record, &r); /* skipped */
  ct_deferred_add_errback(d, eb_recover, (void *)5);
  ct_deferred_add_errback(d, eb_record, &r);  /* skipped */
  ct_deferred_add_callback(d, cb_record, &r); /* runs with 5 */
  ct_deferred_errback(d, ct_failure_new(CT_EINVAL, "x"));
  REC_EXPECT(&r, 5);
  cr_assert_eq(take_int(d), 5);
  ct_deferred_unref(d);
}

DTEST(deferred_core, callback_raising_switches_to_errback_path) {
  rec r = {0};
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(d, cb_raise, (void *)(intptr_t)CT_EUSER);
  ct_deferred_add_callback(d, cb_record, &r);
  ct_deferred_add_errback(d, eb_record, &r);
  ct_deferred_callback(d, ct_value_int(1));
  REC_EXPECT(&r, CT_EUSER);
  cr_assert_eq(take_failure_code(d), CT_EUSER);
  ct_deferred_unref(d);
}

DTEST(deferred_core, add_callbacks_pair_picks_one_side) {
  rec r = {0};
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callbacks(d, cb_record, eb_record, &r);
  ct_deferred_callback(d, ct_value_int(3));
  ct_deferred_add_callbacks(d, cb_raise, eb_recover,
                            (void *)(intptr_t)CT_EUSER);
  ct_deferred_add_callbacks(d, cb_record, eb_recover, (void *)9);
  /* cb_raise ran; then the pair (cb_record, eb_recover) took the errback
   * side with arg 9. */
  REC_EXPECT(&r, 3);
  cr_assert_eq(take_int(d), 9);
  ct_deferred_unref(d);
}

DTEST(deferred_core, null_callback_and_errback_pass_through) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  cr_assert_eq(ct_deferred_add_callbacks(d, NULL, NULL, NULL), 0);
  ct_deferred_add_callbacks(d, NULL, eb_recover, (void *)1);
  ct_deferred_callback(d, ct_value_int(4));
  cr_assert_eq(take_int(d), 4);
  ct_deferred_unref(d);
}

DTEST(deferred_core, callbacks_added_after_fire_run_at_once_in_order) {
  rec r = {0};
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_callback(d, ct_value_int(1));
  ct_deferred_add_callback(d, cb_record, &r);
  cr_assert_eq(r.n, 1);
  ct_deferred_add_callback(d, cb_add, (void *)1);
  ct_deferred_add_callback(d, cb_record, &r);
  cr_assert_eq(r.n, 2);
  cr_assert_eq(r.items[1], 2);
  ct_deferred_unref(d);
}

DTEST(deferred_core, callback_twice_is_already_called) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  cr_assert_eq(ct_deferred_callback(d, ct_value_int(1)), 0);
  /* The second result is taken and freed (LSan checks the heap int). */
  cr_assert_eq(ct_deferred_callback(d, heap_int(2)), CT_EALREADY_CALLED);
  cr_assert_eq(ct_deferred_errback(d, ct_failure_new(CT_EINVAL, "x")),
               CT_EALREADY_CALLED);
  cr_assert_eq(take_int(d), 1);
  ct_deferred_unref(d);
}

DTEST(deferred_core, errback_then_callback_is_already_called) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_errback(d, ct_failure_new(CT_EPROTO, "x"));
  cr_assert_eq(ct_deferred_callback(d, CT_NONE), CT_EALREADY_CALLED);
  cr_assert_eq(ct_deferred_errback(d, ct_failure_new(CT_EINVAL, "y")),
               CT_EALREADY_CALLED);
  cr_assert_eq(take_failure_code(d), CT_EPROTO);
  ct_deferred_unref(d);
}

static ct_step cb_fire_self_again(ct_value v, void *arg) {
  ct_deferred *d = arg;
  int *rc = malloc(sizeof(int));
  *rc = ct_deferred_callback(d, ct_value_int(99));
  ct_value_free(v);
  return ct_pass(ct_value_of(rc, free));
}

DTEST(deferred_core, firing_from_own_callback_is_already_called) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(d, cb_fire_self_again, d);
  ct_deferred_callback(d, ct_value_int(1));
  cr_assert_eq(take_int(d), CT_EALREADY_CALLED);
  ct_deferred_unref(d);
}

static ct_step both_record(ct_result r, void *arg) {
  rec *x = arg;
  if (r.failure != NULL) {
    rec_add(x, r.failure->code);
    return ct_raise(r.failure);
  }
  rec_add(x, (int)ct_value_as_int(r.value));
  return ct_pass(r.value);
}

DTEST(deferred_core, add_both_sees_values_and_failures) {
  rec r = {0};
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_both(d, both_record, &r);
  ct_deferred_add_callback(d, cb_raise, (void *)(intptr_t)CT_EPROTO);
  ct_deferred_add_both(d, both_record, &r);
  ct_deferred_callback(d, ct_value_int(8));
  REC_EXPECT(&r, 8, CT_EPROTO);
  cr_assert_eq(take_failure_code(d), CT_EPROTO);
  ct_deferred_unref(d);
}

static ct_step cb_add_more(ct_value v, void *arg) {
  rec *r = arg;
  rec_add(r, 1);
  /* Adding to the running Deferred from its own callback: runs after this
   * one returns, not re-entrantly. */
  return ct_pass(v);
}

typedef struct reentry {
  ct_deferred *d;
  rec *r;
  int depth;
  int max_depth;
} reentry;

static ct_step cb_reentry_inner(ct_value v, void *arg) {
  reentry *re = arg;
  re->depth++;
  if (re->depth > re->max_depth)
    re->max_depth = re->depth;
  rec_add(re->r, 2);
  re->depth--;
  return ct_pass(v);
}

static ct_step cb_reentry_outer(ct_value v, void *arg) {
  reentry *re = arg;
  re->depth++;
  re->max_depth = re->depth;
  ct_deferred_add_callback(re->d, cb_reentry_inner, re);
  rec_add(re->r, 1);
  cr_assert_eq(re->r->n, 1, "the added callback must not run re-entrantly");
  re->depth--;
  return ct_pass(v);
}

DTEST(deferred_core, adding_callback_from_callback_is_not_reentrant) {
  rec r = {0};
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  reentry re = {d, &r, 0, 0};
  ct_deferred_add_callback(d, cb_reentry_outer, &re);
  ct_deferred_callback(d, CT_NONE);
  REC_EXPECT(&r, 1, 2);
  cr_assert_eq(re.max_depth, 1);
  (void)cb_add_more;
  ct_deferred_unref(d);
}

DTEST(deferred_core, has_result_and_take_result_states) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_result r;
  cr_assert_not(ct_deferred_called(d));
  cr_assert_not(ct_deferred_has_result(d));
  cr_assert_eq(ct_deferred_take_result(d, &r), CT_ESTATE);
  cr_assert_eq(ct_deferred_take_result(d, NULL), CT_ESTATE);
  ct_deferred_callback(d, ct_value_int(5));
  cr_assert(ct_deferred_called(d));
  cr_assert(ct_deferred_has_result(d));
  cr_assert_not(ct_deferred_is_failed(d));
  cr_assert_null(ct_deferred_peek_failure(d));
  const ct_value *pv = ct_deferred_peek_value(d);
  cr_assert_not_null(pv);
  cr_assert_eq(ct_value_as_int(*pv), 5);
  cr_assert_eq(take_int(d), 5);
  /* After taking, the Deferred holds CT_NONE. */
  cr_assert_eq(ct_deferred_take_result(d, &r), 0);
  cr_assert_null(r.value.ptr);
  cr_assert_null(r.failure);
  ct_deferred_unref(d);
}

DTEST(deferred_core, peek_failure_borrows) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_errback(d, ct_failure_new(CT_EPROTO, "peek %d", 1));
  const ct_failure *f = ct_deferred_peek_failure(d);
  cr_assert_not_null(f);
  cr_assert_eq(f->code, CT_EPROTO);
  cr_assert_str_eq(f->message, "peek 1");
  cr_assert_null(ct_deferred_peek_value(d));
  cr_assert_eq(take_failure_code(d), CT_EPROTO);
  cr_assert_null(ct_deferred_peek_failure(d));
  ct_deferred_unref(d);
}

DTEST(deferred_core, heap_values_are_freed_on_every_path) {
  /* Fired and freed with a heap value still in it. */
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_callback(d, heap_int(1));
  ct_deferred_unref(d);
  /* Fired with a value, chain replaces it. */
  d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(d, cb_raise, (void *)(intptr_t)CT_EUSER);
  ct_deferred_add_errback(d, eb_recover, (void *)0);
  ct_deferred_callback(d, heap_int(2));
  ct_deferred_unref(d);
  /* Abandoned unfired with callbacks. */
  d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(d, cb_add, (void *)1);
  ct_deferred_unref(d);
}

static int dropped;
static void count_drop(void *arg) {
  dropped++;
  free(arg);
}
static ct_step cb_free_arg(ct_value v, void *arg) {
  free(arg);
  return ct_pass(v);
}

DTEST(deferred_core, drop_runs_for_unrun_entries_only) {
  dropped = 0;
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callbacks_full(d, cb_free_arg, NULL, malloc(4), count_drop);
  ct_deferred_add_callbacks_full(d, cb_free_arg, NULL, malloc(4), count_drop);
  ct_deferred_unref(d); /* abandoned: both dropped */
  cr_assert_eq(dropped, 2);

  dropped = 0;
  d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callbacks_full(d, cb_free_arg, NULL, malloc(4), count_drop);
  ct_deferred_callback(d, CT_NONE); /* ran: not dropped */
  ct_deferred_unref(d);
  cr_assert_eq(dropped, 0);
}

DTEST(deferred_core, many_callbacks_grow_beyond_inline_storage) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  for (int i = 0; i < 1000; i++)
    cr_assert_eq(ct_deferred_add_callback(d, cb_add, (void *)1), 0);
  ct_deferred_callback(d, ct_value_int(0));
  cr_assert_eq(take_int(d), 1000);
  /* And again after firing (each runs at once). */
  for (int i = 0; i < 100; i++)
    ct_deferred_add_callback(d, cb_add, (void *)2);
  cr_assert_eq(take_int(d), 200);
  ct_deferred_unref(d);
}

DTEST(deferred_core, refs_keep_deferred_alive) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  cr_assert_eq(ct_deferred_ref(d), d);
  ct_deferred_unref(d);
  ct_deferred_callback(d, ct_value_int(3));
  cr_assert_eq(take_int(d), 3);
  ct_deferred_unref(d);
  ct_deferred_unref(NULL);
  cr_assert_null(ct_deferred_ref(NULL));
}

static ct_step cb_unref_self(ct_value v, void *arg) {
  ct_deferred_unref(arg); /* drops the last user reference mid-chain */
  return ct_pass(v);
}

DTEST(deferred_core, callback_may_drop_last_reference) {
  rec r = {0};
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(d, cb_unref_self, d);
  ct_deferred_add_callback(d, cb_record, &r);
  ct_deferred_callback(d, heap_int(4) /* freed with d */);
  /* cb_record saw a pointer, not an int: only check it ran. */
  cr_assert_eq(r.n, 1);
}

DTEST(deferred_core, bad_arguments) {
  cr_assert_eq(ct_deferred_callback(NULL, heap_int(1)), CT_EINVAL);
  cr_assert_eq(ct_deferred_errback(NULL, ct_failure_new(CT_EINVAL, "x")),
               CT_EINVAL);
  cr_assert_eq(ct_deferred_add_callback(NULL, cb_add, NULL), CT_EINVAL);
  cr_assert_eq(ct_deferred_add_both(NULL, both_record, NULL), CT_EINVAL);
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  cr_assert_eq(ct_deferred_add_both(d, NULL, NULL), CT_EINVAL);
  cr_assert_eq(ct_deferred_chain(d, d), CT_EINVAL);
  cr_assert_eq(ct_deferred_chain(d, NULL), CT_EINVAL);
  cr_assert_eq(ct_deferred_cancel(NULL), CT_EINVAL);
  ct_deferred_pause(NULL);
  ct_deferred_unpause(NULL);
  ct_deferred_unpause(d); /* not paused: no-op */
  cr_assert_not(ct_deferred_called(NULL));
  cr_assert_not(ct_deferred_has_result(NULL));
  /* errback(NULL) still fails the Deferred, with CT_EINVAL. */
  cr_assert_eq(ct_deferred_errback(d, NULL), 0);
  cr_assert_eq(take_failure_code(d), CT_EINVAL);
  ct_deferred_unref(d);
}

static ct_step cb_raise_null(ct_value v, void *arg) {
  ct_value_free(v);
  return ct_raise(NULL);
}

DTEST(deferred_core, raising_null_failure_becomes_einval) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(d, cb_raise_null, NULL);
  ct_deferred_callback(d, CT_NONE);
  cr_assert_eq(take_failure_code(d), CT_EINVAL);
  ct_deferred_unref(d);
}

DTEST(deferred_core, creation_site_is_recorded) {
  int line = __LINE__ + 1;
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  cr_assert_not_null(strstr(ct_deferred_created_file(d), "test_deferred_core"));
  cr_assert_eq(ct_deferred_created_line(d), line);
  ct_deferred_unref(d);
}

DTEST(deferred_core, value_helpers) {
  ct_value v = ct_value_int(-42);
  cr_assert_eq(ct_value_as_int(v), -42);
  cr_assert_null(v.free);
  ct_value_free(v);
  ct_value_free(CT_NONE);
  ct_value h = heap_int(3);
  cr_assert_eq(heap_get(h), 3);
  ct_value_free(h);
}
