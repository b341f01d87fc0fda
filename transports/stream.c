/*
 * stream.c: the TCP and Unix stream transport, on one plain libevent event
 * per connection and the transport's own output buffer.
 *
 * The hot path costs what hand-written libevent code costs.  Reads go into
 * a 64 KiB buffer on the callback's stack (data_received only borrows the
 * bytes), so an idle connection owns no read memory.  Writes go straight
 * to the socket while nothing is queued; only what the kernel refuses is
 * copied into the output buffer, and only then is EV_WRITE registered.  In
 * a request/response exchange the registered events never change, so the
 * steady state is one read() and one send() per message, with no
 * epoll_ctl.
 *
 * Closing never calls the protocol back directly: the descriptor is closed
 * at once and connection_lost is delivered by call_soon, on a later loop
 * turn, so a protocol may close (or hit a write error) from anywhere,
 * including data_received, without being re-entered.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "ctwist/log.h"
#include "reactor/internal.h"
#include "transports/stream.h"

typedef struct ct__stream {
  ct_transport base;
  struct event ev;
  int fd;
  short ev_events;      /* events currently registered (0: not added) */
  unsigned char is_unix;
  unsigned char shut_done; /* shutdown(SHUT_WR) has been done */
  char *obuf;           /* pending output: obuf[ohead .. ohead+olen) */
  size_t ohead, olen, ocap;
  ct_failure *reason;   /* for the pending connection_lost */
} ct__stream;

static void stream_cb(evutil_socket_t fd, short what, void *arg);

static const char *stream_domain(const ct__stream *s) {
  return s->is_unix ? "unix" : "tcp";
}

/* Register exactly the events the state calls for; a no-op (no syscall)
 * when they are unchanged, which is the steady state. */
static void update_events(ct__stream *s) {
  short want = 0;
  if (!(s->base.flags & CT__T_CLOSED)) {
    if (ct__transport_want_reading(&s->base))
      want |= EV_READ;
    if (s->olen > 0 ||
        (s->base.producer != NULL && !(s->base.flags & CT__T_STREAMING) &&
         (s->base.flags & CT__T_PULL_PENDING)))
      want |= EV_WRITE;
  }
  if (want == s->ev_events)
    return;
  if (s->ev_events != 0)
    event_del(&s->ev);
  s->ev_events = want;
  if (want != 0) {
    event_assign(&s->ev, ct__reactor_base(s->base.reactor), s->fd,
                 (short)(want | EV_PERSIST), stream_cb, s);
    event_add(&s->ev, NULL);
  }
}

static void stream_lost_cb(void *arg) {
  ct__stream *s = arg;
  ct_failure *reason = s->reason;
  s->reason = NULL;
  ct__transport_deliver_lost(&s->base, reason);
}

/* Close the descriptor now; connection_lost(reason) follows on a later
 * turn.  Takes `reason`.  Safe from anywhere, any number of times. */
static void stream_close(ct__stream *s, ct_failure *reason) {
  if (s->base.flags & CT__T_CLOSED) {
    ct_failure_free(reason);
    return;
  }
  s->base.flags |= CT__T_CLOSED;
  if (s->ev_events != 0)
    event_del(&s->ev);
  s->ev_events = 0;
  close(s->fd);
  s->fd = -1;
  free(s->obuf);
  s->obuf = NULL;
  s->ohead = s->olen = s->ocap = 0;
  s->reason = reason;
  if (ct__reactor_call_soon(s->base.reactor, stream_lost_cb, s) != 0) {
    /* Out of memory: better late than never is impossible here; log it.
     * The transport and protocol leak rather than run re-entrantly. */
    ct_log(CT_LOG_ERROR, stream_domain(s),
           "out of memory scheduling connection_lost");
  }
}

static void close_clean(ct__stream *s) {
  stream_close(s, ct_failure_new_at(__FILE__, __LINE__, stream_domain(s),
                                    CT_ECONNDONE, NULL,
                                    "connection was closed cleanly"));
}

static void close_errno(ct__stream *s, int err, const char *what) {
  stream_close(s, ct_failure_new_at(__FILE__, __LINE__, stream_domain(s),
                                    -err, NULL, "%s: %s", what,
                                    ct_strerror(-err)));
}

/* Append to the output buffer, compacting or growing it. */
static int obuf_append(ct__stream *s, const void *data, size_t len) {
  if (len == 0)
    return 0;
  if (s->ohead + s->olen + len > s->ocap) {
    if (s->ohead > 0) {
      memmove(s->obuf, s->obuf + s->ohead, s->olen);
      s->ohead = 0;
    }
    if (s->olen + len > s->ocap) {
      size_t cap = s->ocap ? s->ocap : 16384;
      while (cap < s->olen + len)
        cap *= 2;
      char *nb = realloc(s->obuf, cap);
      if (nb == NULL)
        return CT_ENOMEM;
      s->obuf = nb;
      s->ocap = cap;
    }
  }
  memcpy(s->obuf + s->ohead + s->olen, data, len);
  s->olen += len;
  return 0;
}

