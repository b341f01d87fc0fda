/*
 * Back-pressure: a client that sends without reading keeps the echo
 * server's buffer and RSS bounded; push and pull producers; watermarks per
 * factory and per transport; user pause vs back-pressure pause.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>

#include "test_transport_util.h"

TU_REACTOR_FIXTURE

TestSuite(transport_backpressure, .init = setup, .fini = teardown,
          .timeout = 120);

static long rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, res = 0;
  if (f != NULL) {
    if (fscanf(f, "%ld %ld", &size, &res) != 2)
      res = 0;
    fclose(f);
  }
  return res * sysconf(_SC_PAGESIZE);
}

static int raw_connect(const ct_listening_port *port) {
  ct_address a;
  ct_listening_port_address(port, &a);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  cr_assert(fd >= 0);
  int rc = connect(fd, &a.u.sa, a.len);
  cr_assert(rc == 0 || errno == EINPROGRESS);
  return fd;
}

static int has_conn(void *arg) {
  return ((tu_server_stats *)arg)->made > 0;
}

/* The echo factory sf (stats in sst) listening, and a raw socket *fd that
 * never reads connected to it; returns the server's transport. */
static ct_transport *echo_with_raw_client(tu_server_stats *sst, ct_factory *sf,
                                          ct_listening_port **port, int *fd) {
  sf->user = sst;
  *port = tu_listen(R, "tcp:0:interface=127.0.0.1", sf);
  *fd = raw_connect(*port);
  cr_assert(tu_spin(R, has_conn, sst, 10));
  return sst->last;
}

Test(transport_backpressure, never_reading_client_is_bounded) {
  tu_server_stats sst = {0};
  ct_factory sf = CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
  ct_listening_port *port;
  int fd;
  ct_transport *st = echo_with_raw_client(&sst, &sf, &port, &fd);

  static char chunk[65536];
  memset(chunk, 'e', sizeof chunk);
  const size_t target = 100u * 1024u * 1024u;
  size_t sent = 0, max_buffered = 0;
  long rss0 = rss_bytes();
  /* Send until nothing more can move: the server has paused reading and
   * the client cannot send (both explicit, no waiting for time).  Once
   * paused, the server reads again only after its output drains, which
   * needs the client to read: so this state is final. */
  double end = tu_now() + 60; /* safety net only */
  for (;;) {
    cr_assert(tu_now() < end, "never reached a stable state");
    ssize_t n = send(fd, chunk, sizeof chunk, MSG_NOSIGNAL);
    if (n > 0)
      sent += (size_t)n;
    else
      cr_assert(errno == EAGAIN, "send: %s", strerror(errno));
    ct_reactor_iterate(R);
    size_t b = ct_transport_buffered(st);
    if (b > max_buffered)
      max_buffered = b;
    if (sent >= target || (n < 0 && ct_transport_reading_paused(st)))
      break;
  }
  long growth = rss_bytes() - rss0;
  cr_assert(sent < target, "the server kept reading everything");
  cr_assert(ct_transport_reading_paused(st));
  cr_assert(max_buffered <= st->high_water + 65536, "buffered %zu",
            max_buffered);
  cr_assert(growth < 4 * 1024 * 1024, "RSS grew by %ld bytes", growth);

  /* Now read everything back: the server resumes and echoes it all. */
  size_t got = 0;
  char rbuf[65536];
  end = tu_now() + 60;
  while (got < sent && tu_now() < end) {
    ssize_t n = recv(fd, rbuf, sizeof rbuf, 0);
    if (n > 0)
      got += (size_t)n;
    ct_reactor_iterate(R); /* the server writes what we made room for */
  }
  cr_assert_eq(got, sent);
  cr_assert(!ct_transport_reading_paused(st));
  close(fd);
  cr_assert(tu_spin(R, tu_server_lost, &sst, 10));
  tu_server_stats_release(&sst);
  tu_stop_port(port);
}

