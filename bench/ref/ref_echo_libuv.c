/* Reference echo server on libuv, tuned: reads go into one shared buffer and
 * are echoed with uv_try_write() first; only what the kernel refuses is copied
 * into a uv_write() request, and reading from that peer stops until the
 * request completes (back-pressure).
 *
 * Usage: ref_echo_libuv PORT   (listens on 127.0.0.1, prints "ready", exits
 * on SIGTERM or SIGINT). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define READ_BUF_SIZE (256 * 1024)

struct wreq {
  uv_write_t req;
  uv_buf_t buf;
  char data[];
};

static uv_loop_t *loop;
static char read_buf[READ_BUF_SIZE];

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  *buf = uv_buf_init(read_buf, sizeof read_buf);
}

static void close_cb(uv_handle_t *h) {
  free(h);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void write_cb(uv_write_t *req, int status) {
  uv_stream_t *s = req->handle;
  free(req);
  if (status < 0) {
    if (!uv_is_closing((uv_handle_t *)s))
      uv_close((uv_handle_t *)s, close_cb);
    return;
  }
  if (!uv_is_closing((uv_handle_t *)s))
    uv_read_start(s, alloc_cb, read_cb);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  if (nread == 0)
    return;
  if (nread < 0) {
    uv_close((uv_handle_t *)s, close_cb);
    return;
  }
  uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
  int n = uv_try_write(s, &b, 1);
  if (n == UV_EAGAIN || n == UV_ENOSYS)
    n = 0;
  if (n < 0) {
    uv_close((uv_handle_t *)s, close_cb);
    return;
  }
  if (n == nread)
    return;
  size_t rest = (size_t)nread - (size_t)n;
  struct wreq *w = malloc(sizeof *w + rest);
  if (!w) {
    uv_close((uv_handle_t *)s, close_cb);
    return;
  }
  memcpy(w->data, buf->base + n, rest);
  w->buf = uv_buf_init(w->data, (unsigned)rest);
  uv_read_stop(s);
  if (uv_write(&w->req, s, &w->buf, 1, write_cb) < 0) {
    free(w);
    uv_close((uv_handle_t *)s, close_cb);
  }
}

static void connection_cb(uv_stream_t *server, int status) {
  if (status < 0)
    return;
  uv_tcp_t *c = malloc(sizeof *c);
  if (!c)
    return;
  uv_tcp_init(loop, c);
  if (uv_accept(server, (uv_stream_t *)c) < 0) {
    uv_close((uv_handle_t *)c, close_cb);
    return;
  }
  uv_tcp_nodelay(c, 1);
  uv_read_start((uv_stream_t *)c, alloc_cb, read_cb);
}

static void signal_cb(uv_signal_t *h, int sig) {
  uv_stop(loop);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PORT\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  uv_tcp_t server;
  uv_tcp_init(loop, &server);
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
  int r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
  if (r == 0)
    r = uv_listen((uv_stream_t *)&server, 4096, connection_cb);
  if (r < 0) {
    fprintf(stderr, "listen: %s\n", uv_strerror(r));
    return 1;
  }
  uv_signal_t sterm, sint;
  uv_signal_init(loop, &sterm);
  uv_signal_init(loop, &sint);
  uv_signal_start(&sterm, signal_cb, SIGTERM);
  uv_signal_start(&sint, signal_cb, SIGINT);
  printf("ready\n");
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
