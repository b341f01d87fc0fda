/**
 * @file transport.h
 * @brief Transports, addresses, producers, listening and connecting
 *        (Twisted's ITransport, ITCPTransport, IProducer/IConsumer,
 *        listenTCP/connectTCP through endpoint strings).
 *
 * A transport moves a protocol's bytes: TCP, Unix stream sockets, TLS, a
 * connected UDP socket, or an in-memory pair in tests.  Each kind fills a
 * `ct_transport_ops` vtable and embeds `ct_transport` first; users call the
 * `ct_transport_*` functions, which check state and dispatch.
 *
 * ## Re-entrancy
 * `connection_lost` is never called from inside a call the protocol makes on
 * its transport (write, writev, lose_connection, abort, half_close, ...):
 * errors found during an eager write and every close are reported on a
 * later loop turn.  A protocol may close (lose_connection/abort) and free
 * its own state from inside `data_received`; no further data is delivered.
 *
 * ## Back-pressure (bounded memory by default)
 * Each transport has write watermarks (defaults 256 KiB high, 64 KiB low;
 * per factory or per transport).  When the bytes buffered for output rise
 * above high, a registered streaming producer is paused and, if the protocol
 * has CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER, reading from the peer stops;
 * when they fall to low or below, both resume.
 *
 * ## Lifetime
 * A transport is reference counted.  The connection holds one reference
 * until after `connection_lost` and the protocol's `free` have run; the
 * protocol borrows `p->transport` until then.  Code that keeps a transport
 * beyond `connection_lost` takes its own reference (ct_transport_ref) and
 * drops it with ct_transport_unref(); every operation on a closed transport
 * returns CT_ECLOSED.
 *
 * Not thread-safe: use a transport on its reactor's thread only.
 */
#ifndef CTWIST_TRANSPORT_H
#define CTWIST_TRANSPORT_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

#include "ctwist/bytes.h"
#include "ctwist/deferred.h"
#include "ctwist/error.h"
#include "ctwist/protocol.h"
#include "ctwist/reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Default output high watermark (bytes). */
#define CT_WRITE_HIGH_WATER_DEFAULT (256u * 1024u)
/** Default output low watermark (bytes). */
#define CT_WRITE_LOW_WATER_DEFAULT (64u * 1024u)

/**
 * Slow-consumer limits, on by default (NATS: 64 MiB pending; Redis:
 * `client-output-buffer-limit pubsub 32mb 8mb 60`).  Back-pressure bounds
 * what a protocol writes for its own peer; these bound what others write
 * to it (a broadcast to a peer that stopped reading).  A connection whose
 * queued output goes over the hard limit, or stays over the soft limit for
 * the soft duration, is aborted; connection_lost gets CT_ESLOWCONSUMER
 * with a message naming the limit, and the factory's slow_consumer_drops
 * counts it.
 */
#define CT_OUTPUT_HARD_LIMIT_DEFAULT (64u * 1024u * 1024u)
/** Soft limit (bytes) of the slow-consumer policy. */
#define CT_OUTPUT_SOFT_LIMIT_DEFAULT (16u * 1024u * 1024u)
/** How long (seconds) output may stay over the soft limit. */
#define CT_OUTPUT_SOFT_SECONDS_DEFAULT 10.0

/* ---------------------------------------------------------------- address */

/** Address families of a ct_address. */
typedef enum ct_address_family {
  CT_ADDRESS_NONE = 0, /**< unset / unknown */
  CT_ADDRESS_IPV4 = 1,
  CT_ADDRESS_IPV6 = 2,
  CT_ADDRESS_UNIX = 3 /**< path, abstract ("@name") or unnamed */
} ct_address_family;

/** Room for any formatted address, NUL included. */
#define CT_ADDRESS_STRLEN 128

/**
 * A socket address: IPv4, IPv6 or Unix.  A plain value (copy it freely).
 * `len` is the meaningful length of `u` (as from accept/getpeername).
 */
struct ct_address {
  ct_address_family family;
  socklen_t len;
  union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr_un un;
    struct sockaddr_storage storage;
  } u;
};

/**
 * Fill `out` from a sockaddr of `len` bytes.  Returns 0, or CT_EINVAL for
 * an unsupported family or bad length (then `out->family` is NONE).
 */
CT_EXTERN int ct_address_from_sockaddr(ct_address *out,
                                       const struct sockaddr *sa,
                                       socklen_t len);

/**
 * Fill `out` from a numeric IPv4/IPv6 literal (IPv6 may be in brackets)
 * and a port.  Returns 0 or CT_EINVAL.
 */
