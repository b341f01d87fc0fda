/* The JSON-RPC 2.0 server: a method table over a message server.
 *
 * A request runs at once.  A method that answers synchronously costs no
 * allocation here: its reply is written into the server's reusable buffer
 * and sent (gathered with the other replies of the same read by the
 * messenger).  Only an async method (ct_wait) gets an `areq`, which keeps
 * the request's id, its Deferred, its deadline timer and its place in the
 * connection's in-flight list (for rpc.cancel and connection loss).
 *
 * Lifetime.  A connection (`sconn`) is referenced by its open messenger,
 * by each async request and by each unfinished batch, so replies finishing
 * after the connection closed find a closed sconn instead of freed
 * memory.
 *
 * A request text served by ct_rpc_server_handle() (JSON-RPC over HTTP)
 * gets an sconn of its own with no messenger: its one reply fires the
 * Deferred `done` instead of becoming a frame.  It stays on the server's
 * list until its last async request is over, so freeing the server
 * reaches it. */
#include <stdlib.h>
#include <string.h>

#include "ctwist/bytes.h"
#include "ctwist/log.h"
#include "protocols/jsonrpc/internal.h"

typedef struct sconn sconn;
typedef struct areq areq;
typedef struct batch batch;

typedef struct method {
  char *name; /* NULL: empty slot */
  ct_rpc_method_cb fn;
  void *arg;
} method;

struct ct_rpc_server {
  ct_reactor *r;
  ct_rpc_server_options opts;
  ct_msg_server *ms;
  method *methods;
  size_t mcap, mcount;
  ct_msg_header *hdr;
  ct__rpc_buf out; /* one reply at a time is written here */
  ct_rpc_server_stats stats;
  sconn *conns; /* live connections (for ct_rpc_server_free) */
};

struct sconn {
  ct_rpc_server *s;  /* NULL once the server is freed */
  ct_messenger *m;   /* NULL for a ct_rpc_server_handle() request */
  ct_deferred *done; /* ct_rpc_server_handle(): fired with the reply */
  unsigned refs;
  int closed, paused, linked;
  size_t inflight;
  size_t batches; /* batches still to answer */
  areq *head;
  sconn *prev, *next;
};

struct areq {
  sconn *c;
  areq *prev, *next;
  json_t *id; /* owned; NULL for a notification */
  ct_deferred *d;
  ct_delayed_call *timer;
  int why; /* 0, or the error code the server cancelled it with */
  batch *b;
};

struct batch {
  sconn *c;
  size_t pending;
  ct__rpc_buf out; /* replies so far, comma-separated */
};

struct ct_rpc_request {
  ct_rpc_server *s;
  sconn *c;
  const char *method;
  int notification;
  double deadline; /* absolute reactor time, or < 0 */
};

/* --------------------------------------------------------- method table */

