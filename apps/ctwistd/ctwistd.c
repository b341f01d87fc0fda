/*
 * ctwistd: run a service plugin (Twisted's twistd).
 *
 *   ctwistd [options] PLUGIN --listen ENDPOINT [--listen ENDPOINT...]
 *           [plugin options]
 *   ctwistd [options] --plugin ./myproto.so --listen ENDPOINT [...]
 *
 * It loads the plugin (bundled, or a shared object exporting a
 * ct_plugin_descriptor, see ctwist/plugin.h), lets it build a factory from
 * its options, wraps that factory with the requested policies and a
 * connection tracker, listens on every endpoint, prints "listening on
 * ADDRESS" per port (port 0 is resolved, so scripts can read it), and runs
 * the reactor.  SIGINT/SIGTERM stop it gracefully: the ports close, live
 * connections are closed after flushing their output (aborted after
 * --shutdown-timeout seconds, or at once on a second SIGINT/SIGTERM), the
 * pidfile is removed, and it exits 0.
 *
 * With --workers N it becomes a supervisor of N pre-forked workers sharing
 * the ports through SO_REUSEPORT (see ctd_supervise()).
 *
 * Exit status: 0 after a clean stop, 1 when the service cannot start
 * (bad endpoint, plugin load failure, pidfile in use), 2 for bad usage
 * (unknown option or plugin, bad plugin option).
 *
 * All state lives in one ctwistd struct owned by main().
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "ctwist/ctwist.h"
#include "ctwist/plugin.h"
#include "ctwistd.h"

/* ------------------------------------------------------------------ usage */

static void usage(FILE *out) {
  fprintf(out,
          "usage: ctwistd [options] PLUGIN --listen ENDPOINT "
          "[--listen ENDPOINT...] [plugin options]\n"
          "       ctwistd [options] --plugin ./myproto.so --listen ENDPOINT "
          "[...] [plugin options]\n"
          "       ctwistd PLUGIN --help     (the plugin's options)\n"
          "options:\n"
          "  --pidfile FILE          write the process id to FILE while "
          "running\n"
          "  --logfile FILE          append the log to FILE (default: "
          "stderr)\n"
          "  --log-format text|json  human-readable lines or JSON lines\n"
          "  --log-level LEVEL       debug, info, warn, error, critical "
          "(default info)\n"
          "  --daemon                detach: double fork, setsid, chdir /, "
          "stdio to /dev/null\n"
          "  --idle-timeout S        close connections idle for S seconds\n"
          "  --frame-timeout S       a started frame (message, line...) "
          "must complete within\n"
          "                          S seconds (default 20; slow-loris "
          "defence)\n"
          "  --frame-min-rate B      ...extended by 1 s per B bytes of it "
          "received (default 500)\n"
          "  --max-connections N     refuse connections beyond N at a time\n"
          "  --shutdown-timeout S    on SIGTERM, abort connections still "
          "open after S s (default 5;\n"
          "                          a second SIGINT/SIGTERM aborts them at "
          "once)\n"
          "  --workers N             pre-fork N worker processes sharing "
          "the tcp ports\n"
          "                          (SO_REUSEPORT); crashed workers are "
          "restarted\n"
          "  --plugin PATH           load a plugin shared object\n"
          "registration (docs/discovery.md), given after the plugin like "
          "--listen:\n"
          "  --zk HOST:PORT[,...]    register every tcp endpoint in this "
          "ZooKeeper ensemble\n"
          "  --service NAME          ...as a member of NAME, under "
          "/ctwist/services/NAME\n"
          "  --advertise HOST        the address members carry (default: "
          "the listening IP,\n"
          "                          or this host's name for a wildcard "
          "address)\n"
          "  --zk-session-timeout S  ZooKeeper session timeout (default "
          "10)\n"
          "  --zk-grace S            on SIGTERM, seconds between deleting "
          "the members and\n"
          "                          closing the ports (default 1)\n"
          "ENDPOINT: tcp:PORT[:interface=ADDR], tcp6:PORT[:interface=ADDR], "
          "unix:PATH[:mode=0660]\n"
          "bundled plugins:\n");
  for (const ct_plugin_descriptor *const *d = ct_plugin_builtins(); *d; d++)
    fprintf(out, "  %-10s %s %s\n", (*d)->name, (*d)->description,
            (*d)->usage != NULL ? (*d)->usage : "");
}

