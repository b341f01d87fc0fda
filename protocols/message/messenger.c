/* Messengers (one message connection each) and the two owners that keep
 * them: ct_msg_server (a listening port) and ct_msg_client (outgoing
 * connections).  Both owners are the same "hub": a list of live
 * messengers, the callbacks, the options and a factory.
 *
 * Lifetime.  A hub is reference counted: its owner object holds one
 * reference, every messenger holds one until its protocol is released (the
 * transport still reads the factory, embedded in the hub, until then), a
 * pending connection attempt holds one, and a stopping port holds one until
 * it is closed.  A messenger is reference counted too: the connection holds
 * one until the transport releases the protocol, users may add their own,
 * so a messenger kept past on_close answers CT_ECLOSED instead of crashing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "ctwist/log.h"
#include "protocols/message/internal.h"

/* Content at or above this size, and everything queued behind it, goes
 * through the streaming producer in chunks of this size. */
#define CT__MSG_STREAM (64u * 1024u)
/* Segments of gathered output before a flush (one writev). */
#define CT__MSG_SEGS 64

typedef struct hub hub;
typedef struct attempt attempt;

typedef struct outq {
  struct outq *next;
  size_t len, off;
  char data[];
} outq;

struct ct_messenger {
  ct_protocol base; /* first: the transport knows us as a protocol */
  unsigned refs;
  hub *hub;
  ct_messenger *prev, *next;
  int linked;
  int lost;
  uint64_t id;
  ct_address peer;
  char peer_str[CT_ADDRESS_STRLEN];
  double recv_time, send_time;
  uint64_t nrecv, nsent;
  size_t max_content, max_header;
  void *user;
  ct_msg_decoder dec;
  ct_failure *proto_err; /* the decode error reported by on_close */
  outq *q_head, *q_tail;
  int producing, paused, pumping;
  /* While the messenger's own data_received runs, small sends are gathered
   * here and written once at its end: a batch of pipelined requests costs
   * one write instead of one per reply. */
  int corking;
  ct__msg_buf cork;
  /* The gathered output as segments: bytes of `cork` (ref == NULL), or
   * content still inside the chunk data_received is handling (ref), which
   * is valid until it returns, so echoing it costs no copy. */
  struct cork_seg {
    const char *ref;
    size_t off, len;
  } segs[CT__MSG_SEGS];
  int nseg;
  size_t cork_bytes;
  const char *chunk_lo, *chunk_hi;
  double turn_now; /* the reactor time, read once per data_received */
};

struct attempt {
  hub *h;
  char *endpoint;
  ct_deferred *connect_d;
  ct_deferred *user_d; /* may be NULL */
  attempt *prev, *next;
};

struct hub {
  ct_client_factory cf; /* first; cf.base is the server's factory too */
  unsigned refs;
  int closed; /* the owner was freed: no more callbacks */
  ct_reactor *r;
  ct_msg_callbacks cb;
  ct_msg_options opts;
  ct_messenger *head, *tail;
  size_t count;
  uint64_t next_id;
  ct_listening_port *port;
  attempt *attempts;
};

struct ct_msg_server {
  hub h;
};
struct ct_msg_client {
  hub h;
};

static void hub_unref(hub *h) {
  if (h != NULL && --h->refs == 0)
    free(h);
}

/* ------------------------------------------------------------- messenger */

ct_messenger *ct_messenger_ref(ct_messenger *m) {
  if (m != NULL)
    m->refs++;
  return m;
}

void ct_messenger_unref(ct_messenger *m) {
  if (m == NULL || --m->refs > 0)
    return;
  ct__msg_decoder_clear(&m->dec);
  ct_failure_free(m->proto_err);
  ct__msg_buf_release(&m->cork);
  free(m);
}

static ct_transport *open_transport(const ct_messenger *m) {
  ct_transport *t = m->base.transport;
  if (t == NULL || m->lost || ct_transport_is_closing(t))
    return NULL;
  return t;
}

