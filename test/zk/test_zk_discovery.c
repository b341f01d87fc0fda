/*
 * Registration and discovery (ctwist/discovery.h) in one process: JSON-RPC
 * servers on loopback registered with ct_service_register(), a client fed
 * by ct_rpc_discovery_new(), against the ZooKeeper of the ctest fixture
 * `zk` ($CT_ZK_ENSEMBLE_FILE).  The member JSON tests need no ZooKeeper.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ctwist/ctwist.h"

#define WAIT_LIMIT 30.0

/* ------------------------------------------------------------ member JSON */

Test(zk_member, curator_fields_round_trip) {
  char *j = ct_service_member_json("calc", "g-7001", "10.0.0.5", 7001,
                                   1764480000000LL);
  cr_assert(j != NULL);
  json_t *o = json_loads(j, 0, NULL);
  cr_assert(json_is_object(o));
  cr_assert_str_eq(json_string_value(json_object_get(o, "name")), "calc");
  cr_assert_str_eq(json_string_value(json_object_get(o, "id")), "g-7001");
  cr_assert_str_eq(json_string_value(json_object_get(o, "address")),
                   "10.0.0.5");
  cr_assert_eq(json_integer_value(json_object_get(o, "port")), 7001);
  cr_assert_eq(json_integer_value(json_object_get(o, "registrationTimeUTC")),
               1764480000000LL);
  cr_assert_str_eq(json_string_value(json_object_get(o, "serviceType")),
                   "DYNAMIC");
  cr_assert(json_is_null(json_object_get(o, "payload")));
  cr_assert(json_is_true(json_object_get(o, "enabled")));
  json_decref(o);
  char ep[256];
  cr_assert_eq(ct_service_member_endpoint(j, strlen(j), ep, sizeof ep, NULL),
               0);
  cr_assert_str_eq(ep, "tcp:host=10.0.0.5:port=7001");
  free(j);
}

Test(zk_member, ipv6_is_escaped_and_parses) {
  const char *j = "{\"address\": \"::1\", \"port\": 9}";
  char ep[256];
  cr_assert_eq(ct_service_member_endpoint(j, strlen(j), ep, sizeof ep, NULL),
               0);
  cr_assert_str_eq(ep, "tcp:host=\\:\\:1:port=9");
  ct_endpoint e = {0};
  cr_assert_eq(ct_endpoint_parse_client(ep, &e, NULL), 0);
  cr_assert_str_eq(e.host, "::1");
  cr_assert_eq(e.port, 9);
  ct_endpoint_clear(&e);
}

