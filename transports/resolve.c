/*
 * resolve.c: asynchronous host-name lookups on libevent's evdns.
 *
 * Each reactor gets one resolver, a reactor service (reactor/internal.h)
 * created on first use: an evdns_base on the reactor's event_base, loaded
 * with resolv.conf and the hosts file.  evdns does the work (the hosts
 * file, A/AAAA queries over UDP, retransmission, search domains); this file
 * adds what ctwist promises on top:
 *
 *   - a deadline on the reactor's clock, so a silent server gives a clear
 *     CT_ETIMEDOUT (and a fake clock drives it in tests);
 *   - delivery always from the loop: evdns answers numeric addresses and
 *     hosts-file names from inside evdns_getaddrinfo(), and those answers
 *     are handed on through call_soon instead;
 *   - cancellation that takes effect at once: evdns reports a cancelled
 *     query on a later turn, so a lookup outlives its cancellation until
 *     evdns lets go of it;
 *   - clean reactor teardown (see resolver_close / resolver_free).
 */
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "ctwist/defer_util.h"
#include "ctwist/log.h"
#include "reactor/internal.h"
#include "transports/resolve.h"

typedef struct resolver {
  ct_reactor *r;
  struct evdns_base *dns; /* NULL until the first lookup or configure */
  int64_t timeout_ns;
  ct__lookup *lookups; /* every lookup not yet freed */
  size_t nlookups;
} resolver;

struct ct__lookup {
  resolver *res;
  ct__lookup *prev, *next;
  ct__resolve_cb cb; /* NULL once delivered or cancelled */
  void *arg;
  struct evdns_getaddrinfo_request *req; /* evdns still owes a callback */
  int in_evdns;
  int starting;    /* inside evdns_getaddrinfo() */
  int soon_queued; /* a call_soon delivery is queued */
  ct_delayed_call *timer;
  ct_address_list *addrs; /* held for the queued delivery */
  ct_failure *failure;
  int family;
  int port;
  char name[];
};

static void resolver_close(ct_reactor *r, void *state);
static void resolver_free(ct_reactor *r, void *state);

static const ct__service_ops resolver_ops = {"resolver", resolver_close,
                                             resolver_free};

/* --------------------------------------------------------- configuration */

static int config_fail(ct_failure **err, int code, const char *fmt, ...)
    CT_PRINTF(3, 4);

static int config_fail(ct_failure **err, int code, const char *fmt, ...) {
  if (err != NULL) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    *err = ct_failure_new_at(__FILE__, __LINE__, "dns", code, NULL, "%s", msg);
  }
  return code;
}

static const char *resolv_conf_error(int rc) {
  switch (rc) {
  case 1:
    return "cannot open it";
  case 2:
    return "cannot stat it";
  case 3:
    return "it is too large";
  case 4:
    return "out of memory";
  case 5:
    return "short read";
  default:
    return "unreadable";
  }
}

static int add_nameservers(struct evdns_base *dns, const char *list,
                           ct_failure **err) {
  char buf[128];
  const char *p = list;
  int added = 0;
  while (*p != '\0') {
    const char *end = strchr(p, ',');
    size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
    while (n > 0 && (*p == ' ' || *p == '\t')) {
      p++;
      n--;
    }
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
      n--;
    if (n == 0 || n >= sizeof buf)
      return config_fail(err, CT_EINVAL,
                         "resolver: bad name server list '%s': expected "
                         "IP[:PORT] separated by commas",
                         list);
    memcpy(buf, p, n);
    buf[n] = '\0';
    if (evdns_base_nameserver_ip_add(dns, buf) != 0)
      return config_fail(err, CT_EINVAL,
                         "resolver: bad name server '%s': expected a numeric "
                         "IP[:PORT] ([v6]:PORT for IPv6)",
                         buf);
    added++;
    p += n;
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p == ',')
      p++;
  }
  if (added == 0)
    return config_fail(err, CT_EINVAL, "resolver: empty name server list");
  return 0;
}

/* Build an evdns_base from cfg (NULL: the system's files, where a missing
 * file is tolerated with evdns's defaults, as the C library does). */
