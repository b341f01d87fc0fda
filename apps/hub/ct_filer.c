/*
 * ct-filer: the seed's filer_client, finished.  A member of a ct-hub:
 * reports on a timer, sends, multicasts and broadcasts through the hub,
 * talks to other filers directly, and moves files peer to peer with
 * SHA-256 verification and resume.
 *
 *   ct-filer --hub tcp:host=127.0.0.1:port=7000 --name alice \
 *            [--listen tcp:0:interface=127.0.0.1] [--report-interval 5] \
 *            [--dir DOWNLOADS] [--share DIR] [--control PATH [--daemon]]
 *
 * Commands, one per line, come from standard input (a terminal or a pipe)
 * and from connections to the Unix control socket (--control; --daemon
 * detaches and reads no stdin):
 *   help, id, list, send ID TEXT, broadcast TEXT, multicast ID,ID TEXT,
 *   connect ID, put ID FILE, get ID NAME, transfers, stats, watch, quit
 * Events (messages received, peers, transfer outcomes) are written to
 * standard output, and to control connections that sent `watch`.  At the
 * end of standard input (without --control) the filer exits once its
 * running transfers have finished.
 *
 * File transfer (docs/hub.md): the receiver opens a data connection to the
 * sender's listening endpoint and asks for a file from an offset; the
 * sender answers `begin`, then `chunk` frames (offset, length; the content
 * leaves with sendfile(2) on TCP and Unix sockets, pulled by a
 * non-streaming producer so memory stays bounded) and an `end` frame with
 * the SHA-256 of the whole file.  The receiver writes DIR/.NAME.ctpart,
 * renames it to DIR/NAME only when the digest matches, and deletes it after
 * a mismatch; an interrupted `get` resumes from what the part file holds.
 *
 * Test-only: CT_FILER_TEST_CORRUPT_OFFSET=N in a sender's environment
 * flips the byte at offset N of every file it sends (the content of that
 * chunk is then read and written instead of sendfile'd), so the tests can
 * check that a corrupted transfer is detected.  Never set it otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "ctwist/basic.h"
#include "ctwist/ctwist.h"
#include "ctwist/message.h"
#include "ctwist/stdio.h"
#include "hub_common.h"

/* Content bytes per chunk frame.  64 KiB keeps the receiver's frame
 * buffer on the heap, reused (the decoder maps buffers of 128 KiB and more
 * and unmaps them after each frame: page faults per chunk). */
#define CHUNK (64u * 1024u)
#define CHUNKS_PER_TURN 8 /* bounded work per producer call */
#define KEEP_FINISHED 32  /* finished transfers kept for `transfers` */
#define LINE_MAX_LEN 4096 /* longest command line */

typedef struct filer filer;
typedef struct xfer xfer;
typedef struct peer peer;
typedef struct grave grave;
typedef struct oneshot oneshot;

/* What a connection of the peer server is for (its messenger's user). */
enum { CONN_PEER = 1, CONN_XFER = 2 };
typedef struct conn_tag {
  int kind;
} conn_tag;

enum xstate {
  XS_CONNECTING,
  XS_RUNNING,
  XS_VERIFYING,
  XS_DONE,
  XS_FAILED,
  XS_INTERRUPTED
};
static const char *xstate_name[] = {"connecting", "running", "verifying",
                                    "done",       "failed",  "interrupted"};

struct xfer {
  conn_tag tag; /* CONN_XFER: on the sender's data connection */
  xfer *next;
  filer *f;
  uint64_t id;
  int incoming; /* 1: get (we receive), 0: we send */
  enum xstate state;
  char name[256];
  int64_t peer_id;
  char path[PATH_MAX]; /* outgoing: the file; incoming: the final name */
  char part[PATH_MAX + 16], meta[PATH_MAX + 24];
  char ident[80];
  char token[40];
  char endpoint[HUB_ENDPOINT_MAX + 1];
  char result[256];
  int fd;
  uint64_t size, start, done; /* done: bytes up to which data is in order */
  double t0, t1;
  EVP_MD_CTX *md;
  /* incoming: our data connection */
  ct_msg_client *c;
  ct_msg_client *c_dying; /* in the graveyard, until freed */
  ct_messenger *m;
  /* outgoing: the receiver's data connection (referenced) */
  ct_messenger *sm;
  uint64_t chunk_off, chunk_left; /* a chunk whose content is leaving */
  int no_sendfile;
};

struct peer {
  conn_tag tag; /* CONN_PEER */
  peer *next;
  filer *f;
  int64_t id;
  char name[HUB_NAME_MAX + 1];
  ct_msg_client *c; /* our outgoing connection, or NULL (they connected) */
  ct_messenger *m;  /* referenced while set */
};

typedef struct offer {
  struct offer *next;
  char token[40];
  char path[PATH_MAX];
} offer;

typedef struct pending {
  struct pending *next;
  int64_t req;
  ct_transport *t; /* referenced */
} pending;

typedef struct cmd_conn {
  ct_line_receiver lr; /* first */
  filer *f;
  struct cmd_conn *next; /* control connections */
  int watch;
  int is_stdio;
} cmd_conn;

struct filer {
  ct_reactor *r;
  const char *name, *hub_ep, *listen_ep, *dir, *share, *control_path;
  double report_interval;
  int tty;
  /* the hub */
  ct_msg_client *hubc;
  ct_reconnecting_client *rc;
  ct_messenger *hub_m; /* borrowed until its on_close */
  int64_t my_id;
  int64_t next_req;
  pending *pend;
  json_t *members; /* the last roster */
  ct_looping_call *report_loop;
  /* peers */
  ct_msg_server *peers;
  ct_listening_port *peer_port;
  char my_endpoint[HUB_ENDPOINT_MAX + 1];
  peer *peer_list;
  offer *offers;
  uint64_t next_token;
  /* transfers */
  xfer *xfers;
  uint64_t next_xfer;
  ct_looping_call *progress_loop;
  long long corrupt_at; /* test-only, -1 normally */
  grave *graves;
  int graves_scheduled;
  oneshot *oneshots;  /* offers being delivered */
  int quit_when_idle; /* stdin ended: stop once no transfer runs */
  int progress_shown; /* a progress line (no newline) is on the terminal */
  /* commands */
  cmd_conn *stdio_conn;
  cmd_conn *ctl_conns;
  ct_listening_port *ctl_port;
  ct_factory ctl_factory;
};

/* ------------------------------------------------------------- output */

static void write_line(ct_transport *t, const char *s) {
  if (t == NULL || ct_transport_is_closing(t))
    return;
  struct iovec iov[2] = {{(void *)(uintptr_t)s, strlen(s)}, {"\n", 1}};
  ct_transport_writev(t, iov, 2);
}

static void reply(ct_transport *t, const char *fmt, ...) CT_PRINTF(2, 3);
static void reply(ct_transport *t, const char *fmt, ...) {
  char buf[LINE_MAX_LEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  write_line(t, buf);
}

/* An event: to standard output (or the log when detached) and watchers. */
static void event(filer *f, const char *fmt, ...) CT_PRINTF(2, 3);
static void event(filer *f, const char *fmt, ...) {
  char buf[LINE_MAX_LEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (f->stdio_conn != NULL) {
    ct_transport *t = f->stdio_conn->lr.base.transport;
    if (f->progress_shown && t != NULL) /* replace the progress line */
      ct_transport_write_str(t, "\r\033[K");
    f->progress_shown = 0;
    write_line(t, buf);
  } else {
    ct_log(CT_LOG_INFO, "filer", "%s", buf);
  }
  for (cmd_conn *c = f->ctl_conns; c != NULL; c = c->next)
    if (c->watch)
      write_line(c->lr.base.transport, buf);
}

/* Content (text from a peer) shown on one line: non-printable bytes
 * escaped so that a peer cannot drive the terminal. */
static void printable(const char *s, size_t len, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < len && o + 5 < cap; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x20 && ch < 0x7f)
      out[o++] = (char)ch;
    else
      o += (size_t)snprintf(out + o, cap - o, "\\x%02x", ch);
  }
  out[o] = '\0';
}

static void human(double n, char *out, size_t cap) {
  const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (n >= 1024 && i < 4) {
    n /= 1024;
    i++;
  }
  snprintf(out, cap, i == 0 ? "%.0f %s" : "%.1f %s", n, u[i]);
}

/* ------------------------------------------------------------- roster */

static json_t *member_by_id(filer *f, int64_t id) {
  size_t i;
  json_t *o;
  if (f->members == NULL)
    return NULL;
  json_array_foreach(f->members, i, o) {
    if (json_integer_value(json_object_get(o, "id")) == id)
      return o;
  }
  return NULL;
}

static const char *member_str(json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return s != NULL ? s : "";
}

/* ------------------------------------------------------------ hashing */

/* Hash [from, to) of `fd`, read through one reused buffer (file pages
 * are not mapped: RSS stays flat, and no page fault per page). */
