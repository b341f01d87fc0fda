/*
 * factory.c: protocol allocation, factories (start/stop accounting) and the
 * reconnecting client (Twisted's ReconnectingClientFactory, as an object
 * that wraps the user's client factory instead of a subclass).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/endpoint.h"
#include "ctwist/log.h"
#include "transports/internal.h"

/* ------------------------------------------------------------- protocol */

ct_protocol *ct_protocol_new(const ct_protocol_ops *ops, size_t size) {
  if (size < sizeof(ct_protocol))
    return NULL;
  ct_protocol *p = calloc(1, size);
  if (p == NULL)
    return NULL;
  p->ops = ops;
  p->flags = CT_PROTOCOL_HEAP;
  return p;
}

void ct_protocol_init(ct_protocol *p, const ct_protocol_ops *ops) {
  if (p == NULL)
    return;
  memset(p, 0, sizeof *p);
  p->ops = ops;
}

void ct_protocol_release(ct_protocol *p) {
  if (p == NULL)
    return;
  if (p->ops != NULL && p->ops->free != NULL)
    p->ops->free(p);
  else if (p->flags & CT_PROTOCOL_HEAP)
    free(p);
}

/* -------------------------------------------------------------- factory */

void ct_factory_init(ct_factory *f, const ct_factory_ops *ops,
                     const ct_protocol_ops *protocol_ops, size_t protocol_size,
                     void *user) {
  if (f == NULL)
    return;
  memset(f, 0, sizeof *f);
  f->ops = ops;
  f->protocol_ops = protocol_ops;
  f->protocol_size = protocol_size;
  f->user = user;
}

ct_protocol *ct_factory_build(ct_factory *f, const ct_address *peer) {
  if (f == NULL)
    return NULL;
  ct_protocol *p;
  if (f->ops != NULL && f->ops->build_protocol != NULL)
    p = f->ops->build_protocol(f, peer);
  else if (f->protocol_ops != NULL)
    p = ct_protocol_new(f->protocol_ops, f->protocol_size > 0
                                             ? f->protocol_size
                                             : sizeof(ct_protocol));
  else
    p = NULL;
  if (p != NULL && p->factory == NULL)
    p->factory = f;
  return p;
}

void ct_factory_do_start(ct_factory *f) {
  if (f == NULL)
    return;
  if (f->users++ == 0 && f->ops != NULL && f->ops->start != NULL)
    f->ops->start(f);
}

void ct_factory_do_stop(ct_factory *f) {
  if (f == NULL || f->users == 0)
    return;
  if (--f->users == 0 && f->ops != NULL && f->ops->stop != NULL)
    f->ops->stop(f);
}

/* -------------------------------------------------- reconnecting client */

void ct_reconnect_policy_default(ct_reconnect_policy *p) {
  if (p == NULL)
    return;
  memset(p, 0, sizeof *p);
  p->initial_delay = 1.0;
  p->factor = 2.7182818284590451; /* Twisted: math.e */
  p->max_delay = 3600.0;
  p->jitter = 0.11962656472; /* Twisted: molar Planck constant * c */
  p->max_retries = -1;
  p->seed = 0x2545F4914F6CDD1DULL;
}

struct ct_reconnecting_client {
  ct_client_factory proxy; /* handed to ct_connect; forwards to `user` */
  ct_reactor *reactor;
  char *endpoint;
  ct_client_factory *user;
  ct_reconnect_policy policy;
  double delay;
  int retries;
  int continue_trying;
  uint64_t rng;
  ct_delayed_call *retry_call; /* pending retry, or NULL */
  ct_deferred *attempt;        /* connect in progress (our ref), or NULL */
  ct_protocol *protocol;       /* live connection, or NULL */
};

