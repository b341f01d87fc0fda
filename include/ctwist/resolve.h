/**
 * @file resolve.h
 * @brief Asynchronous host-name resolution on the reactor (Twisted's
 *        reactor.resolve / IHostnameResolver), built on libevent's evdns.
 *
 * Lookups never block the reactor thread: names are looked up first in the
 * hosts file, then sent to the name servers of resolv.conf over UDP, with a
 * deadline on the reactor's clock.  Numeric addresses answer at once.  Each
 * reactor has its own resolver, created on first use with the system
 * configuration; ct_resolver_configure() replaces it (tests point it at a
 * local responder and a private hosts file).
 *
 * The connecting transports (ct_connect(), hence reconnecting clients and
 * the message clients) resolve host names through it.  The blocking
 * ct_endpoint_resolve() is only for code off the reactor thread.
 *
 * Not thread-safe: use on the reactor's thread.
 */
#ifndef CTWIST_RESOLVE_H
#define CTWIST_RESOLVE_H

#include <stddef.h>

#include "ctwist/deferred.h"
#include "ctwist/reactor.h"
#include "ctwist/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Default deadline of one lookup, in seconds on the reactor's clock. */
#define CT_RESOLVE_DEFAULT_TIMEOUT 15.0

/** Resolver settings; zero (or NULL) fields take the defaults. */
typedef struct ct_resolver_config {
  /** Comma-separated name servers, "IP" or "IP:PORT" ("[v6]:PORT" for
   *  IPv6 with a port).  NULL: the `nameserver` lines of `resolv_conf`. */
  const char *nameservers;
  /** resolv.conf to read when `nameservers` is NULL (also its options:
   *  search, ndots, timeout, attempts).  NULL: /etc/resolv.conf. */
  const char *resolv_conf;
  /** Hosts file consulted before any query.  NULL: /etc/hosts; "" for
   *  none. */
  const char *hosts_file;
  /** Deadline of one lookup in seconds (> 0), default
   *  CT_RESOLVE_DEFAULT_TIMEOUT. */
  double timeout;
} ct_resolver_config;

/**
 * Replace `r`'s resolver with one built from `cfg` (NULL: the system
 * defaults); do it before lookups start.  Reads the named files now (small
 * local files, as Twisted does).  Returns 0, or CT_EINVAL (bad name
 * server, unreadable resolv.conf or hosts file, bad timeout), CT_ESTATE
 * (lookups are in flight) or CT_ENOMEM, with a failure in `*err` (if not
 * NULL, owned by the caller) naming the problem.
 */
CT_EXTERN int ct_resolver_configure(ct_reactor *r,
                                    const ct_resolver_config *cfg,
                                    ct_failure **err);

/**
 * The addresses a name resolved to, in the order to try them.  Ports are
 * 0.  Allocated in one block: free with free().
 */
typedef struct ct_address_list {
  size_t n;           /**< number of addresses, >= 1 */
  ct_address addrs[]; /**< IPv4 and/or IPv6 */
} ct_address_list;

/**
 * Look `name` up without blocking.  `family` is AF_INET, AF_INET6 or
 * AF_UNSPEC (both: the IPv4 addresses, then the IPv6 ones).  Returns a Deferred
 * (one reference for the caller) that fires with a `ct_address_list *` (value
 * destructor free()), or errbacks with:
 *   - CT_EDNS: no such name (NXDOMAIN), no address of that family, a
 *     server failure; the message names the host and the reason;
 *   - CT_ETIMEDOUT: no answer within the resolver's timeout;
 *   - CT_EINVAL: NULL or empty name, a bad family;
 *   - CT_ECANCELLED: ct_deferred_cancel() (the query is abandoned);
 *   - CT_ECLOSED: the reactor was freed with the lookup pending.
 * The result is always delivered from the loop, never from inside
 * ct_resolve().  Returns NULL only if memory runs out.
 */
CT_EXTERN ct_deferred *ct_resolve(ct_reactor *r, const char *name, int family);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_RESOLVE_H */
