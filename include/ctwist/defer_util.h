/**
 * @file defer_util.h
 * @brief Deferred helpers (twisted.internet.defer's module functions and
 *        classes): succeed/fail, maybeDeferred, deferLater, DeferredList,
 *        gatherResults, DeferredSemaphore, DeferredLock, DeferredQueue,
 *        and the Deferred forms of LoopingCall and shutdown triggers.
 *
 * Included by deferred.h; include that one.  Functions that create a
 * Deferred come as `name_at(file, line, ...)` plus a `name(...)` macro that
 * passes the caller's __FILE__/__LINE__, so an "Unhandled error in
 * Deferred" report names the caller's line, not the library's.  The reference
 * rules of deferred.h apply: every function returning a `ct_deferred *` gives
 * the caller one reference, which the caller drops with ct_deferred_unref().
 * Functions that take `ct_deferred *` arguments borrow them unless they say
 * otherwise.  NULL is returned only when memory runs out (or for invalid
 * arguments, where stated).
 */
#ifndef CTWIST_DEFER_UTIL_H
#define CTWIST_DEFER_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "ctwist/deferred.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------ immediate results */

/**
 * A Deferred already fired with `v` (Twisted's succeed); `v` is taken.
 * Returns NULL if memory runs out (v is then freed).  Use the macro, which
 * records the creation site.
 */
CT_EXTERN ct_deferred *ct_succeed_at(const char *file, int line, ct_value v);
#define ct_succeed(v) ct_succeed_at(__FILE__, __LINE__, (v))

/**
 * A Deferred already failed with `f` (Twisted's fail); `f` is taken (NULL
 * becomes a CT_EINVAL failure).  If nobody consumes the failure, freeing
 * the Deferred logs "Unhandled error in Deferred".  Returns NULL if memory
 * runs out (f is then freed).
 */
CT_EXTERN ct_deferred *ct_fail_at(const char *file, int line, ct_failure *f);
#define ct_fail(f) ct_fail_at(__FILE__, __LINE__, (f))

/**
 * A function producing a value, a failure, or a Deferred: returns a step
 * built with ct_pass(), ct_raise() or ct_wait() (the Deferred's reference is
 * handed over).
 */
typedef ct_step (*ct_step_fn)(void *arg);

/**
 * Call `fn(arg)` now and always get a Deferred (Twisted's maybeDeferred): a
 * value gives a fired Deferred, a failure a failed one, a Deferred is
 * returned as is (its reference passes to the caller).  Returns NULL if
 * `fn` is NULL or memory runs out (whatever fn produced is then freed).
 */
CT_EXTERN ct_deferred *ct_maybe_deferred_at(const char *file, int line,
                                            ct_step_fn fn, void *arg);
#define ct_maybe_deferred(fn, arg)                                             \
  ct_maybe_deferred_at(__FILE__, __LINE__, (fn), (arg))

/**
 * After `seconds` on `r`'s clock, call `fn(arg)` (NULL: nothing) and fire
 * the returned Deferred with what it produced (Twisted's deferLater).
 * Cancelling the Deferred before then cancels the delayed call (fn never
 * runs) and errbacks with CT_ECANCELLED.  The delayed call holds a
 * reference on the Deferred until it runs or is cancelled; free the
 * reactor only after that (advance the clock, or cancel).  Returns NULL if
 * memory runs out.
 */
CT_EXTERN ct_deferred *ct_defer_later_at(const char *file, int line,
                                         ct_reactor *r, double seconds,
                                         ct_step_fn fn, void *arg);
/** ct_defer_later(r, seconds, fn, arg): see ct_defer_later_at(); the macro
 *  records the caller as the Deferred's creation site. */
#define ct_defer_later(r, seconds, fn, arg)                                    \
  ct_defer_later_at(__FILE__, __LINE__, (r), (seconds), (fn), (arg))

/* ----------------------------------------------------------- DeferredList */

/** Flags of ct_deferred_list(). */
enum {
  /** Fire as soon as one Deferred succeeds (result: that one's index and
   *  value). */
  CT_DL_FIRE_ON_ONE_CALLBACK = 1,
  /** Errback as soon as one Deferred fails, with a CT_EFIRST_ERROR failure
   *  whose cause is that failure (see ct_first_error_index()). */
  CT_DL_FIRE_ON_ONE_ERRBACK = 2,
  /** Take the failures of the listed Deferreds: each continues with CT_NONE
   *  instead of its failure, so nothing is logged as unhandled. */
  CT_DL_CONSUME_ERRORS = 4
};

