/*
 * protocols/common/bigbuf.h: frame buffers that give their memory back.
 *
 * A buffer of CT__BIGBUF_MMAP bytes or more lives in its own anonymous
 * mapping (grown with mremap, released with munmap); smaller ones use
 * malloc.  glibc would serve a large buffer from mmap too, but after the
 * first such buffer is freed it raises its mmap threshold to that size, so
 * the next 16 MiB frames come from the heap and stay there: a server that
 * received a few large frames kept hundreds of MiB.  Mapping large buffers
 * ourselves returns each one to the system the moment its frame is done,
 * without touching the process-wide malloc settings (mallopt/malloc_trim
 * are the application's business, not a library's).
 */
#ifndef CT_PROTOCOLS_COMMON_BIGBUF_H
#define CT_PROTOCOLS_COMMON_BIGBUF_H

#include <stddef.h>

/* Buffers at least this large are mapped (glibc's default threshold). */
#define CT__BIGBUF_MMAP (128u * 1024u)

/* Resize buffer `p` of capacity `cap` (NULL/0 for none) to `new_cap`
 * bytes, keeping its first `keep` (<= both capacities) bytes.  Returns
 * the new buffer, or NULL when memory runs out (then `p` is untouched). */
void *ct__bigbuf_resize(void *p, size_t cap, size_t new_cap, size_t keep);

/* Release a buffer of capacity `cap`.  NULL is a no-op. */
void ct__bigbuf_free(void *p, size_t cap);

#endif