int ct_messenger_is_open(const ct_messenger *m) {
  return m != NULL && open_transport(m) != NULL;
}
uint64_t ct_messenger_id(const ct_messenger *m) {
  return m ? m->id : 0;
}
const ct_address *ct_messenger_peer(const ct_messenger *m) {
  return m ? &m->peer : NULL;
}
const char *ct_messenger_peer_str(const ct_messenger *m) {
  return m ? m->peer_str : "";
}
double ct_messenger_recv_time(const ct_messenger *m) {
  return m ? m->recv_time : 0.0;
}
double ct_messenger_send_time(const ct_messenger *m) {
  return m ? m->send_time : 0.0;
}
uint64_t ct_messenger_received(const ct_messenger *m) {
  return m ? m->nrecv : 0;
}
uint64_t ct_messenger_sent(const ct_messenger *m) {
  return m ? m->nsent : 0;
}
ct_transport *ct_messenger_transport(const ct_messenger *m) {
  return m ? open_transport(m) : NULL;
}
void ct_messenger_set_user(ct_messenger *m, void *user) {
  if (m != NULL)
    m->user = user;
}
void *ct_messenger_user(const ct_messenger *m) {
  return m ? m->user : NULL;
}

static int flush_cork(ct_messenger *m);

int ct_messenger_close(ct_messenger *m) {
  ct_transport *t = m ? open_transport(m) : NULL;
  if (t == NULL)
    return CT_ECLOSED;
  if (flush_cork(m) != 0)
    return CT_ECLOSED;
  return ct_transport_lose_connection(t);
}

int ct_messenger_abort(ct_messenger *m) {
  if (m == NULL || m->lost || m->base.transport == NULL)
    return CT_ECLOSED;
  return ct_transport_abort(m->base.transport);
}

static void queue_free(ct_messenger *m) {
  outq *q = m->q_head;
  while (q != NULL) {
    outq *n = q->next;
    free(q);
    q = n;
  }
  m->q_head = m->q_tail = NULL;
}

/* A send failed: the connection cannot be trusted any more.  Log, abort
 * (on_close follows on a later turn) and hand the code back. */
static int send_failed(ct_messenger *m, int rc) {
  ct_log_limited(m->base.transport != NULL ? m->base.transport->reactor : NULL,
                 CT_LOG_WARN, "message",
                 "send to %s (messenger %llu) failed: %s; "
                 "closing the connection",
                 m->peer_str, (unsigned long long)m->id, ct_strerror(rc));
  if (!m->lost && m->base.transport != NULL &&
      !ct_transport_is_closing(m->base.transport))
    ct_transport_abort(m->base.transport);
  return rc;
}

static void cork_reset(ct_messenger *m) {
  m->cork.len = 0;
  m->nseg = 0;
  m->cork_bytes = 0;
}

/* Write what was gathered during data_received, as one writev. */
static int flush_cork(ct_messenger *m) {
  if (m->nseg == 0)
    return 0;
  struct iovec iov[CT__MSG_SEGS];
  int n = m->nseg;
  for (int i = 0; i < n; i++) {
    const struct cork_seg *sg = &m->segs[i];
    iov[i].iov_base =
        (void *)(sg->ref != NULL ? sg->ref : m->cork.data + sg->off);
    iov[i].iov_len = sg->len;
  }
  ct_transport *t = open_transport(m);
  int rc = t != NULL ? ct_transport_writev(t, iov, n) : CT_ECLOSED;
  cork_reset(m);
  if (m->cork.cap > CT__MSG_STREAM * 4) /* do not keep a big one around */
    ct__msg_buf_release(&m->cork);
  if (t == NULL)
    return CT_ECLOSED;
  return rc != 0 ? send_failed(m, rc) : 0;
}

/* Add bytes [off, off+len) of the cork buffer, or `ref`, as a segment. */
static void cork_add(ct_messenger *m, const char *ref, size_t off, size_t len) {
  struct cork_seg *last = m->nseg > 0 ? &m->segs[m->nseg - 1] : NULL;
  if (ref == NULL && last != NULL && last->ref == NULL &&
      last->off + last->len == off) {
    last->len += len;
  } else {
    m->segs[m->nseg].ref = ref;
    m->segs[m->nseg].off = off;
    m->segs[m->nseg].len = len;
    m->nseg++;
  }
  m->cork_bytes += len;
}

