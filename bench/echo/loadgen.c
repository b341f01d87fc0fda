/* Echo load generator: one thread, epoll, non-blocking sockets.
 *
 * Shapes:
 *   ping-pong / pipelined (default): every connection keeps DEPTH messages of
 *     SIZE bytes in flight; each echoed message is timed (send -> echo fully
 *     received) and immediately replaced by a new one.
 *   bulk (-b): every connection writes SIZE-byte chunks continuously and counts
 *     the echoed bytes (throughput; no latency).
 *   idle (-i): opens CONNS connections, echoes one small message on each (so
 *     the server has accepted and set up every one), prints "established N"
 *     and holds them open until SIGTERM/SIGINT or -t seconds.
 *
 * Every byte a connection sends comes from a pseudo-random pattern with a
 * prime period, started at a per-connection offset, and every echoed byte is
 * compared against it: a server that drops, duplicates, reorders or mixes up
 * bytes between connections makes the run fail (exit status 1).
 *
 * The measured window starts after a warm-up (-w) and lasts -t seconds; or,
 * with -n COUNT, exactly COUNT ping-pong messages are exchanged (no warm-up:
 * for strace -c).  With -P PID the server's CPU time (utime+stime from
 * /proc/PID/stat) over the window is reported too.
 *
 * Output: one line of key=value pairs on stdout, e.g.
 *   req_s=185000 mb_s=11.8 p50_us=250 p99_us=400 ...
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PATTERN_PERIOD                                                         \
  65521u /* prime, so it never lines up with message sizes */
#define IO_MAX (256u * 1024u) /* largest single read or write */
#define MAX_EVENTS 512

struct conn {
  int fd;
  uint32_t id;
  uint64_t tx_off, tx_target; /* stream bytes sent / wanted */
  uint64_t rx_off;            /* stream bytes received and verified */
  uint32_t base;              /* this connection's offset into the pattern */
  int want_out;               /* EPOLLOUT registered */
  uint64_t *ring; /* send timestamps of in-flight messages (ping-pong) */
  uint32_t ring_head, ring_len;
};

struct opts {
  const char *host;
  int port;
  int conns;
  size_t size;
  int depth;
  double seconds, warmup;
  uint64_t count;
  int bulk, idle;
  int server_pid;
};

static struct opts o = {.host = "127.0.0.1",
                        .conns = 1,
                        .size = 64,
                        .depth = 1,
                        .seconds = 3.0,
                        .warmup = 0.5};
static unsigned char *pattern; /* PATTERN_PERIOD bytes + IO_MAX repeated */
static unsigned char rbuf[IO_MAX];
static int ep;
static volatile sig_atomic_t stop_signal;

/* Counters of the measured window. */
static int measuring;
static uint64_t msgs_done, bytes_done, msgs_sent;
static uint32_t *lat;
static size_t lat_len, lat_cap;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void fail(const struct conn *c, const char *why) {
  fprintf(stderr, "loadgen: connection %u at stream offset %llu: %s\n", c->id,
          (unsigned long long)c->rx_off, why);
  exit(1);
}

static void make_pattern(void) {
  pattern = malloc(PATTERN_PERIOD + IO_MAX);
  if (!pattern)
    die("malloc");
  uint64_t x = 0x9e3779b97f4a7c15u;
  for (uint32_t i = 0; i < PATTERN_PERIOD; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    pattern[i] = (unsigned char)(x >> 24);
  }
  for (uint32_t i = 0; i < IO_MAX; i++)
    pattern[PATTERN_PERIOD + i] = pattern[i];
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static void set_events(struct conn *c, int out) {
  if (c->want_out == out)
    return;
  struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0),
                           .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
    die("epoll_ctl");
  c->want_out = out;
}

/* Write towards tx_target; in bulk mode, whole SIZE chunks until the kernel
 * pushes back. */
static void flush_out(struct conn *c) {
  for (int rounds = 0; c->tx_off < c->tx_target && rounds < 64; rounds++) {
    uint64_t left = c->tx_target - c->tx_off;
    size_t len = left > IO_MAX ? IO_MAX : (size_t)left;
    if (o.bulk)
      len = o.size;
    uint32_t pos = (uint32_t)((c->base + c->tx_off) % PATTERN_PERIOD);
    ssize_t n = write(c->fd, pattern + pos, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      fail(c, strerror(errno));
    }
    c->tx_off += (uint64_t)n;
    if ((size_t)n < len)
      break;
  }
  set_events(c, c->tx_off < c->tx_target);
}

