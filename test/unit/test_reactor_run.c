/* Run/stop, restart, call_when_running, shutdown triggers and phase holds,
 * iterate, and the call_soon helper of reactor/internal.h. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <unistd.h>

#include "ctwist/reactor.h"
#include "reactor/internal.h"

/* Bounded strcat for the test's trace buffers. */
static void append(char *buf, size_t size, const char *s) {
  size_t len = strlen(buf);
  snprintf(buf + len, size - len, "%s", s);
}

static ct_clock *clk;
static ct_reactor *r;

static void setup(void) {
  clk = ct_clock_new();
  r = ct_reactor_new_with_clock(clk);
  cr_assert_not_null(r);
}

static void teardown(void) {
  ct_reactor_free(r);
  ct_clock_free(clk);
}

TestSuite(run, .init = setup, .fini = teardown);

static char trace[256];
static void mark(void *arg) {
  append(trace, sizeof(trace), (const char *)arg);
}

static void stop_now(void *arg) {
  mark("S");
  cr_assert(ct_reactor_is_running(arg));
  cr_assert_eq(ct_reactor_stop(arg), 0);
  cr_assert_eq(ct_reactor_stop(arg), CT_ENOTRUNNING, "already stopping");
}

Test(run, stop_from_when_running_callback) {
  trace[0] = 0;
  cr_assert_eq(ct_reactor_call_when_running(r, mark, "a"), 0);
  cr_assert_eq(ct_reactor_call_when_running(r, stop_now, r), 0);
  cr_assert_eq(ct_reactor_call_when_running(r, mark, "b"), 0);
  cr_assert_not(ct_reactor_is_running(r));
  cr_assert_eq(ct_reactor_run(r), 0);
  cr_assert_not(ct_reactor_is_running(r));
  cr_assert_str_eq(trace, "aSb");
}

Test(run, stop_when_not_running) {
  cr_assert_eq(ct_reactor_stop(r), CT_ENOTRUNNING);
  cr_assert_eq(ct_reactor_stop(NULL), CT_EINVAL);
  cr_assert_eq(ct_reactor_run(NULL), CT_EINVAL);
  cr_assert_not(ct_reactor_is_running(NULL));
  cr_assert_eq(ct_reactor_call_when_running(r, NULL, NULL), CT_EINVAL);
  cr_assert_eq(ct_reactor_call_when_running(NULL, mark, NULL), CT_EINVAL);
  cr_assert_null(ct_reactor_hold_phase(r));
  ct_phase_hold_release(NULL);
  ct_reactor_free(NULL);
}

static void nested_run(void *arg) {
  cr_assert_eq(ct_reactor_run(arg), CT_ESTATE);
  cr_assert_eq(ct_reactor_iterate(arg), CT_ESTATE);
  ct_reactor_stop(arg);
}

Test(run, run_while_running_is_estate) {
  ct_reactor_call_when_running(r, nested_run, r);
  cr_assert_eq(ct_reactor_run(r), 0);
}

static void when_running_late(void *arg) {
  mark("L");
  ct_reactor_stop(arg);
}

static void register_late(void *arg) {
  mark("R");
  /* Already running: runs on a later turn, not now. */
  cr_assert_eq(ct_reactor_call_when_running(arg, when_running_late, arg), 0);
  mark("r");
}

Test(run, call_when_running_while_running_runs_later) {
  trace[0] = 0;
  ct_reactor_call_when_running(r, register_late, r);
  ct_reactor_run(r);
  cr_assert_str_eq(trace, "RrL");
}

Test(run, restartable) {
  for (int i = 0; i < 3; i++) {
    trace[0] = 0;
    ct_reactor_call_when_running(r, stop_now, r);
    cr_assert_eq(ct_reactor_run(r), 0);
    cr_assert_str_eq(trace, "S");
  }
}

