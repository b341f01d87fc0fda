/*
 * transports/stream.h: the stream-socket transport (TCP and Unix), used by
 * the listener and the connector.  Internal.
 */
#ifndef CT_TRANSPORTS_STREAM_H
#define CT_TRANSPORTS_STREAM_H

#include "transports/internal.h"

/* Reads go into the reactor's shared buffer (CT__READ_BUFFER_SIZE, 256 KiB,
 * reactor/internal.h): data_received borrows the bytes, so one buffer
 * serves every connection.  While a connection has output queued, a read
 * takes at most this much, which bounds what back-pressure lets it buffer
 * to its high watermark plus this. */
#define CT__STREAM_READ_SLOW (64 * 1024)

/* Flags of ct__stream_new(). */
#define CT__STREAM_NODELAY 1u /* set TCP_NODELAY (TCP only) */

/* Wrap a connected, non-blocking socket.  Takes `fd` on success (refs 1,
 * the connection's).  Returns NULL if memory runs out (fd untouched). */
ct_transport *ct__stream_new(ct_reactor *r, int fd, int is_unix,
                             unsigned flags);

/* Attach `p` (connection_made) and start reading. */
void ct__stream_start(ct_transport *t, ct_protocol *p);

#endif /* CT_TRANSPORTS_STREAM_H */
