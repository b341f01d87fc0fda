/**
 * @file threads.h
 * @brief A thread pool for blocking work (Twisted's reactor.callInThread
 *        and threads.deferToThread).
 *
 * Each reactor has one pool, started on first use: a fixed number of
 * worker threads (default: the number of online CPUs) fed from a bounded
 * FIFO queue.  Work runs on a worker; its result comes back to the reactor
 * thread through ct_reactor_call_from_thread(), so callbacks never run on
 * a worker.  The pool stops in the DURING phase of the reactor's shutdown:
 * queued jobs are cancelled, running ones get a grace period to finish,
 * and the workers are joined.  ct_reactor_free() joins any still running
 * (it waits for them).
 *
 * The functions here are for the reactor thread, except that the work
 * functions themselves run on workers: they must not touch the reactor,
 * its transports or its Deferreds (use ct_reactor_call_from_thread()).
 * Thread tests run under ThreadSanitizer with `make tsan`.
 */
#ifndef CTWIST_THREADS_H
#define CTWIST_THREADS_H

#include <stddef.h>

#include "ctwist/deferred.h"
#include "ctwist/reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Default bound on queued (not yet running) jobs. */
#define CT_THREADPOOL_DEFAULT_QUEUE 1024
/** Default grace period, in seconds, for running jobs at shutdown. */
#define CT_THREADPOOL_DEFAULT_GRACE 10.0

/** Pool settings; zero fields take the defaults. */
typedef struct ct_threadpool_config {
  size_t threads;   /**< worker threads, default the online CPU count */
  size_t queue_max; /**< queued jobs before CT_EQUEUEFULL, default 1024 */
  double grace;     /**< seconds running jobs get at shutdown, default 10 */
} ct_threadpool_config;

/**
 * Set the pool's size, queue bound and grace period (NULL: defaults).
 * Allowed while no job is queued or running; workers already started are
 * kept up to the new size.  Returns 0, CT_EINVAL (threads or queue_max
 * over 4096 / 1e6, a negative grace) or CT_ESTATE (jobs in flight).
 */
CT_EXTERN int ct_threadpool_configure(ct_reactor *r,
                                      const ct_threadpool_config *cfg);

/**
 * Run `fn(arg)` on a pool thread, fire and forget (Twisted's
 * callInThread).  `arg` belongs to the caller's protocol with `fn`.
 * Returns 0, CT_EINVAL, CT_EQUEUEFULL (the queue holds queue_max jobs: the
 * caller decides to retry, shed or block; nothing was queued), CT_ESTATE
 * (the pool is shutting down) or CT_ENOMEM (also when no worker thread can
 * be created).
 */
CT_EXTERN int ct_call_in_thread(ct_reactor *r, ct_call_cb fn, void *arg);

/**
 * Work for ct_defer_to_thread(): runs on a worker, returns an owned value
 * (`.value`) or a failure (`.failure`), which the Deferred receives on the
 * reactor thread.
 */
typedef ct_result (*ct_thread_fn)(void *arg);

/**
 * Run `fn(arg)` on a pool thread and return a Deferred (one reference for
 * the caller) that fires on the reactor thread with fn's result (Twisted's
 * deferToThread).  Errors: the Deferred is already failed with
 * CT_EQUEUEFULL, CT_ESTATE or CT_ENOMEM as for ct_call_in_thread().
 * ct_deferred_cancel() on a queued job removes it (fn never runs); on a
 * running job the Deferred errbacks at once with CT_ECANCELLED and fn's
 * result is freed when it finishes.  Jobs still queued at shutdown errback
 * with CT_ECANCELLED.  Returns NULL only if memory runs out.
 */
CT_EXTERN ct_deferred *ct_defer_to_thread(ct_reactor *r, ct_thread_fn fn,
                                          void *arg);

/** Pool counters (for tests and stats). */
typedef struct ct_threadpool_stats {
  size_t threads; /**< worker threads alive */
  size_t queued;  /**< jobs waiting for a worker */
  size_t running; /**< jobs on a worker now */
  size_t done;    /**< jobs finished since the pool started */
} ct_threadpool_stats;

/** Fill `out` with the pool's counters (zeros before first use). */
CT_EXTERN void ct_threadpool_stats_get(ct_reactor *r, ct_threadpool_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_THREADS_H */
