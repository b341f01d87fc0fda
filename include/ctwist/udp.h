/**
 * @file udp.h
 * @brief UDP: datagram protocols and ports (Twisted's DatagramProtocol,
 *        listenUDP, connected UDP, broadcast and multicast).
 *
 * A datagram protocol gets whole datagrams with the sender's address; there
 * is no connection and no stream.  A port is bound with ct_listen_udp() and
 * sends with ct_udp_write_to().  After ct_udp_connect() the port is in
 * connected mode: it talks to one peer with ct_udp_write(), receives only
 * from it, and an ICMP "port unreachable" from that peer arrives as
 * connection_refused -- the only way UDP learns that nobody listens.
 *
 * Datagrams are sent at once (no output buffer, no watermarks): when the
 * kernel's buffer is full the datagram is dropped and the write returns
 * CT_EAGAIN, which is what UDP means.  Incoming datagrams longer than the
 * port's maxPacketSize (default 8192) are truncated to it.
 *
 * Not thread-safe: use a port on its reactor's thread only.  See
 * docs/udp.md.
 */
#ifndef CTWIST_UDP_H
#define CTWIST_UDP_H

#include <stddef.h>

#include "ctwist/deferred.h"
#include "ctwist/error.h"
#include "ctwist/reactor.h"
#include "ctwist/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_udp_port ct_udp_port;
typedef struct ct_datagram_protocol ct_datagram_protocol;

/**
 * A datagram protocol's operations; every member is optional.  They run on
 * the reactor thread, never from inside a call the protocol makes on its
 * port (except start_protocol, from ct_listen_udp(), and stop_protocol,
 * see ct_udp_port_stop()).
 */
typedef struct ct_datagram_protocol_ops {
  const char *name; /**< short static name for logs */
  /** The port is bound and reading (Twisted's startProtocol). */
  void (*start_protocol)(ct_datagram_protocol *p, ct_udp_port *port);
  /**
   * One datagram arrived from `from`.  `data` and `from` are borrowed for
   * the call only.  The protocol may write, connect or stop the port here.
   */
  void (*datagram_received)(ct_datagram_protocol *p, const char *data,
                            size_t len, const ct_address *from);
  /** Connected mode only: the peer answered with ICMP port unreachable. */
  void (*connection_refused)(ct_datagram_protocol *p);
  /** The port stopped; the protocol is no longer used by it. */
  void (*stop_protocol)(ct_datagram_protocol *p);
} ct_datagram_protocol_ops;

/**
 * A datagram protocol instance: owned by the user, borrowed by the port
 * from ct_listen_udp() until stop_protocol has run.  Embed it first in a
 * bigger struct for state, or use `state`.
 */
struct ct_datagram_protocol {
  const ct_datagram_protocol_ops *ops;
  ct_udp_port *port; /**< set while listening, NULL after stop_protocol */
  void *state;       /**< the user's pointer */
};

/**
 * Bind a UDP port from a server endpoint string
 * `udp:PORT[:interface=ADDR][:maxPacketSize=N][:reuseport=0|1]` (IPv4
 * unless the interface is an IPv6 literal, written `\:\:1`), start
 * reading, and call the protocol's start_protocol before returning.
 *
 * Returns the port, or NULL with `*err` (if not NULL; the caller owns it)
 * set: CT_EBADENDPOINT for a bad string or a kind other than udp,
 * CT_EADDRINUSE, CT_EACCES, other negated errno values, CT_EINVAL for a
 * NULL argument.  Stop with ct_udp_port_stop().
 */
CT_EXTERN ct_udp_port *ct_listen_udp(ct_reactor *r, const char *endpoint,
                                     ct_datagram_protocol *p, ct_failure **err);

/**
 * As ct_listen_udp() from a port number (0: any free port) and a numeric
 * interface address (NULL: 0.0.0.0).
 */
CT_EXTERN ct_udp_port *ct_listen_udp_port(ct_reactor *r, int port,
                                          const char *interface,
                                          ct_datagram_protocol *p,
                                          ct_failure **err);