static struct evdns_base *dns_new(ct_reactor *r, const ct_resolver_config *cfg,
                                  ct_failure **err) {
  struct evdns_base *dns =
      evdns_base_new(ct__reactor_base(r), EVDNS_BASE_DISABLE_WHEN_INACTIVE);
  if (dns == NULL) {
    config_fail(err, CT_ENOMEM, "resolver: out of memory");
    return NULL;
  }
  int rc = 0;
  if (cfg != NULL && cfg->nameservers != NULL) {
    rc = add_nameservers(dns, cfg->nameservers, err);
  } else {
    const char *path = cfg != NULL && cfg->resolv_conf != NULL
                           ? cfg->resolv_conf
                           : "/etc/resolv.conf";
    int prc = evdns_base_resolv_conf_parse(
        dns, DNS_OPTIONS_ALL & ~DNS_OPTION_HOSTSFILE, path);
    /* 6 is "no name server listed": evdns then asks 127.0.0.1. */
    if (prc != 0 && prc != 6) {
      if (cfg != NULL && cfg->resolv_conf != NULL)
        rc = config_fail(err, CT_EINVAL, "resolver: cannot read %s: %s", path,
                         resolv_conf_error(prc));
      else
        ct_log(CT_LOG_WARN, "dns", "cannot read %s (%s): asking 127.0.0.1",
               path, resolv_conf_error(prc));
    }
  }
  if (rc == 0) {
    const char *hosts =
        cfg != NULL && cfg->hosts_file != NULL ? cfg->hosts_file : "/etc/hosts";
    if (*hosts != '\0' && evdns_base_load_hosts(dns, hosts) != 0) {
      if (cfg != NULL && cfg->hosts_file != NULL)
        rc = config_fail(err, CT_EINVAL, "resolver: cannot read hosts file %s",
                         hosts);
      else
        ct_log(CT_LOG_WARN, "dns", "cannot read %s", hosts);
    }
  }
  if (rc != 0) {
    evdns_base_free(dns, 0);
    return NULL;
  }
  return dns;
}

static resolver *resolver_get(ct_reactor *r) {
  resolver *res = ct__reactor_service(r, &resolver_ops);
  if (res != NULL)
    return res;
  res = calloc(1, sizeof *res);
  if (res == NULL)
    return NULL;
  res->r = r;
  res->timeout_ns = ct__seconds_to_ns(CT_RESOLVE_DEFAULT_TIMEOUT);
  if (ct__reactor_service_add(r, &resolver_ops, res) != 0) {
    free(res);
    return NULL;
  }
  return res;
}

int ct_resolver_configure(ct_reactor *r, const ct_resolver_config *cfg,
                          ct_failure **err) {
  if (err != NULL)
    *err = NULL;
  if (r == NULL)
    return config_fail(err, CT_EINVAL, "resolver: no reactor");
  double timeout = CT_RESOLVE_DEFAULT_TIMEOUT;
  if (cfg != NULL && cfg->timeout != 0) {
    if (!(cfg->timeout > 0 && cfg->timeout <= 1e6))
      return config_fail(err, CT_EINVAL,
                         "resolver: timeout %g is not in (0, 1e6] seconds",
                         cfg->timeout);
    timeout = cfg->timeout;
  }
  resolver *res = resolver_get(r);
  if (res == NULL)
    return config_fail(err, CT_ENOMEM, "resolver: out of memory");
  if (res->nlookups > 0)
    return config_fail(err, CT_ESTATE,
                       "resolver: %zu lookups are still in flight; configure "
                       "the resolver before using it",
                       res->nlookups);
  struct evdns_base *dns = dns_new(r, cfg, err);
  if (dns == NULL)
    return err != NULL && *err != NULL ? (*err)->code : CT_ENOMEM;
  if (res->dns != NULL)
    evdns_base_free(res->dns, 0);
  res->dns = dns;
  res->timeout_ns = ct__seconds_to_ns(timeout);
  return 0;
}

/* ---------------------------------------------------------------- lookups */

static void lookup_unlink_free(ct__lookup *l) {
  resolver *res = l->res;
  if (l->prev != NULL)
    l->prev->next = l->next;
  else
    res->lookups = l->next;
  if (l->next != NULL)
    l->next->prev = l->prev;
  res->nlookups--;
  free(l->addrs);
  ct_failure_free(l->failure);
  free(l);
}

/* Free `l` once nobody (evdns, a queued delivery, a caller) can reach it. */
static void lookup_maybe_free(ct__lookup *l) {
  if (l->cb == NULL && !l->in_evdns && !l->soon_queued && !l->starting)
    lookup_unlink_free(l);
}

