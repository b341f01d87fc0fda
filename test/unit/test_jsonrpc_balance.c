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
  char name[32];
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
  ct_pump *p =
      ct_pump_connect_factories(r, ct_rpc_server_factory(s->s), &cf->base, &po);
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
    cr_assert_eq(ct_rpc_server_register(s->s, "apperr", m_apperr, &s->cnt), 0);
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

/* n servers, all of them members. */
static void net_up(net *nt, size_t n, ct_rpc_client_options *co) {
  net_init(nt, n, co);
  net_join(nt, n);
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
static void net_kill(net *nt, size_t i) {
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

static ct_deferred *call(net *nt, const char *method, json_t *params,
                         outcome *o) {
  ct_deferred *d = ct_rpc_call(nt->c, method, params);
  cr_assert_not_null(d);
  ct_deferred_add_callbacks(d, got_value, got_failure, o);
  return d;
}

static void call_done(net *nt, const char *method, json_t *params, outcome *o) {
  ct_deferred_unref(call(nt, method, params, o));
}

Test(jsonrpc_balance, members_add_remove_and_stats) {
  net nt;
  ct_rpc_client_options co = {.removal_window = 5, .removal_window_set = 1};
  net_up(&nt, 3, &co);
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

static json_t *secs(double s) {
  return json_pack("[f]", s);
}

Test(jsonrpc_balance, p2c_picks_the_less_loaded) {
  net nt;
  net_up(&nt, 2, NULL);
  outcome slow = {0}, fast[10] = {{0}};
  call_done(&nt, "sleep", secs(100), &slow);
  net_flush(&nt);
  size_t busy = nt.srv[0].cnt.sleeps_started == 1 ? 0 : 1;
  cr_assert_eq(nt.srv[busy].cnt.sleeps_started, 1);
  /* Of the two, the idle one always has fewer calls outstanding. */
  for (size_t i = 0; i < 10; i++) {
    call_done(&nt, "sum", json_pack("[i]", 1), &fast[i]);
    net_flush(&nt);
    cr_assert_eq(fast[i].fired, 1);
    json_decref(fast[i].value);
  }
  cr_assert_eq(nt.srv[1 - busy].cnt.calls, 10);
  cr_assert_eq(nt.srv[busy].cnt.calls, 1);
  ct_rpc_member_stats st[MAXS];
  cr_assert_eq(member(&nt, busy, st)->outstanding, 1);
  cr_assert_eq(member(&nt, 1 - busy, st)->outstanding, 0);
  cr_assert_eq(member(&nt, 1 - busy, st)->calls, 10);
  net_free(&nt);
  cr_assert_eq(slow.fired, 1);
  cr_assert_eq(slow.code, CT_ECANCELLED);
}

Test(jsonrpc_balance, p2c_spreads_over_three) {
  net nt;
  net_up(&nt, 3, NULL);
  /* Calls held open: p2c keeps the loads within one of each other once
   * every pair has been compared, and never idles a member. */
  outcome o[30] = {{0}};
  for (size_t i = 0; i < 30; i++)
    call_done(&nt, "sleep", secs(10), &o[i]);
  net_flush(&nt);
  for (size_t i = 0; i < 3; i++) {
    cr_assert_geq(nt.srv[i].cnt.sleeps_started, 5, "member %zu: %d", i,
                  nt.srv[i].cnt.sleeps_started);
    cr_assert_leq(nt.srv[i].cnt.sleeps_started, 15);
  }
  net_advance(&nt, 10);
  for (size_t i = 0; i < 30; i++) {
    cr_assert_eq(o[i].fired, 1);
    json_decref(o[i].value);
  }
  net_free(&nt);
}

Test(jsonrpc_balance, round_robin_order) {
  net nt;
  ct_rpc_client_options co = {.balancer = CT_RPC_BALANCE_ROUND_ROBIN};
  net_up(&nt, 3, &co);
  for (int i = 0; i < 9; i++) {
    outcome o = {0};
    call_done(&nt, "sum", json_pack("[i]", i), &o);
    net_flush(&nt);
    cr_assert_eq(o.fired, 1);
    json_decref(o.value);
    for (int k = 0; k < 3; k++)
      cr_assert_eq(nt.srv[k].cnt.calls, i / 3 + (k <= i % 3),
                   "call %d, member %d", i, k);
  }
  net_free(&nt);
}

Test(jsonrpc_balance, accrual_marks_dead_then_probes) {
  net nt;
  ct_rpc_client_options co = {
      .accrual_failures = 2, .accrual_backoff = 4, .timeout = 1};
  net_up(&nt, 2, &co);
  ct_rpc_member_stats st[MAXS];
  /* Member 1 goes down: the lost connection and the refused reconnect
   * are two failures in a row. */
  net_kill(&nt, 1);
  cr_assert(!member(&nt, 1, st)->dead);
  net_advance(&nt, 1);
  cr_assert(member(&nt, 1, st)->dead);
  cr_assert_geq(member(&nt, 1, st)->failures, 2);
  /* While dead it takes nothing, even once reconnected. */
  nt.srv[1].up = 1;
  net_advance(&nt, 2);
  cr_assert(member(&nt, 1, st)->up);
  for (int i = 0; i < 4; i++) {
    outcome o = {0};
    call_done(&nt, "sum", json_pack("[i]", i), &o);
    net_flush(&nt);
    cr_assert_eq(o.fired, 1);
    json_decref(o.value);
  }
  cr_assert_eq(nt.srv[1].cnt.calls, 0);
  /* After the back-off (4 s +-20%) one probe goes; it never answers in
   * time, so the member is dead again for twice as long. */
  outcome slow = {0}; /* loads member 0, so p2c prefers member 1 */
  ct_deferred *ds = ct_rpc_call_timeout(nt.c, "sleep", secs(100), 100);
  ct_deferred_add_callbacks(ds, got_value, got_failure, &slow);
  ct_deferred_unref(ds);
  net_flush(&nt);
  cr_assert_eq(nt.srv[0].cnt.sleeps_started, 1);
  net_advance(&nt, 3); /* t = 6 > 1 + 4.8 */
  outcome probe = {0};
  call_done(&nt, "sleep", secs(100), &probe);
  net_flush(&nt);
  cr_assert_eq(nt.srv[1].cnt.sleeps_started, 1, "the probe went to member 1");
  outcome held = {0};
  call_done(&nt, "sum", json_pack("[i]", 5), &held);
  net_flush(&nt);
  cr_assert_eq(nt.srv[1].cnt.calls, 1, "one probe at a time");
  cr_assert_eq(held.fired, 1);
  json_decref(held.value);
  net_advance(&nt, 1.1);
  cr_assert_eq(probe.code, CT_ETIMEDOUT);
  cr_assert(member(&nt, 1, st)->dead);
  /* Dead for 8 s +-20%: nothing at 6 s, a successful probe by 10 s. */
  net_advance(&nt, 6);
  outcome o = {0};
  call_done(&nt, "sum", json_pack("[i]", 1), &o);
  net_flush(&nt);
  json_decref(o.value);
  cr_assert_eq(nt.srv[1].cnt.calls, 1);
  net_advance(&nt, 4);
  cr_assert(member(&nt, 1, st)->dead);
  for (int i = 0; i < 20 && member(&nt, 1, st)->dead; i++) {
    outcome p = {0};
    call_done(&nt, "sum", json_pack("[i]", 1), &p);
    net_flush(&nt);
    cr_assert_eq(p.fired, 1);
    json_decref(p.value);
  }
  cr_assert(!member(&nt, 1, st)->dead, "a successful probe revives it");
  cr_assert_eq(nt.srv[1].cnt.calls, 2);
  net_free(&nt);
}

Test(jsonrpc_balance, all_dead_fails_at_once) {
  net nt;
  ct_rpc_client_options co = {.accrual_failures = 1};
  net_up(&nt, 2, &co);
  net_kill(&nt, 0);
  net_kill(&nt, 1);
  ct_rpc_member_stats st[MAXS];
  cr_assert(member(&nt, 0, st)->dead && member(&nt, 1, st)->dead);
  outcome o = {0};
  call_done(&nt, "sum", json_pack("[i]", 1), &o);
  cr_assert_eq(o.fired, 1, "no waiting");
  cr_assert_eq(o.code, CT_ENOTCONN);
  cr_assert(strstr(o.msg, "all 2 members are dead") != NULL, "%s", o.msg);
  cr_assert(strstr(o.msg, "mem:0, mem:1") != NULL, "%s", o.msg);
  net_free(&nt);
}

Test(jsonrpc_balance, queued_calls_fail_when_the_last_member_dies) {
  net nt;
  ct_rpc_client_options co = {.accrual_failures = 2};
  net_init(&nt, 1, &co);
  nt.srv[0].up = 0;
  net_join(&nt, 1); /* refused: one failure */
  outcome o = {0};
  call_done(&nt, "sum", json_pack("[i]", 1), &o);
  cr_assert_eq(o.fired, 0, "held while the member may still come up");
  cr_assert_eq(ct_rpc_client_queued(nt.c), 1);
  net_advance(&nt, 1); /* the retry is refused: dead */
  cr_assert_eq(o.fired, 1);
  cr_assert(strstr(o.msg, "all 1 members are dead (failure accrual): mem:0"),
            "%s", o.msg);
  net_free(&nt);
}

Test(jsonrpc_balance, idempotent_call_retried_on_another_member) {
  net nt;
  ct_rpc_client_options co = {.balancer = CT_RPC_BALANCE_ROUND_ROBIN};
  net_up(&nt, 2, &co);
  cr_assert_eq(ct_rpc_client_set_idempotent(nt.c, "sleep"), 0);
  outcome o = {0};
  call_done(&nt, "sleep", secs(5), &o);
  net_flush(&nt);
  cr_assert_eq(nt.srv[0].cnt.sleeps_started, 1);
  net_kill(&nt, 0);
  net_flush(&nt);
  cr_assert_eq(o.fired, 0);
  cr_assert_eq(nt.srv[1].cnt.sleeps_started, 1, "sent again to member 1");
  ct_rpc_member_stats st[MAXS];
  cr_assert_eq(member(&nt, 1, st)->retries, 1);
  net_advance(&nt, 5);
  cr_assert_eq(o.fired, 1);
  cr_assert_eq(o.code, 0, "%s", o.msg);
  cr_assert_eq(json_real_value(o.value), 5.0);
  json_decref(o.value);
  net_free(&nt);
}

Test(jsonrpc_balance, non_idempotent_call_may_have_run) {
  net nt;
  ct_rpc_client_options co = {.balancer = CT_RPC_BALANCE_ROUND_ROBIN};
  net_up(&nt, 2, &co);
  outcome o = {0};
  call_done(&nt, "sleep", secs(5), &o);
  net_flush(&nt);
  net_kill(&nt, 0);
  cr_assert_eq(o.fired, 1);
  cr_assert_eq(o.code, CT_ECONNLOST);
  cr_assert(strstr(o.msg, "call sleep: connection to mem:0 lost before the "
                          "answer; it may have run") != NULL,
            "%s", o.msg);
  cr_assert_eq(nt.srv[1].cnt.sleeps_started, 0);
  net_free(&nt);
}

Test(jsonrpc_balance, retry_budget_exhausted) {
  net nt;
  /* No deposits, 0.1 retry/s: one retry per 10 s window. */
  ct_rpc_client_options co = {.balancer = CT_RPC_BALANCE_ROUND_ROBIN,
                              .retry_budget_percent = -1,
                              .retry_budget_min_per_s = 0.1};
  net_up(&nt, 2, &co);
  ct_rpc_client_set_idempotent(nt.c, "sleep");
  outcome o[3] = {{0}};
  for (int i = 0; i < 3; i++)
    call_done(&nt, "sleep", secs(5), &o[i]);
  net_flush(&nt);
  cr_assert_eq(nt.srv[0].cnt.sleeps_started, 2);
  net_kill(&nt, 0);
  net_flush(&nt);
  int retried = o[0].fired == 0 ? 0 : 2, failed = 2 - retried;
  cr_assert_eq(o[retried].fired, 0);
  cr_assert_eq(o[failed].fired, 1);
  cr_assert_eq(o[failed].code, CT_ECONNLOST);
  cr_assert(strstr(o[failed].msg, "retry budget is spent") != NULL, "%s",
            o[failed].msg);
  cr_assert_eq(nt.srv[1].cnt.sleeps_started, 2);
  net_advance(&nt, 5);
  cr_assert_eq(o[retried].code, 0);
  cr_assert_eq(o[1].code, 0);
  json_decref(o[retried].value);
  json_decref(o[1].value);
  net_free(&nt);
}

Test(jsonrpc_balance, retry_keeps_the_deadline_and_cancel_follows) {
  net nt;
  ct_rpc_client_options co = {.balancer = CT_RPC_BALANCE_ROUND_ROBIN};
  net_up(&nt, 3, &co);
  ct_rpc_client_set_idempotent(nt.c, "sleep");
  outcome a = {0}, b = {0};
  ct_deferred *da = ct_rpc_call_timeout(nt.c, "sleep", secs(5), 2);
  ct_deferred_add_callbacks(da, got_value, got_failure, &a);
  ct_deferred *db = call(&nt, "sleep", secs(5), &b); /* member 1 */
  net_flush(&nt);
  net_advance(&nt, 1.5);
  net_kill(&nt, 0); /* a goes to member 2 with 0.5 s left */
  net_kill(&nt, 1); /* b goes to member 2 too */
  net_flush(&nt);
  cr_assert_eq(nt.srv[2].cnt.sleeps_started, 2);
  /* Cancelling b reaches member 2, which has it now. */
  ct_deferred_cancel(db);
  net_flush(&nt);
  cr_assert_eq(b.code, CT_ECANCELLED);
  cr_assert_eq(nt.srv[2].cnt.sleeps_cancelled, 1);
  /* a times out at 2 s, not later; the server gave up at its deadline. */
  net_advance(&nt, 0.6);
  cr_assert_eq(a.fired, 1);
  cr_assert_eq(a.code, CT_ETIMEDOUT);
  cr_assert_eq(nt.srv[2].cnt.sleeps_cancelled, 2);
  cr_assert_eq(nt.srv[2].cnt.sleeps_done, 0);
  ct_deferred_unref(da);
  ct_deferred_unref(db);
  net_free(&nt);
}

Test(jsonrpc_balance, removal_window_keeps_inflight_and_revives) {
  net nt;
  ct_rpc_client_options co = {.balancer = CT_RPC_BALANCE_ROUND_ROBIN,
                              .removal_window = 10,
                              .removal_window_set = 1};
  net_up(&nt, 2, &co);
  outcome o = {0};
  call_done(&nt, "sleep", secs(3), &o); /* member 0 */
  net_flush(&nt);
  cr_assert_eq(ct_rpc_client_disconnect(nt.c, "mem:0"), 0);
  for (int i = 0; i < 3; i++) {
    outcome p = {0};
    call_done(&nt, "sum", json_pack("[i]", i), &p);
    net_flush(&nt);
    json_decref(p.value);
  }
  cr_assert_eq(nt.srv[1].cnt.calls, 3, "a removed member takes no call");
  net_advance(&nt, 3);
  cr_assert_eq(o.fired, 1);
  cr_assert_eq(o.code, 0, "the call in flight got its answer: %s", o.msg);
  json_decref(o.value);
  /* Re-added within the window: the same connection serves again. */
  int attempts = nt.attempts;
  cr_assert_eq(ct_rpc_client_connect(nt.c, "mem:0"), 0);
  ct_rpc_member_stats st[MAXS];
  cr_assert(!member(&nt, 0, st)->removing && member(&nt, 0, st)->up);
  net_advance(&nt, 11);
  cr_assert_eq(nt.attempts, attempts, "revived without reconnecting");
  cr_assert_eq(ct_rpc_client_members(nt.c, st, MAXS), 2);
  /* Removed for good after the window. */
  cr_assert_eq(ct_rpc_client_disconnect(nt.c, "mem:0"), 0);
  net_advance(&nt, 9);
  cr_assert_eq(ct_rpc_client_members(nt.c, st, MAXS), 2);
  net_advance(&nt, 2);
  cr_assert_eq(ct_rpc_client_members(nt.c, st, MAXS), 1);
  cr_assert_eq(ct_rpc_client_connections(nt.c), 1);
  net_free(&nt);
}

Test(jsonrpc_balance, removal_window_zero_is_at_once) {
  net nt;
  ct_rpc_client_options co = {.removal_window = 0, .removal_window_set = 1};
  net_up(&nt, 2, &co);
  cr_assert_eq(ct_rpc_client_set_idempotent(nt.c, "sleep"), 0);
  outcome o = {0};
  call_done(&nt, "sleep", secs(1), &o);
  net_flush(&nt);
  size_t on = nt.srv[0].cnt.sleeps_started == 1 ? 0 : 1;
  cr_assert_eq(ct_rpc_client_disconnect(nt.c, nt.srv[on].name), 0);
  ct_rpc_member_stats st[MAXS];
  cr_assert_eq(ct_rpc_client_members(nt.c, st, MAXS), 1);
  cr_assert_eq(ct_rpc_client_connections(nt.c), 1);
  net_flush(&nt);
  cr_assert_eq(nt.srv[1 - on].cnt.sleeps_started, 1, "retried elsewhere");
  net_advance(&nt, 1);
  cr_assert_eq(o.code, 0, "%s", o.msg);
  json_decref(o.value);
  net_free(&nt);
}

Test(jsonrpc_balance, error_answers_are_successes_for_accrual) {
  net nt;
  ct_rpc_client_options co = {.accrual_failures = 2, .timeout = 1};
  net_up(&nt, 1, &co);
  ct_rpc_member_stats st[MAXS];
  outcome t1 = {0}, e = {0}, t2 = {0}, t3 = {0};
  call_done(&nt, "sleep", secs(10), &t1);
  net_advance(&nt, 1.1);
  cr_assert_eq(t1.code, CT_ETIMEDOUT);
  call_done(&nt, "apperr", NULL, &e); /* an answer: resets the count */
  net_flush(&nt);
  cr_assert_eq(e.code, -32000);
  call_done(&nt, "sleep", secs(10), &t2);
  net_advance(&nt, 1.1);
  cr_assert_eq(t2.code, CT_ETIMEDOUT);
  cr_assert(!member(&nt, 0, st)->dead);
  call_done(&nt, "sleep", secs(10), &t3);
  net_advance(&nt, 1.1);
  cr_assert(member(&nt, 0, st)->dead, "two timeouts in a row");
  cr_assert_eq(member(&nt, 0, st)->failures, 3);
  net_free(&nt);
}

Test(jsonrpc_balance, member_reconnects_with_backoff) {
  net nt;
  ct_rpc_client_options co = {.retry_initial = 1, .retry_max = 4};
  net_up(&nt, 1, &co);
  cr_assert_eq(nt.attempts, 1);
  net_kill(&nt, 0);
  cr_assert_eq(ct_rpc_client_connections(nt.c), 0);
  net_advance(&nt, 0.5);
  cr_assert_eq(nt.attempts, 1, "no retry before the back-off");
  net_advance(&nt, 1.5);
  cr_assert_eq(nt.attempts, 2, "one refused retry after about 1 s");
  outcome o = {0};
  call_done(&nt, "sum", json_pack("[i]", 7), &o);
  cr_assert_eq(ct_rpc_client_queued(nt.c), 1);
  nt.srv[0].up = 1;
  net_advance(&nt, 4);
  cr_assert_eq(ct_rpc_client_connections(nt.c), 1);
  cr_assert_eq(o.fired, 1);
  cr_assert_eq(json_integer_value(o.value), 7);
  json_decref(o.value);
  net_free(&nt);
}
