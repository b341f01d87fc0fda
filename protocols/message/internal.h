/* Internal declarations shared by the message protocol's files. */
#ifndef CT_PROTOCOLS_MESSAGE_INTERNAL_H
#define CT_PROTOCOLS_MESSAGE_INTERNAL_H

#include <jansson.h>
#include <stddef.h>

#include "ctwist/message.h"
#include "reactor/buf.h"

/* A header: a jansson object plus our own reference count and an explicit
 * read-only flag.  Read-only-ness must not be guessed from jansson's
 * refcount: every received header is read-only, however many references
 * it has (message.h). */
struct ct_msg_header {
  json_t *obj;
  unsigned refs;
  unsigned char readonly;
  /* The encoded members ("{" and every key:value but content-length, no
   * closing brace), made on the first send and dropped by every change:
   * a server answering with the same header encodes it once. */
  char *enc;
  size_t enc_len;
};

static inline json_t *ct__msg_json(const ct_msg_header *h) {
  return h->obj;
}

/* Wrap `j` (its reference is taken over) in a header with one reference.
 * Returns NULL (and drops `j`) if memory runs out. */
ct_msg_header *ct__msg_header_wrap(json_t *j, int readonly);

/* Append the frame head (4-byte length + header JSON with content-length
 * set from `content_len`) to `b`.  Returns 0, CT_ENOMEM or CT_ETOOBIG. */
int ct__msg_encode_head(const ct_msg_header *h, size_t content_len, ct__buf *b);

/* Append a whole error frame, header {"type":"error","code":CODE,
 * "message":MESSAGE} and no content (docs/message-protocol.md).  The
 * message is cut to 1024 bytes on a UTF-8 boundary.  Returns 0 or
 * CT_ENOMEM. */
int ct__msg_encode_error(const char *code, const char *message, ct__buf *b);

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
  size_t have;  /* bytes gathered for the current part */
  size_t need;  /* size of the current part (H or C) */
  ct__buf part; /* gathering buffer for a split part (have == its len) */
  ct_msg_header *header; /* parsed header waiting for its content */
  /* The last small header, kept with its text: a frame whose header bytes
   * are identical reuses the (read-only) object (pipelined traffic repeats
   * headers), skipping the parse and its allocations. */
  ct_msg_header *cached;
  size_t cached_len, cached_clen;
  char cached_raw[CT__MSG_CACHE_MAX];
};

void ct__msg_decoder_init(ct_msg_decoder *d, const ct_msg_limits *limits,
                          ct_msg_frame_cb cb, void *arg);
void ct__msg_decoder_clear(ct_msg_decoder *d);
void ct__msg_limits_fill(ct_msg_limits *out, const ct_msg_limits *in);

/* 1 while bytes of an unfinished frame are held (a frame has started). */
static inline int ct__msg_decoder_partial(const ct_msg_decoder *d) {
  return d->state == CT__MSG_HEADER || d->state == CT__MSG_CONTENT ||
         (d->state == CT__MSG_LEN && d->have > 0);
}

#endif
