/* The JSON-RPC 2.0 client: one connection per server endpoint (kept up
 * with exponential back-off), calls spread round robin over the live
 * connections, held in a bounded queue while none is up.
 *
 * A call is sent at once when a connection is up: its request is written
 * into the client's reusable buffer and the connection's pending map
 * (id -> call) remembers it until the response, the timeout, a cancel or
 * the connection's loss.  A batch is one call occupying one id per entry
 * (consecutive ids, so an answer's entry is id - first id). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/log.h"
#include "protocols/jsonrpc/internal.h"

typedef struct cconn cconn;
typedef struct call call;
typedef struct cep cep;

struct cep { /* one endpoint we keep a connection to */
  ct_rpc_client *c;
  char *endpoint;
  cconn *conn;
  ct_delayed_call *retry;
  double delay;
  int connecting;
  cep *next;
};

struct cconn {
  ct_rpc_client *c;
  ct_messenger *m;
  cep *ep;          /* NULL for connections made by the caller */
  uint64_t next_id; /* starts at 1 */
  ct__rpc_idmap pending;
  size_t index; /* in c->live */
};

struct call {
  ct_rpc_client *c;
  cconn *conn; /* NULL while queued */
  ct_deferred *d;
  ct_delayed_call *timer;
  double expires; /* absolute reactor time, or < 0 */
  uint64_t id;    /* first id (batch: of entry 0) */
  /* Kept until sent: */
  char *method;
  json_t *params;
  /* A batch: n entries (method/params kept in `entries`), answers
   * gathered in `results`. */
  size_t n, left;
  ct_rpc_batch_entry *entries;
  json_t *results;
  call *qprev, *qnext;
};

struct ct_rpc_client {
  ct_reactor *r;
  ct_rpc_client_options opts;
  ct_msg_client *mc;
  cep *eps;
  cconn **live;
  size_t nlive, live_cap, rr;
  call *qhead, *qtail;
  size_t nqueued, npending;
  ct__rpc_buf out;
  ct_msg_header *hdr_plain, *hdr_dl;
  int64_t hdr_ms;
  int freeing;
};

static const char *conn_name(const cconn *k) {
  return k->ep != NULL ? k->ep->endpoint : ct_messenger_peer_str(k->m);
}

/* --------------------------------------------------------------- calls */

static void call_free(call *k) {
  if (k->timer != NULL) {
    ct_delayed_call_cancel(k->timer);
    ct_delayed_call_unref(k->timer);
  }
  free(k->method);
  json_decref(k->params);
  if (k->entries != NULL) {
    for (size_t i = 0; i < k->n; i++) {
      free((char *)k->entries[i].method);
      json_decref(k->entries[i].params);
    }
    free(k->entries);
  }
  json_decref(k->results);
  ct_deferred_unref(k->d);
  free(k);
}

static void dequeue(call *k) {
  ct_rpc_client *c = k->c;
  if (k->qprev != NULL)
    k->qprev->qnext = k->qnext;
  else
    c->qhead = k->qnext;
  if (k->qnext != NULL)
    k->qnext->qprev = k->qprev;
  else
    c->qtail = k->qprev;
  k->qprev = k->qnext = NULL;
  c->nqueued--;
}

/* Take the call out of its connection's map (or the queue). */
static void call_detach(call *k) {
  if (k->conn != NULL) {
    size_t n = k->entries != NULL ? k->n : 1;
    for (size_t i = 0; i < n; i++)
      ct__rpc_idmap_del(&k->conn->pending, k->id + i);
    k->conn = NULL;
    k->c->npending--;
  } else {
    dequeue(k);
  }
}

/* Finish a detached call: fire its Deferred with `v` or `f`, free it. */
static void call_finish(call *k, ct_value v, ct_failure *f) {
  ct_deferred *d = ct_deferred_ref(k->d);
  call_free(k); /* before firing: user callbacks may free the client */
  if (f != NULL)
    ct_deferred_errback(d, f);
  else
    ct_deferred_callback(d, v);
  ct_deferred_unref(d);
}

static int send_frame(ct_rpc_client *c, cconn *k, double expires);

