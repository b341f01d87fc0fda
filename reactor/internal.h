/*
 * Reactor internals that the other layers (deferred, transports) may use.
 *
 * Nothing here is public API: names carry the ct__ prefix and may change.
 * The layout of struct ct_reactor itself is private to reactor/ (see
 * reactor/impl.h); other layers go through these functions.
 */
#ifndef CT_REACTOR_INTERNAL_H
#define CT_REACTOR_INTERNAL_H

#include <stdint.h>

#include "ctwist/log.h"
#include "ctwist/reactor.h"
#include "reactor/buf.h"

struct event_base;

/** Nanoseconds per second: reactor time is int64 nanoseconds internally. */
#define CT_NS_PER_SEC INT64_C(1000000000)

/** The libevent base under the reactor (owned by the reactor). */
struct event_base *ct__reactor_base(ct_reactor *r);

/**
 * Run `fn(arg)` on a later loop turn of `r` (after the current callback
 * returns and after the next poll for I/O), in FIFO order with other
 * call_soon calls.  Works the same on the real and on a fake clock: it is
 * driven by the event loop (ct_reactor_run() or ct_reactor_iterate()), not
 * by time.  Not thread-safe (use ct_reactor_call_from_thread()).  Returns 0
 * or CT_ENOMEM; on error `fn` is never called.
 */
int ct__reactor_call_soon(ct_reactor *r, ct_call_cb fn, void *arg);

/** Size of the reactor's shared read buffer: large enough that a bulk
 *  transfer needs few read() calls. */
#define CT__READ_BUFFER_SIZE (256 * 1024)

/**
 * The reactor's read buffer, CT__READ_BUFFER_SIZE bytes, shared by every
 * stream transport of `r`: a transport reads into it and hands the bytes to
 * the protocol's data_received, which only borrows them for that call.
 * Allocated on first use (heap, so an idle reactor touches no pages of it),
 * owned by the reactor and freed with it; the pointer stays valid until
 * then.  Returns NULL if memory runs out.
 *
 * Sharing is safe because the buffer is only filled from an I/O callback,
 * and libevent never runs two callbacks of one base at once (a nested
 * event_base_loop() on the same base is refused): the bytes of one read are
 * never overwritten while its data_received runs.  Do not read into it from
 * anywhere else.  Reactor thread only.
 */
char *ct__reactor_read_buffer(ct_reactor *r);

/**
 * Flush before the reactor waits (Redis's beforeSleep).
 *
 * An object with output it holds back (a stream transport gathering the
 * writes made outside its own dispatch: timers, Deferred callbacks, another
 * connection's broadcast) queues its node with ct__reactor_flush_later().
 * The reactor calls every queued node's `fn` once, after the callbacks
 * that are running in this loop turn and before it next polls for I/O, so
 * gathering never adds a turn of latency.  Queuing a queued node is a
 * no-op; a node queued from inside a flush is flushed in the same turn.
 * The owner must cancel its node before freeing it.  Reactor thread only.
 */
typedef struct ct__flush_node {
  struct ct__flush_node *prev, *next; /* NULL/NULL while not queued */
  void (*fn)(struct ct__flush_node *n);
} ct__flush_node;

void ct__reactor_flush_later(ct_reactor *r, ct__flush_node *n);
void ct__reactor_flush_cancel(ct_reactor *r, ct__flush_node *n);

/**
 * The reactor's gather buffer, shared by the stream transports like the
 * read buffer: the transport whose callbacks are running (its dispatch)
 * owns it and appends its writes to it; when the dispatch returns it sends
 * them in one send() and hands the buffer back (owner NULL, empty).
 * Dispatches do not nest, so one buffer serves every connection.
 */
typedef struct ct__gather {
  ct__buf buf;
  void *owner; /* the dispatching transport, or NULL */
  /* The dispatch's single write so far when it lies in the read buffer
   * (an echo of what was read): referenced, not copied, until a second
   * write or the next read; `buf` is empty meanwhile. */
  const char *ref;
  size_t reflen;
  /* Stream dispatches under way (0 or 1: they do not nest), and the
   * reactor time read once for them (ct__reactor_turn_seconds()). */
  unsigned dispatching;
  int now_valid;
  int64_t now_ns;
} ct__gather;

ct__gather *ct__reactor_gather(ct_reactor *r);

/** The reactor's current time in nanoseconds (monotonic or fake clock). */
int64_t ct__reactor_now_ns(const ct_reactor *r);

/** ct_reactor_seconds(), read at most once per stream transport dispatch:
 *  everything one dispatch sends (a relay fanning a message out to many
 *  connections) is stamped with one clock read.  Outside a dispatch, and
 *  on a fake clock, it is ct_reactor_seconds(). */
double ct__reactor_turn_seconds(ct_reactor *r);

/** A stream transport's dispatch begins / ends (the turn time is dropped
 *  at the end). */
static inline void ct__gather_turn_begin(ct__gather *g) {
  g->dispatching++;
}
static inline void ct__gather_turn_end(ct__gather *g) {
  if (--g->dispatching == 0)
    g->now_valid = 0;
}

/** 1 if the reactor runs on a fake clock (ct_reactor_new_with_clock()). */
int ct__reactor_has_fake_clock(const ct_reactor *r);

/** ct_call_later() with the delay in nanoseconds (negative means 0). */
ct_delayed_call *ct__call_later_ns(ct_reactor *r, int64_t delay_ns,
                                   ct_call_cb fn, void *arg);

/** Seconds to nanoseconds: NaN and negatives give 0, huge values saturate
 *  at about 285 years. */
int64_t ct__seconds_to_ns(double seconds);

/** As ct__seconds_to_ns() but keeps the sign (for delay()). */
int64_t ct__seconds_to_ns_signed(double seconds);

/**
 * A service: per-reactor state that another module attaches on first use
 * (the resolver, the thread pool, the child-process reaper), found again by
 * the address of its ops.  ct_reactor_free() calls every service's `close`
 * first, while the reactor is still whole (timers, watchers and the loop
 * work; fail or finish outstanding work here), in the order the services
 * were added; then, after the reactor's own events are gone but before the
 * event_base is freed, every `free` in reverse order (release libevent
 * objects still on the base).  Either op may be NULL.
 */
typedef struct ct__service_ops {
  const char *name;
  void (*close)(ct_reactor *r, void *state);
  void (*free)(ct_reactor *r, void *state);
} ct__service_ops;

/** The state attached with `ops`, or NULL if none is. */
void *ct__reactor_service(ct_reactor *r, const ct__service_ops *ops);

/** Attach `state` under `ops` (one per ops per reactor).  Returns 0,
 *  CT_EINVAL, CT_EEXIST (already attached) or CT_ENOMEM. */
int ct__reactor_service_add(ct_reactor *r, const ct__service_ops *ops,
                            void *state);

#endif /* CT_REACTOR_INTERNAL_H */
