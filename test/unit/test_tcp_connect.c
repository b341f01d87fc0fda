/*
 * Client side on a fake clock: connect timeouts, and the reconnecting
 * client's back-off sequence (Twisted's ReconnectingClientFactory numbers).
 */
#include <errno.h>
#include <math.h>
#include <sys/socket.h>

#include <poll.h>

#include "test_transport_util.h"

TU_CLOCK_REACTOR_FIXTURE((void)0)

TestSuite(tcp_connect, .init = setup, .fini = teardown, .timeout = 30);

/* A listener that never accepts, with its queue full: further SYNs are
 * dropped, so a connect neither succeeds nor fails until it times out. */
static int full_listener(int *port, int *fillers, int nfill) {
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert(lfd >= 0);
  ct_address a;
  ct_address_from_ip(&a, "127.0.0.1", 0);
  cr_assert_eq(bind(lfd, &a.u.sa, a.len), 0);
  cr_assert_eq(listen(lfd, 0), 0);
  socklen_t l = sizeof a.u;
  getsockname(lfd, &a.u.sa, &l);
  *port = ct_address_port(&a);
  for (int i = 0; i < nfill; i++) {
    fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(fillers[i], &a.u.sa, a.len);
  }
  /* Full once the accept queue holds more than the backlog (0): the
   * kernel shows the queue as the listener's rx_queue. */
  struct pollfd pfd = {.fd = lfd, .events = POLLIN};
  cr_assert_eq(poll(&pfd, 1, 10000), 1, "nothing reached the accept queue");
  tu_tcp_sock ls = {0};
  tu_tcp_find(*port, 0, &ls);
  cr_assert_eq(ls.state, TU_TCP_LISTEN);
  cr_assert_geq(ls.rx_queue, 1, "the accept queue never filled");
  return lfd;
}

Test(tcp_connect, timeout_on_fake_clock) {
  int port, fill[4];
  int lfd = full_listener(&port, fill, 4);
  ct_client_factory cf;
  tu_client_stats cst;
  tu_client_factory_init(&cf, &cst);
  char ep[128];
  snprintf(ep, sizeof ep, "tcp:host=127.0.0.1:port=%d:timeout=5", port);
  tu_conn_result res;
  memset(&res, 0, sizeof res);
  int syn0 = tu_tcp_count(-1, port, TU_TCP_SYN_SENT, NULL);
  ct_deferred *d = ct_connect(R, ep, &cf);
  ct_deferred_add_callbacks(d, tu_conn_ok, tu_conn_err, &res);
  ct_deferred_unref(d);
  /* Our SYN is out and dropped by the full queue: one more socket to the
   * port is pending in the kernel (SYN_SENT), so only the timeout can end
   * the connect. */
  double end = tu_now() + 10;
  while (tu_now() < end &&
         tu_tcp_count(-1, port, TU_TCP_SYN_SENT, NULL) <= syn0)
    ct_reactor_iterate_wait(R, 0.001);
  cr_assert_gt(tu_tcp_count(-1, port, TU_TCP_SYN_SENT, NULL), syn0);
  ct_reactor_iterate(R);
  cr_assert_eq(res.done, 0, "connect finished without a timeout");
  ct_clock_advance(C, 4.9);
  cr_assert_eq(res.done, 0);
  ct_clock_advance(C, 0.2);
  cr_assert_eq(res.done, 1);
  cr_assert(res.failure != NULL);
  cr_assert_eq(res.failure->code, CT_ETIMEDOUT);
  char msg[512], ps[16];
  ct_failure_format(res.failure, msg, sizeof msg);
  snprintf(ps, sizeof ps, "%d", port);
  cr_assert(strstr(msg, "127.0.0.1") && strstr(msg, ps) &&
                strstr(msg, "errno 110"),
            "%s", msg);
  cr_assert_eq(cst.failed, 1);
  cr_assert_eq(cst.failed_code, CT_ETIMEDOUT);
  ct_failure_free(res.failure);
  for (int i = 0; i < 4; i++)
    close(fill[i]);
  close(lfd);
}

/* ---------------------------------------------------------- reconnecting */

static tu_client_stats *g_cst;

static int attempts_at_least(void *arg) {
  int *want = arg;
  return g_cst->failed >= *want;
}

