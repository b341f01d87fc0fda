/*
 * The int8/16/32-prefixed string receivers: framing across any chunking,
 * 1,000 strings in one chunk, random split points, the length limit (with
 * the failure message and the length_limit_exceeded notification), the
 * prefix range on send, close and pause from callbacks.
 */
#include "test_basic_common.h"

#define REC(ir) ((rec *)(ir)->base.state)

static void on_string(ct_intn_receiver *ir, const char *s, size_t len) {
  rec_add(REC(ir), 'S', s, len);
  if (len == 4 && memcmp(s, "quit", 4) == 0)
    ct_transport_lose_connection(ir->base.transport);
  else if (len == 5 && memcmp(s, "pause", 5) == 0)
    ct_intn_receiver_pause(ir);
}

static void on_limit(ct_intn_receiver *ir, uint64_t length) {
  REC(ir)->limit_len = length;
}

static void on_lost(ct_intn_receiver *ir, const ct_failure *reason) {
  rec_lost(REC(ir), reason);
}

#define OPS(name, macro, max)                                                  \
  static const ct_intn_receiver_ops name = {                                   \
      macro(#name, 0),                                                         \
      .max_length = (max),                                                     \
      .string_received = on_string,                                            \
      .length_limit_exceeded = on_limit,                                       \
      .connection_lost = on_lost,                                              \
  }
OPS(int8_ops, CT_INT8_RECEIVER_BASE, 0);
OPS(int16_ops, CT_INT16_RECEIVER_BASE, 0);
OPS(int32_ops, CT_INT32_RECEIVER_BASE, 0);
OPS(int32_small_ops, CT_INT32_RECEIVER_BASE, 10);
OPS(int16_big_ops, CT_INT16_RECEIVER_BASE, 70000);

static const ct_intn_receiver_ops *all_ops[] = {&int8_ops, &int16_ops,
                                                &int32_ops};

static void put_prefix(bytes *b, unsigned pb, size_t len) {
  unsigned char h[4];
  for (unsigned i = 0; i < pb; i++)
    h[i] = (unsigned char)(len >> (8 * (pb - 1 - i)));
  bytes_add(b, h, pb);
}

static void make_stream(bytes *b, rec *expect, unsigned pb, int count,
                        uint64_t seed, size_t maxlen) {
  uint64_t s = seed | 1;
  char *msg = malloc(maxlen + 1);
  cr_assert_not_null(msg);
  for (int i = 0; i < count; i++) {
    size_t len = (size_t)(rnd(&s) % (maxlen + 1));
    if (i % 11 == 0)
      len = 0;
    if (i % 31 == 0)
      len = maxlen;
    for (size_t k = 0; k < len; k++)
      msg[k] = (char)rnd(&s);
    put_prefix(b, pb, len);
    bytes_add(b, msg, len);
    rec_add(expect, 'S', msg, len);
  }
  free(msg);
}

/* The receiver under test built from int-prefix receiver ops. */
#define RX(ops) ((receiver){&(ops)->base, sizeof(ct_intn_receiver)})

static size_t maxlen_for(unsigned pb) {
  return pb == 1 ? 255 : 3000;
}

Test(basic_intn, one_byte_at_a_time) {
  for (int k = 0; k < 3; k++) {
    unsigned pb = all_ops[k]->prefix_bytes;
    bytes b = {0};
    rec expect = {0};
    make_stream(&b, &expect, pb, 200, 5 + k, maxlen_for(pb));
    check_run(RX(all_ops[k]), b.d, b.len, 1, 0, &expect, SIZE_MAX);
    rec_clear(&expect);
    bytes_free(&b);
  }
}

Test(basic_intn, thousand_in_one_chunk) {
  for (int k = 0; k < 3; k++) {
    unsigned pb = all_ops[k]->prefix_bytes;
    bytes b = {0};
    rec expect = {0};
    make_stream(&b, &expect, pb, 1000, 17 + k, pb == 1 ? 255 : 500);
    check_run(RX(all_ops[k]), b.d, b.len, 0, 0, &expect, 1000);
    rec_clear(&expect);
    bytes_free(&b);
  }
}

Test(basic_intn, random_splits_property) {
  for (int k = 0; k < 3; k++) {
    unsigned pb = all_ops[k]->prefix_bytes;
    bytes b = {0};
    rec expect = {0};
    make_stream(&b, &expect, pb, 300, 41 + k, maxlen_for(pb));
    check_random_splits(RX(all_ops[k]), &b, 40, 53, 4000, &expect);
    rec_clear(&expect);
    bytes_free(&b);
  }
}

Test(basic_intn, int8_full_range_default_limit) {
  /* 255 is below the default 99999 limit: every int8 length is valid. */
  bytes b = {0};
  rec expect = {0};
  make_stream(&b, &expect, 1, 50, 3, 255);
  check_run(RX(&int8_ops), b.d, b.len, 7, 1, &expect, SIZE_MAX);
  rec_clear(&expect);
  bytes_free(&b);
}

static void check_over(const ct_intn_receiver_ops *ops, const char *s, size_t n,
                       size_t good, uint64_t announced, const char *msg) {
  for (size_t step = 0; step < 3; step++) {
    rec r = {0};
    ct_string_transport *st =
        connect_rec(&ops->base, sizeof(ct_intn_receiver), &r, NULL);
    feed_split(st, s, n, step, 9);
    cr_assert_eq(r.n, good);
    cr_assert_eq(r.limit_len, announced);
    ct_string_transport_stats stats;
    ct_string_transport_stats_get(st, &stats);
    cr_assert_eq(stats.lose_connection_calls, 1);
    ct_string_transport_step(st);
    cr_assert_eq(r.lost_code, CT_ETOOBIG);
    cr_assert(strstr(r.lost_msg, msg) != NULL, "message '%s'", r.lost_msg);
    ct_string_transport_free(st);
    rec_clear(&r);
  }
}

Test(basic_intn, over_the_limit) {
  check_over(&int32_small_ops, "\0\0\0\2hi\0\0\0\x0b", 10, 1, 11,
             "int32 string length 11 is over the limit of 10 bytes");
  check_over(&int32_ops, "\xff\xff\xff\xff", 4, 0, 0xffffffffu,
             "int32 string length 4294967295 is over the limit of 99999");
  check_over(&int32_ops, "\0\x01\x86\xa0", 4, 0, 100000,
             "length 100000 is over the limit of 99999 bytes");
}

Test(basic_intn, max_length_exactly_and_large_int16) {
  bytes b = {0};
  rec expect = {0};
  char ten[10] = "0123456789";
  put_prefix(&b, 4, 10);
  bytes_add(&b, ten, 10);
  rec_add(&expect, 'S', ten, 10);
  check_run(RX(&int32_small_ops), b.d, b.len, 3, 1, &expect, SIZE_MAX);
  rec_clear(&expect);
  bytes_free(&b);
  /* int16 with a limit above its range: 65535 bytes arrive whole. */
  make_stream(&b, &expect, 2, 5, 77, 65535);
  check_run(RX(&int16_big_ops), b.d, b.len, 9000, 5, &expect, SIZE_MAX);
  rec_clear(&expect);
  bytes_free(&b);
}

Test(basic_intn, send_string_and_prefix_range) {
  rec r = {0};
  static char big[70000];
  for (int k = 0; k < 3; k++) {
    ct_protocol *p;
    ct_string_transport *st =
        connect_rec(&all_ops[k]->base, sizeof(ct_intn_receiver), &r, &p);
    ct_intn_receiver *ir = (ct_intn_receiver *)p;
    unsigned pb = all_ops[k]->prefix_bytes;
    cr_assert_eq(ct_intn_receiver_send_string(ir, "abc", 3), 0);
    size_t len;
    const char *v = ct_string_transport_value(st, &len);
    cr_assert_eq(len, pb + 3);
    cr_assert_eq((unsigned char)v[pb - 1], 3);
    cr_assert(memcmp(v + pb, "abc", 3) == 0);
    ct_string_transport_clear(st);
    size_t fit = pb == 1 ? 255 : 65535;
    cr_assert_eq(ct_intn_receiver_send_string(ir, big, fit), 0);
    int rc = ct_intn_receiver_send_string(ir, big, fit + 1);
    if (pb == 4)
      cr_assert_eq(rc, 0);
    else
      cr_assert_eq(rc, CT_EMSGSIZE);
    ct_string_transport_free(st);
  }
  rec_clear(&r);
}

Test(basic_intn, close_and_pause_in_callback) {
  rec r = {0};
  ct_protocol *p;
  ct_string_transport *st =
      connect_rec(&int16_ops.base, sizeof(ct_intn_receiver), &r, &p);
  bytes b = {0};
  const char *msgs[] = {"a", "pause", "b", "quit", "c"};
  for (int i = 0; i < 5; i++) {
    put_prefix(&b, 2, strlen(msgs[i]));
    bytes_add(&b, msgs[i], strlen(msgs[i]));
  }
  ct_string_transport_feed(st, b.d, b.len);
  cr_assert_eq(r.n, 2);
  ct_intn_receiver_resume((ct_intn_receiver *)p);
  cr_assert_eq(r.n, 4);
  cr_assert_str_eq(r.evs[3].data, "quit");
  ct_string_transport_step(st);
  cr_assert_eq(r.lost_code, CT_ECONNDONE);
  ct_string_transport_free(st);
  bytes_free(&b);
  rec_clear(&r);
}

Test(basic_intn, embedded_init) {
  ct_intn_receiver ir;
  ct_intn_receiver_init(&ir, &int32_small_ops);
  cr_assert_eq(ir.max_length, 10);
  cr_assert_eq(ct_intn_receiver_send_string(&ir, "x", 1), CT_ECLOSED);
  cr_assert_eq(ct_intn_receiver_set_max_length(&ir, 0), 0);
  cr_assert_eq(ir.max_length, CT_INTN_MAX_LENGTH_DEFAULT);
}

static void on_string_ptr(ct_intn_receiver *ir, const char *s, size_t len) {
  rec_ptr(REC(ir), s);
  rec_add(REC(ir), 'S', s, len);
}

static const ct_intn_receiver_ops ptr_ops = {
    CT_INT16_RECEIVER_BASE("test-int16-ptr", 0),
    .string_received = on_string_ptr,
};

/* Frames complete inside a chunk are delivered in place; only the frame
 * straddling two chunks comes from the receiver's buffer. */
Test(basic_intn, zero_copy_in_chunk) {
  rec r = {0};
  ct_string_transport *st =
      connect_rec(&ptr_ops.base, sizeof(ct_intn_receiver), &r, NULL);
  const char chunk1[] = "\0\3abc\0\2de\0\4fg";
  const char chunk2[] = "hi\0\1j";
  ct_string_transport_feed(st, chunk1, sizeof chunk1 - 1);
  ct_string_transport_feed(st, chunk2, sizeof chunk2 - 1);
  cr_assert_eq(r.n, 4);
  cr_assert_eq(r.ptrs[0], chunk1 + 2);
  cr_assert_eq(r.ptrs[1], chunk1 + 7);
  cr_assert(r.ptrs[2] < chunk1 || r.ptrs[2] >= chunk1 + sizeof chunk1,
            "straddling frame is buffered");
  cr_assert_str_eq(r.evs[2].data, "fghi");
  cr_assert_eq(r.ptrs[3], chunk2 + 4);
  ct_string_transport_free(st);
  rec_clear(&r);
}
