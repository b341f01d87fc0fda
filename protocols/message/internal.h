/* Internal declarations shared by the message protocol's files. */
#ifndef CT_PROTOCOLS_MESSAGE_INTERNAL_H
#define CT_PROTOCOLS_MESSAGE_INTERNAL_H

#include <jansson.h>
#include <stddef.h>

#include "ctwist/message.h"

/* A ct_msg_header pointer is the jansson object itself: no wrapper
 * allocation per message.  These two casts are the only place that knows. */
static inline json_t *ct__msg_json(const ct_msg_header *h) {
  return (json_t *)(void *)h;
}
static inline ct_msg_header *ct__msg_header_of(json_t *j) {
  return (ct_msg_header *)(void *)j;
}

/* A growable byte buffer that starts in caller-provided (stack) storage. */
typedef struct ct__msg_buf {
  char *data;
  size_t len, cap;
  int heap; /* data was malloc'd */
} ct__msg_buf;

static inline void ct__msg_buf_init(ct__msg_buf *b, char *stack, size_t cap) {
  b->data = stack;
  b->len = 0;
  b->cap = cap;
  b->heap = 0;
}
int ct__msg_buf_reserve(ct__msg_buf *b, size_t more);
void ct__msg_buf_release(ct__msg_buf *b);

/* Append the frame head (4-byte length + header JSON with content-length
 * set from `content_len`) to `b`.  Returns 0, CT_ENOMEM or CT_ETOOBIG. */
int ct__msg_encode_head(const ct_msg_header *h, size_t content_len,
                        ct__msg_buf *b);

/* Headers up to this size are cached by the decoder. */
#define CT__MSG_CACHE_MAX 128

/* The decoder, embeddable in a messenger. */
typedef enum {
  CT__MSG_LEN = 0,
  CT__MSG_HEADER,
  CT__MSG_CONTENT,
  CT__MSG_FAILED
} ct__msg_state;

struct ct_msg_decoder {
  ct_msg_limits limits;
  ct_msg_frame_cb cb;
  void *arg;
  ct__msg_state state;
  unsigned char lenbuf[4];
  size_t have; /* bytes gathered for the current part */
  size_t need; /* size of the current part (H or C) */
  char *buf;   /* gathering buffer for a split part */
  size_t buf_cap;
  json_t *header; /* parsed header waiting for its content */
  /* The last small header, kept with its text: a frame whose header bytes
   * are identical reuses the object when nobody else holds it (pipelined
   * traffic repeats headers), skipping the parse and its allocations. */
  json_t *cached;
  size_t cached_len, cached_clen;
  char cached_raw[CT__MSG_CACHE_MAX];
};

void ct__msg_decoder_init(ct_msg_decoder *d, const ct_msg_limits *limits,
                          ct_msg_frame_cb cb, void *arg);
void ct__msg_decoder_clear(ct_msg_decoder *d);
void ct__msg_limits_fill(ct_msg_limits *out, const ct_msg_limits *in);

#endif
