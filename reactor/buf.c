/*
 * buf.c: the byte buffer and the FIFO ring of reactor/buf.h.
 *
 * The buffer keeps its own bytes in one block whatever else it holds, so
 * appending copies into that block and nothing else; the segment ring
 * exists only to interleave blob references with those bytes.  The
 * invariant that makes this simple: the own-byte segments, in queue order,
 * are exactly data[off .. off+olen), so consuming an own segment is the same
 * as advancing `off`, and compacting the block moves every own segment by
 * the same amount.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ctwist/bytes.h"
#include "ctwist/error.h"
#include "reactor/buf.h"

/* ------------------------------------------------------------------ blob */

static void blob_release_copy(ct__blob *b) {
  free(b);
}

ct__blob *ct__blob_copy(const void *data, size_t len) {
  if (len > SIZE_MAX - sizeof(ct__blob))
    return NULL;
  ct__blob *b = malloc(sizeof *b + len);
  if (b == NULL)
    return NULL;
  char *bytes = (char *)(b + 1);
  if (len > 0)
    memcpy(bytes, data, len);
  b->refs = 1;
  b->len = len;
  b->data = bytes;
  b->release = blob_release_copy;
  return b;
}

void ct__blob_unref(ct__blob *b) {
  if (b != NULL && --b->refs == 0)
    b->release(b);
}

/* The public face of the blob (include/ctwist/bytes.h). */
ct_bytes *ct_bytes_new(const void *data, size_t len) {
  if (data == NULL && len > 0)
    return NULL;
  return ct__blob_copy(data, len);
}

ct_bytes *ct_bytes_ref(ct_bytes *b) {
  return b != NULL ? ct__blob_ref(b) : NULL;
}

void ct_bytes_unref(ct_bytes *b) {
  ct__blob_unref(b);
}

const void *ct_bytes_data(const ct_bytes *b) {
  return b != NULL ? b->data : NULL;
}

size_t ct_bytes_len(const ct_bytes *b) {
  return b != NULL ? b->len : 0;
}

/* ------------------------------------------------------------- segments */

static ct__bufseg *seg_at(const ct__buf *b, size_t i) {
  return &b->segs[(b->shead + i) & (b->scap - 1)];
}

/* Double the segment ring (re-linearised into the new block). */
static int seg_grow(ct__buf *b) {
  size_t cap = b->scap ? b->scap * 2 : 8;
  ct__bufseg *n = malloc(cap * sizeof *n);
  if (n == NULL)
    return CT_ENOMEM;
  for (size_t i = 0; i < b->nsegs; i++)
    n[i] = *seg_at(b, i);
  free(b->segs);
  b->segs = n;
  b->scap = cap;
  b->shead = 0;
  return 0;
}

static int seg_push(ct__buf *b, ct__bufseg s) {
  if (b->nsegs == b->scap && seg_grow(b) != 0)
    return CT_ENOMEM;
  *seg_at(b, b->nsegs) = s;
  b->nsegs++;
  return 0;
}

/* n own bytes were added at data[start ..): extend or start a segment.
 * Only called when the caller has made room for one more segment. */
static void own_added(ct__buf *b, size_t start, size_t n) {
  b->olen += n;
  b->len += n;
  if (b->nsegs == 0)
    return;
  ct__bufseg *last = seg_at(b, b->nsegs - 1);
  if (last->blob == NULL)
    last->len += n;
  else
    (void)seg_push(b, (ct__bufseg){NULL, start, n}); /* room reserved */
}

/* Room for one more segment, so that own_added() cannot fail. */
static int seg_room(ct__buf *b) {
  if (b->nsegs == 0 || b->nsegs < b->scap)
    return 0;
  ct__bufseg *last = seg_at(b, b->nsegs - 1);
  if (last->blob == NULL)
    return 0;
  return seg_grow(b);
}

/* ------------------------------------------------------------- the block */

static int mapped(size_t cap) {
  return cap >= CT__BUF_MMAP;
}

static void block_free(ct__buf *b) {
  if (b->data != NULL && !b->borrowed) {
    if (mapped(b->cap))
      munmap(b->data, b->cap);
    else
      free(b->data);
  }
  b->data = NULL;
  b->cap = 0;
  b->borrowed = 0;
}