/* Tell the server to stop working on a call nobody waits for. */
static void send_cancel(ct_rpc_client *c, cconn *conn, const call *k) {
  size_t n = k->entries != NULL ? k->n : 1;
  for (size_t i = 0; i < n; i++) {
    if (k->entries != NULL && k->entries[i].notify)
      continue;
    c->out.len = 0;
    ct__rpc_buf_lit(&c->out, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.cancel\","
                             "\"params\":{\"id\":");
    ct__rpc_buf_int(&c->out, (long long)(k->id + i));
    if (ct__rpc_buf_lit(&c->out, "}}") == 0)
      send_frame(c, conn, -1);
  }
}

static void call_cancelled(ct_deferred *d, void *arg) {
  (void)d;
  call *k = arg;
  ct_rpc_client *c = k->c;
  cconn *conn = k->conn;
  call_detach(k);
  if (conn != NULL)
    send_cancel(c, conn, k);
  call_finish(k, CT_NONE,
              ct_failure_new(CT_ECANCELLED, "call %s cancelled",
                             k->method ? k->method : "(batch)"));
}

static void call_timed_out(void *arg) {
  call *k = arg;
  ct_rpc_client *c = k->c;
  cconn *conn = k->conn;
  const char *where = conn != NULL ? conn_name(conn) : "(no connection)";
  ct_failure *f = ct_failure_new(CT_ETIMEDOUT, "call %s to %s timed out",
                                 k->method ? k->method : "(batch)", where);
  call_detach(k);
  /* Without a deadline the server does not know: tell it. */
  if (conn != NULL && c->opts.no_deadline)
    send_cancel(c, conn, k);
  call_finish(k, CT_NONE, f);
}

/* ------------------------------------------------------------- sending */

static ct_msg_header *header_for(ct_rpc_client *c, double expires) {
  if (expires < 0 || c->opts.no_deadline)
    return c->hdr_plain;
  double left = expires - ct_reactor_seconds(c->r);
  int64_t ms = left > 0 ? (int64_t)ceil(left * 1000.0) : 0;
  if (c->hdr_dl == NULL || c->hdr_ms != ms) {
    /* One header per deadline value, kept while calls use the same
     * timeout: the server's decoder then sees identical header bytes
     * and parses them once. */
    ct_msg_header *h = ct__rpc_header(ms);
    if (h == NULL)
      return NULL;
    ct_msg_header_free(c->hdr_dl);
    c->hdr_dl = h;
    c->hdr_ms = ms;
  }
  return c->hdr_dl;
}

static int send_frame(ct_rpc_client *c, cconn *k, double expires) {
  ct_msg_header *h = header_for(c, expires);
  if (h == NULL)
    return CT_ENOMEM;
  return ct_messenger_send(k->m, h, c->out.data, c->out.len);
}

/* Write one request object into c->out (id 0: a notification). */
static int write_request(ct__rpc_buf *o, const char *method,
                         const json_t *params, uint64_t id) {
  int rc = ct__rpc_buf_lit(o, "{\"jsonrpc\":\"2.0\",\"method\":");
  if (rc == 0)
    rc = ct__rpc_buf_str(o, method);
  if (rc == 0 && params != NULL) {
    rc = ct__rpc_buf_lit(o, ",\"params\":");
    if (rc == 0)
      rc = ct__rpc_buf_json(o, params);
  }
  if (rc == 0 && id != 0) {
    rc = ct__rpc_buf_lit(o, ",\"id\":");
    if (rc == 0)
      rc = ct__rpc_buf_int(o, (long long)id);
  }
  if (rc == 0)
    rc = ct__rpc_buf_lit(o, "}");
  return rc;
}

static cconn *pick(ct_rpc_client *c) {
  if (c->nlive == 0)
    return NULL;
  return c->live[c->rr++ % c->nlive];
}

/* Send call `k` (method/params or batch entries) on `conn`.  On error the
 * call is left detached and the code returned. */
