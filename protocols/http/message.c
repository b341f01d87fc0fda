/*
 * message.c: the value types of the HTTP module -- header lists, responses,
 * replies, error pages, percent-decoding, dates and the JSON helpers.
 * Nothing here touches a connection; server.c does.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "ctwist/http.h"
#include "protocols/http/internal.h"

/* ---------------------------------------------------------------- headers */

static int has_crlf(const char *s) {
  return strpbrk(s, "\r\n") != NULL;
}

int ct_http_headers_add(ct_http_headers *h, const char *name,
                        const char *value) {
  if (h == NULL || name == NULL || value == NULL || has_crlf(name) ||
      has_crlf(value))
    return CT_EINVAL;
  return ct__http_headers_addn(h, name, strlen(name), value, strlen(value));
}

/* One allocation holds both strings: "name\0value\0". */
int ct__http_headers_addn(ct_http_headers *h, const char *name, size_t nlen,
                          const char *value, size_t vlen) {
  if (h->count == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 8;
    ct_http_header *items = realloc(h->items, cap * sizeof *items);
    if (items == NULL)
      return CT_ENOMEM;
    h->items = items;
    h->cap = cap;
  }
  char *mem = malloc(nlen + vlen + 2);
  if (mem == NULL)
    return CT_ENOMEM;
  memcpy(mem, name, nlen);
  mem[nlen] = 0;
  memcpy(mem + nlen + 1, value, vlen);
  mem[nlen + 1 + vlen] = 0;
  h->items[h->count].name = mem;
  h->items[h->count].value = mem + nlen + 1;
  h->count++;
  return 0;
}

int ct__http_flush_header(ct_http_headers *h, ct__buf *field, ct__buf *value) {
  if (field->len == 0)
    return 0;
  int rc = ct__http_headers_addn(h, ct__http_str(field), field->len,
                                 ct__http_str(value), value->len);
  ct__buf_clear(field);
  ct__buf_clear(value);
  return rc;
}

int ct_http_headers_set(ct_http_headers *h, const char *name,
                        const char *value) {
  if (h == NULL || name == NULL || value == NULL || has_crlf(name) ||
      has_crlf(value))
    return CT_EINVAL;
  ct_http_headers_remove(h, name);
  return ct_http_headers_add(h, name, value);
}

const char *ct_http_headers_get(const ct_http_headers *h, const char *name) {
  if (h == NULL || name == NULL)
    return NULL;
  for (size_t i = 0; i < h->count; i++)
    if (strcasecmp(h->items[i].name, name) == 0)
      return h->items[i].value;
  return NULL;
}

size_t ct_http_headers_remove(ct_http_headers *h, const char *name) {
  if (h == NULL || name == NULL)
    return 0;
  size_t j = 0, removed = 0;
  for (size_t i = 0; i < h->count; i++) {
    if (strcasecmp(h->items[i].name, name) == 0) {
      free(h->items[i].name);
      removed++;
    } else {
      h->items[j++] = h->items[i];
    }
  }
  h->count = j;
  return removed;
}

void ct_http_headers_clear(ct_http_headers *h) {
  if (h == NULL)
    return;
  for (size_t i = 0; i < h->count; i++)
    free(h->items[i].name);
  free(h->items);
  h->items = NULL;
  h->count = h->cap = 0;
}

const char *ct_http_request_header(const ct_http_request *req,
                                   const char *name) {
  return req == NULL ? NULL : ct_http_headers_get(&req->headers, name);
}

const char *ct_http_request_param(const ct_http_request *req,
                                  const char *name) {
  return req == NULL ? NULL : ct_http_headers_get(&req->params, name);
}

/* --------------------------------------------------------------- response */

ct_http_response *ct_http_response_new(int status) {
  ct_http_response *r = calloc(1, sizeof *r);
  if (r == NULL)
    return NULL;
  r->status = status;
  r->fd = -1;
  r->source_length = -1;
  return r;
}

/* Drop whatever body the response has. */
void ct__http_response_drop_body(ct_http_response *r) {
  switch (r->body_kind) {
  case CT_HTTP_BODY_MEMORY:
    free(r->data);
    r->data = NULL;
    r->data_len = 0;
    break;
  case CT_HTTP_BODY_FILE:
    if (r->fd >= 0)
      close(r->fd);
    r->fd = -1;
    break;
  case CT_HTTP_BODY_SOURCE:
    if (r->source.free != NULL)
      r->source.free(r->source.arg);
    memset(&r->source, 0, sizeof r->source);
    break;
  case CT_HTTP_BODY_NONE:
    break;
  }
  r->body_kind = CT_HTTP_BODY_NONE;
}

int ct_http_response_set_body(ct_http_response *r, const void *data,
                              size_t len) {
  char *copy = malloc(len + 1);
  if (copy == NULL)
    return CT_ENOMEM;
  if (len > 0)
    memcpy(copy, data, len);
  copy[len] = 0;
  ct_http_response_take_body(r, copy, len);
  return 0;
}

