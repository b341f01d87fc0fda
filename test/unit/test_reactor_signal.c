/* Signals: a user handler through raise(SIGUSR1), the default graceful
 * SIGTERM stop on a real-clock reactor (triggers run), replacing and
 * removing handlers, bad input. */
#include <criterion/criterion.h>
#include <signal.h>

#include "ctwist/reactor.h"

static int usr1;
static void on_usr1(ct_reactor *r, int signum, void *arg) {
  cr_assert_eq(signum, SIGUSR1);
  usr1 += (int)(intptr_t)arg;
  ct_reactor_stop(r);
}

static void raise_usr1(void *arg) {
  (void)arg;
  raise(SIGUSR1);
}

Test(signal, user_handler_runs_on_reactor_thread) {
  ct_clock *clk = ct_clock_new();
  ct_reactor *r = ct_reactor_new_with_clock(clk);
  cr_assert_eq(ct_reactor_on_signal(r, SIGUSR1, on_usr1, (void *)1), 0);
  /* Replace: the second handler's argument is used. */
  cr_assert_eq(ct_reactor_on_signal(r, SIGUSR1, on_usr1, (void *)10), 0);
  ct_reactor_call_when_running(r, raise_usr1, NULL);
  cr_assert_eq(ct_reactor_run(r), 0);
  cr_assert_eq(usr1, 10);
  cr_assert_eq(ct_reactor_on_signal(r, SIGUSR1, NULL, NULL), 0);
  ct_reactor_free(r);
  ct_clock_free(clk);
}

static int after_ran;
static void after(void *arg) {
  (void)arg;
  after_ran++;
}
static void raise_term(void *arg) {
  (void)arg;
  raise(SIGTERM);
}

Test(signal, sigterm_stops_gracefully) {
  ct_reactor *r = ct_reactor_new();
  ct_reactor_add_trigger(r, CT_PHASE_AFTER, after, NULL);
  ct_reactor_call_when_running(r, raise_term, NULL);
  cr_assert_eq(ct_reactor_run(r), 0);
  cr_assert_eq(after_ran, 1);
  ct_reactor_free(r);
}

static int ints;
static void on_int(ct_reactor *r, int signum, void *arg) {
  (void)arg;
  ints++;
  /* Remove ourselves from inside: SIGINT goes back to the default stop. */
  cr_assert_eq(ct_reactor_on_signal(r, signum, NULL, NULL), 0);
  raise(SIGINT);
}

static void raise_int(void *arg) {
  (void)arg;
  raise(SIGINT);
}

Test(signal, sigint_user_handler_then_default) {
  ct_reactor *r = ct_reactor_new();
  after_ran = 0;
  cr_assert_eq(ct_reactor_on_signal(r, SIGINT, on_int, NULL), 0);
  ct_reactor_add_trigger(r, CT_PHASE_AFTER, after, NULL);
  ct_reactor_call_when_running(r, raise_int, NULL);
  cr_assert_eq(ct_reactor_run(r), 0);
  cr_assert_eq(ints, 1);
  cr_assert_eq(after_ran, 1);
  ct_reactor_free(r);
}

Test(signal, sigpipe_is_ignored) {
  ct_reactor *r = ct_reactor_new();
  raise(SIGPIPE); /* would kill the test process otherwise */
  ct_reactor_free(r);
}

Test(signal, bad_input) {
  ct_reactor *r = ct_reactor_new();
  cr_assert_eq(ct_reactor_on_signal(NULL, SIGUSR1, on_usr1, NULL), CT_EINVAL);
  cr_assert_eq(ct_reactor_on_signal(r, 0, on_usr1, NULL), CT_EINVAL);
  cr_assert_eq(ct_reactor_on_signal(r, SIGKILL, on_usr1, NULL), CT_EINVAL);
  cr_assert_eq(ct_reactor_on_signal(r, 100000, on_usr1, NULL), CT_EINVAL);
  cr_assert_eq(ct_reactor_on_signal(r, SIGUSR2, NULL, NULL), 0);
  ct_reactor_free(r);
}
