/*
 * stdio.c: stdin and stdout as one transport (see include/ctwist/stdio.h).
 *
 * Unlike the stream transport, this one writes with write(), not send():
 * stdout is usually a pipe, a terminal or a file.  Reading is an EV_READ
 * event, except on a regular file, which epoll refuses: a file is read a
 * chunk per loop turn through call_soon, which keeps the loop turning
 * (other connections, timers) while a large file is consumed.  Output that
 * the descriptor does not take at once is queued and flushed on EV_WRITE
 * (or, for a file, written out directly: files never say EAGAIN).
 *
 * Every close is reported on a later turn (ct__transport_deliver_lost from
 * call_soon), never from inside a call the protocol made.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "ctwist/log.h"
#include "ctwist/stdio.h"
#include "reactor/buf.h"
#include "reactor/internal.h"
#include "transports/internal.h"

#define STDIO_FILE_CHUNK (64 * 1024)

typedef struct stdio_t {
  ct_transport base; /* first */
  int in_fd, out_fd;
  int in_file, out_file;   /* regular files: not pollable */
  int in_flags, out_flags; /* fcntl flags to restore */
  struct event *rev, *wev;
  int rev_added, wev_added;
  int file_read_queued; /* a call_soon read of a file is queued */
  ct__buf out;          /* what the output did not take yet */
  int write_shut;       /* half_close done */
  int lost_queued;      /* the close is reported on a later turn */
  ct_failure *lost_reason;
} stdio_t;

static stdio_t *st_of(ct_transport *t) {
  return (stdio_t *)(void *)t;
}

/* -------------------------------------------------------------- closing */

static void stop_io(stdio_t *s) {
  if (s->rev_added) {
    event_del(s->rev);
    s->rev_added = 0;
  }
  if (s->wev_added) {
    event_del(s->wev);
    s->wev_added = 0;
  }
}

static void restore_fds(stdio_t *s) {
  if (s->in_fd >= 0 && !s->in_file)
    fcntl(s->in_fd, F_SETFL, s->in_flags);
  if (s->out_fd >= 0 && s->out_fd != s->in_fd && !s->out_file)
    fcntl(s->out_fd, F_SETFL, s->out_flags);
}

/* Let the reader of a pipe or socket on stdout see end of file, without
 * freeing descriptor 1 for reuse. */
static void shut_output(stdio_t *s) {
  if (s->out_fd < 0 || s->out_file || isatty(s->out_fd))
    return;
  struct stat st;
  if (fstat(s->out_fd, &st) != 0 ||
      !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
    return;
  int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, s->out_fd);
    close(null);
  }
}

static void lost_cb(void *arg) {
  stdio_t *s = arg;
  ct_failure *f = s->lost_reason;
  s->lost_reason = NULL;
  ct__transport_deliver_lost(&s->base, f);
}

/* Close with `f` (taken): stop everything now, report on a later turn. */
static void close_with(stdio_t *s, ct_failure *f) {
  if (s->lost_queued) {
    ct_failure_free(f);
    return;
  }
  s->base.flags |= CT__T_CLOSING | CT__T_CLOSED;
  stop_io(s);
  restore_fds(s);
  shut_output(s);
  ct__buf_clear(&s->out);
  s->lost_reason = f;
  s->lost_queued = 1;
  if (ct__reactor_call_soon(s->base.reactor, lost_cb, s) != 0)
    ct_log(CT_LOG_ERROR, "stdio", "out of memory reporting the close");
}

static void close_clean(stdio_t *s) {
  close_with(s, ct_failure_new_at(__FILE__, __LINE__, "stdio", CT_ECONNDONE,
                                  NULL, "standard I/O closed cleanly"));
}

static void close_errno(stdio_t *s, int err, const char *what) {
  close_with(s, ct_failure_new_at(__FILE__, __LINE__, "stdio", -err, NULL,
                                  "%s on standard I/O failed: %s (errno %d)",
                                  what, strerror(err), err));
}

/* ---------------------------------------------------------------- output */

static void update_write_event(stdio_t *s) {
  int want = ct__buf_len(&s->out) > 0 && !s->out_file;
  if (want && !s->wev_added) {
    event_add(s->wev, NULL);
    s->wev_added = 1;
  } else if (!want && s->wev_added) {
    event_del(s->wev);
    s->wev_added = 0;
  }
}

/*
 * write() without SIGPIPE.  A socket write passes MSG_NOSIGNAL; a pipe's
 * cannot, and the library leaves the process's SIGPIPE disposition alone.
 * So SIGPIPE is blocked for this thread around the call, and the one the
 * call raised (a reader that went away) is consumed before unblocking:
 * the caller sees EPIPE, as a socket would give.  A SIGPIPE that was
 * already pending is left alone.
 */
