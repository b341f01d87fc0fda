/*
 * The asynchronous resolver (ct_resolve) and host-name connects: a private
 * hosts file, and a tiny DNS responder built on libevent's evdns server API
 * that runs on the reactor under test (so a resolver that blocked the loop
 * would deadlock, not just be slow).  Names the responder knows:
 *   two.test     A 127.0.0.2, 127.0.0.1 (in that order)
 *   nx.test      NXDOMAIN
 *   silent.test  never answered (the request is held, dropped at the end)
 * Anything else: NXDOMAIN.  AAAA questions get an empty NOERROR answer.
 */
#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/dns_struct.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>

#include "ctwist/resolve.h"
#include "test_transport_util.h"

/* ------------------------------------------------------------ responder */

typedef struct responder {
  int fd;
  int port;
  struct evdns_server_port *sp;
  int queries;
  int silent_queries;
  struct evdns_server_request *held[32];
  int nheld;
} responder;

static void responder_cb(struct evdns_server_request *req, void *arg) {
  responder *rs = arg;
  rs->queries++;
  if (req->nquestions != 1) {
    evdns_server_request_respond(req, DNS_ERR_FORMAT);
    return;
  }
  const struct evdns_server_question *q = req->questions[0];
  if (strcasecmp(q->name, "silent.test") == 0) {
    rs->silent_queries++;
    if (rs->nheld < 32)
      rs->held[rs->nheld++] = req;
    else
      evdns_server_request_drop(req);
    return;
  }
  if (strcasecmp(q->name, "two.test") == 0) {
    if (q->type == EVDNS_TYPE_A) {
      struct in_addr a[2];
      inet_pton(AF_INET, "127.0.0.2", &a[0]);
      inet_pton(AF_INET, "127.0.0.1", &a[1]);
      evdns_server_request_add_a_reply(req, q->name, 2, a, 60);
    }
    evdns_server_request_respond(req, 0);
    return;
  }
  evdns_server_request_respond(req, DNS_ERR_NOTEXIST);
}

static void responder_start(ct_reactor *r, responder *rs) {
  memset(rs, 0, sizeof *rs);
  rs->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  cr_assert(rs->fd >= 0);
  ct_address a;
  ct_address_from_ip(&a, "127.0.0.1", 0);
  cr_assert_eq(bind(rs->fd, &a.u.sa, a.len), 0);
  socklen_t l = sizeof a.u;
  getsockname(rs->fd, &a.u.sa, &l);
  rs->port = ct_address_port(&a);
  rs->sp = evdns_add_server_port_with_base(ct_reactor_event_base(r), rs->fd, 0,
                                           responder_cb, rs);
  cr_assert(rs->sp != NULL);
}

static void responder_stop(responder *rs) {
  for (int i = 0; i < rs->nheld; i++)
    evdns_server_request_drop(rs->held[i]);
  rs->nheld = 0;
  evdns_close_server_port(rs->sp);
  close(rs->fd);
}

/* A private hosts file; the path is static storage. */
static const char *hosts_file(const char *content) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/ct_hosts_%d", (int)getpid());
  FILE *f = fopen(path, "w");
  cr_assert(f != NULL);
  fputs(content, f);
  fclose(f);
  return path;
}

static responder RS;

/* Point R's resolver at RS and at a hosts file. */
static void configure(ct_reactor *r, const char *hosts, double timeout) {
  char ns[64];
  snprintf(ns, sizeof ns, "127.0.0.1:%d", RS.port);
  ct_resolver_config cfg = {
      .nameservers = ns, .hosts_file = hosts ? hosts : "", .timeout = timeout};
  ct_failure *err = NULL;
  int rc = ct_resolver_configure(r, &cfg, &err);
  cr_assert_eq(rc, 0, "configure: %s", err ? err->message : "?");
}

TU_CLOCK_REACTOR_FIXTURE(responder_stop(&RS); unlink(hosts_file("")))