CT_EXTERN int ct_address_from_ip(ct_address *out, const char *ip, int port);

/**
 * Fill `out` with a Unix address: a path, or an abstract name written
 * "@name".  Returns 0, CT_EINVAL (empty) or CT_ENAMETOOLONG.
 */
CT_EXTERN int ct_address_from_unix(ct_address *out, const char *path);

/** The port of an IPv4/IPv6 address, or -1. */
CT_EXTERN int ct_address_port(const ct_address *a);

/**
 * Format into `buf` (always NUL-terminated when len > 0):
 * "127.0.0.1:8000", "[::1]:8000", "unix:/run/x.sock", "unix:@name",
 * "unix:" (unnamed), "none".  Returns the length the text needs, like
 * snprintf.  CT_ADDRESS_STRLEN bytes always suffice.
 */
CT_EXTERN size_t ct_address_format(const ct_address *a, char *buf, size_t len);

/** 1 if both addresses are equal (family, address, port / path). */
CT_EXTERN int ct_address_equal(const ct_address *a, const ct_address *b);

/* --------------------------------------------------------------- producer */

/**
 * A producer feeding a transport (Twisted's IPushProducer/IPullProducer).
 * A streaming (push) producer writes whenever it likes and gets
 * pause_producing when the transport's buffer crosses its high watermark,
 * resume_producing when it drains to low.  A pull (non-streaming) producer
 * writes only from resume_producing, which the transport calls each time
 * its buffer has drained (the first time on a later loop turn after
 * registration).  stop_producing is called once when the connection ends
 * while registered.  Members may be NULL.
 */
typedef struct ct_producer_ops {
  void (*pause_producing)(void *arg);
  void (*resume_producing)(void *arg);
  void (*stop_producing)(void *arg);
} ct_producer_ops;

/* -------------------------------------------------------------- transport */

/**
 * Counters of one transport's I/O (redis CLIENT INFO's tot-net-in/out).
 * write_calls counts every send()/sendmsg() the transport made, including
 * those the kernel refused with EAGAIN: with gathered writes it is about
 * one per read in a request/response exchange, however many replies each
 * read produced.
 */
typedef struct ct_transport_stats {
  unsigned long long bytes_read;
  unsigned long long read_calls;    /**< reads that delivered data */
  unsigned long long bytes_written; /**< bytes the kernel accepted */
  unsigned long long write_calls;   /**< send()/sendmsg() calls */
} ct_transport_stats;

/** Socket options settable through ct_transport_set_option(). */
typedef enum ct_transport_option {
  CT_OPT_TCP_NODELAY = 1, /**< 0/1; TCP only */
  CT_OPT_KEEPALIVE = 2,   /**< 0/1; TCP only */
  CT_OPT_SNDBUF = 3,      /**< bytes (SO_SNDBUF) */
  CT_OPT_RCVBUF = 4       /**< bytes (SO_RCVBUF) */
} ct_transport_option;

/**
 * A transport kind's operations: implemented by tcp/unix (stream.c), TLS,
 * memory and connected UDP transports.  The ct_transport_* wrappers check
 * the closed state and argument validity before calling these, and
 * implement watermarks, producers and pause bookkeeping generically on top
 * (see transports/internal.h).  Ops that a kind does not support may be
 * NULL: the wrapper returns CT_ENOSYS.
 */
typedef struct ct_transport_ops {
  const char *name; /**< "tcp", "unix", "tls", "memory", "udp" */
  /** Queue or send `len` bytes (copied).  Never reports errors
   *  synchronously except CT_ECLOSED/CT_ENOMEM. */
  int (*write)(ct_transport *t, const void *data, size_t len);
  int (*writev)(ct_transport *t, const struct iovec *iov, int iovcnt);
  /** Stop reading, flush output, close; then connection_lost(ECONNDONE). */
  int (*lose_connection)(ct_transport *t);
  /** Close now, drop output; then connection_lost(ECONNABORTED). */
  int (*abort)(ct_transport *t);
  /** Flush output then shut down the write side; keep reading. */
  int (*half_close)(ct_transport *t);
  /** Raw reading switch used by the wrappers (which combine the user's
   *  pause with back-pressure): stop / restart delivering data. */
  int (*pause_reading)(ct_transport *t);
  int (*resume_reading)(ct_transport *t);
  int (*get_peer)(ct_transport *t, ct_address *out);
  int (*get_host)(ct_transport *t, ct_address *out);
  int (*set_option)(ct_transport *t, ct_transport_option opt, int value);
  /** Bytes accepted by write but not yet handed to the kernel/peer. */
  size_t (*buffered)(const ct_transport *t);
  /** A pull producer was registered: arrange a resume_producing call
   *  through ct__transport_pull_ready() once output has drained.  NULL:
   *  the generic code calls it from ct__transport_output_drained(). */
  void (*want_pull)(ct_transport *t);
  /** The descriptor, or -1. */
  int (*fileno)(const ct_transport *t);
  /** Queue `len` bytes of shared `b` from `off` without copying (takes a
   *  reference).  NULL: the wrapper writes a copy. */
  int (*write_bytes)(ct_transport *t, ct_bytes *b, size_t off, size_t len);
  /** Fill the I/O counters.  NULL: CT_ENOSYS. */
  int (*get_stats)(const ct_transport *t, ct_transport_stats *out);
  /** Send up to `len` bytes of file `fd` from `offset` with sendfile(2),
   *  behind everything queued.  NULL: CT_ENOSYS (the caller copies). */
  long long (*sendfile)(ct_transport *t, int fd, long long offset, size_t len);
  /** Release the kind's resources and the memory; called by the last
   *  ct_transport_unref().  The connection is already closed. */
  void (*destroy)(ct_transport *t);
} ct_transport_ops;

