/**
 * @file deferred.h
 * @brief Deferred: a chained asynchronous result (Twisted's defer.Deferred).
 *
 * A Deferred holds a chain of (callback, errback) pairs and, once fired, a
 * result that runs down the chain: a value runs the next callback, a
 * failure the next errback.  Each callback receives ownership of what it is
 * given and hands on exactly one thing -- a value (ct_pass), a failure
 * (ct_raise) or another Deferred to wait for (ct_wait).
 *
 * ## Ownership of results
 * - A `ct_value` is a pointer plus the destructor that frees it (NULL for
 *   borrowed or non-pointer data).  Whoever holds a value frees it exactly
 *   once with ct_value_free(), or hands it on.
 * - A `ct_failure *` has one owner (error.h).  An errback owns the failure it
 *   receives: it frees it (recovering with ct_pass) or hands it on
 *   (ct_raise).
 * - ct_deferred_callback()/ct_deferred_errback() always take the result,
 *   even when they return an error (the result is then freed).
 *
 * ## References to a Deferred
 * A Deferred is reference counted.  ct_deferred_new() and every function
 * that returns a `ct_deferred *` give the caller one reference, which the
 * caller drops with ct_deferred_unref() when done with it (after adding
 * callbacks, typically).  Besides users' references:
 * - a running chain holds one on its Deferred until the chain returns;
 * - an outer Deferred waiting on an inner one (ct_wait) holds one on the
 *   inner Deferred until the inner one has delivered its result;
 * - ct_wait(d) takes over the reference the callback had on `d`.
 * Firing does not drop a reference.  The producer that will fire a Deferred
 * keeps a reference until it has fired it.
 *
 * Freeing: when the last reference goes, pending callbacks are dropped
 * without running (entries added with a `drop` function get drop(arg)),
 * the result (if any) is freed, and an inner Deferred it waited on is
 * released (the inner one keeps its own result).  A Deferred freed
 * while its result is a failure that nobody consumed logs "Unhandled error
 * in Deferred" once, with the failure chain and the file:line where the
 * Deferred was created.
 *
 * The chain runs in a loop, not by recursion: chains of any length and any
 * depth of nested Deferreds run in constant C stack.
 *
 * ## What a callback may do
 * A callback or errback may add callbacks to its own Deferred (they run
 * after it returns, never re-entrantly), drop references (including the
 * last user reference to the Deferred running it), fire, cancel, pause or
 * unpause other Deferreds, and pause its own.  Firing its own Deferred
 * again returns CT_EALREADY_CALLED.  It must hand on exactly one step and
 * must not free what it handed on.
 *
 * Not thread-safe: use a Deferred on its reactor's thread only.
 * See docs/deferred.md for the common patterns.
 */
#ifndef CTWIST_DEFERRED_H
#define CTWIST_DEFERRED_H

#include <stddef.h>
#include <stdint.h>

#include "ctwist/error.h"
#include "ctwist/reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ values */

/** An owned result: `ptr` and the function that frees it (NULL: nothing to
 *  free, e.g. borrowed data or an integer carried in ptr). */
typedef struct ct_value {
  void *ptr;
  void (*free)(void *ptr);
} ct_value;

/** The empty value (Twisted's None). */
#define CT_NONE ((ct_value){NULL, NULL})

/** A value owning `ptr`, released with `free_fn` (may be NULL). */
static inline ct_value ct_value_of(void *ptr, void (*free_fn)(void *)) {
  ct_value v;
  v.ptr = ptr;
  v.free = free_fn;
  return v;
}

/** A value carrying an integer (nothing to free). */
static inline ct_value ct_value_int(intptr_t i) {
  return ct_value_of((void *)i, NULL);
}

/** The integer carried by ct_value_int(). */
static inline intptr_t ct_value_as_int(ct_value v) {
  return (intptr_t)v.ptr;
}

/** Release a value (calls its destructor, if any). */
static inline void ct_value_free(ct_value v) {
  if (v.free != NULL)
    v.free(v.ptr);
}