static void settle(int want_failed) {
  cr_assert(tu_spin(R, attempts_at_least, &want_failed, 10),
            "expected %d failures, have %d", want_failed, g_cst->failed);
}

/* A recording client factory watched by settle(), and the default policy. */
static void reconnect_init(ct_client_factory *cf, tu_client_stats *cst,
                           ct_reconnect_policy *pol) {
  tu_client_factory_init(cf, cst);
  g_cst = cst;
  ct_reconnect_policy_default(pol);
}

/* Turn the loop (one turn per check) until cond holds or 10 s pass. */
static void turn_until(tu_cond_fn cond, void *arg) {
  double end = tu_now() + 10;
  while (!cond(arg) && tu_now() < end)
    ct_reactor_iterate_wait(R, 0.001);
}

static int rc_connected(void *rc) {
  return ct_reconnecting_client_protocol(rc) != NULL;
}

static int server_made(void *st) {
  return ((tu_server_stats *)st)->made != 0;
}

static int client_lost(void *st) {
  return ((tu_client_stats *)st)->lost != 0;
}

Test(tcp_connect, reconnect_backoff_sequence) {
  char ep[128];
  snprintf(ep, sizeof ep, "unix:path=/tmp/ct-test-reconn-%d.sock",
           (int)getpid());
  ct_client_factory cf;
  tu_client_stats cst;
  ct_reconnect_policy pol;
  reconnect_init(&cf, &cst, &pol);
  cr_assert_float_eq(pol.initial_delay, 1.0, 1e-12);
  cr_assert_float_eq(pol.factor, M_E, 1e-9);
  cr_assert_float_eq(pol.max_delay, 3600.0, 1e-12);
  pol.factor = 2.0;
  pol.max_delay = 10.0;
  pol.jitter = 0;
  pol.max_retries = 6;
  ct_failure *err = NULL;
  ct_reconnecting_client *rc =
      ct_reconnecting_client_new(R, ep, &cf, &pol, &err);
  cr_assert(rc != NULL);
  settle(1);
  /* Expected delays: 2, 4, 8, 10, 10, 10, then give up (6 retries). */
  const double expect[] = {2, 4, 8, 10, 10, 10};
  for (int i = 0; i < 6; i++) {
    cr_assert_float_eq(ct_reconnecting_client_delay(rc), expect[i], 1e-9,
                       "retry %d", i + 1);
    cr_assert_eq(ct_reconnecting_client_retries(rc), i + 1);
    ct_clock_advance(C, expect[i] - 0.01);
    /* An attempt starts synchronously when its time comes: none yet. */
    cr_assert_eq(ct_reconnecting_client_retries(rc), i + 1, "retried early");
    tu_turns(R, 3);
    cr_assert_eq(cst.failed, i + 1, "retried early");
    ct_clock_advance(C, 0.01);
    settle(i + 2);
  }
  /* Given up: no more attempts however long we wait. */
  cr_assert_eq(ct_reconnecting_client_retries(rc), 7);
  ct_clock_advance(C, 100);
  cr_assert_eq(ct_reconnecting_client_retries(rc), 7, "tried again");
  tu_turns(R, 3);
  cr_assert_eq(cst.failed, 7);
  ct_reconnecting_client_free(rc);
}

