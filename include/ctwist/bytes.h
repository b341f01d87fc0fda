/**
 * @file bytes.h
 * @brief Shared, immutable, reference-counted byte strings for zero-copy
 *        fan-out (Netty's retained ByteBuf, libevent's
 *        evbuffer_add_reference).
 *
 * A broadcast to N connections writes the same bytes N times.  Written with
 * ct_transport_write(), each connection copies them into its own output
 * buffer; written with ct_transport_write_bytes(), each connection queues a
 * reference and its writev() reads the one shared copy, which is freed when
 * the last connection has sent it (or closed).
 *
 * Not thread-safe: the reference count is plain, so use one ct_bytes on one
 * reactor thread.
 */
#ifndef CTWIST_BYTES_H
#define CTWIST_BYTES_H

#include <stddef.h>

#include "ctwist/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Shared immutable bytes (opaque). */
typedef struct ct_bytes ct_bytes;

/** A new ct_bytes holding a copy of data[0..len), with one reference (the
 *  caller's).  NULL if memory runs out, or data is NULL with len > 0. */
CT_EXTERN ct_bytes *ct_bytes_new(const void *data, size_t len);
/** Take one more reference; returns `b`. */
CT_EXTERN ct_bytes *ct_bytes_ref(ct_bytes *b);
/** Drop one reference; the last one frees the bytes.  NULL is ignored. */
CT_EXTERN void ct_bytes_unref(ct_bytes *b);
/** The bytes (valid while a reference is held). */
CT_EXTERN const void *ct_bytes_data(const ct_bytes *b);
/** Their length. */
CT_EXTERN size_t ct_bytes_len(const ct_bytes *b);

/* ------------------------------------------------------------ private */

/*
 * The library's byte queue (reactor/buf.h), defined here only because
 * public structs with private members embed it (ct_basic_state).  Its
 * members are private and may change; use no ct__ name.
 */
typedef struct ct__bufseg {
  struct ct_bytes *blob; /* NULL: a run of the buffer's own bytes */
  size_t off;            /* blob: offset in its data; own: offset in data */
  size_t len;
} ct__bufseg;

typedef struct ct__buf {
  char *data; /* own bytes: data[off .. off+olen) */
  size_t off, olen, cap;
  size_t len;       /* every byte queued: own bytes plus blob slices */
  ct__bufseg *segs; /* ring of segments; only while a blob is queued */
  size_t shead, nsegs, scap;
  int borrowed; /* data is the caller's (stack) storage, not ours */
} ct__buf;

#ifdef __cplusplus
}
#endif

#endif /* CTWIST_BYTES_H */
