/* The Deferred core: the callback list, the trampoline that runs chains of
 * Deferreds without recursion, pause/unpause, cancellation and lifetime.
 *
 * The design follows Twisted's Deferred._runCallbacks after #4593: a
 * callback that returns an unfired Deferred does not recurse into it;
 * instead the outer Deferred appends a "continuation" entry to the inner
 * one and stops.  When the inner Deferred reaches that entry, it hands its
 * result to the outer one and pushes the outer one on an explicit stack
 * (an intrusive list through `stack_next`), and the same loop carries on
 * with the outer chain.  So neither a long chain nor deep nesting grows the
 * C stack. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/deferred.h"
#include "ctwist/log.h"
#include "deferred/internal.h"

typedef void (*gen_fn)(void);

/* A callback entry is three words.  Plain (callback, errback) pairs -- the
 * hot case -- use one entry; `eb` is then NULL or a real errback.  Other
 * kinds put a marker (the address of one of these objects, never a
 * function) in `eb`:
 * - BOTH:  cb is a ct_both_cb;
 * - CONT:  arg is the outer Deferred waiting on this one (weak);
 * - CHAIN: arg is a Deferred to fire with the result (holds a reference);
 * - NOP:   a continuation whose outer Deferred went away;
 * - FULL:  an entry with a drop function, spread over two slots: the
 *          second holds {drop, errback or the BOTH marker, NULL}.
 * Keeping entries at 24 bytes matters: a 1,000,000-callback chain is
 * 24 MB of entries, and the four inline ones make up most of a Deferred. */
static const char marks[5];
enum { K_BOTH, K_CONT, K_CHAIN, K_NOP, K_FULL };
#define MARK(k) ((gen_fn)(uintptr_t)&marks[k])
#define M_BOTH MARK(K_BOTH)
#define M_CONT MARK(K_CONT)
#define M_CHAIN MARK(K_CHAIN)
#define M_NOP MARK(K_NOP)
#define M_FULL MARK(K_FULL)
/* The marker index of `eb`, or -1 for a real errback (or NULL): one
 * comparison on the hot path. */
static inline int mark_kind(gen_fn eb) {
  uintptr_t k = (uintptr_t)eb - (uintptr_t)marks;
  return k < sizeof(marks) ? (int)k : -1;
}

typedef struct entry {
  gen_fn cb;
  gen_fn eb;
  void *arg;
} entry;

struct ct_deferred {
  entry *cbs;     /* inline_cbs or a heap array */
  uint32_t head;  /* first entry not yet run */
  uint32_t count; /* entries in use: [head, count) are pending */
  uint32_t cap;
  uint32_t refs;
  uint32_t paused;  /* user pauses */
  uint8_t called;   /* callback/errback was called */
  uint8_t running;  /* on the trampoline's stack */
  uint8_t suppress; /* cancelled without canceller: eat one late fire */
  ct_value value;
  ct_failure *failure;     /* the result is a failure when non-NULL */
  ct_deferred *waiting_on; /* inner Deferred we wait for (holds a ref) */
  ct_deferred *stack_next; /* trampoline stack / free work list */
  ct_canceller_cb canceller;
  void *cancel_arg;
  const char *file;
  int line;
  entry inline_cbs[CT__DEFERRED_INLINE];
};

/* ------------------------------------------------------------- lifetime */

/* Deferreds alive in the process.  Relaxed atomics: only the total
 * matters, and Deferreds may be made and freed on different threads. */
static atomic_long live_deferreds;

long ct_deferred_live(void) {
  return atomic_load_explicit(&live_deferreds, memory_order_relaxed);
}

ct_deferred *ct_deferred_new_at(const char *file, int line,
                                ct_canceller_cb canceller, void *arg) {
  ct_deferred *d = malloc(sizeof(*d));
  if (d == NULL)
    return NULL;
  atomic_fetch_add_explicit(&live_deferreds, 1, memory_order_relaxed);
  d->cbs = d->inline_cbs;
  d->head = 0;
  d->count = 0;
  d->cap = CT__DEFERRED_INLINE;
  d->refs = 1;
  d->paused = 0;
  d->called = 0;
  d->running = 0;
  d->suppress = 0;
  d->value = CT_NONE;
  d->failure = NULL;
  d->waiting_on = NULL;
  d->stack_next = NULL;
  d->canceller = canceller;
  d->cancel_arg = arg;
  d->file = file;
  d->line = line;
  return d;
}

