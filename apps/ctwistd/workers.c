/*
 * workers.c: ctwistd --workers N, a supervisor of pre-forked workers.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctwistd.h"

/*
 * --workers N: the process becomes a supervisor.  Each worker binds its own
 * socket to the same address with SO_REUSEPORT (the kernel spreads incoming
 * connections across them) and runs ctd_serve().  The supervisor restarts a
 * worker that dies, and on SIGINT/SIGTERM stops them all (each drains as a
 * single ctwistd does) and waits for them.  It runs no reactor: it waits
 * for signals with sigwaitinfo(), so it needs no handlers and no globals.
 */

double ctd_now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Rewrite every endpoint with reuseport=1.  A port 0 is chosen here, once,
 * by binding a socket that the supervisor keeps (bound, never listening)
 * so that the port stays reserved for the workers. */
static int prepare_worker_endpoints(ctwistd *d) {
  for (int i = 0; i < d->nlisten; i++) {
    ct_endpoint e;
    memset(&e, 0, sizeof e);
    ct_failure *err = NULL;
    char what[512];
    snprintf(what, sizeof what, "cannot listen on '%s': ", d->listen[i]);
    if (ct_endpoint_parse_server(d->listen[i], &e, &err) != 0) {
      ctd_report(what, err);
      ct_failure_free(err);
      return EXIT_START;
    }
    if (e.kind != CT_ENDPOINT_TCP && e.kind != CT_ENDPOINT_TCP6) {
      fprintf(stderr,
              "ctwistd: --workers needs tcp or tcp6 endpoints, not '%s'\n",
              d->listen[i]);
      ct_endpoint_clear(&e);
      return EXIT_USAGE;
    }
    e.reuseport = 1;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (ct_endpoint_resolve(&e, &ss, &len, &err) != 0) {
      ctd_report(what, err);
      ct_failure_free(err);
      ct_endpoint_clear(&e);
      return EXIT_START;
    }
    if (e.port == 0) {
      int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      int one = 1;
      if (fd < 0 ||
          setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
          setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
          (ss.ss_family == AF_INET6 &&
           setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
          bind(fd, (struct sockaddr *)&ss, len) != 0 ||
          getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        fprintf(stderr, "ctwistd: %s%s\n", what, strerror(errno));
        if (fd >= 0)
          close(fd);
        ct_endpoint_clear(&e);
        return EXIT_START;
      }
      d->reserved_fd[i] = fd;
      e.port = ss.ss_family == AF_INET6
                   ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                   : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    ct_address a;
    ct_address_from_sockaddr(&a, (struct sockaddr *)&ss, len);
    d->worker_sa[i] = a;
    ct_address_format(&a, d->worker_addr[i], sizeof d->worker_addr[i]);
    int n = ct_endpoint_format(&e, NULL, 0);
    d->worker_listen[i] = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (d->worker_listen[i] == NULL) {
      ct_endpoint_clear(&e);
      return EXIT_START;
    }
    ct_endpoint_format(&e, d->worker_listen[i], (size_t)n + 1);
    ct_endpoint_clear(&e);
  }
  return 0;
}

/* Fork the worker of `slot`; in the child, serve and exit. */
static int spawn_worker(ctwistd *d, int slot, int ready_fd) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    ct_log(CT_LOG_ERROR, "ctwistd", "fork: %s", strerror(errno));
    return -1;
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    d->is_worker = 1;
    d->pid_written = 0;   /* the supervisor's */
    if (d->pid_fd >= 0) { /* a restarted worker must not share the lock */
      close(d->pid_fd);
      d->pid_fd = -1;
    }
    if (d->ready_fd >= 0) {
      close(d->ready_fd);
      d->ready_fd = -1;
    }
    d->worker_ready_fd = ready_fd;
    int rc = ctd_serve(d);
    ctd_cleanup(d);
    exit(rc);
  }
  d->worker_pid[slot] = pid;
  d->worker_started[slot] = ctd_now_seconds();
  ct_log(CT_LOG_INFO, "ctwistd", "worker %d started (pid %ld)", slot,
         (long)pid);
  return 0;
}

static int find_slot(const ctwistd *d, pid_t pid) {
  for (int i = 0; i < d->workers; i++)
    if (d->worker_pid[i] == pid)
      return i;
  return -1;
}