static void after_drain(ct__stream *s) {
  if (s->base.flags & CT__T_CLOSING) {
    close_clean(s);
    return;
  }
  if ((s->base.flags & CT__T_WRITE_SHUT) && !s->shut_done) {
    s->shut_done = 1;
    shutdown(s->fd, SHUT_WR);
    if (s->base.flags & CT__T_EOF) {
      close_clean(s);
      return;
    }
  }
  ct__transport_output_drained(&s->base);
}

/* EV_WRITE: push the output buffer out. */
static void stream_flush(ct__stream *s) {
  while (s->olen > 0) {
    ssize_t n = send(s->fd, s->obuf + s->ohead, s->olen, MSG_NOSIGNAL);
    if (n > 0) {
      s->ohead += (size_t)n;
      s->olen -= (size_t)n;
      if (s->olen > 0)
        break; /* the kernel buffer is full: wait for EV_WRITE */
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else {
      close_errno(s, errno, "write");
      return;
    }
  }
  if (s->olen == 0) {
    free(s->obuf);
    s->obuf = NULL;
    s->ohead = s->ocap = 0;
  }
  ct__transport_buffer_changed(&s->base, s->olen);
  if (s->base.flags & CT__T_CLOSED)
    return;
  if (s->olen == 0)
    after_drain(s);
  if (!(s->base.flags & CT__T_CLOSED))
    update_events(s);
}

static void stream_eof(ct__stream *s) {
  s->base.flags |= CT__T_EOF;
  update_events(s);
  ct_protocol *p = s->base.protocol;
  int keep = 0;
  if (p != NULL && p->ops != NULL && p->ops->eof_received != NULL)
    keep = p->ops->eof_received(p);
  if (s->base.flags & (CT__T_CLOSED | CT__T_CLOSING))
    return;
  if (keep) {
    if (s->shut_done)
      close_clean(s); /* both directions are done */
    return;
  }
  /* Flush what the protocol wrote, then close cleanly. */
  s->base.flags |= CT__T_CLOSING;
  if (s->olen == 0)
    close_clean(s);
  else
    update_events(s);
}

static void stream_read(ct__stream *s) {
  char buf[CT__STREAM_READ_SIZE];
  /* A few reads per wake-up at most, for fairness between connections;
   * a short read means the socket is drained (no EAGAIN round trip). */
  for (int i = 0; i < 4; i++) {
    if (!ct__transport_want_reading(&s->base))
      return;
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n > 0) {
      ct_protocol *p = s->base.protocol;
      if (p != NULL && p->ops != NULL && p->ops->data_received != NULL)
        p->ops->data_received(p, buf, (size_t)n);
      if ((size_t)n < sizeof buf)
        return;
    } else if (n == 0) {
      stream_eof(s);
      return;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return;
    } else {
      close_errno(s, errno, "read");
      return;
    }
  }
}

static void stream_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  ct__stream *s = arg;
  if ((what & EV_WRITE) && !(s->base.flags & CT__T_CLOSED)) {
    if (s->olen > 0)
      stream_flush(s);
    else if (!(s->base.flags & CT__T_CLOSED)) {
      ct__transport_output_drained(&s->base); /* pull producer */
      if (!(s->base.flags & CT__T_CLOSED))
        update_events(s);
    }
  }
  if ((what & EV_READ) && !(s->base.flags & CT__T_CLOSED))
    stream_read(s);
}

/* -------------------------------------------------------------- the ops */

static int stream_queue(ct__stream *s, const char *data, size_t len) {
  if (obuf_append(s, data, len) != 0) {
    close_errno(s, ENOMEM, "write");
    return CT_ENOMEM;
  }
  update_events(s);
  ct__transport_buffer_changed(&s->base, s->olen);
  return 0;
}

static int op_write(ct_transport *t, const void *data, size_t len) {
  ct__stream *s = (ct__stream *)t;
  const char *p = data;
  if (s->olen == 0) {
    for (;;) {
      ssize_t n = send(s->fd, p, len, MSG_NOSIGNAL);
      if (n >= 0) {
        if ((size_t)n == len)
          return 0;
        p += n;
        len -= (size_t)n;
        break;
      }
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      close_errno(s, errno, "write");
      return 0; /* reported through connection_lost */
    }
  }
  return stream_queue(s, p, len);
}

