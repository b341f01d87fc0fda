/*
 * The scheduler: one callLater per task, the overlap / misfire / catch-up
 * policies, the state file and reloads.
 *
 * Each task keeps its next due time in its own clock: the reactor's
 * (monotonic) for `every` and `at`, the wall clock for `daily` and `cron`.
 * A wall-clock task's timer is armed for at most WALL_RECHECK seconds, and
 * on expiry compares the wall clock with its due time again: the monotonic
 * clock stops while the machine sleeps and the wall clock can be stepped,
 * so a long timer would fire at the wrong wall time.
 *
 * When a timer fires, every due time up to now is counted at once, as a
 * LoopingCall counts its skipped intervals.  The latest one runs when it is
 * within misfire-grace; the others are "missed", and the catch-up policy
 * decides how many of them get a run of their own.  A batch of runs meets
 * the overlap policy as a whole when a run is already in progress.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctwist/log.h"
#include "sched.h"

#define WALL_RECHECK 60.0
#define DUE_EPSILON 1e-6
#define COUNT_CAP 10000u /* due times counted exactly per wake-up */

typedef struct task task;

struct ct_sched_run {
  ct_sched *s;
  task *t;
  double scheduled;
  void *data;
  ct_sched_run *prev, *next; /* the scheduler's list of runs */
};

struct task {
  ct_sched *s;
  ct_sched_spec spec;
  task *next;
  int removed;
  int begun;              /* task_begin() ran */
  ct_delayed_call *timer; /* referenced */
  ct_delayed_call *kick;  /* referenced: starts a queued run */
  double anchor;          /* every: base i is anchor + i * interval */
  uint64_t idx;
  double due; /* next due time (monotonic or wall), when active */
  ct_sched_stats st;
  double queue[CT_SCHED_QUEUE_MAX];
  unsigned qhead;
};

typedef struct state_entry {
  char *name;
  double last;
} state_entry;

struct ct_sched {
  ct_reactor *r;
  ct_sched_options o;
  char *state_path;
  task *tasks;   /* loaded, in config order */
  task *retired; /* removed but still running */
  ct_sched_run *runs;
  size_t running;
  state_entry *state;
  size_t nstate, capstate;
  uint64_t rng;
  int shut;
  void (*done)(void *);
  void *done_arg;
};

/* ------------------------------------------------------------- helpers */

