/*
 * Throttling: read and write caps per factory, on a fake clock over memory
 * pumps.  Bytes per second stay within the cap, held output is released on
 * later ticks in order, and a close waits for held output.
 */
#include "ctwist/policies.h"
#include "ctwist/testing.h"
#include "ctwist/wire.h"
#include "test_transport_util.h"

TU_CLOCK_REACTOR_FIXTURE(cr_assert_eq(ct_reactor_pending_calls(R), 0,
                                      "tick left behind"))

TestSuite(throttle, .init = setup, .fini = teardown, .timeout = 30);

/* A server that writes `n` patterned bytes at once, then maybe closes. */
typedef struct blast_cfg {
  size_t n;
  int close_after;
  size_t received;
  int lost;
  int lost_code;
} blast_cfg;

static char pattern(size_t i) {
  return (char)('a' + i % 26);
}

static void blast_made(ct_protocol *p, ct_transport *t) {
  blast_cfg *cfg = p->factory->user;
  char *buf = malloc(cfg->n);
  for (size_t i = 0; i < cfg->n; i++)
    buf[i] = pattern(i);
  cr_assert_eq(ct_transport_write(t, buf, cfg->n), 0);
  free(buf);
  if (cfg->close_after)
    ct_transport_lose_connection(t);
}

static void blast_data(ct_protocol *p, const char *d, size_t n) {
  (void)d;
  ((blast_cfg *)p->factory->user)->received += n;
}

static void blast_lost(ct_protocol *p, const ct_failure *reason) {
  blast_cfg *cfg = p->factory->user;
  cfg->lost++;
  cfg->lost_code = reason->code;
}

static const ct_protocol_ops blast_ops = {
    .name = "blast",
    .connection_made = blast_made,
    .data_received = blast_data,
    .connection_lost = blast_lost,
};

typedef struct tenv {
  blast_cfg cfg;
  ct_factory inner;
  ct_policy_factory *pf;
  ct_client_factory cf;
  tu_client_stats cst;
  ct_pump *pump;
} tenv;

static void tenv_open(tenv *e, size_t n, size_t read_cap, size_t write_cap,
                      size_t chunk) {
  memset(e, 0, sizeof *e);
  e->cfg.n = n;
  ct_factory_init(&e->inner, NULL, &blast_ops, sizeof(ct_protocol), &e->cfg);
  e->pf = ct_throttling_factory_new(R, &e->inner, read_cap, write_cap);
  cr_assert(e->pf != NULL);
  ct_pump_options o = {.clock = C, .chunk_size = chunk};
  e->pump =
      tu_pump_client(R, ct_policy_factory_base(e->pf), &e->cf, &e->cst, &o);
}

static void tenv_close(tenv *e) {
  ct_pump_free(e->pump);
  ct_policy_factory_free(e->pf);
}

static size_t client_len(tenv *e) {
  return tu_client_len(&e->cst);
}

Test(throttle, write_cap_per_second) {
  tenv e;
  tenv_open(&e, 10000, 0, 1000, 0);
  ct_pump_flush(e.pump);
  cr_assert_eq(client_len(&e), 1000);
  /* Held bytes count as buffered output of the wrapper transport. */
  ct_transport *inner_t =
      ct_policy_inner_protocol(ct_pump_server_transport(e.pump)->protocol)
          ->transport;
  cr_assert_eq(ct_transport_buffered(inner_t), 9000);
  for (int s = 1; s <= 12; s++) {
    ct_clock_advance(C, 0.5);
    ct_pump_flush(e.pump);
    size_t before = client_len(&e);
    ct_clock_advance(C, 0.5); /* tick at s seconds */
    ct_pump_flush(e.pump);
    size_t want =
        (size_t)(s + 1) * 1000 < 10000 ? (size_t)(s + 1) * 1000 : 10000;
    cr_assert_eq(client_len(&e), want, "second %d: %zu", s, client_len(&e));
    cr_assert_leq(client_len(&e) - before, 1000);
  }
  /* In order and intact. */
  for (size_t i = 0; i < 10000; i++)
    cr_assert_eq(e.cst.last->buf[i], pattern(i));
  cr_assert_eq(ct_transport_buffered(inner_t), 0);
  tenv_close(&e);
}

Test(throttle, close_waits_for_held_output) {
  tenv f;
  memset(&f, 0, sizeof f);
  f.cfg.n = 3500;
  f.cfg.close_after = 1;
  ct_factory_init(&f.inner, NULL, &blast_ops, sizeof(ct_protocol), &f.cfg);
  f.pf = ct_throttling_factory_new(R, &f.inner, 0, 1000);
  ct_pump_options o = {.clock = C};
  f.pump = tu_pump_client(R, ct_policy_factory_base(f.pf), &f.cf, &f.cst, &o);
  ct_pump_flush(f.pump);
  cr_assert_eq(client_len(&f), 1000);
  cr_assert_eq(ct_pump_lost_code(f.pump, 0), 0, "closed before flushing");
  for (int s = 0; s < 3; s++) {
    ct_clock_advance(C, 1.0);
    ct_pump_flush(f.pump);
  }
  cr_assert_eq(f.cst.final_len, 3500);
  cr_assert_eq(ct_pump_lost_code(f.pump, 0), CT_ECONNDONE);
  cr_assert_eq(f.cfg.lost, 1);
  cr_assert_eq(f.cfg.lost_code, CT_ECONNDONE);
  tenv_close(&f);
}

