/**
 * @file basic.h
 * @brief Framing protocols (Twisted's twisted.protocols.basic): a line
 *        receiver with raw mode, a netstring receiver and 8/16/32-bit
 *        length-prefixed string receivers.
 *
 * Each receiver is an embeddable protocol "base".  A user protocol embeds
 * the receiver struct FIRST in its own struct (or uses it as is), and
 * declares a `const` receiver-ops table whose first member is the
 * `ct_protocol_ops` filled by a CT_*_RECEIVER_BASE() macro, followed by its
 * own callbacks.  The factory then builds it with the default builder:
 *
 * @code
 *   static void on_line(ct_line_receiver *lr, const char *line, size_t len) {
 *     ct_line_receiver_send_line(lr, line, len);   // echo
 *   }
 *   static const ct_line_receiver_ops echo_ops = {
 *     CT_LINE_RECEIVER_BASE("line-echo",
 *                           CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER),
 *     .line_received = on_line,
 *   };
 *   ct_factory f = CT_FACTORY_INIT(&echo_ops.base, sizeof(ct_line_receiver));
 * @endcode
 *
 * ## Zero copy and bounded memory
 * A frame that is complete inside one `data_received` chunk is delivered as
 * a pointer into that chunk, without copying; only a partial frame at the
 * end of a chunk is copied into the receiver's buffer, which therefore
 * never holds more than one frame (at most the configured maximum length
 * plus its framing) unless the receiver is paused.  Delivered pointers are
 * borrowed for the duration of the callback only.
 *
 * ## Errors
 * Bad input (a line over the limit, a malformed netstring, a length prefix
 * over the limit) stores a `ct_failure` naming the problem (code CT_EPARSE
 * or CT_ETOOBIG), logs it at INFO level under module "basic", and closes the
 * connection with ct_transport_lose_connection() (Twisted's behaviour), so
 * the replies to the frames before the bad bytes are flushed first.  Only
 * a peer that does not read is cut short: the connection is aborted at
 * once when its output is above the high watermark, and after
 * CT_ERROR_CLOSE_TIMEOUT (10 s) if the flush has not finished.  No
 * further frame is delivered.
 *
 * ## Slow peers (frame deadline)
 * A frame that has started must complete in time: by default within 20 s
 * of its first byte, plus 1 s per 500 bytes of it received
 * (ct_frame_deadline in policies.h; each ops struct has a `frame_deadline`
 * member, zero for the defaults, `.timeout = -1` to disable it).  A late
 * frame fails the connection with CT_ETIMEDOUT as above.  The deadline
 * runs on the transport's reactor clock (a fake clock in tests); a
 * transport without a reactor has none.  The user's `connection_lost` then
 * receives that failure instead of the transport's clean-close reason; it can
 * also be read with the *_failure() accessors.  Other connections are
 * untouched.
 *
 * ## Re-entrancy
 * Callbacks may write, close, pause/resume and switch modes.  After a
 * callback closes the connection (or pauses the receiver) no further frame
 * of the same chunk is delivered; paused bytes are kept and delivered by
 * *_resume().
 *
 * Not thread-safe: receivers run on their reactor's thread.
 */
#ifndef CTWIST_BASIC_H
#define CTWIST_BASIC_H

#include <stddef.h>
#include <stdint.h>

#include "ctwist/bytes.h"
#include "ctwist/error.h"
#include "ctwist/policies.h"
#include "ctwist/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Default maximum line length (Twisted's LineReceiver.MAX_LENGTH). */
#define CT_LINE_MAX_LENGTH_DEFAULT 16384u
/** Default maximum netstring length (Twisted's NetstringReceiver). */
#define CT_NETSTRING_MAX_LENGTH_DEFAULT 99999u
/** Default maximum intN string length (Twisted's IntNStringReceiver). */
#define CT_INTN_MAX_LENGTH_DEFAULT 99999u
/** Longest line delimiter accepted. */
#define CT_LINE_DELIMITER_MAX 16u
/** Largest configurable maximum length of any receiver (1 GiB). */
#define CT_BASIC_MAX_LENGTH_LIMIT (1024u * 1024u * 1024u)

