/*
 * Descriptor watchers and signal handlers.
 *
 * Each watcher is one persistent libevent event plus the user's callback.
 * A callback may remove its own watcher: libevent allows event_free() on
 * the event whose callback is running, and the trampolines below never
 * touch the watcher after calling the user.
 *
 * Signals use libevent's evsignal (self-pipe), so handlers run on the
 * reactor thread, outside signal context.  The default SIGINT/SIGTERM
 * handlers (graceful stop) are installed only while a real-clock reactor
 * runs, like Twisted installs its handlers in run(): several reactors may
 * exist, and libevent lets only one base own signals at a time.
 */
#include <fcntl.h>
#include <stdlib.h>

#include "reactor/impl.h"

struct ct__fd_watch {
  struct event *ev;
  ct_reactor *r;
  ct_fd_cb cb;
  void *arg;
  int events; /* CT_READABLE or CT_WRITABLE */
};

struct ct__sig_watch {
  struct event *ev;
  ct_reactor *r;
  ct_signal_cb cb;
  void *arg;
  int is_default;
};

/* ----------------------------------------------------------- descriptors */

static void fd_event_cb(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  struct ct__fd_watch *w = arg;
  /* The callback may free w: nothing after this line may touch it. */
  w->cb(w->r, (int)fd, w->events, w->arg);
}

static int fd_reserve(ct_reactor *r, int fd) {
  if ((size_t)fd < r->fd_cap)
    return 0;
  size_t cap = r->fd_cap ? r->fd_cap : 64;
  while (cap <= (size_t)fd)
    cap *= 2;
  struct ct__fd_watch **rd = calloc(cap, sizeof(struct ct__fd_watch *));
  struct ct__fd_watch **wr = calloc(cap, sizeof(struct ct__fd_watch *));
  if (rd == NULL || wr == NULL) {
    free(rd);
    free(wr);
    return CT_ENOMEM;
  }
  for (size_t i = 0; i < r->fd_cap; i++) {
    rd[i] = r->readers[i];
    wr[i] = r->writers[i];
  }
  free(r->readers);
  free(r->writers);
  r->readers = rd;
  r->writers = wr;
  r->fd_cap = cap;
  return 0;
}

/* Create and add a persistent event; the one place that undoes a half-made
 * event.  CT_EINVAL from event_add means e.g. a regular file under epoll. */
static int add_event(ct_reactor *r, evutil_socket_t fd, short what,
                     event_callback_fn cb, void *arg, struct event **out) {
  struct event *ev = event_new(r->base, fd, what, cb, arg);
  if (ev == NULL)
    return CT_ENOMEM;
  if (event_add(ev, NULL) != 0) {
    event_free(ev);
    return CT_EINVAL;
  }
  *out = ev;
  return 0;
}

static int add_watch(ct_reactor *r, int fd, int events, ct_fd_cb cb,
                     void *arg) {
  if (r == NULL || fd < 0 || cb == NULL)
    return CT_EINVAL;
  if (fcntl(fd, F_GETFD) < 0)
    return CT_EBADF;
  int rc = fd_reserve(r, fd);
  if (rc != 0)
    return rc;
  struct ct__fd_watch **slot =
      events == CT_READABLE ? &r->readers[fd] : &r->writers[fd];
  if (*slot != NULL) { /* replace the callback, keep the registration */
    (*slot)->cb = cb;
    (*slot)->arg = arg;
    return 0;
  }
  struct ct__fd_watch *w = malloc(sizeof(*w));
  if (w == NULL)
    return CT_ENOMEM;
  *w = (struct ct__fd_watch){NULL, r, cb, arg, events};
  short what =
      (short)((events == CT_READABLE ? EV_READ : EV_WRITE) | EV_PERSIST);
  rc = add_event(r, fd, what, fd_event_cb, w, &w->ev);
  if (rc != 0) {
    free(w);
    return rc;
  }
  *slot = w;
  return 0;
}

static int remove_watch(ct_reactor *r, int fd, int events) {
  if (r == NULL || fd < 0)
    return CT_EINVAL;
  if ((size_t)fd >= r->fd_cap)
    return CT_ENOTFOUND;
  struct ct__fd_watch **slot =
      events == CT_READABLE ? &r->readers[fd] : &r->writers[fd];
  struct ct__fd_watch *w = *slot;
  if (w == NULL)
    return CT_ENOTFOUND;
  *slot = NULL;
  event_free(w->ev);
  free(w);
  return 0;
}