static int hash_range(EVP_MD_CTX *md, int fd, uint64_t from, uint64_t to) {
  static _Thread_local char buf[256 * 1024];
  while (from < to) {
    size_t want = to - from < sizeof buf ? (size_t)(to - from) : sizeof buf;
    ssize_t n = pread(fd, buf, want, (off_t)from);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return n < 0 ? -errno : CT_ERANGE;
    EVP_DigestUpdate(md, buf, (size_t)n);
    from += (uint64_t)n;
  }
  return 0;
}

static void digest_hex(EVP_MD_CTX *md, char out[65]) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_DigestFinal_ex(md, d, &n);
  for (unsigned i = 0; i < n && i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", d[i]);
  out[64] = '\0';
}

/* ---------------------------------------------------------- transfers */

static void xfer_progress_text(xfer *x, char *out, size_t cap) {
  double now = ct_reactor_seconds(x->f->r);
  double el = (x->t1 > 0 ? x->t1 : now) - x->t0;
  double moved = (double)(x->done - x->start);
  double rate = el > 0 ? moved / el : 0;
  char a[32], b[32], c[32], eta[32] = "-";
  human((double)x->done, a, sizeof a);
  human((double)x->size, b, sizeof b);
  human(rate, c, sizeof c);
  if (x->state == XS_RUNNING && rate > 0) {
    double left = (double)(x->size - x->done) / rate;
    snprintf(eta, sizeof eta, "%d:%02d", (int)left / 60, (int)left % 60);
  }
  snprintf(out, cap, "#%llu %s %s %s %lld: %s %.1f%% %s/%s %s/s ETA %s%s%s",
           (unsigned long long)x->id, x->incoming ? "get" : "put", x->name,
           x->incoming ? "from" : "to", (long long)x->peer_id,
           xstate_name[x->state],
           x->size > 0 ? 100.0 * (double)x->done / (double)x->size : 100.0, a,
           b, c, eta, x->result[0] ? "; " : "", x->result);
}

static void xfer_close_fd(xfer *x) {
  if (x->fd >= 0)
    close(x->fd);
  x->fd = -1;
  if (x->md != NULL)
    EVP_MD_CTX_free(x->md);
  x->md = NULL;
}

/* Clients are freed on a later loop turn, never from inside their own
 * callbacks: `bury` puts one in the graveyard, which the next turn (or the
 * shutdown) empties.  `flag` (may be NULL) is cleared then: an xfer stays
 * alive while its client can still call it back. */
typedef struct grave {
  struct grave *next;
  ct_msg_client *c;
  ct_msg_client **flag;
} grave;

static void flush_graves(void *arg) {
  filer *f = arg;
  f->graves_scheduled = 0;
  while (f->graves != NULL) {
    grave *g = f->graves;
    f->graves = g->next;
    ct_msg_client_free(g->c);
    if (g->flag != NULL)
      *g->flag = NULL;
    free(g);
  }
}

static void bury(filer *f, ct_msg_client *c, ct_msg_client **flag) {
  grave *g = malloc(sizeof *g);
  if (g == NULL) { /* leak-free fallback: callbacks stop at once */
    ct_msg_client_free(c);
    if (flag != NULL)
      *flag = NULL;
    return;
  }
  g->c = c;
  g->flag = flag;
  g->next = f->graves;
  f->graves = g;
  if (flag != NULL)
    *flag = c;
  if (!f->graves_scheduled && ct_call_later(f->r, 0, flush_graves, f) != NULL)
    f->graves_scheduled = 1;
}

static void xfer_release_conn(xfer *x) {
  if (x->c != NULL) {
    ct_msg_client *c = x->c;
    x->c = NULL;
    bury(x->f, c, &x->c_dying);
  }
  x->m = NULL;
  if (x->sm != NULL) {
    ct_transport *t = ct_messenger_transport(x->sm);
    if (t != NULL)
      ct_transport_unregister_producer(t);
    ct_messenger_set_user(x->sm, NULL);
    ct_messenger_unref(x->sm);
    x->sm = NULL;
  }
}

/* At shutdown, after flush_graves(): frees the client at once. */
static void xfer_free(xfer *x) {
  xfer_close_fd(x);
  ct_msg_client_free(x->c);
  x->c = NULL;
  xfer_release_conn(x);
  free(x);
}

/* Forget the oldest finished transfers beyond KEEP_FINISHED (called when
 * a transfer starts, never from a transfer's own callbacks). */
static void xfer_prune(filer *f) {
  int kept = 0;
  for (xfer **pp = &f->xfers; *pp != NULL;) {
    xfer *x = *pp;
    if (x->state >= XS_DONE && ++kept > KEEP_FINISHED && x->c_dying == NULL &&
        x->sm == NULL) {
      *pp = x->next;
      xfer_free(x);
    } else {
      pp = &x->next;
    }
  }
}

/* After the end of standard input: stop when no transfer is running. */
static void maybe_quit(filer *f) {
  if (!f->quit_when_idle)
    return;
  for (xfer *x = f->xfers; x != NULL; x = x->next)
    if (x->state < XS_DONE)
      return;
  ct_reactor_stop(f->r);
}

static void xfer_finish(xfer *x, enum xstate st, const char *fmt, ...)
    CT_PRINTF(3, 4);
static void xfer_finish(xfer *x, enum xstate st, const char *fmt, ...) {
  if (x->state >= XS_DONE)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(x->result, sizeof x->result, fmt, ap);
  va_end(ap);
  x->state = st;
  x->t1 = ct_reactor_seconds(x->f->r);
  char line[LINE_MAX_LEN];
  xfer_progress_text(x, line, sizeof line);
  event(x->f, "transfer %s", line); /* replaces the progress line */
  xfer_close_fd(x);
  xfer_release_conn(x);
  maybe_quit(x->f);
}

static xfer *xfer_new(filer *f, int incoming, const char *name) {
  xfer_prune(f);
  xfer *x = calloc(1, sizeof *x);
  if (x == NULL)
    return NULL;
  x->tag.kind = CONN_XFER;
  x->f = f;
  x->id = ++f->next_xfer;
  x->incoming = incoming;
  x->fd = -1;
  x->state = XS_CONNECTING;
  x->t0 = ct_reactor_seconds(f->r);
  snprintf(x->name, sizeof x->name, "%s", name);
  x->md = EVP_MD_CTX_new();
  if (x->md == NULL || EVP_DigestInit_ex(x->md, EVP_sha256(), NULL) != 1) {
    if (x->md != NULL)
      EVP_MD_CTX_free(x->md);
    free(x);
    return NULL;
  }
  x->next = f->xfers;
  f->xfers = x;
  return x;
}

static int valid_file_name(const char *s) {
  return s[0] != '\0' && s[0] != '.' && strchr(s, '/') == NULL &&
         strlen(s) < 200;
}

/* ---- sending side ---- */

static void xo_send_end(xfer *x) {
  char hex[65];
  digest_hex(x->md, hex);
  ct_msg_header *h = hub_header("end", 0);
  if (h == NULL) {
    ct_messenger_abort(x->sm);
    return;
  }
  ct_msg_header_set_int(h, "size", (int64_t)x->size);
  ct_msg_header_set_str(h, "sha256", hex);
  ct_messenger_send(x->sm, h, NULL, 0);
  ct_msg_header_free(h);
  x->state = XS_VERIFYING; /* the receiver answers `result` */
}

/* Start the next chunk: its frame header goes out now, written by hand so
 * that the content can follow with sendfile(2).  Hashes the content. */
static int xo_start_chunk(xfer *x, ct_transport *t) {
  uint64_t len = x->size - x->done < CHUNK ? x->size - x->done : CHUNK;
  int rc = hash_range(x->md, x->fd, x->done, x->done + len);
  if (rc < 0)
    return rc;
  char hdr[160];
  int n =
      snprintf(hdr + 4, sizeof hdr - 4,
               "{\"type\":\"chunk\",\"offset\":%llu,\"content-length\":%llu}",
               (unsigned long long)x->done, (unsigned long long)len);
  hdr[0] = (char)((n >> 24) & 0xff);
  hdr[1] = (char)((n >> 16) & 0xff);
  hdr[2] = (char)((n >> 8) & 0xff);
  hdr[3] = (char)(n & 0xff);
  rc = ct_transport_write(t, hdr, (size_t)n + 4);
  if (rc != 0)
    return rc;
  x->chunk_off = x->done;
  x->chunk_left = len;
  return 0;
}

