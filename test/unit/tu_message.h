/*
 * Shared fixture of the message-protocol tests on the in-memory transports:
 * a callback recorder (`side`), a frame builder and a messenger server on
 * a fake-clock reactor with a string transport (`mem_server`).
 */
#ifndef TU_MESSAGE_H
#define TU_MESSAGE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctwist/message.h"
#include "ctwist/testing.h"

typedef struct side {
  int connects, closes, messages;
  size_t last_alive;
  int last_code;
  char last_msg[256];
  ct_messenger *conn;
  int echo;
  size_t total_len;
  char last_type[32];
  ct_msg_server **free_me; /* freed from inside on_message when set */
} side;

static inline void on_connect(ct_messenger *m, void *arg) {
  side *s = arg;
  s->connects++;
  s->conn = m;
}

static inline void on_message(ct_messenger *m, const ct_msg_header *h,
                              const char *content, size_t len, void *arg) {
  side *s = arg;
  s->messages++;
  s->total_len += len;
  const char *t;
  if (ct_msg_header_get_str(h, "type", &t) == 0)
    snprintf(s->last_type, sizeof s->last_type, "%s", t);
  if (s->echo)
    cr_assert_eq(ct_messenger_send(m, h, content, len), 0);
  if (s->free_me != NULL && *s->free_me != NULL) {
    ct_msg_server_free(*s->free_me);
    *s->free_me = NULL;
  }
}

static inline void on_close(ct_messenger *m, size_t alive,
                            const ct_failure *reason, void *arg) {
  side *s = arg;
  s->closes++;
  s->last_alive = alive;
  s->last_code = reason->code;
  snprintf(s->last_msg, sizeof s->last_msg, "%s", reason->message);
}

static inline ct_msg_callbacks cbs(side *s) {
  ct_msg_callbacks c = {on_connect, on_message, on_close, NULL, s};
  return c;
}

static inline void add_frame(char **buf, size_t *len, const char *type,
                             const char *content, size_t clen) {
  ct_msg_header *h = ct_msg_header_new();
  ct_msg_header_set_str(h, "type", type);
  char *f;
  size_t fl;
  cr_assert_eq(ct_msg_encode(h, content, clen, &f, &fl), 0);
  *buf = realloc(*buf, *len + fl);
  memcpy(*buf + *len, f, fl);
  *len += fl;
  free(f);
  ct_msg_header_free(h);
}

/* A fake-clock reactor, a messenger server whose callbacks record into
 * sv (echoing when asked) and a string transport not yet connected. */
typedef struct mem_server {
  ct_clock *clk;
  ct_reactor *r;
  side sv;
  ct_msg_callbacks cb;
  ct_msg_server *s;
  ct_string_transport *st;
} mem_server;

static inline void mem_server_init(mem_server *m, int echo,
                                   const ct_msg_options *o) {
  memset(m, 0, sizeof *m);
  m->clk = ct_clock_new();
  m->r = ct_reactor_new_with_clock(m->clk);
  m->sv.echo = echo;
  m->cb = cbs(&m->sv);
  m->s = ct_msg_server_new(m->r, &m->cb, o);
  m->st = ct_string_transport_new(m->r);
}

/* Free all of it (a server already freed is NULL). */
static inline void mem_server_free(mem_server *m) {
  ct_string_transport_free(m->st);
  ct_msg_server_free(m->s);
  ct_reactor_free(m->r);
  ct_clock_free(m->clk);
}

#endif
