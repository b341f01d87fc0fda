/* Reference echo server on libevent bufferevents with default settings: the
 * straightforward way to write it (evconnlistener + bufferevent_socket_new,
 * move the input buffer to the output buffer in the read callback).
 *
 * Usage: ref_echo_bufferevent PORT   (listens on 127.0.0.1, prints "ready",
 * exits on SIGTERM or SIGINT). */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static void read_cb(struct bufferevent *bev, void *arg) {
  bufferevent_write_buffer(bev, bufferevent_get_input(bev));
}

static void event_cb(struct bufferevent *bev, short what, void *arg) {
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
    bufferevent_free(bev);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg) {
  struct event_base *base = arg;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct bufferevent *bev =
      bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
  if (!bev) {
    evutil_closesocket(fd);
    return;
  }
  bufferevent_setcb(bev, read_cb, NULL, event_cb, NULL);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg) {
  event_base_loopbreak(arg);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PORT\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct event_base *base = event_base_new();
  if (!base)
    return 1;
  struct sockaddr_in sin = {.sin_family = AF_INET,
                            .sin_port = htons((unsigned short)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct evconnlistener *l = evconnlistener_new_bind(
      base, accept_cb, base, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, 4096,
      (struct sockaddr *)&sin, sizeof sin);
  if (!l) {
    perror("evconnlistener_new_bind");
    return 1;
  }
  struct event *sterm = evsignal_new(base, SIGTERM, signal_cb, base);
  struct event *sint = evsignal_new(base, SIGINT, signal_cb, base);
  event_add(sterm, NULL);
  event_add(sint, NULL);
  printf("ready\n");
  fflush(stdout);
  event_base_dispatch(base);
  event_free(sterm);
  event_free(sint);
  evconnlistener_free(l);
  event_base_free(base);
  return 0;
}
