/*
 * Idle timeouts: the embeddable ct_idle_timeout (TimeoutMixin) on a string
 * transport, and the timeout factory (TimeoutFactory) over a memory pump,
 * both on a fake clock.
 */
#include <math.h>

#include "ctwist/policies.h"
#include "ctwist/testing.h"
#include "ctwist/wire.h"
#include "test_transport_util.h"

TU_CLOCK_REACTOR_FIXTURE(cr_assert_eq(ct_reactor_pending_calls(R), 0,
                                      "timer left behind"))

TestSuite(idle, .init = setup, .fini = teardown, .timeout = 30);
TestSuite(timeout_factory, .init = setup, .fini = teardown, .timeout = 30);

/* ------------------------------------------------- embedded helper */

typedef struct idle_proto {
  ct_protocol base;
  ct_idle_timeout it;
  double period;
  int use_cb;
  int timeouts;
  double fired_at;
} idle_proto;

static void on_idle(ct_idle_timeout *it, void *arg) {
  idle_proto *ip = arg;
  ip->timeouts++;
  ip->fired_at = ct_clock_seconds(C);
  (void)it;
}

static void ip_made(ct_protocol *p, ct_transport *t) {
  (void)t;
  idle_proto *ip = (idle_proto *)p;
  ct_idle_timeout_init(&ip->it, NULL, p, ip->use_cb ? on_idle : NULL, ip);
  cr_assert_eq(ct_idle_timeout_set(&ip->it, ip->period), 0);
}

static void ip_data(ct_protocol *p, const char *d, size_t n) {
  (void)d;
  (void)n;
  ct_idle_timeout_reset(&((idle_proto *)p)->it);
}

static void ip_lost(ct_protocol *p, const ct_failure *reason) {
  (void)reason;
  ct_idle_timeout_cancel(&((idle_proto *)p)->it);
}

static const ct_protocol_ops idle_ops = {
    .name = "idle",
    .connection_made = ip_made,
    .data_received = ip_data,
    .connection_lost = ip_lost,
};

static ct_string_transport *idle_connect(idle_proto **out, double period,
                                         int use_cb) {
  ct_string_transport *st = ct_string_transport_new(R);
  idle_proto *ip = (idle_proto *)ct_protocol_new(&idle_ops, sizeof *ip);
  ip->period = period;
  ip->use_cb = use_cb;
  cr_assert_eq(ct_string_transport_connect(st, &ip->base), 0);
  *out = ip;
  return st;
}

static int aborted(ct_string_transport *st) {
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  return (int)s.abort_calls;
}

Test(idle, fires_exactly_at_the_deadline_and_aborts_by_default) {
  idle_proto *ip;
  ct_string_transport *st = idle_connect(&ip, 4.0, 0);
  cr_assert(ct_idle_timeout_pending(&ip->it));
  ct_clock_advance(C, 3.75);
  cr_assert_eq(aborted(st), 0);
  ct_clock_advance(C, 0.25); /* t = 4.0, the deadline */
  cr_assert_eq(aborted(st), 1);
  cr_assert_eq(ip->it.fired, 1);
  cr_assert_not(ct_idle_timeout_pending(&ip->it));
  ct_string_transport_step(st);
  ct_string_transport_stats s;
  ct_string_transport_stats_get(st, &s);
  cr_assert_eq(s.lost_code, CT_ECONNABORTED);
  ct_string_transport_free(st);
}

Test(idle, traffic_pushes_the_deadline_back) {
  idle_proto *ip;
  ct_string_transport *st = idle_connect(&ip, 4.0, 1);
  ct_clock_advance(C, 3.5);
  ct_string_transport_feed_str(st, "x"); /* deadline now 7.5 */
  ct_clock_advance(C, 3.5);
  ct_string_transport_feed_str(st, "y"); /* deadline now 11.0 */
  ct_clock_advance(C, 3.75);
  cr_assert_eq(ip->timeouts, 0);
  ct_clock_advance(C, 0.25);
  cr_assert_eq(ip->timeouts, 1);
  cr_assert_float_eq(ip->fired_at, 11.0, 1e-9);
  /* The callback replaced the default: nothing was aborted. */
  cr_assert_eq(aborted(st), 0);
  /* After firing, traffic does not re-arm; set() does. */
  ct_string_transport_feed_str(st, "z");
  cr_assert_not(ct_idle_timeout_pending(&ip->it));
  cr_assert_eq(ct_idle_timeout_set(&ip->it, 1.0), 0);
  ct_clock_advance(C, 1.0);
  cr_assert_eq(ip->timeouts, 2);
  ct_string_transport_free(st);
}