static int call_send(ct_rpc_client *c, cconn *conn, call *k) {
  ct__rpc_buf *o = &c->out;
  o->len = 0;
  size_t n = k->entries != NULL ? k->n : 1;
  k->id = conn->next_id;
  conn->next_id += n;
  int rc = 0;
  int expect = 0;
  if (k->entries == NULL) {
    rc = write_request(o, k->method, k->params, k->id);
    expect = 1;
  } else {
    rc = ct__rpc_buf_lit(o, "[");
    for (size_t i = 0; i < n && rc == 0; i++) {
      if (i > 0)
        rc = ct__rpc_buf_lit(o, ",");
      if (rc == 0)
        rc = write_request(o, k->entries[i].method, k->entries[i].params,
                           k->entries[i].notify ? 0 : k->id + i);
      expect |= !k->entries[i].notify;
    }
    if (rc == 0)
      rc = ct__rpc_buf_lit(o, "]");
  }
  if (rc == 0)
    rc = send_frame(c, conn, k->expires);
  if (rc != 0 || !expect)
    return rc != 0 ? rc : 1; /* 1: sent, nothing to wait for */
  for (size_t i = 0; i < n; i++) {
    if (k->entries != NULL && k->entries[i].notify)
      continue;
    if (ct__rpc_idmap_put(&conn->pending, k->id + i, k) != 0) {
      for (size_t j = 0; j < i; j++)
        ct__rpc_idmap_del(&conn->pending, k->id + j);
      return CT_ENOMEM;
    }
  }
  k->conn = conn;
  c->npending++;
  /* Params are not needed any more; entries keep their methods for the
   * results array. */
  json_decref(k->params);
  k->params = NULL;
  return 0;
}

/* Send `k` now, or queue it.  Fires and frees it on error. */
static void call_dispatch(ct_rpc_client *c, call *k) {
  cconn *conn = pick(c);
  if (conn == NULL) {
    if (c->nqueued >= c->opts.max_queued) {
      call_finish(k, CT_NONE,
                  ct_failure_new(CT_EQUEUEFULL,
                                 "no connection is up and %zu calls are "
                                 "already queued",
                                 c->nqueued));
      return;
    }
    k->qprev = c->qtail;
    if (c->qtail != NULL)
      c->qtail->qnext = k;
    else
      c->qhead = k;
    c->qtail = k;
    c->nqueued++;
    return;
  }
  int rc = call_send(c, conn, k);
  if (rc == 1) /* a batch of notifications only: done once sent */
    call_finish(k, ct_rpc_value(json_incref(k->results)), NULL);
  else if (rc != 0)
    call_finish(k, CT_NONE,
                ct_failure_new(rc, "cannot send %s to %s: %s",
                               k->method ? k->method : "a batch",
                               conn_name(conn), ct_strerror(rc)));
}

static call *call_new(ct_rpc_client *c, double timeout) {
  call *k = calloc(1, sizeof *k);
  if (k == NULL)
    return NULL;
  k->c = c;
  k->expires = -1;
  k->d = ct_deferred_new(call_cancelled, k);
  if (k->d == NULL) {
    free(k);
    return NULL;
  }
  if (timeout > 0) {
    k->expires = ct_reactor_seconds(c->r) + timeout;
    k->timer = ct_call_later(c->r, timeout, call_timed_out, k);
    if (k->timer == NULL) {
      call_free(k);
      return NULL;
    }
    ct_delayed_call_ref(k->timer);
  }
  return k;
}

/* The caller's reference, taken before dispatching (which may fire). */
static ct_deferred *dispatch_ret(ct_rpc_client *c, call *k) {
  ct_deferred *d = ct_deferred_ref(k->d);
  call_dispatch(c, k);
  return d;
}

ct_deferred *ct_rpc_call_timeout(ct_rpc_client *c, const char *method,
                                 json_t *params, double timeout) {
  if (c == NULL || method == NULL ||
      (params != NULL && !json_is_array(params) && !json_is_object(params))) {
    json_decref(params);
    return ct_fail(ct_failure_new(CT_EINVAL,
                                  "call %s: params must be an array, an "
                                  "object or absent",
                                  method ? method : "(null)"));
  }
  call *k = call_new(c, timeout);
  if (k == NULL || (k->method = strdup(method)) == NULL) {
    if (k != NULL)
      call_free(k);
    json_decref(params);
    return NULL;
  }
  k->params = params;
  return dispatch_ret(c, k);
}

ct_deferred *ct_rpc_call(ct_rpc_client *c, const char *method, json_t *params) {
  return ct_rpc_call_timeout(c, method, params, c ? c->opts.timeout : 0);
}

