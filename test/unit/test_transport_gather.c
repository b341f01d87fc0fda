/*
 * Gathered writes (docs/transports.md, "When bytes leave"): the writes of
 * one dispatch leave in one send(), writes made elsewhere leave before the
 * reactor next waits, byte order survives every mix of write, writev,
 * large writes, producers and a peer that stops reading; TCP_NODELAY is on
 * by default.  Counted with the transport's own I/O counters
 * (ct_transport_get_stats), over real loopback TCP.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include "test_transport_util.h"

TU_REACTOR_FIXTURE
TestSuite(gather, .init = setup, .fini = teardown, .timeout = 60);

/* ----------------------------------------------------------- the server */

/* The server under test: replies to every '\n' it receives with REPLY, one
 * ct_transport_write per reply (the way the tutorial teaches), and keeps
 * its transports so the tests can write from elsewhere. */
#define REPLY "+PONG\r\n"
#define REPLY_LEN (sizeof REPLY - 1)

typedef struct srv {
  ct_transport *t[4]; /* referenced, in accept order */
  int n;
  size_t lines;
  int mixer; /* data_received writes the mixed pattern instead */
} srv;

static srv S;

/* The pattern stream every order test writes and checks. */
#define PAT_LEN (8u * 1024u * 1024u)
static char *PAT;
static size_t gen_off; /* bytes of PAT written so far (server side) */

static void pat_write(ct_transport *t, size_t n) {
  if (n > PAT_LEN - gen_off)
    n = PAT_LEN - gen_off;
  if (n == 0)
    return;
  cr_assert_eq(ct_transport_write(t, PAT + gen_off, n), 0);
  gen_off += n;
}

static void pat_writev(ct_transport *t, size_t a, size_t b) {
  if (a + b > PAT_LEN - gen_off)
    return;
  struct iovec iov[2] = {{PAT + gen_off, a}, {PAT + gen_off + a, b}};
  cr_assert_eq(ct_transport_writev(t, iov, 2), 0);
  gen_off += a + b;
}

/* One round of every kind of write: small ones, a writev, one large enough
 * to leave directly (uncopied), and small ones behind it. */
static void pat_mix(ct_transport *t) {
  pat_write(t, 7);
  pat_writev(t, 3, 300);
  pat_write(t, 1);
  pat_write(t, 20000);
  pat_write(t, 5);
  pat_writev(t, 40000, 11);
  pat_write(t, 900);
}

static void srv_made(ct_protocol *p, ct_transport *t) {
  (void)p;
  cr_assert(S.n < 4);
  S.t[S.n++] = ct_transport_ref(t);
}

static void srv_data(ct_protocol *p, const char *d, size_t n) {
  if (S.mixer) {
    pat_mix(p->transport);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    if (d[i] == '\n') {
      S.lines++;
      ct_transport_write(p->transport, REPLY, REPLY_LEN);
    }
  }
}

static const ct_protocol_ops srv_ops = {
    .name = "gather-server",
    .connection_made = srv_made,
    .data_received = srv_data,
};

static ct_factory F;
static ct_listening_port *PORT;
static int PORTNO;

static void srv_start(const char *ep) {
  memset(&S, 0, sizeof S);
  ct_factory_init(&F, NULL, &srv_ops, sizeof(ct_protocol), NULL);
  PORT = tu_listen(R, ep, &F);
  ct_address a;
  ct_listening_port_address(PORT, &a);
  PORTNO = ct_address_port(&a);
}

static void srv_stop(void) {
  for (int i = 0; i < S.n; i++) {
    ct_transport_abort(S.t[i]);
    ct_transport_unref(S.t[i]);
  }
  tu_stop_port(PORT);
  /* Let the connection_lost calls run before the reactor goes. */
  for (int i = 0; i < 4; i++)
    ct_reactor_iterate(R);
}

/* -------------------------------------------------- a raw client socket */

static int raw_connect(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  cr_assert(fd >= 0);
  struct sockaddr_in sin = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)PORTNO),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int rc = connect(fd, (struct sockaddr *)&sin, sizeof sin);
  cr_assert(rc == 0 || errno == EINPROGRESS);
  return fd;
}

static int accepted(void *arg) {
  return S.n >= *(int *)arg;
}

static void wait_accepted(int n) {
  cr_assert(tu_spin(R, accepted, &n, 10), "server did not accept %d", n);
}

static void raw_send(int fd, const char *s, size_t n) {
  struct pollfd pfd = {.fd = fd, .events = POLLOUT};
  cr_assert_eq(poll(&pfd, 1, 5000), 1);
  cr_assert_eq(send(fd, s, n, 0), (ssize_t)n);
}

static ct_transport_stats stats_of(ct_transport *t) {
  ct_transport_stats st;
  cr_assert_eq(ct_transport_get_stats(t, &st), 0);
  return st;
}

