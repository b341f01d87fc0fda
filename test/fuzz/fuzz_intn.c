/*
 * libFuzzer target for the int8/16/32-prefixed string receivers.  The
 * first byte chooses the prefix size and limit, the second a chunking
 * seed; the rest is the stream.  A string "pause" pauses the receiver (the
 * harness resumes it), "quit" closes.  The stream is fed whole, in random
 * chunks and byte by byte: delivered strings and the failure code must be
 * identical, and the buffer must stay within one frame.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/basic.h"
#include "ctwist/log.h"
#include "ctwist/testing.h"

/* What a run observed; outlives the protocol (freed inside a step). */
typedef struct result {
  uint64_t h, events, limit_calls;
  int code, paused, freed;
} result;

typedef struct fi {
  ct_intn_receiver ir;
  result *res;
} fi;

static void mix(fi *f, const void *d, size_t n) {
  const unsigned char *u = d;
  for (size_t i = 0; i < n; i++)
    f->res->h = (f->res->h ^ u[i]) * 1099511628211ULL;
}

static void on_lost(ct_intn_receiver *ir, const ct_failure *reason) {
  ((fi *)ir)->res->code = reason->code;
}

static void on_free(ct_intn_receiver *ir) {
  ((fi *)ir)->res->freed = 1;
  free(ir);
}

static void on_string(ct_intn_receiver *ir, const char *s, size_t len) {
  fi *f = (fi *)ir;
  f->res->events++;
  mix(f, &len, sizeof len);
  mix(f, s, len);
  if (len == 5 && memcmp(s, "pause", 5) == 0)
  {
    ct_intn_receiver_pause(ir);
    f->res->paused = 1;
  }
  else if (len == 4 && memcmp(s, "quit", 4) == 0)
    ct_transport_lose_connection(ir->base.transport);
}

static void on_limit(ct_intn_receiver *ir, uint64_t length) {
  fi *f = (fi *)ir;
  f->res->limit_calls++;
  mix(f, &length, sizeof length);
}

#define OPS(name, macro, max)                                                  \
  static const ct_intn_receiver_ops name = {                                   \
      macro(#name, 0),                                                         \
      .max_length = (max),                                                     \
      .string_received = on_string,                                            \
      .length_limit_exceeded = on_limit,                                       \
      .connection_lost = on_lost,                                              \
      .free = on_free,                                                         \
  }
OPS(i8, CT_INT8_RECEIVER_BASE, 0);
OPS(i8s, CT_INT8_RECEIVER_BASE, 20);
OPS(i16, CT_INT16_RECEIVER_BASE, 0);
OPS(i16s, CT_INT16_RECEIVER_BASE, 300);
OPS(i32, CT_INT32_RECEIVER_BASE, 0);
OPS(i32s, CT_INT32_RECEIVER_BASE, 1000);

static result run(const ct_intn_receiver_ops *ops, const uint8_t *d, size_t n,
                  int mode, uint32_t seed) {
  result res = {0};
  ct_string_transport *st = ct_string_transport_new(NULL);
  fi *f = (fi *)ct_protocol_new(&ops->base, sizeof(fi));
  if (st == NULL || f == NULL)
    abort();
  f->res = &res;
  res.h = 1469598103934665603ULL;
  ct_string_transport_connect(st, &f->ir.base);
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
    /* The buffer never holds more than one frame. */
    if (!res.freed && !res.paused &&
        f->ir.st.len - f->ir.st.off > f->ir.max_length + 4)
      abort();
    while (res.paused && !res.freed) {
      res.paused = 0;
      ct_intn_receiver_resume(&f->ir);
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
  static const ct_intn_receiver_ops *const all[] = {&i8,  &i8s, &i16,
                                                    &i16s, &i32, &i32s};
  const ct_intn_receiver_ops *ops = all[data[0] % 6];
  result a = run(ops, data + 2, size - 2, 0, data[1]);
  result b = run(ops, data + 2, size - 2, 2, data[1]);
  if (a.h != b.h || a.events != b.events || a.code != b.code ||
      a.limit_calls != b.limit_calls)
    abort();
  if (size < 4096) {
    result c = run(ops, data + 2, size - 2, 1, data[1]);
    if (a.h != c.h || a.events != c.events || a.code != c.code)
      abort();
  }
  return 0;
}
