/*
 * zk.c: a ZooKeeper session driven by the reactor (ctwist/zk.h).
 *
 * The single-threaded C client does its I/O only when asked: after every
 * call into it we ask zookeeper_interest() which descriptor and events it
 * waits for and how long it may wait, watch that descriptor and arm one
 * timer, and call zookeeper_process() when either fires.  The library
 * closes its descriptor on its own when a connection fails, and a new
 * socket may get the number of the one just closed: so the reactor watches
 * a duplicate we own (never a closed descriptor under a watcher), replaced
 * when the library's descriptor number or socket inode changes.
 * Registrations are in zk_register.c.
 *
 * Completions and watcher callbacks run inside zookeeper_process() (or
 * zookeeper_close(), with ZCLOSING).  They fire Deferreds and run user
 * callbacks; they never close the handle themselves: an expired session is
 * replaced from a timed call.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#include "ctwist/log.h"
#include "ctwist/zk.h"
#include "transports/zk_internal.h"

static void arm_watch(ct_zk_watch *w);

/* ----------------------------------------------------------------- errors */

ct_failure *ct__zk_failure(int rc, const char *op, const char *path) {
  return ct_failure_new_at(__FILE__, __LINE__, CT_ZK_DOMAIN, rc, NULL,
                           "zookeeper %s %s: %s", op, path ? path : "",
                           zerror(rc));
}

/* The library's own log lines are debug for us: it repeats its errors on
 * every connection attempt (once a second through an outage), while this
 * file logs each change of state once. */
static void zk_log_line(const char *message) {
  ct_log(CT_LOG_DEBUG, MODULE, "%s", message);
}

/* ---------------------------------------------------------------- driving */

static void unwatch_fd(ct_zk *z) {
  if (z->wfd >= 0) {
    if (z->wr)
      ct_reactor_remove_reader(z->r, z->wfd);
    if (z->ww)
      ct_reactor_remove_writer(z->r, z->wfd);
    close(z->wfd);
  }
  z->wfd = z->fd = -1;
  z->wr = z->ww = 0;
}

static void on_fd(ct_reactor *r, int fd, int events, void *arg) {
  (void)r;
  (void)fd;
  ct_zk *z = arg;
  if (z->zh == NULL)
    return;
  int ev = 0;
  if (events & CT_READABLE)
    ev |= ZOOKEEPER_READ;
  if (events & CT_WRITABLE)
    ev |= ZOOKEEPER_WRITE;
  z->in_process = 1;
  zookeeper_process(z->zh, ev);
  z->in_process = 0;
  ct__zk_drive(z);
}

static void on_timer(void *arg) {
  ct_zk *z = arg;
  if (z->zh == NULL)
    return;
  z->in_process = 1;
  zookeeper_process(z->zh, 0);
  z->in_process = 0;
  ct__zk_drive(z);
}

static void set_timer(ct_zk *z, double secs) {
  if (z->timer != NULL && ct_delayed_call_active(z->timer) &&
      ct_delayed_call_reset(z->timer, secs) == 0)
    return;
  ct_delayed_call_unref(z->timer);
  z->timer = ct_call_later(z->r, secs, on_timer, z);
  if (z->timer != NULL)
    ct_delayed_call_ref(z->timer);
}

/* Ask the library what it waits for, and wait for exactly that. */
void ct__zk_drive(ct_zk *z) {
  /* From a completion, the caller's zookeeper_process() is still running:
   * its own ct__zk_drive() afterwards sees the new request. */
  if (z->zh == NULL || z->in_process)
    return;
  int fd = -1, interest = 0;
  struct timeval tv = {0, 0};
  int rc = zookeeper_interest(z->zh, &fd, &interest, &tv);
  if (rc == ZINVALIDSTATE) {
    unwatch_fd(z);
    return; /* expired or failed: the session watcher replaces the handle */
  }
  struct stat st;
  if (fd >= 0 && fstat(fd, &st) != 0)
    fd = -1;
  if (fd < 0 || fd != z->fd || st.st_ino != z->ino)
    unwatch_fd(z); /* a new socket (or none) */
  if (fd >= 0 && z->wfd < 0) {
    z->wfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (z->wfd >= 0) {
      z->fd = fd;
      z->ino = st.st_ino;
    }
  }
  if (z->wfd >= 0) {
    int want_r = (interest & ZOOKEEPER_READ) != 0;
    int want_w = (interest & ZOOKEEPER_WRITE) != 0;
    if (want_r != z->wr) {
      z->wr = want_r && ct_reactor_add_reader(z->r, z->wfd, on_fd, z) == 0;
      if (!want_r)
        ct_reactor_remove_reader(z->r, z->wfd);
    }
    if (want_w != z->ww) {
      z->ww = want_w && ct_reactor_add_writer(z->r, z->wfd, on_fd, z) == 0;
      if (!want_w)
        ct_reactor_remove_writer(z->r, z->wfd);
    }
  }
  double secs = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
  /* Without a descriptor the timer is all there is: never let it spin. */
  if (rc != ZOK && secs < 0.05)
    secs = 0.05;
  set_timer(z, secs);
}

