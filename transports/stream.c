/*
 * stream.c: the TCP and Unix stream transport, on one plain libevent event
 * per connection.
 *
 * The hot path costs about what hand-written libevent code costs.  Reads go
 * into the reactor's shared 256 KiB read buffer (ct__reactor_read_buffer():
 * data_received only borrows the bytes, and libevent never runs two
 * callbacks of one base at once), so an idle connection owns no read memory
 * and a bulk transfer needs few read() calls.
 *
 * Writes are gathered, so a protocol that answers each request with its own
 * ct_transport_write() still costs one send() per read, not one per reply:
 *
 *  - While a transport's own callbacks run (its dispatch: data_received,
 *    connection_made, a producer's resume), its writes are appended to the
 *    reactor's shared gather buffer (ct__reactor_gather()), and when the
 *    dispatch returns they leave in one send().  An idle connection owns no
 *    write memory either.
 *  - Writes made from elsewhere (a timer, a Deferred callback, another
 *    connection's broadcast) go to the transport's own buffer, and the
 *    transport queues itself with ct__reactor_flush_later(): the reactor
 *    flushes it after the running callbacks and before it next waits
 *    (Redis's beforeSleep), so no write waits for a later turn.
 *  - A large write (CT__STREAM_DIRECT bytes or more) is not copied: it
 *    leaves at once in one writev() together with whatever was gathered
 *    before it.
 *  - Only what the kernel refuses stays in the transport's own buffer, and
 *    only then is EV_WRITE registered.  In a request/response exchange the
 *    registered events never change, so the steady state is one read() and
 *    one send() per read, with no epoll_ctl, no allocation and no clock
 *    query; everything off that path lives in functions of its own.
 *
 * Bytes always leave in the order they were written: gathering is used only
 * while the transport's own buffer is empty, and a direct write carries the
 * gathered bytes in front of it.
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
#include <sys/sendfile.h>
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

/* A write of this many bytes or more is not copied: it leaves at once, in
 * one writev() with whatever was gathered before it. */
#define CT__STREAM_DIRECT (16 * 1024)
/* A dispatch that writes more than this sends what it gathered early. */
#define CT__GATHER_MAX (64 * 1024)
/* iovecs per sendmsg() when a buffer holds shared blobs. */
#define CT__IOV_BATCH 64

typedef struct ct__stream {
  ct_transport base;
  struct event ev;
  char *rbuf;         /* the reactor's shared read buffer (borrowed) */
  ct__gather *gather; /* the reactor's shared gather buffer (borrowed) */
  int fd;
  short ev_events; /* events currently registered (0: not added) */
  unsigned char is_unix;
  unsigned char shut_done;   /* shutdown(SHUT_WR) has been done */
  unsigned char dispatching; /* its callbacks are running */
  unsigned char gathering;   /* ... and it owns the gather buffer */
  unsigned char wblocked;    /* the kernel refused bytes: EV_WRITE waits */
  ct__buf *out;              /* output not gathered, not yet sent; NULL:
                                none (allocated only while bytes wait, so
                                an idle connection owns none) */
  ct__flush_node flush;      /* queued: `out` leaves before the next poll */
  ct_failure *reason;        /* for the pending connection_lost */
  ct_transport_stats stats;
} ct__stream;

static void stream_cb(evutil_socket_t fd, short what, void *arg);

static const char *stream_domain(const ct__stream *s) {
  return s->is_unix ? "unix" : "tcp";
}

static inline size_t out_len(const ct__stream *s) {
  return s->out != NULL ? s->out->len : 0;
}

/* The own buffer, allocated on first use; NULL if memory runs out. */
static ct__buf *out_get(ct__stream *s) {
  if (s->out == NULL)
    s->out = calloc(1, sizeof *s->out);
  return s->out;
}

