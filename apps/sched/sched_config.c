/*
 * The config parser of ct-sched: one task per line,
 *
 *   NAME SCHEDULE [POLICY...] ACTION
 *
 * split into words as a shell would for simple cases ('single' and "double"
 * quotes, backslash escapes outside single quotes), never expanded.  The
 * grammar is in docs/sched.md.  Every error names the file, the line and
 * the problem, and the parser never reads past the text it was given.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched.h"

#define MAX_WORDS 256
#define MAX_DURATION (10.0 * 366 * 86400)

typedef struct words {
  char *w[MAX_WORDS];
  size_t n;
} words;

static void words_clear(words *ws) {
  for (size_t i = 0; i < ws->n; i++)
    free(ws->w[i]);
  ws->n = 0;
}

/* Split one line into words.  Returns NULL or a static problem text. */
static const char *split_words(const char *s, size_t len, words *ws) {
  const char *e = s + len;
  ws->n = 0;
  char *buf = malloc(len + 1);
  if (buf == NULL)
    return "out of memory";
  while (s < e) {
    while (s < e && (*s == ' ' || *s == '\t'))
      s++;
    if (s >= e)
      break;
    size_t k = 0;
    while (s < e && *s != ' ' && *s != '\t') {
      if (*s == '\'') {
        const char *q = memchr(s + 1, '\'', (size_t)(e - s - 1));
        if (q == NULL) {
          free(buf);
          return "unterminated ' quote";
        }
        memcpy(buf + k, s + 1, (size_t)(q - s - 1));
        k += (size_t)(q - s - 1);
        s = q + 1;
      } else if (*s == '"') {
        s++;
        while (s < e && *s != '"') {
          if (*s == '\\' && s + 1 < e)
            s++;
          buf[k++] = *s++;
        }
        if (s >= e) {
          free(buf);
          return "unterminated \" quote";
        }
        s++;
      } else if (*s == '\\') {
        if (s + 1 >= e) {
          free(buf);
          return "a line ends with a lone backslash";
        }
        buf[k++] = s[1];
        s += 2;
      } else {
        buf[k++] = *s++;
      }
    }
    if (ws->n == MAX_WORDS) {
      free(buf);
      return "too many words on one line (at most 256)";
    }
    char *w = malloc(k + 1);
    if (w == NULL) {
      free(buf);
      return "out of memory";
    }
    memcpy(w, buf, k);
    w[k] = '\0';
    ws->w[ws->n++] = w;
  }
  free(buf);
  return NULL;
}

/* "1h30m", "5s", "250ms", "1.5", "2d".  Returns 0 and *out, or -1. */
static int parse_duration(const char *s, double *out) {
  double total = 0;
  if (*s == '\0')
    return -1;
  while (*s != '\0') {
    if (!(*s >= '0' && *s <= '9'))
      return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || !isfinite(v) || v < 0)
      return -1;
    /* strtod accepts hex and exponents; a duration is plain decimal. */
    for (const char *p = s; p < end; p++) {
      if (!((*p >= '0' && *p <= '9') || *p == '.'))
        return -1;
    }
    s = end;
    double unit = 1;
    if (strncmp(s, "ms", 2) == 0) {
      unit = 0.001;
      s += 2;
    } else if (*s == 's') {
      s++;
    } else if (*s == 'm') {
      unit = 60;
      s++;
    } else if (*s == 'h') {
      unit = 3600;
      s++;
    } else if (*s == 'd') {
      unit = 86400;
      s++;
    } else if (*s != '\0') {
      return -1;
    }
    total += v * unit;
    if (total > MAX_DURATION)
      return -1;
  }
  *out = total;
  return 0;
}

static int valid_name(const char *s) {
  if (*s == '\0' || strlen(s) > 64)
    return 0;
  for (; *s != '\0'; s++) {
    char c = *s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
      return 0;
  }
  return 1;
}

/* Set *why to a formatted problem in `buf`. */
#define PROBLEM(...)                                                           \
  do {                                                                         \
    snprintf(buf, bufsz, __VA_ARGS__);                                         \
    return -1;                                                                 \
  } while (0)

static int parse_daily(const char *s, ct_sched_calendar *cal) {
  unsigned h, m, sec = 0;
  int n = 0;
  if (sscanf(s, "%2u:%2u%n", &h, &m, &n) != 2)
    return -1;
  if (s[n] == ':') {
    int n2 = 0;
    if (sscanf(s + n + 1, "%2u%n", &sec, &n2) != 1)
      return -1;
    n += 1 + n2;
  }
  if (s[n] != '\0' || h > 23 || m > 59 || sec > 59 || s[0] < '0' || s[0] > '9')
    return -1;
  memset(cal, 0, sizeof *cal);
  cal->minutes = (uint64_t)1 << m;
  cal->hours = (uint32_t)1 << h;
  cal->mdays = 0xfffffffeu;
  cal->months = 0x1ffe;
  cal->wdays = 0x7f;
  cal->mday_star = cal->wday_star = 1;
  cal->second = (uint8_t)sec;
  return 0;
}

