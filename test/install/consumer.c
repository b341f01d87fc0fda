/* A tiny program built against the installed ctwist: one timed call. */
#include <stdio.h>

#include <ctwist/ctwist.h>

static void fire(void *arg) {
  ct_reactor *r = arg;
  printf("fired at %.3f\n", ct_reactor_seconds(r));
  ct_reactor_stop(r);
}

int main(void) {
  ct_reactor *r = ct_reactor_new();
  if (r == NULL)
    return 1;
  ct_call_later(r, 0.01, fire, r);
  ct_reactor_run(r);
  ct_reactor_free(r);
  return 0;
}