/* A drained own buffer keeps a block up to this size for the next writes
 * from outside a dispatch (a subscriber fed by broadcasts): growing one
 * from nothing on every loop turn cost five reallocs per turn.  Redis
 * keeps 16 KiB per client for the same reason. */
#define CT__STREAM_OUT_KEEP (16 * 1024)

static void out_release(ct__stream *s) {
  if (s->out != NULL) {
    ct__buf_free(s->out);
    free(s->out);
    s->out = NULL;
  }
}

/* Bytes gathered in this dispatch (copied, or referenced in place). */
static inline size_t gathered(const ct__stream *s) {
  return s->gather->buf.len + s->gather->reflen;
}

/* Bytes accepted and not yet handed to the kernel. */
static inline size_t queued(const ct__stream *s) {
  return out_len(s) + (s->gathering ? gathered(s) : 0);
}

/* Copy a referenced write into the gather buffer: before a second write,
 * and before the read buffer is read into again.  0 or CT_ENOMEM. */
static int materialize(ct__stream *s) {
  ct__gather *g = s->gather;
  if (g->reflen == 0)
    return 0;
  int rc = ct__buf_append(&g->buf, g->ref, g->reflen);
  g->ref = NULL;
  g->reflen = 0;
  return rc;
}

/* Register exactly the events the state calls for; a no-op (no syscall)
 * when they are unchanged, which is the steady state.  EV_WRITE is wanted
 * only when the kernel refused bytes, or a pull producer waits. */