Test(idle, set_changes_disables_and_validates) {
  idle_proto *ip;
  ct_string_transport *st = idle_connect(&ip, 4.0, 1);
  ct_clock_advance(C, 1.0);
  cr_assert_eq(ct_idle_timeout_set(&ip->it, 10.0), 0); /* due at 11 */
  cr_assert_float_eq(ct_idle_timeout_get(&ip->it), 10.0, 1e-12);
  ct_clock_advance(C, 9.5);
  cr_assert_eq(ip->timeouts, 0);
  cr_assert_eq(ct_idle_timeout_set(&ip->it, 0), 0); /* disabled */
  cr_assert_not(ct_idle_timeout_pending(&ip->it));
  ct_string_transport_feed_str(st, "x"); /* reset while disabled: no-op */
  ct_clock_advance(C, 100);
  cr_assert_eq(ip->timeouts, 0);
  cr_assert_eq(ct_idle_timeout_set(&ip->it, NAN), CT_EINVAL);
  cr_assert_eq(ct_idle_timeout_set(&ip->it, INFINITY), CT_EINVAL);
  cr_assert_eq(ct_idle_timeout_set(NULL, 1.0), CT_EINVAL);
  ct_idle_timeout_cancel(NULL);
  ct_idle_timeout_reset(NULL);
  cr_assert_not(ct_idle_timeout_pending(NULL));
  /* No reactor known: neither explicit nor through a transport. */
  ct_idle_timeout lone;
  ct_idle_timeout_init(&lone, NULL, NULL, NULL, NULL);
  cr_assert_eq(ct_idle_timeout_set(&lone, 1.0), CT_ESTATE);
  /* An explicit reactor works without a protocol. */
  ct_idle_timeout_init(&lone, R, NULL, NULL, NULL);
  cr_assert_eq(ct_idle_timeout_set(&lone, 1.0), 0);
  ct_clock_advance(C, 1.0); /* default action without a protocol: nothing */
  cr_assert_eq(lone.fired, 1);
  ct_string_transport_free(st);
}

Test(idle, cancelled_in_connection_lost) {
  idle_proto *ip;
  ct_string_transport *st = idle_connect(&ip, 4.0, 1);
  ct_string_transport_lose(st, NULL);
  cr_assert_eq(ct_reactor_pending_calls(R), 0);
  ct_clock_advance(C, 10);
  ct_string_transport_free(st);
}

/* ------------------------------------------------- timeout factory */

typedef struct fenv {
  ct_factory echo;
  tu_server_stats sst;
  ct_policy_factory *pf;
  ct_client_factory cf;
  tu_client_stats cst;
  ct_pump *pump;
} fenv;

static void fenv_open(fenv *e, double seconds) {
  memset(e, 0, sizeof *e);
  ct_factory_init(&e->echo, NULL, &tu_echo_ops, sizeof(ct_protocol), &e->sst);
  e->pf = ct_timeout_factory_new(&e->echo, seconds);
  cr_assert(e->pf != NULL);
  ct_pump_options o = {.clock = C};
  e->pump =
      tu_pump_client(R, ct_policy_factory_base(e->pf), &e->cf, &e->cst, &o);
  cr_assert_eq(ct_policy_factory_connections(e->pf), 1);
}

static void send_and_pump(fenv *e, const char *s) {
  cr_assert_eq(ct_transport_write_str(ct_pump_client_transport(e->pump), s), 0);
  ct_pump_flush(e->pump);
}

static void fenv_close(fenv *e) {
  ct_pump_free(e->pump);
  cr_assert_eq(ct_policy_factory_connections(e->pf), 0);
  ct_policy_factory_free(e->pf);
  tu_server_stats_release(&e->sst);
}

Test(timeout_factory, traffic_keeps_it_alive_idle_aborts) {
  fenv e;
  fenv_open(&e, 2.0);
  send_and_pump(&e, "hello");
  cr_assert_eq(e.cst.last->len, 5); /* echoed through the wrapper */
  ct_clock_advance(C, 1.5);
  send_and_pump(&e, "again"); /* deadline 3.5 */
  ct_clock_advance(C, 1.5);
  ct_pump_flush(e.pump);
  cr_assert_eq(ct_pump_lost_code(e.pump, 1), 0);
  cr_assert_eq(e.sst.lost, 0);
  ct_clock_advance(C, 0.5); /* t = 3.5 */
  ct_pump_flush(e.pump);
  cr_assert_eq(e.sst.lost, 1);
  cr_assert_eq(e.sst.last_lost_code, CT_ECONNABORTED);
  cr_assert_eq(ct_pump_lost_code(e.pump, 1), CT_ECONNABORTED);
  cr_assert_eq(ct_pump_lost_code(e.pump, 0), CT_ECONNRESET);
  cr_assert_eq(e.cst.final_len, 10);
  fenv_close(&e);
}