ct_deferred *ct_rpc_call_batch(ct_rpc_client *c, ct_rpc_batch_entry *entries,
                               size_t n) {
  call *k = (c != NULL && n > 0) ? call_new(c, c->opts.timeout) : NULL;
  int ok = k != NULL && (k->entries = calloc(n, sizeof *entries)) != NULL &&
           (k->results = json_array()) != NULL;
  for (size_t i = 0; i < n; i++) {
    ct_rpc_batch_entry e = entries[i];
    if (ok)
      ok = json_array_append_new(k->results, json_null()) == 0 &&
           e.method != NULL &&
           (e.params == NULL || json_is_array(e.params) ||
            json_is_object(e.params)) &&
           (k->entries[i].method = strdup(e.method)) != NULL;
    if (ok) {
      k->entries[i].params = e.params;
      k->entries[i].notify = e.notify;
      k->n = i + 1;
      k->left += !e.notify;
    } else {
      json_decref(e.params);
    }
  }
  if (!ok) {
    if (k != NULL)
      call_free(k);
    return ct_fail(ct_failure_new(CT_EINVAL, "bad batch: empty, a NULL "
                                             "method or params that are "
                                             "neither array nor object"));
  }
  return dispatch_ret(c, k);
}

int ct_rpc_notify(ct_rpc_client *c, const char *method, json_t *params) {
  if (c == NULL || method == NULL ||
      (params != NULL && !json_is_array(params) && !json_is_object(params))) {
    json_decref(params);
    return CT_EINVAL;
  }
  ct_rpc_batch_entry e = {method, params, 1};
  /* A notification is a one-entry batch of notifications: sent now, or
   * queued like a call. */
  ct_deferred *d = ct_rpc_call_batch(c, &e, 1);
  if (d == NULL)
    return CT_ENOMEM;
  int rc = 0;
  if (ct_deferred_has_result(d) && ct_deferred_is_failed(d)) {
    ct_result r;
    ct_deferred_take_result(d, &r);
    rc = r.failure->code;
    ct_failure_free(r.failure);
  }
  ct_deferred_unref(d); /* a queued one is sent later, nobody waits */
  return rc;
}

/* ------------------------------------------------------------ responses */

static void handle_response(cconn *conn, json_t *resp) {
  ct_rpc_client *c = conn->c;
  json_t *id = json_object_get(resp, "id");
  if (!json_is_integer(id) || json_integer_value(id) <= 0) {
    json_t *err = json_object_get(resp, "error");
    json_t *msg = json_object_get(err, "message");
    ct_log(CT_LOG_WARN, "jsonrpc", "%s answered without a call id: %s",
           conn_name(conn),
           json_is_string(msg) ? json_string_value(msg) : "(no message)");
    return;
  }
  uint64_t n = (uint64_t)json_integer_value(id);
  call *k = ct__rpc_idmap_del(&conn->pending, n);
  if (k == NULL)
    return; /* cancelled or timed out already */
  if (k->entries != NULL) {
    json_array_set(k->results, (size_t)(n - k->id), resp);
    if (--k->left > 0)
      return;
    k->conn = NULL;
    c->npending--;
    call_finish(k, ct_rpc_value(json_incref(k->results)), NULL);
    return;
  }
  k->conn = NULL;
  c->npending--;
  json_t *err = json_object_get(resp, "error");
  if (err != NULL) {
    call_finish(k, CT_NONE, ct__rpc_failure_from_json(err));
    return;
  }
  json_t *result = json_object_get(resp, "result");
  call_finish(k, ct_rpc_value(result ? json_incref(result) : NULL), NULL);
}

static void on_message(ct_messenger *m, const ct_msg_header *h,
                       const char *content, size_t len, void *arg) {
  (void)h;
  (void)arg;
  cconn *conn = ct_messenger_user(m);
  if (conn == NULL)
    return;
  json_error_t jerr;
  json_t *root = json_loadb(content ? content : "", len, 0, &jerr);
  if (root == NULL) {
    ct_log(CT_LOG_WARN, "jsonrpc", "unparsable response from %s: %s",
           conn_name(conn), jerr.text);
    return;
  }
  /* Callbacks fired below may close this connection: keep it. */
  ct_messenger_ref(m);
  if (json_is_array(root)) {
    for (size_t i = 0; i < json_array_size(root); i++)
      if (ct_messenger_user(m) == conn)
        handle_response(conn, json_array_get(root, i));
  } else {
    handle_response(conn, root);
  }
  ct_messenger_unref(m);
  json_decref(root);
}