static void lat_push(uint64_t ns) {
  if (lat_len == lat_cap) {
    lat_cap = lat_cap ? lat_cap * 2 : 65536;
    lat = realloc(lat, lat_cap * sizeof *lat);
    if (!lat)
      die("realloc");
  }
  lat[lat_len++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

/* Queue k more ping-pong messages, respecting the fixed count if any. */
static void send_msgs(struct conn *c, uint64_t k, uint64_t t) {
  if (o.count && msgs_sent + k > o.count)
    k = o.count - msgs_sent;
  for (uint64_t i = 0; i < k; i++) {
    c->ring[(c->ring_head + c->ring_len) % (uint32_t)o.depth] = t;
    c->ring_len++;
  }
  msgs_sent += k;
  c->tx_target += k * o.size;
}

static void on_readable(struct conn *c, int stopping) {
  ssize_t n = read(c->fd, rbuf, o.bulk ? IO_MAX : sizeof rbuf);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      return;
    fail(c, strerror(errno));
  }
  if (n == 0)
    fail(c, "server closed the connection");
  if (c->rx_off + (uint64_t)n > c->tx_off)
    fail(c, "received more bytes than were sent");
  uint32_t pos = (uint32_t)((c->base + c->rx_off) % PATTERN_PERIOD);
  if (memcmp(rbuf, pattern + pos, (size_t)n) != 0)
    fail(c, "echoed bytes differ from the bytes sent");
  uint64_t before = c->rx_off / o.size;
  c->rx_off += (uint64_t)n;
  uint64_t done = c->rx_off / o.size - before;
  if (measuring) {
    bytes_done += (uint64_t)n;
    msgs_done += o.bulk ? 0 : done;
  }
  if (o.bulk || done == 0)
    return;
  uint64_t t = now_ns();
  for (uint64_t i = 0; i < done; i++) {
    if (c->ring_len == 0)
      fail(c, "echo of a message that was never sent");
    if (measuring)
      lat_push(t - c->ring[c->ring_head]);
    c->ring_head = (c->ring_head + 1) % (uint32_t)o.depth;
    c->ring_len--;
  }
  if (!stopping) {
    send_msgs(c, done, t);
    flush_out(c);
  }
}

static int connect_one(const struct sockaddr_in *sa) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    die("socket");
  for (int tries = 0; connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0;
       tries++) {
    if (errno == EINTR)
      continue;
    if (tries < 50 && (errno == ECONNREFUSED || errno == EAGAIN)) {
      close(fd);
      usleep(100000);
      fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0)
        die("socket");
      continue;
    }
    die("connect");
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

static struct conn *open_conns(const struct sockaddr_in *sa, int first,
                               int count, struct conn *conns) {
  for (int i = first; i < first + count; i++) {
    struct conn *c = &conns[i];
    memset(c, 0, sizeof *c);
    c->id = (uint32_t)i;
    c->fd = connect_one(sa);
    c->base = (uint32_t)(((uint64_t)i * 7919u) % PATTERN_PERIOD);
    if (!o.idle && !o.bulk) {
      c->ring = calloc((size_t)o.depth, sizeof *c->ring);
      if (!c->ring)
        die("calloc");
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
      die("epoll_ctl");
  }
  return conns;
}

/* Idle mode: connect in batches, echo 8 bytes on each connection of a batch
 * and wait for all of them, so the server's accept queue never overflows. */
static int run_idle(const struct sockaddr_in *sa, struct conn *conns) {
  const int batch = 500;
  struct epoll_event evs[MAX_EVENTS];
  for (int first = 0; first < o.conns; first += batch) {
    int count = o.conns - first < batch ? o.conns - first : batch;
    open_conns(sa, first, count, conns);
    for (int i = first; i < first + count; i++) {
      conns[i].tx_target = 8;
      flush_out(&conns[i]);
    }
    int pending = count;
    while (pending > 0) {
      int n = epoll_wait(ep, evs, MAX_EVENTS, 10000);
      if (n == 0) {
        fprintf(stderr,
                "loadgen: timeout waiting for idle-connection echoes\n");
        return 1;
      }
      for (int k = 0; k < n; k++) {
        struct conn *c = evs[k].data.ptr;
        if (evs[k].events & EPOLLOUT)
          flush_out(c);
        if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
          uint64_t before = c->rx_off;
          on_readable(c, 1);
          if (before < 8 && c->rx_off == 8)
            pending--;
        }
      }
    }
  }
  printf("established %d\n", o.conns);
  fflush(stdout);
  uint64_t end = now_ns() + (uint64_t)(o.seconds * 1e9);
  while (!stop_signal && now_ns() < end)
    usleep(50000);
  return 0;
}

static double cpu_seconds_self(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* utime+stime of a process, in seconds, or -1. */
static double cpu_seconds_pid(int pid) {
  if (pid <= 0)
    return -1;
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  size_t len = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[len] = 0;
  char *p = strrchr(buf, ')'); /* skip "pid (comm)" */
  if (!p)
    return -1;
  unsigned long ut = 0, st = 0;
  /* After ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt
   * majflt cmajflt utime(14) stime(15). */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
             &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static void on_signal(int sig) {
  stop_signal = 1;
}

static void usage(const char *prog) {
  fprintf(stderr,
          "usage: %s -p PORT [-H HOST] [-c CONNS] [-s SIZE] [-d DEPTH] [-t "
          "SECONDS]\n"
          "          [-w WARMUP] [-n COUNT] [-b | -i] [-P SERVER_PID]\n"
          "  default: ping-pong, DEPTH messages of SIZE bytes in flight per "
          "connection\n"
          "  -b bulk: write SIZE-byte chunks continuously, count echoed bytes\n"
          "  -i idle: open CONNS connections, print 'established N', hold -t "
          "seconds\n"
          "  -n COUNT: exchange exactly COUNT ping-pong messages, no warm-up\n",
          prog);
  exit(2);
}

int main(int argc, char **argv) {
  int opt;
  while ((opt = getopt(argc, argv, "H:p:c:s:d:t:w:n:biP:")) != -1) {
    switch (opt) {
    case 'H':
      o.host = optarg;
      break;
    case 'p':
      o.port = atoi(optarg);
      break;
    case 'c':
      o.conns = atoi(optarg);
      break;
    case 's':
      o.size = (size_t)strtoul(optarg, NULL, 10);
      break;
    case 'd':
      o.depth = atoi(optarg);
      break;
    case 't':
      o.seconds = atof(optarg);
      break;
    case 'w':
      o.warmup = atof(optarg);
      break;
    case 'n':
      o.count = strtoull(optarg, NULL, 10);
      break;
    case 'b':
      o.bulk = 1;
      break;
    case 'i':
      o.idle = 1;
      break;
    case 'P':
      o.server_pid = atoi(optarg);
      break;
    default:
      usage(argv[0]);
    }
  }
  if (o.port <= 0 || o.conns <= 0 || o.size == 0 || o.size > IO_MAX ||
      o.depth <= 0 || (o.bulk && o.idle) || (o.count && (o.bulk || o.idle)))
    usage(argv[0]);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  raise_nofile();
  make_pattern();
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0)
    die("epoll_create1");
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)o.port)};
  if (inet_pton(AF_INET, o.host, &sa.sin_addr) != 1)
    usage(argv[0]);
  struct conn *conns = calloc((size_t)o.conns, sizeof *conns);
  if (!conns)
    die("calloc");
  if (o.idle)
    return run_idle(&sa, conns);

  open_conns(&sa, 0, o.conns, conns);
  uint64_t start = now_ns();
  for (int i = 0; i < o.conns; i++) {
    if (o.bulk)
      conns[i].tx_target = UINT64_MAX;
    else
      send_msgs(&conns[i], (uint64_t)o.depth, start);
    flush_out(&conns[i]);
  }
  uint64_t measure_start = start, measure_end = UINT64_MAX;
  double cpu0 = 0, srv0 = -1;
  if (o.count || o.warmup <= 0) {
    measuring = 1;
    cpu0 = cpu_seconds_self();
    srv0 = cpu_seconds_pid(o.server_pid);
    if (!o.count)
      measure_end = start + (uint64_t)(o.seconds * 1e9);
  }
  uint64_t warm_end = start + (uint64_t)(o.warmup * 1e9);
  struct epoll_event evs[MAX_EVENTS];
  uint64_t t = start;
  for (;;) {
    if (stop_signal)
      return 1;
    if (o.count && msgs_done >= o.count)
      break;
    if (!measuring && t >= warm_end) {
      measuring = 1;
      measure_start = t;
      measure_end = t + (uint64_t)(o.seconds * 1e9);
      cpu0 = cpu_seconds_self();
      srv0 = cpu_seconds_pid(o.server_pid);
    }
    if (measuring && t >= measure_end)
      break;
    int timeout = 100;
    int n = epoll_wait(ep, evs, MAX_EVENTS, timeout);
    if (n < 0 && errno != EINTR)
      die("epoll_wait");
    for (int k = 0; k < n; k++) {
      struct conn *c = evs[k].data.ptr;
      if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(c, 0);
      if (evs[k].events & EPOLLOUT)
        flush_out(c);
    }
    t = now_ns();
  }
  double wall = (double)(t - measure_start) / 1e9;
  double cpu = cpu_seconds_self() - cpu0;
  double srv1 = cpu_seconds_pid(o.server_pid);
  if (o.bulk)
    msgs_done = bytes_done / o.size;
  double p50 = 0, p99 = 0;
  if (lat_len) {
    qsort(lat, lat_len, sizeof *lat, cmp_u32);
    p50 = lat[lat_len / 2] / 1e3;
    p99 = lat[(size_t)((double)lat_len * 0.99)] / 1e3;
  }
  printf(
      "shape=%s conns=%d size=%zu depth=%d seconds=%.3f msgs=%llu bytes=%llu "
      "req_s=%.0f mb_s=%.2f p50_us=%.1f p99_us=%.1f client_cpu=%.2f",
      o.bulk ? "bulk" : "pingpong", o.conns, o.size, o.depth, wall,
      (unsigned long long)msgs_done, (unsigned long long)bytes_done,
      msgs_done / wall, bytes_done / wall / 1e6, p50, p99, cpu / wall);
  if (srv0 >= 0 && srv1 >= 0 && msgs_done)
    printf(" server_cpu=%.2f server_us_per_msg=%.3f", (srv1 - srv0) / wall,
           (srv1 - srv0) * 1e6 / (double)msgs_done);
  printf("\n");
  for (int i = 0; i < o.conns; i++) {
    close(conns[i].fd);
    free(conns[i].ring);
  }
  free(conns);
  free(lat);
  free(pattern);
  return 0;
}