/* ------------------------------------------------------------ the session */

static void set_state(ct_zk *z, ct_zk_state_t s) {
  if (z->state == s)
    return;
  z->state = s;
  if (z->state_cb != NULL)
    z->state_cb(z, s, z->state_arg);
}

static void notify_lost(ct_zk *z, const char *why) {
  ct_failure *f =
      ct_failure_new_at(__FILE__, __LINE__, CT_ZK_DOMAIN, CT_ZK_ECONNECTIONLOSS,
                        NULL, "ZooKeeper ensemble %s: %s", z->ensemble, why);
  for (ct_zk_watch *w = z->watches; w != NULL; w = w->next) {
    if (w->cancelled)
      continue;
    if (w->kind == W_CHILDREN)
      w->on_children(w, NULL, f, w->arg);
    else
      w->on_node(w, NULL, f, w->arg);
  }
  ct_failure_free(f);
}

static void fire_waiters(ct_zk *z) {
  zk_waiter *list = z->waiters;
  z->waiters = NULL;
  while (list != NULL) {
    zk_waiter *wt = list;
    list = wt->next;
    ct_delayed_call_cancel(wt->timer);
    ct_delayed_call_unref(wt->timer);
    ct_deferred_callback(wt->d, CT_NONE);
    ct_deferred_unref(wt->d);
    free(wt);
  }
}

static void on_connected(ct_zk *z) {
  const clientid_t *id = zoo_client_id(z->zh);
  int64_t sid = id != NULL ? id->client_id : 0;
  int new_session = !z->handle_connected;
  z->handle_connected = 1;
  z->backoff = 0;
  if (new_session) {
    z->sessions++;
    z->session_id = sid;
    ct_log(CT_LOG_INFO, MODULE, "session 0x%llx with %s (session %llu)",
           (unsigned long long)sid, z->ensemble,
           (unsigned long long)z->sessions);
  } else {
    ct_log(CT_LOG_INFO, MODULE, "reconnected to %s (session 0x%llx)",
           z->ensemble, (unsigned long long)sid);
  }
  set_state(z, CT_ZK_CONNECTED);
  fire_waiters(z);
  /* Watches fired while we were away are replayed by the library, but a
   * change it missed is not: read everything again. */
  for (ct_zk_watch *w = z->watches; w != NULL; w = w->next)
    if (!w->cancelled)
      arm_watch(w);
  for (ct_zk_registration *g = z->regs; g != NULL; g = g->next) {
    if (new_session && g->state == G_LIVE) {
      /* Its node belonged to the old session: look again. */
      free(g->path);
      g->path = NULL;
      g->state = G_IDLE;
    }
    ct__zk_reg_kick(g);
  }
}

static void restart_session(void *arg);

