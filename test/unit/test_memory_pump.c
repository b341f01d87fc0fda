/*
 * The in-memory pair and its pump (Twisted's iosim): an echo server and a
 * line client talk through it in chunks down to one byte; closes, aborts
 * and half-closes arrive only from the pump; back-pressure pauses
 * producers and reading; zero-delay timers run under a fake clock.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/reactor.h"
#include "ctwist/testing.h"
#include "ctwist/transport.h"
#include "tu_recorder.h"

/* ------------------------------------------------------------ protocols */

/* The recording protocol is tu_rec (tu_recorder.h).  An echoing side also
 * closes on "QUIT" and aborts on "KILL". */
static void echoing(tu_rec *r) {
  r->echo = 1;
  r->lose_on = "QUIT";
  r->abort_on = "KILL";
}

/* A pump between two recording protocols (server s, client c). */
static ct_pump *pair(tu_rec *s, tu_rec *c, const ct_pump_options *o) {
  return ct_pump_connect(NULL, tu_rec_proto(s, &tu_rec_ops),
                         tu_rec_proto(c, &tu_rec_ops), o);
}

/* ---------------------------------------------------------------- tests */

Test(memory_pump, echo_round_trip) {
  tu_rec s = {0}, c = {0};
  echoing(&s);
  ct_pump *p = pair(&s, &c, NULL);
  cr_assert_not_null(p);
  cr_assert_eq(s.made, 1);
  cr_assert_eq(c.made, 1);
  ct_transport *ct = ct_pump_client_transport(p);
  cr_assert_str_eq(ct_transport_kind(ct), "memory");
  cr_assert_eq(ct_transport_write_str(ct, "hello\n"), 0);
  cr_assert_eq(s.got_len, 0, "nothing moves before the pump");
  cr_assert_eq(ct_transport_buffered(ct), 6);
  cr_assert_gt(ct_pump_flush(p), 0);
  cr_assert_eq(ct_transport_buffered(ct), 0);
  cr_assert_eq(c.got_len, 6);
  cr_assert_eq(memcmp(c.got, "hello\n", 6), 0);
  cr_assert_eq(ct_pump_delivered(p, 1), 6);
  cr_assert_eq(ct_pump_delivered(p, 0), 6);
  cr_assert_eq(ct_pump_flush(p), 0, "quiet");
  ct_pump_free(p);
  cr_assert_eq(s.lost_code, CT_ECONNABORTED);
  cr_assert_eq(c.lost_code, CT_ECONNABORTED);
  cr_assert_eq(s.freed + c.freed, 2);
  tu_rec_done(&s);
  tu_rec_done(&c);
}

/* The same conversation in every chunk size gives the same bytes. */
static void conversation(size_t chunk) {
  tu_rec s = {0}, c = {0};
  echoing(&s);
  ct_pump_options o = {.chunk_size = chunk};
  ct_pump *p = pair(&s, &c, &o);
  ct_transport *ct = ct_pump_client_transport(p);
  const char *msg = "one\ntwo\nthree\n";
  for (int i = 0; i < 10; i++) {
    ct_transport_write_str(ct, msg);
  }
  ct_pump_flush(p);
  cr_assert_eq(s.lines, 30);
  cr_assert_eq(c.lines, 30);
  cr_assert_eq(c.got_len, 10 * strlen(msg));
  if (chunk > 0) {
    cr_assert_leq(s.max_chunk, chunk);
    cr_assert_leq(c.max_chunk, chunk);
  }
  if (chunk == 1) {
    cr_assert_eq(s.calls, 10 * strlen(msg), "one byte per call");
  }
  ct_pump_free(p);
  tu_rec_done(&s);
  tu_rec_done(&c);
}

Test(memory_pump, chunk_sizes_down_to_one_byte) {
  conversation(0);
  conversation(1);
  conversation(2);
  conversation(7);
  conversation(4096);
}