static void setup_dns(void) {
  setup();
  responder_start(R, &RS);
}

TestSuite(resolve, .init = setup_dns, .fini = teardown, .timeout = 30);

/* ------------------------------------------------------------- helpers */

typedef struct lookup_result {
  int done;
  ct_address_list *addrs;
  ct_failure *failure;
} lookup_result;

static ct_step lookup_ok(ct_value v, void *arg) {
  lookup_result *res = arg;
  res->done = 1;
  res->addrs = v.ptr;
  return ct_pass(CT_NONE);
}

static ct_step lookup_err(ct_failure *f, void *arg) {
  lookup_result *res = arg;
  res->done = 1;
  res->failure = f;
  return ct_pass(CT_NONE);
}

static int lookup_done(void *arg) {
  return ((lookup_result *)arg)->done;
}

static ct_deferred *resolve(const char *name, int family, lookup_result *res) {
  memset(res, 0, sizeof *res);
  ct_deferred *d = ct_resolve(R, name, family);
  cr_assert(d != NULL);
  ct_deferred_add_callbacks(d, lookup_ok, lookup_err, res);
  return d;
}

/* Resolve and wait for the outcome; the caller frees res->addrs or
 * res->failure. */
static void resolve_wait(const char *name, int family, lookup_result *res) {
  ct_deferred *d = resolve(name, family, res);
  cr_assert_eq(res->done, 0, "delivered from inside ct_resolve()");
  ct_deferred_unref(d);
  cr_assert(tu_spin(R, lookup_done, res, 10), "lookup of %s hung", name);
}

static void assert_addr(const ct_address_list *l, size_t i, const char *want) {
  char s[CT_ADDRESS_STRLEN];
  cr_assert(i < l->n);
  ct_address_format(&l->addrs[i], s, sizeof s);
  cr_assert_str_eq(s, want);
}

static void assert_failure(ct_failure *f, int code, const char *w1,
                           const char *w2) {
  cr_assert(f != NULL);
  char msg[512];
  ct_failure_format(f, msg, sizeof msg);
  cr_assert(ct_failure_check(f, code), "%s", msg);
  cr_assert(strstr(msg, w1) != NULL, "%s", msg);
  cr_assert(w2 == NULL || strstr(msg, w2) != NULL, "%s", msg);
  ct_failure_free(f);
}

static int queries_at_least(void *arg) {
  return RS.queries >= *(int *)arg;
}

/* Start connecting `ep` with a recording client factory and wait until the
 * responder has the query; returns the Deferred (the caller's). */
static ct_deferred *connect_asked(const char *ep, ct_client_factory *cf,
                                  tu_client_stats *cst, tu_conn_result *res) {
  tu_client_factory_init(cf, cst);
  ct_deferred *d = tu_connect_begin(R, ep, cf, res);
  int one = 1;
  cr_assert(tu_spin(R, queries_at_least, &one, 10));
  return d;
}

/* -------------------------------------------------------------- lookups */

Test(resolve, hosts_file_names) {
  configure(R,
            hosts_file("# test hosts\n127.0.0.5 alpha.test alias.test\n"
                       "::1 alpha.test\n127.0.0.6\talpha.test\n"),
            0);
  lookup_result res;
  resolve_wait("alpha.test", AF_UNSPEC, &res);
  cr_assert(res.addrs != NULL);
  cr_assert_eq(res.addrs->n, 3);
  assert_addr(res.addrs, 0, "127.0.0.5:0");
  assert_addr(res.addrs, 1, "[::1]:0");
  assert_addr(res.addrs, 2, "127.0.0.6:0");
  free(res.addrs);

  resolve_wait("ALIAS.test", AF_INET, &res);
  cr_assert_eq(res.addrs->n, 1);
  assert_addr(res.addrs, 0, "127.0.0.5:0");
  free(res.addrs);

  resolve_wait("alpha.test", AF_INET6, &res);
  cr_assert_eq(res.addrs->n, 1);
  assert_addr(res.addrs, 0, "[::1]:0");
  free(res.addrs);
  cr_assert_eq(RS.queries, 0, "hosts-file names must not reach the server");

  /* Numeric addresses need no lookup, and still arrive from the loop. */
  resolve_wait("10.1.2.3", AF_INET, &res);
  assert_addr(res.addrs, 0, "10.1.2.3:0");
  free(res.addrs);
}

