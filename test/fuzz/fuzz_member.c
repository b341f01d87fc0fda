/*
 * libFuzzer target for member JSON (discovery.h): the data of a znode
 * under /ctwist/services/NAME, which anyone with access to ZooKeeper can
 * write.  Whatever is accepted must yield a client endpoint that parses;
 * whatever is refused must say why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/discovery.h"
#include "ctwist/endpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char ep[700];
  ct_failure *err = NULL;
  int rc =
      ct_service_member_endpoint((const char *)data, size, ep, sizeof ep, &err);
  if (rc != 0) {
    if (err == NULL || err->code != rc || err->message == NULL)
      abort();
    ct_failure_free(err);
    return 0;
  }
  if (err != NULL)
    abort();
  ct_endpoint e = {0};
  if (ct_endpoint_parse_client(ep, &e, NULL) != 0 || e.kind != CT_ENDPOINT_TCP)
    abort();
  ct_endpoint_clear(&e);
  return 0;
}
