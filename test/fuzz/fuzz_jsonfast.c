/*
 * libFuzzer target for the JSON-RPC fast JSON parser
 * (protocols/jsonrpc/fastjson.c), differential against jansson: whenever
 * the fast parser accepts an input, json_loadb(JSON_DECODE_ANY) must accept
 * it too and build an equal tree that serialises to the same bytes (key
 * order, integer versus real, every value).  When the fast parser gives up,
 * nothing is checked: jansson decides those inputs in production as well.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/jsonrpc/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
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
