/*
 * ct-sched's core through its API (apps/sched/sched.h): the config parser,
 * the schedule computation (DST days included, TZ=America/New_York), and
 * the scheduler's policies, all under ctwist's fake clock with a fake wall
 * clock (wall = base + fake seconds + offset; the offset steps the wall
 * clock or simulates a suspend).  The timeout and failure-log tests run
 * real child processes; the rpc and send tests real loopback servers.
 */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctwist/ctwist.h"
#include "sched.h"

/* ------------------------------------------------------------- fixture */

static ct_clock *C;
static ct_reactor *R;
static double WALL_BASE, WALL_OFFSET;

static double fake_wall(void *arg) {
  (void)arg;
  return WALL_BASE + ct_clock_seconds(C) + WALL_OFFSET;
}

/* Local time -> epoch in the test's zone. */
static double local(int y, int mo, int d, int h, int mi, int isdst) {
  struct tm tm = {0};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_isdst = isdst;
  return (double)mktime(&tm);
}

static void setup(void) {
  setenv("TZ", "America/New_York", 1);
  tzset();
  C = ct_clock_new();
  R = ct_reactor_new_with_clock(C);
  WALL_BASE = local(2026, 6, 15, 0, 0, -1);
  WALL_OFFSET = 0;
  ct_log_set_default_level(CT_LOG_ERROR);
}

static void teardown(void) {
  ct_reactor_free(R);
  ct_clock_free(C);
}

TestSuite(sched, .init = setup, .fini = teardown, .timeout = 60);

/* A fake executor recording runs; runs stay open until completed. */
#define MAX_RUNS 4096
typedef struct rec_run {
  char task[32];
  double scheduled, wall, mono;
  ct_sched_run *run; /* NULL once done */
} rec_run;

typedef struct recorder {
  rec_run runs[MAX_RUNS];
  size_t n;
  int auto_done; /* complete each run from inside start() */
  int done_ok, done_failed;
} recorder;

static void rec_start(ct_sched_run *run, const ct_sched_spec *spec, void *arg) {
  recorder *r = arg;
  cr_assert_lt(r->n, MAX_RUNS);
  rec_run *x = &r->runs[r->n++];
  snprintf(x->task, sizeof x->task, "%s", spec->name);
  x->scheduled = ct_sched_run_scheduled(run);
  x->wall = fake_wall(NULL);
  x->mono = ct_clock_seconds(C);
  x->run = run;
  if (r->auto_done) {
    x->run = NULL;
    ct_sched_run_done(run, NULL, NULL);
  }
}

static void rec_stop(ct_sched_run *run, void *arg) {
  recorder *r = arg;
  for (size_t i = 0; i < r->n; i++) {
    if (r->runs[i].run == run) {
      r->runs[i].run = NULL;
      ct_sched_run_done(run, NULL, NULL);
      return;
    }
  }
}

static void complete(recorder *r, size_t i, int ok) {
  cr_assert_lt(i, r->n);
  cr_assert_not_null(r->runs[i].run);
  ct_sched_run *run = r->runs[i].run;
  r->runs[i].run = NULL;
  if (ok) {
    ct_sched_run_done(run, NULL, NULL);
  } else {
    ct_failure *f = ct_failure_new(CT_EPROCESS_EXIT, "exited with code 1");
    ct_sched_run_done(run, f, "tail");
    ct_failure_free(f);
  }
}

static ct_sched *new_sched(recorder *rec, const char *state) {
  ct_sched_options o;
  memset(&o, 0, sizeof o);
  o.wall.now = fake_wall;
  o.executor.start = rec_start;
  o.executor.stop = rec_stop;
  o.executor.arg = rec;
  o.state_path = state;
  o.seed = 42;
  ct_sched *s = ct_sched_new(R, &o);
  cr_assert_not_null(s);
  return s;
}

static void load(ct_sched *s, const char *text) {
  ct_sched_config cfg;
  ct_failure *err = NULL;
  int rc = ct_sched_config_parse(text, strlen(text), "t.conf", &cfg, &err);
  cr_assert_eq(rc, 0, "parse: %s", err ? err->message : "?");
  cr_assert_eq(ct_sched_load(s, &cfg), 0);
}

/* Advance the fake clock in whole-second steps, so every timer fires at
 * its exact time (advance() jumps first, then runs what is due). */
static void run_for(double seconds) {
  for (double t = 0; t < seconds; t += 1)
    ct_clock_advance(C, 1);
}

static size_t count_task(const recorder *r, const char *task) {
  size_t n = 0;
  for (size_t i = 0; i < r->n; i++)
    n += strcmp(r->runs[i].task, task) == 0;
  return n;
}

static ct_sched_stats stats(ct_sched *s, const char *name) {
  ct_sched_stats st;
  cr_assert_eq(ct_sched_task_stats(s, name, &st), 0, "no task %s", name);
  return st;
}

static void finish(ct_sched *s, recorder *rec) {
  for (size_t i = 0; i < rec->n; i++) {
    if (rec->runs[i].run != NULL)
      complete(rec, i, 1);
  }
  ct_sched_free(s);
}

/* -------------------------------------------------------------- parser */

static ct_failure *parse_err(const char *text) {
  ct_sched_config cfg;
  ct_failure *err = NULL;
  int rc = ct_sched_config_parse(text, strlen(text), "bad.conf", &cfg, &err);
  cr_assert_neq(rc, 0, "accepted: %s", text);
  cr_assert_not_null(err);
  cr_assert_eq(cfg.n, 0);
  return err;
}