/* ------------------------------------------------------------------- steps */

typedef struct ct_deferred ct_deferred;

/** What a callback hands on.  Build one with ct_pass/ct_raise/ct_wait. */
typedef enum ct_step_kind {
  CT_STEP_VALUE = 0,
  CT_STEP_FAILURE = 1,
  CT_STEP_WAIT = 2
} ct_step_kind;

typedef struct ct_step {
  ct_step_kind kind;
  ct_value value;      /**< CT_STEP_VALUE */
  ct_failure *failure; /**< CT_STEP_FAILURE */
  ct_deferred *wait;   /**< CT_STEP_WAIT */
} ct_step;

/** Continue on the callback path with `v` (ownership passes on). */
static inline ct_step ct_pass(ct_value v) {
  ct_step s = {CT_STEP_VALUE, v, NULL, NULL};
  return s;
}

/** Switch to (or stay on) the errback path with `f` (ownership passes on). */
static inline ct_step ct_raise(ct_failure *f) {
  ct_step s = {CT_STEP_FAILURE, CT_NONE, f, NULL};
  return s;
}

/**
 * Pause the chain until `inner` fires, then continue with its result
 * (also when it has fired already: the result is taken at once, and
 * `inner` is left holding CT_NONE).  Takes over the caller's reference to
 * `inner` (write ct_wait(ct_deferred_ref(d)) to keep your own).  Waiting on
 * NULL, on the Deferred whose chain is running, or on a Deferred that
 * (transitively) waits on it continues the chain with a CT_EINVAL failure
 * instead.
 */
static inline ct_step ct_wait(ct_deferred *inner) {
  ct_step s = {CT_STEP_WAIT, CT_NONE, NULL, inner};
  return s;
}

/** A value or a failure (failure != NULL means failure), for add_both. */
typedef struct ct_result {
  ct_value value;
  ct_failure *failure;
} ct_result;

/** Callback: owns `v`; returns the next step. */
typedef ct_step (*ct_callback_cb)(ct_value v, void *arg);
/** Errback: owns `f`; returns the next step. */
typedef ct_step (*ct_errback_cb)(ct_failure *f, void *arg);
/** Called on either path; owns whichever half of `r` is set. */
typedef ct_step (*ct_both_cb)(ct_result r, void *arg);
/** Canceller given at creation: should fire `d` (usually errback); if it
 *  does not, ct_deferred_cancel() errbacks with CT_ECANCELLED.  `d` is
 *  borrowed (a reference is held for the duration of the call). */
typedef void (*ct_canceller_cb)(ct_deferred *d, void *arg);
/** Releases a callback's `arg` when its entry is discarded without running
 *  (the Deferred was freed before reaching it). */
typedef void (*ct_free_cb)(void *arg);

/* -------------------------------------------------------------- lifecycle */

/**
 * Create an unfired Deferred with an optional canceller (NULL: cancel
 * errbacks with CT_ECANCELLED).  The caller gets one reference.  Returns
 * NULL if memory runs out.  Use the macro, which records the creation site.
 */
CT_EXTERN ct_deferred *ct_deferred_new_at(const char *file, int line,
                                          ct_canceller_cb canceller, void *arg);
#define ct_deferred_new(canceller, arg)                                        \
  ct_deferred_new_at(__FILE__, __LINE__, (canceller), (arg))

/** Take a reference.  Returns `d`. */
CT_EXTERN ct_deferred *ct_deferred_ref(ct_deferred *d);

/** Drop a reference; the last one frees the Deferred (see file comment).
 *  NULL is a no-op. */
CT_EXTERN void ct_deferred_unref(ct_deferred *d);

/**
 * Number of Deferreds created and not yet freed in this process, on every
 * thread (an atomic counter: a diagnostic, like
 * ct_reactor_pending_calls()).  Tests compare it before and after a piece
 * of work to prove every path freed what it made, without a leak checker.
 */
