/**
 * @file protocol.h
 * @brief Protocols and factories: what a connection does with its bytes
 *        (Twisted's Protocol, Factory, ClientFactory,
 * ReconnectingClientFactory).
 *
 * A protocol is a `const ct_protocol_ops *` vtable plus per-connection state.
 * A factory builds one protocol per connection.  A transport (transport.h)
 * owns the protocol it carries: it calls `connection_made` once, then
 * `data_received` any number of times, optionally `eof_received`, then
 * `connection_lost` exactly once, and finally `free`.
 *
 * The smallest protocol is a vtable and a factory initialiser:
 * @code
 *   static void echo_data(ct_protocol *p, const char *data, size_t len) {
 *     ct_transport_write(p->transport, data, len);
 *   }
 *   static const ct_protocol_ops echo_ops = {
 *     .name = "echo", .data_received = echo_data,
 *     .flags = CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER,
 *   };
 *   ct_factory f = CT_FACTORY_INIT(&echo_ops, sizeof(ct_protocol));
 *   ct_listening_port *port = ct_listen(reactor, "tcp:8000", &f, &failure);
 * @endcode
 *
 * A protocol with its own state embeds `ct_protocol` as its FIRST member
 * and sets the factory's protocol size to the size of its struct (the
 * default builder zero-fills it), or implements `build_protocol` itself.
 *
 * Not thread-safe: protocols run on their reactor's thread.
 */
#ifndef CTWIST_PROTOCOL_H
#define CTWIST_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "ctwist/deferred.h"
#include "ctwist/error.h"
#include "ctwist/reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_transport ct_transport;
typedef struct ct_protocol ct_protocol;
typedef struct ct_factory ct_factory;
typedef struct ct_client_factory ct_client_factory;
typedef struct ct_address ct_address;

/** Get the enclosing struct from a pointer to one of its members. */
#define ct_container_of(ptr, type, member)                                     \
  ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* --------------------------------------------------------------- protocol */

/** Protocol flags (in ct_protocol_ops.flags or ct_protocol.flags). */
enum {
  /**
   * Back-pressure opt-in: when the transport's output buffer crosses its
   * high watermark, stop reading from the peer until it drains below the
   * low watermark.  A request/response server (echo, RPC) should set it:
   * then a client that sends without reading cannot grow the server's
   * memory.  All bundled servers set it.
   */
  CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER = 1u << 0,
  /** Set by ct_protocol_new(): the protocol was calloc()ed and is released
   *  with free() when its ops have no `free`.  Internal. */
  CT_PROTOCOL_HEAP = 1u << 15
};

/**
 * A protocol's operations.  Every function is optional (NULL: do nothing),
 * and all are called on the reactor thread, never re-entrantly from a call
 * the protocol makes on its own transport.
 */
typedef struct ct_protocol_ops {
  /** Short static name for logs ("echo", "jsonrpc"). */
  const char *name;

  /** CT_PROTOCOL_* flags applying to every protocol of this kind. */
  unsigned flags;

  /**
   * The connection is up.  `p->transport` and `t` are set; the protocol may
   * write, pause, or close.  Called once.
   */
  void (*connection_made)(ct_protocol *p, ct_transport *t);

  /**
   * Bytes arrived.  `data` is borrowed for the duration of the call only
   * (it lives in a shared read buffer): copy what must be kept.  Chunks
   * have arbitrary boundaries, down to one byte.  The protocol may call
   * ct_transport_lose_connection() or ct_transport_abort() from here and
   * release its own state; no further data_received follows a close.
   */
  void (*data_received)(ct_protocol *p, const char *data, size_t len);

  /**
   * The peer shut down its write side (half-close, Twisted's
   * IHalfCloseableProtocol.readConnectionLost).  Return non-zero to keep
   * the connection open for writing (close it later with
   * ct_transport_lose_connection()); return 0, or leave this NULL, to
   * close it: pending output is flushed, then connection_lost reports a
   * clean close (CT_ECONNDONE).
   */
  int (*eof_received)(ct_protocol *p);

  /**
   * The connection is gone.  `reason` is borrowed: code CT_ECONNDONE for a
   * clean close (lose_connection, or the peer closed), CT_ECONNABORTED
   * after ct_transport_abort(), otherwise the error (CT_ECONNRESET, ...).
   * Called exactly once, on a loop turn of its own.  `p->transport` is
   * still set during the call and cleared after it.
   */
  void (*connection_lost)(ct_protocol *p, const ct_failure *reason);

  /**
   * Release the protocol; called by the transport after connection_lost
   * (also when a connection never got to connection_made).  NULL: free()
   * it if it came from ct_protocol_new(), otherwise leave it to its owner.
   */
  void (*free)(ct_protocol *p);
} ct_protocol_ops;

