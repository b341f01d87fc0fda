/**
 * @file log.h
 * @brief Structured logging with levels and observers (twisted.logger).
 *
 * A log event has a level, a module name, a message, the source location and
 * a wall-clock timestamp (for display only; ctwist never schedules on wall
 * time).  Events go to every registered observer whose minimum level they
 * reach.  With no observer registered, the default text observer writes to
 * stderr at CT_LOG_INFO and above.
 *
 * The observer list is process-wide, guarded by a mutex, because libevent's
 * own log callback and Deferreds (which know no reactor) must reach it; it is
 * the one piece of shared state outside a reactor.  Observers may be called
 * from any thread that logs.
 */
#ifndef CTWIST_LOG_H
#define CTWIST_LOG_H

#include <stdarg.h>
#include <stdio.h>

#include "ctwist/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Log levels, lowest first. */
typedef enum ct_log_level {
  CT_LOG_DEBUG = 0,
  CT_LOG_INFO = 1,
  CT_LOG_WARN = 2,
  CT_LOG_ERROR = 3,
  CT_LOG_CRITICAL = 4
} ct_log_level;

/** One log event, borrowed by observers for the duration of the call. */
typedef struct ct_log_event {
  ct_log_level level;
  const char *module; /**< "reactor", "tcp", "deferred", "libevent", ... */
  /** Formatted text, one line, printable: every byte that is not (control
   *  characters such as ESC, newlines, DEL, invalid UTF-8, C1 controls,
   *  direction marks) is escaped as \n, \r, \t, \xNN or \uNNNN, so bytes
   *  from a peer can neither drive a terminal nor forge a log line. */
  const char *message;
  const char *file; /**< source file, may be NULL */
  int line;
  double time; /**< wall-clock seconds since the epoch, for display */
} ct_log_event;

/**
 * An observer: called once per event at or above its minimum level, with
 * the observer list locked.  An observer must not add or remove observers
 * (such calls are ignored: add returns NULL, remove does nothing); an event
 * it logs itself goes straight to the stderr text observer.
 */
typedef void (*ct_log_observer_cb)(const ct_log_event *ev, void *arg);

/** Handle of a registered observer. */
typedef struct ct_log_observer ct_log_observer;

/**
 * Register an observer receiving events at `min_level` and above.  The
 * first registered observer replaces the default stderr observer.  Returns
 * NULL if memory runs out.  Remove it with ct_log_remove_observer().
 */
CT_EXTERN ct_log_observer *
ct_log_add_observer(ct_log_level min_level, ct_log_observer_cb cb, void *arg);

/** Unregister and free an observer.  NULL is a no-op. */
CT_EXTERN void ct_log_remove_observer(ct_log_observer *obs);

/** Observer writing human-readable lines; `arg` is the `FILE *` (NULL: stderr).
 *  Format: "2026-11-24T06:20:00.123Z [warn] tcp: message (file.c:12)". */
CT_EXTERN void ct_log_text_observer(const ct_log_event *ev, void *arg);

/** Observer writing one JSON object per line; `arg` is the `FILE *` (NULL:
 *  stderr).  Keys: time (ISO 8601 UTC string), level, module, message,
 *  and file, line when known.  The message arrives escaped (see
 *  ct_log_event); any other byte that is not valid UTF-8 is written as
 *  U+FFFD, so every line is valid JSON. */
CT_EXTERN void ct_log_json_observer(const ct_log_event *ev, void *arg);

/** Minimum level of the default stderr observer (CT_LOG_INFO initially). */
CT_EXTERN void ct_log_set_default_level(ct_log_level level);

/** The name of a level: "debug", "info", "warn", "error", "critical". */
CT_EXTERN const char *ct_log_level_name(ct_log_level level);

/** Parse a level name (case-insensitive; "warning" is accepted for
 *  "warn"); returns 0 and sets *out, or CT_EINVAL (also for NULL). */
CT_EXTERN int ct_log_level_parse(const char *name, ct_log_level *out);

/**
 * Emit an event.  Use the ct_log() macro, which records file and line.
 * Messages are formatted once, into a stack buffer when they fit (no
 * allocation for messages under 512 bytes).
 */
CT_EXTERN void ct_log_emit(ct_log_level level, const char *module,
                           const char *file, int line, const char *fmt, ...)
    CT_PRINTF(5, 6);

/** va_list form of ct_log_emit(). */
CT_EXTERN void ct_log_emitv(ct_log_level level, const char *module,
                            const char *file, int line, const char *fmt,
                            va_list ap);

/** Log: ct_log(CT_LOG_WARN, "tcp", "accept failed: %s", ct_strerror(e)). */
#define ct_log(level, module, ...)                                             \
  ct_log_emit((level), (module), __FILE__, __LINE__, __VA_ARGS__)

/** Log a failure chain at `level`, prefixed with `what`, on one line:
 *  "what: [domain] NAME: message; caused by: [domain] NAME: message
 *  (file.c:9)".  The event's file and line are the failure's, so observers
 *  print the head's location once. */
CT_EXTERN void ct_log_failure(ct_log_level level, const char *module,
                              const char *what, const ct_failure *f);

/* -------------------------------------------------- rate-limited logging */

typedef struct ct_reactor ct_reactor;

/**
 * Log an event that a peer can cause at will (a bad frame, a refused
 * connection), at most `burst` times per window per source.  The source is
 * the call site (`file`, `line`; use the ct_log_limited() macro).  The
 * first event of a source opens a window of `interval` seconds on `r`'s
 * clock (10 s and 1 event by default, see ct_reactor_set_log_limit()); the
 * events past the burst in that window are counted, not formatted, and
 * when the window closes one event at the same level, module and site says
 * "... and N more like this in the last 10 s".  The window is a delayed
 * call on `r`, so a fake clock drives it; freeing the reactor reports the
 * counts still open.  `r` NULL logs without a limit.  Reactor thread only.
 */
CT_EXTERN void ct_log_emit_limited(ct_reactor *r, ct_log_level level,
                                   const char *module, const char *file,
                                   int line, const char *fmt, ...)
    CT_PRINTF(6, 7);

/** Rate-limited ct_log(): ct_log_limited(r, CT_LOG_WARN, "tcp", "..."). */
#define ct_log_limited(r, level, module, ...)                                  \
  ct_log_emit_limited((r), (level), (module), __FILE__, __LINE__, __VA_ARGS__)

/** ct_log_failure() under the same per-source limit; `file`, `line` name
 *  the call site (the ct_log_failure_limited() macro records them). */
CT_EXTERN void ct_log_failure_limited_at(const char *file, int line,
                                         ct_reactor *r, ct_log_level level,
                                         const char *module, const char *what,
                                         const ct_failure *f);

/** Rate-limited ct_log_failure(). */
#define ct_log_failure_limited(r, level, module, what, f)                      \
  ct_log_failure_limited_at(__FILE__, __LINE__, (r), (level), (module),        \
                            (what), (f))

/**
 * Set `r`'s log rate limit: at most `burst` (>= 1) events per source per
 * `interval` (> 0) seconds.  Applies to windows opened afterwards.
 * Returns 0, CT_EINVAL or CT_ENOMEM.
 */
CT_EXTERN int ct_reactor_set_log_limit(ct_reactor *r, double interval,
                                       unsigned burst);

/**
 * Route libevent's internal log messages into ctwist's logger (module
 * "libevent").  Called by ct_reactor_new(); safe to call more than once.
 */
CT_EXTERN void ct_log_capture_libevent(void);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_LOG_H */
