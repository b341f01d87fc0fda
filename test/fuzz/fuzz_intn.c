/*
 * libFuzzer target for the int8/16/32-prefixed string receivers.  The
 * first byte chooses the prefix size and limit, the second a chunking
 * seed; the rest is the stream.  A string "pause" pauses the receiver (the
 * harness resumes it), "quit" closes.  The stream is fed whole, in random
 * chunks and byte by byte: delivered strings and the failure code must be
 * identical, and the buffer must stay within one frame (basic_harness.h).
 */
#include "ctwist/basic.h"

#include "basic_harness.h"

typedef struct fi {
  ct_intn_receiver ir;
  fuzz_result *res;
} fi;

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
  fuzz_mix(f->res, &len, sizeof len);
  fuzz_mix(f->res, s, len);
  if (len == 5 && memcmp(s, "pause", 5) == 0) {
    ct_intn_receiver_pause(ir);
    f->res->paused = 1;
  } else if (len == 4 && memcmp(s, "quit", 4) == 0) {
    ct_transport_lose_connection(ir->base.transport);
  }
}

static void on_limit(ct_intn_receiver *ir, uint64_t length) {
  fi *f = (fi *)ir;
  f->res->limit_calls++;
  fuzz_mix(f->res, &length, sizeof length);
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

static void attach(ct_protocol *p, fuzz_result *res) {
  ((fi *)p)->res = res;
}

/* The buffer never holds more than one frame. */
static int over_bound(ct_protocol *p, const fuzz_result *res) {
  const ct_intn_receiver *ir = &((fi *)p)->ir;
  return !res->paused && ir->st.carry.len > ir->max_length + 4;
}

static void resume(ct_protocol *p) {
  ct_intn_receiver_resume(&((fi *)p)->ir);
}

static const ct_protocol_ops *const all[] = {&i8.base,   &i8s.base, &i16.base,
                                             &i16s.base, &i32.base, &i32s.base};
static const fuzz_target target = {all,    6,          sizeof(fi),
                                   attach, over_bound, resume};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_differential(&target, data, size);
}