/* Gather one frame while corking.  Returns 0 or an error (nothing added). */
static int cork_frame(ct_messenger *m, const ct_msg_header *h,
                      const char *content, size_t len) {
  if (m->nseg + 2 > CT__MSG_SEGS || m->cork_bytes >= CT__MSG_STREAM) {
    int rc = flush_cork(m);
    if (rc != 0)
      return rc;
  }
  size_t mark = m->cork.len;
  int rc = ct__msg_encode_head(h, len, &m->cork);
  if (rc == 0 && m->cork.len - mark - 4 > m->max_header)
    rc = CT_EINVAL;
  int inside = len > 0 && content >= m->chunk_lo && content < m->chunk_hi &&
               len <= (size_t)(m->chunk_hi - content);
  if (rc == 0 && len > 0 && !inside) {
    rc = ct__msg_buf_reserve(&m->cork, len);
    if (rc == 0) {
      memcpy(m->cork.data + m->cork.len, content, len);
      m->cork.len += len;
    }
  }
  if (rc != 0) {
    m->cork.len = mark;
    return rc;
  }
  cork_add(m, NULL, mark, m->cork.len - mark);
  if (inside)
    cork_add(m, content, 0, len);
  return 0;
}

/* Write queued frames while the transport is below its high watermark. */
static int pump(ct_messenger *m) {
  ct_transport *t = open_transport(m);
  if (t == NULL)
    return CT_ECLOSED;
  if (m->pumping)
    return 0;
  m->pumping = 1;
  while (m->q_head != NULL && !m->paused) {
    outq *q = m->q_head;
    size_t n = q->len - q->off;
    if (n > CT__MSG_STREAM)
      n = CT__MSG_STREAM;
    int rc = ct_transport_write(t, q->data + q->off, n);
    if (rc != 0) {
      m->pumping = 0;
      queue_free(m);
      return send_failed(m, rc);
    }
    q->off += n;
    if (q->off == q->len) {
      m->q_head = q->next;
      if (m->q_head == NULL)
        m->q_tail = NULL;
      free(q);
    }
  }
  m->pumping = 0;
  if (m->q_head == NULL && m->producing) {
    m->producing = 0;
    ct_transport_unregister_producer(t);
  }
  return 0;
}

static void prod_pause(void *arg) {
  ((ct_messenger *)arg)->paused = 1;
}
static void prod_resume(void *arg) {
  ct_messenger *m = arg;
  m->paused = 0;
  (void)pump(m);
}
static void prod_stop(void *arg) {
  ct_messenger *m = arg;
  m->producing = 0;
  m->paused = 1;
  queue_free(m);
}
static const ct_producer_ops producer_ops = {prod_pause, prod_resume,
                                             prod_stop};

int ct_messenger_send(ct_messenger *m, const ct_msg_header *h,
                      const void *content, size_t len) {
  if (m == NULL || (content == NULL && len > 0) || len > m->max_content)
    return CT_EINVAL;
  ct_transport *t = open_transport(m);
  if (t == NULL)
    return send_failed(m, CT_ECLOSED);
  if (m->q_head == NULL && len < CT__MSG_STREAM && m->corking) {
    int rc = cork_frame(m, h, content, len);
    if (rc != 0)
      return rc == CT_EINVAL ? rc : send_failed(m, rc);
    m->nsent++;
    m->send_time = m->turn_now;
    return 0;
  }
  char stack[512];
  ct__msg_buf b;
  ct__msg_buf_init(&b, stack, sizeof stack);
  int rc = ct__msg_encode_head(h, len, &b);
  if (rc == 0 && b.len - 4 > m->max_header)
    rc = CT_EINVAL;
  if (rc != 0) {
    ct__msg_buf_release(&b);
    return rc == CT_ENOMEM ? send_failed(m, rc) : rc;
  }
  if (m->q_head == NULL && len < CT__MSG_STREAM) {
    struct iovec iov[2] = {{b.data, b.len}, {(void *)content, len}};
    rc = ct_transport_writev(t, iov, len > 0 ? 2 : 1);
    ct__msg_buf_release(&b);
    if (rc != 0)
      return send_failed(m, rc);
  } else {
    if ((rc = flush_cork(m)) != 0) {
      ct__msg_buf_release(&b);
      return rc;
    }
    outq *q = malloc(sizeof *q + b.len + len);
    if (q == NULL) {
      ct__msg_buf_release(&b);
      return send_failed(m, CT_ENOMEM);
    }
    q->next = NULL;
    q->len = b.len + len;
    q->off = 0;
    memcpy(q->data, b.data, b.len);
    if (len > 0)
      memcpy(q->data + b.len, content, len);
    ct__msg_buf_release(&b);
    if (m->q_tail != NULL)
      m->q_tail->next = q;
    else
      m->q_head = q;
    m->q_tail = q;
    if (!m->producing) {
      m->paused = 0;
      rc = ct_transport_register_producer(t, &producer_ops, m, 1);
      if (rc != 0) {
        queue_free(m);
        return send_failed(m, rc);
      }
      m->producing = 1;
    }
    rc = pump(m);
    if (rc != 0)
      return rc;
  }
  m->nsent++;
  m->send_time = ct_reactor_seconds(t->reactor);
  return 0;
}

