/* Small helpers shared by the test_deferred_*.c suites (header-only, so
 * that each suite stays one executable). */
#ifndef TEST_DEFERRED_COMMON_H
#define TEST_DEFERRED_COMMON_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/deferred.h"
#include "ctwist/log.h"

/* An event log the callbacks append to: ints, in order. */
typedef struct rec {
  int items[64];
  int n;
} rec;

static inline void rec_add(rec *r, int x) {
  if (r->n < 64)
    r->items[r->n++] = x;
}

/* Assert `r` recorded exactly the n ints of `want`, in order; a failure
 * names the item. */
static inline void rec_expect_(const rec *r, const int *want, int n) {
  cr_assert_eq(r->n, n, "recorded %d items, want %d", r->n, n);
  for (int i = 0; i < n; i++)
    cr_assert_eq(r->items[i], want[i], "item %d: %d, want %d", i, r->items[i],
                 want[i]);
}

#define REC_EXPECT(r, ...)                                                     \
  rec_expect_((r), (const int[]){__VA_ARGS__},                                 \
              (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)))

/* Heap ints alive (made by heap_int, not yet freed): DTEST checks that a
 * test frees every one it made, also without a leak checker. */
static long live_heap_ints;

static inline void heap_int_free(void *p) {
  live_heap_ints--;
  free(p);
}

/* A heap-allocated int value, so a leaked value is seen by the count (and
 * by LSan). */
static inline ct_value heap_int(int x) {
  int *p = malloc(sizeof(*p));
  *p = x;
  live_heap_ints++;
  return ct_value_of(p, heap_int_free);
}

static inline int heap_get(ct_value v) {
  return *(int *)v.ptr;
}

/* Assert `d` has a successful result, take it, and return it as an int
 * (heap ints are read and freed). */
static inline intptr_t take_int(ct_deferred *d) {
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(d, &r), 0, "no result to take");
  if (r.failure != NULL) {
    char buf[512];
    ct_failure_format(r.failure, buf, sizeof(buf));
    ct_failure_free(r.failure);
    cr_assert_fail("expected a value, got failure %s", buf);
  }
  intptr_t x;
  if (r.value.free == heap_int_free || r.value.free == free) {
    x = *(int *)r.value.ptr;
  } else {
    x = ct_value_as_int(r.value);
  }
  ct_value_free(r.value);
  return x;
}

/* Assert `d` has failed, take the failure, and return its code. */
static inline int take_failure_code(ct_deferred *d) {
  ct_result r;
  cr_assert_eq(ct_deferred_take_result(d, &r), 0, "no result to take");
  cr_assert_not_null(r.failure, "expected a failure");
  int code = r.failure->code;
  ct_failure_free(r.failure);
  ct_value_free(r.value);
  return code;
}

/* Take and free whatever result `d` has (if any). */
static inline void discard_result(ct_deferred *d) {
  ct_result r;
  if (ct_deferred_take_result(d, &r) == 0) {
    ct_value_free(r.value);
    ct_failure_free(r.failure);
  }
}

/* Unref ds[0..n-1], first to last. */
static inline void unref_all(ct_deferred **ds, size_t n) {
  for (size_t i = 0; i < n; i++)
    ct_deferred_unref(ds[i]);
}

/* --- common callbacks; `arg` is a rec* unless said otherwise --- */

/* Records the int value and passes it on. */
static inline ct_step cb_record(ct_value v, void *arg) {
  rec_add(arg, (int)ct_value_as_int(v));
  return ct_pass(v);
}

/* Adds (intptr_t)arg to an int value. */
static inline ct_step cb_add(ct_value v, void *arg) {
  return ct_pass(ct_value_int(ct_value_as_int(v) + (intptr_t)arg));
}

/* Frees the value and raises a failure with code (intptr_t)arg. */
static inline ct_step cb_raise(ct_value v, void *arg) {
  ct_value_free(v);
  return ct_raise(ct_failure_new((int)(intptr_t)arg, "raised by callback"));
}

/* Records the failure code (negated, so it differs from values) and
 * passes the failure on. */
static inline ct_step eb_record(ct_failure *f, void *arg) {
  rec_add(arg, f->code);
  return ct_raise(f);
}

