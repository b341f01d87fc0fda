/*
 * memory.c: a connected pair of in-memory transports and the pump that
 * moves bytes between them (Twisted's iosim: FakeTransport + IOPump).
 *
 * Each side buffers what its protocol writes; nothing moves until the test
 * calls ct_pump_step() or ct_pump_flush().  That is what makes the pair
 * useful: the test chooses the chunk size (down to one byte, to exercise
 * parsers), and every callback -- data_received, eof_received,
 * connection_lost -- runs from the pump, never from inside a call the
 * protocol made on its transport, which is the re-entrancy rule of
 * transport.h.  Output buffered on a side counts towards its watermarks,
 * so back-pressure behaves as on TCP: a side that stops reading makes the
 * other side's buffer grow until its producer (and, if it opted in, its
 * own reading) is paused.
 */
#include <stdlib.h>
#include <string.h>

#include "ctwist/testing.h"
#include "reactor/buf.h"
#include "transports/internal.h"

typedef struct mem_side {
  ct_transport base;     /* first: the ops get a ct_transport * */
  struct mem_side *peer; /* NULL once the pump is gone */
  ct__buf out;           /* bytes written, not yet delivered */
  ct_address host, peer_addr;
  int abort_pending;
  int eof_sent; /* our half_close reached the peer */
  int lost_code;
  size_t delivered; /* bytes delivered to this side */
} mem_side;

struct ct_pump {
  mem_side *server, *client;
  size_t chunk;
  ct_clock *clock;
  ct_reactor *reactor;
  unsigned long max_steps;
  ct__buf scratch; /* one chunk in flight to a receiver */
};

static mem_side *side_of(ct_transport *t) {
  return (mem_side *)(void *)t;
}

static size_t pending(const mem_side *s) {
  return ct__buf_len(&s->out);
}

/* ------------------------------------------------------------------- ops */

static int mem_write(ct_transport *t, const void *data, size_t len) {
  mem_side *s = side_of(t);
  if (ct__buf_append(&s->out, data, len) != 0)
    return CT_ENOMEM;
  ct__transport_buffer_changed(t, pending(s));
  return 0;
}

static int mem_write_bytes(ct_transport *t, ct_bytes *b, size_t off,
                           size_t len) {
  mem_side *s = side_of(t);
  if (ct__buf_append_blob(&s->out, b, off, len) != 0)
    return CT_ENOMEM;
  ct__transport_buffer_changed(t, pending(s));
  return 0;
}

static int mem_lose_connection(ct_transport *t) {
  t->flags |= CT__T_CLOSING;
  return 0;
}

static int mem_abort(ct_transport *t) {
  mem_side *s = side_of(t);
  t->flags |= CT__T_CLOSING | CT__T_CLOSED;
  s->abort_pending = 1;
  ct__buf_clear(&s->out);
  return 0;
}

static int mem_half_close(ct_transport *t) {
  t->flags |= CT__T_WRITE_SHUT;
  return 0;
}

static int mem_get_peer(ct_transport *t, ct_address *out) {
  *out = side_of(t)->peer_addr;
  return 0;
}

static int mem_get_host(ct_transport *t, ct_address *out) {
  *out = side_of(t)->host;
  return 0;
}

static int mem_set_option(ct_transport *t, ct_transport_option opt, int value) {
  (void)t;
  (void)opt;
  (void)value;
  return 0; /* nothing to tune in memory */
}

static size_t mem_buffered(const ct_transport *t) {
  return pending((const mem_side *)(const void *)t);
}

static void mem_destroy(ct_transport *t) {
  mem_side *s = side_of(t);
  ct__buf_free(&s->out);
  free(s);
}

static const ct_transport_ops memory_ops = {
    .name = "memory",
    .write = mem_write,
    .write_bytes = mem_write_bytes,
    .lose_connection = mem_lose_connection,
    .abort = mem_abort,
    .half_close = mem_half_close,
    .get_peer = mem_get_peer,
    .get_host = mem_get_host,
    .set_option = mem_set_option,
    .buffered = mem_buffered,
    .destroy = mem_destroy,
};

/* ------------------------------------------------------------- the pump */

static mem_side *side_new(ct_reactor *r) {
  mem_side *s = calloc(1, sizeof(*s));
  if (s != NULL) {
    ct__transport_init(&s->base, &memory_ops, r);
    s->base.refs = 2; /* the connection's and the pump's */
  }
  return s;
}

