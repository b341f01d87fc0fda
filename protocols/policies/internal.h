/*
 * protocols/policies/internal.h: the generic protocol wrapper shared by the
 * policy factories (Twisted's ProtocolWrapper + WrappingFactory).
 *
 * A wrapped connection is one allocation, a `ct__wrap` (or a policy's
 * struct embedding it first):
 *
 *   real transport --carries--> w->proto (the wrapper protocol)
 *   w->wt (wrapper transport)  --carries--> w->inner (the wrapped protocol)
 *
 * The wrapper protocol forwards every event to the inner protocol; the
 * wrapper transport forwards every call to the real transport.  In between,
 * the policy's hooks see the traffic, and the wrapper transport can hold
 * output back (throttling) and pause reading for the policy without
 * disturbing the inner protocol's own pause.
 */
#ifndef CT_PROTOCOLS_POLICIES_INTERNAL_H
#define CT_PROTOCOLS_POLICIES_INTERNAL_H

#include <stdint.h>

#include "ctwist/policies.h"
#include "reactor/buf.h"

typedef struct ct__wrap ct__wrap;

/* A policy: what the generic wrapper calls.  Every member is optional. */
typedef struct ct__policy_ops {
  const char *name;
  size_t conn_size; /* >= sizeof(ct__wrap); 0 = sizeof(ct__wrap) */
  /* May `peer` connect?  0 yes; otherwise refused (build returns NULL). */
  int (*admit)(ct_policy_factory *pf, const ct_address *peer);
  /* A connection was built (counted); undone by conn_fini. */
  void (*conn_init)(ct__wrap *w);
  /* The real connection is up, before the inner connection_made. */
  void (*connection_made)(ct__wrap *w);
  /* `len` bytes arrived, before they are passed on. */
  void (*data_received)(ct__wrap *w, size_t len);
  /* How many bytes may go to the real transport now (SIZE_MAX: any). */
  size_t (*write_allowance)(ct__wrap *w);
  /* `len` bytes were passed on to the real transport. */
  void (*wrote)(ct__wrap *w, size_t len);
  /* The connection ended (after the inner connection_lost). */
  void (*connection_lost)(ct__wrap *w, const ct_failure *reason);
  /* The connection is released: undo conn_init. */
  void (*conn_fini)(ct__wrap *w);
  /* The last reference to the factory went: free policy state. */
  void (*destroy)(ct_policy_factory *pf);
} ct__policy_ops;

struct ct_policy_factory {
  ct_factory base; /* first: what listeners see */
  ct_factory *wrapped;
  const ct__policy_ops *pops;
  unsigned refs;  /* the creator's + one per connection */
  unsigned conns; /* connections built and not yet released */
  unsigned long refused;
  int freed; /* the creator dropped its reference */
};

/* Pause-reading reasons of a wrapper (bits of ct__wrap.read_pause). */
enum { CT__WRAP_PAUSE_INNER = 1u, CT__WRAP_PAUSE_POLICY = 2u };

struct ct__wrap {
  ct_protocol proto; /* first: the protocol the real transport carries */
  ct_transport wt;   /* the transport the inner protocol sees */
  ct_protocol *inner;
  ct_transport *real; /* borrowed while connected */
  ct_policy_factory *pf;
  ct_address peer;
  ct__buf q;      /* output held back by the policy */
  unsigned holds; /* proto + wt */
  unsigned read_pause;
  int real_paused;
  int proxy_on;                 /* our pull producer is registered on `real` */
  int made;                     /* wt carries the inner protocol */
  int lose_pending;             /* lose_connection once the hold queue drains */
  int half_pending;             /* half_close once the hold queue drains */
  struct ct__wrap *next, *prev; /* policy's list of live connections */
};

/* Initialise a policy factory wrapping `wrapped`.  refs = 1. */
void ct__policy_factory_init(ct_policy_factory *pf, ct_factory *wrapped,
                             const ct__policy_ops *pops);

/* The wrapper of a protocol built by a policy factory, or NULL. */
ct__wrap *ct__wrap_of(ct_protocol *p);

/* The wrapper whose wrapper transport is `t`, or NULL. */
ct__wrap *ct__wrap_of_transport(ct_transport *t);

/* Pause (on != 0) or resume reading for the policy. */
void ct__wrap_policy_pause(ct__wrap *w, int on);

/* Pass held output on, as far as the policy's allowance goes. */
void ct__wrap_flush(ct__wrap *w);

/* Bytes held back by the wrapper. */
static inline size_t ct__wrap_held(const ct__wrap *w) {
  return ct__buf_len(&w->q);
}

#endif /* CT_PROTOCOLS_POLICIES_INTERNAL_H */
