/*
 * rpc_zk.c: ct-rpc --zk ENSEMBLE --service NAME: the client's members come
 * from ZooKeeper (ctwist/discovery.h) instead of --connect.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/ctwist.h"
#include "rpc_zk.h"

static int fired(ct_deferred *d) {
  return ct_deferred_called(d);
}

int rpc_zk_start(rpc_zk *z, ct_reactor *r, ct_rpc_client *c,
                 const char *ensemble, const char *service) {
  ct_failure *err = NULL;
  /* A command-line tool: the session's and the members' comings and
   * goings are not news, trouble is. */
  ct_log_set_default_level(CT_LOG_WARN);
  z->zk = ct_zk_new(r, ensemble, NULL, &err);
  if (z->zk != NULL)
    z->disc = ct_rpc_discovery_new(z->zk, service, c, &err);
  if (z->disc == NULL) {
    fprintf(stderr, "ct-rpc: %s\n", err ? err->message : "out of memory");
    ct_failure_free(err);
    return 2;
  }
  /* Bounded: the session's connect timeout names the ensemble. */
  ct_deferred *ready = ct_rpc_discovery_ready(z->disc);
  while (!fired(ready))
    ct_reactor_iterate_wait(r, 1.0);
  ct_result res;
  ct_deferred_take_result(ready, &res);
  ct_deferred_unref(ready);
  if (res.failure != NULL) {
    fprintf(stderr, "ct-rpc: --zk: %s\n", res.failure->message);
    ct_failure_free(res.failure);
    return 1;
  }
  ct_value_free(res.value);
  if (ct_rpc_discovery_members(z->disc) == 0) {
    fprintf(stderr,
            "ct-rpc: no member of service '%s' is registered in ZooKeeper "
            "%s (/ctwist/services/%s)\n",
            service, ensemble, service);
    return 1;
  }
  return 0;
}

size_t rpc_zk_members(const rpc_zk *z) {
  return z->disc != NULL ? ct_rpc_discovery_members(z->disc) : 0;
}

size_t rpc_zk_endpoints(rpc_zk *z, const char **out, size_t max) {
  const char *eps[RPC_ZK_MAX_EPS];
  size_t n = ct_rpc_discovery_endpoints(z->disc, eps, RPC_ZK_MAX_EPS);
  if (n > RPC_ZK_MAX_EPS)
    n = RPC_ZK_MAX_EPS;
  if (n > max)
    n = max;
  for (size_t i = 0; i < n; i++) {
    free(z->eps[i]);
    z->eps[i] = strdup(eps[i]);
    out[i] = z->eps[i] != NULL ? z->eps[i] : "?";
  }
  return n;
}

void rpc_zk_print_members(const rpc_zk *z) {
  const char *eps[256];
  size_t n = ct_rpc_discovery_endpoints(z->disc, eps, 256);
  for (size_t i = 0; i < n && i < 256; i++)
    printf("%s\n", eps[i]);
}

void rpc_zk_free(rpc_zk *z) {
  ct_rpc_discovery_free(z->disc);
  ct_zk_free(z->zk);
  z->disc = NULL;
  z->zk = NULL;
  for (size_t i = 0; i < RPC_ZK_MAX_EPS; i++) {
    free(z->eps[i]);
    z->eps[i] = NULL;
  }
}