Test(run, triggers_run_in_phase_then_registration_order) {
  trace[0] = 0;
  cr_assert_gt(ct_reactor_add_trigger(r, CT_PHASE_AFTER, mark, "A1"), 0);
  cr_assert_gt(ct_reactor_add_trigger(r, CT_PHASE_BEFORE, mark, "B1"), 0);
  cr_assert_gt(ct_reactor_add_trigger(r, CT_PHASE_DURING, mark, "D1"), 0);
  cr_assert_gt(ct_reactor_add_trigger(r, CT_PHASE_BEFORE, mark, "B2"), 0);
  long gone = ct_reactor_add_trigger(r, CT_PHASE_DURING, mark, "X");
  cr_assert_gt(ct_reactor_add_trigger(r, CT_PHASE_AFTER, mark, "A2"), 0);
  cr_assert_eq(ct_reactor_remove_trigger(r, gone), 0);
  cr_assert_eq(ct_reactor_remove_trigger(r, gone), CT_ENOTFOUND);
  ct_reactor_call_when_running(r, stop_now, r);
  ct_reactor_run(r);
  cr_assert_str_eq(trace, "SB1B2D1A1A2");
  /* Triggers stay registered: they run on every shutdown. */
  trace[0] = 0;
  ct_reactor_call_when_running(r, stop_now, r);
  ct_reactor_run(r);
  cr_assert_str_eq(trace, "SB1B2D1A1A2");
}

Test(run, trigger_bad_input) {
  cr_assert_eq(ct_reactor_add_trigger(r, (ct_phase)7, mark, NULL), CT_EINVAL);
  cr_assert_eq(ct_reactor_add_trigger(r, CT_PHASE_AFTER, NULL, NULL),
               CT_EINVAL);
  cr_assert_eq(ct_reactor_add_trigger(NULL, CT_PHASE_AFTER, mark, NULL),
               CT_EINVAL);
  cr_assert_eq(ct_reactor_remove_trigger(r, 12345), CT_ENOTFOUND);
  cr_assert_eq(ct_reactor_remove_trigger(NULL, 1), CT_EINVAL);
}

static long self_removing_id;
static void remove_self_and_next(void *arg) {
  mark("R");
  cr_assert_eq(ct_reactor_remove_trigger(arg, self_removing_id), 0);
  cr_assert_eq(ct_reactor_remove_trigger(arg, self_removing_id + 1), 0);
}

Test(run, trigger_removes_itself_and_a_later_one) {
  trace[0] = 0;
  self_removing_id =
      ct_reactor_add_trigger(r, CT_PHASE_BEFORE, remove_self_and_next, r);
  ct_reactor_add_trigger(r, CT_PHASE_BEFORE, mark, "X");
  ct_reactor_add_trigger(r, CT_PHASE_BEFORE, mark, "b");
  ct_reactor_call_when_running(r, stop_now, r);
  ct_reactor_run(r);
  cr_assert_str_eq(trace, "SRb");
  trace[0] = 0;
  ct_reactor_call_when_running(r, stop_now, r);
  ct_reactor_run(r);
  cr_assert_str_eq(trace, "Sb");
}

/* A BEFORE trigger takes a hold and releases it from a call made from
 * "another thread" (here the same one, through the thread queue), twice
 * over two loop turns: DURING must wait for it. */
static ct_phase_hold *held;
static int release_turns;

static void release_later(void *arg) {
  if (++release_turns < 3) {
    mark("w");
    ct_reactor_call_from_thread(arg, release_later, arg);
    return;
  }
  mark("!");
  ct_phase_hold_release(held);
}

static void take_hold(void *arg) {
  mark("H");
  held = ct_reactor_hold_phase(arg);
  cr_assert_not_null(held);
  release_turns = 0;
  ct_reactor_call_from_thread(arg, release_later, arg);
}

static void quick_hold(void *arg) {
  mark("q");
  /* Taken and released in the same trigger: no wait. */
  ct_phase_hold_release(ct_reactor_hold_phase(arg));
}

Test(run, phase_holds_delay_the_next_phase) {
  trace[0] = 0;
  ct_reactor_add_trigger(r, CT_PHASE_BEFORE, take_hold, r);
  ct_reactor_add_trigger(r, CT_PHASE_BEFORE, quick_hold, r);
  ct_reactor_add_trigger(r, CT_PHASE_BEFORE, mark, "b");
  ct_reactor_add_trigger(r, CT_PHASE_DURING, mark, "D");
  ct_reactor_add_trigger(r, CT_PHASE_AFTER, mark, "A");
  ct_reactor_call_when_running(r, stop_now, r);
  ct_reactor_run(r);
  cr_assert_str_eq(trace, "SHqbww!DA");
  cr_assert_null(ct_reactor_hold_phase(r), "no phase after run returns");
}

static void hold_in_after(void *arg) {
  mark("a");
  held = ct_reactor_hold_phase(arg);
  release_turns = 2;
  ct_reactor_call_from_thread(arg, release_later, arg);
}