int ct_reactor_add_reader(ct_reactor *r, int fd, ct_fd_cb cb, void *arg) {
  return add_watch(r, fd, CT_READABLE, cb, arg);
}

int ct_reactor_add_writer(ct_reactor *r, int fd, ct_fd_cb cb, void *arg) {
  return add_watch(r, fd, CT_WRITABLE, cb, arg);
}

int ct_reactor_remove_reader(ct_reactor *r, int fd) {
  return remove_watch(r, fd, CT_READABLE);
}

int ct_reactor_remove_writer(ct_reactor *r, int fd) {
  return remove_watch(r, fd, CT_WRITABLE);
}

/* --------------------------------------------------------------- signals */

static void sig_event_cb(evutil_socket_t sig, short what, void *arg) {
  (void)what;
  struct ct__sig_watch *w = arg;
  /* The handler may replace or remove itself: do not touch w afterwards. */
  w->cb(w->r, (int)sig, w->arg);
}

/* The first SIGINT/SIGTERM stops gracefully; one during that stop hurries
 * it (aborts what it waits for and returns from run at once). */
static void default_stop(ct_reactor *r, int signum, void *arg) {
  (void)arg;
  if (ct_reactor_stop(r) == 0) {
    ct_log(CT_LOG_INFO, "reactor", "received signal %d, shutting down", signum);
  } else if (!ct_reactor_is_hurried(r)) {
    ct_log(CT_LOG_WARN, "reactor",
           "received signal %d again while stopping: aborting what is left",
           signum);
    ct_reactor_hurry(r);
  }
}

static int sig_install(ct_reactor *r, int signum, ct_signal_cb cb, void *arg,
                       int is_default) {
  struct ct__sig_watch *w = malloc(sizeof(*w));
  if (w == NULL)
    return CT_ENOMEM;
  *w = (struct ct__sig_watch){NULL, r, cb, arg, is_default};
  int rc =
      add_event(r, signum, EV_SIGNAL | EV_PERSIST, sig_event_cb, w, &w->ev);
  if (rc != 0) {
    free(w);
    return rc;
  }
  r->sigs[signum] = w;
  return 0;
}

static void sig_remove(ct_reactor *r, int signum) {
  struct ct__sig_watch *w = r->sigs[signum];
  if (w == NULL)
    return;
  r->sigs[signum] = NULL;
  event_free(w->ev);
  free(w);
}

static int wants_default(const ct_reactor *r, int signum) {
  return r->clock == NULL && r->running &&
         (signum == SIGINT || signum == SIGTERM);
}

int ct_reactor_on_signal(ct_reactor *r, int signum, ct_signal_cb cb,
                         void *arg) {
  if (r == NULL || signum <= 0 || signum >= NSIG || signum == SIGKILL ||
      signum == SIGSTOP)
    return CT_EINVAL;
  struct ct__sig_watch *w = r->sigs[signum];
  if (cb != NULL) {
    if (w != NULL) { /* replace, keeping the libevent registration */
      w->cb = cb;
      w->arg = arg;
      w->is_default = 0;
      return 0;
    }
    return sig_install(r, signum, cb, arg, 0);
  }
  sig_remove(r, signum);
  if (wants_default(r, signum))
    return sig_install(r, signum, default_stop, NULL, 1);
  return 0;
}

void ct__signals_install_defaults(ct_reactor *r) {
  static const int sigs[] = {SIGINT, SIGTERM};
  for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
    if (wants_default(r, sigs[i]) && r->sigs[sigs[i]] == NULL &&
        sig_install(r, sigs[i], default_stop, NULL, 1) != 0)
      ct_log(CT_LOG_WARN, "reactor", "cannot handle signal %d", sigs[i]);
}

void ct__signals_remove_defaults(ct_reactor *r) {
  for (int s = 1; s < NSIG; s++)
    if (r->sigs[s] != NULL && r->sigs[s]->is_default)
      sig_remove(r, s);
}

/* ------------------------------------------------------------------ free */

void ct__io_free(ct_reactor *r) {
  for (size_t fd = 0; fd < r->fd_cap; fd++) {
    remove_watch(r, (int)fd, CT_READABLE);
    remove_watch(r, (int)fd, CT_WRITABLE);
  }
  free(r->readers);
  free(r->writers);
  r->readers = r->writers = NULL;
  r->fd_cap = 0;
  for (int s = 1; s < NSIG; s++)
    sig_remove(r, s);
}
