/* Internal declarations shared by the JSON-RPC server and client. */
#ifndef CT_PROTOCOLS_JSONRPC_INTERNAL_H
#define CT_PROTOCOLS_JSONRPC_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ctwist/jsonrpc.h"

/* A growable byte buffer (reused across calls: no allocation per reply
 * once it has grown to the usual size). */
typedef struct ct__rpc_buf {
  char *data;
  size_t len, cap;
} ct__rpc_buf;

int ct__rpc_buf_reserve(ct__rpc_buf *b, size_t more);
int ct__rpc_buf_add(ct__rpc_buf *b, const void *p, size_t n);
#define ct__rpc_buf_lit(b, s) ct__rpc_buf_add((b), (s), sizeof(s) - 1)
/* Append `j` serialised compactly (any JSON value).  0 or CT_ENOMEM. */
int ct__rpc_buf_json(ct__rpc_buf *b, const json_t *j);
/* Append `s` as a JSON string literal; CT_EINVAL if it is not UTF-8. */
int ct__rpc_buf_str(ct__rpc_buf *b, const char *s);
int ct__rpc_buf_int(ct__rpc_buf *b, long long v);
/* ct__rpc_buf_json() with the common scalars written directly (NULL is
 * the JSON null). */
int ct__rpc_buf_value(ct__rpc_buf *b, const json_t *j);
void ct__rpc_buf_free(ct__rpc_buf *b);

/* Deepest nesting of arrays/objects in the JSON text (strings skipped);
 * stops counting at `limit` + 1.  Checked before parsing, so a hostile
 * document costs no parse at all. */
size_t ct__rpc_depth(const char *s, size_t len, size_t limit);

/* json_loadb(s, len, JSON_DECODE_ANY) for the plain common case (ASCII
 * strings without escapes, numbers, arrays, objects), building the same
 * tree several times faster; NULL for anything else (fastjson.c). */
json_t *ct__rpc_json_fast(const char *s, size_t len);

/* The members of a plain request object, found without building the
 * object: the server's fast path for the usual single request. */
#define CT__RPC_METHOD_MAX 128
typedef struct ct__rpc_envelope {
  const char *version; /* "jsonrpc" (not NUL-terminated), NULL: absent */
  size_t version_len;
  char method[CT__RPC_METHOD_MAX]; /* "method", NUL-terminated */
  int has_method;
  json_t *params; /* owned; NULL: absent */
  json_t *id;     /* owned; NULL: absent */
} ct__rpc_envelope;

/* Fill `out` from `s` when it is exactly one plain object (see
 * ct__rpc_json_fast()) whose members are only jsonrpc and method (plain
 * strings), params and id, each at most once: 0.  Anything else: -1 and
 * nothing to free; parse it with ct__rpc_json_load(). */
int ct__rpc_envelope_fast(const char *s, size_t len, ct__rpc_envelope *out);

/* Parse any JSON text: ct__rpc_json_fast(), then json_loadb() when the
 * fast path gives up (jansson reports every error, in `err`). */
json_t *ct__rpc_json_load(const char *s, size_t len, json_error_t *err);

/* The header every frame carries ({"content-type": "application/json"}),
 * plus deadline-ms when ms >= 0.  NULL if memory runs out. */
ct_msg_header *ct__rpc_header(int64_t deadline_ms);

/* A failure from a response's "error" member (any shape tolerated). */
ct_failure *ct__rpc_failure_from_json(const json_t *err);

/* A map from call id to pointer (open addressing, linear probing). */
typedef struct ct__rpc_idmap {
  struct ct__rpc_slot {
    uint64_t key; /* 0: empty (ids start at 1) */
    void *val;
  } * slots;
  size_t cap, count;
} ct__rpc_idmap;

int ct__rpc_idmap_put(ct__rpc_idmap *m, uint64_t key, void *val);
void *ct__rpc_idmap_get(const ct__rpc_idmap *m, uint64_t key);
void *ct__rpc_idmap_del(ct__rpc_idmap *m, uint64_t key);
void ct__rpc_idmap_free(ct__rpc_idmap *m);

#endif