/**
 * The common part of every transport.  Transport kinds embed it first;
 * users treat the members as read-only and use the functions below.
 */
struct ct_transport {
  const ct_transport_ops *ops;
  ct_reactor *reactor;
  /** The protocol, borrowed from the transport's point of view until
   *  connection_lost; released by the transport after it. */
  ct_protocol *protocol;
  unsigned refs;
  unsigned flags; /**< CT__T_* bits, transports/internal.h */
  size_t high_water, low_water;
  const ct_producer_ops *producer;
  void *producer_arg;
  /** The client factory of a connection made by ct_connect(), whose
   *  connection_lost runs after the protocol's; NULL for servers. */
  ct_client_factory *client_factory;
  void *user; /**< free for the application */
  /** Slow-consumer limits in bytes (SIZE_MAX: off) and the soft duration;
   *  see ct_transport_set_output_limits(). */
  size_t out_hard_limit, out_soft_limit;
  double out_soft_seconds;
  ct_delayed_call *soft_timer; /**< running while over the soft limit */
  ct_failure *close_reason;    /**< reported instead of the kind's */
};

/**
 * Write `len` bytes (copied).  Bytes leave in the order written; when they
 * leave is the transport's write-gathering contract (docs/transports.md):
 *  - written while this transport's own callbacks run (data_received,
 *    connection_made, a producer's resume_producing): together with every
 *    other write of that dispatch, in one send() when it returns;
 *  - written from anywhere else (a timer, a Deferred callback, another
 *    connection's callback): in the same loop turn, before the reactor next
 *    waits for events;
 *  - 16 KiB or more at once: at once, behind what was gathered, uncopied;
 *  - refused by the kernel (its buffer is full): kept, and sent when the
 *    socket is writable again (counts towards the watermarks meanwhile).
 * Returns 0, CT_ECLOSED after a close or half-close, CT_ENOMEM, or
 * CT_EINVAL for NULL data with len > 0.  Write errors are reported through
 * connection_lost.
 */
CT_EXTERN int ct_transport_write(ct_transport *t, const void *data, size_t len);

/** Write several buffers in order (gathered like ct_transport_write; a
 *  large total leaves at once as one writev). */
CT_EXTERN int ct_transport_writev(ct_transport *t, const struct iovec *iov,
                                  int iovcnt);

/**
 * Write b[off .. off+len) without copying it: the transport queues a
 * reference on `b` (the caller keeps its own) and drops it once the bytes
 * have left or the connection closed.  For fan-out, where one message goes
 * to many connections.  Same ordering and errors as ct_transport_write();
 * CT_EINVAL if the range is outside `b`.  Kinds without zero-copy support
 * write a copy.
 */
CT_EXTERN int ct_transport_write_bytes(ct_transport *t, ct_bytes *b, size_t off,
                                       size_t len);

/**
 * Zero-copy file output: send up to `len` bytes of the regular file `fd`
 * from `offset` straight from the page cache (sendfile(2)), after every
 * byte written before it.  Returns the bytes sent (less than `len` when the
 * socket's buffer filled: call again when a registered pull producer is
 * resumed), 0 when nothing could be sent yet (earlier output still
 * queued, or the socket is full: a pull producer is resumed once it
 * drains), CT_ENOSYS when this kind of transport cannot (TLS, memory, a
 * throttling policy: read the file and write it instead), CT_ECLOSED,
 * CT_ERANGE when the file ends before `offset`, or a negated errno for the
 * file (EINVAL, EIO...).  The file stays the
 * caller's; `offset` is not the file's own position.
 */
