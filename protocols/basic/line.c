/*
 * line.c: the line receiver (Twisted's LineReceiver): lines split on a
 * configurable delimiter, a raw mode that can be entered and left in the
 * middle of a chunk, a maximum line length, pause/resume.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "protocols/basic/internal.h"

#define LR(p) ((ct_line_receiver *)(void *)(p))
#define LOPS(p) ((const ct_line_receiver_ops *)(const void *)(p)->ops)

/* Lazily copy the configuration from the ops: protocols built by the
 * default factory builder arrive zero-filled. */
static void ensure_config(ct_line_receiver *lr) {
  if (lr->st.inited)
    return;
  const ct_line_receiver_ops *ops = LOPS(&lr->base);
  if (lr->delimiter_len == 0) {
    const char *d = ops ? ops->delimiter : NULL;
    size_t dl = 0;
    if (d != NULL)
      dl = ops->delimiter_len ? ops->delimiter_len : strlen(d);
    if (d == NULL || dl == 0 || dl > CT_LINE_DELIMITER_MAX) {
      d = "\r\n";
      dl = 2;
    }
    memcpy(lr->delimiter, d, dl);
    lr->delimiter_len = dl;
  }
  if (lr->max_length == 0) {
    size_t m = ops ? ops->max_length : 0;
    lr->max_length = (m == 0 || m > CT_BASIC_MAX_LENGTH_LIMIT)
                         ? CT_LINE_MAX_LENGTH_DEFAULT
                         : m;
  }
  if (ops != NULL)
    lr->st.deadline = ops->frame_deadline;
  lr->st.inited = 1;
}

/* First occurrence of the delimiter in s[0..n).  For the usual one- and
 * two-byte delimiters this is a memchr on the delimiter's last byte. */
static const char *find_delim(const char *s, size_t n, const char *dl,
                              size_t dlen) {
  if (dlen == 1)
    return memchr(s, dl[0], n);
  if (n < dlen)
    return NULL;
  const char last = dl[dlen - 1];
  const char *q = s + dlen - 1, *end = s + n;
  while (q < end) {
    q = memchr(q, last, (size_t)(end - q));
    if (q == NULL)
      return NULL;
    if (memcmp(q - (dlen - 1), dl, dlen - 1) == 0)
      return q - (dlen - 1);
    q++;
  }
  return NULL;
}

static void exceeded(ct_protocol *p, const char *d, size_t n) {
  ct_line_receiver *lr = LR(p);
  const ct_line_receiver_ops *ops = LOPS(p);
  if (ops->line_length_exceeded != NULL) {
    ops->line_length_exceeded(lr, d, n);
    return;
  }
  ct__basic_fail(p, &lr->st,
                 ct_failure_new(CT_ETOOBIG,
                                "line longer than the limit of %zu bytes",
                                lr->max_length));
}

static size_t line_parse(ct_protocol *p, const char *d, size_t n,
                         size_t *hint) {
  ct_line_receiver *lr = LR(p);
  const ct_line_receiver_ops *ops = LOPS(p);
  size_t pos = 0;
  (void)hint;
  while (pos < n) {
    if (lr->st.raw) {
      if (ops->raw_data_received != NULL)
        ops->raw_data_received(lr, d + pos, n - pos);
      return n;
    }
    /* Re-read each time: a callback may change delimiter or limit. */
    const size_t dlen = lr->delimiter_len, max = lr->max_length;
    const char *hit = find_delim(d + pos, n - pos, lr->delimiter, dlen);
    if (hit == NULL) {
      if (n - pos >= max + dlen) {
        exceeded(p, d + pos, n - pos);
        return n;
      }
      return pos;
    }
    size_t ll = (size_t)(hit - (d + pos));
    if (ll > max) {
      exceeded(p, d + pos, n - pos);
      return n;
    }
    if (ops->line_received != NULL)
      ops->line_received(lr, d + pos, ll);
    pos += ll + dlen;
    if (ct__basic_stopped(p, &lr->st))
      return pos;
  }
  return pos;
}

/* The buffered partial line have[0..hn) has no delimiter: take bytes of d
 * up to the end of the first delimiter, which may straddle the boundary. */
static size_t line_take(ct_protocol *p, const char *have, size_t hn,
                        const char *d, size_t n) {
  ct_line_receiver *lr = LR(p);
  if (lr->st.raw)
    return 0;
  const size_t dlen = lr->delimiter_len;
  size_t tail = hn < dlen - 1 ? hn : dlen - 1;
  if (tail > 0) {
    char win[2 * CT_LINE_DELIMITER_MAX];
    size_t m = n < dlen - 1 ? n : dlen - 1;
    memcpy(win, have + hn - tail, tail);
    memcpy(win + tail, d, m);
    const char *hit = find_delim(win, tail + m, lr->delimiter, dlen);
    if (hit != NULL && (size_t)(hit - win) < tail)
      return (size_t)(hit - win) + dlen - tail;
  }
  const char *hit = find_delim(d, n, lr->delimiter, dlen);
  return hit != NULL ? (size_t)(hit - d) + dlen : n;
}