typedef struct want_written {
  ct_transport *t;
  unsigned long long bytes;
} want_written;

static int written(void *arg) {
  want_written *w = arg;
  return stats_of(w->t).bytes_written >= w->bytes;
}

/* Read exactly n bytes from the raw socket, turning the loop meanwhile. */
typedef struct raw_reader {
  int fd;
  char *buf;
  size_t have, want;
} raw_reader;

static int raw_read_some(void *arg) {
  raw_reader *rr = arg;
  while (rr->have < rr->want) {
    ssize_t n = recv(rr->fd, rr->buf + rr->have, rr->want - rr->have, 0);
    if (n <= 0)
      break;
    rr->have += (size_t)n;
  }
  return rr->have >= rr->want;
}

static void raw_read(int fd, char *buf, size_t n) {
  raw_reader rr = {fd, buf, 0, n};
  cr_assert(tu_spin(R, raw_read_some, &rr, 30), "read %zu of %zu bytes",
            rr.have, n);
}

/* ---------------------------------------------------------------- tests */

/* 16 pipelined requests in one segment: 16 replies, one send. */
Test(gather, replies_of_one_read_leave_in_one_send) {
  srv_start("tcp:0:interface=127.0.0.1");
  int fd = raw_connect();
  wait_accepted(1);
  char req[16 * 5 + 1] = {0};
  for (int i = 0; i < 16; i++)
    memcpy(req + i * 5, "PING\n", 5);
  for (int round = 1; round <= 20; round++) {
    raw_send(fd, req, 16 * 5);
    want_written w = {S.t[0], (unsigned long long)round * 16 * REPLY_LEN};
    cr_assert(tu_spin(R, written, &w, 10));
    char got[16 * REPLY_LEN];
    raw_read(fd, got, sizeof got);
    for (int i = 0; i < 16; i++)
      cr_assert_eq(memcmp(got + i * REPLY_LEN, REPLY, REPLY_LEN), 0);
  }
  ct_transport_stats st = stats_of(S.t[0]);
  cr_assert_eq(S.lines, 320);
  cr_assert_eq(st.bytes_read, 320 * 5);
  cr_assert_eq(st.bytes_written, 320 * REPLY_LEN);
  /* One send per read, however many replies each read produced. */
  cr_assert_eq(st.write_calls, st.read_calls, "%llu sends for %llu reads",
               st.write_calls, st.read_calls);
  cr_assert_eq(ct_transport_buffered(S.t[0]), 0);
  close(fd);
  srv_stop();
}

/* Writes from a timer leave in the loop turn that ran the timer: in one
 * send, before ct_reactor_iterate() returns. */
typedef struct timer_writes {
  ct_transport *t;
  int fired;
  size_t buffered_in_cb;
} timer_writes;

static void timer_write_cb(void *arg) {
  timer_writes *tw = arg;
  for (int i = 0; i < 5; i++)
    ct_transport_write(tw->t, REPLY, REPLY_LEN);
  tw->buffered_in_cb = ct_transport_buffered(tw->t);
  tw->fired = 1;
}

Test(gather, timer_writes_leave_on_the_same_turn) {
  srv_start("tcp:0:interface=127.0.0.1");
  int fd = raw_connect();
  wait_accepted(1);
  ct_transport_stats before = stats_of(S.t[0]);
  timer_writes tw = {S.t[0], 0, 0};
  ct_call_later(R, 0, timer_write_cb, &tw);
  double end = tu_now() + 10;
  while (!tw.fired && tu_now() < end)
    ct_reactor_iterate(R);
  cr_assert(tw.fired);
  /* Gathered inside the callback... */
  cr_assert_eq(tw.buffered_in_cb, 5 * REPLY_LEN);
  /* ...and gone, in one send, by the end of the same turn. */
  ct_transport_stats after = stats_of(S.t[0]);
  cr_assert_eq(ct_transport_buffered(S.t[0]), 0);
  cr_assert_eq(after.write_calls - before.write_calls, 1);
  cr_assert_eq(after.bytes_written - before.bytes_written, 5 * REPLY_LEN);
  char got[5 * REPLY_LEN];
  raw_read(fd, got, sizeof got);
  close(fd);
  srv_stop();
}

/* A broadcast: one connection's data_received writes to another; those
 * bytes leave before the reactor waits again, gathered. */
static void relay_data(ct_protocol *p, const char *d, size_t n) {
  (void)p;
  (void)d;
  (void)n;
  for (int i = 1; i < S.n; i++)
    for (int k = 0; k < 3; k++)
      ct_transport_write(S.t[i], REPLY, REPLY_LEN);
}