Test(run, hold_in_after_phase_delays_run_return) {
  trace[0] = 0;
  ct_reactor_add_trigger(r, CT_PHASE_AFTER, hold_in_after, r);
  ct_reactor_call_when_running(r, stop_now, r);
  ct_reactor_run(r);
  cr_assert_str_eq(trace, "Sa!");
}

/* The window between the release of a phase's last hold and the phase's
 * end (queued for the next turn): a hold taken there must still hold the
 * phase, and must not make the shutdown skip a phase when released. */
static void swap_hold(void *arg) {
  mark("s");
  ct_phase_hold_release(held);       /* the last hold: the phase may end... */
  held = ct_reactor_hold_phase(arg); /* ...but a new one is taken first */
  cr_assert_not_null(held);
  release_turns = 0;
  ct_reactor_call_from_thread(arg, release_later, arg);
}

static void hold_then_swap(void *arg) {
  mark("H");
  held = ct_reactor_hold_phase(arg);
  cr_assert_not_null(held);
  ct_reactor_call_from_thread(arg, swap_hold, arg);
}

/* Stop with `before` as the BEFORE trigger and marks for the later
 * phases; the trace is left in `trace`. */
static void stop_with_before(ct_call_cb before) {
  trace[0] = 0;
  ct_reactor_add_trigger(r, CT_PHASE_BEFORE, before, r);
  ct_reactor_add_trigger(r, CT_PHASE_DURING, mark, "D");
  ct_reactor_add_trigger(r, CT_PHASE_AFTER, mark, "A");
  ct_reactor_call_when_running(r, stop_now, r);
  ct_reactor_run(r);
}

Test(run, hold_taken_after_last_release_still_holds) {
  stop_with_before(hold_then_swap);
  cr_assert_str_eq(trace, "SHsww!DA");
}

static void release_take_release(void *arg) {
  mark("x");
  ct_phase_hold_release(held);
  ct_phase_hold *again = ct_reactor_hold_phase(arg);
  cr_assert_not_null(again);
  ct_phase_hold_release(again);
}

static void hold_then_release_twice(void *arg) {
  mark("H");
  held = ct_reactor_hold_phase(arg);
  cr_assert_not_null(held);
  ct_reactor_call_from_thread(arg, release_take_release, arg);
}

Test(run, second_last_release_in_one_turn_skips_no_phase) {
  stop_with_before(hold_then_release_twice);
  cr_assert_str_eq(trace, "SHxDA");
}

static void soon_chain(void *arg) {
  int *n = arg;
  if (++*n < 5)
    ct__reactor_call_soon(r, soon_chain, n);
  else
    ct_reactor_stop(r);
}

Test(run, call_soon_runs_on_later_turns_under_fake_clock) {
  int n = 0;
  cr_assert_eq(ct__reactor_call_soon(r, soon_chain, &n), 0);
  cr_assert_eq(n, 0, "never synchronous");
  ct_reactor_run(r);
  cr_assert_eq(n, 5);
  cr_assert_eq(ct__reactor_call_soon(r, NULL, NULL), CT_EINVAL);
}

static void count_up(void *arg) {
  ++*(int *)arg;
}

Test(run, iterate_runs_ready_work_once) {
  int n = 0;
  for (int i = 0; i < 100; i++) /* also grows the ring */
    ct__reactor_call_soon(r, count_up, &n);
  cr_assert_eq(ct_reactor_iterate(r), 0);
  cr_assert_eq(n, 100);
  cr_assert_eq(ct_reactor_iterate(NULL), CT_EINVAL);
  cr_assert_not_null(ct_reactor_event_base(r));
  cr_assert_eq(ct__reactor_base(r), ct_reactor_event_base(r));
  cr_assert(ct__reactor_has_fake_clock(r));
}

/* Timers on a real clock fire from ct_reactor_run(). */
static void real_stop(void *arg) {
  ct_reactor_stop(arg);
}

Test(run, real_clock_timers_fire_in_order) {
  ct_reactor *rr = ct_reactor_new();
  trace[0] = 0;
  ct_call_later(rr, 0.02, mark, "c");
  ct_call_later(rr, 0.01, mark, "b");
  ct_call_later(rr, 0, mark, "a");
  ct_call_later(rr, 0.01, mark, "B");
  ct_delayed_call *x = ct_call_later(rr, 0.005, mark, "X");
  ct_call_later(rr, 0.03, real_stop, rr);
  ct_delayed_call_cancel(x);
  ct_reactor_run(rr);
  cr_assert_str_eq(trace, "abBc");
  cr_assert_eq(ct_reactor_pending_calls(rr), 0);
  cr_assert_not(ct__reactor_has_fake_clock(rr));
  ct_reactor_free(rr);
}