CT_EXTERN long long ct_transport_sendfile(ct_transport *t, int fd,
                                          long long offset, size_t len);

/** Fill `out` with the transport's I/O counters.  Returns 0, CT_EINVAL or
 *  CT_ENOSYS (a kind without counters). */
CT_EXTERN int ct_transport_get_stats(const ct_transport *t,
                                     ct_transport_stats *out);

/** Write a NUL-terminated string (convenience). */
CT_EXTERN int ct_transport_write_str(ct_transport *t, const char *s);

/**
 * Stop reading, flush pending output, close; connection_lost then reports
 * CT_ECONNDONE on a later loop turn.  Idempotent: returns 0, or CT_ECLOSED
 * if already closed or aborted.
 */
CT_EXTERN int ct_transport_lose_connection(ct_transport *t);

/** Close now and drop pending output; connection_lost reports
 *  CT_ECONNABORTED later.  Returns 0 or CT_ECLOSED. */
CT_EXTERN int ct_transport_abort(ct_transport *t);

/** Flush output, then shut down the write side (the peer sees EOF); reading
 *  continues.  Returns 0, CT_ECLOSED or CT_ENOSYS. */
CT_EXTERN int ct_transport_half_close(ct_transport *t);

/** Stop delivering data_received until ct_transport_resume_reading().
 *  Idempotent.  Returns 0 or CT_ECLOSED. */
CT_EXTERN int ct_transport_pause_reading(ct_transport *t);

/** Undo ct_transport_pause_reading() (reading stays paused while
 *  back-pressure holds it).  Returns 0 or CT_ECLOSED. */
CT_EXTERN int ct_transport_resume_reading(ct_transport *t);

/** 1 if reading is currently paused (by the user or by back-pressure). */
CT_EXTERN int ct_transport_reading_paused(const ct_transport *t);

/** The peer's address.  Returns 0, CT_ECLOSED or a negated errno. */
CT_EXTERN int ct_transport_get_peer(ct_transport *t, ct_address *out);

/** The local address.  Returns 0, CT_ECLOSED or a negated errno. */
CT_EXTERN int ct_transport_get_host(ct_transport *t, ct_address *out);

/** Set a socket option.  Returns 0, CT_ENOSYS (not this kind), CT_ECLOSED
 *  or a negated errno. */
CT_EXTERN int ct_transport_set_option(ct_transport *t, ct_transport_option opt,
                                      int value);

/** TCP_NODELAY on/off (TCP only; Unix sockets return 0 and ignore it). */
CT_EXTERN int ct_transport_set_tcp_nodelay(ct_transport *t, int on);

/** SO_KEEPALIVE on/off. */
CT_EXTERN int ct_transport_set_keepalive(ct_transport *t, int on);

/** Bytes written but not yet passed on (0 when closed). */
CT_EXTERN size_t ct_transport_buffered(const ct_transport *t);

/**
 * Set this transport's watermarks (low <= high; high 0 restores the
 * defaults).  Re-evaluates back-pressure at once.  Returns 0 or CT_EINVAL.
 */
CT_EXTERN int ct_transport_set_watermarks(ct_transport *t, size_t high,
                                          size_t low);

/**
 * Set this transport's slow-consumer limits: abort it when its queued
 * output exceeds `hard` bytes, or stays above `soft` bytes for
 * `soft_seconds` (reactor clock).  0 turns a limit off; all three 0
 * restore the defaults (CT_OUTPUT_*_DEFAULT).  Factories set them for
 * their connections through output_hard_limit / output_soft_limit /
 * output_soft_seconds.  Returns 0 or CT_EINVAL (soft above hard, negative
 * or NaN seconds).
 */
CT_EXTERN int ct_transport_set_output_limits(ct_transport *t, size_t hard,
                                             size_t soft, double soft_seconds);

/**
 * Register a producer (one at a time): `streaming` non-zero for a push
 * producer.  `ops` and `arg` are borrowed until unregistered or until
 * stop_producing ran.  Returns 0, CT_ESTATE if one is registered,
 * CT_ECLOSED.
 */
CT_EXTERN int ct_transport_register_producer(ct_transport *t,
                                             const ct_producer_ops *ops,
                                             void *arg, int streaming);

/** Unregister the producer (no callback).  Returns 0 or CT_ENOTFOUND. */
CT_EXTERN int ct_transport_unregister_producer(ct_transport *t);

/** 1 once the transport is closed or closing (no more writes accepted). */
CT_EXTERN int ct_transport_is_closing(const ct_transport *t);