static const ct__basic_kind line_kind = {line_parse, line_take};

void ct_line_receiver_init(ct_line_receiver *lr,
                           const ct_line_receiver_ops *ops) {
  if (lr == NULL)
    return;
  memset(lr, 0, sizeof *lr);
  ct_protocol_init(&lr->base, ops ? &ops->base : NULL);
  ensure_config(lr);
}

int ct_line_receiver_set_delimiter(ct_line_receiver *lr, const char *delim,
                                   size_t len) {
  if (lr == NULL || delim == NULL || len == 0 || len > CT_LINE_DELIMITER_MAX)
    return CT_EINVAL;
  ensure_config(lr);
  memcpy(lr->delimiter, delim, len);
  lr->delimiter_len = len;
  return 0;
}

int ct_line_receiver_set_max_length(ct_line_receiver *lr, size_t max_length) {
  if (lr == NULL || max_length > CT_BASIC_MAX_LENGTH_LIMIT)
    return CT_EINVAL;
  ensure_config(lr);
  lr->max_length = max_length ? max_length : CT_LINE_MAX_LENGTH_DEFAULT;
  return 0;
}

void ct_line_receiver_set_raw_mode(ct_line_receiver *lr) {
  if (lr != NULL)
    lr->st.raw = 1;
}

void ct_line_receiver_set_line_mode(ct_line_receiver *lr, const char *extra,
                                    size_t len) {
  if (lr == NULL)
    return;
  lr->st.raw = 0;
  if (extra != NULL && len > 0) {
    ensure_config(lr);
    ct__basic_feed(&lr->base, &lr->st, &line_kind, extra, len);
  }
}

int ct_line_receiver_is_raw(const ct_line_receiver *lr) {
  return lr != NULL && lr->st.raw;
}

int ct_line_receiver_send_line(ct_line_receiver *lr, const char *line,
                               size_t len) {
  if (lr == NULL || (line == NULL && len > 0))
    return CT_EINVAL;
  if (lr->base.transport == NULL)
    return CT_ECLOSED;
  ensure_config(lr);
  struct iovec iov[2] = {{(void *)(uintptr_t)line, len},
                         {lr->delimiter, lr->delimiter_len}};
  return ct_transport_writev(lr->base.transport, iov, 2);
}

void ct_line_receiver_pause(ct_line_receiver *lr) {
  if (lr != NULL)
    ct__basic_pause(&lr->base, &lr->st);
}

void ct_line_receiver_resume(ct_line_receiver *lr) {
  if (lr == NULL)
    return;
  ensure_config(lr);
  ct__basic_resume(&lr->base, &lr->st, &line_kind);
}

const ct_failure *ct_line_receiver_failure(const ct_line_receiver *lr) {
  return lr ? lr->st.failure : NULL;
}

/* ------------------------------------------------------- protocol ops */

void ct_line_receiver_proto_made(ct_protocol *p, ct_transport *t) {
  (void)t;
  ensure_config(LR(p));
  if (LOPS(p)->connection_made != NULL)
    LOPS(p)->connection_made(LR(p));
}

void ct_line_receiver_proto_data(ct_protocol *p, const char *data, size_t len) {
  ct_line_receiver *lr = LR(p);
  ensure_config(lr);
  ct__basic_feed(p, &lr->st, &line_kind, data, len);
}

int ct_line_receiver_proto_eof(ct_protocol *p) {
  const ct_line_receiver_ops *ops = LOPS(p);
  return ops->eof_received ? ops->eof_received(LR(p)) : 0;
}

void ct_line_receiver_proto_lost(ct_protocol *p, const ct_failure *reason) {
  ct_line_receiver *lr = LR(p);
  ct__basic_stop_timer(&lr->st);
  const ct_line_receiver_ops *ops = LOPS(p);
  if (ops->connection_lost != NULL)
    ops->connection_lost(lr, lr->st.failure ? lr->st.failure : reason);
}

void ct_line_receiver_proto_free(ct_protocol *p) {
  ct_line_receiver *lr = LR(p);
  const ct_line_receiver_ops *ops = LOPS(p);
  ct__basic_release(&lr->st);
  if (ops != NULL && ops->free != NULL)
    ops->free(lr);
  else if (p->flags & CT_PROTOCOL_HEAP)
    free(p);
}
