/*
 * Shared by ct-hub and ct-filer: the message type names of the hub
 * protocol (docs/hub.md) and small command-line helpers.
 */
#ifndef CT_HUB_COMMON_H
#define CT_HUB_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "cli.h" /* ctapp_opt() */
#include "ctwist/message.h"

/* Largest member name and listening endpoint (bytes, without the NUL). */
#define HUB_NAME_MAX 63
#define HUB_ENDPOINT_MAX 255

/* Parse "S" (seconds, > 0, finite, <= 1 day) or a byte size with an
 * optional K/M/G suffix (binary).  Return 0 or -1. */
int hub_parse_seconds(const char *s, double *out);
int hub_parse_size(const char *s, size_t *out);

/* A header with "type" set (and "req" when req > 0), or NULL (no memory). */
ct_msg_header *hub_header(const char *type, int64_t req);

/* A valid member name: 1..HUB_NAME_MAX printable ASCII bytes, no space. */
int hub_valid_name(const char *s);

/* Send an error frame {"type":"error","code":CODE,"message":TEXT,"req":N}
 * on `m`. */
void hub_send_error(ct_messenger *m, int64_t req, const char *code,
                    const char *text);

#endif
