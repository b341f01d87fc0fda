/*
 * The reactor's reach, timed against bare references in the same run:
 *
 *   defer_to_thread  one job at a time through ct_defer_to_thread (submit,
 *                    run on a worker, Deferred fires on the reactor thread,
 *                    its callback submits the next): microseconds per round
 *                    trip, against a bare pthread worker fed under a mutex
 *                    and answering through an eventfd the main thread
 *                    poll()s -- the least a thread round trip costs.
 *   spawn            one child at a time through ct_spawn_process
 *                    (/bin/true, reaped on SIGCHLD, process_ended spawns the
 *                    next), with /dev/null and with the default pipes,
 *                    against posix_spawn + waitpid in a loop.
 *
 * Usage: bench_reach [JOBS] [CHILDREN]   (defaults 20000 and 300)
 */
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/wait.h>

#include "bench_util.h"
#include "ctwist/ctwist.h"

extern char **environ;

/* --------------------------------------------------- defer_to_thread */

static ct_reactor *R;
static long jobs_left;

static ct_result trivial_job(void *arg) {
  (void)arg;
  return (ct_result){.value = CT_NONE};
}

static void submit(void);

static ct_step job_done(ct_result r, void *arg) {
  (void)arg;
  if (r.failure != NULL) {
    ct_failure_print(r.failure, stderr);
    ct_failure_free(r.failure);
    ct_reactor_stop(R);
    return ct_pass(CT_NONE);
  }
  if (--jobs_left > 0)
    submit();
  else
    ct_reactor_stop(R);
  return ct_pass(CT_NONE);
}

static void submit(void) {
  ct_deferred *d = ct_defer_to_thread(R, trivial_job, NULL);
  ct_deferred_add_both(d, job_done, NULL);
  ct_deferred_unref(d);
}

static void start_jobs(void *arg) {
  (void)arg;
  submit();
}

/* Run R from `start` until something stops it; free it; microseconds per
 * each of `n` operations. */
static double timed_run(ct_call_cb start, long n) {
  ct_reactor_call_when_running(R, start, NULL);
  double t0 = bench_seconds(CLOCK_MONOTONIC);
  ct_reactor_run(R);
  double t = bench_seconds(CLOCK_MONOTONIC) - t0;
  ct_reactor_free(R);
  return t / (double)n * 1e6;
}

static double ctwist_threads(long n) {
  R = ct_reactor_new();
  ct_threadpool_config cfg = {.threads = 1};
  ct_threadpool_configure(R, &cfg);
  jobs_left = n;
  return timed_run(start_jobs, n);
}

/* The reference: one worker, a mutex+condvar job slot, an eventfd back. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int job_ready, quit;
static int efd;

static void *ref_worker(void *arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  for (;;) {
    while (!job_ready && !quit)
      pthread_cond_wait(&cv, &mu);
    if (quit)
      break;
    job_ready = 0;
    pthread_mutex_unlock(&mu);
    (void)trivial_job(NULL);
    uint64_t one = 1;
    if (write(efd, &one, sizeof one) < 0)
      abort();
    pthread_mutex_lock(&mu);
  }
  pthread_mutex_unlock(&mu);
  return NULL;
}

static double ref_threads(long n) {
  efd = eventfd(0, EFD_CLOEXEC);
  pthread_t th;
  pthread_create(&th, NULL, ref_worker, NULL);
  double t0 = bench_seconds(CLOCK_MONOTONIC);
  for (long i = 0; i < n; i++) {
    pthread_mutex_lock(&mu);
    job_ready = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    struct pollfd p = {.fd = efd, .events = POLLIN};
    poll(&p, 1, -1);
    uint64_t v;
    if (read(efd, &v, sizeof v) < 0)
      abort();
  }
  double t = bench_seconds(CLOCK_MONOTONIC) - t0;
  pthread_mutex_lock(&mu);
  quit = 1;
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
  pthread_join(th, NULL);
  close(efd);
  return t / (double)n * 1e6;
}

/* ---------------------------------------------------------------- spawn */

static long children_left;
static const ct_process_options *spawn_opts;
static const char *const true_argv[] = {"/bin/true", NULL};

static void spawn_next(void);

static void ended(ct_process *p, const ct_failure *why, void *arg) {
  (void)p;
  (void)arg;
  if (why->code != CT_ECONNDONE) {
    fprintf(stderr, "child failed: %s\n", why->message);
    ct_reactor_stop(R);
    return;
  }
  if (--children_left > 0)
    spawn_next();
  else
    ct_reactor_stop(R);
}

static const ct_process_protocol_ops bench_ops = {.process_ended = ended};

static void spawn_next(void) {
  ct_failure *err = NULL;
  if (ct_spawn_process(R, &bench_ops, NULL, true_argv, spawn_opts, &err) ==
      NULL) {
    ct_failure_print(err, stderr);
    ct_failure_free(err);
    ct_reactor_stop(R);
  }
}

static void start_spawns(void *arg) {
  (void)arg;
  spawn_next();
}

static double ctwist_spawn(long n, const ct_process_options *opts) {
  R = ct_reactor_new();
  children_left = n;
  spawn_opts = opts;
  return timed_run(start_spawns, n);
}

static double ref_spawn(long n) {
  double t0 = bench_seconds(CLOCK_MONOTONIC);
  for (long i = 0; i < n; i++) {
    pid_t pid;
    if (posix_spawn(&pid, true_argv[0], NULL, NULL, (char *const *)true_argv,
                    environ) != 0)
      abort();
    int st;
    waitpid(pid, &st, 0);
  }
  double t = bench_seconds(CLOCK_MONOTONIC) - t0;
  return t / (double)n * 1e6;
}

int main(int argc, char **argv) {
  long jobs = argc > 1 ? atol(argv[1]) : 20000;
  long kids = argc > 2 ? atol(argv[2]) : 300;
  if (jobs <= 0 || kids <= 0) {
    fprintf(stderr, "usage: bench_reach [JOBS] [CHILDREN]\n");
    return 2;
  }
  double ct = ctwist_threads(jobs), ref = ref_threads(jobs);
  printf("defer_to_thread round trip: ctwist %.2f us/job, pthread+eventfd "
         "%.2f us/job, ratio %.2f (%ld jobs)\n",
         ct, ref, ct / ref, jobs);
  ct_process_options null = {.fds = {{CT_CHILD_DEVNULL, 0},
                                     {CT_CHILD_DEVNULL, 0},
                                     {CT_CHILD_DEVNULL, 0}}};
  double sp_null = ctwist_spawn(kids, &null);
  double sp_pipes = ctwist_spawn(kids, NULL);
  double sp_ref = ref_spawn(kids);
  printf("spawn+exit: ctwist %.1f us/child (/dev/null), %.1f us/child (3 "
         "pipes), posix_spawn+waitpid %.1f us/child, ratios %.2f / %.2f (%ld "
         "children)\n",
         sp_null, sp_pipes, sp_ref, sp_null / sp_ref, sp_pipes / sp_ref, kids);
  return 0;
}
