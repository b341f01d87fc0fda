/**
 * @file testing.h
 * @brief In-memory transports for testing protocols without sockets:
 *        a string transport (Twisted's StringTransport) and a connected
 *        pair of protocols with a pump (Twisted's iosim connect/IOPump).
 *
 * Both implement the ordinary `ct_transport` vtable, so the protocol under
 * test cannot tell them from TCP: it writes, pauses, half-closes, registers
 * producers and closes through the usual ct_transport_* calls, and the
 * watermarks and back-pressure rules of transport.h apply.
 *
 * Nothing here moves by itself.  The test decides when bytes travel and
 * when closes are delivered (ct_string_transport_step(), ct_pump_flush()),
 * which keeps the re-entrancy rule of transport.h: `connection_lost` is
 * never called from inside a call the protocol made on its transport, only
 * from these test-driven functions.  Pair them with a reactor on a fake
 * clock (ct_reactor_new_with_clock()) so that the protocol's timers run
 * from ct_clock_advance().  See docs/testing.md for a walk-through.
 *
 * Not thread-safe.  Everything is released by the *_free functions; under
 * AddressSanitizer a test that frees what it created is leak-free.
 */
#ifndef CTWIST_TESTING_H
#define CTWIST_TESTING_H

#include <stddef.h>

#include "ctwist/error.h"
#include "ctwist/protocol.h"
#include "ctwist/reactor.h"
#include "ctwist/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* -------------------------------------------------------- string transport */

/** A transport that records what the protocol writes. */
typedef struct ct_string_transport ct_string_transport;

/** What the protocol did to a string transport (counts of calls). */
typedef struct ct_string_transport_stats {
  unsigned lose_connection_calls; /**< ct_transport_lose_connection() */
  unsigned abort_calls;           /**< ct_transport_abort() */
  unsigned half_close_calls;      /**< ct_transport_half_close() */
  unsigned pause_calls;  /**< reading actually paused (user or back-pressure) */
  unsigned resume_calls; /**< reading actually resumed */
  int producer_registered; /**< 1 while a producer is registered */
  int producer_streaming;  /**< 1 if that producer is a push producer */
  int disconnecting;       /**< lose_connection or abort was called */
  int write_shut;          /**< half_close was called */
  int disconnected;        /**< connection_lost has been delivered */
  int lost_code;           /**< its reason's code (0 until then) */
  size_t queued_input;     /**< fed bytes held back while reading is paused */
} ct_string_transport_stats;

/**
 * Create a string transport.  `r` (may be NULL) becomes the transport's
 * reactor, which protocols use for timers: pass a fake-clock reactor.
 * The host address defaults to 10.0.0.1:12345 and the peer to
 * 192.168.1.1:54321 (Twisted's).  Returns NULL if memory runs out.  The
 * caller owns the handle: ct_string_transport_free().
 */
CT_EXTERN ct_string_transport *ct_string_transport_new(ct_reactor *r);

/**
 * Attach protocol `p` and call its connection_made.  The transport takes
 * `p` over: it is released (ct_protocol_release) after connection_lost.
 * Returns 0, CT_EINVAL (NULL) or CT_ESTATE (already connected).
 */
CT_EXTERN int ct_string_transport_connect(ct_string_transport *st,
                                          ct_protocol *p);

/** The transport as the protocol sees it (borrowed from `st`). */
CT_EXTERN ct_transport *ct_string_transport_transport(ct_string_transport *st);

/**
 * Everything written since creation or the last clear.  The buffer is
 * NUL-terminated for convenience (the terminator is not counted) and
 * belongs to `st`; it is valid until the next write or clear.  `len` may be
 * NULL.  Still readable after the connection was lost.
 */
CT_EXTERN const char *ct_string_transport_value(const ct_string_transport *st,
                                                size_t *len);

/**
 * Forget the written bytes.  In back-pressure mode this is the peer
 * reading them: the buffered count drops to 0, which may resume a paused
 * producer or reading, and a pull producer is asked for more.
 */
CT_EXTERN void ct_string_transport_clear(ct_string_transport *st);

/**
 * Back-pressure mode (off by default, like Twisted's StringTransport): when
 * on, written bytes count as buffered output until ct_string_transport_clear(),
 * so the transport's watermarks pause producers and (for protocols that opt
 * in) reading.  Returns 0.
 */
CT_EXTERN int ct_string_transport_set_backpressure(ct_string_transport *st,
                                                   int on);

/**
 * Deliver `len` bytes to the protocol's data_received, as the peer sending
 * them.  When reading is paused they are queued and delivered by a later
 * ct_string_transport_step() after the protocol resumes.  Returns 0,
 * CT_ESTATE (not connected) or CT_ECLOSED (the transport is closing or
 * closed: the protocol stopped reading, the bytes are dropped).
 */
CT_EXTERN int ct_string_transport_feed(ct_string_transport *st,
                                       const void *data, size_t len);

/** ct_string_transport_feed() of a NUL-terminated string. */
CT_EXTERN int ct_string_transport_feed_str(ct_string_transport *st,
                                           const char *s);

/**
 * The peer half-closed: call the protocol's eof_received.  If it is NULL or
 * returns 0 the transport starts closing (as lose_connection;
 * connection_lost follows from ct_string_transport_step()).  Returns 1 if
 * the protocol keeps the connection open, 0 if it closes, or CT_ESTATE /
 * CT_ECLOSED.
 */
CT_EXTERN int ct_string_transport_feed_eof(ct_string_transport *st);

/**
 * Run what the protocol's own calls left pending, as a loop turn would:
 * queued input (if reading is no longer paused), a pull producer's
 * resume_producing, and connection_lost after lose_connection (reason
 * CT_ECONNDONE) or abort (CT_ECONNABORTED).  Returns the number of things
 * delivered (0 when quiet).
 */
