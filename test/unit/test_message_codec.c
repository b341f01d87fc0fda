/* The message protocol's header type, encoder and incremental decoder. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/message.h"

/* ---------------------------------------------------------------- helpers */

#define MAXF 256

typedef struct rec {
  size_t n;
  char *hdr[MAXF]; /* canonical text of each header: key=value;... */
  char *body[MAXF];
  size_t len[MAXF];
  int stop_after; /* ask the decoder to stop after this many (0: never) */
} rec;

static char *header_text(const ct_msg_header *h) {
  char *buf = calloc(1, 4096);
  size_t off = 0;
  ct_msg_header_iter it = {0};
  ct_msg_header_entry e;
  while (ct_msg_header_next(h, &it, &e)) {
    if (e.is_int)
      off += (size_t)snprintf(buf + off, 4096 - off, "%s=%lld;", e.key,
                              (long long)e.num);
    else
      off += (size_t)snprintf(buf + off, 4096 - off, "%s='%s';", e.key, e.str);
  }
  return buf;
}

static int on_frame(void *arg, const ct_msg_header *h, const char *content,
                    size_t len) {
  rec *r = arg;
  cr_assert_lt(r->n, MAXF);
  r->hdr[r->n] = header_text(h);
  r->body[r->n] = malloc(len + 1);
  if (len > 0)
    memcpy(r->body[r->n], content, len);
  r->len[r->n] = len;
  r->n++;
  return r->stop_after > 0 && r->n >= (size_t)r->stop_after;
}

static void rec_free(rec *r) {
  for (size_t i = 0; i < r->n; i++) {
    free(r->hdr[i]);
    free(r->body[i]);
  }
  r->n = 0;
}

/* Append an encoded frame to a growing stream. */
typedef struct stream {
  char *data;
  size_t len;
} stream;

static void stream_add(stream *s, const ct_msg_header *h, const void *c,
                       size_t len) {
  char *f;
  size_t fl;
  cr_assert_eq(ct_msg_encode(h, c, len, &f, &fl), 0);
  s->data = realloc(s->data, s->len + fl);
  memcpy(s->data + s->len, f, fl);
  s->len += fl;
  free(f);
}

static void stream_raw(stream *s, const void *c, size_t len) {
  s->data = realloc(s->data, s->len + len);
  memcpy(s->data + s->len, c, len);
  s->len += len;
}

/* A raw frame from a header text, with a possibly lying length prefix. */
static void stream_frame(stream *s, const char *json, const void *content,
                         size_t clen) {
  size_t h = strlen(json);
  unsigned char p[4] = {(unsigned char)(h >> 24), (unsigned char)(h >> 16),
                        (unsigned char)(h >> 8), (unsigned char)h};
  stream_raw(s, p, 4);
  stream_raw(s, json, h);
  if (clen > 0)
    stream_raw(s, content, clen);
}

/* A recorded stream of varied frames. */
static void build_sample(stream *s, int nframes) {
  for (int i = 0; i < nframes; i++) {
    ct_msg_header *h = ct_msg_header_new();
    char key[32], val[64];
    snprintf(key, sizeof key, "k%d", i);
    snprintf(val, sizeof val, "v\"%d\\\n\xc3\xa9", i);
    cr_assert_eq(ct_msg_header_set_str(h, key, val), 0);
    cr_assert_eq(ct_msg_header_set_int(h, "seq", i), 0);
    size_t clen = (size_t)((i * 37) % 300);
    if (i % 5 == 0)
      clen = 0;
    char *c = malloc(clen + 1);
    for (size_t j = 0; j < clen; j++)
      c[j] = (char)(i + j);
    stream_add(s, h, c, clen);
    free(c);
    ct_msg_header_free(h);
  }
}

static void decode_chunks(const stream *s, const size_t *cuts, size_t ncuts,
                          rec *r) {
  ct_msg_decoder *d = ct_msg_decoder_new(NULL, on_frame, r);
  size_t prev = 0;
  for (size_t i = 0; i <= ncuts; i++) {
    size_t end = i < ncuts ? cuts[i] : s->len;
    ct_failure *f = NULL;
    cr_assert_eq(ct_msg_decoder_feed(d, s->data + prev, end - prev, &f), 0);
    prev = end;
  }
  cr_assert_eq(ct_msg_decoder_buffered(d), 0);
  ct_msg_decoder_free(d);
}