/* Content of the current chunk without sendfile: read and write it. */
static long long xo_copy(xfer *x, ct_transport *t) {
  char buf[64 * 1024];
  size_t want = x->chunk_left < sizeof buf ? (size_t)x->chunk_left : sizeof buf;
  ssize_t n = pread(x->fd, buf, want, (off_t)x->chunk_off);
  if (n <= 0)
    return n < 0 ? -errno : CT_ERANGE;
  long long c = x->f->corrupt_at;
  if (c >= 0 && (uint64_t)c >= x->chunk_off &&
      (uint64_t)c < x->chunk_off + (uint64_t)n)
    buf[(uint64_t)c - x->chunk_off] ^= 0x5a; /* test-only corruption */
  int rc = ct_transport_write(t, buf, (size_t)n);
  return rc != 0 ? rc : n;
}

static void xo_more(void *arg) {
  xfer *x = arg;
  if (x->state != XS_RUNNING || x->sm == NULL)
    return;
  ct_transport *t = ct_messenger_transport(x->sm);
  if (t == NULL)
    return;
  for (int i = 0; i < CHUNKS_PER_TURN * 4; i++) {
    if (x->chunk_left == 0) {
      if (x->done == x->size) {
        ct_transport_unregister_producer(t);
        xo_send_end(x);
        return;
      }
      if (ct_transport_buffered(t) >= CHUNK)
        return;
      int rc = xo_start_chunk(x, t);
      if (rc != 0) {
        ct_messenger_abort(x->sm);
        xfer_finish(x, XS_FAILED, "reading %s: %s", x->path, ct_strerror(rc));
        return;
      }
    }
    long long c = x->f->corrupt_at;
    int corrupt_here = c >= 0 && (uint64_t)c >= x->chunk_off &&
                       (uint64_t)c < x->chunk_off + x->chunk_left;
    long long n;
    if (x->no_sendfile || corrupt_here) {
      if (ct_transport_buffered(t) >= CHUNK)
        return;
      n = xo_copy(x, t);
    } else {
      n = ct_transport_sendfile(t, x->fd, (long long)x->chunk_off,
                                (size_t)x->chunk_left);
      if (n == CT_ENOSYS) {
        x->no_sendfile = 1; /* TLS, a policy wrapper: copy instead */
        continue;
      }
    }
    if (n < 0) {
      /* The file's errors fail the transfer; the connection's (reset,
       * closed) interrupt it: the receiver may come back and resume. */
      int file_err = n == CT_ERANGE || n == -EIO || n == -EINVAL ||
                     n == -EBADF || n == -EOVERFLOW;
      ct_messenger_abort(x->sm);
      xfer_finish(x, file_err ? XS_FAILED : XS_INTERRUPTED, "sending %s: %s",
                  x->path,
                  n == CT_ERANGE ? "the file shrank" : ct_strerror((int)n));
      return;
    }
    if (n == 0)
      return; /* full: resumed when the socket drains */
    x->chunk_off += (uint64_t)n;
    x->chunk_left -= (uint64_t)n;
    x->done += (uint64_t)n;
  }
}

static void xo_stop(void *arg) {
  (void)arg; /* the connection ended: on_close reports it */
}

static const ct_producer_ops xo_producer = {NULL, xo_more, xo_stop};

static const char *offer_path(filer *f, const char *token) {
  for (offer *o = f->offers; o != NULL; o = o->next)
    if (strcmp(o->token, token) == 0)
      return o->path;
  return NULL;
}

/* A `fetch` arrived on a peer-server connection: serve the file. */
static void xo_fetch(filer *f, ct_messenger *m, const ct_msg_header *h) {
  const char *name = NULL, *token = NULL, *ident = "";
  int64_t offset = 0, from = 0;
  ct_msg_header_get_str(h, "ident", &ident);
  ct_msg_header_get_int(h, "offset", &offset);
  ct_msg_header_get_int(h, "from", &from);
  char path[PATH_MAX];
  if (ct_msg_header_get_str(h, "token", &token) == 0) {
    const char *p = offer_path(f, token);
    if (p == NULL) {
      hub_send_error(m, 0, "ENOTFOUND", "no such offer (expired?)");
      ct_messenger_close(m);
      return;
    }
    snprintf(path, sizeof path, "%s", p);
    name = strrchr(p, '/') != NULL ? strrchr(p, '/') + 1 : p;
  } else if (ct_msg_header_get_str(h, "name", &name) == 0 &&
             valid_file_name(name)) {
    snprintf(path, sizeof path, "%s/%s", f->share, name);
  } else {
    hub_send_error(m, 0, "EINVAL", "fetch needs a token or a plain file name");
    ct_messenger_close(m);
    return;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    char text[300];
    snprintf(text, sizeof text, "cannot send %s: %s", name,
             fd < 0 ? strerror(errno) : "not a regular file");
    if (fd >= 0)
      close(fd);
    hub_send_error(m, 0, "ENOTFOUND", text);
    ct_messenger_close(m);
    return;
  }
  xfer *x = xfer_new(f, 0, name);
  if (x == NULL) {
    close(fd);
    ct_messenger_abort(m);
    return;
  }
  x->fd = fd;
  x->peer_id = from;
  x->size = (uint64_t)st.st_size;
  snprintf(x->path, sizeof x->path, "%s", path);
  snprintf(x->ident, sizeof x->ident, "%llu-%lld.%09ld",
           (unsigned long long)st.st_size, (long long)st.st_mtim.tv_sec,
           st.st_mtim.tv_nsec);
  /* Resume only the same version of the file. */
  if (strcmp(ident, x->ident) != 0 || offset < 0 || (uint64_t)offset > x->size)
    offset = 0;
  x->start = x->done = (uint64_t)offset;
  int rc = hash_range(x->md, fd, 0, x->start);
  x->sm = ct_messenger_ref(m);
  ct_messenger_set_user(m, x);
  if (rc != 0) {
    hub_send_error(m, 0, "EIO", "cannot read the file");
    ct_messenger_close(m);
    xfer_finish(x, XS_FAILED, "reading %s: %s", path, strerror(-rc));
    return;
  }
  ct_msg_header *b = hub_header("begin", 0);
  if (b == NULL) {
    ct_messenger_abort(m);
    return;
  }
  ct_msg_header_set_int(b, "size", (int64_t)x->size);
  ct_msg_header_set_int(b, "offset", (int64_t)x->start);
  ct_msg_header_set_str(b, "ident", x->ident);
  ct_msg_header_set_str(b, "name", name);
  ct_messenger_send(m, b, NULL, 0);
  ct_msg_header_free(b);
  x->state = XS_RUNNING;
  ct_transport *t = ct_messenger_transport(m);
  if (t == NULL || ct_transport_register_producer(t, &xo_producer, x, 0) != 0)
    xfer_finish(x, XS_FAILED, "the connection closed");
}

static void xo_result(xfer *x, const ct_msg_header *h) {
  int64_t ok = 0;
  const char *msg = "", *sha = "";
  ct_msg_header_get_int(h, "ok", &ok);
  ct_msg_header_get_str(h, "message", &msg);
  ct_msg_header_get_str(h, "sha256", &sha);
  if (ok) {
    /* a completed offer is not served again */
    for (offer **pp = &x->f->offers; *pp != NULL; pp = &(*pp)->next)
      if (strcmp((*pp)->path, x->path) == 0) {
        offer *o = *pp;
        *pp = o->next;
        free(o);
        break;
      }
    xfer_finish(x, XS_DONE, "sha256 %s", sha);
  } else {
    xfer_finish(x, XS_FAILED, "the receiver refused it: %s", msg);
  }
}

/* ---- receiving side ---- */

static void xi_fail(xfer *x, enum xstate st, const char *why) {
  if (x->m != NULL)
    ct_messenger_abort(x->m);
  xfer_finish(x, st, "%s", why);
}

static void xi_send_result(xfer *x, int ok, const char *msg, const char *sha) {
  ct_msg_header *h = hub_header("result", 0);
  if (h == NULL)
    return;
  ct_msg_header_set_int(h, "ok", ok);
  ct_msg_header_set_str(h, "message", msg);
  ct_msg_header_set_str(h, "sha256", sha);
  ct_messenger_send(x->m, h, NULL, 0);
  ct_msg_header_free(h);
  ct_messenger_close(x->m);
}

