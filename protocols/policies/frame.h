/*
 * protocols/policies/frame.h: the frame-completion timer shared by the
 * framing protocols (basic receivers, message protocol), and their close
 * after a protocol error.
 *
 * A framing protocol embeds a ct__frame_timer, resolves its deadline at
 * connection_made, reports after each chunk whether a partial frame is
 * left (and whether a frame completed), and cancels the timer in
 * connection_lost.  The hot path -- chunks that hold whole frames -- costs
 * one branch: no clock read, no timer operation.  A started frame arms one
 * delayed call; later chunks only move a deadline variable, and the call,
 * when it fires early, re-arms itself for what is left (lazy rescheduling).
 */
#ifndef CT_PROTOCOLS_POLICIES_FRAME_H
#define CT_PROTOCOLS_POLICIES_FRAME_H

#include <stddef.h>

#include "ctwist/policies.h"

typedef struct ct__frame_timer ct__frame_timer;

/* The deadline passed: `ft->start` and `ft->bytes` describe the late
 * frame.  The callback closes the connection. */
typedef void (*ct__frame_expired_cb)(ct__frame_timer *ft, void *arg);

struct ct__frame_timer {
  ct_delayed_call *call;                 /* pending timer, or NULL */
  ct_transport *t;                       /* borrowed while the timer may fire */
  double timeout, min_rate, max_timeout; /* resolved; timeout 0 = off */
  double start, deadline;
  size_t bytes;          /* bytes received since the frame started */
  unsigned char active;  /* a partial frame is pending */
  unsigned char closing; /* the timer is the error-close deadline */
  ct__frame_expired_cb expired;
  void *arg;
};

/* Resolve the deadline for a connection on transport `t`: a frame-deadline
 * policy wrapping `t` wins, then `cfg` (may be NULL), then the defaults.
 * Resets the timer state; `expired` runs when a frame is late. */
void ct__frame_timer_init(ct__frame_timer *ft, ct_transport *t,
                          const ct_frame_deadline *cfg,
                          ct__frame_expired_cb expired, void *arg);

/* After a chunk of `len` bytes was parsed: `completed` if at least one
 * frame ended in it, `partial` if bytes of an unfinished frame are left.
 * A receiver that is paused passes partial = 0 (its clock stops). */
void ct__frame_timer_update(ct__frame_timer *ft, size_t len, int completed,
                            int partial);

/* Stop the timer (connection_lost, free). */
void ct__frame_timer_cancel(ct__frame_timer *ft);

/*
 * Close after a protocol error without throwing away what the peer is
 * owed: lose_connection (which flushes), but abort at once when the output
 * is above the high watermark (the peer is not reading), and abort after
 * CT_ERROR_CLOSE_TIMEOUT seconds if the flush has not finished by then.
 * `ft` may be NULL (no deadline).  Returns the transport call's result.
 */
int ct__frame_error_close(ct__frame_timer *ft, ct_transport *t);

/* The deadline a frame-deadline policy sets for a connection on `t`
 * (walking the wrapper transports up to the real one): 1 with *out filled,
 * or 0 when no such policy wraps it. */
int ct__policy_frame_deadline(ct_transport *t, ct_frame_deadline *out);

#endif