Test(resolve, server_answers_in_order) {
  configure(R, NULL, 0);
  lookup_result res;
  resolve_wait("two.test", AF_INET, &res);
  cr_assert(res.failure == NULL);
  cr_assert_eq(res.addrs->n, 2);
  assert_addr(res.addrs, 0, "127.0.0.2:0");
  assert_addr(res.addrs, 1, "127.0.0.1:0");
  free(res.addrs);
  cr_assert_geq(RS.queries, 1);

  /* Both families: the A answer; the empty AAAA answer adds nothing. */
  resolve_wait("two.test", AF_UNSPEC, &res);
  cr_assert_eq(res.addrs->n, 2);
  free(res.addrs);

  /* Only AAAA asked, and the name has none. */
  resolve_wait("two.test", AF_INET6, &res);
  assert_failure(res.failure, CT_EDNS, "two.test", "no address");
}

Test(resolve, nxdomain_is_a_clear_failure) {
  configure(R, NULL, 0);
  lookup_result res;
  resolve_wait("nx.test", AF_INET, &res);
  cr_assert(res.addrs == NULL);
  assert_failure(res.failure, CT_EDNS, "'nx.test'", "NXDOMAIN");
}

Test(resolve, silent_server_times_out_on_the_reactor_clock) {
  configure(R, NULL, 2.0);
  lookup_result res;
  ct_deferred *d = resolve("silent.test", AF_INET, &res);
  ct_deferred_unref(d);
  int one = 1;
  cr_assert(tu_spin(R, queries_at_least, &one, 10));
  tu_turns(R, 10);
  cr_assert_eq(res.done, 0);
  /* Reconfiguring under a lookup in flight is refused. */
  ct_failure *err = NULL;
  cr_assert_eq(ct_resolver_configure(R, NULL, &err), CT_ESTATE);
  assert_failure(err, CT_ESTATE, "in flight", NULL);
  ct_clock_advance(C, 1.9);
  cr_assert_eq(res.done, 0);
  ct_clock_advance(C, 0.2);
  cr_assert_eq(res.done, 1);
  assert_failure(res.failure, CT_ETIMEDOUT, "'silent.test'", "2 seconds");
}

Test(resolve, cancel_abandons_the_query) {
  configure(R, NULL, 0);
  lookup_result res;
  ct_deferred *d = resolve("silent.test", AF_INET, &res);
  int one = 1;
  cr_assert(tu_spin(R, queries_at_least, &one, 10));
  ct_deferred_cancel(d);
  cr_assert_eq(res.done, 1, "cancel must fire the Deferred at once");
  assert_failure(res.failure, CT_ECANCELLED, "silent.test", NULL);
  ct_deferred_unref(d);
  /* The server answering late changes nothing. */
  for (int i = 0; i < RS.nheld; i++)
    evdns_server_request_respond(RS.held[i], DNS_ERR_NOTEXIST);
  RS.nheld = 0;
  tu_turns(R, 10);
}

Test(resolve, pending_lookup_fails_when_the_reactor_is_freed) {
  configure(R, NULL, 0);
  lookup_result res;
  ct_deferred *d = resolve("silent.test", AF_INET, &res);
  ct_deferred_unref(d);
  int one = 1;
  cr_assert(tu_spin(R, queries_at_least, &one, 10));
  responder_stop(&RS);
  ct_reactor_free(R);
  cr_assert_eq(res.done, 1);
  assert_failure(res.failure, CT_ECLOSED, "silent.test", NULL);
  /* teardown stops a responder and frees a reactor: give it fresh ones. */
  R = ct_reactor_new();
  responder_start(R, &RS);
}

