/* Message headers (a jansson object of string/integer values) and the
 * frame encoder.
 *
 * The encoder writes the JSON itself instead of calling json_dumpb(): the
 * values are only strings and integers, so a small serialiser is enough,
 * and it lets the sender replace "content-length" without copying or
 * touching the user's header. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/message/internal.h"

/* ------------------------------------------------------------------ buffer */

static int buf_put(ct__buf *b, const char *s, size_t n) {
  return ct__buf_append(b, s, n);
}

/* A JSON string literal.  The text is valid UTF-8 (jansson checked it when
 * the value was set or parsed), so only quotes, backslashes and control
 * characters need escaping. */
static int buf_put_json_string(ct__buf *b, const char *s, size_t n) {
  if (ct__buf_reserve(b, n + 2) != 0 || buf_put(b, "\"", 1) != 0)
    return CT_ENOMEM;
  size_t run = 0; /* start of the pending run of plain bytes */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    if (buf_put(b, s + run, i - run) != 0)
      return CT_ENOMEM;
    char esc[8];
    size_t el;
    switch (c) {
    case '"':
      memcpy(esc, "\\\"", 2);
      el = 2;
      break;
    case '\\':
      memcpy(esc, "\\\\", 2);
      el = 2;
      break;
    case '\n':
      memcpy(esc, "\\n", 2);
      el = 2;
      break;
    case '\r':
      memcpy(esc, "\\r", 2);
      el = 2;
      break;
    case '\t':
      memcpy(esc, "\\t", 2);
      el = 2;
      break;
    default:
      el = (size_t)snprintf(esc, sizeof esc, "\\u%04x", (unsigned)c);
      break;
    }
    if (buf_put(b, esc, el) != 0)
      return CT_ENOMEM;
    run = i + 1;
  }
  if (buf_put(b, s + run, n - run) != 0 || buf_put(b, "\"", 1) != 0)
    return CT_ENOMEM;
  return 0;
}