/* --------------------------------------------------------------- protocol */

static int on_frame(void *arg, const ct_msg_header *h, const char *content,
                    size_t len) {
  ct_messenger *m = arg;
  ct_transport *t = m->base.transport;
  (void)t;
  m->nrecv++;
  m->recv_time = m->turn_now;
  hub *hb = m->hub;
  if (!hb->closed && hb->cb.on_message != NULL)
    hb->cb.on_message(m, h, content, len, hb->cb.arg);
  /* Stop if the callback closed the connection. */
  return open_transport(m) == NULL ? 1 : 0;
}

static void msg_connection_made(ct_protocol *p, ct_transport *t) {
  ct_messenger *m = (ct_messenger *)p;
  hub *hb = m->hub;
  if (ct_transport_get_peer(t, &m->peer) == 0)
    ct_address_format(&m->peer, m->peer_str, sizeof m->peer_str);
  else
    snprintf(m->peer_str, sizeof m->peer_str, "unknown");
  m->recv_time = m->send_time = ct_reactor_seconds(t->reactor);
  if (hb->opts.no_delay)
    (void)ct_transport_set_tcp_nodelay(t, 1);
  m->prev = hb->tail;
  m->next = NULL;
  if (hb->tail != NULL)
    hb->tail->next = m;
  else
    hb->head = m;
  hb->tail = m;
  m->linked = 1;
  hb->count++;
  if (hb->closed) {
    ct_transport_lose_connection(t);
    return;
  }
  if (hb->cb.on_connect != NULL)
    hb->cb.on_connect(m, hb->cb.arg);
}

static void msg_data_received(ct_protocol *p, const char *data, size_t len) {
  ct_messenger *m = (ct_messenger *)p;
  if (open_transport(m) == NULL)
    return;
  ct_failure *f = NULL;
  m->turn_now = ct_reactor_seconds(m->base.transport->reactor);
  m->chunk_lo = data;
  m->chunk_hi = data + len;
  m->corking = 1;
  int rc = ct_msg_decoder_feed(&m->dec, data, len, &f);
  m->corking = 0;
  if (rc >= 0)
    (void)flush_cork(m);
  else
    cork_reset(m);
  m->chunk_lo = m->chunk_hi = NULL;
  if (rc < 0 && f != NULL) {
    char what[CT_ADDRESS_STRLEN + 64];
    snprintf(what, sizeof what, "closing connection from %s (messenger %llu)",
             m->peer_str, (unsigned long long)m->id);
    ct_log_failure_limited(m->base.transport->reactor, CT_LOG_WARN, "message",
                           what, f);
    ct_failure_free(m->proto_err);
    m->proto_err = f;
    ct_transport_abort(m->base.transport);
  }
}

static void msg_connection_lost(ct_protocol *p, const ct_failure *reason) {
  ct_messenger *m = (ct_messenger *)p;
  hub *hb = m->hub;
  m->lost = 1;
  queue_free(m);
  if (m->linked) {
    if (m->prev != NULL)
      m->prev->next = m->next;
    else
      hb->head = m->next;
    if (m->next != NULL)
      m->next->prev = m->prev;
    else
      hb->tail = m->prev;
    m->prev = m->next = NULL;
    m->linked = 0;
    hb->count--;
    if (!hb->closed && hb->cb.on_close != NULL)
      hb->cb.on_close(m, hb->count,
                      m->proto_err != NULL ? m->proto_err : reason, hb->cb.arg);
  }
  ct__msg_decoder_clear(&m->dec);
}

