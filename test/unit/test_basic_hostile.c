/* Hostile peers of the framing receivers, on a string transport and a fake
 * clock: replies to the frames before bad bytes are flushed before the
 * close, a peer that does not read is aborted, and the frame-completion
 * deadline drops a trickling peer and spares a steady one. */
#include <criterion/criterion.h>
#include <string.h>

#include "ctwist/basic.h"
#include "ctwist/testing.h"

static void echo_line(ct_line_receiver *lr, const char *line, size_t len) {
  ct_line_receiver_send_line(lr, line, len);
}
static const ct_line_receiver_ops line_ops = {
    CT_LINE_RECEIVER_BASE("line-echo", CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER),
    .delimiter = "\n",
    .max_length = 16,
    .line_received = echo_line,
};

static void echo_ns(ct_netstring_receiver *nr, const char *s, size_t len) {
  ct_netstring_receiver_send_string(nr, s, len);
}
static const ct_netstring_receiver_ops ns_ops = {
    CT_NETSTRING_RECEIVER_BASE("ns-echo", 0),
    .string_received = echo_ns,
};

static void echo_int(ct_intn_receiver *ir, const char *s, size_t len) {
  ct_intn_receiver_send_string(ir, s, len);
}
static const ct_intn_receiver_ops int_ops = {
    CT_INT16_RECEIVER_BASE("int16-echo", 0),
    .string_received = echo_int,
};
static const ct_intn_receiver_ops int_fixed_ops = {
    CT_INT16_RECEIVER_BASE("int16-echo", 0),
    .string_received = echo_int,
    .frame_deadline = {.timeout = 4, .min_rate = -1},
};

typedef struct fx {
  ct_clock *clk;
  ct_reactor *r;
  ct_string_transport *st;
} fx;

static void fx_init(fx *f, const ct_protocol_ops *ops, size_t size) {
  f->clk = ct_clock_new();
  f->r = ct_reactor_new_with_clock(f->clk);
  f->st = ct_string_transport_new(f->r);
  ct_protocol *p = ct_protocol_new(ops, size);
  cr_assert_not_null(p);
  cr_assert_eq(ct_string_transport_connect(f->st, p), 0);
}

static void fx_free(fx *f) {
  ct_string_transport_free(f->st);
  ct_reactor_free(f->r);
  ct_clock_free(f->clk);
}

static ct_string_transport_stats stats_of(const fx *f) {
  ct_string_transport_stats s;
  ct_string_transport_stats_get(f->st, &s);
  return s;
}

Test(basic_hostile, reply_before_bad_bytes_is_flushed_then_closed) {
  fx f;
  fx_init(&f, &line_ops.base, sizeof(ct_line_receiver));
  const char in[] = "hello\nthis line is far too long for the limit\n";
  cr_assert_eq(ct_string_transport_feed(f.st, in, sizeof in - 1), 0);
  size_t len;
  const char *out = ct_string_transport_value(f.st, &len);
  cr_assert_eq(len, 6);
  cr_assert_eq(memcmp(out, "hello\n", 6), 0);
  cr_assert_eq(stats_of(&f).lose_connection_calls, 1);
  cr_assert_eq(stats_of(&f).abort_calls, 0);
  /* A close that never completes (the peer does not read) is bounded. */
  ct_clock_advance(f.clk, CT_ERROR_CLOSE_TIMEOUT + 0.5);
  cr_assert_eq(stats_of(&f).abort_calls, 1);
  fx_free(&f);
}

Test(basic_hostile, peer_not_reading_is_aborted) {
  fx f;
  fx_init(&f, &ns_ops.base, sizeof(ct_netstring_receiver));
  ct_string_transport_set_backpressure(f.st, 1);
  ct_transport_set_watermarks(ct_string_transport_transport(f.st), 8, 2);
  cr_assert_eq(ct_string_transport_feed_str(f.st, "10:0123456789,x"), 0);
  cr_assert_eq(stats_of(&f).abort_calls, 1);
  fx_free(&f);
}

/* Feed `in` one byte every `every` seconds; the time the receiver started
 * closing, or -1 if it did not within the input. */
static double trickle(fx *f, const char *in, size_t n, double every) {
  for (size_t i = 0; i < n; i++) {
    if (stats_of(f).disconnecting)
      return ct_clock_seconds(f->clk);
    cr_assert_eq(ct_string_transport_feed(f->st, in + i, 1), 0);
    ct_clock_advance(f->clk, every);
  }
  return stats_of(f).disconnecting ? ct_clock_seconds(f->clk) : -1;
}

Test(basic_hostile, trickling_line_is_dropped_at_the_deadline) {
  fx f;
  fx_init(&f, &line_ops.base, sizeof(ct_line_receiver));
  cr_assert_eq(trickle(&f, "abcdefghijklmn", 14, 3.0), 21.0);
  const ct_failure *why = NULL;
  ct_protocol *p = ct_string_transport_transport(f.st)->protocol;
  why = ct_line_receiver_failure((ct_line_receiver *)p);
  cr_assert_not_null(why);
  cr_assert_eq(why->code, CT_ETIMEDOUT);
  cr_assert(strstr(why->message, "not completed within") != NULL, "%s",
            why->message);
  fx_free(&f);
}

Test(basic_hostile, trickling_netstring_and_int16_are_dropped) {
  fx f;
  fx_init(&f, &ns_ops.base, sizeof(ct_netstring_receiver));
  cr_assert_eq(trickle(&f, "20:abcdefghijklmnop", 19, 3.0), 21.0);
  fx_free(&f);
  fx_init(&f, &int_ops.base, sizeof(ct_intn_receiver));
  cr_assert_eq(trickle(&f, "\0\x20abcdefghijklmnop", 18, 3.0), 21.0);
  fx_free(&f);
  /* The ops' own deadline: 4 s, no rate extension. */
  fx_init(&f, &int_fixed_ops.base, sizeof(ct_intn_receiver));
  cr_assert_eq(trickle(&f, "\0\x20abcdefghijklmnop", 18, 1.0), 4.0);
  fx_free(&f);
}

Test(basic_hostile, steady_peer_is_not_dropped) {
  fx f;
  fx_init(&f, &int_ops.base, sizeof(ct_intn_receiver));
  ct_intn_receiver_set_max_length(
      (ct_intn_receiver *)ct_string_transport_transport(f.st)->protocol, 60000);
  /* A 50,000-byte string at 1,000 bytes/s: 50 s for one frame. */
  static char msg[2 + 50000];
  msg[0] = (char)(50000 >> 8);
  msg[1] = (char)(50000 & 0xff);
  memset(msg + 2, 's', 50000);
  for (size_t off = 0; off < sizeof msg; off += 1000) {
    size_t c = sizeof msg - off < 1000 ? sizeof msg - off : 1000;
    cr_assert_eq(ct_string_transport_feed(f.st, msg + off, c), 0);
    ct_clock_advance(f.clk, 1.0);
  }
  size_t len;
  ct_string_transport_value(f.st, &len);
  cr_assert_eq(len, sizeof msg, "echoed");
  ct_clock_advance(f.clk, 3600);
  cr_assert_eq(stats_of(&f).disconnecting, 0);
  fx_free(&f);
}
