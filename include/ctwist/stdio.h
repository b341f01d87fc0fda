/**
 * @file stdio.h
 * @brief Standard input and output as one transport (Twisted's
 *        StandardIO).
 *
 * ct_stdio_connect() connects a protocol to the process's stdin (what it
 * reads) and stdout (where it writes).  Either may be a pipe, a socket, a
 * terminal or a regular file:
 *   - pipes, sockets and terminals are watched by the reactor and made
 *     non-blocking while connected (their flags are restored at the end);
 *   - a regular file cannot be polled (epoll refuses it), so it is read in
 *     64 KiB steps, one per loop turn, and written to directly.
 * Output has the usual watermarks and producers, so a slow reader of our
 * stdout pauses a registered producer.  End of file on stdin is a
 * half-close: eof_received runs, and if it returns non-zero the protocol
 * may keep writing until it calls ct_transport_lose_connection().
 * Closing flushes the output and, when stdout is a pipe or a socket,
 * points descriptor 1 at /dev/null so that the reader sees end of file;
 * the descriptors themselves stay open (0 and 1 are never reused).
 *
 * One stdio transport per process at a time.  Reactor thread only.
 */
#ifndef CTWIST_STDIO_H
#define CTWIST_STDIO_H

#include "ctwist/error.h"
#include "ctwist/protocol.h"
#include "ctwist/reactor.h"
#include "ctwist/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Connect `p` to stdin (0) and stdout (1): connection_made runs before
 * this returns.  The transport owns `p` (released after connection_lost,
 * as for connections).  Returns the transport (borrowed: the connection
 * holds its reference until connection_lost), or NULL with `*err` (if not
 * NULL, owned by the caller) naming the problem -- CT_EBADF for a closed
 * descriptor, CT_ENOMEM -- after releasing `p`.
 */
CT_EXTERN ct_transport *ct_stdio_connect(ct_reactor *r, ct_protocol *p,
                                         ct_failure **err);

/**
 * As ct_stdio_connect(), on the descriptors `in_fd` (read) and `out_fd`
 * (written), which may be the same (a terminal, a socket).  They stay the
 * caller's: closing the transport does not close them.
 */
CT_EXTERN ct_transport *ct_stdio_connect_fds(ct_reactor *r, ct_protocol *p,
                                             int in_fd, int out_fd,
                                             ct_failure **err);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_STDIO_H */
