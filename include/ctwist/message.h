/**
 * @file message.h
 * @brief The header+content message protocol (the seed's socket module):
 *        headers, frame encoding, an incremental decoder, messengers, a
 *        message server and a multi-connection message client.
 *
 * ## Wire format (docs/message-protocol.md)
 * @code
 *   u32 big-endian H | H bytes: header, a UTF-8 JSON object | C bytes: content
 * @endcode
 * Header values are strings or integers.  When the content is not empty the
 * sender writes `"content-length": C` into the header itself: a header
 * without `content-length` (or with 0) has no content.  An empty header is
 * `{}`.  Users never set `content-length`: the setters refuse the key
 * (CT_EINVAL) and the encoder always replaces any value a header carries
 * (for instance a received header sent back) by the real content length,
 * or drops it for empty content.
 *
 * ## Limits and errors
 * Each server/client (each decoder) has limits: header <= 64 KiB and
 * content <= 16 MiB by default.  A frame over a limit (CT_ETOOBIG), or a
 * header that is not valid UTF-8 JSON, is not an object, has a value that
 * is neither a string nor an integer, or whose `content-length` is not a
 * non-negative integer (CT_EPROTO), fails the decoder with a ct_failure in
 * the "message" domain whose message names the problem.  A messenger then
 * logs it and answers the peer in order: the replies to the frames that
 * came before the bad bytes (even in the same read), then one error frame
 * `{"type":"error","code":"EPROTO","message":"..."}` (code: the ct_err
 * name, EPROTO, ETOOBIG, ETIMEDOUT...), then a close that flushes them
 * (on_close gets that failure).  A peer that is not reading (output above
 * the high watermark) is aborted instead, and one that has not read them after
 * CT_ERROR_CLOSE_TIMEOUT (10 s) too.  Other connections are untouched.
 *
 * Each length is checked before anything is buffered, and the buffer of a
 * split part grows as its bytes arrive (a header announcing 16 MiB of
 * content reserves nothing until the content comes); buffers of 128 KiB or
 * more are private mappings, returned to the system when their frame is
 * done.
 *
 * ## Slow peers
 * A frame that has started must complete within a deadline (default 20 s
 * from its first byte plus 1 s per 500 bytes received; see
 * ct_msg_options.frame_deadline and ct_frame_deadline).  A late frame is a
 * protocol error as above, with code ETIMEDOUT.
 *
 * ## Messengers and lifetime
 * A messenger is one connection.  It is created by a server or a client,
 * and handed to callbacks as a borrowed pointer valid until on_close
 * returns.  Code that keeps one longer takes a reference
 * (ct_messenger_ref()/ct_messenger_unref()); operations on a closed
 * messenger return CT_ECLOSED and never crash.
 *
 * Not thread-safe: use everything on its reactor's thread.
 */
#ifndef CTWIST_MESSAGE_H
#define CTWIST_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include "ctwist/deferred.h"
#include "ctwist/error.h"
#include "ctwist/policies.h"
#include "ctwist/reactor.h"
#include "ctwist/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Default largest header (bytes of JSON). */
#define CT_MSG_MAX_HEADER_DEFAULT (64u * 1024u)
/** Default largest content (bytes). */
#define CT_MSG_MAX_CONTENT_DEFAULT (16u * 1024u * 1024u)
/** The key the sender fills in; reserved. */
#define CT_MSG_CONTENT_LENGTH "content-length"

/* ------------------------------------------------------------------ header */

/**
 * A message header: a JSON object whose values are strings or integers
 * (a jansson `json_t` object inside).  Reference counted: ct_msg_header_new()
 * gives one reference, ct_msg_header_ref() adds one, ct_msg_header_free()
 * drops one.
 *
 * Read-only headers: the setters and ct_msg_header_remove() return
 * CT_ESTATE for
 *   - every received header (an explicit flag, whatever its size or the
 *     number of references: the decoder hands the same object out again
 *     for a frame with identical header bytes), and
 *   - a header of your own while it has more than one reference (shared).
 * To change a received header, modify a ct_msg_header_copy(), which is
 * writable.
 */
typedef struct ct_msg_header ct_msg_header;

/** Create an empty header (`{}`).  Returns NULL if memory runs out. */
CT_EXTERN ct_msg_header *ct_msg_header_new(void);

/** Take a reference (e.g. to keep a header received in on_message).
 *  Returns `h`. */