/**
 * Parse state shared by the receivers.  Private: the members may change;
 * a zero-filled state is a valid fresh state.
 */
typedef struct ct_basic_state {
  ct__buf carry;       /* unparsed bytes carried over between chunks */
  ct__buf extra;       /* bytes fed re-entrantly from a callback */
  ct_failure *failure; /* the bad-input failure, once one happened */
  unsigned char paused, busy, raw, inited;
  ct_frame_deadline deadline;    /* copied from the ops */
  struct ct__frame_timer *frame; /* allocated at the first partial frame */
} ct_basic_state;

/* ================================================================== line */

typedef struct ct_line_receiver ct_line_receiver;

/**
 * A line receiver's operations (Twisted's LineReceiver methods and class
 * attributes).  Fill `base` with CT_LINE_RECEIVER_BASE(); every callback is
 * optional.
 */
typedef struct ct_line_receiver_ops {
  /** The protocol vtable: CT_LINE_RECEIVER_BASE(name, flags). */
  ct_protocol_ops base;
  /** Line delimiter (default "\r\n"), 1..CT_LINE_DELIMITER_MAX bytes;
   *  `delimiter_len` 0 means strlen(delimiter). */
  const char *delimiter;
  size_t delimiter_len;
  /** Longest accepted line, delimiter excluded (0: 16384). */
  size_t max_length;
  /** The connection is up (`lr->base.transport` is set). */
  void (*connection_made)(ct_line_receiver *lr);
  /** A complete line, delimiter stripped.  `line` is borrowed. */
  void (*line_received)(ct_line_receiver *lr, const char *line, size_t len);
  /** In raw mode: a chunk of bytes (never empty).  Borrowed. */
  void (*raw_data_received)(ct_line_receiver *lr, const char *data, size_t len);
  /**
   * A line longer than the maximum arrived (or more than max_length +
   * delimiter length bytes arrived without a delimiter).  `data` starts
   * with the offending line and holds whatever else was buffered with it;
   * all of it is discarded.  NULL (default): close the connection with a
   * CT_ETOOBIG failure naming the limit.  A callback that does not close
   * lets parsing continue with the next bytes (Twisted's semantics).
   */
  void (*line_length_exceeded)(ct_line_receiver *lr, const char *data,
                               size_t len);
  /** Half-close from the peer; see ct_protocol_ops.eof_received. */
  int (*eof_received)(ct_line_receiver *lr);
  /** The connection is gone: `reason` is the bad-input failure if there
   *  was one, otherwise the transport's reason.  Borrowed. */
  void (*connection_lost)(ct_line_receiver *lr, const ct_failure *reason);
  /** Release the protocol: NULL frees a ct_protocol_new() protocol. The
   *  receiver's own buffers are already released when this runs. */
  void (*free)(ct_line_receiver *lr);
  /** Frame-completion deadline (zero-filled: the defaults, see
   *  ct_frame_deadline).  For lines it covers a line in line mode. */
  ct_frame_deadline frame_deadline;
} ct_line_receiver_ops;

/** A line receiver.  Embed it first; members are read-only. */
struct ct_line_receiver {
  ct_protocol base;
  char delimiter[CT_LINE_DELIMITER_MAX];
  size_t delimiter_len;
  size_t max_length;
  ct_basic_state st;
};

/** Protocol entry points used by CT_LINE_RECEIVER_BASE (not for direct use). */
CT_EXTERN void ct_line_receiver_proto_made(ct_protocol *p, ct_transport *t);
CT_EXTERN void ct_line_receiver_proto_data(ct_protocol *p, const char *data,
                                           size_t len);
CT_EXTERN int ct_line_receiver_proto_eof(ct_protocol *p);
CT_EXTERN void ct_line_receiver_proto_lost(ct_protocol *p,
                                           const ct_failure *reason);
CT_EXTERN void ct_line_receiver_proto_free(ct_protocol *p);