Test(memory_pump, lose_connection_flushes_then_both_sides_lose) {
  tu_rec s = {0}, c = {0};
  ct_pump_options o = {.chunk_size = 1000};
  ct_pump *p = pair(&s, &c, &o);
  ct_transport *st = ct_pump_server_transport(p);
  size_t total = 100 * 1000;
  char *blob = malloc(total);
  for (size_t i = 0; i < total; i++) {
    blob[i] = (char)('a' + i % 26);
  }
  cr_assert_eq(ct_transport_write(st, blob, total), 0);
  cr_assert_eq(ct_transport_lose_connection(st), 0);
  cr_assert_eq(s.lost, 0);
  cr_assert_eq(ct_transport_write(st, "x", 1), CT_ECLOSED);
  ct_pump_flush(p);
  cr_assert_eq(c.got_len, total, "no byte lost");
  cr_assert_eq(memcmp(c.got, blob, total), 0);
  cr_assert_eq(s.lost_code, CT_ECONNDONE);
  cr_assert_eq(c.lost_code, CT_ECONNDONE);
  cr_assert_eq(ct_pump_lost_code(p, 1), CT_ECONNDONE);
  cr_assert_eq(ct_pump_lost_code(p, 0), CT_ECONNDONE);
  cr_assert_eq(s.freed + c.freed, 2);
  cr_assert_eq(ct_transport_write(st, "x", 1), CT_ECLOSED,
               "the pump keeps the transports alive");
  ct_pump_free(p);
  cr_assert_eq(s.lost + c.lost, 2, "exactly once each");
  free(blob);
  tu_rec_done(&s);
  tu_rec_done(&c);
}

/* The echoing server closes ("QUIT") or aborts ("KILL") from inside
 * data_received: connection_lost comes later, from the pump. */
static void close_inside_data(const char *msg, int s_code, int c_code,
                              size_t c_got, const char *why) {
  tu_rec s = {0}, c = {0};
  echoing(&s);
  ct_pump *p = pair(&s, &c, NULL);
  ct_transport_write_str(ct_pump_client_transport(p), msg);
  ct_pump_flush(p);
  cr_assert_eq(s.lost_inside_call, 0);
  cr_assert_eq(s.lost_code, s_code);
  cr_assert_eq(c.lost_code, c_code);
  cr_assert_eq(c.got_len, c_got, "%s", why);
  ct_pump_free(p);
  tu_rec_done(&s);
  tu_rec_done(&c);
}

Test(memory_pump, close_from_inside_data_received) {
  close_inside_data("hi QUIT", CT_ECONNDONE, CT_ECONNDONE, 7,
                    "the echo was flushed before the close");
}

Test(memory_pump, abort_drops_output_and_resets_the_peer) {
  close_inside_data("KILL", CT_ECONNABORTED, CT_ECONNRESET, 0,
                    "aborted output is dropped");
}

Test(memory_pump, half_close_reaches_eof_received) {
  tu_rec s = {0}, c = {0};
  s.reply_eof = 1;
  ct_pump *p = pair(&s, &c, NULL);
  ct_transport *ct = ct_pump_client_transport(p);
  ct_transport_write_str(ct, "request");
  cr_assert_eq(ct_transport_half_close(ct), 0);
  cr_assert_eq(ct_transport_write_str(ct, "more"), CT_ECLOSED);
  ct_pump_flush(p);
  cr_assert_eq(s.got_len, 7);
  cr_assert_eq(s.eofs, 1);
  cr_assert_eq(c.got_len, 4, "the server answered after the EOF");
  cr_assert_eq(memcmp(c.got, "bye\n", 4), 0);
  cr_assert_eq(s.lost_code, CT_ECONNDONE);
  cr_assert_eq(c.lost_code, CT_ECONNDONE);
  ct_pump_free(p);
  tu_rec_done(&s);
  tu_rec_done(&c);
}

