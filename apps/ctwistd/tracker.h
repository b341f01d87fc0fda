/*
 * tracker.h: ctwistd's connection tracker, a factory wrapper that keeps
 * the live connections of a service so that a shutdown can close them.
 */
#ifndef CTWISTD_TRACKER_H
#define CTWISTD_TRACKER_H

#include "ctwist/ctwist.h"

typedef struct ctd_link {
  struct ctd_link *prev, *next;
} ctd_link;

typedef struct ctd_tracker ctd_tracker;

/* Called when the last live connection has been released. */
typedef void (*ctd_empty_cb)(ctd_tracker *tr, void *arg);

struct ctd_tracker {
  ct_factory factory;  /* listen with this one */
  ct_factory *wrapped; /* builds the real protocols (borrowed) */
  ctd_link head;       /* live connections */
  unsigned live;       /* built and not yet released */
  unsigned long total; /* built since start */
  ctd_empty_cb on_empty;
  void *arg;
};

/* Initialise `tr` around `wrapped` (which must outlive every connection). */
void ctd_tracker_init(ctd_tracker *tr, ct_factory *wrapped);

/* Close every live connection: lose_connection (flush, then close), or
 * abort when `abort_now` is non-zero.  Returns the number asked. */
unsigned ctd_tracker_close_all(ctd_tracker *tr, int abort_now);

#endif /* CTWISTD_TRACKER_H */
