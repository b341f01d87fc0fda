/* rpc_zk.h: ct-rpc's ZooKeeper discovery (rpc_zk.c).  Not a library
 * header. */
#ifndef CT_RPC_RPC_ZK_H
#define CT_RPC_RPC_ZK_H

#include "ctwist/ctwist.h"

#define RPC_ZK_MAX_EPS 64

typedef struct rpc_zk {
  ct_zk *zk;
  ct_rpc_discovery *disc;
  char *eps[RPC_ZK_MAX_EPS]; /* copies made by rpc_zk_endpoints() */
} rpc_zk;

/* Open a session, watch `service` feeding `c`, and turn the reactor until
 * the members are known.  Returns 0, or an exit status after printing the
 * problem (ZooKeeper unreachable: it names the ensemble; no member). */
int rpc_zk_start(rpc_zk *z, ct_reactor *r, ct_rpc_client *c,
                 const char *ensemble, const char *service);
size_t rpc_zk_members(const rpc_zk *z);
/* The members now, as endpoints (copies owned by `z`, valid until
 * rpc_zk_free()); at most `max`.  Returns how many were stored. */
size_t rpc_zk_endpoints(rpc_zk *z, const char **out, size_t max);
void rpc_zk_print_members(const rpc_zk *z); /* one endpoint a line */
void rpc_zk_free(rpc_zk *z);

#endif
