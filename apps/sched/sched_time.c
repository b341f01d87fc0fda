/*
 * Schedule computation: cron expressions and the next local time a
 * calendar matches.
 *
 * Candidates are enumerated on the "naive" local calendar -- year, month,
 * day, hour, minute counted as if every day had 24 hours -- and only then
 * mapped to real instants with mktime()/localtime_r().  That keeps the
 * calendar arithmetic simple and puts every DST question in one place,
 * naive_to_epoch():
 *   - a naive time that exists once maps to its instant;
 *   - one that exists twice (the repeated hour of a fall-back change) maps
 *     to its first occurrence, and also to its second when the calendar's
 *     hour field is '*' (an hourly job keeps running through the repeated
 *     hour, as cronie does for wildcard jobs);
 *   - one that does not exist (the hour skipped by a spring-forward change)
 *     maps to the change itself, the first instant after it: every skipped
 *     time of a day coalesces into one run right after the change.
 */
#define _DEFAULT_SOURCE
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sched.h"

/* --------------------------------------------------------- naive calendar */

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* A naive local time in seconds ("local seconds since 1970 as if UTC"). */
typedef int64_t naive_t;

static naive_t naive_of_tm(const struct tm *tm) {
  return days_from_civil((int64_t)tm->tm_year + 1900, (unsigned)tm->tm_mon + 1,
                         (unsigned)tm->tm_mday) *
             86400 +
         tm->tm_hour * 3600 + tm->tm_min * 60 + tm->tm_sec;
}

static naive_t naive_of_epoch(time_t t) {
  struct tm tm;
  if (localtime_r(&t, &tm) == NULL)
    return (naive_t)t;
  return naive_of_tm(&tm);
}

static void tm_of_naive(naive_t n, struct tm *tm) {
  int64_t days = n >= 0 ? n / 86400 : -((-n + 86399) / 86400);
  int64_t secs = n - days * 86400;
  int64_t y;
  unsigned m, d;
  civil_from_days(days, &y, &m, &d);
  memset(tm, 0, sizeof *tm);
  tm->tm_year = (int)(y - 1900);
  tm->tm_mon = (int)m - 1;
  tm->tm_mday = (int)d;
  tm->tm_hour = (int)(secs / 3600);
  tm->tm_min = (int)(secs / 60 % 60);
  tm->tm_sec = (int)(secs % 60);
}

/*
 * The instants whose local time is `n`: returns 1 or 2 (ambiguous, the
 * earlier first), or 0 with out[0] the first instant after the gap `n`
 * falls into.
 */
static int naive_to_epoch(naive_t n, time_t out[2]) {
  int found = 0;
  for (int dst = 0; dst <= 1; dst++) {
    struct tm tm;
    tm_of_naive(n, &tm);
    tm.tm_isdst = dst;
    time_t t = mktime(&tm);
    if (t == (time_t)-1 && naive_of_epoch(-1) != n)
      continue;
    if (naive_of_epoch(t) != n)
      continue;
    if (found == 1 && out[0] == t)
      continue;
    out[found++] = t;
  }
  if (found == 2 && out[1] < out[0]) {
    time_t x = out[0];
    out[0] = out[1];
    out[1] = x;
  }
  if (found > 0)
    return found;
  /* A gap: the first instant whose local time is past `n`.  UTC offsets
   * lie within +-15 h, and local time only moves forward there. */
  time_t lo = (time_t)(n - 15 * 3600), hi = (time_t)(n + 15 * 3600);
  while (lo < hi) {
    time_t mid = lo + (hi - lo) / 2;
    if (naive_of_epoch(mid) >= n)
      hi = mid;
    else
      lo = mid + 1;
  }
  out[0] = lo;
  return 0;
}

/* ------------------------------------------------------- calendar search */

static int wday_of_days(int64_t days) {
  int64_t w = (days + 4) % 7; /* 1970-01-01 was a Thursday */
  return (int)(w < 0 ? w + 7 : w);
}

static int day_matches(const ct_sched_calendar *c, int64_t days, unsigned m,
                       unsigned d) {
  if (!(c->months >> m & 1u))
    return 0;
  int md = (c->mdays >> d & 1u) != 0;
  int wd = (c->wdays >> wday_of_days(days) & 1u) != 0;
  if (!c->mday_star && !c->wday_star)
    return md || wd; /* cron's OR rule */
  return md && wd;
}

