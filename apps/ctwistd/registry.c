/*
 * registry.c: ctwistd --zk ENSEMBLE --service NAME, registering every
 * listening tcp endpoint as a member of NAME (ctwist/discovery.h,
 * docs/discovery.md).
 *
 * Which process registers: the one that owns the endpoint.  Without
 * --workers that is the server itself.  With --workers N it is the
 * supervisor: it chose the port, keeps the reservation, and replaces a
 * worker that dies, so the port accepts connections for as long as it
 * runs -- a worker killed with SIGKILL changes nothing in ZooKeeper.  The
 * supervisor then waits for signals on a signalfd watched by a reactor
 * that also drives the ZooKeeper session.
 *
 * On SIGINT/SIGTERM the members are deleted first, then ctwistd waits
 * --zk-grace seconds (clients see the deletion through their watch and
 * stop sending), and only then do the ports close and the connections
 * drain.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "ctwistd.h"

/* The address clients should dial for `a`: its IP, or for a wildcard
 * address --advertise, else this host's name. */
static void advertised(const ctwistd *d, const ct_address *a, char *buf,
                       size_t len) {
  int wildcard = 0;
  if (a->family == CT_ADDRESS_IPV4) {
    inet_ntop(AF_INET, &a->u.in4.sin_addr, buf, (socklen_t)len);
    wildcard = a->u.in4.sin_addr.s_addr == htonl(INADDR_ANY);
  } else {
    inet_ntop(AF_INET6, &a->u.in6.sin6_addr, buf, (socklen_t)len);
    wildcard = IN6_IS_ADDR_UNSPECIFIED(&a->u.in6.sin6_addr);
  }
  if (d->zk_advertise != NULL)
    snprintf(buf, len, "%s", d->zk_advertise);
  else if (wildcard && gethostname(buf, len) != 0)
    snprintf(buf, len, "localhost");
}

static ct_step unreachable(ct_failure *f, void *arg) {
  ctwistd *d = arg;
  if (f->code != CT_ZK_ECLOSING) /* not stopped before it answered */
    ct_log(CT_LOG_WARN, "ctwistd",
           "%s; serving anyway: the members of %s are registered once it "
           "answers",
           f->message, d->zk_service);
  ct_failure_free(f);
  return ct_pass(CT_NONE);
}

int ctd_registry_start(ctwistd *d, ct_reactor *r, const ct_address *addrs,
                       int n) {
  if (d->zk_ensemble == NULL)
    return 0;
  ct_zk_options o = {.session_timeout = d->zk_session_timeout};
  ct_failure *err = NULL;
  d->zk = ct_zk_new(r, d->zk_ensemble, &o, &err);
  if (d->zk == NULL) {
    ctd_report("--zk: ", err);
    ct_failure_free(err);
    return EXIT_USAGE;
  }
  /* A server does not wait for ZooKeeper: it says so when it is slow. */
  ct_deferred *c = ct_zk_connected(d->zk);
  if (c != NULL) {
    ct_deferred_add_errback(c, unreachable, d);
    ct_deferred_unref(c);
  }
  for (int i = 0; i < n; i++) {
    if (addrs[i].family != CT_ADDRESS_IPV4 &&
        addrs[i].family != CT_ADDRESS_IPV6) {
      ct_log(CT_LOG_WARN, "ctwistd",
             "--zk: endpoint %d is not tcp: not registered", i);
      continue;
    }
    char host[256];
    advertised(d, &addrs[i], host, sizeof host);
    d->zk_regs[i] = ct_service_register(d->zk, d->zk_service, host,
                                        ct_address_port(&addrs[i]), &err);
    if (d->zk_regs[i] == NULL) {
      ctd_report("--service: ", err);
      ct_failure_free(err);
      return EXIT_USAGE;
    }
  }
  return 0;
}

/* ---------------------------------------------------------- withdrawal */

