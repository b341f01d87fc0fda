/*
 * The line receiver (Twisted's LineReceiver): lines across any chunking,
 * 1,000 lines in one chunk, random split points, raw/line mode switching in
 * the middle of a chunk, limits, close and pause from callbacks, sending.
 */
#include "test_basic_common.h"

typedef struct tline {
  ct_line_receiver lr;
  size_t raw_left; /* bytes of raw data still expected */
} tline;

#define REC(lr) ((rec *)(lr)->base.state)

static void on_line(ct_line_receiver *lr, const char *line, size_t len) {
  tline *t = (tline *)lr;
  rec_add(REC(lr), 'L', line, len);
  if (len == 4 && memcmp(line, "quit", 4) == 0)
    ct_transport_lose_connection(lr->base.transport);
  else if (len == 5 && memcmp(line, "pause", 5) == 0)
    ct_line_receiver_pause(lr);
  else if (len > 4 && memcmp(line, "RAW ", 4) == 0) {
    t->raw_left = (size_t)strtoul(line + 4, NULL, 10);
    if (t->raw_left > 0)
      ct_line_receiver_set_raw_mode(lr);
  } else if (len == 7 && memcmp(line, "rawonly", 7) == 0)
    ct_line_receiver_set_raw_mode(lr);
}

/* Take the announced number of raw bytes, then hand the rest back to line
 * mode (the HTTP body pattern). */
static void on_raw(ct_line_receiver *lr, const char *d, size_t len) {
  tline *t = (tline *)lr;
  cr_assert_gt(len, 0);
  if (t->raw_left == 0) { /* "rawonly": stay raw */
    rec_add(REC(lr), 'R', d, len);
    return;
  }
  size_t take = len < t->raw_left ? len : t->raw_left;
  rec_add(REC(lr), 'R', d, take);
  t->raw_left -= take;
  if (t->raw_left == 0)
    ct_line_receiver_set_line_mode(lr, d + take, len - take);
}

static void on_lost(ct_line_receiver *lr, const ct_failure *reason) {
  rec_lost(REC(lr), reason);
}

static void on_exceeded(ct_line_receiver *lr, const char *d, size_t len) {
  rec_add(REC(lr), 'X', d, len);
}

static const ct_line_receiver_ops crlf_ops = {
    CT_LINE_RECEIVER_BASE("test-line", 0),
    .line_received = on_line,
    .raw_data_received = on_raw,
    .connection_lost = on_lost,
};

static const ct_line_receiver_ops small_ops = {
    CT_LINE_RECEIVER_BASE("test-line-small", 0),
    .max_length = 10,
    .line_received = on_line,
    .connection_lost = on_lost,
};

static const ct_line_receiver_ops small_cb_ops = {
    CT_LINE_RECEIVER_BASE("test-line-small-cb", 0),
    .max_length = 10,
    .line_received = on_line,
    .line_length_exceeded = on_exceeded,
    .connection_lost = on_lost,
};

static const ct_line_receiver_ops end_ops = {
    CT_LINE_RECEIVER_BASE("test-line-end", 0),
    .delimiter = "END",
    .line_received = on_line,
    .raw_data_received = on_raw,
    .connection_lost = on_lost,
};

static const ct_line_receiver_ops nl_ops = {
    CT_LINE_RECEIVER_BASE("test-line-nl", 0),
    .delimiter = "\n",
    .line_received = on_line,
    .connection_lost = on_lost,
};

/* The receiver under test built from line receiver ops. */
#define RX(ops) ((receiver){&(ops)->base, sizeof(tline)})

Test(basic_line, simple_and_partial) {
  rec r = {0};
  ct_protocol *p;
  ct_string_transport *st = connect_rec(&crlf_ops.base, sizeof(tline), &r, &p);
  ct_string_transport_feed_str(st, "hello\r\nworld\r\npart");
  cr_assert_eq(r.n, 2);
  cr_assert_str_eq(r.evs[0].data, "hello");
  cr_assert_str_eq(r.evs[1].data, "world");
  ct_string_transport_feed_str(st, "ial\r");
  cr_assert_eq(r.n, 2);
  ct_string_transport_feed_str(st, "\n\r\n");
  cr_assert_eq(r.n, 4);
  cr_assert_str_eq(r.evs[2].data, "partial");
  cr_assert_eq(r.evs[3].len, 0, "empty line");
  ct_string_transport_free(st);
  cr_assert_eq(r.lost, 1);
  cr_assert_eq(r.lost_code, CT_ECONNABORTED);
  rec_clear(&r);
}

