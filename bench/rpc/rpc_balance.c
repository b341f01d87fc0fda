/*
 * Client-side balancer overhead (issue 11): the cost per call of the
 * JSON-RPC client's member choice at 1, 3 and 100 members, for power of
 * two choices and round robin.
 *
 *   build/bench/rpc/rpc_balance [CALLS [REPS [MEMBERS]]]
 *
 * (MEMBERS: one p2c run over that many members only, for profilers.)
 *
 * Every member is an in-memory connection (the client's `connect` hook and
 * the testing pump) to one ct_rpc_server answering `add` on the same
 * reactor, so no socket is involved.  Calls go out in rounds of ROUND
 * (all in flight together, so p2c sees real loads), then every pump is
 * flushed and the answers come back.  Two CPU times are kept per call:
 * the send phase alone (the client: the call, the choice of member, the
 * request written to that member's connection) and the whole round trip
 * (client, framing and server).  Each configuration runs REPS times,
 * interleaved; the figures are medians, and the overhead of a
 * configuration is its difference with the 1-member run of the same
 * repetition (the reference: a pick among one member is no choice).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bench_util.h"
#include "ctwist/ctwist.h"
#include "ctwist/testing.h"

#define ROUND 1000
#define MAXM 100

typedef struct bench {
  ct_reactor *r;
  ct_rpc_server *s;
  ct_pump *pumps[MAXM];
  size_t npumps;
  long done, failed;
} bench;

static ct_step m_add(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  (void)arg;
  return ct_pass(ct_rpc_value(
      json_integer(json_integer_value(json_array_get(params, 0)) +
                   json_integer_value(json_array_get(params, 1)))));
}

static ct_deferred *mem_connect(ct_reactor *r, const char *endpoint,
                                ct_client_factory *cf, void *arg) {
  (void)endpoint;
  bench *b = arg;
  ct_pump *p = b->npumps < MAXM
                   ? ct_pump_connect_factories(r, ct_rpc_server_factory(b->s),
                                               &cf->base, NULL)
                   : NULL;
  if (p == NULL) {
    ct_failure *f = ct_failure_new(CT_ENOMEM, "no pump");
    cf->connection_failed(cf, f);
    return ct_fail(f);
  }
  ct_transport *t = ct_pump_client_transport(p);
  t->client_factory = cf;
  ct_factory_do_start(&cf->base);
  b->pumps[b->npumps++] = p;
  return ct_succeed(ct_value_of(t->protocol, NULL));
}

static ct_step done(ct_result res, void *arg) {
  bench *b = arg;
  b->done++;
  if (res.failure != NULL) {
    b->failed++;
    ct_failure_free(res.failure);
  } else {
    ct_value_free(res.value);
  }
  return ct_pass(CT_NONE);
}

/* CPU seconds per call for `calls` calls over `members` members: the
 * round trip, and the send phase in *send. */