CT_EXTERN long ct_deferred_live(void);

/* ----------------------------------------------------------------- firing */

/**
 * Fire with a value: runs the chain now, unless paused.  Takes `v` in every
 * case.  Returns 0, CT_EINVAL for NULL `d`, or CT_EALREADY_CALLED if
 * already fired (v is freed; see ct_deferred_cancel() for the one
 * exception).  The caller's reference is not consumed.
 */
CT_EXTERN int ct_deferred_callback(ct_deferred *d, ct_value v);

/** Fire with a failure (taken in every case; NULL becomes a CT_EINVAL
 *  failure).  Returns 0, CT_EINVAL for NULL `d`, or CT_EALREADY_CALLED (f
 *  is freed). */
CT_EXTERN int ct_deferred_errback(ct_deferred *d, ct_failure *f);

/* -------------------------------------------------------------- callbacks */

/**
 * Append a (callback, errback) pair sharing `arg`; either may be NULL
 * (pass through).  If the Deferred has fired and is not paused or
 * waiting, the chain runs at once (from inside the Deferred's own chain,
 * the pair runs after the current callback returns).  Returns 0, CT_EINVAL
 * (NULL `d`) or CT_ENOMEM (nothing added).  The first four entries are
 * stored inside the Deferred; more grow a heap array (doubling).
 */
CT_EXTERN int ct_deferred_add_callbacks(ct_deferred *d, ct_callback_cb cb,
                                        ct_errback_cb eb, void *arg);

/** Append a callback (failures pass by it).  Same returns as
 *  ct_deferred_add_callbacks(). */
CT_EXTERN int ct_deferred_add_callback(ct_deferred *d, ct_callback_cb cb,
                                       void *arg);

/** Append an errback (values pass by it).  Same returns as
 *  ct_deferred_add_callbacks(). */
CT_EXTERN int ct_deferred_add_errback(ct_deferred *d, ct_errback_cb eb,
                                      void *arg);

/** Append one function for both paths (Twisted's addBoth).  Returns 0,
 *  CT_EINVAL (NULL `fn`) or CT_ENOMEM. */
CT_EXTERN int ct_deferred_add_both(ct_deferred *d, ct_both_cb fn, void *arg);

/**
 * As ct_deferred_add_callbacks(), plus `drop`: if the Deferred is freed
 * before this entry runs, `drop(arg)` is called instead (so an `arg` that
 * owns memory is released on the abandoned path too).  When the entry runs,
 * `drop` is not called: the callback/errback (or the pass-through) is then
 * responsible for `arg`.  `drop` may be NULL.  On CT_ENOMEM nothing is
 * called.  Returns 0, CT_EINVAL or CT_ENOMEM.
 */
CT_EXTERN int ct_deferred_add_callbacks_full(ct_deferred *d, ct_callback_cb cb,
                                             ct_errback_cb eb, void *arg,
                                             ct_free_cb drop);

/** ct_deferred_add_both() with a `drop` function, as
 *  ct_deferred_add_callbacks_full(). */
CT_EXTERN int ct_deferred_add_both_full(ct_deferred *d, ct_both_cb fn,
                                        void *arg, ct_free_cb drop);

/**
 * Chain `other` after `d`: d's result goes on to fire `other` (Twisted's
 * chainDeferred); d continues with CT_NONE.  Holds a reference on `other`
 * until then (dropped unfired if `d` is freed first).  If `other` has been
 * fired meanwhile, d's result is freed and d continues with a
 * CT_EALREADY_CALLED failure.  Runs in the same loop as ct_wait: long
 * chains of chained Deferreds do not grow the stack.  Returns 0,
 * CT_EINVAL (NULL, or other == d) or CT_ENOMEM.
 */
CT_EXTERN int ct_deferred_chain(ct_deferred *d, ct_deferred *other);

/* ------------------------------------------------------- pause and cancel */

/** Stop running callbacks until ct_deferred_unpause(); pauses nest.  A
 *  paused Deferred may still be fired: the result waits.  NULL: no-op. */