/** The descriptor under the transport, or -1. */
CT_EXTERN int ct_transport_fileno(const ct_transport *t);

/** The kind's name ("tcp", "unix", ...). */
CT_EXTERN const char *ct_transport_kind(const ct_transport *t);

/** Take a reference.  Returns `t`. */
CT_EXTERN ct_transport *ct_transport_ref(ct_transport *t);

/** Drop a reference; the last one destroys the transport.  NULL: no-op. */
CT_EXTERN void ct_transport_unref(ct_transport *t);

/* ------------------------------------------------------------- listening */

typedef struct ct_listening_port ct_listening_port;

/**
 * Listen on a server endpoint string and build a protocol with `f` for
 * every accepted connection:
 *   - `tcp:PORT[:interface=ADDR][:backlog=N][:reuseport=1]` (IPv4 unless
 *     the interface is an IPv6 literal), `tcp6:PORT[:interface=ADDR]...`;
 *   - `unix:PATH[:mode=0660][:lockfile=1][:backlog=N]`, PATH "@name" for an
 *     abstract socket.  A stale socket file (nothing accepting on it) is
 *     replaced; a live one gives CT_EADDRINUSE.
 * Listeners set SO_REUSEADDR and accept non-blocking, close-on-exec
 * descriptors.  When descriptors run out (EMFILE/ENFILE) the listener stops
 * accepting, uses a reserve descriptor to accept and close the pending
 * connection, retries after 10 ms doubling to 1 s, and logs one warning per
 * episode.  `f` is borrowed and must outlive the port and its connections;
 * its start op runs when it gains its first user.
 *
 * Returns the port, or NULL with `*err` (if non-NULL) set to a failure the
 * caller owns, naming the endpoint and the problem (CT_EBADENDPOINT,
 * CT_EADDRINUSE, CT_EACCES, ...).
 */
CT_EXTERN ct_listening_port *ct_listen(ct_reactor *r, const char *endpoint,
                                       ct_factory *f, ct_failure **err);

/**
 * Stop listening: the socket is closed (a Unix socket file and lock file
 * are removed) and the factory's user count dropped.  Live connections are
 * not touched.  Returns a Deferred (one reference for the caller) fired
 * with CT_NONE once closed; the port is freed and must not be used after
 * this call.
 */
CT_EXTERN ct_deferred *ct_listening_port_stop(ct_listening_port *port);

/** The address the port is bound to (port 0 resolved).  Returns 0. */
CT_EXTERN int ct_listening_port_address(const ct_listening_port *port,
                                        ct_address *out);

/** Connections accepted so far (for tests and stats). */
CT_EXTERN unsigned long
ct_listening_port_accepted(const ct_listening_port *port);

/** The listening descriptor (e.g. to pass to forked workers), or -1. */
CT_EXTERN int ct_listening_port_fileno(const ct_listening_port *port);

/* ------------------------------------------------------------- connecting */

/**
 * Connect to a client endpoint string:
 *   - `tcp:host=H:port=P[:timeout=S][:bindAddress=A]` (also `tcp:H:P`;
 *     host a numeric IPv4/IPv6 address or a name looked up without
 *     blocking by the reactor's resolver, ct_resolve(); with several
 *     addresses the attempts are staggered by 250 ms, happy-eyeballs
 *     style, and the first to connect wins; the timeout covers the
 *     lookup too);
 *   - `unix:path=PATH[:timeout=S]` (also `unix:PATH`, "@name" abstract).
 * Default timeout 30 s on the reactor's clock.  On success the client
 * factory builds the protocol, connection_made runs, then the Deferred
 * fires with `ct_value_of(protocol, NULL)`: the protocol pointer is
 * borrowed and valid until its connection_lost.  On failure the Deferred
 * errbacks (always on a later loop turn) with a failure naming host, port
 * and errno: CT_ECONNREFUSED, CT_ENETUNREACH, CT_EHOSTUNREACH,
 * CT_ETIMEDOUT, CT_EBADENDPOINT, CT_EDNS (the lookup failed),
 * CT_ECANCELLED (ct_deferred_cancel aborts the attempt and the lookup),
 * CT_ECONNABORTED (build_protocol refused); the factory's
 * connection_failed runs first.  A NULL `endpoint` or `cf` is reported the
 * same way, on a later turn, with CT_EINVAL.  Returns NULL if `r` is NULL
 * (there is no loop to report on: nothing is ever called) or if memory
 * runs out.  `cf` is borrowed and must outlive the attempt and the
 * connection.
 */
CT_EXTERN ct_deferred *ct_connect(ct_reactor *r, const char *endpoint,
                                  ct_client_factory *cf);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_TRANSPORT_H */
