/* Messengers on the in-memory transports of testing.h with a fake clock:
 * a string transport fed one byte at a time, a pump with 1-byte chunks
 * between a server and a client messenger, protocol errors, and the
 * streaming producer under back-pressure. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/message.h"
#include "ctwist/testing.h"
#include "tu_message.h"

Test(message_memory, string_transport_one_byte_at_a_time_echo) {
  mem_server m;
  mem_server_init(&m, 1, NULL);
  ct_protocol *p = ct_factory_build(ct_msg_server_factory(m.s), NULL);
  cr_assert_not_null(p);
  ct_clock_advance(m.clk, 3.0);
  cr_assert_eq(ct_string_transport_connect(m.st, p), 0);
  cr_assert_eq(m.sv.connects, 1);
  cr_assert_eq(ct_msg_server_count(m.s), 1);
  cr_assert_str_eq(ct_messenger_peer_str(m.sv.conn), "192.168.1.1:54321");

  char *stream = NULL;
  size_t n = 0;
  add_frame(&stream, &n, "a", NULL, 0);
  add_frame(&stream, &n, "b", "hello", 5);
  add_frame(&stream, &n, "c", "\0\1\2", 3);
  ct_clock_advance(m.clk, 2.0);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(ct_string_transport_feed(m.st, stream + i, 1), 0);
  cr_assert_eq(m.sv.messages, 3);
  cr_assert_str_eq(m.sv.last_type, "c");
  cr_assert_eq(m.sv.total_len, 8);
  cr_assert_float_eq(ct_messenger_recv_time(m.sv.conn), 5.0, 1e-9);
  cr_assert_float_eq(ct_messenger_send_time(m.sv.conn), 5.0, 1e-9);
  /* The echoes are byte-identical to the requests (canonical encoding). */
  size_t vl;
  const char *v = ct_string_transport_value(m.st, &vl);
  cr_assert_eq(vl, n);
  cr_assert_eq(memcmp(v, stream, n), 0);

  /* Many frames in one chunk. */
  ct_string_transport_clear(m.st);
  char *many = NULL;
  size_t mn = 0;
  for (int i = 0; i < 100; i++)
    add_frame(&many, &mn, "m", "xy", 2);
  cr_assert_eq(ct_string_transport_feed(m.st, many, mn), 0);
  cr_assert_eq(m.sv.messages, 103);
  v = ct_string_transport_value(m.st, &vl);
  cr_assert_eq(vl, mn);
  cr_assert_eq(memcmp(v, many, mn), 0);

  /* Over the sender's own limits: refused, nothing written, still open. */
  ct_msg_header *big = ct_msg_header_new();
  char longval[70000];
  memset(longval, 'v', sizeof longval - 1);
  longval[sizeof longval - 1] = 0;
  ct_msg_header_set_str(big, "v", longval);
  cr_assert_eq(ct_messenger_send(m.sv.conn, big, NULL, 0), CT_EINVAL);
  ct_msg_header_free(big);
  v = ct_string_transport_value(m.st, &vl);
  cr_assert_eq(vl, mn);
  cr_assert(ct_messenger_is_open(m.sv.conn));

  /* A protocol error closes this connection with a failure naming it,
   * after an error frame naming it, flushed (lose_connection, no abort). */
  cr_assert_eq(ct_string_transport_feed(m.st, "\0\0\0\3[1]", 7), 0);
  ct_string_transport_stats stats;
  ct_string_transport_stats_get(m.st, &stats);
  cr_assert_eq(stats.abort_calls, 0);
  cr_assert_eq(stats.lose_connection_calls, 1);
  v = ct_string_transport_value(m.st, &vl);
  cr_assert_gt(vl, mn);
  cr_assert(strstr(v + mn + 4, "\"code\":\"EPROTO\"") != NULL, "%s",
            v + mn + 4);
  ct_string_transport_step(m.st);
  cr_assert_eq(m.sv.closes, 1);
  cr_assert_eq(m.sv.last_alive, 0);
  cr_assert_eq(m.sv.last_code, CT_EPROTO);
  cr_assert(strstr(m.sv.last_msg, "not a JSON object") != NULL, "%s",
            m.sv.last_msg);
  free(stream);
  free(many);
  mem_server_free(&m);
}

