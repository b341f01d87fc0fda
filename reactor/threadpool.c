/*
 * threadpool.c: the reactor's pool of worker threads for blocking work.
 *
 * One mutex guards the queue, the list of finished jobs and the counters;
 * workers sleep on one condition variable.  A finished job goes on the
 * `done` list and the first job of a batch posts one drain call through
 * ct_reactor_call_from_thread(), so a burst of results costs one wake-up.
 * `finish` then runs on the reactor thread: nothing a job produces is
 * touched by two threads at once, and the job's `cancelled` flag is only
 * read and written on the reactor thread.
 *
 * Threads are created on demand, up to the configured size, when a job is
 * queued and no worker is idle.  They block every signal, so signals keep
 * going to the reactor thread.
 *
 * Shutdown (a DURING trigger): queued jobs finish as cancelled, the
 * workers are told to quit once the queue is empty, and the phase is held
 * until each has posted its exit (then they are joined) or the grace
 * period runs out (then the shutdown goes on and ct_reactor_free() joins
 * them, waiting for their jobs).
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "ctwist/log.h"
#include "reactor/impl.h"
#include "reactor/threadpool.h"

enum { J_QUEUED = 1, J_RUNNING, J_DONE };

typedef struct pool {
  ct_reactor *r;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  /* Under mu. */
  ct__job *qhead, *qtail;
  size_t queued, running, done_count;
  ct__job *done_head, *done_tail;
  int drain_posted;
  size_t idle;   /* workers waiting on cv */
  size_t exited; /* workers past their loop, not yet joined */
  int quit;      /* workers leave once the queue is empty */
  /* Reactor thread only (the array is only read by the reactor thread). */
  pthread_t *threads;
  size_t nthreads;
  size_t max_threads, queue_max;
  double grace;
  long trigger_id;
  int stopping;
  ct_phase_hold *hold;
  ct_delayed_call *grace_timer;
} pool;

static void pool_close(ct_reactor *r, void *state);
static void pool_free(ct_reactor *r, void *state);
static const ct__service_ops pool_ops = {"threadpool", pool_close, pool_free};

static size_t default_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (size_t)n : 1;
}

/* --------------------------------------------------------------- workers */

static void drain_cb(void *arg);
static void exit_cb(void *arg);

/* Called with mu held: post one drain per batch of finished jobs.  If the
 * reactor is being freed the call is refused: pool_close drains then. */
static void post_drain(pool *p) {
  if (p->drain_posted)
    return;
  p->drain_posted = 1;
  ct_reactor_call_from_thread(p->r, drain_cb, p);
}

static void *worker_main(void *arg) {
  pool *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (p->qhead == NULL && !p->quit) {
      p->idle++;
      pthread_cond_wait(&p->cv, &p->mu);
      p->idle--;
    }
    if (p->qhead == NULL)
      break; /* quit, and nothing left */
    ct__job *j = p->qhead;
    p->qhead = j->next;
    if (p->qhead == NULL)
      p->qtail = NULL;
    else
      p->qhead->prev = NULL;
    p->queued--;
    p->running++;
    j->state = J_RUNNING;
    pthread_mutex_unlock(&p->mu);
    j->work(j);
    pthread_mutex_lock(&p->mu);
    p->running--;
    p->done_count++;
    j->state = J_DONE;
    j->next = NULL;
    if (p->done_tail != NULL)
      p->done_tail->next = j;
    else
      p->done_head = j;
    p->done_tail = j;
    post_drain(p);
  }
  p->exited++;
  ct_reactor_call_from_thread(p->r, exit_cb, p);
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/* Reactor thread: hand finished jobs to their owners. */
static void drain_done(pool *p) {
  pthread_mutex_lock(&p->mu);
  ct__job *j = p->done_head;
  p->done_head = p->done_tail = NULL;
  p->drain_posted = 0;
  pthread_mutex_unlock(&p->mu);
  while (j != NULL) {
    ct__job *next = j->next;
    j->ran = 1;
    j->finish(j);
    j = next;
  }
}

static void drain_cb(void *arg) {
  drain_done(arg);
}

/* Start one more worker; mu held.  Returns 0 or -1. */
static int spawn_worker(pool *p) {
  pthread_t *t = realloc(p->threads, (p->nthreads + 1) * sizeof(*t));
  if (t == NULL)
    return -1;
  p->threads = t;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&p->threads[p->nthreads], NULL, worker_main, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0)
    return -1;
  p->nthreads++;
  return 0;
}

