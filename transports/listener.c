/*
 * listener.c: listening TCP and Unix stream sockets (Twisted's Port).
 *
 * Running out of descriptors must not turn a listener into a busy loop:
 * with EMFILE/ENFILE the kernel keeps reporting the listening socket
 * readable while accept() keeps failing (libevent #71, libuv #690).  So the
 * listener stops watching the socket, spends a reserve descriptor to
 * accept-and-close the connection at the head of the queue (the client sees
 * a close instead of hanging), and looks again after a back-off of 10 ms
 * doubling to 1 s.  It logs once per episode, not once per attempt.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "ctwist/endpoint.h"
#include "ctwist/log.h"
#include "reactor/internal.h"
#include "transports/stream.h"

#define ACCEPTS_PER_WAKEUP 64
#define BACKOFF_MIN 0.010
#define BACKOFF_MAX 1.0

struct ct_listening_port {
  ct_reactor *reactor;
  ct_factory *factory;
  struct event ev;
  int fd;
  int reserve_fd; /* /dev/null, released on EMFILE */
  int is_unix;
  unsigned stream_flags; /* CT__STREAM_* for accepted connections */
  int watching;          /* ev is added */
  int in_accept;         /* inside the accept loop */
  int stopped;           /* stop() ran inside the accept loop */
  int emfile_episode;    /* descriptors ran out and have not come back */
  unsigned long emfile_refused;
  double backoff;
  ct_delayed_call *retry;
  char *unix_path; /* socket file to unlink on stop, or NULL */
  char *lock_path; /* lock file to unlink on stop, or NULL */
  int lock_fd;
  unsigned long accepted;
  ct_address addr;
  char desc[160]; /* the endpoint string, for messages */
};

static void accept_cb(evutil_socket_t fd, short what, void *arg);

static int open_reserve(void) {
  return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void port_watch(ct_listening_port *port, int on) {
  if (on && !port->watching) {
    event_add(&port->ev, NULL);
    port->watching = 1;
  } else if (!on && port->watching) {
    event_del(&port->ev);
    port->watching = 0;
  }
}

static void retry_cb(void *arg) {
  ct_listening_port *port = arg;
  port->retry = NULL;
  if (port->reserve_fd < 0)
    port->reserve_fd = open_reserve();
  port_watch(port, 1);
}

static void handle_emfile(ct_listening_port *port, int err) {
  if (!port->emfile_episode) {
    port->emfile_episode = 1;
    port->emfile_refused = 0;
    port->backoff = BACKOFF_MIN;
    ct_log(CT_LOG_WARN, port->is_unix ? "unix" : "tcp",
           "accept on %s: %s; refusing connections and retrying with "
           "back-off until descriptors are available",
           port->desc, ct_strerror(-err));
  } else {
    port->backoff *= 2;
    if (port->backoff > BACKOFF_MAX)
      port->backoff = BACKOFF_MAX;
  }
  /* Spend the reserve descriptor to take the pending connection off the
   * queue and close it, so that its client is not left hanging. */
  if (port->reserve_fd >= 0) {
    close(port->reserve_fd);
    port->reserve_fd = -1;
    int fd = accept4(port->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
      close(fd);
      port->emfile_refused++;
    }
    port->reserve_fd = open_reserve();
  }
  port_watch(port, 0);
  if (port->retry == NULL)
    port->retry = ct_call_later(port->reactor, port->backoff, retry_cb, port);
}

static void port_free(ct_listening_port *port) {
  free(port->unix_path);
  free(port->lock_path);
  free(port);
}

static void accept_one(ct_listening_port *port, int fd,
                       const struct sockaddr_storage *ss, socklen_t sl) {
  ct_address peer;
  if (ct_address_from_sockaddr(&peer, (const struct sockaddr *)ss, sl) != 0)
    memset(&peer, 0, sizeof peer);
  if (port->is_unix && peer.family == CT_ADDRESS_NONE) {
    peer.family = CT_ADDRESS_UNIX; /* unnamed client socket */
  }
  ct_protocol *p = ct_factory_build(port->factory, &peer);
  if (p == NULL) {
    close(fd);
    return;
  }
  ct_transport *t =
      ct__stream_new(port->reactor, fd, port->is_unix, port->stream_flags);
  if (t == NULL) {
    close(fd);
    ct__protocol_discard(p);
    return;
  }
  ct__stream_start(t, p);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg) {
  (void)what;
  ct_listening_port *port = arg;
  port->in_accept++;
  for (int i = 0; i < ACCEPTS_PER_WAKEUP && !port->stopped; i++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4((int)lfd, (struct sockaddr *)&ss, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EINTR || err == ECONNABORTED || err == EPROTO)
        continue;
      if (err == EAGAIN || err == EWOULDBLOCK)
        break;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        handle_emfile(port, err);
        break;
      }
      ct_log(CT_LOG_ERROR, port->is_unix ? "unix" : "tcp", "accept on %s: %s",
             port->desc, ct_strerror(-err));
      break;
    }
    if (port->emfile_episode) {
      port->emfile_episode = 0;
      ct_log(CT_LOG_DEBUG, port->is_unix ? "unix" : "tcp",
             "accepting again on %s (%lu connections refused meanwhile)",
             port->desc, port->emfile_refused);
    }
    port->accepted++;
    accept_one(port, fd, &ss, sl);
  }
  port->in_accept--;
  if (port->stopped && port->in_accept == 0)
    port_free(port);
}

