/*
 * Load generator for the message protocol benchmark (bench/message/run.sh).
 *
 *   message_tcp PORT CONNS DEPTH SECONDS [CONTENT_BYTES] [WARMUP_SECONDS]
 *
 * Opens CONNS connections to 127.0.0.1:PORT and keeps DEPTH requests in
 * flight on each: every request is one message-protocol frame, header
 * {"content-length":N} and N bytes of content (default 1024), exactly what
 * ctwist's encoder produces, so a raw echo server returns the same bytes as
 * the message echo server (ctwistd message-echo) and both can be driven by the
 * same load.  A response is counted for every frame-sized chunk received back;
 * the first response on each connection is compared with the request.
 * After the warm-up, counts responses for SECONDS and prints
 *   "req/s <rate> responses <n> seconds <s> all <n including warm-up>".
 * Plain epoll, one thread; exit status 1 on any error or mismatch.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#define MAXDEPTH 64

typedef struct conn {
  int fd;
  size_t in_bytes;  /* received, modulo nothing (total) */
  size_t out_total; /* bytes sent so far */
  size_t out_rem;   /* bytes to send still */
  int want_out;
  int checked;
  char first[4096];
} conn;

static char *frames; /* MAXDEPTH frames back to back */
static size_t flen;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void pump_out(int ep, conn *c) {
  while (c->out_rem > 0) {
    size_t off = c->out_total % flen;
    size_t n = flen * MAXDEPTH - off;
    if (n > c->out_rem)
      n = c->out_rem;
    ssize_t w = send(c->fd, frames + off, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      die("send");
    }
    c->out_total += (size_t)w;
    c->out_rem -= (size_t)w;
  }
  int want = c->out_rem > 0;
  if (want != c->want_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0u),
                             .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
      die("epoll_ctl");
    c->want_out = want;
  }
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s PORT CONNS DEPTH SECONDS [CONTENT] [WARMUP]\n",
            argv[0]);
    return 2;
  }
  int port = atoi(argv[1]), nconn = atoi(argv[2]), depth = atoi(argv[3]);
  double secs = atof(argv[4]);
  size_t clen = argc > 5 ? (size_t)atol(argv[5]) : 1024;
  double warm = argc > 6 ? atof(argv[6]) : 0.5;
  if (nconn <= 0 || depth <= 0 || depth > MAXDEPTH || clen == 0)
    return 2;
  char hdr[64];
  int hl = snprintf(hdr, sizeof hdr, "{\"content-length\":%zu}", clen);
  flen = 4 + (size_t)hl + clen;
  frames = malloc(flen * MAXDEPTH);
  for (int i = 0; i < MAXDEPTH; i++) {
    unsigned char *f = (unsigned char *)frames + (size_t)i * flen;
    f[0] = f[1] = 0;
    f[2] = (unsigned char)(hl >> 8);
    f[3] = (unsigned char)hl;
    memcpy(f + 4, hdr, (size_t)hl);
    for (size_t j = 0; j < clen; j++)
      f[4 + hl + j] = (unsigned char)('a' + j % 26);
  }
  int ep = epoll_create1(0);
  conn *cs = calloc((size_t)nconn, sizeof *cs);
  for (int i = 0; i < nconn; i++) {
    cs[i].fd = bench_connect_loopback(port);
    bench_epoll_watch(ep, cs[i].fd, &cs[i]);
  }
  for (int i = 0; i < nconn; i++) {
    cs[i].out_rem = flen * (size_t)depth;
    pump_out(ep, &cs[i]);
  }
  static char buf[1 << 18];
  struct epoll_event evs[256];
  double t0 = now(), start = t0 + warm, end = start + secs;
  unsigned long long counted = 0, all = 0;
  int measuring = 0;
  for (;;) {
    double t = now();
    if (!measuring && t >= start)
      measuring = 1;
    if (t >= end)
      break;
    int n = epoll_wait(ep, evs, 256, 100);
    if (n < 0 && errno != EINTR)
      die("epoll_wait");
    for (int k = 0; k < n; k++) {
      conn *c = evs[k].data.ptr;
      if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        for (;;) {
          ssize_t r = recv(c->fd, buf, sizeof buf, 0);
          if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
              break;
            die("recv");
          }
          if (r == 0) {
            fprintf(stderr, "server closed a connection\n");
            return 1;
          }
          if (!c->checked) {
            size_t have = c->in_bytes, take = (size_t)r;
            if (have < flen) {
              if (take > flen - have)
                take = flen - have;
              if (have + take <= sizeof c->first)
                memcpy(c->first + have, buf, take);
              if (have + take == flen) {
                if (flen <= sizeof c->first &&
                    memcmp(c->first, frames, flen) != 0) {
                  fprintf(stderr, "response differs from the request\n");
                  return 1;
                }
                c->checked = 1;
              }
            }
          }
          size_t before = c->in_bytes / flen;
          c->in_bytes += (size_t)r;
          size_t done = c->in_bytes / flen - before;
          if (done > 0) {
            all += done;
            if (measuring)
              counted += done;
            c->out_rem += done * flen;
          }
          if ((size_t)r < sizeof buf)
            break;
        }
      }
      pump_out(ep, c);
    }
  }
  printf("req/s %.0f responses %llu seconds %.2f all %llu\n",
         (double)counted / secs, counted, secs, all);
  for (int i = 0; i < nconn; i++)
    close(cs[i].fd);
  free(cs);
  free(frames);
  return 0;
}