ct_deferred *ct_deferred_ref(ct_deferred *d) {
  if (d != NULL)
    d->refs++;
  return d;
}

/* Forget the continuation entry `outer` left in `inner` (outer is going
 * away while it waits). */
static void drop_continuation(ct_deferred *inner, ct_deferred *outer) {
  for (uint32_t i = inner->head; i < inner->count; i++) {
    entry *e = &inner->cbs[i];
    if (e->eb == M_CONT && e->arg == outer) {
      e->eb = M_NOP;
      e->arg = NULL;
      return;
    }
  }
}

static void log_unhandled(ct_deferred *d) {
  char what[256];
  const char *file = d->file != NULL ? d->file : "?";
  const char *slash = strrchr(file, '/');
  if (slash != NULL)
    file = slash + 1;
  snprintf(what, sizeof(what), "Unhandled error in Deferred (created at %s:%d)",
           file, d->line);
  ct_log_failure(CT_LOG_ERROR, "deferred", what, d->failure);
}

/* Release everything `d` holds.  Deferreds whose last reference goes as a
 * consequence are appended to the work list *list instead of being freed
 * recursively (an abandoned nest of 100,000 waiting Deferreds must not
 * recurse). */
static void destroy_one(ct_deferred *d, ct_deferred **list) {
  if (d->waiting_on != NULL) {
    ct_deferred *inner = d->waiting_on;
    d->waiting_on = NULL;
    drop_continuation(inner, d);
    if (--inner->refs == 0) {
      inner->stack_next = *list;
      *list = inner;
    }
  }
  /* Pending entries are discarded unrun.  Their drop functions are user
   * code and may unref other Deferreds (that nests, but only as deep as the
   * user's own data structures). */
  while (d->head < d->count) {
    entry e = d->cbs[d->head++];
    if (e.eb == M_CHAIN) {
      ct_deferred *other = e.arg;
      if (--other->refs == 0) {
        other->stack_next = *list;
        *list = other;
      }
    } else if (e.eb == M_FULL) {
      ct_free_cb drop = (ct_free_cb)d->cbs[d->head++].cb;
      if (drop != NULL)
        drop(e.arg);
    }
  }
  if (d->failure != NULL) {
    log_unhandled(d);
    ct_failure_free(d->failure);
    d->failure = NULL;
  } else {
    ct_value_free(d->value);
  }
  if (d->cbs != d->inline_cbs)
    free(d->cbs);
  free(d);
  atomic_fetch_sub_explicit(&live_deferreds, 1, memory_order_relaxed);
}

void ct_deferred_unref(ct_deferred *d) {
  if (d == NULL || --d->refs > 0)
    return;
  ct_deferred *list = d;
  d->stack_next = NULL;
  while (list != NULL) {
    ct_deferred *x = list;
    list = x->stack_next;
    destroy_one(x, &list);
  }
}

/* ---------------------------------------------------------- entries */

/* Make room for `need` more entries. */
static int grow(ct_deferred *d, uint32_t need) {
  if (d->head > 0) {
    /* Entries before head have run: slide the pending ones down. */
    uint32_t n = d->count - d->head;
    memmove(d->cbs, d->cbs + d->head, n * sizeof(entry));
    d->head = 0;
    d->count = n;
    if (n + need <= d->cap)
      return 0;
  }
  uint32_t cap = d->cap;
  while (cap < d->count + need) {
    if (cap > UINT32_MAX / 2)
      return CT_ENOMEM;
    cap *= 2;
  }
  entry *cbs;
  if (d->cbs == d->inline_cbs) {
    cbs = malloc(cap * sizeof(entry));
    if (cbs != NULL)
      memcpy(cbs, d->inline_cbs, d->count * sizeof(entry));
  } else {
    cbs = realloc(d->cbs, cap * sizeof(entry));
  }
  if (cbs == NULL)
    return CT_ENOMEM;
  d->cbs = cbs;
  d->cap = cap;
  return 0;
}