Test(memory_pump, eof_without_handler_closes) {
  tu_rec s = {0}, c = {0};
  ct_pump *p = pair(&s, &c, NULL);
  cr_assert_eq(ct_transport_half_close(ct_pump_client_transport(p)), 0);
  ct_pump_flush(p);
  cr_assert_eq(s.eofs, 1);
  cr_assert_eq(s.lost_code, CT_ECONNDONE);
  cr_assert_eq(c.lost_code, CT_ECONNDONE);
  ct_pump_free(p);
}

/* A push producer writing 4 KiB blocks until paused. */
typedef struct gen {
  ct_transport *t;
  int paused, pauses, resumes, stops;
  size_t written, limit;
} gen;
static void gen_run(gen *g) {
  static const char block[4096];
  while (!g->paused && g->written < g->limit) {
    ct_transport_write(g->t, block, sizeof(block));
    g->written += sizeof(block);
  }
}
static void gen_pause(void *a) {
  gen *g = a;
  g->paused = 1;
  g->pauses++;
}
static void gen_resume(void *a) {
  gen *g = a;
  g->paused = 0;
  g->resumes++;
  gen_run(g);
}
static void gen_stop(void *a) {
  ((gen *)a)->stops++;
}
static const ct_producer_ops gen_ops = {gen_pause, gen_resume, gen_stop};

Test(memory_pump, push_producer_backpressure) {
  tu_rec s = {0}, c = {0};
  ct_pump *p = pair(&s, &c, NULL);
  ct_transport *st = ct_pump_server_transport(p);
  ct_transport *ct = ct_pump_client_transport(p);
  cr_assert_eq(ct_transport_pause_reading(ct),
               0); /* a client that never reads */
  gen g = {.t = st, .limit = 1024 * 1024};
  cr_assert_eq(ct_transport_register_producer(st, &gen_ops, &g, 1), 0);
  gen_run(&g);
  cr_assert_eq(g.pauses, 1);
  size_t buffered = ct_transport_buffered(st);
  cr_assert_gt(buffered, CT_WRITE_HIGH_WATER_DEFAULT);
  cr_assert_leq(buffered, CT_WRITE_HIGH_WATER_DEFAULT + 4096,
                "memory stays bounded");
  ct_pump_flush(p);
  cr_assert_eq(c.got_len, 0, "nothing reaches a paused reader");
  cr_assert_eq(ct_transport_resume_reading(ct), 0);
  ct_pump_flush(p);
  cr_assert_eq(c.got_len, g.limit);
  cr_assert_geq(g.resumes, 1);
  cr_assert_eq(ct_transport_buffered(st), 0);
  ct_pump_free(p);
  cr_assert_eq(g.stops, 1);
  tu_rec_done(&s);
  tu_rec_done(&c);
}

Test(memory_pump, echo_server_stops_reading_from_a_client_that_never_reads) {
  tu_rec s = {0}, c = {0};
  echoing(&s);
  ct_pump_options o = {.chunk_size = 16384};
  ct_pump *p = ct_pump_connect(NULL, tu_rec_proto(&s, &tu_rec_ops_bp),
                               tu_rec_proto(&c, &tu_rec_ops), &o);
  ct_transport *st = ct_pump_server_transport(p);
  ct_transport *ct = ct_pump_client_transport(p);
  ct_transport_pause_reading(ct);
  static char block[65536];
  for (int i = 0; i < 32; i++) { /* 2 MiB of requests */
    ct_transport_write(ct, block, sizeof(block));
  }
  ct_pump_flush(p);
  cr_assert(ct_transport_reading_paused(st), "back-pressure paused the server");
  cr_assert_leq(ct_transport_buffered(st), CT_WRITE_HIGH_WATER_DEFAULT + 16384);
  cr_assert_lt(s.got_len, 2u * 1024 * 1024);
  /* The client reads again: everything flows, the server resumes. */
  ct_transport_resume_reading(ct);
  ct_pump_flush(p);
  cr_assert_eq(s.got_len, 2u * 1024 * 1024);
  cr_assert_eq(c.got_len, 2u * 1024 * 1024);
  cr_assert(!ct_transport_reading_paused(st));
  ct_pump_free(p);
  tu_rec_done(&s);
  tu_rec_done(&c);
}

