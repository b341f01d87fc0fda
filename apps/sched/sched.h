/**
 * @file sched.h
 * @brief ct-sched's core: the config parser, the schedule computation and
 *        the scheduler with its policies, as a small library (libctsched)
 *        that the ct-sched program and the tests link.
 *
 * Three layers, each usable alone:
 *
 * - the config parser (ct_sched_config_parse()): text in, task specs out,
 *   or a failure naming "file:line: problem";
 * - the pure schedule computation: ct_sched_calendar_next() (daily and
 *   cron schedules in local time, DST rules in docs/sched.md) and
 *   ct_sched_fire_times() (the next N fire times of any task);
 * - the scheduler (ct_sched): one callLater per task on a reactor, the
 *   overlap / misfire / catch-up policies, the state file, reloads.  The
 *   wall clock is injected (ct_sched_wall), and so is what a run does
 *   (ct_sched_executor), so tests drive everything from a fake clock.
 *
 * Interval schedules (`every`, `at`) run on the reactor's monotonic clock;
 * wall-clock schedules (`daily`, `cron`) on the wall clock and the local
 * time zone (TZ, tzset()).  Not thread-safe: use on the reactor thread.
 */
#ifndef CT_SCHED_H
#define CT_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "ctwist/error.h"
#include "ctwist/reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ task specs */

/** The kind of schedule. */
typedef enum ct_sched_kind {
  CT_SCHED_EVERY = 0, /**< every INTERVAL [jitter J] (monotonic) */
  CT_SCHED_AT,        /**< at +DELAY: once, after loading (monotonic) */
  CT_SCHED_DAILY,     /**< daily HH:MM[:SS] (wall clock, local time) */
  CT_SCHED_CRON       /**< cron "m h dom mon dow" (wall clock, local time) */
} ct_sched_kind;

/** What happens when a run is due while the previous one still runs. */
typedef enum ct_sched_overlap {
  CT_SCHED_OVERLAP_SKIP = 0, /**< drop the new run (counted), the default */
  CT_SCHED_OVERLAP_QUEUE,    /**< run it when the current one ends */
  CT_SCHED_OVERLAP_ALLOW     /**< run it at once, concurrently */
} ct_sched_overlap;

/** What to do with runs missed while down, asleep or late. */
typedef enum ct_sched_catchup {
  CT_SCHED_CATCHUP_NONE = 0, /**< drop them (counted as missed), default */
  CT_SCHED_CATCHUP_ONE,      /**< one run stands for all of them */
  CT_SCHED_CATCHUP_ALL       /**< one run each, at most catchup_max */
} ct_sched_catchup;

/** What a run does. */
typedef enum ct_sched_action_kind {
  CT_SCHED_RUN = 0, /**< run a command (argv, no shell) */
  CT_SCHED_RPC,     /**< call a JSON-RPC method */
  CT_SCHED_SEND     /**< send one message-protocol frame */
} ct_sched_action_kind;

/**
 * A wall-clock calendar: the set of local times at which a daily or cron
 * task fires.  Bit i of a field set means value i is allowed.
 */
typedef struct ct_sched_calendar {
  uint64_t minutes; /**< bits 0..59 */
  uint32_t hours;   /**< bits 0..23 */
  uint32_t mdays;   /**< bits 1..31 */
  uint16_t months;  /**< bits 1..12 */
  uint8_t wdays;    /**< bits 0..6, Sunday = 0 */
  uint8_t second;   /**< the second within the minute (daily HH:MM:SS) */
  /** The day-of-month / day-of-week fields began with '*': when both are
   *  restricted, a day matches if EITHER matches (cron's OR rule). */
  uint8_t mday_star, wday_star;
  /** The hour field is '*' (every hour): such a task also fires in the
   *  repeated hour of a fall-back change (see docs/sched.md). */
  uint8_t hour_star;
} ct_sched_calendar;

/** Defaults of the policies. */
#define CT_SCHED_KILL_GRACE_DEFAULT 10.0
#define CT_SCHED_CATCHUP_MAX_DEFAULT 100u

/** One task of a config: everything its line says.  Strings are owned. */
typedef struct ct_sched_spec {
  char *name; /**< [A-Za-z0-9_.-]+, unique in a config */
  char *line; /**< the line as written (trimmed): a task's identity on reload */
  int lineno;
  ct_sched_kind kind;
  double interval;       /**< every: seconds (> 0) */
  double jitter;         /**< every: each fire lands in [base, base + jitter] */
  double delay;          /**< at: seconds after loading */
  ct_sched_calendar cal; /**< daily, cron */
  ct_sched_overlap overlap;
  double misfire_grace; /**< seconds a run may start late; < 0: no limit */
  ct_sched_catchup catchup;
  unsigned catchup_max; /**< for CT_SCHED_CATCHUP_ALL */
  double timeout;       /**< seconds before a run is stopped; 0: none */
  double kill_grace;    /**< seconds from SIGTERM to SIGKILL */
  ct_sched_action_kind action;
  char **argv;    /**< run: NULL-terminated */
  char *endpoint; /**< rpc, send: a client endpoint string */
  char *method;   /**< rpc */
  char *params;   /**< rpc: JSON array or object text, or NULL */
  char *header;   /**< send: JSON object text, or NULL for {} */
  char *content;  /**< send: content text, or NULL */
} ct_sched_spec;