Test(zk_member, bad_data_is_named) {
  static const struct {
    const char *json, *why;
  } bad[] = {
      {"", "not a JSON object"},
      {"[1]", "not a JSON object"},
      {"{\"port\": 1}", "address"},
      {"{\"address\": \"h\", \"port\": 0}", "port"},
      {"{\"address\": \"h\", \"port\": \"80\"}", "port"},
      {"{\"address\": \"h\", \"port\": 80, \"enabled\": false}", "enabled"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char ep[64];
    ct_failure *err = NULL;
    cr_assert_eq(ct_service_member_endpoint(bad[i].json, strlen(bad[i].json),
                                            ep, sizeof ep, &err),
                 CT_EPARSE, "%s accepted", bad[i].json);
    cr_assert(strstr(err->message, bad[i].why) != NULL, "%s: %s", bad[i].json,
              err->message);
    ct_failure_free(err);
  }
  char path[64];
  cr_assert_eq(ct_service_path("calc", path, sizeof path), 0);
  cr_assert_str_eq(path, "/ctwist/services/calc");
  cr_assert_eq(ct_service_path("a/b", path, sizeof path), CT_EINVAL);
  cr_assert_eq(ct_service_path("..", path, sizeof path), CT_EINVAL);
  cr_assert_eq(ct_service_path("", path, sizeof path), CT_EINVAL);
}

/* -------------------------------------------------------------- discovery */

static char ensemble[256];

static void read_ensemble(void) {
  const char *file = getenv("CT_ZK_ENSEMBLE_FILE");
  cr_assert(file != NULL, "CT_ZK_ENSEMBLE_FILE is not set (run via ctest)");
  FILE *f = fopen(file, "r");
  cr_assert(f != NULL);
  cr_assert(fgets(ensemble, sizeof ensemble, f) != NULL);
  fclose(f);
  ensemble[strcspn(ensemble, "\r\n")] = '\0';
}

typedef struct probe {
  ct_rpc_client *c;
  ct_rpc_discovery *d;
  size_t want;
} probe;

/* The client has `want` members taking calls, all up, and discovery
 * agrees. */
static int members_up(void *arg) {
  probe *p = arg;
  ct_rpc_member_stats st[8];
  size_t n = ct_rpc_client_members(p->c, st, 8), live = 0;
  for (size_t i = 0; i < n && i < 8; i++)
    live += !st[i].removing && st[i].up;
  return live == p->want && ct_rpc_discovery_members(p->d) == p->want;
}

static int wait_for(ct_reactor *r, int (*cond)(void *), void *arg) {
  double deadline = ct_reactor_seconds(r) + WAIT_LIMIT;
  while (!cond(arg)) {
    if (ct_reactor_seconds(r) > deadline)
      return 0;
    ct_reactor_iterate_wait(r, 0.5);
  }
  return 1;
}

static int called(void *arg) {
  return ct_deferred_called(arg);
}

static ct_value ok(ct_reactor *r, ct_deferred *d) {
  cr_assert(wait_for(r, called, d));
  ct_result res;
  ct_deferred_take_result(d, &res);
  ct_deferred_unref(d);
  cr_assert(res.failure == NULL, "failed: %s",
            res.failure ? res.failure->message : "");
  return res.value;
}

static ct_step add(ct_rpc_request *req, json_t *params, void *arg);

TestSuite(zk_discovery, .init = read_ensemble, .timeout = 60);

Test(zk_discovery, members_follow_registrations) {
  ct_reactor *r = ct_reactor_new();
  unsigned rnd = 0;
  cr_assert(getrandom(&rnd, sizeof rnd, 0) == (ssize_t)sizeof rnd);
  char service[64];
  snprintf(service, sizeof service, "lib-%08x", rnd);
  ct_rpc_server *s[2];
  ct_service_registration *g[2];
  ct_zk *zs = ct_zk_new(r, ensemble, NULL, NULL);
  ct_zk *zc = ct_zk_new(r, ensemble, NULL, NULL);
  cr_assert(zs != NULL && zc != NULL);
  for (int i = 0; i < 2; i++) {
    s[i] = ct_rpc_server_listen(r, "tcp:0:interface=127.0.0.1", NULL, NULL);
    cr_assert(s[i] != NULL);
    cr_assert_eq(ct_rpc_server_register(s[i], "add", add, NULL), 0);
    g[i] = ct_service_register(zs, service, "127.0.0.1",
                               ct_rpc_server_port(s[i]), NULL);
    cr_assert(g[i] != NULL);
  }
  ct_failure *err = NULL;
  cr_assert_null(ct_service_register(zs, "bad/name", "h", 1, &err));
  cr_assert_eq(err->code, CT_EINVAL);
  ct_failure_free(err);

  ct_rpc_client_options co = {.removal_window = 0, .removal_window_set = 1};
  ct_rpc_client *c = ct_rpc_client_new(r, &co);
  ct_rpc_discovery *d = ct_rpc_discovery_new(zc, service, c, NULL);
  cr_assert(d != NULL);
  ct_value_free(ok(r, ct_rpc_discovery_ready(d)));
  probe p = {c, d, 2};
  cr_assert(wait_for(r, members_up, &p), "two members never came up");
  const char *eps[4];
  cr_assert_eq(ct_rpc_discovery_endpoints(d, eps, 4), 2);

  /* Calls are spread over both. */
  for (int i = 0; i < 40; i++)
    ct_value_free(ok(r, ct_rpc_call(c, "add", json_pack("[ii]", i, 1))));
  for (int i = 0; i < 2; i++) {
    ct_rpc_server_stats st;
    ct_rpc_server_stats_get(s[i], &st);
    cr_assert_gt(st.served, 0, "server %d got no call", i);
  }

  /* One leaves: the client follows, calls go on to the other. */
  ct_value_free(ok(r, ct_service_unregister(g[0])));
  p.want = 1;
  cr_assert(wait_for(r, members_up, &p), "the member did not leave");
  ct_rpc_server_stats before;
  ct_rpc_server_stats_get(s[1], &before);
  for (int i = 0; i < 10; i++)
    ct_value_free(ok(r, ct_rpc_call(c, "add", json_pack("[ii]", i, 1))));
  ct_rpc_server_stats after;
  ct_rpc_server_stats_get(s[1], &after);
  cr_assert_eq(after.served - before.served, 10);

  ct_rpc_discovery_free(d);
  ct_rpc_client_free(c);
  ct_value_free(ok(r, ct_service_unregister(g[1])));
  ct_zk_free(zc);
  ct_zk_free(zs);
  for (int i = 0; i < 2; i++)
    ct_rpc_server_free(s[i]);
  for (int turn = 0; turn < 20; turn++)
    ct_reactor_iterate(r);
  ct_reactor_free(r);
}

static ct_step add(ct_rpc_request *req, json_t *params, void *arg) {
  (void)req;
  (void)arg;
  return ct_pass(ct_rpc_value(
      json_integer(json_integer_value(json_array_get(params, 0)) +
                   json_integer_value(json_array_get(params, 1)))));
}

/* Starting with ZooKeeper unreachable is an error after a bounded wait,
 * and the error names the ensemble. */
Test(zk_member, ready_fails_naming_the_ensemble) {
  ct_reactor *r = ct_reactor_new();
  ct_zk_options o = {.connect_timeout = 1.0};
  ct_zk *zk = ct_zk_new(r, "127.0.0.1:1", &o, NULL);
  ct_rpc_client *c = ct_rpc_client_new(r, NULL);
  ct_rpc_discovery *d = ct_rpc_discovery_new(zk, "calc", c, NULL);
  ct_deferred *x = ct_rpc_discovery_ready(d);
  cr_assert(wait_for(r, called, x));
  ct_result res;
  ct_deferred_take_result(x, &res);
  ct_deferred_unref(x);
  cr_assert(res.failure != NULL);
  cr_assert_eq(res.failure->code, CT_ETIMEDOUT);
  cr_assert(strstr(res.failure->message, "127.0.0.1:1") != NULL, "%s",
            res.failure->message);
  ct_failure_free(res.failure);
  cr_assert_eq(ct_rpc_discovery_members(d), 0);
  ct_rpc_discovery_free(d);
  ct_rpc_client_free(c);
  ct_zk_free(zk);
  for (int turn = 0; turn < 5; turn++)
    ct_reactor_iterate(r);
  ct_reactor_free(r);
}
