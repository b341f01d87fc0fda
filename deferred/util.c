/* Immediate results, maybeDeferred, DeferredList and gatherResults. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/deferred.h"
#include "deferred/internal.h"

/* ------------------------------------------------------ immediate results */

ct_deferred *ct_succeed_at(const char *file, int line, ct_value v) {
  ct_deferred *d = ct_deferred_new_at(file, line, NULL, NULL);
  if (d == NULL) {
    ct_value_free(v);
    return NULL;
  }
  ct_deferred_callback(d, v);
  return d;
}

ct_deferred *ct_fail_at(const char *file, int line, ct_failure *f) {
  ct_deferred *d = ct_deferred_new_at(file, line, NULL, NULL);
  if (d == NULL) {
    ct_failure_free(f);
    return NULL;
  }
  ct_deferred_errback(d, f);
  return d;
}

ct_deferred *ct_maybe_deferred_at(const char *file, int line, ct_step_fn fn,
                                  void *arg) {
  if (fn == NULL)
    return NULL;
  ct_step s = fn(arg);
  switch (s.kind) {
  case CT_STEP_VALUE:
    return ct_succeed_at(file, line, s.value);
  case CT_STEP_FAILURE:
    return ct_fail_at(file, line, s.failure);
  case CT_STEP_WAIT:
    if (s.wait != NULL)
      return s.wait;
    return ct_fail_at(file, line,
                      ct_failure_new(CT_EINVAL, "function waited on NULL"));
  default:
    return ct_fail_at(
        file, line, ct_failure_new(CT_EINVAL, "bad step kind %d", (int)s.kind));
  }
}

/* ----------------------------------------------------------- DeferredList */

/* The list's shared state.  Each listed Deferred's entry holds one
 * reference on it, and the creator one until setup is done; the Deferreds
 * themselves are tracked weakly (ds[i] is cleared when i's entry runs or is
 * dropped), so an abandoned list cannot form a reference cycle. */
typedef struct dl_state {
  size_t refs;
  size_t n;
  size_t finished;
  unsigned flags;
  ct_deferred *list;    /* strong until fired */
  ct_dl_result *result; /* owned until handed over */
  ct_deferred **ds;     /* weak */
  struct dl_slot *slots;
} dl_state;

typedef struct dl_slot {
  dl_state *st;
  size_t index;
} dl_slot;

void ct_dl_result_free(void *p) {
  ct_dl_result *r = p;
  if (r == NULL)
    return;
  for (size_t i = 0; i < r->n; i++) {
    ct_value_free(r->entries[i].value);
    ct_failure_free(r->entries[i].failure);
  }
  free(r);
}

static void dl_state_unref(dl_state *st) {
  if (--st->refs > 0)
    return;
  ct_dl_result_free(st->result);
  if (st->list != NULL) {
    /* Every listed Deferred went away unfired: the list can never fire,
     * and its canceller must not reach this freed state. */
    ct__deferred_set_canceller(st->list, NULL, NULL);
    ct_deferred_unref(st->list);
  }
  free(st->ds);
  free(st->slots);
  free(st);
}

static ct_dl_result *dl_result_new(size_t n) {
  ct_dl_result *r = calloc(1, sizeof(*r) + n * sizeof(ct_dl_entry));
  if (r == NULL)
    return NULL;
  r->n = n;
  r->index = SIZE_MAX;
  return r;
}

/* Fire the list with its result (hand the result over). */
static void dl_fire_value(dl_state *st) {
  ct_deferred *list = st->list;
  ct_dl_result *r = st->result;
  st->list = NULL;
  st->result = NULL;
  ct_deferred_callback(list, ct_value_of(r, ct_dl_result_free));
  ct_deferred_unref(list);
}

static ct_failure *first_error(size_t index, ct_failure *cause) {
  ct_failure *f = ct_failure_wrap(
      "ctwist", CT_EFIRST_ERROR, cause, "FirstError at index %zu: %s", index,
      cause != NULL && cause->message != NULL ? cause->message : "");
  if (f->code == CT_EFIRST_ERROR) /* not the static out-of-memory failure */
    f->detail = (long)index;
  return f;
}

long ct_first_error_index(const ct_failure *f) {
  if (f == NULL || f->code != CT_EFIRST_ERROR || f->detail < 0)
    return -1;
  return f->detail;
}

