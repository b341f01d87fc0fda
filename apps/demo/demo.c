/*
 * ct-demo: timed work on the reactor, the way a Twisted user would write it.
 *
 * Three tasks are scheduled out of order with ct_call_later(); they fire in
 * deadline order.  A LoopingCall ticks every 50 ms and stops itself after
 * eight ticks, and its completion callback stops the reactor.
 */
#include <stdio.h>

#include "ctwist/ctwist.h"

struct demo {
  ct_reactor *reactor;
  double start;
};

struct named_task {
  struct demo *demo;
  const char *name;
};

static void run_task(void *arg) {
  struct named_task *t = arg;
  printf("[%6.3f s] callLater task '%s' fired\n",
         ct_reactor_seconds(t->demo->reactor) - t->demo->start, t->name);
}

static int tick(ct_looping_call *lc, uint64_t count, void *arg) {
  struct demo *d = arg;
  printf("[%6.3f s] LoopingCall tick %llu (intervals elapsed: %llu)\n",
         ct_reactor_seconds(d->reactor) - d->start,
         (unsigned long long)ct_looping_call_calls(lc),
         (unsigned long long)count);
  if (ct_looping_call_calls(lc) >= 8)
    ct_looping_call_stop(lc);
  return 0;
}

static void loop_done(ct_looping_call *lc, int err, void *arg) {
  struct demo *d = arg;
  printf("[%6.3f s] LoopingCall finished (%s); stopping the reactor\n",
         ct_reactor_seconds(d->reactor) - d->start,
         err == 0 ? "stopped" : ct_strerror(err));
  ct_reactor_stop(d->reactor);
}

static void on_shutdown(void *arg) {
  struct demo *d = arg;
  printf("[%6.3f s] shutdown trigger ran\n",
         ct_reactor_seconds(d->reactor) - d->start);
}

int main(void) {
  struct demo d;
  d.reactor = ct_reactor_new();
  if (d.reactor == NULL) {
    fprintf(stderr, "ct-demo: cannot create the reactor\n");
    return 1;
  }
  d.start = ct_reactor_seconds(d.reactor);

  struct named_task tasks[] = {
      {&d, "third (0.30 s)"}, {&d, "first (0.10 s)"}, {&d, "second (0.20 s)"}};
  ct_call_later(d.reactor, 0.30, run_task, &tasks[0]);
  ct_call_later(d.reactor, 0.10, run_task, &tasks[1]);
  ct_call_later(d.reactor, 0.20, run_task, &tasks[2]);

  ct_looping_call *lc = ct_looping_call_new(d.reactor, tick, &d);
  ct_looping_call_on_done(lc, loop_done, &d);
  ct_looping_call_start(lc, 0.05, 0);
  ct_reactor_add_trigger(d.reactor, CT_PHASE_BEFORE, on_shutdown, &d);

  ct_reactor_run(d.reactor);
  ct_looping_call_free(lc);
  ct_reactor_free(d.reactor);
  printf("demo: timed tasks done\n");
  return 0;
}
