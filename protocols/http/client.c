/*
 * client.c: the HTTP/1.1 client (urllib2, Twisted's Agent).
 *
 * A request (`creq`) owns the user's Deferred and walks: parse the URL ->
 * take an idle pooled connection for host:port or ct_connect() a new one ->
 * write the request -> parse the response with libhttp-parser -> fire, or
 * follow a redirect and start over.  A connection (`cconn`) serves one
 * request at a time and goes back to the pool when the response allowed
 * keep-alive.
 *
 * The response parser is paused in on_message_complete and the completion
 * handled after http_parser_execute() returns, because the user's callback
 * may start a new request on the same connection, which re-initialises
 * the parser: never while it runs.
 *
 * Lifetimes: a creq is reference counted (the request itself, plus a pending
 * connect attempt).  The client can be freed with connections still open:
 * they are aborted and detached (their connection_lost then sees no client),
 * as ct_reconnecting_client_free() does.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctwist/http.h"
#include "ctwist/log.h"
#include "protocols/http/internal.h"

typedef struct creq creq;
typedef struct cconn cconn;

/* The client factory handed to ct_connect(), shared by the client and its
 * connections: a transport touches it after its protocol's connection_lost,
 * which may come after the client is freed, so the last of them frees it
 * (from the protocol's free op, the very last thing a transport does). */
typedef struct shared_cf {
  ct_client_factory cf;
  unsigned refs;
  ct_deferred *closed; /* ct_http_client_close(): fired when refs is 0 */
} shared_cf;

struct ct_http_client {
  shared_cf *scf;
  ct_reactor *reactor;
  ct_http_client_options o;
  char *proxy_host;
  int proxy_port;
  char *no_proxy;
  cconn *conns; /* every live connection */
  creq *reqs;   /* every request in flight */
  size_t nconns;
};

struct creq {
  creq *prev, *next;
  unsigned refs;
  ct_http_client *client;
  ct_deferred *d;
  char *method, *url;
  ct_http_headers headers;
  char *body;
  size_t body_len;
  ct_http_body_sink sink;
  int has_sink;
  int redirects, retried, done;
  /* The current attempt. */
  char *key;
  cconn *conn;
  ct_deferred *connecting;
  int reused, got_bytes;
  ct_http_client_response *resp;
  int discard_body; /* a redirect that will be followed */
  size_t body_cap;  /* allocated for resp->body */
  int failed_code;  /* set by a parser callback that stopped it */
  const char *failed_what;
};

struct cconn {
  ct_protocol base;
  shared_cf *scf;
  cconn *prev, *next;
  ct_http_client *client;
  char *key;
  http_parser parser;
  creq *req;
  int idle, complete, lost, keep_alive, head;
  size_t header_bytes;
  ct__buf field, value;
  int last_was_value;
  ct_delayed_call *idle_timer;
};

static void creq_start(creq *q);

/* ------------------------------------------------------------- requests */

static void creq_unref(creq *q) {
  if (--q->refs > 0)
    return;
  free(q->method);
  free(q->url);
  free(q->body);
  free(q->key);
  ct_http_headers_clear(&q->headers);
  ct_http_client_response_free(q->resp);
  free(q);
}

void ct_http_client_response_free(ct_http_client_response *r) {
  if (r == NULL)
    return;
  free(r->reason);
  free(r->body);
  free(r->url);
  ct_http_headers_clear(&r->headers);
  free(r);
}

static void response_free_value(void *p) {
  ct_http_client_response_free(p);
}

static void conn_unlink(cconn *k) {
  ct_http_client *c = k->client;
  if (c == NULL)
    return;
  if (k->prev != NULL)
    k->prev->next = k->next;
  else
    c->conns = k->next;
  if (k->next != NULL)
    k->next->prev = k->prev;
  k->prev = k->next = NULL;
  c->nconns--;
  k->client = NULL;
}

static void idle_cancel(cconn *k) {
  if (k->idle_timer != NULL) {
    ct_delayed_call_cancel(k->idle_timer);
    ct_delayed_call_unref(k->idle_timer);
    k->idle_timer = NULL;
  }
  k->idle = 0;
}

