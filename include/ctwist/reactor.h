/**
 * @file reactor.h
 * @brief The reactor: event loop, monotonic time, callLater, LoopingCall,
 *        shutdown triggers, signals, descriptors and cross-thread calls.
 *
 * A `ct_reactor` owns a libevent `event_base`.  Everything it runs -- timed
 * calls, I/O callbacks, signal handlers, calls from other threads -- runs on
 * the thread that called ct_reactor_run(), one callback at a time.  Except
 * for ct_reactor_call_from_thread(), no function here is thread-safe.
 *
 * Time is monotonic (CLOCK_MONOTONIC), in seconds as a double, never wall
 * time.  A reactor built on a fake clock (ct_clock) runs its timed calls
 * only when the test advances that clock, like twisted.internet.task.Clock.
 */
#ifndef CTWIST_REACTOR_H
#define CTWIST_REACTOR_H

#include <stdint.h>

#include "ctwist/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_reactor ct_reactor;
typedef struct ct_clock ct_clock;
typedef struct ct_delayed_call ct_delayed_call;
typedef struct ct_looping_call ct_looping_call;

/** A plain callback: timed calls, call_when_running, calls from threads. */
typedef void (*ct_call_cb)(void *arg);

/* ---------------------------------------------------------------- reactor */

/**
 * Create a reactor on the real monotonic clock.  While it runs, SIGINT and
 * SIGTERM stop it gracefully, and a second one during that stop hurries it
 * (ct_reactor_hurry()) (the handlers are installed by
 * ct_reactor_run() and removed when it returns, as Twisted does in run()).
 * SIGPIPE is left alone: a library does not change a process-wide signal
 * disposition it was not asked to.  It needs none: every socket write of
 * ctwist passes MSG_NOSIGNAL, so a peer that went away is an EPIPE failure
 * of that connection, never a signal.  A program that itself writes to
 * pipes or sockets with write() should ignore SIGPIPE (ctwistd does).
 * Routes libevent's log into ct_log.  Returns NULL if libevent or memory
 * fails.  Free with ct_reactor_free().
 */
CT_EXTERN ct_reactor *ct_reactor_new(void);

/**
 * Create a reactor whose time is `clock` (borrowed: it must outlive the
 * reactor).  Timed calls and looping calls run only from
 * ct_clock_advance(); I/O still runs from ct_reactor_run().  One clock
 * drives one reactor.  Signal handlers are not installed.
 */
CT_EXTERN ct_reactor *ct_reactor_new_with_clock(ct_clock *clock);

/**
 * Free a reactor that is not running (on a running one it logs an error and
 * does nothing).  Pending delayed calls, call_soon work and queued calls
 * from threads are dropped without running; descriptor watchers, signal
 * handlers and triggers are released.  Before freeing, the caller must
 * drop every ct_delayed_call_ref() reference, free its looping calls and
 * release its phase holds (they point into the reactor), and close the
 * objects built on it (transports, listeners).  NULL is a no-op.
 */
CT_EXTERN void ct_reactor_free(ct_reactor *r);

/**
 * Run the loop until ct_reactor_stop() has completed its shutdown phases.
 * Runs callbacks registered by ct_reactor_call_when_running() first, in
 * registration order.  The loop keeps running with nothing to watch.
 * Returns 0, CT_EINVAL for NULL, or CT_ESTATE if already running.  A
 * stopped reactor may be run again (triggers stay registered and run again
 * on the next stop).
 */
CT_EXTERN int ct_reactor_run(ct_reactor *r);

/**
 * Ask the reactor to stop: on later loop turns it runs the shutdown
 * triggers (before, during, after; each phase waits for the holds taken in
 * it), then makes ct_reactor_run() return.  Never runs anything
 * synchronously; safe from any callback.  I/O and timers keep running
 * during the phases.  Returns 0, or CT_ENOTRUNNING if the reactor is not
 * running or already stopping.
 */
CT_EXTERN int ct_reactor_stop(ct_reactor *r);

/** 1 while ct_reactor_run() is executing (including shutdown), else 0. */
CT_EXTERN int ct_reactor_is_running(const ct_reactor *r);

/** The reactor's current time in seconds (monotonic, or the fake clock). */
CT_EXTERN double ct_reactor_seconds(const ct_reactor *r);

/**
 * Run one non-blocking turn of the loop: poll descriptors without waiting
 * and run whatever is ready (I/O, signals, calls from threads, work queued
 * for the next turn).  For tests and for embedding; timed calls on a fake
 * clock still run only from ct_clock_advance().  Returns 0, or CT_ESTATE
 * when called while ct_reactor_run() is executing or from a callback of
 * another ct_reactor_iterate() (loop turns never nest).
 */
CT_EXTERN int ct_reactor_iterate(ct_reactor *r);

