/* The JSON-RPC 2.0 client: a set of members (one connection per server
 * endpoint, each kept up by a reconnecting client), a balancer choosing
 * among the live ones (power of two choices or round robin), failure
 * accrual, retries of idempotent calls within a retry budget, and a
 * bounded queue of calls made while no member can take them.
 *
 * A call is sent at once when a member can take it: its request is
 * written into the client's reusable buffer and the connection's pending
 * map (id -> call) remembers it until the response, the timeout, a cancel
 * or the connection's loss.  A batch is one call occupying one id per
 * entry (consecutive ids, so an answer's entry is id - first id).
 *
 * Members that can take a call are kept in `elig` (connected, not being
 * removed, not dead -- or half-open with no probe out), so that a pick is
 * O(1) whatever the number of members. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctwist/log.h"
#include "ctwist/protocol.h"
#include "protocols/jsonrpc/internal.h"

typedef struct cconn cconn;
typedef struct call call;
typedef struct member member;

#define NOT_ELIG ((size_t)-1)

struct member {
  ct_client_factory cf; /* first: builds through the message client */
  ct_rpc_client *c;
  char *endpoint;
  ct_reconnecting_client *rc;
  int anon; /* a connection made by the caller: not re-established */
  ct_protocol *building; /* the protocol of the attempt under way */
  cconn *conn;           /* the live connection, or NULL */
  size_t elig;           /* index in c->elig, or NOT_ELIG */
  int removing, gone;
  ct_delayed_call *removal; /* end of the removal window */
  /* Failure accrual. */
  int fails;     /* consecutive failures */
  int dead;      /* marked dead (until a probe succeeds) */
  int half_open; /* the back-off passed: one probe call may go */
  int probe_out; /* ... and it went */
  double backoff;
  ct_delayed_call *revive;
  /* Counters. */
  size_t outstanding;
  uint64_t calls, failures, retries;
};

struct cconn {
  ct_rpc_client *c;
  ct_messenger *m;
  member *mb;
  uint64_t next_id; /* starts at 1 */
  ct__rpc_idmap pending;
};

struct call {
  ct_rpc_client *c;
  cconn *conn; /* NULL while queued */
  ct_deferred *d;
  ct_delayed_call *timer;
  double expires; /* absolute reactor time, or < 0 */
  uint64_t id;    /* first id (batch: of entry 0) */
  int idem;       /* idempotent: params kept for a retry */
  int retrying;   /* being sent again after a lost connection */
  int probe;      /* the probe of a half-open member */
  /* Kept until sent (idempotent calls: until finished): */
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
  member **members; /* in the order added */
  size_t nmembers, members_cap;
  member **elig; /* the members that can take a call now */
  size_t nelig, elig_cap, rr;
  size_t nconns;
  uint64_t rng;
  char **idem; /* idempotent method names */
  size_t nidem;
  /* Retry budget: per-second slots of deposits and withdrawals. */
  double budget[CT_RPC_RETRY_WINDOW];
  int64_t budget_sec[CT_RPC_RETRY_WINDOW];
  call *qhead, *qtail;
  size_t nqueued, npending;
  ct__rpc_buf out;
  ct_msg_header *hdr_plain, *hdr_dl;
  int64_t hdr_ms;
  int freeing;
};

static const char *conn_name(const cconn *k) {
  return k->mb->endpoint;
}

/* ------------------------------------------------------------- random */