static void msg_free(ct_protocol *p) {
  ct_messenger *m = (ct_messenger *)p;
  hub *hb = m->hub;
  m->hub = NULL;
  m->lost = 1;
  queue_free(m);
  /* The transport no longer reads our factory: drop the hub. */
  hub_unref(hb);
  ct_messenger_unref(m);
}

static const ct_protocol_ops msg_protocol_ops = {
    .name = "message",
    .flags = CT_PROTOCOL_PAUSE_READING_ON_HIGH_WATER,
    .connection_made = msg_connection_made,
    .data_received = msg_data_received,
    .connection_lost = msg_connection_lost,
    .free = msg_free,
};

static ct_protocol *hub_build(ct_factory *f, const ct_address *peer) {
  hub *hb = f->user;
  if (hb->closed)
    return NULL;
  ct_messenger *m = calloc(1, sizeof *m);
  if (m == NULL)
    return NULL;
  ct_protocol_init(&m->base, &msg_protocol_ops);
  m->refs = 1;
  m->hub = hb;
  hb->refs++;
  m->id = ++hb->next_id;
  m->max_content = hb->opts.limits.max_content;
  m->max_header = hb->opts.limits.max_header;
  if (peer != NULL) {
    m->peer = *peer;
    ct_address_format(peer, m->peer_str, sizeof m->peer_str);
  }
  ct__msg_decoder_init(&m->dec, &hb->opts.limits, on_frame, m);
  return &m->base;
}

static const ct_factory_ops hub_factory_ops = {.name = "message",
                                               .build_protocol = hub_build};

static hub *hub_new(size_t size, ct_reactor *r, const ct_msg_callbacks *cb,
                    const ct_msg_options *opts) {
  hub *hb = calloc(1, size);
  if (hb == NULL)
    return NULL;
  hb->refs = 1;
  hb->r = r;
  if (cb != NULL)
    hb->cb = *cb;
  if (opts != NULL)
    hb->opts = *opts;
  ct__msg_limits_fill(&hb->opts.limits, opts != NULL ? &opts->limits : NULL);
  ct_factory_init(&hb->cf.base, &hub_factory_ops, &msg_protocol_ops,
                  sizeof(ct_messenger), hb);
  hb->cf.base.write_high_water = hb->opts.write_high_water;
  hb->cf.base.write_low_water = hb->opts.write_low_water;
  return hb;
}

static size_t hub_list(const hub *hb, ct_messenger **out, size_t max) {
  size_t i = 0;
  for (ct_messenger *m = hb->head; m != NULL; m = m->next, i++)
    if (out != NULL && i < max)
      out[i] = m;
  return i;
}

static size_t hub_broadcast(hub *hb, const ct_msg_header *h,
                            const void *content, size_t len) {
  size_t ok = 0;
  /* Sends never run callbacks synchronously, so the list is stable. */
  for (ct_messenger *m = hb->head; m != NULL; m = m->next)
    if (ct_messenger_send(m, h, content, len) == 0)
      ok++;
  return ok;
}

static size_t hub_multicast(hub *hb, ct_messenger *const *list, size_t n,
                            const ct_msg_header *h, const void *content,
                            size_t len) {
  size_t ok = 0;
  for (size_t i = 0; list != NULL && i < n; i++)
    if (list[i] != NULL && list[i]->hub == hb &&
        ct_messenger_send(list[i], h, content, len) == 0)
      ok++;
  return ok;
}

static int hub_send(hub *hb, ct_messenger *m, const ct_msg_header *h,
                    const void *content, size_t len) {
  if (m == NULL || (m->hub != hb && m->hub != NULL))
    return CT_EINVAL;
  return ct_messenger_send(m, h, content, len);
}

/* Close every connection and drop the owner's reference. */
static void hub_close(hub *hb) {
  hb->closed = 1;
  for (ct_messenger *m = hb->head; m != NULL; m = m->next)
    (void)ct_messenger_close(m); /* flushes gathered output first */
  hub_unref(hb);
}

/* ----------------------------------------------------------------- server */

