/*
 * internal.h: what the HTTP module's files share (not installed).
 */
#ifndef CT_PROTOCOLS_HTTP_INTERNAL_H
#define CT_PROTOCOLS_HTTP_INTERNAL_H

#include <http_parser.h>
#include <stdio.h>
#include <time.h>

#include "ctwist/http.h"
#include "reactor/buf.h"

/* A route of a site: a path prefix and its handler. */
typedef struct ct__http_route {
  char *prefix;
  size_t len;
  ct_http_handler_cb fn;
  void *arg;
  int stream; /* called at the end of the headers; the body is streamed */
} ct__http_route;

struct ct_http_site {
  ct_factory factory;
  ct_reactor *reactor;
  ct_http_limits limits;
  ct__http_route *routes;
  size_t nroutes;
  FILE *access_log;
  char *server_name;
  unsigned long requests;
  size_t live; /* connections between connection_made and _lost */
  void *user;
  /* The Date header, formatted once per second. */
  time_t date_sec;
  char date[32];
};

/* The server protocol's ops and per-connection size (server.c). */
extern const ct_protocol_ops ct__http_server_ops;
extern const size_t ct__http_conn_size;

/* The longest route matching `path`, or NULL. */
const ct__http_route *ct__http_find_route(const ct_http_site *site,
                                          const char *path);
/* The Date header's value, formatted once per second. */
const char *ct__http_site_date(ct_http_site *site);
/* One Common Log Format line for an answered request, if logging is on. */
void ct__http_access_log(ct_http_site *site, const ct_http_request *q,
                         int status, uint64_t sent);

/* Append a header from counted strings (no CR/LF check: the parser has
 * already refused them).  Returns 0 or CT_ENOMEM. */
int ct__http_headers_addn(ct_http_headers *h, const char *name, size_t nlen,
                          const char *value, size_t vlen);

/* Drop a response's body (closing its file, freeing its source). */
void ct__http_response_drop_body(ct_http_response *r);

/* ct_http_response_free() with a void * argument, for ct_value. */
void ct__http_response_free_value(void *p);

/* A new string with & < > " ' escaped for HTML, or NULL. */
char *ct__http_html_escape(const char *s);

/* The body's length when known (memory, file, sized source), else -1. */
int64_t ct__http_body_length(const ct_http_response *r);

/* Conditional GET and a single Range on a 200 answer to GET/HEAD: may turn
 * it into 304, 206 or 416 (replacing *resp). */
void ct__http_apply_conditionals(const ct_http_request *q,
                                 ct_http_response **resp);

/* Text in the core ct__buf (reactor/buf.h), kept NUL-terminated after its
 * bytes (the NUL is not counted), so that ct__http_str() is a C string.
 * The module only appends own bytes (no blobs), so buffers stay flat. */

/* Append `n` bytes; returns 0 or CT_ENOMEM. */
int ct__http_buf_add(ct__buf *b, const void *d, size_t n);
/* Append printf-formatted text; returns 0 or CT_ENOMEM. */
int ct__http_buf_printf(ct__buf *b, const char *fmt, ...) CT_PRINTF(2, 3);
/* Append n bytes to a malloc'ed, NUL-terminated body (*body, *len, with
 * *cap allocated), growing by doubling (never from a declared length, so
 * a lying Content-Length costs nothing).  0 or CT_ENOMEM. */
int ct__http_body_append(char **body, size_t *len, size_t *cap, const char *d,
                         size_t n);
/* The buffer's bytes as a C string ("" when empty). */
static inline const char *ct__http_str(const ct__buf *b) {
  return b->len ? ct__buf_head(b) : "";
}

/* Add the header collected in `field`/`value` (if any) to `h` and empty
 * both buffers.  Returns 0 or CT_ENOMEM. */
int ct__http_flush_header(ct_http_headers *h, ct__buf *field, ct__buf *value);

#endif /* CT_PROTOCOLS_HTTP_INTERNAL_H */
