/*
 * libFuzzer target for the netstring receiver.  The first two bytes choose
 * the limit and a chunking seed; the rest is the stream.  A netstring
 * "pause" pauses the receiver (the harness resumes it), "quit" closes.
 * The stream is fed whole, in random chunks and byte by byte: delivered
 * strings and the failure code must be identical (basic_harness.h).
 */
#include "ctwist/basic.h"

#include "basic_harness.h"

typedef struct fn {
  ct_netstring_receiver nr;
  fuzz_result *res;
} fn;

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
  fuzz_mix(f->res, &len, sizeof len);
  fuzz_mix(f->res, s, len);
  if (len == 5 && memcmp(s, "pause", 5) == 0) {
    ct_netstring_receiver_pause(nr);
    f->res->paused = 1;
  } else if (len == 4 && memcmp(s, "quit", 4) == 0) {
    ct_transport_lose_connection(nr->base.transport);
  }
}

#define OPS(name, max)                                                         \
  static const ct_netstring_receiver_ops name = {                              \
      CT_NETSTRING_RECEIVER_BASE(#name, 0),                                    \
      .max_length = (max),                                                     \
      .string_received = on_string,                                            \
      .connection_lost = on_lost,                                              \
      .free = on_free,                                                         \
  }
OPS(ops_default, 0);
OPS(ops_small, 10);
OPS(ops_mid, 1000);

static void attach(ct_protocol *p, fuzz_result *res) {
  ((fn *)p)->res = res;
}

/* The buffer never holds more than one frame's worth. */
static int over_bound(ct_protocol *p, const fuzz_result *res) {
  const ct_netstring_receiver *nr = &((fn *)p)->nr;
  return !res->paused && nr->st.carry.len > nr->max_length + 32;
}

static void resume(ct_protocol *p) {
  ct_netstring_receiver_resume(&((fn *)p)->nr);
}

static const ct_protocol_ops *const all[] = {&ops_default.base, &ops_small.base,
                                             &ops_mid.base};
static const fuzz_target target = {all,    3,          sizeof(fn),
                                   attach, over_bound, resume};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_differential(&target, data, size);
}