/** One entry of a DeferredList result. */
typedef struct ct_dl_entry {
  int done;            /**< 1 if this Deferred fired before the list did */
  int success;         /**< 1: `value` is set; 0 (and done): `failure` */
  ct_value value;      /**< owned by the result */
  ct_failure *failure; /**< owned by the result */
} ct_dl_entry;

/**
 * The value a DeferredList fires with: `ptr` points to this struct, `free`
 * is ct_dl_result_free (releases every entry's value and failure).
 * `entries[i]` is the outcome of the i-th listed Deferred.  Without
 * CT_DL_FIRE_ON_ONE_CALLBACK every entry is done; with it, `index` is the
 * entry that fired the list (SIZE_MAX when the list fired because every
 * Deferred failed) and entries fired later are not recorded.
 */
typedef struct ct_dl_result {
  size_t n;              /**< number of entries */
  size_t index;          /**< see above; SIZE_MAX if not applicable */
  ct_dl_entry entries[]; /**< n entries */
} ct_dl_result;

/** Destructor of a DeferredList result (the `free` of its ct_value). */
CT_EXTERN void ct_dl_result_free(void *result);

/**
 * Wait for `n` Deferreds (Twisted's DeferredList).  `ds` is borrowed (the
 * array may be freed after the call); the list adds a callback pair to each
 * Deferred and never holds a reference on them.  The returned Deferred
 * fires with a ct_dl_result value:
 * - no flags: once every Deferred has fired; it never errbacks;
 * - CT_DL_FIRE_ON_ONE_CALLBACK: at the first success (or, if all fail, when
 *   the last one fails, with index SIZE_MAX);
 * - CT_DL_FIRE_ON_ONE_ERRBACK: errbacks at the first failure with a
 *   CT_EFIRST_ERROR failure (message "FirstError at index I: ...") whose
 *   cause is the failure (a copy unless CT_DL_CONSUME_ERRORS).
 * The list takes each success value out of the listed Deferred (which then
 * continues with CT_NONE: a C value cannot be in two places).  A failure is
 * copied into the result and left in the listed Deferred, unless
 * CT_DL_CONSUME_ERRORS moves it into the result and leaves CT_NONE.  Once
 * the list has fired, later results are left in their Deferreds (failures
 * still consumed with CT_DL_CONSUME_ERRORS).
 * Cancelling the list before it fires cancels every listed Deferred that
 * is still alive; if that did not fire the list, it errbacks CT_ECANCELLED.
 * With n == 0 the list fires at once (except with FIRE_ON_ONE_CALLBACK,
 * where it never fires).  Returns NULL for bad arguments (ds NULL with
 * n > 0) or if memory runs out.
 */
CT_EXTERN ct_deferred *ct_deferred_list_at(const char *file, int line,
                                           ct_deferred *const *ds, size_t n,
                                           unsigned flags);
/** ct_deferred_list(ds, n, flags): see ct_deferred_list_at(); records the
 *  caller as the creation site. */
#define ct_deferred_list(ds, n, flags)                                         \
  ct_deferred_list_at(__FILE__, __LINE__, (ds), (n), (flags))

/**
 * Join `n` Deferreds (Twisted's gatherResults with consumeErrors): fires
 * with a ct_dl_result (every entry successful) once all succeed; at the
 * first failure errbacks with a CT_EFIRST_ERROR failure whose cause is that
 * failure.  Failures of every listed Deferred are consumed (moved into the
 * result, or freed after the gather has fired), so none is reported as
 * unhandled.  Same ownership rules as ct_deferred_list().
 */
CT_EXTERN ct_deferred *ct_gather_results_at(const char *file, int line,
                                            ct_deferred *const *ds, size_t n);
/** ct_gather_results(ds, n): see ct_gather_results_at(). */
#define ct_gather_results(ds, n)                                               \
  ct_gather_results_at(__FILE__, __LINE__, (ds), (n))

