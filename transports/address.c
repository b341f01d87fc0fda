/*
 * address.c: ct_address, a value type for IPv4, IPv6 and Unix socket
 * addresses, with formatting that names abstract Unix sockets "@name".
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "ctwist/transport.h"

int ct_address_from_sockaddr(ct_address *out, const struct sockaddr *sa,
                             socklen_t len) {
  if (out == NULL)
    return CT_EINVAL;
  memset(out, 0, sizeof *out);
  if (sa == NULL || len < (socklen_t)sizeof(sa_family_t) ||
      len > (socklen_t)sizeof out->u)
    return CT_EINVAL;
  switch (sa->sa_family) {
  case AF_INET:
    if (len < (socklen_t)sizeof(struct sockaddr_in))
      return CT_EINVAL;
    out->family = CT_ADDRESS_IPV4;
    break;
  case AF_INET6:
    if (len < (socklen_t)sizeof(struct sockaddr_in6))
      return CT_EINVAL;
    out->family = CT_ADDRESS_IPV6;
    break;
  case AF_UNIX:
    out->family = CT_ADDRESS_UNIX;
    break;
  default:
    return CT_EINVAL;
  }
  memcpy(&out->u, sa, len);
  out->len = len;
  return 0;
}

int ct_address_from_ip(ct_address *out, const char *ip, int port) {
  if (out == NULL)
    return CT_EINVAL;
  memset(out, 0, sizeof *out);
  if (ip == NULL || port < 0 || port > 65535)
    return CT_EINVAL;
  char buf[INET6_ADDRSTRLEN + 2];
  size_t n = strlen(ip);
  if (n >= 2 && ip[0] == '[' && ip[n - 1] == ']') {
    if (n - 2 >= sizeof buf)
      return CT_EINVAL;
    memcpy(buf, ip + 1, n - 2);
    buf[n - 2] = '\0';
    ip = buf;
  }
  if (inet_pton(AF_INET, ip, &out->u.in4.sin_addr) == 1) {
    out->family = CT_ADDRESS_IPV4;
    out->u.in4.sin_family = AF_INET;
    out->u.in4.sin_port = htons((uint16_t)port);
    out->len = sizeof out->u.in4;
    return 0;
  }
  if (inet_pton(AF_INET6, ip, &out->u.in6.sin6_addr) == 1) {
    out->family = CT_ADDRESS_IPV6;
    out->u.in6.sin6_family = AF_INET6;
    out->u.in6.sin6_port = htons((uint16_t)port);
    out->len = sizeof out->u.in6;
    return 0;
  }
  memset(out, 0, sizeof *out);
  return CT_EINVAL;
}

int ct_address_from_unix(ct_address *out, const char *path) {
  if (out == NULL)
    return CT_EINVAL;
  memset(out, 0, sizeof *out);
  if (path == NULL || path[0] == '\0')
    return CT_EINVAL;
  size_t n = strlen(path);
  if (n >= sizeof out->u.un.sun_path)
    return CT_ENAMETOOLONG;
  out->family = CT_ADDRESS_UNIX;
  out->u.un.sun_family = AF_UNIX;
  if (path[0] == '@') {
    /* Abstract namespace: a leading NUL, the name, no terminator. */
    out->u.un.sun_path[0] = '\0';
    memcpy(out->u.un.sun_path + 1, path + 1, n - 1);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  } else {
    memcpy(out->u.un.sun_path, path, n + 1);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  }
  return 0;
}

int ct_address_port(const ct_address *a) {
  if (a == NULL)
    return -1;
  if (a->family == CT_ADDRESS_IPV4)
    return ntohs(a->u.in4.sin_port);
  if (a->family == CT_ADDRESS_IPV6)
    return ntohs(a->u.in6.sin6_port);
  return -1;
}

size_t ct_address_format(const ct_address *a, char *buf, size_t len) {
  char ip[INET6_ADDRSTRLEN];
  int n;
  if (a == NULL || a->family == CT_ADDRESS_NONE) {
    n = snprintf(buf, len, "none");
  } else if (a->family == CT_ADDRESS_IPV4) {
    inet_ntop(AF_INET, &a->u.in4.sin_addr, ip, sizeof ip);
    n = snprintf(buf, len, "%s:%d", ip, ntohs(a->u.in4.sin_port));
  } else if (a->family == CT_ADDRESS_IPV6) {
    inet_ntop(AF_INET6, &a->u.in6.sin6_addr, ip, sizeof ip);
    n = snprintf(buf, len, "[%s]:%d", ip, ntohs(a->u.in6.sin6_port));
  } else {
    size_t off = offsetof(struct sockaddr_un, sun_path);
    size_t plen = a->len > off ? a->len - off : 0;
    if (plen > sizeof a->u.un.sun_path)
      plen = sizeof a->u.un.sun_path;
    if (plen == 0) {
      n = snprintf(buf, len, "unix:");
    } else if (a->u.un.sun_path[0] == '\0') {
      n = snprintf(buf, len, "unix:@%.*s", (int)(plen - 1),
                   a->u.un.sun_path + 1);
    } else {
      n = snprintf(buf, len, "unix:%.*s", (int)strnlen(a->u.un.sun_path, plen),
                   a->u.un.sun_path);
    }
  }
  return n < 0 ? 0 : (size_t)n;
}

int ct_address_equal(const ct_address *a, const ct_address *b) {
  if (a == NULL || b == NULL || a->family != b->family)
    return 0;
  switch (a->family) {
  case CT_ADDRESS_IPV4:
    return a->u.in4.sin_port == b->u.in4.sin_port &&
           a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
  case CT_ADDRESS_IPV6:
    return a->u.in6.sin6_port == b->u.in6.sin6_port &&
           memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr,
                  sizeof a->u.in6.sin6_addr) == 0;
  case CT_ADDRESS_UNIX:
    return a->len == b->len && memcmp(&a->u.un, &b->u.un, a->len) == 0;
  default:
    return 1;
  }
}