/* ---------------------------------------------------------- connections */

static void flush_queue(ct_rpc_client *c) {
  while (c->qhead != NULL && c->nlive > 0) {
    call *k = c->qhead;
    dequeue(k);
    call_dispatch(c, k);
  }
}

static void on_connect(ct_messenger *m, void *arg) {
  ct_rpc_client *c = arg;
  cconn *conn = calloc(1, sizeof *conn);
  if (conn == NULL) {
    ct_messenger_abort(m);
    return;
  }
  if (c->nlive == c->live_cap) {
    size_t cap = c->live_cap ? c->live_cap * 2 : 8;
    cconn **l = realloc(c->live, cap * sizeof *l);
    if (l == NULL) {
      free(conn);
      ct_messenger_abort(m);
      return;
    }
    c->live = l;
    c->live_cap = cap;
  }
  conn->c = c;
  conn->m = ct_messenger_ref(m);
  conn->next_id = 1;
  conn->index = c->nlive;
  c->live[c->nlive++] = conn;
  ct_messenger_set_user(m, conn);
  flush_queue(c);
}

static void schedule_retry(cep *ep);

/* Detach a connection and errback what it had pending. */
static void conn_drop(cconn *conn, int code, const char *why) {
  ct_rpc_client *c = conn->c;
  c->live[conn->index] = c->live[--c->nlive];
  c->live[conn->index]->index = conn->index;
  ct_messenger_set_user(conn->m, NULL);
  if (conn->ep != NULL)
    conn->ep->conn = NULL;
  /* Collect first: errbacks may make new calls (on other connections). */
  size_t n = 0;
  call **list = malloc((conn->pending.count + 1) * sizeof *list);
  for (size_t i = 0; list != NULL && i < conn->pending.cap; i++) {
    call *k = conn->pending.slots[i].val;
    if (k == NULL || k->conn != conn)
      continue;
    k->conn = NULL; /* marks it collected (a batch has several ids) */
    list[n++] = k;
  }
  const char *name = conn_name(conn);
  char where[CT_ADDRESS_STRLEN + 256];
  snprintf(where, sizeof where, "%s", name);
  ct__rpc_idmap_free(&conn->pending);
  c->npending -= n;
  for (size_t i = 0; i < n; i++)
    call_finish(list[i], CT_NONE,
                ct_failure_new(code, "call %s: connection to %s %s",
                               list[i]->method ? list[i]->method : "(batch)",
                               where, why));
  free(list);
  ct_messenger_unref(conn->m);
  free(conn);
}

static void on_close(ct_messenger *m, size_t alive, const ct_failure *reason,
                     void *arg) {
  (void)alive;
  (void)reason;
  ct_rpc_client *c = arg;
  cconn *conn = ct_messenger_user(m);
  if (conn == NULL)
    return;
  cep *ep = conn->ep;
  conn_drop(conn, CT_ECONNLOST, "lost");
  if (ep != NULL && !c->freeing)
    schedule_retry(ep);
}

static ct_step connected(ct_value v, void *arg) {
  cep *ep = arg;
  ct_messenger *m = v.ptr;
  cconn *conn = ct_messenger_user(m);
  ep->connecting = 0;
  ep->delay = ep->c->opts.retry_initial;
  if (conn != NULL) {
    conn->ep = ep;
    ep->conn = conn;
  }
  return ct_pass(CT_NONE);
}

static void fail_queued(ct_rpc_client *c, const cep *ep, const ct_failure *f) {
  while (c->qhead != NULL) {
    call *k = c->qhead;
    dequeue(k);
    call_finish(k, CT_NONE,
                ct_failure_wrap("ctwist", f->code, ct_failure_copy(f),
                                "call %s: cannot connect to %s",
                                k->method ? k->method : "(batch)",
                                ep->endpoint));
  }
}

static ct_step connect_failed(ct_failure *f, void *arg) {
  cep *ep = arg;
  ep->connecting = 0;
  if (!ep->c->freeing && f->code != CT_ECANCELLED) {
    if (ep->c->opts.fail_fast && ep->c->nlive == 0)
      fail_queued(ep->c, ep, f);
    ct_log(CT_LOG_DEBUG, "jsonrpc", "connecting to %s failed: %s; retrying",
           ep->endpoint, f->message ? f->message : ct_strerror(f->code));
    schedule_retry(ep);
  }
  ct_failure_free(f);
  return ct_pass(CT_NONE);
}

