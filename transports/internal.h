/*
 * transports/internal.h: shared machinery for transport kinds.
 *
 * A transport kind (stream.c for TCP/Unix, memory, TLS, connected UDP)
 * embeds `ct_transport` first, fills a `ct_transport_ops`, and uses these
 * helpers so that watermarks, producers, pause bookkeeping and the
 * connection_lost sequence behave the same everywhere:
 *
 *   ct__transport_init(&x->base, &my_ops, reactor);      refs = 1
 *   ct__transport_make_connection(&x->base, protocol);   connection_made
 *   ... after every change of the output buffer:
 *   ct__transport_buffer_changed(&x->base, bytes_queued);
 *   ... when the output buffer became empty:
 *   ct__transport_output_drained(&x->base);
 *   ... when closed, on a loop turn of its own (never from inside a call
 *   the protocol made on the transport):
 *   ct__transport_deliver_lost(&x->base, reason);        drops the
 *                                                        connection's ref
 *
 * The public wrappers (transport.c) refuse calls on closed transports,
 * combine user pause with back-pressure pause before calling the raw
 * pause_reading/resume_reading ops, and keep the producer bookkeeping.
 */
#ifndef CT_TRANSPORTS_INTERNAL_H
#define CT_TRANSPORTS_INTERNAL_H

#include "ctwist/protocol.h"
#include "ctwist/transport.h"

/* Bits of ct_transport.flags. */
enum {
  CT__T_CONNECTED = 1u << 0,        /* connection_made has run */
  CT__T_CLOSING = 1u << 1,          /* lose_connection: no more writes */
  CT__T_CLOSED = 1u << 2,           /* closed; connection_lost pending/done */
  CT__T_LOST = 1u << 3,             /* connection_lost delivered */
  CT__T_WRITE_SHUT = 1u << 4,       /* half_close requested */
  CT__T_USER_PAUSED = 1u << 5,      /* ct_transport_pause_reading */
  CT__T_BP_PAUSED = 1u << 6,        /* back-pressure wants reading paused */
  CT__T_READ_PAUSED = 1u << 7,      /* raw pause_reading op is in effect */
  CT__T_ABOVE_HIGH = 1u << 8,       /* output above the high watermark */
  CT__T_STREAMING = 1u << 9,        /* the producer is a push producer */
  CT__T_PRODUCER_PAUSED = 1u << 10, /* we paused the push producer */
  CT__T_PULL_PENDING = 1u << 11,    /* a pull producer awaits resume */
  CT__T_EOF = 1u << 12              /* the peer's EOF was seen */
};

/* Initialise the common part: refs 1 (the connection's), default
 * watermarks, no protocol. */
void ct__transport_init(ct_transport *t, const ct_transport_ops *ops,
                        ct_reactor *r);

/* Attach `p`: set p->transport, take the watermarks of p->factory (when
 * set), mark connected, call connection_made. */
void ct__transport_make_connection(ct_transport *t, ct_protocol *p);

/* Apply the watermarks after the queued output changed to `buffered`. */
void ct__transport_buffer_changed(ct_transport *t, size_t buffered);

/* The output buffer is empty: if a pull producer is waiting, call its
 * resume_producing. */
void ct__transport_output_drained(ct_transport *t);

/* 1 if the protocol is currently paused from reading (user or back-
 * pressure) -- i.e. the kind should not read. */
static inline int ct__transport_want_reading(const ct_transport *t) {
  return (t->flags & (CT__T_USER_PAUSED | CT__T_BP_PAUSED | CT__T_CLOSED |
                      CT__T_CLOSING | CT__T_EOF)) == 0;
}

/* Deliver the end of the connection: stop_producing on a registered
 * producer, the protocol's connection_lost(reason), the client factory's
 * connection_lost, release the protocol, drop the connection's reference.
 * Takes `reason` (freed here).  Must be called on a loop turn of its own. */
void ct__transport_deliver_lost(ct_transport *t, ct_failure *reason);

/* Release a protocol that never got connection_made (refused connect). */
void ct__protocol_discard(ct_protocol *p);

#endif /* CT_TRANSPORTS_INTERNAL_H */