static void session_watcher(zhandle_t *zh, int type, int state,
                            const char *path, void *ctx) {
  (void)path;
  (void)zh;
  ct_zk *z = ctx;
  if (type != ZOO_SESSION_EVENT || z->replacing || z->state == CT_ZK_CLOSED)
    return;
  if (state == ZOO_CONNECTED_STATE || state == ZOO_READONLY_STATE) {
    on_connected(z);
  } else if (state == ZOO_CONNECTING_STATE || state == ZOO_ASSOCIATING_STATE) {
    if (z->state == CT_ZK_CONNECTED) {
      ct_log(CT_LOG_WARN, MODULE,
             "lost the connection to ZooKeeper %s; reconnecting", z->ensemble);
      set_state(z, CT_ZK_CONNECTING);
      notify_lost(z, "connection lost, reconnecting");
    }
  } else if (state == ZOO_EXPIRED_SESSION_STATE ||
             state == ZOO_AUTH_FAILED_STATE) {
    if (z->restart != NULL)
      return;
    /* Jittered and doubling, so that a fleet whose sessions expired
     * together does not come back in one burst. */
    double base = z->backoff > 0 ? z->backoff * 2 : z->o.backoff_initial;
    if (base > z->o.backoff_max)
      base = z->o.backoff_max;
    z->backoff = base;
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
      rnd = (uint32_t)getpid();
    double delay = base * (0.5 + (double)(rnd % 1000) / 1000.0);
    ct_log(CT_LOG_WARN, MODULE, "session 0x%llx %s; a new session in %.2f s",
           (unsigned long long)z->session_id,
           state == ZOO_EXPIRED_SESSION_STATE ? "expired"
                                              : "failed to "
                                                "authenticate",
           delay);
    set_state(z, CT_ZK_EXPIRED);
    notify_lost(z, "session expired, opening a new one");
    z->restart = ct_call_later(z->r, delay, restart_session, z);
    if (z->restart != NULL)
      ct_delayed_call_ref(z->restart);
  }
}

static int open_handle(ct_zk *z) {
  z->handle_connected = 0;
  z->zh = zookeeper_init2(z->ensemble, session_watcher,
                          (int)(z->o.session_timeout * 1000), NULL, z, 0,
                          zk_log_line);
  if (z->zh == NULL)
    return errno != 0 ? -errno : CT_EINVAL;
  ct__zk_drive(z);
  return 0;
}

/* Close the handle without touching the records: completions still held by
 * the library run now with ZCLOSING (they see `replacing`). */
static void close_handle(ct_zk *z) {
  if (z->zh == NULL)
    return;
  unwatch_fd(z);
  if (z->timer != NULL)
    ct_delayed_call_cancel(z->timer);
  z->replacing = 1;
  zookeeper_close(z->zh);
  z->replacing = 0;
  z->zh = NULL;
  /* Nothing of the old handle refers to our records any more. */
  for (ct_zk_watch *w = z->watches; w != NULL; w = w->next)
    w->inflight = w->armed = 0;
  for (ct_zk_registration *g = z->regs; g != NULL; g = g->next)
    g->inflight = 0;
}

static void reap_watches(ct_zk *z);

static void restart_session(void *arg) {
  ct_zk *z = arg;
  ct_delayed_call_unref(z->restart);
  z->restart = NULL;
  close_handle(z);
  reap_watches(z);
  for (ct_zk_registration *g = z->regs; g != NULL; g = g->next)
    if (g->state == G_BUSY)
      g->state = G_IDLE;
  set_state(z, CT_ZK_CONNECTING);
  int rc = open_handle(z);
  if (rc != 0) {
    ct_log(CT_LOG_ERROR, MODULE, "cannot open a ZooKeeper handle for %s: %s",
           z->ensemble, ct_strerror(rc));
    z->restart = ct_call_later(z->r, z->o.backoff_max, restart_session, z);
    if (z->restart != NULL)
      ct_delayed_call_ref(z->restart);
  }
}

static void random_guid(char out[33]) {
  unsigned char b[16];
  if (getrandom(b, sizeof b, GRND_NONBLOCK) != (ssize_t)sizeof b) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t x = ((uint64_t)tv.tv_sec << 32) ^ (uint64_t)tv.tv_usec ^
                 ((uint64_t)getpid() << 16);
    for (size_t i = 0; i < sizeof b; i++) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      b[i] = (unsigned char)(x >> 56);
    }
  }
  for (size_t i = 0; i < sizeof b; i++)
    snprintf(out + 2 * i, 3, "%02x", b[i]);
}