static ct_listening_port *listen_fail(ct_listening_port *port, ct_failure **err,
                                      int code, const char *what) {
  if (err != NULL)
    *err = ct_failure_new_at(__FILE__, __LINE__, port->is_unix ? "unix" : "tcp",
                             code, NULL, "listen on %s: %s: %s", port->desc,
                             what, ct_strerror(code));
  if (port->fd >= 0)
    close(port->fd);
  if (port->reserve_fd >= 0)
    close(port->reserve_fd);
  if (port->lock_fd >= 0) {
    close(port->lock_fd);
    if (port->lock_path != NULL)
      unlink(port->lock_path);
  }
  port_free(port);
  return NULL;
}

/* A socket file exists at `path`: if nothing accepts on it, remove it. */
static int clear_stale_socket(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0)
    return errno == ENOENT ? 0 : -errno;
  if (!S_ISSOCK(st.st_mode))
    return CT_EADDRINUSE;
  ct_address a;
  if (ct_address_from_unix(&a, path) != 0)
    return CT_ENAMETOOLONG;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int rc = connect(fd, &a.u.sa, a.len);
  int e = errno;
  close(fd);
  if (rc == 0 || e == EAGAIN || e == EINPROGRESS)
    return CT_EADDRINUSE; /* something is listening */
  if (e == ECONNREFUSED) {
    if (unlink(path) != 0 && errno != ENOENT)
      return -errno;
    return 0;
  }
  return -e;
}

