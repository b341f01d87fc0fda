/*
 * Closing: lose_connection flushes (10 MiB, hash-checked), abort drops,
 * half-close, re-entrancy (connection_lost never inside a transport call),
 * protocols closing and freeing their state inside data_received, and
 * operations on closed transports.
 */
#include "test_transport_util.h"

TU_REACTOR_FIXTURE

TestSuite(transport_close, .init = setup, .fini = teardown, .timeout = 60);

#define BIG (10u * 1024u * 1024u)

/* A server protocol scripted by the test. */
typedef struct script {
  int mode; /* what to do in connection_made / data_received */
  char *big;
  int made, data_calls, lost, freed, eofs;
  int lost_code;
  int lost_inside_call;
  int in_call;
  int write_after_close;
  size_t received;
  char *state_buf; /* freed by the protocol itself */
  ct_transport *t; /* the server transport (referenced) */
} script;

enum {
  M_FLUSH_BIG,     /* made: write 10 MiB, lose_connection */
  M_ABORT_BIG,     /* made: write 10 MiB, abort */
  M_HALF_CLOSE,    /* data: record; eof: reply, lose_connection */
  M_ABORT_IN_DATA, /* data: abort, free state */
  M_LOSE_IN_DATA,  /* data: write reply, lose_connection, free state */
  M_PLAIN,         /* just count */
  M_KEEP           /* eof: stay open (half-closed) */
};

static script S;

static void s_made(ct_protocol *p, ct_transport *t) {
  (void)p;
  S.made++;
  S.t = ct_transport_ref(t);
  S.in_call = 1;
  if (S.mode == M_FLUSH_BIG || S.mode == M_ABORT_BIG) {
    cr_assert_eq(ct_transport_write(t, S.big, BIG), 0);
    cr_assert_eq(S.lost, 0);
    cr_assert(ct_transport_buffered(t) > 0);
    if (S.mode == M_FLUSH_BIG)
      cr_assert_eq(ct_transport_lose_connection(t), 0);
    else
      cr_assert_eq(ct_transport_abort(t), 0);
    cr_assert_eq(S.lost, 0); /* never from inside the call */
    S.write_after_close = ct_transport_write(t, "x", 1);
  }
  if (S.mode == M_ABORT_IN_DATA || S.mode == M_LOSE_IN_DATA)
    S.state_buf = malloc(1000);
  S.in_call = 0;
}

static void s_data(ct_protocol *p, const char *data, size_t len) {
  S.data_calls++;
  S.received += len;
  S.in_call = 1;
  if (S.mode == M_ABORT_IN_DATA) {
    cr_assert_eq(ct_transport_abort(p->transport), 0);
    free(S.state_buf);
    S.state_buf = NULL;
  } else if (S.mode == M_LOSE_IN_DATA) {
    cr_assert_eq(ct_transport_write(p->transport, "reply", 5), 0);
    cr_assert_eq(ct_transport_lose_connection(p->transport), 0);
    int again = ct_transport_lose_connection(p->transport);
    cr_assert(again == 0 || again == CT_ECLOSED);
    free(S.state_buf);
    S.state_buf = NULL;
  }
  (void)data;
  S.in_call = 0;
}

static int s_eof(ct_protocol *p) {
  S.eofs++;
  if (S.mode == M_KEEP)
    return 1;
  if (S.mode != M_HALF_CLOSE)
    return 0;
  char reply[64];
  int n = snprintf(reply, sizeof reply, "got:%zu", S.received);
  S.in_call = 1;
  cr_assert_eq(ct_transport_write(p->transport, reply, (size_t)n), 0);
  cr_assert_eq(ct_transport_lose_connection(p->transport), 0);
  S.in_call = 0;
  return 1;
}

static void s_lost(ct_protocol *p, const ct_failure *reason) {
  (void)p;
  S.lost++;
  S.lost_code = reason->code;
  if (S.in_call)
    S.lost_inside_call = 1;
}

static void s_free(ct_protocol *p) {
  S.freed++;
  free(p);
}

