/**
 * @file http.h
 * @brief HTTP/1.1 as ctwist protocols: a server with a request-handler API
 *        (twisted.web.resource / BaseHTTPRequestHandler), static files
 *        (twisted.web.static.File / SimpleHTTPServer) and JSON helpers.
 *
 * Requests are parsed by Debian's libhttp-parser (the parser Node.js used
 * for years).  A *site* routes path prefixes to handlers and builds the
 * factory that listens:
 *
 * @code
 *   static ct_http_reply hello(ct_http_request *req, void *arg) {
 *     ct_http_response *resp = ct_http_response_new(200);
 *     ct_http_response_set_body(resp, "hello\n", 6);
 *     ct_http_headers_set(&resp->headers, "Content-Type", "text/plain");
 *     return ct_http_reply_now(resp);
 *   }
 *   ct_http_site *site = ct_http_site_new(reactor);
 *   ct_http_site_route(site, "/hello", hello, NULL);
 *   ct_listen(reactor, "tcp:8080", ct_http_site_factory(site), &err);
 * @endcode
 *
 * ## What the server does for every handler
 * - HTTP/1.0 and 1.1, keep-alive, pipelining (responses leave in request
 *   order however the handlers finish), `Expect: 100-continue`, chunked
 *   request bodies (decoded before the handler sees them), request bodies
 *   buffered up to a limit or streamed to the handler with back-pressure
 *   (ct_http_site_route_stream());
 * - responses with Content-Length when the body length is known, chunked
 *   (HTTP/1.1) or close-delimited (HTTP/1.0) otherwise; no body for HEAD,
 *   1xx, 204 and 304;
 * - conditional GET: a 200 response to GET/HEAD carrying an `ETag` or
 *   `Last-Modified` header becomes 304 when the request's `If-None-Match`
 *   or `If-Modified-Since` matches;
 * - a single `Range: bytes=...` on a 200 GET response whose body length is
 *   known becomes 206 (416 when unsatisfiable); several ranges get the
 *   whole body (RFC 9110 allows ignoring Range);
 * - limits, each with its status page, the connection closed afterwards
 *   and every other connection untouched: a header line over
 *   `max_header_line` or all headers over `max_header_total` -> 431, a
 *   request target over `max_header_line` -> 414, a body over `max_body`
 *   -> 413 (before reading it, when Content-Length says so), headers not
 *   complete `header_timeout` seconds after the request's first byte
 *   (slow-loris) -> 408, malformed requests -> 400, HTTP/2+ -> 505,
 *   `Expect` other than 100-continue -> 417;
 * - a handler failure is logged with its ct_failure and answered 500;
 *   the connection survives.
 * Timers run on the reactor's clock (a fake clock in tests).
 *
 * Not thread-safe: everything runs on the reactor's thread.
 */
#ifndef CTWIST_HTTP_H
#define CTWIST_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "ctwist/deferred.h"
#include "ctwist/error.h"
#include "ctwist/protocol.h"
#include "ctwist/reactor.h"
#include "ctwist/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- headers */

/** One header (or one query parameter): both strings owned by the list. */
typedef struct ct_http_header {
  char *name;
  char *value;
} ct_http_header;

/**
 * An ordered list of headers, duplicates allowed.  Zero-initialise it
 * (`ct_http_headers h = {0};`) and release it with ct_http_headers_clear().
 * Names compare case-insensitively.
 */
typedef struct ct_http_headers {
  ct_http_header *items;
  size_t count, cap;
} ct_http_headers;

/** Append a header (name and value copied).  Returns 0, CT_EINVAL (NULL,
 *  or a CR/LF in either string: no header injection) or CT_ENOMEM. */
CT_EXTERN int ct_http_headers_add(ct_http_headers *h, const char *name,
                                  const char *value);
/** Replace every header called `name` by one with `value`.  Returns as
 *  ct_http_headers_add(). */