ct_zk *ct_zk_new(ct_reactor *r, const char *ensemble, const ct_zk_options *opts,
                 ct_failure **err) {
  if (r == NULL || ensemble == NULL || ensemble[0] == '\0' ||
      strchr(ensemble, ':') == NULL) {
    if (err != NULL)
      *err = ct_failure_new(CT_EINVAL,
                            "bad ZooKeeper ensemble '%s': expected "
                            "HOST:PORT[,HOST:PORT...][/chroot]",
                            ensemble ? ensemble : "(null)");
    return NULL;
  }
  ct_zk *z = calloc(1, sizeof *z);
  if (z == NULL || (z->ensemble = strdup(ensemble)) == NULL) {
    free(z);
    if (err != NULL)
      *err = ct_failure_new(CT_ENOMEM, "out of memory");
    return NULL;
  }
  z->r = r;
  z->fd = z->wfd = -1;
  if (opts != NULL)
    z->o = *opts;
  if (z->o.session_timeout <= 0)
    z->o.session_timeout = CT_ZK_SESSION_TIMEOUT_DEFAULT;
  if (z->o.connect_timeout <= 0)
    z->o.connect_timeout = CT_ZK_CONNECT_TIMEOUT_DEFAULT;
  if (z->o.backoff_initial <= 0)
    z->o.backoff_initial = 0.5;
  if (z->o.backoff_max <= 0)
    z->o.backoff_max = 10.0;
  random_guid(z->guid);
  errno = 0;
  int rc = open_handle(z);
  if (rc != 0) {
    if (err != NULL)
      *err = ct_failure_new(rc, "cannot open a ZooKeeper session with '%s': %s",
                            ensemble, ct_strerror(rc));
    free(z->ensemble);
    free(z);
    return NULL;
  }
  return z;
}

static void free_watch(ct_zk_watch *w) {
  free(w->path);
  free(w);
}

/* Free the cancelled watches no request or ZooKeeper watch refers to. */
static void reap_watches(ct_zk *z) {
  ct_zk_watch **pp = &z->watches;
  while (*pp != NULL) {
    ct_zk_watch *w = *pp;
    if (w->cancelled && w->inflight == 0 && w->armed == 0) {
      *pp = w->next;
      free_watch(w);
    } else {
      pp = &w->next;
    }
  }
}

void ct_zk_free(ct_zk *z) {
  if (z == NULL)
    return;
  z->state = CT_ZK_CLOSED;
  if (z->restart != NULL) {
    ct_delayed_call_cancel(z->restart);
    ct_delayed_call_unref(z->restart);
    z->restart = NULL;
  }
  close_handle(z);
  ct_delayed_call_unref(z->timer);
  z->timer = NULL;
  while (z->waiters != NULL) {
    zk_waiter *wt = z->waiters;
    z->waiters = wt->next;
    ct_delayed_call_cancel(wt->timer);
    ct_delayed_call_unref(wt->timer);
    ct_deferred_errback(wt->d,
                        ct__zk_failure(CT_ZK_ECLOSING, "connect", z->ensemble));
    ct_deferred_unref(wt->d);
    free(wt);
  }
  while (z->watches != NULL) {
    ct_zk_watch *w = z->watches;
    z->watches = w->next;
    free_watch(w);
  }
  while (z->regs != NULL) {
    ct_zk_registration *g = z->regs;
    z->regs = g->next;
    if (g->unregistering != NULL) {
      if (!ct_deferred_called(g->unregistering))
        ct_deferred_callback(g->unregistering, CT_NONE); /* closed: gone */
      ct_deferred_unref(g->unregistering);
    }
    ct__zk_free_reg(g);
  }
  free(z->ensemble);
  free(z);
}

static void waiter_timeout(void *arg) {
  zk_waiter *wt = arg;
  ct_zk *z = wt->zk;
  for (zk_waiter **pp = &z->waiters; *pp != NULL; pp = &(*pp)->next) {
    if (*pp == wt) {
      *pp = wt->next;
      break;
    }
  }
  ct_delayed_call_unref(wt->timer);
  ct_deferred_errback(wt->d, ct_failure_new(CT_ETIMEDOUT,
                                            "ZooKeeper ensemble %s unreachable "
                                            "after %g s",
                                            z->ensemble, z->o.connect_timeout));
  ct_deferred_unref(wt->d);
  free(wt);
}

ct_deferred *ct_zk_connected(ct_zk *z) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  if (d == NULL)
    return NULL;
  if (z->state == CT_ZK_CONNECTED) {
    ct_deferred_callback(d, CT_NONE);
    return d;
  }
  zk_waiter *wt = calloc(1, sizeof *wt);
  if (wt == NULL || (wt->timer = ct_call_later(z->r, z->o.connect_timeout,
                                               waiter_timeout, wt)) == NULL) {
    free(wt);
    ct_deferred_errback(d, ct_failure_new(CT_ENOMEM, "out of memory"));
    return d;
  }
  ct_delayed_call_ref(wt->timer);
  wt->zk = z;
  wt->d = ct_deferred_ref(d);
  wt->next = z->waiters;
  z->waiters = wt;
  return d;
}

ct_zk_state_t ct_zk_state(const ct_zk *z) {
  return z->state;
}