Test(resolve, bad_configuration_names_the_problem) {
  ct_resolver_config cfg = {.nameservers = "127.0.0.1:53, not-an-ip"};
  ct_failure *err = NULL;
  cr_assert_eq(ct_resolver_configure(R, &cfg, &err), CT_EINVAL);
  assert_failure(err, CT_EINVAL, "'not-an-ip'", NULL);

  ct_resolver_config cfg2 = {.nameservers = "127.0.0.1",
                             .hosts_file = "/nonexistent/hosts"};
  cr_assert_eq(ct_resolver_configure(R, &cfg2, &err), CT_EINVAL);
  assert_failure(err, CT_EINVAL, "/nonexistent/hosts", NULL);

  ct_resolver_config cfg3 = {.resolv_conf = "/nonexistent/resolv.conf"};
  cr_assert_eq(ct_resolver_configure(R, &cfg3, &err), CT_EINVAL);
  assert_failure(err, CT_EINVAL, "/nonexistent/resolv.conf", NULL);

  ct_resolver_config cfg4 = {.nameservers = "127.0.0.1", .timeout = -1};
  cr_assert_eq(ct_resolver_configure(R, &cfg4, &err), CT_EINVAL);
  assert_failure(err, CT_EINVAL, "timeout", NULL);

  lookup_result res;
  memset(&res, 0, sizeof res);
  ct_deferred *d = ct_resolve(R, "", AF_INET);
  ct_deferred_add_callbacks(d, lookup_ok, lookup_err, &res);
  ct_deferred_unref(d);
  assert_failure(res.failure, CT_EINVAL, "non-empty name", NULL);
}

/* ------------------------------------------------------------- connects */

/* A listener on `ip`:port (port 0: any) that never accepts and whose queue
 * is full, so further SYNs are dropped: connects to it hang. */
static int blackhole(const char *ip, int port, int *filler) {
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert(lfd >= 0);
  ct_address a;
  ct_address_from_ip(&a, ip, port);
  if (bind(lfd, &a.u.sa, a.len) != 0) {
    close(lfd);
    return -1;
  }
  cr_assert_eq(listen(lfd, 0), 0);
  /* With a backlog of 0 the queue holds one connection: fill it. */
  *filler = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  connect(*filler, &a.u.sa, a.len);
  struct pollfd p = {.fd = *filler, .events = POLLOUT};
  cr_assert_eq(poll(&p, 1, 5000), 1, "filler connection did not complete");
  return lfd;
}

static ct_factory SF;

/* An echo server on 127.0.0.1 and a black hole on 127.0.0.2, same port. */
static ct_listening_port *two_listeners(int *port, int *bh, int *filler) {
  for (int tries = 0; tries < 20; tries++) {
    SF = (ct_factory)CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
    ct_listening_port *lp = tu_listen(R, "tcp:0:interface=127.0.0.1", &SF);
    ct_address a;
    ct_listening_port_address(lp, &a);
    *port = ct_address_port(&a);
    *bh = blackhole("127.0.0.2", *port, filler);
    if (*bh >= 0)
      return lp;
    tu_stop_port(lp);
  }
  cr_assert_fail("no port free on both 127.0.0.1 and 127.0.0.2");
  return NULL;
}