void ct_http_response_take_body(ct_http_response *r, char *data, size_t len) {
  ct__http_response_drop_body(r);
  r->body_kind = CT_HTTP_BODY_MEMORY;
  r->data = data;
  r->data_len = len;
}

void ct_http_response_set_file(ct_http_response *r, int fd, off_t offset,
                               uint64_t length) {
  ct__http_response_drop_body(r);
  r->body_kind = CT_HTTP_BODY_FILE;
  r->fd = fd;
  r->file_offset = offset;
  r->file_length = length;
}

void ct_http_response_set_source(ct_http_response *r, ct_http_body_source src,
                                 int64_t length) {
  ct__http_response_drop_body(r);
  r->body_kind = CT_HTTP_BODY_SOURCE;
  r->source = src;
  r->source_length = length < 0 ? -1 : length;
}

void ct_http_response_free(ct_http_response *r) {
  if (r == NULL)
    return;
  ct__http_response_drop_body(r);
  ct_http_headers_clear(&r->headers);
  free(r);
}

void ct__http_response_free_value(void *p) {
  ct_http_response_free(p);
}

/* Escape the five HTML metacharacters of `s` into a new string. */
char *ct__http_html_escape(const char *s) {
  size_t n = 0;
  for (const char *p = s; *p; p++)
    n += (*p == '<' || *p == '>')    ? 4
         : *p == '&'                 ? 5
         : (*p == '"' || *p == '\'') ? 6
                                     : 1;
  char *out = malloc(n + 1), *o = out;
  if (out == NULL)
    return NULL;
  for (const char *p = s; *p; p++) {
    const char *rep = NULL;
    switch (*p) {
    case '<':
      rep = "&lt;";
      break;
    case '>':
      rep = "&gt;";
      break;
    case '&':
      rep = "&amp;";
      break;
    case '"':
      rep = "&#34;";
      break;
    case '\'':
      rep = "&#39;";
      break;
    default:
      *o++ = *p;
      continue;
    }
    size_t k = strlen(rep);
    memcpy(o, rep, k);
    o += k;
  }
  *o = 0;
  return out;
}

ct_http_response *ct_http_response_error(int status, const char *detail) {
  ct_http_response *r = ct_http_response_new(status);
  if (r == NULL)
    return NULL;
  char *esc = ct__http_html_escape(detail != NULL ? detail : "");
  const char *text = ct_http_status_text(status);
  char *body = NULL;
  int n = esc == NULL ? -1
                      : asprintf(&body,
                                 "<!DOCTYPE html>\n<html><head><title>%d %s"
                                 "</title></head>\n<body><h1>%d %s</h1>\n"
                                 "<p>%s</p>\n</body></html>\n",
                                 status, text, status, text, esc);
  free(esc);
  if (n < 0 || ct_http_headers_add(&r->headers, "Content-Type",
                                   "text/html; charset=utf-8") != 0) {
    if (n >= 0)
      free(body);
    ct_http_response_free(r);
    return NULL;
  }
  ct_http_response_take_body(r, body, (size_t)n);
  return r;
}

ct_http_response *ct_http_response_redirect(int status, const char *location) {
  ct_http_response *r = ct_http_response_error(status, location);
  if (r != NULL &&
      ct_http_headers_add(&r->headers, "Location", location) != 0) {
    ct_http_response_free(r);
    return NULL;
  }
  return r;
}

const char *ct_http_status_text(int status) {
  switch (status) {
#define CT_HTTP_STATUS_CASE_(num, name, text)                                  \
  case num:                                                                    \
    return #text;
    HTTP_STATUS_MAP(CT_HTTP_STATUS_CASE_)
#undef CT_HTTP_STATUS_CASE_
  }
  return "Unknown";
}

/* ------------------------------------------------------------------ reply */

ct_http_reply ct_http_reply_now(ct_http_response *resp) {
  ct_http_reply r = {resp, NULL, NULL};
  if (resp == NULL)
    r.failure = ct_failure_new(CT_EINVAL, "handler replied with no response");
  return r;
}

ct_http_reply ct_http_reply_later(ct_deferred *d) {
  ct_http_reply r = {NULL, d, NULL};
  if (d == NULL)
    r.failure = ct_failure_new(CT_EINVAL, "handler replied with no Deferred");
  return r;
}

ct_http_reply ct_http_reply_fail(ct_failure *f) {
  ct_http_reply r = {NULL, NULL, f};
  if (f == NULL)
    r.failure = ct_failure_new(CT_EINVAL, "handler failed without a failure");
  return r;
}

/* ------------------------------------------------------------------ utils */

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