/* Move the block to `cap` bytes, keeping data[0 .. keep). */
static int block_resize(ct__buf *b, size_t cap, size_t keep) {
  char *q;
  if (b->data != NULL && !b->borrowed && mapped(b->cap) && mapped(cap)) {
    q = mremap(b->data, b->cap, cap, MREMAP_MAYMOVE);
    if (q == MAP_FAILED)
      return CT_ENOMEM;
  } else if (b->data != NULL && !b->borrowed && !mapped(b->cap) &&
             !mapped(cap)) {
    q = realloc(b->data, cap);
    if (q == NULL)
      return CT_ENOMEM;
  } else {
    if (mapped(cap)) {
      q = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
               -1, 0);
      if (q == MAP_FAILED)
        return CT_ENOMEM;
    } else if ((q = malloc(cap)) == NULL) {
      return CT_ENOMEM;
    }
    if (keep > 0)
      memcpy(q, b->data, keep);
    block_free(b);
  }
  b->data = q;
  b->cap = cap;
  b->borrowed = 0;
  return 0;
}

/* ----------------------------------------------------------------- bytes */

int ct__buf_reserve(ct__buf *b, size_t more) {
  if (more <= b->cap - b->off - b->olen)
    return 0;
  /* Compact only when that frees at least as many bytes as it moves: every
   * byte moved is then paid for by a consumed one.  A buffer that is
   * drained a little and refilled a little (a slow reader) would otherwise
   * move all it holds on every append. */
  if (b->off > 0 && b->off >= b->olen) {
    /* Every own segment moves down by `off`. */
    memmove(b->data, b->data + b->off, b->olen);
    for (size_t i = 0; i < b->nsegs; i++) {
      ct__bufseg *s = seg_at(b, i);
      if (s->blob == NULL)
        s->off -= b->off;
    }
    b->off = 0;
    if (more <= b->cap - b->olen)
      return 0;
  }
  /* Grow by doubling, keeping the consumed prefix (less than what is
   * held, so at most half the block). */
  size_t used = b->off + b->olen;
  if (more > SIZE_MAX / 2 - used)
    return CT_ENOMEM;
  size_t need = used + more;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap *= 2;
  return block_resize(b, cap, used);
}

char *ct__buf_tail(ct__buf *b, size_t more) {
  if (seg_room(b) != 0 || ct__buf_reserve(b, more) != 0)
    return NULL;
  return b->data + b->off + b->olen;
}

void ct__buf_commit(ct__buf *b, size_t n) {
  if (n > 0)
    own_added(b, b->off + b->olen, n);
}

int ct__buf_append(ct__buf *b, const void *data, size_t n) {
  if (n == 0)
    return 0;
  char *t = ct__buf_tail(b, n);
  if (t == NULL)
    return CT_ENOMEM;
  memcpy(t, data, n);
  ct__buf_commit(b, n);
  return 0;
}

int ct__buf_appendv(ct__buf *b, const struct iovec *iov, int cnt, size_t skip) {
  size_t total = 0;
  for (int i = 0; i < cnt; i++)
    total += iov[i].iov_len;
  if (skip >= total)
    return 0;
  char *t = ct__buf_tail(b, total - skip);
  if (t == NULL)
    return CT_ENOMEM;
  size_t at = 0;
  for (int i = 0; i < cnt; i++) {
    size_t l = iov[i].iov_len;
    const char *p = iov[i].iov_base;
    if (skip >= l) {
      skip -= l;
      continue;
    }
    memcpy(t + at, p + skip, l - skip);
    at += l - skip;
    skip = 0;
  }
  ct__buf_commit(b, at);
  return 0;
}

int ct__buf_append_blob(ct__buf *b, ct__blob *blob, size_t off, size_t n) {
  if (n == 0)
    return 0;
  if (b->nsegs == 0 && b->olen > 0) {
    /* Leave flat mode: the own bytes so far become the first segment. */
    if (seg_push(b, (ct__bufseg){NULL, b->off, b->olen}) != 0)
      return CT_ENOMEM;
  }
  if (seg_push(b, (ct__bufseg){blob, off, n}) != 0) {
    if (b->nsegs == 1 && seg_at(b, 0)->blob == NULL)
      b->nsegs = 0; /* undo the own segment: flat again */
    return CT_ENOMEM;
  }
  ct__blob_ref(blob);
  b->len += n;
  return 0;
}

int ct__buf_iov(const ct__buf *b, struct iovec *iov, int max) {
  if (max <= 0 || b->len == 0)
    return 0;
  if (b->nsegs == 0) {
    iov[0].iov_base = b->data + b->off;
    iov[0].iov_len = b->olen;
    return 1;
  }
  int n = 0;
  for (size_t i = 0; i < b->nsegs && n < max; i++) {
    const ct__bufseg *s = seg_at(b, i);
    iov[n].iov_base = (char *)(s->blob ? s->blob->data : b->data) + s->off;
    iov[n].iov_len = s->len;
    n++;
  }
  return n;
}

