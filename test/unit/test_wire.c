/*
 * Wire protocols (echo, discard, chargen, daytime, qotd): in memory through
 * the string transport, then one loopback TCP test per protocol.
 */
#include <ctype.h>

#include "ctwist/testing.h"
#include "ctwist/wire.h"
#include "test_transport_util.h"

static const char NOISE[] = CT_CHARGEN_NOISE;

/* Every byte of `buf` continues the chargen stream at offset `start`. */
static int is_noise(const char *buf, size_t len, size_t start) {
  for (size_t i = 0; i < len; i++)
    if (buf[i] != NOISE[(start + i) % 71])
      return 0;
  return 1;
}

/* "Www Mmm dd hh:mm:ss yyyy" as asctime writes it. */
static int is_asctime(const char *s, size_t len) {
  if (len != 24)
    return 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    switch (i) {
    case 3:
    case 7:
    case 10:
    case 19:
      if (c != ' ')
        return 0;
      break;
    case 13:
    case 16:
      if (c != ':')
        return 0;
      break;
    case 8:
      if (c != ' ' && !isdigit((unsigned char)c))
        return 0;
      break;
    case 0:
    case 1:
    case 2:
    case 4:
    case 5:
    case 6:
      if (!isalpha((unsigned char)c))
        return 0;
      break;
    default:
      if (!isdigit((unsigned char)c))
        return 0;
    }
  }
  return 1;
}

/* ------------------------------------------------------------ in memory */

static ct_string_transport *connect_kind(ct_factory *f) {
  ct_string_transport *st = ct_string_transport_new(NULL);
  cr_assert(st != NULL);
  ct_protocol *p = ct_factory_build(f, NULL);
  cr_assert(p != NULL);
  cr_assert_eq(ct_string_transport_connect(st, p), 0);
  return st;
}

Test(wire_memory, echo_one_byte_and_one_chunk) {
  ct_factory f;
  ct_echo_factory_init(&f);
  ct_string_transport *st = connect_kind(&f);
  const char *msg = "hello, world\r\n";
  for (const char *c = msg; *c; c++)
    cr_assert_eq(ct_string_transport_feed(st, c, 1), 0);
  cr_assert_str_eq(ct_string_transport_value(st, NULL), msg);
  ct_string_transport_clear(st);
  cr_assert_eq(ct_string_transport_feed_str(st, "a much longer chunk"), 0);
  cr_assert_str_eq(ct_string_transport_value(st, NULL), "a much longer chunk");
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  cr_assert_eq(s.lose_connection_calls + s.abort_calls, 0);
  ct_string_transport_free(st);
}

Test(wire_memory, echo_pauses_reading_when_peer_does_not_read) {
  ct_factory f;
  ct_echo_factory_init(&f);
  f.write_high_water = 1000;
  f.write_low_water = 100;
  ct_string_transport *st = connect_kind(&f);
  ct_string_transport_set_backpressure(st, 1);
  char chunk[600];
  memset(chunk, 'x', sizeof chunk);
  cr_assert_eq(ct_string_transport_feed(st, chunk, sizeof chunk), 0);
  cr_assert_eq(ct_string_transport_feed(st, chunk, sizeof chunk), 0);
  /* Above the high watermark: reading paused, further input held back. */
  cr_assert(ct_transport_reading_paused(ct_string_transport_transport(st)));
  cr_assert_eq(ct_string_transport_feed(st, chunk, sizeof chunk), 0);
  size_t len;
  ct_string_transport_value(st, &len);
  cr_assert_eq(len, 1200);
  ct_string_transport_clear(st); /* the peer read everything */
  ct_string_transport_step(st);
  ct_string_transport_value(st, &len);
  cr_assert_eq(len, 600);
  ct_string_transport_free(st);
}

Test(wire_memory, discard_drops_everything) {
  ct_factory f;
  ct_discard_factory_init(&f);
  ct_string_transport *st = connect_kind(&f);
  for (int i = 0; i < 100; i++)
    cr_assert_eq(ct_string_transport_feed_str(st, "drop me "), 0);
  size_t len;
  ct_string_transport_value(st, &len);
  cr_assert_eq(len, 0);
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  cr_assert_eq(s.disconnecting, 0);
  ct_string_transport_free(st);
}