int64_t ct_zk_session_id(const ct_zk *z) {
  return z->session_id;
}

uint64_t ct_zk_sessions(const ct_zk *z) {
  return z->sessions;
}

const char *ct_zk_ensemble(const ct_zk *z) {
  return z->ensemble;
}

void ct_zk_on_state(ct_zk *z, ct_zk_state_cb cb, void *arg) {
  z->state_cb = cb;
  z->state_arg = arg;
}

/* ------------------------------------------------------------- operations */

void ct_zk_node_free(void *p) {
  ct_zk_node *n = p;
  if (n == NULL)
    return;
  free(n->data);
  free(n);
}

void ct_zk_children_free(void *p) {
  ct_zk_children *c = p;
  if (c == NULL)
    return;
  for (size_t i = 0; i < c->n; i++)
    free(c->names[i]);
  free(c->names);
  free(c);
}

static void copy_stat(ct_zk_stat *out, const struct Stat *s) {
  memset(out, 0, sizeof *out);
  if (s == NULL)
    return;
  out->czxid = s->czxid;
  out->mzxid = s->mzxid;
  out->ephemeral_owner = s->ephemeralOwner;
  out->version = s->version;
  out->num_children = s->numChildren;
  out->data_length = s->dataLength;
}

static ct_zk_node *make_node(const char *value, int len, const struct Stat *s) {
  ct_zk_node *n = calloc(1, sizeof *n);
  size_t l = len > 0 ? (size_t)len : 0;
  if (n == NULL || (n->data = malloc(l + 1)) == NULL) {
    free(n);
    return NULL;
  }
  if (l > 0)
    memcpy(n->data, value, l);
  n->data[l] = '\0';
  n->len = l;
  copy_stat(&n->stat, s);
  return n;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static ct_zk_children *make_children(const struct String_vector *v) {
  ct_zk_children *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  size_t n = v != NULL && v->count > 0 ? (size_t)v->count : 0;
  c->names = calloc(n + 1, sizeof *c->names);
  if (c->names == NULL) {
    free(c);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    if ((c->names[i] = strdup(v->data[i])) == NULL) {
      c->n = i;
      ct_zk_children_free(c);
      return NULL;
    }
  }
  c->n = n;
  qsort(c->names, n, sizeof *c->names, cmp_names);
  return c;
}

/* One request of ct_zk_create/delete/get/exists/get_children. */
typedef struct zk_op {
  ct_zk *zk;
  ct_deferred *d;
  const char *what;
  char *path;
} zk_op;

static zk_op *op_new(ct_zk *z, const char *what, const char *path) {
  zk_op *op = calloc(1, sizeof *op);
  if (op == NULL)
    return NULL;
  op->d = ct_deferred_new(NULL, NULL);
  op->path = strdup(path);
  if (op->d == NULL || op->path == NULL) {
    ct_deferred_unref(op->d);
    free(op->path);
    free(op);
    return NULL;
  }
  op->zk = z;
  op->what = what;
  return op;
}

/* Hand back the caller's Deferred; `rc` is what the library said when the
 * request was submitted (non-zero: the completion will not run). */
static ct_deferred *op_submitted(zk_op *op, int rc) {
  ct_zk *z = op->zk;
  ct_deferred *d = ct_deferred_ref(op->d);
  if (rc != ZOK) {
    ct_deferred_errback(op->d, ct__zk_failure(rc, op->what, op->path));
    ct_deferred_unref(op->d);
    free(op->path);
    free(op);
  }
  ct__zk_drive(z);
  return d;
}

static void op_finish(zk_op *op, int rc, ct_value v) {
  if (rc == ZCLOSING && op->zk->replacing && op->zk->state != CT_ZK_CLOSED)
    rc = ZSESSIONEXPIRED;
  if (rc != ZOK) {
    ct_value_free(v);
    ct_deferred_errback(op->d, ct__zk_failure(rc, op->what, op->path));
  } else {
    ct_deferred_callback(op->d, v);
  }
  ct_deferred_unref(op->d);
  free(op->path);
  free(op);
}

static ct_deferred *op_refused(ct_zk *z, const char *what, const char *path) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  if (d != NULL)
    ct_deferred_errback(d, ct__zk_failure(z->state == CT_ZK_CLOSED
                                              ? CT_ZK_ECLOSING
                                              : CT_ZK_ESESSIONEXPIRED,
                                          what, path));
  return d;
}