static void expect_err(const char *text, const char *where, const char *what) {
  ct_failure *err = parse_err(text);
  cr_expect(strstr(err->message, where) != NULL, "'%s' lacks '%s'",
            err->message, where);
  cr_expect(strstr(err->message, what) != NULL, "'%s' lacks '%s'", err->message,
            what);
  ct_failure_free(err);
}

Test(sched, parse_every_form) {
  const char *text =
      "# comment\n"
      "\n"
      "  tick   every 5s run /bin/echo \"hello world\" 'a b' c\\ d\n"
      "jit every 1m jitter 5s overlap queue misfire-grace 30s run true\n"
      "once at +30s timeout 1m30s kill-grace 2s run sh -c 'exit 0'\n"
      "night daily 03:00 catch-up one run backup\n"
      "cr cron \"*/5 * * * *\" catch-up all(max 5) overlap allow run x\n"
      "mac cron @hourly catch-up all run y\n"
      "call every 1h rpc tcp:host=127.0.0.1:port=7000 add '[1, 2]'\n"
      "ping every 10s send unix:path=/tmp/s.sock '{\"type\": \"ping\", "
      "\"n\": 1}' body\r\n";
  ct_sched_config cfg;
  ct_failure *err = NULL;
  cr_assert_eq(ct_sched_config_parse(text, strlen(text), "t", &cfg, &err), 0,
               "%s", err ? err->message : "");
  cr_assert_eq(cfg.n, 8);
  ct_sched_spec *t = cfg.tasks;
  cr_expect_str_eq(t[0].name, "tick");
  cr_expect_eq(t[0].lineno, 3);
  cr_expect_eq(t[0].kind, CT_SCHED_EVERY);
  cr_expect_eq(t[0].interval, 5);
  cr_expect_str_eq(t[0].argv[1], "hello world");
  cr_expect_str_eq(t[0].argv[2], "a b");
  cr_expect_str_eq(t[0].argv[3], "c d");
  cr_expect_null(t[0].argv[4]);
  cr_expect_eq(t[0].overlap, CT_SCHED_OVERLAP_SKIP);
  cr_expect_lt(t[0].misfire_grace, 0);
  cr_expect_eq(t[0].catchup, CT_SCHED_CATCHUP_NONE);
  cr_expect_eq(t[1].interval, 60);
  cr_expect_eq(t[1].jitter, 5);
  cr_expect_eq(t[1].overlap, CT_SCHED_OVERLAP_QUEUE);
  cr_expect_eq(t[1].misfire_grace, 30);
  cr_expect_eq(t[2].kind, CT_SCHED_AT);
  cr_expect_eq(t[2].delay, 30);
  cr_expect_eq(t[2].timeout, 90);
  cr_expect_eq(t[2].kill_grace, 2);
  cr_expect_eq(t[3].kind, CT_SCHED_DAILY);
  cr_expect_eq(t[3].cal.hours, 1u << 3);
  cr_expect_eq(t[3].cal.minutes, 1u);
  cr_expect_eq(t[3].catchup, CT_SCHED_CATCHUP_ONE);
  cr_expect_eq(t[4].catchup, CT_SCHED_CATCHUP_ALL);
  cr_expect_eq(t[4].catchup_max, 5);
  cr_expect_eq(t[4].overlap, CT_SCHED_OVERLAP_ALLOW);
  cr_expect_eq(t[5].catchup_max, CT_SCHED_CATCHUP_MAX_DEFAULT);
  cr_expect_eq(t[6].action, CT_SCHED_RPC);
  cr_expect_str_eq(t[6].method, "add");
  cr_expect_str_eq(t[6].params, "[1, 2]");
  cr_expect_eq(t[7].action, CT_SCHED_SEND);
  cr_expect_str_eq(t[7].content, "body");
  cr_expect_str_eq(t[7].line, "ping every 10s send unix:path=/tmp/s.sock "
                              "'{\"type\": \"ping\", \"n\": 1}' body");
  ct_sched_config_clear(&cfg);
}

Test(sched, parse_errors_name_file_line_and_problem) {
  expect_err("a every 5s run x\nb evry 5s run x\n",
             "bad.conf:2:", "unknown schedule 'evry'");
  expect_err("a every 5s run x\na every 6s run y\n",
             "bad.conf:2:", "already defined on line 1");
  expect_err("a every 0s run x\n", "bad.conf:1:", "interval");
  expect_err("a every 5s jitter 6s run x\n", ":1:", "less than the interval");
  expect_err("a every 5s\n", ":1:", "no action");
  expect_err("a every 5s run\n", ":1:", "needs a command");
  expect_err("a every 5s overlap maybe run x\n", ":1:", "skip, queue or allow");
  expect_err("a every 5s catch-up some run x\n", ":1:", "catch-up must be");
  expect_err("a every 5s catch-up all(max 0) run x\n", ":1:", "all(max N)");
  expect_err("a every 5s frobnicate 1 run x\n", ":1:", "unknown policy");
  expect_err("a daily 25:00 run x\n", ":1:", "HH:MM");
  expect_err("a cron \"*/5 * * *\" run x\n", ":1:", "5 fields");
  expect_err("a cron \"61 * * * *\" run x\n", ":1:", "out of range");
  expect_err("a cron \"0 0 30 2 *\" run x\n", ":1:", "never matches");
  expect_err("a cron \"5-1 * * * *\" run x\n", ":1:", "backwards");
  expect_err("a cron \"*/0 * * * *\" run x\n", ":1:", "step");
  expect_err("a cron @often run x\n", ":1:", "unknown macro");
  expect_err("a at 30s run x\n", ":1:", "+30s");
  expect_err("a at +30s catch-up one run x\n", ":1:", "does not apply");
  expect_err("a every 5s run \"unterminated\n", ":1:", "unterminated");
  expect_err("b@d every 5s run x\n", ":1:", "bad task name");
  expect_err("a every 5s rpc tcp:host=h:port=1\n", ":1:", "usage: rpc");
  expect_err("a every 5s rpc tcp:host=h:port=1 m '{bad'\n",
             ":1:", "JSON array or object");
  expect_err("a every 5s send tcp:host=h:port=1 '[1]'\n", ":1:", "JSON object");
  expect_err("a every 5s timeout 0 run x\n", ":1:", "timeout");
  expect_err("a every 1x run x\n", ":1:", "interval");
}