static void withdraw_finish(void *arg) {
  ctwistd *d = arg;
  d->zk_grace_timer = NULL;
  void (*done)(ctwistd *) = d->zk_withdrawn_cb;
  d->zk_withdrawn_cb = NULL;
  if (done != NULL)
    done(d);
}

static void withdraw_step(ctwistd *d) {
  if (--d->zk_withdrawing > 0)
    return;
  if (d->zk_withdraw_timer != NULL) {
    ct_delayed_call_cancel(d->zk_withdraw_timer);
    d->zk_withdraw_timer = NULL;
  }
  /* Deleted: give the clients' watches time to tell them. */
  ct_log(CT_LOG_INFO, "ctwistd",
         "members of %s deleted; draining in %.1f s (--zk-grace)",
         d->zk_service, d->zk_grace);
  d->zk_grace_timer =
      ct_call_later(d->zk_reactor, d->zk_grace, withdraw_finish, d);
}

static ct_step consume(ct_result res, void *arg) {
  (void)arg;
  ct_failure_free(res.failure);
  ct_value_free(res.value);
  return ct_pass(CT_NONE);
}

static ct_step withdrawn_one(ct_result res, void *arg) {
  ctwistd *d = arg;
  if (res.failure != NULL) {
    ct_log_failure(CT_LOG_WARN, "ctwistd", "deleting a member", res.failure);
    ct_failure_free(res.failure);
  }
  ct_value_free(res.value);
  withdraw_step(d);
  return ct_pass(CT_NONE);
}

static void withdraw_timeout(void *arg) {
  ctwistd *d = arg;
  d->zk_withdraw_timer = NULL;
  ct_log(CT_LOG_WARN, "ctwistd",
         "ZooKeeper did not confirm the deletion of the members of %s in "
         "time; draining anyway (the nodes go when the session ends)",
         d->zk_service);
  d->zk_withdrawing = 1;
  withdraw_step(d);
}

int ctd_registry_withdraw(ctwistd *d, ct_reactor *r, void (*done)(ctwistd *d)) {
  if (d->zk == NULL || d->zk_withdrawn_cb != NULL || d->zk_withdrew)
    return 0;
  d->zk_withdrew = 1;
  d->zk_reactor = r;
  d->zk_withdrawn_cb = done;
  d->zk_withdrawing = 1; /* held until every deletion is asked for */
  for (int i = 0; i < MAX_LISTEN; i++) {
    if (d->zk_regs[i] == NULL)
      continue;
    ct_deferred *x = ct_service_unregister(d->zk_regs[i]);
    d->zk_regs[i] = NULL;
    if (x == NULL)
      continue;
    d->zk_withdrawing++;
    ct_deferred_add_both(x, withdrawn_one, d);
    ct_deferred_unref(x);
  }
  d->zk_withdraw_timer = ct_call_later(r, 5.0, withdraw_timeout, d);
  withdraw_step(d);
  return 1;
}

void ctd_registry_free(ctwistd *d) {
  if (d->is_worker)
    return; /* the supervisor's session: not ours to close */
  if (d->zk_grace_timer != NULL)
    ct_delayed_call_cancel(d->zk_grace_timer);
  if (d->zk_withdraw_timer != NULL)
    ct_delayed_call_cancel(d->zk_withdraw_timer);
  d->zk_grace_timer = d->zk_withdraw_timer = NULL;
  d->zk_withdrawn_cb = NULL;
  for (int i = 0; i < MAX_LISTEN; i++) {
    if (d->zk_regs[i] != NULL) {
      ct_deferred *x = ct_service_unregister(d->zk_regs[i]);
      if (x != NULL) {
        ct_deferred_add_both(x, consume, NULL);
        ct_deferred_unref(x);
      }
    }
    d->zk_regs[i] = NULL;
  }
  ct_zk_free(d->zk); /* closing the session deletes what is left */
  d->zk = NULL;
}
