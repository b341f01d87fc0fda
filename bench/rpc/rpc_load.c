/*
 * Load generator for the JSON-RPC benchmark (bench/rpc/run.sh).
 *
 *   rpc_load MODE PORT CONNS DEPTH SECONDS [WARMUP_SECONDS]
 *
 * MODE picks the request, the same call in each server's framing:
 *   ctwist   a message-protocol frame, header {"content-type":
 *            "application/json","content-length":N}, content
 *            {"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}
 *   twisted  that JSON-RPC request as a 4-byte length + payload
 *            (Int32StringReceiver framing, bench/ref/rpc_twisted.py)
 *   redis    PING\r\n (redis-server's PING_INLINE)
 * Opens CONNS connections to 127.0.0.1:PORT and keeps DEPTH requests in
 * flight on each (requests are pipelined; each server answers in order).
 * The first response on each connection is read whole and must be a
 * correct answer (result 3, or +PONG); every later response has the same
 * bytes, so responses are counted by size and their latency is measured
 * from the send time of the request they answer (FIFO per connection).
 * After the warm-up, prints
 *   "req/s R p50_us A p99_us B p999_us C responses N all M".
 * Plain epoll, one thread; exit status 1 on any error or wrong answer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define MAXDEPTH 64
#define HIST_US 200000 /* latency histogram: 1 us buckets up to 200 ms */

static const char rpc_req[] =
    "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":[1,2],\"id\":1}";

typedef struct conn {
  int fd;
  size_t in_bytes;
  size_t out_rem, out_off;
  int want_out;
  double sent[MAXDEPTH]; /* ring of send times of requests in flight */
  unsigned head, tail;
} conn;

static char req[256];
static size_t rlen, resp_len;
static uint64_t hist[HIST_US + 1];

static double now(void) {
  return bench_seconds(CLOCK_MONOTONIC);
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void put_u32(char *p, size_t v) {
  p[0] = (char)(v >> 24);
  p[1] = (char)(v >> 16);
  p[2] = (char)(v >> 8);
  p[3] = (char)v;
}

static size_t get_u32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return ((size_t)u[0] << 24) | ((size_t)u[1] << 16) | ((size_t)u[2] << 8) |
         u[3];
}

static void build_request(const char *mode) {
  size_t cl = sizeof rpc_req - 1;
  if (strcmp(mode, "ctwist") == 0) {
    char hdr[96];
    int hl = snprintf(hdr, sizeof hdr,
                      "{\"content-type\":\"application/json\","
                      "\"content-length\":%zu}",
                      cl);
    put_u32(req, (size_t)hl);
    memcpy(req + 4, hdr, (size_t)hl);
    memcpy(req + 4 + hl, rpc_req, cl);
    rlen = 4 + (size_t)hl + cl;
  } else if (strcmp(mode, "twisted") == 0) {
    put_u32(req, cl);
    memcpy(req + 4, rpc_req, cl);
    rlen = 4 + cl;
  } else if (strcmp(mode, "redis") == 0) {
    memcpy(req, "PING\r\n", 6);
    rlen = 6;
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    exit(2);
  }
}

static void read_exact(int fd, char *p, size_t n) {
  while (n > 0) {
    ssize_t r = recv(fd, p, n, 0);
    if (r <= 0)
      die("recv (first response)");
    p += r;
    n -= (size_t)r;
  }
}

/* One blocking round trip: learn the response size, check the answer. */
static size_t first_response(int fd, const char *mode) {
  if (send(fd, req, rlen, MSG_NOSIGNAL) != (ssize_t)rlen)
    die("send");
  static char buf[4096];
  size_t n = 0;
  if (strcmp(mode, "redis") == 0) {
    read_exact(fd, buf, 7);
    n = 7;
    buf[7] = 0;
    if (strcmp(buf, "+PONG\r\n") != 0)
      goto wrong;
    return n;
  }
  read_exact(fd, buf, 4);
  size_t len = get_u32(buf);
  if (len + 4 >= sizeof buf)
    goto wrong;
  read_exact(fd, buf + 4, len);
  n = 4 + len;
  if (strcmp(mode, "ctwist") == 0) {
    buf[n] = 0;
    const char *cl = strstr(buf + 4, "\"content-length\":");
    if (cl == NULL)
      goto wrong;
    size_t c = (size_t)atol(cl + 17);
    if (n + c >= sizeof buf)
      goto wrong;
    read_exact(fd, buf + n, c);
    n += c;
  }
  buf[n] = 0;
  if (strstr(buf + 4, "\"result\":3") == NULL) /* after the length */
    goto wrong;
  return n;
wrong:
  fprintf(stderr, "wrong first response (%zu bytes): %.*s\n", n,
          n > 4 ? (int)n - 4 : 0, buf + 4);
  exit(1);
}

