/*
 * storm: a connection burst against an echo server (issue 8).
 *
 *   storm PORT [CONNS]
 *
 * Opens CONNS (default 10000) non-blocking connections to 127.0.0.1:PORT
 * as fast as it can, sends one byte on each as soon as it is connected,
 * and waits until every one has had its byte echoed.  Prints
 *   conns=10000 seconds=0.183 retried_syns=0
 * where seconds runs from the first connect() to the last echo, and
 * retried_syns is the kernel's TcpExt TCPSynRetrans growth (SYNs the
 * client had to send again because the server's queue dropped them).
 * Exit status 1 if a connection failed, 2 on a 60 s safety timeout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_util.h"

static long long tcpext(const char *name) {
  FILE *f = fopen("/proc/net/netstat", "r");
  char k[4096], v[4096];
  long long r = -1;
  if (f == NULL)
    return -1;
  while (fgets(k, sizeof k, f) && fgets(v, sizeof v, f)) {
    if (strncmp(k, "TcpExt:", 7) != 0)
      continue;
    char *ks, *vs, *a = strtok_r(k, " \n", &ks), *b = strtok_r(v, " \n", &vs);
    for (; a && b;
         a = strtok_r(NULL, " \n", &ks), b = strtok_r(NULL, " \n", &vs))
      if (strcmp(a, name) == 0)
        r = atoll(b);
  }
  fclose(f);
  return r;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: storm PORT [CONNS]\n");
    return 64;
  }
  int port = atoi(argv[1]);
  int n = argc == 3 ? atoi(argv[2]) : 10000;
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  int ep = epoll_create1(0);
  int *fds = calloc((size_t)n, sizeof *fds);
  char *state = calloc((size_t)n, 1); /* 0 connecting, 1 sent, 2 echoed */
  if (fds == NULL || state == NULL || ep < 0)
    return 1;
  struct sockaddr_in sin = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  long long syn0 = tcpext("TCPSynRetrans");
  double t0 = bench_seconds(CLOCK_MONOTONIC);
  for (int i = 0; i < n; i++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0 || (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0 &&
                   errno != EINPROGRESS)) {
      perror("connect");
      return 1;
    }
    fds[i] = fd;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN,
                             .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  int done = 0;
  struct epoll_event evs[512];
  while (done < n) {
    if (bench_seconds(CLOCK_MONOTONIC) - t0 > 60) {
      fprintf(stderr, "storm: %d of %d echoed after 60 s\n", done, n);
      return 2;
    }
    int k = epoll_wait(ep, evs, 512, 100);
    for (int j = 0; j < k; j++) {
      int i = (int)evs[j].data.u32;
      if (evs[j].events & (EPOLLERR | EPOLLHUP)) {
        fprintf(stderr, "storm: connection %d failed\n", i);
        return 1;
      }
      if (state[i] == 0 && (evs[j].events & EPOLLOUT)) {
        if (send(fds[i], "x", 1, MSG_NOSIGNAL) == 1) {
          state[i] = 1;
          struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
          epoll_ctl(ep, EPOLL_CTL_MOD, fds[i], &ev);
        }
      } else if (state[i] == 1 && (evs[j].events & EPOLLIN)) {
        char c;
        if (recv(fds[i], &c, 1, 0) == 1) {
          state[i] = 2;
          done++;
          epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
        }
      }
    }
  }
  double secs = bench_seconds(CLOCK_MONOTONIC) - t0;
  long long syn = tcpext("TCPSynRetrans") - syn0;
  printf("conns=%d seconds=%.3f retried_syns=%lld\n", n, secs, syn);
  for (int i = 0; i < n; i++)
    close(fds[i]);
  return 0;
}