static void create_done(int rc, const char *value, const void *data) {
  zk_op *op = (zk_op *)data;
  char *p = rc == ZOK && value != NULL ? strdup(value) : NULL;
  op_finish(op, rc == ZOK && p == NULL ? ZSYSTEMERROR : rc,
            ct_value_of(p, free));
}

static int zk_mode(int flags) {
  if ((flags & CT_ZK_EPHEMERAL) && (flags & CT_ZK_SEQUENCE))
    return ZOO_EPHEMERAL_SEQUENTIAL;
  if (flags & CT_ZK_EPHEMERAL)
    return ZOO_EPHEMERAL;
  if (flags & CT_ZK_SEQUENCE)
    return ZOO_PERSISTENT_SEQUENTIAL;
  return ZOO_PERSISTENT;
}

ct_deferred *ct_zk_create(ct_zk *z, const char *path, const void *data,
                          size_t len, int flags) {
  if (z->zh == NULL)
    return op_refused(z, "create", path);
  zk_op *op = op_new(z, "create", path);
  if (op == NULL)
    return NULL;
  int rc = zoo_acreate(z->zh, path, data, data != NULL ? (int)len : -1,
                       &ZOO_OPEN_ACL_UNSAFE, zk_mode(flags), create_done, op);
  return op_submitted(op, rc);
}

static void delete_done(int rc, const void *data) {
  op_finish((zk_op *)data, rc, CT_NONE);
}

ct_deferred *ct_zk_delete(ct_zk *z, const char *path, int version) {
  if (z->zh == NULL)
    return op_refused(z, "delete", path);
  zk_op *op = op_new(z, "delete", path);
  if (op == NULL)
    return NULL;
  return op_submitted(op, zoo_adelete(z->zh, path, version, delete_done, op));
}

static void get_done(int rc, const char *value, int len, const struct Stat *s,
                     const void *data) {
  ct_zk_node *n = rc == ZOK ? make_node(value, len, s) : NULL;
  op_finish((zk_op *)data, rc == ZOK && n == NULL ? ZSYSTEMERROR : rc,
            ct_value_of(n, ct_zk_node_free));
}

ct_deferred *ct_zk_get(ct_zk *z, const char *path) {
  if (z->zh == NULL)
    return op_refused(z, "get", path);
  zk_op *op = op_new(z, "get", path);
  if (op == NULL)
    return NULL;
  return op_submitted(op, zoo_aget(z->zh, path, 0, get_done, op));
}

static void exists_done(int rc, const struct Stat *s, const void *data) {
  if (rc == ZNONODE) {
    op_finish((zk_op *)data, ZOK, CT_NONE);
    return;
  }
  ct_zk_stat *st = rc == ZOK ? malloc(sizeof *st) : NULL;
  if (st != NULL)
    copy_stat(st, s);
  op_finish((zk_op *)data, rc == ZOK && st == NULL ? ZSYSTEMERROR : rc,
            ct_value_of(st, free));
}

ct_deferred *ct_zk_exists(ct_zk *z, const char *path) {
  if (z->zh == NULL)
    return op_refused(z, "exists", path);
  zk_op *op = op_new(z, "exists", path);
  if (op == NULL)
    return NULL;
  return op_submitted(op, zoo_aexists(z->zh, path, 0, exists_done, op));
}

static void children_done(int rc, const struct String_vector *v,
                          const void *data) {
  ct_zk_children *c = rc == ZOK ? make_children(v) : NULL;
  op_finish((zk_op *)data, rc == ZOK && c == NULL ? ZSYSTEMERROR : rc,
            ct_value_of(c, ct_zk_children_free));
}

ct_deferred *ct_zk_get_children(ct_zk *z, const char *path) {
  if (z->zh == NULL)
    return op_refused(z, "get_children", path);
  zk_op *op = op_new(z, "get_children", path);
  if (op == NULL)
    return NULL;
  return op_submitted(op, zoo_aget_children(z->zh, path, 0, children_done, op));
}

/* ensure_path: create each missing ancestor in turn, then the path. */
typedef struct zk_ensure {
  ct_zk *zk;
  ct_deferred *d;
  char *path;
  size_t at; /* end of the prefix being created */
  void (*done)(void *arg, int rc);
  void *arg;
} zk_ensure;

static void ensure_step(zk_ensure *e);