static const ct_protocol_ops script_ops = {
    .name = "script",
    .connection_made = s_made,
    .data_received = s_data,
    .eof_received = s_eof,
    .connection_lost = s_lost,
    .free = s_free,
};

typedef struct env {
  ct_factory sf;
  ct_listening_port *port;
  ct_client_factory cf;
  tu_client_stats cst;
  tu_client *client;
  ct_transport *ct; /* client transport, referenced */
} env;

/* Listen with a script server in `mode` and connect a recording client. */
static void script_connect(env *e, int mode, char *big, tu_conn_result *res) {
  memset(&S, 0, sizeof S);
  S.mode = mode;
  S.big = big;
  ct_factory_init(&e->sf, NULL, &script_ops, sizeof(ct_protocol), NULL);
  char ep[128];
  e->port = tu_listen_ep(R, "tcp:0:interface=127.0.0.1", &e->sf, ep, sizeof ep);
  tu_connect_ok(R, ep, &e->cf, &e->cst, res);
}

static void env_open(env *e, int mode) {
  tu_conn_result res;
  script_connect(e, mode, NULL, &res);
  e->client = (tu_client *)res.protocol;
  e->ct = ct_transport_ref(res.protocol->transport);
}

static void env_close(env *e) {
  ct_transport_unref(e->ct);
  ct_transport_unref(S.t);
  S.t = NULL;
  tu_stop_port(e->port);
}

static int server_lost(void *arg) {
  (void)arg;
  return S.lost > 0;
}
static int client_lost(void *arg) {
  return ((tu_client_stats *)arg)->lost > 0;
}

/* Connect a recording client to a script server in `mode`; the client may
 * be gone already when this returns (the loop runs many turns). */
static void open_script(env *e, int mode, char *big) {
  tu_conn_result res;
  script_connect(e, mode, big, &res);
  e->ct = NULL;
}

Test(transport_close, lose_connection_flushes_10MiB) {
  char *big = malloc(BIG);
  for (size_t i = 0; i < BIG; i++)
    big[i] = (char)((i * 2654435761u) >> 13);
  env e;
  open_script(&e, M_FLUSH_BIG, big);
  cr_assert(tu_spin(R, client_lost, &e.cst, 30));
  cr_assert_eq(e.cst.lost, 1);
  cr_assert_eq(e.cst.final_len, BIG);
  cr_assert_eq(e.cst.final_hash, tu_fnv(big, BIG));
  cr_assert_eq(e.cst.final_eof, 1);
  cr_assert_eq(e.cst.final_code, CT_ECONNDONE);
  cr_assert(tu_spin(R, server_lost, NULL, 10));
  cr_assert_eq(S.lost_code, CT_ECONNDONE);
  cr_assert_eq(S.lost_inside_call, 0);
  cr_assert_eq(S.write_after_close, CT_ECLOSED);
  cr_assert_eq(S.freed, 1);
  free(big);
  ct_transport_unref(S.t);
  tu_stop_port(e.port);
}

Test(transport_close, abort_drops_output) {
  char *big = calloc(1, BIG);
  env e;
  open_script(&e, M_ABORT_BIG, big);
  cr_assert(tu_spin(R, client_lost, &e.cst, 30));
  cr_assert_eq(e.cst.lost, 1);
  cr_assert(e.cst.final_len < BIG, "abort delivered everything (%zu)",
            e.cst.final_len);
  cr_assert(tu_spin(R, server_lost, NULL, 10));
  cr_assert_eq(S.lost_code, CT_ECONNABORTED);
  cr_assert_eq(S.lost_inside_call, 0);
  cr_assert_eq(S.write_after_close, CT_ECLOSED);
  free(big);
  ct_transport_unref(S.t);
  tu_stop_port(e.port);
}

