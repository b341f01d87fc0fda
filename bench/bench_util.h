/*
 * Small helpers shared by the benchmarks and their references, so that
 * ctwist and the reference programs measure time, memory and randomness
 * the same way.
 */
#ifndef CT_BENCH_UTIL_H
#define CT_BENCH_UTIL_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Seconds on clock `id` (CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, ...). */
static inline double bench_seconds(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Resident memory of this process in bytes (/proc/self/statm), 0 if unknown. */
static inline long bench_rss_bytes(void) {
  char buf[128] = {0};
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL)
    return 0;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *end;
  strtol(buf, &end, 10);                 /* total pages */
  long resident = strtol(end, NULL, 10); /* resident pages */
  return resident * sysconf(_SC_PAGESIZE);
}

/* xorshift64*: the same pseudo-random stream in every program. */
static inline uint64_t bench_xorshift(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * UINT64_C(2685821657736338717);
}

/* A blocking TCP connection to 127.0.0.1:`port` with TCP_NODELAY, for the
 * load generators; exits with a message on failure. */
static inline int bench_connect_loopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    perror("connect");
    exit(1);
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/* Make `fd` non-blocking and watch it for input on epoll `ep` with `ptr`;
 * exits with a message on failure. */
static inline void bench_epoll_watch(int ep, int fd, void *ptr) {
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ptr};
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0 ||
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    perror("epoll watch");
    exit(1);
  }
}

#endif /* CT_BENCH_UTIL_H */