/* splitmix64: small, fast, deterministic per seed, one state per client. */
static uint64_t rnd(ct_rpc_client *c) {
  uint64_t z = (c->rng += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/* Uniform in [0, 1): the reconnecting clients' jitter too. */
static double rnd_unit(void *arg) {
  return (double)(rnd(arg) >> 11) * (1.0 / 9007199254740992.0);
}

/* --------------------------------------------------------- the balancer */

static void elig_set(ct_rpc_client *c, member *m, int want) {
  if (want && m->elig == NOT_ELIG) {
    if (c->nelig == c->elig_cap) {
      size_t cap = c->elig_cap ? c->elig_cap * 2 : 8;
      member **l = realloc(c->elig, cap * sizeof *l);
      if (l == NULL)
        return; /* not eligible until the next change: never lost */
      c->elig = l;
      c->elig_cap = cap;
    }
    m->elig = c->nelig;
    c->elig[c->nelig++] = m;
  } else if (!want && m->elig != NOT_ELIG) {
    /* Keep the order (round robin's): members leave rarely. */
    memmove(c->elig + m->elig, c->elig + m->elig + 1,
            (c->nelig - m->elig - 1) * sizeof *c->elig);
    c->nelig--;
    for (size_t i = m->elig; i < c->nelig; i++)
      c->elig[i]->elig = i;
    m->elig = NOT_ELIG;
  }
}

/* Recompute whether `m` can take a call. */
static void member_update(member *m) {
  int want = m->conn != NULL && !m->removing && !m->gone &&
             (!m->dead || (m->half_open && !m->probe_out));
  elig_set(m->c, m, want);
}

static member *pick(ct_rpc_client *c) {
  size_t n = c->nelig;
  if (n == 0)
    return NULL;
  if (n == 1)
    return c->elig[0];
  if (c->opts.balancer == CT_RPC_BALANCE_ROUND_ROBIN)
    return c->elig[c->rr++ % n];
  size_t i = (size_t)(rnd(c) % n);
  size_t j = (size_t)(rnd(c) % (n - 1));
  if (j >= i)
    j++;
  member *a = c->elig[i], *b = c->elig[j];
  return b->outstanding < a->outstanding ? b : a;
}

/* ---------------------------------------------------------- retry budget */

/* The slot of the current second, cleared when it is reused. */
static double *budget_slot(ct_rpc_client *c, int64_t *sec) {
  *sec = (int64_t)floor(ct_reactor_seconds(c->r));
  size_t i = (size_t)(*sec % CT_RPC_RETRY_WINDOW);
  if (c->budget_sec[i] != *sec) {
    c->budget_sec[i] = *sec;
    c->budget[i] = 0;
  }
  return &c->budget[i];
}

static void budget_deposit(ct_rpc_client *c) {
  int64_t sec;
  *budget_slot(c, &sec) += c->opts.retry_budget_percent / 100.0;
}

/* Take one retry from the budget: deposits and withdrawals of the last
 * window plus the reserve (min_per_s * window) must leave one. */
static int budget_withdraw(ct_rpc_client *c) {
  int64_t sec;
  double *slot = budget_slot(c, &sec);
  double left = c->opts.retry_budget_min_per_s * CT_RPC_RETRY_WINDOW;
  for (size_t i = 0; i < CT_RPC_RETRY_WINDOW; i++)
    if (c->budget_sec[i] > sec - CT_RPC_RETRY_WINDOW)
      left += c->budget[i];
  if (left < 1.0 - 1e-9)
    return 0;
  *slot -= 1.0;
  return 1;
}

static int is_idempotent(const ct_rpc_client *c, const char *method) {
  for (size_t i = 0; i < c->nidem; i++)
    if (strcmp(c->idem[i], method) == 0)
      return 1;
  return 0;
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

/* A call leaves its member (answered, timed out, cancelled, lost). */
static void call_leaves(call *k, member *m) {
  m->outstanding--;
  k->c->npending--;
  if (k->probe) {
    k->probe = 0;
    m->probe_out = 0;
    member_update(m);
  }
}

/* Take the call out of its connection's map (or the queue). */
static void call_detach(call *k) {
  if (k->conn != NULL) {
    size_t n = k->entries != NULL ? k->n : 1;
    for (size_t i = 0; i < n; i++)
      ct__rpc_idmap_del(&k->conn->pending, k->id + i);
    member *m = k->conn->mb;
    k->conn = NULL;
    call_leaves(k, m);
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

static const char *call_name(const call *k) {
  return k->method ? k->method : "(batch)";
}

/* ------------------------------------------------------ failure accrual */

static void flush_queue(ct_rpc_client *c);
static void fail_if_all_dead(ct_rpc_client *c);

static void revive_due(void *arg) {
  member *m = arg;
  ct_delayed_call_unref(m->revive);
  m->revive = NULL;
  m->half_open = 1;
  ct_log(CT_LOG_INFO, "jsonrpc", "member %s: probing after %.3f s dead",
         m->endpoint, m->backoff);
  member_update(m);
  flush_queue(m->c);
}

/* Dead for the back-off (jittered by +-20%), then half-open. */
static void member_kill(member *m) {
  ct_rpc_client *c = m->c;
  m->dead = 1;
  m->half_open = 0;
  double t = m->backoff * (0.8 + 0.4 * rnd_unit(c));
  if (m->revive != NULL) {
    ct_delayed_call_cancel(m->revive);
    ct_delayed_call_unref(m->revive);
  }
  m->revive = ct_call_later(c->r, t, revive_due, m);
  if (m->revive != NULL)
    ct_delayed_call_ref(m->revive);
  ct_log(CT_LOG_WARN, "jsonrpc",
         "member %s is dead after %d failures in a row; probing in %.3f s",
         m->endpoint, m->fails, t);
  member_update(m);
  fail_if_all_dead(c);
}

/* A call or connection attempt failed on `m` (transport-wise). */
static void member_failed(member *m) {
  ct_rpc_client *c = m->c;
  m->failures++;
  if (c->freeing || m->gone)
    return;
  m->fails++;
  if (m->dead) {
    if (m->half_open) { /* the probe failed: back off longer */
      m->backoff *= 2;
      if (m->backoff > c->opts.accrual_backoff_max)
        m->backoff = c->opts.accrual_backoff_max;
      member_kill(m);
    }
    return;
  }
  if (m->fails >= c->opts.accrual_failures) {
    m->backoff = c->opts.accrual_backoff;
    member_kill(m);
  }
}

/* A call on `m` was answered (a JSON-RPC error included). */
static void member_ok(member *m) {
  m->fails = 0;
  if (!m->dead)
    return;
  if (m->revive != NULL) {
    ct_delayed_call_cancel(m->revive);
    ct_delayed_call_unref(m->revive);
    m->revive = NULL;
  }
  m->dead = m->half_open = m->probe_out = 0;
  ct_log(CT_LOG_INFO, "jsonrpc", "member %s is alive again", m->endpoint);
  member_update(m);
  flush_queue(m->c);
}

/* 1 when there are members and every one not being removed is dead (and
 * not waiting for its probe). */
static int all_dead(const ct_rpc_client *c) {
  size_t n = 0;
  for (size_t i = 0; i < c->nmembers; i++) {
    const member *m = c->members[i];
    if (m->removing || m->gone)
      continue;
    if (!m->dead || m->half_open)
      return 0;
    n++;
  }
  return n > 0;
}

static ct_failure *all_dead_failure(const ct_rpc_client *c, const call *k) {
  char names[512];
  size_t len = 0, n = 0;
  names[0] = '\0';
  for (size_t i = 0; i < c->nmembers; i++) {
    const member *m = c->members[i];
    if (m->removing || m->gone)
      continue;
    n++;
    if (len < sizeof names - 1)
      len += (size_t)snprintf(names + len, sizeof names - len, "%s%s",
                              n > 1 ? ", " : "", m->endpoint);
  }
  if (len >= sizeof names - 1)
    snprintf(names + sizeof names - 5, 5, "...");
  return ct_failure_new(CT_ENOTCONN,
                        "call %s: all %zu members are dead (failure "
                        "accrual): %s",
                        call_name(k), n, names);
}

static void fail_if_all_dead(ct_rpc_client *c) {
  if (c->qhead == NULL || !all_dead(c))
    return;
  while (c->qhead != NULL) {
    call *k = c->qhead;
    dequeue(k);
    call_finish(k, CT_NONE, all_dead_failure(c, k));
  }
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
              ct_failure_new(CT_ECANCELLED, "call %s cancelled", call_name(k)));
}

static void call_timed_out(void *arg) {
  call *k = arg;
  ct_rpc_client *c = k->c;
  cconn *conn = k->conn;
  member *m = conn != NULL ? conn->mb : NULL;
  ct_failure *f =
      ct_failure_new(CT_ETIMEDOUT, "call %s to %s timed out", call_name(k),
                     m != NULL ? m->endpoint : "(no connection)");
  call_detach(k);
  /* Without a deadline the server does not know: tell it. */
  if (conn != NULL && c->opts.no_deadline)
    send_cancel(c, conn, k);
  if (m != NULL)
    member_failed(m);
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
  conn->mb->outstanding++;
  if (!k->idem) {
    /* Params are not needed any more; entries keep their methods for
     * the results array.  An idempotent call keeps them for a retry. */
    json_decref(k->params);
    k->params = NULL;
  }
  return 0;
}

/* Send `k` now, or queue it.  Fires and frees it on error. */
static void call_dispatch(ct_rpc_client *c, call *k) {
  member *m = pick(c);
  if (m == NULL) {
    if (all_dead(c)) {
      call_finish(k, CT_NONE, all_dead_failure(c, k));
      return;
    }
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
  int rc = call_send(c, m->conn, k);
  if (rc >= 0) {
    m->calls++;
    if (k->retrying)
      m->retries++;
    k->retrying = 0;
  }
  if (rc == 0 && m->dead) { /* the probe of a half-open member */
    k->probe = 1;
    m->probe_out = 1;
    member_update(m);
  }
  if (rc == 1) /* a batch of notifications only: done once sent */
    call_finish(k, ct_rpc_value(json_incref(k->results)), NULL);
  else if (rc != 0)
    call_finish(k, CT_NONE,
                ct_failure_new(rc, "cannot send %s to %s: %s", call_name(k),
                               m->endpoint, ct_strerror(rc)));
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
  budget_deposit(c);
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
  k->idem = is_idempotent(c, method);
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
  member *m = conn->mb;
  if (k->entries != NULL) {
    json_array_set(k->results, (size_t)(n - k->id), resp);
    if (--k->left > 0)
      return;
    k->conn = NULL;
    call_leaves(k, m);
    member_ok(m);
    call_finish(k, ct_rpc_value(json_incref(k->results)), NULL);
    return;
  }
  k->conn = NULL;
  call_leaves(k, m);
  member_ok(m);
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
  json_t *root = ct__rpc_json_load(content, len, &jerr);
  if (!json_is_object(root) && !json_is_array(root)) {
    ct_log(CT_LOG_WARN, "jsonrpc", "unparsable response from %s: %s",
           conn_name(conn),
           root != NULL ? "not an object or an array" : jerr.text);
    json_decref(root);
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
  while (c->qhead != NULL && c->nelig > 0) {
    call *k = c->qhead;
    dequeue(k);
    call_dispatch(c, k);
  }
}

static member *member_find(const ct_rpc_client *c, const char *endpoint) {
  for (size_t i = 0; i < c->nmembers; i++)
    if (!c->members[i]->gone && strcmp(c->members[i]->endpoint, endpoint) == 0)
      return c->members[i];
  return NULL;
}

static ct_protocol *member_build(ct_factory *f, const ct_address *peer) {
  member *m = (member *)f; /* cf.base is first */
  ct_protocol *p = ct_factory_build(ct_msg_client_factory(m->c->mc), peer);
  m->building = p;
  return p;
}

static void member_connect_failed(ct_client_factory *cf,
                                  const ct_failure *reason);

static const ct_factory_ops member_factory_ops = {
    .name = "jsonrpc-member", .build_protocol = member_build};

static member *member_new(ct_rpc_client *c, const char *endpoint) {
  if (c->nmembers == c->members_cap) {
    size_t cap = c->members_cap ? c->members_cap * 2 : 8;
    member **l = realloc(c->members, cap * sizeof *l);
    if (l == NULL)
      return NULL;
    c->members = l;
    c->members_cap = cap;
  }
  member *m = calloc(1, sizeof *m);
  if (m == NULL || (m->endpoint = strdup(endpoint)) == NULL) {
    free(m);
    return NULL;
  }
  ct_factory *mf = ct_msg_client_factory(c->mc);
  ct_factory_init(&m->cf.base, &member_factory_ops, NULL, 0, m);
  m->cf.base.write_high_water = mf->write_high_water;
  m->cf.base.write_low_water = mf->write_low_water;
  m->cf.connection_failed = member_connect_failed;
  m->c = c;
  m->elig = NOT_ELIG;
  c->members[c->nmembers++] = m;
  return m;
}

/* Unlink and free a member whose connection is gone. */
static void member_free(member *m) {
  ct_rpc_client *c = m->c;
  m->gone = 1;
  elig_set(c, m, 0);
  ct_delayed_call *timers[2] = {m->removal, m->revive};
  for (size_t i = 0; i < 2; i++)
    if (timers[i] != NULL) {
      ct_delayed_call_cancel(timers[i]);
      ct_delayed_call_unref(timers[i]);
    }
  for (size_t i = 0; i < c->nmembers; i++)
    if (c->members[i] == m) {
      memmove(c->members + i, c->members + i + 1,
              (c->nmembers - i - 1) * sizeof *c->members);
      c->nmembers--;
      break;
    }
  /* Stops retrying and aborts a live connection, whose on_close finds it
   * detached. */
  ct_reconnecting_client_free(m->rc);
  free(m->endpoint);
  free(m);
}

static void on_connect(ct_messenger *msgr, void *arg) {
  ct_rpc_client *c = arg;
  member *m = NULL;
  for (size_t i = 0; i < c->nmembers && m == NULL; i++)
    if (c->members[i]->building == (ct_protocol *)msgr)
      m = c->members[i];
  cconn *conn = calloc(1, sizeof *conn);
  if (m == NULL && conn != NULL) { /* a connection made by the caller */
    m = member_new(c, ct_messenger_peer_str(msgr));
    if (m != NULL)
      m->anon = 1;
  }
  if (conn == NULL || m == NULL) {
    free(conn);
    ct_messenger_abort(msgr);
    return;
  }
  m->building = NULL;
  conn->c = c;
  conn->m = ct_messenger_ref(msgr);
  conn->mb = m;
  conn->next_id = 1;
  m->conn = conn;
  c->nconns++;
  ct_messenger_set_user(msgr, conn);
  member_update(m);
  flush_queue(c);
}

/* Retry `k` (its connection was lost) or say why not: NULL when it was
 * sent again, else the failure to finish it with. */
static ct_failure *retry_or_fail(ct_rpc_client *c, call *k, const char *where,
                                 const char *why) {
  const char *no = NULL;
  if (!k->idem)
    no = "it may have run (the method is not marked idempotent)";
  else if (k->expires >= 0 && ct_reactor_seconds(c->r) >= k->expires)
    no = "not retried: its deadline passed";
  else if (!budget_withdraw(c))
    no = "not retried: the retry budget is spent; it may have run";
  if (no == NULL) {
    k->retrying = 1;
    ct_log(CT_LOG_DEBUG, "jsonrpc", "retrying %s: connection to %s %s",
           call_name(k), where, why);
    call_dispatch(c, k);
    return NULL;
  }
  return ct_failure_new(CT_ECONNLOST,
                        "call %s: connection to %s %s before the answer; %s",
                        call_name(k), where, why, no);
}

/* Detach a connection from its member and finish what it had pending:
 * `retry` non-zero retries the idempotent calls elsewhere. */
static void conn_drop(cconn *conn, int code, const char *why, int retry) {
  ct_rpc_client *c = conn->c;
  member *m = conn->mb;
  m->conn = NULL;
  c->nconns--;
  ct_messenger_set_user(conn->m, NULL);
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
  char where[CT_ADDRESS_STRLEN + 256];
  snprintf(where, sizeof where, "%s", m->endpoint);
  ct__rpc_idmap_free(&conn->pending);
  for (size_t i = 0; i < n; i++)
    call_leaves(list[i], m);
  member_update(m);
  for (size_t i = 0; i < n; i++) {
    call *k = list[i];
    ct_failure *f = retry ? retry_or_fail(c, k, where, why)
                          : ct_failure_new(code, "call %s: connection to %s %s",
                                           call_name(k), where, why);
    if (f != NULL)
      call_finish(k, CT_NONE, f);
  }
  free(list);
  ct_messenger_unref(conn->m);
  free(conn);
}

/* 1 if `m` is still a member (callbacks fired in between may have removed
 * it). */
static int member_alive(const ct_rpc_client *c, const member *m) {
  for (size_t i = 0; i < c->nmembers; i++)
    if (c->members[i] == m)
      return !m->gone;
  return 0;
}

static void on_close(ct_messenger *msgr, size_t alive, const ct_failure *reason,
                     void *arg) {
  (void)alive;
  (void)reason;
  ct_rpc_client *c = arg;
  cconn *conn = ct_messenger_user(msgr);
  if (conn == NULL)
    return;
  member *m = conn->mb;
  conn_drop(conn, CT_ECONNLOST, "lost", 1);
  if (!member_alive(c, m))
    return;
  member_failed(m);
  if (m->anon && member_alive(c, m))
    member_free(m);
}

static void fail_queued(ct_rpc_client *c, const member *m,
                        const ct_failure *f) {
  while (c->qhead != NULL) {
    call *k = c->qhead;
    dequeue(k);
    call_finish(k, CT_NONE,
                ct_failure_wrap("ctwist", f->code, ct_failure_copy(f),
                                "call %s: cannot connect to %s", call_name(k),
                                m->endpoint));
  }
}

/* The reconnecting client's attempt failed (it retries by itself). */
static void member_connect_failed(ct_client_factory *cf,
                                  const ct_failure *reason) {
  member *m = (member *)cf;
  ct_rpc_client *c = m->c;
  m->building = NULL;
  if (c->freeing || m->gone || reason->code == CT_ECANCELLED)
    return;
  ct_log(CT_LOG_DEBUG, "jsonrpc", "connecting to %s failed: %s; retrying",
         m->endpoint,
         reason->message ? reason->message : ct_strerror(reason->code));
  member_failed(m);
  if (c->opts.fail_fast && c->nconns == 0)
    fail_queued(c, m, reason);
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
  ct_rpc_client_options *o = &c->opts;
  if (o->timeout == 0)
    o->timeout = CT_RPC_TIMEOUT_DEFAULT;
  if (o->max_queued == 0)
    o->max_queued = CT_RPC_MAX_QUEUED_DEFAULT;
  if (o->retry_initial <= 0)
    o->retry_initial = 0.5;
  if (o->retry_max <= 0)
    o->retry_max = 30.0;
  if (o->balancer != CT_RPC_BALANCE_ROUND_ROBIN)
    o->balancer = CT_RPC_BALANCE_P2C;
  if (o->accrual_failures <= 0)
    o->accrual_failures = CT_RPC_ACCRUAL_FAILURES_DEFAULT;
  if (o->accrual_backoff <= 0)
    o->accrual_backoff = CT_RPC_ACCRUAL_BACKOFF_DEFAULT;
  if (o->accrual_backoff_max <= 0)
    o->accrual_backoff_max = CT_RPC_ACCRUAL_BACKOFF_MAX_DEFAULT;
  if (o->accrual_backoff_max < o->accrual_backoff)
    o->accrual_backoff_max = o->accrual_backoff;
  if (!o->removal_window_set || o->removal_window < 0)
    o->removal_window = CT_RPC_REMOVAL_WINDOW_DEFAULT;
  if (o->retry_budget_percent == 0)
    o->retry_budget_percent = CT_RPC_RETRY_BUDGET_PERCENT_DEFAULT;
  else if (o->retry_budget_percent < 0)
    o->retry_budget_percent = 0;
  if (o->retry_budget_min_per_s == 0)
    o->retry_budget_min_per_s = CT_RPC_RETRY_BUDGET_MIN_PER_S_DEFAULT;
  else if (o->retry_budget_min_per_s < 0)
    o->retry_budget_min_per_s = 0;
  c->rng = o->seed;
  if (c->rng == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    c->rng = (uint64_t)(uintptr_t)c ^ ((uint64_t)ts.tv_sec << 32) ^
             (uint64_t)ts.tv_nsec;
  }
  for (size_t i = 0; i < CT_RPC_RETRY_WINDOW; i++)
    c->budget_sec[i] = INT64_MIN;
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
  member *m = member_find(c, endpoint);
  if (m != NULL) {
    if (m->removing) { /* revived within its window */
      m->removing = 0;
      if (m->removal != NULL) {
        ct_delayed_call_cancel(m->removal);
        ct_delayed_call_unref(m->removal);
        m->removal = NULL;
      }
      member_update(m);
      flush_queue(c);
    }
    return 0;
  }
  if ((m = member_new(c, endpoint)) == NULL)
    return CT_ENOMEM;
  ct_reconnect_policy p;
  ct_reconnect_policy_default(&p);
  /* The first retry comes after retry_initial, then doubles. */
  p.initial_delay = c->opts.retry_initial / 2;
  p.factor = 2;
  p.max_delay = c->opts.retry_max;
  p.random = rnd_unit;
  p.random_arg = c;
  p.connect = c->opts.connect;
  p.connect_arg = c->opts.connect_arg;
  /* Connects now: on_connect (or the failure) may run before it returns,
   * so the member is complete already. */
  ct_failure *err = NULL;
  ct_reconnecting_client *rc =
      ct_reconnecting_client_new(c->r, endpoint, &m->cf, &p, &err);
  if (rc == NULL) {
    int code = err != NULL ? err->code : CT_ENOMEM;
    ct_failure_free(err);
    member_free(m);
    return code == CT_ENOMEM ? CT_ENOMEM : CT_EINVAL;
  }
  m->rc = rc;
  return 0;
}

/* The removal window ended (or was 0): close the member. */
static void member_remove(member *m) {
  m->gone = 1;
  elig_set(m->c, m, 0);
  if (m->conn != NULL) {
    ct_messenger *msgr = ct_messenger_ref(m->conn->m);
    conn_drop(m->conn, CT_ECONNLOST, "closed: the member was removed", 1);
    if (m->anon)
      ct_messenger_abort(msgr);
    ct_messenger_unref(msgr);
  }
  member_free(m);
}

static void removal_due(void *arg) {
  member *m = arg;
  ct_delayed_call_unref(m->removal);
  m->removal = NULL;
  member_remove(m);
}

int ct_rpc_client_disconnect(ct_rpc_client *c, const char *endpoint) {
  if (c == NULL || endpoint == NULL)
    return CT_EINVAL;
  member *m = member_find(c, endpoint);
  if (m == NULL || m->removing)
    return CT_ENOENT;
  m->removing = 1;
  member_update(m);
  if (c->opts.removal_window <= 0 || m->conn == NULL) {
    member_remove(m);
  } else {
    m->removal = ct_call_later(c->r, c->opts.removal_window, removal_due, m);
    if (m->removal == NULL)
      member_remove(m);
    else
      ct_delayed_call_ref(m->removal);
  }
  fail_if_all_dead(c);
  return 0;
}

int ct_rpc_client_set_idempotent(ct_rpc_client *c, const char *method) {
  if (c == NULL || method == NULL)
    return CT_EINVAL;
  if (is_idempotent(c, method))
    return 0;
  char **l = realloc(c->idem, (c->nidem + 1) * sizeof *l);
  if (l == NULL)
    return CT_ENOMEM;
  c->idem = l;
  if ((l[c->nidem] = strdup(method)) == NULL)
    return CT_ENOMEM;
  c->nidem++;
  return 0;
}

size_t ct_rpc_client_members(const ct_rpc_client *c, ct_rpc_member_stats *out,
                             size_t max) {
  if (c == NULL)
    return 0;
  for (size_t i = 0; i < c->nmembers && i < max; i++) {
    const member *m = c->members[i];
    ct_rpc_member_stats s = {m->endpoint, m->conn != NULL, m->dead,
                             m->removing, m->outstanding,  m->calls,
                             m->failures, m->retries};
    out[i] = s;
  }
  return c->nmembers;
}

ct_factory *ct_rpc_client_factory(ct_rpc_client *c) {
  return c ? ct_msg_client_factory(c->mc) : NULL;
}

size_t ct_rpc_client_connections(const ct_rpc_client *c) {
  return c ? c->nconns : 0;
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
  for (size_t i = 0; i < c->nmembers; i++)
    if (c->members[i]->conn != NULL)
      conn_drop(c->members[i]->conn, CT_ECANCELLED, "closed by the client", 0);
  while (c->qhead != NULL) {
    call *k = c->qhead;
    dequeue(k);
    call_finish(
        k, CT_NONE,
        ct_failure_new(CT_ECANCELLED, "call %s: client closed", call_name(k)));
  }
  while (c->nmembers > 0)
    member_free(c->members[c->nmembers - 1]);
  ct_msg_client_free(c->mc);
  free(c->members);
  free(c->elig);
  for (size_t i = 0; i < c->nidem; i++)
    free(c->idem[i]);
  free(c->idem);
  ct_msg_header_free(c->hdr_plain);
  ct_msg_header_free(c->hdr_dl);
  ct__rpc_buf_free(&c->out);
  free(c);
}
