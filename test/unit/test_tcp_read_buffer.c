/*
 * The stream transports of one reactor share one read buffer: bytes handed
 * to data_received stay intact for the whole call, a nested loop turn from
 * inside data_received is refused, and concurrent connections never see
 * each other's bytes.
 */
#include "test_transport_util.h"

TU_REACTOR_FIXTURE

TestSuite(tcp_read_buffer, .init = setup, .fini = teardown, .timeout = 60);

/* ------------------------------------------- nested loop turns refused */

static int nested_calls, nested_refused, nested_corrupted;

/* Hash the borrowed bytes, try to turn the loop (which would let another
 * read reuse the buffer), hash again, then echo. */
static void nesting_data(ct_protocol *p, const char *data, size_t len) {
  uint64_t before = tu_fnv(data, len);
  nested_calls++;
  if (ct_reactor_iterate(R) == CT_ESTATE && ct_reactor_run(R) == CT_ESTATE)
    nested_refused++;
  if (tu_fnv(data, len) != before)
    nested_corrupted++;
  ct_transport_write(p->transport, data, len);
}

static const ct_protocol_ops nesting_ops = {
    .name = "nesting",
    .connection_made = tu_echo_made,
    .data_received = nesting_data,
    .connection_lost = tu_echo_lost,
};

Test(tcp_read_buffer, nested_iterate_inside_data_received_is_refused) {
  tu_server_stats sst = {0};
  ct_factory sf = CT_FACTORY_INIT(&nesting_ops, sizeof(ct_protocol));
  sf.user = &sst;
  char ep[256];
  ct_listening_port *port =
      tu_listen_ep(R, "tcp:0:interface=127.0.0.1", &sf, ep, sizeof ep);

  ct_client_factory cf;
  tu_client_stats cst;
  tu_conn_result res;
  ct_transport *t = tu_connect_ok(R, ep, &cf, &cst, &res);

  size_t n = 300 * 1024;
  char *msg = tu_pattern(n, 31, 977);
  cr_assert_eq(ct_transport_write(t, msg, n), 0);
  tu_want_len w = {&cst, n};
  cr_assert(tu_spin(R, tu_got_len, &w, 20), "echo incomplete");
  cr_assert_eq(cst.last->len, n);
  cr_assert_eq(tu_fnv(cst.last->buf, n), tu_fnv(msg, n));
  cr_assert_gt(nested_calls, 0);
  cr_assert_eq(nested_refused, nested_calls);
  cr_assert_eq(nested_corrupted, 0);

  free(msg);
  ct_transport_lose_connection(t);
  cr_assert(tu_spin(R, tu_server_lost, &sst, 10));
  tu_server_stats_release(&sst);
  tu_stop_port(port);
}

/* ------------------------------------- concurrent connections, one buffer */

#define NCONN 4
#define PER_CONN (1024 * 1024)

static char *pattern(int k) {
  char *b = malloc(PER_CONN);
  cr_assert(b != NULL);
  uint32_t x = 2463534242u + (uint32_t)k * 7919u;
  for (size_t i = 0; i < PER_CONN; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b[i] = (char)x;
  }
  return b;
}

static int all_echoed(void *arg) {
  tu_client_stats *st = arg;
  for (int k = 0; k < NCONN; k++)
    if (st[k].last == NULL || st[k].last->len < PER_CONN)
      return 0;
  return 1;
}

Test(tcp_read_buffer, concurrent_bulk_connections_never_mix_bytes) {
  tu_server_stats sst = {0};
  ct_factory sf = CT_FACTORY_INIT(&tu_echo_ops, sizeof(ct_protocol));
  sf.user = &sst;
  char ep[256];
  ct_listening_port *port =
      tu_listen_ep(R, "tcp:0:interface=127.0.0.1", &sf, ep, sizeof ep);

  ct_client_factory cf[NCONN];
  tu_client_stats cst[NCONN];
  ct_transport *t[NCONN];
  char *data[NCONN];
  for (int k = 0; k < NCONN; k++) {
    tu_conn_result res;
    t[k] = tu_connect_ok(R, ep, &cf[k], &cst[k], &res);
    data[k] = pattern(k);
  }
  /* Everything queued at once: the server reads all connections in
   * interleaved turns through the one buffer. */
  for (int k = 0; k < NCONN; k++)
    cr_assert_eq(ct_transport_write(t[k], data[k], PER_CONN), 0);
  cr_assert(tu_spin(R, all_echoed, cst, 40), "echo incomplete");
  for (int k = 0; k < NCONN; k++) {
    cr_assert_eq(cst[k].last->len, PER_CONN);
    cr_assert_eq(tu_fnv(cst[k].last->buf, PER_CONN), tu_fnv(data[k], PER_CONN),
                 "connection %d got other bytes", k);
    free(data[k]);
    ct_transport_lose_connection(t[k]);
  }
  cr_assert(tu_spin(R, tu_server_lost, &sst, 10));
  tu_server_stats_release(&sst);
  tu_stop_port(port);
}