CT_EXTERN ct_msg_header *ct_msg_header_ref(ct_msg_header *h);

/** Drop a reference; the last one frees the header.  NULL is a no-op. */
CT_EXTERN void ct_msg_header_free(ct_msg_header *h);

/** A deep copy with one reference, or NULL if memory runs out. */
CT_EXTERN ct_msg_header *ct_msg_header_copy(const ct_msg_header *h);

/**
 * Set `key` to a string value (both copied; both must be valid UTF-8
 * without NUL).  Returns 0, CT_EINVAL (NULL argument, invalid UTF-8, or the
 * reserved key "content-length"), CT_ESTATE (shared header) or CT_ENOMEM.
 */
CT_EXTERN int ct_msg_header_set_str(ct_msg_header *h, const char *key,
                                    const char *value);

/** Set `key` to an integer value.  Returns 0, CT_EINVAL (as above),
 *  CT_ESTATE or CT_ENOMEM. */
CT_EXTERN int ct_msg_header_set_int(ct_msg_header *h, const char *key,
                                    int64_t value);

/**
 * Get a string value: `*out` is borrowed from the header (valid while the
 * header lives and the key is not changed).  Returns 0, CT_ENOTFOUND (no
 * such key) or CT_EINVAL (the value is not a string, or NULL argument).
 */
CT_EXTERN int ct_msg_header_get_str(const ct_msg_header *h, const char *key,
                                    const char **out);

/** Get an integer value.  Returns 0, CT_ENOTFOUND or CT_EINVAL (not an
 *  integer, or NULL argument). */
CT_EXTERN int ct_msg_header_get_int(const ct_msg_header *h, const char *key,
                                    int64_t *out);

/** Remove `key`.  Returns 0, CT_ENOTFOUND or CT_ESTATE (shared). */
CT_EXTERN int ct_msg_header_remove(ct_msg_header *h, const char *key);

/** Number of keys. */
CT_EXTERN size_t ct_msg_header_count(const ct_msg_header *h);

/** One header entry, filled by ct_msg_header_next(); borrowed pointers. */
typedef struct ct_msg_header_entry {
  const char *key;
  int is_int;      /**< 1: `num` is set; 0: `str` is set */
  const char *str; /**< the string value, or NULL */
  int64_t num;     /**< the integer value */
} ct_msg_header_entry;

/** Iterator state: zero-fill to start. */
typedef struct ct_msg_header_iter {
  void *pos;
  int started;
} ct_msg_header_iter;

/**
 * Iterate in insertion order:
 * @code
 *   ct_msg_header_iter it = {0}; ct_msg_header_entry e;
 *   while (ct_msg_header_next(h, &it, &e)) printf("%s\n", e.key);
 * @endcode
 * Returns 1 with `*out` filled, 0 at the end.  Do not modify the header
 * while iterating.
 */
CT_EXTERN int ct_msg_header_next(const ct_msg_header *h, ct_msg_header_iter *it,
                                 ct_msg_header_entry *out);

/* ---------------------------------------------------------------- encoding */

/**
 * Encode one frame into a new buffer: `*out` (malloc'd, the caller frees
 * it) of `*out_len` bytes.  `h` may be NULL (`{}`); content-length is set
 * from `len` as described above.  Returns 0, CT_EINVAL, CT_ETOOBIG (header
 * over 4 GiB) or CT_ENOMEM.
 */
CT_EXTERN int ct_msg_encode(const ct_msg_header *h, const void *content,
                            size_t len, char **out, size_t *out_len);

/* ----------------------------------------------------------------- decoder */

/** Per-factory limits; zero members mean the defaults. */
typedef struct ct_msg_limits {
  size_t max_header;  /**< largest header H (default 64 KiB) */
  size_t max_content; /**< largest content C (default 16 MiB) */
} ct_msg_limits;

/**
 * A complete frame.  `h` and `content` are borrowed for the call (take a
 * header reference or copy the content to keep them); `content` is NULL
 * when `len` is 0.  Return 0 to go on, non-zero to stop decoding (the rest
 * of the input is dropped and feed() returns 1).
 */
typedef int (*ct_msg_frame_cb)(void *arg, const ct_msg_header *h,
                               const char *content, size_t len);

/** An incremental frame decoder. */
typedef struct ct_msg_decoder ct_msg_decoder;

