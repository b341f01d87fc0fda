/*
 * libFuzzer target for the message protocol's frame decoder.  Each input is
 * decoded twice -- whole, and in chunks whose sizes come from the input's
 * first byte -- and both runs must deliver the same frames and end the
 * same way (same error code).  Every frame delivered is re-encoded and
 * decoded again, and must come back identical (the round trip).  Finally
 * the input (after its first byte) is used as one header: the decoder's
 * verdict and result must equal jansson's own parse (the decoder has a fast
 * path for simple headers; this is its differential test).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/message.h"
#include "protocols/message/internal.h"

typedef struct run {
  uint64_t hash; /* of all frames' encodings */
  size_t frames;
} run;

static uint64_t mix(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

typedef struct again {
  int got;
  char *frame;
  size_t len;
} again;

/* Encode a decoded message; encoding what the decoder accepted must not
 * fail. */
static char *encode_or_abort(const ct_msg_header *h, const char *content,
                             size_t len, size_t *fl) {
  char *f;
  if (ct_msg_encode(h, content, len, &f, fl) != 0)
    abort();
  return f;
}

static int on_again(void *arg, const ct_msg_header *h, const char *content,
                    size_t len) {
  again *a = arg;
  size_t fl;
  char *f = encode_or_abort(h, content, len, &fl);
  if (a->got || fl != a->len || memcmp(f, a->frame, fl) != 0)
    abort();
  a->got = 1;
  free(f);
  return 0;
}

static int on_frame(void *arg, const ct_msg_header *h, const char *content,
                    size_t len) {
  run *r = arg;
  size_t fl;
  char *f = encode_or_abort(h, content, len, &fl);
  /* Decoding our own encoding gives the same message again. */
  again a = {0, f, fl};
  ct_msg_decoder *d = ct_msg_decoder_new(NULL, on_again, &a);
  if (d == NULL || ct_msg_decoder_feed(d, f, fl, NULL) != 0 || !a.got)
    abort();
  ct_msg_decoder_free(d);
  r->hash = mix(r->hash, f, fl);
  r->frames++;
  free(f);
  return 0;
}

static int decode(const uint8_t *data, size_t size, size_t step, run *r) {
  ct_msg_limits lim = {.max_header = 4096, .max_content = 65536};
  ct_msg_decoder *d = ct_msg_decoder_new(&lim, on_frame, r);
  if (d == NULL)
    abort();
  int rc = 0;
  for (size_t off = 0; off < size && rc == 0; off += step) {
    size_t n = size - off < step ? size - off : step;
    ct_failure *err = NULL;
    rc = ct_msg_decoder_feed(d, data + off, n, &err);
    if ((rc < 0) != (err != NULL) || (err != NULL && err->code != rc))
      abort();
    ct_failure_free(err);
  }
  ct_msg_decoder_free(d);
  return rc;
}

static int keep(void *arg, const ct_msg_header *h, const char *c, size_t n) {
  json_t **out = arg;
  if (*out != NULL)
    abort();
  *out = json_incref(ct__msg_json(h));
  return 0;
}

static void differential(const uint8_t *data, size_t size) {
  if (size > 4096)
    return;
  json_error_t je;
  json_t *want = json_loadb((const char *)data, size,
                            JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
  int valid = want != NULL && json_is_object(want);
  const char *key;
  json_t *v;
  if (valid) {
    json_object_foreach(want, key, v) {
      if (strcmp(key, "content-length") == 0)
        valid = valid && json_is_integer(v) && json_integer_value(v) == 0;
      else
        valid = valid && (json_is_string(v) || json_is_integer(v));
    }
  }
  unsigned char frame[4 + 4096];
  frame[0] = frame[1] = 0;
  frame[2] = (unsigned char)(size >> 8);
  frame[3] = (unsigned char)size;
  memcpy(frame + 4, data, size);
  json_t *got = NULL;
  ct_msg_decoder *d = ct_msg_decoder_new(NULL, keep, &got);
  ct_failure *err = NULL;
  int rc = ct_msg_decoder_feed(d, frame, 4 + size, &err);
  ct_failure_free(err);
  ct_msg_decoder_free(d);
  if (valid) {
    if (rc != 0 || got == NULL || !json_equal(got, want))
      abort();
  } else if (got != NULL && rc == 0) {
    /* Only a positive content-length may leave a valid header pending. */
    abort();
  }
  json_decref(got);
  json_decref(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  size_t step = (size_t)(data[0] % 17) + 1;
  data++;
  size--;
  run a = {1469598103934665603ull, 0}, b = a;
  int ra = decode(data, size, size > 0 ? size : 1, &a);
  int rb = decode(data, size, step, &b);
  if (ra != rb || a.frames != b.frames || a.hash != b.hash)
    abort();
  differential(data, size);
  return 0;
}
