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

/* Code points that are valid UTF-8 but must not reach a terminal or a log
 * viewer raw: the C1 controls (U+0080-U+009F; U+009B is a CSI) and the
 * invisible direction and line-separator marks that can make a line read
 * differently from what it contains. */
static int unsafe_code_point(unsigned cp) {
  return (cp >= 0x80 && cp <= 0x9F) || cp == 0x200E || cp == 0x200F ||
         (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) ||
         cp == 0xFEFF;
}

static unsigned utf8_decode(const unsigned char *p, size_t n) {
  static const unsigned char first_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
  unsigned cp = p[0] & first_mask[n];
  for (size_t i = 1; i < n; i++)
    cp = (cp << 6) | (p[i] & 0x3F);
  return cp;
}

/* Bytes needed to write byte sequence p escaped (0: printable, copy). */
static size_t escaped_len(const unsigned char *p, size_t *consumed) {
  *consumed = 1;
  if (*p >= 0x20 && *p < 0x7F)
    return 0;
  if (*p == '\n' || *p == '\r' || *p == '\t')
    return 2;
  if (*p < 0x80)
    return 4; /* \xNN */
  size_t n = utf8_len(p);
  if (n == 0)
    return 4;
  *consumed = n;
  return unsafe_code_point(utf8_decode(p, n)) ? 6 : 0; /* \uNNNN */
}

/*
 * The one place where a message becomes safe to show: every byte that is
 * not printable -- control characters (ESC included), DEL, invalid UTF-8,
 * C1 controls and direction marks -- is written as a visible escape
 * (\n, \r, \t, \xNN, \uNNNN), so that bytes from a peer can neither drive the
 * terminal that shows the log nor forge a second log line.  Printable
 * ASCII and valid UTF-8 text are kept.  Returns `msg` itself when nothing
 * needs escaping, else a string in `small` (if it fits) or malloc'd (NULL
 * if memory runs out; the caller then logs a placeholder).
 */
static char *escape_message(const char *msg, char *small, size_t small_len) {
  const unsigned char *p = (const unsigned char *)msg;
  size_t need = 0, extra = 0;
  while (*p) {
    size_t used, e = escaped_len(p, &used);
    need += e != 0 ? e : used;
    extra += e;
    p += used;
  }
  if (extra == 0)
    return (char *)msg;
  char *out = need < small_len ? small : malloc(need + 1);
  if (out == NULL)
    return NULL;
  char *o = out;
  for (p = (const unsigned char *)msg; *p;) {
    size_t used, e = escaped_len(p, &used);
    if (e == 0) {
      memcpy(o, p, used);
      o += used;
    } else if (*p == '\n' || *p == '\r' || *p == '\t') {
      *o++ = '\\';
      *o++ = *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't';
    } else if (e == 4) {
      o += sprintf(o, "\\x%02x", *p);
    } else {
      o += sprintf(o, "\\u%04x", utf8_decode(p, used));
    }
    p += used;
  }
  *o = '\0';
  return out;
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
  char safe_small[1024];
  char *safe = escape_message(msg, safe_small, sizeof(safe_small));
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ct_log_event ev = {level,
                     module != NULL ? module : "ctwist",
                     safe != NULL ? safe : "(message dropped: out of memory)",
                     file,
                     line,
                     (double)ts.tv_sec + (double)ts.tv_nsec / 1e9};
  dispatch(&ev);
  if (safe != msg && safe != safe_small)
    free(safe);
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

/*
 * A failure chain on one line for the log: "[domain] NAME: message; caused
 * by: [domain] NAME: message (file.c:12)".  The head's location is left
 * out because the event carries it (the observers print it once); the
 * causes keep theirs.  Returns the length needed, like snprintf.
 */
static size_t failure_line(const ct_failure *f, char *buf, size_t len) {
  size_t need = 0;
  if (len > 0)
    buf[0] = '\0';
  for (int depth = 0; f != NULL; f = f->cause, depth++) {
    const char *msg = f->message != NULL && f->message[0] != '\0'
                          ? f->message
                          : ct_strerror(f->code);
    char *out = need < len ? buf + need : NULL;
    size_t room = need < len ? len - need : 0;
    int n;
    if (depth == 0)
      n = snprintf(out, room, "[%s] %s: %s", f->domain, ct_err_name(f->code),
                   msg);
    else
      n = snprintf(out, room, "; caused by: [%s] %s: %s (%s:%d)", f->domain,
                   ct_err_name(f->code), msg,
                   f->file != NULL ? base_name(f->file) : "?", f->line);
    if (n > 0)
      need += (size_t)n;
  }
  return need;
}

void ct_log_failure(ct_log_level level, const char *module, const char *what,
                    const ct_failure *f) {
  char small[1024];
  size_t need = failure_line(f, small, sizeof(small));
  char *text = small;
  if (need >= sizeof(small)) {
    text = malloc(need + 1);
    if (text != NULL)
      failure_line(f, text, need + 1);
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