/* A pull producer: three pieces, then it unregisters itself. */
typedef struct puller {
  ct_transport *t;
  int calls;
} puller;
static void pull_resume(void *arg) {
  puller *pl = arg;
  if (++pl->calls <= 3) {
    ct_transport_write_str(pl->t, "piece\n");
  } else {
    ct_transport_unregister_producer(pl->t);
    ct_transport_lose_connection(pl->t);
  }
}
static const ct_producer_ops pull_ops = {NULL, pull_resume, NULL};

Test(memory_pump, pull_producer) {
  tu_rec s = {0}, c = {0};
  ct_pump *p = pair(&s, &c, NULL);
  puller pl = {ct_pump_server_transport(p), 0};
  cr_assert_eq(ct_transport_register_producer(pl.t, &pull_ops, &pl, 0), 0);
  cr_assert_eq(pl.calls, 0);
  ct_pump_flush(p);
  cr_assert_eq(pl.calls, 4);
  cr_assert_eq(c.lines, 3);
  cr_assert_eq(c.lost_code, CT_ECONNDONE);
  ct_pump_free(p);
  tu_rec_done(&s);
  tu_rec_done(&c);
}

/* A factory whose protocols record into the factory's `user` rec. */
static ct_protocol *build(ct_factory *f, const ct_address *peer) {
  cr_assert_not_null(peer);
  return tu_rec_proto(f->user, &tu_rec_ops);
}
static const ct_factory_ops fops = {.name = "test", .build_protocol = build};

Test(memory_pump, factories_and_addresses) {
  tu_rec s = {0}, c = {0};
  ct_factory sf, cf;
  ct_factory_init(&sf, &fops, NULL, 0, &s);
  ct_factory_init(&cf, &fops, NULL, 0, &c);
  ct_address sa, ca;
  ct_address_from_ip(&sa, "::1", 8080);
  ct_address_from_ip(&ca, "::1", 40000);
  ct_pump_options o = {.server_addr = &sa, .client_addr = &ca};
  ct_pump *p = ct_pump_connect_factories(NULL, &sf, &cf, &o);
  cr_assert_not_null(p);
  ct_address a;
  char buf[CT_ADDRESS_STRLEN];
  cr_assert_eq(ct_transport_get_host(ct_pump_server_transport(p), &a), 0);
  cr_assert(ct_address_equal(&a, &sa));
  cr_assert_eq(ct_transport_get_peer(ct_pump_server_transport(p), &a), 0);
  ct_address_format(&a, buf, sizeof(buf));
  cr_assert_str_eq(buf, "[::1]:40000");
  cr_assert_eq(ct_transport_get_peer(ct_pump_client_transport(p), &a), 0);
  cr_assert(ct_address_equal(&a, &sa));
  cr_assert_eq(ct_pump_server_transport(p)->protocol->factory, &sf);
  ct_pump_free(p);
  cr_assert_eq(s.freed + c.freed, 2);

  /* Default addresses. */
  tu_rec s2 = {0}, c2 = {0};
  p = pair(&s2, &c2, NULL);
  cr_assert_eq(ct_transport_get_host(ct_pump_server_transport(p), &a), 0);
  ct_address_format(&a, buf, sizeof(buf));
  cr_assert_str_eq(buf, "127.0.0.1:8000");
  cr_assert_eq(ct_transport_get_host(ct_pump_client_transport(p), &a), 0);
  ct_address_format(&a, buf, sizeof(buf));
  cr_assert_str_eq(buf, "127.0.0.1:49152");
  ct_pump_free(p);
}