Test(sched, parse_rejects_nul_bytes) {
  const char text[] = "a every 5s run x\nb every\0 5s run y\n";
  ct_sched_config cfg;
  ct_failure *err = NULL;
  cr_assert_eq(
      ct_sched_config_parse(text, sizeof text - 1, "n.conf", &cfg, &err),
      CT_EINVAL);
  cr_expect(strstr(err->message, "n.conf:2: a NUL byte") != NULL, "%s",
            err->message);
  ct_failure_free(err);
}

Test(sched, config_load_names_a_missing_file) {
  ct_sched_config cfg;
  ct_failure *err = NULL;
  cr_assert_eq(ct_sched_config_load("/nonexistent/sched.conf", &cfg, &err),
               CT_ENOENT);
  cr_expect(strstr(err->message, "/nonexistent/sched.conf") != NULL);
  ct_failure_free(err);
}

/* ------------------------------------------------------------ calendar */

static double next_of(const char *expr, double after) {
  ct_sched_calendar cal;
  const char *why = NULL;
  cr_assert_eq(ct_sched_cron_parse(expr, &cal, &why), 0, "%s: %s", expr, why);
  return ct_sched_calendar_next(&cal, after);
}

Test(sched, cron_fields_names_steps_lists) {
  double t0 = local(2026, 6, 15, 0, 0, -1); /* a Monday */
  cr_expect_eq(next_of("*/5 * * * *", t0), local(2026, 6, 15, 0, 5, -1));
  cr_expect_eq(next_of("7-9/2 * * * *", t0 + 7 * 60),
               local(2026, 6, 15, 0, 9, -1));
  cr_expect_eq(next_of("0 9-17 * * mon-fri", t0), local(2026, 6, 15, 9, 0, -1));
  cr_expect_eq(next_of("0 0 * * SUN", t0), local(2026, 6, 21, 0, 0, -1));
  cr_expect_eq(next_of("0 0 * * 7", t0), local(2026, 6, 21, 0, 0, -1));
  cr_expect_eq(next_of("15 14 1 * *", t0), local(2026, 7, 1, 14, 15, -1));
  cr_expect_eq(next_of("0 0 1 jan,jul *", t0), local(2026, 7, 1, 0, 0, -1));
  cr_expect_eq(next_of("0 12 29 2 *", t0), local(2028, 2, 29, 12, 0, -1));
  cr_expect_eq(next_of("30 4 1,15 * *", t0), local(2026, 6, 15, 4, 30, -1));
  cr_expect_eq(next_of("5/20 * * * *", t0), local(2026, 6, 15, 0, 5, -1));
  cr_expect_eq(next_of("5/20 * * * *", t0 + 5 * 60),
               local(2026, 6, 15, 0, 25, -1));
  cr_expect_eq(next_of("@monthly", t0), local(2026, 7, 1, 0, 0, -1));
  cr_expect_eq(next_of("@weekly", t0), local(2026, 6, 21, 0, 0, -1));
  cr_expect_eq(next_of("@yearly", t0), local(2027, 1, 1, 0, 0, -1));
}

Test(sched, cron_day_of_month_or_day_of_week) {
  /* Both restricted: the 13th OR any Friday (Vixie cron's rule). */
  double t0 = local(2026, 6, 15, 0, 0, -1);
  cr_expect_eq(next_of("0 0 13 * fri", t0), local(2026, 6, 19, 0, 0, -1));
  cr_expect_eq(next_of("0 0 13 * fri", local(2026, 7, 10, 1, 0, -1)),
               local(2026, 7, 13, 0, 0, -1));
  /* One of them '*': AND (here: only Fridays, or only the 13th). */
  cr_expect_eq(next_of("0 0 * * fri", local(2026, 7, 10, 1, 0, -1)),
               local(2026, 7, 17, 0, 0, -1));
  cr_expect_eq(next_of("0 0 13 * *", t0), local(2026, 7, 13, 0, 0, -1));
  /* A step in the day-of-month field still counts as '*'. */
  cr_expect_eq(next_of("0 0 */2 * sat", t0), local(2026, 6, 27, 0, 0, -1));
  cr_expect_eq(next_of("0 0 1-31/2 * sat", t0), local(2026, 6, 17, 0, 0, -1));
}