static void xi_begin(xfer *x, const ct_msg_header *h) {
  int64_t size = -1, offset = -1;
  const char *ident = NULL;
  if (ct_msg_header_get_int(h, "size", &size) != 0 || size < 0 ||
      ct_msg_header_get_int(h, "offset", &offset) != 0 || offset < 0 ||
      offset > size || ct_msg_header_get_str(h, "ident", &ident) != 0 ||
      strlen(ident) >= sizeof x->ident) {
    xi_fail(x, XS_FAILED, "bad begin frame from the sender");
    return;
  }
  x->size = (uint64_t)size;
  snprintf(x->ident, sizeof x->ident, "%s", ident);
  int flags = O_RDWR | O_CREAT | O_CLOEXEC | (offset == 0 ? O_TRUNC : 0);
  x->fd = open(x->part, flags, 0644);
  if (x->fd < 0) {
    char why[PATH_MAX + 64];
    snprintf(why, sizeof why, "cannot write %s: %s", x->part, strerror(errno));
    xi_fail(x, XS_FAILED, why);
    return;
  }
  struct stat st;
  if (offset > 0 && (fstat(x->fd, &st) != 0 || st.st_size < offset)) {
    xi_fail(x, XS_FAILED, "the partial file is shorter than expected");
    return;
  }
  if (ftruncate(x->fd, offset) != 0 ||
      hash_range(x->md, x->fd, 0, (uint64_t)offset) != 0) {
    xi_fail(x, XS_FAILED, "cannot read back the partial file");
    return;
  }
  FILE *mf = fopen(x->meta, "w");
  if (mf != NULL) {
    fprintf(mf, "%s\n", x->ident);
    fclose(mf);
  }
  x->start = x->done = (uint64_t)offset;
  x->t0 = ct_reactor_seconds(x->f->r);
  x->state = XS_RUNNING;
  if (offset > 0) {
    char a[32];
    human((double)offset, a, sizeof a);
    event(x->f, "transfer #%llu resuming %s at %llu bytes (%s)",
          (unsigned long long)x->id, x->name, (unsigned long long)offset, a);
  }
}

static void xi_chunk(xfer *x, const ct_msg_header *h, const char *content,
                     size_t len) {
  int64_t off = -1;
  if (x->state != XS_RUNNING || ct_msg_header_get_int(h, "offset", &off) != 0 ||
      (uint64_t)off != x->done || x->done + len > x->size) {
    xi_fail(x, XS_FAILED, "chunk out of order or past the end");
    return;
  }
  size_t w = 0;
  while (w < len) {
    ssize_t n = pwrite(x->fd, content + w, len - w, (off_t)(x->done + w));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      char why[PATH_MAX + 64];
      snprintf(why, sizeof why, "writing %s: %s", x->part, strerror(errno));
      xi_fail(x, XS_FAILED, why);
      return;
    }
    w += (size_t)n;
  }
  EVP_DigestUpdate(x->md, content, len);
  x->done += len;
}

static void xi_end(xfer *x, const ct_msg_header *h) {
  const char *want = "";
  ct_msg_header_get_str(h, "sha256", &want);
  if (x->state != XS_RUNNING || x->done != x->size) {
    xi_fail(x, XS_FAILED, "end before all the content arrived");
    return;
  }
  char got[65];
  digest_hex(x->md, got);
  if (strcmp(got, want) != 0) {
    unlink(x->part);
    unlink(x->meta);
    xi_send_result(x, 0, "digest mismatch", got);
    xfer_finish(x, XS_FAILED,
                "digest mismatch: sender %.64s, received %s; partial file "
                "removed",
                want, got);
    return;
  }
  if (rename(x->part, x->path) != 0) {
    char why[PATH_MAX + 64];
    snprintf(why, sizeof why, "renaming to %s: %s", x->path, strerror(errno));
    xi_send_result(x, 0, why, got);
    xfer_finish(x, XS_FAILED, "%s", why);
    return;
  }
  unlink(x->meta);
  xi_send_result(x, 1, "ok", got);
  xfer_finish(x, XS_DONE, "sha256 %s saved as %s", got, x->path);
}

static void xi_on_connect(ct_messenger *m, void *arg) {
  xfer *x = arg;
  x->m = m;
  ct_msg_header *h = hub_header("fetch", 0);
  if (h == NULL) {
    ct_messenger_abort(m);
    return;
  }
  if (x->token[0])
    ct_msg_header_set_str(h, "token", x->token);
  else
    ct_msg_header_set_str(h, "name", x->name);
  ct_msg_header_set_int(h, "offset", (int64_t)x->start);
  ct_msg_header_set_str(h, "ident", x->ident);
  ct_msg_header_set_int(h, "from", x->f->my_id);
  ct_messenger_send(m, h, NULL, 0);
  ct_msg_header_free(h);
}

static void xi_on_message(ct_messenger *m, const ct_msg_header *h,
                          const char *content, size_t len, void *arg) {
  (void)m;
  xfer *x = arg;
  const char *type = "";
  ct_msg_header_get_str(h, "type", &type);
  if (strcmp(type, "chunk") == 0) {
    xi_chunk(x, h, content, len);
  } else if (strcmp(type, "begin") == 0) {
    xi_begin(x, h);
  } else if (strcmp(type, "end") == 0) {
    xi_end(x, h);
  } else if (strcmp(type, "error") == 0) {
    const char *msg = "";
    ct_msg_header_get_str(h, "message", &msg);
    char why[300];
    snprintf(why, sizeof why, "the sender refused: %.200s", msg);
    xi_fail(x, XS_FAILED, why);
  }
}

static void xi_on_close(ct_messenger *m, size_t alive, const ct_failure *reason,
                        void *arg) {
  (void)m;
  (void)alive;
  xfer *x = arg;
  x->m = NULL;
  if (x->state < XS_DONE)
    xfer_finish(x, XS_INTERRUPTED,
                "connection lost at %llu bytes (%s); `get` again to resume",
                (unsigned long long)x->done,
                reason != NULL ? reason->message : "closed");
}

static void xi_on_connect_failed(const char *endpoint, const ct_failure *reason,
                                 void *arg) {
  xfer *x = arg;
  xfer_finish(x, XS_FAILED, "cannot connect to %s: %s", endpoint,
              reason->message);
}

/* Start receiving `name` (or offer `token`) from the filer at `endpoint`.
 * Returns the transfer or NULL (error text in `why`). */
static xfer *xi_start(filer *f, int64_t peer_id, const char *endpoint,
                      const char *name, const char *token, char *why,
                      size_t cap) {
  if (!valid_file_name(name)) {
    snprintf(why, cap, "bad file name '%.64s'", name);
    return NULL;
  }
  for (xfer *y = f->xfers; y != NULL; y = y->next)
    if (y->incoming && y->state < XS_DONE && strcmp(y->name, name) == 0) {
      snprintf(why, cap, "already receiving %s (#%llu)", name,
               (unsigned long long)y->id);
      return NULL;
    }
  xfer *x = xfer_new(f, 1, name);
  if (x == NULL) {
    snprintf(why, cap, "out of memory");
    return NULL;
  }
  x->peer_id = peer_id;
  snprintf(x->endpoint, sizeof x->endpoint, "%s", endpoint);
  snprintf(x->token, sizeof x->token, "%s", token != NULL ? token : "");
  snprintf(x->path, sizeof x->path, "%s/%s", f->dir, name);
  snprintf(x->part, sizeof x->part, "%s/.%s.ctpart", f->dir, name);
  snprintf(x->meta, sizeof x->meta, "%s/.%s.ctpart.meta", f->dir, name);
  /* Resume: what the part file holds, if it belongs to a known version. */
  struct stat st;
  FILE *mf = fopen(x->meta, "r");
  if (mf != NULL && stat(x->part, &st) == 0 && S_ISREG(st.st_mode) &&
      fgets(x->ident, sizeof x->ident, mf) != NULL) {
    x->ident[strcspn(x->ident, "\n")] = '\0';
    x->start = (uint64_t)st.st_size;
  } else {
    x->ident[0] = '\0';
  }
  if (mf != NULL)
    fclose(mf);
  ct_msg_callbacks cb = {.on_connect = xi_on_connect,
                         .on_message = xi_on_message,
                         .on_close = xi_on_close,
                         .on_connect_failed = xi_on_connect_failed,
                         .arg = x};
  ct_msg_options o = {.no_delay = 1};
  o.limits.max_content = 2 * CHUNK;
  x->c = ct_msg_client_new(f->r, &cb, &o);
  if (x->c == NULL || ct_msg_client_connect(x->c, endpoint) != 0) {
    snprintf(why, cap, "cannot connect to %s", endpoint);
    xfer_finish(x, XS_FAILED, "cannot connect to %s", endpoint);
    return NULL;
  }
  return x;
}

static int progress_tick(ct_looping_call *lc, uint64_t count, void *arg) {
  (void)lc;
  (void)count;
  filer *f = arg;
  if (f->stdio_conn == NULL)
    return 0;
  for (xfer *x = f->xfers; x != NULL; x = x->next)
    if (x->state <= XS_RUNNING) { /* connecting or running */
      char line[LINE_MAX_LEN];
      xfer_progress_text(x, line, sizeof line);
      ct_transport *t = f->stdio_conn->lr.base.transport;
      if (t != NULL) {
        ct_transport_write_str(t, "\r\033[K");
        ct_transport_write_str(t, line);
        f->progress_shown = 1;
      }
      break;
    }
  return 0;
}

/* --------------------------------------------------------------- peers */

static peer *peer_by_id(filer *f, int64_t id) {
  for (peer *p = f->peer_list; p != NULL; p = p->next)
    if (p->id == id && p->m != NULL)
      return p;
  return NULL;
}