/* Stop from inside a delayed call fired by the fake clock while running. */
static void timer_stops(void *arg) {
  mark("T");
  cr_assert_eq(ct_reactor_stop(arg), 0);
}

static void advance_clock(void *arg) {
  (void)arg;
  cr_assert_eq(ct_clock_advance(clk, 1), 1);
}

Test(run, stop_from_inside_a_delayed_call) {
  trace[0] = 0;
  ct_call_later(r, 1, timer_stops, r);
  ct_reactor_add_trigger(r, CT_PHASE_DURING, mark, "D");
  ct_reactor_call_when_running(r, advance_clock, NULL);
  cr_assert_eq(ct_reactor_run(r), 0);
  cr_assert_str_eq(trace, "TD");
  cr_assert_eq(ct_reactor_pending_calls(r), 0);
}

/* On the real clock, a call re-arming itself at 0 must not starve I/O:
 * already-due calls scheduled by a batch wait for the next turn. */
static ct_delayed_call *spinner;
static long spins;
static void spin(void *arg) {
  if (++spins == 100)
    cr_assert_eq(write(*(int *)arg, "x", 1), 1);
  ct_delayed_call_reset(spinner, 0);
}

static void readable(ct_reactor *rr, int fd, int events, void *arg) {
  (void)events;
  (void)arg;
  char c;
  cr_assert_eq(read(fd, &c, 1), 1);
  ct_delayed_call_cancel(spinner);
  ct_reactor_remove_reader(rr, fd);
  ct_reactor_stop(rr);
}

Test(run, zero_delay_rearm_does_not_starve_io) {
  ct_reactor *rr = ct_reactor_new();
  int p[2];
  cr_assert_eq(pipe(p), 0);
  spins = 0;
  spinner = ct_call_later(rr, 0, spin, &p[1]);
  ct_reactor_add_reader(rr, p[0], readable, NULL);
  cr_assert_eq(ct_reactor_run(rr), 0);
  cr_assert_geq(spins, 100);
  cr_assert_eq(ct_reactor_pending_calls(rr), 0);
  ct_reactor_free(rr);
  close(p[0]);
  close(p[1]);
}

static int free_errors;
static void count_errors(const ct_log_event *ev, void *arg) {
  (void)arg;
  if (ev->level >= CT_LOG_ERROR && strcmp(ev->module, "reactor") == 0)
    free_errors++;
}

static void free_while_running(void *arg) {
  ct_reactor_free(arg); /* refused: logged, nothing freed */
  ct_reactor_stop(arg);
}

Test(run, free_while_running_is_refused) {
  ct_log_observer *o = ct_log_add_observer(CT_LOG_DEBUG, count_errors, NULL);
  ct_reactor_call_when_running(r, free_while_running, r);
  cr_assert_eq(ct_reactor_run(r), 0);
  ct_log_remove_observer(o);
  cr_assert_eq(free_errors, 1);
}

/* ct_reactor_iterate_wait(): returns once something ran, or when its bound
 * passes with nothing ready; refuses to nest like ct_reactor_iterate(). */

static void *call_from_thread_main(void *arg) {
  ct_reactor_call_from_thread(arg, mark, "T");
  return NULL;
}

static void nested_wait(void *arg) {
  cr_assert_eq(ct_reactor_iterate_wait(arg, 0.001), CT_ESTATE);
  mark("N");
}

Test(run, iterate_wait_returns_when_work_arrives) {
  trace[0] = '\0';
  /* Nothing ready: the bound ends the wait, nothing ran. */
  cr_assert_eq(ct_reactor_iterate_wait(r, 0.001), 0);
  cr_assert_str_eq(trace, "");
  /* A call from another thread wakes the wait (a generous bound: the
   * test waits on the event, not on time). */
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, call_from_thread_main, r), 0);
  for (int i = 0; i < 1000 && trace[0] == '\0'; i++)
    cr_assert_eq(ct_reactor_iterate_wait(r, 10), 0);
  pthread_join(th, NULL);
  cr_assert_str_eq(trace, "T");
  /* Loop turns never nest. */
  ct__reactor_call_soon(r, nested_wait, r);
  cr_assert_eq(ct_reactor_iterate_wait(r, 0), 0);
  cr_assert_str_eq(trace, "TN");
  cr_assert_eq(ct_reactor_iterate_wait(NULL, 1), CT_EINVAL);
}