/* The plugin's usage line, runnable as printed: a loaded plugin is named
 * by its --plugin PATH, a bundled one by its name. */
static void plugin_help(const ct_plugin_descriptor *d, const char *path,
                        FILE *out) {
  fprintf(out, "%s: %s\nusage: ctwistd %s%s --listen ENDPOINT %s\n", d->name,
          d->description != NULL ? d->description : "",
          path != NULL ? "--plugin " : "", path != NULL ? path : d->name,
          d->usage != NULL ? d->usage : "");
}

/* ------------------------------------------------------- option parsing */

static int parse_double(const char *s, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (s[0] == '\0' || *end != '\0' || errno != 0 || !isfinite(v) || v <= 0)
    return -1;
  *out = v;
  return 0;
}

/* Parse the command line into `d`.  Returns 0, -1 after --help, or an
 * exit status after printing the problem. */
static int parse_args(ctwistd *d, int argc, char **argv) {
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i];
    const char *v;
    int missing = 0;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return -1; /* done: exit 0 */
    } else if (strcmp(a, "--daemon") == 0) {
      d->daemon = 1;
    } else if ((v = ctapp_opt(argc, argv, &i, "--pidfile", &missing))) {
      d->pidfile = v;
    } else if ((v = ctapp_opt(argc, argv, &i, "--logfile", &missing))) {
      d->logfile = v;
    } else if ((v = ctapp_opt(argc, argv, &i, "--log-format", &missing))) {
      if (strcmp(v, "json") == 0)
        d->json = 1;
      else if (strcmp(v, "text") == 0)
        d->json = 0;
      else {
        fprintf(stderr, "ctwistd: --log-format: '%s' is not text or json\n", v);
        return EXIT_USAGE;
      }
    } else if ((v = ctapp_opt(argc, argv, &i, "--log-level", &missing))) {
      if (ct_log_level_parse(v, &d->level) != 0) {
        fprintf(stderr, "ctwistd: --log-level: unknown level '%s'\n", v);
        return EXIT_USAGE;
      }
    } else if ((v = ctapp_opt(argc, argv, &i, "--idle-timeout", &missing))) {
      if (parse_double(v, &d->idle_timeout) != 0) {
        fprintf(stderr,
                "ctwistd: --idle-timeout: '%s' is not a positive number\n", v);
        return EXIT_USAGE;
      }
    } else if ((v = ctapp_opt(argc, argv, &i, "--frame-timeout", &missing))) {
      if (parse_double(v, &d->frame.timeout) != 0) {
        fprintf(stderr,
                "ctwistd: --frame-timeout: '%s' is not a positive number\n", v);
        return EXIT_USAGE;
      }
    } else if ((v = ctapp_opt(argc, argv, &i, "--frame-min-rate", &missing))) {
      if (parse_double(v, &d->frame.min_rate) != 0) {
        fprintf(stderr,
                "ctwistd: --frame-min-rate: '%s' is not a positive number\n",
                v);
        return EXIT_USAGE;
      }
    } else if ((v = ctapp_opt(argc, argv, &i, "--shutdown-timeout",
                              &missing))) {
      if (parse_double(v, &d->shutdown_timeout) != 0) {
        fprintf(stderr,
                "ctwistd: --shutdown-timeout: '%s' is not a positive "
                "number\n",
                v);
        return EXIT_USAGE;
      }
    } else if ((v = ctapp_opt(argc, argv, &i, "--max-connections", &missing))) {
      char *end = NULL;
      errno = 0;
      long n = strtol(v, &end, 10);
      if (v[0] == '\0' || *end != '\0' || errno != 0 || n < 1 ||
          n > (long)UINT_MAX) {
        fprintf(stderr,
                "ctwistd: --max-connections: '%s' is not a positive "
                "integer\n",
                v);
        return EXIT_USAGE;
      }
      d->max_connections = n;
    } else if ((v = ctapp_opt(argc, argv, &i, "--workers", &missing))) {
      char *end = NULL;
      errno = 0;
      long n = strtol(v, &end, 10);
      if (v[0] == '\0' || *end != '\0' || errno != 0 || n < 1 || n > 256) {
        fprintf(stderr, "ctwistd: --workers: '%s' is not in 1..256\n", v);
        return EXIT_USAGE;
      }
      d->workers = (int)n;
    } else if ((v = ctapp_opt(argc, argv, &i, "--plugin", &missing))) {
      d->plugin_path = v;
      i++;
      break; /* the rest belongs to the plugin */
    } else if (missing) {
      fprintf(stderr, "ctwistd: option %s needs a value\n", a);
      return EXIT_USAGE;
    } else {
      fprintf(stderr, "ctwistd: unknown option '%s' (try --help)\n", a);
      return EXIT_USAGE;
    }
    if (missing) {
      fprintf(stderr, "ctwistd: option %s needs a value\n", a);
      return EXIT_USAGE;
    }
  }
  if (d->plugin_path == NULL) {
    if (i >= argc) {
      fprintf(stderr, "ctwistd: no plugin given (try --help)\n");
      return EXIT_USAGE;
    }
    d->plugin_name = argv[i++];
  }
  /* What follows the plugin: --listen (ours) and the plugin's options,
   * which keep their order.  The plugin's argv[0] is its name (or path). */
  d->pargv = calloc((size_t)(argc - i) + 2, sizeof *d->pargv);
  if (d->pargv == NULL)
    return EXIT_START;
  d->pargv[d->pargc++] =
      (char *)(d->plugin_name != NULL ? d->plugin_name : d->plugin_path);
  for (; i < argc; i++) {
    int missing = 0;
    const char *v;
    static const char *const zk_opts[] = {"--zk", "--service", "--advertise",
                                          "--zk-session-timeout", "--zk-grace"};
    int zk_opt = -1;
    for (int k = 0; k < 5 && zk_opt < 0; k++)
      if ((v = ctapp_opt(argc, argv, &i, zk_opts[k], &missing)) != NULL ||
          missing)
        zk_opt = k;
    if (missing) {
      fprintf(stderr, "ctwistd: option %s needs a value\n", zk_opts[zk_opt]);
      return EXIT_USAGE;
    }
    if (zk_opt >= 0) {
      double *num = zk_opt == 3   ? &d->zk_session_timeout
                    : zk_opt == 4 ? &d->zk_grace
                                  : NULL;
      if (num != NULL && parse_double(v, num) != 0) {
        fprintf(stderr, "ctwistd: %s: '%s' is not a positive number\n",
                zk_opts[zk_opt], v);
        return EXIT_USAGE;
      }
      if (zk_opt == 0)
        d->zk_ensemble = v;
      else if (zk_opt == 1)
        d->zk_service = v;
      else if (zk_opt == 2)
        d->zk_advertise = v;
      continue;
    }
    v = ctapp_opt(argc, argv, &i, "--listen", &missing);
    if (missing) {
      fprintf(stderr, "ctwistd: option --listen needs a value\n");
      return EXIT_USAGE;
    }
    if (v != NULL) {
      if (d->nlisten == MAX_LISTEN) {
        fprintf(stderr, "ctwistd: at most %d --listen endpoints\n", MAX_LISTEN);
        return EXIT_USAGE;
      }
      d->listen[d->nlisten++] = v;
      continue;
    }
    d->pargv[d->pargc++] = argv[i];
  }
  d->pargv[d->pargc] = NULL;
  if ((d->zk_ensemble == NULL) != (d->zk_service == NULL)) {
    fprintf(stderr, "ctwistd: --zk and --service go together\n");
    return EXIT_USAGE;
  }
  char path[256];
  if (d->zk_service != NULL &&
      ct_service_path(d->zk_service, path, sizeof path) != 0) {
    fprintf(stderr,
            "ctwistd: --service: '%s' is not 1..100 characters of "
            "A-Z a-z 0-9 . _ -\n",
            d->zk_service);
    return EXIT_USAGE;
  }
  return 0;
}