static int buf_put_int(ct__buf *b, long long v) {
  char num[24];
  char *e = num + sizeof num, *q = e;
  /* Work on the magnitude as unsigned: LLONG_MIN has no positive twin. */
  unsigned long long u =
      v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  do {
    *--q = (char)('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (v < 0)
    *--q = '-';
  return buf_put(b, q, (size_t)(e - q));
}

/* Write the 4-byte big-endian length of the header that starts `start`
 * bytes into `b` (after its 4 length bytes) and ends at its end. */
static int patch_len(ct__buf *b, size_t start) {
  size_t hl = ct__buf_len(b) - start - 4;
  if (hl > UINT32_MAX)
    return CT_ETOOBIG;
  unsigned char *p = (unsigned char *)ct__buf_head(b) + start;
  p[0] = (unsigned char)(hl >> 24);
  p[1] = (unsigned char)(hl >> 16);
  p[2] = (unsigned char)(hl >> 8);
  p[3] = (unsigned char)hl;
  return 0;
}

/* Append "{" and the header's members but content-length to `b`. */
static int encode_members(const ct_msg_header *h, ct__buf *b) {
  if (buf_put(b, "{", 1) != 0)
    return CT_ENOMEM;
  int first = 1;
  const char *key;
  json_t *val;
  json_object_foreach(ct__msg_json(h), key, val) {
    if (strcmp(key, CT_MSG_CONTENT_LENGTH) == 0)
      continue;
    if (!first && buf_put(b, ",", 1) != 0)
      return CT_ENOMEM;
    first = 0;
    if (buf_put_json_string(b, key, strlen(key)) != 0 ||
        buf_put(b, ":", 1) != 0)
      return CT_ENOMEM;
    int rc;
    if (json_is_string(val))
      rc = buf_put_json_string(b, json_string_value(val),
                               json_string_length(val));
    else if (json_is_integer(val))
      rc = buf_put_int(b, (long long)json_integer_value(val));
    else
      rc = CT_EINVAL; /* unreachable through the public setters */
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* The header's encoded members, made once (see struct ct_msg_header). */
static int cached_members(const ct_msg_header *h, const char **out,
                          size_t *out_len) {
  if (h->enc == NULL) {
    ct__buf tmp = CT__BUF_INIT;
    int rc = encode_members(h, &tmp);
    char *enc = rc == 0 ? malloc(ct__buf_len(&tmp)) : NULL;
    if (enc == NULL) {
      ct__buf_free(&tmp);
      return rc != 0 ? rc : CT_ENOMEM;
    }
    memcpy(enc, ct__buf_head(&tmp), ct__buf_len(&tmp));
    /* Caching does not change what the header says. */
    ((ct_msg_header *)h)->enc = enc;
    ((ct_msg_header *)h)->enc_len = ct__buf_len(&tmp);
    ct__buf_free(&tmp);
  }
  *out = h->enc;
  *out_len = h->enc_len;
  return 0;
}

static void drop_cache(ct_msg_header *h) {
  free(h->enc);
  h->enc = NULL;
  h->enc_len = 0;
}

int ct__msg_encode_head(const ct_msg_header *h, size_t content_len,
                        ct__buf *b) {
  size_t start = ct__buf_len(b);
  const char *members = "{";
  size_t mlen = 1;
  if (h != NULL) {
    int rc = cached_members(h, &members, &mlen);
    if (rc != 0)
      return rc;
  }
  if (buf_put(b, "\0\0\0\0", 4) != 0 || buf_put(b, members, mlen) != 0)
    return CT_ENOMEM;
  if (content_len > 0) {
    if (mlen > 1 && buf_put(b, ",", 1) != 0)
      return CT_ENOMEM;
    if (buf_put(b, "\"" CT_MSG_CONTENT_LENGTH "\":", 17) != 0 ||
        buf_put_int(b, (long long)content_len) != 0)
      return CT_ENOMEM;
  }
  if (buf_put(b, "}", 1) != 0)
    return CT_ENOMEM;
  return patch_len(b, start);
}

int ct__msg_encode_error(const char *code, const char *message, ct__buf *b) {
  /* The message may quote peer bytes cut at any point: keep it ASCII so
   * the frame is valid UTF-8 JSON whatever it says. */
  char text[1025];
  size_t n = 0;
  for (; message[n] != '\0' && n < sizeof text - 1; n++)
    text[n] = (unsigned char)message[n] < 0x80 ? message[n] : '?';
  size_t start = ct__buf_len(b);
  if (buf_put(b, "\0\0\0\0{\"type\":\"error\",\"code\":", 27) != 0 ||
      buf_put_json_string(b, code, strlen(code)) != 0 ||
      buf_put(b, ",\"message\":", 11) != 0 ||
      buf_put_json_string(b, text, n) != 0 || buf_put(b, "}", 1) != 0)
    return CT_ENOMEM;
  return patch_len(b, start);
}

int ct_msg_encode(const ct_msg_header *h, const void *content, size_t len,
                  char **out, size_t *out_len) {
  if (out == NULL || out_len == NULL || (content == NULL && len > 0))
    return CT_EINVAL;
  ct__buf b = CT__BUF_INIT;
  int rc = ct__msg_encode_head(h, len, &b);
  if (rc == 0 && len > 0)
    rc = buf_put(&b, content, len);
  char *o = rc == 0 ? malloc(ct__buf_len(&b)) : NULL;
  if (o == NULL) {
    ct__buf_free(&b);
    return rc != 0 ? rc : CT_ENOMEM;
  }
  /* A copy the caller frees with free(): the buffer's own block may be a
   * mapping (large frames). */
  memcpy(o, ct__buf_head(&b), ct__buf_len(&b));
  *out = o;
  *out_len = ct__buf_len(&b);
  ct__buf_free(&b);
  return 0;
}

/* ------------------------------------------------------------------ header */

ct_msg_header *ct__msg_header_wrap(json_t *j, int readonly) {
  if (j == NULL)
    return NULL;
  ct_msg_header *h = malloc(sizeof *h);
  if (h == NULL) {
    json_decref(j);
    return NULL;
  }
  h->obj = j;
  h->refs = 1;
  h->readonly = readonly ? 1 : 0;
  h->enc = NULL;
  h->enc_len = 0;
  return h;
}

ct_msg_header *ct_msg_header_new(void) {
  return ct__msg_header_wrap(json_object(), 0);
}

ct_msg_header *ct_msg_header_ref(ct_msg_header *h) {
  if (h != NULL)
    h->refs++;
  return h;
}

void ct_msg_header_free(ct_msg_header *h) {
  if (h == NULL || --h->refs > 0)
    return;
  json_decref(h->obj);
  free(h->enc);
  free(h);
}

ct_msg_header *ct_msg_header_copy(const ct_msg_header *h) {
  if (h == NULL)
    return NULL;
  return ct__msg_header_wrap(json_deep_copy(h->obj), 0);
}

/* Read-only: a received header (the explicit flag), or a header with
 * several references (shared with someone who may not expect a change). */
static int shared(const ct_msg_header *h) {
  return h->readonly || h->refs > 1;
}

static int check_key(const ct_msg_header *h, const char *key) {
  if (h == NULL || key == NULL || strcmp(key, CT_MSG_CONTENT_LENGTH) == 0)
    return CT_EINVAL;
  return shared(h) ? CT_ESTATE : 0;
}

static int set_value(ct_msg_header *h, const char *key, json_t *v) {
  if (v == NULL)
    return CT_EINVAL; /* jansson refuses invalid UTF-8 (or no memory) */
  if (json_object_set_new(ct__msg_json(h), key, v) != 0)
    return CT_EINVAL; /* invalid UTF-8 key (or no memory) */
  drop_cache(h);
  return 0;
}

int ct_msg_header_set_str(ct_msg_header *h, const char *key,
                          const char *value) {
  int rc = check_key(h, key);
  if (rc != 0)
    return rc;
  if (value == NULL)
    return CT_EINVAL;
  return set_value(h, key, json_string(value));
}

int ct_msg_header_set_int(ct_msg_header *h, const char *key, int64_t value) {
  int rc = check_key(h, key);
  if (rc != 0)
    return rc;
  return set_value(h, key, json_integer((json_int_t)value));
}

int ct_msg_header_get_str(const ct_msg_header *h, const char *key,
                          const char **out) {
  if (h == NULL || key == NULL || out == NULL)
    return CT_EINVAL;
  json_t *v = json_object_get(ct__msg_json(h), key);
  if (v == NULL)
    return CT_ENOTFOUND;
  if (!json_is_string(v))
    return CT_EINVAL;
  *out = json_string_value(v);
  return 0;
}

int ct_msg_header_get_int(const ct_msg_header *h, const char *key,
                          int64_t *out) {
  if (h == NULL || key == NULL || out == NULL)
    return CT_EINVAL;
  json_t *v = json_object_get(ct__msg_json(h), key);
  if (v == NULL)
    return CT_ENOTFOUND;
  if (!json_is_integer(v))
    return CT_EINVAL;
  *out = (int64_t)json_integer_value(v);
  return 0;
}

int ct_msg_header_remove(ct_msg_header *h, const char *key) {
  if (h == NULL || key == NULL)
    return CT_EINVAL;
  if (shared(h))
    return CT_ESTATE;
  if (json_object_del(ct__msg_json(h), key) != 0)
    return CT_ENOTFOUND;
  drop_cache(h);
  return 0;
}

size_t ct_msg_header_count(const ct_msg_header *h) {
  return h != NULL ? json_object_size(ct__msg_json(h)) : 0;
}

int ct_msg_header_next(const ct_msg_header *h, ct_msg_header_iter *it,
                       ct_msg_header_entry *out) {
  if (h == NULL || it == NULL || out == NULL)
    return 0;
  json_t *obj = ct__msg_json(h);
  if (!it->started) {
    it->started = 1;
    it->pos = json_object_iter(obj);
  } else if (it->pos != NULL) {
    it->pos = json_object_iter_next(obj, it->pos);
  }
  if (it->pos == NULL)
    return 0;
  json_t *v = json_object_iter_value(it->pos);
  out->key = json_object_iter_key(it->pos);
  out->is_int = json_is_integer(v);
  out->str = json_is_string(v) ? json_string_value(v) : NULL;
  out->num = out->is_int ? (int64_t)json_integer_value(v) : 0;
  return 1;
}