static int live_workers(const ctwistd *d) {
  int n = 0;
  for (int i = 0; i < d->workers; i++)
    n += d->worker_pid[i] != 0;
  return n;
}

static void describe_exit(int status, char *buf, size_t len) {
  if (WIFSIGNALED(status))
    snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
  else
    snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
}

/* Reap dead workers; with `restart`, replace them.  Returns -1 when
 * workers keep dying right after they start (then the supervisor gives
 * up), else 0. */
static int reap_workers(ctwistd *d, int restart) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    int slot = find_slot(d, pid);
    if (slot < 0)
      continue;
    d->worker_pid[slot] = 0;
    char how[64];
    describe_exit(status, how, sizeof how);
    if (!restart) {
      ct_log(CT_LOG_INFO, "ctwistd", "worker %d (pid %ld) stopped: %s", slot,
             (long)pid, how);
      continue;
    }
    ct_log(CT_LOG_WARN, "ctwistd", "worker %d (pid %ld) died: %s; restarting",
           slot, (long)pid, how);
    if (ctd_now_seconds() - d->worker_started[slot] < 1.0) {
      if (++d->fast_failures >= 5) {
        ct_log(CT_LOG_CRITICAL, "ctwistd",
               "workers keep dying at start; giving up");
        return -1;
      }
    } else {
      d->fast_failures = 0;
    }
    if (spawn_worker(d, slot, -1) != 0)
      return -1;
  }
  return 0;
}

static void signal_workers(ctwistd *d, int sig) {
  for (int i = 0; i < d->workers; i++)
    if (d->worker_pid[i] > 0)
      kill(d->worker_pid[i], sig);
}

/* SIGTERM every worker and wait for all, SIGKILL after the drain time.  A
 * SIGINT/SIGTERM meanwhile is passed on: the workers' second signal, which
 * makes them abort their connections and exit at once. */
static void stop_workers(ctwistd *d) {
  signal_workers(d, SIGTERM);
  double deadline = ctd_now_seconds() + d->shutdown_timeout + 5.0;
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigaddset(&chld, SIGINT);
  sigaddset(&chld, SIGTERM);
  while (live_workers(d) > 0) {
    reap_workers(d, 0);
    if (live_workers(d) == 0)
      break;
    double left = deadline - ctd_now_seconds();
    if (left <= 0) {
      for (int i = 0; i < d->workers; i++)
        if (d->worker_pid[i] > 0) {
          ct_log(CT_LOG_WARN, "ctwistd", "worker %d (pid %ld) killed", i,
                 (long)d->worker_pid[i]);
          kill(d->worker_pid[i], SIGKILL);
        }
      deadline = ctd_now_seconds() + 5.0;
      continue;
    }
    struct timespec ts = {(time_t)left,
                          (long)((left - (double)(time_t)left) * 1e9)};
    int sig = sigtimedwait(&chld, NULL, &ts);
    if (sig == SIGINT || sig == SIGTERM) {
      ct_log(CT_LOG_WARN, "ctwistd",
             "signal %d while stopping: workers abort their connections", sig);
      signal_workers(d, SIGTERM);
    }
  }
}

/* ------------------------------------------------------- registration */

/*
 * With --zk the supervisor registers the endpoints (registry.c says why):
 * it needs a reactor for the ZooKeeper session, so instead of blocking in
 * sigwaitinfo() it reads its (still blocked) signals from a signalfd the
 * reactor watches, turning the reactor in between.
 */
static void on_sigfd(ct_reactor *r, int fd, int events, void *arg) {
  (void)r;
  (void)fd;
  (void)events;
  (void)arg; /* next_signal() reads it */
}

static int start_registry(ctwistd *d, const sigset_t *set) {
  d->sup_reactor = ct_reactor_new();
  if (d->sup_reactor == NULL)
    return EXIT_START;
  d->sup_sigfd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (d->sup_sigfd < 0 ||
      ct_reactor_add_reader(d->sup_reactor, d->sup_sigfd, on_sigfd, d) != 0) {
    fprintf(stderr, "ctwistd: signalfd: %s\n", strerror(errno));
    return EXIT_START;
  }
  return ctd_registry_start(d, d->sup_reactor, d->worker_sa, d->nlisten);
}

