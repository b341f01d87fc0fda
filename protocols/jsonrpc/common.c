/* What the JSON-RPC server and client share: error failures, the output
 * buffer and its JSON writers, the nesting-depth scan, the frame header
 * and the id map. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/jsonrpc/internal.h"

/* ------------------------------------------------------------ failures */

ct_failure *ct_rpc_error_new_at(const char *file, int line, int code,
                                json_t *data, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  ct_failure *cause = NULL;
  if (data != NULL) {
    char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(data);
    if (text != NULL) {
      cause = ct_failure_new_at(file, line, CT_RPC_DATA_DOMAIN, CT_EUSER, NULL,
                                "%s", text);
      free(text);
    }
  }
  return ct_failure_new_at(file, line, CT_RPC_DOMAIN, code, cause, "%s", msg);
}

int ct_rpc_is_error(const ct_failure *f) {
  return f != NULL && f->domain != NULL &&
         strcmp(f->domain, CT_RPC_DOMAIN) == 0;
}

const char *ct_rpc_error_data(const ct_failure *f) {
  if (!ct_rpc_is_error(f) || f->cause == NULL || f->cause->domain == NULL ||
      strcmp(f->cause->domain, CT_RPC_DATA_DOMAIN) != 0)
    return NULL;
  return f->cause->message;
}

static void json_free(void *p) {
  json_decref(p);
}

ct_value ct_rpc_value(json_t *j) {
  return j == NULL ? CT_NONE : ct_value_of(j, json_free);
}

ct_failure *ct__rpc_failure_from_json(const json_t *err) {
  json_t *code = json_object_get(err, "code");
  json_t *msg = json_object_get(err, "message");
  json_t *data = json_object_get(err, "data");
  int c = json_is_integer(code) ? (int)json_integer_value(code)
                                : CT_RPC_INTERNAL_ERROR;
  if (c >= 0)
    c = CT_RPC_INTERNAL_ERROR; /* codes are negative; keep failures so */
  return ct_rpc_error_new(c, data != NULL ? json_incref(data) : NULL, "%s",
                          json_is_string(msg) ? json_string_value(msg)
                                              : "(no message)");
}

/* -------------------------------------------------------------- buffer */

int ct__rpc_buf_reserve(ct__rpc_buf *b, size_t more) {
  if (b->cap - b->len >= more)
    return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < more) {
    if (cap > SIZE_MAX / 2)
      return CT_ENOMEM;
    cap *= 2;
  }
  char *p = realloc(b->data, cap);
  if (p == NULL)
    return CT_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int ct__rpc_buf_add(ct__rpc_buf *b, const void *p, size_t n) {
  if (ct__rpc_buf_reserve(b, n) != 0)
    return CT_ENOMEM;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

int ct__rpc_buf_json(ct__rpc_buf *b, const json_t *j) {
  const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
  size_t need = json_dumpb(j, b->data + b->len, b->cap - b->len, flags);
  if (need == 0)
    return CT_ENOMEM; /* jansson's only failure: no memory, bad value */
  if (need > b->cap - b->len) {
    if (ct__rpc_buf_reserve(b, need) != 0)
      return CT_ENOMEM;
    need = json_dumpb(j, b->data + b->len, b->cap - b->len, flags);
  }
  b->len += need;
  return 0;
}

/* Ids and integer results are written on every reply: digits by hand,
 * as snprintf costs more than the rest of the envelope. */
int ct__rpc_buf_int(ct__rpc_buf *b, long long v) {
  if (ct__rpc_buf_reserve(b, 24) != 0)
    return CT_ENOMEM;
  char tmp[24];
  size_t n = 0;
  unsigned long long u =
      v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  do {
    tmp[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u != 0);
  char *o = b->data + b->len;
  if (v < 0)
    *o++ = '-';
  while (n > 0)
    *o++ = tmp[--n];
  b->len = (size_t)(o - b->data);
  return 0;
}

int ct__rpc_buf_value(ct__rpc_buf *b, const json_t *j) {
  if (j == NULL || json_is_null(j))
    return ct__rpc_buf_lit(b, "null");
  if (json_is_integer(j))
    return ct__rpc_buf_int(b, (long long)json_integer_value(j));
  if (json_is_true(j))
    return ct__rpc_buf_lit(b, "true");
  if (json_is_false(j))
    return ct__rpc_buf_lit(b, "false");
  return ct__rpc_buf_json(b, j);
}

/* Length of the UTF-8 sequence at s (valid, shortest form, no surrogate),
 * or 0. */
static size_t utf8_len(const unsigned char *s) {
  unsigned c = s[0];
  if (c < 0x80)
    return 1;
  size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
  if (n == 0 || c > 0xf4)
    return 0;
  unsigned cp = c & (0x3fu >> (n - 1));
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
      (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0;
  return n;
}

int ct__rpc_buf_str(ct__rpc_buf *b, const char *s) {
  size_t n = strlen(s);
  /* Worst case: every byte becomes \u00XX. */
  if (ct__rpc_buf_reserve(b, n * 6 + 2) != 0)
    return CT_ENOMEM;
  size_t start = b->len;
  char *o = b->data + b->len;
  *o++ = '"';
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      *o++ = '\\';
      *o++ = (char)c;
      i++;
    } else if (c < 0x20) {
      o += sprintf(o, "\\u%04x", c);
      i++;
    } else {
      size_t l = utf8_len((const unsigned char *)s + i);
      if (l == 0) {
        b->len = start;
        return CT_EINVAL;
      }
      memcpy(o, s + i, l);
      o += l;
      i += l;
    }
  }
  *o++ = '"';
  b->len = (size_t)(o - b->data);
  return 0;
}

void ct__rpc_buf_free(ct__rpc_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* --------------------------------------------------------------- depth */

size_t ct__rpc_depth(const char *s, size_t len, size_t limit) {
  size_t depth = 0, max = 0;
  int in_str = 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (in_str) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_str = 0;
    } else if (c == '"') {
      in_str = 1;
    } else if (c == '[' || c == '{') {
      if (++depth > max && (max = depth) > limit)
        return max;
    } else if ((c == ']' || c == '}') && depth > 0) {
      depth--;
    }
  }
  return max;
}