/**
 * The index carried by a failure produced by CT_DL_FIRE_ON_ONE_ERRBACK or
 * ct_gather_results() (or a ct_failure_copy() of one), or -1 if `f` is not
 * such a failure.  The index is stored in the failure (`detail`), never
 * read back from its message.
 */
CT_EXTERN long ct_first_error_index(const ct_failure *f);

/* ------------------------------------------------------ DeferredSemaphore */

/** A semaphore handing out tokens through Deferreds. */
typedef struct ct_deferred_semaphore ct_deferred_semaphore;

/** Create a semaphore with `tokens` (> 0) tokens.  Returns NULL for 0 or
 *  when memory runs out. */
CT_EXTERN ct_deferred_semaphore *ct_deferred_semaphore_new(size_t tokens);

/**
 * Free a semaphore.  Waiting acquirers are errbacked with CT_ECLOSED
 * first.  Do not free it while a ct_deferred_semaphore_run() is in progress
 * (its release would touch freed memory).  NULL is a no-op.
 */
CT_EXTERN void ct_deferred_semaphore_free(ct_deferred_semaphore *s);

/**
 * Acquire a token: the returned Deferred fires with CT_NONE at once if a
 * token is free, otherwise when one is released (waiters are served in
 * order).  Cancelling a waiting acquire removes it from the queue
 * (CT_ECANCELLED); cancelling a fired one does nothing (the token is held:
 * release it).  Returns NULL if memory runs out.
 */
CT_EXTERN ct_deferred *ct_deferred_semaphore_acquire(ct_deferred_semaphore *s);

/**
 * Release a token: the oldest waiter (if any) gets it and its Deferred
 * fires now.  Returns 0, or CT_ESTATE if no token is out.
 */
CT_EXTERN int ct_deferred_semaphore_release(ct_deferred_semaphore *s);

/**
 * Acquire, then call `fn(arg)` as ct_maybe_deferred() does, and release
 * the token when the result of fn (or the Deferred it returned) is
 * available.  The returned Deferred fires with fn's result.  Returns NULL
 * if memory runs out.
 */
CT_EXTERN ct_deferred *ct_deferred_semaphore_run(ct_deferred_semaphore *s,
                                                 ct_step_fn fn, void *arg);

/** Tokens currently free. */
CT_EXTERN size_t ct_deferred_semaphore_tokens(const ct_deferred_semaphore *s);
/** The limit given at creation. */
CT_EXTERN size_t ct_deferred_semaphore_limit(const ct_deferred_semaphore *s);
/** Acquirers currently waiting. */
CT_EXTERN size_t ct_deferred_semaphore_waiting(const ct_deferred_semaphore *s);

/* ----------------------------------------------------------- DeferredLock */

/** A mutual-exclusion lock handing out ownership through Deferreds. */
typedef struct ct_deferred_lock ct_deferred_lock;

/** Create an unlocked lock.  Returns NULL if memory runs out. */
CT_EXTERN ct_deferred_lock *ct_deferred_lock_new(void);

/** Free a lock; waiters are errbacked with CT_ECLOSED.  Same caveat as
 *  ct_deferred_semaphore_free().  NULL is a no-op. */
CT_EXTERN void ct_deferred_lock_free(ct_deferred_lock *l);

/** Acquire: fires with CT_NONE when the lock is ours (at once if free).
 *  Cancelling a waiting acquire removes it.  NULL if memory runs out. */
CT_EXTERN ct_deferred *ct_deferred_lock_acquire(ct_deferred_lock *l);

/** Release the lock; the oldest waiter gets it.  Returns 0, or CT_ESTATE if
 *  the lock is not held. */
CT_EXTERN int ct_deferred_lock_release(ct_deferred_lock *l);

/** Acquire, run `fn(arg)` (as ct_maybe_deferred()), release when its result
 *  is available; fires with that result. */
CT_EXTERN ct_deferred *ct_deferred_lock_run(ct_deferred_lock *l, ct_step_fn fn,
                                            void *arg);

/** 1 while the lock is held. */
CT_EXTERN int ct_deferred_lock_locked(const ct_deferred_lock *l);

/* ---------------------------------------------------------- DeferredQueue */

/** No limit, for ct_deferred_queue_new(). */
#define CT_UNLIMITED ((size_t)-1)