static void assert_same(const rec *a, const rec *b) {
  cr_assert_eq(a->n, b->n);
  for (size_t i = 0; i < a->n; i++) {
    cr_assert_str_eq(a->hdr[i], b->hdr[i]);
    cr_assert_eq(a->len[i], b->len[i]);
    cr_assert_eq(memcmp(a->body[i], b->body[i], a->len[i]), 0);
  }
}

/* ----------------------------------------------------------------- header */

Test(message_header, get_set_types) {
  ct_msg_header *h = ct_msg_header_new();
  cr_assert_not_null(h);
  cr_assert_eq(ct_msg_header_set_str(h, "name", "alice"), 0);
  cr_assert_eq(ct_msg_header_set_int(h, "age", -42), 0);
  const char *s = NULL;
  int64_t v = 0;
  cr_assert_eq(ct_msg_header_get_str(h, "name", &s), 0);
  cr_assert_str_eq(s, "alice");
  cr_assert_eq(ct_msg_header_get_int(h, "age", &v), 0);
  cr_assert_eq(v, -42);
  cr_assert_eq(ct_msg_header_get_int(h, "name", &v), CT_EINVAL);
  cr_assert_eq(ct_msg_header_get_str(h, "age", &s), CT_EINVAL);
  cr_assert_eq(ct_msg_header_get_str(h, "nope", &s), CT_ENOTFOUND);
  cr_assert_eq(ct_msg_header_get_int(h, "nope", &v), CT_ENOTFOUND);
  cr_assert_eq(ct_msg_header_count(h), 2);
  /* Reserved key, bad UTF-8, NULL arguments. */
  cr_assert_eq(ct_msg_header_set_int(h, "content-length", 3), CT_EINVAL);
  cr_assert_eq(ct_msg_header_set_str(h, "content-length", "3"), CT_EINVAL);
  cr_assert_eq(ct_msg_header_set_str(h, "x", "\xff\xfe"), CT_EINVAL);
  cr_assert_eq(ct_msg_header_set_str(h, "\xc3", "x"), CT_EINVAL);
  cr_assert_eq(ct_msg_header_set_str(h, NULL, "x"), CT_EINVAL);
  cr_assert_eq(ct_msg_header_set_str(NULL, "a", "x"), CT_EINVAL);
  cr_assert_eq(ct_msg_header_get_str(h, "name", NULL), CT_EINVAL);
  /* Overwrite changes the type. */
  cr_assert_eq(ct_msg_header_set_int(h, "name", 7), 0);
  cr_assert_eq(ct_msg_header_get_int(h, "name", &v), 0);
  cr_assert_eq(v, 7);
  cr_assert_eq(ct_msg_header_remove(h, "name"), 0);
  cr_assert_eq(ct_msg_header_remove(h, "name"), CT_ENOTFOUND);
  cr_assert_eq(ct_msg_header_count(h), 1);
  ct_msg_header *c = ct_msg_header_copy(h);
  ct_msg_header_free(h);
  cr_assert_eq(ct_msg_header_get_int(c, "age", &v), 0);
  ct_msg_header_free(ct_msg_header_ref(c));
  cr_assert_eq(ct_msg_header_count(c), 1);
  ct_msg_header_free(c);
  ct_msg_header_free(NULL);
}

Test(message_header, iteration_in_insertion_order) {
  ct_msg_header *h = ct_msg_header_new();
  ct_msg_header_set_str(h, "z", "1");
  ct_msg_header_set_int(h, "a", 2);
  ct_msg_header_set_str(h, "m", "3");
  char *t = header_text(h);
  cr_assert_str_eq(t, "z='1';a=2;m='3';");
  free(t);
  ct_msg_header_free(h);
  ct_msg_header *e = ct_msg_header_new();
  ct_msg_header_iter it = {0};
  ct_msg_header_entry en;
  cr_assert_eq(ct_msg_header_next(e, &it, &en), 0);
  ct_msg_header_free(e);
}

/* ----------------------------------------------------------------- encode */