/** Create a decoder calling `cb` per frame.  `limits` is copied (NULL:
 *  defaults).  Returns NULL if memory runs out. */
CT_EXTERN ct_msg_decoder *ct_msg_decoder_new(const ct_msg_limits *limits,
                                             ct_msg_frame_cb cb, void *arg);

/**
 * Feed bytes, in chunks of any size (down to one byte).  Frames complete in
 * `data` are delivered without copying.  Returns 0, 1 if the callback asked
 * to stop, or a negative ct_err after a protocol error, with `*err` (if
 * non-NULL) set to a failure the caller owns; the decoder is then failed and
 * every later feed returns CT_ESTATE.
 */
CT_EXTERN int ct_msg_decoder_feed(ct_msg_decoder *d, const void *data,
                                  size_t len, ct_failure **err);

/** Bytes of an incomplete frame held by the decoder. */
CT_EXTERN size_t ct_msg_decoder_buffered(const ct_msg_decoder *d);

/** Free a decoder.  NULL is a no-op.  Not from inside its callback. */
CT_EXTERN void ct_msg_decoder_free(ct_msg_decoder *d);

/* --------------------------------------------------------------- messenger */

/** One message connection (the seed's Messenger). */
typedef struct ct_messenger ct_messenger;

/**
 * Send one message: header `h` (may be NULL for `{}`; not modified, not
 * kept) and `len` bytes of `content` (copied or sent at once, may be NULL
 * when len is 0).  The frame goes to the transport, which gathers the
 * writes of one dispatch into one send() and flushes writes made from
 * elsewhere before the reactor next waits (docs/transports.md); content of
 * 16 KiB or more leaves without a copy unless the peer's socket is full.
 * What the peer does not read stays queued in its transport, bounded by
 * the slow-consumer limits (ct_transport_set_output_limits(): a peer
 * that falls too far behind is closed with CT_ESLOWCONSUMER).  Updates the
 * send time.
 *
 * Returns 0; CT_EINVAL (bad argument, or header or content over the limits
 * of the messenger's server/client: nothing is sent, the connection stays
 * open); CT_ECLOSED if the connection is closed or
 * closing, or CT_ENOMEM: then the connection is aborted (if still open),
 * the problem logged (module "message") and on_close follows.  Never
 * crashes on a dead connection as long as the caller holds a reference or
 * is inside a callback of that messenger.
 */
CT_EXTERN int ct_messenger_send(ct_messenger *m, const ct_msg_header *h,
                                const void *content, size_t len);

/**
 * ct_messenger_send() with shared content: the transport queues a
 * reference on `content` (the caller keeps its own) instead of a copy, so
 * one ct_bytes can go to many messengers.  Same returns; CT_EINVAL for a
 * NULL `content`.
 */
CT_EXTERN int ct_messenger_send_bytes(ct_messenger *m, const ct_msg_header *h,
                                      ct_bytes *content);

/** Close after pending output was written (on_close follows later).
 *  Returns 0 or CT_ECLOSED. */
CT_EXTERN int ct_messenger_close(ct_messenger *m);

/** Close now, dropping pending output.  Returns 0 or CT_ECLOSED. */
CT_EXTERN int ct_messenger_abort(ct_messenger *m);

/** 1 while the connection is open (not closing or closed). */
CT_EXTERN int ct_messenger_is_open(const ct_messenger *m);

/** Unique id of the messenger within its server or client (1, 2, ...). */
CT_EXTERN uint64_t ct_messenger_id(const ct_messenger *m);

/** The peer's address (for a client: the server's), captured when
 *  connected; borrowed from `m`. */
CT_EXTERN const ct_address *ct_messenger_peer(const ct_messenger *m);

/** The peer address formatted ("127.0.0.1:8000"); borrowed from `m`. */
CT_EXTERN const char *ct_messenger_peer_str(const ct_messenger *m);

/** Reactor time (ct_reactor_seconds) of the last complete message
 *  received, or of the connection if none yet. */
CT_EXTERN double ct_messenger_recv_time(const ct_messenger *m);

/** Reactor time of the last successful send, or of the connection. */
CT_EXTERN double ct_messenger_send_time(const ct_messenger *m);

/** Messages received / sent so far. */
CT_EXTERN uint64_t ct_messenger_received(const ct_messenger *m);
CT_EXTERN uint64_t ct_messenger_sent(const ct_messenger *m);