/** A parsed config: `n` task specs, in file order. */
typedef struct ct_sched_config {
  ct_sched_spec *tasks;
  size_t n;
} ct_sched_config;

/**
 * Parse a config (syntax in docs/sched.md).  `filename` names the source in
 * errors (may be NULL: "config").  On success fills `*out` (the caller
 * frees it with ct_sched_config_clear()) and returns 0.  On the first bad
 * line returns CT_EINVAL (CT_ENOMEM if memory runs out), leaves `*out`
 * empty and sets `*err` (if not NULL) to a failure the caller owns, whose
 * message is "FILE:LINE: problem" ("tasks.conf:7: unknown schedule
 * 'evry'").  Embedded NUL bytes are rejected.
 */
int ct_sched_config_parse(const char *text, size_t len, const char *filename,
                          ct_sched_config *out, ct_failure **err);

/** Read and parse the file at `path` (errors as above, plus CT_ENOENT and
 *  other I/O errors naming the file). */
int ct_sched_config_load(const char *path, ct_sched_config *out,
                         ct_failure **err);

/** Free the specs of a config and empty it.  NULL is a no-op. */
void ct_sched_config_clear(ct_sched_config *c);

/** Free the strings of one spec and zero it. */
void ct_sched_spec_clear(ct_sched_spec *s);

/**
 * Parse one 5-field cron expression ("*\/5 * * * *", names jan-dec and
 * sun-sat, ranges, lists, steps, 7 = Sunday) or a macro (@hourly, @daily,
 * @midnight, @weekly, @monthly, @yearly, @annually) into `cal`.  Returns 0,
 * or CT_EINVAL with `*why` pointing at a static explanation.
 */
int ct_sched_cron_parse(const char *expr, ct_sched_calendar *cal,
                        const char **why);

/* ------------------------------------------------------- schedule times */

/**
 * The first local time matching `cal` strictly after wall time `after`
 * (seconds since the epoch), in the time zone of localtime(): a time
 * skipped by a spring-forward change fires at the change; a repeated
 * (fall-back) time fires once, at its first occurrence, unless the hour
 * field is '*'.  Returns the time, or -1 when nothing matches within 30
 * years (e.g. February 30).
 */
double ct_sched_calendar_next(const ct_sched_calendar *cal, double after);

/**
 * The next `n` fire times of a task, into `out`: for wall-clock tasks,
 * wall times after `wall_now`; for `every`, offsets in seconds after
 * loading (without jitter); for `at`, its one delay.  Returns how many
 * were written (fewer when the schedule ends).
 */
size_t ct_sched_fire_times(const ct_sched_spec *s, double wall_now, double *out,
                           size_t n);

/* ------------------------------------------------------------ scheduler */

/** The wall clock: seconds since the epoch.  NULL `now`: the system's
 *  CLOCK_REALTIME. */
typedef struct ct_sched_wall {
  double (*now)(void *arg);
  void *arg;
} ct_sched_wall;

typedef struct ct_sched ct_sched;
/** One run of a task, handed to the executor. */
typedef struct ct_sched_run ct_sched_run;

/**
 * What runs do.  start() begins one run of `spec` (borrowed; valid until
 * the run is done) and later -- or from inside start() -- reports its end
 * with ct_sched_run_done() exactly once.  stop() asks a run to end early
 * (the scheduler is shutting down); it still reports with
 * ct_sched_run_done().  free() releases the executor when the scheduler is
 * freed (may be NULL).
 */
typedef struct ct_sched_executor {
  void (*start)(ct_sched_run *run, const ct_sched_spec *spec, void *arg);
  void (*stop)(ct_sched_run *run, void *arg);
  void *arg;
} ct_sched_executor;

/** Options of ct_sched_new(); zero-fill for the defaults. */
typedef struct ct_sched_options {
  ct_sched_wall wall;     /**< the wall clock (default: the system's) */
  const char *state_path; /**< the state file (copied); NULL: none */
  uint64_t seed;          /**< jitter PRNG seed (0: a fixed default) */
  /** What runs do (copied).  Required: the program passes
   *  ct_sched_exec_new()'s executor, tests their own. */
  ct_sched_executor executor;
  /** Called when a run ends (for tests and the e2e log), may be NULL. */
  void (*on_run_done)(const char *task, const ct_failure *f, void *arg);
  void *arg;
} ct_sched_options;