ct_msg_server *ct_msg_server_new(ct_reactor *r, const ct_msg_callbacks *cb,
                                 const ct_msg_options *opts) {
  if (r == NULL)
    return NULL;
  return (ct_msg_server *)hub_new(sizeof(ct_msg_server), r, cb, opts);
}

ct_factory *ct_msg_server_factory(ct_msg_server *s) {
  return s != NULL ? &s->h.cf.base : NULL;
}

ct_factory *ct_msg_client_factory(ct_msg_client *c) {
  return c != NULL ? &c->h.cf.base : NULL;
}

ct_msg_server *ct_msg_server_listen(ct_reactor *r, const char *endpoint,
                                    const ct_msg_callbacks *cb,
                                    const ct_msg_options *opts,
                                    ct_failure **err) {
  if (r == NULL || endpoint == NULL) {
    if (err != NULL)
      *err = ct_failure_new(CT_EINVAL, "ct_msg_server_listen: reactor and "
                                       "endpoint are required");
    return NULL;
  }
  ct_msg_server *s = ct_msg_server_new(r, cb, opts);
  if (s == NULL) {
    if (err != NULL)
      *err = ct_failure_new(CT_ENOMEM, "ct_msg_server_listen: out of memory");
    return NULL;
  }
  s->h.port = ct_listen(r, endpoint, &s->h.cf.base, err);
  if (s->h.port == NULL) {
    free(s);
    return NULL;
  }
  return s;
}

int ct_msg_server_address(const ct_msg_server *s, ct_address *out) {
  if (s == NULL || out == NULL || s->h.port == NULL)
    return CT_ECLOSED;
  return ct_listening_port_address(s->h.port, out);
}

int ct_msg_server_port(const ct_msg_server *s) {
  ct_address a;
  if (ct_msg_server_address(s, &a) != 0)
    return -1;
  return ct_address_port(&a);
}

size_t ct_msg_server_count(const ct_msg_server *s) {
  return s ? s->h.count : 0;
}
size_t ct_msg_server_messengers(const ct_msg_server *s, ct_messenger **out,
                                size_t max) {
  return s ? hub_list(&s->h, out, max) : 0;
}
size_t ct_msg_server_broadcast(ct_msg_server *s, const ct_msg_header *h,
                               const void *content, size_t len) {
  return s ? hub_broadcast(&s->h, h, content, len) : 0;
}
size_t ct_msg_server_multicast(ct_msg_server *s, ct_messenger *const *list,
                               size_t n, const ct_msg_header *h,
                               const void *content, size_t len) {
  return s ? hub_multicast(&s->h, list, n, h, content, len) : 0;
}
int ct_msg_server_send(ct_msg_server *s, ct_messenger *m,
                       const ct_msg_header *h, const void *content,
                       size_t len) {
  return s ? hub_send(&s->h, m, h, content, len) : CT_EINVAL;
}

static ct_step port_stopped(ct_result res, void *arg) {
  ct_value_free(res.value);
  ct_failure_free(res.failure);
  hub_unref(arg);
  return ct_pass(CT_NONE);
}

void ct_msg_server_free(ct_msg_server *s) {
  if (s == NULL)
    return;
  hub *hb = &s->h;
  if (hb->port != NULL) {
    /* The port reads the factory until it is closed: keep the hub. */
    hb->refs++;
    ct_deferred *d = ct_listening_port_stop(hb->port);
    hb->port = NULL;
    if (d == NULL || ct_deferred_add_both(d, port_stopped, hb) != 0)
      hb->refs--; /* cannot track it; the port is already closed then */
    ct_deferred_unref(d);
  }
  hub_close(hb);
}

/* ----------------------------------------------------------------- client */

ct_msg_client *ct_msg_client_new(ct_reactor *r, const ct_msg_callbacks *cb,
                                 const ct_msg_options *opts) {
  if (r == NULL)
    return NULL;
  return (ct_msg_client *)hub_new(sizeof(ct_msg_client), r, cb, opts);
}

