/*
 * A recording test protocol shared by the in-memory transport tests
 * (header-only, static functions): it records connection_made, the bytes
 * and calls of data_received, EOFs, connection_lost (once, with its code,
 * and whether it ran inside one of the protocol's own transport calls) and
 * its own free, into a tu_rec that outlives the protocol.  Optionally it
 * echoes, closes or aborts on a marker, or answers an EOF.
 */
#ifndef CT_TEST_TU_RECORDER_H
#define CT_TEST_TU_RECORDER_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/transport.h"

/* What a side saw; outlives its protocol.  Zero-initialise, set the
 * options, and release with tu_rec_done. */
typedef struct tu_rec {
  int made, lost, lost_code, freed, eofs;
  int keep_open_on_eof;
  int in_call;          /* set while the protocol calls its transport */
  int lost_inside_call; /* connection_lost ran inside such a call */
  char *got;            /* every byte received (grown as needed) */
  size_t got_len, got_cap;
  size_t max_chunk, calls;
  int lines; /* complete "\n"-terminated lines seen */
  /* Options. */
  size_t limit;         /* nonzero: assert got_len + n < limit on each call */
  int echo;             /* echo what arrives */
  const char *lose_on;  /* data containing this: lose_connection */
  const char *abort_on; /* data containing this: abort */
  int check_close_rc;   /* assert the close above returns 0 */
  int reply_eof;        /* on EOF, write "bye\n" then lose_connection */
} tu_rec;

static inline void tu_rec_add(tu_rec *r, const char *d, size_t n) {
  if (r->limit != 0)
    cr_assert_lt(r->got_len + n, r->limit);
  if (r->got_len + n > r->got_cap) {
    size_t cap = r->got_cap ? r->got_cap : 256;
    while (cap < r->got_len + n)
      cap *= 2;
    r->got = realloc(r->got, cap);
    cr_assert_not_null(r->got);
    r->got_cap = cap;
  }
  memcpy(r->got + r->got_len, d, n);
  r->got_len += n;
  for (size_t i = 0; i < n; i++)
    r->lines += d[i] == '\n';
  if (n > r->max_chunk)
    r->max_chunk = n;
  r->calls++;
}

static inline void tu_rec_made(ct_protocol *p, ct_transport *t) {
  tu_rec *r = p->state;
  r->made++;
  cr_assert_eq(p->transport, t);
}

static inline int tu_rec_has(const char *d, size_t n, const char *word) {
  return word != NULL && memmem(d, n, word, strlen(word)) != NULL;
}

static inline void tu_rec_data(ct_protocol *p, const char *d, size_t n) {
  tu_rec *r = p->state;
  tu_rec_add(r, d, n);
  r->in_call = 1;
  if (r->echo)
    ct_transport_write(p->transport, d, n);
  if (tu_rec_has(d, n, r->lose_on)) {
    int rc = ct_transport_lose_connection(p->transport);
    if (r->check_close_rc)
      cr_assert_eq(rc, 0);
  }
  if (tu_rec_has(d, n, r->abort_on)) {
    int rc = ct_transport_abort(p->transport);
    if (r->check_close_rc)
      cr_assert_eq(rc, 0);
  }
  r->in_call = 0;
}

static inline int tu_rec_eof(ct_protocol *p) {
  tu_rec *r = p->state;
  r->eofs++;
  if (r->reply_eof) {
    r->in_call = 1;
    ct_transport_write_str(p->transport, "bye\n");
    ct_transport_lose_connection(p->transport);
    r->in_call = 0;
    return 1;
  }
  return r->keep_open_on_eof;
}

static inline void tu_rec_lost(ct_protocol *p, const ct_failure *reason) {
  tu_rec *r = p->state;
  r->lost++;
  r->lost_code = reason->code;
  if (r->in_call)
    r->lost_inside_call = 1;
  cr_assert_not_null(p->transport);
}

static inline void tu_rec_free(ct_protocol *p) {
  ((tu_rec *)p->state)->freed++;
  free(p);
}

static const ct_protocol_ops tu_rec_ops = {
    .name = "rec",
    .connection_made = tu_rec_made,
    .data_received = tu_rec_data,
    .eof_received = tu_rec_eof,
    .connection_lost = tu_rec_lost,
    .free = tu_rec_free,
};

/* The same, opted in to back-pressure (reading pauses at high water). */
static const ct_protocol_ops tu_rec_ops_bp = {
    .name = "rec-bp",
    .flags = CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER,
    .connection_made = tu_rec_made,
    .data_received = tu_rec_data,
    .eof_received = tu_rec_eof,
    .connection_lost = tu_rec_lost,
    .free = tu_rec_free,
};

/* A new protocol with `ops` recording into `r` (the caller owns it until a
 * transport takes it). */
static inline ct_protocol *tu_rec_proto(tu_rec *r, const ct_protocol_ops *ops) {
  ct_protocol *p = ct_protocol_new(ops, sizeof(ct_protocol));
  cr_assert_not_null(p);
  p->state = r;
  return p;
}

static inline void tu_rec_done(tu_rec *r) {
  free(r->got);
  r->got = NULL;
  r->got_len = r->got_cap = 0;
}

/* A protocol that frees its own heap state and closes from inside
 * data_received once the data contains `die_on`: it aborts if `abort_always`
 * is set or the data also contains `abort_on`, else loses the connection.
 * No data may arrive after that, and connection_lost (which stores its
 * code in *lost_code) finds the state already gone. */
typedef struct tu_selfish {
  ct_protocol base;
  char *scratch; /* heap state, written by every data_received */
  int *lost_code;
  const char *die_on, *abort_on;
  int abort_always;
} tu_selfish;

static inline void tu_selfish_data(ct_protocol *p, const char *d, size_t n) {
  tu_selfish *s = (tu_selfish *)p;
  cr_assert_not_null(s->scratch, "no data after the close");
  memcpy(s->scratch, d, n < 16 ? n : 16);
  if (tu_rec_has(d, n, s->die_on)) {
    free(s->scratch);
    s->scratch = NULL;
    if (s->abort_always || tu_rec_has(d, n, s->abort_on))
      ct_transport_abort(p->transport);
    else
      ct_transport_lose_connection(p->transport);
  }
}

static inline void tu_selfish_lost(ct_protocol *p, const ct_failure *reason) {
  tu_selfish *s = (tu_selfish *)p;
  cr_assert_null(s->scratch);
  *s->lost_code = reason->code;
}

static const ct_protocol_ops tu_selfish_ops = {
    .name = "selfish",
    .data_received = tu_selfish_data,
    .connection_lost = tu_selfish_lost,
};

static inline tu_selfish *tu_selfish_new(const char *die_on, int *lost_code) {
  tu_selfish *s =
      (tu_selfish *)ct_protocol_new(&tu_selfish_ops, sizeof(tu_selfish));
  cr_assert_not_null(s);
  s->scratch = malloc(16);
  cr_assert_not_null(s->scratch);
  s->lost_code = lost_code;
  s->die_on = die_on;
  return s;
}

#endif