/** Per-task counters (ct_sched_task_stats()). */
typedef struct ct_sched_stats {
  uint64_t started;   /**< runs started */
  uint64_t succeeded; /**< runs that ended well */
  uint64_t failed;    /**< runs that failed (non-zero exit, RPC error...) */
  uint64_t skipped;   /**< runs dropped by `overlap skip` (LoopingCall's
                           skipped count) */
  uint64_t missed;    /**< due times that got no run: late past
                           misfire-grace, or down with catch-up none */
  uint64_t caught_up; /**< runs made for missed due times */
  unsigned running;   /**< runs in progress */
  unsigned queued;    /**< runs waiting (`overlap queue`, catch-up) */
  int active;         /**< 1 while the task has a next fire time */
  /** The next fire time: wall time for daily/cron; for every/at, the
   *  reactor time (ct_reactor_seconds()).  Meaningful when active. */
  double next;
  double last_scheduled; /**< due time of the last run started (same
                              clock as `next`), or 0 */
} ct_sched_stats;

/** The most runs a task queues (beyond it `overlap queue` skips). */
#define CT_SCHED_QUEUE_MAX 64u

/**
 * Create a scheduler on reactor `r` (borrowed).  `opts` is copied; its
 * executor is required.  Reads the state file when one is named (a
 * missing file is no error; a bad line is logged and ignored).  Returns
 * NULL if memory runs out or the executor is missing.
 */
ct_sched *ct_sched_new(ct_reactor *r, const ct_sched_options *opts);

/**
 * Load (or reload) a config: the tasks of `cfg` are taken over (`cfg` is
 * left empty).  A task whose line is identical to a loaded task's keeps
 * its timer and counters untouched; a new or changed task is scheduled
 * from now (with catch-up from the state file); a task no longer present
 * is cancelled, and its runs in progress finish.  Returns 0, CT_EINVAL
 * (NULL argument) or CT_ESTATE after ct_sched_shutdown() (`cfg` is
 * emptied then too).
 */
int ct_sched_load(ct_sched *s, ct_sched_config *cfg);

/** Counters of the task named `name`.  Returns 0 or CT_ENOTFOUND. */
int ct_sched_task_stats(const ct_sched *s, const char *name,
                        ct_sched_stats *out);

/** Number of loaded tasks. */
size_t ct_sched_task_count(const ct_sched *s);

/** Runs in progress over all tasks, including removed ones. */
size_t ct_sched_running(const ct_sched *s);

/**
 * Stop scheduling: cancel every timer, drop queued runs and ask the runs
 * in progress to stop (executor stop()).  `done(arg)` is called once
 * none is left (at once if none runs).  Returns 0 or CT_ESTATE (already
 * shut down).
 */
int ct_sched_shutdown(ct_sched *s, void (*done)(void *arg), void *arg);

/**
 * Free the scheduler: cancels timers.  Runs still in progress are
 * abandoned (their ct_sched_run_done() must not be called afterwards):
 * shut down first and wait for `done`.  NULL is a no-op.
 */
void ct_sched_free(ct_sched *s);

/** The reactor of a run's scheduler. */
ct_reactor *ct_sched_run_reactor(const ct_sched_run *run);

/** The task name of a run (borrowed, valid until the run is done). */
const char *ct_sched_run_task(const ct_sched_run *run);

/** The time the run was due (same clock as ct_sched_stats.next). */
double ct_sched_run_scheduled(const ct_sched_run *run);

/** The executor's slot for per-run state. */
void ct_sched_run_set_data(ct_sched_run *run, void *data);
void *ct_sched_run_data(const ct_sched_run *run);

/**
 * Report the end of a run: `f` NULL for success, else the failure
 * (borrowed) naming what went wrong, e.g. "exited with code 3";
 * `output_tail` (may be NULL) is the end of the run's output, logged with
 * a failure.  The run is freed.
 */
void ct_sched_run_done(ct_sched_run *run, const ct_failure *f,
                       const char *output_tail);

/* ------------------------------------------------------------- executor */

/** The real executor: commands (process.h), JSON-RPC calls (jsonrpc.h)
 *  and message frames (message.h). */
typedef struct ct_sched_exec ct_sched_exec;

/** Bytes of a command's output (stdout and stderr) kept for the log. */
#define CT_SCHED_TAIL_MAX 1024u

/** Create the real executor on `r`.  NULL if memory runs out. */
ct_sched_exec *ct_sched_exec_new(ct_reactor *r);

/** The executor interface to put into ct_sched_options. */
ct_sched_executor ct_sched_exec_executor(ct_sched_exec *e);

/**
 * Free the executor: closes its RPC and message connections.  Call after
 * ct_sched_free(), with no run in progress; turn the reactor afterwards so
 * connections finish closing.  NULL is a no-op.
 */
void ct_sched_exec_free(ct_sched_exec *e);

#ifdef __cplusplus
}
#endif
#endif /* CT_SCHED_H */