/** Designated initialiser of ct_line_receiver_ops.base. */
#define CT_LINE_RECEIVER_BASE(name_, flags_)                                   \
  .base = {.name = (name_),                                                    \
           .flags = (flags_),                                                  \
           .connection_made = ct_line_receiver_proto_made,                     \
           .data_received = ct_line_receiver_proto_data,                       \
           .eof_received = ct_line_receiver_proto_eof,                         \
           .connection_lost = ct_line_receiver_proto_lost,                     \
           .free = ct_line_receiver_proto_free}

/**
 * Initialise an embedded line receiver (zeroes it, sets ops, copies the
 * delimiter and limit from `ops`).  Not needed for protocols built by the
 * default factory builder (zero-filled memory is initialised lazily).
 */
CT_EXTERN void ct_line_receiver_init(ct_line_receiver *lr,
                                     const ct_line_receiver_ops *ops);

/**
 * Change this receiver's delimiter (copied).  Returns 0, or CT_EINVAL for
 * an empty or over-long delimiter.  Takes effect for the next bytes parsed.
 */
CT_EXTERN int ct_line_receiver_set_delimiter(ct_line_receiver *lr,
                                             const char *delim, size_t len);

/** Change the maximum line length (0: the default).  Returns 0 or
 *  CT_EINVAL (over CT_BASIC_MAX_LENGTH_LIMIT). */
CT_EXTERN int ct_line_receiver_set_max_length(ct_line_receiver *lr,
                                              size_t max_length);

/**
 * Switch to raw mode (Twisted's setRawMode): the rest of the current chunk
 * and every later byte go to raw_data_received.  May be called from
 * line_received: the bytes after the current line's delimiter are the
 * first raw bytes.
 */
CT_EXTERN void ct_line_receiver_set_raw_mode(ct_line_receiver *lr);

/**
 * Switch back to line mode (Twisted's setLineMode): `extra` (may be NULL
 * when len is 0), typically the unused tail of a raw chunk, is parsed for
 * lines before any later bytes.  From inside raw_data_received it is
 * parsed right after the callback returns; from outside a callback it is
 * parsed at once.  Do not pass extra bytes from inside line_received.
 */
CT_EXTERN void ct_line_receiver_set_line_mode(ct_line_receiver *lr,
                                              const char *extra, size_t len);

/** 1 in raw mode, 0 in line mode. */
CT_EXTERN int ct_line_receiver_is_raw(const ct_line_receiver *lr);

/**
 * Send `line` followed by the delimiter (one writev).  The line is not
 * checked for delimiters or length.  Returns ct_transport_writev()'s
 * result, or CT_ECLOSED when not connected.
 */
CT_EXTERN int ct_line_receiver_send_line(ct_line_receiver *lr, const char *line,
                                         size_t len);

/**
 * Stop delivering lines (Twisted's pauseProducing): pauses reading on the
 * transport, and bytes already received are held until
 * ct_line_receiver_resume().  Idempotent.
 */
CT_EXTERN void ct_line_receiver_pause(ct_line_receiver *lr);

/** Resume delivery: held lines are delivered at once (or, from inside a
 *  callback, after it returns), then reading resumes. */
CT_EXTERN void ct_line_receiver_resume(ct_line_receiver *lr);

/** The bad-input failure (borrowed), or NULL. */
CT_EXTERN const ct_failure *
ct_line_receiver_failure(const ct_line_receiver *lr);

/* ============================================================= netstring */

typedef struct ct_netstring_receiver ct_netstring_receiver;

/** A netstring receiver's operations; fill `base` with
 *  CT_NETSTRING_RECEIVER_BASE().  Every callback is optional. */
typedef struct ct_netstring_receiver_ops {
  ct_protocol_ops base;
  /** Longest accepted payload (0: 99999). */
  size_t max_length;
  void (*connection_made)(ct_netstring_receiver *nr);
  /** A complete netstring's payload (borrowed). */
  void (*string_received)(ct_netstring_receiver *nr, const char *s, size_t len);
  int (*eof_received)(ct_netstring_receiver *nr);
  /** As ct_line_receiver_ops.connection_lost. */
  void (*connection_lost)(ct_netstring_receiver *nr, const ct_failure *reason);
  void (*free)(ct_netstring_receiver *nr);
  /** Frame-completion deadline (zero-filled: the defaults, see
   *  ct_frame_deadline). */
  ct_frame_deadline frame_deadline;
} ct_netstring_receiver_ops;