Test(transport_close, half_close) {
  env e;
  env_open(&e, M_HALF_CLOSE);
  cr_assert_eq(ct_transport_write(e.ct, "hello", 5), 0);
  cr_assert_eq(ct_transport_half_close(e.ct), 0);
  cr_assert_eq(ct_transport_write(e.ct, "more", 4), CT_ECLOSED);
  /* The server sees EOF, keeps the connection writable and replies. */
  tu_want_len w = {&e.cst, 5};
  cr_assert(tu_spin(R, tu_got_len_any, &w, 10));
  cr_assert(tu_spin(R, client_lost, &e.cst, 10));
  cr_assert(tu_spin(R, server_lost, NULL, 10));
  cr_assert_eq(S.eofs, 1);
  cr_assert_eq(S.received, 5);
  cr_assert_eq(S.lost_code, CT_ECONNDONE);
  cr_assert_eq(S.lost_inside_call, 0);
  env_close(&e);
}

Test(transport_close, half_close_keeps_reading) {
  /* Client half-closes but keeps the connection open on the server's EOF
   * until it has read the reply. */
  env e;
  env_open(&e, M_HALF_CLOSE);
  tu_client *c = e.client;
  c->keep_open_on_eof = 1;
  cr_assert_eq(ct_transport_write(e.ct, "abc", 3), 0);
  cr_assert_eq(ct_transport_half_close(e.ct), 0);
  tu_want_len w = {&e.cst, 5};
  cr_assert(tu_spin(R, tu_got_len_any, &w, 10));
  /* Both directions are shut: the client closes cleanly. */
  cr_assert(tu_spin(R, client_lost, &e.cst, 10));
  cr_assert(tu_spin(R, server_lost, NULL, 10));
  cr_assert_eq(S.lost_code, CT_ECONNDONE);
  env_close(&e);
}

Test(transport_close, abort_and_free_inside_data_received) {
  env e;
  env_open(&e, M_ABORT_IN_DATA);
  for (int i = 0; i < 50; i++)
    cr_assert_eq(ct_transport_write(e.ct, "0123456789", 10), 0);
  cr_assert(tu_spin(R, server_lost, NULL, 10));
  cr_assert(tu_spin(R, client_lost, &e.cst, 10));
  cr_assert_eq(S.data_calls, 1);
  cr_assert_null(S.state_buf);
  cr_assert_eq(S.lost_code, CT_ECONNABORTED);
  cr_assert_eq(S.lost_inside_call, 0);
  cr_assert_eq(S.freed, 1);
  /* The client's transport is closed: every call says so. */
  cr_assert_eq(ct_transport_write(e.ct, "x", 1), CT_ECLOSED);
  cr_assert_eq(ct_transport_lose_connection(e.ct), CT_ECLOSED);
  cr_assert_eq(ct_transport_abort(e.ct), CT_ECLOSED);
  cr_assert_eq(ct_transport_pause_reading(e.ct), CT_ECLOSED);
  ct_address a;
  cr_assert_eq(ct_transport_get_peer(e.ct, &a), CT_ECLOSED);
  cr_assert_eq(ct_transport_buffered(e.ct), 0);
  cr_assert_eq(ct_transport_fileno(e.ct), -1);
  cr_assert(ct_transport_is_closing(e.ct));
  env_close(&e);
}

Test(transport_close, lose_inside_data_received_flushes_reply) {
  env e;
  env_open(&e, M_LOSE_IN_DATA);
  cr_assert_eq(ct_transport_write(e.ct, "ping", 4), 0);
  tu_want_len w = {&e.cst, 5};
  cr_assert(tu_spin(R, tu_got_len_any, &w, 10));
  cr_assert(memcmp(tu_client_head(&e.cst), "reply", 5) == 0);
  cr_assert(tu_spin(R, client_lost, &e.cst, 10));
  cr_assert(tu_spin(R, server_lost, NULL, 10));
  cr_assert_eq(S.lost_code, CT_ECONNDONE);
  cr_assert_eq(S.lost_inside_call, 0);
  cr_assert_null(S.state_buf);
  env_close(&e);
}

