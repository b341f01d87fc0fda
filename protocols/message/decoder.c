/* The incremental frame decoder: a three-state machine (length, header,
 * content).  A part that arrives whole inside one chunk is used in place
 * (zero copy); a part split across chunks is gathered into a buffer that
 * never exceeds the limits, because each length is checked before any of
 * its bytes are stored. */
#include <stdlib.h>
#include <string.h>

#include "protocols/message/internal.h"

/* A gathering buffer larger than this is released after its frame, so an
 * idle connection does not keep a 16 MiB content buffer. */
#define CT__MSG_KEEP_BUF (64u * 1024u)

void ct__msg_limits_fill(ct_msg_limits *out, const ct_msg_limits *in) {
  out->max_header = CT_MSG_MAX_HEADER_DEFAULT;
  out->max_content = CT_MSG_MAX_CONTENT_DEFAULT;
  if (in != NULL) {
    if (in->max_header > 0)
      out->max_header = in->max_header;
    if (in->max_content > 0)
      out->max_content = in->max_content;
  }
  if (out->max_header > UINT32_MAX)
    out->max_header = UINT32_MAX;
}

void ct__msg_decoder_init(ct_msg_decoder *d, const ct_msg_limits *limits,
                          ct_msg_frame_cb cb, void *arg) {
  memset(d, 0, sizeof *d);
  ct__msg_limits_fill(&d->limits, limits);
  d->cb = cb;
  d->arg = arg;
  d->state = CT__MSG_LEN;
}

void ct__msg_decoder_clear(ct_msg_decoder *d) {
  ct__buf_free(&d->part);
  ct_msg_header_free(d->header);
  d->header = NULL;
  ct_msg_header_free(d->cached);
  d->cached = NULL;
  d->cached_len = 0;
  d->have = 0;
}

ct_msg_decoder *ct_msg_decoder_new(const ct_msg_limits *limits,
                                   ct_msg_frame_cb cb, void *arg) {
  ct_msg_decoder *d = malloc(sizeof *d);
  if (d != NULL)
    ct__msg_decoder_init(d, limits, cb, arg);
  return d;
}

void ct_msg_decoder_free(ct_msg_decoder *d) {
  if (d == NULL)
    return;
  ct__msg_decoder_clear(d);
  free(d);
}

size_t ct_msg_decoder_buffered(const ct_msg_decoder *d) {
  if (d == NULL || d->state == CT__MSG_FAILED)
    return 0;
  if (d->state == CT__MSG_LEN)
    return d->have;
  /* The length prefix is consumed; count it with the part gathered. */
  size_t n = 4 + d->have;
  if (d->state == CT__MSG_CONTENT && d->header != NULL)
    n += 2; /* at least "{}" was read; an approximation for the header */
  return n;
}

static int fail(ct_msg_decoder *d, ct_failure **err, ct_failure *f) {
  int code = f->code;
  ct__msg_decoder_clear(d);
  d->state = CT__MSG_FAILED;
  if (err != NULL)
    *err = f;
  else
    ct_failure_free(f);
  return code;
}

#define MSG_FAIL(code, ...)                                                    \
  ct_failure_new_at(__FILE__, __LINE__, "message", (code), NULL, __VA_ARGS__)

static const char *type_phrase(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "an object";
  case JSON_ARRAY:
    return "an array";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
    return "an integer";
  case JSON_REAL:
    return "a real number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "a boolean";
  case JSON_NULL:
    return "null";
  }
  return "unknown";
}

/* The fast path for the common header: a flat object of printable-ASCII
 * strings without escapes and of small integers, no whitespace, e.g.
 * {"type":"chat","content-length":5}.  It builds the same jansson object the
 * full parser would, several times faster.  Anything else (escapes,
 * non-ASCII, whitespace, big numbers, other value types, duplicate keys,
 * malformed text) returns NULL and the caller uses json_loadb(), which
 * gives the authoritative answer and the error message. */
