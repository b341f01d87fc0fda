/*
 * Fan-out load generator for bench/hub: one publisher and N subscribers
 * against ct-hub (message frames: `broadcast` relayed as `message`) or
 * redis-server (PUBLISH / SUBSCRIBE), same shape, same code path.
 *
 *   fanout hub|redis PORT SUBSCRIBERS SECONDS SIZE WINDOW
 *
 * The publisher pipelines messages of SIZE bytes while fewer than WINDOW
 * messages per subscriber are in flight (published x subscribers minus
 * deliveries counted), so neither server queues without bound.  One
 * thread, epoll, plain reads: the subscribers only find frame boundaries.
 * Prints "deliveries/s R total T" (T counts the 0.5 s warm-up too).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

enum { HUB, REDIS };

typedef struct sub {
  int fd;
  /* hub: frame parser state */
  unsigned char lenbuf[4];
  size_t have;   /* bytes of the current part */
  size_t need;   /* size of the current part */
  int part;      /* 0 length, 1 header, 2 content */
  char hdr[512]; /* the header, when it fits */
  /* redis: bytes of delivery pushes */
  unsigned long long bytes;
} sub;

static int mode;
static unsigned long long delivered;
static size_t redis_msg; /* bytes of one redis push */

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      perror("write");
      exit(1);
    }
    p += w;
    n -= (size_t)w;
  }
}

static void hub_frame(char *out, size_t *len, const char *json,
                      const char *content, size_t clen) {
  size_t h = strlen(json);
  out[0] = (char)(h >> 24);
  out[1] = (char)(h >> 16);
  out[2] = (char)(h >> 8);
  out[3] = (char)h;
  memcpy(out + 4, json, h);
  memcpy(out + 4 + h, content, clen);
  *len = 4 + h + clen;
}

/* Parse hub frames in `buf`, counting `message` frames. */
static void hub_feed(sub *s, const unsigned char *buf, size_t n) {
  while (n > 0) {
    if (s->part == 0) {
      size_t k = 4 - s->have < n ? 4 - s->have : n;
      memcpy(s->lenbuf + s->have, buf, k);
      s->have += k;
      buf += k;
      n -= k;
      if (s->have == 4) {
        s->need = (size_t)s->lenbuf[0] << 24 | (size_t)s->lenbuf[1] << 16 |
                  (size_t)s->lenbuf[2] << 8 | s->lenbuf[3];
        s->have = 0;
        s->part = 1;
      }
    } else {
      size_t k = s->need - s->have < n ? s->need - s->have : n;
      if (s->part == 1 && s->have + k < sizeof s->hdr)
        memcpy(s->hdr + s->have, buf, k);
      s->have += k;
      buf += k;
      n -= k;
      if (s->have < s->need)
        continue;
      if (s->part == 1) {
        s->hdr[s->need < sizeof s->hdr ? s->need : sizeof s->hdr - 1] = '\0';
        if (strstr(s->hdr, "\"type\":\"message\"") != NULL)
          delivered++;
        const char *cl = strstr(s->hdr, "\"content-length\":");
        size_t c = cl != NULL ? strtoul(cl + 17, NULL, 10) : 0;
        s->have = 0;
        s->need = c;
        s->part = c > 0 ? 2 : 0;
      } else {
        s->have = 0;
        s->part = 0;
      }
    }
  }
}

static void read_sub(sub *s) {
  unsigned char buf[65536];
  for (;;) {
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (n <= 0) {
      fprintf(stderr, "fanout: a subscriber was disconnected\n");
      exit(1);
    }
    if (mode == HUB) {
      hub_feed(s, buf, (size_t)n);
    } else {
      unsigned long long before = s->bytes / redis_msg;
      s->bytes += (unsigned long long)n;
      delivered += s->bytes / redis_msg - before;
    }
    if ((size_t)n < sizeof buf)
      return;
  }
}