Test(message_encode, empty_header_is_braces) {
  char *f;
  size_t n;
  cr_assert_eq(ct_msg_encode(NULL, NULL, 0, &f, &n), 0);
  cr_assert_eq(n, 6);
  cr_assert_eq(memcmp(f, "\0\0\0\2{}", 6), 0);
  free(f);
  ct_msg_header *h = ct_msg_header_new();
  cr_assert_eq(ct_msg_encode(h, NULL, 0, &f, &n), 0);
  cr_assert_eq(memcmp(f, "\0\0\0\2{}", 6), 0);
  free(f);
  ct_msg_header_free(h);
  cr_assert_eq(ct_msg_encode(NULL, NULL, 3, &f, &n), CT_EINVAL);
}

Test(message_encode, content_length_set_by_sender) {
  ct_msg_header *h = ct_msg_header_new();
  ct_msg_header_set_str(h, "type", "chat");
  char *f;
  size_t n;
  cr_assert_eq(ct_msg_encode(h, "hello", 5, &f, &n), 0);
  const char *want = "{\"type\":\"chat\",\"content-length\":5}";
  size_t wl = strlen(want);
  cr_assert_eq(n, 4 + wl + 5);
  cr_assert_eq((unsigned char)f[3], wl);
  cr_assert_eq(memcmp(f + 4, want, wl), 0);
  cr_assert_eq(memcmp(f + 4 + wl, "hello", 5), 0);
  free(f);
  ct_msg_header_free(h);
}

static int keep_header(void *arg, const ct_msg_header *h, const char *c,
                       size_t len) {
  *(ct_msg_header **)arg = ct_msg_header_ref((ct_msg_header *)h);
  return 0;
}

Test(message_encode, received_content_length_is_replaced) {
  /* A received header carries content-length; sending it again with other
   * content writes the real length (or none for empty content). */
  stream s = {0};
  stream_frame(&s, "{\"a\":1,\"content-length\":3}", "xyz", 3);
  ct_msg_header *got = NULL;
  ct_msg_decoder *d = ct_msg_decoder_new(NULL, keep_header, &got);
  cr_assert_eq(ct_msg_decoder_feed(d, s.data, s.len, NULL), 0);
  ct_msg_decoder_free(d);
  cr_assert_not_null(got);
  int64_t v;
  cr_assert_eq(ct_msg_header_get_int(got, "content-length", &v), 0);
  cr_assert_eq(v, 3);
  char *f;
  size_t n;
  cr_assert_eq(ct_msg_encode(got, "1234567", 7, &f, &n), 0);
  cr_assert_eq(memcmp(f + 4, "{\"a\":1,\"content-length\":7}", 26), 0);
  free(f);
  cr_assert_eq(ct_msg_encode(got, NULL, 0, &f, &n), 0);
  cr_assert_eq(n, 4 + 7);
  cr_assert_eq(memcmp(f + 4, "{\"a\":1}", 7), 0);
  free(f);
  ct_msg_header_free(got);
  free(s.data);
}

Test(message_encode, escaping_round_trip) {
  ct_msg_header *h = ct_msg_header_new();
  const char *nasty = "q\"b\\s/\x01\x1f\t\r\n \xe4\xb8\xad\xf0\x9f\x98\x80";
  ct_msg_header_set_str(h, "k\"\\\n", nasty);
  ct_msg_header_set_int(h, "big", INT64_MAX);
  ct_msg_header_set_int(h, "small", INT64_MIN);
  stream s = {0};
  stream_add(&s, h, NULL, 0);
  rec r = {0};
  ct_msg_decoder *d = ct_msg_decoder_new(NULL, on_frame, &r);
  ct_failure *f = NULL;
  cr_assert_eq(ct_msg_decoder_feed(d, s.data, s.len, &f), 0);
  cr_assert_eq(r.n, 1);
  char *want = header_text(h);
  cr_assert_str_eq(r.hdr[0], want);
  free(want);
  rec_free(&r);
  ct_msg_decoder_free(d);
  ct_msg_header_free(h);
  free(s.data);
}

/* ----------------------------------------------------------------- decode */