/* -------------------------------------------------------------- header */

ct_msg_header *ct__rpc_header(int64_t deadline_ms) {
  ct_msg_header *h = ct_msg_header_new();
  if (h == NULL)
    return NULL;
  if (ct_msg_header_set_str(h, "content-type", "application/json") != 0 ||
      (deadline_ms >= 0 &&
       ct_msg_header_set_int(h, CT_RPC_DEADLINE_KEY, deadline_ms) != 0)) {
    ct_msg_header_free(h);
    return NULL;
  }
  return h;
}

/* -------------------------------------------------------------- id map */

static size_t slot_of(uint64_t key, size_t cap) {
  key *= 0x9e3779b97f4a7c15ull; /* Fibonacci hashing spreads sequential ids */
  return (size_t)(key >> 32) & (cap - 1);
}

static int idmap_grow(ct__rpc_idmap *m) {
  size_t cap = m->cap ? m->cap * 2 : 64;
  struct ct__rpc_slot *s = calloc(cap, sizeof *s);
  if (s == NULL)
    return CT_ENOMEM;
  for (size_t i = 0; i < m->cap; i++) {
    if (m->slots[i].key == 0)
      continue;
    size_t j = slot_of(m->slots[i].key, cap);
    while (s[j].key != 0)
      j = (j + 1) & (cap - 1);
    s[j] = m->slots[i];
  }
  free(m->slots);
  m->slots = s;
  m->cap = cap;
  return 0;
}

int ct__rpc_idmap_put(ct__rpc_idmap *m, uint64_t key, void *val) {
  if ((m->count + 1) * 2 > m->cap && idmap_grow(m) != 0)
    return CT_ENOMEM;
  size_t j = slot_of(key, m->cap);
  while (m->slots[j].key != 0 && m->slots[j].key != key)
    j = (j + 1) & (m->cap - 1);
  if (m->slots[j].key == 0)
    m->count++;
  m->slots[j].key = key;
  m->slots[j].val = val;
  return 0;
}

static size_t idmap_find(const ct__rpc_idmap *m, uint64_t key) {
  if (m->cap == 0 || key == 0)
    return SIZE_MAX;
  size_t j = slot_of(key, m->cap);
  while (m->slots[j].key != 0) {
    if (m->slots[j].key == key)
      return j;
    j = (j + 1) & (m->cap - 1);
  }
  return SIZE_MAX;
}

void *ct__rpc_idmap_get(const ct__rpc_idmap *m, uint64_t key) {
  size_t j = idmap_find(m, key);
  return j == SIZE_MAX ? NULL : m->slots[j].val;
}

/* Deletion shifts later entries of the probe run back (no tombstones, so
 * lookups never degrade however many calls come and go). */
void *ct__rpc_idmap_del(ct__rpc_idmap *m, uint64_t key) {
  size_t j = idmap_find(m, key);
  if (j == SIZE_MAX)
    return NULL;
  void *val = m->slots[j].val;
  size_t mask = m->cap - 1;
  for (size_t k = (j + 1) & mask; m->slots[k].key != 0; k = (k + 1) & mask) {
    size_t home = slot_of(m->slots[k].key, m->cap);
    /* Move k into the hole j unless its home lies cyclically in (j, k]. */
    if ((k > j && (home <= j || home > k)) ||
        (k < j && (home <= j && home > k))) {
      m->slots[j] = m->slots[k];
      j = k;
    }
  }
  m->slots[j].key = 0;
  m->slots[j].val = NULL;
  m->count--;
  return val;
}

void ct__rpc_idmap_free(ct__rpc_idmap *m) {
  free(m->slots);
  m->slots = NULL;
  m->cap = m->count = 0;
}