/* The first naive minute (plus the calendar's second) matching `c` that is
 * >= `from`, searching at most `limit_days`; -1 when none. */
static int first_match_from(const ct_sched_calendar *c, naive_t from,
                            int64_t limit_days, naive_t *out) {
  int64_t days = from >= 0 ? from / 86400 : -((-from + 86399) / 86400);
  int64_t sod = from - days * 86400; /* seconds of the first day */
  for (int64_t i = 0; i <= limit_days; i++, days++, sod = 0) {
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    if (!day_matches(c, days, m, d))
      continue;
    for (int h = (int)(sod / 3600); h < 24; h++) {
      if (!(c->hours >> h & 1u))
        continue;
      for (int mi = 0; mi < 60; mi++) {
        if (!(c->minutes >> mi & 1u))
          continue;
        int64_t s = (int64_t)h * 3600 + mi * 60 + c->second;
        if (s < sod)
          continue;
        *out = days * 86400 + s;
        return 0;
      }
    }
  }
  return -1;
}

double ct_sched_calendar_next(const ct_sched_calendar *cal, double after) {
  if (cal == NULL || isnan(after))
    return -1;
  time_t t = (time_t)floor(after);
  /* Look back over a fall-back change ahead: the second occurrences of the
   * repeated hour come after `t` although their naive times lie before
   * naive(t). */
  naive_t nt = naive_of_epoch(t);
  int64_t off_now = nt - (int64_t)t;
  int64_t off_later = naive_of_epoch(t + 4 * 3600) - (int64_t)(t + 4 * 3600);
  naive_t from = nt - (off_now > off_later ? off_now - off_later : 0);
  double best = -1;
  for (int guard = 0; guard < 100000; guard++) {
    naive_t n;
    if (first_match_from(cal, from, 366 * 30, &n) != 0)
      return best;
    time_t e[2];
    int k = naive_to_epoch(n, e);
    if (best >= 0 && (double)e[0] >= best)
      return best; /* first occurrences only grow from here */
    int take = k == 2 && cal->hour_star ? 2 : 1;
    for (int i = 0; i < take; i++) {
      if ((double)e[i] > after && (best < 0 || (double)e[i] < best))
        best = (double)e[i];
    }
    from = n + 1;
  }
  return best;
}

size_t ct_sched_fire_times(const ct_sched_spec *s, double wall_now, double *out,
                           size_t n) {
  size_t k = 0;
  switch (s->kind) {
  case CT_SCHED_EVERY:
    for (; k < n; k++)
      out[k] = s->interval * (double)(k + 1);
    break;
  case CT_SCHED_AT:
    if (n > 0)
      out[k++] = s->delay;
    break;
  case CT_SCHED_DAILY:
  case CT_SCHED_CRON: {
    double t = wall_now;
    for (; k < n; k++) {
      t = ct_sched_calendar_next(&s->cal, t);
      if (t < 0)
        break;
      out[k] = t;
    }
    break;
  }
  }
  return k;
}

/* ------------------------------------------------------------ cron parse */

typedef struct cron_field {
  int lo, hi;
  const char *const *names; /* index = value - names_base */
  int names_base;
} cron_field;

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may",
                                          "jun", "jul", "aug", "sep", "oct",
                                          "nov", "dec", NULL};
static const char *const day_names[] = {"sun", "mon", "tue", "wed",
                                        "thu", "fri", "sat", NULL};

static const cron_field fields[5] = {
    {0, 59, NULL, 0},        {0, 23, NULL, 0},     {1, 31, NULL, 0},
    {1, 12, month_names, 1}, {0, 7, day_names, 0},
};

static int cron_value(const char **p, const cron_field *f, int *out) {
  const char *s = *p;
  if (isdigit((unsigned char)*s)) {
    long v = 0;
    while (isdigit((unsigned char)*s)) {
      v = v * 10 + (*s++ - '0');
      if (v > 1000)
        return -1;
    }
    *p = s;
    *out = (int)v;
    return v < f->lo || v > f->hi ? -1 : 0;
  }
  if (f->names != NULL) {
    for (int i = 0; f->names[i] != NULL; i++) {
      if (strncasecmp(s, f->names[i], 3) == 0) {
        *p = s + 3;
        *out = i + f->names_base;
        return 0;
      }
    }
  }
  return -1;
}

