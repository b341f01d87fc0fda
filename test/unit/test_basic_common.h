/*
 * Shared helpers of the framing receiver tests (test_basic_*.c): an event
 * recorder, a deterministic PRNG and a feeder that splits a stream at
 * given points through a string transport.
 */
#ifndef TEST_BASIC_COMMON_H
#define TEST_BASIC_COMMON_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/basic.h"
#include "ctwist/testing.h"
#include "ctwist/transport.h"

typedef struct ev {
  char type; /* 'L' line, 'R' raw (adjacent raw chunks merged), 'S' string,
                'X' line length exceeded, 'E' limit exceeded */
  char *data;
  size_t len;
} ev;

typedef struct rec {
  ev *evs;
  size_t n, cap;
  int made, lost, freed;
  int lost_code;
  char lost_msg[512];
  uint64_t limit_len;
  const char *ptrs[16]; /* where delivered data pointed (zero-copy checks) */
  size_t nptrs;
} rec;

static inline void rec_ptr(rec *r, const char *p) {
  if (r->nptrs < 16)
    r->ptrs[r->nptrs++] = p;
}

static inline void rec_add(rec *r, char type, const char *d, size_t len) {
  if (type == 'R' && r->n > 0 && r->evs[r->n - 1].type == 'R') {
    ev *e = &r->evs[r->n - 1];
    e->data = realloc(e->data, e->len + len + 1);
    cr_assert_not_null(e->data);
    memcpy(e->data + e->len, d, len);
    e->len += len;
    e->data[e->len] = 0;
    return;
  }
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 64;
    r->evs = realloc(r->evs, r->cap * sizeof *r->evs);
    cr_assert_not_null(r->evs);
  }
  ev *e = &r->evs[r->n++];
  e->type = type;
  e->data = malloc(len + 1);
  cr_assert_not_null(e->data);
  if (len)
    memcpy(e->data, d, len);
  e->data[len] = 0;
  e->len = len;
}

static inline void rec_clear(rec *r) {
  for (size_t i = 0; i < r->n; i++)
    free(r->evs[i].data);
  free(r->evs);
  memset(r, 0, sizeof *r);
}

static inline void rec_lost(rec *r, const ct_failure *reason) {
  r->lost++;
  r->lost_code = reason ? reason->code : 0;
  if (reason && reason->message)
    snprintf(r->lost_msg, sizeof r->lost_msg, "%s", reason->message);
}

/* Assert a and b recorded the same events; `what` names the case in the
 * failure message. */
static inline void rec_assert_same_in(const rec *a, const rec *b,
                                      const char *what) {
  cr_assert_eq(a->n, b->n, "%s: event counts differ: %zu vs %zu", what, a->n,
               b->n);
  for (size_t i = 0; i < a->n; i++) {
    cr_assert_eq(a->evs[i].type, b->evs[i].type, "%s: event %zu type", what, i);
    cr_assert_eq(a->evs[i].len, b->evs[i].len,
                 "%s: event %zu length %zu vs %zu", what, i, a->evs[i].len,
                 b->evs[i].len);
    cr_assert(memcmp(a->evs[i].data, b->evs[i].data, a->evs[i].len) == 0,
              "%s: event %zu bytes", what, i);
  }
}

static inline void rec_assert_same(const rec *a, const rec *b) {
  rec_assert_same_in(a, b, "run");
}

/* xorshift64*: deterministic across runs. */
static inline uint64_t rnd(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 2685821657736338717ULL;
}

/* A growable byte buffer for building streams. */
typedef struct bytes {
  char *d;
  size_t len, cap;
} bytes;

static inline void bytes_add(bytes *b, const void *d, size_t len) {
  if (b->len + len + 1 > b->cap) {
    size_t c = b->cap ? b->cap : 256;
    while (c < b->len + len + 1)
      c *= 2;
    b->d = realloc(b->d, c);
    cr_assert_not_null(b->d);
    b->cap = c;
  }
  if (len)
    memcpy(b->d + b->len, d, len);
  b->len += len;
  b->d[b->len] = 0;
}

static inline void bytes_free(bytes *b) {
  free(b->d);
  memset(b, 0, sizeof *b);
}

/* Connect a fresh receiver built from `ops` (size bytes) with r as state. */
static inline ct_string_transport *connect_rec(const ct_protocol_ops *ops,
                                               size_t size, rec *r,
                                               ct_protocol **out) {
  ct_string_transport *st = ct_string_transport_new(NULL);
  cr_assert_not_null(st);
  ct_protocol *p = ct_protocol_new(ops, size);
  cr_assert_not_null(p);
  p->state = r;
  cr_assert_eq(ct_string_transport_connect(st, p), 0);
  if (out)
    *out = p;
  return st;
}

/* Feed `s` in chunks: step 0 = one chunk, 1 = one byte at a time,
 * otherwise random sizes in 1..step from the seed. */
static inline void feed_split(ct_string_transport *st, const char *s,
                              size_t len, size_t step, uint64_t seed) {
  size_t pos = 0;
  uint64_t rs = seed | 1;
  while (pos < len) {
    size_t n = len - pos;
    if (step == 1)
      n = 1;
    else if (step > 1) {
      size_t k = 1 + (size_t)(rnd(&rs) % step);
      if (k < n)
        n = k;
    }
    if (ct_string_transport_feed(st, s + pos, n) != 0)
      return; /* closed */
    pos += n;
  }
}

/* A receiver under test: its protocol ops and the size of its struct. */
typedef struct receiver {
  const ct_protocol_ops *ops;
  size_t size;
} receiver;

/* Run `s` through a fresh receiver with the given chunking into `r`. */
static inline void run_receiver(receiver rv, const char *s, size_t len,
                                size_t step, uint64_t seed, rec *r) {
  ct_string_transport *st = connect_rec(rv.ops, rv.size, r, NULL);
  feed_split(st, s, len, step, seed);
  ct_string_transport_free(st);
}

/* Run `s` once with (step, seed) and assert the events equal `expect`
 * (and, unless expect_n is SIZE_MAX, that there are expect_n of them). */
static inline void check_run(receiver rv, const char *s, size_t len,
                             size_t step, uint64_t seed, const rec *expect,
                             size_t expect_n) {
  char what[64];
  snprintf(what, sizeof what, "step %zu seed %llu", step,
           (unsigned long long)seed);
  rec got = {0};
  run_receiver(rv, s, len, step, seed, &got);
  if (expect_n != SIZE_MAX)
    cr_assert_eq(got.n, expect_n, "%s: %zu events", what, got.n);
  rec_assert_same_in(expect, &got, what);
  rec_clear(&got);
}

/* check_run for every step in [0, steps) and seed in [1, seeds). */
static inline void check_grid(receiver rv, const char *s, size_t len,
                              size_t steps, uint64_t seeds, const rec *expect) {
  for (size_t step = 0; step < steps; step++)
    for (uint64_t seed = 1; seed < seeds; seed++)
      check_run(rv, s, len, step, seed, expect, SIZE_MAX);
}

/* check_run for seed in [1, seeds] with step 1 + seed * mul % mod. */
static inline void check_random_splits(receiver rv, const bytes *b,
                                       uint64_t seeds, uint64_t mul,
                                       uint64_t mod, const rec *expect) {
  for (uint64_t seed = 1; seed <= seeds; seed++)
    check_run(rv, b->d, b->len, (size_t)(1 + seed * mul % mod), seed, expect,
              SIZE_MAX);
}

#endif