static ct_step dl_on_value(ct_value v, void *arg) {
  dl_slot *slot = arg;
  dl_state *st = slot->st;
  st->ds[slot->index] = NULL;
  st->finished++;
  if (st->list == NULL || ct_deferred_called(st->list)) {
    /* Fired already: leave the value where it is. */
    dl_state_unref(st);
    return ct_pass(v);
  }
  ct_dl_entry *e = &st->result->entries[slot->index];
  e->done = 1;
  e->success = 1;
  e->value = v;
  if (st->flags & CT_DL_FIRE_ON_ONE_CALLBACK) {
    st->result->index = slot->index;
    dl_fire_value(st);
  } else if (st->finished == st->n) {
    dl_fire_value(st);
  }
  dl_state_unref(st);
  return ct_pass(CT_NONE);
}

static ct_step dl_on_failure(ct_failure *f, void *arg) {
  dl_slot *slot = arg;
  dl_state *st = slot->st;
  int consume = (st->flags & CT_DL_CONSUME_ERRORS) != 0;
  st->ds[slot->index] = NULL;
  st->finished++;
  if (st->list == NULL || ct_deferred_called(st->list)) {
    dl_state_unref(st);
    if (consume) {
      ct_failure_free(f);
      return ct_pass(CT_NONE);
    }
    return ct_raise(f);
  }
  ct_failure *mine = consume ? f : ct_failure_copy(f);
  if (st->flags & CT_DL_FIRE_ON_ONE_ERRBACK) {
    ct_deferred *list = st->list;
    st->list = NULL;
    ct_deferred_errback(list, first_error(slot->index, mine));
    ct_deferred_unref(list);
  } else {
    ct_dl_entry *e = &st->result->entries[slot->index];
    e->done = 1;
    e->success = 0;
    e->failure = mine;
    if (st->finished == st->n)
      dl_fire_value(st);
  }
  dl_state_unref(st);
  return consume ? ct_pass(CT_NONE) : ct_raise(f);
}

static void dl_drop(void *arg) {
  dl_slot *slot = arg;
  slot->st->ds[slot->index] = NULL;
  dl_state_unref(slot->st);
}

static void dl_cancel(ct_deferred *list, void *arg) {
  dl_state *st = arg;
  (void)list;
  st->refs++;
  for (size_t i = 0; i < st->n; i++) {
    ct_deferred *d = st->ds[i];
    if (d == NULL)
      continue;
    ct_deferred_ref(d);
    ct_deferred_cancel(d);
    ct_deferred_unref(d);
  }
  dl_state_unref(st);
}

/* The canceller's argument outlives the state when the list Deferred
 * survives it; the list's canceller only runs while the list is unfired,
 * and the state holds the list until it fires, so `st` is alive then. */
ct_deferred *ct_deferred_list_at(const char *file, int line,
                                 ct_deferred *const *ds, size_t n,
                                 unsigned flags) {
  if (ds == NULL && n > 0)
    return NULL;
  dl_state *st = calloc(1, sizeof(*st));
  if (st == NULL)
    return NULL;
  st->n = n;
  st->flags = flags;
  st->refs = 1;
  st->result = dl_result_new(n);
  st->ds = calloc(n > 0 ? n : 1, sizeof(*st->ds));
  st->slots = calloc(n > 0 ? n : 1, sizeof(*st->slots));
  st->list = ct_deferred_new_at(file, line, dl_cancel, st);
  if (st->result == NULL || st->ds == NULL || st->slots == NULL ||
      st->list == NULL) {
    dl_state_unref(st);
    return NULL;
  }
  ct_deferred *list = ct_deferred_ref(st->list);
  if (n == 0) {
    if (!(flags & CT_DL_FIRE_ON_ONE_CALLBACK))
      dl_fire_value(st);
    dl_state_unref(st);
    return list;
  }
  for (size_t i = 0; i < n; i++) {
    st->ds[i] = ds[i];
    st->slots[i].st = st;
    st->slots[i].index = i;
  }
  for (size_t i = 0; i < n; i++) {
    st->refs++;
    if (ct_deferred_add_callbacks_full(ds[i], dl_on_value, dl_on_failure,
                                       &st->slots[i], dl_drop) < 0) {
      /* Out of memory: count it as a failure of that entry (the
       * entry's reference taken above is dropped by dl_on_failure). */
      ct_step r = dl_on_failure(ct_failure_new(CT_ENOMEM, "DeferredList setup"),
                                &st->slots[i]);
      if (r.kind == CT_STEP_FAILURE)
        ct_failure_free(r.failure);
    }
  }
  dl_state_unref(st);
  return list;
}

ct_deferred *ct_gather_results_at(const char *file, int line,
                                  ct_deferred *const *ds, size_t n) {
  return ct_deferred_list_at(file, line, ds, n,
                             CT_DL_FIRE_ON_ONE_ERRBACK | CT_DL_CONSUME_ERRORS);
}