/** The transport while open, else NULL (borrowed). */
CT_EXTERN ct_transport *ct_messenger_transport(const ct_messenger *m);

/** The user's per-messenger pointer (NULL initially). */
CT_EXTERN void ct_messenger_set_user(ct_messenger *m, void *user);
CT_EXTERN void *ct_messenger_user(const ct_messenger *m);

/** Take a reference to keep `m` beyond on_close.  Returns `m`. */
CT_EXTERN ct_messenger *ct_messenger_ref(ct_messenger *m);

/** Drop a reference taken with ct_messenger_ref().  NULL is a no-op. */
CT_EXTERN void ct_messenger_unref(ct_messenger *m);

/* --------------------------------------------------------------- callbacks */

/**
 * Callbacks of a server or client; every member is optional.  `m` is
 * borrowed; `h` and `content` as in ct_msg_frame_cb.
 */
typedef struct ct_msg_callbacks {
  /** A connection is up (server: a client connected; client: a
   *  connection succeeded -- the seed's on_connected). */
  void (*on_connect)(ct_messenger *m, void *arg);
  /** A complete message arrived. */
  void (*on_message)(ct_messenger *m, const ct_msg_header *h,
                     const char *content, size_t len, void *arg);
  /** A connection ended; `alive` connections remain; `reason` borrowed
   *  (CT_ECONNDONE for a clean close, the protocol error, ...). */
  void (*on_close)(ct_messenger *m, size_t alive, const ct_failure *reason,
                   void *arg);
  /** Client only: connecting to `endpoint` failed (`reason` borrowed). */
  void (*on_connect_failed)(const char *endpoint, const ct_failure *reason,
                            void *arg);
  void *arg;
} ct_msg_callbacks;

/** Options of a server or client; zero-fill for the defaults. */
typedef struct ct_msg_options {
  ct_msg_limits limits;
  /** Output watermarks of each connection (0: transport defaults). */
  size_t write_high_water, write_low_water;
  /** Set TCP_NODELAY on TCP connections (1 recommended). */
  int no_delay;
  /** Frame-completion deadline of each connection (zero-filled: 20 s plus
   *  1 s per 500 bytes received, see ct_frame_deadline in policies.h). */
  ct_frame_deadline frame_deadline;
} ct_msg_options;

/* ------------------------------------------------------------------ server */

/** A message server: a listening port and its live messengers. */
typedef struct ct_msg_server ct_msg_server;

/**
 * Listen on server endpoint `endpoint` (see ct_listen()).  `cb` and `opts`
 * are copied (may be NULL).  Returns NULL with `*err` (if non-NULL) set on
 * failure.  Free with ct_msg_server_free().
 */
CT_EXTERN ct_msg_server *ct_msg_server_listen(ct_reactor *r,
                                              const char *endpoint,
                                              const ct_msg_callbacks *cb,
                                              const ct_msg_options *opts,
                                              ct_failure **err);

/**
 * Create a server without a listening port: its messengers are built by
 * ct_msg_server_factory() (for tests on the in-memory transports of
 * testing.h, or for ports the caller opens with ct_listen(), which it must
 * stop before ct_msg_server_free()).  Returns NULL if memory runs out.
 */
CT_EXTERN ct_msg_server *ct_msg_server_new(ct_reactor *r,
                                           const ct_msg_callbacks *cb,
                                           const ct_msg_options *opts);

/**
 * The factory building this server's messengers (borrowed; it lives until
 * the server is freed and its last connection is gone).
 */
CT_EXTERN ct_factory *ct_msg_server_factory(ct_msg_server *s);

/**
 * The server whose factory is `f` (as returned by ct_msg_server_factory()),
 * or NULL if `f` is not a live message server's factory.  Lets code that
 * only kept the factory (a ctwistd plugin's destroy) free the server.
 */
CT_EXTERN ct_msg_server *ct_msg_server_of_factory(ct_factory *f);

/** The server that accepted `m`, or NULL (a client's messenger, or the
 *  server was freed). */
CT_EXTERN ct_msg_server *ct_messenger_server(const ct_messenger *m);

/** The bound address (port 0 resolved).  Returns 0 or CT_ECLOSED. */
CT_EXTERN int ct_msg_server_address(const ct_msg_server *s, ct_address *out);

/** The bound port (-1 for Unix sockets or after stopping). */
CT_EXTERN int ct_msg_server_port(const ct_msg_server *s);