void ct__buf_copyout(const ct__buf *b, void *dst, size_t n) {
  char *d = dst;
  if (n == 0)
    return;
  if (b->nsegs == 0) {
    memcpy(d, b->data + b->off, n < b->olen ? n : b->olen);
    return;
  }
  for (size_t i = 0; i < b->nsegs && n > 0; i++) {
    const ct__bufseg *s = seg_at(b, i);
    size_t take = n < s->len ? n : s->len;
    memcpy(d, (s->blob ? s->blob->data : b->data) + s->off, take);
    d += take;
    n -= take;
  }
}

void ct__buf_consume(ct__buf *b, size_t n) {
  if (n > b->len)
    n = b->len;
  b->len -= n;
  if (b->nsegs == 0) {
    b->off += n;
    b->olen -= n;
  }
  while (n > 0 && b->nsegs > 0) {
    ct__bufseg *s = seg_at(b, 0);
    size_t take = n < s->len ? n : s->len;
    if (s->blob == NULL) {
      b->off += take;
      b->olen -= take;
    }
    s->off += take;
    s->len -= take;
    n -= take;
    if (s->len == 0) {
      ct__blob_unref(s->blob);
      b->shead = (b->shead + 1) & (b->scap - 1);
      b->nsegs--;
    }
  }
  if (b->olen == 0)
    b->off = 0;
}

int ct__buf_move(ct__buf *dst, ct__buf *src) {
  if (src->len == 0)
    return 0;
  if (dst->len == 0 && dst->nsegs == 0 && src->nsegs == 0 && dst->cap == 0 &&
      !src->borrowed) {
    /* The common case: take the block over. */
    *dst = *src;
    memset(src, 0, sizeof *src);
    return 0;
  }
  for (size_t i = 0; i < (src->nsegs ? src->nsegs : 1); i++) {
    const ct__bufseg *s = src->nsegs ? seg_at(src, i) : NULL;
    int rc;
    if (s == NULL)
      rc = ct__buf_append(dst, src->data + src->off, src->olen);
    else if (s->blob == NULL)
      rc = ct__buf_append(dst, src->data + s->off, s->len);
    else
      rc = ct__buf_append_blob(dst, s->blob, s->off, s->len);
    if (rc != 0)
      return CT_ENOMEM;
  }
  ct__buf_clear(src);
  return 0;
}

void ct__buf_clear(ct__buf *b) {
  for (size_t i = 0; i < b->nsegs; i++)
    ct__blob_unref(seg_at(b, i)->blob);
  b->nsegs = b->shead = 0;
  b->off = b->olen = b->len = 0;
}

void ct__buf_shrink(ct__buf *b, size_t keep) {
  if (b->len != 0)
    return;
  if (b->cap > keep && !b->borrowed)
    block_free(b);
  free(b->segs);
  b->segs = NULL;
  b->scap = 0;
}

void ct__buf_free(ct__buf *b) {
  ct__buf_clear(b);
  block_free(b);
  free(b->segs);
  memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------ ring */

int ct__ring_push(ct__ring *q, const void *item) {
  if (q->len == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 16;
    char *n = malloc(cap * q->size);
    if (n == NULL)
      return CT_ENOMEM;
    /* Re-linearise into the new block. */
    for (size_t i = 0; i < q->len; i++)
      memcpy(n + i * q->size, ct__ring_at(q, i), q->size);
    free(q->items);
    q->items = n;
    q->cap = cap;
    q->head = 0;
  }
  memcpy(ct__ring_at(q, q->len), item, q->size);
  q->len++;
  return 0;
}

int ct__ring_pop(ct__ring *q, void *out) {
  if (q->len == 0)
    return -1;
  if (out != NULL)
    memcpy(out, ct__ring_at(q, 0), q->size);
  q->head = (q->head + 1) & (q->cap - 1);
  if (--q->len == 0)
    q->head = 0;
  return 0;
}

void ct__ring_remove(ct__ring *q, size_t i) {
  for (; i + 1 < q->len; i++)
    memcpy(ct__ring_at(q, i), ct__ring_at(q, i + 1), q->size);
  q->len--;
  if (q->len == 0)
    q->head = 0;
}

void ct__ring_free(ct__ring *q) {
  free(q->items);
  q->items = NULL;
  q->head = q->len = q->cap = 0;
}