Test(throttle, read_cap_per_second) {
  tenv e;
  tenv_open(&e, 0, 1000, 0, 100);
  char buf[10000];
  memset(buf, 'r', sizeof buf);
  cr_assert_eq(
      ct_transport_write(ct_pump_client_transport(e.pump), buf, sizeof buf), 0);
  ct_pump_flush(e.pump);
  cr_assert_eq(e.cfg.received, 1000);
  for (int s = 1; s <= 9; s++) {
    ct_clock_advance(C, 0.999);
    ct_pump_flush(e.pump);
    cr_assert_eq(e.cfg.received, (size_t)s * 1000);
    ct_clock_advance(C, 0.001);
    ct_pump_flush(e.pump);
    cr_assert_eq(e.cfg.received, (size_t)(s + 1) * 1000, "second %d: %zu", s,
                 e.cfg.received);
  }
  tenv_close(&e);
}

Test(throttle, read_overshoot_is_carried_over) {
  /* Chunks of 700 against a cap of 1000: the second chunk crosses the cap
   * (1400 read), so the next second may only take what is left. */
  tenv e;
  tenv_open(&e, 0, 1000, 0, 700);
  char buf[7000];
  memset(buf, 'r', sizeof buf);
  ct_transport_write(ct_pump_client_transport(e.pump), buf, sizeof buf);
  ct_pump_flush(e.pump);
  cr_assert_eq(e.cfg.received, 1400);
  for (int s = 1; s <= 8; s++) {
    ct_clock_advance(C, 1.0);
    ct_pump_flush(e.pump);
    /* Never more than the cap on average, give or take one chunk. */
    cr_assert_leq(e.cfg.received, (size_t)(s + 1) * 1000 + 700);
    cr_assert_geq(e.cfg.received + 700, (size_t)(s + 1) * 1000 < 7000
                                            ? (size_t)(s + 1) * 1000
                                            : 7000);
  }
  cr_assert_eq(e.cfg.received, 7000);
  tenv_close(&e);
}

Test(throttle, caps_are_shared_by_the_factory_connections) {
  blast_cfg cfg = {.n = 4000};
  ct_factory inner;
  ct_factory_init(&inner, NULL, &blast_ops, sizeof(ct_protocol), &cfg);
  ct_policy_factory *pf = ct_throttling_factory_new(R, &inner, 0, 1000);
  ct_client_factory cf[2];
  tu_client_stats cst[2];
  ct_pump *p[2];
  ct_pump_options o = {.clock = C};
  for (int i = 0; i < 2; i++) {
    tu_client_factory_init(&cf[i], &cst[i]);
    p[i] = ct_pump_connect_factories(R, ct_policy_factory_base(pf), &cf[i].base,
                                     &o);
  }
  cr_assert_eq(ct_policy_factory_connections(pf), 2);
  for (int s = 0; s < 8; s++) {
    ct_pump_flush(p[0]);
    ct_pump_flush(p[1]);
    size_t total = tu_client_len(&cst[0]) + tu_client_len(&cst[1]);
    cr_assert_eq(total, (size_t)(s + 1) * 1000, "second %d: %zu", s, total);
    ct_clock_advance(C, 1.0);
  }
  /* Both got a share: the list rotates each tick. */
  cr_assert_geq(tu_client_len(&cst[0]), 3000);
  cr_assert_geq(tu_client_len(&cst[1]), 3000);
  ct_pump_free(p[0]);
  ct_pump_free(p[1]);
  ct_policy_factory_free(pf);
}

Test(throttle, echo_under_both_caps_and_bad_arguments) {
  ct_factory echo;
  ct_echo_factory_init(&echo);
  cr_assert_null(ct_throttling_factory_new(NULL, &echo, 1, 1));
  cr_assert_null(ct_throttling_factory_new(R, NULL, 1, 1));
  ct_policy_factory *pf = ct_throttling_factory_new(R, &echo, 500, 500);
  ct_client_factory cf;
  tu_client_stats cst;
  ct_pump_options o = {.clock = C, .chunk_size = 50};
  ct_pump *p = tu_pump_client(R, ct_policy_factory_base(pf), &cf, &cst, &o);
  char buf[3000];
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = pattern(i);
  ct_transport_write(ct_pump_client_transport(p), buf, sizeof buf);
  for (int s = 0; s < 10; s++) {
    ct_pump_flush(p);
    cr_assert_leq(cst.last->len, (size_t)(s + 1) * 500);
    ct_clock_advance(C, 1.0);
  }
  ct_pump_flush(p);
  cr_assert_eq(cst.last->len, sizeof buf);
  cr_assert(memcmp(cst.last->buf, buf, sizeof buf) == 0);
  ct_pump_free(p);
  ct_policy_factory_free(pf);
}
