/* Reference echo server on raw libevent: one plain `struct event` per
 * connection, read()/write() on the socket, no bufferevent.
 *
 * The hot path is what a careful hand-written libevent server does: one read
 * per readiness event into a shared buffer, then an eager write.  Only when the
 * kernel send buffer is full is the remainder copied aside and the event
 * switched from EV_READ to EV_WRITE (which also stops reading from that peer:
 * back-pressure).  So steady-state ping-pong costs one read and one write per
 * message and never touches epoll_ctl.
 *
 * Usage: ref_echo_libevent PORT [BACKLOG]   (listens on 127.0.0.1 with a
 * listen queue of BACKLOG, default 4096, prints "ready", exits on SIGTERM
 * or SIGINT). */
#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUF_SIZE (256 * 1024)

struct conn {
  struct event ev; /* EV_READ normally, EV_WRITE while output is pending */
  char *pending;   /* unsent bytes (only while the kernel buffer is full) */
  size_t pending_off, pending_len;
};

static struct event_base *base;
static char read_buf[READ_BUF_SIZE];

static void conn_cb(evutil_socket_t fd, short what, void *arg);

static void conn_free(struct conn *c) {
  event_del(&c->ev);
  close(event_get_fd(&c->ev));
  free(c->pending);
  free(c);
}

static void conn_watch(struct conn *c, short what) {
  evutil_socket_t fd = event_get_fd(&c->ev);
  event_del(&c->ev);
  event_assign(&c->ev, base, fd, what | EV_PERSIST, conn_cb, c);
  event_add(&c->ev, NULL);
}

/* Write buf eagerly; keep what the kernel did not take.  Returns -1 on error.
 */
static int conn_write(struct conn *c, int fd, const char *buf, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = write(fd, buf + off, len - off);
    if (n >= 0) {
      off += (size_t)n;
      continue;
    }
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return -1;
    c->pending_len = len - off;
    c->pending_off = 0;
    c->pending = malloc(c->pending_len);
    if (!c->pending)
      return -1;
    memcpy(c->pending, buf + off, c->pending_len);
    conn_watch(c, EV_WRITE);
    return 0;
  }
  return 0;
}

static void conn_cb(evutil_socket_t fd, short what, void *arg) {
  struct conn *c = arg;
  if (what & EV_WRITE) {
    while (c->pending_off < c->pending_len) {
      ssize_t n = write(fd, c->pending + c->pending_off,
                        c->pending_len - c->pending_off);
      if (n < 0) {
        if (errno == EINTR)
          continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
          return;
        conn_free(c);
        return;
      }
      c->pending_off += (size_t)n;
    }
    free(c->pending);
    c->pending = NULL;
    c->pending_off = c->pending_len = 0;
    conn_watch(c, EV_READ);
    return;
  }
  ssize_t n = read(fd, read_buf, sizeof read_buf);
  if (n > 0) {
    if (conn_write(c, fd, read_buf, (size_t)n) < 0)
      conn_free(c);
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  conn_free(c); /* EOF or error */
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg) {
  for (int i = 0; i < 64; i++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      return; /* EAGAIN, or EMFILE: try again on the next readiness */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    event_assign(&c->ev, base, fd, EV_READ | EV_PERSIST, conn_cb, c);
    event_add(&c->ev, NULL);
  }
}

static void signal_cb(evutil_socket_t sig, short what, void *arg) {
  event_base_loopbreak(base);
}

int main(int argc, char **argv) {
  if (argc != 2 && argc != 3) {
    fprintf(stderr, "usage: %s PORT [BACKLOG]\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  base = event_base_new();
  if (!base)
    return 1;
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sin = {.sin_family = AF_INET,
                            .sin_port = htons((unsigned short)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
      listen(lfd, argc == 3 ? atoi(argv[2]) : 4096) < 0) {
    perror("bind/listen");
    return 1;
  }
  struct event *lev =
      event_new(base, lfd, EV_READ | EV_PERSIST, accept_cb, NULL);
  struct event *sterm = evsignal_new(base, SIGTERM, signal_cb, NULL);
  struct event *sint = evsignal_new(base, SIGINT, signal_cb, NULL);
  event_add(lev, NULL);
  event_add(sterm, NULL);
  event_add(sint, NULL);
  printf("ready\n");
  fflush(stdout);
  event_base_dispatch(base);
  event_free(lev);
  event_free(sterm);
  event_free(sint);
  close(lfd);
  event_base_free(base);
  return 0;
}
