/*
 * ct-sched: a timed-task scheduler on callLater (docs/sched.md).
 *
 *   ct-sched [--state FILE] [--log-format text|json] [--log-level L] CONFIG
 *   ct-sched --dry-run CONFIG
 *
 * Loads CONFIG (one task per line), runs each task's action on its
 * schedule, reloads CONFIG on SIGHUP (unchanged tasks keep their timers),
 * and on SIGINT/SIGTERM stops scheduling, stops the runs in progress
 * (SIGTERM, then SIGKILL after their kill-grace) and exits.  Exit status:
 * 0, 1 when the config cannot be loaded at start, 2 on bad usage.
 */
#define _DEFAULT_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctwist/ctwist.h"
#include "sched.h"

static const char usage[] =
    "usage: ct-sched [options] CONFIG\n"
    "Run the tasks of CONFIG on their schedules (docs/sched.md).\n"
    "\n"
    "  --state FILE            keep last-run times in FILE for catch-up\n"
    "                          (written atomically after each run)\n"
    "  --dry-run               print the next 10 fire times of each task "
    "and exit\n"
    "  --log-format text|json  human-readable lines or JSON lines (stderr)\n"
    "  --log-level LEVEL       debug, info (default), warn, error\n"
    "  --help                  this text\n"
    "\n"
    "A task per line:  NAME SCHEDULE [POLICY...] ACTION\n"
    "  schedules: every 5s [jitter 1s] | at +30s | daily 03:00 |\n"
    "             cron \"*/5 * * * *\" | cron @hourly\n"
    "  policies:  overlap skip|queue|allow   misfire-grace 30s\n"
    "             catch-up none|one|all|all(max N)   timeout 10m   "
    "kill-grace 10s\n"
    "  actions:   run COMMAND ARGS...\n"
    "             rpc ENDPOINT METHOD ['JSON params']\n"
    "             send ENDPOINT ['JSON header' ['content']]\n"
    "Signals: SIGHUP reloads CONFIG; SIGINT/SIGTERM stop.\n";

typedef struct app {
  ct_reactor *r;
  ct_sched *s;
  const char *config;
  ct_phase_hold *hold;
} app;

static void on_hup(ct_reactor *r, int signum, void *arg) {
  app *a = arg;
  (void)r;
  (void)signum;
  ct_sched_config cfg;
  ct_failure *err = NULL;
  if (ct_sched_config_load(a->config, &cfg, &err) != 0) {
    ct_log_failure(CT_LOG_ERROR, "sched",
                   "reload failed, keeping the running config", err);
    ct_failure_free(err);
    return;
  }
  ct_log(CT_LOG_INFO, "sched", "SIGHUP: reloading %s", a->config);
  tzset(); /* a changed TZ database or /etc/localtime is picked up too */
  ct_sched_load(a->s, &cfg);
}

static void stopped(void *arg) {
  app *a = arg;
  if (a->hold != NULL) {
    ct_phase_hold_release(a->hold);
    a->hold = NULL;
  }
}

static void before_shutdown(void *arg) {
  app *a = arg;
  a->hold = ct_reactor_hold_phase(a->r);
  if (ct_sched_shutdown(a->s, stopped, a) != 0)
    stopped(a);
}

static void print_time(double t) {
  time_t tt = (time_t)t;
  struct tm tm;
  char buf[64];
  localtime_r(&tt, &tm);
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %Z", &tm);
  printf("  %s\n", buf);
}

