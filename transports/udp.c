/*
 * udp.c: UDP ports for datagram protocols (Twisted's udp.Port and
 * MulticastPort in one object).
 *
 * A port is a non-blocking datagram socket watched for reading by the
 * reactor.  Writes go straight to sendto(): UDP has no stream to buffer, and
 * a datagram the kernel cannot take now is dropped (CT_EAGAIN), as UDP
 * would drop it anywhere else on the path.
 *
 * Connected mode is connect(2) on the datagram socket.  It matters for one
 * reason beyond convenience: only a connected socket hears about ICMP port
 * unreachable (the kernel reports it as ECONNREFUSED on the next recv or
 * send), which becomes the protocol's connection_refused.
 *
 * Stopping follows the "never free under a running callback" rule: a stop
 * requested from inside one of the port's callbacks closes the socket at
 * once but leaves stop_protocol and the free to the code that called the
 * callback, once it has returned.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctwist/endpoint.h"
#include "ctwist/log.h"
#include "ctwist/udp.h"

/* Datagrams read per readable event before yielding to other sockets. */
#define UDP_READS_PER_EVENT 64

struct ct_udp_port {
  ct_reactor *reactor;
  ct_datagram_protocol *protocol;
  int fd;
  int family; /* AF_INET or AF_INET6 */
  int connected;
  ct_address peer;
  char *buf;
  size_t max_packet;
  int in_cb;           /* depth of our callbacks on the stack */
  int stopping;        /* ct_udp_port_stop() was called */
  ct_deferred *stop_d; /* fired after stop_protocol */
};

/* ---------------------------------------------------------------- stop */

static void finish_stop(ct_udp_port *u) {
  ct_datagram_protocol *p = u->protocol;
  ct_deferred *d = u->stop_d;
  u->protocol = NULL;
  u->stop_d = NULL;
  free(u->buf);
  free(u);
  if (p != NULL) {
    if (p->ops != NULL && p->ops->stop_protocol != NULL) {
      p->ops->stop_protocol(p);
    }
    p->port = NULL;
  }
  if (d != NULL) {
    ct_deferred_callback(d, CT_NONE);
    ct_deferred_unref(d); /* the port's reference */
  }
}

/* Leave one of our callbacks; returns 1 if the port is gone. */
static int leave_cb(ct_udp_port *u) {
  u->in_cb--;
  if (u->in_cb == 0 && u->stopping) {
    finish_stop(u);
    return 1;
  }
  return 0;
}

ct_deferred *ct_udp_port_stop(ct_udp_port *u) {
  ct_deferred *d = ct_deferred_new(NULL, NULL);
  if (u == NULL || u->stopping) {
    if (d != NULL) {
      ct_deferred_errback(d, ct_failure_new(u == NULL ? CT_EINVAL : CT_ECLOSED,
                                            "no UDP port to stop"));
    }
    return d;
  }
  u->stopping = 1;
  if (u->fd >= 0) {
    ct_reactor_remove_reader(u->reactor, u->fd);
    close(u->fd);
    u->fd = -1;
  }
  if (d != NULL) {
    u->stop_d = ct_deferred_ref(d);
  }
  if (u->in_cb == 0) {
    finish_stop(u);
  }
  return d;
}

/* ---------------------------------------------------------------- read */

static void udp_readable(ct_reactor *r, int fd, int events, void *arg) {
  ct_udp_port *u = arg;
  (void)r;
  (void)events;
  (void)fd;
  u->in_cb++;
  for (int i = 0; i < UDP_READS_PER_EVENT && !u->stopping; i++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    ssize_t n =
        recvfrom(u->fd, u->buf, u->max_packet, 0, (struct sockaddr *)&ss, &sl);
    if (n < 0) {
      int err = errno;
      if (err == EINTR) {
        continue;
      }
      if (err == EAGAIN || err == EWOULDBLOCK) {
        break;
      }
      if (err == ECONNREFUSED) {
        /* ICMP port unreachable, reported on connected sockets. */
        ct_datagram_protocol *p = u->protocol;
        if (u->connected && p != NULL && p->ops != NULL &&
            p->ops->connection_refused != NULL) {
          p->ops->connection_refused(p);
        }
        continue;
      }
      /* Other errors (ICMP host unreachable, ...) concern one datagram;
       * the port stays usable. */
      ct_log(CT_LOG_DEBUG, "udp", "recvfrom on fd %d: %s", u->fd,
             ct_strerror(-err));
      continue;
    }
    ct_address from;
    if (ct_address_from_sockaddr(&from, (struct sockaddr *)&ss, sl) != 0) {
      memset(&from, 0, sizeof(from));
    }
    ct_datagram_protocol *p = u->protocol;
    if (p != NULL && p->ops != NULL && p->ops->datagram_received != NULL) {
      p->ops->datagram_received(p, u->buf, (size_t)n, &from);
    }
  }
  leave_cb(u);
}