/**
 * Send one datagram to `to` (of the port's family).  In connected mode `to`
 * must be NULL or the connected peer.  Returns 0, or: CT_EAGAIN (kernel
 * buffer full: the datagram was dropped), CT_EMSGSIZE (too big),
 * CT_ECONNREFUSED (connected mode: an earlier datagram was refused),
 * CT_EINVAL (bad address or family), CT_ECLOSED (stopped), another negated
 * errno.  No callback runs from inside this call.
 */
CT_EXTERN int ct_udp_write_to(ct_udp_port *u, const void *data, size_t len,
                              const ct_address *to);

/**
 * Enter connected mode with peer `to`: only its datagrams are received,
 * ct_udp_write() sends to it, and ICMP errors are reported through
 * connection_refused.  May be called again to change the peer.  Returns 0,
 * CT_EINVAL, CT_ECLOSED or a negated errno.
 */
CT_EXTERN int ct_udp_connect(ct_udp_port *u, const ct_address *to);

/** Send to the connected peer.  Returns as ct_udp_write_to(), and
 *  CT_ENOTCONN when not in connected mode. */
CT_EXTERN int ct_udp_write(ct_udp_port *u, const void *data, size_t len);

/** 1 if the port is in connected mode, else 0. */
CT_EXTERN int ct_udp_is_connected(const ct_udp_port *u);

/** The connected peer.  Returns 0, CT_ENOTCONN or CT_EINVAL. */
CT_EXTERN int ct_udp_get_peer(const ct_udp_port *u, ct_address *out);

/** The bound address (port 0 resolved).  Returns 0, CT_ECLOSED or a
 *  negated errno. */
CT_EXTERN int ct_udp_get_host(const ct_udp_port *u, ct_address *out);

/** Allow sending to broadcast addresses (SO_BROADCAST).  Returns 0,
 *  CT_ECLOSED or a negated errno. */
CT_EXTERN int ct_udp_set_broadcast(ct_udp_port *u, int on);

/** The SO_BROADCAST setting: 1, 0, or a negative error code. */
CT_EXTERN int ct_udp_get_broadcast(const ct_udp_port *u);

/**
 * Join multicast group `group` (a numeric IPv4 or IPv6 group address of
 * the port's family) on `interface`: for IPv4 the numeric address of the
 * local interface, for IPv6 an interface name ("lo"); NULL lets the kernel
 * choose.  Returns 0, CT_EINVAL (not a multicast address of the port's
 * family, bad interface), CT_ECLOSED, or a negated errno (e.g. -ENODEV
 * when the interface cannot do multicast, CT_EADDRINUSE if already joined).
 */
CT_EXTERN int ct_udp_join_group(ct_udp_port *u, const char *group,
                                const char *interface);

/** Leave a group joined with ct_udp_join_group().  Same returns
 *  (CT_EADDRNOTAVAIL when not a member). */
CT_EXTERN int ct_udp_leave_group(ct_udp_port *u, const char *group,
                                 const char *interface);

/** Whether this host receives its own multicast datagrams
 *  (IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP).  Returns 0 or an error. */
CT_EXTERN int ct_udp_set_loopback_mode(ct_udp_port *u, int on);

/** Time-to-live (hop limit) of outgoing multicast datagrams, 0..255. */
CT_EXTERN int ct_udp_set_ttl(ct_udp_port *u, int ttl);

/** The largest datagram delivered whole (maxPacketSize). */
CT_EXTERN size_t ct_udp_max_packet_size(const ct_udp_port *u);

/** The descriptor, or -1 once stopped. */
CT_EXTERN int ct_udp_fileno(const ct_udp_port *u);

/**
 * Stop: close the socket at once, then run the protocol's stop_protocol
 * (before this returns; or, when called from inside one of this port's own
 * callbacks, right after that callback returns) and free the port.  The
 * returned Deferred (one reference for the caller, may be NULL if memory
 * ran out) has fired with CT_NONE once stop_protocol ran.  The port must
 * not be used after this call.  NULL gives a Deferred failed with
 * CT_EINVAL.
 */
CT_EXTERN ct_deferred *ct_udp_port_stop(ct_udp_port *u);

#ifdef __cplusplus
}
#endif
#endif /* CTWIST_UDP_H */