static double run(size_t members, int balancer, long calls, double *send) {
  bench b;
  memset(&b, 0, sizeof b);
  b.r = ct_reactor_new();
  b.s = ct_rpc_server_new(b.r, NULL);
  ct_rpc_server_register(b.s, "add", m_add, NULL);
  ct_rpc_client_options co = {.balancer = balancer,
                              .seed = 1,
                              .connect = mem_connect,
                              .connect_arg = &b};
  ct_rpc_client *c = ct_rpc_client_new(b.r, &co);
  for (size_t i = 0; i < members; i++) {
    char ep[32];
    snprintf(ep, sizeof ep, "mem:%zu", i);
    if (ct_rpc_client_connect(c, ep) != 0) {
      fprintf(stderr, "rpc_balance: cannot add %s\n", ep);
      exit(1);
    }
  }
  json_t *params = json_pack("[ii]", 1, 2);
  double t0 = bench_seconds(CLOCK_PROCESS_CPUTIME_ID), ts = 0;
  for (long sent = 0; sent < calls;) {
    double t1 = bench_seconds(CLOCK_PROCESS_CPUTIME_ID);
    for (long i = 0; i < ROUND && sent < calls; i++, sent++) {
      /* No timeout: no timer per call, whose heap would grow with the
       * calls in flight rather than with the choice of member. */
      ct_deferred *d = ct_rpc_call_timeout(c, "add", json_incref(params), 0);
      ct_deferred_add_both(d, done, &b);
      ct_deferred_unref(d);
    }
    ts += bench_seconds(CLOCK_PROCESS_CPUTIME_ID) - t1;
    for (size_t i = 0; i < b.npumps; i++)
      ct_pump_flush(b.pumps[i]);
  }
  double t = bench_seconds(CLOCK_PROCESS_CPUTIME_ID) - t0;
  if (b.done != calls || b.failed != 0) {
    fprintf(stderr, "rpc_balance: %ld of %ld calls answered, %ld failed\n",
            b.done, calls, b.failed);
    exit(1);
  }
  json_decref(params);
  ct_rpc_client_free(c);
  for (size_t i = 0; i < b.npumps; i++)
    ct_pump_free(b.pumps[i]);
  ct_rpc_server_free(b.s);
  ct_reactor_iterate(b.r);
  ct_reactor_free(b.r);
  *send = ts / (double)calls;
  return t / (double)calls;
}

static int cmp(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

int main(int argc, char **argv) {
  long calls = argc > 1 ? atol(argv[1]) : 200000;
  int reps = argc > 2 ? atoi(argv[2]) : 5;
  if (calls < 1 || reps < 1 || reps > 99) {
    fprintf(stderr, "usage: rpc_balance [CALLS [REPS (1..99) [MEMBERS]]]\n");
    return 2;
  }
  if (argc > 3) {
    long m = atol(argv[3]);
    if (m < 1 || m > MAXM) {
      fprintf(stderr, "rpc_balance: MEMBERS is 1..%d\n", MAXM);
      return 2;
    }
    double send, trip = run((size_t)m, CT_RPC_BALANCE_P2C, calls, &send);
    printf("send %.0f ns/call, round trip %.0f ns/call\n", send * 1e9,
           trip * 1e9);
    return 0;
  }
  static const struct {
    size_t members;
    int balancer;
    const char *name;
  } cfg[] = {{1, CT_RPC_BALANCE_P2C, "p2c"},
             {3, CT_RPC_BALANCE_P2C, "p2c"},
             {3, CT_RPC_BALANCE_ROUND_ROBIN, "rr"},
             {100, CT_RPC_BALANCE_P2C, "p2c"},
             {100, CT_RPC_BALANCE_ROUND_ROBIN, "rr"}};
  enum { NCFG = sizeof cfg / sizeof cfg[0] };
  double ns[NCFG][99], over[NCFG][99], sn[NCFG][99], sover[NCFG][99];
  for (int rep = 0; rep < reps; rep++)
    for (size_t k = 0; k < NCFG; k++) {
      double send;
      ns[k][rep] = run(cfg[k].members, cfg[k].balancer, calls, &send) * 1e9;
      sn[k][rep] = send * 1e9;
      over[k][rep] = ns[k][rep] - ns[0][rep];
      sover[k][rep] = sn[k][rep] - sn[0][rep];
    }
  printf("JSON-RPC client, %ld `add` calls per run over in-memory members, "
         "%d in flight, median of %d runs (CPU time per call, ns)\n",
         calls, ROUND, reps);
  printf("%8s %9s %10s %14s %11s %14s\n", "members", "balancer", "send",
         "send vs 1", "round trip", "trip vs 1");
  for (size_t k = 0; k < NCFG; k++) {
    double *v[4] = {sn[k], sover[k], ns[k], over[k]};
    for (size_t i = 0; i < 4; i++)
      qsort(v[i], (size_t)reps, sizeof(double), cmp);
    printf("%8zu %9s %10.0f %14.0f %11.0f %14.0f\n", cfg[k].members,
           cfg[k].name, sn[k][reps / 2], sover[k][reps / 2], ns[k][reps / 2],
           over[k][reps / 2]);
  }
  return 0;
}