static char *dup_or_null(const char *s, int *oom) {
  char *d = strdup(s);
  if (d == NULL)
    *oom = 1;
  return d;
}

/* Parse one task line's words into `t`.  Returns 0, or -1 with the problem
 * in buf (CT_ENOMEM is reported as "out of memory"). */
static int parse_task(words *ws, ct_sched_spec *t, char *buf, size_t bufsz) {
  size_t i = 0, n = ws->n;
  char **w = ws->w;
  int oom = 0;
  if (!valid_name(w[0]))
    PROBLEM("bad task name '%.64s' (letters, digits, '_', '-', '.'; at most "
            "64)",
            w[0]);
  t->name = dup_or_null(w[0], &oom);
  i = 1;
  if (i >= n)
    PROBLEM("task '%s' has no schedule", w[0]);
  const char *kind = w[i++];
  if (strcmp(kind, "every") == 0) {
    t->kind = CT_SCHED_EVERY;
    if (i >= n || parse_duration(w[i], &t->interval) != 0 ||
        t->interval < 0.001)
      PROBLEM("'every' needs an interval of at least 1ms, like 5s, 1m, 1h30m");
    i++;
    if (i < n && strcmp(w[i], "jitter") == 0) {
      i++;
      if (i >= n || parse_duration(w[i], &t->jitter) != 0)
        PROBLEM("'jitter' needs a duration, like 5s");
      if (t->jitter >= t->interval)
        PROBLEM("jitter must be less than the interval");
      i++;
    }
  } else if (strcmp(kind, "at") == 0) {
    t->kind = CT_SCHED_AT;
    if (i >= n || w[i][0] != '+' || parse_duration(w[i] + 1, &t->delay) != 0)
      PROBLEM("'at' needs a delay after loading, like +30s");
    i++;
  } else if (strcmp(kind, "daily") == 0) {
    t->kind = CT_SCHED_DAILY;
    if (i >= n || parse_daily(w[i], &t->cal) != 0)
      PROBLEM("'daily' needs a local time HH:MM or HH:MM:SS, like 03:00");
    i++;
  } else if (strcmp(kind, "cron") == 0) {
    t->kind = CT_SCHED_CRON;
    const char *why = NULL;
    if (i >= n)
      PROBLEM("'cron' needs an expression in quotes, like \"*/5 * * * *\"");
    if (ct_sched_cron_parse(w[i], &t->cal, &why) != 0)
      PROBLEM("bad cron expression \"%.100s\": %s", w[i], why);
    i++;
  } else {
    PROBLEM("unknown schedule '%.32s' (every, at, daily, cron)", kind);
  }
  t->misfire_grace = -1;
  t->kill_grace = CT_SCHED_KILL_GRACE_DEFAULT;
  t->catchup_max = CT_SCHED_CATCHUP_MAX_DEFAULT;
  for (;;) {
    if (i >= n)
      PROBLEM("task '%s' has no action (run, rpc, send)", t->name);
    const char *opt = w[i];
    if (strcmp(opt, "run") == 0 || strcmp(opt, "rpc") == 0 ||
        strcmp(opt, "send") == 0)
      break;
    i++;
    if (i >= n)
      PROBLEM("'%.32s' needs a value", opt);
    const char *v = w[i++];
    if (strcmp(opt, "overlap") == 0) {
      if (strcmp(v, "skip") == 0)
        t->overlap = CT_SCHED_OVERLAP_SKIP;
      else if (strcmp(v, "queue") == 0)
        t->overlap = CT_SCHED_OVERLAP_QUEUE;
      else if (strcmp(v, "allow") == 0)
        t->overlap = CT_SCHED_OVERLAP_ALLOW;
      else
        PROBLEM("overlap must be skip, queue or allow, not '%.32s'", v);
    } else if (strcmp(opt, "misfire-grace") == 0) {
      if (parse_duration(v, &t->misfire_grace) != 0)
        PROBLEM("misfire-grace needs a duration, like 30s");
    } else if (strcmp(opt, "timeout") == 0) {
      if (parse_duration(v, &t->timeout) != 0 || t->timeout <= 0)
        PROBLEM("timeout needs a duration above 0, like 10m");
    } else if (strcmp(opt, "kill-grace") == 0) {
      if (parse_duration(v, &t->kill_grace) != 0)
        PROBLEM("kill-grace needs a duration, like 10s");
    } else if (strcmp(opt, "catch-up") == 0) {
      if (strcmp(v, "none") == 0) {
        t->catchup = CT_SCHED_CATCHUP_NONE;
      } else if (strcmp(v, "one") == 0) {
        t->catchup = CT_SCHED_CATCHUP_ONE;
      } else if (strcmp(v, "all") == 0) {
        t->catchup = CT_SCHED_CATCHUP_ALL;
      } else if (strcmp(v, "all(max") == 0 && i < n) {
        /* "all(max N)": two words */
        char *end;
        errno = 0;
        unsigned long m = strtoul(w[i], &end, 10);
        if (errno != 0 || end == w[i] || strcmp(end, ")") != 0 || m < 1 ||
            m > 100000 || w[i][0] < '0' || w[i][0] > '9')
          PROBLEM("catch-up all(max N) needs N from 1 to 100000");
        i++;
        t->catchup = CT_SCHED_CATCHUP_ALL;
        t->catchup_max = (unsigned)m;
      } else {
        PROBLEM("catch-up must be none, one, all or all(max N), not '%.32s'",
                v);
      }
    } else {
      PROBLEM("unknown policy '%.32s' (overlap, misfire-grace, catch-up, "
              "timeout, kill-grace) or action (run, rpc, send)",
              opt);
    }
  }
  if (t->kind == CT_SCHED_AT && t->catchup != CT_SCHED_CATCHUP_NONE)
    PROBLEM("catch-up does not apply to 'at' (it runs once per load)");
  const char *act = w[i++];
  if (strcmp(act, "run") == 0) {
    t->action = CT_SCHED_RUN;
    if (i >= n)
      PROBLEM("'run' needs a command");
    t->argv = calloc(n - i + 1, sizeof *t->argv);
    if (t->argv == NULL)
      oom = 1;
    for (size_t k = 0; t->argv != NULL && i < n; i++, k++)
      t->argv[k] = dup_or_null(w[i], &oom);
  } else if (strcmp(act, "rpc") == 0) {
    t->action = CT_SCHED_RPC;
    if (n - i < 2 || n - i > 3)
      PROBLEM("usage: rpc ENDPOINT METHOD ['JSON params']");
    t->endpoint = dup_or_null(w[i++], &oom);
    t->method = dup_or_null(w[i++], &oom);
    if (i < n) {
      json_error_t je;
      json_t *j = json_loads(w[i], 0, &je);
      int ok = j != NULL && (json_is_array(j) || json_is_object(j));
      json_decref(j);
      if (!ok)
        PROBLEM("rpc params must be a JSON array or object: %.80s",
                j == NULL ? je.text : "not an array or object");
      t->params = dup_or_null(w[i++], &oom);
    }
  } else {
    t->action = CT_SCHED_SEND;
    if (n - i < 1 || n - i > 3)
      PROBLEM("usage: send ENDPOINT ['JSON header' ['content']]");
    t->endpoint = dup_or_null(w[i++], &oom);
    if (i < n) {
      json_error_t je;
      json_t *j = json_loads(w[i], 0, &je);
      int ok = json_is_object(j);
      const char *key;
      json_t *val;
      if (ok) {
        json_object_foreach(j, key, val) {
          if (!json_is_string(val) && !json_is_integer(val))
            ok = 0;
          if (strcmp(key, "content-length") == 0)
            ok = 0;
        }
      }
      json_decref(j);
      if (!ok)
        PROBLEM("send header must be a JSON object of strings and integers "
                "(without content-length): %.80s",
                j == NULL ? je.text : w[i]);
      t->header = dup_or_null(w[i++], &oom);
    }
    if (i < n)
      t->content = dup_or_null(w[i++], &oom);
  }
  if (oom)
    PROBLEM("out of memory");
  return 0;
}

