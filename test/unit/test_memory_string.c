/*
 * The string transport (Twisted's StringTransport): recording writes,
 * feeding data and EOF, closes delivered only from test-driven steps,
 * pause/resume, producers and back-pressure, addresses, and the fake clock.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/reactor.h"
#include "ctwist/testing.h"
#include "ctwist/transport.h"
#include "tu_recorder.h"

/* The test protocol is tu_rec (tu_recorder.h): at most 4 KiB received in
 * all, closes on "quit" must succeed. */
static ct_protocol *proto(tu_rec *r, const ct_protocol_ops *ops) {
  r->limit = 4096;
  r->check_close_rc = 1;
  return tu_rec_proto(r, ops);
}

static ct_string_transport *connected(tu_rec *r, int echo) {
  ct_string_transport *st = ct_string_transport_new(NULL);
  cr_assert_not_null(st);
  r->echo = echo;
  cr_assert_eq(ct_string_transport_connect(st, proto(r, &tu_rec_ops)), 0);
  cr_assert_eq(r->made, 1);
  return st;
}

Test(memory_string, records_writes_and_clears) {
  tu_rec r = {0};
  ct_string_transport *st = connected(&r, 0);
  ct_transport *t = ct_string_transport_transport(st);
  cr_assert_str_eq(ct_transport_kind(t), "string");
  size_t len = 99;
  cr_assert_str_eq(ct_string_transport_value(st, &len), "");
  cr_assert_eq(len, 0);
  cr_assert_eq(ct_transport_write(t, "hello ", 6), 0);
  struct iovec iov[2] = {{"wor", 3}, {"ld", 2}};
  cr_assert_eq(ct_transport_writev(t, iov, 2), 0);
  cr_assert_eq(ct_transport_write_str(t, "!"), 0);
  cr_assert_str_eq(ct_string_transport_value(st, &len), "hello world!");
  cr_assert_eq(len, 12);
  cr_assert_eq(ct_transport_buffered(t), 0, "no back-pressure by default");
  ct_string_transport_clear(st);
  cr_assert_str_eq(ct_string_transport_value(st, &len), "");
  cr_assert_eq(ct_transport_write(t, NULL, 3), CT_EINVAL);
  ct_string_transport_free(st);
  cr_assert_eq(r.lost, 1);
  cr_assert_eq(r.lost_code, CT_ECONNABORTED);
  cr_assert_eq(r.freed, 1);
  tu_rec_done(&r);
}

Test(memory_string, feed_reaches_data_received_and_echo_is_recorded) {
  tu_rec r = {0};
  ct_string_transport *st = connected(&r, 1);
  cr_assert_eq(ct_string_transport_feed_str(st, "ping"), 0);
  cr_assert_eq(ct_string_transport_feed(st, "!", 1), 0);
  cr_assert_eq(r.got_len, 5);
  cr_assert_eq(memcmp(r.got, "ping!", 5), 0);
  cr_assert_str_eq(ct_string_transport_value(st, NULL), "ping!");
  cr_assert_eq(ct_string_transport_feed(st, NULL, 1), CT_EINVAL);
  cr_assert_eq(ct_string_transport_step(st), 0, "nothing pending");
  ct_string_transport_free(st);
  tu_rec_done(&r);
}

Test(memory_string, lose_connection_from_data_received_is_delivered_later) {
  tu_rec r = {0};
  r.lose_on = "quit";
  ct_string_transport *st = connected(&r, 1);
  ct_transport *t = ct_string_transport_transport(st);
  cr_assert_eq(ct_string_transport_feed_str(st, "quit"), 0);
  cr_assert_eq(r.lost, 0, "connection_lost must not run inside the call");
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  cr_assert_eq(s.lose_connection_calls, 1);
  cr_assert_eq(s.disconnecting, 1);
  cr_assert_eq(s.disconnected, 0);
  cr_assert(ct_transport_is_closing(t));
  cr_assert_eq(ct_transport_write(t, "x", 1), CT_ECLOSED);
  cr_assert_eq(ct_transport_lose_connection(t), 0, "idempotent");
  cr_assert_eq(ct_string_transport_feed_str(st, "more"), CT_ECLOSED);
  cr_assert_eq(ct_string_transport_step(st), 1);
  cr_assert_eq(r.lost, 1);
  cr_assert_eq(r.lost_code, CT_ECONNDONE);
  cr_assert_eq(r.lost_inside_call, 0);
  cr_assert_eq(r.freed, 1);
  ct_string_transport_stats_get(st, &s);
  cr_assert_eq(s.disconnected, 1);
  cr_assert_eq(s.lost_code, CT_ECONNDONE);
  /* The record survives the connection. */
  cr_assert_str_eq(ct_string_transport_value(st, NULL), "quit");
  cr_assert_eq(ct_string_transport_step(st), 0);
  cr_assert_eq(ct_string_transport_lose(st, NULL), CT_ECLOSED);
  ct_string_transport_free(st);
  cr_assert_eq(r.lost, 1, "exactly once");
  tu_rec_done(&r);
}