Test(sched, dst_spring_forward) {
  /* 2026-03-08: 02:00 EST -> 03:00 EDT in New York. */
  double day = local(2026, 3, 8, 0, 0, -1);
  double change = local(2026, 3, 8, 3, 0, 1);
  cr_assert_eq(change - day, 2 * 3600);
  /* A daily 02:30 does not exist that day: it runs at the change. */
  cr_expect_eq(next_of("30 2 * * *", day), change);
  cr_expect_eq(next_of("30 2 * * *", change), local(2026, 3, 9, 2, 30, -1));
  /* Every skipped time coalesces into one run at the change. */
  cr_expect_eq(next_of("*/15 * * * *", local(2026, 3, 8, 1, 45, 0)), change);
  cr_expect_eq(next_of("*/15 * * * *", change), change + 15 * 60);
  /* An hourly job fires 23 times that day. */
  ct_sched_calendar cal;
  cr_assert_eq(ct_sched_cron_parse("0 * * * *", &cal, NULL), 0);
  int n = 0;
  double end = local(2026, 3, 9, 0, 0, -1);
  for (double t = ct_sched_calendar_next(&cal, day - 1); t < end;
       t = ct_sched_calendar_next(&cal, t))
    n++;
  cr_expect_eq(n, 23);
}

Test(sched, dst_fall_back) {
  /* 2026-11-01: 02:00 EDT -> 01:00 EST: 01:00-01:59 happens twice. */
  double first = local(2026, 11, 1, 1, 30, 1);  /* 01:30 EDT */
  double second = local(2026, 11, 1, 1, 30, 0); /* 01:30 EST */
  cr_assert_eq(second - first, 3600);
  double day = local(2026, 11, 1, 0, 0, -1);
  /* A fixed-hour job runs once, at the first occurrence. */
  cr_expect_eq(next_of("30 1 * * *", day), first);
  cr_expect_eq(next_of("30 1 * * *", first), local(2026, 11, 2, 1, 30, -1));
  /* An hourly ('*' hour) job runs in both occurrences. */
  cr_expect_eq(next_of("30 * * * *", day + 3600), first);
  cr_expect_eq(next_of("30 * * * *", first), second);
  cr_expect_eq(next_of("30 * * * *", second), second + 3600);
  ct_sched_calendar cal;
  cr_assert_eq(ct_sched_cron_parse("0 * * * *", &cal, NULL), 0);
  int n = 0;
  double end = local(2026, 11, 2, 0, 0, -1);
  for (double t = ct_sched_calendar_next(&cal, day - 1); t < end;
       t = ct_sched_calendar_next(&cal, t))
    n++;
  cr_expect_eq(n, 25);
}

Test(sched, fire_times_for_dry_run) {
  const char *text = "a every 5s run x\n"
                     "b at +30s run x\n"
                     "c daily 03:00 run x\n";
  ct_sched_config cfg;
  cr_assert_eq(ct_sched_config_parse(text, strlen(text), "t", &cfg, NULL), 0);
  double t[10];
  cr_assert_eq(ct_sched_fire_times(&cfg.tasks[0], 0, t, 10), 10);
  cr_expect_eq(t[0], 5);
  cr_expect_eq(t[9], 50);
  cr_assert_eq(ct_sched_fire_times(&cfg.tasks[1], 0, t, 10), 1);
  cr_expect_eq(t[0], 30);
  cr_assert_eq(ct_sched_fire_times(&cfg.tasks[2], WALL_BASE, t, 10), 10);
  cr_expect_eq(t[0], local(2026, 6, 15, 3, 0, -1));
  cr_expect_eq(t[9], local(2026, 6, 24, 3, 0, -1));
  ct_sched_config_clear(&cfg);
}

/* ------------------------------------------------- a day, simulated */

Test(sched, a_day_in_milliseconds) {
  recorder *rec = calloc(1, sizeof *rec);
  rec->auto_done = 1;
  ct_sched *s = new_sched(rec, NULL);
  load(s, "five every 5m run x\n"
          "night daily 03:00 run x\n"
          "quarter cron \"*/15 * * * *\" run x\n"
          "office cron \"30 9-17/4 * * mon-fri\" run x\n"
          "once at +30s run x\n");
  run_for(86400);
  cr_assert_eq(count_task(rec, "five"), 288);
  cr_assert_eq(count_task(rec, "night"), 1);
  cr_assert_eq(count_task(rec, "quarter"), 96);
  cr_assert_eq(count_task(rec, "office"), 3); /* 09:30, 13:30, 17:30 */
  cr_assert_eq(count_task(rec, "once"), 1);
  size_t five = 0, quarter = 0;
  for (size_t i = 0; i < rec->n; i++) {
    rec_run *x = &rec->runs[i];
    if (strcmp(x->task, "five") == 0) {
      five++;
      cr_expect_eq(x->scheduled, 300.0 * (double)five);
      cr_expect_eq(x->mono, 300.0 * (double)five);
    } else if (strcmp(x->task, "quarter") == 0) {
      quarter++;
      cr_expect_eq(x->scheduled, WALL_BASE + 900.0 * (double)quarter);
      cr_expect_eq(x->wall, x->scheduled);
    } else if (strcmp(x->task, "night") == 0) {
      cr_expect_eq(x->scheduled, local(2026, 6, 15, 3, 0, -1));
      cr_expect_eq(x->wall, x->scheduled);
    } else if (strcmp(x->task, "office") == 0) {
      cr_expect(x->scheduled == local(2026, 6, 15, 9, 30, -1) ||
                x->scheduled == local(2026, 6, 15, 13, 30, -1) ||
                x->scheduled == local(2026, 6, 15, 17, 30, -1));
    } else {
      cr_expect_eq(x->mono, 30);
    }
  }
  ct_sched_stats st = stats(s, "five");
  cr_expect_eq(st.started, 288);
  cr_expect_eq(st.succeeded, 288);
  cr_expect_eq(st.next, 86700);
  st = stats(s, "once");
  cr_expect_eq(st.active, 0);
  finish(s, rec);
  free(rec);
}