static void make_lines(bytes *b, rec *expect, int count, uint64_t seed,
                       size_t maxlen) {
  uint64_t s = seed | 1;
  char line[2048];
  for (int i = 0; i < count; i++) {
    size_t len = (size_t)(rnd(&s) % (maxlen + 1));
    if (i % 17 == 0)
      len = 0;
    for (size_t k = 0; k < len; k++) {
      char c = (char)('a' + rnd(&s) % 26);
      line[k] = c;
    }
    /* Stray CR and LF alone are data for a CRLF receiver. */
    if (len > 3 && i % 5 == 0)
      line[1] = '\r';
    if (len > 3 && i % 7 == 0)
      line[3] = '\n';
    bytes_add(b, line, len);
    bytes_add(b, "\r\n", 2);
    rec_add(expect, 'L', line, len);
  }
}

Test(basic_line, one_byte_at_a_time) {
  bytes b = {0};
  rec expect = {0};
  make_lines(&b, &expect, 300, 7, 100);
  check_run(RX(&crlf_ops), b.d, b.len, 1, 0, &expect, SIZE_MAX);
  rec_clear(&expect);
  bytes_free(&b);
}

Test(basic_line, thousand_lines_one_chunk) {
  bytes b = {0};
  rec expect = {0};
  make_lines(&b, &expect, 1000, 11, 200);
  check_run(RX(&crlf_ops), b.d, b.len, 0, 0, &expect, 1000);
  rec_clear(&expect);
  bytes_free(&b);
}

Test(basic_line, random_splits_property) {
  bytes b = {0};
  rec expect = {0};
  make_lines(&b, &expect, 500, 3, 300);
  check_random_splits(RX(&crlf_ops), &b, 60, 13, 700, &expect);
  rec_clear(&expect);
  bytes_free(&b);
}

Test(basic_line, multibyte_delimiter_straddles_chunks) {
  const char *s = "oneENDtwoENENDthreeEENDEND";
  rec expect = {0};
  rec_add(&expect, 'L', "one", 3);
  rec_add(&expect, 'L', "twoEN", 5);
  rec_add(&expect, 'L', "threeE", 6);
  rec_add(&expect, 'L', "", 0);
  check_grid(RX(&end_ops), s, strlen(s), 8, 10, &expect);
  rec_clear(&expect);
}

Test(basic_line, newline_delimiter_and_instance_override) {
  rec r = {0};
  ct_protocol *p;
  ct_string_transport *st = connect_rec(&nl_ops.base, sizeof(tline), &r, &p);
  ct_string_transport_feed_str(st, "a\r\nb\n");
  cr_assert_eq(r.n, 2);
  cr_assert_str_eq(r.evs[0].data, "a\r");
  ct_line_receiver *lr = (ct_line_receiver *)p;
  cr_assert_eq(ct_line_receiver_set_delimiter(lr, "", 0), CT_EINVAL);
  cr_assert_eq(ct_line_receiver_set_delimiter(lr, "12345678901234567", 17),
               CT_EINVAL);
  cr_assert_eq(ct_line_receiver_set_delimiter(lr, "|", 1), 0);
  ct_string_transport_feed_str(st, "x|y\n|");
  cr_assert_eq(r.n, 4);
  cr_assert_str_eq(r.evs[3].data, "y\n");
  cr_assert_eq(ct_line_receiver_set_max_length(lr, (size_t)2 << 30), CT_EINVAL);
  ct_string_transport_free(st);
  rec_clear(&r);
}

/* Lines, then raw bytes announced by a line, then lines again, all in one
 * chunk and under every split: the HTTP header/body pattern. */