/* -------------------------------------------------------------- pidfile */

/*
 * The pidfile is claimed atomically: it is opened (created if needed) and
 * locked with flock(LOCK_EX | LOCK_NB) before anything is read or written,
 * and the lock is held until exit.  Of two ctwistd started at once, the
 * one that loses the lock refuses to start; a pidfile left by a crashed
 * process is unlocked and gets taken over.  A pid in an unlocked file that
 * names a live process (another tool's pidfile) is refused too.
 */
int ctd_write_pidfile(ctwistd *d) {
  if (d->pidfile == NULL)
    return 0;
  int fd = open(d->pidfile_abs, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "ctwistd: cannot write pidfile %s: %s\n", d->pidfile,
            strerror(errno));
    return -1;
  }
  char buf[32] = "";
  int locked = flock(fd, LOCK_EX | LOCK_NB) == 0;
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
  if (!locked || (pid > 0 && pid != (long)getpid() &&
                  (kill((pid_t)pid, 0) == 0 || errno == EPERM))) {
    if (pid > 0)
      fprintf(stderr,
              "ctwistd: pidfile %s: another process (pid %ld) is running\n",
              d->pidfile, pid);
    else
      fprintf(stderr,
              "ctwistd: pidfile %s: another process is running (it holds "
              "the lock)\n",
              d->pidfile);
    close(fd);
    return -1;
  }
  int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
    fprintf(stderr, "ctwistd: cannot write pidfile %s: %s\n", d->pidfile,
            strerror(errno));
    close(fd);
    return -1;
  }
  d->pid_fd = fd; /* the lock lives as long as this descriptor */
  d->pid_written = 1;
  return 0;
}

