/* The JSON-RPC client's members, balancer, failure accrual, retry budget
 * and removal window, over scripted member sets: every member is a server
 * on the same fake-clock reactor, reached through in-memory pumps by the
 * client's `connect` hook ("mem:0", "mem:1", ...), which a test can take
 * down (connections refused) and kill (connections aborted). */
#include "test_jsonrpc_common.h"

#define MAXS 8
#define MAXP 32

typedef struct srv {
  ct_rpc_server *s;
  rpc_fx cnt; /* the methods' counters (only the counters are used) */
  int up;
  ct_pump *pumps[MAXP];
  size_t npumps;
  char name[16];
} srv;

typedef struct net {
  ct_clock *clk;
  ct_reactor *r;
  srv srv[MAXS];
  size_t n;
  int attempts; /* connection attempts through the hook */
  ct_rpc_client *c;
} net;

static ct_deferred *net_connect(ct_reactor *r, const char *endpoint,
                                ct_client_factory *cf, void *arg) {
  net *nt = arg;
  nt->attempts++;
  srv *s = NULL;
  for (size_t i = 0; i < nt->n; i++)
    if (strcmp(nt->srv[i].name, endpoint) == 0)
      s = &nt->srv[i];
  if (s == NULL || !s->up) {
    ct_failure *f =
        ct_failure_new(CT_ECONNREFUSED, "connect to %s: refused", endpoint);
    if (cf->connection_failed != NULL)
      cf->connection_failed(cf, f);
    return ct_fail(f);
  }
  cr_assert_lt(s->npumps, MAXP);
  ct_pump_options po = {.clock = nt->clk};
  ct_pump *p = ct_pump_connect_factories(r, ct_rpc_server_factory(s->s),
                                         &cf->base, &po);
  cr_assert_not_null(p);
  ct_transport *t = ct_pump_client_transport(p);
  t->client_factory = cf;
  ct_factory_do_start(&cf->base);
  s->pumps[s->npumps++] = p;
  return ct_succeed(ct_value_of(t->protocol, NULL));
}

static void net_init(net *nt, size_t n, ct_rpc_client_options *co) {
  memset(nt, 0, sizeof *nt);
  nt->clk = ct_clock_new();
  nt->r = ct_reactor_new_with_clock(nt->clk);
  nt->n = n;
  for (size_t i = 0; i < n; i++) {
    srv *s = &nt->srv[i];
    s->s = ct_rpc_server_new(nt->r, NULL);
    cr_assert_not_null(s->s);
    cr_assert_eq(ct_rpc_server_register(s->s, "sum", m_sum, &s->cnt), 0);
    cr_assert_eq(ct_rpc_server_register(s->s, "sleep", m_sleep, &s->cnt), 0);
    cr_assert_eq(ct_rpc_server_register(s->s, "apperr", m_apperr, &s->cnt),
                 0);
    s->up = 1;
    snprintf(s->name, sizeof s->name, "mem:%zu", i);
  }
  ct_rpc_client_options o = {0};
  if (co != NULL)
    o = *co;
  o.connect = net_connect;
  o.connect_arg = nt;
  if (o.seed == 0)
    o.seed = 42;
  nt->c = ct_rpc_client_new(nt->r, &o);
  cr_assert_not_null(nt->c);
}

/* Add members 0..n-1. */
static void net_join(net *nt, size_t n) {
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(ct_rpc_client_connect(nt->c, nt->srv[i].name), 0);
}

static void net_flush(net *nt) {
  long moved;
  do {
    moved = 0;
    for (size_t i = 0; i < nt->n; i++)
      for (size_t k = 0; k < nt->srv[i].npumps; k++) {
        long m = ct_pump_flush(nt->srv[i].pumps[k]);
        cr_assert_geq(m, 0);
        moved += m;
      }
  } while (moved > 0);
}

/* Advance the clock by `s` seconds in small steps, pumping between. */
static void net_advance(net *nt, double s) {
  for (double t = 0; t < s - 1e-9; t += 0.1) {
    ct_clock_advance(nt->clk, s - t < 0.1 ? s - t : 0.1);
    net_flush(nt);
  }
}

/* Server i refuses new connections and its live ones are aborted. */
static inline void net_kill(net *nt, size_t i) {
  srv *s = &nt->srv[i];
  s->up = 0;
  for (size_t k = 0; k < s->npumps; k++)
    ct_pump_free(s->pumps[k]);
  s->npumps = 0;
}

