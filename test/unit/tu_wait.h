/*
 * Waiting in tests without sleeping on time: explicit kernel state from
 * /proc/net/tcp.  (Condition loops wait on the reactor's events with
 * ct_reactor_iterate_wait(), or on a descriptor with poll().)
 * Header-only, static functions.
 */
#ifndef CT_TEST_TU_WAIT_H
#define CT_TEST_TU_WAIT_H

#include <stdio.h>

/* TCP states as /proc/net/tcp prints them. */
enum {
  TU_TCP_ESTABLISHED = 1,
  TU_TCP_SYN_SENT = 2,
  TU_TCP_CLOSE_WAIT = 8,
  TU_TCP_LISTEN = 10
};

/* A socket of /proc/net/tcp (IPv4). */
typedef struct tu_tcp_sock {
  int state;
  unsigned long tx_queue; /* LISTEN: the backlog; else bytes not acked */
  unsigned long rx_queue; /* LISTEN: the accept queue; else bytes unread */
} tu_tcp_sock;

/*
 * Count the IPv4 TCP sockets of /proc/net/tcp with local port `lport` and
 * remote port `rport` (either -1: any) and, if `state` > 0, that state;
 * the last one found fills *out (may be NULL).
 */
static inline int tu_tcp_count(int lport, int rport, int state,
                               tu_tcp_sock *out) {
  FILE *f = fopen("/proc/net/tcp", "r");
  if (f == NULL)
    return 0;
  char line[512];
  int found = 0;
  if (fgets(line, sizeof line, f) == NULL) { /* the header */
    fclose(f);
    return 0;
  }
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned la, lp, ra, rp, st;
    unsigned long tx, rx;
    if (sscanf(line, " %*d: %x:%x %x:%x %x %lx:%lx", &la, &lp, &ra, &rp, &st,
               &tx, &rx) != 7)
      continue;
    if ((lport < 0 || (int)lp == lport) && (rport < 0 || (int)rp == rport) &&
        (state <= 0 || (int)st == state)) {
      if (out != NULL)
        *out = (tu_tcp_sock){(int)st, tx, rx};
      found++;
    }
  }
  fclose(f);
  return found;
}

/* Find the socket with local port `lport` and remote port `rport` (-1:
 * any): 1 and *out filled, or 0. */
static inline int tu_tcp_find(int lport, int rport, tu_tcp_sock *out) {
  return tu_tcp_count(lport, rport, 0, out) > 0;
}

#endif
