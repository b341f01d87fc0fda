/*
 * protocols/basic/internal.h: the chunk engine shared by the framing
 * receivers of basic.h.
 *
 * A receiver supplies a parse function that consumes complete frames from a
 * contiguous region, delivering each as a pointer into that region.  The
 * engine decides which region to hand it: the caller's chunk directly (the
 * zero-copy path) or the receiver's buffer when a frame started in an
 * earlier chunk.  In the latter case it tops the buffer up with just the
 * bytes that complete the head frame (the parser's hint, or a receiver's
 * `take` function) and then goes back to the zero-copy path for the rest.
 */
#ifndef CT_PROTOCOLS_BASIC_INTERNAL_H
#define CT_PROTOCOLS_BASIC_INTERNAL_H

#include <stddef.h>

#include "ctwist/basic.h"
#include "ctwist/transport.h"

typedef struct ct__basic_kind {
  /*
   * Consume complete frames from d[0..n): deliver them, stop early when
   * ct__basic_stopped() says so after a callback, and return the number of
   * bytes consumed.  Before returning with a partial frame left, validate
   * what is known of its header (failing early) and set *hint to the number
   * of further bytes that complete it, or 0 if unknown.
   */
  size_t (*parse)(ct_protocol *p, const char *d, size_t n, size_t *hint);
  /*
   * Optional: how many bytes of d[0..n) to append to the buffered partial
   * frame have[0..hn) so that it becomes complete (n if it cannot be).
   */
  size_t (*take)(ct_protocol *p, const char *have, size_t hn, const char *d,
                 size_t n);
} ct__basic_kind;

/* Feed bytes through `kind`'s parser (see the file comment). */
void ct__basic_feed(ct_protocol *p, ct_basic_state *st,
                    const ct__basic_kind *kind, const char *d, size_t n);

/* 1 if delivery must stop: paused, failed, or the transport is closing. */
static inline int ct__basic_stopped(const ct_protocol *p,
                                    const ct_basic_state *st) {
  return st->paused || st->failure != NULL ||
         (p->transport != NULL && ct_transport_is_closing(p->transport));
}

/* Record `f` (taken over) as the bad-input failure, log it and close. */
void ct__basic_fail(ct_protocol *p, ct_basic_state *st, ct_failure *f);

void ct__basic_pause(ct_protocol *p, ct_basic_state *st);
/* Clears the pause and, outside a callback, re-feeds held bytes. */
void ct__basic_resume(ct_protocol *p, ct_basic_state *st,
                      const ct__basic_kind *kind);

/* Stop the frame deadline and the error-close timer (connection_lost). */
void ct__basic_stop_timer(ct_basic_state *st);

/* Free buffers, timers and the failure. */
void ct__basic_release(ct_basic_state *st);

#endif