static void net_free(net *nt) {
  ct_rpc_client_free(nt->c);
  for (size_t i = 0; i < nt->n; i++) {
    for (size_t k = 0; k < nt->srv[i].npumps; k++)
      ct_pump_free(nt->srv[i].pumps[k]);
    ct_rpc_server_free(nt->srv[i].s);
  }
  ct_reactor_free(nt->r);
  ct_clock_free(nt->clk);
}

static const ct_rpc_member_stats *member(net *nt, size_t i,
                                         ct_rpc_member_stats *buf) {
  size_t n = ct_rpc_client_members(nt->c, buf, MAXS);
  cr_assert_lt(i, n);
  return &buf[i];
}

typedef struct outcome {
  int fired;
  json_t *value;
  int code;
  char msg[512];
} outcome;

static ct_step got_value(ct_value v, void *arg) {
  outcome *o = arg;
  o->fired++;
  o->value = json_incref(ct_rpc_value_json(v));
  ct_value_free(v);
  return ct_pass(CT_NONE);
}

static ct_step got_failure(ct_failure *f, void *arg) {
  outcome *o = arg;
  o->fired++;
  o->code = f->code;
  snprintf(o->msg, sizeof o->msg, "%s", f->message ? f->message : "");
  ct_failure_free(f);
  return ct_pass(CT_NONE);
}

static ct_deferred *call(net *nt, const char *method, json_t *params,
                         outcome *o) {
  ct_deferred *d = ct_rpc_call(nt->c, method, params);
  cr_assert_not_null(d);
  ct_deferred_add_callbacks(d, got_value, got_failure, o);
  return d;
}

static void call_done(net *nt, const char *method, json_t *params,
                      outcome *o) {
  ct_deferred_unref(call(nt, method, params, o));
}

Test(jsonrpc_balance, members_add_remove_and_stats) {
  net nt;
  ct_rpc_client_options co = {.removal_window = 5, .removal_window_set = 1};
  net_init(&nt, 3, &co);
  net_join(&nt, 3);
  cr_assert_eq(ct_rpc_client_connect(nt.c, "mem:1"), 0); /* no-op */
  ct_rpc_member_stats st[MAXS];
  cr_assert_eq(ct_rpc_client_members(nt.c, st, MAXS), 3);
  cr_assert_eq(ct_rpc_client_connections(nt.c), 3);
  cr_assert_eq(nt.attempts, 3);
  for (size_t i = 0; i < 3; i++) {
    cr_assert_str_eq(st[i].endpoint, nt.srv[i].name);
    cr_assert(st[i].up && !st[i].dead && !st[i].removing);
  }
  outcome o[6] = {{0}};
  for (size_t i = 0; i < 6; i++)
    call_done(&nt, "sum", json_pack("[ii]", 1, (int)i), &o[i]);
  net_flush(&nt);
  uint64_t total = 0;
  ct_rpc_client_members(nt.c, st, MAXS);
  for (size_t i = 0; i < 6; i++) {
    cr_assert_eq(o[i].fired, 1);
    cr_assert_eq(json_integer_value(o[i].value), 1 + (int)i);
    json_decref(o[i].value);
  }
  for (size_t i = 0; i < 3; i++)
    total += st[i].calls;
  cr_assert_eq(total, 6);

  cr_assert_eq(ct_rpc_client_disconnect(nt.c, "mem:9"), CT_ENOENT);
  cr_assert_eq(ct_rpc_client_disconnect(nt.c, "mem:0"), 0);
  cr_assert(member(&nt, 0, st)->removing);
  cr_assert_eq(ct_rpc_client_disconnect(nt.c, "mem:0"), CT_ENOENT);
  cr_assert_eq(ct_rpc_client_set_idempotent(nt.c, "sum"), 0);
  cr_assert_eq(ct_rpc_client_set_idempotent(nt.c, NULL), CT_EINVAL);
  net_advance(&nt, 6);
  cr_assert_eq(ct_rpc_client_members(nt.c, st, MAXS), 2);
  cr_assert_str_eq(st[0].endpoint, "mem:1");
  cr_assert_eq(ct_rpc_client_connections(nt.c), 2);
  net_free(&nt);
}
