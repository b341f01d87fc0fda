/*
 * thread.c: ct_defer_to_thread, the Deferred face of the reactor's thread
 * pool (reactor/threadpool.c).  It lives in the deferred layer because the
 * reactor layer must not depend on Deferreds.
 */
#include <stdlib.h>

#include "ctwist/defer_util.h"
#include "ctwist/deferred.h"
#include "deferred/internal.h"
#include "reactor/threadpool.h"

typedef struct thread_call {
  ct__job job; /* first */
  ct_reactor *r;
  ct_thread_fn fn;
  void *arg;
  ct_result result;
  ct_deferred *d; /* the producer's reference; NULL once fired */
} thread_call;

static void tc_work(ct__job *j) {
  thread_call *tc = (thread_call *)j;
  tc->result = tc->fn(tc->arg);
}

static void result_free(ct_result *res) {
  if (res->failure != NULL)
    ct_failure_free(res->failure);
  else if (res->value.free != NULL)
    res->value.free(res->value.ptr);
}

static void tc_finish(ct__job *j) {
  thread_call *tc = (thread_call *)j;
  ct_deferred *d = tc->d;
  tc->d = NULL;
  if (d == NULL || j->cancelled) {
    /* Cancelled while running (the Deferred has its failure already), or
     * dropped unrun at shutdown. */
    if (j->ran)
      result_free(&tc->result);
    if (d != NULL) {
      ct_deferred_errback(d, ct_failure_new(CT_ECANCELLED,
                                            "deferToThread: the job was "
                                            "cancelled before it ran (the "
                                            "thread pool is shutting down)"));
      ct_deferred_unref(d);
    }
    free(tc);
    return;
  }
  ct_result res = tc->result;
  free(tc);
  if (res.failure != NULL)
    ct_deferred_errback(d, res.failure);
  else
    ct_deferred_callback(d, res.value);
  ct_deferred_unref(d);
}

static void tc_cancel(ct_deferred *d, void *arg) {
  thread_call *tc = arg;
  ct_deferred *own = tc->d;
  if (own == NULL)
    return;
  if (ct__pool_cancel(tc->r, &tc->job)) {
    free(tc);
    ct_deferred_errback(d, ct_failure_new(CT_ECANCELLED,
                                          "deferToThread: cancelled before "
                                          "it ran"));
  } else {
    tc->d = NULL; /* tc_finish frees the result and tc */
    ct_deferred_errback(d, ct_failure_new(CT_ECANCELLED,
                                          "deferToThread: cancelled while "
                                          "running; its result will be "
                                          "discarded"));
  }
  ct_deferred_unref(own);
}

ct_deferred *ct_defer_to_thread(ct_reactor *r, ct_thread_fn fn, void *arg) {
  if (r == NULL || fn == NULL)
    return ct_fail(ct_failure_new(CT_EINVAL, "ct_defer_to_thread: a reactor "
                                             "and a function are required"));
  thread_call *tc = calloc(1, sizeof *tc);
  if (tc == NULL)
    return NULL;
  tc->job.work = tc_work;
  tc->job.finish = tc_finish;
  tc->r = r;
  tc->fn = fn;
  tc->arg = arg;
  tc->d = ct_deferred_new(tc_cancel, tc);
  if (tc->d == NULL) {
    free(tc);
    return NULL;
  }
  int rc = ct__pool_submit(r, &tc->job);
  if (rc != 0) {
    ct_deferred *d = tc->d;
    free(tc);
    /* The canceller must not see the freed job. */
    ct_deferred_errback(d, ct_failure_new(rc, "ct_defer_to_thread: %s",
                                          ct__pool_submit_error(rc)));
    return d;
  }
  return ct_deferred_ref(tc->d);
}