ct_pump *ct_pump_connect(ct_reactor *r, ct_protocol *server,
                         ct_protocol *client, const ct_pump_options *opts) {
  ct_pump *p = NULL;
  if (server == NULL || client == NULL || (p = calloc(1, sizeof(*p))) == NULL ||
      (p->server = side_new(r)) == NULL || (p->client = side_new(r)) == NULL) {
    if (p != NULL) {
      free(p->server);
      free(p);
    }
    ct_protocol_release(server);
    ct_protocol_release(client);
    return NULL;
  }
  ct_pump_options o = {0};
  if (opts != NULL) {
    o = *opts;
  }
  p->chunk = o.chunk_size;
  p->clock = o.clock;
  p->reactor = r;
  p->max_steps = o.max_steps ? o.max_steps : 100000000ul;
  if (o.server_addr != NULL) {
    p->server->host = *o.server_addr;
  } else {
    ct_address_from_ip(&p->server->host, "127.0.0.1", 8000);
  }
  if (o.client_addr != NULL) {
    p->client->host = *o.client_addr;
  } else {
    ct_address_from_ip(&p->client->host, "127.0.0.1", 49152);
  }
  p->server->peer_addr = p->client->host;
  p->client->peer_addr = p->server->host;
  p->server->peer = p->client;
  p->client->peer = p->server;
  ct__transport_make_connection(&p->server->base, server);
  ct__transport_make_connection(&p->client->base, client);
  return p;
}

ct_pump *ct_pump_connect_factories(ct_reactor *r, ct_factory *server_factory,
                                   ct_factory *client_factory,
                                   const ct_pump_options *opts) {
  ct_address saddr, caddr;
  if (opts != NULL && opts->server_addr != NULL) {
    saddr = *opts->server_addr;
  } else {
    ct_address_from_ip(&saddr, "127.0.0.1", 8000);
  }
  if (opts != NULL && opts->client_addr != NULL) {
    caddr = *opts->client_addr;
  } else {
    ct_address_from_ip(&caddr, "127.0.0.1", 49152);
  }
  ct_protocol *sp = ct_factory_build(server_factory, &caddr);
  ct_protocol *cp =
      sp != NULL ? ct_factory_build(client_factory, &saddr) : NULL;
  if (sp == NULL || cp == NULL) {
    ct_protocol_release(sp);
    return NULL;
  }
  return ct_pump_connect(r, sp, cp, opts);
}

static int side_lost(const mem_side *s) {
  return (s->base.flags & CT__T_LOST) != 0;
}

static void side_finish(mem_side *s, int code, const char *what) {
  if (side_lost(s)) {
    return;
  }
  s->base.flags |= CT__T_CLOSED;
  ct__buf_clear(&s->out);
  /* A policy that closed the side (slow consumer) names the reason. */
  s->lost_code =
      s->base.close_reason != NULL ? s->base.close_reason->code : code;
  ct__transport_deliver_lost(&s->base, ct_failure_new(code, "%s", what));
}

/* Move at most one chunk from `from` to `to`.  Returns 1 on progress. */
static int move_chunk(ct_pump *p, mem_side *from, mem_side *to) {
  size_t n = pending(from);
  if (n == 0 || side_lost(from)) {
    return 0;
  }
  if (side_lost(to) || (to->base.flags & (CT__T_CLOSING | CT__T_CLOSED))) {
    /* The receiver stopped reading for good: the bytes are dropped. */
    ct__buf_clear(&from->out);
    ct__transport_buffer_changed(&from->base, 0);
    return 1;
  }
  if (!ct__transport_want_reading(&to->base)) {
    return 0; /* paused: the bytes wait, and count against `from` */
  }
  if (p->chunk > 0 && n > p->chunk) {
    n = p->chunk;
  }
  /* Copy out first: the receiver may write, and the sender's buffer must
   * already reflect the delivery when watermarks are evaluated. */
  ct__buf_clear(&p->scratch);
  char *chunk = ct__buf_tail(&p->scratch, n);
  if (chunk == NULL) {
    return 0;
  }
  ct__buf_copyout(&from->out, chunk, n);
  ct__buf_consume(&from->out, n);
  to->delivered += n;
  ct__transport_buffer_changed(&from->base, pending(from));
  ct_protocol *proto = to->base.protocol;
  if (proto != NULL && proto->ops != NULL &&
      proto->ops->data_received != NULL) {
    ct_transport_ref(&to->base);
    proto->ops->data_received(proto, chunk, n);
    ct_transport_unref(&to->base);
  }
  if (pending(from) == 0 && !side_lost(from)) {
    ct__transport_output_drained(&from->base);
  }
  return 1;
}

