/*
 * The slow-consumer policy (transport.h): a connection whose queued output
 * goes over the hard limit is aborted at once; one that stays over the
 * soft limit for the soft duration is aborted then; one that dips below
 * the soft limit in time is kept.  connection_lost names the limit
 * (CT_ESLOWCONSUMER) and the factory counts the drops.  Over the memory
 * pair and the fake clock: the client side stops reading, the test writes
 * to the server side from outside any callback (as a broadcast would).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/reactor.h"
#include "ctwist/testing.h"
#include "ctwist/transport.h"
#include "tu_recorder.h"

static ct_clock *C;
static ct_reactor *R;
static tu_rec SR, CR;
static ct_factory SF, CF;
static ct_pump *P;
static ct_transport *ST;
static char *CHUNK;
#define KIB 1024u

/* Server limits: hard 1 MiB, soft 256 KiB for 5 s. */
static void setup(void) {
  C = ct_clock_new();
  R = ct_reactor_new_with_clock(C);
  memset(&SR, 0, sizeof SR);
  memset(&CR, 0, sizeof CR);
  ct_factory_init(&SF, NULL, &tu_rec_ops, sizeof(ct_protocol), NULL);
  ct_factory_init(&CF, NULL, &tu_rec_ops, sizeof(ct_protocol), NULL);
  SF.output_hard_limit = 1024 * KIB;
  SF.output_soft_limit = 256 * KIB;
  SF.output_soft_seconds = 5;
  P = NULL;
  CHUNK = calloc(1, 64 * KIB);
}

static void teardown(void) {
  ct_pump_free(P);
  free(SR.got);
  free(CR.got);
  free(CHUNK);
  ct_reactor_free(R);
  ct_clock_free(C);
}

TestSuite(slow_consumer, .init = setup, .fini = teardown);

static ct_protocol *rec_build(ct_factory *f, const ct_address *peer) {
  (void)peer;
  ct_protocol *p = calloc(1, sizeof *p);
  p->ops = f->protocol_ops;
  p->state = f == &SF ? (void *)&SR : (void *)&CR;
  return p;
}
static const ct_factory_ops rec_factory_ops = {.build_protocol = rec_build};

static void connect_pair(void) {
  SF.ops = &rec_factory_ops;
  CF.ops = &rec_factory_ops;
  P = ct_pump_connect_factories(R, &SF, &CF, NULL);
  cr_assert_not_null(P);
  ST = ct_pump_server_transport(P);
  /* The client stops reading: what the server writes stays queued. */
  cr_assert_eq(ct_transport_pause_reading(ct_pump_client_transport(P)), 0);
}

static void write_kib(size_t kib) {
  for (size_t i = 0; i < kib; i += 64)
    cr_assert_eq(ct_transport_write(ST, CHUNK, 64 * KIB), 0);
}

Test(slow_consumer, over_the_hard_limit_is_dropped_at_once) {
  connect_pair();
  write_kib(960);
  ct_pump_flush(P);
  cr_assert_eq(ct_pump_lost_code(P, 1), 0, "960 KiB is under the hard limit");
  write_kib(128);
  ct_pump_flush(P);
  cr_assert_eq(ct_pump_lost_code(P, 1), CT_ESLOWCONSUMER);
  cr_assert_eq(SR.lost_code, CT_ESLOWCONSUMER);
  cr_assert_eq(SF.slow_consumer_drops, 1);
  cr_assert_eq(CF.slow_consumer_drops, 0);
}

Test(slow_consumer, over_the_soft_limit_for_too_long_is_dropped) {
  connect_pair();
  write_kib(320);
  ct_clock_advance(C, 4.9);
  ct_pump_flush(P);
  cr_assert_eq(ct_pump_lost_code(P, 1), 0, "dropped before the soft duration");
  ct_clock_advance(C, 0.2);
  ct_pump_flush(P);
  cr_assert_eq(ct_pump_lost_code(P, 1), CT_ESLOWCONSUMER);
  cr_assert_eq(SF.slow_consumer_drops, 1);
}

Test(slow_consumer, a_consumer_that_catches_up_is_kept) {
  connect_pair();
  ct_transport *cli = ct_pump_client_transport(P);
  for (int round = 0; round < 5; round++) {
    write_kib(320); /* over the soft limit... */
    ct_clock_advance(C, 4);
    /* ...and read back down in time. */
    cr_assert_eq(ct_transport_resume_reading(cli), 0);
    ct_pump_flush(P);
    cr_assert_eq(ct_transport_buffered(ST), 0);
    cr_assert_eq(ct_transport_pause_reading(cli), 0);
  }
  ct_clock_advance(C, 60);
  ct_pump_flush(P);
  cr_assert_eq(ct_pump_lost_code(P, 1), 0);
  cr_assert_eq(SF.slow_consumer_drops, 0);
  cr_assert_eq(CR.got_len, 5 * 320 * KIB);
}

Test(slow_consumer, limits_are_validated_and_can_be_turned_off) {
  connect_pair();
  cr_assert_eq(ct_transport_set_output_limits(ST, 100, 200, 1), CT_EINVAL);
  cr_assert_eq(ct_transport_set_output_limits(ST, 100, 50, -1), CT_EINVAL);
  cr_assert_eq(ct_transport_set_output_limits(NULL, 0, 0, 0), CT_EINVAL);
  /* Off: 2 MiB queued for a minute is kept. */
  cr_assert_eq(ct_transport_set_output_limits(ST, 0, 0, 1), 0);
  write_kib(2048);
  ct_clock_advance(C, 60);
  ct_pump_flush(P);
  cr_assert_eq(ct_pump_lost_code(P, 1), 0);
  /* Back to the defaults (64 MiB hard): still kept. */
  cr_assert_eq(ct_transport_set_output_limits(ST, 0, 0, 0), 0);
  cr_assert_eq(ST->out_hard_limit, CT_OUTPUT_HARD_LIMIT_DEFAULT);
  ct_clock_advance(C, 60);
  ct_pump_flush(P);
  cr_assert_eq(ct_pump_lost_code(P, 1), 0);
}