/**
 * A netstring receiver (`LEN:DATA,`, http://cr.yp.to/proto/netstrings.txt).
 * Parsing is strict; each of these closes the connection with a failure:
 *  - CT_EPARSE "netstring does not start with a length": a non-digit where
 *    a length must start;
 *  - CT_EPARSE "netstring length has a leading zero" ("01:a,");
 *  - CT_EPARSE "netstring length is not followed by ':'";
 *  - CT_ETOOBIG "netstring length N is over the limit of M bytes"
 *    (detected as soon as the digits exceed the limit);
 *  - CT_EPARSE "netstring is not terminated by a comma".
 */
struct ct_netstring_receiver {
  ct_protocol base;
  size_t max_length;
  ct_basic_state st;
};

/** Protocol entry points used by CT_NETSTRING_RECEIVER_BASE (not for direct
 *  use). */
CT_EXTERN void ct_netstring_receiver_proto_made(ct_protocol *p,
                                                ct_transport *t);
CT_EXTERN void ct_netstring_receiver_proto_data(ct_protocol *p,
                                                const char *data, size_t len);
CT_EXTERN int ct_netstring_receiver_proto_eof(ct_protocol *p);
CT_EXTERN void ct_netstring_receiver_proto_lost(ct_protocol *p,
                                                const ct_failure *reason);
CT_EXTERN void ct_netstring_receiver_proto_free(ct_protocol *p);

/** Designated initialiser of ct_netstring_receiver_ops.base. */
#define CT_NETSTRING_RECEIVER_BASE(name_, flags_)                              \
  .base = {.name = (name_),                                                    \
           .flags = (flags_),                                                  \
           .connection_made = ct_netstring_receiver_proto_made,                \
           .data_received = ct_netstring_receiver_proto_data,                  \
           .eof_received = ct_netstring_receiver_proto_eof,                    \
           .connection_lost = ct_netstring_receiver_proto_lost,                \
           .free = ct_netstring_receiver_proto_free}

/** Initialise an embedded netstring receiver (see ct_line_receiver_init). */
CT_EXTERN void ct_netstring_receiver_init(ct_netstring_receiver *nr,
                                          const ct_netstring_receiver_ops *ops);

/** Change the maximum payload length (0: default).  Returns 0 or
 *  CT_EINVAL. */
CT_EXTERN int ct_netstring_receiver_set_max_length(ct_netstring_receiver *nr,
                                                   size_t max_length);

/** Send `len` bytes as one netstring (one writev).  Returns the
 *  transport's result or CT_ECLOSED when not connected. */
CT_EXTERN int ct_netstring_receiver_send_string(ct_netstring_receiver *nr,
                                                const char *s, size_t len);

/** Pause / resume delivery, as ct_line_receiver_pause/resume. */
CT_EXTERN void ct_netstring_receiver_pause(ct_netstring_receiver *nr);
CT_EXTERN void ct_netstring_receiver_resume(ct_netstring_receiver *nr);

/** The bad-input failure (borrowed), or NULL. */
CT_EXTERN const ct_failure *
ct_netstring_receiver_failure(const ct_netstring_receiver *nr);

/* =============================================== int8/16/32 prefixed */

typedef struct ct_intn_receiver ct_intn_receiver;

/** An int-prefixed string receiver's operations; fill `base` (and the
 *  prefix size) with CT_INT8/16/32_RECEIVER_BASE(). */