Test(memory_string, abort_from_data_received) {
  tu_rec r = {0};
  r.abort_on = "quit";
  ct_string_transport *st = connected(&r, 0);
  ct_transport *t = ct_string_transport_transport(st);
  cr_assert_eq(ct_string_transport_feed_str(st, "quit"), 0);
  cr_assert_eq(r.lost, 0);
  cr_assert_eq(ct_transport_abort(t), CT_ECLOSED, "already aborted");
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  cr_assert_eq(s.abort_calls, 1);
  cr_assert_eq(ct_string_transport_step(st), 1);
  cr_assert_eq(r.lost_code, CT_ECONNABORTED);
  ct_string_transport_free(st);
  tu_rec_done(&r);
}

Test(memory_string, lose_from_outside_with_a_reason) {
  tu_rec r = {0};
  ct_string_transport *st = connected(&r, 0);
  ct_failure *f = ct_failure_new(CT_ECONNRESET, "peer reset");
  cr_assert_eq(ct_string_transport_lose(st, f), 0);
  cr_assert_eq(r.lost, 1);
  cr_assert_eq(r.lost_code, CT_ECONNRESET);
  cr_assert_eq(ct_transport_write(ct_string_transport_transport(st), "x", 1),
               CT_ECLOSED);
  ct_string_transport_free(st);
  cr_assert_eq(r.lost, 1);
  tu_rec_done(&r);
}

Test(memory_string, paused_reading_queues_input) {
  tu_rec r = {0};
  ct_string_transport *st = connected(&r, 0);
  ct_transport *t = ct_string_transport_transport(st);
  cr_assert_eq(ct_transport_pause_reading(t), 0);
  cr_assert_eq(ct_transport_pause_reading(t), 0);
  cr_assert(ct_transport_reading_paused(t));
  cr_assert_eq(ct_string_transport_feed_str(st, "abc"), 0);
  cr_assert_eq(ct_string_transport_feed_str(st, "def"), 0);
  cr_assert_eq(r.got_len, 0);
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  cr_assert_eq(s.queued_input, 6);
  cr_assert_eq(s.pause_calls, 1, "raw pause once");
  cr_assert_eq(ct_string_transport_step(st), 0, "still paused");
  cr_assert_eq(ct_transport_resume_reading(t), 0);
  cr_assert_eq(r.got_len, 0, "resume does not deliver re-entrantly");
  cr_assert_eq(ct_string_transport_step(st), 1);
  cr_assert_eq(r.got_len, 6);
  cr_assert_eq(memcmp(r.got, "abcdef", 6), 0);
  ct_string_transport_stats_get(st, &s);
  cr_assert_eq(s.resume_calls, 1);
  cr_assert_eq(s.queued_input, 0);
  ct_string_transport_free(st);
  tu_rec_done(&r);
}

Test(memory_string, half_close_and_eof) {
  tu_rec r = {0};
  ct_string_transport *st = connected(&r, 0);
  ct_transport *t = ct_string_transport_transport(st);
  cr_assert_eq(ct_transport_half_close(t), 0);
  cr_assert_eq(ct_transport_write(t, "x", 1), CT_ECLOSED);
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  cr_assert_eq(s.half_close_calls, 1);
  cr_assert_eq(s.write_shut, 1);
  /* Reading continues after our half-close. */
  cr_assert_eq(ct_string_transport_feed_str(st, "in"), 0);
  cr_assert_eq(r.got_len, 2);
  /* The peer's EOF with a protocol that keeps the connection. */
  r.keep_open_on_eof = 1;
  cr_assert_eq(ct_string_transport_feed_eof(st), 1);
  cr_assert_eq(r.eofs, 1);
  cr_assert_eq(ct_string_transport_feed_str(st, "late"), CT_ECLOSED);
  cr_assert_eq(ct_string_transport_step(st), 0);
  cr_assert_eq(r.lost, 0);
  ct_string_transport_free(st);
  cr_assert_eq(r.lost, 1);
  tu_rec_done(&r);
}

Test(memory_string, eof_closes_when_not_kept) {
  tu_rec r = {0};
  ct_string_transport *st = connected(&r, 0);
  cr_assert_eq(ct_string_transport_feed_eof(st), 0);
  cr_assert_eq(r.eofs, 1);
  cr_assert_eq(r.lost, 0);
  cr_assert_eq(ct_string_transport_feed_eof(st), CT_ECLOSED);
  cr_assert_eq(ct_string_transport_step(st), 1);
  cr_assert_eq(r.lost_code, CT_ECONNDONE);
  ct_string_transport_free(st);
  tu_rec_done(&r);
}