static void ensure_finish(zk_ensure *e, int rc) {
  if (e->done != NULL)
    e->done(e->arg, rc);
  if (e->d != NULL) {
    if (rc == ZOK)
      ct_deferred_callback(e->d, CT_NONE);
    else
      ct_deferred_errback(e->d, ct__zk_failure(rc, "ensure_path", e->path));
    ct_deferred_unref(e->d);
  }
  free(e->path);
  free(e);
}

static void ensure_created(int rc, const char *value, const void *data) {
  (void)value;
  zk_ensure *e = (zk_ensure *)data;
  if (rc == ZCLOSING && e->zk->replacing)
    rc = ZSESSIONEXPIRED;
  if (rc != ZOK && rc != ZNODEEXISTS) {
    ensure_finish(e, rc);
    return;
  }
  if (e->path[e->at] == '\0') {
    ensure_finish(e, ZOK);
    return;
  }
  ensure_step(e);
}

static void ensure_step(zk_ensure *e) {
  size_t n = e->at + 1;
  while (e->path[n] != '\0' && e->path[n] != '/')
    n++;
  e->at = n;
  char saved = e->path[n];
  e->path[n] = '\0';
  int rc = e->zk->zh == NULL
               ? ZSESSIONEXPIRED
               : zoo_acreate(e->zk->zh, e->path, NULL, -1, &ZOO_OPEN_ACL_UNSAFE,
                             ZOO_PERSISTENT, ensure_created, e);
  e->path[n] = saved;
  if (rc != ZOK)
    ensure_finish(e, rc);
}

/* Start an ensure; `done` (may be NULL) runs before the Deferred fires.
 * Returns 0, or a ZooKeeper code when nothing was started (and `done`
 * will not run). */
int ct__zk_ensure_start(ct_zk *z, const char *path, ct_deferred *d,
                        void (*done)(void *, int), void *arg) {
  if (path[0] != '/' || path[1] == '\0')
    return ZBADARGUMENTS;
  zk_ensure *e = calloc(1, sizeof *e);
  if (e == NULL || (e->path = strdup(path)) == NULL) {
    free(e);
    return ZSYSTEMERROR;
  }
  size_t l = strlen(e->path);
  if (l > 1 && e->path[l - 1] == '/')
    e->path[l - 1] = '\0';
  e->zk = z;
  e->d = d != NULL ? ct_deferred_ref(d) : NULL;
  e->done = done;
  e->arg = arg;
  e->at = 0;
  ensure_step(e);
  ct__zk_drive(z);
  return ZOK;
}

ct_deferred *ct_zk_ensure_path(ct_zk *z, const char *path) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  if (d == NULL)
    return NULL;
  int rc = ct__zk_ensure_start(z, path, d, NULL, NULL);
  if (rc != ZOK)
    ct_deferred_errback(d, ct__zk_failure(rc, "ensure_path", path));
  return d;
}

/* ---------------------------------------------------------------- watches */

static void watch_fired(zhandle_t *zh, int type, int state, const char *path,
                        void *ctx) {
  (void)zh;
  (void)state;
  (void)path;
  ct_zk_watch *w = ctx;
  if (type == ZOO_SESSION_EVENT || w->zk->replacing)
    return; /* the session watcher deals with those */
  w->armed = 0;
  if (w->cancelled) {
    reap_watches(w->zk);
    return;
  }
  arm_watch(w);
}

/* A completion of one of the watch's requests: 1 if the watch is done
 * with (cancelled, or its handle is going). */
static int watch_settle(ct_zk_watch *w, int rc) {
  if (w->inflight > 0)
    w->inflight--;
  if (rc == ZCLOSING || w->zk->replacing || w->zk->state == CT_ZK_CLOSED)
    return 1;
  if (w->cancelled) {
    if (rc == ZOK || rc == ZNONODE)
      w->armed = 1; /* registered anyway: freed when it fires */
    reap_watches(w->zk);
    return 1;
  }
  return 0;
}

static void watch_exists_done(int rc, const struct Stat *s, const void *data);

static void watch_lost(ct_zk_watch *w, int rc) {
  /* Connection loss is reported once, by the session watcher; re-read on
   * the next connect.  Anything else is worth a line. */
  if (rc != ZCONNECTIONLOSS && rc != ZSESSIONEXPIRED && rc != ZOPERATIONTIMEOUT)
    ct_log(CT_LOG_WARN, MODULE, "watch on %s: %s", w->path, zerror(rc));
}

