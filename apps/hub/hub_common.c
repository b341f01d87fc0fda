/* Helpers shared by ct-hub and ct-filer (hub_common.h). */
#include "hub_common.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int hub_parse_seconds(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end != '\0' || errno != 0 || !isfinite(v) || v <= 0 ||
      v > 86400)
    return -1;
  *out = v;
  return 0;
}

int hub_parse_size(const char *s, size_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s || errno != 0 || s[0] == '-')
    return -1;
  unsigned shift = 0;
  switch (toupper((unsigned char)*end)) {
  case '\0':
    break;
  case 'K':
    shift = 10;
    break;
  case 'M':
    shift = 20;
    break;
  case 'G':
    shift = 30;
    break;
  default:
    return -1;
  }
  if (*end != '\0') {
    end++;
    if (toupper((unsigned char)*end) == 'I') /* KiB, MiB... */
      end++;
    if (toupper((unsigned char)*end) == 'B')
      end++;
    if (*end != '\0')
      return -1;
  }
  if (v > (SIZE_MAX >> shift))
    return -1;
  *out = (size_t)(v << shift);
  return 0;
}

ct_msg_header *hub_header(const char *type, int64_t req) {
  ct_msg_header *h = ct_msg_header_new();
  if (h == NULL)
    return NULL;
  if (ct_msg_header_set_str(h, "type", type) != 0 ||
      (req > 0 && ct_msg_header_set_int(h, "req", req) != 0)) {
    ct_msg_header_free(h);
    return NULL;
  }
  return h;
}

int hub_valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > HUB_NAME_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!isgraph((unsigned char)s[i]))
      return 0;
  return 1;
}

void hub_send_error(ct_messenger *m, int64_t req, const char *code,
                    const char *text) {
  ct_msg_header *h = hub_header("error", req);
  if (h == NULL)
    return;
  ct_msg_header_set_str(h, "code", code);
  ct_msg_header_set_str(h, "message", text);
  ct_messenger_send(m, h, NULL, 0);
  ct_msg_header_free(h);
}