ct_listening_port *ct_listen(ct_reactor *r, const char *endpoint, ct_factory *f,
                             ct_failure **err) {
  if (err != NULL)
    *err = NULL;
  if (r == NULL || endpoint == NULL || f == NULL) {
    if (err != NULL)
      *err = ct_failure_new(CT_EINVAL,
                            "ct_listen: reactor, endpoint and factory are "
                            "required");
    return NULL;
  }
  ct_endpoint ep;
  memset(&ep, 0, sizeof ep);
  if (ct_endpoint_parse_server(endpoint, &ep, err) != 0)
    return NULL;
  ct_listening_port *port = calloc(1, sizeof *port);
  if (port == NULL) {
    ct_endpoint_clear(&ep);
    if (err != NULL)
      *err = ct_failure_new(CT_ENOMEM, "ct_listen: out of memory");
    return NULL;
  }
  port->fd = port->reserve_fd = port->lock_fd = -1;
  port->reactor = r;
  port->factory = f;
  snprintf(port->desc, sizeof port->desc, "%s", endpoint);
  port->is_unix = ep.kind == CT_ENDPOINT_UNIX;
  port->stream_flags = ep.nodelay ? CT__STREAM_NODELAY : 0;
  if (ep.kind != CT_ENDPOINT_TCP && ep.kind != CT_ENDPOINT_TCP6 &&
      ep.kind != CT_ENDPOINT_UNIX) {
    int is_ssl = ep.kind == CT_ENDPOINT_SSL;
    ct_endpoint_clear(&ep);
    if (err != NULL)
      *err = is_ssl ? ct_failure_new(CT_ENOSYS,
                                     "ct_listen: '%s': TLS (ssl:) endpoints "
                                     "are not implemented yet",
                                     endpoint)
                    : ct_failure_new(CT_EBADENDPOINT,
                                     "ct_listen: '%s' is not a stream "
                                     "endpoint; expected tcp:, tcp6: or unix:",
                                     endpoint);
    port_free(port);
    return NULL;
  }
  struct sockaddr_storage ss;
  socklen_t sl = 0;
  ct_failure *rf = NULL;
  if (ct_endpoint_resolve(&ep, &ss, &sl, &rf) != 0) {
    ct_endpoint_clear(&ep);
    if (err != NULL)
      *err = ct_failure_wrap("tcp", rf->code, rf, "listen on %s", endpoint);
    else
      ct_failure_free(rf);
    port_free(port);
    return NULL;
  }
  int backlog = ep.backlog > 0 ? ep.backlog : CT_ENDPOINT_DEFAULT_BACKLOG;
  int reuseport = ep.reuseport;
  unsigned mode = ep.mode;
  int want_lock = port->is_unix && !ep.abstract && ep.lockfile;
  int filesystem = port->is_unix && !ep.abstract;
  char *path = filesystem ? strdup(ep.path) : NULL;
  ct_endpoint_clear(&ep);
  if (filesystem && path == NULL)
    return listen_fail(port, err, CT_ENOMEM, "path");

  if (filesystem) {
    if (want_lock) {
      size_t n = strlen(path) + 6;
      port->lock_path = malloc(n);
      if (port->lock_path == NULL) {
        free(path);
        return listen_fail(port, err, CT_ENOMEM, "lock file");
      }
      snprintf(port->lock_path, n, "%s.lock", path);
      port->lock_fd = open(port->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (port->lock_fd < 0) {
        int e = -errno;
        free(path);
        free(port->lock_path);
        port->lock_path = NULL;
        return listen_fail(port, err, e, "lock file");
      }
      if (flock(port->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        free(path);
        close(port->lock_fd);
        port->lock_fd = -1; /* another process holds it: leave the file */
        return listen_fail(port, err, CT_EADDRINUSE,
                           "lock file held by another process");
      }
      char pid[32];
      int pn = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
      if (ftruncate(port->lock_fd, 0) == 0 &&
          write(port->lock_fd, pid, (size_t)pn) < 0) {
        /* the lock is the flock; the pid is informational */
      }
    }
    int rc = clear_stale_socket(path);
    if (rc != 0) {
      free(path);
      return listen_fail(port, err, rc,
                         rc == CT_EADDRINUSE ? "socket path in use" : "path");
    }
  }

  port->fd =
      socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (port->fd < 0) {
    free(path);
    return listen_fail(port, err, -errno, "socket");
  }
  if (!port->is_unix) {
    int one = 1;
    setsockopt(port->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport &&
        setsockopt(port->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      free(path);
      return listen_fail(port, err, -errno, "SO_REUSEPORT");
    }
  }
  if (bind(port->fd, (struct sockaddr *)&ss, sl) != 0) {
    free(path);
    return listen_fail(port, err, -errno, "bind");
  }
  if (filesystem) {
    port->unix_path = path;
    path = NULL;
    if (chmod(port->unix_path, mode) != 0) {
      int e = -errno;
      unlink(port->unix_path);
      return listen_fail(port, err, e, "chmod");
    }
  }
  if (listen(port->fd, backlog) != 0) {
    int e = -errno;
    if (port->unix_path != NULL)
      unlink(port->unix_path);
    return listen_fail(port, err, e, "listen");
  }
  struct sockaddr_storage bound;
  socklen_t bl = sizeof bound;
  if (getsockname(port->fd, (struct sockaddr *)&bound, &bl) == 0)
    ct_address_from_sockaddr(&port->addr, (struct sockaddr *)&bound, bl);
  port->reserve_fd = open_reserve();
  event_assign(&port->ev, ct__reactor_base(r), port->fd, EV_READ | EV_PERSIST,
               accept_cb, port);
  port_watch(port, 1);
  ct_factory_do_start(f);
  return port;
}

ct_deferred *ct_listening_port_stop(ct_listening_port *port) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  if (port == NULL) {
    if (d != NULL)
      ct_deferred_errback(d, ct_failure_new(CT_EINVAL, "no port to stop"));
    return d;
  }
  if (port->retry != NULL) {
    ct_delayed_call_cancel(port->retry);
    port->retry = NULL;
  }
  port_watch(port, 0);
  close(port->fd);
  port->fd = -1;
  if (port->reserve_fd >= 0)
    close(port->reserve_fd);
  port->reserve_fd = -1;
  if (port->unix_path != NULL)
    unlink(port->unix_path);
  if (port->lock_fd >= 0) {
    unlink(port->lock_path);
    close(port->lock_fd);
    port->lock_fd = -1;
  }
  ct_factory *f = port->factory;
  if (port->in_accept > 0)
    port->stopped = 1; /* freed when the accept loop unwinds */
  else
    port_free(port);
  ct_factory_do_stop(f);
  if (d != NULL)
    ct_deferred_callback(d, CT_NONE);
  return d;
}

int ct_listening_port_address(const ct_listening_port *port, ct_address *out) {
  if (port == NULL || out == NULL)
    return CT_EINVAL;
  *out = port->addr;
  return 0;
}

unsigned long ct_listening_port_accepted(const ct_listening_port *port) {
  return port != NULL ? port->accepted : 0;
}

int ct_listening_port_fileno(const ct_listening_port *port) {
  return port != NULL ? port->fd : -1;
}