static ct_step attempt_done(ct_result res, void *arg) {
  attempt *a = arg;
  hub *hb = a->h;
  if (a->prev != NULL)
    a->prev->next = a->next;
  else
    hb->attempts = a->next;
  if (a->next != NULL)
    a->next->prev = a->prev;
  if (res.failure == NULL) {
    ct_messenger *m = res.value.ptr; /* borrowed protocol pointer */
    if (a->user_d != NULL)
      ct_deferred_callback(a->user_d, ct_value_of(m, NULL));
  } else {
    if (!hb->closed && hb->cb.on_connect_failed != NULL)
      hb->cb.on_connect_failed(a->endpoint, res.failure, hb->cb.arg);
    if (a->user_d != NULL)
      ct_deferred_errback(a->user_d, res.failure);
    else
      ct_failure_free(res.failure);
  }
  ct_deferred_unref(a->user_d);
  ct_deferred_unref(a->connect_d);
  free(a->endpoint);
  free(a);
  hub_unref(hb);
  return ct_pass(CT_NONE);
}

static int client_start(ct_msg_client *c, const char *endpoint,
                        ct_deferred **out) {
  if (c == NULL || endpoint == NULL || c->h.closed)
    return CT_EINVAL;
  hub *hb = &c->h;
  attempt *a = calloc(1, sizeof *a);
  if (a == NULL)
    return CT_ENOMEM;
  a->endpoint = strdup(endpoint);
  if (out != NULL)
    a->user_d = ct_deferred_new(NULL, NULL);
  if (a->endpoint == NULL || (out != NULL && a->user_d == NULL)) {
    free(a->endpoint);
    ct_deferred_unref(a->user_d);
    free(a);
    return CT_ENOMEM;
  }
  a->h = hb;
  hb->refs++;
  a->next = hb->attempts;
  if (hb->attempts != NULL)
    hb->attempts->prev = a;
  hb->attempts = a;
  if (out != NULL)
    *out = ct_deferred_ref(a->user_d);
  a->connect_d = ct_connect(hb->r, endpoint, &hb->cf);
  if (a->connect_d == NULL ||
      ct_deferred_add_both(a->connect_d, attempt_done, a) != 0) {
    ct_result res = {CT_NONE, ct_failure_new(CT_ENOMEM,
                                             "connect to %s: out "
                                             "of memory",
                                             endpoint)};
    ct_deferred *cd = a->connect_d;
    a->connect_d = NULL;
    attempt_done(res, a);
    if (cd != NULL)
      ct_deferred_cancel(cd);
    ct_deferred_unref(cd);
    return 0; /* reported through the callbacks / Deferred */
  }
  return 0;
}

ct_deferred *ct_msg_client_add_connection(ct_msg_client *c,
                                          const char *endpoint) {
  ct_deferred *d = NULL;
  if (client_start(c, endpoint, &d) != 0)
    return NULL;
  return d;
}

int ct_msg_client_connect(ct_msg_client *c, const char *endpoint) {
  return client_start(c, endpoint, NULL);
}

size_t ct_msg_client_count(const ct_msg_client *c) {
  return c ? c->h.count : 0;
}
size_t ct_msg_client_messengers(const ct_msg_client *c, ct_messenger **out,
                                size_t max) {
  return c ? hub_list(&c->h, out, max) : 0;
}
size_t ct_msg_client_broadcast(ct_msg_client *c, const ct_msg_header *h,
                               const void *content, size_t len) {
  return c ? hub_broadcast(&c->h, h, content, len) : 0;
}
size_t ct_msg_client_multicast(ct_msg_client *c, ct_messenger *const *list,
                               size_t n, const ct_msg_header *h,
                               const void *content, size_t len) {
  return c ? hub_multicast(&c->h, list, n, h, content, len) : 0;
}
int ct_msg_client_send(ct_msg_client *c, ct_messenger *m,
                       const ct_msg_header *h, const void *content,
                       size_t len) {
  return c ? hub_send(&c->h, m, h, content, len) : CT_EINVAL;
}

void ct_msg_client_free(ct_msg_client *c) {
  if (c == NULL)
    return;
  hub *hb = &c->h;
  hb->closed = 1;
  /* Cancelling fires attempt_done at once, which unlinks the attempt. */
  attempt *a = hb->attempts;
  while (a != NULL) {
    attempt *next = a->next;
    ct_deferred_cancel(a->connect_d);
    a = next;
  }
  hub_close(hb);
}