static void watch_children_done(int rc, const struct String_vector *v,
                                const void *data) {
  ct_zk_watch *w = (ct_zk_watch *)data;
  if (watch_settle(w, rc))
    return;
  if (rc == ZOK) {
    w->armed = 1;
    ct_zk_children *c = make_children(v);
    if (c != NULL)
      w->on_children(w, c, NULL, w->arg);
    ct_zk_children_free(c);
  } else if (rc == ZNONODE) {
    /* Watch for its creation instead. */
    w->inflight++;
    if (zoo_awexists(w->zk->zh, w->path, watch_fired, w, watch_exists_done,
                     w) != ZOK)
      w->inflight--;
  } else {
    watch_lost(w, rc);
  }
}

static void watch_get_done(int rc, const char *value, int len,
                           const struct Stat *s, const void *data) {
  ct_zk_watch *w = (ct_zk_watch *)data;
  if (watch_settle(w, rc))
    return;
  if (rc == ZOK) {
    ct_zk_node *n = make_node(value, len, s);
    if (n != NULL)
      w->on_node(w, n, NULL, w->arg);
    ct_zk_node_free(n);
  } else if (rc == ZNONODE) {
    w->on_node(w, NULL, NULL, w->arg); /* deleted since: the watch fires */
  } else {
    watch_lost(w, rc);
  }
}

static void watch_exists_done(int rc, const struct Stat *s, const void *data) {
  (void)s;
  ct_zk_watch *w = (ct_zk_watch *)data;
  if (watch_settle(w, rc))
    return;
  if (rc == ZOK || rc == ZNONODE)
    w->armed = 1;
  if (rc == ZOK) {
    /* It exists (created meanwhile, for a children watch): read it. */
    w->inflight++;
    int r2 = w->kind == W_CHILDREN
                 ? zoo_awget_children(w->zk->zh, w->path, watch_fired, w,
                                      watch_children_done, w)
                 : zoo_aget(w->zk->zh, w->path, 0, watch_get_done, w);
    if (r2 != ZOK)
      w->inflight--;
  } else if (rc == ZNONODE) {
    if (w->kind == W_CHILDREN)
      w->on_children(w, NULL, NULL, w->arg);
    else
      w->on_node(w, NULL, NULL, w->arg);
  } else {
    watch_lost(w, rc);
  }
}

static void arm_watch(ct_zk_watch *w) {
  ct_zk *z = w->zk;
  if (z->zh == NULL || z->state != CT_ZK_CONNECTED)
    return; /* armed on the next connect */
  int rc;
  w->inflight++;
  /* The library keeps one registration per (path, watcher, context):
   * arming twice does not double the events. */
  if (w->kind == W_CHILDREN)
    rc = zoo_awget_children(z->zh, w->path, watch_fired, w, watch_children_done,
                            w);
  else
    rc = zoo_awexists(z->zh, w->path, watch_fired, w, watch_exists_done, w);
  if (rc != ZOK)
    w->inflight--;
}

static ct_zk_watch *watch_new(ct_zk *z, int kind, const char *path) {
  ct_zk_watch *w = calloc(1, sizeof *w);
  if (w == NULL || (w->path = strdup(path)) == NULL) {
    free(w);
    return NULL;
  }
  w->zk = z;
  w->kind = kind;
  w->next = z->watches;
  z->watches = w;
  return w;
}

ct_zk_watch *ct_zk_watch_children(ct_zk *z, const char *path,
                                  ct_zk_children_cb cb, void *arg) {
  ct_zk_watch *w = watch_new(z, W_CHILDREN, path);
  if (w == NULL)
    return NULL;
  w->on_children = cb;
  w->arg = arg;
  arm_watch(w);
  ct__zk_drive(z);
  return w;
}

ct_zk_watch *ct_zk_watch_node(ct_zk *z, const char *path, ct_zk_node_cb cb,
                              void *arg) {
  ct_zk_watch *w = watch_new(z, W_NODE, path);
  if (w == NULL)
    return NULL;
  w->on_node = cb;
  w->arg = arg;
  arm_watch(w);
  ct__zk_drive(z);
  return w;
}

void ct_zk_watch_cancel(ct_zk_watch *w) {
  if (w == NULL || w->cancelled)
    return;
  w->cancelled = 1;
  /* Freed once the library lets go of it (reap_watches()). */
  if (w->inflight == 0 && w->armed == 0)
    reap_watches(w->zk);
}