/* Recovers: frees the failure, continues with (intptr_t)arg. */
static inline ct_step eb_recover(ct_failure *f, void *arg) {
  ct_failure_free(f);
  return ct_pass(ct_value_int((intptr_t)arg));
}

/* Frees the value and waits on the Deferred `arg` (a new reference). */
static inline ct_step cb_wait_on(ct_value v, void *arg) {
  ct_value_free(v);
  return ct_wait(ct_deferred_ref(arg));
}

/* A double nest: n[0] waits on n[1], which waits on n[2]; n[0] and n[1]
 * have fired, n[2] has not. */
static inline void double_nest_new(ct_deferred *n[3]) {
  for (int i = 0; i < 3; i++) {
    n[i] = ct_deferred_new(NULL, NULL);
    cr_assert_not_null(n[i]);
  }
  ct_deferred_add_callback(n[0], cb_wait_on, n[1]);
  ct_deferred_add_callback(n[1], cb_wait_on, n[2]);
  ct_deferred_callback(n[0], CT_NONE);
  ct_deferred_callback(n[1], CT_NONE);
}

/* Drop the nest's references, outermost first. */
static inline void double_nest_free(ct_deferred *n[3]) {
  for (int i = 0; i < 3; i++)
    ct_deferred_unref(n[i]);
}

/* --- log capture --- */

typedef struct log_capture {
  int unhandled;   /* "Unhandled error in Deferred" events */
  int events;      /* all events */
  char last[1024]; /* message of the last event */
  ct_log_observer *obs;
} log_capture;

static inline void log_capture_cb(const ct_log_event *ev, void *arg) {
  log_capture *c = arg;
  c->events++;
  if (strstr(ev->message, "Unhandled error in Deferred") != NULL)
    c->unhandled++;
  snprintf(c->last, sizeof(c->last), "%s", ev->message);
}

static inline void log_capture_start(log_capture *c) {
  memset(c, 0, sizeof(*c));
  c->obs = ct_log_add_observer(CT_LOG_DEBUG, log_capture_cb, c);
  cr_assert_not_null(c->obs);
}

/* Assert `n` unhandled-error reports so far, the last event naming
 * `needle`. */
static inline void log_expect_unhandled(const log_capture *c, int n,
                                        const char *needle) {
  cr_assert_eq(c->unhandled, n, "%d unhandled reports, want %d", c->unhandled,
               n);
  cr_assert_not_null(strstr(c->last, needle), "'%s' not in: %s", needle,
                     c->last);
}

static inline void log_capture_stop(log_capture *c) {
  ct_log_remove_observer(c->obs);
  c->obs = NULL;
}

/* --- leak check per test ---
 * Every DTEST counts what it made: the Deferreds alive (ct_deferred_live())
 * and the heap ints alive must be back where they were when the body
 * returns, so a path that forgets to free fails under `make test` too.
 * Under ASan, LSan's recoverable check also runs after the body (Criterion
 * reports a test's result before the child process exits, so an LSan
 * report at exit would not fail the test). */
extern int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

static inline void check_leaks(long deferreds_before, long ints_before) {
  cr_assert_eq(ct_deferred_live(), deferreds_before,
               "%ld Deferred(s) still alive after the test",
               ct_deferred_live() - deferreds_before);
  cr_assert_eq(live_heap_ints, ints_before,
               "%ld heap value(s) still alive after the test",
               live_heap_ints - ints_before);
  if (__lsan_do_recoverable_leak_check != NULL)
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0,
                 "LeakSanitizer found leaks (report on stderr)");
}

/* A Criterion test whose body is followed by the leak check (a failing
 * assertion or a crash in .fini only warns, so the check runs in the
 * test itself). */
#define DTEST(suite, name, ...)                                                \
  static void suite##_##name##_body(void);                                     \
  Test(suite, name, ##__VA_ARGS__) {                                           \
    long deferreds_before_ = ct_deferred_live();                               \
    long ints_before_ = live_heap_ints;                                        \
    suite##_##name##_body();                                                   \
    check_leaks(deferreds_before_, ints_before_);                              \
  }                                                                            \
  static void suite##_##name##_body(void)

#endif
