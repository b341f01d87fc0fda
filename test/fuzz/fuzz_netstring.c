/*
 * libFuzzer target for the netstring receiver.  The first two bytes choose
 * the limit and a chunking seed; the rest is the stream.  A netstring
 * "pause" pauses the receiver (the harness resumes it), "quit" closes.
 * The stream is fed whole, in random chunks and byte by byte: delivered
 * strings and the failure code must be identical.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/basic.h"
#include "ctwist/log.h"
#include "ctwist/testing.h"

/* What a run observed; outlives the protocol (freed inside a step). */
typedef struct result {
  uint64_t h, events;
  int code, paused, freed;
} result;

typedef struct fn {
  ct_netstring_receiver nr;
  result *res;
} fn;

static void mix(fn *f, const void *d, size_t n) {
  const unsigned char *u = d;
  for (size_t i = 0; i < n; i++)
    f->res->h = (f->res->h ^ u[i]) * 1099511628211ULL;
}

static void on_lost(ct_netstring_receiver *nr, const ct_failure *reason) {
  ((fn *)nr)->res->code = reason->code;
}

static void on_free(ct_netstring_receiver *nr) {
  ((fn *)nr)->res->freed = 1;
  free(nr);
}

static void on_string(ct_netstring_receiver *nr, const char *s, size_t len) {
  fn *f = (fn *)nr;
  f->res->events++;
  mix(f, &len, sizeof len);
  mix(f, s, len);
  if (len == 5 && memcmp(s, "pause", 5) == 0)
  {
    ct_netstring_receiver_pause(nr);
    f->res->paused = 1;
  }
  else if (len == 4 && memcmp(s, "quit", 4) == 0)
    ct_transport_lose_connection(nr->base.transport);
}

static const ct_netstring_receiver_ops ops_default = {
    CT_NETSTRING_RECEIVER_BASE("fuzz-netstring", 0),
    .string_received = on_string,
    .connection_lost = on_lost,
    .free = on_free,
};
static const ct_netstring_receiver_ops ops_small = {
    CT_NETSTRING_RECEIVER_BASE("fuzz-netstring-small", 0),
    .max_length = 10,
    .string_received = on_string,
    .connection_lost = on_lost,
    .free = on_free,
};
static const ct_netstring_receiver_ops ops_mid = {
    CT_NETSTRING_RECEIVER_BASE("fuzz-netstring-mid", 0),
    .max_length = 1000,
    .string_received = on_string,
    .connection_lost = on_lost,
    .free = on_free,
};

static result run(const ct_netstring_receiver_ops *ops, const uint8_t *d,
                  size_t n, int mode, uint32_t seed) {
  result res = {0};
  ct_string_transport *st = ct_string_transport_new(NULL);
  fn *f = (fn *)ct_protocol_new(&ops->base, sizeof(fn));
  if (st == NULL || f == NULL)
    abort();
  f->res = &res;
  res.h = 1469598103934665603ULL;
  ct_string_transport_connect(st, &f->nr.base);
  size_t pos = 0;
  while (pos < n) {
    size_t k = n - pos;
    if (mode == 1)
      k = 1;
    else if (mode == 2) {
      seed = seed * 1103515245u + 12345u;
      size_t c = 1 + (seed >> 8) % 97;
      if (c < k)
        k = c;
    }
    if (ct_string_transport_feed(st, d + pos, k) != 0)
      break;
    pos += k;
    /* The buffer never holds more than one frame's worth. */
    if (!res.freed && !res.paused &&
        f->nr.st.len - f->nr.st.off > f->nr.max_length + 32)
      abort();
    /* Resume a paused receiver, as an application would. */
    while (res.paused && !res.freed) {
      res.paused = 0;
      ct_netstring_receiver_resume(&f->nr);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int quiet;
  if (!quiet) {
    ct_log_set_default_level(CT_LOG_ERROR);
    quiet = 1;
  }
  if (size < 2)
    return 0;
  static const ct_netstring_receiver_ops *const all[] = {
      &ops_default, &ops_small, &ops_mid};
  const ct_netstring_receiver_ops *ops = all[data[0] % 3];
  result a = run(ops, data + 2, size - 2, 0, data[1]);
  result b = run(ops, data + 2, size - 2, 2, data[1]);
  if (a.h != b.h || a.events != b.events || a.code != b.code)
    abort();
  if (size < 4096) {
    result c = run(ops, data + 2, size - 2, 1, data[1]);
    if (a.h != c.h || a.events != c.events || a.code != c.code)
      abort();
  }
  return 0;
}
