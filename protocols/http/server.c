/*
 * server.c: the HTTP/1.1 server protocol.
 *
 * One `conn` per connection drives libhttp-parser.  The parser's callbacks
 * point into the transport's read buffer; the bytes of a request are copied
 * once, into the request being built (header fields, target, body), and
 * nothing else is buffered unless parsing is paused.
 *
 * Pipelining: every request gets a `slot` in a FIFO as soon as its headers
 * are complete.  A slot becomes ready when its handler answers (at once,
 * or when its Deferred fires); only the head slot writes, so responses
 * leave in request order however the handlers finish.  When `max_pipeline`
 * slots are waiting, the parser is paused and the unparsed rest of the
 * input is kept until the queue drains, and reading from the peer stops.
 *
 * Time: one timer per connection, never touched per request.  It fires at
 * most `header_timeout` seconds apart and compares the reactor's clock with
 * the deadlines recorded in the connection (headers started at, idle
 * since), so a slow-loris request gets its 408 exactly on time and a
 * keep-alive connection costs no timer operation per request.
 */
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "ctwist/http.h"
#include "ctwist/log.h"
#include "protocols/http/internal.h"

#define HTTP_CHUNK (64u * 1024u)
/* Writes per resume_producing call: bounded work per turn, so that one big
 * download cannot starve the other connections of this reactor. */
#define HTTP_CHUNKS_PER_TURN 8

typedef struct conn conn;

/* A request body's state.  Buffered routes stay at BODY_BUFFER; streamed
 * ones (ct_http_site_route_stream) go WAIT (handler called, no consumer
 * yet: the parser holds) -> READ (a consumer gets the pieces) or DISCARD
 * (replied without reading) -> END. */
enum { BODY_BUFFER = 0, BODY_WAIT, BODY_READ, BODY_DISCARD, BODY_END };

typedef struct slot {
  struct slot *next;
  conn *c; /* NULL once the connection is gone */
  ct_http_request req;
  ct_http_response *resp; /* set when ready */
  ct_deferred *d;         /* a handler's pending Deferred */
  int ready, queued, send_continue, close_after, head_only;
  int status;    /* what was sent, for the log */
  uint64_t sent; /* body bytes sent, for the log */
  size_t body_cap;
  /* Routing (at the end of the headers). */
  ct_http_handler_cb fn; /* NULL: no route, 404 */
  void *fn_arg;
  /* Streamed bodies. */
  int body_state, body_complete, body_paused, has_body, expect_continue;
  ct_http_body_consumer consumer;
} slot;

struct conn {
  ct_protocol base;
  ct_http_site *site;
  ct_address peer; /* asked once (a syscall), copied into each request */
  http_parser parser;
  /* The request being parsed. */
  slot *cur;
  ct__buf url, field, value;
  int last_was_value;
  size_t header_bytes;
  int error_status; /* set by a callback that stops the parser */
  const char *error_detail;
  /* Pipeline. */
  slot *head, *tail;
  unsigned queued;
  int in_parse, in_pump, pump_again;
  int parser_paused, reading_paused;
  int body_hold; /* the parser waits for a streamed body's consumer */
  ct__buf stash; /* input held while the parser is paused */
  int closing;   /* no more requests: close once the queue drains */
  int lost;
  /* The head slot's body, while it streams. */
  int streaming, chunked;
  int no_sendfile;    /* the transport cannot sendfile: pread + write */
  uint64_t remaining; /* FILE and sized SOURCE bodies */
  char *chunk;        /* HTTP_CHUNK bytes, while streaming */
  /* Timers (see the file comment). */
  ct_delayed_call *timer;
  double header_started; /* < 0: not reading headers */
  double idle_since;     /* < 0: busy */
};

static void pump_output(conn *c);
static void feed(conn *c, const char *data, size_t len);
static void conn_fail(conn *c, int status, const char *detail);
static void maybe_resume_parsing(conn *c);
static void dispatch(slot *s);

/* ------------------------------------------------------------------ slots */

static void slot_free(slot *s) {
  ct_http_request *q = &s->req;
  free(q->target);
  free(q->path);
  free(q->raw_path);
  free(q->query);
  free(q->body);
  ct_http_headers_clear(&q->params);
  ct_http_headers_clear(&q->headers);
  ct_http_response_free(s->resp);
  free(s);
}

static slot *slot_new(conn *c) {
  slot *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NULL;
  s->c = c;
  s->req.reactor = c->site->reactor;
  s->req.method = "GET";
  s->req.version_major = 1;
  s->req.version_minor = 1;
  s->req.peer = c->peer;
  return s;
}

static void slot_enqueue(conn *c, slot *s) {
  s->queued = 1;
  if (c->tail != NULL)
    c->tail->next = s;
  else
    c->head = s;
  c->tail = s;
  c->queued++;
  c->idle_since = -1;
}

/* ------------------------------------------------------------ parser glue */

static conn *conn_of(http_parser *p) {
  return p->data;
}

/* Stop the parser with `status`; the error is answered after it returns. */
static int stop(conn *c, int status, const char *detail) {
  if (c->error_status == 0) {
    c->error_status = status;
    c->error_detail = detail;
  }
  return -1;
}