Test(memory_string, addresses) {
  tu_rec r = {0};
  ct_string_transport *st = connected(&r, 0);
  ct_transport *t = ct_string_transport_transport(st);
  ct_address a;
  char buf[CT_ADDRESS_STRLEN];
  cr_assert_eq(ct_transport_get_peer(t, &a), 0);
  ct_address_format(&a, buf, sizeof(buf));
  cr_assert_str_eq(buf, "192.168.1.1:54321");
  cr_assert_eq(ct_transport_get_host(t, &a), 0);
  ct_address_format(&a, buf, sizeof(buf));
  cr_assert_str_eq(buf, "10.0.0.1:12345");
  ct_address u;
  cr_assert_eq(ct_address_from_unix(&u, "/tmp/x.sock"), 0);
  ct_string_transport_set_peer(st, &u);
  cr_assert_eq(ct_transport_get_peer(t, &a), 0);
  cr_assert(ct_address_equal(&a, &u));
  ct_string_transport_set_host(st, &u);
  cr_assert_eq(ct_transport_get_host(t, &a), 0);
  cr_assert(ct_address_equal(&a, &u));
  cr_assert_eq(ct_transport_set_tcp_nodelay(t, 1), 0);
  cr_assert_eq(ct_transport_fileno(t), -1);
  ct_string_transport_free(st);
  tu_rec_done(&r);
}

/* A push producer that counts pause/resume/stop. */
typedef struct prod {
  int pauses, resumes, stops;
} prod;
static void p_pause(void *arg) {
  ((prod *)arg)->pauses++;
}
static void p_resume(void *arg) {
  ((prod *)arg)->resumes++;
}
static void p_stop(void *arg) {
  ((prod *)arg)->stops++;
}
static const ct_producer_ops prod_ops = {p_pause, p_resume, p_stop};

Test(memory_string, push_producer_and_backpressure) {
  tu_rec r = {0};
  ct_string_transport *st = ct_string_transport_new(NULL);
  cr_assert_eq(ct_string_transport_connect(st, proto(&r, &tu_rec_ops_bp)), 0);
  ct_protocol *extra = proto(&r, &tu_rec_ops_bp);
  cr_assert_eq(ct_string_transport_connect(st, extra), CT_ESTATE);
  cr_assert_eq(r.freed, 0, "a refused protocol stays the caller's");
  ct_protocol_release(extra);
  cr_assert_eq(r.freed, 1);
  ct_transport *t = ct_string_transport_transport(st);
  cr_assert_eq(ct_string_transport_set_backpressure(st, 1), 0);
  cr_assert_eq(ct_transport_set_watermarks(t, 100, 10), 0);
  prod pr = {0};
  cr_assert_eq(ct_transport_register_producer(t, &prod_ops, &pr, 1), 0);
  cr_assert_eq(ct_transport_register_producer(t, &prod_ops, &pr, 1), CT_ESTATE);
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  cr_assert_eq(s.producer_registered, 1);
  cr_assert_eq(s.producer_streaming, 1);

  char blob[150];
  memset(blob, 'x', sizeof(blob));
  cr_assert_eq(ct_transport_write(t, blob, 60), 0);
  cr_assert_eq(pr.pauses, 0);
  cr_assert_eq(ct_transport_write(t, blob, 60), 0);
  cr_assert_eq(ct_transport_buffered(t), 120);
  cr_assert_eq(pr.pauses, 1, "crossing high pauses the producer");
  cr_assert(ct_transport_reading_paused(t), "opted-in protocol stops reading");
  cr_assert_eq(ct_string_transport_feed_str(st, "held"), 0);
  cr_assert_eq(r.got_len, 0);
  ct_string_transport_clear(st); /* the peer read everything */
  cr_assert_eq(pr.resumes, 1);
  cr_assert(!ct_transport_reading_paused(t));
  cr_assert_eq(ct_string_transport_step(st), 1);
  cr_assert_eq(r.got_len, 4);
  ct_string_transport_free(st);
  cr_assert_eq(pr.stops, 1, "stop_producing when the connection ends");
  cr_assert_eq(r.freed, 2);
  tu_rec_done(&r);
}

/* A pull producer writes one piece per resume_producing, 3 in all. */
typedef struct puller {
  ct_transport *t;
  int calls;
} puller;
static void pull_resume(void *arg) {
  puller *pl = arg;
  pl->calls++;
  if (pl->calls <= 3) {
    ct_transport_write_str(pl->t, "piece;");
  } else {
    ct_transport_unregister_producer(pl->t);
  }
}
static const ct_producer_ops pull_ops = {NULL, pull_resume, NULL};