typedef struct ct_intn_receiver_ops {
  ct_protocol_ops base;
  /** Prefix size in bytes: 1, 2 or 4 (set by the BASE macros). */
  unsigned prefix_bytes;
  /** Longest accepted string (0: 99999). */
  size_t max_length;
  void (*connection_made)(ct_intn_receiver *ir);
  /** A complete string, prefix removed (borrowed). */
  void (*string_received)(ct_intn_receiver *ir, const char *s, size_t len);
  /**
   * A prefix announced `length` > max_length (Twisted's
   * lengthLimitExceeded).  A notification: afterwards the connection is
   * always closed with a CT_ETOOBIG failure, since the stream cannot be
   * resynchronised.
   */
  void (*length_limit_exceeded)(ct_intn_receiver *ir, uint64_t length);
  int (*eof_received)(ct_intn_receiver *ir);
  /** As ct_line_receiver_ops.connection_lost. */
  void (*connection_lost)(ct_intn_receiver *ir, const ct_failure *reason);
  void (*free)(ct_intn_receiver *ir);
  /** Frame-completion deadline (zero-filled: the defaults, see
   *  ct_frame_deadline). */
  ct_frame_deadline frame_deadline;
} ct_intn_receiver_ops;

/**
 * A receiver of strings prefixed by their length as a 1, 2 or 4 byte
 * big-endian unsigned integer (Twisted's Int8/Int16/Int32StringReceiver).
 * A prefix over the limit closes the connection with CT_ETOOBIG
 * "int32 string length N is over the limit of M bytes".
 */
struct ct_intn_receiver {
  ct_protocol base;
  size_t max_length;
  ct_basic_state st;
};

/** Protocol entry points used by CT_INT8/16/32_RECEIVER_BASE (not for direct
 *  use). */
CT_EXTERN void ct_intn_receiver_proto_made(ct_protocol *p, ct_transport *t);
CT_EXTERN void ct_intn_receiver_proto_data(ct_protocol *p, const char *data,
                                           size_t len);
CT_EXTERN int ct_intn_receiver_proto_eof(ct_protocol *p);
CT_EXTERN void ct_intn_receiver_proto_lost(ct_protocol *p,
                                           const ct_failure *reason);
CT_EXTERN void ct_intn_receiver_proto_free(ct_protocol *p);

/** Designated initialisers of ct_intn_receiver_ops (base + prefix size). */
#define CT_INTN_RECEIVER_BASE_(name_, flags_, bytes_)                          \
  .base = {.name = (name_),                                                    \
           .flags = (flags_),                                                  \
           .connection_made = ct_intn_receiver_proto_made,                     \
           .data_received = ct_intn_receiver_proto_data,                       \
           .eof_received = ct_intn_receiver_proto_eof,                         \
           .connection_lost = ct_intn_receiver_proto_lost,                     \
           .free = ct_intn_receiver_proto_free},                               \
  .prefix_bytes = (bytes_)
#define CT_INT8_RECEIVER_BASE(name_, flags_)                                   \
  CT_INTN_RECEIVER_BASE_(name_, flags_, 1)
#define CT_INT16_RECEIVER_BASE(name_, flags_)                                  \
  CT_INTN_RECEIVER_BASE_(name_, flags_, 2)
#define CT_INT32_RECEIVER_BASE(name_, flags_)                                  \
  CT_INTN_RECEIVER_BASE_(name_, flags_, 4)

/** Initialise an embedded intN receiver (see ct_line_receiver_init). */
CT_EXTERN void ct_intn_receiver_init(ct_intn_receiver *ir,
                                     const ct_intn_receiver_ops *ops);

/** Change the maximum string length (0: default).  Returns 0 or
 *  CT_EINVAL. */
CT_EXTERN int ct_intn_receiver_set_max_length(ct_intn_receiver *ir,
                                              size_t max_length);

/**
 * Send `len` bytes prefixed by their length (one writev).  Returns the
 * transport's result, CT_EMSGSIZE when `len` does not fit the prefix
 * (>= 2^(8*prefix_bytes), Twisted's StringTooLongError; nothing is sent),
 * or CT_ECLOSED when not connected.
 */
CT_EXTERN int ct_intn_receiver_send_string(ct_intn_receiver *ir, const char *s,
                                           size_t len);

/** Pause / resume delivery, as ct_line_receiver_pause/resume. */
CT_EXTERN void ct_intn_receiver_pause(ct_intn_receiver *ir);
CT_EXTERN void ct_intn_receiver_resume(ct_intn_receiver *ir);

/** The bad-input failure (borrowed), or NULL. */
CT_EXTERN const ct_failure *
ct_intn_receiver_failure(const ct_intn_receiver *ir);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_BASIC_H */
