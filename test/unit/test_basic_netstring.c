/*
 * The netstring receiver: framing across any chunking, 1,000 netstrings in
 * one chunk, random split points, every malformed input (with the failure
 * message), limits, close and pause from callbacks, sending.
 */
#include <stdio.h>

#include "test_basic_common.h"

#define REC(nr) ((rec *)(nr)->base.state)

static void on_string(ct_netstring_receiver *nr, const char *s, size_t len) {
  rec_add(REC(nr), 'S', s, len);
  if (len == 4 && memcmp(s, "quit", 4) == 0)
    ct_transport_lose_connection(nr->base.transport);
  else if (len == 5 && memcmp(s, "pause", 5) == 0)
    ct_netstring_receiver_pause(nr);
}

static void on_lost(ct_netstring_receiver *nr, const ct_failure *reason) {
  rec_lost(REC(nr), reason);
}

static const ct_netstring_receiver_ops ns_ops = {
    CT_NETSTRING_RECEIVER_BASE("test-netstring", 0),
    .string_received = on_string,
    .connection_lost = on_lost,
};

static const ct_netstring_receiver_ops small_ops = {
    CT_NETSTRING_RECEIVER_BASE("test-netstring-small", 0),
    .max_length = 5,
    .string_received = on_string,
    .connection_lost = on_lost,
};

static void make_stream(bytes *b, rec *expect, int count, uint64_t seed,
                        size_t maxlen) {
  uint64_t s = seed | 1;
  char *msg = malloc(maxlen + 1);
  cr_assert_not_null(msg);
  for (int i = 0; i < count; i++) {
    size_t len = (size_t)(rnd(&s) % (maxlen + 1));
    if (i % 13 == 0)
      len = 0;
    if (i % 29 == 0)
      len = maxlen;
    for (size_t k = 0; k < len; k++)
      msg[k] = (char)rnd(&s); /* any byte, ',' and ':' included */
    char head[32];
    int hl = snprintf(head, sizeof head, "%zu:", len);
    bytes_add(b, head, (size_t)hl);
    bytes_add(b, msg, len);
    bytes_add(b, ",", 1);
    rec_add(expect, 'S', msg, len);
  }
  free(msg);
}

/* The receiver under test built from netstring receiver ops. */
#define RX(ops) ((receiver){&(ops)->base, sizeof(ct_netstring_receiver)})

Test(basic_netstring, simple) {
  rec r = {0};
  ct_string_transport *st =
      connect_rec(&ns_ops.base, sizeof(ct_netstring_receiver), &r, NULL);
  ct_string_transport_feed_str(st, "5:hello,0:,3:a,b,1");
  cr_assert_eq(r.n, 3);
  cr_assert_str_eq(r.evs[0].data, "hello");
  cr_assert_eq(r.evs[1].len, 0);
  cr_assert_str_eq(r.evs[2].data, "a,b");
  ct_string_transport_feed_str(st, "2:0123456789ab,");
  cr_assert_eq(r.n, 4);
  cr_assert_str_eq(r.evs[3].data, "0123456789ab");
  ct_string_transport_free(st);
  rec_clear(&r);
}

Test(basic_netstring, one_byte_at_a_time) {
  bytes b = {0};
  rec expect = {0};
  make_stream(&b, &expect, 300, 5, 200);
  check_run(RX(&ns_ops), b.d, b.len, 1, 0, &expect, SIZE_MAX);
  rec_clear(&expect);
  bytes_free(&b);
}

Test(basic_netstring, thousand_in_one_chunk) {
  bytes b = {0};
  rec expect = {0};
  make_stream(&b, &expect, 1000, 9, 300);
  check_run(RX(&ns_ops), b.d, b.len, 0, 0, &expect, 1000);
  rec_clear(&expect);
  bytes_free(&b);
}

Test(basic_netstring, random_splits_property) {
  bytes b = {0};
  rec expect = {0};
  make_stream(&b, &expect, 400, 21, 2000);
  check_random_splits(RX(&ns_ops), &b, 60, 37, 3000, &expect);
  rec_clear(&expect);
  bytes_free(&b);
}

Test(basic_netstring, max_length_exactly) {
  rec r = {0};
  run_receiver(RX(&small_ops), "5:12345,0:,", 11, 1, 0, &r);
  cr_assert_eq(r.n, 2);
  cr_assert_str_eq(r.evs[0].data, "12345");
  cr_assert_eq(r.lost_code, CT_ECONNABORTED);
  rec_clear(&r);
}

/* Each malformed input, whole and byte by byte: the strings before it are
 * delivered, none after, and connection_lost gets the failure. */
static void check_bad(const ct_netstring_receiver_ops *ops, const char *s,
                      size_t good, int code, const char *msg) {
  for (size_t step = 0; step < 3; step++) {
    rec r = {0};
    ct_string_transport *st =
        connect_rec(&ops->base, sizeof(ct_netstring_receiver), &r, NULL);
    feed_split(st, s, strlen(s), step, 3);
    cr_assert_eq(r.n, good, "%s: %zu strings before the error", s, r.n);
    ct_string_transport_stats stats;
    ct_string_transport_stats_get(st, &stats);
    cr_assert_eq(stats.lose_connection_calls, 1, "%s", s);
    ct_string_transport_step(st);
    cr_assert_eq(r.lost, 1, "%s: lost %d times", s, r.lost);
    cr_assert_eq(r.lost_code, code, "%s: code %d", s, r.lost_code);
    cr_assert(strstr(r.lost_msg, msg) != NULL, "%s: message '%s'", s,
              r.lost_msg);
    ct_string_transport_free(st);
    rec_clear(&r);
  }
}