/** A queue whose get() returns a Deferred (Twisted's DeferredQueue). */
typedef struct ct_deferred_queue ct_deferred_queue;

/**
 * Create a queue holding at most `size` pending values and at most
 * `backlog` waiting getters (CT_UNLIMITED for no limit; 0 is a real
 * limit).  Returns NULL if memory runs out.
 */
CT_EXTERN ct_deferred_queue *ct_deferred_queue_new(size_t size, size_t backlog);

/** Free a queue: pending values are freed, waiting getters errbacked with
 *  CT_ECLOSED.  NULL is a no-op. */
CT_EXTERN void ct_deferred_queue_free(ct_deferred_queue *q);

/**
 * Put a value: the oldest waiting getter (if any) fires with it now;
 * otherwise it is queued.  Returns 0 (v taken), or CT_EQUEUEFULL when the
 * queue already holds `size` values, or CT_ENOMEM -- on error `v` is NOT
 * taken and stays the caller's.
 */
CT_EXTERN int ct_deferred_queue_put(ct_deferred_queue *q, ct_value v);

/**
 * Get a value: a Deferred fired with the oldest queued value at once, or
 * later by a put().  When the backlog of waiting getters is full, returns
 * a Deferred failed with CT_EQUEUEEMPTY (Twisted's QueueUnderflow).
 * Cancelling a waiting get removes it (CT_ECANCELLED).  NULL if memory
 * runs out.
 */
CT_EXTERN ct_deferred *ct_deferred_queue_get_at(const char *file, int line,
                                                ct_deferred_queue *q);
/** ct_deferred_queue_get(q): see ct_deferred_queue_get_at(). */
#define ct_deferred_queue_get(q)                                               \
  ct_deferred_queue_get_at(__FILE__, __LINE__, (q))

/** Values queued and not yet taken. */
CT_EXTERN size_t ct_deferred_queue_pending(const ct_deferred_queue *q);
/** Getters waiting for a value. */
CT_EXTERN size_t ct_deferred_queue_waiting(const ct_deferred_queue *q);

/* ------------------------------------------------ reactor-driven helpers */

/**
 * Start `lc` (as ct_looping_call_start()) and return a Deferred that fires
 * with CT_NONE when the loop is stopped with ct_looping_call_stop(), or
 * errbacks with a failure carrying the function's error code when it
 * returns one (Twisted's LoopingCall.start).  Uses the loop's done callback
 * (ct_looping_call_on_done() is replaced).  The loop holds a reference on
 * the Deferred until it ends: stop it before ct_looping_call_free(), else
 * that reference is never dropped.  Returns NULL (and does not start) on
 * CT_EINVAL / CT_ESTATE / out of memory.
 */
CT_EXTERN ct_deferred *ct_looping_call_start_deferred(ct_looping_call *lc,
                                                      double interval, int now);

/** A shutdown trigger that returns a Deferred (NULL: nothing to wait for);
 *  the reference is handed over. */
typedef ct_deferred *(*ct_trigger_deferred_cb)(ct_reactor *r, void *arg);

/**
 * Storage of a Deferred-returning trigger, owned by the caller and kept
 * alive (not moved) while the trigger is registered -- until
 * ct_reactor_remove_trigger(r, id) or ct_reactor_free(r).  Fields are
 * private.
 */
typedef struct ct_deferred_trigger {
  ct_reactor *reactor;
  ct_trigger_deferred_cb fn;
  void *arg;
} ct_deferred_trigger;

/**
 * Register `fn(r, arg)` to run in `phase` of every shutdown; if it returns
 * a Deferred, the reactor does not enter the next phase until that
 * Deferred has fired (Twisted's addSystemEventTrigger with a Deferred
 * result).  A failure is logged (module "deferred") and consumed.  `t` is
 * caller-owned storage (see ct_deferred_trigger).  Returns the trigger id
 * (> 0, for ct_reactor_remove_trigger()) or a negative error.
 */
CT_EXTERN long ct_reactor_add_trigger_deferred(ct_reactor *r, ct_phase phase,
                                               ct_deferred_trigger *t,
                                               ct_trigger_deferred_cb fn,
                                               void *arg);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_DEFER_UTIL_H */