/* Forget `p`.  From its client's callbacks the client is buried; at
 * shutdown (`now`) it is freed at once. */
static void peer_unlink(peer *p, int now) {
  filer *f = p->f;
  for (peer **pp = &f->peer_list; *pp != NULL; pp = &(*pp)->next)
    if (*pp == p) {
      *pp = p->next;
      break;
    }
  if (p->m != NULL) {
    ct_messenger_set_user(p->m, NULL);
    ct_messenger_unref(p->m);
  }
  if (p->c != NULL && now)
    ct_msg_client_free(p->c);
  else if (p->c != NULL)
    bury(f, p->c, NULL);
  free(p);
}

static void peer_hello(filer *f, ct_messenger *m) {
  ct_msg_header *h = hub_header("peer-hello", 0);
  if (h == NULL)
    return;
  ct_msg_header_set_int(h, "id", f->my_id);
  ct_msg_header_set_str(h, "name", f->name);
  ct_messenger_send(m, h, NULL, 0);
  ct_msg_header_free(h);
}

static void peer_chat(peer *p, const char *content, size_t len) {
  char text[LINE_MAX_LEN / 2];
  printable(content, len, text, sizeof text);
  event(p->f, "direct message from %lld (%s): %s", (long long)p->id, p->name,
        text);
}

/* Outgoing direct connection (connect ID). */
static void po_connect(ct_messenger *m, void *arg) {
  peer *p = arg;
  p->m = ct_messenger_ref(m);
  ct_messenger_set_user(m, p);
  peer_hello(p->f, m);
  event(p->f, "connected directly to %lld (%s)", (long long)p->id, p->name);
}

static void po_message(ct_messenger *m, const ct_msg_header *h,
                       const char *content, size_t len, void *arg) {
  (void)m;
  const char *type = "";
  ct_msg_header_get_str(h, "type", &type);
  if (strcmp(type, "chat") == 0)
    peer_chat(arg, content, len);
}

static void po_close(ct_messenger *m, size_t alive, const ct_failure *reason,
                     void *arg) {
  (void)m;
  (void)alive;
  peer *p = arg;
  event(p->f, "direct connection to %lld (%s) closed: %s", (long long)p->id,
        p->name, reason != NULL ? reason->message : "closed");
  peer_unlink(p, 0);
}

static void po_failed(const char *endpoint, const ct_failure *reason,
                      void *arg) {
  peer *p = arg;
  event(p->f, "cannot connect to %lld at %s: %s", (long long)p->id, endpoint,
        reason->message);
  peer_unlink(p, 0);
}

/* The peer server: direct connections from other filers, and their data
 * connections (fetch). */
static void ps_message(ct_messenger *m, const ct_msg_header *h,
                       const char *content, size_t len, void *arg) {
  filer *f = arg;
  conn_tag *tag = ct_messenger_user(m);
  const char *type = "";
  ct_msg_header_get_str(h, "type", &type);
  if (tag != NULL && tag->kind == CONN_XFER) {
    if (strcmp(type, "result") == 0)
      xo_result((xfer *)tag, h);
    return;
  }
  if (strcmp(type, "peer-hello") == 0 && tag == NULL) {
    const char *name = "?";
    int64_t id = 0;
    ct_msg_header_get_str(h, "name", &name);
    ct_msg_header_get_int(h, "id", &id);
    peer *p = calloc(1, sizeof *p);
    if (p == NULL) {
      ct_messenger_abort(m);
      return;
    }
    p->tag.kind = CONN_PEER;
    p->f = f;
    p->id = id;
    snprintf(p->name, sizeof p->name, "%s", hub_valid_name(name) ? name : "?");
    p->m = ct_messenger_ref(m);
    ct_messenger_set_user(m, p);
    p->next = f->peer_list;
    f->peer_list = p;
    event(f, "peer %lld (%s) connected directly from %s", (long long)id,
          p->name, ct_messenger_peer_str(m));
  } else if (strcmp(type, "chat") == 0 && tag != NULL) {
    peer_chat((peer *)tag, content, len);
  } else if (strcmp(type, "fetch") == 0 && tag == NULL) {
    xo_fetch(f, m, h);
  } else if (strcmp(type, "offer") == 0) {
    const char *name = "", *token = "", *ep = "";
    int64_t from = 0, size = 0;
    ct_msg_header_get_str(h, "name", &name);
    ct_msg_header_get_str(h, "token", &token);
    ct_msg_header_get_str(h, "endpoint", &ep);
    ct_msg_header_get_int(h, "from", &from);
    ct_msg_header_get_int(h, "size", &size);
    char why[256];
    char sz[32];
    human((double)size, sz, sizeof sz);
    xfer *x = xi_start(f, from, ep, name, token, why, sizeof why);
    if (x == NULL)
      event(f, "offer of %.64s from %lld refused: %s", name, (long long)from,
            why);
    else
      event(f, "transfer #%llu: offer of %s (%s) from %lld, receiving",
            (unsigned long long)x->id, x->name, sz, (long long)from);
    ct_messenger_close(m);
  } else {
    hub_send_error(m, 0, "EINVAL", "unexpected message on a peer connection");
  }
}

static void ps_close(ct_messenger *m, size_t alive, const ct_failure *reason,
                     void *arg) {
  (void)alive;
  filer *f = arg;
  conn_tag *tag = ct_messenger_user(m);
  if (tag == NULL)
    return;
  if (tag->kind == CONN_XFER) {
    xfer *x = (xfer *)tag;
    if (x->state < XS_DONE)
      xfer_finish(x, XS_INTERRUPTED,
                  "the receiver went away at %llu bytes (%s)",
                  (unsigned long long)x->done,
                  reason != NULL ? reason->message : "closed");
    return;
  }
  peer *p = (peer *)tag;
  event(f, "direct connection from %lld (%s) closed", (long long)p->id,
        p->name);
  peer_unlink(p, 0);
}

/* Offer: a one-shot connection carrying an `offer`, then closed. */
struct oneshot {
  oneshot *next;
  filer *f;
  ct_msg_client *c;
  ct_msg_header *h;
};

static void os_connect(ct_messenger *m, void *arg) {
  oneshot *o = arg;
  ct_messenger_send(m, o->h, NULL, 0);
  ct_messenger_close(m);
}

static void os_done(oneshot *o) {
  for (oneshot **pp = &o->f->oneshots; *pp != NULL; pp = &(*pp)->next)
    if (*pp == o) {
      *pp = o->next;
      break;
    }
  ct_msg_header_free(o->h);
  bury(o->f, o->c, NULL);
  free(o);
}

static void os_close(ct_messenger *m, size_t alive, const ct_failure *reason,
                     void *arg) {
  (void)m;
  (void)alive;
  (void)reason;
  os_done(arg);
}

static void os_failed(const char *endpoint, const ct_failure *reason,
                      void *arg) {
  oneshot *o = arg;
  event(o->f, "cannot reach %s to offer a file: %s", endpoint, reason->message);
  os_done(o);
}

/* ----------------------------------------------------------------- hub */

static int64_t hub_request(filer *f, ct_msg_header *h, const void *content,
                           size_t len, ct_transport *reply_to) {
  if (f->hub_m == NULL)
    return CT_ECLOSED;
  int64_t req = ++f->next_req;
  ct_msg_header_set_int(h, "req", req);
  int rc = ct_messenger_send(f->hub_m, h, content, len);
  if (rc != 0)
    return rc;
  if (reply_to != NULL) {
    pending *p = malloc(sizeof *p);
    if (p != NULL) {
      p->req = req;
      p->t = ct_transport_ref(reply_to);
      p->next = f->pend;
      f->pend = p;
    }
  }
  return req;
}

/* The sink waiting for the answer to `req` (removed), or NULL. */
static ct_transport *take_pending(filer *f, int64_t req) {
  for (pending **pp = &f->pend; *pp != NULL; pp = &(*pp)->next)
    if ((*pp)->req == req) {
      pending *p = *pp;
      ct_transport *t = p->t;
      *pp = p->next;
      free(p);
      return t;
    }
  return NULL;
}

static void drop_pending(filer *f) {
  while (f->pend != NULL) {
    pending *p = f->pend;
    f->pend = p->next;
    write_line(p->t, "error: the hub connection was lost");
    ct_transport_unref(p->t);
    free(p);
  }
}

static void print_members(filer *f, ct_transport *t) {
  size_t i;
  json_t *o;
  reply(t, "%zu members:", f->members ? json_array_size(f->members) : 0);
  if (f->members == NULL)
    return;
  json_array_foreach(f->members, i, o) {
    long long id = (long long)json_integer_value(json_object_get(o, "id"));
    reply(t, "  %lld %s %s last report %lld ms ago%s", id,
          member_str(o, "name"), member_str(o, "listen"),
          (long long)json_integer_value(json_object_get(o, "last-report-ms")),
          id == f->my_id ? " (me)" : "");
  }
}