Test(gather, writes_to_other_connections_leave_on_the_same_turn) {
  static const ct_protocol_ops relay_ops = {.name = "relay",
                                            .connection_made = srv_made,
                                            .data_received = relay_data};
  memset(&S, 0, sizeof S);
  ct_factory_init(&F, NULL, &relay_ops, sizeof(ct_protocol), NULL);
  PORT = tu_listen(R, "tcp:0:interface=127.0.0.1", &F);
  ct_address a;
  ct_listening_port_address(PORT, &a);
  PORTNO = ct_address_port(&a);
  int pub = raw_connect();
  wait_accepted(1);
  int sub1 = raw_connect(), sub2 = raw_connect();
  wait_accepted(3);
  raw_send(pub, "x", 1);
  /* Turn until the publisher's byte was read: that same turn flushed. */
  double end = tu_now() + 10;
  while (stats_of(S.t[0]).bytes_read == 0 && tu_now() < end)
    ct_reactor_iterate(R);
  for (int i = 1; i < 3; i++) {
    ct_transport_stats st = stats_of(S.t[i]);
    cr_assert_eq(ct_transport_buffered(S.t[i]), 0);
    cr_assert_eq(st.write_calls, 1, "subscriber %d: %llu sends", i,
                 st.write_calls);
    cr_assert_eq(st.bytes_written, 3 * REPLY_LEN);
  }
  char got[3 * REPLY_LEN];
  raw_read(sub1, got, sizeof got);
  raw_read(sub2, got, sizeof got);
  close(pub);
  close(sub1);
  close(sub2);
  srv_stop();
}

/* ---------------------------------------------------------- byte order */

/* A push producer that writes pattern bytes whenever it is resumed. */
typedef struct pushp {
  ct_transport *t;
  int paused;
  int resumes;
} pushp;

static void pp_pause(void *arg) {
  ((pushp *)arg)->paused = 1;
}

static void pp_resume(void *arg) {
  pushp *pp = arg;
  pp->paused = 0;
  pp->resumes++;
  pat_write(pp->t, 3000);
  pat_writev(pp->t, 1, 17);
}

static const ct_producer_ops pp_ops = {pp_pause, pp_resume, NULL};

/* Timer writes interleave with the dispatch writes. */
typedef struct ticker {
  ct_transport *t;
  int ticks;
} ticker;

static void tick(void *arg) {
  ticker *tk = arg;
  tk->ticks++;
  pat_write(tk->t, 13);
  pat_write(tk->t, 17000);
  pat_writev(tk->t, 2, 2);
  if (gen_off < PAT_LEN / 2)
    ct_call_later(R, 0, tick, tk);
}

/* The server's output backed up past the high watermark behind the full
 * socket, and paused the producer. */
static int producer_paused(void *arg) {
  return ((pushp *)arg)->paused;
}

Test(gather, byte_order_survives_every_kind_of_write) {
  PAT = tu_pattern(PAT_LEN, 31, 7);
  gen_off = 0;
  srv_start("tcp:0:interface=127.0.0.1");
  S.mixer = 1;
  int fd = raw_connect();
  /* Small socket buffers, so that the server's sends come up short and
   * its own buffer, EV_WRITE and the watermarks all take part.  (Not
   * tiny: a receive window far below loopback's 64 KiB MSS makes Linux
   * fall back on zero-window probes, which take seconds.) */
  int small = 128 * 1024;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  wait_accepted(1);
  ct_transport *t = S.t[0];
  ct_transport_set_option(t, CT_OPT_SNDBUF, 32 * 1024);
  ct_transport_set_watermarks(t, 64 * 1024, 16 * 1024);
  pushp pp = {t, 0, 0};
  cr_assert_eq(ct_transport_register_producer(t, &pp_ops, &pp, 1), 0);
  ticker tk = {t, 0};
  ct_call_later(R, 0, tick, &tk);
  /* Requests while the client reads nothing: the server's output backs up
   * behind the full socket. */
  for (int i = 0; i < 8; i++)
    raw_send(fd, "m", 1);
  cr_assert(tu_spin(R, producer_paused, &pp, 20), "the socket never filled");
  cr_assert_gt(ct_transport_buffered(t), 64 * 1024);
  /* Now read everything, sending a request now and then; a last writer
   * tops the stream up to a known length. */
  char *got = malloc(PAT_LEN);
  cr_assert(got != NULL);
  size_t have = 0;
  double end = tu_now() + 40;
  int reqs = 0;
  while (tu_now() < end) {
    ct_reactor_iterate(R);
    ssize_t n = recv(fd, got + have, PAT_LEN - have, MSG_DONTWAIT);
    if (n > 0)
      have += (size_t)n;
    if (reqs < 64 && have > (size_t)reqs * 64 * 1024) {
      raw_send(fd, "m", 1);
      reqs++;
    }
    if (gen_off >= PAT_LEN / 2 && tk.ticks > 0 && have == gen_off &&
        ct_transport_buffered(t) == 0)
      break;
  }
  cr_assert_eq(have, gen_off, "received %zu of %zu bytes", have, gen_off);
  cr_assert_gt(tk.ticks, 1);
  cr_assert_gt(pp.resumes, 0, "the producer was never paused and resumed");
  for (size_t i = 0; i < have; i++)
    if (got[i] != PAT[i])
      cr_assert_fail("byte %zu differs (of %zu)", i, have);
  free(got);
  ct_transport_unregister_producer(t);
  close(fd);
  srv_stop();
  free(PAT);
}