Test(message_memory, pump_with_one_byte_chunks) {
  ct_clock *clk = ct_clock_new();
  ct_reactor *r = ct_reactor_new_with_clock(clk);
  side sv = {.echo = 1}, cl = {0};
  ct_msg_callbacks scb = cbs(&sv), ccb = cbs(&cl);
  ct_msg_server *s = ct_msg_server_new(r, &scb, NULL);
  ct_msg_client *c = ct_msg_client_new(r, &ccb, NULL);
  ct_pump_options po = {.chunk_size = 1, .clock = clk};
  ct_pump *pump = ct_pump_connect_factories(r, ct_msg_server_factory(s),
                                            ct_msg_client_factory(c), &po);
  cr_assert_not_null(pump);
  cr_assert_eq(sv.connects, 1);
  cr_assert_eq(cl.connects, 1);
  ct_msg_header *h = ct_msg_header_new();
  ct_msg_header_set_str(h, "type", "ping");
  ct_msg_header_set_int(h, "n", 42);
  char body[3000];
  for (size_t i = 0; i < sizeof body; i++)
    body[i] = (char)i;
  for (int i = 0; i < 5; i++)
    cr_assert_eq(ct_msg_client_broadcast(c, h, body, sizeof body), 1);
  cr_assert_geq(ct_pump_flush(pump), 0);
  cr_assert_eq(sv.messages, 5);
  cr_assert_eq(cl.messages, 5);
  cr_assert_eq(cl.total_len, 5 * sizeof body);
  cr_assert_str_eq(cl.last_type, "ping");
  /* Closing from the client: the server counts down. */
  cr_assert_eq(ct_messenger_close(cl.conn), 0);
  ct_pump_flush(pump);
  cr_assert_eq(sv.closes, 1);
  cr_assert_eq(sv.last_code, CT_ECONNDONE);
  cr_assert_eq(cl.closes, 1);
  ct_msg_header_free(h);
  ct_pump_free(pump);
  ct_msg_client_free(c);
  ct_msg_server_free(s);
  ct_reactor_free(r);
  ct_clock_free(clk);
}

/* Large content goes to the transport whole (its output is bounded by the
 * slow-consumer limits, not by a queue of the messenger's own); the
 * transport's watermarks then pause reading from that peer. */
Test(message_memory, large_content_is_queued_in_the_transport) {
  ct_msg_options o = {.write_high_water = 100000, .write_low_water = 10000};
  mem_server m;
  mem_server_init(&m, 0, &o);
  ct_string_transport_set_backpressure(m.st, 1);
  cr_assert_eq(ct_string_transport_connect(
                   m.st, ct_factory_build(ct_msg_server_factory(m.s), NULL)),
               0);
  size_t n = 1000000;
  char *big = malloc(n);
  for (size_t i = 0; i < n; i++)
    big[i] = (char)(i % 251);
  cr_assert_eq(ct_messenger_send(m.sv.conn, NULL, big, n), 0);
  cr_assert_eq(ct_messenger_send(m.sv.conn, NULL, "end", 3), 0);
  ct_string_transport_stats stats;
  ct_string_transport_stats_get(m.st, &stats);
  cr_assert_not(stats.producer_registered);
  cr_assert_geq(ct_transport_buffered(ct_string_transport_transport(m.st)), n);
  cr_assert(ct_transport_reading_paused(ct_string_transport_transport(m.st)));
  /* Collect what the peer reads, clearing as it goes. */
  char *got = malloc(n + 1000);
  size_t have = 0;
  for (int i = 0; i < 1000; i++) {
    size_t vl;
    const char *v = ct_string_transport_value(m.st, &vl);
    cr_assert_leq(have + vl, n + 1000);
    memcpy(got + have, v, vl);
    have += vl;
    ct_string_transport_clear(m.st);
    ct_string_transport_step(m.st);
    if (vl == 0)
      break;
  }
  ct_string_transport_stats_get(m.st, &stats);
  cr_assert_not(stats.producer_registered);
  /* Decode what was written: the big frame, then "end". */
  char *f;
  size_t fl;
  cr_assert_eq(ct_msg_encode(NULL, big, n, &f, &fl), 0);
  cr_assert_eq(have, fl + 4 + 20 + 3);
  cr_assert_eq(memcmp(got, f, fl), 0);
  cr_assert_eq(memcmp(got + fl + 4 + 20, "end", 3), 0);
  free(f);
  free(got);
  free(big);
  mem_server_free(&m);
}

Test(message_memory, free_inside_on_message_stops_delivery) {
  mem_server m;
  mem_server_init(&m, 1, NULL);
  ct_string_transport_connect(
      m.st, ct_factory_build(ct_msg_server_factory(m.s), NULL));
  char *stream = NULL;
  size_t n = 0;
  add_frame(&stream, &n, "a", "x", 1);
  add_frame(&stream, &n, "b", NULL, 0);
  /* Free the whole server from inside the first on_message: the reply
   * already sent is flushed, the second message is not delivered, no
   * callback runs after the free, nothing leaks. */
  m.sv.free_me = &m.s;
  cr_assert_eq(ct_string_transport_feed(m.st, stream, n), 0);
  cr_assert_null(m.s);
  cr_assert_eq(m.sv.messages, 1);
  ct_string_transport_stats stats;
  ct_string_transport_stats_get(m.st, &stats);
  cr_assert_eq(stats.lose_connection_calls, 1);
  size_t vl;
  ct_string_transport_value(m.st, &vl);
  cr_assert_eq(vl, 4 + 31 + 1); /* the echo of the first message */
  ct_string_transport_step(m.st);
  cr_assert_eq(m.sv.messages, 1);
  cr_assert_eq(m.sv.closes, 0);
  free(stream);
  mem_server_free(&m);
}
