/*
 * libFuzzer target for endpoint descriptions.  Every input is parsed in
 * both roles; whatever parses must format to a canonical string that parses
 * again to the same canonical string, and a server endpoint must resolve
 * without touching the network.  Client hosts are not resolved (that would
 * be a blocking DNS lookup per input).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/endpoint.h"

static void check_role(const char *s, int client) {
  ct_endpoint e = {0};
  ct_failure *err = NULL;
  int rc = client ? ct_endpoint_parse_client(s, &e, &err)
                  : ct_endpoint_parse_server(s, &e, &err);
  if (rc != 0) {
    if (err == NULL || err->code != rc || e.kind != CT_ENDPOINT_NONE) {
      abort();
    }
    ct_failure_free(err);
    return;
  }
  if (err != NULL) {
    abort();
  }
  int n = ct_endpoint_format(&e, NULL, 0);
  if (n <= 0) {
    abort();
  }
  char *buf = malloc((size_t)n + 1);
  if (buf == NULL || ct_endpoint_format(&e, buf, (size_t)n + 1) != n ||
      strlen(buf) != (size_t)n) {
    abort();
  }
  ct_endpoint again = {0};
  rc = client ? ct_endpoint_parse_client(buf, &again, NULL)
              : ct_endpoint_parse_server(buf, &again, NULL);
  if (rc != 0 || again.kind != e.kind || again.port != e.port) {
    abort();
  }
  int n2 = ct_endpoint_format(&again, NULL, 0);
  char *buf2 = malloc((size_t)n2 + 1);
  if (buf2 == NULL || n2 != n) {
    abort();
  }
  ct_endpoint_format(&again, buf2, (size_t)n2 + 1);
  if (strcmp(buf, buf2) != 0) {
    abort();
  }
  if (!client) {
    struct sockaddr_storage ss;
    socklen_t len;
    ct_failure *rerr = NULL;
    if (ct_endpoint_resolve(&e, &ss, &len, &rerr) != 0) {
      abort(); /* a parsed server endpoint always has a usable address */
    }
  }
  free(buf);
  free(buf2);
  ct_endpoint_clear(&again);
  ct_endpoint_clear(&e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096) {
    return 0;
  }
  char *s = malloc(size + 1);
  if (s == NULL) {
    return 0;
  }
  memcpy(s, data, size);
  s[size] = '\0'; /* an embedded NUL simply ends the description early */
  check_role(s, 0);
  check_role(s, 1);
  free(s);
  return 0;
}