CT_EXTERN int ct_http_headers_set(ct_http_headers *h, const char *name,
                                  const char *value);
/** The first value of `name` (borrowed; valid until the list changes),
 *  or NULL. */
CT_EXTERN const char *ct_http_headers_get(const ct_http_headers *h,
                                          const char *name);
/** Remove every header called `name`; returns how many were removed. */
CT_EXTERN size_t ct_http_headers_remove(ct_http_headers *h, const char *name);
/** Free every entry and the array; the list is empty again. */
CT_EXTERN void ct_http_headers_clear(ct_http_headers *h);

/* ---------------------------------------------------------------- request */

/**
 * A parsed request, owned by the server and lent to the handler: it stays
 * valid until the handler's reply is complete (for a Deferred reply, until
 * the Deferred has fired).  Members are read-only.
 */
typedef struct ct_http_request {
  const char *method;      /**< "GET", "POST", ... (static string) */
  char *target;            /**< the request target as sent ("/a%20b?x=1") */
  char *path;              /**< the path, percent-decoded once ("/a b") */
  char *raw_path;          /**< the path as sent ("/a%20b") */
  char *query;             /**< the raw query string ("x=1"), "" if none */
  ct_http_headers params;  /**< the query, split and decoded ('+' = ' ') */
  ct_http_headers headers; /**< request headers, in order */
  /** the body (dechunked; NUL-terminated), never NULL; empty on routes
   *  that stream it (ct_http_site_route_stream()) */
  char *body;
  size_t body_len;
  int version_major, version_minor; /**< 1.1 -> 1, 1 */
  int keep_alive; /**< the connection stays open after this response */
  /** The path after the matched route's prefix, always starting with '/'
   *  (decoded, points into `path` storage; the route "/api" and the path
   *  "/api/users" give "/users"). */
  const char *subpath;
  ct_address peer; /**< the client's address */
  ct_reactor *reactor;
} ct_http_request;

/** The first value of a request header, or NULL. */
CT_EXTERN const char *ct_http_request_header(const ct_http_request *req,
                                             const char *name);
/** The first value of a decoded query parameter, or NULL. */
CT_EXTERN const char *ct_http_request_param(const ct_http_request *req,
                                            const char *name);

/* --------------------------------------------------------------- response */

/**
 * A streamed response body (Twisted's IBodyProducer, pulled): the server
 * calls `read` whenever the connection's output has drained, so memory
 * stays bounded whatever the body's size.  `read` fills up to `cap` bytes
 * of `buf`, sets `*out`, and returns 0 (more may follow; `*out` may be 0
 * only at the end), 1 at the end of the body (with or without final bytes
 * in `*out`), or a negative ct_err (the connection is aborted, since the
 * status line has already left; the failure is logged).  `free` (may be
 * NULL) releases `arg` once, when the body is done or the connection ends.
 */
typedef struct ct_http_body_source {
  int (*read)(void *arg, char *buf, size_t cap, size_t *out);
  void (*free)(void *arg);
  void *arg;
} ct_http_body_source;

/** Kinds of response bodies. */
typedef enum ct_http_body_kind {
  CT_HTTP_BODY_NONE = 0,   /**< empty */
  CT_HTTP_BODY_MEMORY = 1, /**< bytes owned by the response */
  CT_HTTP_BODY_FILE = 2,   /**< a range of an open file, read with pread */
  CT_HTTP_BODY_SOURCE = 3  /**< a ct_http_body_source */
} ct_http_body_kind;

/**
 * A response.  Build it with ct_http_response_new(), set headers and a
 * body, and hand it to the server through a ct_http_reply (the server then
 * owns and frees it).  The server adds Date, Server, Content-Length or
 * Transfer-Encoding and Connection itself.
 */