/* Simulate a DST day from its local midnight: a daily task at `daily`
 * (expected once, at `night_at`) and an hourly cron (`hours` runs). */
static void simulate_dst_day(int m, int d, const char *daily, int hours,
                             double night_at) {
  WALL_BASE = local(2026, m, d, 0, 0, -1);
  recorder *rec = calloc(1, sizeof *rec);
  rec->auto_done = 1;
  ct_sched *s = new_sched(rec, NULL);
  char conf[128];
  snprintf(conf, sizeof conf,
           "night daily %s run x\nhourly cron \"0 * * * *\" run x\n", daily);
  load(s, conf);
  run_for(hours * 3600.0); /* the day is `hours` long */
  cr_assert_eq(count_task(rec, "night"), 1);
  cr_assert_eq(count_task(rec, "hourly"), hours);
  for (size_t i = 0; i < rec->n; i++) {
    if (strcmp(rec->runs[i].task, "night") == 0) {
      cr_expect_eq(rec->runs[i].scheduled, night_at);
      cr_expect_eq(rec->runs[i].wall, rec->runs[i].scheduled);
    }
  }
  finish(s, rec);
  free(rec);
}

Test(sched, a_spring_forward_day_simulated) {
  /* 02:30 does not exist: it runs at the change, 03:00 EDT. */
  simulate_dst_day(3, 8, "02:30", 23, local(2026, 3, 8, 3, 0, 1));
}

Test(sched, a_fall_back_day_simulated) {
  /* 01:30 happens twice: it runs at the first, 01:30 EDT. */
  simulate_dst_day(11, 1, "01:30", 25, local(2026, 11, 1, 1, 30, 1));
}

Test(sched, jitter_within_bounds_and_reproducible) {
  double first[100];
  for (int pass = 0; pass < 2; pass++) {
    recorder *rec = calloc(1, sizeof *rec);
    rec->auto_done = 1;
    ct_sched *s = new_sched(rec, NULL); /* seed 42 each time */
    double t0 = ct_clock_seconds(C);
    load(s, "j every 10s jitter 3s run x\n");
    run_for(1004);
    ct_sched_free(s);
    cr_assert_eq(rec->n, 100);
    int distinct = 0;
    for (size_t k = 0; k < 100; k++) {
      double base = t0 + 10.0 * (double)(k + 1);
      double off = rec->runs[k].scheduled - base;
      cr_expect(off >= 0 && off <= 3, "run %zu at +%g", k, off);
      /* whole-second steps: the run starts at the next whole second */
      cr_expect_geq(rec->runs[k].mono, rec->runs[k].scheduled);
      cr_expect_lt(rec->runs[k].mono, rec->runs[k].scheduled + 1);
      if (pass == 0)
        first[k] = off;
      else
        cr_expect(fabs(off - first[k]) < 1e-6,
                  "not reproducible with the same seed");
      distinct += k > 0 && off != first[k - 1];
    }
    cr_expect_gt(distinct, 50, "jitter looks constant");
    free(rec);
  }
}

/* ------------------------------------------------------------ policies */

Test(sched, overlap_skip_counts_and_keeps_the_cadence) {
  recorder *rec = calloc(1, sizeof *rec);
  ct_sched *s = new_sched(rec, NULL);
  load(s, "slow every 10s overlap skip run x\n");
  run_for(35);
  ct_sched_stats st = stats(s, "slow");
  cr_expect_eq(st.started, 1);
  cr_expect_eq(st.skipped, 2); /* due at 20 and 30 */
  cr_expect_eq(st.running, 1);
  cr_expect_eq(st.next, 40); /* a skipped run still advances the schedule */
  complete(rec, 0, 1);
  run_for(5);
  st = stats(s, "slow");
  cr_expect_eq(st.started, 2);
  cr_expect_eq(rec->runs[1].mono, 40);
  finish(s, rec);
  free(rec);
}

Test(sched, overlap_queue_runs_after) {
  recorder *rec = calloc(1, sizeof *rec);
  ct_sched *s = new_sched(rec, NULL);
  load(s, "slow every 10s overlap queue run x\n");
  run_for(35);
  ct_sched_stats st = stats(s, "slow");
  cr_expect_eq(st.started, 1);
  cr_expect_eq(st.queued, 2);
  complete(rec, 0, 0); /* a failure: the next still runs */
  ct_clock_advance(C, 0);
  st = stats(s, "slow");
  cr_expect_eq(st.started, 2);
  cr_expect_eq(st.queued, 1);
  cr_expect_eq(st.failed, 1);
  cr_expect_eq(rec->runs[1].scheduled, 20); /* the run queued at 20 */
  cr_expect_eq(rec->runs[1].mono, 35);
  complete(rec, 1, 1);
  ct_clock_advance(C, 0);
  cr_expect_eq(rec->runs[2].scheduled, 30);
  finish(s, rec);
  free(rec);
}

Test(sched, overlap_allow_runs_concurrently) {
  recorder *rec = calloc(1, sizeof *rec);
  ct_sched *s = new_sched(rec, NULL);
  load(s, "slow every 10s overlap allow run x\n");
  run_for(35);
  ct_sched_stats st = stats(s, "slow");
  cr_expect_eq(st.started, 3);
  cr_expect_eq(st.running, 3);
  cr_expect_eq(st.skipped, 0);
  cr_expect_eq(ct_sched_running(s), 3);
  finish(s, rec);
  free(rec);
}