void ct_sched_spec_clear(ct_sched_spec *s) {
  if (s == NULL)
    return;
  free(s->name);
  free(s->line);
  if (s->argv != NULL) {
    for (char **a = s->argv; *a != NULL; a++)
      free(*a);
    free(s->argv);
  }
  free(s->endpoint);
  free(s->method);
  free(s->params);
  free(s->header);
  free(s->content);
  memset(s, 0, sizeof *s);
}

void ct_sched_config_clear(ct_sched_config *c) {
  if (c == NULL)
    return;
  for (size_t i = 0; i < c->n; i++)
    ct_sched_spec_clear(&c->tasks[i]);
  free(c->tasks);
  c->tasks = NULL;
  c->n = 0;
}

int ct_sched_config_parse(const char *text, size_t len, const char *filename,
                          ct_sched_config *out, ct_failure **err) {
  const char *fname = filename != NULL ? filename : "config";
  ct_sched_config cfg = {NULL, 0};
  size_t cap = 0;
  int lineno = 0;
  char buf[256];
  int rc = 0;
  if (out != NULL)
    *out = (ct_sched_config){NULL, 0};
  if (err != NULL)
    *err = NULL;
  if (text == NULL && len > 0)
    return CT_EINVAL;
  if (len > 0 && memchr(text, '\0', len) != NULL) {
    const char *z = memchr(text, '\0', len);
    int ln = 1;
    for (const char *p = text; p < z; p++)
      ln += *p == '\n';
    if (err != NULL)
      *err = ct_failure_new(CT_EINVAL, "%s:%d: a NUL byte in the config", fname,
                            ln);
    return CT_EINVAL;
  }
  const char *p = text, *end = text + len;
  words ws = {{0}, 0};
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl != NULL ? nl : end;
    lineno++;
    const char *s = p;
    p = nl != NULL ? nl + 1 : end;
    while (s < le && (*s == ' ' || *s == '\t'))
      s++;
    const char *e = le;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
      e--;
    if (s == e || *s == '#')
      continue;
    const char *why = split_words(s, (size_t)(e - s), &ws);
    if (why != NULL) {
      snprintf(buf, sizeof buf, "%s", why);
      rc = strcmp(why, "out of memory") == 0 ? CT_ENOMEM : CT_EINVAL;
      goto fail;
    }
    if (cfg.n == cap) {
      size_t ncap = cap ? cap * 2 : 8;
      ct_sched_spec *nt = realloc(cfg.tasks, ncap * sizeof *nt);
      if (nt == NULL) {
        snprintf(buf, sizeof buf, "out of memory");
        rc = CT_ENOMEM;
        goto fail;
      }
      cfg.tasks = nt;
      cap = ncap;
    }
    ct_sched_spec *t = &cfg.tasks[cfg.n];
    memset(t, 0, sizeof *t);
    cfg.n++;
    t->lineno = lineno;
    t->line = malloc((size_t)(e - s) + 1); /* the text is not NUL-terminated */
    if (t->line != NULL) {
      memcpy(t->line, s, (size_t)(e - s));
      t->line[e - s] = '\0';
    }
    if (t->line == NULL || parse_task(&ws, t, buf, sizeof buf) != 0) {
      if (t->line == NULL)
        snprintf(buf, sizeof buf, "out of memory");
      rc = strcmp(buf, "out of memory") == 0 ? CT_ENOMEM : CT_EINVAL;
      goto fail;
    }
    for (size_t k = 0; k + 1 < cfg.n; k++) {
      if (strcmp(cfg.tasks[k].name, t->name) == 0) {
        snprintf(buf, sizeof buf, "task '%s' is already defined on line %d",
                 t->name, cfg.tasks[k].lineno);
        rc = CT_EINVAL;
        goto fail;
      }
    }
    words_clear(&ws);
  }
  if (out != NULL)
    *out = cfg;
  else
    ct_sched_config_clear(&cfg);
  return 0;