Test(message_decode, one_byte_at_a_time_equals_one_chunk) {
  stream s = {0};
  build_sample(&s, 40);
  rec whole = {0}, bytes = {0};
  decode_chunks(&s, NULL, 0, &whole);
  cr_assert_eq(whole.n, 40);
  size_t *cuts = malloc(s.len * sizeof *cuts);
  for (size_t i = 0; i < s.len - 1; i++)
    cuts[i] = i + 1;
  decode_chunks(&s, cuts, s.len - 1, &bytes);
  assert_same(&whole, &bytes);
  /* Spot-check contents. */
  cr_assert_eq(whole.len[1], 37);
  cr_assert_eq(whole.body[1][0], (char)1);
  cr_assert(strstr(whole.hdr[3], "seq=3;") != NULL);
  cr_assert(strstr(whole.hdr[1], "content-length=37;") != NULL);
  cr_assert(strstr(whole.hdr[0], "content-length") == NULL);
  free(cuts);
  rec_free(&whole);
  rec_free(&bytes);
  free(s.data);
}

Test(message_decode, many_frames_per_chunk_and_empty_frames) {
  stream s = {0};
  for (int i = 0; i < 200; i++)
    stream_add(&s, NULL, NULL, 0);
  stream_frame(&s, "{\"content-length\":0}", NULL, 0);
  rec r = {0};
  decode_chunks(&s, NULL, 0, &r);
  cr_assert_eq(r.n, 201);
  cr_assert_str_eq(r.hdr[0], "");
  cr_assert_eq(r.len[200], 0);
  rec_free(&r);
  free(s.data);
}