CT_EXTERN int ct_string_transport_step(ct_string_transport *st);

/**
 * The connection ends from outside (the peer closed, or an error): deliver
 * connection_lost now with `reason` (taken over; NULL means a clean close,
 * CT_ECONNDONE).  A pending lose_connection/abort reason wins over
 * `reason`.  Returns 0, or CT_ECLOSED if connection_lost was already
 * delivered (`reason` is freed).
 */
CT_EXTERN int ct_string_transport_lose(ct_string_transport *st,
                                       ct_failure *reason);

/** Read the call counts and state. */
CT_EXTERN void ct_string_transport_stats_get(const ct_string_transport *st,
                                             ct_string_transport_stats *out);

/** Set the address ct_transport_get_peer() reports (copied). */
CT_EXTERN void ct_string_transport_set_peer(ct_string_transport *st,
                                            const ct_address *a);

/** Set the address ct_transport_get_host() reports (copied). */
CT_EXTERN void ct_string_transport_set_host(ct_string_transport *st,
                                            const ct_address *a);

/**
 * Free the handle.  A connection still open is aborted and its
 * connection_lost delivered (CT_ECONNABORTED) first.  The transport memory
 * itself lives on while the protocol or others hold references.  NULL is a
 * no-op.
 */
CT_EXTERN void ct_string_transport_free(ct_string_transport *st);

/* ------------------------------------------------------------------ pump */

/** A connected pair of in-memory transports and the pump between them. */
typedef struct ct_pump ct_pump;

/** Options of ct_pump_connect(); zero-fill for the defaults. */
typedef struct ct_pump_options {
  /** Largest chunk handed to one data_received call; 0 = whatever is
   *  buffered.  1 feeds parsers a byte at a time. */
  size_t chunk_size;
  /** A fake clock to advance by 0 s whenever the pair is quiet, so that
   *  calls scheduled with zero delay run inside ct_pump_flush(); or NULL. */
  ct_clock *clock;
  /** Addresses: the server side's local address (default 127.0.0.1:8000)
   *  and the client side's (default 127.0.0.1:49152).  Each side's peer is
   *  the other's host. */
  const ct_address *server_addr;
  const ct_address *client_addr;
  /** Stop ct_pump_flush() after this many steps (0: 100,000,000), for
   *  protocols that talk forever. */
  unsigned long max_steps;
} ct_pump_options;

/**
 * Connect `server` and `client` (protocols, taken over: each is released
 * after its connection_lost) through two in-memory transports on reactor
 * `r` (may be NULL; protocols use it for timers).  connection_made runs on
 * the server first, then the client (iosim's order); nothing moves until
 * the test pumps.  Returns NULL on bad arguments or no memory (then the
 * protocols are released).  Free with ct_pump_free().
 *
 * Semantics of the pair, step by step:
 * - bytes written on one side are buffered (counted by
 *   ct_transport_buffered(), so the watermarks apply) until a step hands
 *   them to the other side's data_received, in chunks of `chunk_size`;
 *   nothing is delivered to a side that paused reading;
 * - lose_connection: once that side's output is delivered, both sides get
 *   connection_lost with CT_ECONNDONE;
 * - abort: that side's output is dropped; it gets CT_ECONNABORTED, the
 *   other side CT_ECONNRESET;
 * - half_close: once that side's output is delivered, the other side's
 *   eof_received runs (NULL or 0: it closes as with lose_connection).
 */
CT_EXTERN ct_pump *ct_pump_connect(ct_reactor *r, ct_protocol *server,
                                   ct_protocol *client,
                                   const ct_pump_options *opts);

/**
 * As ct_pump_connect(), building the protocols with ct_factory_build():
 * the server factory sees the client's address as the peer and vice
 * versa.  Returns NULL if a factory refuses (the other protocol is
 * released) or memory runs out.
 */
CT_EXTERN ct_pump *ct_pump_connect_factories(ct_reactor *r,
                                             ct_factory *server_factory,
                                             ct_factory *client_factory,
                                             const ct_pump_options *opts);

/**
 * One step: at most one chunk each way, then EOFs and closes that became
 * due, then pending pull-producer requests.  Returns 1 if anything
 * happened, 0 if the pair is quiet.
 */
CT_EXTERN int ct_pump_step(ct_pump *p);

/**
 * Step until quiet (advancing the optional fake clock by 0 s between
 * rounds).  Returns the number of steps that did something, or CT_ETOOBIG
 * when max_steps ran out.
 */
CT_EXTERN long ct_pump_flush(ct_pump *p);

/** Change the chunk size (0 = unlimited). */
CT_EXTERN void ct_pump_set_chunk_size(ct_pump *p, size_t chunk_size);

/** The server side's transport (borrowed; valid until ct_pump_free()). */
CT_EXTERN ct_transport *ct_pump_server_transport(ct_pump *p);

/** The client side's transport (borrowed; valid until ct_pump_free()). */
CT_EXTERN ct_transport *ct_pump_client_transport(ct_pump *p);

/**
 * The reason code connection_lost reported on the server (`server` non-zero)
 * or client side, or 0 while that side is connected.
 */
CT_EXTERN int ct_pump_lost_code(const ct_pump *p, int server);

/** Bytes delivered so far to the server (`server` non-zero) or client. */
CT_EXTERN size_t ct_pump_delivered(const ct_pump *p, int server);

/**
 * Free the pump.  Sides still connected are aborted and their
 * connection_lost delivered first (CT_ECONNABORTED).  NULL is a no-op.
 */
CT_EXTERN void ct_pump_free(ct_pump *p);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_TESTING_H */
