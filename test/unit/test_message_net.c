/* Message server and client over loopback TCP: several clients, broadcast,
 * multicast, send, on_close alive counts, refused endpoints, protocol
 * errors closing one connection only, sends on dead connections, large
 * content under back-pressure. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <poll.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctwist/message.h"
#include "tu_wait.h"

#define MAXM 16

typedef struct side {
  int connects, closes, messages, failed;
  size_t last_alive;
  int last_close_code;
  char last_close_msg[256];
  char last_failed_endpoint[128];
  int last_failed_code;
  ct_messenger *conn[MAXM];
  int nconn;
  char last_type[64];
  size_t last_len;
  char *last_content;
  ct_messenger *last_from;
  int kept_send_rc;   /* result of a send inside on_close */
  ct_messenger *kept; /* a reference kept past on_close */
  size_t lens[8];     /* length and FNV-1a hash of the first messages */
  uint64_t hashes[8];
} side;

static uint64_t fnv(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
  return h;
}

static void s_connect(ct_messenger *m, void *arg) {
  side *s = arg;
  s->connects++;
  if (s->nconn < MAXM)
    s->conn[s->nconn++] = m;
}

static void s_message(ct_messenger *m, const ct_msg_header *h,
                      const char *content, size_t len, void *arg) {
  side *s = arg;
  if (s->messages < 8) {
    s->lens[s->messages] = len;
    s->hashes[s->messages] = fnv(content, len);
  }
  s->messages++;
  const char *t = "";
  if (ct_msg_header_get_str(h, "type", &t) != 0)
    t = "";
  snprintf(s->last_type, sizeof s->last_type, "%s", t);
  free(s->last_content);
  s->last_content = malloc(len + 1);
  if (len > 0)
    memcpy(s->last_content, content, len);
  s->last_content[len] = 0;
  s->last_len = len;
  s->last_from = m;
}

static void s_close(ct_messenger *m, size_t alive, const ct_failure *reason,
                    void *arg) {
  side *s = arg;
  s->closes++;
  s->last_alive = alive;
  s->last_close_code = reason ? reason->code : 0;
  snprintf(s->last_close_msg, sizeof s->last_close_msg, "%s",
           reason && reason->message ? reason->message : "");
  for (int i = 0; i < s->nconn; i++)
    if (s->conn[i] == m)
      s->conn[i] = NULL;
  /* Sending on a connection that is going away fails cleanly. */
  s->kept_send_rc = ct_messenger_send(m, NULL, "x", 1);
}

static void s_failed(const char *endpoint, const ct_failure *reason,
                     void *arg) {
  side *s = arg;
  s->failed++;
  s->last_failed_code = reason->code;
  snprintf(s->last_failed_endpoint, sizeof s->last_failed_endpoint, "%s",
           endpoint);
}

static ct_msg_callbacks callbacks(side *s) {
  ct_msg_callbacks cb = {s_connect, s_message, s_close, s_failed, s};
  return cb;
}

