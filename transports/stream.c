/*
 * stream.c: the TCP and Unix stream transport, on one plain libevent event
 * per connection and the transport's own output buffer.
 *
 * The hot path costs about what hand-written libevent code costs.  Reads go
 * into the reactor's shared 256 KiB read buffer (ct__reactor_read_buffer():
 * data_received only borrows the bytes, and libevent never runs two
 * callbacks of one base at once), so an idle connection owns no read memory
 * and a bulk transfer needs few read() calls.  Writes go straight to
 * the socket while nothing is queued; only what the kernel refuses is
 * copied into the output buffer, and only then is EV_WRITE registered.  In
 * a request/response exchange the registered events never change, so the
 * steady state is one read() and one send() per message, with no
 * epoll_ctl, no allocation and no clock query; everything off that path
 * (partial writes, errors, EOF, EV_WRITE) lives in functions of its own.
 *
 * Closing never calls the protocol back directly: the descriptor is closed
 * at once and connection_lost is delivered by call_soon, on a later loop
 * turn, so a protocol may close (or hit a write error) from anywhere,
 * including data_received, without being re-entered.  That is also why
 * the hot path holds no reference on the transport: it cannot be freed
 * before that later turn.
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

/* The per-message path is kept straight; the rest is moved out of line. */
#define CT__NOINLINE __attribute__((noinline))
#define CT__LIKELY(x) __builtin_expect(!!(x), 1)
#define CT__UNLIKELY(x) __builtin_expect(!!(x), 0)

typedef struct ct__stream {
  ct_transport base;
  struct event ev;
  char *rbuf; /* the reactor's shared read buffer (borrowed) */
  int fd;
  short ev_events; /* events currently registered (0: not added) */
  unsigned char is_unix;
  unsigned char shut_done; /* shutdown(SHUT_WR) has been done */
  char *obuf;              /* pending output: obuf[ohead .. ohead+olen) */
  size_t ohead, olen, ocap;
  ct_failure *reason; /* for the pending connection_lost */
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
  stream_close(s, ct_failure_new_at(__FILE__, __LINE__, stream_domain(s), -err,
                                    NULL, "%s: %s", what, ct_strerror(-err)));
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

/* read() returned 0 or failed: EOF, an error, or nothing after all.
 * Returns 1 to retry the read (EINTR). */
static CT__NOINLINE int stream_read_end(ct__stream *s, ssize_t n) {
  if (n == 0)
    stream_eof(s);
  else if (errno == EINTR)
    return 1;
  else if (errno != EAGAIN && errno != EWOULDBLOCK)
    close_errno(s, errno, "read");
  return 0;
}

/* How much one read may take: see CT__STREAM_READ_SLOW. */
static inline size_t read_size(const ct__stream *s) {
  return CT__LIKELY(s->olen == 0) ? CT__READ_BUFFER_SIZE : CT__STREAM_READ_SLOW;
}

static inline void deliver(ct__stream *s, size_t n) {
  ct_protocol *p = s->base.protocol;
  if (CT__LIKELY(p != NULL && p->ops != NULL && p->ops->data_received != NULL))
    p->ops->data_received(p, s->rbuf, n);
}

/* Up to `reads` more reads, after one that filled what it asked for or was
 * interrupted. */
static CT__NOINLINE void stream_read_more(ct__stream *s, int reads) {
  while (reads-- > 0) {
    if (!ct__transport_want_reading(&s->base))
      return;
    size_t want = read_size(s);
    ssize_t n = read(s->fd, s->rbuf, want);
    if (n > 0) {
      deliver(s, (size_t)n);
      if ((size_t)n < want)
        return;
    } else if (!stream_read_end(s, n)) {
      return;
    }
  }
}

/*
 * EV_READ.  A few reads per wake-up at most, for fairness between
 * connections; a short read means the socket is drained (no EAGAIN round
 * trip).  The first read is written out straight so that the usual case,
 * one short read, costs no loop.
 */
static inline void stream_read(ct__stream *s, int fd) {
  if (!ct__transport_want_reading(&s->base))
    return;
  size_t want = read_size(s);
  ssize_t n = read(fd, s->rbuf, want);
  if (CT__LIKELY(n > 0)) {
    deliver(s, (size_t)n);
    if (CT__LIKELY((size_t)n < want))
      return;
  } else if (!stream_read_end(s, n)) {
    return;
  }
  stream_read_more(s, 3);
}

/* EV_WRITE (and maybe EV_READ too): flush the output buffer, or let a pull
 * producer write; then read if the socket is readable as well. */
static CT__NOINLINE void stream_writable(ct__stream *s, int fd, short what) {
  if (!(s->base.flags & CT__T_CLOSED)) {
    if (s->olen > 0) {
      stream_flush(s);
    } else {
      ct__transport_output_drained(&s->base); /* pull producer */
      if (!(s->base.flags & CT__T_CLOSED))
        update_events(s);
    }
  }
  /* stream_read checks for a close (ct__transport_want_reading). */
  if (what & EV_READ)
    stream_read(s, fd);
}

static void stream_cb(evutil_socket_t fd, short what, void *arg) {
  ct__stream *s = arg;
  if (CT__UNLIKELY(what & EV_WRITE))
    stream_writable(s, (int)fd, what);
  else if (what & EV_READ)
    stream_read(s, (int)fd);
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

/* The rest of a write whose first send() took `n` of `len` bytes (n < 0:
 * an error). */
static CT__NOINLINE int write_slow(ct__stream *s, const char *p, size_t len,
                                   ssize_t n) {
  for (;;) {
    if (n >= 0) {
      p += n;
      len -= (size_t)n;
      break;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      break;
    if (errno != EINTR) {
      close_errno(s, errno, "write");
      return 0; /* reported through connection_lost */
    }
    n = send(s->fd, p, len, MSG_NOSIGNAL);
    if (n >= 0 && (size_t)n == len)
      return 0;
  }
  return stream_queue(s, p, len);
}

static int op_write(ct_transport *t, const void *data, size_t len) {
  ct__stream *s = (ct__stream *)t;
  if (CT__LIKELY(s->olen == 0)) {
    ssize_t n = send(s->fd, data, len, MSG_NOSIGNAL);
    if (CT__LIKELY(n >= 0 && (size_t)n == len))
      return 0;
    return write_slow(s, data, len, n);
  }
  return stream_queue(s, data, len);
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
  stream_close(s,
               ct_failure_new_at(__FILE__, __LINE__, stream_domain(s),
                                 CT_ECONNABORTED, NULL, "connection aborted"));
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

static int op_set_option(ct_transport *t, ct_transport_option opt, int value) {
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

static void op_want_pull(ct_transport *t) {
  update_events((ct__stream *)t);
}

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
  char *rbuf = ct__reactor_read_buffer(r);
  if (rbuf == NULL)
    return NULL;
  ct__stream *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NULL;
  s->rbuf = rbuf;
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