/* ---------------------------------------------------------------- listen */

static ct_udp_port *listen_ep(ct_reactor *r, const ct_endpoint *ep,
                              const char *desc, ct_datagram_protocol *p,
                              ct_failure **err) {
  struct sockaddr_storage ss;
  socklen_t sl;
  ct_failure *f = NULL;
  if (ct_endpoint_resolve(ep, &ss, &sl, &f) != 0) {
    if (err != NULL) {
      *err = f;
    } else {
      ct_failure_free(f);
    }
    return NULL;
  }
  ct_udp_port *u = calloc(1, sizeof(*u));
  char *buf = malloc((size_t)ep->max_packet_size);
  if (u == NULL || buf == NULL) {
    free(u);
    free(buf);
    if (err != NULL) {
      *err = ct_failure_new(CT_ENOMEM, "out of memory listening on %s", desc);
    }
    return NULL;
  }
  u->reactor = r;
  u->protocol = p;
  u->buf = buf;
  u->max_packet = (size_t)ep->max_packet_size;
  u->family = ss.ss_family;
  u->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int code = 0;
  const char *what = "socket";
  if (u->fd < 0) {
    code = -errno;
  } else {
    int one = 1;
    if (ss.ss_family == AF_INET6) {
      /* An IPv6 port is IPv6 only, so that ::1 and 127.0.0.1 ports with
       * the same number can coexist. */
      setsockopt(u->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (ep->reuseport &&
        setsockopt(u->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
      code = -errno;
      what = "SO_REUSEPORT";
    } else if (bind(u->fd, (struct sockaddr *)&ss, sl) != 0) {
      code = -errno;
      what = "bind";
    } else if (ct_reactor_add_reader(r, u->fd, udp_readable, u) != 0) {
      code = CT_ENOMEM;
      what = "watch";
    }
  }
  if (code != 0) {
    if (err != NULL) {
      *err = ct_failure_new_at(__FILE__, __LINE__, "udp", code, NULL,
                               "listen on %s: %s: %s", desc, what,
                               ct_strerror(code));
    }
    if (u->fd >= 0) {
      close(u->fd);
    }
    free(u->buf);
    free(u);
    return NULL;
  }
  p->port = u;
  if (p->ops != NULL && p->ops->start_protocol != NULL) {
    u->in_cb++;
    p->ops->start_protocol(p, u);
    if (leave_cb(u)) {
      /* Stopped from inside start_protocol: there is no port to return. */
      if (err != NULL) {
        *err =
            ct_failure_new_at(__FILE__, __LINE__, "udp", CT_ECLOSED, NULL,
                              "listen on %s: stopped by start_protocol", desc);
      }
      return NULL;
    }
  }
  return u;
}

ct_udp_port *ct_listen_udp(ct_reactor *r, const char *endpoint,
                           ct_datagram_protocol *p, ct_failure **err) {
  if (err != NULL) {
    *err = NULL;
  }
  if (r == NULL || endpoint == NULL || p == NULL) {
    if (err != NULL) {
      *err = ct_failure_new(CT_EINVAL, "ct_listen_udp: NULL reactor, "
                                       "endpoint or protocol");
    }
    return NULL;
  }
  ct_endpoint ep = {0};
  if (ct_endpoint_parse_server(endpoint, &ep, err) != 0) {
    return NULL;
  }
  if (ep.kind != CT_ENDPOINT_UDP) {
    if (err != NULL) {
      *err = ct_failure_new_at(__FILE__, __LINE__, "endpoint", CT_EBADENDPOINT,
                               NULL,
                               "udp endpoint: '%s' is a %s endpoint; expected "
                               "udp:PORT[:interface=ADDR][:maxPacketSize=N]"
                               "[:reuseport=0|1]",
                               endpoint, ct_endpoint_kind_name(ep.kind));
    }
    ct_endpoint_clear(&ep);
    return NULL;
  }
  ct_udp_port *u = listen_ep(r, &ep, endpoint, p, err);
  ct_endpoint_clear(&ep);
  return u;
}

ct_udp_port *ct_listen_udp_port(ct_reactor *r, int port, const char *interface,
                                ct_datagram_protocol *p, ct_failure **err) {
  if (err != NULL) {
    *err = NULL;
  }
  if (port < 0 || port > 65535) {
    if (err != NULL) {
      *err =
          ct_failure_new_at(__FILE__, __LINE__, "udp", CT_EBADENDPOINT, NULL,
                            "udp endpoint: port %d is not in 0..65535", port);
    }
    return NULL;
  }
  /* Build the description so both entry points validate the same way. */
  char desc[192];
  char esc[128];
  size_t j = 0;
  for (const char *s = interface ? interface : ""; *s && j + 2 < sizeof(esc);
       s++) {
    if (*s == ':' || *s == '=' || *s == '\\') {
      esc[j++] = '\\';
    }
    esc[j++] = *s;
  }
  esc[j] = '\0';
  if (interface != NULL && *interface != '\0') {
    snprintf(desc, sizeof(desc), "udp:%d:interface=%s", port, esc);
  } else {
    snprintf(desc, sizeof(desc), "udp:%d", port);
  }
  return ct_listen_udp(r, desc, p, err);
}

/* ---------------------------------------------------------------- write */

static int map_send_errno(int err) {
  switch (err) {
  case EAGAIN:
#if EWOULDBLOCK != EAGAIN
  case EWOULDBLOCK:
#endif
  case ENOBUFS:
    return CT_EAGAIN;
  default:
    return -err;
  }
}

static int send_dgram(ct_udp_port *u, const void *data, size_t len,
                      const struct sockaddr *sa, socklen_t sl) {
  for (;;) {
    ssize_t n = sa != NULL ? sendto(u->fd, data, len, 0, sa, sl)
                           : send(u->fd, data, len, 0);
    if (n >= 0) {
      return 0;
    }
    if (errno != EINTR) {
      return map_send_errno(errno);
    }
  }
}

int ct_udp_write_to(ct_udp_port *u, const void *data, size_t len,
                    const ct_address *to) {
  if (u == NULL || (data == NULL && len > 0)) {
    return CT_EINVAL;
  }
  if (u->stopping || u->fd < 0) {
    return CT_ECLOSED;
  }
  if (u->connected) {
    if (to != NULL && !ct_address_equal(to, &u->peer)) {
      return CT_EINVAL;
    }
    return send_dgram(u, data, len, NULL, 0);
  }
  if (to == NULL) {
    return CT_EINVAL;
  }
  int want = u->family == AF_INET6 ? CT_ADDRESS_IPV6 : CT_ADDRESS_IPV4;
  if (to->family != (ct_address_family)want) {
    return CT_EINVAL;
  }
  return send_dgram(u, data, len, &to->u.sa, to->len);
}

int ct_udp_write(ct_udp_port *u, const void *data, size_t len) {
  if (u == NULL) {
    return CT_EINVAL;
  }
  if (!u->connected) {
    return u->stopping ? CT_ECLOSED : CT_ENOTCONN;
  }
  return ct_udp_write_to(u, data, len, NULL);
}

int ct_udp_connect(ct_udp_port *u, const ct_address *to) {
  if (u == NULL || to == NULL) {
    return CT_EINVAL;
  }
  if (u->stopping || u->fd < 0) {
    return CT_ECLOSED;
  }
  int want = u->family == AF_INET6 ? CT_ADDRESS_IPV6 : CT_ADDRESS_IPV4;
  if (to->family != (ct_address_family)want) {
    return CT_EINVAL;
  }
  if (connect(u->fd, &to->u.sa, to->len) != 0) {
    return -errno;
  }
  u->connected = 1;
  u->peer = *to;
  return 0;
}

int ct_udp_is_connected(const ct_udp_port *u) {
  return u != NULL && u->connected && !u->stopping;
}

int ct_udp_get_peer(const ct_udp_port *u, ct_address *out) {
  if (u == NULL || out == NULL) {
    return CT_EINVAL;
  }
  if (!u->connected) {
    return CT_ENOTCONN;
  }
  *out = u->peer;
  return 0;
}

int ct_udp_get_host(const ct_udp_port *u, ct_address *out) {
  if (u == NULL || out == NULL) {
    return CT_EINVAL;
  }
  if (u->fd < 0) {
    return CT_ECLOSED;
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  if (getsockname(u->fd, (struct sockaddr *)&ss, &sl) != 0) {
    return -errno;
  }
  return ct_address_from_sockaddr(out, (struct sockaddr *)&ss, sl);
}

/* ---------------------------------------------------------------- options */

static int set_int(const ct_udp_port *u, int level, int name, int v) {
  if (u == NULL) {
    return CT_EINVAL;
  }
  if (u->fd < 0) {
    return CT_ECLOSED;
  }
  return setsockopt(u->fd, level, name, &v, sizeof(v)) == 0 ? 0 : -errno;
}

int ct_udp_set_broadcast(ct_udp_port *u, int on) {
  return set_int(u, SOL_SOCKET, SO_BROADCAST, on ? 1 : 0);
}

int ct_udp_get_broadcast(const ct_udp_port *u) {
  if (u == NULL) {
    return CT_EINVAL;
  }
  if (u->fd < 0) {
    return CT_ECLOSED;
  }
  int v = 0;
  socklen_t sl = sizeof(v);
  if (getsockopt(u->fd, SOL_SOCKET, SO_BROADCAST, &v, &sl) != 0) {
    return -errno;
  }
  return v != 0;
}

int ct_udp_set_loopback_mode(ct_udp_port *u, int on) {
  if (u == NULL) {
    return CT_EINVAL;
  }
  if (u->family == AF_INET6) {
    return set_int(u, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, on ? 1 : 0);
  }
  return set_int(u, IPPROTO_IP, IP_MULTICAST_LOOP, on ? 1 : 0);
}

int ct_udp_set_ttl(ct_udp_port *u, int ttl) {
  if (u == NULL || ttl < 0 || ttl > 255) {
    return CT_EINVAL;
  }
  if (u->family == AF_INET6) {
    return set_int(u, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, ttl);
  }
  return set_int(u, IPPROTO_IP, IP_MULTICAST_TTL, ttl);
}

static int membership(ct_udp_port *u, const char *group, const char *iface,
                      int join) {
  if (u == NULL || group == NULL) {
    return CT_EINVAL;
  }
  if (u->fd < 0) {
    return CT_ECLOSED;
  }
  int rc;
  if (u->family == AF_INET6) {
    struct ipv6_mreq m;
    memset(&m, 0, sizeof(m));
    if (inet_pton(AF_INET6, group, &m.ipv6mr_multiaddr) != 1 ||
        !IN6_IS_ADDR_MULTICAST(&m.ipv6mr_multiaddr)) {
      return CT_EINVAL;
    }
    if (iface != NULL && (m.ipv6mr_interface = if_nametoindex(iface)) == 0) {
      return CT_EINVAL;
    }
    rc = setsockopt(u->fd, IPPROTO_IPV6,
                    join ? IPV6_ADD_MEMBERSHIP : IPV6_DROP_MEMBERSHIP, &m,
                    sizeof(m));
  } else {
    struct ip_mreqn m;
    memset(&m, 0, sizeof(m));
    if (inet_pton(AF_INET, group, &m.imr_multiaddr) != 1 ||
        !IN_MULTICAST(ntohl(m.imr_multiaddr.s_addr))) {
      return CT_EINVAL;
    }
    if (iface != NULL && inet_pton(AF_INET, iface, &m.imr_address) != 1) {
      return CT_EINVAL;
    }
    rc = setsockopt(u->fd, IPPROTO_IP,
                    join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, &m,
                    sizeof(m));
  }
  return rc == 0 ? 0 : -errno;
}

int ct_udp_join_group(ct_udp_port *u, const char *group,
                      const char *interface) {
  return membership(u, group, interface, 1);
}

int ct_udp_leave_group(ct_udp_port *u, const char *group,
                       const char *interface) {
  return membership(u, group, interface, 0);
}

size_t ct_udp_max_packet_size(const ct_udp_port *u) {
  return u != NULL ? u->max_packet : 0;
}

int ct_udp_fileno(const ct_udp_port *u) {
  return u != NULL ? u->fd : -1;
}