/* Turn the loop until `cond` holds (a failsafe bound, not a timing test). */
#define SPIN(r, cond)                                                          \
  do {                                                                         \
    for (int i_ = 0; i_ < 20000 && !(cond); i_++)                              \
      ct_reactor_iterate_wait(r, 0.001);                                       \
    cr_assert(cond, "condition never held: %s", #cond);                        \
  } while (0)

/* Turns for the closes the test's own frees queued (later-turn work, no
 * I/O from elsewhere to wait for). */
static void drain(ct_reactor *r) {
  for (int i = 0; i < 50; i++)
    ct_reactor_iterate(r);
}

static ct_msg_header *hdr(const char *type) {
  ct_msg_header *h = ct_msg_header_new();
  ct_msg_header_set_str(h, "type", type);
  return h;
}

typedef struct fixture {
  ct_reactor *r;
  side srv, cli;
  ct_msg_server *server;
  ct_msg_client *client;
  char endpoint[64];
} fixture;

static void setup(fixture *f, const ct_msg_options *opts) {
  memset(f, 0, sizeof *f);
  f->r = ct_reactor_new();
  cr_assert_not_null(f->r);
  ct_msg_callbacks scb = callbacks(&f->srv), ccb = callbacks(&f->cli);
  ct_failure *err = NULL;
  f->server =
      ct_msg_server_listen(f->r, "tcp:0:interface=127.0.0.1", &scb, opts, &err);
  cr_assert_not_null(f->server, "listen failed");
  int port = ct_msg_server_port(f->server);
  cr_assert_gt(port, 0);
  snprintf(f->endpoint, sizeof f->endpoint, "tcp:127.0.0.1:%d", port);
  f->client = ct_msg_client_new(f->r, &ccb, opts);
  cr_assert_not_null(f->client);
}

static void teardown(fixture *f) {
  ct_msg_client_free(f->client);
  ct_msg_server_free(f->server);
  drain(f->r);
  ct_messenger_unref(f->srv.kept);
  ct_messenger_unref(f->cli.kept);
  ct_reactor_free(f->r);
  free(f->srv.last_content);
  free(f->cli.last_content);
}

Test(message_net, several_clients_broadcast_multicast_send) {
  fixture f;
  setup(&f, NULL);
  for (int i = 0; i < 3; i++)
    cr_assert_eq(ct_msg_client_connect(f.client, f.endpoint), 0);
  SPIN(f.r, f.srv.connects == 3 && f.cli.connects == 3);
  cr_assert_eq(ct_msg_server_count(f.server), 3);
  cr_assert_eq(ct_msg_client_count(f.client), 3);
  ct_messenger *list[8];
  cr_assert_eq(ct_msg_server_messengers(f.server, list, 8), 3);
  cr_assert_eq(ct_messenger_id(list[0]), 1);
  cr_assert_eq(ct_messenger_id(list[2]), 3);
  cr_assert(strncmp(ct_messenger_peer_str(list[0]), "127.0.0.1:", 10) == 0);
  cr_assert_eq(ct_messenger_peer(list[0])->family, CT_ADDRESS_IPV4);

  /* Client broadcast: every server-side messenger gets one. */
  ct_msg_header *h = hdr("hello");
  cr_assert_eq(ct_msg_client_broadcast(f.client, h, "abc", 3), 3);
  SPIN(f.r, f.srv.messages == 3);
  cr_assert_str_eq(f.srv.last_type, "hello");
  cr_assert_str_eq(f.srv.last_content, "abc");
  ct_msg_header_free(h);

  /* Server broadcast, multicast to two, send to one. */
  h = hdr("all");
  cr_assert_eq(ct_msg_server_broadcast(f.server, h, NULL, 0), 3);
  SPIN(f.r, f.cli.messages == 3);
  cr_assert_str_eq(f.cli.last_type, "all");
  cr_assert_eq(f.cli.last_len, 0);
  ct_msg_header_free(h);
  h = hdr("some");
  cr_assert_eq(ct_msg_server_multicast(f.server, list, 2, h, "mm", 2), 2);
  SPIN(f.r, f.cli.messages == 5);
  cr_assert_str_eq(f.cli.last_type, "some");
  ct_msg_header_free(h);
  h = hdr("one");
  cr_assert_eq(ct_msg_server_send(f.server, list[1], h, "1", 1), 0);
  SPIN(f.r, f.cli.messages == 6);
  cr_assert_str_eq(f.cli.last_type, "one");
  cr_assert_str_eq(f.cli.last_content, "1");
  /* A messenger of another owner is refused. */
  cr_assert_eq(ct_msg_server_send(f.server, f.cli.conn[0], h, NULL, 0),
               CT_EINVAL);
  cr_assert_eq(ct_msg_client_send(f.client, list[0], h, NULL, 0), CT_EINVAL);
  cr_assert_eq(ct_msg_client_send(f.client, f.cli.conn[0], h, NULL, 0), 0);
  SPIN(f.r, f.srv.messages == 4);
  ct_msg_header_free(h);
  cr_assert_eq(ct_messenger_received(list[0]) + ct_messenger_received(list[1]) +
                   ct_messenger_received(list[2]),
               4);

  /* Closing one client connection: the server sees alive == 2. */
  cr_assert_eq(ct_messenger_close(f.cli.conn[0]), 0);
  SPIN(f.r, f.srv.closes == 1 && f.cli.closes == 1);
  cr_assert_eq(f.srv.last_alive, 2);
  cr_assert_eq(f.cli.last_alive, 2);
  cr_assert_eq(f.srv.last_close_code, CT_ECONNDONE);
  cr_assert_eq(f.srv.kept_send_rc, CT_ECLOSED);
  cr_assert_eq(ct_msg_server_count(f.server), 2);

  /* The server closes another: the client sees alive == 1. */
  cr_assert_eq(ct_msg_server_messengers(f.server, list, 8), 2);
  cr_assert_eq(ct_messenger_close(list[0]), 0);
  SPIN(f.r, f.srv.closes == 2 && f.cli.closes == 2);
  cr_assert_eq(f.srv.last_alive, 1);
  cr_assert_eq(f.cli.last_alive, 1);
  teardown(&f);
}

Test(message_net, client_free_closes_everything_server_counts_down) {
  fixture f;
  setup(&f, NULL);
  for (int i = 0; i < 4; i++)
    cr_assert_eq(ct_msg_client_connect(f.client, f.endpoint), 0);
  SPIN(f.r, f.srv.connects == 4);
  ct_msg_client_free(f.client);
  f.client = NULL;
  SPIN(f.r, f.srv.closes == 4);
  cr_assert_eq(f.srv.last_alive, 0);
  cr_assert_eq(f.cli.closes, 0); /* no callbacks after free */
  teardown(&f);
}

static ct_step on_added(ct_value v, void *arg) {
  *(ct_messenger **)arg = v.ptr;
  return ct_pass(CT_NONE);
}

static ct_step on_add_failed(ct_failure *fl, void *arg) {
  *(int *)arg = fl->code;
  ct_failure_free(fl);
  return ct_pass(CT_NONE);
}

Test(message_net, add_connection_deferred_and_refused_endpoint) {
  fixture f;
  setup(&f, NULL);
  /* A port nobody listens on: bind one, then close it. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
  close(fd);
  char refused[64];
  snprintf(refused, sizeof refused, "tcp:127.0.0.1:%d", ntohs(sa.sin_port));

  ct_messenger *got = NULL;
  int bad_code = 0;
  ct_deferred *ok = ct_msg_client_add_connection(f.client, f.endpoint);
  ct_deferred *bad = ct_msg_client_add_connection(f.client, refused);
  cr_assert_not_null(ok);
  cr_assert_not_null(bad);
  ct_deferred_add_callbacks(ok, on_added, NULL, &got);
  ct_deferred_add_callbacks(bad, NULL, on_add_failed, &bad_code);
  SPIN(f.r, got != NULL && bad_code != 0);
  cr_assert_eq(bad_code, CT_ECONNREFUSED);
  cr_assert_eq(f.cli.failed, 1);
  cr_assert_eq(f.cli.last_failed_code, CT_ECONNREFUSED);
  cr_assert_str_eq(f.cli.last_failed_endpoint, refused);
  cr_assert_eq(f.cli.connects, 1);
  cr_assert_eq(got, f.cli.conn[0]);
  cr_assert(ct_messenger_is_open(got));
  /* The working connection is untouched. */
  ct_msg_header *h = hdr("after");
  cr_assert_eq(ct_messenger_send(got, h, NULL, 0), 0);
  SPIN(f.r, f.srv.messages == 1);
  ct_msg_header_free(h);
  /* Bad endpoint strings fail through the same path. */
  cr_assert_eq(ct_msg_client_connect(f.client, "nonsense:1"), 0);
  SPIN(f.r, f.cli.failed == 2);
  cr_assert_eq(f.cli.last_failed_code, CT_EBADENDPOINT);
  ct_deferred_unref(ok);
  ct_deferred_unref(bad);
  teardown(&f);
}

Test(message_net, pending_attempts_cancelled_by_free) {
  fixture f;
  setup(&f, NULL);
  int code = 0;
  ct_deferred *d = ct_msg_client_add_connection(f.client, f.endpoint);
  ct_deferred_add_callbacks(d, NULL, on_add_failed, &code);
  ct_msg_client_free(f.client);
  f.client = NULL;
  cr_assert_eq(code, CT_ECANCELLED);
  cr_assert_eq(f.cli.failed, 0);
  ct_deferred_unref(d);
  teardown(&f);
}

/* Write raw bytes from a plain blocking socket. */
static int raw_connect(const char *endpoint) {
  int port = atoi(strrchr(endpoint, ':') + 1);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  return fd;
}

static void bad_peer_case(const char *bytes, size_t n, int code,
                          const char *what) {
  fixture f;
  setup(&f, NULL);
  cr_assert_eq(ct_msg_client_connect(f.client, f.endpoint), 0);
  SPIN(f.r, f.srv.connects == 1 && f.cli.connects == 1);
  int fd = raw_connect(f.endpoint);
  SPIN(f.r, f.srv.connects == 2);
  cr_assert_eq(write(fd, bytes, n), (ssize_t)n);
  SPIN(f.r, f.srv.closes == 1);
  cr_assert_eq(f.srv.last_close_code, code);
  cr_assert(strstr(f.srv.last_close_msg, what) != NULL, "got '%s'",
            f.srv.last_close_msg);
  cr_assert_eq(f.srv.last_alive, 1);
  /* The well-behaved connection still works both ways. */
  ct_msg_header *h = hdr("still");
  cr_assert_eq(ct_msg_client_broadcast(f.client, h, "ok", 2), 1);
  SPIN(f.r, f.srv.messages == 1);
  cr_assert_str_eq(f.srv.last_type, "still");
  cr_assert_eq(ct_msg_server_broadcast(f.server, h, NULL, 0), 1);
  SPIN(f.r, f.cli.messages == 1);
  ct_msg_header_free(h);
  /* The bad peer got one error frame naming the problem, then EOF. */
  char buf[2048];
  size_t got = 0;
  ssize_t k;
  while ((k = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
    got += (size_t)k;
  buf[got] = 0;
  cr_assert_geq(got, 4);
  size_t hl = ((size_t)(unsigned char)buf[2] << 8) | (unsigned char)buf[3];
  cr_assert_eq(got, 4 + hl, "one error frame, then EOF (%zu bytes)", got);
  cr_assert(strstr(buf + 4, "\"type\":\"error\"") != NULL, "%s", buf + 4);
  cr_assert(strstr(buf + 4, ct_err_name(code)) != NULL, "%s", buf + 4);
  cr_assert(strstr(buf + 4, what) != NULL, "%s", buf + 4);
  close(fd);
  teardown(&f);
}

Test(message_net, bad_json_closes_only_that_connection) {
  bad_peer_case("\0\0\0\5{\"a\":", 9, CT_EPROTO, "not valid JSON");
}

Test(message_net, array_header_closes_only_that_connection) {
  bad_peer_case("\0\0\0\2[]", 6, CT_EPROTO, "not a JSON object");
}

Test(message_net, oversized_header_closes_only_that_connection) {
  bad_peer_case("\x7f\0\0\0", 4, CT_ETOOBIG, "over the limit");
}

Test(message_net, send_on_dead_connection_reports_and_never_crashes) {
  fixture f;
  setup(&f, NULL);
  cr_assert_eq(ct_msg_client_connect(f.client, f.endpoint), 0);
  SPIN(f.r, f.srv.connects == 1 && f.cli.connects == 1);
  ct_messenger *m = ct_messenger_ref(f.srv.conn[0]);
  /* The peer goes away. */
  ct_messenger_abort(f.cli.conn[0]);
  SPIN(f.r, f.srv.closes == 1);
  cr_assert_eq(f.srv.last_alive, 0);
  cr_assert_eq(f.srv.kept_send_rc, CT_ECLOSED);
  cr_assert_not(ct_messenger_is_open(m));
  cr_assert_null(ct_messenger_transport(m));
  ct_msg_header *h = hdr("late");
  cr_assert_eq(ct_messenger_send(m, h, "x", 1), CT_ECLOSED);
  cr_assert_eq(ct_msg_server_send(f.server, m, h, NULL, 0), CT_ECLOSED);
  cr_assert_eq(ct_messenger_close(m), CT_ECLOSED);
  cr_assert_eq(ct_messenger_abort(m), CT_ECLOSED);
  cr_assert_eq(ct_msg_server_broadcast(f.server, h, NULL, 0), 0);
  ct_msg_header_free(h);
  ct_messenger_unref(m);
  teardown(&f);
}

Test(message_net, send_after_peer_reset_closes_and_reports) {
  fixture f;
  setup(&f, NULL);
  cr_assert_eq(ct_msg_client_connect(f.client, f.endpoint), 0);
  int fd = raw_connect(f.endpoint);
  SPIN(f.r, f.srv.connects == 2);
  /* Reset the raw peer (SO_LINGER 0), then keep sending to it without
   * turning the loop: the send fails or the close is reported later. */
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  struct sockaddr_in me;
  socklen_t ml = sizeof me;
  getsockname(fd, (struct sockaddr *)&me, &ml);
  close(fd);
  /* The reset has reached the server's socket when the kernel has dropped
   * the connection from /proc/net/tcp (both ends gone). */
  tu_tcp_sock ts;
  struct pollfd pfd = {
      .fd = ct_transport_fileno(ct_messenger_transport(f.srv.conn[1])),
      .events = POLLIN};
  cr_assert_eq(poll(&pfd, 1, 10000), 1, "the server's socket never woke");
  /* The wake-up can come just before /proc drops the entry: read it again
   * (each read is a system call, not a sleep; bounded). */
  for (int i = 0; i < 100000 && tu_tcp_find(ntohs(me.sin_port), -1, &ts); i++)
    ;
  cr_assert_not(tu_tcp_find(ntohs(me.sin_port), -1, &ts), "no reset seen");
  ct_messenger *m = f.srv.conn[1];
  char chunk[1024] = {0};
  int rc = 0;
  for (int i = 0; i < 200 && rc == 0; i++)
    rc = ct_messenger_send(m, NULL, chunk, sizeof chunk);
  SPIN(f.r, f.srv.closes == 1);
  cr_assert_eq(f.srv.last_alive, 1);
  cr_assert_neq(f.srv.last_close_code, 0);
  teardown(&f);
}

/* Large content is handed to the transport whole and arrives intact and in
 * order; while it is queued, reading from that peer is paused (the
 * watermarks), and the slow-consumer limits bound what may queue. */
Test(message_net, large_content_is_bounded_by_the_transport) {
  ct_msg_options o = {.write_high_water = 128 * 1024,
                      .write_low_water = 32 * 1024};
  fixture f;
  setup(&f, &o);
  cr_assert_eq(ct_msg_client_connect(f.client, f.endpoint), 0);
  SPIN(f.r, f.srv.connects == 1 && f.cli.connects == 1);
  size_t n = 4u * 1024 * 1024;
  char *big = malloc(n);
  for (size_t i = 0; i < n; i++)
    big[i] = (char)(i * 7 + i / 1000);
  ct_messenger *m = f.srv.conn[0];
  ct_msg_header *h = hdr("big");
  cr_assert_eq(ct_messenger_send(m, h, big, n), 0);
  cr_assert_eq(ct_messenger_send(m, h, "tail", 4), 0); /* queued behind */
  ct_transport *t = ct_messenger_transport(m);
  cr_assert_leq(ct_transport_buffered(t), n + 1024);
  cr_assert_leq(ct_transport_buffered(t), CT_OUTPUT_HARD_LIMIT_DEFAULT);
  SPIN(f.r, f.cli.messages == 2);
  cr_assert_eq(f.cli.lens[0], n);
  cr_assert_eq(f.cli.hashes[0], fnv(big, n));
  cr_assert_str_eq(f.cli.last_content, "tail");
  cr_assert_eq(ct_messenger_sent(m), 2);
  /* Over the configured content limit: refused locally. */
  ct_msg_options small = {.limits = {.max_content = 10}};
  ct_msg_client *c2 = ct_msg_client_new(f.r, NULL, &small);
  ct_messenger *got = NULL;
  ct_deferred *d = ct_msg_client_add_connection(c2, f.endpoint);
  ct_deferred_add_callbacks(d, on_added, NULL, &got);
  SPIN(f.r, got != NULL);
  cr_assert_eq(ct_messenger_send(got, NULL, big, 11), CT_EINVAL);
  cr_assert_eq(ct_messenger_send(got, NULL, big, 10), 0);
  /* And the server's messages over its limit close that connection. */
  SPIN(f.r, f.srv.connects == 2);
  cr_assert_eq(ct_messenger_send(f.srv.conn[1], NULL, big, 11), 0);
  SPIN(f.r, f.srv.closes == 1);
  ct_deferred_unref(d);
  ct_msg_client_free(c2);
  ct_msg_header_free(h);
  free(big);
  teardown(&f);
}

Test(message_net, times_follow_the_reactor_clock) {
  ct_clock *clk = ct_clock_new();
  ct_reactor *r = ct_reactor_new_with_clock(clk);
  side srv = {0}, cli = {0};
  ct_msg_callbacks scb = callbacks(&srv), ccb = callbacks(&cli);
  ct_msg_server *s =
      ct_msg_server_listen(r, "tcp:0:interface=127.0.0.1", &scb, NULL, NULL);
  cr_assert_not_null(s);
  char ep[64];
  snprintf(ep, sizeof ep, "tcp:127.0.0.1:%d", ct_msg_server_port(s));
  ct_msg_client *c = ct_msg_client_new(r, &ccb, NULL);
  ct_clock_advance(clk, 10.0);
  ct_msg_client_connect(c, ep);
  SPIN(r, srv.connects == 1 && cli.connects == 1);
  cr_assert_float_eq(ct_messenger_recv_time(srv.conn[0]), 10.0, 1e-9);
  ct_clock_advance(clk, 5.0);
  cr_assert_eq(ct_messenger_send(cli.conn[0], NULL, NULL, 0), 0);
  cr_assert_float_eq(ct_messenger_send_time(cli.conn[0]), 15.0, 1e-9);
  SPIN(r, srv.messages == 1);
  cr_assert_float_eq(ct_messenger_recv_time(srv.conn[0]), 15.0, 1e-9);
  cr_assert_float_eq(ct_messenger_send_time(srv.conn[0]), 10.0, 1e-9);
  ct_messenger_set_user(srv.conn[0], &srv);
  cr_assert_eq(ct_messenger_user(srv.conn[0]), &srv);
  ct_msg_client_free(c);
  ct_msg_server_free(s);
  drain(r);
  free(srv.last_content);
  free(cli.last_content);
  ct_reactor_free(r);
  ct_clock_free(clk);
}

Test(message_net, listen_failure_is_reported) {
  ct_reactor *r = ct_reactor_new();
  ct_failure *err = NULL;
  cr_assert_null(ct_msg_server_listen(r, "bogus:1", NULL, NULL, &err));
  cr_assert_not_null(err);
  ct_failure_free(err);
  cr_assert_null(ct_msg_server_listen(NULL, "tcp:0", NULL, NULL, NULL));
  ct_reactor_free(r);
}
