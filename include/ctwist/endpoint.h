/**
 * @file endpoint.h
 * @brief Twisted-style endpoint description strings, parsed into plain data.
 *
 * An endpoint string names where to listen or where to connect, in the
 * syntax of Twisted's `serverFromString` / `clientFromString`:
 *
 *     tcp:8000:interface=127.0.0.1:backlog=128     (server)
 *     tcp6:8000:interface=\:\:1                    (server, IPv6)
 *     unix:/run/app.sock:mode=660:lockfile=0       (server)
 *     udp:9000:interface=127.0.0.1                 (datagram port)
 *     ssl:8443:privateKey=key.pem:certKey=cert.pem (server, reserved)
 *     tcp:host=example.org:port=80:timeout=5       (client)
 *     tcp:example.org:80                           (client, positional)
 *     unix:path=/run/app.sock                      (client)
 *
 * A description is a list of `:`-separated arguments; the first names the
 * kind.  An argument containing `=` is a keyword argument (`key=value`, the
 * value runs to the next `:` and may itself contain `=`), the others are
 * positional.  A backslash makes the next character literal, so `\:` is a
 * colon inside a value (an IPv6 address: `\:\:1`), `\=` an equals sign and
 * `\\` a backslash -- exactly Twisted's `_tokenize`/`_parse`.
 *
 * Differences from Twisted, all on the strict side: the kind is
 * case-insensitive; an unknown keyword, a keyword given twice or given both
 * positionally and by name is an error (Twisted lets the last one win or
 * raises TypeError); numbers are range-checked.  Extensions: `reuseport=1`
 * on servers (SO_REUSEPORT), `udp:` endpoints, an `@name` unix path for the
 * Linux abstract namespace, and fractional client timeouts.
 *
 * The full grammar, defaults and error messages are in docs/endpoints.md.
 * Nothing here touches the network except ct_endpoint_resolve() on a client
 * host name (a blocking getaddrinfo, see there).
 */
#ifndef CTWIST_ENDPOINT_H
#define CTWIST_ENDPOINT_H

#include <stddef.h>
#include <sys/socket.h>

#include "ctwist/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The kind of an endpoint: the first field of its description. */
typedef enum ct_endpoint_kind {
  CT_ENDPOINT_NONE = 0, /**< a cleared endpoint */
  CT_ENDPOINT_TCP,      /**< `tcp:` TCP; IPv4 unless the address is IPv6 */
  CT_ENDPOINT_TCP6,     /**< `tcp6:` TCP over IPv6 */
  CT_ENDPOINT_UNIX,     /**< `unix:` Unix stream socket */
  CT_ENDPOINT_UDP,      /**< `udp:` datagram port */
  CT_ENDPOINT_SSL       /**< `ssl:` TLS over TCP (parsed; see the TLS module) */
} ct_endpoint_kind;

/** One `key=value` argument as written (unescaped), kept for extensions. */
typedef struct ct_endpoint_param {
  char *key;   /**< owned, NUL-terminated */
  char *value; /**< owned, NUL-terminated, may be empty */
} ct_endpoint_param;

/** Default listen queue length: the system's maximum (SOMAXCONN, 4096 on
 *  Linux, which also caps it at net.core.somaxconn), not Twisted's 50: a
 *  burst of connects must not overflow the queue and wait for SYN
 *  retransmits. */
#define CT_ENDPOINT_DEFAULT_BACKLOG SOMAXCONN
/** Default client connect timeout in seconds (Twisted's). */
#define CT_ENDPOINT_DEFAULT_TIMEOUT 30.0
/** Default unix socket file mode (Twisted's 0666). */
#define CT_ENDPOINT_DEFAULT_MODE 0666
/** Default maximum datagram size for udp endpoints (Twisted's). */
#define CT_ENDPOINT_DEFAULT_MAX_PACKET 8192

/**
 * A parsed endpoint.  Plain data: the caller owns the struct (usually on
 * the stack), the parser fills it, ct_endpoint_clear() frees the strings.
 * Fields not used by a kind keep their defaults.
 */
typedef struct ct_endpoint {
  ct_endpoint_kind kind;
  int is_client; /**< 1 when parsed by ct_endpoint_parse_client() */
  int port;      /**< 0..65535 (servers: 0 = any free port) */
  /** Server: the address to bind (numeric), or NULL for every address
   *  (0.0.0.0, or :: for tcp6).  Unused for clients. */
  char *interface;
  /** Client: the host to connect to (name or numeric address). */
  char *host;
  /** Client: the local address to bind before connecting, or NULL. */
  char *bind_address;
  int backlog;    /**< server listen queue, default SOMAXCONN */
  double timeout; /**< client connect timeout in seconds, default 30 */
  /** Unix: the socket path; for an abstract socket the name without '@'. */
  char *path;
  int abstract;  /**< unix: 1 for the Linux abstract namespace (`@name`) */
  unsigned mode; /**< unix server: file mode, default 0666 */
  /** Unix: server `lockfile` (Twisted's wantPID, default 1), client
   *  `lockfile` (checkPID, default 0). */
  int lockfile;
  int reuseport; /**< server: set SO_REUSEPORT (extension), default 0 */
  /** tcp, tcp6, ssl: set TCP_NODELAY on every connection (extension),
   *  default 1; `nodelay=0` leaves Nagle's algorithm on. */
  int nodelay;
  int max_packet_size; /**< udp: largest datagram read, default 8192 */
  /** ssl: `privateKey` file, or NULL (the TLS module's default applies). */
  char *private_key;
  /** ssl: `certKey` file, or NULL (Twisted: same as privateKey). */
  char *cert_key;
  /** Every `key=value` argument in the order written, known keys included.
   *  For `ssl:` unknown keys are accepted and only appear here. */
  ct_endpoint_param *params;
  size_t nparams;
} ct_endpoint;