/**
 * A protocol instance.  Embed it as the first member of a bigger struct to
 * keep per-connection state, or hang state on `state`.
 */
struct ct_protocol {
  const ct_protocol_ops *ops;
  /** The transport while connected (set before connection_made, NULL
   *  after connection_lost).  Borrowed. */
  ct_transport *transport;
  /** The factory that built it (set by the factory machinery), or NULL. */
  ct_factory *factory;
  /** The user's per-connection pointer. */
  void *state;
  /** CT_PROTOCOL_* flags for this instance (ORed with ops->flags). */
  unsigned flags;
};

/**
 * Allocate a zero-filled protocol of `size` bytes (>= sizeof(ct_protocol))
 * with `ops` set and the CT_PROTOCOL_HEAP flag, so that the transport frees
 * it when `ops->free` is NULL.  Returns NULL on bad size or no memory.
 */
CT_EXTERN ct_protocol *ct_protocol_new(const ct_protocol_ops *ops, size_t size);

/** Initialise an embedded protocol (zeroes the base, sets ops). */
CT_EXTERN void ct_protocol_init(ct_protocol *p, const ct_protocol_ops *ops);

/**
 * Release a protocol the way a transport does: ops->free, else free() for
 * CT_PROTOCOL_HEAP protocols, else nothing.  NULL is a no-op.
 */
CT_EXTERN void ct_protocol_release(ct_protocol *p);

/* ---------------------------------------------------------------- factory */

/** A factory's operations; every member is optional. */
typedef struct ct_factory_ops {
  const char *name;
  /**
   * Build the protocol for a new connection from `peer` (borrowed).
   * Return NULL to refuse: the connection is closed at once.  NULL op:
   * ct_protocol_new(f->protocol_ops, f->protocol_size).  The machinery
   * sets `p->factory` afterwards.
   */
  ct_protocol *(*build_protocol)(ct_factory *f, const ct_address *peer);
  /** The first listener or connector using the factory starts. */
  void (*start)(ct_factory *f);
  /** The last listener or connector using the factory stopped. */
  void (*stop)(ct_factory *f);
} ct_factory_ops;

/**
 * A factory.  Usually a static or embedded struct owned by the user; it
 * must outlive its listening ports and every connection it built.
 */
struct ct_factory {
  const ct_factory_ops *ops;           /**< may be NULL (default builder) */
  const ct_protocol_ops *protocol_ops; /**< for the default builder */
  size_t protocol_size;                /**< for the default builder */
  void *user;                          /**< the user's pointer */
  /** Output watermarks for its connections, in bytes; 0 = defaults
   *  (CT_WRITE_HIGH_WATER_DEFAULT / CT_WRITE_LOW_WATER_DEFAULT). */
  size_t write_high_water, write_low_water;
  /** Number of listeners/connectors currently using it (start/stop
   *  accounting; maintained by the library). */
  unsigned users;
  /** Slow-consumer limits for its connections (ct_transport.h,
   *  ct_transport_set_output_limits); all 0 = the defaults. */
  size_t output_hard_limit, output_soft_limit;
  double output_soft_seconds;
  /** Connections of this factory aborted by the slow-consumer policy
   *  (maintained by the library). */
  unsigned long slow_consumer_drops;
};

/** Static initialiser of a factory building `size`-byte protocols. */
#define CT_FACTORY_INIT(protocol_ops_, size_)                                  \
  { NULL, (protocol_ops_), (size_), NULL, 0, 0, 0, 0, 0, 0, 0 }

/** Initialise a factory (zeroes it, then sets the given members). */
CT_EXTERN void ct_factory_init(ct_factory *f, const ct_factory_ops *ops,
                               const ct_protocol_ops *protocol_ops,
                               size_t protocol_size, void *user);

/**
 * Build a protocol for `peer` through `f` (the op or the default builder)
 * and set its `factory`.  Returns NULL if refused or out of memory.
 */
CT_EXTERN ct_protocol *ct_factory_build(ct_factory *f, const ct_address *peer);

/** Start accounting: the first call runs ops->start (Twisted's doStart). */
CT_EXTERN void ct_factory_do_start(ct_factory *f);
/** Stop accounting: the call that drops `users` to 0 runs ops->stop. */
CT_EXTERN void ct_factory_do_stop(ct_factory *f);