static double wall_now(const ct_sched *s) {
  if (s->o.wall.now != NULL)
    return s->o.wall.now(s->o.wall.arg);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double mono_now(const ct_sched *s) {
  return ct_reactor_seconds(s->r);
}

static int is_wall(const task *t) {
  return t->spec.kind == CT_SCHED_DAILY || t->spec.kind == CT_SCHED_CRON;
}

/* splitmix64: a small, seedable PRNG for jitter (no global state). */
static double rand_unit(ct_sched *s) {
  uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static void drop_call(ct_delayed_call **c) {
  if (*c != NULL) {
    ct_delayed_call_cancel(*c);
    ct_delayed_call_unref(*c);
    *c = NULL;
  }
}

/* The time as the wall clock of `t`'s clock domain value `v`. */
static double to_wall(const task *t, double v) {
  if (is_wall(t))
    return v;
  return wall_now(t->s) - (mono_now(t->s) - v);
}

/* ----------------------------------------------------------- state file */

static state_entry *state_find(ct_sched *s, const char *name) {
  for (size_t i = 0; i < s->nstate; i++) {
    if (strcmp(s->state[i].name, name) == 0)
      return &s->state[i];
  }
  return NULL;
}

static void state_set(ct_sched *s, const char *name, double last) {
  state_entry *e = state_find(s, name);
  if (e != NULL) {
    e->last = last;
    return;
  }
  if (s->nstate == s->capstate) {
    size_t cap = s->capstate ? s->capstate * 2 : 16;
    state_entry *ns = realloc(s->state, cap * sizeof *ns);
    if (ns == NULL)
      return;
    s->state = ns;
    s->capstate = cap;
  }
  char *n = strdup(name);
  if (n == NULL)
    return;
  s->state[s->nstate++] = (state_entry){n, last};
}

static void state_read(ct_sched *s) {
  FILE *f = fopen(s->state_path, "r");
  if (f == NULL) {
    if (errno != ENOENT)
      ct_log(CT_LOG_WARN, "sched", "state file %s: %s", s->state_path,
             strerror(errno));
    return;
  }
  char line[256];
  int lineno = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    lineno++;
    if (line[0] == '#' || line[0] == '\n')
      continue;
    char name[80];
    double last;
    if (sscanf(line, "%79s %lf", name, &last) != 2 || !isfinite(last) ||
        last < 0) {
      ct_log(CT_LOG_WARN, "sched", "state file %s:%d: bad line ignored",
             s->state_path, lineno);
      continue;
    }
    state_set(s, name, last);
  }
  fclose(f);
}

/* Write the state file atomically: a temporary file in the same
 * directory, flushed to disk, renamed over the old one. */
static void state_write(ct_sched *s) {
  if (s->state_path == NULL)
    return;
  size_t len = strlen(s->state_path);
  char *tmp = malloc(len + 5);
  if (tmp == NULL)
    return;
  memcpy(tmp, s->state_path, len);
  memcpy(tmp + len, ".tmp", 5);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  int ok = f != NULL;
  if (f == NULL && fd >= 0)
    close(fd);
  if (ok) {
    fprintf(f, "# ct-sched state: task, last due time handled (seconds "
               "since the epoch)\n");
    for (size_t i = 0; i < s->nstate; i++)
      fprintf(f, "%s %.3f\n", s->state[i].name, s->state[i].last);
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
  }
  if (ok && rename(tmp, s->state_path) != 0)
    ok = 0;
  if (!ok) {
    ct_log_limited(s->r, CT_LOG_ERROR, "sched",
                   "cannot write state file %s: %s", s->state_path,
                   strerror(errno));
    unlink(tmp);
  }
  free(tmp);
}

/* Forget the state of tasks no longer configured. */
static void state_prune(ct_sched *s) {
  size_t k = 0;
  for (size_t i = 0; i < s->nstate; i++) {
    int keep = 0;
    for (task *t = s->tasks; t != NULL && !keep; t = t->next)
      keep = strcmp(t->spec.name, s->state[i].name) == 0;
    if (keep)
      s->state[k++] = s->state[i];
    else
      free(s->state[i].name);
  }
  s->nstate = k;
}

static void record_last(task *t, double wall) {
  if (t->s->state_path == NULL)
    return;
  state_set(t->s, t->spec.name, wall);
}

/* --------------------------------------------------------------- runs */

static void task_free(task *t) {
  drop_call(&t->timer);
  drop_call(&t->kick);
  ct_sched_spec_clear(&t->spec);
  free(t);
}

static void start_run(task *t, double scheduled) {
  ct_sched *s = t->s;
  ct_sched_run *run = calloc(1, sizeof *run);
  if (run == NULL) {
    t->st.failed++;
    ct_log(CT_LOG_ERROR, "sched", "task %s: out of memory starting a run",
           t->spec.name);
    return;
  }
  run->s = s;
  run->t = t;
  run->scheduled = scheduled;
  run->next = s->runs;
  if (s->runs != NULL)
    s->runs->prev = run;
  s->runs = run;
  s->running++;
  t->st.started++;
  t->st.running++;
  t->st.last_scheduled = scheduled;
  ct_log(CT_LOG_INFO, "sched", "task %s: run started", t->spec.name);
  s->o.executor.start(run, &t->spec, s->o.executor.arg);
  /* `run` may be gone: start() may have reported it done already. */
}

static void queue_push(task *t, double scheduled) {
  unsigned i = (t->qhead + t->st.queued) % CT_SCHED_QUEUE_MAX;
  t->queue[i] = scheduled;
  t->st.queued++;
}

static double queue_pop(task *t) {
  double v = t->queue[t->qhead];
  t->qhead = (t->qhead + 1) % CT_SCHED_QUEUE_MAX;
  t->st.queued--;
  return v;
}

static void kick_cb(void *arg);

static void kick(task *t) {
  if (t->kick != NULL || t->st.queued == 0 || t->s->shut)
    return;
  ct_delayed_call *c = ct_call_later(t->s->r, 0, kick_cb, t);
  if (c != NULL)
    t->kick = ct_delayed_call_ref(c);
}

static void kick_cb(void *arg) {
  task *t = arg;
  ct_delayed_call_unref(t->kick);
  t->kick = NULL;
  if (t->st.queued == 0 ||
      (t->st.running > 0 && t->spec.overlap != CT_SCHED_OVERLAP_ALLOW))
    return;
  start_run(t, queue_pop(t));
  if (t->st.running == 0 || t->spec.overlap == CT_SCHED_OVERLAP_ALLOW)
    kick(t);
}

/*
 * `batch` runs are due for `t` now (catch-up runs and the on-time one).
 * With no run in progress the first starts and the rest queue (catch-up
 * runs go one after another); otherwise the overlap policy decides.
 */
static void dispatch(task *t, unsigned batch, double scheduled) {
  if (batch == 0)
    return;
  int busy = t->st.running > 0 || t->st.queued > 0;
  if (busy && t->spec.overlap == CT_SCHED_OVERLAP_SKIP) {
    t->st.skipped += batch;
    ct_log(CT_LOG_WARN, "sched",
           "task %s: still running, %u run(s) skipped (overlap skip; %llu "
           "skipped so far)",
           t->spec.name, batch, (unsigned long long)t->st.skipped);
    return;
  }
  if (!busy || t->spec.overlap == CT_SCHED_OVERLAP_ALLOW) {
    start_run(t, scheduled);
    batch--;
  }
  for (; batch > 0; batch--) {
    if (t->st.queued >= CT_SCHED_QUEUE_MAX) {
      t->st.skipped += batch;
      ct_log(CT_LOG_WARN, "sched",
             "task %s: run queue full (%u), %u run(s) skipped", t->spec.name,
             CT_SCHED_QUEUE_MAX, batch);
      break;
    }
    queue_push(t, scheduled);
  }
  if (t->st.running == 0 || t->spec.overlap == CT_SCHED_OVERLAP_ALLOW)
    kick(t);
}

/*
 * `n` due times came up for `t`, the latest at `last` (late by
 * `lateness` seconds).  Apply misfire-grace and catch-up.  At `startup`
 * (due times that passed while the scheduler was down) the latest is on
 * time only within an explicit misfire-grace: the runs of the downtime are
 * the catch-up policy's alone.
 */
static void process_due(task *t, uint64_t n, double last, double lateness,
                        int startup) {
  const ct_sched_spec *sp = &t->spec;
  double grace = sp->misfire_grace;
  int on_time = startup ? grace >= 0 && lateness <= grace + 1e-9
                        : grace < 0 || lateness <= grace + 1e-9;
  uint64_t missed = n - (on_time ? 1 : 0);
  uint64_t extra = 0;
  if (missed > 0) {
    if (sp->catchup == CT_SCHED_CATCHUP_ONE)
      extra = on_time ? 0 : 1;
    else if (sp->catchup == CT_SCHED_CATCHUP_ALL)
      extra = missed < sp->catchup_max ? missed : sp->catchup_max;
    t->st.missed += missed - extra;
    t->st.caught_up += extra;
    if (missed - extra > 0)
      ct_log(CT_LOG_WARN, "sched",
             "task %s: %llu due time(s) missed (latest %.3fs late, "
             "misfire-grace %s, catch-up %s)",
             sp->name, (unsigned long long)(missed - extra), lateness,
             sp->misfire_grace < 0 ? "none" : "set",
             sp->catchup == CT_SCHED_CATCHUP_NONE  ? "none"
             : sp->catchup == CT_SCHED_CATCHUP_ONE ? "one"
                                                   : "all");
  }
  uint64_t batch = extra + (on_time ? 1 : 0);
  dispatch(t, (unsigned)(batch < 1000000 ? batch : 1000000), last);
}

/* ------------------------------------------------------------- timers */

static void timer_cb(void *arg);

static void arm(task *t) {
  if (!t->st.active || t->s->shut)
    return;
  double d = is_wall(t) ? t->due - wall_now(t->s) : t->due - mono_now(t->s);
  if (is_wall(t) && d > WALL_RECHECK)
    d = WALL_RECHECK;
  ct_delayed_call *c = ct_call_later(t->s->r, d, timer_cb, t);
  if (c == NULL) {
    ct_log(CT_LOG_ERROR, "sched", "task %s: cannot arm its timer",
           t->spec.name);
    return;
  }
  t->timer = ct_delayed_call_ref(c);
}

static double every_base(const task *t, uint64_t i) {
  return t->anchor + (double)i * t->spec.interval;
}

static void every_set_due(task *t) {
  t->due = every_base(t, t->idx);
  if (t->spec.jitter > 0)
    t->due += t->spec.jitter * rand_unit(t->s);
  t->st.next = t->due;
}

static void timer_cb(void *arg) {
  task *t = arg;
  ct_sched *s = t->s;
  ct_delayed_call_unref(t->timer);
  t->timer = NULL;
  switch (t->spec.kind) {
  case CT_SCHED_EVERY: {
    double now = mono_now(s);
    double extra_f = floor((now - every_base(t, t->idx)) / t->spec.interval);
    uint64_t extra = extra_f > 0 ? (uint64_t)extra_f : 0;
    double last = extra == 0 ? t->due : every_base(t, t->idx + extra);
    uint64_t last_idx = t->idx + extra;
    t->idx = last_idx + 1;
    every_set_due(t);
    record_last(t, to_wall(t, every_base(t, last_idx)));
    process_due(t, extra + 1, last, now - last, 0);
    break;
  }
  case CT_SCHED_AT:
    t->st.active = 0;
    process_due(t, 1, t->due, mono_now(s) - t->due, 0);
    break;
  case CT_SCHED_DAILY:
  case CT_SCHED_CRON: {
    double now = wall_now(s);
    if (now < t->due - DUE_EPSILON) {
      arm(t); /* the wall clock is not there yet */
      return;
    }
    uint64_t n = 1;
    double last = t->due;
    for (;;) {
      double nx = ct_sched_calendar_next(&t->spec.cal, last);
      if (nx < 0 || nx > now + DUE_EPSILON || n >= COUNT_CAP)
        break;
      last = nx;
      n++;
    }
    double next = ct_sched_calendar_next(&t->spec.cal, now + DUE_EPSILON);
    t->st.active = next >= 0;
    t->due = t->st.next = next;
    record_last(t, last);
    process_due(t, n, last, now - last, 0);
    break;
  }
  }
  state_write(s);
  arm(t);
}

/* Schedule a new task from now, with catch-up from the state file. */
static void task_begin(task *t) {
  ct_sched *s = t->s;
  const ct_sched_spec *sp = &t->spec;
  t->begun = 1;
  double wnow = wall_now(s), mnow = mono_now(s);
  state_entry *e = state_find(s, sp->name);
  int have_last = e != NULL && sp->catchup != CT_SCHED_CATCHUP_NONE;
  double last = have_last ? (e->last < wnow ? e->last : wnow) : wnow;
  t->st.active = 1;
  switch (sp->kind) {
  case CT_SCHED_EVERY: {
    /* Keep the cadence of the previous session: bases last + k*interval. */
    double k = floor((wnow - last) / sp->interval);
    t->anchor = mnow - (wnow - last);
    t->idx = (uint64_t)k + 1;
    every_set_due(t);
    if (k >= 1) {
      double dn = every_base(t, (uint64_t)k);
      process_due(t, (uint64_t)k, dn, mnow - dn, 1);
      record_last(t, last + k * sp->interval);
    } else {
      record_last(t, last);
    }
    break;
  }
  case CT_SCHED_AT:
    t->due = t->st.next = mnow + sp->delay;
    break;
  case CT_SCHED_DAILY:
  case CT_SCHED_CRON: {
    uint64_t n = 0;
    double dn = last, x = last;
    while (have_last && n < COUNT_CAP) {
      double nx = ct_sched_calendar_next(&sp->cal, x);
      if (nx < 0 || nx > wnow)
        break;
      dn = x = nx;
      n++;
    }
    if (n > 0)
      process_due(t, n, dn, wnow - dn, 1);
    record_last(t, wnow);
    double next = ct_sched_calendar_next(&sp->cal, wnow);
    t->st.active = next >= 0;
    t->due = t->st.next = next;
    break;
  }
  }
  arm(t);
}

/* ---------------------------------------------------------------- API */

ct_sched *ct_sched_new(ct_reactor *r, const ct_sched_options *opts) {
  if (r == NULL || opts == NULL || opts->executor.start == NULL)
    return NULL;
  ct_sched *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NULL;
  s->r = r;
  s->o = *opts;
  s->rng = opts->seed != 0 ? opts->seed : 0x5eedc7u;
  if (opts->state_path != NULL) {
    s->state_path = strdup(opts->state_path);
    if (s->state_path == NULL) {
      free(s);
      return NULL;
    }
    s->o.state_path = s->state_path;
    state_read(s);
  }
  return s;
}

static void task_remove(task *t) {
  ct_sched *s = t->s;
  drop_call(&t->timer);
  drop_call(&t->kick);
  t->st.active = 0;
  t->st.queued = 0;
  t->removed = 1;
  if (t->st.running == 0) {
    task_free(t);
    return;
  }
  t->next = s->retired;
  s->retired = t;
}

int ct_sched_load(ct_sched *s, ct_sched_config *cfg) {
  if (s == NULL || cfg == NULL)
    return CT_EINVAL;
  if (s->shut) {
    ct_sched_config_clear(cfg);
    return CT_ESTATE;
  }
  task *old = s->tasks, *head = NULL, **tail = &head;
  size_t kept = 0, fresh = 0, removed = 0;
  for (size_t i = 0; i < cfg->n; i++) {
    ct_sched_spec *sp = &cfg->tasks[i];
    task **pp = &old;
    while (*pp != NULL && strcmp((*pp)->spec.line, sp->line) != 0)
      pp = &(*pp)->next;
    task *t = *pp;
    if (t != NULL) {
      *pp = t->next; /* unchanged: keep timers and counters */
      t->spec.lineno = sp->lineno;
      ct_sched_spec_clear(sp);
      kept++;
    } else {
      t = calloc(1, sizeof *t);
      if (t == NULL) {
        ct_log(CT_LOG_ERROR, "sched", "out of memory loading task %s",
               sp->name);
        ct_sched_spec_clear(sp);
        continue;
      }
      t->s = s;
      t->spec = *sp;
      memset(sp, 0, sizeof *sp);
      t->due = -1;
      fresh++;
    }
    t->next = NULL;
    *tail = t;
    tail = &t->next;
  }
  ct_sched_config_clear(cfg);
  while (old != NULL) {
    task *t = old;
    old = t->next;
    ct_log(CT_LOG_INFO, "sched", "task %s: removed%s", t->spec.name,
           t->st.running ? " (its run in progress finishes)" : "");
    task_remove(t);
    removed++;
  }
  s->tasks = head;
  for (task *t = head; t != NULL; t = t->next) {
    if (!t->begun)
      task_begin(t);
  }
  state_prune(s);
  state_write(s);
  ct_log(CT_LOG_INFO, "sched",
         "config loaded: %zu task(s): %zu unchanged, %zu new or changed, %zu "
         "removed",
         kept + fresh, kept, fresh, removed);
  return 0;
}

static const task *find_task(const ct_sched *s, const char *name) {
  for (const task *t = s->tasks; t != NULL; t = t->next) {
    if (strcmp(t->spec.name, name) == 0)
      return t;
  }
  return NULL;
}

int ct_sched_task_stats(const ct_sched *s, const char *name,
                        ct_sched_stats *out) {
  const task *t = s != NULL && name != NULL ? find_task(s, name) : NULL;
  if (t == NULL)
    return CT_ENOTFOUND;
  *out = t->st;
  return 0;
}

size_t ct_sched_task_count(const ct_sched *s) {
  size_t n = 0;
  for (const task *t = s->tasks; t != NULL; t = t->next)
    n++;
  return n;
}

size_t ct_sched_running(const ct_sched *s) {
  return s->running;
}

int ct_sched_shutdown(ct_sched *s, void (*done)(void *arg), void *arg) {
  if (s == NULL)
    return CT_EINVAL;
  if (s->shut)
    return CT_ESTATE;
  s->shut = 1;
  s->done = done;
  s->done_arg = arg;
  for (task *t = s->tasks; t != NULL; t = t->next) {
    drop_call(&t->timer);
    drop_call(&t->kick);
    t->st.queued = 0;
    t->st.active = 0;
  }
  if (s->running == 0) {
    s->done = NULL;
    if (done != NULL)
      done(arg);
    return 0;
  }
  ct_log(CT_LOG_INFO, "sched", "stopping %zu run(s) in progress", s->running);
  for (ct_sched_run *run = s->runs; run != NULL;) {
    ct_sched_run *next = run->next; /* stop() may report it done at once */
    if (s->o.executor.stop != NULL)
      s->o.executor.stop(run, s->o.executor.arg);
    run = next;
  }
  return 0;
}

void ct_sched_free(ct_sched *s) {
  if (s == NULL)
    return;
  while (s->tasks != NULL) {
    task *t = s->tasks;
    s->tasks = t->next;
    task_free(t);
  }
  while (s->retired != NULL) {
    task *t = s->retired;
    s->retired = t->next;
    task_free(t);
  }
  while (s->runs != NULL) {
    ct_sched_run *run = s->runs;
    s->runs = run->next;
    free(run);
  }
  for (size_t i = 0; i < s->nstate; i++)
    free(s->state[i].name);
  free(s->state);
  free(s->state_path);
  free(s);
}

ct_reactor *ct_sched_run_reactor(const ct_sched_run *run) {
  return run->s->r;
}

const char *ct_sched_run_task(const ct_sched_run *run) {
  return run->t->spec.name;
}

double ct_sched_run_scheduled(const ct_sched_run *run) {
  return run->scheduled;
}

void ct_sched_run_set_data(ct_sched_run *run, void *data) {
  run->data = data;
}

void *ct_sched_run_data(const ct_sched_run *run) {
  return run->data;
}

void ct_sched_run_done(ct_sched_run *run, const ct_failure *f,
                       const char *output_tail) {
  ct_sched *s = run->s;
  task *t = run->t;
  if (run->prev != NULL)
    run->prev->next = run->next;
  else
    s->runs = run->next;
  if (run->next != NULL)
    run->next->prev = run->prev;
  free(run);
  s->running--;
  t->st.running--;
  if (f != NULL) {
    t->st.failed++;
    char msg[512];
    ct_failure_format(f, msg, sizeof msg);
    if (output_tail != NULL && output_tail[0] != '\0')
      ct_log(CT_LOG_ERROR, "sched", "task %s failed: %s; output tail: %s",
             t->spec.name, msg, output_tail);
    else
      ct_log(CT_LOG_ERROR, "sched", "task %s failed: %s", t->spec.name, msg);
  } else {
    t->st.succeeded++;
    ct_log(CT_LOG_INFO, "sched", "task %s: run succeeded", t->spec.name);
  }
  if (s->o.on_run_done != NULL)
    s->o.on_run_done(t->spec.name, f, s->o.arg);
  if (t->removed) {
    if (t->st.running == 0) {
      task **pp = &s->retired;
      while (*pp != NULL && *pp != t)
        pp = &(*pp)->next;
      if (*pp != NULL)
        *pp = t->next;
      task_free(t);
    }
  } else {
    kick(t);
  }
  if (s->shut && s->running == 0 && s->done != NULL) {
    void (*done)(void *) = s->done;
    s->done = NULL;
    done(s->done_arg);
  }
}