static int op_writev(ct_transport *t, const struct iovec *iov, int iovcnt) {
  ct__stream *s = (ct__stream *)t;
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++)
    total += iov[i].iov_len;
  size_t sent = 0;
  if (s->olen == 0 && iovcnt <= IOV_MAX) {
    for (;;) {
      struct msghdr mh;
      memset(&mh, 0, sizeof mh);
      mh.msg_iov = (struct iovec *)(uintptr_t)iov;
      mh.msg_iovlen = (size_t)iovcnt;
      ssize_t n = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
      if (n >= 0) {
        sent = (size_t)n;
        break;
      }
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      close_errno(s, errno, "write");
      return 0;
    }
    if (sent == total)
      return 0;
  }
  /* Queue what is left, skipping the `sent` bytes. */
  for (int i = 0; i < iovcnt; i++) {
    size_t l = iov[i].iov_len;
    const char *b = iov[i].iov_base;
    if (sent >= l) {
      sent -= l;
      continue;
    }
    b += sent;
    l -= sent;
    sent = 0;
    if (obuf_append(s, b, l) != 0) {
      close_errno(s, ENOMEM, "write");
      return CT_ENOMEM;
    }
  }
  update_events(s);
  ct__transport_buffer_changed(&s->base, s->olen);
  return 0;
}

static int op_lose_connection(ct_transport *t) {
  ct__stream *s = (ct__stream *)t;
  s->base.flags |= CT__T_CLOSING;
  if (s->olen == 0)
    close_clean(s);
  else
    update_events(s); /* stop reading; keep flushing */
  return 0;
}

static int op_abort(ct_transport *t) {
  ct__stream *s = (ct__stream *)t;
  stream_close(s, ct_failure_new_at(__FILE__, __LINE__, stream_domain(s),
                                    CT_ECONNABORTED, NULL,
                                    "connection aborted"));
  return 0;
}

static int op_half_close(ct_transport *t) {
  ct__stream *s = (ct__stream *)t;
  s->base.flags |= CT__T_WRITE_SHUT;
  if (s->olen == 0)
    after_drain(s);
  return 0;
}

static int op_pause_reading(ct_transport *t) {
  update_events((ct__stream *)t);
  return 0;
}

static int op_get_addr(ct_transport *t, ct_address *out, int peer) {
  ct__stream *s = (ct__stream *)t;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  int rc = peer ? getpeername(s->fd, (struct sockaddr *)&ss, &len)
                : getsockname(s->fd, (struct sockaddr *)&ss, &len);
  if (rc != 0)
    return -errno;
  return ct_address_from_sockaddr(out, (struct sockaddr *)&ss, len);
}

static int op_get_peer(ct_transport *t, ct_address *out) {
  return op_get_addr(t, out, 1);
}

static int op_get_host(ct_transport *t, ct_address *out) {
  return op_get_addr(t, out, 0);
}

static int op_set_option(ct_transport *t, ct_transport_option opt,
                         int value) {
  ct__stream *s = (ct__stream *)t;
  int level = SOL_SOCKET, name;
  switch (opt) {
  case CT_OPT_TCP_NODELAY:
    if (s->is_unix)
      return 0;
    level = IPPROTO_TCP;
    name = TCP_NODELAY;
    break;
  case CT_OPT_KEEPALIVE:
    if (s->is_unix)
      return 0;
    name = SO_KEEPALIVE;
    break;
  case CT_OPT_SNDBUF:
    name = SO_SNDBUF;
    break;
  case CT_OPT_RCVBUF:
    name = SO_RCVBUF;
    break;
  default:
    return CT_EINVAL;
  }
  if (setsockopt(s->fd, level, name, &value, sizeof value) != 0)
    return -errno;
  return 0;
}

static size_t op_buffered(const ct_transport *t) {
  return ((const ct__stream *)t)->olen;
}

static void op_want_pull(ct_transport *t) { update_events((ct__stream *)t); }

static int op_fileno(const ct_transport *t) {
  return ((const ct__stream *)t)->fd;
}

static void op_destroy(ct_transport *t) {
  ct__stream *s = (ct__stream *)t;
  if (s->ev_events != 0)
    event_del(&s->ev);
  if (s->fd >= 0)
    close(s->fd);
  free(s->obuf);
  ct_failure_free(s->reason);
  free(s);
}

#define STREAM_OPS(kind)                                                       \
  {                                                                            \
    .name = kind, .write = op_write, .writev = op_writev,                      \
    .lose_connection = op_lose_connection, .abort = op_abort,                  \
    .half_close = op_half_close, .pause_reading = op_pause_reading,            \
    .resume_reading = op_pause_reading, .get_peer = op_get_peer,               \
    .get_host = op_get_host, .set_option = op_set_option,                      \
    .buffered = op_buffered, .want_pull = op_want_pull, .fileno = op_fileno,   \
    .destroy = op_destroy                                                      \
  }

static const ct_transport_ops tcp_ops = STREAM_OPS("tcp");
static const ct_transport_ops unix_ops = STREAM_OPS("unix");

ct_transport *ct__stream_new(ct_reactor *r, int fd, int is_unix) {
  ct__stream *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NULL;
  ct__transport_init(&s->base, is_unix ? &unix_ops : &tcp_ops, r);
  s->fd = fd;
  s->is_unix = is_unix ? 1 : 0;
  return &s->base;
}

void ct__stream_start(ct_transport *t, ct_protocol *p) {
  ct__stream *s = (ct__stream *)t;
  ct__transport_make_connection(t, p);
  if (!(s->base.flags & CT__T_CLOSED))
    update_events(s);
}