typedef struct ct_http_response {
  int status;         /**< 200, 404, ... */
  const char *reason; /**< NULL: the standard phrase for `status` */
  ct_http_headers headers;
  ct_http_body_kind body_kind;
  char *data;           /**< MEMORY: owned bytes */
  size_t data_len;      /**< MEMORY */
  int fd;               /**< FILE: owned descriptor, closed by the response */
  off_t file_offset;    /**< FILE */
  uint64_t file_length; /**< FILE */
  ct_http_body_source source; /**< SOURCE */
  /** SOURCE: the body's length if known, else -1 (chunked). */
  int64_t source_length;
} ct_http_response;

/** A new response with `status` and no body.  Returns NULL if memory runs
 *  out. */
CT_EXTERN ct_http_response *ct_http_response_new(int status);
/** Set a memory body (copied).  Returns 0 or CT_ENOMEM. */
CT_EXTERN int ct_http_response_set_body(ct_http_response *r, const void *data,
                                        size_t len);
/** Set a memory body, taking `data` (malloc'ed; freed with free()). */
CT_EXTERN void ct_http_response_take_body(ct_http_response *r, char *data,
                                          size_t len);
/**
 * Set a file body: `length` bytes of `fd` from `offset`, read in bounded
 * chunks with pread as the connection drains.  Takes `fd` (closed with the
 * response, also on error).
 */
CT_EXTERN void ct_http_response_set_file(ct_http_response *r, int fd,
                                         off_t offset, uint64_t length);
/** Set a streamed body; `length` -1 when unknown (sent chunked to HTTP/1.1
 *  clients, close-delimited to HTTP/1.0 ones).  Takes the source. */
CT_EXTERN void ct_http_response_set_source(ct_http_response *r,
                                           ct_http_body_source src,
                                           int64_t length);
/** Free a response that was not handed to the server.  NULL: no-op. */
CT_EXTERN void ct_http_response_free(ct_http_response *r);

/**
 * A ready-made error page: `status` with a small HTML body naming the
 * status and `detail` (may be NULL; HTML-escaped).  NULL if out of memory.
 */
CT_EXTERN ct_http_response *ct_http_response_error(int status,
                                                   const char *detail);
/** A 301/302/307/308 redirect to `location` with a small HTML body. */
CT_EXTERN ct_http_response *ct_http_response_redirect(int status,
                                                      const char *location);

/** The standard reason phrase of a status ("Not Found"), or "Unknown". */
CT_EXTERN const char *ct_http_status_text(int status);

/* ------------------------------------------------------------------ reply */

/**
 * What a handler returns: a response now, a Deferred that will fire with
 * one (`ct_value_of(response, ct_http_response_free)`) or fail, or a
 * failure now.  Build it with the three functions below.
 */
typedef struct ct_http_reply {
  ct_http_response *response;
  ct_deferred *deferred;
  ct_failure *failure;
} ct_http_reply;

/** Reply with `resp` (taken; NULL counts as a failure -> 500). */
CT_EXTERN ct_http_reply ct_http_reply_now(ct_http_response *resp);
/**
 * Reply later: `d` (the caller's reference is taken) fires with a
 * response value or fails (-> 500, logged).  If the connection is lost
 * first, `d` is cancelled; the request stays valid until `d` fires.
 */
CT_EXTERN ct_http_reply ct_http_reply_later(ct_deferred *d);
/** Reply with a failure (taken): logged, answered 500. */
CT_EXTERN ct_http_reply ct_http_reply_fail(ct_failure *f);

/**
 * A request handler.  `req` is lent until the reply completes; `arg` is
 * the route's.  Called on the reactor thread from inside the connection's
 * data_received (or a later turn for pipelined requests).
 */
typedef ct_http_reply (*ct_http_handler_cb)(ct_http_request *req, void *arg);

/* ------------------------------------------------------------------- site */

