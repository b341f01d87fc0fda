/*
 * Connection limits: total and per peer, over memory pumps and over
 * loopback TCP; refused connections are logged and others keep working.
 */
#include "ctwist/log.h"
#include "ctwist/policies.h"
#include "ctwist/testing.h"
#include "test_transport_util.h"

static int refusals_logged;
static char last_log[512];

static void observe(const ct_log_event *ev, void *arg) {
  (void)arg;
  if (strcmp(ev->module, "policies") == 0 &&
      strstr(ev->message, "refused") != NULL) {
    refusals_logged++;
    snprintf(last_log, sizeof last_log, "%s", ev->message);
  }
}

static ct_log_observer *OBS;

static void setup(void) {
  refusals_logged = 0;
  last_log[0] = '\0';
  OBS = ct_log_add_observer(CT_LOG_DEBUG, observe, NULL);
}

static void teardown(void) {
  ct_log_remove_observer(OBS);
}

TestSuite(limits, .init = setup, .fini = teardown, .timeout = 30);

typedef struct conn {
  ct_pump *pump;
  ct_client_factory cf;
  tu_client_stats cst;
} conn;

/* Connect through `f` from `ip`:`port`; NULL pump when refused. */
static void conn_open(conn *c, ct_factory *f, const char *ip, int port) {
  memset(c, 0, sizeof *c);
  tu_client_factory_init(&c->cf, &c->cst);
  ct_address client_addr;
  cr_assert_eq(ct_address_from_ip(&client_addr, ip, port), 0);
  ct_pump_options o = {.client_addr = &client_addr};
  c->pump = ct_pump_connect_factories(NULL, f, &c->cf.base, &o);
}

/* An echo round trip on a live connection. */
static void conn_check_echo(conn *c, const char *msg) {
  size_t before = c->cst.last->len;
  ct_transport_write_str(ct_pump_client_transport(c->pump), msg);
  ct_pump_flush(c->pump);
  cr_assert_eq(c->cst.last->len, before + strlen(msg));
  cr_assert(memcmp(c->cst.last->buf + before, msg, strlen(msg)) == 0);
}

static void conn_close(conn *c) {
  ct_pump_free(c->pump);
  c->pump = NULL;
}

Test(limits, total_refuses_the_extra_connection_only) {
  ct_factory echo = CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
  ct_policy_factory *pf = ct_limit_factory_new(&echo, 2, 0);
  cr_assert(pf != NULL);
  ct_factory *f = ct_policy_factory_base(pf);
  conn a, b, c, d;
  conn_open(&a, f, "10.0.0.1", 1000);
  conn_open(&b, f, "10.0.0.2", 1000);
  cr_assert(a.pump != NULL && b.pump != NULL);
  cr_assert_eq(ct_policy_factory_connections(pf), 2);
  conn_open(&c, f, "10.0.0.3", 1000);
  cr_assert_null(c.pump, "third connection accepted over a limit of 2");
  cr_assert_eq(ct_policy_factory_refused(pf), 1);
  cr_assert_eq(refusals_logged, 1);
  cr_assert(strstr(last_log, "10.0.0.3:1000") != NULL, "log: %s", last_log);
  cr_assert(strstr(last_log, "limit 2") != NULL, "log: %s", last_log);
  /* The others keep working. */
  conn_check_echo(&a, "alpha");
  conn_check_echo(&b, "beta");
  /* A slot frees up when a connection ends. */
  conn_close(&a);
  cr_assert_eq(ct_policy_factory_connections(pf), 1);
  conn_open(&d, f, "10.0.0.3", 1001);
  cr_assert(d.pump != NULL);
  conn_check_echo(&d, "delta");
  conn_close(&b);
  conn_close(&d);
  cr_assert_eq(ct_policy_factory_connections(pf), 0);
  ct_policy_factory_free(pf);
}

