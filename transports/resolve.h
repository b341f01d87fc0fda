/*
 * transports/resolve.h: the resolver's callback interface, for the
 * connector.  Internal; the public face is ct_resolve() in
 * include/ctwist/resolve.h.
 */
#ifndef CT_TRANSPORTS_RESOLVE_H
#define CT_TRANSPORTS_RESOLVE_H

#include "ctwist/resolve.h"

typedef struct ct__lookup ct__lookup;

/* The outcome of a lookup: either `addrs` (owned by the callee, ports set
 * to the port asked for) or `f` (owned by the callee). */
typedef void (*ct__resolve_cb)(ct_address_list *addrs, ct_failure *f,
                               void *arg);

/* Start looking `name` up (family AF_INET, AF_INET6 or AF_UNSPEC); every
 * address gets `port`.  `cb` runs exactly once, always from the loop (never
 * inside this call), unless ct__resolve_cancel() comes first.  Returns
 * NULL only if memory runs out (then cb never runs). */
ct__lookup *ct__resolve_start(ct_reactor *r, const char *name, int family,
                              int port, ct__resolve_cb cb, void *arg);

/* Abandon a lookup whose callback has not run: it never will.  The handle
 * is invalid afterwards. */
void ct__resolve_cancel(ct__lookup *l);

#endif /* CT_TRANSPORTS_RESOLVE_H */