static int on_message_begin(http_parser *p) {
  conn *c = conn_of(p);
  c->cur = slot_new(c);
  if (c->cur == NULL)
    return stop(c, 503, "out of memory");
  ct__buf_clear(&c->url);
  ct__buf_clear(&c->field);
  ct__buf_clear(&c->value);
  c->last_was_value = 0;
  c->header_bytes = 0;
  c->header_started = ct_reactor_seconds(c->site->reactor);
  c->idle_since = -1;
  return 0;
}

static int count_header(conn *c, size_t n) {
  c->header_bytes += n;
  if (c->header_bytes > c->site->limits.max_header_total)
    return stop(c, 431, "request headers are too large");
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  conn *c = conn_of(p);
  if (c->url.len + len > c->site->limits.max_header_line)
    return stop(c, 414, "request target is too long");
  if (count_header(c, len) != 0 || ct__http_buf_add(&c->url, at, len) != 0)
    return stop(c, 431, "request headers are too large");
  return 0;
}

static int finish_header(conn *c) {
  return ct__http_flush_header(&c->cur->req.headers, &c->field, &c->value) == 0
             ? 0
             : stop(c, 503, "out of memory");
}

static int header_piece(conn *c, ct__buf *b, const char *at, size_t len) {
  if (c->field.len + c->value.len + len + 4 > c->site->limits.max_header_line)
    return stop(c, 431, "a request header line is too long");
  if (count_header(c, len + (b == &c->field && b->len == 0 ? 4 : 0)) != 0)
    return -1;
  if (ct__http_buf_add(b, at, len) != 0)
    return stop(c, 503, "out of memory");
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  conn *c = conn_of(p);
  if (c->last_was_value) {
    if (finish_header(c) != 0)
      return -1;
    c->last_was_value = 0;
  }
  return header_piece(c, &c->field, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  conn *c = conn_of(p);
  c->last_was_value = 1;
  return header_piece(c, &c->value, at, len);
}

/* Split `query` at '&' and '=' into decoded parameters. */
static int parse_params(ct_http_headers *out, const char *q) {
  while (*q) {
    const char *amp = strchr(q, '&');
    size_t n = amp ? (size_t)(amp - q) : strlen(q);
    if (n > 0) {
      const char *eq = memchr(q, '=', n);
      size_t kn = eq ? (size_t)(eq - q) : n;
      size_t vn = eq ? n - kn - 1 : 0;
      char *k = malloc(kn + 1), *v = malloc(vn + 1);
      int rc = CT_ENOMEM;
      long kl, vl;
      if (k != NULL && v != NULL) {
        kl = ct_http_decode(q, kn, k, 1);
        vl = ct_http_decode(eq ? eq + 1 : "", vn, v, 1);
        rc = kl < 0 || vl < 0
                 ? CT_EPARSE
                 : ct__http_headers_addn(out, k, (size_t)kl, v, (size_t)vl);
      }
      free(k);
      free(v);
      if (rc != 0)
        return rc;
    }
    q += n + (amp ? 1 : 0);
  }
  return 0;
}

/* Fill the request from the target: raw path, decoded path, query. */
static int parse_target(conn *c, ct_http_request *q) {
  const char *t = ct__http_str(&c->url);
  q->target = strdup(t);
  if (q->target == NULL)
    return stop(c, 503, "out of memory");
  const char *path = t;
  /* An absolute-form target ("http://host/x", sent to proxies) is also
   * valid for origin servers (RFC 9112 3.2.2): keep its path. */
  if (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0) {
    path = strchr(strstr(t, "//") + 2, '/');
    if (path == NULL)
      path = "/";
  }
  if (*path != '/')
    return stop(c, 400, "the request target is not a path");
  size_t plen = strcspn(path, "?#");
  const char *qs = path[plen] == '?' ? path + plen + 1 : "";
  size_t qlen = strcspn(qs, "#");
  q->raw_path = strndup(path, plen);
  q->query = strndup(qs, qlen);
  q->path = malloc(plen + 1);
  if (q->raw_path == NULL || q->query == NULL || q->path == NULL)
    return stop(c, 503, "out of memory");
  long n = ct_http_decode(path, plen, q->path, 0);
  if (n < 0)
    return stop(c, 400, "malformed percent-escape in the path");
  if (strlen(q->path) != (size_t)n)
    return stop(c, 400, "NUL byte in the path");
  int rc = parse_params(&q->params, q->query);
  if (rc == CT_EPARSE)
    return stop(c, 400, "malformed percent-escape in the query");
  if (rc != 0)
    return stop(c, 503, "out of memory");
  return 0;
}

/* ------------------------------------------------------ streamed bodies */

/* Stop parsing until a streamed body's consumer wants more. */
static void body_hold(conn *c) {
  if (c->body_hold)
    return;
  c->body_hold = 1;
  http_parser_pause(&c->parser, 1);
  if (!c->in_parse) /* else feed() sees the pause and stashes the rest */
    c->parser_paused = 1;
  if (!c->reading_paused && !c->lost) {
    c->reading_paused = 1;
    ct_transport_pause_reading(c->base.transport);
  }
}

static void body_release(conn *c) {
  if (!c->body_hold)
    return;
  c->body_hold = 0;
  if (c->in_parse)
    http_parser_pause(&c->parser, 0); /* held and released in one callback */
  else
    maybe_resume_parsing(c);
}

/* The end of a streamed body: the consumer's `end` (if it has one). */
static void body_end(slot *s, int code, const char *why) {
  int reading = s->body_state == BODY_READ;
  s->body_state = BODY_END;
  if (!reading)
    return;
  ct_failure *f = code != 0 ? ct_failure_new(code, "%s", why) : NULL;
  s->consumer.end(s->consumer.arg, f);
  ct_failure_free(f);
}

/* The rest of a streamed body will not be read: the connection reads no
 * more, answers `s` (and what precedes it) and closes.  `code` != 0: the
 * consumer's `end` gets that failure. */
static void body_stop(conn *c, slot *s, int code, const char *why) {
  s->close_after = 1;
  c->closing = 1;
  if (c->cur == s)
    c->cur = NULL;
  c->body_hold = 0;
  if (c->in_parse)
    http_parser_pause(&c->parser, 1);
  if (!c->reading_paused && !c->lost) {
    c->reading_paused = 1;
    ct_transport_pause_reading(c->base.transport);
  }
  ct__buf_free(&c->stash);
  if (code != 0)
    body_end(s, code, why);
  else
    s->body_state = BODY_END;
}

static slot *slot_of(ct_http_request *req) {
  return (slot *)(void *)((char *)req - offsetof(slot, req));
}

int ct_http_request_read_body(ct_http_request *req,
                              const ct_http_body_consumer *consumer) {
  if (req == NULL || consumer == NULL || consumer->data == NULL ||
      consumer->end == NULL)
    return CT_EINVAL;
  slot *s = slot_of(req);
  if (s->c == NULL)
    return CT_ECLOSED;
  if (s->body_state != BODY_WAIT)
    return CT_EINVAL;
  conn *c = s->c;
  s->consumer = *consumer;
  s->body_state = BODY_READ;
  if (s->body_complete) {
    body_end(s, 0, NULL);
    return 0;
  }
  if (s->expect_continue) {
    s->expect_continue = 0;
    s->send_continue = 1; /* in its turn (pump_output) */
  }
  if (c->cur == s)
    body_release(c);
  pump_output(c);
  return 0;
}

void ct_http_request_pause_body(ct_http_request *req) {
  slot *s = req != NULL ? slot_of(req) : NULL;
  if (s == NULL || s->c == NULL || s->body_state != BODY_READ || s->body_paused)
    return;
  s->body_paused = 1;
  if (s->c->cur == s)
    body_hold(s->c);
}

void ct_http_request_resume_body(ct_http_request *req) {
  slot *s = req != NULL ? slot_of(req) : NULL;
  if (s == NULL || !s->body_paused)
    return;
  s->body_paused = 0;
  if (s->c != NULL && s->c->cur == s && s->body_state == BODY_READ)
    body_release(s->c);
}

/* The connection ends (EOF or lost) while a streamed body is arriving. */
static void body_lost(conn *c) {
  slot *s = c->cur;
  if (s == NULL || s->body_state == BODY_BUFFER)
    return;
  c->cur = NULL;
  c->body_hold = 0;
  body_end(s, CT_ECONNLOST, "the client went away before the body ended");
}

/* Find the request's route; streamed routes start at BODY_WAIT. */
static void route_slot(conn *c, slot *s) {
  ct_http_request *q = &s->req;
  const ct__http_route *rt = ct__http_find_route(c->site, q->path);
  if (rt == NULL)
    return;
  s->fn = rt->fn;
  s->fn_arg = rt->arg;
  q->subpath = rt->len == 1 ? q->path : q->path + rt->len;
  if (*q->subpath == 0)
    q->subpath = "/";
  if (rt->stream)
    s->body_state = BODY_WAIT;
}

static void write_continue(conn *c) {
  static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
  ct_transport_write(c->base.transport, cont, sizeof cont - 1);
}

static int on_headers_complete(http_parser *p) {
  conn *c = conn_of(p);
  if (finish_header(c) != 0)
    return -1;
  c->header_started = -1;
  slot *s = c->cur;
  ct_http_request *q = &s->req;
  q->method = http_method_str((enum http_method)p->method);
  q->version_major = p->http_major;
  q->version_minor = p->http_minor;
  q->keep_alive = http_should_keep_alive(p);
  s->head_only = p->method == HTTP_HEAD;
  slot_enqueue(c, s);
  if (p->http_major != 1)
    return stop(c, 505, "only HTTP/1.x is supported");
  if (p->method == HTTP_CONNECT)
    return stop(c, 405, "CONNECT is not supported");
  if (parse_target(c, q) != 0)
    return -1;
  route_slot(c, s);
  int streamed = s->body_state == BODY_WAIT;
  if (!streamed && (p->flags & F_CONTENTLENGTH) &&
      p->content_length > c->site->limits.max_body)
    return stop(c, 413, "the request body is too large");
  s->has_body = (p->flags & F_CHUNKED) ||
                ((p->flags & F_CONTENTLENGTH) && p->content_length > 0);
  const char *expect = ct_http_headers_get(&q->headers, "Expect");
  if (expect != NULL) {
    if (strcasecmp(expect, "100-continue") != 0)
      return stop(c, 417, "only Expect: 100-continue is supported");
    if (p->http_minor >= 1 && streamed)
      s->expect_continue = 1; /* sent by ct_http_request_read_body() */
    else if (p->http_minor >= 1 && c->head == s)
      write_continue(c);
    else if (p->http_minor >= 1)
      s->send_continue = 1;
  }
  if (streamed) {
    /* The handler runs now; until it reads the body (or answers), the
     * parser holds the body back. */
    dispatch(s);
    if (c->cur == s && s->body_state == BODY_WAIT && s->has_body)
      body_hold(c);
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  conn *c = conn_of(p);
  slot *s = c->cur;
  if (s->body_state != BODY_BUFFER) {
    /* Streamed: to the consumer, or dropped (DISCARD).  The parser holds
     * while there is no consumer (WAIT) or it is paused. */
    if (s->body_state == BODY_READ &&
        s->consumer.data(s->consumer.arg, at, len) != 0)
      body_stop(c, s, 0, NULL);
    return 0;
  }
  ct_http_request *q = &c->cur->req;
  if (q->body_len + len > c->site->limits.max_body)
    return stop(c, 413, "the request body is too large");
  if (ct__http_body_append(&q->body, &q->body_len, &s->body_cap, at, len) != 0)
    return stop(c, 503, "out of memory");
  return 0;
}

/* ---------------------------------------------------------------- handlers */

static void slot_ready(slot *s, ct_http_response *resp) {
  s->resp = resp;
  s->ready = 1;
  conn *c = s->c;
  if (c != NULL && s->body_state == BODY_WAIT && !s->body_complete) {
    /* Answered without reading the body: a client waiting for 100
     * Continue is not sent it (and the connection closes after the
     * answer); otherwise the body is read and dropped. */
    if (s->expect_continue && s->has_body) {
      body_stop(c, s, 0, NULL);
    } else {
      s->body_state = BODY_DISCARD;
      if (c->cur == s)
        body_release(c);
    }
  }
  if (s->c != NULL)
    pump_output(s->c);
}

static void slot_fail(slot *s, ct_failure *f) {
  char what[256];
  snprintf(what, sizeof what, "handler of %s %.200s failed", s->req.method,
           s->req.target ? s->req.target : "?");
  ct_log_failure(CT_LOG_ERROR, "http", what, f);
  ct_failure_free(f);
  slot_ready(s, ct_http_response_error(500, "the handler failed"));
}

static ct_step on_reply(ct_result r, void *arg) {
  slot *s = arg;
  ct_deferred *d = s->d;
  s->d = NULL;
  if (s->c == NULL) {
    /* The connection went away: nothing to answer. */
    ct_value_free(r.value);
    ct_failure_free(r.failure);
    slot_free(s);
  } else if (r.failure != NULL) {
    slot_fail(s, r.failure);
  } else if (r.value.ptr == NULL) {
    slot_fail(s, ct_failure_new(CT_EINVAL, "handler's Deferred fired "
                                           "without a response"));
  } else {
    /* The response is taken over whatever destructor the value had. */
    slot_ready(s, r.value.ptr);
  }
  ct_deferred_unref(d);
  return ct_pass(CT_NONE);
}

static void dispatch(slot *s) {
  ct_http_request *q = &s->req;
  if (q->body == NULL) {
    q->body = calloc(1, 1);
    if (q->body == NULL) {
      slot_ready(s, ct_http_response_error(503, "out of memory"));
      return;
    }
  }
  if (s->fn == NULL) {
    slot_ready(s, ct_http_response_error(404, "no such resource"));
    return;
  }
  ct_http_reply rep = s->fn(q, s->fn_arg);
  if (rep.failure != NULL) {
    ct_http_response_free(rep.response);
    ct_deferred_unref(rep.deferred);
    slot_fail(s, rep.failure);
  } else if (rep.deferred != NULL) {
    s->d = rep.deferred;
    if (ct_deferred_add_both(s->d, on_reply, s) != 0) {
      ct_deferred_unref(s->d);
      s->d = NULL;
      slot_fail(s, ct_failure_new(CT_ENOMEM, "out of memory"));
    }
  } else {
    slot_ready(s, rep.response);
  }
}

static int on_message_complete(http_parser *p) {
  conn *c = conn_of(p);
  slot *s = c->cur;
  c->cur = NULL;
  if (!s->req.keep_alive || p->upgrade) {
    s->close_after = 1;
    c->closing = 1;
  }
  if (s->body_state == BODY_BUFFER) {
    dispatch(s);
  } else {
    /* Streamed: the handler already runs; the body is complete. */
    s->body_complete = 1;
    if (s->body_state != BODY_WAIT)
      body_end(s, 0, NULL);
  }
  if (c->closing || c->queued >= c->site->limits.max_pipeline) {
    /* Stop here: the rest of the input waits in the stash. */
    http_parser_pause(p, 1);
  }
  return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static int map_parser_error(enum http_errno e, const char **detail) {
  *detail = http_errno_description(e);
  switch (e) {
  case HPE_HEADER_OVERFLOW:
    return 431;
  default:
    return 400;
  }
}

static void stash_input(conn *c, const char *data, size_t len) {
  if (len == 0)
    return;
  if (ct__http_buf_add(&c->stash, data, len) != 0) {
    conn_fail(c, 503, "out of memory");
    return;
  }
  if (!c->reading_paused && !c->lost) {
    c->reading_paused = 1;
    ct_transport_pause_reading(c->base.transport);
  }
}

/* Run the parser over `data`; what it does not take (paused) is stashed. */
static void feed(conn *c, const char *data, size_t len) {
  c->in_parse = 1;
  size_t n = http_parser_execute(&c->parser, &settings, data, len);
  c->in_parse = 0;
  enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
  if (c->error_status != 0) {
    conn_fail(c, c->error_status, c->error_detail);
  } else if (e == HPE_PAUSED) {
    c->parser_paused = 1;
    if (!c->closing)
      stash_input(c, data + n, len - n);
  } else if (e != HPE_OK) {
    const char *detail;
    int status = map_parser_error(e, &detail);
    conn_fail(c, status, detail);
  } else if (c->parser.upgrade) {
    /* The parser stops at an Upgrade; the request was answered as a
     * plain one and the connection closes after it. */
    c->closing = 1;
  }
  pump_output(c);
}

/* Unpause the parser when the queue has room again. */
static void maybe_resume_parsing(conn *c) {
  if (!c->parser_paused || c->closing || c->in_parse || c->lost ||
      c->body_hold || c->queued >= c->site->limits.max_pipeline)
    return;
  c->parser_paused = 0;
  http_parser_pause(&c->parser, 0);
  ct__buf held = c->stash;
  c->stash = (ct__buf)CT__BUF_INIT;
  if (c->reading_paused) {
    c->reading_paused = 0;
    ct_transport_resume_reading(c->base.transport);
  }
  if (held.len > 0)
    feed(c, ct__buf_head(&held), held.len);
  ct__buf_free(&held);
}

/* ----------------------------------------------------------------- errors */

/* Answer `status` after the responses already owed, then close. */
static void conn_fail(conn *c, int status, const char *detail) {
  if (c->closing && c->cur == NULL && c->error_status == 0)
    return;
  slot *s = c->cur;
  c->error_status = 0;
  if (s != NULL && s->body_state != BODY_BUFFER) {
    /* A streamed body went wrong (bad chunked framing): its handler has
     * its request and answers; the consumer hears why. */
    ct_log(CT_LOG_WARN, "http", "streamed request body of %s failed: %s",
           s->req.target, detail);
    body_stop(c, s, CT_EPROTO, detail);
    return;
  }
  c->cur = NULL;
  if (s == NULL) {
    s = slot_new(c);
    if (s == NULL) {
      ct_transport_abort(c->base.transport);
      return;
    }
  }
  if (!s->queued)
    slot_enqueue(c, s);
  if (s->req.target == NULL) {
    /* For the access log: what was received of the target. */
    s->req.target = strdup(c->url.len ? ct__http_str(&c->url) : "-");
    s->req.method = c->parser.method <= HTTP_SOURCE
                        ? http_method_str((enum http_method)c->parser.method)
                        : "-";
  }
  if (status >= 500 && status != 505 && status != 501)
    ct_log(CT_LOG_WARN, "http", "request failed: %d %s", status, detail);
  s->send_continue = 0;
  s->close_after = 1;
  c->closing = 1;
  c->header_started = -1;
  if (!c->reading_paused && !c->lost) {
    c->reading_paused = 1;
    ct_transport_pause_reading(c->base.transport);
  }
  ct__buf_free(&c->stash);
  slot_ready(s, ct_http_response_error(status, detail));
}

/* -------------------------------------------------------------- responses */

static int no_body_status(int status) {
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

/* Append "name: value\r\n" with one reservation. */
static int put_header(ct__buf *b, const char *name, size_t nl,
                      const char *value, size_t vl) {
  char *t = ct__buf_tail(b, nl + vl + 4);
  if (t == NULL)
    return CT_ENOMEM;
  memcpy(t, name, nl);
  memcpy(t + nl, ": ", 2);
  memcpy(t + nl + 2, value, vl);
  memcpy(t + nl + 2 + vl, "\r\n", 2);
  ct__buf_commit(b, nl + vl + 4);
  return 0;
}

#define PUT_LIT(b, lit) ct__buf_append((b), (lit), sizeof(lit) - 1)

/* Format the status line and headers of the head slot into `b` (plain
 * copies: this runs once per response, printf would be most of its cost). */
static int format_head(conn *c, slot *s, ct__buf *b, int64_t len) {
  ct_http_response *r = s->resp;
  ct_http_site *site = c->site;
  const char *reason =
      r->reason != NULL ? r->reason : ct_http_status_text(r->status);
  char line[48];
  int st = r->status >= 100 && r->status <= 999 ? r->status : 500;
  memcpy(line, "HTTP/1.1 ", 9);
  line[9] = (char)('0' + st / 100);
  line[10] = (char)('0' + st / 10 % 10);
  line[11] = (char)('0' + st % 10);
  line[12] = ' ';
  int rc = ct__buf_append(b, line, 13);
  rc = rc ? rc : ct__buf_append(b, reason, strlen(reason));
  rc = rc ? rc : PUT_LIT(b, "\r\n");
  int has_date = 0, has_server = 0;
  for (size_t i = 0; rc == 0 && i < r->headers.count; i++) {
    const ct_http_header *h = &r->headers.items[i];
    size_t nl = strlen(h->name);
    /* The server owns the framing (Content-Length, Transfer-Encoding,
     * Connection); Date and Server are the handler's if it set them. */
    if ((nl == 14 && strcasecmp(h->name, "Content-Length") == 0) ||
        (nl == 17 && strcasecmp(h->name, "Transfer-Encoding") == 0) ||
        (nl == 10 && strcasecmp(h->name, "Connection") == 0))
      continue;
    if (nl == 4 && strcasecmp(h->name, "Date") == 0)
      has_date = 1;
    else if (nl == 6 && strcasecmp(h->name, "Server") == 0)
      has_server = 1;
    rc = put_header(b, h->name, nl, h->value, strlen(h->value));
  }
  if (rc == 0 && !has_date)
    rc = put_header(b, "Date", 4, ct__http_site_date(site), 29);
  if (rc == 0 && site->server_name != NULL && !has_server)
    rc = put_header(b, "Server", 6, site->server_name,
                    strlen(site->server_name));
  if (rc == 0 && !no_body_status(r->status)) {
    if (len >= 0) {
      char num[24];
      size_t n = sizeof num;
      uint64_t v = (uint64_t)len;
      do
        num[--n] = (char)('0' + v % 10);
      while ((v /= 10) != 0);
      rc = put_header(b, "Content-Length", 14, num + n, sizeof num - n);
    } else if (c->chunked) {
      rc = PUT_LIT(b, "Transfer-Encoding: chunked\r\n");
    }
  }
  if (rc == 0 && s->close_after)
    rc = PUT_LIT(b, "Connection: close\r\n");
  else if (rc == 0 && s->req.version_minor == 0)
    rc = PUT_LIT(b, "Connection: keep-alive\r\n");
  return rc ? rc : PUT_LIT(b, "\r\n");
}

/* The head slot is fully written: log it, pop it, maybe close. */
static void finish_head(conn *c) {
  slot *s = c->head;
  c->head = s->next;
  if (c->head == NULL)
    c->tail = NULL;
  c->queued--;
  c->site->requests++;
  ct__http_access_log(c->site, &s->req, s->status, s->sent);
  int close_after = s->close_after;
  slot_free(s);
  if (close_after) {
    c->closing = 1;
    ct_transport_lose_connection(c->base.transport);
  } else if (c->head == NULL && c->cur == NULL) {
    c->idle_since = ct_reactor_seconds(c->site->reactor);
  }
}

/* Write framing around `n` body bytes of a streamed body. */
static int write_body_piece(conn *c, const char *d, size_t n) {
  ct_transport *t = c->base.transport;
  if (!c->chunked)
    return ct_transport_write(t, d, n);
  char hdr[24];
  int hl = snprintf(hdr, sizeof hdr, "%zx\r\n", n);
  struct iovec iov[3] = {{hdr, (size_t)hl}, {(void *)d, n}, {"\r\n", 2}};
  return ct_transport_writev(t, iov, 3);
}

static void stream_done(conn *c, int ok) {
  ct_transport_unregister_producer(c->base.transport);
  c->streaming = 0;
  free(c->chunk);
  c->chunk = NULL;
  if (!ok) {
    ct_transport_abort(c->base.transport);
    return;
  }
  if (c->chunked)
    ct_transport_write(c->base.transport, "0\r\n\r\n", 5);
  finish_head(c);
  pump_output(c);
}

/* A pull producer: the connection's output drained, send some more. */
static void stream_more(void *arg) {
  conn *c = arg;
  if (!c->streaming || c->lost)
    return;
  slot *s = c->head;
  ct_http_response *r = s->resp;
  for (int i = 0; i < HTTP_CHUNKS_PER_TURN; i++) {
    if (ct_transport_buffered(c->base.transport) >= HTTP_CHUNK)
      return;
    size_t got = 0;
    int end = 0;
    if (r->body_kind == CT_HTTP_BODY_FILE && !c->chunked && !c->no_sendfile) {
      /* Zero copy: the kernel sends the file from the page cache, behind
       * the head already written.  0: the socket is full, and this
       * producer is resumed when it drains. */
      long long n = ct_transport_sendfile(c->base.transport, r->fd,
                                          (long long)r->file_offset,
                                          (size_t)c->remaining);
      if (n == CT_ENOSYS) {
        c->no_sendfile = 1; /* TLS, memory, a policy: copy instead */
        continue;
      }
      if (n < 0) {
        ct_log(CT_LOG_ERROR, "http", "sending a file for %s: %s", s->req.target,
               n == CT_ERANGE ? "unexpected end of file" : ct_strerror((int)n));
        stream_done(c, 0);
        return;
      }
      if (n == 0)
        return;
      r->file_offset += n;
      c->remaining -= (uint64_t)n;
      s->sent += (uint64_t)n;
      if (c->remaining == 0) {
        stream_done(c, 1);
        return;
      }
      continue;
    }
    if (r->body_kind == CT_HTTP_BODY_FILE) {
      size_t want =
          c->remaining < HTTP_CHUNK ? (size_t)c->remaining : HTTP_CHUNK;
      ssize_t n = pread(r->fd, c->chunk, want, r->file_offset);
      if (n <= 0) {
        ct_log(CT_LOG_ERROR, "http", "reading %s for %s: %s",
               n < 0 ? "a file" : "a file (shrunk)", s->req.target,
               n < 0 ? strerror(errno) : "unexpected end of file");
        stream_done(c, 0);
        return;
      }
      got = (size_t)n;
      r->file_offset += n;
      c->remaining -= got;
      end = c->remaining == 0;
    } else {
      int rc = r->source.read(r->source.arg, c->chunk, HTTP_CHUNK, &got);
      if (rc < 0) {
        ct_log(CT_LOG_ERROR, "http", "body source of %s failed: %s",
               s->req.target, ct_strerror(rc));
        stream_done(c, 0);
        return;
      }
      if (got > HTTP_CHUNK)
        got = HTTP_CHUNK;
      end = rc == 1;
      if (r->source_length >= 0) {
        if (got > c->remaining) {
          ct_log(CT_LOG_ERROR, "http",
                 "body source of %s is longer than "
                 "its declared length",
                 s->req.target);
          stream_done(c, 0);
          return;
        }
        c->remaining -= got;
        if (end && c->remaining != 0) {
          ct_log(CT_LOG_ERROR, "http",
                 "body source of %s ended %llu bytes "
                 "short",
                 s->req.target, (unsigned long long)c->remaining);
          stream_done(c, 0);
          return;
        }
      }
    }
    if (got > 0) {
      s->sent += got;
      if (write_body_piece(c, c->chunk, got) != 0) {
        stream_done(c, 0);
        return;
      }
    }
    if (end) {
      stream_done(c, 1);
      return;
    }
  }
}

static void stream_stop(void *arg) {
  conn *c = arg;
  c->streaming = 0;
}

static const ct_producer_ops stream_ops = {NULL, stream_more, stream_stop};

/* Write the head slot's response (start streaming a large body). */
static void write_head(conn *c) {
  slot *s = c->head;
  ct_http_response *r = s->resp;
  ct_transport *t = c->base.transport;
  if (r == NULL) {
    r = s->resp = ct_http_response_error(503, "out of memory");
    if (r == NULL) {
      ct_transport_abort(t);
      return;
    }
  }
  ct__http_apply_conditionals(&s->req, &s->resp);
  r = s->resp;
  if (no_body_status(r->status))
    ct__http_response_drop_body(r);
  int64_t len = ct__http_body_length(r);
  c->chunked = 0;
  if (len < 0) {
    if (s->req.version_minor >= 1)
      c->chunked = 1;
    else
      s->close_after = 1; /* HTTP/1.0: the close ends the body */
  }
  if (c->closing && s->next == NULL)
    s->close_after = 1;
  s->status = r->status;
  /* Most heads (and small files with them) fit on the stack. */
  char store[4096];
  ct__buf head;
  ct__buf_init_storage(&head, store, sizeof store);
  if (format_head(c, s, &head, len) != 0) {
    ct__buf_free(&head);
    ct_transport_abort(t);
    return;
  }
  int send_body = !s->head_only && !no_body_status(r->status);
  if (!send_body || r->body_kind == CT_HTTP_BODY_NONE) {
    ct_transport_write(t, ct__buf_head(&head), head.len);
    ct__buf_free(&head);
    finish_head(c);
    return;
  }
  if (r->body_kind == CT_HTTP_BODY_MEMORY) {
    struct iovec iov[2] = {{ct__buf_head(&head), head.len},
                           {r->data, r->data_len}};
    ct_transport_writev(t, iov, 2);
    s->sent = r->data_len;
    ct__buf_free(&head);
    finish_head(c);
    return;
  }
  if (r->body_kind == CT_HTTP_BODY_FILE && r->file_length <= HTTP_CHUNK) {
    /* Small files leave with their headers in one write. */
    size_t want = (size_t)r->file_length;
    char *at = ct__buf_tail(&head, want);
    ssize_t n = at != NULL ? pread(r->fd, at, want, r->file_offset) : -1;
    if (n != (ssize_t)want) {
      ct_log(CT_LOG_ERROR, "http", "reading the file for %s: %s", s->req.target,
             at == NULL ? "out of memory"
             : n < 0    ? strerror(errno)
                        : "short read");
      ct__buf_free(&head);
      ct_transport_abort(t);
      return;
    }
    ct__buf_commit(&head, want);
    ct_transport_write(t, ct__buf_head(&head), head.len);
    s->sent = want;
    ct__buf_free(&head);
    finish_head(c);
    return;
  }
  ct_transport_write(t, ct__buf_head(&head), head.len);
  ct__buf_free(&head);
  c->chunk = malloc(HTTP_CHUNK);
  if (c->chunk == NULL ||
      ct_transport_register_producer(t, &stream_ops, c, 0) != 0) {
    free(c->chunk);
    c->chunk = NULL;
    ct_transport_abort(t);
    return;
  }
  c->streaming = 1;
  c->remaining = r->body_kind == CT_HTTP_BODY_FILE ? r->file_length
                 : len >= 0                        ? (uint64_t)len
                                                   : 0;
}

/* Write every ready response at the head of the queue, in order. */
static void pump_output(conn *c) {
  if (c->in_pump) {
    c->pump_again = 1;
    return;
  }
  c->in_pump = 1;
  do {
    c->pump_again = 0;
    /* A streamed request's answer waits for the end of its body. */
    while (!c->lost && !c->streaming && c->head != NULL && c->head->ready &&
           c->head != c->cur && !ct_transport_is_closing(c->base.transport))
      write_head(c);
    if (!c->lost && !c->streaming && c->head != NULL &&
        c->head->send_continue) {
      c->head->send_continue = 0;
      write_continue(c);
    }
    if (!c->lost && c->closing && c->head == NULL && c->cur == NULL &&
        !ct_transport_is_closing(c->base.transport))
      ct_transport_lose_connection(c->base.transport);
    maybe_resume_parsing(c);
  } while (c->pump_again && !c->lost);
  c->in_pump = 0;
}

/* ------------------------------------------------------------------ timer */

static void on_timer(void *arg) {
  conn *c = arg;
  const ct_http_limits *l = &c->site->limits;
  double now = ct_reactor_seconds(c->site->reactor);
  double next = now + l->header_timeout;
  if (c->lost)
    return;
  if (c->header_started >= 0) {
    double deadline = c->header_started + l->header_timeout;
    if (now >= deadline) {
      if (c->cur != NULL || c->url.len > 0)
        conn_fail(c, 408, "the request headers took too long");
      else
        ct_transport_lose_connection(c->base.transport);
      pump_output(c);
      return;
    }
    next = deadline;
  } else if (c->idle_since >= 0 && c->head == NULL && c->cur == NULL) {
    double deadline = c->idle_since + l->idle_timeout;
    if (now >= deadline) {
      c->closing = 1;
      ct_transport_lose_connection(c->base.transport);
      return;
    }
    if (deadline < next)
      next = deadline;
  }
  ct_delayed_call_reset(c->timer, next - now);
}

/* --------------------------------------------------------------- protocol */

static void conn_made(ct_protocol *p, ct_transport *t) {
  conn *c = (conn *)p;
  c->site = p->factory->user;
  c->site->live++;
  ct_transport_get_peer(t, &c->peer);
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  c->header_started = -1;
  c->idle_since = ct_reactor_seconds(c->site->reactor);
  double first = c->site->limits.header_timeout;
  if (c->site->limits.idle_timeout < first)
    first = c->site->limits.idle_timeout;
  c->timer = ct_call_later(c->site->reactor, first, on_timer, c);
  if (c->timer != NULL)
    ct_delayed_call_ref(c->timer);
}

static void conn_data(ct_protocol *p, const char *data, size_t len) {
  conn *c = (conn *)p;
  if (c->closing)
    return; /* a request after "Connection: close" or an error: ignored */
  if (c->parser_paused) {
    stash_input(c, data, len);
    return;
  }
  feed(c, data, len);
}

/* Forget the queued slots from the first one not answered yet (all of
 * them once the connection is lost): their handlers' Deferreds are
 * cancelled, and on_reply frees those slots. */
static void drop_unanswered(conn *c) {
  slot *prev = NULL, *s = c->head;
  while (s != NULL && s->ready && !c->lost) {
    prev = s;
    s = s->next;
  }
  if (prev != NULL)
    prev->next = NULL;
  else
    c->head = NULL;
  c->tail = prev;
  while (s != NULL) {
    slot *next = s->next;
    c->queued--;
    s->c = NULL;
    s->next = NULL;
    if (s->d != NULL)
      ct_deferred_cancel(s->d);
    else
      slot_free(s);
    s = next;
  }
}

static int conn_eof(ct_protocol *p) {
  conn *c = (conn *)p;
  /* The client is gone (HTTP clients do not half-close): what is already
   * answered still goes out, in order; unanswered handlers are cancelled,
   * as for a lost connection (nginx's default, and Twisted's). */
  c->closing = 1;
  body_lost(c);
  if (c->cur != NULL && !c->cur->queued)
    slot_free(c->cur);
  c->cur = NULL;
  drop_unanswered(c);
  return c->head != NULL;
}

static void conn_lost(ct_protocol *p, const ct_failure *reason) {
  conn *c = (conn *)p;
  (void)reason;
  c->lost = 1;
  c->site->live--;
  if (c->timer != NULL) {
    ct_delayed_call_cancel(c->timer);
    ct_delayed_call_unref(c->timer);
    c->timer = NULL;
  }
  body_lost(c);
  if (c->cur != NULL && !c->cur->queued)
    slot_free(c->cur);
  c->cur = NULL;
  drop_unanswered(c);
  c->streaming = 0;
}

static void conn_free(ct_protocol *p) {
  conn *c = (conn *)p;
  ct__buf_free(&c->url);
  ct__buf_free(&c->field);
  ct__buf_free(&c->value);
  ct__buf_free(&c->stash);
  free(c->chunk);
  free(c);
}

const ct_protocol_ops ct__http_server_ops = {
    .name = "http",
    .flags = CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER,
    .connection_made = conn_made,
    .data_received = conn_data,
    .eof_received = conn_eof,
    .connection_lost = conn_lost,
    .free = conn_free,
};

const size_t ct__http_conn_size = sizeof(conn);