Test(resolve, connect_by_hosts_file_name) {
  SF = (ct_factory)CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
  ct_listening_port *lp = tu_listen(R, "tcp:0:interface=127.0.0.1", &SF);
  ct_address a;
  ct_listening_port_address(lp, &a);
  configure(R, hosts_file("127.0.0.1 svc.test\n"), 0);
  char ep[128];
  snprintf(ep, sizeof ep, "tcp:host=svc.test:port=%d", ct_address_port(&a));
  ct_client_factory cf;
  tu_client_stats cst;
  tu_conn_result res;
  ct_transport *t = tu_connect_ok(R, ep, &cf, &cst, &res);
  cr_assert(t != NULL);
  ct_address peer;
  ct_transport_get_peer(t, &peer);
  cr_assert(ct_address_equal(&peer, &a));
  ct_transport_abort(t);
  tu_turns(R, 5);
  tu_stop_port(lp);
}

Test(resolve, happy_eyeballs_staggers_past_a_black_hole) {
  int port, bh, filler;
  ct_listening_port *lp = two_listeners(&port, &bh, &filler);
  configure(R, NULL, 0);
  char ep[128];
  snprintf(ep, sizeof ep, "tcp:host=two.test:port=%d:timeout=10", port);
  ct_client_factory cf;
  tu_client_stats cst;
  tu_conn_result res;
  ct_deferred_unref(connect_asked(ep, &cf, &cst, &res));
  /* The first address (127.0.0.2) is tried alone: it never answers. */
  tu_turns(R, 30);
  cr_assert_eq(res.done, 0, "connected before the stagger delay");
  ct_clock_advance(C, 0.249);
  tu_turns(R, 10);
  cr_assert_eq(res.done, 0);
  /* 250 ms after the first attempt, the second starts and wins. */
  ct_clock_advance(C, 0.001);
  cr_assert(tu_spin(R, tu_conn_done, &res, 10));
  cr_assert(res.failure == NULL);
  ct_address peer, want;
  ct_transport_get_peer(res.protocol->transport, &peer);
  ct_address_from_ip(&want, "127.0.0.1", port);
  cr_assert(ct_address_equal(&peer, &want));
  ct_transport_abort(res.protocol->transport);
  tu_turns(R, 5);
  tu_stop_port(lp);
  close(filler);
  close(bh);
}

Test(resolve, failed_attempt_hands_over_at_once) {
  /* 127.0.0.2 refuses (nothing listens there on that port): the second
   * address is tried without waiting for the stagger delay. */
  SF = (ct_factory)CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
  ct_listening_port *lp = tu_listen(R, "tcp:0:interface=127.0.0.1", &SF);
  ct_address a;
  ct_listening_port_address(lp, &a);
  configure(R, NULL, 0);
  char ep[128];
  snprintf(ep, sizeof ep, "tcp:host=two.test:port=%d", ct_address_port(&a));
  ct_client_factory cf;
  tu_client_stats cst;
  tu_conn_result res;
  ct_transport *t = tu_connect_ok(R, ep, &cf, &cst, &res);
  ct_address peer;
  ct_transport_get_peer(t, &peer);
  cr_assert(ct_address_equal(&peer, &a));
  cr_assert_eq(ct_clock_seconds(C), 0.0);
  ct_transport_abort(t);
  tu_turns(R, 5);
  tu_stop_port(lp);
}

Test(resolve, connect_to_unknown_name_fails_clearly) {
  configure(R, NULL, 0);
  ct_client_factory cf;
  tu_client_stats cst;
  tu_client_factory_init(&cf, &cst);
  tu_conn_result res;
  tu_connect(R, "tcp:host=nx.test:port=80", &cf, &res);
  cr_assert_eq(cst.failed, 1);
  assert_failure(res.failure, CT_EDNS, "nx.test port 80", "NXDOMAIN");
}

Test(resolve, cancelling_a_connect_cancels_the_lookup) {
  configure(R, NULL, 0);
  ct_client_factory cf;
  tu_client_stats cst;
  tu_conn_result res;
  ct_deferred *d =
      connect_asked("tcp:host=silent.test:port=80", &cf, &cst, &res);
  ct_deferred_cancel(d);
  ct_deferred_unref(d);
  cr_assert_eq(res.done, 1);
  assert_failure(res.failure, CT_ECANCELLED, "silent.test", NULL);
  /* A late answer is ignored, and the connect deadline no longer runs. */
  for (int i = 0; i < RS.nheld; i++)
    evdns_server_request_respond(RS.held[i], DNS_ERR_NOTEXIST);
  RS.nheld = 0;
  tu_turns(R, 10);
  cr_assert_eq(ct_reactor_pending_calls(R), 0);
  cr_assert_eq(cst.failed, 1);
}

