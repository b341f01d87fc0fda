/* bigbuf.c: malloc for small frame buffers, private mappings for big ones
 * (see bigbuf.h for why). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "protocols/common/bigbuf.h"

static int mapped(size_t cap) {
  return cap >= CT__BIGBUF_MMAP;
}

void *ct__bigbuf_resize(void *p, size_t cap, size_t new_cap, size_t keep) {
  if (p == NULL)
    cap = keep = 0;
  if (new_cap == 0) {
    ct__bigbuf_free(p, cap);
    return NULL;
  }
  if (mapped(new_cap)) {
    void *q;
    if (p != NULL && mapped(cap)) {
      q = mremap(p, cap, new_cap, MREMAP_MAYMOVE);
      return q == MAP_FAILED ? NULL : q;
    }
    q = mmap(NULL, new_cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
             -1, 0);
    if (q == MAP_FAILED)
      return NULL;
    if (keep > 0)
      memcpy(q, p, keep);
    free(p); /* p was a malloc'd small buffer, or NULL */
    return q;
  }
  if (p != NULL && mapped(cap)) {
    void *q = malloc(new_cap);
    if (q == NULL)
      return NULL;
    if (keep > 0)
      memcpy(q, p, keep);
    munmap(p, cap);
    return q;
  }
  return realloc(p, new_cap);
}

void ct__bigbuf_free(void *p, size_t cap) {
  if (p == NULL)
    return;
  if (mapped(cap))
    munmap(p, cap);
  else
    free(p);
}