Test(timeout_factory, server_writes_reset_the_timer_too) {
  fenv e;
  fenv_open(&e, 2.0);
  ct_clock_advance(C, 1.5);
  /* The inner protocol writes on its own (through the wrapper transport). */
  cr_assert_eq(ct_transport_write_str(e.sst.last, "tick"), 0);
  ct_clock_advance(C, 1.5); /* t = 3.0 < 3.5 */
  ct_pump_flush(e.pump);
  cr_assert_eq(e.sst.lost, 0);
  ct_clock_advance(C, 0.5);
  ct_pump_flush(e.pump);
  cr_assert_eq(e.sst.lost, 1);
  fenv_close(&e);
}

Test(timeout_factory, per_connection_change_and_introspection) {
  fenv e;
  fenv_open(&e, 2.0);
  ct_protocol *wrapper = ct_pump_server_transport(e.pump)->protocol;
  ct_protocol *inner = ct_policy_inner_protocol(wrapper);
  cr_assert(inner != NULL && inner != wrapper);
  cr_assert_eq(inner->transport, e.sst.last);
  cr_assert_str_eq(ct_transport_kind(inner->transport), "policy");
  /* The wrapper transport forwards addresses. */
  ct_address peer;
  cr_assert_eq(ct_transport_get_peer(inner->transport, &peer), 0);
  cr_assert_eq(ct_address_port(&peer), 49152);
  cr_assert_eq(ct_timeout_set(inner, 0), 0); /* disable */
  ct_clock_advance(C, 100);
  ct_pump_flush(e.pump);
  cr_assert_eq(e.sst.lost, 0);
  cr_assert_eq(ct_timeout_set(inner, 1.0), 0);
  ct_clock_advance(C, 1.0);
  ct_pump_flush(e.pump);
  cr_assert_eq(e.sst.lost, 1);
  /* Not a timeout-wrapped protocol. */
  cr_assert_eq(ct_timeout_set(NULL, 1.0), CT_EINVAL);
  ct_protocol plain;
  ct_protocol_init(&plain, &tu_echo_ops);
  cr_assert_eq(ct_timeout_set(&plain, 1.0), CT_EINVAL);
  cr_assert_eq(ct_policy_inner_protocol(&plain), &plain);
  fenv_close(&e);
}

Test(timeout_factory, factory_freed_before_its_connections) {
  fenv e;
  fenv_open(&e, 2.0);
  ct_policy_factory_free(e.pf); /* connections keep it alive */
  send_and_pump(&e, "still here");
  cr_assert_eq(e.cst.last->len, 10);
  ct_clock_advance(C, 2.0);
  ct_pump_flush(e.pump);
  cr_assert_eq(e.sst.lost, 1);
  ct_pump_free(e.pump);
  tu_server_stats_release(&e.sst);
}

Test(timeout_factory, bad_arguments) {
  ct_factory f;
  ct_echo_factory_init(&f);
  cr_assert_null(ct_timeout_factory_new(NULL, 1.0));
  cr_assert_null(ct_timeout_factory_new(&f, 0));
  cr_assert_null(ct_timeout_factory_new(&f, -1));
  cr_assert_null(ct_timeout_factory_new(&f, NAN));
  cr_assert_null(ct_policy_factory_base(NULL));
  cr_assert_null(ct_policy_factory_wrapped(NULL));
  cr_assert_eq(ct_policy_factory_connections(NULL), 0);
  ct_policy_factory_free(NULL);
  ct_policy_factory *pf = ct_timeout_factory_new(&f, 1.0);
  cr_assert_eq(ct_policy_factory_wrapped(pf), &f);
  ct_policy_factory_free(pf);
}