static void update_events(ct__stream *s) {
  short want = 0;
  if (!(s->base.flags & CT__T_CLOSED)) {
    if (ct__transport_want_reading(&s->base))
      want |= EV_READ;
    if (s->wblocked ||
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

/* Give the gather buffer back, dropping what it holds. */
static void drop_gather(ct__stream *s) {
  if (s->gathering) {
    ct__buf_clear(&s->gather->buf);
    s->gather->ref = NULL;
    s->gather->reflen = 0;
    s->gather->owner = NULL;
    s->gathering = 0;
  }
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
  drop_gather(s);
  ct__reactor_flush_cancel(s->base.reactor, &s->flush);
  out_release(s);
  s->wblocked = 0;
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

static int fail_nomem(ct__stream *s) {
  close_errno(s, ENOMEM, "write");
  return CT_ENOMEM;
}

/* One send()/sendmsg() (retried on EINTR).  Returns the bytes taken (0 when
 * the kernel buffer is full), or -1 with errno on an error. */
static ssize_t send_iov(ct__stream *s, struct iovec *iov, int cnt) {
  for (;;) {
    ssize_t n;
    if (cnt == 1) {
      n = send(s->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    } else {
      struct msghdr mh;
      memset(&mh, 0, sizeof mh);
      mh.msg_iov = iov;
      mh.msg_iovlen = (size_t)cnt;
      n = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
    }
    s->stats.write_calls++;
    if (n >= 0) {
      s->stats.bytes_written += (uint64_t)n;
      return n;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return 0;
    if (errno != EINTR)
      return -1;
  }
}

/* Send what `b` holds and consume what went.  Returns 0 when all went, 1
 * when the kernel buffer filled first, -1 with errno on an error. */
static int send_buf(ct__stream *s, ct__buf *b) {
  while (b->len > 0) {
    struct iovec iov[CT__IOV_BATCH];
    int cnt = ct__buf_iov(b, iov, CT__IOV_BATCH);
    size_t want = 0;
    for (int i = 0; i < cnt; i++)
      want += iov[i].iov_len;
    ssize_t n = send_iov(s, iov, cnt);
    if (n < 0)
      return -1;
    ct__buf_consume(b, (size_t)n);
    if ((size_t)n < want)
      return 1;
  }
  return 0;
}

/* Everything accepted has left: finish a lose_connection or half_close
 * that waited for it.  Returns 1 if the transport closed. */
static int drained(ct__stream *s) {
  if (s->base.flags & CT__T_CLOSING) {
    close_clean(s);
    return 1;
  }
  if ((s->base.flags & CT__T_WRITE_SHUT) && !s->shut_done) {
    s->shut_done = 1;
    shutdown(s->fd, SHUT_WR);
    if (s->base.flags & CT__T_EOF) {
      close_clean(s);
      return 1;
    }
  }
  return 0;
}

/* Push the transport's own buffer out: from EV_WRITE (`writable`, which
 * also lets a waiting pull producer write), from the reactor's flush
 * before the next poll, or at the end of a dispatch. */
static void stream_flush(ct__stream *s, int writable) {
  ct__reactor_flush_cancel(s->base.reactor, &s->flush);
  int rc = s->out != NULL ? send_buf(s, s->out) : 0;
  if (rc < 0) {
    close_errno(s, errno, "write");
    return;
  }
  s->wblocked = rc > 0;
  if (out_len(s) == 0 && s->out != NULL)
    ct__buf_shrink(s->out, CT__STREAM_OUT_KEEP);
  ct__transport_buffer_changed(&s->base, queued(s));
  if (s->base.flags & CT__T_CLOSED)
    return;
  if (out_len(s) == 0) {
    if (drained(s))
      return;
    if (writable)
      ct__transport_output_drained(&s->base);
  }
  if (!(s->base.flags & CT__T_CLOSED))
    update_events(s);
}

static void flush_node_cb(ct__flush_node *n) {
  ct__stream *s =
      (ct__stream *)(void *)((char *)n - offsetof(ct__stream, flush));
  if (!(s->base.flags & CT__T_CLOSED) && out_len(s) > 0 && !s->wblocked)
    stream_flush(s, 0);
}

/* The end of a dispatch that gathered: send the gathered bytes in one
 * send(); what the kernel refuses moves to the transport's own buffer. */
static CT__NOINLINE void gather_send(ct__stream *s) {
  ct__gather *ga = s->gather;
  ct__buf *g = &ga->buf;
  int rc;
  if (ga->reflen > 0) {
    /* The one write of the dispatch, straight from the read buffer. */
    struct iovec iov = {(void *)(uintptr_t)ga->ref, ga->reflen};
    ssize_t n = send_iov(s, &iov, 1);
    rc = n < 0 ? -1 : 0;
    if (n >= 0 && (size_t)n < ga->reflen)
      rc = ct__buf_append(g, ga->ref + n, ga->reflen - (size_t)n) == 0 ? 1 : -2;
    ga->ref = NULL;
    ga->reflen = 0;
    if (rc == -2) {
      ct__buf_clear(g);
      fail_nomem(s);
      return;
    }
  } else {
    rc = send_buf(s, g);
  }
  if (rc < 0) {
    ct__buf_clear(g);
    close_errno(s, errno, "write");
    return;
  }
  if (g->len > 0) {
    s->wblocked = 1;
    if (out_get(s) == NULL || ct__buf_move(s->out, g) != 0) {
      ct__buf_clear(g);
      fail_nomem(s);
      return;
    }
  }
  if (s->base.flags & CT__T_ABOVE_HIGH)
    ct__transport_buffer_changed(&s->base, out_len(s));
  if (s->base.flags & CT__T_CLOSED)
    return;
  if (out_len(s) == 0 && drained(s))
    return;
  update_events(s);
}

/* A dispatch: the transport's own callbacks are about to run.  Its writes
 * are gathered while its own buffer is empty (so order is kept). */
static inline void begin_dispatch(ct__stream *s) {
  s->dispatching = 1;
  ct__gather_turn_begin(s->gather);
  if (CT__LIKELY(out_len(s) == 0 && s->gather->owner == NULL)) {
    s->gather->owner = s;
    s->gathering = 1;
  }
}

static inline void end_dispatch(ct__stream *s) {
  s->dispatching = 0;
  ct__gather_turn_end(s->gather);
  if (CT__LIKELY(s->gathering)) {
    s->gathering = 0;
    s->gather->owner = NULL;
    if (gathered(s) > 0)
      gather_send(s);
  } else if (out_len(s) > 0 && !s->wblocked &&
             !(s->base.flags & CT__T_CLOSED)) {
    stream_flush(s, 0);
  }
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
  /* Flush what the protocol wrote (at the end of this dispatch), then
   * close cleanly. */
  s->base.flags |= CT__T_CLOSING;
  if (queued(s) == 0)
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
  return CT__LIKELY(out_len(s) == 0) ? CT__READ_BUFFER_SIZE
                                     : CT__STREAM_READ_SLOW;
}

static inline void deliver(ct__stream *s, size_t n) {
  s->stats.read_calls++;
  s->stats.bytes_read += n;
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
    if (s->gathering && materialize(s) != 0) {
      fail_nomem(s);
      return;
    }
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
  if (CT__UNLIKELY(s->gathering && s->gather->reflen > 0) &&
      materialize(s) != 0) {
    fail_nomem(s);
    return;
  }
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
    if (out_len(s) > 0) {
      stream_flush(s, 1);
    } else {
      s->wblocked = 0;
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
  begin_dispatch(s);
  if (CT__UNLIKELY(what & EV_WRITE))
    stream_writable(s, (int)fd, what);
  else if (what & EV_READ)
    stream_read(s, (int)fd);
  end_dispatch(s);
}

/* -------------------------------------------------------------- the ops */

static size_t total_of(const struct iovec *iov, int cnt) {
  size_t t = 0;
  for (int i = 0; i < cnt; i++)
    t += iov[i].iov_len;
  return t;
}

/*
 * Send iov[0..cnt) at once, behind whatever was gathered (a large write,
 * or one that would overflow the gather buffer).  Only called while the
 * transport's own buffer is empty, so nothing is queued ahead of these
 * bytes.  What the kernel refuses goes to the own buffer, in order.
 */
static CT__NOINLINE int write_direct(ct__stream *s, const struct iovec *iov,
                                     int cnt) {
  ct__buf *g = s->gathering ? &s->gather->buf : NULL;
  struct iovec vec[CT__IOV_BATCH];
  int nv = g != NULL ? ct__buf_iov(g, vec, CT__IOV_BATCH) : 0;
  size_t glen = g != NULL ? g->len : 0;
  size_t gcovered = 0;
  for (int i = 0; i < nv; i++)
    gcovered += vec[i].iov_len;
  if (gcovered != glen || nv + cnt > CT__IOV_BATCH) {
    /* Too many pieces for one sendmsg(): queue them all, in order, and
     * let the buffer flush send them in batches. */
    if (out_get(s) == NULL || (g != NULL && ct__buf_move(s->out, g) != 0))
      return fail_nomem(s);
    if (ct__buf_appendv(s->out, iov, cnt, 0) != 0)
      return fail_nomem(s);
    drop_gather(s);
    stream_flush(s, 0);
    return 0;
  }
  memcpy(vec + nv, iov, (size_t)cnt * sizeof *iov);
  ssize_t n = send_iov(s, vec, nv + cnt);
  if (n < 0) {
    if (g != NULL)
      ct__buf_clear(g);
    close_errno(s, errno, "write");
    return 0; /* reported through connection_lost */
  }
  size_t sent = (size_t)n;
  if (g != NULL) {
    size_t gs = sent < glen ? sent : glen;
    ct__buf_consume(g, gs);
    sent -= gs;
    if (g->len > 0) {
      if (out_get(s) == NULL || ct__buf_move(s->out, g) != 0)
        return fail_nomem(s);
      drop_gather(s); /* the own buffer is not empty any more */
    }
  }
  if (sent < total_of(iov, cnt) &&
      (out_get(s) == NULL || ct__buf_appendv(s->out, iov, cnt, sent) != 0))
    return fail_nomem(s);
  if (out_len(s) > 0) {
    s->wblocked = 1; /* the kernel took less than it was given */
    drop_gather(s);  /* (empty) later writes queue behind the rest */
    update_events(s);
  }
  ct__transport_buffer_changed(&s->base, queued(s));
  return 0;
}

/* Everything but the gathered small write. */
/* Bytes were queued: in the gather buffer, or in the own buffer, which
 * outside a dispatch leaves before the reactor next waits. */
static void queued_more(ct__stream *s) {
  if (!s->gathering && !s->dispatching && !s->wblocked)
    ct__reactor_flush_later(s->base.reactor, &s->flush);
  ct__transport_buffer_changed(&s->base, queued(s));
}

static CT__NOINLINE int write_slow(ct__stream *s, const struct iovec *iov,
                                   int cnt, size_t total) {
  if (s->gathering) {
    if (materialize(s) != 0)
      return fail_nomem(s);
    ct__buf *g = &s->gather->buf;
    if (total >= CT__STREAM_DIRECT || g->len + total > CT__GATHER_MAX)
      return write_direct(s, iov, cnt);
    if (ct__buf_appendv(g, iov, cnt, 0) != 0)
      return fail_nomem(s);
    queued_more(s);
    return 0;
  }
  if (out_len(s) == 0 && total >= CT__STREAM_DIRECT)
    return write_direct(s, iov, cnt);
  if (out_get(s) == NULL || ct__buf_appendv(s->out, iov, cnt, 0) != 0)
    return fail_nomem(s);
  queued_more(s);
  return 0;
}

static int op_write(ct_transport *t, const void *data, size_t len) {
  ct__stream *s = (ct__stream *)t;
  if (CT__LIKELY(s->gathering && len < CT__STREAM_DIRECT)) {
    ct__gather *ga = s->gather;
    ct__buf *g = &ga->buf;
    const char *d = data;
    if (g->len == 0 && ga->reflen == 0 && d >= s->rbuf &&
        d + len <= s->rbuf + CT__READ_BUFFER_SIZE &&
        len <= s->base.high_water) {
      /* An echo of what was just read: the bytes stay valid until the
       * next read into the buffer or the end of the dispatch, so the first
       * write is only referenced (no copy if it stays the only one). */
      ga->ref = d;
      ga->reflen = len;
      return 0;
    }
    if (CT__UNLIKELY(ga->reflen > 0) && materialize(s) != 0)
      return fail_nomem(s);
    if (CT__LIKELY(g->len + len <= CT__GATHER_MAX)) {
      if (CT__UNLIKELY(ct__buf_append(g, data, len) != 0))
        return fail_nomem(s);
      if (CT__UNLIKELY(g->len > s->base.high_water))
        ct__transport_buffer_changed(&s->base, g->len);
      return 0;
    }
  }
  struct iovec iov = {(void *)(uintptr_t)data, len};
  return write_slow(s, &iov, 1, len);
}

static int op_writev(ct_transport *t, const struct iovec *iov, int iovcnt) {
  ct__stream *s = (ct__stream *)t;
  size_t total = total_of(iov, iovcnt);
  if (total == 0)
    return 0;
  return write_slow(s, iov, iovcnt, total);
}

static int op_write_bytes(ct_transport *t, ct_bytes *blob, size_t off,
                          size_t len) {
  ct__stream *s = (ct__stream *)t;
  if (s->gathering && materialize(s) != 0)
    return fail_nomem(s);
  /* Shared bytes are worth gathering whatever their size: queuing them
   * copies nothing. */
  ct__buf *b = s->gathering ? &s->gather->buf : out_get(s);
  if (b == NULL || ct__buf_append_blob(b, blob, off, len) != 0)
    return fail_nomem(s);
  queued_more(s);
  return 0;
}

/*
 * sendfile(2) behind the queued bytes: what was gathered or queued must
 * leave first, so it is pushed out now; if it cannot all go, nothing of
 * the file is sent yet (0) and the pull producer is resumed once the
 * socket drains.  A short sendfile means the socket is full: EV_WRITE.
 */
static long long op_sendfile(ct_transport *t, int fd, long long offset,
                             size_t len) {
  ct__stream *s = (ct__stream *)t;
  if (s->gathering && gathered(s) > 0) {
    gather_send(s); /* ends the gathering for this dispatch */
    drop_gather(s);
  }
  if (s->base.flags & CT__T_CLOSED)
    return CT_ECLOSED;
  if (out_len(s) > 0 && !s->wblocked)
    stream_flush(s, 0);
  if (s->base.flags & CT__T_CLOSED)
    return CT_ECLOSED;
  if (out_len(s) > 0)
    return 0;
  off_t off = (off_t)offset;
  ssize_t n;
  do {
    n = sendfile(s->fd, fd, &off, len);
    s->stats.write_calls++;
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return -errno; /* the file's error (EINVAL, EIO): the caller decides */
    n = 0;
  } else if (n == 0) {
    return CT_ERANGE; /* the file ends before `offset` */
  }
  s->stats.bytes_written += (uint64_t)n;
  if ((size_t)n < len) {
    s->wblocked = 1; /* full: resume the producer when it drains */
    update_events(s);
  }
  return n;
}

static int op_lose_connection(ct_transport *t) {
  ct__stream *s = (ct__stream *)t;
  s->base.flags |= CT__T_CLOSING;
  /* Queued bytes leave first: at the end of this dispatch, before the
   * next poll, or on EV_WRITE; then drained() closes. */
  if (queued(s) == 0)
    close_clean(s);
  else
    update_events(s); /* stop reading */
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
  if (queued(s) == 0)
    drained(s);
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
  return queued((const ct__stream *)t);
}

static void op_want_pull(ct_transport *t) {
  update_events((ct__stream *)t);
}

static int op_fileno(const ct_transport *t) {
  return ((const ct__stream *)t)->fd;
}

static int op_get_stats(const ct_transport *t, ct_transport_stats *out) {
  *out = ((const ct__stream *)t)->stats;
  return 0;
}

static void op_destroy(ct_transport *t) {
  ct__stream *s = (ct__stream *)t;
  if (s->ev_events != 0)
    event_del(&s->ev);
  if (s->fd >= 0)
    close(s->fd);
  drop_gather(s);
  ct__reactor_flush_cancel(s->base.reactor, &s->flush);
  out_release(s);
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
    .write_bytes = op_write_bytes, .get_stats = op_get_stats,                  \
    .sendfile = op_sendfile, .destroy = op_destroy                             \
  }

static const ct_transport_ops tcp_ops = STREAM_OPS("tcp");
static const ct_transport_ops unix_ops = STREAM_OPS("unix");

ct_transport *ct__stream_new(ct_reactor *r, int fd, int is_unix,
                             unsigned flags) {
  char *rbuf = ct__reactor_read_buffer(r);
  if (rbuf == NULL)
    return NULL;
  ct__stream *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NULL;
  s->rbuf = rbuf;
  s->gather = ct__reactor_gather(r);
  ct__transport_init(&s->base, is_unix ? &unix_ops : &tcp_ops, r);
  s->fd = fd;
  s->is_unix = is_unix ? 1 : 0;
  s->flush.fn = flush_node_cb;
  if (!is_unix && (flags & CT__STREAM_NODELAY)) {
    /* Gathered writes make Nagle's algorithm pointless: each dispatch
     * already sends one segment, and delaying it would only wait for the
     * peer's delayed ACK. */
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return &s->base;
}

void ct__stream_start(ct_transport *t, ct_protocol *p) {
  ct__stream *s = (ct__stream *)t;
  begin_dispatch(s);
  ct__transport_make_connection(t, p);
  if (!(s->base.flags & CT__T_CLOSED))
    update_events(s);
  end_dispatch(s);
}