/**
 * Parse a server (listening) description.
 *
 * Accepted forms (brackets: optional; keywords may also be positional in the
 * order shown, as in Twisted):
 * - `tcp:PORT[:interface=ADDR][:backlog=N][:reuseport=0|1][:nodelay=0|1]`
 * - `tcp6:PORT[:backlog=N][:interface=ADDR][:reuseport=0|1][:nodelay=0|1]`
 * - `unix:PATH[:mode=OCTAL][:backlog=N][:lockfile=0|1]` (also `address=`,
 *   `path=`; `@NAME` is an abstract socket)
 * - `udp:PORT[:interface=ADDR][:maxPacketSize=N][:reuseport=0|1]`
 * - `ssl:PORT[:privateKey=F][:certKey=F][:interface=ADDR][:backlog=N]...`
 *
 * `out` is overwritten (not cleared first: pass a zeroed or cleared struct).
 * On success returns 0 and the caller must ct_endpoint_clear() `out`.  On
 * error returns CT_EBADENDPOINT (CT_ENOMEM if memory ran out), leaves `out`
 * cleared, and if `err` is not NULL stores a new failure (code
 * CT_EBADENDPOINT, domain "endpoint", owned by the caller) whose message
 * names the kind, the bad field, and the accepted form, e.g.
 * "tcp endpoint: port 'abc' is not a number in 0..65535; expected
 * tcp:PORT[:interface=ADDR][:backlog=N][:reuseport=0|1]".
 */
CT_EXTERN int ct_endpoint_parse_server(const char *desc, ct_endpoint *out,
                                       ct_failure **err);

/**
 * Parse a client (connecting) description.
 *
 * Accepted forms:
 * - `tcp:host=HOST:port=PORT[:timeout=S][:bindAddress=ADDR]`, also
 *   `tcp:HOST:PORT`, `tcp:HOST:port=PORT`, `tcp:host=HOST:PORT`
 * - `tcp6:...` the same, resolved over IPv6 only
 * - `unix:path=PATH[:timeout=S][:lockfile=0|1]`, also `unix:PATH`
 * - `udp:host=HOST:port=PORT[:bindAddress=ADDR]` (a connected datagram port)
 * - `ssl:host=HOST:port=PORT[:timeout=S][:bindAddress=ADDR][:KEY=VALUE...]`
 *
 * Same ownership and errors as ct_endpoint_parse_server().  The port of a
 * client must be 1..65535.
 */
CT_EXTERN int ct_endpoint_parse_client(const char *desc, ct_endpoint *out,
                                       ct_failure **err);

/** Free the strings of an endpoint and reset it to all zeros.  Idempotent;
 *  NULL is a no-op. */
CT_EXTERN void ct_endpoint_clear(ct_endpoint *e);

/**
 * Write the canonical description of `e` into `buf` (NUL-terminated when
 * len > 0), escaping `\`, `:` and `=` in values.  Parsing the result with
 * the same role gives an equal endpoint.  Returns the length the full text
 * needs (like snprintf; call with len 0 to size a buffer), or CT_EINVAL if
 * `e` is not a parsed endpoint.
 */
CT_EXTERN int ct_endpoint_format(const ct_endpoint *e, char *buf, size_t len);

/** The kind's name as written in descriptions ("tcp", "unix", ...), or
 *  "none". */
CT_EXTERN const char *ct_endpoint_kind_name(ct_endpoint_kind kind);

/**
 * The value of keyword `key` as written, or NULL if it was not given.
 * The string belongs to `e`.
 */
CT_EXTERN const char *ct_endpoint_get_param(const ct_endpoint *e,
                                            const char *key);

/**
 * The socket address of an endpoint: for a server the address to bind
 * (interface and port, or the unix path), for a client the address to
 * connect to.
 *
 * Numeric addresses only: server interfaces are numeric by grammar, and a
 * client host that is a name gives CT_EDNS (nothing here ever blocks on a
 * lookup); names are resolved asynchronously by ct_resolve() (resolve.h),
 * which ct_connect() uses.
 *
 * Returns 0 and fills `ss` / `*len`, or a negative code with a failure in
 * `*err` (if not NULL): CT_EINVAL for a cleared endpoint, CT_EDNS for a host
 * name or a malformed address, CT_ENAMETOOLONG for an over-long unix path.
 */
CT_EXTERN int ct_endpoint_resolve(const ct_endpoint *e,
                                  struct sockaddr_storage *ss, socklen_t *len,
                                  ct_failure **err);

/**
 * The local address a client binds before connecting (`bindAddress`, port
 * 0).  Returns 0 with `*len` = 0 when the endpoint has none; otherwise as
 * ct_endpoint_resolve() (numeric addresses only).
 */
CT_EXTERN int ct_endpoint_resolve_bind(const ct_endpoint *e,
                                       struct sockaddr_storage *ss,
                                       socklen_t *len, ct_failure **err);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_ENDPOINT_H */
