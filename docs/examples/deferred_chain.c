/* deferred_chain.c: the four Deferred patterns of docs/deferred.md in one
 * program -- a sequential chain, error recovery, fan-out with a
 * DeferredList, and a timeout -- driven by a fake clock so that it runs
 * instantly and deterministically.  Built by bench/deferred/CMakeLists.txt
 * and run as the ctest "example/deferred_chain"; exits 0 when every
 * pattern produced what the comments say. */
#include <stdio.h>
#include <stdlib.h>

#include "ctwist/deferred.h"

static int failures;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                              \
    }                                                                          \
  } while (0)

/* ---------------------------------------------------- 1. sequential chain */

/* "Fetch" a number: a Deferred fired by the clock 1 second later. */
static ct_step fetch_number(void *arg) {
  return ct_pass(ct_value_int((intptr_t)arg));
}

/* Step 1: the value owned by this callback is a plain int; hand on twice
 * that. */
static ct_step double_it(ct_value v, void *arg) {
  (void)arg;
  return ct_pass(ct_value_int(2 * ct_value_as_int(v)));
}

/* Step 2: start another asynchronous operation and wait for it: the chain
 * pauses until that Deferred fires, then resumes with its result. */
static ct_step then_fetch_more(ct_value v, void *arg) {
  ct_reactor *r = arg;
  intptr_t sofar = ct_value_as_int(v);
  return ct_wait(ct_defer_later(r, 1.0, fetch_number, (void *)(sofar + 1)));
}

/* Step 3: format the result into a heap string (owned value). */
static ct_step to_text(ct_value v, void *arg) {
  (void)arg;
  char *text = malloc(32);
  if (text == NULL)
    return ct_raise(ct_failure_new(CT_ENOMEM, "to_text"));
  snprintf(text, 32, "result=%ld", (long)ct_value_as_int(v));
  return ct_pass(ct_value_of(text, free));
}

static void sequential_chain(ct_reactor *r, ct_clock *clock) {
  ct_deferred *d = ct_defer_later(r, 1.0, fetch_number, (void *)20);
  ct_deferred_add_callback(d, double_it, NULL);    /* 40 */
  ct_deferred_add_callback(d, then_fetch_more, r); /* waits, then 41 */
  ct_deferred_add_callback(d, to_text, NULL);      /* "result=41" */
  ct_clock_advance(clock, 1.0);                    /* fires the first fetch */
  CHECK(!ct_deferred_has_result(d)); /* waiting on the second fetch */
  ct_clock_advance(clock, 1.0);
  ct_result res;
  CHECK(ct_deferred_take_result(d, &res) == 0 && res.failure == NULL);
  printf("1. sequential chain: %s\n", (char *)res.value.ptr);
  ct_value_free(res.value);
  ct_deferred_unref(d);
}

/* ------------------------------------------------------ 2. error recovery */

static ct_step parse_config(ct_value v, void *arg) {
  (void)arg;
  ct_value_free(v);
  return ct_raise(ct_failure_new(CT_EPARSE, "line %d: unexpected '}'", 3));
}

/* An errback owns the failure: recover by freeing it and handing on a
 * default, or hand it on with ct_raise() to keep failing. */
static ct_step use_defaults(ct_failure *f, void *arg) {
  (void)arg;
  if (!ct_failure_check(f, CT_EPARSE))
    return ct_raise(f); /* not ours: keep failing */
  fprintf(stdout, "2. error recovery: %s -> using defaults\n", f->message);
  ct_failure_free(f);
  return ct_pass(ct_value_int(8080));
}

static void error_recovery(void) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  ct_deferred_add_callback(d, parse_config, NULL);
  ct_deferred_add_errback(d, use_defaults, NULL);
  ct_deferred_callback(d, CT_NONE);
  ct_result res;
  CHECK(ct_deferred_take_result(d, &res) == 0);
  CHECK(res.failure == NULL && ct_value_as_int(res.value) == 8080);
  ct_deferred_unref(d);
}

/* ---------------------------------------------- 3. fan-out, DeferredList */

static ct_step fail_now(void *arg) {
  (void)arg;
  return ct_raise(ct_failure_new(CT_ECONNREFUSED, "mirror 2 is down"));
}

static void fan_out(ct_reactor *r, ct_clock *clock) {
  ct_deferred *ds[3] = {
      ct_defer_later(r, 0.5, fetch_number, (void *)1),
      ct_defer_later(r, 0.2, fail_now, NULL),
      ct_defer_later(r, 0.9, fetch_number, (void *)3),
  };
  /* Wait for all three; CONSUME_ERRORS moves each failure into the list's
   * result, so none is reported as unhandled. */
  ct_deferred *all = ct_deferred_list(ds, 3, CT_DL_CONSUME_ERRORS);
  for (int i = 0; i < 3; i++)
    ct_deferred_unref(ds[i]); /* the list does not need our references */
  ct_clock_advance(clock, 1.0);
  ct_result res;
  CHECK(ct_deferred_take_result(all, &res) == 0 && res.failure == NULL);
  ct_dl_result *list = res.value.ptr;
  printf("3. fan-out:");
  for (size_t i = 0; i < list->n; i++) {
    if (list->entries[i].success)
      printf(" [%zu]=%ld", i, (long)ct_value_as_int(list->entries[i].value));
    else
      printf(" [%zu] failed (%s)", i, list->entries[i].failure->message);
  }
  printf("\n");
  CHECK(list->entries[0].success && !list->entries[1].success);
  ct_value_free(res.value); /* frees every entry */
  ct_deferred_unref(all);
}

/* ------------------------------------------------------------ 4. timeout */

static void timeout(ct_reactor *r, ct_clock *clock) {
  /* An answer that would come after 30 s, with a 5 s timeout. */
  ct_deferred *d = ct_defer_later(r, 30.0, fetch_number, (void *)1);
  ct_deferred_add_timeout(d, r, 5.0);
  ct_clock_advance(clock, 5.0);
  const ct_failure *f = ct_deferred_peek_failure(d);
  CHECK(f != NULL && f->code == CT_ETIMEDOUT);
  char text[256];
  ct_failure_format(f, text, sizeof(text));
  printf("4. timeout: %s\n", text);
  CHECK(ct_reactor_pending_calls(r) == 0); /* the 30 s call was cancelled */
  ct_result res;
  ct_deferred_take_result(d, &res); /* consume: no "Unhandled error" */
  ct_failure_free(res.failure);
  ct_deferred_unref(d);
}

int main(void) {
  ct_clock *clock = ct_clock_new();
  ct_reactor *r = ct_reactor_new_with_clock(clock);
  if (clock == NULL || r == NULL)
    return 2;
  sequential_chain(r, clock);
  error_recovery();
  fan_out(r, clock);
  timeout(r, clock);
  ct_reactor_free(r);
  ct_clock_free(clock);
  return failures == 0 ? 0 : 1;
}