/* Read exactly `n` bytes (blocking setup). */
static void read_exact(int fd, char *buf, size_t n) {
  while (n > 0) {
    ssize_t r = read(fd, buf, n);
    if (r <= 0) {
      perror("read");
      exit(1);
    }
    buf += r;
    n -= (size_t)r;
  }
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr,
            "usage: fanout hub|redis PORT SUBSCRIBERS SECONDS SIZE WINDOW\n");
    return 2;
  }
  mode = strcmp(argv[1], "redis") == 0 ? REDIS : HUB;
  int port = atoi(argv[2]), nsub = atoi(argv[3]);
  double secs = atof(argv[4]);
  size_t size = (size_t)atol(argv[5]);
  long long window = atoll(argv[6]);
  if (nsub <= 0 || secs <= 0 || size == 0 || size > 4096 || window <= 0)
    return 2;
  char payload[4096];
  memset(payload, 'x', size);
  char frame[8192];
  size_t flen;

  int ep = epoll_create1(0);
  sub *subs = calloc((size_t)nsub, sizeof *subs);
  if (subs == NULL)
    return 1;
  char json[256];
  for (int i = 0; i < nsub; i++) {
    subs[i].fd = bench_connect_loopback(port);
    if (mode == HUB) {
      snprintf(json, sizeof json,
               "{\"type\":\"hello\",\"name\":\"s%d\","
               "\"report-interval-ms\":86400000}",
               i);
      hub_frame(frame, &flen, json, "", 0);
      write_all(subs[i].fd, frame, flen);
    } else {
      const char *cmd = "SUBSCRIBE ch\r\n";
      const char *ok = "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n";
      char got[64];
      write_all(subs[i].fd, cmd, strlen(cmd));
      read_exact(subs[i].fd, got, strlen(ok));
    }
    bench_epoll_watch(ep, subs[i].fd, &subs[i]);
  }
  int pub = bench_connect_loopback(port);
  char batch[64 * 8192];
  size_t one;
  if (mode == HUB) {
    hub_frame(frame, &flen,
              "{\"type\":\"hello\",\"name\":\"pub\","
              "\"report-interval-ms\":86400000}",
              "", 0);
    write_all(pub, frame, flen);
    snprintf(json, sizeof json,
             "{\"type\":\"broadcast\",\"content-length\":%zu}", size);
    hub_frame(frame, &one, json, payload, size);
  } else {
    one = (size_t)snprintf(frame, sizeof frame,
                           "*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$%zu\r\n", size);
    memcpy(frame + one, payload, size);
    memcpy(frame + one + size, "\r\n", 2);
    one += size + 2;
    char digits[16];
    redis_msg = (size_t)snprintf(digits, sizeof digits, "%zu", size) +
                strlen("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$\r\n\r\n") + size;
  }
  enum { BATCH = 64 };
  for (int i = 0; i < BATCH; i++)
    memcpy(batch + (size_t)i * one, frame, one);
  static int pub_tag;
  bench_epoll_watch(ep, pub, &pub_tag);

  /* The first 0.5 s (joins, rosters, slow start) are not measured. */
  unsigned long long published = 0;
  size_t pend_off = 0, pend_len = 0; /* a partly written batch */
  double t0 = bench_seconds(CLOCK_MONOTONIC);
  double start = t0 + 0.5, end = start + secs;
  unsigned long long at_start = 0;
  int started = 0;
  struct epoll_event evs[128];
  for (;;) {
    double now = bench_seconds(CLOCK_MONOTONIC);
    if (!started && now >= start) {
      started = 1;
      at_start = delivered;
    }
    if (now >= end)
      break;
    /* publish while the window allows */
    while ((long long)(published * (unsigned long long)nsub - delivered) <
           window * nsub) {
      if (pend_len == 0) {
        pend_off = 0;
        pend_len = BATCH * one;
        published += BATCH;
      }
      ssize_t w = write(pub, batch + pend_off, pend_len);
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        break;
      if (w < 0) {
        perror("publish");
        return 1;
      }
      pend_off += (size_t)w;
      pend_len -= (size_t)w;
      if (pend_len > 0)
        break;
    }
    int n = epoll_wait(ep, evs, 128, 10);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == &pub_tag) {
        char sink[65536]; /* roster frames or ":50" replies */
        while (read(pub, sink, sizeof sink) == (ssize_t)sizeof sink)
          ;
      } else {
        read_sub(evs[i].data.ptr);
      }
    }
  }
  double el = bench_seconds(CLOCK_MONOTONIC) - start;
  printf("deliveries/s %.0f total %llu\n", (double)(delivered - at_start) / el,
         delivered);
  return 0;
}