/* Join every worker (they must have been told to quit). */
static void join_all(pool *p) {
  for (size_t i = 0; i < p->nthreads; i++)
    pthread_join(p->threads[i], NULL);
  free(p->threads);
  p->threads = NULL;
  p->nthreads = 0;
  pthread_mutex_lock(&p->mu);
  p->exited = 0;
  p->quit = 0;
  pthread_mutex_unlock(&p->mu);
}

/* Take the queue (mu held by the caller) and finish each job unrun. */
static void cancel_queued(pool *p, ct__job *j) {
  while (j != NULL) {
    ct__job *next = j->next;
    j->cancelled = 1;
    j->ran = 0;
    j->finish(j);
    j = next;
  }
}

static ct__job *take_queue(pool *p) {
  ct__job *j = p->qhead;
  p->qhead = p->qtail = NULL;
  p->queued = 0;
  return j;
}

/* Tell the workers to quit once idle, and finish the queued jobs unrun. */
static void stop_workers(pool *p) {
  pthread_mutex_lock(&p->mu);
  ct__job *q = take_queue(p);
  p->quit = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  cancel_queued(p, q);
}

/* ------------------------------------------------------------- shutdown */

static void shutdown_done(pool *p) {
  if (p->grace_timer != NULL) {
    ct_delayed_call_cancel(p->grace_timer);
    p->grace_timer = NULL;
  }
  ct_phase_hold *h = p->hold;
  p->hold = NULL;
  ct_phase_hold_release(h);
}

static void exit_cb(void *arg) {
  pool *p = arg;
  if (!p->stopping)
    return;
  pthread_mutex_lock(&p->mu);
  int all = p->exited == p->nthreads;
  pthread_mutex_unlock(&p->mu);
  if (!all)
    return;
  join_all(p);
  drain_done(p); /* results that raced the exit */
  p->stopping = 0;
  shutdown_done(p);
}

static void grace_cb(void *arg) {
  pool *p = arg;
  p->grace_timer = NULL;
  pthread_mutex_lock(&p->mu);
  size_t running = p->running;
  pthread_mutex_unlock(&p->mu);
  ct_log(CT_LOG_WARN, "threadpool",
         "%zu job(s) still running after the %g s grace period: shutdown "
         "goes on; ct_reactor_free() will wait for them",
         running, p->grace);
  shutdown_done(p);
}

static void shutdown_trigger(void *arg) {
  pool *p = arg;
  if (p->nthreads == 0)
    return;
  p->stopping = 1;
  stop_workers(p);
  p->hold = ct_reactor_hold_phase(p->r);
  p->grace_timer = ct_call_later(p->r, p->grace, grace_cb, p);
  exit_cb(p); /* they may all be gone already */
}

/* ----------------------------------------------------------- the service */

static pool *pool_get(ct_reactor *r) {
  pool *p = ct__reactor_service(r, &pool_ops);
  if (p != NULL)
    return p;
  p = calloc(1, sizeof *p);
  if (p == NULL)
    return NULL;
  p->r = r;
  p->max_threads = default_threads();
  p->queue_max = CT_THREADPOOL_DEFAULT_QUEUE;
  p->grace = CT_THREADPOOL_DEFAULT_GRACE;
  if (pthread_mutex_init(&p->mu, NULL) != 0) {
    free(p);
    return NULL;
  }
  if (pthread_cond_init(&p->cv, NULL) != 0) {
    pthread_mutex_destroy(&p->mu);
    free(p);
    return NULL;
  }
  p->trigger_id =
      ct_reactor_add_trigger(r, CT_PHASE_DURING, shutdown_trigger, p);
  if (p->trigger_id < 0 || ct__reactor_service_add(r, &pool_ops, p) != 0) {
    if (p->trigger_id > 0)
      ct_reactor_remove_trigger(r, p->trigger_id);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return NULL;
  }
  return p;
}

/* While the reactor is still whole: drop the queue, let running jobs end
 * (this waits for them), and deliver what they produced. */
static void pool_close(ct_reactor *r, void *state) {
  (void)r;
  pool *p = state;
  stop_workers(p);
  join_all(p);
  drain_done(p);
  if (p->grace_timer != NULL) {
    ct_delayed_call_cancel(p->grace_timer);
    p->grace_timer = NULL;
  }
}