CT_EXTERN void ct_deferred_pause(ct_deferred *d);

/** Undo one pause; the last one resumes the chain if there is a result.
 *  Unpausing a Deferred that is not paused does nothing. */
CT_EXTERN void ct_deferred_unpause(ct_deferred *d);

/**
 * Cancel: if unfired, call the canceller; if it did not fire `d`, errback
 * with CT_ECANCELLED (code CT_ECANCELLED, domain "ctwist").  With no
 * canceller, the next ct_deferred_callback()/errback() on `d` (the producer
 * finishing late) is silently ignored and returns 0; later ones return
 * CT_EALREADY_CALLED, as after any fire.  If `d` has fired but waits on an
 * inner Deferred (a callback returned ct_wait), the innermost unfired
 * Deferred of that nest is cancelled instead, and its failure flows back
 * into `d`.  A Deferred that fired and is not waiting is left alone.
 * `d` stays valid during the call even if the canceller drops references.
 * Returns 0, or CT_EINVAL for NULL.
 */
CT_EXTERN int ct_deferred_cancel(ct_deferred *d);

/**
 * Cancel `d` after `seconds` on `r`'s clock unless it fires first; a
 * cancellation by the timeout errbacks with CT_ETIMEDOUT (a cause chain
 * keeps the cancellation).  Returns 0, CT_ESTATE if fired, or CT_ENOMEM.
 */
CT_EXTERN int ct_deferred_add_timeout(ct_deferred *d, ct_reactor *r,
                                      double seconds);

/* -------------------------------------------------------------- inspection */

/** 1 once callback/errback has been called on `d`. */
CT_EXTERN int ct_deferred_called(const ct_deferred *d);

/** 1 when `d` has fired, is not waiting on an inner Deferred, is not
 *  running its chain, and has no callbacks left to run (its result is the
 *  final one so far). */
CT_EXTERN int ct_deferred_has_result(const ct_deferred *d);

/** 1 if the current result is a failure. */
CT_EXTERN int ct_deferred_is_failed(const ct_deferred *d);

/**
 * Take the current result out of a fired Deferred whose chain has run
 * (Twisted's successResultOf/failureResultOf); the Deferred is left holding
 * CT_NONE.  Taking a failure consumes it (no "Unhandled error" log).
 * Returns 0, or CT_ESTATE if there is no result to take.
 */
CT_EXTERN int ct_deferred_take_result(ct_deferred *d, ct_result *out);

/** Borrow the current result's failure, or NULL if none (also NULL while
 *  `d` waits on an inner Deferred).  Valid until the result changes. */
CT_EXTERN const ct_failure *ct_deferred_peek_failure(const ct_deferred *d);

/** Borrow the current value when ct_deferred_has_result() and the result is
 *  not a failure, else NULL.  Valid until the result changes. */
CT_EXTERN const ct_value *ct_deferred_peek_value(const ct_deferred *d);

/** 1 while `d` is paused by ct_deferred_pause(). */
CT_EXTERN int ct_deferred_paused(const ct_deferred *d);

/** 1 while a callback of `d` has returned ct_wait(inner) and `inner` has
 *  not delivered its result yet. */
CT_EXTERN int ct_deferred_waiting(const ct_deferred *d);

/** Where `d` was created (the file and line recorded by
 *  ct_deferred_new()); borrowed static string. */
CT_EXTERN const char *ct_deferred_created_file(const ct_deferred *d);
/** The line of ct_deferred_created_file(). */
CT_EXTERN int ct_deferred_created_line(const ct_deferred *d);

#ifdef __cplusplus
}
#endif

/* Helpers: ct_succeed, ct_fail, ct_maybe_deferred, ct_defer_later,
 * DeferredList, gather, semaphore, lock, queue, Deferred forms of
 * LoopingCall and shutdown triggers. */
#include "ctwist/defer_util.h"

#endif /* CTWIST_DEFERRED_H */
