/*
 * Rate-limited logging: one warning per source per window, then a count.
 *
 * A peer can make a server log at will (every bad frame, every refused
 * connection), so the places that log on a peer's behalf go through
 * ct_log_limited().  The source is the call site (file and line).  Each
 * source has a window of `interval` seconds on the reactor clock: the first
 * `burst` events of a window are logged, the rest only counted, and when
 * the window closes one line says "... and N more like this in the last
 * 10 s".  Windows are timed with ct_call_later, so a fake clock drives them
 * in tests like every other timer.
 *
 * The table lives in the reactor (no process-wide state): one entry per
 * call site that has logged, which is bounded by the program's code.
 */
#include <stdlib.h>
#include <string.h>

#include "reactor/impl.h"

#define LIMIT_DEFAULT_INTERVAL 10.0
#define LIMIT_DEFAULT_BURST 1u
#define LIMIT_MAX_SOURCES 256 /* beyond this, sources are logged unlimited */

typedef struct limit_source {
  const char *file; /* the call site: the key */
  int line;
  ct_log_level level; /* of the last event, for the summary */
  const char *module;
  int64_t window_end; /* ns on the reactor clock; 0: no window open */
  unsigned logged;    /* events logged in this window */
  unsigned long suppressed;
  ct_delayed_call *timer; /* closes a window that suppressed something */
  struct ct__log_limits *owner;
} limit_source;

struct ct__log_limits {
  ct_reactor *r;
  int64_t interval_ns;
  unsigned burst;
  size_t n;
  limit_source src[LIMIT_MAX_SOURCES];
};

static struct ct__log_limits *limits_of(ct_reactor *r) {
  if (r->log_limits == NULL) {
    struct ct__log_limits *l = calloc(1, sizeof(*l));
    if (l == NULL)
      return NULL;
    l->r = r;
    l->interval_ns = ct__seconds_to_ns(LIMIT_DEFAULT_INTERVAL);
    l->burst = LIMIT_DEFAULT_BURST;
    r->log_limits = l;
  }
  return r->log_limits;
}

int ct_reactor_set_log_limit(ct_reactor *r, double interval, unsigned burst) {
  if (r == NULL || !(interval > 0) || burst == 0)
    return CT_EINVAL;
  struct ct__log_limits *l = limits_of(r);
  if (l == NULL)
    return CT_ENOMEM;
  l->interval_ns = ct__seconds_to_ns(interval);
  l->burst = burst;
  return 0;
}

static void summarise(limit_source *s) {
  struct ct__log_limits *l = s->owner;
  if (s->suppressed > 0)
    ct_log_emit(s->level, s->module, s->file, s->line,
                "... and %lu more like this in the last %g s", s->suppressed,
                (double)l->interval_ns / (double)CT_NS_PER_SEC);
  s->suppressed = 0;
  s->logged = 0;
  s->window_end = 0;
}

static void window_closed(void *arg) {
  limit_source *s = arg;
  s->timer = NULL;
  summarise(s);
}

/* The source for this call site, or NULL (table full, out of memory). */
static limit_source *source_of(ct_reactor *r, const char *file, int line) {
  struct ct__log_limits *l = limits_of(r);
  if (l == NULL)
    return NULL;
  for (size_t i = 0; i < l->n; i++) {
    limit_source *s = &l->src[i];
    if (s->line == line &&
        (s->file == file || (s->file && file && strcmp(s->file, file) == 0)))
      return s;
  }
  if (l->n == LIMIT_MAX_SOURCES)
    return NULL;
  limit_source *s = &l->src[l->n++];
  memset(s, 0, sizeof(*s));
  s->file = file;
  s->line = line;
  s->owner = l;
  return s;
}

/* 1 if the event at this call site may be logged now; else it is counted
 * and a summary is (or already was) scheduled for the window's end. */
static int admit(ct_reactor *r, ct_log_level level, const char *module,
                 const char *file, int line) {
  if (r == NULL)
    return 1;
  limit_source *s = source_of(r, file, line);
  if (s == NULL)
    return 1;
  int64_t now = ct__reactor_now_ns(r);
  if (s->window_end == 0 || now >= s->window_end) {
    if (s->timer != NULL) { /* the timer is due but has not run yet */
      ct_delayed_call_cancel(s->timer);
      s->timer = NULL;
    }
    summarise(s);
    s->window_end = now + s->owner->interval_ns;
  }
  s->level = level;
  s->module = module;
  if (s->logged < s->owner->burst) {
    s->logged++;
    return 1;
  }
  if (s->suppressed++ == 0)
    s->timer = ct__call_later_ns(r, s->window_end - now, window_closed, s);
  return 0;
}

void ct_log_emit_limited(ct_reactor *r, ct_log_level level, const char *module,
                         const char *file, int line, const char *fmt, ...) {
  if (!admit(r, level, module, file, line))
    return;
  va_list ap;
  va_start(ap, fmt);
  ct_log_emitv(level, module, file, line, fmt, ap);
  va_end(ap);
}

void ct_log_failure_limited_at(const char *file, int line, ct_reactor *r,
                               ct_log_level level, const char *module,
                               const char *what, const ct_failure *f) {
  if (admit(r, level, module, file, line))
    ct_log_failure(level, module, what, f);
}

void ct__log_limits_free(ct_reactor *r) {
  struct ct__log_limits *l = r->log_limits;
  if (l == NULL)
    return;
  /* Counts still open are reported, not lost with the reactor. */
  for (size_t i = 0; i < l->n; i++) {
    limit_source *s = &l->src[i];
    if (s->timer != NULL) {
      ct_delayed_call_cancel(s->timer);
      s->timer = NULL;
    }
    summarise(s);
  }
  free(l);
  r->log_limits = NULL;
}
