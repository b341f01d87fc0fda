/*
 * The internal byte buffer (reactor/buf.h) against a model: long random
 * runs of appends (copied and shared blobs, small and mapped sizes),
 * partial consumes and iov reads must always describe exactly the bytes
 * the model holds, in order, through compaction, growth and shrinking.
 * Plus the shape a slow reader gives a transport's output (a large queue
 * drained and refilled a little at a time): the block stays bounded.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "reactor/buf.h"

typedef struct model {
  unsigned char *data;
  size_t len, cap;
} model;

static void model_add(model *m, const void *p, size_t n) {
  if (m->len + n > m->cap) {
    m->cap = (m->len + n) * 2;
    m->data = realloc(m->data, m->cap);
    cr_assert_not_null(m->data);
  }
  memcpy(m->data + m->len, p, n);
  m->len += n;
}

static void model_consume(model *m, size_t n) {
  memmove(m->data, m->data + n, m->len - n);
  m->len -= n;
}

/* The buffer's bytes, through its iovecs, equal the model's. */
static void check_same(const ct__buf *b, const model *m) {
  cr_assert_eq(ct__buf_len(b), m->len);
  struct iovec iov[64];
  size_t at = 0;
  int n = ct__buf_iov(b, iov, 64);
  for (int i = 0; i < n && at < m->len; i++) {
    cr_assert(at + iov[i].iov_len <= m->len);
    cr_assert_eq(memcmp(iov[i].iov_base, m->data + at, iov[i].iov_len), 0,
                 "bytes differ in iov %d at %zu", i, at);
    at += iov[i].iov_len;
  }
  if (n < 64)
    cr_assert_eq(at, m->len, "the iovecs cover %zu of %zu bytes", at, m->len);
  if (m->len > 0) {
    size_t k = m->len < 4096 ? m->len : 4096;
    unsigned char *copy = malloc(k);
    ct__buf_copyout(b, copy, k);
    cr_assert_eq(memcmp(copy, m->data, k), 0);
    free(copy);
  }
}

static unsigned next_rand(unsigned *s) {
  *s = *s * 1103515245u + 12345u;
  return *s >> 8;
}

Test(buf, random_operations_match_a_model) {
  ct__buf b = CT__BUF_INIT;
  model m = {0};
  unsigned seed = 12345;
  unsigned char src[300 * 1024];
  for (size_t i = 0; i < sizeof src; i++)
    src[i] = (unsigned char)(i * 131 + 7);
  for (int step = 0; step < 20000; step++) {
    unsigned r = next_rand(&seed) % 100;
    /* Mostly small pieces; now and then one past the mapping threshold. */
    size_t n = next_rand(&seed) % 10 == 0 ? next_rand(&seed) % sizeof src
                                          : next_rand(&seed) % 2000;
    size_t off = next_rand(&seed) % (sizeof src - n + 1);
    if (r < 45) {
      cr_assert_eq(ct__buf_append(&b, src + off, n), 0);
      model_add(&m, src + off, n);
    } else if (r < 55 && n > 0) {
      ct__blob *blob = ct__blob_copy(src + off, n);
      cr_assert_not_null(blob);
      size_t skip = n / 3, take = n - n / 3;
      cr_assert_eq(ct__buf_append_blob(&b, blob, skip, take), 0);
      ct__blob_unref(blob); /* the buffer keeps its own reference */
      model_add(&m, src + off + skip, take);
    } else if (r < 95) {
      size_t c = m.len > 0 ? next_rand(&seed) % (m.len + 1) : 0;
      ct__buf_consume(&b, c);
      model_consume(&m, c);
    } else if (r < 97) {
      ct__buf_shrink(&b, 0);
    } else {
      size_t c = m.len;
      ct__buf_consume(&b, c);
      model_consume(&m, c);
    }
    check_same(&b, &m);
  }
  ct__buf_free(&b);
  free(m.data);
}

/* A slow reader: 256 KiB queued, then forever 1 KiB leaves and 1 KiB
 * comes.  The block stays within a small multiple of what is held. */
Test(buf, drained_and_refilled_a_little_stays_bounded) {
  ct__buf b = CT__BUF_INIT;
  model m = {0};
  static unsigned char chunk[1024];
  for (int i = 0; i < 256; i++) {
    memset(chunk, i, sizeof chunk);
    cr_assert_eq(ct__buf_append(&b, chunk, sizeof chunk), 0);
    model_add(&m, chunk, sizeof chunk);
  }
  for (int i = 0; i < 20000; i++) {
    ct__buf_consume(&b, 1000);
    model_consume(&m, 1000);
    memset(chunk, i & 0xff, sizeof chunk);
    cr_assert_eq(ct__buf_append(&b, chunk, 1000), 0);
    model_add(&m, chunk, 1000);
    cr_assert_leq(b.cap, 4 * ct__buf_len(&b) + 4096, "cap %zu for %zu held",
                  b.cap, ct__buf_len(&b));
  }
  check_same(&b, &m);
  ct__buf_free(&b);
  free(m.data);
}