static int ep_connect(cep *ep) {
  ct_deferred *d = ct_msg_client_add_connection(ep->c->mc, ep->endpoint);
  if (d == NULL)
    return CT_ENOMEM;
  ep->connecting = 1;
  ct_deferred_add_callbacks(d, connected, connect_failed, ep);
  ct_deferred_unref(d);
  return 0;
}

static void retry_now(void *arg) {
  cep *ep = arg;
  ct_delayed_call_unref(ep->retry);
  ep->retry = NULL;
  if (ep_connect(ep) != 0)
    schedule_retry(ep);
}

static void schedule_retry(cep *ep) {
  if (ep->retry != NULL)
    return;
  ep->retry = ct_call_later(ep->c->r, ep->delay, retry_now, ep);
  if (ep->retry != NULL)
    ct_delayed_call_ref(ep->retry);
  ep->delay *= 2;
  if (ep->delay > ep->c->opts.retry_max)
    ep->delay = ep->c->opts.retry_max;
}

/* -------------------------------------------------------------- client */

ct_rpc_client *ct_rpc_client_new(ct_reactor *r,
                                 const ct_rpc_client_options *opts) {
  ct_rpc_client *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->r = r;
  if (opts != NULL)
    c->opts = *opts;
  if (c->opts.timeout == 0)
    c->opts.timeout = CT_RPC_TIMEOUT_DEFAULT;
  if (c->opts.max_queued == 0)
    c->opts.max_queued = CT_RPC_MAX_QUEUED_DEFAULT;
  if (c->opts.retry_initial <= 0)
    c->opts.retry_initial = 0.5;
  if (c->opts.retry_max <= 0)
    c->opts.retry_max = 30.0;
  ct_msg_callbacks cb = {on_connect, on_message, on_close, NULL, c};
  c->hdr_plain = ct__rpc_header(-1);
  c->mc = ct_msg_client_new(r, &cb, &c->opts.msg);
  if (c->hdr_plain == NULL || c->mc == NULL) {
    ct_rpc_client_free(c);
    return NULL;
  }
  return c;
}

int ct_rpc_client_connect(ct_rpc_client *c, const char *endpoint) {
  if (c == NULL || endpoint == NULL)
    return CT_EINVAL;
  cep *ep = calloc(1, sizeof *ep);
  if (ep == NULL || (ep->endpoint = strdup(endpoint)) == NULL) {
    free(ep);
    return CT_ENOMEM;
  }
  ep->c = c;
  ep->delay = c->opts.retry_initial;
  ep->next = c->eps;
  c->eps = ep;
  int rc = ep_connect(ep);
  return rc;
}

ct_factory *ct_rpc_client_factory(ct_rpc_client *c) {
  return c ? ct_msg_client_factory(c->mc) : NULL;
}

size_t ct_rpc_client_connections(const ct_rpc_client *c) {
  return c ? c->nlive : 0;
}
size_t ct_rpc_client_pending(const ct_rpc_client *c) {
  return c ? c->npending : 0;
}
size_t ct_rpc_client_queued(const ct_rpc_client *c) {
  return c ? c->nqueued : 0;
}

void ct_rpc_client_free(ct_rpc_client *c) {
  if (c == NULL)
    return;
  c->freeing = 1;
  while (c->nlive > 0)
    conn_drop(c->live[0], CT_ECANCELLED, "closed by the client");
  while (c->qhead != NULL) {
    call *k = c->qhead;
    dequeue(k);
    call_finish(k, CT_NONE,
                ct_failure_new(CT_ECANCELLED, "call %s: client closed",
                               k->method ? k->method : "(batch)"));
  }
  ct_msg_client_free(c->mc); /* errbacks pending attempts: eps still live */
  for (cep *ep = c->eps, *next; ep != NULL; ep = next) {
    next = ep->next;
    if (ep->retry != NULL) {
      ct_delayed_call_cancel(ep->retry);
      ct_delayed_call_unref(ep->retry);
    }
    free(ep->endpoint);
    free(ep);
  }
  free(c->live);
  ct_msg_header_free(c->hdr_plain);
  ct_msg_header_free(c->hdr_dl);
  ct__rpc_buf_free(&c->out);
  free(c);
}