/**
 * ct_reactor_iterate(), but waiting up to `max_seconds` (real time; NaN
 * and negatives: 0) for something to become ready -- I/O, a signal, a call
 * from a thread, a real-clock timer -- and running it; returns as soon as
 * one batch ran.  libuv's UV_RUN_ONCE with a bound: for tests and
 * embedders that wait on a condition without spinning or sleeping.  Same
 * returns as ct_reactor_iterate().
 */
CT_EXTERN int ct_reactor_iterate_wait(ct_reactor *r, double max_seconds);

/**
 * Run `fn(arg)` once the reactor is running (at once, on the next loop turn,
 * if it already is).  Returns 0, CT_EINVAL or CT_ENOMEM.
 */
CT_EXTERN int ct_reactor_call_when_running(ct_reactor *r, ct_call_cb fn,
                                           void *arg);

/**
 * Escape hatch: the libevent `struct event_base *` under the reactor, for
 * code that needs libevent directly.  Owned by the reactor.
 */
CT_EXTERN void *ct_reactor_event_base(ct_reactor *r);

/* --------------------------------------------------------------- triggers */

/** Shutdown phases, run in this order by ct_reactor_stop(). */
typedef enum ct_phase {
  CT_PHASE_BEFORE = 0,
  CT_PHASE_DURING = 1,
  CT_PHASE_AFTER = 2,
  /** Not a phase of every stop: its triggers run only when a stop is
   *  hurried (ct_reactor_hurry(), a second SIGINT/SIGTERM), at once, to
   *  abort what the holds were waiting for (e.g. abort connections that
   *  are still flushing). */
  CT_PHASE_ABORT = 3
} ct_phase;

/**
 * A hold on the current shutdown phase: the reactor does not enter the next
 * phase until every hold taken in this one is released.  The deferred
 * module builds its Deferred-returning triggers on this.
 */
typedef struct ct_phase_hold ct_phase_hold;

/**
 * Register `fn(arg)` to run in `phase` of every shutdown (Twisted's
 * addSystemEventTrigger(phase, 'shutdown', fn)).  Triggers of a phase run in
 * registration order.  Returns a positive trigger id, or CT_EINVAL/CT_ENOMEM.
 */
CT_EXTERN long ct_reactor_add_trigger(ct_reactor *r, ct_phase phase,
                                      ct_call_cb fn, void *arg);

/** Remove a trigger by id (also from inside a trigger; a removed trigger
 *  that has not run yet in this phase does not run).  Returns 0,
 *  CT_EINVAL or CT_ENOTFOUND. */
CT_EXTERN int ct_reactor_remove_trigger(ct_reactor *r, long id);

/**
 * From inside a trigger (or any callback while a phase is in progress):
 * make the current phase wait until the returned hold is released with
 * ct_phase_hold_release().  Returns NULL (and does nothing) when no shutdown
 * phase is running, or if memory runs out.
 */
CT_EXTERN ct_phase_hold *ct_reactor_hold_phase(ct_reactor *r);

/** Release a hold (exactly once; the hold is freed); the last release of a
 *  phase moves the shutdown on, on a later loop turn.  A hold taken in the
 *  turn between that last release and the phase's end still holds it.
 *  Releasing a hold voided by ct_reactor_hurry() or by the end of run only
 *  frees it.  NULL is a no-op. */
CT_EXTERN void ct_phase_hold_release(ct_phase_hold *h);

/**
 * Hurry a stop in progress: run the CT_PHASE_ABORT triggers (now, in
 * registration order), then stop waiting: every hold is voided, no new one
 * is granted, the phases not yet run still run their triggers on the next
 * loop turns, and ct_reactor_run() returns.  The default SIGINT/SIGTERM
 * handler calls it when a second signal arrives during a graceful stop.
 * Returns 0 (also when already hurried), CT_EINVAL, or CT_ENOTRUNNING when
 * no stop is in progress.
 */
CT_EXTERN int ct_reactor_hurry(ct_reactor *r);

/** 1 once the stop in progress has been hurried, else 0. */
CT_EXTERN int ct_reactor_is_hurried(const ct_reactor *r);

/* ---------------------------------------------------------- delayed calls */

/**
 * Schedule `fn(arg)` after `seconds` (clamped to >= 0; NaN counts as 0;
 * times are kept in integer nanoseconds) on the reactor's clock.  Calls due
 * at the same time run in the order they were scheduled, `call_later(0)`
 * included.  Never runs `fn` synchronously.  On the real clock, calls
 * scheduled by a callback that are already due run on the next loop turn,
 * after I/O.  Returns NULL if `r` or `fn` is NULL or memory runs out.
 *
 * Lifetime: the returned handle belongs to the reactor and stays valid
 * while the call is pending and while its callback runs.  To use it after
 * it may have fired or been cancelled (to ask active(), or to cancel without
 * knowing), take a reference with ct_delayed_call_ref() and drop it with
 * ct_delayed_call_unref(); while referenced, the handle answers
 * CT_EALREADY_CALLED / CT_EALREADY_CANCELLED instead of dangling.
 */
