/* The common case of json_loadb(JSON_DECODE_ANY), several times faster.
 *
 * jansson's parser reads through a character stream with a UTF-8 decoder
 * and copies every token into a string buffer: 12,400 instructions for a
 * 50-byte `add` request, 80% of the server's work per call.  Requests are
 * mostly plain: ASCII strings without escapes, integers, short nesting.
 * This parser builds the very same jansson tree for that subset in one pass
 * over the bytes, and gives up (returns NULL) on anything else -- escapes,
 * non-ASCII text, very long integers, deep nesting, invalid JSON -- so the
 * caller runs json_loadb(), which stays the one authority on what is valid
 * and on every error message.  test/fuzz/fuzz_jsonfast.c checks both
 * parsers against each other: whenever this one accepts, jansson accepts
 * and builds an equal tree, serialised byte for byte the same. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/jsonrpc/internal.h"

/* Deeper documents go to jansson (its own limit is 2048). */
#define FJ_MAX_DEPTH 64
/* Integers of more digits might not fit in json_int_t: jansson decides. */
#define FJ_MAX_INT_DIGITS 18
/* Longer real-number literals go to jansson. */
#define FJ_MAX_REAL 63

typedef struct fj {
  const char *p, *e;
  int depth;
} fj;

static json_t *fj_value(fj *f);

static void fj_ws(fj *f) {
  while (f->p < f->e &&
         (*f->p == ' ' || *f->p == '\n' || *f->p == '\r' || *f->p == '\t'))
    f->p++;
}

static int fj_digit(const char *q) {
  return *q >= '0' && *q <= '9';
}

/* A string of printable ASCII without escapes, at f->p (a quote). */
static int fj_string(fj *f, const char **s, size_t *n) {
  const char *q = f->p + 1;
  for (const char *st = q; q < f->e; q++) {
    unsigned char c = (unsigned char)*q;
    if (c == '"') {
      *s = st;
      *n = (size_t)(q - st);
      f->p = q + 1;
      return 0;
    }
    if (c < 0x20 || c >= 0x80 || c == '\\')
      return -1;
  }
  return -1;
}

/* A number by RFC 8259's grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
 */
static json_t *fj_number(fj *f) {
  const char *q = f->p, *st = q;
  int neg = 0, real = 0;
  if (*q == '-') {
    neg = 1;
    q++;
  }
  if (q >= f->e || !fj_digit(q))
    return NULL;
  const char *digits = q;
  if (*q == '0')
    q++;
  else
    while (q < f->e && fj_digit(q))
      q++;
  size_t ndigits = (size_t)(q - digits);
  if (q < f->e && *q == '.') {
    real = 1;
    if (++q >= f->e || !fj_digit(q))
      return NULL;
    while (q < f->e && fj_digit(q))
      q++;
  }
  if (q < f->e && (*q == 'e' || *q == 'E')) {
    real = 1;
    if (++q < f->e && (*q == '+' || *q == '-'))
      q++;
    if (q >= f->e || !fj_digit(q))
      return NULL;
    while (q < f->e && fj_digit(q))
      q++;
  }
  f->p = q;
  if (!real) {
    if (ndigits > FJ_MAX_INT_DIGITS)
      return NULL;
    long long v = 0;
    for (const char *d = digits; d < q; d++)
      v = v * 10 + (*d - '0');
    return json_integer(neg ? -v : v);
  }
  size_t n = (size_t)(q - st);
  if (n > FJ_MAX_REAL)
    return NULL;
  char tmp[FJ_MAX_REAL + 1], *end;
  memcpy(tmp, st, n);
  tmp[n] = '\0';
  errno = 0;
  double v = strtod(tmp, &end);
  /* Overflow is jansson's error to report; a locale whose decimal point is
   * not '.' stops strtod early: jansson copes with that, so let it. */
  if ((size_t)(end - tmp) != n || (errno == ERANGE && (v > 1.0 || v < -1.0)))
    return NULL;
  return json_real(v);
}

static json_t *fj_array(fj *f) {
  json_t *a = json_array();
  if (a == NULL)
    return NULL;
  f->p++;
  fj_ws(f);
  if (f->p < f->e && *f->p == ']') {
    f->p++;
    return a;
  }
  for (;;) {
    json_t *v = fj_value(f);
    if (v == NULL || json_array_append_new(a, v) != 0)
      break;
    fj_ws(f);
    if (f->p >= f->e)
      break;
    if (*f->p == ']') {
      f->p++;
      return a;
    }
    if (*f->p++ != ',')
      break;
    fj_ws(f);
  }
  json_decref(a);
  return NULL;
}

