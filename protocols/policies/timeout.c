/*
 * timeout.c: idle timeouts -- the embeddable ct_idle_timeout (Twisted's
 * TimeoutMixin) and the timeout factory (TimeoutFactory/TimeoutProtocol).
 *
 * The timer is one delayed call per connection, pushed back with
 * ct_delayed_call_reset() on traffic, so a busy connection costs one heap
 * update per chunk and never allocates.  The handle is only kept while the
 * call is pending: the callback forgets it first, which is what makes
 * cancel-after-fire safe without taking references.
 */
#include <math.h>
#include <stdlib.h>

#include "ctwist/log.h"
#include "protocols/policies/internal.h"

/* ------------------------------------------------------- idle timeout */

void ct_idle_timeout_init(ct_idle_timeout *it, ct_reactor *r, ct_protocol *p,
                          ct_idle_timeout_cb cb, void *arg) {
  if (it == NULL)
    return;
  it->reactor = r;
  it->protocol = p;
  it->call = NULL;
  it->timeout = 0;
  it->cb = cb;
  it->arg = arg;
  it->fired = 0;
}

static void idle_fired(void *arg) {
  ct_idle_timeout *it = arg;
  it->call = NULL;
  it->fired++;
  if (it->cb != NULL) {
    it->cb(it, it->arg);
    return;
  }
  if (it->protocol != NULL && it->protocol->transport != NULL)
    ct_transport_abort(it->protocol->transport);
}

static ct_reactor *idle_reactor(const ct_idle_timeout *it) {
  if (it->reactor != NULL)
    return it->reactor;
  if (it->protocol != NULL && it->protocol->transport != NULL)
    return it->protocol->transport->reactor;
  return NULL;
}

int ct_idle_timeout_set(ct_idle_timeout *it, double seconds) {
  if (it == NULL || !isfinite(seconds))
    return CT_EINVAL;
  if (seconds <= 0) {
    ct_idle_timeout_cancel(it);
    it->timeout = 0;
    return 0;
  }
  if (it->call != NULL) {
    it->timeout = seconds;
    return ct_delayed_call_reset(it->call, seconds);
  }
  ct_reactor *r = idle_reactor(it);
  if (r == NULL)
    return CT_ESTATE;
  ct_delayed_call *c = ct_call_later(r, seconds, idle_fired, it);
  if (c == NULL)
    return CT_ENOMEM;
  it->call = c;
  it->timeout = seconds;
  return 0;
}

double ct_idle_timeout_get(const ct_idle_timeout *it) {
  return it != NULL ? it->timeout : 0;
}

void ct_idle_timeout_reset(ct_idle_timeout *it) {
  if (it != NULL && it->call != NULL && it->timeout > 0)
    ct_delayed_call_reset(it->call, it->timeout);
}

void ct_idle_timeout_cancel(ct_idle_timeout *it) {
  if (it == NULL || it->call == NULL)
    return;
  ct_delayed_call_cancel(it->call);
  it->call = NULL;
}

int ct_idle_timeout_pending(const ct_idle_timeout *it) {
  return it != NULL && it->call != NULL;
}

/* ---------------------------------------------------- timeout factory */

typedef struct timeout_factory {
  ct_policy_factory pf; /* first */
  double seconds;
} timeout_factory;

typedef struct timeout_conn {
  ct__wrap w; /* first */
  ct_idle_timeout idle;
} timeout_conn;

static void tc_timed_out(ct_idle_timeout *it, void *arg) {
  (void)it;
  timeout_conn *tc = arg;
  char peer[CT_ADDRESS_STRLEN];
  ct_address_format(&tc->w.peer, peer, sizeof peer);
  ct_log(CT_LOG_INFO, "policies",
         "connection from %s timed out after %g s idle", peer,
         tc->idle.timeout);
  /* Abort through the wrapper transport, so the inner protocol's
   * connection_lost reports CT_ECONNABORTED. */
  ct_transport_abort(&tc->w.wt);
}

static void tc_made(ct__wrap *w) {
  timeout_conn *tc = (timeout_conn *)w;
  ct_idle_timeout_init(&tc->idle, w->real->reactor, NULL, tc_timed_out, tc);
  ct_idle_timeout_set(&tc->idle, ((timeout_factory *)w->pf)->seconds);
}

static void tc_traffic(ct__wrap *w, size_t len) {
  (void)len;
  ct_idle_timeout_reset(&((timeout_conn *)w)->idle);
}

static void tc_lost(ct__wrap *w, const ct_failure *reason) {
  (void)reason;
  ct_idle_timeout_cancel(&((timeout_conn *)w)->idle);
}

static void tc_fini(ct__wrap *w) {
  /* Also covers a connection that never got connection_made. */
  ct_idle_timeout_cancel(&((timeout_conn *)w)->idle);
}

static const ct__policy_ops timeout_ops = {
    .name = "timeout",
    .conn_size = sizeof(timeout_conn),
    .connection_made = tc_made,
    .data_received = tc_traffic,
    .wrote = tc_traffic,
    .connection_lost = tc_lost,
    .conn_fini = tc_fini,
};

ct_policy_factory *ct_timeout_factory_new(ct_factory *wrapped, double seconds) {
  if (wrapped == NULL || !isfinite(seconds) || seconds <= 0)
    return NULL;
  timeout_factory *tf = calloc(1, sizeof *tf);
  if (tf == NULL)
    return NULL;
  ct__policy_factory_init(&tf->pf, wrapped, &timeout_ops);
  tf->seconds = seconds;
  return &tf->pf;
}

int ct_timeout_set(ct_protocol *p, double seconds) {
  if (p == NULL)
    return CT_EINVAL;
  ct__wrap *w = ct__wrap_of_transport(p->transport);
  if (w == NULL || w->pf->pops != &timeout_ops || w->inner != p)
    return CT_EINVAL;
  return ct_idle_timeout_set(&((timeout_conn *)w)->idle, seconds);
}
