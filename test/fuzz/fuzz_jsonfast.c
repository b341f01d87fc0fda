/*
 * libFuzzer target for the JSON-RPC fast JSON parser
 * (protocols/jsonrpc/fastjson.c), differential against jansson: whenever
 * the fast parser accepts an input, json_loadb(JSON_DECODE_ANY) must accept
 * it too and build an equal tree that serialises to the same bytes (key
 * order, integer versus real, every value).  When the fast parser gives up,
 * nothing is checked: jansson decides those inputs in production as well.
 * The same holds for the request envelope (ct__rpc_envelope_fast()): when
 * it takes a text apart, jansson's object has exactly those members.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/jsonrpc/internal.h"

static int same_member(json_t *obj, const char *key, json_t *v) {
  json_t *r = json_object_get(obj, key);
  return v == NULL ? r == NULL : r != NULL && json_equal(r, v);
}

static void check_envelope(const char *s, size_t size) {
  ct__rpc_envelope env;
  if (ct__rpc_envelope_fast(s, size, &env) != 0)
    return;
  json_t *ref = json_loadb(size > 0 ? s : "", size, JSON_DECODE_ANY, NULL);
  if (!json_is_object(ref))
    abort();
  json_t *ver = json_object_get(ref, "jsonrpc");
  json_t *m = json_object_get(ref, "method");
  size_t members = (env.version != NULL) + env.has_method +
                   (env.params != NULL) + (env.id != NULL);
  if (json_object_size(ref) != members ||
      (env.version != NULL ? !json_is_string(ver) ||
                                 json_string_length(ver) != env.version_len ||
                                 memcmp(json_string_value(ver), env.version,
                                        env.version_len) != 0
                           : ver != NULL) ||
      (env.has_method
           ? !json_is_string(m) || strcmp(json_string_value(m), env.method) != 0
           : m != NULL) ||
      !same_member(ref, "params", env.params) ||
      !same_member(ref, "id", env.id))
    abort();
  json_decref(env.params);
  json_decref(env.id);
  json_decref(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  check_envelope(s, size);
  json_t *fast = ct__rpc_json_fast(s, size);
  if (fast == NULL)
    return 0;
  json_t *ref = json_loadb(size > 0 ? s : "", size, JSON_DECODE_ANY, NULL);
  if (ref == NULL || !json_equal(fast, ref))
    abort();
  size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17);
  char *a = json_dumps(fast, flags), *b = json_dumps(ref, flags);
  if (a == NULL || b == NULL || strcmp(a, b) != 0)
    abort();
  free(a);
  free(b);
  json_decref(fast);
  json_decref(ref);
  return 0;
}
