/*
 * limits.c: connection limits (Twisted's LimitTotalConnectionsFactory and
 * LimitConnectionsByPeer) as one policy factory.
 *
 * The check runs in build_protocol, before the wrapped factory builds
 * anything: a refused connection costs no protocol and the listener closes
 * it at once.  Counts are taken when a connection is built and dropped when
 * its protocol is released, which also covers connections that never got
 * to connection_made.  Per-peer counts live in a short list of hosts with
 * live connections; a server with many distinct peers would want a hash
 * table, but the list stays as short as the number of distinct live hosts.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/log.h"
#include "protocols/policies/internal.h"

typedef struct peer_entry {
  struct peer_entry *next;
  unsigned count;
  char host[INET6_ADDRSTRLEN + 8];
} peer_entry;

typedef struct limit_factory {
  ct_policy_factory pf; /* first */
  unsigned max_total, max_per_peer;
  peer_entry *peers;
} limit_factory;

typedef struct limit_conn {
  ct__wrap w; /* first */
  peer_entry *entry;
} limit_conn;

/* The host part of an address: the IP without the port. */
static void host_key(const ct_address *a, char *buf, size_t len) {
  const char *r = NULL;
  if (a != NULL && a->family == CT_ADDRESS_IPV4)
    r = inet_ntop(AF_INET, &a->u.in4.sin_addr, buf, (socklen_t)len);
  else if (a != NULL && a->family == CT_ADDRESS_IPV6)
    r = inet_ntop(AF_INET6, &a->u.in6.sin6_addr, buf, (socklen_t)len);
  else if (a != NULL && a->family == CT_ADDRESS_UNIX)
    r = strcpy(buf, "unix");
  if (r == NULL)
    strcpy(buf, "unknown");
}

static peer_entry *find_peer(limit_factory *lf, const char *host) {
  for (peer_entry *e = lf->peers; e != NULL; e = e->next)
    if (strcmp(e->host, host) == 0)
      return e;
  return NULL;
}

static int lim_admit(ct_policy_factory *pf, const ct_address *peer) {
  limit_factory *lf = (limit_factory *)pf;
  char text[CT_ADDRESS_STRLEN];
  if (lf->max_total > 0 && pf->conns >= lf->max_total) {
    ct_address_format(peer, text, sizeof text);
    ct_log(CT_LOG_WARN, "policies",
           "refused connection from %s: %u connections (limit %u)", text,
           pf->conns, lf->max_total);
    return -1;
  }
  if (lf->max_per_peer > 0) {
    char host[INET6_ADDRSTRLEN + 8];
    host_key(peer, host, sizeof host);
    peer_entry *e = find_peer(lf, host);
    if (e != NULL && e->count >= lf->max_per_peer) {
      ct_address_format(peer, text, sizeof text);
      ct_log(CT_LOG_WARN, "policies",
             "refused connection from %s: %u connections from %s "
             "(limit %u per peer)",
             text, e->count, host, lf->max_per_peer);
      return -1;
    }
  }
  return 0;
}

static void lim_init(ct__wrap *w) {
  limit_factory *lf = (limit_factory *)w->pf;
  limit_conn *lc = (limit_conn *)w;
  char host[INET6_ADDRSTRLEN + 8];
  host_key(&w->peer, host, sizeof host);
  peer_entry *e = find_peer(lf, host);
  if (e == NULL) {
    e = calloc(1, sizeof *e);
    if (e == NULL)
      return; /* uncounted: the per-peer limit cannot see it */
    strcpy(e->host, host);
    e->next = lf->peers;
    lf->peers = e;
  }
  e->count++;
  lc->entry = e;
}

static void lim_fini(ct__wrap *w) {
  limit_factory *lf = (limit_factory *)w->pf;
  peer_entry *e = ((limit_conn *)w)->entry;
  if (e == NULL || --e->count > 0)
    return;
  for (peer_entry **pp = &lf->peers; *pp != NULL; pp = &(*pp)->next) {
    if (*pp == e) {
      *pp = e->next;
      break;
    }
  }
  free(e);
}

static void lim_destroy(ct_policy_factory *pf) {
  limit_factory *lf = (limit_factory *)pf;
  while (lf->peers != NULL) {
    peer_entry *e = lf->peers;
    lf->peers = e->next;
    free(e);
  }
  free(lf);
}

static const ct__policy_ops limit_ops = {
    .name = "limit",
    .conn_size = sizeof(limit_conn),
    .admit = lim_admit,
    .conn_init = lim_init,
    .conn_fini = lim_fini,
    .destroy = lim_destroy,
};

ct_policy_factory *ct_limit_factory_new(ct_factory *wrapped, unsigned max_total,
                                        unsigned max_per_peer) {
  if (wrapped == NULL)
    return NULL;
  limit_factory *lf = calloc(1, sizeof *lf);
  if (lf == NULL)
    return NULL;
  ct__policy_factory_init(&lf->pf, wrapped, &limit_ops);
  lf->max_total = max_total;
  lf->max_per_peer = max_per_peer;
  return &lf->pf;
}
