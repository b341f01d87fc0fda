/*
 * The reactor's private layout, shared by the files of reactor/ only.
 * Other layers use reactor/internal.h.
 */
#ifndef CT_REACTOR_IMPL_H
#define CT_REACTOR_IMPL_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "reactor/internal.h"

/* Under AddressSanitizer, delayed calls are malloc'd one by one so that a
 * use after free of a handle is caught; otherwise they come from a slab. */
#if defined(__SANITIZE_ADDRESS__)
#define CT_CALL_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CT_CALL_MALLOC 1
#endif
#endif

/* Delayed call states. */
enum {
  CT__CALL_FREE = 0,
  CT__CALL_PENDING = 1,
  CT__CALL_RUNNING = 2,
  CT__CALL_CALLED = 3,
  CT__CALL_CANCELLED = 4
};

/*
 * A delayed call: 40 bytes.  The heap keeps (deadline, seq, call) entries so
 * that comparisons never touch the call itself; the call remembers its slot
 * so that cancel and reset are O(log n).
 */
struct ct_delayed_call {
  ct_call_cb fn;
  union {
    void *arg;
    struct ct_delayed_call *next_free; /* on the slab's free list */
  } u;
  ct_reactor *r;
  int64_t deadline;     /* ns on the reactor clock */
  uint32_t heap_idx;    /* slot in r->heap while pending */
  uint32_t refs : 24;   /* ct_delayed_call_ref() count */
  uint32_t state : 4;   /* CT__CALL_* */
  uint32_t running : 1; /* its callback is on the stack */
};

typedef struct ct__heap_entry {
  int64_t deadline;
  uint64_t seq; /* scheduling order, for FIFO among equal deadlines */
  struct ct_delayed_call *call;
} ct__heap_entry;

typedef struct ct__thunk {
  ct_call_cb fn;
  void *arg;
} ct__thunk;

typedef struct ct__trigger {
  long id;
  int phase;
  ct_call_cb fn; /* NULL: removed while the trigger list was being walked */
  void *arg;
} ct__trigger;

struct ct__call_chunk;
struct ct__fd_watch;
struct ct__sig_watch;

struct ct_clock {
  int64_t now_ns;
  ct_reactor *r; /* the reactor it drives, or NULL */
};

struct ct_phase_hold {
  ct_reactor *r;
  unsigned gen; /* r->hold_gen when taken */
};

struct ct_reactor {
  struct event_base *base;
  ct_clock *clock; /* NULL: the real monotonic clock */

  /* Timers: a 4-ary min-heap of (deadline, seq) and one libevent timer. */
  ct__heap_entry *heap;
  size_t heap_len, heap_cap;
  uint64_t seq;
  struct ct_delayed_call *free_calls;
  struct ct__call_chunk *chunks, *chunks_tail;
  struct ct__call_chunk *bump_chunk; /* next never-used slot: chunk, index */
  size_t bump_idx;
  size_t live_calls; /* allocated call objects */
  struct event *timer_ev;
  int64_t armed_deadline;
  int timer_armed;
  int firing;

  /* call_soon: a ring of thunks run by one zero-timeout event. */
  ct__ring soon;
  struct event *soon_ev;
  int soon_scheduled;
  int soon_draining;

  /* Run state and shutdown. */
  int running;
  int iterating; /* inside ct_reactor_iterate() */
  int stopping;
  int phase;        /* current shutdown phase, -1 when none */
  int phase_active; /* holds may be taken */
  int phase_triggers_done;
  int phase_finish_queued; /* phase_finish() waits for the next turn */
  int hurried;             /* ct_reactor_hurry(): holds no longer count */
  unsigned hold_gen;       /* holds of an older generation are void */
  size_t holds;
  ct__trigger *triggers;
  size_t ntriggers, triggers_cap;
  long next_trigger_id;
  int triggers_walking;
  ct__thunk *when_running;
  size_t nwhen_running, when_running_cap;

  /* Descriptor watchers, indexed by fd. */
  struct ct__fd_watch **readers, **writers;
  size_t fd_cap;

  /* Signals, indexed by signal number. */
  struct ct__sig_watch *sigs[NSIG];

  /* Calls from other threads: a queue under thread_mu, and an eventfd
   * (wake_fd) that thread_ev watches. */
  pthread_mutex_t thread_mu;
  ct__thunk *tq;
  size_t tq_len, tq_cap;
  int tq_wake; /* a wake-up is written and the queue not yet taken */
  int closing;
  int wake_fd;
  struct event *thread_ev;

  /* The read buffer shared by the stream transports (CT__READ_BUFFER_SIZE
   * bytes, allocated on first use). */
  char *read_buf;

  /* The gather buffer of the dispatching stream transport, and the nodes
   * to flush before the next poll (a circular list around flush_head),
   * run by flush_ev, an event that is only ever activated by hand. */
  ct__gather gather;
  ct__flush_node flush_head;
  struct event *flush_ev;
  int flush_active;
  /* Rate-limited logging: per call site windows (log_limit.c), or NULL. */
  struct ct__log_limits *log_limits;
  /* Services attached by other modules (resolver, thread pool, child
   * reaper): see ct__reactor_service_add() in reactor/internal.h. */
  struct ct__service *services;
  size_t nservices;
};

/* timers.c */
void ct__timers_free(ct_reactor *r);
void ct__timer_event_cb(evutil_socket_t fd, short what, void *arg);

/* log_limit.c: reports open counts, then frees the table. */
void ct__log_limits_free(ct_reactor *r);
/* service.c */
void ct__services_close(ct_reactor *r);
void ct__services_free(ct_reactor *r);

/* io.c */
void ct__io_free(ct_reactor *r);
void ct__signals_install_defaults(ct_reactor *r);
void ct__signals_remove_defaults(ct_reactor *r);

#endif /* CT_REACTOR_IMPL_H */