Test(memory_pump, bad_arguments) {
  tu_rec s = {0};
  cr_assert_null(
      ct_pump_connect(NULL, tu_rec_proto(&s, &tu_rec_ops), NULL, NULL));
  cr_assert_eq(s.freed, 1, "the given protocol is released");
  cr_assert_eq(ct_pump_step(NULL), 0);
  cr_assert_eq(ct_pump_flush(NULL), CT_EINVAL);
  ct_pump_free(NULL);
}

/* A server that answers from a zero-delay timer (as Deferred-based code
 * often does). */
typedef struct later {
  ct_protocol base;
  ct_delayed_call *call;
} later;
static void later_fire(void *arg) {
  later *l = arg;
  l->call = NULL;
  ct_transport_write_str(l->base.transport, "answer\n");
}
static void later_data(ct_protocol *p, const char *d, size_t n) {
  later *l = (later *)p;
  (void)d;
  (void)n;
  if (l->call == NULL) {
    l->call = ct_call_later(p->transport->reactor, 0, later_fire, l);
  }
}
static void later_lost(ct_protocol *p, const ct_failure *reason) {
  later *l = (later *)p;
  (void)reason;
  if (l->call != NULL) {
    ct_delayed_call_cancel(l->call);
  }
}
static const ct_protocol_ops later_ops = {
    .name = "later",
    .data_received = later_data,
    .connection_lost = later_lost,
};

Test(memory_pump, zero_delay_timers_run_under_the_fake_clock) {
  ct_clock *clock = ct_clock_new();
  ct_reactor *r = ct_reactor_new_with_clock(clock);
  tu_rec c = {0};
  ct_pump_options o = {.clock = clock, .chunk_size = 1};
  ct_pump *p = ct_pump_connect(r, ct_protocol_new(&later_ops, sizeof(later)),
                               tu_rec_proto(&c, &tu_rec_ops), &o);
  ct_transport_write_str(ct_pump_client_transport(p), "question\n");
  ct_pump_flush(p);
  cr_assert_eq(c.got_len, 7);
  cr_assert_eq(memcmp(c.got, "answer\n", 7), 0);
  ct_pump_free(p);
  cr_assert_eq(ct_reactor_pending_calls(r), 0);
  ct_reactor_free(r);
  ct_clock_free(clock);
  tu_rec_done(&c);
}

Test(memory_pump, max_steps_stops_endless_talk) {
  tu_rec s = {0}, c = {0};
  echoing(&s);
  echoing(&c); /* two echoes ping-pong forever */
  ct_pump_options o = {.max_steps = 1000};
  ct_pump *p = pair(&s, &c, &o);
  ct_transport_write_str(ct_pump_client_transport(p), "ping");
  cr_assert_eq(ct_pump_flush(p), CT_ETOOBIG);
  ct_pump_set_chunk_size(p, 1);
  cr_assert_eq(ct_pump_step(p), 1);
  ct_pump_free(p);
  tu_rec_done(&s);
  tu_rec_done(&c);
}

/* The server frees its own state and closes in the middle of a stream fed
 * one byte at a time: no byte may reach it afterwards. */
Test(memory_pump, free_own_state_and_abort_mid_stream) {
  int code = 0;
  tu_rec c = {0};
  tu_selfish *s = tu_selfish_new("!", &code); /* one byte per call */
  s->abort_always = 1;
  ct_pump_options o = {.chunk_size = 1};
  ct_pump *p =
      ct_pump_connect(NULL, &s->base, tu_rec_proto(&c, &tu_rec_ops), &o);
  ct_transport_write_str(ct_pump_client_transport(p), "abc!defgh");
  ct_pump_flush(p);
  cr_assert_eq(code, CT_ECONNABORTED);
  cr_assert_eq(c.lost_code, CT_ECONNRESET);
  cr_assert_eq(ct_pump_delivered(p, 1), 4, "nothing after the '!'");
  ct_pump_free(p);
}
