/*
 * child.c: the child reaper (see reactor/child.h).
 *
 * Watched children live in a small array.  A sweep (on SIGCHLD, and once
 * after each new watch so that a child that exited before the handler saw
 * it is not missed) first reaps every child that has exited, then runs
 * their callbacks, so callbacks may add or remove watches freely.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "ctwist/log.h"
#include "reactor/child.h"
#include "reactor/internal.h"

typedef struct watch {
  pid_t pid;
  ct__child_cb cb;
  void *arg;
} watch;

typedef struct reaper {
  ct_reactor *r;
  watch *w;
  size_t n, cap;
  int sweep_queued;
} reaper;

static void reaper_close(ct_reactor *r, void *state);
static void reaper_free(ct_reactor *r, void *state);
static const ct__service_ops reaper_ops = {"child reaper", reaper_close,
                                           reaper_free};

typedef struct reaped {
  watch w;
  int status;
} reaped;

static void sweep(reaper *rp) {
  /* Reap first, then call: the callbacks may change the array. */
  reaped done[64];
  size_t ndone;
  do {
    ndone = 0;
    for (size_t i = 0; i < rp->n && ndone < 64;) {
      int status = 0;
      pid_t got;
      do {
        got = waitpid(rp->w[i].pid, &status, WNOHANG);
      } while (got < 0 && errno == EINTR);
      if (got == 0) {
        i++;
        continue;
      }
      if (got < 0) {
        /* ECHILD: someone else reaped it (a waitpid(-1) elsewhere in the
         * process); the exit status is lost. */
        ct_log(CT_LOG_WARN, "process",
               "child %d was reaped outside the reactor; its exit status "
               "is unknown",
               (int)rp->w[i].pid);
        status = -1;
      }
      done[ndone++] = (reaped){rp->w[i], status};
      rp->w[i] = rp->w[--rp->n];
    }
    for (size_t i = 0; i < ndone; i++)
      done[i].w.cb(done[i].w.pid, done[i].status, done[i].w.arg);
  } while (ndone == 64);
}

static void sigchld_cb(ct_reactor *r, int signum, void *arg) {
  (void)r;
  (void)signum;
  sweep(arg);
}

static void sweep_soon_cb(void *arg) {
  reaper *rp = arg;
  rp->sweep_queued = 0;
  sweep(rp);
}

static reaper *reaper_get(ct_reactor *r) {
  reaper *rp = ct__reactor_service(r, &reaper_ops);
  if (rp != NULL)
    return rp;
  rp = calloc(1, sizeof *rp);
  if (rp == NULL)
    return NULL;
  rp->r = r;
  if (ct_reactor_on_signal(r, SIGCHLD, sigchld_cb, rp) != 0 ||
      ct__reactor_service_add(r, &reaper_ops, rp) != 0) {
    ct_reactor_on_signal(r, SIGCHLD, NULL, NULL);
    free(rp);
    return NULL;
  }
  return rp;
}

int ct__child_watch(ct_reactor *r, pid_t pid, ct__child_cb cb, void *arg) {
  if (r == NULL || pid <= 0 || cb == NULL)
    return CT_EINVAL;
  reaper *rp = reaper_get(r);
  if (rp == NULL)
    return CT_ENOMEM;
  if (rp->n == rp->cap) {
    size_t cap = rp->cap ? rp->cap * 2 : 16;
    watch *w = realloc(rp->w, cap * sizeof *w);
    if (w == NULL)
      return CT_ENOMEM;
    rp->w = w;
    rp->cap = cap;
  }
  rp->w[rp->n++] = (watch){pid, cb, arg};
  if (!rp->sweep_queued && ct__reactor_call_soon(r, sweep_soon_cb, rp) == 0)
    rp->sweep_queued = 1;
  return 0;
}

void ct__child_unwatch(ct_reactor *r, pid_t pid) {
  reaper *rp = ct__reactor_service(r, &reaper_ops);
  if (rp == NULL)
    return;
  for (size_t i = 0; i < rp->n; i++) {
    if (rp->w[i].pid == pid) {
      rp->w[i] = rp->w[--rp->n];
      return;
    }
  }
}

/* Children still running when the reactor goes are not waited for (that
 * could block for ever); whoever exited meanwhile is reaped so that no
 * zombie is left behind. */
static void reaper_close(ct_reactor *r, void *state) {
  reaper *rp = state;
  for (size_t i = 0; i < rp->n; i++) {
    int status;
    waitpid(rp->w[i].pid, &status, WNOHANG);
  }
  rp->n = 0;
  ct_reactor_on_signal(r, SIGCHLD, NULL, NULL);
}

static void reaper_free(ct_reactor *r, void *state) {
  (void)r;
  reaper *rp = state;
  free(rp->w);
  free(rp);
}