Test(wire_memory, daytime_writes_asctime_then_closes) {
  ct_factory f;
  ct_daytime_factory_init(&f);
  ct_string_transport *st = connect_kind(&f);
  size_t len;
  const char *v = ct_string_transport_value(st, &len);
  cr_assert_eq(len, 26, "got %zu bytes: %s", len, v);
  cr_assert(is_asctime(v, 24), "bad daytime %s", v);
  cr_assert(memcmp(v + 24, "\r\n", 2) == 0);
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  cr_assert_eq(s.lose_connection_calls, 1);
  ct_string_transport_step(st);
  ct_string_transport_stats_get(st, &s);
  cr_assert(s.disconnected);
  cr_assert_eq(s.lost_code, CT_ECONNDONE);
  ct_string_transport_free(st);
}

Test(wire_memory, daytime_format_matches_asctime) {
  char buf[64];
  cr_assert_eq(ct_daytime_format(0, buf, sizeof buf), 24);
  cr_assert_str_eq(buf, "Thu Jan  1 00:00:00 1970");
  cr_assert_eq(ct_daytime_format(1795500683.9, buf, sizeof buf), 24);
  cr_assert_str_eq(buf, "Tue Nov 24 06:11:23 2026");
  cr_assert_eq(ct_daytime_format(0, buf, 24), 0); /* too short */
  cr_assert_eq(ct_daytime_format(0, NULL, 64), 0);
  cr_assert_eq(ct_daytime_format(1.0 / 0.0, buf, sizeof buf), 0);
}

Test(wire_memory, qotd_default_and_configured_quote) {
  ct_factory f;
  ct_qotd_factory_init(&f, NULL);
  ct_string_transport *st = connect_kind(&f);
  cr_assert_str_eq(ct_string_transport_value(st, NULL),
                   CT_QOTD_DEFAULT_QUOTE "\r\n");
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  cr_assert_eq(s.lose_connection_calls, 1);
  ct_string_transport_free(st);

  ct_qotd_factory_init(&f, "Simple is better than complex.");
  st = connect_kind(&f);
  cr_assert_str_eq(ct_string_transport_value(st, NULL),
                   "Simple is better than complex.\r\n");
  ct_string_transport_free(st);
}

Test(wire_memory, chargen_is_paced_by_the_consumer) {
  ct_factory f;
  ct_chargen_factory_init(&f);
  ct_string_transport *st = connect_kind(&f);
  ct_string_transport_set_backpressure(st, 1);
  ct_transport *t = ct_string_transport_transport(st);
  size_t total = 0, len;
  /* Nothing is written from connection_made: the first chunk is pulled on a
   * later turn. */
  ct_string_transport_value(st, &len);
  cr_assert_eq(len, 0);
  ct_string_transport_step(st);
  for (int round = 0; round < 20; round++) {
    const char *v = ct_string_transport_value(st, &len);
    cr_assert_eq(len, CT_CHARGEN_CHUNK, "round %d: %zu", round, len);
    cr_assert(is_noise(v, len, total));
    /* The peer does not read: however many turns pass, nothing more. */
    for (int i = 0; i < 5; i++)
      ct_string_transport_step(st);
    ct_string_transport_value(st, &len);
    cr_assert_eq(len, CT_CHARGEN_CHUNK);
    cr_assert_eq(ct_transport_buffered(t), CT_CHARGEN_CHUNK);
    total += len;
    ct_string_transport_clear(st); /* the peer read it: one more chunk */
    ct_string_transport_step(st);
  }
  /* Input is ignored. */
  cr_assert_eq(ct_string_transport_feed_str(st, "ignored"), 0);
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  cr_assert(s.producer_registered);
  cr_assert_eq(s.producer_streaming, 0);
  ct_string_transport_free(st);
}

Test(wire_memory, chargen_through_a_pump_one_byte_at_a_time) {
  ct_factory sf;
  ct_chargen_factory_init(&sf);
  ct_client_factory cf;
  tu_client_stats cst;
  ct_pump_options o = {.chunk_size = 1, .max_steps = 5000};
  ct_pump *p = tu_pump_client(NULL, &sf, &cf, &cst, &o);
  ct_pump_flush(p); /* talks forever: stops at max_steps */
  cr_assert(cst.last != NULL);
  cr_assert_geq(cst.last->len, 1000);
  cr_assert(is_noise(cst.last->buf, cst.last->len, 0));
  /* Bounded: never more than one chunk waits on the server side. */
  cr_assert_leq(ct_transport_buffered(ct_pump_server_transport(p)),
                CT_CHARGEN_CHUNK);
  ct_pump_free(p);
}