static void lookup_stop_timer(ct__lookup *l) {
  if (l->timer != NULL) {
    ct_delayed_call_cancel(l->timer);
    l->timer = NULL;
  }
}

/* Hand the outcome to the caller (exactly once). */
static void lookup_deliver(ct__lookup *l, ct_address_list *addrs,
                           ct_failure *f) {
  ct__resolve_cb cb = l->cb;
  l->cb = NULL;
  lookup_stop_timer(l);
  if (cb != NULL)
    cb(addrs, f, l->arg);
  else {
    free(addrs);
    ct_failure_free(f);
  }
}

static void deliver_soon_cb(void *arg) {
  ct__lookup *l = arg;
  l->soon_queued = 0;
  ct_address_list *addrs = l->addrs;
  ct_failure *f = l->failure;
  l->addrs = NULL;
  l->failure = NULL;
  lookup_deliver(l, addrs, f);
  lookup_maybe_free(l);
}

static ct_failure *gai_failure(const ct__lookup *l, int gai) {
  const char *fam = l->family == AF_INET    ? " (IPv4)"
                    : l->family == AF_INET6 ? " (IPv6)"
                                            : "";
  switch (gai) {
  case EVUTIL_EAI_NONAME:
    return ct_failure_new_at(__FILE__, __LINE__, "dns", CT_EDNS, NULL,
                             "cannot resolve '%s': no such host name "
                             "(NXDOMAIN)",
                             l->name);
  case EVUTIL_EAI_NODATA:
  case EVUTIL_EAI_ADDRFAMILY:
    return ct_failure_new_at(__FILE__, __LINE__, "dns", CT_EDNS, NULL,
                             "cannot resolve '%s': the name has no address%s",
                             l->name, fam);
  case EVUTIL_EAI_MEMORY:
    return ct_failure_new_at(__FILE__, __LINE__, "dns", CT_ENOMEM, NULL,
                             "cannot resolve '%s': out of memory", l->name);
  case EVUTIL_EAI_FAIL:
    /* evdns folds "no records", SERVFAIL, REFUSED and its own retransmit
     * timeout into this one code. */
    return ct_failure_new_at(__FILE__, __LINE__, "dns", CT_EDNS, NULL,
                             "cannot resolve '%s': no address%s in the "
                             "answer, or the name servers failed",
                             l->name, fam);
  case EVUTIL_EAI_AGAIN:
    return ct_failure_new_at(__FILE__, __LINE__, "dns", CT_EDNS, NULL,
                             "cannot resolve '%s': temporary failure (the "
                             "name servers failed or did not answer)",
                             l->name);
  default:
    return ct_failure_new_at(__FILE__, __LINE__, "dns", CT_EDNS, NULL,
                             "cannot resolve '%s': %s", l->name,
                             evutil_gai_strerror(gai));
  }
}

/* The evdns answer as a ct_address_list, or NULL (*gai set) if it holds no
 * usable address. */
static ct_address_list *to_list(const ct__lookup *l, struct evutil_addrinfo *ai,
                                int *gai) {
  size_t n = 0;
  for (struct evutil_addrinfo *p = ai; p != NULL; p = p->ai_next)
    n++;
  if (n == 0) {
    *gai = EVUTIL_EAI_NODATA;
    return NULL;
  }
  ct_address_list *list = malloc(sizeof *list + n * sizeof(ct_address));
  if (list == NULL) {
    *gai = EVUTIL_EAI_MEMORY;
    return NULL;
  }
  list->n = 0;
  for (struct evutil_addrinfo *p = ai; p != NULL; p = p->ai_next) {
    if (p->ai_family != AF_INET && p->ai_family != AF_INET6)
      continue;
    if (l->family != AF_UNSPEC && p->ai_family != l->family)
      continue;
    ct_address *a = &list->addrs[list->n];
    if (ct_address_from_sockaddr(a, p->ai_addr, (socklen_t)p->ai_addrlen) != 0)
      continue;
    if (a->family == CT_ADDRESS_IPV4)
      a->u.in4.sin_port = htons((uint16_t)l->port);
    else
      a->u.in6.sin6_port = htons((uint16_t)l->port);
    /* A hosts file may list an address twice. */
    int dup = 0;
    for (size_t i = 0; i < list->n && !dup; i++)
      dup = ct_address_equal(&list->addrs[i], a);
    if (!dup)
      list->n++;
  }
  if (list->n == 0) {
    free(list);
    *gai = EVUTIL_EAI_NODATA;
    return NULL;
  }
  return list;
}

