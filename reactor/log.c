/*
 * Structured logging.
 *
 * The observer list is the library's one piece of process-wide state (see
 * log.h for why).  Emitting takes the mutex only to walk the list; messages
 * are formatted once, into a stack buffer when they fit.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>

#include "ctwist/log.h"

struct ct_log_observer {
  ct_log_level min_level;
  ct_log_observer_cb cb;
  void *arg;
  struct ct_log_observer *next;
};

static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct ct_log_observer *log_observers;
static ct_log_level log_default_level = CT_LOG_INFO;
/* Set while this thread runs observers: an observer that logs must not take
 * the (non-recursive) mutex again, and must not change the list under the
 * walk. */
static _Thread_local int log_in_dispatch;

static const char *const level_names[] = {"debug", "info", "warn", "error",
                                          "critical"};

const char *ct_log_level_name(ct_log_level level) {
  if ((unsigned)level > CT_LOG_CRITICAL)
    return "unknown";
  return level_names[level];
}

int ct_log_level_parse(const char *name, ct_log_level *out) {
  if (name == NULL || out == NULL)
    return CT_EINVAL;
  for (int i = 0; i <= CT_LOG_CRITICAL; i++) {
    if (strcasecmp(name, level_names[i]) == 0) {
      *out = (ct_log_level)i;
      return 0;
    }
  }
  if (strcasecmp(name, "warning") == 0) {
    *out = CT_LOG_WARN;
    return 0;
  }
  return CT_EINVAL;
}

ct_log_observer *ct_log_add_observer(ct_log_level min_level,
                                     ct_log_observer_cb cb, void *arg) {
  if (cb == NULL || log_in_dispatch)
    return NULL;
  ct_log_observer *obs = malloc(sizeof(*obs));
  if (obs == NULL)
    return NULL;
  obs->min_level = min_level;
  obs->cb = cb;
  obs->arg = arg;
  pthread_mutex_lock(&log_mutex);
  /* Append, so observers see events in registration order. */
  ct_log_observer **pp = &log_observers;
  while (*pp != NULL)
    pp = &(*pp)->next;
  obs->next = NULL;
  *pp = obs;
  pthread_mutex_unlock(&log_mutex);
  return obs;
}

void ct_log_remove_observer(ct_log_observer *obs) {
  if (obs == NULL || log_in_dispatch)
    return; /* misuse from inside an observer: documented as ignored */
  pthread_mutex_lock(&log_mutex);
  for (ct_log_observer **pp = &log_observers; *pp != NULL; pp = &(*pp)->next) {
    if (*pp == obs) {
      *pp = obs->next;
      break;
    }
  }
  pthread_mutex_unlock(&log_mutex);
  free(obs);
}

void ct_log_set_default_level(ct_log_level level) {
  pthread_mutex_lock(&log_mutex);
  log_default_level = level;
  pthread_mutex_unlock(&log_mutex);
}

static void format_time(double t, char *buf, size_t len) {
  time_t secs = (time_t)t;
  struct tm tm;
  gmtime_r(&secs, &tm);
  size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, len - n, ".%03dZ", (int)((t - (double)secs) * 1000.0));
}

static const char *base_name(const char *file) {
  const char *slash = file != NULL ? strrchr(file, '/') : NULL;
  return slash != NULL ? slash + 1 : file;
}

void ct_log_text_observer(const ct_log_event *ev, void *arg) {
  FILE *out = arg != NULL ? (FILE *)arg : stderr;
  char when[40];
  format_time(ev->time, when, sizeof(when));
  if (ev->file != NULL)
    fprintf(out, "%s [%s] %s: %s (%s:%d)\n", when, ct_log_level_name(ev->level),
            ev->module, ev->message, base_name(ev->file), ev->line);
  else
    fprintf(out, "%s [%s] %s: %s\n", when, ct_log_level_name(ev->level),
            ev->module, ev->message);
  fflush(out);
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0 if it is invalid
 * (overlong forms, surrogates and values above U+10FFFF included). */
static size_t utf8_len(const unsigned char *p) {
  unsigned c = p[0];
  size_t n;
  unsigned min;
  if (c < 0x80)
    return 1;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    min = 0x80;
    c &= 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    min = 0x800;
    c &= 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    min = 0x10000;
    c &= 0x07;
  } else {
    return 0;
  }
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80) /* also stops at the terminating NUL */
      return 0;
    c = (c << 6) | (p[i] & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
    return 0;
  return n;
}

/* Writes `s` as a JSON string literal.  Invalid UTF-8 bytes become U+FFFD,
 * so that every line is valid JSON whatever a message contains. */
