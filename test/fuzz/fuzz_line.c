/*
 * libFuzzer target for the line receiver.  The first two bytes choose the
 * configuration (delimiter, limit, exceeded handling) and a chunking seed;
 * the rest is the stream.  A line "RAW n" switches to raw mode for n bytes
 * and back (mid-chunk), a line "pause" pauses the receiver (the harness
 * resumes it).  The stream is fed whole, in random chunks and byte by
 * byte: the delivered events must be identical (differential oracle), and
 * nothing may crash or leak.
 */
#include "ctwist/basic.h"

#include "basic_harness.h"

typedef struct fl {
  ct_line_receiver lr;
  size_t raw_left;
  int raw_forever;
  fuzz_result *res;
} fl;

static void on_lost(ct_line_receiver *lr, const ct_failure *reason) {
  ((fl *)lr)->res->code = reason->code;
}

static void on_free(ct_line_receiver *lr) {
  ((fl *)lr)->res->freed = 1;
  free(lr);
}

static void event(fl *f, char type, const char *d, size_t n) {
  /* Raw chunk boundaries depend on the chunking: hash raw bytes as one
   * stream per raw run. */
  if (type != 'R' || f->res->last != 'R') {
    fuzz_mix(f->res, &type, 1);
    if (type != 'R')
      fuzz_mix(f->res, &n, sizeof n);
    f->res->events++;
  }
  fuzz_mix(f->res, d, n);
  f->res->last = type;
}

static void on_line(ct_line_receiver *lr, const char *line, size_t len) {
  fl *f = (fl *)lr;
  event(f, 'L', line, len);
  if (len > 4 && memcmp(line, "RAW ", 4) == 0) {
    char num[16];
    size_t k = len - 4 < sizeof num - 1 ? len - 4 : sizeof num - 1;
    memcpy(num, line + 4, k);
    num[k] = 0;
    f->raw_left = (size_t)strtoul(num, NULL, 10) % 1000;
    if (f->raw_left == 0)
      f->raw_forever = 1;
    ct_line_receiver_set_raw_mode(lr);
  } else if (len == 5 && memcmp(line, "pause", 5) == 0) {
    ct_line_receiver_pause(lr);
    f->res->paused = 1;
  } else if (len == 4 && memcmp(line, "quit", 4) == 0) {
    ct_transport_lose_connection(lr->base.transport);
  } else if (len == 5 && memcmp(line, "delim", 5) == 0) {
    ct_line_receiver_set_delimiter(lr, "\n", 1);
  }
}

static void on_raw(ct_line_receiver *lr, const char *d, size_t len) {
  fl *f = (fl *)lr;
  if (f->raw_forever) {
    event(f, 'R', d, len);
    return;
  }
  size_t take = len < f->raw_left ? len : f->raw_left;
  event(f, 'R', d, take);
  f->raw_left -= take;
  if (f->raw_left == 0)
    ct_line_receiver_set_line_mode(lr, d + take, len - take);
}

/* What an exceeded handler may see depends on the chunking (Twisted hands
 * over "the rest of the buffer"), so the handler closes, which makes the
 * delivered events chunking-independent again. */
static void on_exceeded(ct_line_receiver *lr, const char *d, size_t len) {
  (void)d;
  (void)len;
  event((fl *)lr, 'X', "", 0);
  ct_transport_lose_connection(lr->base.transport);
}

static const ct_line_receiver_ops ops_crlf = {
    CT_LINE_RECEIVER_BASE("fuzz-line", 0),
    .line_received = on_line,
    .raw_data_received = on_raw,
    .connection_lost = on_lost,
    .free = on_free,
};
static const ct_line_receiver_ops ops_small = {
    CT_LINE_RECEIVER_BASE("fuzz-line-small", 0),
    .max_length = 16,
    .line_received = on_line,
    .raw_data_received = on_raw,
    .connection_lost = on_lost,
    .free = on_free,
};
static const ct_line_receiver_ops ops_end = {
    CT_LINE_RECEIVER_BASE("fuzz-line-end", 0),
    .delimiter = "END",
    .max_length = 40,
    .line_received = on_line,
    .raw_data_received = on_raw,
    .connection_lost = on_lost,
    .free = on_free,
};
static const ct_line_receiver_ops ops_nl_cb = {
    CT_LINE_RECEIVER_BASE("fuzz-line-nl", 0),
    .delimiter = "\n",
    .max_length = 8,
    .line_received = on_line,
    .raw_data_received = on_raw,
    .line_length_exceeded = on_exceeded,
    .connection_lost = on_lost,
    .free = on_free,
};

static void attach(ct_protocol *p, fuzz_result *res) {
  ((fl *)p)->res = res;
}

/* Bounded buffer: a partial line never exceeds the limit. */
static int over_bound(ct_protocol *p, const fuzz_result *res) {
  (void)res;
  const ct_line_receiver *lr = &((fl *)p)->lr;
  return !lr->st.paused &&
         lr->st.carry.len >= lr->max_length + lr->delimiter_len;
}

static void resume(ct_protocol *p) {
  ct_line_receiver_resume(&((fl *)p)->lr);
}

static const ct_protocol_ops *const all[] = {&ops_crlf.base, &ops_small.base,
                                             &ops_end.base, &ops_nl_cb.base};
static const fuzz_target target = {all,    4,          sizeof(fl),
                                   attach, over_bound, resume};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_differential(&target, data, size);
}
