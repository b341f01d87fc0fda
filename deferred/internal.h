/* Internal declarations shared by the deferred layer's files. */
#ifndef CTWIST_DEFERRED_INTERNAL_H
#define CTWIST_DEFERRED_INTERNAL_H

#include "ctwist/deferred.h"

/* Number of (callback, errback) entries stored inside the Deferred itself;
 * the fifth entry moves the list to the heap. */
#define CT__DEFERRED_INLINE 4

/* The message of the Cancelled failure a Deferred errbacks with. */
#define CT__CANCELLED_MSG "Deferred was cancelled"

/* Replace d's canceller (helpers whose state dies before the Deferred). */
void ct__deferred_set_canceller(ct_deferred *d, ct_canceller_cb fn, void *arg);

#endif /* CTWIST_DEFERRED_INTERNAL_H */