/* A sink server whose reading the test controls. */
static size_t sink_got;
static int sink_lost;
static ct_transport *sink_t;
static void sink_made(ct_protocol *p, ct_transport *t) {
  (void)p;
  sink_t = ct_transport_ref(t);
  ct_transport_pause_reading(t);
}
static void sink_data(ct_protocol *p, const char *d, size_t n) {
  (void)p;
  (void)d;
  sink_got += n;
}
static void sink_gone(ct_protocol *p, const ct_failure *reason) {
  (void)p;
  (void)reason;
  sink_lost++;
}
static const ct_protocol_ops sink_ops = {.name = "sink",
                                         .connection_made = sink_made,
                                         .data_received = sink_data,
                                         .connection_lost = sink_gone};

typedef struct prod {
  ct_transport *t;
  int paused, pauses, resumes, stops;
  /* Contract breaches seen from inside the callbacks: a pause while the
   * transport was below its high-water mark, a resume above its
   * low-water mark, a write while paused. */
  int early_pauses, early_resumes, writes_while_paused;
  size_t written, total;
  int pull;
  char chunk[16384];
} prod;

static void produce(prod *p) {
  while (!p->paused && p->written < p->total) {
    size_t n = sizeof p->chunk;
    if (n > p->total - p->written)
      n = p->total - p->written;
    if (p->paused)
      p->writes_while_paused++;
    cr_assert_eq(ct_transport_write(p->t, p->chunk, n), 0);
    p->written += n;
    if (p->pull)
      break; /* one chunk per resume */
  }
}

static void p_pause(void *arg) {
  prod *p = arg;
  if (ct_transport_buffered(p->t) <= p->t->high_water)
    p->early_pauses++;
  p->paused = 1;
  p->pauses++;
}
static void p_resume(void *arg) {
  prod *p = arg;
  if (!p->pull && ct_transport_buffered(p->t) > p->t->low_water)
    p->early_resumes++;
  p->paused = 0;
  p->resumes++;
  produce(p);
  if (p->pull && p->written >= p->total)
    ct_transport_unregister_producer(p->t);
}
static void p_stop(void *arg) {
  prod *p = arg;
  p->stops++;
}
static const ct_producer_ops prod_ops = {p_pause, p_resume, p_stop};

static int sink_has(void *arg) {
  return sink_got >= *(size_t *)arg;
}
static int sink_connected(void *arg) {
  (void)arg;
  return sink_t != NULL;
}
static int both_lost(void *arg) {
  return ((tu_client_stats *)arg)->lost > 0 && sink_lost > 0;
}
static int prod_paused(void *arg) {
  return ((prod *)arg)->pauses > 0;
}

static void open_sink(ct_factory *sf, ct_listening_port **port,
                      ct_client_factory *cf, tu_client_stats *cst,
                      ct_transport **ct) {
  sink_got = 0;
  sink_lost = 0;
  sink_t = NULL;
  ct_factory_init(sf, NULL, &sink_ops, sizeof(ct_protocol), NULL);
  char ep[128];
  *port = tu_listen_ep(R, "tcp:0:interface=127.0.0.1", sf, ep, sizeof ep);
  tu_client_factory_init(cf, cst);
  cf->base.write_high_water = 100000;
  cf->base.write_low_water = 20000;
  tu_conn_result res;
  tu_connect(R, ep, cf, &res);
  cr_assert(res.failure == NULL);
  *ct = ct_transport_ref(res.protocol->transport);
  cr_assert(tu_spin(R, sink_connected, NULL, 10));
}

Test(transport_backpressure, push_producer_paused_and_resumed) {
  ct_factory sf;
  ct_listening_port *port;
  ct_client_factory cf;
  tu_client_stats cst;
  ct_transport *ct;
  open_sink(&sf, &port, &cf, &cst, &ct);
  cr_assert_eq(ct->high_water, 100000); /* from the factory */
  cr_assert_eq(ct->low_water, 20000);

  static prod p;
  memset(&p, 0, sizeof p);
  p.t = ct;
  p.total = 20u * 1024u * 1024u;
  cr_assert_eq(ct_transport_register_producer(ct, &prod_ops, &p, 1), 0);
  cr_assert_eq(ct_transport_register_producer(ct, &prod_ops, &p, 1), CT_ESTATE);
  produce(&p);
  cr_assert(tu_spin(R, prod_paused, &p, 10));
  cr_assert(p.written < p.total);
  cr_assert(ct_transport_buffered(ct) > ct->high_water);
  /* Let the sink read: the producer resumes until everything is sent. */
  ct_transport_resume_reading(sink_t);
  cr_assert(tu_spin(R, sink_has, &p.total, 60), "sink got %zu", sink_got);
  cr_assert(p.resumes >= 1);
  cr_assert_eq(sink_got, p.total);
  /* Paused means paused, checked at every call rather than by watching
   * for a while: pauses only above high water, resumes only at or below
   * low water, and no write in between. */
  cr_assert_eq(p.early_pauses, 0);
  cr_assert_eq(p.early_resumes, 0);
  cr_assert_eq(p.writes_while_paused, 0);
  /* Ending the connection stops the producer once: by the time both ends
   * have seen the close, every stop there will be has been delivered. */
  cr_assert_eq(ct_transport_abort(ct), 0);
  cr_assert(tu_spin(R, both_lost, &cst, 10));
  cr_assert_eq(p.stops, 1);
  ct_transport_unref(ct);
  ct_transport_unref(sink_t);
  tu_stop_port(port);
}

