/*
 * common.c: the chunk engine of the framing receivers (see internal.h).
 *
 * The unprocessed input is always, in stream order: the carried bytes
 * (st->carry), then the rest of the chunk being fed, then bytes fed
 * re-entrantly from a callback (st->extra).  Every path below keeps that
 * order, which is what makes arbitrary chunk boundaries invisible to the
 * user's callbacks.
 */
#include <stdlib.h>
#include <string.h>

#include "ctwist/log.h"
#include "protocols/basic/internal.h"
#include "reactor/buf.h"
#include "protocols/policies/frame.h"

/* Append to a buffer (carry or extra); it grows as bytes arrive, never to
 * a frame's announced size up front.  Out of memory is a failure of the
 * connection. */
static int buf_append(ct_protocol *p, ct_basic_state *st, ct__buf *b,
                      const char *d, size_t n) {
  if (ct__buf_append(b, d, n) == 0)
    return 0;
  ct__basic_fail(p, st,
                 ct_failure_new(CT_ENOMEM,
                                "%s: out of memory buffering %zu bytes",
                                p->ops && p->ops->name ? p->ops->name : "basic",
                                ct__buf_len(b) + n));
  return CT_ENOMEM;
}

static void buf_reset(ct_basic_state *st) {
  ct__buf_clear(&st->carry);
  /* Give back a big buffer once it is empty: a one-off large frame must not
   * pin its memory for the rest of the connection. */
  ct__buf_shrink(&st->carry, 64 * 1024);
}

/* The frame deadline of one receiver: st->frame points at `ft`. */
typedef struct basic_frame {
  ct__frame_timer ft; /* first */
  ct_protocol *p;
  ct_basic_state *st;
} basic_frame;

static void frame_late(ct__frame_timer *ft, void *arg);

/* The receiver's timer, allocated on first use; NULL without a reactor. */
static ct__frame_timer *ensure_frame(ct_protocol *p, ct_basic_state *st) {
  if (st->frame != NULL)
    return st->frame;
  if (p->transport == NULL || p->transport->reactor == NULL)
    return NULL;
  basic_frame *bf = calloc(1, sizeof *bf);
  if (bf == NULL)
    return NULL; /* no deadline rather than a failed connection */
  bf->p = p;
  bf->st = st;
  ct__frame_timer_init(&bf->ft, p->transport, &st->deadline, frame_late, bf);
  st->frame = &bf->ft;
  return st->frame;
}

static void frame_late(ct__frame_timer *ft, void *arg) {
  basic_frame *bf = arg;
  ct_basic_state *st = bf->st;
  ct__basic_fail(
      bf->p, st,
      ct_failure_new(
          CT_ETIMEDOUT,
          "%s: frame not completed within %g s of its "
          "first byte (%zu bytes of it buffered; "
          "minimum rate %g bytes/s)",
          bf->p->ops && bf->p->ops->name ? bf->p->ops->name : "basic",
          ft->deadline - ft->start, ct__buf_len(&st->carry), ft->min_rate));
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
  /* Flush the replies already written, unless the peer is not reading. */
  if (p->transport != NULL)
    ct__frame_error_close(ensure_frame(p, st), p->transport);
}

/* After a chunk of `n` bytes: start, extend or stop the frame deadline. */
static void frame_progress(ct_protocol *p, ct_basic_state *st, size_t n,
                           int completed) {
  int partial = ct__buf_len(&st->carry) > 0 && !st->paused &&
                st->failure == NULL && p->transport != NULL &&
                !ct_transport_is_closing(p->transport);
  if (st->frame == NULL && (!partial || ensure_frame(p, st) == NULL))
    return;
  ct__frame_timer_update(st->frame, n, completed, partial);
}

void ct__basic_feed(ct_protocol *p, ct_basic_state *st,
                    const ct__basic_kind *kind, const char *d, size_t n) {
  if (st->failure != NULL)
    return;
  if (st->busy) {
    /* Fed from inside one of our callbacks (set_line_mode with extra
     * bytes): these come after everything not yet parsed. */
    (void)buf_append(p, st, &st->extra, d, n);
    return;
  }
  st->busy = 1;
  const size_t total = n;
  int completed = 0;
  for (;;) {
    if (st->paused)
      goto stop;
    /* Phase 1: a frame started in an earlier chunk (or held while paused)
     * is completed in the buffer. */
    while (ct__buf_len(&st->carry) > 0) {
      size_t hint = 0;
      size_t c = kind->parse(p, ct__buf_head(&st->carry),
                             ct__buf_len(&st->carry), &hint);
      ct__buf_consume(&st->carry, c);
      completed |= c > 0;
      if (ct__basic_stopped(p, st))
        goto stop;
      if (ct__buf_len(&st->carry) == 0) {
        buf_reset(st);
        break;
      }
      if (n == 0)
        break;
      size_t take;
      if (kind->take != NULL)
        take = kind->take(p, ct__buf_head(&st->carry), ct__buf_len(&st->carry),
                          d, n);
      else
        take = hint ? hint : 64;
      if (take > n)
        take = n;
      if (buf_append(p, st, &st->carry, d, take) != 0)
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
      completed |= c > 0;
      if (ct__basic_stopped(p, st))
        goto stop;
      /* A partial frame: the parser validated its header, so this is
       * bounded by the frame limit. */
      if (buf_append(p, st, &st->carry, d, n) != 0)
        goto stop;
      n = 0;
    }
    if (ct__buf_len(&st->extra) == 0)
      break;
    /* Bytes fed from a callback: parse them after the rest. */
    if (buf_append(p, st, &st->carry, ct__buf_head(&st->extra),
                   ct__buf_len(&st->extra)) != 0)
      goto stop;
    ct__buf_clear(&st->extra);
  }
  st->busy = 0;
  frame_progress(p, st, total, completed);
  return;
stop:
  if (st->paused && st->failure == NULL &&
      !(p->transport != NULL && ct_transport_is_closing(p->transport))) {
    /* Hold everything unparsed, in order, for resume. */
    if (buf_append(p, st, &st->carry, d, n) == 0 &&
        buf_append(p, st, &st->carry, ct__buf_head(&st->extra),
                   ct__buf_len(&st->extra)) == 0)
      ct__buf_clear(&st->extra);
  } else {
    /* Closing: nothing more will be delivered (Twisted drops the rest of
     * a packet once the transport is disconnecting). */
    buf_reset(st);
    ct__buf_clear(&st->extra);
  }
  st->busy = 0;
  frame_progress(p, st, total, completed);
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

void ct__basic_stop_timer(ct_basic_state *st) {
  ct__frame_timer_cancel(st->frame);
}

void ct__basic_release(ct_basic_state *st) {
  ct__frame_timer_cancel(st->frame);
  free(st->frame);
  ct__buf_free(&st->carry);
  ct__buf_free(&st->extra);
  ct_failure_free(st->failure);
  memset(st, 0, sizeof *st);
}