Test(wire_memory, bad_arguments) {
  ct_factory f;
  cr_assert_eq(ct_wire_factory_init(NULL, CT_WIRE_ECHO), CT_EINVAL);
  cr_assert_eq(ct_wire_factory_init(&f, (ct_wire_kind)99), CT_EINVAL);
  cr_assert_eq(ct_wire_factory_init(&f, (ct_wire_kind)-1), CT_EINVAL);
  ct_wire_kind k = CT_WIRE_ECHO;
  cr_assert_eq(ct_wire_kind_parse("nope", &k), CT_EINVAL);
  cr_assert_eq(k, CT_WIRE_ECHO);
  cr_assert_eq(ct_wire_kind_parse(NULL, &k), CT_EINVAL);
  cr_assert_eq(ct_wire_kind_parse("qotd", NULL), CT_EINVAL);
  cr_assert_str_eq(ct_wire_kind_name((ct_wire_kind)42), "?");
  const char *names[] = {"echo", "discard", "chargen", "daytime", "qotd"};
  for (int i = 0; i < 5; i++) {
    cr_assert_eq(ct_wire_kind_parse(names[i], &k), 0);
    cr_assert_eq((int)k, i);
    cr_assert_str_eq(ct_wire_kind_name(k), names[i]);
    cr_assert_eq(ct_wire_factory_init(&f, k), 0);
    cr_assert(f.protocol_ops != NULL);
    cr_assert(f.protocol_ops->flags & CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER);
  }
  /* NULL factories are no-ops. */
  ct_echo_factory_init(NULL);
  ct_discard_factory_init(NULL);
  ct_chargen_factory_init(NULL);
  ct_daytime_factory_init(NULL);
  ct_qotd_factory_init(NULL, "x");
}

/* ------------------------------------------------------------ over TCP */

TU_REACTOR_FIXTURE

TestSuite(wire_tcp, .init = setup, .fini = teardown, .timeout = 30);

/* A factory of wire protocols that remembers the last server protocol. */
typedef struct rec_factory {
  ct_factory base;
  ct_factory inner;
  ct_protocol *last;
} rec_factory;

static ct_protocol *rec_build(ct_factory *f, const ct_address *peer) {
  rec_factory *rf = (rec_factory *)f;
  rf->last = ct_factory_build(&rf->inner, peer);
  return rf->last;
}

static const ct_factory_ops rec_ops = {.name = "rec",
                                       .build_protocol = rec_build};

typedef struct tcp_env {
  rec_factory rf;
  ct_listening_port *port;
  ct_client_factory cf;
  tu_client_stats cst;
  tu_conn_result res;
  ct_transport *ct; /* the client's transport */
} tcp_env;

static void env_open(tcp_env *e, ct_wire_kind kind, const char *quote) {
  memset(e, 0, sizeof *e);
  ct_factory_init(&e->rf.base, &rec_ops, NULL, 0, NULL);
  cr_assert_eq(ct_wire_factory_init(&e->rf.inner, kind), 0);
  if (kind == CT_WIRE_QOTD)
    ct_qotd_factory_init(&e->rf.inner, quote);
  char ep[128];
  e->port =
      tu_listen_ep(R, "tcp:0:interface=127.0.0.1", &e->rf.base, ep, sizeof ep);
  e->ct = tu_connect_ok(R, ep, &e->cf, &e->cst, &e->res);
}

/* The server end of the connection (local port, remote port) has been
 * closed by the server: it is neither established nor waiting for its
 * application to close (CLOSE_WAIT) in /proc/net/tcp. */
static int server_end_closed(void *arg) {
  const int *ports = arg;
  return tu_tcp_count(ports[0], ports[1], TU_TCP_ESTABLISHED, NULL) == 0 &&
         tu_tcp_count(ports[0], ports[1], TU_TCP_CLOSE_WAIT, NULL) == 0;
}

static void env_close(tcp_env *e) {
  if (e->cst.last != NULL) {
    ct_address host, peer;
    ct_transport *t = e->cst.last->base.transport;
    cr_assert_eq(ct_transport_get_host(t, &host), 0);
    cr_assert_eq(ct_transport_get_peer(t, &peer), 0);
    int ports[2] = {ct_address_port(&peer), ct_address_port(&host)};
    ct_transport_lose_connection(t);
    cr_assert(tu_spin(R, tu_client_gone, &e->cst, 10));
    cr_assert(tu_spin(R, server_end_closed, ports, 10));
  }
  tu_stop_port(e->port);
}