Test(transport_close, peer_close_is_clean) {
  env e;
  env_open(&e, M_PLAIN);
  cr_assert_eq(ct_transport_write(e.ct, "abc", 3), 0);
  cr_assert_eq(ct_transport_lose_connection(e.ct), 0);
  cr_assert_eq(ct_transport_write(e.ct, "x", 1), CT_ECLOSED);
  cr_assert(tu_spin(R, server_lost, NULL, 10));
  cr_assert_eq(S.eofs, 1);
  cr_assert_eq(S.received, 3);
  cr_assert_eq(S.lost_code, CT_ECONNDONE);
  cr_assert(tu_spin(R, client_lost, &e.cst, 10));
  env_close(&e);
}

Test(transport_close, bad_arguments) {
  cr_assert_eq(ct_transport_write(NULL, "x", 1), CT_EINVAL);
  cr_assert_eq(ct_transport_writev(NULL, NULL, 0), CT_EINVAL);
  cr_assert_eq(ct_transport_lose_connection(NULL), CT_EINVAL);
  cr_assert_eq(ct_transport_abort(NULL), CT_EINVAL);
  cr_assert_eq(ct_transport_buffered(NULL), 0);
  cr_assert_eq(ct_transport_fileno(NULL), -1);
  ct_transport_unref(NULL);
  env e;
  env_open(&e, M_PLAIN);
  cr_assert_eq(ct_transport_write(e.ct, NULL, 3), CT_EINVAL);
  cr_assert_eq(ct_transport_write(e.ct, NULL, 0), 0);
  cr_assert_eq(ct_transport_writev(e.ct, NULL, 2), CT_EINVAL);
  cr_assert_eq(ct_transport_set_watermarks(e.ct, 10, 20), CT_EINVAL);
  cr_assert_eq(ct_transport_set_option(e.ct, (ct_transport_option)99, 1),
               CT_EINVAL);
  cr_assert_eq(ct_transport_set_tcp_nodelay(e.ct, 1), 0);
  cr_assert_eq(ct_transport_set_keepalive(e.ct, 1), 0);
  cr_assert_eq(ct_transport_set_option(e.ct, CT_OPT_SNDBUF, 65536), 0);
  cr_assert_eq(ct_transport_register_producer(e.ct, NULL, NULL, 1), CT_EINVAL);
  cr_assert_eq(ct_transport_unregister_producer(e.ct), CT_ENOTFOUND);
  struct iovec iov[3] = {{"ab", 2}, {"", 0}, {"cd", 2}};
  cr_assert_eq(ct_transport_writev(e.ct, iov, 3), 0);
  cr_assert_eq(ct_transport_lose_connection(e.ct), 0);
  cr_assert(tu_spin(R, client_lost, &e.cst, 10));
  cr_assert(tu_spin(R, server_lost, NULL, 10));
  cr_assert_eq(S.received, 4);
  env_close(&e);
}

static int server_eof(void *arg) {
  (void)arg;
  return S.eofs > 0;
}
static int sink_ready(void *arg) {
  (void)arg;
  return S.t != NULL;
}

Test(transport_close, write_error_reported_later) {
  env e;
  env_open(&e, M_KEEP);
  cr_assert(tu_spin(R, sink_ready, NULL, 10));
  cr_assert_eq(ct_transport_abort(e.ct), 0);
  cr_assert(tu_spin(R, server_eof, NULL, 10));
  /* The peer is gone: writes start failing (EPIPE/ECONNRESET), but the
   * failure only arrives through connection_lost, on a later turn. */
  static char kb[1024];
  int rc = 0, n = 0;
  while (n < 100000) {
    S.in_call = 1;
    rc = ct_transport_write(S.t, kb, sizeof kb);
    S.in_call = 0;
    n++;
    if (rc != 0)
      break;
    cr_assert_eq(S.lost, 0);
    if (n % 64 == 0)
      tu_turns(R, 1);
    if (S.lost)
      break;
  }
  cr_assert(tu_spin(R, server_lost, NULL, 10));
  cr_assert_eq(S.lost_inside_call, 0);
  cr_assert(S.lost_code == CT_EPIPE || S.lost_code == CT_ECONNRESET,
            "lost with %s", ct_err_name(S.lost_code));
  cr_assert_eq(ct_transport_write(S.t, kb, 1), CT_ECLOSED);
  env_close(&e);
}
