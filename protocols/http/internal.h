/*
 * internal.h: what the HTTP module's files share (not installed).
 */
#ifndef CT_PROTOCOLS_HTTP_INTERNAL_H
#define CT_PROTOCOLS_HTTP_INTERNAL_H

#include <http_parser.h>

#include "ctwist/http.h"

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

/* A small growable byte buffer. */
typedef struct ct__http_buf {
  char *data;
  size_t len, cap;
} ct__http_buf;

/* Append `n` bytes; returns 0 or CT_ENOMEM. */
int ct__http_buf_add(ct__http_buf *b, const void *d, size_t n);
/* Append printf-formatted text; returns 0 or CT_ENOMEM. */
int ct__http_buf_printf(ct__http_buf *b, const char *fmt, ...)
    CT_PRINTF(2, 3);
void ct__http_buf_free(ct__http_buf *b);

#endif /* CT_PROTOCOLS_HTTP_INTERNAL_H */