Test(memory_string, pull_producer_runs_from_steps) {
  tu_rec r = {0};
  ct_string_transport *st = connected(&r, 0);
  ct_transport *t = ct_string_transport_transport(st);
  puller pl = {t, 0};
  cr_assert_eq(ct_transport_register_producer(t, &pull_ops, &pl, 0), 0);
  cr_assert_eq(pl.calls, 0, "never from inside register_producer");
  int guard = 0;
  while (ct_string_transport_step(st) > 0 && guard++ < 100) {
  }
  cr_assert_eq(pl.calls, 4);
  cr_assert_str_eq(ct_string_transport_value(st, NULL), "piece;piece;piece;");
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  cr_assert_eq(s.producer_registered, 0);
  ct_string_transport_free(st);
  tu_rec_done(&r);
}

Test(memory_string, free_before_connect_and_null) {
  ct_string_transport *st = ct_string_transport_new(NULL);
  cr_assert_not_null(st);
  cr_assert_eq(ct_string_transport_feed_str(st, "x"), CT_ESTATE);
  cr_assert_eq(ct_string_transport_feed_eof(st), CT_ESTATE);
  cr_assert_eq(ct_string_transport_connect(st, NULL), CT_EINVAL);
  ct_string_transport_free(st);
  ct_string_transport_free(NULL);
}

/* A protocol with a timeout: idle for 5 s on the fake clock, it closes. */
typedef struct idle {
  ct_protocol base;
  ct_delayed_call *timer;
  tu_rec *r;
} idle;
static void idle_fire(void *arg) {
  idle *ip = arg;
  ip->timer = NULL;
  ct_transport_write_str(ip->base.transport, "timeout\n");
  ct_transport_lose_connection(ip->base.transport);
}
static void idle_made(ct_protocol *p, ct_transport *t) {
  idle *ip = (idle *)p;
  ip->timer = ct_call_later(t->reactor, 5.0, idle_fire, ip);
}
static void idle_data(ct_protocol *p, const char *d, size_t n) {
  idle *ip = (idle *)p;
  (void)d;
  (void)n;
  ct_delayed_call_reset(ip->timer, 5.0);
}
static void idle_lost(ct_protocol *p, const ct_failure *reason) {
  idle *ip = (idle *)p;
  if (ip->timer != NULL) {
    ct_delayed_call_cancel(ip->timer);
  }
  ip->r->lost++;
  ip->r->lost_code = reason->code;
}
static const ct_protocol_ops idle_ops = {
    .name = "idle",
    .connection_made = idle_made,
    .data_received = idle_data,
    .connection_lost = idle_lost,
};

Test(memory_string, protocol_timer_on_fake_clock) {
  ct_clock *clock = ct_clock_new();
  ct_reactor *reactor = ct_reactor_new_with_clock(clock);
  cr_assert_not_null(reactor);
  tu_rec r = {0};
  ct_string_transport *st = ct_string_transport_new(reactor);
  idle *ip = (idle *)ct_protocol_new(&idle_ops, sizeof(idle));
  ip->r = &r;
  cr_assert_eq(ct_string_transport_connect(st, &ip->base), 0);
  ct_clock_advance(clock, 4.0);
  cr_assert_eq(ct_string_transport_feed_str(st, "keepalive"), 0);
  ct_clock_advance(clock, 4.0);
  cr_assert_str_eq(ct_string_transport_value(st, NULL), "");
  ct_clock_advance(clock, 1.0);
  cr_assert_str_eq(ct_string_transport_value(st, NULL), "timeout\n");
  cr_assert_eq(r.lost, 0);
  cr_assert_eq(ct_string_transport_step(st), 1);
  cr_assert_eq(r.lost_code, CT_ECONNDONE);
  ct_string_transport_free(st);
  cr_assert_eq(ct_reactor_pending_calls(reactor), 0);
  ct_reactor_free(reactor);
  ct_clock_free(clock);
  tu_rec_done(&r);
}

/* A protocol that frees its own state and closes from inside
 * data_received on "die" (aborting on "die abort"): nothing may touch that
 * state afterwards (tu_selfish). */
static void selfish_case(const char *msg, int want) {
  int lost = 0;
  ct_string_transport *st = ct_string_transport_new(NULL);
  tu_selfish *s = tu_selfish_new("die", &lost);
  s->abort_on = "abort";
  cr_assert_eq(ct_string_transport_connect(st, &s->base), 0);
  cr_assert_eq(ct_string_transport_feed_str(st, msg), 0);
  cr_assert_eq(ct_string_transport_feed_str(st, "after"), CT_ECLOSED);
  cr_assert_eq(lost, 0);
  ct_string_transport_step(st);
  cr_assert_eq(lost, want);
  ct_string_transport_free(st);
}

Test(memory_string, close_and_free_own_state_inside_data_received) {
  selfish_case("die", CT_ECONNDONE);
  selfish_case("die abort", CT_ECONNABORTED);
}
