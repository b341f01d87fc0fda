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
  const char *module;  /**< "reactor", "tcp", "deferred", "libevent", ... */
  const char *message; /**< formatted text, no trailing newline */
  const char *file;    /**< source file, may be NULL */
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
 *  and file, line when known.  Bytes that are not valid UTF-8 are written
 *  as U+FFFD, so every line is valid JSON. */
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

/** Log a failure chain at `level`, prefixed with `what`. */
CT_EXTERN void ct_log_failure(ct_log_level level, const char *module,
                              const char *what, const ct_failure *f);

/**
 * Route libevent's internal log messages into ctwist's logger (module
 * "libevent").  Called by ct_reactor_new(); safe to call more than once.
 */
CT_EXTERN void ct_log_capture_libevent(void);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_LOG_H */