static void evdns_cb(int gai, struct evutil_addrinfo *ai, void *arg) {
  ct__lookup *l = arg;
  l->in_evdns = 0;
  l->req = NULL;
  ct_address_list *addrs = NULL;
  ct_failure *f = NULL;
  if (l->cb != NULL) {
    if (gai == 0)
      addrs = to_list(l, ai, &gai);
    if (addrs == NULL)
      f = gai_failure(l, gai);
  }
  if (ai != NULL)
    evutil_freeaddrinfo(ai);
  if (l->cb == NULL) { /* cancelled or timed out: only tidy up */
    lookup_maybe_free(l);
    return;
  }
  if (l->starting) {
    /* Answered from inside evdns_getaddrinfo() (a numeric address or the
     * hosts file): deliver from the loop, like every other outcome. */
    l->addrs = addrs;
    l->failure = f;
    if (ct__reactor_call_soon(l->res->r, deliver_soon_cb, l) == 0) {
      l->soon_queued = 1;
      return;
    }
    /* Out of memory queueing: ct__resolve_start reports it. */
    l->addrs = NULL;
    l->failure = NULL;
    free(addrs);
    ct_failure_free(f);
    l->cb = NULL;
    return;
  }
  lookup_deliver(l, addrs, f);
  lookup_maybe_free(l);
}

static void timeout_cb(void *arg) {
  ct__lookup *l = arg;
  l->timer = NULL;
  if (l->in_evdns)
    evdns_getaddrinfo_cancel(l->req); /* evdns_cb follows on a later turn */
  lookup_deliver(
      l, NULL,
      ct_failure_new_at(__FILE__, __LINE__, "dns", CT_ETIMEDOUT, NULL,
                        "cannot resolve '%s': no answer within %g seconds",
                        l->name, (double)l->res->timeout_ns / 1e9));
  lookup_maybe_free(l);
}

ct__lookup *ct__resolve_start(ct_reactor *r, const char *name, int family,
                              int port, ct__resolve_cb cb, void *arg) {
  resolver *res = resolver_get(r);
  if (res == NULL)
    return NULL;
  if (res->dns == NULL) {
    ct_failure *f = NULL;
    res->dns = dns_new(r, NULL, &f);
    if (res->dns == NULL) {
      ct_failure_free(f);
      return NULL;
    }
  }
  size_t len = strlen(name);
  ct__lookup *l = calloc(1, sizeof *l + len + 1);
  if (l == NULL)
    return NULL;
  memcpy(l->name, name, len + 1);
  l->res = res;
  l->cb = cb;
  l->arg = arg;
  l->family = family;
  l->port = port;
  l->next = res->lookups;
  if (res->lookups != NULL)
    res->lookups->prev = l;
  res->lookups = l;
  res->nlookups++;
  l->timer = ct__call_later_ns(r, res->timeout_ns, timeout_cb, l);
  if (l->timer == NULL) {
    l->cb = NULL;
    lookup_unlink_free(l);
    return NULL;
  }
  struct evutil_addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = family;
  /* One entry per address (with socktype 0 evdns makes a TCP and a UDP
   * entry for each). */
  hints.ai_socktype = SOCK_STREAM;
  l->starting = 1;
  struct evdns_getaddrinfo_request *req =
      evdns_getaddrinfo(res->dns, name, NULL, &hints, evdns_cb, l);
  l->starting = 0;
  if (req != NULL) {
    l->req = req;
    l->in_evdns = 1;
  } else if (l->cb == NULL) {
    /* Answered synchronously but the delivery could not be queued. */
    lookup_stop_timer(l);
    lookup_unlink_free(l);
    return NULL;
  }
  return l;
}

void ct__resolve_cancel(ct__lookup *l) {
  if (l == NULL || l->cb == NULL)
    return;
  l->cb = NULL;
  lookup_stop_timer(l);
  if (l->in_evdns)
    evdns_getaddrinfo_cancel(l->req);
  lookup_maybe_free(l);
}

/* ------------------------------------------------------------ teardown */