/** Live messengers. */
CT_EXTERN size_t ct_msg_server_count(const ct_msg_server *s);

/** Copy up to `max` live messengers (borrowed) into `out`, oldest first;
 *  returns how many exist. */
CT_EXTERN size_t ct_msg_server_messengers(const ct_msg_server *s,
                                          ct_messenger **out, size_t max);

/** Send to every live messenger.  The header is encoded once, and content
 *  of 4 KiB or more is copied once and shared by every recipient (one
 *  ct_bytes), so a slow reader holds a reference, not a copy.  Returns
 *  how many sends succeeded; a failed send closes that connection. */
CT_EXTERN size_t ct_msg_server_broadcast(ct_msg_server *s,
                                         const ct_msg_header *h,
                                         const void *content, size_t len);

/** Send to each of `n` messengers (of this server) in `list`.  Returns how
 *  many sends succeeded. */
CT_EXTERN size_t ct_msg_server_multicast(ct_msg_server *s,
                                         ct_messenger *const *list, size_t n,
                                         const ct_msg_header *h,
                                         const void *content, size_t len);

/** Send to one messenger of this server (ct_messenger_send(), plus
 *  CT_EINVAL if `m` is not one of its own). */
CT_EXTERN int ct_msg_server_send(ct_msg_server *s, ct_messenger *m,
                                 const ct_msg_header *h, const void *content,
                                 size_t len);

/**
 * Stop listening and close every connection (pending output is flushed);
 * no callback runs after this call.  Messengers still referenced stay
 * valid (closed).  NULL is a no-op.
 */
CT_EXTERN void ct_msg_server_free(ct_msg_server *s);

/* ------------------------------------------------------------------ client */

/** A message client keeping several connections. */
typedef struct ct_msg_client ct_msg_client;

/** Create a client (no connection yet).  `cb` and `opts` are copied (may
 *  be NULL).  Returns NULL if memory runs out. */
CT_EXTERN ct_msg_client *ct_msg_client_new(ct_reactor *r,
                                           const ct_msg_callbacks *cb,
                                           const ct_msg_options *opts);

/**
 * Connect to client endpoint `endpoint` (see ct_connect(), e.g.
 * "tcp:127.0.0.1:8000").  on_connect or on_connect_failed runs later; the
 * returned Deferred (one reference for the caller) fires after it with
 * `ct_value_of(messenger, NULL)` (borrowed, valid until its on_close), or
 * errbacks with the failure.  Returns NULL if memory runs out.
 */
CT_EXTERN ct_deferred *ct_msg_client_add_connection(ct_msg_client *c,
                                                    const char *endpoint);

/** ct_msg_client_add_connection() for callback users: no Deferred.
 *  Returns 0 or CT_ENOMEM / CT_EINVAL. */
CT_EXTERN int ct_msg_client_connect(ct_msg_client *c, const char *endpoint);

/** The factory building this client's messengers (as
 *  ct_msg_server_factory(), e.g. for ct_pump_connect_factories()). */
CT_EXTERN ct_factory *ct_msg_client_factory(ct_msg_client *c);

/** Live connections. */
CT_EXTERN size_t ct_msg_client_count(const ct_msg_client *c);

/** As ct_msg_server_messengers(). */
CT_EXTERN size_t ct_msg_client_messengers(const ct_msg_client *c,
                                          ct_messenger **out, size_t max);

/** Send on every live connection; returns how many succeeded. */
CT_EXTERN size_t ct_msg_client_broadcast(ct_msg_client *c,
                                         const ct_msg_header *h,
                                         const void *content, size_t len);

/** Send on each of `n` messengers (of this client). */
CT_EXTERN size_t ct_msg_client_multicast(ct_msg_client *c,
                                         ct_messenger *const *list, size_t n,
                                         const ct_msg_header *h,
                                         const void *content, size_t len);

/** Send on one messenger of this client (CT_EINVAL if not its own). */
CT_EXTERN int ct_msg_client_send(ct_msg_client *c, ct_messenger *m,
                                 const ct_msg_header *h, const void *content,
                                 size_t len);

/**
 * Cancel pending connection attempts (their Deferreds errback with
 * CT_ECANCELLED; on_connect_failed is not called) and close every
 * connection; no callback runs after this call.  NULL is a no-op.
 */
CT_EXTERN void ct_msg_client_free(ct_msg_client *c);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_MESSAGE_H */