Test(sched, misfire_grace_on_a_late_interval) {
  recorder *rec = calloc(1, sizeof *rec);
  rec->auto_done = 1;
  ct_sched *s = new_sched(rec, NULL);
  load(s, "strict every 10s misfire-grace 3s run x\n"
          "lenient every 10s misfire-grace 10s run x\n"
          "loose every 10s run x\n");
  /* The loop is blocked for 25 s: due times 10 and 20 pass unnoticed. */
  ct_clock_advance(C, 25);
  ct_sched_stats st = stats(s, "strict");
  cr_expect_eq(st.started, 0); /* 20 is 5 s late, past 3 s */
  cr_expect_eq(st.missed, 2);
  st = stats(s, "lenient");
  cr_expect_eq(st.started, 1); /* 20 runs late; 10 is missed */
  cr_expect_eq(st.missed, 1);
  st = stats(s, "loose");
  cr_expect_eq(st.started, 1); /* no grace: the latest always runs */
  cr_expect_eq(st.missed, 1);
  cr_expect_eq(st.next, 30);
  run_for(5);
  cr_expect_eq(stats(s, "strict").started, 1); /* back on time at 30 */
  finish(s, rec);
  free(rec);
}

Test(sched, misfire_and_catch_up_after_a_suspend) {
  recorder *rec = calloc(1, sizeof *rec);
  rec->auto_done = 1;
  ct_sched *s = new_sched(rec, NULL);
  load(s,
       "none cron \"* * * * *\" misfire-grace 5s run x\n"
       "one cron \"* * * * *\" misfire-grace 5s catch-up one run x\n"
       "all cron \"* * * * *\" misfire-grace 5s catch-up all(max 4) run x\n");
  run_for(30);
  /* The machine sleeps 10 min 10 s: the wall clock jumps, the monotonic
   * clock does not.  The next wake-up sees 00:01 .. 00:11 due, the latest
   * 10 s late. */
  WALL_OFFSET = 610;
  run_for(30);
  ct_sched_stats st = stats(s, "none");
  cr_expect_eq(st.started, 0);
  cr_expect_eq(st.missed, 11);
  st = stats(s, "one");
  cr_expect_eq(st.started, 1);
  cr_expect_eq(st.caught_up, 1);
  cr_expect_eq(st.missed, 10);
  ct_clock_advance(C, 0);
  st = stats(s, "all");
  cr_expect_eq(st.caught_up, 4);
  cr_expect_eq(st.missed, 7);
  cr_expect_eq(st.started, 4); /* one after another */
  cr_expect_eq(st.next, WALL_BASE + 12 * 60);
  finish(s, rec);
  free(rec);
}

static char *tmp_state(void) {
  char *p = strdup("/tmp/ct-sched-state-XXXXXX");
  int fd = mkstemp(p);
  cr_assert_geq(fd, 0);
  close(fd);
  unlink(p);
  return p;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f, "no %s", path);
  static char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

Test(sched, catch_up_after_downtime_from_the_state_file) {
  char *state = tmp_state();
  const char *conf = "hourly cron \"0 * * * *\" catch-up all(max 3) run x\n"
                     "daily daily 06:00 catch-up one run x\n"
                     "tick every 1h catch-up one run x\n"
                     "plain cron \"0 * * * *\" run x\n";
  recorder *rec = calloc(1, sizeof *rec);
  rec->auto_done = 1;
  ct_sched *s = new_sched(rec, state);
  load(s, conf);
  run_for(2 * 3600 + 1800); /* up until 02:30 */
  cr_expect_eq(count_task(rec, "hourly"), 2);
  char want[128];
  snprintf(want, sizeof want, "hourly %.3f\n", local(2026, 6, 15, 2, 0, -1));
  cr_expect(strstr(slurp(state), want) != NULL, "state: %s", slurp(state));
  struct stat sb;
  cr_expect_eq(stat(state, &sb), 0);
  ct_sched_free(s);

  /* Down for 5 hours; a new scheduler starts at 07:30. */
  WALL_OFFSET += 5 * 3600;
  memset(rec, 0, sizeof *rec);
  rec->auto_done = 1;
  s = new_sched(rec, state);
  load(s, conf);
  ct_clock_advance(C, 0);
  ct_clock_advance(C, 0);
  ct_clock_advance(C, 0);
  ct_sched_stats st = stats(s, "hourly");
  cr_expect_eq(st.caught_up, 3); /* 03:00 .. 07:00 missed, at most 3 */
  cr_expect_eq(st.missed, 2);
  cr_expect_eq(st.started, 3);
  st = stats(s, "daily");
  cr_expect_eq(st.caught_up, 1); /* 06:00 */
  cr_expect_eq(st.started, 1);
  st = stats(s, "tick");
  cr_expect_eq(st.caught_up, 1); /* 03:00 .. 07:00 of its cadence */
  cr_expect_eq(st.missed, 4);
  /* The cadence of the previous session goes on: bases at whole hours. */
  cr_expect_eq(st.next, ct_clock_seconds(C) + 1800);
  st = stats(s, "plain");
  cr_expect_eq(st.started, 0); /* catch-up none: nothing */
  ct_sched_free(s);
  unlink(state);
  free(state);
  free(rec);
}