/* Closes, aborts and half-closes of side `s` that became due. */
static int settle(mem_side *s) {
  mem_side *o = s->peer;
  if (side_lost(s)) {
    return 0;
  }
  if (s->abort_pending) {
    side_finish(s, CT_ECONNABORTED, "connection aborted (memory transport)");
    if (o != NULL) {
      side_finish(o, CT_ECONNRESET,
                  "connection reset by peer (memory "
                  "transport: the peer aborted)");
    }
    return 1;
  }
  if (pending(s) > 0) {
    return 0; /* closes wait for our output to be delivered */
  }
  if (s->base.flags & CT__T_CLOSING) {
    side_finish(s, CT_ECONNDONE, "connection was closed cleanly");
    if (o != NULL) {
      side_finish(o, CT_ECONNDONE, "connection was closed cleanly by the peer");
    }
    return 1;
  }
  if ((s->base.flags & CT__T_WRITE_SHUT) && !s->eof_sent && o != NULL &&
      !side_lost(o)) {
    s->eof_sent = 1;
    o->base.flags |= CT__T_EOF;
    ct_protocol *proto = o->base.protocol;
    int keep = 0;
    if (proto != NULL && proto->ops != NULL &&
        proto->ops->eof_received != NULL) {
      ct_transport_ref(&o->base);
      keep = proto->ops->eof_received(proto) != 0;
      ct_transport_unref(&o->base);
    }
    if (!keep && !(o->base.flags & CT__T_CLOSED)) {
      o->base.flags |= CT__T_CLOSING;
    }
    return 1;
  }
  return 0;
}

/* A pull producer registered or drained while nothing was buffered waits
 * for a "loop turn": this is it. */
static int pull(mem_side *s) {
  if (side_lost(s) || s->base.producer == NULL ||
      (s->base.flags & (CT__T_STREAMING | CT__T_CLOSED)) ||
      !(s->base.flags & CT__T_PULL_PENDING) || pending(s) > 0) {
    return 0;
  }
  ct__transport_output_drained(&s->base);
  return 1;
}

int ct_pump_step(ct_pump *p) {
  if (p == NULL) {
    return 0;
  }
  int did = 0;
  did |= move_chunk(p, p->client, p->server);
  did |= move_chunk(p, p->server, p->client);
  did |= settle(p->client);
  did |= settle(p->server);
  did |= pull(p->client);
  did |= pull(p->server);
  return did;
}

long ct_pump_flush(ct_pump *p) {
  if (p == NULL) {
    return CT_EINVAL;
  }
  long steps = 0;
  for (unsigned long i = 0; i < p->max_steps; i++) {
    if (ct_pump_step(p)) {
      steps++;
      continue;
    }
    /* Quiet: let zero-delay timers run; they may write more. */
    if (p->clock != NULL && ct_clock_advance(p->clock, 0) > 0) {
      continue;
    }
    return steps;
  }
  return CT_ETOOBIG;
}

void ct_pump_set_chunk_size(ct_pump *p, size_t chunk_size) {
  if (p != NULL) {
    p->chunk = chunk_size;
  }
}

ct_transport *ct_pump_server_transport(ct_pump *p) {
  return p != NULL ? &p->server->base : NULL;
}

ct_transport *ct_pump_client_transport(ct_pump *p) {
  return p != NULL ? &p->client->base : NULL;
}

int ct_pump_lost_code(const ct_pump *p, int server) {
  if (p == NULL) {
    return 0;
  }
  return server ? p->server->lost_code : p->client->lost_code;
}

size_t ct_pump_delivered(const ct_pump *p, int server) {
  if (p == NULL) {
    return 0;
  }
  return server ? p->server->delivered : p->client->delivered;
}

void ct_pump_free(ct_pump *p) {
  if (p == NULL) {
    return;
  }
  /* Detach first, so that closing one side does not reach for the other. */
  p->server->peer = NULL;
  p->client->peer = NULL;
  side_finish(p->server, CT_ECONNABORTED, "memory pump freed");
  side_finish(p->client, CT_ECONNABORTED, "memory pump freed");
  ct_transport_unref(&p->server->base);
  ct_transport_unref(&p->client->base);
  ct__buf_free(&p->scratch);
  free(p);
}