static double rc_uniform(ct_reconnecting_client *rc) {
  if (rc->policy.random != NULL)
    return rc->policy.random(rc->policy.random_arg);
  /* splitmix64: small, good enough for jitter, deterministic per seed. */
  uint64_t z = (rc->rng += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* Python's random.normalvariate(mu, sigma), via Box-Muller. */
static double rc_normal(ct_reconnecting_client *rc, double mu, double sigma) {
  double u1 = 1.0 - rc_uniform(rc); /* (0, 1] */
  double u2 = rc_uniform(rc);
  double z = sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2);
  return mu + sigma * z;
}

static void rc_connect_now(void *arg);

static void rc_retry(ct_reconnecting_client *rc) {
  if (!rc->continue_trying || rc->retry_call != NULL || rc->attempt != NULL)
    return;
  rc->retries++;
  if (rc->policy.max_retries >= 0 && rc->retries > rc->policy.max_retries) {
    ct_log(CT_LOG_INFO, "reconnect", "abandoning %s after %d retries",
           rc->endpoint, rc->retries - 1);
    rc->continue_trying = 0;
    return;
  }
  double d = rc->delay * rc->policy.factor;
  if (d > rc->policy.max_delay)
    d = rc->policy.max_delay;
  if (rc->policy.jitter > 0)
    d = rc_normal(rc, d, d * rc->policy.jitter);
  if (!(d >= 0))
    d = 0;
  rc->delay = d;
  ct_log(CT_LOG_DEBUG, "reconnect", "will retry %s in %.3f seconds",
         rc->endpoint, d);
  rc->retry_call = ct_call_later(rc->reactor, d, rc_connect_now, rc);
}

static ct_protocol *rc_build(ct_factory *f, const ct_address *peer) {
  ct_reconnecting_client *rc =
      ct_container_of(f, ct_reconnecting_client, proxy.base);
  ct_protocol *p = ct_factory_build(&rc->user->base, peer);
  if (p != NULL) {
    rc->protocol = p;
    ct_reconnecting_client_reset_delay(rc);
  }
  return p;
}

static void rc_failed(ct_client_factory *cf, const ct_failure *reason) {
  ct_reconnecting_client *rc =
      ct_container_of(cf, ct_reconnecting_client, proxy);
  if (rc->user->connection_failed != NULL)
    rc->user->connection_failed(rc->user, reason);
}

static void rc_lost(ct_client_factory *cf, const ct_failure *reason) {
  ct_reconnecting_client *rc =
      ct_container_of(cf, ct_reconnecting_client, proxy);
  rc->protocol = NULL;
  if (rc->user->connection_lost != NULL)
    rc->user->connection_lost(rc->user, reason);
  rc_retry(rc);
}

static ct_step rc_attempt_ok(ct_value v, void *arg) {
  ct_reconnecting_client *rc = arg;
  ct_deferred *d = rc->attempt;
  rc->attempt = NULL;
  ct_deferred_unref(d); /* the running chain holds its own reference */
  return ct_pass(v);
}

static ct_step rc_attempt_failed(ct_failure *f, void *arg) {
  ct_reconnecting_client *rc = arg;
  ct_deferred *d = rc->attempt;
  rc->attempt = NULL;
  ct_failure_free(f); /* reported through connection_failed */
  ct_deferred_unref(d);
  rc_retry(rc);
  return ct_pass(CT_NONE);
}

static void rc_connect_now(void *arg) {
  ct_reconnecting_client *rc = arg;
  rc->retry_call = NULL;
  if (!rc->continue_trying || rc->attempt != NULL || rc->protocol != NULL)
    return;
  ct_deferred *d = rc->policy.connect != NULL
                       ? rc->policy.connect(rc->reactor, rc->endpoint,
                                            &rc->proxy, rc->policy.connect_arg)
                       : ct_connect(rc->reactor, rc->endpoint, &rc->proxy);
  if (d == NULL) {
    rc_retry(rc);
    return;
  }
  rc->attempt = d;
  ct_deferred_add_callbacks(d, rc_attempt_ok, rc_attempt_failed, rc);
}

static const ct_factory_ops rc_factory_ops = {.name = "reconnecting",
                                              .build_protocol = rc_build};

ct_reconnecting_client *ct_reconnecting_client_new(
    ct_reactor *r, const char *endpoint, ct_client_factory *cf,
    const ct_reconnect_policy *policy, ct_failure **err) {
  if (err != NULL)
    *err = NULL;
  if (r == NULL || endpoint == NULL || cf == NULL) {
    if (err != NULL)
      *err = ct_failure_new(CT_EINVAL, "reconnecting client: missing "
                                       "reactor, endpoint or factory");
    return NULL;
  }
  if (policy == NULL || policy->connect == NULL) {
    ct_endpoint ep;
    memset(&ep, 0, sizeof ep);
    if (ct_endpoint_parse_client(endpoint, &ep, err) != 0)
      return NULL;
    ct_endpoint_clear(&ep);
  }
  ct_reconnecting_client *rc = calloc(1, sizeof *rc);
  if (rc == NULL || (rc->endpoint = strdup(endpoint)) == NULL) {
    free(rc);
    if (err != NULL)
      *err = ct_failure_new(CT_ENOMEM, "reconnecting client: out of memory");
    return NULL;
  }
  ct_factory_init(&rc->proxy.base, &rc_factory_ops, NULL, 0, rc);
  rc->proxy.base.write_high_water = cf->base.write_high_water;
  rc->proxy.base.write_low_water = cf->base.write_low_water;
  rc->proxy.connection_failed = rc_failed;
  rc->proxy.connection_lost = rc_lost;
  rc->reactor = r;
  rc->user = cf;
  if (policy != NULL)
    rc->policy = *policy;
  else
    ct_reconnect_policy_default(&rc->policy);
  rc->rng = rc->policy.seed;
  rc->delay = rc->policy.initial_delay;
  rc->continue_trying = 1;
  rc_connect_now(rc);
  return rc;
}

void ct_reconnecting_client_stop_trying(ct_reconnecting_client *rc) {
  if (rc == NULL)
    return;
  rc->continue_trying = 0;
  if (rc->retry_call != NULL) {
    ct_delayed_call_cancel(rc->retry_call);
    rc->retry_call = NULL;
  }
  if (rc->attempt != NULL) {
    ct_deferred *d = ct_deferred_ref(rc->attempt);
    ct_deferred_cancel(d); /* runs rc_attempt_failed, which clears it */
    ct_deferred_unref(d);
  }
}

void ct_reconnecting_client_reset_delay(ct_reconnecting_client *rc) {
  if (rc == NULL)
    return;
  rc->delay = rc->policy.initial_delay;
  rc->retries = 0;
}

double ct_reconnecting_client_delay(const ct_reconnecting_client *rc) {
  return rc != NULL ? rc->delay : 0;
}

int ct_reconnecting_client_retries(const ct_reconnecting_client *rc) {
  return rc != NULL ? rc->retries : 0;
}

ct_protocol *ct_reconnecting_client_protocol(const ct_reconnecting_client *rc) {
  return rc != NULL ? rc->protocol : NULL;
}

void ct_reconnecting_client_free(ct_reconnecting_client *rc) {
  if (rc == NULL)
    return;
  ct_reconnecting_client_stop_trying(rc);
  if (rc->protocol != NULL && rc->protocol->transport != NULL) {
    ct_transport *t = rc->protocol->transport;
    /* The connection outlives us: detach it so that its connection_lost
     * does not reach the freed proxy. */
    if (t->client_factory == &rc->proxy)
      t->client_factory = NULL;
    ct_transport_abort(t);
  }
  free(rc->endpoint);
  free(rc);
}