/* Composition: a timeout inside a timeout, the inner one shorter. */
Test(timeout_factory, wrappers_compose) {
  ct_factory echo;
  tu_server_stats sst = {0};
  ct_factory_init(&echo, NULL, &tu_echo_ops, sizeof(ct_protocol), &sst);
  ct_policy_factory *in = ct_timeout_factory_new(&echo, 1.0);
  ct_policy_factory *out =
      ct_timeout_factory_new(ct_policy_factory_base(in), 5.0);
  ct_client_factory cf;
  tu_client_stats cst;
  ct_pump_options o = {.clock = C, .chunk_size = 1};
  ct_pump *p = tu_pump_client(R, ct_policy_factory_base(out), &cf, &cst, &o);
  ct_transport_write_str(ct_pump_client_transport(p), "layered");
  ct_pump_flush(p);
  cr_assert_eq(cst.last->len, 7);
  cr_assert(memcmp(cst.last->buf, "layered", 7) == 0);
  ct_clock_advance(C, 1.0);
  ct_pump_flush(p);
  cr_assert_eq(sst.lost, 1);
  cr_assert_eq(sst.last_lost_code, CT_ECONNABORTED);
  ct_pump_free(p);
  ct_policy_factory_free(out);
  ct_policy_factory_free(in);
  tu_server_stats_release(&sst);
}

/* A pull producer (chargen) behind the wrapper transport keeps flowing: the
 * wrapper asks the real transport for drain notices and passes them on. */
Test(timeout_factory, pull_producer_through_the_wrapper) {
  ct_factory chargen;
  ct_chargen_factory_init(&chargen);
  ct_policy_factory *pf = ct_timeout_factory_new(&chargen, 5.0);
  ct_client_factory cf;
  tu_client_stats cst;
  ct_pump_options o = {.clock = C, .max_steps = 200};
  ct_pump *p = tu_pump_client(R, ct_policy_factory_base(pf), &cf, &cst, &o);
  ct_pump_flush(p); /* talks forever: stops at max_steps */
  cr_assert_geq(cst.last->len, 10 * CT_CHARGEN_CHUNK, "got %zu", cst.last->len);
  ct_transport *inner_t =
      ct_policy_inner_protocol(ct_pump_server_transport(p)->protocol)
          ->transport;
  cr_assert_leq(ct_transport_buffered(inner_t), CT_CHARGEN_CHUNK);
  /* Writes count as traffic: 10 s later it is still connected. */
  for (int i = 0; i < 10; i++) {
    ct_clock_advance(C, 1.0);
    ct_pump_flush(p);
  }
  cr_assert_eq(ct_pump_lost_code(p, 1), 0);
  /* The client stops reading: the server stops producing, then times out. */
  ct_transport_pause_reading(ct_pump_client_transport(p));
  ct_pump_flush(p);
  size_t held = ct_transport_buffered(ct_pump_server_transport(p));
  cr_assert_leq(held, CT_CHARGEN_CHUNK);
  ct_pump_flush(p);
  cr_assert_eq(ct_transport_buffered(ct_pump_server_transport(p)), held);
  ct_clock_advance(C, 5.0);
  ct_pump_flush(p);
  cr_assert_eq(ct_pump_lost_code(p, 1), CT_ECONNABORTED);
  ct_pump_free(p);
  ct_policy_factory_free(pf);
}

/* Back-pressure crosses the wrapper: an echo whose client does not read
 * stops reading at the high watermark and resumes once the client reads. */
Test(timeout_factory, backpressure_through_the_wrapper) {
  ct_factory echo;
  ct_echo_factory_init(&echo);
  echo.write_high_water = 1000;
  echo.write_low_water = 100;
  ct_policy_factory *pf = ct_timeout_factory_new(&echo, 100.0);
  ct_client_factory cf;
  tu_client_stats cst;
  ct_pump_options o = {.clock = C, .chunk_size = 500};
  ct_pump *p = tu_pump_client(R, ct_policy_factory_base(pf), &cf, &cst, &o);
  ct_transport *client = ct_pump_client_transport(p);
  ct_transport *server = ct_pump_server_transport(p);
  ct_transport *inner_t = ct_policy_inner_protocol(server->protocol)->transport;
  ct_transport_pause_reading(client);
  char buf[5000];
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (char)('A' + i % 23);
  ct_transport_write(client, buf, sizeof buf);
  ct_pump_flush(p);
  /* The server echoed until its output passed 1000 bytes, then stopped
   * reading: the rest waits on the client side. */
  cr_assert(ct_transport_reading_paused(server));
  cr_assert(ct_transport_reading_paused(inner_t));
  cr_assert_geq(ct_transport_buffered(server), 1000);
  cr_assert_leq(ct_transport_buffered(server), 1500);
  cr_assert_gt(ct_transport_buffered(client), 0);
  cr_assert_eq(cst.last->len, 0);
  ct_transport_resume_reading(client);
  ct_pump_flush(p);
  cr_assert_eq(cst.last->len, sizeof buf);
  cr_assert(memcmp(cst.last->buf, buf, sizeof buf) == 0);
  cr_assert_not(ct_transport_reading_paused(server));
  ct_pump_free(p);
  ct_policy_factory_free(pf);
}