static void pump_out(int ep, conn *c, double t) {
  while (c->out_rem > 0) {
    size_t off = c->out_off % rlen;
    char chunk[MAXDEPTH * 256];
    size_t n = 0;
    /* Gather whole pending requests (the tail of a partial one first). */
    size_t first = rlen - off;
    memcpy(chunk, req + off, first);
    n = first;
    while (n + rlen <= sizeof chunk && n < c->out_rem) {
      memcpy(chunk + n, req, rlen);
      n += rlen;
    }
    if (n > c->out_rem)
      n = c->out_rem;
    ssize_t w = send(c->fd, chunk, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      die("send");
    }
    c->out_off += (size_t)w;
    c->out_rem -= (size_t)w;
  }
  (void)t;
  int want = c->out_rem > 0;
  if (want != c->want_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0u),
                             .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
      die("epoll_ctl");
    c->want_out = want;
  }
}

/* Queue `k` more requests on `c`, stamped now. */
static void add_requests(conn *c, size_t k, double t) {
  for (size_t i = 0; i < k; i++)
    c->sent[c->tail++ % MAXDEPTH] = t;
  c->out_rem += k * rlen;
}

static double pct(uint64_t total, double p) {
  uint64_t want = (uint64_t)((double)total * p), seen = 0;
  for (size_t i = 0; i <= HIST_US; i++) {
    seen += hist[i];
    if (seen > want)
      return (double)i;
  }
  return (double)HIST_US;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr,
            "usage: %s ctwist|twisted|redis PORT CONNS DEPTH SECONDS "
            "[WARMUP]\n",
            argv[0]);
    return 2;
  }
  const char *mode = argv[1];
  int port = atoi(argv[2]), nconn = atoi(argv[3]), depth = atoi(argv[4]);
  double secs = atof(argv[5]);
  double warm = argc > 6 ? atof(argv[6]) : 0.5;
  if (nconn <= 0 || depth <= 0 || depth > MAXDEPTH)
    return 2;
  build_request(mode);
  int ep = epoll_create1(0);
  conn *cs = calloc((size_t)nconn, sizeof *cs);
  for (int i = 0; i < nconn; i++) {
    cs[i].fd = bench_connect_loopback(port);
    resp_len = first_response(cs[i].fd, mode);
    bench_epoll_watch(ep, cs[i].fd, &cs[i]);
  }
  double t0 = now();
  for (int i = 0; i < nconn; i++) {
    add_requests(&cs[i], (size_t)depth, t0);
    pump_out(ep, &cs[i], t0);
  }
  static char buf[1 << 18];
  struct epoll_event evs[256];
  double start = t0 + warm, end = start + secs;
  unsigned long long counted = 0, all = 0;
  for (;;) {
    double t = now();
    if (t >= end)
      break;
    int measuring = t >= start;
    int n = epoll_wait(ep, evs, 256, 100);
    if (n < 0 && errno != EINTR)
      die("epoll_wait");
    t = now();
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
          size_t before = c->in_bytes / resp_len;
          c->in_bytes += (size_t)r;
          size_t done = c->in_bytes / resp_len - before;
          for (size_t i = 0; i < done; i++) {
            double lat = t - c->sent[c->head++ % MAXDEPTH];
            if (measuring) {
              size_t us = (size_t)(lat * 1e6);
              hist[us > HIST_US ? HIST_US : us]++;
              counted++;
            }
          }
          all += done;
          if (done > 0)
            add_requests(c, done, t);
          if ((size_t)r < sizeof buf)
            break;
        }
      }
      pump_out(ep, c, t);
    }
  }
  printf("req/s %.0f p50_us %.0f p99_us %.0f p999_us %.0f responses %llu "
         "all %llu\n",
         (double)counted / secs, pct(counted, 0.5), pct(counted, 0.99),
         pct(counted, 0.999), counted, all);
  for (int i = 0; i < nconn; i++)
    close(cs[i].fd);
  free(cs);
  return 0;
}