Test(sched, reload_keeps_unchanged_tasks) {
  recorder *rec = calloc(1, sizeof *rec);
  ct_sched *s = new_sched(rec, NULL);
  load(s, "keep every 7s run x\n"
          "change every 10s run x\n"
          "drop every 3s run x\n"
          "wall cron \"*/5 * * * *\" run x\n");
  run_for(5);
  cr_expect_eq(stats(s, "drop").running, 1);
  load(s, "# reordered, a comment added\n"
          "wall cron \"*/5 * * * *\" run x\n"
          "change every 20s run x\n"
          "keep every 7s run x\n"
          "new at +1s run x\n");
  cr_expect_eq(ct_sched_task_count(s), 4);
  cr_expect_eq(stats(s, "keep").next, 7);
  cr_expect_eq(stats(s, "wall").next, WALL_BASE + 300);
  cr_expect_eq(stats(s, "change").next, 25);
  cr_expect_eq(stats(s, "new").next, 6);
  ct_sched_stats st;
  cr_expect_eq(ct_sched_task_stats(s, "drop", &st), CT_ENOTFOUND);
  cr_expect_eq(ct_sched_running(s), 1); /* drop's run goes on */
  run_for(2);
  cr_expect_eq(stats(s, "keep").started, 1);
  cr_expect_eq(rec->runs[1].mono, 6); /* new */
  cr_expect_eq(rec->runs[2].mono, 7); /* keep, on its old schedule */
  complete(rec, 0, 1);                /* the removed task's run finishes */
  cr_expect_eq(ct_sched_running(s), 2);
  run_for(3);
  cr_expect_eq(count_task(rec, "drop"), 1);
  finish(s, rec);
  free(rec);
}

static int done_calls;
static void on_done(void *arg) {
  (void)arg;
  done_calls++;
}

Test(sched, shutdown_stops_runs_then_reports) {
  recorder *rec = calloc(1, sizeof *rec);
  ct_sched *s = new_sched(rec, NULL);
  load(s, "a every 1s overlap allow run x\n");
  run_for(3);
  cr_assert_eq(ct_sched_running(s), 3);
  done_calls = 0;
  cr_assert_eq(ct_sched_shutdown(s, on_done, NULL), 0);
  cr_expect_eq(done_calls, 1);
  cr_expect_eq(ct_sched_running(s), 0);
  cr_expect_eq(ct_sched_shutdown(s, on_done, NULL), CT_ESTATE);
  run_for(3);
  cr_expect_eq(rec->n, 3); /* nothing fires after shutdown */
  ct_sched_free(s);
  cr_expect_eq(ct_reactor_pending_calls(R), 0);
  free(rec);
}

/* ------------------------------------------------ the real executor */

typedef struct outcome {
  int done;
  char msg[512];
  char log[4096];
} outcome;

static outcome OUT;

static void on_run_done(const char *task, const ct_failure *f, void *arg) {
  (void)task;
  (void)arg;
  OUT.done++;
  if (f != NULL)
    ct_failure_format(f, OUT.msg, sizeof OUT.msg);
}

static void capture_log(const ct_log_event *ev, void *arg) {
  (void)arg;
  if (ev->level >= CT_LOG_ERROR &&
      strlen(OUT.log) + strlen(ev->message) + 2 < sizeof OUT.log) {
    strcat(OUT.log, ev->message);
    strcat(OUT.log, "\n");
  }
}

typedef struct real {
  ct_sched_exec *ex;
  ct_sched *s;
  ct_log_observer *obs;
} real;

static void real_start(real *x, const char *conf) {
  memset(&OUT, 0, sizeof OUT);
  x->obs = ct_log_add_observer(CT_LOG_DEBUG, capture_log, NULL);
  x->ex = ct_sched_exec_new(R);
  ct_sched_options o;
  memset(&o, 0, sizeof o);
  o.wall.now = fake_wall;
  o.executor = ct_sched_exec_executor(x->ex);
  o.on_run_done = on_run_done;
  x->s = ct_sched_new(R, &o);
  load(x->s, conf);
}

/* Turn the reactor (I/O, SIGCHLD) until `*flag` >= want; bounded. */
static void wait_for(int *flag, int want) {
  for (int i = 0; i < 2000 && *flag < want; i++)
    ct_reactor_iterate_wait(R, 0.05);
  cr_assert_geq(*flag, want, "condition not reached");
}

static void real_stop(real *x) {
  ct_sched_free(x->s);
  ct_sched_exec_free(x->ex);
  for (int i = 0; i < 5; i++)
    ct_reactor_iterate(R);
  ct_log_remove_observer(x->obs);
}

Test(sched, failure_log_has_exit_status_and_output_tail) {
  real x;
  real_start(&x, "bad at +1s run sh -c 'echo first; echo oops-on-stderr >&2; "
                 "exit 3'\n"
                 "good at +1s run true\n");
  ct_clock_advance(C, 1);
  wait_for(&OUT.done, 2);
  cr_expect(strstr(OUT.log, "task bad failed") != NULL, "%s", OUT.log);
  cr_expect(strstr(OUT.log, "exited with code 3") != NULL, "%s", OUT.log);
  cr_expect(strstr(OUT.log, "oops-on-stderr") != NULL, "%s", OUT.log);
  cr_expect(strstr(OUT.log, "first") != NULL, "%s", OUT.log);
  cr_expect_eq(stats(x.s, "bad").failed, 1);
  cr_expect_eq(stats(x.s, "good").succeeded, 1); /* the others go on */
  real_stop(&x);
}

Test(sched, a_missing_program_is_a_failed_run) {
  real x;
  real_start(&x, "ghost at +1s run /nonexistent/program\n");
  ct_clock_advance(C, 1);
  cr_expect_eq(OUT.done, 1);
  cr_expect(strstr(OUT.log, "ENOENT") != NULL, "%s", OUT.log);
  real_stop(&x);
}