static int next_signal(ctwistd *d, sigset_t *set) {
  if (d->sup_reactor == NULL)
    return sigwaitinfo(set, NULL);
  for (;;) {
    struct signalfd_siginfo si;
    if (read(d->sup_sigfd, &si, sizeof si) == (ssize_t)sizeof si)
      return (int)si.ssi_signo;
    ct_reactor_iterate_wait(d->sup_reactor, 60.0);
  }
}

static void withdrawn(ctwistd *d) {
  (void)d;
}

/* Delete the members and wait out the grace, turning the reactor. */
static void withdraw(ctwistd *d) {
  if (d->sup_reactor == NULL ||
      !ctd_registry_withdraw(d, d->sup_reactor, withdrawn))
    return;
  while (d->zk_withdrawn_cb != NULL)
    ct_reactor_iterate_wait(d->sup_reactor, 1.0);
}

int ctd_supervise(ctwistd *d) {
  /* Check the plugin's options once, here, so that a mistake is reported
   * once and not by every worker. */
  d->reactor = ct_reactor_new();
  if (d->reactor == NULL)
    return EXIT_START;
  int rc = ctd_make_factory(d);
  ctd_release_factory(d);
  ct_reactor_free(d->reactor);
  d->reactor = NULL;
  if (rc != 0)
    return rc;
  if ((rc = prepare_worker_endpoints(d)) != 0)
    return rc;
  d->worker_pid = calloc((size_t)d->workers, sizeof *d->worker_pid);
  d->worker_started = calloc((size_t)d->workers, sizeof *d->worker_started);
  int ready[2];
  if (d->worker_pid == NULL || d->worker_started == NULL ||
      pipe2(ready, O_CLOEXEC) != 0)
    return EXIT_START;

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, NULL);
  for (int i = 0; i < d->workers; i++)
    if (spawn_worker(d, i, ready[1]) != 0)
      break;
  close(ready[1]);

  /* Wait until every worker listens, one fails, or we are told to stop. */
  int nready = 0, failed = 0;
  double deadline = ctd_now_seconds() + 30.0;
  struct timespec zero = {0, 0};
  sigset_t stopsigs;
  sigemptyset(&stopsigs);
  sigaddset(&stopsigs, SIGINT);
  sigaddset(&stopsigs, SIGTERM);
  while (nready < d->workers && !failed) {
    struct pollfd p = {ready[0], POLLIN, 0};
    if (poll(&p, 1, 50) > 0) {
      char buf[64];
      ssize_t n = read(ready[0], buf, sizeof buf);
      if (n > 0)
        nready += (int)n;
      else if (n == 0)
        failed = 1; /* every worker is gone or has given up */
    }
    int status;
    pid_t dead = waitpid(-1, &status, WNOHANG);
    if (dead > 0) { /* a worker died while starting (it said why) */
      int slot = find_slot(d, dead);
      if (slot >= 0)
        d->worker_pid[slot] = 0;
      failed = 1;
    }
    if (sigtimedwait(&stopsigs, NULL, &zero) > 0 ||
        ctd_now_seconds() > deadline)
      failed = 1;
  }
  close(ready[0]);
  if (failed || live_workers(d) < d->workers) {
    fprintf(stderr, "ctwistd: workers failed to start\n");
    stop_workers(d);
    return EXIT_START;
  }
  if (ctd_write_pidfile(d) != 0) {
    stop_workers(d);
    return EXIT_START;
  }
  for (int i = 0; i < d->nlisten; i++) {
    printf("listening on %s\n", d->worker_addr[i]);
    ct_log(CT_LOG_INFO, "ctwistd", "%s listening on %s with %d workers",
           d->desc->name, d->worker_addr[i], d->workers);
  }
  fflush(stdout);
  if (d->zk_ensemble != NULL && (rc = start_registry(d, &set)) != 0) {
    stop_workers(d);
    return rc;
  }
  ctd_daemon_ready(d);

  rc = 0;
  for (;;) {
    int sig = next_signal(d, &set);
    if (sig == SIGCHLD) {
      if (reap_workers(d, 1) != 0) {
        rc = EXIT_START;
        break;
      }
    } else if (sig == SIGINT || sig == SIGTERM) {
      ct_log(CT_LOG_INFO, "ctwistd", "received signal %d, stopping %d workers",
             sig, live_workers(d));
      withdraw(d);
      break;
    }
  }
  stop_workers(d);
  ct_log(CT_LOG_INFO, "ctwistd", "%s stopped", d->desc->name);
  return rc;
}