/** Limits of a site (see the file comment).  Zero fields take defaults. */
typedef struct ct_http_limits {
  size_t max_header_line;  /**< [8 KiB] one header line, or the target */
  size_t max_header_total; /**< [64 KiB] request line plus headers */
  size_t max_body;         /**< [16 MiB] request body, after dechunking */
  double header_timeout;   /**< [20 s] first byte to end of headers */
  double idle_timeout;     /**< [75 s] keep-alive connection with nothing
                                 in progress is closed after this */
  unsigned max_pipeline;   /**< [16] requests queued before reading pauses */
} ct_http_limits;

typedef struct ct_http_site ct_http_site;

/**
 * A new site on `r` (borrowed) with the default limits, no routes (every
 * request gets 404) and no access log.  NULL if memory runs out.
 */
CT_EXTERN ct_http_site *ct_http_site_new(ct_reactor *r);

/**
 * Route requests whose decoded path is `prefix` or starts with `prefix`
 * followed by '/' to `fn(req, arg)` ("/" matches everything).  The longest
 * matching prefix wins.  `prefix` is copied, `arg` borrowed.  Returns 0,
 * CT_EINVAL (prefix not starting with '/') or CT_ENOMEM.
 */
CT_EXTERN int ct_http_site_route(ct_http_site *s, const char *prefix,
                                 ct_http_handler_cb fn, void *arg);

/** Replace the limits (zero fields: defaults). */
CT_EXTERN void ct_http_site_set_limits(ct_http_site *s,
                                       const ct_http_limits *limits);
/** The effective limits (defaults filled in). */
CT_EXTERN void ct_http_site_get_limits(const ct_http_site *s,
                                       ct_http_limits *out);

/**
 * Write a Common Log Format line per response to `out` (borrowed; NULL
 * turns the log off), flushed per line:
 * `127.0.0.1 - - [30/Nov/2026:02:00:00 +0000] "GET / HTTP/1.1" 200 512`.
 * Request lines are escaped (no raw control bytes reach the log).
 */
CT_EXTERN void ct_http_site_set_access_log(ct_http_site *s, FILE *out);

/** The `Server` header value (copied; NULL: none).  Default "ctwist". */
CT_EXTERN int ct_http_site_set_server_name(ct_http_site *s, const char *name);

/**
 * The factory serving this site (owned by the site; pass it to ct_listen()
 * or ct_pump_connect_factories()).  Its protocols opt in to back-pressure.
 */
CT_EXTERN ct_factory *ct_http_site_factory(ct_http_site *s);

/** The user's pointer (NULL until set); for whoever owns the site, e.g. a
 *  plugin finding its state from the factory with ct_http_site_of(). */
CT_EXTERN void ct_http_site_set_user(ct_http_site *s, void *user);
CT_EXTERN void *ct_http_site_user(const ct_http_site *s);
/** The site whose ct_http_site_factory() is `f` (NULL for other
 *  factories). */
CT_EXTERN ct_http_site *ct_http_site_of(ct_factory *f);

/** Live connections of the site's factory (for tests and stats). */
CT_EXTERN size_t ct_http_site_connections(const ct_http_site *s);

/** Requests answered so far (for tests and stats). */
CT_EXTERN unsigned long ct_http_site_requests(const ct_http_site *s);

/**
 * Free the site.  Its factory's connections must be gone (the site must
 * outlive them, like any factory).  NULL is a no-op.
 */
CT_EXTERN void ct_http_site_free(ct_http_site *s);

/* ------------------------------------------------ streamed request bodies */

/**
 * Where a streamed request body goes (Twisted's IBodyConsumer / the
 * protocol given to `Response.deliverBody`, on the server side).
 *
 * - `data` gets each piece of the body (dechunked) as it arrives, borrowed
 *   for the call.  Return 0 to go on.  Returning non-zero refuses the rest
 *   of the body: nothing more is delivered (and `end` is not called), the
 *   server stops reading the connection, answers with the handler's reply
 *   (`Connection: close`) and closes.
 * - `end` is called once: with NULL when the whole body has arrived, or
 *   with a failure (borrowed for the call) when it cannot: CT_ECONNLOST
 *   (the client went away), CT_EPROTO (malformed chunked framing; the
 *   connection closes after the handler's reply).  Nothing is delivered
 *   after it.
 */