static inline int append(ct_deferred *d, gen_fn cb, gen_fn eb, void *arg) {
  if (d->count == d->cap) {
    int rc = grow(d, 1);
    if (rc < 0)
      return rc;
  }
  entry *e = &d->cbs[d->count++];
  e->cb = cb;
  e->eb = eb;
  e->arg = arg;
  return 0;
}

/* An entry with a drop function: two slots (see `entry`). */
static int append_full(ct_deferred *d, gen_fn cb, gen_fn eb, void *arg,
                       ct_free_cb drop) {
  if (d->count + 2 > d->cap) {
    int rc = grow(d, 2);
    if (rc < 0)
      return rc;
  }
  entry *e = &d->cbs[d->count];
  e[0].cb = cb;
  e[0].eb = M_FULL;
  e[0].arg = arg;
  e[1].cb = (gen_fn)drop;
  e[1].eb = eb;
  e[1].arg = NULL;
  d->count += 2;
  return 0;
}

/* ----------------------------------------------------------- trampoline */

static inline void set_failure(ct_deferred *d, ct_failure *f) {
  d->value = CT_NONE;
  d->failure = f;
}

/* Would waiting on `inner` from `cur` close a cycle? */
static int waits_on(const ct_deferred *inner, const ct_deferred *cur) {
  for (const ct_deferred *x = inner; x != NULL; x = x->waiting_on)
    if (x == cur)
      return 1;
  return 0;
}

/* `cur`'s callback returned ct_wait(inner).  Either take inner's result
 * now, or park `cur` on inner.  Returns 1 if cur now waits. */
static int do_wait(ct_deferred *cur, ct_deferred *inner) {
  if (inner == NULL) {
    set_failure(cur, ct_failure_new(CT_EINVAL, "callback waited on NULL"));
    return 0;
  }
  if (waits_on(inner, cur)) {
    ct_deferred_unref(inner);
    set_failure(cur,
                ct_failure_new(CT_EINVAL, "callback waited on a Deferred that "
                                          "waits on its own chain"));
    return 0;
  }
  if (inner->called && !inner->running && inner->paused == 0 &&
      inner->waiting_on == NULL && inner->head == inner->count) {
    /* The inner chain has run already: steal its result. */
    cur->value = inner->value;
    cur->failure = inner->failure;
    inner->value = CT_NONE;
    inner->failure = NULL;
    ct_deferred_unref(inner);
    return 0;
  }
  if (append(inner, NULL, M_CONT, cur) < 0) {
    ct_deferred_unref(inner);
    set_failure(cur, ct_failure_new(CT_ENOMEM, "cannot wait on Deferred"));
    return 0;
  }
  cur->waiting_on = inner; /* takes the callback's reference */
  return 1;
}

static inline int can_run(const ct_deferred *d) {
  return d->called && !d->running && d->paused == 0 && d->waiting_on == NULL;
}