/* While the reactor is still whole: fail what is pending (the callers may
 * use the reactor in their callbacks) and ask evdns to let go. */
static void resolver_close(ct_reactor *r, void *state) {
  (void)r;
  resolver *res = state;
  for (ct__lookup *l = res->lookups; l != NULL; l = l->next) {
    if (l->cb != NULL) {
      free(l->addrs);
      ct_failure_free(l->failure);
      l->addrs = NULL;
      l->failure = NULL;
      lookup_deliver(l, NULL,
                     ct_failure_new_at(__FILE__, __LINE__, "dns", CT_ECLOSED,
                                       NULL,
                                       "lookup of '%s' abandoned: the reactor "
                                       "was freed",
                                       l->name));
    }
    if (l->in_evdns)
      evdns_getaddrinfo_cancel(l->req);
  }
}

/* After the reactor's own events are gone: evdns reports cancellations
 * through callbacks deferred to the loop, so turn the bare base until the
 * last one has come back (only evdns's callbacks are left to run), then
 * free what is left. */
static void resolver_free(ct_reactor *r, void *state) {
  resolver *res = state;
  for (int i = 0; i < 8 && res->dns != NULL; i++) {
    int waiting = 0;
    for (ct__lookup *l = res->lookups; l != NULL; l = l->next)
      waiting |= l->in_evdns;
    /* Two turns even when none of ours waits: a query evdns cancelled on
     * its own (the A/AAAA skew timer) also comes back through the loop. */
    if (!waiting && i >= 2)
      break;
    event_base_loop(ct__reactor_base(r), EVLOOP_NONBLOCK);
  }
  while (res->lookups != NULL) {
    ct__lookup *l = res->lookups;
    l->cb = NULL;
    lookup_unlink_free(l);
  }
  if (res->dns != NULL)
    evdns_base_free(res->dns, 0);
  free(res);
}

/* ------------------------------------------------------------ ct_resolve */

typedef struct resolve_call {
  ct_deferred *d; /* the producer's reference */
  ct__lookup *l;
  char name[];
} resolve_call;

static void resolve_done(ct_address_list *addrs, ct_failure *f, void *arg) {
  resolve_call *rc = arg;
  ct_deferred *d = rc->d;
  free(rc);
  if (f != NULL)
    ct_deferred_errback(d, f);
  else
    ct_deferred_callback(d, ct_value_of(addrs, free));
  ct_deferred_unref(d);
}

static void resolve_canceller(ct_deferred *d, void *arg) {
  resolve_call *rc = arg;
  ct__resolve_cancel(rc->l);
  ct_failure *f =
      ct_failure_new_at(__FILE__, __LINE__, "dns", CT_ECANCELLED, NULL,
                        "lookup of '%s' was cancelled", rc->name);
  ct_deferred *own = rc->d;
  free(rc);
  ct_deferred_errback(d, f);
  ct_deferred_unref(own);
}

ct_deferred *ct_resolve(ct_reactor *r, const char *name, int family) {
  if (r == NULL || name == NULL || *name == '\0' ||
      (family != AF_UNSPEC && family != AF_INET && family != AF_INET6))
    return ct_fail(ct_failure_new_at(
        __FILE__, __LINE__, "dns", CT_EINVAL, NULL,
        "ct_resolve: a reactor, a non-empty name and a family of AF_INET, "
        "AF_INET6 or AF_UNSPEC are required"));
  if (strlen(name) > 253)
    return ct_fail(ct_failure_new_at(__FILE__, __LINE__, "dns", CT_EINVAL, NULL,
                                     "ct_resolve: host name of %zu bytes is "
                                     "longer than DNS allows (253)",
                                     strlen(name)));
  size_t len = strlen(name);
  resolve_call *rc = malloc(sizeof *rc + len + 1);
  if (rc == NULL)
    return NULL;
  memcpy(rc->name, name, len + 1);
  rc->d = ct_deferred_new(resolve_canceller, rc);
  if (rc->d == NULL) {
    free(rc);
    return NULL;
  }
  ct_deferred *ret = ct_deferred_ref(rc->d);
  rc->l = ct__resolve_start(r, name, family, 0, resolve_done, rc);
  if (rc->l == NULL) {
    ct_deferred *d = rc->d;
    free(rc);
    ct_deferred_unref(d);
    ct_deferred_unref(ret);
    return NULL;
  }
  return ret;
}