static const struct bad_case {
  const ct_netstring_receiver_ops *ops;
  const char *input;
  size_t good;
  int code;
  const char *msg;
} bad_cases[] = {
    {&ns_ops, "1:a,x:", 1, CT_EPARSE, "does not start with a length"},
    {&ns_ops, ":a,", 0, CT_EPARSE, "does not start with a length"},
    {&ns_ops, "-1:a,", 0, CT_EPARSE, "does not start with a length"},
    {&ns_ops, " 1:a,", 0, CT_EPARSE, "does not start with a length"},
    {&ns_ops, "01:a,", 0, CT_EPARSE, "leading zero"},
    {&ns_ops, "00:,", 0, CT_EPARSE, "leading zero"},
    {&ns_ops, "1:a,007:abcdefg,", 1, CT_EPARSE, "leading zero"},
    {&ns_ops, "3x:abc,", 0, CT_EPARSE, "not followed by ':'"},
    {&ns_ops, "3;abc,", 0, CT_EPARSE, "not followed by ':'"},
    {&ns_ops, "3:abc;", 0, CT_EPARSE, "not terminated by a comma"},
    {&ns_ops, "2:abc,", 0, CT_EPARSE, "not terminated by a comma"},
    {&ns_ops, "1:a,3:abcd", 1, CT_EPARSE, "not terminated by a comma"},
    {&ns_ops, "100000:", 0, CT_ETOOBIG, "limit of 99999 bytes"},
    {&ns_ops, "99999999999999999999999999999999:", 0, CT_ETOOBIG,
     "limit of 99999 bytes"},
    {&small_ops, "6:", 0, CT_ETOOBIG,
     "netstring length 6 is over "
     "the limit of 5 bytes"},
    {&small_ops, "5:abcde,10", 1, CT_ETOOBIG, "limit of 5 bytes"},
};

/* check_bad names the failing case by its input. */
Test(basic_netstring, malformed_inputs) {
  for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
    const struct bad_case *c = &bad_cases[i];
    check_bad(c->ops, c->input, c->good, c->code, c->msg);
  }
}

/* A length over the limit is refused from its digits, before any payload
 * arrives, so nothing over the limit is ever buffered. */
Test(basic_netstring, limit_checked_before_payload) {
  rec r = {0};
  ct_protocol *p;
  ct_string_transport *st =
      connect_rec(&ns_ops.base, sizeof(ct_netstring_receiver), &r, &p);
  ct_string_transport_feed_str(st, "12345");
  cr_assert_null(ct_netstring_receiver_failure((ct_netstring_receiver *)p));
  ct_string_transport_feed_str(st, "6");
  cr_assert_not_null(ct_netstring_receiver_failure((ct_netstring_receiver *)p));
  ct_string_transport_free(st);
  rec_clear(&r);
}

Test(basic_netstring, close_and_pause_in_callback) {
  rec r = {0};
  ct_protocol *p;
  ct_string_transport *st =
      connect_rec(&ns_ops.base, sizeof(ct_netstring_receiver), &r, &p);
  ct_string_transport_feed_str(st, "1:a,5:pause,1:b,1:c,1:");
  cr_assert_eq(r.n, 2);
  ct_netstring_receiver_resume((ct_netstring_receiver *)p);
  cr_assert_eq(r.n, 4);
  ct_string_transport_feed_str(st, "d,4:quit,1:e,");
  cr_assert_eq(r.n, 6);
  cr_assert_str_eq(r.evs[5].data, "quit");
  ct_string_transport_step(st);
  cr_assert_eq(r.lost_code, CT_ECONNDONE);
  ct_string_transport_free(st);
  rec_clear(&r);
}

Test(basic_netstring, send_string) {
  rec r = {0};
  ct_protocol *p;
  ct_string_transport *st =
      connect_rec(&ns_ops.base, sizeof(ct_netstring_receiver), &r, &p);
  ct_netstring_receiver *nr = (ct_netstring_receiver *)p;
  cr_assert_eq(ct_netstring_receiver_send_string(nr, "hello", 5), 0);
  cr_assert_eq(ct_netstring_receiver_send_string(nr, "", 0), 0);
  cr_assert_eq(ct_netstring_receiver_send_string(nr, NULL, 1), CT_EINVAL);
  cr_assert_str_eq(ct_string_transport_value(st, NULL), "5:hello,0:,");
  cr_assert_eq(ct_netstring_receiver_set_max_length(nr, (size_t)2 << 30),
               CT_EINVAL);
  cr_assert_eq(ct_netstring_receiver_set_max_length(nr, 3), 0);
  ct_string_transport_feed_str(st, "3:abc,4:");
  cr_assert_eq(r.n, 1);
  cr_assert_not_null(ct_netstring_receiver_failure(nr));
  ct_string_transport_free(st);
  rec_clear(&r);
}
