/*
 * tracker.c: a factory wrapper that keeps the list of live connections, so
 * that a shutdown can close them (flushing what they still have to send)
 * and wait until the last one is gone before the reactor goes away.
 *
 * Each connection gets a thin wrapper protocol that forwards every
 * callback to the protocol the wrapped factory built.  The wrapped
 * protocol sees the real transport, so it cannot tell the difference; the
 * wrapper copies its flags so that back-pressure opt-ins still apply.
 */
#include <stdlib.h>

#include "tracker.h"

typedef struct tracked {
  ct_protocol base; /* the wrapper the transport carries */
  ct_protocol *inner;
  ctd_tracker *tracker;
  ctd_link link;
} tracked;

static ctd_tracker *tracker_of(ct_factory *f) {
  return ct_container_of(f, ctd_tracker, factory);
}

static void t_made(ct_protocol *p, ct_transport *t) {
  tracked *c = (tracked *)p;
  c->inner->transport = t;
  if (c->inner->ops->connection_made != NULL)
    c->inner->ops->connection_made(c->inner, t);
}

static void t_data(ct_protocol *p, const char *data, size_t len) {
  tracked *c = (tracked *)p;
  if (c->inner->ops->data_received != NULL)
    c->inner->ops->data_received(c->inner, data, len);
}

static int t_eof(ct_protocol *p) {
  tracked *c = (tracked *)p;
  if (c->inner->ops->eof_received != NULL)
    return c->inner->ops->eof_received(c->inner);
  return 0;
}

static void t_lost(ct_protocol *p, const ct_failure *reason) {
  tracked *c = (tracked *)p;
  if (c->inner->ops->connection_lost != NULL)
    c->inner->ops->connection_lost(c->inner, reason);
  c->inner->transport = NULL;
}

static void t_free(ct_protocol *p) {
  tracked *c = (tracked *)p;
  ctd_tracker *tr = c->tracker;
  ct_protocol_release(c->inner);
  c->link.prev->next = c->link.next;
  c->link.next->prev = c->link.prev;
  free(c);
  tr->live--;
  if (tr->live == 0 && tr->on_empty != NULL)
    tr->on_empty(tr, tr->arg);
}

static const ct_protocol_ops tracked_ops = {
    .name = "ctwistd-tracked",
    .connection_made = t_made,
    .data_received = t_data,
    .eof_received = t_eof,
    .connection_lost = t_lost,
    .free = t_free,
};

static ct_protocol *t_build(ct_factory *f, const ct_address *peer) {
  ctd_tracker *tr = tracker_of(f);
  tracked *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->inner = ct_factory_build(tr->wrapped, peer);
  if (c->inner == NULL) { /* refused (limits) or out of memory */
    free(c);
    return NULL;
  }
  ct_protocol_init(&c->base, &tracked_ops);
  c->base.flags = c->inner->flags | c->inner->ops->flags;
  c->tracker = tr;
  c->link.next = tr->head.next;
  c->link.prev = &tr->head;
  tr->head.next->prev = &c->link;
  tr->head.next = &c->link;
  tr->live++;
  tr->total++;
  return &c->base;
}

/* The wrapped factory's start/stop follow the tracker's. */
static void t_start(ct_factory *f) {
  ct_factory_do_start(tracker_of(f)->wrapped);
}
static void t_stop(ct_factory *f) {
  ct_factory_do_stop(tracker_of(f)->wrapped);
}

static const ct_factory_ops tracker_factory_ops = {
    .name = "ctwistd-tracker",
    .build_protocol = t_build,
    .start = t_start,
    .stop = t_stop,
};

void ctd_tracker_init(ctd_tracker *tr, ct_factory *wrapped) {
  ct_factory_init(&tr->factory, &tracker_factory_ops, NULL, 0, NULL);
  tr->factory.write_high_water = wrapped->write_high_water;
  tr->factory.write_low_water = wrapped->write_low_water;
  tr->wrapped = wrapped;
  tr->head.prev = tr->head.next = &tr->head;
  tr->live = 0;
  tr->total = 0;
  tr->on_empty = NULL;
  tr->arg = NULL;
}

unsigned ctd_tracker_close_all(ctd_tracker *tr, int abort_now) {
  unsigned n = 0;
  /* Closing never calls connection_lost synchronously (protocol.h), so
   * the list does not change under the loop; keep `next` anyway. */
  for (ctd_link *l = tr->head.next, *next; l != &tr->head; l = next) {
    next = l->next;
    tracked *c = ct_container_of(l, tracked, link);
    if (c->base.transport == NULL)
      continue; /* not connected yet, or already gone */
    if (abort_now)
      ct_transport_abort(c->base.transport);
    else
      ct_transport_lose_connection(c->base.transport);
    n++;
  }
  return n;
}