typedef struct ct_http_body_consumer {
  int (*data)(void *arg, const char *d, size_t len);
  void (*end)(void *arg, const ct_failure *reason);
  void *arg;
} ct_http_body_consumer;

/**
 * Route like ct_http_site_route(), but for handlers that stream the
 * request body: `fn` is called as soon as the request's headers are
 * complete, with an empty `req->body`, and reads the body (if it wants it)
 * with ct_http_request_read_body().  `max_body` does not apply to these
 * routes (the handler sees `Content-Length` and decides).
 *
 * - Until the handler calls ct_http_request_read_body() nothing of the
 *   body is read from the connection (and `100 Continue` is not sent to a
 *   client that asked for it), so a handler may first check the headers,
 *   asynchronously if it likes.
 * - If the handler replies without reading the body, the body is read and
 *   discarded — unless the client sent `Expect: 100-continue`, in which
 *   case it is not sent the body and the connection closes after the reply.
 * - A reply is written once the whole request body has been read (the
 *   consumer may still be receiving it when the handler replies).
 *
 * Returns as ct_http_site_route().
 */
CT_EXTERN int ct_http_site_route_stream(ct_http_site *s, const char *prefix,
                                        ct_http_handler_cb fn, void *arg);

/**
 * Start receiving the body of `req` (a request of a route added with
 * ct_http_site_route_stream()) through `consumer` (copied).  Sends
 * `100 Continue` when the client asked for it (after the responses owed
 * before it).  May call the consumer before returning (bytes already
 * received; `end` at once for a request without a body).  Call it at most
 * once, from the handler or later while the request is valid.  Returns 0,
 * CT_EINVAL (NULL, not a streamed route, or already called) or CT_ECLOSED
 * (the connection is gone; `end` will not be called).
 */
CT_EXTERN int ct_http_request_read_body(ct_http_request *req,
                                        const ct_http_body_consumer *consumer);

/**
 * Back-pressure for a streamed request body: after
 * ct_http_request_pause_body() no more `data` calls come (not even the
 * rest of the current read) and the server stops reading the connection,
 * so the client's sending blocks and the server holds at most one read's
 * worth of input; ct_http_request_resume_body() delivers what is held
 * (possibly before it returns) and reads again.  Both may be called from
 * inside `data`.  No-ops on requests that are not streaming a body.
 */
CT_EXTERN void ct_http_request_pause_body(ct_http_request *req);
CT_EXTERN void ct_http_request_resume_body(ct_http_request *req);

/* ----------------------------------------------------------- static files */

/** Options of a static-file route; zero-fill for the defaults. */
typedef struct ct_http_static_options {
  /** Serve `index.html` for a directory that has one [on unless set to
   *  -1]. */
  int index_html;
  /** HTML listing of directories without index.html [on unless -1]. */
  int listing;
  /** Follow symbolic links that lead outside the root [0: 403]. */
  int allow_symlinks_out;
  /** The mime.types file to read ["/etc/mime.types"]; a built-in table
   *  covers the common types when it is missing. */
  const char *mime_types;
  /** Open-file cache: a file that passed the checks is kept open with its
   *  headers and served without resolving, stat-ing or opening its path
   *  again for this many seconds of the reactor's clock [0: 1 s; < 0: no
   *  cache].  Within that time a file replaced, removed or turned into a
   *  symbolic link out of the root is still served as it was (the inode
   *  that was checked, never the new target); after it the path is
   *  checked again. */
  double cache_validity;
  /** Files kept open at most [0: 256; < 0: no cache]. */
  int cache_entries;
} ct_http_static_options;

typedef struct ct_http_static ct_http_static;