/* The request is over: detach it from its connection (aborted) or its
 * connect attempt (cancelled), then fire `d` with `resp` or `f` (unless
 * `fire` is 0: the canceller's caller fires it). */
static void creq_finish(creq *q, ct_http_client_response *resp, ct_failure *f,
                        int fire) {
  if (q->done) {
    ct_http_client_response_free(resp);
    ct_failure_free(f);
    return;
  }
  q->done = 1;
  ct_http_client *c = q->client;
  if (q->prev != NULL)
    q->prev->next = q->next;
  else if (c != NULL && c->reqs == q)
    c->reqs = q->next;
  if (q->next != NULL)
    q->next->prev = q->prev;
  q->prev = q->next = NULL;
  if (q->conn != NULL) {
    cconn *k = q->conn;
    q->conn = NULL;
    k->req = NULL;
    conn_unlink(k);
    ct_transport_abort(k->base.transport);
  }
  if (q->connecting != NULL)
    ct_deferred_cancel(q->connecting); /* its errback drops its ref on q */
  ct_deferred *d = q->d;
  q->d = NULL;
  if (fire) {
    if (f != NULL)
      ct_deferred_errback(d, f);
    else
      ct_deferred_callback(d, ct_value_of(resp, response_free_value));
  } else {
    ct_http_client_response_free(resp);
    ct_failure_free(f);
  }
  ct_deferred_unref(d);
  creq_unref(q);
}

static void creq_fail(creq *q, int code, const char *fmt, const char *what) {
  creq_finish(q, NULL,
              ct_failure_new_at(__FILE__, __LINE__, "http", code, NULL, fmt,
                                q->method, q->url, what),
              1);
}

static void canceller(ct_deferred *d, void *arg) {
  (void)d;
  creq_finish(arg, NULL, NULL, 0); /* the Deferred errbacks after us */
}

/* ------------------------------------------------------------ the pool */

static void idle_expired(void *arg) {
  cconn *k = arg;
  ct_delayed_call_unref(k->idle_timer);
  k->idle_timer = NULL;
  conn_unlink(k);
  ct_transport_lose_connection(k->base.transport);
}

/* The response is complete and allowed keep-alive: back to the pool. */
static void conn_release(cconn *k) {
  ct_http_client *c = k->client;
  unsigned idle_here = 0;
  if (c != NULL)
    for (cconn *o = c->conns; o != NULL; o = o->next)
      idle_here += o->idle && strcmp(o->key, k->key) == 0;
  if (c == NULL || !k->keep_alive || k->lost ||
      idle_here >= c->o.max_idle_per_host) {
    conn_unlink(k);
    ct_transport_lose_connection(k->base.transport);
    return;
  }
  k->idle = 1;
  k->idle_timer = ct_call_later(c->reactor, c->o.idle_timeout, idle_expired, k);
  if (k->idle_timer != NULL)
    ct_delayed_call_ref(k->idle_timer);
}

/* -------------------------------------------------------- the response */

static int stop(cconn *k, int code, const char *what) {
  if (k->req != NULL && k->req->failed_code == 0) {
    k->req->failed_code = code;
    k->req->failed_what = what;
  }
  return -1;
}

static int on_message_begin(http_parser *p) {
  cconn *k = p->data;
  creq *q = k->req;
  ct_http_client_response_free(q->resp);
  q->resp = calloc(1, sizeof *q->resp);
  if (q->resp == NULL)
    return stop(k, CT_ENOMEM, "out of memory");
  ct__buf_clear(&k->field);
  ct__buf_clear(&k->value);
  k->last_was_value = 0;
  k->header_bytes = 0;
  return 0;
}

static int grow(cconn *k, ct__buf *b, const char *at, size_t len) {
  k->header_bytes += len;
  if (k->header_bytes > 64 * 1024)
    return stop(k, CT_ETOOBIG, "response headers over 64 KiB");
  return ct__http_buf_add(b, at, len) == 0 ? 0 : stop(k, CT_ENOMEM, "oom");
}