Test(resolve, connect_deadline_covers_the_lookup) {
  configure(R, NULL, 0);
  ct_client_factory cf;
  tu_client_stats cst;
  tu_conn_result res;
  ct_deferred_unref(
      connect_asked("tcp:host=silent.test:port=80:timeout=3", &cf, &cst, &res));
  ct_clock_advance(C, 3.0);
  cr_assert_eq(res.done, 1);
  assert_failure(res.failure, CT_ETIMEDOUT, "silent.test port 80",
                 "looking up the host name");
}

/* ------------------------------------------------------------ watchdog */

/* On the real clock: a looping call records the longest gap between loop
 * turns while lookups and a connect wait on a server that never answers.
 * A resolver that blocked would stall the loop for its whole timeout. */
typedef struct watchdog {
  double last, max_gap;
  int ticks;
  int pending;
  ct_reactor *r;
  lookup_result lookup;
  tu_conn_result conn;
} watchdog;

static int watch_tick(ct_looping_call *lc, uint64_t count, void *arg) {
  watchdog *w = arg;
  double now = tu_now();
  if (w->ticks > 0 && now - w->last > w->max_gap)
    w->max_gap = now - w->last;
  w->last = now;
  w->ticks++;
  return 0;
}

static ct_step wd_lookup_done(ct_result r, void *arg) {
  watchdog *w = arg;
  w->lookup.done = 1;
  w->lookup.failure = r.failure;
  free(r.value.ptr);
  if (--w->pending == 0)
    ct_reactor_stop(w->r);
  return ct_pass(CT_NONE);
}

static ct_step wd_conn_done(ct_result r, void *arg) {
  watchdog *w = arg;
  w->conn.done = 1;
  w->conn.failure = r.failure;
  if (--w->pending == 0)
    ct_reactor_stop(w->r);
  return ct_pass(CT_NONE);
}

Test(resolve_watchdog, reactor_never_blocks_on_a_silent_server, .timeout = 30) {
  ct_reactor *r = ct_reactor_new();
  responder_start(r, &RS);
  configure(r, NULL, 1.5);
  watchdog w = {.r = r, .pending = 2};
  ct_looping_call *lc = ct_looping_call_new(r, watch_tick, &w);
  ct_looping_call_start(lc, 0.01, 1);
  ct_deferred *d = ct_resolve(r, "silent.test", AF_INET);
  ct_deferred_add_both(d, wd_lookup_done, &w);
  ct_deferred_unref(d);
  ct_client_factory cf;
  tu_client_stats cst;
  tu_client_factory_init(&cf, &cst);
  d = ct_connect(r, "tcp:host=silent.test:port=80:timeout=1", &cf);
  ct_deferred_add_both(d, wd_conn_done, &w);
  ct_deferred_unref(d);
  ct_reactor_run(r);
  ct_looping_call_free(lc);
  responder_stop(&RS);
  ct_reactor_free(r);
  cr_assert_geq(RS.silent_queries, 2);
  assert_failure(w.lookup.failure, CT_ETIMEDOUT, "silent.test", NULL);
  assert_failure(w.conn.failure, CT_ETIMEDOUT, "silent.test", NULL);
  /* ~100 ticks in 1.5 s; a blocked loop would show one gap of >= 1 s. */
  cr_assert_geq(w.ticks, 20, "the loop turned only %d times", w.ticks);
  cr_assert_lt(w.max_gap, 0.75, "the loop stalled for %.3f s", w.max_gap);
}