static int dry_run(const ct_sched_config *cfg) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  double now = (double)ts.tv_sec;
  for (size_t i = 0; i < cfg->n; i++) {
    const ct_sched_spec *s = &cfg->tasks[i];
    double t[10];
    size_t n = ct_sched_fire_times(s, now, t, 10);
    printf("%s (line %d):\n", s->name, s->lineno);
    if (n == 0)
      printf("  never\n");
    for (size_t k = 0; k < n; k++) {
      if (s->kind == CT_SCHED_EVERY && s->jitter > 0)
        printf("  +%gs .. +%gs after start\n", t[k], t[k] + s->jitter);
      else if (s->kind == CT_SCHED_EVERY || s->kind == CT_SCHED_AT)
        printf("  +%gs after start\n", t[k]);
      else
        print_time(t[k]);
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *config = NULL, *state = NULL;
  int dry = 0, json = 0;
  ct_log_level level = CT_LOG_INFO;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage, stdout);
      return 0;
    } else if (strcmp(a, "--dry-run") == 0) {
      dry = 1;
    } else if (strcmp(a, "--state") == 0 && i + 1 < argc) {
      state = argv[++i];
    } else if (strcmp(a, "--log-format") == 0 && i + 1 < argc) {
      const char *v = argv[++i];
      if (strcmp(v, "json") != 0 && strcmp(v, "text") != 0) {
        fprintf(stderr, "ct-sched: --log-format: '%s' is not text or json\n",
                v);
        return 2;
      }
      json = strcmp(v, "json") == 0;
    } else if (strcmp(a, "--log-level") == 0 && i + 1 < argc) {
      if (ct_log_level_parse(argv[++i], &level) != 0) {
        fprintf(stderr, "ct-sched: --log-level: '%s' is not a level\n",
                argv[i]);
        return 2;
      }
    } else if (a[0] == '-' && a[1] != '\0') {
      fprintf(stderr, "ct-sched: unknown or incomplete option '%s'\n%s", a,
              usage);
      return 2;
    } else if (config == NULL) {
      config = a;
    } else {
      fprintf(stderr, "ct-sched: one CONFIG only ('%s')\n%s", a, usage);
      return 2;
    }
  }
  if (config == NULL) {
    fputs(usage, stderr);
    return 2;
  }
  tzset();
  ct_sched_config cfg;
  ct_failure *err = NULL;
  if (ct_sched_config_load(config, &cfg, &err) != 0) {
    fprintf(stderr, "ct-sched: %s\n", err->message);
    ct_failure_free(err);
    return 1;
  }
  if (dry) {
    dry_run(&cfg);
    ct_sched_config_clear(&cfg);
    return 0;
  }
  signal(SIGPIPE, SIG_IGN);
  ct_log_observer *obs = ct_log_add_observer(
      level, json ? ct_log_json_observer : ct_log_text_observer, NULL);
  app a = {0};
  a.config = config;
  a.r = ct_reactor_new();
  ct_sched_exec *ex = a.r != NULL ? ct_sched_exec_new(a.r) : NULL;
  ct_sched_options o;
  memset(&o, 0, sizeof o);
  o.state_path = state;
  o.executor = ct_sched_exec_executor(ex);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  o.seed =
      (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
  a.s = ex != NULL ? ct_sched_new(a.r, &o) : NULL;
  if (a.s == NULL) {
    fprintf(stderr, "ct-sched: out of memory\n");
    ct_sched_config_clear(&cfg);
    ct_sched_exec_free(ex);
    ct_reactor_free(a.r);
    ct_log_remove_observer(obs);
    return 1;
  }
  ct_reactor_on_signal(a.r, SIGHUP, on_hup, &a);
  ct_reactor_add_trigger(a.r, CT_PHASE_BEFORE, before_shutdown, &a);
  ct_log(CT_LOG_INFO, "sched", "ct-sched %s: pid %d", config, (int)getpid());
  ct_sched_load(a.s, &cfg);
  ct_reactor_run(a.r);
  ct_sched_free(a.s);
  ct_sched_exec_free(ex);
  /* Let closing connections finish. */
  for (int i = 0; i < 10; i++)
    ct_reactor_iterate(a.r);
  ct_reactor_free(a.r);
  ct_log(CT_LOG_INFO, "sched", "stopped");
  ct_log_remove_observer(obs);
  return 0;
}