static int on_status(http_parser *p, const char *at, size_t len) {
  cconn *k = p->data;
  return grow(k, &k->value, at, len);
}

static int finish_header(cconn *k) {
  return ct__http_flush_header(&k->req->resp->headers, &k->field, &k->value) ==
                 0
             ? 0
             : stop(k, CT_ENOMEM, "out of memory");
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  cconn *k = p->data;
  if (k->last_was_value) {
    if (finish_header(k) != 0)
      return -1;
    k->last_was_value = 0;
  } else if (k->field.len == 0 && k->value.len > 0 &&
             k->req->resp->reason == NULL) {
    /* The first field: what was collected so far is the reason phrase. */
    k->req->resp->reason = strndup(ct__http_str(&k->value), k->value.len);
    ct__buf_clear(&k->value);
  }
  return grow(k, &k->field, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  cconn *k = p->data;
  k->last_was_value = 1;
  return grow(k, &k->value, at, len);
}

/* 1 if `r` is a redirect that the client follows (or refuses as one too
 * many): its body is of no interest. */
static int is_followed_redirect(const creq *q,
                                const ct_http_client_response *r) {
  int st = r->status;
  return (st == 301 || st == 302 || st == 303 || st == 307 || st == 308) &&
         ct_http_headers_get(&r->headers, "Location") != NULL &&
         q->client->o.max_redirects >= 0;
}

static int on_headers_complete(http_parser *p) {
  cconn *k = p->data;
  ct_http_client_response *r = k->req->resp;
  if (r->reason == NULL && k->field.len == 0) {
    r->reason = strndup(ct__http_str(&k->value), k->value.len);
    ct__buf_clear(&k->value);
  }
  if (finish_header(k) != 0)
    return -1;
  r->status = p->status_code;
  r->version_minor = p->http_minor;
  k->req->discard_body = is_followed_redirect(k->req, r);
  return k->head ? 1 : 0; /* a HEAD response has no body */
}

static int on_body(http_parser *p, const char *at, size_t len) {
  cconn *k = p->data;
  creq *q = k->req;
  ct_http_client_response *r = q->resp;
  if ((r->status >= 100 && r->status < 200) || q->discard_body)
    return 0;
  if (q->has_sink) {
    int rc = q->sink.data(q->sink.arg, at, len);
    return rc == 0 ? 0 : stop(k, rc, "the body sink stopped the request");
  }
  if (r->body_len + len > q->client->o.max_body)
    return stop(k, CT_ETOOBIG, "response body over max_body");
  if (ct__http_body_append(&r->body, &r->body_len, &q->body_cap, at, len) != 0)
    return stop(k, CT_ENOMEM, "out of memory");
  return 0;
}

static int on_message_complete(http_parser *p) {
  cconn *k = p->data;
  ct_http_client_response *r = k->req->resp;
  if (r->status >= 100 && r->status < 200) {
    /* An interim response (100 Continue): the real one follows. */
    ct_http_client_response_free(r);
    k->req->resp = NULL;
    return 0;
  }
  k->keep_alive = http_should_keep_alive(p);
  k->complete = 1;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Resolve a Location against the current URL. */
static char *resolve_location(const char *base, const char *loc) {
  char *out = NULL;
  if (strncasecmp(loc, "http://", 7) == 0 ||
      strncasecmp(loc, "https://", 8) == 0)
    return strdup(loc);
  const char *hs = strstr(base, "//");
  hs = hs ? hs + 2 : base;
  const char *path = strchr(hs, '/');
  size_t origin = path ? (size_t)(path - base) : strlen(base);
  if (strncmp(loc, "//", 2) == 0) {
    size_t scheme = (size_t)(hs - base) - 2;
    return asprintf(&out, "%.*s%s", (int)scheme, base, loc) < 0 ? NULL : out;
  }
  if (loc[0] == '/')
    return asprintf(&out, "%.*s%s", (int)origin, base, loc) < 0 ? NULL : out;
  /* Relative to the current path's directory. */
  size_t dir = origin;
  if (path != NULL) {
    size_t plen = strcspn(path, "?#");
    const char *slash = path;
    for (size_t i = 0; i < plen; i++)
      if (path[i] == '/')
        slash = path + i;
    dir = (size_t)(slash - base);
  }
  return asprintf(&out, "%.*s/%s", (int)dir, base, loc) < 0 ? NULL : out;
}

/* The response on `k` is complete: pool the connection, then fire or
 * follow the redirect. */
static void response_done(cconn *k) {
  creq *q = k->req;
  ct_http_client_response *r = q->resp;
  q->resp = NULL;
  k->req = NULL;
  q->conn = NULL;
  k->complete = 0;
  conn_release(k);
  int st = r->status;
  const char *loc = ct_http_headers_get(&r->headers, "Location");
  ct_http_client *c = q->client;
  if (is_followed_redirect(q, r)) {
    if (q->redirects >= c->o.max_redirects) {
      ct_http_client_response_free(r);
      creq_fail(q, CT_ETOOBIG, "%s %s: %s", "too many redirects");
      return;
    }
    char *next = resolve_location(q->url, loc);
    ct_http_client_response_free(r);
    if (next == NULL) {
      creq_fail(q, CT_ENOMEM, "%s %s: %s", "out of memory");
      return;
    }
    free(q->url);
    q->url = next;
    q->redirects++;
    if (st == 303 ||
        ((st == 301 || st == 302) && strcmp(q->method, "POST") == 0)) {
      char *get = strdup("GET");
      if (get == NULL) {
        creq_fail(q, CT_ENOMEM, "%s %s: %s", "out of memory");
        return;
      }
      free(q->method);
      q->method = get;
      free(q->body);
      q->body = NULL;
      q->body_len = 0;
    }
    q->retried = 0;
    creq_start(q);
    return;
  }
  r->url = strdup(q->url);
  r->redirects = q->redirects;
  if (r->body == NULL)
    r->body = calloc(1, 1);
  creq_finish(q, r, NULL, 1);
}

/* ------------------------------------------------------ the connection */

static void cconn_data(ct_protocol *p, const char *data, size_t len) {
  cconn *k = (cconn *)p;
  creq *q = k->req;
  if (q == NULL) {
    /* Bytes nobody asked for (on an idle connection): drop it. */
    idle_cancel(k);
    conn_unlink(k);
    ct_transport_abort(p->transport);
    return;
  }
  q->got_bytes = 1;
  http_parser_execute(&k->parser, &settings, data, len);
  enum http_errno e = HTTP_PARSER_ERRNO(&k->parser);
  if (k->complete) {
    response_done(k);
  } else if (q->failed_code != 0) {
    creq_fail(q, q->failed_code, "%s %s: %s", q->failed_what);
  } else if (e != HPE_OK) {
    creq_fail(q, CT_EPROTO, "%s %s: malformed response: %s",
              http_errno_description(e));
  }
}

static void cconn_lost(ct_protocol *p, const ct_failure *reason) {
  cconn *k = (cconn *)p;
  k->lost = 1;
  idle_cancel(k);
  conn_unlink(k);
  creq *q = k->req;
  if (q == NULL)
    return;
  /* The end of a close-delimited body completes the response. */
  if (q->got_bytes) {
    http_parser_execute(&k->parser, &settings, NULL, 0);
    if (k->complete) {
      response_done(k);
      return;
    }
  }
  k->req = NULL;
  q->conn = NULL;
  if (!q->got_bytes && q->reused && !q->retried) {
    /* The server closed the pooled connection as we reused it. */
    q->retried = 1;
    creq_start(q);
    return;
  }
  creq_finish(q, NULL,
              ct_failure_wrap("http", CT_ECONNLOST, ct_failure_copy(reason),
                              "%s %s: the connection closed before the "
                              "response was complete",
                              q->method, q->url),
              1);
}

static void scf_unref(shared_cf *scf) {
  if (scf == NULL || --scf->refs > 0)
    return;
  ct_deferred *closed = scf->closed;
  free(scf);
  if (closed != NULL) {
    ct_deferred_callback(closed, CT_NONE);
    ct_deferred_unref(closed);
  }
}

static void cconn_free(ct_protocol *p) {
  cconn *k = (cconn *)p;
  scf_unref(k->scf);
  ct__buf_free(&k->field);
  ct__buf_free(&k->value);
  free(k->key);
  free(k);
}

static const ct_protocol_ops cconn_ops = {
    .name = "http-client",
    .flags = CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER,
    .data_received = cconn_data,
    .connection_lost = cconn_lost,
    .free = cconn_free,
};

static ct_protocol *scf_build(ct_factory *f, const ct_address *peer) {
  (void)peer;
  shared_cf *scf = (shared_cf *)f;
  cconn *k = (cconn *)ct_protocol_new(&cconn_ops, sizeof(cconn));
  if (k != NULL) {
    k->scf = scf;
    scf->refs++;
  }
  return &k->base;
}

static const ct_factory_ops scf_ops = {.name = "http-client",
                                       .build_protocol = scf_build};

/* Write the request on `k`. */
static void send_request(creq *q, cconn *k, const char *target,
                         const char *host) {
  k->req = q;
  q->conn = k;
  k->complete = 0;
  k->keep_alive = 0;
  k->head = strcmp(q->method, "HEAD") == 0;
  http_parser_init(&k->parser, HTTP_RESPONSE);
  k->parser.data = k;
  ct__buf b = CT__BUF_INIT;
  int rc = ct__http_buf_printf(&b, "%s %s HTTP/1.1\r\n", q->method, target);
  if (rc == 0 && ct_http_headers_get(&q->headers, "Host") == NULL)
    rc = ct__http_buf_printf(&b, "Host: %s\r\n", host);
  for (size_t i = 0; rc == 0 && i < q->headers.count; i++) {
    const ct_http_header *h = &q->headers.items[i];
    if (strcasecmp(h->name, "Content-Length") == 0 ||
        strcasecmp(h->name, "Transfer-Encoding") == 0 ||
        strcasecmp(h->name, "Connection") == 0)
      continue;
    rc = ct__http_buf_printf(&b, "%s: %s\r\n", h->name, h->value);
  }
  if (rc == 0 && ct_http_headers_get(&q->headers, "User-Agent") == NULL)
    rc = ct__http_buf_printf(&b, "User-Agent: ctwist\r\n");
  if (rc == 0 &&
      (q->body_len > 0 || strcmp(q->method, "POST") == 0 ||
       strcmp(q->method, "PUT") == 0 || strcmp(q->method, "PATCH") == 0))
    rc = ct__http_buf_printf(&b, "Content-Length: %zu\r\n", q->body_len);
  if (rc == 0)
    rc = ct__http_buf_add(&b, "\r\n", 2);
  if (rc == 0 && q->body_len > 0)
    rc = ct__http_buf_add(&b, q->body, q->body_len);
  if (rc == 0)
    rc = ct_transport_write(k->base.transport, ct__http_str(&b), b.len);
  ct__buf_free(&b);
  if (rc != 0)
    creq_fail(q, rc, "%s %s: %s", "writing the request failed");
}

/* ------------------------------------------------------------- attempts */

typedef struct target {
  char host[256];
  int port;
  char *path; /* what goes on the request line */
} target;

static int parse_url(const char *url, target *t, ct_failure **err,
                     const creq *q) {
  struct http_parser_url u;
  http_parser_url_init(&u);
  if (http_parser_parse_url(url, strlen(url), 0, &u) != 0 ||
      !(u.field_set & (1 << UF_SCHEMA)) || !(u.field_set & (1 << UF_HOST))) {
    *err = ct_failure_new(CT_EINVAL, "%s %s: not an absolute http:// URL",
                          q->method, url);
    return -1;
  }
  const char *scheme = url + u.field_data[UF_SCHEMA].off;
  size_t sl = u.field_data[UF_SCHEMA].len;
  if (sl == 5 && strncasecmp(scheme, "https", 5) == 0) {
    *err = ct_failure_new(CT_ENOSYS,
                          "%s %s: https is not supported (ctwist "
                          "has no TLS transport yet)",
                          q->method, url);
    return -1;
  }
  if (sl != 4 || strncasecmp(scheme, "http", 4) != 0) {
    *err = ct_failure_new(CT_EINVAL, "%s %s: unsupported scheme '%.*s'",
                          q->method, url, (int)sl, scheme);
    return -1;
  }
  size_t hl = u.field_data[UF_HOST].len;
  if (hl >= sizeof t->host) {
    *err =
        ct_failure_new(CT_EINVAL, "%s %s: host name too long", q->method, url);
    return -1;
  }
  memcpy(t->host, url + u.field_data[UF_HOST].off, hl);
  t->host[hl] = 0;
  t->port = (u.field_set & (1 << UF_PORT)) ? u.port : 80;
  const char *path =
      (u.field_set & (1 << UF_PATH)) ? url + u.field_data[UF_PATH].off : "/";
  size_t pl = (u.field_set & (1 << UF_PATH)) ? u.field_data[UF_PATH].len : 1;
  const char *query =
      (u.field_set & (1 << UF_QUERY)) ? url + u.field_data[UF_QUERY].off : NULL;
  size_t ql = query ? u.field_data[UF_QUERY].len : 0;
  if (asprintf(&t->path, "%.*s%s%.*s", (int)pl, path, query ? "?" : "", (int)ql,
               query ? query : "") < 0) {
    *err = ct_failure_new(CT_ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

static int bypass_proxy(const ct_http_client *c, const char *host) {
  if (c->no_proxy == NULL)
    return 0;
  size_t hl = strlen(host);
  const char *p = c->no_proxy;
  while (*p) {
    p += strspn(p, ", ");
    size_t n = strcspn(p, ", ");
    if (n == 1 && *p == '*')
      return 1;
    const char *d = p;
    size_t dn = n;
    if (dn > 0 && *d == '.') {
      d++;
      dn--;
    }
    if (dn > 0 && (hl == dn || (hl > dn && host[hl - dn - 1] == '.')) &&
        strncasecmp(host + hl - dn, d, dn) == 0)
      return 1;
    p += n;
  }
  return 0;
}

/* Escape ':' for an endpoint string (IPv6 literals). */
static void endpoint_host(const char *host, char *out, size_t cap) {
  size_t o = 0;
  for (const char *h = host; *h && o + 3 < cap; h++) {
    if (*h == ':' || *h == '\\' || *h == '=')
      out[o++] = '\\';
    out[o++] = *h;
  }
  out[o] = 0;
}

static ct_step on_connected(ct_value v, void *arg) {
  creq *q = arg;
  ct_deferred_unref(q->connecting);
  q->connecting = NULL;
  cconn *k = v.ptr;
  if (q->done || k == NULL || k->base.transport == NULL) {
    if (k != NULL && k->base.transport != NULL)
      ct_transport_abort(k->base.transport);
    creq_unref(q);
    return ct_pass(CT_NONE);
  }
  k->client = q->client;
  k->key = strdup(q->key);
  k->next = q->client->conns;
  if (k->next != NULL)
    k->next->prev = k;
  q->client->conns = k;
  q->client->nconns++;
  /* The target and Host were computed again: cheap and keeps no state. */
  ct_failure *err = NULL;
  target t = {0};
  int proxied = q->client->proxy_host != NULL;
  if (k->key == NULL || parse_url(q->url, &t, &err, q) != 0) {
    creq_finish(q, NULL, err ? err : ct_failure_new(CT_ENOMEM, "oom"), 1);
  } else {
    proxied = proxied && !bypass_proxy(q->client, t.host);
    char host[300];
    snprintf(host, sizeof host, t.port == 80 ? "%s" : "%s:%d", t.host, t.port);
    q->reused = 0;
    send_request(q, k, proxied ? q->url : t.path, host);
  }
  free(t.path);
  creq_unref(q);
  return ct_pass(CT_NONE);
}

static ct_step on_connect_failed(ct_failure *f, void *arg) {
  creq *q = arg;
  ct_deferred_unref(q->connecting);
  q->connecting = NULL;
  if (q->done)
    ct_failure_free(f);
  else
    creq_finish(q, NULL,
                ct_failure_wrap("http", f->code, f, "%s %s: cannot connect",
                                q->method, q->url),
                1);
  creq_unref(q);
  return ct_pass(CT_NONE);
}

/* Start (or restart, after a redirect) the current URL. */
static void creq_start(creq *q) {
  ct_http_client *c = q->client;
  ct_failure *err = NULL;
  target t = {0};
  if (parse_url(q->url, &t, &err, q) != 0) {
    creq_finish(q, NULL, err, 1);
    return;
  }
  int proxied = c->proxy_host != NULL && !bypass_proxy(c, t.host);
  const char *chost = proxied ? c->proxy_host : t.host;
  int cport = proxied ? c->proxy_port : t.port;
  free(q->key);
  q->key = NULL;
  if (asprintf(&q->key, "%s:%d", chost, cport) < 0) {
    q->key = NULL;
    free(t.path);
    creq_finish(q, NULL, ct_failure_new(CT_ENOMEM, "out of memory"), 1);
    return;
  }
  for (cconn *k = c->conns; k != NULL; k = k->next) {
    if (k->idle && !k->lost && strcmp(k->key, q->key) == 0) {
      idle_cancel(k);
      char host[300];
      snprintf(host, sizeof host, t.port == 80 ? "%s" : "%s:%d", t.host,
               t.port);
      q->reused = 1;
      send_request(q, k, proxied ? q->url : t.path, host);
      free(t.path);
      return;
    }
  }
  free(t.path);
  char eh[600], ep[700];
  endpoint_host(chost, eh, sizeof eh);
  snprintf(ep, sizeof ep, "tcp:host=%s:port=%d:timeout=%g", eh, cport,
           c->o.timeout);
  q->connecting = ct_connect(c->reactor, ep, &c->scf->cf);
  if (q->connecting == NULL) {
    creq_finish(q, NULL, ct_failure_new(CT_ENOMEM, "out of memory"), 1);
    return;
  }
  q->refs++;
  ct_deferred_add_callbacks(q->connecting, on_connected, on_connect_failed, q);
}

/* ---------------------------------------------------------------- client */

static int parse_proxy(ct_http_client *c, const char *proxy) {
  const char *p = proxy;
  if (strncasecmp(p, "http://", 7) == 0)
    p += 7;
  size_t hl = strcspn(p, ":/");
  if (hl == 0)
    return CT_EINVAL;
  c->proxy_host = strndup(p, hl);
  c->proxy_port = 80;
  if (p[hl] == ':')
    c->proxy_port = atoi(p + hl + 1);
  if (c->proxy_host == NULL)
    return CT_ENOMEM;
  if (c->proxy_port <= 0 || c->proxy_port > 65535)
    return CT_EINVAL;
  return 0;
}

ct_http_client *ct_http_client_new(ct_reactor *r,
                                   const ct_http_client_options *o) {
  if (r == NULL)
    return NULL;
  ct_http_client *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->reactor = r;
  if (o != NULL)
    c->o = *o;
  if (c->o.max_redirects == 0)
    c->o.max_redirects = 5;
  if (!(c->o.timeout > 0))
    c->o.timeout = 30;
  if (c->o.max_body == 0)
    c->o.max_body = 64u * 1024 * 1024;
  if (c->o.max_idle_per_host == 0)
    c->o.max_idle_per_host = 4;
  if (!(c->o.idle_timeout > 0))
    c->o.idle_timeout = 60;
  const char *proxy = c->o.proxy;
  if (proxy == NULL) {
    proxy = getenv("http_proxy");
    if (proxy == NULL || *proxy == 0)
      proxy = getenv("HTTP_PROXY");
    const char *np = getenv("no_proxy");
    if (np == NULL || *np == 0)
      np = getenv("NO_PROXY");
    if (np != NULL && *np != 0)
      c->no_proxy = strdup(np);
  }
  c->o.proxy = NULL; /* not kept: the caller's string */
  if (proxy != NULL && *proxy != 0 && parse_proxy(c, proxy) != 0) {
    ct_log(CT_LOG_WARN, "http", "ignoring malformed proxy '%s'", proxy);
    free(c->proxy_host);
    c->proxy_host = NULL;
  }
  c->scf = calloc(1, sizeof *c->scf);
  if (c->scf == NULL) {
    free(c->proxy_host);
    free(c->no_proxy);
    free(c);
    return NULL;
  }
  c->scf->refs = 1;
  ct_factory_init(&c->scf->cf.base, &scf_ops, &cconn_ops, sizeof(cconn), NULL);
  return c;
}

ct_deferred *
ct_http_client_request_ex(ct_http_client *c,
                          const ct_http_client_request_options *o) {
  if (c == NULL || o == NULL)
    return NULL;
  creq *q = calloc(1, sizeof *q);
  if (q == NULL)
    return NULL;
  q->refs = 1;
  q->client = c;
  q->method = strdup(o->method ? o->method : "GET");
  q->url = strdup(o->url ? o->url : "");
  q->body = o->body_len ? malloc(o->body_len) : NULL;
  q->d = ct_deferred_new(canceller, q);
  int rc = q->method && q->url && (o->body_len == 0 || q->body) && q->d
               ? 0
               : CT_ENOMEM;
  if (rc == 0 && o->body_len)
    memcpy(q->body, o->body, o->body_len);
  q->body_len = o->body_len;
  for (size_t i = 0; rc == 0 && o->headers != NULL && i < o->headers->count;
       i++)
    rc = ct_http_headers_add(&q->headers, o->headers->items[i].name,
                             o->headers->items[i].value);
  if (o->sink != NULL && o->sink->data != NULL) {
    q->sink = *o->sink;
    q->has_sink = 1;
  }
  if (rc == 0)
    rc = ct_deferred_add_timeout(q->d, c->reactor,
                                 o->timeout > 0 ? o->timeout : c->o.timeout);
  if (rc != 0) {
    ct_deferred *d = q->d;
    q->d = NULL;
    q->done = 1;
    ct_deferred_unref(d);
    creq_unref(q);
    return NULL;
  }
  q->next = c->reqs;
  if (q->next != NULL)
    q->next->prev = q;
  c->reqs = q;
  ct_deferred *user = ct_deferred_ref(q->d);
  creq_start(q);
  return user;
}

ct_deferred *ct_http_client_request(ct_http_client *c, const char *method,
                                    const char *url,
                                    const ct_http_headers *headers,
                                    const void *body, size_t body_len) {
  ct_http_client_request_options o = {0};
  o.method = method;
  o.url = url;
  o.headers = headers;
  o.body = body;
  o.body_len = body_len;
  return ct_http_client_request_ex(c, &o);
}

size_t ct_http_client_connections(const ct_http_client *c) {
  return c == NULL ? 0 : c->nconns;
}

ct_deferred *ct_http_client_close(ct_http_client *c) {
  if (c == NULL)
    return ct_succeed(CT_NONE);
  while (c->reqs != NULL) {
    creq *q = c->reqs;
    creq_finish(q, NULL,
                ct_failure_new(CT_ECANCELLED, "%s %s: the client was closed",
                               q->method, q->url),
                1);
  }
  while (c->conns != NULL) {
    cconn *k = c->conns;
    idle_cancel(k);
    conn_unlink(k);
    if (k->base.transport != NULL)
      ct_transport_abort(k->base.transport);
  }
  /* The last connection's protocol release (or this unref) fires it. */
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  shared_cf *scf = c->scf;
  free(c->proxy_host);
  free(c->no_proxy);
  free(c);
  if (d == NULL) {
    scf_unref(scf);
    return NULL;
  }
  scf->closed = ct_deferred_ref(d);
  scf_unref(scf);
  return d;
}

void ct_http_client_free(ct_http_client *c) {
  ct_deferred_unref(ct_http_client_close(c));
}