/* Parse one field (text [s, e)) into a bit set. */
static int cron_field_parse(const char *s, const char *e, const cron_field *f,
                            uint64_t *bits, const char **why) {
  *bits = 0;
  while (s < e) {
    const char *comma = memchr(s, ',', (size_t)(e - s));
    const char *end = comma != NULL ? comma : e;
    int lo, hi, step = 1;
    const char *p = s;
    if (*p == '*') {
      lo = f->lo;
      hi = f->hi;
      p++;
    } else {
      if (cron_value(&p, f, &lo) != 0) {
        *why = "a value is out of range or not a number or name";
        return -1;
      }
      hi = lo;
      if (p < end && *p == '-') {
        p++;
        if (cron_value(&p, f, &hi) != 0) {
          *why = "a range end is out of range or not a number or name";
          return -1;
        }
        if (hi < lo) {
          *why = "a range runs backwards";
          return -1;
        }
      }
    }
    if (p < end && *p == '/') {
      p++;
      long v = 0;
      if (p >= end || !isdigit((unsigned char)*p)) {
        *why = "a step is not a number";
        return -1;
      }
      while (p < end && isdigit((unsigned char)*p)) {
        v = v * 10 + (*p++ - '0');
        if (v > 1000)
          break;
      }
      if (v < 1 || v > f->hi) {
        *why = "a step is out of range";
        return -1;
      }
      step = (int)v;
      if (lo == hi && s[0] != '*')
        hi = f->hi; /* "a/n" means a through the maximum, every n */
    }
    if (p != end) {
      *why = "unexpected text in a field";
      return -1;
    }
    for (int v = lo; v <= hi; v += step)
      *bits |= (uint64_t)1 << v;
    s = comma != NULL ? comma + 1 : e;
    if (comma != NULL && s == e) {
      *why = "a list ends with ','";
      return -1;
    }
  }
  if (*bits == 0) {
    *why = "an empty field";
    return -1;
  }
  return 0;
}

static const struct {
  const char *name;
  const char *expr;
} macros[] = {
    {"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"},
    {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

int ct_sched_cron_parse(const char *expr, ct_sched_calendar *cal,
                        const char **why) {
  const char *dummy;
  if (why == NULL)
    why = &dummy;
  if (expr == NULL || cal == NULL) {
    *why = "no expression";
    return CT_EINVAL;
  }
  if (expr[0] == '@') {
    for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++) {
      if (strcasecmp(expr, macros[i].name) == 0)
        return ct_sched_cron_parse(macros[i].expr, cal, why);
    }
    *why = "unknown macro (@hourly, @daily, @midnight, @weekly, @monthly, "
           "@yearly, @annually)";
    return CT_EINVAL;
  }
  memset(cal, 0, sizeof *cal);
  const char *p = expr;
  uint64_t bits[5];
  int star[5];
  for (int i = 0; i < 5; i++) {
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p == '\0') {
      *why = "a cron expression needs 5 fields: minute hour day-of-month "
             "month day-of-week";
      return CT_EINVAL;
    }
    const char *s = p;
    while (*p != '\0' && *p != ' ' && *p != '\t')
      p++;
    star[i] = *s == '*';
    if (cron_field_parse(s, p, &fields[i], &bits[i], why) != 0)
      return CT_EINVAL;
  }
  while (*p == ' ' || *p == '\t')
    p++;
  if (*p != '\0') {
    *why = "a cron expression has 5 fields, this one has more";
    return CT_EINVAL;
  }
  cal->minutes = bits[0];
  cal->hours = (uint32_t)bits[1];
  cal->mdays = (uint32_t)bits[2];
  cal->months = (uint16_t)bits[3];
  uint64_t w = bits[4];
  if (w >> 7 & 1u)
    w |= 1u; /* 7 is Sunday too */
  cal->wdays = (uint8_t)(w & 0x7f);
  cal->mday_star = (uint8_t)star[2];
  cal->wday_star = (uint8_t)star[3 + 1];
  cal->hour_star = (uint8_t)(star[1] && cal->hours == 0xffffffu);
  /* A calendar that never matches (February 30) is an error now rather
   * than a task that silently never runs.  Any matching day recurs within
   * 28 years (the Gregorian weekday cycle, leap days included). */
  naive_t n;
  if (first_match_from(cal, days_from_civil(2000, 1, 1) * 86400, 366 * 29,
                       &n) != 0) {
    *why = "the expression never matches a date";
    return CT_EINVAL;
  }
  return 0;
}