Test(sched, timeout_kills_the_command) {
  real x;
  real_start(&x, "slow at +1s timeout 2s run sleep 30\n");
  ct_clock_advance(C, 1);
  cr_expect_eq(stats(x.s, "slow").running, 1);
  ct_clock_advance(C, 2); /* SIGTERM */
  wait_for(&OUT.done, 1);
  cr_expect(strstr(OUT.msg, "timed out after 2s") != NULL, "%s", OUT.msg);
  cr_expect(strstr(OUT.msg, "signal 15") != NULL, "%s", OUT.msg);
  real_stop(&x);
}

Test(sched, timeout_escalates_to_sigkill) {
  char flag[] = "/tmp/ct-sched-trap-XXXXXX";
  int fd = mkstemp(flag);
  cr_assert_geq(fd, 0);
  close(fd);
  unlink(flag);
  char conf[512];
  /* An ignored SIGTERM survives exec: sleep ignores it too. */
  snprintf(conf, sizeof conf,
           "stubborn at +1s timeout 2s kill-grace 3s run sh -c "
           "'trap \"\" TERM; touch %s; exec sleep 30'\n",
           flag);
  real x;
  real_start(&x, conf);
  ct_clock_advance(C, 1);
  struct stat sb;
  for (int i = 0; i < 2000 && stat(flag, &sb) != 0; i++)
    ct_reactor_iterate_wait(R, 0.01);
  cr_assert_eq(stat(flag, &sb), 0, "the child never started");
  ct_clock_advance(C, 2); /* SIGTERM, ignored */
  for (int i = 0; i < 5; i++)
    ct_reactor_iterate(R);
  cr_expect_eq(OUT.done, 0);
  ct_clock_advance(C, 3); /* SIGKILL */
  wait_for(&OUT.done, 1);
  cr_expect(strstr(OUT.msg, "signal 9") != NULL, "%s", OUT.msg);
  unlink(flag);
  real_stop(&x);
}

static int shut_done;
static void on_shut(void *arg) {
  (void)arg;
  shut_done++;
}

Test(sched, shutdown_terminates_running_commands) {
  real x;
  real_start(&x, "long at +1s run sleep 30\n");
  ct_clock_advance(C, 1);
  shut_done = 0;
  ct_sched_shutdown(x.s, on_shut, NULL);
  wait_for(&shut_done, 1);
  cr_expect(strstr(OUT.msg, "signal 15") != NULL, "%s", OUT.msg);
  real_stop(&x);
}

static ct_step m_echo(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  (*(int *)arg)++;
  return ct_pass(ct_rpc_value(json_incref(params)));
}

Test(sched, rpc_action_calls_the_method) {
  ct_failure *err = NULL;
  ct_rpc_server *srv =
      ct_rpc_server_listen(R, "tcp:0:interface=127.0.0.1", NULL, &err);
  cr_assert_not_null(srv, "%s", err ? err->message : "");
  int calls = 0;
  ct_rpc_server_register(srv, "echo", m_echo, &calls);
  char conf[256];
  snprintf(conf, sizeof conf,
           "call at +1s rpc tcp:host=127.0.0.1:port=%d echo '[1, 2]'\n"
           "nomethod at +1s rpc tcp:host=127.0.0.1:port=%d nope\n",
           ct_rpc_server_port(srv), ct_rpc_server_port(srv));
  real x;
  real_start(&x, conf);
  ct_clock_advance(C, 1);
  wait_for(&OUT.done, 2);
  cr_expect_eq(calls, 1);
  cr_expect_eq(stats(x.s, "call").succeeded, 1);
  cr_expect_eq(stats(x.s, "nomethod").failed, 1);
  cr_expect(strstr(OUT.log, "task nomethod failed") != NULL, "%s", OUT.log);
  real_stop(&x);
  ct_rpc_server_free(srv);
  for (int i = 0; i < 5; i++)
    ct_reactor_iterate(R);
}

typedef struct got {
  int n;
  char type[32];
  char content[32];
} got;

static void m_msg(ct_messenger *m, const ct_msg_header *h, const char *content,
                  size_t len, void *arg) {
  (void)m;
  got *g = arg;
  const char *t = NULL;
  if (ct_msg_header_get_str(h, "type", &t) == 0)
    snprintf(g->type, sizeof g->type, "%s", t);
  snprintf(g->content, sizeof g->content, "%.*s", (int)len, content);
  g->n++;
}

Test(sched, send_action_delivers_a_frame) {
  got g = {0};
  ct_msg_callbacks cb = {0};
  cb.on_message = m_msg;
  cb.arg = &g;
  ct_failure *err = NULL;
  ct_msg_server *srv =
      ct_msg_server_listen(R, "tcp:0:interface=127.0.0.1", &cb, NULL, &err);
  cr_assert_not_null(srv, "%s", err ? err->message : "");
  char conf[256];
  snprintf(conf, sizeof conf,
           "ping every 1s send tcp:host=127.0.0.1:port=%d "
           "'{\"type\": \"ping\"}' hello\n"
           "refused at +1s send tcp:host=127.0.0.1:port=1\n",
           ct_msg_server_port(srv));
  real x;
  real_start(&x, conf);
  ct_clock_advance(C, 1);
  wait_for(&g.n, 1);
  wait_for(&OUT.done, 2);
  cr_expect_str_eq(g.type, "ping");
  cr_expect_str_eq(g.content, "hello");
  cr_expect_eq(stats(x.s, "refused").failed, 1);
  ct_clock_advance(C, 1); /* the second frame reuses the connection */
  wait_for(&g.n, 2);
  cr_expect_eq(ct_msg_server_count(srv), 1);
  real_stop(&x);
  ct_msg_server_free(srv);
  for (int i = 0; i < 5; i++)
    ct_reactor_iterate(R);
}