static int report_tick(ct_looping_call *lc, uint64_t count, void *arg) {
  (void)lc;
  (void)count;
  filer *f = arg;
  if (f->hub_m == NULL)
    return 0;
  int running = 0;
  for (xfer *x = f->xfers; x != NULL; x = x->next)
    running += x->state < XS_DONE;
  char status[64];
  snprintf(status, sizeof status, "transfers=%d", running);
  ct_msg_header *h = hub_header("report", 0);
  if (h != NULL) {
    ct_msg_header_set_str(h, "status", status);
    ct_messenger_send(f->hub_m, h, NULL, 0);
    ct_msg_header_free(h);
  }
  return 0;
}

static void hub_connect(ct_messenger *m, void *arg) {
  filer *f = arg;
  f->hub_m = m;
  ct_msg_header *h = hub_header("hello", 0);
  if (h == NULL)
    return;
  ct_msg_header_set_str(h, "name", f->name);
  ct_msg_header_set_str(h, "listen", f->my_endpoint);
  ct_msg_header_set_int(h, "report-interval-ms",
                        (int64_t)(f->report_interval * 1000));
  ct_messenger_send(m, h, NULL, 0);
  ct_msg_header_free(h);
}

static void hub_message(ct_messenger *m, const ct_msg_header *h,
                        const char *content, size_t len, void *arg) {
  (void)m;
  filer *f = arg;
  const char *type = "";
  int64_t req = 0;
  ct_msg_header_get_str(h, "type", &type);
  ct_msg_header_get_int(h, "req", &req);
  ct_transport *t = req > 0 ? take_pending(f, req) : NULL;
  if (strcmp(type, "welcome") == 0) {
    ct_msg_header_get_int(h, "id", &f->my_id);
    event(f, "joined the hub as %lld (%s)", (long long)f->my_id, f->name);
  } else if (strcmp(type, "members") == 0) {
    json_t *a = json_loadb(content != NULL ? content : "[]",
                           content != NULL ? len : 2, 0, NULL);
    if (json_is_array(a)) {
      json_decref(f->members);
      f->members = a;
    } else {
      json_decref(a);
    }
    if (t != NULL)
      print_members(f, t);
  } else if (strcmp(type, "message") == 0) {
    int64_t from = 0;
    const char *from_name = "?", *kind = "?";
    ct_msg_header_get_int(h, "from", &from);
    ct_msg_header_get_str(h, "from-name", &from_name);
    ct_msg_header_get_str(h, "kind", &kind);
    char text[LINE_MAX_LEN / 2];
    printable(content != NULL ? content : "", len, text, sizeof text);
    event(f, "%s from %lld (%s): %s", kind, (long long)from, from_name, text);
  } else if (strcmp(type, "stats") == 0) {
    char line[LINE_MAX_LEN];
    size_t o = 0;
    ct_msg_header_iter it = {0};
    ct_msg_header_entry e;
    o += (size_t)snprintf(line, sizeof line, "hub stats:");
    while (ct_msg_header_next(h, &it, &e) && o < sizeof line - 80)
      if (e.is_int && strcmp(e.key, "req") != 0)
        o += (size_t)snprintf(line + o, sizeof line - o, " %s=%lld", e.key,
                              (long long)e.num);
    if (t != NULL)
      write_line(t, line);
    else
      event(f, "%s", line);
  } else if (strcmp(type, "error") == 0) {
    const char *msg = "";
    ct_msg_header_get_str(h, "message", &msg);
    if (t != NULL)
      reply(t, "error from the hub: %s", msg);
    else
      event(f, "error from the hub: %s", msg);
  }
  if (t != NULL)
    ct_transport_unref(t);
}

static void hub_close(ct_messenger *m, size_t alive, const ct_failure *reason,
                      void *arg) {
  (void)m;
  (void)alive;
  filer *f = arg;
  f->hub_m = NULL;
  drop_pending(f);
  event(f, "lost the hub: %s; reconnecting",
        reason != NULL ? reason->message : "closed");
}

/* ------------------------------------------------------------ commands */

static char *next_word(char **s) {
  char *p = *s;
  while (*p == ' ' || *p == '\t')
    p++;
  if (*p == '\0') {
    *s = p;
    return NULL;
  }
  char *w = p;
  while (*p && *p != ' ' && *p != '\t')
    p++;
  if (*p)
    *p++ = '\0';
  while (*p == ' ' || *p == '\t')
    p++;
  *s = p;
  return w;
}

static int parse_id(const char *s, int64_t *out) {
  char *end;
  if (s == NULL)
    return -1;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end != '\0' || v <= 0)
    return -1;
  *out = v;
  return 0;
}

static void cmd_hub_send(filer *f, ct_transport *t, const char *type,
                         const char *to_key, const char *to_str, int64_t to,
                         const char *text) {
  ct_msg_header *h = hub_header(type, 0);
  if (h == NULL)
    return;
  if (to_str != NULL)
    ct_msg_header_set_str(h, to_key, to_str);
  else if (to_key != NULL)
    ct_msg_header_set_int(h, to_key, to);
  /* No answer is expected: an error from the hub becomes an event. */
  int64_t rc = hub_request(f, h, text, strlen(text), NULL);
  ct_msg_header_free(h);
  if (rc < 0)
    reply(t, "error: not connected to the hub");
  else
    reply(t, "sent");
}

static const char help_text[] =
    "commands:\n"
    "  id                     my id, name and listening endpoint\n"
    "  list                   the hub's members\n"
    "  send ID TEXT           to one member (directly if connected)\n"
    "  broadcast TEXT         to every other member\n"
    "  multicast ID,ID TEXT   to some members\n"
    "  connect ID             open a direct connection to a member\n"
    "  put ID FILE            offer FILE to a member (it fetches it)\n"
    "  get ID NAME            fetch NAME from a member's shared directory\n"
    "  transfers              transfers with progress\n"
    "  stats                  the hub's counters\n"
    "  watch                  (control socket) also receive events\n"
    "  quit                   stop this filer";