Test(basic_line, mode_switch_mid_buffer) {
  const char *s = "a\r\nRAW 5\r\nhel\r\nB\r\nC\r\nRAW 3\r\nxyzD\r\nrawonly\r\n"
                  "tail\r\nbytes";
  rec expect = {0};
  rec_add(&expect, 'L', "a", 1);
  rec_add(&expect, 'L', "RAW 5", 5);
  rec_add(&expect, 'R', "hel\r\n", 5);
  rec_add(&expect, 'L', "B", 1);
  rec_add(&expect, 'L', "C", 1);
  rec_add(&expect, 'L', "RAW 3", 5);
  rec_add(&expect, 'R', "xyz", 3);
  rec_add(&expect, 'L', "D", 1);
  rec_add(&expect, 'L', "rawonly", 7);
  rec_add(&expect, 'R', "tail\r\nbytes", 11);
  check_grid(RX(&crlf_ops), s, strlen(s), 12, 8, &expect);
  rec_clear(&expect);
}

Test(basic_line, raw_mode_from_outside_and_back) {
  rec r = {0};
  ct_protocol *p;
  ct_string_transport *st = connect_rec(&end_ops.base, sizeof(tline), &r, &p);
  ct_line_receiver *lr = (ct_line_receiver *)p;
  ct_string_transport_feed_str(st, "xENDpartial");
  cr_assert_eq(r.n, 1);
  ct_line_receiver_set_raw_mode(lr);
  cr_assert(ct_line_receiver_is_raw(lr));
  ct_string_transport_feed_str(st, "!");
  /* The held partial line is raw data now, followed by the new byte. */
  cr_assert_eq(r.n, 2);
  cr_assert_str_eq(r.evs[1].data, "partial!");
  ct_line_receiver_set_line_mode(lr, "yENDz", 5);
  cr_assert(!ct_line_receiver_is_raw(lr));
  cr_assert_eq(r.n, 3);
  cr_assert_str_eq(r.evs[2].data, "y");
  ct_string_transport_feed_str(st, "END");
  cr_assert_eq(r.n, 4);
  cr_assert_str_eq(r.evs[3].data, "z");
  ct_string_transport_free(st);
  rec_clear(&r);
}

Test(basic_line, too_long_line_closes_with_failure) {
  for (size_t step = 0; step < 4; step++) {
    rec r = {0};
    ct_string_transport *st =
        connect_rec(&small_ops.base, sizeof(tline), &r, NULL);
    const char *s = "0123456789\r\n01234567890\r\nnever\r\n";
    feed_split(st, s, strlen(s), step, 5);
    cr_assert_eq(r.n, 1, "step %zu", step);
    cr_assert_str_eq(r.evs[0].data, "0123456789");
    ct_string_transport_stats stats;
    ct_string_transport_stats_get(st, &stats);
    cr_assert_eq(stats.lose_connection_calls, 1);
    ct_string_transport_step(st);
    cr_assert_eq(r.lost, 1);
    cr_assert_eq(r.lost_code, CT_ETOOBIG);
    cr_assert(strstr(r.lost_msg, "limit of 10 bytes") != NULL, "%s",
              r.lost_msg);
    ct_string_transport_free(st);
    rec_clear(&r);
  }
}

Test(basic_line, too_long_without_delimiter) {
  rec r = {0};
  ct_protocol *p;
  ct_string_transport *st = connect_rec(&small_ops.base, sizeof(tline), &r, &p);
  /* max 10 + delimiter 2 - 1 bytes could still end in a delimiter. */
  ct_string_transport_feed_str(st, "01234567890");
  cr_assert_null(ct_line_receiver_failure((ct_line_receiver *)p));
  ct_string_transport_feed_str(st, "x");
  const ct_failure *f = ct_line_receiver_failure((ct_line_receiver *)p);
  cr_assert_not_null(f);
  cr_assert_eq(f->code, CT_ETOOBIG);
  cr_assert_eq(ct_string_transport_feed_str(st, "more\r\n"), CT_ECLOSED);
  cr_assert_eq(r.n, 0);
  ct_string_transport_free(st);
  cr_assert_eq(r.lost_code, CT_ETOOBIG);
  rec_clear(&r);
}

Test(basic_line, exceeded_callback_continues) {
  rec r = {0};
  ct_string_transport *st =
      connect_rec(&small_cb_ops.base, sizeof(tline), &r, NULL);
  ct_string_transport_feed_str(st, "ok\r\n01234567890\r\nrest");
  cr_assert_eq(r.n, 2);
  cr_assert_eq(r.evs[1].type, 'X');
  cr_assert_str_eq(r.evs[1].data, "01234567890\r\nrest");
  ct_string_transport_feed_str(st, "next\r\n");
  cr_assert_eq(r.n, 3);
  cr_assert_str_eq(r.evs[2].data, "next");
  ct_string_transport_free(st);
  rec_clear(&r);
}