CT_EXTERN ct_delayed_call *ct_call_later(ct_reactor *r, double seconds,
                                         ct_call_cb fn, void *arg);

/**
 * Cancel a pending call.  Returns 0, CT_EALREADY_CALLED (it ran, or is
 * running now) or CT_EALREADY_CANCELLED.  Cancelling from inside any
 * callback, including other delayed calls, is safe.
 */
CT_EXTERN int ct_delayed_call_cancel(ct_delayed_call *c);

/**
 * Reschedule to `seconds` from now.  This counts as a new scheduling: the
 * call runs after calls already scheduled for the same time.  Returns 0,
 * CT_EALREADY_CALLED or CT_EALREADY_CANCELLED (CT_EINVAL for NULL).
 * Exception: from inside its own callback a call may re-arm itself with
 * reset(); it is then pending again (like re-adding a libevent event from
 * its callback).
 */
CT_EXTERN int ct_delayed_call_reset(ct_delayed_call *c, double seconds);

/** Push the deadline back by `seconds` (may be negative).  Keeps the
 *  call's place in scheduling order among equal deadlines.  Returns 0,
 *  CT_EALREADY_CALLED (also from inside its own callback) or
 *  CT_EALREADY_CANCELLED. */
CT_EXTERN int ct_delayed_call_delay(ct_delayed_call *c, double seconds);

/** 1 if the call is pending (neither called nor cancelled), else 0.  A call
 *  is not active while its own callback runs (unless it re-armed). */
CT_EXTERN int ct_delayed_call_active(const ct_delayed_call *c);

/** The reactor time at which the call is (or was) due. */
CT_EXTERN double ct_delayed_call_get_time(const ct_delayed_call *c);

/** Take a reference on the handle (see ct_call_later()). */
CT_EXTERN ct_delayed_call *ct_delayed_call_ref(ct_delayed_call *c);

/** Drop a reference taken with ct_delayed_call_ref().  Does not cancel.
 *  The handle may be invalid afterwards.  NULL is a no-op. */
CT_EXTERN void ct_delayed_call_unref(ct_delayed_call *c);

/** Number of pending delayed calls (for tests and leak checks). */
CT_EXTERN size_t ct_reactor_pending_calls(const ct_reactor *r);

/* ------------------------------------------------------------- fake clock */

/** Create a fake clock at time 0.  Free with ct_clock_free() after the
 *  reactor using it. */
CT_EXTERN ct_clock *ct_clock_new(void);

/** Free a fake clock.  Returns 0 (also for NULL), or CT_EBUSY without
 *  freeing anything while a reactor still runs on it: free the reactor
 *  first (the reactor never silently switches to the real clock). */
CT_EXTERN int ct_clock_free(ct_clock *c);

/** The fake clock's time in seconds. */
CT_EXTERN double ct_clock_seconds(const ct_clock *c);

/**
 * Move time forward by `seconds` (>= 0) and run, in deadline then
 * scheduling order, every call that is due -- including calls scheduled by
 * those callbacks that fall due within the advanced time.  As in
 * task.Clock.advance, the time jumps first: callbacks see the new time, so
 * a looping call sees one call with count > 1 after a jump.  Returns the
 * number of calls run, or CT_EINVAL for negative or NaN `seconds`.
 */
CT_EXTERN long ct_clock_advance(ct_clock *c, double seconds);

/** Advance by each step in turn (Twisted's Clock.pump).  Returns calls run,
 *  or CT_EINVAL (NULL clock, NULL steps with n > 0, a bad step). */
CT_EXTERN long ct_clock_pump(ct_clock *c, const double *steps, size_t n);

/* ----------------------------------------------------------- looping call */

/**
 * A looping call's function.  `count` is the number of intervals elapsed
 * since the previous call (1 normally; more when the loop ran late, like
 * Twisted's LoopingCall.withCount).  Return 0 to keep looping, or a negative
 * code to stop the loop with that error.
 */
typedef int (*ct_looping_cb)(ct_looping_call *lc, uint64_t count, void *arg);

/**
 * Called once when the loop ends: `err` is 0 after ct_looping_call_stop(),
 * or the code the function returned.
 */
typedef void (*ct_looping_done_cb)(ct_looping_call *lc, int err, void *arg);

/** Create a stopped looping call.  Free with ct_looping_call_free(), before
 *  the reactor.  Returns NULL for a NULL reactor or function, or when
 *  memory runs out. */
CT_EXTERN ct_looping_call *ct_looping_call_new(ct_reactor *r, ct_looping_cb fn,
                                               void *arg);