static void run_command(cmd_conn *cc, char *line) {
  filer *f = cc->f;
  ct_transport *t = cc->lr.base.transport;
  char *rest = line;
  char *cmd = next_word(&rest);
  if (cmd == NULL)
    return;
  if (strcmp(cmd, "help") == 0) {
    write_line(t, help_text);
  } else if (strcmp(cmd, "id") == 0) {
    reply(t, "id %lld name %s listen %s hub %s", (long long)f->my_id, f->name,
          f->my_endpoint, f->hub_m != NULL ? "connected" : "disconnected");
  } else if (strcmp(cmd, "list") == 0) {
    ct_msg_header *h = hub_header("list", 0);
    if (h != NULL && hub_request(f, h, NULL, 0, t) < 0)
      reply(t, "error: not connected to the hub");
    ct_msg_header_free(h);
  } else if (strcmp(cmd, "stats") == 0) {
    ct_msg_header *h = hub_header("stats", 0);
    if (h != NULL && hub_request(f, h, NULL, 0, t) < 0)
      reply(t, "error: not connected to the hub");
    ct_msg_header_free(h);
  } else if (strcmp(cmd, "send") == 0) {
    int64_t id;
    if (parse_id(next_word(&rest), &id) != 0 || *rest == '\0') {
      reply(t, "error: usage: send ID TEXT");
      return;
    }
    peer *p = peer_by_id(f, id);
    if (p != NULL) {
      ct_msg_header *h = hub_header("chat", 0);
      if (h != NULL && ct_messenger_send(p->m, h, rest, strlen(rest)) == 0)
        reply(t, "sent directly");
      else
        reply(t, "error: the direct connection failed");
      ct_msg_header_free(h);
      return;
    }
    cmd_hub_send(f, t, "send", "to", NULL, id, rest);
  } else if (strcmp(cmd, "broadcast") == 0) {
    if (*rest == '\0') {
      reply(t, "error: usage: broadcast TEXT");
      return;
    }
    cmd_hub_send(f, t, "broadcast", NULL, NULL, 0, rest);
  } else if (strcmp(cmd, "multicast") == 0) {
    char *ids = next_word(&rest);
    if (ids == NULL || *rest == '\0' ||
        strspn(ids, "0123456789,") != strlen(ids)) {
      reply(t, "error: usage: multicast ID,ID TEXT");
      return;
    }
    cmd_hub_send(f, t, "multicast", "to", ids, 0, rest);
  } else if (strcmp(cmd, "connect") == 0) {
    int64_t id;
    json_t *o;
    if (parse_id(next_word(&rest), &id) != 0) {
      reply(t, "error: usage: connect ID");
    } else if (peer_by_id(f, id) != NULL) {
      reply(t, "already connected to %lld", (long long)id);
    } else if ((o = member_by_id(f, id)) == NULL ||
               member_str(o, "listen")[0] == '\0') {
      reply(t, "error: no member %lld with a listening endpoint (try list)",
            (long long)id);
    } else {
      peer *p = calloc(1, sizeof *p);
      if (p == NULL)
        return;
      p->tag.kind = CONN_PEER;
      p->f = f;
      p->id = id;
      snprintf(p->name, sizeof p->name, "%s", member_str(o, "name"));
      ct_msg_callbacks cb = {.on_connect = po_connect,
                             .on_message = po_message,
                             .on_close = po_close,
                             .on_connect_failed = po_failed,
                             .arg = p};
      ct_msg_options opts = {.no_delay = 1};
      p->c = ct_msg_client_new(f->r, &cb, &opts);
      if (p->c == NULL ||
          ct_msg_client_connect(p->c, member_str(o, "listen")) != 0) {
        reply(t, "error: cannot connect to %s", member_str(o, "listen"));
        ct_msg_client_free(p->c);
        free(p);
        return;
      }
      p->next = f->peer_list;
      f->peer_list = p;
      reply(t, "connecting to %lld at %s", (long long)id,
            member_str(o, "listen"));
    }
  } else if (strcmp(cmd, "get") == 0 || strcmp(cmd, "put") == 0) {
    int is_get = cmd[0] == 'g';
    int64_t id;
    char *arg;
    json_t *o;
    if (parse_id(next_word(&rest), &id) != 0 ||
        (arg = next_word(&rest)) == NULL) {
      reply(t, "error: usage: %s", is_get ? "get ID NAME" : "put ID FILE");
      return;
    }
    if ((o = member_by_id(f, id)) == NULL ||
        member_str(o, "listen")[0] == '\0') {
      reply(t, "error: no member %lld with a listening endpoint (try list)",
            (long long)id);
      return;
    }
    if (is_get) {
      char why[256];
      xfer *x =
          xi_start(f, id, member_str(o, "listen"), arg, NULL, why, sizeof why);
      if (x == NULL)
        reply(t, "error: %s", why);
      else
        reply(t, "transfer #%llu: getting %s from %lld%s",
              (unsigned long long)x->id, arg, (long long)id,
              x->start > 0 ? " (resuming)" : "");
      return;
    }
    struct stat st;
    const char *base = strrchr(arg, '/') != NULL ? strrchr(arg, '/') + 1 : arg;
    char real[PATH_MAX];
    if (stat(arg, &st) != 0 || !S_ISREG(st.st_mode) ||
        realpath(arg, real) == NULL || !valid_file_name(base)) {
      reply(t, "error: %s is not a readable regular file with a plain name",
            arg);
      return;
    }
    offer *of = calloc(1, sizeof *of);
    oneshot *os = calloc(1, sizeof *os);
    if (of == NULL || os == NULL) {
      free(of);
      free(os);
      return;
    }
    snprintf(of->token, sizeof of->token, "%lx-%llu", (long)getpid(),
             (unsigned long long)++f->next_token);
    snprintf(of->path, sizeof of->path, "%s", real);
    of->next = f->offers;
    f->offers = of;
    os->f = f;
    os->h = hub_header("offer", 0);
    if (os->h != NULL) {
      ct_msg_header_set_str(os->h, "name", base);
      ct_msg_header_set_str(os->h, "token", of->token);
      ct_msg_header_set_str(os->h, "endpoint", f->my_endpoint);
      ct_msg_header_set_int(os->h, "from", f->my_id);
      ct_msg_header_set_int(os->h, "size", (int64_t)st.st_size);
    }
    ct_msg_callbacks cb = {.on_connect = os_connect,
                           .on_close = os_close,
                           .on_connect_failed = os_failed,
                           .arg = os};
    os->c = ct_msg_client_new(f->r, &cb, NULL);
    if (os->h == NULL || os->c == NULL ||
        ct_msg_client_connect(os->c, member_str(o, "listen")) != 0) {
      reply(t, "error: cannot connect to %s", member_str(o, "listen"));
      ct_msg_client_free(os->c);
      ct_msg_header_free(os->h);
      free(os);
      return;
    }
    os->next = f->oneshots;
    f->oneshots = os;
    reply(t, "offered %s (%lld bytes) to %lld", base, (long long)st.st_size,
          (long long)id);
  } else if (strcmp(cmd, "transfers") == 0) {
    int n = 0;
    for (xfer *x = f->xfers; x != NULL; x = x->next, n++) {
      char l[LINE_MAX_LEN];
      xfer_progress_text(x, l, sizeof l);
      write_line(t, l);
    }
    reply(t, "%d transfers", n);
  } else if (strcmp(cmd, "watch") == 0) {
    cc->watch = 1;
    reply(t, "watching events");
  } else if (strcmp(cmd, "quit") == 0) {
    reply(t, "bye");
    ct_reactor_stop(f->r);
  } else {
    reply(t, "error: unknown command '%.64s' (try help)", cmd);
  }
}

static void cmd_line(ct_line_receiver *lr, const char *line, size_t len) {
  char buf[LINE_MAX_LEN];
  if (len >= sizeof buf)
    len = sizeof buf - 1;
  memcpy(buf, line, len);
  buf[len] = '\0';
  if (len > 0 && buf[len - 1] == '\r')
    buf[len - 1] = '\0';
  run_command((cmd_conn *)lr, buf);
}

static void cmd_too_long(ct_line_receiver *lr, const char *data, size_t len) {
  (void)data;
  (void)len;
  write_line(lr->base.transport, "error: command line too long");
}

static void cmd_lost(ct_line_receiver *lr, const ct_failure *reason) {
  (void)reason;
  cmd_conn *cc = (cmd_conn *)lr;
  filer *f = cc->f;
  if (cc->is_stdio) {
    f->stdio_conn = NULL;
    if (f->control_path == NULL) { /* standard input was the only source */
      f->quit_when_idle = 1;
      maybe_quit(f);
    }
    return;
  }
  for (cmd_conn **pp = &f->ctl_conns; *pp != NULL; pp = &(*pp)->next)
    if (*pp == cc) {
      *pp = cc->next;
      break;
    }
}

static const ct_line_receiver_ops cmd_ops = {
    CT_LINE_RECEIVER_BASE("filer-commands",
                          CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER),
    .delimiter = "\n",
    .max_length = LINE_MAX_LEN - 1,
    .line_received = cmd_line,
    .line_length_exceeded = cmd_too_long,
    .connection_lost = cmd_lost,
};

static ct_protocol *ctl_build(ct_factory *fa, const ct_address *from) {
  (void)from;
  filer *f = fa->user;
  cmd_conn *cc = (cmd_conn *)ct_protocol_new(&cmd_ops.base, sizeof *cc);
  if (cc == NULL)
    return NULL;
  cc->f = f;
  cc->next = f->ctl_conns;
  f->ctl_conns = cc;
  return &cc->lr.base;
}

static const ct_factory_ops ctl_factory_ops = {.name = "filer-control",
                                               .build_protocol = ctl_build};

/* ---------------------------------------------------------------- main */

static void usage(FILE *fp) {
  fprintf(
      fp,
      "usage: ct-filer --hub ENDPOINT --name NAME [options]\n"
      "A member of a ct-hub (docs/hub.md).  Commands are read from "
      "standard\n"
      "input and from the control socket; 'help' lists them.\n"
      "  --hub ENDPOINT          the hub, e.g. tcp:host=127.0.0.1:port=7000\n"
      "  --name NAME             this member's name\n"
      "  --listen ENDPOINT       where peers connect "
      "(tcp:0:interface=127.0.0.1)\n"
      "  --report-interval S     report to the hub every S s (5)\n"
      "  --dir DIR               where received files go (.)\n"
      "  --share DIR             what `get` may fetch from here (.)\n"
      "  --control PATH          serve commands on a Unix socket\n"
      "  --daemon                detach; needs --control (no stdin)\n"
      "  --log-level LEVEL       debug, info, warn, error (info)\n"
      "  -h, --help              this text\n"
      "Test only: CT_FILER_TEST_CORRUPT_OFFSET=N corrupts byte N of "
      "every file sent.\n");
}

/* The endpoint others use to reach our peer port. */
static void advertise(filer *f) {
  ct_address a;
  char buf[200];
  if (ct_listening_port_address(f->peer_port, &a) != 0 ||
      ct_address_format(&a, buf, sizeof buf) == 0)
    return;
  if (a.family == CT_ADDRESS_UNIX) {
    snprintf(f->my_endpoint, sizeof f->my_endpoint, "unix:path=%s", buf);
    return;
  }
  int port = ct_address_port(&a);
  char *colon = strrchr(buf, ':');
  if (colon != NULL)
    *colon = '\0';
  const char *host = buf;
  if (strcmp(host, "0.0.0.0") == 0)
    host = "127.0.0.1";
  else if (strcmp(host, "[::]") == 0)
    host = "::1";
  if (host[0] == '[') { /* [::1] */
    char h6[64];
    snprintf(h6, sizeof h6, "%.*s", (int)strlen(host) - 2, host + 1);
    snprintf(f->my_endpoint, sizeof f->my_endpoint, "tcp6:host=%s:port=%d", h6,
             port);
  } else {
    snprintf(f->my_endpoint, sizeof f->my_endpoint, "tcp:host=%s:port=%d", host,
             port);
  }
}