fail:
  words_clear(&ws);
  ct_sched_config_clear(&cfg);
  if (err != NULL)
    *err = ct_failure_new(rc, "%s:%d: %s", fname, lineno, buf);
  return rc;
}

int ct_sched_config_load(const char *path, ct_sched_config *out,
                         ct_failure **err) {
  if (err != NULL)
    *err = NULL;
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    int e = -errno;
    if (err != NULL)
      *err = ct_failure_new(e, "%s: %s", path, ct_strerror(e));
    return e;
  }
  size_t cap = 4096, len = 0;
  char *text = malloc(cap);
  int rc = 0;
  while (text != NULL) {
    size_t got = fread(text + len, 1, cap - len, f);
    len += got;
    if (got == 0)
      break;
    if (len == cap) {
      if (cap >= 16u << 20) {
        rc = CT_ETOOBIG;
        break;
      }
      char *nt = realloc(text, cap * 2);
      if (nt == NULL) {
        free(text);
        text = NULL;
        break;
      }
      text = nt;
      cap *= 2;
    }
  }
  int rerr = ferror(f);
  fclose(f);
  if (text == NULL || rerr || rc != 0) {
    free(text);
    rc = text == NULL ? CT_ENOMEM : rc != 0 ? rc : -EIO;
    if (err != NULL)
      *err = ct_failure_new(rc, "%s: cannot read the config: %s", path,
                            ct_strerror(rc));
    return rc;
  }
  rc = ct_sched_config_parse(text, len, path, out, err);
  free(text);
  return rc;
}
