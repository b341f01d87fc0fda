/*
 * reactor/threadpool.h: the pool's job interface, for ct_defer_to_thread
 * in the deferred layer.  Internal.
 */
#ifndef CT_REACTOR_THREADPOOL_H
#define CT_REACTOR_THREADPOOL_H

#include "ctwist/threads.h"

/* A job; embed it in your own struct.  `work` runs on a worker; `finish`
 * then runs on the reactor thread, exactly once per submitted job, with
 * `cancelled` telling whether ct__pool_cancel() came first (or the pool
 * dropped the job unrun at shutdown: then `ran` is 0).  `finish` owns the
 * job. */
typedef struct ct__job ct__job;
struct ct__job {
  void (*work)(ct__job *j);
  void (*finish)(ct__job *j);
  int cancelled; /* reactor thread only */
  int ran;       /* set before finish: 1 if work ran */
  int state;     /* pool-private */
  ct__job *prev, *next;
};

/* Queue `j` (reactor thread).  Returns 0 (finish will run), or
 * CT_EQUEUEFULL / CT_ESTATE / CT_ENOMEM (nothing happens to j). */
int ct__pool_submit(ct_reactor *r, ct__job *j);

/* Cancel `j` (reactor thread).  A queued job is taken off the queue and
 * returned to the caller: returns 1, finish will not run.  A running (or
 * finished but not yet delivered) job is marked: returns 0, and finish
 * runs later with j->cancelled set. */
int ct__pool_cancel(ct_reactor *r, ct__job *j);

/* The error message for a failed submit. */
const char *ct__pool_submit_error(int code);

#endif /* CT_REACTOR_THREADPOOL_H */