Test(tcp_connect, reconnect_resets_on_success_and_retries_after_loss) {
  char path[96], sep[128], cep[128];
  snprintf(path, sizeof path, "/tmp/ct-test-reconn2-%d.sock", (int)getpid());
  snprintf(sep, sizeof sep, "unix:%s:lockfile=0", path);
  snprintf(cep, sizeof cep, "unix:path=%s", path);
  ct_client_factory cf;
  tu_client_stats cst;
  ct_reconnect_policy pol;
  reconnect_init(&cf, &cst, &pol);
  pol.jitter = 0;
  pol.factor = 3.0;
  ct_reconnecting_client *rc =
      ct_reconnecting_client_new(R, cep, &cf, &pol, NULL);
  cr_assert(rc != NULL);
  settle(1);
  settle(1);
  cr_assert_float_eq(ct_reconnecting_client_delay(rc), 3.0, 1e-9);
  ct_clock_advance(C, 3.0);
  settle(2);
  cr_assert_float_eq(ct_reconnecting_client_delay(rc), 9.0, 1e-9);
  /* The server appears; the next attempt succeeds and resets the delay. */
  tu_server_stats sst = {0};
  ct_factory sf = CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
  sf.user = &sst;
  ct_listening_port *port = tu_listen(R, sep, &sf);
  ct_clock_advance(C, 9.0);
  turn_until(rc_connected, rc);
  cr_assert(ct_reconnecting_client_protocol(rc) != NULL);
  cr_assert_eq(ct_reconnecting_client_retries(rc), 0);
  cr_assert_float_eq(ct_reconnecting_client_delay(rc), 1.0, 1e-9);
  /* The server drops the connection: a retry after initial*factor. */
  turn_until(server_made, &sst);
  cr_assert_eq(ct_transport_abort(sst.last), 0);
  turn_until(client_lost, &cst);
  cr_assert_eq(cst.lost, 1);
  cr_assert(ct_reconnecting_client_protocol(rc) == NULL);
  cr_assert_float_eq(ct_reconnecting_client_delay(rc), 3.0, 1e-9);
  ct_clock_advance(C, 3.0);
  turn_until(rc_connected, rc);
  cr_assert(ct_reconnecting_client_protocol(rc) != NULL);
  cr_assert_eq(cst.made, 2);
  /* stop_trying leaves the live connection alone; freeing aborts it. */
  ct_reconnecting_client_stop_trying(rc);
  cr_assert(ct_reconnecting_client_protocol(rc) != NULL);
  ct_reconnecting_client_free(rc);
  cr_assert(tu_spin(R, tu_server_lost, &sst, 10)); /* the abort arrived */
  cr_assert_eq(cst.lost, 1); /* detached: the proxy is gone */
  tu_server_stats_release(&sst);
  tu_stop_port(port);
  tu_turns(R, 5);
}

static double fixed_random(void *arg) {
  (void)arg;
  return 0.5;
}

Test(tcp_connect, reconnect_jitter_is_seedable_and_injectable) {
  char ep[128];
  snprintf(ep, sizeof ep, "unix:path=/tmp/ct-test-reconn3-%d.sock",
           (int)getpid());
  double seq[2][5];
  for (int run = 0; run < 2; run++) {
    ct_client_factory cf;
    tu_client_stats cst;
    ct_reconnect_policy pol;
    reconnect_init(&cf, &cst, &pol);
    pol.seed = 42;
    ct_reconnecting_client *rc =
        ct_reconnecting_client_new(R, ep, &cf, &pol, NULL);
    for (int i = 0; i < 5; i++) {
      settle(i + 1);
      seq[run][i] = ct_reconnecting_client_delay(rc);
      cr_assert(seq[run][i] >= 0);
      ct_clock_advance(C, seq[run][i]);
    }
    ct_reconnecting_client_free(rc);
  }
  for (int i = 0; i < 5; i++)
    cr_assert_float_eq(seq[0][i], seq[1][i], 1e-12);
  /* Jitter moves the delay off the plain e^n sequence. */
  cr_assert(fabs(seq[0][0] - M_E) > 1e-9);
  /* Injected uniform source 0.5: Box-Muller gives z = -sqrt(2 ln 2). */
  ct_client_factory cf;
  tu_client_stats cst;
  ct_reconnect_policy pol;
  reconnect_init(&cf, &cst, &pol);
  pol.random = fixed_random;
  ct_reconnecting_client *rc =
      ct_reconnecting_client_new(R, ep, &cf, &pol, NULL);
  settle(1);
  double z = -sqrt(-2.0 * log(0.5));
  cr_assert_float_eq(ct_reconnecting_client_delay(rc),
                     M_E + M_E * pol.jitter * z, 1e-9);
  ct_reconnecting_client_free(rc);
}

Test(tcp_connect, reconnect_bad_endpoint) {
  ct_client_factory cf;
  tu_client_stats cst;
  tu_client_factory_init(&cf, &cst);
  ct_failure *err = NULL;
  cr_assert_null(ct_reconnecting_client_new(R, "tcp:nohost", &cf, NULL, &err));
  cr_assert(err != NULL);
  cr_assert_eq(err->code, CT_EBADENDPOINT);
  ct_failure_free(err);
  cr_assert_null(ct_reconnecting_client_new(R, NULL, &cf, NULL, &err));
  cr_assert_eq(err->code, CT_EINVAL);
  ct_failure_free(err);
  ct_reconnecting_client_free(NULL);
}