/* --------------------------------------------------------- client factory */

/**
 * A client factory: a factory plus connection outcome callbacks (Twisted's
 * ClientFactory).  Embed `base` first.  Both callbacks are optional and get
 * a borrowed failure.
 */
struct ct_client_factory {
  ct_factory base;
  /** A connection attempt failed (refused, unreachable, timed out,
   *  cancelled, refused by build_protocol). */
  void (*connection_failed)(ct_client_factory *cf, const ct_failure *reason);
  /** A connection made through this factory ended (after the protocol's
   *  connection_lost). */
  void (*connection_lost)(ct_client_factory *cf, const ct_failure *reason);
};

/* ------------------------------------------------- reconnecting client */

/**
 * Retry policy of a reconnecting client (Twisted's ReconnectingClientFactory
 * defaults in brackets).  After each failed attempt or lost connection:
 * `delay = min(delay * factor, max_delay)`, then, if jitter > 0, the delay is
 * drawn from a normal distribution of mean `delay` and standard deviation
 * `delay * jitter` (clamped to >= 0).  A successful connection resets the
 * delay to `initial_delay` and the retry count to 0.
 */
typedef struct ct_reconnect_policy {
  double initial_delay; /**< [1.0] seconds */
  double factor;        /**< [e = 2.718281828...] */
  double max_delay;     /**< [3600] seconds */
  double jitter;        /**< [0.119626565582] */
  int max_retries;      /**< [-1 = unlimited] give up after this many */
  /** Uniform random numbers in [0, 1) for the jitter; NULL: a PRNG seeded
   *  with `seed` (deterministic per seed). */
  double (*random)(void *arg);
  void *random_arg;
  uint64_t seed;
  /**
   * How to connect; NULL: ct_connect().  Otherwise called instead of it,
   * with `connect_arg`, under ct_connect()'s contract: build the protocol
   * through `cf`, run `cf->connection_failed` before an errback, and on
   * success set the transport's `client_factory` to `cf` (with
   * ct_factory_do_start()) so that its connection_lost reaches `cf`.  The
   * endpoint is then not parsed: its meaning is the function's (tests
   * connect over in-memory transports this way).
   */
  ct_deferred *(*connect)(ct_reactor *r, const char *endpoint,
                          ct_client_factory *cf, void *arg);
  void *connect_arg;
} ct_reconnect_policy;

/** Fill `p` with Twisted's defaults. */
CT_EXTERN void ct_reconnect_policy_default(ct_reconnect_policy *p);

typedef struct ct_reconnecting_client ct_reconnecting_client;

/**
 * Keep `cf` connected to `endpoint` (a client endpoint string, see
 * ct_connect()): connect now, and after every failure or lost connection
 * schedule the next attempt on the reactor's clock (fake clocks work).
 * `cf` is borrowed and its callbacks still run for every attempt.  `policy`
 * is copied (NULL: defaults).  Returns NULL (and sets *err if non-NULL) for a
 * bad endpoint or no memory.  Free with ct_reconnecting_client_free().
 */
CT_EXTERN ct_reconnecting_client *
ct_reconnecting_client_new(ct_reactor *r, const char *endpoint,
                           ct_client_factory *cf,
                           const ct_reconnect_policy *policy, ct_failure **err);

/**
 * Stop retrying (Twisted's stopTrying): cancel a scheduled retry or an
 * attempt in progress.  A live connection is left alone; it will not be
 * re-established when it ends.
 */
CT_EXTERN void ct_reconnecting_client_stop_trying(ct_reconnecting_client *rc);

/** Reset the back-off (Twisted's resetDelay); done on every success. */
CT_EXTERN void ct_reconnecting_client_reset_delay(ct_reconnecting_client *rc);

/** The delay the next (or scheduled) retry uses, in seconds. */
CT_EXTERN double ct_reconnecting_client_delay(const ct_reconnecting_client *rc);

/** Retries since the last success. */
CT_EXTERN int ct_reconnecting_client_retries(const ct_reconnecting_client *rc);

/** The connected protocol, or NULL while not connected. */
CT_EXTERN ct_protocol *
ct_reconnecting_client_protocol(const ct_reconnecting_client *rc);

/**
 * Stop trying and free.  A live connection is aborted first (its
 * connection_lost still runs, later, without further retries).
 * NULL is a no-op.
 */
CT_EXTERN void ct_reconnecting_client_free(ct_reconnecting_client *rc);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_PROTOCOL_H */