static void remove_pidfile(ctwistd *d) {
  if (d->pid_written)
    unlink(d->pidfile_abs);
  d->pid_written = 0;
  if (d->pid_fd >= 0)
    close(d->pid_fd); /* after the unlink: a new start cannot lock the old
                         file and then see it vanish */
  d->pid_fd = -1;
}

/* Relative paths are resolved now, before --daemon changes directory. */
static char *absolute(const char *path) {
  if (path[0] == '/')
    return strdup(path);
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd) == NULL)
    return NULL;
  size_t n = strlen(cwd) + strlen(path) + 2;
  char *s = malloc(n);
  if (s != NULL)
    snprintf(s, n, "%s/%s", cwd, path);
  return s;
}

/* ------------------------------------------------------------- logging */

static int open_log(ctwistd *d) {
  d->logfp = stderr;
  if (d->logfile != NULL) {
    d->logfp = fopen(d->logfile, "a");
    if (d->logfp == NULL) {
      fprintf(stderr, "ctwistd: cannot open logfile %s: %s\n", d->logfile,
              strerror(errno));
      d->logfp = NULL;
      return -1;
    }
    setvbuf(d->logfp, NULL, _IOLBF, 0);
  }
  d->observer = ct_log_add_observer(
      d->level, d->json ? ct_log_json_observer : ct_log_text_observer,
      d->logfp);
  if (d->observer == NULL) {
    fprintf(stderr, "ctwistd: out of memory\n");
    return -1;
  }
  return 0;
}

static void close_log(ctwistd *d) {
  ct_log_remove_observer(d->observer);
  d->observer = NULL;
  if (d->logfp != NULL && d->logfp != stderr)
    fclose(d->logfp);
  d->logfp = NULL;
}

/* -------------------------------------------------------------- daemon */

/*
 * Detach (double fork, setsid) but keep the starting terminal informed:
 * the original process waits on a pipe, copies the daemon's startup output
 * ("listening on ...", or the error) to its own stdout, and exits 0 only
 * once the daemon reports it is ready.  Returns in the daemon (with
 * d->ready_fd set); never returns in the original process.
 */
