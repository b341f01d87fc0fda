/*
 * Shared differential harness for the framing fuzz targets (line,
 * netstring, intN).  A target describes its receiver with a fuzz_target;
 * the harness feeds the same stream whole, in random chunks and byte by
 * byte through the string transport, and aborts if the delivered events
 * (hashed into a fuzz_result) or the close reason differ, if the receiver's
 * buffer outgrows its bound, or if the protocol is not freed.
 */
#ifndef CT_FUZZ_BASIC_HARNESS_H
#define CT_FUZZ_BASIC_HARNESS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/log.h"
#include "ctwist/testing.h"

/* What a run observed; outlives the protocol (freed inside a step). */
typedef struct fuzz_result {
  uint64_t h, events, limit_calls;
  int code, paused, freed;
  char last;
} fuzz_result;

typedef struct fuzz_target {
  const ct_protocol_ops *const *ops; /* configurations, picked by data[0] */
  size_t n_ops;
  size_t proto_size;
  /* Point the new protocol at this run's result. */
  void (*attach)(ct_protocol *p, fuzz_result *res);
  /* Non-zero if the receiver buffers more than its bound allows. */
  int (*over_bound)(ct_protocol *p, const fuzz_result *res);
  /* Resume a receiver that paused itself. */
  void (*resume)(ct_protocol *p);
} fuzz_target;

/* FNV-1a over the delivered bytes. */
static inline void fuzz_mix(fuzz_result *r, const void *d, size_t n) {
  const unsigned char *u = d;
  for (size_t i = 0; i < n; i++)
    r->h = (r->h ^ u[i]) * 1099511628211ULL;
}

/* mode 0: whole; 1: byte by byte; 2: pseudo-random chunks of 1..97. */
static fuzz_result fuzz_run(const fuzz_target *t, const ct_protocol_ops *ops,
                            const uint8_t *d, size_t n, int mode,
                            uint32_t seed) {
  fuzz_result res = {0};
  res.h = 1469598103934665603ULL;
  ct_string_transport *st = ct_string_transport_new(NULL);
  ct_protocol *p = ct_protocol_new(ops, t->proto_size);
  if (st == NULL || p == NULL)
    abort();
  t->attach(p, &res);
  ct_string_transport_connect(st, p);
  size_t pos = 0;
  while (pos < n) {
    size_t k = n - pos;
    if (mode == 1) {
      k = 1;
    } else if (mode == 2) {
      seed = seed * 1103515245u + 12345u;
      size_t c = 1 + (seed >> 8) % 97;
      if (c < k)
        k = c;
    }
    if (ct_string_transport_feed(st, d + pos, k) != 0)
      break;
    pos += k;
    if (!res.freed && t->over_bound(p, &res))
      abort();
    /* Resume a paused receiver, as an application would. */
    while (res.paused && !res.freed) {
      res.paused = 0;
      t->resume(p);
      ct_string_transport_step(st);
    }
  }
  /* Deliver a pending close (its reason is part of the result). */
  if (!res.freed)
    ct_string_transport_step(st);
  ct_string_transport_free(st);
  if (!res.freed)
    abort();
  return res;
}

static int fuzz_same(const fuzz_result *a, const fuzz_result *b) {
  return a->h == b->h && a->events == b->events && a->code == b->code &&
         a->limit_calls == b->limit_calls;
}

/* data[0] picks the configuration, data[1] seeds the chunking. */
static int fuzz_differential(const fuzz_target *t, const uint8_t *data,
                             size_t size) {
  static int quiet;
  if (!quiet) {
    ct_log_set_default_level(CT_LOG_ERROR);
    quiet = 1;
  }
  if (size < 2)
    return 0;
  const ct_protocol_ops *ops = t->ops[data[0] % t->n_ops];
  fuzz_result a = fuzz_run(t, ops, data + 2, size - 2, 0, data[1]);
  fuzz_result b = fuzz_run(t, ops, data + 2, size - 2, 2, data[1]);
  if (!fuzz_same(&a, &b))
    abort();
  if (size < 4096) {
    fuzz_result c = fuzz_run(t, ops, data + 2, size - 2, 1, data[1]);
    if (!fuzz_same(&a, &c))
      abort();
  }
  return 0;
}

#endif /* CT_FUZZ_BASIC_HARNESS_H */