static void pool_free(ct_reactor *r, void *state) {
  (void)r;
  pool *p = state;
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

int ct_threadpool_configure(ct_reactor *r, const ct_threadpool_config *cfg) {
  if (r == NULL)
    return CT_EINVAL;
  size_t threads =
      cfg != NULL && cfg->threads ? cfg->threads : default_threads();
  size_t queue_max = cfg != NULL && cfg->queue_max
                         ? cfg->queue_max
                         : CT_THREADPOOL_DEFAULT_QUEUE;
  double grace =
      cfg != NULL && cfg->grace != 0 ? cfg->grace : CT_THREADPOOL_DEFAULT_GRACE;
  if (threads > 4096 || queue_max > 1000000 || !(grace >= 0 && grace <= 1e6))
    return CT_EINVAL;
  pool *p = pool_get(r);
  if (p == NULL)
    return CT_ENOMEM;
  pthread_mutex_lock(&p->mu);
  int busy = p->queued > 0 || p->running > 0 || p->done_head != NULL;
  pthread_mutex_unlock(&p->mu);
  if (busy || p->stopping)
    return CT_ESTATE;
  p->max_threads = threads;
  p->queue_max = queue_max;
  p->grace = grace;
  return 0;
}

int ct__pool_submit(ct_reactor *r, ct__job *j) {
  if (r == NULL || j == NULL || j->work == NULL || j->finish == NULL)
    return CT_EINVAL;
  pool *p = pool_get(r);
  if (p == NULL)
    return CT_ENOMEM;
  if (p->stopping)
    return CT_ESTATE;
  pthread_mutex_lock(&p->mu);
  if (p->queued >= p->queue_max) {
    pthread_mutex_unlock(&p->mu);
    return CT_EQUEUEFULL;
  }
  j->cancelled = 0;
  j->ran = 0;
  j->state = J_QUEUED;
  j->next = NULL;
  j->prev = p->qtail;
  if (p->qtail != NULL)
    p->qtail->next = j;
  else
    p->qhead = j;
  p->qtail = j;
  p->queued++;
  if (p->queued > p->idle && p->nthreads < p->max_threads &&
      spawn_worker(p) != 0 && p->nthreads == 0) {
    /* No worker at all: nothing would ever run the job. */
    p->qhead = p->qtail = NULL;
    p->queued = 0;
    pthread_mutex_unlock(&p->mu);
    return CT_ENOMEM;
  }
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

int ct__pool_cancel(ct_reactor *r, ct__job *j) {
  pool *p = ct__reactor_service(r, &pool_ops);
  if (p == NULL || j == NULL)
    return 0;
  pthread_mutex_lock(&p->mu);
  if (j->state == J_QUEUED) {
    if (j->prev != NULL)
      j->prev->next = j->next;
    else
      p->qhead = j->next;
    if (j->next != NULL)
      j->next->prev = j->prev;
    else
      p->qtail = j->prev;
    p->queued--;
    j->state = 0;
    pthread_mutex_unlock(&p->mu);
    return 1;
  }
  pthread_mutex_unlock(&p->mu);
  j->cancelled = 1;
  return 0;
}

const char *ct__pool_submit_error(int code) {
  switch (code) {
  case CT_EQUEUEFULL:
    return "the thread pool's queue is full";
  case CT_ESTATE:
    return "the thread pool is shutting down";
  case CT_ENOMEM:
    return "out of memory (or no worker thread could be started)";
  default:
    return ct_strerror(code);
  }
}

/* --------------------------------------------------------- callInThread */

typedef struct call_job {
  ct__job job; /* first */
  ct_call_cb fn;
  void *arg;
} call_job;

static void call_work(ct__job *j) {
  call_job *c = (call_job *)j;
  c->fn(c->arg);
}

static void call_finish(ct__job *j) {
  free(j);
}

int ct_call_in_thread(ct_reactor *r, ct_call_cb fn, void *arg) {
  if (r == NULL || fn == NULL)
    return CT_EINVAL;
  call_job *c = calloc(1, sizeof *c);
  if (c == NULL)
    return CT_ENOMEM;
  c->job.work = call_work;
  c->job.finish = call_finish;
  c->fn = fn;
  c->arg = arg;
  int rc = ct__pool_submit(r, &c->job);
  if (rc != 0)
    free(c);
  return rc;
}

void ct_threadpool_stats_get(ct_reactor *r, ct_threadpool_stats *out) {
  if (out == NULL)
    return;
  *out = (ct_threadpool_stats){0, 0, 0, 0};
  pool *p = ct__reactor_service(r, &pool_ops);
  if (p == NULL)
    return;
  pthread_mutex_lock(&p->mu);
  out->threads = p->nthreads - p->exited;
  out->queued = p->queued;
  out->running = p->running;
  out->done = p->done_count;
  pthread_mutex_unlock(&p->mu);
}