static ssize_t write_nosigpipe(int fd, const void *buf, size_t len) {
  sigset_t pipe_set, old, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  sigemptyset(&pending);
  sigpending(&pending);
  int was_pending = sigismember(&pending, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  ssize_t n = write(fd, buf, len);
  int err = errno;
  if (n < 0 && err == EPIPE && !was_pending) {
    const struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = err;
  return n;
}

/* Write what is queued.  Returns 0, or -1 after closing on an error. */
static int flush(stdio_t *s) {
  while (ct__buf_len(&s->out) > 0) {
    ssize_t n =
        write_nosigpipe(s->out_fd, ct__buf_head(&s->out), ct__buf_len(&s->out));
    if (n > 0) {
      ct__buf_consume(&s->out, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    close_errno(s, n < 0 ? errno : EIO, "write");
    return -1;
  }
  update_write_event(s);
  ct__transport_buffer_changed(&s->base, ct__buf_len(&s->out));
  return 0;
}

/* Output drained: finish a pending lose_connection or half_close, or let a
 * pull producer write. */
static void drained(stdio_t *s) {
  if (s->base.flags & CT__T_CLOSING) {
    close_clean(s);
    return;
  }
  if ((s->base.flags & CT__T_WRITE_SHUT) && !s->write_shut) {
    s->write_shut = 1;
    shut_output(s);
    return;
  }
  ct__transport_output_drained(&s->base);
}

static void write_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  stdio_t *s = arg;
  if (flush(s) == 0 && ct__buf_len(&s->out) == 0)
    drained(s);
}

static int st_write(ct_transport *t, const void *data, size_t len) {
  stdio_t *s = st_of(t);
  if (ct__buf_append(&s->out, data, len) != 0) {
    close_errno(s, ENOMEM, "write");
    return CT_ENOMEM;
  }
  /* Errors found here are reported on a later turn (close_with). */
  flush(s);
  return 0;
}

static int st_writev(ct_transport *t, const struct iovec *iov, int iovcnt) {
  stdio_t *s = st_of(t);
  if (ct__buf_appendv(&s->out, iov, iovcnt, 0) != 0) {
    close_errno(s, ENOMEM, "write");
    return CT_ENOMEM;
  }
  flush(s);
  return 0;
}

/* ----------------------------------------------------------------- input */

static void file_read_cb(void *arg);

/* The queued read holds a reference: a close reported meanwhile must not
 * free the transport under it. */
static void schedule_file_read(stdio_t *s) {
  if (!s->file_read_queued &&
      ct__reactor_call_soon(s->base.reactor, file_read_cb, s) == 0) {
    s->file_read_queued = 1;
    ct_transport_ref(&s->base);
  }
}

static void start_reading(stdio_t *s) {
  if (s->in_fd < 0 || !ct__transport_want_reading(&s->base))
    return;
  if (s->in_file)
    schedule_file_read(s);
  else if (!s->rev_added) {
    event_add(s->rev, NULL);
    s->rev_added = 1;
  }
}

static void stop_reading(stdio_t *s) {
  if (s->rev_added) {
    event_del(s->rev);
    s->rev_added = 0;
  }
}

static void got_eof(stdio_t *s) {
  stop_reading(s);
  s->base.flags |= CT__T_EOF;
  ct_protocol *p = s->base.protocol;
  int keep = p != NULL && p->ops != NULL && p->ops->eof_received != NULL &&
             p->ops->eof_received(p);
  if (keep || (s->base.flags & CT__T_CLOSED))
    return;
  /* Not half-closeable: flush, then close. */
  s->base.flags |= CT__T_CLOSING;
  if (ct__buf_len(&s->out) == 0)
    close_clean(s);
}

/* One read; returns 1 if more may follow at once. */
static int read_once(stdio_t *s, size_t want) {
  if (!ct__transport_want_reading(&s->base))
    return 0;
  char *buf = ct__reactor_read_buffer(s->base.reactor);
  if (buf == NULL) {
    close_errno(s, ENOMEM, "read");
    return 0;
  }
  ssize_t n = read(s->in_fd, buf, want);
  if (n > 0) {
    ct_protocol *p = s->base.protocol;
    if (p != NULL && p->ops != NULL && p->ops->data_received != NULL)
      p->ops->data_received(p, buf, (size_t)n);
    return (size_t)n == want;
  }
  if (n == 0) {
    got_eof(s);
    return 0;
  }
  if (errno == EINTR)
    return 1;
  if (errno != EAGAIN && errno != EWOULDBLOCK)
    close_errno(s, errno, "read");
  return 0;
}

static void read_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  read_once(arg, CT__READ_BUFFER_SIZE);
}

static void file_read_cb(void *arg) {
  stdio_t *s = arg;
  s->file_read_queued = 0;
  /* A chunk per turn: a large file never starves the loop. */
  if (!(s->base.flags & CT__T_CLOSED)) {
    read_once(s, STDIO_FILE_CHUNK);
    if (!(s->base.flags & CT__T_EOF))
      start_reading(s);
  }
  ct_transport_unref(&s->base);
}

/* ------------------------------------------------------------------- ops */

static int st_lose_connection(ct_transport *t) {
  stdio_t *s = st_of(t);
  t->flags |= CT__T_CLOSING;
  stop_reading(s);
  if (ct__buf_len(&s->out) == 0)
    close_clean(s);
  return 0;
}

static int st_abort(ct_transport *t) {
  close_with(st_of(t),
             ct_failure_new_at(__FILE__, __LINE__, "stdio", CT_ECONNABORTED,
                               NULL, "standard I/O aborted"));
  return 0;
}

static int st_half_close(ct_transport *t) {
  stdio_t *s = st_of(t);
  t->flags |= CT__T_WRITE_SHUT;
  if (ct__buf_len(&s->out) == 0 && !s->write_shut) {
    s->write_shut = 1;
    shut_output(s);
  }
  return 0;
}

static int st_pause(ct_transport *t) {
  stop_reading(st_of(t));
  return 0;
}

static int st_resume(ct_transport *t) {
  start_reading(st_of(t));
  return 0;
}

static int st_addr(ct_transport *t, ct_address *out) {
  (void)t;
  memset(out, 0, sizeof *out);
  return 0;
}

static size_t st_buffered(const ct_transport *t) {
  return ct__buf_len(&((const stdio_t *)(const void *)t)->out);
}

static int st_fileno(const ct_transport *t) {
  return ((const stdio_t *)(const void *)t)->in_fd;
}

static void st_destroy(ct_transport *t) {
  stdio_t *s = st_of(t);
  if (s->rev != NULL)
    event_free(s->rev);
  if (s->wev != NULL)
    event_free(s->wev);
  ct_failure_free(s->lost_reason);
  ct__buf_free(&s->out);
  free(s);
}

static const ct_transport_ops stdio_ops = {
    .name = "stdio",
    .write = st_write,
    .writev = st_writev,
    .lose_connection = st_lose_connection,
    .abort = st_abort,
    .half_close = st_half_close,
    .pause_reading = st_pause,
    .resume_reading = st_resume,
    .get_peer = st_addr,
    .get_host = st_addr,
    .buffered = st_buffered,
    .fileno = st_fileno,
    .destroy = st_destroy,
};

/* -------------------------------------------------------------- connect */

static int is_regular(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

ct_transport *ct_stdio_connect_fds(ct_reactor *r, ct_protocol *p, int in_fd,
                                   int out_fd, ct_failure **err) {
  if (err != NULL)
    *err = NULL;
  int code = 0;
  const char *why = NULL;
  if (r == NULL || p == NULL) {
    code = CT_EINVAL;
    why = "a reactor and a protocol are required";
  } else if (fcntl(in_fd, F_GETFL) < 0 || fcntl(out_fd, F_GETFL) < 0) {
    code = CT_EBADF;
    why = "the input or output descriptor is not open";
  }
  stdio_t *s = code == 0 ? calloc(1, sizeof *s) : NULL;
  if (code == 0 && s == NULL) {
    code = CT_ENOMEM;
    why = "out of memory";
  }
  if (s != NULL) {
    ct__transport_init(&s->base, &stdio_ops, r);
    s->in_fd = in_fd;
    s->out_fd = out_fd;
    s->in_file = is_regular(in_fd);
    s->out_file = is_regular(out_fd);
    s->in_flags = fcntl(in_fd, F_GETFL);
    s->out_flags = fcntl(out_fd, F_GETFL);
    struct event_base *base = ct__reactor_base(r);
    if (!s->in_file)
      s->rev = event_new(base, in_fd, EV_READ | EV_PERSIST, read_cb, s);
    if (!s->out_file)
      s->wev = event_new(base, out_fd, EV_WRITE | EV_PERSIST, write_cb, s);
    if ((!s->in_file && s->rev == NULL) || (!s->out_file && s->wev == NULL)) {
      st_destroy(&s->base);
      s = NULL;
      code = CT_ENOMEM;
      why = "out of memory";
    }
  }
  if (s == NULL) {
    if (err != NULL)
      *err = ct_failure_new_at(__FILE__, __LINE__, "stdio", code, NULL,
                               "cannot connect standard I/O: %s", why);
    if (p != NULL)
      ct_protocol_release(p);
    return NULL;
  }
  if (!s->in_file)
    fcntl(in_fd, F_SETFL, s->in_flags | O_NONBLOCK);
  if (!s->out_file && out_fd != in_fd)
    fcntl(out_fd, F_SETFL, s->out_flags | O_NONBLOCK);
  ct__transport_make_connection(&s->base, p);
  if (!(s->base.flags & CT__T_CLOSED))
    start_reading(s);
  return &s->base;
}

ct_transport *ct_stdio_connect(ct_reactor *r, ct_protocol *p,
                               ct_failure **err) {
  return ct_stdio_connect_fds(r, p, STDIN_FILENO, STDOUT_FILENO, err);
}