Test(wire_tcp, echo_round_trip) {
  tcp_env e;
  env_open(&e, CT_WIRE_ECHO, NULL);
  size_t total = 200000;
  char *data = tu_pattern(total, 13, 97);
  cr_assert_eq(ct_transport_write(e.ct, data, total), 0);
  tu_want_len w = {&e.cst, total};
  cr_assert(tu_spin(R, tu_got_len, &w, 20));
  cr_assert_eq(e.cst.last->len, total);
  cr_assert(memcmp(e.cst.last->buf, data, total) == 0);
  free(data);
  env_close(&e);
}

Test(wire_tcp, discard_drops) {
  tcp_env e;
  env_open(&e, CT_WIRE_DISCARD, NULL);
  char buf[65536];
  memset(buf, 'd', sizeof buf);
  for (int i = 0; i < 8; i++)
    cr_assert_eq(ct_transport_write(e.ct, buf, sizeof buf), 0);
  /* The server has read all of it, and nothing is on its way back. */
  cr_assert(tu_spin(R, tu_tcp_sent_all_read, e.ct, 20));
  tu_turns(R, 5);
  tu_tcp_sock me;
  cr_assert(tu_tcp_of(e.ct, &me));
  cr_assert_eq(me.rx_queue, 0, "discard sent something back");
  cr_assert(e.cst.last != NULL);
  cr_assert_eq(e.cst.last->len, 0);
  cr_assert_eq(e.cst.last->lost, 0);
  cr_assert_eq(ct_transport_buffered(e.ct), 0, "discard stopped reading");
  env_close(&e);
}

Test(wire_tcp, chargen_stops_when_client_stops_reading_and_resumes) {
  tcp_env e;
  env_open(&e, CT_WIRE_CHARGEN, NULL);
  tu_want_len w = {&e.cst, 100000};
  cr_assert(tu_spin(R, tu_got_len, &w, 20));
  cr_assert_eq(ct_transport_pause_reading(e.ct), 0);
  ct_transport *server = e.rf.last->transport;
  cr_assert(server != NULL);
  /* The client reads nothing: the kernel buffers fill up, the server's own
   * buffer never holds more than one chunk. */
  for (int i = 0; i < 200; i++) {
    ct_reactor_iterate(R);
    cr_assert_leq(ct_transport_buffered(server), CT_CHARGEN_CHUNK);
  }
  size_t before = e.cst.last->len;
  cr_assert(tu_spin(R, tu_tcp_has_unread, e.ct, 20));
  tu_turns(R, 20);
  cr_assert_eq(e.cst.last->len, before, "delivered while paused");
  cr_assert(tu_tcp_has_unread(e.ct));
  cr_assert_leq(ct_transport_buffered(server), CT_CHARGEN_CHUNK);
  /* Reading again: the stream continues where it stopped. */
  cr_assert_eq(ct_transport_resume_reading(e.ct), 0);
  w.n = before + 500000;
  cr_assert(tu_spin(R, tu_got_len, &w, 20));
  cr_assert(is_noise(e.cst.last->buf, e.cst.last->len, 0));
  env_close(&e);
}

Test(wire_tcp, daytime_then_close) {
  tcp_env e;
  env_open(&e, CT_WIRE_DAYTIME, NULL);
  cr_assert(tu_spin(R, tu_client_gone, &e.cst, 10));
  cr_assert_eq(e.cst.final_code, CT_ECONNDONE);
  cr_assert_eq(e.cst.final_len, 26);
  cr_assert(is_asctime(e.cst.final_head, 24), "got %s", e.cst.final_head);
  cr_assert(memcmp(e.cst.final_head + 24, "\r\n", 2) == 0);
  env_close(&e);
}

Test(wire_tcp, qotd_then_close) {
  tcp_env e;
  env_open(&e, CT_WIRE_QOTD, "Now is better than never.");
  cr_assert(tu_spin(R, tu_client_gone, &e.cst, 10));
  cr_assert_eq(e.cst.final_code, CT_ECONNDONE);
  cr_assert_str_eq(e.cst.final_head, "Now is better than never.\r\n");
  env_close(&e);
}