Test(limits, per_peer_counts_hosts_not_ports) {
  ct_factory echo = CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
  ct_policy_factory *pf = ct_limit_factory_new(&echo, 0, 2);
  ct_factory *f = ct_policy_factory_base(pf);
  conn a1, a2, a3, b1, v6a, v6b;
  conn_open(&a1, f, "10.0.0.1", 1000);
  conn_open(&a2, f, "10.0.0.1", 1001);
  conn_open(&a3, f, "10.0.0.1", 1002);
  conn_open(&b1, f, "10.0.0.2", 1000);
  cr_assert(a1.pump && a2.pump && b1.pump);
  cr_assert_null(a3.pump);
  cr_assert(strstr(last_log, "10.0.0.1") != NULL, "log: %s", last_log);
  cr_assert(strstr(last_log, "per peer") != NULL, "log: %s", last_log);
  conn_open(&v6a, f, "::1", 1000);
  conn_open(&v6b, f, "::1", 1001);
  cr_assert(v6a.pump && v6b.pump);
  conn_open(&a3, f, "::1", 1002);
  cr_assert_null(a3.pump);
  cr_assert_eq(ct_policy_factory_refused(pf), 2);
  conn_check_echo(&a1, "one");
  conn_check_echo(&a2, "two");
  conn_check_echo(&b1, "three");
  conn_close(&a1);
  conn_open(&a3, f, "10.0.0.1", 1003);
  cr_assert(a3.pump != NULL);
  conn_close(&a2);
  conn_close(&a3);
  conn_close(&b1);
  conn_close(&v6a);
  conn_close(&v6b);
  ct_policy_factory_free(pf);
}

Test(limits, bad_arguments_and_unlimited) {
  cr_assert_null(ct_limit_factory_new(NULL, 1, 1));
  ct_factory echo = CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
  ct_policy_factory *pf = ct_limit_factory_new(&echo, 0, 0);
  conn cs[20];
  for (int i = 0; i < 20; i++) {
    conn_open(&cs[i], ct_policy_factory_base(pf), "10.0.0.1", 1000 + i);
    cr_assert(cs[i].pump != NULL);
  }
  for (int i = 0; i < 20; i++)
    conn_close(&cs[i]);
  cr_assert_eq(ct_policy_factory_refused(pf), 0);
  ct_policy_factory_free(pf);
}

/* A refusing wrapped factory is not counted. */
static ct_protocol *refuse(ct_factory *f, const ct_address *peer) {
  (void)f;
  (void)peer;
  return NULL;
}

Test(limits, wrapped_factory_refusal_is_not_counted) {
  ct_factory_ops ops = {.build_protocol = refuse};
  ct_factory no;
  ct_factory_init(&no, &ops, NULL, 0, NULL);
  ct_policy_factory *pf = ct_limit_factory_new(&no, 1, 1);
  conn a;
  conn_open(&a, ct_policy_factory_base(pf), "10.0.0.1", 1);
  cr_assert_null(a.pump);
  cr_assert_eq(ct_policy_factory_connections(pf), 0);
  cr_assert_eq(ct_policy_factory_refused(pf), 0);
  ct_policy_factory_free(pf);
}

/* ------------------------------------------------------------ over TCP */

static int server_count(void *arg) {
  return ct_policy_factory_connections(arg) == 0;
}

static int server_has_one(void *arg) {
  return ((tu_server_stats *)arg)->made == 1;
}

Test(limits, tcp_extra_connection_closed_at_once) {
  ct_reactor *r = ct_reactor_new();
  tu_server_stats sst = {0};
  ct_factory echo = CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
  echo.user = &sst;
  ct_policy_factory *pf = ct_limit_factory_new(&echo, 1, 0);
  ct_listening_port *port =
      tu_listen(r, "tcp:0:interface=127.0.0.1", ct_policy_factory_base(pf));
  char ep[128];
  tu_client_endpoint(port, ep, sizeof ep);

  ct_client_factory cf1, cf2;
  tu_client_stats c1, c2;
  tu_client_factory_init(&cf1, &c1);
  tu_client_factory_init(&cf2, &c2);
  tu_conn_result r1, r2;
  tu_connect(r, ep, &cf1, &r1);
  cr_assert(r1.failure == NULL);
  /* Let the server accept the first before the second arrives. */
  cr_assert(tu_spin(r, server_has_one, &sst, 10));
  tu_connect(r, ep, &cf2, &r2);
  cr_assert(r2.failure == NULL); /* TCP connected, then closed by the server */
  cr_assert(tu_spin(r, tu_client_gone, &c2, 10), "extra connection kept open");
  cr_assert_eq(ct_policy_factory_refused(pf), 1);
  cr_assert_geq(refusals_logged, 1);
  /* The first keeps working. */
  ct_transport_write_str(r1.protocol->transport, "still served");
  tu_want_len w = {&c1, 12};
  cr_assert(tu_spin(r, tu_got_len, &w, 10));
  cr_assert(memcmp(c1.last->buf, "still served", 12) == 0);
  ct_transport_lose_connection(r1.protocol->transport);
  cr_assert(tu_spin(r, tu_client_gone, &c1, 10));
  cr_assert(tu_spin(r, server_count, pf, 10));
  tu_server_stats_release(&sst);
  tu_stop_port(port);
  ct_policy_factory_free(pf);
  ct_reactor_free(r);
}