/* ------------------------------------------------------------- nodelay */

static int nodelay_of(int fd) {
  int v = -1;
  socklen_t l = sizeof v;
  cr_assert_eq(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &l), 0);
  return v != 0;
}

Test(gather, tcp_nodelay_is_on_by_default_and_can_be_turned_off) {
  srv_start("tcp:0:interface=127.0.0.1");
  char ep[64];
  snprintf(ep, sizeof ep, "tcp:host=127.0.0.1:port=%d", PORTNO);
  ct_client_factory cf;
  tu_client_stats cst;
  tu_conn_result res;
  ct_transport *ct = tu_connect_ok(R, ep, &cf, &cst, &res);
  wait_accepted(1);
  cr_assert(nodelay_of(ct_transport_fileno(S.t[0])), "accepted");
  cr_assert(nodelay_of(ct_transport_fileno(ct)), "connected");
  ct_transport_abort(ct);
  srv_stop();

  srv_start("tcp:0:interface=127.0.0.1:nodelay=0");
  snprintf(ep, sizeof ep, "tcp:host=127.0.0.1:port=%d:nodelay=0", PORTNO);
  ct = tu_connect_ok(R, ep, &cf, &cst, &res);
  wait_accepted(1);
  cr_assert(!nodelay_of(ct_transport_fileno(S.t[0])), "accepted, nodelay=0");
  cr_assert(!nodelay_of(ct_transport_fileno(ct)), "connected, nodelay=0");
  ct_transport_abort(ct);
  srv_stop();
}

/* ------------------------------------------------------------ sendfile */

/* A file sent with sendfile(2) leaves behind what was written before it
 * and ahead of what is written after it, however full the socket gets. */
typedef struct sf_state {
  ct_transport *t;
  int fd;
  long long off, size;
  int tail_written;
} sf_state;

static int sf_pump(void *arg) {
  sf_state *st = arg;
  if (st->off < st->size) {
    long long n = ct_transport_sendfile(st->t, st->fd, st->off,
                                        (size_t)(st->size - st->off));
    cr_assert_geq(n, 0, "sendfile: %s", ct_strerror((int)n));
    st->off += n;
  }
  if (st->off == st->size && !st->tail_written) {
    cr_assert_eq(ct_transport_write(st->t, ":tail", 5), 0);
    st->tail_written = 1;
  }
  return st->tail_written;
}

Test(gather, sendfile_keeps_the_order_of_the_writes_around_it) {
  PAT = tu_pattern(PAT_LEN, 17, 3);
  char path[] = "/tmp/ct-sendfile-XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  unlink(path);
  cr_assert_eq(write(fd, PAT, PAT_LEN), (ssize_t)PAT_LEN);
  srv_start("tcp:0:interface=127.0.0.1");
  int cfd = raw_connect();
  wait_accepted(1);
  ct_transport *t = S.t[0];
  cr_assert_eq(ct_transport_write(t, "head:", 5), 0); /* gathered */
  sf_state st = {t, fd, 0, PAT_LEN, 0};
  /* The client reads while the loop turns: sf_pump runs in between. */
  char *got = malloc(PAT_LEN + 10);
  raw_reader rr = {cfd, got, 0, PAT_LEN + 10};
  double end = tu_now() + 30;
  while (!raw_read_some(&rr) && tu_now() < end) {
    sf_pump(&st);
    ct_reactor_iterate(R);
  }
  cr_assert_eq(rr.have, PAT_LEN + 10);
  cr_assert_eq(memcmp(got, "head:", 5), 0);
  cr_assert_eq(memcmp(got + 5, PAT, PAT_LEN), 0, "the file's bytes differ");
  cr_assert_eq(memcmp(got + 5 + PAT_LEN, ":tail", 5), 0);
  /* Past the end of the file: a clear error, not a silent 0. */
  cr_assert_eq(ct_transport_sendfile(t, fd, PAT_LEN + 1, 10), CT_ERANGE);
  free(got);
  close(fd);
  close(cfd);
  srv_stop();
  free(PAT);
}