static json_t *parse_simple(const char *p, size_t n) {
  const char *end = p + n;
  if (n < 2 || *p != '{')
    return NULL;
  json_t *obj = json_object();
  if (obj == NULL)
    return NULL;
  p++;
  if (*p == '}') {
    if (p + 1 == end)
      return obj;
    goto fallback;
  }
  for (;;) {
    /* key */
    if (p >= end || *p != '"')
      goto fallback;
    const char *k = ++p;
    while (p < end && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f &&
           *p != '"' && *p != '\\')
      p++;
    if (p >= end || *p != '"')
      goto fallback;
    size_t kl = (size_t)(p - k);
    char key[128];
    if (kl >= sizeof key)
      goto fallback;
    memcpy(key, k, kl);
    key[kl] = 0;
    p++;
    if (p >= end || *p != ':')
      goto fallback;
    p++;
    if (p >= end)
      goto fallback;
    json_t *v;
    if (*p == '"') {
      const char *sv = ++p;
      while (p < end && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f &&
             *p != '"' && *p != '\\')
        p++;
      if (p >= end || *p != '"')
        goto fallback;
      v = json_stringn_nocheck(sv, (size_t)(p - sv));
      p++;
    } else {
      int neg = 0;
      if (*p == '-') {
        neg = 1;
        p++;
      }
      const char *ds = p;
      long long x = 0;
      while (p < end && *p >= '0' && *p <= '9' && p - ds < 18)
        x = x * 10 + (*p++ - '0');
      size_t nd = (size_t)(p - ds);
      if (nd == 0 || (nd > 1 && *ds == '0') ||
          (p < end &&
           ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E')))
        goto fallback;
      v = json_integer(neg ? -x : x);
    }
    if (v == NULL)
      goto fallback;
    if (json_object_get(obj, key) != NULL ||
        json_object_set_new_nocheck(obj, key, v) != 0) {
      json_decref(v);
      goto fallback;
    }
    if (p >= end)
      goto fallback;
    if (*p == ',') {
      p++;
      continue;
    }
    if (*p == '}' && p + 1 == end)
      return obj;
    goto fallback;
  }
fallback:
  json_decref(obj);
  return NULL;
}

/* Parse and validate a header; on success return it and set *clen. */
static json_t *parse_header(ct_msg_decoder *d, const char *p, size_t n,
                            size_t *clen, ct_failure **f) {
  if (n == 0) {
    *f = MSG_FAIL(CT_EPROTO, "message header is empty (an empty header is "
                             "{}, 2 bytes)");
    return NULL;
  }
  json_error_t je;
  json_t *j = parse_simple(p, n);
  if (j == NULL)
    j = json_loadb(p, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
  if (j == NULL) {
    *f = MSG_FAIL(CT_EPROTO,
                  "message header is not valid JSON: %s "
                  "(byte %d)",
                  je.text, je.position);
    return NULL;
  }
  if (!json_is_object(j)) {
    *f = MSG_FAIL(CT_EPROTO, "message header is not a JSON object (got %s)",
                  type_phrase(j));
    json_decref(j);
    return NULL;
  }
  const char *key;
  json_t *v;
  *clen = 0;
  json_object_foreach(j, key, v) {
    if (strcmp(key, CT_MSG_CONTENT_LENGTH) == 0) {
      if (!json_is_integer(v)) {
        *f = MSG_FAIL(CT_EPROTO,
                      "message content-length is not an integer "
                      "(got %s)",
                      type_phrase(v));
        json_decref(j);
        return NULL;
      }
      json_int_t c = json_integer_value(v);
      if (c < 0) {
        *f = MSG_FAIL(CT_EPROTO, "message content-length is negative (%lld)",
                      (long long)c);
        json_decref(j);
        return NULL;
      }
      if ((unsigned long long)c > (unsigned long long)d->limits.max_content) {
        *f = MSG_FAIL(CT_ETOOBIG,
                      "message content of %lld bytes is over "
                      "the limit of %zu bytes",
                      (long long)c, d->limits.max_content);
        json_decref(j);
        return NULL;
      }
      *clen = (size_t)c;
    } else if (!json_is_string(v) && !json_is_integer(v)) {
      *f = MSG_FAIL(CT_EPROTO,
                    "message header value \"%.64s\" is %s; only "
                    "strings and integers are allowed",
                    key, type_phrase(v));
      json_decref(j);
      return NULL;
    }
  }
  return j;
}

/* Gather up to d->need bytes of the current part.  Returns a pointer to the
 * complete part (in place or in the buffer), or NULL if more is needed. */
static const char *gather(ct_msg_decoder *d, const char **pp, const char *end,
                          int *oom) {
  const char *p = *pp;
  size_t avail = (size_t)(end - p);
  if (d->have == 0 && avail >= d->need) {
    *pp = p + d->need;
    return p;
  }
  size_t take = d->need - d->have;
  if (take > avail)
    take = avail;
  /* The buffer grows with what arrived (by doubling), never to the
   * announced size up front: a header declaring 16 MiB must not reserve
   * 16 MiB per connection. */
  if (ct__buf_append(&d->part, p, take) != 0) {
    *oom = 1;
    return NULL;
  }
  d->have += take;
  *pp = p + take;
  return d->have == d->need ? ct__buf_head(&d->part) : NULL;
}

static void frame_done(ct_msg_decoder *d) {
  ct_msg_header_free(d->header);
  d->header = NULL;
  d->have = 0;
  d->state = CT__MSG_LEN;
  ct__buf_clear(&d->part);
  /* A big buffer (mapped) goes back to the system with its frame. */
  ct__buf_shrink(&d->part, CT__MSG_KEEP_BUF);
}

int ct_msg_decoder_feed(ct_msg_decoder *d, const void *data, size_t len,
                        ct_failure **err) {
  if (d == NULL || (data == NULL && len > 0))
    return CT_EINVAL;
  if (d->state == CT__MSG_FAILED)
    return CT_ESTATE;
  const char *p = data, *end = (const char *)data + len;
  int oom = 0;
  while (p < end) {
    if (d->state == CT__MSG_LEN) {
      const unsigned char *lp;
      if (d->have == 0 && end - p >= 4) {
        lp = (const unsigned char *)p;
        p += 4;
      } else {
        while (d->have < 4 && p < end)
          d->lenbuf[d->have++] = (unsigned char)*p++;
        if (d->have < 4)
          break;
        lp = d->lenbuf;
      }
      uint32_t h = ((uint32_t)lp[0] << 24) | ((uint32_t)lp[1] << 16) |
                   ((uint32_t)lp[2] << 8) | (uint32_t)lp[3];
      d->have = 0;
      if (h > d->limits.max_header)
        return fail(d, err,
                    MSG_FAIL(CT_ETOOBIG,
                             "message header of %lu "
                             "bytes is over the limit "
                             "of %zu bytes",
                             (unsigned long)h, d->limits.max_header));
      d->need = h;
      d->state = CT__MSG_HEADER;
      if (h == 0) {
        ct_failure *f = NULL;
        size_t clen;
        (void)parse_header(d, "", 0, &clen, &f);
        return fail(d, err, f);
      }
    } else if (d->state == CT__MSG_HEADER) {
      const char *hp = gather(d, &p, end, &oom);
      if (hp == NULL) {
        if (oom)
          return fail(d, err,
                      MSG_FAIL(CT_ENOMEM, "message header: out of "
                                          "memory"));
        break;
      }
      ct_failure *f = NULL;
      size_t clen = 0;
      ct_msg_header *j = NULL;
      if (d->cached != NULL && d->cached_len == d->need &&
          memcmp(d->cached_raw, hp, d->need) == 0) {
        j = ct_msg_header_ref(d->cached);
        clen = d->cached_clen;
      } else {
        json_t *obj = parse_header(d, hp, d->need, &clen, &f);
        if (obj == NULL)
          return fail(d, err, f);
        /* Every received header is read-only (message.h). */
        j = ct__msg_header_wrap(obj, 1);
        if (j == NULL)
          return fail(d, err,
                      MSG_FAIL(CT_ENOMEM, "message header: out of memory"));
        if (d->need <= CT__MSG_CACHE_MAX) {
          ct_msg_header_free(d->cached);
          d->cached = ct_msg_header_ref(j);
          memcpy(d->cached_raw, hp, d->need);
          d->cached_len = d->need;
          d->cached_clen = clen;
        }
      }
      d->have = 0;
      ct__buf_clear(&d->part); /* the header part is parsed */
      d->header = j;
      if (clen == 0) {
        int stop = d->cb != NULL ? d->cb(d->arg, j, NULL, 0) : 0;
        frame_done(d);
        if (stop)
          return 1;
      } else {
        d->need = clen;
        d->state = CT__MSG_CONTENT;
      }
    } else { /* CT__MSG_CONTENT */
      const char *cp = gather(d, &p, end, &oom);
      if (cp == NULL) {
        if (oom)
          return fail(d, err,
                      MSG_FAIL(CT_ENOMEM, "message content: out of "
                                          "memory"));
        break;
      }
      int stop = d->cb != NULL ? d->cb(d->arg, d->header, cp, d->need) : 0;
      frame_done(d);
      if (stop)
        return 1;
    }
  }
  return 0;
}