/**
 * A static file tree rooted at `root` (python -m http.server, Twisted's
 * static.File): GET and HEAD only (others 405), Content-Type from
 * mime.types, ETag and Last-Modified (so conditional GET and Range work),
 * `index.html`, an HTML directory listing, a redirect adding the trailing
 * '/' of a directory.  Traversal is refused: a ".." segment (also when
 * sent %2e%2e-encoded) is 404, the path is decoded exactly once (so
 * "%252e%252e" names a file literally called "%2e%2e"), NUL bytes are 400,
 * and a symbolic link resolving outside the root is 403 unless allowed.
 * Returns NULL with `*err` set when the root is not a readable directory.
 */
CT_EXTERN ct_http_static *ct_http_static_new(const char *root,
                                             const ct_http_static_options *o,
                                             ct_failure **err);
/** The handler serving `st` (pass `st` as the route's arg). */
CT_EXTERN ct_http_reply ct_http_static_handler(ct_http_request *req, void *st);
/** The Content-Type for a file name, from the table `st` loaded
 *  ("application/octet-stream" when unknown). */
CT_EXTERN const char *ct_http_static_mime_type(const ct_http_static *st,
                                               const char *name);
/** Free a static tree (after the site routing to it).  NULL: no-op. */
CT_EXTERN void ct_http_static_free(ct_http_static *st);

/* ------------------------------------------------------------------- JSON */

/**
 * A response with a JSON body (`application/json`): `json` is a jansson
 * `json_t *` whose reference is taken.  NULL when encoding fails or memory
 * runs out.
 */
CT_EXTERN ct_http_response *ct_http_response_json(int status, void *json);

/**
 * Parse the request body as JSON (jansson).  Returns a new `json_t *`
 * reference, or NULL with `*err` set to a CT_EPARSE failure naming the
 * line, column and problem (an empty body is an error too).
 */
CT_EXTERN void *ct_http_request_json(const ct_http_request *req,
                                     ct_failure **err);

/** A JSON error reply `{"error": message}` with `status`. */
CT_EXTERN ct_http_response *ct_http_response_json_error(int status,
                                                        const char *message);

/* ----------------------------------------------------------------- client */

/**
 * An HTTP/1.1 client with a keep-alive connection pool (urllib2, Twisted's
 * Agent with an HTTPConnectionPool).  Requests to the same host:port reuse
 * idle connections; each request has a timeout on the reactor's clock;
 * redirects are followed up to a limit; chunked and close-delimited
 * responses are read; a body can be streamed to a sink instead of being
 * buffered.  `https` URLs fail with CT_ENOSYS until ctwist has TLS.
 * Host names are resolved by ct_connect() (getaddrinfo, which blocks).
 */
typedef struct ct_http_client ct_http_client;

/** Client options; zero-fill for the defaults. */
typedef struct ct_http_client_options {
  int max_redirects;          /**< [5]; -1: do not follow redirects */
  double timeout;             /**< [30 s] per request, redirects included */
  size_t max_body;            /**< [64 MiB] buffered response body */
  unsigned max_idle_per_host; /**< [4] idle connections kept per host */
  double idle_timeout;        /**< [60 s] an idle connection is closed */
  /** Proxy URL "http://host:port".  NULL: from the environment
   *  (`http_proxy`, then `HTTP_PROXY`; hosts in `no_proxy` go direct);
   *  "": no proxy. */
  const char *proxy;
} ct_http_client_options;

/** A response, owned by whoever holds the Deferred's value. */
typedef struct ct_http_client_response {
  int status;
  char *reason;
  int version_minor;
  ct_http_headers headers;
  char *body; /**< NUL-terminated; empty when a sink took the body */
  size_t body_len;
  char *url;     /**< the URL that answered (after redirects) */
  int redirects; /**< redirects followed */
} ct_http_client_response;

/** Free a response.  NULL is a no-op. */
CT_EXTERN void ct_http_client_response_free(ct_http_client_response *r);

/**
 * Where a streamed response body goes (for large downloads): `data` gets
 * each piece of the (dechunked) body as it arrives (borrowed for the
 * call); returning non-zero stops the request, which fails with that code.
 */