static void run_callbacks(ct_deferred *d) {
  if (!can_run(d))
    return;
  d->running = 1;
  d->refs++;
  d->stack_next = NULL;
  ct_deferred *top = d;

  while (top != NULL) {
    ct_deferred *cur = top;
    int pushed = 0;
    while (cur->paused == 0 && cur->waiting_on == NULL &&
           cur->head < cur->count) {
      entry e = cur->cbs[cur->head++];
      gen_fn eb = e.eb;
      int kind = mark_kind(eb);
      if (kind == K_FULL) {
        /* Drop is not needed when the entry runs: take the real errback
         * (or the BOTH marker) from the second slot. */
        eb = cur->cbs[cur->head++].eb;
        kind = mark_kind(eb);
      }
      if (cur->head == cur->count)
        cur->head = cur->count = 0;
      ct_step s;
      if (kind < 0) {
        /* The hot path: a plain (callback, errback) pair. */
        if (cur->failure == NULL) {
          if (e.cb == NULL)
            continue;
          ct_value v = cur->value;
          cur->value = CT_NONE;
          s = ((ct_callback_cb)e.cb)(v, e.arg);
        } else {
          if (eb == NULL)
            continue;
          ct_failure *f = cur->failure;
          cur->failure = NULL;
          s = ((ct_errback_cb)eb)(f, e.arg);
        }
      } else if (kind == K_BOTH) {
        ct_result r = {cur->value, cur->failure};
        cur->value = CT_NONE;
        cur->failure = NULL;
        s = ((ct_both_cb)e.cb)(r, e.arg);
      } else if (kind == K_CONT) {
        ct_deferred *outer = e.arg;
        outer->value = cur->value;
        outer->failure = cur->failure;
        cur->value = CT_NONE;
        cur->failure = NULL;
        outer->waiting_on = NULL;
        cur->refs--; /* outer's reference; cur is held by the stack */
        if (outer->paused == 0 && !outer->running) {
          outer->running = 1;
          outer->refs++;
          outer->stack_next = top;
          top = outer;
          pushed = 1;
          break;
        }
        continue;
      } else if (kind == K_CHAIN) {
        ct_deferred *other = e.arg; /* the entry's reference */
        if (other->called) {
          ct_value_free(cur->value);
          ct_failure_free(cur->failure);
          set_failure(cur, ct_failure_new(CT_EALREADY_CALLED,
                                          "chained Deferred already called"));
          ct_deferred_unref(other);
          continue;
        }
        other->called = 1;
        other->value = cur->value;
        other->failure = cur->failure;
        cur->value = CT_NONE;
        cur->failure = NULL;
        if (can_run(other)) {
          other->running = 1;
          other->stack_next = top; /* the entry's reference moves here */
          top = other;
          pushed = 1;
          break;
        }
        ct_deferred_unref(other);
        continue;
      } else {
        continue; /* K_NOP */
      }
      switch (s.kind) {
      case CT_STEP_VALUE:
        cur->value = s.value;
        break;
      case CT_STEP_FAILURE:
        cur->failure =
            s.failure != NULL
                ? s.failure
                : ct_failure_new(CT_EINVAL, "callback raised a NULL failure");
        break;
      case CT_STEP_WAIT:
        do_wait(cur, s.wait);
        break;
      default:
        cur->failure =
            ct_failure_new(CT_EINVAL, "bad step kind %d", (int)s.kind);
        break;
      }
    }
    if (!pushed) {
      /* As much of cur's chain as can run now has run: pop it and go back
       * to the Deferred that handed it its result. */
      top = cur->stack_next;
      cur->stack_next = NULL;
      cur->running = 0;
      ct_deferred_unref(cur);
    }
  }
}

/* ---------------------------------------------------------------- firing */

static int fire(ct_deferred *d, ct_value v, ct_failure *f) {
  if (d == NULL) {
    ct_value_free(v);
    ct_failure_free(f);
    return CT_EINVAL;
  }
  if (d->called) {
    ct_value_free(v);
    ct_failure_free(f);
    if (d->suppress) {
      d->suppress = 0;
      return 0;
    }
    return CT_EALREADY_CALLED;
  }
  d->called = 1;
  d->value = v;
  d->failure = f;
  run_callbacks(d);
  return 0;
}

int ct_deferred_callback(ct_deferred *d, ct_value v) {
  return fire(d, v, NULL);
}

int ct_deferred_errback(ct_deferred *d, ct_failure *f) {
  if (f == NULL)
    f = ct_failure_new(CT_EINVAL, "errback with a NULL failure");
  return fire(d, CT_NONE, f);
}

/* ------------------------------------------------------------- callbacks */

int ct_deferred_add_callbacks_full(ct_deferred *d, ct_callback_cb cb,
                                   ct_errback_cb eb, void *arg,
                                   ct_free_cb drop) {
  if (d == NULL)
    return CT_EINVAL;
  int rc = drop == NULL ? append(d, (gen_fn)cb, (gen_fn)eb, arg)
                        : append_full(d, (gen_fn)cb, (gen_fn)eb, arg, drop);
  if (rc < 0)
    return rc;
  if (d->called)
    run_callbacks(d);
  return 0;
}

int ct_deferred_add_callbacks(ct_deferred *d, ct_callback_cb cb,
                              ct_errback_cb eb, void *arg) {
  return ct_deferred_add_callbacks_full(d, cb, eb, arg, NULL);
}

