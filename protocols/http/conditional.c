/*
 * conditional.c: conditional GET (If-None-Match, If-Modified-Since) and
 * single byte ranges, applied by the server to a handler's 200 answer to
 * GET/HEAD before it is written (RFC 9110 sections 13 and 14).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctwist/http.h"
#include "protocols/http/internal.h"

/* The weak comparison of If-None-Match against an ETag. */
static int etag_matches(const char *inm, const char *etag) {
  if (strcmp(inm, "*") == 0)
    return 1;
  const char *e = etag;
  if (strncmp(e, "W/", 2) == 0)
    e += 2;
  size_t el = strlen(e);
  const char *p = inm;
  while (*p) {
    while (*p == ' ' || *p == ',' || *p == '\t')
      p++;
    if (strncmp(p, "W/", 2) == 0)
      p += 2;
    size_t n = strcspn(p, ",");
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
      n--;
    if (n == el && memcmp(p, e, n) == 0)
      return 1;
    p += strcspn(p, ",");
  }
  return 0;
}

/* 304 when a validator matches (RFC 9110 13.2.2: If-None-Match first). */
static int not_modified(const ct_http_request *q, const ct_http_response *r) {
  const char *inm = ct_http_headers_get(&q->headers, "If-None-Match");
  const char *etag = ct_http_headers_get(&r->headers, "ETag");
  if (inm != NULL)
    return etag != NULL && etag_matches(inm, etag);
  const char *ims = ct_http_headers_get(&q->headers, "If-Modified-Since");
  const char *lm = ct_http_headers_get(&r->headers, "Last-Modified");
  int64_t a, b;
  return ims != NULL && lm != NULL && ct_http_parse_date(ims, &a) == 0 &&
         ct_http_parse_date(lm, &b) == 0 && b <= a;
}

/* Parse "bytes=a-b" / "bytes=a-" / "bytes=-n" against `size`: 1 with
 * [*first, *last] set, 0 to ignore the header (malformed or several
 * ranges), -1 when unsatisfiable. */
static int parse_range(const char *h, uint64_t size, uint64_t *first,
                       uint64_t *last) {
  if (strncasecmp(h, "bytes=", 6) != 0 || strchr(h, ',') != NULL)
    return 0;
  const char *p = h + 6;
  char *end;
  while (*p == ' ')
    p++;
  if (*p == '-') {
    if (p[1] < '0' || p[1] > '9')
      return 0;
    errno = 0;
    unsigned long long n = strtoull(p + 1, &end, 10);
    if (*end != 0 || errno != 0)
      return 0;
    if (n == 0 || size == 0)
      return -1;
    *first = n >= size ? 0 : size - n;
    *last = size - 1;
    return 1;
  }
  if (*p < '0' || *p > '9')
    return 0;
  errno = 0;
  unsigned long long a = strtoull(p, &end, 10);
  if (*end != '-' || errno != 0)
    return 0;
  p = end + 1;
  unsigned long long b = size ? size - 1 : 0;
  if (*p != 0) {
    if (*p < '0' || *p > '9')
      return 0;
    b = strtoull(p, &end, 10);
    if (*end != 0 || errno != 0 || b < a)
      return 0;
  }
  if (a >= size)
    return -1;
  if (b >= size)
    b = size - 1;
  *first = a;
  *last = b;
  return 1;
}

/* The body's length when known, else -1. */
int64_t ct__http_body_length(const ct_http_response *r) {
  switch (r->body_kind) {
  case CT_HTTP_BODY_NONE:
    return 0;
  case CT_HTTP_BODY_MEMORY:
    return (int64_t)r->data_len;
  case CT_HTTP_BODY_FILE:
    return (int64_t)r->file_length;
  case CT_HTTP_BODY_SOURCE:
    return r->source_length;
  }
  return -1;
}

void ct__http_apply_conditionals(const ct_http_request *q,
                                 ct_http_response **resp) {
  ct_http_response *r = *resp;
  if (r->status != 200 ||
      (strcmp(q->method, "GET") != 0 && strcmp(q->method, "HEAD") != 0))
    return;
  if (not_modified(q, r)) {
    r->status = 304;
    ct__http_response_drop_body(r);
    ct_http_headers_remove(&r->headers, "Content-Length");
    return;
  }
  const char *range = ct_http_headers_get(&q->headers, "Range");
  int64_t size = ct__http_body_length(r);
  if (range == NULL || size < 0 || r->body_kind == CT_HTTP_BODY_SOURCE)
    return;
  uint64_t first = 0, last = 0;
  int rc = parse_range(range, (uint64_t)size, &first, &last);
  char cr[96];
  if (rc < 0) {
    ct_http_response *e = ct_http_response_error(416, "range not satisfiable");
    if (e == NULL)
      return;
    snprintf(cr, sizeof cr, "bytes */%lld", (long long)size);
    ct_http_headers_set(&e->headers, "Content-Range", cr);
    ct_http_response_free(r);
    *resp = e;
    return;
  }
  if (rc == 0)
    return;
  snprintf(cr, sizeof cr, "bytes %llu-%llu/%lld", (unsigned long long)first,
           (unsigned long long)last, (long long)size);
  ct_http_headers_set(&r->headers, "Content-Range", cr);
  r->status = 206;
  uint64_t n = last - first + 1;
  if (r->body_kind == CT_HTTP_BODY_MEMORY) {
    memmove(r->data, r->data + first, n);
    r->data_len = n;
  } else {
    r->file_offset += (off_t)first;
    r->file_length = n;
  }
}