static void json_string(FILE *out, const char *s) {
  fputc('"', out);
  const unsigned char *p = (const unsigned char *)(s ? s : "");
  while (*p) {
    switch (*p) {
    case '"':
      fputs("\\\"", out);
      break;
    case '\\':
      fputs("\\\\", out);
      break;
    case '\n':
      fputs("\\n", out);
      break;
    case '\r':
      fputs("\\r", out);
      break;
    case '\t':
      fputs("\\t", out);
      break;
    default:
      if (*p < 0x20) {
        fprintf(out, "\\u%04x", *p);
      } else if (*p >= 0x80) {
        size_t n = utf8_len(p);
        if (n == 0) {
          fputs("\\ufffd", out);
        } else {
          fwrite(p, 1, n, out);
          p += n;
          continue;
        }
      } else {
        fputc(*p, out);
      }
    }
    p++;
  }
  fputc('"', out);
}

void ct_log_json_observer(const ct_log_event *ev, void *arg) {
  FILE *out = arg != NULL ? (FILE *)arg : stderr;
  char when[40];
  format_time(ev->time, when, sizeof(when));
  fprintf(out, "{\"time\":\"%s\",\"level\":\"%s\",\"module\":", when,
          ct_log_level_name(ev->level));
  json_string(out, ev->module);
  fputs(",\"message\":", out);
  json_string(out, ev->message);
  if (ev->file != NULL) {
    fputs(",\"file\":", out);
    json_string(out, base_name(ev->file));
    fprintf(out, ",\"line\":%d", ev->line);
  }
  fputs("}\n", out);
  fflush(out);
}

static void dispatch(const ct_log_event *ev) {
  if (log_in_dispatch) {
    /* An observer logged: taking the mutex again would deadlock, and
     * calling observers again could recurse forever.  stderr it is. */
    ct_log_text_observer(ev, NULL);
    return;
  }
  pthread_mutex_lock(&log_mutex);
  log_in_dispatch = 1;
  if (log_observers == NULL) {
    if (ev->level >= log_default_level)
      ct_log_text_observer(ev, NULL);
  } else {
    for (ct_log_observer *o = log_observers; o != NULL; o = o->next)
      if (ev->level >= o->min_level)
        o->cb(ev, o->arg);
  }
  log_in_dispatch = 0;
  pthread_mutex_unlock(&log_mutex);
}

void ct_log_emitv(ct_log_level level, const char *module, const char *file,
                  int line, const char *fmt, va_list ap) {
  char small[512];
  char *msg = small;
  va_list copy;
  va_copy(copy, ap);
  int n = vsnprintf(small, sizeof(small), fmt, ap);
  if (n >= (int)sizeof(small)) {
    msg = malloc((size_t)n + 1);
    if (msg != NULL)
      vsnprintf(msg, (size_t)n + 1, fmt, copy);
    else
      msg = small; /* truncated is better than nothing */
  }
  va_end(copy);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ct_log_event ev = {level, module != NULL ? module : "ctwist",
                     msg,   file,
                     line,  (double)ts.tv_sec + (double)ts.tv_nsec / 1e9};
  dispatch(&ev);
  if (msg != small)
    free(msg);
}

void ct_log_emit(ct_log_level level, const char *module, const char *file,
                 int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ct_log_emitv(level, module, file, line, fmt, ap);
  va_end(ap);
}

void ct_log_failure(ct_log_level level, const char *module, const char *what,
                    const ct_failure *f) {
  char small[1024];
  size_t need = ct_failure_format(f, small, sizeof(small));
  char *text = small;
  if (need >= sizeof(small)) {
    text = malloc(need + 1);
    if (text != NULL)
      ct_failure_format(f, text, need + 1);
    else
      text = small;
  }
  ct_log_emit(level, module, f != NULL ? f->file : NULL,
              f != NULL ? f->line : 0, "%s: %s", what, text);
  if (text != small)
    free(text);
}

static void libevent_log_cb(int severity, const char *msg) {
  ct_log_level level;
  switch (severity) {
  case EVENT_LOG_DEBUG:
    level = CT_LOG_DEBUG;
    break;
  case EVENT_LOG_MSG:
    level = CT_LOG_INFO;
    break;
  case EVENT_LOG_WARN:
    level = CT_LOG_WARN;
    break;
  default:
    level = CT_LOG_ERROR;
    break;
  }
  ct_log_emit(level, "libevent", NULL, 0, "%s", msg);
}

void ct_log_capture_libevent(void) {
  event_set_log_callback(libevent_log_cb);
}
