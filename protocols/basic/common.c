/*
 * common.c: the chunk engine of the framing receivers (see internal.h).
 *
 * The unprocessed input is always, in stream order: the buffered bytes
 * st->buf[off..len), then the rest of the chunk being fed, then bytes fed
 * re-entrantly from a callback (st->extra).  Every path below keeps that
 * order, which is what makes arbitrary chunk boundaries invisible to the
 * user's callbacks.
 */
#include <stdlib.h>
#include <string.h>

#include "ctwist/log.h"
#include "protocols/basic/internal.h"

static int reserve(char **buf, size_t *cap, size_t need) {
  if (need <= *cap)
    return 0;
  size_t c = *cap ? *cap : 256;
  while (c < need)
    c = c > ((size_t)-1) / 2 ? need : c * 2;
  char *nb = realloc(*buf, c);
  if (nb == NULL)
    return CT_ENOMEM;
  *buf = nb;
  *cap = c;
  return 0;
}

/* Append to the carried buffer, compacting first so it never grows beyond
 * what it holds.  Out of memory is a failure of the connection. */
static int buf_append(ct_protocol *p, ct_basic_state *st, const char *d,
                      size_t n) {
  if (n == 0)
    return 0;
  if (st->off > 0) {
    memmove(st->buf, st->buf + st->off, st->len - st->off);
    st->len -= st->off;
    st->off = 0;
  }
  if (reserve(&st->buf, &st->cap, st->len + n) != 0) {
    ct__basic_fail(
        p, st,
        ct_failure_new(CT_ENOMEM,
                       "%s: out of memory buffering "
                       "%zu bytes",
                       p->ops && p->ops->name ? p->ops->name : "basic",
                       st->len + n));
    return CT_ENOMEM;
  }
  memcpy(st->buf + st->len, d, n);
  st->len += n;
  return 0;
}

static void buf_reset(ct_basic_state *st) {
  st->off = st->len = 0;
  /* Give back a big buffer once it is empty: a one-off large frame must not
   * pin its memory for the rest of the connection. */
  if (st->cap > 64 * 1024) {
    free(st->buf);
    st->buf = NULL;
    st->cap = 0;
  }
}

void ct__basic_fail(ct_protocol *p, ct_basic_state *st, ct_failure *f) {
  if (st->failure != NULL) {
    ct_failure_free(f);
    return;
  }
  st->failure = f;
  ct_log_limited(p->transport != NULL ? p->transport->reactor : NULL,
                 CT_LOG_INFO, "basic", "%s: closing connection: %s",
                 p->ops && p->ops->name ? p->ops->name : "protocol",
                 f->message ? f->message : ct_strerror(f->code));
  if (p->transport != NULL)
    ct_transport_lose_connection(p->transport);
}

void ct__basic_feed(ct_protocol *p, ct_basic_state *st,
                    const ct__basic_kind *kind, const char *d, size_t n) {
  if (st->failure != NULL)
    return;
  if (st->busy) {
    /* Fed from inside one of our callbacks (set_line_mode with extra
     * bytes): these come after everything not yet parsed. */
    if (n > 0) {
      if (reserve(&st->extra, &st->extra_cap, st->extra_len + n) != 0) {
        ct__basic_fail(p, st, ct_failure_new(CT_ENOMEM, "out of memory"));
        return;
      }
      memcpy(st->extra + st->extra_len, d, n);
      st->extra_len += n;
    }
    return;
  }
  st->busy = 1;
  for (;;) {
    if (st->paused)
      goto stop;
    /* Phase 1: a frame started in an earlier chunk (or held while paused)
     * is completed in the buffer. */
    while (st->len > st->off) {
      size_t hint = 0;
      size_t c = kind->parse(p, st->buf + st->off, st->len - st->off, &hint);
      st->off += c;
      if (ct__basic_stopped(p, st))
        goto stop;
      if (st->off == st->len) {
        buf_reset(st);
        break;
      }
      if (n == 0)
        break;
      size_t take;
      if (kind->take != NULL)
        take = kind->take(p, st->buf + st->off, st->len - st->off, d, n);
      else
        take = hint ? hint : 64;
      if (take > n)
        take = n;
      if (buf_append(p, st, d, take) != 0)
        goto stop;
      d += take;
      n -= take;
    }
    /* Phase 2: the zero-copy path over the rest of the chunk. */
    if (n > 0) {
      size_t hint = 0;
      size_t c = kind->parse(p, d, n, &hint);
      d += c;
      n -= c;
      if (ct__basic_stopped(p, st))
        goto stop;
      /* A partial frame: the parser validated its header, so this is
       * bounded by the frame limit. */
      if (buf_append(p, st, d, n) != 0)
        goto stop;
      n = 0;
    }
    if (st->extra_len == 0)
      break;
    /* Bytes fed from a callback: parse them after the rest. */
    if (buf_append(p, st, st->extra, st->extra_len) != 0)
      goto stop;
    st->extra_len = 0;
  }
  st->busy = 0;
  return;
stop:
  if (st->paused && st->failure == NULL &&
      !(p->transport != NULL && ct_transport_is_closing(p->transport))) {
    /* Hold everything unparsed, in order, for resume. */
    if (buf_append(p, st, d, n) == 0 &&
        buf_append(p, st, st->extra, st->extra_len) == 0)
      st->extra_len = 0;
  } else {
    /* Closing: nothing more will be delivered (Twisted drops the rest of
     * a packet once the transport is disconnecting). */
    buf_reset(st);
    st->extra_len = 0;
  }
  st->busy = 0;
}

void ct__basic_pause(ct_protocol *p, ct_basic_state *st) {
  if (st->paused)
    return;
  st->paused = 1;
  if (p->transport != NULL && !ct_transport_is_closing(p->transport))
    ct_transport_pause_reading(p->transport);
}

void ct__basic_resume(ct_protocol *p, ct_basic_state *st,
                      const ct__basic_kind *kind) {
  if (!st->paused)
    return;
  st->paused = 0;
  /* Inside a callback the running loop sees the flag and goes on. */
  if (!st->busy)
    ct__basic_feed(p, st, kind, NULL, 0);
  if (!st->paused && p->transport != NULL &&
      !ct_transport_is_closing(p->transport))
    ct_transport_resume_reading(p->transport);
}

void ct__basic_release(ct_basic_state *st) {
  free(st->buf);
  free(st->extra);
  ct_failure_free(st->failure);
  memset(st, 0, sizeof *st);
}