/* xorshift64*: deterministic random split points. */
static uint64_t rnd(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

static int cmp_size(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return x < y ? -1 : x > y;
}

Test(message_decode, random_splits_give_identical_messages) {
  stream s = {0};
  build_sample(&s, 60);
  rec ref = {0};
  decode_chunks(&s, NULL, 0, &ref);
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  for (int round = 0; round < 300; round++) {
    size_t ncuts = (size_t)(rnd(&seed) % 64);
    size_t cuts[64];
    for (size_t i = 0; i < ncuts; i++)
      cuts[i] = (size_t)(rnd(&seed) % (s.len + 1));
    qsort(cuts, ncuts, sizeof cuts[0], cmp_size);
    rec r = {0};
    decode_chunks(&s, cuts, ncuts, &r);
    assert_same(&ref, &r);
    rec_free(&r);
  }
  rec_free(&ref);
  free(s.data);
}

Test(message_decode, callback_can_stop) {
  stream s = {0};
  build_sample(&s, 5);
  rec r = {0};
  r.stop_after = 2;
  ct_msg_decoder *d = ct_msg_decoder_new(NULL, on_frame, &r);
  cr_assert_eq(ct_msg_decoder_feed(d, s.data, s.len, NULL), 1);
  cr_assert_eq(r.n, 2);
  ct_msg_decoder_free(d);
  rec_free(&r);
  free(s.data);
}

Test(message_decode, content_is_delivered_once_complete) {
  stream s = {0};
  char big[5000];
  memset(big, 'b', sizeof big);
  stream_add(&s, NULL, big, sizeof big);
  rec r = {0};
  ct_msg_decoder *d = ct_msg_decoder_new(NULL, on_frame, &r);
  cr_assert_eq(ct_msg_decoder_feed(d, s.data, s.len - 1, NULL), 0);
  cr_assert_eq(r.n, 0);
  cr_assert_gt(ct_msg_decoder_buffered(d), 4999);
  cr_assert_eq(ct_msg_decoder_feed(d, s.data + s.len - 1, 1, NULL), 0);
  cr_assert_eq(r.n, 1);
  cr_assert_eq(r.len[0], sizeof big);
  cr_assert_eq(memcmp(r.body[0], big, sizeof big), 0);
  ct_msg_decoder_free(d);
  rec_free(&r);
  free(s.data);
}

/* --------------------------------------------------------------- malformed */

/* Feed `s` one byte at a time (and whole, in a second decoder): both must
 * fail with `code` and a message containing `what`, after `good` frames. */
static void expect_failure(const stream *s, const ct_msg_limits *lim, int code,
                           const char *what, size_t good) {
  for (int mode = 0; mode < 2; mode++) {
    rec r = {0};
    ct_msg_decoder *d = ct_msg_decoder_new(lim, on_frame, &r);
    ct_failure *f = NULL;
    int rc = 0;
    if (mode == 0) {
      rc = ct_msg_decoder_feed(d, s->data, s->len, &f);
    } else {
      for (size_t i = 0; i < s->len && rc == 0; i++)
        rc = ct_msg_decoder_feed(d, s->data + i, 1, &f);
    }
    cr_assert_eq(rc, code, "mode %d: rc %d, want %d", mode, rc, code);
    cr_assert_not_null(f);
    cr_assert_eq(f->code, code);
    cr_assert_str_eq(f->domain, "message");
    cr_assert(strstr(f->message, what) != NULL, "message '%s' lacks '%s'",
              f->message, what);
    cr_assert_eq(r.n, good);
    ct_failure_free(f);
    /* A failed decoder stays failed. */
    cr_assert_eq(ct_msg_decoder_feed(d, "x", 1, NULL), CT_ESTATE);
    ct_msg_decoder_free(d);
    rec_free(&r);
  }
}

#define BAD_CASE(name, json, code, what)                                       \
  Test(message_malformed, name) {                                              \
    stream s = {0};                                                            \
    stream_add(&s, NULL, NULL, 0);                                             \
    stream_frame(&s, json, NULL, 0);                                           \
    expect_failure(&s, NULL, code, what, 1);                                   \
    free(s.data);                                                              \
  }

BAD_CASE(bad_json, "{\"a\":", CT_EPROTO, "header is not valid JSON")
BAD_CASE(trailing_garbage, "{}x", CT_EPROTO, "header is not valid JSON")
BAD_CASE(duplicate_key, "{\"a\":1,\"a\":2}", CT_EPROTO,
         "header is not valid JSON")
BAD_CASE(array_header, "[1,2]", CT_EPROTO,
         "header is not a JSON object (got an array)")
BAD_CASE(string_header, "\"s\"", CT_EPROTO,
         "header is not a JSON object (got a string)")
BAD_CASE(float_value, "{\"x\":1.5}", CT_EPROTO,
         "header value \"x\" is a real number")
BAD_CASE(bool_value, "{\"x\":true}", CT_EPROTO,
         "header value \"x\" is a boolean")
BAD_CASE(null_value, "{\"x\":null}", CT_EPROTO, "header value \"x\" is null")
BAD_CASE(nested_value, "{\"x\":{}}", CT_EPROTO,
         "header value \"x\" is an object")
BAD_CASE(negative_content_length, "{\"content-length\":-5}", CT_EPROTO,
         "content-length is negative (-5)")
BAD_CASE(string_content_length, "{\"content-length\":\"5\"}", CT_EPROTO,
         "content-length is not an integer (got a string)")
BAD_CASE(float_content_length, "{\"content-length\":5.0}", CT_EPROTO,
         "content-length is not an integer (got a real number)")
BAD_CASE(invalid_utf8, "{\"a\":\"\xff\"}", CT_EPROTO,
         "header is not valid JSON")
BAD_CASE(nul_escape, "{\"a\":\"\\u0000\"}", CT_EPROTO,
         "header is not valid JSON")
BAD_CASE(huge_integer, "{\"a\":123456789012345678901234567890}", CT_EPROTO,
         "header is not valid JSON")

Test(message_malformed, empty_header) {
  stream s = {0};
  stream_raw(&s, "\0\0\0\0", 4);
  expect_failure(&s, NULL, CT_EPROTO, "header is empty", 0);
  free(s.data);
}

Test(message_malformed, header_over_limit_before_buffering) {
  /* Only the length prefix is sent: the decoder refuses at once. */
  stream s = {0};
  stream_raw(&s, "\0\1\0\1", 4); /* 65537 */
  expect_failure(&s, NULL, CT_ETOOBIG,
                 "header of 65537 bytes is over the limit of 65536 bytes", 0);
  free(s.data);
  ct_msg_limits lim = {.max_header = 10};
  stream t = {0};
  stream_frame(&t, "{\"a\":\"b\"}", NULL, 0);   /* 9 bytes: fine */
  stream_frame(&t, "{\"a\":\"bc\"}", NULL, 0);  /* 10 bytes: fine */
  stream_frame(&t, "{\"a\":\"bcd\"}", NULL, 0); /* 11 bytes: over */
  expect_failure(&t, &lim, CT_ETOOBIG,
                 "header of 11 bytes is over the limit of 10 bytes", 2);
  free(t.data);
}

Test(message_malformed, content_over_limit) {
  stream s = {0};
  stream_frame(&s, "{\"content-length\":16777217}", NULL, 0);
  expect_failure(&s, NULL, CT_ETOOBIG,
                 "content of 16777217 bytes is over the limit of 16777216 "
                 "bytes",
                 0);
  free(s.data);
  ct_msg_limits lim = {.max_content = 4};
  stream t = {0};
  stream_add(&t, NULL, "abcd", 4);
  stream_add(&t, NULL, "abcde", 5);
  expect_failure(&t, &lim, CT_ETOOBIG,
                 "content of 5 bytes is over the limit of 4 bytes", 1);
  free(t.data);
}

Test(message_decode, bad_arguments) {
  cr_assert_eq(ct_msg_decoder_feed(NULL, "x", 1, NULL), CT_EINVAL);
  ct_msg_decoder *d = ct_msg_decoder_new(NULL, NULL, NULL);
  cr_assert_eq(ct_msg_decoder_feed(d, NULL, 1, NULL), CT_EINVAL);
  cr_assert_eq(ct_msg_decoder_feed(d, NULL, 0, NULL), 0);
  /* No callback: frames are parsed and dropped. */
  cr_assert_eq(ct_msg_decoder_feed(d, "\0\0\0\2{}", 6, NULL), 0);
  ct_msg_decoder_free(d);
  ct_msg_decoder_free(NULL);
}

/* The decoder's fast path (flat ASCII headers) and jansson's full parser
 * must agree: the same header written compactly or with whitespace and
 * escapes decodes to the same entries. */
static char *decode_one(const char *json) {
  stream s = {0};
  stream_frame(&s, json, NULL, 0);
  rec r = {0};
  ct_msg_decoder *d = ct_msg_decoder_new(NULL, on_frame, &r);
  ct_failure *f = NULL;
  int rc = ct_msg_decoder_feed(d, s.data, s.len, &f);
  ct_msg_decoder_free(d);
  free(s.data);
  char *out = NULL;
  if (rc == 0 && r.n == 1) {
    out = r.hdr[0];
    r.hdr[0] = NULL;
  }
  ct_failure_free(f);
  rec_free(&r);
  return out;
}

Test(message_decode, fast_path_agrees_with_full_parser) {
  static const char *pairs[][2] = {
      {"{\"a\":1,\"b\":\"x y\"}", "{ \"a\" : 1 , \"b\" : \"x\\u0020y\" }"},
      {"{\"n\":-0}", "{\"n\" :0}"},
      {"{\"n\":-123456789012345678}", "{\"n\": -123456789012345678}"},
      {"{\"n\":1234567890123456789}", "{\"n\": 1234567890123456789 }"},
      {"{\"\":\"\"}", "{\"\" : \"\"}"},
      {"{}", " {} "},
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    char *a = decode_one(pairs[i][0]), *b = decode_one(pairs[i][1]);
    cr_assert_not_null(a, "%s", pairs[i][0]);
    cr_assert_not_null(b, "%s", pairs[i][1]);
    cr_assert_str_eq(a, b);
    free(a);
    free(b);
  }
  static const char *bad[] = {"{\"a\":01}",  "{\"a\":1,}",  "{\"a\":-}",
                              "{\"a\":1}}",  "{\"a\" 1}",   "{\"a\":1.0}",
                              "{\"a\":1e3}", "{\"a\":\"x}", "{,}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char *x = decode_one(bad[i]);
    cr_assert_null(x, "accepted %s", bad[i]);
  }
}

typedef struct seen {
  const ct_msg_header *ptr[4];
  ct_msg_header *kept;
  int n;
} seen;

static int note(void *arg, const ct_msg_header *h, const char *c, size_t n) {
  seen *s = arg;
  s->ptr[s->n++] = h;
  if (s->n == 2)
    s->kept = ct_msg_header_ref((ct_msg_header *)h);
  return 0;
}

Test(message_decode, identical_headers_reuse_one_read_only_object) {
  stream s = {0};
  for (int i = 0; i < 4; i++)
    stream_add(&s, NULL, "abc", 3);
  seen sn = {0};
  ct_msg_decoder *d = ct_msg_decoder_new(NULL, note, &sn);
  cr_assert_eq(ct_msg_decoder_feed(d, s.data, s.len, NULL), 0);
  cr_assert_eq(sn.n, 4);
  /* Received headers are read-only, so identical header bytes share one
   * object even while the callback keeps a reference to it. */
  cr_assert_eq(sn.ptr[0], sn.ptr[1]);
  cr_assert_eq(sn.ptr[1], sn.ptr[2]);
  cr_assert_eq(sn.ptr[2], sn.ptr[3]);
  ct_msg_header *cached = ct_msg_header_ref((ct_msg_header *)sn.ptr[3]);
  cr_assert_eq(ct_msg_header_set_str(cached, "x", "y"), CT_ESTATE);
  cr_assert_eq(ct_msg_header_set_int(cached, "x", 1), CT_ESTATE);
  cr_assert_eq(ct_msg_header_remove(cached, "content-length"), CT_ESTATE);
  ct_msg_header *mine = ct_msg_header_copy(cached);
  cr_assert_eq(ct_msg_header_set_str(mine, "x", "y"), 0);
  ct_msg_header_free(mine);
  int64_t cl;
  cr_assert_eq(ct_msg_header_get_int(cached, "content-length", &cl), 0);
  cr_assert_eq(cl, 3);
  /* Still read-only once the decoder is gone and the references left are
   * the user's: read-only is a flag, not a reference count. */
  ct_msg_decoder_free(d);
  ct_msg_header_free(cached);
  cr_assert_eq(ct_msg_header_set_int(sn.kept, "x", 1), CT_ESTATE);
  ct_msg_header_free(sn.kept);
  free(s.data);
}

/* on_message tries to change the header it got, holding no reference. */
static int try_change(void *arg, const ct_msg_header *h, const char *c,
                      size_t n) {
  (void)c;
  (void)n;
  int *rc = arg;
  rc[0] = ct_msg_header_set_str((ct_msg_header *)h, "x", "y");
  rc[1] = ct_msg_header_remove((ct_msg_header *)h, "k");
  return 0;
}

Test(message_decode, received_headers_over_128_bytes_are_read_only) {
  /* Headers over the decoder's cache size (128 bytes) are not cached:
   * only the decoder holds them while the callback runs.  They are still
   * read-only (the defect: they used to be writable). */
  char val[200];
  memset(val, 'v', sizeof val - 1);
  val[sizeof val - 1] = 0;
  ct_msg_header *h = ct_msg_header_new();
  cr_assert_eq(ct_msg_header_set_str(h, "k", val), 0);
  char *frame = NULL;
  size_t flen = 0;
  cr_assert_eq(ct_msg_encode(h, NULL, 0, &frame, &flen), 0);
  cr_assert_gt(flen - 4, 128);
  int rc[2] = {1, 1};
  ct_msg_decoder *d = ct_msg_decoder_new(NULL, try_change, rc);
  cr_assert_eq(ct_msg_decoder_feed(d, frame, flen, NULL), 0);
  cr_assert_eq(rc[0], CT_ESTATE);
  cr_assert_eq(rc[1], CT_ESTATE);
  ct_msg_decoder_free(d);
  free(frame);
  ct_msg_header_free(h);
}

Test(message_codec, doc_worked_example) {
  /* docs/message-protocol.md, "Wire format": the bytes and counts. */
  ct_msg_header *h = ct_msg_header_new();
  cr_assert_eq(ct_msg_header_set_str(h, "type", "chat"), 0);
  char *f;
  size_t n;
  cr_assert_eq(ct_msg_encode(h, "hello", 5, &f, &n), 0);
  static const char want[] =
      "\x00\x00\x00\x22{\"type\":\"chat\",\"content-length\":5}hello";
  cr_assert_eq(n, 43);
  cr_assert_eq(sizeof want - 1, 43);
  cr_assert_eq(memcmp(f, want, n), 0);
  free(f);
  ct_msg_header_free(h);
}
