/**
 * @file wire.h
 * @brief The small Internet services of RFC 862-865 and 867 (Twisted's
 *        `twisted.protocols.wire`): Echo, Discard, Chargen, Daytime, QOTD.
 *
 * Each service is a `ct_protocol` kind plus a factory initialiser.  Every
 * bundled server opts into CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER, so a
 * peer that sends without reading cannot grow the server's memory.
 *
 * @code
 *   ct_factory echo;
 *   ct_echo_factory_init(&echo);
 *   ct_listening_port *port = ct_listen(r, "tcp:7:interface=127.0.0.1",
 *                                       &echo, &err);
 * @endcode
 *
 * The factories are plain values owned by the caller; they hold no
 * resources (nothing to free) but must outlive their ports and connections.
 * Not thread-safe: protocols run on their reactor's thread.
 */
#ifndef CTWIST_WIRE_H
#define CTWIST_WIRE_H

#include <stddef.h>

#include "ctwist/error.h"
#include "ctwist/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The bundled services. */
typedef enum ct_wire_kind {
  CT_WIRE_ECHO = 0,    /**< RFC 862: send back what arrives */
  CT_WIRE_DISCARD = 1, /**< RFC 863: drop what arrives */
  CT_WIRE_CHARGEN = 2, /**< RFC 864: an endless stream of characters */
  CT_WIRE_DAYTIME = 3, /**< RFC 867: the date and time, then close */
  CT_WIRE_QOTD = 4     /**< RFC 865: a quote, then close */
} ct_wire_kind;

/** The quote a QOTD factory sends when none is configured (Twisted's). */
#define CT_QOTD_DEFAULT_QUOTE "An apple a day keeps the doctor away."

/**
 * The 71 characters Chargen repeats (Twisted's `Chargen.noise`), without a
 * terminating line break: the stream is this text over and over.
 */
#define CT_CHARGEN_NOISE                                                       \
  "@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~ "          \
  "!\"#$%&?"

/** Bytes Chargen writes each time its transport asks for more (a whole
 *  number of noise blocks, 4118 bytes). */
#define CT_CHARGEN_CHUNK (58u * 71u)

/** Protocol kinds, for custom factories or wrapping (read-only). */
CT_EXTERN extern const ct_protocol_ops ct_echo_protocol_ops;
CT_EXTERN extern const ct_protocol_ops ct_discard_protocol_ops;
CT_EXTERN extern const ct_protocol_ops ct_chargen_protocol_ops;
CT_EXTERN extern const ct_protocol_ops ct_daytime_protocol_ops;
CT_EXTERN extern const ct_protocol_ops ct_qotd_protocol_ops;

/**
 * Initialise `f` (zeroed first) as a factory of `kind` protocols.  A QOTD
 * factory sends CT_QOTD_DEFAULT_QUOTE; see ct_qotd_factory_init().
 * Returns 0, or CT_EINVAL for a NULL factory or an unknown kind.
 */
CT_EXTERN int ct_wire_factory_init(ct_factory *f, ct_wire_kind kind);

/**
 * Parse a service name ("echo", "discard", "chargen", "daytime", "qotd")
 * into `*out`.  Returns 0, or CT_EINVAL for NULL arguments or an unknown
 * name (then `*out` is unchanged).
 */
CT_EXTERN int ct_wire_kind_parse(const char *name, ct_wire_kind *out);

/** The service's name ("echo", ...), or "?" for an unknown kind. */
CT_EXTERN const char *ct_wire_kind_name(ct_wire_kind kind);

/**
 * Echo (RFC 862): every byte received is written back.  Because it opts
 * into pausing on the high watermark, a client that never reads makes the
 * server stop reading instead of buffering.  This is the library echo the
 * apps use.  NULL is a no-op.
 */
CT_EXTERN void ct_echo_factory_init(ct_factory *f);

/** Discard (RFC 863): everything received is dropped.  NULL: no-op. */
CT_EXTERN void ct_discard_factory_init(ct_factory *f);

/**
 * Chargen (RFC 864): writes CT_CHARGEN_NOISE repeated, forever, paced by
 * the consumer.  It registers itself as a pull producer on its transport
 * and writes one CT_CHARGEN_CHUNK each time the transport's output has
 * drained, so it never busy-loops and never has more than one chunk
 * buffered, however slowly the peer reads.  Input is ignored.  NULL: no-op.
 */
CT_EXTERN void ct_chargen_factory_init(ct_factory *f);

/**
 * Daytime (RFC 867): on connect, writes the current UTC wall-clock time in
 * asctime format ("Tue Nov 24 06:31:23 2026\r\n", as Twisted does) and
 * closes.  Wall time is used for display only.  NULL: no-op.
 */
CT_EXTERN void ct_daytime_factory_init(ct_factory *f);

/**
 * Quote of the Day (RFC 865): on connect, writes `quote` followed by
 * "\r\n" and closes.  `quote` is borrowed (it must outlive the factory's
 * connections); NULL selects CT_QOTD_DEFAULT_QUOTE.  Stored in `f->user`.
 * NULL `f`: no-op.
 */
CT_EXTERN void ct_qotd_factory_init(ct_factory *f, const char *quote);

/**
 * Format `when` (seconds since the epoch, UTC) the way Daytime sends it,
 * "Tue Nov 24 06:31:23 2026" without the line break, into `buf`.  Returns
 * the length written, or 0 if `buf` is NULL or shorter than 25 bytes.
 */
CT_EXTERN size_t ct_daytime_format(double when, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_WIRE_H */