static int daemonize(ctwistd *d) {
  int out[2], status[2];
  if (pipe(out) != 0 || pipe(status) != 0) {
    fprintf(stderr, "ctwistd: pipe: %s\n", strerror(errno));
    return -1;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "ctwistd: fork: %s\n", strerror(errno));
    return -1;
  }
  if (pid > 0) { /* the original process: relay, then report */
    close(out[1]);
    close(status[1]);
    char buf[4096];
    ssize_t n;
    while ((n = read(out[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
      if (n > 0 && fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
        break;
    fflush(stdout);
    char ok = 0;
    while ((n = read(status[0], &ok, 1)) < 0 && errno == EINTR)
      ;
    waitpid(pid, NULL, 0); /* the intermediate child exits at once */
    _exit(n == 1 && ok == 'R' ? 0 : EXIT_START);
  }
  close(out[0]);
  close(status[0]);
  if (setsid() < 0)
    _exit(EXIT_START);
  pid = fork(); /* not a session leader: can never reacquire a terminal */
  if (pid != 0)
    _exit(pid < 0 ? EXIT_START : 0);
  umask(022);
  /* Until ready, stdout and stderr go to the waiting parent. */
  dup2(out[1], STDOUT_FILENO);
  dup2(out[1], STDERR_FILENO);
  close(out[1]);
  int devnull = open("/dev/null", O_RDWR);
  if (devnull >= 0) {
    dup2(devnull, STDIN_FILENO);
    close(devnull);
  }
  d->ready_fd = status[1];
  return 0;
}

/* The daemon is listening: release the waiting parent, drop stdio. */
void ctd_daemon_ready(ctwistd *d) {
  if (d->ready_fd < 0)
    return;
  if (chdir("/") != 0)
    ct_log(CT_LOG_WARN, "ctwistd", "chdir /: %s", strerror(errno));
  fflush(NULL);
  int devnull = open("/dev/null", O_RDWR);
  if (devnull >= 0) {
    dup2(devnull, STDOUT_FILENO);
    dup2(devnull, STDERR_FILENO);
    close(devnull);
  }
  while (write(d->ready_fd, "R", 1) < 0 && errno == EINTR)
    ;
  close(d->ready_fd);
  d->ready_fd = -1;
}

/* ------------------------------------------------------------ shutdown */

static void drain_done(ctwistd *d) {
  if (d->drain_timer != NULL) {
    ct_delayed_call_cancel(d->drain_timer);
    d->drain_timer = NULL;
  }
  if (d->drain_hold != NULL) {
    ct_phase_hold_release(d->drain_hold);
    d->drain_hold = NULL;
  }
}

static void on_tracker_empty(ctd_tracker *tr, void *arg) {
  (void)tr;
  ctwistd *d = arg;
  if (d->drain_hold != NULL) {
    ct_log(CT_LOG_INFO, "ctwistd", "all connections closed");
    drain_done(d);
  }
}

static void drain_timeout(void *arg) {
  ctwistd *d = arg;
  d->drain_timer = NULL;
  unsigned n = ctd_tracker_close_all(&d->tracker, 1);
  ct_log(CT_LOG_WARN, "ctwistd",
         "shutdown timeout: aborting %u connection(s) still open", n);
}

static void stop_ports(ctwistd *d) {
  for (int i = 0; i < d->nports; i++)
    ct_deferred_unref(ct_listening_port_stop(d->ports[i]));
  d->nports = 0;
}

/* Abort trigger: a second SIGINT/SIGTERM during the stop aborts the
 * connections still flushing instead of waiting for --shutdown-timeout
 * (the reactor then finishes its phases without waiting). */
static void on_hurry(void *arg) {
  ctwistd *d = arg;
  if (d->drain_timer != NULL) {
    ct_delayed_call_cancel(d->drain_timer);
    d->drain_timer = NULL;
  }
  unsigned n = ctd_tracker_close_all(&d->tracker, 1);
  ct_log(CT_LOG_WARN, "ctwistd", "second signal: aborted %u connection(s)", n);
}

static void begin_drain(ctwistd *d);

/* The members are deleted and the grace is over: drain. */
static void after_withdrawal(ctwistd *d) {
  ct_phase_hold *h = d->zk_hold;
  d->zk_hold = NULL;
  begin_drain(d);
  if (h != NULL)
    ct_phase_hold_release(h);
}

/* Shutdown trigger (phase "before"): with --zk, delete the members first
 * (registry.c); then stop accepting, close the live connections and hold
 * the shutdown until they are gone. */
static void on_shutdown(void *arg) {
  ctwistd *d = arg;
  if (d->zk != NULL && !d->is_worker) {
    d->zk_hold = ct_reactor_hold_phase(d->reactor);
    if (ctd_registry_withdraw(d, d->reactor, after_withdrawal))
      return;
    ct_phase_hold_release(d->zk_hold);
    d->zk_hold = NULL;
  }
  begin_drain(d);
}

static void begin_drain(ctwistd *d) {
  ct_log(CT_LOG_INFO, "ctwistd",
         "stopping: closing %d port(s), %u "
         "connection(s)",
         d->nports, d->tracker.live);
  stop_ports(d);
  if (d->tracker.live == 0)
    return;
  d->drain_hold = ct_reactor_hold_phase(d->reactor);
  d->drain_timer =
      ct_call_later(d->reactor, d->shutdown_timeout, drain_timeout, d);
  ctd_tracker_close_all(&d->tracker, 0);
}

/* ------------------------------------------------------------- service */

/* A failure for a person at a terminal: "ctwistd: PREFIX" then the
 * messages of the chain, without the source locations (the log has them). */
void ctd_report(const char *prefix, const ct_failure *f) {
  fprintf(stderr, "ctwistd: %s", prefix);
  for (const char *sep = ""; f != NULL; f = f->cause, sep = ": ")
    fprintf(stderr, "%s%s", sep,
            f->message != NULL ? f->message : ct_strerror(f->code));
  fputc('\n', stderr);
}

static int load_plugin(ctwistd *d) {
  ct_failure *err = NULL;
  if (d->plugin_path != NULL) {
    d->loaded = ct_plugin_load(d->plugin_path, &err);
    if (d->loaded == NULL) {
      ctd_report("", err);
      ct_failure_free(err);
      /* dlopen() searches the library path for a name without a '/', not
       * the current directory: the usual surprise. */
      if (strchr(d->plugin_path, '/') == NULL)
        fprintf(stderr,
                "ctwistd: hint: a plugin path without '/' is looked up in "
                "the library path, not here; for a file in this directory "
                "say --plugin ./%s\n",
                d->plugin_path);
      return EXIT_START;
    }
    d->desc = ct_plugin_descriptor_of(d->loaded);
  } else {
    d->desc = ct_plugin_builtin(d->plugin_name);
    if (d->desc == NULL) {
      fprintf(stderr, "ctwistd: unknown plugin '%s' (bundled:", d->plugin_name);
      for (const ct_plugin_descriptor *const *b = ct_plugin_builtins(); *b; b++)
        fprintf(stderr, " %s", (*b)->name);
      fprintf(stderr, "; or --plugin PATH)\n");
      return EXIT_USAGE;
    }
  }
  return 0;
}

int ctd_make_factory(ctwistd *d) {
  ct_failure *err = NULL;
  int rc = d->desc->make_factory(d->reactor, d->pargc, d->pargv,
                                 &d->plugin_factory, &err);
  if (rc != 0 || d->plugin_factory == NULL) {
    if (err != NULL)
      ctd_report("", err);
    else
      fprintf(stderr, "ctwistd: plugin %s: make_factory failed: %s\n",
              d->desc->name, ct_strerror(rc != 0 ? rc : CT_EINVAL));
    ct_failure_free(err);
    d->plugin_factory = NULL;
    return rc == CT_EINVAL ? EXIT_USAGE : EXIT_START;
  }
  ct_factory *f = d->plugin_factory;
  if (d->frame.timeout > 0 || d->frame.min_rate > 0) {
    d->frame_policy = ct_frame_deadline_factory_new(f, &d->frame);
    if (d->frame_policy == NULL)
      return EXIT_START;
    f = ct_policy_factory_base(d->frame_policy);
  }
  if (d->idle_timeout > 0) {
    d->idle = ct_timeout_factory_new(f, d->idle_timeout);
    if (d->idle == NULL)
      return EXIT_START;
    f = ct_policy_factory_base(d->idle);
  }
  if (d->max_connections > 0) {
    d->limit = ct_limit_factory_new(f, (unsigned)d->max_connections, 0);
    if (d->limit == NULL)
      return EXIT_START;
    f = ct_policy_factory_base(d->limit);
  }
  ctd_tracker_init(&d->tracker, f);
  d->tracker.on_empty = on_tracker_empty;
  d->tracker.arg = d;
  return 0;
}

static int listen_all(ctwistd *d) {
  for (int i = 0; i < d->nlisten; i++) {
    ct_failure *err = NULL;
    const char *ep = d->is_worker ? d->worker_listen[i] : d->listen[i];
    ct_listening_port *p = ct_listen(d->reactor, ep, &d->tracker.factory, &err);
    if (p == NULL) {
      char what[512];
      snprintf(what, sizeof what, "cannot listen on '%s': ", d->listen[i]);
      ctd_report(what, err);
      ct_failure_free(err);
      return EXIT_START;
    }
    d->ports[d->nports++] = p;
  }
  return 0;
}

/* Print the bound addresses (port 0 resolved) once everything is set up:
 * a script that saw them may rely on the pidfile too. */
static void announce(ctwistd *d) {
  for (int i = 0; i < d->nports; i++) {
    ct_address a;
    char buf[CT_ADDRESS_STRLEN];
    ct_listening_port_address(d->ports[i], &a);
    ct_address_format(&a, buf, sizeof buf);
    printf("listening on %s\n", buf);
    ct_log(CT_LOG_INFO, "ctwistd", "%s listening on %s", d->desc->name, buf);
  }
  fflush(stdout);
}

/* Release the factory chain made by ctd_make_factory(). */
void ctd_release_factory(ctwistd *d) {
  ct_policy_factory_free(d->limit);
  ct_policy_factory_free(d->idle);
  ct_policy_factory_free(d->frame_policy);
  d->limit = d->idle = d->frame_policy = NULL;
  if (d->plugin_factory != NULL && d->desc->destroy != NULL)
    d->desc->destroy(d->plugin_factory);
  d->plugin_factory = NULL;
}

/* Release everything, in reverse order of creation. */
void ctd_cleanup(ctwistd *d) {
  stop_ports(d);
  if (d->zk_hold != NULL)
    ct_phase_hold_release(d->zk_hold);
  d->zk_hold = NULL;
  ctd_registry_free(d);
  if (!d->is_worker) {
    ct_reactor_free(d->sup_reactor);
    d->sup_reactor = NULL;
    if (d->sup_sigfd >= 0)
      close(d->sup_sigfd);
    d->sup_sigfd = -1;
  }
  if (d->reactor != NULL) {
    /* Connections closed by the shutdown are released by now; this only
     * matters on a failed start, where there are none. */
    ct_reactor_free(d->reactor);
    d->reactor = NULL;
  }
  ctd_release_factory(d);
  ct_plugin_unload(d->loaded);
  d->loaded = NULL;
  remove_pidfile(d);
  if (d->ready_fd >= 0) { /* failed before ready: the parent reports it */
    fflush(NULL);
    close(d->ready_fd);
    d->ready_fd = -1;
  }
  if (d->worker_ready_fd >= 0)
    close(d->worker_ready_fd);
  d->worker_ready_fd = -1;
  for (int i = 0; i < MAX_LISTEN; i++) {
    free(d->worker_listen[i]);
    d->worker_listen[i] = NULL;
    if (d->reserved_fd[i] >= 0)
      close(d->reserved_fd[i]);
    d->reserved_fd[i] = -1;
  }
  free(d->worker_pid);
  d->worker_pid = NULL;
  free(d->worker_started);
  d->worker_started = NULL;
  close_log(d);
  free(d->pidfile_abs);
  free(d->pargv);
}

/* SIGINT/SIGTERM stay blocked from the announcement until the reactor runs
 * (it installs its graceful-stop handlers in ct_reactor_run()): a script
 * that signals as soon as it reads "listening on" gets a clean stop, not
 * the default action. */
static void stop_signals(int how) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(how, &set, NULL);
}

static void on_running(void *arg) {
  (void)arg;
  stop_signals(SIG_UNBLOCK);
}

/* A worker is listening: tell the supervisor.  In daemon mode a worker
 * also lets go of the pipe the starting terminal reads. */
static void worker_ready(ctwistd *d) {
  if (d->daemon) {
    fflush(NULL);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, STDOUT_FILENO);
      dup2(devnull, STDERR_FILENO);
      close(devnull);
    }
  }
  if (d->worker_ready_fd >= 0) {
    while (write(d->worker_ready_fd, "R", 1) < 0 && errno == EINTR)
      ;
    close(d->worker_ready_fd);
    d->worker_ready_fd = -1;
  }
}

/* Serve in this process (the only one, or a worker) until stopped. */
int ctd_serve(ctwistd *d) {
  int rc;
  d->reactor = ct_reactor_new();
  if (d->reactor == NULL) {
    fprintf(stderr, "ctwistd: cannot create the reactor\n");
    return EXIT_START;
  }
  if ((rc = ctd_make_factory(d)) != 0)
    return rc;
  if ((rc = listen_all(d)) != 0)
    return rc;
  if (!d->is_worker && ctd_write_pidfile(d) != 0)
    return EXIT_START;
  if (!d->is_worker && d->zk_ensemble != NULL) {
    ct_address addrs[MAX_LISTEN];
    for (int i = 0; i < d->nports; i++)
      ct_listening_port_address(d->ports[i], &addrs[i]);
    if ((rc = ctd_registry_start(d, d->reactor, addrs, d->nports)) != 0)
      return rc;
  }
  if (ct_reactor_add_trigger(d->reactor, CT_PHASE_BEFORE, on_shutdown, d) < 0 ||
      ct_reactor_add_trigger(d->reactor, CT_PHASE_ABORT, on_hurry, d) < 0)
    return EXIT_START;
  stop_signals(SIG_BLOCK);
  if (ct_reactor_call_when_running(d->reactor, on_running, NULL) != 0) {
    stop_signals(SIG_UNBLOCK);
    return EXIT_START;
  }
  if (d->is_worker) {
    worker_ready(d);
  } else {
    announce(d);
    ctd_daemon_ready(d);
  }
  ct_log(CT_LOG_INFO, "ctwistd", "%s running (pid %ld)", d->desc->name,
         (long)getpid());
  ct_reactor_run(d->reactor);
  ct_log(CT_LOG_INFO, "ctwistd", "%s stopped (%lu connection(s) served)",
         d->desc->name, d->tracker.total);
  return 0;
}

static int run(ctwistd *d) {
  int rc = load_plugin(d);
  if (rc != 0)
    return rc;
  d->pargv[0] = (char *)d->desc->name; /* messages name the plugin */
  for (int i = 1; i < d->pargc; i++) {
    if (strcmp(d->pargv[i], "--help") == 0) {
      plugin_help(d->desc, d->plugin_path, stdout);
      return -1;
    }
  }
  if (d->nlisten == 0) {
    fprintf(stderr, "ctwistd: no --listen ENDPOINT given\n");
    return EXIT_USAGE;
  }
  if (d->daemon && daemonize(d) != 0)
    return EXIT_START;
  if (open_log(d) != 0)
    return EXIT_START;
  return d->workers > 0 ? ctd_supervise(d) : ctd_serve(d);
}

int main(int argc, char **argv) {
  /* A server writes its log to whatever stderr it was given; a reader that
   * went away must not kill it (the library's own socket writes never raise
   * SIGPIPE, see reactor.h). */
  signal(SIGPIPE, SIG_IGN);
  ctwistd d;
  memset(&d, 0, sizeof d);
  d.level = CT_LOG_INFO;
  d.shutdown_timeout = 5.0;
  d.ready_fd = -1;
  d.worker_ready_fd = -1;
  d.pid_fd = -1;
  d.sup_sigfd = -1;
  d.zk_session_timeout = CT_ZK_SESSION_TIMEOUT_DEFAULT;
  d.zk_grace = 1.0;
  for (int i = 0; i < MAX_LISTEN; i++)
    d.reserved_fd[i] = -1;
  int rc = parse_args(&d, argc, argv);
  if (rc == 0 && d.pidfile != NULL &&
      (d.pidfile_abs = absolute(d.pidfile)) == NULL) {
    fprintf(stderr, "ctwistd: cannot resolve %s\n", d.pidfile);
    rc = EXIT_START;
  }
  if (rc == 0)
    rc = run(&d);
  ctd_cleanup(&d);
  return rc < 0 ? 0 : rc; /* -1: --help was answered */
}
