/*
 * libFuzzer target for the line receiver.  The first two bytes choose the
 * configuration (delimiter, limit, exceeded handling) and a chunking seed;
 * the rest is the stream.  A line "RAW n" switches to raw mode for n bytes
 * and back (mid-chunk), a line "pause" pauses the receiver (the harness
 * resumes it).  The stream is fed whole, in random chunks and byte by
 * byte: the delivered events must be identical (differential oracle), and
 * nothing may crash or leak.
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
  char last;
} result;

typedef struct fl {
  ct_line_receiver lr;
  size_t raw_left;
  int raw_forever;
  result *res;
} fl;

static void mix(fl *f, const void *d, size_t n) {
  const unsigned char *u = d;
  for (size_t i = 0; i < n; i++)
    f->res->h = (f->res->h ^ u[i]) * 1099511628211ULL;
}

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
    mix(f, &type, 1);
    if (type != 'R')
      mix(f, &n, sizeof n);
    f->res->events++;
  }
  mix(f, d, n);
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

static result run(const ct_line_receiver_ops *ops, const uint8_t *d, size_t n,
                  size_t mode, uint32_t seed) {
  result res = {0};
  ct_string_transport *st = ct_string_transport_new(NULL);
  fl *f = (fl *)ct_protocol_new(&ops->base, sizeof(fl));
  if (st == NULL || f == NULL)
    abort();
  f->res = &res;
  res.h = 1469598103934665603ULL;
  ct_string_transport_connect(st, &f->lr.base);
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
    /* Bounded buffer: a partial line never exceeds the limit. */
    if (!res.freed && !f->lr.st.paused &&
        f->lr.st.len - f->lr.st.off >= f->lr.max_length + f->lr.delimiter_len)
      abort();
    /* Resume a paused receiver, as an application would. */
    while (res.paused && !res.freed) {
      res.paused = 0;
      ct_line_receiver_resume(&f->lr);
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
  static const ct_line_receiver_ops *const all[] = {&ops_crlf, &ops_small,
                                                    &ops_end, &ops_nl_cb};
  const ct_line_receiver_ops *ops = all[data[0] % 4];
  uint32_t seed = data[1];
  result a = run(ops, data + 2, size - 2, 0, seed);
  result b = run(ops, data + 2, size - 2, 2, seed);
  if (a.h != b.h || a.events != b.events || a.code != b.code)
    abort();
  if (size < 4096) {
    result c = run(ops, data + 2, size - 2, 1, seed);
    if (a.h != c.h || a.events != c.events || a.code != c.code)
      abort();
  }
  return 0;
}