/**
 * Start calling every `interval` seconds (> 0, at least 1 ns), first at
 * once -- synchronously, before start() returns -- if `now` is non-zero.
 * Calls are aligned to start + k*interval; missed intervals are skipped,
 * not run back to back.  A stopped looping call may be started again.
 * Returns 0, CT_EINVAL, CT_ENOMEM, or CT_ESTATE if already running.
 */
CT_EXTERN int ct_looping_call_start(ct_looping_call *lc, double interval,
                                    int now);

/** Stop; the done callback runs at once with err 0 (also when called from
 *  inside the function).  Safe from inside the function and from the done
 *  callback.  Returns 0, CT_EINVAL or CT_ESTATE if not running. */
CT_EXTERN int ct_looping_call_stop(ct_looping_call *lc);

/** Set the completion callback (replaces the previous one). */
CT_EXTERN void ct_looping_call_on_done(ct_looping_call *lc,
                                       ct_looping_done_cb cb, void *arg);

/** 1 while started. */
CT_EXTERN int ct_looping_call_running(const ct_looping_call *lc);

/** Total intervals skipped because the loop ran late, since creation. */
CT_EXTERN uint64_t ct_looping_call_skipped(const ct_looping_call *lc);

/** Number of times the function has been called, since creation. */
CT_EXTERN uint64_t ct_looping_call_calls(const ct_looping_call *lc);

/** Stop (without running done) and free.  Safe from inside the function:
 *  the memory is released after it returns.  NULL is a no-op. */
CT_EXTERN void ct_looping_call_free(ct_looping_call *lc);

/* ---------------------------------------------------------------- signals */

/** A signal handler, run on the reactor thread (not in signal context). */
typedef void (*ct_signal_cb)(ct_reactor *r, int signum, void *arg);

/**
 * Handle `signum` on the reactor (through libevent's evsignal: the handler
 * runs from the loop, on the reactor thread).  Replaces the previous handler
 * for that signal on this reactor (including the default SIGINT/SIGTERM
 * graceful stop); `cb` NULL restores the default for SIGINT/SIGTERM (on a
 * real-clock reactor, while it runs) and removes the handler otherwise.  A
 * handler may replace or remove itself.  libevent lets one event_base
 * handle signals at a time: handle them on one reactor per process.
 * Returns 0, CT_EINVAL (bad signal number, SIGKILL, SIGSTOP) or CT_ENOMEM.
 */
CT_EXTERN int ct_reactor_on_signal(ct_reactor *r, int signum, ct_signal_cb cb,
                                   void *arg);

/* ---------------------------------------------------------- descriptors */

/** Readiness flags for descriptor callbacks. */
enum { CT_READABLE = 1, CT_WRITABLE = 2 };

/** Called on the reactor thread when `fd` is ready (`events` CT_READABLE or
 *  CT_WRITABLE). */
typedef void (*ct_fd_cb)(ct_reactor *r, int fd, int events, void *arg);

/**
 * Watch `fd` for reading (persistent, level-triggered) and call `cb`.  One
 * reader per descriptor: adding again replaces it.  The descriptor stays
 * the caller's (close it only after removing the watcher).  A callback may
 * remove its own watcher, or any other.  Returns 0, CT_EINVAL (NULL
 * reactor or callback, negative fd, or a descriptor epoll refuses such as
 * a regular file), CT_EBADF (not an open descriptor) or CT_ENOMEM.
 */
CT_EXTERN int ct_reactor_add_reader(ct_reactor *r, int fd, ct_fd_cb cb,
                                    void *arg);

/** As ct_reactor_add_reader(), for writability. */
CT_EXTERN int ct_reactor_add_writer(ct_reactor *r, int fd, ct_fd_cb cb,
                                    void *arg);

/** Stop watching `fd` for reading.  Returns 0, CT_EINVAL or CT_ENOTFOUND.
 *  Safe from inside its own callback. */
CT_EXTERN int ct_reactor_remove_reader(ct_reactor *r, int fd);

/** Stop watching `fd` for writing.  Returns 0, CT_EINVAL or CT_ENOTFOUND.
 *  Safe from inside its own callback. */
CT_EXTERN int ct_reactor_remove_writer(ct_reactor *r, int fd);

/* ------------------------------------------------------------- threads */

/**
 * Thread-safe: queue `fn(arg)` to run on the reactor thread and wake the
 * loop.  Calls run in the order they were queued (FIFO overall, so also per
 * thread); calls queued while a batch runs wait for the next loop turn.
 * Also usable from the reactor thread itself.  Returns 0, CT_EINVAL,
 * CT_ENOMEM, or CT_ECLOSED once the reactor is being freed (the caller
 * must still not race ct_reactor_free() itself).
 */
CT_EXTERN int ct_reactor_call_from_thread(ct_reactor *r, ct_call_cb fn,
                                          void *arg);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_REACTOR_H */