Test(basic_line, close_in_callback_stops_delivery) {
  rec r = {0};
  ct_string_transport *st =
      connect_rec(&crlf_ops.base, sizeof(tline), &r, NULL);
  ct_string_transport_feed_str(st, "a\r\nquit\r\nb\r\nc\r\n");
  cr_assert_eq(r.n, 2);
  ct_string_transport_step(st);
  cr_assert_eq(r.lost, 1);
  cr_assert_eq(r.lost_code, CT_ECONNDONE);
  ct_string_transport_free(st);
  rec_clear(&r);
}

Test(basic_line, pause_and_resume) {
  rec r = {0};
  ct_protocol *p;
  ct_string_transport *st = connect_rec(&crlf_ops.base, sizeof(tline), &r, &p);
  ct_line_receiver *lr = (ct_line_receiver *)p;
  ct_string_transport_feed_str(st, "a\r\npause\r\nb\r\nc\r\npartial");
  cr_assert_eq(r.n, 2);
  cr_assert(ct_transport_reading_paused(lr->base.transport));
  ct_line_receiver_resume(lr);
  cr_assert_eq(r.n, 4);
  cr_assert_str_eq(r.evs[3].data, "c");
  cr_assert(!ct_transport_reading_paused(lr->base.transport));
  ct_string_transport_feed_str(st, "\r\n");
  cr_assert_eq(r.n, 5);
  cr_assert_str_eq(r.evs[4].data, "partial");
  ct_string_transport_free(st);
  rec_clear(&r);
}

Test(basic_line, send_line) {
  rec r = {0};
  ct_protocol *p;
  ct_string_transport *st = connect_rec(&end_ops.base, sizeof(tline), &r, &p);
  ct_line_receiver *lr = (ct_line_receiver *)p;
  cr_assert_eq(ct_line_receiver_send_line(lr, "hi", 2), 0);
  cr_assert_eq(ct_line_receiver_send_line(lr, "", 0), 0);
  cr_assert_eq(ct_line_receiver_send_line(lr, NULL, 3), CT_EINVAL);
  size_t len;
  const char *v = ct_string_transport_value(st, &len);
  cr_assert_eq(len, 8);
  cr_assert(memcmp(v, "hiENDEND", 8) == 0);
  ct_string_transport_free(st);
  rec_clear(&r);
}

Test(basic_line, embedded_init_defaults) {
  ct_line_receiver lr;
  ct_line_receiver_init(&lr, &crlf_ops);
  cr_assert_eq(lr.max_length, CT_LINE_MAX_LENGTH_DEFAULT);
  cr_assert_eq(lr.delimiter_len, 2);
  cr_assert_eq(ct_line_receiver_send_line(&lr, "x", 1), CT_ECLOSED);
  ct_line_receiver_init(&lr, &small_ops);
  cr_assert_eq(lr.max_length, 10);
}

static void on_line_ptr(ct_line_receiver *lr, const char *line, size_t len) {
  rec_ptr(REC(lr), line);
  rec_add(REC(lr), 'L', line, len);
}

static const ct_line_receiver_ops ptr_ops = {
    CT_LINE_RECEIVER_BASE("test-line-ptr", 0),
    .line_received = on_line_ptr,
};

Test(basic_line, zero_copy_in_chunk) {
  rec r = {0};
  ct_string_transport *st = connect_rec(&ptr_ops.base, sizeof(tline), &r, NULL);
  const char c1[] = "ab\r\ncd\r\nef";
  const char c2[] = "g\r\nh\r\n";
  ct_string_transport_feed(st, c1, sizeof c1 - 1);
  ct_string_transport_feed(st, c2, sizeof c2 - 1);
  cr_assert_eq(r.n, 4);
  cr_assert_eq(r.ptrs[0], c1);
  cr_assert_eq(r.ptrs[1], c1 + 4);
  cr_assert_str_eq(r.evs[2].data, "efg");
  cr_assert_eq(r.ptrs[3], c2 + 3);
  ct_string_transport_free(st);
  rec_clear(&r);
}
