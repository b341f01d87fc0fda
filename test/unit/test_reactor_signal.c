/* Signals: a user handler through raise(SIGUSR1), the default graceful
 * SIGTERM stop on a real-clock reactor (triggers run), replacing and
 * removing handlers, bad input. */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>

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

static void my_pipe_handler(int sig) {
  (void)sig;
}

/* A library leaves SIGPIPE's disposition to the application (writes use
 * MSG_NOSIGNAL instead; test_tcp_sigpipe.c checks that side). */
Test(signal, sigpipe_disposition_is_left_alone) {
  struct sigaction sa;
  signal(SIGPIPE, SIG_DFL);
  ct_reactor *r = ct_reactor_new();
  sigaction(SIGPIPE, NULL, &sa);
  cr_assert(sa.sa_handler == SIG_DFL, "the default stays the default");
  ct_reactor_free(r);
  signal(SIGPIPE, my_pipe_handler);
  r = ct_reactor_new();
  sigaction(SIGPIPE, NULL, &sa);
  cr_assert(sa.sa_handler == my_pipe_handler, "a handler stays");
  ct_reactor_free(r);
  signal(SIGPIPE, SIG_DFL);
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

/* A second SIGTERM during a graceful stop hurries it: the ABORT triggers
 * run, the hold the BEFORE phase waits on (never released here) no longer
 * counts, the later phases still run, and run returns. */
static char hurry_trace[32];
static ct_phase_hold *forever;

static void hurry_mark(void *arg) {
  size_t n = strlen(hurry_trace);
  if (n + 1 < sizeof hurry_trace) {
    hurry_trace[n] = *(const char *)arg;
    hurry_trace[n + 1] = '\0';
  }
}

static void hold_forever_then_term(void *arg) {
  hurry_mark("B");
  forever = ct_reactor_hold_phase(arg);
  cr_assert_not_null(forever);
  raise(SIGTERM); /* the second signal: the stop is in progress */
}

Test(signal, second_sigterm_hurries_the_stop) {
  ct_reactor *r = ct_reactor_new();
  hurry_trace[0] = '\0';
  ct_reactor_add_trigger(r, CT_PHASE_BEFORE, hold_forever_then_term, r);
  ct_reactor_add_trigger(r, CT_PHASE_ABORT, hurry_mark, "X");
  ct_reactor_add_trigger(r, CT_PHASE_DURING, hurry_mark, "D");
  ct_reactor_add_trigger(r, CT_PHASE_AFTER, hurry_mark, "A");
  ct_reactor_call_when_running(r, raise_term, NULL);
  cr_assert_eq(ct_reactor_run(r), 0);
  cr_assert_str_eq(hurry_trace, "BXDA");
  cr_assert_not(ct_reactor_is_hurried(r), "reset when run returns");
  ct_phase_hold_release(forever); /* void now: only freed */
  /* A normal stop afterwards waits for holds again (no ABORT). */
  hurry_trace[0] = '\0';
  cr_assert_eq(ct_reactor_remove_trigger(r, 1), 0);
  ct_reactor_call_when_running(r, raise_term, NULL);
  cr_assert_eq(ct_reactor_run(r), 0);
  cr_assert_str_eq(hurry_trace, "DA");
  ct_reactor_free(r);
}

static void stop_then_hurry(void *arg) {
  ct_reactor *r = arg;
  cr_assert_eq(ct_reactor_hurry(r), CT_ENOTRUNNING, "not stopping yet");
  cr_assert_eq(ct_reactor_stop(r), 0);
  cr_assert_eq(ct_reactor_hurry(r), 0);
  cr_assert_eq(ct_reactor_hurry(r), 0, "twice is fine");
  cr_assert(ct_reactor_is_hurried(r));
}

static void hold_refused(void *arg) {
  hurry_mark("B");
  cr_assert_null(ct_reactor_hold_phase(arg), "no holds once hurried");
}

Test(signal, hurry_api_on_a_fake_clock) {
  ct_clock *clk = ct_clock_new();
  ct_reactor *r = ct_reactor_new_with_clock(clk);
  hurry_trace[0] = '\0';
  cr_assert_eq(ct_reactor_hurry(NULL), CT_EINVAL);
  cr_assert_eq(ct_reactor_hurry(r), CT_ENOTRUNNING);
  ct_reactor_add_trigger(r, CT_PHASE_BEFORE, hold_refused, r);
  ct_reactor_add_trigger(r, CT_PHASE_ABORT, hurry_mark, "X");
  ct_reactor_add_trigger(r, CT_PHASE_AFTER, hurry_mark, "A");
  ct_reactor_call_when_running(r, stop_then_hurry, r);
  cr_assert_eq(ct_reactor_run(r), 0);
  cr_assert_str_eq(hurry_trace, "XBA");
  ct_reactor_free(r);
  ct_clock_free(clk);
}