typedef struct ct_http_body_sink {
  int (*data)(void *arg, const char *d, size_t len);
  void *arg;
} ct_http_body_sink;

/** One request (for ct_http_client_request_ex()). */
typedef struct ct_http_client_request_options {
  const char *method;             /**< "GET" when NULL */
  const char *url;                /**< "http://host[:port]/path?query" */
  const ct_http_headers *headers; /**< extra headers (copied), or NULL */
  const void *body;               /**< request body (copied), or NULL */
  size_t body_len;
  double timeout;                /**< 0: the client's */
  const ct_http_body_sink *sink; /**< NULL: buffer the body */
} ct_http_client_request_options;

/** A client on `r` (borrowed).  `o` is copied (NULL: defaults).  Returns
 *  NULL if memory runs out. */
CT_EXTERN ct_http_client *ct_http_client_new(ct_reactor *r,
                                             const ct_http_client_options *o);

/**
 * Free the client: requests in flight fail with CT_ECANCELLED (their
 * Deferreds fire during the call) and every connection is aborted; their
 * connection_lost runs on a later loop turn.  NULL: no-op.
 */
CT_EXTERN void ct_http_client_free(ct_http_client *c);

/**
 * ct_http_client_free(), plus a Deferred (one reference for the caller)
 * fired with CT_NONE once every connection of the client is gone, so that
 * a program can turn the loop until then before freeing its reactor.
 * Fired at once when there were none.  NULL only if memory runs out.
 */
CT_EXTERN ct_deferred *ct_http_client_close(ct_http_client *c);

/**
 * Send a request.  Returns a Deferred (one reference for the caller) that
 * fires with `ct_value_of(response, ...)` (a ct_http_client_response,
 * freed by the value's destructor) for any status, or fails: CT_EINVAL
 * (bad URL), CT_ENOSYS (https), CT_ECONNREFUSED and other connect errors,
 * CT_ETIMEDOUT, CT_ETOOBIG (body over max_body, or too many redirects),
 * CT_EPROTO (malformed response), CT_ECONNLOST (closed mid-response),
 * CT_ECANCELLED (ct_deferred_cancel() aborts the request).  303, and 301/
 * 302 after a POST, are followed with GET and no body; 307/308 repeat the
 * method and body.  A request on a reused connection that the server had
 * closed is retried once on a new one.  NULL only if memory runs out.
 */
CT_EXTERN ct_deferred *
ct_http_client_request_ex(ct_http_client *c,
                          const ct_http_client_request_options *o);

/** ct_http_client_request_ex() with the common arguments. */
CT_EXTERN ct_deferred *
ct_http_client_request(ct_http_client *c, const char *method, const char *url,
                       const ct_http_headers *headers, const void *body,
                       size_t body_len);

/** Open connections (idle and busy), for tests and stats. */
CT_EXTERN size_t ct_http_client_connections(const ct_http_client *c);

/* ------------------------------------------------------------------ utils */

/**
 * Percent-decode `len` bytes of `in` into `out` (room for len + 1 bytes,
 * NUL-terminated); `plus_space` turns '+' into ' ' (query strings).
 * Returns the decoded length, or CT_EPARSE for a malformed escape.
 */
CT_EXTERN long ct_http_decode(const char *in, size_t len, char *out,
                              int plus_space);

/** Format `t` (seconds since the epoch) as an IMF-fixdate
 *  ("Sun, 06 Nov 1994 08:49:37 GMT") into `buf` (>= 30 bytes). */
CT_EXTERN void ct_http_format_date(int64_t t, char *buf);
/** Parse an IMF-fixdate (the only form HTTP/1.1 senders must generate).
 *  Returns 0 and sets *out, or CT_EPARSE. */
CT_EXTERN int ct_http_parse_date(const char *s, int64_t *out);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_HTTP_H */
