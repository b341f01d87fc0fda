/*
 * framing_mem: parse throughput of the framing receivers in memory (no
 * sockets): a pre-encoded stream of fixed-size messages is fed in 16 KiB
 * chunks through a string transport to a receiver that counts what it
 * gets, for each framing and message size.  Reports messages/s and MB/s
 * of stream, in process CPU time (the machine is shared), and, when
 * TWISTED_RESULTS names a file written by bench/ref/framing_twisted.py,
 * Twisted's rate on the same streams and the ratio.
 *
 * Usage: framing_mem [seconds-per-case (default 0.5)] [chunk bytes (16384)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "ctwist/basic.h"
#include "ctwist/log.h"
#include "ctwist/testing.h"

/* Bytes of stream built per case: 1 MiB stays in L2/L3 cache, as a chunk
 * just read from a socket does. */
#define STREAM_TARGET (1u << 20)
static size_t CHUNK = 16384;

typedef struct counts {
  unsigned long long msgs, bytes;
} counts;

static void on_line(ct_line_receiver *lr, const char *s, size_t n) {
  counts *c = lr->base.state;
  c->msgs++;
  c->bytes += n;
}
static void on_ns(ct_netstring_receiver *nr, const char *s, size_t n) {
  counts *c = nr->base.state;
  c->msgs++;
  c->bytes += n;
}
static void on_int(ct_intn_receiver *ir, const char *s, size_t n) {
  counts *c = ir->base.state;
  c->msgs++;
  c->bytes += n;
}

static const ct_line_receiver_ops line_ops = {
    CT_LINE_RECEIVER_BASE("bench-line", 0),
    .max_length = 1 << 20,
    .line_received = on_line,
};
static const ct_netstring_receiver_ops ns_ops = {
    CT_NETSTRING_RECEIVER_BASE("bench-netstring", 0),
    .max_length = 1 << 20,
    .string_received = on_ns,
};
static const ct_intn_receiver_ops int32_ops = {
    CT_INT32_RECEIVER_BASE("bench-int32", 0),
    .max_length = 1 << 20,
    .string_received = on_int,
};
static const ct_intn_receiver_ops int16_ops = {
    CT_INT16_RECEIVER_BASE("bench-int16", 0),
    .max_length = 1 << 20,
    .string_received = on_int,
};

enum { LINE, NETSTRING, INT32, INT16 };
static const char *const names[] = {"line", "netstring", "int32", "int16"};

/* The same stream as framing_twisted.py: message i is `size` bytes of
 * 'a' + i % 26 (never a delimiter byte). */
static char *build_stream(int kind, size_t size, size_t *len_out,
                          size_t *count_out) {
  size_t frame = size + (kind == LINE    ? 2
                         : kind == INT32 ? 4
                         : kind == INT16 ? 2
                                         : 12);
  size_t count = STREAM_TARGET / frame + 1;
  char *buf = malloc(count * frame + 64);
  if (buf == NULL)
    abort();
  size_t len = 0;
  for (size_t i = 0; i < count; i++) {
    char *p = buf + len;
    switch (kind) {
    case LINE:
      memset(p, 'a' + (int)(i % 26), size);
      memcpy(p + size, "\r\n", 2);
      len += size + 2;
      break;
    case NETSTRING: {
      int h = sprintf(p, "%zu:", size);
      memset(p + h, 'a' + (int)(i % 26), size);
      p[h + size] = ',';
      len += (size_t)h + size + 1;
      break;
    }
    case INT32:
      p[0] = (char)(size >> 24);
      p[1] = (char)(size >> 16);
      p[2] = (char)(size >> 8);
      p[3] = (char)size;
      memset(p + 4, 'a' + (int)(i % 26), size);
      len += size + 4;
      break;
    case INT16:
      p[0] = (char)(size >> 8);
      p[1] = (char)size;
      memset(p + 2, 'a' + (int)(i % 26), size);
      len += size + 2;
      break;
    }
  }
  *len_out = len;
  *count_out = count;
  return buf;
}