int ct_deferred_add_callback(ct_deferred *d, ct_callback_cb cb, void *arg) {
  return ct_deferred_add_callbacks_full(d, cb, NULL, arg, NULL);
}

int ct_deferred_add_errback(ct_deferred *d, ct_errback_cb eb, void *arg) {
  return ct_deferred_add_callbacks_full(d, NULL, eb, arg, NULL);
}

int ct_deferred_add_both_full(ct_deferred *d, ct_both_cb fn, void *arg,
                              ct_free_cb drop) {
  if (d == NULL || fn == NULL)
    return CT_EINVAL;
  int rc = drop == NULL ? append(d, (gen_fn)fn, M_BOTH, arg)
                        : append_full(d, (gen_fn)fn, M_BOTH, arg, drop);
  if (rc < 0)
    return rc;
  run_callbacks(d);
  return 0;
}

int ct_deferred_add_both(ct_deferred *d, ct_both_cb fn, void *arg) {
  return ct_deferred_add_both_full(d, fn, arg, NULL);
}

int ct_deferred_chain(ct_deferred *d, ct_deferred *other) {
  if (d == NULL || other == NULL || d == other)
    return CT_EINVAL;
  int rc = append(d, NULL, M_CHAIN, other);
  if (rc < 0)
    return rc;
  other->refs++;
  run_callbacks(d);
  return 0;
}

/* ------------------------------------------------------- pause and cancel */

void ct_deferred_pause(ct_deferred *d) {
  if (d != NULL)
    d->paused++;
}

void ct_deferred_unpause(ct_deferred *d) {
  if (d == NULL || d->paused == 0)
    return;
  if (--d->paused == 0)
    run_callbacks(d);
}

int ct_deferred_cancel(ct_deferred *d) {
  if (d == NULL)
    return CT_EINVAL;
  /* A fired Deferred waiting on an inner one forwards the cancellation to
   * the innermost Deferred it (transitively) waits on; walk there in a
   * loop rather than recursing. */
  while (d->called && d->waiting_on != NULL)
    d = d->waiting_on;
  if (d->called)
    return 0;
  d->refs++;
  if (d->canceller != NULL)
    d->canceller(d, d->cancel_arg);
  else
    d->suppress = 1;
  if (!d->called)
    fire(d, CT_NONE, ct_failure_new(CT_ECANCELLED, CT__CANCELLED_MSG));
  ct_deferred_unref(d);
  return 0;
}

void ct__deferred_set_canceller(ct_deferred *d, ct_canceller_cb fn, void *arg) {
  d->canceller = fn;
  d->cancel_arg = arg;
}

/* ------------------------------------------------------------ inspection */

int ct_deferred_called(const ct_deferred *d) {
  return d != NULL && d->called;
}

int ct_deferred_paused(const ct_deferred *d) {
  return d != NULL && d->paused > 0;
}

int ct_deferred_waiting(const ct_deferred *d) {
  return d != NULL && d->waiting_on != NULL;
}

int ct_deferred_has_result(const ct_deferred *d) {
  return d != NULL && d->called && !d->running && d->waiting_on == NULL &&
         d->head == d->count;
}

int ct_deferred_is_failed(const ct_deferred *d) {
  return d != NULL && d->called && d->waiting_on == NULL && d->failure != NULL;
}

int ct_deferred_take_result(ct_deferred *d, ct_result *out) {
  if (out != NULL) {
    out->value = CT_NONE;
    out->failure = NULL;
  }
  if (out == NULL || !ct_deferred_has_result(d))
    return CT_ESTATE;
  out->value = d->value;
  out->failure = d->failure;
  d->value = CT_NONE;
  d->failure = NULL;
  return 0;
}

const ct_failure *ct_deferred_peek_failure(const ct_deferred *d) {
  return ct_deferred_is_failed(d) ? d->failure : NULL;
}

const ct_value *ct_deferred_peek_value(const ct_deferred *d) {
  if (!ct_deferred_has_result(d) || d->failure != NULL)
    return NULL;
  return &d->value;
}

const char *ct_deferred_created_file(const ct_deferred *d) {
  return d != NULL ? d->file : NULL;
}

int ct_deferred_created_line(const ct_deferred *d) {
  return d != NULL ? d->line : 0;
}