long ct_http_decode(const char *in, size_t len, char *out, int plus_space) {
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    char c = in[i];
    if (c == '%') {
      int hi = i + 1 < len ? hexval((unsigned char)in[i + 1]) : -1;
      int lo = i + 2 < len ? hexval((unsigned char)in[i + 2]) : -1;
      if (hi < 0 || lo < 0)
        return CT_EPARSE;
      out[o++] = (char)(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_space) {
      out[o++] = ' ';
    } else {
      out[o++] = c;
    }
  }
  out[o] = 0;
  return (long)o;
}

static const char wday_names[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                      "Thu", "Fri", "Sat"};
static const char month_names[12][4] = {"Jan", "Feb", "Mar", "Apr",
                                        "May", "Jun", "Jul", "Aug",
                                        "Sep", "Oct", "Nov", "Dec"};

void ct_http_format_date(int64_t t, char *buf) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  char tmp[96];
  int n = snprintf(tmp, sizeof tmp, "%s, %02d %s %04d %02d:%02d:%02d GMT",
                   wday_names[tm.tm_wday % 7], tm.tm_mday,
                   month_names[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour,
                   tm.tm_min, tm.tm_sec);
  if (n < 0 || n > 29)
    n = 29; /* only for years past 9999 */
  memcpy(buf, tmp, (size_t)n);
  buf[n] = 0;
}

int ct_http_parse_date(const char *s, int64_t *out) {
  if (s == NULL || out == NULL)
    return CT_EINVAL;
  char wd[4], mon[4];
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  int n = 0;
  if (sscanf(s, "%3[A-Za-z], %2d %3s %4d %2d:%2d:%2d GMT%n", wd, &tm.tm_mday,
             mon, &tm.tm_year, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 7 ||
      n == 0 || s[n] != 0 || wd[3] != 0 || strlen(wd) != 3 || s[3] != ',')
    return CT_EPARSE;
  tm.tm_mon = -1;
  for (int i = 0; i < 12; i++)
    if (strcmp(mon, month_names[i]) == 0)
      tm.tm_mon = i;
  if (tm.tm_mon < 0 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
      tm.tm_min > 59 || tm.tm_sec > 60)
    return CT_EPARSE;
  tm.tm_year -= 1900;
  *out = (int64_t)timegm(&tm);
  return 0;
}

/* ------------------------------------------------------------------- JSON */

ct_http_response *ct_http_response_json(int status, void *json) {
  json_t *j = json;
  if (j == NULL)
    return NULL;
  char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(j);
  if (text == NULL)
    return NULL;
  ct_http_response *r = ct_http_response_new(status);
  if (r == NULL || ct_http_headers_add(&r->headers, "Content-Type",
                                       "application/json") != 0) {
    free(text);
    ct_http_response_free(r);
    return NULL;
  }
  ct_http_response_take_body(r, text, strlen(text));
  return r;
}

void *ct_http_request_json(const ct_http_request *req, ct_failure **err) {
  json_error_t e;
  json_t *j = json_loadb(req->body, req->body_len, JSON_DECODE_ANY, &e);
  if (j == NULL && err != NULL)
    *err = ct_failure_new(CT_EPARSE,
                          "request body is not JSON: line %d "
                          "column %d: %s",
                          e.line, e.column, e.text);
  return j;
}

ct_http_response *ct_http_response_json_error(int status, const char *message) {
  return ct_http_response_json(
      status, json_pack("{s:s}", "error", message != NULL ? message : ""));
}

/* ----------------------------------------------------------------- buffer */

int ct__http_body_append(char **body, size_t *len, size_t *cap, const char *d,
                         size_t n) {
  size_t need = *len + n + 1;
  if (need > *cap) {
    size_t c = *cap ? *cap : 1024;
    while (c < need)
      c *= 2;
    char *b = realloc(*body, c);
    if (b == NULL)
      return CT_ENOMEM;
    *body = b;
    *cap = c;
  }
  memcpy(*body + *len, d, n);
  *len += n;
  (*body)[*len] = 0;
  return 0;
}

int ct__http_buf_add(ct__buf *b, const void *d, size_t n) {
  char *t = ct__buf_tail(b, n + 1);
  if (t == NULL)
    return CT_ENOMEM;
  if (n > 0)
    memcpy(t, d, n);
  t[n] = 0;
  ct__buf_commit(b, n);
  return 0;
}

int ct__http_buf_printf(ct__buf *b, const char *fmt, ...) {
  va_list ap;
  size_t room = 128;
  for (;;) {
    char *t = ct__buf_tail(b, room);
    if (t == NULL)
      return CT_ENOMEM;
    va_start(ap, fmt);
    int n = vsnprintf(t, room, fmt, ap);
    va_end(ap);
    if (n < 0)
      return CT_EINVAL;
    if ((size_t)n < room) {
      ct__buf_commit(b, (size_t)n);
      return 0;
    }
    room = (size_t)n + 1;
  }
}