static int pull_done(void *arg) {
  prod *p = arg;
  return p->written >= p->total && sink_got >= p->total;
}

Test(transport_backpressure, pull_producer) {
  ct_factory sf;
  ct_listening_port *port;
  ct_client_factory cf;
  tu_client_stats cst;
  ct_transport *ct;
  open_sink(&sf, &port, &cf, &cst, &ct);
  ct_transport_resume_reading(sink_t);
  static prod p;
  memset(&p, 0, sizeof p);
  p.t = ct;
  p.pull = 1;
  p.total = 40 * sizeof p.chunk;
  cr_assert_eq(ct_transport_register_producer(ct, &prod_ops, &p, 0), 0);
  cr_assert_eq(p.resumes, 0); /* first call on a later turn */
  cr_assert(tu_spin(R, pull_done, &p, 30));
  /* The sink has every byte, so the client's output drained after the
   * last chunk: a still-registered producer would have been asked again
   * by now.  Unregistered: 40 calls, no more. */
  cr_assert_eq(ct_transport_buffered(ct), 0);
  cr_assert_eq(p.resumes, 40);
  cr_assert_eq(p.stops, 0);
  ct_transport_lose_connection(ct);
  cr_assert(tu_spin(R, both_lost, &cst, 10));
  cr_assert_eq(p.resumes, 40);
  ct_transport_unref(ct);
  ct_transport_unref(sink_t);
  tu_stop_port(port);
}

Test(transport_backpressure, user_pause_survives_backpressure) {
  /* Reading paused by the user stays paused when back-pressure ends. */
  tu_server_stats sst = {0};
  ct_factory sf = CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
  ct_listening_port *port;
  int fd;
  ct_transport *st = echo_with_raw_client(&sst, &sf, &port, &fd);
  cr_assert_eq(ct_transport_set_watermarks(st, 1000, 100), 0);
  cr_assert_eq(ct_transport_pause_reading(st), 0);
  cr_assert(ct_transport_reading_paused(st));
  /* Fill the server's output past high by making it echo while the client
   * does not read. */
  cr_assert_eq(ct_transport_resume_reading(st), 0);
  static char chunk[65536];
  size_t sent = 0;
  double end = tu_now() + 60; /* safety net only */
  while (!ct_transport_reading_paused(st) && tu_now() < end) {
    ssize_t n = send(fd, chunk, sizeof chunk, MSG_NOSIGNAL);
    if (n > 0)
      sent += (size_t)n;
    ct_reactor_iterate(R);
  }
  cr_assert(ct_transport_reading_paused(st));
  cr_assert(ct_transport_buffered(st) > 1000);
  /* User pause on top, then drain: reading must stay paused. */
  ct_transport_pause_reading(st);
  char rbuf[65536];
  end = tu_now() + 60;
  while (ct_transport_buffered(st) > 0 && tu_now() < end) {
    (void)recv(fd, rbuf, sizeof rbuf, 0);
    ct_reactor_iterate(R); /* the server flushes into the room made */
  }
  cr_assert_eq(ct_transport_buffered(st), 0);
  cr_assert(ct_transport_reading_paused(st));
  ct_transport_resume_reading(st);
  cr_assert(!ct_transport_reading_paused(st));
  close(fd);
  cr_assert(tu_spin(R, tu_server_lost, &sst, 10));
  tu_server_stats_release(&sst);
  tu_stop_port(port);
}