static json_t *fj_object(fj *f) {
  json_t *o = json_object();
  if (o == NULL)
    return NULL;
  f->p++;
  fj_ws(f);
  if (f->p < f->e && *f->p == '}') {
    f->p++;
    return o;
  }
  for (;;) {
    const char *k;
    size_t kn;
    if (f->p >= f->e || *f->p != '"' || fj_string(f, &k, &kn) != 0)
      break;
    fj_ws(f);
    if (f->p >= f->e || *f->p++ != ':')
      break;
    fj_ws(f);
    json_t *v = fj_value(f);
    /* A repeated key replaces the earlier value, as in jansson. */
    if (v == NULL || json_object_setn_new_nocheck(o, k, kn, v) != 0)
      break;
    fj_ws(f);
    if (f->p >= f->e)
      break;
    if (*f->p == '}') {
      f->p++;
      return o;
    }
    if (*f->p++ != ',')
      break;
    fj_ws(f);
  }
  json_decref(o);
  return NULL;
}

/* Match the literal `word` (its length `n`) at f->p. */
static int fj_word(fj *f, const char *word, size_t n) {
  if ((size_t)(f->e - f->p) < n || memcmp(f->p, word, n) != 0)
    return 0;
  f->p += n;
  return 1;
}

static json_t *fj_value(fj *f) {
  if (f->p >= f->e)
    return NULL;
  json_t *v;
  switch (*f->p) {
  case '{':
  case '[':
    if (f->depth >= FJ_MAX_DEPTH)
      return NULL;
    f->depth++;
    v = *f->p == '{' ? fj_object(f) : fj_array(f);
    f->depth--;
    return v;
  case '"': {
    const char *s;
    size_t n;
    return fj_string(f, &s, &n) == 0 ? json_stringn_nocheck(s, n) : NULL;
  }
  case 't':
    return fj_word(f, "true", 4) ? json_true() : NULL;
  case 'f':
    return fj_word(f, "false", 5) ? json_false() : NULL;
  case 'n':
    return fj_word(f, "null", 4) ? json_null() : NULL;
  default:
    return fj_number(f);
  }
}

json_t *ct__rpc_json_fast(const char *s, size_t len) {
  if (s == NULL)
    return NULL;
  fj f = {s, s + len, 0};
  fj_ws(&f);
  json_t *v = fj_value(&f);
  if (v == NULL)
    return NULL;
  fj_ws(&f);
  if (f.p != f.e) {
    json_decref(v);
    return NULL;
  }
  return v;
}

/* A plain string (fj_string()) at f->p, which may be anything. */
static int fj_plain(fj *f, const char **k, size_t *kn) {
  return f->p < f->e && *f->p == '"' && fj_string(f, k, kn) == 0 ? 0 : -1;
}

int ct__rpc_envelope_fast(const char *s, size_t len, ct__rpc_envelope *out) {
  memset(out, 0, sizeof *out);
  fj f = {s, s + len, 1};
  if (s == NULL)
    return -1;
  fj_ws(&f);
  if (f.p >= f.e || *f.p++ != '{')
    return -1;
  fj_ws(&f);
  unsigned seen = 0;
  int ok = f.p < f.e && *f.p != '}';
  while (ok) {
    const char *k;
    size_t kn;
    ok = fj_plain(&f, &k, &kn) == 0;
    if (ok) {
      fj_ws(&f);
      ok = f.p < f.e && *f.p++ == ':';
      fj_ws(&f);
    }
    unsigned bit = !ok                                       ? 0
                   : kn == 7 && memcmp(k, "jsonrpc", 7) == 0 ? 1
                   : kn == 6 && memcmp(k, "method", 6) == 0  ? 2
                   : kn == 6 && memcmp(k, "params", 6) == 0  ? 4
                   : kn == 2 && memcmp(k, "id", 2) == 0      ? 8
                                                             : 0;
    /* Other members and repeated ones: jansson's path decides. */
    if (bit == 0 || (seen & bit) != 0)
      break;
    seen |= bit;
    if (bit == 1 || bit == 2) {
      const char *v;
      size_t vn;
      if (fj_plain(&f, &v, &vn) != 0 || (bit == 2 && vn >= CT__RPC_METHOD_MAX))
        break;
      if (bit == 1) {
        out->version = v;
        out->version_len = vn;
      } else {
        memcpy(out->method, v, vn);
        out->method[vn] = '\0';
        out->has_method = 1;
      }
    } else {
      json_t *v = fj_value(&f);
      if (v == NULL)
        break;
      *(bit == 4 ? &out->params : &out->id) = v;
    }
    fj_ws(&f);
    if (f.p < f.e && *f.p == ',') {
      f.p++;
      fj_ws(&f);
      continue;
    }
    if (f.p < f.e && *f.p == '}') {
      f.p++;
      fj_ws(&f);
      if (f.p == f.e)
        return 0;
    }
    break;
  }
  json_decref(out->params);
  json_decref(out->id);
  memset(out, 0, sizeof *out);
  return -1;
}

json_t *ct__rpc_json_load(const char *s, size_t len, json_error_t *err) {
  json_t *v = ct__rpc_json_fast(s, len);
  return v != NULL ? v
                   : json_loadb(s != NULL ? s : "", len, JSON_DECODE_ANY, err);
}