static int daemonize(void) {
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid > 0)
    _exit(0);
  if (setsid() < 0)
    return -1;
  int fd = open("/dev/null", O_RDWR);
  if (fd >= 0) {
    dup2(fd, 0);
    dup2(fd, 1);
    if (fd > 2)
      close(fd);
  }
  return 0;
}

int main(int argc, char **argv) {
  filer f;
  memset(&f, 0, sizeof f);
  f.listen_ep = "tcp:0:interface=127.0.0.1";
  f.dir = ".";
  f.share = ".";
  f.report_interval = 5;
  f.corrupt_at = -1;
  int daemon = 0;
  for (int i = 1; i < argc; i++) {
    int missing = 0;
    const char *v;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if ((v = ctapp_opt(argc, argv, &i, "--hub", &missing))) {
      f.hub_ep = v;
    } else if ((v = ctapp_opt(argc, argv, &i, "--name", &missing))) {
      f.name = v;
    } else if ((v = ctapp_opt(argc, argv, &i, "--listen", &missing))) {
      f.listen_ep = v;
    } else if ((v = ctapp_opt(argc, argv, &i, "--report-interval", &missing))) {
      if (hub_parse_seconds(v, &f.report_interval) != 0) {
        fprintf(stderr, "ct-filer: bad --report-interval '%s'\n", v);
        return 2;
      }
    } else if ((v = ctapp_opt(argc, argv, &i, "--dir", &missing))) {
      f.dir = v;
    } else if ((v = ctapp_opt(argc, argv, &i, "--share", &missing))) {
      f.share = v;
    } else if ((v = ctapp_opt(argc, argv, &i, "--control", &missing))) {
      f.control_path = v;
    } else if ((v = ctapp_opt(argc, argv, &i, "--log-level", &missing))) {
      ct_log_level lvl;
      if (ct_log_level_parse(v, &lvl) != 0) {
        fprintf(stderr, "ct-filer: bad --log-level '%s'\n", v);
        return 2;
      }
      ct_log_set_default_level(lvl);
    } else if (strcmp(argv[i], "--daemon") == 0) {
      daemon = 1;
    } else {
      fprintf(stderr, "ct-filer: %s '%s'\n",
              missing ? "missing value for" : "unknown option", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (f.hub_ep == NULL || f.name == NULL) {
    fprintf(stderr, "ct-filer: --hub and --name are required\n");
    usage(stderr);
    return 2;
  }
  if (!hub_valid_name(f.name)) {
    fprintf(stderr, "ct-filer: --name must be 1 to 63 printable characters "
                    "without spaces\n");
    return 2;
  }
  if (daemon && f.control_path == NULL) {
    fprintf(stderr, "ct-filer: --daemon needs --control PATH\n");
    return 2;
  }
  const char *corrupt = getenv("CT_FILER_TEST_CORRUPT_OFFSET");
  if (corrupt != NULL && *corrupt != '\0') {
    f.corrupt_at = atoll(corrupt);
    fprintf(stderr,
            "ct-filer: TEST MODE: corrupting byte %lld of files "
            "sent\n",
            f.corrupt_at);
  }
  if (daemon && daemonize() != 0) {
    perror("ct-filer: daemon");
    return 1;
  }

  f.r = ct_reactor_new();
  if (f.r == NULL)
    return 1;
  f.tty = isatty(STDOUT_FILENO) && !daemon;
  ct_failure *err = NULL;
  int status = 1;

  /* peers */
  ct_msg_callbacks pcb = {
      .on_message = ps_message, .on_close = ps_close, .arg = &f};
  ct_msg_options popts = {.no_delay = 1};
  f.peers = ct_msg_server_new(f.r, &pcb, &popts);
  if (f.peers == NULL)
    goto out;
  f.peer_port =
      ct_listen(f.r, f.listen_ep, ct_msg_server_factory(f.peers), &err);
  if (f.peer_port == NULL) {
    fprintf(stderr, "ct-filer: cannot listen on %s: %s\n", f.listen_ep,
            err != NULL ? err->message : "out of memory");
    goto out;
  }
  advertise(&f);

  /* commands */
  if (f.control_path != NULL) {
    char ep[PATH_MAX + 16];
    snprintf(ep, sizeof ep, "unix:%s:mode=600", f.control_path);
    ct_factory_init(&f.ctl_factory, &ctl_factory_ops, NULL, 0, &f);
    f.ctl_port = ct_listen(f.r, ep, &f.ctl_factory, &err);
    if (f.ctl_port == NULL) {
      fprintf(stderr, "ct-filer: cannot listen on %s: %s\n", f.control_path,
              err != NULL ? err->message : "out of memory");
      goto out;
    }
  }
  if (!daemon) {
    cmd_conn *cc = (cmd_conn *)ct_protocol_new(&cmd_ops.base, sizeof *cc);
    if (cc == NULL)
      goto out;
    cc->f = &f;
    cc->is_stdio = 1;
    f.stdio_conn = cc;
    if (ct_stdio_connect(f.r, &cc->lr.base, &err) == NULL) {
      f.stdio_conn = NULL;
      fprintf(stderr, "ct-filer: standard input: %s\n", err->message);
      goto out;
    }
  }

  /* the hub, reconnected with back-off */
  ct_msg_callbacks hcb = {.on_connect = hub_connect,
                          .on_message = hub_message,
                          .on_close = hub_close,
                          .arg = &f};
  ct_msg_options hopts = {.no_delay = 1};
  f.hubc = ct_msg_client_new(f.r, &hcb, &hopts);
  ct_reconnect_policy pol;
  ct_reconnect_policy_default(&pol);
  pol.initial_delay = 0.2;
  pol.factor = 2;
  pol.max_delay = 10;
  pol.jitter = 0.1;
  pol.seed = (uint64_t)getpid();
  if (f.hubc == NULL ||
      (f.rc = ct_reconnecting_client_new(
           f.r, f.hub_ep, (ct_client_factory *)ct_msg_client_factory(f.hubc),
           &pol, &err)) == NULL) {
    fprintf(stderr, "ct-filer: --hub %s: %s\n", f.hub_ep,
            err != NULL ? err->message : "out of memory");
    goto out;
  }
  f.report_loop = ct_looping_call_new(f.r, report_tick, &f);
  if (f.report_loop == NULL ||
      ct_looping_call_start(f.report_loop, f.report_interval, 0) != 0)
    goto out;
  if (f.tty) {
    f.progress_loop = ct_looping_call_new(f.r, progress_tick, &f);
    if (f.progress_loop != NULL)
      ct_looping_call_start(f.progress_loop, 0.5, 0);
  }
  event(&f, "filer %s listening on %s", f.name, f.my_endpoint);
  ct_reactor_run(f.r);
  status = 0;

out:
  ct_failure_free(err);
  ct_looping_call_free(f.report_loop);
  ct_looping_call_free(f.progress_loop);
  ct_reconnecting_client_free(f.rc);
  if (f.stdio_conn != NULL && f.stdio_conn->lr.base.transport != NULL)
    ct_transport_lose_connection(f.stdio_conn->lr.base.transport);
  for (cmd_conn *c = f.ctl_conns; c != NULL; c = c->next)
    if (c->lr.base.transport != NULL)
      ct_transport_abort(c->lr.base.transport);
  drop_pending(&f);
  flush_graves(&f);
  while (f.oneshots != NULL) {
    oneshot *o = f.oneshots;
    f.oneshots = o->next;
    ct_msg_client_free(o->c);
    ct_msg_header_free(o->h);
    free(o);
  }
  while (f.xfers != NULL) {
    xfer *x = f.xfers;
    f.xfers = x->next;
    xfer_free(x);
  }
  while (f.peer_list != NULL)
    peer_unlink(f.peer_list, 1);
  while (f.offers != NULL) {
    offer *o = f.offers;
    f.offers = o->next;
    free(o);
  }
  if (f.ctl_port != NULL)
    ct_deferred_unref(ct_listening_port_stop(f.ctl_port));
  if (f.peer_port != NULL)
    ct_deferred_unref(ct_listening_port_stop(f.peer_port));
  ct_msg_client_free(f.hubc);
  ct_msg_server_free(f.peers);
  json_decref(f.members);
  /* let the closes and deferred frees run */
  for (int i = 0; i < 4; i++)
    ct_reactor_iterate(f.r);
  ct_reactor_free(f.r);
  return status;
}
