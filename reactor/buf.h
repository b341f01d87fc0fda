/*
 * reactor/buf.h: the one growable byte buffer and the one FIFO ring of the
 * tree.  Internal (ct__ prefix); every layer may use them.
 *
 * ct__buf is a byte queue: bytes are appended at the tail and consumed from
 * the head.  It holds two kinds of bytes, in one order:
 *
 *  - its own bytes, copied in by ct__buf_append() and kept in one
 *    contiguous block (compacted, grown by doubling, given back by
 *    ct__buf_shrink());
 *  - references to shared, reference-counted blobs (ct__blob), appended by
 *    ct__buf_append_blob() without copying: a broadcast queues one blob on
 *    every recipient's buffer, and each recipient's writev() reads it from
 *    the same memory.
 *
 * While a buffer holds no blob it is one contiguous region (ct__buf_head()
 * and ct__buf_len() describe it), which is the common case and costs
 * nothing extra.  Blocks of CT__BUF_MMAP bytes or more are private
 * mappings (grown with mremap, unmapped by ct__buf_shrink/free), so a
 * buffer that held one large frame gives its memory back to the system at
 * once; glibc would keep it (after the first large free it raises its mmap
 * threshold, and later large buffers come from the heap and stay), and a
 * library must not change the process's malloc settings.  Once a blob is
 * queued, the buffer keeps a small ring of segments (own-byte runs and blob
 * slices) and ct__buf_iov() describes it as iovecs for writev()/sendmsg().
 *
 * ct__ring is a FIFO of fixed-size elements (power-of-two capacity,
 * wrapping), used for the reactor's call_soon queue and the waiters and
 * values of deferred/sync.c.
 *
 * Neither is thread-safe; neither ever shrinks below what it holds.
 */
#ifndef CT_REACTOR_BUF_H
#define CT_REACTOR_BUF_H

#include <stddef.h>
#include <sys/uio.h>

#include "ctwist/bytes.h" /* struct ct_bytes's name, struct ct__buf */

/* ------------------------------------------------------------------ blob */

/* A shared, immutable, reference-counted byte blob: the public ct_bytes
 * (include/ctwist/bytes.h).  Created with refs 1 (the creator's); every
 * ct__buf that queues it takes one more. */
struct ct_bytes {
  unsigned refs;
  size_t len;
  const char *data;                    /* len bytes */
  void (*release)(struct ct_bytes *b); /* frees the blob when refs hit 0 */
};
typedef struct ct_bytes ct__blob;

/* A blob holding a copy of data[0..len) in the same allocation.  NULL if
 * memory runs out.  (A blob over other memory is any struct that starts
 * with ct__blob, refs 1, whose `release` frees that memory and the blob.) */
ct__blob *ct__blob_copy(const void *data, size_t len);
/* Take one more reference. */
static inline ct__blob *ct__blob_ref(ct__blob *b) {
  b->refs++;
  return b;
}
/* Drop one reference; the last one calls `release`.  NULL is ignored. */
void ct__blob_unref(ct__blob *b);

/* ------------------------------------------------------------------- buf */

#define CT__BUF_INIT                                                           \
  { 0 }

/* Blocks at least this large are mapped (glibc's default mmap threshold). */
#define CT__BUF_MMAP (128u * 1024u)

/* Start with the caller's storage (e.g. a stack array): no allocation until
 * more than `cap` bytes are needed; ct__buf_free() then frees only what the
 * buffer allocated itself. */
static inline void ct__buf_init_storage(ct__buf *b, char *storage, size_t cap) {
  *b = (ct__buf)CT__BUF_INIT;
  b->data = storage;
  b->cap = cap;
  b->borrowed = 1;
}

static inline size_t ct__buf_len(const ct__buf *b) {
  return b->len;
}
/* 1 if the buffer is one contiguous region (no blob queued). */
static inline int ct__buf_flat(const ct__buf *b) {
  return b->nsegs == 0;
}
/* The first byte (flat buffers: all bytes are at [head, head+len)). */
static inline char *ct__buf_head(const ct__buf *b) {
  return b->data + b->off;
}

/* Make room for `more` bytes after the own bytes (compacting first, then
 * doubling).  Returns 0 or CT_ENOMEM; on error nothing changes. */
int ct__buf_reserve(ct__buf *b, size_t more);
/* Room for at least `more` bytes at the tail, for writing in place; follow
 * with ct__buf_commit(b, n) for the n bytes written.  NULL on ENOMEM. */
char *ct__buf_tail(ct__buf *b, size_t more);
void ct__buf_commit(ct__buf *b, size_t n);
/* Append a copy of data[0..n).  0 or CT_ENOMEM (nothing appended). */
int ct__buf_append(ct__buf *b, const void *data, size_t n);
/* Append the bytes of iov[0..cnt) after skipping the first `skip` of them.
 * 0 or CT_ENOMEM (nothing appended). */
int ct__buf_appendv(ct__buf *b, const struct iovec *iov, int cnt, size_t skip);
/* Queue blob->data[off .. off+n) without copying; takes a reference on
 * the blob.  0 or CT_ENOMEM (no reference taken). */
int ct__buf_append_blob(ct__buf *b, ct__blob *blob, size_t off, size_t n);
/* Describe up to `max` leading iovecs of the queued bytes; returns how many
 * were filled (0 when empty). */
int ct__buf_iov(const ct__buf *b, struct iovec *iov, int max);
/* Copy the first n bytes (n <= len) to dst without consuming them. */
void ct__buf_copyout(const ct__buf *b, void *dst, size_t n);
/* Drop the first n bytes (n <= len), releasing blobs that are done. */
void ct__buf_consume(ct__buf *b, size_t n);
/* Append everything `src` holds to `dst` (own bytes copied, blobs shared)
 * and empty `src`.  0, or CT_ENOMEM with `src` unchanged and part of it
 * possibly appended to `dst` (callers close the connection then). */
int ct__buf_move(ct__buf *dst, ct__buf *src);
/* Drop everything. */
void ct__buf_clear(ct__buf *b);
/* Give the block back to the allocator when empty and larger than
 * `keep` bytes (keep 0: whenever empty). */
void ct__buf_shrink(ct__buf *b, size_t keep);
/* Free everything; the buffer is empty and reusable afterwards. */
void ct__buf_free(ct__buf *b);

/* ------------------------------------------------------------------ ring */

typedef struct ct__ring {
  char *items;           /* cap elements of `size` bytes */
  size_t size;           /* element size */
  size_t head, len, cap; /* cap is 0 or a power of two */
} ct__ring;

#define CT__RING_INIT(elem_size)                                               \
  { NULL, (elem_size), 0, 0, 0 }

static inline size_t ct__ring_len(const ct__ring *q) {
  return q->len;
}
/* Element i (0 = the oldest), i < len. */
static inline void *ct__ring_at(const ct__ring *q, size_t i) {
  return q->items + ((q->head + i) & (q->cap - 1)) * q->size;
}
/* Append a copy of *item.  0 or CT_ENOMEM. */
int ct__ring_push(ct__ring *q, const void *item);
/* Remove the oldest into *out (may be NULL).  0, or -1 if empty. */
int ct__ring_pop(ct__ring *q, void *out);
/* Remove element i, keeping the order of the others. */
void ct__ring_remove(ct__ring *q, size_t i);
void ct__ring_free(ct__ring *q);

#endif /* CT_REACTOR_BUF_H */