static double cpu_now(void) {
  return bench_seconds(CLOCK_PROCESS_CPUTIME_ID);
}

typedef struct rate {
  double msgs_per_s, mb_per_s;
} rate;

static rate run_case(int kind, size_t size, double min_seconds) {
  size_t len, count;
  char *stream = build_stream(kind, size, &len, &count);
  counts c = {0};
  ct_string_transport *st = ct_string_transport_new(NULL);
  const ct_protocol_ops *ops = kind == LINE        ? &line_ops.base
                               : kind == NETSTRING ? &ns_ops.base
                               : kind == INT32     ? &int32_ops.base
                                                   : &int16_ops.base;
  size_t psize = kind == LINE        ? sizeof(ct_line_receiver)
                 : kind == NETSTRING ? sizeof(ct_netstring_receiver)
                                     : sizeof(ct_intn_receiver);
  ct_protocol *p = ct_protocol_new(ops, psize);
  if (st == NULL || p == NULL)
    abort();
  p->state = &c;
  ct_string_transport_connect(st, p);
  unsigned long long passes = 0, stream_bytes = 0;
  double t0 = cpu_now(), t1;
  do {
    for (size_t off = 0; off < len; off += CHUNK) {
      size_t n = len - off < CHUNK ? len - off : CHUNK;
      ct_string_transport_feed(st, stream + off, n);
    }
    passes++;
    stream_bytes += len;
    t1 = cpu_now();
  } while (t1 - t0 < min_seconds);
  if (c.msgs != passes * count || c.bytes != passes * count * size) {
    fprintf(stderr, "%s/%zu: got %llu messages, expected %llu\n", names[kind],
            size, c.msgs, passes * count);
    exit(1);
  }
  ct_string_transport_free(st);
  free(stream);
  rate r = {(double)c.msgs / (t1 - t0), (double)stream_bytes / (t1 - t0) / 1e6};
  return r;
}

/* Twisted's numbers: lines "framing size msgs_per_s mb_per_s". */
static int twisted_rate(const char *file, const char *name, size_t size,
                        rate *out) {
  if (file == NULL)
    return 0;
  FILE *f = fopen(file, "r");
  if (f == NULL)
    return 0;
  char n[32];
  size_t s;
  double m, b;
  int found = 0;
  while (fscanf(f, "%31s %zu %lf %lf", n, &s, &m, &b) == 4) {
    if (strcmp(n, name) == 0 && s == size) {
      out->msgs_per_s = m;
      out->mb_per_s = b;
      found = 1;
    }
  }
  fclose(f);
  return found;
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 0.5;
  if (secs <= 0)
    secs = 0.5;
  if (argc > 2 && atol(argv[2]) > 0)
    CHUNK = (size_t)atol(argv[2]);
  ct_log_set_default_level(CT_LOG_WARN);
  const char *tw = getenv("TWISTED_RESULTS");
  static const size_t sizes[] = {32, 1024, 16384};
  printf("framing in memory: %zu-byte chunks, process CPU time, >= %.2f s "
         "per case\n\n",
         CHUNK, secs);
  printf("| framing | message | ctwist msg/s | ctwist MB/s | Twisted msg/s "
         "| Twisted MB/s | ratio |\n|---|---|---|---|---|---|---|\n");
  for (int kind = 0; kind < 4; kind++) {
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      rate r = run_case(kind, sizes[i], secs), t;
      printf("| %s | %zu B | %.3g M | %.0f |", names[kind], sizes[i],
             r.msgs_per_s / 1e6, r.mb_per_s);
      if (twisted_rate(tw, names[kind], sizes[i], &t))
        printf(" %.3g M | %.0f | ×%.0f |\n", t.msgs_per_s / 1e6, t.mb_per_s,
               r.msgs_per_s / t.msgs_per_s);
      else
        printf(" - | - | - |\n");
      fflush(stdout);
    }
  }
  return 0;
}