static size_t name_hash(const char *s) {
  size_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static method *method_find(const ct_rpc_server *s, const char *name) {
  if (s->mcap == 0)
    return NULL;
  size_t j = name_hash(name) & (s->mcap - 1);
  while (s->methods[j].name != NULL) {
    if (strcmp(s->methods[j].name, name) == 0)
      return &s->methods[j];
    j = (j + 1) & (s->mcap - 1);
  }
  return NULL;
}

static int method_grow(ct_rpc_server *s) {
  size_t cap = s->mcap ? s->mcap * 2 : 16;
  method *t = calloc(cap, sizeof *t);
  if (t == NULL)
    return CT_ENOMEM;
  for (size_t i = 0; i < s->mcap; i++) {
    if (s->methods[i].name == NULL)
      continue;
    size_t j = name_hash(s->methods[i].name) & (cap - 1);
    while (t[j].name != NULL)
      j = (j + 1) & (cap - 1);
    t[j] = s->methods[i];
  }
  free(s->methods);
  s->methods = t;
  s->mcap = cap;
  return 0;
}

int ct_rpc_server_register(ct_rpc_server *s, const char *name,
                           ct_rpc_method_cb fn, void *arg) {
  if (s == NULL || name == NULL || fn == NULL || strncmp(name, "rpc.", 4) == 0)
    return CT_EINVAL;
  method *m = method_find(s, name);
  if (m != NULL) {
    m->fn = fn;
    m->arg = arg;
    return 0;
  }
  if ((s->mcount + 1) * 2 > s->mcap && method_grow(s) != 0)
    return CT_ENOMEM;
  char *copy = strdup(name);
  if (copy == NULL)
    return CT_ENOMEM;
  size_t j = name_hash(name) & (s->mcap - 1);
  while (s->methods[j].name != NULL)
    j = (j + 1) & (s->mcap - 1);
  s->methods[j] = (method){copy, fn, arg};
  s->mcount++;
  return 0;
}

/* ------------------------------------------------------------- replies */

static void sconn_link(ct_rpc_server *s, sconn *c) {
  c->next = s->conns;
  if (s->conns != NULL)
    s->conns->prev = c;
  s->conns = c;
  c->linked = 1;
}

static void sconn_unlink(sconn *c) {
  if (!c->linked)
    return;
  c->linked = 0;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    c->s->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

static void sconn_unref(sconn *c) {
  if (--c->refs > 0)
    return;
  if (c->s != NULL)
    sconn_unlink(c);
  ct_messenger_unref(c->m);
  free(c);
}

/* Who sent the requests, for logs. */
static const char *sconn_peer(const sconn *c) {
  return c->m != NULL ? ct_messenger_peer_str(c->m) : "(ct_rpc_server_handle)";
}

static void bytes_value_free(void *p) {
  ct_bytes_unref(p);
}

/* A ct_rpc_server_handle() request cannot be answered: errback its
 * Deferred with `f` (taken) and drop the caller's hold. */
static void oneshot_fail(sconn *c, ct_failure *f) {
  ct_deferred *d = c->done;
  if (d == NULL) {
    ct_failure_free(f);
    return;
  }
  c->done = NULL;
  c->closed = 1;
  ct_deferred_errback(d, f);
  ct_deferred_unref(d);
  sconn_unref(c);
}

/* A ct_rpc_server_handle() request is answered: fire its Deferred with the
 * reply text (NULL: nothing to answer) and drop the caller's hold.  Async
 * notifications it started run on (replies to nobody are dropped). */
static void oneshot_finish(sconn *c, const char *p, size_t n) {
  ct_deferred *d = c->done;
  if (d == NULL)
    return;
  ct_bytes *b = p != NULL ? ct_bytes_new(p, n) : NULL;
  if (p != NULL && b == NULL) {
    oneshot_fail(c, ct_failure_new(CT_ENOMEM, "out of memory"));
    return;
  }
  c->done = NULL;
  c->closed = 1;
  ct_deferred_callback(d,
                       b != NULL ? ct_value_of(b, bytes_value_free) : CT_NONE);
  ct_deferred_unref(d);
  sconn_unref(c);
}

/* Send one whole reply text: a frame, or the handle() request's answer. */
static void sconn_send(ct_rpc_server *s, sconn *c, const char *p, size_t n) {
  if (c->m != NULL)
    ct_messenger_send(c->m, s->hdr, p, n);
  else
    oneshot_finish(c, p, n);
}

/* The connection cannot go on (out of memory half-way through a batch). */
static void sconn_abort(sconn *c) {
  if (c->m != NULL)
    ct_messenger_abort(c->m);
  else
    oneshot_fail(c, ct_failure_new(CT_ENOMEM, "out of memory"));
}

/* Hand the reply in s->out to the connection: into its batch, or as a
 * frame of its own. */
static void emit(ct_rpc_server *s, sconn *c, batch *b) {
  if (s->out.len == 0 || c->closed)
    return;
  if (b != NULL) {
    if ((b->out.len > 1 && ct__rpc_buf_lit(&b->out, ",") != 0) ||
        ct__rpc_buf_add(&b->out, s->out.data, s->out.len) != 0)
      sconn_abort(c); /* out of memory: the batch cannot finish */
    return;
  }
  sconn_send(s, c, s->out.data, s->out.len);
}

static void reply_result(ct_rpc_server *s, sconn *c, batch *b, const json_t *id,
                         const json_t *result) {
  ct__rpc_buf *o = &s->out;
  o->len = 0;
  int rc = ct__rpc_buf_lit(o, "{\"jsonrpc\":\"2.0\",\"result\":");
  if (rc == 0)
    rc = ct__rpc_buf_value(o, result);
  if (rc == 0 && ct__rpc_buf_lit(o, ",\"id\":") == 0) {
    ct__rpc_buf_value(o, id);
    if (ct__rpc_buf_lit(o, "}") == 0) {
      emit(s, c, b);
      return;
    }
  }
  o->len = 0;
  ct_log(CT_LOG_ERROR, "jsonrpc", "cannot serialise a result for %s",
         sconn_peer(c));
  sconn_abort(c);
}

static void reply_error(ct_rpc_server *s, sconn *c, batch *b, const json_t *id,
                        int code, const char *msg, const char *data_json) {
  ct__rpc_buf *o = &s->out;
  o->len = 0;
  s->stats.errors++;
  ct__rpc_buf_lit(o, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":");
  ct__rpc_buf_int(o, code);
  ct__rpc_buf_lit(o, ",\"message\":");
  if (ct__rpc_buf_str(o, msg) != 0)
    ct__rpc_buf_lit(o, "\"(message is not UTF-8)\"");
  if (data_json != NULL) {
    /* Data text comes from a failure anyone could have built: only valid
     * JSON is passed through, anything else is sent as a string. */
    json_t *d = json_loads(data_json, JSON_DECODE_ANY, NULL);
    ct__rpc_buf_lit(o, ",\"data\":");
    if (d != NULL)
      ct__rpc_buf_json(o, d);
    else if (ct__rpc_buf_str(o, data_json) != 0)
      ct__rpc_buf_lit(o, "null");
    json_decref(d);
  }
  ct__rpc_buf_lit(o, "},\"id\":");
  ct__rpc_buf_value(o, id);
  if (ct__rpc_buf_lit(o, "}") != 0) {
    o->len = 0;
    sconn_abort(c);
    return;
  }
  emit(s, c, b);
}

/* Answer a method's failure: its own JSON-RPC error, or -32603 (logged). */
static void reply_failure(ct_rpc_server *s, sconn *c, batch *b,
                          const json_t *id, const char *name,
                          const ct_failure *f) {
  if (ct_rpc_is_error(f)) {
    reply_error(s, c, b, id, f->code, f->message ? f->message : "error",
                ct_rpc_error_data(f));
    return;
  }
  char what[160];
  snprintf(what, sizeof what, "method %s (from %s) failed", name,
           sconn_peer(c));
  ct_log_failure(CT_LOG_ERROR, "jsonrpc", what, f);
  reply_error(s, c, b, id, CT_RPC_INTERNAL_ERROR, "Internal error", NULL);
}

static void batch_release(ct_rpc_server *s, batch *b) {
  if (--b->pending > 0)
    return;
  sconn *c = b->c;
  c->batches--;
  /* Only notifications (or nothing left to say): no reply at all. */
  if (b->out.len > 1 && !c->closed && s != NULL &&
      ct__rpc_buf_lit(&b->out, "]") == 0) {
    sconn_send(s, c, b->out.data, b->out.len);
  }
  if (c->m == NULL)
    oneshot_finish(c, NULL, 0); /* nothing was sent: nothing to answer */
  ct__rpc_buf_free(&b->out);
  free(b);
  sconn_unref(c);
}

/* ------------------------------------------------------ async requests */

static void set_paused(sconn *c, int pause) {
  ct_transport *t = c->m != NULL ? ct_messenger_transport(c->m) : NULL;
  if (t == NULL || c->paused == pause)
    return;
  c->paused = pause;
  if (pause)
    ct_transport_pause_reading(t);
  else
    ct_transport_resume_reading(t);
}

static void areq_unlink(areq *a) {
  sconn *c = a->c;
  if (a->prev != NULL)
    a->prev->next = a->next;
  else
    c->head = a->next;
  if (a->next != NULL)
    a->next->prev = a->prev;
  c->inflight--;
  if (c->s != NULL)
    c->s->stats.inflight--;
}

static ct_step areq_done(ct_result r, void *arg) {
  areq *a = arg;
  sconn *c = a->c;
  ct_rpc_server *s = c->s;
  if (a->timer != NULL) {
    ct_delayed_call_cancel(a->timer);
    ct_delayed_call_unref(a->timer);
  }
  areq_unlink(a);
  if (s != NULL && !c->closed) {
    if (a->id != NULL) {
      if (r.failure != NULL && a->why == CT_RPC_REQUEST_CANCELLED)
        reply_error(s, c, a->b, a->id, a->why, "request cancelled", NULL);
      else if (r.failure != NULL && a->why == CT_RPC_DEADLINE_EXCEEDED)
        reply_error(s, c, a->b, a->id, a->why, "deadline exceeded", NULL);
      else if (r.failure != NULL)
        reply_failure(s, c, a->b, a->id, "(async)", r.failure);
      else
        reply_result(s, c, a->b, a->id, ct_rpc_value_json(r.value));
    } else if (r.failure != NULL && a->why == 0 &&
               !ct_rpc_is_error(r.failure)) {
      ct_log_failure(CT_LOG_ERROR, "jsonrpc", "notification failed", r.failure);
    }
    if (c->paused && c->inflight < s->opts.max_inflight)
      set_paused(c, 0);
  }
  if (r.failure != NULL)
    ct_failure_free(r.failure);
  else
    ct_value_free(r.value);
  if (a->b != NULL)
    batch_release(s, a->b);
  json_decref(a->id);
  ct_deferred_unref(a->d);
  free(a);
  sconn_unref(c);
  return ct_pass(CT_NONE);
}

static void areq_cancel(areq *a, int why) {
  if (a->why != 0)
    return;
  a->why = why;
  if (a->c->s != NULL)
    a->c->s->stats.cancelled++;
  ct_deferred *d = ct_deferred_ref(a->d);
  ct_deferred_cancel(d); /* areq_done may run (and free a) in here */
  ct_deferred_unref(d);
}

static void on_deadline(void *arg) {
  areq_cancel(arg, CT_RPC_DEADLINE_EXCEEDED);
}

static void start_async(ct_rpc_request *rq, sconn *c, batch *b,
                        const json_t *id, ct_deferred *d) {
  ct_rpc_server *s = rq->s;
  areq *a = calloc(1, sizeof *a);
  if (a == NULL) {
    ct_deferred_cancel(d);
    ct_deferred_unref(d);
    if (id != NULL)
      reply_error(s, c, b, id, CT_RPC_INTERNAL_ERROR, "out of memory", NULL);
    return;
  }
  a->c = c;
  c->refs++;
  a->d = d;
  a->id = id != NULL ? json_incref((json_t *)id) : NULL;
  if (b != NULL) {
    a->b = b;
    b->pending++;
  }
  a->next = c->head;
  if (c->head != NULL)
    c->head->prev = a;
  c->head = a;
  c->inflight++;
  s->stats.inflight++;
  if (c->inflight >= s->opts.max_inflight)
    set_paused(c, 1);
  if (rq->deadline >= 0) {
    double left = rq->deadline - ct_reactor_seconds(s->r);
    a->timer = ct_call_later(s->r, left > 0 ? left : 0, on_deadline, a);
    if (a->timer != NULL)
      ct_delayed_call_ref(a->timer);
  }
  if (ct_deferred_add_both(d, areq_done, a) != 0) {
    /* Cannot follow the Deferred: treat as failed at once. */
    ct_result r = {CT_NONE, ct_failure_new(CT_ENOMEM, "out of memory")};
    ct_deferred_cancel(d);
    areq_done(r, a);
  }
}

/* -------------------------------------------------------------- requests */

static int valid_id(const json_t *id) {
  return json_is_string(id) || json_is_number(id) || json_is_null(id);
}

/* rpc.cancel: cancel the request with the given id in flight on `c`. */
static int cancel_request(sconn *c, const json_t *params) {
  const json_t *id = json_is_object(params)  ? json_object_get(params, "id")
                     : json_is_array(params) ? json_array_get(params, 0)
                                             : NULL;
  if (id == NULL)
    return 0;
  for (areq *a = c->head; a != NULL; a = a->next) {
    if (a->id != NULL && a->why == 0 && json_equal(a->id, (json_t *)id)) {
      areq_cancel(a, CT_RPC_REQUEST_CANCELLED);
      return 1;
    }
  }
  return 0;
}

/* One request, taken apart: from a parsed tree (entry_of()) or straight
 * from the text (ct__rpc_envelope_fast()). */
typedef struct entry {
  int valid;        /* jsonrpc "2.0", a string method, params array/object */
  const char *name; /* the method (when valid) */
  json_t *params;   /* borrowed; NULL: none */
  json_t *id;       /* borrowed; NULL: none */
  int notification; /* a valid object without an id */
} entry;

static void entry_check(entry *e, int object, int version_ok, int method_ok) {
  e->notification = object && e->id == NULL;
  e->valid = object && version_ok && method_ok &&
             (e->params == NULL || json_is_array(e->params) ||
              json_is_object(e->params)) &&
             (e->id == NULL || valid_id(e->id));
}

static entry entry_of(json_t *j) {
  entry e = {0};
  e.id = json_object_get(j, "id"); /* NULL for non-objects too */
  e.params = json_object_get(j, "params");
  json_t *ver = json_object_get(j, "jsonrpc");
  json_t *mname = json_object_get(j, "method");
  e.name = json_string_value(mname);
  entry_check(&e, json_is_object(j),
              json_is_string(ver) && strcmp(json_string_value(ver), "2.0") == 0,
              json_is_string(mname));
  return e;
}

static void handle_entry(ct_rpc_server *s, sconn *c, const entry *e, batch *b,
                         int has_deadline, int64_t deadline_ms) {
  s->stats.served++;
  json_t *id = e->id, *params = e->params;
  int notification = e->notification;
  if (!e->valid) {
    reply_error(s, c, b, valid_id(id) ? id : NULL, CT_RPC_INVALID_REQUEST,
                "Invalid Request", NULL);
    return;
  }
  const char *name = e->name;
  if (strncmp(name, "rpc.", 4) == 0) {
    if (strcmp(name, "rpc.cancel") == 0) {
      int found = cancel_request(c, params);
      if (!notification)
        reply_result(s, c, b, id, found ? json_true() : json_false());
    } else if (!notification) {
      reply_error(s, c, b, id, CT_RPC_METHOD_NOT_FOUND, "Method not found",
                  NULL);
    }
    return;
  }
  method *m = method_find(s, name);
  if (m == NULL) {
    if (!notification)
      reply_error(s, c, b, id, CT_RPC_METHOD_NOT_FOUND, "Method not found",
                  NULL);
    return;
  }
  if (has_deadline && deadline_ms <= 0) {
    s->stats.cancelled++;
    if (!notification)
      reply_error(s, c, b, id, CT_RPC_DEADLINE_EXCEEDED, "deadline exceeded",
                  NULL);
    return;
  }
  ct_rpc_request rq = {s, c, name, notification,
                       has_deadline ? ct_reactor_seconds(s->r) +
                                          (double)deadline_ms / 1000.0
                                    : -1.0};
  ct_step st = m->fn(&rq, params, m->arg);
  switch (st.kind) {
  case CT_STEP_VALUE:
    if (!notification)
      reply_result(s, c, b, id, ct_rpc_value_json(st.value));
    ct_value_free(st.value);
    break;
  case CT_STEP_FAILURE:
    if (!notification)
      reply_failure(s, c, b, id, name, st.failure);
    else if (!ct_rpc_is_error(st.failure))
      ct_log_failure(CT_LOG_ERROR, "jsonrpc", "notification failed",
                     st.failure);
    ct_failure_free(st.failure);
    break;
  case CT_STEP_WAIT:
    if (st.wait == NULL) {
      if (!notification)
        reply_error(s, c, b, id, CT_RPC_INTERNAL_ERROR, "Internal error", NULL);
      break;
    }
    start_async(&rq, c, b, notification ? NULL : id, st.wait);
    break;
  }
}

/* Serve one request text (an object or a batch) arriving on `c`. */
static void serve_text(ct_rpc_server *s, sconn *c, const char *content,
                       size_t len, int has_deadline, int64_t deadline_ms) {
  /* Nesting needs one bracket per level: short content cannot be too
   * deep, and skips the scan. */
  if (len > s->opts.max_depth &&
      ct__rpc_depth(content, len, s->opts.max_depth) > s->opts.max_depth) {
    s->stats.served++;
    char msg[96];
    snprintf(msg, sizeof msg, "Invalid Request: nested deeper than %zu levels",
             s->opts.max_depth);
    reply_error(s, c, NULL, NULL, CT_RPC_INVALID_REQUEST, msg, NULL);
    return;
  }
  ct__rpc_envelope env;
  if (ct__rpc_envelope_fast(content, len, &env) == 0) {
    entry e = {0};
    e.name = env.method;
    e.params = env.params;
    e.id = env.id;
    entry_check(&e, 1,
                env.version != NULL && env.version_len == 3 &&
                    memcmp(env.version, "2.0", 3) == 0,
                env.has_method);
    handle_entry(s, c, &e, NULL, has_deadline, deadline_ms);
    json_decref(env.params);
    json_decref(env.id);
    return;
  }
  json_error_t jerr;
  json_t *root = ct__rpc_json_load(content, len, &jerr);
  if (root == NULL) {
    s->stats.served++;
    json_t *data = json_string(jerr.text); /* may fail: no data then */
    char *dj = data ? json_dumps(data, JSON_ENCODE_ANY) : NULL;
    reply_error(s, c, NULL, NULL, CT_RPC_PARSE_ERROR, "Parse error", dj);
    free(dj);
    json_decref(data);
    return;
  }
  if (!json_is_array(root)) {
    entry e = entry_of(root);
    handle_entry(s, c, &e, NULL, has_deadline, deadline_ms);
    json_decref(root);
    return;
  }
  size_t n = json_array_size(root);
  if (n == 0 || n > s->opts.max_batch) {
    s->stats.served++;
    char msg[96];
    if (n == 0)
      snprintf(msg, sizeof msg, "Invalid Request");
    else
      snprintf(msg, sizeof msg, "Invalid Request: batch of %zu is over %zu", n,
               s->opts.max_batch);
    reply_error(s, c, NULL, NULL, CT_RPC_INVALID_REQUEST, msg, NULL);
    json_decref(root);
    return;
  }
  batch *b = calloc(1, sizeof *b);
  if (b == NULL || ct__rpc_buf_lit(&b->out, "[") != 0) {
    free(b);
    json_decref(root);
    sconn_abort(c);
    return;
  }
  b->c = c;
  c->refs++;
  c->batches++;
  b->pending = 1; /* held until every entry has started */
  for (size_t i = 0; i < n && !c->closed; i++) {
    entry e = entry_of(json_array_get(root, i));
    handle_entry(s, c, &e, b, has_deadline, deadline_ms);
  }
  json_decref(root);
  batch_release(s, b);
}

static void on_message(ct_messenger *m, const ct_msg_header *h,
                       const char *content, size_t len, void *arg) {
  ct_rpc_server *s = arg;
  sconn *c = ct_messenger_user(m);
  if (c == NULL || c->closed)
    return;
  int64_t deadline_ms = 0;
  int has_deadline =
      ct_msg_header_get_int(h, CT_RPC_DEADLINE_KEY, &deadline_ms) == 0;
  serve_text(s, c, content, len, has_deadline, deadline_ms);
}

/* ---------------------------------------------------------- connections */

static void on_connect(ct_messenger *m, void *arg) {
  ct_rpc_server *s = arg;
  sconn *c = calloc(1, sizeof *c);
  if (c == NULL) {
    ct_log(CT_LOG_ERROR, "jsonrpc", "out of memory accepting %s",
           ct_messenger_peer_str(m));
    ct_messenger_abort(m);
    return;
  }
  c->s = s;
  c->m = ct_messenger_ref(m);
  c->refs = 1; /* the open connection's */
  sconn_link(s, c);
  s->stats.connections++;
  ct_messenger_set_user(m, c);
}

/* The connection ends: whatever it had in flight is cancelled (nobody is
 * left to read the answers), so methods stop their work. */
static void sconn_close(sconn *c) {
  c->closed = 1;
  for (areq *a = c->head, *next; a != NULL; a = next) {
    next = a->next;
    areq_cancel(a, CT_RPC_REQUEST_CANCELLED);
  }
  sconn_unlink(c);
  if (c->m != NULL) {
    c->s->stats.connections--;
    ct_messenger_set_user(c->m, NULL);
    sconn_unref(c);
  } else if (c->done != NULL) { /* the server goes away before answering */
    oneshot_fail(c,
                 ct_failure_new(CT_ECLOSED, "the JSON-RPC server was freed"));
  }
}

/* ------------------------------------------------- requests from elsewhere */

/* The caller of ct_rpc_server_handle() cancelled: cancel what the request
 * has in flight, as a closed connection does.  The Deferred then errbacks
 * with CT_ECANCELLED (ct_deferred_cancel()). */
static void oneshot_cancel(ct_deferred *d, void *arg) {
  sconn *c = arg;
  if (c->done != d)
    return;
  c->done = NULL;
  c->closed = 1;
  for (areq *a = c->head, *next; a != NULL; a = next) {
    next = a->next;
    areq_cancel(a, CT_RPC_REQUEST_CANCELLED);
  }
  ct_deferred_unref(d);
  sconn_unref(c);
}

/* An answer is still to come: an async request with an id, or a batch. */
static int reply_pending(const sconn *c) {
  if (c->batches > 0)
    return 1;
  for (const areq *a = c->head; a != NULL; a = a->next)
    if (a->id != NULL)
      return 1;
  return 0;
}

ct_deferred *ct_rpc_server_handle(ct_rpc_server *s, const char *text,
                                  size_t len, int64_t deadline_ms) {
  if (s == NULL || (text == NULL && len > 0))
    return NULL;
  sconn *c = calloc(1, sizeof *c);
  ct_deferred *d = c != NULL ? ct_deferred_new(oneshot_cancel, c) : NULL;
  if (d == NULL) {
    free(c);
    return NULL;
  }
  c->s = s;
  c->refs = 1; /* held until answered (or cancelled) */
  c->done = ct_deferred_ref(d);
  sconn_link(s, c);
  c->refs++; /* serving may answer (and drop the hold) before we look */
  serve_text(s, c, text, len, deadline_ms >= 0, deadline_ms);
  if (c->done != NULL && !reply_pending(c))
    oneshot_finish(c, NULL, 0);
  sconn_unref(c);
  return d;
}

static void on_close(ct_messenger *m, size_t alive, const ct_failure *reason,
                     void *arg) {
  (void)alive;
  (void)reason;
  (void)arg;
  sconn *c = ct_messenger_user(m);
  if (c != NULL)
    sconn_close(c);
}

/* -------------------------------------------------------------- server */

static ct_rpc_server *server_alloc(ct_reactor *r,
                                   const ct_rpc_server_options *opts) {
  ct_rpc_server *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NULL;
  s->r = r;
  if (opts != NULL)
    s->opts = *opts;
  if (s->opts.max_batch == 0)
    s->opts.max_batch = CT_RPC_MAX_BATCH_DEFAULT;
  if (s->opts.max_depth == 0)
    s->opts.max_depth = CT_RPC_MAX_DEPTH_DEFAULT;
  if (s->opts.max_inflight == 0)
    s->opts.max_inflight = CT_RPC_MAX_INFLIGHT_DEFAULT;
  s->hdr = ct__rpc_header(-1);
  if (s->hdr == NULL) {
    free(s);
    return NULL;
  }
  return s;
}

static ct_msg_callbacks server_callbacks(ct_rpc_server *s) {
  ct_msg_callbacks cb = {on_connect, on_message, on_close, NULL, s};
  return cb;
}

ct_rpc_server *ct_rpc_server_new(ct_reactor *r,
                                 const ct_rpc_server_options *opts) {
  ct_rpc_server *s = server_alloc(r, opts);
  if (s == NULL)
    return NULL;
  ct_msg_callbacks cb = server_callbacks(s);
  s->ms = ct_msg_server_new(r, &cb, &s->opts.msg);
  if (s->ms == NULL) {
    ct_rpc_server_free(s);
    return NULL;
  }
  return s;
}

ct_rpc_server *ct_rpc_server_listen(ct_reactor *r, const char *endpoint,
                                    const ct_rpc_server_options *opts,
                                    ct_failure **err) {
  ct_rpc_server *s = server_alloc(r, opts);
  if (s == NULL) {
    if (err != NULL)
      *err = ct_failure_new(CT_ENOMEM, "out of memory");
    return NULL;
  }
  ct_msg_callbacks cb = server_callbacks(s);
  s->ms = ct_msg_server_listen(r, endpoint, &cb, &s->opts.msg, err);
  if (s->ms == NULL) {
    ct_rpc_server_free(s);
    return NULL;
  }
  return s;
}

ct_factory *ct_rpc_server_factory(ct_rpc_server *s) {
  return s ? ct_msg_server_factory(s->ms) : NULL;
}

int ct_rpc_server_port(const ct_rpc_server *s) {
  return s ? ct_msg_server_port(s->ms) : -1;
}

void ct_rpc_server_stats_get(const ct_rpc_server *s, ct_rpc_server_stats *out) {
  if (s != NULL && out != NULL)
    *out = s->stats;
}

void ct_rpc_server_free(ct_rpc_server *s) {
  if (s == NULL)
    return;
  while (s->conns != NULL) {
    sconn *c = s->conns;
    c->refs++; /* keep it while it is detached from the server */
    sconn_close(c);
    c->s = NULL;
    sconn_unref(c);
  }
  ct_msg_server_free(s->ms);
  for (size_t i = 0; i < s->mcap; i++)
    free(s->methods[i].name);
  free(s->methods);
  ct_msg_header_free(s->hdr);
  ct__rpc_buf_free(&s->out);
  free(s);
}

/* ------------------------------------------------------------- requests */

ct_reactor *ct_rpc_request_reactor(const ct_rpc_request *req) {
  return req->s->r;
}
const char *ct_rpc_request_method(const ct_rpc_request *req) {
  return req->method;
}
ct_messenger *ct_rpc_request_messenger(const ct_rpc_request *req) {
  return req->c->m; /* NULL for ct_rpc_server_handle() requests */
}
int ct_rpc_request_is_notification(const ct_rpc_request *req) {
  return req->notification;
}
double ct_rpc_request_remaining(const ct_rpc_request *req) {
  if (req->deadline < 0)
    return -1.0;
  double left = req->deadline - ct_reactor_seconds(req->s->r);
  return left > 0 ? left : 0.0;
}
